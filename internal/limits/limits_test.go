package limits_test

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/limits"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// clock is a manual clock for the limiter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

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

// levels returns a Levels map with l at every sensitivity.
func levels(l config.ToolLimits) map[string]config.ToolLimits {
	return map[string]config.ToolLimits{"LOW": l, "MEDIUM": l, "HIGH": l, "CRITICAL": l}
}

func user(name string, roles ...string) *principal.Principal {
	return &principal.Principal{Name: name, Roles: roles}
}

func newLimiter(t testing.TB, cfg config.LimitsConfig, c *clock, opts ...limits.Option) *limits.Limiter {
	t.Helper()
	l, err := limits.New(cfg, c.Now, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func TestNew(t *testing.T) {
	valid := func() config.LimitsConfig { return config.DefaultLimits(config.ModeDevelopment) }
	tests := []struct {
		name    string
		cfg     func() config.LimitsConfig
		opts    []limits.Option
		wantErr bool
	}{
		{"defaults", valid, nil, false},
		{"production defaults", func() config.LimitsConfig { return config.DefaultLimits(config.ModeProduction) }, nil, false},
		{"zero principal is unlimited", func() config.LimitsConfig {
			c := valid()
			c.Principal = config.PrincipalLimits{}
			return c
		}, nil, false},
		{"missing level", func() config.LimitsConfig {
			c := valid()
			delete(c.Levels, "HIGH")
			return c
		}, nil, true},
		{"nil levels", func() config.LimitsConfig { return config.LimitsConfig{} }, nil, true},
		{"unknown level", func() config.LimitsConfig {
			c := valid()
			c.Levels["low"] = c.Levels["LOW"]
			return c
		}, nil, true},
		{"negative level rate", func() config.LimitsConfig {
			c := valid()
			c.Levels["LOW"] = config.ToolLimits{RatePerMinute: -1}
			return c
		}, nil, true},
		{"negative tool concurrency", func() config.LimitsConfig {
			c := valid()
			c.Tools = map[string]config.ToolLimits{"shell": {Concurrency: -1}}
			return c
		}, nil, true},
		{"NaN role rate", func() config.LimitsConfig {
			c := valid()
			c.Roles = map[string]config.ToolLimits{"dev": {RatePerMinute: math.NaN()}}
			return c
		}, nil, true},
		{"infinite principal rate", func() config.LimitsConfig {
			c := valid()
			c.Principal.RatePerMinute = math.Inf(1)
			return c
		}, nil, true},
		{"negative principal burst", func() config.LimitsConfig {
			c := valid()
			c.Principal.Burst = -1
			return c
		}, nil, true},
		{"max keys too small", valid, []limits.Option{limits.WithMaxKeys(1)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := limits.New(tt.cfg(), nil, tt.opts...)
			if tt.wantErr {
				if !errors.Is(err, limits.ErrInvalidConfig) {
					t.Fatalf("New error = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			// A nil clock means time.Now: the limiter works.
			release, r := l.Admit(user("alice"), "read_file", tool.Low)
			if r.Refused() {
				t.Fatalf("Admit refused: %+v", r)
			}
			release()
		})
	}
}

func TestEffective(t *testing.T) {
	def := config.DefaultLimits(config.ModeDevelopment)
	cfg := def
	cfg.Tools = map[string]config.ToolLimits{
		"shell": {RatePerMinute: 5, Concurrency: 2},
	}
	cfg.Roles = map[string]config.ToolLimits{
		"dev":     {RatePerMinute: 10, Timeout: 5 * time.Minute},
		"ops":     {RatePerMinute: 30, Burst: 3, PrincipalConcurrency: 1},
		"auditor": {MaxResponseBytes: 1},
	}
	with := func(l config.ToolLimits, f func(*config.ToolLimits)) config.ToolLimits {
		f(&l)
		return l
	}
	high := def.Levels["HIGH"]
	tests := []struct {
		name string
		cfg  config.LimitsConfig
		p    *principal.Principal
		tool string
		s    tool.Sensitivity
		want config.ToolLimits
	}{
		{"level default", cfg, user("alice"), "read_file", tool.Low, def.Levels["LOW"]},
		{"each level", cfg, user("alice"), "read_file", tool.Critical, def.Levels["CRITICAL"]},
		{"nil principal", cfg, nil, "read_file", tool.Medium, def.Levels["MEDIUM"]},
		{"tool override", cfg, user("alice"), "shell", tool.High, with(high, func(l *config.ToolLimits) {
			l.RatePerMinute, l.Concurrency = 5, 2
		})},
		{"role without override", cfg, user("alice", "viewer"), "shell", tool.High, with(high, func(l *config.ToolLimits) {
			l.RatePerMinute, l.Concurrency = 5, 2
		})},
		{"role over tool", cfg, user("alice", "dev"), "shell", tool.High, with(high, func(l *config.ToolLimits) {
			l.RatePerMinute, l.Concurrency, l.Timeout = 10, 2, 5*time.Minute
		})},
		{"most generous of several roles", cfg, user("alice", "auditor", "dev", "ops"), "shell", tool.High,
			with(high, func(l *config.ToolLimits) {
				l.RatePerMinute, l.Burst, l.Concurrency, l.PrincipalConcurrency = 30, 3, 2, 1
				l.Timeout, l.MaxResponseBytes = 5*time.Minute, 1
			})},
		{"most generous whatever the order", cfg, user("alice", "ops", "dev"), "shell", tool.High,
			with(high, func(l *config.ToolLimits) {
				l.RatePerMinute, l.Burst, l.Concurrency, l.PrincipalConcurrency, l.Timeout = 30, 3, 2, 1, 5*time.Minute
			})},
		{"role over level without tool override", cfg, user("alice", "ops"), "read_file", tool.Low,
			with(def.Levels["LOW"], func(l *config.ToolLimits) {
				l.RatePerMinute, l.Burst, l.PrincipalConcurrency = 30, 3, 1
			})},
		{"unknown sensitivity is critical", cfg, user("alice"), "read_file", tool.Sensitivity(0), def.Levels["CRITICAL"]},
		{"burst 0 with a rate is 1", config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 6})},
			user("alice"), "t", tool.Low, config.ToolLimits{RatePerMinute: 6, Burst: 1}},
		{"zero rate stays unlimited", config.LimitsConfig{Levels: levels(config.ToolLimits{Concurrency: 3})},
			user("alice"), "t", tool.Low, config.ToolLimits{Concurrency: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(t, tt.cfg, newClock())
			got := l.Effective(tt.p, tt.tool, tt.s)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Effective (-want +got):\n%s", diff)
			}
		})
	}
}

// step is one Admit in a sequence; the call is released at once.
type step struct {
	advance time.Duration
	who     string
	tool    string
	want    limits.Refusal
}

func TestAdmitRate(t *testing.T) {
	ptRefusal := func(perMin float64, after time.Duration) limits.Refusal {
		return limits.Refusal{Code: reason.RateLimited, Scope: limits.ScopePrincipalTool, Limit: perMin, RetryAfter: after}
	}
	pRefusal := func(perMin float64, after time.Duration) limits.Refusal {
		return limits.Refusal{Code: reason.RateLimited, Scope: limits.ScopePrincipal, Limit: perMin, RetryAfter: after}
	}
	tests := []struct {
		name  string
		cfg   config.LimitsConfig
		steps []step
	}{
		{
			name: "6 per minute burst 2",
			cfg:  config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 6, Burst: 2})},
			steps: []step{
				{0, "alice", "a", limits.Refusal{}},
				{0, "alice", "a", limits.Refusal{}},
				{0, "alice", "a", ptRefusal(6, 10*time.Second)},
				{0, "alice", "b", limits.Refusal{}}, // another tool
				{0, "bob", "a", limits.Refusal{}},   // another principal
				{9 * time.Second, "alice", "a", ptRefusal(6, time.Second)},
				{time.Second, "alice", "a", limits.Refusal{}},
				{0, "alice", "a", ptRefusal(6, 10*time.Second)},
				{0, "bob", "a", limits.Refusal{}}, // bob's bucket refilled to 2
				{0, "bob", "a", limits.Refusal{}},
				{0, "bob", "a", ptRefusal(6, 10*time.Second)},
			},
		},
		{
			name: "sub-second wait rounds up to 1s",
			cfg:  config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 600, Burst: 1})},
			steps: []step{
				{0, "alice", "a", limits.Refusal{}},
				{0, "alice", "a", ptRefusal(600, time.Second)},
				{100 * time.Millisecond, "alice", "a", limits.Refusal{}},
			},
		},
		{
			name: "principal bucket spans tools",
			cfg: config.LimitsConfig{Levels: levels(config.ToolLimits{}),
				Principal: config.PrincipalLimits{RatePerMinute: 60, Burst: 3}},
			steps: []step{
				{0, "alice", "a", limits.Refusal{}},
				{0, "alice", "b", limits.Refusal{}},
				{0, "alice", "c", limits.Refusal{}},
				{0, "alice", "d", pRefusal(60, time.Second)},
				{0, "bob", "a", limits.Refusal{}},
				{time.Second, "alice", "e", limits.Refusal{}},
				{0, "alice", "a", pRefusal(60, time.Second)},
			},
		},
		{
			name: "principal bucket checked before principal x tool",
			cfg: config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 6, Burst: 1}),
				Principal: config.PrincipalLimits{RatePerMinute: 12, Burst: 1}},
			steps: []step{
				{0, "alice", "a", limits.Refusal{}},
				{0, "alice", "a", pRefusal(12, 5*time.Second)},
				{5 * time.Second, "alice", "a", ptRefusal(6, 5*time.Second)},
				{0, "alice", "b", limits.Refusal{}}, // the refusal above returned the principal token
			},
		},
		{
			name: "role raises the rate",
			cfg: config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 6, Burst: 1}),
				Roles: map[string]config.ToolLimits{"ops": {Burst: 2}}},
			steps: []step{
				{0, "alice", "a", limits.Refusal{}},
				{0, "alice", "a", ptRefusal(6, 10*time.Second)},
				{0, "olga", "a", limits.Refusal{}},
				{0, "olga", "a", limits.Refusal{}},
				{0, "olga", "a", ptRefusal(6, 10*time.Second)},
			},
		},
	}
	roles := map[string][]string{"olga": {"ops"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			l := newLimiter(t, tt.cfg, c)
			for i, s := range tt.steps {
				c.Advance(s.advance)
				release, got := l.Admit(user(s.who, roles[s.who]...), s.tool, tool.Medium)
				release()
				if diff := cmp.Diff(s.want, got); diff != "" {
					t.Errorf("step %d (%s %s): Admit refusal (-want +got):\n%s", i, s.who, s.tool, diff)
				}
			}
		})
	}
}

