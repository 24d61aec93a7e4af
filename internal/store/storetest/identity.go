package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portcullis/portcullis/internal/store"
)

// hostile are names and filter values that must be stored and matched as
// literals, never interpreted (SQL, LIKE patterns, escapes).
var hostile = []string{
	`' OR 1=1 --`,
	`' OR '1'='1`,
	`x"; DROP TABLE users; --`,
	`%`,
	`_`,
	`\`,
	"ünïcödé ☃",
}

// userOpts compares users without the backend-assigned ID and creation time.
var userOpts = cmp.Options{cmpopts.IgnoreFields(store.User{}, "ID", "CreatedAt"), cmpopts.EquateEmpty()}

func ensure(t *testing.T, b Backend, name string, roles ...string) store.User {
	t.Helper()
	u, _, err := b.EnsureUser(t.Context(), name, roles)
	if err != nil {
		t.Fatalf("EnsureUser(%q, %v): %v", name, roles, err)
	}
	return u
}

func userRoles(t *testing.T, b Backend, name string) []string {
	t.Helper()
	u, err := b.UserByName(t.Context(), name)
	if err != nil {
		t.Fatalf("UserByName(%q): %v", name, err)
	}
	return u.Roles
}

var userCases = []testCase{
	{name: "EnsureUserCreatesOnce", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		u, created, err := b.EnsureUser(ctx, "alice", []string{"guest", "developer"})
		if err != nil || !created {
			t.Fatalf("first EnsureUser = %v, created=%v; want created", err, created)
		}
		want := store.User{Name: "alice", Roles: []string{"developer", "guest"}}
		if diff := cmp.Diff(want, u, userOpts); diff != "" || u.ID == 0 || u.CreatedAt.IsZero() {
			t.Errorf("created user %+v (-want +got):\n%s", u, diff)
		}
		again, created, err := b.EnsureUser(ctx, "alice", []string{"admin"})
		if err != nil || created {
			t.Fatalf("second EnsureUser = %v, created=%v; want the existing user", err, created)
		}
		if diff := cmp.Diff(u, again); diff != "" {
			t.Errorf("second EnsureUser changed the user (roles are only given on creation) (-first +second):\n%s", diff)
		}
		got, err := b.UserByName(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(u, got); diff != "" {
			t.Errorf("UserByName (-EnsureUser +UserByName):\n%s", diff)
		}
	}},
	{name: "EnsureUserRejects", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		for _, tc := range []struct {
			name, user string
			roles      []string
		}{
			{"empty name", "", nil},
			{"unknown role", "bob", []string{"nope"}},
			{"one unknown role among known ones", "carol", []string{"guest", "nope"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, created, err := b.EnsureUser(ctx, tc.user, tc.roles)
				if !errors.Is(err, store.ErrInvalid) || created {
					t.Errorf("EnsureUser(%q, %v) = %v, created=%v; want ErrInvalid", tc.user, tc.roles, err, created)
				}
				if _, err := b.UserByName(ctx, tc.user); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("after a refused EnsureUser, UserByName(%q) = %v; want ErrNotFound (nothing created)", tc.user, err)
				}
			})
		}
		if us, err := b.ListUsers(ctx); err != nil || len(us) != 0 {
			t.Errorf("ListUsers after refused creations = %d users, %v; want none", len(us), err)
		}
	}},
	{name: "UserByNameNotFound", run: func(t *testing.T, bs []Backend) {
		b := bs[0]
		ensure(t, b, "alice")
		for _, name := range []string{"bob", "Alice", "alic", "alice ", "%", "_lice", `' OR 1=1 --`} {
			if _, err := b.UserByName(t.Context(), name); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("UserByName(%q) = %v, want ErrNotFound", name, err)
			}
		}
	}},
	{name: "GrantAndRevokeRoles", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		u := ensure(t, b, "alice", "guest")
		other := ensure(t, b, "bob", "guest")
		steps := []struct {
			name string
			do   func() error
			err  error
			want []string
		}{
			{"grant", func() error { return b.GrantUserRole(ctx, u.ID, "admin") }, nil, []string{"admin", "guest"}},
			{"grant again is idempotent", func() error { return b.GrantUserRole(ctx, u.ID, "admin") }, nil, []string{"admin", "guest"}},
			{"grant unknown role", func() error { return b.GrantUserRole(ctx, u.ID, "nope") }, store.ErrInvalid, []string{"admin", "guest"}},
			{"revoke", func() error { return b.RevokeUserRole(ctx, u.ID, "guest") }, nil, []string{"admin"}},
			{"revoke a role not held", func() error { return b.RevokeUserRole(ctx, u.ID, "guest") }, store.ErrNotFound, []string{"admin"}},
			{"revoke unknown role", func() error { return b.RevokeUserRole(ctx, u.ID, "nope") }, store.ErrNotFound, []string{"admin"}},
			{"revoke the last role", func() error { return b.RevokeUserRole(ctx, u.ID, "admin") }, nil, nil},
		}
		for _, s := range steps {
			err := s.do()
			if (s.err == nil && err != nil) || (s.err != nil && !errors.Is(err, s.err)) {
				t.Errorf("%s: %v, want %v", s.name, err, s.err)
			}
			if diff := cmp.Diff(s.want, userRoles(t, b, "alice"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: roles (-want +got):\n%s", s.name, diff)
			}
		}
		if diff := cmp.Diff([]string{"guest"}, userRoles(t, b, "bob")); diff != "" {
			t.Errorf("another user's roles changed (-want +got):\n%s", diff)
		}
		missing := max(u.ID, other.ID) + 1000
		wantErr(t, "GrantUserRole(unknown user)", b.GrantUserRole(ctx, missing, "guest"), store.ErrNotFound)
		wantErr(t, "RevokeUserRole(unknown user)", b.RevokeUserRole(ctx, missing, "guest"), store.ErrNotFound)
	}},
	{name: "DisableAndEnable", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		u := ensure(t, b, "alice", "developer")
		ensure(t, b, "bob", "guest")
		must(t, b.CreateAPIKey(ctx, newKey("key_alice", u.ID, t0)))
		for _, disabled := range []bool{true, true, false, true} {
			got, err := b.SetUserDisabled(ctx, "alice", disabled)
			if err != nil || got.Disabled != disabled || got.Name != "alice" || got.ID != u.ID {
				t.Fatalf("SetUserDisabled(%v) = %+v, %v", disabled, got, err)
			}
			if diff := cmp.Diff([]string{"developer"}, got.Roles); diff != "" {
				t.Errorf("SetUserDisabled returned roles (-want +got):\n%s", diff)
			}
			if stored, err := b.UserByName(ctx, "alice"); err != nil || stored.Disabled != disabled {
				t.Errorf("UserByName after SetUserDisabled(%v) = %+v, %v", disabled, stored, err)
			}
			// Authentication reads the user with the key: it must see the flag.
			if _, ku, err := b.APIKeyByHash(ctx, []byte("hash-of-key_alice")); err != nil || ku.Disabled != disabled {
				t.Errorf("APIKeyByHash user after SetUserDisabled(%v) = %+v, %v", disabled, ku, err)
			}
		}
		if bob, err := b.UserByName(ctx, "bob"); err != nil || bob.Disabled {
			t.Errorf("another user = %+v, %v; want enabled", bob, err)
		}
		if _, err := b.SetUserDisabled(ctx, "nobody", true); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SetUserDisabled(unknown) = %v, want ErrNotFound", err)
		}
	}},
	{name: "ListUsers", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		if us, err := b.ListUsers(ctx); err != nil || len(us) != 0 {
			t.Fatalf("ListUsers on a new store = %v, %v; want none", us, err)
		}
		ensure(t, b, "carol", "admin")
		ensure(t, b, "alice", "guest", "developer")
		ensure(t, b, "bob")
		_, err := b.SetUserDisabled(ctx, "bob", true)
		must(t, err)
		got, err := b.ListUsers(ctx)
		must(t, err)
		want := []store.User{
			{Name: "alice", Roles: []string{"developer", "guest"}},
			{Name: "bob", Disabled: true},
			{Name: "carol", Roles: []string{"admin"}},
		}
		if diff := cmp.Diff(want, got, userOpts); diff != "" {
			t.Errorf("ListUsers, by name (-want +got):\n%s", diff)
		}
		for _, u := range got {
			if one, err := b.UserByName(ctx, u.Name); err != nil || one.ID != u.ID {
				t.Errorf("ListUsers id of %s = %d, UserByName = %d (%v)", u.Name, u.ID, one.ID, err)
			}
		}
	}},
	{name: "HostileNamesAreLiterals", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		ids := map[int64]string{}
		for _, name := range hostile {
			u := ensure(t, b, name, "guest")
			if u.Name != name {
				t.Errorf("EnsureUser(%q) stored %q", name, u.Name)
			}
			ids[u.ID] = name
		}
		if len(ids) != len(hostile) {
			t.Errorf("%d distinct ids for %d users", len(ids), len(hostile))
		}
		for _, name := range hostile {
			got, err := b.UserByName(ctx, name)
			if err != nil || ids[got.ID] != name {
				t.Errorf("UserByName(%q) = %+v, %v", name, got, err)
			}
		}
		if us, err := b.ListUsers(ctx); err != nil || len(us) != len(hostile) {
			t.Errorf("ListUsers = %d users, %v; want %d", len(us), err, len(hostile))
		}
	}},
	{name: "ConcurrentEnsureUserAcrossReplicas", handles: 2, run: func(t *testing.T, bs []Backend) {
		var ids [racers]int64
		var created [racers]bool
		errs := race(bs, racers, func(i int, b Backend) error {
			u, c, err := b.EnsureUser(t.Context(), "shared", []string{"guest"})
			ids[i], created[i] = u.ID, c
			return err
		})
		n := 0
		for i, err := range errs {
			if err != nil {
				t.Errorf("goroutine %d: EnsureUser = %v", i, err)
				continue
			}
			if created[i] {
				n++
			}
			if ids[i] != ids[0] {
				t.Errorf("goroutine %d got user id %d, goroutine 0 got %d", i, ids[i], ids[0])
			}
		}
		if n != 1 {
			t.Errorf("EnsureUser(shared) on %d goroutines created it %d times, want 1", racers, n)
		}
		if us, err := bs[1].ListUsers(t.Context()); err != nil || len(us) != 1 {
			t.Errorf("ListUsers = %d users, %v; want 1", len(us), err)
		}
	}},
}

