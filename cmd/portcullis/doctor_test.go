package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/doctor"
)

// TestDoctorExitCodes: `doctor --config-only` exits 0 on info findings
// only, 1 on a warning and 2 on a critical finding, and prints each
// finding with its fix.
func TestDoctorExitCodes(t *testing.T) {
	t.Setenv("PORTCULLIS_CONFIG", "")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		code       int
		want       []string
	}{
		{"development defaults", "", 0, []string{"INFO      mode-development", "0 critical, 0 warning(s), 1 info."}},
		{"lockout off", "auth:\n  lockout:\n    threshold: 0\n", 1, []string{"WARNING   lockout-disabled  auth.lockout.threshold", "fix: set a threshold"}},
		{"every address a trusted proxy", "auth:\n  trusted_proxies: [\"0.0.0.0/0\"]\n", 2,
			[]string{"CRITICAL  trusted-proxies-any", "fix: ", "refuses to start on a critical finding"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgFile := writeFile(t, t.TempDir(), "portcullis.yaml", tc.yaml)
			out, _, err := runCLI(t, "doctor", "--config-only", "--config", cfgFile, "--data-dir", data)
			code := 0
			var ee exitError
			if errors.As(err, &ee) {
				code = ee.code
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "All required mechanisms") {
				t.Errorf("--config-only ran the host checks:\n%s", out)
			}
		})
	}
}

func TestDoctorJSON(t *testing.T) {
	t.Setenv("PORTCULLIS_CONFIG", "")
	cfgFile := writeFile(t, t.TempDir(), "portcullis.yaml", "mode: production\nauth:\n  trusted_proxies: [\"::/0\"]\n")
	out, _, err := runCLI(t, "doctor", "--config-only", "--json", "--config", cfgFile, "--data-dir", filepath.Join(t.TempDir(), "new"))
	if ee := (exitError{}); !errors.As(err, &ee) || ee.code != 2 {
		t.Errorf("err %v, want exit 2", err)
	}
	var r struct {
		Host     []json.RawMessage `json:"host"`
		Findings []doctor.Finding  `json:"findings"`
		ExitCode int               `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if r.ExitCode != 2 || r.Host == nil || len(r.Host) != 0 || len(r.Findings) == 0 {
		t.Fatalf("report %+v", r)
	}
	if f := r.Findings[0]; f.ID != "trusted-proxies-any" || f.Severity != doctor.Critical || f.Key != "auth.trusted_proxies" {
		t.Errorf("first finding %+v, want critical trusted-proxies-any", f)
	}
}

// TestServeRefusesCriticalInProduction: serve runs the lint before it
// opens the data directory; a critical finding stops a production gateway
// (the data dir is never created) and is only logged in development.
func TestServeRefusesCriticalInProduction(t *testing.T) {
	root := t.TempDir()
	cfg := config.Default()
	cfg.Mode = config.ModeProduction
	cfg.DataDir, cfg.Workspace = filepath.Join(root, "data"), filepath.Join(root, "ws")
	cfg.Auth.TrustedProxies = []string{"0.0.0.0/0"}
	cfg.Auth.Lockout.Threshold = 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	err := serve(context.Background(), cfg)
	if !errors.Is(err, doctor.ErrCritical) || !strings.Contains(err.Error(), "trusted-proxies-any (auth.trusted_proxies)") {
		t.Fatalf("serve = %v, want ErrCritical naming trusted-proxies-any", err)
	}
	if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir after the refusal: %v, want not created", err)
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := lintAtStart(cfg, log); !errors.Is(err, doctor.ErrCritical) {
		t.Errorf("production lintAtStart = %v, want ErrCritical", err)
	}
	if !strings.Contains(logs.String(), "check=lockout-disabled") {
		t.Errorf("production: warning not logged:\n%s", logs.String())
	}
	logs.Reset()
	cfg.Mode = config.ModeDevelopment
	if err := lintAtStart(cfg, log); err != nil {
		t.Errorf("development lintAtStart = %v, want nil", err)
	}
	for _, want := range []string{"level=WARN", "check=trusted-proxies-any", "check=lockout-disabled"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("development log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "mode-development") {
		t.Errorf("development: info finding logged:\n%s", logs.String())
	}
}
