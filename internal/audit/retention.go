package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Checkpoint appends a signed audit.checkpoint record through the writer
// and returns the checkpoint it holds: the sequence and hash of the record
// of the writer's chain just before it and, when another chain's record
// lies between, of the log's record just before it (Checkpoint.LogSeq),
// signed with the chain's Ed25519 key. Export it (keep it
// outside the database) to detect later truncation.
func (w *Writer) Checkpoint(ctx context.Context) (Checkpoint, error) {
	e := &Event{Type: AuditCheckpoint, Principal: SystemPrincipal, Status: StatusOK}
	if err := w.Emit(ctx, e); err != nil {
		return Checkpoint{}, err
	}
	return ParseCheckpoint([]byte(e.Detail))
}

// SystemPrincipal is the principal of records the gateway writes on its
// own behalf (start, stop, checkpoints, retention).
const SystemPrincipal = "system"

// Pruner deletes old records; store.Store satisfies it.
type Pruner interface {
	Reader
	PruneAudit(ctx context.Context, throughSeq int64) (int64, error)
}

// RetentionCutoff returns the start (UTC) of the calendar month that lies
// months before now's month: with months = 12 on 2026-11-21 it is
// 2025-11-01. Retention is by whole months so that a monthly export
// (`audit export --since`) lines up with what is pruned.
func RetentionCutoff(now time.Time, months int) time.Time {
	y, m, _ := now.UTC().Date()
	return time.Date(y, m-time.Month(months), 1, 0, 0, 0, 0, time.UTC)
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Cutoff     time.Time `json:"cutoff"`
	ThroughSeq int64     `json:"through_seq"` // 0: nothing pruned
	Deleted    int64     `json:"deleted"`
}

// Prune applies retention: it finds the newest checkpoint record written
// before cutoff and deletes every record it covers (sequence <= its log
// position, the record just before it). The checkpoint record itself stays
// as the new first record, so the remaining chains still verify from a
// signed anchor.
// Records after the last checkpoint before cutoff stay even if older than
// cutoff: retention never breaks the chain. The removal is recorded as an
// audit.prune record (written first: if it cannot be, nothing is deleted).
// keepAfter > 0 protects every record with a sequence above it (the lowest
// cursor of the forwarding sinks: records not yet shipped are never pruned).
func Prune(ctx context.Context, p Pruner, w *Writer, cutoff time.Time, keepAfter int64) (PruneResult, error) {
	res := PruneResult{Cutoff: cutoff.UTC()}
	// The newest checkpoint before cutoff whose log position (always the
	// record just before the checkpoint record, see Chain.SealAt) is at or
	// before keepAfter.
	q := Query{Type: AuditCheckpoint, Until: cutoff, Limit: 1}
	if keepAfter > 0 {
		q.BeforeSeq = keepAfter + 2
	}
	cps, err := p.QueryAudit(ctx, q)
	if err != nil || len(cps) == 0 {
		return res, err
	}
	cp, err := ParseCheckpoint([]byte(cps[0].Detail))
	if err != nil {
		return res, fmt.Errorf("audit: prune: checkpoint record %d: %w", cps[0].Seq, err)
	}
	through, throughHash := cp.LogPosition()
	first, err := p.QueryAudit(ctx, Query{Ascending: true, Limit: 1})
	if err != nil {
		return res, err
	}
	if len(first) == 0 || first[0].Seq > through {
		return res, nil // already pruned through this checkpoint
	}
	detail, _ := json.Marshal(map[string]any{"through_seq": through, "cutoff": res.Cutoff,
		"checkpoint_hash": throughHash, "checkpoint_chain": cp.Chain})
	if err := w.Emit(ctx, &Event{Type: AuditPrune, Principal: SystemPrincipal, Status: StatusOK,
		Detail: string(detail)}); err != nil {
		return res, err
	}
	n, err := p.PruneAudit(ctx, through)
	if err != nil {
		return res, err
	}
	res.ThroughSeq, res.Deleted = through, n
	return res, nil
}
