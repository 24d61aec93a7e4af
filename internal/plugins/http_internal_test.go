package plugins

import (
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestBearerTransportOnlyToOrigin attacks the credential at the transport,
// apart from the client's redirect policy: a request through the upstream's
// client to another host (another port of the same host, another scheme)
// carries no Authorization header, and a caller-set one never passes
// through to any host.
func TestBearerTransportOnlyToOrigin(t *testing.T) {
	tok := rand.Text()
	var mu sync.Mutex
	seen := map[string]string{} // server → Authorization received
	newServer := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[name] = r.Header.Get("Authorization")
			mu.Unlock()
		}))
		t.Cleanup(s.Close)
		return s
	}
	upstream, other := newServer("upstream"), newServer("other")
	c, err := httpClient(upstream.URL+"/mcp", tok)
	if err != nil {
		t.Fatal(err)
	}
	get := func(url, auth string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get(upstream.URL+"/mcp", "")
	get(other.URL+"/collect", "")
	mu.Lock()
	up, oth := seen["upstream"], seen["other"]
	mu.Unlock()
	if up != "Bearer "+tok {
		t.Errorf("the upstream got Authorization %q, want its credential", up)
	}
	if oth != "" {
		t.Errorf("another origin (%s) got Authorization %q: the credential left its upstream", other.URL, oth)
	}
	// A header set by whoever built the request is replaced, never sent on.
	get(other.URL+"/collect", "Bearer forged-"+tok[:4])
	mu.Lock()
	oth = seen["other"]
	mu.Unlock()
	if strings.Contains(oth, "forged") || oth != "" {
		t.Errorf("another origin got Authorization %q from the request", oth)
	}
}