// defaultGrants are the grants of the default roles (DESIGN §2;
// migrations 00001 and 00005 of the SQLite backend).
func defaultGrants() []store.Grant {
	var out []store.Grant
	add := func(role, action string, patterns ...string) {
		for _, p := range patterns {
			out = append(out, store.Grant{Role: role, Action: action, Pattern: p, Effect: "allow"})
		}
	}
	files := []string{"list_directory", "read_file", "search_files", "file_info"}
	add("guest", "call", files...)
	add("developer", "call", files...)
	add("developer", "call", "write_file", "edit_file", "move_file", "delete_file", "execute_python",
		"run_command", "http_fetch", "sql_query", "git_status", "git_diff", "git_log", "git_commit")
	add("admin", "call", "*")
	add("admin", "admin", "*")
	add("admin", "approve", "*")
	return out
}

// sortGrants orders grants by role, action, pattern (Grants promises no order).
var sortGrants = cmpopts.SortSlices(func(a, b store.Grant) bool {
	return a.Role+"\x00"+a.Action+"\x00"+a.Pattern < b.Role+"\x00"+b.Action+"\x00"+b.Pattern
})

func grantsOf(t *testing.T, b Backend, role string) []store.Grant {
	t.Helper()
	all, err := b.Grants(t.Context())
	must(t, err)
	var out []store.Grant
	for _, g := range all {
		if g.Role == role {
			out = append(out, g)
		}
	}
	return out
}

