package oidc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

// Limits on a JWK Set (RFC 7517 §5).
const (
	maxJWKSBytes   = 1 << 20 // 1 MiB document
	maxJWKSKeys    = 100     // keys per set
	minRSABits     = 2048    // RFC 7518 §3.3, §3.5
	maxRSABits     = 8192    // bounds the cost of one verification
	minHMACKeySize = 32      // bytes; RFC 7518 §3.2 (HS256), more for HS384/512
)

// Algorithm families. A key fits an alg only if it is of the alg's family
// (and curve); this is what stops RS256->HS256 key confusion
// (RFC 8725 §2.1, §3.1).
const (
	famRSA  = "RSA" // RS256/384/512, RSASSA-PKCS1-v1_5 (RFC 7518 §3.3)
	famPSS  = "PSS" // PS256/384/512, RSASSA-PSS, salt = hash length (RFC 7518 §3.5)
	famEC   = "EC"  // ES256/384/512 on P-256/384/521 (RFC 7518 §3.4)
	famEd   = "Ed"  // EdDSA with Ed25519 (RFC 8037 §3.1)
	famHMAC = "HS"  // HS256/384/512 (RFC 7518 §3.2)
)

type algInfo struct {
	family string
	hash   crypto.Hash    // unused for EdDSA
	curve  elliptic.Curve // ES* only
}

// supportedAlgs are the JWS "alg" values this package can verify
// (RFC 7518 §3.1, RFC 8037). "none" is deliberately absent.
var supportedAlgs = map[string]algInfo{
	"RS256": {famRSA, crypto.SHA256, nil},
	"RS384": {famRSA, crypto.SHA384, nil},
	"RS512": {famRSA, crypto.SHA512, nil},
	"PS256": {famPSS, crypto.SHA256, nil},
	"PS384": {famPSS, crypto.SHA384, nil},
	"PS512": {famPSS, crypto.SHA512, nil},
	"ES256": {famEC, crypto.SHA256, elliptic.P256()},
	"ES384": {famEC, crypto.SHA384, elliptic.P384()},
	"ES512": {famEC, crypto.SHA512, elliptic.P521()},
	"EdDSA": {famEd, 0, nil},
	"HS256": {famHMAC, crypto.SHA256, nil},
	"HS384": {famHMAC, crypto.SHA384, nil},
	"HS512": {famHMAC, crypto.SHA512, nil},
}

// jwk is one usable verification key from a JWK Set.
type jwk struct {
	kid string // "" if the JWK has none
	alg string // the JWK's "alg" (RFC 7517 §4.4), "" if absent
	kty string // "RSA", "EC", "OKP" or "oct"
	// pub is *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or
	// []byte (oct).
	pub any
}

// fits reports whether k may verify a JWS whose header alg is alg: the
// JWK's own alg, if any, must equal it exactly (RFC 8725 §3.1: one key,
// one algorithm), and the key type and curve must match the alg's family.
func (k *jwk) fits(alg string) bool {
	info, ok := supportedAlgs[alg]
	if !ok || (k.alg != "" && k.alg != alg) {
		return false
	}
	switch info.family {
	case famRSA, famPSS:
		_, ok := k.pub.(*rsa.PublicKey)
		return ok
	case famEC:
		p, ok := k.pub.(*ecdsa.PublicKey)
		return ok && p.Curve == info.curve
	case famEd:
		p, ok := k.pub.(ed25519.PublicKey)
		return ok && len(p) == ed25519.PublicKeySize
	case famHMAC:
		b, ok := k.pub.([]byte)
		return ok && len(b) >= info.hash.Size()
	}
	return false
}

// privateMembers are JWK members that carry private or secret key
// material (RFC 7518 §6.2.2, §6.3.2, RFC 8037 §2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "priv"}

// jwksSource says where a JWK Set came from; it changes which keys are
// acceptable.
type jwksSource int

const (
	// fromStatic is a JWK Set handed to NewWithKeys by the operator.
	fromStatic jwksSource = iota
	// fromRemote is a JWK Set fetched from the issuer's jwks_uri. A
	// published set must never contain a symmetric key.
	fromRemote
)

