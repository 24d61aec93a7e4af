package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

// TestVerifyValid is the control for every attack below: well-formed
// tokens from the issuer verify, with both key sources, for each default
// algorithm, and yield the expected Claims.
func TestVerifyValid(t *testing.T) {
	iss := oidctest.NewIssuer(t, oidctest.WithoutJWKAlg())
	remote := newRemote(t, iss, nil)
	static := newStatic(t, iss, nil)
	for _, alg := range []string{"RS256", "PS256", "ES256", "EdDSA"} {
		for name, v := range map[string]*Verifier{"remote": remote, "static": static} {
			t.Run(alg+"/"+name, func(t *testing.T) {
				claims := iss.ValidClaims(testAudience, t0)
				claims["aud"] = []string{"https://other.example", testAudience}
				tok := iss.Token(claims, oidctest.WithAlg(alg))
				got, err := v.Verify(context.Background(), tok)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				want := &Claims{
					Issuer:   iss.URL(),
					Subject:  "alice",
					Username: "alice",
					Expiry:   t0.Add(time.Hour),
					IssuedAt: t0,
					KeyID:    iss.KeyID(alg),
					TokenID:  "jti-1",
				}
				if d := cmp.Diff(want, got); d != "" {
					t.Fatalf("claims (-want +got):\n%s", d)
				}
			})
		}
	}
}

// TestAttackAlgNone: unsigned tokens in every spelling of "none" (and an
// empty alg) are refused by the allowlist, whatever the signature holds.
func TestAttackAlgNone(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	verifiers := map[string]*Verifier{
		"default": newRemote(t, iss, nil),
		"hmac": newRemote(t, iss, func(c *Config) {
			c.AllowHMAC = true
			c.Algorithms = []string{"RS256", "ES256", "EdDSA", "HS256", "HS384", "HS512", "PS256", "RS384", "RS512"}
		}),
	}
	claims := iss.ValidClaims(testAudience, t0)
	for _, alg := range []string{"none", "None", "nOnE", "NONE", "", " none", "none "} {
		for vname, v := range verifiers {
			for _, sig := range []string{"empty", "rs256"} {
				t.Run(vname+"/"+alg+"/"+sig, func(t *testing.T) {
					opts := []oidctest.TokenOption{oidctest.WithAlg(alg), oidctest.WithKID(iss.KeyID("RS256"))}
					if sig == "rs256" {
						// A real RS256 signature over the "none" header.
						opts = append(opts, oidctest.WithHeader("alg", alg), oidctest.WithAlg("RS256"))
					}
					tok := iss.Token(claims, opts...)
					_, err := v.Verify(context.Background(), tok)
					wantFailure(t, err, CauseAlgNotAllowed, tok)
				})
			}
		}
	}
}

