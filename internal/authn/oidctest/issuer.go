// Package oidctest is a local OpenID Connect issuer for tests: an
// httptest server on loopback that serves discovery metadata and a JWK Set
// with freshly generated RSA (RS256), EC P-256 (ES256) and Ed25519 (EdDSA)
// keys, and signs tokens — including deliberately broken ones, for attack
// tests. It is not a general-purpose authorization server.
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // registers crypto.SHA256
	_ "crypto/sha512" // registers crypto.SHA384, crypto.SHA512
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issuer is a running test issuer. Its methods are safe for concurrent
// use. It stops when the test that created it ends.
type Issuer struct {
	t    testing.TB
	srv  *httptest.Server
	path string
	opts issuerOptions

	id string // random, makes kids unique across issuers

	mu         sync.Mutex
	gen        int
	rsaKey     *rsa.PrivateKey
	ecKey      *ecdsa.PrivateKey
	edKey      ed25519.PrivateKey
	jwksStatus int

	jwksFetches      atomic.Int64
	discoveryFetches atomic.Int64
	requests         atomic.Int64
	closeOnce        sync.Once
}

// Option configures NewIssuer.
type Option func(*issuerOptions)

type issuerOptions struct {
	path         string
	noOIDC       bool
	noJWKAlg     bool
	editMetadata func(map[string]any)
}

// WithPath gives the issuer a path component, e.g. "/realms/test"
// (Keycloak style); URL() then ends with it.
func WithPath(p string) Option { return func(o *issuerOptions) { o.path = p } }

// WithoutOIDCDiscovery serves metadata only at the RFC 8414 location, not
// at /.well-known/openid-configuration.
func WithoutOIDCDiscovery() Option { return func(o *issuerOptions) { o.noOIDC = true } }

// WithoutJWKAlg publishes the keys without an "alg" member, so that an
// RSA key may verify RS* and PS* tokens.
func WithoutJWKAlg() Option { return func(o *issuerOptions) { o.noJWKAlg = true } }

// WithMetadata lets a test edit the metadata document before it is
// served (for example to give a wrong "issuer").
func WithMetadata(edit func(md map[string]any)) Option {
	return func(o *issuerOptions) { o.editMetadata = edit }
}

// NewIssuer starts an issuer on 127.0.0.1 with new keys. It fails t if
// keys cannot be generated, and closes the server in t.Cleanup.
func NewIssuer(t testing.TB, opts ...Option) *Issuer {
	t.Helper()
	var id [4]byte
	_, _ = rand.Read(id[:])
	i := &Issuer{t: t, id: fmt.Sprintf("%x", id)}
	for _, o := range opts {
		o(&i.opts)
	}
	i.path = strings.TrimSuffix(i.opts.path, "/")
	i.RotateKeys()
	// Assign srv before serving: handlers read it (URL) and requests may
	// come from another process, which the race detector cannot order.
	i.srv = httptest.NewUnstartedServer(http.HandlerFunc(i.serve))
	i.srv.Start()
	t.Cleanup(i.Close)
	return i
}

// URL is the issuer identifier: "http://127.0.0.1:port" plus the path
// given with WithPath.
func (i *Issuer) URL() string { return i.srv.URL + i.path }

// JWKSURL is where the JWK Set is served.
func (i *Issuer) JWKSURL() string { return i.URL() + "/jwks" }

// JWKSFetches counts GETs of the JWK Set (answered or failed).
func (i *Issuer) JWKSFetches() int { return int(i.jwksFetches.Load()) }

// DiscoveryFetches counts GETs of either metadata location.
func (i *Issuer) DiscoveryFetches() int { return int(i.discoveryFetches.Load()) }

// Requests counts every request the server received.
func (i *Issuer) Requests() int { return int(i.requests.Load()) }

// SetJWKSStatus makes the JWK Set endpoint answer with HTTP status code
// and no body; 0 restores normal service.
func (i *Issuer) SetJWKSStatus(code int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.jwksStatus = code
}

// Close stops the server; later requests fail to connect. It is safe to
// call more than once.
func (i *Issuer) Close() { i.closeOnce.Do(i.srv.Close) }

// RotateKeys replaces all three keys with new ones and new kids; the old
// keys are no longer published.
func (i *Issuer) RotateKeys() {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		i.t.Fatalf("oidctest: generating RSA key: %v", err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		i.t.Fatalf("oidctest: generating EC key: %v", err)
	}
	_, dk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		i.t.Fatalf("oidctest: generating Ed25519 key: %v", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.gen++
	i.rsaKey, i.ecKey, i.edKey = rk, ek, dk
}

// KeyID returns the current kid of the key the issuer signs alg with:
// "rsa-<id>-<n>" for RS*/PS*, "ec-<id>-<n>" for ES256, "ed-<id>-<n>" for
// EdDSA, "" otherwise; id is random per issuer and n counts rotations, so
// kids never repeat across issuers or rotations.
func (i *Issuer) KeyID(alg string) string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.kidLocked(alg)
}

