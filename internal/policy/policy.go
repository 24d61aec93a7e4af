// Package policy decides whether a principal may perform an action on a
// resource. Two sources combine into one decision (Teleport
// RoleSet.checkAccess, Cedar's own semantics):
//
//   - role grants from the store (RBAC): allow or deny an action on
//     resources matching a pattern ("read_file", "git_*", "notes__*", "*");
//   - Cedar policies (github.com/cedar-policy/cedar-go) for conditions on
//     the arguments, the time, the tool's attributes and recent behaviour.
//
// Any deny grant or forbid policy wins; else any allow grant or permit
// policy allows; else the answer is deny. A Cedar policy that fails to
// evaluate (a missing attribute, a type error) also denies: errors never
// weaken a decision. An API key's scopes narrow what its roles allow
// (tool patterns, and "admin:<area>" patterns for the admin API). The
// Decision says which rules matched, for the audit log only; clients are
// told no more than "access denied".
package policy

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cedar "github.com/cedar-policy/cedar-go"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
)

// Action is what a principal wants to do.
type Action string

// Actions.
const (
	ActionCall    Action = "call"    // call a tool; resource = tool name
	ActionAdmin   Action = "admin"   // use the admin API; resource = API area ("keys", "audit", ...)
	ActionApprove Action = "approve" // approve a held call; resource = tool name
)

// Effects of a grant.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// Mode says what a denial does to a tool call.
type Mode string

// Modes.
const (
	// ModeEnforce refuses denied calls.
	ModeEnforce Mode = "enforce"
	// ModeReport lets calls denied by Cedar policies (Decision.ByPolicy)
	// proceed and records policy.would_deny: for rolling out new policies.
	// Role grants, key scopes and the default deny are always enforced (a
	// rollout of conditions must not open what RBAC closes), and so are
	// admin API decisions.
	ModeReport Mode = "report"
)

// ErrInvalidGrant is returned for grants with a bad effect, action or pattern.
var ErrInvalidGrant = errors.New("invalid grant")

// Decision is the outcome of a decision.
type Decision struct {
	Allow bool
	// Reason is reason.OK or reason.PermissionDenied.
	Reason reason.Code
	// Rule describes what decided, e.g. "role:developer allow call read_file",
	// "policy no-secrets-in-env", "default deny". For the audit log only.
	Rule string
	// Policies are the ids of the Cedar policies that matched (for a deny,
	// the forbids; for an allow, the permits).
	Policies []string
	// ByPolicy is set on a denial decided by Cedar policies (a forbid
	// matched or a policy failed to evaluate) rather than by role grants,
	// scopes or the default: the denials that report mode lets through.
	ByPolicy bool
}

// Request is one question to the engine.
type Request struct {
	Principal *principal.Principal
	Action    Action
	// Resource is the tool name (call, approve) or the admin area (admin).
	Resource string
	// Tool describes the tool for Cedar (nil: unknown attributes).
	Tool *ToolAttrs
	// Args are the call's validated arguments (nil for name-level checks).
	Args    map[string]any
	Session SessionFacts
	// Time is the request time (zero: now).
	Time time.Time
}

type rule struct {
	action  Action
	pattern string
	deny    bool
	desc    string // "role:<role> allow|deny <action> <pattern>", for Decision.Rule
}

// Engine evaluates grants and Cedar policies. Replace and LoadCedar swap
// their part atomically; an invalid input leaves the previous one in
// force. Safe for concurrent use.
type Engine struct {
	roles atomic.Pointer[map[string][]rule]
	cedar atomic.Pointer[cedarSet]
	loc   atomic.Pointer[time.Location]
	mode  atomic.Value // Mode

	cacheMu sync.RWMutex
	cache   map[string]Decision

	entities entityCache
}

// New returns an engine over grants (see Replace for validation), with no
// Cedar policies, in enforce mode, using UTC for hours and weekdays.
func New(grants []store.Grant) (*Engine, error) {
	e := &Engine{}
	if err := e.Replace(grants); err != nil {
		return nil, err
	}
	e.cedar.Store(&cedarSet{subsets: map[subsetKey]*subset{}})
	e.loc.Store(time.UTC)
	e.mode.Store(ModeEnforce)
	return e, nil
}

// SetLocation sets the time zone of context.hour and context.weekday.
func (e *Engine) SetLocation(loc *time.Location) {
	if loc != nil {
		e.loc.Store(loc)
		e.flush()
	}
}

// SetMode sets enforce or report mode.
func (e *Engine) SetMode(m Mode) error {
	switch m {
	case ModeEnforce, ModeReport:
		e.mode.Store(m)
		return nil
	default:
		return fmt.Errorf("policy: unknown mode %q (want enforce or report)", m)
	}
}

