package authn_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/authn"
)

type lockClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *lockClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *lockClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLockout(t *testing.T, cfg authn.LockoutConfig) (*authn.Lockout, *lockClock) {
	t.Helper()
	ck := &lockClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	l, err := authn.NewLockout(cfg, ck.Now)
	if err != nil {
		t.Fatal(err)
	}
	return l, ck
}

var testLockCfg = authn.LockoutConfig{Threshold: 3, Window: time.Minute, BaseDelay: 10 * time.Second, MaxDelay: 80 * time.Second, MaxEntries: 100}

// TestLockoutBackoff: the threshold locks; each further lockout doubles
// up to the maximum; attempts while locked do not extend the lock.
func TestLockoutBackoff(t *testing.T) {
	l, ck := newLockout(t, testLockCfg)
	src := authn.SourceKey("198.51.100.7:5555")
	for i := 1; i <= 2; i++ {
		if locks := l.Failure(src); len(locks) != 0 {
			t.Fatalf("failure %d locked: %+v", i, locks)
		}
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 80 * time.Second}
	for round, d := range want {
		locks := l.Failure(src)
		if round > 0 {
			locks = nil
			for range 3 {
				locks = append(locks, l.Failure(src)...)
			}
		}
		if len(locks) != 1 || locks[0].Duration != d || locks[0].Subject != src {
			t.Fatalf("round %d: locks = %+v; want one of %s", round, locks, d)
		}
		if ok, left := l.Locked(src); !ok || left != d {
			t.Fatalf("round %d: Locked = %v %s; want true %s", round, ok, left, d)
		}
		// Hammering while locked neither extends nor re-locks.
		for range 20 {
			if extra := l.Failure(src); len(extra) != 0 {
				t.Fatalf("a locked subject was locked again: %+v", extra)
			}
		}
		ck.Add(d - time.Second)
		if ok, _ := l.Locked(src); !ok {
			t.Fatalf("round %d: lock ended early", round)
		}
		ck.Add(time.Second)
		if ok, _ := l.Locked(src); ok {
			t.Fatalf("round %d: lock did not end after %s", round, d)
		}
	}
}

// TestLockoutWindow: failures spread wider than the window never lock.
func TestLockoutWindow(t *testing.T) {
	l, ck := newLockout(t, testLockCfg)
	for range 10 {
		if locks := l.Failure("src:a"); len(locks) != 0 {
			t.Fatalf("slow failures locked: %+v", locks)
		}
		ck.Add(31 * time.Second)
	}
}

// TestLockoutSuccessKeepsBackoff: a success resets the count but not the
// backoff history, so an attacker holding one valid key cannot launder
// the lockout away.
func TestLockoutSuccessKeepsBackoff(t *testing.T) {
	l, ck := newLockout(t, testLockCfg)
	u := authn.PrincipalKey("alice")
	l.Failure(u)
	l.Failure(u)
	l.Success(u)
	if locks := l.Failure(u); len(locks) != 0 {
		t.Fatal("success did not reset the failure count")
	}
	l.Failure(u)
	locks := l.Failure(u)
	if len(locks) != 1 || locks[0].Duration != 10*time.Second {
		t.Fatalf("locks = %+v", locks)
	}
	ck.Add(10 * time.Second)
	l.Success(u)
	for range 2 {
		l.Failure(u)
	}
	if locks := l.Failure(u); len(locks) != 1 || locks[0].Duration != 20*time.Second {
		t.Errorf("second lockout after a success = %+v; want the doubled 20s", locks)
	}
	// A long quiet spell forgives the history.
	ck.Add(20*time.Second + 2*testLockCfg.MaxDelay)
	for range 2 {
		l.Failure(u)
	}
	if locks := l.Failure(u); len(locks) != 1 || locks[0].Duration != 10*time.Second {
		t.Errorf("lockout after a quiet spell = %+v; want the base 10s", locks)
	}
}

// TestLockoutSubjectsIndependent: one source's failures do not lock
// another source or a principal, and several subjects are counted at once.
func TestLockoutSubjectsIndependent(t *testing.T) {
	l, _ := newLockout(t, testLockCfg)
	a, b, u := authn.SourceKey("192.0.2.1:1"), authn.SourceKey("192.0.2.2:1"), authn.PrincipalKey("bob")
	for range 3 {
		l.Failure(a, u)
	}
	if ok, _ := l.Locked(b); ok {
		t.Error("another source was locked")
	}
	if ok, _ := l.Locked(a); !ok {
		t.Error("the failing source was not locked")
	}
	if ok, _ := l.Locked(b, u); !ok {
		t.Error("the principal was not locked (a new source must not help)")
	}
}

func TestSourceKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.1:1000", "192.0.2.1:2000"},           // ports do not matter
		{"[2001:db8::1]:1", "[2001:db8::ffff:1234]:2"}, // same /64
		{"[::ffff:192.0.2.1]:1", "192.0.2.1:9"},        // IPv4-mapped
		{"192.0.2.1", "192.0.2.1:9"},                   // bare IP
	} {
		if authn.SourceKey(tc.a) != authn.SourceKey(tc.b) {
			t.Errorf("SourceKey(%s) = %s != SourceKey(%s) = %s", tc.a, authn.SourceKey(tc.a), tc.b, authn.SourceKey(tc.b))
		}
	}
	if authn.SourceKey("[2001:db8:0:1::1]:1") == authn.SourceKey("[2001:db8:0:2::1]:1") {
		t.Error("different /64s share a key")
	}
}

// TestLockoutMemoryBound: a flood of fresh sources keeps at most
// MaxEntries subjects and keeps the locked ones.
func TestLockoutMemoryBound(t *testing.T) {
	l, _ := newLockout(t, testLockCfg)
	locked := authn.SourceKey("203.0.113.9:1")
	for range 3 {
		l.Failure(locked)
	}
	for i := range 10000 {
		l.Failure(authn.SourceKey(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)))
		if n := l.Len(); n > testLockCfg.MaxEntries {
			t.Fatalf("tracking %d subjects; bound is %d", n, testLockCfg.MaxEntries)
		}
	}
	if ok, _ := l.Locked(locked); !ok {
		t.Error("the flood evicted a locked subject")
	}
}

func TestLockoutConfigValidate(t *testing.T) {
	for name, c := range map[string]authn.LockoutConfig{
		"negative threshold": {Threshold: -1},
		"no window":          {Threshold: 1, BaseDelay: time.Second, MaxDelay: time.Second},
		"no delay":           {Threshold: 1, Window: time.Second},
		"max below base":     {Threshold: 1, Window: time.Second, BaseDelay: time.Minute, MaxDelay: time.Second},
	} {
		if _, err := authn.NewLockout(c, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	off, err := authn.NewLockout(authn.LockoutConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		off.Failure("src:x")
	}
	if ok, _ := off.Locked("src:x"); ok {
		t.Error("a zero threshold locked")
	}
}
