package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/approval"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// fakeApprovals is a gateway.Approvals: Required holds CRITICAL tools
// unless required is set; Hold records each call and answers with hold
// (default: pending apr_test).
type fakeApprovals struct {
	required func(p *principal.Principal, def *tool.Definition) bool
	hold     func(h gateway.Hold) (gateway.HoldResult, error)

	mu    sync.Mutex
	holds []gateway.Hold
}

var _ gateway.Approvals = (*fakeApprovals)(nil)

var aprExpires = time.Date(2026, 1, 2, 3, 19, 5, 0, time.UTC)

func (f *fakeApprovals) Required(p *principal.Principal, def *tool.Definition) bool {
	if f.required != nil {
		return f.required(p, def)
	}
	return def.Sensitivity >= tool.Critical
}

func (f *fakeApprovals) Hold(_ context.Context, h gateway.Hold) (gateway.HoldResult, error) {
	f.mu.Lock()
	f.holds = append(f.holds, h)
	f.mu.Unlock()
	if f.hold != nil {
		return f.hold(h)
	}
	return gateway.HoldResult{ID: "apr_test", State: "pending", ExpiresAt: aprExpires}, nil
}

func (f *fakeApprovals) held() []gateway.Hold {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gateway.Hold(nil), f.holds...)
}

func withApprovals(a gateway.Approvals) envOpt {
	return func(_ *gateway.Config, d *gateway.Deps) { d.Approvals = a }
}

// criticalProbe is a CRITICAL tool with echoSchema.
func criticalProbe(t *testing.T, name string) *probe {
	t.Helper()
	p := newProbe(t, name, echoSchema, nil)
	p.Def.Sensitivity = tool.Critical
	return p
}

// TestApprovalRefusals: a held call that may not run is refused before its
// audit start and never runs; the client learns the request id, state and
// expiry, the audit log a tool.call.refused naming the request.
func TestApprovalRefusals(t *testing.T) {
	for _, tc := range []struct {
		state    string
		code     reason.Code
		msgParts []string
	}{
		{"pending", reason.ApprovalRequired, []string{"apr_test", "pending", "retry the identical call"}},
		{"expired", reason.ApprovalRequired, []string{"apr_test", "expired", "request a new approval"}},
		{"consumed", reason.ApprovalRequired, []string{"apr_test", "consumed"}},
		{"denied", reason.ApprovalDenied, []string{"apr_test", "denied"}},
	} {
		t.Run(tc.state, func(t *testing.T) {
			fa := &fakeApprovals{hold: func(gateway.Hold) (gateway.HoldResult, error) {
				return gateway.HoldResult{ID: "apr_test", State: tc.state, ExpiresAt: aprExpires}, nil
			}}
			e := newEnv(t, allow("*"), nil, withApprovals(fa))
			p := criticalProbe(t, "git_commit")
			e.register(t, p)

			res := call(t, e, req("git_commit", `{"path":"a","password":"hunter2-secret"}`))
			if !res.IsError || res.Code != tc.code {
				t.Fatalf("result %+v; want %s", res, tc.code)
			}
			for _, part := range tc.msgParts {
				if !strings.Contains(res.Text, part) {
					t.Errorf("message %q lacks %q", res.Text, part)
				}
			}
			want := map[string]any{"approval_id": "apr_test", "approval_state": tc.state, "expires_at": "2026-01-02T03:19:05Z"}
			if diff := cmp.Diff(want, res.Structured); diff != "" {
				t.Errorf("structured content (-want +got):\n%s", diff)
			}
			if n := p.ran.Load(); n != 0 {
				t.Fatalf("the held tool ran %d times", n)
			}
			if diff := cmp.Diff([]audit.Type{audit.ToolCallRefused}, e.rec.types()); diff != "" {
				t.Fatalf("audit types (-want +got):\n%s", diff)
			}
			ev := e.rec.all()[0]
			if ev.Reason != tc.code || ev.Decision != audit.DecisionDeny || ev.Status != audit.StatusRefused ||
				!strings.Contains(ev.Detail, "apr_test") || ev.Principal != "alice" || ev.Tool != "git_commit" {
				t.Errorf("refusal event %+v", ev)
			}
			if strings.Contains(string(ev.Args), "hunter2-secret") {
				t.Errorf("refusal event carries the raw password: %s", ev.Args)
			}
		})
	}
}

