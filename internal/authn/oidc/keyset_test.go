package oidc

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

// TestDiscovery: where metadata is looked for, and what in it is
// checked.
func TestDiscovery(t *testing.T) {
	cases := []struct {
		name          string
		opts          []oidctest.Option
		wantErr       string // substring; "" = New succeeds
		wantDiscovery int    // metadata GETs
	}{
		{name: "openid-configuration", wantDiscovery: 1},
		{name: "rfc8414-fallback", opts: []oidctest.Option{oidctest.WithoutOIDCDiscovery()}, wantDiscovery: 2},
		{name: "issuer-with-path", opts: []oidctest.Option{oidctest.WithPath("/realms/test")}, wantDiscovery: 1},
		{name: "issuer-with-path-rfc8414", opts: []oidctest.Option{oidctest.WithPath("/realms/test"), oidctest.WithoutOIDCDiscovery()}, wantDiscovery: 2},
		{
			name:    "metadata-issuer-trailing-slash",
			opts:    []oidctest.Option{oidctest.WithMetadata(func(md map[string]any) { md["issuer"] = md["issuer"].(string) + "/" })},
			wantErr: "does not equal the configured issuer",
		},
		{
			name:    "metadata-issuer-other",
			opts:    []oidctest.Option{oidctest.WithMetadata(func(md map[string]any) { md["issuer"] = "https://evil.example" })},
			wantErr: "does not equal the configured issuer",
		},
		{
			name:    "jwks-uri-missing",
			opts:    []oidctest.Option{oidctest.WithMetadata(func(md map[string]any) { delete(md, "jwks_uri") })},
			wantErr: "jwks_uri: must be set",
		},
		{
			name:    "jwks-uri-plain-http",
			opts:    []oidctest.Option{oidctest.WithMetadata(func(md map[string]any) { md["jwks_uri"] = "http://idp.example.com/jwks" })},
			wantErr: "jwks_uri: must use https",
		},
		{
			name:    "jwks-uri-not-string",
			opts:    []oidctest.Option{oidctest.WithMetadata(func(md map[string]any) { md["jwks_uri"] = 5 })},
			wantErr: "not a string",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			iss := oidctest.NewIssuer(t, c.opts...)
			v, err := New(context.Background(), issuerConfig(iss))
			if c.wantErr != "" {
				if err == nil || !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("New error = %v, want ErrDiscovery containing %q", err, c.wantErr)
				}
				if iss.JWKSFetches() != 0 {
					t.Fatalf("JWKS fetched despite bad metadata")
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := iss.DiscoveryFetches(); got != c.wantDiscovery {
				t.Errorf("metadata fetched %d times, want %d", got, c.wantDiscovery)
			}
			if got := iss.JWKSFetches(); got != 1 {
				t.Errorf("JWKS fetched %d times, want 1", got)
			}
			if _, err := v.Verify(context.Background(), iss.Token(iss.ValidClaims(testAudience, t0))); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

// TestDiscoveryUnreachable: New fails, naming discovery, when the issuer
// is down or its JWK Set cannot be fetched at startup.
func TestDiscoveryUnreachable(t *testing.T) {
	t.Run("issuer-down", func(t *testing.T) {
		iss := oidctest.NewIssuer(t)
		iss.Close()
		_, err := New(context.Background(), issuerConfig(iss))
		if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), "discovery") ||
			!strings.Contains(err.Error(), "openid-configuration") || !strings.Contains(err.Error(), "oauth-authorization-server") {
			t.Fatalf("err = %v, want ErrDiscovery naming both metadata URLs", err)
		}
	})
	t.Run("jwks-500", func(t *testing.T) {
		iss := oidctest.NewIssuer(t)
		iss.SetJWKSStatus(http.StatusInternalServerError)
		_, err := New(context.Background(), issuerConfig(iss))
		if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), "/jwks: HTTP 500") {
			t.Fatalf("err = %v, want ErrDiscovery naming the JWKS URL and status", err)
		}
	})
	t.Run("metadata-404", func(t *testing.T) {
		iss := oidctest.NewIssuer(t, oidctest.WithPath("/a"))
		cfg := issuerConfig(iss)
		cfg.Issuer = iss.URL() + "/b" // nothing is served there
		_, err := New(context.Background(), cfg)
		if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), "HTTP 404") {
			t.Fatalf("err = %v, want ErrDiscovery with HTTP 404", err)
		}
	})
	t.Run("cancelled-context", func(t *testing.T) {
		iss := oidctest.NewIssuer(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := New(ctx, issuerConfig(iss)); !errors.Is(err, ErrDiscovery) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want ErrDiscovery wrapping context.Canceled", err)
		}
	})
}

