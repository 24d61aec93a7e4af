// Package sqlquery provides the sql_query tool (DESIGN §2, MEDIUM): one
// read-only SQL statement against a SQLite database file in the
// workspace, run in-process with modernc.org/sqlite.
//
// # Which file
//
// The database argument is a path relative to the workspace root, checked
// like the file tools' paths: absolute paths, NUL bytes and lexical ".."
// escapes are refused before any system call, and the file is opened
// through an os.Root on the workspace (O_NOFOLLOW, O_NONBLOCK), so that
// nothing resolving outside the workspace is reached. The opened
// descriptor must be a regular file with exactly one link (not a
// directory, device, FIFO or a hard link that may be the other name of a
// file outside), and start with the SQLite header. A WAL-mode database's
// "-wal" file (and the "-shm" file used for locking) is opened the same
// way and must pass the same checks.
//
// # A private snapshot, never the file itself
//
// SQLite is never given a workspace path. Handing it one — even
// "/proc/self/fd/N" of a descriptor checked through the root — would let it
// resolve the name again (it follows symbolic links in the database path),
// open "-wal", "-journal" and "-shm" files next to it by name, and even
// with mode=ro create and write "-wal" and "-shm" files in the workspace
// (a WAL database opened read-only does). Instead the checked descriptors
// are copied into a private 0700 temporary directory and SQLite opens the
// copy: no time-of-check to time-of-use window, no file created or
// changed in the workspace, and no lock held on it once the copy is made.
// While copying, the gateway takes the shared locks a SQLite reader takes
// (open file description locks on the database file's SHARED range, and
// for a WAL database on the WRITE and CKPT bytes of its -shm file), so a
// writer in another process cannot change the file halfway through the
// copy; a writer holding the database longer than BusyTimeout makes the
// call fail with "database is locked". A hot journal left by a crashed
// writer is not applied. Databases larger than MaxDatabaseBytes (database
// plus WAL) are refused (TOO_LARGE).
//
// # Read-only, one statement
//
// The query is checked lexically first (lex.go, with SQLite's tokenizer
// rules): exactly one statement — a trailing ';' with white space or
// comments after it is fine, anything else after it is refused — no bound
// parameters, and only SELECT, WITH, VALUES, EXPLAIN of those and
// read-only information PRAGMAs in their reading form (refused:
// READ_ONLY). The statement is then prepared without the trailing part, so
// the driver sees a single statement. The engine enforces read-only
// independently of that check: the copy is opened with mode=ro and
// PRAGMA query_only=1, SQLITE_LIMIT_ATTACHED is 0 (ATTACH and VACUUM INTO
// fail, whatever file they name), trusted_schema=0 keeps functions with
// side effects out of views and triggers of the (untrusted) schema, and
// load_extension() is not authorised (the driver never enables extension
// loading; a test pins it).
//
// # Limits
//
// At most MaxRows rows are returned (the result says "truncated": true
// when there were more), each value at most MaxCellBytes (longer text and
// blobs are cut, "truncated_cells" counts them), all values together at
// most MaxResultBytes. SQLITE_LIMIT_LENGTH is MaxValueBytes, so no single
// string or blob the query makes can be larger (randomblob(1e9) fails);
// SQLITE_LIMIT_SQL_LENGTH is MaxQueryBytes. The whole call — copy and
// query — has Timeout: when it expires or the caller cancels, the running
// statement is interrupted (sqlite3_interrupt), also between rows, where
// database/sql alone would not. The query runs in the gateway process: a
// query that sorts or groups a very large generated set uses memory until
// the timeout stops it.
//
// # Results
//
// structuredContent holds "columns" (names) and "rows" (arrays of JSON
// values: INTEGER and REAL as numbers — non-finite reals as the strings
// "Infinity", "-Infinity", "NaN" — TEXT as strings, BLOB as
// {"blob": base64, "bytes": size}, NULL as null; a TEXT column declared
// DATE, DATETIME or TIMESTAMP whose value the driver parses as a time is
// returned in RFC 3339 form), "row_count", "truncated" and
// "truncated_cells"; the text content is a small table. SQL errors (syntax,
// no such table) are INVALID_ARGUMENTS with SQLite's message; a write the
// engine refuses is READ_ONLY; a file that is not a SQLite database is
// INVALID_ARGUMENTS.
package sqlquery

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// ToolName is the tool's name (DESIGN §2). It is public contract.
const ToolName = "sql_query"