// countAllowed admits and releases calls by p to toolName until one is
// refused (at most 100) and returns how many passed and the refusal.
func countAllowed(l *limits.Limiter, p *principal.Principal, toolName string) (int, limits.Refusal) {
	for n := 0; n < 100; n++ {
		release, r := l.Admit(p, toolName, tool.Low)
		release()
		if r.Refused() {
			return n, r
		}
	}
	return 100, limits.Refusal{}
}

func TestRefusalHoldsNothing(t *testing.T) {
	tests := []struct {
		name      string
		cfg       config.LimitsConfig
		held      string // tool of the call held while refused
		refused   string // tool of the refused call
		wantScope limits.Scope
		count     string // tool counted afterwards
		wantN     int
		wantLast  limits.Scope
	}{
		{
			name: "tool concurrency refusal keeps the principal x tool token",
			cfg:  config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 6, Burst: 2, Concurrency: 1})},
			held: "a", refused: "a", wantScope: limits.ScopeTool,
			count: "a", wantN: 1, wantLast: limits.ScopePrincipalTool,
		},
		{
			name: "principal x tool concurrency refusal keeps both tokens",
			cfg: config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 6, Burst: 3, PrincipalConcurrency: 1}),
				Principal: config.PrincipalLimits{RatePerMinute: 6, Burst: 10}},
			held: "a", refused: "a", wantScope: limits.ScopePrincipalToolConcurrency,
			count: "a", wantN: 2, wantLast: limits.ScopePrincipalTool,
		},
		{
			name: "principal concurrency refusal keeps both tokens",
			cfg: config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 6, Burst: 2}),
				Principal: config.PrincipalLimits{RatePerMinute: 6, Burst: 10, Concurrency: 1}},
			held: "a", refused: "b", wantScope: limits.ScopePrincipalConcurrency,
			count: "b", wantN: 2, wantLast: limits.ScopePrincipalTool,
		},
		{
			name: "principal x tool rate refusal keeps the principal token",
			cfg: config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 6, Burst: 1}),
				Principal: config.PrincipalLimits{RatePerMinute: 6, Burst: 2}},
			held: "a", refused: "a", wantScope: limits.ScopePrincipalTool,
			count: "b", wantN: 1, wantLast: limits.ScopePrincipal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(t, tt.cfg, newClock())
			alice := user("alice")
			release, r := l.Admit(alice, tt.held, tool.Low)
			if r.Refused() {
				t.Fatalf("first Admit refused: %+v", r)
			}
			if _, r := l.Admit(alice, tt.refused, tool.Low); r.Scope != tt.wantScope {
				t.Fatalf("second Admit scope = %q, want %q (%+v)", r.Scope, tt.wantScope, r)
			}
			release()
			n, last := countAllowed(l, alice, tt.count)
			if n != tt.wantN || last.Scope != tt.wantLast {
				t.Errorf("afterwards %d calls passed, then scope %q; want %d, then %q", n, last.Scope, tt.wantN, tt.wantLast)
			}
		})
	}
}

