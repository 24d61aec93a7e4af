package authn

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// CauseLocked is the failure cause of a request refused because its
// source address or principal is locked out.
const CauseLocked = "locked_out"

// LockoutConfig configures brute-force protection.
type LockoutConfig struct {
	// Threshold is the number of failures within Window that locks a
	// source or principal out. Zero disables lockout.
	Threshold int
	// Window is the span over which failures are counted.
	Window time.Duration
	// BaseDelay is the first lockout's length; each further lockout of
	// the same subject doubles it, up to MaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxEntries bounds the subjects tracked (memory bound under a
	// distributed attack); default 100000.
	MaxEntries int
}

// DefaultLockout is 10 failures in 5 minutes → 1 minute, doubling to 1 hour.
var DefaultLockout = LockoutConfig{Threshold: 10, Window: 5 * time.Minute, BaseDelay: time.Minute, MaxDelay: time.Hour, MaxEntries: 100000}

// Validate checks c; the error names the field.
func (c LockoutConfig) Validate() error {
	if c.Threshold == 0 {
		return nil
	}
	switch {
	case c.Threshold < 0:
		return errors.New("threshold must not be negative")
	case c.Window <= 0:
		return errors.New("window must be positive")
	case c.BaseDelay <= 0:
		return errors.New("base_delay must be positive")
	case c.MaxDelay < c.BaseDelay:
		return fmt.Errorf("max_delay %s is shorter than base_delay %s", c.MaxDelay, c.BaseDelay)
	case c.MaxEntries < 0:
		return errors.New("max_entries must not be negative")
	}
	return nil
}

// Lockout counts authentication failures per source address and per
// principal over a sliding window and locks a subject out for an
// exponentially growing time once it crosses the threshold (OWASP
// Authentication Cheat Sheet, "Account lockout"). Source addresses are
// grouped by /64 for IPv6 (one host usually owns a whole /64). A locked
// subject is refused before its credential is even looked up, with the
// same generic 401 as any other failure. Memory is bounded by
// MaxEntries. Safe for concurrent use.
type Lockout struct {
	cfg LockoutConfig
	now func() time.Time

	mu sync.Mutex
	m  map[string]*lockState
}

type lockState struct {
	failures    int
	windowStart time.Time
	lockedUntil time.Time
	strikes     int // lockouts so far: the backoff exponent
	last        time.Time
}

// NewLockout returns a Lockout; a zero Threshold returns one that never
// locks. now may be nil (time.Now).
func NewLockout(cfg LockoutConfig, now func() time.Time) (*Lockout, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authn: lockout: %w", err)
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultLockout.MaxEntries
	}
	if now == nil {
		now = time.Now
	}
	return &Lockout{cfg: cfg, now: now, m: map[string]*lockState{}}, nil
}

// SourceKey is the lockout subject for a client address ("ip:port" or a
// bare IP): the IP, or its /64 for IPv6. An unparsable address is used
// verbatim.
func SourceKey(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	ip := ap.Addr()
	if err != nil {
		if ip, err = netip.ParseAddr(addr); err != nil {
			return "src:" + addr
		}
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "src:" + p.String()
	}
	return "src:" + ip.String()
}

// PrincipalKey is the lockout subject for a principal name.
func PrincipalKey(name string) string { return "user:" + name }

// Locked reports whether any of subjects is locked out now, and for how
// much longer (the longest remaining lock).
func (l *Lockout) Locked(subjects ...string) (bool, time.Duration) {
	if l == nil || l.cfg.Threshold == 0 {
		return false, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var longest time.Duration
	for _, s := range subjects {
		if st := l.m[s]; st != nil && now.Before(st.lockedUntil) {
			longest = max(longest, st.lockedUntil.Sub(now))
		}
	}
	return longest > 0, longest
}

// Lock is a new lockout.
type Lock struct {
	Subject  string
	Duration time.Duration
	Failures int
}

// Failure records one failure for each subject ("" entries are skipped)
// and returns the locks it started.
func (l *Lockout) Failure(subjects ...string) []Lock {
	if l == nil || l.cfg.Threshold == 0 {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var locks []Lock
	for _, s := range subjects {
		if s == "" {
			continue
		}
		st := l.m[s]
		if st == nil {
			if len(l.m) >= l.cfg.MaxEntries {
				l.evictLocked(now)
				if len(l.m) >= l.cfg.MaxEntries {
					continue // every tracked subject is locked: the hard memory bound wins
				}
			}
			st = &lockState{windowStart: now}
			l.m[s] = st
		}
		st.last = now
		if now.Before(st.lockedUntil) {
			continue // already locked; attempts while locked do not extend it
		}
		if now.Sub(st.windowStart) >= l.cfg.Window {
			st.failures, st.windowStart = 0, now
		}
		// Forgive earlier lockouts after a long quiet spell.
		if st.strikes > 0 && !st.lockedUntil.IsZero() && now.Sub(st.lockedUntil) >= 2*l.cfg.MaxDelay {
			st.strikes = 0
		}
		st.failures++
		if st.failures >= l.cfg.Threshold {
			d := l.cfg.BaseDelay
			for i := 0; i < st.strikes && d < l.cfg.MaxDelay; i++ {
				d *= 2
			}
			d = min(d, l.cfg.MaxDelay)
			st.strikes++
			st.lockedUntil = now.Add(d)
			locks = append(locks, Lock{Subject: s, Duration: d, Failures: st.failures})
			st.failures, st.windowStart = 0, now
		}
	}
	return locks
}

// Success clears the failure count of each subject (not its backoff
// history: an attacker who also holds a valid key cannot reset it).
func (l *Lockout) Success(subjects ...string) {
	if l == nil || l.cfg.Threshold == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range subjects {
		if st := l.m[s]; st != nil {
			st.failures = 0
		}
	}
}

// evictLocked makes room: first subjects neither locked nor with failures
// in the window, then (under a flood of fresh sources) unlocked subjects
// in map order. Locked subjects are kept.
func (l *Lockout) evictLocked(now time.Time) {
	target := l.cfg.MaxEntries * 9 / 10
	for s, st := range l.m {
		if !now.Before(st.lockedUntil) && now.Sub(st.last) >= l.cfg.Window {
			delete(l.m, s)
		}
	}
	for s, st := range l.m {
		if len(l.m) <= target {
			break
		}
		if !now.Before(st.lockedUntil) {
			delete(l.m, s)
		}
	}
}

// Len returns the number of subjects tracked.
func (l *Lockout) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
