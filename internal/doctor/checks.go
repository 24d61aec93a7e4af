package doctor

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/plugins/egress"
)

// linter accumulates the findings of one Lint.
type linter struct {
	cfg  *config.Config
	fsys FS
	prod bool
	out  []Finding
}

func (l *linter) add(id string, sev Severity, key, fix, format string, args ...any) {
	l.out = append(l.out, Finding{ID: id, Severity: sev, Key: key, Message: fmt.Sprintf(format, args...), Fix: fix})
}

// bySeverity returns prod in production mode and dev otherwise.
func (l *linter) bySeverity(prod, dev Severity) Severity {
	if l.prod {
		return prod
	}
	return dev
}

func (l *linter) mode() {
	if !l.prod {
		l.add("mode-development", Info, "mode", "set mode: production for a deployment",
			"development mode: lenient defaults (run_command allow-list, normal code policy, higher rates) and a missing sandbox only disables tools")
	}
}

func (l *linter) transport() {
	c := l.cfg
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil || config.IsLoopbackHost(host) {
		return
	}
	where := host
	if where == "" {
		where = "every interface"
	}
	switch {
	case c.TLS.CertFile == "" && !c.TLS.AllowPlaintextNonLoopback:
		l.add("listen-no-tls", Critical, "listen",
			"set tls.cert_file and tls.key_file, or listen on 127.0.0.1 behind a TLS-terminating proxy",
			"listening on %s (not loopback) without TLS: API keys, tokens and tool results cross the network in clear", where)
	case c.TLS.CertFile == "":
		l.add("listen-plaintext-allowed", Warning, "tls.allow_plaintext_non_loopback",
			"terminate TLS in the gateway (tls.cert_file, tls.key_file), or keep the proxy on this host and listen on loopback",
			"plain HTTP on %s behind a TLS proxy: traffic between the proxy and the gateway is in clear", where)
	}
	if len(c.Auth.AllowedHosts) == 0 {
		l.add("allowed-hosts-empty", Warning, "auth.allowed_hosts",
			"list the host names clients use, e.g. auth.allowed_hosts: [gateway.example.com]",
			"listening on %s accepts any Host header (DNS rebinding and host-header attacks)", where)
	}
}

func (l *linter) access() {
	c := l.cfg
	for _, p := range c.Auth.TrustedProxies {
		if pfx, err := config.ParsePrefix(p); err == nil && pfx.Bits() == 0 {
			l.add("trusted-proxies-any", Critical, "auth.trusted_proxies",
				"list only the reverse proxies' addresses or CIDRs",
				"%s trusts X-Forwarded-For from every address: any client chooses the address that lockout and the audit log see", p)
		}
	}
	if c.Auth.Lockout.Threshold == 0 {
		l.add("lockout-disabled", Warning, "auth.lockout.threshold",
			"set a threshold, e.g. 10 failures within 5m (the default)",
			"brute-force lockout is off: repeated authentication failures are never slowed down")
	}
	if u := c.OIDC.Issuer; len(u) >= 7 && strings.EqualFold(u[:7], "http://") {
		l.add("oidc-issuer-http", l.bySeverity(Warning, Info), "oidc.issuer",
			"use the issuer's https URL",
			"the OIDC issuer %s is plain http: discovery and signing keys can be tampered with in transit (meant for a local test issuer)", u)
	}
	if c.Policy.Mode == "report" {
		sev := l.bySeverity(Warning, Info)
		if l.prod && !c.Policy.AllowReportInProduction {
			sev = Critical
		}
		l.add("policy-report-mode", sev, "policy.mode",
			"set policy.mode: enforce once the policies are tested",
			"policy.mode is report: calls that Cedar policies refuse run anyway (audited as policy.would_deny)")
	}
}

func (l *linter) sandbox() {
	c := l.cfg
	if c.Sandbox.AllowDegraded {
		l.add("sandbox-degraded", Warning, "sandbox.allow_degraded",
			"fix the host (`portcullis doctor` lists what fails) and remove sandbox.allow_degraded",
			"sandboxes run even when the host lacks a required mechanism (seccomp, cgroups, the memfd copy of the init): code runs with weaker isolation than configured")
	}
	if c.Python.Level == "minimal" {
		l.add("python-level-minimal", l.bySeverity(Warning, Info), "python.level",
			"use maximum (the default) or strict",
			"execute_python runs at security level minimal, the weakest isolation (DESIGN §5)")
	}
	if c.Python.CodePolicy == "legacy" {
		l.add("code-policy-legacy", l.bySeverity(Warning, Info), "python.code_policy",
			"use strict (the production default)",
			"python.code_policy legacy only logs code the policy would refuse")
	}
}

// interpreterRE matches programs that run arbitrary code given as
// arguments: shells, script interpreters and program launchers.
var interpreterRE = regexp.MustCompile(`^(sh|bash|dash|zsh|ksh|mksh|fish|csh|tcsh|busybox|env|xargs|nohup|timeout|nice|setsid|` +
	`python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs|deno|bun|php[0-9.]*|lua[0-9.]*|tclsh[0-9.]*|` +
	`awk|gawk|mawk|nawk|find|make|ssh)$`)

