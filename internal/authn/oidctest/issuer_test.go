package oidctest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestServes: metadata at both well-known locations (with and without a
// path), the JWK Set, and the counters.
func TestServes(t *testing.T) {
	for _, path := range []string{"", "/realms/test"} {
		t.Run("path="+path, func(t *testing.T) {
			iss := oidctest.NewIssuer(t, oidctest.WithPath(path))
			if !strings.HasPrefix(iss.URL(), "http://127.0.0.1:") || !strings.HasSuffix(iss.URL(), path) {
				t.Fatalf("URL = %q", iss.URL())
			}
			host := strings.TrimSuffix(iss.URL(), path)
			for _, u := range []string{
				iss.URL() + "/.well-known/openid-configuration",
				host + "/.well-known/oauth-authorization-server" + path,
			} {
				code, body := get(t, u)
				var md map[string]any
				if code != 200 || json.Unmarshal(body, &md) != nil {
					t.Fatalf("GET %s: %d %s", u, code, body)
				}
				if md["issuer"] != iss.URL() || md["jwks_uri"] != iss.JWKSURL() {
					t.Fatalf("metadata %v", md)
				}
			}
			code, body := get(t, iss.JWKSURL())
			var set jose.JSONWebKeySet
			if code != 200 || json.Unmarshal(body, &set) != nil {
				t.Fatalf("JWKS: %d %s", code, body)
			}
			if len(set.Keys) != 3 {
				t.Fatalf("%d keys, want 3", len(set.Keys))
			}
			for _, k := range set.Keys {
				if !k.IsPublic() || k.Use != "sig" || k.KeyID == "" || k.Algorithm == "" {
					t.Fatalf("bad published key %+v", k)
				}
			}
			if code, _ := get(t, iss.URL()+"/nothing"); code != 404 {
				t.Fatalf("unknown path: %d", code)
			}
			if iss.DiscoveryFetches() != 2 || iss.JWKSFetches() != 1 || iss.Requests() != 4 {
				t.Fatalf("counters: discovery %d jwks %d requests %d", iss.DiscoveryFetches(), iss.JWKSFetches(), iss.Requests())
			}
		})
	}
}

// TestOptions: WithoutOIDCDiscovery, WithoutJWKAlg, WithMetadata,
// SetJWKSStatus and Close.
func TestOptions(t *testing.T) {
	iss := oidctest.NewIssuer(t, oidctest.WithoutOIDCDiscovery(), oidctest.WithoutJWKAlg(),
		oidctest.WithMetadata(func(md map[string]any) { md["issuer"] = "changed" }))
	if code, _ := get(t, iss.URL()+"/.well-known/openid-configuration"); code != 404 {
		t.Fatalf("openid-configuration served: %d", code)
	}
	if _, body := get(t, iss.URL()+"/.well-known/oauth-authorization-server"); !strings.Contains(string(body), `"issuer":"changed"`) {
		t.Fatalf("metadata edit not applied: %s", body)
	}
	if strings.Contains(string(iss.JWKS()), `"alg"`) {
		t.Fatalf("WithoutJWKAlg: %s", iss.JWKS())
	}
	iss.SetJWKSStatus(http.StatusBadGateway)
	if code, _ := get(t, iss.JWKSURL()); code != http.StatusBadGateway {
		t.Fatalf("JWKS status %d", code)
	}
	iss.SetJWKSStatus(0)
	if code, _ := get(t, iss.JWKSURL()); code != 200 {
		t.Fatalf("JWKS status %d after reset", code)
	}
	resp, err := http.Post(iss.JWKSURL(), "text/plain", nil)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	}
	resp.Body.Close()
	iss.Close()
	iss.Close() // idempotent
	if _, err := http.Get(iss.JWKSURL()); err == nil {
		t.Fatal("server still answers after Close")
	}
}

