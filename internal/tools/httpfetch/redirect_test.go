package httpfetch_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

// redirectTo is the path of a redirect to u with status code (0: 302).
func redirectTo(u string, code int) string {
	p := "/redirect?to=" + url.QueryEscape(u)
	if code != 0 {
		p += fmt.Sprintf("&code=%d", code)
	}
	return p
}

// redirectEnv is a loopback server reachable as a.test and b.test, and an
// allow-list that also names hosts with forbidden addresses.
func redirectEnv(t *testing.T, maxRedirects int) (*httpfetch.Tool, *fakeResolver, string) {
	s := newServer(t)
	p := port(s)
	res := newResolver(map[string]string{
		"a.test":        "127.0.0.1",
		"b.test":        "127.0.0.1",
		"internal.test": "10.0.0.5",
		"evil.test":     publicIP.String(),
	})
	tl := newTool(t, httpfetch.Config{
		Allow:        []string{"a.test:" + p, "b.test:" + p, "internal.test:" + p, "169.254.169.254", "[::1]:" + p, "nxdomain.test"},
		AllowPrivate: []string{"127.0.0.1/32"},
		MaxRedirects: maxRedirects,
		Resolver:     res,
	})
	return tl, res, p
}

func TestRedirectRefusals(t *testing.T) {
	tl, res, p := redirectEnv(t, 0)
	a := "http://a.test:" + p
	for _, c := range []struct {
		name, to string
		code     reason.Code
		msg      string
	}{
		{"metadata", "http://169.254.169.254/latest/meta-data/", reason.PermissionDenied, "redirect refused: address not allowed: link-local"},
		{"name to private", "http://internal.test:" + p + "/echo", reason.PermissionDenied, "redirect refused: address not allowed: private network"},
		{"IPv6 loopback", "http://[::1]:" + p + "/echo", reason.PermissionDenied, "redirect refused: address not allowed: loopback"},
		{"mapped loopback", "http://[::ffff:127.0.0.2]:" + p + "/echo", reason.PermissionDenied, "redirect refused: address not allowed: loopback"},
		{"not allowed", "http://evil.test:" + p + "/echo", reason.PermissionDenied, "redirect refused: host not in the allow-list"},
		{"allowed host, other port", "http://a.test:1/echo", reason.PermissionDenied, "redirect refused: host not in the allow-list"},
		{"decimal IP", "http://2130706433:" + p + "/echo", reason.PermissionDenied, "redirect refused: host looks like an IP address"},
		{"file", "file:///etc/passwd", reason.PermissionDenied, "redirect refused: URL scheme not allowed"},
		{"gopher", "gopher://a.test:" + p + "/_x", reason.PermissionDenied, "redirect refused: URL scheme not allowed"},
		{"userinfo", "http://a.test:" + p + "@evil.test/", reason.PermissionDenied, "redirect refused: credentials"},
		{"bad port", "http://a.test:0/", reason.ToolFailed, "redirect refused: invalid port"},
		{"malformed", "http://a b/", reason.ToolFailed, "malformed Location"},
	} {
		for _, code := range []int{301, 302, 303, 307, 308} {
			t.Run(fmt.Sprintf("%s/%d", c.name, code), func(t *testing.T) {
				_, err := fetchURL(t, tl, a+redirectTo(c.to, code))
				wantRefused(t, err, c.code, c.msg)
			})
		}
	}
	if slices.Contains(res.lookups(), "evil.test") {
		t.Error("a host outside the allow-list was resolved")
	}
	_, err := fetchURL(t, tl, a+redirectTo("http://nxdomain.test/", 0))
	wantRefused(t, err, reason.ToolFailed, "host name could not be resolved")
	_, err = fetchURL(t, tl, a+"/loop")
	wantRefused(t, err, reason.ToolFailed, "too many redirects (more than 5)")
}