func (i *Issuer) kidLocked(alg string) string {
	switch {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		return fmt.Sprintf("rsa-%s-%d", i.id, i.gen)
	case alg == "ES256":
		return fmt.Sprintf("ec-%s-%d", i.id, i.gen)
	case alg == "EdDSA":
		return fmt.Sprintf("ed-%s-%d", i.id, i.gen)
	}
	return ""
}

// PublicKey returns the current public key for alg (*rsa.PublicKey,
// *ecdsa.PublicKey or ed25519.PublicKey), or nil.
func (i *Issuer) PublicKey(alg string) crypto.PublicKey {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch kid := i.kidLocked(alg); {
	case strings.HasPrefix(kid, "rsa-"):
		return &i.rsaKey.PublicKey
	case strings.HasPrefix(kid, "ec-"):
		return &i.ecKey.PublicKey
	case strings.HasPrefix(kid, "ed-"):
		return i.edKey.Public()
	}
	return nil
}

// JWKS returns the JWK Set currently published (RFC 7517 §5).
func (i *Issuer) JWKS() []byte {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.jwksLocked()
}

func (i *Issuer) jwksLocked() []byte {
	keys := []map[string]any{
		PublicJWK(&i.rsaKey.PublicKey, i.kidLocked("RS256"), "RS256"),
		PublicJWK(&i.ecKey.PublicKey, i.kidLocked("ES256"), "ES256"),
		PublicJWK(i.edKey.Public(), i.kidLocked("EdDSA"), "EdDSA"),
	}
	if i.opts.noJWKAlg {
		for _, k := range keys {
			delete(k, "alg")
		}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return b
}

// PublicJWK returns the JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2) of an
// RSA, EC or Ed25519 public key, with kid, "use":"sig" and alg when
// non-empty. It returns nil for other key types.
func PublicJWK(pub crypto.PublicKey, kid, alg string) map[string]any {
	var m map[string]any
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m = map[string]any{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		raw, err := k.Bytes() // 0x04 || X || Y
		if err != nil {
			return nil
		}
		n := (len(raw) - 1) / 2
		m = map[string]any{"kty": "EC", "crv": k.Curve.Params().Name, "x": b64(raw[1 : 1+n]), "y": b64(raw[1+n:])}
	case ed25519.PublicKey:
		m = map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64([]byte(k))}
	default:
		return nil
	}
	m["use"] = "sig"
	if kid != "" {
		m["kid"] = kid
	}
	if alg != "" {
		m["alg"] = alg
	}
	return m
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (i *Issuer) metadata() map[string]any {
	md := map[string]any{
		"issuer":                                i.URL(),
		"jwks_uri":                              i.JWKSURL(),
		"authorization_endpoint":                i.URL() + "/authorize",
		"token_endpoint":                        i.URL() + "/token",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "EdDSA"},
	}
	if i.opts.editMetadata != nil {
		i.opts.editMetadata(md)
	}
	return md
}

