// Package audit records what happened, durably and before it matters: typed
// events with stable dotted names, a group-commit writer that acknowledges a
// record only once its transaction has committed, and redaction of
// sensitive argument values with a keyed HMAC (Vault's hashstructure idea).
//
// Rule (Vault, audit/broker.go): no tool runs unless its tool.call.start
// record is durable. Emit returns ErrUnavailable when the backend cannot
// commit within the configured bound; callers refuse the call.
package audit

import (
	"encoding/json"
	"time"

	"github.com/portcullis/portcullis/internal/reason"
)

// Type is a stable dotted event name. Types are public contract: they are
// catalogued in docs/audit-events.md and a test fails on undocumented ones.
type Type string

// Event types.
const (
	ToolCallStart   Type = "tool.call.start"   // a tool is about to run; durable before it does
	ToolCallEnd     Type = "tool.call.end"     // a tool finished (ok, error, timeout, cancelled)
	ToolCallRefused Type = "tool.call.refused" // refused before running: unknown tool, bad arguments
	PolicyDeny      Type = "policy.deny"       // authorization refused a tools/call
	AuthFailure     Type = "auth.failure"      // missing, malformed, unknown, revoked or expired credential
	RequestInvalid  Type = "request.invalid"   // malformed or refused HTTP/JSON-RPC request of a known principal
	AdminKeyCreate  Type = "admin.key.create"
	AdminKeyRevoke  Type = "admin.key.revoke"
	AdminUserCreate Type = "admin.user.create"
	AdminUserGrant  Type = "admin.user.role_grant"
	AdminDenied     Type = "admin.denied" // a non-admin principal called the admin API
	ServerStart     Type = "server.start"
	ServerStop      Type = "server.stop"
	SessionCreate   Type = "mcp.session.create"

	PolicyWouldDeny    Type = "policy.would_deny"      // report mode: a call that enforce mode would refuse ran anyway
	PolicyReload       Type = "policy.reload"          // Cedar policies or role grants were reloaded
	PolicyReloadFailed Type = "policy.reload_failed"   // a reload was rejected; the previous policies stay in force
	AuthLockout        Type = "auth.lockout"           // a source address or principal crossed the failure threshold
	AdminUserDisable   Type = "admin.user.disable"     // a user was disabled
	AdminUserEnable    Type = "admin.user.enable"      // a user was enabled again
	AdminUserRevoke    Type = "admin.user.role_revoke" // a role was taken from a user
	AdminRoleCreate    Type = "admin.role.create"
	AdminRoleGrant     Type = "admin.role.permission_grant"
	AdminRoleRevoke    Type = "admin.role.permission_revoke"
	AdminKeyRotate     Type = "admin.key.rotate" // a key was replaced by a new one and revoked
	AdminPolicyReload  Type = "admin.policy.reload"
	AdminPolicyTest    Type = "admin.policy.test"

	AuditCheckpoint Type = "audit.checkpoint" // a signed statement of the chain head; detail holds the Checkpoint
	AuditPrune      Type = "audit.prune"      // retention removed records up to a checkpoint
	AuditExport     Type = "audit.export"     // an administrator read or exported audit records in bulk

	LimitRate         Type = "limit.rate"         // a call was refused by a rate limit (token bucket)
	LimitConcurrency  Type = "limit.concurrency"  // a call was refused: too many calls in progress
	LimitQuota        Type = "limit.quota"        // a call was refused: the daily quota is used up
	QuarantineCreate  Type = "quarantine.create"  // a principal, session or plugin was quarantined
	QuarantineRelease Type = "quarantine.release" // an administrator released a quarantine
	QuarantineRefused Type = "quarantine.refused" // a call by or to a quarantined subject was refused

	ApprovalRequest Type = "approval.request" // a call was held for approval; a request was created
	ApprovalGrant   Type = "approval.grant"   // an approver approved a request
	ApprovalDeny    Type = "approval.deny"    // an approver denied a request
	ApprovalExpire  Type = "approval.expire"  // a pending or unused approved request expired
	ApprovalConsume Type = "approval.consume" // an approved request was used by the identical call (single use)

	AdminSecretSet    Type = "admin.secret.set"    // a secret was stored or replaced (never its value)
	AdminSecretDelete Type = "admin.secret.delete" // a secret was deleted

	PluginStart        Type = "plugin.start"         // an upstream MCP server started (or restarted) and answered initialize
	PluginExit         Type = "plugin.exit"          // an upstream server's process ended or its connection failed
	PluginToolsChanged Type = "plugin.tools.changed" // a server's tool definition differs from its pinned one; the tool is withheld
	PluginToolFlagged  Type = "plugin.tool.flagged"  // the poisoning scan flagged a tool definition; the tool is withheld
	PluginToolAccept   Type = "plugin.tool.accept"   // an administrator accepted a pending tool definition
	PluginToolRejected Type = "plugin.tool.rejected" // a tool was not offered (invalid schema, name clash)
	EgressConnect      Type = "egress.connect"       // a sandboxed server's connection through the egress proxy ended
	EgressRefused      Type = "egress.refused"       // the egress proxy refused a connection
	FlowDeny           Type = "flow.deny"            // a flow rule refused a call in a session that had reached a labelled tool

	ConsoleSessionCreate Type = "console.session.create" // an administrator signed in to the web console
	ConsoleSessionEnd    Type = "console.session.end"    // an administrator signed out of the web console
)

