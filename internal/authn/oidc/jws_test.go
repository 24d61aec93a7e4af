package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

// TestLooksLikeJWT: the router's shape test.
func TestLooksLikeJWT(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	tok := iss.Token(iss.ValidClaims(testAudience, t0))
	h, _, _ := strings.Cut(tok, ".")
	enc := func(s string) string { return b64.EncodeToString([]byte(s)) }
	cases := map[string]struct {
		in   string
		want bool
	}{
		"jwt":                {tok, true},
		"alg-none-unsigned":  {enc(`{"alg":"none"}`) + "." + enc(`{}`) + ".", true},
		"empty-payload":      {h + "..", true},
		"api-key":            {"pcl_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst", false},
		"empty":              {"", false},
		"two-segments":       {h + ".x", false},
		"four-segments":      {tok + ".x", false},
		"header-not-json":    {enc("hello") + ".e30.", false},
		"header-array":       {enc(`["alg"]`) + ".e30.", false},
		"header-without-alg": {enc(`{"typ":"JWT"}`) + ".e30.", false},
		"alg-not-string":     {enc(`{"alg":1}`) + ".e30.", false},
		"header-padded":      {enc(`{"alg":"RS256"}`) + "==.e30.", false},
		"too-big":            {tok + strings.Repeat("A", MaxTokenSize), false},
		"opaque-token":       {"2YotnFZFEjr1zCsicMWpAA", false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := LooksLikeJWT(c.in); got != c.want {
				t.Fatalf("LooksLikeJWT = %v, want %v", got, c.want)
			}
		})
	}
}

// TestFailureMessages: messages carry the category and cause, never the
// token; Unwrap exposes exactly one category.
func TestFailureMessages(t *testing.T) {
	cases := []struct {
		f       *Failure
		want    string
		invalid bool
	}{
		{fail(CauseExpired, ""), "invalid token: expired", true},
		{fail(CauseMalformed, "header typ is not a JWT access token type"), "invalid token: malformed: header typ is not a JWT access token type", true},
		{&Failure{Cause: CauseInsufficientScope, Subject: "bob"}, "insufficient scope: insufficient_scope", false},
		{&Failure{Cause: CauseKeySetUnavailable, Err: context.DeadlineExceeded}, "invalid token: keyset_unavailable: context deadline exceeded", true},
	}
	for _, c := range cases {
		t.Run(c.f.Cause, func(t *testing.T) {
			if got := c.f.Error(); got != c.want {
				t.Fatalf("Error() = %q, want %q", got, c.want)
			}
			if errors.Is(c.f, ErrInvalidToken) != c.invalid || errors.Is(c.f, ErrInsufficientScope) == c.invalid {
				t.Fatalf("categories wrong for %v", c.f)
			}
			if c.f.Err != nil && !errors.Is(c.f, c.f.Err) {
				t.Fatalf("Err not unwrapped")
			}
		})
	}
}

// TestNoTokenInErrors: across every failure kind, neither the token nor
// a distinctive secret planted in its claims, header or kid shows up in
// the error message.
func TestNoTokenInErrors(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	v := newRemote(t, iss, nil)
	const secret = "S3CRET-d0-not-log"
	claims := iss.ValidClaims(testAudience, t0)
	claims["secret"] = secret
	tokens := []string{
		iss.Token(claims, oidctest.WithKID(secret)),
		iss.Token(claims, oidctest.WithAlg(secret)),
		iss.Token(claims, oidctest.WithTyp(secret)),
		iss.Token(claims, oidctest.WithHeader("crit", []string{secret})),
		iss.Token(map[string]any{"iss": secret, "aud": testAudience, "sub": "a", "exp": t0.Unix() + 60}),
		iss.Token(map[string]any{"iss": iss.URL(), "aud": secret, "sub": "a", "exp": t0.Unix() + 60}),
		iss.Token(map[string]any{"iss": iss.URL(), "aud": testAudience, "sub": secret, "exp": secret}),
		iss.Token(map[string]any{"iss": iss.URL(), "aud": testAudience, "sub": "a", "exp": 1}),
		secret + "." + secret + "." + secret,
		iss.Token(claims) + secret,
	}
	for i, tok := range tokens {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			_, err := v.Verify(context.Background(), tok)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%+v", err), secret) {
				t.Fatalf("error %q leaks token content", err)
			}
			assertNoLeak(t, err.Error(), tok)
		})
	}
}

// TestParseObject: duplicate members are refused at any depth, and only
// a single JSON object is accepted.
func TestParseObject(t *testing.T) {
	cases := map[string]bool{
		`{}`:                            true,
		` {"a":1} `:                     true,
		`{"a":{"b":[{"c":1},{"c":2}]}}`: true,
		`{"a":1,"A":2}`:                 true,
		`{"a":1,"a":2}`:                 false,
		`{"a":{"b":1,"b":2}}`:           false,
		`{"a":[{"b":1,"b":2}]}`:         false,
		`{"a":[],"a":[]}`:               false,
		`{"a":1}{"b":2}`:                false,
		`[]`:                            false,
		`null`:                          false,
		`"{}"`:                          false,
		``:                              false,
		`{"a":`:                         false,
		`{"a":1,}`:                      false,
	}
	for in, ok := range cases {
		t.Run(in, func(t *testing.T) {
			if _, err := parseObject([]byte(in)); (err == nil) != ok {
				t.Fatalf("parseObject(%q) err = %v, want ok=%v", in, err, ok)
			}
		})
	}
}

// TestVerifyJWSKeyTypeMismatch: the primitive layer refuses a key of the
// wrong type for the alg even if a caller got key selection wrong.
func TestVerifyJWSKeyTypeMismatch(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	rsaPub, ecPub, edPub := iss.PublicKey("RS256"), iss.PublicKey("ES256"), iss.PublicKey("EdDSA")
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	input := []byte("a.b")
	cases := []struct {
		alg string
		key any
	}{
		{"RS256", ecPub}, {"PS256", edPub}, {"ES256", rsaPub}, {"ES256", &p384.PublicKey},
		{"EdDSA", rsaPub}, {"EdDSA", ed25519.PublicKey{1, 2}}, {"HS256", rsaPub},
		{"HS256", []byte("short")}, {"none", []byte(strings.Repeat("k", 64))},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%T", c.alg, c.key), func(t *testing.T) {
			if verifyJWS(c.alg, c.key, input, make([]byte, 64)) {
				t.Fatal("verified with a mismatched key")
			}
			k := &jwk{pub: c.key}
			if c.alg != "ES256" && k.fits(c.alg) {
				t.Fatal("fits")
			}
		})
	}
}