// rotationSetup returns an issuer, a fake clock and a remote Verifier
// whose first JWKS fetch happened at the clock's start.
func rotationSetup(t *testing.T, edit func(*Config)) (*oidctest.Issuer, *fakeClock, *Verifier) {
	t.Helper()
	iss := oidctest.NewIssuer(t)
	clock := newClock(t0)
	v := newRemote(t, iss, func(c *Config) {
		c.Now = clock.Now
		if edit != nil {
			edit(c)
		}
	})
	if n := iss.JWKSFetches(); n != 1 {
		t.Fatalf("JWKS fetched %d times by New, want 1", n)
	}
	return iss, clock, v
}

// TestKeyRotation: an unknown kid triggers one refetch (once the rate
// limit allows), after which the new key is served from cache.
func TestKeyRotation(t *testing.T) {
	iss, clock, v := rotationSetup(t, nil)
	ctx := context.Background()
	oldTok := iss.Token(iss.ValidClaims(testAudience, t0))
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	iss.RotateKeys()
	newTok := iss.Token(iss.ValidClaims(testAudience, t0))

	// Within JWKSRefreshInterval of the last fetch: no refetch.
	_, err := v.Verify(ctx, newTok)
	wantFailure(t, err, CauseUnknownKey, newTok)
	if n := iss.JWKSFetches(); n != 1 {
		t.Fatalf("fetches = %d within the refresh interval, want 1", n)
	}

	clock.Advance(DefaultJWKSRefreshInterval)
	c, err := v.Verify(ctx, newTok)
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if c.KeyID != iss.KeyID("RS256") {
		t.Fatalf("KeyID = %q, want %q", c.KeyID, iss.KeyID("RS256"))
	}
	if n := iss.JWKSFetches(); n != 2 {
		t.Fatalf("fetches = %d after rotation, want 2", n)
	}
	for range 5 {
		if _, err := v.Verify(ctx, newTok); err != nil {
			t.Fatal(err)
		}
	}
	if n := iss.JWKSFetches(); n != 2 {
		t.Fatalf("fetches = %d after cache hits, want 2", n)
	}
	// The withdrawn key no longer verifies.
	_, err = v.Verify(ctx, oldTok)
	wantFailure(t, err, CauseUnknownKey, oldTok)
}

