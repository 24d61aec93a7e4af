package main

import (
	"runtime/debug"
	"testing"
)

// TestTuneGC: serve's collector default applies only where the environment
// sets nothing.
func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	tuneGC(env(nil))
	if got := debug.SetGCPercent(100); got != DefaultGCPercent {
		t.Errorf("GOGC = %d, want %d", got, DefaultGCPercent)
	}
	tuneGC(env(map[string]string{"GOGC": "50"}))
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC from the environment was overridden: %d", got)
	}
}
