package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// CallLimits are the effective limits of one call (per sensitivity, tool
// and role; internal/limits).
type CallLimits struct {
	Timeout          time.Duration
	MaxArgBytes      int64
	MaxResponseBytes int64
}

// Refusal is a guard's refusal: the code (client-visible, generic), the
// audit event type, an optional client message (e.g. a retry-after hint)
// and an audit-only detail.
type Refusal struct {
	Code    reason.Code
	Type    audit.Type
	Message string
	Detail  string
}

// Outcome describes a finished or refused call for abuse accounting.
type Outcome struct {
	Principal *principal.Principal
	Session   string
	RequestID string
	Tool      string
	Server    string
	// Code is the refusal or failure code; "" for a successful call.
	Code   reason.Code
	Detail string
	// Ran is true when the tool ran (usage is counted); CPUTime is the
	// sandbox CPU time it reported.
	Ran     bool
	CPUTime time.Duration
}

// Guard is the abuse-control layer: quarantine, quotas, rate and
// concurrency limits, and violation accounting (internal/abuse). Optional:
// a gateway without one applies only its Config limits.
type Guard interface {
	// Quarantined refuses a call by a quarantined principal, in a
	// quarantined session or to a quarantined plugin.
	Quarantined(p *principal.Principal, session, plugin string) *Refusal
	// Limits returns the effective limits of a call by p to the tool.
	Limits(p *principal.Principal, def *tool.Definition) CallLimits
	// Admit checks quota, rate and concurrency; on success release must be
	// called once when the call ends.
	Admit(ctx context.Context, p *principal.Principal, def *tool.Definition) (release func(), r *Refusal)
	// Done accounts a finished or refused call (usage, violations, rules).
	Done(ctx context.Context, o Outcome)
}

// quarantine refuses calls covered by a quarantine, before anything else
// looks at them. The client sees the generic "access denied".
func (g *Gateway) quarantine(_ context.Context, c *call) *refusal {
	if g.deps.Guard == nil {
		return nil
	}
	server := ""
	if c.entry != nil {
		server = c.entry.def.Server
	}
	if r := g.deps.Guard.Quarantined(c.req.Principal, c.req.Session, server); r != nil {
		return &refusal{code: r.Code, typ: r.Type, msg: r.Message, detail: r.Detail, noViolation: true}
	}
	return nil
}

// limits applies quota, rate and concurrency limits to an authorized call
// with valid arguments; the concurrency slot is released after execute.
func (g *Gateway) limits(ctx context.Context, c *call) *refusal {
	if g.deps.Guard == nil {
		return nil
	}
	release, r := g.deps.Guard.Admit(ctx, c.req.Principal, &c.entry.def)
	if r != nil {
		return &refusal{code: r.Code, typ: r.Type, msg: r.Message, detail: r.Detail}
	}
	c.release = release
	return nil
}

// callLimits returns the limits of c: the guard's, else the gateway's.
func (g *Gateway) callLimits(c *call) CallLimits {
	l := CallLimits{Timeout: c.entry.def.Timeout, MaxArgBytes: int64(g.cfg.MaxArgBytes)}
	if l.Timeout <= 0 {
		l.Timeout = g.cfg.CallTimeout
	}
	if g.deps.Guard != nil {
		gl := g.deps.Guard.Limits(c.req.Principal, &c.entry.def)
		if gl.Timeout > 0 && (c.entry.def.Timeout <= 0 || gl.Timeout < l.Timeout) {
			l.Timeout = gl.Timeout
		}
		if gl.MaxArgBytes > 0 && gl.MaxArgBytes < l.MaxArgBytes {
			l.MaxArgBytes = gl.MaxArgBytes
		}
		l.MaxResponseBytes = gl.MaxResponseBytes
	}
	return l
}

// done reports the outcome of c to the guard.
func (g *Gateway) done(ctx context.Context, c *call, r *refusal) {
	if g.deps.Guard == nil {
		return
	}
	o := Outcome{Principal: c.req.Principal, Session: c.req.Session, RequestID: c.req.RequestID, Tool: c.req.Tool}
	if c.entry != nil {
		o.Server = c.entry.def.Server
	}
	switch {
	case r != nil && r.noViolation:
		return
	case r != nil:
		o.Code, o.Detail = r.code, r.detail
	case c.result != nil:
		o.Ran, o.CPUTime = true, c.result.CPUTime
		if c.result.IsError {
			o.Code, o.Detail = c.result.Code, c.result.Detail
		}
	}
	g.deps.Guard.Done(context.WithoutCancel(ctx), o)
}

// truncate cuts a result larger than max bytes (text, and structured
// content as JSON) and says so in the text; the full size is kept for the
// audit detail.
func truncate(res *tool.Result, max int64) {
	if max <= 0 {
		return
	}
	cut := false
	if int64(len(res.Text)) > max {
		n := int(max)
		for n > 0 && !utf8.RuneStart(res.Text[n]) {
			n--
		}
		full := len(res.Text)
		res.Text = res.Text[:n] + fmt.Sprintf("\n…[%s: %d of %d bytes shown]", reason.TooLargeResponse, n, full)
		cut = true
	}
	if res.Structured != nil {
		if b, err := json.Marshal(res.Structured); err == nil && int64(len(b)) > max {
			kept := map[string]any{"truncated": true, "structured_bytes": len(b)}
			for _, k := range []string{"code", "exit_code", "signal", "violations"} {
				if v, ok := res.Structured[k]; ok {
					kept[k] = v
				}
			}
			res.Structured = kept
			cut = true
		}
	}
	if cut {
		note := fmt.Sprintf("response truncated at %d bytes", max)
		if res.Detail != "" {
			note = res.Detail + "; " + note
		}
		res.Detail = note
	}
}
