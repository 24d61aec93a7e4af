package adminapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// fakePolicies is a PolicyAdmin that answers what it is told and records
// what it was asked.
type fakePolicies struct {
	mu         sync.Mutex
	mode       policy.Mode
	infos      []policy.PolicyInfo
	reloadN    int
	reloadErr  error
	reloads    int
	decision   policy.Decision
	explainErr error
	asked      []explainCall
}

type explainCall struct {
	p    principal.Principal
	tool string
	args string
}

var _ adminapi.PolicyAdmin = (*fakePolicies)(nil)

func (f *fakePolicies) Policies() []policy.PolicyInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.infos
}

func (f *fakePolicies) Mode() policy.Mode { return f.mode }

func (f *fakePolicies) Reload(context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return f.reloadN, f.reloadErr
}

func (f *fakePolicies) Explain(_ context.Context, p *principal.Principal, tool string, args json.RawMessage) (policy.Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, explainCall{p: *p, tool: tool, args: string(args)})
	return f.decision, f.explainErr
}

func (f *fakePolicies) counts() (reloads, explains int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads, len(f.asked)
}

// accessFixture is a fixture whose API has a PolicyAdmin (unless nil was
// asked for) and counts AccessChanged calls.
type accessFixture struct {
	*fixture
	pa         *fakePolicies
	changes    atomic.Int32
	changedErr atomic.Pointer[error]
	apiLogs    *strings.Builder
	apiLogsMu  sync.Mutex
}

func newAccessFixture(t *testing.T, withPolicies bool) *accessFixture {
	t.Helper()
	f := newFixture(t)
	af := &accessFixture{fixture: f, apiLogs: &strings.Builder{},
		pa: &fakePolicies{mode: policy.ModeEnforce, reloadN: 3,
			decision: policy.Decision{Allow: true, Rule: "role:developer allow call read_file"}}}
	grants, err := f.db.Grants(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(grants)
	if err != nil {
		t.Fatal(err)
	}
	d := adminapi.Deps{Store: f.db, Authn: f.an, Policy: pol, Audit: f.spy, Now: f.clock.Now,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&af.apiLogsMu, af.apiLogs}, nil)),
		AccessChanged: func(ctx context.Context) error {
			if ctx.Err() != nil {
				t.Error("AccessChanged called with a done context")
			}
			af.changes.Add(1)
			if e := af.changedErr.Load(); e != nil {
				return *e
			}
			return nil
		},
		RequestMeta: func(r *http.Request) (string, string) { return r.Header.Get("X-Test-Rid"), "192.0.2.7:4242" }}
	if withPolicies {
		d.Policies = af.pa
	}
	if f.api, err = adminapi.New(d); err != nil {
		t.Fatal(err)
	}
	return af
}

// types returns the event types recorded for request rid.
func (f *fixture) types(rid string) []audit.Type {
	var out []audit.Type
	for _, e := range f.spy.byRequest(rid) {
		out = append(out, e.Type)
	}
	return out
}

// snapshot is the access state of the store: users, roles with grants
// and keys.
func (f *fixture) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	users, err := f.db.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roles, err := f.db.ListRoles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := f.db.ListAPIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{"users": users, "roles": roles, "keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *fixture) user(t *testing.T, name string) store.User {
	t.Helper()
	u, err := f.db.UserByName(context.Background(), name)
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	return u
}

func (f *fixture) setNow(at time.Time) {
	f.clock.mu.Lock()
	f.clock.now = at
	f.clock.mu.Unlock()
}

func decodeInto[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return v
}

// accessRoutes are the routes of issue 4 with bodies that would change
// something if they were allowed.
func accessRoutes(keyID string) []route {
	return []route{
		{"POST", "/admin/v1/keys/" + keyID + "/rotate", ""},
		{"GET", "/admin/v1/users", ""},
		{"POST", "/admin/v1/users", `{"name":"eve","roles":["admin"]}`},
		{"GET", "/admin/v1/users/root", ""},
		{"POST", "/admin/v1/users/root/disable", ""},
		{"POST", "/admin/v1/users/dev/disable", ""},
		{"POST", "/admin/v1/users/gina/enable", ""},
		{"POST", "/admin/v1/users/gina/roles", `{"role":"admin"}`},
		{"POST", "/admin/v1/users/dev/roles", `{"role":"admin"}`},
		{"DELETE", "/admin/v1/users/root/roles/admin", ""},
		{"GET", "/admin/v1/roles", ""},
		{"POST", "/admin/v1/roles", `{"name":"evil","description":"x"}`},
		{"GET", "/admin/v1/roles/admin", ""},
		{"POST", "/admin/v1/roles/guest/permissions", `{"action":"admin","pattern":"*"}`},
		{"POST", "/admin/v1/roles/developer/permissions", `{"action":"call","pattern":"*"}`},
		{"DELETE", "/admin/v1/roles/developer/permissions", `{"action":"call","pattern":"read_file"}`},
		{"GET", "/admin/v1/policies", ""},
		{"POST", "/admin/v1/policies/reload", ""},
		{"POST", "/admin/v1/policies/test", `{"user":"root","tool":"read_file"}`},
	}
}

