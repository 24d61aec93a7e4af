package gateway_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
)

// cedarEnv is a gateway over the real engine: developers may call
// everything, guests read_file; plus the given Cedar policies. Tools
// write_file, read_file and delete_file are probes.
func cedarEnv(t *testing.T, cedarSrc string, opts ...envOpt) (*env, *policy.Engine, map[string]*probe) {
	t.Helper()
	eng, err := policy.New([]store.Grant{
		{Role: "developer", Action: "call", Pattern: "*", Effect: "allow"},
		{Role: "guest", Action: "call", Pattern: "read_file", Effect: "allow"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.LoadCedar(map[string][]byte{"test.cedar": []byte(cedarSrc)}); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, eng, nil, opts...)
	probes := map[string]*probe{}
	for _, n := range []string{"write_file", "read_file", "delete_file"} {
		probes[n] = newProbe(t, n, echoSchema, nil)
		e.register(t, probes[n])
	}
	return e, eng, probes
}

const noEnv = `
@id("no-env") forbid (principal, action == Action::"call", resource == Tool::"write_file")
when { context.args has path && context.args.path like "*.env" };
@id("no-delete") forbid (principal, action == Action::"call", resource == Tool::"delete_file");
`

func eventsOf(rec *recorder, typ audit.Type) []audit.Event {
	var out []audit.Event
	for _, e := range rec.all() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestPolicyConditionsOnArguments: a Cedar condition on the validated
// arguments refuses the call before its audit start and before it runs;
// the policy id is in the audit detail only.
func TestPolicyConditionsOnArguments(t *testing.T) {
	e, _, probes := cedarEnv(t, noEnv)
	for _, path := range []string{"prod.env", "a/b/.env", "x.y.env"} {
		res := call(t, e, req("write_file", `{"path":"`+path+`"}`))
		if !res.IsError || res.Code != reason.PermissionDenied || strings.Contains(res.Text, "no-env") {
			t.Errorf("write_file %s = %+v; want a generic PERMISSION_DENIED", path, res)
		}
	}
	if n := probes["write_file"].ran.Load(); n != 0 {
		t.Fatalf("write_file ran %d times", n)
	}
	denies := eventsOf(e.rec, audit.PolicyDeny)
	if len(denies) != 3 || !strings.Contains(denies[0].Detail, "no-env") {
		t.Errorf("policy.deny events = %+v; want 3 naming no-env", denies)
	}
	if len(eventsOf(e.rec, audit.ToolCallStart)) != 0 {
		t.Error("a denied call was audited as started")
	}
	// Duplicate keys cannot smuggle a second path past the condition.
	if res := call(t, e, req("write_file", `{"path":"ok.txt","path":"x.env"}`)); res.Code != reason.InvalidArguments {
		t.Errorf("duplicate path keys = %+v; want INVALID_ARGUMENTS", res)
	}
	if res := call(t, e, req("write_file", `{"path":"notes.txt"}`)); res.IsError {
		t.Errorf("write_file notes.txt = %+v; want success", res)
	}
	// An unconditional forbid decides at name level: delete_file is
	// hidden from tools/list and refused before validation.
	if res := call(t, e, req("delete_file", `{"bad":1}`)); res.Code != reason.PermissionDenied {
		t.Errorf("delete_file = %+v; want PERMISSION_DENIED (before argument validation)", res)
	}
	names := toolNames(e.gw.ListTools(alice))
	if slices.Contains(names, "delete_file") || !slices.Contains(names, "write_file") {
		t.Errorf("tools/list = %v; want write_file listed and delete_file hidden", names)
	}
}

func toolNames(defs []tool.Definition) []string {
	var out []string
	for _, d := range defs {
		out = append(out, d.Name)
	}
	return out
}

// TestPolicyReportMode: in report mode a denial by a Cedar policy is
// recorded as policy.would_deny and the call proceeds; role grants stay
// enforced; and without its audit record the call does not proceed.
func TestPolicyReportMode(t *testing.T) {
	e, eng, probes := cedarEnv(t, noEnv)
	if err := eng.SetMode(policy.ModeReport); err != nil {
		t.Fatal(err)
	}
	if res := call(t, e, req("write_file", `{"path":"prod.env"}`)); res.IsError {
		t.Fatalf("report mode: write_file prod.env = %+v; want it to run", res)
	}
	if res := call(t, e, req("delete_file", `{"path":"a"}`)); res.IsError {
		t.Fatalf("report mode: delete_file = %+v; want it to run", res)
	}
	if probes["write_file"].ran.Load() != 1 || probes["delete_file"].ran.Load() != 1 {
		t.Fatal("report mode did not run the calls")
	}
	would := eventsOf(e.rec, audit.PolicyWouldDeny)
	if len(would) != 2 || !strings.Contains(would[0].Detail, "no-env") || would[0].Reason != reason.PermissionDenied {
		t.Errorf("policy.would_deny = %+v; want 2, the first naming no-env", would)
	}
	types := e.rec.types()
	if i, j := slices.Index(types, audit.PolicyWouldDeny), slices.Index(types, audit.ToolCallStart); i < 0 || j < i {
		t.Errorf("event order %v: policy.would_deny must precede tool.call.start", types)
	}
	if !slices.Contains(toolNames(e.gw.ListTools(alice)), "delete_file") {
		t.Error("report mode: delete_file not listed although it would run")
	}
	// Role grants are not softened: a guest still may not write.
	guest := req("write_file", `{"path":"a.txt"}`)
	guest.Principal = &principal.Principal{Name: "g", Roles: []string{"guest"}, Method: principal.MethodAPIKey}
	if res := call(t, e, guest); res.Code != reason.PermissionDenied {
		t.Errorf("report mode: guest write_file = %+v; want PERMISSION_DENIED", res)
	}
	if probes["write_file"].ran.Load() != 1 {
		t.Error("report mode let a guest write")
	}
}

func TestPolicyReportModeAuditFailureRefuses(t *testing.T) {
	rec := &recorder{fail: failType(audit.PolicyWouldDeny)}
	eng, err := policy.New([]store.Grant{{Role: "developer", Action: "call", Pattern: "*", Effect: "allow"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.LoadCedar(map[string][]byte{"t.cedar": []byte(noEnv)}); err != nil {
		t.Fatal(err)
	}
	_ = eng.SetMode(policy.ModeReport)
	e := newEnv(t, eng, rec)
	p := newProbe(t, "write_file", echoSchema, nil)
	e.register(t, p)
	if res := call(t, e, req("write_file", `{"path":"prod.env"}`)); res.Code != reason.PermissionDenied {
		t.Errorf("would_deny unrecorded: %+v; want PERMISSION_DENIED", res)
	}
	if p.ran.Load() != 0 {
		t.Error("the call ran without its policy.would_deny record")
	}
}

// TestPolicyRecentDenials: context.denials counts the caller's denials in
// the last hour, per principal, and forgets them after it.
func TestPolicyRecentDenials(t *testing.T) {
	e, _, probes := cedarEnv(t, noEnv+`
@id("calm-down") forbid (principal, action == Action::"call", resource == Tool::"read_file")
when { context.denials >= 3 };
`)
	for range 3 {
		call(t, e, req("write_file", `{"path":"x.env"}`))
	}
	if res := call(t, e, req("read_file", `{"path":"a"}`)); res.Code != reason.PermissionDenied {
		t.Errorf("after 3 denials read_file = %+v; want PERMISSION_DENIED", res)
	}
	other := req("read_file", `{"path":"a"}`)
	other.Principal = &principal.Principal{Name: "bob", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
	if res := call(t, e, other); res.IsError {
		t.Errorf("another principal's read_file = %+v; denials must be counted per principal", res)
	}
	e.clock.mu.Lock()
	e.clock.t = e.clock.t.Add(time.Hour + time.Minute)
	e.clock.mu.Unlock()
	if res := call(t, e, req("read_file", `{"path":"a"}`)); res.IsError {
		t.Errorf("an hour later read_file = %+v; want success", res)
	}
	if probes["read_file"].ran.Load() != 2 {
		t.Errorf("read_file ran %d times, want 2", probes["read_file"].ran.Load())
	}
}

// TestPolicyEvaluationErrorDenies: a policy that fails to evaluate (an
// attribute the arguments lack) denies — errors never weaken a decision.
func TestPolicyEvaluationErrorDenies(t *testing.T) {
	e, _, probes := cedarEnv(t, `
@id("needs-owner") forbid (principal, action == Action::"call", resource == Tool::"write_file")
when { context.args.owner == "root" };
`)
	if res := call(t, e, req("write_file", `{"path":"a"}`)); res.Code != reason.PermissionDenied {
		t.Errorf("evaluation error: %+v; want PERMISSION_DENIED", res)
	}
	if probes["write_file"].ran.Load() != 0 {
		t.Error("the call ran although its policy failed to evaluate")
	}
}

// TestPolicyToolAttributes: policies see the tool's sensitivity and labels.
func TestPolicyToolAttributes(t *testing.T) {
	e, _, _ := cedarEnv(t, `
@id("no-high") forbid (principal, action == Action::"call", resource)
when { resource.sensitivity == "HIGH" || resource.labels.contains("danger") };
`)
	high := &probe{Func: tool.Func{Def: tool.Definition{Name: "nuke", InputSchema: mustSchema(t, echoSchema),
		Sensitivity: tool.High}, Fn: echo}}
	labelled := &probe{Func: tool.Func{Def: tool.Definition{Name: "poke", InputSchema: mustSchema(t, echoSchema),
		Sensitivity: tool.Low, Labels: []string{"danger"}}, Fn: echo}}
	e.register(t, high, labelled)
	for _, n := range []string{"nuke", "poke"} {
		if res := call(t, e, req(n, `{"path":"a"}`)); res.Code != reason.PermissionDenied {
			t.Errorf("%s = %+v; want PERMISSION_DENIED", n, res)
		}
	}
	if res := call(t, e, req("read_file", `{"path":"a"}`)); res.IsError {
		t.Errorf("read_file (LOW, unlabelled) = %+v; want success", res)
	}
	if high.ran.Load()+labelled.ran.Load() != 0 {
		t.Error("a forbidden tool ran")
	}
}

func TestExplain(t *testing.T) {
	e, _, probes := cedarEnv(t, noEnv)
	for _, tc := range []struct {
		tool, args string
		allow      bool
		rule       string
	}{
		{"write_file", `{"path":"x.env"}`, false, "no-env"},
		{"write_file", `{"path":"x.txt"}`, true, "role:developer"},
		{"delete_file", `{"path":"x"}`, false, "no-delete"},
		{"no_such_tool", `{}`, false, "not registered"},
		{"bad name!", `{}`, false, "malformed"},
	} {
		d, err := e.gw.Explain(alice, tc.tool, json.RawMessage(tc.args))
		if err != nil || d.Allow != tc.allow || !strings.Contains(d.Rule, tc.rule) {
			t.Errorf("Explain(%s, %s) = %+v, %v; want allow=%v rule ~ %q", tc.tool, tc.args, d, err, tc.allow, tc.rule)
		}
	}
	if _, err := e.gw.Explain(alice, "write_file", json.RawMessage(`{"path":1}`)); !errors.Is(err, gateway.ErrInvalidArguments) {
		t.Errorf("Explain with bad arguments: %v; want ErrInvalidArguments", err)
	}
	if n := len(e.rec.all()); n != 0 {
		t.Errorf("Explain recorded %d audit events; want none", n)
	}
	for n, p := range probes {
		if p.ran.Load() != 0 {
			t.Errorf("Explain ran %s", n)
		}
	}
}