// TestApprovalHoldSeesTheCall: Hold gets the principal, the validated
// arguments (to bind the approval to) and only a redacted copy for the
// approvers.
func TestApprovalHoldSeesTheCall(t *testing.T) {
	fa := &fakeApprovals{}
	e := newEnv(t, allow("*"), nil, withApprovals(fa))
	e.register(t, criticalProbe(t, "git_commit"))
	call(t, e, req("git_commit", `{"path":"a", "password":"hunter2-secret", "n":3}`))
	hs := fa.held()
	if len(hs) != 1 {
		t.Fatalf("%d holds, want 1", len(hs))
	}
	h := hs[0]
	if h.Principal != alice || h.Tool != "git_commit" || h.RequestID != "req_test" || h.Session != "sess_1" {
		t.Errorf("hold %+v", h)
	}
	var n any = json.Number("3") // numbers as written: the binding is exact
	if diff := cmp.Diff(map[string]any{"path": "a", "password": "hunter2-secret", "n": n}, h.Args); diff != "" {
		t.Errorf("hold args (-want +got):\n%s", diff)
	}
	if strings.Contains(string(h.Redacted), "hunter2-secret") || !strings.Contains(string(h.Redacted), "hmac-sha256:") ||
		!json.Valid(h.Redacted) {
		t.Errorf("redacted args for approvers: %s", h.Redacted)
	}
}

// TestApprovalRunsOnce: when the gate consumed an approval the tool runs
// once and tool.call.start names the approval.
func TestApprovalRunsOnce(t *testing.T) {
	fa := &fakeApprovals{hold: func(gateway.Hold) (gateway.HoldResult, error) {
		return gateway.HoldResult{Run: true, ID: "apr_ok", State: "consumed", ExpiresAt: aprExpires}, nil
	}}
	e := newEnv(t, allow("*"), nil, withApprovals(fa))
	p := criticalProbe(t, "git_commit")
	e.register(t, p)
	res := call(t, e, req("git_commit", `{"path":"a"}`))
	if res.IsError || res.Text != "echo:a" {
		t.Fatalf("result %+v; want the tool's", res)
	}
	if n := p.ran.Load(); n != 1 {
		t.Errorf("tool ran %d times, want 1", n)
	}
	if diff := cmp.Diff([]audit.Type{audit.ToolCallStart, audit.ToolCallEnd}, e.rec.types()); diff != "" {
		t.Fatalf("audit types (-want +got):\n%s", diff)
	}
	if start := e.rec.all()[0]; start.Detail != "approved by apr_ok" {
		t.Errorf("tool.call.start detail %q; want it to name apr_ok", start.Detail)
	}
	if len(fa.held()) != 1 {
		t.Errorf("%d holds, want 1", len(fa.held()))
	}
}

