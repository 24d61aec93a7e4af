// Package metrics exposes the gateway's Prometheus metrics (DESIGN §2:
// GET /metrics). Everything is measured at the seams, by decorators, so
// that no pipeline package knows about Prometheus:
//
//   - Emitter wraps the audit emitter and counts what the audit log
//     acknowledged: tool calls, refusals, authentication failures and
//     lockouts, rate-limit hits, quarantines, approvals, egress.
//   - Authorizer wraps the gateway's policy engine and times decisions.
//   - Runtime wraps the sandbox runtime and counts runs and violations.
//   - ObserveAuditCommit is the audit writer's commit observer
//     (audit.Config.OnCommit); WatchAuditQueue, WatchStore and
//     WatchPlugins add gauges read at scrape time.
//
// Metrics (all prefixed portcullis_; Go runtime and process metrics as
// go_* and process_*):
//
//	tool_calls_total{tool,status,role}       counter; status ok|error|refused
//	policy_decision_seconds{stage}           histogram; stage name|conditions
//	audit_queue_depth                        gauge
//	audit_commit_seconds                     histogram (backend transaction)
//	audit_records_total                      counter (records committed)
//	sandbox_runs_total{level,outcome}        counter; outcome ok|nonzero_exit|violation|setup_error
//	sandbox_run_seconds{level}               histogram
//	sandbox_violations_total{code}           counter; sandbox violation codes
//	approvals_pending                        gauge (store, cached 5 s)
//	approval_requests_total{outcome}         counter; request|grant|deny|expire|consume
//	rate_limit_hits_total{kind}              counter; rate|concurrency|quota
//	auth_failures_total{cause}               counter; authn failure causes
//	auth_lockouts_total{kind}                counter; source|user
//	quarantines_total{kind}                  counter; principal|session|plugin
//	quarantines_active                       gauge (store, cached 5 s)
//	plugin_up{server}                        gauge; 1 while the upstream server runs
//	egress_connections_total{server,outcome} counter; allowed|refused
//
// Cardinality is bounded by construction: a label value is either one of a
// fixed set (status, stage, outcome, kind, cause, code, level; anything
// else becomes "other") or a name the gateway itself configured or
// registered, capped per label: tool (a registered tool name, at most
// 1024, else "other"; a malformed name is "invalid"), role (at most 64)
// and server (at most 256). No principal name, session, argument, path,
// address or secret is ever a label value.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// Namespace prefixes every gateway metric.
const Namespace = "portcullis"

// Label set caps (see the package comment).
const (
	maxTools   = 1024
	maxRoles   = 64
	maxServers = 256
)

// Label values used when a value is not one of the bounded set.
const (
	other   = "other"   // not in the fixed set, or the cap is reached
	invalid = "invalid" // a malformed tool name
	none    = "none"    // no role
)

// Metrics holds the gateway's metrics in a registry of its own (never the
// process-global default registry). A nil *Metrics records nothing, so the
// decorators pass through. Safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	toolCalls       *prometheus.CounterVec
	decision        *prometheus.HistogramVec
	auditCommit     prometheus.Histogram
	auditRecords    prometheus.Counter
	sandboxRuns     *prometheus.CounterVec
	sandboxSeconds  *prometheus.HistogramVec
	sandboxViol     *prometheus.CounterVec
	approvals       *prometheus.CounterVec
	rateLimits      *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	authLockouts    *prometheus.CounterVec
	quarantines     *prometheus.CounterVec
	egress          *prometheus.CounterVec
	tools           *labelSet
	roles           *labelSet
	servers         *labelSet
	pluginCollector *pluginCollector
}

// Fixed label values, also used to create every series at zero so that
// rate() works from the first scrape.
var (
	rateLimitKinds   = []string{"rate", "concurrency", "quota"}
	quarantineKinds  = []string{"principal", "session", "plugin"}
	approvalOutcomes = []string{"request", "grant", "deny", "expire", "consume"}
	lockoutKinds     = []string{"source", "user"}
	sandboxOutcomes  = []string{outcomeOK, outcomeNonZero, outcomeViolation, outcomeSetupError}
	sandboxLevels    = []sandbox.Level{sandbox.LevelMaximum, sandbox.LevelStrict, sandbox.LevelStandard, sandbox.LevelMinimal}
	violationCodes   = []sandbox.ViolationCode{
		sandbox.ViolationWallTimeout, sandbox.ViolationCPUTimeout, sandbox.ViolationOOM,
		sandbox.ViolationPidsExhausted, sandbox.ViolationOutputTrunc, sandbox.ViolationSeccompKill,
		sandbox.ViolationFileSize, sandbox.ViolationCancelled, sandbox.ViolationOrphansKilled,
		sandbox.ViolationSetupFailed, sandbox.ViolationSignalled, sandbox.ViolationMemoryExceeded,
	}
)

