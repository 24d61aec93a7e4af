// Package limits enforces the rate and concurrency limits of tool calls
// (issue 6) and computes the effective limits of each call from
// config.LimitsConfig.
//
// Effective limits are merged field by field, a zero field inheriting: the
// default of the tool's sensitivity level (Levels), then the tool's override
// (Tools), then the caller's role overrides (Roles; when several of the
// principal's roles have one, the most generous value of each field wins).
// The principal's overall limits (Principal) apply across all tools.
//
// Admit checks, in this order: the principal's overall token bucket, the
// principal × tool bucket, the tool's concurrency across all principals,
// the principal's concurrency for the tool and the principal's overall
// concurrency. A refusal holds nothing: tokens taken by an earlier check are
// returned.
//
// A zero RatePerMinute or concurrency after merging means no limit of that
// kind. Through config.Validate every level is filled from the mode's
// defaults and a zero override inherits, so a zero reaches the limiter only
// from a limits.principal block that sets some fields but not others, or
// from a LimitsConfig built in code. A Burst of 0 with a positive rate is a
// burst of 1.
//
// Every running call counts towards its tool's, its principal × tool's and
// its principal's concurrency, whatever its own limits; a caller is
// admitted if the count is below the limit in force for it (role overrides
// and Reload may give callers different limits on one shared count).
//
// State is kept per principal name and per principal name × tool, created
// lazily. An entry is evictable when no call is running and its bucket is
// full, so evicting it loses nothing. A sweep, run from Admit at most every
// SweepEvery on the injected clock, evicts entries evictable and unused for
// IdleAfter; the number of keys is capped (DefaultMaxKeys, WithMaxKeys):
// at the cap, evictable entries are evicted least recently used first, and
// if none is evictable new keys are refused with ScopeCapacity (fail
// closed). Concurrency counts per tool are deleted when they reach zero.
// Daily quotas (QuotaConfig) are not enforced here.
package limits

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// ErrInvalidConfig is returned (wrapped) by New and Reload for a
// configuration that is incomplete or has negative or non-finite limits.
var ErrInvalidConfig = errors.New("limits: invalid configuration")

// Scope names the limit behind a Refusal. Values are stable: they appear in
// audit records.
type Scope string

// Refusal scopes, in the order Admit checks them (ScopeCapacity first).
const (
	// ScopeCapacity: the limiter holds DefaultMaxKeys (or WithMaxKeys)
	// keys and none can be evicted; Limit is that cap.
	ScopeCapacity Scope = "capacity"
	// ScopePrincipal: the principal's overall token bucket
	// (limits.principal.rate_per_minute); Limit is calls per minute.
	ScopePrincipal Scope = "principal"
	// ScopePrincipalTool: the principal × tool token bucket
	// (rate_per_minute); Limit is calls per minute.
	ScopePrincipalTool Scope = "principal_tool"
	// ScopeTool: calls of the tool running at once, all principals
	// (concurrency); Limit is calls at once.
	ScopeTool Scope = "tool"
	// ScopePrincipalToolConcurrency: calls of the tool running at once by
	// this principal (principal_concurrency); Limit is calls at once.
	ScopePrincipalToolConcurrency Scope = "principal_tool_concurrency"
	// ScopePrincipalConcurrency: calls running at once by this principal,
	// all tools (limits.principal.concurrency); Limit is calls at once.
	ScopePrincipalConcurrency Scope = "principal_concurrency"
)

// Refusal says why Admit refused a call. The zero Refusal means admitted.
type Refusal struct {
	// Code is reason.RateLimited (scopes principal, principal_tool and
	// capacity), reason.ConcurrencyLimited (the concurrency scopes) or
	// reason.Unauthenticated (no principal).
	Code reason.Code
	// Scope names the limit that refused.
	Scope Scope
	// Limit is the limit's value: calls per minute for rate scopes, calls
	// at once for concurrency scopes, keys for ScopeCapacity.
	Limit float64
	// RetryAfter is when a retry may succeed: for a rate scope, when the
	// bucket will hold a token, rounded up to a whole second; otherwise 1s.
	// It is at least 1s.
	RetryAfter time.Duration
}

// Refused reports whether r is a refusal (non-zero).
func (r Refusal) Refused() bool { return r.Code != "" }

// Bounds of the limiter's state.
const (
	// DefaultMaxKeys is the default hard cap on keys (principals plus
	// principal × tool pairs) the limiter holds.
	DefaultMaxKeys = 100_000
	// IdleAfter is how long an entry must go without calls, with its
	// buckets full and no call running, before the sweep evicts it.
	IdleAfter = 10 * time.Minute
	// SweepEvery is the minimum interval between two sweeps; sweeps run
	// lazily from Admit on the injected clock.
	SweepEvery = time.Minute
	// capacityBackoff is how long, after an eviction pass freed nothing,
	// new keys are refused without scanning again.
	capacityBackoff = time.Second
)

