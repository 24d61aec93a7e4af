package store_test

import (
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
