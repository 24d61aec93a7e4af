package metrics

import (
	"context"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/gateway"
)

// Tool call status label values.
const (
	statusOK      = "ok"
	statusError   = "error"
	statusRefused = "refused"
)

// Emitter decorates an audit emitter: it passes every event to Next and,
// once Next acknowledged it (returned nil, so the record is durable),
// counts it. An event the audit log refused is not counted: the metrics
// agree with the audit trail. With a nil M it only passes events on.
type Emitter struct {
	Next gateway.Emitter
	M    *Metrics
}

var _ gateway.Emitter = Emitter{}

// Emit records e through Next and counts it on success. Next's error is
// returned unchanged (callers fail closed on it).
func (x Emitter) Emit(ctx context.Context, e *audit.Event) error {
	if err := x.Next.Emit(ctx, e); err != nil {
		return err
	}
	x.M.count(e)
	return nil
}

// count updates the counters an acknowledged event feeds.
func (m *Metrics) count(e *audit.Event) {
	if m == nil || e == nil {
		return
	}
	switch e.Type {
	case audit.ToolCallStart:
		m.learnTool(e.Tool) // only a resolved, authorized call starts
	case audit.ToolCallEnd:
		m.learnTool(e.Tool)
		status := statusOK
		if e.Status != audit.StatusOK {
			status = statusError
		}
		m.toolCall(e, status)
	case audit.ToolCallRefused, audit.PolicyDeny, audit.FlowDeny:
		m.toolCall(e, statusRefused)
	case audit.QuarantineRefused:
		// The HTTP front end refuses a quarantined principal's every
		// request without a tool; only the gateway's refusal is a call.
		if e.Tool != "" {
			m.toolCall(e, statusRefused)
		}
	case audit.LimitRate:
		m.rateLimits.WithLabelValues("rate").Inc()
		m.toolCall(e, statusRefused)
	case audit.LimitConcurrency:
		m.rateLimits.WithLabelValues("concurrency").Inc()
		m.toolCall(e, statusRefused)
	case audit.LimitQuota:
		m.rateLimits.WithLabelValues("quota").Inc()
		m.toolCall(e, statusRefused)
	case audit.AuthFailure:
		m.authFailures.WithLabelValues(authCause(e.Detail)).Inc()
	case audit.AuthLockout:
		m.authLockouts.WithLabelValues(lockoutKind(e.Detail)).Inc()
	case audit.QuarantineCreate:
		m.quarantines.WithLabelValues(quarantineKind(e.Detail)).Inc()
	case audit.ApprovalRequest:
		m.approvals.WithLabelValues("request").Inc()
	case audit.ApprovalGrant:
		m.approvals.WithLabelValues("grant").Inc()
	case audit.ApprovalDeny:
		m.approvals.WithLabelValues("deny").Inc()
	case audit.ApprovalExpire:
		m.approvals.WithLabelValues("expire").Inc()
	case audit.ApprovalConsume:
		m.approvals.WithLabelValues("consume").Inc()
	case audit.EgressConnect:
		m.egress.WithLabelValues(m.serverLabel(e.Server), "allowed").Inc()
	case audit.EgressRefused:
		m.egress.WithLabelValues(m.serverLabel(e.Server), "refused").Inc()
	}
}

func (m *Metrics) toolCall(e *audit.Event, status string) {
	if e.Server != "" {
		// The gateway names the server only of a tool it resolved.
		m.learnTool(e.Tool)
	}
	m.toolCalls.WithLabelValues(m.toolLabel(e.Tool), status, m.roleLabel(e.Roles)).Inc()
}
