package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The bypass suite (issue 4): black-box attempts, through the real binary
// over real HTTP, to act as someone else or to do more than a key allows.
// Every case asserts an outcome that a bypass would change: the tool did not
// run (its file is absent, no tool.call.start under the request id), the
// refusal is audited for the real principal, the answer is the generic one.

// Protocol versions served on /mcp (DESIGN §4).
const (
	bpSessions  = "2025-11-25"
	bpStateless = "2026-07-28"
)

// bpReadOnly are the tools the guest role is granted (DESIGN §2); guests
// see those of them that the gateway registers.
var bpReadOnly = []string{"file_info", "list_directory", "read_file", "search_files"}

// bpHTTP never follows redirects: a redirect is an answer to assert on.
var bpHTTP = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// bpClientFrom returns a client whose connections come from the loopback
// address ip (a second source, for lockout tests).
func bpClientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &http.Client{
		Timeout:       30 * time.Second,
		Transport:     &http.Transport{DialContext: d.DialContext},
		CheckRedirect: bpHTTP.CheckRedirect,
	}
}

// bpHdr is one request header; repeated names are sent as repeated lines.
type bpHdr [2]string

// bpResp is an HTTP answer with the JSON-RPC messages of its body (a JSON
// object or array, or an SSE stream of them).
type bpResp struct {
	status int
	header http.Header
	body   string
	msgs   []bpMsg
}

func (r bpResp) rid() string { return r.header.Get("X-Request-Id") }

type bpMsg struct {
	ID     json.RawMessage `json:"id"`
	Result *bpResult       `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type bpResult struct {
	IsError bool `json:"isError"`
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StructuredContent map[string]any `json:"structuredContent"`
	Tools             []struct {
		Name string `json:"name"`
	} `json:"tools"`
}

func (r *bpResult) code() string {
	s, _ := r.StructuredContent["code"].(string)
	return s
}

func (r *bpResult) text() string {
	var b strings.Builder
	for _, c := range r.Content {
		b.WriteString(c.Text)
	}
	return b.String()
}

func (r *bpResult) names() []string {
	out := []string{}
	for _, tl := range r.Tools {
		out = append(out, tl.Name)
	}
	slices.Sort(out)
	return out
}

// bpDo sends one request to g from the default source.
func bpDo(t *testing.T, g *gateway, method, target, body string, hdrs ...bpHdr) bpResp {
	t.Helper()
	return bpSend(t, bpHTTP, g, method, target, body, hdrs...)
}

func bpSend(t *testing.T, c *http.Client, g *gateway, method, target, body string, hdrs ...bpHdr) bpResp {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.base+target, rd)
	if err != nil {
		t.Fatalf("%s %q: %v", method, target, err)
	}
	for _, h := range hdrs {
		req.Header.Add(h[0], h[1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %q: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %q: read body: %v", method, target, err)
	}
	return bpResp{status: resp.StatusCode, header: resp.Header, body: string(b),
		msgs: bpParse(resp.Header.Get("Content-Type"), b)}
}

// bpParse extracts JSON-RPC messages from a JSON or SSE body.
func bpParse(contentType string, b []byte) []bpMsg {
	switch {
	case strings.HasPrefix(contentType, "text/event-stream"):
		var msgs []bpMsg
		s := strings.ReplaceAll(string(b), "\r\n", "\n")
		for _, ev := range strings.Split(s, "\n\n") {
			var data []string
			for _, line := range strings.Split(ev, "\n") {
				if d, ok := strings.CutPrefix(line, "data:"); ok {
					data = append(data, strings.TrimPrefix(d, " "))
				}
			}
			if len(data) > 0 {
				msgs = append(msgs, bpDecode([]byte(strings.Join(data, "\n")))...)
			}
		}
		return msgs
	case strings.HasPrefix(contentType, "application/json"):
		return bpDecode(b)
	}
	return nil
}

func bpDecode(b []byte) []bpMsg {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var msgs []bpMsg
		if json.Unmarshal(b, &msgs) == nil {
			return msgs
		}
		return nil
	}
	var m bpMsg
	if json.Unmarshal(b, &m) != nil || (m.Result == nil && m.Error == nil) {
		return nil
	}
	return []bpMsg{m}
}

// bpMCPHeaders are the headers of a Streamable HTTP POST; key and pv are
// left out when empty.
func bpMCPHeaders(key, pv string) []bpHdr {
	h := []bpHdr{{"Content-Type", "application/json"}, {"Accept", "application/json, text/event-stream"}}
	if key != "" {
		h = append(h, bpHdr{"Authorization", "Bearer " + key})
	}
	if pv != "" {
		h = append(h, bpHdr{"Mcp-Protocol-Version", pv})
	}
	return h
}

func bpJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const bpInitBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bypass","version":"1"}}}`

func bpCallBody(t *testing.T, id int, name string, args any) string {
	return bpJSON(t, map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call",
		"params": map[string]any{"name": name, "arguments": args}})
}

const bpListBody = `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}`

// bpMeta is the per-request _meta of the stateless protocol (SEP-2575).
func bpMeta() map[string]any {
	return map[string]any{
		"io.modelcontextprotocol/protocolVersion":    bpStateless,
		"io.modelcontextprotocol/clientCapabilities": map[string]any{},
	}
}

