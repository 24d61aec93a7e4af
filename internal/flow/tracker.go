package flow

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultTTL     = 24 * time.Hour
	DefaultMaxKeys = 100_000
)

// Sharding of keys: a shard holds at least minShardKeys keys of MaxKeys, and
// there are at most maxShards shards (a power of two), so a small MaxKeys is
// one shard with an exact LRU order.
const (
	maxShards    = 64
	minShardKeys = 1024
)

// Config configures a Tracker.
type Config struct {
	// Rules are the flow rules, checked by Validate.
	Rules []Rule
	// TTL is how long a key's taint outlives its last Record: a key idle
	// that long is forgotten. Zero is DefaultTTL; negative is an error.
	TTL time.Duration
	// MaxKeys bounds the number of keys holding taint. Zero is
	// DefaultMaxKeys; negative is an error. At the bound, Record of a new
	// key evicts the least recently recorded key of its shard (keys are
	// spread over up to 64 shards of at least 1024 keys each; with
	// MaxKeys below 2048 there is one shard and the order is exact).
	MaxKeys int
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Tracker remembers, per key, the taint labels of successful calls and
// decides later calls by the rules. It is safe for concurrent use. A
// Tracker with no rules is disabled: every method returns at once.
type Tracker struct {
	ttl time.Duration
	now func() time.Time

	// afterBit maps each After label to its bit in a taint set; bits are
	// given in label order, so afterLabels[bit] lists a set sorted.
	afterBit    map[string]int
	afterLabels []string
	words       int // uint64 words in a taint set

	// byThen maps each Then label to its rules, in rule order.
	byThen map[string][]rule

	seed   maphash.Seed
	shards []shard // len a power of two; nil when disabled
}

// rule is a Rule compiled for Check.
type rule struct {
	index  int
	name   string
	after  int // bit of the After label
	action Action
}

// shard is one lock's worth of keys, with a list in Record order: most
// recent after head, least recent (evicted first) before it. The sentinel
// makes a shard larger than a cache line, so neighbours' locks do not share
// one.
type shard struct {
	mu   sync.RWMutex
	m    map[string]*entry
	head entry // sentinel of the circular list
	max  int   // keys at most
}

// entry is one key's taint; guarded by its shard's mu.
type entry struct {
	key        string
	last       time.Time // last Record
	taint      []uint64  // bit i set: tainted with afterLabels[i]
	small      [1]uint64 // taint's storage for up to 64 labels
	prev, next *entry
}

// New returns a Tracker for cfg. Errors wrap ErrInvalid: invalid rules (see
// Validate), a negative TTL or a negative MaxKeys.
func New(cfg Config) (*Tracker, error) {
	if err := Validate(cfg.Rules); err != nil {
		return nil, err
	}
	switch {
	case cfg.TTL < 0:
		return nil, fmt.Errorf("%w: ttl: negative duration %v", ErrInvalid, cfg.TTL)
	case cfg.TTL == 0:
		cfg.TTL = DefaultTTL
	}
	switch {
	case cfg.MaxKeys < 0:
		return nil, fmt.Errorf("%w: max keys: negative %d", ErrInvalid, cfg.MaxKeys)
	case cfg.MaxKeys == 0:
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Tracker{ttl: cfg.TTL, now: cfg.Now}
	if len(cfg.Rules) == 0 {
		return t, nil
	}

	for _, r := range cfg.Rules {
		t.afterLabels = append(t.afterLabels, r.After.Label)
	}
	slices.Sort(t.afterLabels)
	t.afterLabels = slices.Compact(t.afterLabels)
	t.afterBit = make(map[string]int, len(t.afterLabels))
	for i, l := range t.afterLabels {
		t.afterBit[l] = i
	}
	t.words = (len(t.afterLabels) + 63) / 64
	t.byThen = make(map[string][]rule)
	for i, r := range cfg.Rules {
		t.byThen[r.Then.Label] = append(t.byThen[r.Then.Label], rule{
			index: i, name: ruleName(r, i), after: t.afterBit[r.After.Label], action: r.Then.Action,
		})
	}

	n := 1
	for n < maxShards && cfg.MaxKeys/(2*n) >= minShardKeys {
		n *= 2
	}
	t.seed = maphash.MakeSeed()
	t.shards = make([]shard, n)
	for i := range t.shards {
		s := &t.shards[i]
		s.m = make(map[string]*entry)
		s.head.prev, s.head.next = &s.head, &s.head
		s.max = cfg.MaxKeys / n
		if i < cfg.MaxKeys%n {
			s.max++
		}
	}
	return t, nil
}

// Enabled reports whether t has rules. When it is false, Check allows
// every call and Record keeps nothing, so the gateway can skip both.
func (t *Tracker) Enabled() bool { return t.shards != nil }

func (t *Tracker) shard(key string) *shard {
	return &t.shards[maphash.String(t.seed, key)&uint64(len(t.shards)-1)]
}

// Check decides a call by key to a tool carrying labels, before the call
// runs: of the rules whose Then label is among labels and whose After
// label key is tainted with, the strictest wins (ActionDeny over
// ActionRequireApproval; between equals, the first in rule order). No
// matching rule is the zero Decision (allowed). Check only reads: it
// neither taints nor refreshes the key.
func (t *Tracker) Check(key string, labels []string) Decision {
	if !t.sinks(labels) {
		return Decision{}
	}
	return t.decide(t.bestLocking(nil, key, labels, t.now()))
}

// CheckKeys is Check over several keys, e.g. those of Keys: of the rules
// matching labels whose After label any of keys is tainted with, the
// strictest wins (ties: the first in rule order). Like Check, it only
// reads.
func (t *Tracker) CheckKeys(keys []string, labels []string) Decision {
	if !t.sinks(labels) {
		return Decision{}
	}
	now := t.now()
	var best *rule
	for _, k := range keys {
		best = t.bestLocking(best, k, labels, now)
	}
	return t.decide(best)
}

// sinks reports whether any of labels is the Then label of some rule.
func (t *Tracker) sinks(labels []string) bool {
	if t.shards == nil {
		return false
	}
	for _, l := range labels {
		if _, ok := t.byThen[l]; ok {
			return true
		}
	}
	return false
}

// bestLocking returns the stricter of best and the strictest rule matching
// labels that key's live taint triggers (ties: the first in rule order).
// It takes key's shard's read lock.
func (t *Tracker) bestLocking(best *rule, key string, labels []string, now time.Time) *rule {
	s := t.shard(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.m[key]
	if e == nil || t.expired(e, now) {
		return best
	}
	for _, l := range labels {
		rs := t.byThen[l]
		for i := range rs {
			r := &rs[i]
			if e.taint[r.after/64]&(1<<(r.after%64)) == 0 {
				continue
			}
			if best == nil || r.action.strictness() > best.action.strictness() ||
				r.action == best.action && r.index < best.index {
				best = r
			}
		}
	}
	return best
}

// decide is the Decision of rule best; nil is allowed.
func (t *Tracker) decide(best *rule) Decision {
	if best == nil {
		return Decision{}
	}
	return Decision{Action: best.action, Rule: best.name, Label: t.afterLabels[best.after]}
}

// Record notes that a call by key to a tool carrying labels completed
// successfully. Key is tainted with those of labels that are the After
// label of some rule; other labels are not kept. Every Record of a key
// already tainted restarts its TTL and makes it the most recently used,
// whatever labels; a key with no taint and no After label in labels is
// not stored. A new key at the MaxKeys bound evicts the least recently
// used key of its shard.
func (t *Tracker) Record(key string, labels []string) {
	if t.shards == nil {
		return
	}
	var buf [8]int
	set := buf[:0]
	for _, l := range labels {
		if b, ok := t.afterBit[l]; ok {
			set = append(set, b)
		}
	}
	s := t.shard(key)
	if len(set) == 0 {
		// Nothing to add: only a key already stored is refreshed, so
		// look first without the write lock.
		s.mu.RLock()
		_, ok := s.m[key]
		s.mu.RUnlock()
		if !ok {
			return
		}
	}

	now := t.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e != nil && t.expired(e, now) {
		s.removeLocked(e)
		e = nil
	}
	if e == nil {
		if len(set) == 0 {
			return
		}
		t.makeRoomLocked(s, now)
		e = &entry{key: key}
		if t.words == 1 {
			e.taint = e.small[:]
		} else {
			e.taint = make([]uint64, t.words)
		}
		s.m[key] = e
	} else {
		s.unlinkLocked(e)
	}
	for _, b := range set {
		e.taint[b/64] |= 1 << (b % 64)
	}
	e.last = now
	s.pushFrontLocked(e)
}

// makeRoomLocked drops the expired keys at the least recent end of s, then
// evicts least recent keys until a new one fits.
func (t *Tracker) makeRoomLocked(s *shard, now time.Time) {
	for e := s.head.prev; e != &s.head && t.expired(e, now); e = s.head.prev {
		s.removeLocked(e)
	}
	for len(s.m) >= s.max && s.head.prev != &s.head {
		s.removeLocked(s.head.prev)
	}
}

// Taints returns the labels key is tainted with, sorted; nil when none
// (never recorded, expired or evicted). For audit details and
// admin inspection.
func (t *Tracker) Taints(key string) []string {
	if t.shards == nil {
		return nil
	}
	now := t.now()
	s := t.shard(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.m[key]
	if e == nil || t.expired(e, now) {
		return nil
	}
	var out []string
	for w, word := range e.taint {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			out = append(out, t.afterLabels[w*64+b])
			word &^= 1 << b
		}
	}
	return out
}

// expired reports whether e has been idle for TTL or longer at now.
func (t *Tracker) expired(e *entry, now time.Time) bool {
	return now.Sub(e.last) >= t.ttl
}

func (s *shard) removeLocked(e *entry) {
	s.unlinkLocked(e)
	delete(s.m, e.key)
}

func (s *shard) unlinkLocked(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *shard) pushFrontLocked(e *entry) {
	e.prev, e.next = &s.head, s.head.next
	s.head.next.prev = e
	s.head.next = e
}
