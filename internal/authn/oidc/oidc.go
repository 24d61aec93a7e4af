// Package oidc verifies OAuth 2.1 access tokens (JWTs) presented to
// Portcullis as a resource server, as the MCP authorization spec
// (2025-11-25, "Authorization") requires: the token must be issued for
// this server (RFC 8707 resource indicators: aud is our resource URL),
// signed by the configured issuer's key, and currently valid.
//
// A Verifier takes its keys either from the issuer's published JWK Set
// (New: OpenID Connect Discovery or RFC 8414 metadata, then jwks_uri,
// cached and refetched on key rotation with a rate limit) or from a static
// JWK Set (NewWithKeys).
//
// Verify fails closed, in this order (RFC 8725 is the checklist):
//
//  1. size (MaxTokenSize) and shape: exactly three canonical base64url
//     segments (JWS Compact Serialization only; no JSON serialization, no
//     JWE);
//  2. the protected header: alg in Config.Algorithms (exact match; never
//     "none"), no crit/b64/cty, typ (if any) a JWT access token type; the
//     key-bearing headers jku, x5u, jwk and x5c are ignored, and kid is
//     only compared for equality with configured keys;
//  3. key selection: the key's type and curve must fit the alg and its own
//     "alg", if any, must equal it, so an RSA public key can never be used
//     as an HMAC secret;
//  4. the signature (standard library primitives, RFC 7518 §3);
//  5. claims (RFC 7519 §4.1, RFC 9068 §4): iss equal to Config.Issuer byte
//     for byte; aud containing Config.Audience; exp required; nbf, iat and
//     MaxAge with Config.Skew tolerance; sub and the username claim
//     non-empty strings;
//  6. roles and scopes, then Config.RequiredScopes.
//
// Every failure is a *Failure whose Cause names the step for the audit
// log; its message never contains the token.
//
// go-jose decodes JWKs. Signatures are checked with the standard library
// directly, because go-jose accepts RSASSA-PSS signatures with any salt
// length (RFC 7518 §3.5 fixes it). The JWKS cache is our own rather than
// go-oidc's RemoteKeySet, which refetches on every cache miss without a
// rate limit and does not expose keys for per-key checks (see
// remoteKeySet).
package oidc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults and bounds for Config.
const (
	// DefaultSkew is Config.Skew when zero.
	DefaultSkew = 60 * time.Second
	// MaxSkew is the largest Config.Skew accepted.
	MaxSkew = 5 * time.Minute
	// DefaultJWKSRefreshInterval is Config.JWKSRefreshInterval when zero
	// (the same as Keycloak's minTimeBetweenJwksRequests).
	DefaultJWKSRefreshInterval = 10 * time.Second
	// DefaultJWKSCacheTTL is Config.JWKSCacheTTL when zero.
	DefaultJWKSCacheTTL = time.Hour
	// DefaultHTTPTimeout is the timeout of the default HTTP client.
	DefaultHTTPTimeout = 10 * time.Second
)

// defaultAlgorithms are the JWS algorithms accepted when
// Config.Algorithms is empty.
func defaultAlgorithms() []string { return []string{"RS256", "PS256", "ES256", "EdDSA"} }