// Types lists every event type Portcullis emits.
var Types = []Type{
	ToolCallStart, ToolCallEnd, ToolCallRefused, PolicyDeny, AuthFailure,
	RequestInvalid, AdminKeyCreate, AdminKeyRevoke, AdminUserCreate,
	AdminUserGrant, AdminDenied, ServerStart, ServerStop, SessionCreate,
	PolicyWouldDeny, PolicyReload, PolicyReloadFailed, AuthLockout,
	AdminUserDisable, AdminUserEnable, AdminUserRevoke, AdminRoleCreate,
	AdminRoleGrant, AdminRoleRevoke, AdminKeyRotate, AdminPolicyReload,
	AdminPolicyTest, AuditCheckpoint, AuditPrune, AuditExport,
	LimitRate, LimitConcurrency, LimitQuota, QuarantineCreate, QuarantineRelease, QuarantineRefused,
	ApprovalRequest, ApprovalGrant, ApprovalDeny, ApprovalExpire, ApprovalConsume,
	AdminSecretSet, AdminSecretDelete,
	PluginStart, PluginExit, PluginToolsChanged, PluginToolFlagged, PluginToolAccept, PluginToolRejected,
	EgressConnect, EgressRefused, FlowDeny, ConsoleSessionCreate, ConsoleSessionEnd,
}

// codes are the stable numeric event codes (for SIEM rules that match on
// numbers, like Windows event ids): 1xx tool calls, 2xx authentication,
// 3xx policy, 4xx administration, 5xx the audit trail itself, 6xx
// limits, 7xx quarantine, 8xx approvals, 9xx the server, its upstream servers (91x-92x) and egress (93x). Never renumber; new types take new numbers.
var codes = map[Type]int{
	ToolCallStart: 100, ToolCallEnd: 101, ToolCallRefused: 102, RequestInvalid: 110, SessionCreate: 120,
	AuthFailure: 200, AuthLockout: 201, ConsoleSessionCreate: 202, ConsoleSessionEnd: 203,
	PolicyDeny: 300, PolicyWouldDeny: 301, PolicyReload: 310, PolicyReloadFailed: 311,
	AdminDenied: 400, AdminUserCreate: 410, AdminUserGrant: 411, AdminUserDisable: 412, AdminUserEnable: 413,
	AdminUserRevoke: 414, AdminRoleCreate: 420, AdminRoleGrant: 421, AdminRoleRevoke: 422,
	AdminKeyCreate: 430, AdminKeyRevoke: 431, AdminKeyRotate: 432, AdminPolicyReload: 440, AdminPolicyTest: 441,
	AdminSecretSet: 450, AdminSecretDelete: 451,
	AuditCheckpoint: 500, AuditPrune: 501, AuditExport: 502,
	LimitRate: 600, LimitConcurrency: 601, LimitQuota: 602,
	QuarantineCreate: 700, QuarantineRelease: 701, QuarantineRefused: 702,
	ApprovalRequest: 800, ApprovalGrant: 801, ApprovalDeny: 802, ApprovalExpire: 803, ApprovalConsume: 804,
	ServerStart: 900, ServerStop: 901,
	PluginStart: 910, PluginExit: 911, PluginToolsChanged: 920, PluginToolFlagged: 921, PluginToolAccept: 922,
	PluginToolRejected: 923, EgressConnect: 930, EgressRefused: 931, FlowDeny: 302,
}

