package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/server"
)

// TestChainOrder pins the middleware order (STYLE §3): recovery and request
// id outermost, the body limit and origin check before anything reads the
// body or the credential, and the bad-request audit innermost so it sees
// the principal.
func TestChainOrder(t *testing.T) {
	s := newStack(t, stackOptions{noHTTP: true})
	var got []string
	for _, n := range s.srv.Chain() {
		got = append(got, n.Name)
		if n.Wrap == nil {
			t.Errorf("middleware %s has no Wrap", n.Name)
		}
	}
	want := []string{"recover", "request_id", "body_limit", "origin", "authenticate", "audit_bad_request"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Chain() (-want +got):\n%s", diff)
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	good := server.Config{MaxBodyBytes: 1, SessionTimeout: time.Second, ReadHeaderTimeout: time.Second}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// A valid Deps, then knock out one field at a time.
	full := validDeps(t, log)
	if _, err := server.New(good, full); err != nil {
		t.Fatalf("valid deps refused: %v", err)
	}
	for name, mut := range map[string]func(*server.Deps){
		"authn":  func(d *server.Deps) { d.Authn = nil },
		"mcp":    func(d *server.Deps) { d.MCP = nil },
		"admin":  func(d *server.Deps) { d.Admin = nil },
		"audit":  func(d *server.Deps) { d.Audit = nil },
		"ready":  func(d *server.Deps) { d.Ready = nil },
		"logger": func(d *server.Deps) { d.Logger = nil },
	} {
		d := full
		mut(&d)
		if _, err := server.New(good, d); err == nil {
			t.Errorf("New accepted Deps without %s", name)
		}
	}
	for name, cfg := range map[string]server.Config{
		"zero body":           {SessionTimeout: time.Second, ReadHeaderTimeout: time.Second},
		"negative body":       {MaxBodyBytes: -1, SessionTimeout: time.Second, ReadHeaderTimeout: time.Second},
		"zero session":        {MaxBodyBytes: 1, ReadHeaderTimeout: time.Second},
		"zero header timeout": {MaxBodyBytes: 1, SessionTimeout: time.Second},
	} {
		if _, err := server.New(cfg, full); err == nil {
			t.Errorf("New accepted config %s", name)
		}
	}
}

func validDeps(t *testing.T, log *slog.Logger) server.Deps {
	t.Helper()
	return server.Deps{
		Authn:  fakeAuthn{err: errBoom},
		MCP:    mcp.NewServer(&mcp.Implementation{Name: "x", Version: "1"}, nil),
		Admin:  http.NotFoundHandler(),
		Audit:  newSpy(discardEmitter{}),
		Ready:  func(context.Context) error { return nil },
		Logger: log,
	}
}

type discardEmitter struct{}

func (discardEmitter) Emit(context.Context, *audit.Event) error { return nil }

var reqIDRE = regexp.MustCompile(`^req_[A-Z2-7]{26}$`)

// TestAuthFailures: every bad credential gets 401, a Bearer challenge and
// one identical body; each is an auth.failure event with its cause; the
// credential never reaches the audit log or the logs.
func TestAuthFailures(t *testing.T) {
	s := newStack(t, stackOptions{})
	unknown, _, _, _ := s.authn.NewKey() // well formed, never stored
	cases := []struct {
		name     string
		header   string // Authorization; "" = none
		cause    string
		user     string // principal recorded for the failure
		keyID    string
		hadToken bool
	}{
		{name: "no header", cause: authn.CauseMissing},
		{name: "basic", header: "Basic cm9vdDpyb290", cause: authn.CauseMalformed, hadToken: true},
		{name: "bearer without token", header: "Bearer", cause: authn.CauseMalformed, hadToken: true},
		{name: "two tokens", header: "Bearer " + s.keys["root"] + " " + s.keys["dev"], cause: authn.CauseMalformed, hadToken: true},
		{name: "malformed key", header: "Bearer pcl_notakey", cause: authn.CauseMalformed, hadToken: true},
		{name: "lowercased admin key", header: "Bearer " + strings.ToLower(s.keys["root"]), cause: authn.CauseMalformed, hadToken: true},
		{name: "unknown key", header: "Bearer " + unknown, cause: authn.CauseUnknown, hadToken: true},
		{name: "revoked key", header: "Bearer " + s.keys["rex"], cause: authn.CauseRevoked, user: "rex", keyID: s.keyIDs["rex"], hadToken: true},
	}
	var firstBody []byte
	for _, path := range []struct{ method, path, body string }{
		{"POST", "/mcp", initializeBody},
		{"GET", "/mcp", ""},
		{"GET", "/admin/v1/keys", ""},
		{"POST", "/admin/v1/keys", `{"user":"eve","role":"admin"}`},
		{"GET", "/admin/v1/nonexistent", ""},
	} {
		for _, c := range cases {
			t.Run(path.method+" "+path.path+"/"+c.name, func(t *testing.T) {
				h := mcpHeaders("", pvSessions)
				if c.header != "" {
					h["Authorization"] = c.header
				}
				resp, body := s.request(t, path.method, path.path, path.body, h)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body %s", resp.StatusCode, body)
				}
				ch := resp.Header.Get("WWW-Authenticate")
				if !strings.HasPrefix(ch, `Bearer realm="portcullis"`) {
					t.Errorf("WWW-Authenticate = %q", ch)
				}
				if got := strings.Contains(ch, `error="invalid_token"`); got != c.hadToken {
					t.Errorf("WWW-Authenticate %q: invalid_token present = %v, want %v", ch, got, c.hadToken)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				if firstBody == nil {
					firstBody = body
				} else if string(body) != string(firstBody) {
					t.Errorf("body %s differs from %s: the cause leaks to the client", body, firstBody)
				}
				rid := resp.Header.Get("X-Request-Id")
				e := s.spy.wait(t, "auth.failure for "+rid, func(e audit.Event) bool {
					return e.Type == audit.AuthFailure && e.RequestID == rid
				})
				if !strings.HasSuffix(e.Detail, ": "+c.cause) && !strings.Contains(e.Detail, ": "+c.cause+" ") {
					t.Errorf("detail %q does not name cause %s", e.Detail, c.cause)
				}
				if !strings.HasPrefix(e.Detail, path.method+" "+path.path) {
					t.Errorf("detail %q does not name the request", e.Detail)
				}
				if c.keyID != "" && !strings.Contains(e.Detail, c.keyID) {
					t.Errorf("detail %q lacks key id %s", e.Detail, c.keyID)
				}
				if e.Principal != c.user || e.Decision != audit.DecisionDeny || e.Status != audit.StatusRefused || e.Reason != reason.Unauthenticated {
					t.Errorf("event %+v", e)
				}
				if !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") {
					t.Errorf("remote addr %q", e.RemoteAddr)
				}
			})
		}
	}
	// Nothing was created by the refused admin POSTs.
	if _, err := s.db.UserByName(context.Background(), "eve"); err == nil {
		t.Error("an unauthenticated POST /admin/v1/keys created user eve")
	}
	// The durable log (not only the spy) has the failures.
	evs, err := s.db.QueryAudit(context.Background(), audit.Query{Type: audit.AuthFailure, Limit: audit.MaxQueryLimit})
	if err != nil {
		t.Fatal(err)
	}
	if want := 5 * len(cases); len(evs) != want {
		t.Errorf("store has %d auth.failure events, want %d", len(evs), want)
	}
	assertNoSecrets(t, s, unknown)
}

