package sqlquery_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/tools/sqlquery"
)

// queryCases are the lexical check's expectations; the fuzz test seeds
// from them too.
var queryCases = []struct {
	q        string
	ok       bool
	readOnly bool   // refusal is READ_ONLY (statement kind)
	stmt     string // for ok: the statement prepared ("" = q)
}{
	{q: "SELECT 1", ok: true},
	{q: "select 1;", ok: true, stmt: "select 1"},
	{q: "SELECT 1 ;  \n\t", ok: true, stmt: "SELECT 1 "},
	{q: "SELECT 1; -- done\n", ok: true, stmt: "SELECT 1"},
	{q: "SELECT 1; /* done */", ok: true, stmt: "SELECT 1"},
	{q: "SELECT 1;;", ok: true, stmt: "SELECT 1"},
	{q: "SELECT ';' AS s", ok: true},
	{q: "SELECT 'it''s; fine'", ok: true},
	{q: `SELECT "a;b" FROM (SELECT 1 AS "a;b")`, ok: true},
	{q: "SELECT `a;b` FROM (SELECT 1 AS `a;b`)", ok: true},
	{q: "SELECT [a;b] FROM (SELECT 1 AS [a;b])", ok: true},
	{q: "SELECT 1 -- ; DROP TABLE t", ok: true},
	{q: "SELECT 1 /* ; DROP TABLE t */", ok: true},
	{q: "/* lead */ -- c\n SELECT 1", ok: true},
	{q: "SELECT x'00ff', 1e+5, .5, 0x1F, a$b FROM (SELECT 1 AS a$b)", ok: true},
	{q: "WITH x(n) AS (SELECT 1) SELECT n FROM x", ok: true},
	{q: "VALUES (1), (2)", ok: true},
	{q: "EXPLAIN SELECT 1", ok: true},
	{q: "EXPLAIN QUERY PLAN SELECT * FROM t", ok: true},
	{q: "PRAGMA table_info(t)", ok: true},
	{q: "PRAGMA main.table_info('t')", ok: true},
	{q: "pragma INTEGRITY_CHECK", ok: true},
	{q: "PRAGMA user_version;", ok: true, stmt: "PRAGMA user_version"},
	{q: "SELECT * FROM pragma_table_info('t')", ok: true},

	{q: "", ok: false},
	{q: "   -- only a comment", ok: false},
	{q: ";", ok: false},
	{q: "SELECT 1; SELECT 2", ok: false},
	{q: "SELECT 1;DELETE FROM t", ok: false},
	{q: "SELECT ';'; DROP TABLE t", ok: false},
	{q: "SELECT 1; -- c\nDROP TABLE t", ok: false},
	{q: "SELECT 1 /* c */; /* c */ ATTACH 'x' AS y", ok: false},
	{q: "SELECT 1;/*", ok: false}, // "/*" with nothing after is not a comment to SQLite
	{q: "SELECT 1\x00; DROP TABLE t", ok: false},
	{q: "SELECT ?", ok: false},
	{q: "SELECT :a", ok: false},
	{q: "SELECT @a", ok: false},
	{q: "SELECT #a", ok: false},
	{q: "SELECT $a(');DROP TABLE t;--')", ok: false},
	{q: "SELECT $a", ok: false},
	{q: "INSERT INTO t VALUES (9)", readOnly: true},
	{q: "insert into t values (9)", readOnly: true},
	{q: "REPLACE INTO t VALUES (9)", readOnly: true},
	{q: "UPDATE t SET name = 'x'", readOnly: true},
	{q: "DELETE FROM t", readOnly: true},
	{q: "CREATE TABLE u(x)", readOnly: true},
	{q: "CREATE TEMP TABLE u(x)", readOnly: true},
	{q: "DROP TABLE t", readOnly: true},
	{q: "ALTER TABLE t ADD COLUMN y", readOnly: true},
	{q: "ATTACH 'file:/etc/passwd' AS p", readOnly: true},
	{q: "DETACH p", readOnly: true},
	{q: "VACUUM", readOnly: true},
	{q: "VACUUM INTO '/tmp/copy.db'", readOnly: true},
	{q: "REINDEX", readOnly: true},
	{q: "ANALYZE", readOnly: true},
	{q: "BEGIN", readOnly: true},
	{q: "SAVEPOINT a", readOnly: true},
	{q: "(SELECT 1)", readOnly: true},
	{q: "PRAGMA query_only = 0", readOnly: true},
	{q: "PRAGMA query_only(0)", readOnly: true},
	{q: "PRAGMA writable_schema = ON", readOnly: true},
	{q: "PRAGMA user_version = 5", readOnly: true},
	{q: "PRAGMA user_version(5)", readOnly: true},
	{q: "PRAGMA journal_mode(WAL)", readOnly: true},
	{q: "PRAGMA journal_mode = DELETE", readOnly: true},
	{q: "PRAGMA table_info(t) = 1", readOnly: true},
	{q: "PRAGMA table_info(t, u)", readOnly: true},
	{q: "PRAGMA trusted_schema", readOnly: true},
	{q: "PRAGMA", readOnly: true},
	{q: "EXPLAIN PRAGMA query_only = 0", readOnly: true},
	{q: "EXPLAIN INSERT INTO t VALUES (1)", readOnly: true},
	{q: "EXPLAIN QUERY PLAN DELETE FROM t", readOnly: true},
}

