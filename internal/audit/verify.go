package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
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
	// AcceptUnsealedPrefix accepts records without a seal at the start of
	// the log (written before the chain existed, by a version without
	// it); they are counted in Unsealed, not verified. Off, any unsealed
	// record is a break. An unsealed record after a sealed one is always
	// a break: stored rows are never sealed afterwards.
	AcceptUnsealedPrefix bool
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
	PrunedBefore int64 `json:"pruned_before,omitempty"`
	// Unsealed counts the accepted unsealed prefix (AcceptUnsealedPrefix).
	Unsealed int64 `json:"unsealed,omitempty"`
	// BadSeq is the sequence number of the first bad record (or of the
	// first missing one) and Problem says what is wrong; both are empty
	// when the chain is intact.
	BadSeq  int64  `json:"bad_seq,omitempty"`
	Problem string `json:"problem,omitempty"`
	// Chains reports each chain (one per writing replica), in the order
	// of their first record; only when the log verified.
	Chains []ChainReport `json:"chains,omitempty"`
}

// OK reports whether the chain verified.
func (r *VerifyReport) OK() bool { return r.Problem == "" }

// verifyPage is how many records Verify reads per query.
const verifyPage = 5000

// ChainReport is what Verify found on one chain.
type ChainReport struct {
	Chain    string `json:"chain"`
	Records  int64  `json:"records"`
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
	HeadHash string `json:"head_hash"`
	// Continued is set when the chain's first record follows records that
	// retention pruned (its link to them can no longer be checked).
	Continued bool `json:"continued,omitempty"`
}

