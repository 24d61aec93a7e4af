package sqlquery

import (
	"context"
	"os"
	"path/filepath"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/portcullis/portcullis/internal/tool"
)

// CheckQuery exposes checkQuery: the statement to prepare, or the client
// message and whether the refusal is a read-only one.
func CheckQuery(q string) (stmt, msg string, readOnly bool, ok bool) {
	s, err := checkQuery(q)
	if err != nil {
		return "", err.msg, err.cat == errNotReadOnly, false
	}
	return s, "", false, true
}

// RawQuery runs q on a snapshot of the database at rel without the
// lexical check: it tests the engine's own defences.
func (t *Tool) RawQuery(ctx context.Context, rel, q string) (*tool.Result, error) {
	dir, err := t.snapshot(ctx, rel, rel)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	return t.query(ctx, filepath.Join(dir, snapshotName), q)
}

// Complete is sqlite3_complete: whether q ends with a complete SQL
// statement (a ';' at the top level, as SQLite's own tokenizer sees it).
func Complete(q string) bool {
	tls := libc.NewTLS()
	defer tls.Close()
	z, err := libc.CString(q)
	if err != nil {
		panic(err)
	}
	defer libc.Xfree(tls, z)
	return sqlite3.Xsqlite3_complete(tls, z) != 0
}
