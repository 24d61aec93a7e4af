package oidc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// keySet supplies the keys that may verify a token with header h.
type keySet interface {
	// lookup returns the keys that fit h (kid equal, if h has one, and
	// jwk.fits(h.alg)), or a Failure: CauseUnknownKey when none fit,
	// CauseKeySetUnavailable when the set had to be fetched and could not
	// be.
	lookup(ctx context.Context, h *header) ([]*jwk, *Failure)
}

// selectKeys returns the keys fitting h, and whether any key at all has
// h's kid (so that a refresh could not help).
func selectKeys(keys []*jwk, h *header) (fit []*jwk, kidKnown bool) {
	for _, k := range keys {
		if h.hasKid && k.kid != h.kid {
			continue
		}
		kidKnown = kidKnown || h.hasKid
		if k.fits(h.alg) {
			fit = append(fit, k)
		}
	}
	return fit, kidKnown
}

// staticKeySet is a JWK Set given to NewWithKeys; it never changes.
type staticKeySet struct{ keys []*jwk }

var _ keySet = (*staticKeySet)(nil)

func (s *staticKeySet) lookup(_ context.Context, h *header) ([]*jwk, *Failure) {
	if fit, _ := selectKeys(s.keys, h); len(fit) > 0 {
		return fit, nil
	}
	return nil, fail(CauseUnknownKey, "")
}

// remoteKeySet is the issuer's JWK Set fetched from its jwks_uri
// (RFC 7517 §5, OpenID Connect Core §10.1.1). It is a cache with three
// rules:
//
//   - A token whose kid is not in the cache (or, without a kid, for which
//     no cached key fits) triggers a refetch: that is how key rotation is
//     picked up.
//   - Refetches start at most once per minInterval, whatever triggers them,
//     and concurrent callers share one request. A flood of random kids thus
//     costs the issuer at most one request per minInterval. (go-oidc's
//     RemoteKeySet refetches on every miss, including a bad signature under
//     a known kid, coalescing only concurrent callers; see the tests.)
//   - A failed refetch keeps the cached keys, but keys older than ttl are
//     not used until a refetch succeeds, so a key the issuer withdrew
//     stops verifying within ttl. Until then every token is refused with
//     CauseKeySetUnavailable (fail closed).
//
// It is written here rather than taken from go-oidc's RemoteKeySet
// because that type exposes only "verify this JWS", not the keys, so the
// per-key checks of jwk.fits (kty, curve, JWK alg, use) could not be
// applied, and because of its refetch behaviour above.
type remoteKeySet struct {
	url         string
	client      *http.Client
	now         func() time.Time
	minInterval time.Duration
	ttl         time.Duration

	mu        sync.Mutex
	keys      []*jwk
	fetchedAt time.Time  // last successful fetch
	attemptAt time.Time  // start of the last fetch attempt
	inflight  *fetchCall // non-nil while a fetch runs
}

var _ keySet = (*remoteKeySet)(nil)

// fetchCall is one in-flight fetch shared by every waiting caller.
type fetchCall struct {
	done chan struct{}
	err  error // set before done is closed
}

// fetchTimeout bounds one JWKS request even if the HTTP client has no
// timeout.
const fetchTimeout = 10 * time.Second

func (r *remoteKeySet) lookup(ctx context.Context, h *header) ([]*jwk, *Failure) {
	r.mu.Lock()
	keys := r.keys
	fresh := !r.fetchedAt.IsZero() && r.now().Sub(r.fetchedAt) < r.ttl
	r.mu.Unlock()
	if fresh {
		fit, kidKnown := selectKeys(keys, h)
		if len(fit) > 0 {
			return fit, nil
		}
		if kidKnown {
			// The kid is there but its key does not fit the alg (e.g. HS256
			// naming an RSA key): a refetch cannot change that.
			return nil, fail(CauseUnknownKey, "")
		}
	}
	attempted, err := r.refresh(ctx)
	switch {
	case !attempted && !fresh:
		return nil, fail(CauseKeySetUnavailable, "cached JWK Set expired and the last refresh failed")
	case !attempted:
		return nil, fail(CauseUnknownKey, "")
	case err != nil:
		return nil, &Failure{Cause: CauseKeySetUnavailable, Err: err}
	}
	r.mu.Lock()
	keys = r.keys
	r.mu.Unlock()
	if fit, _ := selectKeys(keys, h); len(fit) > 0 {
		return fit, nil
	}
	return nil, fail(CauseUnknownKey, "")
}