// Buckets, in seconds.
var (
	// decisionBuckets: 1µs to 10ms, ×√10 (a decision is an in-memory lookup
	// plus, with conditions, one Cedar evaluation).
	decisionBuckets = prometheus.ExponentialBucketsRange(1e-6, 1e-2, 9)
	// CommitBuckets are the upper bounds (seconds) of
	// portcullis_audit_commit_seconds: 100µs to 5s (one fsync is ~0.1-10 ms;
	// the commit bound is seconds). The benchmark harness reads them.
	CommitBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// runBuckets: 10ms to 5min (a sandboxed program's wall time).
	runBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
)

// New returns the gateway's metrics with the Go runtime and process
// collectors. The gauges read at scrape time are added by the Watch
// methods.
func New() *Metrics {
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		tools:   newLabelSet(maxTools),
		roles:   newLabelSet(maxRoles),
		servers: newLabelSet(maxServers),
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	}
	m.toolCalls = counter("tool_calls_total",
		"Tool calls by tool, outcome (ok, error, refused) and the caller's first role.", "tool", "status", "role")
	m.decision = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace,
		Name: "policy_decision_seconds", Help: "Time of one authorization decision, by stage (name: RBAC and Cedar by tool name; conditions: Cedar with the arguments).",
		Buckets: decisionBuckets}, []string{"stage"})
	m.auditCommit = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace,
		Name: "audit_commit_seconds", Help: "Time of one audit group commit (the backend transaction).", Buckets: CommitBuckets})
	m.auditRecords = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace,
		Name: "audit_records_total", Help: "Audit records committed durably."})
	m.sandboxRuns = counter("sandbox_runs_total",
		"Sandboxed program runs by security level and outcome (ok, nonzero_exit, violation, setup_error).", "level", "outcome")
	m.sandboxSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace,
		Name: "sandbox_run_seconds", Help: "Wall time of sandboxed program runs that started, by security level.",
		Buckets: runBuckets}, []string{"level"})
	m.sandboxViol = counter("sandbox_violations_total", "Limits and rules hit by sandboxed runs, by violation code.", "code")
	m.approvals = counter("approval_requests_total",
		"Approval events by outcome (request, grant, deny, expire, consume).", "outcome")
	m.rateLimits = counter("rate_limit_hits_total", "Calls refused by a limit, by kind (rate, concurrency, quota).", "kind")
	m.authFailures = counter("auth_failures_total", "Failed authentications, by cause.", "cause")
	m.authLockouts = counter("auth_lockouts_total", "Lockouts after repeated authentication failures, by kind (source, user).", "kind")
	m.quarantines = counter("quarantines_total", "Quarantines created, by kind (principal, session, plugin).", "kind")
	m.egress = counter("egress_connections_total",
		"Connections of sandboxed upstream servers through the egress proxy, by server and outcome (allowed, refused).", "server", "outcome")
	m.pluginCollector = newPluginCollector()

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.toolCalls, m.decision, m.auditCommit, m.auditRecords, m.sandboxRuns, m.sandboxSeconds,
		m.sandboxViol, m.approvals, m.rateLimits, m.authFailures, m.authLockouts, m.quarantines, m.egress,
	)
	m.initSeries()
	return m
}

// initSeries creates the series of every fixed label value at zero.
func (m *Metrics) initSeries() {
	for _, stage := range []string{stageName, stageConditions} {
		m.decision.WithLabelValues(stage)
	}
	for _, k := range rateLimitKinds {
		m.rateLimits.WithLabelValues(k)
	}
	for _, k := range quarantineKinds {
		m.quarantines.WithLabelValues(k)
	}
	for _, o := range approvalOutcomes {
		m.approvals.WithLabelValues(o)
	}
	for _, k := range lockoutKinds {
		m.authLockouts.WithLabelValues(k)
	}
	for c := range authCauses {
		m.authFailures.WithLabelValues(c)
	}
	for _, l := range sandboxLevels {
		m.sandboxSeconds.WithLabelValues(string(l))
		for _, o := range sandboxOutcomes {
			m.sandboxRuns.WithLabelValues(string(l), o)
		}
	}
	for _, c := range violationCodes {
		m.sandboxViol.WithLabelValues(string(c))
	}
}

// Handler serves the registry in the Prometheus text (or negotiated)
// exposition format. It does no authentication; the caller mounts it.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A failing collector (a gauge's store read) must not hide the rest.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Gatherer returns the registry, for tests and for embedding in another
// registry.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// ObserveAuditCommit records one committed audit batch: records made
// durable and the backend's time. It is audit.Config.OnCommit: cheap, and
// a no-op on a nil *Metrics.
func (m *Metrics) ObserveAuditCommit(records int, d time.Duration) {
	if m == nil {
		return
	}
	m.auditCommit.Observe(d.Seconds())
	m.auditRecords.Add(float64(records))
}
