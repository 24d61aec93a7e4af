package adminapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/policy"
)

func apiStatus(err error) int {
	var ae *adminapi.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// TestClientAccessRoundTrip drives every issue-4 client method against the
// real API behind bearer authentication.
func TestClientAccessRoundTrip(t *testing.T) {
	f := newAccessFixture(t, true)
	ts := serveAPI(t, f.fixture)
	c := &adminapi.Client{BaseURL: ts.URL, Key: bootstrapKey(t, f.fixture, "root", "admin")}

	// Users.
	u, err := c.CreateUser(ctx(t), adminapi.CreateUserRequest{Name: "alice", Roles: []string{"developer"}})
	if err != nil || u.Name != "alice" || !slices.Equal(u.Roles, []string{"developer"}) {
		t.Fatalf("CreateUser: %+v %v", u, err)
	}
	if _, err := c.CreateUser(ctx(t), adminapi.CreateUserRequest{Name: "alice", Roles: []string{"guest"}}); apiStatus(err) != http.StatusConflict {
		t.Errorf("duplicate CreateUser: %v", err)
	}
	if _, err := c.GetUser(ctx(t), "nobody"); apiStatus(err) != http.StatusNotFound {
		t.Errorf("GetUser unknown: %v", err)
	}
	users, err := c.ListUsers(ctx(t))
	if err != nil || len(users) != 4 {
		t.Errorf("ListUsers: %+v %v", users, err)
	}
	if u, err := c.DisableUser(ctx(t), "alice"); err != nil || !u.Disabled {
		t.Errorf("DisableUser: %+v %v", u, err)
	}
	if u, err := c.GetUser(ctx(t), "alice"); err != nil || !u.Disabled {
		t.Errorf("GetUser after disable: %+v %v", u, err)
	}
	if u, err := c.EnableUser(ctx(t), "alice"); err != nil || u.Disabled {
		t.Errorf("EnableUser: %+v %v", u, err)
	}
	if u, err := c.GrantRole(ctx(t), "alice", "guest"); err != nil || !slices.Equal(u.Roles, []string{"developer", "guest"}) {
		t.Errorf("GrantRole: %+v %v", u, err)
	}
	if u, err := c.RevokeRole(ctx(t), "alice", "developer"); err != nil || !slices.Equal(u.Roles, []string{"guest"}) {
		t.Errorf("RevokeRole: %+v %v", u, err)
	}
	if _, err := c.RevokeRole(ctx(t), "root", "admin"); apiStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), "admin") {
		t.Errorf("RevokeRole of the last admin: %v", err)
	}

	// Roles.
	r, err := c.CreateRole(ctx(t), adminapi.CreateRoleRequest{Name: "reviewer", Description: "reads"})
	if err != nil || r.Name != "reviewer" {
		t.Fatalf("CreateRole: %+v %v", r, err)
	}
	if _, err := c.CreateRole(ctx(t), adminapi.CreateRoleRequest{Name: "reviewer"}); apiStatus(err) != http.StatusConflict {
		t.Errorf("duplicate CreateRole: %v", err)
	}
	r, err = c.GrantPermission(ctx(t), "reviewer", adminapi.GrantPermissionRequest{Action: "call", Pattern: "git_*"})
	if err != nil || !slices.Equal(r.Permissions, []adminapi.PermissionView{{Action: "call", Pattern: "git_*", Effect: "allow"}}) {
		t.Errorf("GrantPermission: %+v %v", r, err)
	}
	if r, err := c.GetRole(ctx(t), "reviewer"); err != nil || len(r.Permissions) != 1 {
		t.Errorf("GetRole: %+v %v", r, err)
	}
	if r, err := c.RevokePermission(ctx(t), "reviewer", adminapi.RevokePermissionRequest{Action: "call", Pattern: "git_*"}); err != nil || len(r.Permissions) != 0 {
		t.Errorf("RevokePermission: %+v %v", r, err)
	}
	roles, err := c.ListRoles(ctx(t))
	if err != nil || len(roles) != 4 {
		t.Errorf("ListRoles: %d %v", len(roles), err)
	}
	if _, err := c.GetRole(ctx(t), "nobody"); apiStatus(err) != http.StatusNotFound {
		t.Errorf("GetRole unknown: %v", err)
	}

	// Keys: rotate; the old key is refused (401), the new one authenticates
	// (and, being a developer's, is refused the admin API with 403).
	k, err := c.CreateKey(ctx(t), adminapi.CreateKeyRequest{User: "bob", Role: "developer", Scopes: []string{"read_file"}})
	if err != nil {
		t.Fatal(err)
	}
	nk, err := c.RotateKey(ctx(t), k.ID, "")
	if err != nil || nk.RotatedFrom != k.ID || !slices.Equal(nk.Scopes, []string{"read_file"}) || nk.Key == "" {
		t.Fatalf("RotateKey: %+v %v", nk, err)
	}
	if _, err := (&adminapi.Client{BaseURL: ts.URL, Key: k.Key}).ListUsers(ctx(t)); apiStatus(err) != http.StatusUnauthorized {
		t.Errorf("old key: %v", err)
	}
	if _, err := (&adminapi.Client{BaseURL: ts.URL, Key: nk.Key}).ListUsers(ctx(t)); apiStatus(err) != http.StatusForbidden {
		t.Errorf("new developer key: %v", err)
	}
	if _, err := c.RotateKey(ctx(t), k.ID, ""); apiStatus(err) != http.StatusConflict {
		t.Errorf("rotate a rotated key: %v", err)
	}

	// Policies.
	f.pa.mu.Lock()
	f.pa.infos = []policy.PolicyInfo{{ID: "p1", File: "a.cedar", Effect: "permit"}}
	f.pa.mu.Unlock()
	pv, err := c.ListPolicies(ctx(t))
	if err != nil || pv.Mode != policy.ModeEnforce || len(pv.Policies) != 1 || pv.Policies[0].ID != "p1" {
		t.Errorf("ListPolicies: %+v %v", pv, err)
	}
	if n, err := c.ReloadPolicies(ctx(t)); err != nil || n != 3 {
		t.Errorf("ReloadPolicies: %d %v", n, err)
	}
	f.pa.mu.Lock()
	f.pa.reloadErr = fmt.Errorf("%w: x.cedar: parse error at x.cedar:1:1", policy.ErrInvalidPolicy)
	f.pa.mu.Unlock()
	_, err = c.ReloadPolicies(ctx(t))
	var ae *adminapi.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || ae.Code != "invalid_policy" || !strings.Contains(ae.Message, "x.cedar:1:1") {
		t.Errorf("ReloadPolicies broken: %v", err)
	}
	res, err := c.TestPolicy(ctx(t), adminapi.PolicyTestRequest{User: "alice", Tool: "read_file", Args: []byte(`{"path":"a"}`)})
	if err != nil || !res.Allow || res.Rule == "" || res.Policies == nil {
		t.Errorf("TestPolicy: %+v %v", res, err)
	}
	if _, err := c.TestPolicy(ctx(t), adminapi.PolicyTestRequest{User: "nobody", Tool: "read_file"}); apiStatus(err) != http.StatusNotFound {
		t.Errorf("TestPolicy unknown user: %v", err)
	}
}

