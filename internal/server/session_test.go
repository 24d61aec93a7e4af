package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/clocktest"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/server"
	"github.com/portcullis/portcullis/internal/ui"
)

// Tests of the web console's HTTP side (issue 10): the page's security
// headers, sign-in, the session cookie, CSRF tokens, and that a session
// is exactly as strong as the credential behind it.

// tokenRE is a session id or CSRF token: 32 random bytes, base64url.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// fakeClock is a settable clock for session expiry.
func newClock() *clocktest.Clock { return clocktest.New(time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)) }

var jsonCT = map[string]string{"Content-Type": "application/json"}

func signInBody(key string) string {
	b, _ := json.Marshal(server.SignInRequest{Key: key})
	return string(b)
}

// signIn signs in with key, requires success, and returns the session id
// (from Set-Cookie) and the CSRF token.
func (s *stack) signIn(t *testing.T, key string) (id, csrf string) {
	t.Helper()
	resp, body := s.request(t, "POST", "/ui/session", signInBody(key), jsonCT)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	var out server.SignInResponse
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		if c.Name == server.SessionCookie {
			id = c.Value
		}
	}
	if id == "" || out.CSRF == "" {
		t.Fatalf("sign-in gave no session cookie or CSRF token: %v %s", resp.Header, body)
	}
	return id, out.CSRF
}

// sess returns the headers of a console request: the session cookie and,
// when csrf is not empty, the CSRF header.
func sess(id, csrf string) map[string]string {
	h := map[string]string{"Cookie": server.SessionCookie + "=" + id}
	if csrf != "" {
		h[server.CSRFHeader] = csrf
	}
	return h
}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// authFailures returns the auth.failure events whose detail has substr.
func (s *stack) authFailures(substr string) []audit.Event {
	return s.spy.find(func(e audit.Event) bool { return e.Type == audit.AuthFailure && strings.Contains(e.Detail, substr) })
}

func TestConsoleChainOrder(t *testing.T) {
	s := newStack(t, stackOptions{noHTTP: true, console: true})
	var got []string
	for _, n := range s.srv.ConsoleChain() {
		got = append(got, n.Name)
	}
	want := []string{"recover", "request_id", "body_limit", "console_headers", "origin"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ConsoleChain() (-want +got):\n%s", diff)
	}
}

// TestConsoleHeaders: every /ui/ answer — page, script, style sheet,
// errors, sign-in — carries the CSP and the anti-framing, anti-sniffing,
// no-referrer and no-store headers; the page is public.
func TestConsoleHeaders(t *testing.T) {
	s := newStack(t, stackOptions{console: true})
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
		"X-Frame-Options":        "DENY",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
		"Cache-Control":          "no-store",
	}
	cases := []struct {
		method, path, body string
		hdr                map[string]string
		status             int
		ctype              string // prefix; "" = not checked
		contains           string
	}{
		{method: "GET", path: "/ui/", status: 200, ctype: "text/html", contains: `<script src="app.js" defer></script>`},
		{method: "HEAD", path: "/ui/", status: 200, ctype: "text/html"},
		{method: "GET", path: "/ui/app.js", status: 200, ctype: "text/javascript", contains: "X-CSRF-Token"},
		{method: "GET", path: "/ui/app.css", status: 200, ctype: "text/css"},
		{method: "GET", path: "/ui/index.html", status: 200, ctype: "text/html"},
		{method: "GET", path: "/ui/session", status: 405},
		{method: "GET", path: "/ui/nope.js", status: 404},
		{method: "POST", path: "/ui/app.js", status: 405},
		{method: "PUT", path: "/ui/session", status: 405},
		{method: "POST", path: "/ui/session", body: `{"key":"x"}`, hdr: jsonCT, status: 401},
		{method: "GET", path: "/ui", status: 301},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, s.url+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			body := string(b)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.status, body)
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tc.ctype != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) {
				t.Errorf("Content-Type %q, want %s", resp.Header.Get("Content-Type"), tc.ctype)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body does not contain %q", tc.contains)
			}
		})
	}
}

