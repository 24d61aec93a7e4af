package server_test

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/server"
)

// alertSpy records alerts.
type alertSpy struct {
	mu     sync.Mutex
	alerts []alert.Alert
}

func (a *alertSpy) Alert(_ context.Context, al alert.Alert) {
	a.mu.Lock()
	a.alerts = append(a.alerts, al)
	a.mu.Unlock()
}

func (a *alertSpy) all() []alert.Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]alert.Alert(nil), a.alerts...)
}

const wrongKey = "pcl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func lockoutStack(t *testing.T, trusted ...string) (*stack, *alertSpy) {
	t.Helper()
	lo, err := authn.NewLockout(authn.LockoutConfig{Threshold: 5, Window: time.Minute, BaseDelay: time.Hour, MaxDelay: 2 * time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	spy := &alertSpy{}
	var prefixes []netip.Prefix
	for _, p := range trusted {
		prefixes = append(prefixes, netip.MustParsePrefix(p))
	}
	s := newStack(t, stackOptions{
		config: func(c *server.Config) { c.TrustedProxies = prefixes },
		deps:   func(d *server.Deps) { d.Lockout = lo; d.Alerts = spy },
	})
	return s, spy
}

func tryKey(t *testing.T, s *stack, key string, extra map[string]string) (*http.Response, string) {
	t.Helper()
	h := mcpHeaders(key, "")
	for k, v := range extra {
		h[k] = v
	}
	resp, body := s.request(t, "POST", "/mcp", initializeBody, h)
	return resp, string(body)
}

// TestLockoutBySource: after the threshold of wrong keys from one source,
// even a valid key from that source gets the same 401 as a wrong key —
// same status, body and challenge; auth.lockout is audited once and an
// alert raised.
func TestLockoutBySource(t *testing.T) {
	s, spy := lockoutStack(t)
	resp, wrongBody := tryKey(t, s, wrongKey, nil)
	wrongChallenge := resp.Header.Get("WWW-Authenticate")
	for range 4 {
		tryKey(t, s, wrongKey, nil)
	}
	resp, body := tryKey(t, s, s.keys["dev"], nil)
	if resp.StatusCode != http.StatusUnauthorized || body != wrongBody || resp.Header.Get("WWW-Authenticate") != wrongChallenge {
		t.Fatalf("valid key from a locked source: %d %q %q; want exactly the wrong-key answer %q %q",
			resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"), wrongBody, wrongChallenge)
	}
	// More attempts while locked: still refused, no second lockout.
	for range 10 {
		tryKey(t, s, wrongKey, nil)
	}
	locks := s.spy.find(func(e audit.Event) bool { return e.Type == audit.AuthLockout })
	if len(locks) != 1 || !strings.Contains(locks[0].Detail, "src:127.0.0.1") {
		t.Errorf("auth.lockout events = %s; want one for src:127.0.0.1", dumpEvents(locks))
	}
	if al := spy.all(); len(al) != 1 || al[0].Kind != alert.KindAuthLockout || al[0].Severity != alert.High {
		t.Errorf("alerts = %+v; want one auth.lockout", al)
	}
	s.spy.wait(t, "auth.failure locked_out", func(e audit.Event) bool {
		return e.Type == audit.AuthFailure && strings.HasSuffix(e.Detail, ": locked_out")
	})
	// Spoofed X-Forwarded-For from an untrusted peer does not get around it.
	if resp, _ := tryKey(t, s, s.keys["dev"], map[string]string{"X-Forwarded-For": "203.0.113.50", "X-Real-IP": "203.0.113.51"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("spoofed X-Forwarded-For escaped the lockout: %d", resp.StatusCode)
	}
}

// TestLockoutByPrincipal: failures attributable to a principal (its
// revoked key) lock that principal out from any source; other principals
// are unaffected.
func TestLockoutByPrincipal(t *testing.T) {
	s, _ := lockoutStack(t, "127.0.0.0/8")
	// rex's key is revoked; each attempt comes from a different client
	// address (through the trusted proxy) so only the principal counter
	// can trip.
	for i := range 5 {
		tryKey(t, s, s.keys["rex"], map[string]string{"X-Forwarded-For": "198.51.100." + string(rune('1'+i))})
	}
	fresh, _ := s.addKey("rex", "guest")
	if resp, _ := tryKey(t, s, fresh, map[string]string{"X-Forwarded-For": "198.51.100.99"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("rex's new key from a fresh source: %d; want 401 while rex is locked out", resp.StatusCode)
	}
	if resp, _ := tryKey(t, s, s.keys["dev"], map[string]string{"X-Forwarded-For": "198.51.100.99"}); resp.StatusCode != http.StatusOK {
		t.Errorf("another principal: %d; want 200", resp.StatusCode)
	}
	locks := s.spy.find(func(e audit.Event) bool { return e.Type == audit.AuthLockout })
	if len(locks) != 1 || locks[0].Principal != "rex" || !strings.Contains(locks[0].Detail, "user:rex") {
		t.Errorf("auth.lockout events = %s; want one for user:rex", dumpEvents(locks))
	}
}

// TestTrustedProxies: X-Forwarded-For is believed only from a trusted
// peer, walked from the right past trusted hops; the audit log records
// the resolved client.
func TestTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
		xff     []string
		want    string
	}{
		{"no trusted proxies: peer", nil, []string{"203.0.113.9"}, "127.0.0.1"},
		{"untrusted peer: peer", []string{"10.0.0.0/8"}, []string{"203.0.113.9"}, "127.0.0.1"},
		{"trusted peer: last hop", []string{"127.0.0.0/8"}, []string{"203.0.113.9"}, "203.0.113.9"},
		{"client-supplied prefix ignored", []string{"127.0.0.0/8"}, []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", []string{"127.0.0.0/8", "10.0.0.0/8"}, []string{"6.6.6.6, 203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"several headers", []string{"127.0.0.0/8", "10.0.0.0/8"}, []string{"6.6.6.6", "203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"malformed hop stops the walk", []string{"127.0.0.0/8", "10.0.0.0/8"}, []string{"203.0.113.9, garbage, 10.1.2.3"}, "10.1.2.3"},
		{"ipv6 client", []string{"127.0.0.0/8"}, []string{"2001:db8::7"}, "2001:db8::7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var prefixes []netip.Prefix
			for _, p := range tc.trusted {
				prefixes = append(prefixes, netip.MustParsePrefix(p))
			}
			s := newStack(t, stackOptions{config: func(c *server.Config) { c.TrustedProxies = prefixes }})
			req, err := http.NewRequest("POST", s.url+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range mcpHeaders(wrongKey, pvStateless) {
				req.Header.Set(k, v)
			}
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			s.send(t, req)
			e := s.spy.wait(t, "auth.failure", func(e audit.Event) bool { return e.Type == audit.AuthFailure })
			got := e.RemoteAddr
			if h, _, ok := strings.Cut(got, ":"); ok && tc.want == "127.0.0.1" {
				got = h
			}
			if got != tc.want {
				t.Errorf("audited client = %q; want %q", e.RemoteAddr, tc.want)
			}
		})
	}
}

// scopeAuthn fails every token with insufficient_scope.
type scopeAuthn struct{}

func (scopeAuthn) Authenticate(context.Context, string) (*principal.Principal, error) {
	return nil, &authn.Failure{Cause: authn.CauseInsufficientScope, User: "oidc:carol", Scope: "mcp:tools"}
}

// TestProtectedResourceMetadata: with OIDC on, 401 and 403 challenges
// point at the RFC 9728 metadata, which is served publicly at both
// well-known paths; a scope shortfall is 403 insufficient_scope and does
// not count towards lockout.
func TestProtectedResourceMetadata(t *testing.T) {
	meta := []byte(`{"resource":"https://gw.example/mcp","authorization_servers":["https://idp.example"]}`)
	const metaURL = "https://gw.example/.well-known/oauth-protected-resource/mcp"
	lo, _ := authn.NewLockout(authn.LockoutConfig{Threshold: 2, Window: time.Minute, BaseDelay: time.Hour, MaxDelay: time.Hour}, nil)
	cfg := func(c *server.Config) {
		c.ResourceMetadata, c.ResourceMetadataURL = meta, metaURL
		c.ResourceMetadataPaths = []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"}
	}
	s := newStack(t, stackOptions{config: cfg, deps: func(d *server.Deps) { d.Lockout = lo }})
	resp, _ := tryKey(t, s, "", nil)
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.Contains(got, `resource_metadata="`+metaURL+`"`) {
		t.Errorf("401 challenge = %d %q; want resource_metadata", resp.StatusCode, got)
	}
	for _, p := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, body := s.request(t, "GET", p, "", nil)
		if resp.StatusCode != 200 || string(body) != string(meta) || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s = %d %q", p, resp.StatusCode, body)
		}
	}
	sc := newStack(t, stackOptions{config: cfg, authn: scopeAuthn{}, deps: func(d *server.Deps) { d.Lockout = lo }})
	for range 5 {
		resp, body := tryKey(t, sc, "eyJ.eyJ.sig", nil)
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(ch, `error="insufficient_scope"`) ||
			!strings.Contains(ch, `scope="mcp:tools"`) || !strings.Contains(ch, "resource_metadata=") || !strings.Contains(body, "insufficient_scope") {
			t.Fatalf("scope shortfall = %d %q %q; want 403 insufficient_scope", resp.StatusCode, ch, body)
		}
	}
	// Without OIDC there is no metadata endpoint.
	plain := newStack(t, stackOptions{})
	if resp, _ := plain.request(t, "GET", "/.well-known/oauth-protected-resource", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("metadata without OIDC: %d; want 404", resp.StatusCode)
	}
	if resp, _ := tryKey(t, plain, "", nil); strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata") {
		t.Error("challenge advertises metadata without OIDC")
	}
}

// TestAllowedHosts: with an allow-list, any other Host is refused before
// authentication (DNS rebinding against a non-loopback listener).
func TestAllowedHosts(t *testing.T) {
	s := newStack(t, stackOptions{config: func(c *server.Config) { c.AllowedHosts = []string{"localhost"} }})
	_, port, _ := strings.Cut(strings.TrimPrefix(s.url, "http://"), ":")
	for host, want := range map[string]int{
		"localhost":                      200,
		"localhost:" + port:              200,
		"127.0.0.1:" + port:              403, // loopback, but not on the list
		"evil.example":                   403,
		"localhost.evil.example:" + port: 403,
	} {
		h := mcpHeaders(s.keys["dev"], "")
		h["Host"] = host
		resp, body := s.request(t, "POST", "/mcp", initializeBody, h)
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d %s; want %d", host, resp.StatusCode, body, want)
		}
	}
}
