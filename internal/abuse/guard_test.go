package abuse_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/limits"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/violation"
)

// sink records alerts.
type sink struct {
	mu     sync.Mutex
	alerts []alert.Alert
}

func (s *sink) Alert(_ context.Context, a alert.Alert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alerts = append(s.alerts, a)
}

func (s *sink) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range s.alerts {
		out = append(out, a.Kind)
	}
	return out
}

// nopAudit accepts every event.
type nopAudit struct{}

func (nopAudit) Emit(context.Context, *audit.Event) error { return nil }

// guardFixture is a guard over a real limiter, quotas and violation
// engine; the limiter and the quotas have separate clocks.
type guardFixture struct {
	g        *abuse.Guard
	quotas   *abuse.Quotas
	eng      *violation.Engine
	st       *memStore
	sink     *sink
	limClock *clock
	qClock   *clock
}

// unlimitedLevels lifts every limit of every level, so that a test sets
// only the limit it is about.
func unlimitedLevels() config.LimitsConfig {
	l := config.ToolLimits{Timeout: time.Minute, MaxArgBytes: 1 << 20, MaxResponseBytes: 1 << 20}
	return config.LimitsConfig{Levels: map[string]config.ToolLimits{"LOW": l, "MEDIUM": l, "HIGH": l, "CRITICAL": l}}
}

func newGuard(t *testing.T, lc config.LimitsConfig, vc config.ViolationsConfig) *guardFixture {
	t.Helper()
	f := &guardFixture{st: newMemStore(), sink: &sink{}, limClock: newClock(day0), qClock: newClock(day0)}
	lim, err := limits.New(lc, f.limClock.Now)
	if err != nil {
		t.Fatal(err)
	}
	f.quotas = newQuotas(t, lc.Quota, f.st, f.qClock.Now)
	f.eng, err = violation.New(t.Context(), vc, violation.Deps{Store: f.st, Audit: nopAudit{}, Alerts: f.sink,
		Logger: discard(), Now: f.limClock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if f.eng != nil {
			f.closeEngine(t)
		}
	})
	if f.g, err = abuse.New(lim, f.quotas, f.eng, discard()); err != nil {
		t.Fatal(err)
	}
	return f
}

// closeEngine flushes the violation records to the store.
func (f *guardFixture) closeEngine(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.eng.Close(ctx); err != nil {
		t.Fatal(err)
	}
	f.eng = nil
}

var fileInfo = &tool.Definition{Name: "file_info", Sensitivity: tool.Low}

func TestNewRejectsNil(t *testing.T) {
	f := newGuard(t, unlimitedLevels(), config.DefaultViolations())
	lim, _ := limits.New(unlimitedLevels(), nil)
	if _, err := abuse.New(nil, f.quotas, f.eng, discard()); err == nil {
		t.Error("nil limiter accepted")
	}
	if _, err := abuse.New(lim, nil, f.eng, discard()); err == nil {
		t.Error("nil quotas accepted")
	}
	if _, err := abuse.New(lim, f.quotas, nil, discard()); err == nil {
		t.Error("nil engine accepted")
	}
	if _, err := abuse.New(lim, f.quotas, f.eng, nil); err == nil {
		t.Error("nil logger accepted")
	}
}

