package sqlite_test

// Attacks on the audit hash chain of a real database file. The attacker has
// write access to the file (a second, raw database/sql connection) but not
// the chain key; audit.Verify, reading through the store, must report the
// first record each attack breaks.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

// attackerChain seals with a key of the right length but the wrong value.
func attackerChain(t testing.TB) *audit.Chain {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.NewChain(bytes.Repeat([]byte{0x66}, 32), priv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawOpen opens a second, independent connection to the database file:
// the attacker's, bypassing the store.
func rawOpen(t testing.TB, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	t.Cleanup(func() { raw.Close() })
	return raw
}

// rawExec runs a statement on the attacker's connection and returns the
// number of rows it changed.
func rawExec(t testing.TB, raw *sql.DB, query string, args ...any) int64 {
	t.Helper()
	res, err := raw.Exec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rawInsert stores e as a row, encoded the way the store encodes it.
func rawInsert(t testing.TB, raw *sql.DB, e *audit.Event) {
	t.Helper()
	rawExec(t, raw, `INSERT INTO audit_events (seq, id, time_ns, type, principal, roles, session, request_id,
		remote_addr, tool, server, args_digest, args, decision, reason, status, duration_ns, result_digest, error,
		detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.ID, e.Time.UnixNano(), string(e.Type), e.Principal, strings.Join(e.Roles, ","), e.Session,
		e.RequestID, e.RemoteAddr, e.Tool, e.Server, e.ArgsDigest, string(e.Args), e.Decision, string(e.Reason),
		e.Status, int64(e.Duration), e.ResultDigest, e.Error, e.Detail, e.PrevHash, e.Hash)
}

// chainFixture is a sealed log in a real file, the store over it and an
// attacker's raw connection to it.
type chainFixture struct {
	path string
	db   *sqlite.DB
	raw  *sql.DB
	clk  *clock
	next int // index of the next chainEvent, for unique ids
}

func newChainFixture(t testing.TB) *chainFixture {
	t.Helper()
	c := newClock()
	path := filepath.Join(t.TempDir(), "portcullis.db")
	db := openAt(t, path, c)
	return &chainFixture{path: path, db: db, raw: rawOpen(t, path), clk: c}
}

// clone copies the fixture's closed database file into a new directory
// and opens it there.
func (f *chainFixture) clone(t testing.TB) *chainFixture {
	t.Helper()
	b, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "portcullis.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: f.clk.Now()}
	return &chainFixture{path: path, db: openAt(t, path, c), raw: rawOpen(t, path), clk: c, next: f.next}
}

// chainEvent is a realistic record with most fields set; i varies them.
func chainEvent(i int, at time.Time) *audit.Event {
	e := &audit.Event{
		ID: fmt.Sprintf("evt_%05d", i), Time: at, Type: audit.ToolCallStart,
		Principal: fmt.Sprintf("user-%d", i%3), Roles: []string{"developer", "guest"}, Session: "sess",
		RequestID: fmt.Sprintf("req-%d", i), RemoteAddr: "192.0.2.1:4000", Tool: "read_file", Server: "files",
		ArgsDigest: "hmac-sha256:" + strings.Repeat("0", 64), Args: json.RawMessage(fmt.Sprintf(`{"path":"f%d.txt"}`, i)),
		Decision: audit.DecisionAllow, Status: audit.StatusStarted,
	}
	if i%4 == 3 {
		e.Type, e.Status, e.Duration, e.Reason = audit.ToolCallEnd, audit.StatusOK, time.Duration(i)*time.Millisecond, "OK"
		e.ResultDigest, e.Detail = "hmac-sha256:"+strings.Repeat("1", 64), "rule 2"
	}
	return e
}

// appendN appends n records through the store in batches of 1, 2, 3, ...
// (so that batch boundaries fall everywhere) and returns them.
func (f *chainFixture) appendN(t testing.TB, n int) []*audit.Event {
	t.Helper()
	var out []*audit.Event
	for size := 1; len(out) < n; size++ {
		batch := make([]*audit.Event, 0, size)
		for range min(size, n-len(out)) {
			f.clk.Advance(time.Second)
			batch = append(batch, chainEvent(f.next, f.clk.Now()))
			f.next++
		}
		if err := f.db.AppendAudit(t.Context(), audittest.Chain(), batch); err != nil {
			t.Fatal(err)
		}
		out = append(out, batch...)
	}
	return out
}

// newWriter starts a group-commit writer over the fixture's store and
// clock, closed at the end of the test.
func (f *chainFixture) newWriter(t testing.TB) *audit.Writer {
	t.Helper()
	w, err := audit.NewWriter(audit.Config{CommitTimeout: time.Minute, QueueSize: 64, MaxBatch: 16,
		Chain: audittest.Chain()}, f.db, f.clk.Now, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(context.Background()); err != nil {
			t.Errorf("writer Close: %v", err)
		}
	})
	return w
}

// emitN emits n records through w, one second apart on the fixture's
// clock; the writer assigns ids and times.
func (f *chainFixture) emitN(t testing.TB, w *audit.Writer, n int) {
	t.Helper()
	for range n {
		f.clk.Advance(time.Second)
		e := chainEvent(f.next, time.Time{})
		f.next++
		e.ID = ""
		if err := w.Emit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// setClock sets c to at.
func setClock(c *clock, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = at
}

// row returns the stored record seq (through the store).
func (f *chainFixture) row(t testing.TB, seq int64) audit.Event {
	t.Helper()
	got, err := f.db.QueryAudit(t.Context(), audit.Query{AfterSeq: seq - 1, Ascending: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Seq != seq {
		t.Fatalf("no record %d", seq)
	}
	return got[0]
}

func verify(t testing.TB, r audit.Reader, anchors ...audit.Checkpoint) audit.VerifyReport {
	t.Helper()
	c := audittest.Chain()
	rep, err := audit.Verify(t.Context(), r, audit.VerifyOptions{Chain: c, PublicKey: c.PublicKey(), Anchors: anchors})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

// verifyUnsealed verifies accepting an unsealed prefix (a pre-chain log).
func verifyUnsealed(t testing.TB, r audit.Reader, anchors ...audit.Checkpoint) audit.VerifyReport {
	t.Helper()
	c := audittest.Chain()
	rep, err := audit.Verify(t.Context(), r, audit.VerifyOptions{Chain: c, PublicKey: c.PublicKey(), Anchors: anchors,
		AcceptUnsealedPrefix: true})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func wantIntact(t testing.TB, rep audit.VerifyReport, records int64) {
	t.Helper()
	if !rep.OK() || rep.BadSeq != 0 || rep.Problem != "" || rep.Records != records {
		t.Errorf("report %+v: want intact with %d records", rep, records)
	}
}

func wantBrokenAt(t testing.TB, rep audit.VerifyReport, seq int64) {
	t.Helper()
	if rep.OK() || rep.BadSeq != seq || rep.Problem == "" {
		t.Errorf("report %+v: want broken at seq %d with a problem", rep, seq)
	}
}

// swapRows exchanges the contents of rows a and b by renumbering through a
// temporary sequence number.
func swapRows(t testing.TB, raw *sql.DB, a, b int64) {
	t.Helper()
	rawExec(t, raw, `UPDATE audit_events SET seq = -1 WHERE seq = ?`, a)
	rawExec(t, raw, `UPDATE audit_events SET seq = ? WHERE seq = ?`, a, b)
	rawExec(t, raw, `UPDATE audit_events SET seq = ? WHERE seq = -1`, b)
}

// resealRaw recomputes prev_hash and hash of every row from seq from on
// with chain c and writes them back: an attacker rewriting the chain.
func resealRaw(t testing.TB, f *chainFixture, c *audit.Chain, from int64) {
	t.Helper()
	all, err := f.db.QueryAudit(t.Context(), audit.Query{Ascending: true, Limit: audit.MaxQueryLimit})
	if err != nil {
		t.Fatal(err)
	}
	head := audit.GenesisHash
	for i := range all {
		e := &all[i]
		if e.Seq >= from {
			if err := c.Seal(e, e.Seq-1, head); err != nil {
				t.Fatal(err)
			}
			rawExec(t, f.raw, `UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?`, e.PrevHash, e.Hash, e.Seq)
		}
		head = e.Hash
	}
}

// TestChainDetectsTampering: every attack on a 30-record log, made
// directly in the database file, is reported at exactly the first record
// it breaks.
func TestChainDetectsTampering(t *testing.T) {
	const n = 30
	tests := []struct {
		name   string
		tamper func(t *testing.T, f *chainFixture)
		bad    int64
	}{
		{"update principal", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 7`)
		}, 7},
		{"update args", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET args = '{"path":"/etc/shadow"}' WHERE seq = 7`)
		}, 7},
		{"update status", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET status = 'refused' WHERE seq = 8`)
		}, 8},
		{"update time_ns by 1ns", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET time_ns = time_ns + 1 WHERE seq = 7`)
		}, 7},
		{"update detail", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET detail = 'nothing to see' WHERE seq = 8`)
		}, 8},
		{"update roles", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET roles = 'guest' WHERE seq = 7`)
		}, 7},
		{"update type", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET type = 'tool.call.refused' WHERE seq = 7`)
		}, 7},
		{"update decision", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET decision = 'deny' WHERE seq = 7`)
		}, 7},
		{"update duration", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET duration_ns = 0 WHERE seq = 8`)
		}, 8},
		{"update id", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET id = 'evt_other' WHERE seq = 7`)
		}, 7},
		{"update the first row", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET tool = 'run_command' WHERE seq = 1`)
		}, 1},
		{"update the last row", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET tool = 'run_command' WHERE seq = ?`, n)
		}, n},
		{"update prev_hash", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET prev_hash = (SELECT hash FROM audit_events WHERE seq = 3) WHERE seq = 7`)
		}, 7},
		{"update hash to another row's", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET hash = (SELECT hash FROM audit_events WHERE seq = 3) WHERE seq = 7`)
		}, 7},
		{"upper-case the last hash", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET hash = upper(hash) WHERE seq = ?`, n)
		}, n},
		{"delete a middle row", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq = 7`)
		}, 7},
		{"delete three middle rows", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq BETWEEN 7 AND 9`)
		}, 7},
		{"delete the first row", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq = 1`)
		}, 1},
		{"delete rows 1..5 without a checkpoint", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq <= 5`)
		}, 1},
		{"delete a row and renumber the rest", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq = 7`)
			for seq := int64(8); seq <= n; seq++ {
				rawExec(t, f.raw, `UPDATE audit_events SET seq = ? WHERE seq = ?`, seq-1, seq)
			}
		}, 7},
		{"insert a forged row at the end", func(t *testing.T, f *chainFixture) {
			last := f.row(t, n)
			e := chainEvent(999, last.Time.Add(time.Second))
			if err := attackerChain(t).Seal(e, last.Seq, last.Hash); err != nil {
				t.Fatal(err)
			}
			rawInsert(t, f.raw, e)
		}, n + 1},
		{"insert a forged row into a gap", func(t *testing.T, f *chainFixture) {
			prev := f.row(t, 6)
			rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq = 7`)
			e := chainEvent(999, prev.Time.Add(time.Millisecond))
			if err := attackerChain(t).Seal(e, prev.Seq, prev.Hash); err != nil {
				t.Fatal(err)
			}
			rawInsert(t, f.raw, e)
		}, 7},
		{"replace a row by a copy of another", func(t *testing.T, f *chainFixture) {
			e := f.row(t, 3)
			rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq = 7`)
			e.Seq, e.ID = 7, "evt_replayed"
			rawInsert(t, f.raw, &e)
		}, 7},
		{"insert a row before the first", func(t *testing.T, f *chainFixture) {
			e := chainEvent(999, f.row(t, 1).Time.Add(-time.Second))
			if err := attackerChain(t).Seal(e, 0, audit.GenesisHash); err != nil {
				t.Fatal(err)
			}
			e.Seq = 0
			rawInsert(t, f.raw, e)
		}, 0},
		{"swap rows 7 and 8", func(t *testing.T, f *chainFixture) { swapRows(t, f.raw, 7, 8) }, 7},
		{"swap the first two rows", func(t *testing.T, f *chainFixture) { swapRows(t, f.raw, 1, 2) }, 1},
		{"swap the last two rows", func(t *testing.T, f *chainFixture) { swapRows(t, f.raw, n-1, n) }, n - 1},
		{"rewrite the whole chain with a wrong key", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 12`)
			resealRaw(t, f, attackerChain(t), 1)
		}, 1},
		{"rewrite the chain from the altered row on", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 12`)
			resealRaw(t, f, attackerChain(t), 12)
		}, 12},
	}
	// One sealed log, copied for every attack (much faster than building
	// it again under -race).
	template := newChainFixture(t)
	template.appendN(t, n)
	template.raw.Close()
	// Closing the last connection checkpoints the WAL into the main file.
	if err := template.db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := template.clone(t)
			wantIntact(t, verify(t, f.db), n)
			tt.tamper(t, f)
			wantBrokenAt(t, verify(t, f.db), tt.bad)
		})
	}
}

// TestChainIntactAfterAppend: what the store writes verifies, head hash
// included, and every returned event carries its stored seal.
func TestChainIntactAfterAppend(t *testing.T) {
	f := newChainFixture(t)
	events := f.appendN(t, 40)
	rep := verify(t, f.db)
	wantIntact(t, rep, 40)
	if rep.FirstSeq != 1 || rep.LastSeq != 40 || rep.HeadHash != events[39].Hash {
		t.Errorf("report %+v, head %s", rep, events[39].Hash)
	}
	for _, e := range events {
		if got := f.row(t, e.Seq); got.Hash != e.Hash || got.PrevHash != e.PrevHash {
			t.Errorf("record %d: stored seal %s/%s, returned %s/%s", e.Seq, got.PrevHash, got.Hash, e.PrevHash, e.Hash)
		}
	}
}

// TestChainRolesStoredSorted: the store keeps roles sorted; a record
// emitted with roles in another order must still verify. (The principal's
// roles come from OIDC claims and key grants in whatever order.)
func TestChainRolesStoredSorted(t *testing.T) {
	f := newChainFixture(t)
	e := chainEvent(0, f.clk.Now())
	e.Roles = []string{"guest", "developer"}
	if err := f.db.AppendAudit(t.Context(), audittest.Chain(), []*audit.Event{e}); err != nil {
		t.Fatal(err)
	}
	wantIntact(t, verify(t, f.db), 1)
}

// TestChainWriterConcurrentEmitters: many goroutines emitting through the
// group-commit writer, with checkpoints taken meanwhile, leave one linear
// chain that verifies; an edit in the middle is still found.
func TestChainWriterConcurrentEmitters(t *testing.T) {
	f := newChainFixture(t)
	w, err := audit.NewWriter(audit.Config{CommitTimeout: time.Minute, QueueSize: 64, MaxBatch: 16,
		Chain: audittest.Chain()}, f.db, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	const emitters, each, checkpoints = 8, 40, 3
	var wg sync.WaitGroup
	for g := range emitters {
		wg.Go(func() {
			for i := range each {
				e := chainEvent(g*each+i, time.Time{})
				e.ID = ""
				if err := w.Emit(t.Context(), e); err != nil {
					t.Errorf("Emit: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range checkpoints {
			if _, err := w.Checkpoint(t.Context()); err != nil {
				t.Errorf("Checkpoint: %v", err)
				return
			}
		}
	})
	wg.Wait()
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	const total = emitters*each + checkpoints
	rep := verify(t, f.db)
	wantIntact(t, rep, total)
	if rep.Checkpoints != checkpoints {
		t.Errorf("Checkpoints = %d, want %d", rep.Checkpoints, checkpoints)
	}
	rawExec(t, f.raw, `UPDATE audit_events SET remote_addr = '203.0.113.9:1' WHERE seq = ?`, total/2)
	wantBrokenAt(t, verify(t, f.db), total/2)
}

// TestChainTruncation: deleting the newest records, the checkpoint record
// included, shows only against a checkpoint exported earlier.
func TestChainTruncation(t *testing.T) {
	f := newChainFixture(t)
	w := f.newWriter(t)
	f.emitN(t, w, 10)
	cp, err := w.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Seq != 10 || cp.Hash != f.row(t, 10).Hash || f.row(t, 11).Type != audit.AuditCheckpoint {
		t.Fatalf("checkpoint %+v does not name record 10 (followed by the checkpoint record 11)", cp)
	}
	f.emitN(t, w, 5) // 12..16
	// Export: the checkpoint leaves the database as JSON and comes back.
	anchor := exportCheckpoint(t, cp)
	rep := verify(t, f.db, anchor)
	wantIntact(t, rep, 16)
	if rep.Anchors != 1 || rep.Checkpoints != 1 {
		t.Errorf("Anchors %d Checkpoints %d, want 1 and 1", rep.Anchors, rep.Checkpoints)
	}

	// The attacker removes everything from record 8 on: the anchored
	// record 10, the checkpoint record 11 and what followed.
	rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq >= 8`)
	wantBrokenAt(t, verify(t, f.db, anchor), 8) // last remaining 7, plus one
	// Without the exported checkpoint the shorter log is indistinguishable
	// from one that simply ended at 7: this is why checkpoints are exported.
	wantIntact(t, verify(t, f.db), 7)
}