// TestConsoleOff: without Deps.ConsoleAllowed there is no /ui/ and a
// session cookie is never read.
func TestConsoleOff(t *testing.T) {
	on := newStack(t, stackOptions{console: true})
	id, csrf := on.signIn(t, on.keys["root"])
	off := newStack(t, stackOptions{})
	if resp, _ := off.request(t, "GET", "/ui/", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/ with the console off: %d, want 404", resp.StatusCode)
	}
	if resp, _ := off.request(t, "POST", "/ui/session", signInBody(off.keys["root"]), jsonCT); resp.StatusCode != http.StatusNotFound {
		t.Errorf("sign-in with the console off: %d, want 404", resp.StatusCode)
	}
	if resp, body := off.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("cookie with the console off: %d %s, want 401", resp.StatusCode, body)
	}
}

// TestSignInRefusals: a credential that fails gets the bearer path's
// generic 401 and an auth.failure event with its cause; a principal
// without any admin permission gets 403 and admin.denied; malformed and
// oversized bodies are refused; no refusal sets a cookie, and the
// credential never reaches the audit log or the logs.
func TestSignInRefusals(t *testing.T) {
	s := newStack(t, stackOptions{console: true})
	unknown, _, _, _ := s.authn.NewKey()
	cases := []struct {
		name   string
		body   string
		ctype  string
		status int
		event  audit.Type // "" = none checked
		detail string
	}{
		{name: "unknown key", body: signInBody(unknown), status: 401, event: audit.AuthFailure, detail: "POST /ui/session: " + authn.CauseUnknown},
		{name: "revoked key", body: signInBody(s.keys["rex"]), status: 401, event: audit.AuthFailure, detail: "POST /ui/session: " + authn.CauseRevoked},
		{name: "malformed key", body: signInBody("hunter2"), status: 401, event: audit.AuthFailure, detail: "POST /ui/session: " + authn.CauseMalformed},
		{name: "empty key", body: `{"key":""}`, status: 401, event: audit.AuthFailure, detail: "POST /ui/session: " + authn.CauseMissing},
		{name: "non-admin", body: signInBody(s.keys["dev"]), status: 403, event: audit.AdminDenied, detail: "POST /ui/session: no admin permission"},
		{name: "guest", body: signInBody(s.keys["gina"]), status: 403, event: audit.AdminDenied, detail: "POST /ui/session: no admin permission"},
		{name: "form body", body: "key=" + s.keys["root"], ctype: "application/x-www-form-urlencoded", status: 415},
		{name: "text body", body: signInBody(s.keys["root"]), ctype: "text/plain", status: 415},
		{name: "not json", body: `{"key":`, status: 400},
		{name: "unknown field", body: `{"key":"` + s.keys["root"] + `","user":"root"}`, status: 400},
		{name: "two objects", body: signInBody(s.keys["root"]) + signInBody(s.keys["root"]), status: 400},
		{name: "oversized", body: `{"key":"` + strings.Repeat("a", 20<<10) + `"}`, status: 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.ctype
			if ct == "" {
				ct = "application/json"
			}
			resp, body := s.request(t, "POST", "/ui/session", tc.body, map[string]string{"Content-Type": ct})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			if c := resp.Header.Values("Set-Cookie"); len(c) > 0 {
				t.Errorf("refusal set a cookie: %q", c)
			}
			if tc.status == 401 && !strings.Contains(string(body), `"message":"authentication required"`) {
				t.Errorf("401 body %s is not the generic one", body)
			}
			if tc.status == 403 && !strings.Contains(string(body), `"message":"access denied"`) {
				t.Errorf("403 body %s is not the generic one", body)
			}
			if tc.event != "" {
				s.spy.wait(t, string(tc.event)+" "+tc.detail, func(e audit.Event) bool {
					return e.Type == tc.event && strings.HasPrefix(e.Detail, tc.detail)
				})
			}
		})
	}
	all := dumpEvents(s.spy.all()) + s.logs.String()
	for _, k := range []string{unknown, s.keys["rex"], s.keys["dev"], s.keys["gina"], s.keys["root"]} {
		if strings.Contains(all, k) {
			t.Errorf("a credential reached the audit log or the logs")
		}
	}
}

