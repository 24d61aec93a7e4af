package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/config"
)

// TestServersValidation: each malformed or unsafe server or flow entry is
// refused with an error naming its key; a good entry is normalized.
func TestServersValidation(t *testing.T) {
	good := func() config.ServerConfig {
		return config.ServerConfig{Name: "notes", Command: []string{"node", "/opt/notes/index.js"}, SecurityLevel: "strict",
			Mounts:  []config.MountConfig{{Source: "rel/notes", Target: "/data"}},
			Network: config.ServerNetwork{Allow: []string{"api.example.com:443"}},
			Env:     map[string]string{"API_TOKEN": "${secret:notes_token}"},
			Tools:   config.ServerTools{Allow: []string{"*"}, Deny: []string{"delete_*"}, Sensitivity: map[string]string{"write_note": "MEDIUM"}}}
	}
	no := false
	tests := []struct {
		name string
		mod  func(*config.ServerConfig)
		key  string
	}{
		{"bad name", func(s *config.ServerConfig) { s.Name = "Notes_1" }, "servers[0].name"},
		{"double dash", func(s *config.ServerConfig) { s.Name = "a--b" }, "servers[0].name"},
		{"both command and url", func(s *config.ServerConfig) { s.URL = "https://x.example/mcp" }, "servers[0]"},
		{"neither", func(s *config.ServerConfig) { s.Command = nil }, "servers[0]"},
		{"bad level", func(s *config.ServerConfig) { s.SecurityLevel = "paranoid" }, "servers[0].security_level"},
		{"wildcard at strict", func(s *config.ServerConfig) { s.Network.Allow = []string{"*.example.com:443"} }, "network.allow[0]"},
		{"no port", func(s *config.ServerConfig) { s.Network.Allow = []string{"api.example.com"} }, "network.allow[0]"},
		{"network at maximum", func(s *config.ServerConfig) { s.SecurityLevel = "maximum" }, "servers[0].network.allow"},
		{"writable at maximum", func(s *config.ServerConfig) {
			s.SecurityLevel, s.Network.Allow, s.Mounts[0].ReadOnly = "maximum", nil, &no
		}, "read_only"},
		{"mount over /proc", func(s *config.ServerConfig) { s.Mounts[0].Target = "/proc/self" }, "target"},
		{"relative target", func(s *config.ServerConfig) { s.Mounts[0].Target = "data" }, "target"},
		{"bad secret ref", func(s *config.ServerConfig) { s.Env["X"] = "${secret:../../etc}" }, "servers[0].env.X"},
		{"bad env name", func(s *config.ServerConfig) { s.Env["1X"] = "v" }, "servers[0].env"},
		{"bad sensitivity", func(s *config.ServerConfig) { s.Tools.Sensitivity["x"] = "EXTREME" }, "sensitivity"},
		{"bad label", func(s *config.ServerConfig) { s.Tools.Labels = map[string][]string{"x": {"Bad Label"}} }, "labels"},
		{"auth on stdio", func(s *config.ServerConfig) { s.Auth.BearerSecret = "t" }, "servers[0].auth"},
		{"plain http to a remote host", func(s *config.ServerConfig) {
			*s = config.ServerConfig{Name: "r", URL: "http://mcp.example.com/mcp"}
		}, "servers[0].url"},
		{"per_user without secret", func(s *config.ServerConfig) {
			*s = config.ServerConfig{Name: "r", URL: "https://mcp.example.com/mcp", Auth: config.ServerAuth{PerUser: true}}
		}, "per_user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			s := good()
			tc.mod(&s)
			cfg.Servers = []config.ServerConfig{s}
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("Validate() = %v; want an error naming %s", err, tc.key)
			}
		})
	}
	cfg := config.Default()
	cfg.Servers = []config.ServerConfig{good(), {Name: "remote", URL: "https://mcp.example.com/mcp",
		Auth: config.ServerAuth{BearerSecret: "remote_token"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := cfg.Servers[0].Mounts[0]
	if !filepath.IsAbs(m.Source) || m.Writable() {
		t.Fatalf("mount %+v: want an absolute source, read-only by default", m)
	}
	cfg.Servers = append(cfg.Servers, good())
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "used twice") {
		t.Fatalf("duplicate server names: %v", err)
	}
}

// TestServersNetworkAllowAccepted: the patterns the egress proxy accepts
// pass validation at the levels that allow them.
func TestServersNetworkAllowAccepted(t *testing.T) {
	for _, tc := range []struct {
		level string
		allow []string
	}{
		{"strict", []string{"api.example.com:443", "API.Example.com.:8443", "192.0.2.1:80", "[2001:db8::1]:443"}},
		{"standard", []string{"*.example.com:443", "api.example.com:443"}},
		{"minimal", []string{"*.example.co.uk:443"}},
	} {
		cfg := config.Default()
		cfg.Servers = []config.ServerConfig{{Name: "notes", Command: []string{"node", "/opt/notes/index.js"},
			SecurityLevel: tc.level, Network: config.ServerNetwork{Allow: tc.allow}}}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s %v: %v", tc.level, tc.allow, err)
		}
	}
}

func TestFlowsValidation(t *testing.T) {
	for name, f := range map[string]config.FlowRule{
		"unknown action": {After: config.FlowFrom{Label: "a"}, Then: config.FlowThen{Label: "b", Action: "allow"}},
		"missing action": {After: config.FlowFrom{Label: "a"}, Then: config.FlowThen{Label: "b"}},
		"empty label":    {Then: config.FlowThen{Label: "b", Action: "deny"}},
	} {
		cfg := config.Default()
		cfg.Flows = []config.FlowRule{f}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "flows[0]") {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
}

// TestServersFromEnv: the servers list is settable as JSON in
// PORTCULLIS_SERVERS, strictly (unknown keys are errors).
func TestServersFromEnv(t *testing.T) {
	cfg, err := config.Load("", []string{`PORTCULLIS_SERVERS=[{"name":"fx","command":["/bin/fx"],"security_level":"strict"}]`})
	if err != nil || len(cfg.Servers) != 1 || cfg.Servers[0].SecurityLevel != "strict" {
		t.Fatalf("Load: %+v, %v", cfg, err)
	}
	if _, err := config.Load("", []string{`PORTCULLIS_SERVERS=[{"name":"fx","comand":["/bin/fx"]}]`}); err == nil {
		t.Fatal("a misspelt key was accepted")
	}
}

// TestReadmePluginConfigLoads: the plugins example in README.md loads.
func TestReadmePluginConfigLoads(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "```yaml\nservers:")
	if i < 0 {
		t.Fatal("README.md has no ```yaml block starting with servers:")
	}
	block := s[i+len("```yaml\n"):]
	block = block[:strings.Index(block, "```")]
	path := filepath.Join(t.TempDir(), "plugins.yaml")
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
	if len(cfg.Servers) < 2 || len(cfg.Flows) < 1 {
		t.Fatalf("README example: %d servers, %d flows", len(cfg.Servers), len(cfg.Flows))
	}
}