// assertNoSecrets checks that no key (the stack's users' and extra), nor
// its random body, appears in any audit event field or log line.
func assertNoSecrets(t *testing.T, s *stack, extra ...string) {
	t.Helper()
	all, err := s.db.QueryAudit(context.Background(), audit.Query{Limit: audit.MaxQueryLimit})
	if err != nil {
		t.Fatal(err)
	}
	dump := dumpEvents(all) + dumpEvents(s.spy.all())
	logs := s.logs.String()
	keys := map[string]string{}
	for user, key := range s.keys {
		keys[user] = key
	}
	for i, key := range extra {
		keys[fmt.Sprintf("extra%d", i)] = key
	}
	for user, key := range keys {
		body := strings.TrimPrefix(key, authn.KeyPrefix)
		for _, k := range []string{key, body, strings.ToLower(body), body[8:40]} {
			if strings.Contains(dump, k) {
				t.Errorf("audit log contains %s's key", user)
			}
			if strings.Contains(logs, k) {
				t.Errorf("server log contains %s's key", user)
			}
		}
	}
}

func TestAuthBackendError(t *testing.T) {
	s := newStack(t, stackOptions{authn: fakeAuthn{err: &authn.Failure{Cause: authn.CauseBackend, Err: errors.New("database is locked at /secret/path")}}})
	resp, body := s.request(t, "POST", "/mcp", initializeBody, mcpHeaders(s.keys["root"], pvSessions))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if strings.Contains(string(body), "locked") || strings.Contains(string(body), "/secret/path") {
		t.Errorf("body leaks the backend error: %s", body)
	}
	rid := resp.Header.Get("X-Request-Id")
	e := s.spy.wait(t, "auth.failure", func(e audit.Event) bool { return e.Type == audit.AuthFailure && e.RequestID == rid })
	if !strings.Contains(e.Detail, authn.CauseBackend) {
		t.Errorf("detail %q", e.Detail)
	}
	// A non-Failure error is still a refusal.
	s2 := newStack(t, stackOptions{authn: fakeAuthn{err: errBoom}})
	resp, _ = s2.request(t, "GET", "/admin/v1/keys", "", map[string]string{"Authorization": "Bearer " + s2.keys["root"]})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("plain error: status %d, want 401", resp.StatusCode)
	}
	// An authenticator that returns neither principal nor error must
	// not let the request through as "nobody".
	s3 := newStack(t, stackOptions{authn: fakeAuthn{}})
	resp, body = s3.request(t, "GET", "/admin/v1/keys", "", map[string]string{"Authorization": "Bearer " + s3.keys["root"]})
	if resp.StatusCode < 400 {
		t.Errorf("nil principal, nil error: status %d, body %s", resp.StatusCode, body)
	}
	resp, body = s3.request(t, "POST", "/mcp", initializeBody, mcpHeaders(s3.keys["root"], pvSessions))
	if resp.StatusCode < 400 {
		t.Errorf("nil principal on /mcp: status %d, body %s", resp.StatusCode, body)
	}
}

