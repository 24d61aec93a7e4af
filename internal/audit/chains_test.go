package audit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
)

// Tests of the audit log with one hash chain per writer (replica): every
// record links to the previous record of its own chain while sequence
// numbers stay global. They attack the multi-chain verifier the way
// someone with write access to the database (but not the keys) would.

// layoutChains maps the letters of a log layout to chain ids: a, b and c
// are replicas, d is the default chain "".
var layoutChains = map[byte]string{'a': "replica-a", 'b': "replica-b", 'c': "replica-c", 'd': ""}

// withID returns c sealing into chain id.
func withID(t testing.TB, c *audit.Chain, id string) *audit.Chain {
	t.Helper()
	cc, err := c.WithID(id)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// headOf returns the head of chain id just before global sequence before:
// its newest sealed record below it, or the genesis head.
func headOf(m *memLog, id string, before int64) audit.Head {
	h := audit.Head{Hash: audit.GenesisHash}
	for i := range m.events {
		e := &m.events[i]
		if e.Seq < before && e.Chain == id && e.Hash != "" && e.Seq > h.Seq {
			h = audit.Head{Seq: e.Seq, Hash: e.Hash}
		}
	}
	return h
}

// lastSeq returns the log's newest sequence number (0 when empty).
func lastSeq(m *memLog) int64 {
	var s int64
	for i := range m.events {
		s = max(s, m.events[i].Seq)
	}
	return s
}

// buildChains seals one record per letter of layout, at global sequence
// i+1, into the chain the letter names (layoutChains) on top of that
// chain's head, as the replicas' writers do; an upper-case letter is a
// signed audit.checkpoint record of that chain.
func buildChains(t testing.TB, c *audit.Chain, layout string) *memLog {
	t.Helper()
	m := &memLog{events: make([]audit.Event, 0, len(layout))}
	heads := map[string]audit.Head{}
	for i := range len(layout) {
		seq := int64(i + 1)
		letter := layout[i]
		id, ok := layoutChains[letter|0x20]
		if !ok {
			t.Fatalf("layout %q: no chain for %q", layout, letter)
		}
		e := audit.Event{
			ID: fmt.Sprintf("evt_%07d", seq), Time: t0.Add(time.Duration(seq) * time.Second), Type: audit.ToolCallStart,
			Principal: fmt.Sprintf("user-%d", seq%5), Roles: []string{"developer"}, RequestID: fmt.Sprintf("req-%d", seq),
			Tool: "read_file", Args: json.RawMessage(fmt.Sprintf(`{"path":"f%d.txt"}`, seq)),
			Decision: audit.DecisionAllow, Status: audit.StatusStarted,
		}
		if letter >= 'A' && letter <= 'Z' {
			e = audit.Event{ID: e.ID, Time: e.Time, Type: audit.AuditCheckpoint, Principal: audit.SystemPrincipal,
				Status: audit.StatusOK}
		}
		h, ok := heads[id]
		if !ok {
			h = audit.Head{Hash: audit.GenesisHash}
		}
		if err := withID(t, c, id).SealAt(&e, seq, h); err != nil {
			t.Fatal(err)
		}
		heads[id] = audit.Head{Seq: seq, Hash: e.Hash}
		m.events = append(m.events, e)
	}
	return m
}

// appendRecord seals e at the end of the log into chain id, the way a
// replica's writer appends (next global sequence, its chain's head).
func appendRecord(t testing.TB, m *memLog, c *audit.Chain, id string, e audit.Event) audit.Event {
	t.Helper()
	seq := lastSeq(m) + 1
	if e.ID == "" {
		e.ID = fmt.Sprintf("evt_%07d", seq)
	}
	if e.Time.IsZero() {
		e.Time = t0.Add(time.Duration(seq) * time.Second)
	}
	if err := withID(t, c, id).SealAt(&e, seq, headOf(m, id, seq)); err != nil {
		t.Fatal(err)
	}
	m.events = append(m.events, e)
	return e
}

// appendPrune appends the audit.prune record retention writes (before it
// deletes) for pruning through seq, into chain id.
func appendPrune(t testing.TB, m *memLog, id string, through int64) {
	t.Helper()
	appendRecord(t, m, audittest.Chain(), id, audit.Event{Type: audit.AuditPrune, Principal: audit.SystemPrincipal,
		Status: audit.StatusOK, Detail: fmt.Sprintf(`{"through_seq":%d,"cutoff":"2026-04-01T00:00:00Z"}`, through)})
}

// resealChains seals every record from seq from on again with c, each
// onto the head of its own chain, as someone holding c would; with
// chains, only the records of those chains. Checkpoint records are signed
// again with c's signer.
func resealChains(t testing.TB, m *memLog, c *audit.Chain, from int64, chains ...string) {
	t.Helper()
	m.sort()
	for i := range m.events {
		e := &m.events[i]
		if e.Seq < from || len(chains) > 0 && !slices.Contains(chains, e.Chain) {
			continue
		}
		if err := withID(t, c, e.Chain).SealAt(e, e.Seq, headOf(m, e.Chain, e.Seq)); err != nil {
			t.Fatal(err)
		}
	}
}

// chainCheckpoint returns a checkpoint of chain id naming (seq, hash),
// signed by c's key the way the gateway signs them: by sealing an
// audit.checkpoint record of that chain over that head.
func chainCheckpoint(t testing.TB, c *audit.Chain, id string, seq int64, hash string) audit.Checkpoint {
	t.Helper()
	e := audit.Event{ID: "evt_cp", Type: audit.AuditCheckpoint, Time: t0.Add(time.Hour)}
	if err := withID(t, c, id).SealAt(&e, seq+1, audit.Head{Seq: seq, Hash: hash}); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint([]byte(e.Detail))
	if err != nil {
		t.Fatalf("ParseCheckpoint(%s): %v", e.Detail, err)
	}
	if cp.Chain != id {
		t.Fatalf("checkpoint sealed into chain %q names chain %q", id, cp.Chain)
	}
	return cp
}

// cpJSON returns cp as a checkpoint record's detail.
func cpJSON(t testing.TB, cp audit.Checkpoint) string {
	t.Helper()
	b, err := json.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantProblem checks that Verify found the log broken at exactly seq with
// a Problem containing problem.
func wantProblem(t *testing.T, rep audit.VerifyReport, seq int64, problem string) {
	t.Helper()
	wantBroken(t, rep, seq)
	if !strings.Contains(rep.Problem, problem) {
		t.Errorf("Problem %q does not mention %q", rep.Problem, problem)
	}
	if rep.Chains != nil {
		t.Errorf("a broken log reports chains %+v", rep.Chains)
	}
}

// tamperLayout is the log of the tamper table, 20 records on three chains:
//
//	seq    1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20
//	chain  a b a d b b A a b d  a  B  a  b  a  d  b  a  b  d
//
// replica-a: 1 3 7 8 11 13 15 18 (7 is a checkpoint naming 3),
// replica-b: 2 5 6 9 12 14 17 19 (12 is a checkpoint naming 9),
// "":        4 10 16 20.
const tamperLayout = "abadbbAabdaBabadbabd"

// TestMultiChainIntact: an interleaved log of three chains verifies, and
// the report describes every chain in the order it first appears.
func TestMultiChainIntact(t *testing.T) {
	c := audittest.Chain()
	m := buildChains(t, c, tamperLayout)
	rep := mustVerify(t, m, verifyOpts())
	if !rep.OK() || rep.Records != 20 || rep.FirstSeq != 1 || rep.LastSeq != 20 || rep.Checkpoints != 2 ||
		rep.HeadHash != m.at(t, 20).Hash || rep.PrunedBefore != 0 || rep.BadSeq != 0 {
		t.Errorf("report %+v", rep)
	}
	want := []audit.ChainReport{
		{Chain: "replica-a", Records: 8, FirstSeq: 1, LastSeq: 18, HeadHash: m.at(t, 18).Hash},
		{Chain: "replica-b", Records: 8, FirstSeq: 2, LastSeq: 19, HeadHash: m.at(t, 19).Hash},
		{Chain: "", Records: 4, FirstSeq: 4, LastSeq: 20, HeadHash: m.at(t, 20).Hash},
	}
	if diff := cmp.Diff(want, rep.Chains); diff != "" {
		t.Errorf("chains (-want +got):\n%s", diff)
	}
	// Each record links to its own chain's previous record, not to the
	// record before it in the log.
	if m.at(t, 3).PrevHash != m.at(t, 1).Hash || m.at(t, 4).PrevHash != audit.GenesisHash ||
		m.at(t, 9).PrevHash != m.at(t, 6).Hash {
		t.Error("the layout is not sealed per chain")
	}
	// The checkpoints name their own chain's previous record.
	for _, x := range []struct {
		seq, names int64
		chain      string
	}{{7, 3, "replica-a"}, {12, 9, "replica-b"}} {
		cp, err := audit.ParseCheckpoint([]byte(m.at(t, x.seq).Detail))
		if err != nil {
			t.Fatal(err)
		}
		if cp.Chain != x.chain || cp.Seq != x.names || cp.Hash != m.at(t, x.names).Hash {
			t.Errorf("checkpoint record %d holds %+v, want chain %q seq %d", x.seq, cp, x.chain, x.names)
		}
	}

	t.Run("order of first appearance", func(t *testing.T) {
		m := buildChains(t, c, "dbcabbCdaAb")
		rep := mustVerify(t, m, verifyOpts())
		var got []string
		for _, ch := range rep.Chains {
			got = append(got, ch.Chain)
		}
		if !rep.OK() || !slices.Equal(got, []string{"", "replica-b", "replica-c", "replica-a"}) || rep.Checkpoints != 2 {
			t.Errorf("report %+v, chains %q", rep, got)
		}
	})
	t.Run("a log of the default chain only, then replicas", func(t *testing.T) {
		// An upgrade: the single writer's log (default chain, v1 rows)
		// continues with named chains.
		m := buildLog(t, c, 6, 3)
		appendRecord(t, m, c, "replica-a", audit.Event{Type: audit.ServerStart})
		appendRecord(t, m, c, "replica-b", audit.Event{Type: audit.ServerStart})
		appendRecord(t, m, c, "", audit.Event{Type: audit.ToolCallStart})
		appendRecord(t, m, c, "replica-a", audit.Event{Type: audit.AuditCheckpoint})
		rep := mustVerify(t, m, verifyOpts())
		want := []audit.ChainReport{
			{Chain: "", Records: 7, FirstSeq: 1, LastSeq: 9, HeadHash: m.at(t, 9).Hash},
			{Chain: "replica-a", Records: 2, FirstSeq: 7, LastSeq: 10, HeadHash: m.at(t, 10).Hash},
			{Chain: "replica-b", Records: 1, FirstSeq: 8, LastSeq: 8, HeadHash: m.at(t, 8).Hash},
		}
		if !rep.OK() || rep.Records != 10 || rep.Checkpoints != 3 {
			t.Errorf("report %+v", rep)
		}
		if diff := cmp.Diff(want, rep.Chains); diff != "" {
			t.Errorf("chains (-want +got):\n%s", diff)
		}
	})
	t.Run("anchors on every chain", func(t *testing.T) {
		m := buildChains(t, c, tamperLayout)
		anchors := []audit.Checkpoint{
			chainCheckpoint(t, c, "replica-a", 18, m.at(t, 18).Hash),
			chainCheckpoint(t, c, "replica-b", 9, m.at(t, 9).Hash),
			chainCheckpoint(t, c, "", 20, m.at(t, 20).Hash),
		}
		rep := mustVerify(t, m, verifyOpts(anchors...))
		if !rep.OK() || rep.Anchors != 3 {
			t.Errorf("report %+v, want intact with 3 anchors", rep)
		}
	})
	t.Run("a chain restarted at genesis after its records were pruned", func(t *testing.T) {
		// replica-b's only records are pruned; its writer finds no head
		// and starts the chain again at genesis.
		m := buildChains(t, c, "abaAaa") // 4 names 3
		appendPrune(t, m, "replica-a", 3)
		m.remove(1, 3)
		appendRecord(t, m, c, "replica-b", audit.Event{Type: audit.ServerStart})
		if m.at(t, 8).PrevHash != audit.GenesisHash {
			t.Fatal("replica-b did not restart at genesis")
		}
		rep := mustVerify(t, m, verifyOpts())
		if !rep.OK() || rep.PrunedBefore != 4 {
			t.Fatalf("report %+v", rep)
		}
		want := []audit.ChainReport{
			{Chain: "replica-a", Records: 4, FirstSeq: 4, LastSeq: 7, HeadHash: m.at(t, 7).Hash, Continued: true},
			{Chain: "replica-b", Records: 1, FirstSeq: 8, LastSeq: 8, HeadHash: m.at(t, 8).Hash},
		}
		if diff := cmp.Diff(want, rep.Chains); diff != "" {
			t.Errorf("chains (-want +got):\n%s", diff)
		}
	})
}

// TestMultiChainTamper: each attack on the tamperLayout log is reported at
// exactly the first record it breaks.
func TestMultiChainTamper(t *testing.T) {
	c := audittest.Chain()
	attacker := newChain(t, otherChainKey)
	// swap exchanges the contents of two records but keeps their places
	// (sequence numbers), as an UPDATE of every other column would.
	swap := func(t *testing.T, m *memLog, x, y int64) {
		a, b := m.at(t, x), m.at(t, y)
		*a, *b = *b, *a
		a.Seq, b.Seq = x, y
	}
	// forgeCheckpoint makes record seq (a checkpoint record) hold cp,
	// sealed with the real chain key over its own chain's head, and seals
	// the later records of its chain again: only the checkpoint's content
	// is wrong.
	forgeCheckpoint := func(t *testing.T, m *memLog, seq int64, cp audit.Checkpoint) {
		e := m.at(t, seq)
		e.Detail = cpJSON(t, cp)
		forgeRecord(e, headOf(m, e.Chain, seq).Hash)
		resealChains(t, m, c, seq+1, e.Chain)
	}
	tests := []struct {
		name    string
		tamper  func(t *testing.T, m *memLog)
		anchors func(t *testing.T, m *memLog) []audit.Checkpoint // exported before the tamper
		bad     int64
		problem string
	}{
		{"alter a record of chain b", func(t *testing.T, m *memLog) { m.at(t, 9).Principal = "mallory" },
			nil, 9, "altered"},
		{"alter the last record of chain b", func(t *testing.T, m *memLog) { m.at(t, 19).Decision = audit.DecisionDeny },
			nil, 19, "altered"},
		{"alter a checkpoint record of chain b", func(t *testing.T, m *memLog) {
			e := m.at(t, 12)
			e.Detail = strings.Replace(e.Detail, `"seq":9`, `"seq":11`, 1)
		}, nil, 12, "altered"},
		{"move a record to another chain", func(t *testing.T, m *memLog) { m.at(t, 9).Chain = "replica-a" },
			nil, 9, "prev_hash"},
		{"move a chain's first record to the default chain", func(t *testing.T, m *memLog) { m.at(t, 2).Chain = "" },
			nil, 2, "altered"},
		{"move the default chain's first record to a new chain", func(t *testing.T, m *memLog) {
			m.at(t, 4).Chain = "replica-c"
		}, nil, 4, "altered"},
		{"rename a whole chain", func(t *testing.T, m *memLog) {
			for i := range m.events {
				if m.events[i].Chain == "replica-b" {
					m.events[i].Chain = "replica-c"
				}
			}
		}, nil, 2, "altered"},
		{"merge two chains' names", func(t *testing.T, m *memLog) {
			for i := range m.events {
				if m.events[i].Chain == "replica-b" {
					m.events[i].Chain = "replica-a"
				}
			}
		}, nil, 2, "prev_hash"},
		{"move to another chain and reseal with another key", func(t *testing.T, m *memLog) {
			e := m.at(t, 9)
			if err := withID(t, attacker, "replica-a").SealAt(e, 9, headOf(m, "replica-a", 9)); err != nil {
				t.Fatal(err)
			}
		}, nil, 9, "altered"},
		{"delete a middle record of chain a", func(t *testing.T, m *memLog) { m.remove(11, 11) }, nil, 11, "missing"},
		{"delete the last record of chain a", func(t *testing.T, m *memLog) { m.remove(18, 18) }, nil, 18, "missing"},
		{"delete every record of chain b", func(t *testing.T, m *memLog) {
			m.events = slices.DeleteFunc(m.events, func(e audit.Event) bool { return e.Chain == "replica-b" })
		}, nil, 2, "missing"},
		{"delete chain a's last record and renumber the rest", func(t *testing.T, m *memLog) {
			m.remove(18, 18)
			m.at(t, 19).Seq, m.at(t, 20).Seq = 18, 19
		}, nil, 18, "altered"},
		{"delete chain a's last record, renumber and reseal with another key", func(t *testing.T, m *memLog) {
			m.remove(18, 18)
			m.at(t, 19).Seq, m.at(t, 20).Seq = 18, 19
			resealChains(t, m, attacker, 18)
		}, nil, 18, "altered"},
		{"delete a record of chain a, renumber, reseal chain a with another key", func(t *testing.T, m *memLog) {
			m.remove(11, 11)
			for i := range m.events {
				if m.events[i].Seq > 11 {
					m.events[i].Seq--
				}
			}
			resealChains(t, m, attacker, 11, "replica-a")
		}, nil, 11, "altered"},
		{"swap adjacent records of different chains", func(t *testing.T, m *memLog) { swap(t, m, 8, 9) },
			nil, 8, "altered"},
		{"swap a record with another chain's first record", func(t *testing.T, m *memLog) { swap(t, m, 3, 4) },
			nil, 3, "altered"},
		{"swap two records of the same chain", func(t *testing.T, m *memLog) { swap(t, m, 13, 15) },
			nil, 13, "prev_hash"},
		{"swap the two chains' checkpoint records", func(t *testing.T, m *memLog) { swap(t, m, 7, 12) },
			nil, 7, "prev_hash"},
		{"a chain's first record not at genesis", func(t *testing.T, m *memLog) {
			// Even the key holder cannot start a chain elsewhere.
			forgeRecord(m.at(t, 2), someHash)
			resealChains(t, m, c, 3, "replica-b")
		}, nil, 2, "does not start"},
		{"a chain's first record linked to another chain's head", func(t *testing.T, m *memLog) {
			forgeRecord(m.at(t, 2), m.at(t, 1).Hash)
			resealChains(t, m, c, 3, "replica-b")
		}, nil, 2, `chain "replica-b" does not start`},
		{"the default chain's first record not at genesis", func(t *testing.T, m *memLog) {
			forgeRecord(m.at(t, 4), m.at(t, 3).Hash)
			resealChains(t, m, c, 5, "")
		}, nil, 4, `chain "" does not start`},
		{"a record linked to another chain's head", func(t *testing.T, m *memLog) {
			// What a writer that read the wrong head would write.
			forgeRecord(m.at(t, 9), m.at(t, 8).Hash)
			resealChains(t, m, c, 10, "replica-b")
		}, nil, 9, "previous record of chain \"replica-b\""},
		{"checkpoint of chain a names chain b's head", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 7, chainCheckpoint(t, c, "replica-b", 6, m.at(t, 6).Hash))
		}, nil, 7, `names seq 6 of chain "replica-b"`},
		{"checkpoint of chain a's head signed for chain b", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 7, chainCheckpoint(t, c, "replica-b", 3, m.at(t, 3).Hash))
		}, nil, 7, `names seq 3 of chain "replica-b"`},
		{"checkpoint of chain a's head signed for the default chain", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 7, chainCheckpoint(t, c, "", 3, m.at(t, 3).Hash))
		}, nil, 7, `names seq 3 of chain ""`},
		{"checkpoint names the global previous seq with its chain's hash", func(t *testing.T, m *memLog) {
			// What a writer would seal that passed the log's previous seq
			// as the chain head's: valid seal, valid signature.
			e := m.at(t, 7)
			if err := withID(t, c, "replica-a").SealAt(e, 7, audit.Head{Seq: 6, Hash: m.at(t, 3).Hash}); err != nil {
				t.Fatal(err)
			}
			resealChains(t, m, c, 8, "replica-a")
		}, nil, 7, `names seq 6 of chain "replica-a"`},
		{"checkpoint names the global previous record", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 12, chainCheckpoint(t, c, "replica-b", 11, m.at(t, 11).Hash))
		}, nil, 12, "names seq 11"},
		{"checkpoint names an older record of its own chain", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 12, chainCheckpoint(t, c, "replica-b", 6, m.at(t, 6).Hash))
		}, nil, 12, "names seq 6"},
		{"checkpoint with the right seq but another record's hash", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 12, chainCheckpoint(t, c, "replica-b", 9, m.at(t, 8).Hash))
		}, nil, 12, "names seq 9"},
		{"anchor names a record of another chain", nil, func(t *testing.T, m *memLog) []audit.Checkpoint {
			return []audit.Checkpoint{chainCheckpoint(t, c, "replica-a", 9, m.at(t, 9).Hash)}
		}, 9, "exported checkpoint"},
		{"default-chain anchor names a named chain's record", nil, func(t *testing.T, m *memLog) []audit.Checkpoint {
			return []audit.Checkpoint{chainCheckpoint(t, c, "", 9, m.at(t, 9).Hash)}
		}, 9, "exported checkpoint"},
		{"named anchor names a default-chain record", nil, func(t *testing.T, m *memLog) []audit.Checkpoint {
			return []audit.Checkpoint{chainCheckpoint(t, c, "replica-b", 10, m.at(t, 10).Hash)}
		}, 10, "exported checkpoint"},
		{"truncated after an anchor of chain b", func(t *testing.T, m *memLog) { m.remove(17, 20) },
			func(t *testing.T, m *memLog) []audit.Checkpoint {
				return []audit.Checkpoint{chainCheckpoint(t, c, "replica-b", 17, m.at(t, 17).Hash)}
			}, 17, "truncated"},
		{"truncated after the newest of anchors on three chains", func(t *testing.T, m *memLog) { m.remove(17, 20) },
			func(t *testing.T, m *memLog) []audit.Checkpoint {
				return []audit.Checkpoint{
					chainCheckpoint(t, c, "", 4, m.at(t, 4).Hash),
					chainCheckpoint(t, c, "replica-b", 17, m.at(t, 17).Hash),
					chainCheckpoint(t, c, "replica-a", 15, m.at(t, 15).Hash),
				}
			}, 17, "names seq 17"},
		{"chain b's tail cut, the rest renumbered and resealed, after an anchor", func(t *testing.T, m *memLog) {
			// Chain b loses 17 and 19; the others are renumbered and
			// resealed by someone with another key.
			m.remove(19, 19)
			m.remove(17, 17)
			m.at(t, 18).Seq, m.at(t, 20).Seq = 17, 18
			resealChains(t, m, attacker, 17)
		}, func(t *testing.T, m *memLog) []audit.Checkpoint {
			return []audit.Checkpoint{chainCheckpoint(t, c, "replica-b", 19, m.at(t, 19).Hash)}
		}, 17, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := buildChains(t, c, tamperLayout)
			var anchors []audit.Checkpoint
			if tt.anchors != nil {
				anchors = tt.anchors(t, m)
			}
			// The untampered log verifies, with the anchors exported from it
			// (or without them, when they are the attack).
			intact := anchors
			if tt.tamper == nil {
				intact = nil
			}
			if rep := mustVerify(t, m, verifyOpts(intact...)); !rep.OK() {
				t.Fatalf("untampered log: %+v", rep)
			}
			if tt.tamper != nil {
				tt.tamper(t, m)
			}
			wantProblem(t, mustVerify(t, m, verifyOpts(anchors...)), tt.bad, tt.problem)
		})
	}
}

