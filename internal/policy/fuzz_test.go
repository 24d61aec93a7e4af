package policy

import (
	"errors"
	"testing"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// FuzzGrants loads arbitrary grant sets and decides arbitrary names:
// never a panic; an invalid set leaves the old rules in force; and deny
// always wins — whatever patterns a role holds, a name matched by one of
// its deny grants is never allowed.
func FuzzGrants(f *testing.F) {
	f.Add("call", "read_file", "allow", "call", "read_*", "deny", "read_file")
	f.Add("call", "*", "allow", "call", "delete_file", "deny", "delete_file")
	f.Add("admin", "[", "allow", "call", "x", "", "x")
	f.Add("call", "a\\", "deny", "approve", "*", "allow", "a")
	f.Fuzz(func(t *testing.T, a1, p1, e1, a2, p2, e2, name string) {
		base := []store.Grant{{Role: "r", Action: "call", Pattern: "base", Effect: EffectAllow}}
		e, err := New(base)
		if err != nil {
			t.Fatal(err)
		}
		grants := []store.Grant{
			{Role: "r", Action: a1, Pattern: p1, Effect: e1},
			{Role: "r", Action: a2, Pattern: p2, Effect: e2},
		}
		p := &principal.Principal{Name: "u", Roles: []string{"r"}}
		if err := e.Replace(grants); err != nil {
			if !errors.Is(err, ErrInvalidGrant) {
				t.Fatalf("Replace error %v does not wrap ErrInvalidGrant", err)
			}
			if !e.Decide(p, ActionCall, "base").Allow {
				t.Fatal("a rejected grant set replaced the rules in force")
			}
			return
		}
		for _, act := range []Action{ActionCall, ActionAdmin, ActionApprove} {
			d := e.Decide(p, act, name)
			for _, g := range grants {
				if g.Effect == EffectDeny && Action(g.Action) == act && match(g.Pattern, name) && d.Allow {
					t.Fatalf("deny grant %+v matched %q but the decision allowed it: %+v", g, name, d)
				}
			}
		}
	})
}
