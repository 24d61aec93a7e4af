package config_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/internal/config"
)

func writeConfig(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, path string, env []string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path, env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

func TestDefaultValidates(t *testing.T) {
	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	// Security-relevant defaults (DESIGN §2).
	d := config.Default()
	if d.Listen != "127.0.0.1:8420" || d.Mode != config.ModeDevelopment {
		t.Errorf("default listen/mode = %q/%q, want loopback 127.0.0.1:8420, development", d.Listen, d.Mode)
	}
	if d.Files.ReadOnly {
		t.Error("files.read_only defaults to true")
	}
	if slices.Contains(d.Stdio.Roles, "admin") {
		t.Error("the stdio principal is admin by default")
	}
	// Default returns a fresh value each time: no shared mutable state.
	d.Stdio.Roles[0] = "admin"
	d.Sandbox.ReadOnlyPaths[0] = "/"
	if e := config.Default(); e.Stdio.Roles[0] != "developer" || e.Sandbox.ReadOnlyPaths[0] != "/usr" {
		t.Error("Default() shares slices between calls")
	}
}

func TestLoadNoFileNoEnvIsDefault(t *testing.T) {
	for _, content := range []string{"", "\n", "# only a comment\n", "---\n"} {
		t.Run(fmt.Sprintf("%q", content), func(t *testing.T) {
			got := mustLoad(t, writeConfig(t, content), nil)
			if diff := cmp.Diff(config.Default(), got); diff != "" {
				t.Errorf("(-default +loaded):\n%s", diff)
			}
		})
	}
	got := mustLoad(t, "", []string{"HOME=/root", "PATH=/bin", "NOEQUALS", "portcullis_listen=lower-case-is-not-ours"})
	if diff := cmp.Diff(config.Default(), got); diff != "" {
		t.Errorf("no file, unrelated env (-default +loaded):\n%s", diff)
	}
}

func TestLoadFile(t *testing.T) {
	path := writeConfig(t, `
mode: production
listen: 0.0.0.0:9000
http:
  max_body_bytes: 2048
  shutdown_timeout: 3s
mcp:
  session_timeout: 1h30m
stdio:
  user: bot
  roles: [guest]
files:
  read_only: true
sandbox:
  read_only_paths:
    - /opt/python
`)
	got := mustLoad(t, path, nil)
	want := config.Default()
	want.Mode = config.ModeProduction
	want.Listen = "0.0.0.0:9000"
	want.HTTP.MaxBodyBytes = 2048
	want.HTTP.ShutdownTimeout = 3 * time.Second
	want.MCP.SessionTimeout = 90 * time.Minute
	want.Stdio = config.StdioConfig{User: "bot", Roles: []string{"guest"}}
	want.Files.ReadOnly = true
	want.Sandbox.ReadOnlyPaths = []string{"/opt/python"} // a list replaces, never merges
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		// Substrings of the error: unknown keys are named; for type
		// mismatches yaml.v3 reports the line (and value), not the key.
		want []string
	}{
		{"unknown top-level key", "lisen: 127.0.0.1:1\n", []string{"lisen"}},
		{"unknown nested key", "http: {max_body: 1}\n", []string{"max_body"}},
		{"unknown deeply nested key", "python:\n  timeout: 1s\n  interpreterr: /usr/bin/python3\n", []string{"interpreterr"}},
		{"misspelt security key", "files:\n  readonly: true\n", []string{"readonly"}},
		{"string for int", "http: {max_body_bytes: big}\n", []string{"line 1", "big"}},
		{"string for bool", "files: {read_only: maybe}\n", []string{"maybe"}},
		{"bare int for duration", "mcp:\n  session_timeout: 5\n", []string{"line 2", "time.Duration"}},
		{"bad duration", "mcp: {call_timeout: 5 minutes}\n", []string{"5 minutes"}},
		{"scalar for list", "stdio: {roles: guest}\n", []string{"line 1", "guest"}},
		{"list for string", "\n\nlisten: [a, b]\n", []string{"line 3"}},
		{"map for scalar", "mode: {a: 1}\n", []string{"line 1"}},
		{"scalar for section", "http: 5\n", []string{"line 1"}},
		{"int overflow", "audit: {queue_size: 99999999999999999999999}\n", []string{"line 1"}},
		{"two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", []string{"more than one YAML document"}},
		{"two documents, second empty-ish", "listen: 127.0.0.1:1\n---\n{}\n", []string{"more than one YAML document"}},
		{"syntax error", "listen: [\n", nil},
		{"tab indentation", "http:\n\tmax_body_bytes: 1\n", nil},
		{"alias bomb", billionLaughs(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.content)
			cfg, err := config.Load(path, nil)
			if err == nil {
				t.Fatalf("Load accepted it: %+v", cfg)
			}
			if cfg != nil {
				t.Error("Load returned a config with an error")
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			for _, s := range append(tt.want, path) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
		})
	}
}

