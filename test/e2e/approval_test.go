package e2e

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Tests of human approval (issue 7) against the real binary: a CRITICAL
// call (git_commit) is held until an approver approves exactly that call,
// then the identical retry runs once. Replays, other principals, other
// arguments, other tools and self-approval get nothing.
//
// Real-time expiry is not tested here: approval.ttl is at least 1m, too
// long for this suite. Expiry is covered by internal/approval's TestExpiry
// and TestExpiredBeforeSweep (injected clock); the e2e tests cover the
// other terminal refusal, a denial.

// aprWait is approval.wait for the tests that expect a held call to come
// back: short, so each held call costs about a second.
const aprWait = "PORTCULLIS_APPROVAL_WAIT=1s"

// aprIDRE is the shape of an approval request id ("apr_" + rand.Text()).
var aprIDRE = regexp.MustCompile(`^apr_[a-z2-7]{26}$`)

// aprHTTP is the client for raw admin API requests.
var aprHTTP = &http.Client{Timeout: 20 * time.Second}

// aprCommit is the git_commit call the tests hold and approve.
func aprCommit(msg string) map[string]any {
	return map[string]any{"message": msg, "paths": []any{"a.txt"}}
}

// approvalGateway starts a gateway (approval.wait 1s unless env says
// otherwise) whose workspace is a git repository with one commit of
// a.txt, and lets developers call git_commit (the default developer role
// may not; CRITICAL tools need approval for anyone but admins). It skips
// the test when the host offers no git_commit (no sandbox or no git).
func approvalGateway(t *testing.T, env ...string) *gateway {
	t.Helper()
	g := startGateway(t, append([]string{aprWait}, env...)...)
	if !slices.Contains(toolNames(t, g.connect(g.adminKey, "")), "git_commit") {
		var why []string
		for _, l := range strings.Split(g.stderr.String(), "\n") {
			if strings.Contains(l, "NOT available") {
				why = append(why, l)
			}
		}
		t.Skipf("SKIP: git_commit is not offered on this host (sandbox or git unavailable): %s", strings.Join(why, "; "))
	}
	aprRepo(t, g)
	return g
}