func TestAdmitMapsRefusals(t *testing.T) {
	tests := []struct {
		name     string
		mod      func(*config.LimitsConfig)
		hold     int // calls admitted (and held) before the refused one
		code     reason.Code
		typ      audit.Type
		retry    string // in the client message; "" = the generic message
		inDetail string
	}{
		{"tool rate", func(c *config.LimitsConfig) {
			c.Tools = map[string]config.ToolLimits{"file_info": {RatePerMinute: 6, Burst: 2}}
		}, 2, reason.RateLimited, audit.LimitRate, "retry after 10s", "scope principal_tool, limit 6"},
		{"principal rate", func(c *config.LimitsConfig) {
			c.Principal = config.PrincipalLimits{RatePerMinute: 2, Burst: 3}
		}, 3, reason.RateLimited, audit.LimitRate, "retry after 30s", "scope principal, limit 2"},
		{"tool concurrency", func(c *config.LimitsConfig) {
			c.Tools = map[string]config.ToolLimits{"file_info": {Concurrency: 2}}
		}, 2, reason.ConcurrencyLimited, audit.LimitConcurrency, "retry after 1s", "scope tool, limit 2"},
		{"principal concurrency", func(c *config.LimitsConfig) {
			c.Principal = config.PrincipalLimits{Concurrency: 3}
		}, 3, reason.ConcurrencyLimited, audit.LimitConcurrency, "retry after 1s", "scope principal_concurrency, limit 3"},
		{"daily quota", func(c *config.LimitsConfig) {
			c.Quota = config.QuotaConfig{CallsPerDay: 4}
		}, 4, reason.QuotaExceeded, audit.LimitQuota, "", "daily call quota of 4 used up"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lc := unlimitedLevels()
			tc.mod(&lc)
			f := newGuard(t, lc, config.DefaultViolations())
			p := user("alice", "developer")
			var releases []func()
			for i := range tc.hold {
				rel, r := f.g.Admit(t.Context(), p, fileInfo)
				if r != nil || rel == nil {
					t.Fatalf("call %d refused: %+v", i+1, r)
				}
				releases = append(releases, rel)
			}
			rel, r := f.g.Admit(t.Context(), p, fileInfo)
			if r == nil {
				t.Fatal("admitted past the limit")
			}
			if rel != nil {
				t.Error("a refusal returned a release func")
			}
			if r.Code != tc.code || r.Type != tc.typ {
				t.Errorf("refusal %s/%s, want %s/%s", r.Code, r.Type, tc.code, tc.typ)
			}
			if tc.retry == "" && r.Message != "" {
				t.Errorf("message %q, want the generic one", r.Message)
			}
			if tc.retry != "" && (!strings.Contains(r.Message, tc.retry) || !strings.HasPrefix(r.Message, reason.Message(tc.code))) {
				t.Errorf("message %q, want %q and the generic text", r.Message, tc.retry)
			}
			if !strings.Contains(r.Detail, tc.inDetail) {
				t.Errorf("detail %q lacks %q", r.Detail, tc.inDetail)
			}
			// Another principal is not affected by per-principal limits.
			if strings.HasPrefix(tc.name, "principal") || tc.name == "daily quota" || tc.name == "tool rate" {
				if rel, r := f.g.Admit(t.Context(), user("bob"), fileInfo); r != nil {
					t.Errorf("bob refused by alice's limit: %+v", r)
				} else {
					rel()
				}
			}
			// Concurrency slots come back on release.
			if tc.code == reason.ConcurrencyLimited {
				releases[0]()
				releases[0]() // idempotent
				rel, r := f.g.Admit(t.Context(), p, fileInfo)
				if r != nil {
					t.Fatalf("refused after a release: %+v", r)
				}
				releases[0] = rel
				if _, r := f.g.Admit(t.Context(), p, fileInfo); r == nil {
					t.Error("a double release freed two slots")
				}
			}
			for _, rel := range releases {
				rel()
			}
		})
	}
}

// TestQuotaRefusalTakesNoRateToken: a call refused by the quota leaves the
// rate buckets as they were. The quota clock moves to the next day while
// the limiter's stands still, so a refill cannot hide a taken token.
func TestQuotaRefusalTakesNoRateToken(t *testing.T) {
	lc := unlimitedLevels()
	lc.Tools = map[string]config.ToolLimits{"file_info": {RatePerMinute: 1, Burst: 2}}
	lc.Quota = config.QuotaConfig{CallsPerDay: 1}
	f := newGuard(t, lc, config.DefaultViolations())
	p := user("alice")
	rel, r := f.g.Admit(t.Context(), p, fileInfo)
	if r != nil {
		t.Fatal(r)
	}
	rel()
	for range 5 {
		if _, r := f.g.Admit(t.Context(), p, fileInfo); r == nil || r.Code != reason.QuotaExceeded {
			t.Fatalf("want QUOTA_EXCEEDED, got %+v", r)
		}
	}
	f.qClock.Advance(24 * time.Hour)
	rel, r = f.g.Admit(t.Context(), p, fileInfo)
	if r != nil {
		t.Fatalf("the second token of the bucket is gone after quota refusals: %+v", r)
	}
	rel()
}

