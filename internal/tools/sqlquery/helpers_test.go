package sqlquery_test

import (
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/sqlquery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a workspace with a database app.db (rollback journal mode)
// holding table t and a private TempDir for snapshots.
type fixture struct {
	ws, tmp string
	tl      *sqlquery.Tool
}

func newFixture(t *testing.T, edit func(*sqlquery.Config)) *fixture {
	t.Helper()
	f := &fixture{ws: t.TempDir(), tmp: t.TempDir()}
	makeDB(t, filepath.Join(f.ws, "app.db"), "",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, born DATE)",
		"INSERT INTO t VALUES (1, 'alice', 1.5, x'00ff10', '2024-01-02')",
		"INSERT INTO t VALUES (2, 'bob', NULL, NULL, NULL)",
		"INSERT INTO t VALUES (3, 'carol;--', -2e300*1e300, zeroblob(0), NULL)",
	)
	cfg := sqlquery.Config{Workspace: f.ws, TempDir: f.tmp}
	if edit != nil {
		edit(&cfg)
	}
	tl, err := sqlquery.New(cfg)
	if err != nil {
		t.Fatalf("sqlquery.New: %v", err)
	}
	t.Cleanup(func() {
		tl.Close()
		if ents, _ := os.ReadDir(f.tmp); len(ents) != 0 {
			t.Errorf("snapshot directories left behind: %v", ents)
		}
	})
	f.tl = tl
	return f
}

// makeDB creates a database at p with journal mode mode ("" = default)
// and runs stmts.
func makeDB(t *testing.T, p, mode string, stmts ...string) {
	t.Helper()
	dsn := p
	if mode != "" {
		dsn = "file:" + p + "?_pragma=journal_mode(" + mode + ")"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// call runs sql_query.
func (f *fixture) call(t *testing.T, database, query string) (*tool.Result, error) {
	t.Helper()
	raw, err := json.Marshal(map[string]string{"database": database, "query": query})
	if err != nil {
		t.Fatal(err)
	}
	return f.tl.Call(t.Context(), raw)
}

// mustQuery runs query on app.db and requires success.
func (f *fixture) mustQuery(t *testing.T, query string) *tool.Result {
	t.Helper()
	res, err := f.call(t, "app.db", query)
	if err != nil {
		t.Fatalf("%q: %v", query, err)
	}
	if res.IsError {
		t.Fatalf("%q: %s %s", query, res.Code, res.Text)
	}
	return res
}

// refused runs query on database and requires a refusal with code want.
func (f *fixture) refused(t *testing.T, database, query string, want reason.Code) *tool.Error {
	t.Helper()
	res, err := f.call(t, database, query)
	if err == nil {
		t.Fatalf("%q on %q: allowed: %v", query, database, res.Text)
	}
	te, ok := tool.AsError(err)
	if !ok {
		t.Fatalf("%q: error %v is not a *tool.Error", query, err)
	}
	if te.Code != want {
		t.Fatalf("%q on %q: code %s, want %s (%v)", query, database, te.Code, want, err)
	}
	return te
}

// digest returns a digest of every entry under dir: names, modes and
// contents.
func digest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", p, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// names lists the entries of dir.
func names(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return strings.Join(out, " ")
}

// openDB opens a database connection for test setup, closed at cleanup.
func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}