func (i *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	i.requests.Add(1)
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case i.path + "/.well-known/openid-configuration":
		i.discoveryFetches.Add(1)
		if i.opts.noOIDC {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, i.metadata())
	case "/.well-known/oauth-authorization-server" + i.path:
		i.discoveryFetches.Add(1)
		writeJSON(w, i.metadata())
	case i.path + "/jwks":
		i.jwksFetches.Add(1)
		i.mu.Lock()
		status, body := i.jwksStatus, i.jwksLocked()
		i.mu.Unlock()
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ValidClaims returns claims that a verifier configured with this issuer
// and audience accepts at time now: iss, aud, sub "alice", iat now,
// nbf now, exp now+1h, jti "jti-1".
func (i *Issuer) ValidClaims(audience string, now time.Time) map[string]any {
	return map[string]any{
		"iss": i.URL(),
		"aud": audience,
		"sub": "alice",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"jti": "jti-1",
	}
}

// TokenOption changes how Token builds a token.
type TokenOption func(*tokenOptions)

type tokenOptions struct {
	alg      string
	kid      *string
	header   map[string]any
	key      any
	rawSig   *[]byte
	rawHdr   []byte
	payload  []byte
	typ      *string
	noHeader []string
}

// WithAlg sets the header alg and the signing algorithm: RS256/384/512,
// PS256/384/512, ES256/384/512, EdDSA or HS256/384/512. Any other value
// ("none", "nOnE", "") is written to the header and the token gets an
// empty signature. Default RS256.
func WithAlg(alg string) TokenOption { return func(o *tokenOptions) { o.alg = alg } }

// WithKID sets the header kid (default: the issuer's kid for the alg).
func WithKID(kid string) TokenOption { return func(o *tokenOptions) { o.kid = &kid } }

// WithoutKID leaves kid out of the header.
func WithoutKID() TokenOption {
	return func(o *tokenOptions) { o.noHeader = append(o.noHeader, "kid") }
}

// WithTyp sets the header typ (default "at+jwt", RFC 9068 §2.1).
func WithTyp(typ string) TokenOption { return func(o *tokenOptions) { o.typ = &typ } }

// WithoutTyp leaves typ out of the header.
func WithoutTyp() TokenOption {
	return func(o *tokenOptions) { o.noHeader = append(o.noHeader, "typ") }
}

// WithHeader adds or replaces a header member, e.g. "jku", "x5c", "jwk",
// "crit"; it can also override "alg" in the header alone.
func WithHeader(name string, value any) TokenOption {
	return func(o *tokenOptions) {
		if o.header == nil {
			o.header = map[string]any{}
		}
		o.header[name] = value
	}
}

// WithSigningKey signs with key instead of the issuer's: an
// *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey, or []byte as the
// HMAC secret for HS*. The header kid stays the issuer's unless WithKID is
// also given — the shape of a forgery.
func WithSigningKey(key any) TokenOption { return func(o *tokenOptions) { o.key = key } }

// WithRawHeader uses hdr, verbatim, as the protected header (for
// duplicate members, odd whitespace, ...); the other header options are
// then ignored, but the signing key is still chosen by WithAlg.
func WithRawHeader(hdr []byte) TokenOption { return func(o *tokenOptions) { o.rawHdr = hdr } }

// WithPayload uses payload, verbatim, instead of the encoded claims.
func WithPayload(payload []byte) TokenOption { return func(o *tokenOptions) { o.payload = payload } }

// WithSignature replaces the computed signature with sig.
func WithSignature(sig []byte) TokenOption { return func(o *tokenOptions) { o.rawSig = &sig } }

// Token returns a compact JWS (RFC 7515 §7.1) with claims as its payload,
// signed as opts say. It fails the test if claims cannot be encoded or the
// key does not suit the alg.
func (i *Issuer) Token(claims map[string]any, opts ...TokenOption) string {
	i.t.Helper()
	o := tokenOptions{alg: "RS256"}
	for _, opt := range opts {
		opt(&o)
	}
	i.mu.Lock()
	kid := i.kidLocked(o.alg)
	key := o.key
	if key == nil {
		switch {
		case strings.HasPrefix(o.alg, "RS"), strings.HasPrefix(o.alg, "PS"):
			key = i.rsaKey
		case o.alg == "ES256":
			key = i.ecKey
		case o.alg == "EdDSA":
			key = i.edKey
		}
	}
	i.mu.Unlock()

	hdr := map[string]any{"alg": o.alg, "typ": "at+jwt"}
	if kid != "" {
		hdr["kid"] = kid
	}
	if o.kid != nil {
		hdr["kid"] = *o.kid
	}
	if o.typ != nil {
		hdr["typ"] = *o.typ
	}
	for k, v := range o.header {
		hdr[k] = v
	}
	for _, k := range o.noHeader {
		delete(hdr, k)
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		i.t.Fatalf("oidctest: encoding header: %v", err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		i.t.Fatalf("oidctest: encoding claims: %v", err)
	}
	if o.rawHdr != nil {
		h = o.rawHdr
	}
	if o.payload != nil {
		p = o.payload
	}
	input := b64(h) + "." + b64(p)
	sig, err := Sign(o.alg, key, []byte(input))
	if err != nil {
		i.t.Fatalf("oidctest: signing: %v", err)
	}
	if o.rawSig != nil {
		sig = *o.rawSig
	}
	return input + "." + b64(sig)
}

// Sign computes a JWS signature (RFC 7518 §3) over input. Algorithms it
// does not know produce an empty signature, which is how "alg":"none"
// tokens look.
func Sign(alg string, key any, input []byte) ([]byte, error) {
	if alg == "EdDSA" {
		k, ok := key.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("EdDSA needs an ed25519.PrivateKey, got %T", key)
		}
		return ed25519.Sign(k, input), nil
	}
	h, ok := hashFor(alg)
	if !ok {
		return []byte{}, nil
	}
	hw := h.New()
	hw.Write(input)
	digest := hw.Sum(nil)
	switch alg[:2] {
	case "RS", "PS":
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s needs an *rsa.PrivateKey, got %T", alg, key)
		}
		if alg[0] == 'R' {
			return rsa.SignPKCS1v15(rand.Reader, k, h, digest)
		}
		return rsa.SignPSS(rand.Reader, k, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES":
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s needs an *ecdsa.PrivateKey, got %T", alg, key)
		}
		der, err := ecdsa.SignASN1(rand.Reader, k, digest)
		if err != nil {
			return nil, err
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &rs); err != nil {
			return nil, err
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*n)
		rs.R.FillBytes(out[:n])
		rs.S.FillBytes(out[n:])
		return out, nil
	default: // "HS"
		k, ok := key.([]byte)
		if !ok {
			return nil, fmt.Errorf("%s needs a []byte secret, got %T", alg, key)
		}
		m := hmac.New(h.New, k)
		m.Write(input)
		return m.Sum(nil), nil
	}
}

// hashFor maps RS/PS/ES/HS + 256/384/512 to its hash.
func hashFor(alg string) (crypto.Hash, bool) {
	if len(alg) != 5 {
		return 0, false
	}
	switch alg[:2] {
	case "RS", "PS", "ES", "HS":
	default:
		return 0, false
	}
	switch alg[2:] {
	case "256":
		return crypto.SHA256, true
	case "384":
		return crypto.SHA384, true
	case "512":
		return crypto.SHA512, true
	}
	return 0, false
}
