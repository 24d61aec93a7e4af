package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// CallRequest is one tools/call as the transport layer saw it.
type CallRequest struct {
	Principal  *principal.Principal
	Tool       string
	Args       json.RawMessage // raw "arguments"; nil or empty means {}
	Session    string          // MCP session id, if any
	RequestID  string          // gateway-assigned request id
	RemoteAddr string          // client address, if known
}

// call is the state of one request as it moves through the stages.
type call struct {
	req      CallRequest
	entry    *entry // nil when the tool is not registered
	args     json.RawMessage
	argv     map[string]any // args decoded (after validate)
	redacted json.RawMessage
	digest   string
	started  time.Time
	result   *tool.Result
	limits   CallLimits
	release  func() // concurrency slot held from limits to the end of execute

	needApproval bool   // a Cedar policy allows the call only once approved
	approvalRule string // which policy asked for it
	approvalID   string // the approval consumed by this call
}

// refusal ends a call before its tool runs.
type refusal struct {
	code   reason.Code
	typ    audit.Type
	msg    string // client-facing; defaults to reason.Message(code)
	detail string // audit only
	// noViolation: the refusal is itself the consequence of violations
	// (quarantine) and is not counted again.
	noViolation bool
	// structured is added to the client's structuredContent (e.g. the
	// approval request id).
	structured map[string]any
}

// stage is one named step of the pipeline. A stage returns a refusal to
// stop the call, or nil to continue.
type stage struct {
	name string
	run  func(ctx context.Context, c *call) *refusal
}

// stages returns the pipeline in execution order. This is the one place
// the order is set; TestStageOrder pins it.
func (g *Gateway) stages() []stage {
	return []stage{
		{"resolve", g.resolve},
		{"quarantine", g.quarantine},
		{"authorize", g.authorize},
		{"validate", g.validate},
		{"policy", g.policy},
		{"flow", g.flow},
		{"limits", g.limits},
		{"approval", g.approval},
		{"audit_start", g.auditStart},
		{"execute", g.execute},
		{"audit_end", g.auditEnd},
	}
}

// StageNames returns the pipeline's stage names in order.
func (g *Gateway) StageNames() []string {
	var out []string
	for _, s := range g.stages() {
		out = append(out, s.name)
	}
	return out
}

// Call runs req through the pipeline and returns the result to send to
// the client: the tool's result, or an error result carrying a reason code
// and a generic message. It never returns nil.
func (g *Gateway) Call(ctx context.Context, req CallRequest) *tool.Result {
	c := &call{req: req, started: g.deps.Now()}
	if !g.enter() {
		r := &refusal{code: reason.Unavailable, typ: audit.ToolCallRefused, detail: "gateway shutting down"}
		g.refuse(c, r)
		return errorResult(r.code, r.msg)
	}
	defer g.inflight.Done()
	defer func() {
		if c.release != nil {
			c.release()
		}
	}()
	for _, s := range g.stages() {
		if r := s.run(ctx, c); r != nil {
			g.refuse(c, r)
			g.done(ctx, c, r)
			res := errorResult(r.code, r.msg)
			res.Structured = r.structured
			return res
		}
	}
	g.done(ctx, c, nil)
	return c.result
}

// resolve checks the name and looks the tool up. An unknown tool is not
// refused here: authorize runs first so that a caller cannot tell a tool it
// may not call from one that does not exist.
func (g *Gateway) resolve(_ context.Context, c *call) *refusal {
	if !tool.ValidName(c.req.Tool) {
		return &refusal{code: reason.UnknownTool, typ: audit.ToolCallRefused, detail: "malformed tool name"}
	}
	c.entry = g.lookup(c.req.Tool)
	return nil
}