// TestAttackHMACKeyConfusion: the RS256->HS256 attack (RFC 8725 §2.1):
// an attacker HMAC-signs with the issuer's public key bytes as the secret.
// Without AllowHMAC the alg is refused; with it, no oct key exists in the
// set, and an RSA/EC/OKP key never fits an HS alg, so the kid (or its
// absence) finds no key.
func TestAttackHMACKeyConfusion(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	rsaPub := iss.PublicKey("RS256").(*rsa.PublicKey)
	pkix, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PublicKey(rsaPub)
	jwkJSON, _ := json.Marshal(oidctest.PublicJWK(rsaPub, iss.KeyID("RS256"), "RS256"))
	ecPKIX, _ := x509.MarshalPKIXPublicKey(iss.PublicKey("ES256"))
	secrets := map[string][]byte{
		"rsa-pkix-pem":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"rsa-pkcs1-pem": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1}),
		"rsa-pkix-der":  pkix,
		"rsa-pkcs1-der": pkcs1,
		"rsa-n":         rsaPub.N.Bytes(),
		"rsa-jwk-json":  jwkJSON,
		"jwks-document": iss.JWKS(),
		"ec-pkix-der":   ecPKIX,
		"ed25519-raw":   []byte(iss.PublicKey("EdDSA").(ed25519.PublicKey)),
	}
	allAlgs := func(c *Config) {
		c.AllowHMAC = true
		c.Algorithms = []string{"RS256", "ES256", "EdDSA", "HS256", "HS384", "HS512"}
	}
	cases := []struct {
		name  string
		v     *Verifier
		cause string
	}{
		{"no-hmac", newRemote(t, iss, nil), CauseAlgNotAllowed},
		{"allow-hmac-remote", newRemote(t, iss, allAlgs), CauseUnknownKey},
		{"allow-hmac-static", newStatic(t, iss, allAlgs), CauseUnknownKey},
	}
	claims := iss.ValidClaims(testAudience, t0)
	for _, c := range cases {
		// Control: the verifier works for the real algorithm.
		if _, err := c.v.Verify(context.Background(), iss.Token(claims)); err != nil {
			t.Fatalf("%s: control RS256 token refused: %v", c.name, err)
		}
		for sname, secret := range secrets {
			for _, alg := range []string{"HS256", "HS384", "HS512"} {
				for _, kid := range []string{iss.KeyID("RS256"), iss.KeyID("ES256"), iss.KeyID("EdDSA"), ""} {
					t.Run(c.name+"/"+sname+"/"+alg+"/kid="+kid, func(t *testing.T) {
						opts := []oidctest.TokenOption{oidctest.WithAlg(alg), oidctest.WithSigningKey(secret)}
						if kid == "" {
							opts = append(opts, oidctest.WithoutKID())
						} else {
							opts = append(opts, oidctest.WithKID(kid))
						}
						tok := iss.Token(claims, opts...)
						_, err := c.v.Verify(context.Background(), tok)
						wantFailure(t, err, c.cause, tok)
					})
				}
			}
		}
	}
}

// selfSigned returns a self-signed certificate for key.
func selfSigned(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "attacker"},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestAttackKeyHeadersIgnored: tokens signed by an attacker who names
// their own key in jku, x5u, jwk or x5c are refused, and the attacker's
// server is never contacted (RFC 8725 §3.10).
func TestAttackKeyHeadersIgnored(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	attacker := oidctest.NewIssuer(t) // serves its own JWKS and metadata
	attackerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert := base64.StdEncoding.EncodeToString(selfSigned(t, attackerKey))
	attackerJWK := oidctest.PublicJWK(&attackerKey.PublicKey, "attacker-1", "RS256")
	claims := iss.ValidClaims(testAudience, t0)

	v := newRemote(t, iss, nil)
	fetchesBefore := iss.JWKSFetches()
	cases := []struct {
		name  string
		opts  []oidctest.TokenOption
		cause string
	}{
		{"jku/attacker-kid", []oidctest.TokenOption{oidctest.WithHeader("jku", attacker.JWKSURL()), oidctest.WithKID(attacker.KeyID("RS256")), oidctest.WithSigningKey(attackerKey)}, CauseUnknownKey},
		{"jku/legit-kid", []oidctest.TokenOption{oidctest.WithHeader("jku", attacker.JWKSURL()), oidctest.WithSigningKey(attackerKey)}, CauseBadSignature},
		{"jku/no-kid", []oidctest.TokenOption{oidctest.WithHeader("jku", attacker.JWKSURL()), oidctest.WithoutKID(), oidctest.WithSigningKey(attackerKey)}, CauseBadSignature},
		{"x5u", []oidctest.TokenOption{oidctest.WithHeader("x5u", attacker.URL()+"/cert.pem"), oidctest.WithSigningKey(attackerKey)}, CauseBadSignature},
		{"jwk/attacker-kid", []oidctest.TokenOption{oidctest.WithHeader("jwk", attackerJWK), oidctest.WithKID("attacker-1"), oidctest.WithSigningKey(attackerKey)}, CauseUnknownKey},
		{"jwk/legit-kid", []oidctest.TokenOption{oidctest.WithHeader("jwk", attackerJWK), oidctest.WithSigningKey(attackerKey)}, CauseBadSignature},
		{"x5c/self-signed", []oidctest.TokenOption{oidctest.WithHeader("x5c", []string{cert}), oidctest.WithSigningKey(attackerKey)}, CauseBadSignature},
		{"x5c/no-kid", []oidctest.TokenOption{oidctest.WithHeader("x5c", []string{cert}), oidctest.WithoutKID(), oidctest.WithSigningKey(attackerKey)}, CauseBadSignature},
		{"x5c/garbage", []oidctest.TokenOption{oidctest.WithHeader("x5c", []string{"not a cert"}), oidctest.WithSigningKey(attackerKey)}, CauseBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := iss.Token(claims, c.opts...)
			_, err := v.Verify(context.Background(), tok)
			wantFailure(t, err, c.cause, tok)
		})
	}
	// Control: the same headers on a token the issuer really signed are
	// harmless: the key still comes from the issuer's set.
	tok := iss.Token(claims, oidctest.WithHeader("jku", attacker.JWKSURL()), oidctest.WithHeader("jwk", attackerJWK), oidctest.WithHeader("x5c", []string{cert}))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("issuer-signed token with ignored headers refused: %v", err)
	}
	if n := attacker.Requests(); n != 0 {
		t.Fatalf("attacker server received %d requests, want 0", n)
	}
	if got := iss.JWKSFetches(); got != fetchesBefore {
		t.Fatalf("JWKS fetched %d more times; an unknown kid within the rate limit must not refetch", got-fetchesBefore)
	}
}

