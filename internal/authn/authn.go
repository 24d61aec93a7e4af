// Package authn turns credentials into Principals. API keys are "pcl_"
// followed by 52 base32 characters (260 random bits); only their
// HMAC-SHA256 under a server secret is stored. Every failure — missing,
// malformed, unknown, revoked, expired key or disabled user — is the same
// ErrUnauthenticated to the client; the specific cause is returned in a
// *Failure for the audit log.
package authn

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// ErrUnauthenticated is the only error category clients ever see.
var ErrUnauthenticated = errors.New("unauthenticated")

// Failure causes, recorded in auth.failure audit events. OIDC token
// failures are "token_" + the oidc package's cause ("token_expired",
// "token_bad_signature", ...).
const (
	CauseMissing   = "missing_credential"
	CauseMalformed = "malformed_credential"
	CauseUnknown   = "unknown_key"
	CauseRevoked   = "revoked_key"
	CauseExpired   = "expired_key"
	CauseDisabled  = "disabled_user"
	CauseNoRoles   = "no_roles"
	CauseBackend   = "backend_error"
	// CauseInsufficientScope: a bearer token verified but lacks a
	// required scope; answered 403 insufficient_scope, not 401.
	CauseInsufficientScope = "insufficient_scope"
)

// Failure is an authentication failure with its cause. It unwraps to
// ErrUnauthenticated. Its message never contains the credential.
type Failure struct {
	Cause string
	KeyID string // set when the key was found
	User  string // set when the user was found
	// Scope lists, space-separated, the scopes a token would need
	// (CauseInsufficientScope only).
	Scope string
	// Subject is an OIDC token's sub, set only when its signature
	// verified (attested by the issuer, for the audit log).
	Subject string
	Err     error // backend error, if any
}

func (f *Failure) Error() string {
	return fmt.Sprintf("%v: %s", ErrUnauthenticated, f.Cause)
}

// Unwrap makes errors.Is(err, ErrUnauthenticated) true.
func (f *Failure) Unwrap() []error { return []error{ErrUnauthenticated, f.Err} }

// KeyPrefix starts every Portcullis API key.
const KeyPrefix = "pcl_"

// keyBodyLen is the number of base32 characters after the prefix.
const keyBodyLen = 52

// SecretSize is the server secret length in bytes.
const SecretSize = 32

// KeyStore is what Authenticator needs from the store.
type KeyStore interface {
	APIKeyByHash(ctx context.Context, hash []byte) (store.APIKey, store.User, error)
}

// Authenticator verifies API keys.
type Authenticator struct {
	secret []byte
	keys   KeyStore
	now    func() time.Time
	cache  keyCache
}

// keyCache holds recently verified keys with their users, by digest, so
// that a busy client does not cost a store lookup per request. Only keys
// that were found are cached (a guess never fills it). An entry is used
// for at most maxAge; Invalidate drops every entry, and a lookup that was
// in flight while Invalidate ran does not store what it read (gen), so a
// revocation is never undone by a racing request.
type keyCache struct {
	mu      sync.RWMutex  // read-locked on the hit path
	maxAge  time.Duration // 0: caching off
	gen     uint64
	entries map[string]cachedKey
}

// dropLocked empties the cache, and the generation change keeps a lookup
// that read the store before from storing what it read; c.mu is held.
func (c *keyCache) dropLocked() {
	c.gen++
	c.entries = nil
}

type cachedKey struct {
	key  store.APIKey
	user store.User
	at   time.Time
}

// KeyCacheMaxEntries bounds the key cache; when full it is emptied.
const KeyCacheMaxEntries = 10_000

// New returns an Authenticator. secret must be SecretSize bytes.
func New(secret []byte, keys KeyStore, now func() time.Time) (*Authenticator, error) {
	if len(secret) != SecretSize {
		return nil, fmt.Errorf("authn: server secret must be %d bytes", SecretSize)
	}
	if keys == nil {
		return nil, errors.New("authn: nil key store")
	}
	if now == nil {
		now = time.Now
	}
	return &Authenticator{secret: slices.Clone(secret), keys: keys, now: now}, nil
}

// CacheKeys turns on caching of verified keys for at most maxAge each (0
// turns it off, the default). The caller must call Invalidate after every
// change of users, roles or keys it makes (the admin API does, through the
// app's AccessChanged) and whenever the store's access version moves (the
// app's watcher polls it every policy.reload_interval), so that a key
// revoked or a user disabled elsewhere stops working within that interval
// and one revoked here stops at once. maxAge bounds staleness if the
// watcher cannot reach the store.
func (a *Authenticator) CacheKeys(maxAge time.Duration) {
	a.cache.mu.Lock()
	defer a.cache.mu.Unlock()
	a.cache.maxAge = max(maxAge, 0)
	a.cache.dropLocked()
}

