// Package config holds Portcullis' typed configuration: embedded defaults,
// a strict YAML file (an unknown key is an error naming the key), and
// PORTCULLIS_* environment overrides for every key. Load never reads global
// state other than what it is given; Validate rejects values that would
// weaken security or cannot work, with an error naming the key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid is the category of every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Mode selects defaults and how strictly missing mechanisms are treated.
type Mode string

// Modes.
const (
	ModeDevelopment Mode = "development"
	ModeProduction  Mode = "production"
)

// Config is the whole gateway configuration. Field yaml tags are the file
// keys; the environment variable for a key is PORTCULLIS_ followed by the
// key path in upper case joined with '_' (listen → PORTCULLIS_LISTEN,
// mcp.session_timeout → PORTCULLIS_MCP_SESSION_TIMEOUT).
type Config struct {
	// Mode is development (default) or production.
	Mode Mode `yaml:"mode"`
	// Listen is the HTTP listen address (host:port). Port 0 picks a free port.
	Listen string `yaml:"listen"`
	// DataDir holds the database, keys and secrets; created with mode 0700.
	DataDir string `yaml:"data_dir"`
	// Workspace is the directory the file tools are confined to.
	Workspace string `yaml:"workspace"`

	HTTP    HTTPConfig    `yaml:"http"`
	MCP     MCPConfig     `yaml:"mcp"`
	Stdio   StdioConfig   `yaml:"stdio"`
	Files   FilesConfig   `yaml:"files"`
	Python  PythonConfig  `yaml:"python"`
	Sandbox SandboxConfig `yaml:"sandbox"`
	Audit   AuditConfig   `yaml:"audit"`
	Log     LogConfig     `yaml:"log"`
	Policy  PolicyConfig  `yaml:"policy"`
	Auth    AuthConfig    `yaml:"auth"`
	OIDC    OIDCConfig    `yaml:"oidc"`
	TLS     TLSConfig     `yaml:"tls"`
	Storage StorageConfig `yaml:"storage"`

	Limits     LimitsConfig     `yaml:"limits"`
	Violations ViolationsConfig `yaml:"violations"`
	Alerts     AlertsConfig     `yaml:"alerts"`
	Approval   ApprovalConfig   `yaml:"approval"`
	Command    CommandConfig    `yaml:"command"`
	HTTPFetch  HTTPFetchConfig  `yaml:"http_fetch"`
	SQL        SQLConfig        `yaml:"sql"`

	// Servers are upstream MCP servers (plugins), see ServerConfig.
	Servers []ServerConfig `yaml:"servers"`
	// Flows are information-flow rules over labelled tools: taint follows
	// the principal across its sessions and stateless calls.
	Flows []FlowRule `yaml:"flows"`
}

// PolicyConfig configures Cedar policies and how decisions are enforced.
type PolicyConfig struct {
	// Dir holds *.cedar policy files (examples in examples/policies/).
	// Empty: role grants only. Files are re-read when they change.
	Dir string `yaml:"dir"`
	// Mode is enforce (default) or report: in report mode calls that
	// Cedar policies would refuse run anyway and are audited as
	// policy.would_deny (role grants are always enforced).
	Mode string `yaml:"mode"`
	// AllowReportInProduction lets production mode start in report mode.
	AllowReportInProduction bool `yaml:"allow_report_in_production"`
	// ReloadInterval is how often policy files and the store's access
	// version are checked for changes.
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// Timezone is the IANA zone of context.hour and context.weekday.
	Timezone string `yaml:"timezone"`
}

// AuthConfig configures authentication defences.
type AuthConfig struct {
	// TrustedProxies are CIDRs of reverse proxies whose X-Forwarded-For
	// header is believed for the client address (lockout, audit).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// AllowedHosts, if set, are the only accepted Host header values.
	AllowedHosts []string      `yaml:"allowed_hosts"`
	Lockout      LockoutConfig `yaml:"lockout"`
}