// bpStatelessReq sends one stateless (2026-07-28) request; params gets the
// protocol _meta unless it has one.
func bpStatelessReq(t *testing.T, c *http.Client, g *gateway, key, method string, params map[string]any, extra ...bpHdr) bpResp {
	t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	if _, ok := params["_meta"]; !ok {
		params["_meta"] = bpMeta()
	}
	h := append(bpMCPHeaders(key, bpStateless), bpHdr{"Mcp-Method", method})
	if name, ok := params["name"].(string); ok {
		h = append(h, bpHdr{"Mcp-Name", name})
	}
	body := bpJSON(t, map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	return bpSend(t, c, g, "POST", "/mcp", body, append(h, extra...)...)
}

// bpEvent is an audit event as the admin API returns it.
type bpEvent struct {
	Type       string   `json:"type"`
	Principal  string   `json:"principal"`
	Roles      []string `json:"roles"`
	Session    string   `json:"session"`
	RequestID  string   `json:"request_id"`
	RemoteAddr string   `json:"remote_addr"`
	Tool       string   `json:"tool"`
	Decision   string   `json:"decision"`
	Reason     string   `json:"reason"`
	Status     string   `json:"status"`
	Detail     string   `json:"detail"`
}

// bpAudit queries the audit log through the admin API as the admin.
func bpAudit(t *testing.T, c *http.Client, g *gateway, q url.Values) []bpEvent {
	t.Helper()
	if q.Get("limit") == "" {
		q.Set("limit", "1000")
	}
	r := bpSend(t, c, g, "GET", "/admin/v1/audit?"+q.Encode(), "", bpHdr{"Authorization", "Bearer " + g.adminKey})
	if r.status != http.StatusOK {
		t.Fatalf("audit query %v: status %d: %s", q, r.status, r.body)
	}
	var out struct {
		Events []bpEvent `json:"events"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatalf("audit answer %q: %v", r.body, err)
	}
	return out.Events
}

func bpAuditRID(t *testing.T, g *gateway, rid string) []bpEvent {
	t.Helper()
	if rid == "" {
		t.Fatal("response has no X-Request-Id")
	}
	return bpAudit(t, bpHTTP, g, url.Values{"request_id": {rid}})
}

// bpKey is a key as `portcullis key create --json` prints it.
type bpKey struct {
	ID        string     `json:"id"`
	Key       string     `json:"key"`
	User      string     `json:"user"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	Scopes    []string   `json:"scopes"`
}

// bpCreateKey runs `key create --json` with extra flags.
func bpCreateKey(t *testing.T, g *gateway, user, role string, flags ...string) bpKey {
	t.Helper()
	out, err := g.cli(append([]string{"key", "create", "--user", user, "--role", role, "--json"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	var k bpKey
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Key == "" || k.ID == "" {
		t.Fatalf("key create output %q: %v", out, err)
	}
	return k
}

// bpFixture is the shared gateway of TestBypass with a guest and a
// developer key.
type bpFixture struct {
	g                  *gateway
	guest, dev         string // API keys
	guestUser, devUser string
	allTools           []string // the admin's tools/list: every registered tool
	guestTools         []string // what a guest must see: bpReadOnly ∩ allTools
	ref401             bpResp   // the answer to an unknown, well-formed key
	legit              []string // workspace files written on purpose
}

// admin sends an admin API request with key.
func (f *bpFixture) admin(t *testing.T, key, method, path, body string) bpResp {
	t.Helper()
	h := []bpHdr{{"Authorization", "Bearer " + key}}
	if body != "" {
		h = append(h, bpHdr{"Content-Type", "application/json"})
	}
	return bpDo(t, f.g, method, path, body, h...)
}

// open starts a 2025-11-25 session with key (initialize + initialized),
// sending extra on both requests, and returns its id.
func (f *bpFixture) open(t *testing.T, key string, extra ...bpHdr) string {
	t.Helper()
	return f.openWith(t, key, bpInitBody, extra...)
}

func (f *bpFixture) openWith(t *testing.T, key, initBody string, extra ...bpHdr) string {
	t.Helper()
	r := bpDo(t, f.g, "POST", "/mcp", initBody, append(bpMCPHeaders(key, ""), extra...)...)
	sid := r.header.Get("Mcp-Session-Id")
	if r.status != http.StatusOK || sid == "" {
		t.Fatalf("initialize: status %d session %q: %s", r.status, sid, r.body)
	}
	r = f.post(t, key, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, extra...)
	if r.status/100 != 2 {
		t.Fatalf("notifications/initialized: status %d: %s", r.status, r.body)
	}
	return sid
}

// post sends a raw JSON-RPC body on session sid ("" = none) as key.
func (f *bpFixture) post(t *testing.T, key, sid, body string, extra ...bpHdr) bpResp {
	t.Helper()
	h := bpMCPHeaders(key, bpSessions)
	if sid != "" {
		h = append(h, bpHdr{"Mcp-Session-Id", sid})
	}
	return bpDo(t, f.g, "POST", "/mcp", body, append(h, extra...)...)
}

func (f *bpFixture) call(t *testing.T, key, sid, name string, args any, extra ...bpHdr) bpResp {
	t.Helper()
	return f.post(t, key, sid, bpCallBody(t, 7, name, args), extra...)
}

// list returns the tool names of a tools/list on sid.
func (f *bpFixture) list(t *testing.T, key, sid string, extra ...bpHdr) []string {
	t.Helper()
	r := f.post(t, key, sid, bpListBody, extra...)
	if r.status != http.StatusOK || len(r.msgs) != 1 || r.msgs[0].Result == nil {
		t.Fatalf("tools/list: status %d: %.500s", r.status, r.body)
	}
	return r.msgs[0].Result.names()
}

// result returns the single tools/call result of r.
func (f *bpFixture) result(t *testing.T, r bpResp) *bpResult {
	t.Helper()
	if r.status != http.StatusOK || len(r.msgs) != 1 || r.msgs[0].Result == nil {
		t.Fatalf("status %d: %.500s; want one JSON-RPC result", r.status, r.body)
	}
	return r.msgs[0].Result
}

// bpGeneric are the client texts of refusals (reason.Message).
var bpGeneric = map[string]string{
	"PERMISSION_DENIED": "access denied",
	"UNKNOWN_TOOL":      "unknown tool",
}

// refused asserts that r is one tools/call refusal with one of codes and
// its generic text, audited under r's request id for principal, and that
// no tool started for that request.
func (f *bpFixture) refused(t *testing.T, r bpResp, principal string, codes ...string) *bpResult {
	t.Helper()
	res := f.result(t, r)
	if !res.IsError || !slices.Contains(codes, res.code()) {
		t.Errorf("isError=%v code=%q text=%q, want a refusal %v", res.IsError, res.code(), res.text(), codes)
	}
	if want, ok := bpGeneric[res.code()]; ok && res.text() != want {
		t.Errorf("client text %q, want the generic %q", res.text(), want)
	}
	if res.code() == "INVALID_ARGUMENTS" && !strings.HasPrefix(res.text(), "invalid arguments") {
		t.Errorf("client text %q", res.text())
	}
	f.auditedRefusal(t, r.rid(), principal, res.code())
	return res
}

// auditedRefusal asserts that request rid has a refusal event for
// principal with code and no tool.call.start.
func (f *bpFixture) auditedRefusal(t *testing.T, rid, principal, code string) {
	t.Helper()
	evs := bpAuditRID(t, f.g, rid)
	found := false
	for _, e := range evs {
		switch e.Type {
		case "policy.deny", "tool.call.refused":
			if e.Principal == principal && e.Decision == "deny" && e.Status == "refused" && (code == "" || e.Reason == code) {
				found = true
			}
		case "tool.call.start", "tool.call.end":
			t.Errorf("a tool ran for request %s: %+v", rid, e)
		}
		if e.Principal != principal {
			t.Errorf("event of request %s recorded for %q, want %q: %+v", rid, e.Principal, principal, e)
		}
	}
	if !found {
		t.Errorf("no audited refusal (%s, %s) for request %s; events: %+v", principal, code, rid, evs)
	}
}

// unauthenticated asserts the generic 401 (identical to an unknown key's).
func (f *bpFixture) unauthenticated(t *testing.T, r bpResp) {
	t.Helper()
	if r.status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401: %.300s", r.status, r.body)
	}
	if r.body != f.ref401.body {
		t.Errorf("401 body %q differs from an unknown key's %q", r.body, f.ref401.body)
	}
	if wa := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, `Bearer realm="portcullis"`) {
		t.Errorf("WWW-Authenticate = %q", wa)
	}
}

func (f *bpFixture) noFile(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(f.g.workspace, name)); !os.IsNotExist(err) {
		t.Errorf("%s exists in the workspace (lstat err %v): the forbidden call ran", name, err)
	}
}

// probe is a stateless tools/list as key: the cheapest authenticated request.
func (f *bpFixture) probe(t *testing.T, key string, extra ...bpHdr) bpResp {
	t.Helper()
	return bpStatelessReq(t, bpHTTP, f.g, key, "tools/list", nil, extra...)
}

// TestBypass runs the bypass suite against one gateway started with
// brute-force lockout off (the suite fails authentication on purpose many
// times; TestBypassLockout covers lockout).
func TestBypass(t *testing.T) {
	g := startGateway(t, "PORTCULLIS_AUTH_LOCKOUT_THRESHOLD=0")
	if err := os.WriteFile(filepath.Join(g.workspace, "ok.txt"), []byte("public text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &bpFixture{g: g, guestUser: "gus", devUser: "devon"}
	f.guest = g.createKey(f.guestUser, "guest")
	f.dev = g.createKey(f.devUser, "developer")
	// Created first so that it has expired by the time its case runs.
	expiring := bpCreateKey(t, g, "ezra", "developer", "--expires", "2s")
	if r := f.probe(t, expiring.Key); r.status != http.StatusOK {
		t.Fatalf("fresh expiring key refused: %d %s", r.status, r.body)
	}

	f.allTools = f.list(t, g.adminKey, f.open(t, g.adminKey))
	for _, n := range f.allTools {
		if slices.Contains(bpReadOnly, n) {
			f.guestTools = append(f.guestTools, n)
		}
	}
	if len(f.guestTools) == 0 || !slices.Contains(f.allTools, "write_file") {
		t.Fatalf("registered tools %v: want read-only tools and write_file", f.allTools)
	}
	f.ref401 = f.probe(t, "pcl_"+strings.Repeat("A", 52))
	if f.ref401.status != http.StatusUnauthorized {
		t.Fatalf("unknown key: status %d", f.ref401.status)
	}

	t.Run("identity headers", f.identityHeaders)
	t.Run("identity in arguments", f.identityInArguments)
	t.Run("sql injection", f.sqlInjection)
	t.Run("tool names", f.toolNames)
	t.Run("tools/list", f.toolsList)
	t.Run("batches", f.batches)
	t.Run("duplicate keys", f.duplicateKeys)
	t.Run("admin api", f.adminAPI)
	t.Run("credentials", func(t *testing.T) { f.credentials(t, expiring) })
	t.Run("sessions", f.sessions)
	t.Run("key scopes", f.keyScopes)

	// Whatever the cases did, only the files written on purpose exist.
	ents, err := os.ReadDir(g.workspace)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "ok.txt" && !slices.Contains(f.legit, e.Name()) {
			t.Errorf("unexpected file %q in the workspace", e.Name())
		}
	}
}

// identityHeaders: identity comes only from the bearer key. Headers that
// name another user or role change nothing for a guest and authenticate
// nobody on their own; odd Authorization headers are refused with the
// generic 401, never read as the admin.
func (f *bpFixture) identityHeaders(t *testing.T) {
	admin := f.g.adminKey
	spoofs := []struct {
		name string
		hdr  []bpHdr
	}{
		{"X-User-ID", []bpHdr{{"X-User-ID", "admin"}, {"X-User", "admin"}}},
		{"X-Role", []bpHdr{{"X-Role", "admin"}, {"X-Roles", "admin"}}},
		{"X-Forwarded-User", []bpHdr{{"X-Forwarded-User", "admin"}, {"X-Forwarded-Email", "admin@localhost"}, {"X-Forwarded-Groups", "admin"}}},
		{"X-Remote-User", []bpHdr{{"X-Remote-User", "admin"}, {"Remote-User", "admin"}}},
		{"X-Auth-Request-User", []bpHdr{{"X-Auth-Request-User", "admin"}, {"X-Auth-Request-Groups", "admin"}}},
		{"Forwarded", []bpHdr{{"Forwarded", "for=127.0.0.1;by=admin;user=admin"}, {"X-Forwarded-For", "10.0.0.1"}}},
		{"Impersonate-User", []bpHdr{{"Impersonate-User", "admin"}, {"Impersonate-Group", "system:masters"}}},
		{"admin key in X-Api-Key", []bpHdr{{"X-Api-Key", admin}, {"X-Portcullis-Key", admin}}},
		{"admin key in a cookie", []bpHdr{{"Cookie", "portcullis_key=" + admin + "; token=" + admin}}},
	}
	for i, s := range spoofs {
		t.Run(s.name, func(t *testing.T) {
			sid := f.open(t, f.guest, s.hdr...)
			if got := f.list(t, f.guest, sid, s.hdr...); !slices.Equal(got, f.guestTools) {
				t.Errorf("guest tools/list with %s = %v, want %v", s.name, got, f.guestTools)
			}
			target := fmt.Sprintf("spoof-%d.txt", i)
			r := f.call(t, f.guest, sid, "write_file", map[string]any{"path": target, "content": "pwned"}, s.hdr...)
			f.refused(t, r, f.guestUser, "PERMISSION_DENIED")
			f.noFile(t, target)
			// Without a key the same headers authenticate nobody.
			f.unauthenticated(t, bpDo(t, f.g, "POST", "/mcp", bpInitBody, append(bpMCPHeaders("", ""), s.hdr...)...))
		})
	}

	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	auths := []struct {
		name   string
		values []string
	}{
		{"two tokens", []string{"Bearer " + f.guest + " " + admin}},
		{"two tokens comma", []string{"Bearer " + f.guest + "," + admin}},
		{"two bearer credentials", []string{"Bearer " + f.guest + ", Bearer " + admin}},
		{"Bearer twice", []string{"Bearer Bearer " + admin}},
		{"Basic admin:key", []string{basic("admin:" + admin)}},
		{"Basic key:", []string{basic(admin + ":")}},
		{"Token scheme", []string{"Token " + admin}},
		{"no scheme", []string{admin}},
		{"no space", []string{"Bearer" + admin}},
		{"tab separator", []string{"Bearer\t" + admin}},
	}
	for _, a := range auths {
		t.Run("Authorization "+a.name, func(t *testing.T) {
			var h []bpHdr
			for _, v := range a.values {
				h = append(h, bpHdr{"Authorization", v})
			}
			f.unauthenticated(t, bpDo(t, f.g, "POST", "/mcp", bpInitBody, append(bpMCPHeaders("", ""), h...)...))
		})
	}

	t.Run("unsigned JWT naming the admin", func(t *testing.T) {
		enc := base64.RawURLEncoding.EncodeToString
		jwt := enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
			enc([]byte(`{"sub":"admin","preferred_username":"admin","roles":["admin"],"exp":4102444800}`)) + "."
		f.unauthenticated(t, bpDo(t, f.g, "POST", "/mcp", bpInitBody, bpMCPHeaders(jwt, "")...))
	})

	// A web page cannot ride on a key: a cross-origin or foreign-Host
	// request is refused before it reaches the admin API, even with the
	// admin's key (CSRF, DNS rebinding).
	for _, c := range []struct {
		name string
		hdr  []bpHdr
	}{
		{"cross-site Origin", []bpHdr{{"Origin", "http://evil.example"}}},
		{"Sec-Fetch-Site cross-site", []bpHdr{{"Sec-Fetch-Site", "cross-site"}}},
		{"foreign Host", []bpHdr{{"Host", "evil.example"}}},
	} {
		t.Run("admin key with "+c.name, func(t *testing.T) {
			before := len(f.keys(t))
			h := []bpHdr{{"Authorization", "Bearer " + admin}, {"Content-Type", "application/json"}}
			var host string
			for _, x := range c.hdr {
				if x[0] == "Host" {
					host = x[1]
				} else {
					h = append(h, x)
				}
			}
			req, err := http.NewRequest("POST", f.g.base+"/admin/v1/keys", strings.NewReader(`{"user":"csrf","role":"admin"}`))
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range h {
				req.Header.Add(x[0], x[1])
			}
			if host != "" {
				req.Host = host
			}
			resp, err := bpHTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "pcl_") {
				t.Errorf("status %d body %s, want 403", resp.StatusCode, body)
			}
			if after := len(f.keys(t)); after != before {
				t.Errorf("a key was created: %d keys, were %d", after, before)
			}
		})
	}

	// Two Authorization lines: whichever the gateway reads, the guest must
	// not become the admin.
	t.Run("Authorization twice guest then admin", func(t *testing.T) {
		h := []bpHdr{{"Authorization", "Bearer " + f.guest}, {"Authorization", "Bearer " + admin}}
		r := bpStatelessReq(t, bpHTTP, f.g, "", "tools/call",
			map[string]any{"name": "write_file", "arguments": map[string]any{"path": "twice.txt", "content": "x"}}, h...)
		if r.status != http.StatusUnauthorized {
			f.refused(t, r, f.guestUser, "PERMISSION_DENIED")
		}
		f.noFile(t, "twice.txt")
	})

	t.Run("admin key in the query string", func(t *testing.T) {
		r := bpDo(t, f.g, "POST", "/mcp?access_token="+admin+"&api_key="+admin, bpInitBody, bpMCPHeaders("", "")...)
		f.unauthenticated(t, r)
		h := bpMCPHeaders(f.guest, bpStateless)
		body := bpJSON(t, map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{
			"name": "write_file", "arguments": map[string]any{"path": "query.txt", "content": "x"}, "_meta": bpMeta()}})
		r = bpDo(t, f.g, "POST", "/mcp?access_token="+admin, body, append(h, bpHdr{"Mcp-Method", "tools/call"}, bpHdr{"Mcp-Name", "write_file"})...)
		f.refused(t, r, f.guestUser, "PERMISSION_DENIED")
		f.noFile(t, "query.txt")
	})

	t.Run("client X-Request-Id is not used", func(t *testing.T) {
		const spoofed = "req_SPOOFEDBYTHECLIENT0000000"
		r := bpStatelessReq(t, bpHTTP, f.g, f.guest, "tools/call",
			map[string]any{"name": "write_file", "arguments": map[string]any{"path": "rid.txt", "content": "x"}},
			bpHdr{"X-Request-Id", spoofed})
		if r.rid() == spoofed {
			t.Errorf("the gateway adopted the client's request id")
		}
		f.refused(t, r, f.guestUser, "PERMISSION_DENIED")
		if evs := bpAuditRID(t, f.g, spoofed); len(evs) != 0 {
			t.Errorf("audit events under the client's request id: %+v", evs)
		}
		f.noFile(t, "rid.txt")
	})
	t.Run("X-Forwarded-For does not change the audited address", func(t *testing.T) {
		r := bpStatelessReq(t, bpHTTP, f.g, f.guest, "tools/call",
			map[string]any{"name": "write_file", "arguments": map[string]any{"path": "xff.txt", "content": "x"}},
			bpHdr{"X-Forwarded-For", "203.0.113.7"}, bpHdr{"X-Real-IP", "203.0.113.7"}, bpHdr{"Forwarded", "for=203.0.113.7"})
		f.refused(t, r, f.guestUser, "PERMISSION_DENIED")
		for _, e := range bpAuditRID(t, f.g, r.rid()) {
			if !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") {
				t.Errorf("audited remote address %q, want the TCP peer 127.0.0.1", e.RemoteAddr)
			}
		}
	})
}

