package flow_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/flow"
)

// ruleErrors returns the messages of the *flow.RuleError in err's tree, in
// order.
func ruleErrors(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if re, ok := err.(*flow.RuleError); ok {
			out = append(out, re.Error())
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

func deny(after, then string) flow.Rule {
	return flow.Rule{After: flow.Match{Label: after}, Then: flow.Then{Label: then, Action: flow.ActionDeny}}
}

func named(name string, r flow.Rule) flow.Rule {
	r.Name = name
	return r
}

func withAction(a flow.Action, r flow.Rule) flow.Rule {
	r.Then.Action = a
	return r
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", flow.MaxLabelLen)
	tests := []struct {
		name  string
		rules []flow.Rule
		want  []string // RuleError messages; nil: valid
	}{
		{name: "none", rules: nil},
		{name: "deny", rules: []flow.Rule{deny("private-data", "external-sink")}},
		{name: "require approval", rules: []flow.Rule{withAction(flow.ActionRequireApproval, deny("private-data", "external-sink"))}},
		{name: "after equals then", rules: []flow.Rule{deny("one-shot", "one-shot")}},
		{name: "label charset and max length", rules: []flow.Rule{deny("a.b_c-9", long)}},
		{name: "names unique", rules: []flow.Rule{named("no-exfil", deny("a", "b")), deny("a", "b")}},
		{name: "unknown action", rules: []flow.Rule{deny("a", "b"), withAction("allow", deny("a", "b"))},
			want: []string{`flows[1].then.action: unknown action "allow" (want deny or require_approval)`}},
		{name: "action case matters", rules: []flow.Rule{withAction("Deny", deny("a", "b"))},
			want: []string{`flows[0].then.action: unknown action "Deny" (want deny or require_approval)`}},
		{name: "missing action", rules: []flow.Rule{withAction("", deny("a", "b"))},
			want: []string{`flows[0].then.action: missing action (want deny or require_approval)`}},
		{name: "empty after label", rules: []flow.Rule{deny("", "b")},
			want: []string{`flows[0].after.label: missing label`}},
		{name: "empty then label", rules: []flow.Rule{deny("a", "")},
			want: []string{`flows[0].then.label: missing label`}},
		{name: "uppercase label", rules: []flow.Rule{deny("Private", "b")},
			want: []string{`flows[0].after.label: invalid label "Private" (want 1-128 of a-z 0-9 . _ -)`}},
		{name: "space in label", rules: []flow.Rule{deny("a", "external sink")},
			want: []string{`flows[0].then.label: invalid label "external sink" (want 1-128 of a-z 0-9 . _ -)`}},
		{name: "label too long", rules: []flow.Rule{deny(long+"a", "b")},
			want: []string{`flows[0].after.label: invalid label "` + long + `a" (want 1-128 of a-z 0-9 . _ -)`}},
		{name: "invalid name", rules: []flow.Rule{named("No Exfil", deny("a", "b"))},
			want: []string{`flows[0].name: invalid name "No Exfil" (want 1-128 of a-z 0-9 . _ -)`}},
		{name: "duplicate name", rules: []flow.Rule{named("x", deny("a", "b")), named("x", deny("a", "c"))},
			want: []string{`flows[1].name: duplicate rule name "x" (also flows[0])`}},
		{name: "explicit name collides with default", rules: []flow.Rule{named("flow-1", deny("a", "b")), deny("a", "c")},
			want: []string{`flows[1].name: duplicate rule name "flow-1" (also flows[0])`}},
		{name: "every problem reported in order", rules: []flow.Rule{
			deny("a", "b"),
			{Name: "BAD", Then: flow.Then{Label: "B"}},
			withAction("block", deny("a", "")),
		}, want: []string{
			`flows[1].name: invalid name "BAD" (want 1-128 of a-z 0-9 . _ -)`,
			`flows[1].after.label: missing label`,
			`flows[1].then.label: invalid label "B" (want 1-128 of a-z 0-9 . _ -)`,
			`flows[1].then.action: missing action (want deny or require_approval)`,
			`flows[2].then.label: missing label`,
			`flows[2].then.action: unknown action "block" (want deny or require_approval)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := flow.Validate(tt.rules)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, flow.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if diff := cmp.Diff(tt.want, ruleErrors(err)); diff != "" {
				t.Errorf("rule errors (-want +got):\n%s", diff)
			}
			var re *flow.RuleError
			if !errors.As(err, &re) || !strings.HasPrefix(re.Error(), "flows[") {
				t.Errorf("errors.As(*RuleError) = %v", re)
			}
			if !strings.HasPrefix(err.Error(), "flow: invalid configuration: flows[") {
				t.Errorf("message %q lacks category and path", err)
			}
		})
	}
}

func TestRuleErrorFields(t *testing.T) {
	err := flow.Validate([]flow.Rule{deny("a", "b"), withAction("allow", deny("a", "b"))})
	var re *flow.RuleError
	if !errors.As(err, &re) {
		t.Fatalf("Validate = %v, want a *RuleError", err)
	}
	want := &flow.RuleError{Index: 1, Field: "then.action", Msg: `unknown action "allow" (want deny or require_approval)`}
	if diff := cmp.Diff(want, re); diff != "" {
		t.Errorf("RuleError (-want +got):\n%s", diff)
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		session, principal, want string
	}{
		{"abc", "alice", "s:abc"},
		{"abc", "", "s:abc"},
		{"", "alice", "p:alice"},
		{"", "s:x", "p:s:x"},
		{"", "", "p:"},
	}
	for _, tt := range tests {
		if got := flow.Key(tt.session, tt.principal); got != tt.want {
			t.Errorf("Key(%q, %q) = %q, want %q", tt.session, tt.principal, got, tt.want)
		}
	}

	// No session id may collide with a principal name, whatever the two
	// strings contain.
	names := []string{"", "x", "s:x", "p:x", "s:", "p:", ":", "s", "p", "s:s:x", "p:s:x"}
	for _, s := range names {
		if s == "" {
			continue
		}
		for _, p := range names {
			if flow.Key(s, "") == flow.Key("", p) {
				t.Errorf("Key(session %q) == Key(principal %q) = %q", s, p, flow.Key(s, ""))
			}
		}
	}
	// The session decides when there is one: one principal's sessions are
	// apart, one session is one key.
	if flow.Key("a", "alice") == flow.Key("b", "alice") {
		t.Error("two sessions of one principal share a key")
	}
	if flow.Key("a", "alice") != flow.Key("a", "bob") {
		t.Error("one session has two keys")
	}
}

func TestDecisionAllowed(t *testing.T) {
	if !(flow.Decision{}).Allowed() {
		t.Error("zero Decision not allowed")
	}
	for _, a := range []flow.Action{flow.ActionDeny, flow.ActionRequireApproval} {
		if (flow.Decision{Action: a}).Allowed() {
			t.Errorf("Decision{%s}.Allowed() = true", a)
		}
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		session, principal string
		want               []string
	}{
		{"abc", "alice", []string{"s:abc", "p:alice"}},
		{"", "alice", []string{"p:alice"}},
		{"abc", "", []string{"s:abc", "p:"}},
		{"", "", []string{"p:"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, flow.Keys(tt.session, tt.principal)); diff != "" {
			t.Errorf("Keys(%q, %q) (-want +got):\n%s", tt.session, tt.principal, diff)
		}
	}
	// Every session of a principal, and its stateless calls, share the
	// principal's key.
	a, b, stateless := flow.Keys("a", "alice"), flow.Keys("b", "alice"), flow.Keys("", "alice")
	if a[1] != b[1] || a[1] != stateless[0] {
		t.Errorf("principal keys differ: %q, %q, %q", a[1], b[1], stateless[0])
	}
}
