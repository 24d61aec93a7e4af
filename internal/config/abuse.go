package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// LimitsConfig configures rate, concurrency, size and time limits (issue
// 6). Defaults come per tool sensitivity (Levels; the embedded defaults
// depend on the mode), then per tool (Tools), then per role (Roles: for a
// principal holding several roles with an override, the most generous value
// of each field wins). A zero field inherits.
type LimitsConfig struct {
	// Levels are the defaults per sensitivity: keys LOW, MEDIUM, HIGH, CRITICAL.
	Levels map[string]ToolLimits `yaml:"levels"`
	// Tools override per tool name (plugin tools: <server>__<tool>).
	Tools map[string]ToolLimits `yaml:"tools"`
	// Roles override per role name.
	Roles map[string]ToolLimits `yaml:"roles"`
	// Principal bounds one principal across all tools.
	Principal PrincipalLimits `yaml:"principal"`
	// Quota bounds one principal per UTC day.
	Quota QuotaConfig `yaml:"quota"`
}

// ToolLimits are the limits of calls to one tool.
type ToolLimits struct {
	// RatePerMinute refills the token bucket of each principal × tool.
	RatePerMinute float64 `yaml:"rate_per_minute" json:"rate_per_minute,omitempty"`
	// Burst is the bucket size (calls that may come at once).
	Burst int `yaml:"burst" json:"burst,omitempty"`
	// Concurrency caps calls of the tool running at once, all principals.
	Concurrency int `yaml:"concurrency" json:"concurrency,omitempty"`
	// PrincipalConcurrency caps calls of the tool running at once by one principal.
	PrincipalConcurrency int `yaml:"principal_concurrency" json:"principal_concurrency,omitempty"`
	// Timeout bounds one call (wall clock).
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// MaxArgBytes caps the raw arguments of one call.
	MaxArgBytes int64 `yaml:"max_arg_bytes" json:"max_arg_bytes,omitempty"`
	// MaxResponseBytes caps the result text; longer results are truncated
	// with a notice.
	MaxResponseBytes int64 `yaml:"max_response_bytes" json:"max_response_bytes,omitempty"`
}

// PrincipalLimits bound one principal across all tools.
type PrincipalLimits struct {
	RatePerMinute float64 `yaml:"rate_per_minute"`
	Burst         int     `yaml:"burst"`
	Concurrency   int     `yaml:"concurrency"`
}

// QuotaConfig bounds one principal per UTC day; 0 means unlimited.
type QuotaConfig struct {
	CallsPerDay      int64   `yaml:"calls_per_day"`
	CPUSecondsPerDay float64 `yaml:"cpu_seconds_per_day"`
	// Roles override per role (the most generous wins).
	Roles map[string]QuotaLimits `yaml:"roles"`
}

// QuotaLimits is one role's quota override.
type QuotaLimits struct {
	CallsPerDay      int64   `yaml:"calls_per_day" json:"calls_per_day,omitempty"`
	CPUSecondsPerDay float64 `yaml:"cpu_seconds_per_day" json:"cpu_seconds_per_day,omitempty"`
}

// ViolationsConfig configures anomaly rules and automatic quarantine.
type ViolationsConfig struct {
	Rules      AnomalyRules     `yaml:"rules"`
	Quarantine QuarantineConfig `yaml:"quarantine"`
}

// CountRule fires when Count events happen within Window; Count 0 disables.
type CountRule struct {
	Count  int           `yaml:"count" json:"count"`
	Window time.Duration `yaml:"window" json:"window"`
}

// AnomalyRules raise alerts (never refuse calls by themselves).
type AnomalyRules struct {
	// Denials: policy denials by one principal.
	Denials CountRule `yaml:"denials"`
	// PathEscapes: path escape attempts by one principal (default: any).
	PathEscapes CountRule `yaml:"path_escapes"`
	// SandboxKills: sandbox violations (seccomp kill, OOM, timeout).
	SandboxKills CountRule `yaml:"sandbox_kills"`
	// DistinctTools: a burst of different tools called by one principal.
	DistinctTools CountRule `yaml:"distinct_tools"`
	// UsualHours ("07:00-20:00" in policy.timezone): a call outside them
	// alerts once per principal and day. Empty disables.
	UsualHours string `yaml:"usual_hours"`
}