// TestAccessRoutesAsAdmin walks every route of issue 4 as an admin: each
// works, emits exactly its admin.* event (by root, ok, with a detail and
// never a key) and calls AccessChanged exactly once if it changed access.
func TestAccessRoutesAsAdmin(t *testing.T) {
	f := newAccessFixture(t, true)
	k := f.createKey("carol", "developer", "")
	f.changes.Store(0)

	covered := map[string]bool{}
	steps := []struct {
		method, path, pattern, body string
		status                      int
		event                       audit.Type // "" for reads
		access                      bool       // changes users, roles, grants or keys
	}{
		{"GET", "/admin/v1/users", "GET /admin/v1/users", "", 200, "", false},
		{"POST", "/admin/v1/users", "POST /admin/v1/users", `{"name":"alice","roles":["developer"]}`, 201, audit.AdminUserCreate, true},
		{"GET", "/admin/v1/users/alice", "GET /admin/v1/users/{name}", "", 200, "", false},
		{"POST", "/admin/v1/users/alice/disable", "POST /admin/v1/users/{name}/disable", "", 200, audit.AdminUserDisable, true},
		{"POST", "/admin/v1/users/alice/enable", "POST /admin/v1/users/{name}/enable", "", 200, audit.AdminUserEnable, true},
		{"POST", "/admin/v1/users/alice/roles", "POST /admin/v1/users/{name}/roles", `{"role":"guest"}`, 200, audit.AdminUserGrant, true},
		{"DELETE", "/admin/v1/users/alice/roles/guest", "DELETE /admin/v1/users/{name}/roles/{role}", "", 200, audit.AdminUserRevoke, true},
		{"GET", "/admin/v1/roles", "GET /admin/v1/roles", "", 200, "", false},
		{"POST", "/admin/v1/roles", "POST /admin/v1/roles", `{"name":"reviewer","description":"reads git"}`, 201, audit.AdminRoleCreate, true},
		{"GET", "/admin/v1/roles/reviewer", "GET /admin/v1/roles/{name}", "", 200, "", false},
		{"POST", "/admin/v1/roles/reviewer/permissions", "POST /admin/v1/roles/{name}/permissions", `{"action":"call","pattern":"git_*"}`, 200, audit.AdminRoleGrant, true},
		{"DELETE", "/admin/v1/roles/reviewer/permissions", "DELETE /admin/v1/roles/{name}/permissions", `{"action":"call","pattern":"git_*"}`, 200, audit.AdminRoleRevoke, true},
		{"POST", "/admin/v1/keys/" + k.ID + "/rotate", "POST /admin/v1/keys/{id}/rotate", "", 201, audit.AdminKeyRotate, true},
		{"GET", "/admin/v1/policies", "GET /admin/v1/policies", "", 200, "", false},
		{"POST", "/admin/v1/policies/reload", "POST /admin/v1/policies/reload", "", 200, audit.AdminPolicyReload, false},
		{"POST", "/admin/v1/policies/test", "POST /admin/v1/policies/test", `{"user":"alice","tool":"read_file"}`, 200, audit.AdminPolicyTest, false},
	}
	for _, s := range steps {
		covered[s.pattern] = true
		before := f.changes.Load()
		w, rid := f.do(rootP, s.method, s.path, s.body)
		if w.Code != s.status {
			t.Fatalf("%s %s: status %d, want %d: %s", s.method, s.path, w.Code, s.status, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", s.method, s.path, ct)
		}
		evs := f.spy.byRequest(rid)
		switch {
		case s.event == "" && len(evs) != 0:
			t.Errorf("%s %s: a read emitted %v", s.method, s.path, f.types(rid))
		case s.event != "" && (len(evs) != 1 || evs[0].Type != s.event):
			t.Errorf("%s %s: events %v, want [%s]", s.method, s.path, f.types(rid), s.event)
		case s.event != "":
			e := evs[0]
			if e.Principal != "root" || e.Status != audit.StatusOK || e.Detail == "" || e.RemoteAddr != "192.0.2.7:4242" {
				t.Errorf("%s %s: event %+v", s.method, s.path, e)
			}
			if strings.Contains(e.Detail, authn.KeyPrefix) && !strings.Contains(e.Detail, "key_") {
				t.Errorf("%s %s: detail %q looks like it carries a key", s.method, s.path, e.Detail)
			}
		}
		want := before
		if s.access {
			want++
		}
		if got := f.changes.Load(); got != want {
			t.Errorf("%s %s: AccessChanged called %d times, want %d", s.method, s.path, got-before, want-before)
		}
	}
	for _, r := range f.api.Routes() {
		p := r.Method + " " + r.Path
		if !covered[p] && !slices.Contains([]string{"GET /admin/v1/keys", "POST /admin/v1/keys", "DELETE /admin/v1/keys/{id}",
			"GET /admin/v1/audit", "GET /admin/v1/audit/export", "POST /admin/v1/audit/checkpoint",
			"GET /admin/v1/violations", "GET /admin/v1/quarantines", "POST /admin/v1/quarantines",
			"POST /admin/v1/quarantines/release", "GET /admin/v1/usage",
			"GET /admin/v1/approvals", "GET /admin/v1/approvals/{id}", "POST /admin/v1/approvals/{id}/approve",
			"POST /admin/v1/approvals/{id}/deny",
			// plugins_test.go exercises these.
			"GET /admin/v1/plugins", "GET /admin/v1/plugins/{server}/tools/{tool}",
			"POST /admin/v1/plugins/{server}/tools/{tool}/accept",
			// secrets_test.go, health_test.go and openapi_test.go exercise these.
			"GET /admin/v1/secrets", "GET /admin/v1/health", "GET /admin/v1/openapi.json"}, p) {
			t.Errorf("route %s is not exercised by this test", p)
		}
	}
}

// TestAccessRoutesDeniedToNonAdmins: guests, developers and principals
// with look-alike roles get 403 on every route of issue 4; each attempt
// is one admin.denied event; nothing changes in the store, the policy
// engine is not asked and AccessChanged is not called.
func TestAccessRoutesDeniedToNonAdmins(t *testing.T) {
	f := newAccessFixture(t, true)
	k := f.createKey("carol", "developer", "")
	f.changes.Store(0)
	before := f.snapshot(t)
	for _, p := range []*principal.Principal{
		guestP, devP,
		{Name: "caps", Roles: []string{"Admin"}, Method: principal.MethodAPIKey},
		{Name: "root", Roles: []string{"developer"}, Method: principal.MethodAPIKey}, // an admin's name, not its role
	} {
		for _, r := range accessRoutes(k.ID) {
			t.Run(p.Name+" "+r.method+" "+r.path, func(t *testing.T) {
				w, rid := f.do(p, r.method, r.path, r.body)
				if w.Code != http.StatusForbidden {
					t.Fatalf("status %d, want 403: %s", w.Code, w.Body)
				}
				if code, msg := decodeErr(t, w); code != "forbidden" || msg != "access denied" {
					t.Errorf("body %s", w.Body)
				}
				evs := f.spy.byRequest(rid)
				if len(evs) != 1 || evs[0].Type != audit.AdminDenied || evs[0].Principal != p.Name ||
					evs[0].Status != audit.StatusRefused || !strings.Contains(evs[0].Detail, r.path) {
					t.Errorf("events %+v, want one admin.denied", evs)
				}
			})
		}
	}
	if after := f.snapshot(t); after != before {
		t.Errorf("denied requests changed the store:\n%s", cmp.Diff(before, after))
	}
	if n := f.changes.Load(); n != 0 {
		t.Errorf("AccessChanged called %d times for denied requests", n)
	}
	if reloads, explains := f.pa.counts(); reloads != 0 || explains != 0 {
		t.Errorf("denied requests reached the policy engine: %d reloads, %d explains", reloads, explains)
	}
	// Unauthenticated: 401, no event.
	for _, r := range accessRoutes(k.ID) {
		w, rid := f.do(nil, r.method, r.path, r.body)
		if w.Code != http.StatusUnauthorized || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("no principal %s %s: %d, events %v", r.method, r.path, w.Code, f.types(rid))
		}
	}
	if after := f.snapshot(t); after != before {
		t.Error("unauthenticated requests changed the store")
	}
}