// Config configures a Verifier. Zero values take the documented defaults.
type Config struct {
	// Issuer is the authorization server's issuer identifier. The iss
	// claim must equal it byte for byte. It must be an https URL without
	// query or fragment; http is accepted only for a loopback host
	// (localhost, 127.0.0.0/8, ::1), for tests. New discovers metadata at
	// Issuer + "/.well-known/openid-configuration" and falls back to the
	// RFC 8414 "/.well-known/oauth-authorization-server" location.
	Issuer string
	// Audience is this resource server's identifier (RFC 8707 resource,
	// RFC 9728 "resource"): an absolute URI without fragment. The aud
	// claim, a string or an array of strings, must contain it.
	Audience string
	// Algorithms are the accepted JWS "alg" values, matched exactly.
	// Default RS256, PS256, ES256, EdDSA. Known values: RS256/384/512,
	// PS256/384/512, ES256/384/512, EdDSA, and HS256/384/512 only with
	// AllowHMAC. "none" (in any spelling) is always refused.
	Algorithms []string
	// AllowHMAC permits HS* algorithms, for tests and shared-secret
	// issuers whose oct keys are given to NewWithKeys. HMAC is only ever
	// computed with an oct key, never with RSA, EC or OKP key bytes, and a
	// published (remote) JWK Set holding an oct key is refused.
	AllowHMAC bool
	// Skew is the clock skew tolerated on exp, nbf, iat and MaxAge.
	// Default DefaultSkew (60s); at most MaxSkew (5m).
	Skew time.Duration
	// MaxAge, if positive, refuses tokens whose iat is more than MaxAge
	// (plus Skew) in the past, and tokens without iat.
	MaxAge time.Duration
	// UsernameClaim names the claim holding the user name, a non-empty
	// string. Default "sub"; others in use: "email", "preferred_username".
	UsernameClaim string
	// RolesClaim names the claim holding roles: an array of strings or a
	// space-separated string. Default "roles". A dotted path such as
	// "realm_access.roles" (Keycloak) walks nested objects when no
	// top-level claim has the literal name.
	RolesClaim string
	// ScopesClaim names the claim holding scopes. Default "scope", a
	// space-separated string (RFC 9068 §2.2.3, RFC 8693 §4.2); with the
	// default, an "scp" array or string is also read (Entra ID, Okta).
	ScopesClaim string
	// RoleMap, if non-empty, maps IdP role or group values to Portcullis
	// role names; values without an entry are dropped.
	RoleMap map[string]string
	// RequiredScopes must all be present in the token, or Verify fails
	// with ErrInsufficientScope (RFC 6750 §3.1: 403 insufficient_scope).
	RequiredScopes []string
	// HTTPClient fetches metadata and the JWK Set. Default: a client with
	// DefaultHTTPTimeout that follows at most 5 redirects, none of them
	// to plain http except on loopback.
	HTTPClient *http.Client
	// JWKSRefreshInterval is the minimum time between two fetches of the
	// JWK Set (New only). Default DefaultJWKSRefreshInterval (10s), at
	// most JWKSCacheTTL.
	JWKSRefreshInterval time.Duration
	// JWKSCacheTTL is how long fetched keys are used before the set must
	// be fetched again (New only). Default DefaultJWKSCacheTTL (1h).
	JWKSCacheTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Claims are the verified facts of an access token.
type Claims struct {
	Issuer   string
	Subject  string // sub
	Username string // UsernameClaim
	Roles    []string
	Scopes   []string
	Expiry   time.Time
	IssuedAt time.Time // zero if the token has no iat
	KeyID    string    // kid of the verifying key
	TokenID  string    // jti, if any, for the audit log
}

// ProtectedResourceMetadata is the RFC 9728 §2 OAuth 2.0 Protected
// Resource Metadata document that MCP clients fetch to find the
// authorization server (MCP 2025-11-25 "Authorization").
type ProtectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
}

// Verifier verifies access tokens. It is safe for concurrent use.
type Verifier struct {
	cfg  Config // normalized: defaults applied, slices and maps copied
	algs map[string]bool
	keys keySet
}

// New validates cfg, discovers the issuer's metadata, fetches its JWK
// Set once and returns a Verifier that keeps the set fresh. ctx bounds
// discovery and the first fetch only. Errors wrap ErrConfig (naming the
// field) or ErrDiscovery (naming the URL that failed).
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	v, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	jwksURI, err := discover(ctx, v.cfg.HTTPClient, v.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	rks := &remoteKeySet{
		url:         jwksURI,
		client:      v.cfg.HTTPClient,
		now:         v.cfg.Now,
		minInterval: v.cfg.JWKSRefreshInterval,
		ttl:         v.cfg.JWKSCacheTTL,
	}
	if attempted, err := rks.refresh(ctx); attempted && err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	v.keys = rks
	return v, nil
}

// NewWithKeys validates cfg and returns a Verifier whose keys are the JWK
// Set jwks (RFC 7517 §5, JSON). Unlike a fetched set, any unusable key in
// it is an error, so a typo does not silently drop a key. Errors wrap
// ErrConfig.
func NewWithKeys(cfg Config, jwks []byte) (*Verifier, error) {
	v, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	keys, problems, err := parseJWKS(jwks, v.cfg.AllowHMAC, fromStatic)
	if err != nil {
		return nil, configErr("jwks", "%v", err)
	}
	if len(problems) > 0 {
		return nil, configErr("jwks", "%s", problems[0])
	}
	v.keys = &staticKeySet{keys: keys}
	return v, nil
}

func newVerifier(cfg Config) (*Verifier, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: c, algs: map[string]bool{}}
	for _, a := range c.Algorithms {
		v.algs[a] = true
	}
	return v, nil
}

