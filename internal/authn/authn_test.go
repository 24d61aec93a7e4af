package authn_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// fakeKeys is a hand-written KeyStore: records by hash, an optional
// backend error, an optional override that answers every lookup with a
// fixed record, and a count of lookups.
type record struct {
	k store.APIKey
	u store.User
}

type fakeKeys struct {
	mu       sync.Mutex
	byHash   map[string]record
	err      error
	override *record
	calls    int
}

var _ authn.KeyStore = (*fakeKeys)(nil)

func newFakeKeys() *fakeKeys {
	return &fakeKeys{byHash: map[string]record{}}
}

func (f *fakeKeys) add(k store.APIKey, u store.User) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byHash[string(k.Hash)] = record{k, u}
}

func (f *fakeKeys) APIKeyByHash(_ context.Context, hash []byte) (store.APIKey, store.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return store.APIKey{}, store.User{}, f.err
	}
	if f.override != nil {
		return f.override.k, f.override.u, nil
	}
	r, ok := f.byHash[string(hash)]
	if !ok {
		return store.APIKey{}, store.User{}, fmt.Errorf("fake: %w", store.ErrNotFound)
	}
	return r.k, r.u, nil
}

func (f *fakeKeys) lookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, authn.SecretSize) }

func newAuth(t *testing.T, keys authn.KeyStore, now func() time.Time) *authn.Authenticator {
	t.Helper()
	a, err := authn.New(secret(7), keys, now)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var (
	keyRE = regexp.MustCompile(`^pcl_[A-Z2-7]{52}$`)
	idRE  = regexp.MustCompile(`^key_[a-z2-7]{16}$`)
)

func TestNewKeyFormat(t *testing.T) {
	a := newAuth(t, newFakeKeys(), nil)
	const n = 1000
	keys := make(map[string]bool, n)
	ids := make(map[string]bool, n)
	hashes := make(map[string]bool, n)
	// seen[i] collects the characters seen at body position i: a
	// generator with a constant or low-entropy position (e.g. a fixed
	// second half) shows up as a position with one character.
	var seen [52]map[byte]bool
	for i := range seen {
		seen[i] = map[byte]bool{}
	}
	for range n {
		plain, id, prefix, hash := a.NewKey()
		if !keyRE.MatchString(plain) {
			t.Fatalf("key %q does not match %s", plain, keyRE)
		}
		if !authn.WellFormed(plain) {
			t.Fatalf("NewKey produced a key WellFormed refuses: %q", plain)
		}
		if !idRE.MatchString(id) {
			t.Fatalf("id %q does not match %s", id, idRE)
		}
		if strings.Contains(plain, strings.TrimPrefix(id, "key_")) || strings.Contains(strings.ToLower(plain), strings.TrimPrefix(id, "key_")) {
			t.Fatalf("public id %q is derived from the secret key", id)
		}
		if !strings.HasPrefix(plain, prefix) || !strings.HasPrefix(prefix, authn.KeyPrefix) {
			t.Fatalf("prefix %q is not a prefix of the key", prefix)
		}
		// A display prefix must not give away a meaningful part of the
		// secret: at most 8 body characters (40 of 260 bits).
		if body := len(prefix) - len(authn.KeyPrefix); body < 1 || body > 8 {
			t.Fatalf("prefix %q reveals %d body characters, want 1..8", prefix, body)
		}
		if !hmac.Equal(hash, a.Hash(plain)) {
			t.Fatalf("NewKey hash is not Hash(plaintext)")
		}
		if keys[plain] || ids[id] || hashes[string(hash)] {
			t.Fatalf("duplicate key, id or hash after %d keys", len(keys))
		}
		keys[plain], ids[id], hashes[string(hash)] = true, true, true
		body := strings.TrimPrefix(plain, authn.KeyPrefix)
		for i := range len(body) {
			seen[i][body[i]] = true
		}
		// Two independent halves (rand.Text twice): a bug reusing one
		// draw would halve the entropy.
		if body[:26] == body[26:] {
			t.Fatalf("key halves are equal: %q", plain)
		}
	}
	// ≥128 random bits: 52 characters of a 32-letter alphabet carry 260
	// bits only if every position varies; with 1000 uniform draws each
	// position sees nearly all 32 letters (P(<16) is negligible).
	for i, s := range seen {
		if len(s) < 16 {
			t.Errorf("body position %d took only %d distinct values over %d keys", i, len(s), n)
		}
	}
	if bits := 5 * 52; bits < 128 {
		t.Errorf("key body carries %d bits, want >= 128", bits)
	}
}

func TestHashIsHMACUnderSecret(t *testing.T) {
	sec := secret(1)
	a, err := authn.New(sec, newFakeKeys(), nil)
	if err != nil {
		t.Fatal(err)
	}
	key := "pcl_" + strings.Repeat("A", 52)
	m := hmac.New(sha256.New, secret(1))
	m.Write([]byte(key))
	if want := m.Sum(nil); !bytes.Equal(a.Hash(key), want) {
		t.Fatalf("Hash = %x, want HMAC-SHA256(secret, key) = %x", a.Hash(key), want)
	}
	plain := sha256.Sum256([]byte(key))
	if bytes.Equal(a.Hash(key), plain[:]) {
		t.Fatal("Hash is an unkeyed SHA-256")
	}

	other, err := authn.New(secret(2), newFakeKeys(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Hash(key), other.Hash(key)) {
		t.Fatal("two different secrets give the same hash")
	}
	if bytes.Equal(a.Hash(key), a.Hash(key+"B")) {
		t.Fatal("two different keys give the same hash")
	}

	// New copies the secret: a caller scribbling over its slice later
	// (e.g. zeroing it) must not change the hashes of stored keys.
	before := a.Hash(key)
	for i := range sec {
		sec[i] = 0
	}
	if !bytes.Equal(before, a.Hash(key)) {
		t.Fatal("Authenticator aliases the caller's secret slice")
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	for _, n := range []int{0, 1, 16, authn.SecretSize - 1, authn.SecretSize + 1, 64} {
		if _, err := authn.New(make([]byte, n), newFakeKeys(), nil); err == nil {
			t.Errorf("New accepted a %d-byte secret", n)
		}
	}
	if _, err := authn.New(nil, newFakeKeys(), nil); err == nil {
		t.Error("New accepted a nil secret")
	}
	if _, err := authn.New(secret(1), nil, nil); err == nil {
		t.Error("New accepted a nil key store")
	}
	if a, err := authn.New(secret(1), newFakeKeys(), nil); err != nil || a == nil {
		t.Errorf("New with nil clock: %v", err)
	}
}

func TestWellFormed(t *testing.T) {
	good := "pcl_" + strings.Repeat("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 2)
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"valid", good, true},
		{"valid digits", "pcl_" + strings.Repeat("234567", 9)[:52], true},
		{"empty", "", false},
		{"prefix only", "pcl_", false},
		{"lowercase body", strings.ToLower(good), false},
		{"one lowercase char", good[:10] + "a" + good[11:], false},
		{"uppercase prefix", "PCL_" + good[4:], false},
		{"wrong prefix", "pck_" + good[4:], false},
		{"no prefix", good[4:], false},
		{"short by one", good[:len(good)-1], false},
		{"long by one", good + "A", false},
		{"double length", good + good[4:], false},
		{"digit 0", good[:10] + "0" + good[11:], false},
		{"digit 1", good[:10] + "1" + good[11:], false},
		{"digit 8", good[:10] + "8" + good[11:], false},
		{"padding", good[:len(good)-1] + "=", false},
		{"space inside", good[:10] + " " + good[11:], false},
		{"trailing space", good[:len(good)-1] + " ", false},
		{"leading space", " " + good[:len(good)-1], false},
		{"NUL", good[:10] + "\x00" + good[11:], false},
		{"newline", good[:len(good)-1] + "\n", false},
		// Multi-byte characters: same rune count, wrong byte count or
		// bytes outside the alphabet.
		{"unicode Cyrillic A", good[:10] + "А" + good[11:], false},
		{"unicode replacing two bytes", good[:10] + "É" + good[12:], false},
		{"fullwidth A", good[:10] + "Ａ" + good[11:], false},
		{"bearer included", "Bearer " + good, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := authn.WellFormed(tt.in); got != tt.want {
				t.Errorf("WellFormed(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseBearer(t *testing.T) {
	tests := []struct {
		in     string
		token  string
		wantOK bool
	}{
		{"Bearer x", "x", true},
		{"bearer x", "x", true},
		{"BEARER x", "x", true},
		{"BeArEr x", "x", true},
		// RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token.
		{"Bearer  x", "x", true},
		{"Bearer x ", "x", true},
		{"Bearer x y", "", false},
		{"Bearer x\ty", "", false},
		{"Basic x", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer   ", "", false},
		{"Bearer\tx", "", false},
		{"Bearer\t x", "", false},
		{" Bearer x", "", false},
		{"Bearerx", "", false},
		{"Bearer: x", "", false},
		{"Bearer,x", "", false},
		{"Token x", "", false},
		{"", "", false},
		{"x", "", false},
		{"Bearer pcl_ABC Bearer pcl_DEF", "", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			tok, ok := authn.ParseBearer(tt.in)
			if ok != tt.wantOK {
				t.Fatalf("ParseBearer(%q) ok = %v, want %v (token %q)", tt.in, ok, tt.wantOK, tok)
			}
			if ok && tok != tt.token {
				t.Errorf("ParseBearer(%q) = %q, want %q", tt.in, tok, tt.token)
			}
		})
	}
}

// FuzzParseBearer checks ParseBearer's invariants: an accepted token is
// non-empty, has no space or tab, and is found verbatim in the header
// after a case-insensitive "Bearer " scheme.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer x", "bearer  x", "Bearer", "Basic x", "Bearer x y", "Bearer\tx", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := authn.ParseBearer(h)
		if !ok {
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t") {
			t.Fatalf("ParseBearer(%q) accepted token %q", h, tok)
		}
		if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") || !strings.Contains(h[7:], tok) {
			t.Fatalf("ParseBearer(%q) = %q: not a Bearer credential", h, tok)
		}
	})
}

// FuzzWellFormed checks that WellFormed accepts exactly pcl_ + 52
// characters of the RFC 4648 base32 alphabet.
func FuzzWellFormed(f *testing.F) {
	f.Add("pcl_" + strings.Repeat("A", 52))
	f.Add("pcl_" + strings.Repeat("a", 52))
	f.Add("pcl_")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := authn.WellFormed(s), keyRE.MatchString(s); got != want {
			t.Fatalf("WellFormed(%q) = %v, regexp says %v", s, got, want)
		}
	})
}