// TestTokensVerifyWithGoJose cross-checks the signer against an
// independent implementation (go-jose).
func TestTokensVerifyWithGoJose(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	secret := []byte(strings.Repeat("x", 64))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	claims := iss.ValidClaims("https://rs.example", now)
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "EdDSA", "HS256", "HS384", "HS512"} {
		t.Run(alg, func(t *testing.T) {
			opts := []oidctest.TokenOption{oidctest.WithAlg(alg)}
			var key any = iss.PublicKey(alg)
			if strings.HasPrefix(alg, "HS") {
				opts = append(opts, oidctest.WithSigningKey(secret))
				key = secret
			}
			tok := iss.Token(claims, opts...)
			jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			payload, err := jws.Verify(key)
			if err != nil {
				t.Fatalf("go-jose rejects our %s signature: %v", alg, err)
			}
			var got map[string]any
			if err := json.Unmarshal(payload, &got); err != nil || got["sub"] != "alice" || got["iss"] != iss.URL() {
				t.Fatalf("payload %s", payload)
			}
			h := jws.Signatures[0].Protected
			if h.KeyID != iss.KeyID(alg) || h.ExtraHeaders["typ"] != "at+jwt" {
				t.Fatalf("header %+v", h)
			}
		})
	}
	// ES384/ES512 with a caller-supplied key.
	for _, c := range []struct {
		alg   string
		curve elliptic.Curve
	}{{"ES384", elliptic.P384()}, {"ES512", elliptic.P521()}} {
		k, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		tok := iss.Token(claims, oidctest.WithAlg(c.alg), oidctest.WithSigningKey(k))
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(c.alg)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify(&k.PublicKey); err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
	}
}

func decodeHeader(t *testing.T, tok string) (map[string]any, string, string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%d segments", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	_ = json.Unmarshal(b, &h)
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	return h, string(p), parts[2]
}

// TestTokenOptions: header and payload overrides used by attack tests.
func TestTokenOptions(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	claims := map[string]any{"sub": "x"}
	h, _, sig := decodeHeader(t, iss.Token(claims, oidctest.WithAlg("nOnE")))
	if h["alg"] != "nOnE" || sig != "" || h["kid"] != nil {
		t.Fatalf("none token: %v sig %q", h, sig)
	}
	h, _, _ = decodeHeader(t, iss.Token(claims, oidctest.WithoutKID(), oidctest.WithoutTyp(), oidctest.WithHeader("jku", "https://x")))
	if _, ok := h["kid"]; ok || h["typ"] != nil || h["jku"] != "https://x" {
		t.Fatalf("header %v", h)
	}
	h, _, _ = decodeHeader(t, iss.Token(claims, oidctest.WithKID("k"), oidctest.WithTyp("JWT")))
	if h["kid"] != "k" || h["typ"] != "JWT" {
		t.Fatalf("header %v", h)
	}
	_, p, sig := decodeHeader(t, iss.Token(claims, oidctest.WithRawHeader([]byte(`{"alg":"RS256"}`)), oidctest.WithPayload([]byte("raw")), oidctest.WithSignature([]byte{1, 2})))
	if p != "raw" || sig != "AQI" {
		t.Fatalf("payload %q sig %q", p, sig)
	}
	oldKID := iss.KeyID("RS256")
	oldJWKS := string(iss.JWKS())
	iss.RotateKeys()
	if iss.KeyID("RS256") == oldKID || strings.Contains(string(iss.JWKS()), oldKID) || string(iss.JWKS()) == oldJWKS {
		t.Fatal("RotateKeys did not replace the keys")
	}
	if other := oidctest.NewIssuer(t); other.KeyID("RS256") == iss.KeyID("RS256") {
		t.Fatal("two issuers share a kid")
	}
	if iss.PublicKey("HS256") != nil || iss.KeyID("HS256") != "" {
		t.Fatal("HS256 has no issuer key")
	}
}

// TestSignErrors: a key that does not suit the alg is an error.
func TestSignErrors(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, c := range []struct {
		alg string
		key any
	}{
		{"RS256", []byte("x")},
		{"ES256", rk},
		{"EdDSA", rk},
		{"HS256", rk},
	} {
		if _, err := oidctest.Sign(c.alg, c.key, []byte("in")); err == nil {
			t.Errorf("Sign(%s, %T) succeeded", c.alg, c.key)
		}
	}
	for _, alg := range []string{"none", "", "RS257", "XX256", "RS2560"} {
		if sig, err := oidctest.Sign(alg, rk, []byte("in")); err != nil || len(sig) != 0 {
			t.Errorf("Sign(%q) = %v, %v; want an empty signature", alg, sig, err)
		}
	}
	if oidctest.PublicJWK("not a key", "k", "") != nil {
		t.Error("PublicJWK of a non-key")
	}
}