// billionLaughs is a YAML alias bomb: it must be refused (or bounded), not
// expanded into gigabytes.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "x%d: &a%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("stdio: {roles: *a9}\n")
	return b.String()
}

func TestLoadFileSize(t *testing.T) {
	const max = 4 << 20
	comment := func(n int) string { // n bytes of YAML comment lines
		line := "# " + strings.Repeat("x", 61) + "\n" // 64 bytes
		s := strings.Repeat(line, (n-2)/len(line))
		return s + "#" + strings.Repeat("y", n-len(s)-1)
	}
	if _, err := config.Load(writeConfig(t, comment(max)), nil); err != nil {
		t.Errorf("a %d-byte file was refused: %v", max, err)
	}
	_, err := config.Load(writeConfig(t, comment(max+1)), nil)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a %d-byte file: Load = %v, want a size error", max+1, err)
	}
}

func TestLoadFileMissingOrNotAFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	if _, err := config.Load(missing, nil); !errors.Is(err, config.ErrInvalid) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrInvalid wrapping fs.ErrNotExist", err)
	}
	if _, err := config.Load(t.TempDir(), nil); err == nil {
		t.Error("Load(a directory) succeeded")
	}
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name string
		env  string
		set  func(c *config.Config)
	}{
		{"string", "PORTCULLIS_LISTEN=0.0.0.0:1", func(c *config.Config) { c.Listen = "0.0.0.0:1" }},
		{"typed string", "PORTCULLIS_MODE=production", func(c *config.Config) { c.Mode = config.ModeProduction }},
		{"empty string", "PORTCULLIS_PYTHON_INTERPRETER=", func(c *config.Config) { c.Python.Interpreter = "" }},
		{"value with =", "PORTCULLIS_STDIO_USER=a=b", func(c *config.Config) { c.Stdio.User = "a=b" }},
		{"int64", "PORTCULLIS_HTTP_MAX_BODY_BYTES=4096", func(c *config.Config) { c.HTTP.MaxBodyBytes = 4096 }},
		{"int", "PORTCULLIS_AUDIT_QUEUE_SIZE=7", func(c *config.Config) { c.Audit.QueueSize = 7 }},
		{"negative int", "PORTCULLIS_AUDIT_MAX_BATCH=-1", func(c *config.Config) { c.Audit.MaxBatch = -1 }},
		{"bool true", "PORTCULLIS_FILES_READ_ONLY=true", func(c *config.Config) { c.Files.ReadOnly = true }},
		{"bool 1", "PORTCULLIS_FILES_READ_ONLY=1", func(c *config.Config) { c.Files.ReadOnly = true }},
		{"duration", "PORTCULLIS_MCP_SESSION_TIMEOUT=90s", func(c *config.Config) { c.MCP.SessionTimeout = 90 * time.Second }},
		{"list", "PORTCULLIS_STDIO_ROLES=guest, developer", func(c *config.Config) { c.Stdio.Roles = []string{"guest", "developer"} }},
		{"list with blanks", "PORTCULLIS_STDIO_ROLES= guest ,, ,developer ", func(c *config.Config) { c.Stdio.Roles = []string{"guest", "developer"} }},
		{"single-item list", "PORTCULLIS_SANDBOX_READ_ONLY_PATHS=/usr", func(c *config.Config) { c.Sandbox.ReadOnlyPaths = []string{"/usr"} }},
		{"empty list", "PORTCULLIS_STDIO_ROLES=", func(c *config.Config) { c.Stdio.Roles = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustLoad(t, "", []string{tt.env})
			want := config.Default()
			tt.set(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.env, diff)
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"unknown variable", []string{"PORTCULLIS_FOO=1"}, []string{"PORTCULLIS_FOO"}},
		{"misspelt security setting", []string{"PORTCULLIS_FILES_READONLY=true"}, []string{"PORTCULLIS_FILES_READONLY"}},
		{"section, not a leaf", []string{"PORTCULLIS_HTTP=x"}, []string{"PORTCULLIS_HTTP"}},
		{"bare prefix", []string{"PORTCULLIS_=x"}, []string{"PORTCULLIS_"}},
		{"several unknown, all named", []string{"PORTCULLIS_ZZZ=1", "PORTCULLIS_AAA=2"}, []string{"PORTCULLIS_AAA, PORTCULLIS_ZZZ"}},
		{"bad int", []string{"PORTCULLIS_HTTP_MAX_BODY_BYTES=big"}, []string{"PORTCULLIS_HTTP_MAX_BODY_BYTES", "http.max_body_bytes"}},
		{"int with unit", []string{"PORTCULLIS_FILES_MAX_READ_BYTES=1MB"}, []string{"PORTCULLIS_FILES_MAX_READ_BYTES", "files.max_read_bytes"}},
		{"int overflow", []string{"PORTCULLIS_AUDIT_QUEUE_SIZE=99999999999999999999"}, []string{"PORTCULLIS_AUDIT_QUEUE_SIZE", "audit.queue_size"}},
		{"bad bool", []string{"PORTCULLIS_FILES_READ_ONLY=yes please"}, []string{"PORTCULLIS_FILES_READ_ONLY", "files.read_only"}},
		{"duration without unit", []string{"PORTCULLIS_PYTHON_TIMEOUT=10"}, []string{"PORTCULLIS_PYTHON_TIMEOUT", "python.timeout"}},
		{"bad duration", []string{"PORTCULLIS_MCP_SESSION_TIMEOUT=soon"}, []string{"PORTCULLIS_MCP_SESSION_TIMEOUT", "mcp.session_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Load("", tt.env)
			if err == nil {
				t.Fatalf("Load accepted %v: %+v", tt.env, cfg)
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
		})
	}
}

func TestNonConfigEnvIgnored(t *testing.T) {
	const adminKey = "pcl_SECRETSECRETSECRETSECRETSECRET"
	env := []string{
		"PORTCULLIS_ADMIN_KEY=" + adminKey,
		"PORTCULLIS_SERVER=http://127.0.0.1:1",
		"PORTCULLIS_CONFIG=/etc/portcullis.yaml",
	}
	got := mustLoad(t, "", env)
	if diff := cmp.Diff(config.Default(), got); diff != "" {
		t.Errorf("non-config variables changed the config (-default +got):\n%s", diff)
	}
	if strings.Contains(fmt.Sprintf("%+v", got), "SECRET") {
		t.Error("the admin key ended up in the config")
	}
	// Combined with an unknown variable, the error names only the unknown one.
	_, err := config.Load("", append(env, "PORTCULLIS_NOPE=1"))
	if err == nil || strings.Contains(err.Error(), adminKey) || strings.Contains(err.Error(), "ADMIN_KEY") {
		t.Errorf("Load = %v: want an error naming PORTCULLIS_NOPE only", err)
	}
}

func TestPrecedence(t *testing.T) {
	path := writeConfig(t, "listen: 127.0.0.1:1111\nlog: {level: debug}\nstdio: {roles: [guest]}\n")
	env := []string{"PORTCULLIS_LISTEN=127.0.0.1:2222", "PORTCULLIS_STDIO_ROLES=admin,guest"}
	got := mustLoad(t, path, env)
	want := config.Default()
	want.Listen = "127.0.0.1:2222"                // env beats file
	want.Log.Level = "debug"                      // file beats default
	want.Stdio.Roles = []string{"admin", "guest"} // env list replaces the file's list
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Last occurrence of a duplicated variable wins, like a shell would.
	got = mustLoad(t, "", []string{"PORTCULLIS_LISTEN=127.0.0.1:1", "PORTCULLIS_LISTEN=127.0.0.1:2"})
	if got.Listen != "127.0.0.1:2" {
		t.Errorf("duplicate variable: listen = %q, want the last one", got.Listen)
	}
}

func TestValidateErrorsNameKey(t *testing.T) {
	tests := []struct {
		key    string
		mutate func(c *config.Config)
	}{
		{"mode", func(c *config.Config) { c.Mode = "prod" }},
		{"mode", func(c *config.Config) { c.Mode = "" }},
		{"listen", func(c *config.Config) { c.Listen = "127.0.0.1" }},
		{"listen", func(c *config.Config) { c.Listen = "127.0.0.1:" }},
		{"listen", func(c *config.Config) { c.Listen = "" }},
		{"listen", func(c *config.Config) { c.Listen = "::1:8080" }},
		{"data_dir", func(c *config.Config) { c.DataDir = "" }},
		{"workspace", func(c *config.Config) { c.Workspace = "" }},
		{"http.max_body_bytes", func(c *config.Config) { c.HTTP.MaxBodyBytes = 0 }},
		{"http.max_body_bytes", func(c *config.Config) { c.HTTP.MaxBodyBytes = -1 }},
		{"http.shutdown_timeout", func(c *config.Config) { c.HTTP.ShutdownTimeout = 0 }},
		{"http.read_header_timeout", func(c *config.Config) { c.HTTP.ReadHeaderTimeout = -time.Second }},
		{"mcp.session_timeout", func(c *config.Config) { c.MCP.SessionTimeout = 0 }},
		{"mcp.call_timeout", func(c *config.Config) { c.MCP.CallTimeout = -1 }},
		{"files.max_read_bytes", func(c *config.Config) { c.Files.MaxReadBytes = 0 }},
		{"files.max_write_bytes", func(c *config.Config) { c.Files.MaxWriteBytes = -5 }},
		{"python.timeout", func(c *config.Config) { c.Python.Timeout = 0 }},
		{"python.max_timeout", func(c *config.Config) { c.Python.MaxTimeout = 0 }},
		{"python.timeout", func(c *config.Config) { c.Python.Timeout, c.Python.MaxTimeout = 2*time.Minute, time.Minute }},
		{"python.max_output_bytes", func(c *config.Config) { c.Python.MaxOutputBytes = 0 }},
		{"python.max_code_bytes", func(c *config.Config) { c.Python.MaxCodeBytes = 0 }},
		{"python.interpreter", func(c *config.Config) { c.Python.Interpreter = "python3" }},
		{"python.interpreter", func(c *config.Config) { c.Python.Interpreter = "./venv/bin/python" }},
		{"sandbox.tmp_size_bytes", func(c *config.Config) { c.Sandbox.TmpSizeBytes = 0 }},
		{"sandbox.read_only_paths", func(c *config.Config) { c.Sandbox.ReadOnlyPaths = []string{"usr"} }},
		{"sandbox.read_only_paths", func(c *config.Config) { c.Sandbox.ReadOnlyPaths = []string{"/usr/"} }},
		{"sandbox.read_only_paths", func(c *config.Config) { c.Sandbox.ReadOnlyPaths = []string{"/usr/../home"} }},
		{"sandbox.read_only_paths", func(c *config.Config) { c.Sandbox.ReadOnlyPaths = []string{"/usr//lib"} }},
		{"sandbox.read_only_paths", func(c *config.Config) { c.Sandbox.ReadOnlyPaths = []string{""} }},
		{"audit.commit_timeout", func(c *config.Config) { c.Audit.CommitTimeout = 0 }},
		{"audit.queue_size", func(c *config.Config) { c.Audit.QueueSize = 0 }},
		{"audit.max_batch", func(c *config.Config) { c.Audit.MaxBatch = -1 }},
		{"stdio.user", func(c *config.Config) { c.Stdio.User = "" }},
		{"stdio.roles", func(c *config.Config) { c.Stdio.Roles = nil }},
		{"stdio.roles", func(c *config.Config) { c.Stdio.Roles = []string{} }},
		{"log.level", func(c *config.Config) { c.Log.Level = "verbose" }},
		{"log.level", func(c *config.Config) { c.Log.Level = "" }},
		{"log.format", func(c *config.Config) { c.Log.Format = "xml" }},
		{"listen", func(c *config.Config) { c.Listen = "localhost:abc" }},
		{"listen", func(c *config.Config) { c.Listen = "127.0.0.1:70000" }},
		{"policy.mode", func(c *config.Config) { c.Policy.Mode = "lenient" }},
		{"policy.mode", func(c *config.Config) { c.Policy.Mode = "" }},
		{"policy.mode", func(c *config.Config) { c.Mode, c.Policy.Mode = config.ModeProduction, "report" }},
		{"policy.reload_interval", func(c *config.Config) { c.Policy.ReloadInterval = time.Millisecond }},
		{"policy.timezone", func(c *config.Config) { c.Policy.Timezone = "Mars/Olympus_Mons" }},
		{"policy.timezone", func(c *config.Config) { c.Policy.Timezone = "" }},
		{"auth.trusted_proxies", func(c *config.Config) { c.Auth.TrustedProxies = []string{"10.0.0.0/33"} }},
		{"auth.trusted_proxies", func(c *config.Config) { c.Auth.TrustedProxies = []string{"proxy.internal"} }},
		{"auth.allowed_hosts", func(c *config.Config) { c.Auth.AllowedHosts = []string{"a b"} }},
		{"auth.lockout.threshold", func(c *config.Config) { c.Auth.Lockout.Threshold = -1 }},
		{"auth.lockout.window", func(c *config.Config) { c.Auth.Lockout.Window = 0 }},
		{"auth.lockout.base_delay", func(c *config.Config) { c.Auth.Lockout.BaseDelay = 0; c.Auth.Lockout.MaxDelay = time.Hour }},
		{"auth.lockout.max_delay", func(c *config.Config) { c.Auth.Lockout.MaxDelay = time.Second }},
		{"oidc.audience", func(c *config.Config) { c.OIDC.Issuer = "https://idp.example" }},
		{"oidc.algorithms", func(c *config.Config) {
			c.OIDC.Issuer, c.OIDC.Audience, c.OIDC.Algorithms = "https://idp.example", "https://gw.example/mcp", []string{"RS256", "nOnE"}
		}},
		{"oidc.algorithms", func(c *config.Config) {
			c.OIDC.Issuer, c.OIDC.Audience, c.OIDC.Algorithms = "https://idp.example", "https://gw.example/mcp", []string{"HS256"}
		}},
		{"oidc.issuer", func(c *config.Config) { c.OIDC.Audience = "https://gw.example/mcp" }},
		{"tls.cert_file", func(c *config.Config) { c.TLS.CertFile = "/etc/cert.pem" }},
		{"tls.cert_file", func(c *config.Config) { c.TLS.KeyFile = "/etc/key.pem" }},
		{"listen", func(c *config.Config) { c.Mode, c.Listen = config.ModeProduction, "0.0.0.0:8420" }},
		{"listen", func(c *config.Config) { c.Mode, c.Listen = config.ModeProduction, ":8420" }},
		{"listen", func(c *config.Config) { c.Mode, c.Listen = config.ModeProduction, "gw.example:8420" }},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			cfg := config.Default()
			tt.mutate(cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.key+":") {
				t.Errorf("error %q does not name %s", err, tt.key)
			}
			// Only the broken key is reported.
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.Contains(line, tt.key) {
					t.Errorf("unrelated error %q", line)
				}
			}
		})
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	cfg := config.Default()
	cfg.Mode, cfg.Listen, cfg.Log.Format = "x", "nope", "xml"
	err := cfg.Validate()
	for _, key := range []string{"mode:", "listen:", "log.format:"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate = %v, want it to name %s", err, key)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *config.Config)
	}{
		{"port 0", func(c *config.Config) { c.Listen = "127.0.0.1:0" }},
		{"all interfaces", func(c *config.Config) { c.Listen = ":8420" }},
		{"production loopback", func(c *config.Config) { c.Mode, c.Listen = config.ModeProduction, "[::1]:8420" }},
		{"production with TLS", func(c *config.Config) {
			c.Mode, c.Listen, c.TLS.CertFile, c.TLS.KeyFile = config.ModeProduction, ":8443", "/c.pem", "/k.pem"
		}},
		{"production behind a TLS proxy", func(c *config.Config) {
			c.Mode, c.Listen, c.TLS.AllowPlaintextNonLoopback = config.ModeProduction, "10.0.0.5:8420", true
		}},
		{"production report mode, overridden", func(c *config.Config) {
			c.Mode, c.Policy.Mode, c.Policy.AllowReportInProduction = config.ModeProduction, "report", true
		}},
		{"report mode in development", func(c *config.Config) { c.Policy.Mode = "report" }},
		{"lockout off", func(c *config.Config) { c.Auth.Lockout = config.LockoutConfig{} }},
		{"oidc", func(c *config.Config) {
			c.OIDC.Issuer, c.OIDC.Audience, c.OIDC.RoleMap = "https://idp.example", "https://gw.example/mcp", map[string]string{"eng": "developer"}
		}},
		{"trusted proxies", func(c *config.Config) { c.Auth.TrustedProxies = []string{"10.0.0.0/8", "::1", "192.0.2.1"} }},
		{"time zone", func(c *config.Config) { c.Policy.Timezone = "Asia/Seoul" }},
		{"ipv6", func(c *config.Config) { c.Listen = "[::1]:8420" }},
		{"production", func(c *config.Config) { c.Mode = config.ModeProduction }},
		{"timeout equals max", func(c *config.Config) { c.Python.MaxTimeout = c.Python.Timeout }},
		{"absolute interpreter", func(c *config.Config) { c.Python.Interpreter = "/usr/bin/python3" }},
		{"root read-only path", func(c *config.Config) { c.Sandbox.ReadOnlyPaths = []string{"/"} }},
		{"no read-only paths", func(c *config.Config) { c.Sandbox.ReadOnlyPaths = nil }},
		{"upper-case level", func(c *config.Config) { c.Log.Level = "DEBUG" }},
		{"json logs", func(c *config.Config) { c.Log.Format = "json" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			tt.mutate(cfg)
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate = %v", err)
			}
		})
	}
}