// TestLimitRefusalTakesNoQuota: a call refused by a rate or concurrency
// limit never ran and does not use up the daily quota. (As it is, Admit
// counts the quota before asking the limiter, so a client retrying into
// RATE_LIMITED spends its day's quota on calls that were refused: with a
// quota of 5, five rate-limited retries leave it QUOTA_EXCEEDED without a
// single call having run.)
func TestLimitRefusalTakesNoQuota(t *testing.T) {
	lc := unlimitedLevels()
	lc.Tools = map[string]config.ToolLimits{"file_info": {RatePerMinute: 1, Burst: 1}}
	lc.Quota = config.QuotaConfig{CallsPerDay: 5}
	f := newGuard(t, lc, config.DefaultViolations())
	p := user("alice")
	rel, r := f.g.Admit(t.Context(), p, fileInfo)
	if r != nil {
		t.Fatal(r)
	}
	rel()
	for range 10 {
		if _, r := f.g.Admit(t.Context(), p, fileInfo); r == nil || r.Code != reason.RateLimited {
			t.Fatalf("want RATE_LIMITED, got %+v", r)
		}
	}
	if got := today(f.quotas, "alice"); got.Calls != 1 {
		t.Errorf("quota usage %d calls after 1 admitted and 10 rate-limited, want 1", got.Calls)
	}
	f.limClock.Advance(time.Minute)
	if _, r := f.g.Admit(t.Context(), p, fileInfo); r != nil {
		t.Errorf("after the bucket refilled: %s (%s), want admitted (1 of 5 calls used)", r.Code, r.Detail)
	}
}

func TestLimits(t *testing.T) {
	lc := unlimitedLevels()
	lc.Tools = map[string]config.ToolLimits{"file_info": {Timeout: 7 * time.Second, MaxResponseBytes: 99}}
	lc.Roles = map[string]config.ToolLimits{"big": {MaxResponseBytes: 1000, MaxArgBytes: 5 << 20}}
	f := newGuard(t, lc, config.DefaultViolations())
	got := f.g.Limits(user("alice"), fileInfo)
	if got != (gateway.CallLimits{Timeout: 7 * time.Second, MaxArgBytes: 1 << 20, MaxResponseBytes: 99}) {
		t.Errorf("Limits = %+v", got)
	}
	got = f.g.Limits(user("carol", "big"), fileInfo)
	if got != (gateway.CallLimits{Timeout: 7 * time.Second, MaxArgBytes: 5 << 20, MaxResponseBytes: 1000}) {
		t.Errorf("Limits with a role override = %+v", got)
	}
}

func TestQuarantinedRefusal(t *testing.T) {
	f := newGuard(t, unlimitedLevels(), config.DefaultViolations())
	if r := f.g.Quarantined(user("alice"), "sess", "plug"); r != nil {
		t.Fatalf("refused before any quarantine: %+v", r)
	}
	if r := f.g.Quarantined(nil, "", ""); r != nil {
		t.Fatalf("nil principal refused: %+v", r)
	}
	q, err := f.eng.Quarantine(t.Context(), store.QuarantinePlugin, "plug", "test", "admin")
	if err != nil {
		t.Fatal(err)
	}
	r := f.g.Quarantined(nil, "", "plug")
	if r == nil || r.Code != reason.PermissionDenied || r.Type != audit.QuarantineRefused || r.Message != "" ||
		!strings.Contains(r.Detail, q.ID) {
		t.Fatalf("refusal %+v; want PERMISSION_DENIED, quarantine.refused, the generic message and the id in the detail", r)
	}
}

