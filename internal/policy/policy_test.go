package policy_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
)

func allowG(role, action, pattern string) store.Grant {
	return store.Grant{Role: role, Action: action, Pattern: pattern, Effect: policy.EffectAllow}
}

func denyG(role, action, pattern string) store.Grant {
	return store.Grant{Role: role, Action: action, Pattern: pattern, Effect: policy.EffectDeny}
}

func who(roles ...string) *principal.Principal {
	return &principal.Principal{Name: "alice", Roles: roles}
}

func mustNew(t testing.TB, grants ...store.Grant) *policy.Engine {
	t.Helper()
	e, err := policy.New(grants)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func allowed(rule string) policy.Decision {
	return policy.Decision{Allow: true, Reason: reason.OK, Rule: rule}
}

func denied(rule string) policy.Decision {
	return policy.Decision{Reason: reason.PermissionDenied, Rule: rule}
}

func TestDecide(t *testing.T) {
	grants := []store.Grant{
		allowG("guest", "call", "read_file"),
		allowG("guest", "call", "list_directory"),
		allowG("developer", "call", "*"),
		denyG("developer", "call", "delete_file"),
		allowG("gitter", "call", "git_*"),
		denyG("gitter", "call", "git_commit"),
		allowG("plug", "call", "srv__*"),
		allowG("admin", "admin", "*"),
		allowG("admin", "approve", "git_commit"),
		denyG("locked", "call", "*"),
		allowG("mixed", "call", "write_file"),
		denyG("mixed", "call", "write_*"),
	}
	tests := []struct {
		name     string
		p        *principal.Principal
		action   policy.Action
		resource string
		want     policy.Decision
	}{
		{"exact allow", who("guest"), policy.ActionCall, "read_file", allowed("role:guest allow call read_file")},
		{"exact does not match other tool", who("guest"), policy.ActionCall, "write_file", denied("default deny")},
		{"exact does not match prefix", who("guest"), policy.ActionCall, "read_file_x", denied("default deny")},
		{"exact does not match suffix", who("guest"), policy.ActionCall, "xread_file", denied("default deny")},
		{"star allows", who("developer"), policy.ActionCall, "execute_python", allowed("role:developer allow call *")},
		{"deny beats star within role", who("developer"), policy.ActionCall, "delete_file", denied("role:developer deny call delete_file")},
		{"deny beats allow across roles", who("guest", "locked"), policy.ActionCall, "read_file", denied("role:locked deny call *")},
		{"deny beats allow, deny role first", who("locked", "guest"), policy.ActionCall, "read_file", denied("role:locked deny call *")},
		{"deny in one role beats star in another", who("developer", "mixed"), policy.ActionCall, "write_file", denied("role:mixed deny call write_*")},
		{"deny listed after allow within role", who("mixed"), policy.ActionCall, "write_file", denied("role:mixed deny call write_*")},
		{"prefix glob allows", who("gitter"), policy.ActionCall, "git_status", allowed("role:gitter allow call git_*")},
		{"prefix glob deny exact", who("gitter"), policy.ActionCall, "git_commit", denied("role:gitter deny call git_commit")},
		{"prefix glob needs prefix", who("gitter"), policy.ActionCall, "gitstatus", denied("default deny")},
		{"prefix glob case sensitive", who("gitter"), policy.ActionCall, "GIT_status", denied("default deny")},
		{"server glob allows plugin tool", who("plug"), policy.ActionCall, "srv__fetch", allowed("role:plug allow call srv__*")},
		{"server glob needs double underscore", who("plug"), policy.ActionCall, "srv_fetch", denied("default deny")},
		{"server glob other server", who("plug"), policy.ActionCall, "srv2__fetch", denied("default deny")},
		{"first allow reported", who("guest", "developer"), policy.ActionCall, "read_file", allowed("role:guest allow call read_file")},
		{"call grant is not admin grant", who("developer"), policy.ActionAdmin, "keys", denied("default deny")},
		{"admin grant is not call grant", who("admin"), policy.ActionCall, "read_file", denied("default deny")},
		{"approve grant is not call grant", who("admin"), policy.ActionCall, "git_commit", denied("default deny")},
		{"call grant is not approve grant", who("developer"), policy.ActionApprove, "read_file", denied("default deny")},
		{"approve exact", who("admin"), policy.ActionApprove, "git_commit", allowed("role:admin allow approve git_commit")},
		{"admin star", who("admin"), policy.ActionAdmin, "audit", allowed("role:admin allow admin *")},
		{"unknown action", who("developer"), policy.Action("CALL"), "read_file", denied("default deny")},
		{"no roles", who(), policy.ActionCall, "read_file", denied("default deny")},
		{"unknown role", who("root"), policy.ActionCall, "read_file", denied("default deny")},
		{"role name case", who("Developer"), policy.ActionCall, "read_file", denied("default deny")},
		{"nil principal", nil, policy.ActionCall, "read_file", denied("no principal")},
	}
	e := mustNew(t, grants...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.Decide(tt.p, tt.action, tt.resource)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide(%v, %s, %q) mismatch (-want +got):\n%s", tt.p, tt.action, tt.resource, diff)
			}
		})
	}
}