// authFixture is an Authenticator over a fake store holding one key per
// case.
type authFixture struct {
	a     *authn.Authenticator
	keys  *fakeKeys
	clock *fakeClock
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	f := &authFixture{keys: newFakeKeys(), clock: &fakeClock{now: t0}}
	f.a = newAuth(t, f.keys, f.clock.Now)
	return f
}

// addKey stores a fresh key with roles for user u and returns the plaintext.
func (f *authFixture) addKey(u store.User, roles []string, mod func(*store.APIKey)) (string, store.APIKey) {
	plain, id, prefix, hash := f.a.NewKey()
	k := store.APIKey{ID: id, UserID: u.ID, UserName: u.Name, Hash: hash, Prefix: prefix, Roles: roles, CreatedAt: t0.Add(-time.Hour)}
	if mod != nil {
		mod(&k)
	}
	f.keys.add(k, u)
	return plain, k
}

func ptr[T any](v T) *T { return &v }

func TestAuthenticate(t *testing.T) {
	f := newAuthFixture(t)
	alice := store.User{ID: 1, Name: "alice", Roles: []string{"developer", "guest"}}
	bob := store.User{ID: 2, Name: "bob", Roles: []string{"guest"}, Disabled: true}
	carol := store.User{ID: 3, Name: "carol", Roles: []string{"guest"}}

	valid, _ := f.addKey(alice, []string{"developer"}, nil)
	revoked, revokedK := f.addKey(alice, []string{"developer"}, func(k *store.APIKey) { k.RevokedAt = ptr(t0.Add(-time.Minute)) })
	expired, expiredK := f.addKey(alice, []string{"developer"}, func(k *store.APIKey) { k.ExpiresAt = ptr(t0) })
	expiresLater, _ := f.addKey(alice, []string{"developer"}, func(k *store.APIKey) { k.ExpiresAt = ptr(t0.Add(time.Nanosecond)) })
	disabled, disabledK := f.addKey(bob, []string{"guest"}, nil)
	// carol's key was made when she was an admin; she is a guest now.
	demoted, demotedK := f.addKey(carol, []string{"admin"}, nil)
	// A key over two roles, one of which alice lost: only the intersection.
	subset, _ := f.addKey(alice, []string{"admin", "developer"}, nil)
	// A key for fewer roles than the user holds does not get the others.
	narrow, _ := f.addKey(alice, []string{"guest"}, nil)
	// Unsorted key roles come back sorted.
	both, _ := f.addKey(alice, []string{"guest", "developer"}, nil)
	unknown, _, _, _ := f.a.NewKey() // never stored

	tests := []struct {
		name      string
		key       string
		cause     string
		keyID     string
		user      string
		roles     []string
		noLookups bool
	}{
		{name: "missing", key: "", cause: authn.CauseMissing, noLookups: true},
		{name: "malformed", key: "pcl_short", cause: authn.CauseMalformed, noLookups: true},
		{name: "malformed lowercase", key: strings.ToLower(valid), cause: authn.CauseMalformed, noLookups: true},
		{name: "malformed with bearer", key: "Bearer " + valid, cause: authn.CauseMalformed, noLookups: true},
		{name: "unknown", key: unknown, cause: authn.CauseUnknown},
		{name: "revoked", key: revoked, cause: authn.CauseRevoked, keyID: revokedK.ID, user: "alice"},
		{name: "expired at exactly ExpiresAt", key: expired, cause: authn.CauseExpired, keyID: expiredK.ID, user: "alice"},
		{name: "disabled user", key: disabled, cause: authn.CauseDisabled, keyID: disabledK.ID, user: "bob"},
		{name: "roles no longer held", key: demoted, cause: authn.CauseNoRoles, keyID: demotedK.ID, user: "carol"},
		{name: "valid", key: valid, roles: []string{"developer"}},
		{name: "valid 1ns before expiry", key: expiresLater, roles: []string{"developer"}},
		{name: "subset: intersection only", key: subset, roles: []string{"developer"}},
		{name: "narrow key does not widen", key: narrow, roles: []string{"guest"}},
		{name: "roles sorted", key: both, roles: []string{"developer", "guest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.keys.lookups()
			p, err := f.a.Authenticate(context.Background(), tt.key)
			if tt.noLookups && f.keys.lookups() != before {
				t.Errorf("the store was queried for a credential that is not even well formed")
			}
			if tt.cause == "" {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if p.Name != "alice" || p.UserID != 1 || p.Method != principal.MethodAPIKey || !strings.HasPrefix(p.KeyID, "key_") {
					t.Errorf("principal = %+v", p)
				}
				if diff := cmp.Diff(tt.roles, p.Roles); diff != "" {
					t.Errorf("roles (-want +got):\n%s", diff)
				}
				return
			}
			if p != nil {
				t.Errorf("got principal %+v with an error", p)
			}
			if !errors.Is(err, authn.ErrUnauthenticated) {
				t.Fatalf("err = %v, want ErrUnauthenticated", err)
			}
			var fl *authn.Failure
			if !errors.As(err, &fl) {
				t.Fatalf("err %T is not a *Failure", err)
			}
			if fl.Cause != tt.cause || fl.KeyID != tt.keyID || fl.User != tt.user {
				t.Errorf("failure = {cause %q key %q user %q}, want {%q %q %q}", fl.Cause, fl.KeyID, fl.User, tt.cause, tt.keyID, tt.user)
			}
			if tt.key != "" {
				for _, s := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", fl.Error())} {
					if strings.Contains(s, tt.key) || strings.Contains(s, strings.TrimPrefix(tt.key, authn.KeyPrefix)) {
						t.Errorf("error text %q contains the credential", s)
					}
				}
			}
		})
	}

	t.Run("key becomes expired as the clock passes ExpiresAt", func(t *testing.T) {
		f.clock.Set(t0)
		if _, err := f.a.Authenticate(context.Background(), expiresLater); err != nil {
			t.Fatalf("before expiry: %v", err)
		}
		f.clock.Set(t0.Add(time.Nanosecond))
		_, err := f.a.Authenticate(context.Background(), expiresLater)
		var fl *authn.Failure
		if !errors.As(err, &fl) || fl.Cause != authn.CauseExpired {
			t.Fatalf("at ExpiresAt: err = %v, want %s", err, authn.CauseExpired)
		}
		f.clock.Set(t0)
	})
}