// LockoutConfig configures brute-force lockout (per source address and
// per principal).
type LockoutConfig struct {
	// Threshold failures within Window lock the subject out; 0 disables.
	Threshold int           `yaml:"threshold"`
	Window    time.Duration `yaml:"window"`
	// BaseDelay is the first lockout; each further one doubles up to MaxDelay.
	BaseDelay time.Duration `yaml:"base_delay"`
	MaxDelay  time.Duration `yaml:"max_delay"`
}

// OIDCConfig configures OAuth 2.1 bearer tokens (JWTs) from an OpenID
// Connect issuer, as the MCP authorization spec requires. Off unless
// Issuer is set.
type OIDCConfig struct {
	// Issuer is the authorization server (https; http only on loopback).
	Issuer string `yaml:"issuer"`
	// Audience is this gateway's resource identifier (RFC 8707), e.g.
	// https://gateway.example.com/mcp; tokens must carry it in aud.
	Audience string `yaml:"audience"`
	// Algorithms accepted (default RS256, PS256, ES256, EdDSA).
	Algorithms []string `yaml:"algorithms"`
	// Skew tolerated on exp/nbf/iat (default 60s, at most 5m).
	Skew time.Duration `yaml:"skew"`
	// MaxAge, if set, refuses tokens issued longer ago.
	MaxAge time.Duration `yaml:"max_age"`
	// UsernameClaim (default sub), RolesClaim (default roles; dotted
	// paths such as realm_access.roles) and ScopesClaim (default scope).
	UsernameClaim string `yaml:"username_claim"`
	RolesClaim    string `yaml:"roles_claim"`
	ScopesClaim   string `yaml:"scopes_claim"`
	// RoleMap maps IdP roles or groups to Portcullis roles (empty: names
	// are used as they are). In the environment: "idp-group=role,...".
	RoleMap map[string]string `yaml:"role_map"`
	// RequiredScopes must all be in a token (else 403 insufficient_scope).
	RequiredScopes []string `yaml:"required_scopes"`
}

// Enabled reports whether OIDC bearer tokens are accepted.
func (o OIDCConfig) Enabled() bool { return o.Issuer != "" }

// TLSConfig configures the HTTPS listener.
type TLSConfig struct {
	// CertFile and KeyFile (PEM) enable TLS on the listener.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// AllowPlaintextNonLoopback lets production mode listen on a
	// non-loopback address without TLS (TLS terminated by a proxy on a
	// trusted network). Off by default.
	AllowPlaintextNonLoopback bool `yaml:"allow_plaintext_non_loopback"`
}

// HTTPConfig configures the HTTP listener.
type HTTPConfig struct {
	// MaxBodyBytes caps a request body; larger bodies get 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ShutdownTimeout bounds graceful shutdown: in-flight calls that have
	// not finished by then are cancelled.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ReadHeaderTimeout bounds reading request headers (slowloris).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
}

// MCPConfig configures the MCP endpoint.
type MCPConfig struct {
	// SessionTimeout closes idle 2025-11-25 sessions after this long.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// CallTimeout is the default wall-clock bound of one tool call.
	CallTimeout time.Duration `yaml:"call_timeout"`
}

// StdioConfig names the local principal that `portcullis stdio` serves.
type StdioConfig struct {
	User  string   `yaml:"user"`
	Roles []string `yaml:"roles"`
}

// FilesConfig configures the file tools.
type FilesConfig struct {
	ReadOnly      bool  `yaml:"read_only"`
	MaxReadBytes  int64 `yaml:"max_read_bytes"`
	MaxWriteBytes int64 `yaml:"max_write_bytes"`
	// DenyNames are sensitive names inside the workspace that no file tool
	// reads or changes: a pattern without "/" matches any path component
	// (".env", "*.pem", "id_rsa*"), one with "/" a path from the workspace
	// root (".git/config"); case-insensitive. Unset: the built-in list
	// (files.DefaultDeny: .env, .env.*, *.pem, *.key, id_rsa*, id_dsa*,
	// id_ecdsa*, id_ed25519*, .netrc, .git-credentials, .git/config,
	// .git/hooks); [] disables it.
	DenyNames []string `yaml:"deny_names"`
}