// Code returns the stable numeric code of t, 0 for an unknown type.
func (t Type) Code() int { return codes[t] }

// Known reports whether t is one of Types.
func (t Type) Known() bool { return codes[t] != 0 }

// Status values of an event.
const (
	StatusStarted = "started"
	StatusOK      = "ok"
	StatusError   = "error"
	StatusRefused = "refused"
)

// Decision values of an event.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// Event is one audit record. Fields that do not apply are empty.
// Args holds the redacted arguments (sensitive values replaced by
// "hmac-sha256:<hex>" digests); ArgsDigest and ResultDigest are keyed
// HMAC-SHA256 digests (hex) of the canonical JSON of the full values.
//
// Seq is the record's place in the whole log, assigned in commit order
// across every chain; Chain names the hash chain it is sealed into (the
// writing replica's id, "" for the default chain).
type Event struct {
	Seq          int64           `json:"seq"`
	Chain        string          `json:"chain,omitempty"`
	ID           string          `json:"id"`
	Time         time.Time       `json:"time"`
	Type         Type            `json:"type"`
	Principal    string          `json:"principal,omitempty"`
	Roles        []string        `json:"roles,omitempty"`
	Session      string          `json:"session,omitempty"`
	RequestID    string          `json:"request_id,omitempty"`
	RemoteAddr   string          `json:"remote_addr,omitempty"`
	Tool         string          `json:"tool,omitempty"`
	Server       string          `json:"server,omitempty"`
	ArgsDigest   string          `json:"args_digest,omitempty"`
	Args         json.RawMessage `json:"args,omitempty"`
	Decision     string          `json:"decision,omitempty"`
	Reason       reason.Code     `json:"reason,omitempty"`
	Status       string          `json:"status,omitempty"`
	Duration     time.Duration   `json:"duration_ns,omitempty"`
	ResultDigest string          `json:"result_digest,omitempty"`
	// Error is the generic message the client saw, if any.
	Error string `json:"error,omitempty"`
	// Detail is for operators only: which rule matched, the internal cause.
	Detail string `json:"detail,omitempty"`
	// PrevHash and Hash link the record into the tamper-evident chain
	// (hex HMAC-SHA256, see Chain); set by the backend when it commits.
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

// Query selects events. Zero fields do not filter. Results are ordered by
// sequence, newest first, and capped at Limit (default 100, max 10000).
type Query struct {
	Principal string
	// Role matches events whose principal held this role.
	Role      string
	Tool      string
	Server    string
	Type      Type
	Status    string
	Decision  string
	RequestID string
	Session   string
	// Chain matches the records of one named chain (empty: every chain).
	Chain string
	Since time.Time // inclusive
	Until time.Time // exclusive
	// BeforeSeq pages backwards: only events with Seq < BeforeSeq.
	BeforeSeq int64
	// AfterSeq pages forwards: only events with Seq > AfterSeq.
	AfterSeq int64
	// Ascending orders by sequence, oldest first (export, tail, verify).
	Ascending bool
	Limit     int
}

// Query limits.
const (
	DefaultQueryLimit = 100
	MaxQueryLimit     = 10000
)