// identityInArguments: fields that name a user, role or principal inside
// the arguments, params or _meta never elevate: the call is refused by
// name or by schema, as the key's own principal.
func (f *bpFixture) identityInArguments(t *testing.T) {
	sid := f.open(t, f.guest)
	write := func(path string) map[string]any { return map[string]any{"path": path, "content": "pwned"} }
	with := func(m map[string]any, k string, v any) map[string]any { m[k] = v; return m }
	cases := []struct {
		name   string
		params map[string]any
		file   string
		code   string
	}{
		{"user in write_file arguments", map[string]any{"name": "write_file", "arguments": with(write("arg-1.txt"), "user", "admin")}, "arg-1.txt", "PERMISSION_DENIED"},
		{"role and user in read_file arguments", map[string]any{"name": "read_file",
			"arguments": map[string]any{"path": "ok.txt", "user": "admin", "role": "admin"}}, "", "INVALID_ARGUMENTS"},
		{"principal object in arguments", map[string]any{"name": "write_file", "arguments": with(write("arg-2.txt"), "principal",
			map[string]any{"name": "admin", "roles": []string{"admin"}})}, "arg-2.txt", "PERMISSION_DENIED"},
		{"_meta inside arguments", map[string]any{"name": "write_file", "arguments": with(write("arg-3.txt"), "_meta",
			map[string]any{"role": "admin", "user": "admin"})}, "arg-3.txt", "PERMISSION_DENIED"},
		{"_meta role in params", map[string]any{"name": "write_file", "arguments": write("arg-4.txt"),
			"_meta": map[string]any{"role": "admin", "user": "admin", "principal": "admin", "progressToken": 1}}, "arg-4.txt", "PERMISSION_DENIED"},
		{"principal fields in params", map[string]any{"name": "write_file", "arguments": write("arg-5.txt"),
			"principal": "admin", "user": "admin", "roles": []string{"admin"}}, "arg-5.txt", "PERMISSION_DENIED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := bpJSON(t, map[string]any{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": c.params})
			f.refused(t, f.post(t, f.guest, sid, body), f.guestUser, c.code)
			if c.file != "" {
				f.noFile(t, c.file)
			}
		})
	}
	t.Run("stateless _meta naming the admin", func(t *testing.T) {
		meta := bpMeta()
		meta["io.modelcontextprotocol/clientInfo"] = map[string]any{"name": "admin", "version": "1"}
		meta["io.modelcontextprotocol/user"] = "admin"
		meta["role"] = "admin"
		r := bpStatelessReq(t, bpHTTP, f.g, f.guest, "tools/call",
			map[string]any{"name": "write_file", "arguments": write("arg-6.txt"), "_meta": meta})
		f.refused(t, r, f.guestUser, "PERMISSION_DENIED")
		f.noFile(t, "arg-6.txt")
	})
	t.Run("initialize claiming to be the admin", func(t *testing.T) {
		init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",` +
			`"capabilities":{"experimental":{"role":"admin"}},"clientInfo":{"name":"admin","version":"1"},"_meta":{"user":"admin"}}}`
		sid := f.openWith(t, f.guest, init)
		if got := f.list(t, f.guest, sid); !slices.Equal(got, f.guestTools) {
			t.Errorf("tools/list = %v, want the guest's %v", got, f.guestTools)
		}
		f.refused(t, f.call(t, f.guest, sid, "write_file", write("arg-7.txt")), f.guestUser, "PERMISSION_DENIED")
		f.noFile(t, "arg-7.txt")
	})
}

type bpUser struct {
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	Disabled bool     `json:"disabled"`
}

func (f *bpFixture) users(t *testing.T) []bpUser {
	t.Helper()
	r := f.admin(t, f.g.adminKey, "GET", "/admin/v1/users", "")
	var out struct{ Users []bpUser }
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &out) != nil {
		t.Fatalf("list users: %d %s", r.status, r.body)
	}
	return out.Users
}

func (f *bpFixture) keys(t *testing.T) []bpKey {
	t.Helper()
	r := f.admin(t, f.g.adminKey, "GET", "/admin/v1/keys", "")
	var out struct{ Keys []bpKey }
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &out) != nil {
		t.Fatalf("list keys: %d %s", r.status, r.body)
	}
	return out.Keys
}