// TestMultiChainAnchorOptions: two exported checkpoints that name the same
// seq under different chains cannot both be right.
func TestMultiChainAnchorOptions(t *testing.T) {
	c := audittest.Chain()
	m := buildChains(t, c, tamperLayout)
	a := chainCheckpoint(t, c, "replica-b", 9, m.at(t, 9).Hash)
	b := chainCheckpoint(t, c, "replica-a", 9, m.at(t, 9).Hash)
	if rep, err := audit.Verify(t.Context(), m, verifyOpts(a, b)); err == nil {
		t.Errorf("Verify with anchors disagreeing about the chain of seq 9 = %+v, nil error", rep)
	}
	// An anchor whose chain was changed after signing is refused.
	forged := a
	forged.Chain = "replica-a"
	if _, err := audit.Verify(t.Context(), m, verifyOpts(forged)); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("Verify with a re-labelled anchor: error %v, want ErrBadCheckpoint", err)
	}
	if rep := mustVerify(t, m, verifyOpts(a, a)); !rep.OK() {
		t.Errorf("the same anchor twice: %+v", rep)
	}
}

// TestMultiChainPaging: per-chain state carries across pages (5000
// records each) and breaks on both sides of a page boundary are found.
func TestMultiChainPaging(t *testing.T) {
	c := audittest.Chain()
	const n = 11_003
	// A fixed pseudo-random interleaving of three chains, with a
	// checkpoint every 500th record of replica-a.
	var b strings.Builder
	x, perA := uint32(1), 0
	for range n {
		x = x*1664525 + 1013904223
		l := "abd"[x>>16%3]
		if l == 'a' {
			if perA++; perA%500 == 0 {
				l = 'A'
			}
		}
		b.WriteByte(l)
	}
	layout := b.String()
	base := buildChains(t, c, layout)
	fresh := func() *memLog { return &memLog{events: slices.Clone(base.events)} }
	// nextOf returns the first seq >= from whose chain is (or is not) id.
	nextOf := func(from int64, id string, same bool) int64 {
		for s := from; s <= n; s++ {
			if (base.events[s-1].Chain == id) == same {
				return s
			}
		}
		t.Fatalf("no record from %d", from)
		return 0
	}

	t.Run("intact", func(t *testing.T) {
		rep := mustVerify(t, fresh(), verifyOpts())
		if !rep.OK() || rep.Records != n || rep.Checkpoints != strings.Count(layout, "A") || len(rep.Chains) != 3 {
			t.Fatalf("report %+v", rep)
		}
		lower := strings.ToLower(layout)
		want := map[string]int64{"replica-a": int64(strings.Count(lower, "a")),
			"replica-b": int64(strings.Count(lower, "b")), "": int64(strings.Count(lower, "d"))}
		for _, ch := range rep.Chains {
			if ch.Records != want[ch.Chain] || ch.LastSeq != headOf(base, ch.Chain, n+1).Seq {
				t.Errorf("chain %+v, want %d records", ch, want[ch.Chain])
			}
		}
	})
	// The first record of page 2 whose chain differs from record 5000's.
	other := nextOf(5001, base.events[4999].Chain, false)
	tests := []struct {
		name   string
		tamper func(t *testing.T, m *memLog)
		bad    int64
	}{
		{"alter the first record of page 2", func(t *testing.T, m *memLog) { m.at(t, 5001).Principal = "x" }, 5001},
		{"delete the last record of page 1", func(t *testing.T, m *memLog) { m.remove(5000, 5000) }, 5000},
		{"swap across the page boundary", func(t *testing.T, m *memLog) {
			a, b := m.at(t, 5000), m.at(t, other)
			*a, *b = *b, *a
			a.Seq, b.Seq = 5000, other
		}, 5000},
		{"move a page 2 record to the chain of page 1's last", func(t *testing.T, m *memLog) {
			m.at(t, other).Chain = base.events[4999].Chain
		}, other},
		{"a record on page 3 linked to its chain's head on page 1", func(t *testing.T, m *memLog) {
			// Drop the chain's records on page 2 from its links: the
			// page-3 record links to the last one on page 1.
			s := nextOf(10_001, "replica-b", true)
			forgeRecord(m.at(t, s), headOf(m, "replica-b", 5001).Hash)
		}, nextOf(10_001, "replica-b", true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fresh()
			tt.tamper(t, m)
			wantBroken(t, mustVerify(t, m, verifyOpts()), tt.bad)
		})
	}
}

