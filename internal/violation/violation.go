// Package violation turns misbehaviour into typed records, counts them
// per principal, session and plugin over sliding windows, raises alerts
// from anomaly rules, and quarantines an offender that crosses its
// threshold (seed 004: violations with severities; DESIGN §5: plugin
// thresholds by security level). A quarantine survives restart (it lives
// in the store) and ends only when an administrator releases it.
package violation

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
)

// Violation types (stable names: stored, filtered on, shown in the admin API).
const (
	PolicyDenial       = "policy_denial"
	PathEscape         = "path_escape"
	SandboxViolation   = "sandbox_violation"
	AuthFailure        = "auth_failure"
	RateLimit          = "rate_limit"
	SuspiciousArgument = "suspicious_argument"
	// EgressRefused: a sandboxed upstream server tried to reach a
	// destination its egress allow-list does not grant.
	EgressRefused = "egress_refused"
	// DefinitionChanged: an upstream server changed a pinned tool
	// definition (possible rug pull).
	DefinitionChanged = "definition_changed"
)

// Types lists every violation type.
var Types = []string{PolicyDenial, PathEscape, SandboxViolation, AuthFailure, RateLimit, SuspiciousArgument,
	EgressRefused, DefinitionChanged}

// Alert kinds raised here.
const (
	KindQuarantine    = "quarantine.create"
	KindDenials       = "anomaly.denials"
	KindPathEscape    = "anomaly.path_escape"
	KindSandboxKills  = "anomaly.sandbox_kills"
	KindDistinctTools = "anomaly.distinct_tools"
	KindOffHours      = "anomaly.off_hours"
)

// FromReason maps a refusal or failure code to a violation type and its
// default severity; ok is false for codes that are not misbehaviour
// (NOT_FOUND, TIMEOUT of an honest slow call, ...).
func FromReason(c reason.Code) (typ string, sev store.Severity, ok bool) {
	switch c {
	case reason.PermissionDenied:
		return PolicyDenial, store.SeverityMedium, true
	case reason.PathOutsideWorkspace, reason.PathForbidden:
		return PathEscape, store.SeverityHigh, true
	case reason.SandboxViolation:
		return SandboxViolation, store.SeverityHigh, true
	case reason.RateLimited, reason.ConcurrencyLimited, reason.QuotaExceeded:
		return RateLimit, store.SeverityLow, true
	case reason.InvalidArguments, reason.TooLarge:
		return SuspiciousArgument, store.SeverityLow, true
	case reason.Unauthenticated:
		return AuthFailure, store.SeverityMedium, true
	}
	return "", 0, false
}

// Emitter records audit events.
type Emitter interface {
	Emit(ctx context.Context, e *audit.Event) error
}

// Deps are the engine's collaborators; Now is optional.
type Deps struct {
	Store  store.AbuseStore
	Audit  Emitter
	Alerts alert.Sink
	Logger *slog.Logger
	Now    func() time.Time
	// Location is the time zone of the usual-hours rule (policy.timezone).
	Location *time.Location
	// PluginThreshold returns how many counted violations quarantine a
	// plugin (DESIGN §5 by security level); nil: 5 (standard).
	PluginThreshold func(plugin string) int
	// Shared is set when other gateway processes record violations in the
	// same store (replicas on PostgreSQL): Import then counts theirs, and
	// the engine remembers which ones it has counted.
	Shared bool
}

// Engine records violations and enforces quarantine. Safe for concurrent use.
type Engine struct {
	cfg     config.ViolationsConfig
	d       Deps
	minSev  store.Severity
	from    int // usual hours, minutes after midnight; from == to: off
	to      int
	persist chan store.Violation
	done    chan struct{}
	dropped atomic.Int64
	// closeMu guards sends on persist against Close (a record after Close
	// is counted, in memory, but not stored).
	closeMu sync.RWMutex
	closed  bool

	mu       sync.Mutex
	windows  map[string]*window // "<scope>|<subject>|<what>"
	offHours map[string]string  // principal -> day already alerted
	lastGC   time.Time

	active atomic.Pointer[map[string]store.Quarantine] // "<kind>|<subject>"

	// importMu serializes Import; seen holds the ids of violations counted
	// here (recorded or imported) with their times, so that none is
	// counted twice; since is where the next Import starts reading.
	importMu sync.Mutex
	seenMu   sync.Mutex
	seen     map[string]time.Time
	since    time.Time
}

