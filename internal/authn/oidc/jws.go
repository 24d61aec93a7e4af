package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
)

// MaxTokenSize is the largest token Verify will look at, in bytes. Real
// access tokens are a few KiB; the cap bounds parsing work per request.
const MaxTokenSize = 16 << 10

// b64 is base64url without padding, rejecting non-zero trailing bits
// (RFC 7515 §2, RFC 4648 §5, §3.5). Characters outside the alphabet are
// refused by isB64URL first, because encoding/base64 skips '\r' and '\n'.
var b64 = base64.RawURLEncoding.Strict()

func isB64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func decodeSegment(s string) ([]byte, bool) {
	if !isB64URL(s) {
		return nil, false
	}
	b, err := b64.DecodeString(s)
	return b, err == nil
}

// header is a parsed JWS Protected Header (RFC 7515 §4).
type header struct {
	alg    string
	kid    string
	hasKid bool
}

// acceptedTypes are the "typ" values (compared case-insensitively,
// RFC 7515 §4.1.9) a token may carry: RFC 9068 §2.1 access tokens
// ("at+jwt") and plain "JWT", which Keycloak, Auth0 and Entra ID put on
// their access tokens. Anything else (an ID token profile, "dpop+jwt",
// "secevent+jwt", ...) is another kind of JWT and is refused, as RFC 8725
// §3.11 recommends. A missing typ is accepted.
var acceptedTypes = []string{"at+jwt", "application/at+jwt", "jwt", "application/jwt"}