// TestChainTruncationAcrossReplicas: two writers on one file, each on its
// own chain (as two replicas on one PostgreSQL database). Replica A writes
// one record and idles while B writes ten; a checkpoint then exported
// through A names, besides A's own record 1, the log's record before it
// (B's 11), so removing B's records behind it shows: an exported checkpoint
// covers every replica's records, not only its own chain's.
func TestChainTruncationAcrossReplicas(t *testing.T) {
	f := newChainFixture(t)
	writer := func(id string) *audit.Writer {
		chain, err := audittest.Chain().WithID(id)
		if err != nil {
			t.Fatal(err)
		}
		w, err := audit.NewWriter(audit.Config{CommitTimeout: time.Minute, QueueSize: 64, MaxBatch: 16, Chain: chain},
			f.db, f.clk.Now, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close(context.Background()) })
		return w
	}
	a, b := writer("replica-a"), writer("replica-b")
	f.emitN(t, a, 1)  // 1
	f.emitN(t, b, 10) // 2..11
	cp, err := a.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if logSeq, logHash := cp.LogPosition(); cp.Seq != 1 || logSeq != 11 || logHash != f.row(t, 11).Hash || f.row(t, 12).Type != audit.AuditCheckpoint {
		t.Fatalf("A's checkpoint %+v: want A's record 1 and the log's record 11 (B's), followed by the checkpoint record 12", cp)
	}
	anchor := exportCheckpoint(t, cp)
	wantIntact(t, verify(t, f.db, anchor), 12)
	// Removing the tail behind the checkpoint, down to B's first record:
	// A's own record 1 is still there, but the log's record 11 is not.
	rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq >= 2`)
	wantBrokenAt(t, verify(t, f.db, anchor), 2)
}

// exportCheckpoint takes cp out of the database as JSON and back, as an
// exported checkpoint file would.
func exportCheckpoint(t testing.TB, cp audit.Checkpoint) audit.Checkpoint {
	t.Helper()
	b, err := json.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := audit.ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	return anchor
}

// TestChainTruncationAfterAnchor documents the reach of an anchor: it
// proves the records up to the one it names, not the ones after it.
func TestChainTruncationAfterAnchor(t *testing.T) {
	f := newChainFixture(t)
	events := f.appendN(t, 10)
	anchor := checkpointFor(t, 6, events[5].Hash)
	rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq > 6`)
	rep := verify(t, f.db, anchor)
	wantIntact(t, rep, 6)
	if rep.Anchors != 1 {
		t.Errorf("Anchors = %d, want 1", rep.Anchors)
	}
}

