package violation

import (
	"fmt"
	"testing"
	"time"
)

// TestForgetSeenBound: a flood of counted violations (all recent, so none
// old enough to forget) is cut back to maxSeen, oldest first.
func TestForgetSeenBound(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	e := &Engine{seen: map[string]time.Time{}}
	const extra = 25
	for i := range maxSeen + extra {
		e.seen[fmt.Sprintf("vio_%06d", i)] = now.Add(-time.Second + time.Duration(i)*time.Microsecond)
	}
	e.forgetSeen(now)
	if len(e.seen) != maxSeen {
		t.Fatalf("%d ids remembered, want %d", len(e.seen), maxSeen)
	}
	for i := range maxSeen + extra {
		_, kept := e.seen[fmt.Sprintf("vio_%06d", i)]
		if kept != (i >= extra) {
			t.Fatalf("vio_%06d kept = %v: the %d oldest must go first, and only they", i, kept, extra)
		}
	}
}
