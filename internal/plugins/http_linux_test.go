//go:build linux

package plugins_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/plugins"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/plugins/pin/pintest"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// httpFixture starts the fixture as a Streamable HTTP server on loopback
// that requires bearer and logs every Authorization header it receives.
func httpFixture(t *testing.T, bearer string) (url, authLog string) {
	t.Helper()
	authLog = filepath.Join(t.TempDir(), "auth.log")
	cmd := exec.Command(filepath.Join(fixture(t), "mcpfixture"), "-http", "127.0.0.1:0")
	cmd.Env = []string{"FIXTURE_BEARER=" + bearer, "FIXTURE_AUTH_LOG=" + authLog}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTEN ")
	if err != nil || !ok {
		t.Fatalf("fixture said %q, %v", line, err)
	}
	return "http://" + addr + "/mcp", authLog
}

func startHTTP(t *testing.T, sc config.ServerConfig, sec plugins.Secrets) (*plugins.Manager, *registry) {
	t.Helper()
	reg := &registry{}
	pins, _ := pin.New(pintest.NewMemory(), nil)
	sc.Name = "fx"
	sc.Tools.Allow = []string{"*"}
	m, err := plugins.New(plugins.Config{Servers: []config.ServerConfig{sc}, MinBackoff: 50 * time.Millisecond},
		plugins.Deps{Registry: reg, Pins: pins, Secrets: sec, Audit: &audittest.Recorder{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(t.Context())
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		t.Fatalf("%v: %+v", err, m.Status())
	}
	return m, reg
}

func callAs(t *testing.T, tl tool.Tool, user, args string) (*tool.Result, error) {
	t.Helper()
	ctx := t.Context()
	if user != "" {
		ctx = principal.NewContext(ctx, &principal.Principal{Name: user})
	}
	return tl.Call(ctx, []byte(args))
}

// TestHTTPUpstreamSharedCredential: the gateway authenticates to an HTTP
// upstream with the stored secret; the upstream sees that credential and
// nothing else (a client's token is never passed through).
func TestHTTPUpstreamSharedCredential(t *testing.T) {
	tok := rand.Text()
	url, authLog := httpFixture(t, tok)
	_, reg := startHTTP(t, config.ServerConfig{URL: url, Auth: config.ServerAuth{BearerSecret: "remote_token"}},
		fakeSecrets{"remote_token/": tok})
	echo := reg.get("fx", "fx__echo")
	if echo == nil {
		t.Fatalf("echo not offered: %v", reg.names("fx"))
	}
	res, err := callAs(t, echo, "alice", `{"text":"over http"}`)
	if err != nil || res.Text != "over http" {
		t.Fatalf("echo: %+v, %v", res, err)
	}
	b, err := os.ReadFile(authLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "Bearer "+tok {
			t.Fatalf("the upstream received Authorization %q; want only the stored credential", l)
		}
	}
}

// TestHTTPUpstreamWrongCredential: a stored credential the upstream
// refuses keeps the server from starting (no tools offered).
func TestHTTPUpstreamWrongCredential(t *testing.T) {
	url, _ := httpFixture(t, rand.Text())
	reg := &registry{}
	pins, _ := pin.New(pintest.NewMemory(), nil)
	m, err := plugins.New(plugins.Config{Servers: []config.ServerConfig{{Name: "fx", URL: url,
		Auth: config.ServerAuth{BearerSecret: "remote_token"}, Tools: config.ServerTools{Allow: []string{"*"}}}}, MinBackoff: time.Second},
		plugins.Deps{Registry: reg, Pins: pins, Secrets: fakeSecrets{"remote_token/": rand.Text()}, Audit: &audittest.Recorder{},
			Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(t.Context())
	defer m.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err == nil || len(reg.names("fx")) != 0 {
		t.Fatalf("server with a refused credential became ready: %v %v", err, reg.names("fx"))
	}
}

// TestHTTPUpstreamPerUser: with auth.per_user each caller's own stored
// credential is used; a caller without one is refused, not served with
// the shared one (which the secrets store's Get falls back to, as the
// fake does).
func TestHTTPUpstreamPerUser(t *testing.T) {
	tok := rand.Text()
	url, _ := httpFixture(t, tok)
	_, reg := startHTTP(t, config.ServerConfig{URL: url, Auth: config.ServerAuth{BearerSecret: "remote_token", PerUser: true}},
		fakeSecrets{"remote_token/": tok, "remote_token/alice": tok, "remote_token/mallory": rand.Text()})
	echo := reg.get("fx", "fx__echo")
	if res, err := callAs(t, echo, "alice", `{"text":"mine"}`); err != nil || res.Text != "mine" {
		t.Fatalf("alice with her own credential: %+v, %v", res, err)
	}
	_, err := callAs(t, echo, "bob", `{"text":"x"}`)
	if te, ok := tool.AsError(err); !ok || te.Code != reason.PermissionDenied {
		t.Fatalf("bob without a credential: %v; want PERMISSION_DENIED", err)
	}
	if _, err := callAs(t, echo, "mallory", `{"text":"x"}`); err == nil {
		t.Fatal("mallory's refused credential was replaced by the shared one")
	}
	if _, err := callAs(t, echo, "", `{"text":"x"}`); err == nil {
		t.Fatal("a call without a principal used the shared credential")
	}
}

// countingSecrets counts the reads of each user's secrets.
type countingSecrets struct {
	fakeSecrets
	mu    sync.Mutex
	reads map[string]int // user → reads
}

func (c *countingSecrets) Get(ctx context.Context, name, user string) ([]byte, error) {
	c.add(user)
	return c.fakeSecrets.Get(ctx, name, user)
}

func (c *countingSecrets) GetOwn(ctx context.Context, name, user string) ([]byte, error) {
	c.add(user)
	return c.fakeSecrets.GetOwn(ctx, name, user)
}

func (c *countingSecrets) add(user string) {
	c.mu.Lock()
	c.reads[user]++
	c.mu.Unlock()
}

func (c *countingSecrets) count(user string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads[user]
}

// TestHTTPUpstreamPerUserAnonymous: with auth.per_user a call without a
// principal is refused before any secret is read (not even the shared
// one, which only the gateway's own session uses).
func TestHTTPUpstreamPerUserAnonymous(t *testing.T) {
	tok := rand.Text()
	url, _ := httpFixture(t, tok)
	sec := &countingSecrets{fakeSecrets: fakeSecrets{"remote_token/": tok}, reads: map[string]int{}}
	_, reg := startHTTP(t, config.ServerConfig{URL: url, Auth: config.ServerAuth{BearerSecret: "remote_token", PerUser: true}}, sec)
	echo := reg.get("fx", "fx__echo")
	if echo == nil {
		t.Fatalf("echo not offered: %v", reg.names("fx"))
	}
	shared := sec.count("")
	_, err := callAs(t, echo, "", `{"text":"x"}`)
	if te, ok := tool.AsError(err); !ok || te.Code != reason.PermissionDenied {
		t.Fatalf("anonymous call: %v; want PERMISSION_DENIED", err)
	}
	if n := sec.count(""); n != shared {
		t.Errorf("an anonymous call read the shared secret (%d reads, %d before)", n, shared)
	}
}

// TestHTTPUpstreamRedirectKeepsCredential attacks the credential: an
// upstream that answers every request with a redirect to another host
// (307 keeps method and body) must not make the gateway send that host
// the stored bearer token; the redirect is not followed at all.
func TestHTTPUpstreamRedirectKeepsCredential(t *testing.T) {
	tok := rand.Text()
	var mu sync.Mutex
	var elsewhere []string // Authorization headers the other host saw
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhere = append(elsewhere, r.Header.Get("Authorization"))
		mu.Unlock()
		http.Error(w, "no", http.StatusTeapot)
	}))
	t.Cleanup(other.Close)
	hit := make(chan struct{}, 16)
	var sawToken atomic.Bool
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawToken.Store(sawToken.Load() || r.Header.Get("Authorization") == "Bearer "+tok)
		select {
		case hit <- struct{}{}:
		default:
		}
		http.Redirect(w, r, other.URL+"/mcp", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)

	reg := &registry{}
	pins, _ := pin.New(pintest.NewMemory(), nil)
	m, err := plugins.New(plugins.Config{Servers: []config.ServerConfig{{Name: "fx", URL: redirector.URL + "/mcp",
		Tools: config.ServerTools{Allow: []string{"*"}}, Auth: config.ServerAuth{BearerSecret: "remote_token"}}},
		MinBackoff: 50 * time.Millisecond},
		plugins.Deps{Registry: reg, Pins: pins, Secrets: fakeSecrets{"remote_token/": tok}, Audit: &audittest.Recorder{},
			Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(t.Context())
	t.Cleanup(func() { m.Close() })
	for range 3 { // the first attempt and two restarts
		select {
		case <-hit:
		case <-time.After(10 * time.Second):
			t.Fatal("the gateway never reached the upstream")
		}
	}
	if !sawToken.Load() {
		t.Error("the configured upstream did not receive the credential (the test would prove nothing)")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range elsewhere {
		if strings.Contains(a, tok) {
			t.Fatalf("the redirect target received the upstream's credential: %q", a)
		}
	}
	if len(elsewhere) != 0 {
		t.Errorf("the redirect was followed %d times; want never", len(elsewhere))
	}
	if reg.get("fx", "fx__echo") != nil {
		t.Error("a redirecting upstream's tools are offered")
	}
}

// rotatingSecrets is a secrets store whose values a test changes between
// calls (guarded: the gateway's own session reads it in the background).
type rotatingSecrets struct {
	mu sync.Mutex
	m  map[string]string
}

func (r *rotatingSecrets) Get(ctx context.Context, name, user string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fakeSecrets(r.m).Get(ctx, name, user)
}

func (r *rotatingSecrets) GetOwn(ctx context.Context, name, user string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fakeSecrets(r.m).GetOwn(ctx, name, user)
}

func (r *rotatingSecrets) set(key, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if value == "" {
		delete(r.m, key)
		return
	}
	r.m[key] = value
}

// TestHTTPUpstreamPerUserRotation: a per-user session follows its
// credential. After the user's stored credential is replaced by one the
// upstream refuses, the next call fails (it no longer rides the session
// opened with the old one); restored, calls work again; deleted, the call
// is refused as having no credential.
func TestHTTPUpstreamPerUserRotation(t *testing.T) {
	tok := rand.Text()
	url, _ := httpFixture(t, tok)
	sec := &rotatingSecrets{m: map[string]string{"remote_token/": tok, "remote_token/alice": tok}}
	_, reg := startHTTP(t, config.ServerConfig{URL: url, Auth: config.ServerAuth{BearerSecret: "remote_token", PerUser: true}}, sec)
	echo := reg.get("fx", "fx__echo")
	if res, err := callAs(t, echo, "alice", `{"text":"one"}`); err != nil || res.Text != "one" {
		t.Fatalf("alice before rotation: %+v, %v", res, err)
	}
	sec.set("remote_token/alice", rand.Text()) // rotated to a credential the upstream refuses
	if res, err := callAs(t, echo, "alice", `{"text":"two"}`); err == nil {
		t.Fatalf("after rotation to a refused credential the call still ran (%+v): the session kept the old credential", res)
	}
	sec.set("remote_token/alice", tok)
	if res, err := callAs(t, echo, "alice", `{"text":"three"}`); err != nil || res.Text != "three" {
		t.Fatalf("alice with her credential restored: %+v, %v", res, err)
	}
	sec.set("remote_token/alice", "")
	_, err := callAs(t, echo, "alice", `{"text":"four"}`)
	if te, ok := tool.AsError(err); !ok || te.Code != reason.PermissionDenied {
		t.Fatalf("alice after her credential was deleted: %v; want PERMISSION_DENIED", err)
	}
}