// retentionLayout is the log of the retention tests:
//
//	seq    1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
//	chain  a b a b b A b a b b  A  b  a  b  d  b
//
// replica-a: 1 3 6 8 11 13 (6 is a checkpoint naming 3, 11 one naming 8),
// replica-b: 2 4 5 7 9 10 12 14 16, "": 15.
const retentionLayout = "ababbAbabbAbabdb"

// TestMultiChainRetention: retention removes the start of the log through
// the record a checkpoint of one chain names; the other chains continue
// from records that are gone. Removing anything else, or without the
// audit.prune record, is reported at seq 1.
func TestMultiChainRetention(t *testing.T) {
	c := audittest.Chain()
	pruned := func(t *testing.T, prune, through int64) *memLog {
		m := buildChains(t, c, retentionLayout)
		if prune > 0 {
			appendPrune(t, m, "replica-b", prune) // seq 17
		}
		m.remove(1, through)
		return m
	}

	t.Run("pruned at chain a's checkpoint", func(t *testing.T) {
		m := pruned(t, 8, 8)
		rep := mustVerify(t, m, verifyOpts())
		if !rep.OK() || rep.PrunedBefore != 9 || rep.FirstSeq != 9 || rep.LastSeq != 17 || rep.Records != 9 ||
			rep.Checkpoints != 1 {
			t.Fatalf("report %+v", rep)
		}
		want := []audit.ChainReport{
			{Chain: "replica-b", Records: 6, FirstSeq: 9, LastSeq: 17, HeadHash: m.at(t, 17).Hash, Continued: true},
			{Chain: "replica-a", Records: 2, FirstSeq: 11, LastSeq: 13, HeadHash: m.at(t, 13).Hash, Continued: true},
			{Chain: "", Records: 1, FirstSeq: 15, LastSeq: 15, HeadHash: m.at(t, 15).Hash},
		}
		if diff := cmp.Diff(want, rep.Chains); diff != "" {
			t.Errorf("chains (-want +got):\n%s", diff)
		}
	})
	t.Run("pruned at the older checkpoint", func(t *testing.T) {
		rep := mustVerify(t, pruned(t, 3, 3), verifyOpts())
		if !rep.OK() || rep.PrunedBefore != 4 || rep.Checkpoints != 2 || len(rep.Chains) != 3 ||
			!rep.Chains[0].Continued || rep.Chains[0].Chain != "replica-b" || !rep.Chains[1].Continued {
			t.Errorf("report %+v", rep)
		}
	})
	t.Run("pruned twice", func(t *testing.T) {
		m := buildChains(t, c, retentionLayout)
		appendPrune(t, m, "replica-a", 3)
		m.remove(1, 3)
		appendPrune(t, m, "replica-b", 8)
		m.remove(1, 8)
		if rep := mustVerify(t, m, verifyOpts()); !rep.OK() || rep.PrunedBefore != 9 {
			t.Errorf("report %+v", rep)
		}
	})
	t.Run("pruned start covered by an anchor of chain b", func(t *testing.T) {
		full := buildChains(t, c, retentionLayout)
		anchor := chainCheckpoint(t, c, "replica-b", 10, full.at(t, 10).Hash)
		rep := mustVerify(t, pruned(t, 10, 10), verifyOpts(anchor))
		if !rep.OK() || rep.PrunedBefore != 11 {
			t.Errorf("report %+v", rep)
		}
	})

	tests := []struct {
		name    string
		log     func(t *testing.T) *memLog
		anchors func(t *testing.T) []audit.Checkpoint
		bad     int64
		problem string
	}{
		{"the checkpoint record that covered the start deleted too", func(t *testing.T) *memLog {
			m := pruned(t, 8, 8)
			m.remove(11, 11)
			return m
		}, nil, 1, "no signed checkpoint covers"},
		{"deleted through the checkpoint and the records before it", func(t *testing.T) *memLog {
			return pruned(t, 11, 11)
		}, nil, 1, "no signed checkpoint covers"},
		{"deleted through the checkpoint record's global predecessor", func(t *testing.T) *memLog {
			// 10 is the record before checkpoint 11 in the log, but the
			// checkpoint names 8, chain a's previous record.
			return pruned(t, 10, 10)
		}, nil, 1, "records 1..10 are missing"},
		{"deleted one record less than the checkpoint covers", func(t *testing.T) *memLog {
			return pruned(t, 7, 7)
		}, nil, 1, "records 1..7 are missing"},
		{"deleted at a checkpoint without an audit.prune record", func(t *testing.T) *memLog {
			return pruned(t, 0, 8)
		}, nil, 1, "audit.prune"},
		{"audit.prune record names other records", func(t *testing.T) *memLog {
			return pruned(t, 7, 8)
		}, nil, 1, "audit.prune"},
		{"audit.prune record names more records", func(t *testing.T) *memLog {
			return pruned(t, 9, 8)
		}, nil, 1, "audit.prune"},
		{"anchor names the pruned record under another chain", func(t *testing.T) *memLog {
			return pruned(t, 10, 10)
		}, func(t *testing.T) []audit.Checkpoint {
			full := buildChains(t, c, retentionLayout)
			return []audit.Checkpoint{chainCheckpoint(t, c, "replica-a", 10, full.at(t, 10).Hash)}
		}, 1, "records 1..10 are missing"},
		{"anchor names the pruned record with another hash", func(t *testing.T) *memLog {
			return pruned(t, 10, 10)
		}, func(t *testing.T) []audit.Checkpoint {
			return []audit.Checkpoint{chainCheckpoint(t, c, "replica-b", 10, someHash)}
		}, 1, "records 1..10 are missing"},
		{"anchor of a chain with no record left", func(t *testing.T) *memLog {
			// The anchor names replica-a's 7, the last record of its
			// chain: no remaining record links to it.
			m := buildChains(t, c, "abababab")
			appendPrune(t, m, "replica-b", 7)
			m.remove(1, 7)
			return m
		}, func(t *testing.T) []audit.Checkpoint {
			full := buildChains(t, c, "abababab")
			return []audit.Checkpoint{chainCheckpoint(t, c, "replica-a", 7, full.at(t, 7).Hash)}
		}, 1, "records 1..7 are missing"},
		{"a continued chain's first checkpoint names a record after the pruned start", func(t *testing.T) *memLog {
			// 1 a, 2 b, 3 B (names 2), 4 A (names 1), 5 a, 6 b, pruned
			// through 2 (covered by 3). Checkpoint 4 is forged (with the
			// keys) to name 3, a record that is still there and not
			// replica-a's.
			m := buildChains(t, c, "abBAab")
			appendPrune(t, m, "replica-b", 2)
			m.remove(1, 2)
			if rep := mustVerify(t, m, verifyOpts()); !rep.OK() || rep.PrunedBefore != 3 {
				t.Fatalf("before the forgery: %+v", rep)
			}
			e := m.at(t, 4)
			e.Detail = cpJSON(t, chainCheckpoint(t, c, "replica-a", 3, e.PrevHash))
			forgeRecord(e, e.PrevHash)
			resealChains(t, m, c, 5, "replica-a")
			return m
		}, nil, 4, `names seq 3 of chain "replica-a"`},
		{"altered after the covering checkpoint record", func(t *testing.T) *memLog {
			m := pruned(t, 8, 8)
			m.at(t, 13).Principal = "mallory"
			return m
		}, nil, 13, "altered"},
		{"the default chain's first record moved to a new chain", func(t *testing.T) *memLog {
			m := pruned(t, 8, 8)
			m.at(t, 15).Chain = "replica-c"
			return m
		}, nil, 15, "altered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.log(t)
			var anchors []audit.Checkpoint
			if tt.anchors != nil {
				anchors = tt.anchors(t)
			}
			wantProblem(t, mustVerify(t, m, verifyOpts(anchors...)), tt.bad, tt.problem)
		})
	}

	t.Run("altered between the pruned start and the covering checkpoint record", func(t *testing.T) {
		// Records 9 and 10 (chain b) come after the pruned start (1..8)
		// but before checkpoint record 11, which covers it. The start is
		// covered; the break is record 9.
		m := pruned(t, 8, 8)
		m.at(t, 9).Principal = "mallory"
		wantProblem(t, mustVerify(t, m, verifyOpts()), 9, "altered")
	})
	t.Run("altered before a covering checkpoint whose signature is forged", func(t *testing.T) {
		// The look-ahead for the covering checkpoint checks its signature:
		// a checkpoint record naming the pruned start but not validly
		// signed covers nothing, so the missing start is the first problem.
		m := pruned(t, 8, 8)
		m.at(t, 9).Principal = "mallory"
		cp := m.at(t, 11)
		cp.Detail = strings.Replace(cp.Detail, `"signature":"`, `"signature":"AAAA`, 1)
		wantProblem(t, mustVerify(t, m, verifyOpts()), 1, "no signed checkpoint covers")
	})
}

