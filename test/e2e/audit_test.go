package e2e

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	_ "modernc.org/sqlite" // database/sql driver "sqlite": the tests read the store directly
)

// Tests for the audit trail (issue 5) through the real binary: records of
// acknowledged calls survive a SIGKILL, a store that stops taking writes
// makes the gateway refuse calls (and recover by itself), online backup
// and restore, and tamper detection by `audit verify`. Helpers are
// prefixed with "trail" so that they cannot collide with other files of
// the package.

// trailDB is the path of g's SQLite database.
func trailDB(g *gateway) string { return filepath.Join(g.dataDir, "portcullis.db") }

// trailOpen opens the SQLite file at path with database/sql, read-only
// (mode=ro) unless rw is set. It is closed when the test ends.
func trailOpen(t *testing.T, path string, rw bool) *sql.DB {
	t.Helper()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	if !rw {
		q.Set("mode", "ro")
	}
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// trailIntegrity runs PRAGMA integrity_check on db.
func trailIntegrity(t *testing.T, db *sql.DB) {
	t.Helper()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	if res != "ok" {
		t.Errorf("PRAGMA integrity_check = %q, want ok", res)
	}
}

// trailRow is one stored audit record (the columns these tests look at).
type trailRow struct {
	Seq                                   int64
	Type, Principal, Tool, Status, Reason string
	Args, Hash                            string
	Path, Content                         string // from Args
}

// trailRows returns the records matching the SQL condition where, in
// sequence order.
func trailRows(t *testing.T, db *sql.DB, where string, args ...any) []trailRow {
	t.Helper()
	rows, err := db.Query(`SELECT seq, type, principal, tool, status, reason, args, hash
		FROM audit_events WHERE `+where+` ORDER BY seq`, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []trailRow
	for rows.Next() {
		var r trailRow
		if err := rows.Scan(&r.Seq, &r.Type, &r.Principal, &r.Tool, &r.Status, &r.Reason, &r.Args, &r.Hash); err != nil {
			t.Fatal(err)
		}
		var a struct{ Path, Content string }
		if r.Args != "" {
			if err := json.Unmarshal([]byte(r.Args), &a); err != nil {
				t.Fatalf("seq %d: args %q: %v", r.Seq, r.Args, err)
			}
		}
		r.Path, r.Content = a.Path, a.Content
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// trailCount returns SELECT count(*) FROM audit_events WHERE where.
func trailCount(t *testing.T, db *sql.DB, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// trailExitCode is the exit status in err from g.cli (0: no error; -1:
// not an exit status).
func trailExitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// trailVerify runs `audit verify --data-dir` with extra args and returns
// its exit status and output (standard error included on failure).
func trailVerify(t *testing.T, g *gateway, args ...string) (int, string) {
	t.Helper()
	out, err := g.cli(append([]string{"audit", "verify", "--data-dir", g.dataDir}, args...)...)
	if err != nil {
		out += err.Error()
	}
	return trailExitCode(err), out
}

// trailEventually polls cond every 50ms until it reports true; after
// timeout it fails the test with cond's last message.
func trailEventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// trailReadyz returns the status of GET /readyz.
func trailReadyz(g *gateway) (int, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(g.base + "/readyz")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// trailWaitReadyz polls /readyz until it answers want.
func trailWaitReadyz(t *testing.T, g *gateway, want int, timeout time.Duration) {
	t.Helper()
	trailEventually(t, timeout, fmt.Sprintf("/readyz %d", want), func() (bool, string) {
		st, err := trailReadyz(g)
		return err == nil && st == want, fmt.Sprintf("status %d, err %v\nstderr:\n%s", st, err, g.stderr)
	})
}

// trailLoad drives concurrent MCP clients. Each calls write_file in a
// loop with arguments no other call uses (path and content name the
// client and the call) and records every call whose success result it
// received: those are acknowledged.
type trailLoad struct {
	stop  atomic.Bool
	dying atomic.Bool // transport errors are expected from now on
	acks  atomic.Int64
	wg    sync.WaitGroup

	mu       sync.Mutex
	acked    map[string]string // path -> content
	problems []string
}

// trailStartLoad opens as many sessions with key as clients says and
// starts them writing files under dir (created in the workspace).
func trailStartLoad(t *testing.T, g *gateway, key, dir string, clients int) *trailLoad {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(g.workspace, dir), 0o755); err != nil {
		t.Fatal(err)
	}
	l := &trailLoad{acked: map[string]string{}}
	sessions := make([]*mcp.ClientSession, clients)
	for i := range sessions {
		sessions[i] = g.connect(key, "")
	}
	for i, cs := range sessions {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.run(cs, dir, i)
		}()
	}
	t.Cleanup(l.finish) // a test that fails early still stops its clients
	return l
}

func (l *trailLoad) run(cs *mcp.ClientSession, dir string, client int) {
	for n := 0; !l.stop.Load(); n++ {
		name := fmt.Sprintf("c%02d-%05d", client, n)
		path := dir + "/" + name + ".txt"
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write_file",
			Arguments: map[string]any{"path": path, "content": name}})
		cancel()
		switch {
		case err != nil:
			if !l.dying.Load() {
				l.problem("%s: %v", path, err)
			}
			return
		case res.IsError:
			l.problem("%s: code %s: %s", path, code(res), text(res))
			return
		}
		l.mu.Lock()
		l.acked[path] = name
		l.mu.Unlock()
		l.acks.Add(1)
	}
}

func (l *trailLoad) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// finish stops the clients and waits for them.
func (l *trailLoad) finish() {
	l.stop.Store(true)
	l.wg.Wait()
}

// result returns a copy of the acknowledged calls and the problems seen.
func (l *trailLoad) result() (map[string]string, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acked := make(map[string]string, len(l.acked))
	for k, v := range l.acked {
		acked[k] = v
	}
	return acked, append([]string(nil), l.problems...)
}

// waitAcks waits until at least n calls were acknowledged.
func (l *trailLoad) waitAcks(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	trailEventually(t, timeout, fmt.Sprintf("%d acknowledged calls", n), func() (bool, string) {
		_, problems := l.result()
		if len(problems) > 0 {
			t.Fatalf("client failures under load: %s", strings.Join(problems, "; "))
		}
		return l.acks.Load() >= n, fmt.Sprintf("%d so far", l.acks.Load())
	})
}

// trailCall is one tool call as the store recorded it.
type trailCall struct{ start, end *trailRow }

// trailCalls groups the tool.call.start and tool.call.end records of rows
// by the path argument. Every call of these tests has a path no other
// call uses, and the redaction keeps short non-secret strings in clear,
// so the path identifies the call in both of its records. A second start
// or end for one path, or an end without a start, is an error.
func trailCalls(t *testing.T, rows []trailRow) map[string]*trailCall {
	t.Helper()
	calls := map[string]*trailCall{}
	for i := range rows {
		r := &rows[i]
		c := calls[r.Path]
		if c == nil {
			c = &trailCall{}
			calls[r.Path] = c
		}
		switch r.Type {
		case "tool.call.start":
			if c.start != nil {
				t.Errorf("two tool.call.start records for %s (seq %d, %d)", r.Path, c.start.Seq, r.Seq)
			}
			c.start = r
		case "tool.call.end":
			if c.end != nil {
				t.Errorf("two tool.call.end records for %s (seq %d, %d)", r.Path, c.end.Seq, r.Seq)
			}
			if c.start == nil {
				t.Errorf("tool.call.end of %s (seq %d) without an earlier tool.call.start", r.Path, r.Seq)
			}
			c.end = r
		}
	}
	return calls
}

// TestAuditCrashDurability ("crash test"): 16 clients call write_file
// concurrently; after 300 acknowledged calls the gateway is killed with
// SIGKILL (no shutdown, no drain). Every acknowledged call must have
// both its tool.call.start and its tool.call.end record in the store, the
// chain must verify and SQLite must find the database intact, before and
// after a restart on the same data dir. Calls are matched to records by
// their path argument (see trailCalls): the client never sees the
// gateway's request id.
func TestAuditCrashDurability(t *testing.T) {
	g := startGateway(t)
	key := g.createKey("crash", "developer")
	l := trailStartLoad(t, g, key, "crash", 16)
	l.waitAcks(t, 300, 30*time.Second)

	l.dying.Store(true)
	atKill := l.acks.Load()
	if err := g.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-g.exited
	l.finish()
	acked, problems := l.result()
	if len(problems) > 0 {
		t.Fatalf("client failures before the kill: %s", strings.Join(problems, "; "))
	}
	t.Logf("acknowledged calls: %d when SIGKILL was sent, %d in all", atKill, len(acked))

	// What the crash left, before a restart repairs anything.
	if code, out := trailVerify(t, g); code != 0 {
		t.Errorf("audit verify after the crash: exit %d, want 0\n%s", code, out)
	}
	g.start()
	code, out := trailVerify(t, g)
	if code != 0 {
		t.Errorf("audit verify after the restart: exit %d, want 0\n%s", code, out)
	}
	t.Logf("audit verify: %s", strings.SplitN(out, "\n", 2)[0])

	db := trailOpen(t, trailDB(g), false)
	trailIntegrity(t, db)
	rows := trailRows(t, db, `principal = 'crash' AND tool = 'write_file'
		AND type IN ('tool.call.start', 'tool.call.end')`)
	calls := trailCalls(t, rows)
	for path, content := range acked {
		c := calls[path]
		switch {
		case c == nil || c.start == nil:
			t.Errorf("acknowledged call %s: no tool.call.start record", path)
		case c.end == nil:
			t.Errorf("acknowledged call %s: tool.call.start (seq %d) but no tool.call.end", path, c.start.Seq)
		case c.end.Status != "ok" || c.start.Content != content || c.end.Content != content:
			t.Errorf("acknowledged call %s: end status %q, recorded content %q/%q, want ok and %q",
				path, c.end.Status, c.start.Content, c.end.Content, content)
		}
		if b, err := os.ReadFile(filepath.Join(g.workspace, path)); err != nil || string(b) != content {
			t.Errorf("acknowledged call %s: file holds %q (%v), want %q", path, b, err, content)
		}
	}
	var starts, ends, unacked int
	for path, c := range calls {
		if c.start != nil {
			starts++
		}
		if c.end != nil {
			ends++
		}
		if _, ok := acked[path]; !ok {
			unacked++ // in flight at the kill: recorded, the answer never arrived
		}
	}
	t.Logf("records of the load: %d tool.call.start, %d tool.call.end; %d recorded calls were never acknowledged",
		starts, ends, unacked)
}

// trailFill writes path until the file system is full (ENOSPC).
func trailFill(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for _, size := range []int{1 << 20, 4 << 10} { // then the last pages
		for {
			_, err := f.Write(buf[:size])
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			break
		}
	}
}

// trailFault injects a fault that stops the store from taking writes
// and checks that the gateway fails closed: calls are refused with
// AUDIT_UNAVAILABLE, a refused write_file has not run, /readyz says 503.
// Then it heals the fault and checks that the gateway recovers by itself.
// Calls use empty contents, so that a tool that ran would leave its file
// even under a fault that blocks the gateway's own writes.
func trailFault(t *testing.T, g *gateway, cs *mcp.ClientSession, db *sql.DB, principal, name string, inject, heal func()) {
	t.Helper()
	inject()
	// Depending on the fault, SQLite may still commit into WAL pages it
	// owns: call until the gateway refuses.
	var ran, refused []string
	trailEventually(t, 30*time.Second, name+": a call refused", func() (bool, string) {
		path := fmt.Sprintf("%s-%04d.txt", name, len(ran)+len(refused))
		res := call(t, cs, "write_file", map[string]any{"path": path, "content": ""})
		switch {
		case !res.IsError:
			ran = append(ran, path)
			return false, fmt.Sprintf("%d calls succeeded", len(ran))
		case code(res) != "AUDIT_UNAVAILABLE":
			t.Fatalf("%s: call refused with %q (%s), want AUDIT_UNAVAILABLE", name, code(res), text(res))
		}
		refused = append(refused, path)
		return true, ""
	})
	trailWaitReadyz(t, g, http.StatusServiceUnavailable, 20*time.Second)

	// The store takes no writes: no tool may run.
	marker := name + "-marker.txt"
	if res := call(t, cs, "write_file", map[string]any{"path": marker, "content": ""}); code(res) != "AUDIT_UNAVAILABLE" {
		t.Errorf("%s: write_file during the fault: isError=%v code=%q, want AUDIT_UNAVAILABLE", name, res.IsError, code(res))
	}
	if _, err := os.Lstat(filepath.Join(g.workspace, marker)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: write_file ran while its audit record could not be written (stat: %v)", name, err)
	}
	if res := call(t, cs, "file_info", map[string]any{"path": "."}); code(res) != "AUDIT_UNAVAILABLE" {
		t.Errorf("%s: file_info during the fault: isError=%v code=%q, want AUDIT_UNAVAILABLE", name, res.IsError, code(res))
	}
	if st, err := trailReadyz(g); err != nil || st != http.StatusServiceUnavailable {
		t.Errorf("%s: /readyz during the fault = %d (%v), want 503", name, st, err)
	}

	heal()
	trailWaitReadyz(t, g, http.StatusOK, 20*time.Second)
	after := name + "-after.txt"
	res := call(t, cs, "write_file", map[string]any{"path": after, "content": "recovered"})
	if res.IsError {
		t.Fatalf("%s: write_file after recovery: code %q (%s)\nstderr:\n%s", name, code(res), text(res), g.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(g.workspace, after)); err != nil || string(b) != "recovered" {
		t.Errorf("%s: file written after recovery holds %q (%v)", name, b, err)
	}

	calls := trailCalls(t, trailRows(t, db, `principal = ? AND tool = 'write_file'
		AND type IN ('tool.call.start', 'tool.call.end')`, principal))
	t.Logf("%s: %d calls succeeded after the fault was injected, then refused", name, len(ran))
	for _, p := range ran {
		if c := calls[p]; c == nil || c.start == nil || c.end == nil {
			t.Errorf("%s: call %s succeeded during the fault but is not fully recorded", name, p)
		}
	}
	// A refused call may have run if only its end record failed; then its
	// start record is durable. The marker never ran.
	for _, p := range refused {
		_, err := os.Lstat(filepath.Join(g.workspace, p))
		if c := calls[p]; err == nil && (c == nil || c.start == nil) {
			t.Errorf("%s: refused call %s ran without a tool.call.start record", name, p)
		}
	}
	if c := calls[marker]; c != nil && c.end != nil {
		t.Errorf("%s: the refused marker call has a tool.call.end record (status %s)", name, c.end.Status)
	}
}

// TestAuditFaultFailsClosed ("fault test"): the data dir is a small tmpfs;
// the store is made to refuse writes in two ways, one after the other.
// Each time the gateway must refuse tool calls with AUDIT_UNAVAILABLE, run
// no tool unaudited and report not ready, and once the fault is gone it
// must recover by itself: /readyz 200 and calls succeed, with no restart.
//
// Fault A fills the file system (ENOSPC). Fault B makes every write of
// the gateway process fail at once, as a read-only file system would: it
// sets the process's file size limit to 0 (prlimit RLIMIT_FSIZE: every
// write to a regular file fails with EFBIG; Go ignores SIGXFSZ). A real
// `mount -o remount,ro` cannot be done under a running gateway: Linux
// refuses to make a file system read-only (EBUSY, "mount point is busy")
// while a process has a file on it open for writing, and SQLite keeps its
// database, WAL and shared-memory files open (so does the data dir lock).
func TestAuditFaultFailsClosed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a tmpfs as the data dir")
	}
	mnt := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "portcullis-e2e", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	g := startGatewayAt(t, filepath.Join(mnt, "data"), filepath.Join(t.TempDir(), "ws"), "PORTCULLIS_AUDIT_COMMIT_TIMEOUT=2s")
	key := g.createKey("fay", "developer")
	cs := g.connect(key, "")
	for i := range 5 {
		if res := call(t, cs, "write_file", map[string]any{"path": fmt.Sprintf("before-%d.txt", i), "content": "ok"}); res.IsError {
			t.Fatalf("write_file before any fault: %s %s", code(res), text(res))
		}
	}
	db := trailOpen(t, trailDB(g), false)

	filler := filepath.Join(mnt, "filler")
	var freed sync.Once
	free := func() {
		freed.Do(func() {
			if err := os.Remove(filler); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("remove filler: %v", err)
			}
		})
	}
	t.Cleanup(free) // before the gateway stops (cleanups run last first)
	if !t.Run("disk full", func(t *testing.T) {
		trailFault(t, g, cs, db, "fay", "full", func() { trailFill(t, filler) }, free)
	}) {
		return
	}

	t.Run("writes refused", func(t *testing.T) {
		if _, err := exec.LookPath("prlimit"); err != nil {
			t.Skip("prlimit (util-linux) not found")
		}
		pid := strconv.Itoa(g.cmd.Process.Pid)
		fsize := func(v string) {
			if out, err := exec.Command("prlimit", "--pid", pid, "--fsize="+v).CombinedOutput(); err != nil {
				t.Fatalf("prlimit --fsize=%s: %v: %s", v, err, out)
			}
		}
		var lifted sync.Once
		// Only the soft limit: raising a hard limit needs CAP_SYS_RESOURCE.
		lift := func() { lifted.Do(func() { fsize("unlimited:unlimited") }) }
		t.Cleanup(lift)
		trailFault(t, g, cs, db, "fay", "nowrite", func() { fsize("0:unlimited") }, lift)
	})

	// A stall rather than an error: another process holds the database's
	// write lock, so commits wait. Calls are refused after the commit
	// timeout (2s here); records of refused calls may be committed once the
	// lock is released, but their tools never ran.
	t.Run("store locked", func(t *testing.T) {
		ctx := context.Background()
		conn, err := trailOpen(t, trailDB(g), true).Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var unlocked sync.Once
		unlock := func() {
			unlocked.Do(func() {
				if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
					t.Errorf("ROLLBACK: %v", err)
				}
			})
		}
		t.Cleanup(unlock)
		trailFault(t, g, cs, db, "fay", "locked", func() {
			if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
				t.Fatalf("BEGIN IMMEDIATE: %v", err)
			}
		}, unlock)
	})

	if err := g.signal(syscall.SIGTERM); err != nil {
		t.Errorf("shutdown after the faults: %v\nstderr:\n%s", err, g.stderr)
	}
	if code, out := trailVerify(t, g); code != 0 {
		t.Errorf("audit verify after the faults: exit %d, want 0\n%s", code, out)
	}
	trailIntegrity(t, db)
}

