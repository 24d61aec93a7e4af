package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/mcpserver"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/server"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlite"
	"github.com/portcullis/portcullis/internal/tools/files"
)

// Protocol versions served on /mcp (DESIGN §4).
const (
	pvStateless = "2026-07-28"
	pvSessions  = "2025-11-25"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// spyEmitter forwards to the real audit writer and keeps a copy of every
// event it acknowledged, so a test can wait for an event emitted after the
// response was sent without sleeping.
type spyEmitter struct {
	inner   server.Emitter
	mu      sync.Mutex
	events  []audit.Event
	changed chan struct{}
}

func newSpy(inner server.Emitter) *spyEmitter {
	return &spyEmitter{inner: inner, changed: make(chan struct{})}
}

func (s *spyEmitter) Emit(ctx context.Context, e *audit.Event) error {
	err := s.inner.Emit(ctx, e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.events = append(s.events, *e)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func (s *spyEmitter) all() []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]audit.Event(nil), s.events...)
}

// wait returns the first event matching match, waiting for it to be
// emitted. The bound only keeps a broken build from hanging the suite.
func (s *spyEmitter) wait(t *testing.T, what string, match func(audit.Event) bool) audit.Event {
	t.Helper()
	failsafe := time.NewTimer(20 * time.Second)
	defer failsafe.Stop()
	for {
		s.mu.Lock()
		for _, e := range s.events {
			if match(e) {
				s.mu.Unlock()
				return e
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-failsafe.C:
			t.Fatalf("no audit event %s; have:\n%s", what, dumpEvents(s.all()))
		}
	}
}

func (s *spyEmitter) find(match func(audit.Event) bool) []audit.Event {
	var out []audit.Event
	for _, e := range s.all() {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

func dumpEvents(evs []audit.Event) string {
	var b strings.Builder
	for _, e := range evs {
		j, _ := json.Marshal(e)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// fakeReady is a settable readiness check.
type fakeReady struct {
	mu  sync.Mutex
	err error
}

func (f *fakeReady) Ready(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fakeReady) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// stack is a complete gateway (sqlite store, durable audit, policy from
// the store's default grants, file tools, MCP server, admin API) behind
// server.Handler.
type stack struct {
	t      testing.TB
	url    string
	db     *sqlite.DB
	spy    *spyEmitter
	authn  *authn.Authenticator
	srv    *server.Server
	ws     string
	logs   *syncBuffer
	ready  *fakeReady
	keys   map[string]string // user -> plaintext key
	keyIDs map[string]string // user -> key id
	ts     *httptest.Server
}

type stackOptions struct {
	maxBody int64
	// authn replaces the real authenticator in the server (not in the admin API).
	authn server.Authenticator
	// admin replaces the admin API handler.
	admin http.Handler
	// noHTTP builds the Server without an httptest server.
	noHTTP bool
	// console turns the web console on (Deps.ConsoleAllowed from the
	// policy and the admin API's routes), before deps runs.
	console bool
	// config and deps adjust the server's Config and Deps.
	config func(*server.Config)
	deps   func(*server.Deps)
}

// users and their roles; "rex" has a revoked key.
var users = map[string]string{
	"gina":    "guest",
	"dev":     "developer",
	"root":    "admin",
	"mallory": "developer",
	"rex":     "guest",
}

func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	if o.maxBody == 0 {
		o.maxBody = 64 << 10
	}
	ctx := context.Background()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "portcullis.db"), sqlite.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w, err := audit.NewWriter(audit.Config{CommitTimeout: 10 * time.Second, QueueSize: 256, MaxBatch: 64, Chain: audittest.Chain()}, db, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	spy := newSpy(w)
	redKey := make([]byte, 32)
	rand.Read(redKey)
	red, err := audit.NewRedactor(redKey)
	if err != nil {
		t.Fatal(err)
	}
	sec := make([]byte, authn.SecretSize)
	rand.Read(sec)
	an, err := authn.New(sec, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	grants, err := db.Grants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(grants)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{CallTimeout: 30 * time.Second}, gateway.Deps{Policy: pol, Audit: spy, Redactor: red, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	wsDir := filepath.Join(dir, "workspace")
	if err := os.MkdirAll(wsDir, 0o750); err != nil {
		t.Fatal(err)
	}
	ws, err := files.New(files.Config{Root: wsDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	for _, tl := range ws.Tools() {
		if err := gw.Register(tl); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := mcpserver.New(mcpserver.Options{Gateway: gw, Identify: mcpserver.HTTPIdentity, Audit: spy, Sessions: db, Logger: log, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	admin := o.admin
	var routes []adminapi.Route
	if admin == nil {
		api, err := adminapi.New(adminapi.Deps{Store: db, Authn: an, Policy: pol, Audit: spy, Logger: log, RequestMeta: server.RequestMeta})
		if err != nil {
			t.Fatal(err)
		}
		admin, routes = api, api.Routes()
	}
	var sa server.Authenticator = an
	if o.authn != nil {
		sa = o.authn
	}
	ready := &fakeReady{}
	scfg := server.Config{MaxBodyBytes: o.maxBody, SessionTimeout: time.Minute, ReadHeaderTimeout: 10 * time.Second}
	sdeps := server.Deps{Authn: sa, MCP: ms, Admin: admin, Audit: spy, Ready: ready.Ready, Logger: log}
	if o.console {
		sdeps.ConsoleAllowed = server.ConsoleAccess(pol, routes)
	}
	if o.config != nil {
		o.config(&scfg)
	}
	if o.deps != nil {
		o.deps(&sdeps)
	}
	srv, err := server.New(scfg, sdeps)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, db: db, spy: spy, authn: an, srv: srv, ws: wsDir, logs: logs, ready: ready,
		keys: map[string]string{}, keyIDs: map[string]string{}}
	for name, role := range users {
		s.keys[name], s.keyIDs[name] = s.addKey(name, role)
	}
	if _, err := db.RevokeAPIKey(ctx, s.keyIDs["rex"], time.Now()); err != nil {
		t.Fatal(err)
	}
	if !o.noHTTP {
		ts := httptest.NewUnstartedServer(srv.Handler())
		base, cancel := context.WithCancel(context.Background())
		ts.Config.BaseContext = func(net.Listener) context.Context { return base }
		ts.Start()
		// Cancel long-lived streams first so Close does not wait for them.
		t.Cleanup(func() { cancel(); ts.CloseClientConnections(); ts.Close() })
		s.url, s.ts = ts.URL, ts
	}
	t.Cleanup(func() {
		srv.CloseSessions() // sessions opened by the test, with or without an HTTP server
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Shutdown(sctx)
	})
	return s
}

// addKey creates (or reuses) the user with role and a fresh key for it.
func (s *stack) addKey(name, role string) (plain, id string) {
	s.t.Helper()
	ctx := context.Background()
	u, _, err := s.db.EnsureUser(ctx, name, []string{role})
	if err != nil {
		s.t.Fatal(err)
	}
	plain, id, prefix, hash := s.authn.NewKey()
	if err := s.db.CreateAPIKey(ctx, store.APIKey{ID: id, UserID: u.ID, UserName: u.Name, Hash: hash, Prefix: prefix,
		Roles: []string{role}, CreatedAt: time.Now().UTC()}); err != nil {
		s.t.Fatal(err)
	}
	return plain, id
}

// request sends one request and returns the response with its body read.
func (s *stack) request(t testing.TB, method, path, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	return s.send(t, req)
}

func (s *stack) send(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 30*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return resp, b
}

// mcpHeaders are the headers of a Streamable HTTP POST with key at pv.
func mcpHeaders(key, pv string) map[string]string {
	h := map[string]string{
		"Content-Type": "application/json",
		"Accept":       "application/json, text/event-stream",
	}
	if key != "" {
		h["Authorization"] = "Bearer " + key
	}
	if pv != "" {
		h["Mcp-Protocol-Version"] = pv
	}
	return h
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// headerRT adds headers to every request of an MCP client.
type headerRT struct {
	hdr  map[string]string
	base http.RoundTripper
}

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.hdr {
		r.Header.Set(k, v)
	}
	return h.base.RoundTrip(r)
}

// connect opens an MCP session with the official SDK client, sending key
// as a bearer token plus any extra headers.
func (s *stack) connect(t testing.TB, key, pv string, extra map[string]string) *mcp.ClientSession {
	t.Helper()
	hdr := map[string]string{"Authorization": "Bearer " + key}
	for k, v := range extra {
		hdr[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "server-test", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{
		Endpoint:   s.url + "/mcp",
		HTTPClient: &http.Client{Transport: headerRT{hdr: hdr, base: http.DefaultTransport}},
		MaxRetries: -1,
	}
	cs, err := client.Connect(ctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: pv})
	if err != nil {
		t.Fatalf("connect at %s: %v", pv, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var out []string
	for _, tl := range res.Tools {
		out = append(out, tl.Name)
	}
	return out
}

func callTool(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	return res
}

func resultText(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func resultCode(r *mcp.CallToolResult) string {
	m, _ := r.StructuredContent.(map[string]any)
	c, _ := m["code"].(string)
	return c
}

// fakeAuthn answers every credential with a fixed result.
type fakeAuthn struct {
	p   *principal.Principal
	err error
}

func (f fakeAuthn) Authenticate(context.Context, string) (*principal.Principal, error) {
	return f.p, f.err
}

var errBoom = errors.New("boom")