// spoofHeaders are identity claims a client might try.
var spoofHeaders = map[string]string{
	"X-User-ID":            "root",
	"X-User":               "root",
	"X-Role":               "admin",
	"X-Roles":              "admin",
	"X-Forwarded-User":     "root",
	"X-Remote-User":        "root",
	"X-Authenticated-User": "root",
	"Remote-User":          "root",
	"Forwarded":            `for=127.0.0.1;by=root;user=root`,
	"X-Forwarded-For":      "10.6.6.6",
	"X-Real-IP":            "10.6.6.6",
}

// TestSpoofedIdentityHeaders: identity comes only from the bearer key.
func TestSpoofedIdentityHeaders(t *testing.T) {
	s := newStack(t, stackOptions{})
	t.Run("without a key", func(t *testing.T) {
		for name, v := range spoofHeaders {
			h := mcpHeaders("", pvSessions)
			h[name] = v
			for _, p := range []string{"/mcp", "/admin/v1/keys"} {
				resp, _ := s.request(t, "POST", p, initializeBody, h)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s with %s: status %d, want 401", p, name, resp.StatusCode)
				}
			}
		}
		h := mcpHeaders("", pvSessions)
		for k, v := range spoofHeaders {
			h[k] = v
		}
		resp, _ := s.request(t, "GET", "/admin/v1/audit", "", h)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("all spoof headers: status %d, want 401", resp.StatusCode)
		}
	})
	for _, pv := range []string{pvStateless, pvSessions} {
		t.Run("guest key at "+pv, func(t *testing.T) {
			cs := s.connect(t, s.keys["gina"], pv, spoofHeaders)
			names := toolNames(t, cs)
			if slices.Contains(names, "write_file") || slices.Contains(names, "delete_file") || !slices.Contains(names, "read_file") {
				t.Errorf("guest with spoofed admin headers sees %v", names)
			}
			target := "spoof-" + pv + ".txt"
			res := callTool(t, cs, "write_file", map[string]any{"path": target, "content": "pwned"})
			if !res.IsError || resultCode(res) != string(reason.PermissionDenied) {
				t.Errorf("write_file: isError=%v code=%q text=%q", res.IsError, resultCode(res), resultText(res))
			}
			if _, err := os.Stat(filepath.Join(s.ws, target)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("write_file created the file (stat: %v)", err)
			}
			e := s.spy.wait(t, "policy.deny of write_file", func(e audit.Event) bool {
				return e.Type == audit.PolicyDeny && e.Tool == "write_file" && strings.Contains(string(e.Args), target)
			})
			if e.Principal != "gina" || !slices.Equal(e.Roles, []string{"guest"}) {
				t.Errorf("deny recorded for principal %q roles %v, want gina [guest]", e.Principal, e.Roles)
			}
			// The recorded address is the TCP peer, not X-Forwarded-For.
			if strings.Contains(e.RemoteAddr, "10.6.6.6") || !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") {
				t.Errorf("remote addr %q taken from a client header", e.RemoteAddr)
			}
		})
	}
	t.Run("guest key on the admin API", func(t *testing.T) {
		h := map[string]string{"Authorization": "Bearer " + s.keys["gina"], "Content-Type": "application/json"}
		for k, v := range spoofHeaders {
			h[k] = v
		}
		resp, _ := s.request(t, "POST", "/admin/v1/keys", `{"user":"eve","role":"admin"}`, h)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("status %d, want 403", resp.StatusCode)
		}
		if _, err := s.db.UserByName(context.Background(), "eve"); err == nil {
			t.Error("guest with spoofed headers created a user")
		}
		rid := resp.Header.Get("X-Request-Id")
		e := s.spy.wait(t, "admin.denied", func(e audit.Event) bool { return e.Type == audit.AdminDenied && e.RequestID == rid })
		if e.Principal != "gina" {
			t.Errorf("admin.denied principal %q", e.Principal)
		}
		// The admin API's own 403 is audited as admin.denied, not twice.
		if n := len(s.spy.find(func(e audit.Event) bool { return e.RequestID == rid })); n != 1 {
			t.Errorf("%d events for one refused admin call, want 1", n)
		}
	})
}

// TestRequestID: every response carries a fresh gateway id; a client's
// X-Request-Id is never echoed or recorded.
func TestRequestID(t *testing.T) {
	s := newStack(t, stackOptions{maxBody: 1024})
	const spoofed = "req_AAAAAAAAAAAAAAAAAAAAAAAAAA"
	seen := map[string]bool{}
	for _, c := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
	}{
		{"healthz", "GET", "/healthz", "", nil, 200},
		{"readyz", "GET", "/readyz", "", nil, 200},
		{"not found", "GET", "/nope", "", nil, 404},
		{"unauthenticated", "POST", "/mcp", initializeBody, mcpHeaders("", pvSessions), 401},
		{"mcp ok", "POST", "/mcp", initializeBody, mcpHeaders(s.keys["dev"], pvSessions), 200},
		{"too large", "POST", "/mcp", strings.Repeat(" ", 2048), mcpHeaders(s.keys["dev"], pvSessions), 413},
		{"cross origin", "POST", "/mcp", initializeBody, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"admin", "GET", "/admin/v1/keys", "", map[string]string{"Authorization": "Bearer " + s.keys["root"]}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{"X-Request-Id": spoofed}
			for k, v := range c.hdr {
				h[k] = v
			}
			resp, body := s.request(t, c.method, c.path, c.body, h)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, c.status, body)
			}
			ids := resp.Header.Values("X-Request-Id")
			if len(ids) != 1 || !reqIDRE.MatchString(ids[0]) {
				t.Fatalf("X-Request-Id = %q", ids)
			}
			if ids[0] == spoofed {
				t.Fatal("client's X-Request-Id echoed")
			}
			if seen[ids[0]] {
				t.Fatalf("request id %s reused", ids[0])
			}
			seen[ids[0]] = true
		})
	}
	if evs := s.spy.find(func(e audit.Event) bool { return e.RequestID == spoofed }); len(evs) > 0 {
		t.Errorf("client-chosen request id recorded in %d audit events", len(evs))
	}
}

