package audit_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
)

// memLog is an in-memory audit.Reader over records kept in sequence order,
// with the query semantics Verify and Prune rely on. Tests tamper with
// events directly, as someone with write access to the database would.
type memLog struct {
	mu      sync.Mutex
	events  []audit.Event
	queries []audit.Query
	err     error // returned by every query when set
}

var _ audit.Reader = (*memLog)(nil)

func (m *memLog) QueryAudit(_ context.Context, q audit.Query) ([]audit.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queries = append(m.queries, q)
	if m.err != nil {
		return nil, m.err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = audit.DefaultQueryLimit
	}
	limit = min(limit, audit.MaxQueryLimit)
	var out []audit.Event
	match := func(e *audit.Event) bool {
		return (q.AfterSeq == 0 || e.Seq > q.AfterSeq) && (q.BeforeSeq == 0 || e.Seq < q.BeforeSeq) &&
			(q.Type == "" || e.Type == q.Type) && (q.Until.IsZero() || e.Time.Before(q.Until)) &&
			(q.Since.IsZero() || !e.Time.Before(q.Since))
	}
	for k := range m.events {
		if len(out) == limit {
			break
		}
		i := k
		if !q.Ascending {
			i = len(m.events) - 1 - k
		}
		if match(&m.events[i]) {
			out = append(out, m.events[i])
		}
	}
	return out, nil
}

// sort puts the events back in sequence order after a tamper.
func (m *memLog) sort() {
	slices.SortFunc(m.events, func(a, b audit.Event) int { return cmp.Compare(a.Seq, b.Seq) })
}

// at returns a pointer to the record with sequence seq.
func (m *memLog) at(t *testing.T, seq int64) *audit.Event {
	t.Helper()
	for i := range m.events {
		if m.events[i].Seq == seq {
			return &m.events[i]
		}
	}
	t.Fatalf("no record %d", seq)
	return nil
}

// remove deletes the records with sequence numbers from..to inclusive.
func (m *memLog) remove(from, to int64) {
	m.events = slices.DeleteFunc(m.events, func(e audit.Event) bool { return e.Seq >= from && e.Seq <= to })
}

// t0 is the time of the first record of every test log.
var t0 = time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)

// buildLog seals n records with c; every record whose sequence is a
// multiple of cpEvery (if > 0) is a signed audit.checkpoint.
func buildLog(t testing.TB, c *audit.Chain, n int, cpEvery int64) *memLog {
	t.Helper()
	m := &memLog{events: make([]audit.Event, 0, n)}
	seq, head := int64(0), audit.GenesisHash
	for i := range n {
		e := audit.Event{
			ID: fmt.Sprintf("evt_%07d", i+1), Time: t0.Add(time.Duration(i) * time.Second), Type: audit.ToolCallStart,
			Principal: fmt.Sprintf("user-%d", i%5), Roles: []string{"developer"}, RequestID: fmt.Sprintf("req-%d", i),
			Tool: "read_file", Args: json.RawMessage(fmt.Sprintf(`{"path":"f%d.txt"}`, i)),
			Decision: audit.DecisionAllow, Status: audit.StatusStarted,
		}
		if cpEvery > 0 && (seq+1)%cpEvery == 0 {
			e = audit.Event{ID: e.ID, Time: e.Time, Type: audit.AuditCheckpoint, Principal: audit.SystemPrincipal,
				Status: audit.StatusOK}
		}
		if err := c.Seal(&e, seq, head); err != nil {
			t.Fatal(err)
		}
		seq, head = e.Seq, e.Hash
		m.events = append(m.events, e)
	}
	return m
}

func verifyOpts(anchors ...audit.Checkpoint) audit.VerifyOptions {
	c := audittest.Chain()
	return audit.VerifyOptions{Chain: c, PublicKey: c.PublicKey(), Anchors: anchors}
}