var roleCases = []testCase{
	{name: "DefaultRoles", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		names, err := b.Roles(ctx)
		must(t, err)
		if diff := cmp.Diff([]string{"admin", "developer", "guest"}, names); diff != "" {
			t.Errorf("Roles (-want +got):\n%s", diff)
		}
		grants, err := b.Grants(ctx)
		must(t, err)
		if diff := cmp.Diff(defaultGrants(), grants, sortGrants); diff != "" {
			t.Errorf("default grants (-want +got):\n%s", diff)
		}
		roles, err := b.ListRoles(ctx)
		must(t, err)
		var got []string
		for _, r := range roles {
			got = append(got, r.Name)
			if r.Description == "" {
				t.Errorf("default role %s has no description", r.Name)
			}
			var want []store.Grant
			for _, g := range defaultGrants() {
				if g.Role == r.Name {
					want = append(want, g)
				}
			}
			if diff := cmp.Diff(want, r.Grants, sortGrants); diff != "" {
				t.Errorf("ListRoles grants of %s (-want +got):\n%s", r.Name, diff)
			}
		}
		if diff := cmp.Diff(names, got); diff != "" {
			t.Errorf("ListRoles names, by name (-Roles +ListRoles):\n%s", diff)
		}
	}},
	{name: "CreateRole", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		must(t, b.CreateRole(ctx, "auditor", "reads the audit log"))
		must(t, b.CreateRole(ctx, "bot", ""))
		wantErr(t, "CreateRole(existing)", b.CreateRole(ctx, "auditor", "again"), store.ErrConflict)
		wantErr(t, "CreateRole(default role)", b.CreateRole(ctx, "admin", ""), store.ErrConflict)
		wantErr(t, "CreateRole(empty)", b.CreateRole(ctx, "", "x"), store.ErrInvalid)
		names, err := b.Roles(ctx)
		must(t, err)
		if diff := cmp.Diff([]string{"admin", "auditor", "bot", "developer", "guest"}, names); diff != "" {
			t.Errorf("Roles, sorted (-want +got):\n%s", diff)
		}
		roles, err := b.ListRoles(ctx)
		must(t, err)
		i := slices.IndexFunc(roles, func(r store.Role) bool { return r.Name == "auditor" })
		if i < 0 || roles[i].Description != "reads the audit log" || len(roles[i].Grants) != 0 {
			t.Errorf("ListRoles auditor = %+v; want its description and no grants", roles)
		}
		// A new role can be held at once.
		u := ensure(t, b, "alice", "auditor")
		if diff := cmp.Diff([]string{"auditor"}, u.Roles); diff != "" {
			t.Errorf("user with the new role (-want +got):\n%s", diff)
		}
	}},
	{name: "GrantPermission", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		must(t, b.CreateRole(ctx, "auditor", ""))
		g := store.Grant{Role: "auditor", Action: "admin", Pattern: "audit", Effect: "allow"}
		must(t, b.GrantPermission(ctx, g))
		must(t, b.GrantPermission(ctx, g)) // idempotent
		if diff := cmp.Diff([]store.Grant{g}, grantsOf(t, b, "auditor")); diff != "" {
			t.Errorf("after granting twice (-want +got):\n%s", diff)
		}
		deny := g
		deny.Effect = "deny"
		must(t, b.GrantPermission(ctx, deny)) // the same grant takes the new effect
		call := store.Grant{Role: "auditor", Action: "call", Pattern: "git_*", Effect: "allow"}
		must(t, b.GrantPermission(ctx, call))
		if diff := cmp.Diff([]store.Grant{deny, call}, grantsOf(t, b, "auditor"), sortGrants); diff != "" {
			t.Errorf("after changing the effect (-want +got):\n%s", diff)
		}
		roles, err := b.ListRoles(ctx)
		must(t, err)
		i := slices.IndexFunc(roles, func(r store.Role) bool { return r.Name == "auditor" })
		if i < 0 {
			t.Fatal("ListRoles lacks auditor")
		}
		if diff := cmp.Diff([]store.Grant{deny, call}, roles[i].Grants, sortGrants); diff != "" {
			t.Errorf("ListRoles grants (-want +got):\n%s", diff)
		}
		before, err := b.Grants(ctx)
		must(t, err)
		for _, tc := range []struct {
			name string
			g    store.Grant
		}{
			{"unknown role", store.Grant{Role: "nope", Action: "call", Pattern: "x", Effect: "allow"}},
			{"unknown action", store.Grant{Role: "auditor", Action: "delete", Pattern: "x", Effect: "allow"}},
			{"unknown effect", store.Grant{Role: "auditor", Action: "call", Pattern: "x", Effect: "maybe"}},
			{"empty effect", store.Grant{Role: "auditor", Action: "call", Pattern: "x"}},
			{"empty pattern", store.Grant{Role: "auditor", Action: "call", Effect: "allow"}},
		} {
			wantErr(t, "GrantPermission("+tc.name+")", b.GrantPermission(ctx, tc.g), store.ErrInvalid)
		}
		after, err := b.Grants(ctx)
		must(t, err)
		if diff := cmp.Diff(before, after, sortGrants); diff != "" {
			t.Errorf("refused grants changed the grants (-before +after):\n%s", diff)
		}
	}},
	{name: "RevokePermission", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		// guest and developer both hold call read_file: revoking guest's
		// leaves developer's.
		must(t, b.RevokePermission(ctx, "guest", "call", "read_file"))
		for _, g := range grantsOf(t, b, "guest") {
			if g.Pattern == "read_file" {
				t.Errorf("guest still holds %+v", g)
			}
		}
		if !slices.ContainsFunc(grantsOf(t, b, "developer"), func(g store.Grant) bool { return g.Pattern == "read_file" }) {
			t.Error("revoking guest's read_file took developer's")
		}
		for _, tc := range [][3]string{
			{"guest", "call", "read_file"}, // already revoked
			{"guest", "admin", "list_directory"},
			{"nope", "call", "read_file"},
			{"guest", "call", "read_%"},
		} {
			wantErr(t, fmt.Sprintf("RevokePermission(%q)", tc), b.RevokePermission(ctx, tc[0], tc[1], tc[2]), store.ErrNotFound)
		}
		if n := len(grantsOf(t, b, "guest")); n != 3 {
			t.Errorf("guest holds %d grants, want 3", n)
		}
	}},
}