// Mode returns the current mode.
func (e *Engine) Mode() Mode {
	if m, ok := e.mode.Load().(Mode); ok {
		return m
	}
	return ModeEnforce
}

// Replace validates grants and swaps them in atomically. On error the
// previous rule set stays in force.
func (e *Engine) Replace(grants []store.Grant) error {
	m := make(map[string][]rule)
	for _, g := range grants {
		switch Action(g.Action) {
		case ActionCall, ActionAdmin, ActionApprove:
		default:
			return fmt.Errorf("%w: role %q: unknown action %q", ErrInvalidGrant, g.Role, g.Action)
		}
		if _, err := path.Match(g.Pattern, ""); err != nil || g.Pattern == "" {
			return fmt.Errorf("%w: role %q: bad pattern %q", ErrInvalidGrant, g.Role, g.Pattern)
		}
		var deny bool
		switch g.Effect {
		case EffectAllow:
		case EffectDeny:
			deny = true
		default:
			return fmt.Errorf("%w: role %q: unknown effect %q (must be allow or deny)", ErrInvalidGrant, g.Role, g.Effect)
		}
		m[g.Role] = append(m[g.Role], rule{action: Action(g.Action), pattern: g.Pattern, deny: deny,
			desc: "role:" + g.Role + " " + g.Effect + " " + g.Action + " " + g.Pattern})
	}
	e.roles.Store(&m)
	e.flush()
	return nil
}

// LoadCedar parses Cedar policy files (name → content) and swaps them in.
// On error (ErrInvalidPolicy) the previous policies stay in force.
func (e *Engine) LoadCedar(files map[string][]byte) error {
	set, err := ParseCedar(files)
	if err != nil {
		return err
	}
	e.cedar.Store(set)
	e.flush()
	return nil
}

// Policies lists the Cedar policies in force.
func (e *Engine) Policies() []PolicyInfo {
	if set := e.cedar.Load(); set != nil {
		return set.Info()
	}
	return nil
}

// flush empties the decision cache (after any change of grants, policies,
// users or keys).
func (e *Engine) flush() {
	e.cacheMu.Lock()
	e.cache = nil
	e.cacheMu.Unlock()
}

// Invalidate drops every cached decision; call it when users, roles or
// keys change.
func (e *Engine) Invalidate() { e.flush() }