// TestApprovalGateErrorRefuses: a gate that fails refuses the call (fail
// closed) with a generic message.
func TestApprovalGateErrorRefuses(t *testing.T) {
	fa := &fakeApprovals{hold: func(gateway.Hold) (gateway.HoldResult, error) {
		return gateway.HoldResult{}, errors.New("sqlite: database is locked at /var/lib/portcullis/p.db")
	}}
	e := newEnv(t, allow("*"), nil, withApprovals(fa))
	p := criticalProbe(t, "git_commit")
	e.register(t, p)
	res := call(t, e, req("git_commit", `{"path":"a"}`))
	if diff := cmp.Diff(refused(reason.Unavailable), res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if p.ran.Load() != 0 {
		t.Error("the tool ran although the approval gate failed")
	}
	refusals := eventsOf(e.rec, audit.ToolCallRefused)
	if len(refusals) != 1 || !strings.Contains(refusals[0].Detail, "database is locked") {
		t.Errorf("refusals %+v; want one with the cause in Detail", refusals)
	}
}

// TestApprovalNotRequired: calls that neither configuration nor a policy
// hold never reach the gate.
func TestApprovalNotRequired(t *testing.T) {
	fa := &fakeApprovals{}
	e := newEnv(t, allow("*"), nil, withApprovals(fa))
	low := newProbe(t, "read_file", echoSchema, nil)
	e.register(t, low)
	if res := call(t, e, req("read_file", `{"path":"a"}`)); res.IsError {
		t.Fatalf("result %+v", res)
	}
	if low.ran.Load() != 1 || len(fa.held()) != 0 {
		t.Errorf("ran %d, holds %d; want 1 and 0", low.ran.Load(), len(fa.held()))
	}
	// A refusal earlier in the pipeline never reaches the gate either.
	e.register(t, criticalProbe(t, "git_commit"))
	for _, args := range []string{`{"path":1}`, `{"nope":"x"}`, `{"path":"a","path":"b"}`} {
		if res := call(t, e, req("git_commit", args)); res.Code != reason.InvalidArguments {
			t.Errorf("git_commit %s = %+v; want INVALID_ARGUMENTS", args, res)
		}
	}
	denied := req("git_commit", `{"path":"a"}`)
	denied.Principal = nil
	call(t, e, denied)
	if n := len(fa.held()); n != 0 {
		t.Errorf("%d holds for calls refused before the gate", n)
	}
}

const needsApproval = `
@id("approve-writes") forbid (principal, action == Action::"call", resource == Tool::"write_file")
unless { context.approved };
@id("no-env") forbid (principal, action == Action::"call", resource == Tool::"write_file")
when { context.args has path && context.args.path like "*.env" };
@id("no-delete") forbid (principal, action == Action::"call", resource == Tool::"delete_file");
`

// TestPolicyNeedsApproval: `forbid ... unless { context.approved }` holds
// the call for approval; a plain forbid — alone or next to it — stays a
// PERMISSION_DENIED denial that never reaches the gate.
func TestPolicyNeedsApproval(t *testing.T) {
	fa := &fakeApprovals{required: func(*principal.Principal, *tool.Definition) bool { return false }}
	e, _, probes := cedarEnv(t, needsApproval, withApprovals(fa))

	res := call(t, e, req("write_file", `{"path":"notes.txt"}`))
	if res.Code != reason.ApprovalRequired || res.Structured["approval_id"] != "apr_test" {
		t.Fatalf("write_file = %+v; want APPROVAL_REQUIRED naming apr_test", res)
	}
	hs := fa.held()
	if len(hs) != 1 || hs[0].Tool != "write_file" || hs[0].Args["path"] != "notes.txt" {
		t.Fatalf("holds %+v; want one for write_file notes.txt", hs)
	}
	if n := len(eventsOf(e.rec, audit.PolicyDeny)); n != 0 {
		t.Errorf("%d policy.deny events for a call held for approval", n)
	}

	for _, tc := range []struct{ tool, args, rule string }{
		{"write_file", `{"path":"prod.env"}`, "no-env"}, // approval would not help
		{"delete_file", `{"path":"a"}`, "no-delete"},
	} {
		before := len(eventsOf(e.rec, audit.PolicyDeny))
		res := call(t, e, req(tc.tool, tc.args))
		if diff := cmp.Diff(refused(reason.PermissionDenied), res); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", tc.tool, tc.args, diff)
		}
		denies := eventsOf(e.rec, audit.PolicyDeny)
		if len(denies) != before+1 || !strings.Contains(denies[len(denies)-1].Detail, tc.rule) {
			t.Errorf("%s: policy.deny events %+v; want a new one naming %s", tc.tool, denies, tc.rule)
		}
	}
	if n := len(fa.held()); n != 1 {
		t.Errorf("%d holds; plain forbids must never reach the gate", n)
	}
	for name, p := range probes {
		if p.ran.Load() != 0 {
			t.Errorf("%s ran", name)
		}
	}

	// Once the gate consumed an approval, the same call runs.
	fa.hold = func(gateway.Hold) (gateway.HoldResult, error) {
		return gateway.HoldResult{Run: true, ID: "apr_w", State: "consumed"}, nil
	}
	if res := call(t, e, req("write_file", `{"path":"notes.txt"}`)); res.IsError {
		t.Fatalf("approved write_file = %+v", res)
	}
	if probes["write_file"].ran.Load() != 1 {
		t.Error("approved write_file did not run once")
	}
	starts := eventsOf(e.rec, audit.ToolCallStart)
	if len(starts) != 1 || starts[0].Detail != "approved by apr_w" {
		t.Errorf("tool.call.start %+v; want one naming apr_w", starts)
	}
}