// TestDoneRecords: Done turns misbehaviour codes into violations (and
// quarantine at threshold), counts CPU of calls that ran and feeds the
// call rules.
func TestDoneRecords(t *testing.T) {
	vc := config.DefaultViolations()
	vc.Rules = config.AnomalyRules{DistinctTools: config.CountRule{Count: 2, Window: time.Minute}}
	f := newGuard(t, unlimitedLevels(), vc)
	alice := user("alice", "developer")
	ctx := t.Context()

	// Calls are admitted (counted against the quota) before they run.
	for range 2 {
		rel, r := f.g.Admit(ctx, alice, fileInfo)
		if r != nil {
			t.Fatal(r)
		}
		rel()
	}
	// A call that ran: CPU counted, no violation.
	f.g.Done(ctx, gateway.Outcome{Principal: alice, Session: "s1", Tool: "execute_python", Ran: true, CPUTime: 1500 * time.Millisecond})
	// A tool failure that is not misbehaviour.
	f.g.Done(ctx, gateway.Outcome{Principal: alice, Tool: "read_file", Ran: true, Code: reason.NotFound, Detail: "no such file"})
	// Refused before running: CPU is not counted.
	f.g.Done(ctx, gateway.Outcome{Principal: alice, Tool: "execute_python", Code: reason.PermissionDenied, CPUTime: time.Hour})
	if got := today(f.quotas, "alice"); got.CPUMillis != 1500 {
		t.Errorf("CPU counted %d ms, want 1500", got.CPUMillis)
	}
	if diff := strings.Join(f.sink.kinds(), ","); diff != violation.KindDistinctTools {
		t.Errorf("alerts %q, want one distinct-tools alert (execute_python and read_file ran)", diff)
	}
	// Nil principal (refused before authentication) does not panic.
	f.g.Done(ctx, gateway.Outcome{Tool: "x", Code: reason.Unauthenticated})

	// Nine path escapes, then the tenth quarantines (with the denial above,
	// which is MEDIUM and does not count).
	for i := range 10 {
		if r := f.g.Quarantined(alice, "", ""); r != nil {
			t.Fatalf("quarantined after %d path escapes", i)
		}
		f.g.Done(ctx, gateway.Outcome{Principal: alice, Session: "s1", RequestID: "req-9", Tool: "read_file",
			Server: "", Code: reason.PathOutsideWorkspace, Detail: "../../etc/passwd"})
	}
	if r := f.g.Quarantined(alice, "", ""); r == nil {
		t.Fatal("10 path escapes through Done did not quarantine")
	}
	f.g.Done(ctx, gateway.Outcome{Principal: user("bob"), Tool: "github__search", Server: "github",
		Code: reason.SandboxViolation, Detail: "seccomp"})

	f.closeEngine(t)
	vs, _ := f.st.ListViolations(ctx, store.ViolationQuery{})
	count := map[string]int{}
	for _, v := range vs {
		count[v.Type+"/"+v.Severity.String()]++
	}
	want := map[string]int{"path_escape/HIGH": 10, "policy_denial/MEDIUM": 1, "auth_failure/MEDIUM": 1, "sandbox_violation/HIGH": 1}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%s violations: %d, want %d (all: %v)", k, count[k], n, count)
		}
	}
	if len(vs) != 13 {
		t.Errorf("%d violations stored, want 13 (NOT_FOUND and success are not violations)", len(vs))
	}
	pe, _ := f.st.ListViolations(ctx, store.ViolationQuery{Type: violation.PathEscape})
	if v := pe[0]; v.Principal != "alice" || v.Session != "s1" || v.RequestID != "req-9" || v.Tool != "read_file" ||
		v.Detail != "PATH_OUTSIDE_WORKSPACE: ../../etc/passwd" || v.ID == "" || v.Time.IsZero() {
		t.Errorf("path escape violation %+v", v)
	}
	sb, _ := f.st.ListViolations(ctx, store.ViolationQuery{Principal: "bob"})
	if len(sb) != 1 || sb[0].Plugin != "github" || sb[0].Tool != "github__search" {
		t.Errorf("bob's violations %+v, want the plugin recorded", sb)
	}
}