// authorize is the name-level decision: may this principal call a tool of
// this name at all? It runs before validation so that nothing reads the
// arguments of a call the caller may not make.
func (g *Gateway) authorize(ctx context.Context, c *call) *refusal {
	var attrs *policy.ToolAttrs
	if c.entry != nil {
		attrs = c.entry.attrs
	}
	d := g.deps.Policy.DecideRequest(&policy.Request{Principal: c.req.Principal, Action: policy.ActionCall,
		Resource: c.req.Tool, Tool: attrs})
	if !d.Allow && !g.reportOnly(ctx, c, d) {
		detail := d.Rule
		if c.entry == nil {
			detail += "; tool not registered"
		}
		return g.deny(c, detail)
	}
	if c.entry == nil {
		return &refusal{code: reason.UnknownTool, typ: audit.ToolCallRefused, detail: "tool not registered; " + d.Rule}
	}
	return nil
}

// policy evaluates the Cedar policies with conditions on the validated
// arguments, the time and the caller's recent denials. Tools that no
// conditional policy can apply to were decided by authorize.
func (g *Gateway) policy(ctx context.Context, c *call) *refusal {
	if !g.deps.Policy.Conditional(policy.ActionCall, c.req.Tool) {
		return nil
	}
	req := g.policyRequest(c)
	d := g.deps.Policy.Evaluate(req)
	if d.Allow {
		return nil
	}
	if d.ByPolicy {
		// Would a human's approval allow it (forbid ... unless { context.approved })?
		req.Session.Approved = true
		if g.deps.Policy.Evaluate(req).Allow {
			c.needApproval, c.approvalRule = true, d.Rule
			return nil
		}
	}
	if g.reportOnly(ctx, c, d) {
		return nil
	}
	return g.deny(c, d.Rule)
}

func (g *Gateway) policyRequest(c *call) *policy.Request {
	return &policy.Request{
		Principal: c.req.Principal, Action: policy.ActionCall, Resource: c.req.Tool,
		Tool: c.entry.attrs, Args: c.argv,
		Session: policy.SessionFacts{Denials: g.denials.count(c.req.Principal)},
		Time:    g.deps.Now(),
	}
}

// deny is a policy refusal; it counts towards the caller's recent denials
// (Cedar context.denials).
func (g *Gateway) deny(c *call, detail string) *refusal {
	g.denials.add(c.req.Principal)
	return &refusal{code: reason.PermissionDenied, typ: audit.PolicyDeny, detail: detail}
}

// reportOnly handles a denial in report mode: a denial decided by Cedar
// policies is recorded as policy.would_deny and the call proceeds (true).
// Role grants and the default deny are always enforced (false).
func (g *Gateway) reportOnly(ctx context.Context, c *call, d policy.Decision) bool {
	if !d.ByPolicy || g.deps.Policy.Mode() != policy.ModeReport {
		return false
	}
	e := g.event(c, audit.PolicyWouldDeny)
	e.Decision = audit.DecisionAllow
	e.Status = audit.StatusOK
	e.Reason = reason.PermissionDenied
	e.Detail = "report mode: " + d.Rule
	if err := g.deps.Audit.Emit(context.WithoutCancel(ctx), e); err != nil {
		// Without its record the call must not pass on report mode's say-so.
		g.deps.Logger.Error("audit of policy.would_deny failed; call refused", "tool", c.req.Tool, "err", err)
		return false
	}
	return true
}

// validate checks the raw arguments against the tool's JSON Schema before
// anything else reads them (the SDK does not validate arguments of tools
// it does not own; DESIGN §4).
func (g *Gateway) validate(_ context.Context, c *call) *refusal {
	raw := bytes.TrimSpace(c.req.Args)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	c.limits = g.callLimits(c)
	if int64(len(raw)) > c.limits.MaxArgBytes {
		return &refusal{code: reason.TooLarge, typ: audit.ToolCallRefused,
			msg: fmt.Sprintf("arguments larger than %d bytes", c.limits.MaxArgBytes)}
	}
	c.args = raw
	v, err := decodeStrict(raw)
	if err != nil {
		return &refusal{code: reason.InvalidArguments, typ: audit.ToolCallRefused,
			msg: "invalid arguments: " + err.Error(), detail: err.Error()}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return &refusal{code: reason.InvalidArguments, typ: audit.ToolCallRefused,
			msg: "invalid arguments: must be a JSON object"}
	}
	c.argv = m
	if err := c.entry.schema.Validate(v); err != nil {
		msg := schemaError(err) // never err.Error(): it quotes argument values
		return &refusal{code: reason.InvalidArguments, typ: audit.ToolCallRefused,
			msg: "invalid arguments: " + msg, detail: msg}
	}
	return nil
}

