package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
)

// Reader reads stored records; store.Store satisfies it.
type Reader interface {
	QueryAudit(ctx context.Context, q Query) ([]Event, error)
}

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Chain holds the chain key; required.
	Chain *Chain
	// PublicKey verifies checkpoint signatures (stored audit.checkpoint
	// records and Anchors); required.
	PublicKey ed25519.PublicKey
	// Anchors are checkpoints exported earlier and kept outside the
	// database. A record they name must still exist with that hash:
	// this is what detects truncation of the newest records.
	Anchors []Checkpoint
	// Progress, if set, is called about every ProgressEvery records.
	Progress func(records, seq int64)
}

// ProgressEvery is how often Verify reports progress, in records.
const ProgressEvery = 100_000

// VerifyReport is the outcome of Verify. BadSeq is 0 when the chain is
// intact, else the first sequence number at which it is broken, and
// Problem says how.
type VerifyReport struct {
	Records     int64  `json:"records"`
	FirstSeq    int64  `json:"first_seq"`
	LastSeq     int64  `json:"last_seq"`
	HeadHash    string `json:"head_hash,omitempty"`
	Checkpoints int    `json:"checkpoints"` // signed checkpoint records checked
	Anchors     int    `json:"anchors"`     // exported checkpoints checked
	// PrunedBefore is set when records before FirstSeq were removed at a
	// signed checkpoint (retention); they are no longer verifiable.
	PrunedBefore int64  `json:"pruned_before,omitempty"`
	BadSeq       int64  `json:"bad_seq,omitempty"`
	Problem      string `json:"problem,omitempty"`
}

// OK reports whether the chain verified.
func (r *VerifyReport) OK() bool { return r.BadSeq == 0 && r.Problem == "" }

// verifyPage is how many records Verify reads per query.
const verifyPage = 5000

// Verify walks the whole log in sequence order and checks, for every
// record: its sequence follows the previous one (a gap is a deletion), its
// prev_hash is the previous record's hash (insertion, deletion, reordering)
// and its hash is the HMAC of its own contents (alteration); for a
// checkpoint record also its signature and that it names the record just
// before it. The first record must start the chain (genesis) or follow a
// signed checkpoint (retention pruned the ones before). Every anchor must
// name an existing record with the same hash, else the log was truncated
// or rewritten. Verify stops at the first problem. The error is for
// failures to read or bad options, never for a broken chain.
func Verify(ctx context.Context, r Reader, opts VerifyOptions) (VerifyReport, error) {
	var rep VerifyReport
	if opts.Chain == nil {
		return rep, errors.New("audit: verify needs the chain key")
	}
	if len(opts.PublicKey) != ed25519.PublicKeySize {
		return rep, errors.New("audit: verify needs the checkpoint public key")
	}
	anchors := map[int64]string{}
	var maxAnchor *Checkpoint
	for i := range opts.Anchors {
		a := &opts.Anchors[i]
		if err := a.Verify(opts.PublicKey); err != nil {
			return rep, fmt.Errorf("exported checkpoint at seq %d: %w", a.Seq, err)
		}
		if h, ok := anchors[a.Seq]; ok && h != a.Hash {
			return rep, fmt.Errorf("two exported checkpoints disagree about seq %d", a.Seq)
		}
		anchors[a.Seq] = a.Hash
		if maxAnchor == nil || a.Seq > maxAnchor.Seq {
			maxAnchor = a
		}
	}
	bad := func(seq int64, format string, args ...any) (VerifyReport, error) {
		rep.BadSeq = seq
		rep.Problem = fmt.Sprintf(format, args...)
		return rep, nil
	}
	var prevSeq int64
	var prevHash string
	for {
		page, err := r.QueryAudit(ctx, Query{AfterSeq: prevSeq, Ascending: true, Limit: verifyPage})
		if err != nil {
			return rep, err
		}
		for i := range page {
			e := &page[i]
			if rep.Records == 0 {
				rep.FirstSeq = e.Seq
				switch {
				case e.Seq < 1:
					return bad(e.Seq, "record has a non-positive sequence number")
				case e.Seq == 1:
					if e.PrevHash != GenesisHash {
						return bad(1, "the first record does not start the chain (prev_hash is not the genesis hash)")
					}
				case anchors[e.Seq-1] == e.PrevHash:
					rep.PrunedBefore = e.Seq
				case e.Type == AuditCheckpoint:
					// Checked below: a valid checkpoint here names e.Seq-1
					// with e.PrevHash, which anchors the pruned start.
					rep.PrunedBefore = e.Seq
				default:
					return bad(1, "records 1..%d are missing and no signed checkpoint covers their removal", e.Seq-1)
				}
			} else {
				if e.Seq != prevSeq+1 {
					return bad(prevSeq+1, "records %d..%d are missing (deleted)", prevSeq+1, e.Seq-1)
				}
				if e.PrevHash != prevHash {
					return bad(e.Seq, "prev_hash does not match record %d (a record was inserted, deleted or reordered)", prevSeq)
				}
			}
			if !opts.Chain.Check(e) {
				return bad(e.Seq, "hash mismatch: the record was altered (or sealed with another key)")
			}
			if e.Type == AuditCheckpoint {
				cp, err := ParseCheckpoint([]byte(e.Detail))
				if err != nil {
					return bad(e.Seq, "checkpoint record unreadable: %v", err)
				}
				if err := cp.Verify(opts.PublicKey); err != nil {
					return bad(e.Seq, "checkpoint record: %v", err)
				}
				if cp.Seq != e.Seq-1 || cp.Hash != e.PrevHash {
					return bad(e.Seq, "checkpoint record names seq %d, not the record before it", cp.Seq)
				}
				rep.Checkpoints++
			}
			if h, ok := anchors[e.Seq]; ok {
				if h != e.Hash {
					return bad(e.Seq, "record differs from the exported checkpoint (rewritten after it was exported)")
				}
				rep.Anchors++
			}
			prevSeq, prevHash = e.Seq, e.Hash
			rep.Records++
			rep.LastSeq, rep.HeadHash = e.Seq, e.Hash
			if opts.Progress != nil && rep.Records%ProgressEvery == 0 {
				opts.Progress(rep.Records, e.Seq)
			}
		}
		if len(page) < verifyPage {
			break
		}
	}
	if maxAnchor != nil && maxAnchor.Seq > rep.LastSeq {
		return bad(rep.LastSeq+1, "truncated: an exported checkpoint (%s) names seq %d but the log ends at %d",
			maxAnchor.Time.Format(time.RFC3339), maxAnchor.Seq, rep.LastSeq)
	}
	// Anchors older than the first record were pruned with it; the ones in
	// range were all matched above (a missing one would be a gap).
	return rep, nil
}
