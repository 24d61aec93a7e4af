package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/store/storetest"
)

// BenchmarkWriterGroupCommit measures durable audit records per second into
// a real SQLite file (WAL, synchronous=FULL), with the same writers and
// records as the PostgreSQL benchmark.
func BenchmarkWriterGroupCommit(b *testing.B) {
	storetest.BenchWriterGroupCommit(b, func(b *testing.B) audit.Backend {
		return openAt(b, filepath.Join(b.TempDir(), "portcullis.db"), nil)
	})
}
