// Package flow applies information-flow rules to the tool calls of an MCP
// session (seed 004's plugin "communication rules", applied to the data
// flowing through a session):
//
//	flows:
//	  - after: {label: private-data}
//	    then: {label: external-sink, action: deny}  # or require_approval
//
// Tools carry labels (tool.Definition.Labels). Once a session has
// successfully called a tool carrying a rule's After label, the session and
// its principal are tainted with that label, and a later call in the same
// session, in another session of the principal or by the principal over
// the stateless transport, to a tool carrying the rule's Then label is
// refused (ActionDeny) or needs a human's
// approval (ActionRequireApproval). A call that failed or was refused
// taints nothing: the gateway calls Tracker.Record only after a tool call
// succeeded, and Tracker.Check, before the call runs, only reads.
//
// Taint is kept per key (Key) and a caller has two (Keys): its MCP session
// and its principal. Record taints both and Check reads both, so a
// principal cannot shed its taint by opening a new session or by calling
// over the stateless transport. Keys are bounded in number
// (Config.MaxKeys, least recently used evicted) and forgotten after an
// idle time (Config.TTL), so a stream of sessions cannot grow memory
// without bound. Forgetting is the one way taint is lost, and no event
// sheds it early (the end of a session does not: its principal keeps the
// taint): size TTL above the longest time a principal's taint must hold
// and MaxKeys above the number of sessions and principals live at once.
//
// The package decides; the gateway refuses, asks for approval and audits
// the refusal with the Decision's rule name and taint.
package flow

import (
	"errors"
	"fmt"
	"strconv"
)

// Action is what a matching rule does to a call: ActionDeny or
// ActionRequireApproval. The zero Action, in a Decision, means allowed.
type Action string

// Actions of a rule, from strictest.
const (
	// ActionDeny refuses the call.
	ActionDeny Action = "deny"
	// ActionRequireApproval holds the call until a human approves it.
	ActionRequireApproval Action = "require_approval"
)

// strictness orders actions: deny > require_approval > allowed ("").
func (a Action) strictness() int {
	switch a {
	case ActionDeny:
		return 2
	case ActionRequireApproval:
		return 1
	}
	return 0
}

// Match selects the tools whose calls taint a session: those carrying
// Label. Label is required: 1 to MaxLabelLen bytes of a-z, 0-9, '.', '_'
// and '-'.
type Match struct {
	Label string `yaml:"label" json:"label"`
}

// Then selects the tools whose calls a tainted session may not make freely
// (those carrying Label, syntax as Match.Label) and what happens to such a
// call (Action, required: no default).
type Then struct {
	Label  string `yaml:"label" json:"label"`
	Action Action `yaml:"action" json:"action"`
}

// Rule is one flow rule: after a successful call to a tool labelled
// After.Label, calls in the same session or by the same principal (Keys)
// to tools labelled Then.Label get Then.Action.
//
// After and Then may name the same label: the rule then allows a session
// one successful call to tools with that label, and refuses (or holds for
// approval) every later one.
type Rule struct {
	// Name identifies the rule in decisions and audit records. Optional:
	// an empty Name is "flow-<index>" (index in the rule list, from 0).
	// Same syntax as labels; unique after defaulting.
	Name  string `yaml:"name,omitempty" json:"name,omitempty"`
	After Match  `yaml:"after" json:"after"`
	Then  Then   `yaml:"then" json:"then"`
}

// MaxLabelLen is the longest label or rule name, in bytes.
const MaxLabelLen = 128

// ErrInvalid is the category of every error of Validate and New.
var ErrInvalid = errors.New("flow: invalid configuration")

// RuleError is one problem of one rule, at Field (e.g. "then.action") of
// the rule at Index in the list. Its message reads
// `flows[1].then.action: unknown action "allow" (want deny or require_approval)`.
type RuleError struct {
	Index int
	Field string
	Msg   string
}

// Error returns "flows[<Index>].<Field>: <Msg>".
func (e *RuleError) Error() string {
	return "flows[" + strconv.Itoa(e.Index) + "]." + e.Field + ": " + e.Msg
}

// Validate checks rules: every label and explicit name well formed, every
// action ActionDeny or ActionRequireApproval (an empty action is an error,
// not a default), and rule names unique once defaulted. It reports every
// problem: ErrInvalid wrapping the *RuleError of each, joined
// (errors.Join), in rule order. No rules is valid.
func Validate(rules []Rule) error {
	var errs []error
	bad := func(i int, field, format string, args ...any) {
		errs = append(errs, &RuleError{Index: i, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	label := func(i int, field, l string) {
		switch {
		case l == "":
			bad(i, field, "missing label")
		case !validName(l):
			bad(i, field, "invalid label %q (want 1-%d of a-z 0-9 . _ -)", l, MaxLabelLen)
		}
	}
	seen := make(map[string]int, len(rules))
	for i, r := range rules {
		name := ruleName(r, i)
		if r.Name != "" && !validName(r.Name) {
			bad(i, "name", "invalid name %q (want 1-%d of a-z 0-9 . _ -)", r.Name, MaxLabelLen)
		} else if j, dup := seen[name]; dup {
			bad(i, "name", "duplicate rule name %q (also flows[%d])", name, j)
		} else {
			seen[name] = i
		}
		label(i, "after.label", r.After.Label)
		label(i, "then.label", r.Then.Label)
		switch r.Then.Action {
		case ActionDeny, ActionRequireApproval:
		case "":
			bad(i, "then.action", "missing action (want deny or require_approval)")
		default:
			bad(i, "then.action", "unknown action %q (want deny or require_approval)", r.Then.Action)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// ruleName is r's name, defaulted to "flow-<i>".
func ruleName(r Rule, i int) string {
	if r.Name != "" {
		return r.Name
	}
	return "flow-" + strconv.Itoa(i)
}

// validName reports whether s is 1 to MaxLabelLen bytes of a-z, 0-9, '.',
// '_' and '-'.
func validName(s string) bool {
	if s == "" || len(s) > MaxLabelLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Decision is the outcome of Tracker.Check. A zero Decision allows the
// call; otherwise Action is ActionDeny or ActionRequireApproval, Rule the
// name of the rule that decided and Label the session's taint (the rule's
// After label) that triggered it. Rule and Label belong in the audit
// record, not in the client's error.
type Decision struct {
	Action Action
	Rule   string
	Label  string
}

// Allowed reports whether d lets the call run without approval.
func (d Decision) Allowed() bool { return d.Action == "" }

// Key returns one tracker key: "s:"+session when session is not empty
// (taint per MCP session, Mcp-Session-Id), else "p:"+principal (taint per
// principal, shared by all of its sessions and stateless calls). The
// prefixes keep the two spaces apart: no session id can collide with a
// principal name (session "x" is "s:x", principal "s:x" is "p:s:x"). An
// empty principal is the key "p:", shared by every such caller (stricter,
// not looser).
func Key(session, principal string) string {
	if session != "" {
		return "s:" + session
	}
	return "p:" + principal
}

// Keys returns the keys a caller's taint is recorded under (Record each)
// and checked against (Tracker.CheckKeys): its session's key, when session
// is not empty, then its principal's, Key("", principal). The principal's
// key is the same for every session of the principal and for its
// stateless calls, so taint gained in one follows the principal into all
// of them.
func Keys(session, principal string) []string {
	if session == "" {
		return []string{Key("", principal)}
	}
	return []string{Key(session, ""), Key("", principal)}
}