// Defaults applied when a Config field is zero.
const (
	DefaultMaxRows                = 1000
	DefaultMaxCellBytes           = 16 << 10
	DefaultMaxResultBytes         = 1 << 20
	DefaultMaxValueBytes          = 16 << 20
	DefaultMaxQueryBytes          = 64 << 10
	DefaultMaxDatabaseBytes int64 = 256 << 20
	DefaultTimeout                = 10 * time.Second
	DefaultBusyTimeout            = 2 * time.Second
)

// MaxPathBytes bounds the database argument (Linux PATH_MAX).
const MaxPathBytes = 4096

// Errors returned by New, wrapped with detail.
var (
	// ErrInvalidConfig reports a Config that cannot be used.
	ErrInvalidConfig = errors.New("sqlquery: invalid config")
	// ErrDriver reports that the SQLite driver lacks what the tool relies
	// on (a changed modernc.org/sqlite); the tool refuses to start.
	ErrDriver = errors.New("sqlquery: unsupported SQLite driver")
)

// Causes recorded in tool.Error.Err (audit only).
var (
	errAbsolute     = errors.New("absolute path")
	errLexicalEsc   = errors.New("path escapes the workspace lexically")
	errNUL          = errors.New("path contains NUL")
	errNotRegular   = errors.New("not a regular file")
	errHardLink     = errors.New("regular file has more than one hard link")
	errNotSQLite    = errors.New("no SQLite header")
	errTooLarge     = errors.New("database larger than the limit")
	errLocked       = errors.New("database locked by a writer")
	errQueryOnly    = errors.New("query_only is not in force")
	errTrailingData = errors.New("trailing data after arguments object")
)

// Config configures sql_query.
type Config struct {
	// Workspace is the workspace root. It must be an existing directory;
	// it is made absolute and opened with os.OpenRoot in New.
	Workspace string
	// TempDir is where the private snapshot directories are made (default
	// os.TempDir()). It must be absolute and on a file system with room
	// for MaxDatabaseBytes per concurrent call.
	TempDir string
	// MaxRows caps the rows returned (default DefaultMaxRows).
	MaxRows int
	// MaxCellBytes caps each returned value (default DefaultMaxCellBytes).
	MaxCellBytes int
	// MaxResultBytes caps all returned values together (default
	// DefaultMaxResultBytes).
	MaxResultBytes int
	// MaxValueBytes is SQLITE_LIMIT_LENGTH: the largest string or blob a
	// query may read or make (default DefaultMaxValueBytes).
	MaxValueBytes int
	// MaxQueryBytes caps the query argument (default DefaultMaxQueryBytes).
	MaxQueryBytes int
	// MaxDatabaseBytes caps the database plus its WAL (default
	// DefaultMaxDatabaseBytes).
	MaxDatabaseBytes int64
	// Timeout bounds one call (default DefaultTimeout).
	Timeout time.Duration
	// BusyTimeout bounds the wait for a writer to release the database
	// (default DefaultBusyTimeout).
	BusyTimeout time.Duration
}

// Tool is sql_query. Safe for concurrent use; Close releases the
// workspace root.
type Tool struct {
	cfg  Config
	root *os.Root
	// escapeErr is os.Root's (unexported) "path escapes from parent"
	// sentinel, captured in New so errors.Is can recognise it.
	escapeErr error
}

var _ tool.Tool = (*Tool)(nil)

