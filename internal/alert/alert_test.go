package alert_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/alert"
)

func TestLogSinkLevels(t *testing.T) {
	var buf bytes.Buffer
	s := alert.LogSink{Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	alert.Multi{s}.Alert(context.Background(), alert.Alert{Kind: alert.KindAuthLockout, Severity: alert.High, Subject: "src:192.0.2.1", Detail: "locked 1m0s"})
	s.Alert(context.Background(), alert.Alert{Kind: alert.KindPolicyReloadFailed, Severity: alert.Medium, Subject: "policies/x.cedar"})
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], "ALERT auth.lockout") ||
		!strings.Contains(lines[0], "src:192.0.2.1") || !strings.Contains(lines[1], "level=WARN") {
		t.Errorf("log = %q", out)
	}
}
