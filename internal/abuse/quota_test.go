package abuse_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

// clock is a manually advanced clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var day0 = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// memStore is an in-memory store.AbuseStore; failAdd makes the next n
// AddUsage calls fail.
type memStore struct {
	mu          sync.Mutex
	violations  []store.Violation
	quarantines []store.Quarantine
	usage       map[string]store.Usage // day|principal
	failAdd     int
}

var _ store.AbuseStore = (*memStore)(nil)

var errStoreDown = errors.New("store down")

func newMemStore() *memStore { return &memStore{usage: map[string]store.Usage{}} }

func (m *memStore) RecordViolations(_ context.Context, vs []store.Violation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.violations = append(m.violations, vs...)
	return nil
}

func (m *memStore) ListViolations(_ context.Context, q store.ViolationQuery) ([]store.Violation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Violation
	for i := len(m.violations) - 1; i >= 0; i-- {
		v := m.violations[i]
		if (q.Principal == "" || v.Principal == q.Principal) && (q.Type == "" || v.Type == q.Type) {
			out = append(out, v)
		}
	}
	return out, nil
}

func (m *memStore) CreateQuarantine(_ context.Context, q store.Quarantine) (store.Quarantine, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.quarantines {
		if e.ReleasedAt == nil && e.Kind == q.Kind && e.Subject == q.Subject {
			return e, store.ErrConflict
		}
	}
	m.quarantines = append(m.quarantines, q)
	return q, nil
}

func (m *memStore) ListQuarantines(_ context.Context, all bool) ([]store.Quarantine, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Quarantine
	for _, q := range slices.Backward(m.quarantines) {
		if all || q.ReleasedAt == nil {
			out = append(out, q)
		}
	}
	return out, nil
}

func (m *memStore) ReleaseQuarantine(_ context.Context, idOrSubject, by, why string, at time.Time) (store.Quarantine, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, q := range m.quarantines {
		if q.ReleasedAt == nil && (q.ID == idOrSubject || q.Subject == idOrSubject) {
			at := at.UTC()
			q.ReleasedAt, q.ReleasedBy, q.ReleaseReason = &at, by, why
			m.quarantines[i] = q
			return q, nil
		}
	}
	return store.Quarantine{}, store.ErrNotFound
}

func (m *memStore) AddUsage(_ context.Context, u store.Usage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failAdd > 0 {
		m.failAdd--
		return errStoreDown
	}
	k := u.Day + "|" + u.Principal
	cur := m.usage[k]
	cur.Principal, cur.Day = u.Principal, u.Day
	cur.Calls += u.Calls
	cur.CPUMillis += u.CPUMillis
	m.usage[k] = cur
	return nil
}

func (m *memStore) UsageOn(_ context.Context, day string) ([]store.Usage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Usage
	for _, u := range m.usage {
		if u.Day == day {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b store.Usage) int { return strings.Compare(a.Principal, b.Principal) })
	return out, nil
}

func (m *memStore) stored(day, name string) store.Usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.usage[day+"|"+name]
}

func newQuotas(t *testing.T, cfg config.QuotaConfig, st store.AbuseStore, now func() time.Time) *abuse.Quotas {
	t.Helper()
	q, err := abuse.NewQuotas(t.Context(), cfg, st, now, discard())
	if err != nil {
		t.Fatalf("NewQuotas: %v", err)
	}
	return q
}

func user(name string, roles ...string) *principal.Principal {
	return &principal.Principal{Name: name, Roles: roles}
}

// takes calls Take until it refuses (at most max times) and returns how
// many calls were admitted and the refusal.
func takes(q *abuse.Quotas, p *principal.Principal, max int) (int, string) {
	for i := range max {
		if why := q.Take(p); why != "" {
			return i, why
		}
	}
	return max, ""
}

func today(q *abuse.Quotas, name string) store.Usage {
	for _, u := range q.Today() {
		if u.Principal == name {
			return u
		}
	}
	return store.Usage{}
}

func TestTakeCountsAndRefuses(t *testing.T) {
	clk := newClock(day0)
	q := newQuotas(t, config.QuotaConfig{CallsPerDay: 3}, newMemStore(), clk.Now)
	alice, bob := user("alice"), user("bob")
	n, why := takes(q, alice, 10)
	if n != 3 || !strings.Contains(why, "daily call quota of 3") {
		t.Fatalf("admitted %d, refusal %q; want 3 then a call quota refusal", n, why)
	}
	// Refused calls are not counted.
	for range 5 {
		q.Take(alice)
	}
	if got := today(q, "alice"); got.Calls != 3 || got.Day != "2026-06-01" {
		t.Errorf("alice today %+v, want 3 calls on 2026-06-01", got)
	}
	// Quotas are per principal.
	if n, _ := takes(q, bob, 10); n != 3 {
		t.Errorf("bob admitted %d, want 3", n)
	}
}