// TestPolicyNeedsApprovalWithoutService: without an approval service a
// call a policy holds for approval is denied, never run.
func TestPolicyNeedsApprovalWithoutService(t *testing.T) {
	e, _, probes := cedarEnv(t, needsApproval)
	res := call(t, e, req("write_file", `{"path":"notes.txt"}`))
	if diff := cmp.Diff(refused(reason.PermissionDenied), res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if probes["write_file"].ran.Load() != 0 {
		t.Error("write_file ran without approval")
	}
	denies := eventsOf(e.rec, audit.PolicyDeny)
	if len(denies) != 1 || !strings.Contains(denies[0].Detail, "needs approval") || !strings.Contains(denies[0].Detail, "approve-writes") {
		t.Errorf("policy.deny events %+v; want one naming approve-writes", denies)
	}
	if strings.Contains(res.Text, "approve-writes") {
		t.Errorf("the rule reached the client: %q", res.Text)
	}
}

// digestGate is a gateway.Approvals that binds approvals the way the app
// does: by approval.Digest of Hold.Args; approved digests run once.
type digestGate struct {
	mu       sync.Mutex
	approved map[string]bool
	last     string
}

func (d *digestGate) Required(*principal.Principal, *tool.Definition) bool { return true }

func (d *digestGate) Hold(_ context.Context, h gateway.Hold) (gateway.HoldResult, error) {
	dig, err := approval.Digest(testKey, h.Args)
	if err != nil {
		return gateway.HoldResult{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last = dig
	if d.approved[dig] {
		delete(d.approved, dig)
		return gateway.HoldResult{Run: true, ID: "apr_" + dig[:8], State: "consumed"}, nil
	}
	return gateway.HoldResult{ID: "apr_" + dig[:8], State: "pending"}, nil
}

// TestApprovalBindsExactArguments: an approval covers exactly the
// arguments the approver saw. The tool receives the raw arguments, so two
// calls whose raw arguments differ must not share an approval — here two
// integers above 2^53, which the pipeline's float64 decoding merges while
// the tool (json.Unmarshal into int64, or any exact parser) tells apart.
func TestApprovalBindsExactArguments(t *testing.T) {
	dg := &digestGate{approved: map[string]bool{}}
	e := newEnv(t, allow("*"), nil, withApprovals(dg))
	var got []int64
	var mu sync.Mutex
	p := newProbe(t, "transfer", `{"type":"object","properties":{"path":{"type":"string"},"n":{"type":"integer"}},"required":["path"]}`,
		func(_ context.Context, args json.RawMessage) (*tool.Result, error) {
			var a struct {
				N int64 `json:"n"`
			}
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, err
			}
			mu.Lock()
			got = append(got, a.N)
			mu.Unlock()
			return &tool.Result{Text: "ok"}, nil
		})
	e.register(t, p)

	for _, tc := range []struct{ approved, attack string }{
		{`{"path":"a","n":9007199254740992}`, `{"path":"a","n":9007199254740993}`},
		{`{"path":"a","n":1}`, `{"path":"a","n":2}`}, // control: small numbers are told apart
	} {
		if res := call(t, e, req("transfer", tc.approved)); res.Code != reason.ApprovalRequired {
			t.Fatalf("first call %s = %+v; want APPROVAL_REQUIRED", tc.approved, res)
		}
		dg.mu.Lock()
		dg.approved[dg.last] = true // an approver approves exactly what was shown
		dg.mu.Unlock()
		res := call(t, e, req("transfer", tc.attack))
		if !res.IsError || res.Code != reason.ApprovalRequired {
			t.Errorf("call %s ran on the approval of %s (tool saw n=%v)", tc.attack, tc.approved, got)
		}
		dg.mu.Lock()
		clear(dg.approved)
		dg.mu.Unlock()
	}
	if p.ran.Load() != 0 {
		t.Errorf("the tool ran %d times with arguments nobody approved: n=%v", p.ran.Load(), got)
	}
}