// TestRefreshRateLimit: a flood of unknown kids — sequential or
// concurrent — costs at most one JWKS fetch per JWKSRefreshInterval.
func TestRefreshRateLimit(t *testing.T) {
	iss, clock, v := rotationSetup(t, nil)
	ctx := context.Background()
	claims := iss.ValidClaims(testAudience, t0)
	flood := func(n int) {
		for i := range n {
			tok := iss.Token(claims, oidctest.WithKID(fmt.Sprintf("random-%d", i)))
			if _, err := v.Verify(ctx, tok); err == nil {
				t.Fatalf("unknown kid accepted")
			}
		}
	}
	flood(200)
	if n := iss.JWKSFetches(); n != 1 {
		t.Fatalf("sequential flood within the interval: %d fetches, want 1", n)
	}
	clock.Advance(DefaultJWKSRefreshInterval)
	flood(200)
	if n := iss.JWKSFetches(); n != 2 {
		t.Fatalf("sequential flood after the interval: %d fetches, want 2", n)
	}

	clock.Advance(DefaultJWKSRefreshInterval)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 10 {
				tok := iss.Token(claims, oidctest.WithKID(fmt.Sprintf("c-%d-%d", g, i)))
				_, err := v.Verify(ctx, tok)
				var f *Failure
				if !errors.As(err, &f) || f.Cause != CauseUnknownKey {
					t.Errorf("concurrent unknown kid: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n := iss.JWKSFetches(); n != 3 {
		t.Fatalf("concurrent flood: %d fetches, want 3", n)
	}
}

// TestKnownKidBadSignatureNoRefetch: a forged signature under a known kid
// is bad_signature and never triggers a fetch (go-oidc would refetch).
func TestKnownKidBadSignatureNoRefetch(t *testing.T) {
	iss, clock, v := rotationSetup(t, nil)
	other := oidctest.NewIssuer(t)
	clock.Advance(time.Hour - time.Second) // cache still fresh, rate limit open
	claims := iss.ValidClaims(testAudience, t0)
	for _, opts := range [][]oidctest.TokenOption{
		{oidctest.WithKID(iss.KeyID("RS256"))},
		{oidctest.WithoutKID()},
	} {
		tok := other.Token(claims, opts...)
		_, err := v.Verify(context.Background(), tok)
		wantFailure(t, err, CauseBadSignature, tok)
	}
	if n := iss.JWKSFetches(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
}

// TestJWKSUnavailable: when the set must be refetched and cannot be, the
// token is refused as keyset_unavailable, never accepted on stale keys
// past JWKSCacheTTL.
func TestJWKSUnavailable(t *testing.T) {
	iss, clock, v := rotationSetup(t, nil)
	ctx := context.Background()
	oldTok := iss.Token(iss.ValidClaims(testAudience, t0))

	iss.SetJWKSStatus(http.StatusServiceUnavailable)
	iss.RotateKeys()
	newTok := iss.Token(iss.ValidClaims(testAudience, t0))
	clock.Advance(DefaultJWKSRefreshInterval)
	_, err := v.Verify(ctx, newTok)
	f := wantFailure(t, err, CauseKeySetUnavailable, newTok)
	if !strings.Contains(f.Error(), "HTTP 503") {
		t.Fatalf("failure %q does not give the status", f.Error())
	}
	// Within the TTL, keys already cached still verify.
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatalf("cached key within TTL: %v", err)
	}

	iss.Close() // now unreachable altogether
	clock.Advance(DefaultJWKSCacheTTL)
	fetches := iss.JWKSFetches()
	_, err = v.Verify(ctx, oldTok)
	wantFailure(t, err, CauseKeySetUnavailable, oldTok)
	// The failed attempt is rate limited too: no retry storm, still closed.
	_, err = v.Verify(ctx, oldTok)
	f = wantFailure(t, err, CauseKeySetUnavailable, oldTok)
	if !strings.Contains(f.Error(), "expired") {
		t.Fatalf("second failure %q should say the cache expired", f.Error())
	}
	if iss.JWKSFetches() != fetches {
		t.Fatalf("closed server counted requests")
	}
}

// TestCacheTTL: after JWKSCacheTTL a known kid forces a refetch, so a key
// the issuer withdrew stops verifying.
func TestCacheTTL(t *testing.T) {
	iss, clock, v := rotationSetup(t, nil)
	ctx := context.Background()
	tok := iss.Token(iss.ValidClaims(testAudience, t0))
	clock.Advance(DefaultJWKSCacheTTL - time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if n := iss.JWKSFetches(); n != 1 {
		t.Fatalf("fetches = %d before TTL, want 1", n)
	}
	iss.RotateKeys() // withdraws the key tok was signed with
	clock.Advance(time.Second)
	_, err := v.Verify(ctx, tok)
	wantFailure(t, err, CauseUnknownKey, tok)
	if n := iss.JWKSFetches(); n != 2 {
		t.Fatalf("fetches = %d after TTL, want 2", n)
	}
}

// blockingTransport holds every request until release is closed.
type blockingTransport struct {
	inner   http.RoundTripper
	block   bool
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.block && strings.HasSuffix(r.URL.Path, "/jwks") {
		b.once.Do(func() { close(b.started) })
		<-b.release
	}
	return b.inner.RoundTrip(r)
}

// TestRefreshWaitHonoursContext: a caller whose context ends while a
// refetch is in flight is refused (keyset_unavailable) without waiting;
// the fetch completes for everyone else.
func TestRefreshWaitHonoursContext(t *testing.T) {
	bt := &blockingTransport{inner: http.DefaultTransport, started: make(chan struct{}), release: make(chan struct{})}
	iss, clock, v := rotationSetup(t, func(c *Config) { c.HTTPClient = &http.Client{Transport: bt} })
	bt.block = true
	iss.RotateKeys()
	tok := iss.Token(iss.ValidClaims(testAudience, t0))
	clock.Advance(DefaultJWKSRefreshInterval)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, tok)
		done <- err
	}()
	<-bt.started
	cancel()
	err := <-done
	wantFailure(t, err, CauseKeySetUnavailable, tok)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want it to wrap context.Canceled", err)
	}
	close(bt.release)
	// The detached fetch finishes and fills the cache for later callers.
	for {
		if _, err := v.Verify(context.Background(), tok); err == nil {
			break
		} else if f := (*Failure)(nil); errors.As(err, &f) && f.Cause != CauseKeySetUnavailable && f.Cause != CauseUnknownKey {
			t.Fatalf("unexpected failure %v", err)
		}
		clock.Advance(DefaultJWKSRefreshInterval)
	}
}

