package doctor_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/doctor"
)

// env is a hardened production configuration on fresh directories.
type env struct {
	root, data, ws, webhookSecret string
}

func newEnv(t *testing.T) env {
	t.Helper()
	root := t.TempDir()
	e := env{root: root, data: filepath.Join(root, "data"), ws: filepath.Join(root, "ws")}
	mkdir(t, e.data, 0o700)
	mkdir(t, e.ws, 0o755)
	e.webhookSecret = writeFile(t, root, "webhook.secret", 0o600)
	return e
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// hardened returns a validated production configuration with no finding
// at all: loopback listener, enforced policy, strict defaults, signed
// alert webhook, audit sink, read-only file tools.
func (e env) hardened(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Mode = config.ModeProduction
	cfg.Limits = config.LimitsConfig{Quota: config.DefaultLimits(config.ModeProduction).Quota}
	cfg.DataDir, cfg.Workspace = e.data, e.ws
	cfg.Files.ReadOnly = true
	cfg.Alerts.Webhooks = []config.WebhookConfig{{Name: "ops", URL: "https://alerts.example.com/hook", SecretFile: e.webhookSecret}}
	cfg.Audit.Sinks = []config.AuditSinkConfig{{Name: "siem", Type: "syslog", Network: "tcp", Address: "siem.example.com:6514"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestHardenedConfigHasNoFindings(t *testing.T) {
	e := newEnv(t)
	got := doctor.Lint(e.hardened(t), doctor.OSFS{})
	if len(got) != 0 {
		t.Errorf("hardened production config: findings %+v, want none", got)
	}
	if code := doctor.ExitCode(got); code != doctor.ExitOK {
		t.Errorf("exit code %d, want %d", code, doctor.ExitOK)
	}
}

// TestDevelopmentDefaults: the embedded defaults (what `portcullis serve`
// runs with no configuration) have info findings only, so `doctor` exits 0
// and a development gateway starts.
func TestDevelopmentDefaults(t *testing.T) {
	e := newEnv(t)
	cfg := config.Default()
	cfg.DataDir, cfg.Workspace = e.data, e.ws
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	got := doctor.Lint(cfg, doctor.OSFS{})
	var ids []string
	for _, f := range got {
		ids = append(ids, f.ID)
	}
	if diff := cmp.Diff([]string{"mode-development"}, ids); diff != "" {
		t.Errorf("development defaults: IDs (-want +got):\n%s", diff)
	}
	if code := doctor.ExitCode(got); code != doctor.ExitOK {
		t.Errorf("exit code %d, want 0", code)
	}
}

type lintCase struct {
	name string
	// mutate weakens the hardened configuration.
	mutate func(t *testing.T, e env, c *config.Config)
	id     string
	sev    doctor.Severity
	key    string
	absent bool // the check must not fire
}

// pg selects PostgreSQL with dsn.
// writeCA writes a self-signed CA certificate (PEM) for sslrootcert and
// returns its path.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func pg(c *config.Config, dsn string) {
	c.Storage.Driver, c.Storage.DSN = config.DriverPostgres, dsn
}

func lintCases() []lintCase {
	dev := func(c *config.Config) { c.Mode = config.ModeDevelopment }
	return []lintCase{
		{"development mode", func(_ *testing.T, _ env, c *config.Config) { dev(c) }, "mode-development", doctor.Info, "mode", false},

		{"all interfaces without TLS", func(_ *testing.T, _ env, c *config.Config) { c.Listen = "0.0.0.0:8420" }, "listen-no-tls", doctor.Critical, "listen", false},
		{"empty host without TLS in development", func(_ *testing.T, _ env, c *config.Config) { dev(c); c.Listen = ":8420" }, "listen-no-tls", doctor.Critical, "listen", false},
		{"localhost", func(_ *testing.T, _ env, c *config.Config) { c.Listen = "localhost:8420" }, "listen-no-tls", 0, "", true},
		{"IPv6 loopback", func(_ *testing.T, _ env, c *config.Config) { c.Listen = "[::1]:8420" }, "listen-no-tls", 0, "", true},
		{"non-loopback with TLS", func(t *testing.T, e env, c *config.Config) {
			c.Listen = "10.0.0.5:8443"
			c.TLS.CertFile, c.TLS.KeyFile = writeFile(t, e.root, "cert.pem", 0o644), writeFile(t, e.root, "key.pem", 0o600)
		}, "listen-no-tls", 0, "", true},
		{"plaintext behind a proxy", func(_ *testing.T, _ env, c *config.Config) {
			c.Listen, c.TLS.AllowPlaintextNonLoopback = "10.0.0.5:8420", true
		}, "listen-plaintext-allowed", doctor.Warning, "tls.allow_plaintext_non_loopback", false},
		{"non-loopback without allowed hosts", func(_ *testing.T, _ env, c *config.Config) {
			c.Listen, c.TLS.AllowPlaintextNonLoopback = "10.0.0.5:8420", true
		}, "allowed-hosts-empty", doctor.Warning, "auth.allowed_hosts", false},
		{"non-loopback with allowed hosts", func(_ *testing.T, _ env, c *config.Config) {
			c.Listen, c.TLS.AllowPlaintextNonLoopback, c.Auth.AllowedHosts = "10.0.0.5:8420", true, []string{"gw.example.com"}
		}, "allowed-hosts-empty", 0, "", true},

		{"trusted proxies 0.0.0.0/0", func(_ *testing.T, _ env, c *config.Config) {
			c.Auth.TrustedProxies = []string{"10.0.0.0/8", "0.0.0.0/0"}
		}, "trusted-proxies-any", doctor.Critical, "auth.trusted_proxies", false},
		{"trusted proxies ::/0", func(_ *testing.T, _ env, c *config.Config) { c.Auth.TrustedProxies = []string{"::/0"} }, "trusted-proxies-any", doctor.Critical, "auth.trusted_proxies", false},
		{"trusted proxy CIDR", func(_ *testing.T, _ env, c *config.Config) {
			c.Auth.TrustedProxies = []string{"10.0.0.0/8", "192.0.2.7"}
		}, "trusted-proxies-any", 0, "", true},
		{"lockout off", func(_ *testing.T, _ env, c *config.Config) { c.Auth.Lockout.Threshold = 0 }, "lockout-disabled", doctor.Warning, "auth.lockout.threshold", false},
		{"postgres over the network without TLS", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "postgres://pc:"+rand.Text()+"@db.internal:5432/pc?sslmode=disable")
		}, "storage-dsn-no-tls", doctor.Critical, "storage.dsn", false},
		{"postgres sslmode prefer falls back to plain text", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "host=db.internal user=pc dbname=pc sslmode=prefer")
		}, "storage-dsn-no-tls", doctor.Critical, "storage.dsn", false},
		{"postgres default sslmode (prefer) in development", func(_ *testing.T, _ env, c *config.Config) {
			dev(c)
			pg(c, "postgres://pc@10.0.0.5/pc")
		}, "storage-dsn-no-tls", doctor.Warning, "storage.dsn", false},
		{"postgres verify-full", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "postgres://pc@db.internal/pc?sslmode=verify-full")
		}, "storage-dsn-no-tls", 0, "", true},
		{"postgres second host of a multi-host DSN without TLS", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "host=127.0.0.1,db2.internal user=pc dbname=pc sslmode=disable")
		}, "storage-dsn-no-tls", doctor.Critical, "storage.dsn", false},
		{"postgres multi-host DSN, all verify-full", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "host=db1.internal,db2.internal user=pc dbname=pc sslmode=verify-full")
		}, "storage-dsn-no-tls", 0, "", true},
		{"postgres sslmode require authenticates no server", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "postgres://pc@db.internal/pc?sslmode=require")
		}, "storage-dsn-tls-unverified", doctor.Warning, "storage.dsn", false},
		{"postgres sslmode verify-ca checks no host name", func(t *testing.T, _ env, c *config.Config) {
			pg(c, "postgres://pc@db.internal/pc?sslmode=verify-ca&sslrootcert="+writeCA(t))
		}, "storage-dsn-tls-unverified", doctor.Warning, "storage.dsn", false},
		{"postgres verify-full is not unverified", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "postgres://pc@db.internal/pc?sslmode=verify-full")
		}, "storage-dsn-tls-unverified", 0, "", true},
		{"postgres on loopback without TLS", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "postgres://pc@127.0.0.1:5432/pc?sslmode=disable")
		}, "storage-dsn-no-tls", 0, "", true},
		{"postgres over a unix socket", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "host=/var/run/postgresql dbname=pc sslmode=disable")
		}, "storage-dsn-no-tls", 0, "", true},
		{"postgres DSN that does not parse", func(_ *testing.T, _ env, c *config.Config) {
			pg(c, "postgres://pc:"+rand.Text()+"@db.internal:notaport/pc")
		}, "storage-dsn-unusable", doctor.Critical, "storage.dsn", false},
		{"postgres DSN file readable by others", func(t *testing.T, e env, c *config.Config) {
			p := filepath.Join(t.TempDir(), "dsn")
			if err := os.WriteFile(p, []byte("postgres://pc@127.0.0.1/pc"), 0o644); err != nil {
				t.Fatal(err)
			}
			chmod(t, p, 0o644)
			c.Storage.Driver, c.Storage.DSNFile = config.DriverPostgres, p
		}, "storage-dsn-unusable", doctor.Critical, "storage.dsn_file", false},
		{"http issuer in production", func(_ *testing.T, _ env, c *config.Config) { c.OIDC.Issuer = "http://127.0.0.1:9000" }, "oidc-issuer-http", doctor.Warning, "oidc.issuer", false},
		{"http issuer in development", func(_ *testing.T, _ env, c *config.Config) { dev(c); c.OIDC.Issuer = "HTTP://localhost:9000" }, "oidc-issuer-http", doctor.Info, "oidc.issuer", false},
		{"https issuer", func(_ *testing.T, _ env, c *config.Config) { c.OIDC.Issuer = "https://idp.example.com" }, "oidc-issuer-http", 0, "", true},

		{"report mode in production", func(_ *testing.T, _ env, c *config.Config) { c.Policy.Mode = "report" }, "policy-report-mode", doctor.Critical, "policy.mode", false},
		{"report mode allowed in production", func(_ *testing.T, _ env, c *config.Config) {
			c.Policy.Mode, c.Policy.AllowReportInProduction = "report", true
		}, "policy-report-mode", doctor.Warning, "policy.mode", false},
		{"report mode in development", func(_ *testing.T, _ env, c *config.Config) { dev(c); c.Policy.Mode = "report" }, "policy-report-mode", doctor.Info, "policy.mode", false},

		{"degraded sandbox in production (an explicit opt-in: warning)", func(_ *testing.T, _ env, c *config.Config) { c.Sandbox.AllowDegraded = true }, "sandbox-degraded", doctor.Warning, "sandbox.allow_degraded", false},
		{"degraded sandbox in development", func(_ *testing.T, _ env, c *config.Config) { dev(c); c.Sandbox.AllowDegraded = true }, "sandbox-degraded", doctor.Warning, "sandbox.allow_degraded", false},
		{"python level minimal", func(_ *testing.T, _ env, c *config.Config) { c.Python.Level = "minimal" }, "python-level-minimal", doctor.Warning, "python.level", false},
		{"python level strict", func(_ *testing.T, _ env, c *config.Config) { c.Python.Level = "strict" }, "python-level-minimal", 0, "", true},
		{"legacy code policy", func(_ *testing.T, _ env, c *config.Config) { c.Python.CodePolicy = "legacy" }, "code-policy-legacy", doctor.Warning, "python.code_policy", false},

		{"shell in command.allow", func(_ *testing.T, _ env, c *config.Config) { c.Command.Allow = []string{"ls", "bash"} }, "command-allow-interpreter", doctor.Warning, "command.allow", false},
		{"python3.12 in command.allow", func(_ *testing.T, _ env, c *config.Config) { c.Command.Allow = []string{"python3.12"} }, "command-allow-interpreter", doctor.Warning, "command.allow", false},
		{"plain tools in command.allow", func(_ *testing.T, _ env, c *config.Config) { c.Command.Allow = []string{"ls", "grep", "wc"} }, "command-allow-interpreter", 0, "", true},
		{"development command defaults", func(_ *testing.T, _ env, c *config.Config) {
			dev(c)
			c.Command.Allow = config.DefaultCommandAllow
		}, "command-allow-interpreter", 0, "", true},
		{"deny names off", func(_ *testing.T, _ env, c *config.Config) { c.Files.DenyNames = []string{} }, "files-deny-disabled", doctor.Warning, "files.deny_names", false},
		{"writable files in production", func(_ *testing.T, _ env, c *config.Config) { c.Files.ReadOnly = false }, "files-writable", doctor.Info, "files.read_only", false},
		{"fetch any private address", func(_ *testing.T, _ env, c *config.Config) { c.HTTPFetch.AllowPrivate = []string{"0.0.0.0/0"} }, "http-fetch-private", doctor.Warning, "http_fetch.allow_private", false},
		{"fetch cloud metadata", func(_ *testing.T, _ env, c *config.Config) { c.HTTPFetch.AllowPrivate = []string{"169.254.0.0/16"} }, "http-fetch-private", doctor.Warning, "http_fetch.allow_private", false},
		{"fetch one internal range", func(_ *testing.T, _ env, c *config.Config) { c.HTTPFetch.AllowPrivate = []string{"10.1.2.0/24"} }, "http-fetch-private", doctor.Info, "http_fetch.allow_private", false},
		{"fetch internal range in development", func(_ *testing.T, _ env, c *config.Config) {
			dev(c)
			c.HTTPFetch.AllowPrivate = []string{"10.1.2.0/24"}
		}, "http-fetch-private", 0, "", true},

		{"plugin at minimal", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "git", Command: []string{"/usr/bin/git-mcp"}, SecurityLevel: "maximum"},
				{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "minimal"}}
		}, "plugin-level-minimal", doctor.Warning, "servers[1].security_level", false},
		{"plugin network wildcard", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "standard",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "*.example.com:443"}}}}
		}, "plugin-network-wildcard", doctor.Warning, "servers[0].network.allow[1]", false},
		{"plugin allow wildcard over a TLD", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "standard",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "*.com:443"}}}}
		}, "plugin-allow-invalid", doctor.Critical, "servers[0].network.allow[1]", false},
		{"plugin allow inner wildcard", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "standard",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "a*b.example.com:443"}}}}
		}, "plugin-allow-invalid", doctor.Critical, "servers[0].network.allow[1]", false},
		{"plugin allow hex IPv4", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "strict",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "0x7f.1:80"}}}}
		}, "plugin-allow-invalid", doctor.Critical, "servers[0].network.allow[1]", false},
		{"plugin allow short IPv4", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "strict",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "127.1:80"}}}}
		}, "plugin-allow-invalid", doctor.Critical, "servers[0].network.allow[1]", false},
		{"plugin allow integer IPv4", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "strict",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "2130706433:80"}}}}
		}, "plugin-allow-invalid", doctor.Critical, "servers[0].network.allow[1]", false},
		{"plugin allow port with a leading zero", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "strict",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "host:080"}}}}
		}, "plugin-allow-invalid", doctor.Critical, "servers[0].network.allow[1]", false},
		{"plugin allow zoned IPv6", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "strict",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "[fe80::1%eth0]:443"}}}}
		}, "plugin-allow-invalid", doctor.Critical, "servers[0].network.allow[1]", false},
		{"plugin allow unspecified address", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "strict",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "0.0.0.0:80"}}}}
		}, "plugin-allow-invalid", doctor.Critical, "servers[0].network.allow[1]", false},
		{"plugin allow valid patterns", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "standard",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443", "*.example.com:443", "192.0.2.1:80", "[2001:db8::1]:443"}}}}
		}, "plugin-allow-invalid", 0, "", true},
		{"plugin exact hosts", func(_ *testing.T, _ env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "web", Command: []string{"/usr/bin/web-mcp"}, SecurityLevel: "strict",
				Network: config.ServerNetwork{Allow: []string{"api.example.com:443"}}}}
		}, "plugin-network-wildcard", 0, "", true},

		{"CRITICAL rate too high", func(_ *testing.T, _ env, c *config.Config) {
			setLevel(c, "CRITICAL", func(l *config.ToolLimits) { l.RatePerMinute = 1e6 })
		},
			"limits-weak", doctor.Warning, "limits.levels.CRITICAL.rate_per_minute", false},
		{"HIGH without rate", func(_ *testing.T, _ env, c *config.Config) {
			setLevel(c, "HIGH", func(l *config.ToolLimits) { l.RatePerMinute = 0 })
		},
			"limits-weak", doctor.Warning, "limits.levels.HIGH.rate_per_minute", false},
		{"HIGH unlimited concurrency", func(_ *testing.T, _ env, c *config.Config) {
			setLevel(c, "HIGH", func(l *config.ToolLimits) { l.PrincipalConcurrency = 0 })
		},
			"limits-weak", doctor.Warning, "limits.levels.HIGH.principal_concurrency", false},
		{"development level defaults", func(_ *testing.T, _ env, c *config.Config) {
			dev(c)
			c.Limits = config.DefaultLimits(config.ModeDevelopment)
		}, "limits-weak", 0, "", true},
		{"principal unbounded", func(_ *testing.T, _ env, c *config.Config) { c.Limits.Principal.Concurrency = 0 }, "limits-principal-unbounded", doctor.Warning, "limits.principal", false},
		{"huge body", func(_ *testing.T, _ env, c *config.Config) { c.HTTP.MaxBodyBytes = 64 << 20 }, "limits-large-payload", doctor.Warning, "http.max_body_bytes", false},
		{"huge arguments", func(_ *testing.T, _ env, c *config.Config) {
			setLevel(c, "LOW", func(l *config.ToolLimits) { l.MaxArgBytes = 1 << 30 })
		},
			"limits-large-payload", doctor.Warning, "limits.levels.LOW.max_arg_bytes", false},
		{"no daily quota", func(_ *testing.T, _ env, c *config.Config) { c.Limits.Quota.CallsPerDay = 0 }, "quota-unlimited", doctor.Warning, "limits.quota", false},
		{"no daily quota in development", func(_ *testing.T, _ env, c *config.Config) { dev(c); c.Limits.Quota.CallsPerDay = 0 }, "quota-unlimited", 0, "", true},

		{"principal quarantine off", func(_ *testing.T, _ env, c *config.Config) { c.Violations.Quarantine.Principal.Count = 0 },
			"quarantine-disabled", doctor.Warning, "violations.quarantine.principal.count", false},
		{"session quarantine off", func(_ *testing.T, _ env, c *config.Config) { c.Violations.Quarantine.Session.Count = 0 },
			"quarantine-disabled", doctor.Warning, "violations.quarantine.session.count", false},
		{"no alert sink", func(_ *testing.T, _ env, c *config.Config) { c.Alerts.Webhooks = nil }, "alerts-no-sink", doctor.Warning, "alerts", false},
		{"SMTP alerts only", func(_ *testing.T, _ env, c *config.Config) {
			c.Alerts.Webhooks = nil
			c.Alerts.SMTP = config.SMTPConfig{Addr: "smtp.example.com:587", From: "gw@example.com", To: []string{"ops@example.com"}, StartTLS: true}
		}, "alerts-no-sink", 0, "", true},
		{"developers skip approval", func(_ *testing.T, _ env, c *config.Config) { c.Approval.ExemptRoles = []string{"admin", "developer"} },
			"approval-exempt-roles", doctor.Warning, "approval.exempt_roles", false},
		{"short retention", func(_ *testing.T, _ env, c *config.Config) { c.Audit.Sinks = nil; c.Audit.RetentionMonths = 1 },
			"audit-retention-short", doctor.Warning, "audit.retention_months", false},
		{"short retention with a sink", func(_ *testing.T, _ env, c *config.Config) { c.Audit.RetentionMonths = 2 },
			"audit-retention-short", doctor.Info, "audit.retention_months", false},
		{"retention a year", func(_ *testing.T, _ env, c *config.Config) { c.Audit.RetentionMonths = 12 }, "audit-retention-short", 0, "", true},
		{"no audit sink", func(_ *testing.T, _ env, c *config.Config) { c.Audit.Sinks = nil }, "audit-no-sink", doctor.Info, "audit.sinks", false},

		{"data dir 0755 with a database", func(t *testing.T, e env, _ *config.Config) {
			chmod(t, e.data, 0o755)
			writeFile(t, e.data, "portcullis.db", 0o644)
		}, "data-dir-permissions", doctor.Critical, "data_dir", false},
		{"data dir 0750 with a key", func(t *testing.T, e env, _ *config.Config) {
			writeFile(t, e.data, "server.secret", 0o600)
			chmod(t, e.data, 0o750)
		}, "data-dir-permissions", doctor.Critical, "data_dir", false},
		{"empty data dir 0755", func(t *testing.T, e env, _ *config.Config) { chmod(t, e.data, 0o755) }, "data-dir-permissions", doctor.Info, "data_dir", false},
		{"data dir is a file", func(t *testing.T, e env, c *config.Config) { c.DataDir = e.webhookSecret }, "data-dir-permissions", doctor.Critical, "data_dir", false},
		{"data dir not created yet", func(_ *testing.T, e env, c *config.Config) { c.DataDir = filepath.Join(e.root, "new") }, "data-dir-permissions", 0, "", true},
		{"data dir inside the workspace", func(_ *testing.T, e env, c *config.Config) { c.Workspace = e.root }, "data-dir-exposed", doctor.Critical, "workspace", false},
		{"workspace inside the data dir", func(_ *testing.T, e env, c *config.Config) { c.Workspace = filepath.Join(e.data, "ws") }, "data-dir-exposed", doctor.Critical, "workspace", false},
		{"data dir under a read-only path", func(_ *testing.T, e env, c *config.Config) {
			c.Sandbox.ReadOnlyPaths = append(c.Sandbox.ReadOnlyPaths, e.root)
		}, "data-dir-exposed", doctor.Critical, "sandbox.read_only_paths", false},
		{"data dir mounted into a plugin", func(_ *testing.T, e env, c *config.Config) {
			c.Servers = []config.ServerConfig{{Name: "fs", Command: []string{"/usr/bin/fs-mcp"},
				Mounts: []config.MountConfig{{Source: e.ws}, {Source: filepath.Join(e.data, "sub")}}}}
		}, "data-dir-exposed", doctor.Critical, "servers[0].mounts[1].source", false},
		{"sibling with a common prefix", func(_ *testing.T, e env, c *config.Config) {
			c.Workspace = e.data + "-ws"
		}, "data-dir-exposed", 0, "", true},

		{"world-readable server secret", func(t *testing.T, e env, _ *config.Config) { writeFile(t, e.data, "server.secret", 0o644) },
			"key-file-permissions", doctor.Critical, "data_dir", false},
		{"group-readable secrets key (the gateway refuses it)", func(t *testing.T, e env, _ *config.Config) { writeFile(t, e.data, "secrets.key", 0o640) },
			"key-file-permissions", doctor.Critical, "data_dir", false},
		{"group-readable TLS key", func(t *testing.T, e env, c *config.Config) {
			c.TLS.CertFile, c.TLS.KeyFile = writeFile(t, e.root, "cert.pem", 0o644), writeFile(t, e.root, "key.pem", 0o640)
		}, "key-file-permissions", doctor.Warning, "tls.key_file", false},
		{"private data-dir keys", func(t *testing.T, e env, _ *config.Config) {
			for _, n := range []string{"server.secret", "audit.key", "secrets.key", "audit-chain.key", "audit-signing.key"} {
				writeFile(t, e.data, n, 0o600)
			}
		}, "key-file-permissions", 0, "", true},
		{"world-writable webhook secret", func(t *testing.T, e env, _ *config.Config) { chmod(t, e.webhookSecret, 0o602) },
			"key-file-permissions", doctor.Critical, "alerts.webhooks[0].secret_file", false},
		{"world-readable TLS key", func(t *testing.T, e env, c *config.Config) {
			c.TLS.CertFile, c.TLS.KeyFile = writeFile(t, e.root, "cert.pem", 0o644), writeFile(t, e.root, "key.pem", 0o644)
		}, "key-file-permissions", doctor.Critical, "tls.key_file", false},
		{"world-readable external chain key", func(t *testing.T, e env, c *config.Config) {
			c.Audit.ChainKeyFile = writeFile(t, e.root, "chain.key", 0o604)
		}, "key-file-permissions", doctor.Critical, "audit.chain_key_file", false},
		{"symlinked audit key", func(t *testing.T, e env, _ *config.Config) {
			symlink(t, writeFile(t, e.root, "real.key", 0o600), filepath.Join(e.data, "audit.key"))
		}, "key-file-type", doctor.Warning, "data_dir", false},
		{"symlinked TLS key (followed)", func(t *testing.T, e env, c *config.Config) {
			c.TLS.CertFile, c.TLS.KeyFile = writeFile(t, e.root, "cert.pem", 0o644), filepath.Join(e.root, "live.pem")
			symlink(t, writeFile(t, e.root, "key.pem", 0o600), c.TLS.KeyFile)
		}, "key-file-type", 0, "", true},
		{"key that is a directory", func(t *testing.T, e env, c *config.Config) {
			c.Audit.SigningKeyFile = filepath.Join(e.root, "dir.key")
			mkdir(t, c.Audit.SigningKeyFile, 0o700)
		}, "key-file-type", doctor.Warning, "audit.signing_key_file", false},
		{"missing chain key file", func(_ *testing.T, e env, c *config.Config) { c.Audit.ChainKeyFile = filepath.Join(e.root, "nope.key") },
			"key-file-missing", doctor.Warning, "audit.chain_key_file", false},
		{"missing certificate", func(t *testing.T, e env, c *config.Config) {
			c.TLS.CertFile, c.TLS.KeyFile = filepath.Join(e.root, "nope.pem"), writeFile(t, e.root, "key.pem", 0o600)
		}, "key-file-missing", doctor.Warning, "tls.cert_file", false},
		{"data-dir keys not created yet", func(_ *testing.T, _ env, _ *config.Config) {}, "key-file-missing", 0, "", true},
		{"world-writable workspace", func(t *testing.T, e env, _ *config.Config) { chmod(t, e.ws, 0o777) }, "workspace-world-writable", doctor.Warning, "workspace", false},
		{"bootstrap admin key left", func(t *testing.T, e env, _ *config.Config) { writeFile(t, e.data, "admin.key", 0o600) },
			"admin-key-on-disk", doctor.Info, "data_dir", false},
	}
}

