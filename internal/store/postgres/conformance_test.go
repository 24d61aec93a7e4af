package postgres_test

import (
	"testing"

	"github.com/portcullis/portcullis/internal/store/postgres"
	"github.com/portcullis/portcullis/internal/store/postgres/pgtest"
	"github.com/portcullis/portcullis/internal/store/storetest"
)

var _ storetest.Backend = (*postgres.DB)(nil)

// knownBugs are conformance failures of this backend (see storetest.KnownBugs).
var knownBugs = storetest.KnownBugs{}

// TestConformance runs the shared store suite on PostgreSQL: a new
// database per case, and n handles on it opened with postgres.Open as n
// gateway replicas would (each its own connection pool; the second Open
// finds the schema migrated).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, n int) []storetest.Backend {
		dsn := pgtest.NewDatabase(t)
		c := newClock()
		out := make([]storetest.Backend, n)
		for i := range out {
			out[i] = open(t, dsn, c)
		}
		return out
	}, knownBugs)
}