// TestAttackKid: kid is a lookup key only. Path traversal, SQL, NUL,
// huge and empty kids, and kids naming a key of another type, find no key.
func TestAttackKid(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	v := newStatic(t, iss, nil)
	claims := iss.ValidClaims(testAudience, t0)
	cases := []struct {
		name string
		alg  string
		kid  string
	}{
		{"traversal-dev-null", "RS256", "../../../dev/null"},
		{"absolute-path", "RS256", "/etc/passwd"},
		{"file-url", "RS256", "file:///etc/passwd"},
		{"sql", "RS256", "' OR 1=1 --"},
		{"sql-union", "RS256", `rsa-1" UNION SELECT 'secret' --`},
		{"nul-suffix", "RS256", iss.KeyID("RS256") + "\x00"},
		{"case-variant", "RS256", strings.ToUpper(iss.KeyID("RS256"))},
		{"empty", "RS256", ""},
		{"huge", "RS256", strings.Repeat("A", 8000)},
		{"ec-kid-for-rs256", "RS256", iss.KeyID("ES256")},
		{"ed-kid-for-rs256", "RS256", iss.KeyID("EdDSA")},
		{"rsa-kid-for-es256", "ES256", iss.KeyID("RS256")},
		{"rsa-kid-for-eddsa", "EdDSA", iss.KeyID("RS256")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := iss.Token(claims, oidctest.WithAlg(c.alg), oidctest.WithKID(c.kid))
			_, err := v.Verify(context.Background(), tok)
			wantFailure(t, err, CauseUnknownKey, tok)
		})
	}
}

