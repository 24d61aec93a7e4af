package adminapi_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// serveAPI puts the real admin API behind a minimal bearer check (the
// server package's authenticate does the same with more ceremony) on a
// loopback httptest server.
func serveAPI(t *testing.T, f *fixture) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := authn.ParseBearer(r.Header.Get("Authorization"))
		if !ok {
			http.Error(w, `{"error":"unauthenticated","message":"authentication required"}`, http.StatusUnauthorized)
			return
		}
		p, err := f.an.Authenticate(r.Context(), tok)
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"unauthenticated","message":"authentication required"}`)
			return
		}
		f.api.ServeHTTP(w, r.WithContext(principal.NewContext(r.Context(), p)))
	}))
	t.Cleanup(ts.Close)
	return ts
}

// bootstrapKey stores a key for user with role directly and returns it.
func bootstrapKey(t *testing.T, f *fixture, user, role string) string {
	t.Helper()
	ctx := context.Background()
	u, _, err := f.db.EnsureUser(ctx, user, []string{role})
	if err != nil {
		t.Fatal(err)
	}
	plain, id, prefix, hash := f.an.NewKey()
	if err := f.db.CreateAPIKey(ctx, store.APIKey{ID: id, UserID: u.ID, UserName: u.Name, Hash: hash, Prefix: prefix,
		Roles: []string{role}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	return plain
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestClientRoundTrip(t *testing.T) {
	f := newFixture(t)
	ts := serveAPI(t, f)
	c := &adminapi.Client{BaseURL: ts.URL + "/", Key: bootstrapKey(t, f, "root", "admin")}

	v, err := c.CreateKey(ctx(t), adminapi.CreateKeyRequest{User: "alice", Role: "developer", ExpiresIn: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	if !authn.WellFormed(v.Key) || v.User != "alice" || v.ExpiresAt == nil {
		t.Errorf("created %+v", v)
	}
	keys, err := c.ListKeys(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, k := range keys {
		if k.Key != "" {
			t.Errorf("list returned a plaintext key for %s", k.ID)
		}
		found = found || k.ID == v.ID
	}
	if !found || len(keys) != 2 {
		t.Errorf("list %+v lacks %s", keys, v.ID)
	}
	rv, err := c.RevokeKey(ctx(t), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.ID != v.ID || rv.RevokedAt == nil {
		t.Errorf("revoked %+v", rv)
	}
	evs, err := c.QueryAudit(ctx(t), url.Values{"type": {string(audit.AdminKeyRevoke)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Principal != "root" || !strings.Contains(evs[0].Detail, v.ID) {
		t.Errorf("audit %+v", evs)
	}
	evs, err = c.QueryAudit(ctx(t), nil)
	if err != nil || len(evs) != 3 {
		t.Errorf("all events: %d, %v", len(evs), err)
	}
	// The new (revoked) key is useless now.
	c2 := &adminapi.Client{BaseURL: ts.URL, Key: v.Key}
	_, err = c2.ListKeys(ctx(t))
	var ae *adminapi.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != "unauthenticated" {
		t.Errorf("revoked key: %v", err)
	}
}

func TestClientAPIErrors(t *testing.T) {
	f := newFixture(t)
	ts := serveAPI(t, f)
	root := &adminapi.Client{BaseURL: ts.URL, Key: bootstrapKey(t, f, "root", "admin")}
	guest := &adminapi.Client{BaseURL: ts.URL, Key: bootstrapKey(t, f, "gina", "guest")}
	nobody := &adminapi.Client{BaseURL: ts.URL, Key: "pcl_" + strings.Repeat("A", 52)}

	for name, c := range map[string]struct {
		call   func() error
		status int
		code   string
	}{
		"unknown role": {func() error {
			_, err := root.CreateKey(ctx(t), adminapi.CreateKeyRequest{User: "x", Role: "nope"})
			return err
		}, 400, "bad_request"},
		"bad expiry": {func() error {
			_, err := root.CreateKey(ctx(t), adminapi.CreateKeyRequest{User: "x", Role: "guest", ExpiresIn: "-1h"})
			return err
		}, 400, "bad_request"},
		"revoke unknown": {func() error { _, err := root.RevokeKey(ctx(t), "key_nope"); return err }, 404, "not_found"},
		"bad audit limit": {func() error {
			_, err := root.QueryAudit(ctx(t), url.Values{"limit": {"0"}})
			return err
		}, 400, "bad_request"},
		"guest lists": {func() error { _, err := guest.ListKeys(ctx(t)); return err }, 403, "forbidden"},
		"guest creates": {func() error {
			_, err := guest.CreateKey(ctx(t), adminapi.CreateKeyRequest{User: "gina", Role: "admin"})
			return err
		}, 403, "forbidden"},
		"unknown key": {func() error { _, err := nobody.ListKeys(ctx(t)); return err }, 401, "unauthenticated"},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.call()
			var ae *adminapi.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if ae.Status != c.status || ae.Code != c.code || ae.Message == "" {
				t.Errorf("APIError %+v, want status %d code %s", ae, c.status, c.code)
			}
			if !strings.Contains(err.Error(), c.code) {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
	// Dot segments are cleaned by the server's router into another path;
	// the client must end with an error, not a success on that path.
	for _, id := range []string{"..", "."} {
		_, err := root.RevokeKey(ctx(t), id)
		var ae *adminapi.APIError
		if !errors.As(err, &ae) || ae.Status < 300 {
			t.Errorf("RevokeKey(%q) = %v, want an APIError", id, err)
		}
	}
	if u, err := f.db.UserByName(context.Background(), "gina"); err != nil || len(u.Roles) != 1 {
		t.Errorf("guest escalated: %+v %v", u, err)
	}
}

// countingRT records requests and answers from a handler, in-process.
type countingRT struct {
	mu   sync.Mutex
	reqs []*http.Request
	h    http.Handler
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.reqs = append(c.reqs, r)
	c.mu.Unlock()
	if c.h == nil {
		return nil, errors.New("no network in this test")
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, r)
	return w.Result(), nil
}

func (c *countingRT) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reqs)
}

func TestClientRefusesBadInputWithoutRequest(t *testing.T) {
	const key = "pcl_SECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECR"
	rt := &countingRT{}
	hc := &http.Client{Transport: rt}
	for _, base := range []string{"", "ftp://127.0.0.1:8420", "file:///etc/passwd", "javascript:alert(1)", "127.0.0.1:8420",
		"//127.0.0.1:8420", "http://[::1", "gopher://x", "unix:///run/portcullis.sock"} {
		c := &adminapi.Client{BaseURL: base, Key: key, HTTP: hc}
		_, err := c.ListKeys(ctx(t))
		if err == nil {
			t.Errorf("BaseURL %q accepted", base)
			continue
		}
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), key[4:20]) {
			t.Errorf("error for %q contains the key: %v", base, err)
		}
	}
	c := &adminapi.Client{BaseURL: "http://127.0.0.1:1", Key: key, HTTP: hc}
	for _, id := range []string{"a/b", "", "../keys", "key?x=1", "key#frag", "/"} {
		if _, err := c.RevokeKey(ctx(t), id); err == nil {
			t.Errorf("RevokeKey(%q) accepted", id)
		}
	}
	if n := rt.count(); n != 0 {
		t.Errorf("%d requests sent for refused input", n)
	}
}

// TestClientSendsKeyOnlyInHeader: the key never appears in the URL, the
// query or the body; it is in Authorization and nowhere else.
func TestClientSendsKeyOnlyInHeader(t *testing.T) {
	const key = "pcl_SECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECR"
	var mu sync.Mutex
	var seen []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		if got := r.Header.Get("Authorization"); got != "Bearer "+key {
			t.Errorf("%s %s: Authorization %q", r.Method, r.URL, got)
		}
		for name, v := range map[string]string{"URI": r.RequestURI, "body": string(body), "cookies": r.Header.Get("Cookie")} {
			if strings.Contains(v, key) || strings.Contains(v, "SECRETSECRET") {
				t.Errorf("%s %s: key in %s", r.Method, r.URL.Path, name)
			}
		}
		for h, vs := range r.Header {
			if h == "Authorization" {
				continue
			}
			for _, v := range vs {
				if strings.Contains(v, "SECRETSECRET") {
					t.Errorf("key in header %s", h)
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "POST":
			io.WriteString(w, `{"id":"key_x","user":"u","roles":["guest"],"key":"pcl_NEW"}`)
		case r.Method == "DELETE":
			io.WriteString(w, `{"id":"key_x"}`)
		case strings.HasSuffix(r.URL.Path, "/audit"):
			io.WriteString(w, `{"events":[]}`)
		default:
			io.WriteString(w, `{"keys":[]}`)
		}
	}))
	defer ts.Close()
	c := &adminapi.Client{BaseURL: ts.URL, Key: key}
	if _, err := c.CreateKey(ctx(t), adminapi.CreateKeyRequest{User: "u", Role: "guest"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListKeys(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RevokeKey(ctx(t), "key x+y"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RevokeKey(ctx(t), ".."); err != nil {
		t.Fatal(err) // escaped path segment; the fake answers 200
	}
	if _, err := c.QueryAudit(ctx(t), url.Values{"user": {"a&limit=1"}, "since": {"1h"}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"POST /admin/v1/keys", "GET /admin/v1/keys", "DELETE /admin/v1/keys/key%20x+y", "DELETE /admin/v1/keys/..", "GET /admin/v1/audit?since=1h&user=a%26limit%3D1"}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// TestClientDoesNotForwardKeyOnRedirect: the admin API never redirects; a
// redirect (a misconfigured proxy, a hostile server on the configured
// address) must not carry the admin key to another place.
func TestClientDoesNotForwardKeyOnRedirect(t *testing.T) {
	const key = "pcl_SECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECR"
	var mu sync.Mutex
	var leaked []string
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if a := r.Header.Get("Authorization"); a != "" {
			leaked = append(leaked, r.URL.Path)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"keys":[],"events":[]}`)
	}))
	defer sink.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Same host, other port: Go's client keeps Authorization for that.
		http.Redirect(w, r, sink.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	for _, hc := range []*http.Client{nil, {}, {Timeout: 10 * time.Second}} {
		c := &adminapi.Client{BaseURL: redirector.URL, Key: key, HTTP: hc}
		_, err := c.ListKeys(ctx(t))
		var ae *adminapi.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusTemporaryRedirect {
			t.Errorf("redirect answered %v, want *APIError with status 307", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Errorf("admin key forwarded to the redirect target %d times", len(leaked))
	}
}

func TestClientBadResponses(t *testing.T) {
	for name, c := range map[string]struct {
		status int
		body   string
		check  func(t *testing.T, err error)
	}{
		"html error page": {502, "<html>bad gateway</html>", func(t *testing.T, err error) {
			var ae *adminapi.APIError
			if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "" {
				t.Errorf("err = %#v", err)
			}
		}},
		"bad json on 200": {200, "{not json", func(t *testing.T, err error) {
			var ae *adminapi.APIError
			if err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), "bad response") {
				t.Errorf("err = %v", err)
			}
		}},
		"204 without body": {204, "", func(t *testing.T, err error) {
			if err == nil {
				t.Error("empty 204 decoded into a key list")
			}
		}},
	} {
		t.Run(name, func(t *testing.T) {
			rt := &countingRT{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			})}
			cl := &adminapi.Client{BaseURL: "http://gateway.test", Key: "k", HTTP: &http.Client{Transport: rt}}
			_, err := cl.ListKeys(ctx(t))
			c.check(t, err)
		})
	}
	t.Run("server down", func(t *testing.T) {
		ts := httptest.NewServer(http.NotFoundHandler())
		u := ts.URL
		ts.Close()
		const key = "pcl_SECRETSECRETSECRETSECRETSECRETSECRETSECRETSECRETSECR"
		_, err := (&adminapi.Client{BaseURL: u, Key: key}).ListKeys(ctx(t))
		if err == nil || strings.Contains(err.Error(), "SECRETSECRET") || !strings.Contains(err.Error(), u) {
			t.Errorf("err = %v", err)
		}
	})
}
