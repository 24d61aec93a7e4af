package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupRestoreRefusePostgres: backup and restore are SQLite tools; on
// a PostgreSQL store they refuse (pointing to pg_dump) before touching
// anything, and never show the DSN.
func TestBackupRestoreRefusePostgres(t *testing.T) {
	dir := t.TempDir()
	pw := rand.Text()
	t.Setenv("PORTCULLIS_STORAGE_DRIVER", "postgres")
	t.Setenv("PORTCULLIS_STORAGE_DSN", "postgres://pc:"+pw+"@127.0.0.1:1/pc")
	t.Setenv("PORTCULLIS_DATA_DIR", filepath.Join(dir, "data"))
	out := filepath.Join(dir, "copy.db")
	for _, args := range [][]string{{"backup", out}, {"restore", out}} {
		_, _, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), "pg_dump") {
			t.Errorf("%v on postgres: %v, want a refusal naming pg_dump", args, err)
		}
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("%v: the error shows the password", args)
		}
	}
	for _, p := range []string{out, filepath.Join(dir, "data")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created by a refused command", p)
		}
	}
}