// sqlInjection: hostile user names, roles and key ids through the admin API
// (as the admin) are refused or match nothing; they never create, revoke
// or disable anything else, and never authenticate.
func (f *bpFixture) sqlInjection(t *testing.T) {
	admin := f.g.adminKey
	usersBefore, keysBefore := f.users(t), f.keys(t)
	names := []string{`admin'--`, `x' OR '1'='1`, `"; DROP TABLE api_keys; --`, `devon' --`, `a'); DELETE FROM users; --`}
	for _, n := range names {
		t.Run("create user "+n, func(t *testing.T) {
			r := f.admin(t, admin, "POST", "/admin/v1/users", bpJSON(t, map[string]any{"name": n, "roles": []string{"admin"}}))
			if r.status != http.StatusBadRequest {
				t.Errorf("status %d, want 400: %s", r.status, r.body)
			}
		})
		t.Run("create key for user "+n, func(t *testing.T) {
			r := f.admin(t, admin, "POST", "/admin/v1/keys", bpJSON(t, map[string]any{"user": n, "role": "admin"}))
			if r.status != http.StatusBadRequest || strings.Contains(r.body, "pcl_") {
				t.Errorf("status %d, want 400 and no key: %s", r.status, r.body)
			}
		})
	}
	t.Run("create key with injected role", func(t *testing.T) {
		r := f.admin(t, admin, "POST", "/admin/v1/keys", `{"user":"sqlrole","role":"guest' OR '1'='1"}`)
		if r.status != http.StatusBadRequest || strings.Contains(r.body, "pcl_") {
			t.Errorf("status %d, want 400: %s", r.status, r.body)
		}
	})
	ids := []string{`' OR 1=1 --`, `key_x' OR 'a'='a`, `%`, `*`, `1; DELETE FROM api_keys`}
	for _, id := range ids {
		t.Run("revoke key "+id, func(t *testing.T) {
			r := f.admin(t, admin, "DELETE", "/admin/v1/keys/"+url.PathEscape(id), "")
			if r.status != http.StatusNotFound {
				t.Errorf("status %d, want 404: %s", r.status, r.body)
			}
		})
	}
	t.Run("rotate key ' OR 1=1 --", func(t *testing.T) {
		r := f.admin(t, admin, "POST", "/admin/v1/keys/"+url.PathEscape(`' OR 1=1 --`)+"/rotate", "")
		if r.status != http.StatusNotFound || strings.Contains(r.body, "pcl_") {
			t.Errorf("status %d, want 404: %s", r.status, r.body)
		}
	})
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/admin/v1/users/" + url.PathEscape(`admin' OR '1'='1`), ""},
		{"POST", "/admin/v1/users/" + url.PathEscape(`x' OR '1'='1`) + "/disable", ""},
		{"POST", "/admin/v1/users/" + url.PathEscape(`x' OR '1'='1`) + "/roles", `{"role":"admin"}`},
		{"DELETE", "/admin/v1/users/" + url.PathEscape(`x' OR '1'='1`) + "/roles/" + url.PathEscape(`admin' OR '1'='1`), ""},
		{"POST", "/admin/v1/policies/test", `{"user":"x' OR '1'='1","tool":"write_file"}`},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := f.admin(t, admin, c.method, c.path, c.body)
			if r.status != http.StatusNotFound {
				t.Errorf("status %d, want 404: %s", r.status, r.body)
			}
		})
	}
	t.Run("audit filter ' OR '1'='1", func(t *testing.T) {
		for _, k := range []string{"user", "tool", "type", "request_id"} {
			if evs := bpAudit(t, bpHTTP, f.g, url.Values{k: {`' OR '1'='1`}}); len(evs) != 0 {
				t.Errorf("audit %s=' OR '1'='1 returned %d events, want none", k, len(evs))
			}
		}
	})
	t.Run("injected bearer token", func(t *testing.T) {
		for _, tok := range []string{`pcl_' OR '1'='1`, `' OR 1=1 --`, "pcl_" + strings.Repeat("A", 40) + "'OR'1'='1"} {
			f.unauthenticated(t, f.probe(t, tok))
		}
	})
	t.Run("nothing changed", func(t *testing.T) {
		if diff := cmp.Diff(usersBefore, f.users(t)); diff != "" {
			t.Errorf("users changed (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(keysBefore, f.keys(t)); diff != "" {
			t.Errorf("keys changed (-before +after):\n%s", diff)
		}
		if r := f.probe(t, f.dev); r.status != http.StatusOK {
			t.Errorf("developer key no longer works: %d %s", r.status, r.body)
		}
		if r := f.probe(t, f.guest); r.status != http.StatusOK {
			t.Errorf("guest key no longer works: %d %s", r.status, r.body)
		}
	})
}

// toolNames: spellings of a forbidden tool's name never reach it, every
// attempt is refused with a generic code and audited, and the answer does
// not tell a forbidden tool from one that does not exist.
func (f *bpFixture) toolNames(t *testing.T) {
	sid := f.open(t, f.guest)
	names := []string{
		"WRITE_FILE", "Write_File", "write_FILE",
		" write_file", "write_file ", "write_file\t", "write_file\n", "\u00a0write_file",
		"write_file\x00", "\x00write_file", "read_file\x00write_file",
		"write\u200bfile", "write_\u200bfile", "\ufeffwrite_file", "write_file\u200d",
		"ｗrite_file", "ｗｒｉｔｅ＿ｆｉｌｅ", "write\uff3ffile", "wrıte_file",
		"../write_file", "./write_file", "tools/write_file", "write_file/..", "/write_file", `..\write_file`,
		"write%5ffile", "write_file;read_file", "write_file,read_file",
		"*", "write_*", "?rite_file", "[w]rite_file", "write_fil?", "**",
		"",
	}
	for i, n := range names {
		t.Run(fmt.Sprintf("%q", n), func(t *testing.T) {
			target := fmt.Sprintf("name-%d.txt", i)
			r := f.call(t, f.guest, sid, n, map[string]any{"path": target, "content": "pwned"})
			f.refused(t, r, f.guestUser, "UNKNOWN_TOOL", "PERMISSION_DENIED")
			f.noFile(t, target)
			for _, e := range bpAuditRID(t, f.g, r.rid()) {
				if e.Tool != n {
					t.Errorf("audit records tool %q, want the name sent %q", e.Tool, n)
				}
			}
		})
	}
	t.Run("forbidden tool with bad arguments", func(t *testing.T) {
		// Authorization comes before validation: the answer must not
		// reveal the forbidden tool's schema.
		for _, args := range []map[string]any{{}, {"path": 42}, {"path": "x", "mode": "0777"}} {
			res := f.refused(t, f.call(t, f.guest, sid, "write_file", args), f.guestUser, "PERMISSION_DENIED")
			if strings.Contains(res.text(), "content") || strings.Contains(res.text(), "path") {
				t.Errorf("refusal text %q talks about the schema", res.text())
			}
		}
	})
	methods := []string{"TOOLS/CALL", "Tools/Call", "tools/call ", " tools/call", "tools/call\x00", "tools//call",
		"tools/call/", "tools/./call", "tools/run", "tools/execute", "resources/read", "prompts/get",
		"completion/complete", "sampling/createMessage", "roots/list", "notifications/tools/call"}
	for i, m := range methods {
		t.Run(fmt.Sprintf("method %q", m), func(t *testing.T) {
			target := fmt.Sprintf("method-%d.txt", i)
			body := bpJSON(t, map[string]any{"jsonrpc": "2.0", "id": 8, "method": m, "params": map[string]any{
				"name": "write_file", "uri": "file:///etc/passwd", "arguments": map[string]any{"path": target, "content": "x"}}})
			r := f.post(t, f.guest, sid, body)
			if r.status == http.StatusOK && (len(r.msgs) != 1 || r.msgs[0].Error == nil) {
				t.Errorf("method %q answered %s, want a JSON-RPC error", m, r.body)
			}
			if r.status >= 500 || strings.Contains(r.body, "root:") {
				t.Errorf("status %d: %s", r.status, r.body)
			}
			f.noFile(t, target)
			for _, e := range bpAuditRID(t, f.g, r.rid()) {
				if e.Type == "tool.call.start" {
					t.Errorf("a tool ran: %+v", e)
				}
			}
		})
	}
	t.Run("forbidden and nonexistent look alike", func(t *testing.T) {
		type answer struct{ Code, Text string }
		get := func(name string) answer {
			res := f.result(t, f.call(t, f.guest, sid, name, map[string]any{"path": "oracle.txt", "content": "x"}))
			return answer{res.code(), res.text()}
		}
		want := get("write_file")
		for _, n := range []string{"execute_python", "delete_file", "no_such_tool", "WRITE_FILE", "write_file2", "admin_tool"} {
			if got := get(n); got != want {
				t.Errorf("%s answers %+v, write_file %+v: existence leaks", n, got, want)
			}
		}
		// Malformed names all get one answer too.
		bad := get("write_file\x00")
		for _, n := range []string{"no_such\x00", "zz zz", "*"} {
			if got := get(n); got != bad {
				t.Errorf("%q answers %+v, %q %+v", n, got, "write_file\x00", bad)
			}
		}
		f.noFile(t, "oracle.txt")
	})
}