func (g *Gateway) auditStart(ctx context.Context, c *call) *refusal {
	e := g.event(c, audit.ToolCallStart)
	e.Decision = audit.DecisionAllow
	e.Status = audit.StatusStarted
	if c.approvalID != "" {
		e.Detail = "approved by " + c.approvalID
	}
	// A client hanging up must not drop the record (STYLE §6).
	if err := g.deps.Audit.Emit(context.WithoutCancel(ctx), e); err != nil {
		g.deps.Logger.Error("audit start failed; call refused", "tool", c.req.Tool, "request_id", c.req.RequestID, "err", err)
		return &refusal{code: reason.AuditUnavailable, detail: err.Error()}
	}
	return nil
}

// execute runs the tool under its deadline, converting panics and plain
// errors into generic failures.
func (g *Gateway) execute(ctx context.Context, c *call) *refusal {
	ctx, cancel := context.WithTimeout(ctx, c.limits.Timeout)
	defer cancel()
	stop := context.AfterFunc(g.base, cancel) // forced shutdown cancels the call
	defer stop()

	res, err := g.invoke(ctx, c)
	switch {
	case err != nil:
		res = resultFromError(err)
		if res.Code == reason.ToolFailed && ctx.Err() != nil {
			code := reason.Cancelled // client hung up or the gateway is shutting down
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				code = reason.Timeout
			}
			res = errorResult(code, "")
			res.Detail = err.Error()
		}
	case res == nil:
		res = errorResult(reason.ToolFailed, "")
		res.Detail = "tool returned no result"
	case res.IsError && res.Code == "":
		res.Code = reason.ToolFailed
	}
	if c.release != nil { // the slot is free once the tool returned
		c.release()
		c.release = nil
	}
	truncate(res, c.limits.MaxResponseBytes)
	c.result = res
	g.recordFlow(c)
	return nil
}