// New validates cfg, opens the workspace and checks that the SQLite
// driver supports what the tool relies on (ErrDriver otherwise).
func New(cfg Config) (*Tool, error) {
	if cfg.Workspace == "" || strings.IndexByte(cfg.Workspace, 0) >= 0 {
		return nil, fmt.Errorf("%w: bad workspace %q", ErrInvalidConfig, cfg.Workspace)
	}
	if cfg.MaxRows < 0 || cfg.MaxCellBytes < 0 || cfg.MaxResultBytes < 0 || cfg.MaxValueBytes < 0 ||
		cfg.MaxQueryBytes < 0 || cfg.MaxDatabaseBytes < 0 || cfg.Timeout < 0 || cfg.BusyTimeout < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	setDefault(&cfg.MaxRows, DefaultMaxRows)
	setDefault(&cfg.MaxCellBytes, DefaultMaxCellBytes)
	setDefault(&cfg.MaxResultBytes, DefaultMaxResultBytes)
	setDefault(&cfg.MaxValueBytes, DefaultMaxValueBytes)
	setDefault(&cfg.MaxQueryBytes, DefaultMaxQueryBytes)
	setDefault(&cfg.MaxDatabaseBytes, DefaultMaxDatabaseBytes)
	setDefault(&cfg.Timeout, DefaultTimeout)
	setDefault(&cfg.BusyTimeout, DefaultBusyTimeout)
	if cfg.MaxValueBytes > 1_000_000_000 || cfg.MaxQueryBytes > cfg.MaxValueBytes {
		return nil, fmt.Errorf("%w: MaxValueBytes must be at most 1e9 and at least MaxQueryBytes", ErrInvalidConfig)
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if !filepath.IsAbs(cfg.TempDir) || strings.ContainsAny(cfg.TempDir, "?#%\x00") {
		return nil, fmt.Errorf("%w: TempDir %q must be absolute and free of '?', '#' and '%%'", ErrInvalidConfig, cfg.TempDir)
	}
	if fi, err := os.Stat(cfg.TempDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: TempDir %s is not a directory", ErrInvalidConfig, cfg.TempDir)
	}
	ws, err := filepath.Abs(cfg.Workspace)
	if err != nil {
		return nil, fmt.Errorf("%w: workspace: %w", ErrInvalidConfig, err)
	}
	cfg.Workspace = ws
	if err := probeDriver(); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(ws)
	if err != nil {
		return nil, fmt.Errorf("%w: workspace: %w", ErrInvalidConfig, err)
	}
	// os.Root does not export its escape error: ask for ".." (refused
	// lexically) and keep the inner error, or fail closed.
	_, err = root.Lstat("..")
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Err == nil {
		root.Close()
		return nil, fmt.Errorf("%w: os.Root did not report an escape for \"..\": %v", ErrInvalidConfig, err)
	}
	return &Tool{cfg: cfg, root: root, escapeErr: pe.Err}, nil
}

func setDefault[T int | int64 | time.Duration](p *T, d T) {
	if *p == 0 {
		*p = d
	}
}

// Close releases the workspace root. Calls must not be in flight.
func (t *Tool) Close() error { return t.root.Close() }

// Definition implements tool.Tool.
func (t *Tool) Definition() tool.Definition {
	return tool.Definition{
		Name:  ToolName,
		Title: "SQL query (read-only)",
		Description: fmt.Sprintf("Run one read-only SQL statement (SELECT, WITH, VALUES, EXPLAIN, or an information PRAGMA such as "+
			"table_info) against a SQLite database file in the workspace and return the columns and rows (at most %d rows). "+
			"List tables with: SELECT name, sql FROM sqlite_schema. No parameters; write values as literals.", t.cfg.MaxRows),
		InputSchema: &jsonschema.Schema{
			Type:          "object",
			Required:      []string{"database", "query"},
			PropertyOrder: []string{"database", "query"},
			Properties: map[string]*jsonschema.Schema{
				"database": {Type: "string", Description: "SQLite database file, relative to the workspace root (e.g. data/app.db).",
					MinLength: jsonschema.Ptr(1), MaxLength: jsonschema.Ptr(MaxPathBytes)},
				"query": {Type: "string", Description: "One read-only SQL statement; a trailing ';' is optional.",
					MinLength: jsonschema.Ptr(1), MaxLength: jsonschema.Ptr(t.cfg.MaxQueryBytes)},
			},
			AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
		},
		Sensitivity: tool.Medium,
		ReadOnly:    true,
		Timeout:     t.cfg.Timeout + 5*time.Second,
		Labels:      []string{"database", "filesystem", "read"},
	}
}

type args struct {
	Database string `json:"database"`
	Query    string `json:"query"`
}

// Call implements tool.Tool.
func (t *Tool) Call(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	a, err := decodeArgs(raw)
	if err != nil {
		return nil, err
	}
	if len(a.Query) > t.cfg.MaxQueryBytes {
		return nil, tool.Errorf(reason.TooLarge, fmt.Errorf("query %d bytes", len(a.Query)), "query is longer than %d bytes", t.cfg.MaxQueryBytes)
	}
	stmt, qerr := checkQuery(a.Query)
	if qerr != nil {
		code := reason.InvalidArguments
		if errors.Is(qerr, errNotReadOnly) {
			code = reason.ReadOnly
		}
		return nil, tool.Errorf(code, qerr, "%s", qerr.msg)
	}
	rel, err := cleanPath(a.Database)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	start := time.Now()
	dir, err := t.snapshot(ctx, rel, a.Database)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res, err := t.query(ctx, filepath.Join(dir, snapshotName), stmt)
	if err != nil {
		return nil, err
	}
	res.Structured["database"] = rel
	res.Structured["duration_ms"] = time.Since(start).Milliseconds()
	return res, nil
}

// query runs stmt on the snapshot at file.
func (t *Tool) query(ctx context.Context, file, stmt string) (_ *tool.Result, err error) {
	dsn := "file:" + file + "?mode=ro&_pragma=query_only(1)&_pragma=trusted_schema(0)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, tool.Errorf(reason.ToolFailed, err, "")
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, t.sqlError(ctx, err)
	}
	defer conn.Close()
	intr, err := newInterrupter(conn)
	if err != nil {
		return nil, tool.Errorf(reason.ToolFailed, err, "")
	}
	stop := context.AfterFunc(ctx, intr.interrupt)
	defer func() {
		stop()
		intr.close() // waits for a running interrupt: the connection closes after it
	}()
	if err := t.limit(ctx, conn); err != nil {
		return nil, tool.Errorf(reason.ToolFailed, err, "")
	}
	rows, err := conn.QueryContext(ctx, stmt)
	if err != nil {
		return nil, t.sqlError(ctx, err)
	}
	defer rows.Close()
	out, err := t.collect(rows)
	if err != nil {
		return nil, t.sqlError(ctx, err)
	}
	return out, nil
}