// TestBodyLimit: bodies over MaxBodyBytes are refused with 413 whether
// declared (Content-Length) or streamed (chunked); exactly the limit passes.
func TestBodyLimit(t *testing.T) {
	const max = 4096
	s := newStack(t, stackOptions{maxBody: max})
	pad := func(n int) string { // initialize padded with trailing spaces to n bytes
		return initializeBody + strings.Repeat(" ", n-len(initializeBody))
	}

	t.Run("declared length over the limit is refused without reading", func(t *testing.T) {
		// Announce a gigabyte and send only a few bytes: a server that
		// tried to read the body would wait forever instead of answering.
		for _, auth := range []string{"", "Authorization: Bearer " + s.keys["dev"] + "\r\n"} {
			conn, err := net.Dial("tcp", s.ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second)) // hang guard only
			fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n{\"jsonrpc\"",
				s.ts.Listener.Addr(), auth, 1<<30)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no response to an oversized declared body: %v", err)
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413: %s", resp.StatusCode, b)
			}
			if !strings.Contains(string(b), "request_too_large") {
				t.Errorf("body %s", b)
			}
		}
	})

	t.Run("declared length one over", func(t *testing.T) {
		resp, body := s.request(t, "POST", "/mcp", pad(max+1), mcpHeaders(s.keys["dev"], pvSessions))
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413: %s", resp.StatusCode, body)
		}
		rid := resp.Header.Get("X-Request-Id")
		if n := len(s.spy.find(func(e audit.Event) bool { return e.RequestID == rid && e.Type == audit.SessionCreate })); n != 0 {
			t.Error("an oversized initialize created a session")
		}
	})

	for _, pv := range []string{pvSessions, pvStateless} {
		t.Run("chunked over the limit at "+pv, func(t *testing.T) {
			for _, size := range []int{max + 1, 10 * max, 1 << 20} {
				req, err := http.NewRequest("POST", s.url+"/mcp", struct{ io.Reader }{strings.NewReader(pad(size))})
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range mcpHeaders(s.keys["dev"], pv) {
					req.Header.Set(k, v)
				}
				resp, body := s.send(t, req)
				if req.ContentLength > 0 {
					t.Fatal("request was not chunked")
				}
				if resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Errorf("%d bytes chunked: status %d, want 413: %s", size, resp.StatusCode, body)
				}
			}
		})
	}

	t.Run("chunked over the limit on the admin API", func(t *testing.T) {
		// A valid request behind 2×max of leading whitespace: only the
		// limit stops it.
		body := strings.Repeat(" ", 2*max) + `{"user":"big","role":"guest"}`
		req, _ := http.NewRequest("POST", s.url+"/admin/v1/keys", struct{ io.Reader }{strings.NewReader(body)})
		req.Header.Set("Authorization", "Bearer "+s.keys["root"])
		resp, b := s.send(t, req)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("status %d, want 4xx: %s", resp.StatusCode, b)
		}
		if _, err := s.db.UserByName(context.Background(), "big"); err == nil {
			t.Error("oversized admin request created a user")
		}
	})

	t.Run("exactly the limit is accepted", func(t *testing.T) {
		for _, chunked := range []bool{false, true} {
			var r io.Reader = strings.NewReader(pad(max))
			if chunked {
				r = struct{ io.Reader }{r}
			}
			req, _ := http.NewRequest("POST", s.url+"/mcp", r)
			for k, v := range mcpHeaders(s.keys["dev"], pvSessions) {
				req.Header.Set(k, v)
			}
			resp, body := s.send(t, req)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") == "" {
				t.Errorf("chunked=%v: %d-byte initialize: status %d, session %q: %s", chunked, max, resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), body)
			}
		}
	})
	t.Run("healthz still serves", func(t *testing.T) {
		if resp, _ := s.request(t, "GET", "/healthz", "", nil); resp.StatusCode != 200 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

// TestOriginCheck: browsers on other origins cannot drive the gateway;
// non-browser clients (no Origin) and same-origin requests can.
func TestOriginCheck(t *testing.T) {
	s := newStack(t, stackOptions{})
	self := s.url // http://127.0.0.1:port
	host := strings.TrimPrefix(self, "http://")

	refused := []map[string]string{
		{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"},
		{"Origin": "https://evil.example"},
		{"Origin": "http://localhost.evil.example"},
		{"Origin": "null"},
	}
	for i, extra := range refused {
		t.Run(fmt.Sprintf("refused %d %v", i, extra), func(t *testing.T) {
			// With a valid admin key, and without: the origin check
			// comes before authentication.
			for _, key := range []string{s.keys["root"], ""} {
				h := mcpHeaders(key, pvSessions)
				for k, v := range extra {
					h[k] = v
				}
				resp, body := s.request(t, "POST", "/mcp", initializeBody, h)
				if resp.StatusCode != http.StatusForbidden {
					t.Fatalf("key=%v: status %d, want 403: %s", key != "", resp.StatusCode, body)
				}
				if resp.Header.Get("Mcp-Session-Id") != "" {
					t.Error("a refused request opened a session")
				}
				h["Content-Type"] = "application/json"
				resp, body = s.request(t, "POST", "/admin/v1/keys", `{"user":"csrf","role":"admin"}`, h)
				if resp.StatusCode != http.StatusForbidden {
					t.Fatalf("admin: status %d, want 403: %s", resp.StatusCode, body)
				}
			}
			if _, err := s.db.UserByName(context.Background(), "csrf"); err == nil {
				t.Fatal("a cross-origin POST created an admin user")
			}
		})
	}

	allowed := []map[string]string{
		{},
		{"Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "none"},
		{"Origin": self},
		{"Origin": self, "Sec-Fetch-Site": "same-origin"},
	}
	for i, extra := range allowed {
		t.Run(fmt.Sprintf("allowed %d %v", i, extra), func(t *testing.T) {
			h := mcpHeaders(s.keys["dev"], pvSessions)
			for k, v := range extra {
				h[k] = v
			}
			resp, body := s.request(t, "POST", "/mcp", initializeBody, h)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
			}
		})
	}

	// DNS rebinding: the page's origin and the Host header are both the
	// attacker's name, which now resolves to 127.0.0.1. The browser calls
	// it same-origin; only the Host check stops it.
	for _, h := range []string{"evil.example", "evil.example:80", "localhost.evil.example", "127.0.0.1.nip.io", "[::2]"} {
		t.Run("host "+h, func(t *testing.T) {
			hdr := mcpHeaders(s.keys["dev"], pvSessions)
			hdr["Host"] = h
			hdr["Origin"] = "http://" + h
			hdr["Sec-Fetch-Site"] = "same-origin"
			resp, body := s.request(t, "POST", "/mcp", initializeBody, hdr)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403: %s", resp.StatusCode, body)
			}
			if resp.Header.Get("Mcp-Session-Id") != "" {
				t.Error("rebinding request opened a session")
			}
			hdr = mcpHeaders(s.keys["dev"], pvStateless)
			hdr["Host"] = h
			resp, body = s.request(t, "POST", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`, hdr)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("stateless: status %d, want 403: %s", resp.StatusCode, body)
			}
			// The admin API is guarded by our own check, not the SDK's.
			resp, body = s.request(t, "POST", "/admin/v1/keys", `{"user":"rebound","role":"admin"}`,
				map[string]string{"Authorization": "Bearer " + s.keys["root"], "Content-Type": "application/json", "Host": h})
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("admin API: status %d, want 403: %s", resp.StatusCode, body)
			}
			if _, err := s.db.UserByName(context.Background(), "rebound"); err == nil {
				t.Fatal("a rebinding request created an admin user")
			}
		})
	}
	t.Run("loopback host names pass", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(host)
		for _, h := range []string{host, "localhost:" + port, "127.0.0.1"} {
			hdr := mcpHeaders(s.keys["dev"], pvSessions)
			hdr["Host"] = h
			resp, body := s.request(t, "POST", "/mcp", initializeBody, hdr)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("Host %s: status %d: %s", h, resp.StatusCode, body)
			}
		}
	})
}

// TestMCPOverHTTP: the official client works at both protocol eras, and
// the roles in force decide what it sees and can do.
func TestMCPOverHTTP(t *testing.T) {
	s := newStack(t, stackOptions{})
	if err := os.WriteFile(filepath.Join(s.ws, "hello.txt"), []byte("hello workspace\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, pv := range []string{pvStateless, pvSessions} {
		t.Run(pv, func(t *testing.T) {
			dev := s.connect(t, s.keys["dev"], pv, nil)
			if got := dev.InitializeResult().ProtocolVersion; got != pv {
				t.Errorf("negotiated %s, want %s", got, pv)
			}
			if hasSession := dev.ID() != ""; hasSession != (pv == pvSessions) {
				t.Errorf("session id %q at %s", dev.ID(), pv)
			}
			names := toolNames(t, dev)
			for _, want := range []string{"read_file", "write_file", "list_directory"} {
				if !slices.Contains(names, want) {
					t.Errorf("developer tools/list %v lacks %s", names, want)
				}
			}
			res := callTool(t, dev, "read_file", map[string]any{"path": "hello.txt"})
			if res.IsError || !strings.Contains(resultText(res), "hello workspace") {
				t.Errorf("read_file: isError=%v %q", res.IsError, resultText(res))
			}
			target := "dev-" + pv + ".txt"
			res = callTool(t, dev, "write_file", map[string]any{"path": target, "content": "by dev"})
			if res.IsError {
				t.Fatalf("write_file: %s", resultText(res))
			}
			if b, err := os.ReadFile(filepath.Join(s.ws, target)); err != nil || string(b) != "by dev" {
				t.Errorf("file = %q, %v", b, err)
			}
			e := s.spy.wait(t, "tool.call.end", func(e audit.Event) bool {
				return e.Type == audit.ToolCallEnd && e.Tool == "write_file" && strings.Contains(string(e.Args), target)
			})
			if e.Principal != "dev" || !reqIDRE.MatchString(e.RequestID) || !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") {
				t.Errorf("tool.call.end %+v", e)
			}
			if pv == pvSessions && e.Session != dev.ID() {
				t.Errorf("event session %q, want %q", e.Session, dev.ID())
			}

			guest := s.connect(t, s.keys["gina"], pv, nil)
			if names := toolNames(t, guest); slices.Contains(names, "write_file") || !slices.Contains(names, "read_file") {
				t.Errorf("guest tools/list %v", names)
			}
		})
	}
}

// sessionPost sends a raw JSON-RPC POST on session sid with key.
func (s *stack) sessionPost(t testing.TB, key, sid, body string) (*http.Response, []byte) {
	t.Helper()
	h := mcpHeaders(key, pvSessions)
	h["Mcp-Session-Id"] = sid
	return s.request(t, "POST", "/mcp", body, h)
}

// TestSessionHijack: a 2025-11-25 session is bound to the user who opened
// it; another user's valid key cannot use, stream or delete it, even with
// the same roles.
func TestSessionHijack(t *testing.T) {
	s := newStack(t, stackOptions{})
	victim := s.connect(t, s.keys["dev"], pvSessions, nil)
	sid := victim.ID()
	if sid == "" {
		t.Fatal("no session id")
	}
	write := func(path string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"` + path + `","content":"x"}}}`
	}
	for _, thief := range []string{"mallory", "gina", "root"} {
		t.Run(thief, func(t *testing.T) {
			target := "hijack-" + thief + ".txt"
			resp, body := s.sessionPost(t, s.keys[thief], sid, write(target))
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Fatalf("POST on %s's session with %s's key: status %d: %s", "dev", thief, resp.StatusCode, body)
			}
			if _, err := os.Stat(filepath.Join(s.ws, target)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("hijacked session wrote the file (stat %v)", err)
			}
			rid := resp.Header.Get("X-Request-Id")
			e := s.spy.wait(t, "request.invalid", func(e audit.Event) bool { return e.Type == audit.RequestInvalid && e.RequestID == rid })
			if e.Principal != thief {
				t.Errorf("refusal recorded for %q, want %q", e.Principal, thief)
			}
			if n := len(s.spy.find(func(e audit.Event) bool { return e.RequestID == rid && e.Type == audit.ToolCallStart })); n != 0 {
				t.Error("a tool started on a hijacked session")
			}
			// Nor the stream, nor termination.
			h := map[string]string{"Authorization": "Bearer " + s.keys[thief], "Accept": "text/event-stream",
				"Mcp-Session-Id": sid, "Mcp-Protocol-Version": pvSessions}
			if resp, _ := s.request(t, "GET", "/mcp", "", h); resp.StatusCode < 400 {
				t.Errorf("GET stream of another user's session: status %d", resp.StatusCode)
			}
			if resp, _ := s.request(t, "DELETE", "/mcp", "", h); resp.StatusCode < 400 {
				t.Errorf("DELETE of another user's session: status %d", resp.StatusCode)
			}
		})
	}
	t.Run("owner still served", func(t *testing.T) {
		resp, body := s.sessionPost(t, s.keys["dev"], sid, write("owner.txt"))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"result"`) {
			t.Fatalf("owner's raw POST: status %d: %s", resp.StatusCode, body)
		}
		if _, err := os.Stat(filepath.Join(s.ws, "owner.txt")); err != nil {
			t.Errorf("owner's write_file: %v", err)
		}
		if names := toolNames(t, victim); !slices.Contains(names, "write_file") {
			t.Errorf("owner session broken after hijack attempts: %v", names)
		}
	})
	t.Run("stateless header with a session id is not a bypass", func(t *testing.T) {
		h := mcpHeaders(s.keys["mallory"], pvStateless)
		h["Mcp-Session-Id"] = sid
		resp, body := s.request(t, "POST", "/mcp", write("hijack-stateless.txt"), h)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("status %d, want 4xx: %s", resp.StatusCode, body)
		}
		if _, err := os.Stat(filepath.Join(s.ws, "hijack-stateless.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("file written (stat %v)", err)
		}
	})
}

// TestMalformedRequests: protocol-level garbage from an authenticated
// principal is refused and audited as request.invalid with that
// principal.
func TestMalformedRequests(t *testing.T) {
	s := newStack(t, stackOptions{})
	cases := []struct {
		name, pv, body string
		hdr            map[string]string
	}{
		{name: "not json", pv: pvSessions, body: `{not json`},
		{name: "not json stateless", pv: pvStateless, body: `{not json`},
		{name: "empty body", pv: pvSessions, body: ``},
		{name: "batch", pv: pvSessions, body: `[` + initializeBody + `,` + initializeBody + `]`},
		{name: "wrong jsonrpc version", pv: pvSessions, body: `{"jsonrpc":"1.0","id":1,"method":"initialize"}`},
		{name: "wrong content type", pv: pvSessions, body: initializeBody, hdr: map[string]string{"Content-Type": "text/plain"}},
		{name: "unknown session", pv: pvSessions, body: initializeBody, hdr: map[string]string{"Mcp-Session-Id": "no-such-session"}},
		{name: "unsupported protocol", pv: "1999-01-01", body: initializeBody},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := mcpHeaders(s.keys["dev"], c.pv)
			for k, v := range c.hdr {
				h[k] = v
			}
			resp, body := s.request(t, "POST", "/mcp", c.body, h)
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Fatalf("status %d, want 4xx: %s", resp.StatusCode, body)
			}
			rid := resp.Header.Get("X-Request-Id")
			e := s.spy.wait(t, "request.invalid", func(e audit.Event) bool { return e.Type == audit.RequestInvalid && e.RequestID == rid })
			if e.Principal != "dev" || !slices.Equal(e.Roles, []string{"developer"}) || e.Reason != reason.BadRequest || e.Status != audit.StatusRefused {
				t.Errorf("event %+v", e)
			}
			if !strings.Contains(e.Detail, fmt.Sprintf("HTTP %d", resp.StatusCode)) {
				t.Errorf("detail %q lacks the status", e.Detail)
			}
		})
	}
	t.Run("admin 400 is recorded", func(t *testing.T) {
		resp, _ := s.request(t, "POST", "/admin/v1/keys", `{"user":"x","role":"nope"}`,
			map[string]string{"Authorization": "Bearer " + s.keys["root"], "Content-Type": "application/json"})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
		rid := resp.Header.Get("X-Request-Id")
		e := s.spy.wait(t, "request.invalid", func(e audit.Event) bool { return e.Type == audit.RequestInvalid && e.RequestID == rid })
		if e.Principal != "root" {
			t.Errorf("principal %q", e.Principal)
		}
	})
}

func TestHealthAndReady(t *testing.T) {
	s := newStack(t, stackOptions{})
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, body := s.request(t, "GET", p, "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d: %s", p, resp.StatusCode, body)
		}
		if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", p, resp.Header)
		}
	}
	s.ready.set(errors.New("store unreachable: /var/lib/secret.db"))
	resp, body := s.request(t, "GET", "/readyz", "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with failing check: status %d", resp.StatusCode)
	}
	var v map[string]string
	if err := json.Unmarshal(body, &v); err != nil || v["status"] != "not ready" {
		t.Errorf("body %s", body)
	}
	if strings.Contains(string(body), "secret.db") {
		t.Errorf("readyz leaks the cause: %s", body)
	}
	if !strings.Contains(s.logs.String(), "store unreachable") {
		t.Error("readyz failure cause not logged for the operator")
	}
	if resp, _ := s.request(t, "GET", "/healthz", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz follows readiness: %d", resp.StatusCode)
	}
	s.ready.set(nil)
	if resp, _ := s.request(t, "GET", "/readyz", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("readyz after recovery: %d", resp.StatusCode)
	}
}

func TestUnknownPaths(t *testing.T) {
	s := newStack(t, stackOptions{})
	for _, c := range []struct {
		method, path string
		key          string
		status       int
	}{
		{"GET", "/", "", 404},
		{"GET", "/nope", "", 404},
		{"GET", "/mcp/extra", "", 404},
		{"GET", "/admin", "", 404},
		{"POST", "/healthz", "", 404},
		{"GET", "/ADMIN/v1/keys", "", 404},
		{"GET", "/admin/v1/xyz", "root", 404},
		{"GET", "/admin/v1/xyz", "", 401}, // authentication before routing
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			h := map[string]string{}
			if c.key != "" {
				h["Authorization"] = "Bearer " + s.keys[c.key]
			}
			resp, body := s.request(t, c.method, c.path, "", h)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			var v map[string]string
			if err := json.Unmarshal(body, &v); err != nil || v["error"] == "" {
				t.Errorf("body %q is not a JSON error: %v", body, err)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

// TestRecoverer: a panicking handler yields 500 without details, the
// request id is kept and logged, and the server keeps serving.
func TestRecoverer(t *testing.T) {
	panicky := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/admin/v1/panic" {
			panic("secret internal state 0xdeadbeef")
		}
		w.WriteHeader(http.StatusNoContent)
	})
	s := newStack(t, stackOptions{admin: panicky})
	h := map[string]string{"Authorization": "Bearer " + s.keys["root"]}
	for range 3 {
		resp, body := s.request(t, "GET", "/admin/v1/panic", "", h)
		if resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("status %d, want 500", resp.StatusCode)
		}
		if strings.Contains(string(body), "deadbeef") || strings.Contains(string(body), "goroutine") {
			t.Errorf("500 body leaks the panic: %s", body)
		}
		rid := resp.Header.Get("X-Request-Id")
		if !reqIDRE.MatchString(rid) {
			t.Errorf("500 without request id: %q", rid)
		}
		logs := s.logs.String()
		if !strings.Contains(logs, "deadbeef") {
			t.Error("panic value not logged")
		}
		if !strings.Contains(logs, "request_id="+rid) {
			t.Errorf("panic log does not carry the request id %s", rid)
		}
	}
	if resp, _ := s.request(t, "GET", "/admin/v1/ok", "", h); resp.StatusCode != http.StatusNoContent {
		t.Errorf("after panics: status %d", resp.StatusCode)
	}
	if resp, _ := s.request(t, "GET", "/healthz", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz after panics: %d", resp.StatusCode)
	}

	t.Run("Chain()[0] directly", func(t *testing.T) {
		rec := s.srv.Chain()[0]
		if rec.Name != "recover" {
			t.Fatalf("Chain()[0] = %s", rec.Name)
		}
		w := httptest.NewRecorder()
		rec.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(errBoom) })).
			ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
		if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"internal"`) {
			t.Errorf("recorder: %d %s", w.Code, w.Body)
		}
	})
	t.Run("ErrAbortHandler passes through", func(t *testing.T) {
		rec := s.srv.Chain()[0]
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler re-panicked", v)
			}
		}()
		rec.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })).
			ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
		t.Error("ErrAbortHandler was swallowed")
	})
}