func (g *Gateway) invoke(ctx context.Context, c *call) (res *tool.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			g.deps.Logger.Error("tool panicked", "tool", c.req.Tool, "panic", p, "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	// Tools that act for the caller (an upstream's per-user credential)
	// find the principal in their context.
	return c.entry.tool.Call(principal.NewContext(ctx, c.req.Principal), c.args)
}

// auditEnd records the outcome. If it cannot be recorded the result is
// withheld: the client gets AUDIT_UNAVAILABLE instead (fail closed).
func (g *Gateway) auditEnd(ctx context.Context, c *call) *refusal {
	e := g.event(c, audit.ToolCallEnd)
	e.Decision = audit.DecisionAllow
	e.Duration = g.deps.Now().Sub(c.started)
	res := c.result
	e.Status = audit.StatusOK
	if res.IsError {
		e.Status = audit.StatusError
		e.Reason = res.Code
		e.Error = res.Text
	}
	e.Detail = res.Detail
	if b, err := json.Marshal(struct {
		Text       string         `json:"text"`
		Structured map[string]any `json:"structured,omitempty"`
	}{res.Text, res.Structured}); err == nil {
		e.ResultDigest = g.deps.Redactor.Digest(b)
	}
	if err := g.deps.Audit.Emit(context.WithoutCancel(ctx), e); err != nil {
		g.deps.Logger.Error("audit end failed; result withheld", "tool", c.req.Tool, "request_id", c.req.RequestID, "err", err)
		return &refusal{code: reason.AuditUnavailable, detail: err.Error()}
	}
	return nil
}

// refuse records a refusal. A refusal that cannot be recorded is still a
// refusal; the failure is logged.
func (g *Gateway) refuse(c *call, r *refusal) {
	if r.code == reason.AuditUnavailable {
		return // the audit log is what failed; nothing more to record there
	}
	e := g.event(c, r.typ)
	e.Decision = audit.DecisionDeny
	e.Status = audit.StatusRefused
	e.Reason = r.code
	e.Error = r.msg
	if e.Error == "" {
		e.Error = reason.Message(r.code)
	}
	e.Detail = r.detail
	e.Duration = g.deps.Now().Sub(c.started)
	if err := g.deps.Audit.Emit(context.Background(), e); err != nil {
		g.deps.Logger.Error("audit of refusal failed", "tool", c.req.Tool, "reason", r.code, "err", err)
	}
}

// event fills the fields common to every event about c.
func (g *Gateway) event(c *call, t audit.Type) *audit.Event {
	if c.redacted == nil {
		args := c.args
		if args == nil {
			args = c.req.Args
		}
		c.redacted, c.digest = g.deps.Redactor.Redact(args)
	}
	e := &audit.Event{
		Type:       t,
		Session:    c.req.Session,
		RequestID:  c.req.RequestID,
		RemoteAddr: c.req.RemoteAddr,
		Tool:       c.req.Tool,
		Args:       c.redacted,
		ArgsDigest: c.digest,
	}
	if p := c.req.Principal; p != nil {
		e.Principal = p.Name
		e.Roles = p.Roles
	}
	if c.entry != nil {
		e.Server = c.entry.def.Server
	}
	return e
}

// errorResult is the client-facing result of a refusal or failure.
func errorResult(code reason.Code, msg string) *tool.Result {
	if msg == "" {
		msg = reason.Message(code)
	}
	return &tool.Result{Text: msg, IsError: true, Code: code}
}

// resultFromError converts a tool's error: a *tool.Error keeps its code
// and client message; anything else becomes a generic TOOL_FAILED with the
// cause kept for the audit log only.
func resultFromError(err error) *tool.Result {
	if te, ok := tool.AsError(err); ok {
		code := te.Code
		if code == "" {
			code = reason.ToolFailed // a failure always carries a reason code
		}
		r := errorResult(code, te.ClientMessage())
		if te.Err != nil {
			r.Detail = te.Err.Error()
		}
		return r
	}
	r := errorResult(reason.ToolFailed, "")
	r.Detail = err.Error()
	return r
}

// ErrInvalidArguments is returned by Explain for arguments the tool's
// schema refuses.
var ErrInvalidArguments = errors.New("invalid arguments")

// Explain decides a call to name with args by p exactly as Call would —
// name-level decision, argument validation, Cedar conditions — without
// auditing, counting denials or running anything. It answers `portcullis
// policy test`. Report mode is not applied: the decision is what enforce
// mode would do. Invalid arguments: ErrInvalidArguments with the schema's
// complaint.
func (g *Gateway) Explain(p *principal.Principal, name string, args json.RawMessage) (policy.Decision, error) {
	c := &call{req: CallRequest{Principal: p, Tool: name, Args: args}}
	if g.resolve(context.Background(), c) != nil {
		return policy.Decision{Reason: reason.PermissionDenied, Rule: "malformed tool name"}, nil
	}
	var attrs *policy.ToolAttrs
	if c.entry != nil {
		attrs = c.entry.attrs
	}
	d := g.deps.Policy.DecideRequest(&policy.Request{Principal: p, Action: policy.ActionCall, Resource: name, Tool: attrs})
	if c.entry == nil {
		d.Allow, d.Reason = false, reason.PermissionDenied
		d.Rule = "tool not registered; name-level: " + d.Rule
		return d, nil
	}
	if !d.Allow {
		return d, nil
	}
	if r := g.validate(context.Background(), c); r != nil {
		return policy.Decision{}, fmt.Errorf("%w: %s", ErrInvalidArguments, r.msg)
	}
	if !g.deps.Policy.Conditional(policy.ActionCall, name) {
		return d, nil
	}
	return g.deps.Policy.Evaluate(g.policyRequest(c)), nil
}