// TestAuditBackupDuringWrites: `portcullis backup` takes verified, private
// (0600) copies while 8 clients keep writing; restore is refused while the
// gateway holds the data dir and, once it is stopped, puts the last copy
// back: the restored log verifies and holds exactly the backed-up records
// (and what the restarted gateway appended since).
func TestAuditBackupDuringWrites(t *testing.T) {
	g := startGateway(t)
	key := g.createKey("bea", "developer")
	l := trailStartLoad(t, g, key, "bk", 8)
	l.waitAcks(t, 50, 30*time.Second)

	backupRE := regexp.MustCompile(`backup written: .+ \((\d+) bytes, (\d+) audit records verified, seq (\d+)\.\.(\d+),`)
	dir := t.TempDir()
	var last string
	var records, lastSeq int64
	for i := range 3 {
		file := filepath.Join(dir, fmt.Sprintf("backup-%d.db", i))
		before := l.acks.Load()
		out, err := g.cli("backup", file, "--data-dir", g.dataDir)
		if err != nil {
			t.Fatalf("backup %d while serving: %v", i, err)
		}
		m := backupRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("backup %d output: %q", i, out)
		}
		n, _ := strconv.ParseInt(m[2], 10, 64)
		seq, _ := strconv.ParseInt(m[4], 10, 64)
		if n <= records {
			t.Errorf("backup %d holds %d records, the one before %d: the log did not grow", i, n, records)
		}
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("backup %d has mode %04o, want 0600", i, fi.Mode().Perm())
		}
		t.Logf("backup %d: %d records (seq ..%d), %s bytes; %d calls acknowledged while it ran",
			i, n, seq, m[1], l.acks.Load()-before)
		last, records, lastSeq = file, n, seq
		l.waitAcks(t, l.acks.Load()+20, 30*time.Second) // the log grows before the next one
	}

	out, err := g.cli("restore", last, "--data-dir", g.dataDir)
	if err == nil {
		t.Fatalf("restore succeeded while the gateway was serving:\n%s", out)
	}
	if !strings.Contains(err.Error(), "stop the gateway") {
		t.Errorf("restore while serving: %v, want an error saying to stop the gateway", err)
	}
	if aside, _ := filepath.Glob(filepath.Join(g.dataDir, "*pre-restore*")); len(aside) > 0 {
		t.Errorf("a refused restore moved files aside: %v", aside)
	}

	l.finish()
	if _, problems := l.result(); len(problems) > 0 {
		t.Fatalf("client failures during the backups: %s", strings.Join(problems, "; "))
	}
	if err := g.signal(syscall.SIGTERM); err != nil {
		t.Fatalf("shutdown: %v\nstderr:\n%s", err, g.stderr)
	}
	live := trailOpen(t, trailDB(g), false)
	liveRecords := trailCount(t, live, "1")
	live.Close()
	if liveRecords <= records {
		t.Fatalf("the live log has %d records, the last backup %d: nothing to tell them apart", liveRecords, records)
	}

	out, err = g.cli("restore", last, "--data-dir", g.dataDir)
	if err != nil {
		t.Fatalf("restore with the gateway stopped: %v", err)
	}
	if m := regexp.MustCompile(`\((\d+) audit records verified`).FindStringSubmatch(out); m == nil || m[1] != strconv.FormatInt(records, 10) {
		t.Errorf("restore output %q, want %d audit records verified", out, records)
	}
	g.start()
	code, vout := trailVerify(t, g)
	if code != 0 {
		t.Errorf("audit verify after the restore: exit %d, want 0\n%s", code, vout)
	}
	restored := trailOpen(t, trailDB(g), false)
	trailIntegrity(t, restored)
	total := trailCount(t, restored, "1")
	if total < records {
		t.Errorf("restored log has %d records, the backup reported %d", total, records)
	}
	if n := trailCount(t, restored, "seq <= ?", lastSeq); n != records {
		t.Errorf("restored log has %d records up to seq %d, the backup %d", n, lastSeq, records)
	}
	if n := trailCount(t, restored, "seq > ? AND tool <> ''", lastSeq); n != 0 {
		t.Errorf("restored log has %d tool records after the backup's last seq %d: not the backup", n, lastSeq)
	}
	backup := trailOpen(t, last, false)
	want := trailRows(t, backup, "seq = ?", lastSeq)
	got := trailRows(t, restored, "seq = ?", lastSeq)
	if len(want) != 1 || len(got) != 1 || got[0].Hash != want[0].Hash {
		t.Errorf("record %d: restored %+v, backup %+v", lastSeq, got, want)
	}
	t.Logf("live log %d records; backup %d; restored log %d after restart (%s)",
		liveRecords, records, total, strings.SplitN(vout, "\n", 2)[0])
}