// toolsList: tools/list shows exactly the tools a principal may call, with
// the same decision tools/call makes, and follows grant changes at once.
func (f *bpFixture) toolsList(t *testing.T) {
	admin := f.g.adminKey
	t.Run("guest over sessions", func(t *testing.T) {
		if got := f.list(t, f.guest, f.open(t, f.guest)); !slices.Equal(got, f.guestTools) {
			t.Errorf("guest tools/list = %v, want %v", got, f.guestTools)
		}
	})
	t.Run("guest stateless", func(t *testing.T) {
		res := f.result(t, f.probe(t, f.guest))
		if got := res.names(); !slices.Equal(got, f.guestTools) {
			t.Errorf("guest stateless tools/list = %v, want %v", got, f.guestTools)
		}
	})
	t.Run("list agrees with call", func(t *testing.T) {
		sid := f.open(t, f.guest)
		for _, n := range f.allTools {
			// Empty arguments: a permitted tool fails validation, nothing runs.
			res := f.result(t, f.call(t, f.guest, sid, n, map[string]any{}))
			denied := res.code() == "PERMISSION_DENIED"
			if listed := slices.Contains(f.guestTools, n); listed == denied || !res.IsError {
				t.Errorf("%s: listed=%v but call answered isError=%v code %q", n, listed, res.IsError, res.code())
			}
		}
	})
	t.Run("developer sees only its grants", func(t *testing.T) {
		r := f.admin(t, admin, "GET", "/admin/v1/roles/developer", "")
		var role struct {
			Permissions []struct{ Action, Pattern, Effect string }
		}
		if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &role) != nil {
			t.Fatalf("role developer: %d %s", r.status, r.body)
		}
		var want []string
		for _, n := range f.allTools {
			for _, p := range role.Permissions {
				if ok, _ := filepath.Match(p.Pattern, n); ok && p.Action == "call" && p.Effect == "allow" && !slices.Contains(want, n) {
					want = append(want, n)
				}
			}
		}
		if got := f.list(t, f.dev, f.open(t, f.dev)); !slices.Equal(got, want) {
			t.Errorf("developer tools/list = %v, want its grants %v", got, want)
		}
	})
	mustAdmin := func(t *testing.T, method, path, body string) {
		t.Helper()
		if r := f.admin(t, admin, method, path, body); r.status/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
		}
	}
	t.Run("deny grant hides the tool", func(t *testing.T) {
		mustAdmin(t, "POST", "/admin/v1/roles", `{"name":"nowrite"}`)
		mustAdmin(t, "POST", "/admin/v1/roles/nowrite/permissions", `{"action":"call","pattern":"*"}`)
		mustAdmin(t, "POST", "/admin/v1/roles/nowrite/permissions", `{"action":"call","pattern":"write_file","effect":"deny"}`)
		key := f.g.createKey("nora", "nowrite")
		sid := f.open(t, key)
		want := slices.DeleteFunc(slices.Clone(f.allTools), func(s string) bool { return s == "write_file" })
		if got := f.list(t, key, sid); !slices.Equal(got, want) {
			t.Errorf("tools/list = %v, want %v", got, want)
		}
		f.refused(t, f.call(t, key, sid, "write_file", map[string]any{"path": "nora.txt", "content": "x"}), "nora", "PERMISSION_DENIED")
		f.noFile(t, "nora.txt")
	})
	t.Run("revoked permission shrinks the list at once", func(t *testing.T) {
		mustAdmin(t, "POST", "/admin/v1/roles", `{"name":"ops"}`)
		mustAdmin(t, "POST", "/admin/v1/roles/ops/permissions", `{"action":"call","pattern":"file_*"}`)
		mustAdmin(t, "POST", "/admin/v1/roles/ops/permissions", `{"action":"call","pattern":"list_*"}`)
		key := f.g.createKey("olga", "ops")
		sid := f.open(t, key)
		if got := f.list(t, key, sid); !slices.Equal(got, []string{"file_info", "list_directory"}) {
			t.Errorf("ops tools/list = %v", got)
		}
		mustAdmin(t, "DELETE", "/admin/v1/roles/ops/permissions", `{"action":"call","pattern":"list_*"}`)
		if got := f.list(t, key, sid); !slices.Equal(got, []string{"file_info"}) {
			t.Errorf("ops tools/list after the revoke = %v, want [file_info]", got)
		}
		f.refused(t, f.call(t, key, sid, "list_directory", map[string]any{"path": "."}), "olga", "PERMISSION_DENIED")
	})
}

// batches: a JSON-RPC array is refused, or each element is authorized on
// its own; a forbidden element never runs, whatever its neighbours.
func (f *bpFixture) batches(t *testing.T) {
	sid := f.open(t, f.guest)
	read := func(id int) string { return bpCallBody(t, id, "read_file", map[string]any{"path": "ok.txt"}) }
	write := func(id int, p string) string {
		return bpCallBody(t, id, "write_file", map[string]any{"path": p, "content": "pwned"})
	}
	// check asserts that file was not written and, if the batch was
	// served, that each of its forbidden writes was denied on its
	// own (one policy.deny and one PERMISSION_DENIED answer each) and
	// nothing ran but permitted reads, as the guest.
	check := func(t *testing.T, r bpResp, file string, writes int) {
		t.Helper()
		f.noFile(t, file)
		if r.status >= 500 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if r.status != http.StatusOK {
			return // refused as a whole
		}
		denials := 0
		for _, e := range bpAuditRID(t, f.g, r.rid()) {
			if e.Principal != f.guestUser {
				t.Errorf("batch element ran as %q: %+v", e.Principal, e)
			}
			switch {
			case e.Tool == "write_file" && e.Type == "policy.deny":
				denials++
			case e.Tool == "write_file" || e.Tool != "" && !slices.Contains(f.guestTools, e.Tool):
				t.Errorf("batch element %s of %s, want policy.deny", e.Type, e.Tool)
			}
		}
		answers := 0
		for _, m := range r.msgs {
			if m.Result != nil && m.Result.code() == "PERMISSION_DENIED" {
				answers++
			}
		}
		if denials != writes || answers != writes {
			t.Errorf("%d policy.deny events and %d denied answers for %d forbidden elements: %s", denials, answers, writes, r.body)
		}
	}
	h := bpMCPHeaders(f.guest, "")
	sh := append(slices.Clone(h), bpHdr{"Mcp-Session-Id", sid})
	var ten []string
	for i := range 10 {
		ten = append(ten, write(10+i, "batch-3.txt"))
	}
	cases := []struct {
		name   string
		body   string
		hdr    []bpHdr
		file   string
		writes int
	}{
		{"allowed then forbidden", "[" + read(1) + "," + write(2, "batch-1.txt") + "]", sh, "batch-1.txt", 1},
		{"forbidden then allowed", "[" + write(1, "batch-2.txt") + "," + read(2) + "]", sh, "batch-2.txt", 1},
		{"same forbidden call ten times", "[" + strings.Join(ten, ",") + "]", sh, "batch-3.txt", 10},
		{"tools/list and forbidden call", "[" + bpListBody + "," + write(3, "batch-4.txt") + "]", sh, "batch-4.txt", 1},
		{"with protocol header", "[" + read(1) + "," + write(2, "batch-5.txt") + "]",
			append(bpMCPHeaders(f.guest, bpSessions), bpHdr{"Mcp-Session-Id", sid}), "batch-5.txt", 1},
		{"initialize and forbidden call without a session", "[" + bpInitBody + "," + write(2, "batch-6.txt") + "]", h, "batch-6.txt", 1},
		{"nested batch", "[[" + write(1, "batch-7.txt") + "]]", sh, "batch-7.txt", 1},
		{"forbidden call as a notification", "[" + strings.Replace(write(1, "batch-8.txt"), `"id":1,`, "", 1) + "," + read(2) + "]", sh, "batch-8.txt", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			check(t, bpDo(t, f.g, "POST", "/mcp", c.body, c.hdr...), c.file, c.writes)
		})
	}
	t.Run("stateless batch", func(t *testing.T) {
		el := func(id int) string {
			return bpJSON(t, map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": map[string]any{
				"name": "write_file", "arguments": map[string]any{"path": "batch-9.txt", "content": "x"}, "_meta": bpMeta()}})
		}
		h := append(bpMCPHeaders(f.guest, bpStateless), bpHdr{"Mcp-Method", "tools/call"}, bpHdr{"Mcp-Name", "write_file"})
		check(t, bpDo(t, f.g, "POST", "/mcp", "["+el(1)+","+el(2)+"]", h...), "batch-9.txt", 2)
	})
}

// duplicateKeys: a JSON object with a key twice, in the arguments or in
// the JSON-RPC envelope, never lets a forbidden tool run: arguments are
// refused, and the envelope is read once, by the same parser for the
// decision and the execution.
func (f *bpFixture) duplicateKeys(t *testing.T) {
	sid := f.open(t, f.guest)
	devSid := f.open(t, f.dev)
	args := []struct {
		name, key, sid, principal, body string
		files                           []string
	}{
		{"path twice in read_file", f.guest, sid, f.guestUser,
			`{"name":"read_file","arguments":{"path":"ok.txt","path":"../../../../etc/passwd"}}`, nil},
		{"path twice, escaped key", f.guest, sid, f.guestUser,
			`{"name":"read_file","arguments":{"path":"ok.txt","p\u0061th":"../../../../etc/passwd"}}`, nil},
		{"Path in another case", f.guest, sid, f.guestUser,
			`{"name":"read_file","arguments":{"path":"ok.txt","Path":"../../../../etc/passwd"}}`, nil},
		{"developer write_file path twice", f.dev, devSid, f.devUser,
			`{"name":"write_file","arguments":{"path":"dup-in.txt","content":"x","path":"../dup-out.txt"}}`, []string{"dup-in.txt", "../dup-out.txt"}},
		{"developer write_file nested duplicate", f.dev, devSid, f.devUser,
			`{"name":"write_file","arguments":{"path":"dup-nested.txt","content":"x","x":{"a":1,"a":2}}}`, []string{"dup-nested.txt"}},
	}
	for _, c := range args {
		t.Run("arguments "+c.name, func(t *testing.T) {
			r := f.post(t, c.key, c.sid, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":`+c.body+`}`)
			res := f.refused(t, r, c.principal, "INVALID_ARGUMENTS")
			if strings.Contains(res.text(), "root:") || strings.Contains(res.text(), "public text") {
				t.Errorf("a file was read: %q", res.text())
			}
			for _, p := range c.files {
				f.noFile(t, p)
			}
		})
	}
	envelopes := []struct{ name, body, file string }{
		{"name twice read then write", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","name":"write_file","arguments":{"path":"env-1.txt","content":"x"}}}`, "env-1.txt"},
		{"name twice write then read", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"write_file","name":"read_file","arguments":{"path":"ok.txt"}}}`, ""},
		{"name and Name", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","Name":"write_file","NAME":"write_file","arguments":{"path":"ok.txt"}}}`, ""},
		{"name and escaped name", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","n\u0061me":"write_file","arguments":{"path":"env-2.txt","content":"x"}}}`, "env-2.txt"},
		{"method twice list then call", `{"jsonrpc":"2.0","id":5,"method":"tools/list","method":"tools/call","params":{"name":"write_file","arguments":{"path":"env-3.txt","content":"x"}}}`, "env-3.txt"},
		{"method twice call then list", `{"jsonrpc":"2.0","id":5,"method":"tools/call","method":"tools/list","params":{"name":"write_file","arguments":{"path":"env-4.txt","content":"x"}}}`, "env-4.txt"},
		{"params twice", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"ok.txt"}},"params":{"name":"write_file","arguments":{"path":"env-5.txt","content":"x"}}}`, "env-5.txt"},
		{"arguments twice", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"ok.txt"},"arguments":{"path":"env-6.txt","content":"x"}}}`, "env-6.txt"},
		{"id twice", `{"jsonrpc":"2.0","id":5,"id":6,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"env-7.txt","content":"x"}}}`, "env-7.txt"},
	}
	for _, c := range envelopes {
		t.Run("envelope "+c.name, func(t *testing.T) {
			r := f.post(t, f.guest, sid, c.body)
			if c.file != "" {
				f.noFile(t, c.file)
			}
			if r.status >= 500 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if r.status != http.StatusOK {
				return // refused as malformed
			}
			// Whatever was decided is what ran: every event of the request
			// names the same permitted tool, for the guest.
			evs := bpAuditRID(t, f.g, r.rid())
			for _, e := range evs {
				if e.Principal != f.guestUser {
					t.Errorf("event for %q: %+v", e.Principal, e)
				}
				if (e.Type == "tool.call.start" || e.Type == "tool.call.end") && !slices.Contains(f.guestTools, e.Tool) {
					t.Errorf("%s ran for the guest: %+v", e.Tool, e)
				}
				if e.Tool != "" && e.Tool != evs[0].Tool {
					t.Errorf("events of one request name different tools: %+v", evs)
				}
			}
		})
	}
}

