// Package sqlite is the embedded default store: SQLite through the pure-Go
// modernc.org/sqlite driver (CGO_ENABLED=0), in WAL mode with
// synchronous=FULL, one writer connection (BEGIN IMMEDIATE) and a small
// read-only pool, with schema migrations embedded and applied by goose.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the only SQLite driver in the module (see deps test)

	"github.com/portcullis/portcullis/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is a SQLite-backed store.Store.
type DB struct {
	w    *sql.DB // single writer connection
	r    *sql.DB // read-only pool
	log  *slog.Logger
	now  func() time.Time
	path string

	// stmts are the audit append's statements, prepared once on the
	// writer connection (parsing them per batch cost ~11% of the
	// gateway's CPU under load, BENCHMARKS.md).
	stmtOnce sync.Once
	stmts    auditStmts
	stmtErr  error
}

var _ store.Store = (*DB)(nil)

// Options configures Open.
type Options struct {
	// Logger receives migration notices; required.
	Logger *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// ReadConns is the read pool size (default 4).
	ReadConns int
}

func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Open opens (creating if needed) the database file at path and applies
// pending migrations. The caller owns the directory's permissions.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		return nil, errors.New("sqlite: nil logger")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	w, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open reader: %w", err)
	}
	r.SetMaxOpenConns(opts.ReadConns)
	return &DB{w: w, r: r, log: opts.Logger, now: opts.Now, path: path}, nil
}

// OpenReadOnly opens an existing database for offline tools (audit verify,
// backup, export) while a gateway may be serving from it: no migrations,
// and every connection is query-only, so writes fail with an error. A
// missing file is an error, never created.
func OpenReadOnly(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		return nil, errors.New("sqlite: nil logger")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	r, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	r.SetMaxOpenConns(2)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return &DB{w: r, r: r, log: opts.Logger, now: opts.Now, path: path}, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub)
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if err := store.CheckSchemaNotNewer(ctx, p); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// Close closes both pools (and the prepared audit statements).
func (db *DB) Close() error {
	for _, st := range []*sql.Stmt{db.stmts.last, db.stmts.head, db.stmts.insert} {
		if st != nil {
			st.Close()
		}
	}
	if db.w == db.r {
		return db.r.Close()
	}
	return errors.Join(db.r.Close(), db.w.Close())
}

// IntegrityCheck runs PRAGMA integrity_check and returns nil when SQLite
// answers "ok", else an error carrying its first findings.
func (db *DB) IntegrityCheck(ctx context.Context) error {
	rows, err := db.r.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return fmt.Errorf("sqlite: integrity check: %w", err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() && len(found) < 10 {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		found = append(found, s)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(found) == 1 && found[0] == "ok" {
		return nil
	}
	return fmt.Errorf("sqlite: integrity check failed: %s", strings.Join(found, "; "))
}

// Ping checks that the database answers and accepts a write transaction.
func (db *DB) Ping(ctx context.Context) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return tx.Rollback()
}

func ns(t time.Time) int64 { return t.UnixNano() }

func fromNS(v int64) time.Time { return time.Unix(0, v).UTC() }

func nullNS(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func fromNullNS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromNS(v.Int64)
	return &t
}

// isUnique reports whether err is a UNIQUE/PRIMARY KEY constraint failure.
func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}
