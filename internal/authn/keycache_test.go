package authn_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/store"
)

// revoke marks the stored key revoked, as another process would.
func (f *authFixture) revoke(k store.APIKey) {
	k.RevokedAt = ptr(t0)
	f.keys.add(k, store.User{ID: k.UserID, Name: k.UserName, Roles: []string{"developer"}})
}

func wantCause(t *testing.T, err error, cause string) {
	t.Helper()
	var fl *authn.Failure
	if !errors.As(err, &fl) || fl.Cause != cause {
		t.Fatalf("err = %v, want cause %s", err, cause)
	}
}

// TestKeyCacheOffByDefault: without CacheKeys every request reads the
// store, so a revocation is seen by the very next request.
func TestKeyCacheOffByDefault(t *testing.T) {
	f := newAuthFixture(t)
	alice := store.User{ID: 1, Name: "alice", Roles: []string{"developer"}}
	plain, k := f.addKey(alice, []string{"developer"}, nil)
	ctx := context.Background()
	for range 3 {
		if _, err := f.a.Authenticate(ctx, plain); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.keys.lookups(); n != 3 {
		t.Errorf("store lookups = %d, want 3 (no cache)", n)
	}
	f.revoke(k)
	_, err := f.a.Authenticate(ctx, plain)
	wantCause(t, err, authn.CauseRevoked)
}

// TestKeyCacheRevocation attacks the cache: a revoked key must stop
// working at Invalidate, after maxAge without one, and a lookup racing an
// Invalidate must not put the old state back.
func TestKeyCacheRevocation(t *testing.T) {
	ctx := context.Background()
	alice := store.User{ID: 1, Name: "alice", Roles: []string{"developer"}}

	t.Run("hits skip the store", func(t *testing.T) {
		f := newAuthFixture(t)
		f.a.CacheKeys(time.Minute)
		plain, _ := f.addKey(alice, []string{"developer"}, nil)
		for range 5 {
			if _, err := f.a.Authenticate(ctx, plain); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.keys.lookups(); n != 1 {
			t.Errorf("store lookups = %d, want 1", n)
		}
	})

	t.Run("Invalidate makes a revocation effective at once", func(t *testing.T) {
		f := newAuthFixture(t)
		f.a.CacheKeys(time.Hour)
		plain, k := f.addKey(alice, []string{"developer"}, nil)
		if _, err := f.a.Authenticate(ctx, plain); err != nil {
			t.Fatal(err)
		}
		f.revoke(k)
		f.a.Invalidate()
		_, err := f.a.Authenticate(ctx, plain)
		wantCause(t, err, authn.CauseRevoked)
	})

	t.Run("an entry older than maxAge is read again", func(t *testing.T) {
		f := newAuthFixture(t)
		f.a.CacheKeys(2 * time.Second)
		plain, k := f.addKey(alice, []string{"developer"}, nil)
		if _, err := f.a.Authenticate(ctx, plain); err != nil {
			t.Fatal(err)
		}
		f.revoke(k) // elsewhere, nobody told this process
		f.clock.Set(t0.Add(1999 * time.Millisecond))
		if _, err := f.a.Authenticate(ctx, plain); err != nil {
			t.Fatalf("within maxAge the cached key is used: %v", err)
		}
		f.clock.Set(t0.Add(2 * time.Second))
		_, err := f.a.Authenticate(ctx, plain)
		wantCause(t, err, authn.CauseRevoked)
	})

	t.Run("a clock stepped back does not extend an entry", func(t *testing.T) {
		f := newAuthFixture(t)
		f.a.CacheKeys(time.Hour)
		plain, k := f.addKey(alice, []string{"developer"}, nil)
		if _, err := f.a.Authenticate(ctx, plain); err != nil {
			t.Fatal(err)
		}
		f.revoke(k)
		f.clock.Set(t0.Add(-time.Second))
		_, err := f.a.Authenticate(ctx, plain)
		wantCause(t, err, authn.CauseRevoked)
	})

	t.Run("expiry is checked on every hit", func(t *testing.T) {
		f := newAuthFixture(t)
		f.a.CacheKeys(time.Hour)
		plain, _ := f.addKey(alice, []string{"developer"}, func(k *store.APIKey) { k.ExpiresAt = ptr(t0.Add(time.Second)) })
		if _, err := f.a.Authenticate(ctx, plain); err != nil {
			t.Fatal(err)
		}
		f.clock.Set(t0.Add(time.Second))
		_, err := f.a.Authenticate(ctx, plain)
		wantCause(t, err, authn.CauseExpired)
		if n := f.keys.lookups(); n != 1 {
			t.Errorf("store lookups = %d, want 1 (expiry from the cached entry)", n)
		}
	})

	t.Run("unknown keys are never cached", func(t *testing.T) {
		f := newAuthFixture(t)
		f.a.CacheKeys(time.Hour)
		unknown, _, _, _ := f.a.NewKey()
		for range 3 {
			_, err := f.a.Authenticate(ctx, unknown)
			wantCause(t, err, authn.CauseUnknown)
		}
		if n := f.keys.lookups(); n != 3 {
			t.Errorf("store lookups = %d, want 3", n)
		}
	})

	t.Run("backend errors are never cached", func(t *testing.T) {
		f := newAuthFixture(t)
		f.a.CacheKeys(time.Hour)
		plain, _ := f.addKey(alice, []string{"developer"}, nil)
		f.keys.mu.Lock()
		f.keys.err = errors.New("disk on fire")
		f.keys.mu.Unlock()
		_, err := f.a.Authenticate(ctx, plain)
		wantCause(t, err, authn.CauseBackend)
		f.keys.mu.Lock()
		f.keys.err = nil
		f.keys.mu.Unlock()
		if _, err := f.a.Authenticate(ctx, plain); err != nil {
			t.Fatalf("after the backend recovered: %v", err)
		}
	})

	t.Run("a lookup racing Invalidate does not cache the old state", func(t *testing.T) {
		keys := &blockingKeys{fakeKeys: newFakeKeys(), entered: make(chan struct{}), release: make(chan struct{})}
		a := newAuth(t, keys, func() time.Time { return t0 })
		a.CacheKeys(time.Hour)
		plain, id, prefix, hash := a.NewKey()
		k := store.APIKey{ID: id, UserID: 1, UserName: "alice", Hash: hash, Prefix: prefix, Roles: []string{"developer"}, CreatedAt: t0}
		keys.add(k, alice)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // reads the key while it is still valid ...
			defer wg.Done()
			if _, err := a.Authenticate(ctx, plain); err != nil {
				t.Error(err)
			}
		}()
		<-keys.entered
		k.RevokedAt = ptr(t0) // ... the key is revoked and the cache told ...
		keys.add(k, alice)
		a.Invalidate()
		close(keys.release) // ... and only then does the old read return.
		wg.Wait()
		_, err := a.Authenticate(ctx, plain)
		wantCause(t, err, authn.CauseRevoked)
	})

	t.Run("CacheKeys(0) turns caching off", func(t *testing.T) {
		f := newAuthFixture(t)
		f.a.CacheKeys(time.Hour)
		plain, k := f.addKey(alice, []string{"developer"}, nil)
		if _, err := f.a.Authenticate(ctx, plain); err != nil {
			t.Fatal(err)
		}
		f.a.CacheKeys(0)
		f.revoke(k)
		_, err := f.a.Authenticate(ctx, plain)
		wantCause(t, err, authn.CauseRevoked)
	})
}

// blockingKeys blocks its first lookup until release is closed.
type blockingKeys struct {
	*fakeKeys
	once             sync.Once
	entered, release chan struct{}
}

func (b *blockingKeys) APIKeyByHash(ctx context.Context, hash []byte) (store.APIKey, store.User, error) {
	k, u, err := b.fakeKeys.APIKeyByHash(ctx, hash)
	first := false
	b.once.Do(func() { first = true })
	if first {
		close(b.entered)
		<-b.release
	}
	return k, u, err
}

// BenchmarkAuthenticateCached compares a cached key check with one that
// reads the (in-memory fake) store.
func BenchmarkAuthenticateCached(b *testing.B) {
	for _, cached := range []bool{false, true} {
		name := "store"
		if cached {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			keys := newFakeKeys()
			a, err := authn.New(make([]byte, authn.SecretSize), keys, nil)
			if err != nil {
				b.Fatal(err)
			}
			if cached {
				a.CacheKeys(time.Minute)
			}
			plain, id, prefix, hash := a.NewKey()
			keys.add(store.APIKey{ID: id, UserID: 1, UserName: "alice", Hash: hash, Prefix: prefix, Roles: []string{"developer"}},
				store.User{ID: 1, Name: "alice", Roles: []string{"developer"}})
			for b.Loop() {
				if _, err := a.Authenticate(context.Background(), plain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