// memStore is an audit.Backend and audit.Pruner over a memLog that seals
// like the SQL stores: the log's next global sequence, on the head of the
// writer's own chain, under one lock.
type memStore struct{ *memLog }

func (s memStore) AppendAudit(_ context.Context, chain *audit.Chain, events []*audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := lastSeq(s.memLog)
	head := headOf(s.memLog, chain.ID(), last+1)
	for _, e := range events {
		last++
		if err := chain.SealAt(e, last, head); err != nil {
			return err
		}
		s.events = append(s.events, *e)
		head = audit.Head{Seq: e.Seq, Hash: e.Hash}
	}
	return nil
}

func (memStore) ProbeWrite(context.Context) error { return nil }

func (s memStore) PruneAudit(_ context.Context, through int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.events)
	s.remove(1, through)
	return int64(n - len(s.events)), nil
}

// TestMultiChainPruneWithWriters: two replicas' writers share one log;
// checkpoints come from replica-a only. Prune removes through the record
// the checkpoint names (replica-a's previous, not the log's previous), and
// the rest verifies with both chains continued.
func TestMultiChainPruneWithWriters(t *testing.T) {
	ctx := context.Background()
	clock := &stepClock{}
	store := memStore{&memLog{}}
	newWriter := func(id string) *audit.Writer {
		w, err := audit.NewWriter(audit.Config{CommitTimeout: time.Minute, QueueSize: 16, MaxBatch: 8,
			Chain: withID(t, audittest.Chain(), id)}, store, clock.Now, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close(ctx) })
		return w
	}
	wa, wb := newWriter("replica-a"), newWriter("replica-b")
	if wa.ChainID() != "replica-a" || wb.ChainID() != "replica-b" {
		t.Fatalf("writer chain ids %q, %q", wa.ChainID(), wb.ChainID())
	}
	emit := func(w *audit.Writer) int64 {
		e := &audit.Event{Type: audit.ToolCallStart, Principal: "dev"}
		if err := w.Emit(ctx, e); err != nil {
			t.Fatal(err)
		}
		return e.Seq
	}
	// January, February, March: a, b, a, b, checkpoint of a, b.
	var cps []audit.Checkpoint
	var cpRecords []int64
	for m := 1; m <= 3; m++ {
		clock.set(time.Date(2026, time.Month(m), 10, 0, 0, 0, 0, time.UTC))
		emit(wa)
		emit(wb)
		aSeq := emit(wa)
		emit(wb)
		cp, err := wa.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Chain != "replica-a" || cp.Seq != aSeq {
			t.Fatalf("checkpoint %+v, want replica-a's record %d", cp, aSeq)
		}
		cps = append(cps, cp)
		cpRecords = append(cpRecords, lastSeq(store.memLog))
		emit(wb)
	}
	// Checkpoint records 5, 11, 17 name replica-a's records 3, 9, 15.
	if !slices.Equal(cpRecords, []int64{5, 11, 17}) || cps[1].Seq != 9 {
		t.Fatalf("checkpoint records %v, checkpoints %+v", cpRecords, cps)
	}
	if rep := mustVerify(t, store, verifyOpts()); !rep.OK() || len(rep.Chains) != 2 || rep.Checkpoints != 3 {
		t.Fatalf("before pruning: %+v", rep)
	}
	clock.set(time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC))
	cutoff := audit.RetentionCutoff(clock.Now(), 1) // 2026-03-01: January and February may go

	// A sink has shipped through 8: February's checkpoint covers 9, so
	// only January's (covering 3) may be used.
	res, err := audit.Prune(ctx, store, wb, cutoff, 8)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != cps[0].Seq {
		t.Fatalf("keepAfter=8: pruned %+v, want through %d", res, cps[0].Seq)
	}
	if rep := mustVerify(t, store, verifyOpts()); !rep.OK() || rep.PrunedBefore != cps[0].Seq+1 {
		t.Fatalf("after pruning with keepAfter 8: %+v", rep)
	}
	// Shipped through 9: February's checkpoint covers 9 although its
	// record is 11, after what was shipped; it is used.
	res, err = audit.Prune(ctx, store, wb, cutoff, 9)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != cps[1].Seq {
		t.Fatalf("keepAfter=9: pruned %+v, want through %d", res, cps[1].Seq)
	}
	// Nothing more before the cutoff.
	if res, err := audit.Prune(ctx, store, wb, cutoff, 0); err != nil || res.ThroughSeq != 0 {
		t.Fatalf("no sink, after pruning through February: %+v, %v; want nothing pruned", res, err)
	}
	rep := mustVerify(t, store, verifyOpts())
	if !rep.OK() || rep.FirstSeq != cps[1].Seq+1 || rep.PrunedBefore != cps[1].Seq+1 {
		t.Fatalf("after pruning: %+v", rep)
	}
	// Record 10 (replica-b) is now the first; replica-a starts again at its
	// checkpoint record 11. Both continue pruned records.
	if len(rep.Chains) != 2 || rep.Chains[0].Chain != "replica-b" || rep.Chains[0].FirstSeq != 10 ||
		!rep.Chains[0].Continued || rep.Chains[1].Chain != "replica-a" || rep.Chains[1].FirstSeq != 11 ||
		!rep.Chains[1].Continued {
		t.Errorf("chains %+v", rep.Chains)
	}
	// The writers carry on from their chains' heads.
	emit(wa)
	emit(wb)
	if rep := mustVerify(t, store, verifyOpts()); !rep.OK() {
		t.Errorf("after more records: %+v", rep)
	}
}

