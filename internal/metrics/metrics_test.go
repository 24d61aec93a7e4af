package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/store"
)

// families are every metric family the package registers (once the
// Watch methods ran), without the Go and process collectors'.
var families = []string{
	"portcullis_tool_calls_total",
	"portcullis_policy_decision_seconds",
	"portcullis_audit_queue_depth",
	"portcullis_audit_commit_seconds",
	"portcullis_audit_records_total",
	"portcullis_sandbox_runs_total",
	"portcullis_sandbox_run_seconds",
	"portcullis_sandbox_violations_total",
	"portcullis_approvals_pending",
	"portcullis_approval_requests_total",
	"portcullis_rate_limit_hits_total",
	"portcullis_auth_failures_total",
	"portcullis_auth_lockouts_total",
	"portcullis_quarantines_total",
	"portcullis_quarantines_active",
	"portcullis_plugin_up",
	"portcullis_egress_connections_total",
}

// fakeEmitter acknowledges every event, or fails with err.
type fakeEmitter struct {
	mu     sync.Mutex
	err    error
	events []*audit.Event
}

func (f *fakeEmitter) Emit(_ context.Context, e *audit.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
	return f.err
}

func emit(t *testing.T, x Emitter, events ...*audit.Event) {
	t.Helper()
	for _, e := range events {
		if err := x.Emit(t.Context(), e); err != nil {
			t.Fatalf("Emit(%s): %v", e.Type, err)
		}
	}
}

// series returns name's series as "label=value,..." → value, from a
// Gather (which, unlike WithLabelValues, creates nothing).
func series(t *testing.T, g prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			out[strings.Join(labels, ",")] = sampleValue(m)
		}
	}
	return out
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

// nonZero drops the zero series (created up front for fixed label values).
func nonZero(s map[string]float64) map[string]float64 {
	for k, v := range s {
		if v == 0 {
			delete(s, k)
		}
	}
	return s
}

