package oidc

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

// TestClaimsValidation mutates one claim of a valid token at a time. The
// skew is the default 60s and now is t0.
func TestClaimsValidation(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	v := newStatic(t, iss, nil)
	u := iss.URL()
	unix := func(d time.Duration) int64 { return t0.Add(d).Unix() }
	cases := []struct {
		name  string
		edit  func(c map[string]any)
		cause string // "" = accepted
	}{
		{"valid", func(c map[string]any) {}, ""},
		// aud (RFC 8707, RFC 7519 §4.1.3)
		{"aud-wrong", func(c map[string]any) { c["aud"] = "https://evil.example/mcp" }, CauseWrongAudience},
		{"aud-array-without-ours", func(c map[string]any) { c["aud"] = []string{"https://a.example", "https://b.example"} }, CauseWrongAudience},
		{"aud-array-with-ours", func(c map[string]any) { c["aud"] = []string{"https://a.example", testAudience} }, ""},
		{"aud-missing", func(c map[string]any) { delete(c, "aud") }, CauseWrongAudience},
		{"aud-empty-array", func(c map[string]any) { c["aud"] = []string{} }, CauseWrongAudience},
		{"aud-trailing-slash", func(c map[string]any) { c["aud"] = testAudience + "/" }, CauseWrongAudience},
		{"aud-prefix", func(c map[string]any) { c["aud"] = "https://mcp.example.com" }, CauseWrongAudience},
		{"aud-case", func(c map[string]any) { c["aud"] = strings.ToUpper(testAudience) }, CauseWrongAudience},
		{"aud-space-joined", func(c map[string]any) { c["aud"] = "https://a.example " + testAudience }, CauseWrongAudience},
		{"aud-number", func(c map[string]any) { c["aud"] = 1 }, CauseMalformed},
		{"aud-array-with-null", func(c map[string]any) { c["aud"] = []any{testAudience, nil} }, CauseMalformed},
		{"aud-object", func(c map[string]any) { c["aud"] = map[string]any{"aud": testAudience} }, CauseMalformed},
		// iss: byte for byte
		{"iss-missing", func(c map[string]any) { delete(c, "iss") }, CauseWrongIssuer},
		{"iss-trailing-slash", func(c map[string]any) { c["iss"] = u + "/" }, CauseWrongIssuer},
		{"iss-prefix", func(c map[string]any) { c["iss"] = u[:len(u)-1] }, CauseWrongIssuer},
		{"iss-suffix", func(c map[string]any) { c["iss"] = u + ".evil.example" }, CauseWrongIssuer},
		{"iss-path-suffix", func(c map[string]any) { c["iss"] = u + "/evil" }, CauseWrongIssuer},
		{"iss-case", func(c map[string]any) { c["iss"] = strings.ToUpper(u) }, CauseWrongIssuer},
		{"iss-https-variant", func(c map[string]any) { c["iss"] = strings.Replace(u, "http://", "https://", 1) }, CauseWrongIssuer},
		{"iss-localhost-alias", func(c map[string]any) { c["iss"] = strings.Replace(u, "127.0.0.1", "localhost", 1) }, CauseWrongIssuer},
		{"iss-whitespace", func(c map[string]any) { c["iss"] = " " + u }, CauseWrongIssuer},
		{"iss-array", func(c map[string]any) { c["iss"] = []string{u} }, CauseMalformed},
		// exp
		{"exp-missing", func(c map[string]any) { delete(c, "exp") }, CauseMalformed},
		{"exp-past", func(c map[string]any) { c["exp"] = unix(-2 * time.Hour) }, CauseExpired},
		{"exp-at-now-minus-skew", func(c map[string]any) { c["exp"] = unix(-DefaultSkew) }, ""},
		{"exp-at-now-minus-skew-1s", func(c map[string]any) { c["exp"] = unix(-DefaultSkew - time.Second) }, CauseExpired},
		{"exp-fractional", func(c map[string]any) { c["exp"] = float64(unix(time.Hour)) + 0.5 }, ""},
		{"exp-string", func(c map[string]any) { c["exp"] = "2099-01-01" }, CauseMalformed},
		{"exp-numeric-string", func(c map[string]any) { c["exp"] = "4102444800" }, CauseMalformed},
		{"exp-negative", func(c map[string]any) { c["exp"] = -1 }, CauseMalformed},
		{"exp-huge", func(c map[string]any) { c["exp"] = 1e300 }, CauseMalformed},
		{"exp-null", func(c map[string]any) { c["exp"] = nil }, CauseMalformed},
		{"exp-zero", func(c map[string]any) { c["exp"] = 0 }, CauseExpired},
		// nbf
		{"nbf-future", func(c map[string]any) { c["nbf"] = unix(2 * time.Minute) }, CauseNotYetValid},
		{"nbf-within-skew", func(c map[string]any) { c["nbf"] = unix(DefaultSkew) }, ""},
		{"nbf-skew-plus-1s", func(c map[string]any) { c["nbf"] = unix(DefaultSkew + time.Second) }, CauseNotYetValid},
		{"nbf-string", func(c map[string]any) { c["nbf"] = "now" }, CauseMalformed},
		// iat
		{"iat-far-future", func(c map[string]any) { c["iat"] = unix(24 * time.Hour) }, CauseIssuedInFuture},
		{"iat-within-skew", func(c map[string]any) { c["iat"] = unix(DefaultSkew) }, ""},
		{"iat-missing", func(c map[string]any) { delete(c, "iat") }, ""},
		{"iat-bool", func(c map[string]any) { c["iat"] = true }, CauseMalformed},
		// sub / username
		{"sub-missing", func(c map[string]any) { delete(c, "sub") }, CauseNoSubject},
		{"sub-empty", func(c map[string]any) { c["sub"] = "" }, CauseNoSubject},
		{"sub-number", func(c map[string]any) { c["sub"] = 42 }, CauseMalformed},
		{"jti-number", func(c map[string]any) { c["jti"] = 42 }, CauseMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims := iss.ValidClaims(testAudience, t0)
			c.edit(claims)
			tok := iss.Token(claims)
			got, err := v.Verify(context.Background(), tok)
			if c.cause == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if got.Subject != "alice" {
					t.Fatalf("Subject = %q", got.Subject)
				}
				return
			}
			f := wantFailure(t, err, c.cause, tok)
			// The signature verified, so the (string) sub is reported.
			if sub, _ := claims["sub"].(string); f.Subject != sub {
				t.Fatalf("Failure.Subject = %q, want %q", f.Subject, sub)
			}
		})
	}
}

