package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestTuneGC: serve's collector defaults apply only where the
// environment sets nothing.
func TestTuneGC(t *testing.T) {
	oldPct := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(oldPct)
		debug.SetMemoryLimit(oldLimit)
	})
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	tuneGC(env(nil))
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC = %d, want %d", got, defaultGCPercent)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != defaultMemoryLimit {
		t.Errorf("memory limit = %d, want %d", got, defaultMemoryLimit)
	}

	tuneGC(env(map[string]string{"GOGC": "50", "GOMEMLIMIT": "2GiB"}))
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC from the environment was overridden: %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT from the environment was overridden: %d", got)
	}
}