func TestEmitterCounts(t *testing.T) {
	dev := []string{"developer", "reviewer"}
	tests := []struct {
		name   string
		events []*audit.Event
		metric string
		want   map[string]float64 // non-zero series
	}{
		{"call ok", []*audit.Event{
			{Type: audit.ToolCallStart, Tool: "read_file", Roles: dev, Status: audit.StatusStarted},
			{Type: audit.ToolCallEnd, Tool: "read_file", Roles: dev, Status: audit.StatusOK},
		}, "portcullis_tool_calls_total", map[string]float64{"role=developer,status=ok,tool=read_file": 1}},
		{"call error, no role", []*audit.Event{
			{Type: audit.ToolCallEnd, Tool: "execute_python", Status: audit.StatusError, Reason: reason.SandboxViolation},
		}, "portcullis_tool_calls_total", map[string]float64{"role=none,status=error,tool=execute_python": 1}},
		{"refusals of a registered tool", []*audit.Event{
			{Type: audit.ToolCallEnd, Tool: "write_file", Roles: dev, Status: audit.StatusOK},
			{Type: audit.PolicyDeny, Tool: "write_file", Roles: []string{"guest"}, Status: audit.StatusRefused},
			{Type: audit.FlowDeny, Tool: "write_file", Roles: dev, Status: audit.StatusRefused},
			{Type: audit.ToolCallRefused, Tool: "write_file", Roles: dev, Status: audit.StatusRefused},
			{Type: audit.QuarantineRefused, Tool: "write_file", Roles: dev, Status: audit.StatusRefused},
		}, "portcullis_tool_calls_total", map[string]float64{
			"role=developer,status=ok,tool=write_file":      1,
			"role=guest,status=refused,tool=write_file":     1,
			"role=developer,status=refused,tool=write_file": 3,
		}},
		{"plugin tool known by its server", []*audit.Event{
			{Type: audit.PolicyDeny, Tool: "notes__read", Server: "notes", Roles: dev, Status: audit.StatusRefused},
		}, "portcullis_tool_calls_total", map[string]float64{"role=developer,status=refused,tool=notes__read": 1}},
		{"made-up and malformed tool names", []*audit.Event{
			{Type: audit.PolicyDeny, Tool: "no_such_tool", Roles: dev},
			{Type: audit.ToolCallRefused, Tool: "no_such_tool_2", Roles: dev, Reason: reason.UnknownTool},
			{Type: audit.ToolCallRefused, Tool: strings.Repeat("a", 129), Roles: dev},
			{Type: audit.ToolCallRefused, Tool: "../../etc/passwd", Roles: dev},
			{Type: audit.ToolCallRefused, Tool: "", Roles: dev},
		}, "portcullis_tool_calls_total", map[string]float64{
			"role=developer,status=refused,tool=other":   2,
			"role=developer,status=refused,tool=invalid": 3,
		}},
		{"quarantine refusal at the HTTP edge is no call", []*audit.Event{
			{Type: audit.QuarantineRefused, Roles: dev, Detail: "POST /mcp"},
		}, "portcullis_tool_calls_total", map[string]float64{}},
		{"limits", []*audit.Event{
			{Type: audit.LimitRate, Tool: "read_file", Roles: dev},
			{Type: audit.LimitRate, Tool: "read_file", Roles: dev},
			{Type: audit.LimitConcurrency, Tool: "read_file", Roles: dev},
			{Type: audit.LimitQuota, Tool: "read_file", Roles: dev},
		}, "portcullis_rate_limit_hits_total", map[string]float64{"kind=rate": 2, "kind=concurrency": 1, "kind=quota": 1}},
		{"limits are refused calls", []*audit.Event{
			{Type: audit.LimitQuota, Tool: "read_file", Roles: dev},
		}, "portcullis_tool_calls_total", map[string]float64{"role=developer,status=refused,tool=other": 1}},
		{"auth failures", []*audit.Event{
			{Type: audit.AuthFailure, Detail: "POST /mcp: unknown_key"},
			{Type: audit.AuthFailure, Detail: "POST /mcp: revoked_key key k_01"},
			{Type: audit.AuthFailure, Detail: "GET /a: b: token_expired sub 42"},
			{Type: audit.AuthFailure, Detail: "GET /mcp: missing_credential"},
			{Type: audit.AuthFailure, Detail: "GET /x: made_up_cause"},
			{Type: audit.AuthFailure, Detail: "GET /mcp"},
		}, "portcullis_auth_failures_total", map[string]float64{
			"cause=unknown_key": 1, "cause=revoked_key": 1, "cause=token_expired": 1,
			"cause=missing_credential": 1, "cause=other": 2,
		}},
		{"lockouts", []*audit.Event{
			{Type: audit.AuthLockout, Detail: "src:192.0.2.1 locked out for 15m0s after 10 failures"},
			{Type: audit.AuthLockout, Principal: "alice", Detail: "user:alice locked out for 15m0s after 5 failures"},
			{Type: audit.AuthLockout, Detail: "something else"},
		}, "portcullis_auth_lockouts_total", map[string]float64{"kind=source": 1, "kind=user": 1, "kind=other": 1}},
		{"quarantines", []*audit.Event{
			{Type: audit.QuarantineCreate, Detail: "q_1 principal alice: 3 violations"},
			{Type: audit.QuarantineCreate, Detail: "q_2 session s_9: 3 violations", Session: "s_9"},
			{Type: audit.QuarantineCreate, Detail: "q_3 plugin notes: egress", Server: "notes"},
			{Type: audit.QuarantineCreate, Detail: "garbled"},
			{Type: audit.QuarantineRelease, Detail: "q_1 principal alice: ok"},
		}, "portcullis_quarantines_total", map[string]float64{"kind=principal": 1, "kind=session": 1, "kind=plugin": 1, "kind=other": 1}},
		{"approvals", []*audit.Event{
			{Type: audit.ApprovalRequest}, {Type: audit.ApprovalRequest}, {Type: audit.ApprovalGrant},
			{Type: audit.ApprovalDeny}, {Type: audit.ApprovalExpire}, {Type: audit.ApprovalConsume},
		}, "portcullis_approval_requests_total", map[string]float64{
			"outcome=request": 2, "outcome=grant": 1, "outcome=deny": 1, "outcome=expire": 1, "outcome=consume": 1,
		}},
		{"egress", []*audit.Event{
			{Type: audit.EgressConnect, Server: "notes"}, {Type: audit.EgressConnect, Server: "notes"},
			{Type: audit.EgressRefused, Server: "notes"}, {Type: audit.EgressRefused, Server: "bad name"},
		}, "portcullis_egress_connections_total", map[string]float64{
			"outcome=allowed,server=notes": 2, "outcome=refused,server=notes": 1, "outcome=refused,server=other": 1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			next := &fakeEmitter{}
			emit(t, Emitter{Next: next, M: m}, tt.events...)
			if len(next.events) != len(tt.events) {
				t.Errorf("Next saw %d events, want %d", len(next.events), len(tt.events))
			}
			if diff := cmp.Diff(tt.want, nonZero(series(t, m.Gatherer(), tt.metric))); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.metric, diff)
			}
		})
	}
}

