package gateway

import (
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/principal"
)

// denialWindow is how far back Cedar's context.denials counts.
const denialWindow = time.Hour

// Bounds of the denial counter's memory: at most maxDenialPrincipals
// principals (the oldest-touched is dropped first) with at most
// maxDenialsKept timestamps each (context.denials saturates there).
const (
	maxDenialPrincipals = 10000
	maxDenialsKept      = 256
)

// denialCounter counts each principal's policy denials over the last
// denialWindow: the "prior denials" session fact Cedar policies see as
// context.denials (e.g. forbid risky tools after a burst of denials).
// Memory is bounded whatever callers do. Safe for concurrent use.
type denialCounter struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*denials
}

type denials struct {
	times   []time.Time // ascending
	touched time.Time
}

func newDenialCounter(now func() time.Time) *denialCounter {
	return &denialCounter{now: now, m: map[string]*denials{}}
}

func denialKey(p *principal.Principal) string {
	if p == nil {
		return ""
	}
	return string(p.Method) + ":" + p.Name
}

// add records one denial of p.
func (c *denialCounter) add(p *principal.Principal) {
	if p == nil {
		return
	}
	now := c.now()
	k := denialKey(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.m[k]
	if d == nil {
		if len(c.m) >= maxDenialPrincipals {
			c.evictLocked(now)
		}
		d = &denials{}
		c.m[k] = d
	}
	d.times = prune(d.times, now)
	if len(d.times) >= maxDenialsKept {
		d.times = d.times[1:]
	}
	d.times = append(d.times, now)
	d.touched = now
}

// count returns p's denials within the window.
func (c *denialCounter) count(p *principal.Principal) int {
	if p == nil {
		return 0
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.m[denialKey(p)]
	if d == nil {
		return 0
	}
	d.times = prune(d.times, now)
	return len(d.times)
}

// evictLocked drops principals with no denial in the window, and if that
// frees nothing, the least recently touched one.
func (c *denialCounter) evictLocked(now time.Time) {
	var oldest string
	var oldestT time.Time
	for k, d := range c.m {
		if now.Sub(d.touched) >= denialWindow {
			delete(c.m, k)
			continue
		}
		if oldest == "" || d.touched.Before(oldestT) {
			oldest, oldestT = k, d.touched
		}
	}
	if len(c.m) >= maxDenialPrincipals && oldest != "" {
		delete(c.m, oldest)
	}
}

func prune(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= denialWindow {
		i++
	}
	return ts[i:]
}