// adminAPI: guest and developer keys get 403 with a generic body on every
// admin route (audited as admin.denied) and change nothing; path tricks
// reach no handler with more privilege.
func (f *bpFixture) adminAPI(t *testing.T) {
	admin := f.g.adminKey
	var adminKeyID string
	for _, k := range f.keys(t) {
		if k.User == "admin" {
			adminKeyID = k.ID
		}
	}
	snapshot := func() map[string]string {
		out := map[string]string{}
		for _, p := range []string{"/admin/v1/keys", "/admin/v1/users", "/admin/v1/roles", "/admin/v1/policies"} {
			r := f.admin(t, admin, "GET", p, "")
			if r.status != http.StatusOK {
				t.Fatalf("GET %s as admin: %d", p, r.status)
			}
			out[p] = r.body
		}
		return out
	}
	before := snapshot()
	// Each route with the body an escalation would send.
	routes := []struct{ method, path, body string }{
		{"GET", "/admin/v1/keys", ""},
		{"POST", "/admin/v1/keys", `{"user":"%s","role":"admin"}`},
		{"DELETE", "/admin/v1/keys/" + adminKeyID, ""},
		{"POST", "/admin/v1/keys/" + adminKeyID + "/rotate", ""},
		{"GET", "/admin/v1/users", ""},
		{"POST", "/admin/v1/users", `{"name":"evil","roles":["admin"]}`},
		{"GET", "/admin/v1/users/admin", ""},
		{"POST", "/admin/v1/users/%s/roles", `{"role":"admin"}`},
		{"POST", "/admin/v1/users/admin/disable", ""},
		{"POST", "/admin/v1/users/admin/enable", ""},
		{"DELETE", "/admin/v1/users/admin/roles/admin", ""},
		{"GET", "/admin/v1/roles", ""},
		{"POST", "/admin/v1/roles", `{"name":"evil"}`},
		{"GET", "/admin/v1/roles/admin", ""},
		{"POST", "/admin/v1/roles/%s/permissions", `{"action":"call","pattern":"*"}`},
		{"DELETE", "/admin/v1/roles/guest/permissions", `{"action":"call","pattern":"read_file"}`},
		{"GET", "/admin/v1/policies", ""},
		{"POST", "/admin/v1/policies/reload", ""},
		{"POST", "/admin/v1/policies/test", `{"user":"admin","tool":"write_file"}`},
		{"GET", "/admin/v1/audit", ""},
		{"GET", "/admin/v1/audit?type=auth.failure", ""},
	}
	callers := []struct{ user, role, key string }{{f.guestUser, "guest", f.guest}, {f.devUser, "developer", f.dev}}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			for _, c := range callers {
				path, body := rt.path, rt.body
				if strings.Contains(path, "%s") {
					arg := c.user
					if strings.Contains(path, "/roles/") {
						arg = c.role
					}
					path = fmt.Sprintf(path, arg)
				}
				if strings.Contains(body, "%s") {
					body = fmt.Sprintf(body, c.user)
				}
				r := f.admin(t, c.key, rt.method, path, body)
				if r.status != http.StatusForbidden || r.body != "{\"error\":\"forbidden\",\"message\":\"access denied\"}\n" {
					t.Errorf("%s: status %d body %q, want the generic 403", c.role, r.status, r.body)
					continue
				}
				evs := bpAuditRID(t, f.g, r.rid())
				if len(evs) != 1 || evs[0].Type != "admin.denied" || evs[0].Principal != c.user {
					t.Errorf("%s: audit %+v, want one admin.denied", c.role, evs)
				}
			}
		})
	}
	tricks := []struct{ method, path string }{
		{"GET", "/admin/v1/../v1/keys"},
		{"GET", "/admin/v1/%2e%2e/v1/keys"},
		{"GET", "/admin/v1/%2E%2E/admin/v1/keys"},
		{"GET", "/admin/v1/keys/"},
		{"GET", "/admin/v1/keys/."},
		{"GET", "/ADMIN/v1/keys"},
		{"GET", "/admin/V1/keys"},
		{"GET", "//admin/v1/keys"},
		{"GET", "/admin//v1/keys"},
		{"GET", "/admin/v1/./keys"},
		{"GET", "/admin/v1/keys%2F"},
		{"GET", "/admin/v1/keys%00"},
		{"GET", "/admin/v1/keys;.json"},
		{"GET", "/mcp/../admin/v1/keys"},
		{"GET", "/healthz/../admin/v1/keys"},
		{"GET", "/admin/v1/users/admin%2Fdisable"},
		{"HEAD", "/admin/v1/keys"},
		{"OPTIONS", "/admin/v1/keys"},
		{"PATCH", "/admin/v1/users/admin"},
		{"PUT", "/admin/v1/users"},
	}
	for _, tr := range tricks {
		t.Run("path "+tr.method+" "+tr.path, func(t *testing.T) {
			h := []bpHdr{{"Authorization", "Bearer " + f.guest}, {"X-HTTP-Method-Override", "GET"}, {"X-Original-URL", "/admin/v1/keys"}, {"X-Rewrite-URL", "/admin/v1/keys"}}
			r := bpDo(t, f.g, tr.method, tr.path, "", h...)
			for hops := 0; r.status/100 == 3 && hops < 5; hops++ {
				loc, err := url.Parse(r.header.Get("Location"))
				if err != nil {
					t.Fatalf("redirect to %q: %v", r.header.Get("Location"), err)
				}
				r = bpDo(t, f.g, tr.method, loc.RequestURI(), "", h...)
			}
			if r.status/100 == 2 || strings.Contains(r.body, `"keys"`) || strings.Contains(r.body, `"users"`) || strings.Contains(r.body, "key_") {
				t.Errorf("guest reached an admin handler: status %d body %.300s", r.status, r.body)
			}
		})
	}
	t.Run("nothing changed", func(t *testing.T) {
		if diff := cmp.Diff(before, snapshot()); diff != "" {
			t.Errorf("admin state changed (-before +after):\n%s", diff)
		}
		if r := f.probe(t, admin); r.status != http.StatusOK {
			t.Errorf("admin key broken: %d", r.status)
		}
	})
	t.Run("restricted administrators", f.restrictedAdmins)
}

// restrictedAdmins: a role with admin permission on some areas only (an
// auditor, a key administrator) reaches those areas and nothing else, and
// cannot turn its area into more: a key administrator must not be able to
// mint or take over a key of a role that can do more than it can.
func (f *bpFixture) restrictedAdmins(t *testing.T) {
	admin := f.g.adminKey
	for _, r := range []struct{ name, area string }{{"auditor", "audit"}, {"keyadmin", "keys"}} {
		for _, c := range []struct{ method, path, body string }{
			{"POST", "/admin/v1/roles", bpJSON(t, map[string]string{"name": r.name})},
			{"POST", "/admin/v1/roles/" + r.name + "/permissions", bpJSON(t, map[string]string{"action": "admin", "pattern": r.area})},
		} {
			if res := f.admin(t, admin, c.method, c.path, c.body); res.status/100 != 2 {
				t.Fatalf("%s %s: %d %s", c.method, c.path, res.status, res.body)
			}
		}
	}
	auditor := f.g.createKey("audrey", "auditor")
	keyadmin := f.g.createKey("kim", "keyadmin")
	t.Run("auditor reaches only the audit log", func(t *testing.T) {
		if r := f.admin(t, auditor, "GET", "/admin/v1/audit?limit=1", ""); r.status != http.StatusOK {
			t.Errorf("GET audit: %d %s", r.status, r.body)
		}
		for _, p := range []string{"/admin/v1/keys", "/admin/v1/users", "/admin/v1/roles", "/admin/v1/policies"} {
			if r := f.admin(t, auditor, "GET", p, ""); r.status != http.StatusForbidden {
				t.Errorf("GET %s: %d, want 403", p, r.status)
			}
		}
		r := f.admin(t, auditor, "POST", "/admin/v1/keys", `{"user":"audrey","role":"admin"}`)
		if r.status != http.StatusForbidden || strings.Contains(r.body, "pcl_") {
			t.Errorf("auditor created a key: %d %s", r.status, r.body)
		}
	})
	// escalated reports whether key can do what only a full administrator can.
	escalated := func(t *testing.T, key string) bool {
		t.Helper()
		return f.admin(t, key, "GET", "/admin/v1/users", "").status == http.StatusOK
	}
	t.Run("key administrator is held to the keys area", func(t *testing.T) {
		if escalated(t, keyadmin) {
			t.Fatal("the key administrator can list users")
		}
		if r := f.admin(t, keyadmin, "POST", "/admin/v1/users/kim/roles", `{"role":"admin"}`); r.status != http.StatusForbidden {
			t.Errorf("key administrator granted itself a role: %d %s", r.status, r.body)
		}
	})
	t.Run("key administrator cannot mint an admin key", func(t *testing.T) {
		r := f.admin(t, keyadmin, "POST", "/admin/v1/keys", `{"user":"kim","role":"admin"}`)
		var k bpKey
		_ = json.Unmarshal([]byte(r.body), &k)
		if r.status/100 == 2 || k.Key != "" {
			t.Errorf("a keys-only administrator created a key with role admin for itself (status %d)", r.status)
		}
		if k.Key != "" && escalated(t, k.Key) {
			t.Errorf("and with it reaches the users area it was denied: privilege escalation")
		}
		var u bpUser
		r = f.admin(t, admin, "GET", "/admin/v1/users/kim", "")
		if err := json.Unmarshal([]byte(r.body), &u); err != nil {
			t.Fatalf("user kim: %d %s", r.status, r.body)
		}
		if slices.Contains(u.Roles, "admin") {
			t.Errorf("kim now holds the admin role %v, granted through the keys area without the users permission", u.Roles)
		}
	})
	t.Run("key administrator cannot take over the admin's key", func(t *testing.T) {
		// A throwaway admin key, not the one the suite uses.
		spare := bpCreateKey(t, f.g, "admin", "admin")
		r := f.admin(t, keyadmin, "POST", "/admin/v1/keys/"+spare.ID+"/rotate", "")
		var k bpKey
		_ = json.Unmarshal([]byte(r.body), &k)
		if r.status/100 == 2 || k.Key != "" {
			t.Errorf("a keys-only administrator rotated an admin key and received the new one (status %d)", r.status)
		}
		if k.Key != "" && escalated(t, k.Key) {
			t.Errorf("and with it reaches the users area it was denied: privilege escalation")
		}
	})
}

