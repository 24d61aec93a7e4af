package postgres_test

import (
	"testing"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/store/postgres/pgtest"
	"github.com/portcullis/portcullis/internal/store/storetest"
)

// BenchmarkWriterGroupCommit measures durable audit records per second into
// PostgreSQL (pgtest's server: fsync and synchronous_commit on), with the
// same writers and records as the SQLite benchmark.
func BenchmarkWriterGroupCommit(b *testing.B) {
	storetest.BenchWriterGroupCommit(b, func(b *testing.B) audit.Backend { return open(b, pgtest.NewDatabase(b), nil) })
}
