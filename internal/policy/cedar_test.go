package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// examples loads the shipped examples/policies.
func examples(t testing.TB) map[string][]byte {
	t.Helper()
	dir := filepath.Join("..", "..", "examples", "policies")
	matches, err := filepath.Glob(filepath.Join(dir, "*.cedar"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no example policies in %s (%v)", dir, err)
	}
	files := map[string][]byte{}
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		files[m] = b
	}
	return files
}

var devGrants = []store.Grant{
	{Role: "developer", Action: "call", Pattern: "*", Effect: "allow"},
	{Role: "admin", Action: "call", Pattern: "*", Effect: "allow"},
}

func exampleEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := New(devGrants)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.LoadCedar(examples(t)); err != nil {
		t.Fatal(err)
	}
	return e
}

var (
	dev   = &principal.Principal{Name: "dev", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
	admin = &principal.Principal{Name: "root", Roles: []string{"admin"}, Method: principal.MethodAPIKey}
)

// monday10 is a Monday at 10:00 UTC, inside working hours.
var monday10 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func TestExamplePolicies(t *testing.T) {
	e := exampleEngine(t)
	sunday := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	night := time.Date(2026, 11, 23, 23, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		p        *principal.Principal
		tool     string
		args     map[string]any
		at       time.Time
		allow    bool
		policies []string
	}{
		{"write an ordinary file", dev, "write_file", map[string]any{"path": "notes.txt", "content": "x"}, monday10, true, nil},
		{"write .env", dev, "write_file", map[string]any{"path": ".env", "content": "x"}, monday10, false, []string{"no-secret-files-write"}},
		{"write nested .env", dev, "write_file", map[string]any{"path": "app/config/.env", "content": "x"}, monday10, false, []string{"no-secret-files-write"}},
		{"write prod.env.local", dev, "write_file", map[string]any{"path": "prod.env.local", "content": "x"}, monday10, false, []string{"no-secret-files-write"}},
		{"write key.pem", dev, "write_file", map[string]any{"path": "certs/key.pem", "content": "x"}, monday10, false, []string{"no-secret-files-write"}},
		{"edit id_rsa", dev, "edit_file", map[string]any{"path": ".ssh/id_rsa", "old_text": "a", "new_text": "b"}, monday10, false, []string{"no-secret-files-edit"}},
		{"admin writes .env too? no", admin, "write_file", map[string]any{"path": ".env", "content": "x"}, monday10, false, []string{"no-secret-files-write"}},
		{"read .env is another tool", dev, "read_file", map[string]any{"path": ".env"}, monday10, true, nil},
		{"python in working hours", dev, "execute_python", map[string]any{"code": "1"}, monday10, true, nil},
		{"python on Sunday", dev, "execute_python", map[string]any{"code": "1"}, sunday, false, []string{"python-working-hours"}},
		{"python at night", dev, "execute_python", map[string]any{"code": "1"}, night, false, []string{"python-working-hours"}},
		{"admin python at night", admin, "execute_python", map[string]any{"code": "1"}, night, true, nil},
		{"fetch a public site", dev, "http_fetch", map[string]any{"url": "https://example.com/"}, monday10, true, nil},
		{"fetch metadata by address", dev, "http_fetch", map[string]any{"url": "http://169.254.169.254/latest/meta-data"}, monday10, false, []string{"egress-deny-hosts"}},
		{"fetch metadata by name, upper case, trailing dot", dev, "http_fetch", map[string]any{"url": "http://METADATA.google.internal./x"}, monday10, false, []string{"egress-deny-hosts"}},
		{"fetch with port", dev, "http_fetch", map[string]any{"url": "https://vault.internal.example:8200/v1"}, monday10, false, []string{"egress-deny-hosts"}},
		{"fetch with userinfo trick", dev, "http_fetch", map[string]any{"url": "http://example.com@169.254.169.254/"}, monday10, false, []string{"egress-deny-hosts"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Evaluate(&Request{Principal: tc.p, Action: ActionCall, Resource: tc.tool, Args: tc.args, Time: tc.at})
			if d.Allow != tc.allow || !slices.Equal(d.Policies, tc.policies) && !tc.allow {
				t.Errorf("decision %+v, want allow=%v policies %v", d, tc.allow, tc.policies)
			}
		})
	}
}

// TestCedarPermitGrantsAccess: a permit policy allows what no role grant
// does; a forbid beats an allow grant; no match is deny.
func TestCedarPermitGrantsAccess(t *testing.T) {
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	err = e.LoadCedar(map[string][]byte{"p.cedar": []byte(`
@id("guests-read")
permit (principal in Role::"guest", action == Action::"call", resource == Tool::"read_file");
@id("block-bob")
forbid (principal == User::"bob", action, resource);
`)})
	if err != nil {
		t.Fatal(err)
	}
	guest := &principal.Principal{Name: "gina", Roles: []string{"guest"}}
	bob := &principal.Principal{Name: "bob", Roles: []string{"guest"}}
	if d := e.Decide(guest, ActionCall, "read_file"); !d.Allow || !slices.Equal(d.Policies, []string{"guests-read"}) {
		t.Errorf("guest read_file: %+v", d)
	}
	if d := e.Decide(guest, ActionCall, "write_file"); d.Allow {
		t.Errorf("guest write_file allowed: %+v", d)
	}
	if d := e.Decide(bob, ActionCall, "read_file"); d.Allow || !slices.Equal(d.Policies, []string{"block-bob"}) {
		t.Errorf("bob read_file: %+v", d)
	}
}

// TestCedarErrorsDeny: a forbid that errors (a missing attribute without
// `has`) denies instead of being skipped as Cedar would.
func TestCedarErrorsDeny(t *testing.T) {
	e, _ := New(devGrants)
	err := e.LoadCedar(map[string][]byte{"p.cedar": []byte(`
@id("sloppy")
forbid (principal, action, resource == Tool::"write_file") when { context.args.path like "*.env" };
`)})
	if err != nil {
		t.Fatal(err)
	}
	d := e.Evaluate(&Request{Principal: dev, Action: ActionCall, Resource: "write_file", Args: map[string]any{"content": "no path"}})
	if d.Allow || !strings.Contains(d.Rule, "fail closed") {
		t.Errorf("erroring forbid: %+v, want a fail-closed deny", d)
	}
	d = e.Evaluate(&Request{Principal: dev, Action: ActionCall, Resource: "write_file", Args: map[string]any{"path": "ok.txt"}})
	if !d.Allow {
		t.Errorf("non-matching forbid: %+v", d)
	}
}

// TestLoadCedarRejectsBrokenAndKeepsOld: a broken file rejects the whole
// set and the old policies stay; duplicate ids are rejected too.
func TestLoadCedarRejectsBrokenAndKeepsOld(t *testing.T) {
	e := exampleEngine(t)
	before := e.Policies()
	for name, src := range map[string]string{
		"syntax":       `forbid (principal, action, resource`,
		"unknown func": `forbid (principal, action, resource) when { nosuch(1) };`,
		"duplicate id": "@id(\"x\")\npermit(principal, action, resource);\n@id(\"x\")\nforbid(principal, action, resource);",
	} {
		t.Run(name, func(t *testing.T) {
			err := e.LoadCedar(map[string][]byte{"bad.cedar": []byte(src)})
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("LoadCedar = %v, want ErrInvalidPolicy", err)
			}
			if !slices.Equal(before, e.Policies()) {
				t.Errorf("policies changed after a rejected load")
			}
		})
	}
}