// TestClaimsRawPayload covers payloads a map cannot express.
func TestClaimsRawPayload(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	v := newStatic(t, iss, nil)
	good := `"iss":"` + iss.URL() + `","aud":"` + testAudience + `","exp":` + itoa(t0.Add(time.Hour).Unix())
	cases := []struct {
		name, payload, cause string
	}{
		{"dup-sub", `{` + good + `,"sub":"alice","sub":"admin"}`, CauseMalformed},
		{"dup-aud", `{` + good + `,"sub":"alice","aud":"https://evil.example"}`, CauseMalformed},
		{"dup-nested", `{` + good + `,"sub":"alice","realm_access":{"roles":["a"],"roles":["admin"]}}`, CauseMalformed},
		{"array", `["alice"]`, CauseMalformed},
		{"empty", ``, CauseMalformed},
		{"null", `null`, CauseMalformed},
		{"trailing-garbage", `{` + good + `,"sub":"alice"}x`, CauseMalformed},
		{"two-objects", `{` + good + `,"sub":"alice"}{}`, CauseMalformed},
		{"exponent-exp", `{"iss":"` + iss.URL() + `","aud":"` + testAudience + `","sub":"alice","exp":4.1e9}`, ""},
		{"ok", `{` + good + `,"sub":"alice"}`, ""},
		{"whitespace-ok", "{ \"iss\" : \"" + iss.URL() + "\",\n\t\"aud\" :  \"" + testAudience + "\" , \"sub\":\"alice\", \"exp\" : 4.1e9, \"scope\" : \" a \" }", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := iss.Token(nil, oidctest.WithPayload([]byte(c.payload)))
			_, err := v.Verify(context.Background(), tok)
			if c.cause == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantFailure(t, err, c.cause, tok)
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestClaimsExtraction: roles and scopes in the shapes IdPs use.
func TestClaimsExtraction(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	cases := []struct {
		name       string
		cfg        func(*Config)
		extra      map[string]any
		wantUser   string
		wantRoles  []string
		wantScopes []string
		cause      string
	}{
		{name: "roles-array", extra: map[string]any{"roles": []string{"b", "a", "b"}}, wantRoles: []string{"a", "b"}},
		{name: "roles-space-string", extra: map[string]any{"roles": "writer  reader"}, wantRoles: []string{"reader", "writer"}},
		{name: "roles-absent", extra: nil},
		{name: "roles-null", extra: map[string]any{"roles": nil}},
		{name: "roles-number", extra: map[string]any{"roles": 3}, cause: CauseMalformed},
		{name: "roles-array-of-numbers", extra: map[string]any{"roles": []any{"a", 1}}, cause: CauseMalformed},
		{name: "roles-array-with-null", extra: map[string]any{"roles": []any{"a", nil}}, cause: CauseMalformed},
		{
			name:      "keycloak-nested",
			cfg:       func(c *Config) { c.RolesClaim = "realm_access.roles" },
			extra:     map[string]any{"realm_access": map[string]any{"roles": []string{"offline_access", "mcp-admin"}}},
			wantRoles: []string{"mcp-admin", "offline_access"},
		},
		{
			name:      "keycloak-client-roles-3-levels",
			cfg:       func(c *Config) { c.RolesClaim = "resource_access.portcullis.roles" },
			extra:     map[string]any{"resource_access": map[string]any{"portcullis": map[string]any{"roles": []string{"tool-user"}}}},
			wantRoles: []string{"tool-user"},
		},
		{
			name:      "dotted-literal-wins",
			cfg:       func(c *Config) { c.RolesClaim = "https://example.com/roles" },
			extra:     map[string]any{"https://example.com/roles": []string{"auth0-role"}},
			wantRoles: []string{"auth0-role"},
		},
		{
			name:  "nested-path-missing",
			cfg:   func(c *Config) { c.RolesClaim = "realm_access.roles" },
			extra: map[string]any{"realm_access": "not an object"},
		},
		{
			name:  "nested-wrong-type",
			cfg:   func(c *Config) { c.RolesClaim = "realm_access.roles" },
			extra: map[string]any{"realm_access": map[string]any{"roles": map[string]any{}}},
			cause: CauseMalformed,
		},
		{
			name: "rolemap-drops-unmapped",
			cfg: func(c *Config) {
				c.RoleMap = map[string]string{"idp-admins": "admin", "idp-devs": "developer", "idp-ops": "admin"}
			},
			extra:     map[string]any{"roles": []string{"idp-admins", "idp-ops", "everyone", "admin"}},
			wantRoles: []string{"admin"},
		},
		{
			name:      "groups-claim-with-rolemap",
			cfg:       func(c *Config) { c.RolesClaim = "groups"; c.RoleMap = map[string]string{"eng": "developer"} },
			extra:     map[string]any{"groups": []string{"eng", "sales"}, "roles": []string{"admin"}},
			wantRoles: []string{"developer"},
		},
		{name: "scope-string", extra: map[string]any{"scope": "tools:call  tools:list"}, wantScopes: []string{"tools:call", "tools:list"}},
		{name: "scp-array", extra: map[string]any{"scp": []string{"tools.read", "tools.write"}}, wantScopes: []string{"tools.read", "tools.write"}},
		{name: "scope-and-scp-union", extra: map[string]any{"scope": "a b", "scp": []string{"b", "c"}}, wantScopes: []string{"a", "b", "c"}},
		{name: "scope-tab-is-not-a-separator", extra: map[string]any{"scope": "a\tb"}, wantScopes: []string{"a\tb"}},
		{name: "scope-number", extra: map[string]any{"scope": 1}, cause: CauseMalformed},
		{name: "scp-number", extra: map[string]any{"scp": 1}, cause: CauseMalformed},
		{
			name:       "custom-scopes-claim-ignores-scp",
			cfg:        func(c *Config) { c.ScopesClaim = "permissions" },
			extra:      map[string]any{"permissions": []string{"p1"}, "scp": []string{"ignored"}, "scope": "ignored"},
			wantScopes: []string{"p1"},
		},
		{name: "username-email", cfg: func(c *Config) { c.UsernameClaim = "email" }, extra: map[string]any{"email": "alice@example.com"}, wantUser: "alice@example.com"},
		{name: "username-missing", cfg: func(c *Config) { c.UsernameClaim = "preferred_username" }, cause: CauseNoSubject},
		{name: "username-empty", cfg: func(c *Config) { c.UsernameClaim = "email" }, extra: map[string]any{"email": ""}, cause: CauseNoSubject},
		{name: "username-not-string", cfg: func(c *Config) { c.UsernameClaim = "email" }, extra: map[string]any{"email": []string{"a"}}, cause: CauseMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := newStatic(t, iss, c.cfg)
			claims := iss.ValidClaims(testAudience, t0)
			for k, x := range c.extra {
				claims[k] = x
			}
			tok := iss.Token(claims)
			got, err := v.Verify(context.Background(), tok)
			if c.cause != "" {
				wantFailure(t, err, c.cause, tok)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			wantUser := c.wantUser
			if wantUser == "" {
				wantUser = "alice"
			}
			if got.Username != wantUser {
				t.Errorf("Username = %q, want %q", got.Username, wantUser)
			}
			if d := cmp.Diff(c.wantRoles, got.Roles, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("Roles (-want +got):\n%s", d)
			}
			if d := cmp.Diff(c.wantScopes, got.Scopes, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("Scopes (-want +got):\n%s", d)
			}
		})
	}
}

// TestRequiredScopes: a verified token without a required scope is
// ErrInsufficientScope (not ErrInvalidToken) and names the subject.
func TestRequiredScopes(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	v := newStatic(t, iss, func(c *Config) { c.RequiredScopes = []string{"mcp:tools", "mcp:read"} })
	cases := []struct {
		name  string
		extra map[string]any
		ok    bool
	}{
		{"all-in-scope", map[string]any{"scope": "openid mcp:read mcp:tools"}, true},
		{"all-in-scp", map[string]any{"scp": []string{"mcp:read", "mcp:tools"}}, true},
		{"split-across-claims", map[string]any{"scope": "mcp:read", "scp": []string{"mcp:tools"}}, true},
		{"one-missing", map[string]any{"scope": "mcp:read"}, false},
		{"none", nil, false},
		{"prefix-only", map[string]any{"scope": "mcp:tool mcp:read"}, false},
		{"joined", map[string]any{"scp": []string{"mcp:read mcp:tools"}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims := iss.ValidClaims(testAudience, t0)
			claims["sub"] = "bob"
			for k, x := range c.extra {
				claims[k] = x
			}
			tok := iss.Token(claims)
			_, err := v.Verify(context.Background(), tok)
			if c.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			f := wantFailure(t, err, CauseInsufficientScope, tok)
			if f.Subject != "bob" {
				t.Fatalf("Subject = %q, want bob", f.Subject)
			}
		})
	}
	// Scope is checked last: an expired token without the scope is expired.
	claims := iss.ValidClaims(testAudience, t0)
	claims["exp"] = t0.Add(-time.Hour).Unix()
	_, err := v.Verify(context.Background(), iss.Token(claims))
	if !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrInsufficientScope) {
		t.Fatalf("expired token without scope: %v, want ErrInvalidToken only", err)
	}
}

// TestMaxAge: iat older than MaxAge (+skew) or missing is too_old.
func TestMaxAge(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	v := newStatic(t, iss, func(c *Config) { c.MaxAge = 10 * time.Minute })
	cases := []struct {
		name  string
		iat   any
		cause string
	}{
		{"fresh", t0.Unix(), ""},
		{"at-limit", t0.Add(-10*time.Minute - DefaultSkew).Unix(), ""},
		{"past-limit", t0.Add(-10*time.Minute - DefaultSkew - time.Second).Unix(), CauseTooOld},
		{"ancient", int64(0), CauseTooOld},
		{"missing", nil, CauseTooOld},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims := iss.ValidClaims(testAudience, t0)
			if c.iat == nil {
				delete(claims, "iat")
			} else {
				claims["iat"] = c.iat
			}
			tok := iss.Token(claims)
			_, err := v.Verify(context.Background(), tok)
			if c.cause == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantFailure(t, err, c.cause, tok)
		})
	}
}