func TestRequestMeta(t *testing.T) {
	r := httptest.NewRequest("GET", "/x", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	r.Header.Set("X-Forwarded-For", "10.6.6.6")
	r.Header.Set("X-Request-Id", "req_spoofed")
	id, remote := server.RequestMeta(r)
	if id != "" || remote != "192.0.2.1:1234" {
		t.Errorf("RequestMeta = %q, %q", id, remote)
	}
	// Through the chain the id is the one in the response header.
	s := newStack(t, stackOptions{noHTTP: true})
	var got string
	h := s.srv.Chain()[1].Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got, _ = server.RequestMeta(r) }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got == "" || got != w.Header().Get("X-Request-Id") || got == "req_spoofed" {
		t.Errorf("handler saw %q, header %q", got, w.Header().Get("X-Request-Id"))
	}
}

// TestShutdown: a server with an open session and a hanging GET stream
// shuts down cleanly: Shutdown ends the stream itself instead of waiting
// for the deadline.
func TestShutdown(t *testing.T) {
	s := newStack(t, stackOptions{noHTTP: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(ln) }()
	s.url = "http://" + ln.Addr().String()

	// Open a session by hand so that the hanging GET stream is ours and
	// certainly established (status received) before Shutdown.
	resp, body := s.request(t, "POST", "/mcp", initializeBody, mcpHeaders(s.keys["dev"], pvSessions))
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.sessionPost(t, s.keys["dev"], sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode/100 != 2 {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", s.url+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+s.keys["dev"])
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", pvSessions)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard
	defer cancel()
	resp, err = http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: status %d", resp.StatusCode)
	}
	// And an SDK client session, with its own standalone stream.
	cs := s.connect(t, s.keys["dev"], pvSessions, nil)
	if names := toolNames(t, cs); len(names) == 0 {
		t.Fatal("no tools")
	}
	streamDone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, resp.Body)
		close(streamDone)
	}()

	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown = %v, want nil (streams should be ended, not waited for)", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve returned %v after Shutdown, want nil", err)
	}
	select {
	case <-streamDone:
	case <-ctx.Done():
		t.Fatal("GET stream still open after Shutdown returned")
	}
	// No new connections.
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("listener still accepting after Shutdown")
	}
}

