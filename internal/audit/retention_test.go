package audit_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *stepClock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// pruneFixture opens a SQLite store and a writer on it, with a clock
// starting at start; both are closed when t ends.
func pruneFixture(t *testing.T, start time.Time) (*sqlite.DB, *audit.Writer, *stepClock, *audit.Chain) {
	t.Helper()
	clock := &stepClock{now: start}
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "a.db"), sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	chain := audittest.Chain()
	w, err := audit.NewWriter(audit.Config{CommitTimeout: time.Minute, QueueSize: 16, MaxBatch: 8, Chain: chain}, db,
		clock.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	return db, w, clock, chain
}

// TestPruneKeepsUnshipped: retention prunes through the newest checkpoint
// before the cutoff, but never past records a sink has not shipped
// (keepAfter), and the remaining chain verifies from its anchor.
func TestPruneKeepsUnshipped(t *testing.T) {
	ctx := context.Background()
	db, w, clock, chain := pruneFixture(t, time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC))
	// January, February, March: 3 records and a checkpoint each month.
	var cps []audit.Checkpoint
	for m := 1; m <= 3; m++ {
		clock.set(time.Date(2026, time.Month(m), 10, 0, 0, 0, 0, time.UTC))
		for range 3 {
			if err := w.Emit(ctx, &audit.Event{Type: audit.ToolCallStart, Principal: "dev"}); err != nil {
				t.Fatal(err)
			}
		}
		cp, err := w.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp) // seqs 3, 7, 11
	}
	clock.set(time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC))
	cutoff := audit.RetentionCutoff(clock.Now(), 1) // 2026-03-01: Jan and Feb may go

	// A sink has shipped only through seq 5: the February checkpoint (covers
	// 7) may not be used; January's (covers 3) may.
	res, err := audit.Prune(ctx, db, w, cutoff, 5)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != cps[0].Seq || res.Deleted != cps[0].Seq {
		t.Fatalf("keepAfter=5: pruned %+v, want through %d", res, cps[0].Seq)
	}
	// Without a sink: through the February checkpoint.
	res, err = audit.Prune(ctx, db, w, cutoff, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != cps[1].Seq {
		t.Fatalf("no sink: pruned %+v, want through %d", res, cps[1].Seq)
	}
	rep, err := audit.Verify(ctx, db, audit.VerifyOptions{Chain: chain, PublicKey: chain.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.FirstSeq != cps[1].Seq+1 || rep.PrunedBefore != cps[1].Seq+1 {
		t.Fatalf("after pruning: %+v", rep)
	}
	prunes, _ := db.QueryAudit(ctx, audit.Query{Type: audit.AuditPrune})
	if len(prunes) != 2 {
		t.Errorf("%d audit.prune records, want 2", len(prunes))
	}
	// Nothing older than the cutoff is covered by a newer checkpoint: a
	// third run prunes nothing.
	if res, err := audit.Prune(ctx, db, w, cutoff, 0); err != nil || res.Deleted != 0 {
		t.Errorf("third run: %+v %v", res, err)
	}
}

// TestPruneScansPastNewerCheckpoints: the checkpoint a sink's cursor
// allows may be far older than the newest ones before the cutoff (a sink
// that stalled while checkpoints kept being written); Prune pages back
// through them to it.
func TestPruneScansPastNewerCheckpoints(t *testing.T) {
	ctx := context.Background()
	db, w, clock, chain := pruneFixture(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	// 250 record + checkpoint pairs in January: checkpoint record 2k
	// covers record 2k-1.
	for i := range 250 {
		clock.set(time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC))
		if err := w.Emit(ctx, &audit.Event{Type: audit.ToolCallStart, Principal: "dev"}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	clock.set(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	cutoff := audit.RetentionCutoff(clock.Now(), 1) // 2026-02-01
	res, err := audit.Prune(ctx, db, w, cutoff, 12)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != 11 || res.Deleted != 11 {
		t.Fatalf("sink shipped through 12: pruned %+v, want through 11 (the checkpoint 238 records back)", res)
	}
	rep, err := audit.Verify(ctx, db, audit.VerifyOptions{Chain: chain, PublicKey: chain.PublicKey()})
	if err != nil || !rep.OK() || rep.PrunedBefore != 12 {
		t.Fatalf("after pruning: %+v, %v", rep, err)
	}
	// Without a sink: through the newest checkpoint before the cutoff.
	if res, err := audit.Prune(ctx, db, w, cutoff, 0); err != nil || res.ThroughSeq != 499 {
		t.Fatalf("no sink: %+v, %v; want through 499, the newest checkpoint's", res, err)
	}
}
