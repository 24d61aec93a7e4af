package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// Wycheproof vectors (C2SP/wycheproof, Apache-2.0; see testdata/README.md).

type wycheproofFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		Comment string           `json:"comment"`
		Private json.RawMessage  `json:"private"`
		Public  json.RawMessage  `json:"public"`
		Tests   []wycheproofTest `json:"tests"`
	} `json:"testGroups"`
}

type wycheproofTest struct {
	TcID    int      `json:"tcId"`
	Comment string   `json:"comment"`
	JWS     string   `json:"jws"`
	Result  string   `json:"result"` // "valid" or "invalid"
	Flags   []string `json:"flags"`
}

func loadWycheproof(t *testing.T, name string) *wycheproofFile {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range f.TestGroups {
		n += len(g.Tests)
	}
	if n != f.NumberOfTests {
		t.Fatalf("%s: %d tests, header says %d", name, n, f.NumberOfTests)
	}
	return &f
}

// wycheproofDeviations are the JWS vectors whose expected result we do not
// follow, on purpose. The test asserts that each of them still deviates,
// so that a rule change forces this list to be revisited.
var wycheproofDeviations = map[int]string{
	// The group's key carries "alg":"PS256" but the vector is signed with
	// PS384. We pin a key to its JWK "alg" (RFC 7517 §4.4, RFC 8725 §3.1:
	// one key, one algorithm), the same rule Wycheproof's own JWK vector
	// tcId 19 (mismatchedAlgAndCurve) expects. Refused as unknown_key.
	346: "JWK alg PS256 pins the key; PS384 token refused (RFC 8725 §3.1)",
	350: "JWK alg PS256 pins the key; PS384 token refused (RFC 8725 §3.1)",
	// The group's key carries "alg":"ES521", which is not a JWS algorithm
	// (RFC 7518 §3.1 defines ES512 for P-521). NewWithKeys refuses a set
	// with an unusable key, so these valid ES512 signatures never verify.
	347: `JWK alg "ES521" is not a registered algorithm; the key set is refused`,
	351: `JWK alg "ES521" is not a registered algorithm; the key set is refused`,
	// Byte-for-byte identical to tcId 357 (ValidMac, "valid"): no
	// deterministic verifier can accept one and reject the other. The
	// padding variant the comment names is missing from the vector file.
	367: "identical to valid tcId 357; accepted",
	370: "identical to valid tcId 357; accepted",
	// Contains '?', which is outside the base64url alphabet. RFC 7515 §2
	// and RFC 4648 §5 decoding refuses it; Wycheproof marks it valid for
	// libraries that skip invalid characters. Refused as malformed.
	372: "'?' in the header segment is not base64url; refused",
	373: "'?' in the payload segment is not base64url; refused",
}

// wycheproofConfig builds the Config for one vector. In "brief" mode
// Algorithms is the key's alg, or the token header's alg when the key has
// none; in "permissive" mode it is every supported alg that appears in the
// group (key or any header), with AllowHMAC whenever an HS alg appears, so
// that key pinning and key-type checks — not the alg allowlist — have to
// stop cross-algorithm vectors. "none" is never allowed.
func wycheproofConfig(mode, keyAlg, headerAlg string, groupAlgs []string) (Config, bool) {
	var algs []string
	switch mode {
	case "brief":
		a := keyAlg
		if a == "" {
			a = headerAlg
		}
		if _, ok := supportedAlgs[a]; ok {
			algs = []string{a}
		}
	case "permissive":
		algs = groupAlgs
	}
	if len(algs) == 0 {
		return Config{}, false
	}
	hmac := slices.ContainsFunc(algs, func(a string) bool { return strings.HasPrefix(a, "HS") })
	return Config{
		Issuer:     "https://issuer.example",
		Audience:   "https://rs.example",
		Algorithms: algs,
		AllowHMAC:  hmac,
	}, true
}