// PythonConfig configures execute_python.
type PythonConfig struct {
	// Interpreter is the python3 to run; empty means auto-detect from PATH
	// (resolving shims such as pyenv's to the real sys.executable).
	Interpreter string `yaml:"interpreter"`
	// Timeout is the default and MaxTimeout the largest wall-clock limit.
	Timeout    time.Duration `yaml:"timeout"`
	MaxTimeout time.Duration `yaml:"max_timeout"`
	// MaxOutputBytes caps stdout and stderr each.
	MaxOutputBytes int64 `yaml:"max_output_bytes"`
	// MaxCodeBytes caps the code argument.
	MaxCodeBytes int64 `yaml:"max_code_bytes"`
	// Level is the sandbox security level: maximum (default), strict,
	// standard or minimal (DESIGN §5).
	Level string `yaml:"level"`
	// MemoryBytes, CPUTime and Pids bound one run (the seed's limits by
	// default: 512 MiB, 30 s, 10 processes and threads).
	MemoryBytes int64         `yaml:"memory_bytes"`
	CPUTime     time.Duration `yaml:"cpu_time"`
	Pids        int           `yaml:"pids"`
	// CodePolicy checks code before it runs (CPython's ast, in the
	// sandbox; defence in depth, not the boundary): strict, normal or
	// legacy (log only). Empty: normal in development, strict in production.
	CodePolicy string `yaml:"code_policy"`
}

// SandboxConfig configures the native sandbox runtime.
type SandboxConfig struct {
	// ReadOnlyPaths are host paths bind-mounted read-only at the same path.
	ReadOnlyPaths []string `yaml:"read_only_paths"`
	// TmpSizeBytes caps the sandbox's /tmp tmpfs.
	TmpSizeBytes int64 `yaml:"tmp_size_bytes"`
	// PoolSize is the number of warm sandboxes kept ready per mount layout
	// (0 disables the pool).
	PoolSize int `yaml:"pool_size"`
	// AllowDegraded runs sandboxes even when a required mechanism
	// (seccomp, cgroups, the memfd copy of the init) is missing. Off by
	// default: without it the gateway refuses to offer sandboxed tools.
	// Every missing mechanism is logged as an error at start.
	AllowDegraded bool `yaml:"allow_degraded"`
}

// AuditConfig configures the audit writer.
type AuditConfig struct {
	// CommitTimeout bounds how long a call waits for its audit record to be
	// durable before it is refused with AUDIT_UNAVAILABLE.
	CommitTimeout time.Duration `yaml:"commit_timeout"`
	// QueueSize bounds records waiting for the writer (backpressure, never drop).
	QueueSize int `yaml:"queue_size"`
	// MaxBatch caps the records committed in one transaction.
	MaxBatch int `yaml:"max_batch"`
	// Linger lets a group commit smaller than the previous one wait this
	// long for more records (only under concurrency; 0 disables). It
	// doubled durable records/s with 64 concurrent calls on 2 cores.
	Linger time.Duration `yaml:"linger"`
	// ChainKeyFile holds the HMAC key of the hash chain (at least 32
	// bytes, mode 0600). Empty: PORTCULLIS_AUDIT_CHAIN_KEY (hex) if set,
	// else <data_dir>/audit-chain.key, created on first start.
	ChainKeyFile string `yaml:"chain_key_file"`
	// SigningKeyFile holds the Ed25519 checkpoint signing key (a 32-byte
	// seed, mode 0600). Empty: <data_dir>/audit-signing.key, created on
	// first start.
	SigningKeyFile string `yaml:"signing_key_file"`
	// CheckpointInterval is how often a signed checkpoint of the chain head
	// is written (only when records were added since the last one); the
	// latest is also kept in <data_dir>/audit-checkpoint.json.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// RetentionMonths keeps this many whole calendar months of records
	// before the current one; older ones are pruned at a checkpoint once
	// a day. 0 keeps everything.
	RetentionMonths int `yaml:"retention_months"`
	// Sinks forward committed records to a SIEM. A sink reads from the
	// store after commit, so a failing sink never costs a local record.
	Sinks []AuditSinkConfig `yaml:"sinks"`
}