func TestUsers(t *testing.T) {
	f := newAccessFixture(t, true)
	w, _ := f.do(rootP, "POST", "/admin/v1/users", `{"name":"alice","roles":["guest","developer","guest"]}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	v := decodeInto[adminapi.UserView](t, w.Body.Bytes())
	if diff := cmp.Diff(adminapi.UserView{Name: "alice", Roles: []string{"developer", "guest"}, CreatedAt: t0}, v); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	if u := f.user(t, "alice"); !slices.Equal(u.Roles, []string{"developer", "guest"}) || u.Disabled {
		t.Errorf("stored %+v", u)
	}

	w, _ = f.do(rootP, "GET", "/admin/v1/users", "")
	list := decodeInto[struct{ Users []adminapi.UserView }](t, w.Body.Bytes())
	var names []string
	for _, u := range list.Users {
		names = append(names, u.Name)
		if u.Roles == nil {
			t.Errorf("user %s: roles null", u.Name)
		}
	}
	if diff := cmp.Diff([]string{"alice", "dev", "gina", "root"}, names); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	w, _ = f.do(rootP, "GET", "/admin/v1/users/alice", "")
	if got := decodeInto[adminapi.UserView](t, w.Body.Bytes()); w.Code != 200 || got.Name != "alice" {
		t.Errorf("get: %d %s", w.Code, w.Body)
	}
	for _, name := range []string{"nobody", "ALICE", "alice%20", url.PathEscape("alice'; DROP TABLE users;--"), url.PathEscape("admin' OR '1'='1")} {
		for _, r := range []route{{"GET", "/admin/v1/users/" + name, ""}, {"POST", "/admin/v1/users/" + name + "/disable", ""},
			{"POST", "/admin/v1/users/" + name + "/roles", `{"role":"admin"}`}, {"DELETE", "/admin/v1/users/" + name + "/roles/admin", ""}} {
			if w, rid := f.do(rootP, r.method, r.path, r.body); w.Code != http.StatusNotFound || len(f.spy.byRequest(rid)) != 0 {
				t.Errorf("%s %s: %d %s", r.method, r.path, w.Code, w.Body)
			}
		}
	}

	// A key of alice works until she is disabled, and again once enabled.
	key := f.createKey("alice", "developer", "")
	f.changes.Store(0)
	w, rid := f.do(rootP, "POST", "/admin/v1/users/alice/disable", "")
	if w.Code != 200 || !decodeInto[adminapi.UserView](t, w.Body.Bytes()).Disabled {
		t.Fatalf("disable: %d %s", w.Code, w.Body)
	}
	if evs := f.spy.byRequest(rid); len(evs) != 1 || !strings.Contains(evs[0].Detail, "alice") {
		t.Errorf("disable events %+v", evs)
	}
	if _, err := f.an.Authenticate(context.Background(), key.Key); err == nil {
		t.Error("a disabled user's key still authenticates")
	}
	// Disabling again changes nothing: no event, no AccessChanged.
	w, rid = f.do(rootP, "POST", "/admin/v1/users/alice/disable", "")
	if w.Code != 200 || len(f.spy.byRequest(rid)) != 0 || f.changes.Load() != 1 {
		t.Errorf("second disable: %d, events %v, changes %d", w.Code, f.types(rid), f.changes.Load())
	}
	w, _ = f.do(rootP, "POST", "/admin/v1/users/alice/enable", "")
	if w.Code != 200 || decodeInto[adminapi.UserView](t, w.Body.Bytes()).Disabled {
		t.Fatalf("enable: %d %s", w.Code, w.Body)
	}
	if _, err := f.an.Authenticate(context.Background(), key.Key); err != nil {
		t.Errorf("an enabled user's key: %v", err)
	}

	// Roles: grant, grant again (nothing), revoke, revoke again (404).
	w, rid = f.do(rootP, "POST", "/admin/v1/users/alice/roles", `{"role":"admin"}`)
	if got := decodeInto[adminapi.UserView](t, w.Body.Bytes()); w.Code != 200 || !slices.Equal(got.Roles, []string{"admin", "developer", "guest"}) {
		t.Errorf("grant: %d %s", w.Code, w.Body)
	}
	if evs := f.spy.byRequest(rid); len(evs) != 1 || evs[0].Type != audit.AdminUserGrant || !strings.Contains(evs[0].Detail, `"admin"`) {
		t.Errorf("grant events %+v", evs)
	}
	n := f.changes.Load()
	if w, rid := f.do(rootP, "POST", "/admin/v1/users/alice/roles", `{"role":"admin"}`); w.Code != 200 || len(f.spy.byRequest(rid)) != 0 || f.changes.Load() != n {
		t.Errorf("grant of a held role: %d, events %v", w.Code, f.types(rid))
	}
	w, rid = f.do(rootP, "DELETE", "/admin/v1/users/alice/roles/guest", "")
	if got := decodeInto[adminapi.UserView](t, w.Body.Bytes()); w.Code != 200 || !slices.Equal(got.Roles, []string{"admin", "developer"}) {
		t.Errorf("revoke: %d %s", w.Code, w.Body)
	}
	if u := f.user(t, "alice"); !slices.Equal(u.Roles, []string{"admin", "developer"}) {
		t.Errorf("stored roles after revoke %v", u.Roles)
	}
	if got := f.types(rid); !slices.Equal(got, []audit.Type{audit.AdminUserRevoke}) {
		t.Errorf("revoke events %v", got)
	}
	for _, r := range []route{
		{"DELETE", "/admin/v1/users/alice/roles/guest", ""},     // not held
		{"DELETE", "/admin/v1/users/alice/roles/superuser", ""}, // no such role
	} {
		if w, rid := f.do(rootP, r.method, r.path, r.body); w.Code != http.StatusNotFound || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("%s %s: %d %s", r.method, r.path, w.Code, w.Body)
		}
	}
	for _, body := range []string{`{"role":"superuser"}`, `{"role":""}`, `{"role":"Admin"}`, `{"role":"admin","x":1}`, `{"role":"admin"}{}`, `["admin"]`, ``} {
		if w, rid := f.do(rootP, "POST", "/admin/v1/users/gina/roles", body); w.Code != http.StatusBadRequest || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("grant %s: %d %s", body, w.Code, w.Body)
		}
	}
	if u := f.user(t, "gina"); !slices.Equal(u.Roles, []string{"guest"}) {
		t.Errorf("gina's roles changed: %v", u.Roles)
	}
}

func TestCreateUserRefused(t *testing.T) {
	f := newAccessFixture(t, true)
	before := f.snapshot(t)
	cases := map[string]struct {
		body   string
		status int
	}{
		"existing user":        {`{"name":"dev","roles":["admin"]}`, http.StatusConflict},
		"existing admin":       {`{"name":"root","roles":["guest"]}`, http.StatusConflict},
		"unknown role":         {`{"name":"alice","roles":["superuser"]}`, http.StatusBadRequest},
		"one unknown role":     {`{"name":"alice","roles":["guest","superuser"]}`, http.StatusBadRequest},
		"role case":            {`{"name":"alice","roles":["Admin"]}`, http.StatusBadRequest},
		"no roles":             {`{"name":"alice","roles":[]}`, http.StatusBadRequest},
		"missing roles":        {`{"name":"alice"}`, http.StatusBadRequest},
		"null roles":           {`{"name":"alice","roles":null}`, http.StatusBadRequest},
		"too many roles":       {`{"name":"alice","roles":[` + strings.TrimSuffix(strings.Repeat(`"guest",`, 33), ",") + `]}`, http.StatusBadRequest},
		"sql drop":             {`{"name":"alice'; DROP TABLE users;--","roles":["guest"]}`, http.StatusBadRequest},
		"sql or":               {`{"name":"admin' OR '1'='1","roles":["guest"]}`, http.StatusBadRequest},
		"sql in role":          {`{"name":"alice","roles":["guest' OR '1'='1"]}`, http.StatusBadRequest},
		"empty name":           {`{"name":"","roles":["guest"]}`, http.StatusBadRequest},
		"name too long":        {`{"name":"` + strings.Repeat("a", 65) + `","roles":["guest"]}`, http.StatusBadRequest},
		"name with slash":      {`{"name":"a/b","roles":["guest"]}`, http.StatusBadRequest},
		"name with newline":    {`{"name":"a\nb","roles":["guest"]}`, http.StatusBadRequest},
		"name homoglyph":       {`{"name":"rооt","roles":["guest"]}`, http.StatusBadRequest},
		"unknown field":        {`{"name":"alice","roles":["guest"],"disabled":false}`, http.StatusBadRequest},
		"role instead":         {`{"name":"alice","role":"guest"}`, http.StatusBadRequest},
		"trailing object":      {`{"name":"alice","roles":["guest"]}{"name":"mallory","roles":["admin"]}`, http.StatusBadRequest},
		"trailing garbage":     {`{"name":"alice","roles":["guest"]} x`, http.StatusBadRequest},
		"roles string":         {`{"name":"alice","roles":"admin"}`, http.StatusBadRequest},
		"null":                 {`null`, http.StatusBadRequest},
		"array":                {`[{"name":"alice","roles":["guest"]}]`, http.StatusBadRequest},
		"empty":                {``, http.StatusBadRequest},
		"duplicate name field": {`{"name":"alice","name":"root","roles":["admin"]}`, http.StatusConflict},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			w, rid := f.do(rootP, "POST", "/admin/v1/users", c.body)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			decodeErr(t, w)
			if len(f.spy.byRequest(rid)) != 0 {
				t.Errorf("refused request emitted %v", f.types(rid))
			}
		})
	}
	if after := f.snapshot(t); after != before {
		t.Errorf("refused requests changed the store:\n%s", cmp.Diff(before, after))
	}
	if n := f.changes.Load(); n != 0 {
		t.Errorf("AccessChanged called %d times for refused requests", n)
	}
	// The edges of the name rule are accepted.
	for _, name := range []string{"a", strings.Repeat("b", 64), "first.last@example.com", "ci-bot_2"} {
		if w, _ := f.do(rootP, "POST", "/admin/v1/users", fmt.Sprintf(`{"name":%q,"roles":["guest"]}`, name)); w.Code != http.StatusCreated {
			t.Errorf("name %q: %d %s", name, w.Code, w.Body)
		}
	}
}

func TestRoles(t *testing.T) {
	f := newAccessFixture(t, true)
	w, rid := f.do(rootP, "POST", "/admin/v1/roles", `{"name":"reviewer","description":"reads files and git history"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	if diff := cmp.Diff(adminapi.RoleView{Name: "reviewer", Description: "reads files and git history", Permissions: []adminapi.PermissionView{}},
		decodeInto[adminapi.RoleView](t, w.Body.Bytes())); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	if evs := f.spy.byRequest(rid); len(evs) != 1 || !strings.Contains(evs[0].Detail, "reviewer") {
		t.Errorf("events %+v", evs)
	}
	if w, rid := f.do(rootP, "POST", "/admin/v1/roles", `{"name":"reviewer"}`); w.Code != http.StatusConflict || len(f.spy.byRequest(rid)) != 0 {
		t.Errorf("duplicate: %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(rootP, "POST", "/admin/v1/roles", `{"name":"admin"}`); w.Code != http.StatusConflict {
		t.Errorf("duplicate admin: %d %s", w.Code, w.Body)
	}

	// Grant: effect defaults to allow; the answer and the store agree.
	grant := func(body string) adminapi.RoleView {
		t.Helper()
		w, _ := f.do(rootP, "POST", "/admin/v1/roles/reviewer/permissions", body)
		if w.Code != http.StatusOK {
			t.Fatalf("grant %s: %d %s", body, w.Code, w.Body)
		}
		return decodeInto[adminapi.RoleView](t, w.Body.Bytes())
	}
	grant(`{"action":"call","pattern":"read_file"}`)
	v := grant(`{"action":"call","pattern":"git_*"}`)
	want := []adminapi.PermissionView{{"call", "git_*", "allow"}, {"call", "read_file", "allow"}}
	if diff := cmp.Diff(want, v.Permissions); diff != "" {
		t.Errorf("after grant (-want +got):\n%s", diff)
	}
	w, _ = f.do(rootP, "GET", "/admin/v1/roles/reviewer", "")
	if diff := cmp.Diff(v, decodeInto[adminapi.RoleView](t, w.Body.Bytes())); diff != "" {
		t.Errorf("GET disagrees with the grant answer (-grant +get):\n%s", diff)
	}
	// The grant is in the store as given, so the engine would apply it.
	grants, _ := f.db.Grants(context.Background())
	eng, err := policy.New(grants)
	if err != nil {
		t.Fatal(err)
	}
	rp := &principal.Principal{Name: "x", Roles: []string{"reviewer"}, Method: principal.MethodAPIKey}
	if !eng.Decide(rp, policy.ActionCall, "git_diff").Allow || eng.Decide(rp, policy.ActionCall, "write_file").Allow {
		t.Error("stored grants do not say what was granted")
	}

	// Granting the same permission again changes nothing.
	n := f.changes.Load()
	if w, rid := f.do(rootP, "POST", "/admin/v1/roles/reviewer/permissions", `{"action":"call","pattern":"git_*","effect":"allow"}`); w.Code != 200 || len(f.spy.byRequest(rid)) != 0 || f.changes.Load() != n {
		t.Errorf("same grant: %d events %v", w.Code, f.types(rid))
	}
	// The other effect replaces it.
	v = grant(`{"action":"call","pattern":"git_*","effect":"deny"}`)
	if diff := cmp.Diff([]adminapi.PermissionView{{"call", "git_*", "deny"}, {"call", "read_file", "allow"}}, v.Permissions); diff != "" {
		t.Errorf("after deny (-want +got):\n%s", diff)
	}

	// Revoke with the pattern in the body.
	w, rid = f.do(rootP, "DELETE", "/admin/v1/roles/reviewer/permissions", `{"action":"call","pattern":"git_*"}`)
	if w.Code != 200 {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	if diff := cmp.Diff([]adminapi.PermissionView{{"call", "read_file", "allow"}}, decodeInto[adminapi.RoleView](t, w.Body.Bytes()).Permissions); diff != "" {
		t.Errorf("after revoke (-want +got):\n%s", diff)
	}
	if evs := f.spy.byRequest(rid); len(evs) != 1 || evs[0].Type != audit.AdminRoleRevoke || !strings.Contains(evs[0].Detail, "git_*") {
		t.Errorf("revoke events %+v", evs)
	}
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/roles/reviewer/permissions", `{"action":"call","pattern":"git_*"}`); w.Code != http.StatusNotFound {
		t.Errorf("second revoke: %d %s", w.Code, w.Body)
	}
	// A literal '*' grant is not a wildcard for revocation.
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/roles/reviewer/permissions", `{"action":"call","pattern":"*"}`); w.Code != http.StatusNotFound {
		t.Errorf("revoke '*': %d %s", w.Code, w.Body)
	}
	if v, _ := f.do(rootP, "GET", "/admin/v1/roles/reviewer", ""); !strings.Contains(v.Body.String(), "read_file") {
		t.Error("revoking '*' removed other grants")
	}

	w, _ = f.do(rootP, "GET", "/admin/v1/roles", "")
	roles := decodeInto[struct{ Roles []adminapi.RoleView }](t, w.Body.Bytes()).Roles
	var names []string
	for _, r := range roles {
		names = append(names, r.Name)
		if r.Name == "admin" && !slices.Contains(r.Permissions, adminapi.PermissionView{Action: "admin", Pattern: "*", Effect: "allow"}) {
			t.Errorf("admin role %+v", r)
		}
	}
	if diff := cmp.Diff([]string{"admin", "developer", "guest", "reviewer"}, names); diff != "" {
		t.Errorf("roles (-want +got):\n%s", diff)
	}
	for _, r := range []route{
		{"GET", "/admin/v1/roles/nobody", ""},
		{"GET", "/admin/v1/roles/" + url.PathEscape("admin' OR '1'='1"), ""},
		{"POST", "/admin/v1/roles/nobody/permissions", `{"action":"call","pattern":"*"}`},
		{"DELETE", "/admin/v1/roles/nobody/permissions", `{"action":"call","pattern":"read_file"}`},
	} {
		if w, rid := f.do(rootP, r.method, r.path, r.body); w.Code != http.StatusNotFound || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("%s %s: %d %s", r.method, r.path, w.Code, w.Body)
		}
	}
}

func TestRolesRefused(t *testing.T) {
	f := newAccessFixture(t, true)
	before := f.snapshot(t)
	for name, body := range map[string]string{
		"upper case":        `{"name":"Reviewer"}`,
		"leading digit":     `{"name":"1role"}`,
		"too long":          `{"name":"` + strings.Repeat("r", 33) + `"}`,
		"empty":             `{"name":""}`,
		"space":             `{"name":"a b"}`,
		"sql drop":          `{"name":"x'; DROP TABLE roles;--"}`,
		"sql or":            `{"name":"admin' OR '1'='1"}`,
		"glob":              `{"name":"*"}`,
		"newline desc":      `{"name":"ok","description":"a\nb"}`,
		"tab desc":          `{"name":"ok","description":"a\tb"}`,
		"long desc":         `{"name":"ok","description":"` + strings.Repeat("d", 257) + `"}`,
		"unknown field":     `{"name":"ok","permissions":[]}`,
		"trailing":          `{"name":"ok"}{"name":"evil"}`,
		"not object":        `"ok"`,
		"name wrong type":   `{"name":7}`,
		"trailing newline":  `{"name":"ok\n"}`,
		"unicode lookalike": `{"name":"аdmin"}`,
	} {
		if w, rid := f.do(rootP, "POST", "/admin/v1/roles", body); w.Code != http.StatusBadRequest || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	long := strings.Repeat("p", 129)
	for name, body := range map[string]string{
		"bad action":       `{"action":"execute","pattern":"*"}`,
		"empty action":     `{"action":"","pattern":"*"}`,
		"action case":      `{"action":"Call","pattern":"*"}`,
		"bad effect":       `{"action":"call","pattern":"*","effect":"maybe"}`,
		"effect case":      `{"action":"call","pattern":"*","effect":"Allow"}`,
		"empty pattern":    `{"action":"call","pattern":""}`,
		"slash":            `{"action":"call","pattern":"a/b"}`,
		"bad glob":         `{"action":"call","pattern":"git_["}`,
		"trailing escape":  `{"action":"call","pattern":"git\\"}`,
		"too long":         `{"action":"call","pattern":"` + long + `"}`,
		"control":          `{"action":"call","pattern":"read\u0000file"}`,
		"newline":          `{"action":"call","pattern":"read_file\n"}`,
		"space":            `{"action":"call","pattern":"' OR 1=1 --"}`,
		"unknown field":    `{"action":"call","pattern":"*","role":"admin"}`,
		"trailing":         `{"action":"call","pattern":"x"}{"action":"admin","pattern":"*"}`,
		"missing pattern":  `{"action":"call"}`,
		"pattern as array": `{"action":"call","pattern":["*"]}`,
	} {
		if w, rid := f.do(rootP, "POST", "/admin/v1/roles/guest/permissions", body); w.Code != http.StatusBadRequest || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("grant %s: %d %s", name, w.Code, w.Body)
		}
	}
	for name, body := range map[string]string{
		"effect field":  `{"action":"call","pattern":"read_file","effect":"allow"}`,
		"bad action":    `{"action":"execute","pattern":"read_file"}`,
		"empty pattern": `{"action":"call","pattern":""}`,
		"no body":       ``,
		"trailing":      `{"action":"call","pattern":"read_file"} {}`,
	} {
		if w, rid := f.do(rootP, "DELETE", "/admin/v1/roles/guest/permissions", body); w.Code != http.StatusBadRequest || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("revoke %s: %d %s", name, w.Code, w.Body)
		}
	}
	if after := f.snapshot(t); after != before {
		t.Errorf("refused requests changed the store:\n%s", cmp.Diff(before, after))
	}
	if n := f.changes.Load(); n != 0 {
		t.Errorf("AccessChanged called %d times", n)
	}
	// Limits that are accepted, and injection-like text stored literally.
	for _, body := range []string{
		`{"name":"` + strings.Repeat("r", 32) + `"}`,
		`{"name":"x","description":"'); DROP TABLE roles;--"}`,
	} {
		if w, _ := f.do(rootP, "POST", "/admin/v1/roles", body); w.Code != http.StatusCreated {
			t.Errorf("%s: %d %s", body, w.Code, w.Body)
		}
	}
	w, _ := f.do(rootP, "GET", "/admin/v1/roles/x", "")
	if v := decodeInto[adminapi.RoleView](t, w.Body.Bytes()); v.Description != "'); DROP TABLE roles;--" {
		t.Errorf("description not stored literally: %+v", v)
	}
	if roles, err := f.db.Roles(context.Background()); err != nil || len(roles) != 5 {
		t.Errorf("roles after injection-like text: %v %v", roles, err)
	}
	for _, p := range []string{strings.Repeat("p", 128), "notes__*", "git_?tatus", "[a-c]*", "*"} {
		if w, _ := f.do(rootP, "POST", "/admin/v1/roles/x/permissions", fmt.Sprintf(`{"action":"approve","pattern":%q}`, p)); w.Code != 200 {
			t.Errorf("pattern %q: %d %s", p, w.Code, w.Body)
		}
	}
}