// Option configures a Limiter.
type Option func(*options)

type options struct {
	maxKeys int
}

// WithMaxKeys sets the hard cap on keys (default DefaultMaxKeys); n must
// be at least 2 (one principal and one principal × tool pair).
func WithMaxKeys(n int) Option { return func(o *options) { o.maxKeys = n } }

// Limiter enforces the limits of one configuration; it is safe for
// concurrent use. Create it with New.
type Limiter struct {
	now     func() time.Time
	cfg     atomic.Pointer[compiled]
	maxKeys int64

	principals shards[principalShard]
	tools      shards[toolShard]

	// keys counts principal and principal × tool entries (at most maxKeys).
	keys atomic.Int64
	// nextSweep is the UnixNano time of the next lazy sweep.
	nextSweep atomic.Int64

	evictMu sync.Mutex
	// noEvictUntil (UnixNano, guarded by evictMu) follows an eviction pass
	// that freed nothing.
	noEvictUntil int64
}

// New returns a Limiter for cfg (normally validated by config.Validate).
// now is the clock (nil means time.Now); every rate window and idle time is
// measured on it. It returns an error wrapping ErrInvalidConfig if a level
// (LOW, MEDIUM, HIGH, CRITICAL) is missing or unknown, or a limit is
// negative or not finite.
func New(cfg config.LimitsConfig, now func() time.Time, opts ...Option) (*Limiter, error) {
	o := options{maxKeys: DefaultMaxKeys}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxKeys < 2 {
		return nil, fmt.Errorf("%w: max keys %d, want at least 2", ErrInvalidConfig, o.maxKeys)
	}
	c, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	c.loaded = now()
	l := &Limiter{now: now, maxKeys: int64(o.maxKeys)}
	l.principals.init(func(s *principalShard) { s.m = map[string]*principalEntry{} })
	l.tools.init(func(s *toolShard) { s.m = map[string]int{} })
	l.cfg.Store(c)
	l.nextSweep.Store(now().Add(SweepEvery).UnixNano())
	return l, nil
}

// Reload validates cfg as New does and swaps it in atomically for calls
// admitted afterwards; on error the current configuration stays. State is
// kept: calls already running keep counting against the new concurrency
// limits, and an existing bucket keeps its tokens (capped at the new burst)
// and refills at the old rate until the reload, at the new one after. A bucket whose rate
// becomes 0 is dropped, so it starts full if a rate is set again.
func (l *Limiter) Reload(cfg config.LimitsConfig) error {
	c, err := compile(cfg)
	if err != nil {
		return err
	}
	c.loaded = l.now()
	l.cfg.Store(c)
	return nil
}

// Len returns the number of keys (principals plus principal × tool pairs)
// the limiter holds, at most the cap.
func (l *Limiter) Len() int { return int(l.keys.Load()) }

// Effective returns the limits of one call by p to the tool: the level
// default for s, then the tool override, then p's role overrides (the most
// generous value of each field among p's roles), a zero field inheriting;
// a Burst of 0 with a positive rate becomes 1. An unknown sensitivity is
// treated as tool.Critical (fail closed). p may be nil (no role overrides).
func (l *Limiter) Effective(p *principal.Principal, toolName string, s tool.Sensitivity) config.ToolLimits {
	return l.cfg.Load().effective(p, toolName, s)
}

// noop is the release func returned with a refusal.
func noop() {}