func TestEmitterFailedEmitNotCounted(t *testing.T) {
	m := New()
	boom := fmt.Errorf("%w: disk full", audit.ErrUnavailable)
	x := Emitter{Next: &fakeEmitter{err: boom}, M: m}
	for _, e := range []*audit.Event{
		{Type: audit.ToolCallEnd, Tool: "read_file", Status: audit.StatusOK},
		{Type: audit.LimitRate, Tool: "read_file"},
		{Type: audit.AuthFailure, Detail: "GET /mcp: unknown_key"},
		{Type: audit.QuarantineCreate, Detail: "q_1 principal alice: why"},
	} {
		if err := x.Emit(t.Context(), e); !errors.Is(err, boom) {
			t.Errorf("Emit(%s) = %v, want Next's error", e.Type, err)
		}
	}
	if n := testutil.CollectAndCount(m.toolCalls); n != 0 {
		t.Errorf("tool_calls_total has %d series after failed emits, want 0", n)
	}
	for _, name := range []string{"portcullis_rate_limit_hits_total", "portcullis_auth_failures_total",
		"portcullis_quarantines_total"} {
		if got := nonZero(series(t, m.Gatherer(), name)); len(got) != 0 {
			t.Errorf("%s counted after a failed emit: %v", name, got)
		}
	}
}

func TestEmitterNilMetricsPassesThrough(t *testing.T) {
	next := &fakeEmitter{}
	emit(t, Emitter{Next: next}, &audit.Event{Type: audit.ToolCallEnd, Tool: "read_file"})
	if len(next.events) != 1 {
		t.Errorf("Next saw %d events, want 1", len(next.events))
	}
	var m *Metrics
	m.ObserveAuditCommit(1, time.Millisecond) // no panic
}

// TestToolLabelBounded: callers choose tool names; only registered ones
// become label values, and even those are capped.
func TestToolLabelBounded(t *testing.T) {
	m := New()
	x := Emitter{Next: &fakeEmitter{}, M: m}
	for i := range 5000 { // made-up names, as a hostile caller would send
		emit(t, x, &audit.Event{Type: audit.PolicyDeny, Tool: fmt.Sprintf("probe_%d", i), Roles: []string{"guest"}})
	}
	if got := series(t, m.Gatherer(), "portcullis_tool_calls_total"); !cmp.Equal(got,
		map[string]float64{"role=guest,status=refused,tool=other": 5000}) {
		t.Errorf("made-up names: %v", got)
	}
	for i := range maxTools + 100 { // more registered tools than the cap
		emit(t, x, &audit.Event{Type: audit.ToolCallEnd, Tool: fmt.Sprintf("t%d", i), Status: audit.StatusOK})
	}
	if n := testutil.CollectAndCount(m.toolCalls); n > maxTools+2 {
		t.Errorf("tool_calls_total has %d series, want at most %d", n, maxTools+2)
	}
	for i := range 200 { // roles, from an issuer's claims, are capped too
		emit(t, x, &audit.Event{Type: audit.ToolCallEnd, Tool: "t0", Status: audit.StatusOK,
			Roles: []string{fmt.Sprintf("r%d", i)}})
	}
	roles := map[string]bool{}
	for k := range series(t, m.Gatherer(), "portcullis_tool_calls_total") {
		roles[strings.SplitN(k, ",", 2)[0]] = true
	}
	if len(roles) > maxRoles+2 {
		t.Errorf("%d role values, want at most %d", len(roles), maxRoles+2)
	}
}