// parseJWKS decodes a JWK Set (RFC 7517 §5) into usable signature
// verification keys.
//
// Set-level problems return an error: not a JSON object with a "keys"
// array, duplicate member names, more than maxJWKSKeys keys, private key
// material in an asymmetric key, a symmetric key in a remote set, oct and
// asymmetric keys mixed in one set, two usable keys with the same kid, or
// no usable key at all (Wycheproof MixedKeySet and DuplicateKid).
//
// Keys not meant for signatures ("use" other than "sig", "key_ops"
// without "verify") are skipped silently. Other unusable keys (unknown
// alg, invalid or unsupported key, RSA under 2048 bits, bad exponent,
// ROCA-vulnerable modulus, short HMAC key, oct without AllowHMAC) are
// skipped and described in problems, one constant string per key; RFC 7517
// §5 says such keys SHOULD be ignored, and NewWithKeys turns any problem
// into an error instead.
func parseJWKS(data []byte, allowHMAC bool, src jwksSource) (keys []*jwk, problems []string, err error) {
	if len(data) > maxJWKSBytes {
		return nil, nil, fmt.Errorf("JWK Set larger than %d bytes", maxJWKSBytes)
	}
	top, err := parseObject(data)
	if err != nil {
		return nil, nil, fmt.Errorf("JWK Set is not a JSON object without duplicate members")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(top["keys"], &raws); err != nil || raws == nil {
		return nil, nil, fmt.Errorf(`JWK Set has no "keys" array`)
	}
	if len(raws) > maxJWKSKeys {
		return nil, nil, fmt.Errorf("JWK Set has more than %d keys", maxJWKSKeys)
	}
	kids := map[string]bool{}
	var symmetric, asymmetric bool
	for i, raw := range raws {
		k, skip, problem, err := parseJWK(raw, allowHMAC, src)
		if err != nil {
			return nil, nil, fmt.Errorf("key %d: %w", i, err)
		}
		if problem != "" {
			problems = append(problems, fmt.Sprintf("key %d: %s", i, problem))
			continue
		}
		if skip {
			continue
		}
		if k.kid != "" {
			if kids[k.kid] {
				return nil, nil, fmt.Errorf("key %d: duplicate kid", i)
			}
			kids[k.kid] = true
		}
		if k.kty == "oct" {
			symmetric = true
		} else {
			asymmetric = true
		}
		keys = append(keys, k)
	}
	if symmetric && asymmetric {
		return nil, nil, fmt.Errorf("JWK Set mixes symmetric and asymmetric keys")
	}
	if len(keys) == 0 {
		if len(problems) > 0 {
			return nil, problems, fmt.Errorf("JWK Set has no usable signature key (%s)", problems[0])
		}
		return nil, nil, fmt.Errorf("JWK Set has no usable signature key")
	}
	return keys, problems, nil
}

// parseJWK decodes one JWK. skip means "not a signature key"; problem
// means "unusable, ignored"; err is a set-level refusal.
func parseJWK(raw json.RawMessage, allowHMAC bool, src jwksSource) (k *jwk, skip bool, problem string, err error) {
	m, perr := parseObject(raw)
	if perr != nil {
		return nil, false, "not a JSON object", nil
	}
	var kty, alg, kid string
	if !stringMember(m, "kty", &kty) || kty == "" {
		return nil, false, "missing kty", nil
	}
	if !stringMember(m, "alg", &alg) || !stringMember(m, "kid", &kid) {
		return nil, false, "alg or kid is not a string", nil
	}
	if kty != "oct" {
		for _, name := range privateMembers {
			if _, ok := m[name]; ok {
				return nil, false, "", fmt.Errorf("contains private key material")
			}
		}
	} else if src == fromRemote {
		return nil, false, "", fmt.Errorf("published JWK Set contains a symmetric key")
	}
	if v, ok := m["use"]; ok {
		var use string
		if json.Unmarshal(v, &use) != nil {
			return nil, false, "use is not a string", nil
		}
		if use != "sig" {
			return nil, true, "", nil
		}
	}
	if v, ok := m["key_ops"]; ok {
		var ops []string
		if json.Unmarshal(v, &ops) != nil {
			return nil, false, "key_ops is not a string array", nil
		}
		if !slices.Contains(ops, "verify") {
			return nil, true, "", nil
		}
	}
	if alg != "" {
		if _, ok := supportedAlgs[alg]; !ok {
			return nil, false, "unsupported alg", nil
		}
	}
	if kty == "oct" && !allowHMAC {
		return nil, false, "symmetric key requires AllowHMAC", nil
	}
	var jk jose.JSONWebKey
	if err := jk.UnmarshalJSON(raw); err != nil {
		return nil, false, "invalid or unsupported key", nil
	}
	k = &jwk{kid: kid, alg: alg, kty: kty}
	switch pub := jk.Key.(type) {
	case *rsa.PublicKey:
		if kty != "RSA" {
			return nil, false, "kty does not match key", nil
		}
		if p := rsaProblem(pub); p != "" {
			return nil, false, p, nil
		}
		k.pub = pub
	case *ecdsa.PublicKey:
		if kty != "EC" {
			return nil, false, "kty does not match key", nil
		}
		k.pub = pub
	case ed25519.PublicKey:
		if kty != "OKP" || len(pub) != ed25519.PublicKeySize {
			return nil, false, "invalid Ed25519 key", nil
		}
		k.pub = pub
	case []byte:
		min := minHMACKeySize
		if info, ok := supportedAlgs[alg]; ok {
			min = max(min, info.hash.Size())
		}
		if len(pub) < min {
			return nil, false, "symmetric key shorter than its hash output", nil
		}
		k.pub = slices.Clone(pub)
	default:
		return nil, false, "unsupported key type", nil
	}
	if alg != "" && !k.fits(alg) {
		// e.g. "alg":"ES256" on a P-384 key, or "alg":"HS256" on an EC key.
		return nil, false, "alg does not match key type", nil
	}
	return k, false, "", nil
}

// stringMember sets *dst to m[name] if present; it reports false if the
// member is present but not a string.
func stringMember(m map[string]json.RawMessage, name string, dst *string) bool {
	v, ok := m[name]
	if !ok {
		return true
	}
	return json.Unmarshal(v, dst) == nil
}

// rsaProblem returns why an RSA public key is unacceptable, or "".
func rsaProblem(pub *rsa.PublicKey) string {
	bits := pub.N.BitLen()
	switch {
	case bits < minRSABits:
		return "RSA modulus shorter than 2048 bits"
	case bits > maxRSABits:
		return "RSA modulus longer than 8192 bits"
	case pub.E < 3 || pub.E%2 == 0:
		return "RSA public exponent must be odd and at least 3"
	case rocaVulnerable(pub.N):
		return "RSA modulus has the ROCA fingerprint (CVE-2017-15361)"
	}
	return ""
}

// rocaPrimes and rocaMasks implement the ROCA fingerprint test (Nemec et
// al., "The Return of Coppersmith's Attack", CCS 2017; CVE-2017-15361).
// Moduli from the vulnerable Infineon library satisfy N mod p ∈ <65537> in
// (Z/pZ)* for every small prime p below; a random modulus fails for some p
// with overwhelming probability. rocaMasks[i] has bit r set for every r in
// the subgroup generated by 65537 mod rocaPrimes[i].
var (
	rocaPrimes = []int64{3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167}
	rocaMasks  = func() []*big.Int {
		masks := make([]*big.Int, len(rocaPrimes))
		for i, p := range rocaPrimes {
			m := new(big.Int)
			g := int64(65537) % p
			for x := int64(1); ; {
				if m.Bit(int(x)) == 1 {
					break
				}
				m.SetBit(m, int(x), 1)
				x = x * g % p
			}
			masks[i] = m
		}
		return masks
	}()
)

// rocaVulnerable reports whether n carries the ROCA fingerprint.
func rocaVulnerable(n *big.Int) bool {
	r := new(big.Int)
	for i, p := range rocaPrimes {
		r.Mod(n, big.NewInt(p))
		if rocaMasks[i].Bit(int(r.Int64())) == 0 {
			return false
		}
	}
	return true
}
