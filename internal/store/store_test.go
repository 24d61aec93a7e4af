package store_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

func TestAPIKeyActive(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	tests := []struct {
		name string
		k    store.APIKey
		want bool
	}{
		{"no expiry", store.APIKey{}, true},
		{"expires later", store.APIKey{ExpiresAt: &future}, true},
		{"expires now", store.APIKey{ExpiresAt: &now}, false},
		{"expired", store.APIKey{ExpiresAt: &past}, false},
		{"revoked", store.APIKey{RevokedAt: &past}, false},
		{"revoked in the future still revoked", store.APIKey{RevokedAt: &future}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.k.Active(now); got != tt.want {
				t.Errorf("Active = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSeverityJSONRoundTrip: a violation survives the admin API's JSON
// (the CLI decodes what the server encodes); an unknown severity is an
// error, not a silent zero.
func TestSeverityJSONRoundTrip(t *testing.T) {
	in := store.Violation{ID: "vio_1", Type: "path_escape", Severity: store.SeverityHigh}
	b, err := json.Marshal(in)
	if err != nil || !strings.Contains(string(b), `"severity":"HIGH"`) {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	var out store.Violation
	if err := json.Unmarshal(b, &out); err != nil || out.Severity != store.SeverityHigh {
		t.Fatalf("unmarshal: %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"severity":"EXTREME"}`), &out); err == nil {
		t.Fatal("unknown severity accepted")
	}
}