func TestUnlimitedQuota(t *testing.T) {
	q := newQuotas(t, config.QuotaConfig{}, newMemStore(), newClock(day0).Now)
	if n, why := takes(q, user("alice"), 5000); n != 5000 {
		t.Fatalf("unlimited quota refused after %d: %q", n, why)
	}
	q.AddCPU(user("alice"), 10*time.Hour)
	if why := q.Take(user("alice")); why != "" {
		t.Fatalf("unlimited CPU quota refused: %q", why)
	}
}

// TestRoleOverrides: a role's quota applies when it is more generous than
// the base; 0 is unlimited, the most generous of all.
func TestRoleOverrides(t *testing.T) {
	const unlimited = 2000 // takes() bound standing for "no limit"
	roles := map[string]config.QuotaLimits{
		"ops":   {CallsPerDay: 100},
		"batch": {CallsPerDay: 0, CPUSecondsPerDay: 0},
		"low":   {CallsPerDay: 5},
	}
	tests := []struct {
		name  string
		base  int64
		roles []string
		want  int
	}{
		{"no roles", 10, nil, 10},
		{"role without override", 10, []string{"viewer"}, 10},
		{"more generous role", 10, []string{"ops"}, 100},
		{"less generous role ignored", 10, []string{"low"}, 10},
		{"most generous of several", 10, []string{"low", "ops"}, 100},
		{"zero is unlimited", 10, []string{"low", "batch"}, unlimited},
		{"unlimited base stays unlimited", 0, []string{"low"}, unlimited},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := newQuotas(t, config.QuotaConfig{CallsPerDay: tc.base, Roles: roles}, newMemStore(), newClock(day0).Now)
			if n, why := takes(q, user("alice", tc.roles...), unlimited); n != tc.want {
				t.Fatalf("admitted %d (%q), want %d", n, why, tc.want)
			}
		})
	}
}

func TestCPUQuota(t *testing.T) {
	cfg := config.QuotaConfig{CPUSecondsPerDay: 2, Roles: map[string]config.QuotaLimits{"ml": {CPUSecondsPerDay: 5}}}
	q := newQuotas(t, cfg, newMemStore(), newClock(day0).Now)
	alice, carol := user("alice"), user("carol", "ml")

	if why := q.Take(alice); why != "" {
		t.Fatal(why)
	}
	q.AddCPU(alice, 1500*time.Millisecond)
	q.AddCPU(alice, 0)            // ignored
	q.AddCPU(alice, -time.Second) // ignored
	if why := q.Take(alice); why != "" {
		t.Fatalf("1.5s of 2s used: %q", why)
	}
	q.AddCPU(alice, 499*time.Millisecond)
	q.AddCPU(alice, time.Microsecond) // rounds up to 1ms: a run is never free
	if got := today(q, "alice"); got.CPUMillis != 2000 || got.Calls != 2 {
		t.Fatalf("alice today %+v, want 2 calls and 2000 ms", got)
	}
	if why := q.Take(alice); !strings.Contains(why, "CPU quota of 2s") {
		t.Fatalf("Take with 2s of 2s used: %q, want a CPU quota refusal", why)
	}

	// The role raises the CPU quota.
	q.Take(carol)
	q.AddCPU(carol, 4*time.Second)
	if why := q.Take(carol); why != "" {
		t.Fatalf("carol (ml, 5s) refused at 4s: %q", why)
	}
	q.AddCPU(carol, time.Second)
	if why := q.Take(carol); why == "" {
		t.Fatal("carol admitted with 5s of 5s used")
	}
}

