package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/principal"
)

// TestDenialCounterBounded: however many principals and denials, the
// counter keeps at most maxDenialPrincipals principals and
// maxDenialsKept timestamps each, and still counts the recent ones.
func TestDenialCounterBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newDenialCounter(func() time.Time { return now })
	p := &principal.Principal{Name: "loud", Method: principal.MethodAPIKey}
	for range 3 * maxDenialsKept {
		c.add(p)
	}
	if n := c.count(p); n != maxDenialsKept {
		t.Errorf("count = %d, want it saturated at %d", n, maxDenialsKept)
	}
	for i := range maxDenialPrincipals + 50 {
		now = now.Add(time.Millisecond)
		c.add(&principal.Principal{Name: fmt.Sprint("p", i), Method: principal.MethodAPIKey})
	}
	if len(c.m) > maxDenialPrincipals {
		t.Errorf("%d principals kept, bound is %d", len(c.m), maxDenialPrincipals)
	}
	// Same name, other authentication method: a different principal.
	if n := c.count(&principal.Principal{Name: "p1", Method: principal.MethodOIDC}); n != 0 {
		t.Errorf("denials leaked across authentication methods: %d", n)
	}
	now = now.Add(denialWindow)
	if n := c.count(&principal.Principal{Name: fmt.Sprint("p", maxDenialPrincipals+49), Method: principal.MethodAPIKey}); n != 0 {
		t.Errorf("count after the window = %d, want 0", n)
	}
	if c.count(nil) != 0 {
		t.Error("nil principal counted")
	}
}
