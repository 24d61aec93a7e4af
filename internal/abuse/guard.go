// Package abuse joins the abuse controls into the gateway's Guard:
// quarantine (internal/violation), daily quotas (Quotas), rate and
// concurrency limits (internal/limits), and violation accounting with
// anomaly rules.
package abuse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/limits"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/violation"
)

// Guard implements gateway.Guard.
type Guard struct {
	limiter    *limits.Limiter
	quotas     *Quotas
	violations *violation.Engine
	log        *slog.Logger
}

var _ gateway.Guard = (*Guard)(nil)

// New returns a guard over its parts; all are required.
func New(l *limits.Limiter, q *Quotas, v *violation.Engine, log *slog.Logger) (*Guard, error) {
	if l == nil || q == nil || v == nil || log == nil {
		return nil, errors.New("abuse: missing dependency")
	}
	return &Guard{limiter: l, quotas: q, violations: v, log: log}, nil
}

// Quarantined implements gateway.Guard.
func (g *Guard) Quarantined(p *principal.Principal, session, plugin string) *gateway.Refusal {
	name := ""
	if p != nil {
		name = p.Name
	}
	q, ok := g.violations.Quarantined(name, session, plugin)
	if !ok {
		return nil
	}
	return &gateway.Refusal{Code: reason.PermissionDenied, Type: audit.QuarantineRefused,
		Detail: fmt.Sprintf("quarantined: %s %s %s", q.ID, q.Kind, q.Subject)}
}

// Limits implements gateway.Guard.
func (g *Guard) Limits(p *principal.Principal, def *tool.Definition) gateway.CallLimits {
	l := g.limiter.Effective(p, def.Name, def.Sensitivity)
	return gateway.CallLimits{Timeout: l.Timeout, MaxArgBytes: l.MaxArgBytes, MaxResponseBytes: l.MaxResponseBytes}
}

// Admit implements gateway.Guard: quota first (a call over quota takes no
// rate token), then the limiter.
func (g *Guard) Admit(_ context.Context, p *principal.Principal, def *tool.Definition) (func(), *gateway.Refusal) {
	if why := g.quotas.Take(p); why != "" {
		return nil, &gateway.Refusal{Code: reason.QuotaExceeded, Type: audit.LimitQuota, Detail: why}
	}
	release, r := g.limiter.Admit(p, def.Name, def.Sensitivity)
	if !r.Refused() {
		return release, nil
	}
	g.quotas.Refund(p)
	secs := int(r.RetryAfter.Seconds())
	typ := audit.LimitRate
	if r.Code == reason.ConcurrencyLimited {
		typ = audit.LimitConcurrency
	}
	return nil, &gateway.Refusal{Code: r.Code, Type: typ,
		Message: fmt.Sprintf("%s (retry after %ds)", reason.Message(r.Code), secs),
		Detail:  fmt.Sprintf("scope %s, limit %g, retry after %ds", r.Scope, r.Limit, secs)}
}

// Done implements gateway.Guard: CPU usage, anomaly rules on admitted
// calls, and a violation for misbehaviour codes.
func (g *Guard) Done(ctx context.Context, o gateway.Outcome) {
	name := ""
	if o.Principal != nil {
		name = o.Principal.Name
	}
	if o.Ran && o.Principal != nil {
		g.quotas.AddCPU(o.Principal, o.CPUTime)
		g.violations.ObserveCall(ctx, name, o.Tool)
	}
	typ, sev, ok := violation.FromReason(o.Code)
	if !ok {
		return
	}
	g.violations.Record(ctx, store.Violation{Principal: name, Session: o.Session, Plugin: o.Server, Tool: o.Tool,
		Type: typ, Severity: sev, RequestID: o.RequestID, Detail: string(o.Code) + ": " + o.Detail})
}