// accessChanges are changes that other processes must notice: each must
// increase AccessVersion. Each starts from a store where alice holds
// guest; setup prepares what else the change needs.
var accessChanges = []struct {
	name  string
	setup func(t *testing.T, b Backend)
	do    func(t *testing.T, b Backend) error
}{
	{"create role", nil, func(t *testing.T, b Backend) error { return b.CreateRole(t.Context(), "auditor", "") }},
	{"grant permission", nil, func(t *testing.T, b Backend) error {
		return b.GrantPermission(t.Context(), store.Grant{Role: "guest", Action: "call", Pattern: "git_log", Effect: "allow"})
	}},
	{"change a grant's effect", nil, func(t *testing.T, b Backend) error {
		return b.GrantPermission(t.Context(), store.Grant{Role: "guest", Action: "call", Pattern: "read_file", Effect: "deny"})
	}},
	{"revoke permission", nil, func(t *testing.T, b Backend) error {
		return b.RevokePermission(t.Context(), "guest", "call", "read_file")
	}},
	{"create user with roles", nil, func(t *testing.T, b Backend) error {
		_, _, err := b.EnsureUser(t.Context(), "bob", []string{"guest"})
		return err
	}},
	{"create user without roles", nil, func(t *testing.T, b Backend) error {
		_, _, err := b.EnsureUser(t.Context(), "bob", nil)
		return err
	}},
	{"grant user role", nil, func(t *testing.T, b Backend) error {
		u, err := b.UserByName(t.Context(), "alice")
		if err != nil {
			return err
		}
		return b.GrantUserRole(t.Context(), u.ID, "admin")
	}},
	{"revoke user role", nil, func(t *testing.T, b Backend) error {
		u, err := b.UserByName(t.Context(), "alice")
		if err != nil {
			return err
		}
		return b.RevokeUserRole(t.Context(), u.ID, "guest")
	}},
	{"disable user", nil, func(t *testing.T, b Backend) error {
		_, err := b.SetUserDisabled(t.Context(), "alice", true)
		return err
	}},
	{"enable user", func(t *testing.T, b Backend) {
		_, err := b.SetUserDisabled(t.Context(), "alice", true)
		must(t, err)
	}, func(t *testing.T, b Backend) error {
		_, err := b.SetUserDisabled(t.Context(), "alice", false)
		return err
	}},
	{"create key", nil, func(t *testing.T, b Backend) error {
		u, err := b.UserByName(t.Context(), "alice")
		if err != nil {
			return err
		}
		return b.CreateAPIKey(t.Context(), newKey("key_new", u.ID, t0))
	}},
	{"revoke key", func(t *testing.T, b Backend) {
		u, err := b.UserByName(t.Context(), "alice")
		must(t, err)
		must(t, b.CreateAPIKey(t.Context(), newKey("key_old", u.ID, t0)))
	}, func(t *testing.T, b Backend) error {
		_, err := b.RevokeAPIKey(t.Context(), "key_old", at(time.Hour))
		return err
	}},
	{"quarantine", nil, func(t *testing.T, b Backend) error {
		_, err := b.CreateQuarantine(t.Context(), quarantine("qua_1", store.QuarantinePrincipal, "alice", t0))
		return err
	}},
	{"release quarantine", func(t *testing.T, b Backend) {
		_, err := b.CreateQuarantine(t.Context(), quarantine("qua_1", store.QuarantinePrincipal, "alice", t0))
		must(t, err)
	}, func(t *testing.T, b Backend) error {
		_, err := b.ReleaseQuarantine(t.Context(), "qua_1", "root", "ok", at(time.Hour))
		return err
	}},
}