// TestGoOIDCRemoteKeySetHasNoRateLimit documents go-oidc v3.21.0's
// RemoteKeySet, which this package does not use for fetching: every
// verification that misses the cache — an unknown kid, or a bad signature
// under a known kid — triggers a JWKS GET; a miss only shares a request
// with misses that overlap it (its "inflight" field), and there is no
// time-based limit or backoff, nor a cache TTL. Sequential misses
// therefore cost up to one GET each (a miss that arrives just as the
// previous fetch completes may still join it, so the exact count depends
// on scheduling); our remoteKeySet does at most one per
// JWKSRefreshInterval (TestRefreshRateLimit). If this test starts failing
// after a go-oidc upgrade, revisit whether remoteKeySet is still needed.
func TestGoOIDCRemoteKeySetHasNoRateLimit(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	ks := gooidc.NewRemoteKeySet(context.Background(), iss.JWKSURL())
	ctx := context.Background()
	claims := iss.ValidClaims(testAudience, t0)
	if _, err := ks.VerifySignature(ctx, iss.Token(claims)); err != nil {
		t.Fatalf("go-oidc control: %v", err)
	}
	base := iss.JWKSFetches()
	const n = 20
	for i := range n {
		tok := iss.Token(claims, oidctest.WithKID(fmt.Sprintf("unknown-%d", i)))
		if _, err := ks.VerifySignature(ctx, tok); err == nil {
			t.Fatal("go-oidc accepted an unknown kid")
		}
	}
	unknownKid := iss.JWKSFetches() - base
	other := oidctest.NewIssuer(t)
	for range n {
		if _, err := ks.VerifySignature(ctx, other.Token(claims, oidctest.WithKID(iss.KeyID("RS256")))); err == nil {
			t.Fatal("go-oidc accepted a forged signature")
		}
	}
	badSig := iss.JWKSFetches() - base - unknownKid
	t.Logf("go-oidc RemoteKeySet: %d sequential unknown-kid tokens -> %d JWKS GETs; %d bad signatures under a known kid -> %d GETs", n, unknownKid, n, badSig)
	if unknownKid < 2 || badSig < 2 {
		t.Errorf("go-oidc refetch behaviour changed: only %d and %d GETs for %d sequential misses each", unknownKid, badSig, n)
	}
}