func TestAuthenticateBackendError(t *testing.T) {
	f := newAuthFixture(t)
	backend := errors.New("disk on fire")
	f.keys.err = backend
	key, _, _, _ := f.a.NewKey()
	p, err := f.a.Authenticate(context.Background(), key)
	if p != nil {
		t.Fatalf("backend error produced principal %+v", p)
	}
	var fl *authn.Failure
	if !errors.As(err, &fl) || fl.Cause != authn.CauseBackend {
		t.Fatalf("err = %v, want cause %s", err, authn.CauseBackend)
	}
	if !errors.Is(err, authn.ErrUnauthenticated) {
		t.Error("backend failure does not unwrap to ErrUnauthenticated")
	}
	if !errors.Is(err, backend) {
		t.Error("backend failure lost its cause")
	}
	// The cause stays out of the client-visible text.
	if strings.Contains(err.Error(), "disk on fire") || strings.Contains(err.Error(), key) {
		t.Errorf("error text %q leaks the backend cause or the key", err.Error())
	}

	// A store that wraps ErrNotFound is "unknown", not a backend error.
	f.keys.err = fmt.Errorf("lookup: %w", store.ErrNotFound)
	_, err = f.a.Authenticate(context.Background(), key)
	if !errors.As(err, &fl) || fl.Cause != authn.CauseUnknown {
		t.Fatalf("wrapped ErrNotFound: err = %v, want %s", err, authn.CauseUnknown)
	}
}