// accessVersionCases: one case per change (each on a new database), and
// concurrent changes through two handles.
var accessVersionCases = append(accessChangeCases(), []testCase{
	{name: "IncreasesMonotonically", handles: 2, run: func(t *testing.T, bs []Backend) {
		// Concurrent changes through both handles: every one is counted,
		// so the version rises by at least the number of changes.
		ctx := t.Context()
		before, err := bs[0].AccessVersion(ctx)
		must(t, err)
		errs := race(bs, racers, func(i int, b Backend) error {
			return b.CreateRole(ctx, fmt.Sprintf("role-%d", i), "")
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("goroutine %d: CreateRole = %v", i, err)
			}
		}
		after, err := bs[1].AccessVersion(ctx)
		must(t, err)
		if after-before < racers {
			t.Errorf("AccessVersion %d -> %d after %d role creations; want an increase of at least %d", before, after, racers, racers)
		}
	}},
}...)

// accessChangeCases makes one case of accessChanges each: the change is
// made through one handle and must show as a higher version through the
// other (another replica polling) and through its own.
func accessChangeCases() []testCase {
	var out []testCase
	for _, c := range accessChanges {
		out = append(out, testCase{name: "IncreasesOn_" + strings.ReplaceAll(c.name, " ", "_"), handles: 2,
			run: func(t *testing.T, bs []Backend) {
				a, other := bs[0], bs[1]
				ensure(t, a, "alice", "guest")
				if c.setup != nil {
					c.setup(t, a)
				}
				before, err := other.AccessVersion(t.Context())
				must(t, err)
				if err := c.do(t, a); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				after, err := other.AccessVersion(t.Context())
				must(t, err)
				if after <= before {
					t.Errorf("%s: AccessVersion on the other handle %d -> %d; want it to increase", c.name, before, after)
				}
				if own, err := a.AccessVersion(t.Context()); err != nil || own != after {
					t.Errorf("AccessVersion through the changing handle = %d (%v), through the other %d", own, err, after)
				}
			}})
	}
	return out
}

