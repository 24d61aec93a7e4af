package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/secrets"
)

// ServerConfig is one upstream MCP server ("plugin", issue 9; DESIGN §5).
// Exactly one of Command (a stdio server started in the sandbox) and URL (a
// Streamable HTTP upstream) is set. Its tools appear as <name>__<tool>.
type ServerConfig struct {
	// Name is 1-32 characters [a-z0-9-], unique; tools are <name>__<tool>.
	Name string `yaml:"name" json:"name"`
	// Command is the program and its arguments (stdio server). A bare
	// program name is looked up on the gateway's PATH at start; it must be
	// visible inside the sandbox (system directories or a mount).
	Command []string `yaml:"command" json:"command,omitempty"`
	// URL is a Streamable HTTP endpoint (https, or http to a loopback host).
	URL string `yaml:"url" json:"url,omitempty"`
	// SecurityLevel is maximum (default), strict, standard or minimal.
	SecurityLevel string `yaml:"security_level" json:"security_level,omitempty"`
	// Mounts are the only host paths the server sees besides the system
	// directories; read-only unless ReadOnly is false.
	Mounts []MountConfig `yaml:"mounts" json:"mounts,omitempty"`
	// Network lists where the server may connect through the egress proxy.
	Network ServerNetwork `yaml:"network" json:"network,omitempty"`
	// Env is the server's complete environment (nothing is inherited).
	// Values may reference secrets as ${secret:NAME}.
	Env map[string]string `yaml:"env" json:"env,omitempty"`
	// Tools filters and classifies the server's tools.
	Tools ServerTools `yaml:"tools" json:"tools,omitempty"`
	// Auth is how the gateway authenticates to an HTTP upstream.
	Auth ServerAuth `yaml:"auth" json:"auth,omitempty"`
	// Timeout bounds one call to the server (default: the sensitivity's).
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// MemoryBytes and Pids override the level's sandbox defaults.
	MemoryBytes int64 `yaml:"memory_bytes" json:"memory_bytes,omitempty"`
	Pids        int   `yaml:"pids" json:"pids,omitempty"`
}

// MountConfig makes a host path visible to a stdio server.
type MountConfig struct {
	// Source is a host path (relative paths are relative to the working
	// directory at start).
	Source string `yaml:"source" json:"source"`
	// Target is the absolute path inside the sandbox (default: Source).
	Target string `yaml:"target" json:"target,omitempty"`
	// ReadOnly defaults to true; false makes the mount writable (not
	// allowed at security level maximum).
	ReadOnly *bool `yaml:"read_only" json:"read_only,omitempty"`
}

// Writable reports whether the mount was declared read_only: false.
func (m MountConfig) Writable() bool { return m.ReadOnly != nil && !*m.ReadOnly }

// ServerNetwork is a server's egress allow-list.
type ServerNetwork struct {
	// Allow lists host:port patterns reachable through the egress proxy.
	// Wildcards (*.example.com:443) need security level standard or
	// minimal; at maximum the list must be empty. IP literals in the list
	// also permit that private or loopback address.
	Allow []string `yaml:"allow" json:"allow,omitempty"`
}

// ServerTools filters and classifies a server's tools (names without the
// <server>__ prefix). Deny wins over Allow; an empty Allow allows none.
type ServerTools struct {
	Allow []string `yaml:"allow" json:"allow,omitempty"`
	Deny  []string `yaml:"deny" json:"deny,omitempty"`
	// Sensitivity overrides the default (MEDIUM) per tool: LOW, MEDIUM,
	// HIGH or CRITICAL.
	Sensitivity map[string]string `yaml:"sensitivity" json:"sensitivity,omitempty"`
	// Labels per tool, for policies (resource.labels) and flow rules.
	Labels map[string][]string `yaml:"labels" json:"labels,omitempty"`
}

// ServerAuth is an HTTP upstream's credential.
type ServerAuth struct {
	// BearerSecret names the secret sent as "Authorization: Bearer".
	BearerSecret string `yaml:"bearer_secret" json:"bearer_secret,omitempty"`
	// PerUser uses the calling principal's own secret of that name
	// (`portcullis secret set NAME --user U`) instead of the shared one.
	PerUser bool `yaml:"per_user" json:"per_user,omitempty"`
}