// QuarantineConfig sets automatic quarantine thresholds: Count violations
// of at least MinSeverity within Window.
type QuarantineConfig struct {
	// MinSeverity counted: LOW, MEDIUM, HIGH (default) or CRITICAL.
	MinSeverity string `yaml:"min_severity"`
	// Principal: default 10 in 10 minutes.
	Principal CountRule `yaml:"principal"`
	// Session: default 5 in 10 minutes.
	Session CountRule `yaml:"session"`
	// PluginWindow is the window for plugins, whose counts come from their
	// security level (DESIGN §5: maximum 1, strict 3, standard 5, minimal 10).
	PluginWindow time.Duration `yaml:"plugin_window"`
}

// AlertsConfig configures where alerts go. Sending never blocks or fails a
// call: alerts queue (bounded) and are delivered in the background.
type AlertsConfig struct {
	Webhooks []WebhookConfig `yaml:"webhooks"`
	SMTP     SMTPConfig      `yaml:"smtp"`
	// DedupeWindow suppresses repeats of the same alert (kind + subject).
	DedupeWindow time.Duration `yaml:"dedupe_window"`
	// QueueSize bounds alerts waiting for delivery; when full the oldest
	// is dropped and counted.
	QueueSize int `yaml:"queue_size"`
}

// WebhookConfig is one webhook receiver.
type WebhookConfig struct {
	Name string `yaml:"name" json:"name"`
	URL  string `yaml:"url" json:"url"`
	// Format is "generic" (default) or "slack" (incoming-webhook text).
	Format string `yaml:"format" json:"format"`
	// SecretFile holds the HMAC-SHA256 key for the X-Portcullis-Signature
	// header (mode 0600). Empty sends unsigned (refused in production).
	SecretFile  string        `yaml:"secret_file" json:"secret_file"`
	Timeout     time.Duration `yaml:"timeout" json:"timeout"`
	MaxAttempts int           `yaml:"max_attempts" json:"max_attempts"`
}

// SMTPConfig sends alerts by e-mail when Addr is set.
type SMTPConfig struct {
	Addr         string   `yaml:"addr"` // host:port
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	// StartTLS is required unless the server is on loopback.
	StartTLS bool `yaml:"starttls"`
}

// Sensitivity level names, as in config keys.
var levelNames = []string{"LOW", "MEDIUM", "HIGH", "CRITICAL"}

// DefaultLimits returns the embedded limits for mode: production is
// stricter (lower rates, smaller responses).
func DefaultLimits(mode Mode) LimitsConfig {
	prod := mode == ModeProduction
	pick := func(dev, p float64) float64 {
		if prod {
			return p
		}
		return dev
	}
	lv := func(rate, prodRate float64, burst, conc, pconc int, timeout time.Duration, resp int64) ToolLimits {
		return ToolLimits{RatePerMinute: pick(rate, prodRate), Burst: burst, Concurrency: conc, PrincipalConcurrency: pconc,
			Timeout: timeout, MaxArgBytes: 1 << 20, MaxResponseBytes: resp}
	}
	return LimitsConfig{
		Levels: map[string]ToolLimits{
			"LOW":      lv(600, 300, 60, 64, 16, 30*time.Second, 1<<20),
			"MEDIUM":   lv(300, 120, 30, 32, 8, 60*time.Second, 1<<20),
			"HIGH":     lv(60, 30, 10, 8, 4, 120*time.Second, 256<<10),
			"CRITICAL": lv(20, 10, 5, 4, 2, 120*time.Second, 256<<10),
		},
		Principal: PrincipalLimits{RatePerMinute: pick(1200, 600), Burst: 120, Concurrency: 16},
		Quota:     QuotaConfig{CallsPerDay: 100000, CPUSecondsPerDay: 36000},
	}
}