// Verify walks the whole log in sequence order and checks, for every
// record: its sequence follows the previous one (a gap is a deletion), its
// prev_hash is the hash of the previous record of its own chain
// (insertion, deletion, reordering), and its hash is the HMAC of its own
// contents, chain id included (alteration, moving a record to another
// chain); for a checkpoint record also its signature and that it names
// the record of its chain just before it. Each chain's first record must
// start that chain (genesis) unless retention pruned the start of the log
// at a signed checkpoint, which an audit.prune record must then confirm.
// Every anchor must name an existing record with the same hash (and
// chain), else the log was truncated or rewritten. Verify stops at the
// first problem. The error is for failures to read or bad options, never
// for a broken chain.
func Verify(ctx context.Context, r Reader, opts VerifyOptions) (VerifyReport, error) {
	var rep VerifyReport
	if opts.Chain == nil {
		return rep, errors.New("audit: verify needs the chain key")
	}
	if len(opts.PublicKey) != ed25519.PublicKeySize {
		return rep, errors.New("audit: verify needs the checkpoint public key")
	}
	// Each exported checkpoint names up to two records that must still be
	// there as they were: the record of its chain (Seq, Hash, Chain) and
	// the log's record before it (LogSeq, LogHash; any chain).
	anchorAt := map[int64][]*Checkpoint{} // by either record it names
	anchorSeen := map[*Checkpoint]bool{}  // anchors with a named record seen
	expect := map[int64]anchorExpect{}
	var maxAnchor *Checkpoint
	var maxPos int64
	for i := range opts.Anchors {
		a := &opts.Anchors[i]
		if err := a.Verify(opts.PublicKey); err != nil {
			return rep, fmt.Errorf("exported checkpoint at seq %d: %w", a.Seq, err)
		}
		logSeq, logHash := a.LogPosition()
		for _, x := range []anchorExpect{{seq: a.Seq, hash: a.Hash, chain: a.Chain, chainKnown: true},
			{seq: logSeq, hash: logHash}} {
			if x.seq == 0 {
				continue // the genesis position of an empty chain
			}
			if y, ok := expect[x.seq]; ok && (y.hash != x.hash || y.chainKnown && x.chainKnown && y.chain != x.chain) {
				return rep, fmt.Errorf("two exported checkpoints disagree about seq %d", x.seq)
			} else if ok && y.chainKnown {
				continue
			}
			expect[x.seq] = x
		}
		if a.Seq != 0 {
			anchorAt[a.Seq] = append(anchorAt[a.Seq], a)
		}
		if logSeq != a.Seq {
			anchorAt[logSeq] = append(anchorAt[logSeq], a)
		}
		if maxAnchor == nil || logSeq > maxPos {
			maxAnchor, maxPos = a, logSeq
		}
	}
	var prevSeq int64      // last record seen, sealed or not
	var prevRecHash string // its hash ("" if unsealed)
	sealed := false        // a sealed record was seen
	var prunedThrough int64
	chains := map[string]*ChainReport{}
	var order []string
	pruneRecorded := map[int64]bool{} // through_seq of audit.prune records
	// startCovered: a signed checkpoint seen so far covers the removal of
	// records 1..prunedThrough: a checkpoint record naming it, or an
	// exported one naming the record that the first remaining record of
	// its chain links to.
	startCovered := false
	uncovered := func() (VerifyReport, error) {
		rep.BadSeq = 1
		rep.Problem = fmt.Sprintf("records 1..%d are missing and no signed checkpoint covers their removal", prunedThrough)
		return rep, nil
	}
	bad := func(seq int64, format string, args ...any) (VerifyReport, error) {
		if prunedThrough > 0 && !startCovered && !coveredAhead(ctx, r, opts.PublicKey, prunedThrough) {
			return uncovered() // the missing start comes first in sequence order
		}
		rep.BadSeq = seq
		rep.Problem = fmt.Sprintf(format, args...)
		return rep, nil
	}
	for {
		page, err := r.QueryAudit(ctx, Query{AfterSeq: prevSeq, Ascending: true, Limit: verifyPage})
		if err != nil {
			return rep, err
		}
		for i := range page {
			e := &page[i]
			if e.Seq < 1 {
				return bad(e.Seq, "record has a non-positive sequence number")
			}
			if rep.Records == 0 && rep.Unsealed == 0 {
				rep.FirstSeq = e.Seq
			}
			if prevSeq != 0 && e.Seq != prevSeq+1 {
				return bad(prevSeq+1, "records %d..%d are missing (deleted)", prevSeq+1, e.Seq-1)
			}
			if x, ok := expect[e.Seq]; ok && (x.hash != e.Hash || x.chainKnown && x.chain != e.Chain) {
				return bad(e.Seq, "record differs from the exported checkpoint (rewritten after it was exported)")
			}
			if e.Hash == "" && e.PrevHash == "" && e.Chain == "" && !sealed && opts.AcceptUnsealedPrefix {
				if e.Seq != 1 && rep.Unsealed == 0 {
					return bad(1, "records 1..%d are missing", e.Seq-1)
				}
				rep.Unsealed++
				prevSeq, prevRecHash = e.Seq, ""
				continue
			}
			if e.Hash == "" {
				return bad(e.Seq, "record is not sealed (its seal was removed, or it was written before the chain existed: see --accept-unsealed-prefix)")
			}
			if !sealed {
				// The log's first sealed record: the log starts at seq 1
				// (or after the accepted unsealed prefix), or retention
				// pruned what came before (checked at the end).
				if rep.Unsealed == 0 && e.Seq != 1 {
					prunedThrough = e.Seq - 1
				}
				if rep.Unsealed > 0 && e.Chain != "" {
					// Records from before the chain existed are the default
					// chain's start; a sealed chain right after them must be
					// that chain, or whole chains could be stripped of their
					// seals and passed off as that prefix.
					return bad(e.Seq, "the first sealed record after the unsealed prefix is on chain %q, not the default chain", e.Chain)
				}
				sealed = true
			}
			c := chains[e.Chain]
			if c == nil {
				// The chain's first record starts it, or follows records
				// of it that retention pruned.
				c = &ChainReport{Chain: e.Chain, FirstSeq: e.Seq}
				switch {
				case e.PrevHash == GenesisHash:
				case prunedThrough > 0:
					c.Continued = true
				default:
					return bad(e.Seq, "the first record of chain %q does not start it (prev_hash is not the genesis hash)", e.Chain)
				}
				chains[e.Chain] = c
				if x, ok := expect[prunedThrough]; prunedThrough > 0 && ok && x.chainKnown && x.chain == e.Chain && x.hash == e.PrevHash {
					startCovered = true
				}
				order = append(order, e.Chain)
			} else if e.PrevHash != c.HeadHash {
				return bad(e.Seq, "prev_hash does not match record %d, the previous record of chain %q (a record was inserted, deleted or reordered)", c.LastSeq, e.Chain)
			}
			if !opts.Chain.Check(e) {
				return bad(e.Seq, "hash mismatch: the record was altered (or sealed with another key)")
			}
			switch e.Type {
			case AuditCheckpoint:
				cp, err := ParseCheckpoint([]byte(e.Detail))
				if err != nil {
					return bad(e.Seq, "checkpoint record unreadable: %v", err)
				}
				if err := cp.Verify(opts.PublicKey); err != nil {
					return bad(e.Seq, "checkpoint record: %v", err)
				}
				// It names the previous record of its chain: known, or
				// pruned, or none (genesis, seq 0).
				named := c.LastSeq
				if c.Records == 0 && c.Continued {
					named = cp.Seq
					if cp.Seq > prunedThrough {
						named = -1
					}
				}
				if cp.Chain != e.Chain || cp.Seq != named || cp.Hash != e.PrevHash {
					return bad(e.Seq, "checkpoint record names seq %d of chain %q, not the record of its chain before it", cp.Seq, cp.Chain)
				}
				// And the log's record before it, unless retention
				// pruned it (this checkpoint then covers the pruning).
				logSeq, logHash := cp.LogPosition()
				if logSeq != e.Seq-1 || prevSeq != 0 && prevSeq == logSeq && logHash != prevRecHash {
					return bad(e.Seq, "checkpoint record names seq %d of the log, not the record before it", logSeq)
				}
				if prunedThrough > 0 && (cp.Seq == prunedThrough || logSeq == prunedThrough) {
					startCovered = true
				}
				rep.Checkpoints++
			case AuditPrune:
				var d struct {
					ThroughSeq int64 `json:"through_seq"`
				}
				if json.Unmarshal([]byte(e.Detail), &d) == nil {
					pruneRecorded[d.ThroughSeq] = true
				}
			}
			for _, a := range anchorAt[e.Seq] {
				if !anchorSeen[a] {
					anchorSeen[a] = true
					rep.Anchors++
				}
			}
			prevSeq, prevRecHash = e.Seq, e.Hash
			c.Records++
			c.LastSeq, c.HeadHash = e.Seq, e.Hash
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
	if prunedThrough > 0 {
		// The log starts after records that are gone. Retention removes
		// records only up to a signed checkpoint and records that it did
		// (audit.prune, written before it deletes); without both, someone
		// else removed them.
		if !startCovered {
			return uncovered()
		}
		if !pruneRecorded[prunedThrough] {
			return bad(1, "records 1..%d were removed at a checkpoint, but no audit.prune record says retention removed them", prunedThrough)
		}
		rep.PrunedBefore = prunedThrough + 1
	}
	if rep.Unsealed > 0 && rep.Records == 0 {
		rep.LastSeq = prevSeq
	}
	if maxAnchor != nil && maxPos > rep.LastSeq {
		return bad(rep.LastSeq+1, "truncated: an exported checkpoint (%s) names seq %d but the log ends at %d",
			maxAnchor.Time.Format(time.RFC3339), maxPos, rep.LastSeq)
	}
	// Anchors older than the first record were pruned with it; the ones in
	// range were all matched above (a missing one would be a gap).
	for _, id := range order {
		rep.Chains = append(rep.Chains, *chains[id])
	}
	return rep, nil
}

// coverLookahead bounds how many checkpoint records coveredAhead reads.
const coverLookahead = 1000

// coveredAhead reports whether a validly signed checkpoint record after
// seq names seq. Verify asks when it stops at a break before it reached
// the checkpoint that covers a pruned start: with several chains, other
// chains' records lie between the pruned start and that checkpoint, and
// the break, not the start, is then the first problem. Read errors count
// as not covered.
func coveredAhead(ctx context.Context, r Reader, pub ed25519.PublicKey, seq int64) bool {
	cps, err := r.QueryAudit(ctx, Query{Type: AuditCheckpoint, AfterSeq: seq, Ascending: true, Limit: coverLookahead})
	if err != nil {
		return false
	}
	for i := range cps {
		cp, err := ParseCheckpoint([]byte(cps[i].Detail))
		logSeq, _ := cp.LogPosition()
		if err == nil && (cp.Seq == seq || logSeq == seq) && cp.Chain == cps[i].Chain && cp.Verify(pub) == nil {
			return true
		}
	}
	return false
}

// anchorExpect is a record an exported checkpoint says must be there:
// its hash, and its chain when known.
type anchorExpect struct {
	seq        int64
	hash       string
	chain      string
	chainKnown bool
}