// Invalidate drops every cached key. Safe for concurrent use.
func (a *Authenticator) Invalidate() {
	a.cache.mu.Lock()
	defer a.cache.mu.Unlock()
	a.cache.dropLocked()
}

// lookup returns the key with digest h and its user, from the cache when
// an entry younger than maxAge exists, else from the store (caching a
// found key unless Invalidate ran meanwhile).
func (a *Authenticator) lookup(ctx context.Context, h []byte) (store.APIKey, store.User, error) {
	c := &a.cache
	now := a.now()
	c.mu.RLock()
	maxAge, gen := c.maxAge, c.gen
	if e, ok := c.entries[string(h)]; ok && maxAge > 0 && now.Sub(e.at) < maxAge && !now.Before(e.at) {
		c.mu.RUnlock()
		return e.key, e.user, nil
	}
	c.mu.RUnlock()
	k, u, err := a.keys.APIKeyByHash(ctx, h)
	if err != nil || maxAge == 0 {
		return k, u, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		if c.entries == nil || len(c.entries) >= KeyCacheMaxEntries {
			c.entries = make(map[string]cachedKey)
		}
		c.entries[string(h)] = cachedKey{key: k, user: u, at: now}
	}
	return k, u, nil
}

// Hash returns HMAC-SHA256(secret, key): the only form of a key stored.
func (a *Authenticator) Hash(key string) []byte {
	m := hmac.New(sha256.New, a.secret)
	m.Write([]byte(key))
	return m.Sum(nil)
}

// NewKey generates a key. It returns the plaintext (shown once), its
// public id ("key_..."), its display prefix and its stored hash.
func (a *Authenticator) NewKey() (plaintext, id, prefix string, hash []byte) {
	plaintext = KeyPrefix + rand.Text() + rand.Text()
	id = "key_" + strings.ToLower(rand.Text()[:16])
	return plaintext, id, plaintext[:len(KeyPrefix)+6], a.Hash(plaintext)
}

// WellFormed reports whether s has the shape of an API key.
func WellFormed(s string) bool {
	body, ok := strings.CutPrefix(s, KeyPrefix)
	if !ok || len(body) != keyBodyLen {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ParseBearer extracts the token from an Authorization header value
// ("Bearer <token>", scheme case-insensitive, RFC 6750 §2.1).
func ParseBearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != "" && !strings.ContainsAny(token, " \t")
}

// Authenticate verifies an API key and returns its principal. The roles
// in force are the key's roles that the user still holds. Lookup is by
// keyed digest (an attacker cannot compute digests, so index timing tells
// nothing), and the digest is compared again in constant time.
func (a *Authenticator) Authenticate(ctx context.Context, key string) (*principal.Principal, error) {
	if key == "" {
		return nil, &Failure{Cause: CauseMissing}
	}
	if !WellFormed(key) {
		return nil, &Failure{Cause: CauseMalformed}
	}
	h := a.Hash(key)
	k, u, err := a.lookup(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Failure{Cause: CauseUnknown}
	}
	if err != nil {
		return nil, &Failure{Cause: CauseBackend, Err: err}
	}
	if !hmac.Equal(h, k.Hash) {
		return nil, &Failure{Cause: CauseUnknown}
	}
	now := a.now()
	switch {
	case k.RevokedAt != nil:
		return nil, &Failure{Cause: CauseRevoked, KeyID: k.ID, User: u.Name}
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return nil, &Failure{Cause: CauseExpired, KeyID: k.ID, User: u.Name}
	case u.Disabled:
		return nil, &Failure{Cause: CauseDisabled, KeyID: k.ID, User: u.Name}
	}
	var roles []string
	for _, r := range k.Roles {
		if slices.Contains(u.Roles, r) {
			roles = append(roles, r)
		}
	}
	if len(roles) == 0 {
		return nil, &Failure{Cause: CauseNoRoles, KeyID: k.ID, User: u.Name}
	}
	slices.Sort(roles)
	return &principal.Principal{
		UserID: u.ID,
		Name:   u.Name,
		Roles:  roles,
		KeyID:  k.ID,
		Scopes: slices.Clone(k.Scopes),
		Method: principal.MethodAPIKey,
	}, nil
}
