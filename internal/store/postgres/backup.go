package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/store"
)

// backupTables is every table of the schema but goose's, parents before
// children: the order a restore loads them in (foreign keys are checked
// per statement). A test checks that no table is missing.
var backupTables = []string{
	"roles", "permissions", "role_permissions", "users", "user_roles", "api_keys", "sessions", "access_version",
	"audit_events", "audit_cursors", "write_probe",
	"violations", "quarantines", "usage",
	"approvals",
	"secrets", "plugin_pins",
}

// identityTables have an identity column id whose sequence a restore sets
// past the loaded rows.
var identityTables = []string{"roles", "permissions", "users"}

// Backup implements store.Store: a consistent, data-only logical copy of
// every Portcullis table, written to a new file at path (mode 0600; an
// existing path is store.ErrConflict and is left alone) while the gateways
// keep serving. It reads one REPEATABLE READ READ ONLY snapshot, so it
// blocks no writer, and writes a plain SQL script for psql:
//
//	psql -X -v ON_ERROR_STOP=1 -f FILE TARGET_DSN
//
// which, in one transaction, checks that TARGET is a Portcullis database
// migrated to the same schema version (run the gateway, or Open, on an
// empty database first), empties its tables and loads the copy. It holds
// the encrypted secrets (their key stays in the data dir) and the sealed
// audit log. Whole-cluster backups, point-in-time recovery and restores
// into an empty server remain the job of pg_dump and pg_basebackup. On
// error the file is removed.
func (db *DB) Backup(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s exists", store.ErrConflict, path)
	}
	if err != nil {
		return fmt.Errorf("postgres: backup: %w", err)
	}
	err = db.dump(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("postgres: backup: %w", err)
	}
	return nil
}

// dump writes the restore script of one snapshot to w.
func (db *DB) dump(ctx context.Context, w io.Writer) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer rollback(ctx, tx)
	var version int64
	if err := tx.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&version); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	tables := make([]string, len(backupTables))
	for i, t := range backupTables {
		tables[i] = pgx.Identifier{t}.Sanitize()
	}
	fmt.Fprintf(bw, `-- Portcullis PostgreSQL backup of schema version %[1]d, taken %[2]s:
-- a consistent, data-only copy of every table. Restore it, with the
-- gateways stopped, into a database migrated to version %[1]d:
--   psql -X -v ON_ERROR_STOP=1 -f FILE TARGET_DSN
-- It replaces every row of TARGET in one transaction.

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
BEGIN;
DO $check$
BEGIN
    IF (SELECT max(version_id) FROM goose_db_version WHERE is_applied) IS DISTINCT FROM %[1]d THEN
        RAISE EXCEPTION 'portcullis backup of schema version %[1]d: migrate the target database to that version first';
    END IF;
END
$check$;
TRUNCATE %[3]s RESTART IDENTITY;

`, version, db.now().UTC().Format(time.RFC3339), strings.Join(tables, ", "))
	for i, t := range backupTables {
		var cols string
		if err := tx.QueryRow(ctx, `SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
			WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, tables[i]).Scan(&cols); err != nil {
			return fmt.Errorf("columns of %s: %w", t, err)
		}
		fmt.Fprintf(bw, "COPY %s (%s) FROM stdin;\n", tables[i], cols)
		if _, err := tx.Conn().PgConn().CopyTo(ctx, bw, fmt.Sprintf("COPY %s (%s) TO STDOUT", tables[i], cols)); err != nil {
			return fmt.Errorf("copy %s: %w", t, err)
		}
		fmt.Fprint(bw, "\\.\n\n")
	}
	for _, t := range identityTables {
		fmt.Fprintf(bw, "SELECT setval(pg_get_serial_sequence('%[1]s', 'id'), COALESCE(max(id), 0) + 1, false) FROM %[1]s;\n", t)
	}
	fmt.Fprint(bw, "COMMIT;\n")
	return bw.Flush()
}