// credentials: a revoked key, an expired key, the key of a disabled user
// and a key whose role the user lost all get the 401 of an unknown key,
// with the cause only in the audit log; enabling and granting restore.
func (f *bpFixture) credentials(t *testing.T, expiring bpKey) {
	cause := func(t *testing.T, r bpResp, user, want string) {
		t.Helper()
		evs := bpAuditRID(t, f.g, r.rid())
		if len(evs) != 1 || evs[0].Type != "auth.failure" || !strings.Contains(evs[0].Detail, want) || evs[0].Principal != user {
			t.Errorf("audit %+v, want one auth.failure of %s with cause %s", evs, user, want)
		}
	}
	live := func(t *testing.T, key string) {
		t.Helper()
		if r := f.probe(t, key); r.status != http.StatusOK {
			t.Fatalf("key refused: %d %s", r.status, r.body)
		}
	}
	t.Run("revoked key", func(t *testing.T) {
		k := bpCreateKey(t, f.g, "rhea", "developer")
		live(t, k.Key)
		if _, err := f.g.cli("key", "revoke", k.ID); err != nil {
			t.Fatal(err)
		}
		r := f.probe(t, k.Key)
		f.unauthenticated(t, r)
		if r.header.Get("WWW-Authenticate") != f.ref401.header.Get("WWW-Authenticate") {
			t.Errorf("challenge %q differs from an unknown key's %q", r.header.Get("WWW-Authenticate"), f.ref401.header.Get("WWW-Authenticate"))
		}
		cause(t, r, "rhea", "revoked_key")
		// Re-enabling the user does not revive a revoked key.
		for _, cmd := range [][]string{{"user", "disable", "rhea"}, {"user", "enable", "rhea"}} {
			if _, err := f.g.cli(cmd...); err != nil {
				t.Fatal(err)
			}
		}
		f.unauthenticated(t, f.probe(t, k.Key))
	})
	t.Run("expired key", func(t *testing.T) {
		if d := time.Until(*expiring.ExpiresAt); d > -50*time.Millisecond {
			time.Sleep(d + 100*time.Millisecond)
		}
		r := f.probe(t, expiring.Key)
		f.unauthenticated(t, r)
		if r.header.Get("WWW-Authenticate") != f.ref401.header.Get("WWW-Authenticate") {
			t.Errorf("challenge %q differs from an unknown key's", r.header.Get("WWW-Authenticate"))
		}
		cause(t, r, "ezra", "expired_key")
		r = bpDo(t, f.g, "GET", "/admin/v1/keys", "", bpHdr{"Authorization", "Bearer " + expiring.Key})
		f.unauthenticated(t, r)
	})
	t.Run("disabled user", func(t *testing.T) {
		k := bpCreateKey(t, f.g, "dora", "developer")
		sid := f.open(t, k.Key)
		if _, err := f.g.cli("user", "disable", "dora"); err != nil {
			t.Fatal(err)
		}
		r := f.probe(t, k.Key)
		f.unauthenticated(t, r)
		cause(t, r, "dora", "disabled_user")
		// Nor on the session it opened before.
		r = f.call(t, k.Key, sid, "write_file", map[string]any{"path": "dora.txt", "content": "x"})
		f.unauthenticated(t, r)
		f.noFile(t, "dora.txt")
		if _, err := f.g.cli("user", "enable", "dora"); err != nil {
			t.Fatal(err)
		}
		live(t, k.Key)
		if got := f.list(t, k.Key, sid); !slices.Contains(got, "write_file") {
			t.Errorf("re-enabled developer's tools/list = %v", got)
		}
	})
	t.Run("user lost the key's role", func(t *testing.T) {
		k := bpCreateKey(t, f.g, "luke", "developer")
		if _, err := f.g.cli("user", "grant", "luke", "guest"); err != nil {
			t.Fatal(err)
		}
		sid := f.open(t, k.Key)
		if _, err := f.g.cli("user", "revoke", "luke", "developer"); err != nil {
			t.Fatal(err)
		}
		// The user still holds guest; the key carries developer only and
		// must not fall back to the user's other role.
		r := f.probe(t, k.Key)
		f.unauthenticated(t, r)
		cause(t, r, "luke", "no_roles")
		r = f.call(t, k.Key, sid, "write_file", map[string]any{"path": "luke.txt", "content": "x"})
		f.unauthenticated(t, r)
		f.noFile(t, "luke.txt")
		if _, err := f.g.cli("user", "grant", "luke", "developer"); err != nil {
			t.Fatal(err)
		}
		live(t, k.Key)
	})
	t.Run("rotated key", func(t *testing.T) {
		old := bpCreateKey(t, f.g, "rory", "developer")
		sid := f.open(t, old.Key)
		out, err := f.g.cli("key", "rotate", old.ID, "--json")
		if err != nil {
			t.Fatal(err)
		}
		var nk bpKey
		if err := json.Unmarshal([]byte(out), &nk); err != nil || nk.Key == "" {
			t.Fatalf("rotate output %q: %v", out, err)
		}
		r := f.probe(t, old.Key)
		f.unauthenticated(t, r)
		cause(t, r, "rory", "revoked_key")
		f.unauthenticated(t, f.call(t, old.Key, sid, "write_file", map[string]any{"path": "rory.txt", "content": "x"}))
		f.noFile(t, "rory.txt")
		live(t, nk.Key)
		// The replaced key cannot be rotated again into a fresh one.
		if out, err := f.g.cli("key", "rotate", old.ID, "--json"); err == nil || strings.Contains(out, "pcl_") {
			t.Errorf("rotating a revoked key succeeded: %s", out)
		}
	})
	t.Run("unknown and malformed keys", func(t *testing.T) {
		for _, k := range []string{"pcl_" + strings.Repeat("B", 52), "pcl_" + strings.ToLower(f.dev[4:]), f.dev[:len(f.dev)-1], f.dev + "A", "pcl_"} {
			f.unauthenticated(t, f.probe(t, k))
		}
	})
}