// TestSignInCookie: success sets exactly one session cookie with the
// __Host- prefix, Path=/, Secure, HttpOnly and SameSite=Strict, and no
// Domain or lifetime; the body has a CSRF token distinct from the id.
func TestSignInCookie(t *testing.T) {
	s := newStack(t, stackOptions{console: true})
	resp, body := s.request(t, "POST", "/ui/session", signInBody(s.keys["root"]), jsonCT)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	cookies := resp.Header.Values("Set-Cookie")
	if len(cookies) != 1 {
		t.Fatalf("Set-Cookie %q, want one", cookies)
	}
	parts := strings.Split(cookies[0], "; ")
	name, id, _ := strings.Cut(parts[0], "=")
	if name != "__Host-portcullis_session" || !tokenRE.MatchString(id) {
		t.Errorf("cookie %q, want __Host-portcullis_session=<43 base64url chars>", parts[0])
	}
	attrs := slices.Sorted(slices.Values(parts[1:]))
	if diff := cmp.Diff([]string{"HttpOnly", "Path=/", "SameSite=Strict", "Secure"}, attrs); diff != "" {
		t.Errorf("cookie attributes (-want +got):\n%s", diff)
	}
	var out server.SignInResponse
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if out.Principal != "root" || !tokenRE.MatchString(out.CSRF) || out.CSRF == id {
		t.Errorf("sign-in answer %+v", out)
	}
	if strings.Contains(string(body), id) || strings.Contains(string(body), s.keys["root"]) {
		t.Errorf("sign-in body leaks the session id or the key: %s", body)
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != ui.ContentSecurityPolicy {
		t.Errorf("sign-in answer CSP %q", got)
	}
}

// TestSessionCSRF: a session cookie authenticates /admin/v1/ only with
// the session's CSRF token, for every method; a bearer header wins over
// a cookie; the cookie never authenticates /mcp, and the session id is
// never taken from the query string.
func TestSessionCSRF(t *testing.T) {
	s := newStack(t, stackOptions{console: true})
	id, csrf := s.signIn(t, s.keys["root"])
	other, _ := s.signIn(t, s.keys["root"])
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
	}{
		{"cookie and token", "GET", "/admin/v1/users", "", sess(id, csrf), 200},
		{"cookie without token", "GET", "/admin/v1/users", "", sess(id, ""), 403},
		{"cookie with wrong token", "GET", "/admin/v1/users", "", sess(id, strings.Repeat("A", 43)), 403},
		{"cookie with the token of another session", "GET", "/admin/v1/users", "", sess(other, csrf), 403},
		{"token in the cookie's place", "GET", "/admin/v1/users", "", sess(csrf, csrf), 401},
		{"unknown session", "GET", "/admin/v1/users", "", sess(strings.Repeat("B", 43), csrf), 401},
		{"post with token", "POST", "/admin/v1/users", `{"name":"carol","roles":["guest"]}`, with(sess(id, csrf), "Content-Type", "application/json"), 201},
		{"post without token", "POST", "/admin/v1/users", `{"name":"dave","roles":["guest"]}`, with(sess(id, ""), "Content-Type", "application/json"), 403},
		{"cross-site post with token", "POST", "/admin/v1/users", `{"name":"erin","roles":["guest"]}`,
			with(sess(id, csrf), "Content-Type", "application/json", "Sec-Fetch-Site", "cross-site"), 403},
		{"bearer wins over cookie", "GET", "/admin/v1/users", "", with(sess(id, csrf), "Authorization", "Bearer "+s.keys["dev"]), 403},
		{"session id in the query", "GET", "/admin/v1/users?" + server.SessionCookie + "=" + id, "", map[string]string{server.CSRFHeader: csrf}, 401},
		{"cookie on /mcp", "POST", "/mcp", initializeBody, with(sess(id, csrf), "Content-Type", "application/json", "Accept", "application/json, text/event-stream"), 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := s.request(t, tc.method, tc.path, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.status)
			}
		})
	}
	if len(s.authFailures("GET /admin/v1/users: "+server.CauseCSRF)) < 3 {
		t.Errorf("CSRF refusals not audited as auth.failure:\n%s", dumpEvents(s.spy.all()))
	}
	if evs := s.authFailures("POST /mcp: " + authn.CauseMissing); len(evs) != 1 {
		t.Errorf("the cookie on /mcp was not refused as a missing credential:\n%s", dumpEvents(s.spy.all()))
	}
	// The session still works after all that.
	if resp, body := s.request(t, "GET", "/admin/v1/keys", "", sess(id, csrf)); resp.StatusCode != 200 {
		t.Errorf("session after refusals: %d %s", resp.StatusCode, body)
	}
}