func TestRedirectLimit(t *testing.T) {
	tl, _, p := redirectEnv(t, 2)
	a := "http://a.test:" + p
	two := a + redirectTo(redirectTo("/echo", 0), 0)
	r, err := fetchURL(t, tl, two)
	if err != nil {
		t.Fatalf("two redirects: %v", err)
	}
	if r.Structured["redirects"] != 2 || r.Structured["url"] != a+"/echo" {
		t.Errorf("redirects = %v, url = %v", r.Structured["redirects"], r.Structured["url"])
	}
	_, err = fetchURL(t, tl, a+redirectTo(redirectTo(redirectTo("/echo", 0), 0), 0))
	wantRefused(t, err, reason.ToolFailed, "too many redirects (more than 2)")

	none, _, p := redirectEnv(t, -1)
	r, err = fetchURL(t, none, "http://a.test:"+p+redirectTo("http://169.254.169.254/", 0))
	if err != nil {
		t.Fatalf("redirects off: %v", err)
	}
	hdr, _ := r.Structured["headers"].(map[string]any)
	if r.Structured["status"] != http.StatusFound || hdr["location"] != "http://169.254.169.254/" {
		t.Errorf("redirects off: status %v, headers %v; want the 302 itself", r.Structured["status"], hdr)
	}
}

// TestRedirectCredentials: Authorization and Cookie go to the origin the
// caller named, never to another one; other headers follow.
func TestRedirectCredentials(t *testing.T) {
	tl, _, p := redirectEnv(t, 0)
	a, b := "http://a.test:"+p, "http://b.test:"+p
	hdrs := map[string]string{"Authorization": "Bearer s3cret", "Cookie": "sid=1", "X-Custom": "kept"}
	for _, c := range []struct {
		name, url string
		wantCred  bool
		wantHost  string
	}{
		{"same origin", a + redirectTo("/echo", 0), true, "a.test:" + p},
		{"same origin, absolute", a + redirectTo(a+"/echo", 307), true, "a.test:" + p},
		{"other host", a + redirectTo(b+"/echo", 0), false, "b.test:" + p},
		{"other host, 308", a + redirectTo(b+"/echo", 308), false, "b.test:" + p},
		{"other host, then same", a + redirectTo(b+redirectTo(b+"/echo", 0), 0), false, "b.test:" + p},
		{"other host, then back to the origin", a + redirectTo(b+redirectTo(a+"/echo", 0), 0), true, "a.test:" + p},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := call(context.Background(), t, tl, map[string]any{"url": c.url, "headers": hdrs})
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			e := decodeEcho(t, r)
			if e.Host != c.wantHost {
				t.Errorf("Host = %q; want %q", e.Host, c.wantHost)
			}
			got := e.Header.Get("Authorization") != "" || e.Header.Get("Cookie") != ""
			if got != c.wantCred {
				t.Errorf("credentials sent = %v; want %v (headers %v)", got, c.wantCred, e.Header)
			}
			if e.Header.Get("X-Custom") != "kept" {
				t.Errorf("X-Custom = %q; want kept", e.Header.Get("X-Custom"))
			}
		})
	}
}

// TestRedirectMethods: 307/308 keep method and body; 301/302/303 turn
// them into a GET without a body (HEAD stays HEAD).
func TestRedirectMethods(t *testing.T) {
	tl, _, p := redirectEnv(t, 0)
	a := "http://a.test:" + p
	for _, c := range []struct {
		method     string
		code       int
		wantMethod string
		wantBody   string
	}{
		{"POST", 307, "POST", "payload"},
		{"PUT", 308, "PUT", "payload"},
		{"POST", 301, "GET", ""},
		{"POST", 302, "GET", ""},
		{"DELETE", 303, "GET", ""},
	} {
		t.Run(fmt.Sprintf("%s/%d", c.method, c.code), func(t *testing.T) {
			r, err := call(context.Background(), t, tl, map[string]any{
				"url": a + redirectTo("/echo", c.code), "method": c.method, "body": "payload",
				"headers": map[string]string{"Content-Type": "text/plain"},
			})
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			e := decodeEcho(t, r)
			got := [2]string{e.Method, e.Body}
			if diff := cmp.Diff([2]string{c.wantMethod, c.wantBody}, got); diff != "" {
				t.Errorf("method, body (-want +got):\n%s", diff)
			}
			if c.wantBody == "" && e.Header.Get("Content-Type") != "" {
				t.Errorf("Content-Type %q kept without a body", e.Header.Get("Content-Type"))
			}
		})
	}
	r, err := call(context.Background(), t, tl, map[string]any{"url": a + redirectTo("/bytes?n=5", 303), "method": "HEAD"})
	if err != nil {
		t.Fatalf("HEAD: %v", err)
	}
	if r.Structured["status"] != 200 || r.Structured["body"] != "" {
		t.Errorf("HEAD after 303: status %v body %q", r.Structured["status"], r.Structured["body"])
	}
}
