package abuse

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// Quotas bounds each principal's calls and sandbox CPU-seconds per UTC
// day. Usage is counted in memory as calls are admitted and added to the
// store (store.AbuseStore.AddUsage, additive, so several replicas count
// once) by Flush, which also reloads the day's totals from the store.
// After a restart today's totals come back from the store; at most the
// last flush interval of usage can be lost in a crash.
type Quotas struct {
	cfg   config.QuotaConfig
	store store.AbuseStore
	now   func() time.Time
	log   *slog.Logger

	mu      sync.Mutex
	day     string
	total   map[string]*store.Usage // today's usage known here (stored + pending)
	pending map[string]*store.Usage // not yet added to the store
}

// NewQuotas returns quotas loaded with today's usage from st.
func NewQuotas(ctx context.Context, cfg config.QuotaConfig, st store.AbuseStore, now func() time.Time, log *slog.Logger) (*Quotas, error) {
	if now == nil {
		now = time.Now
	}
	q := &Quotas{cfg: cfg, store: st, now: now, log: log}
	if err := q.Flush(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

func dayOf(t time.Time) string { return t.UTC().Format("2006-01-02") }

// limits returns p's quota: the base, raised by any of p's roles that
// grants more (0 is unlimited, the most generous).
func (q *Quotas) limits(p *principal.Principal) (calls int64, cpu float64) {
	calls, cpu = q.cfg.CallsPerDay, q.cfg.CPUSecondsPerDay
	for _, r := range p.Roles {
		o, ok := q.cfg.Roles[r]
		if !ok {
			continue
		}
		if calls != 0 && (o.CallsPerDay == 0 || o.CallsPerDay > calls) {
			calls = o.CallsPerDay
		}
		if cpu != 0 && (o.CPUSecondsPerDay == 0 || o.CPUSecondsPerDay > cpu) {
			cpu = o.CPUSecondsPerDay
		}
	}
	return calls, cpu
}

// rollLocked starts a new day's counters when the UTC day changed.
func (q *Quotas) rollLocked(now time.Time) {
	if d := dayOf(now); d != q.day {
		q.day = d
		q.total = map[string]*store.Usage{}
		// Pending usage of the old day stays pending under its own day.
		if q.pending == nil {
			q.pending = map[string]*store.Usage{}
		}
	}
}

// Take admits one call by p against its quota and counts it; it returns a
// non-empty reason when the quota is used up (the call is not counted).
func (q *Quotas) Take(p *principal.Principal) string {
	calls, cpu := q.limits(p)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.rollLocked(q.now())
	u := q.total[p.Name]
	if u == nil {
		u = &store.Usage{Principal: p.Name, Day: q.day}
		q.total[p.Name] = u
	}
	if calls > 0 && u.Calls >= calls {
		return fmt.Sprintf("daily call quota of %d used up", calls)
	}
	if cpu > 0 && float64(u.CPUMillis) >= cpu*1000 {
		return fmt.Sprintf("daily sandbox CPU quota of %gs used up", cpu)
	}
	u.Calls++
	q.pendingLocked(p.Name).Calls++
	return ""
}

// Refund gives back the call Take counted for p when a later check (a
// rate or concurrency limit) refused the call: refused calls use no quota.
func (q *Quotas) Refund(p *principal.Principal) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.rollLocked(q.now())
	if u := q.total[p.Name]; u != nil && u.Calls > 0 {
		u.Calls--
	}
	if u := q.pendingLocked(p.Name); u.Calls > 0 {
		u.Calls--
	}
}

// AddCPU counts sandbox CPU time used by p.
func (q *Quotas) AddCPU(p *principal.Principal, d time.Duration) {
	if d <= 0 {
		return
	}
	ms := d.Milliseconds()
	if ms == 0 {
		ms = 1
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.rollLocked(q.now())
	if u := q.total[p.Name]; u != nil {
		u.CPUMillis += ms
	}
	q.pendingLocked(p.Name).CPUMillis += ms
}

func (q *Quotas) pendingLocked(name string) *store.Usage {
	key := q.day + "|" + name
	u := q.pending[key]
	if u == nil {
		u = &store.Usage{Principal: name, Day: q.day}
		q.pending[key] = u
	}
	return u
}

// Flush adds pending usage to the store and reloads today's totals (which
// include other replicas' usage). Usage that cannot be stored stays
// pending for the next flush.
func (q *Quotas) Flush(ctx context.Context) error {
	q.mu.Lock()
	q.rollLocked(q.now())
	pending := q.pending
	q.pending = map[string]*store.Usage{}
	day := q.day
	q.mu.Unlock()

	var firstErr error
	for key, u := range pending {
		if err := q.store.AddUsage(ctx, *u); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			q.mu.Lock()
			if p := q.pending[key]; p != nil {
				p.Calls += u.Calls
				p.CPUMillis += u.CPUMillis
			} else {
				q.pending[key] = u
			}
			q.mu.Unlock()
		}
	}
	stored, err := q.store.UsageOn(ctx, day)
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.day != day {
		return firstErr
	}
	totals := make(map[string]*store.Usage, len(stored))
	for _, u := range stored {
		u := u
		totals[u.Principal] = &u
	}
	// Usage counted since this flush began is still pending: add it.
	for _, u := range q.pending {
		if u.Day != day {
			continue
		}
		t := totals[u.Principal]
		if t == nil {
			t = &store.Usage{Principal: u.Principal, Day: day}
			totals[u.Principal] = t
		}
		t.Calls += u.Calls
		t.CPUMillis += u.CPUMillis
	}
	q.total = totals
	return firstErr
}

// Today returns today's usage known to this process, by principal.
func (q *Quotas) Today() []store.Usage {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.rollLocked(q.now())
	out := make([]store.Usage, 0, len(q.total))
	for _, u := range q.total {
		out = append(out, *u)
	}
	return out
}