// TestKeyScopesNarrow: a key scoped to read_file cannot call write_file
// although its role may; scopes never widen.
func TestKeyScopesNarrow(t *testing.T) {
	e, _ := New(devGrants)
	scoped := &principal.Principal{Name: "dev", Roles: []string{"developer"}, Scopes: []string{"read_file", "git_*"}}
	for tool, want := range map[string]bool{"read_file": true, "git_log": true, "write_file": false, "execute_python": false} {
		if d := e.Decide(scoped, ActionCall, tool); d.Allow != want {
			t.Errorf("%s: %+v, want allow=%v", tool, d, want)
		}
	}
	guest := &principal.Principal{Name: "g", Roles: []string{"guest"}, Scopes: []string{"*"}}
	if d := e.Decide(guest, ActionCall, "write_file"); d.Allow {
		t.Errorf("a * scope widened a role: %+v", d)
	}
}

// TestDecisionCache: condition-free decisions are cached and the cache is
// flushed by any change of grants or policies.
func TestDecisionCache(t *testing.T) {
	e, _ := New(devGrants)
	if d := e.Decide(dev, ActionCall, "write_file"); !d.Allow {
		t.Fatal(d)
	}
	if len(e.cache) != 1 {
		t.Fatalf("cache size %d, want 1", len(e.cache))
	}
	if err := e.Replace([]store.Grant{{Role: "developer", Action: "call", Pattern: "read_file", Effect: "allow"}}); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(dev, ActionCall, "write_file"); d.Allow {
		t.Errorf("stale cached allow after the grant was revoked: %+v", d)
	}
	// Conditional policies are not cached.
	if err := e.LoadCedar(examples(t)); err != nil {
		t.Fatal(err)
	}
	e.Evaluate(&Request{Principal: dev, Action: ActionCall, Resource: "write_file", Args: map[string]any{"path": "a"}})
	for k := range e.cache {
		if strings.HasPrefix(k, "f\x00") && strings.Contains(k, "write_file") {
			t.Errorf("a full decision subject to a conditional policy was cached: %q", k)
		}
	}
	if !e.Conditional(ActionCall, "write_file") || e.Conditional(ActionCall, "read_file") {
		t.Error("Conditional index wrong")
	}
}