// TestAttackShape: anything but three canonical base64url segments within
// MaxTokenSize is malformed, even when it carries a valid signature.
func TestAttackShape(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	v := newStatic(t, iss, nil)
	valid := iss.Token(iss.ValidClaims(testAudience, t0))
	h, rest, _ := strings.Cut(valid, ".")
	p, s, _ := strings.Cut(rest, ".")
	bigClaims := iss.ValidClaims(testAudience, t0)
	bigClaims["pad"] = strings.Repeat("x", MaxTokenSize)
	huge := iss.Token(bigClaims)
	if len(huge) <= MaxTokenSize {
		t.Fatal("huge token is not huge")
	}
	cases := map[string]string{
		"empty":              "",
		"one-segment":        h,
		"two-segments":       h + "." + p,
		"four-segments":      valid + ".foo",
		"jwe-five-segments":  h + "." + p + "." + s + "." + p + "." + s,
		"trailing-dot":       valid + ".",
		"leading-dot":        "." + valid,
		"leading-space":      " " + valid,
		"trailing-space":     valid + " ",
		"trailing-newline":   valid + "\n",
		"inner-newline":      h[:10] + "\n" + h[10:] + "." + p + "." + s,
		"inner-crlf":         h + "." + p[:10] + "\r\n" + p[10:] + "." + s,
		"tab":                h + ".\t" + p + "." + s,
		"bearer-prefix":      "Bearer " + valid,
		"padded-signature":   valid + "==",
		"std-base64":         h + "." + p + "." + strings.NewReplacer("-", "+", "_", "/").Replace(s) + "+/",
		"json-serialization": `{"payload":"` + p + `","protected":"` + h + `","signature":"` + s + `"}`,
		"header-empty":       "." + p + "." + s,
		"huge-but-signed":    huge,
		"non-ascii":          h + "." + p + "." + s + "é",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tok)
			wantFailure(t, err, CauseMalformed, tok)
		})
	}
}

// TestAttackTampering: any change under a valid signature, or a
// signature from another key, is bad_signature.
func TestAttackTampering(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	other := oidctest.NewIssuer(t)
	v := newStatic(t, iss, nil)
	claims := iss.ValidClaims(testAudience, t0)
	tokA := iss.Token(claims)
	admin := iss.ValidClaims(testAudience, t0)
	admin["sub"], admin["roles"] = "mallory", []string{"admin"}
	tokB := iss.Token(admin)
	hA, restA, _ := strings.Cut(tokA, ".")
	pA, sA, _ := strings.Cut(restA, ".")
	_, restB, _ := strings.Cut(tokB, ".")
	pB, sB, _ := strings.Cut(restB, ".")
	sigA, _ := decodeSegment(sA)
	flipped := append([]byte(nil), sigA...)
	flipped[len(flipped)-1] ^= 1
	esTok := iss.Token(claims, oidctest.WithAlg("ES256"))
	esH, esRest, _ := strings.Cut(esTok, ".")
	esP, esS, _ := strings.Cut(esRest, ".")
	esSig, _ := decodeSegment(esS)
	rs := struct{ R, S *big.Int }{new(big.Int).SetBytes(esSig[:32]), new(big.Int).SetBytes(esSig[32:])}
	derSig, err := asn1.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecOther, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	cases := map[string]string{
		"signature-stripped":      hA + "." + pA + ".",
		"payload-swapped":         hA + "." + pB + "." + sA,
		"signature-swapped":       hA + "." + pA + "." + sB,
		"signature-bit-flipped":   hA + "." + pA + "." + b64.EncodeToString(flipped),
		"signature-truncated":     hA + "." + pA + "." + b64.EncodeToString(sigA[:len(sigA)-1]),
		"signature-extended":      hA + "." + pA + "." + b64.EncodeToString(append(append([]byte(nil), sigA...), 0)),
		"es256-der-signature":     esH + "." + esP + "." + b64.EncodeToString(derSig),
		"es256-zero-signature":    esH + "." + esP + "." + b64.EncodeToString(make([]byte, 64)),
		"other-issuer-key":        iss.Token(claims, oidctest.WithSigningKey(otherKey)),
		"other-issuer-ec-key":     iss.Token(claims, oidctest.WithAlg("ES256"), oidctest.WithSigningKey(ecOther)),
		"other-issuer-same-kid":   other.Token(claims, oidctest.WithKID(iss.KeyID("RS256"))),
		"payload-reencoded-extra": hA + "." + b64.EncodeToString(append(mustDecode(t, pA), ' ')) + "." + sA,
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tok)
			wantFailure(t, err, CauseBadSignature, tok)
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, ok := decodeSegment(s)
	if !ok {
		t.Fatalf("bad segment")
	}
	return b
}

