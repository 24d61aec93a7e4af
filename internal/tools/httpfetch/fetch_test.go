package httpfetch_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

func TestDefinition(t *testing.T) {
	tl := newTool(t, httpfetch.Config{})
	d := tl.Definition()
	if d.Name != "http_fetch" || d.Sensitivity != tool.High || !tool.ValidName(d.Name) {
		t.Errorf("name %q sensitivity %v", d.Name, d.Sensitivity)
	}
	if diff := cmp.Diff([]string{"network", "egress"}, d.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if d.Timeout <= httpfetch.DefaultTimeout {
		t.Errorf("definition timeout %s must exceed the tool's own %s", d.Timeout, httpfetch.DefaultTimeout)
	}
	b, err := json.Marshal(d.InputSchema)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	json.Unmarshal(b, &top)
	if top["additionalProperties"] != false {
		t.Errorf("additionalProperties = %v; want false (%s)", top["additionalProperties"], b)
	}
	rs, err := d.InputSchema.Resolve(nil)
	if err != nil {
		t.Fatalf("resolve schema: %v", err)
	}
	for _, c := range []struct {
		args string
		ok   bool
	}{
		{`{"url":"https://example.com/"}`, true},
		{`{"url":"https://example.com/","method":"POST","headers":{"X-A":"b"},"body":"x"}`, true},
		{`{}`, false},
		{`{"url":""}`, false},
		{`{"url":"https://example.com/","extra":1}`, false},
		{`{"url":"https://example.com/","method":"TRACE"}`, false},
		{`{"url":"https://example.com/","method":"get"}`, false},
		{`{"url":"https://example.com/","headers":{"X-A":1}}`, false},
		{`{"url":"https://example.com/","headers":"X-A: b"}`, false},
	} {
		var v any
		json.Unmarshal([]byte(c.args), &v)
		if err := rs.Validate(v); (err == nil) != c.ok {
			t.Errorf("validate %s: %v; want ok=%v", c.args, err, c.ok)
		}
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	for _, c := range []httpfetch.Config{
		{Allow: []string{"*"}},
		{Allow: []string{"*.com"}},
		{Allow: []string{"*example.com"}},
		{Allow: []string{"a.*.example.com"}},
		{Allow: []string{"127.1"}},
		{Allow: []string{"2130706433"}},
		{Allow: []string{"0x7f.1:80"}},
		{Allow: []string{"a.test:0"}},
		{Allow: []string{"a.test:x"}},
		{Allow: []string{"a.test:"}},
		{Allow: []string{"a.test:70000"}},
		{Allow: []string{"[::1"}},
		{Allow: []string{"[a.test]:80"}},
		{Allow: []string{"http://a.test"}},
		{Allow: []string{"a test"}},
		{Allow: []string{""}},
		{Allow: []string{"fe80::1%eth0"}},
		{RoleAllow: map[string][]string{"dev": {"*"}}},
		{RoleAllow: map[string][]string{"": {"a.test"}}},
		{AllowPrivate: []string{"0.0.0.0/0"}},
		{AllowPrivate: []string{"::/0"}},
		{AllowPrivate: []string{"10.0.0.0/33"}},
		{AllowPrivate: []string{"localhost"}},
		{AllowPrivate: []string{"fe80::/10%eth0"}},
		{MaxBytes: -1},
		{MaxRequestBytes: -1},
		{Timeout: -time.Second},
		{MaxRedirects: httpfetch.MaxRedirectsLimit + 1},
	} {
		if _, err := httpfetch.New(c); !errors.Is(err, httpfetch.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v; want ErrInvalidConfig", c, err)
		}
	}
	if _, err := httpfetch.New(httpfetch.Config{
		Allow:        []string{"a.test", "A.Test.:8443", "*.example.com:443", "192.0.2.1:80", "::1", "[2001:db8::1]:443", "[::1]"},
		RoleAllow:    map[string][]string{"developer": {"*.dev.example.com"}},
		AllowPrivate: []string{"10.0.0.0/8", "127.0.0.1", "::ffff:192.168.0.0/112"},
	}); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

// TestAllowedLoopbackServer: a loopback server works once explicitly
// allowed (Allow and AllowPrivate), and the result carries status,
// selected headers and body.
func TestAllowedLoopbackServer(t *testing.T) {
	s := newServer(t)
	cfg := loopbackConfig(s)
	res := cfg.Resolver.(*fakeResolver)
	tl := newTool(t, cfg)
	r, err := fetchURL(t, tl, s.URL+"/echo?q=1#frag")
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if r.IsError || r.Structured["status"] != 200 || r.Structured["truncated"] != false ||
		r.Structured["body_encoding"] != "text" || r.Structured["redirects"] != 0 || r.Structured["url"] != s.URL+"/echo?q=1" {
		t.Errorf("result %+v", r.Structured)
	}
	hdr := r.Structured["headers"].(map[string]any)
	if hdr["content-type"] != "application/json" {
		t.Errorf("headers %v", hdr)
	}
	if _, ok := hdr["set-cookie"]; ok {
		t.Error("Set-Cookie returned")
	}
	if !strings.HasPrefix(r.Text, "HTTP 200 OK\ncontent-type: application/json\n") {
		t.Errorf("text %q", r.Text)
	}
	e := decodeEcho(t, r)
	if e.Method != "GET" || e.Header.Get("User-Agent") != httpfetch.DefaultUserAgent || e.Header.Get("Accept-Encoding") != "" {
		t.Errorf("request seen by the server: %+v", e)
	}
	if len(res.lookups()) != 0 {
		t.Errorf("literal address was resolved: %q", res.lookups())
	}

	// Without AllowPrivate the same allow-listed address is refused; on
	// another port the allow-list refuses it.
	cfg.AllowPrivate = nil
	_, err = fetchURL(t, newTool(t, cfg), s.URL+"/echo")
	wantRefused(t, err, reason.PermissionDenied, "address not allowed: loopback")
	cfg = loopbackConfig(s)
	cfg.Allow = []string{"127.0.0.1"}
	_, err = fetchURL(t, newTool(t, cfg), s.URL+"/echo")
	wantRefused(t, err, reason.PermissionDenied, "host not in the allow-list")
	cfg.Allow = nil
	_, err = fetchURL(t, newTool(t, cfg), s.URL+"/echo")
	wantRefused(t, err, reason.PermissionDenied, "host not in the allow-list")
}

// TestAllowListPatterns: ports, wildcards, case and trailing dots. Names
// resolve to a public address; the dialer stands the test server in.
func TestAllowListPatterns(t *testing.T) {
	s := newServer(t)
	hosts := map[string]string{}
	for _, h := range []string{"api.example.test", "a.b.example.test", "example.test", "evilexample.test", "example.test.evil.test"} {
		hosts[h] = publicIP.String()
	}
	for _, c := range []struct {
		pattern, url string
		ok           bool
	}{
		{"api.example.test:8080", "http://api.example.test:8080/echo", true},
		{"api.example.test:8080", "http://api.example.test/echo", false},
		{"api.example.test", "http://api.example.test/echo", true},
		{"api.example.test", "http://api.example.test:80/echo", true},
		{"api.example.test", "http://api.example.test:8080/echo", false},
		{"api.example.test", "http://api.example.test:443/echo", false},
		{"api.example.test", "http://API.Example.TEST./echo", true},
		{"API.EXAMPLE.TEST.", "http://api.example.test/echo", true},
		{"*.example.test", "http://api.example.test/echo", true},
		{"*.example.test", "http://a.b.example.test/echo", true},
		{"*.example.test", "http://example.test/echo", false},
		{"*.example.test", "http://evilexample.test/echo", false},
		{"*.example.test", "http://example.test.evil.test/echo", false},
		{"*.example.test:8080", "http://api.example.test/echo", false},
		{"example.test", "http://example.test.evil.test/echo", false},
		{"example.test", "http://api.example.test/echo", false},
		{publicIP.String(), "http://" + publicIP.String() + "/echo", true},
		{publicIP.String(), "http://[::ffff:" + publicIP.String() + "]/echo", true},
		{"*.example.test", "http://" + publicIP.String() + "/echo", false},
	} {
		t.Run(c.pattern+" "+c.url, func(t *testing.T) {
			res := newResolver(hosts)
			d := &recordingDialer{to: s.Listener.Addr().String()}
			tl := newTool(t, httpfetch.Config{Allow: []string{c.pattern}, Resolver: res, Dialer: d})
			_, err := fetchURL(t, tl, c.url)
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok {
				wantRefused(t, err, reason.PermissionDenied, "host not in the allow-list")
				if len(res.lookups())+len(d.addresses()) != 0 {
					t.Errorf("refused host was resolved %q or dialed %q", res.lookups(), d.addresses())
				}
			}
		})
	}
}

// TestRoleAllowLists: a principal may fetch Allow ∪ RoleAllow[its roles].
func TestRoleAllowLists(t *testing.T) {
	s := newServer(t)
	other := "other.test:" + port(s)
	tl := newTool(t, httpfetch.Config{
		Allow:        []string{other},
		RoleAllow:    map[string][]string{"developer": {s.Listener.Addr().String()}, "guest": {"docs.example.test"}},
		AllowPrivate: []string{"127.0.0.1/32"},
		Resolver:     newResolver(map[string]string{"other.test": "127.0.0.1"}),
	})
	who := func(roles ...string) context.Context {
		return principal.NewContext(context.Background(), &principal.Principal{Name: "alice", Roles: roles})
	}
	for _, c := range []struct {
		name string
		ctx  context.Context
		url  string
		ok   bool
	}{
		{"no principal", context.Background(), s.URL + "/echo", false},
		{"no principal, global list", context.Background(), "http://" + other + "/echo", true},
		{"guest", who("guest"), s.URL + "/echo", false},
		{"no roles", who(), s.URL + "/echo", false},
		{"developer", who("developer"), s.URL + "/echo", true},
		{"guest and developer", who("guest", "developer"), s.URL + "/echo", true},
		{"developer, global list", who("developer"), "http://" + other + "/echo", true},
		{"role name case", who("Developer"), s.URL + "/echo", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := call(c.ctx, t, tl, map[string]any{"url": c.url})
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok {
				wantRefused(t, err, reason.PermissionDenied, "host not in the allow-list")
			}
		})
	}
}

func TestRequestHeaders(t *testing.T) {
	s := newServer(t)
	tl := newTool(t, loopbackConfig(s))
	for _, name := range []string{"Host", "host", "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer",
		"Upgrade", "Content-Length", "Expect", "HTTP2-Settings", "Proxy-Authorization", "Proxy-Connection",
		"proxy-anything", "Forwarded", "X-Forwarded-For", "x-forwarded-host", "X-Real-IP"} {
		t.Run(name, func(t *testing.T) {
			_, err := call(context.Background(), t, tl, map[string]any{"url": s.URL + "/echo", "headers": map[string]string{name: "x"}})
			wantRefused(t, err, reason.InvalidArguments, "is not allowed")
		})
	}
	for _, c := range []struct {
		name    string
		headers map[string]string
		code    reason.Code
		msg     string
	}{
		{"space in name", map[string]string{"Bad Name": "x"}, reason.InvalidArguments, "invalid header name"},
		{"colon in name", map[string]string{"X-A:b": "x"}, reason.InvalidArguments, "invalid header name"},
		{"empty name", map[string]string{"": "x"}, reason.InvalidArguments, "invalid header name"},
		{"pseudo header", map[string]string{":authority": "evil.test"}, reason.InvalidArguments, "invalid header name"},
		{"CRLF injection", map[string]string{"X-A": "b\r\nHost: evil.test"}, reason.InvalidArguments, "control characters"},
		{"LF injection", map[string]string{"X-A": "b\nX-B: c"}, reason.InvalidArguments, "control characters"},
		{"NUL", map[string]string{"X-A": "b\x00"}, reason.InvalidArguments, "control characters"},
		{"twice", map[string]string{"X-A": "1", "x-a": "2"}, reason.InvalidArguments, "given twice"},
		{"too big", map[string]string{"X-A": strings.Repeat("a", httpfetch.MaxHeaderBytes)}, reason.TooLarge, "headers larger than"},
		{"too many", manyHeaders(httpfetch.MaxHeaders + 1), reason.TooLarge, "more than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := call(context.Background(), t, tl, map[string]any{"url": s.URL + "/echo", "headers": c.headers})
			wantRefused(t, err, c.code, c.msg)
		})
	}
	r, err := call(context.Background(), t, tl, map[string]any{"url": s.URL + "/echo", "headers": map[string]string{
		"authorization": "Bearer t", "Cookie": "a=b", "X-Custom": "v\twith tab", "Accept": "application/json",
		"User-Agent": "agent/1", "Accept-Encoding": "identity",
	}})
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	e := decodeEcho(t, r)
	for k, v := range map[string]string{"Authorization": "Bearer t", "Cookie": "a=b", "X-Custom": "v\twith tab",
		"Accept": "application/json", "User-Agent": "agent/1", "Accept-Encoding": "identity"} {
		if got := e.Header.Get(k); got != v {
			t.Errorf("%s = %q; want %q", k, got, v)
		}
	}
}

func manyHeaders(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("X-H%d", i)] = "v"
	}
	return m
}