func setLevel(c *config.Config, name string, f func(*config.ToolLimits)) {
	l := c.Limits.Levels[name]
	f(&l)
	c.Limits.Levels[name] = l
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestLintChecks(t *testing.T) {
	for _, tc := range lintCases() {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.hardened(t)
			tc.mutate(t, e, cfg)
			got := doctor.Lint(cfg, doctor.OSFS{})
			var match []doctor.Finding
			for _, f := range got {
				if f.ID == tc.id {
					match = append(match, f)
				}
			}
			if tc.absent {
				if len(match) != 0 {
					t.Errorf("%s fired: %+v", tc.id, match)
				}
				return
			}
			i := slices.IndexFunc(match, func(f doctor.Finding) bool { return f.Key == tc.key })
			if i < 0 {
				t.Fatalf("no %s finding for key %s; findings: %+v", tc.id, tc.key, got)
			}
			if f := match[i]; f.Severity != tc.sev {
				t.Errorf("%s %s: severity %s, want %s (%s)", tc.id, tc.key, f.Severity, tc.sev, f.Message)
			}
		})
	}
}

// TestCatalogue: every check in the catalogue is exercised by a case that
// makes it fire, every finding's ID is in the catalogue with a severity no
// worse than documented, and every finding says how to fix it.
func TestCatalogue(t *testing.T) {
	catalogue := map[string]doctor.Check{}
	for _, c := range doctor.Checks() {
		if _, dup := catalogue[c.ID]; dup || c.ID == "" || c.Doc == "" {
			t.Errorf("catalogue entry %+v: duplicate or incomplete", c)
		}
		catalogue[c.ID] = c
	}
	fired := map[string]bool{}
	for _, tc := range lintCases() {
		e := newEnv(t)
		cfg := e.hardened(t)
		tc.mutate(t, e, cfg)
		for _, f := range doctor.Lint(cfg, doctor.OSFS{}) {
			c, ok := catalogue[f.ID]
			switch {
			case !ok:
				t.Errorf("%s: finding ID %q is not in the catalogue", tc.name, f.ID)
			case f.Severity > c.Worst:
				t.Errorf("%s: %s is %s, the catalogue says at most %s", tc.name, f.ID, f.Severity, c.Worst)
			}
			if f.Key == "" || f.Message == "" || f.Fix == "" {
				t.Errorf("%s: incomplete finding %+v", tc.name, f)
			}
		}
		if !tc.absent {
			fired[tc.id] = true
		}
	}
	for id := range catalogue {
		if !fired[id] {
			t.Errorf("check %s has no case that makes it fire", id)
		}
	}
}