func TestAdmitConcurrency(t *testing.T) {
	const calls, limit = 100, 4
	tests := []struct {
		name   string
		cfg    config.LimitsConfig
		caller func(i int) (*principal.Principal, string)
		want   limits.Refusal
	}{
		{
			name: "tool, all principals",
			cfg:  config.LimitsConfig{Levels: levels(config.ToolLimits{Concurrency: limit})},
			caller: func(i int) (*principal.Principal, string) {
				return user(fmt.Sprintf("p%d", i%10)), "t"
			},
			want: limits.Refusal{Code: reason.ConcurrencyLimited, Scope: limits.ScopeTool, Limit: limit, RetryAfter: time.Second},
		},
		{
			name: "principal x tool",
			cfg:  config.LimitsConfig{Levels: levels(config.ToolLimits{PrincipalConcurrency: limit})},
			caller: func(i int) (*principal.Principal, string) {
				return user("alice"), "t"
			},
			want: limits.Refusal{Code: reason.ConcurrencyLimited, Scope: limits.ScopePrincipalToolConcurrency, Limit: limit, RetryAfter: time.Second},
		},
		{
			name: "principal, all tools",
			cfg: config.LimitsConfig{Levels: levels(config.ToolLimits{}),
				Principal: config.PrincipalLimits{Concurrency: limit}},
			caller: func(i int) (*principal.Principal, string) {
				return user("alice"), fmt.Sprintf("t%d", i%10)
			},
			want: limits.Refusal{Code: reason.ConcurrencyLimited, Scope: limits.ScopePrincipalConcurrency, Limit: limit, RetryAfter: time.Second},
		},
	}
	for _, tt := range tests {
		// Every admitted call holds until all calls have tried: exactly
		// limit run, the others are refused.
		t.Run(tt.name+"/held", func(t *testing.T) {
			l := newLimiter(t, tt.cfg, newClock())
			var running, maxRunning, ran atomic.Int64
			var tried, done sync.WaitGroup
			tried.Add(calls)
			hold := make(chan struct{})
			refusals := make(chan limits.Refusal, calls)
			for i := range calls {
				done.Go(func() {
					p, name := tt.caller(i)
					release, r := l.Admit(p, name, tool.Low)
					tried.Done()
					if r.Refused() {
						refusals <- r
						return
					}
					ran.Add(1)
					recordMax(&maxRunning, running.Add(1))
					<-hold
					running.Add(-1)
					release()
				})
			}
			tried.Wait()
			close(hold)
			done.Wait()
			close(refusals)
			if got := ran.Load(); got != limit {
				t.Errorf("%d calls ran, want %d", got, limit)
			}
			if got := maxRunning.Load(); got > limit {
				t.Errorf("%d calls ran at once, limit %d", got, limit)
			}
			n := 0
			for r := range refusals {
				n++
				if diff := cmp.Diff(tt.want, r); diff != "" {
					t.Errorf("refusal (-want +got):\n%s", diff)
					break
				}
			}
			if n != calls-limit {
				t.Errorf("%d refusals, want %d", n, calls-limit)
			}
			if got := l.Len(); got != 0 {
				t.Errorf("Len after all releases = %d, want 0 (counters deleted at zero)", got)
			}
		})
		// Every call retries until admitted, then releases: all run, never
		// more than limit at once.
		t.Run(tt.name+"/churn", func(t *testing.T) {
			l := newLimiter(t, tt.cfg, newClock())
			var running, maxRunning, ran atomic.Int64
			var done sync.WaitGroup
			start := make(chan struct{})
			for i := range calls {
				done.Go(func() {
					p, name := tt.caller(i)
					<-start
					for {
						release, r := l.Admit(p, name, tool.Low)
						if r.Refused() {
							if r != tt.want {
								t.Errorf("refusal %+v, want %+v", r, tt.want)
								return
							}
							runtime.Gosched()
							continue
						}
						ran.Add(1)
						recordMax(&maxRunning, running.Add(1))
						runtime.Gosched()
						running.Add(-1)
						release()
						return
					}
				})
			}
			close(start)
			done.Wait()
			if got := ran.Load(); got != calls {
				t.Errorf("%d calls ran, want %d", got, calls)
			}
			if got := maxRunning.Load(); got > limit {
				t.Errorf("%d calls ran at once, limit %d", got, limit)
			}
		})
	}
}