func TestRequestMethodAndBody(t *testing.T) {
	s := newServer(t)
	cfg := loopbackConfig(s)
	cfg.MaxRequestBytes = 100
	tl := newTool(t, cfg)
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		r, err := call(context.Background(), t, tl, map[string]any{"url": s.URL + "/echo", "method": m, "body": "hello"})
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if e := decodeEcho(t, r); e.Method != m || e.Body != "hello" {
			t.Errorf("%s: server saw %s %q", m, e.Method, e.Body)
		}
	}
	for _, c := range []struct {
		args map[string]any
		code reason.Code
		msg  string
	}{
		{map[string]any{"method": "POST", "body": strings.Repeat("x", 101)}, reason.TooLarge, "larger than 100 bytes"},
		{map[string]any{"method": "GET", "body": "x"}, reason.InvalidArguments, "not allowed with GET or HEAD"},
		{map[string]any{"body": "x"}, reason.InvalidArguments, "not allowed with GET or HEAD"},
		{map[string]any{"method": "HEAD", "body": "x"}, reason.InvalidArguments, "not allowed with GET or HEAD"},
		{map[string]any{"method": "TRACE"}, reason.InvalidArguments, "method not allowed"},
		{map[string]any{"method": "CONNECT"}, reason.InvalidArguments, "method not allowed"},
		{map[string]any{"method": "OPTIONS"}, reason.InvalidArguments, "method not allowed"},
		{map[string]any{"method": "get"}, reason.InvalidArguments, "method not allowed"},
		{map[string]any{"extra": true}, reason.InvalidArguments, "invalid arguments"},
	} {
		c.args["url"] = s.URL + "/echo"
		_, err := call(context.Background(), t, tl, c.args)
		wantRefused(t, err, c.code, c.msg)
	}
	for _, raw := range []string{`{"url":"` + s.URL + `"} {}`, `[]`, ``, `{"url":1}`, `{"headers":{"a":1},"url":"` + s.URL + `"}`} {
		_, err := call(context.Background(), t, tl, raw)
		wantRefused(t, err, reason.InvalidArguments, "invalid arguments")
	}
	// An empty body with GET is no body.
	if _, err := call(context.Background(), t, tl, map[string]any{"url": s.URL + "/echo", "body": ""}); err != nil {
		t.Errorf("GET with empty body: %v", err)
	}
}

