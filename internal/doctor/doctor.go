// Package doctor lints a Portcullis configuration for security: the
// preflight check of seed 001 (issue 10). Lint returns findings, each with
// a stable check ID, a severity, the configuration key at fault and the
// fix. `portcullis doctor` prints them and exits by the worst severity
// (ExitCode); `portcullis serve` logs them and, in production mode, refuses
// to start on a critical one (Gate).
//
// Critical is reserved for real holes: a non-loopback listener without
// TLS, report-only policy in production without the explicit flag,
// auth.trusted_proxies trusting every
// address, key files other users can read, a data directory holding data
// that other users can enter, and a data directory reachable by tools or
// plugins. Warnings
// are weakened settings an operator should review; info notes defaults
// that are fine for some deployments only.
package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/internal/config"
)

// Severity grades a finding.
type Severity int

// Severities, least severe first.
const (
	// Info notes a setting that is fine for some deployments only.
	Info Severity = iota
	// Warning is a weakened setting to review.
	Warning
	// Critical is a security hole; production mode refuses to start on it.
	Critical
)

// String returns "info", "warning" or "critical".
func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("Severity(%d)", int(s))
}

// MarshalText encodes s as its name (JSON output of `doctor --json`).
func (s Severity) MarshalText() ([]byte, error) {
	if s < Info || s > Critical {
		return nil, fmt.Errorf("doctor: unknown severity %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	for _, v := range []Severity{Info, Warning, Critical} {
		if string(b) == v.String() {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("doctor: unknown severity %q", b)
}

// Finding is one result of the lint.
type Finding struct {
	// ID names the check, stable across releases ("listen-no-tls"); see Checks.
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	// Key is the configuration key at fault in its dotted YAML form
	// ("auth.trusted_proxies", "servers[0].security_level").
	Key string `json:"key"`
	// Message says what is wrong and why it matters. It names paths and
	// modes, never the content of a secret.
	Message string `json:"message"`
	// Fix says how to correct it.
	Fix string `json:"fix"`
}

// FS is what the lint reads from the file system: the data directory, the
// workspace and the key files' metadata (never their content).
type FS interface {
	// Stat follows symbolic links, as os.Stat.
	Stat(name string) (fs.FileInfo, error)
	// Lstat does not, as os.Lstat.
	Lstat(name string) (fs.FileInfo, error)
}

// OSFS is the host's file system.
type OSFS struct{}

var _ FS = OSFS{}

// Stat is os.Stat.
func (OSFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// Lstat is os.Lstat.
func (OSFS) Lstat(name string) (fs.FileInfo, error) { return os.Lstat(name) }

// Lint checks cfg, which should have passed config.Validate (paths
// absolute, limits merged with the mode's defaults), and returns its
// findings, most severe first and otherwise in the order of Checks. File
// checks go through fsys; a path that does not exist yet (a data directory
// the gateway will create) is not a finding. Lint never changes anything.
func Lint(cfg *config.Config, fsys FS) []Finding {
	l := &linter{cfg: cfg, fsys: fsys, prod: cfg.Mode == config.ModeProduction}
	l.mode()
	l.transport()
	l.access()
	l.sandbox()
	l.tools()
	l.plugins()
	l.limits()
	l.monitoring()
	l.storage()
	l.files()
	order := map[string]int{}
	for i, c := range catalogue {
		order[c.ID] = i
	}
	slices.SortStableFunc(l.out, func(a, b Finding) int {
		if a.Severity != b.Severity {
			return int(b.Severity) - int(a.Severity)
		}
		return order[a.ID] - order[b.ID]
	})
	return l.out
}

// Worst returns the highest severity among findings, and false if there
// are none.
func Worst(findings []Finding) (Severity, bool) {
	if len(findings) == 0 {
		return Info, false
	}
	worst := Info
	for _, f := range findings {
		worst = max(worst, f.Severity)
	}
	return worst, true
}

// Exit statuses of `portcullis doctor` for the configuration lint.
const (
	ExitOK       = 0 // no findings, or info only
	ExitWarning  = 1 // at least one warning, no critical finding
	ExitCritical = 2 // at least one critical finding
)

// ExitCode maps findings to the exit status of `portcullis doctor`:
// ExitOK, ExitWarning or ExitCritical.
func ExitCode(findings []Finding) int {
	switch w, _ := Worst(findings); w {
	case Critical:
		return ExitCritical
	case Warning:
		return ExitWarning
	}
	return ExitOK
}

// ErrCritical is the category of Gate's error.
var ErrCritical = errors.New("critical configuration findings")

// Gate returns nil if no finding is critical, and otherwise an error
// wrapping ErrCritical that lists each critical finding with its fix:
// what `portcullis serve` refuses to start on in production mode.
func Gate(findings []Finding) error {
	var b strings.Builder
	for _, f := range findings {
		if f.Severity == Critical {
			fmt.Fprintf(&b, "\n  %s (%s): %s\n    fix: %s", f.ID, f.Key, f.Message, f.Fix)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return fmt.Errorf("%w (`portcullis doctor` prints the full report):%s", ErrCritical, b.String())
}

// Check describes one check of the lint.
type Check struct {
	// ID is the stable identifier findings carry.
	ID string
	// Worst is the highest severity the check reports.
	Worst Severity
	// Doc says what the check looks for.
	Doc string
}

// Checks returns the catalogue of checks, in report order.
func Checks() []Check { return slices.Clone(catalogue) }

var catalogue = []Check{
	{"mode-development", Info, "mode is development: lenient defaults, sandbox failures only disable tools"},
	{"listen-no-tls", Critical, "listen is a non-loopback address and TLS is off"},
	{"plugin-allow-invalid", Critical, "a servers[].network.allow entry the egress proxy refuses (the gateway will not start)"},
	{"storage-dsn-unusable", Critical, "storage.driver postgres with a connection string that cannot be read or parsed"},
	{"storage-dsn-no-tls", Critical, "PostgreSQL on another host (any host of a multi-host DSN) without sslmode require/verify-ca/verify-full (warning in development)"},
	{"storage-dsn-tls-unverified", Warning, "PostgreSQL on another host with sslmode require (no certificate check) or verify-ca (no host name check) instead of verify-full"},
	{"listen-plaintext-allowed", Warning, "plain HTTP on a non-loopback address behind a declared TLS proxy"},
	{"allowed-hosts-empty", Warning, "non-loopback listener without auth.allowed_hosts"},
	{"trusted-proxies-any", Critical, "auth.trusted_proxies contains 0.0.0.0/0 or ::/0"},
	{"lockout-disabled", Warning, "auth.lockout.threshold is 0"},
	{"oidc-issuer-http", Warning, "oidc.issuer is plain http (warning in production)"},
	{"policy-report-mode", Critical, "policy.mode report: critical in production without policy.allow_report_in_production, else warning (info in development)"},
	{"sandbox-degraded", Warning, "sandbox.allow_degraded: an explicit opt-in to weaker isolation"},
	{"python-level-minimal", Warning, "python.level minimal (warning in production)"},
	{"code-policy-legacy", Warning, "python.code_policy legacy (warning in production)"},
	{"command-allow-interpreter", Warning, "production command.allow lists a shell or interpreter"},
	{"files-deny-disabled", Warning, "files.deny_names is an empty list"},
	{"files-writable", Info, "production file tools may write the workspace"},
	{"http-fetch-private", Warning, "http_fetch.allow_private opens every address or cloud metadata (info for other ranges in production)"},
	{"plugin-level-minimal", Warning, "a server runs at security level minimal"},
	{"plugin-network-wildcard", Warning, "a production server's network.allow has a wildcard host"},
	{"limits-weak", Warning, "HIGH or CRITICAL tools without a rate or concurrency limit, or above 300 (HIGH) / 100 (CRITICAL) calls per minute"},
	{"limits-principal-unbounded", Warning, "limits.principal without a rate or a concurrency limit"},
	{"limits-large-payload", Warning, "http.max_body_bytes or a level's max_arg_bytes above 32 MiB"},
	{"quota-unlimited", Warning, "production without a daily call or CPU quota"},
	{"quarantine-disabled", Warning, "production with automatic quarantine off (count 0)"},
	{"alerts-no-sink", Warning, "production without an alert webhook or SMTP server"},
	{"approval-exempt-roles", Warning, "production approval.exempt_roles beyond admin"},
	{"audit-retention-short", Warning, "audit.retention_months 1 or 2 (info with an audit sink)"},
	{"audit-no-sink", Info, "production without an audit sink (SIEM)"},
	{"data-dir-permissions", Critical, "the data directory is not a directory, or is accessible to group or others (info while it holds no database or key)"},
	{"data-dir-exposed", Critical, "the data directory overlaps the workspace, a sandbox read-only path or a server mount"},
	{"key-file-permissions", Critical, "a key file is accessible to others, or to its group where the gateway refuses that (critical); a group-readable TLS key (warning)"},
	{"key-file-type", Warning, "a key file is a symbolic link or not a regular file"},
	{"key-file-missing", Warning, "a configured key, certificate or secret file does not exist"},
	{"workspace-world-writable", Warning, "the workspace is writable by every local user"},
	{"admin-key-on-disk", Info, "production data directory still holds the bootstrap admin.key"},
}