// Admit checks whether p may call the tool now (see the package comment
// for the order of checks). If so it returns a release func, to be called
// once the call ends (later calls are no-ops), and the zero Refusal. If not,
// it returns a no-op release and the Refusal; nothing is held. A nil p is
// refused with reason.Unauthenticated: the gateway authenticates first.
func (l *Limiter) Admit(p *principal.Principal, toolName string, s tool.Sensitivity) (release func(), r Refusal) {
	if p == nil {
		return noop, Refusal{Code: reason.Unauthenticated, Scope: ScopePrincipal, RetryAfter: time.Second}
	}
	c := l.cfg.Load()
	eff := c.effective(p, toolName, s)
	pl := c.principal
	now := l.now()
	nowNano := now.UnixNano()
	l.maybeSweep(now)

	sh := l.principals.get(p.Name)
	sh.mu.Lock()
	pe, pt := sh.lookupLocked(p.Name, toolName)
	if pt == nil {
		// New keys: count them against the cap, evicting if full.
		for attempt := 0; ; attempt++ {
			need := int64(1)
			if pe == nil {
				need = 2
			}
			if l.reserveKeys(need) {
				break
			}
			sh.mu.Unlock()
			if attempt > 0 || !l.evictForCapacity(now, need) {
				return noop, Refusal{Code: reason.RateLimited, Scope: ScopeCapacity,
					Limit: float64(l.maxKeys), RetryAfter: time.Second}
			}
			sh.mu.Lock()
			if pe, pt = sh.lookupLocked(p.Name, toolName); pt != nil {
				break // created meanwhile
			}
		}
		if pt == nil {
			pe, pt = sh.createLocked(pe, p.Name, toolName)
		}
	}
	// sh.mu is held from here on.
	pe.lastUsed, pt.lastUsed = nowNano, nowNano

	var r1, r2 *rate.Reservation
	refuse := func(r Refusal) (func(), Refusal) {
		if r2 != nil {
			r2.CancelAt(now)
		}
		if r1 != nil {
			r1.CancelAt(now)
		}
		l.dropUnusedLocked(sh, pe, pt)
		sh.mu.Unlock()
		return noop, r
	}

	if b := pe.bucket.sync(pl.RatePerMinute, pl.Burst, now, c.loaded); b != nil {
		r1 = b.ReserveN(now, 1)
		if d, ok := delay(r1, now); !ok {
			r1 = nil
			return refuse(rateRefusal(ScopePrincipal, pl.RatePerMinute, d))
		}
	}
	if b := pt.bucket.sync(eff.RatePerMinute, eff.Burst, now, c.loaded); b != nil {
		r2 = b.ReserveN(now, 1)
		if d, ok := delay(r2, now); !ok {
			r2 = nil
			return refuse(rateRefusal(ScopePrincipalTool, eff.RatePerMinute, d))
		}
	}

	ts := l.tools.get(toolName)
	ts.mu.Lock()
	var ref Refusal
	switch {
	case eff.Concurrency > 0 && ts.m[toolName] >= eff.Concurrency:
		ref = concurrencyRefusal(ScopeTool, eff.Concurrency)
	case eff.PrincipalConcurrency > 0 && pt.active >= eff.PrincipalConcurrency:
		ref = concurrencyRefusal(ScopePrincipalToolConcurrency, eff.PrincipalConcurrency)
	case pl.Concurrency > 0 && pe.active >= pl.Concurrency:
		ref = concurrencyRefusal(ScopePrincipalConcurrency, pl.Concurrency)
	default:
		ts.m[toolName]++
	}
	ts.mu.Unlock()
	if ref.Refused() {
		return refuse(ref)
	}
	pt.active++
	pe.active++
	sh.mu.Unlock()

	t := &ticket{l: l, sh: sh, pe: pe, pt: pt, ts: ts, tool: toolName}
	return t.release, Refusal{}
}

// delay reports whether the reservation may act at now; if not it cancels
// it (returning its token) and returns how long until a token is available.
func delay(r *rate.Reservation, now time.Time) (time.Duration, bool) {
	if !r.OK() {
		return time.Second, false
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return 0, true
	}
	r.CancelAt(now)
	return d, false
}

func rateRefusal(s Scope, perMinute float64, d time.Duration) Refusal {
	return Refusal{Code: reason.RateLimited, Scope: s, Limit: perMinute, RetryAfter: ceilSecond(d)}
}

func concurrencyRefusal(s Scope, limit int) Refusal {
	return Refusal{Code: reason.ConcurrencyLimited, Scope: s, Limit: float64(limit), RetryAfter: time.Second}
}

// ceilSecond rounds d up to a whole second (at least 1s), ignoring up to
// 1ms of floating-point noise from the token arithmetic.
func ceilSecond(d time.Duration) time.Duration {
	s := (d - time.Millisecond + time.Second - 1) / time.Second
	return max(s, 1) * time.Second
}

// ticket is one admitted call; release returns what it holds, once.
type ticket struct {
	done atomic.Bool
	l    *Limiter
	sh   *principalShard
	pe   *principalEntry
	pt   *toolEntry
	ts   *toolShard
	tool string
}

func (t *ticket) release() {
	if t.done.Swap(true) {
		return
	}
	t.ts.mu.Lock()
	if n := t.ts.m[t.tool] - 1; n > 0 {
		t.ts.m[t.tool] = n
	} else {
		delete(t.ts.m, t.tool)
	}
	t.ts.mu.Unlock()

	t.sh.mu.Lock()
	t.pt.active--
	t.pe.active--
	t.l.dropUnusedLocked(t.sh, t.pe, t.pt)
	t.sh.mu.Unlock()
}