// TestReportMode: the mode is kept; the engine still reports denials (the
// gateway lets them through and records policy.would_deny).
func TestReportMode(t *testing.T) {
	e, _ := New(nil)
	if e.Mode() != ModeEnforce {
		t.Fatal("default mode is not enforce")
	}
	if err := e.SetMode(ModeReport); err != nil || e.Mode() != ModeReport {
		t.Fatal(err)
	}
	if err := e.SetMode("lenient"); err == nil {
		t.Error("unknown mode accepted")
	}
	if d := e.Decide(dev, ActionCall, "read_file"); d.Allow {
		t.Error("report mode changed the decision itself")
	}
}

// TestNameLevel: a name-level decision ignores conditional forbids (they
// are checked once the arguments are known), honours unconditional
// forbids, and counts a conditional permit as a possible allow that the
// full evaluation then decides.
func TestNameLevel(t *testing.T) {
	e, err := New([]store.Grant{{Role: "developer", Action: "call", Pattern: "*", Effect: "allow"}})
	if err != nil {
		t.Fatal(err)
	}
	err = e.LoadCedar(map[string][]byte{"p.cedar": []byte(`
@id("no-env") forbid (principal, action == Action::"call", resource == Tool::"write_file") when { context.args has path && context.args.path like "*.env" };
@id("no-delete") forbid (principal, action == Action::"call", resource == Tool::"delete_file");
@id("guest-python-hours") permit (principal in Role::"guest", action == Action::"call", resource == Tool::"execute_python") when { context.hour >= 9 && context.hour < 18 };
`)})
	if err != nil {
		t.Fatal(err)
	}
	guest := &principal.Principal{Name: "g", Roles: []string{"guest"}, Method: principal.MethodAPIKey}
	night := time.Date(2026, 11, 23, 23, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		d        Decision
		allow    bool
		byPolicy bool
	}{
		{"write_file name-level", e.Decide(dev, ActionCall, "write_file"), true, false},
		{"write_file .env", e.Evaluate(&Request{Principal: dev, Action: ActionCall, Resource: "write_file", Args: map[string]any{"path": "a.env"}}), false, true},
		{"write_file ok", e.Evaluate(&Request{Principal: dev, Action: ActionCall, Resource: "write_file", Args: map[string]any{"path": "a.txt"}}), true, false},
		{"delete_file name-level", e.Decide(dev, ActionCall, "delete_file"), false, true},
		{"delete_file full", e.Evaluate(&Request{Principal: dev, Action: ActionCall, Resource: "delete_file", Args: map[string]any{"path": "a"}}), false, true},
		{"guest python name-level", e.Decide(guest, ActionCall, "execute_python"), true, false},
		{"guest python day", e.Evaluate(&Request{Principal: guest, Action: ActionCall, Resource: "execute_python", Time: monday10}), true, false},
		{"guest python night", e.Evaluate(&Request{Principal: guest, Action: ActionCall, Resource: "execute_python", Time: night}), false, false},
		{"guest other tool", e.Decide(guest, ActionCall, "read_file"), false, false},
	} {
		if tc.d.Allow != tc.allow || tc.d.ByPolicy != tc.byPolicy {
			t.Errorf("%s: %+v; want allow=%v byPolicy=%v", tc.name, tc.d, tc.allow, tc.byPolicy)
		}
	}
	// The name-level allow of write_file is cached, the full ones are not.
	e.Decide(dev, ActionCall, "write_file")
	var names, full int
	for k := range e.cache {
		if strings.Contains(k, "write_file") {
			if strings.HasPrefix(k, "n\x00") {
				names++
			} else {
				full++
			}
		}
	}
	if names != 1 || full != 0 {
		t.Errorf("cache holds %d name-level and %d full write_file decisions; want 1 and 0", names, full)
	}
}

