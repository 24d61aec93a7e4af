package gateway_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/flow"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

func withFlows(t *testing.T, rules ...flow.Rule) envOpt {
	t.Helper()
	tr, err := flow.New(flow.Config{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	return func(_ *gateway.Config, d *gateway.Deps) { d.Flows = tr }
}

func labelled(t *testing.T, name string, labels []string, fail bool) tool.Tool {
	t.Helper()
	fn := echo
	if fail {
		fn = func(context.Context, json.RawMessage) (*tool.Result, error) {
			return &tool.Result{Text: "upstream error", IsError: true}, nil
		}
	}
	return &tool.Func{Def: tool.Definition{Name: name, InputSchema: mustSchema(t, echoSchema), Sensitivity: tool.Low,
		Labels: labels}, Fn: fn}
}

// TestFlowRuleDeniesSecondCall: once a session has read private data, a
// call to an external sink in the same session is refused (flow.deny),
// another principal's session is unaffected, and a failed read taints
// nothing. TestFlowTaintFollowsPrincipal covers the principal's other
// sessions.
func TestFlowRuleDeniesSecondCall(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, allow("*"), rec, withFlows(t, flow.Rule{Name: "no-exfil",
		After: flow.Match{Label: "private-data"}, Then: flow.Then{Label: "external-sink", Action: flow.ActionDeny}}))
	e.register(t, labelled(t, "read_inbox", []string{"private-data"}, false),
		labelled(t, "read_broken", []string{"private-data"}, true),
		labelled(t, "send_mail", []string{"external-sink"}, false))

	in := func(session, name string) *tool.Result {
		r := req(name, `{"path":"x"}`)
		r.Session = session
		return call(t, e, r)
	}
	if res := in("s1", "send_mail"); res.IsError {
		t.Fatalf("sink before any private read refused: %+v", res)
	}
	if res := in("s1", "read_broken"); !res.IsError {
		t.Fatal("failing tool succeeded")
	}
	if res := in("s1", "send_mail"); res.IsError {
		t.Fatalf("a failed private read tainted the session: %+v", res)
	}
	if res := in("s1", "read_inbox"); res.IsError {
		t.Fatalf("private read refused: %+v", res)
	}
	res := in("s1", "send_mail")
	if !res.IsError || res.Code != reason.PermissionDenied || strings.Contains(res.Text, "no-exfil") {
		t.Fatalf("sink after private read: %+v; want generic PERMISSION_DENIED", res)
	}
	other := req("send_mail", `{"path":"x"}`)
	other.Session, other.Principal = "s2", &principal.Principal{UserID: 2, Name: "bob", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
	if res := call(t, e, other); res.IsError {
		t.Fatalf("another principal's session was tainted: %+v", res)
	}
	var denied []audit.Event
	for _, ev := range rec.all() {
		if ev.Type == audit.FlowDeny {
			denied = append(denied, ev)
		}
	}
	if len(denied) != 1 || denied[0].Tool != "send_mail" || !strings.Contains(denied[0].Detail, "no-exfil") ||
		denied[0].Session != "s1" {
		t.Fatalf("flow.deny events = %+v; want one for send_mail in s1 naming the rule", denied)
	}
}

// TestFlowRuleRequiresApproval: the require_approval action sends the
// call to the approval gate instead of refusing it.
func TestFlowRuleRequiresApproval(t *testing.T) {
	fa := &fakeApprovals{required: func(_ *principal.Principal, _ *tool.Definition) bool { return false }}
	e := newEnv(t, allow("*"), nil, withApprovals(fa), withFlows(t, flow.Rule{
		After: flow.Match{Label: "private-data"}, Then: flow.Then{Label: "external-sink", Action: flow.ActionRequireApproval}}))
	e.register(t, labelled(t, "read_inbox", []string{"private-data"}, false),
		labelled(t, "send_mail", []string{"external-sink"}, false))
	if res := call(t, e, req("send_mail", `{"path":"x"}`)); res.IsError || len(fa.held()) != 0 {
		t.Fatalf("untainted sink call held or refused: %+v", res)
	}
	call(t, e, req("read_inbox", `{"path":"x"}`))
	res := call(t, e, req("send_mail", `{"path":"x"}`))
	if !res.IsError || res.Code != reason.ApprovalRequired || len(fa.held()) != 1 || fa.held()[0].Tool != "send_mail" {
		t.Fatalf("tainted sink call: %+v, holds %d; want held for approval", res, len(fa.held()))
	}
}

// TestSetServerTools: a server's tools are replaced as a set, withdrawn
// with an empty list, never allowed to shadow another server's or a
// built-in tool, and must carry the server's prefix.
func TestSetServerTools(t *testing.T) {
	e := newEnv(t, allow("*"), nil)
	e.register(t, newProbe(t, "builtin", echoSchema, nil))
	mk := func(server, name string) tool.Tool {
		return &tool.Func{Def: tool.Definition{Name: name, InputSchema: mustSchema(t, echoSchema), Sensitivity: tool.Medium,
			Server: server}, Fn: echo}
	}
	names := func() []string {
		var out []string
		for _, d := range e.gw.ListTools(alice) {
			out = append(out, d.Name)
		}
		return out
	}
	if err := e.gw.SetServerTools("a", []tool.Tool{mk("a", "a__one"), mk("a", "a__two")}); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.SetServerTools("a", []tool.Tool{mk("a", "a__two")}); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"a__two", "builtin"}) {
		t.Fatalf("after replace: %v", got)
	}
	if res := call(t, e, req("a__one", `{"path":"x"}`)); res.Code != reason.UnknownTool {
		t.Fatalf("withdrawn tool still callable: %+v", res)
	}
	for _, bad := range []tool.Tool{mk("b", "builtin"), mk("b", "a__two"), mk("a", "b__x"), mk("b", "bx")} {
		if err := e.gw.SetServerTools("b", []tool.Tool{bad}); err == nil {
			t.Errorf("SetServerTools(b, %s) accepted", bad.Definition().Name)
		}
	}
	if got := names(); !slices.Equal(got, []string{"a__two", "builtin"}) {
		t.Fatalf("a rejected tool changed the set: %v", got)
	}
	if err := e.gw.SetServerTools("a", nil); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"builtin"}) {
		t.Fatalf("after withdraw: %v", got)
	}
	if err := e.gw.SetServerTools("", nil); err == nil {
		t.Error("empty server name accepted")
	}
}