func (l *linter) tools() {
	c := l.cfg
	if l.prod {
		var bad []string
		for _, p := range c.Command.Allow {
			if interpreterRE.MatchString(p) {
				bad = append(bad, p)
			}
		}
		if len(bad) > 0 {
			l.add("command-allow-interpreter", Warning, "command.allow",
				"list only the programs the deployment needs; offer code execution through execute_python and its code policy",
				"run_command may start %s, which run arbitrary code: run_command becomes a second, unchecked execute tool", strings.Join(bad, ", "))
		}
		if !c.Files.ReadOnly {
			l.add("files-writable", Info, "files.read_only",
				"set files.read_only: true if clients only need to read",
				"the file tools may write and edit the workspace")
		}
	}
	if c.Files.DenyNames != nil && len(c.Files.DenyNames) == 0 {
		l.add("files-deny-disabled", Warning, "files.deny_names",
			"remove the key to get the built-in list, or list the names to protect",
			"files.deny_names is empty: the file tools read and change .env, *.pem, *.key, id_rsa* and .git/config in the workspace")
	}
	metadata := netip.MustParseAddr("169.254.169.254")
	var all, meta, other []string
	for _, p := range c.HTTPFetch.AllowPrivate {
		pfx, err := config.ParsePrefix(p)
		switch {
		case err != nil:
		case pfx.Bits() == 0:
			all = append(all, p)
		case pfx.Contains(metadata):
			meta = append(meta, p)
		default:
			other = append(other, p)
		}
	}
	const fetchFix = "list only the internal hosts' addresses that http_fetch must reach"
	switch {
	case len(all) > 0:
		l.add("http-fetch-private", Warning, "http_fetch.allow_private", fetchFix,
			"%s opens every private, loopback and link-local address to http_fetch: no SSRF protection", strings.Join(all, ", "))
	case len(meta) > 0:
		l.add("http-fetch-private", Warning, "http_fetch.allow_private", fetchFix,
			"%s lets http_fetch reach the cloud metadata service 169.254.169.254 (credentials of the host)", strings.Join(meta, ", "))
	case len(other) > 0 && l.prod:
		l.add("http-fetch-private", Info, "http_fetch.allow_private", fetchFix,
			"http_fetch may reach private addresses %s (requests toward internal services)", strings.Join(other, ", "))
	}
}

func (l *linter) plugins() {
	for i, s := range l.cfg.Servers {
		key := fmt.Sprintf("servers[%d]", i)
		// The egress proxy's own parser, with the wildcard permission the
		// plugin manager gives it: config only checks host:port syntax (it
		// must not import the proxy), serve refuses what this refuses.
		wildcards := s.SecurityLevel == "standard" || s.SecurityLevel == "minimal"
		for j, a := range s.Network.Allow {
			if _, err := egress.ParseRule(a, wildcards); err != nil {
				l.add("plugin-allow-invalid", Critical, fmt.Sprintf("%s.network.allow[%d]", key, j),
					"write host:port with a DNS name or a canonical IP literal (wildcards *.domain only at standard or minimal)",
					"server %q: the egress proxy refuses %q, so the gateway will not start: %v", s.Name, a, err)
			}
		}
		if s.SecurityLevel == "minimal" {
			l.add("plugin-level-minimal", Warning, key+".security_level",
				"use standard or stricter, with network.allow listing the hosts the server needs",
				"server %q runs at security level minimal: any network, writable mounts, new processes (DESIGN §5)", s.Name)
		}
		if !l.prod {
			continue
		}
		for j, a := range s.Network.Allow {
			if host, _, err := net.SplitHostPort(a); err == nil && strings.Contains(host, "*") {
				l.add("plugin-network-wildcard", Warning, fmt.Sprintf("%s.network.allow[%d]", key, j),
					"list the exact host:port pairs the server needs",
					"server %q may connect to any host matching %s", s.Name, a)
			}
		}
	}
}

// Thresholds of the limits checks.
const (
	maxHighRate     = 300      // calls per minute per principal and HIGH tool
	maxCriticalRate = 100      // calls per minute per principal and CRITICAL tool
	maxPayload      = 32 << 20 // bytes of a request body or a call's arguments
)