// normalize validates cfg and returns a copy with defaults applied.
func (cfg Config) normalize() (Config, error) {
	if err := checkServerURL(cfg.Issuer); err != nil {
		return cfg, configErr("Issuer", "%v", err)
	}
	if u, _ := url.Parse(cfg.Issuer); u.RawQuery != "" || u.ForceQuery {
		return cfg, configErr("Issuer", "must not have a query (RFC 8414 §2)")
	}
	if err := checkAudience(cfg.Audience); err != nil {
		return cfg, configErr("Audience", "%v", err)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = defaultAlgorithms()
	}
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	for _, a := range cfg.Algorithms {
		info, ok := supportedAlgs[a]
		switch {
		case strings.EqualFold(a, "none"):
			return cfg, configErr("Algorithms", `"none" is never allowed (RFC 8725 §3.1)`)
		case !ok:
			return cfg, configErr("Algorithms", "unknown algorithm %q", a)
		case info.family == famHMAC && !cfg.AllowHMAC:
			return cfg, configErr("Algorithms", "%s requires AllowHMAC", a)
		}
	}
	switch {
	case cfg.Skew < 0:
		return cfg, configErr("Skew", "must not be negative")
	case cfg.Skew > MaxSkew:
		return cfg, configErr("Skew", "must be at most %v", MaxSkew)
	case cfg.Skew == 0:
		cfg.Skew = DefaultSkew
	}
	if cfg.MaxAge < 0 {
		return cfg, configErr("MaxAge", "must not be negative")
	}
	for _, c := range []struct {
		field string
		value *string
		def   string
	}{
		{"UsernameClaim", &cfg.UsernameClaim, "sub"},
		{"RolesClaim", &cfg.RolesClaim, "roles"},
		{"ScopesClaim", &cfg.ScopesClaim, "scope"},
	} {
		if *c.value == "" {
			*c.value = c.def
		}
		if strings.TrimSpace(*c.value) != *c.value {
			return cfg, configErr(c.field, "must not have surrounding spaces")
		}
	}
	if len(cfg.RoleMap) > 0 {
		m := make(map[string]string, len(cfg.RoleMap))
		for k, r := range cfg.RoleMap {
			if k == "" || r == "" {
				return cfg, configErr("RoleMap", "keys and values must be non-empty")
			}
			m[k] = r
		}
		cfg.RoleMap = m
	}
	cfg.RequiredScopes = slices.Clone(cfg.RequiredScopes)
	for _, s := range cfg.RequiredScopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return cfg, configErr("RequiredScopes", "scopes must be non-empty and without spaces (RFC 6749 §3.3)")
		}
	}
	if cfg.JWKSCacheTTL < 0 || cfg.JWKSRefreshInterval < 0 {
		return cfg, configErr("JWKSCacheTTL", "durations must not be negative")
	}
	if cfg.JWKSCacheTTL == 0 {
		cfg.JWKSCacheTTL = DefaultJWKSCacheTTL
	}
	if cfg.JWKSRefreshInterval == 0 {
		cfg.JWKSRefreshInterval = DefaultJWKSRefreshInterval
	}
	if cfg.JWKSRefreshInterval > cfg.JWKSCacheTTL {
		return cfg, configErr("JWKSRefreshInterval", "must not exceed JWKSCacheTTL")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout, CheckRedirect: checkRedirect}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

// checkServerURL accepts an absolute https URL with a host and no
// userinfo or fragment; http only for a loopback host.
func checkServerURL(s string) error {
	if s == "" {
		return fmt.Errorf("must be set")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	switch {
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("must be an absolute URL with a host")
	case u.User != nil:
		return fmt.Errorf("must not contain userinfo")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("must not have a fragment")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("must use https (http is allowed only for localhost and loopback addresses)")
	default:
		return fmt.Errorf("scheme %q not allowed", u.Scheme)
	}
}

// isLoopback reports whether host is "localhost" or a loopback IP.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkAudience accepts an absolute URI without fragment (RFC 8707 §2).
func checkAudience(s string) error {
	if s == "" {
		return fmt.Errorf("must be set")
	}
	if strings.ContainsAny(s, " \t\r\n#") {
		return fmt.Errorf("must be an absolute URI without spaces or fragment (RFC 8707 §2)")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("must be an absolute URI (RFC 8707 §2)")
	}
	return nil
}

// checkRedirect is the default client's redirect policy.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return fmt.Errorf("stopped after 5 redirects")
	}
	if err := checkServerURL(req.URL.String()); err != nil {
		return fmt.Errorf("redirect to %s refused: %w", req.URL.Redacted(), err)
	}
	return nil
}

// ResourceMetadata returns this resource server's RFC 9728 document:
// resource = Audience, authorization_servers = [Issuer],
// bearer_methods_supported = ["header"] (RFC 6750 §2.1 only; query and
// body tokens are refused), scopes_supported = RequiredScopes if any.
func (v *Verifier) ResourceMetadata() ProtectedResourceMetadata {
	return ProtectedResourceMetadata{
		Resource:               v.cfg.Audience,
		AuthorizationServers:   []string{v.cfg.Issuer},
		BearerMethodsSupported: []string{"header"},
		ScopesSupported:        slices.Clone(v.cfg.RequiredScopes),
	}
}

// Verify verifies token (the bearer credential, without "Bearer ") and
// returns its claims. Errors are *Failure values unwrapping to
// ErrInvalidToken, or ErrInsufficientScope when only a required scope is
// missing. ctx bounds a JWK Set refetch, if one is needed.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	payload, h, k, f := v.verifySignature(ctx, token)
	if f != nil {
		return nil, f
	}
	c, f := v.checkClaims(payload)
	if f != nil {
		return nil, f
	}
	c.KeyID = h.kid
	if !h.hasKid {
		c.KeyID = k.kid
	}
	return c, nil
}
