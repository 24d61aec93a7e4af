package oidc

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

// fuzzKeys are fixed keys, identical in every fuzz worker process: the
// Wycheproof RSA and P-256 private keys and an Ed25519 key from a fixed
// seed. Test-only keys, published in the vector file.
type fuzzKeys struct {
	rsa, ec any
	ed      ed25519.PrivateKey
	jwks    []byte
}

func loadFuzzKeys(t testing.TB) *fuzzKeys {
	t.Helper()
	var f wycheproofFile
	data, err := readTestdata("wycheproof-json_web_signature_test.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	k := &fuzzKeys{ed: ed25519.NewKeyFromSeed([]byte(strings.Repeat("portcullis-fuzz!", 2)))}
	var pubs []json.RawMessage
	for _, g := range f.TestGroups {
		if g.Comment != "rs256" && g.Comment != "es256" || g.Private == nil {
			continue
		}
		var kid struct {
			Kid string `json:"kid"`
		}
		_ = json.Unmarshal(g.Private, &kid)
		if kid.Kid != "kid-rsa-sign" && kid.Kid != "kid-ec-sign" {
			continue
		}
		var jk jose.JSONWebKey
		if err := jk.UnmarshalJSON(g.Private); err != nil {
			t.Fatal(err)
		}
		if g.Comment == "rs256" {
			k.rsa = jk.Key
		} else {
			k.ec = jk.Key
		}
		// The public JWK without alg, so the RSA key serves RS256 and PS256.
		var pub map[string]any
		_ = json.Unmarshal(g.Public, &pub)
		delete(pub, "alg")
		b, _ := json.Marshal(pub)
		pubs = append(pubs, b)
	}
	edPub, _ := json.Marshal(oidctest.PublicJWK(k.ed.Public(), "kid-ed-sign", ""))
	pubs = append(pubs, edPub)
	k.jwks, _ = json.Marshal(map[string]any{"keys": pubs})
	if k.rsa == nil || k.ec == nil {
		t.Fatal("fuzz keys not found in the vector file")
	}
	return k
}

// sign builds a compact JWS with oidctest.Sign.
func (k *fuzzKeys) sign(t testing.TB, alg, kid string, claims map[string]any) (token, input string) {
	t.Helper()
	key := map[string]any{"RS256": k.rsa, "PS256": k.rsa, "ES256": k.ec, "EdDSA": k.ed}[alg]
	h, _ := json.Marshal(map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"})
	p, _ := json.Marshal(claims)
	input = b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	sig, err := oidctest.Sign(alg, key, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64.EncodeToString(sig), input
}

// FuzzVerify: Verify never panics, and never accepts a token whose signing
// input (header.payload) was not signed by a configured key — the fuzzer
// cannot forge, so any accepted token must reuse a seed's signed input.
func FuzzVerify(f *testing.F) {
	keys := loadFuzzKeys(f)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	v, err := NewWithKeys(Config{
		Issuer:     "https://issuer.example",
		Audience:   testAudience,
		Algorithms: []string{"RS256", "PS256", "ES256", "EdDSA"},
		Now:        func() time.Time { return now },
	}, keys.jwks)
	if err != nil {
		f.Fatal(err)
	}
	claims := map[string]any{
		"iss": "https://issuer.example", "aud": []string{testAudience}, "sub": "alice",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "roles": "a b", "scope": "x",
	}
	signed := map[string]bool{}
	for _, s := range []struct{ alg, kid string }{
		{"RS256", "kid-rsa-sign"}, {"PS256", "kid-rsa-sign"}, {"ES256", "kid-ec-sign"}, {"EdDSA", "kid-ed-sign"}, {"RS256", ""},
	} {
		tok, input := keys.sign(f, s.alg, s.kid, claims)
		signed[input] = true
		f.Add(tok)
		h, rest, _ := strings.Cut(tok, ".")
		p, sig, _ := strings.Cut(rest, ".")
		f.Add(h + "." + p + ".")
		f.Add(h + "." + sig + "." + p)
		f.Add(b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + p + ".")
		f.Add(b64.EncodeToString([]byte(`{"alg":"HS256","kid":"kid-rsa-sign"}`)) + "." + p + "." + sig)
	}
	// Signature-valid tokens whose claims must fail, to reach every check.
	for _, edit := range []func(map[string]any){
		func(c map[string]any) { c["aud"] = "https://other.example" },
		func(c map[string]any) { c["exp"] = 1 },
		func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() },
		func(c map[string]any) { delete(c, "sub") },
		func(c map[string]any) { c["roles"] = 7 },
	} {
		c := map[string]any{}
		for k, x := range claims {
			c[k] = x
		}
		edit(c)
		tok, input := keys.sign(f, "EdDSA", "kid-ed-sign", c)
		signed[input] = true
		f.Add(tok)
	}
	var wf wycheproofFile
	if data, err := readTestdata("wycheproof-json_web_signature_test.json"); err == nil && json.Unmarshal(data, &wf) == nil {
		for _, g := range wf.TestGroups {
			for i, tc := range g.Tests {
				if tc.Result == "valid" {
					// Signed by the vector authors, some with our keys.
					signed[tc.JWS[:strings.LastIndexByte(tc.JWS, '.')]] = true
				}
				if i < 4 || tc.Result == "valid" {
					f.Add(tc.JWS)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, token string) {
		LooksLikeJWT(token)
		ctx := context.Background()
		_, _, _, sf := v.verifySignature(ctx, token)
		c, err := v.Verify(ctx, token)
		input := token
		if i := strings.LastIndexByte(token, '.'); i >= 0 {
			input = token[:i]
		}
		if sf == nil && !signed[input] {
			t.Fatalf("signature layer accepted an input no key signed: %q", token)
		}
		if err == nil {
			if !signed[input] {
				t.Fatalf("Verify accepted an input no key signed: %q", token)
			}
			if c.Subject != "alice" || c.Issuer != "https://issuer.example" {
				t.Fatalf("accepted claims %+v", c)
			}
			return
		}
		var fl *Failure
		if !asFailure(err, &fl) {
			t.Fatalf("error %v is not a *Failure", err)
		}
		if len(token) > 12 && strings.Contains(err.Error(), token) {
			t.Fatalf("error contains the token")
		}
	})
}