func headerAlg(jws string) string {
	h, _, _ := strings.Cut(jws, ".")
	b, ok := decodeSegment(h)
	if !ok {
		return ""
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	_ = json.Unmarshal(b, &hdr)
	return hdr.Alg
}

// TestWycheproofJWS runs all 401 json_web_signature_test vectors through
// the signature layer (the payloads are not JWT claims) and requires that
// exactly the "valid" vectors verify, apart from wycheproofDeviations.
func TestWycheproofJWS(t *testing.T) {
	f := loadWycheproof(t, "wycheproof-json_web_signature_test.json")
	for _, mode := range []string{"brief", "permissive"} {
		t.Run(mode, func(t *testing.T) {
			total, pass := 0, 0
			var summary []string
			deviated := map[int]bool{}
			for gi, g := range f.TestGroups {
				key := g.Public
				if key == nil {
					key = g.Private // oct keys have no public form
				}
				var meta struct {
					Alg string `json:"alg"`
					Kty string `json:"kty"`
				}
				if err := json.Unmarshal(key, &meta); err != nil {
					t.Fatal(err)
				}
				jwks := []byte(`{"keys":[` + string(key) + `]}`)
				var groupAlgs []string
				for _, a := range append([]string{meta.Alg}, headerAlgs(g.Tests)...) {
					if _, ok := supportedAlgs[a]; ok && !slices.Contains(groupAlgs, a) {
						groupAlgs = append(groupAlgs, a)
					}
				}
				gpass := 0
				for _, tc := range g.Tests {
					cfg, ok := wycheproofConfig(mode, meta.Alg, headerAlg(tc.JWS), groupAlgs)
					accepted, layer := false, "alg"
					var payload []byte
					if ok {
						v, err := NewWithKeys(cfg, jwks)
						layer = "keyset"
						if err == nil {
							var f *Failure
							payload, _, _, f = v.verifySignature(context.Background(), tc.JWS)
							accepted, layer = f == nil, "verify"
							if f != nil {
								assertNoLeak(t, f.Error(), tc.JWS)
							}
						}
					}
					want := tc.Result == "valid"
					if accepted && want {
						_, rest, _ := strings.Cut(tc.JWS, ".")
						p, _, _ := strings.Cut(rest, ".")
						if wantPayload, _ := decodeSegment(p); string(payload) != string(wantPayload) {
							t.Errorf("tcId %d: payload differs from the signed one", tc.TcID)
						}
					}
					total++
					if reason, dev := wycheproofDeviations[tc.TcID]; dev {
						if accepted == want {
							t.Errorf("tcId %d (%s): documented deviation no longer deviates (%s); update wycheproofDeviations", tc.TcID, tc.Comment, reason)
						}
						deviated[tc.TcID] = true
						continue
					}
					if accepted != want {
						t.Errorf("group %d (%s) tcId %d (%s, flags %v): accepted=%v (stopped at %s), want %s",
							gi, g.Comment, tc.TcID, tc.Comment, tc.Flags, accepted, layer, tc.Result)
						continue
					}
					pass++
					gpass++
				}
				summary = append(summary, fmt.Sprintf("group %2d %-18s %3d/%3d", gi, g.Comment, gpass, len(g.Tests)))
			}
			if len(deviated) != len(wycheproofDeviations) {
				t.Errorf("saw %d documented deviations, list has %d", len(deviated), len(wycheproofDeviations))
			}
			t.Logf("mode %s: %d/%d match, %d documented deviations\n%s", mode, pass, total, len(deviated), strings.Join(summary, "\n"))
		})
	}
}

func headerAlgs(tests []wycheproofTest) []string {
	var out []string
	for _, tc := range tests {
		out = append(out, headerAlg(tc.JWS))
	}
	return out
}

// TestWycheproofJWSFullVerify runs every vector through Verify: none is a
// JWT, so none may be accepted, and the ones with a valid signature must
// get as far as the claims (cause malformed) — the signature layer let
// them through and the claims layer stopped them.
func TestWycheproofJWSFullVerify(t *testing.T) {
	f := loadWycheproof(t, "wycheproof-json_web_signature_test.json")
	for _, g := range f.TestGroups {
		key := g.Public
		if key == nil {
			key = g.Private
		}
		var meta struct {
			Alg string `json:"alg"`
		}
		_ = json.Unmarshal(key, &meta)
		for _, tc := range g.Tests {
			t.Run(fmt.Sprintf("tcId%d", tc.TcID), func(t *testing.T) {
				cfg, ok := wycheproofConfig("brief", meta.Alg, headerAlg(tc.JWS), nil)
				if !ok {
					return // no allowed algorithm: nothing could verify
				}
				v, err := NewWithKeys(cfg, []byte(`{"keys":[`+string(key)+`]}`))
				if err != nil {
					if tc.Result == "valid" && wycheproofDeviations[tc.TcID] == "" {
						t.Fatalf("key set of a valid vector refused: %v", err)
					}
					return // refused at construction: nothing can verify
				}
				c, err := v.Verify(context.Background(), tc.JWS)
				if err == nil {
					t.Fatalf("Verify accepted a non-JWT vector: %+v", c)
				}
				var fl *Failure
				if !errors.As(err, &fl) || !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("err = %v, want *Failure / ErrInvalidToken", err)
				}
				assertNoLeak(t, err.Error(), tc.JWS)
				_, _, _, sf := v.verifySignature(context.Background(), tc.JWS)
				if sf == nil && fl.Cause != CauseMalformed {
					t.Fatalf("signature verified but Verify cause = %q, want malformed claims", fl.Cause)
				}
			})
		}
	}
}