// limit sets the connection's limits and checks that it is read-only.
func (t *Tool) limit(ctx context.Context, conn *sql.Conn) error {
	for _, l := range []struct{ id, v int }{
		{sqlite3.SQLITE_LIMIT_ATTACHED, 0},
		{sqlite3.SQLITE_LIMIT_LENGTH, t.cfg.MaxValueBytes},
		{sqlite3.SQLITE_LIMIT_SQL_LENGTH, t.cfg.MaxQueryBytes},
	} {
		if _, err := sqlite.Limit(conn, l.id, l.v); err != nil {
			return err
		}
		if got, err := sqlite.Limit(conn, l.id, -1); err != nil || got != l.v {
			return fmt.Errorf("limit %d is %d, want %d: %v", l.id, got, l.v, err)
		}
	}
	var qo int
	if err := conn.QueryRowContext(ctx, "PRAGMA query_only").Scan(&qo); err != nil || qo != 1 {
		return fmt.Errorf("%w (%d, %v)", errQueryOnly, qo, err)
	}
	return nil
}

// sqlError maps an error of the driver to a tool error.
func (t *Tool) sqlError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return tool.Errorf(reason.Timeout, err, "query did not finish within %s", t.cfg.Timeout)
		}
		return tool.Errorf(reason.Cancelled, err, "%s", reason.Message(reason.Cancelled))
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return tool.Errorf(reason.ToolFailed, err, "")
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_READONLY:
		return tool.Errorf(reason.ReadOnly, err, "the database is read-only: the statement would write")
	case sqlite3.SQLITE_INTERRUPT:
		return tool.Errorf(reason.Timeout, err, "query did not finish within %s", t.cfg.Timeout)
	case sqlite3.SQLITE_TOOBIG:
		return tool.Errorf(reason.TooLarge, err, "a string or blob is larger than %d bytes", t.cfg.MaxValueBytes)
	case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
		return tool.Errorf(reason.InvalidArguments, err, "the file is not a SQLite database or is damaged")
	case sqlite3.SQLITE_NOMEM:
		return tool.Errorf(reason.TooLarge, err, "the query needs too much memory")
	case sqlite3.SQLITE_ERROR, sqlite3.SQLITE_RANGE, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_AUTH:
		return tool.Errorf(reason.InvalidArguments, err, "query failed: %s", clip(sqliteMessage(se), 300))
	default:
		return tool.Errorf(reason.ToolFailed, err, "query failed")
	}
}