// DefaultViolations returns the embedded anomaly rules and thresholds.
func DefaultViolations() ViolationsConfig {
	return ViolationsConfig{
		Rules: AnomalyRules{
			Denials:       CountRule{Count: 5, Window: 5 * time.Minute},
			PathEscapes:   CountRule{Count: 1, Window: time.Minute},
			SandboxKills:  CountRule{Count: 3, Window: 10 * time.Minute},
			DistinctTools: CountRule{Count: 10, Window: time.Minute},
		},
		Quarantine: QuarantineConfig{MinSeverity: "HIGH",
			Principal:    CountRule{Count: 10, Window: 10 * time.Minute},
			Session:      CountRule{Count: 5, Window: 10 * time.Minute},
			PluginWindow: 10 * time.Minute},
	}
}

func (c *Config) validateAbuse(bad func(key, format string, args ...any)) {
	// Fill unset level fields from the mode's defaults (the YAML may set
	// only some fields of some levels).
	def := DefaultLimits(c.Mode)
	if c.Limits.Levels == nil {
		c.Limits.Levels = map[string]ToolLimits{}
	}
	for k := range c.Limits.Levels {
		if !contains(levelNames, k) {
			bad("limits.levels."+k, "unknown sensitivity (want LOW, MEDIUM, HIGH or CRITICAL)")
		}
	}
	for _, name := range levelNames {
		c.Limits.Levels[name] = mergeLimits(def.Levels[name], c.Limits.Levels[name])
	}
	check := func(key string, l ToolLimits) {
		if l.RatePerMinute < 0 || l.Burst < 0 || l.Concurrency < 0 || l.PrincipalConcurrency < 0 ||
			l.Timeout < 0 || l.MaxArgBytes < 0 || l.MaxResponseBytes < 0 {
			bad(key, "limits must not be negative")
		}
	}
	for k, l := range c.Limits.Levels {
		check("limits.levels."+k, l)
	}
	for k, l := range c.Limits.Tools {
		check("limits.tools."+k, l)
	}
	for k, l := range c.Limits.Roles {
		check("limits.roles."+k, l)
	}
	p := &c.Limits.Principal
	if p.RatePerMinute < 0 || p.Burst < 0 || p.Concurrency < 0 {
		bad("limits.principal", "limits must not be negative")
	}
	if p.RatePerMinute == 0 && p.Burst == 0 && p.Concurrency == 0 {
		*p = def.Principal
	}
	q := &c.Limits.Quota
	if q.CallsPerDay < 0 || q.CPUSecondsPerDay < 0 {
		bad("limits.quota", "quotas must not be negative (0 is unlimited)")
	}

	v := &c.Violations
	for key, r := range map[string]CountRule{"violations.rules.denials": v.Rules.Denials,
		"violations.rules.path_escapes": v.Rules.PathEscapes, "violations.rules.sandbox_kills": v.Rules.SandboxKills,
		"violations.rules.distinct_tools": v.Rules.DistinctTools, "violations.quarantine.principal": v.Quarantine.Principal,
		"violations.quarantine.session": v.Quarantine.Session} {
		if r.Count < 0 || r.Window < 0 || (r.Count > 0 && r.Window == 0) {
			bad(key, "count must be >= 0 with a positive window")
		}
	}
	if v.Rules.UsualHours != "" {
		if _, _, err := ParseHours(v.Rules.UsualHours); err != nil {
			bad("violations.rules.usual_hours", "%v", err)
		}
	}
	if !contains(levelNames, strings.ToUpper(v.Quarantine.MinSeverity)) {
		bad("violations.quarantine.min_severity", "want LOW, MEDIUM, HIGH or CRITICAL, got %q", v.Quarantine.MinSeverity)
	}
	if v.Quarantine.PluginWindow <= 0 {
		bad("violations.quarantine.plugin_window", "must be a positive duration")
	}

	a := &c.Alerts
	if a.DedupeWindow < 0 || a.QueueSize < 1 {
		bad("alerts", "dedupe_window must be >= 0 and queue_size >= 1")
	}
	names := map[string]bool{}
	for i := range a.Webhooks {
		w := &a.Webhooks[i]
		key := fmt.Sprintf("alerts.webhooks[%d]", i)
		if w.Name == "" || names[w.Name] {
			bad(key+".name", "must be set and unique")
		}
		names[w.Name] = true
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			bad(key+".url", "must be an http or https URL without credentials")
		} else if c.Mode == ModeProduction && u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) {
			bad(key+".url", "production mode sends alerts only over https")
		}
		switch w.Format {
		case "":
			w.Format = "generic"
		case "generic", "slack":
		default:
			bad(key+".format", "must be generic or slack, got %q", w.Format)
		}
		if w.SecretFile == "" && c.Mode == ModeProduction {
			bad(key+".secret_file", "production mode signs every webhook: set a secret file")
		}
		if w.Timeout == 0 {
			w.Timeout = 10 * time.Second
		}
		if w.MaxAttempts == 0 {
			w.MaxAttempts = 5
		}
		if w.Timeout < 0 || w.MaxAttempts < 1 || w.MaxAttempts > 20 {
			bad(key, "timeout must be positive and max_attempts 1-20")
		}
	}
	if s := c.Alerts.SMTP; s.Addr != "" {
		if s.From == "" || len(s.To) == 0 {
			bad("alerts.smtp", "from and to are required with addr")
		}
		if host, _, err := net.SplitHostPort(s.Addr); err != nil {
			bad("alerts.smtp.addr", "must be host:port")
		} else if !s.StartTLS && !IsLoopbackHost(host) {
			bad("alerts.smtp.starttls", "required for a non-loopback SMTP server (credentials and alerts would travel in clear)")
		}
	}
}

