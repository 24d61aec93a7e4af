package violation_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlite"
	"github.com/portcullis/portcullis/internal/violation"
)

// clock is a manually advanced clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)} }

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

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

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

// kinds returns the kinds of the alerts raised so far, in order.
func (s *sink) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range s.alerts {
		out = append(out, a.Kind)
	}
	return out
}

func (s *sink) ofKind(kind string) []alert.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []alert.Alert
	for _, a := range s.alerts {
		if a.Kind == kind {
			out = append(out, a)
		}
	}
	return out
}

// emitter records audit events.
type emitter struct {
	mu     sync.Mutex
	events []audit.Event
}

func (e *emitter) Emit(_ context.Context, ev *audit.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, *ev)
	return nil
}

func (e *emitter) ofType(t audit.Type) []audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []audit.Event
	for _, ev := range e.events {
		if ev.Type == t {
			out = append(out, ev)
		}
	}
	return out
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{Logger: discard()})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fixture is an engine over a fresh SQLite store with recording fakes.
type fixture struct {
	eng    *violation.Engine
	st     store.AbuseStore
	clk    *clock
	sink   *sink
	audit  *emitter
	closed bool
}

// quietRules is a configuration with every anomaly rule off and the
// quarantine thresholds of the embedded defaults.
func quietRules() config.ViolationsConfig {
	cfg := config.DefaultViolations()
	cfg.Rules = config.AnomalyRules{}
	return cfg
}

