// Package policy decides whether a principal may perform an action on a
// resource. Deny first, deny by default (Teleport RoleSet.checkAccess): any
// matching deny grant wins, else any matching allow grant permits, else the
// answer is deny. The Decision says which rule matched, for the audit log
// only; clients are told no more than "access denied".
package policy

import (
	"errors"
	"fmt"
	"path"
	"sync/atomic"

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

// ErrInvalidGrant is returned for grants with a bad effect, action or pattern.
var ErrInvalidGrant = errors.New("invalid grant")

// Decision is the outcome of Decide.
type Decision struct {
	Allow bool
	// Reason is reason.OK or reason.PermissionDenied.
	Reason reason.Code
	// Rule describes the grant that decided, e.g. "role:developer allow call read_file",
	// or "default deny". For the audit log only.
	Rule string
}

type rule struct {
	action  Action
	pattern string
	deny    bool
}

// Engine evaluates grants. Replace swaps the rule set atomically; Decide
// is safe for concurrent use.
type Engine struct {
	roles atomic.Pointer[map[string][]rule]
}

// New returns an engine over grants (see Replace for validation).
func New(grants []store.Grant) (*Engine, error) {
	e := &Engine{}
	if err := e.Replace(grants); err != nil {
		return nil, err
	}
	return e, nil
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
			return fmt.Errorf("%w: role %q: unknown effect %q", ErrInvalidGrant, g.Role, g.Effect)
		}
		m[g.Role] = append(m[g.Role], rule{action: Action(g.Action), pattern: g.Pattern, deny: deny})
	}
	e.roles.Store(&m)
	return nil
}

// match reports whether pattern matches name. Patterns use path.Match
// syntax; names never contain '/', so '*' matches any run of characters.
func match(pattern, name string) bool {
	if pattern == name {
		return true
	}
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// Decide returns whether p may perform action on resource.
func (e *Engine) Decide(p *principal.Principal, action Action, resource string) Decision {
	if p == nil {
		return Decision{Reason: reason.PermissionDenied, Rule: "no principal"}
	}
	rp := e.roles.Load()
	if rp == nil { // zero Engine (not built by New): no rules, so deny
		return Decision{Reason: reason.PermissionDenied, Rule: "default deny"}
	}
	roles := *rp
	var allowedBy string
	for _, role := range p.Roles {
		for _, r := range roles[role] {
			if r.action != action || !match(r.pattern, resource) {
				continue
			}
			if r.deny {
				return Decision{Reason: reason.PermissionDenied,
					Rule: fmt.Sprintf("role:%s deny %s %s", role, action, r.pattern)}
			}
			if allowedBy == "" {
				allowedBy = fmt.Sprintf("role:%s allow %s %s", role, action, r.pattern)
			}
		}
	}
	if allowedBy == "" {
		return Decision{Reason: reason.PermissionDenied, Rule: "default deny"}
	}
	return Decision{Allow: true, Reason: reason.OK, Rule: allowedBy}
}