// mergeLimits returns base with every non-zero field of over applied.
func mergeLimits(base, over ToolLimits) ToolLimits {
	if over.RatePerMinute != 0 {
		base.RatePerMinute = over.RatePerMinute
	}
	if over.Burst != 0 {
		base.Burst = over.Burst
	}
	if over.Concurrency != 0 {
		base.Concurrency = over.Concurrency
	}
	if over.PrincipalConcurrency != 0 {
		base.PrincipalConcurrency = over.PrincipalConcurrency
	}
	if over.Timeout != 0 {
		base.Timeout = over.Timeout
	}
	if over.MaxArgBytes != 0 {
		base.MaxArgBytes = over.MaxArgBytes
	}
	if over.MaxResponseBytes != 0 {
		base.MaxResponseBytes = over.MaxResponseBytes
	}
	return base
}

// ParseHours parses "HH:MM-HH:MM" into minutes after midnight; the range
// may wrap midnight ("22:00-06:00").
func ParseHours(s string) (from, to int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("want HH:MM-HH:MM, got %q", s)
	}
	parse := func(x string) (int, error) {
		t, err := time.Parse("15:04", strings.TrimSpace(x))
		if err != nil {
			return 0, fmt.Errorf("want HH:MM-HH:MM, got %q", s)
		}
		return t.Hour()*60 + t.Minute(), nil
	}
	if from, err = parse(a); err != nil {
		return 0, 0, err
	}
	if to, err = parse(b); err != nil {
		return 0, 0, err
	}
	if from == to {
		return 0, 0, fmt.Errorf("empty range %q", s)
	}
	return from, to, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ApprovalConfig decides which calls wait for a human (issue 7).
