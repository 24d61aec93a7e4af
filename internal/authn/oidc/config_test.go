package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

// TestConfigValidation: New and NewWithKeys refuse bad configs with an
// ErrConfig naming the field.
func TestConfigValidation(t *testing.T) {
	base := func() Config {
		return Config{Issuer: "https://idp.example.com/realms/a", Audience: "https://mcp.example.com/mcp"}
	}
	cases := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"issuer-empty", func(c *Config) { c.Issuer = "" }, "Issuer"},
		{"issuer-http-remote", func(c *Config) { c.Issuer = "http://idp.example.com" }, "Issuer"},
		{"issuer-http-localhost", func(c *Config) { c.Issuer = "http://localhost:8080" }, ""},
		{"issuer-http-127", func(c *Config) { c.Issuer = "http://127.0.0.1:8080/realms/x" }, ""},
		{"issuer-http-127.5", func(c *Config) { c.Issuer = "http://127.0.0.5" }, ""},
		{"issuer-http-ipv6-loopback", func(c *Config) { c.Issuer = "http://[::1]:9000" }, ""},
		{"issuer-http-localhost-suffix", func(c *Config) { c.Issuer = "http://localhost.evil.example" }, "Issuer"},
		{"issuer-http-0.0.0.0", func(c *Config) { c.Issuer = "http://0.0.0.0" }, "Issuer"},
		{"issuer-relative", func(c *Config) { c.Issuer = "/realms/a" }, "Issuer"},
		{"issuer-no-scheme", func(c *Config) { c.Issuer = "idp.example.com" }, "Issuer"},
		{"issuer-ftp", func(c *Config) { c.Issuer = "ftp://idp.example.com" }, "Issuer"},
		{"issuer-query", func(c *Config) { c.Issuer = "https://idp.example.com?x=1" }, "Issuer"},
		{"issuer-empty-query", func(c *Config) { c.Issuer = "https://idp.example.com?" }, "Issuer"},
		{"issuer-fragment", func(c *Config) { c.Issuer = "https://idp.example.com#x" }, "Issuer"},
		{"issuer-userinfo", func(c *Config) { c.Issuer = "https://u:p@idp.example.com" }, "Issuer"},
		{"issuer-bad-url", func(c *Config) { c.Issuer = "https://idp.example.com/%zz" }, "Issuer"},
		{"audience-empty", func(c *Config) { c.Audience = "" }, "Audience"},
		{"audience-relative", func(c *Config) { c.Audience = "mcp" }, "Audience"},
		{"audience-fragment", func(c *Config) { c.Audience = "https://mcp.example.com/#x" }, "Audience"},
		{"audience-space", func(c *Config) { c.Audience = "https://mcp.example.com/ x" }, "Audience"},
		{"audience-api-uri", func(c *Config) { c.Audience = "api://portcullis" }, ""},
		{"audience-bad-url", func(c *Config) { c.Audience = "https://mcp.example.com/%zz" }, "Audience"},
		{"alg-none", func(c *Config) { c.Algorithms = []string{"RS256", "none"} }, "Algorithms"},
		{"alg-None-with-hmac", func(c *Config) { c.AllowHMAC = true; c.Algorithms = []string{"None"} }, "Algorithms"},
		{"alg-hs256-without-allowhmac", func(c *Config) { c.Algorithms = []string{"HS256"} }, "Algorithms"},
		{"alg-hs256-with-allowhmac", func(c *Config) { c.AllowHMAC = true; c.Algorithms = []string{"HS256"} }, ""},
		{"alg-lowercase", func(c *Config) { c.Algorithms = []string{"rs256"} }, "Algorithms"},
		{"alg-unknown", func(c *Config) { c.Algorithms = []string{"ES256K"} }, "Algorithms"},
		{"alg-all-asymmetric", func(c *Config) {
			c.Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
		}, ""},
		{"skew-negative", func(c *Config) { c.Skew = -time.Second }, "Skew"},
		{"skew-5m", func(c *Config) { c.Skew = 5 * time.Minute }, ""},
		{"skew-over-5m", func(c *Config) { c.Skew = 5*time.Minute + time.Second }, "Skew"},
		{"maxage-negative", func(c *Config) { c.MaxAge = -1 }, "MaxAge"},
		{"username-claim-spaces", func(c *Config) { c.UsernameClaim = " email" }, "UsernameClaim"},
		{"roles-claim-spaces", func(c *Config) { c.RolesClaim = "roles " }, "RolesClaim"},
		{"rolemap-empty-value", func(c *Config) { c.RoleMap = map[string]string{"a": ""} }, "RoleMap"},
		{"rolemap-empty-key", func(c *Config) { c.RoleMap = map[string]string{"": "admin"} }, "RoleMap"},
		{"required-scope-space", func(c *Config) { c.RequiredScopes = []string{"a b"} }, "RequiredScopes"},
		{"required-scope-empty", func(c *Config) { c.RequiredScopes = []string{""} }, "RequiredScopes"},
		{"jwks-ttl-negative", func(c *Config) { c.JWKSCacheTTL = -1 }, "JWKSCacheTTL"},
		{"jwks-interval-over-ttl", func(c *Config) { c.JWKSCacheTTL = time.Minute; c.JWKSRefreshInterval = 2 * time.Minute }, "JWKSRefreshInterval"},
	}
	jwks := oidctest.NewIssuer(t).JWKS()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.edit(&cfg)
			_, err := NewWithKeys(cfg, jwks)
			if c.field == "" {
				if err != nil {
					t.Fatalf("NewWithKeys: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), ": "+c.field+": ") {
				t.Fatalf("err = %v, want ErrConfig naming %s", err, c.field)
			}
			// New validates before touching the network.
			if _, err := New(context.Background(), cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("New err = %v, want ErrConfig", err)
			}
		})
	}
}