// FlowRule is an information-flow rule (seed 004): once a session has
// called a tool labelled After.Label, a call to a tool labelled Then.Label
// is denied or needs approval.
type FlowRule struct {
	Name  string   `yaml:"name" json:"name,omitempty"`
	After FlowFrom `yaml:"after" json:"after"`
	Then  FlowThen `yaml:"then" json:"then"`
}

// FlowFrom is the label that taints a session.
type FlowFrom struct {
	Label string `yaml:"label" json:"label"`
}

// FlowThen is the label that a tainted session may not reach freely and
// what happens: deny or require_approval.
type FlowThen struct {
	Label  string `yaml:"label" json:"label"`
	Action string `yaml:"action" json:"action"`
}

var (
	serverNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	toolGlobRE   = regexp.MustCompile(`^[A-Za-z0-9_.*-]{1,128}$`)
	labelRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// SecretRefPattern matches a ${secret:NAME} reference; group 1 is NAME.
var SecretRefPattern = regexp.MustCompile(`\$\{secret:([^}]*)\}`)

// SecretRefs returns the secret names referenced as ${secret:NAME} in s.
func SecretRefs(s string) []string {
	var out []string
	for _, m := range SecretRefPattern.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// validateServers checks the servers and flows sections.
func (c *Config) validateServers(bad func(key, format string, args ...any)) {
	seen := map[string]bool{}
	for i := range c.Servers {
		s := &c.Servers[i]
		key := fmt.Sprintf("servers[%d]", i)
		if !serverNameRE.MatchString(s.Name) || strings.Contains(s.Name, "--") {
			bad(key+".name", "must be 1-32 characters [a-z0-9-] starting with a letter or digit, without \"--\", got %q", s.Name)
		} else if seen[s.Name] {
			bad(key+".name", "%q is used twice", s.Name)
		}
		seen[s.Name] = true
		level := s.SecurityLevel
		if level == "" {
			level = "maximum"
			s.SecurityLevel = level
		}
		switch level {
		case "maximum", "strict", "standard", "minimal":
		default:
			bad(key+".security_level", "must be maximum, strict, standard or minimal, got %q", level)
		}
		switch {
		case len(s.Command) > 0 && s.URL != "":
			bad(key, "set command (stdio server) or url (HTTP upstream), not both")
		case len(s.Command) == 0 && s.URL == "":
			bad(key, "needs command (stdio server) or url (HTTP upstream)")
		case len(s.Command) > 0:
			c.validateStdioServer(key, s, bad)
		default:
			validateHTTPServer(key, s, bad)
		}
		for j, p := range s.Network.Allow {
			k := fmt.Sprintf("%s.network.allow[%d]", key, j)
			host, port, err := net.SplitHostPort(p)
			if err != nil || host == "" {
				bad(k, "must be host:port, got %q", p)
				continue
			}
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				bad(k, "port must be 1-65535, got %q", port)
			}
			if strings.Contains(host, "*") && (level == "maximum" || level == "strict") {
				bad(k, "wildcard %q needs security level standard or minimal (this server is %s)", p, level)
			}
		}
		if level == "maximum" && len(s.Network.Allow) > 0 {
			bad(key+".network.allow", "security level maximum has no network; remove the list or lower the level")
		}
		for k, v := range s.Env {
			if !envNameRE.MatchString(k) {
				bad(key+".env", "bad variable name %q", k)
			}
			for _, ref := range SecretRefs(v) {
				if !SecretNameOK(ref) {
					bad(key+".env."+k, "bad secret reference ${secret:%s}", ref)
				}
			}
		}
		for _, list := range [][]string{s.Tools.Allow, s.Tools.Deny} {
			for _, g := range list {
				if !toolGlobRE.MatchString(g) {
					bad(key+".tools", "bad tool pattern %q", g)
				}
			}
		}
		for t, lv := range s.Tools.Sensitivity {
			switch strings.ToUpper(lv) {
			case "LOW", "MEDIUM", "HIGH", "CRITICAL":
			default:
				bad(key+".tools.sensitivity."+t, "must be LOW, MEDIUM, HIGH or CRITICAL, got %q", lv)
			}
		}
		for t, ls := range s.Tools.Labels {
			for _, l := range ls {
				if !labelRE.MatchString(l) {
					bad(key+".tools.labels."+t, "bad label %q (want [a-z0-9._-])", l)
				}
			}
		}
		if s.Timeout < 0 || s.MemoryBytes < 0 || s.Pids < 0 {
			bad(key, "timeout, memory_bytes and pids must not be negative")
		}
	}
	names := map[string]bool{}
	for i, f := range c.Flows {
		key := fmt.Sprintf("flows[%d]", i)
		if !labelRE.MatchString(f.After.Label) {
			bad(key+".after.label", "must be a label [a-z0-9._-], got %q", f.After.Label)
		}
		if !labelRE.MatchString(f.Then.Label) {
			bad(key+".then.label", "must be a label [a-z0-9._-], got %q", f.Then.Label)
		}
		switch f.Then.Action {
		case "deny", "require_approval":
		default:
			bad(key+".then.action", "must be deny or require_approval, got %q", f.Then.Action)
		}
		if f.Name != "" {
			if names[f.Name] {
				bad(key+".name", "%q is used twice", f.Name)
			}
			names[f.Name] = true
		}
	}
}

func (c *Config) validateStdioServer(key string, s *ServerConfig, bad func(key, format string, args ...any)) {
	if s.Command[0] == "" {
		bad(key+".command", "program must not be empty")
	}
	if s.Auth != (ServerAuth{}) {
		bad(key+".auth", "only for HTTP upstreams (url)")
	}
	targets := map[string]bool{}
	for j := range s.Mounts {
		m := &s.Mounts[j]
		k := fmt.Sprintf("%s.mounts[%d]", key, j)
		if m.Source == "" {
			bad(k+".source", "must not be empty")
			continue
		}
		abs, err := filepath.Abs(m.Source)
		if err != nil {
			bad(k+".source", "%v", err)
			continue
		}
		m.Source = abs
		if m.Target == "" {
			m.Target = abs
		}
		if !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target || m.Target == "/" {
			bad(k+".target", "must be a clean absolute path other than /, got %q", m.Target)
		}
		for _, sys := range []string{"/proc", "/dev", "/tmp", "/sys"} {
			if m.Target == sys || strings.HasPrefix(m.Target, sys+"/") {
				bad(k+".target", "%q is managed by the sandbox", m.Target)
			}
		}
		if targets[m.Target] {
			bad(k+".target", "%q is mounted twice", m.Target)
		}
		targets[m.Target] = true
		if m.Writable() && s.SecurityLevel == "maximum" {
			bad(k+".read_only", "security level maximum allows read-only mounts only")
		}
	}
}

func validateHTTPServer(key string, s *ServerConfig, bad func(key, format string, args ...any)) {
	u, err := url.Parse(s.URL)
	switch {
	case err != nil || u.Host == "" || u.User != nil || u.Fragment != "":
		bad(key+".url", "must be an absolute http(s) URL without user info or fragment")
	case u.Scheme == "https":
	case u.Scheme == "http" && IsLoopbackHost(u.Hostname()):
	default:
		bad(key+".url", "must be https (http only to a loopback host), got scheme %q", u.Scheme)
	}
	if len(s.Mounts) > 0 || len(s.Env) > 0 || len(s.Network.Allow) > 0 {
		bad(key, "mounts, env and network apply to stdio servers (command) only")
	}
	if s.Auth.PerUser && s.Auth.BearerSecret == "" {
		bad(key+".auth.per_user", "needs bearer_secret (the secret's name)")
	}
	if s.Auth.BearerSecret != "" && !SecretNameOK(s.Auth.BearerSecret) {
		bad(key+".auth.bearer_secret", "bad secret name %q", s.Auth.BearerSecret)
	}
}

// SecretNameOK reports whether name is a well-formed secret name: the
// secrets store's own rule (secrets.Name).
func SecretNameOK(name string) bool { return secrets.Name.MatchString(name) }