func recordMax(m *atomic.Int64, n int64) {
	for {
		old := m.Load()
		if n <= old || m.CompareAndSwap(old, n) {
			return
		}
	}
}

func TestReleaseOnce(t *testing.T) {
	l := newLimiter(t, config.LimitsConfig{Levels: levels(config.ToolLimits{Concurrency: 1}),
		Principal: config.PrincipalLimits{Concurrency: 1}}, newClock())
	alice, bob := user("alice"), user("bob")
	first, r := l.Admit(alice, "t", tool.Low)
	if r.Refused() {
		t.Fatalf("first Admit refused: %+v", r)
	}
	first()
	first() // a second release must not free the slot of the next call
	second, r := l.Admit(alice, "t", tool.Low)
	if r.Refused() {
		t.Fatalf("second Admit refused: %+v", r)
	}
	first()
	if _, r := l.Admit(bob, "t", tool.Low); r.Scope != limits.ScopeTool {
		t.Errorf("Admit while the second call runs: scope %q, want %q", r.Scope, limits.ScopeTool)
	}
	if _, r := l.Admit(alice, "u", tool.Low); r.Scope != limits.ScopePrincipalConcurrency {
		t.Errorf("Admit while the second call runs: scope %q, want %q", r.Scope, limits.ScopePrincipalConcurrency)
	}
	second()
	third, r := l.Admit(bob, "t", tool.Low)
	if r.Refused() {
		t.Fatalf("Admit after release refused: %+v", r)
	}
	third()
	if got := l.Len(); got != 0 {
		t.Errorf("Len = %d, want 0", got)
	}
}