// checkpointFor returns a checkpoint for (seq, hash) signed with the real
// checkpoint key, made the way the gateway makes them.
func checkpointFor(t testing.TB, seq int64, hash string) audit.Checkpoint {
	t.Helper()
	e := audit.Event{ID: "evt_cp", Type: audit.AuditCheckpoint, Time: time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC)}
	if err := audittest.Chain().Seal(&e, seq, hash); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint([]byte(e.Detail))
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestChainAnchorMismatch: an exported checkpoint whose hash differs from
// the stored record (the chain was rewritten after the export, or the
// export belongs to another log) is reported at the anchored record.
func TestChainAnchorMismatch(t *testing.T) {
	f := newChainFixture(t)
	events := f.appendN(t, 10)
	wantIntact(t, verify(t, f.db, checkpointFor(t, 6, events[5].Hash)), 10)
	wantBrokenAt(t, verify(t, f.db, checkpointFor(t, 6, events[4].Hash)), 6)
	// An anchor signed by any other key is refused outright.
	other := attackerChain(t)
	e := audit.Event{ID: "evt_cp", Type: audit.AuditCheckpoint, Time: f.clk.Now()}
	if err := other.Seal(&e, 6, events[5].Hash); err != nil {
		t.Fatal(err)
	}
	foreign, err := audit.ParseCheckpoint([]byte(e.Detail))
	if err != nil {
		t.Fatal(err)
	}
	c := audittest.Chain()
	if _, err := audit.Verify(t.Context(), f.db, audit.VerifyOptions{Chain: c, PublicKey: c.PublicKey(),
		Anchors: []audit.Checkpoint{foreign}}); !errors.Is(err, audit.ErrForeignKey) {
		t.Errorf("Verify with a foreign anchor = %v, want ErrForeignKey", err)
	}
}