// TestClientAccessRequests pins the method, path and body each client
// method sends, including escaping.
func TestClientAccessRequests(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, strings.TrimSpace(r.Method+" "+r.URL.EscapedPath()+" "+string(body)))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	defer ts.Close()
	c := &adminapi.Client{BaseURL: ts.URL, Key: "pcl_x"}
	cx := ctx(t)
	calls := []func() error{
		func() error { _, err := c.ListUsers(cx); return err },
		func() error {
			_, err := c.CreateUser(cx, adminapi.CreateUserRequest{Name: "a", Roles: []string{"guest"}})
			return err
		},
		func() error { _, err := c.GetUser(cx, "first last"); return err },
		func() error { _, err := c.DisableUser(cx, "a+b"); return err },
		func() error { _, err := c.EnableUser(cx, "a@b.c"); return err },
		func() error { _, err := c.GrantRole(cx, "a", "admin"); return err },
		func() error { _, err := c.RevokeRole(cx, "a", "ad min"); return err },
		func() error { _, err := c.ListRoles(cx); return err },
		func() error { _, err := c.GetRole(cx, "r"); return err },
		func() error { _, err := c.CreateRole(cx, adminapi.CreateRoleRequest{Name: "r"}); return err },
		func() error {
			_, err := c.GrantPermission(cx, "r", adminapi.GrantPermissionRequest{Action: "call", Pattern: "git_*", Effect: "deny"})
			return err
		},
		func() error {
			_, err := c.RevokePermission(cx, "r", adminapi.RevokePermissionRequest{Action: "call", Pattern: "git_*"})
			return err
		},
		func() error { _, err := c.RotateKey(cx, "key_1", ""); return err },
		func() error { _, err := c.RotateKey(cx, "key_1", "24h"); return err },
		func() error { _, err := c.ListPolicies(cx); return err },
		func() error { _, err := c.ReloadPolicies(cx); return err },
		func() error {
			_, err := c.TestPolicy(cx, adminapi.PolicyTestRequest{User: "u", Tool: "t", Args: []byte(`{"a":1}`)})
			return err
		},
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	want := []string{
		"GET /admin/v1/users",
		`POST /admin/v1/users {"name":"a","roles":["guest"]}`,
		"GET /admin/v1/users/first%20last",
		"POST /admin/v1/users/a+b/disable",
		"POST /admin/v1/users/a@b.c/enable",
		`POST /admin/v1/users/a/roles {"role":"admin"}`,
		"DELETE /admin/v1/users/a/roles/ad%20min",
		"GET /admin/v1/roles",
		"GET /admin/v1/roles/r",
		`POST /admin/v1/roles {"name":"r"}`,
		`POST /admin/v1/roles/r/permissions {"action":"call","pattern":"git_*","effect":"deny"}`,
		`DELETE /admin/v1/roles/r/permissions {"action":"call","pattern":"git_*"}`,
		"POST /admin/v1/keys/key_1/rotate {}",
		`POST /admin/v1/keys/key_1/rotate {"expires_in":"24h"}`,
		"GET /admin/v1/policies",
		"POST /admin/v1/policies/reload",
		`POST /admin/v1/policies/test {"user":"u","tool":"t","args":{"a":1}}`,
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestClientAccessRefusesBadNames: names that cannot be one path segment
// are refused before any request is sent.
func TestClientAccessRefusesBadNames(t *testing.T) {
	rt := &countingRT{}
	c := &adminapi.Client{BaseURL: "http://127.0.0.1:1", Key: "pcl_x", HTTP: &http.Client{Transport: rt}}
	cx := context.Background()
	for _, bad := range []string{"", ".", "..", "a/b", "../keys", "a?x=1", "a#f", "/"} {
		for name, call := range map[string]func() error{
			"GetUser":     func() error { _, err := c.GetUser(cx, bad); return err },
			"DisableUser": func() error { _, err := c.DisableUser(cx, bad); return err },
			"EnableUser":  func() error { _, err := c.EnableUser(cx, bad); return err },
			"GrantRole":   func() error { _, err := c.GrantRole(cx, bad, "admin"); return err },
			"RevokeRole":  func() error { _, err := c.RevokeRole(cx, bad, "admin"); return err },
			"RevokeRole2": func() error { _, err := c.RevokeRole(cx, "alice", bad); return err },
			"GetRole":     func() error { _, err := c.GetRole(cx, bad); return err },
			"GrantPerm": func() error {
				_, err := c.GrantPermission(cx, bad, adminapi.GrantPermissionRequest{Action: "call", Pattern: "*"})
				return err
			},
			"RevokePerm": func() error {
				_, err := c.RevokePermission(cx, bad, adminapi.RevokePermissionRequest{Action: "call", Pattern: "*"})
				return err
			},
			"RotateKey": func() error { _, err := c.RotateKey(cx, bad, ""); return err },
		} {
			if err := call(); err == nil {
				t.Errorf("%s(%q) accepted", name, bad)
			}
		}
	}
	if n := rt.count(); n != 0 {
		t.Errorf("%d requests sent for refused names", n)
	}
}