// TestConfigDefaults: zero values take the documented defaults, and the
// Verifier does not alias the caller's slices and maps.
func TestConfigDefaults(t *testing.T) {
	algs := []string{"RS256"}
	roleMap := map[string]string{"g": "r"}
	scopes := []string{"s"}
	v, err := NewWithKeys(Config{
		Issuer: "https://idp.example.com", Audience: testAudience,
		Algorithms: algs, RoleMap: roleMap, RequiredScopes: scopes,
	}, oidctest.NewIssuer(t).JWKS())
	if err != nil {
		t.Fatal(err)
	}
	c := v.cfg
	if c.Skew != DefaultSkew || c.UsernameClaim != "sub" || c.RolesClaim != "roles" || c.ScopesClaim != "scope" ||
		c.JWKSCacheTTL != DefaultJWKSCacheTTL || c.JWKSRefreshInterval != DefaultJWKSRefreshInterval ||
		c.HTTPClient == nil || c.HTTPClient.Timeout != DefaultHTTPTimeout || c.Now == nil {
		t.Fatalf("defaults not applied: %+v", c)
	}
	algs[0], roleMap["g"], scopes[0] = "none", "admin", "x"
	if v.cfg.Algorithms[0] != "RS256" || v.cfg.RoleMap["g"] != "r" || v.cfg.RequiredScopes[0] != "s" {
		t.Fatal("Verifier aliases the caller's Config slices or maps")
	}
	d, err := NewWithKeys(Config{Issuer: "https://idp.example.com", Audience: testAudience}, oidctest.NewIssuer(t).JWKS())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"RS256", "PS256", "ES256", "EdDSA"}, d.cfg.Algorithms); diff != "" {
		t.Fatalf("default algorithms (-want +got):\n%s", diff)
	}
}

// TestStaticKeySetRefusals: NewWithKeys refuses sets New would tolerate.
func TestStaticKeySetRefusals(t *testing.T) {
	cfg := Config{Issuer: "https://idp.example.com", Audience: testAudience}
	for name, jwks := range map[string]string{
		"empty":        ``,
		"no-keys":      `{"keys":[]}`,
		"unusable-key": `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"weak"}]}`,
		"oct-no-hmac":  `{"keys":[{"kty":"oct","k":"` + b64.EncodeToString(make([]byte, 32)) + `"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewWithKeys(cfg, []byte(jwks)); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "jwks: ") {
				t.Fatalf("err = %v, want ErrConfig naming jwks", err)
			}
		})
	}
}

// TestResourceMetadata: the RFC 9728 document and its JSON shape.
func TestResourceMetadata(t *testing.T) {
	jwks := oidctest.NewIssuer(t).JWKS()
	cases := []struct {
		name   string
		scopes []string
		want   string
	}{
		{"no-scopes", nil, `{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://idp.example.com"],"bearer_methods_supported":["header"]}`},
		{"scopes", []string{"mcp:tools"}, `{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://idp.example.com"],"bearer_methods_supported":["header"],"scopes_supported":["mcp:tools"]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := NewWithKeys(Config{Issuer: "https://idp.example.com", Audience: testAudience, RequiredScopes: c.scopes}, jwks)
			if err != nil {
				t.Fatal(err)
			}
			md := v.ResourceMetadata()
			b, err := json.Marshal(md)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Fatalf("metadata = %s\nwant       %s", b, c.want)
			}
			md.AuthorizationServers[0] = "changed"
			if v.ResourceMetadata().AuthorizationServers[0] != "https://idp.example.com" {
				t.Fatal("ResourceMetadata returns shared slices")
			}
		})
	}
}

// TestDefaultClientRedirects: the default HTTP client refuses redirects
// that downgrade to plain http (off loopback) and long chains.
func TestDefaultClientRedirects(t *testing.T) {
	mk := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cases := []struct {
		name string
		to   string
		via  int
		ok   bool
	}{
		{"https", "https://idp.example.com/jwks", 1, true},
		{"loopback-http", "http://127.0.0.1:1/jwks", 1, true},
		{"downgrade", "http://idp.example.com/jwks", 1, false},
		{"too-many", "https://idp.example.com/jwks", 5, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			via := make([]*http.Request, c.via)
			err := checkRedirect(mk(c.to), via)
			if (err == nil) != c.ok {
				t.Fatalf("checkRedirect(%s, %d) = %v, want ok=%v", c.to, c.via, err, c.ok)
			}
		})
	}
}
