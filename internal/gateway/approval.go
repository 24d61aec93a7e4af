package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// Hold is a call at the approval gate.
type Hold struct {
	Principal *principal.Principal
	Tool      string
	Args      map[string]any  // validated arguments: the approval is bound to them
	Redacted  json.RawMessage // shown to approvers
	RequestID string
	Session   string
}

// HoldResult is the gate's answer: Run (an approval for exactly this call
// was consumed now), or the request's ID, State and expiry.
type HoldResult struct {
	Run       bool
	ID        string
	State     string // pending, denied, expired, consumed
	ExpiresAt time.Time
}

// Approvals holds dangerous calls for a human (internal/approval).
// Optional: without it no call needs approval.
type Approvals interface {
	// Required reports whether configuration holds p's call to the tool.
	Required(p *principal.Principal, def *tool.Definition) bool
	// Hold consumes an approval for this exact call, or creates or reuses
	// its pending request and waits (bounded) for a decision.
	Hold(ctx context.Context, h Hold) (HoldResult, error)
}

// approval is the gate: a call that configuration or a Cedar policy
// (forbid ... unless { context.approved }) holds runs only with an
// approval for exactly this call, used once.
func (g *Gateway) approval(ctx context.Context, c *call) *refusal {
	if g.deps.Approvals == nil {
		if c.needApproval { // a policy wants approval but nobody can give it
			return g.deny(c, "needs approval (no approval service): "+c.approvalRule)
		}
		return nil
	}
	if !c.needApproval && !g.deps.Approvals.Required(c.req.Principal, &c.entry.def) {
		return nil
	}
	if c.redacted == nil {
		c.redacted, c.digest = g.deps.Redactor.Redact(c.args)
	}
	// The approval binds the arguments exactly as the tool receives them:
	// decoded again with numbers kept as written (c.argv holds float64s,
	// which cannot tell 2^53 from 2^53+1).
	exact, err := decodeExact(c.args)
	if err != nil {
		return &refusal{code: reason.InvalidArguments, typ: audit.ToolCallRefused, detail: "approval: " + err.Error()}
	}
	res, err := g.deps.Approvals.Hold(ctx, Hold{Principal: c.req.Principal, Tool: c.req.Tool, Args: exact,
		Redacted: c.redacted, RequestID: c.req.RequestID, Session: c.req.Session})
	if err != nil {
		g.deps.Logger.Error("approval gate failed; call refused", "tool", c.req.Tool, "err", err)
		return &refusal{code: reason.Unavailable, typ: audit.ToolCallRefused, detail: "approval gate: " + err.Error()}
	}
	if res.Run {
		c.approvalID = res.ID
		return nil
	}
	structured := map[string]any{"approval_id": res.ID, "approval_state": res.State,
		"expires_at": res.ExpiresAt.UTC().Format(time.RFC3339)}
	switch res.State {
	case "denied":
		return &refusal{code: reason.ApprovalDenied, typ: audit.ToolCallRefused, structured: structured,
			msg:    fmt.Sprintf("approval request %s was denied", res.ID),
			detail: "approval " + res.ID + " denied"}
	case "pending":
		return &refusal{code: reason.ApprovalRequired, typ: audit.ToolCallRefused, structured: structured,
			msg: fmt.Sprintf("approval required: request %s is pending; once it is approved, retry the identical call "+
				"(same arguments) to run it once", res.ID),
			detail: "approval " + res.ID + " pending"}
	default: // expired, or consumed by an identical call that won the race
		return &refusal{code: reason.ApprovalRequired, typ: audit.ToolCallRefused, structured: structured,
			msg:    fmt.Sprintf("approval request %s is %s; retry the call to request a new approval", res.ID, res.State),
			detail: "approval " + res.ID + " " + res.State}
	}
}

// decodeExact decodes an arguments object keeping numbers as json.Number.
func decodeExact(raw json.RawMessage) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}