// TestChainForgedCheckpointRecord: even someone who learnt the chain key
// cannot write a checkpoint record without the signing key.
func TestChainForgedCheckpointRecord(t *testing.T) {
	f := newChainFixture(t)
	f.appendN(t, 10)
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := audit.NewChain(audittest.ChainKey, otherKey) // real chain key, wrong signer
	if err != nil {
		t.Fatal(err)
	}
	cp := &audit.Event{ID: "evt_forged_cp", Time: f.clk.Now(), Type: audit.AuditCheckpoint, Principal: audit.SystemPrincipal}
	if err := f.db.AppendAudit(t.Context(), forger, []*audit.Event{cp}); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, f.db)
	wantBrokenAt(t, rep, 11)
	if !strings.Contains(rep.Problem, "checkpoint") {
		t.Errorf("Problem %q does not mention the checkpoint", rep.Problem)
	}
}

// TestChainRetention: records over six months with a checkpoint at the end
// of each; retention prunes at the newest checkpoint before the cutoff and
// the rest still verifies from that signed anchor, while deleting anything
// more is detected.
func TestChainRetention(t *testing.T) {
	f := newChainFixture(t)
	w := f.newWriter(t)
	ctx := t.Context()
	var cps []audit.Checkpoint // exported monthly
	for month := time.January; month <= time.June; month++ {
		setClock(f.clk, time.Date(2026, month, 3, 9, 0, 0, 0, time.UTC))
		f.emitN(t, w, 5)
		if month == time.June {
			break
		}
		setClock(f.clk, time.Date(2026, month+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Minute)) // end of the month
		cp, err := w.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	// 6 months x 5 records + 5 checkpoints: Jan 1-5 cp 6, Feb 7-11 cp 12,
	// Mar 13-17 cp 18, Apr 19-23 cp 24, May 25-29 cp 30, Jun 31-35.
	wantIntact(t, verify(t, f.db, cps...), 35)

	setClock(f.clk, time.Date(2026, 6, 20, 0, 0, 0, 0, time.UTC))
	cutoff := audit.RetentionCutoff(f.clk.Now(), 3) // 2026-03-01
	// A forwarding sink has shipped only through record 8: retention
	// stops at January's checkpoint (record 6, covering 1..5).
	res, err := audit.Prune(ctx, f.db, w, cutoff, 8)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != 5 || res.Deleted != 5 {
		t.Fatalf("Prune keeping records after 8 = %+v, want through 5, 5 deleted", res)
	}
	rep := verify(t, f.db, cps...)
	wantIntact(t, rep, 36-5) // the audit.prune record is 36
	if rep.FirstSeq != 6 || rep.PrunedBefore != 6 {
		t.Errorf("after pruning through 5: %+v, want FirstSeq = PrunedBefore = 6", rep)
	}
	// Everything shipped: retention prunes through February's checkpoint.
	res, err = audit.Prune(ctx, f.db, w, cutoff, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != 11 || res.Deleted != 6 || !res.Cutoff.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Prune = %+v, want through 11 (February's checkpoint), 6 deleted, cutoff March 1", res)
	}
	rep = verify(t, f.db, cps...)
	wantIntact(t, rep, 37-11) // the second audit.prune record is 37
	if rep.FirstSeq != 12 || rep.PrunedBefore != 12 || rep.Checkpoints != 4 {
		t.Errorf("after pruning through 11: %+v, want FirstSeq = PrunedBefore = 12 and 4 checkpoints", rep)
	}
	for _, seq := range []int64{36, 37} {
		if prune := f.row(t, seq); prune.Type != audit.AuditPrune {
			t.Errorf("record %d is %s, want an audit.prune record", seq, prune.Type)
		}
	}
	// Pruning again at the same cutoff is a no-op.
	if again, err := audit.Prune(ctx, f.db, w, cutoff, 0); err != nil || again.ThroughSeq != 0 || again.Deleted != 0 {
		t.Errorf("third Prune = %+v, %v; want nothing pruned", again, err)
	}

	// Deleting one more row after pruning is detected, in the middle ...
	rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq = 20`)
	wantBrokenAt(t, verify(t, f.db, cps...), 20)
	// ... and at the start: without the checkpoint record 12 nothing
	// covers the removal of 1..12.
	rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq = 12`)
	wantBrokenAt(t, verify(t, f.db, cps...), 1)
}

// TestChainPrefixDeletionAtCheckpoint: deleting every record before a
// checkpoint record looks like retention, but retention always writes an
// audit.prune record (sealed after the checkpoint) first; without one the
// deletion is reported, even with an exported checkpoint older than the
// first remaining record.
func TestChainPrefixDeletionAtCheckpoint(t *testing.T) {
	f := newChainFixture(t)
	events := f.appendN(t, 10)
	w := f.newWriter(t)
	if _, err := w.Checkpoint(t.Context()); err != nil { // record 11
		t.Fatal(err)
	}
	f.appendN(t, 5)
	rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq <= 10`)
	wantBrokenAt(t, verify(t, f.db, checkpointFor(t, 4, events[3].Hash)), 1)
}

// TestChainLegacyRowsSealed: rows stored before the chain existed (empty
// prev_hash and hash) are never sealed afterwards; the chain starts at
// the genesis hash after them, and Verify accepts them only as a prefix
// when asked to (they are counted, not verified).
func TestChainLegacyRowsSealed(t *testing.T) {
	t.Run("legacy log", func(t *testing.T) {
		f := newChainFixture(t)
		for i := range 5 {
			f.clk.Advance(time.Second)
			e := chainEvent(i, f.clk.Now())
			e.Seq = int64(i + 1)
			rawInsert(t, f.raw, e) // no prev_hash, no hash: as an old version wrote it
		}
		f.clk.Advance(time.Second)
		next := chainEvent(5, f.clk.Now())
		if err := f.db.AppendAudit(t.Context(), audittest.Chain(), []*audit.Event{next}); err != nil {
			t.Fatal(err)
		}
		if next.Seq != 6 || next.PrevHash != audit.GenesisHash {
			t.Errorf("next Seq = %d prev %q, want 6 chained onto genesis", next.Seq, next.PrevHash)
		}
		if n := rawCount(t, f.raw, `hash = '' OR prev_hash = ''`); n != 5 {
			t.Errorf("%d rows unsealed, want the 5 old ones left as they were", n)
		}
		wantBrokenAt(t, verify(t, f.db), 1)
		rep := verifyUnsealed(t, f.db)
		wantIntact(t, rep, 1)
		if rep.Unsealed != 5 || rep.FirstSeq != 1 || rep.LastSeq != 6 {
			t.Errorf("report %+v, want 5 unsealed then seq 6", rep)
		}
	})
	t.Run("unsealed rows verify as broken", func(t *testing.T) {
		f := newChainFixture(t)
		e := chainEvent(0, f.clk.Now())
		e.Seq = 1
		rawInsert(t, f.raw, e)
		wantBrokenAt(t, verify(t, f.db), 1)
	})
}

// TestChainLegacySealingIsNoOracle: rows without a hash that follow sealed
// rows are not legacy rows but tampering (an inserted forgery, or edited
// rows with their seals blanked). The store's next ordinary append must
// not seal them with the real key, which would launder the edit.
func TestChainLegacySealingIsNoOracle(t *testing.T) {
	const n = 20
	tests := []struct {
		name   string
		tamper func(t *testing.T, f *chainFixture)
		bad    int64
	}{
		{"forged row appended without a seal", func(t *testing.T, f *chainFixture) {
			e := chainEvent(999, f.row(t, n).Time.Add(time.Millisecond))
			e.Seq, e.Type, e.Principal = n+1, audit.PolicyDeny, "bob"
			rawInsert(t, f.raw, e)
		}, n + 1},
		{"edited suffix with its seals blanked", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 7`)
			rawExec(t, f.raw, `UPDATE audit_events SET prev_hash = '', hash = '' WHERE seq >= 7`)
		}, 7},
		{"edited row and the head blanked", func(t *testing.T, f *chainFixture) {
			rawExec(t, f.raw, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 7`)
			rawExec(t, f.raw, `UPDATE audit_events SET prev_hash = '', hash = '' WHERE seq IN (7, ?)`, n)
		}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newChainFixture(t)
			f.appendN(t, n)
			tt.tamper(t, f)
			wantBrokenAt(t, verify(t, f.db), tt.bad)
			f.appendN(t, 1) // the gateway's next ordinary append
			wantBrokenAt(t, verify(t, f.db), tt.bad)
		})
	}
}

// TestChainBlankedLogNeedsAnchor: a log whose every seal was blanked looks
// like a log from before the chain existed: broken by default, and when a
// pre-chain prefix is accepted, an exported checkpoint still exposes the
// rewrite. The edit is never sealed with the real key.
func TestChainBlankedLogNeedsAnchor(t *testing.T) {
	f := newChainFixture(t)
	events := f.appendN(t, 20)
	anchor := checkpointFor(t, 10, events[9].Hash)
	rawExec(t, f.raw, `UPDATE audit_events SET principal = 'mallory' WHERE seq = 7`)
	rawExec(t, f.raw, `UPDATE audit_events SET prev_hash = '', hash = ''`)
	f.appendN(t, 1)
	wantBrokenAt(t, verify(t, f.db, anchor), 1)
	wantBrokenAt(t, verifyUnsealed(t, f.db, anchor), 10)
	if n := rawCount(t, f.raw, `hash = ''`); n != 20 {
		t.Errorf("%d blanked rows, want all 20 left unsealed", n)
	}
}

// TestChainVerifyPagesOverSQLite: more records than one Verify page, read
// back through the store's AfterSeq paging; a deletion right after the
// page boundary is found.
func TestChainVerifyPagesOverSQLite(t *testing.T) {
	f := newChainFixture(t)
	const n = 5_002
	batch := make([]*audit.Event, n)
	for i := range batch {
		batch[i] = chainEvent(i, f.clk.Now().Add(time.Duration(i)*time.Millisecond))
	}
	if err := f.db.AppendAudit(t.Context(), audittest.Chain(), batch); err != nil {
		t.Fatal(err)
	}
	wantIntact(t, verify(t, f.db), n)
	rawExec(t, f.raw, `DELETE FROM audit_events WHERE seq = 5001`)
	wantBrokenAt(t, verify(t, f.db), 5001)
}

// TestChainVerifyWhileWriting: offline verification through a read-only
// handle sees a consistent chain while the gateway keeps appending.
func TestChainVerifyWhileWriting(t *testing.T) {
	f := newChainFixture(t)
	f.appendN(t, 50)
	ro, err := sqlite.OpenReadOnly(t.Context(), f.path, sqlite.Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	w, err := audit.NewWriter(audit.Config{CommitTimeout: time.Minute, QueueSize: 64, MaxBatch: 16,
		Chain: audittest.Chain()}, f.db, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := w.Emit(t.Context(), &audit.Event{Type: audit.ToolCallStart, Principal: "p"}); err != nil {
					t.Errorf("Emit: %v", err)
					return
				}
			}
		})
	}
	for range 5 {
		if rep := verify(t, ro); !rep.OK() || rep.Records < 50 {
			t.Errorf("verify while writing: %+v", rep)
		}
	}
	close(stop)
	wg.Wait()
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, ro)
	if !rep.OK() {
		t.Errorf("after writing: %+v", rep)
	}
}

func rawCount(t testing.TB, raw *sql.DB, where string) int {
	t.Helper()
	var n int
	if err := raw.QueryRow(`SELECT count(*) FROM audit_events WHERE ` + where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIntegrityCheck(t *testing.T) {
	f := newChainFixture(t)
	f.appendN(t, 20)
	if err := f.db.IntegrityCheck(t.Context()); err != nil {
		t.Errorf("IntegrityCheck on a good file: %v", err)
	}
}

// TestOpenReadOnly: the offline tools' handle reads and verifies a live
// file but refuses every write, and never creates a missing file.
func TestOpenReadOnly(t *testing.T) {
	f := newChainFixture(t)
	f.appendN(t, 12)
	ro, err := sqlite.OpenReadOnly(t.Context(), f.path, sqlite.Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	wantIntact(t, verify(t, ro), 12)
	if err := ro.IntegrityCheck(t.Context()); err != nil {
		t.Errorf("IntegrityCheck: %v", err)
	}
	e := chainEvent(99, f.clk.Now())
	if err := ro.AppendAudit(t.Context(), audittest.Chain(), []*audit.Event{e}); err == nil {
		t.Error("AppendAudit through a read-only handle succeeded")
	}
	if e.Seq != 0 || e.Hash != "" {
		t.Errorf("failed append left Seq %d Hash %q", e.Seq, e.Hash)
	}
	if _, err := ro.PruneAudit(t.Context(), 5); err == nil {
		t.Error("PruneAudit through a read-only handle succeeded")
	}
	if err := ro.ProbeWrite(t.Context()); err == nil {
		t.Error("ProbeWrite through a read-only handle succeeded")
	}
	// The writer handle still sees all 12 rows, and can still write.
	wantIntact(t, verify(t, f.db), 12)
	f.appendN(t, 1)
	wantIntact(t, verify(t, ro), 13)

	missing := filepath.Join(t.TempDir(), "missing.db")
	if db, err := sqlite.OpenReadOnly(t.Context(), missing, sqlite.Options{Logger: testLogger()}); err == nil {
		db.Close()
		t.Error("OpenReadOnly opened a missing file")
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenReadOnly created %s (stat: %v)", missing, err)
	}
	if _, err := sqlite.OpenReadOnly(t.Context(), f.path, sqlite.Options{}); err == nil {
		t.Error("OpenReadOnly accepted a nil logger")
	}
}
