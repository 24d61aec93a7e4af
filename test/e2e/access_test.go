package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

// Tests for identity and access (issue 4) through the real binary: Cedar
// policy hot reload and report mode, OIDC bearer tokens from a local test
// issuer, user/role/key administration with the CLI, and the transport
// guards of production mode. Helpers are prefixed with "access" so that
// they cannot collide with other files of the package.

// accessEvent is one audit record as `portcullis audit query` prints it.
type accessEvent struct {
	Seq       int64    `json:"seq"`
	Type      string   `json:"type"`
	Principal string   `json:"principal"`
	Roles     []string `json:"roles"`
	Tool      string   `json:"tool"`
	Status    string   `json:"status"`
	Decision  string   `json:"decision"`
	Reason    string   `json:"reason"`
	RequestID string   `json:"request_id"`
	Detail    string   `json:"detail"`
	Error     string   `json:"error"`
}

// accessAudit returns the audit events matching the CLI filters args,
// newest first.
func accessAudit(t *testing.T, g *gateway, args ...string) []accessEvent {
	t.Helper()
	out, err := g.cli(append([]string{"audit", "query", "--limit", "5000"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var evs []accessEvent
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e accessEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// accessMatch selects the events of type typ whose principal and tool
// equal the given ones (when not empty) and whose detail contains
// detail.
func accessMatch(evs []accessEvent, typ, principal, tool, detail string) []accessEvent {
	var out []accessEvent
	for _, e := range evs {
		if e.Type == typ && (principal == "" || e.Principal == principal) &&
			(tool == "" || e.Tool == tool) && strings.Contains(e.Detail, detail) {
			out = append(out, e)
		}
	}
	return out
}

// accessEventually polls cond every 100ms until it reports true or
// timeout passes; then it fails the test with cond's last message.
func accessEventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// accessCopyPolicies copies the shipped example policies into a new
// directory and returns it.
func accessCopyPolicies(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "policies")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := filepath.Glob("../../examples/policies/*.cedar")
	if err != nil || len(src) < 3 {
		t.Fatalf("example policies: %v (found %d)", err, len(src))
	}
	for _, f := range src {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		accessWritePolicy(t, dir, filepath.Base(f), string(b))
	}
	return dir
}

// accessWritePolicy writes name in dir atomically (a hidden temporary
// file, which the gateway ignores, renamed into place), so that the
// watcher never sees half a file.
func accessWritePolicy(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, ".tmp-"+name)
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// accessExitCode is the exit status in err from g.cli or exec (-1: not
// an exit status; 0: no error).
func accessExitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// accessRPC posts a JSON-RPC tools/list to url with the bearer token (none
// if empty) and returns the status, headers and body.
func accessRPC(t *testing.T, c *http.Client, url, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// accessDial opens an MCP client session to endpoint with the bearer
// token over base (http.DefaultTransport if nil). Unlike gateway.connect
// it returns the error, so that refusals can be asserted.
func accessDial(t *testing.T, endpoint, token string, base http.RoundTripper) (*mcp.ClientSession, error) {
	t.Helper()
	if base == nil {
		base = http.DefaultTransport
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-access", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   endpoint,
		HTTPClient: &http.Client{Transport: bearer{key: token, base: base}},
		MaxRetries: -1,
	}, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return cs, nil
}

// accessToolNames lists the tools of cs, sorted, or returns the error.
func accessToolNames(cs *mcp.ClientSession) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names, nil
}

// accessRefused asserts that res is a PERMISSION_DENIED refusal whose
// text names no policy (the client learns only that it was refused).
func accessRefused(t *testing.T, what string, res *mcp.CallToolResult) {
	t.Helper()
	if !res.IsError || code(res) != "PERMISSION_DENIED" {
		t.Errorf("%s: isError=%v code=%q text=%q, want PERMISSION_DENIED", what, res.IsError, code(res), text(res))
		return
	}
	for _, leak := range []string{"no-secret", "no-read-file", "no-list", "forbid", ".cedar", "role:", "default deny", "scopes"} {
		if strings.Contains(text(res), leak) {
			t.Errorf("%s: refusal text %q reveals %q", what, text(res), leak)
		}
	}
}

// accessAbsent asserts that a refused call left no file at path.
func accessAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s exists after a refused call (stat: %v)", path, err)
	}
}

// TestAccessPolicyHotReload: the shipped example policies loaded from a
// directory are enforced; a new policy file is in force within a few
// reload intervals without a restart; a broken file is rejected (audit
// policy.reload_failed, an ALERT on stderr) while the previous policies
// stay in force; fixing it reloads; `policy reload` on a broken directory
// fails with the parse error, `policy check` finds it offline, and
// `policy test` explains a denial by policy id.
func TestAccessPolicyHotReload(t *testing.T) {
	t.Parallel()
	dir := accessCopyPolicies(t)
	g := startGateway(t, "PORTCULLIS_POLICY_DIR="+dir, "PORTCULLIS_POLICY_RELOAD_INTERVAL=200ms")
	if err := os.WriteFile(filepath.Join(g.workspace, "notes.txt"), []byte("readable"), 0o644); err != nil {
		t.Fatal(err)
	}
	cs := g.connect(g.createKey("dev", "developer"), "")

	out, err := g.cli("policy", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var listed struct {
		Mode     string
		Policies []struct{ ID, File, Effect string }
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("policy list --json %q: %v", out, err)
	}
	var ids []string
	for _, p := range listed.Policies {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	wantIDs := []string{"egress-deny-hosts", "no-secret-files-edit", "no-secret-files-write", "python-subprocess-needs-approval",
		"python-working-hours"}
	if diff := cmp.Diff(wantIDs, ids); diff != "" || listed.Mode != "enforce" {
		t.Errorf("policy list: mode %q, ids (-want +got):\n%s", listed.Mode, diff)
	}

	// The example policy refuses secrets files, whatever the role allows.
	for _, p := range []string{"x.env", "config/prod.env.local", "server.pem", "keys/id_rsa"} {
		accessRefused(t, "write_file "+p, call(t, cs, "write_file", map[string]any{"path": p, "content": "SECRET=1"}))
		accessAbsent(t, filepath.Join(g.workspace, p))
	}
	if res := call(t, cs, "write_file", map[string]any{"path": "x.txt", "content": "fine"}); res.IsError {
		t.Fatalf("write_file x.txt: %s", text(res))
	}
	if b, err := os.ReadFile(filepath.Join(g.workspace, "x.txt")); err != nil || string(b) != "fine" {
		t.Errorf("x.txt = %q, %v", b, err)
	}
	// Which policy matched is in the audit log (only there).
	if len(accessMatch(accessAudit(t, g, "--type", "policy.deny"), "policy.deny", "dev", "write_file", "no-secret-files-write")) == 0 {
		t.Error("no policy.deny for dev write_file naming no-secret-files-write")
	}

	// A new policy file is picked up without a restart.
	if res := call(t, cs, "read_file", map[string]any{"path": "notes.txt"}); res.IsError || text(res) != "readable" {
		t.Fatalf("read_file before the new policy: %q", text(res))
	}
	accessWritePolicy(t, dir, "no-read.cedar", `@id("no-read-file")
forbid (principal, action == Action::"call", resource == Tool::"read_file");
`)
	accessEventually(t, 5*time.Second, "new policy in force", func() (bool, string) {
		res := call(t, cs, "read_file", map[string]any{"path": "notes.txt"})
		return code(res) == "PERMISSION_DENIED", fmt.Sprintf("read_file: isError=%v code=%q", res.IsError, code(res))
	})
	accessRefused(t, "read_file under no-read-file", call(t, cs, "read_file", map[string]any{"path": "notes.txt"}))
	if names, err := accessToolNames(cs); err != nil || slices.Contains(names, "read_file") {
		t.Errorf("tools/list under an unconditional forbid of read_file = %v, %v; read_file must not be listed", names, err)
	}
	reloads := accessMatch(accessAudit(t, g, "--type", "policy.reload"), "policy.reload", "", "", "")
	if len(reloads) == 0 {
		t.Fatal("no policy.reload event after the new file was loaded")
	}

	// A broken file is rejected; the previous policies stay in force.
	accessWritePolicy(t, dir, "broken.cedar", `@id("half")
forbid (principal, action == Action::"call", resource == Tool::"list_directory"
when { context.args.path like };
`)
	var failed accessEvent
	accessEventually(t, 5*time.Second, "policy.reload_failed audited", func() (bool, string) {
		evs := accessMatch(accessAudit(t, g, "--type", "policy.reload_failed"), "policy.reload_failed", "", "", "")
		if len(evs) == 0 {
			return false, "no policy.reload_failed event"
		}
		failed = evs[0]
		return true, ""
	})
	if !strings.Contains(failed.Detail, "broken.cedar") || failed.Status != "error" {
		t.Errorf("policy.reload_failed = %+v; want status error and detail naming broken.cedar", failed)
	}
	accessEventually(t, 3*time.Second, "alert on stderr", func() (bool, string) {
		for _, line := range strings.Split(g.stderr.String(), "\n") {
			if strings.Contains(line, "ALERT policy.reload_failed") && strings.Contains(line, "ERROR") {
				return true, ""
			}
		}
		return false, "stderr has no ERROR line with ALERT policy.reload_failed:\n" + g.stderr.String()
	})
	// Reported once, not on every tick.
	time.Sleep(600 * time.Millisecond)
	if n := len(accessMatch(accessAudit(t, g, "--type", "policy.reload_failed"), "policy.reload_failed", "", "", "")); n != 1 {
		t.Errorf("policy.reload_failed events for one broken version = %d, want 1", n)
	}
	accessRefused(t, "read_file after the broken reload", call(t, cs, "read_file", map[string]any{"path": "notes.txt"}))
	accessRefused(t, "write_file x.env after the broken reload", call(t, cs, "write_file", map[string]any{"path": "y.env", "content": "S=1"}))
	accessAbsent(t, filepath.Join(g.workspace, "y.env"))
	if res := call(t, cs, "list_directory", map[string]any{"path": "."}); res.IsError {
		t.Errorf("list_directory refused by a policy that never loaded: code %q", code(res))
	}
	if res := call(t, cs, "write_file", map[string]any{"path": "z.txt", "content": "still fine"}); res.IsError {
		t.Errorf("write_file z.txt after the broken reload (policies must not be emptied into a deny-all): %s", text(res))
	}

	// The CLI and the admin API report the broken directory.
	_, err = g.cli("policy", "reload")
	if accessExitCode(err) <= 0 || !strings.Contains(fmt.Sprint(err), "broken.cedar") {
		t.Errorf("policy reload on a broken dir: exit %d, err %v; want non-zero naming broken.cedar", accessExitCode(err), err)
	}
	req, _ := http.NewRequest("POST", g.base+"/admin/v1/policies/reload", nil)
	req.Header.Set("Authorization", "Bearer "+g.adminKey)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("POST /admin/v1/policies/reload on a broken dir = %d, want 422", resp.StatusCode)
		}
	}
	chk := exec.Command(binary, "policy", "check", dir)
	chk.Env = cleanEnv()
	if b, err := chk.CombinedOutput(); accessExitCode(err) <= 0 || !strings.Contains(string(b), "broken.cedar") {
		t.Errorf("policy check on the broken dir: exit %d, output %q", accessExitCode(err), b)
	}
	chk = exec.Command(binary, "policy", "check", "../../examples/policies")
	chk.Env = cleanEnv()
	if b, err := chk.CombinedOutput(); err != nil || !strings.Contains(string(b), "ok: 5 policies") {
		t.Errorf("policy check on the examples: %v, output %q", err, b)
	}
	if out, err := g.cli("policy", "list"); err != nil || !strings.Contains(out, "no-read-file") || strings.Contains(out, "half") {
		t.Errorf("policy list after the rejected reload = %q, %v; want the previous set", out, err)
	}

	// Fixing the file reloads it.
	lastReload := reloads[0].Seq
	accessWritePolicy(t, dir, "broken.cedar", `@id("no-list")
forbid (principal, action == Action::"call", resource == Tool::"list_directory");
`)
	accessEventually(t, 5*time.Second, "reload after the fix", func() (bool, string) {
		evs := accessMatch(accessAudit(t, g, "--type", "policy.reload"), "policy.reload", "", "", "")
		return len(evs) > 0 && evs[0].Seq > lastReload && evs[0].Seq > failed.Seq, fmt.Sprintf("policy.reload events %+v", evs)
	})
	accessRefused(t, "list_directory under the fixed policy", call(t, cs, "list_directory", map[string]any{"path": "."}))
	// Removing a file lifts its policy.
	if err := os.Remove(filepath.Join(dir, "no-read.cedar")); err != nil {
		t.Fatal(err)
	}
	accessEventually(t, 5*time.Second, "removed policy lifted", func() (bool, string) {
		res := call(t, cs, "read_file", map[string]any{"path": "notes.txt"})
		return !res.IsError && text(res) == "readable", fmt.Sprintf("read_file: code %q text %q", code(res), text(res))
	})

	// policy test explains decisions by policy id.
	out, err = g.cli("policy", "test", "--user", "dev", "--tool", "write_file", "--args", `{"path":"a.env","content":""}`)
	if err != nil || !strings.HasPrefix(out, "DENY") || !strings.Contains(out, "no-secret-files-write") {
		t.Errorf("policy test a.env = %q, %v; want DENY naming no-secret-files-write", out, err)
	}
	out, err = g.cli("policy", "test", "--user", "dev", "--tool", "write_file", "--args", `{"path":"a.txt","content":""}`)
	if err != nil || !strings.HasPrefix(out, "ALLOW") {
		t.Errorf("policy test a.txt = %q, %v; want ALLOW", out, err)
	}
	if _, err := os.Stat(filepath.Join(g.workspace, "a.env")); !os.IsNotExist(err) {
		t.Error("policy test ran the tool")
	}
	if len(accessMatch(accessAudit(t, g, "--type", "admin.policy.test"), "admin.policy.test", "admin", "", "deny (policy no-secret-files-write")) == 0 {
		t.Error("policy test (DENY) not audited as admin.policy.test")
	}
}

// TestAccessReportMode: in report mode a call that a Cedar policy would
// refuse runs and is audited as policy.would_deny before it starts, while
// role grants are still enforced; production mode refuses report mode
// unless policy.allow_report_in_production is set.
func TestAccessReportMode(t *testing.T) {
	t.Parallel()
	dir := accessCopyPolicies(t)
	g := startGateway(t, "PORTCULLIS_POLICY_DIR="+dir, "PORTCULLIS_POLICY_MODE=report")
	if out, err := g.cli("policy", "list"); err != nil || !strings.HasPrefix(out, "mode: report") {
		t.Errorf("policy list in report mode = %q, %v", out, err)
	}
	dev := g.connect(g.createKey("dev", "developer"), "")
	guest := g.connect(g.createKey("gina", "guest"), "")

	res := call(t, dev, "write_file", map[string]any{"path": "a.env", "content": "SECRET=1"})
	if res.IsError {
		t.Errorf("report mode: developer write_file a.env refused: code %q text %q", code(res), text(res))
	}
	if b, err := os.ReadFile(filepath.Join(g.workspace, "a.env")); err != nil || string(b) != "SECRET=1" {
		t.Errorf("report mode: a.env = %q, %v; want the call to have run", b, err)
	}
	evs := accessAudit(t, g)
	would := accessMatch(evs, "policy.would_deny", "dev", "write_file", "no-secret-files-write")
	if len(would) != 1 {
		t.Fatalf("policy.would_deny events for dev write_file naming the policy = %d, want 1 (all events: %+v)", len(would), evs)
	}
	var start, end *accessEvent
	for i, e := range evs {
		if e.RequestID == would[0].RequestID && e.Type == "tool.call.start" {
			start = &evs[i]
		}
		if e.RequestID == would[0].RequestID && e.Type == "tool.call.end" {
			end = &evs[i]
		}
	}
	switch {
	case would[0].RequestID == "":
		t.Error("policy.would_deny has no request id")
	case start == nil || end == nil:
		t.Errorf("no tool.call.start/end with the request id %s of the would_deny", would[0].RequestID)
	case !(would[0].Seq < start.Seq && start.Seq < end.Seq):
		t.Errorf("order: would_deny seq %d, start %d, end %d; want would_deny before start", would[0].Seq, start.Seq, end.Seq)
	case end.Status != "ok":
		t.Errorf("tool.call.end status %q, want ok", end.Status)
	}
	if d := accessMatch(evs, "policy.deny", "dev", "write_file", ""); len(d) != 0 {
		t.Errorf("report mode recorded policy.deny for a call that ran: %+v", d)
	}

	// Role grants are still enforced: a guest may not write at all.
	for _, p := range []string{"g.txt", "g.env"} {
		accessRefused(t, "report mode: guest write_file "+p, call(t, guest, "write_file", map[string]any{"path": p, "content": "x"}))
		accessAbsent(t, filepath.Join(g.workspace, p))
	}
	if names, err := accessToolNames(guest); err != nil || slices.Contains(names, "write_file") {
		t.Errorf("report mode: guest tools/list = %v, %v; must not list write_file", names, err)
	}
	if len(accessMatch(accessAudit(t, g, "--type", "policy.deny"), "policy.deny", "gina", "write_file", "")) != 2 {
		t.Error("report mode: guest write_file refusals not audited as policy.deny")
	}

	// Production refuses report mode...
	p := accessServe(t, "127.0.0.1:0", "PORTCULLIS_MODE=production", "PORTCULLIS_POLICY_MODE=report", "PORTCULLIS_POLICY_DIR="+dir)
	if p.started() {
		t.Errorf("production + report mode started (%s)", p.base)
	} else if code := p.exitCode(); code == 0 || !strings.Contains(p.stderr.String(), "policy.mode") {
		t.Errorf("production + report mode: exit %d, stderr %q; want non-zero naming policy.mode", code, p.stderr)
	}
	// ... unless explicitly allowed.
	pg := startGateway(t, "PORTCULLIS_MODE=production", "PORTCULLIS_POLICY_MODE=report",
		"PORTCULLIS_POLICY_ALLOW_REPORT_IN_PRODUCTION=true", "PORTCULLIS_POLICY_DIR="+dir)
	if out, err := pg.cli("policy", "list"); err != nil || !strings.HasPrefix(out, "mode: report") {
		t.Errorf("production + allowed report mode: policy list = %q, %v", out, err)
	}
	warned := false
	for _, line := range strings.Split(pg.stderr.String(), "\n") {
		warned = warned || strings.Contains(line, "WARN") && strings.Contains(line, "report")
	}
	if !warned {
		t.Errorf("production + report mode started without a warning on stderr:\n%s", pg.stderr)
	}
}

// TestAccessOIDC: JWT access tokens from a local OIDC issuer authenticate
// MCP clients as "oidc:<sub>" with mapped roles; the gateway publishes RFC
// 9728 metadata and points to it in its challenges; a missing scope is 403
// insufficient_scope; every bad token gets the same 401 as a wrong API
// key, with its cause in the audit log; disabling the user refuses its
// tokens at once; a key rotation at the issuer is picked up.
func TestAccessOIDC(t *testing.T) {
	t.Parallel()
	const aud = "https://gw.portcullis.test/mcp"
	const metaURL = "https://gw.portcullis.test/.well-known/oauth-protected-resource/mcp"
	iss := oidctest.NewIssuer(t)
	// Fetch the discovery document once from this process first. Besides
	// checking that the issuer is up, this works around a data race in
	// oidctest: NewIssuer assigns its server field after the server has
	// started, and the handlers read it. Requests from the gateway process
	// create no happens-before edge for the race detector; this request's
	// socket write (after the assignment) does.
	if resp, err := http.Get(iss.URL() + "/.well-known/openid-configuration"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	g := startGateway(t, "PORTCULLIS_OIDC_ISSUER="+iss.URL(), "PORTCULLIS_OIDC_AUDIENCE="+aud,
		"PORTCULLIS_OIDC_ROLE_MAP=eng=developer,ops=admin", "PORTCULLIS_OIDC_REQUIRED_SCOPES=mcp:tools",
		"PORTCULLIS_OIDC_ROLES_CLAIM=realm_access.roles",
		"PORTCULLIS_AUTH_LOCKOUT_THRESHOLD=0") // many deliberate failures from one address
	started := time.Now() // the JWK Set was fetched before the gateway printed its address
	if iss.JWKSFetches() != 1 || iss.DiscoveryFetches() < 2 {
		t.Errorf("issuer fetches at start: jwks %d, discovery %d; want 1 and >= 2", iss.JWKSFetches(), iss.DiscoveryFetches())
	}
	if err := os.WriteFile(filepath.Join(g.workspace, "hello.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	mcpURL := g.base + "/mcp"
	claims := func(sub string, edit func(map[string]any)) map[string]any {
		c := iss.ValidClaims(aud, time.Now())
		c["sub"] = sub
		c["scope"] = "openid mcp:tools"
		c["realm_access"] = map[string]any{"roles": []string{"eng", "unrelated"}}
		if edit != nil {
			edit(c)
		}
		return c
	}
	aliceToken := iss.Token(claims("alice", nil))

	// The happy path with the official SDK client.
	cs, err := accessDial(t, mcpURL, aliceToken, nil)
	if err != nil {
		t.Fatalf("connect with a valid token: %v\nstderr:\n%s", err, g.stderr)
	}
	if names, err := accessToolNames(cs); err != nil || !cmp.Equal(names, developerTools) {
		t.Errorf("oidc:alice tools/list = %v, %v; want %v", names, err, developerTools)
	}
	if res := call(t, cs, "write_file", map[string]any{"path": "by-alice.txt", "content": "oidc"}); res.IsError {
		t.Errorf("oidc:alice write_file: %s", text(res))
	}
	if b, err := os.ReadFile(filepath.Join(g.workspace, "by-alice.txt")); err != nil || string(b) != "oidc" {
		t.Errorf("by-alice.txt = %q, %v", b, err)
	}
	// Another token of the same user (new jti) works as well, ES256 this time.
	if cs2, err := accessDial(t, mcpURL, iss.Token(claims("alice", func(c map[string]any) { c["jti"] = "jti-2" }), oidctest.WithAlg("ES256")), nil); err != nil {
		t.Errorf("ES256 token: %v", err)
	} else if res := call(t, cs2, "read_file", map[string]any{"path": "hello.txt"}); res.IsError || text(res) != "hi" {
		t.Errorf("ES256 token read_file: %q", text(res))
	}
	evs := accessAudit(t, g)
	// Roles are exactly the mapped ones: the IdP's "unrelated" group maps to nothing.
	if e := accessMatch(evs, "tool.call.end", "oidc:alice", "write_file", ""); len(e) != 1 || e[0].Status != "ok" || !cmp.Equal(e[0].Roles, []string{"developer"}) {
		t.Errorf("tool.call.end of oidc:alice write_file = %+v; want one, ok, roles [developer]", e)
	}
	if len(accessMatch(evs, "admin.user.create", "", "", "oidc:alice")) != 1 {
		t.Error("the just-in-time user oidc:alice was not audited once as admin.user.create")
	}
	// The just-in-time user holds no stored roles: they come from the token.
	var u struct {
		Name     string   `json:"name"`
		Roles    []string `json:"roles"`
		Disabled bool     `json:"disabled"`
	}
	if out, err := g.cli("user", "show", "oidc:alice", "--json"); err != nil || json.Unmarshal([]byte(out), &u) != nil ||
		u.Name != "oidc:alice" || len(u.Roles) != 0 || u.Disabled {
		t.Errorf("user show oidc:alice = %q, %v; want an enabled user without stored roles", out, err)
	}

	// RFC 9728 metadata and the challenge pointing to it.
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, err := http.Get(g.base + path)
		if err != nil {
			t.Fatal(err)
		}
		var md struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET %s: %d %q %v", path, resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		if md.Resource != aud || !cmp.Equal(md.AuthorizationServers, []string{iss.URL()}) {
			t.Errorf("GET %s = %+v; want resource %s, authorization_servers [%s]", path, md, aud, iss.URL())
		}
	}
	st, hdr, _ := accessRPC(t, http.DefaultClient, mcpURL, "")
	if ch := hdr.Get("WWW-Authenticate"); st != 401 || !strings.HasPrefix(ch, "Bearer") || !strings.Contains(ch, `resource_metadata="`+metaURL+`"`) {
		t.Errorf("no credential: %d, WWW-Authenticate %q; want 401 Bearer with resource_metadata=%q", st, ch, metaURL)
	}

	// A token without the required scope: 403 insufficient_scope.
	st, hdr, body := accessRPC(t, http.DefaultClient, mcpURL, iss.Token(claims("alice", func(c map[string]any) { c["scope"] = "openid" })))
	if ch := hdr.Get("WWW-Authenticate"); st != 403 || !strings.Contains(ch, `error="insufficient_scope"`) ||
		!strings.Contains(ch, `scope="mcp:tools"`) || !strings.Contains(ch, "resource_metadata=") || !strings.Contains(body, "insufficient_scope") {
		t.Errorf("missing scope: %d %q %q; want 403 insufficient_scope naming mcp:tools", st, ch, body)
	}

	// Every bad token gets exactly the answer of a wrong API key.
	wantSt, wantHdr, wantBody := accessRPC(t, http.DefaultClient, mcpURL, "pcl_"+strings.Repeat("A", 52))
	if wantSt != 401 {
		t.Fatalf("unknown API key: %d", wantSt)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	bad := []struct{ name, token, cause string }{
		{"wrong audience", iss.Token(claims("alice", func(c map[string]any) { c["aud"] = "https://other.example/mcp" })), "token_wrong_audience"},
		{"expired", iss.Token(claims("alice", func(c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-3*time.Hour).Unix(), now.Add(-3*time.Hour).Unix(), now.Add(-2*time.Hour).Unix()
		})), "token_expired"},
		{"alg none", iss.Token(claims("alice", nil), oidctest.WithAlg("none")), "token_alg_not_allowed"},
		{"HS256 with the public key as secret", iss.Token(claims("alice", nil), oidctest.WithAlg("HS256"), oidctest.WithSigningKey(iss.JWKS())), "token_alg_not_allowed"},
		{"signed by another key", iss.Token(claims("alice", nil), oidctest.WithSigningKey(otherKey)), "token_bad_signature"},
		{"wrong issuer", iss.Token(claims("alice", func(c map[string]any) { c["iss"] = "https://evil.example" })), "token_wrong_issuer"},
		{"tampered payload", accessTamper(t, iss.Token(claims("alice", nil))), "token_bad_signature"},
	}
	for _, b := range bad {
		st, hdr, body := accessRPC(t, http.DefaultClient, mcpURL, b.token)
		if st != wantSt || body != wantBody || hdr.Get("WWW-Authenticate") != wantHdr.Get("WWW-Authenticate") {
			t.Errorf("%s: %d %q %q; want the wrong-key answer %d %q %q", b.name, st, hdr.Get("WWW-Authenticate"), body,
				wantSt, wantHdr.Get("WWW-Authenticate"), wantBody)
		}
	}
	// A token whose sub is "admin" is oidc:admin, never the API key user admin.
	if csAdmin, err := accessDial(t, mcpURL, iss.Token(claims("admin", nil)), nil); err != nil {
		t.Errorf("token with sub admin: %v", err)
	} else if names, err := accessToolNames(csAdmin); err != nil || !cmp.Equal(names, developerTools) {
		t.Errorf("token with sub admin: tools/list = %v, %v; want the developer tools", names, err)
	}
	req, _ := http.NewRequest("GET", g.base+"/admin/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+iss.Token(claims("admin", nil)))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("token with sub admin on the admin API: %d, want 403", resp.StatusCode)
		}
	}
	if len(accessMatch(accessAudit(t, g, "--type", "admin.denied"), "admin.denied", "oidc:admin", "", "")) == 0 {
		t.Error("admin API refusal of oidc:admin not audited as admin.denied")
	}

	// The second role_map entry: the IdP group ops is the admin role.
	req, _ = http.NewRequest("GET", g.base+"/admin/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+iss.Token(claims("olga", func(c map[string]any) {
		c["realm_access"] = map[string]any{"roles": []string{"ops"}}
	})))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("token with IdP group ops (mapped to admin) on the admin API: %d, want 200", resp.StatusCode)
		}
	}

	// Role mapping: an IdP role named like a Portcullis role grants nothing.
	mallory := iss.Token(claims("mallory", func(c map[string]any) {
		c["roles"] = []string{"admin"}
		c["realm_access"] = map[string]any{"roles": []string{"admin", "developer"}}
	}))
	if st, _, body := accessRPC(t, http.DefaultClient, mcpURL, mallory); st != 401 || body != wantBody {
		t.Errorf("token with unmapped IdP role admin: %d %q; want the generic 401", st, body)
	}
	failures := accessAudit(t, g, "--type", "auth.failure")
	causes := []string{"insufficient_scope", "no_roles"}
	for _, b := range bad {
		causes = append(causes, b.cause)
	}
	for _, cause := range causes {
		if len(accessMatch(failures, "auth.failure", "", "", cause)) == 0 {
			t.Errorf("no auth.failure with cause %s", cause)
		}
	}
	for _, e := range failures {
		if strings.Contains(e.Detail, aliceToken[:40]) || strings.Contains(e.Detail, "eyJ") {
			t.Errorf("auth.failure detail carries a token: %q", e.Detail)
		}
	}

	// Disabling the user refuses her tokens at once, also on an open session.
	if _, err := g.cli("user", "disable", "oidc:alice"); err != nil {
		t.Fatal(err)
	}
	if names, err := accessToolNames(cs); err == nil {
		t.Errorf("open session of a disabled OIDC user still lists tools: %v", names)
	}
	fresh := iss.Token(claims("alice", func(c map[string]any) { c["jti"] = "jti-3" }))
	if st, _, body := accessRPC(t, http.DefaultClient, mcpURL, fresh); st != 401 || body != wantBody {
		t.Errorf("disabled oidc:alice: %d %q; want the generic 401", st, body)
	}
	if _, err := accessDial(t, mcpURL, fresh, nil); err == nil {
		t.Error("disabled oidc:alice could connect")
	}
	if len(accessMatch(accessAudit(t, g, "--type", "auth.failure"), "auth.failure", "oidc:alice", "", "disabled_user")) == 0 {
		t.Error("no auth.failure disabled_user for oidc:alice")
	}
	if _, err := g.cli("user", "enable", "oidc:alice"); err != nil {
		t.Fatal(err)
	}
	if cs3, err := accessDial(t, mcpURL, fresh, nil); err != nil {
		t.Errorf("re-enabled oidc:alice: %v", err)
	} else if names, err := accessToolNames(cs3); err != nil || !cmp.Equal(names, developerTools) {
		t.Errorf("re-enabled oidc:alice tools/list = %v, %v", names, err)
	}
	evs = accessAudit(t, g)
	for _, typ := range []string{"admin.user.disable", "admin.user.enable"} {
		if e := accessMatch(evs, typ, "admin", "", "oidc:alice"); len(e) != 1 {
			t.Errorf("%s events naming oidc:alice by admin = %+v; want one", typ, e)
		}
	}
	// API keys keep working next to OIDC.
	if _, err := accessDial(t, mcpURL, g.createKey("keyuser", "guest"), nil); err != nil {
		t.Errorf("API key with OIDC on: %v", err)
	}

	// Key rotation at the issuer: the JWK Set is refetched for an unknown
	// kid, at most once per 10s.
	fetches := iss.JWKSFetches()
	oldToken := iss.Token(claims("alice", func(c map[string]any) { c["jti"] = "jti-old" }))
	iss.RotateKeys()
	newToken := iss.Token(claims("alice", func(c map[string]any) { c["jti"] = "jti-new" }))
	if time.Since(started) < 9*time.Second {
		if st, _, _ := accessRPC(t, http.DefaultClient, mcpURL, newToken); st != 401 {
			t.Errorf("new-key token within 10s of the last JWKS fetch: %d; want 401 (refetch rate limit)", st)
		}
		if iss.JWKSFetches() != fetches {
			t.Errorf("JWK Set refetched within the 10s minimum interval (%d -> %d fetches)", fetches, iss.JWKSFetches())
		}
	}
	time.Sleep(time.Until(started.Add(10500 * time.Millisecond)))
	if cs4, err := accessDial(t, mcpURL, newToken, nil); err != nil {
		t.Errorf("token signed with the rotated key after >10s: %v", err)
	} else if _, err := accessToolNames(cs4); err != nil {
		t.Errorf("tools/list with the rotated key: %v", err)
	}
	if got := iss.JWKSFetches(); got != fetches+1 {
		t.Errorf("JWKS fetches after rotation = %d, want %d", got, fetches+1)
	}
	if st, _, _ := accessRPC(t, http.DefaultClient, mcpURL, oldToken); st != 401 {
		t.Errorf("token signed with the withdrawn key after the refetch: %d, want 401", st)
	}
}