// TestNoPrincipalInLabels: whatever an event carries about its principal
// (name, session, address, arguments, detail, even a tool named like it),
// no label value contains it.
func TestNoPrincipalInLabels(t *testing.T) {
	const who = "mallory"
	m := scrapeReady(t, func(e *audit.Event) {
		e.Principal = who
		e.Session = "sess-" + who
		e.RemoteAddr = who + ".example:443"
		e.Args = []byte(`{"path":"` + who + `"}`)
		e.Detail += " " + who
	})
	x := Emitter{Next: &fakeEmitter{}, M: m}
	emit(t, x,
		&audit.Event{Type: audit.PolicyDeny, Principal: who, Tool: who, Roles: []string{"guest"}},
		&audit.Event{Type: audit.AuthLockout, Principal: who, Detail: "user:" + who + " locked out"},
		&audit.Event{Type: audit.QuarantineCreate, Principal: who, Detail: "q_1 principal " + who + ": threshold"},
		&audit.Event{Type: audit.AuthFailure, Principal: who, Detail: "GET /" + who + ": " + who},
	)
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				checked++
				if strings.Contains(lp.GetValue(), who) {
					t.Errorf("%s{%s=%q} carries the principal", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no labels checked")
	}
}

// fakeAuthorizer answers fixed decisions and counts its calls.
type fakeAuthorizer struct {
	decide, evaluate int
}

func (f *fakeAuthorizer) DecideRequest(r *policy.Request) policy.Decision {
	f.decide++
	return policy.Decision{Allow: r.Resource == "read_file", Rule: "fake"}
}

func (f *fakeAuthorizer) Evaluate(*policy.Request) policy.Decision {
	f.evaluate++
	return policy.Decision{Rule: "cond"}
}
func (f *fakeAuthorizer) Conditional(_ policy.Action, r string) bool { return r == "write_file" }
func (f *fakeAuthorizer) Mode() policy.Mode                          { return policy.ModeReport }

func TestAuthorizerTimesDecisions(t *testing.T) {
	m := New()
	next := &fakeAuthorizer{}
	a := Authorizer{Next: next, M: m}
	attrs := &policy.ToolAttrs{Sensitivity: "LOW"}
	if d := a.DecideRequest(&policy.Request{Action: policy.ActionCall, Resource: "read_file", Tool: attrs}); !d.Allow || d.Rule != "fake" {
		t.Errorf("DecideRequest = %+v, want Next's decision", d)
	}
	a.DecideRequest(&policy.Request{Action: policy.ActionCall, Resource: "delete_file", Tool: attrs})
	a.DecideRequest(&policy.Request{Action: policy.ActionCall, Resource: "made_up"}) // not registered: no attrs
	if d := a.Evaluate(&policy.Request{Resource: "write_file"}); d.Allow || d.Rule != "cond" {
		t.Errorf("Evaluate = %+v, want Next's decision", d)
	}
	if !a.Conditional(policy.ActionCall, "write_file") || a.Conditional(policy.ActionCall, "read_file") || a.Mode() != policy.ModeReport {
		t.Error("Conditional or Mode not passed through")
	}
	if next.decide != 3 || next.evaluate != 1 {
		t.Errorf("Next saw %d/%d decisions, want 3/1", next.decide, next.evaluate)
	}
	if diff := cmp.Diff(map[string]float64{"stage=name": 3, "stage=conditions": 1},
		series(t, m.Gatherer(), "portcullis_policy_decision_seconds")); diff != "" {
		t.Errorf("decision histogram sample counts (-want +got):\n%s", diff)
	}
	// A name decided with tool attributes is a registered tool.
	emit(t, Emitter{Next: &fakeEmitter{}, M: m},
		&audit.Event{Type: audit.PolicyDeny, Tool: "delete_file", Roles: []string{"guest"}},
		&audit.Event{Type: audit.PolicyDeny, Tool: "made_up", Roles: []string{"guest"}})
	if diff := cmp.Diff(map[string]float64{"role=guest,status=refused,tool=delete_file": 1, "role=guest,status=refused,tool=other": 1},
		series(t, m.Gatherer(), "portcullis_tool_calls_total")); diff != "" {
		t.Errorf("tool labels (-want +got):\n%s", diff)
	}
	// Without metrics the decorator is transparent.
	if d := (Authorizer{Next: next}).DecideRequest(&policy.Request{Resource: "read_file"}); !d.Allow {
		t.Error("nil metrics: decision changed")
	}
}

// fakeRuntime returns a fixed result.
type fakeRuntime struct {
	res *sandbox.Result
	err error
}

func (f fakeRuntime) Name() string { return "fake" }
func (f fakeRuntime) Run(context.Context, *sandbox.Spec) (*sandbox.Result, error) {
	return f.res, f.err
}

func TestRuntimeDecorator(t *testing.T) {
	viol := func(codes ...sandbox.ViolationCode) []sandbox.Violation {
		var out []sandbox.Violation
		for _, c := range codes {
			out = append(out, sandbox.Violation{Code: c, Detail: "mallory's secret detail"})
		}
		return out
	}
	tests := []struct {
		name       string
		level      sandbox.Level
		rt         fakeRuntime
		runs       map[string]float64
		violations map[string]float64
		timed      map[string]float64
	}{
		{"ok", sandbox.LevelStrict, fakeRuntime{res: &sandbox.Result{}},
			map[string]float64{"level=strict,outcome=ok": 1}, map[string]float64{}, map[string]float64{"level=strict": 1}},
		{"default level is maximum", "", fakeRuntime{res: &sandbox.Result{ExitCode: 2}},
			map[string]float64{"level=maximum,outcome=nonzero_exit": 1}, map[string]float64{}, map[string]float64{"level=maximum": 1}},
		{"truncated output is no violation", sandbox.LevelStandard,
			fakeRuntime{res: &sandbox.Result{Violations: viol(sandbox.ViolationOutputTrunc)}},
			map[string]float64{"level=standard,outcome=ok": 1}, map[string]float64{"code=OUTPUT_TRUNCATED": 1},
			map[string]float64{"level=standard": 1}},
		{"violations", sandbox.LevelMinimal,
			fakeRuntime{res: &sandbox.Result{ExitCode: -1, Violations: viol(sandbox.ViolationOOM, sandbox.ViolationSeccompKill, "NEW_CODE")}},
			map[string]float64{"level=minimal,outcome=violation": 1},
			map[string]float64{"code=OOM_KILL": 1, "code=SECCOMP_KILL": 1, "code=other": 1}, map[string]float64{"level=minimal": 1}},
		{"setup error", "bogus", fakeRuntime{err: sandbox.ErrSetup},
			map[string]float64{"level=other,outcome=setup_error": 1}, map[string]float64{}, map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			r := Runtime{Next: tt.rt, M: m}
			if r.Name() != "fake" {
				t.Errorf("Name() = %q", r.Name())
			}
			res, err := r.Run(t.Context(), &sandbox.Spec{Level: tt.level})
			if res != tt.rt.res || !errors.Is(err, tt.rt.err) || (err == nil) != (tt.rt.err == nil) {
				t.Errorf("Run = %v, %v; want Next's result and error", res, err)
			}
			g := m.Gatherer()
			for _, c := range []struct {
				metric string
				want   map[string]float64
			}{
				{"portcullis_sandbox_runs_total", tt.runs},
				{"portcullis_sandbox_violations_total", tt.violations},
				{"portcullis_sandbox_run_seconds", tt.timed},
			} {
				if diff := cmp.Diff(c.want, nonZero(series(t, g, c.metric))); diff != "" {
					t.Errorf("%s (-want +got):\n%s", c.metric, diff)
				}
			}
		})
	}
}