// TestDecideNameVariants: a grant for read_file never covers a name that
// merely looks like it.
func TestDecideNameVariants(t *testing.T) {
	e := mustNew(t,
		allowG("guest", "call", "read_file"),
		denyG("guest", "call", "delete_file"),
	)
	variants := []string{
		"READ_FILE", "Read_file", "read_filE", "read_file ", " read_file", "read_file\x00", "read_file\n",
		"read\u200b_file", "ｒｅａｄ_file", "r\u0435ad_file", "read_file/", "./read_file", "read_fil", "read_file*",
		"read%5ffile", "read-file", "",
	}
	for _, v := range variants {
		t.Run(fmt.Sprintf("%q", v), func(t *testing.T) {
			if d := e.Decide(who("guest"), policy.ActionCall, v); d.Allow {
				t.Errorf("Decide(%q) = %+v; want deny", v, d)
			}
		})
	}
	if d := e.Decide(who("guest"), policy.ActionCall, "read_file"); !d.Allow {
		t.Errorf("Decide(read_file) = %+v; want allow", d)
	}
}

// TestDecidePatternNeverMatchesOtherAction: the same pattern under one
// action grants nothing under another.
func TestDecidePatternNeverMatchesOtherAction(t *testing.T) {
	actions := []policy.Action{policy.ActionCall, policy.ActionAdmin, policy.ActionApprove}
	for _, granted := range actions {
		e := mustNew(t, allowG("r", string(granted), "*"))
		for _, asked := range actions {
			t.Run(fmt.Sprintf("%s grant, %s asked", granted, asked), func(t *testing.T) {
				d := e.Decide(who("r"), asked, "anything")
				if d.Allow != (granted == asked) {
					t.Errorf("Decide = %+v; want allow=%v", d, granted == asked)
				}
			})
		}
	}
}