func TestResponseBody(t *testing.T) {
	s := newServer(t)
	cfg := loopbackConfig(s)
	cfg.MaxBytes = 1000
	tl := newTool(t, cfg)
	for _, c := range []struct {
		path      string
		body      string
		enc       string
		truncated bool
		n         int
	}{
		{"/bytes?n=1000", strings.Repeat("a", 1000), "text", false, 1000},
		{"/bytes?n=3000", strings.Repeat("a", 1000), "text", true, 1000},
		{"/bytes?n=0", "", "text", false, 0},
		// 2-byte characters cut in the middle: the partial one is dropped.
		{"/raw?b=" + url.QueryEscape(strings.Repeat("é", 600)), strings.Repeat("é", 500), "text", true, 1000},
		{"/raw?b=" + url.QueryEscape("\xff\x00\xfe binary"), base64.StdEncoding.EncodeToString([]byte("\xff\x00\xfe binary")), "base64", false, 10},
	} {
		t.Run(c.path[:min(len(c.path), 20)], func(t *testing.T) {
			r, err := fetchURL(t, tl, s.URL+c.path)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			got := []any{r.Structured["body"], r.Structured["body_encoding"], r.Structured["truncated"], r.Structured["body_bytes"]}
			if diff := cmp.Diff([]any{c.body, c.enc, c.truncated, c.n}, got); diff != "" {
				t.Errorf("body, encoding, truncated, bytes (-want +got):\n%s", diff)
			}
			if c.truncated != strings.Contains(r.Text, "[body truncated at 1000 bytes]") {
				t.Errorf("text does not say truncated=%v: %q", c.truncated, r.Text[:min(len(r.Text), 200)])
			}
			if !strings.HasSuffix(r.Text, "\n\n"+c.body) {
				t.Errorf("text does not end with the body")
			}
		})
	}
	r, err := call(context.Background(), t, tl, map[string]any{"url": s.URL + "/bytes?n=3000", "method": "HEAD"})
	if err != nil {
		t.Fatalf("HEAD: %v", err)
	}
	if r.Structured["body"] != "" || r.Structured["headers"].(map[string]any)["content-length"] != "3000" {
		t.Errorf("HEAD: %+v", r.Structured)
	}
	// Error statuses are results, not tool failures.
	for _, code := range []int{204, 404, 500, 503} {
		r, err := fetchURL(t, tl, fmt.Sprintf("%s/status?code=%d", s.URL, code))
		if err != nil || r.IsError || r.Structured["status"] != code {
			t.Errorf("status %d: %v %+v", code, err, r)
		}
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	s := newServer(t)
	cfg := loopbackConfig(s)
	cfg.Timeout = 300 * time.Millisecond
	tl := newTool(t, cfg)
	for _, path := range []string{"/hang", "/slowbody"} {
		_, err := fetchURL(t, tl, s.URL+path)
		wantRefused(t, err, reason.Timeout, "timed out")
	}
	cfg.Timeout = time.Minute
	tl = newTool(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := call(ctx, t, tl, map[string]any{"url": s.URL + "/hang"})
	wantRefused(t, err, reason.Cancelled, "cancelled")
	// The caller's own deadline counts as a timeout too.
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = call(ctx, t, tl, map[string]any{"url": s.URL + "/hang"})
	wantRefused(t, err, reason.Timeout, "timed out")
}

func TestTransportFailures(t *testing.T) {
	s := newServer(t)
	addr := s.Listener.Addr().String()
	s.Close() // nothing listens there any more
	tl := newTool(t, httpfetch.Config{
		Allow: []string{addr, "nxdomain.test"}, AllowPrivate: []string{"127.0.0.1/32"},
		Resolver: newResolver(nil),
	})
	_, err := fetchURL(t, tl, "http://"+addr+"/")
	wantRefused(t, err, reason.ToolFailed, "connection failed")
	_, err = fetchURL(t, tl, "http://nxdomain.test/")
	wantRefused(t, err, reason.ToolFailed, "could not be resolved")
	te, _ := tool.AsError(err)
	if te == nil || te.Err == nil {
		t.Fatal("no cause recorded for the audit log")
	}
}