func TestObserveAuditCommit(t *testing.T) {
	m := New()
	m.ObserveAuditCommit(3, 2*time.Millisecond)
	m.ObserveAuditCommit(1, 3*time.Millisecond)
	if got := testutil.ToFloat64(m.auditRecords); got != 4 {
		t.Errorf("audit_records_total = %v, want 4", got)
	}
	if n := testutil.CollectAndCount(m.auditCommit); n != 1 {
		t.Errorf("audit_commit_seconds has %d series, want 1", n)
	}
	if got := series(t, m.Gatherer(), "portcullis_audit_commit_seconds"); got[""] != 2 {
		t.Errorf("audit_commit_seconds samples = %v, want 2", got)
	}
}

func TestWatchAuditQueue(t *testing.T) {
	m := New()
	depth := 7
	if err := m.WatchAuditQueue(func() int { return depth }); err != nil {
		t.Fatal(err)
	}
	if got := series(t, m.Gatherer(), "portcullis_audit_queue_depth")[""]; got != 7 {
		t.Errorf("audit_queue_depth = %v, want 7", got)
	}
	if m.WatchAuditQueue(func() int { return 0 }) == nil || m.WatchAuditQueue(nil) == nil {
		t.Error("WatchAuditQueue accepted a second source or nil")
	}
}