// TestQuotasPersistAcrossRestart: Flush stores usage and a new Quotas on
// the same store (a restarted gateway) starts from today's totals.
func TestQuotasPersistAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	st, err := sqlite.Open(t.Context(), path, sqlite.Options{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock(day0)
	cfg := config.QuotaConfig{CallsPerDay: 5}
	q1 := newQuotas(t, cfg, st, clk.Now)
	for range 3 {
		if why := q1.Take(user("alice")); why != "" {
			t.Fatal(why)
		}
	}
	q1.AddCPU(user("alice"), 1234*time.Millisecond)
	if err := q1.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2, err := sqlite.Open(t.Context(), path, sqlite.Options{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	q2 := newQuotas(t, cfg, st2, clk.Now)
	if diff := cmp.Diff([]store.Usage{{Principal: "alice", Day: "2026-06-01", Calls: 3, CPUMillis: 1234}}, q2.Today()); diff != "" {
		t.Errorf("usage after restart (-want +got):\n%s", diff)
	}
	if n, _ := takes(q2, user("alice"), 10); n != 2 {
		t.Errorf("after restart %d more calls admitted, want 2 (5 - 3)", n)
	}
	// A flush does not count stored usage twice.
	for range 3 {
		if err := q2.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := today(q2, "alice"); got.Calls != 5 {
		t.Errorf("after repeated flushes alice has %d calls, want 5", got.Calls)
	}
	us, err := st2.UsageOn(t.Context(), "2026-06-01")
	if err != nil || len(us) != 1 || us[0].Calls != 5 || us[0].CPUMillis != 1234 {
		t.Errorf("stored usage %+v, %v; want 5 calls, 1234 ms", us, err)
	}
}

// TestQuotasShareAcrossReplicas: two gateways on one store add their usage
// and each sees the other's after a flush.
func TestQuotasShareAcrossReplicas(t *testing.T) {
	st := newMemStore()
	clk := newClock(day0)
	cfg := config.QuotaConfig{CallsPerDay: 5}
	a, b := newQuotas(t, cfg, st, clk.Now), newQuotas(t, cfg, st, clk.Now)
	takes(a, user("alice"), 3)
	takes(b, user("alice"), 2)
	for _, q := range []*abuse.Quotas{a, b, a} {
		if err := q.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for name, q := range map[string]*abuse.Quotas{"a": a, "b": b} {
		if got := today(q, "alice"); got.Calls != 5 {
			t.Errorf("replica %s sees %d calls, want 5", name, got.Calls)
		}
		if why := q.Take(user("alice")); why == "" {
			t.Errorf("replica %s admitted a 6th call", name)
		}
	}
}

func TestFlushFailureKeepsUsage(t *testing.T) {
	st := newMemStore()
	q := newQuotas(t, config.QuotaConfig{CallsPerDay: 10}, st, newClock(day0).Now)
	takes(q, user("alice"), 4)
	st.mu.Lock()
	st.failAdd = 1
	st.mu.Unlock()
	if err := q.Flush(t.Context()); !errors.Is(err, errStoreDown) {
		t.Fatalf("Flush with the store down: %v", err)
	}
	if got := today(q, "alice"); got.Calls != 4 {
		t.Fatalf("after a failed flush alice has %d calls, want 4 (usage must not be forgotten)", got.Calls)
	}
	takes(q, user("alice"), 2)
	if err := q.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := st.stored("2026-06-01", "alice"); got.Calls != 6 {
		t.Errorf("stored %d calls after the store healed, want 6", got.Calls)
	}
	if got := today(q, "alice"); got.Calls != 6 {
		t.Errorf("alice has %d calls, want 6 (counted once)", got.Calls)
	}
}

// TestDayRollover: quotas are per UTC day; usage of the old day is stored
// under that day.
func TestDayRollover(t *testing.T) {
	st := newMemStore()
	clk := newClock(time.Date(2026, 6, 1, 23, 59, 58, 0, time.UTC))
	q := newQuotas(t, config.QuotaConfig{CallsPerDay: 2, CPUSecondsPerDay: 1}, st, clk.Now)
	alice := user("alice")
	if n, why := takes(q, alice, 5); n != 2 || why == "" {
		t.Fatalf("day 1: admitted %d, refusal %q", n, why)
	}
	q.AddCPU(alice, time.Second)
	clk.Advance(3 * time.Second) // 2026-06-02 00:00:01 UTC
	if n, why := takes(q, alice, 1); n != 1 {
		t.Fatalf("a new day still refused: %q", why)
	}
	if diff := cmp.Diff([]store.Usage{{Principal: "alice", Day: "2026-06-02", Calls: 1}}, q.Today()); diff != "" {
		t.Errorf("today after rollover (-want +got):\n%s", diff)
	}
	if err := q.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := st.stored("2026-06-01", "alice"); got.Calls != 2 || got.CPUMillis != 1000 {
		t.Errorf("day 1 stored %+v, want 2 calls and 1000 ms", got)
	}
	if got := st.stored("2026-06-02", "alice"); got.Calls != 1 {
		t.Errorf("day 2 stored %+v, want 1 call", got)
	}
	// A time zone other than UTC does not matter: the day is UTC.
	clk2 := newClock(time.Date(2026, 6, 2, 1, 0, 0, 0, time.FixedZone("X", 5*3600))) // 2026-06-01 20:00 UTC
	q2 := newQuotas(t, config.QuotaConfig{}, newMemStore(), clk2.Now)
	q2.Take(alice)
	if got := today(q2, "alice"); got.Day != "2026-06-01" {
		t.Errorf("day %q, want the UTC day 2026-06-01", got.Day)
	}
}

// TestConcurrentTakeIsExact: concurrent Take never admits more than the
// quota (run with -race), also while flushes and CPU accounting run.
func TestConcurrentTakeIsExact(t *testing.T) {
	const limit, workers, each = 500, 16, 100
	st := newMemStore()
	q := newQuotas(t, config.QuotaConfig{CallsPerDay: limit}, st, newClock(day0).Now)
	var admitted atomic.Int64
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := q.Flush(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			p := user("alice")
			for range each {
				if q.Take(p) == "" {
					admitted.Add(1)
					q.AddCPU(p, time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	if got := admitted.Load(); got != limit {
		t.Fatalf("admitted %d of %d attempts, want exactly %d", got, workers*each, limit)
	}
	if err := q.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := st.stored("2026-06-01", "alice"); got.Calls != limit || got.CPUMillis != limit {
		t.Errorf("stored %+v, want %d calls and %d ms", got, limit, limit)
	}
	if got := today(q, "alice"); got.Calls != limit {
		t.Errorf("today %+v, want %d calls", got, limit)
	}
}