// aprRepo makes g's workspace a git repository with one commit of a.txt
// (v0) and lets developers call git_commit.
func aprRepo(t *testing.T, g *gateway) {
	t.Helper()
	aprWrite(t, g.workspace, "v0\n")
	aprGit(t, g.workspace, "init", "-q")
	aprGit(t, g.workspace, "add", "a.txt")
	aprGit(t, g.workspace, "commit", "-q", "-m", "initial")
	// Sandboxed git runs as an unprivileged user: everything world-readable.
	err := filepath.WalkDir(g.workspace, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	aprCLI(t, g, "role", "grant", "developer", "--action", "call", "--pattern", "git_commit")
}

// aprGit runs the host's git in dir for setup and verification, isolated
// from the host's configuration.
func aprGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	full := append([]string{"-c", "user.name=Tester", "-c", "user.email=tester@example.com",
		"-c", "init.defaultBranch=main", "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false"}, args...)
	cmd := exec.Command("git", full...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null", "LC_ALL=C", "GIT_TERMINAL_PROMPT=0"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// aprWrite sets the content of a.txt in the workspace (world-readable),
// so that the next git_commit has something to commit.
func aprWrite(t *testing.T, dir, content string) {
	t.Helper()
	p := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
}

// aprCLI runs the CLI as the admin and fails the test on error.
func aprCLI(t *testing.T, g *gateway, args ...string) string {
	t.Helper()
	out, err := g.cli(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// aprRequest is an approval request as the CLI and admin API print it.
type aprRequest struct {
	ID         string          `json:"id"`
	Principal  string          `json:"principal"`
	Tool       string          `json:"tool"`
	ArgsSHA256 string          `json:"args_sha256"`
	Args       json.RawMessage `json:"args"` // redacted
	State      string          `json:"state"`
	ExpiresAt  time.Time       `json:"expires_at"`
	DecidedBy  string          `json:"decided_by"`
	Comment    string          `json:"comment"`
}

// aprList returns `portcullis approvals list --state state --json`.
func aprList(t *testing.T, g *gateway, state string) []aprRequest {
	t.Helper()
	var as []aprRequest
	out := aprCLI(t, g, "approvals", "list", "--state", state, "--json")
	if err := json.Unmarshal([]byte(out), &as); err != nil {
		t.Fatalf("approvals list output %q: %v", out, err)
	}
	return as
}

// aprShow returns `portcullis approvals show id`.
func aprShow(t *testing.T, g *gateway, id string) aprRequest {
	t.Helper()
	var a aprRequest
	out := aprCLI(t, g, "approvals", "show", id)
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("approvals show output %q: %v", out, err)
	}
	return a
}

// aprDo sends an admin API request with key and returns status and body.
func aprDo(t *testing.T, g *gateway, key, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, g.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := aprHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// aprEvent is an audit event as the admin API returns it.
type aprEvent struct {
	Seq       int64  `json:"seq"`
	Type      string `json:"type"`
	Principal string `json:"principal"`
	Tool      string `json:"tool"`
	RequestID string `json:"request_id"`
	Reason    string `json:"reason"`
	Status    string `json:"status"`
	Detail    string `json:"detail"`
}

// aprAudit returns the audit events matching q, oldest first.
func aprAudit(t *testing.T, g *gateway, q url.Values) []aprEvent {
	t.Helper()
	q.Set("order", "asc")
	q.Set("limit", "1000")
	status, body := aprDo(t, g, g.adminKey, "GET", "/admin/v1/audit?"+q.Encode(), "")
	if status != http.StatusOK {
		t.Fatalf("GET /admin/v1/audit: %d %s", status, body)
	}
	var out struct{ Events []aprEvent }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out.Events
}

// aprEventsOf returns the approval.* events about request id, oldest first.
func aprEventsOf(t *testing.T, g *gateway, id string) []aprEvent {
	t.Helper()
	var out []aprEvent
	for _, e := range aprAudit(t, g, url.Values{}) {
		if strings.HasPrefix(e.Type, "approval.") && strings.HasPrefix(e.Detail, id+" ") {
			out = append(out, e)
		}
	}
	return out
}

// aprRefused asserts that res is a refusal with code and an approval
// request in state, named in the text and in structuredContent with a
// plausible expiry (default TTL 15m); it returns the request id.
func aprRefused(t *testing.T, res *mcp.CallToolResult, wantCode, wantState string) string {
	t.Helper()
	if !res.IsError || code(res) != wantCode {
		t.Fatalf("isError=%v code=%q text=%q, want %s", res.IsError, code(res), text(res), wantCode)
	}
	m, _ := res.StructuredContent.(map[string]any)
	id, _ := m["approval_id"].(string)
	if !aprIDRE.MatchString(id) {
		t.Fatalf("structuredContent.approval_id = %q, want apr_...; structured %v", id, m)
	}
	if !strings.Contains(text(res), id) {
		t.Errorf("refusal text %q does not name %s", text(res), id)
	}
	if st, _ := m["approval_state"].(string); st != wantState {
		t.Errorf("approval_state = %q, want %q", st, wantState)
	}
	exp, _ := m["expires_at"].(string)
	at, err := time.Parse(time.RFC3339, exp)
	if now := time.Now(); err != nil || at.Before(now.Add(14*time.Minute)) || at.After(now.Add(16*time.Minute)) {
		t.Errorf("expires_at = %q (%v), want about 15 minutes from now", exp, err)
	}
	return id
}

// aprHeld asserts an APPROVAL_REQUIRED refusal with a pending request.
func aprHeld(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	return aprRefused(t, res, "APPROVAL_REQUIRED", "pending")
}

// aprRan asserts that a git_commit ran and returns its commit id.
func aprRan(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if res.IsError {
		t.Fatalf("call refused or failed: code=%q text=%q", code(res), text(res))
	}
	m, _ := res.StructuredContent.(map[string]any)
	c, _ := m["commit"].(string)
	if len(c) < 40 {
		t.Fatalf("no commit in result: %q %v", text(res), m)
	}
	return c
}

// aprHead returns the workspace's HEAD commit and the number of commits.
func aprHead(t *testing.T, g *gateway) (string, string) {
	t.Helper()
	return aprGit(t, g.workspace, "rev-parse", "HEAD"), aprGit(t, g.workspace, "rev-list", "--count", "HEAD")
}

// TestApprovalHeldApprovedRunsOnce: a developer's git_commit is held and
// does nothing; an admin approves it through the CLI; the identical retry
// runs exactly once as Portcullis; a further identical retry needs a new
// approval; the audit log has request, grant and consume in order, tied
// to the held call and to the call that ran.
func TestApprovalHeldApprovedRunsOnce(t *testing.T) {
	t.Parallel()
	g := approvalGateway(t)
	cs := g.connect(g.createKey("alice", "developer"), "")
	head0, _ := aprHead(t, g)
	aprWrite(t, g.workspace, "v1\n")

	id1 := aprHeld(t, call(t, cs, "git_commit", aprCommit("m1")))
	if head, _ := aprHead(t, g); head != head0 {
		t.Fatalf("a held call committed: HEAD %s → %s", head0, head)
	}

	// The CLI lists it as pending for alice and shows the (redacted) call.
	found := false
	for _, line := range strings.Split(aprCLI(t, g, "approvals", "list"), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == id1 {
			found = true
			if diff := cmp.Diff([]string{"pending", "alice", "git_commit"}, f[1:4]); diff != "" {
				t.Errorf("approvals list row (-want +got):\n%s", diff)
			}
		}
	}
	if !found {
		t.Fatalf("approvals list does not show %s", id1)
	}
	if a := aprShow(t, g, id1); a.State != "pending" || a.Principal != "alice" || a.Tool != "git_commit" ||
		!strings.Contains(string(a.Args), `"m1"`) || len(a.ArgsSHA256) != 64 {
		t.Errorf("approvals show %s = %+v", id1, a)
	}

	out := aprCLI(t, g, "approvals", "approve", id1, "--comment", "ok")
	if !strings.HasPrefix(out, id1+": approved (git_commit by alice") {
		t.Errorf("approvals approve printed %q", out)
	}

	commit := aprRan(t, call(t, cs, "git_commit", aprCommit("m1")))
	head, count := aprHead(t, g)
	if head != commit || count != "2" {
		t.Errorf("HEAD %s with %s commits, want the reported %s as the second", head, count, commit)
	}
	if got := aprGit(t, g.workspace, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s"); got !=
		"Portcullis <portcullis@localhost>|Portcullis <portcullis@localhost>|m1" {
		t.Errorf("commit author|committer|subject = %q", got)
	}
	if body := aprGit(t, g.workspace, "log", "-1", "--format=%B"); !strings.Contains(body, "Portcullis-Principal: alice") {
		t.Errorf("commit message lacks the principal trailer: %q", body)
	}
	if a := aprShow(t, g, id1); a.State != "consumed" || a.DecidedBy != "admin" || a.Comment != "ok" {
		t.Errorf("after the run %s = %+v, want consumed, decided by admin with comment ok", id1, a)
	}

	// Replay after consumption: the identical call is held again, under a
	// new request, and runs nothing.
	aprWrite(t, g.workspace, "v1 again\n")
	id2 := aprHeld(t, call(t, cs, "git_commit", aprCommit("m1")))
	if id2 == id1 {
		t.Errorf("replay reused consumed request %s", id1)
	}
	if h, _ := aprHead(t, g); h != commit {
		t.Errorf("replay committed: HEAD %s, want %s", h, commit)
	}

	// Audit: request, grant, consume in this order; the request belongs to
	// the refused call, the consumption names the call that ran.
	evs := aprEventsOf(t, g, id1)
	var types, principals []string
	for _, e := range evs {
		types, principals = append(types, e.Type), append(principals, e.Principal)
	}
	if diff := cmp.Diff([]string{"approval.request", "approval.grant", "approval.consume"}, types); diff != "" {
		t.Fatalf("approval events of %s (-want +got):\n%s", id1, diff)
	}
	if diff := cmp.Diff([]string{"alice", "admin", "alice"}, principals); diff != "" {
		t.Errorf("approval event principals (-want +got):\n%s", diff)
	}
	if !strings.HasSuffix(evs[1].Detail, "; ok") {
		t.Errorf("approval.grant detail %q lacks the comment", evs[1].Detail)
	}
	var refused, start *aprEvent
	for _, e := range aprAudit(t, g, url.Values{"user": {"alice"}, "tool": {"git_commit"}}) {
		switch {
		case e.Type == "tool.call.refused" && e.RequestID == evs[0].RequestID:
			refused = &e
		case e.Type == "tool.call.start" && e.Detail == "approved by "+id1:
			start = &e
		}
	}
	if refused == nil || refused.Reason != "APPROVAL_REQUIRED" || evs[0].RequestID == "" {
		t.Errorf("no tool.call.refused APPROVAL_REQUIRED for the request's call %q: %+v", evs[0].RequestID, refused)
	}
	// approval.consume carries the request id of the call that ran (it
	// joins that call's records) and names the original request's.
	if start == nil || evs[2].RequestID != start.RequestID || start.Seq < evs[2].Seq ||
		!strings.HasSuffix(evs[2].Detail, "requested by "+evs[0].RequestID) {
		t.Errorf("tool.call.start of the approved run %+v does not follow approval.consume %+v naming it", start, evs[2])
	}
	if n := len(aprEventsOf(t, g, id2)); n != 1 {
		t.Errorf("replay's request %s has %d approval events, want 1 (approval.request)", id2, n)
	}
}

// TestApprovalAdminExempt: an admin's git_commit runs at once; no request
// is created.
func TestApprovalAdminExempt(t *testing.T) {
	t.Parallel()
	g := approvalGateway(t)
	cs := g.connect(g.adminKey, "")
	aprWrite(t, g.workspace, "by admin\n")
	commit := aprRan(t, call(t, cs, "git_commit", aprCommit("admin commit")))
	if head, count := aprHead(t, g); head != commit || count != "2" {
		t.Errorf("HEAD %s with %s commits, want %s as the second", head, count, commit)
	}
	if as := aprList(t, g, "all"); len(as) != 0 {
		t.Errorf("an admin's call created approval requests: %+v", as)
	}
	if evs := aprAudit(t, g, url.Values{"type": {"approval.request"}}); len(evs) != 0 {
		t.Errorf("approval.request audited for an exempt admin: %+v", evs)
	}
}

// TestApprovalWaitAndRun: with approval.wait 20s the held call waits; an
// approval given meanwhile (admin API) lets the same call run, without a
// retry.
func TestApprovalWaitAndRun(t *testing.T) {
	t.Parallel()
	g := approvalGateway(t, "PORTCULLIS_APPROVAL_WAIT=20s")
	cs := g.connect(g.createKey("alice", "developer"), "")
	aprWrite(t, g.workspace, "waited\n")

	type outcome struct {
		res *mcp.CallToolResult
		err error
		d   time.Duration
	}
	done := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		start := time.Now()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "git_commit", Arguments: aprCommit("m-wait")})
		done <- outcome{res, err, time.Since(start)}
	}()

	var id string
	deadline := time.Now().Add(15 * time.Second)
	for id == "" {
		for _, a := range aprList(t, g, "pending") {
			if a.Principal == "alice" && a.Tool == "git_commit" {
				id = a.ID
			}
		}
		if id != "" {
			break
		}
		select {
		case o := <-done:
			t.Fatalf("the call returned before any request was pending: %v %+v", o.err, o.res)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no pending request appeared within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case o := <-done:
		t.Fatalf("the call did not wait for a decision: %v %+v", o.err, o.res)
	default:
	}
	if status, body := aprDo(t, g, g.adminKey, "POST", "/admin/v1/approvals/"+id+"/approve",
		`{"comment":"approved while it waits"}`); status != http.StatusOK || !strings.Contains(body, `"state":"approved"`) {
		t.Fatalf("approve %s: %d %s", id, status, body)
	}
	var o outcome
	select {
	case o = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting call did not return after the approval")
	}
	if o.err != nil {
		t.Fatal(o.err)
	}
	commit := aprRan(t, o.res)
	if o.d >= 20*time.Second {
		t.Errorf("the call took %s: it ran only after approval.wait", o.d)
	}
	if head, count := aprHead(t, g); head != commit || count != "2" {
		t.Errorf("HEAD %s with %s commits, want %s as the second", head, count, commit)
	}
	all := aprList(t, g, "all")
	if len(all) != 1 || all[0].ID != id || all[0].State != "consumed" {
		t.Errorf("requests after the run = %+v, want only %s, consumed", all, id)
	}
}

// TestApprovalReplayAndConfusion: an approval is worth one run of exactly
// the approved call by exactly its requester, decided by someone else
// with the right to decide. Each case has its own gateway.
func TestApprovalReplayAndConfusion(t *testing.T) {
	t.Parallel()
	// git_diff and git_status take the same arguments: approval.tools holds
	// both for developers so that an approval for one can be tried on the
	// other with identical arguments.
	tools := `PORTCULLIS_APPROVAL_TOOLS={"git_diff":["developer"],"git_status":["developer"]}`

	t.Run("another principal", func(t *testing.T) {
		t.Parallel()
		g := approvalGateway(t, tools)
		alice := g.connect(g.createKey("alice", "developer"), "")
		bob := g.connect(g.createKey("bob", "developer"), "")
		aprWrite(t, g.workspace, "alice's change\n")
		idA := aprHeld(t, call(t, alice, "git_commit", aprCommit("m4")))
		aprCLI(t, g, "approvals", "approve", idA)

		// Bob, same tool and arguments: his own request; alice's stays approved.
		idB := aprHeld(t, call(t, bob, "git_commit", aprCommit("m4")))
		if idB == idA {
			t.Fatalf("bob's call was bound to alice's request %s", idA)
		}
		if b := aprShow(t, g, idB); b.Principal != "bob" || b.State != "pending" {
			t.Errorf("bob's request = %+v", b)
		}
		if a := aprShow(t, g, idA); a.State != "approved" {
			t.Errorf("alice's request after bob's call is %s, want approved", a.State)
		}
		_, count := aprHead(t, g)
		if count != "1" {
			t.Fatalf("bob's call committed (%s commits)", count)
		}
		// Alice's approval still works for alice, once.
		aprRan(t, call(t, alice, "git_commit", aprCommit("m4")))
		if _, count := aprHead(t, g); count != "2" {
			t.Errorf("%s commits after alice's approved run, want 2", count)
		}
		aprWrite(t, g.workspace, "alice again\n")
		if id := aprHeld(t, call(t, alice, "git_commit", aprCommit("m4"))); id == idA {
			t.Errorf("alice's second run reused %s", idA)
		}
		if b := aprShow(t, g, idB); b.State != "pending" {
			t.Errorf("bob's request is %s, want pending", b.State)
		}
	})

	t.Run("changed arguments", func(t *testing.T) {
		t.Parallel()
		g := approvalGateway(t, tools)
		alice := g.connect(g.createKey("alice", "developer"), "")
		aprWrite(t, g.workspace, "changed args\n")
		id := aprHeld(t, call(t, alice, "git_commit", aprCommit("m5")))
		aprCLI(t, g, "approvals", "approve", id)
		seen := map[string]bool{id: true}
		for name, args := range map[string]map[string]any{
			"message":      aprCommit("m5 and more"),
			"message case": aprCommit("M5"),
			"more paths":   {"message": "m5", "paths": []any{"a.txt", "b.txt"}},
			"no paths":     {"message": "m5"},
		} {
			got := aprHeld(t, call(t, alice, "git_commit", args))
			if seen[got] {
				t.Errorf("%s: held under an existing request %s", name, got)
			}
			seen[got] = true
		}
		if _, count := aprHead(t, g); count != "1" {
			t.Fatalf("a changed call committed (%s commits)", count)
		}
		if a := aprShow(t, g, id); a.State != "approved" {
			t.Fatalf("the approved request is %s after changed calls, want approved", a.State)
		}
		aprRan(t, call(t, alice, "git_commit", aprCommit("m5")))
		if subj := aprGit(t, g.workspace, "log", "-1", "--format=%s"); subj != "m5" {
			t.Errorf("committed %q, want the approved message m5", subj)
		}
	})

	t.Run("another tool", func(t *testing.T) {
		t.Parallel()
		g := approvalGateway(t, tools)
		alice := g.connect(g.createKey("alice", "developer"), "")
		aprWrite(t, g.workspace, "v-diff\n")
		args := map[string]any{"path": "a.txt"}
		idDiff := aprHeld(t, call(t, alice, "git_diff", args))
		aprCLI(t, g, "approvals", "approve", idDiff)
		idStatus := aprHeld(t, call(t, alice, "git_status", args))
		if idStatus == idDiff {
			t.Fatalf("git_status used git_diff's approval %s", idDiff)
		}
		if s := aprShow(t, g, idStatus); s.Tool != "git_status" {
			t.Errorf("git_status's request is for %s", s.Tool)
		}
		if d := aprShow(t, g, idDiff); d.State != "approved" {
			t.Errorf("git_diff's request is %s after the git_status call, want approved", d.State)
		}
		res := call(t, alice, "git_diff", args)
		if res.IsError || !strings.Contains(text(res), "+v-diff") {
			t.Errorf("approved git_diff: isError=%v code=%q text=%q", res.IsError, code(res), text(res))
		}
		if d := aprShow(t, g, idDiff); d.State != "consumed" {
			t.Errorf("git_diff's request is %s after its run, want consumed", d.State)
		}
	})

	t.Run("denied", func(t *testing.T) {
		t.Parallel()
		g := approvalGateway(t, tools)
		alice := g.connect(g.createKey("alice", "developer"), "")
		aprWrite(t, g.workspace, "denied\n")
		id := aprHeld(t, call(t, alice, "git_commit", aprCommit("m6")))
		if out := aprCLI(t, g, "approvals", "deny", id, "--comment", "not now"); !strings.HasPrefix(out, id+": denied") {
			t.Errorf("approvals deny printed %q", out)
		}
		// The denial stands for every retry; it cannot be turned into a grant.
		for range 2 {
			res := call(t, alice, "git_commit", aprCommit("m6"))
			if got := aprRefused(t, res, "APPROVAL_DENIED", "denied"); got != id {
				t.Errorf("denied retry names %s, want %s", got, id)
			}
		}
		if _, err := g.cli("approvals", "approve", id); err == nil || !strings.Contains(err.Error(), "not pending") {
			t.Errorf("approving a denied request: %v, want a conflict", err)
		}
		if _, count := aprHead(t, g); count != "1" {
			t.Errorf("a denied call committed (%s commits)", count)
		}
		var types []string
		for _, e := range aprEventsOf(t, g, id) {
			types = append(types, e.Type)
		}
		if diff := cmp.Diff([]string{"approval.request", "approval.deny"}, types); diff != "" {
			t.Errorf("approval events (-want +got):\n%s", diff)
		}
	})

	t.Run("self-approval", func(t *testing.T) {
		t.Parallel()
		g := approvalGateway(t, tools)
		// lead may call git_commit and approve it (admin area approvals):
		// the only thing between carol and her own request is the rule.
		aprCLI(t, g, "role", "create", "lead")
		aprCLI(t, g, "role", "grant", "lead", "--action", "call", "--pattern", "git_commit")
		aprCLI(t, g, "role", "grant", "lead", "--action", "approve", "--pattern", "git_commit")
		aprCLI(t, g, "role", "grant", "lead", "--action", "admin", "--pattern", "approvals")
		carolKey, daveKey := g.createKey("carol", "lead"), g.createKey("dave", "lead")
		carol := g.connect(carolKey, "")
		aprWrite(t, g.workspace, "carol\n")
		id := aprHeld(t, call(t, carol, "git_commit", aprCommit("m7")))

		status, body := aprDo(t, g, carolKey, "POST", "/admin/v1/approvals/"+id+"/approve", `{"comment":"lgtm"}`)
		if status != http.StatusForbidden || !strings.Contains(body, "your own request") {
			t.Errorf("self-approval: %d %s, want 403", status, body)
		}
		if a := aprShow(t, g, id); a.State != "pending" {
			t.Fatalf("after self-approval the request is %s, want pending", a.State)
		}
		denied := aprAudit(t, g, url.Values{"type": {"admin.denied"}, "user": {"carol"}})
		if len(denied) != 1 || !strings.Contains(denied[0].Detail, id) || !strings.Contains(denied[0].Detail, "your own request") {
			t.Errorf("admin.denied for carol = %+v", denied)
		}
		if res := call(t, carol, "git_commit", aprCommit("m7")); code(res) != "APPROVAL_REQUIRED" {
			t.Errorf("after self-approval: code %q text %q, want still held", code(res), text(res))
		}
		// Another lead may decide it; then carol's retry runs.
		if status, body := aprDo(t, g, daveKey, "POST", "/admin/v1/approvals/"+id+"/approve", ""); status != http.StatusOK {
			t.Fatalf("dave approves carol's request: %d %s", status, body)
		}
		aprRan(t, call(t, carol, "git_commit", aprCommit("m7")))
	})

	t.Run("no approver", func(t *testing.T) {
		t.Parallel()
		g := approvalGateway(t, tools)
		alice := g.connect(g.createKey("alice", "developer"), "")
		aprWrite(t, g.workspace, "guest\n")
		id := aprHeld(t, call(t, alice, "git_commit", aprCommit("m8")))
		for _, who := range []struct{ user, role string }{{"gus", "guest"}, {"bob", "developer"}} {
			key := g.createKey(who.user, who.role)
			for _, path := range []string{"/admin/v1/approvals/" + id + "/approve", "/admin/v1/approvals/" + id + "/deny"} {
				if status, body := aprDo(t, g, key, "POST", path, `{"comment":"sure"}`); status != http.StatusForbidden {
					t.Errorf("%s POST %s: %d %s, want 403", who.role, path, status, body)
				}
			}
			if status, _ := aprDo(t, g, key, "GET", "/admin/v1/approvals", ""); status != http.StatusForbidden {
				t.Errorf("%s lists approvals: %d, want 403", who.role, status)
			}
			if evs := aprAudit(t, g, url.Values{"type": {"admin.denied"}, "user": {who.user}}); len(evs) != 3 {
				t.Errorf("admin.denied events for %s = %d, want 3: %+v", who.user, len(evs), evs)
			}
		}
		if a := aprShow(t, g, id); a.State != "pending" || a.DecidedBy != "" {
			t.Errorf("after refused decisions the request is %+v, want pending", a)
		}
		if res := call(t, alice, "git_commit", aprCommit("m8")); code(res) != "APPROVAL_REQUIRED" {
			t.Errorf("after refused decisions: code %q, want still held", code(res))
		}
	})
}

// TestApprovalSurvivesRestart: a pending request outlives the process; it
// is approved after the restart and the identical retry runs.
func TestApprovalSurvivesRestart(t *testing.T) {
	t.Parallel()
	g := approvalGateway(t)
	aliceKey := g.createKey("alice", "developer")
	aprWrite(t, g.workspace, "restart\n")
	id := aprHeld(t, call(t, g.connect(aliceKey, ""), "git_commit", aprCommit("m9")))

	g.stop()
	g.start(aprWait)
	pending := aprList(t, g, "pending")
	if len(pending) != 1 || pending[0].ID != id || pending[0].Principal != "alice" {
		t.Fatalf("pending after restart = %+v, want %s", pending, id)
	}
	aprCLI(t, g, "approvals", "approve", id, "--comment", "after restart")
	commit := aprRan(t, call(t, g.connect(aliceKey, ""), "git_commit", aprCommit("m9")))
	if head, count := aprHead(t, g); head != commit || count != "2" {
		t.Errorf("HEAD %s with %s commits, want %s as the second", head, count, commit)
	}
	if a := aprShow(t, g, id); a.State != "consumed" {
		t.Errorf("request after the run is %s, want consumed", a.State)
	}
}
