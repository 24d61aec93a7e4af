package gateway

import (
	"context"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/flow"
	"github.com/portcullis/portcullis/internal/reason"
)

// flowKeys are the keys flow rules track c under: its MCP session, if any,
// and its principal, so taint follows the principal into its other
// sessions and its stateless calls (flow.Keys).
func flowKeys(c *call) []string {
	name := ""
	if c.req.Principal != nil {
		name = c.req.Principal.Name
	}
	return flow.Keys(c.req.Session, name)
}

// flow applies the information-flow rules (seed 004): a session, or a
// principal, that has reached a tool with a rule's after-label may not
// reach a tool with its then-label, or only with a human's approval.
func (g *Gateway) flow(_ context.Context, c *call) *refusal {
	if g.deps.Flows == nil || !g.deps.Flows.Enabled() {
		return nil
	}
	d := g.deps.Flows.CheckKeys(flowKeys(c), c.entry.def.Labels)
	switch d.Action {
	case flow.ActionDeny:
		g.denials.add(c.req.Principal)
		return &refusal{code: reason.PermissionDenied, typ: audit.FlowDeny,
			detail: "flow rule " + d.Rule + ": session reached label " + d.Label}
	case flow.ActionRequireApproval:
		if !c.needApproval {
			c.needApproval, c.approvalRule = true, "flow rule "+d.Rule+" (after label "+d.Label+")"
		}
	}
	return nil
}

// recordFlow notes a successful call's labels for later flow decisions.
func (g *Gateway) recordFlow(c *call) {
	if g.deps.Flows == nil || !g.deps.Flows.Enabled() || c.result == nil || c.result.IsError {
		return
	}
	for _, k := range flowKeys(c) {
		g.deps.Flows.Record(k, c.entry.def.Labels)
	}
}