// newKey is a key of user userID with a hash derived from id.
func newKey(id string, userID int64, created time.Time) store.APIKey {
	return store.APIKey{ID: id, UserID: userID, Hash: []byte("hash-of-" + id), Prefix: "pcl_" + id[:4],
		Roles: []string{"guest"}, CreatedAt: created}
}

// keyOpts compares keys treating nil and empty slices alike.
var keyOpts = cmp.Options{cmpopts.EquateEmpty()}

var keyCases = []testCase{
	{name: "CreateAndLookUp", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		alice := ensure(t, b, "alice", "developer")
		k1 := newKey("key_one", alice.ID, t0)
		k1.ExpiresAt = ptr(at(24 * time.Hour))
		k1.Roles = []string{"developer", "guest"}
		k1.Scopes = []string{"read_file", "git_*", "admin:audit"}
		k2 := newKey("key_two", alice.ID, at(time.Minute))
		k2.Roles, k2.Hash = nil, bytes.Repeat([]byte{0, 0xff}, 16) // binary digest with NUL bytes
		for _, k := range []store.APIKey{k1, k2} {
			must(t, b.CreateAPIKey(ctx, k))
		}
		for _, k := range []store.APIKey{k1, k2} {
			want := k
			want.UserName = "alice"
			got, u, err := b.APIKeyByHash(ctx, k.Hash)
			if err != nil {
				t.Fatalf("APIKeyByHash(%s): %v", k.ID, err)
			}
			if diff := cmp.Diff(want, got, keyOpts); diff != "" {
				t.Errorf("APIKeyByHash(%s) (-want +got):\n%s", k.ID, diff)
			}
			if diff := cmp.Diff(alice, u); diff != "" {
				t.Errorf("APIKeyByHash(%s) user (-want +got):\n%s", k.ID, diff)
			}
			byID, err := b.APIKeyByID(ctx, k.ID)
			if err != nil {
				t.Fatalf("APIKeyByID(%s): %v", k.ID, err)
			}
			if diff := cmp.Diff(want, byID, keyOpts); diff != "" {
				t.Errorf("APIKeyByID(%s) (-want +got):\n%s", k.ID, diff)
			}
		}
		for name, h := range map[string][]byte{
			"a prefix of a hash": []byte("hash-of-key_on"), "a hash plus a byte": []byte("hash-of-key_one\x00"),
			"nil": nil, "empty": {}, "a pattern": []byte("hash-of-%"),
		} {
			if _, _, err := b.APIKeyByHash(ctx, h); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("APIKeyByHash(%s) = %v, want ErrNotFound", name, err)
			}
		}
		for _, id := range []string{"key_nope", "key_%", "", "KEY_ONE"} {
			if _, err := b.APIKeyByID(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("APIKeyByID(%q) = %v, want ErrNotFound", id, err)
			}
		}
	}},
	{name: "CreateRejects", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		alice := ensure(t, b, "alice")
		k := newKey("key_one", alice.ID, t0)
		must(t, b.CreateAPIKey(ctx, k))
		dupID := newKey("key_one", alice.ID, t0)
		dupID.Hash = []byte("another hash")
		dupHash := newKey("key_other", alice.ID, t0)
		dupHash.Hash = k.Hash
		wantErr(t, "CreateAPIKey(duplicate id)", b.CreateAPIKey(ctx, dupID), store.ErrConflict)
		wantErr(t, "CreateAPIKey(duplicate hash)", b.CreateAPIKey(ctx, dupHash), store.ErrConflict)
		wantErr(t, "CreateAPIKey(unknown user)", b.CreateAPIKey(ctx, newKey("key_orphan", alice.ID+1000, t0)), store.ErrNotFound)
		keys, err := b.ListAPIKeys(ctx)
		if err != nil || len(keys) != 1 {
			t.Errorf("ListAPIKeys after refused creations = %d keys, %v; want 1", len(keys), err)
		}
		if got, _, err := b.APIKeyByHash(ctx, k.Hash); err != nil || got.ID != "key_one" {
			t.Errorf("the first key's hash now finds %+v, %v", got, err)
		}
	}},
	{name: "ListNewestFirst", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		if keys, err := b.ListAPIKeys(ctx); err != nil || len(keys) != 0 {
			t.Fatalf("ListAPIKeys on a new store = %d, %v", len(keys), err)
		}
		alice, bob := ensure(t, b, "alice"), ensure(t, b, "bob")
		for i, id := range []string{"key_b", "key_c", "key_a"} {
			u := alice
			if i == 1 {
				u = bob
			}
			must(t, b.CreateAPIKey(ctx, newKey(id, u.ID, at(time.Duration(i)*time.Minute))))
		}
		_, err := b.RevokeAPIKey(ctx, "key_b", at(time.Hour))
		must(t, err)
		keys, err := b.ListAPIKeys(ctx)
		must(t, err)
		var got []string
		for _, k := range keys {
			got = append(got, k.ID+"/"+k.UserName)
		}
		if diff := cmp.Diff([]string{"key_a/alice", "key_c/bob", "key_b/alice"}, got); diff != "" {
			t.Errorf("ListAPIKeys, newest first, revoked ones included (-want +got):\n%s", diff)
		}
		if keys[2].RevokedAt == nil {
			t.Error("ListAPIKeys lost the revocation")
		}
	}},
	{name: "Scopes", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		alice := ensure(t, b, "alice")
		for i, scopes := range [][]string{
			nil,
			{"*"},
			{"read_file"},
			{"read_file", "git_*", "admin:audit", "admin:*"},
			{"z_tool", "a_tool"}, // order kept
		} {
			k := newKey(fmt.Sprintf("key_%d", i), alice.ID, t0)
			k.Scopes = scopes
			must(t, b.CreateAPIKey(ctx, k))
			got, _, err := b.APIKeyByHash(ctx, k.Hash)
			must(t, err)
			if diff := cmp.Diff(scopes, got.Scopes, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("scopes %q (-want +got):\n%s", scopes, diff)
			}
		}
	}},
	{name: "Expiry", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		alice := ensure(t, b, "alice")
		exp := at(time.Hour)
		k := newKey("key_exp", alice.ID, t0)
		k.ExpiresAt = &exp
		forever := newKey("key_forever", alice.ID, t0)
		must(t, b.CreateAPIKey(ctx, k))
		must(t, b.CreateAPIKey(ctx, forever))
		got, _, err := b.APIKeyByHash(ctx, k.Hash)
		must(t, err)
		if got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) {
			t.Fatalf("ExpiresAt = %v, want %v", got.ExpiresAt, exp)
		}
		for _, tc := range []struct {
			now  time.Time
			want bool
		}{{t0, true}, {exp.Add(-time.Microsecond), true}, {exp, false}, {exp.Add(time.Hour), false}} {
			if got.Active(tc.now) != tc.want {
				t.Errorf("stored key Active(%v) = %v, want %v", tc.now, !tc.want, tc.want)
			}
		}
		got, _, err = b.APIKeyByHash(ctx, forever.Hash)
		must(t, err)
		if got.ExpiresAt != nil || !got.Active(at(100*365*24*time.Hour)) {
			t.Errorf("key without expiry read back with ExpiresAt %v", got.ExpiresAt)
		}
	}},
	{name: "Revoke", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		alice := ensure(t, b, "alice")
		must(t, b.CreateAPIKey(ctx, newKey("key_one", alice.ID, t0)))
		must(t, b.CreateAPIKey(ctx, newKey("key_two", alice.ID, t0)))
		when := at(time.Hour)
		k, err := b.RevokeAPIKey(ctx, "key_two", when)
		must(t, err)
		if k.ID != "key_two" || k.UserName != "alice" || k.RevokedAt == nil || !k.RevokedAt.Equal(when) || k.Active(when) {
			t.Errorf("RevokeAPIKey returned %+v; want key_two revoked at %v", k, when)
		}
		wantErr(t, "second revoke", func() error { _, err := b.RevokeAPIKey(ctx, "key_two", at(2*time.Hour)); return err }(), store.ErrNotFound)
		wantErr(t, "revoke unknown", func() error { _, err := b.RevokeAPIKey(ctx, "key_nope", when); return err }(), store.ErrNotFound)
		got, _, err := b.APIKeyByHash(ctx, []byte("hash-of-key_two"))
		if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(when) {
			t.Errorf("stored key after two revocations = %+v, %v; want the first revocation time kept", got, err)
		}
		if other, err := b.APIKeyByID(ctx, "key_one"); err != nil || other.RevokedAt != nil {
			t.Errorf("the other key = %+v, %v; want it untouched", other, err)
		}
	}},
	{name: "Rotate", run: func(t *testing.T, bs []Backend) {
		// Rotation (adminapi) creates the new key naming the old one,
		// then revokes the old one.
		b, ctx := bs[0], t.Context()
		alice := ensure(t, b, "alice", "developer")
		old := newKey("key_old", alice.ID, t0)
		old.Scopes, old.ExpiresAt = []string{"read_file"}, ptr(at(24*time.Hour))
		must(t, b.CreateAPIKey(ctx, old))
		now := at(time.Hour)
		next := newKey("key_new", alice.ID, now)
		next.Scopes, next.ExpiresAt, next.RotatedFrom = old.Scopes, ptr(now.Add(24*time.Hour)), old.ID
		must(t, b.CreateAPIKey(ctx, next))
		_, err := b.RevokeAPIKey(ctx, old.ID, now)
		must(t, err)
		got, _, err := b.APIKeyByHash(ctx, next.Hash)
		must(t, err)
		if got.RotatedFrom != "key_old" || !got.Active(now) {
			t.Errorf("new key = %+v; want active, rotated from key_old", got)
		}
		was, _, err := b.APIKeyByHash(ctx, old.Hash)
		must(t, err)
		if was.Active(now) || was.RotatedFrom != "" {
			t.Errorf("old key = %+v; want revoked, rotated from nothing", was)
		}
	}},
	{name: "RevokeSeenByReplica", handles: 2, run: func(t *testing.T, bs []Backend) {
		a, other, ctx := bs[0], bs[1], t.Context()
		alice := ensure(t, a, "alice", "developer")
		k := newKey("key_one", alice.ID, t0)
		must(t, a.CreateAPIKey(ctx, k))
		got, u, err := other.APIKeyByHash(ctx, k.Hash)
		if err != nil || !got.Active(t0) || u.Name != "alice" {
			t.Fatalf("key created on one handle, looked up on the other: %+v %+v %v", got, u, err)
		}
		_, err = a.RevokeAPIKey(ctx, k.ID, at(time.Minute))
		must(t, err)
		// No polling delay: the next authentication on the other replica refuses it.
		got, _, err = other.APIKeyByHash(ctx, k.Hash)
		if err != nil || got.Active(at(time.Minute)) {
			t.Errorf("key revoked on one handle is %+v (%v) on the other; want revoked at once", got, err)
		}
		if _, err := other.RevokeAPIKey(ctx, k.ID, at(time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("revoking it again on the other handle = %v, want ErrNotFound", err)
		}
	}},
	{name: "ConcurrentRevokeAcrossReplicas", handles: 2, run: func(t *testing.T, bs []Backend) {
		alice := ensure(t, bs[0], "alice")
		must(t, bs[0].CreateAPIKey(t.Context(), newKey("key_one", alice.ID, t0)))
		errs := race(bs, racers, func(i int, b Backend) error {
			_, err := b.RevokeAPIKey(t.Context(), "key_one", at(time.Duration(i+1)*time.Minute))
			return err
		})
		w := oneWinner(t, "RevokeAPIKey", errs, store.ErrNotFound)
		got, err := bs[1].APIKeyByID(t.Context(), "key_one")
		must(t, err)
		if w >= 0 && (got.RevokedAt == nil || !got.RevokedAt.Equal(at(time.Duration(w+1)*time.Minute))) {
			t.Errorf("RevokedAt = %v, want the winner's time %v", got.RevokedAt, at(time.Duration(w+1)*time.Minute))
		}
	}},
}

var sessionCases = []testCase{
	{name: "RecordSessionIdempotent", handles: 2, run: func(t *testing.T, bs []Backend) {
		ctx := t.Context()
		s := store.Session{ID: "sess-1", Principal: "alice", ProtocolVersion: "2025-11-25", ClientName: "cli", CreatedAt: t0}
		for i := range 3 {
			if err := bs[i%2].RecordSession(ctx, s); err != nil {
				t.Errorf("RecordSession #%d: %v", i+1, err)
			}
		}
		changed := s
		changed.Principal, changed.CreatedAt = "mallory", at(time.Hour)
		if err := bs[0].RecordSession(ctx, changed); err != nil {
			t.Errorf("RecordSession(same id, other fields) = %v, want nil (idempotent on ID)", err)
		}
		for _, id := range hostile {
			h := s
			h.ID = id
			if err := bs[0].RecordSession(ctx, h); err != nil {
				t.Errorf("RecordSession(%q) = %v", id, err)
			}
		}
		errs := race(bs, racers, func(_ int, b Backend) error {
			return b.RecordSession(ctx, store.Session{ID: "sess-race", Principal: "bob", CreatedAt: t0})
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("concurrent RecordSession #%d: %v", i, err)
			}
		}
	}},
}
