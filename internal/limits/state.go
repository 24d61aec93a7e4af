package limits

import (
	"cmp"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// shardCount is the number of lock shards for principals and for tools
// (a power of two).
const shardCount = 64

// shards spreads keys over shardCount independently locked shards, so
// that Admit takes no global lock.
type shards[S any] struct {
	seed maphash.Seed
	s    [shardCount]S
}

func (s *shards[S]) init(f func(*S)) {
	s.seed = maphash.MakeSeed()
	for i := range s.s {
		f(&s.s[i])
	}
}

func (s *shards[S]) get(key string) *S {
	return &s.s[maphash.String(s.seed, key)&(shardCount-1)]
}

// principalShard holds the entries of the principals hashed to it; mu
// guards the entries and their buckets, so every bucket operation of one
// principal is serialized (a cancelled reservation returns its token
// exactly).
type principalShard struct {
	mu sync.Mutex
	m  map[string]*principalEntry
	_  [48]byte // keep shards on separate cache lines
}

// toolShard counts the calls running per tool; a count is deleted when it
// drops to zero.
type toolShard struct {
	mu sync.Mutex
	m  map[string]int
	_  [48]byte
}

// principalEntry is one principal's state; guarded by its shard's mu.
type principalEntry struct {
	name     string
	bucket   bucket
	active   int   // calls running, all tools
	lastUsed int64 // UnixNano of the last Admit
	tools    map[string]*toolEntry
}

// toolEntry is one principal × tool state; guarded by its shard's mu.
type toolEntry struct {
	name     string
	bucket   bucket
	active   int
	lastUsed int64
}

// bucket is a token bucket whose limits follow the configuration.
type bucket struct {
	lim   *rate.Limiter // nil: no rate limit
	rate  rate.Limit
	burst int
	at    time.Time // last sync (every use of lim follows one)
}

// sync brings the bucket to perMinute and burst (creating it full, or
// dropping it when perMinute is 0) and returns it, or nil for no limit.
// New limits apply from loaded (when the configuration was loaded) if the
// bucket was not used since, so time before a Reload refills at the old
// rate and time after it at the new one.
func (b *bucket) sync(perMinute float64, burst int, now, loaded time.Time) *rate.Limiter {
	if perMinute <= 0 {
		b.lim = nil
		return nil
	}
	r := rate.Limit(perMinute / 60)
	switch {
	case b.lim == nil:
		b.lim, b.rate, b.burst = rate.NewLimiter(r, burst), r, burst
	case b.rate != r || b.burst != burst:
		from := now
		if !b.at.After(loaded) && loaded.Before(now) {
			from = loaded
		}
		b.lim.SetLimitAt(from, r)
		b.lim.SetBurstAt(from, burst)
		b.rate, b.burst = r, burst
	}
	b.at = now
	return b.lim
}

// full reports whether the bucket is as a new one would be.
func (b *bucket) full(now time.Time) bool {
	return b.lim == nil || b.lim.TokensAt(now) >= float64(b.burst)
}

func (e *toolEntry) evictable(now time.Time) bool {
	return e.active == 0 && e.bucket.full(now)
}

func (e *principalEntry) evictable(now time.Time) bool {
	return e.active == 0 && len(e.tools) == 0 && e.bucket.full(now)
}

// lookupLocked returns the entries of name and name × tool, nil if absent.
func (s *principalShard) lookupLocked(name, toolName string) (*principalEntry, *toolEntry) {
	pe := s.m[name]
	if pe == nil {
		return nil, nil
	}
	return pe, pe.tools[toolName]
}

// createLocked creates the name × tool entry, and the name entry if pe is
// nil; the caller has reserved the keys.
func (s *principalShard) createLocked(pe *principalEntry, name, toolName string) (*principalEntry, *toolEntry) {
	if pe == nil {
		pe = &principalEntry{name: name, tools: map[string]*toolEntry{}}
		s.m[name] = pe
	}
	pt := &toolEntry{name: toolName}
	pe.tools[toolName] = pt
	return pe, pt
}

// reserveKeys counts n new keys if that stays within the cap.
func (l *Limiter) reserveKeys(n int64) bool {
	for {
		k := l.keys.Load()
		if k+n > l.maxKeys {
			return false
		}
		if l.keys.CompareAndSwap(k, k+n) {
			return true
		}
	}
}

// dropUnusedLocked deletes pt and pe if they have no call running and no
// rate bucket, so that a limiter without rate limits keeps no state for
// idle principals. Entries with a bucket wait for the sweep.
func (l *Limiter) dropUnusedLocked(s *principalShard, pe *principalEntry, pt *toolEntry) {
	if pt.active == 0 && pt.bucket.lim == nil {
		delete(pe.tools, pt.name)
		l.keys.Add(-1)
	}
	if pe.active == 0 && len(pe.tools) == 0 && pe.bucket.lim == nil {
		delete(s.m, pe.name)
		l.keys.Add(-1)
	}
}

// maybeSweep runs the sweep if SweepEvery has passed since the last one;
// at most one caller runs it.
func (l *Limiter) maybeSweep(now time.Time) {
	n := now.UnixNano()
	next := l.nextSweep.Load()
	if n < next || !l.nextSweep.CompareAndSwap(next, n+int64(SweepEvery)) {
		return
	}
	l.sweep(now)
}

// sweep evicts entries unused for IdleAfter that are evictable (no call
// running, buckets full: evicting them loses nothing).
func (l *Limiter) sweep(now time.Time) {
	cutoff := now.Add(-IdleAfter).UnixNano()
	for i := range l.principals.s {
		s := &l.principals.s[i]
		var freed int64
		s.mu.Lock()
		for name, pe := range s.m {
			for tname, pt := range pe.tools {
				if pt.lastUsed <= cutoff && pt.evictable(now) {
					delete(pe.tools, tname)
					freed++
				}
			}
			if pe.lastUsed <= cutoff && pe.evictable(now) {
				delete(s.m, name)
				freed++
			}
		}
		s.mu.Unlock()
		l.keys.Add(-freed)
	}
}

// evictForCapacity frees room for need keys by evicting evictable entries,
// least recently used first, whatever their age; it frees at least
// max(need, maxKeys/64) keys when it can, so that a full limiter does not
// scan on every new key. It reports whether it freed anything. After a pass
// that freed nothing it refuses to scan again for capacityBackoff.
func (l *Limiter) evictForCapacity(now time.Time, need int64) bool {
	l.evictMu.Lock()
	defer l.evictMu.Unlock()
	if l.keys.Load()+need <= l.maxKeys {
		return true // another caller made room
	}
	n := now.UnixNano()
	if n < l.noEvictUntil {
		return false
	}

	type candidate struct {
		s        *principalShard
		pe       *principalEntry
		pt       *toolEntry // nil: the principal entry itself
		lastUsed int64
	}
	var cands []candidate
	for i := range l.principals.s {
		s := &l.principals.s[i]
		s.mu.Lock()
		for _, pe := range s.m {
			if pe.evictable(now) {
				cands = append(cands, candidate{s: s, pe: pe, lastUsed: pe.lastUsed})
			}
			for _, pt := range pe.tools {
				if pt.evictable(now) {
					cands = append(cands, candidate{s: s, pe: pe, pt: pt, lastUsed: pt.lastUsed})
				}
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(cands, func(a, b candidate) int { return cmp.Compare(a.lastUsed, b.lastUsed) })

	target := max(need, l.maxKeys/64)
	var freed int64
	for _, c := range cands {
		if freed >= target {
			break
		}
		c.s.mu.Lock()
		// Recheck: the entry may have been used, evicted or replaced since.
		if c.s.m[c.pe.name] == c.pe {
			if c.pt != nil && c.pe.tools[c.pt.name] == c.pt && c.pt.lastUsed == c.lastUsed && c.pt.evictable(now) {
				delete(c.pe.tools, c.pt.name)
				freed++
			}
			if c.pe.evictable(now) {
				delete(c.s.m, c.pe.name)
				freed++
			}
		}
		c.s.mu.Unlock()
	}
	l.keys.Add(-freed)
	if freed == 0 {
		l.noEvictUntil = n + int64(capacityBackoff)
		return false
	}
	return true
}
