// Package store defines the persistent state of Portcullis as repository
// interfaces and record types: users, roles and their permissions, API
// keys, MCP sessions and audit events. Backends live in sub-packages
// (store/sqlite is the embedded default); a shared conformance suite
// checks that every backend behaves the same.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
)

// Error categories. Backends wrap their errors with these (%w).
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
	// ErrSchemaNewer: the database was migrated by a newer Portcullis
	// than this binary; opening it is refused rather than risking writes
	// the newer schema does not expect (a rolling upgrade left a replica
	// on the old version).
	ErrSchemaNewer = errors.New("database schema is newer than this binary")
)

// SchemaVersions is what a backend's migration tool reports: the
// database's current schema version and the newest one the binary embeds
// (goose's Provider.GetVersions, which takes no lock).
type SchemaVersions interface {
	GetVersions(ctx context.Context) (current, newest int64, err error)
}

// CheckSchemaNotNewer returns an error wrapping ErrSchemaNewer when the
// database's schema version (from p) is above the newest migration this
// binary embeds. Backends call it after applying their migrations, which
// on a newer schema find nothing to do and write nothing.
func CheckSchemaNotNewer(ctx context.Context, p SchemaVersions) error {
	cur, newest, err := p.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if cur > newest {
		return fmt.Errorf("%w (version %d; this binary knows up to %d): run the newer version on every replica, or restore a backup taken before it migrated", ErrSchemaNewer, cur, newest)
	}
	return nil
}

// User is a person or agent identity.
type User struct {
	ID        int64
	Name      string
	Disabled  bool
	Roles     []string // sorted role names
	CreatedAt time.Time
}

// APIKey is a stored API key. The key itself is never stored: only its
// keyed HMAC (Hash). Prefix is a short, non-secret display form.
type APIKey struct {
	ID       string // public id, "key_..."
	UserID   int64
	UserName string
	Hash     []byte // HMAC-SHA256 of the key under the server secret
	Prefix   string // first characters of the key, for display
	Roles    []string
	// Scopes narrow what the key may do: tool patterns ("read_file",
	// "git_*") and admin areas ("admin:audit", "admin:*"); "*" matches
	// both; empty means everything its roles allow.
	Scopes      []string
	CreatedAt   time.Time
	ExpiresAt   *time.Time
	RevokedAt   *time.Time
	LastUsedAt  *time.Time
	RotatedFrom string // id of the key this one replaced, if any
}

