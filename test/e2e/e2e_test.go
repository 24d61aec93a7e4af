package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

var (
	guestTools     = []string{"file_info", "list_directory", "read_file", "search_files"}
	developerTools = []string{"delete_file", "edit_file", "execute_python", "file_info", "git_commit", "git_diff", "git_log",
		"git_status", "http_fetch", "list_directory", "move_file", "read_file", "run_command", "search_files", "sql_query",
		"write_file"}
)

func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
		if tl.InputSchema == nil {
			t.Errorf("tool %s has no input schema", tl.Name)
		}
	}
	slices.Sort(names)
	return names
}

type auditEvent struct {
	Type      string `json:"type"`
	Principal string `json:"principal"`
	Tool      string `json:"tool"`
	Status    string `json:"status"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id"`
	Detail    string `json:"detail"`
}

func auditQuery(t *testing.T, g *gateway, args ...string) []auditEvent {
	t.Helper()
	out, err := g.cli(append([]string{"audit", "query", "--limit", "1000"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var evs []auditEvent
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e auditEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// has reports whether evs contains an event matching all set fields of want.
func has(evs []auditEvent, want auditEvent) bool {
	for _, e := range evs {
		if (want.Type == "" || e.Type == want.Type) && (want.Principal == "" || e.Principal == want.Principal) &&
			(want.Tool == "" || e.Tool == want.Tool) && (want.Status == "" || e.Status == want.Status) &&
			(want.Reason == "" || e.Reason == want.Reason) {
			return true
		}
	}
	return false
}

// TestRolesEndToEnd is the walking skeleton's acceptance test: for each
// default role, over both protocol eras, a real MCP client lists exactly
// the tools it may call, reads a file, is refused what it may not do (and
// nothing happens), and every call is in the audit log.
func TestRolesEndToEnd(t *testing.T) {
	g := startGateway(t)
	if err := os.WriteFile(filepath.Join(g.workspace, "hello.txt"), []byte("hello from the workspace\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{
		"gina":  g.createKey("gina", "guest"),
		"dev":   g.createKey("dev", "developer"),
		"admin": g.adminKey,
	}
	for _, pv := range []string{"2026-07-28", "2025-11-25"} {
		t.Run(pv, func(t *testing.T) {
			guest := g.connect(keys["gina"], pv)
			if got := guest.InitializeResult().ProtocolVersion; got != pv {
				t.Errorf("negotiated protocol %s, want %s", got, pv)
			}
			dev := g.connect(keys["dev"], pv)
			admin := g.connect(keys["admin"], pv)

			if diff := cmp.Diff(guestTools, toolNames(t, guest)); diff != "" {
				t.Errorf("guest tools/list (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(developerTools, toolNames(t, dev)); diff != "" {
				t.Errorf("developer tools/list (-want +got):\n%s", diff)
			}
			if got := toolNames(t, admin); !slices.Contains(got, "execute_python") || len(got) < len(developerTools) {
				t.Errorf("admin tools/list = %v, want at least %v", got, developerTools)
			}

			for name, cs := range map[string]*mcp.ClientSession{"guest": guest, "developer": dev, "admin": admin} {
				res := call(t, cs, "read_file", map[string]any{"path": "hello.txt"})
				if res.IsError || !strings.Contains(text(res), "hello from the workspace") {
					t.Errorf("%s read_file: isError=%v text=%q", name, res.IsError, text(res))
				}
			}

			target := "guest-" + pv + ".txt"
			res := call(t, guest, "write_file", map[string]any{"path": target, "content": "pwned"})
			if !res.IsError || code(res) != "PERMISSION_DENIED" {
				t.Errorf("guest write_file: isError=%v code=%q text=%q", res.IsError, code(res), text(res))
			}
			if _, err := os.Stat(filepath.Join(g.workspace, target)); !os.IsNotExist(err) {
				t.Errorf("guest write_file created the file (stat err %v)", err)
			}
			res = call(t, guest, "execute_python", map[string]any{"code": "print('x')"})
			if !res.IsError || code(res) != "PERMISSION_DENIED" {
				t.Errorf("guest execute_python: isError=%v code=%q", res.IsError, code(res))
			}

			res = call(t, dev, "write_file", map[string]any{"path": "dev-" + pv + ".txt", "content": "written by dev"})
			if res.IsError {
				t.Errorf("developer write_file: %s", text(res))
			}
			res = call(t, dev, "execute_python", map[string]any{"code": "import sys\nprint(6 * 7)\nprint(sys.version_info[0])"})
			if res.IsError || !strings.Contains(text(res), "42") {
				t.Errorf("developer execute_python: isError=%v code=%q text=%q", res.IsError, code(res), text(res))
			}
			res = call(t, dev, "no_such_tool", nil)
			if !res.IsError || code(res) != "PERMISSION_DENIED" {
				t.Errorf("developer unknown tool: isError=%v code=%q", res.IsError, code(res))
			}
			res = call(t, admin, "no_such_tool", nil)
			if !res.IsError || code(res) != "UNKNOWN_TOOL" {
				t.Errorf("admin unknown tool: isError=%v code=%q", res.IsError, code(res))
			}
			res = call(t, dev, "read_file", map[string]any{"path": 42})
			if !res.IsError || code(res) != "INVALID_ARGUMENTS" {
				t.Errorf("wrong argument type: isError=%v code=%q", res.IsError, code(res))
			}
		})
	}

	evs := auditQuery(t, g)
	for _, want := range []auditEvent{
		{Type: "tool.call.start", Principal: "gina", Tool: "read_file", Status: "started"},
		{Type: "tool.call.end", Principal: "gina", Tool: "read_file", Status: "ok"},
		{Type: "policy.deny", Principal: "gina", Tool: "write_file", Status: "refused", Reason: "PERMISSION_DENIED"},
		{Type: "policy.deny", Principal: "gina", Tool: "execute_python", Reason: "PERMISSION_DENIED"},
		{Type: "tool.call.start", Principal: "dev", Tool: "execute_python"},
		{Type: "tool.call.end", Principal: "dev", Tool: "execute_python", Status: "ok"},
		{Type: "tool.call.end", Principal: "dev", Tool: "write_file", Status: "ok"},
		{Type: "policy.deny", Principal: "dev", Tool: "no_such_tool"},
		{Type: "tool.call.refused", Principal: "admin", Tool: "no_such_tool", Reason: "UNKNOWN_TOOL"},
		{Type: "tool.call.refused", Principal: "dev", Tool: "read_file", Reason: "INVALID_ARGUMENTS"},
		{Type: "tool.call.end", Principal: "admin", Tool: "read_file", Status: "ok"},
		{Type: "admin.key.create"},
	} {
		if !has(evs, want) {
			t.Errorf("audit log lacks %+v", want)
		}
	}
	// Filters work: only gina's events.
	for _, e := range auditQuery(t, g, "--user", "gina") {
		if e.Principal != "gina" {
			t.Errorf("--user gina returned an event of %q", e.Principal)
		}
	}
	if refused := auditQuery(t, g, "--status", "refused", "--tool", "write_file"); len(refused) == 0 {
		t.Errorf("--status refused --tool write_file returned nothing")
	}
}

// TestBadCredentials: a missing, malformed, unknown or revoked key gets
// 401 with WWW-Authenticate: Bearer and the same generic body, and each
// attempt is an auth.failure event. No client-chosen identity header helps.
func TestBadCredentials(t *testing.T) {
	g := startGateway(t)
	devKey := g.createKey("mallory", "developer")
	out, err := g.cli("key", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var keys []struct{ ID, User string }
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, devKey) || strings.Contains(out, g.adminKey) {
		t.Fatal("key list leaked a plaintext key")
	}
	var malloryID string
	for _, k := range keys {
		if k.User == "mallory" {
			malloryID = k.ID
		}
	}
	if _, err := g.cli("key", "revoke", malloryID); err != nil {
		t.Fatal(err)
	}

	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`
	cases := map[string]map[string]string{
		"no credential":       {},
		"spoofed user header": {"X-User-ID": "admin", "X-Role": "admin", "X-Forwarded-User": "admin"},
		"basic auth":          {"Authorization": "Basic YWRtaW46YWRtaW4="},
		"malformed bearer":    {"Authorization": "Bearer not-a-key"},
		"unknown key":         {"Authorization": "Bearer pcl_" + strings.Repeat("A", 52)},
		"revoked key":         {"Authorization": "Bearer " + devKey},
		"empty bearer":        {"Authorization": "Bearer "},
	}
	var bodies []string
	for name, hdr := range cases {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", g.base+"/mcp", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401; body %s", resp.StatusCode, buf.String())
			}
			if wa := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want Bearer challenge", wa)
			}
			bodies = append(bodies, buf.String())
		})
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("401 bodies differ (must be generic): %q vs %q", b, bodies[0])
		}
	}
	evs := auditQuery(t, g, "--type", "auth.failure")
	if len(evs) < len(cases) {
		t.Errorf("auth.failure events = %d, want >= %d", len(evs), len(cases))
	}
	causes := map[string]bool{}
	for _, e := range evs {
		for _, c := range []string{"missing_credential", "malformed_credential", "unknown_key", "revoked_key"} {
			if strings.Contains(e.Detail, c) {
				causes[c] = true
			}
		}
	}
	if len(causes) != 4 {
		t.Errorf("auth.failure causes recorded = %v, want all four", causes)
	}
	// The admin API refuses non-admins.
	guest := g.createKey("gus", "guest")
	req, _ := http.NewRequest("GET", g.base+"/admin/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+guest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("guest on admin API: status %d, want 403", resp.StatusCode)
	}
	if !has(auditQuery(t, g, "--type", "admin.denied"), auditEvent{Principal: "gus"}) {
		t.Error("admin.denied not audited")
	}
}

// TestBadInput: oversized bodies, malformed JSON-RPC, wrong content types
// get protocol errors, never a panic or a hang, and the server keeps
// answering.
func TestBadInput(t *testing.T) {
	g := startGateway(t)
	key := g.createKey("dana", "developer")
	post := func(body string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("POST", g.base+"/mcp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		c := &http.Client{Timeout: 15 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"x","content":"` +
		strings.Repeat("A", 2<<20) + `"}}}`
	if st, _ := post(big, nil); st != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB body: status %d, want 413", st)
	}
	for name, body := range map[string]string{
		"not json":       `{{{`,
		"truncated":      `{"jsonrpc":"2.0","id":1,"method":"tools/li`,
		"wrong version":  `{"jsonrpc":"1.0","id":1,"method":"tools/list"}`,
		"array garbage":  `[1,2,3]`,
		"empty":          ``,
		"null":           `null`,
		"params not obj": `{"jsonrpc":"2.0","id":1,"method":"initialize","params":"x"}`,
		"deep nesting":   strings.Repeat("[", 100000) + strings.Repeat("]", 100000),
	} {
		st, b := post(body, nil)
		// A protocol error is either an HTTP 4xx or a JSON-RPC error object.
		if (st < 400 || st >= 500) && !strings.Contains(b, `"error":{`) {
			t.Errorf("%s: status %d body %q, want 4xx or a JSON-RPC error", name, st, b)
		}
	}
	if st, _ := post(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Content-Type": "text/plain"}); st < 400 {
		t.Errorf("text/plain accepted: %d", st)
	}
	// Still alive and serving.
	cs := g.connect(key, "")
	if names := toolNames(t, cs); len(names) == 0 {
		t.Error("no tools after bad input")
	}
	if !has(auditQuery(t, g, "--type", "request.invalid"), auditEvent{Principal: "dana"}) {
		t.Error("bad requests of a known principal were not audited")
	}
}

// TestHealthAndShutdown: probes answer without credentials, SIGTERM exits
// 0 after flushing the audit log.
func TestHealthAndShutdown(t *testing.T) {
	g := startGateway(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(g.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
	}
	// A 2025-11-25 client holding a session open must not stall shutdown.
	cs := g.connect(g.adminKey, "2025-11-25")
	_ = cs
	start := time.Now()
	if err := g.signal(syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", err, g.stderr)
	}
	if d := time.Since(start); d > 9*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if !strings.Contains(g.stdout.String(), "Portcullis stopped.") {
		t.Errorf("no clean stop message; stdout:\n%s", g.stdout)
	}
	// Restart on the same data dir: no new admin key is printed.
	g.adminKey = ""
	g.start()
	if strings.Count(g.stdout.String(), "Admin API key (shown once") != 1 {
		t.Errorf("admin key printed again on restart:\n%s", g.stdout)
	}
	evs := auditQuery(t, g, "--type", "server.stop")
	if len(evs) == 0 {
		t.Error("server.stop not in the audit log after restart")
	}
}

// TestStdio: a desktop client spawns `portcullis stdio` and calls tools as
// the configured local principal.
func TestStdio(t *testing.T) {
	root := t.TempDir()
	ws := filepath.Join(root, "ws")
	os.MkdirAll(ws, 0o755)
	os.WriteFile(filepath.Join(ws, "note.txt"), []byte("stdio works"), 0o644)
	cmd := exec.Command(binary, "stdio", "--data-dir", filepath.Join(root, "data"), "--workspace", ws)
	cmd.Env = cleanEnv("PORTCULLIS_STDIO_ROLES=guest", "PORTCULLIS_STDIO_USER=desk")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "desktop", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if diff := cmp.Diff(guestTools, toolNames(t, cs)); diff != "" {
		t.Errorf("stdio guest tools (-want +got):\n%s", diff)
	}
	res := call(t, cs, "read_file", map[string]any{"path": "note.txt"})
	if res.IsError || !strings.Contains(text(res), "stdio works") {
		t.Errorf("read_file over stdio: %q", text(res))
	}
	res = call(t, cs, "write_file", map[string]any{"path": "x.txt", "content": "no"})
	if code(res) != "PERMISSION_DENIED" {
		t.Errorf("guest write over stdio: code %q", code(res))
	}
}