// jwkVectorLayer says where each json_web_key_test vector must be
// stopped: "keyset: <reason>" (NewWithKeys refuses the set with an error
// containing reason), "verify" (the signature does not verify) or ""
// (valid: must verify).
var jwkVectorLayer = map[int]string{
	1:  "keyset: mixes symmetric and asymmetric", // MixedKeySet: oct and EC keys in one set
	2:  "",                                       // valid HS256 in a two-key set
	3:  "verify",                                 // modified signature
	4:  "keyset: duplicate kid",                  // DuplicateKid
	5:  "",                                       // valid RS256
	6:  "keyset: no usable signature key",        // RSA1_5, use enc: skipped as not a signature key
	7:  "keyset: ROCA",                           // CVE-2017-15361 modulus
	8:  "keyset: shorter than 2048 bits",         // 1024-bit RSA
	9:  "keyset: invalid or unsupported key",     // public exponent 1 (go-jose refuses to decode it)
	10: "keyset: shorter than its hash output",   // HS256 key of 31 bytes
	11: "keyset: shorter than its hash output",   // HS384 key of 47 bytes
	12: "keyset: shorter than its hash output",   // HS512 key of 63 bytes
	13: "",                                       // long HS256 key
	14: "",                                       // long HS384 key
	15: "",                                       // long HS512 key
	16: "keyset: shorter than its hash output",   // empty HS256 key
	17: "keyset: shorter than its hash output",   // empty HS384 key
	18: "keyset: shorter than its hash output",   // empty HS512 key
	19: "keyset: unsupported alg",                // alg ES521 (unregistered) on a P-256 key
	20: "keyset: unsupported alg",                // alg ES224
	21: "keyset: no usable signature key",        // use enc: skipped as not a signature key
	22: "keyset: invalid or unsupported key",     // point not on the curve
	23: "keyset: invalid or unsupported key",     // P-384 label on P-256-sized coordinates
	24: "keyset: invalid or unsupported key",     // kty RSA with EC members
	25: "keyset: unsupported alg",                // oct key labelled A256GCM
	26: "keyset: unsupported alg",                // oct key labelled A256KW
}