// accessTamper changes the payload of a compact JWS (sub alice → admin)
// and keeps the signature.
func accessTamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(p, []byte(`"sub":"alice"`)) {
		t.Fatalf("payload %s has no sub alice", p)
	}
	p = bytes.Replace(p, []byte(`"sub":"alice"`), []byte(`"sub":"admin"`), 1)
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

// TestAccessCLIUsersRoles: users, roles, grants, scoped keys and key
// rotation through the CLI; each change is in force on the very next
// request without a restart, and each is audited as admin.*.
func TestAccessCLIUsersRoles(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	if err := os.WriteFile(filepath.Join(g.workspace, "r.txt"), []byte("report"), 0o644); err != nil {
		t.Fatal(err)
	}
	mcpURL := g.base + "/mcp"
	run := func(args ...string) string {
		t.Helper()
		out, err := g.cli(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	keyJSON := func(args ...string) (id, key string, scopes []string) {
		t.Helper()
		var k struct {
			ID     string   `json:"id"`
			Key    string   `json:"key"`
			Scopes []string `json:"scopes"`
		}
		out := run(args...)
		if err := json.Unmarshal([]byte(out), &k); err != nil || k.Key == "" || k.ID == "" {
			t.Fatalf("%v: %q (%v)", args, out, err)
		}
		return k.ID, k.Key, k.Scopes
	}

	run("user", "add", "bob", "--role", "guest")
	_, guestKey, _ := keyJSON("key", "create", "--user", "bob", "--role", "guest", "--json")
	bobGuest, err := accessDial(t, mcpURL, guestKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	accessRefused(t, "guest bob write_file", call(t, bobGuest, "write_file", map[string]any{"path": "b.txt", "content": "x"}))

	// A new role with a pattern grant.
	run("role", "create", "auditor", "--description", "reads only")
	run("role", "grant", "auditor", "--action", "call", "--pattern", "read_*")
	run("user", "grant", "bob", "auditor")
	_, audKey, _ := keyJSON("key", "create", "--user", "bob", "--role", "auditor", "--json")
	aud, err := accessDial(t, mcpURL, audKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if names, err := accessToolNames(aud); err != nil || !cmp.Equal(names, []string{"read_file"}) {
		t.Errorf("auditor tools/list = %v, %v; want [read_file]", names, err)
	}
	if res := call(t, aud, "read_file", map[string]any{"path": "r.txt"}); res.IsError || text(res) != "report" {
		t.Errorf("auditor read_file: %q", text(res))
	}
	accessRefused(t, "auditor list_directory", call(t, aud, "list_directory", map[string]any{"path": "."}))

	// An admin-area grant opens exactly that area of the admin API.
	adminGet := func(key, path string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", g.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := adminGet(audKey, "/admin/v1/audit?limit=1"); st != http.StatusForbidden {
		t.Errorf("auditor on /admin/v1/audit before the admin grant: %d, want 403", st)
	}
	run("role", "grant", "auditor", "--action", "admin", "--pattern", "audit")
	if st := adminGet(audKey, "/admin/v1/audit?limit=1"); st != http.StatusOK {
		t.Errorf("auditor on /admin/v1/audit after the admin grant: %d, want 200", st)
	}
	if st := adminGet(audKey, "/admin/v1/keys"); st != http.StatusForbidden {
		t.Errorf("auditor on /admin/v1/keys: %d, want 403", st)
	}

	// Changes apply on the next request of the open session.
	run("role", "grant", "auditor", "--action", "call", "--pattern", "file_info")
	if res := call(t, aud, "file_info", map[string]any{"path": "r.txt"}); res.IsError {
		t.Errorf("auditor file_info right after the grant: code %q", code(res))
	}
	if names, err := accessToolNames(aud); err != nil || !cmp.Equal(names, []string{"file_info", "read_file"}) {
		t.Errorf("auditor tools/list after the grant = %v, %v", names, err)
	}
	run("role", "grant", "auditor", "--action", "call", "--pattern", "read_file", "--deny")
	accessRefused(t, "auditor read_file right after the deny grant", call(t, aud, "read_file", map[string]any{"path": "r.txt"}))
	run("role", "revoke", "auditor", "--action", "call", "--pattern", "read_file")
	if res := call(t, aud, "read_file", map[string]any{"path": "r.txt"}); res.IsError {
		t.Errorf("auditor read_file after the deny was revoked: code %q", code(res))
	}

	// A developer key narrowed by a scope.
	scopedID, scopedKey, scopes := keyJSON("key", "create", "--user", "bob", "--role", "developer", "--scope", "read_file", "--json")
	if !cmp.Equal(scopes, []string{"read_file"}) {
		t.Errorf("scoped key scopes = %v", scopes)
	}
	scoped, err := accessDial(t, mcpURL, scopedKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if names, err := accessToolNames(scoped); err != nil || !cmp.Equal(names, []string{"read_file"}) {
		t.Errorf("scoped developer key tools/list = %v, %v; want [read_file]", names, err)
	}
	accessRefused(t, "scoped key write_file", call(t, scoped, "write_file", map[string]any{"path": "s.txt", "content": "x"}))
	accessAbsent(t, filepath.Join(g.workspace, "s.txt"))
	if res := call(t, scoped, "read_file", map[string]any{"path": "r.txt"}); res.IsError {
		t.Errorf("scoped key read_file: code %q", code(res))
	}

	// Rotation: the old key stops at once, the new one keeps the scope.
	var rotated struct {
		ID          string   `json:"id"`
		Key         string   `json:"key"`
		RotatedFrom string   `json:"rotated_from"`
		Scopes      []string `json:"scopes"`
		Roles       []string `json:"roles"`
	}
	out := run("key", "rotate", scopedID, "--json")
	if err := json.Unmarshal([]byte(out), &rotated); err != nil || rotated.Key == "" || rotated.Key == scopedKey {
		t.Fatalf("key rotate: %q (%v)", out, err)
	}
	if rotated.RotatedFrom != scopedID || !cmp.Equal(rotated.Scopes, []string{"read_file"}) || !cmp.Equal(rotated.Roles, []string{"developer"}) {
		t.Errorf("rotated key = %+v; want rotated_from %s, scopes [read_file], roles [developer]", rotated, scopedID)
	}
	if st, _, _ := accessRPC(t, http.DefaultClient, mcpURL, scopedKey); st != 401 {
		t.Errorf("old key right after rotation: %d, want 401", st)
	}
	if _, err := accessToolNames(scoped); err == nil {
		t.Error("open session of the rotated-away key still answers")
	}
	newScoped, err := accessDial(t, mcpURL, rotated.Key, nil)
	if err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if names, err := accessToolNames(newScoped); err != nil || !cmp.Equal(names, []string{"read_file"}) {
		t.Errorf("rotated key tools/list = %v, %v; want the scope kept", names, err)
	}
	accessRefused(t, "rotated key write_file", call(t, newScoped, "write_file", map[string]any{"path": "s.txt", "content": "x"}))
	if _, err := g.cli("key", "rotate", scopedID); accessExitCode(err) <= 0 {
		t.Errorf("rotating a revoked key: %v; want a non-zero exit", err)
	}

	// A key with a lifetime stops at its expiry.
	created := time.Now()
	_, shortKey, _ := keyJSON("key", "create", "--user", "bob", "--role", "guest", "--expires", "3s", "--json")
	if st, _, _ := accessRPC(t, http.DefaultClient, mcpURL, shortKey); st == 401 {
		t.Error("key with --expires 3s refused at once")
	}
	time.Sleep(time.Until(created.Add(3200 * time.Millisecond)))
	if st, _, _ := accessRPC(t, http.DefaultClient, mcpURL, shortKey); st != 401 {
		t.Errorf("key after its expiry: %d, want 401", st)
	}

	// Taking a role from the user stops the keys carrying it.
	run("user", "revoke", "bob", "auditor")
	if st, _, _ := accessRPC(t, http.DefaultClient, mcpURL, audKey); st != 401 {
		t.Errorf("auditor key after user revoke bob auditor: %d, want 401", st)
	}
	if names, err := accessToolNames(bobGuest); err != nil || !cmp.Equal(names, guestTools) {
		t.Errorf("bob's guest key after the revoke = %v, %v; want still %v", names, err, guestTools)
	}

	// Disable / enable stops and restores every key of the user.
	run("user", "disable", "bob")
	for name, k := range map[string]string{"guest": guestKey, "rotated": rotated.Key} {
		if st, _, _ := accessRPC(t, http.DefaultClient, mcpURL, k); st != 401 {
			t.Errorf("%s key of disabled bob: %d, want 401", name, st)
		}
	}
	run("user", "enable", "bob")
	if res := call(t, newScoped, "read_file", map[string]any{"path": "r.txt"}); res.IsError {
		t.Errorf("re-enabled bob read_file: code %q", code(res))
	}
	if _, err := g.cli("user", "disable", "admin"); accessExitCode(err) <= 0 {
		t.Errorf("disabling the last admin: %v; want refused", err)
	}

	// Every change is audited, by the administrator.
	evs := accessAudit(t, g)
	for _, want := range []struct{ typ, detail string }{
		{"admin.user.create", "bob"},
		{"admin.role.create", "auditor"},
		{"admin.role.permission_grant", "read_*"},
		{"admin.role.permission_grant", "file_info"},
		{"admin.role.permission_revoke", "read_file"},
		{"admin.user.role_grant", "auditor"},
		{"admin.key.create", "bob"},
		{"admin.key.rotate", scopedID},
		{"admin.key.rotate", rotated.ID},
		{"admin.user.role_revoke", "auditor"},
		{"admin.user.disable", "bob"},
		{"admin.user.enable", "bob"},
		{"admin.role.permission_grant", `allow admin "audit"`},
		{"admin.role.permission_grant", `deny call "read_file"`},
	} {
		if len(accessMatch(evs, want.typ, "admin", "", want.detail)) == 0 {
			t.Errorf("audit log lacks %s by admin with detail containing %q", want.typ, want.detail)
		}
	}
	if len(accessMatch(evs, "auth.failure", "bob", "", "revoked_key")) == 0 {
		t.Error("no auth.failure revoked_key for bob's rotated-away key")
	}
	if len(accessMatch(evs, "auth.failure", "bob", "", "disabled_user")) == 0 {
		t.Error("no auth.failure disabled_user for bob")
	}
	for _, cause := range []string{"expired_key", "no_roles"} {
		if len(accessMatch(evs, "auth.failure", "bob", "", cause)) == 0 {
			t.Errorf("no auth.failure %s for bob", cause)
		}
	}
}

// accessProc is a `portcullis serve` started by accessServe, with any
// listen address and (unlike the harness) https.
type accessProc struct {
	cmd      *exec.Cmd
	stdout   *syncBuffer
	stderr   *syncBuffer
	exited   chan struct{}
	exitErr  error
	base     string // http(s)://host:port once listening
	adminKey string
}

var accessListenRE = regexp.MustCompile(`listening on (https?://[0-9.:\[\]a-z]+)/mcp`)

// accessServe starts serve --listen listen with env on a fresh data dir
// and waits until it is listening (and printed its admin key) or has
// exited. A process that is still running is stopped when the test ends.
func accessServe(t *testing.T, listen string, env ...string) *accessProc {
	t.Helper()
	root := t.TempDir()
	ws := filepath.Join(root, "ws")
	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &accessProc{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, "serve", "--listen", listen, "--data-dir", filepath.Join(root, "data"), "--workspace", ws)
	p.cmd.Env = cleanEnv(env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout = io.MultiWriter(pw, p.stdout)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		var base, key string
		for sc.Scan() {
			if m := accessListenRE.FindStringSubmatch(sc.Text()); m != nil {
				base = m[1]
			}
			if m := keyRE.FindStringSubmatch(sc.Text()); m != nil {
				key = m[1]
			}
			if base != "" && key != "" {
				ready <- base + " " + key
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case s := <-ready:
		p.base, p.adminKey, _ = strings.Cut(s, " ")
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("serve neither started nor exited\nstdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
	}
	return p
}

func (p *accessProc) started() bool { return p.base != "" }

// exitCode waits for the process to exit and returns its status.
func (p *accessProc) exitCode() int {
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return -1
	}
	if p.exitErr == nil {
		return 0
	}
	return accessExitCode(p.exitErr)
}

// accessSelfSigned writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and localhost and its key (PKCS #8, mode 0600) into dir and
// returns their paths and a pool trusting the certificate.
func accessSelfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "portcullis e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestAccessTransport: production mode refuses to listen on a
// non-loopback address without TLS (the error names listen) and serves
// HTTPS with a certificate; the TLS port does not speak plain HTTP and
// refuses TLS below 1.2. (The development-mode warning for a non-loopback
// address without TLS is not tested: tests bind loopback only.)
func TestAccessTransport(t *testing.T) {
	t.Parallel()
	for _, listen := range []string{"0.0.0.0:0", ":0"} {
		p := accessServe(t, listen, "PORTCULLIS_MODE=production")
		if p.started() {
			t.Errorf("production mode started on %s without TLS (%s)", listen, p.base)
			continue
		}
		if code := p.exitCode(); code == 0 || !strings.Contains(p.stderr.String(), "listen") {
			t.Errorf("production on %s without TLS: exit %d, stderr %q; want non-zero naming listen", listen, code, p.stderr)
		}
	}
	certFile, keyFile, pool := accessSelfSigned(t, t.TempDir())
	p := accessServe(t, "127.0.0.1:0", "PORTCULLIS_MODE=production", "PORTCULLIS_TLS_CERT_FILE="+certFile)
	if p.started() || p.exitCode() == 0 || !strings.Contains(p.stderr.String(), "tls.") {
		t.Errorf("tls.cert_file without tls.key_file: started %v, stderr %q; want refused naming the tls key", p.started(), p.stderr)
	}

	p = accessServe(t, "127.0.0.1:0", "PORTCULLIS_MODE=production",
		"PORTCULLIS_TLS_CERT_FILE="+certFile, "PORTCULLIS_TLS_KEY_FILE="+keyFile)
	if !p.started() {
		t.Fatalf("production with TLS did not start: exit %d\nstdout:\n%s\nstderr:\n%s", p.exitCode(), p.stdout, p.stderr)
	}
	if !strings.HasPrefix(p.base, "https://127.0.0.1:") {
		t.Fatalf("TLS listener address %q, want https://127.0.0.1:port", p.base)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := hc.Get(p.base + "/healthz")
	if err != nil {
		t.Fatalf("https /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("https /healthz: %d, tls %+v", resp.StatusCode, resp.TLS)
	}
	// The listener offers h2 by ALPN: an HTTP/2 client must be served too.
	tr2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr2.CloseIdleConnections()
	for name, rt := range map[string]http.RoundTripper{"HTTP/1.1": tr, "HTTP/2": tr2} {
		cs, err := accessDial(t, p.base+"/mcp", p.adminKey, rt)
		if err != nil {
			t.Errorf("MCP over TLS (%s): %v\nstderr:\n%s", name, err, p.stderr)
			continue
		}
		if names, err := accessToolNames(cs); err != nil || !slices.Contains(names, "read_file") {
			t.Errorf("tools/list over TLS (%s) = %v, %v", name, names, err)
		}
		if res := call(t, cs, "list_directory", map[string]any{"path": "."}); res.IsError {
			t.Errorf("list_directory over TLS (%s): %s", name, text(res))
		}
	}
	if st, hdr, _ := accessRPC(t, hc, p.base+"/mcp", ""); st != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no credential over TLS: %d", st)
	}
	// An untrusting client fails the handshake (the certificate is what we think).
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(p.base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("https with an untrusted self-signed certificate succeeded")
	}
	// Plain HTTP to the TLS port never reaches a handler.
	plain := "http://" + strings.TrimPrefix(p.base, "https://")
	pc := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/healthz", "/mcp"} {
		req, _ := http.NewRequest("POST", plain+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`))
		req.Header.Set("Authorization", "Bearer "+p.adminKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := pc.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "read_file") {
			t.Errorf("plain http %s to the TLS port: %d %q; want a failure", path, resp.StatusCode, b)
		}
	}
	// TLS 1.1 is refused.
	old := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(p.base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("TLS 1.1 handshake accepted (version %x)", resp.TLS.Version)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("TLS gateway exit %d after SIGTERM\nstderr:\n%s", code, p.stderr)
	}
}

// stop sends SIGTERM and returns the exit status.
func (p *accessProc) stop(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.exitCode()
}
