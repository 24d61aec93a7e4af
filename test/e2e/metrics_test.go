package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsEndpoint: /metrics serves the Prometheus exposition of the
// real binary without a credential; it counts calls by tool, status and
// role and never names a principal.
func TestMetricsEndpoint(t *testing.T) {
	g := startGateway(t)
	key := g.createKey("metrics-probe-user", "developer")
	cs := g.connect(key, "")
	call(t, cs, "list_directory", map[string]any{"path": "."})
	call(t, cs, "read_file", map[string]any{"path": "../outside"})
	resp, err := http.Get(g.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`portcullis_tool_calls_total{role="developer",status="ok",tool="list_directory"} 1`,
		`portcullis_tool_calls_total{role="developer",status="error",tool="read_file"} 1`,
		"portcullis_policy_decision_seconds_bucket", "portcullis_audit_queue_depth", "portcullis_audit_commit_seconds_bucket",
		"portcullis_approvals_pending", "portcullis_quarantines_active",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "metrics-probe-user") {
		t.Error("/metrics names a principal")
	}
}