// TestWycheproofJWK runs the json_web_key_test vectors (key-set
// validation) through NewWithKeys and the signature layer, asserting the
// layer that stops each invalid vector (jwkVectorLayer), then through
// Verify, which must refuse them all (their payload is "foo").
func TestWycheproofJWK(t *testing.T) {
	f := loadWycheproof(t, "wycheproof-json_web_key_test.json")
	seen := 0
	for _, g := range f.TestGroups {
		set := g.Public
		if set == nil {
			set = g.Private
		}
		for _, tc := range g.Tests {
			t.Run(fmt.Sprintf("tcId%d_%s", tc.TcID, tc.Comment), func(t *testing.T) {
				wantLayer, ok := jwkVectorLayer[tc.TcID]
				if !ok {
					t.Fatalf("tcId %d has no expectation in jwkVectorLayer", tc.TcID)
				}
				if (wantLayer == "") != (tc.Result == "valid") {
					t.Fatalf("jwkVectorLayer[%d] disagrees with result %q", tc.TcID, tc.Result)
				}
				alg := headerAlg(tc.JWS)
				cfg := Config{
					Issuer:     "https://issuer.example",
					Audience:   "https://rs.example",
					Algorithms: []string{alg},
					AllowHMAC:  strings.HasPrefix(alg, "HS"),
				}
				v, err := NewWithKeys(cfg, set)
				gotLayer := ""
				switch {
				case err != nil:
					gotLayer = "keyset"
					if !errors.Is(err, ErrConfig) {
						t.Fatalf("NewWithKeys error %v is not ErrConfig", err)
					}
					if reason, ok := strings.CutPrefix(wantLayer, "keyset: "); ok {
						if !strings.Contains(err.Error(), reason) {
							t.Fatalf("NewWithKeys error %q does not say %q", err, reason)
						}
						gotLayer = wantLayer
					}
				default:
					if _, _, _, f := v.verifySignature(context.Background(), tc.JWS); f != nil {
						gotLayer = "verify"
					}
					if _, err := v.Verify(context.Background(), tc.JWS); err == nil {
						t.Fatalf("Verify accepted a non-JWT payload")
					}
				}
				if gotLayer != wantLayer {
					t.Fatalf("stopped at %q (err %v), want %q", gotLayer, err, wantLayer)
				}
			})
			seen++
		}
	}
	if seen != len(jwkVectorLayer) {
		t.Fatalf("ran %d vectors, jwkVectorLayer has %d", seen, len(jwkVectorLayer))
	}
}

// TestGoJosePSSSaltLength documents why verifyJWS does not call go-jose:
// go-jose v4 verifies PS* with rsa.PSSSaltLengthAuto and so accepts the
// Wycheproof SaltLenChanged signatures that RFC 7518 §3.5 (salt = hash
// length) makes invalid. We refuse them. If go-jose starts refusing them
// too, this test fails and the comment on verifyJWS should be revisited.
func TestGoJosePSSSaltLength(t *testing.T) {
	f := loadWycheproof(t, "wycheproof-json_web_signature_test.json")
	var joseAccepted, oursAccepted []int
	for _, g := range f.TestGroups {
		if g.Comment != "ps256" {
			continue
		}
		var jk jose.JSONWebKey
		if err := jk.UnmarshalJSON(g.Public); err != nil {
			t.Fatal(err)
		}
		v, err := NewWithKeys(Config{Issuer: "https://issuer.example", Audience: "https://rs.example", Algorithms: []string{"PS256"}},
			[]byte(`{"keys":[`+string(g.Public)+`]}`))
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range g.Tests {
			if tc.Comment != "SaltLenChanged" {
				continue
			}
			if tc.Result != "invalid" {
				t.Fatalf("tcId %d: expected an invalid vector", tc.TcID)
			}
			if jws, err := jose.ParseSignedCompact(tc.JWS, []jose.SignatureAlgorithm{jose.PS256}); err == nil {
				if _, err := jws.Verify(jk.Key); err == nil {
					joseAccepted = append(joseAccepted, tc.TcID)
				}
			}
			if _, _, _, f := v.verifySignature(context.Background(), tc.JWS); f == nil {
				oursAccepted = append(oursAccepted, tc.TcID)
			}
		}
	}
	sort.Ints(joseAccepted)
	t.Logf("go-jose accepts SaltLenChanged tcIds %v; we accept %v", joseAccepted, oursAccepted)
	if len(oursAccepted) != 0 {
		t.Errorf("we accepted SaltLenChanged vectors %v", oursAccepted)
	}
	if len(joseAccepted) == 0 {
		t.Errorf("go-jose now refuses every SaltLenChanged vector; revisit the verifyJWS comment")
	}
}