func TestReplaceRejectsInvalidGrantsAndKeepsOldRules(t *testing.T) {
	old := []store.Grant{allowG("guest", "call", "read_file"), denyG("guest", "call", "delete_file")}
	tests := []struct {
		name  string
		grant store.Grant
	}{
		{"unknown action", allowG("guest", "execute", "*")},
		{"action case", allowG("guest", "Call", "*")},
		{"empty action", allowG("guest", "", "*")},
		{"unknown effect", store.Grant{Role: "guest", Action: "call", Pattern: "*", Effect: "permit"}},
		{"effect case", store.Grant{Role: "guest", Action: "call", Pattern: "*", Effect: "Deny"}},
		{"effect with space", store.Grant{Role: "guest", Action: "call", Pattern: "*", Effect: "deny "}},
		{"unclosed bracket", allowG("guest", "call", "[")},
		{"unclosed bracket after literal", allowG("guest", "call", "read_[")},
		{"unclosed class range", allowG("guest", "call", "[a-")},
		{"trailing backslash", allowG("guest", "call", `read\`)},
		{"empty pattern", allowG("guest", "call", "")},
		{"empty effect (must be explicit, never a silent allow)", store.Grant{Role: "guest", Action: "call", Pattern: "*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustNew(t, old...)
			// The bad grant comes last, after valid ones that would widen access.
			next := []store.Grant{allowG("guest", "call", "*"), tt.grant}
			err := e.Replace(next)
			if !errors.Is(err, policy.ErrInvalidGrant) {
				t.Fatalf("Replace = %v; want ErrInvalidGrant", err)
			}
			if d := e.Decide(who("guest"), policy.ActionCall, "read_file"); !d.Allow {
				t.Errorf("old allow lost: %+v", d)
			}
			if d := e.Decide(who("guest"), policy.ActionCall, "write_file"); d.Allow {
				t.Errorf("partial new rule set in force: write_file %+v", d)
			}
			if d := e.Decide(who("guest"), policy.ActionCall, "delete_file"); d.Allow {
				t.Errorf("old deny lost: %+v", d)
			}
			if _, err := policy.New(next); !errors.Is(err, policy.ErrInvalidGrant) {
				t.Errorf("New with the same grants = %v; want ErrInvalidGrant", err)
			}
		})
	}
}

func TestReplaceSwapsRules(t *testing.T) {
	e := mustNew(t, allowG("guest", "call", "read_file"))
	if err := e.Replace([]store.Grant{allowG("guest", "call", "write_file")}); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(who("guest"), policy.ActionCall, "read_file"); d.Allow {
		t.Errorf("revoked grant still allows: %+v", d)
	}
	if d := e.Decide(who("guest"), policy.ActionCall, "write_file"); !d.Allow {
		t.Errorf("new grant does not allow: %+v", d)
	}
	if err := e.Replace(nil); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(who("guest"), policy.ActionCall, "write_file"); d.Allow || d.Rule != "default deny" {
		t.Errorf("empty rule set: %+v; want default deny", d)
	}
}

func TestPatternsWithEscapesAndClasses(t *testing.T) {
	e := mustNew(t,
		allowG("r", "call", `file_[a-c]`),
		allowG("r", "call", `tool\_x`),
		allowG("r", "call", `v?`),
	)
	tests := []struct {
		resource string
		want     bool
	}{
		{"file_a", true}, {"file_c", true}, {"file_d", false}, {"file_", false}, {"file_ab", false},
		{"tool_x", true}, {"toolx", false},
		{"v1", true}, {"v", false}, {"v12", false},
	}
	for _, tt := range tests {
		t.Run(tt.resource, func(t *testing.T) {
			if d := e.Decide(who("r"), policy.ActionCall, tt.resource); d.Allow != tt.want {
				t.Errorf("Decide(%q) = %+v; want allow=%v", tt.resource, d, tt.want)
			}
		})
	}
}

func TestZeroEngineDenies(t *testing.T) {
	var e policy.Engine
	if d := e.Decide(who("admin"), policy.ActionCall, "read_file"); d.Allow || d.Reason != reason.PermissionDenied {
		t.Errorf("zero Engine Decide = %+v; want deny", d)
	}
}

// TestDecideConcurrentWithReplace runs under -race: readers never see a
// half-built rule set.
func TestDecideConcurrentWithReplace(t *testing.T) {
	a := []store.Grant{allowG("r", "call", "a_*"), denyG("r", "call", "b_*")}
	b := []store.Grant{allowG("r", "call", "b_*"), denyG("r", "call", "a_*")}
	e := mustNew(t, a...)
	var writer, readers sync.WaitGroup
	stop := make(chan struct{})
	writer.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			g := a
			if i%2 == 1 {
				g = b
			}
			if err := e.Replace(g); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 8 {
		readers.Go(func() {
			for range 2000 {
				da := e.Decide(who("r"), policy.ActionCall, "a_x")
				db := e.Decide(who("r"), policy.ActionCall, "b_x")
				// Each decision comes from one whole rule set; never both
				// denied by default (that would be a half-built set).
				if da.Rule == "default deny" || db.Rule == "default deny" {
					t.Errorf("saw an empty rule set: %+v %+v", da, db)
					return
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	writer.Wait()
}

func benchGrants(n int) []store.Grant {
	grants := make([]store.Grant, 0, n)
	for i := range n {
		role := fmt.Sprintf("role%d", i%5)
		switch i % 4 {
		case 0:
			grants = append(grants, allowG(role, "call", fmt.Sprintf("tool_%d", i)))
		case 1:
			grants = append(grants, allowG(role, "call", fmt.Sprintf("srv%d__*", i)))
		case 2:
			grants = append(grants, denyG(role, "call", fmt.Sprintf("danger_%d_*", i)))
		default:
			grants = append(grants, allowG(role, "admin", fmt.Sprintf("area%d", i)))
		}
	}
	return grants
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 200} {
		e := mustNew(b, benchGrants(n)...)
		p := who("role0", "role1", "role2", "role3", "role4")
		b.Run(fmt.Sprintf("grants=%d/allow", n), func(b *testing.B) {
			i := n - 1 // the last "srv<i>__*" grant: matched late
			for i%4 != 1 {
				i--
			}
			res := fmt.Sprintf("srv%d__fetch", i)
			if d := e.Decide(p, policy.ActionCall, res); !d.Allow {
				b.Fatalf("fixture: %+v", d)
			}
			b.ReportAllocs()
			for b.Loop() {
				e.Decide(p, policy.ActionCall, res)
			}
		})
		b.Run(fmt.Sprintf("grants=%d/default_deny", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Decide(p, policy.ActionCall, "unmatched_tool")
			}
		})
	}
}