// TestPrincipalReachesAdminAPI: the principal the admin API sees is the
// key's, with the key's roles.
func TestPrincipalReachesAdminAPI(t *testing.T) {
	var got *principal.Principal
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = principal.FromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	s := newStack(t, stackOptions{admin: admin})
	h := map[string]string{"Authorization": "Bearer " + s.keys["gina"]}
	for k, v := range spoofHeaders {
		h[k] = v
	}
	if resp, _ := s.request(t, "GET", "/admin/v1/anything", "", h); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	want := &principal.Principal{Name: "gina", Roles: []string{"guest"}, KeyID: s.keyIDs["gina"], Method: principal.MethodAPIKey}
	if got == nil {
		t.Fatal("no principal in context")
	}
	got.UserID = 0
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("principal (-want +got):\n%s", diff)
	}
}

// TestSessionCredentialsPerRequest: a session does not freeze the
// credential that opened it. Each request is authenticated again: a key
// revoked mid-session is refused at once, and a narrower key of the same
// user gets only its own roles on that session.
func TestSessionCredentialsPerRequest(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	u, err := s.db.UserByName(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.GrantUserRole(ctx, u.ID, "guest"); err != nil {
		t.Fatal(err)
	}
	guestKey, _ := s.addKey("dev", "guest")
	devKey, devKeyID := s.addKey("dev", "developer")

	resp, body := s.request(t, "POST", "/mcp", initializeBody, mcpHeaders(devKey, pvSessions))
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.sessionPost(t, devKey, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode/100 != 2 {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	write := func(path string) string {
		return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"` + path + `","content":"x"}}}`
	}

	resp, body = s.sessionPost(t, guestKey, sid, write("narrow.txt"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), string(reason.PermissionDenied)) {
		t.Errorf("guest key on a developer session: %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(s.ws, "narrow.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("guest key wrote through the developer session (stat %v)", err)
	}

	resp, body = s.sessionPost(t, devKey, sid, write("wide.txt"))
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"isError":true`) {
		t.Fatalf("developer key: %d %s", resp.StatusCode, body)
	}

	if _, err := s.db.RevokeAPIKey(ctx, devKeyID, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, body = s.sessionPost(t, devKey, sid, write("after-revoke.txt"))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked key on its own session: %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(s.ws, "after-revoke.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("revoked key wrote (stat %v)", err)
	}
}
