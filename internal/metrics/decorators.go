package metrics

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/sandbox"
)

// Decision stage label values.
const (
	stageName       = "name"
	stageConditions = "conditions"
)

// Authorizer decorates the gateway's policy engine: it times DecideRequest
// (stage "name") and Evaluate (stage "conditions") and passes everything
// through unchanged. A request that carries tool attributes names a
// registered tool, whose name thereby becomes a tool label value.
type Authorizer struct {
	Next gateway.Authorizer
	M    *Metrics
}

var _ gateway.Authorizer = Authorizer{}

// DecideRequest is Next.DecideRequest, timed.
func (a Authorizer) DecideRequest(r *policy.Request) policy.Decision {
	if a.M == nil {
		return a.Next.DecideRequest(r)
	}
	start := time.Now()
	d := a.Next.DecideRequest(r)
	a.M.decision.WithLabelValues(stageName).Observe(time.Since(start).Seconds())
	if r != nil && r.Tool != nil {
		a.M.learnTool(r.Resource)
	}
	return d
}

// Evaluate is Next.Evaluate, timed.
func (a Authorizer) Evaluate(r *policy.Request) policy.Decision {
	if a.M == nil {
		return a.Next.Evaluate(r)
	}
	start := time.Now()
	d := a.Next.Evaluate(r)
	a.M.decision.WithLabelValues(stageConditions).Observe(time.Since(start).Seconds())
	return d
}

// Conditional is Next.Conditional.
func (a Authorizer) Conditional(action policy.Action, resource string) bool {
	return a.Next.Conditional(action, resource)
}

// Mode is Next.Mode.
func (a Authorizer) Mode() policy.Mode { return a.Next.Mode() }

// Sandbox run outcome label values.
const (
	outcomeOK         = "ok"
	outcomeNonZero    = "nonzero_exit"
	outcomeViolation  = "violation"
	outcomeSetupError = "setup_error"
)

// Runtime decorates a sandbox runtime: every Run is counted by security
// level and outcome, a run that started is timed, and each of its
// violations is counted by code. A long-lived run (an upstream server on
// stdio) is counted when it ends.
type Runtime struct {
	Next sandbox.Runtime
	M    *Metrics
}

var _ sandbox.Runtime = Runtime{}

// Name is Next.Name.
func (r Runtime) Name() string { return r.Next.Name() }

// Run is Next.Run, counted. Its result and error are returned unchanged.
func (r Runtime) Run(ctx context.Context, spec *sandbox.Spec) (*sandbox.Result, error) {
	if r.M == nil {
		return r.Next.Run(ctx, spec)
	}
	start := time.Now()
	res, err := r.Next.Run(ctx, spec)
	r.M.observeRun(spec, res, err, time.Since(start))
	return res, err
}

func (m *Metrics) observeRun(spec *sandbox.Spec, res *sandbox.Result, err error, took time.Duration) {
	level := other
	if spec != nil {
		if l, perr := sandbox.ParseLevel(string(spec.Level)); perr == nil {
			level = string(l) // "" is maximum, as in the runtime
		}
	}
	if err != nil || res == nil {
		m.sandboxRuns.WithLabelValues(level, outcomeSetupError).Inc()
		return
	}
	m.sandboxSeconds.WithLabelValues(level).Observe(took.Seconds())
	outcome := outcomeOK
	for _, v := range res.Violations {
		m.sandboxViol.WithLabelValues(violationLabel(v.Code)).Inc()
		if v.Code != sandbox.ViolationOutputTrunc { // cut output is a notice, not a failure
			outcome = outcomeViolation
		}
	}
	if outcome == outcomeOK && res.ExitCode != 0 {
		outcome = outcomeNonZero
	}
	m.sandboxRuns.WithLabelValues(level, outcome).Inc()
}

func violationLabel(c sandbox.ViolationCode) string {
	for _, k := range violationCodes {
		if c == k {
			return string(k)
		}
	}
	return other
}