// Bounds of in-memory state.
const (
	persistQueue = 4096
	maxWindows   = 100_000
)

// New returns an engine and starts its persistence worker; Close stops it.
// The active quarantines are loaded from the store now.
func New(ctx context.Context, cfg config.ViolationsConfig, d Deps) (*Engine, error) {
	if d.Store == nil || d.Audit == nil || d.Alerts == nil || d.Logger == nil {
		return nil, errors.New("violation: missing dependency")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Location == nil {
		d.Location = time.UTC
	}
	minSev, err := store.ParseSeverity(cfg.Quarantine.MinSeverity)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, d: d, minSev: minSev, persist: make(chan store.Violation, persistQueue),
		done: make(chan struct{}), windows: map[string]*window{}, offHours: map[string]string{},
		seen: map[string]time.Time{}, since: d.Now().UTC()}
	if cfg.Rules.UsualHours != "" {
		if e.from, e.to, err = config.ParseHours(cfg.Rules.UsualHours); err != nil {
			return nil, err
		}
	}
	empty := map[string]store.Quarantine{}
	e.active.Store(&empty)
	if err := e.Reload(ctx); err != nil {
		return nil, err
	}
	go e.writer()
	return e, nil
}

// Close flushes queued violation records (bounded by ctx) and stops.
func (e *Engine) Close(ctx context.Context) error {
	e.closeMu.Lock()
	if !e.closed {
		e.closed = true
		close(e.persist)
	}
	e.closeMu.Unlock()
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reload replaces the active quarantines with the store's (at start, and
// when another process changed them).
func (e *Engine) Reload(ctx context.Context) error {
	qs, err := e.d.Store.ListQuarantines(ctx, false)
	if err != nil {
		return fmt.Errorf("violation: load quarantines: %w", err)
	}
	m := make(map[string]store.Quarantine, len(qs))
	for _, q := range qs {
		m[q.Kind+"|"+q.Subject] = q
	}
	e.active.Store(&m)
	return nil
}

// Quarantined reports the active quarantine that covers a call by
// principal in session to a tool of plugin (empty values are not checked).
func (e *Engine) Quarantined(principal, session, plugin string) (store.Quarantine, bool) {
	m := *e.active.Load()
	if len(m) == 0 {
		return store.Quarantine{}, false
	}
	for _, k := range [...]struct{ kind, subject string }{
		{store.QuarantinePrincipal, principal}, {store.QuarantineSession, session}, {store.QuarantinePlugin, plugin},
	} {
		if k.subject == "" {
			continue
		}
		if q, ok := m[k.kind+"|"+k.subject]; ok {
			return q, true
		}
	}
	return store.Quarantine{}, false
}

// Record records v (ID and Time are filled when empty), counts it, runs
// the anomaly rules and quarantines at threshold. The record is written
// asynchronously (a full queue drops it and counts the drop: the audit
// log holds the underlying event anyway); counting and quarantine happen
// before Record returns, so the next call is already refused.
func (e *Engine) Record(ctx context.Context, v store.Violation) {
	if v.ID == "" {
		v.ID = "vio_" + rand.Text()
	}
	if v.Time.IsZero() {
		v.Time = e.d.Now().UTC()
	}
	if e.d.Shared && v.Severity >= e.minSev {
		// Before the record can reach the store: an Import running now
		// must not count it a second time.
		e.markSeen(v)
	}
	e.closeMu.RLock()
	if e.closed {
		e.dropped.Add(1)
	} else {
		select {
		case e.persist <- v:
		default:
			if e.dropped.Add(1)%100 == 1 {
				e.d.Logger.Warn("violation records dropped: persistence queue full", "dropped", e.dropped.Load())
			}
		}
	}
	e.closeMu.RUnlock()
	e.rules(ctx, v)
	e.countForQuarantine(ctx, v)
}

// countForQuarantine counts v toward the quarantine thresholds of its
// principal, session and plugin and quarantines at a threshold.
func (e *Engine) countForQuarantine(ctx context.Context, v store.Violation) {
	if v.Severity < e.minSev {
		return
	}
	q := e.cfg.Quarantine
	if v.Principal != "" && e.count("q", v.Principal, "", v.Time, q.Principal) {
		e.Quarantine(ctx, store.QuarantinePrincipal, v.Principal, e.reason(q.Principal, v), audit.SystemPrincipal)
	}
	if v.Session != "" && e.count("qs", v.Session, "", v.Time, q.Session) {
		e.Quarantine(ctx, store.QuarantineSession, v.Session, e.reason(q.Session, v), audit.SystemPrincipal)
	}
	if v.Plugin != "" {
		n := 5
		if e.d.PluginThreshold != nil {
			n = e.d.PluginThreshold(v.Plugin)
		}
		rule := config.CountRule{Count: n, Window: q.PluginWindow}
		if e.count("qp", v.Plugin, "", v.Time, rule) {
			e.Quarantine(ctx, store.QuarantinePlugin, v.Plugin, e.reason(rule, v), audit.SystemPrincipal)
		}
	}
}

// importLag is how far back Import reads before its last start: other
// replicas store their violations asynchronously and their clocks differ.
const importLag = 30 * time.Second

// Import counts violations that other processes sharing the store
// (gateway replicas on one PostgreSQL) recorded since the last Import, so
// that a principal misbehaving on several replicas reaches the quarantine
// threshold as it would on one: the thresholds count across replicas, not
// per replica. Violations this engine recorded or imported before are
// skipped; anomaly rules (alerts) stay per replica. Call it periodically;
// without Deps.Shared it does nothing.
func (e *Engine) Import(ctx context.Context) error {
	if !e.d.Shared {
		return nil
	}
	e.importMu.Lock()
	defer e.importMu.Unlock()
	start := e.d.Now().UTC()
	defer e.forgetSeen(start) // also after a failed read: the set stays bounded
	// Only what can count (unauthenticated MEDIUM auth failures cannot
	// crowd the counted ones out of the page), and never from before the
	// longest window: an older violation could not count any more.
	since := e.since.Add(-importLag)
	if floor := start.Add(-e.maxWindow()); since.Before(floor) {
		since = floor
	}
	vs, err := e.d.Store.ListViolations(ctx, store.ViolationQuery{Since: since, MinSeverity: e.minSev, Limit: importPage})
	if err != nil {
		return fmt.Errorf("violation: import: %w", err)
	}
	if len(vs) == importPage {
		e.d.Logger.Warn("violation import: more violations than one page; the oldest of them were not counted across replicas",
			"page", importPage, "since", since)
	}
	slices.Reverse(vs) // oldest first, as they happened
	for _, v := range vs {
		if !e.markSeen(v) {
			e.countForQuarantine(ctx, v)
		}
	}
	e.since = start
	return nil
}

// importPage is how many violations one Import reads at most.
const importPage = 10000

// maxWindow is the longest quarantine window.
func (e *Engine) maxWindow() time.Duration {
	q := e.cfg.Quarantine
	return max(q.Principal.Window, q.Session.Window, q.PluginWindow)
}

// markSeen records v as counted here and reports whether it already was.
func (e *Engine) markSeen(v store.Violation) bool {
	e.seenMu.Lock()
	defer e.seenMu.Unlock()
	if _, ok := e.seen[v.ID]; ok {
		return true
	}
	e.seen[v.ID] = v.Time
	return false
}

// forgetSeen drops ids too old for any Import to read again: older than
// the longest window and than the import's look-back. Past maxSeen the
// oldest go first (a flood of counted violations cannot grow the set
// without bound; one forgotten too early could be counted twice, which
// errs toward quarantine).
func (e *Engine) forgetSeen(now time.Time) {
	e.seenMu.Lock()
	defer e.seenMu.Unlock()
	keep := max(e.maxWindow(), 2*importLag)
	for id, t := range e.seen {
		if now.Sub(t) > keep {
			delete(e.seen, id)
		}
	}
	if over := len(e.seen) - maxSeen; over > 0 {
		// One sort, not a scan of the whole set per id dropped (that was
		// quadratic, under the lock Record needs).
		type seenID struct {
			id string
			t  time.Time
		}
		all := make([]seenID, 0, len(e.seen))
		for id, t := range e.seen {
			all = append(all, seenID{id, t})
		}
		slices.SortFunc(all, func(a, b seenID) int { return a.t.Compare(b.t) })
		for _, x := range all[:over] {
			delete(e.seen, x.id)
		}
	}
}

// maxSeen bounds the ids remembered for Import.
const maxSeen = 100_000

func (e *Engine) reason(r config.CountRule, v store.Violation) string {
	return fmt.Sprintf("%d violations of severity %s or worse within %s (last: %s on %s)", r.Count, e.minSev, r.Window,
		v.Type, v.Tool)
}

// rules evaluates the anomaly rules that look at violations.
func (e *Engine) rules(ctx context.Context, v store.Violation) {
	if v.Principal == "" {
		return
	}
	r := e.cfg.Rules
	switch v.Type {
	case PolicyDenial:
		if e.count("r", v.Principal, "denials", v.Time, r.Denials) {
			e.alert(ctx, KindDenials, alert.High, v.Principal, fmt.Sprintf("%d policy denials within %s", r.Denials.Count, r.Denials.Window))
		}
	case PathEscape:
		if e.count("r", v.Principal, "path", v.Time, r.PathEscapes) {
			e.alert(ctx, KindPathEscape, alert.High, v.Principal, fmt.Sprintf("path escape attempt on %s", v.Tool))
		}
	case SandboxViolation:
		if e.count("r", v.Principal, "sandbox", v.Time, r.SandboxKills) {
			e.alert(ctx, KindSandboxKills, alert.High, v.Principal, fmt.Sprintf("%d sandbox violations within %s", r.SandboxKills.Count, r.SandboxKills.Window))
		}
	}
}

// ObserveCall feeds the rules that look at every admitted call: a burst
// of distinct tools, and calls outside usual hours.
func (e *Engine) ObserveCall(ctx context.Context, principal, toolName string) {
	now := e.d.Now()
	if r := e.cfg.Rules.DistinctTools; r.Count > 0 && principal != "" {
		e.mu.Lock()
		w := e.windowLocked("dt|"+principal, now)
		w.addDistinct(toolName, now, r.Window)
		fire := len(w.tools) >= r.Count && !w.fired
		if fire {
			w.fired = true
		}
		if len(w.tools) < r.Count {
			w.fired = false
		}
		e.mu.Unlock()
		if fire {
			e.alert(ctx, KindDistinctTools, alert.Medium, principal, fmt.Sprintf("%d different tools within %s", r.Count, r.Window))
		}
	}
	if e.from != e.to && principal != "" {
		local := now.In(e.d.Location)
		m := local.Hour()*60 + local.Minute()
		inside := (e.from < e.to && m >= e.from && m < e.to) || (e.from > e.to && (m >= e.from || m < e.to))
		if !inside {
			day := local.Format("2006-01-02")
			e.mu.Lock()
			seen := e.offHours[principal] == day
			e.offHours[principal] = day
			e.mu.Unlock()
			if !seen {
				e.alert(ctx, KindOffHours, alert.Medium, principal, "call outside usual hours ("+e.cfg.Rules.UsualHours+")")
			}
		}
	}
}

// count adds an event at t to the window of (scope, subject, what) and
// reports whether it now holds r.Count events within r.Window.
func (e *Engine) count(scope, subject, what string, t time.Time, r config.CountRule) bool {
	if r.Count <= 0 {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.windowLocked(scope+"|"+subject+"|"+what, t)
	return w.add(t, r.Count, r.Window)
}

func (e *Engine) windowLocked(key string, now time.Time) *window {
	w, ok := e.windows[key]
	if !ok {
		if len(e.windows) >= maxWindows {
			e.gcLocked(now, true)
		}
		w = &window{}
		e.windows[key] = w
	}
	w.last = now
	if now.Sub(e.lastGC) > time.Minute {
		e.gcLocked(now, false)
	}
	return w
}

// gcLocked drops windows idle for an hour (all windows are shorter), or,
// when forced at the cap, the older half.
func (e *Engine) gcLocked(now time.Time, force bool) {
	e.lastGC = now
	idle := time.Hour
	if force {
		idle = 0
		var oldest, newest time.Time
		for _, w := range e.windows {
			if oldest.IsZero() || w.last.Before(oldest) {
				oldest = w.last
			}
			if w.last.After(newest) {
				newest = w.last
			}
		}
		cut := oldest.Add(newest.Sub(oldest) / 2)
		for k, w := range e.windows {
			if !w.last.After(cut) {
				delete(e.windows, k)
			}
		}
		return
	}
	for k, w := range e.windows {
		if now.Sub(w.last) > idle {
			delete(e.windows, k)
		}
	}
}

// Quarantine puts subject in quarantine (kind principal, session or
// plugin): in force at once in this process, stored, audited
// (quarantine.create) and alerted. An existing active quarantine is
// returned unchanged.
func (e *Engine) Quarantine(ctx context.Context, kind, subject, why, by string) (store.Quarantine, error) {
	if q, ok := (*e.active.Load())[kind+"|"+subject]; ok {
		return q, nil
	}
	q := store.Quarantine{ID: "qua_" + strings.ToLower(rand.Text()[:16]), Kind: kind, Subject: subject, Reason: why,
		CreatedAt: e.d.Now().UTC(), CreatedBy: by}
	e.mu.Lock()
	m := *e.active.Load()
	if existing, ok := m[kind+"|"+subject]; ok {
		e.mu.Unlock()
		return existing, nil
	}
	next := make(map[string]store.Quarantine, len(m)+1)
	for k, v := range m {
		next[k] = v
	}
	next[kind+"|"+subject] = q
	e.active.Store(&next) // in force before anything else can fail
	e.mu.Unlock()

	stored, err := e.d.Store.CreateQuarantine(context.WithoutCancel(ctx), q)
	if errors.Is(err, store.ErrConflict) {
		q, err = stored, nil // another process got there first: keep its record
		e.mu.Lock()
		cur := *e.active.Load()
		next := make(map[string]store.Quarantine, len(cur))
		for k, v := range cur {
			next[k] = v
		}
		next[kind+"|"+subject] = q
		e.active.Store(&next)
		e.mu.Unlock()
		return q, nil // created, audited and alerted by that process
	}
	if err != nil {
		e.d.Logger.Error("quarantine not persisted (in force in this process)", "kind", kind, "subject", subject, "err", err)
	}
	ev := &audit.Event{Type: audit.QuarantineCreate, Principal: by, Status: audit.StatusOK,
		Detail: fmt.Sprintf("%s %s %s: %s", q.ID, kind, subject, why)}
	if kind == store.QuarantineSession {
		ev.Session = subject
	}
	if kind == store.QuarantinePlugin {
		ev.Server = subject
	}
	if err := e.d.Audit.Emit(context.WithoutCancel(ctx), ev); err != nil {
		e.d.Logger.Error("quarantine not audited", "id", q.ID, "err", err)
	}
	e.alert(ctx, KindQuarantine, alert.Critical, kind+":"+subject, why)
	return q, err
}

// Release ends the active quarantine with this id or subject, stored and
// audited (quarantine.release) by principal by with reason.
func (e *Engine) Release(ctx context.Context, idOrSubject, by, why string) (store.Quarantine, error) {
	if strings.TrimSpace(why) == "" {
		return store.Quarantine{}, fmt.Errorf("%w: a release needs a reason", store.ErrInvalid)
	}
	q, err := e.d.Store.ReleaseQuarantine(ctx, idOrSubject, by, why, e.d.Now().UTC())
	if err != nil {
		return q, err
	}
	if err := e.d.Audit.Emit(context.WithoutCancel(ctx), &audit.Event{Type: audit.QuarantineRelease, Principal: by,
		Status: audit.StatusOK, Detail: fmt.Sprintf("%s %s %s: %s", q.ID, q.Kind, q.Subject, why)}); err != nil {
		e.d.Logger.Error("quarantine release not audited", "id", q.ID, "err", err)
	}
	e.mu.Lock()
	m := *e.active.Load()
	next := make(map[string]store.Quarantine, len(m))
	for k, v := range m {
		if v.ID != q.ID {
			next[k] = v
		}
	}
	e.active.Store(&next)
	// Counting starts afresh for the released subject.
	for k := range e.windows {
		if strings.Contains(k, "|"+q.Subject+"|") {
			delete(e.windows, k)
		}
	}
	e.mu.Unlock()
	return q, nil
}

func (e *Engine) alert(ctx context.Context, kind, sev, subject, detail string) {
	e.d.Alerts.Alert(ctx, alert.Alert{Kind: kind, Severity: sev, Subject: subject, Detail: detail, Time: e.d.Now().UTC()})
}

// writer persists violation records in batches.
func (e *Engine) writer() {
	defer close(e.done)
	batch := make([]store.Violation, 0, 256)
	for v := range e.persist {
		batch = append(batch[:0], v)
	fill:
		for len(batch) < cap(batch) {
			select {
			case v, ok := <-e.persist:
				if !ok {
					break fill
				}
				batch = append(batch, v)
			default:
				break fill
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := e.d.Store.RecordViolations(ctx, batch); err != nil {
			e.d.Logger.Error("violation records not stored", "count", len(batch), "err", err)
		}
		cancel()
	}
}

// Dropped is how many violation records the full queue dropped.
func (e *Engine) Dropped() int64 { return e.dropped.Load() }

// window is a sliding window of event times (at most the rule's count).
type window struct {
	times []time.Time
	tools map[string]time.Time
	last  time.Time
	fired bool
}

// add records t and reports whether the newest count events lie within d
// of each other. Times may arrive out of order (violations imported from
// other replicas): they are kept sorted.
func (w *window) add(t time.Time, count int, d time.Duration) bool {
	i, _ := slices.BinarySearchFunc(w.times, t, time.Time.Compare)
	w.times = slices.Insert(w.times, i, t)
	if len(w.times) > count {
		w.times = w.times[len(w.times)-count:]
	}
	return len(w.times) >= count && w.times[len(w.times)-1].Sub(w.times[0]) < d
}

// addDistinct records a call of tool at t and forgets tools not seen within d.
func (w *window) addDistinct(tool string, t time.Time, d time.Duration) {
	if w.tools == nil {
		w.tools = map[string]time.Time{}
	}
	w.tools[tool] = t
	for k, at := range w.tools {
		if t.Sub(at) >= d {
			delete(w.tools, k)
		}
	}
	if len(w.tools) > 1024 { // bound a principal calling thousands of names
		for k := range w.tools {
			delete(w.tools, k)
			if len(w.tools) <= 1024 {
				break
			}
		}
	}
}