// AuditSinkConfig is one forwarding sink.
type AuditSinkConfig struct {
	// Name identifies the sink; its delivery cursor is stored under it.
	Name string `yaml:"name"`
	// Type is "syslog" (RFC 5424) or "http" (JSON lines, Loki, Elasticsearch bulk).
	Type string `yaml:"type"`
	// Network and Address of a syslog collector: "udp" | "tcp" | "unix"
	// and host:port or a socket path.
	Network string `yaml:"network"`
	Address string `yaml:"address"`
	// URL of an HTTP collector.
	URL string `yaml:"url"`
	// Format of an HTTP sink: "jsonl" (default), "loki" (push API) or
	// "elasticsearch" (bulk API).
	Format string `yaml:"format"`
	// TokenFile holds a bearer token sent to the HTTP collector (mode 0600).
	TokenFile string `yaml:"token_file"`
	// BatchSize caps records per delivery (default 500).
	BatchSize int `yaml:"batch_size"`
	// Timeout bounds one delivery (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxBackoff caps the wait between retries (default 1m).
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// LogConfig configures the operator log (never the audit log).
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Default returns the embedded defaults: loopback listener, ./portcullis-data,
// ./workspace, development mode.
func Default() *Config {
	return &Config{
		Limits:     LimitsConfig{Quota: DefaultLimits(ModeDevelopment).Quota},
		Violations: DefaultViolations(),
		Alerts:     AlertsConfig{DedupeWindow: 10 * time.Minute, QueueSize: 1024},
		Approval:   ApprovalConfig{Wait: 30 * time.Second, TTL: 15 * time.Minute, ExemptRoles: []string{"admin"}},
		HTTPFetch:  HTTPFetchConfig{MaxBytes: 1 << 20, Timeout: 30 * time.Second},
		SQL:        SQLConfig{MaxRows: 1000, Timeout: 10 * time.Second},
		Mode:       ModeDevelopment,
		Listen:     "127.0.0.1:8420",
		DataDir:    "./portcullis-data",
		Workspace:  "./workspace",
		HTTP: HTTPConfig{
			MaxBodyBytes:      1 << 20,
			ShutdownTimeout:   10 * time.Second,
			ReadHeaderTimeout: 10 * time.Second,
		},
		MCP: MCPConfig{
			SessionTimeout: 30 * time.Minute,
			CallTimeout:    60 * time.Second,
		},
		Stdio: StdioConfig{User: "local", Roles: []string{"developer"}},
		Files: FilesConfig{MaxReadBytes: 1 << 20, MaxWriteBytes: 10 << 20},
		Python: PythonConfig{
			Timeout:        10 * time.Second,
			MaxTimeout:     60 * time.Second,
			MaxOutputBytes: 64 << 10,
			MaxCodeBytes:   256 << 10,
			Level:          "maximum",
			MemoryBytes:    512 << 20,
			CPUTime:        30 * time.Second,
			Pids:           10,
		},
		Sandbox: SandboxConfig{
			ReadOnlyPaths: []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/alternatives"},
			TmpSizeBytes:  64 << 20,
			PoolSize:      2,
		},
		Audit: AuditConfig{CommitTimeout: 5 * time.Second, QueueSize: 4096, MaxBatch: 512,
			Linger: 300 * time.Microsecond, CheckpointInterval: 15 * time.Minute},
		Log:     LogConfig{Level: "info", Format: "text"},
		Policy:  PolicyConfig{Mode: "enforce", ReloadInterval: 2 * time.Second, Timezone: "UTC"},
		Storage: StorageConfig{Driver: DriverSQLite},
		Auth: AuthConfig{Lockout: LockoutConfig{Threshold: 10, Window: 5 * time.Minute,
			BaseDelay: time.Minute, MaxDelay: time.Hour}},
	}
}

// Load returns the defaults overlaid with the YAML file at path (if path is
// not empty) and then with PORTCULLIS_* variables from environ (os.Environ
// form). It does not validate; call Validate after applying flags.
//
// Errors: ErrInvalid wrapped with the file name and the offending key for
// unknown keys and unknown PORTCULLIS_* variables, the line for YAML type
// mismatches, and variable and key for malformed PORTCULLIS_* values.
func Load(path string, environ []string) (*Config, error) {
	cfg := Default()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%w: config file: %w", ErrInvalid, err)
		}
		defer f.Close()
		if err := decodeYAML(f, cfg); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
		}
	}
	if err := applyEnv(cfg, environ); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return cfg, nil
}