func TestNilPrincipalRefused(t *testing.T) {
	l := newLimiter(t, config.DefaultLimits(config.ModeDevelopment), newClock())
	release, r := l.Admit(nil, "t", tool.Low)
	release()
	if r.Code != reason.Unauthenticated {
		t.Errorf("Admit(nil) code = %q, want %q", r.Code, reason.Unauthenticated)
	}
}

func TestSweep(t *testing.T) {
	cfg := config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 60, Burst: 2}),
		Tools: map[string]config.ToolLimits{"slow": {RatePerMinute: 1.0 / 60, Burst: 1}}} // 1 an hour
	c := newClock()
	l := newLimiter(t, cfg, c)
	admit := func(who, toolName string) {
		t.Helper()
		release, r := l.Admit(user(who), toolName, tool.Low)
		if r.Refused() {
			t.Fatalf("Admit(%s, %s) refused: %+v", who, toolName, r)
		}
		release()
	}
	for i := range 10 {
		admit(fmt.Sprintf("p%d", i), "t")
	}
	admit("sloth", "slow")
	if got := l.Len(); got != 22 {
		t.Fatalf("Len = %d, want 22", got)
	}
	c.Advance(5 * time.Minute)
	admit("zed", "t") // sweeps, but nothing is idle for 10 minutes yet
	if got := l.Len(); got != 24 {
		t.Fatalf("Len after 5 minutes = %d, want 24", got)
	}
	c.Advance(6 * time.Minute)
	admit("zed", "t") // sweeps p0-p9; zed is recent, sloth's bucket is not full
	if got := l.Len(); got != 4 {
		t.Errorf("Len after 11 minutes = %d, want 4", got)
	}
	for _, k := range []struct {
		name, tool string
		want       bool
	}{{"p0", "", false}, {"p9", "t", false}, {"zed", "t", true}, {"sloth", "slow", true}} {
		if got := l.HasKey(k.name, k.tool); got != k.want {
			t.Errorf("HasKey(%s, %s) = %v, want %v", k.name, k.tool, got, k.want)
		}
	}
	// An hour on, sloth's bucket is full again: zed and sloth are swept.
	c.Advance(59 * time.Minute)
	admit("p0", "t")
	if got := l.Len(); got != 2 {
		t.Errorf("Len after an hour = %d, want 2 (zed and sloth swept)", got)
	}
}

