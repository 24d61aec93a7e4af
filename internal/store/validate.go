package store

import "fmt"

// The checks below are the backend-neutral rules every backend applies
// before it writes: one definition, so that SQLite and PostgreSQL refuse
// exactly the same records (the conformance suite's Rejects cases). Each
// returns an error wrapping ErrInvalid, or nil.

// Validate checks a violation: an id, a type and a known severity.
func (v Violation) Validate() error {
	if v.Severity < SeverityLow || v.Severity > SeverityCritical || v.Type == "" || v.ID == "" {
		return fmt.Errorf("%w: violation needs an id, a type and a severity", ErrInvalid)
	}
	return nil
}

// Validate checks a quarantine: a known kind, an id and a subject.
func (q Quarantine) Validate() error {
	switch q.Kind {
	case QuarantinePrincipal, QuarantineSession, QuarantinePlugin:
	default:
		return fmt.Errorf("%w: quarantine kind %q", ErrInvalid, q.Kind)
	}
	if q.ID == "" || q.Subject == "" {
		return fmt.Errorf("%w: quarantine needs an id and a subject", ErrInvalid)
	}
	return nil
}

// Validate checks a usage increment: a principal and a YYYY-MM-DD day.
func (u Usage) Validate() error {
	if u.Principal == "" || len(u.Day) != len("2006-01-02") {
		return fmt.Errorf("%w: usage needs a principal and a day", ErrInvalid)
	}
	return nil
}

// Validate checks a grant's action, effect and pattern (whether the role
// exists is the backend's to check).
func (g Grant) Validate() error {
	switch g.Action {
	case "call", "admin", "approve":
	default:
		return fmt.Errorf("%w: unknown action %q", ErrInvalid, g.Action)
	}
	switch g.Effect {
	case "allow", "deny":
	default:
		return fmt.Errorf("%w: effect must be allow or deny, got %q", ErrInvalid, g.Effect)
	}
	if g.Pattern == "" {
		return fmt.Errorf("%w: empty pattern", ErrInvalid)
	}
	return nil
}

// ValidateNew checks a request about to be created: an id, principal,
// tool, a 64-hex-digit arguments digest and the pending state.
func (a Approval) ValidateNew() error {
	if a.ID == "" || a.Principal == "" || a.Tool == "" || len(a.ArgsSHA256) != 64 || a.State != ApprovalPending {
		return fmt.Errorf("%w: approval needs an id, principal, tool, args digest and the pending state", ErrInvalid)
	}
	return nil
}

// ValidateDecision checks that state is a decision (approved or denied).
func ValidateDecision(state string) error {
	if state != ApprovalApproved && state != ApprovalDenied {
		return fmt.Errorf("%w: decision %q", ErrInvalid, state)
	}
	return nil
}