func (l *linter) limits() {
	c := l.cfg
	for _, lv := range []struct {
		name string
		rate float64
	}{{"HIGH", maxHighRate}, {"CRITICAL", maxCriticalRate}} {
		tl, ok := c.Limits.Levels[lv.name]
		if !ok {
			continue
		}
		key := "limits.levels." + lv.name
		const fix = "keep the mode's defaults (remove the override) or set a rate, burst and concurrency for the level"
		switch {
		case tl.RatePerMinute <= 0:
			l.add("limits-weak", Warning, key+".rate_per_minute", fix, "%s tools have no rate limit", lv.name)
		case tl.RatePerMinute > lv.rate:
			l.add("limits-weak", Warning, key+".rate_per_minute", fix,
				"%s tools allow %g calls per minute per principal (above %g)", lv.name, tl.RatePerMinute, lv.rate)
		}
		if tl.Concurrency <= 0 || tl.PrincipalConcurrency <= 0 {
			l.add("limits-weak", Warning, key+".principal_concurrency", fix,
				"%s tools have no concurrency limit (concurrency %d, principal_concurrency %d; 0 is unlimited)",
				lv.name, tl.Concurrency, tl.PrincipalConcurrency)
		}
	}
	p := c.Limits.Principal
	if p.RatePerMinute <= 0 || p.Concurrency <= 0 {
		l.add("limits-principal-unbounded", Warning, "limits.principal",
			"set limits.principal.rate_per_minute and concurrency (defaults 600 and 16 in production)",
			"one principal's calls across all tools are unbounded (rate %g per minute, concurrency %d; 0 is unlimited)", p.RatePerMinute, p.Concurrency)
	}
	if c.HTTP.MaxBodyBytes > maxPayload {
		l.add("limits-large-payload", Warning, "http.max_body_bytes",
			"keep it at the default 1 MiB unless a tool needs more",
			"a request body may be %d bytes (above %d): memory exhaustion by a few clients", c.HTTP.MaxBodyBytes, maxPayload)
	}
	for _, name := range []string{"LOW", "MEDIUM", "HIGH", "CRITICAL"} {
		if tl, ok := c.Limits.Levels[name]; ok && tl.MaxArgBytes > maxPayload {
			l.add("limits-large-payload", Warning, "limits.levels."+name+".max_arg_bytes",
				"keep it at the default 1 MiB unless a tool needs more",
				"%s tools accept %d bytes of arguments (above %d)", name, tl.MaxArgBytes, maxPayload)
		}
	}
	if l.prod && (c.Limits.Quota.CallsPerDay == 0 || c.Limits.Quota.CPUSecondsPerDay == 0) {
		l.add("quota-unlimited", Warning, "limits.quota",
			"set limits.quota.calls_per_day and cpu_seconds_per_day (defaults 100000 and 36000)",
			"daily quotas are off (calls_per_day %d, cpu_seconds_per_day %g; 0 is unlimited)", c.Limits.Quota.CallsPerDay, c.Limits.Quota.CPUSecondsPerDay)
	}
}

func (l *linter) monitoring() {
	c := l.cfg
	if l.prod {
		q := c.Violations.Quarantine
		for _, r := range []struct {
			key   string
			count int
		}{{"violations.quarantine.principal.count", q.Principal.Count}, {"violations.quarantine.session.count", q.Session.Count}} {
			if r.count == 0 {
				l.add("quarantine-disabled", Warning, r.key,
					"keep the default (principal 10, session 5 violations in 10m)",
					"automatic quarantine is off: repeated violations never stop the offender (seed 004)")
			}
		}
		if len(c.Alerts.Webhooks) == 0 && c.Alerts.SMTP.Addr == "" {
			l.add("alerts-no-sink", Warning, "alerts",
				"add alerts.webhooks or alerts.smtp",
				"alerts (anomalies, quarantines, lockouts) reach nobody: there is no webhook or SMTP server")
		}
		var extra []string
		for _, r := range c.Approval.ExemptRoles {
			if r != "admin" {
				extra = append(extra, r)
			}
		}
		if len(extra) > 0 {
			l.add("approval-exempt-roles", Warning, "approval.exempt_roles",
				"exempt admin only; grant other roles approval rights instead",
				"roles %s call CRITICAL tools without a human's approval", strings.Join(extra, ", "))
		}
		if len(c.Audit.Sinks) == 0 {
			l.add("audit-no-sink", Info, "audit.sinks",
				"forward records to a SIEM with audit.sinks (syslog or http)",
				"audit records live only in the gateway's database: whoever controls the host controls the evidence")
		}
	}
	if m := c.Audit.RetentionMonths; m > 0 && m < 3 {
		sev := Warning
		if len(c.Audit.Sinks) > 0 {
			sev = Info
		}
		l.add("audit-retention-short", sev, "audit.retention_months",
			"keep at least 12 months (0 keeps everything), or rely on an audit sink's retention",
			"audit records older than %d month(s) are pruned: too short for most investigations", m)
	}
}

// overlaps reports whether one of the clean absolute paths a and b is
// the other or inside it.
func overlaps(a, b string) bool {
	a, b = filepath.Clean(a), filepath.Clean(b)
	within := func(x, dir string) bool {
		return x == dir || strings.HasPrefix(x, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
	}
	return within(a, b) || within(b, a)
}

// exposure is a path that tools or plugins can reach.
type exposure struct{ key, path string }

func (l *linter) exposures() []exposure {
	c := l.cfg
	out := []exposure{{"workspace", c.Workspace}}
	for _, p := range c.Sandbox.ReadOnlyPaths {
		out = append(out, exposure{"sandbox.read_only_paths", p})
	}
	for i, s := range c.Servers {
		for j, m := range s.Mounts {
			out = append(out, exposure{fmt.Sprintf("servers[%d].mounts[%d].source", i, j), m.Source})
		}
	}
	return slices.DeleteFunc(out, func(e exposure) bool { return e.path == "" })
}
