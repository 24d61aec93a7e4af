package sqlite

import (
	"context"
	"database/sql"
)

// Test-only access to the two connection pools.

func pool(db *DB, reader bool) *sql.DB {
	if reader {
		return db.r
	}
	return db.w
}

// Pragma returns the value of PRAGMA name on the writer connection or on
// a read-pool connection.
func Pragma(ctx context.Context, db *DB, name string, reader bool) (string, error) {
	var v string
	err := pool(db, reader).QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v, err
}

// Exec runs a statement on the writer connection or on the read pool.
func Exec(ctx context.Context, db *DB, reader bool, query string, args ...any) error {
	_, err := pool(db, reader).ExecContext(ctx, query, args...)
	return err
}

// CountRows returns the number of rows in table (a trusted, test-chosen name).
func CountRows(ctx context.Context, db *DB, table string) (int, error) {
	var n int
	err := db.w.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}