// TestSessionFollowsCredential: the session re-authenticates its
// credential on every request, so revoking the key ends it at once (and
// for good), and a quarantine refuses it.
func TestSessionFollowsCredential(t *testing.T) {
	var quarantined atomic.Bool
	s := newStack(t, stackOptions{console: true, deps: func(d *server.Deps) {
		d.Quarantined = func(name string) bool { return name == "ops" && quarantined.Load() }
	}})
	key, keyID := s.addKey("ops", "admin")
	id, csrf := s.signIn(t, key)
	if resp, body := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != 200 {
		t.Fatalf("fresh session: %d %s", resp.StatusCode, body)
	}
	quarantined.Store(true)
	if resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != 403 {
		t.Errorf("quarantined principal's session: %d, want 403", resp.StatusCode)
	}
	quarantined.Store(false)
	if resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != 200 {
		t.Errorf("released principal's session: %d, want 200", resp.StatusCode)
	}
	if _, err := s.db.RevokeAPIKey(context.Background(), keyID, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf))
	if resp.StatusCode != 401 {
		t.Fatalf("session of a revoked key: %d, want 401", resp.StatusCode)
	}
	if evs := s.authFailures("GET /admin/v1/users: " + authn.CauseRevoked); len(evs) != 1 || evs[0].Principal != "ops" {
		t.Errorf("revoked key's session not audited: %v", evs)
	}
	if c := resp.Cookies(); len(c) != 1 || c[0].Name != server.SessionCookie || c[0].MaxAge >= 0 {
		t.Errorf("refusal did not expire the cookie: %v", resp.Header.Values("Set-Cookie"))
	}
	if resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != 401 {
		t.Errorf("ended session: %d, want 401", resp.StatusCode)
	}
	if evs := s.authFailures("GET /admin/v1/users: " + server.CauseSessionUnknown); len(evs) != 1 {
		t.Errorf("the session did not end with the key: %v", evs)
	}
}

// TestSessionExpiry: a session ends after DefaultConsoleIdleTimeout
// without use and after DefaultConsoleMaxAge whatever its use.
func TestSessionExpiry(t *testing.T) {
	clock := newClock()
	s := newStack(t, stackOptions{console: true, deps: func(d *server.Deps) { d.Now = clock.Now }})
	get := func(id, csrf string) int {
		resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf))
		return resp.StatusCode
	}

	idle, idleCSRF := s.signIn(t, s.keys["root"])
	for range 3 { // use keeps it alive past the idle timeout
		clock.Advance(server.DefaultConsoleIdleTimeout - time.Minute)
		if st := get(idle, idleCSRF); st != 200 {
			t.Fatalf("session used within the idle timeout: %d", st)
		}
	}
	clock.Advance(server.DefaultConsoleIdleTimeout)
	if st := get(idle, idleCSRF); st != 401 {
		t.Errorf("idle session: %d, want 401", st)
	}
	if evs := s.authFailures(server.CauseSessionExpired); len(evs) != 1 {
		t.Errorf("idle expiry not audited: %v", evs)
	}

	long, longCSRF := s.signIn(t, s.keys["root"])
	step := server.DefaultConsoleIdleTimeout / 2
	for elapsed := step; elapsed < server.DefaultConsoleMaxAge; elapsed += step {
		clock.Advance(step)
		if st := get(long, longCSRF); st != 200 {
			t.Fatalf("session at %v: %d, want 200", elapsed, st)
		}
	}
	clock.Advance(step)
	if st := get(long, longCSRF); st != 401 {
		t.Errorf("session past its absolute lifetime: %d, want 401", st)
	}
}

