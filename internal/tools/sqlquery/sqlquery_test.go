package sqlquery_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/sqlquery"
)

func TestNewConfig(t *testing.T) {
	ws := t.TempDir()
	tests := []struct {
		name string
		cfg  sqlquery.Config
	}{
		{"empty workspace", sqlquery.Config{}},
		{"missing workspace", sqlquery.Config{Workspace: filepath.Join(ws, "nope")}},
		{"negative rows", sqlquery.Config{Workspace: ws, MaxRows: -1}},
		{"negative timeout", sqlquery.Config{Workspace: ws, Timeout: -time.Second}},
		{"relative temp dir", sqlquery.Config{Workspace: ws, TempDir: "tmp"}},
		{"temp dir with '?'", sqlquery.Config{Workspace: ws, TempDir: "/tmp/a?b"}},
		{"missing temp dir", sqlquery.Config{Workspace: ws, TempDir: filepath.Join(ws, "nope")}},
		{"huge value limit", sqlquery.Config{Workspace: ws, MaxValueBytes: 2_000_000_000}},
		{"query above value limit", sqlquery.Config{Workspace: ws, MaxValueBytes: 100, MaxQueryBytes: 200}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tl, err := sqlquery.New(tc.cfg); !errors.Is(err, sqlquery.ErrInvalidConfig) {
				if tl != nil {
					tl.Close()
				}
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestDefinition(t *testing.T) {
	f := newFixture(t, nil)
	def := f.tl.Definition()
	if def.Name != "sql_query" || sqlquery.ToolName != "sql_query" || def.Sensitivity != tool.Medium || !def.ReadOnly || def.Destructive {
		t.Fatalf("definition %+v", def)
	}
	if diff := cmp.Diff([]string{"database", "query"}, def.InputSchema.Required); diff != "" {
		t.Errorf("required (-want +got):\n%s", diff)
	}
	if q := def.InputSchema.Properties["query"]; *q.MaxLength != sqlquery.DefaultMaxQueryBytes || *q.MinLength != 1 {
		t.Errorf("query schema %+v", q)
	}
	if def.InputSchema.AdditionalProperties == nil {
		t.Errorf("additional properties allowed")
	}
}

func TestSelect(t *testing.T) {
	f := newFixture(t, nil)
	before := digest(t, f.ws)
	res := f.mustQuery(t, "SELECT id, name, score, data, born FROM t ORDER BY id;")
	b, err := json.Marshal(res.Structured)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Columns        []string `json:"columns"`
		Rows           [][]any  `json:"rows"`
		RowCount       int      `json:"row_count"`
		Truncated      bool     `json:"truncated"`
		TruncatedCells int      `json:"truncated_cells"`
		Database       string   `json:"database"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := [][]any{
		{1.0, "alice", 1.5, map[string]any{"blob": "AP8Q", "bytes": 3.0}, "2024-01-02T00:00:00Z"},
		{2.0, "bob", nil, nil, nil},
		{3.0, "carol;--", "-Infinity", map[string]any{"blob": "", "bytes": 0.0}, nil},
	}
	if diff := cmp.Diff([]string{"id", "name", "score", "data", "born"}, got.Columns); diff != "" {
		t.Errorf("columns (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, got.Rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if got.RowCount != 3 || got.Truncated || got.TruncatedCells != 0 || got.Database != "app.db" {
		t.Errorf("result %+v", got)
	}
	wantText := `id | name     | score     | data      | born
---+----------+-----------+-----------+---------------------
1  | alice    | 1.5       | x'00ff10' | 2024-01-02T00:00:00Z
2  | bob      | NULL      | NULL      | NULL
3  | carol;-- | -Infinity | x''       | NULL
(3 rows)`
	if diff := cmp.Diff(wantText, res.Text); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}
	if after := digest(t, f.ws); after != before || names(t, f.ws) != "app.db" {
		t.Fatalf("workspace changed: %s", names(t, f.ws))
	}
}

func TestQueryForms(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range queryCases {
		if !tc.ok {
			continue
		}
		t.Run(tc.q, func(t *testing.T) {
			f.mustQuery(t, tc.q)
		})
	}
	res := f.mustQuery(t, "PRAGMA table_info(t)")
	if rows := res.Structured["rows"].([][]any); len(rows) != 5 {
		t.Errorf("table_info rows %v", rows)
	}
	res = f.mustQuery(t, "SELECT 'a\nb', char(27) || '[31m', 'é'")
	if !strings.Contains(res.Text, `a\nb   | \u001b[31m         | é`) || strings.ContainsAny(res.Text, "\x1b\r") {
		t.Errorf("control characters not escaped in the table: %q", res.Text)
	}
}

// TestRefusedQueries: refused before SQLite sees them, with a clear
// message; the database never changes.
func TestRefusedQueries(t *testing.T) {
	f := newFixture(t, nil)
	before := digest(t, f.ws)
	for _, tc := range queryCases {
		if tc.ok || tc.q == "" {
			continue
		}
		t.Run(tc.q, func(t *testing.T) {
			want := reason.InvalidArguments
			if tc.readOnly {
				want = reason.ReadOnly
			}
			te := f.refused(t, "app.db", tc.q, want)
			if msg := te.ClientMessage(); msg == "" || strings.Contains(msg, f.ws) {
				t.Errorf("message %q", msg)
			}
		})
	}
	te := f.refused(t, "app.db", "DELETE FROM t", reason.ReadOnly)
	if !strings.Contains(te.ClientMessage(), "only SELECT, WITH, VALUES, EXPLAIN and read-only PRAGMA") {
		t.Errorf("message %q", te.ClientMessage())
	}
	te = f.refused(t, "app.db", "SELECT 1; SELECT 2", reason.InvalidArguments)
	if !strings.Contains(te.ClientMessage(), "only one statement") {
		t.Errorf("message %q", te.ClientMessage())
	}
	if after := digest(t, f.ws); after != before {
		t.Fatal("workspace changed")
	}
}

// TestEngineRefusesWrites: what the lexical check would refuse is also
// refused by the engine (RawQuery skips the check), and a write hidden
// behind WITH, which the lexical check lets through, fails there.
func TestEngineRefusesWrites(t *testing.T) {
	f := newFixture(t, nil)
	makeDB(t, filepath.Join(f.ws, "other.db"), "", "CREATE TABLE secret(x)", "INSERT INTO secret VALUES ('in other.db')")
	outside := filepath.Join(t.TempDir(), "outside.db")
	makeDB(t, outside, "", "CREATE TABLE secret(x)", "INSERT INTO secret VALUES ('outside')")
	vacuumTarget := filepath.Join(t.TempDir(), "copy.db")
	before, beforeOutside := digest(t, f.ws), digest(t, filepath.Dir(outside))
	tests := []struct {
		q    string
		want reason.Code
	}{
		{"INSERT INTO t VALUES (9, 'x', 0, NULL, NULL)", reason.ReadOnly},
		{"UPDATE t SET name = 'x'", reason.ReadOnly},
		{"DELETE FROM t", reason.ReadOnly},
		{"CREATE TABLE u(x)", reason.ReadOnly},
		{"DROP TABLE t", reason.ReadOnly},
		{"PRAGMA query_only = 0; INSERT INTO t VALUES (9, 'x', 0, NULL, NULL)", reason.ReadOnly},
		{"ATTACH 'file:/etc/passwd' AS p", reason.InvalidArguments},
		{"ATTACH '" + outside + "' AS o", reason.InvalidArguments},
		{"ATTACH 'other.db' AS o", reason.InvalidArguments},
		{"ATTACH 'file:other.db?mode=rwc' AS o", reason.InvalidArguments},
		{"VACUUM INTO '" + vacuumTarget + "'", reason.InvalidArguments},
		{"SELECT load_extension('/usr/lib/x86_64-linux-gnu/libc.so.6')", reason.InvalidArguments},
	}
	for _, tc := range tests {
		t.Run(tc.q, func(t *testing.T) {
			res, err := f.tl.RawQuery(t.Context(), "app.db", tc.q)
			if err == nil {
				t.Fatalf("engine allowed: %s", res.Text)
			}
			te, ok := tool.AsError(err)
			if !ok || te.Code != tc.want {
				t.Fatalf("error %v, want %s", err, tc.want)
			}
			t.Log(te.ClientMessage())
		})
	}
	for _, q := range []string{
		"WITH x AS (SELECT 1) INSERT INTO t(id) SELECT 9 FROM x",
		"WITH x AS (SELECT 1) DELETE FROM t",
		"WITH x AS (SELECT 1) UPDATE t SET name = 'x'",
	} {
		f.refused(t, "app.db", q, reason.ReadOnly)
	}
	te := f.refused(t, "app.db", "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libc.so.6')", reason.InvalidArguments)
	if !strings.Contains(te.ClientMessage(), "not authorized") {
		t.Errorf("load_extension: %q", te.ClientMessage())
	}
	if _, err := os.Stat(vacuumTarget); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("VACUUM INTO wrote %s", vacuumTarget)
	}
	if digest(t, f.ws) != before || digest(t, filepath.Dir(outside)) != beforeOutside {
		t.Fatal("a file changed")
	}
}

func TestPaths(t *testing.T) {
	f := newFixture(t, nil)
	outsideDir := t.TempDir()
	outside := filepath.Join(outsideDir, "outside.db")
	makeDB(t, outside, "", "CREATE TABLE secret(x)", "INSERT INTO secret VALUES ('TOPSECRET')")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(outside, filepath.Join(f.ws, "abs-link.db")))
	must(os.Symlink("../../../../../../../.."+outside, filepath.Join(f.ws, "rel-link.db")))
	must(os.Symlink(outsideDir, filepath.Join(f.ws, "linkdir")))
	must(os.Symlink("app.db", filepath.Join(f.ws, "inside-link.db")))
	must(os.Link(outside, filepath.Join(f.ws, "hard.db")))
	must(os.Mkdir(filepath.Join(f.ws, "dir.db"), 0o755))
	must(syscall.Mkfifo(filepath.Join(f.ws, "fifo.db"), 0o644))
	must(os.WriteFile(filepath.Join(f.ws, "notes.txt"), []byte("just some text, long enough to have a header-sized prefix..........................................."), 0o644))
	must(os.Mkdir(filepath.Join(f.ws, "sub"), 0o755))
	makeDB(t, filepath.Join(f.ws, "sub", "nested.db"), "", "CREATE TABLE n(x)", "INSERT INTO n VALUES (42)")
	tests := []struct {
		path string
		want reason.Code
	}{
		{"/etc/passwd", reason.PathOutsideWorkspace},
		{outside, reason.PathOutsideWorkspace},
		{"../outside.db", reason.PathOutsideWorkspace},
		{"sub/../../outside.db", reason.PathOutsideWorkspace},
		{"..", reason.PathOutsideWorkspace},
		{".", reason.PathForbidden},
		{"app.db\x00.txt", reason.PathForbidden},
		{"abs-link.db", reason.PathForbidden},
		{"rel-link.db", reason.PathForbidden},
		{"linkdir/outside.db", reason.PathOutsideWorkspace},
		{"inside-link.db", reason.PathForbidden},
		{"hard.db", reason.PathForbidden},
		{"dir.db", reason.PathForbidden},
		{"fifo.db", reason.PathForbidden},
		{"missing.db", reason.NotFound},
		{"notes.txt", reason.InvalidArguments},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			te := f.refused(t, tc.path, "SELECT * FROM secret", tc.want)
			if msg := te.ClientMessage(); strings.Contains(msg, "TOPSECRET") || strings.Contains(msg, outsideDir) && tc.path != outside {
				t.Errorf("message %q", msg)
			}
		})
	}
	res := f.mustQuery(t, "SELECT 1")
	if res.Structured["database"] != "app.db" {
		t.Errorf("database %v", res.Structured["database"])
	}
	res, err := f.call(t, "sub/./nested.db", "SELECT x FROM n")
	if err != nil || res.IsError || res.Structured["database"] != "sub/nested.db" {
		t.Fatalf("nested: %v %+v", err, res)
	}
}

// TestWALDatabase: a WAL database is read with the transactions still in
// its WAL, and reading it creates no file in the workspace (SQLite with
// mode=ro on the file itself would create -wal and -shm files).
func TestWALDatabase(t *testing.T) {
	f := newFixture(t, nil)
	p := filepath.Join(f.ws, "wal.db")
	writer := openDB(t, "file:"+p+"?_pragma=journal_mode(WAL)")
	for _, s := range []string{"CREATE TABLE w(x)", "INSERT INTO w VALUES (1)", "PRAGMA wal_checkpoint(TRUNCATE)", "INSERT INTO w VALUES (2)"} {
		if _, err := writer.Exec(s); err != nil {
			t.Fatal(s, err)
		}
	}
	if names(t, f.ws) != "app.db wal.db wal.db-shm wal.db-wal" {
		t.Fatalf("files %s", names(t, f.ws))
	}
	before := digest(t, f.ws)
	res, err := f.call(t, "wal.db", "SELECT count(*), max(x) FROM w")
	if err != nil || res.IsError {
		t.Fatalf("%v %+v", err, res)
	}
	if diff := cmp.Diff([][]any{{int64(2), int64(2)}}, res.Structured["rows"]); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if digest(t, f.ws) != before {
		t.Fatal("workspace changed")
	}
	if _, err := writer.Exec("INSERT INTO w VALUES (3)"); err != nil {
		t.Fatalf("the writer cannot write after the query: %v", err)
	}
	writer.Close()

	// A closed WAL database (no -wal, no -shm) reads the same, and still
	// nothing is created next to it.
	res, err = f.call(t, "wal.db", "SELECT count(*) FROM w")
	if err != nil || res.IsError || names(t, f.ws) != "app.db wal.db" {
		t.Fatalf("%v %+v; files %s", err, res, names(t, f.ws))
	}

	// A -wal that is a link to a file outside is refused.
	outside := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(outside, []byte("not a wal"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(f.ws, "wal.db-wal")); err != nil {
		t.Fatal(err)
	}
	f.refused(t, "wal.db", "SELECT 1", reason.PathOutsideWorkspace)
}

// TestLockedDatabase: a writer in another process that holds the database
// makes the call wait BusyTimeout and fail; once it is gone, the call
// works.
func TestLockedDatabase(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("SKIP: python3 (with sqlite3) is needed as a second process holding the lock")
	}
	f := newFixture(t, func(c *sqlquery.Config) { c.BusyTimeout = 300 * time.Millisecond })
	cmd := exec.Command(py, "-c", `import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
c.execute("INSERT INTO t(id, name) VALUES (99, 'uncommitted')")
print("locked", flush=True)
sys.stdin.read()
c.execute("ROLLBACK")
`, filepath.Join(f.ws, "app.db"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	buf := make([]byte, 7)
	if _, err := stdout.Read(buf); err != nil || string(buf[:6]) != "locked" {
		stdin.Close()
		t.Skipf("SKIP: python3 sqlite3 writer did not start: %v %q", err, buf)
	}
	start := time.Now()
	_, err = f.call(t, "app.db", "SELECT count(*) FROM t")
	te, ok := tool.AsError(err)
	if !ok || te.Code != reason.ToolFailed || !strings.Contains(te.ClientMessage(), "locked") {
		stdin.Close()
		t.Fatalf("locked database: %v", err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 5*time.Second {
		t.Errorf("waited %s for BusyTimeout 300ms", el)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	res := f.mustQuery(t, "SELECT count(*) FROM t")
	if diff := cmp.Diff([][]any{{int64(3)}}, res.Structured["rows"]); diff != "" {
		t.Errorf("rows after the writer left (-want +got):\n%s", diff)
	}
}

func TestLimits(t *testing.T) {
	f := newFixture(t, func(c *sqlquery.Config) {
		c.MaxRows, c.MaxCellBytes, c.MaxResultBytes, c.MaxValueBytes, c.MaxQueryBytes = 10, 8, 60, 1<<20, 200
	})
	series := "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 25) SELECT x FROM c"
	res := f.mustQuery(t, series)
	if res.Structured["row_count"] != 10 || res.Structured["truncated"] != true || !strings.Contains(res.Text, "(10 rows; truncated: more than 10 rows)") {
		t.Errorf("row limit: %v\n%s", res.Structured, res.Text)
	}
	res = f.mustQuery(t, "SELECT 'ééééé', x'00112233445566778899'")
	row := res.Structured["rows"].([][]any)[0]
	if row[0] != "éééé" || row[1].(map[string]any)["bytes"] != 10 || row[1].(map[string]any)["truncated"] != true ||
		res.Structured["truncated_cells"] != 2 {
		t.Errorf("cell limit: %v %v", row, res.Structured)
	}
	res = f.mustQuery(t, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 9) SELECT 'abcdefgh' FROM c")
	if rc := res.Structured["row_count"]; rc != 7 || res.Structured["truncated"] != true {
		t.Errorf("result size limit: %v rows, %v", rc, res.Structured)
	}
	res = f.mustQuery(t, "SELECT 'abcdefgh', 'abcdefgh', 'abcdefgh', 'abcdefgh', 'abcdefgh', 'abcdefgh', 'abcdefgh', 'abcdefgh'")
	if res.Structured["row_count"] != 0 || res.Structured["truncated"] != true {
		t.Errorf("a first row above the result limit: %v", res.Structured)
	}
	f.refused(t, "app.db", "SELECT length(randomblob(2000000))", reason.TooLarge)
	f.refused(t, "app.db", "SELECT '"+strings.Repeat("x", 300)+"'", reason.TooLarge)

	small := newFixture(t, func(c *sqlquery.Config) { c.MaxDatabaseBytes = 1024 })
	small.refused(t, "app.db", "SELECT 1", reason.TooLarge)
}

// TestTimeout: an endless query is interrupted when the call's time is
// up — in its first step and between rows, where database/sql alone would
// keep stepping — and so is a cancelled call.
func TestTimeout(t *testing.T) {
	f := newFixture(t, func(c *sqlquery.Config) { c.Timeout = 300 * time.Millisecond })
	endless := "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
	for _, q := range []string{
		endless + "SELECT count(*) FROM c",
		"SELECT 1 UNION ALL SELECT * FROM (" + endless + "SELECT x FROM c WHERE x < 0)",
	} {
		start := time.Now()
		te := f.refused(t, "app.db", q, reason.Timeout)
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("%q: stopped after %s", q, el)
		}
		t.Log(te.ClientMessage())
	}
	g := newFixture(t, func(c *sqlquery.Config) { c.Timeout = time.Minute })
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := g.tl.Call(ctx, json.RawMessage(`{"database":"app.db","query":"SELECT 1 UNION ALL SELECT * FROM (`+endless+`SELECT x FROM c WHERE x < 0)"}`))
	if te, ok := tool.AsError(err); !ok || te.Code != reason.Cancelled {
		t.Fatalf("cancelled call: %v", err)
	}
}

func TestArguments(t *testing.T) {
	f := newFixture(t, nil)
	for _, raw := range []string{
		`{}`, `{"database":"app.db"}`, `{"query":"SELECT 1"}`, `{"database":"","query":"SELECT 1"}`,
		`{"database":"app.db","query":"SELECT 1","extra":1}`, `{"Database":"app.db","query":"SELECT 1"}`,
		`{"database":1,"query":"SELECT 1"}`, `[]`, `null`, `{"database":"app.db","query":"SELECT 1"} {}`,
	} {
		_, err := f.tl.Call(t.Context(), json.RawMessage(raw))
		if te, ok := tool.AsError(err); !ok || te.Code != reason.InvalidArguments {
			t.Errorf("%s: %v, want INVALID_ARGUMENTS", raw, err)
		}
	}
	te := f.refused(t, "app.db", "SELECT nope FROM t", reason.InvalidArguments)
	if te.ClientMessage() != "query failed: no such column: nope" {
		t.Errorf("message %q", te.ClientMessage())
	}
}

func TestConcurrentCalls(t *testing.T) {
	f := newFixture(t, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			raw := json.RawMessage(`{"database":"app.db","query":"SELECT count(*) FROM t WHERE id > 0"}`)
			if i%2 == 1 {
				raw = json.RawMessage(`{"database":"app.db","query":"DELETE FROM t"}`)
			}
			res, err := f.tl.Call(context.Background(), raw)
			if i%2 == 0 && (err != nil || res.IsError) {
				t.Errorf("call %d: %v %+v", i, err, res)
			}
			if i%2 == 1 && err == nil {
				t.Errorf("call %d: delete allowed", i)
			}
		})
	}
	wg.Wait()
}