// TestAuthenticateHashMismatch: a store that answers with a record whose
// hash is not the presented key's (an index collision, a buggy or
// compromised backend, a prefix match) is refused.
func TestAuthenticateHashMismatch(t *testing.T) {
	f := newAuthFixture(t)
	_, other := f.addKey(store.User{ID: 9, Name: "root", Roles: []string{"admin"}}, []string{"admin"}, nil)
	attacker, _, _, _ := f.a.NewKey()
	for name, h := range map[string][]byte{
		"other key's hash": other.Hash,
		"nil hash":         nil,
		"empty hash":       {},
		"truncated hash":   f.a.Hash(attacker)[:16],
		"unkeyed sha256": func() []byte {
			s := sha256.Sum256([]byte(attacker))
			return s[:]
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			k := other
			k.Hash = h
			f.keys.override = &record{k, store.User{ID: 9, Name: "root", Roles: []string{"admin"}}}
			p, err := f.a.Authenticate(context.Background(), attacker)
			if p != nil || !errors.Is(err, authn.ErrUnauthenticated) {
				t.Fatalf("mismatched record authenticated: p=%+v err=%v", p, err)
			}
			var fl *authn.Failure
			if errors.As(err, &fl) && (fl.User != "" || fl.KeyID != "") {
				t.Errorf("failure names the record of another key: %+v", fl)
			}
		})
	}
}

