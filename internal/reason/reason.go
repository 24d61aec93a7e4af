// Package reason defines the stable reason codes that Portcullis attaches to
// refusals and failures. Codes appear in tool results (structuredContent.code),
// in audit records (reason) and in admin API errors. They are public contract:
// extend the list, never rename an entry.
package reason

// Code is a stable, upper-snake-case reason code such as "PERMISSION_DENIED".
type Code string

// Reason codes. The client-facing message for each is deliberately generic
// (see Message); which rule matched is recorded only in the audit log.
const (
	OK                   Code = "OK"
	Unauthenticated      Code = "UNAUTHENTICATED"
	PermissionDenied     Code = "PERMISSION_DENIED"
	UnknownTool          Code = "UNKNOWN_TOOL"
	InvalidArguments     Code = "INVALID_ARGUMENTS"
	PathOutsideWorkspace Code = "PATH_OUTSIDE_WORKSPACE"
	PathForbidden        Code = "PATH_FORBIDDEN"
	NotFound             Code = "NOT_FOUND"
	AlreadyExists        Code = "ALREADY_EXISTS"
	TooLarge             Code = "TOO_LARGE"
	ReadOnly             Code = "READ_ONLY"
	ToolFailed           Code = "TOOL_FAILED"
	NonZeroExit          Code = "NON_ZERO_EXIT"
	Timeout              Code = "TIMEOUT"
	SandboxViolation     Code = "SANDBOX_VIOLATION"
	SandboxUnavailable   Code = "SANDBOX_UNAVAILABLE"
	AuditUnavailable     Code = "AUDIT_UNAVAILABLE"
	Cancelled            Code = "CANCELLED"
	BadRequest           Code = "BAD_REQUEST"
	Unavailable          Code = "UNAVAILABLE" // shutting down
	Internal             Code = "INTERNAL"
	RateLimited          Code = "RATE_LIMITED"        // a token bucket is empty; retry after the hint
	ConcurrencyLimited   Code = "CONCURRENCY_LIMITED" // too many calls running at once
	QuotaExceeded        Code = "QUOTA_EXCEEDED"      // the principal's daily quota is used up
	TooLargeResponse     Code = "RESPONSE_TRUNCATED"  // the result was cut at the response limit (a notice, not a failure)
	ApprovalRequired     Code = "APPROVAL_REQUIRED"   // held for a human's approval; retry the identical call once approved
	ApprovalDenied       Code = "APPROVAL_DENIED"     // an approver denied this exact call
)

// Message returns the generic client-facing text for c. It never names the
// rule, the policy or the internal cause behind the code.
func Message(c Code) string {
	switch c {
	case OK:
		return "ok"
	case Unauthenticated:
		return "authentication required"
	case PermissionDenied:
		return "access denied"
	case UnknownTool:
		return "unknown tool"
	case InvalidArguments:
		return "invalid arguments"
	case PathOutsideWorkspace:
		return "path is outside the workspace"
	case PathForbidden:
		return "path is not allowed"
	case NotFound:
		return "not found"
	case AlreadyExists:
		return "already exists"
	case TooLarge:
		return "too large"
	case ReadOnly:
		return "workspace is read-only"
	case NonZeroExit:
		return "program exited with a non-zero status"
	case Timeout:
		return "timed out"
	case SandboxViolation:
		return "sandbox limit reached"
	case SandboxUnavailable:
		return "sandbox unavailable"
	case AuditUnavailable:
		return "audit log unavailable; call refused"
	case Cancelled:
		return "cancelled"
	case BadRequest:
		return "bad request"
	case Unavailable:
		return "service unavailable; retry later"
	case RateLimited:
		return "rate limit reached; retry later"
	case ConcurrencyLimited:
		return "too many calls in progress; retry later"
	case QuotaExceeded:
		return "daily quota used up"
	case TooLargeResponse:
		return "response truncated at the size limit"
	case ApprovalRequired:
		return "approval required"
	case ApprovalDenied:
		return "approval denied"
	default:
		return "tool failed"
	}
}