// parseHeader decodes and checks the protected header.
//
//   - alg must be a string in allowed; matching is exact, so "none",
//     "None", "nOnE" and "" are all refused (RFC 8725 §3.1).
//   - crit is refused whenever present, even empty: we understand no
//     extension, and RFC 7515 §4.1.11 forbids an empty list anyway.
//   - b64 is refused: it is only meaningful with crit (RFC 7797 §6) and
//     would switch the signing input to the raw payload.
//   - cty is refused: nested JWTs are not supported (RFC 7519 §5.2).
//   - typ, if present, must be one of acceptedTypes.
//   - jku, x5u, jwk, x5c, x5t and x5t#S256 are never read: keys come only
//     from the configured key set (RFC 8725 §3.10).
//   - kid, if present, must be a string; it is only ever compared for
//     equality with the kids of configured keys.
func parseHeader(data []byte, allowed map[string]bool) (*header, *Failure) {
	m, err := parseObject(data)
	if err != nil {
		return nil, fail(CauseMalformed, "header is not a JSON object")
	}
	h := &header{}
	raw, ok := m["alg"]
	if !ok || json.Unmarshal(raw, &h.alg) != nil {
		return nil, fail(CauseMalformed, "header alg missing or not a string")
	}
	if !allowed[h.alg] {
		return nil, fail(CauseAlgNotAllowed, "")
	}
	for _, name := range []string{"crit", "b64", "cty"} {
		if _, ok := m[name]; ok {
			return nil, fail(CauseMalformed, "header parameter "+name+" not supported")
		}
	}
	if raw, ok := m["typ"]; ok {
		var typ string
		if json.Unmarshal(raw, &typ) != nil {
			return nil, fail(CauseMalformed, "header typ is not a string")
		}
		if !containsFold(acceptedTypes, typ) {
			return nil, fail(CauseMalformed, "header typ is not a JWT access token type")
		}
	}
	if raw, ok := m["kid"]; ok {
		if json.Unmarshal(raw, &h.kid) != nil {
			return nil, fail(CauseMalformed, "header kid is not a string")
		}
		h.hasKid = true
	}
	return h, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// splitCompact checks the token's size and shape: exactly three
// base64url segments (JWS Compact Serialization, RFC 7515 §7.1) with a
// non-empty header. The JSON serialization (which starts with '{') and
// JWE (five segments) fail here. An empty signature passes this step so
// that an unsigned "alg":"none" token is reported as alg_not_allowed (and
// any other empty signature as bad_signature); an empty payload passes
// too, and Verify then refuses it as not a JSON object.
func splitCompact(token string) (signingInput string, hdr, payload, sig []byte, f *Failure) {
	if len(token) > MaxTokenSize {
		return "", nil, nil, nil, fail(CauseMalformed, "token larger than MaxTokenSize")
	}
	if strings.Count(token, ".") != 2 {
		return "", nil, nil, nil, fail(CauseMalformed, "token is not three dot-separated segments")
	}
	h, rest, _ := strings.Cut(token, ".")
	p, s, _ := strings.Cut(rest, ".")
	if h == "" {
		return "", nil, nil, nil, fail(CauseMalformed, "empty header segment")
	}
	var ok1, ok2, ok3 bool
	hdr, ok1 = decodeSegment(h)
	payload, ok2 = decodeSegment(p)
	sig, ok3 = decodeSegment(s)
	if !ok1 || !ok2 || !ok3 {
		return "", nil, nil, nil, fail(CauseMalformed, "segment is not canonical unpadded base64url")
	}
	return token[:len(h)+1+len(p)], hdr, payload, sig, nil
}

// LooksLikeJWT reports whether s has the shape of a JWS in compact
// serialization: three dot-separated base64url segments whose first
// decodes to a JSON object with a string "alg" member. It does not verify
// anything; the HTTP layer uses it to route a bearer credential to Verify
// rather than to API-key lookup ("pcl_..." keys never contain a dot).
// Strings longer than MaxTokenSize are never JWTs here; Verify would
// refuse them anyway.
func LooksLikeJWT(s string) bool {
	if len(s) > MaxTokenSize || strings.Count(s, ".") != 2 {
		return false
	}
	h, _, _ := strings.Cut(s, ".")
	data, ok := decodeSegment(h)
	if !ok {
		return false
	}
	m, err := parseObject(data)
	if err != nil {
		return false
	}
	var alg string
	return json.Unmarshal(m["alg"], &alg) == nil
}

// verifySignature runs the signature layer of Verify: size and shape,
// header policy, key selection and the signature itself. It returns the
// verified payload (not yet interpreted), the header and the key that
// verified it.
//
// Key selection: with a kid, the keys whose kid is equal; without, every
// key. Of those, only keys that fit the header alg are tried (jwk.fits).
// No fitting key is CauseUnknownKey (after at most one rate-limited
// refresh of a remote set); fitting keys that all fail are
// CauseBadSignature.
func (v *Verifier) verifySignature(ctx context.Context, token string) ([]byte, *header, *jwk, *Failure) {
	input, hdrBytes, payload, sig, f := splitCompact(token)
	if f != nil {
		return nil, nil, nil, f
	}
	h, f := parseHeader(hdrBytes, v.algs)
	if f != nil {
		return nil, nil, nil, f
	}
	keys, f := v.keys.lookup(ctx, h)
	if f != nil {
		return nil, nil, nil, f
	}
	for _, k := range keys {
		if verifyJWS(h.alg, k.pub, []byte(input), sig) {
			return payload, h, k, nil
		}
	}
	return nil, nil, nil, fail(CauseBadSignature, "")
}

// verifyJWS checks one signature with the standard library (RFC 7518 §3).
// The caller guarantees that key fits alg.
//
// go-jose is not used here because its RSASSA-PSS verification accepts
// any salt length (rsa.PSSSaltLengthAuto), while RFC 7518 §3.5 fixes the
// salt to the hash length; Wycheproof PS256 SaltLenChanged vectors
// (tcId 281-286) catch the difference.
func verifyJWS(alg string, key any, input, sig []byte) bool {
	info, ok := supportedAlgs[alg]
	if !ok {
		return false
	}
	var digest []byte
	if info.family != famEd && info.family != famHMAC {
		h := info.hash.New()
		h.Write(input)
		digest = h.Sum(nil)
	}
	switch info.family {
	case famRSA:
		pub, ok := key.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(pub, info.hash, digest, sig) == nil
	case famPSS:
		pub, ok := key.(*rsa.PublicKey)
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: info.hash}
		return ok && rsa.VerifyPSS(pub, info.hash, digest, sig, opts) == nil
	case famEC:
		// R || S, each left-padded to the curve's byte length
		// (RFC 7518 §3.4); DER or any other length is refused.
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok || pub.Curve != info.curve {
			return false
		}
		n := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return false
		}
		r := new(big.Int).SetBytes(sig[:n])
		s := new(big.Int).SetBytes(sig[n:])
		return ecdsa.Verify(pub, digest, r, s)
	case famEd:
		pub, ok := key.(ed25519.PublicKey)
		return ok && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, input, sig)
	case famHMAC:
		secret, ok := key.([]byte)
		if !ok || len(secret) < info.hash.Size() {
			return false
		}
		mac := hmac.New(info.hash.New, secret)
		mac.Write(input)
		return hmac.Equal(mac.Sum(nil), sig)
	}
	return false
}