func TestValidateMakesPathsAbsolute(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = "./data/../portcullis-data"
	cfg.Workspace = "ws"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "portcullis-data"); cfg.DataDir != want {
		t.Errorf("data_dir = %q, want %q", cfg.DataDir, want)
	}
	if want := filepath.Join(wd, "ws"); cfg.Workspace != want {
		t.Errorf("workspace = %q, want %q", cfg.Workspace, want)
	}
	cfg.DataDir = "/srv/portcullis"
	if err := cfg.Validate(); err != nil || cfg.DataDir != "/srv/portcullis" {
		t.Errorf("absolute data_dir changed to %q (%v)", cfg.DataDir, err)
	}
}

// leaf is one settable configuration key found by walking Config.
type leaf struct {
	key   string // dotted YAML path
	index []int
	typ   reflect.Type
}

func leaves(t reflect.Type, prefix string, index []int) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		idx := append(slices.Clone(index), i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, leaves(f.Type, key, idx)...)
			continue
		}
		out = append(out, leaf{key: key, index: idx, typ: f.Type})
	}
	return out
}

// yamlKeys returns the dotted leaf keys of the YAML encoding of v: an
// independent view of what the file format accepts.
func yamlKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if prefix != "" {
				k = prefix + "." + k
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(k, sub)
				continue
			}
			out = append(out, k)
		}
	}
	walk("", m)
	slices.Sort(out)
	return out
}