// maxConfigBytes bounds a config file (it is operator input, but a wrong
// path such as /dev/zero must not hang the process).
const maxConfigBytes = 4 << 20

func decodeYAML(r io.Reader, cfg *Config) error {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigBytes+1))
	if err != nil {
		return err
	}
	if len(data) > maxConfigBytes {
		return fmt.Errorf("file larger than %d bytes", maxConfigBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: defaults
		}
		return err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}

// Validate checks cfg and makes paths absolute. Errors name the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch c.Mode {
	case ModeDevelopment, ModeProduction:
	default:
		bad("mode", "must be %q or %q, got %q", ModeDevelopment, ModeProduction, c.Mode)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		bad("listen", "must be host:port, got %q", c.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad("listen", "port must be a number 0-65535, got %q", port)
	}
	for key, p := range map[string]*string{"data_dir": &c.DataDir, "workspace": &c.Workspace} {
		if *p == "" {
			bad(key, "must not be empty")
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			bad(key, "%v", err)
			continue
		}
		*p = abs
	}
	positive := func(key string, v int64) {
		if v <= 0 {
			bad(key, "must be positive, got %d", v)
		}
	}
	positiveDur := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration, got %s", d)
		}
	}
	positive("http.max_body_bytes", c.HTTP.MaxBodyBytes)
	positiveDur("http.shutdown_timeout", c.HTTP.ShutdownTimeout)
	positiveDur("http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	positiveDur("mcp.session_timeout", c.MCP.SessionTimeout)
	positiveDur("mcp.call_timeout", c.MCP.CallTimeout)
	positive("files.max_read_bytes", c.Files.MaxReadBytes)
	positive("files.max_write_bytes", c.Files.MaxWriteBytes)
	positiveDur("python.timeout", c.Python.Timeout)
	positiveDur("python.max_timeout", c.Python.MaxTimeout)
	if c.Python.Timeout > c.Python.MaxTimeout {
		bad("python.timeout", "%s exceeds python.max_timeout %s", c.Python.Timeout, c.Python.MaxTimeout)
	}
	positive("python.max_output_bytes", c.Python.MaxOutputBytes)
	positive("python.max_code_bytes", c.Python.MaxCodeBytes)
	if c.Python.Interpreter != "" && !filepath.IsAbs(c.Python.Interpreter) {
		bad("python.interpreter", "must be an absolute path, got %q", c.Python.Interpreter)
	}
	switch c.Python.Level {
	case "maximum", "strict", "standard", "minimal":
	default:
		bad("python.level", "must be maximum, strict, standard or minimal, got %q", c.Python.Level)
	}
	positive("python.memory_bytes", c.Python.MemoryBytes)
	positiveDur("python.cpu_time", c.Python.CPUTime)
	positive("python.pids", int64(c.Python.Pids))
	positive("sandbox.tmp_size_bytes", c.Sandbox.TmpSizeBytes)
	if c.Sandbox.PoolSize < 0 || c.Sandbox.PoolSize > 64 {
		bad("sandbox.pool_size", "must be 0-64, got %d", c.Sandbox.PoolSize)
	}
	for _, p := range c.Sandbox.ReadOnlyPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			bad("sandbox.read_only_paths", "%q must be a clean absolute path", p)
		}
	}
	positiveDur("audit.commit_timeout", c.Audit.CommitTimeout)
	positive("audit.queue_size", int64(c.Audit.QueueSize))
	positive("audit.max_batch", int64(c.Audit.MaxBatch))
	positiveDur("audit.checkpoint_interval", c.Audit.CheckpointInterval)
	if c.Audit.Linger < 0 || c.Audit.Linger > 10*time.Millisecond {
		bad("audit.linger", "must be 0-10ms, got %s", c.Audit.Linger)
	}
	if c.Audit.RetentionMonths < 0 || c.Audit.RetentionMonths > 1200 {
		bad("audit.retention_months", "must be 0 (keep everything) to 1200, got %d", c.Audit.RetentionMonths)
	}
	for _, k := range []struct {
		key string
		p   *string
	}{
		{"audit.chain_key_file", &c.Audit.ChainKeyFile}, {"audit.signing_key_file", &c.Audit.SigningKeyFile},
	} {
		if *k.p != "" {
			abs, err := filepath.Abs(*k.p)
			if err != nil {
				bad(k.key, "%v", err)
			}
			*k.p = abs
		}
	}
	c.validateSinks(bad)
	c.validateAbuse(bad)
	c.validateApproval(bad)
	c.validateTools(bad)
	c.validateCodePolicy(bad)
	c.validateServers(bad)
	if c.Stdio.User == "" {
		bad("stdio.user", "must not be empty")
	}
	if len(c.Stdio.Roles) == 0 {
		bad("stdio.roles", "must name at least one role")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	c.Log.Format = strings.ToLower(c.Log.Format)
	c.Log.Level = strings.ToLower(c.Log.Level)
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	c.validateAccess(bad)
	c.validateStorage(bad)
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// validateAccess checks the policy, auth, oidc and tls sections.
func (c *Config) validateAccess(bad func(key, format string, args ...any)) {
	switch c.Policy.Mode {
	case "enforce":
	case "report":
		if c.Mode == ModeProduction && !c.Policy.AllowReportInProduction {
			bad("policy.mode", "report mode lets policy denials through; production mode refuses it unless policy.allow_report_in_production is true")
		}
	default:
		bad("policy.mode", "must be enforce or report, got %q", c.Policy.Mode)
	}
	if c.Policy.Dir != "" {
		if abs, err := filepath.Abs(c.Policy.Dir); err != nil {
			bad("policy.dir", "%v", err)
		} else {
			c.Policy.Dir = abs
		}
	}
	if c.Policy.ReloadInterval < 100*time.Millisecond {
		bad("policy.reload_interval", "must be at least 100ms, got %s", c.Policy.ReloadInterval)
	}
	if _, err := time.LoadLocation(c.Policy.Timezone); err != nil || c.Policy.Timezone == "" {
		bad("policy.timezone", "unknown time zone %q (want an IANA name such as Europe/Berlin or UTC)", c.Policy.Timezone)
	}
	for _, p := range c.Auth.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			bad("auth.trusted_proxies", "%q is not a CIDR or IP address", p)
		}
	}
	for _, h := range c.Auth.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ \t") {
			bad("auth.allowed_hosts", "%q is not a host name", h)
		}
	}
	l := c.Auth.Lockout
	if l.Threshold < 0 {
		bad("auth.lockout.threshold", "must not be negative (0 disables lockout), got %d", l.Threshold)
	} else if l.Threshold > 0 {
		positiveDur := func(key string, d time.Duration) {
			if d <= 0 {
				bad(key, "must be a positive duration, got %s", d)
			}
		}
		positiveDur("auth.lockout.window", l.Window)
		positiveDur("auth.lockout.base_delay", l.BaseDelay)
		if l.MaxDelay < l.BaseDelay {
			bad("auth.lockout.max_delay", "%s is shorter than auth.lockout.base_delay %s", l.MaxDelay, l.BaseDelay)
		}
	}
	o := c.OIDC
	if o.Enabled() {
		if o.Audience == "" {
			bad("oidc.audience", "must be set when oidc.issuer is: the resource URL tokens are issued for (RFC 8707), e.g. https://gateway.example.com/mcp")
		}
		for _, a := range o.Algorithms {
			if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
				bad("oidc.algorithms", "%q is not allowed (never none, never HMAC with an issuer's keys)", a)
			}
		}
	} else if o.Audience != "" || len(o.RoleMap) > 0 || len(o.RequiredScopes) > 0 {
		bad("oidc.issuer", "must be set when other oidc keys are (OIDC is off without an issuer)")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls.cert_file", "tls.cert_file and tls.key_file go together")
	}
	if c.Mode == ModeProduction && c.TLS.CertFile == "" && !c.TLS.AllowPlaintextNonLoopback {
		if host, _, err := net.SplitHostPort(c.Listen); err == nil && !IsLoopbackHost(host) {
			bad("listen", "production mode refuses a non-loopback address (%s) without TLS: set tls.cert_file and tls.key_file (or tls.allow_plaintext_non_loopback behind a TLS proxy)", c.Listen)
		}
	}
}