// compiled is a validated configuration.
type compiled struct {
	levels    [tool.Critical + 1]config.ToolLimits // indexed by sensitivity
	tools     map[string]config.ToolLimits
	roles     map[string]config.ToolLimits
	principal config.PrincipalLimits // Burst normalized
	loaded    time.Time              // when New or Reload took it
}

func compile(cfg config.LimitsConfig) (*compiled, error) {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, fmt.Errorf("%s: %s", key, msg)) }
	check := func(key string, l config.ToolLimits) {
		if l.RatePerMinute < 0 || math.IsNaN(l.RatePerMinute) || math.IsInf(l.RatePerMinute, 0) ||
			l.Burst < 0 || l.Concurrency < 0 || l.PrincipalConcurrency < 0 ||
			l.Timeout < 0 || l.MaxArgBytes < 0 || l.MaxResponseBytes < 0 {
			bad(key, "limits must be finite and not negative")
		}
	}

	c := &compiled{tools: maps.Clone(cfg.Tools), roles: maps.Clone(cfg.Roles)}
	for _, k := range slices.Sorted(maps.Keys(cfg.Levels)) {
		s, err := tool.ParseSensitivity(k)
		if err != nil || s.String() != k {
			bad("limits.levels."+k, "unknown sensitivity (want LOW, MEDIUM, HIGH or CRITICAL)")
		}
	}
	for s := tool.Low; s <= tool.Critical; s++ {
		l, ok := cfg.Levels[s.String()]
		if !ok {
			bad("limits.levels."+s.String(), "missing (config.Validate fills every level)")
		}
		check("limits.levels."+s.String(), l)
		c.levels[s] = l
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Tools)) {
		check("limits.tools."+k, cfg.Tools[k])
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Roles)) {
		check("limits.roles."+k, cfg.Roles[k])
	}
	p := cfg.Principal
	if p.RatePerMinute < 0 || math.IsNaN(p.RatePerMinute) || math.IsInf(p.RatePerMinute, 0) ||
		p.Burst < 0 || p.Concurrency < 0 {
		bad("limits.principal", "limits must be finite and not negative")
	}
	if p.RatePerMinute > 0 && p.Burst == 0 {
		p.Burst = 1
	}
	c.principal = p
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return c, nil
}

func (c *compiled) effective(p *principal.Principal, toolName string, s tool.Sensitivity) config.ToolLimits {
	if s < tool.Low || s > tool.Critical {
		s = tool.Critical
	}
	eff := c.levels[s]
	if o, ok := c.tools[toolName]; ok {
		eff = merge(eff, o)
	}
	if p != nil && len(c.roles) > 0 {
		var best config.ToolLimits
		for _, role := range p.Roles {
			if o, ok := c.roles[role]; ok {
				best = generous(best, o)
			}
		}
		eff = merge(eff, best)
	}
	if eff.RatePerMinute > 0 && eff.Burst == 0 {
		eff.Burst = 1
	}
	return eff
}

// merge returns base with every non-zero field of over applied (as
// config's mergeLimits).
func merge(base, over config.ToolLimits) config.ToolLimits {
	if over.RatePerMinute != 0 {
		base.RatePerMinute = over.RatePerMinute
	}
	if over.Burst != 0 {
		base.Burst = over.Burst
	}
	if over.Concurrency != 0 {
		base.Concurrency = over.Concurrency
	}
	if over.PrincipalConcurrency != 0 {
		base.PrincipalConcurrency = over.PrincipalConcurrency
	}
	if over.Timeout != 0 {
		base.Timeout = over.Timeout
	}
	if over.MaxArgBytes != 0 {
		base.MaxArgBytes = over.MaxArgBytes
	}
	if over.MaxResponseBytes != 0 {
		base.MaxResponseBytes = over.MaxResponseBytes
	}
	return base
}

// generous returns the field-wise maximum of a and b: the most generous of
// two role overrides (zero fields, which inherit, never win over a set one).
func generous(a, b config.ToolLimits) config.ToolLimits {
	return config.ToolLimits{
		RatePerMinute:        max(a.RatePerMinute, b.RatePerMinute),
		Burst:                max(a.Burst, b.Burst),
		Concurrency:          max(a.Concurrency, b.Concurrency),
		PrincipalConcurrency: max(a.PrincipalConcurrency, b.PrincipalConcurrency),
		Timeout:              max(a.Timeout, b.Timeout),
		MaxArgBytes:          max(a.MaxArgBytes, b.MaxArgBytes),
		MaxResponseBytes:     max(a.MaxResponseBytes, b.MaxResponseBytes),
	}
}