func TestEnvKeysCoverEveryLeaf(t *testing.T) {
	keys := config.EnvKeys()
	if got := keys["PORTCULLIS_MCP_SESSION_TIMEOUT"]; got != "mcp.session_timeout" {
		t.Errorf("EnvKeys[PORTCULLIS_MCP_SESSION_TIMEOUT] = %q, want mcp.session_timeout", got)
	}
	want := map[string]string{}
	for _, l := range leaves(reflect.TypeFor[config.Config](), "", nil) {
		want["PORTCULLIS_"+strings.ToUpper(strings.ReplaceAll(l.key, ".", "_"))] = l.key
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("EnvKeys (-every leaf +got):\n%s", diff)
	}
	// Cross-check against the YAML encoding: every file key has a variable.
	var dotted []string
	for _, k := range keys {
		dotted = append(dotted, k)
	}
	slices.Sort(dotted)
	if diff := cmp.Diff(yamlKeys(t, config.Default()), dotted); diff != "" {
		t.Errorf("file keys vs environment keys (-yaml +env):\n%s", diff)
	}
	// Two keys must never map to one variable (e.g. a.b_c and a_b.c).
	seen := map[string]string{}
	for name, key := range keys {
		if other, dup := seen[name]; dup {
			t.Errorf("%s maps to both %s and %s", name, key, other)
		}
		seen[name] = key
	}
}