func mustVerify(t *testing.T, r audit.Reader, opts audit.VerifyOptions) audit.VerifyReport {
	t.Helper()
	rep, err := audit.Verify(t.Context(), r, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

// wantBroken checks that Verify found the chain broken at exactly seq.
func wantBroken(t *testing.T, rep audit.VerifyReport, seq int64) {
	t.Helper()
	if rep.OK() || rep.BadSeq != seq || rep.Problem == "" {
		t.Errorf("report %+v: want broken at seq %d with a problem", rep, seq)
	}
}

// reseal recomputes prev_hash and hash of every record from seq from on
// with chain c, as someone holding c would; checkpoint records are signed
// again with c's signer.
func reseal(t *testing.T, m *memLog, c *audit.Chain, from int64) {
	t.Helper()
	m.sort()
	for i := range m.events {
		e := &m.events[i]
		if e.Seq < from {
			continue
		}
		prevHash := audit.GenesisHash
		if i > 0 {
			prevHash = m.events[i-1].Hash
		}
		if err := c.Seal(e, e.Seq-1, prevHash); err != nil {
			t.Fatal(err)
		}
	}
}

// recordPrune turns the newest record into the audit.prune record that
// retention writes before deleting through seq, sealed with c.
func recordPrune(t *testing.T, m *memLog, c *audit.Chain, through int64) {
	t.Helper()
	m.sort()
	last := &m.events[len(m.events)-1]
	last.Type, last.Principal, last.Tool, last.Args = audit.AuditPrune, audit.SystemPrincipal, "", nil
	last.Detail = fmt.Sprintf(`{"through_seq":%d}`, through)
	reseal(t, m, c, last.Seq)
}

// forgeRecord hand-seals e with the real chain key over prevHash (a test
// knows the key; an attacker does not) without letting Seal rewrite the
// detail of a checkpoint, to reach Verify's checks behind the hash.
func forgeRecord(e *audit.Event, prevHash string) {
	e.PrevHash = prevHash
	e.Hash = hmacOver(audittest.ChainKey, e)
}

func TestVerifyIntact(t *testing.T) {
	m := buildLog(t, audittest.Chain(), 50, 10)
	rep := mustVerify(t, m, verifyOpts())
	if !rep.OK() || rep.Records != 50 || rep.FirstSeq != 1 || rep.LastSeq != 50 || rep.Checkpoints != 5 ||
		rep.HeadHash != m.events[49].Hash || rep.PrunedBefore != 0 || rep.BadSeq != 0 || rep.Problem != "" {
		t.Errorf("report %+v", rep)
	}
	// An empty log is intact.
	rep = mustVerify(t, &memLog{}, verifyOpts())
	if !rep.OK() || rep.Records != 0 {
		t.Errorf("empty log: %+v", rep)
	}
}

// TestVerifyDetectsTampering: each attack on a 20-record log (checkpoint
// records at 7 and 14) is reported at exactly the first record it breaks.
func TestVerifyDetectsTampering(t *testing.T) {
	attacker := newChain(t, otherChainKey)
	foreignSigner := newChain(t, audittest.ChainKey) // the chain key leaked, the signing key did not
	tests := []struct {
		name    string
		tamper  func(t *testing.T, m *memLog)
		bad     int64
		problem string // a substring of Problem, if set
	}{
		{"alter principal", func(t *testing.T, m *memLog) { m.at(t, 5).Principal = "mallory" }, 5, "altered"},
		{"alter time by 1ns", func(t *testing.T, m *memLog) { e := m.at(t, 5); e.Time = e.Time.Add(1) }, 5, "altered"},
		{"alter roles order", func(t *testing.T, m *memLog) { m.at(t, 5).Roles = []string{"developer", "admin"} }, 5, ""},
		{"alter the first record", func(t *testing.T, m *memLog) { m.at(t, 1).Status = audit.StatusRefused }, 1, ""},
		{"alter the last record", func(t *testing.T, m *memLog) { m.at(t, 20).Decision = audit.DecisionDeny }, 20, ""},
		{"alter a checkpoint record's detail", func(t *testing.T, m *memLog) {
			e := m.at(t, 14)
			e.Detail = strings.Replace(e.Detail, `"seq":13`, `"seq":12`, 1)
		}, 14, ""},
		{"prev_hash in upper case", func(t *testing.T, m *memLog) {
			e := m.at(t, 5)
			e.PrevHash = strings.ToUpper(e.PrevHash)
		}, 5, "prev_hash"},
		{"hash in upper case", func(t *testing.T, m *memLog) { e := m.at(t, 5); e.Hash = strings.ToUpper(e.Hash) }, 5, ""},
		{"hash of the last record in upper case", func(t *testing.T, m *memLog) {
			e := m.at(t, 20)
			e.Hash = strings.ToUpper(e.Hash)
		}, 20, ""},
		{"delete a middle record", func(t *testing.T, m *memLog) { m.remove(5, 5) }, 5, "missing"},
		{"delete a checkpoint record", func(t *testing.T, m *memLog) { m.remove(7, 7) }, 7, "missing"},
		{"delete the first record", func(t *testing.T, m *memLog) { m.remove(1, 1) }, 1, "missing"},
		{"delete records 1..4", func(t *testing.T, m *memLog) { m.remove(1, 4) }, 1, "missing"},
		{"delete and renumber", func(t *testing.T, m *memLog) {
			m.remove(5, 5)
			for i := range m.events {
				if m.events[i].Seq > 5 {
					m.events[i].Seq--
				}
			}
		}, 5, ""},
		{"append a record sealed with another key", func(t *testing.T, m *memLog) {
			e := fullEvent()
			if err := attacker.Seal(&e, 20, m.at(t, 20).Hash); err != nil {
				t.Fatal(err)
			}
			m.events = append(m.events, e)
		}, 21, "altered"},
		{"insert into a gap with another key", func(t *testing.T, m *memLog) {
			prev := m.at(t, 4).Hash
			m.remove(5, 5)
			e := fullEvent()
			if err := attacker.Seal(&e, 4, prev); err != nil {
				t.Fatal(err)
			}
			m.events = append(m.events, e)
			m.sort()
		}, 5, ""},
		{"replay record 3 as record 5", func(t *testing.T, m *memLog) {
			e := *m.at(t, 3)
			e.Seq = 5
			*m.at(t, 5) = e
		}, 5, ""},
		{"swap records 5 and 6", func(t *testing.T, m *memLog) {
			a, b := m.at(t, 5), m.at(t, 6)
			*a, *b = *b, *a
			a.Seq, b.Seq = 5, 6
		}, 5, "prev_hash"},
		{"swap the first two records", func(t *testing.T, m *memLog) {
			a, b := m.at(t, 1), m.at(t, 2)
			*a, *b = *b, *a
			a.Seq, b.Seq = 1, 2
		}, 1, ""},
		{"rewrite the whole chain with another key", func(t *testing.T, m *memLog) {
			m.at(t, 9).Principal = "mallory"
			reseal(t, m, attacker, 1)
		}, 1, "altered"},
		{"alter and reseal the tail with another key", func(t *testing.T, m *memLog) {
			m.at(t, 9).Principal = "mallory"
			reseal(t, m, attacker, 9)
		}, 9, "altered"},
		{"a record numbered 0 before the first", func(t *testing.T, m *memLog) {
			e := fullEvent()
			if err := attacker.Seal(&e, 0, audit.GenesisHash); err != nil {
				t.Fatal(err)
			}
			e.Seq = 0
			m.events = append([]audit.Event{e}, m.events...)
		}, 0, "non-positive"},
		{"first record does not start at genesis", func(t *testing.T, m *memLog) {
			// Even the key holder cannot start the chain elsewhere.
			forgeRecord(m.at(t, 1), someHash)
			reseal(t, m, audittest.Chain(), 2)
		}, 1, "genesis"},
		{"checkpoint signed by another key", func(t *testing.T, m *memLog) {
			cp := m.at(t, 7)
			*cp = audit.Event{ID: cp.ID, Time: cp.Time, Type: audit.AuditCheckpoint}
			if err := foreignSigner.Seal(cp, 6, m.at(t, 6).Hash); err != nil {
				t.Fatal(err)
			}
			reseal(t, m, audittest.Chain(), 8)
		}, 7, "checkpoint"},
		{"checkpoint replayed from an earlier position", func(t *testing.T, m *memLog) {
			// Record 14 carries record 7's (validly signed) checkpoint.
			cp := m.at(t, 14)
			cp.Detail = m.at(t, 7).Detail
			forgeRecord(cp, m.at(t, 13).Hash)
			reseal(t, m, audittest.Chain(), 15)
		}, 14, "names seq 6"},
		{"checkpoint with unreadable detail", func(t *testing.T, m *memLog) {
			cp := m.at(t, 7)
			cp.Detail = `{"seq":6}`
			forgeRecord(cp, m.at(t, 6).Hash)
			reseal(t, m, audittest.Chain(), 8)
		}, 7, "unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := buildLog(t, audittest.Chain(), 20, 7)
			if rep := mustVerify(t, m, verifyOpts()); !rep.OK() {
				t.Fatalf("untampered log: %+v", rep)
			}
			tt.tamper(t, m)
			rep := mustVerify(t, m, verifyOpts())
			wantBroken(t, rep, tt.bad)
			if !strings.Contains(rep.Problem, tt.problem) {
				t.Errorf("Problem %q does not mention %q", rep.Problem, tt.problem)
			}
		})
	}
}

// TestVerifyPaging walks logs longer than one page (5000 records) and
// finds breaks on both sides of a page boundary.
func TestVerifyPaging(t *testing.T) {
	c := audittest.Chain()
	const n = 12_345
	base := buildLog(t, c, n, 1000)
	fresh := func() *memLog { return &memLog{events: slices.Clone(base.events)} }

	t.Run("intact", func(t *testing.T) {
		m := fresh()
		rep := mustVerify(t, m, verifyOpts())
		if !rep.OK() || rep.Records != n || rep.LastSeq != n || rep.Checkpoints != 12 {
			t.Errorf("report %+v", rep)
		}
		// Three pages: 5000, 5000, 2345; each continues after the last
		// sequence of the one before, oldest first.
		want := []int64{0, 5000, 10000}
		if len(m.queries) != len(want) {
			t.Fatalf("%d queries, want %d: %+v", len(m.queries), len(want), m.queries)
		}
		for i, q := range m.queries {
			if q.AfterSeq != want[i] || !q.Ascending || q.Limit != 5000 {
				t.Errorf("query %d = %+v, want AfterSeq %d ascending limit 5000", i, q, want[i])
			}
		}
	})
	t.Run("exact multiple of the page", func(t *testing.T) {
		m := &memLog{events: slices.Clone(base.events[:10_000])}
		rep := mustVerify(t, m, verifyOpts())
		if !rep.OK() || rep.Records != 10_000 {
			t.Errorf("report %+v", rep)
		}
		if len(m.queries) != 3 { // the third one comes back empty
			t.Errorf("%d queries, want 3", len(m.queries))
		}
	})
	tests := []struct {
		name   string
		tamper func(t *testing.T, m *memLog)
		bad    int64
	}{
		{"alter the last record of page 1", func(t *testing.T, m *memLog) { m.at(t, 5000).Principal = "x" }, 5000},
		{"alter the first record of page 2", func(t *testing.T, m *memLog) { m.at(t, 5001).Principal = "x" }, 5001},
		{"delete the first record of page 2", func(t *testing.T, m *memLog) { m.remove(5001, 5001) }, 5001},
		{"delete the last record of page 1", func(t *testing.T, m *memLog) { m.remove(5000, 5000) }, 5000},
		{"swap across the page boundary", func(t *testing.T, m *memLog) {
			a, b := m.at(t, 5000), m.at(t, 5001)
			*a, *b = *b, *a
			a.Seq, b.Seq = 5000, 5001
		}, 5000},
		{"alter the last record of the last page", func(t *testing.T, m *memLog) { m.at(t, n).Principal = "x" }, n},
		{"alter a checkpoint on page 3", func(t *testing.T, m *memLog) { m.at(t, 12_000).Detail = "{}" }, 12_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fresh()
			tt.tamper(t, m)
			wantBroken(t, mustVerify(t, m, verifyOpts()), tt.bad)
		})
	}
}

