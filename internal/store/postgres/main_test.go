package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/clocktest"
	"github.com/portcullis/portcullis/internal/store/postgres"
	"github.com/portcullis/portcullis/internal/store/postgres/pgtest"
)

// TestMain runs the tests on one PostgreSQL server (pgtest), stops it
// and then fails the package if a test left goroutines running.
func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newClock() *clocktest.Clock {
	return clocktest.New(time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.UTC))
}

// open opens a handle on dsn, closed when tb ends.
func open(tb testing.TB, dsn string, c *clocktest.Clock) *postgres.DB {
	tb.Helper()
	opts := postgres.Options{Logger: testLogger()}
	if c != nil {
		opts.Now = c.Now
	}
	db, err := postgres.Open(context.Background(), dsn, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}
