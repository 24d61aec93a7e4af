package adminapi_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// TestNoEscalationThroughKeys: an administrator limited to the keys area
// cannot mint or take over keys for roles it does not hold, nor create
// users or grant them roles through key creation; a scoped key issues no
// keys. (Found by the e2e bypass suite: keys-only admin → admin key.)
func TestNoEscalationThroughKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.db.CreateRole(ctx, "keyadmin", "manages keys"); err != nil {
		t.Fatal(err)
	}
	if err := f.db.GrantPermission(ctx, store.Grant{Role: "keyadmin", Action: "admin", Pattern: "keys", Effect: "allow"}); err != nil {
		t.Fatal(err)
	}
	grants, err := f.db.Grants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.pol.Replace(grants); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, role string }{{"kim", "keyadmin"}, {"ken", "keyadmin"}} {
		if _, _, err := f.db.EnsureUser(ctx, u.name, []string{u.role}); err != nil {
			t.Fatal(err)
		}
	}
	kim := &principal.Principal{UserID: 10, Name: "kim", Roles: []string{"keyadmin"}, KeyID: "key_kim", Method: principal.MethodAPIKey}
	rootKey := f.createKey("root", "admin", "")
	devKey := f.createKey("dev", "developer", "")
	before := f.keyCount(t)

	for _, tc := range []struct{ name, method, path, body string }{
		{"admin key for self", "POST", "/admin/v1/keys", `{"user":"kim","role":"admin"}`},
		{"admin key for root", "POST", "/admin/v1/keys", `{"user":"root","role":"admin"}`},
		{"developer key for dev", "POST", "/admin/v1/keys", `{"user":"dev","role":"developer"}`},
		{"own role for a new user", "POST", "/admin/v1/keys", `{"user":"newbie","role":"keyadmin"}`},
		{"own role granted to dev", "POST", "/admin/v1/keys", `{"user":"dev","role":"keyadmin"}`},
		{"rotate root's admin key", "POST", "/admin/v1/keys/" + rootKey.ID + "/rotate", ``},
		{"rotate dev's key", "POST", "/admin/v1/keys/" + devKey.ID + "/rotate", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, rid := f.do(kim, tc.method, tc.path, tc.body)
			if w.Code != http.StatusForbidden {
				t.Fatalf("%d %s; want 403", w.Code, w.Body)
			}
			evs := f.spy.byRequest(rid)
			if len(evs) != 1 || evs[0].Type != audit.AdminDenied || evs[0].Principal != "kim" {
				t.Errorf("admin.denied events = %+v", evs)
			}
		})
	}
	if n := f.keyCount(t); n != before {
		t.Errorf("%d keys created by refused requests", n-before)
	}
	for _, name := range []string{"kim", "dev"} {
		u, err := f.db.UserByName(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(u.Roles, "admin") || name == "dev" && slices.Contains(u.Roles, "keyadmin") {
			t.Errorf("%s gained a role: %v", name, u.Roles)
		}
	}
	if _, err := f.db.UserByName(ctx, "newbie"); err == nil {
		t.Error("a keys-only admin created a user")
	}
	// What a keys-only admin may do: keys of its own role for users who
	// already hold it, and rotate them.
	w, _ := f.do(kim, "POST", "/admin/v1/keys", `{"user":"ken","role":"keyadmin"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("keyadmin key for ken: %d %s", w.Code, w.Body)
	}
	// A full administrator still issues any role, and a scoped admin key none.
	if w, _ := f.do(rootP, "POST", "/admin/v1/keys", `{"user":"newcomer","role":"developer"}`); w.Code != http.StatusCreated {
		t.Errorf("root: %d %s", w.Code, w.Body)
	}
	scoped := &principal.Principal{UserID: 1, Name: "root", Roles: []string{"admin"}, Scopes: []string{"read_file"}, Method: principal.MethodAPIKey}
	if w, _ := f.do(scoped, "POST", "/admin/v1/keys", `{"user":"dev","role":"developer"}`); w.Code != http.StatusForbidden {
		t.Errorf("scoped admin key issued a key: %d %s", w.Code, w.Body)
	}
}
