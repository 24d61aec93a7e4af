package postgres

import "context"

// Test-only access to internals.

// BackupTables are the tables Backup copies.
var BackupTables = backupTables

// SynchronousCommit returns synchronous_commit as a connection of db's
// pool sees it.
func SynchronousCommit(ctx context.Context, db *DB) (string, error) {
	var v string
	err := db.pool.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&v)
	return v, err
}