// TestEveryEnvKeySetsItsField: for every variable EnvKeys lists, setting
// it changes exactly its field and nothing else.
func TestEveryEnvKeySetsItsField(t *testing.T) {
	byKey := map[string]leaf{}
	for _, l := range leaves(reflect.TypeFor[config.Config](), "", nil) {
		byKey[l.key] = l
	}
	for name, key := range config.EnvKeys() {
		t.Run(name, func(t *testing.T) {
			l, ok := byKey[key]
			if !ok {
				t.Fatalf("EnvKeys lists %s → %s, which is not a field", name, key)
			}
			var raw string
			var value reflect.Value
			switch {
			case l.typ == reflect.TypeFor[time.Duration]():
				raw, value = "17m3s", reflect.ValueOf(17*time.Minute+3*time.Second)
			case l.typ.Kind() == reflect.Bool:
				raw, value = "true", reflect.ValueOf(true)
			case l.typ.Kind() == reflect.String:
				raw, value = "/custom/value", reflect.ValueOf("/custom/value").Convert(l.typ)
			case l.typ.Kind() == reflect.Int || l.typ.Kind() == reflect.Int64:
				raw, value = "4242", reflect.ValueOf(int64(4242)).Convert(l.typ)
			case l.typ.Kind() == reflect.Slice && l.typ.Elem().Kind() == reflect.String:
				raw, value = "/a, /b", reflect.ValueOf([]string{"/a", "/b"})
			case l.typ == reflect.TypeFor[[]config.AuditSinkConfig]():
				raw = `[{"name":"siem","type":"http","url":"https://siem.example/ingest","batch_size":7}]`
				value = reflect.ValueOf([]config.AuditSinkConfig{{Name: "siem", Type: "http",
					URL: "https://siem.example/ingest", BatchSize: 7}})
			case l.typ.Kind() == reflect.Float64:
				raw, value = "2.5", reflect.ValueOf(2.5)
			case l.typ.Kind() == reflect.Map && (l.typ.Elem().Kind() == reflect.Struct || l.typ.Elem().Kind() == reflect.Slice):
				raw, value = "{}", reflect.MakeMap(l.typ)
			case l.typ.Kind() == reflect.Slice && l.typ.Elem().Kind() == reflect.Struct:
				raw, value = "[]", reflect.MakeSlice(l.typ, 0, 0)
			case l.typ.Kind() == reflect.Map:
				raw, value = "grp-a=developer, grp-b = admin", reflect.ValueOf(map[string]string{"grp-a": "developer", "grp-b": "admin"})
			default:
				t.Fatalf("%s has type %s, which the test (and maybe setValue) does not handle", key, l.typ)
			}
			got := mustLoad(t, "", []string{name + "=" + raw})
			want := config.Default()
			reflect.ValueOf(want).Elem().FieldByIndex(l.index).Set(value)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s=%s (-want +got):\n%s", name, raw, diff)
			}
		})
	}
}