// TestPolicyIDsStable: policies without @id get "<file>#<n>" in file
// order, the same on every parse.
func TestPolicyIDsStable(t *testing.T) {
	var src strings.Builder
	for i := range 12 {
		src.WriteString("permit (principal, action, resource == Tool::\"t" + string(rune('a'+i)) + "\");\n")
	}
	for range 20 {
		set, err := ParseCedar(map[string][]byte{"dir/x.cedar": []byte(src.String())})
		if err != nil {
			t.Fatal(err)
		}
		for i, info := range set.Info() {
			if want := "x.cedar#" + strconv.Itoa(i+1); info.ID != want || set.policies[i].tool != "t"+string(rune('a'+i)) {
				t.Fatalf("policy %d: id %q tool %q; want %q t%c", i, info.ID, set.policies[i].tool, want, 'a'+i)
			}
		}
	}
}

// TestScopesNarrowAdmin: an admin key's scopes also narrow the admin
// API: only "admin:<area>" patterns (or "*") open an area.
func TestScopesNarrowAdmin(t *testing.T) {
	e, err := New([]store.Grant{{Role: "admin", Action: "admin", Pattern: "*", Effect: "allow"},
		{Role: "admin", Action: "call", Pattern: "*", Effect: "allow"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		scopes []string
		area   string
		want   bool
	}{
		{nil, "keys", true},
		{[]string{"*"}, "keys", true},
		{[]string{"read_file"}, "keys", false},
		{[]string{"read_*"}, "audit", false},
		{[]string{"admin:audit"}, "audit", true},
		{[]string{"admin:audit"}, "keys", false},
		{[]string{"admin:*"}, "users", true},
		{[]string{"keys"}, "keys", false}, // a bare area name is a tool pattern
	} {
		p := &principal.Principal{Name: "root", Roles: []string{"admin"}, Scopes: tc.scopes, Method: principal.MethodAPIKey}
		if d := e.Decide(p, ActionAdmin, tc.area); d.Allow != tc.want {
			t.Errorf("scopes %v, admin %s: %+v; want allow=%v", tc.scopes, tc.area, d, tc.want)
		}
	}
	p := &principal.Principal{Name: "root", Roles: []string{"admin"}, Scopes: []string{"admin:*"}, Method: principal.MethodAPIKey}
	if e.Decide(p, ActionCall, "read_file").Allow {
		t.Error("an admin:* scope opened a tool")
	}
}

// TestConditionalAdminPolicies: the admin API and the approval service ask
// Decide without a later stage, so a conditional permit on admin or
// approve must not count as "maybe allow" for everyone: it allows only
// its own principal when its conditions hold, and a conditional forbid
// applies (a permit scoped to bob with an impossible condition once let
// every user read the users area).
func TestConditionalAdminPolicies(t *testing.T) {
	e, _ := New(append(slices.Clone(devGrants), store.Grant{Role: "admin", Action: "approve", Pattern: "*", Effect: "allow"}))
	err := e.LoadCedar(map[string][]byte{"p.cedar": []byte(`
@id("bob-never")
permit (principal == User::"bob", action == Action::"admin", resource == AdminArea::"users") when { context.hour > 99 };
@id("carol-always")
permit (principal == User::"carol", action == Action::"admin", resource == AdminArea::"audit") when { context.hour >= 0 };
@id("no-approvals-for-dan")
forbid (principal == User::"dan", action == Action::"approve", resource) when { context.hour >= 0 };
`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dave", "bob"} {
		if d := e.Decide(&principal.Principal{Name: name, Roles: []string{"developer"}}, ActionAdmin, "users"); d.Allow {
			t.Errorf("%s admin users: %+v; want deny (the permit's condition never holds)", name, d)
		}
	}
	if d := e.Decide(&principal.Principal{Name: "carol", Roles: []string{"developer"}}, ActionAdmin, "audit"); !d.Allow {
		t.Errorf("carol admin audit: %+v; want the conditional permit to allow", d)
	}
	if d := e.Decide(&principal.Principal{Name: "erin", Roles: []string{"developer"}}, ActionAdmin, "audit"); d.Allow {
		t.Errorf("erin admin audit: %+v; carol's permit applied to her", d)
	}
	if d := e.Decide(&principal.Principal{Name: "ann", Roles: []string{"admin"}}, ActionApprove, "git_commit"); !d.Allow {
		t.Errorf("ann approve: %+v; want the admin grant to allow", d)
	}
	dan := &principal.Principal{Name: "dan", Roles: []string{"admin"}}
	if d := e.Decide(dan, ActionApprove, "git_commit"); d.Allow {
		t.Errorf("dan approve: %+v; want the conditional forbid to apply", d)
	}
}