// newFixture starts an engine; mod may replace dependencies (a nil Store
// after mod gets a fresh SQLite file). The engine is closed at cleanup
// unless the test closed it.
func newFixture(t *testing.T, cfg config.ViolationsConfig, mod func(*violation.Deps)) *fixture {
	t.Helper()
	f := &fixture{clk: newClock(), sink: &sink{}, audit: &emitter{}}
	d := violation.Deps{Audit: f.audit, Alerts: f.sink, Logger: discard(), Now: f.clk.Now}
	if mod != nil {
		mod(&d)
	}
	if d.Store == nil {
		d.Store = openStore(t, filepath.Join(t.TempDir(), "v.db"))
	}
	f.st = d.Store
	eng, err := violation.New(t.Context(), cfg, d)
	if err != nil {
		t.Fatalf("violation.New: %v", err)
	}
	f.eng = eng
	t.Cleanup(func() {
		if !f.closed {
			if err := f.close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	return f
}

func (f *fixture) close() error {
	f.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return f.eng.Close(ctx)
}

func (f *fixture) record(principal string, sev store.Severity) {
	f.eng.Record(context.Background(), store.Violation{Principal: principal, Tool: "read_file",
		Type: violation.PathEscape, Severity: sev})
}

func (f *fixture) principalQuarantined(name string) bool {
	_, ok := f.eng.Quarantined(name, "", "")
	return ok
}

func TestNewRejectsBadDeps(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "v.db"))
	ok := violation.Deps{Store: st, Audit: &emitter{}, Alerts: &sink{}, Logger: discard()}
	tests := []struct {
		name string
		mod  func(*violation.Deps, *config.ViolationsConfig)
	}{
		{"nil store", func(d *violation.Deps, _ *config.ViolationsConfig) { d.Store = nil }},
		{"nil audit", func(d *violation.Deps, _ *config.ViolationsConfig) { d.Audit = nil }},
		{"nil alerts", func(d *violation.Deps, _ *config.ViolationsConfig) { d.Alerts = nil }},
		{"nil logger", func(d *violation.Deps, _ *config.ViolationsConfig) { d.Logger = nil }},
		{"bad severity", func(_ *violation.Deps, c *config.ViolationsConfig) { c.Quarantine.MinSeverity = "SEVERE" }},
		{"bad hours", func(_ *violation.Deps, c *config.ViolationsConfig) { c.Rules.UsualHours = "9-5" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, cfg := ok, config.DefaultViolations()
			tc.mod(&d, &cfg)
			if e, err := violation.New(t.Context(), cfg, d); err == nil {
				e.Close(t.Context())
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestFromReason(t *testing.T) {
	tests := []struct {
		code reason.Code
		typ  string
		sev  store.Severity
		ok   bool
	}{
		{reason.PermissionDenied, violation.PolicyDenial, store.SeverityMedium, true},
		{reason.PathOutsideWorkspace, violation.PathEscape, store.SeverityHigh, true},
		{reason.PathForbidden, violation.PathEscape, store.SeverityHigh, true},
		{reason.SandboxViolation, violation.SandboxViolation, store.SeverityHigh, true},
		{reason.RateLimited, violation.RateLimit, store.SeverityLow, true},
		{reason.ConcurrencyLimited, violation.RateLimit, store.SeverityLow, true},
		{reason.QuotaExceeded, violation.RateLimit, store.SeverityLow, true},
		{reason.InvalidArguments, violation.SuspiciousArgument, store.SeverityLow, true},
		{reason.TooLarge, violation.SuspiciousArgument, store.SeverityLow, true},
		{reason.Unauthenticated, violation.AuthFailure, store.SeverityMedium, true},
		// Honest failures are not misbehaviour.
		{reason.NotFound, "", 0, false},
		{reason.Timeout, "", 0, false},
		{reason.NonZeroExit, "", 0, false},
		{reason.ToolFailed, "", 0, false},
		{"", "", 0, false},
	}
	for _, tc := range tests {
		typ, sev, ok := violation.FromReason(tc.code)
		if typ != tc.typ || sev != tc.sev || ok != tc.ok {
			t.Errorf("FromReason(%q) = %q, %v, %v; want %q, %v, %v", tc.code, typ, sev, ok, tc.typ, tc.sev, tc.ok)
		}
		if ok && !slices.Contains(violation.Types, typ) {
			t.Errorf("FromReason(%q) type %q is not in Types", tc.code, typ)
		}
	}
}

// TestPrincipalThreshold: the default principal threshold is 10 violations
// of HIGH or worse within 10 minutes, on a sliding window.
func TestPrincipalThreshold(t *testing.T) {
	type step struct {
		n       int
		sev     store.Severity
		advance time.Duration // before each of the n violations
	}
	tests := []struct {
		name  string
		steps []step
		want  bool
	}{
		{"10 HIGH at once", []step{{10, store.SeverityHigh, 0}}, true},
		{"10 within the window", []step{{10, store.SeverityHigh, 66 * time.Second}}, true}, // last is 9m54s after the first
		{"9 HIGH only", []step{{9, store.SeverityHigh, 0}}, false},
		{"9, window passes, 9", []step{{9, store.SeverityHigh, 0}, {1, store.SeverityHigh, 10*time.Minute + time.Second}, {8, store.SeverityHigh, 0}}, false},
		{"10 spread over more than the window", []step{{10, store.SeverityHigh, 67 * time.Second}}, false}, // 10m3s
		{"CRITICAL counts", []step{{5, store.SeverityCritical, 0}, {5, store.SeverityHigh, 0}}, true},
		{"MEDIUM does not count", []step{{9, store.SeverityHigh, 0}, {30, store.SeverityMedium, 0}}, false},
		{"LOW does not count", []step{{9, store.SeverityHigh, 0}, {30, store.SeverityLow, 0}}, false},
		{"MEDIUM between does not break the count", []step{{5, store.SeverityHigh, 0}, {30, store.SeverityMedium, 0}, {5, store.SeverityHigh, 0}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, quietRules(), nil)
			total := 0
			for _, s := range tc.steps {
				for range s.n {
					f.clk.Advance(s.advance)
					if f.principalQuarantined("alice") {
						t.Fatalf("quarantined after %d violations", total)
					}
					f.record("alice", s.sev)
					total++
				}
			}
			if got := f.principalQuarantined("alice"); got != tc.want {
				t.Fatalf("quarantined = %v, want %v", got, tc.want)
			}
			creates := f.audit.ofType(audit.QuarantineCreate)
			alerts := f.sink.ofKind(violation.KindQuarantine)
			if !tc.want {
				if len(creates) != 0 || len(alerts) != 0 {
					t.Fatalf("no quarantine, yet %d quarantine.create events and %d alerts", len(creates), len(alerts))
				}
				return
			}
			q, _ := f.eng.Quarantined("alice", "", "")
			if len(creates) != 1 {
				t.Fatalf("quarantine.create events: %d, want 1", len(creates))
			}
			if c := creates[0]; c.Principal != audit.SystemPrincipal || c.Status != audit.StatusOK ||
				!strings.Contains(c.Detail, q.ID) || !strings.Contains(c.Detail, "alice") {
				t.Errorf("quarantine.create event %+v", c)
			}
			if len(alerts) != 1 || alerts[0].Severity != alert.Critical || alerts[0].Subject != "principal:alice" {
				t.Errorf("quarantine alerts %+v, want one CRITICAL for principal:alice", alerts)
			}
			if q.Kind != store.QuarantinePrincipal || q.Subject != "alice" || q.CreatedBy != audit.SystemPrincipal ||
				!strings.HasPrefix(q.ID, "qua_") || q.Reason == "" {
				t.Errorf("quarantine %+v", q)
			}
			// In force in the store too (survives restart).
			stored, err := f.st.ListQuarantines(t.Context(), false)
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) != 1 || stored[0].ID != q.ID {
				t.Errorf("stored quarantines %+v, want %s", stored, q.ID)
			}
			// More violations do not quarantine again.
			for range 15 {
				f.record("alice", store.SeverityHigh)
			}
			if n := len(f.audit.ofType(audit.QuarantineCreate)); n != 1 {
				t.Errorf("quarantine.create events after more violations: %d, want 1", n)
			}
		})
	}
}

// TestOtherPrincipalsUnaffected: counting is per principal.
func TestOtherPrincipalsUnaffected(t *testing.T) {
	f := newFixture(t, quietRules(), nil)
	for i := range 18 {
		f.record([]string{"alice", "bob"}[i%2], store.SeverityHigh)
	}
	if f.principalQuarantined("alice") || f.principalQuarantined("bob") {
		t.Fatal("9 violations each quarantined someone")
	}
	f.record("bob", store.SeverityHigh)
	if f.principalQuarantined("alice") || !f.principalQuarantined("bob") {
		t.Fatal("bob's 10th violation should quarantine bob only")
	}
}

func TestMinSeverityConfigurable(t *testing.T) {
	cfg := quietRules()
	cfg.Quarantine.MinSeverity = "medium"
	cfg.Quarantine.Principal = config.CountRule{Count: 3, Window: time.Minute}
	f := newFixture(t, cfg, nil)
	f.record("alice", store.SeverityLow)
	f.record("alice", store.SeverityLow)
	f.record("alice", store.SeverityLow)
	if f.principalQuarantined("alice") {
		t.Fatal("LOW counted with min_severity MEDIUM")
	}
	f.record("alice", store.SeverityMedium)
	f.record("alice", store.SeverityMedium)
	f.record("alice", store.SeverityHigh)
	if !f.principalQuarantined("alice") {
		t.Fatal("3 MEDIUM-or-worse did not quarantine with min_severity MEDIUM")
	}
}

func TestSessionAndPluginQuarantine(t *testing.T) {
	thresholds := map[string]int{"maxplug": 1, "strictplug": 3}
	f := newFixture(t, quietRules(), func(d *violation.Deps) {
		d.PluginThreshold = func(p string) int {
			if n, ok := thresholds[p]; ok {
				return n
			}
			return 5
		}
	})
	rec := func(session, plugin string, sev store.Severity) {
		f.eng.Record(t.Context(), store.Violation{Session: session, Plugin: plugin, Tool: "x",
			Type: violation.SandboxViolation, Severity: sev})
	}
	q := func(session, plugin string) bool { _, ok := f.eng.Quarantined("", session, plugin); return ok }

	// Session: 5 in 10 minutes (default).
	for i := range 4 {
		rec("sess-1", "", store.SeverityHigh)
		if q("sess-1", "") {
			t.Fatalf("session quarantined after %d", i+1)
		}
	}
	rec("sess-1", "", store.SeverityMedium)
	if q("sess-1", "") {
		t.Fatal("a MEDIUM violation counted toward the session threshold")
	}
	rec("sess-1", "", store.SeverityHigh)
	if !q("sess-1", "") {
		t.Fatal("5 HIGH violations did not quarantine the session")
	}
	if q("sess-2", "") {
		t.Fatal("another session is quarantined")
	}

	// Plugins by security level: maximum quarantines at the first.
	rec("", "maxplug", store.SeverityMedium)
	if q("", "maxplug") {
		t.Fatal("a MEDIUM violation quarantined a maximum-level plugin")
	}
	rec("", "maxplug", store.SeverityHigh)
	if !q("", "maxplug") {
		t.Fatal("one HIGH violation did not quarantine a maximum-level plugin")
	}
	for i := range 2 {
		rec("", "strictplug", store.SeverityHigh)
		if q("", "strictplug") {
			t.Fatalf("strict plugin quarantined after %d", i+1)
		}
	}
	rec("", "strictplug", store.SeverityHigh)
	if !q("", "strictplug") {
		t.Fatal("3 HIGH violations did not quarantine a strict plugin")
	}
	// Outside the plugin window the count starts over.
	for range 4 {
		rec("", "stdplug", store.SeverityHigh)
	}
	f.clk.Advance(config.DefaultViolations().Quarantine.PluginWindow)
	rec("", "stdplug", store.SeverityHigh)
	if q("", "stdplug") {
		t.Fatal("standard plugin quarantined by violations spread over more than the window")
	}

	byKind := map[string][]string{}
	for _, e := range f.audit.ofType(audit.QuarantineCreate) {
		switch {
		case e.Session != "":
			byKind["session"] = append(byKind["session"], e.Session)
		case e.Server != "":
			byKind["plugin"] = append(byKind["plugin"], e.Server)
		default:
			byKind["other"] = append(byKind["other"], e.Detail)
		}
	}
	want := map[string][]string{"session": {"sess-1"}, "plugin": {"maxplug", "strictplug"}}
	if diff := cmp.Diff(want, byKind); diff != "" {
		t.Errorf("quarantine.create events by kind (-want +got):\n%s", diff)
	}
	var subjects []string
	for _, a := range f.sink.ofKind(violation.KindQuarantine) {
		subjects = append(subjects, a.Subject)
	}
	if diff := cmp.Diff([]string{"session:sess-1", "plugin:maxplug", "plugin:strictplug"}, subjects); diff != "" {
		t.Errorf("quarantine alert subjects (-want +got):\n%s", diff)
	}
}

// TestDefaultPluginThreshold: without PluginThreshold a plugin is treated
// as standard (5).
func TestDefaultPluginThreshold(t *testing.T) {
	f := newFixture(t, quietRules(), nil)
	for i := range 5 {
		if _, ok := f.eng.Quarantined("", "", "plug"); ok {
			t.Fatalf("quarantined after %d", i)
		}
		f.eng.Record(t.Context(), store.Violation{Plugin: "plug", Type: violation.PathEscape, Severity: store.SeverityHigh})
	}
	if _, ok := f.eng.Quarantined("", "", "plug"); !ok {
		t.Fatal("5 HIGH violations did not quarantine a plugin at the default threshold")
	}
}

func TestAnomalyRules(t *testing.T) {
	noQuarantine := func(cfg *config.ViolationsConfig) {
		cfg.Quarantine.Principal.Count, cfg.Quarantine.Session.Count = 0, 0
	}
	viol := func(typ string) func(*fixture) {
		return func(f *fixture) {
			f.eng.Record(context.Background(), store.Violation{Principal: "mallory", Tool: "t", Type: typ,
				Severity: store.SeverityHigh})
		}
	}
	call := func(toolName string) func(*fixture) {
		return func(f *fixture) { f.eng.ObserveCall(context.Background(), "mallory", toolName) }
	}
	wait := func(d time.Duration) func(*fixture) { return func(f *fixture) { f.clk.Advance(d) } }
	at := func(h, m int) func(*fixture) {
		return func(f *fixture) { f.clk.Set(time.Date(2026, 3, 4, h, m, 0, 0, time.UTC)) }
	}
	nextDayAt := func(h, m int) func(*fixture) {
		return func(f *fixture) { f.clk.Set(time.Date(2026, 3, 5, h, m, 0, 0, time.UTC)) }
	}
	// UTC-5, without tzdata.
	est := time.FixedZone("EST", -5*3600)

	tests := []struct {
		name  string
		rules config.AnomalyRules
		loc   *time.Location
		steps []func(*fixture)
		want  []string // alert kinds, in order
	}{
		{"denials at threshold", config.AnomalyRules{Denials: config.CountRule{Count: 3, Window: time.Minute}}, nil,
			[]func(*fixture){viol(violation.PolicyDenial), viol(violation.PolicyDenial), viol(violation.PolicyDenial)},
			[]string{violation.KindDenials}},
		{"denials below threshold", config.AnomalyRules{Denials: config.CountRule{Count: 3, Window: time.Minute}}, nil,
			[]func(*fixture){viol(violation.PolicyDenial), viol(violation.PolicyDenial)}, nil},
		{"denials outside the window", config.AnomalyRules{Denials: config.CountRule{Count: 3, Window: time.Minute}}, nil,
			[]func(*fixture){viol(violation.PolicyDenial), wait(31 * time.Second), viol(violation.PolicyDenial),
				wait(31 * time.Second), viol(violation.PolicyDenial)}, nil},
		{"other types are not denials", config.AnomalyRules{Denials: config.CountRule{Count: 2, Window: time.Minute}}, nil,
			[]func(*fixture){viol(violation.RateLimit), viol(violation.AuthFailure), viol(violation.SuspiciousArgument)}, nil},
		{"any path escape", config.DefaultViolations().Rules, nil,
			[]func(*fixture){viol(violation.PathEscape)}, []string{violation.KindPathEscape}},
		{"path escape rule off", config.AnomalyRules{}, nil,
			[]func(*fixture){viol(violation.PathEscape), viol(violation.PathEscape)}, nil},
		{"sandbox kills at threshold", config.AnomalyRules{SandboxKills: config.CountRule{Count: 2, Window: time.Minute}}, nil,
			[]func(*fixture){viol(violation.SandboxViolation), viol(violation.SandboxViolation)},
			[]string{violation.KindSandboxKills}},
		{"sandbox kills below threshold", config.AnomalyRules{SandboxKills: config.CountRule{Count: 2, Window: time.Minute}}, nil,
			[]func(*fixture){viol(violation.SandboxViolation), wait(time.Minute), viol(violation.SandboxViolation)}, nil},
		{"distinct tools burst", config.AnomalyRules{DistinctTools: config.CountRule{Count: 3, Window: time.Minute}}, nil,
			[]func(*fixture){call("a"), call("b"), call("a"), call("c"),
				call("a"), call("b"), call("c"), call("d")}, // fires once per burst
			[]string{violation.KindDistinctTools}},
		{"same tool repeated", config.AnomalyRules{DistinctTools: config.CountRule{Count: 3, Window: time.Minute}}, nil,
			[]func(*fixture){call("a"), call("a"), call("b"), call("b"), call("a")}, nil},
		{"distinct tools spread out", config.AnomalyRules{DistinctTools: config.CountRule{Count: 3, Window: time.Minute}}, nil,
			[]func(*fixture){call("a"), wait(40 * time.Second), call("b"), wait(40 * time.Second), call("c")}, nil},
		{"distinct tools fire again after a quiet spell", config.AnomalyRules{DistinctTools: config.CountRule{Count: 2, Window: time.Minute}}, nil,
			[]func(*fixture){call("a"), call("b"), wait(2 * time.Minute), call("c"), call("d")},
			[]string{violation.KindDistinctTools, violation.KindDistinctTools}},
		{"inside usual hours", config.AnomalyRules{UsualHours: "07:00-20:00"}, est,
			[]func(*fixture){at(12, 0), call("a"), at(14, 0), call("a"), at(23, 0), call("a")}, nil}, // 07:00, 09:00, 18:00 EST
		// 06:59 EST alerts; again at 06:59 and 20:30 the same local day
		// (though 01:30 UTC is the next UTC day) it does not; 06:00 the
		// next local day it does.
		{"off hours once per local day", config.AnomalyRules{UsualHours: "07:00-20:00"}, est,
			[]func(*fixture){at(11, 59), call("a"), call("b"), at(13, 0), call("c"), nextDayAt(1, 30), call("a"),
				nextDayAt(11, 0), call("a")},
			[]string{violation.KindOffHours, violation.KindOffHours}},
		{"usual hours across midnight", config.AnomalyRules{UsualHours: "22:00-06:00"}, est,
			[]func(*fixture){at(4, 0), call("a"), at(10, 59), call("a"), at(11, 0), call("a")}, // 23:00, 05:59 inside; 06:00 outside
			[]string{violation.KindOffHours}},
		{"usual hours in UTC by default", config.AnomalyRules{UsualHours: "07:00-20:00"}, nil,
			[]func(*fixture){at(12, 0), call("a"), at(20, 0), call("a")}, []string{violation.KindOffHours}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.DefaultViolations()
			cfg.Rules = tc.rules
			noQuarantine(&cfg)
			f := newFixture(t, cfg, func(d *violation.Deps) { d.Location = tc.loc })
			for _, s := range tc.steps {
				s(f)
			}
			if diff := cmp.Diff(tc.want, f.sink.kinds()); diff != "" {
				t.Errorf("alerts (-want +got):\n%s", diff)
			}
			for _, a := range f.sink.ofKind(violation.KindOffHours) {
				if a.Subject != "mallory" || a.Severity != alert.Medium {
					t.Errorf("off-hours alert %+v", a)
				}
			}
			// Rules alert; they never quarantine.
			if f.principalQuarantined("mallory") {
				t.Error("an anomaly rule quarantined")
			}
		})
	}
}

func TestQuarantinedCovers(t *testing.T) {
	f := newFixture(t, quietRules(), nil)
	if _, ok := f.eng.Quarantined("alice", "sess", "plug"); ok {
		t.Fatal("quarantined before any quarantine")
	}
	for _, q := range []struct{ kind, subject string }{
		{store.QuarantinePrincipal, "alice"}, {store.QuarantineSession, "sess-1"}, {store.QuarantinePlugin, "plug"},
	} {
		if _, err := f.eng.Quarantine(t.Context(), q.kind, q.subject, "test", "admin"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		principal, session, plugin string
		want                       string // kind of the covering quarantine; "" none
	}{
		{"alice", "", "", store.QuarantinePrincipal},
		{"alice", "sess-9", "other", store.QuarantinePrincipal},
		{"bob", "sess-1", "", store.QuarantineSession},
		{"bob", "", "plug", store.QuarantinePlugin},
		{"bob", "sess-9", "other", ""},
		{"", "", "", ""},
		// Kinds are separate: a session id or plugin name that equals a
		// quarantined subject of another kind is not covered.
		{"sess-1", "plug", "alice", ""},
	}
	for _, tc := range tests {
		q, ok := f.eng.Quarantined(tc.principal, tc.session, tc.plugin)
		got := ""
		if ok {
			got = q.Kind
		}
		if got != tc.want {
			t.Errorf("Quarantined(%q, %q, %q) = %q (%v), want %q", tc.principal, tc.session, tc.plugin, got, ok, tc.want)
		}
	}
	// Quarantining again returns the existing record, with no new event.
	first, _ := f.eng.Quarantined("alice", "", "")
	again, err := f.eng.Quarantine(t.Context(), store.QuarantinePrincipal, "alice", "again", "admin")
	if err != nil || again.ID != first.ID {
		t.Fatalf("Quarantine again = %s, %v; want the existing %s", again.ID, err, first.ID)
	}
	if n := len(f.audit.ofType(audit.QuarantineCreate)); n != 3 {
		t.Errorf("quarantine.create events %d, want 3", n)
	}
	if c := f.audit.ofType(audit.QuarantineCreate)[0]; c.Principal != "admin" {
		t.Errorf("manual quarantine audited as %q, want the administrator", c.Principal)
	}
}

func TestRelease(t *testing.T) {
	f := newFixture(t, quietRules(), nil)
	for range 10 {
		f.record("alice", store.SeverityHigh)
	}
	q, ok := f.eng.Quarantined("alice", "", "")
	if !ok {
		t.Fatal("not quarantined")
	}

	for _, why := range []string{"", "   \t"} {
		if _, err := f.eng.Release(t.Context(), "alice", "admin", why); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Release with reason %q: %v, want ErrInvalid", why, err)
		}
	}
	if !f.principalQuarantined("alice") {
		t.Fatal("a release without a reason released")
	}
	if _, err := f.eng.Release(t.Context(), "nobody", "admin", "because"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Release of an unknown subject: %v, want ErrNotFound", err)
	}
	if n := len(f.audit.ofType(audit.QuarantineRelease)); n != 0 {
		t.Fatalf("%d quarantine.release events after failed releases", n)
	}

	f.clk.Advance(time.Minute)
	rel, err := f.eng.Release(t.Context(), "alice", "admin", "false positive, ticket 42")
	if err != nil {
		t.Fatal(err)
	}
	if rel.ID != q.ID || rel.ReleasedAt == nil || !rel.ReleasedAt.Equal(f.clk.Now()) || rel.ReleasedBy != "admin" ||
		rel.ReleaseReason != "false positive, ticket 42" {
		t.Errorf("released %+v", rel)
	}
	if f.principalQuarantined("alice") {
		t.Fatal("still quarantined after release")
	}
	evs := f.audit.ofType(audit.QuarantineRelease)
	if len(evs) != 1 || evs[0].Principal != "admin" || !strings.Contains(evs[0].Detail, q.ID) ||
		!strings.Contains(evs[0].Detail, "ticket 42") {
		t.Errorf("quarantine.release events %+v", evs)
	}
	active, err := f.st.ListQuarantines(t.Context(), false)
	if err != nil || len(active) != 0 {
		t.Errorf("active quarantines in the store after release: %+v, %v", active, err)
	}

	// Counting starts afresh: 9 more within the original window do not
	// quarantine again (they would, added to the 10 before release).
	for range 9 {
		f.record("alice", store.SeverityHigh)
	}
	if f.principalQuarantined("alice") {
		t.Fatal("re-quarantined by violations counted before the release")
	}
	f.record("alice", store.SeverityHigh)
	q2, ok := f.eng.Quarantined("alice", "", "")
	if !ok || q2.ID == q.ID {
		t.Fatalf("10 new violations after release: quarantined %v (%s), want a new quarantine", ok, q2.ID)
	}

	// Release by id.
	if _, err := f.eng.Release(t.Context(), q2.ID, "admin", "again"); err != nil {
		t.Fatal(err)
	}
	if f.principalQuarantined("alice") {
		t.Fatal("release by id did not restore access")
	}
}

// TestReloadAcrossEngines: two engines (two processes) share one SQLite
// file; a quarantine made or released by one is in force in the other
// after Reload.
func TestReloadAcrossEngines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	a := newFixture(t, quietRules(), func(d *violation.Deps) { d.Store = openStore(t, path) })
	b := newFixture(t, quietRules(), func(d *violation.Deps) { d.Store = openStore(t, path) })

	for range 10 {
		b.record("alice", store.SeverityHigh)
	}
	qb, ok := b.eng.Quarantined("alice", "", "")
	if !ok {
		t.Fatal("b did not quarantine")
	}
	if a.principalQuarantined("alice") {
		t.Fatal("a sees the quarantine before reloading")
	}
	if err := a.eng.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	qa, ok := a.eng.Quarantined("alice", "", "")
	if !ok || qa.ID != qb.ID {
		t.Fatalf("after Reload a has %+v (%v), want %s", qa, ok, qb.ID)
	}

	// A stale engine that quarantines the same subject keeps the stored one.
	c := newFixture(t, quietRules(), func(d *violation.Deps) { d.Store = openStore(t, path) })
	if _, err := b.eng.Release(t.Context(), "alice", "admin", "ok"); err != nil {
		t.Fatal(err)
	}
	if err := a.eng.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if a.principalQuarantined("alice") {
		t.Fatal("a still quarantines after b released and a reloaded")
	}
	q1, err := a.eng.Quarantine(t.Context(), store.QuarantinePrincipal, "bob", "by a", "admin")
	if err != nil {
		t.Fatal(err)
	}
	q2, err := c.eng.Quarantine(t.Context(), store.QuarantinePrincipal, "bob", "by c", "admin") // c has not reloaded
	if err != nil {
		t.Fatalf("conflicting quarantine: %v", err)
	}
	if q2.ID != q1.ID {
		t.Errorf("c's quarantine %s, want the stored %s", q2.ID, q1.ID)
	}
	if cur, _ := c.eng.Quarantined("bob", "", ""); cur.ID != q1.ID {
		t.Errorf("c holds %s in memory, want the stored %s", cur.ID, q1.ID)
	}
	all, err := a.st.ListQuarantines(t.Context(), false)
	if err != nil || len(all) != 1 {
		t.Errorf("active quarantines %+v, %v; want just one", all, err)
	}
}

// blockingStore blocks RecordViolations until released.
type blockingStore struct {
	store.AbuseStore
	entered chan struct{} // closed when the first RecordViolations starts
	release chan struct{}
	once    sync.Once

	mu     sync.Mutex
	stored int
}

func (s *blockingStore) RecordViolations(ctx context.Context, vs []store.Violation) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	s.mu.Lock()
	s.stored += len(vs)
	s.mu.Unlock()
	return s.AbuseStore.RecordViolations(ctx, vs)
}

func (s *blockingStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stored
}

// TestPersistQueueDropsWhenFull: Record never waits for the store; when
// the queue is full records are dropped and counted; Close flushes the rest.
func TestPersistQueueDropsWhenFull(t *testing.T) {
	bs := &blockingStore{entered: make(chan struct{}), release: make(chan struct{})}
	cfg := quietRules()
	cfg.Quarantine.Principal = config.CountRule{Count: 20000, Window: time.Hour}
	bs.AbuseStore = openStore(t, filepath.Join(t.TempDir(), "v.db"))
	f := newFixture(t, cfg, func(d *violation.Deps) { d.Store = bs })
	released := false
	defer func() {
		if !released {
			close(bs.release)
		}
	}()

	rec := func(i int) {
		f.eng.Record(context.Background(), store.Violation{Principal: "alice", Type: violation.PathEscape,
			Severity: store.SeverityHigh, Detail: fmt.Sprint(i)})
	}
	rec(0)
	select {
	case <-bs.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer never called the store")
	}
	const total = 10_000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i < total; i++ {
			rec(i)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Record blocked on a stalled store")
	}
	dropped := f.eng.Dropped()
	if dropped <= 0 || dropped >= total {
		t.Fatalf("dropped %d of %d with the store stalled", dropped, total)
	}
	// Counting happened for every record, persisted or not.
	// (And a quarantine does not depend on the violation writer.)
	if _, err := f.eng.Quarantine(t.Context(), store.QuarantinePrincipal, "bob", "manual", "admin"); err != nil {
		t.Fatalf("Quarantine while the writer is stalled: %v", err)
	}

	close(bs.release)
	released = true
	if err := f.close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := int64(bs.count()); got+dropped != total {
		t.Fatalf("stored %d + dropped %d != %d recorded", got, dropped, total)
	}
	vs, err := bs.AbuseStore.ListViolations(t.Context(), store.ViolationQuery{Principal: "alice", Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(vs))+dropped != total {
		t.Fatalf("store holds %d violations, dropped %d, recorded %d", len(vs), dropped, total)
	}
}

// TestRecordAfterClose: a call that finishes after the engine closed (the
// server's shutdown deadline passed while a cancelled call was unwinding,
// cmd/portcullis/serve.go) records its violation; that must not panic.
// The record may be dropped, but counting and quarantine still apply.
func TestRecordAfterClose(t *testing.T) {
	f := newFixture(t, quietRules(), nil)
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("Record after Close panicked: %v", p)
		}
	}()
	for range 10 {
		f.record("alice", store.SeverityHigh)
	}
	if !f.principalQuarantined("alice") {
		t.Error("violations recorded after Close were not counted")
	}
	if n := f.eng.Dropped(); n != 10 {
		t.Errorf("Dropped = %d after 10 records past Close, want 10", n)
	}
	if err := f.close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestConflictingQuarantineAuditedOnce: when another process already
// quarantined the subject (this engine has not reloaded yet), the stored
// quarantine is kept, and it is not audited or alerted a second time: one
// quarantine, one quarantine.create, as when the same engine is asked twice.
func TestConflictingQuarantineAuditedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	a := newFixture(t, quietRules(), func(d *violation.Deps) { d.Store = openStore(t, path) })
	b := newFixture(t, quietRules(), func(d *violation.Deps) { d.Store = openStore(t, path) })
	qa, err := a.eng.Quarantine(t.Context(), store.QuarantinePrincipal, "bob", "by a", audit.SystemPrincipal)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 { // b has not reloaded: it crosses its own threshold
		b.record("bob", store.SeverityHigh)
	}
	if q, _ := b.eng.Quarantined("bob", "", ""); q.ID != qa.ID {
		t.Fatalf("b holds %q, want the stored %q", q.ID, qa.ID)
	}
	if evs := b.audit.ofType(audit.QuarantineCreate); len(evs) != 0 {
		t.Errorf("b audited %d quarantine.create for the existing %s: %+v", len(evs), qa.ID, evs)
	}
	if as := b.sink.ofKind(violation.KindQuarantine); len(as) != 0 {
		t.Errorf("b raised %d quarantine alerts for the existing %s", len(as), qa.ID)
	}
}