func TestFailureError(t *testing.T) {
	f := &authn.Failure{Cause: authn.CauseRevoked, KeyID: "key_abc", User: "alice"}
	if got := f.Error(); got != "unauthenticated: revoked_key" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(f, authn.ErrUnauthenticated) {
		t.Error("Failure without Err does not unwrap to ErrUnauthenticated")
	}
	// A nil Err in the unwrap list must not confuse errors.Is/As.
	if errors.Is(f, context.Canceled) {
		t.Error("Failure matches an unrelated error")
	}
}

// TestAuthenticateCarriesScopes: a key's scopes reach the principal (the
// policy engine narrows by them), as a copy the caller cannot alias.
func TestAuthenticateCarriesScopes(t *testing.T) {
	f := newAuthFixture(t)
	alice := store.User{ID: 1, Name: "alice", Roles: []string{"developer"}}
	key, k := f.addKey(alice, []string{"developer"}, func(k *store.APIKey) { k.Scopes = []string{"read_file", "git_*"} })
	p, err := f.a.Authenticate(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Scopes, []string{"read_file", "git_*"}) {
		t.Fatalf("Scopes = %v", p.Scopes)
	}
	p.Scopes[0] = "*"
	if k.Scopes[0] != "read_file" {
		t.Error("principal scopes alias the stored key's")
	}
	unscoped, _ := f.addKey(alice, []string{"developer"}, nil)
	if p, err := f.a.Authenticate(context.Background(), unscoped); err != nil || len(p.Scopes) != 0 {
		t.Errorf("unscoped key: %v %v", p, err)
	}
}
