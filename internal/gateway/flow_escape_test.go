package gateway_test

import (
	"testing"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/flow"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// TestFlowTaintFollowsPrincipal is the session-escape attack on flow
// rules: a principal that read private data in session A must not reach
// the sink from a new session B, nor over the stateless transport (no
// session), whether the rule denies or holds for approval; an unrelated
// principal, in a session or statelessly, is unaffected. Taint gained
// statelessly follows the principal into its sessions too.
func TestFlowTaintFollowsPrincipal(t *testing.T) {
	bob := &principal.Principal{UserID: 2, Name: "bob", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
	mallory := &principal.Principal{UserID: 3, Name: "mallory", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
	tests := []struct {
		name     string
		action   flow.Action
		wantCode reason.Code
	}{
		{"deny", flow.ActionDeny, reason.PermissionDenied},
		{"require approval", flow.ActionRequireApproval, reason.ApprovalRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			fa := &fakeApprovals{required: func(*principal.Principal, *tool.Definition) bool { return false }}
			e := newEnv(t, allow("*"), rec, withApprovals(fa), withFlows(t, flow.Rule{Name: "no-exfil",
				After: flow.Match{Label: "private-data"}, Then: flow.Then{Label: "external-sink", Action: tt.action}}))
			e.register(t, labelled(t, "read_inbox", []string{"private-data"}, false),
				labelled(t, "send_mail", []string{"external-sink"}, false))
			as := func(p *principal.Principal, session, name string) *tool.Result {
				r := req(name, `{"path":"x"}`)
				r.Principal, r.Session = p, session
				return call(t, e, r)
			}
			refused := func(res *tool.Result) bool { return res.IsError && res.Code == tt.wantCode }

			if res := as(alice, "a", "read_inbox"); res.IsError {
				t.Fatalf("private read refused: %+v", res)
			}
			for _, session := range []string{"a", "b", ""} {
				if res := as(alice, session, "send_mail"); !refused(res) {
					t.Errorf("alice, session %q: sink call %+v; want %s", session, res, tt.wantCode)
				}
			}
			// An unrelated principal, in its own session and over the
			// stateless transport. (A session id is bound to its user by
			// the MCP server, so bob cannot call in session "a".)
			for _, session := range []string{"c", ""} {
				if res := as(bob, session, "send_mail"); res.IsError {
					t.Errorf("bob, session %q: sink call refused: %+v", session, res)
				}
			}
			// Taint gained statelessly reaches the principal's sessions.
			if res := as(mallory, "", "read_inbox"); res.IsError {
				t.Fatalf("stateless private read refused: %+v", res)
			}
			if res := as(mallory, "m", "send_mail"); !refused(res) {
				t.Errorf("mallory, new session after a stateless read: sink call %+v; want %s", res, tt.wantCode)
			}

			var denied int
			for _, ev := range rec.all() {
				if ev.Type == audit.FlowDeny {
					denied++
				}
			}
			want := 0
			if tt.action == flow.ActionDeny {
				want = 4
			} else if got := len(fa.held()); got != 4 {
				t.Errorf("held for approval: %d calls, want 4", got)
			}
			if denied != want {
				t.Errorf("flow.deny events: %d, want %d", denied, want)
			}
		})
	}
}