// Active reports whether k can authenticate at time now.
func (k *APIKey) Active(now time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// Grant is one permission held by a role: Effect ("allow" or "deny") on
// Action ("call", "admin", "approve") for resources matching Pattern.
type Grant struct {
	Role    string
	Action  string
	Pattern string
	Effect  string
}

// Role is a named set of grants.
type Role struct {
	Name        string
	Description string
	Grants      []Grant
}

// Session is an MCP session as first seen by the gateway.
type Session struct {
	ID              string
	Principal       string
	ProtocolVersion string
	ClientName      string
	CreatedAt       time.Time
}

// Store is the full repository used by the gateway.
type Store interface {
	// EnsureUser returns the user called name, creating it with roles if it
	// does not exist (created reports which). Unknown roles: ErrInvalid.
	EnsureUser(ctx context.Context, name string, roles []string) (u User, created bool, err error)
	// UserByName returns the user or ErrNotFound.
	UserByName(ctx context.Context, name string) (User, error)
	// GrantUserRole adds role to the user (idempotent). Unknown: ErrInvalid / ErrNotFound.
	GrantUserRole(ctx context.Context, userID int64, role string) error
	// RevokeUserRole removes role from the user; not held: ErrNotFound.
	RevokeUserRole(ctx context.Context, userID int64, role string) error
	// ListUsers returns all users with their roles, by name.
	ListUsers(ctx context.Context) ([]User, error)
	// SetUserDisabled disables or enables the user; unknown: ErrNotFound.
	SetUserDisabled(ctx context.Context, name string, disabled bool) (User, error)

	// CreateAPIKey stores k. A duplicate id or hash: ErrConflict.
	CreateAPIKey(ctx context.Context, k APIKey) error
	// APIKeyByHash returns the key with this hash and its user, or ErrNotFound.
	APIKeyByHash(ctx context.Context, hash []byte) (APIKey, User, error)
	// APIKeyByID returns the key or ErrNotFound.
	APIKeyByID(ctx context.Context, id string) (APIKey, error)
	// ListAPIKeys returns all keys, newest first.
	ListAPIKeys(ctx context.Context) ([]APIKey, error)
	// RevokeAPIKey marks the key revoked at time at; unknown or already
	// revoked: ErrNotFound.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) (APIKey, error)

	// Roles returns all role names, sorted.
	Roles(ctx context.Context) ([]string, error)
	// ListRoles returns every role with its description and grants, by name.
	ListRoles(ctx context.Context) ([]Role, error)
	// CreateRole adds a role; an existing name: ErrConflict.
	CreateRole(ctx context.Context, name, description string) error
	// Grants returns every role's permissions.
	Grants(ctx context.Context) ([]Grant, error)
	// GrantPermission gives g.Role the permission (idempotent; an existing
	// grant of the same action and pattern takes g's effect). Unknown role
	// or bad action/effect: ErrInvalid.
	GrantPermission(ctx context.Context, g Grant) error
	// RevokePermission removes a grant; absent: ErrNotFound.
	RevokePermission(ctx context.Context, role, action, pattern string) error
	// AccessVersion is a counter that every change of users, roles, grants
	// or keys increases; caches compare it to notice changes made by any
	// process sharing the store.
	AccessVersion(ctx context.Context) (int64, error)

	// RecordSession stores an MCP session (idempotent on ID).
	RecordSession(ctx context.Context, s Session) error

	audit.Backend
	// QueryAudit returns events matching q (see audit.Query).
	QueryAudit(ctx context.Context, q audit.Query) ([]audit.Event, error)
	// PruneAudit deletes the records with sequence <= throughSeq (retention
	// at a checkpoint) and returns how many it deleted.
	PruneAudit(ctx context.Context, throughSeq int64) (int64, error)
	// AuditCursor is the last sequence forwarding sink name acknowledged (0: none).
	AuditCursor(ctx context.Context, name string) (int64, error)
	// SetAuditCursor records that sink name acknowledged everything up to seq.
	SetAuditCursor(ctx context.Context, name string, seq int64) error
	// Backup writes a consistent copy of the whole store to a new file at
	// path while the gateway keeps serving; an existing path: ErrConflict.
	Backup(ctx context.Context, path string) error

	AbuseStore
	ApprovalStore

	// Ping checks the store answers and can write.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// Severity of a violation (seed 004), lowest first.
type Severity int

// Severities.
const (
	SeverityLow Severity = iota + 1
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

// String returns "LOW" ... "CRITICAL".
func (s Severity) String() string {
	switch s {
	case SeverityLow:
		return "LOW"
	case SeverityMedium:
		return "MEDIUM"
	case SeverityHigh:
		return "HIGH"
	case SeverityCritical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (ParseSeverity), so a
// violation read back from the admin API's JSON keeps its severity.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSeverity parses "LOW" ... "CRITICAL" (case-insensitive).
func ParseSeverity(s string) (Severity, error) {
	for v := SeverityLow; v <= SeverityCritical; v++ {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: severity %q (want LOW, MEDIUM, HIGH or CRITICAL)", ErrInvalid, s)
}

// Violation is one recorded misbehaviour.
type Violation struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Principal string    `json:"principal,omitempty"`
	Session   string    `json:"session,omitempty"`
	Plugin    string    `json:"plugin,omitempty"`
	Tool      string    `json:"tool,omitempty"`
	// Type is one of the violation package's types (policy_denial,
	// path_escape, sandbox_violation, auth_failure, rate_limit,
	// suspicious_argument).
	Type      string   `json:"type"`
	Severity  Severity `json:"severity"`
	RequestID string   `json:"request_id,omitempty"`
	Detail    string   `json:"detail,omitempty"`
}

// ViolationQuery selects violations, newest first; zero fields do not filter.
type ViolationQuery struct {
	Principal string
	Type      string
	Since     time.Time
	// MinSeverity keeps violations of this severity or worse (0: all).
	MinSeverity Severity
	Limit       int // default 100, at most 10000
}

// Quarantine kinds.
const (
	QuarantinePrincipal = "principal"
	QuarantineSession   = "session"
	QuarantinePlugin    = "plugin"
)

// Quarantine shuts a principal, session or plugin out until released.
type Quarantine struct {
	ID            string     `json:"id"` // "qua_..."
	Kind          string     `json:"kind"`
	Subject       string     `json:"subject"` // principal name, session id or plugin name
	Reason        string     `json:"reason"`
	CreatedAt     time.Time  `json:"created_at"`
	CreatedBy     string     `json:"created_by"` // "system" for automatic ones
	ReleasedAt    *time.Time `json:"released_at,omitempty"`
	ReleasedBy    string     `json:"released_by,omitempty"`
	ReleaseReason string     `json:"release_reason,omitempty"`
}

// Usage is one principal's consumption on one UTC day (YYYY-MM-DD).
type Usage struct {
	Principal string `json:"principal"`
	Day       string `json:"day"`
	Calls     int64  `json:"calls"`
	CPUMillis int64  `json:"cpu_ms"`
}

// AbuseStore keeps violations, quarantines and quota usage.
type AbuseStore interface {
	// RecordViolations stores violations (one transaction).
	RecordViolations(ctx context.Context, vs []Violation) error
	// ListViolations returns violations matching q, newest first.
	ListViolations(ctx context.Context, q ViolationQuery) ([]Violation, error)
	// CreateQuarantine stores q; an active quarantine of the same kind and
	// subject: ErrConflict (and the existing one is returned).
	CreateQuarantine(ctx context.Context, q Quarantine) (Quarantine, error)
	// ListQuarantines returns quarantines, newest first; active only unless all.
	ListQuarantines(ctx context.Context, all bool) ([]Quarantine, error)
	// ReleaseQuarantine releases the active quarantine with this id, or of
	// this subject (any kind, principal first); none: ErrNotFound.
	ReleaseQuarantine(ctx context.Context, idOrSubject, by, reason string, at time.Time) (Quarantine, error)
	// AddUsage adds to a principal's usage of a day (created at zero).
	AddUsage(ctx context.Context, u Usage) error
	// UsageOn returns every principal's usage of a day, by principal.
	UsageOn(ctx context.Context, day string) ([]Usage, error)
}

// Approval states.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalDenied   = "denied"
	ApprovalExpired  = "expired"
	ApprovalConsumed = "consumed"
)

// Approval is a request for a human to approve one exact call.
type Approval struct {
	ID        string `json:"id"` // "apr_..."
	Principal string `json:"principal"`
	Tool      string `json:"tool"`
	// ArgsSHA256 is the hex HMAC-SHA256 (audit redaction key) of the canonical JSON of the validated
	// arguments: the approval covers exactly these arguments.
	ArgsSHA256    string          `json:"args_sha256"`
	Args          json.RawMessage `json:"args,omitempty"` // redacted, for the approver
	Justification string          `json:"justification,omitempty"`
	State         string          `json:"state"`
	CreatedAt     time.Time       `json:"created_at"`
	ExpiresAt     time.Time       `json:"expires_at"`
	DecidedBy     string          `json:"decided_by,omitempty"`
	DecidedAt     *time.Time      `json:"decided_at,omitempty"`
	Comment       string          `json:"comment,omitempty"`
	ConsumedAt    *time.Time      `json:"consumed_at,omitempty"`
	RequestID     string          `json:"request_id,omitempty"`
	Session       string          `json:"session,omitempty"`
}

// ApprovalStore keeps approval requests. State changes are compare-and-set:
// of two processes deciding or consuming the same request, one wins.
type ApprovalStore interface {
	CreateApproval(ctx context.Context, a Approval) error
	// GetApproval returns the request or ErrNotFound.
	GetApproval(ctx context.Context, id string) (Approval, error)
	// ListApprovals returns requests, newest first; state "" means all.
	ListApprovals(ctx context.Context, state string, limit int) ([]Approval, error)
	// FindApproval returns the newest request for this exact call in one
	// of states that has not expired at now, or ErrNotFound.
	FindApproval(ctx context.Context, principal, tool, argsSHA256 string, states []string, now time.Time) (Approval, error)
	// DecideApproval moves a pending, unexpired request to approved or
	// denied; anything else: ErrConflict.
	DecideApproval(ctx context.Context, id, state, by, comment string, at time.Time) (Approval, error)
	// ConsumeApproval moves an approved, unexpired request to consumed;
	// anything else (already consumed, expired, another state): ErrConflict.
	ConsumeApproval(ctx context.Context, id string, at time.Time) (Approval, error)
	// ExpireApprovals moves pending and approved requests whose expiry
	// passed to expired and returns them.
	ExpireApprovals(ctx context.Context, at time.Time) ([]Approval, error)
}