func TestCheckQuery(t *testing.T) {
	for _, tc := range queryCases {
		t.Run(tc.q, func(t *testing.T) {
			stmt, msg, readOnly, ok := sqlquery.CheckQuery(tc.q)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v (%s)", ok, tc.ok, msg)
			}
			if !ok {
				if readOnly != tc.readOnly {
					t.Errorf("read-only refusal %v, want %v (%s)", readOnly, tc.readOnly, msg)
				}
				if msg == "" {
					t.Errorf("no message")
				}
				return
			}
			want := tc.stmt
			if want == "" {
				want = tc.q
			}
			if stmt != want {
				t.Errorf("statement %q, want %q", stmt, want)
			}
			assertSingle(t, stmt)
		})
	}
}

// assertSingle holds the lexer to SQLite's own tokenizer: in a statement
// checkQuery accepted, no ';' ends a complete statement
// (sqlite3_complete) — every ';' in it is inside a literal, an identifier
// or a comment.
func assertSingle(t *testing.T, stmt string) {
	t.Helper()
	for i := 0; i < len(stmt); i++ {
		if stmt[i] == ';' && sqlquery.Complete(stmt[:i+1]) {
			t.Fatalf("accepted %q, but SQLite ends a statement at byte %d", stmt, i)
		}
	}
}

func FuzzCheckQuery(f *testing.F) {
	for _, tc := range queryCases {
		f.Add(tc.q)
	}
	for _, s := range []string{"SELECT '", "SELECT \"a;", "SELECT [a;", "SELECT 1 /* ;", "SELECT `a``;`", "SELECT 'a'';'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		stmt, _, _, ok := sqlquery.CheckQuery(q)
		if !ok {
			return
		}
		if strings.IndexByte(stmt, 0) >= 0 {
			t.Fatalf("accepted a NUL byte: %q", q)
		}
		assertSingle(t, stmt)
	})
}

// TestCompleteOracle shows that the oracle of assertSingle can fail.
func TestCompleteOracle(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT 1;": true, "SELECT ';'": false, "SELECT ';": false, "SELECT 1 -- ;": false,
		"SELECT [;]": false, "SELECT 1 /* */;": true, "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1;": false,
	} {
		if got := sqlquery.Complete(q); got != want {
			t.Errorf("Complete(%q) = %v, want %v", q, got, want)
		}
	}
}