func TestCapacity(t *testing.T) {
	cfg := config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 60, Burst: 1})}
	capRefusal := limits.Refusal{Code: reason.RateLimited, Scope: limits.ScopeCapacity, Limit: 4, RetryAfter: time.Second}

	t.Run("full of active keys refuses new ones", func(t *testing.T) {
		c := newClock()
		l := newLimiter(t, cfg, c, limits.WithMaxKeys(4))
		relA, r := l.Admit(user("alice"), "t", tool.Low)
		if r.Refused() {
			t.Fatalf("alice refused: %+v", r)
		}
		relB, r := l.Admit(user("bob"), "t", tool.Low)
		if r.Refused() {
			t.Fatalf("bob refused: %+v", r)
		}
		_, r = l.Admit(user("carol"), "t", tool.Low)
		if diff := cmp.Diff(capRefusal, r); diff != "" {
			t.Errorf("carol while full (-want +got):\n%s", diff)
		}
		_, r = l.Admit(user("alice"), "u", tool.Low) // a new key for a known principal
		if diff := cmp.Diff(capRefusal, r); diff != "" {
			t.Errorf("alice × u while full (-want +got):\n%s", diff)
		}
		relA()
		relB()
		// Released, but the buckets are not full: evicting would reset them.
		_, r = l.Admit(user("carol"), "t", tool.Low)
		if diff := cmp.Diff(capRefusal, r); diff != "" {
			t.Errorf("carol with buckets not full (-want +got):\n%s", diff)
		}
		if got := l.Len(); got != 4 {
			t.Errorf("Len = %d, want 4", got)
		}
		c.Advance(2 * time.Second) // buckets refill
		relC, r := l.Admit(user("carol"), "t", tool.Low)
		if r.Refused() {
			t.Fatalf("carol after refill refused: %+v", r)
		}
		relC()
		if got := l.Len(); got > 4 {
			t.Errorf("Len = %d, over the cap 4", got)
		}
	})

	t.Run("least recently used evicted first", func(t *testing.T) {
		c := newClock()
		l := newLimiter(t, cfg, c, limits.WithMaxKeys(6))
		for _, who := range []string{"alice", "bob", "carol"} {
			release, r := l.Admit(user(who), "t", tool.Low)
			if r.Refused() {
				t.Fatalf("%s refused: %+v", who, r)
			}
			release()
			c.Advance(time.Second)
		}
		c.Advance(10 * time.Second)
		release, r := l.Admit(user("dave"), "t", tool.Low)
		if r.Refused() {
			t.Fatalf("dave refused: %+v", r)
		}
		release()
		got := map[string]bool{}
		for _, who := range []string{"alice", "bob", "carol", "dave"} {
			got[who] = l.HasKey(who, "")
		}
		want := map[string]bool{"alice": false, "bob": true, "carol": true, "dave": true}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("keys held (-want +got):\n%s", diff)
		}
		if got := l.Len(); got != 6 {
			t.Errorf("Len = %d, want 6", got)
		}
	})
}