// TestParseJWKS: set-level refusals and per-key problems.
func TestParseJWKS(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	var good map[string][]map[string]any
	if err := json.Unmarshal(iss.JWKS(), &good); err != nil {
		t.Fatal(err)
	}
	rsaJWK := good["keys"][0]
	with := func(k map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for n, v := range k {
			out[n] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(out, kv[i].(string))
			} else {
				out[kv[i].(string)] = kv[i+1]
			}
		}
		return out
	}
	set := func(keys ...map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return b
	}
	oct := map[string]any{"kty": "oct", "k": b64.EncodeToString([]byte(strings.Repeat("s", 32))), "kid": "h1"}
	manyKeys := make([]map[string]any, maxJWKSKeys+1)
	for i := range manyKeys {
		manyKeys[i] = with(rsaJWK, "kid", fmt.Sprint(i))
	}
	cases := []struct {
		name      string
		data      []byte
		allowHMAC bool
		src       jwksSource
		wantErr   string // set-level error
		wantKeys  int
		wantProbs string // substring of the first problem
	}{
		{name: "issuer-set", data: iss.JWKS(), wantKeys: 3},
		{name: "not-json", data: []byte("nope"), wantErr: "not a JSON object"},
		{name: "array", data: []byte("[]"), wantErr: "not a JSON object"},
		{name: "no-keys", data: []byte(`{}`), wantErr: `no "keys" array`},
		{name: "keys-null", data: []byte(`{"keys":null}`), wantErr: `no "keys" array`},
		{name: "keys-empty", data: []byte(`{"keys":[]}`), wantErr: "no usable signature key"},
		{name: "dup-member", data: []byte(`{"keys":[],"keys":[]}`), wantErr: "not a JSON object"},
		{name: "too-many", data: set(manyKeys...), wantErr: "more than 100 keys"},
		{name: "too-big", data: make([]byte, maxJWKSBytes+1), wantErr: "larger than"},
		{name: "private-rsa", data: set(with(rsaJWK, "d", "AQAB")), wantErr: "private key material"},
		{name: "private-ec", data: set(with(good["keys"][1], "d", "AQAB")), wantErr: "private key material"},
		{name: "dup-kid", data: set(rsaJWK, with(good["keys"][1], "kid", rsaJWK["kid"])), wantErr: "duplicate kid"},
		{name: "dup-kid-one-enc-ok", data: set(rsaJWK, with(rsaJWK, "use", "enc")), wantKeys: 1},
		{name: "two-without-kid-ok", data: set(with(rsaJWK, "kid", nil), with(good["keys"][1], "kid", nil)), wantKeys: 2},
		{name: "mixed", data: set(rsaJWK, oct), allowHMAC: true, wantErr: "mixes symmetric and asymmetric"},
		{name: "oct-remote", data: set(oct), allowHMAC: true, src: fromRemote, wantErr: "symmetric key"},
		{name: "oct-static", data: set(oct), allowHMAC: true, wantKeys: 1},
		{name: "oct-without-allowhmac", data: set(oct, rsaJWK), wantKeys: 1, wantProbs: "requires AllowHMAC"},
		{name: "oct-short", data: set(with(oct, "k", b64.EncodeToString(make([]byte, 31)))), allowHMAC: true, wantErr: "shorter than its hash"},
		{name: "oct-hs512-needs-64", data: set(with(oct, "alg", "HS512")), allowHMAC: true, wantErr: "shorter than its hash"},
		{name: "use-enc-skipped", data: set(with(rsaJWK, "use", "enc"), good["keys"][1]), wantKeys: 1},
		{name: "key-ops-verify", data: set(with(rsaJWK, "key_ops", []string{"verify"})), wantKeys: 1},
		{name: "key-ops-sign-only", data: set(with(rsaJWK, "key_ops", []string{"sign"})), wantErr: "no usable signature key"},
		{name: "key-ops-not-array", data: set(with(rsaJWK, "key_ops", "verify"), good["keys"][1]), wantKeys: 1, wantProbs: "key_ops is not"},
		{name: "use-not-string", data: set(with(rsaJWK, "use", 1), good["keys"][1]), wantKeys: 1, wantProbs: "use is not"},
		{name: "alg-unknown", data: set(with(rsaJWK, "alg", "RS1"), good["keys"][1]), wantKeys: 1, wantProbs: "unsupported alg"},
		{name: "alg-none", data: set(with(rsaJWK, "alg", "none"), good["keys"][1]), wantKeys: 1, wantProbs: "unsupported alg"},
		{name: "alg-mismatch-type", data: set(with(rsaJWK, "alg", "ES256"), good["keys"][1]), wantKeys: 1, wantProbs: "alg does not match"},
		{name: "alg-hs-on-rsa", data: set(with(rsaJWK, "alg", "HS256"), good["keys"][1]), allowHMAC: true, wantKeys: 1, wantProbs: "alg does not match"},
		{name: "kty-missing", data: set(with(rsaJWK, "kty", nil), good["keys"][1]), wantKeys: 1, wantProbs: "missing kty"},
		{name: "kty-unknown", data: set(with(rsaJWK, "kty", "XYZ"), good["keys"][1]), wantKeys: 1, wantProbs: "invalid or unsupported"},
		{name: "kid-number", data: set(with(rsaJWK, "kid", 1), good["keys"][1]), wantKeys: 1, wantProbs: "not a string"},
		{name: "key-not-object", data: []byte(`{"keys":[1]}`), wantErr: "no usable signature key (key 0: not a JSON object)"},
		{name: "rsa-exponent-3-ok", data: set(with(rsaJWK, "e", "Aw")), wantKeys: 1},
		{name: "rsa-exponent-even", data: set(with(rsaJWK, "e", "BA")), wantErr: "exponent"},
		{name: "rsa-exponent-1", data: set(with(rsaJWK, "e", "AQ")), wantErr: "no usable"},
		{name: "x25519", data: set(map[string]any{"kty": "OKP", "crv": "X25519", "x": b64.EncodeToString(make([]byte, 32)), "kid": "x"}), wantErr: "no usable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keys, probs, err := parseJWKS(c.data, c.allowHMAC, c.src)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if len(keys) != c.wantKeys {
				t.Fatalf("%d keys, want %d", len(keys), c.wantKeys)
			}
			if c.wantProbs == "" && len(probs) > 0 {
				t.Fatalf("unexpected problems %v", probs)
			}
			if c.wantProbs != "" && (len(probs) == 0 || !strings.Contains(probs[0], c.wantProbs)) {
				t.Fatalf("problems %v, want %q", probs, c.wantProbs)
			}
			// NewWithKeys turns any problem into an error.
			cfg := Config{Issuer: "https://i.example", Audience: testAudience, AllowHMAC: c.allowHMAC}
			if c.allowHMAC {
				cfg.Algorithms = []string{"RS256", "HS256"}
			}
			if _, err := NewWithKeys(cfg, c.data); (err != nil) != (len(probs) > 0) {
				t.Fatalf("NewWithKeys err = %v with problems %v", err, probs)
			}
		})
	}
}