// match reports whether pattern matches name. Patterns use path.Match
// syntax; names never contain '/', so '*' matches any run of characters.
func match(pattern, name string) bool {
	if pattern == name {
		return true
	}
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// Decide decides p performing action on resource without tool attributes
// or arguments: what the admin API and the approval service ask. For
// ActionCall it is the name-level decision (see DecideRequest). Every
// other action has no later stage that could check a policy's conditions,
// so it is decided in full here (Evaluate, at the current time): a
// conditional permit on admin or approve allows only when its scope and
// conditions hold, and a conditional forbid applies.
func (e *Engine) Decide(p *principal.Principal, action Action, resource string) Decision {
	r := &Request{Principal: p, Action: action, Resource: resource}
	if action == ActionCall {
		return e.decide(r, true)
	}
	r.Time = time.Now()
	return e.decide(r, false)
}

// DecideRequest is the name-level decision: may r.Principal perform
// r.Action on r.Resource at all? It is what tools/list and the first
// authorization step of tools/call ask, before the arguments are
// validated. Role grants and scopes decide as always; of the Cedar
// policies only those without conditions are evaluated, and a permit with
// conditions counts as a possible allow (the conditions are checked by
// Evaluate once the arguments are known). r.Args, r.Session and r.Time are
// ignored. Name-level decisions are always cached.
func (e *Engine) DecideRequest(r *Request) Decision { return e.decide(r, true) }

// Evaluate is the full decision with the call's validated arguments, the
// time and the session facts: every applicable Cedar policy is evaluated.
// A nil r.Args is an empty argument object. Decisions to which no
// conditional policy applies are cached until the next change.
func (e *Engine) Evaluate(r *Request) Decision { return e.decide(r, false) }

// maxCache bounds the decision cache.
const maxCache = 16384

func (e *Engine) decide(r *Request, nameOnly bool) Decision {
	p := r.Principal
	if p == nil {
		return Decision{Reason: reason.PermissionDenied, Rule: "no principal"}
	}
	set := e.cedar.Load()
	var sub *subset
	if set != nil && len(set.policies) > 0 {
		sub = set.subsetFor(r.Action, r.Resource)
	}
	cacheable := nameOnly || sub == nil || sub.empty || !sub.conditional
	var key string
	if cacheable {
		key = cacheKey(p, r, nameOnly)
		e.cacheMu.RLock()
		d, ok := e.cache[key]
		e.cacheMu.RUnlock()
		if ok {
			return d
		}
	}
	d := e.evaluate(r, sub, nameOnly)
	if cacheable {
		e.cacheMu.Lock()
		if e.cache == nil || len(e.cache) >= maxCache {
			e.cache = make(map[string]Decision)
		}
		e.cache[key] = d
		e.cacheMu.Unlock()
	}
	return d
}

func cacheKey(p *principal.Principal, r *Request, nameOnly bool) string {
	var b strings.Builder
	if nameOnly {
		b.WriteString("n\x00")
	} else {
		b.WriteString("f\x00")
	}
	b.WriteString(p.Name)
	b.WriteByte(0)
	b.WriteString(string(p.Method))
	b.WriteByte(0)
	b.WriteString(strings.Join(p.Roles, ","))
	b.WriteByte(0)
	b.WriteString(strings.Join(p.Scopes, ","))
	b.WriteByte(0)
	b.WriteString(string(r.Action))
	b.WriteByte(0)
	b.WriteString(r.Resource)
	if r.Tool != nil {
		b.WriteByte(0)
		b.WriteString(r.Tool.Server + "\x00" + r.Tool.Sensitivity + "\x00" + strings.Join(r.Tool.Labels, ","))
	}
	return b.String()
}

func (e *Engine) evaluate(r *Request, sub *subset, nameOnly bool) Decision {
	p := r.Principal
	var roles map[string][]rule
	if rp := e.roles.Load(); rp != nil { // a zero Engine has no grants: default deny
		roles = *rp
	}
	var allowedBy string
	for _, role := range p.Roles {
		for _, ru := range roles[role] {
			if ru.action != r.Action || !match(ru.pattern, r.Resource) {
				continue
			}
			if ru.deny {
				return Decision{Reason: reason.PermissionDenied, Rule: ru.desc}
			}
			if allowedBy == "" {
				allowedBy = ru.desc
			}
		}
	}
	// Key scopes narrow what the roles allow; they never widen it. A
	// scope matches tool names, or "admin:<area>" for the admin API
	// ("*" covers both).
	if len(p.Scopes) > 0 {
		target := r.Resource
		if r.Action == ActionAdmin {
			target = "admin:" + r.Resource
		}
		if !slices.ContainsFunc(p.Scopes, func(s string) bool { return match(s, target) }) {
			return Decision{Reason: reason.PermissionDenied, Rule: "outside the key's scopes " + strings.Join(p.Scopes, ",")}
		}
	}
	var permits []string
	var maybe bool // name-level: a conditional permit may allow
	ps := policyList(nil)
	if sub != nil && !sub.empty {
		ps = sub.ps
		if nameOnly {
			ps, maybe = sub.uncond, sub.condPermit
		}
	}
	if len(ps) > 0 {
		loc := e.loc.Load()
		if loc == nil {
			loc = time.UTC
		}
		entities, req := cedarRequest(r, loc, &e.entities)
		dec, diag := cedar.Authorize(ps, entities, req)
		if len(diag.Errors) > 0 {
			var msgs []string
			for _, de := range diag.Errors {
				msgs = append(msgs, fmt.Sprintf("%s: %s", de.PolicyID, de.Message))
			}
			return Decision{Reason: reason.PermissionDenied, ByPolicy: true,
				Rule: "policy evaluation error (fail closed): " + strings.Join(msgs, "; ")}
		}
		ids := make([]string, 0, len(diag.Reasons))
		for _, re := range diag.Reasons {
			ids = append(ids, string(re.PolicyID))
		}
		if dec == cedar.Deny && len(ids) > 0 { // forbids matched
			return Decision{Reason: reason.PermissionDenied, Rule: "policy " + strings.Join(ids, ","), Policies: ids, ByPolicy: true}
		}
		if dec == cedar.Allow {
			permits = ids
		}
	}
	if allowedBy == "" && len(permits) == 0 && maybe {
		return Decision{Allow: true, Reason: reason.OK, Rule: "conditional policy permit (conditions checked with the arguments)"}
	}
	switch {
	case allowedBy != "" && len(permits) > 0:
		return Decision{Allow: true, Reason: reason.OK, Rule: allowedBy + "; policy " + strings.Join(permits, ","), Policies: permits}
	case allowedBy != "":
		return Decision{Allow: true, Reason: reason.OK, Rule: allowedBy}
	case len(permits) > 0:
		return Decision{Allow: true, Reason: reason.OK, Rule: "policy " + strings.Join(permits, ","), Policies: permits}
	default:
		return Decision{Reason: reason.PermissionDenied, Rule: "default deny"}
	}
}

// Conditional reports whether a Cedar policy with conditions can apply to
// (action, resource): only then do the arguments matter to the decision.
func (e *Engine) Conditional(action Action, resource string) bool {
	set := e.cedar.Load()
	if set == nil || len(set.policies) == 0 {
		return false
	}
	sub := set.subsetFor(action, resource)
	return !sub.empty && sub.conditional
}
