package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/internal/store/sqlite"
	"github.com/portcullis/portcullis/internal/store/storetest"
)

var _ storetest.Backend = (*sqlite.DB)(nil)

// knownBugs are conformance failures of this backend (see storetest.KnownBugs).
var knownBugs = storetest.KnownBugs{}

// TestConformance runs the shared store suite on SQLite: a new database
// file per case, and n handles on it opened with sqlite.Open as n gateway
// processes would (each its own writer connection and read pool; SQLite
// serializes their writers with BEGIN IMMEDIATE and busy_timeout).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, n int) []storetest.Backend {
		path := filepath.Join(t.TempDir(), "portcullis.db")
		out := make([]storetest.Backend, n)
		for i := range out {
			out[i] = openAt(t, path, newClock())
		}
		return out
	}, knownBugs)
}
