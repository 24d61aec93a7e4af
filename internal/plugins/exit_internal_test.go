package plugins

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/plugins/pin/pintest"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/violation"
)

type nopRegistry struct{}

func (nopRegistry) SetServerTools(string, []tool.Tool) error { return nil }

type nopAudit struct{}

func (nopAudit) Emit(context.Context, *audit.Event) error { return nil }

// TestSandboxKillsAreViolations: a server process killed by the sandbox
// (seccomp, OOM, pids, file size, CPU) is a HIGH sandbox_violation of the
// plugin; an ordinary exit or a kill by the gateway itself is not.
func TestSandboxKillsAreViolations(t *testing.T) {
	var got []store.Violation
	pins, _ := pin.New(pintest.NewMemory(), nil)
	m, err := New(Config{Servers: []config.ServerConfig{{Name: "fx", URL: "https://fx.test/mcp", SecurityLevel: "strict"}}},
		Deps{Registry: nopRegistry{}, Pins: pins, Audit: nopAudit{}, Logger: slog.New(slog.DiscardHandler),
			Violations: func(_ context.Context, v store.Violation) { got = append(got, v) }})
	if err != nil {
		t.Fatal(err)
	}
	s := m.servers["fx"]
	for _, c := range []sandbox.ViolationCode{sandbox.ViolationSeccompKill, sandbox.ViolationOOM, sandbox.ViolationPidsExhausted} {
		got = nil
		s.recordSandboxViolations(t.Context(), exitInfo{result: &sandbox.Result{ExitCode: -1, Signal: "SIGSYS",
			Violations: []sandbox.Violation{{Code: c}}}})
		if len(got) != 1 || got[0].Plugin != "fx" || got[0].Type != violation.SandboxViolation ||
			got[0].Severity != store.SeverityHigh || got[0].Principal != "" || !strings.Contains(got[0].Detail, string(c)) {
			t.Errorf("%s: violations %+v", c, got)
		}
	}
	got = nil
	for _, r := range []*sandbox.Result{{ExitCode: 3}, {ExitCode: -1, Signal: "SIGKILL",
		Violations: []sandbox.Violation{{Code: sandbox.ViolationCancelled}}}} {
		s.recordSandboxViolations(t.Context(), exitInfo{result: r})
	}
	if len(got) != 0 {
		t.Errorf("ordinary exits counted: %+v", got)
	}
	detail, status := s.describeExit(exitInfo{result: &sandbox.Result{ExitCode: -1, Signal: "SIGSYS",
		Violations: []sandbox.Violation{{Code: sandbox.ViolationSeccompKill}}}}, "")
	if !strings.Contains(detail, "signal=SIGSYS") || !strings.Contains(detail, "SECCOMP_KILL") || status != "error" {
		t.Errorf("describeExit: %q %q", detail, status)
	}
}
