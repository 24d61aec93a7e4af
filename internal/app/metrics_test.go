package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// TestMetricsWired: the gateway, the violation engine and the audit
// writer of an opened app feed its metrics.
func TestMetricsWired(t *testing.T) {
	a, _, _ := openApp(t, nil)
	if a.Metrics == nil || a.Events == nil {
		t.Fatal("Open left Metrics or Events nil")
	}
	ctx := context.Background()
	who := &principal.Principal{Name: "metrics-probe-user", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
	res := a.Gateway.Call(ctx, gateway.CallRequest{Principal: who, Tool: "read_file",
		Args: json.RawMessage(`{"path":"missing.txt"}`)})
	if !res.IsError {
		t.Fatalf("read_file of a missing file succeeded: %+v", res)
	}
	a.Gateway.Call(ctx, gateway.CallRequest{Principal: who, Tool: "no_such_tool"})
	if _, err := a.AbuseAdmin().Quarantine(ctx, store.QuarantinePrincipal, "metrics-probe-user", "test", "admin"); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(a.Metrics.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{
		`portcullis_tool_calls_total{role="developer",status="error",tool="read_file"} 1`,
		`portcullis_tool_calls_total{role="developer",status="refused",tool="other"} 1`,
		`portcullis_quarantines_total{kind="principal"} 1`,
		`portcullis_quarantines_active 1`,
		`portcullis_approvals_pending 0`,
		`portcullis_audit_queue_depth `,
		`portcullis_policy_decision_seconds_count{stage="name"} `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(text, "portcullis_audit_records_total 0") || !strings.Contains(text, "portcullis_audit_records_total ") {
		t.Error("audit commits not counted")
	}
	if strings.Contains(text, who.Name) {
		t.Error("a principal name appears in /metrics")
	}
}