// fakeStore counts its reads; err fails them.
type fakeStore struct {
	mu                  sync.Mutex
	err                 error
	pending, active     int
	approvals, quarants int
}

func (f *fakeStore) ListApprovals(_ context.Context, state string, limit int) ([]store.Approval, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.approvals++
	if state != store.ApprovalPending || limit <= 0 {
		return nil, fmt.Errorf("unexpected query %q %d", state, limit)
	}
	return make([]store.Approval, f.pending), f.err
}

func (f *fakeStore) ListQuarantines(_ context.Context, all bool) ([]store.Quarantine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.quarants++
	if all {
		return nil, errors.New("want active only")
	}
	return make([]store.Quarantine, f.active), f.err
}

func (f *fakeStore) set(pending, active int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending, f.active, f.err = pending, active, err
}

func (f *fakeStore) reads() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.approvals, f.quarants
}

func TestWatchStore(t *testing.T) {
	m := New()
	st := &fakeStore{pending: 2, active: 1}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := m.WatchStore(st, log, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	read := func() (float64, float64) {
		g := m.Gatherer()
		return series(t, g, "portcullis_approvals_pending")[""], series(t, g, "portcullis_quarantines_active")[""]
	}
	steps := []struct {
		name                 string
		advance              time.Duration
		pending, active      int
		err                  error
		wantPending, wantAct float64
		wantReads            int
		wantFailLogs         int
	}{
		{"first scrape reads", 0, 2, 1, nil, 2, 1, 1, 0},
		{"cached within 5s", 4 * time.Second, 9, 9, nil, 2, 1, 1, 0},
		{"read again after 5s", 2 * time.Second, 9, 3, nil, 9, 3, 2, 0},
		{"error keeps the last value", 5 * time.Second, 0, 0, errors.New("db locked"), 9, 3, 3, 2},
		{"a failing store is not hammered", time.Second, 0, 0, errors.New("db locked"), 9, 3, 3, 2},
		{"still failing: logged once", 5 * time.Second, 0, 0, errors.New("db locked"), 9, 3, 4, 2},
		{"recovers", 5 * time.Second, 4, 0, nil, 4, 0, 5, 2},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		st.set(s.pending, s.active, s.err)
		p, a := read()
		ar, qr := st.reads()
		if p != s.wantPending || a != s.wantAct || ar != s.wantReads || qr != s.wantReads {
			t.Errorf("%s: pending %v active %v after %d/%d reads; want %v %v after %d",
				s.name, p, a, ar, qr, s.wantPending, s.wantAct, s.wantReads)
		}
		if n := strings.Count(logs.String(), "failed"); n != s.wantFailLogs {
			t.Errorf("%s: %d failure log lines, want %d:\n%s", s.name, n, s.wantFailLogs, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "works again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
	if m.WatchStore(st, log, nil) == nil || New().WatchStore(nil, log, nil) == nil || New().WatchStore(st, nil, nil) == nil {
		t.Error("WatchStore accepted a second call or a nil dependency")
	}
}

func TestWatchPlugins(t *testing.T) {
	m := New()
	states := []PluginState{{Name: "notes", Up: true}, {Name: "git-hub", Up: false},
		{Name: "notes", Up: false}, {Name: "bad name", Up: true}, {Name: strings.Repeat("x", 65), Up: true}}
	if err := m.WatchPlugins(func() []PluginState { return states }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]float64{"server=notes": 1, "server=git-hub": 0},
		series(t, m.Gatherer(), "portcullis_plugin_up")); diff != "" {
		t.Errorf("plugin_up (-want +got):\n%s", diff)
	}
	if m.WatchPlugins(func() []PluginState { return nil }) == nil || New().WatchPlugins(nil) == nil {
		t.Error("WatchPlugins accepted a second source or nil")
	}
}

// scrapeReady returns metrics with every family populated: one event of
// each counted type (each passed through edit first), a decision, a run,
// a commit and every watched gauge.
func scrapeReady(t *testing.T, edit func(*audit.Event)) *Metrics {
	t.Helper()
	m := New()
	x := Emitter{Next: &fakeEmitter{}, M: m}
	for _, e := range []*audit.Event{
		{Type: audit.ToolCallEnd, Tool: "read_file", Roles: []string{"developer"}, Status: audit.StatusOK},
		{Type: audit.LimitRate, Tool: "read_file"},
		{Type: audit.AuthFailure, Detail: "GET /mcp: unknown_key"},
		{Type: audit.AuthLockout, Detail: "src:192.0.2.1 locked out"},
		{Type: audit.QuarantineCreate, Detail: "q_1 session s_1: why"},
		{Type: audit.ApprovalRequest, Tool: "git_commit"},
		{Type: audit.EgressConnect, Server: "notes"},
	} {
		if edit != nil {
			edit(e)
		}
		emit(t, x, e)
	}
	Authorizer{Next: &fakeAuthorizer{}, M: m}.DecideRequest(&policy.Request{Resource: "read_file"})
	if _, err := (Runtime{Next: fakeRuntime{res: &sandbox.Result{Violations: []sandbox.Violation{{Code: sandbox.ViolationOOM}}}}, M: m}).Run(t.Context(), &sandbox.Spec{}); err != nil {
		t.Fatal(err)
	}
	m.ObserveAuditCommit(1, time.Millisecond)
	if err := errors.Join(
		m.WatchAuditQueue(func() int { return 0 }),
		m.WatchStore(&fakeStore{pending: 1}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil),
		m.WatchPlugins(func() []PluginState { return []PluginState{{Name: "notes", Up: true}} }),
	); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHandlerServesEveryFamily scrapes the handler over loopback HTTP.
func TestHandlerServesEveryFamily(t *testing.T) {
	m := scrapeReady(t, nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	text := string(body)
	for _, f := range families {
		if !strings.Contains(text, "# TYPE "+f+" ") {
			t.Errorf("exposition lacks %s", f)
		}
	}
	types := 0
	for line := range strings.SplitSeq(text, "\n") {
		name, ok := strings.CutPrefix(line, "# TYPE ")
		if !ok {
			continue
		}
		types++
		name, _, _ = strings.Cut(name, " ")
		if !strings.HasPrefix(name, "portcullis_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s lacks the portcullis_ prefix", name)
		}
		if strings.HasPrefix(name, "portcullis_") && !contains(families, name) {
			t.Errorf("metric %s is not in the documented list (families)", name)
		}
	}
	if !strings.Contains(text, "go_goroutines") {
		t.Error("exposition lacks the Go collector")
	}
	if types < len(families) {
		t.Errorf("only %d families", types)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestNotDefaultRegistry: the gateway's metrics stay out of the
// process-global registry (two gateways in one test process must not
// collide).
func TestNotDefaultRegistry(t *testing.T) {
	New()
	New()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "portcullis_") {
			t.Errorf("%s registered globally", mf.GetName())
		}
	}
}