// TestMultiChainUnsealedPrefix: records written before the chain existed
// are unsealed and belong to no chain; a record that names a chain is
// never part of that prefix.
func TestMultiChainUnsealedPrefix(t *testing.T) {
	c := audittest.Chain()
	m := buildChains(t, c, "ddd"+tamperLayout[:10])
	for s := int64(1); s <= 3; s++ {
		e := m.at(t, s)
		e.Chain, e.PrevHash, e.Hash = "", "", ""
	}
	resealChains(t, m, c, 4)
	opts := verifyOpts()
	opts.AcceptUnsealedPrefix = true
	rep := mustVerify(t, m, opts)
	if !rep.OK() || rep.Unsealed != 3 || rep.Records != 10 || len(rep.Chains) != 3 {
		t.Fatalf("report %+v", rep)
	}
	// The default chain, first sealed at 4+3 = 7, starts at genesis there.
	if rep.Chains[2].Chain != "" || rep.Chains[2].FirstSeq != 7 {
		t.Errorf("chains %+v", rep.Chains)
	}
	// An unsealed record of a named chain is a break, prefix or not.
	m.at(t, 2).Chain = "replica-a"
	wantProblem(t, mustVerify(t, m, opts), 2, "not sealed")
}

// TestChainsCheckpointSignature: a named chain's checkpoint signs its
// chain id (v2); the default chain's keeps the v1 message, so checkpoints
// exported before chains had names still verify.
func TestChainsCheckpointSignature(t *testing.T) {
	c := audittest.Chain()
	at := time.Date(2026, 6, 1, 12, 0, 0, 987654321, time.UTC)
	named := signedAt(t, c, "replica-b", 41, someHash, at)
	if err := named.Verify(c.PublicKey()); err != nil {
		t.Fatalf("v2 checkpoint: %v", err)
	}
	wantMsg := "portcullis-audit-checkpoint-v2\nreplica-b\n41\n" + someHash + "\n2026-06-01T12:00:00.987654321Z"
	if got := string(named.SignedMessage()); got != wantMsg {
		t.Errorf("v2 SignedMessage = %q, want %q", got, wantMsg)
	}
	// Through JSON (as exported) and back.
	b, err := json.Marshal(named)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"chain":"replica-b"`) {
		t.Errorf("exported checkpoint %s does not name its chain", b)
	}
	back, err := audit.ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(named, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := back.Verify(c.PublicKey()); err != nil {
		t.Errorf("after the round trip: %v", err)
	}
	for _, other := range []string{"replica-a", "", "replica-b2", "Replica-b"} {
		cp := named
		cp.Chain = other
		if err := cp.Verify(c.PublicKey()); !errors.Is(err, audit.ErrBadCheckpoint) {
			t.Errorf("chain changed to %q: Verify = %v, want ErrBadCheckpoint", other, err)
		}
	}
	// Another chain's signature over the same head does not transfer.
	cp := named
	cp.Signature = signedAt(t, c, "replica-a", 41, someHash, at).Signature
	if err := cp.Verify(c.PublicKey()); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("replica-a's signature on replica-b's checkpoint: %v", err)
	}

	def := signedAt(t, c, "", 41, someHash, at)
	v1 := "portcullis-audit-checkpoint-v1\n41\n" + someHash + "\n2026-06-01T12:00:00.987654321Z"
	if got := string(def.SignedMessage()); got != v1 {
		t.Errorf("default chain SignedMessage = %q, want %q", got, v1)
	}
	if err := def.Verify(c.PublicKey()); err != nil {
		t.Errorf("v1 checkpoint: %v", err)
	}
	b, _ = json.Marshal(def)
	if strings.Contains(string(b), `"chain"`) {
		t.Errorf("default-chain checkpoint %s has a chain field", b)
	}
	// A v1 signature does not verify once the checkpoint is given a chain.
	def.Chain = "replica-b"
	if err := def.Verify(c.PublicKey()); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("v1 checkpoint relabelled to a chain: %v", err)
	}

	// A checkpoint record sealed by the code before chains (golden, same
	// keys) still parses, verifies and is a default-chain checkpoint.
	old, err := audit.ParseCheckpoint([]byte(goldenV1Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Verify(c.PublicKey()); err != nil || old.Chain != "" || old.Seq != 7 || old.Hash != someHash {
		t.Errorf("pre-chains checkpoint %+v: %v", old, err)
	}
	if diff := cmp.Diff(old, signedAt(t, c, "", 7, someHash, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))); diff != "" {
		t.Errorf("default-chain checkpoint differs from the one before chains (-old +new):\n%s", diff)
	}

	// ParseCheckpoint refuses chain ids no chain can have.
	for _, id := range []string{"a/b", "a b", "a\nb", "a\n1", strings.Repeat("a", 65), "é"} {
		cp := named
		cp.Chain = id
		b, _ := json.Marshal(cp)
		if _, err := audit.ParseCheckpoint(b); err == nil {
			t.Errorf("ParseCheckpoint accepted chain %q", id)
		}
	}
}

// signedAt returns a checkpoint of chain id naming (seq, hash) at time at.
func signedAt(t testing.TB, c *audit.Chain, id string, seq int64, hash string, at time.Time) audit.Checkpoint {
	t.Helper()
	e := audit.Event{Type: audit.AuditCheckpoint, Time: at}
	if err := withID(t, c, id).SealAt(&e, seq+1, audit.Head{Seq: seq, Hash: hash}); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint([]byte(e.Detail))
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// Golden values computed by the code before chains had names, with the
// audittest keys: fullEvent sealed as record 42 after someHash, and a
// checkpoint record (id evt_cp, 2026-01-02T03:04:05.000000006Z) sealed as
// record 8 after (7, someHash).
const (
	goldenV1Canonical = "17706f727463756c6c69732e61756469742e726f772e7631023432086576745f66756c6c1331373732363030373637383930" +
		"3132333435360d746f6f6c2e63616c6c2e656e6405616c6963650f646576656c6f7065722c677565737406736573732d3105" +
		"7265712d310e3139322e302e322e373a3535353509726561645f66696c650566696c65734c686d61632d7368613235363a61" +
		"6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161" +
		"616161616161616161616161611b7b2270617468223a22612e747874222c226c696d6974223a31307d05616c6c6f77024f4b" +
		"026f6b07313530303030304c686d61632d7368613235363a6262626262626262626262626262626262626262626262626262" +
		"62626262626262626262626262626262626262626262626262626262626262626262626262620767656e657269630672756c" +
		"652033"
	goldenV1Hash       = "6d30720967af64b20544ed728c4450bcf0b5b894135e3899c9b1d3b7c7965e1e"
	goldenV1Checkpoint = `{"seq":7,"hash":"7259f7d789a4d8b4f724629efa084732a081fcc9a475471b3a2b68782a1aa3fe",` +
		`"time":"2026-01-02T03:04:05.000000006Z","public_key":"gUZkDwJJOvT7xU/jM4jnXcLJN64LdyfMKyr7G3UZmj4=",` +
		`"signature":"wh9h0+2m5RpQMkL9wrerAFkbT2i+x0EEicJ/klk+sceeJzvF87VSt/dZ0FjELrpqd0xAck7TcqFHWM/25QhFCQ=="}`
	goldenV1CheckpointHash = "4200d5cd783d5ec2dfb8a4a6f4ff228a3d7d7ffd17c4b9472f16443c236342d4"
)

// lp is one length-prefixed canonical field.
func lp(s string) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(s))), s...)
}

// TestChainsCanonical: default-chain rows keep the canonical form and the
// hashes they had before chains had names; a named chain's rows carry v2
// and the chain id, so the same row on two chains seals differently.
func TestChainsCanonical(t *testing.T) {
	c := audittest.Chain()
	def := sealed(t, c)
	canon := audit.Canonical(&def)
	if got := hex.EncodeToString(canon); got != goldenV1Canonical {
		t.Errorf("default-chain Canonical changed:\n got %s\nwant %s", got, goldenV1Canonical)
	}
	if def.Hash != goldenV1Hash {
		t.Errorf("default-chain hash %s, before chains %s", def.Hash, goldenV1Hash)
	}
	if !bytes.HasPrefix(canon, lp("portcullis.audit.row.v1")) || bytes.Contains(canon, []byte("v2")) {
		t.Errorf("default-chain Canonical %q", canon)
	}
	// The old Seal and SealAt on the default chain agree.
	viaSealAt := fullEvent()
	if err := withID(t, c, "").SealAt(&viaSealAt, 42, audit.Head{Seq: 41, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(viaSealAt, def) {
		t.Errorf("SealAt on the default chain %+v, Seal %+v", viaSealAt, def)
	}
	cpe := audit.Event{ID: "evt_cp", Type: audit.AuditCheckpoint, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	if err := c.Seal(&cpe, 7, someHash); err != nil {
		t.Fatal(err)
	}
	if cpe.Detail != goldenV1Checkpoint || cpe.Hash != goldenV1CheckpointHash {
		t.Errorf("default-chain checkpoint record %s %s, before chains %s %s", cpe.Detail, cpe.Hash,
			goldenV1Checkpoint, goldenV1CheckpointHash)
	}

	named := fullEvent()
	if err := withID(t, c, "x").SealAt(&named, 42, audit.Head{Seq: 41, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	ncanon := audit.Canonical(&named)
	// v2, the chain id, then exactly the fields of the v1 form.
	want := slices.Concat(lp("portcullis.audit.row.v2"), lp("x"), canon[len(lp("portcullis.audit.row.v1")):])
	if !bytes.Equal(ncanon, want) {
		t.Errorf("named-chain Canonical\n got %q\nwant %q", ncanon, want)
	}
	if named.Hash == def.Hash || named.Hash != hmacOver(audittest.ChainKey, &named) {
		t.Errorf("named-chain hash %s (default %s)", named.Hash, def.Hash)
	}
	if !c.Check(&named) || !c.Check(&def) {
		t.Error("Check fails on a freshly sealed row")
	}
	// Moving the row between the default chain and "x" (nothing else
	// changed) breaks its seal both ways.
	moved := named
	moved.Chain = ""
	if c.Check(&moved) || bytes.Equal(audit.Canonical(&moved), ncanon) {
		t.Error("a named-chain row checks as a default-chain row")
	}
	moved = def
	moved.Chain = "x"
	if c.Check(&moved) {
		t.Error("a default-chain row checks as a named-chain row")
	}
	// Chain ids are length-prefixed: shifting bytes between the chain id
	// and the next field (the sequence) gives another form.
	a := audit.Event{Chain: "r1", Seq: 23}
	b := audit.Event{Chain: "r12", Seq: 3}
	if bytes.Equal(audit.Canonical(&a), audit.Canonical(&b)) {
		t.Error("chain|seq boundary is ambiguous")
	}
}

// TestChainsWithID: chain ids are 1-64 bytes of [A-Za-z0-9._-] or "".
func TestChainsWithID(t *testing.T) {
	c := audittest.Chain()
	if audit.MaxChainIDLen != 64 {
		t.Errorf("MaxChainIDLen = %d", audit.MaxChainIDLen)
	}
	for _, id := range []string{"a/b", "a b", strings.Repeat("a", 65), "é", "\x00", "a\nb", "replica:1", "\xff", "a\x00"} {
		if cc, err := c.WithID(id); err == nil || cc != nil {
			t.Errorf("WithID(%q) = %v, %v; want an error", id, cc, err)
		}
		if audit.ValidChainID(id) {
			t.Errorf("ValidChainID(%q) = true", id)
		}
	}
	for _, id := range []string{"", "replica-1", "pod.ns_1", strings.Repeat("z", 64), "A", "-", "..", "0"} {
		cc, err := c.WithID(id)
		if err != nil {
			t.Errorf("WithID(%q): %v", id, err)
			continue
		}
		if cc.ID() != id || !audit.ValidChainID(id) {
			t.Errorf("WithID(%q).ID() = %q, ValidChainID %v", id, cc.ID(), audit.ValidChainID(id))
		}
	}
	// WithID copies: the original keeps its id, and the copy has the same
	// keys (a record it seals checks under the original, and its
	// checkpoints verify under the original's public key).
	a := withID(t, c, "replica-a")
	b := withID(t, a, "replica-b")
	if c.ID() != "" || a.ID() != "replica-a" || b.ID() != "replica-b" || withID(t, b, "").ID() != "" {
		t.Errorf("ids %q %q %q", c.ID(), a.ID(), b.ID())
	}
	if !bytes.Equal(b.PublicKey(), c.PublicKey()) {
		t.Error("WithID changed the signing key")
	}
	e := fullEvent()
	if err := b.SealAt(&e, 5, audit.Head{Seq: 2, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	if !c.Check(&e) || !a.Check(&e) || e.Chain != "replica-b" {
		t.Errorf("record sealed into replica-b (chain %q) does not check under other ids of the same key", e.Chain)
	}
	if newChain(t, otherChainKey).Check(&e) {
		t.Error("another key checks it")
	}
}

// TestChainsSealAt: SealAt places a record at a global sequence above its
// chain's head, and refuses anything else without touching the event.
func TestChainsSealAt(t *testing.T) {
	c := withID(t, audittest.Chain(), "replica-a")
	for _, x := range []struct {
		seq  int64
		prev audit.Head
	}{
		{5, audit.Head{Seq: 5, Hash: someHash}},
		{4, audit.Head{Seq: 5, Hash: someHash}},
		{0, audit.Head{Seq: 0, Hash: audit.GenesisHash}},
		{0, audit.Head{Seq: -1, Hash: audit.GenesisHash}},
		{-3, audit.Head{Seq: -5, Hash: audit.GenesisHash}},
		{1, audit.Head{Seq: 1, Hash: audit.GenesisHash}},
	} {
		for _, typ := range []audit.Type{audit.ToolCallEnd, audit.AuditCheckpoint} {
			e := fullEvent()
			e.Type = typ
			before := e
			if err := c.SealAt(&e, x.seq, x.prev); err == nil {
				t.Errorf("SealAt(%s, seq %d, head %d) accepted", typ, x.seq, x.prev.Seq)
			}
			if !reflect.DeepEqual(e, before) {
				t.Errorf("a refused SealAt(%s, seq %d) changed the event: %+v", typ, x.seq, e)
			}
		}
	}
	// A gap in the chain (other chains' records between) is the normal case.
	e := fullEvent()
	e.Chain = "forged" // SealAt sets the chain, whatever the caller put there
	if err := c.SealAt(&e, 9, audit.Head{Seq: 2, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	if e.Chain != "replica-a" || e.Seq != 9 || e.PrevHash != someHash || !c.Check(&e) {
		t.Errorf("sealed %+v", e)
	}
	// The first record of a chain may come anywhere in the log.
	first := fullEvent()
	if err := c.SealAt(&first, 1000, audit.Head{Hash: audit.GenesisHash}); err != nil || first.PrevHash != audit.GenesisHash {
		t.Errorf("first record at 1000: %v %+v", err, first)
	}
	// A checkpoint names the head it was sealed on, with the chain id.
	cpe := audit.Event{Type: audit.AuditCheckpoint, Time: t0, Detail: "overwritten"}
	if err := c.SealAt(&cpe, 9, audit.Head{Seq: 2, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint([]byte(cpe.Detail))
	if err != nil {
		t.Fatal(err)
	}
	want := audit.Checkpoint{Chain: "replica-a", Seq: 2, Hash: someHash, Time: t0,
		PublicKey: base64.StdEncoding.EncodeToString(c.PublicKey())}
	if diff := cmp.Diff(want, cp, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Signature" }, cmp.Ignore())); diff != "" {
		t.Errorf("checkpoint (-want +got):\n%s", diff)
	}
	if err := cp.Verify(c.PublicKey()); err != nil {
		t.Errorf("Verify: %v", err)
	}
	// Seal is SealAt at prevSeq+1.
	viaSeal := fullEvent()
	if err := c.Seal(&viaSeal, 8, someHash); err != nil {
		t.Fatal(err)
	}
	viaSealAt := fullEvent()
	if err := c.SealAt(&viaSealAt, 9, audit.Head{Seq: 8, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(viaSeal, viaSealAt) {
		t.Errorf("Seal %+v, SealAt %+v", viaSeal, viaSealAt)
	}
}