type ApprovalConfig struct {
	// Wait is how long a held call waits for a decision before it returns
	// "pending" (env PORTCULLIS_APPROVAL_WAIT). 0 returns at once.
	Wait time.Duration `yaml:"wait"`
	// TTL is how long a request stays open; an approval is usable until then.
	TTL time.Duration `yaml:"ttl"`
	// ExemptRoles never need approval for CRITICAL tools (default: admin).
	ExemptRoles []string `yaml:"exempt_roles"`
	// Tools lists, per tool, the roles whose calls need approval ("*":
	// everyone not exempt), e.g. {execute_python: [developer]}.
	Tools map[string][]string `yaml:"tools"`
}

func (c *Config) validateApproval(bad func(key, format string, args ...any)) {
	a := &c.Approval
	if a.Wait < 0 || a.Wait > 10*time.Minute {
		bad("approval.wait", "must be 0-10m, got %s", a.Wait)
	}
	if a.TTL < time.Minute || a.TTL > 7*24*time.Hour {
		bad("approval.ttl", "must be 1m-168h, got %s", a.TTL)
	}
	if a.TTL <= a.Wait {
		bad("approval.ttl", "must be longer than approval.wait")
	}
	for tool, roles := range a.Tools {
		if len(roles) == 0 {
			bad("approval.tools."+tool, "list the roles that need approval, or \"*\"")
		}
	}
}

// CommandConfig configures run_command.
type CommandConfig struct {
	// Allow lists the programs (bare names, resolved on PATH at start)
	// run_command may run. Unset: ls cat grep wc head tail python3 in
	// development, nothing in production.
	Allow []string `yaml:"allow"`
}

// HTTPFetchConfig configures http_fetch. Nothing is reachable unless listed.
type HTTPFetchConfig struct {
	// Allow lists host:port patterns every principal may fetch
	// ("api.example.com:443", "*.example.com:443", "example.org").
	Allow []string `yaml:"allow"`
	// RoleAllow adds patterns per role.
	RoleAllow map[string][]string `yaml:"role_allow"`
	// AllowPrivate lists CIDRs of otherwise refused addresses (loopback,
	// private, link-local, CGNAT ...) that may be reached.
	AllowPrivate []string `yaml:"allow_private"`
	// MaxBytes caps a response body; Timeout bounds a fetch.
	MaxBytes int64         `yaml:"max_bytes"`
	Timeout  time.Duration `yaml:"timeout"`
}

// SQLConfig configures sql_query.
type SQLConfig struct {
	MaxRows int           `yaml:"max_rows"`
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultCommandAllow is run_command's allow-list in development mode.
var DefaultCommandAllow = []string{"ls", "cat", "grep", "wc", "head", "tail", "python3"}

func (c *Config) validateTools(bad func(key, format string, args ...any)) {
	if c.Command.Allow == nil && c.Mode == ModeDevelopment {
		c.Command.Allow = append([]string(nil), DefaultCommandAllow...)
	}
	for _, p := range c.Command.Allow {
		if p == "" || strings.ContainsAny(p, "/\\ \t") {
			bad("command.allow", "%q must be a bare program name", p)
		}
	}
	for _, cidr := range c.HTTPFetch.AllowPrivate {
		if _, err := ParsePrefix(cidr); err != nil {
			bad("http_fetch.allow_private", "%q: %v", cidr, err)
		}
	}
	if c.HTTPFetch.MaxBytes < 0 || c.HTTPFetch.Timeout < 0 || c.SQL.MaxRows < 0 || c.SQL.Timeout < 0 {
		bad("http_fetch/sql", "limits must not be negative")
	}
	for _, n := range c.Files.DenyNames {
		if n == "" || strings.HasPrefix(n, "/") {
			bad("files.deny_names", "%q must be a base-name glob or a workspace-relative path", n)
		}
	}
}

func (c *Config) validateCodePolicy(bad func(key, format string, args ...any)) {
	switch c.Python.CodePolicy {
	case "":
		c.Python.CodePolicy = "normal"
		if c.Mode == ModeProduction {
			c.Python.CodePolicy = "strict"
		}
	case "strict", "normal", "legacy":
	default:
		bad("python.code_policy", "must be strict, normal or legacy, got %q", c.Python.CodePolicy)
	}
}