func TestNonConfigEnvNotConfigKeys(t *testing.T) {
	keys := config.EnvKeys()
	for _, name := range config.NonConfigEnv {
		if !strings.HasPrefix(name, config.EnvPrefix) {
			t.Errorf("%s lacks the %s prefix", name, config.EnvPrefix)
		}
		if key, ok := keys[name]; ok {
			t.Errorf("%s is both a non-config variable and the key %s", name, key)
		}
	}
}

// FuzzLoad: Load never panics on any file content; what it accepts it
// accepts again after re-encoding (no key silently lost).
func FuzzLoad(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("listen: 127.0.0.1:1\nhttp: {max_body_bytes: 5}\n"))
	f.Add([]byte("stdio:\n  roles: [a, b]\nsandbox:\n  read_only_paths: [/usr]\n"))
	f.Add([]byte("mcp: {session_timeout: 1h}\n---\nx: 1\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Add([]byte("!!binary aGVsbG8=\n"))
	f.Add([]byte("log: {level: !!int 3}\n"))
	f.Add([]byte(billionLaughs()))
	// One directory per worker process: the fuzz function runs sequentially
	// within a process, and a TempDir per input is slow.
	dir := f.TempDir()
	path, again := filepath.Join(dir, "c.yaml"), filepath.Join(dir, "again.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path, nil)
		if err != nil {
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal loaded config: %v", err)
		}
		if err := os.WriteFile(again, out, 0o600); err != nil {
			t.Fatal(err)
		}
		reloaded, err := config.Load(again, nil)
		if err != nil {
			t.Fatalf("re-encoded config refused: %v\n%s", err, out)
		}
		if diff := cmp.Diff(cfg, reloaded, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip changed the config:\n%s", diff)
		}
		_ = cfg.Validate() // must not panic either
	})
}

// TestReadmeConfigLoads: the configuration block in README.md is a valid
// config file (strict keys), so the documentation cannot drift from Load.
func TestReadmeConfigLoads(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "```yaml\nmode: development")
	if i < 0 {
		t.Fatal("README.md has no ```yaml block starting with mode: development")
	}
	block := s[i+len("```yaml\n"):]
	block = block[:strings.Index(block, "```")]
	path := filepath.Join(t.TempDir(), "readme.yaml")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