// TestImportCountsOtherReplicas: two engines share one store as two
// replicas do (threshold: 10 HIGH in 10 minutes). 4 HIGH violations on
// one and 5 on the other do not quarantine, however often the engines
// import each other's records (nothing is counted twice); the tenth, on
// either, does. Without Shared, Import does nothing.
func TestImportCountsOtherReplicas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	shared := func(d *violation.Deps) { d.Store, d.Shared = openStore(t, path), true }
	a := newFixture(t, quietRules(), shared)
	b := newFixture(t, quietRules(), shared)
	stored := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			vs, err := a.st.ListViolations(t.Context(), store.ViolationQuery{})
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d violations stored, want %d", len(vs), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	importAll := func() {
		t.Helper()
		for range 3 { // repeated imports count nothing twice
			for _, f := range []*fixture{a, b} {
				if err := f.eng.Import(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for range 4 {
		a.record("alice", store.SeverityHigh)
	}
	for range 5 {
		b.record("alice", store.SeverityHigh)
	}
	b.record("bob", store.SeverityHigh)     // another principal
	a.record("alice", store.SeverityMedium) // below the minimum severity
	stored(11)
	importAll()
	if a.principalQuarantined("alice") || b.principalQuarantined("alice") {
		t.Fatal("quarantined after 9 counted violations: something was counted twice")
	}
	a.record("alice", store.SeverityHigh) // the tenth, on a
	if !a.principalQuarantined("alice") {
		t.Fatal("a did not quarantine at the tenth violation across both replicas")
	}
	if b.principalQuarantined("bob") || a.principalQuarantined("bob") {
		t.Error("bob quarantined")
	}

	// A store of its own: Import is a no-op and counts nothing foreign.
	path2 := filepath.Join(t.TempDir(), "two.db")
	c := newFixture(t, quietRules(), func(d *violation.Deps) { d.Store = openStore(t, path2) })
	d := newFixture(t, quietRules(), func(d *violation.Deps) { d.Store = openStore(t, path2) })
	for range 9 {
		d.record("carol", store.SeverityHigh)
	}
	c.record("carol", store.SeverityHigh)
	if err := c.eng.Import(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c.principalQuarantined("carol") {
		t.Error("an engine without Shared counted another process's violations")
	}
}

// TestImportOutOfOrderNoFalseQuarantine: a violation imported from another
// replica is older than the ones counted here. Ten HIGH violations spread
// over exactly the 10-minute window (one imported at t, nine local at
// t+10m) must not quarantine: the window compares the newest with the
// oldest, whatever order they arrived in.
func TestImportOutOfOrderNoFalseQuarantine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	shared := func(d *violation.Deps) { d.Store, d.Shared = openStore(t, path), true }
	a := newFixture(t, quietRules(), shared)
	b := newFixture(t, quietRules(), shared)
	t0 := a.clk.Now()
	b.eng.Record(t.Context(), store.Violation{Principal: "dan", Tool: "read_file", Type: violation.PathEscape,
		Severity: store.SeverityHigh, Time: t0})
	deadline := time.Now().Add(10 * time.Second)
	for {
		vs, err := a.st.ListViolations(t.Context(), store.ViolationQuery{Principal: "dan"})
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b's violation was not stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.clk.Advance(10 * time.Minute)
	for range 9 {
		a.eng.Record(t.Context(), store.Violation{Principal: "dan", Tool: "read_file", Type: violation.PathEscape,
			Severity: store.SeverityHigh, Time: t0.Add(10 * time.Minute)})
	}
	if err := a.eng.Import(t.Context()); err != nil {
		t.Fatal(err)
	}
	if a.principalQuarantined("dan") {
		t.Fatal("quarantined for 10 violations spread over exactly the window: the imported older one was taken as the newest")
	}
	a.eng.Record(t.Context(), store.Violation{Principal: "dan", Tool: "read_file", Type: violation.PathEscape,
		Severity: store.SeverityHigh, Time: t0.Add(10 * time.Minute)})
	if !a.principalQuarantined("dan") {
		t.Fatal("ten local violations at one moment did not quarantine")
	}
}
