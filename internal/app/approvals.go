package app

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/internal/approval"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/tool"
)

// approvalExpiryInterval is how often expired requests are marked.
const approvalExpiryInterval = 15 * time.Second

// openApprovals builds the approval service: approvers are principals
// whose grants allow "approve" on the tool (admin by default).
func (a *App) openApprovals() error {
	s, err := approval.New(a.Config.Approval, approval.Deps{Store: a.Store, Audit: a.Events, Alerts: a.Alerts,
		Logger: a.Log.With("component", "approval"),
		MayApprove: func(p *principal.Principal, toolName string) bool {
			return a.Policy.Decide(p, policy.ActionApprove, toolName).Allow
		}})
	a.Approvals = s
	return err
}

// approvalGate adapts the service to the gateway's Approvals interface.
type approvalGate struct {
	s   *approval.Service
	key []byte // keys the argument digest (the audit redaction key)
}

func (g approvalGate) Required(p *principal.Principal, def *tool.Definition) bool {
	return g.s.Required(p, def)
}

func (g approvalGate) Hold(ctx context.Context, h gateway.Hold) (gateway.HoldResult, error) {
	digest, err := approval.Digest(g.key, h.Args)
	if err != nil {
		return gateway.HoldResult{}, err
	}
	out, err := g.s.Gate(ctx, approval.Call{Principal: h.Principal, Tool: h.Tool, Digest: digest, Args: h.Redacted,
		RequestID: h.RequestID, Session: h.Session})
	if err != nil {
		return gateway.HoldResult{}, err
	}
	return gateway.HoldResult{Run: out.Run, ID: out.Approval.ID, State: out.Approval.State,
		ExpiresAt: out.Approval.ExpiresAt}, nil
}

// expireApprovals marks expired requests periodically.
func (a *App) expireApprovals(ctx context.Context) {
	t := time.NewTicker(approvalExpiryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := a.Approvals.Expire(ctx); err != nil && ctx.Err() == nil {
				a.Log.Error("expiring approval requests failed", "err", err)
			}
		}
	}
}