// ParsePrefix parses a CIDR ("10.0.0.0/8") or a single address.
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// IsLoopbackHost reports whether a listen or URL host is loopback:
// "localhost" or a loopback address ("" and "0.0.0.0" listen everywhere
// and are not). The doctor applies the same rule.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (c *Config) validateSinks(bad func(key, format string, args ...any)) {
	names := map[string]bool{}
	for i := range c.Audit.Sinks {
		sk := &c.Audit.Sinks[i]
		key := fmt.Sprintf("audit.sinks[%d]", i)
		if sk.Name == "" || strings.ContainsAny(sk.Name, " \t/") {
			bad(key+".name", "must be a non-empty name without spaces or slashes, got %q", sk.Name)
		} else if names[sk.Name] {
			bad(key+".name", "duplicate sink name %q", sk.Name)
		}
		names[sk.Name] = true
		switch sk.Type {
		case "syslog":
			switch sk.Network {
			case "udp", "tcp", "unix":
			default:
				bad(key+".network", "must be udp, tcp or unix, got %q", sk.Network)
			}
			if sk.Address == "" {
				bad(key+".address", "must not be empty")
			}
		case "http":
			u, err := url.Parse(sk.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(key+".url", "must be an http or https URL, got %q", sk.URL)
			} else if u.User != nil {
				bad(key+".url", "must not carry credentials; use token_file")
			} else if u.Scheme == "http" && c.Mode == ModeProduction && !IsLoopbackHost(u.Hostname()) {
				bad(key+".url", "production mode ships audit records only over https to a non-loopback collector")
			}
			switch sk.Format {
			case "":
				sk.Format = "jsonl"
			case "jsonl", "loki", "elasticsearch":
			default:
				bad(key+".format", "must be jsonl, loki or elasticsearch, got %q", sk.Format)
			}
		default:
			bad(key+".type", "must be syslog or http, got %q", sk.Type)
		}
		if sk.TokenFile != "" && sk.Type != "http" {
			bad(key+".token_file", "only for http sinks")
		}
		if sk.BatchSize == 0 {
			sk.BatchSize = 500
		}
		if sk.BatchSize < 1 || sk.BatchSize > 10000 {
			bad(key+".batch_size", "must be 1-10000, got %d", sk.BatchSize)
		}
		if sk.Timeout == 0 {
			sk.Timeout = 10 * time.Second
		}
		if sk.MaxBackoff == 0 {
			sk.MaxBackoff = time.Minute
		}
		if sk.Timeout < 0 || sk.MaxBackoff < 0 {
			bad(key, "timeout and max_backoff must be positive")
		}
	}
}