// sessions: a 2025-11-25 session belongs to the user who opened it; other
// principals' keys cannot use, stream or end it, and no key at all gets 401.
func (f *bpFixture) sessions(t *testing.T) {
	sid := f.open(t, f.dev)
	mallory := f.g.createKey("mallory", "developer") // another user, same role
	thieves := []struct{ user, key string }{{f.guestUser, f.guest}, {"mallory", mallory}}
	for _, th := range thieves {
		t.Run(th.user+" on the developer's session", func(t *testing.T) {
			target := "hijack-" + th.user + ".txt"
			r := f.call(t, th.key, sid, "write_file", map[string]any{"path": target, "content": "x"})
			if r.status < 400 || r.status >= 500 {
				t.Fatalf("status %d, want 4xx: %s", r.status, r.body)
			}
			f.noFile(t, target)
			evs := bpAuditRID(t, f.g, r.rid())
			if len(evs) != 1 || evs[0].Type != "request.invalid" || evs[0].Principal != th.user {
				t.Errorf("audit %+v, want one request.invalid of %s", evs, th.user)
			}
			r = f.post(t, th.key, sid, bpListBody)
			if r.status < 400 || strings.Contains(r.body, "write_file") {
				t.Errorf("tools/list on another user's session: status %d: %.300s", r.status, r.body)
			}
			h := []bpHdr{{"Authorization", "Bearer " + th.key}, {"Accept", "text/event-stream"}, {"Mcp-Session-Id", sid}, {"Mcp-Protocol-Version", bpSessions}}
			if r := bpDo(t, f.g, "GET", "/mcp", "", h...); r.status < 400 {
				t.Errorf("GET stream of another user's session: status %d", r.status)
			}
			if r := bpDo(t, f.g, "DELETE", "/mcp", "", h...); r.status < 400 {
				t.Errorf("DELETE of another user's session: status %d", r.status)
			}
		})
	}
	t.Run("same user's guest key on the developer session", func(t *testing.T) {
		// A session belongs to its user, but each request carries only
		// the rights of its own key.
		narrow := bpCreateKey(t, f.g, f.devUser, "guest")
		if got := f.list(t, narrow.Key, sid); !slices.Equal(got, f.guestTools) {
			t.Errorf("tools/list with the guest key = %v, want %v", got, f.guestTools)
		}
		r := f.call(t, narrow.Key, sid, "write_file", map[string]any{"path": "hijack-narrow.txt", "content": "x"})
		f.refused(t, r, f.devUser, "PERMISSION_DENIED")
		f.noFile(t, "hijack-narrow.txt")
		for _, e := range bpAuditRID(t, f.g, r.rid()) {
			if !slices.Equal(e.Roles, []string{"guest"}) {
				t.Errorf("request audited with roles %v, want [guest]", e.Roles)
			}
		}
	})
	t.Run("no credential with the session id", func(t *testing.T) {
		r := f.call(t, "", sid, "write_file", map[string]any{"path": "hijack-anon.txt", "content": "x"})
		f.unauthenticated(t, r)
		f.noFile(t, "hijack-anon.txt")
		h := []bpHdr{{"Accept", "text/event-stream"}, {"Mcp-Session-Id", sid}}
		f.unauthenticated(t, bpDo(t, f.g, "DELETE", "/mcp", "", h...))
	})
	t.Run("stateless header with the session id", func(t *testing.T) {
		r := bpStatelessReq(t, bpHTTP, f.g, f.guest, "tools/call",
			map[string]any{"name": "write_file", "arguments": map[string]any{"path": "hijack-stateless.txt", "content": "x"}},
			bpHdr{"Mcp-Session-Id", sid})
		if r.status < 400 || r.status >= 500 {
			if res := f.result(t, r); !res.IsError {
				t.Errorf("served: %s", r.body)
			}
		}
		f.noFile(t, "hijack-stateless.txt")
	})
	t.Run("client-chosen session id on initialize", func(t *testing.T) {
		// Session fixation: an id the client picks is never adopted.
		const chosen = "FIXATEDSESSIONID0000000000"
		r := f.post(t, f.guest, chosen, bpInitBody)
		if r.status != http.StatusNotFound || r.header.Get("Mcp-Session-Id") != "" {
			t.Errorf("initialize with a chosen session id: status %d session %q, want 404 and none", r.status, r.header.Get("Mcp-Session-Id"))
		}
		r = f.call(t, f.dev, chosen, "write_file", map[string]any{"path": "fixated.txt", "content": "x"})
		if r.status != http.StatusNotFound {
			t.Errorf("call on the chosen session id: status %d, want 404", r.status)
		}
		f.noFile(t, "fixated.txt")
	})
	t.Run("forged session id", func(t *testing.T) {
		for _, forged := range []string{strings.ToLower(sid), sid + "A", sid[:len(sid)-1], "*", "' OR 1=1 --"} {
			r := f.call(t, f.guest, forged, "write_file", map[string]any{"path": "hijack-forged.txt", "content": "x"})
			if r.status < 400 || r.status >= 500 {
				t.Errorf("session %q: status %d, want 4xx", forged, r.status)
			}
		}
		f.noFile(t, "hijack-forged.txt")
	})
	t.Run("owner still served", func(t *testing.T) {
		r := f.call(t, f.dev, sid, "write_file", map[string]any{"path": "owner.txt", "content": "mine"})
		if res := f.result(t, r); res.IsError {
			t.Fatalf("owner's write_file: %s", res.text())
		}
		f.legit = append(f.legit, "owner.txt")
		if b, err := os.ReadFile(filepath.Join(f.g.workspace, "owner.txt")); err != nil || string(b) != "mine" {
			t.Errorf("owner.txt = %q, %v", b, err)
		}
		for _, e := range bpAuditRID(t, f.g, r.rid()) {
			if e.Principal != f.devUser || e.Session != sid {
				t.Errorf("owner's call audited as %q on session %q", e.Principal, e.Session)
			}
		}
	})
}

// keyScopes: a key's scopes narrow what its role allows, in tools/list and
// tools/call alike, and never widen it.
func (f *bpFixture) keyScopes(t *testing.T) {
	cases := []struct {
		name, user, role string
		scopes           []string
		want             func() []string
	}{
		{"developer scoped to read_file", "scott", "developer", []string{"read_file"}, func() []string { return []string{"read_file"} }},
		{"developer scoped to list_*", "sara", "developer", []string{"list_*"}, func() []string { return []string{"list_directory"} }},
		{"admin scoped to read_file", "root2", "admin", []string{"read_file"}, func() []string { return []string{"read_file"} }},
		{"guest scoped to write_file", "gwen", "guest", []string{"write_file"}, func() []string { return []string{} }},
		{"guest scoped to *", "gail", "guest", []string{"*"}, func() []string { return f.guestTools }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var flags []string
			for _, s := range c.scopes {
				flags = append(flags, "--scope", s)
			}
			k := bpCreateKey(t, f.g, c.user, c.role, flags...)
			sid := f.open(t, k.Key)
			want := c.want()
			if got := f.list(t, k.Key, sid); !slices.Equal(got, want) {
				t.Errorf("tools/list = %v, want %v", got, want)
			}
			target := "scope-" + c.user + ".txt"
			f.refused(t, f.call(t, k.Key, sid, "write_file", map[string]any{"path": target, "content": "x"}), c.user, "PERMISSION_DENIED")
			f.noFile(t, target)
			for _, n := range f.allTools {
				if slices.Contains(want, n) {
					continue
				}
				f.refused(t, f.call(t, k.Key, sid, n, map[string]any{}), c.user, "PERMISSION_DENIED")
			}
			if slices.Contains(want, "read_file") {
				res := f.result(t, f.call(t, k.Key, sid, "read_file", map[string]any{"path": "ok.txt"}))
				if res.IsError || !strings.Contains(res.text(), "public text") {
					t.Errorf("read_file within scope: %q", res.text())
				}
			}
		})
	}
	t.Run("malformed scopes refused", func(t *testing.T) {
		for _, s := range []string{"read_file/../write_file", " write_file", "write_file\x00", "[", "", "a/b"} {
			r := f.admin(t, f.g.adminKey, "POST", "/admin/v1/keys", bpJSON(t, map[string]any{"user": "sven", "role": "guest", "scopes": []string{s}}))
			if r.status != http.StatusBadRequest || strings.Contains(r.body, "pcl_") {
				t.Errorf("scope %q: status %d, want 400: %s", s, r.status, r.body)
			}
		}
	})
}

// TestBypassLockout: with lockout on (threshold 3), wrong keys from one
// source lock it out: then even a valid key gets the identical 401, a
// spoofed X-Forwarded-For neither escapes the lock nor changes the audited
// address, another source is still served, and auth.lockout is audited.
func TestBypassLockout(t *testing.T) {
	// 10.0.0.0/8 is trusted; the loopback peer is not, so its headers are not believed.
	g := startGateway(t, "PORTCULLIS_AUTH_LOCKOUT_THRESHOLD=3", "PORTCULLIS_AUTH_TRUSTED_PROXIES=10.0.0.0/8")
	f := &bpFixture{g: g}
	key := g.createKey("lena", "developer")
	other := bpClientFrom("127.0.0.2")
	probe := func(t *testing.T, c *http.Client, k string, h ...bpHdr) bpResp {
		t.Helper()
		return bpStatelessReq(t, c, g, k, "tools/list", nil, h...)
	}
	if r := probe(t, other, key); r.status != http.StatusOK {
		t.Fatalf("valid key from 127.0.0.2 before any failure: %d %s", r.status, r.body)
	}
	if r := probe(t, bpHTTP, key); r.status != http.StatusOK {
		t.Fatalf("valid key before any failure: %d %s", r.status, r.body)
	}
	unknown := "pcl_" + strings.Repeat("C", 52)
	t.Run("wrong keys lock the source", func(t *testing.T) {
		f.ref401 = probe(t, bpHTTP, unknown)
		if f.ref401.status != http.StatusUnauthorized {
			t.Fatalf("unknown key: %d", f.ref401.status)
		}
		// Each failure claims another client address; all count for the peer.
		for i := 2; i <= 3; i++ {
			f.unauthenticated(t, probe(t, bpHTTP, unknown, bpHdr{"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i)}))
		}
	})
	t.Run("valid key refused identically while locked", func(t *testing.T) {
		r := probe(t, bpHTTP, key)
		f.unauthenticated(t, r)
		if r.header.Get("WWW-Authenticate") != f.ref401.header.Get("WWW-Authenticate") {
			t.Errorf("challenge %q, unknown key's %q", r.header.Get("WWW-Authenticate"), f.ref401.header.Get("WWW-Authenticate"))
		}
		f.unauthenticated(t, bpSend(t, bpHTTP, g, "GET", "/admin/v1/keys", "", bpHdr{"Authorization", "Bearer " + g.adminKey}))
	})
	t.Run("spoofed X-Forwarded-For does not escape", func(t *testing.T) {
		for _, xff := range []string{"203.0.113.5", "10.1.2.3", "127.0.0.2", "203.0.113.5, 10.0.0.1"} {
			f.unauthenticated(t, probe(t, bpHTTP, key, bpHdr{"X-Forwarded-For", xff}, bpHdr{"X-Real-IP", xff}, bpHdr{"Forwarded", "for=" + xff}))
		}
	})
	t.Run("another source is still served", func(t *testing.T) {
		if r := probe(t, other, key); r.status != http.StatusOK {
			t.Errorf("valid key from 127.0.0.2: %d %s", r.status, r.body)
		}
	})
	t.Run("lockout audited with the real address", func(t *testing.T) {
		locks := bpAudit(t, other, g, url.Values{"type": {"auth.lockout"}})
		if len(locks) != 1 || !strings.Contains(locks[0].Detail, "src:127.0.0.1 ") {
			t.Errorf("auth.lockout events %+v, want one for src:127.0.0.1", locks)
		}
		fails := bpAudit(t, other, g, url.Values{"type": {"auth.failure"}})
		locked := 0
		for _, e := range fails {
			if !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") {
				t.Errorf("auth.failure audited from %q, want the peer 127.0.0.1", e.RemoteAddr)
			}
			if strings.Contains(e.Detail, "locked_out") {
				locked++
			}
		}
		if locked < 6 {
			t.Errorf("%d auth.failure events with cause locked_out, want >= 6", locked)
		}
	})
}