// sqliteMessage returns SQLite's message without the driver's decoration
// ("SQL logic error: no such table: t (1)" -> "no such table: t").
func sqliteMessage(se *sqlite.Error) string {
	msg := se.Error()
	if i := strings.LastIndex(msg, " ("); i > 0 && strings.HasSuffix(msg, ")") {
		msg = msg[:i]
	}
	if _, after, ok := strings.Cut(msg, "SQL logic error: "); ok {
		msg = after
	}
	return msg
}

// decodeArgs decodes raw strictly: one JSON object with exactly the keys
// "database" and "query" (encoding/json alone would match them
// case-insensitively), no trailing data.
func decodeArgs(raw json.RawMessage) (*args, error) {
	raw = bytes.TrimSpace(raw)
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil || keys == nil {
		return nil, tool.Errorf(reason.InvalidArguments, err, "arguments must be a JSON object")
	}
	for k := range keys {
		if k != "database" && k != "query" {
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("unknown argument %q", k), "unknown argument %q", clip(k, 100))
		}
	}
	var a args
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, tool.Errorf(reason.InvalidArguments, err, "invalid arguments: database and query must be strings")
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return nil, tool.Errorf(reason.InvalidArguments, errTrailingData, "invalid arguments")
	}
	if a.Database == "" || a.Query == "" {
		return nil, tool.Errorf(reason.InvalidArguments, errors.New("missing argument"), "database and query are required")
	}
	return &a, nil
}

// cleanPath validates a workspace-relative path (the rules of the file
// tools) and returns it cleaned: NUL is PATH_FORBIDDEN, absolute paths
// and lexical escapes PATH_OUTSIDE_WORKSPACE.
func cleanPath(p string) (string, error) {
	switch {
	case len(p) > MaxPathBytes:
		return "", tool.Errorf(reason.InvalidArguments, errors.New("path too long"), "database path is too long")
	case strings.IndexByte(p, 0) >= 0:
		return "", tool.Errorf(reason.PathForbidden, errNUL, "database path contains a NUL byte")
	case strings.HasPrefix(p, "/"):
		return "", tool.Errorf(reason.PathOutsideWorkspace, errAbsolute, "absolute paths are not allowed; use a path relative to the workspace")
	}
	c := path.Clean(p)
	if !filepath.IsLocal(c) || c == ".." || strings.HasPrefix(c, "../") {
		return "", tool.Errorf(reason.PathOutsideWorkspace, errLexicalEsc, "%q: %s", clip(p, 200), reason.Message(reason.PathOutsideWorkspace))
	}
	return c, nil
}

// fsError maps an error of opening or reading a workspace file.
func (t *Tool) fsError(client string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return tool.Errorf(reason.NotFound, err, "%q: database not found", clip(client, 200))
	case errors.Is(err, syscall.ENAMETOOLONG):
		return tool.Errorf(reason.InvalidArguments, err, "%q: a path component is too long", clip(client, 200))
	case errors.Is(err, t.escapeErr):
		return tool.Errorf(reason.PathOutsideWorkspace, err, "%q: %s", clip(client, 200), reason.Message(reason.PathOutsideWorkspace))
	case errors.Is(err, errNotRegular), errors.Is(err, errHardLink), isLoop(err):
		return tool.Errorf(reason.PathForbidden, err, "%q: not a regular file inside the workspace (symbolic links, hard links, directories and devices are refused)", clip(client, 200))
	case errors.Is(err, fs.ErrPermission):
		return tool.Errorf(reason.PathForbidden, err, "%q: permission denied", clip(client, 200))
	default:
		return tool.Errorf(reason.ToolFailed, err, "")
	}
}

// clip shortens client input for a client message to at most n bytes.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}