// TestConcurrentUse runs Admit, release, Reload and the clock together
// (for -race) and checks the cap holds throughout.
func TestConcurrentUse(t *testing.T) {
	const maxKeys = 16
	c := newClock()
	cfgs := []config.LimitsConfig{
		{Levels: levels(config.ToolLimits{RatePerMinute: 600, Burst: 2, Concurrency: 3, PrincipalConcurrency: 1}),
			Principal: config.PrincipalLimits{RatePerMinute: 1200, Burst: 4, Concurrency: 2}},
		{Levels: levels(config.ToolLimits{Concurrency: 2})},
	}
	l := newLimiter(t, cfgs[0], c, limits.WithMaxKeys(maxKeys))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				p := user(fmt.Sprintf("p%d", (g*7+i)%20))
				release, r := l.Admit(p, fmt.Sprintf("t%d", i%3), tool.Low)
				switch {
				case !r.Refused():
					runtime.Gosched()
					release()
					release()
				case r.Code != reason.RateLimited && r.Code != reason.ConcurrencyLimited:
					t.Errorf("refusal %+v", r)
				}
				if n := l.Len(); n > maxKeys {
					t.Errorf("Len = %d, over the cap %d", n, maxKeys)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 100 {
			if err := l.Reload(cfgs[i%2]); err != nil {
				t.Errorf("Reload: %v", err)
			}
			c.Advance(time.Second)
		}
	})
	wg.Wait()
	if err := l.Reload(cfgs[0]); err != nil {
		t.Fatal(err)
	}
	c.Advance(longIdle)
	release, r := l.Admit(user("last"), "t0", tool.Low)
	if r.Refused() {
		t.Fatalf("Admit after the storm refused: %+v", r)
	}
	release()
	if got := l.Len(); got != 2 {
		t.Errorf("Len after everything was swept = %d, want 2", got)
	}
}

// longIdle is long enough for every idle entry to be swept.
const longIdle = limits.IdleAfter + limits.SweepEvery + time.Minute

func TestReload(t *testing.T) {
	c := newClock()
	l := newLimiter(t, config.LimitsConfig{Levels: levels(config.ToolLimits{Concurrency: 2})}, c)
	alice, bob := user("alice"), user("bob")
	held, r := l.Admit(alice, "t", tool.Low)
	if r.Refused() {
		t.Fatalf("Admit refused: %+v", r)
	}
	defer held()

	if err := l.Reload(config.LimitsConfig{Levels: levels(config.ToolLimits{Concurrency: 1})}); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	// The running call counts against the new limit.
	_, r = l.Admit(bob, "t", tool.Low)
	want := limits.Refusal{Code: reason.ConcurrencyLimited, Scope: limits.ScopeTool, Limit: 1, RetryAfter: time.Second}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("after lowering concurrency (-want +got):\n%s", diff)
	}

	newCfg := config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 6, Burst: 1, Concurrency: 3})}
	if err := l.Reload(newCfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	n, r := countAllowed(l, bob, "t")
	want = limits.Refusal{Code: reason.RateLimited, Scope: limits.ScopePrincipalTool, Limit: 6, RetryAfter: 10 * time.Second}
	if diff := cmp.Diff(want, r); n != 1 || diff != "" {
		t.Errorf("after adding a rate: %d calls passed, want 1; refusal (-want +got):\n%s", n, diff)
	}

	// Raising the burst keeps the bucket's tokens (none) and refills at the new rate.
	if err := l.Reload(config.LimitsConfig{Levels: levels(config.ToolLimits{RatePerMinute: 60, Burst: 5})}); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	c.Advance(2 * time.Second)
	if n, _ := countAllowed(l, bob, "t"); n != 2 {
		t.Errorf("after raising the rate: %d calls passed, want 2", n)
	}

	if err := l.Reload(config.LimitsConfig{}); !errors.Is(err, limits.ErrInvalidConfig) {
		t.Errorf("Reload(invalid) error = %v, want ErrInvalidConfig", err)
	}
	if got := l.Effective(bob, "t", tool.Low).RatePerMinute; got != 60 {
		t.Errorf("after a failed Reload the rate is %v, want 60 (unchanged)", got)
	}
}

func BenchmarkAdmit(b *testing.B) {
	const principals, tools = 10_000, 8
	l, err := limits.New(config.LimitsConfig{
		Levels:    levels(config.ToolLimits{RatePerMinute: 1e9, Burst: 1_000_000, Concurrency: 1_000_000, PrincipalConcurrency: 1000}),
		Roles:     map[string]config.ToolLimits{"dev": {Timeout: time.Minute}},
		Principal: config.PrincipalLimits{RatePerMinute: 1e9, Burst: 1_000_000, Concurrency: 1000},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ps := make([]*principal.Principal, principals)
	for i := range ps {
		ps[i] = user(fmt.Sprintf("user-%d", i), "dev", "viewer")
	}
	names := make([]string, tools)
	for i := range names {
		names[i] = fmt.Sprintf("tool_%d", i)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		for pb.Next() {
			i++
			release, r := l.Admit(ps[i%principals], names[(i/principals)%tools], tool.Medium)
			if r.Refused() {
				b.Errorf("refused: %+v", r)
				return
			}
			release()
		}
	})
}