func TestFindingsOrder(t *testing.T) {
	e := newEnv(t)
	cfg := e.hardened(t)
	cfg.Audit.Sinks = nil            // info
	cfg.Auth.Lockout.Threshold = 0   // warning
	cfg.Sandbox.AllowDegraded = true // warning (explicit opt-in)
	cfg.Listen = "0.0.0.0:8420"      // critical, warning
	cfg.Files.DenyNames = []string{} // warning
	got := doctor.Lint(cfg, doctor.OSFS{})
	var ids []string
	for _, f := range got {
		ids = append(ids, f.Severity.String()+" "+f.ID)
	}
	want := []string{"critical listen-no-tls",
		"warning allowed-hosts-empty", "warning lockout-disabled", "warning sandbox-degraded", "warning files-deny-disabled", "info audit-no-sink"}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// errFS fails every call, as a file system the lint may not inspect.
type errFS struct{}

func (errFS) Stat(string) (fs.FileInfo, error)  { return nil, fs.ErrPermission }
func (errFS) Lstat(string) (fs.FileInfo, error) { return nil, fs.ErrPermission }

func TestUninspectableFiles(t *testing.T) {
	e := newEnv(t)
	got := doctor.Lint(e.hardened(t), errFS{})
	var ids []string
	for _, f := range got {
		ids = append(ids, f.ID+" "+f.Key+" "+f.Severity.String())
	}
	want := []string{"data-dir-permissions data_dir warning", "key-file-missing alerts.webhooks[0].secret_file warning"}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
}

func TestExitCode(t *testing.T) {
	f := func(s ...doctor.Severity) []doctor.Finding {
		var out []doctor.Finding
		for _, v := range s {
			out = append(out, doctor.Finding{ID: "x", Severity: v})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		findings []doctor.Finding
		want     int
	}{
		{"none", nil, 0},
		{"info", f(doctor.Info, doctor.Info), 0},
		{"warning", f(doctor.Info, doctor.Warning), 1},
		{"critical", f(doctor.Warning, doctor.Critical, doctor.Info), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := doctor.ExitCode(tc.findings); got != tc.want {
				t.Errorf("ExitCode = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestGate(t *testing.T) {
	if err := doctor.Gate([]doctor.Finding{{ID: "lockout-disabled", Severity: doctor.Warning}}); err != nil {
		t.Errorf("Gate without critical findings = %v, want nil", err)
	}
	err := doctor.Gate([]doctor.Finding{
		{ID: "listen-no-tls", Severity: doctor.Critical, Key: "listen", Message: "in clear", Fix: "set tls.cert_file"},
		{ID: "lockout-disabled", Severity: doctor.Warning, Key: "auth.lockout.threshold"},
		{ID: "sandbox-degraded", Severity: doctor.Critical, Key: "sandbox.allow_degraded", Message: "degraded", Fix: "remove it"},
	})
	if !errors.Is(err, doctor.ErrCritical) {
		t.Fatalf("Gate = %v, want ErrCritical", err)
	}
	msg := err.Error()
	for _, want := range []string{"listen-no-tls (listen): in clear", "fix: set tls.cert_file", "sandbox-degraded (sandbox.allow_degraded)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Gate error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "lockout-disabled") {
		t.Errorf("Gate error lists a warning:\n%s", msg)
	}
}

func TestSeverityJSON(t *testing.T) {
	in := []doctor.Finding{{ID: "a", Severity: doctor.Critical, Key: "k", Message: "m", Fix: "f"}, {ID: "b", Severity: doctor.Info}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"severity":"critical"`) || !strings.Contains(string(b), `"severity":"info"`) {
		t.Errorf("JSON %s lacks severity names", b)
	}
	var out []doctor.Finding
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := json.Marshal(doctor.Finding{Severity: 7}); err == nil {
		t.Error("an unknown severity marshalled")
	}
	var s doctor.Severity
	if err := s.UnmarshalText([]byte("fatal")); err == nil {
		t.Error(`UnmarshalText("fatal") succeeded`)
	}
}

// TestStorageFindingsHideTheDSN: no storage finding shows the password
// or the connection string, whatever is wrong with it.
func TestStorageFindingsHideTheDSN(t *testing.T) {
	pw := rand.Text()
	for _, dsn := range []string{
		"postgres://pc:" + pw + "@db.internal:notaport/pc",
		"postgres://pc:" + pw + "@db.internal:5432/pc?sslmode=disable",
		"host=db.internal password=" + pw + " sslmode=prefer",
		"host=db.internal password='" + pw + " sslmode=prefer",
	} {
		cfg := config.Default()
		cfg.Mode = config.ModeProduction
		pg(cfg, dsn)
		fs := doctor.Lint(cfg, doctor.OSFS{})
		found := false
		for _, f := range fs {
			if strings.HasPrefix(f.ID, "storage-") {
				found = true
			}
			if b, _ := json.Marshal(f); strings.Contains(string(b), pw) {
				t.Errorf("finding %s shows the password: %s", f.ID, b)
			}
		}
		if !found {
			t.Errorf("no storage finding for a broken or plain-text DSN")
		}
	}
}