// TestSessionCSRFFailureNoTouch: requests refused for a missing or wrong
// CSRF token (admin API and sign-out alike) do not mark the session used,
// so a cross-site page firing them cannot keep an abandoned session alive
// past its idle timeout; a request with the token does.
func TestSessionCSRFFailureNoTouch(t *testing.T) {
	clock := newClock()
	s := newStack(t, stackOptions{console: true, deps: func(d *server.Deps) { d.Now = clock.Now }})
	id, csrf := s.signIn(t, s.keys["root"])
	forged := []struct{ method, path, csrf string }{
		{"GET", "/admin/v1/users", ""},
		{"GET", "/admin/v1/users", strings.Repeat("A", 43)},
		{"DELETE", "/ui/session", ""},
		{"DELETE", "/ui/session", strings.Repeat("A", 43)},
	}
	step := server.DefaultConsoleIdleTimeout / time.Duration(len(forged)+1)
	for _, f := range forged {
		clock.Advance(step)
		if resp, body := s.request(t, f.method, f.path, "", sess(id, f.csrf)); resp.StatusCode != 403 {
			t.Fatalf("%s %s with CSRF %q: %d %s, want 403", f.method, f.path, f.csrf, resp.StatusCode, body)
		}
	}
	// Idle timeout since sign-in: the forged requests did not count as use.
	clock.Advance(server.DefaultConsoleIdleTimeout - step*time.Duration(len(forged)))
	if resp, body := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != 401 {
		t.Fatalf("session idle since sign-in, CSRF failures only: %d %s, want 401", resp.StatusCode, body)
	}
	if evs := s.authFailures(server.CauseSessionExpired); len(evs) != 1 {
		t.Errorf("idle expiry not audited: %v", evs)
	}

	// Control: a request with the token restarts the idle timeout.
	id, csrf = s.signIn(t, s.keys["root"])
	clock.Advance(server.DefaultConsoleIdleTimeout - time.Minute)
	if resp, body := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != 200 {
		t.Fatalf("session used within the idle timeout: %d %s", resp.StatusCode, body)
	}
	clock.Advance(server.DefaultConsoleIdleTimeout - time.Minute)
	if resp, body := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != 200 {
		t.Fatalf("session used within the idle timeout of its last use: %d %s", resp.StatusCode, body)
	}
}

// TestSignOut: sign-out needs the CSRF token, ends the session and
// expires the cookie.
func TestSignOut(t *testing.T) {
	s := newStack(t, stackOptions{console: true})
	id, csrf := s.signIn(t, s.keys["root"])
	if resp, _ := s.request(t, "DELETE", "/ui/session", "", sess(id, "")); resp.StatusCode != 403 {
		t.Errorf("sign-out without the CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != 200 {
		t.Fatalf("a forged sign-out ended the session: %d", resp.StatusCode)
	}
	resp, _ := s.request(t, "DELETE", "/ui/session", "", sess(id, csrf))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if c := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(c, server.SessionCookie+"=;") || !strings.Contains(c, "Max-Age=0") {
		t.Errorf("sign-out Set-Cookie %q does not expire the cookie", c)
	}
	if resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(id, csrf)); resp.StatusCode != 401 {
		t.Errorf("session after sign-out: %d, want 401", resp.StatusCode)
	}
	if n := s.srv.ConsoleSessions(); n != 0 {
		t.Errorf("%d sessions held after sign-out, want 0", n)
	}
}