// TestLastAdminProtected: operators cannot lock themselves out of the
// admin API through it.
func TestLastAdminProtected(t *testing.T) {
	f := newAccessFixture(t, true)
	rootKey := f.createKey("root", "admin", "")
	f.changes.Store(0)
	before := f.snapshot(t)
	refused := []struct {
		name string
		route
	}{
		{"disable the last admin", route{"POST", "/admin/v1/users/root/disable", ""}},
		{"revoke admin from the last admin", route{"DELETE", "/admin/v1/users/root/roles/admin", ""}},
		{"revoke admin * from role admin", route{"DELETE", "/admin/v1/roles/admin/permissions", `{"action":"admin","pattern":"*"}`}},
		{"deny admin * to role admin", route{"POST", "/admin/v1/roles/admin/permissions", `{"action":"admin","pattern":"*","effect":"deny"}`}},
		{"deny admin users to role admin", route{"POST", "/admin/v1/roles/admin/permissions", `{"action":"admin","pattern":"users","effect":"deny"}`}},
		{"deny admin r* to role admin", route{"POST", "/admin/v1/roles/admin/permissions", `{"action":"admin","pattern":"r*","effect":"deny"}`}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			w, rid := f.do(rootP, c.method, c.path, c.body)
			if w.Code != http.StatusConflict {
				t.Fatalf("status %d, want 409: %s", w.Code, w.Body)
			}
			code, msg := decodeErr(t, w)
			if code != "conflict" || !strings.Contains(msg, "admin") {
				t.Errorf("error %s: %s", code, msg)
			}
			if len(f.spy.byRequest(rid)) != 0 {
				t.Errorf("refused change emitted %v", f.types(rid))
			}
		})
	}
	if after := f.snapshot(t); after != before {
		t.Fatalf("refused changes changed the store:\n%s", cmp.Diff(before, after))
	}
	if n := f.changes.Load(); n != 0 {
		t.Errorf("AccessChanged called %d times for refused changes", n)
	}
	if _, err := f.an.Authenticate(context.Background(), rootKey.Key); err != nil {
		t.Fatalf("root's key stopped working: %v", err)
	}

	// With a second administrator, the first may go; then the second is the last.
	if w, _ := f.do(rootP, "POST", "/admin/v1/users", `{"name":"root2","roles":["admin"]}`); w.Code != http.StatusCreated {
		t.Fatal(w.Body)
	}
	if w, _ := f.do(rootP, "POST", "/admin/v1/users/root/disable", ""); w.Code != 200 {
		t.Fatalf("disable root with root2 admin: %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/users/root2/roles/admin", ""); w.Code != http.StatusConflict {
		t.Errorf("revoke admin from root2 (now the last): %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(rootP, "POST", "/admin/v1/users/root2/disable", ""); w.Code != http.StatusConflict {
		t.Errorf("disable root2 (now the last): %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(rootP, "POST", "/admin/v1/users/root/enable", ""); w.Code != 200 {
		t.Fatal(w.Body)
	}

	// A deny in another role does not count against a user whose admin
	// keys do not carry it; a deny in a role that is the only admin path does.
	if w, _ := f.do(rootP, "POST", "/admin/v1/roles", `{"name":"ops"}`); w.Code != 201 {
		t.Fatal(w.Body)
	}
	if w, _ := f.do(rootP, "POST", "/admin/v1/roles/ops/permissions", `{"action":"admin","pattern":"*","effect":"deny"}`); w.Code != 200 {
		t.Errorf("deny in a role nobody holds: %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(rootP, "POST", "/admin/v1/users/root/roles", `{"role":"ops"}`); w.Code != 200 {
		t.Errorf("giving root a role with a deny: %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(rootP, "POST", "/admin/v1/roles/ops/permissions", `{"action":"admin","pattern":"*","effect":"allow"}`); w.Code != 200 {
		t.Fatal(w.Body)
	}
	// Now ops (allow *) is an admin path too: role admin may lose its
	// grants' protection only through the explicit rule, which still holds.
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/roles/admin/permissions", `{"action":"admin","pattern":"*"}`); w.Code != http.StatusConflict {
		t.Errorf("admin * of role admin is always kept: %d %s", w.Code, w.Body)
	}
	// Take admin from both root and root2: ops keeps root an administrator.
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/users/root2/roles/admin", ""); w.Code != 200 {
		t.Errorf("revoke admin from root2: %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/users/root/roles/admin", ""); w.Code != 200 {
		t.Errorf("revoke admin from root who keeps ops: %d %s", w.Code, w.Body)
	}
	// ops is root's only path now.
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/roles/ops/permissions", `{"action":"admin","pattern":"*"}`); w.Code != http.StatusConflict {
		t.Errorf("revoke the last admin path: %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(rootP, "POST", "/admin/v1/roles/ops/permissions", `{"action":"admin","pattern":"keys","effect":"deny"}`); w.Code != http.StatusConflict {
		t.Errorf("deny keys on the last admin path: %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/users/root/roles/ops", ""); w.Code != http.StatusConflict {
		t.Errorf("revoke the last admin path from root: %d %s", w.Code, w.Body)
	}
}

// TestLockoutCheckWithoutStoredAdmins: administrators that are not in the
// store (OIDC claims) do not make every change impossible.
func TestLockoutCheckWithoutStoredAdmins(t *testing.T) {
	f := newAccessFixture(t, true)
	if _, err := f.db.SetUserDisabled(context.Background(), "root", true); err != nil {
		t.Fatal(err)
	}
	oidcAdmin := &principal.Principal{Name: "sso-admin", Roles: []string{"admin"}, Method: principal.MethodOIDC}
	if w, _ := f.do(oidcAdmin, "POST", "/admin/v1/users/dev/disable", ""); w.Code != 200 {
		t.Errorf("disable with no stored admins: %d %s", w.Code, w.Body)
	}
	if w, _ := f.do(oidcAdmin, "DELETE", "/admin/v1/users/root/roles/admin", ""); w.Code != 200 {
		t.Errorf("revoke from a disabled admin: %d %s", w.Code, w.Body)
	}
}

// TestAccessChangedFailureStillSucceeds: the change is stored and
// audited; a failing AccessChanged is logged and the answer is success.
func TestAccessChangedFailureStillSucceeds(t *testing.T) {
	f := newAccessFixture(t, true)
	e := errors.New("grants reload failed")
	f.changedErr.Store(&e)
	w, rid := f.do(rootP, "POST", "/admin/v1/users", `{"name":"alice","roles":["guest"]}`)
	if w.Code != http.StatusCreated || len(f.spy.byRequest(rid)) != 1 {
		t.Errorf("%d %s events %v", w.Code, w.Body, f.types(rid))
	}
	if f.changes.Load() != 1 {
		t.Errorf("AccessChanged called %d times", f.changes.Load())
	}
	f.apiLogsMu.Lock()
	logs := f.apiLogs.String()
	f.apiLogsMu.Unlock()
	if !strings.Contains(logs, "grants reload failed") {
		t.Errorf("failure not logged: %s", logs)
	}
}

// TestAccessAuditUnavailable: when a change cannot be audited the answer
// is 503 and AccessChanged is not called (the poller will still apply it).
func TestAccessAuditUnavailable(t *testing.T) {
	cases := []struct {
		typ audit.Type
		route
	}{
		{audit.AdminUserCreate, route{"POST", "/admin/v1/users", `{"name":"alice","roles":["guest"]}`}},
		{audit.AdminUserDisable, route{"POST", "/admin/v1/users/dev/disable", ""}},
		{audit.AdminUserGrant, route{"POST", "/admin/v1/users/dev/roles", `{"role":"guest"}`}},
		{audit.AdminUserRevoke, route{"DELETE", "/admin/v1/users/dev/roles/developer", ""}},
		{audit.AdminRoleCreate, route{"POST", "/admin/v1/roles", `{"name":"ops"}`}},
		{audit.AdminRoleGrant, route{"POST", "/admin/v1/roles/guest/permissions", `{"action":"call","pattern":"git_log"}`}},
		{audit.AdminRoleRevoke, route{"DELETE", "/admin/v1/roles/guest/permissions", `{"action":"call","pattern":"read_file"}`}},
		{audit.AdminPolicyTest, route{"POST", "/admin/v1/policies/test", `{"user":"dev","tool":"read_file"}`}},
	}
	for _, c := range cases {
		t.Run(string(c.typ), func(t *testing.T) {
			f := newAccessFixture(t, true)
			f.spy.failOn(c.typ)
			w, _ := f.do(rootP, c.method, c.path, c.body)
			if w.Code != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503: %s", w.Code, w.Body)
			}
			if code, _ := decodeErr(t, w); code != "audit_unavailable" {
				t.Errorf("code %q", code)
			}
			if n := f.changes.Load(); n != 0 {
				t.Errorf("AccessChanged called %d times without an audit record", n)
			}
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	f := newAccessFixture(t, true)
	body := `{"name":"alice","roles":["guest"],"x":"` + strings.Repeat("a", 1<<20) + `"}`
	w, _ := f.do(rootP, "POST", "/admin/v1/users", body)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d", w.Code)
	}
	// Valid JSON followed by more than the limit of padding and a second
	// object is refused, not cut at the limit and accepted.
	body = `{"name":"alice","roles":["guest"]}` + strings.Repeat(" ", 1<<20) + `{"name":"mallory","roles":["admin"]}`
	if w, _ := f.do(rootP, "POST", "/admin/v1/users", body); w.Code/100 != 4 {
		t.Errorf("padded trailing object: %d", w.Code)
	}
	if _, err := f.db.UserByName(context.Background(), "alice"); err == nil {
		t.Error("an oversized body created a user")
	}
}

// TestConcurrentLastAdminRemoval: two administrators disabling each other
// at once cannot both succeed.
func TestConcurrentLastAdminRemoval(t *testing.T) {
	f := newAccessFixture(t, true)
	if w, _ := f.do(rootP, "POST", "/admin/v1/users", `{"name":"root2","roles":["admin"]}`); w.Code != 201 {
		t.Fatal(w.Body)
	}
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, name := range []string{"root", "root2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := newReq(t, "POST", "/admin/v1/users/"+name+"/disable", rootP)
			w := newRecorder()
			f.api.ServeHTTP(w, req)
			codes[i] = w.Code
		}()
	}
	wg.Wait()
	slices.Sort(codes)
	if !slices.Equal(codes, []int{200, 409}) {
		t.Errorf("codes %v, want one 200 and one 409", codes)
	}
	users, _ := f.db.ListUsers(context.Background())
	enabledAdmins := 0
	for _, u := range users {
		if !u.Disabled && slices.Contains(u.Roles, "admin") {
			enabledAdmins++
		}
	}
	if enabledAdmins != 1 {
		t.Errorf("%d enabled admins left", enabledAdmins)
	}
}

// newReq builds a request as p, for use from several goroutines (f.do
// counts requests and is not safe for that).
func newReq(t *testing.T, method, target string, p *principal.Principal) *http.Request {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	return req.WithContext(principal.NewContext(req.Context(), p))
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