// TestAttackHeaderPolicy: crit, b64, cty, typ and duplicate or
// ill-typed header members.
func TestAttackHeaderPolicy(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	v := newStatic(t, iss, nil)
	claims := iss.ValidClaims(testAudience, t0)
	kid := iss.KeyID("RS256")
	raw := func(h string) oidctest.TokenOption { return oidctest.WithRawHeader([]byte(h)) }
	cases := []struct {
		name  string
		opts  []oidctest.TokenOption
		cause string // "" = accepted
	}{
		{"typ-at+jwt", nil, ""},
		{"typ-JWT", []oidctest.TokenOption{oidctest.WithTyp("JWT")}, ""},
		{"typ-application/at+jwt", []oidctest.TokenOption{oidctest.WithTyp("application/at+jwt")}, ""},
		{"typ-AT+JWT", []oidctest.TokenOption{oidctest.WithTyp("AT+JWT")}, ""},
		{"typ-absent", []oidctest.TokenOption{oidctest.WithoutTyp()}, ""},
		{"typ-dpop", []oidctest.TokenOption{oidctest.WithTyp("dpop+jwt")}, CauseMalformed},
		{"typ-logout", []oidctest.TokenOption{oidctest.WithTyp("logout+jwt")}, CauseMalformed},
		{"typ-empty", []oidctest.TokenOption{oidctest.WithTyp("")}, CauseMalformed},
		{"typ-number", []oidctest.TokenOption{oidctest.WithHeader("typ", 1)}, CauseMalformed},
		{"crit-exp", []oidctest.TokenOption{oidctest.WithHeader("crit", []string{"exp"}), oidctest.WithHeader("exp", 1)}, CauseMalformed},
		{"crit-empty", []oidctest.TokenOption{oidctest.WithHeader("crit", []string{})}, CauseMalformed},
		{"crit-b64", []oidctest.TokenOption{oidctest.WithHeader("crit", []string{"b64"}), oidctest.WithHeader("b64", false)}, CauseMalformed},
		{"b64-false", []oidctest.TokenOption{oidctest.WithHeader("b64", false)}, CauseMalformed},
		{"cty-JWT", []oidctest.TokenOption{oidctest.WithHeader("cty", "JWT")}, CauseMalformed},
		{"kid-number", []oidctest.TokenOption{oidctest.WithHeader("kid", 7)}, CauseMalformed},
		{"alg-number", []oidctest.TokenOption{oidctest.WithHeader("alg", 256)}, CauseMalformed},
		{"alg-missing", []oidctest.TokenOption{raw(`{"kid":"` + kid + `"}`)}, CauseMalformed},
		{"alg-lowercase", []oidctest.TokenOption{oidctest.WithHeader("alg", "rs256")}, CauseAlgNotAllowed},
		{"alg-not-enabled", []oidctest.TokenOption{oidctest.WithAlg("RS512")}, CauseAlgNotAllowed},
		{"dup-alg", []oidctest.TokenOption{raw(`{"alg":"RS256","kid":"` + kid + `","alg":"none"}`)}, CauseMalformed},
		{"dup-kid", []oidctest.TokenOption{raw(`{"alg":"RS256","kid":"x","kid":"` + kid + `"}`)}, CauseMalformed},
		{"header-array", []oidctest.TokenOption{raw(`["RS256"]`)}, CauseMalformed},
		{"header-null", []oidctest.TokenOption{raw(`null`)}, CauseMalformed},
		{"header-trailing", []oidctest.TokenOption{raw(`{"alg":"RS256","kid":"` + kid + `"} {}`)}, CauseMalformed},
		{"header-spaces-ok", []oidctest.TokenOption{raw("{ \"alg\" : \"RS256\",\n\t\"kid\" : \"" + kid + "\" }")}, ""},
		{"ALG-uppercase-member", []oidctest.TokenOption{raw(`{"ALG":"none","alg":"RS256","kid":"` + kid + `"}`)}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := iss.Token(claims, c.opts...)
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