// refresh fetches the set unless the rate limit forbids it; attempted
// reports whether a fetch ran (or was joined). It waits for the result or
// for ctx; the fetch itself runs on a context detached from ctx, so one
// caller hanging up does not fail the others.
func (r *remoteKeySet) refresh(ctx context.Context) (attempted bool, err error) {
	r.mu.Lock()
	c := r.inflight
	if c == nil {
		now := r.now()
		if !r.attemptAt.IsZero() && now.Sub(r.attemptAt) < r.minInterval {
			r.mu.Unlock()
			return false, nil
		}
		r.attemptAt = now
		c = &fetchCall{done: make(chan struct{})}
		r.inflight = c
		go r.runFetch(context.WithoutCancel(ctx), c)
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		return true, c.err
	case <-ctx.Done():
		return true, fmt.Errorf("waiting for JWK Set: %w", ctx.Err())
	}
}

func (r *remoteKeySet) runFetch(ctx context.Context, c *fetchCall) {
	keys, err := r.fetch(ctx)
	r.mu.Lock()
	if err == nil {
		r.keys, r.fetchedAt = keys, r.now()
	}
	r.inflight = nil
	c.err = err
	r.mu.Unlock()
	close(c.done)
}

// fetch GETs and parses the JWK Set. Errors name the URL and the HTTP
// status, never the body.
func (r *remoteKeySet) fetch(ctx context.Context) ([]*jwk, error) {
	body, err := get(ctx, r.client, r.url, maxJWKSBytes, "application/jwk-set+json, application/json")
	if err != nil {
		return nil, err
	}
	keys, _, err := parseJWKS(body, false, fromRemote)
	if err != nil {
		return nil, fmt.Errorf("jwks_uri %s: %w", r.url, err)
	}
	return keys, nil
}

// get fetches url and returns a body of at most limit bytes.
func get(ctx context.Context, client *http.Client, u string, limit int64, accept string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", u, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", u, limit)
	}
	return body, nil
}

// maxMetadataBytes caps an authorization server metadata document.
const maxMetadataBytes = 256 << 10

// discoveryURLs returns where to look for the issuer's metadata, in
// order: OpenID Connect Discovery 1.0 §4 (issuer, minus a trailing "/",
// plus "/.well-known/openid-configuration"), then RFC 8414 §3.1 (the
// well-known segment inserted between host and path). For an issuer
// without a path the second is issuer + "/.well-known/oauth-authorization-server".
func discoveryURLs(issuer string) []string {
	oidcURL := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	u, err := url.Parse(issuer)
	if err != nil {
		return []string{oidcURL}
	}
	rfc8414 := *u
	rfc8414.Path = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.Path, "/")
	rfc8414.RawPath = ""
	return []string{oidcURL, rfc8414.String()}
}

// discover loads the issuer's metadata and returns its jwks_uri. A
// document that cannot be fetched moves on to the next URL; a document
// that is fetched but wrong (bad JSON, an issuer that differs from ours
// byte for byte — OpenID Connect Discovery §4.3, RFC 8414 §3.3 — or a
// missing or non-https jwks_uri) fails at once.
func discover(ctx context.Context, client *http.Client, issuer string) (string, error) {
	var errs []error
	for _, u := range discoveryURLs(issuer) {
		body, err := get(ctx, client, u, maxMetadataBytes, "application/json")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		m, err := parseObject(body)
		if err != nil {
			return "", fmt.Errorf("%w: %s: metadata is not a JSON object", ErrDiscovery, u)
		}
		if !stringMember(m, "issuer", &md.Issuer) || !stringMember(m, "jwks_uri", &md.JWKSURI) {
			return "", fmt.Errorf("%w: %s: issuer or jwks_uri is not a string", ErrDiscovery, u)
		}
		if md.Issuer != issuer {
			return "", fmt.Errorf("%w: %s: metadata issuer %q does not equal the configured issuer", ErrDiscovery, u, md.Issuer)
		}
		if err := checkServerURL(md.JWKSURI); err != nil {
			return "", fmt.Errorf("%w: %s: jwks_uri: %w", ErrDiscovery, u, err)
		}
		return md.JWKSURI, nil
	}
	return "", fmt.Errorf("%w: %w", ErrDiscovery, errors.Join(errs...))
}
