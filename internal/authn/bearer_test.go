package authn_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/authn/oidc"
	"github.com/portcullis/portcullis/internal/authn/oidctest"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// fakeUsers is a UserStore in memory.
type fakeUsers struct {
	mu    sync.Mutex
	users map[string]store.User
	err   error
}

func (f *fakeUsers) UserByName(_ context.Context, name string) (store.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return store.User{}, f.err
	}
	u, ok := f.users[name]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}

func (f *fakeUsers) EnsureUser(_ context.Context, name string, roles []string) (store.User, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.users[name]; ok {
		return u, false, nil
	}
	u := store.User{ID: int64(len(f.users) + 100), Name: name, Roles: roles}
	f.users[name] = u
	return u, true, nil
}

const audience = "https://gw.example/mcp"

type bearerFixture struct {
	iss     *oidctest.Issuer
	b       *authn.Bearer
	users   *fakeUsers
	created []string
	apiKey  string
}

func newBearer(t *testing.T) *bearerFixture {
	t.Helper()
	iss := oidctest.NewIssuer(t)
	v, err := oidc.New(context.Background(), oidc.Config{Issuer: iss.URL(), Audience: audience,
		RequiredScopes: []string{"mcp:tools"}, RoleMap: map[string]string{"eng": "developer", "ops": "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	f := &bearerFixture{iss: iss, users: &fakeUsers{users: map[string]store.User{
		"oidc:bob":   {ID: 2, Name: "oidc:bob", Disabled: true},
		"oidc:carol": {ID: 3, Name: "oidc:carol", Roles: []string{"guest"}},
		"admin":      {ID: 1, Name: "admin", Roles: []string{"admin"}},
	}}}
	keys := newFakeKeys()
	a := newAuth(t, keys, nil)
	plain, id, prefix, hash := a.NewKey()
	keys.add(store.APIKey{ID: id, UserID: 1, UserName: "admin", Hash: hash, Prefix: prefix, Roles: []string{"admin"}}, f.users.users["admin"])
	f.apiKey = plain
	f.b = &authn.Bearer{Keys: a, OIDC: v, Users: f.users, RequiredScopes: []string{"mcp:tools"},
		OnUserCreated: func(_ context.Context, name string) { f.created = append(f.created, name) }}
	return f
}

func (f *bearerFixture) token(edit func(c map[string]any)) string {
	c := f.iss.ValidClaims(audience, time.Now())
	c["scope"] = "mcp:tools openid"
	c["roles"] = []string{"eng"}
	if edit != nil {
		edit(c)
	}
	return f.iss.Token(c)
}

func TestBearerOIDC(t *testing.T) {
	f := newBearer(t)
	ctx := context.Background()
	p, err := f.b.Authenticate(ctx, f.token(nil))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "oidc:alice" || p.Method != principal.MethodOIDC || !slices.Equal(p.Roles, []string{"developer"}) {
		t.Errorf("principal = %+v", p)
	}
	if !slices.Equal(f.created, []string{"oidc:alice"}) {
		t.Errorf("just-in-time users = %v", f.created)
	}
	if _, err := f.b.Authenticate(ctx, f.token(nil)); err != nil || len(f.created) != 1 {
		t.Errorf("second login: %v, created %v (want no second creation)", err, f.created)
	}
	// Store roles add to token roles; unmapped IdP roles are dropped.
	p, err = f.b.Authenticate(ctx, f.token(func(c map[string]any) { c["sub"] = "carol"; c["roles"] = []string{"eng", "root"} }))
	if err != nil || !slices.Equal(p.Roles, []string{"developer", "guest"}) {
		t.Errorf("carol = %+v, %v; want roles developer+guest", p, err)
	}
	// An IdP user called "admin" is oidc:admin, never the API key user admin.
	p, err = f.b.Authenticate(ctx, f.token(func(c map[string]any) { c["sub"] = "admin"; c["roles"] = []string{"eng"} }))
	if err != nil || p.Name != "oidc:admin" || slices.Contains(p.Roles, "admin") {
		t.Errorf("sub admin = %+v, %v; want oidc:admin without the admin role", p, err)
	}
	// API keys keep working alongside.
	if p, err := f.b.Authenticate(ctx, f.apiKey); err != nil || p.Name != "admin" || p.Method != principal.MethodAPIKey {
		t.Errorf("API key = %+v, %v", p, err)
	}
}

func TestBearerOIDCFailures(t *testing.T) {
	f := newBearer(t)
	other := oidctest.NewIssuer(t) // a different issuer's keys
	for _, tc := range []struct {
		name    string
		token   string
		cause   string
		subject string
		scope   string
	}{
		{"disabled user", f.token(func(c map[string]any) { c["sub"] = "bob" }), authn.CauseDisabled, "", ""},
		{"no roles", f.token(func(c map[string]any) { c["roles"] = []string{"unmapped"} }), authn.CauseNoRoles, "", ""},
		{"expired", f.token(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), "token_expired", "alice", ""},
		{"wrong audience", f.token(func(c map[string]any) { c["aud"] = "https://other.example/mcp" }), "token_wrong_audience", "alice", ""},
		{"foreign key", other.Token(f.iss.ValidClaims(audience, time.Now())), "token_unknown_key", "", ""},
		{"alg none", f.iss.Token(f.iss.ValidClaims(audience, time.Now()), oidctest.WithAlg("none")), "token_alg_not_allowed", "", ""},
		{"scope missing", f.token(func(c map[string]any) { c["scope"] = "openid" }), authn.CauseInsufficientScope, "alice", "mcp:tools"},
		{"username with newline", f.token(func(c map[string]any) { c["sub"] = "alice\nadmin" }), "token_malformed", "alice\nadmin", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := f.b.Authenticate(context.Background(), tc.token)
			var af *authn.Failure
			if !errors.As(err, &af) || p != nil {
				t.Fatalf("Authenticate = %+v, %v; want *authn.Failure", p, err)
			}
			if af.Cause != tc.cause || af.Subject != tc.subject || af.Scope != tc.scope {
				t.Errorf("failure = %+v; want cause %q subject %q scope %q", af, tc.cause, tc.subject, tc.scope)
			}
			if tc.cause != authn.CauseInsufficientScope && !errors.Is(err, authn.ErrUnauthenticated) {
				t.Errorf("%v does not unwrap to ErrUnauthenticated", err)
			}
		})
	}
	if slices.Contains(f.created, "oidc:bob") {
		t.Error("a disabled user was re-created")
	}
	// Store down: a backend error (503), not a silent pass.
	f.users.err = errors.New("database is locked")
	_, err := f.b.Authenticate(context.Background(), f.token(nil))
	var af *authn.Failure
	if !errors.As(err, &af) || af.Cause != authn.CauseBackend {
		t.Errorf("store error: %v; want backend_error", err)
	}
}

// TestBearerOIDCOff: without a verifier a JWT is just a malformed key.
func TestBearerOIDCOff(t *testing.T) {
	f := newBearer(t)
	b := &authn.Bearer{Keys: f.b.Keys, Users: f.users}
	_, err := b.Authenticate(context.Background(), f.token(nil))
	var af *authn.Failure
	if !errors.As(err, &af) || af.Cause != authn.CauseMalformed {
		t.Errorf("JWT with OIDC off: %v; want malformed_credential", err)
	}
}