// TestAuditVerifyDetectsTamperCLI: `audit verify` exits 1 and names the
// first bad record when a stored record is altered, 0 again when the
// value is put back, and 1 naming truncation when the newest records are
// deleted behind an exported checkpoint. Also: a CSV export has its header
// and one line per record, and `audit hash` gives the digest under which a
// redacted secret argument was stored.
func TestAuditVerifyDetectsTamperCLI(t *testing.T) {
	g := startGateway(t)
	key := g.createKey("tess", "developer")
	cs := g.connect(key, "")
	for i := range 3 {
		if res := call(t, cs, "write_file", map[string]any{"path": fmt.Sprintf("tamper-%d.txt", i), "content": "x"}); res.IsError {
			t.Fatalf("write_file: %s %s", code(res), text(res))
		}
	}
	token := "ghp_" + strings.Repeat("Xy7", 12) // looks like a GitHub token: never stored in clear
	if res := call(t, cs, "write_file", map[string]any{"path": "secret.txt", "content": token}); res.IsError {
		t.Fatalf("write_file: %s %s", code(res), text(res))
	}

	out, err := g.cli("audit", "export", "--format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "seq,id,time,type,code") {
		t.Errorf("CSV header %q, want it to start with seq,id,time,type,code", lines[0])
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("CSV export: %v", err)
	}
	if len(recs) != len(lines) || len(recs) < 2 {
		t.Errorf("CSV export: %d lines for %d rows, want one line per record", len(lines), len(recs))
	}
	var starts int
	for i, r := range recs[1:] {
		if r[0] != strconv.Itoa(i+1) {
			t.Fatalf("CSV row %d has seq %s, want %d (oldest first, none missing)", i+1, r[0], i+1)
		}
		if r[3] == "tool.call.start" && r[5] == "tess" {
			starts++
			if r[4] != "100" {
				t.Errorf("tool.call.start has code %s, want 100", r[4])
			}
		}
	}
	if starts != 4 {
		t.Errorf("CSV export has %d tool.call.start records of tess, want 4", starts)
	}
	if strings.Contains(out, token) {
		t.Error("CSV export contains the secret argument in clear")
	}
	db := trailOpen(t, trailDB(g), false)
	if n := trailCount(t, db, "seq <= ?", len(recs)-1); n != int64(len(recs)-1) {
		t.Errorf("store has %d records up to seq %d, the export %d", n, len(recs)-1, len(recs)-1)
	}

	hout, err := g.cli("audit", "hash", token)
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.TrimSpace(hout)
	if !regexp.MustCompile(`^hmac-sha256:[0-9a-f]{64}$`).MatchString(digest) {
		t.Errorf("audit hash printed %q, want hmac-sha256:<64 hex>", hout)
	}
	stored := trailRows(t, db, "type = 'tool.call.start' AND principal = 'tess' AND tool = 'write_file'")
	var found bool
	for _, r := range stored {
		if r.Path == "secret.txt" {
			found = true
			if r.Content != digest {
				t.Errorf("secret argument stored as %q, audit hash says %q", r.Content, digest)
			}
		}
	}
	if !found {
		t.Fatal("no tool.call.start record of the secret.txt write")
	}

	cpFile := filepath.Join(t.TempDir(), "checkpoint.json")
	out, err = g.cli("audit", "checkpoint", "--output", cpFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`checkpoint at seq (\d+) written to`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("audit checkpoint output %q", out)
	}
	cpSeq, _ := strconv.ParseInt(m[1], 10, 64)
	if err := g.signal(syscall.SIGTERM); err != nil {
		t.Fatalf("shutdown: %v\nstderr:\n%s", err, g.stderr)
	}
	if code, out := trailVerify(t, g, "--checkpoint", cpFile); code != 0 {
		t.Fatalf("audit verify of the untouched log: exit %d, want 0\n%s", code, out)
	}

	rw := trailOpen(t, trailDB(g), true)
	target := stored[0].Seq
	run := func(q string, args ...any) {
		t.Helper()
		if _, err := rw.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	run(`UPDATE audit_events SET principal = 'mallory' WHERE seq = ?`, target)
	code, vout := trailVerify(t, g, "--checkpoint", cpFile)
	if want := fmt.Sprintf("BROKEN at seq %d", target); code != 1 || !strings.Contains(vout, want) {
		t.Errorf("audit verify after altering seq %d: exit %d, output:\n%s\nwant exit 1 and %q", target, code, vout, want)
	}
	t.Logf("after altering seq %d: exit %d: %s", target, code, strings.SplitN(vout, "\n", 2)[0])
	run(`UPDATE audit_events SET principal = 'tess' WHERE seq = ?`, target)
	if code, vout := trailVerify(t, g, "--checkpoint", cpFile); code != 0 {
		t.Errorf("audit verify after putting the value back: exit %d, want 0\n%s", code, vout)
	}

	// Delete the newest records, from the one the exported checkpoint
	// names on. The data dir's own checkpoint (written at shutdown) is
	// moved away first, so that the exported one alone must tell.
	own := filepath.Join(g.dataDir, "audit-checkpoint.json")
	if err := os.Rename(own, own+".aside"); err != nil {
		t.Fatal(err)
	}
	run(`DELETE FROM audit_events WHERE seq >= ?`, cpSeq)
	code, vout = trailVerify(t, g, "--checkpoint", cpFile)
	if want := fmt.Sprintf("BROKEN at seq %d", cpSeq); code != 1 || !strings.Contains(vout, want) || !strings.Contains(vout, "truncated") {
		t.Errorf("audit verify after deleting seq >= %d: exit %d, output:\n%s\nwant exit 1, %q and truncated", cpSeq, code, vout, want)
	}
	t.Logf("after deleting seq >= %d: exit %d: %s", cpSeq, code, strings.SplitN(vout, "\n", 2)[0])
	if err := os.Rename(own+".aside", own); err != nil {
		t.Fatal(err)
	}
	if code, vout := trailVerify(t, g); code != 1 || !strings.Contains(vout, "truncated") {
		t.Errorf("audit verify with the data dir's checkpoint only: exit %d, output:\n%s\nwant exit 1 and truncated", code, vout)
	}
}