func TestVerifyProgress(t *testing.T) {
	if testing.Short() {
		t.Skip("seals 100,000 records")
	}
	m := buildLog(t, audittest.Chain(), audit.ProgressEvery+1, 0)
	var calls [][2]int64
	opts := verifyOpts()
	opts.Progress = func(records, seq int64) { calls = append(calls, [2]int64{records, seq}) }
	rep := mustVerify(t, m, opts)
	if !rep.OK() {
		t.Fatalf("report %+v", rep)
	}
	if len(calls) != 1 || calls[0] != [2]int64{audit.ProgressEvery, audit.ProgressEvery} {
		t.Errorf("Progress calls %v, want one at %d", calls, audit.ProgressEvery)
	}
}

func TestVerifyAnchors(t *testing.T) {
	c := audittest.Chain()
	at := t0.Add(time.Hour)
	tests := []struct {
		name    string
		log     func(t *testing.T) *memLog
		anchors func(t *testing.T, m *memLog) []audit.Checkpoint
		bad     int64 // 0: intact
		check   func(t *testing.T, rep audit.VerifyReport)
	}{
		{"matching anchor", func(t *testing.T) *memLog { return buildLog(t, c, 20, 0) },
			func(t *testing.T, m *memLog) []audit.Checkpoint {
				return []audit.Checkpoint{signedCheckpoint(t, c, 12, m.at(t, 12).Hash, at)}
			}, 0, func(t *testing.T, rep audit.VerifyReport) {
				if rep.Anchors != 1 {
					t.Errorf("Anchors = %d, want 1", rep.Anchors)
				}
			}},
		{"the same anchor twice", func(t *testing.T) *memLog { return buildLog(t, c, 20, 0) },
			func(t *testing.T, m *memLog) []audit.Checkpoint {
				a := signedCheckpoint(t, c, 12, m.at(t, 12).Hash, at)
				return []audit.Checkpoint{a, a}
			}, 0, nil},
		{"anchor hash differs from the stored record", func(t *testing.T) *memLog { return buildLog(t, c, 20, 0) },
			func(t *testing.T, _ *memLog) []audit.Checkpoint {
				return []audit.Checkpoint{signedCheckpoint(t, c, 12, someHash, at)}
			}, 12, nil},
		{"truncated below the anchor", func(t *testing.T) *memLog {
			m := buildLog(t, c, 20, 0)
			m.remove(16, 20)
			return m
		}, func(t *testing.T, _ *memLog) []audit.Checkpoint {
			full := buildLog(t, c, 20, 0)
			return []audit.Checkpoint{signedCheckpoint(t, c, 18, full.at(t, 18).Hash, at)}
		}, 16, nil},
		{"everything deleted", func(*testing.T) *memLog { return &memLog{} },
			func(t *testing.T, _ *memLog) []audit.Checkpoint {
				full := buildLog(t, c, 20, 0)
				return []audit.Checkpoint{signedCheckpoint(t, c, 3, full.at(t, 3).Hash, at)}
			}, 1, nil},
		{"pruned start covered by an anchor", func(t *testing.T) *memLog {
			m := buildLog(t, c, 20, 0)
			recordPrune(t, m, c, 4)
			m.remove(1, 4)
			return m
		}, func(t *testing.T, _ *memLog) []audit.Checkpoint {
			full := buildLog(t, c, 20, 0)
			return []audit.Checkpoint{signedCheckpoint(t, c, 4, full.at(t, 4).Hash, at)}
		}, 0, func(t *testing.T, rep audit.VerifyReport) {
			if rep.PrunedBefore != 5 || rep.FirstSeq != 5 {
				t.Errorf("PrunedBefore %d FirstSeq %d, want 5", rep.PrunedBefore, rep.FirstSeq)
			}
		}},
		{"deleted past the anchor", func(t *testing.T) *memLog {
			m := buildLog(t, c, 20, 0)
			m.remove(1, 5)
			return m
		}, func(t *testing.T, _ *memLog) []audit.Checkpoint {
			full := buildLog(t, c, 20, 0)
			return []audit.Checkpoint{signedCheckpoint(t, c, 4, full.at(t, 4).Hash, at)}
		}, 1, nil},
		{"removed at a checkpoint without a prune record", func(t *testing.T) *memLog {
			m := buildLog(t, c, 20, 7)
			m.remove(1, 6)
			return m
		}, func(*testing.T, *memLog) []audit.Checkpoint { return nil }, 1, nil},
		{"prune record names other records", func(t *testing.T) *memLog {
			m := buildLog(t, c, 20, 7)
			recordPrune(t, m, c, 5)
			m.remove(1, 6)
			return m
		}, func(*testing.T, *memLog) []audit.Checkpoint { return nil }, 1, nil},
		{"pruned start at a checkpoint record", func(t *testing.T) *memLog {
			m := buildLog(t, c, 20, 7)
			recordPrune(t, m, c, 6)
			m.remove(1, 6)
			return m
		}, func(*testing.T, *memLog) []audit.Checkpoint { return nil }, 0, func(t *testing.T, rep audit.VerifyReport) {
			if rep.PrunedBefore != 7 || rep.Checkpoints != 2 {
				t.Errorf("PrunedBefore %d Checkpoints %d, want 7 and 2", rep.PrunedBefore, rep.Checkpoints)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.log(t)
			rep := mustVerify(t, m, verifyOpts(tt.anchors(t, m)...))
			if tt.bad == 0 {
				if !rep.OK() {
					t.Errorf("report %+v, want intact", rep)
				}
			} else {
				wantBroken(t, rep, tt.bad)
			}
			if tt.check != nil {
				tt.check(t, rep)
			}
		})
	}
}

// TestVerifyOptionErrors: bad options and unreadable logs are errors, not
// reports about the chain.
func TestVerifyOptionErrors(t *testing.T) {
	c := audittest.Chain()
	m := buildLog(t, c, 5, 0)
	attacker := newChain(t, otherChainKey)
	good := signedCheckpoint(t, c, 3, m.at(t, 3).Hash, t0)
	badSig := good
	badSig.Seq = 2
	errRead := errors.New("disk read error")
	tests := []struct {
		name    string
		r       audit.Reader
		opts    audit.VerifyOptions
		wantErr error // nil: any error
	}{
		{"no chain", m, audit.VerifyOptions{PublicKey: c.PublicKey()}, nil},
		{"no public key", m, audit.VerifyOptions{Chain: c}, nil},
		{"short public key", m, audit.VerifyOptions{Chain: c, PublicKey: c.PublicKey()[:31]}, nil},
		{"anchor from another key", m, verifyOpts(signedCheckpoint(t, attacker, 3, m.at(t, 3).Hash, t0)), audit.ErrForeignKey},
		{"anchor with a bad signature", m, verifyOpts(badSig), audit.ErrBadCheckpoint},
		{"anchors disagree", m, verifyOpts(good, signedCheckpoint(t, c, 3, someHash, t0)), nil},
		{"read error", &memLog{err: errRead}, verifyOpts(), errRead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := audit.Verify(t.Context(), tt.r, tt.opts)
			if err == nil {
				t.Fatalf("Verify = %+v, nil error", rep)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify error %v, want %v", err, tt.wantErr)
			}
		})
	}
}