// TestSessionsBounded: past ConsoleMaxSessions the least recently used
// session ends; a new sign-in from a browser replaces its old session.
func TestSessionsBounded(t *testing.T) {
	s := newStack(t, stackOptions{console: true, config: func(c *server.Config) { c.ConsoleMaxSessions = 2 }})
	a, ac := s.signIn(t, s.keys["root"])
	b, bc := s.signIn(t, s.keys["root"])
	if resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(a, ac)); resp.StatusCode != 200 { // a is now the newest use
		t.Fatalf("session a: %d", resp.StatusCode)
	}
	c, cc := s.signIn(t, s.keys["root"])
	if n := s.srv.ConsoleSessions(); n != 2 {
		t.Errorf("%d sessions held, want at most 2", n)
	}
	for _, tc := range []struct {
		name, id, csrf string
		want           int
	}{{"a", a, ac, 200}, {"b (least recently used)", b, bc, 401}, {"c", c, cc, 200}} {
		if resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(tc.id, tc.csrf)); resp.StatusCode != tc.want {
			t.Errorf("session %s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	// Signing in again with a's cookie replaces a.
	resp, _ := s.request(t, "POST", "/ui/session", signInBody(s.keys["root"]), with(jsonCT, "Cookie", server.SessionCookie+"="+a))
	if resp.StatusCode != 200 {
		t.Fatalf("re-sign-in: %d", resp.StatusCode)
	}
	if resp, _ := s.request(t, "GET", "/admin/v1/users", "", sess(a, ac)); resp.StatusCode != 401 {
		t.Errorf("replaced session: %d, want 401", resp.StatusCode)
	}
}

// TestSignInLockout: sign-in failures count towards the same lockout as
// bearer failures, and a locked-out source gets the generic 401 even
// with the right key.
func TestSignInLockout(t *testing.T) {
	lo, err := authn.NewLockout(authn.LockoutConfig{Threshold: 3, Window: time.Minute, BaseDelay: time.Hour, MaxDelay: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{console: true, deps: func(d *server.Deps) { d.Lockout = lo }})
	unknown, _, _, _ := s.authn.NewKey()
	for range 3 {
		if resp, _ := s.request(t, "POST", "/ui/session", signInBody(unknown), jsonCT); resp.StatusCode != 401 {
			t.Fatalf("wrong key: %d", resp.StatusCode)
		}
	}
	resp, _ := s.request(t, "POST", "/ui/session", signInBody(s.keys["root"]), jsonCT)
	if resp.StatusCode != 401 || len(resp.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("locked-out source signing in with the right key: %d %v, want 401 and no cookie", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	if evs := s.authFailures("POST /ui/session: " + authn.CauseLocked); len(evs) != 1 {
		t.Errorf("locked-out sign-in not audited: %v", evs)
	}
}

// fakeAuthz allows ActionAdmin on the listed areas only.
type fakeAuthz []string

func (f fakeAuthz) Decide(_ *principal.Principal, action policy.Action, area string) policy.Decision {
	return policy.Decision{Allow: action == policy.ActionAdmin && slices.Contains(f, area)}
}

// TestConsoleAccess: the console admits a principal with the admin
// permission on any area of the admin API's routes, and nobody else.
func TestConsoleAccess(t *testing.T) {
	routes := []adminapi.Route{{Area: "keys"}, {Area: "audit"}, {Area: "audit"}, {Area: "plugins"}}
	p := &principal.Principal{Name: "x", Roles: []string{"r"}}
	for _, tc := range []struct {
		name  string
		areas fakeAuthz
		want  bool
	}{
		{"none", nil, false},
		{"one area", fakeAuthz{"plugins"}, true},
		{"all", fakeAuthz{"keys", "audit", "plugins"}, true},
		{"an area no route has", fakeAuthz{"secrets"}, false},
	} {
		if got := server.ConsoleAccess(tc.areas, routes)(p); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