// TestROCA: the fingerprint flags the Wycheproof ROCA modulus and not
// freshly generated keys.
func TestROCA(t *testing.T) {
	f := loadWycheproof(t, "wycheproof-json_web_key_test.json")
	found := false
	for _, g := range f.TestGroups {
		if g.Comment != "jws_rsa_roca_key" {
			continue
		}
		var set struct {
			Keys []struct {
				N string `json:"n"`
			} `json:"keys"`
		}
		if err := json.Unmarshal(g.Public, &set); err != nil {
			t.Fatal(err)
		}
		n, ok := decodeSegment(set.Keys[0].N)
		if !ok {
			t.Fatal("bad modulus")
		}
		if !rocaVulnerable(new(big.Int).SetBytes(n)) {
			t.Fatal("ROCA modulus not flagged")
		}
		found = true
	}
	if !found {
		t.Fatal("no ROCA vector")
	}
	for range 3 {
		iss := oidctest.NewIssuer(t)
		if rocaVulnerable(iss.PublicKey("RS256").(*rsa.PublicKey).N) {
			t.Fatal("random key flagged as ROCA")
		}
	}
}

// TestRemoteJWKSRefused: a published JWK Set that is too large, holds a
// secret, or has no usable key is a startup error (and, later, a
// keyset_unavailable refusal), never silently trusted.
func TestRemoteJWKSRefused(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	var good map[string][]map[string]any
	_ = json.Unmarshal(iss.JWKS(), &good)
	withPrivate := good["keys"][0]
	withPrivate["d"] = "AQAB"
	privateSet, _ := json.Marshal(map[string]any{"keys": []any{withPrivate}})
	cases := map[string]struct {
		body string
		want string
	}{
		"symmetric-key": {`{"keys":[{"kty":"oct","k":"` + b64.EncodeToString(make([]byte, 32)) + `","kid":"h"}]}`, "symmetric key"},
		"private-key":   {string(privateSet), "private key material"},
		"too-large":     {`{"keys":[],"pad":"` + strings.Repeat("x", maxJWKSBytes) + `"}`, "body larger than"},
		"no-usable-key": {`{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}`, "no usable signature key"},
		"not-json":      {`<html>`, "not a JSON object"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var srvURL string
			mux := http.NewServeMux()
			mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
				_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srvURL, "jwks_uri": srvURL + "/jwks"})
			})
			mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, c.body) })
			srv := httptest.NewServer(mux)
			defer srv.Close()
			srvURL = srv.URL
			_, err := New(context.Background(), Config{Issuer: srvURL, Audience: testAudience})
			if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrDiscovery containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "AQAB") || strings.Contains(err.Error(), "xxxxxxxx") {
				t.Fatalf("error %q echoes the response body", err)
			}
		})
	}
}

// TestVerifyWithoutKid: a token without kid is tried against every key
// that fits its alg, and Claims.KeyID names the key that verified it.
func TestVerifyWithoutKid(t *testing.T) {
	iss := oidctest.NewIssuer(t)
	other := oidctest.NewIssuer(t)
	// Two RSA keys: the issuer's and another, both without alg pinning.
	var a, b map[string][]map[string]any
	_ = json.Unmarshal(other.JWKS(), &a)
	_ = json.Unmarshal(iss.JWKS(), &b)
	set, _ := json.Marshal(map[string]any{"keys": append(a["keys"], b["keys"]...)})
	v, err := NewWithKeys(issuerConfig(iss), set)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			c, err := v.Verify(context.Background(), iss.Token(iss.ValidClaims(testAudience, t0), oidctest.WithAlg(alg), oidctest.WithoutKID()))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.KeyID != iss.KeyID(alg) {
				t.Fatalf("KeyID = %q, want %q", c.KeyID, iss.KeyID(alg))
			}
		})
	}
}
