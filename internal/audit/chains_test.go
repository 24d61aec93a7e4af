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

// logHead returns the log's record just before global sequence before,
// as a writer reads it when it seals record before (the "last" of
// SealAt): Head{before-1, its hash}, Head{} when before is 1 (an empty
// log). Only that record's hash enters a seal, and only a checkpoint
// record's (its log_hash). When record before-1 is not in m (pruned, or
// deleted by a tamper) the hash is "", as for an unsealed record: the
// record is gone, Verify never compares a checkpoint's log_hash with a
// record it did not see, and SealAt still needs its sequence number.
func logHead(m *memLog, before int64) audit.Head {
	if before <= 1 {
		return audit.Head{}
	}
	for i := range m.events {
		if m.events[i].Seq == before-1 {
			return audit.Head{Seq: before - 1, Hash: m.events[i].Hash}
		}
	}
	return audit.Head{Seq: before - 1}
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
// i+1 (after the record before it, the log's newest), into the chain the
// letter names (layoutChains) on top of that chain's head, as the
// replicas' writers do; an upper-case letter is a signed audit.checkpoint
// record of that chain, naming that head and the log's record before it.
func buildChains(t testing.TB, c *audit.Chain, layout string) *memLog {
	t.Helper()
	m := &memLog{events: make([]audit.Event, 0, len(layout))}
	heads := map[string]audit.Head{}
	var last audit.Head // the log's newest record
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
		if err := withID(t, c, id).SealAt(&e, last, h); err != nil {
			t.Fatal(err)
		}
		if e.Seq != seq {
			t.Fatalf("record %d sealed as %d", seq, e.Seq)
		}
		heads[id] = audit.Head{Seq: seq, Hash: e.Hash}
		last = heads[id]
		m.events = append(m.events, e)
	}
	return m
}

// appendRecord seals e at the end of the log into chain id, the way a
// replica's writer appends (after the log's newest record, on its chain's
// head).
func appendRecord(t testing.TB, m *memLog, c *audit.Chain, id string, e audit.Event) audit.Event {
	t.Helper()
	seq := lastSeq(m) + 1
	if e.ID == "" {
		e.ID = fmt.Sprintf("evt_%07d", seq)
	}
	if e.Time.IsZero() {
		e.Time = t0.Add(time.Duration(seq) * time.Second)
	}
	if err := withID(t, c, id).SealAt(&e, logHead(m, seq), headOf(m, id, seq)); err != nil {
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
// after the log's record before it (logHead) onto the head of its own
// chain, as someone holding c would; with chains, only the records of
// those chains. Checkpoint records are signed again with c's signer, over
// the log's and the chain's records as they are then.
func resealChains(t testing.TB, m *memLog, c *audit.Chain, from int64, chains ...string) {
	t.Helper()
	m.sort()
	for i := range m.events {
		e := &m.events[i]
		if e.Seq < from || len(chains) > 0 && !slices.Contains(chains, e.Chain) {
			continue
		}
		if err := withID(t, c, e.Chain).SealAt(e, logHead(m, e.Seq), headOf(m, e.Chain, e.Seq)); err != nil {
			t.Fatal(err)
		}
	}
}

// chainCheckpoint returns a checkpoint of chain id naming (seq, hash),
// signed by c's key the way the gateway signs them: by sealing an
// audit.checkpoint record of that chain over that head, here with that
// record also the log's newest (no log position: LogSeq 0).
func chainCheckpoint(t testing.TB, c *audit.Chain, id string, seq int64, hash string) audit.Checkpoint {
	t.Helper()
	h := audit.Head{Seq: seq, Hash: hash}
	return logCheckpoint(t, c, id, h, h)
}

// logCheckpoint returns the checkpoint that a record of chain id sealed
// with c after last, the log's newest record, on prev, the chain's head,
// holds: what the gateway exports.
func logCheckpoint(t testing.TB, c *audit.Chain, id string, last, prev audit.Head) audit.Checkpoint {
	t.Helper()
	e := audit.Event{ID: "evt_cp", Type: audit.AuditCheckpoint, Time: t0.Add(time.Hour)}
	if err := withID(t, c, id).SealAt(&e, last, prev); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint([]byte(e.Detail))
	if err != nil {
		t.Fatalf("ParseCheckpoint(%s): %v", e.Detail, err)
	}
	if cp.Chain != id || cp.Seq != prev.Seq || cp.Hash != prev.Hash {
		t.Fatalf("checkpoint sealed into chain %q on %+v holds %+v", id, prev, cp)
	}
	return cp
}

// exported returns the checkpoint that checkpoint record seq of m holds,
// as `portcullis audit checkpoint` exports it.
func exported(t *testing.T, m *memLog, seq int64) audit.Checkpoint {
	t.Helper()
	cp, err := audit.ParseCheckpoint([]byte(m.at(t, seq).Detail))
	if err != nil {
		t.Fatalf("record %d: %v", seq, err)
	}
	return cp
}

// recHead returns record seq of m as a head: its seq and hash.
func recHead(t *testing.T, m *memLog, seq int64) audit.Head {
	t.Helper()
	return audit.Head{Seq: seq, Hash: m.at(t, seq).Hash}
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
// replica-a: 1 3 7 8 11 13 15 18 (7 is a checkpoint naming 3 and the
// log's 6), replica-b: 2 5 6 9 12 14 17 19 (12 is a checkpoint naming 9
// and the log's 11),
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
	// The checkpoints name their own chain's previous record and the
	// log's (another chain's) record just before them.
	for _, x := range []struct {
		seq, names int64
		chain      string
	}{{7, 3, "replica-a"}, {12, 9, "replica-b"}} {
		cp := exported(t, m, x.seq)
		if cp.Chain != x.chain || cp.Seq != x.names || cp.Hash != m.at(t, x.names).Hash ||
			cp.LogSeq != x.seq-1 || cp.LogHash != m.at(t, x.seq-1).Hash || m.at(t, x.seq-1).Chain == x.chain {
			t.Errorf("checkpoint record %d holds %+v, want chain %q seq %d, log seq %d", x.seq, cp, x.chain, x.names, x.seq-1)
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
			// The checkpoints the log's checkpoint records hold, and one
			// with a log position on the default chain.
			exported(t, m, 7),
			exported(t, m, 12),
			logCheckpoint(t, c, "", audit.Head{Seq: 19, Hash: m.at(t, 19).Hash}, audit.Head{Seq: 16, Hash: m.at(t, 16).Hash}),
		}
		rep := mustVerify(t, m, verifyOpts(anchors...))
		// Anchors counts the exported checkpoints whose records were
		// checked, by either record they name (two name 16 or 19): all six.
		if !rep.OK() || rep.Anchors != 6 {
			t.Errorf("report %+v, want intact with 6 anchors checked", rep)
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
			if err := withID(t, attacker, "replica-a").SealAt(e, logHead(m, 9), headOf(m, "replica-a", 9)); err != nil {
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
			// as the chain head's: valid seal, valid signature, and a log
			// position (none: it looks like the chain's own record) that
			// would be right if the chain position were.
			e := m.at(t, 7)
			if err := withID(t, c, "replica-a").SealAt(e, logHead(m, 7), audit.Head{Seq: 6, Hash: m.at(t, 3).Hash}); err != nil {
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
		}, 17, "altered"},

		// Log positions: a checkpoint record also names the log's record
		// just before it, another chain's here (12 names chain b's 9 and
		// the log's 11, chain a's).
		{"checkpoint names its chain's record and an older log record", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 12, logCheckpoint(t, c, "replica-b", recHead(t, m, 10), recHead(t, m, 9)))
		}, nil, 12, "names seq 10 of the log, not the record before it"},
		{"checkpoint names a later log record", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 12, logCheckpoint(t, c, "replica-b", recHead(t, m, 13), recHead(t, m, 9)))
		}, nil, 12, "names seq 13 of the log"},
		{"checkpoint names the log's previous seq with another record's hash", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 12, logCheckpoint(t, c, "replica-b", audit.Head{Seq: 11, Hash: m.at(t, 10).Hash},
				recHead(t, m, 9)))
		}, nil, 12, "names seq 11 of the log"},
		{"checkpoint without a log position after another chain's record", func(t *testing.T, m *memLog) {
			// What the code before log positions sealed: it names only
			// 9, leaving 10 and 11 uncovered.
			forgeCheckpoint(t, m, 12, chainCheckpoint(t, c, "replica-b", 9, m.at(t, 9).Hash))
		}, nil, 12, "names seq 9 of the log"},
		{"checkpoint's log position forged and signed with another key", func(t *testing.T, m *memLog) {
			forgeCheckpoint(t, m, 12, logCheckpoint(t, attacker, "replica-b", audit.Head{Seq: 11, Hash: someHash},
				recHead(t, m, 9)))
		}, nil, 12, "checkpoint record: audit: checkpoint signed by another key"},
		{"checkpoint's log hash edited", func(t *testing.T, m *memLog) {
			e := m.at(t, 12)
			e.Detail = strings.Replace(e.Detail, `"log_hash":"`+m.at(t, 11).Hash, `"log_hash":"`+someHash, 1)
			forgeRecord(e, e.PrevHash)
			resealChains(t, m, c, 13, "replica-b")
		}, nil, 12, "checkpoint record: audit: checkpoint signature invalid"},
		{"checkpoint's log seq edited", func(t *testing.T, m *memLog) {
			e := m.at(t, 12)
			e.Detail = strings.Replace(e.Detail, `"log_seq":11,`, `"log_seq":10,`, 1)
			forgeRecord(e, e.PrevHash)
			resealChains(t, m, c, 13, "replica-b")
		}, nil, 12, "checkpoint signature invalid"},
		{"another chain's record before a checkpoint rewritten by a chain-key holder", func(t *testing.T, m *memLog) {
			// 11 (chain a) altered and sealed again with the chain key,
			// and chain a's later records too: every seal checks, but
			// checkpoint record 12 (chain b, signed) names 11's old hash.
			e := m.at(t, 11)
			e.Principal = "mallory"
			forgeRecord(e, e.PrevHash)
			resealChains(t, m, c, 12, "replica-a")
		}, nil, 12, "names seq 11 of the log"},
		{"anchor with a log hash the log never had", nil, func(t *testing.T, m *memLog) []audit.Checkpoint {
			return []audit.Checkpoint{logCheckpoint(t, c, "replica-b", audit.Head{Seq: 11, Hash: someHash}, recHead(t, m, 9))}
		}, 11, "record differs from the exported checkpoint"},
		{"anchor's log record resealed with another key after export", func(t *testing.T, m *memLog) {
			m.at(t, 11).Principal = "mallory"
			resealChains(t, m, attacker, 11, "replica-a")
		}, func(t *testing.T, m *memLog) []audit.Checkpoint {
			return []audit.Checkpoint{exported(t, m, 12)}
		}, 11, "record differs from the exported checkpoint"},
		{"anchor's log position past the end of the log", nil, func(t *testing.T, m *memLog) []audit.Checkpoint {
			return []audit.Checkpoint{logCheckpoint(t, c, "replica-b", audit.Head{Seq: 25, Hash: someHash}, recHead(t, m, 9))}
		}, 21, "names seq 25 but the log ends at 20"},
		{"truncated through an exported checkpoint's log position", func(t *testing.T, m *memLog) { m.remove(4, 20) },
			func(t *testing.T, m *memLog) []audit.Checkpoint {
				// Checkpoint record 7 names chain a's 3 and the log's 6.
				return []audit.Checkpoint{exported(t, m, 7)}
			}, 4, "names seq 6 but the log ends at 3"},
		{"truncated at an exported checkpoint's log position", func(t *testing.T, m *memLog) { m.remove(6, 20) },
			func(t *testing.T, m *memLog) []audit.Checkpoint { return []audit.Checkpoint{exported(t, m, 7)} },
			6, "truncated"},
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

// TestMultiChainIdleReplicaCheckpoint: replica-a writes record 1 and then
// idles while replica-b writes 2..11; replica-a's checkpoint (record 12)
// is exported. A checkpoint that named only its own chain's record (1)
// would let everything after 1 be deleted unnoticed; it also names the
// log's record 11, and the exported checkpoint detects the deletion or
// rewrite of anything before the checkpoint record.
func TestMultiChainIdleReplicaCheckpoint(t *testing.T) {
	c := audittest.Chain()
	layout := "a" + strings.Repeat("b", 10) + "A"
	build := func(t *testing.T, layout string) (*memLog, audit.Checkpoint) {
		t.Helper()
		m := buildChains(t, c, layout)
		cp := exported(t, m, 12)
		if cp.Chain != "replica-a" || cp.Seq != 1 || cp.Hash != m.at(t, 1).Hash || cp.LogSeq != 11 ||
			cp.LogHash != m.at(t, 11).Hash {
			t.Fatalf("checkpoint record 12 holds %+v", cp)
		}
		if rep := mustVerify(t, m, verifyOpts(cp)); !rep.OK() || rep.Anchors != 1 || rep.Records != int64(len(layout)) {
			t.Fatalf("before the attack: %+v", rep)
		}
		return m, cp
	}
	tests := []struct {
		name    string
		tamper  func(t *testing.T, m *memLog)
		bad     int64
		problem string
	}{
		{"deleted 2..12", func(t *testing.T, m *memLog) { m.remove(2, 12) }, 2,
			"truncated: an exported checkpoint (2026-04-01T08:00:12Z) names seq 11 but the log ends at 1"},
		{"deleted 5..12", func(t *testing.T, m *memLog) { m.remove(5, 12) }, 5, "names seq 11 but the log ends at 4"},
		{"deleted 11..12", func(t *testing.T, m *memLog) { m.remove(11, 12) }, 11, "names seq 11 but the log ends at 10"},
		{"deleted 2..11, the checkpoint record kept", func(t *testing.T, m *memLog) { m.remove(2, 11) }, 2,
			"records 2..11 are missing"},
		{"deleted 2..12, replica-b's chain written again with the keys", func(t *testing.T, m *memLog) {
			// Someone with both keys cannot undo an export: replica-b
			// starts again at genesis and writes 2..13 anew.
			m.remove(2, 12)
			for range 12 {
				appendRecord(t, m, c, "replica-b", audit.Event{Type: audit.ToolCallStart, Principal: "mallory"})
			}
		}, 11, "record differs from the exported checkpoint"},
		{"replica-b's records rewritten with the chain key, the checkpoint record deleted", func(t *testing.T, m *memLog) {
			// Without the signing key, checkpoint record 12 cannot be
			// sealed again over the rewritten records: it goes. The log
			// left (1..11) verifies by itself; the export names 11.
			m.remove(12, 12)
			m.at(t, 5).Principal = "mallory"
			resealChains(t, m, c, 5, "replica-b")
			if rep := mustVerify(t, m, verifyOpts()); !rep.OK() || rep.LastSeq != 11 {
				t.Fatalf("without the export: %+v", rep)
			}
		}, 11, "record differs from the exported checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, cp := build(t, layout)
			tt.tamper(t, m)
			wantProblem(t, mustVerify(t, m, verifyOpts(cp)), tt.bad, tt.problem)
		})
	}
	t.Run("the checkpoint record itself", func(t *testing.T) {
		// An export covers the records before its checkpoint record:
		// the checkpoint record is the newest, and deleting only it
		// leaves every record the export names. Once anything follows
		// it, its deletion is a gap.
		m, cp := build(t, layout)
		m.remove(12, 12)
		if rep := mustVerify(t, m, verifyOpts(cp)); !rep.OK() || rep.LastSeq != 11 {
			t.Errorf("checkpoint record deleted: %+v", rep)
		}
		m, cp = build(t, layout+"b")
		m.remove(12, 12)
		wantProblem(t, mustVerify(t, m, verifyOpts(cp)), 12, "records 12..12 are missing")
	})

	t.Run("replica-a's chain emptied by retention earlier", func(t *testing.T) {
		// 1 a, 2 b, 3 B (names 2), 4 b, 5 b, 6 audit.prune through 2;
		// 1..2 pruned, so replica-a has no record. Replica-b writes 7..11
		// and replica-a's checkpoint 12 names its chain's genesis (seq 0)
		// and the log's record 11: only the log position protects.
		m := buildChains(t, c, "abBbb")
		appendPrune(t, m, "replica-b", 2)
		m.remove(1, 2)
		for range 5 {
			appendRecord(t, m, c, "replica-b", audit.Event{Type: audit.ToolCallStart})
		}
		appendRecord(t, m, c, "replica-a", audit.Event{Type: audit.AuditCheckpoint, Principal: audit.SystemPrincipal})
		cp := exported(t, m, 12)
		if cp.Chain != "replica-a" || cp.Seq != 0 || cp.Hash != audit.GenesisHash || cp.LogSeq != 11 ||
			cp.LogHash != m.at(t, 11).Hash {
			t.Fatalf("checkpoint record 12 holds %+v", cp)
		}
		rep := mustVerify(t, m, verifyOpts(cp))
		if !rep.OK() || rep.PrunedBefore != 3 || rep.LastSeq != 12 || rep.Checkpoints != 2 {
			t.Fatalf("report %+v", rep)
		}
		for _, x := range []struct {
			from, to, bad int64
			problem       string
		}{
			{7, 12, 7, "names seq 11 but the log ends at 6"},
			{9, 12, 9, "names seq 11 but the log ends at 8"},
			{11, 12, 11, "names seq 11 but the log ends at 10"},
		} {
			m := &memLog{events: slices.Clone(m.events)}
			m.remove(x.from, x.to)
			if rep := mustVerify(t, m, verifyOpts()); !rep.OK() {
				t.Fatalf("deleted %d..%d, without the export: %+v", x.from, x.to, rep)
			}
			wantProblem(t, mustVerify(t, m, verifyOpts(cp)), x.bad, x.problem)
		}
		// A log hash that is not record 11's.
		forged := logCheckpoint(t, c, "replica-a", audit.Head{Seq: 11, Hash: m.at(t, 10).Hash}, audit.Head{Hash: audit.GenesisHash})
		wantProblem(t, mustVerify(t, m, verifyOpts(forged)), 11, "record differs from the exported checkpoint")
	})

	t.Run("through the writers", func(t *testing.T) {
		// The same log written by two replicas' writers: the checkpoint
		// Writer.Checkpoint returns (what is exported) names the log's
		// record before its own.
		ctx := context.Background()
		store := memStore{&memLog{}}
		newWriter := func(id string) *audit.Writer {
			w, err := audit.NewWriter(audit.Config{CommitTimeout: time.Minute, QueueSize: 16, MaxBatch: 8,
				Chain: withID(t, audittest.Chain(), id)}, store, func() time.Time { return t0 }, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.Close(ctx) })
			return w
		}
		wa, wb := newWriter("replica-a"), newWriter("replica-b")
		for i, w := range append([]*audit.Writer{wa}, slices.Repeat([]*audit.Writer{wb}, 10)...) {
			if err := w.Emit(ctx, &audit.Event{Type: audit.ToolCallStart, Principal: "dev"}); err != nil {
				t.Fatal(err)
			}
			if got := lastSeq(store.memLog); got != int64(i+1) {
				t.Fatalf("record %d written as %d", i+1, got)
			}
		}
		cp, err := wa.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Chain != "replica-a" || cp.Seq != 1 || cp.Hash != store.at(t, 1).Hash || cp.LogSeq != 11 ||
			cp.LogHash != store.at(t, 11).Hash || lastSeq(store.memLog) != 12 {
			t.Fatalf("checkpoint %+v", cp)
		}
		if rep := mustVerify(t, store, verifyOpts(cp)); !rep.OK() || rep.Checkpoints != 1 {
			t.Fatalf("report %+v", rep)
		}
		store.remove(2, 12)
		wantProblem(t, mustVerify(t, store, verifyOpts(cp)), 2, "names seq 11 but the log ends at 1")
	})
}

// TestMultiChainAnchorOptions: exported checkpoints that say different
// things about the same record cannot all be right: the record of a
// checkpoint's chain (seq, hash, chain) and the log's record before it
// (seq, hash) are each compared with every other anchor's.
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
	// So is one whose log position was changed after signing.
	logged := exported(t, m, 12) // chain b's 9, the log's 11
	for _, change := range []func(*audit.Checkpoint){
		func(cp *audit.Checkpoint) { cp.LogHash = someHash },
		func(cp *audit.Checkpoint) { cp.LogSeq = 10 },
		func(cp *audit.Checkpoint) { cp.LogSeq, cp.LogHash = 0, "" },
	} {
		cp := logged
		change(&cp)
		if _, err := audit.Verify(t.Context(), m, verifyOpts(cp)); !errors.Is(err, audit.ErrBadCheckpoint) {
			t.Errorf("Verify with an anchor's log position changed to %d %q: error %v, want ErrBadCheckpoint",
				cp.LogSeq, cp.LogHash, err)
		}
	}
	if rep := mustVerify(t, m, verifyOpts(a, a)); !rep.OK() {
		t.Errorf("the same anchor twice: %+v", rep)
	}
	h9, h11 := recHead(t, m, 9), recHead(t, m, 11)
	for _, x := range []struct {
		name    string
		anchors []audit.Checkpoint
	}{
		{"the same chain record, different log hashes", []audit.Checkpoint{logged,
			logCheckpoint(t, c, "replica-b", audit.Head{Seq: 11, Hash: someHash}, h9)}},
		{"the same chain record, different log hashes, the other way round", []audit.Checkpoint{
			logCheckpoint(t, c, "replica-b", audit.Head{Seq: 11, Hash: someHash}, h9), logged}},
		{"a log position and another anchor's chain record", []audit.Checkpoint{logged,
			chainCheckpoint(t, c, "replica-a", 11, someHash)}},
		{"a chain record and another anchor's log position", []audit.Checkpoint{
			chainCheckpoint(t, c, "replica-a", 11, someHash), logged}},
		{"log positions of two chains", []audit.Checkpoint{logged,
			logCheckpoint(t, c, "replica-a", audit.Head{Seq: 11, Hash: someHash}, recHead(t, m, 8))}},
	} {
		rep, err := audit.Verify(t.Context(), m, verifyOpts(x.anchors...))
		if err == nil || !strings.Contains(err.Error(), "two exported checkpoints disagree about seq 11") {
			t.Errorf("%s: Verify = %+v, %v; want the anchors refused", x.name, rep, err)
		}
	}
	// Anchors that agree: a log position (no chain) and the same record
	// named as a chain record, in either order, or named twice.
	for _, anchors := range [][]audit.Checkpoint{
		{logged, chainCheckpoint(t, c, "replica-a", 11, h11.Hash)},
		{chainCheckpoint(t, c, "replica-a", 11, h11.Hash), logged},
		{logged, logCheckpoint(t, c, "", h11, recHead(t, m, 10))}, // the default chain's 10, the log's 11
		{logged, logged},
	} {
		if rep := mustVerify(t, m, verifyOpts(anchors...)); !rep.OK() {
			t.Errorf("agreeing anchors %+v: %+v", anchors, rep)
		}
	}
	// A chain record named under the wrong chain is still wrong when
	// another anchor named the same record as a log position first.
	wrong := chainCheckpoint(t, c, "replica-b", 11, h11.Hash) // 11 is chain a's
	wantProblem(t, mustVerify(t, m, verifyOpts(logged, wrong)), 11, "record differs from the exported checkpoint")
	wantProblem(t, mustVerify(t, m, verifyOpts(wrong, logged)), 11, "record differs from the exported checkpoint")
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
// replica-a: 1 3 6 8 11 13 (6 is a checkpoint naming chain record 3 and
// log record 5, 11 one naming 8 and 10), replica-b: 2 4 5 7 9 10 12 14 16,
// "": 15.
const retentionLayout = "ababbAbabbAbabdb"

// TestMultiChainRetention: retention removes the start of the log through
// a checkpoint's log position, the log's record just before the
// checkpoint record, which stays as the first record; the chains continue
// from records that are gone. A log pruned by the version before log
// positions (through the checkpoint's chain record, other chains' records
// left before the checkpoint record) still verifies. Removing anything
// else, or without the audit.prune record, is reported at seq 1.
func TestMultiChainRetention(t *testing.T) {
	c := audittest.Chain()
	// pruned returns the retention layout with an audit.prune record
	// (seq 17) naming prune (none if 0) and records 1..through removed.
	pruned := func(t *testing.T, prune, through int64) *memLog {
		m := buildChains(t, c, retentionLayout)
		if prune > 0 {
			appendPrune(t, m, "replica-b", prune) // seq 17
		}
		m.remove(1, through)
		return m
	}
	// The checkpoints name what the tests below rely on.
	full := buildChains(t, c, retentionLayout)
	for _, x := range []struct{ rec, seq, logSeq int64 }{{6, 3, 5}, {11, 8, 10}} {
		cp := exported(t, full, x.rec)
		if cp.Chain != "replica-a" || cp.Seq != x.seq || cp.Hash != full.at(t, x.seq).Hash ||
			cp.LogSeq != x.logSeq || cp.LogHash != full.at(t, x.logSeq).Hash {
			t.Fatalf("checkpoint record %d holds %+v", x.rec, cp)
		}
	}

	t.Run("pruned at chain a's checkpoint record", func(t *testing.T) {
		m := pruned(t, 10, 10)
		rep := mustVerify(t, m, verifyOpts())
		if !rep.OK() || rep.PrunedBefore != 11 || rep.FirstSeq != 11 || rep.LastSeq != 17 || rep.Records != 7 ||
			rep.Checkpoints != 1 {
			t.Fatalf("report %+v", rep)
		}
		want := []audit.ChainReport{
			{Chain: "replica-a", Records: 2, FirstSeq: 11, LastSeq: 13, HeadHash: m.at(t, 13).Hash, Continued: true},
			{Chain: "replica-b", Records: 4, FirstSeq: 12, LastSeq: 17, HeadHash: m.at(t, 17).Hash, Continued: true},
			{Chain: "", Records: 1, FirstSeq: 15, LastSeq: 15, HeadHash: m.at(t, 15).Hash},
		}
		if diff := cmp.Diff(want, rep.Chains); diff != "" {
			t.Errorf("chains (-want +got):\n%s", diff)
		}
	})
	t.Run("pruned at the older checkpoint record", func(t *testing.T) {
		m := pruned(t, 5, 5)
		rep := mustVerify(t, m, verifyOpts())
		want := []audit.ChainReport{
			{Chain: "replica-a", Records: 4, FirstSeq: 6, LastSeq: 13, HeadHash: m.at(t, 13).Hash, Continued: true},
			{Chain: "replica-b", Records: 7, FirstSeq: 7, LastSeq: 17, HeadHash: m.at(t, 17).Hash, Continued: true},
			{Chain: "", Records: 1, FirstSeq: 15, LastSeq: 15, HeadHash: m.at(t, 15).Hash},
		}
		if !rep.OK() || rep.PrunedBefore != 6 || rep.Checkpoints != 2 || rep.Records != 12 {
			t.Errorf("report %+v", rep)
		}
		if diff := cmp.Diff(want, rep.Chains); diff != "" {
			t.Errorf("chains (-want +got):\n%s", diff)
		}
	})
	t.Run("pruned before log positions, through chain a's record", func(t *testing.T) {
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
	t.Run("pruned before log positions, at the older checkpoint", func(t *testing.T) {
		rep := mustVerify(t, pruned(t, 3, 3), verifyOpts())
		if !rep.OK() || rep.PrunedBefore != 4 || rep.Checkpoints != 2 || len(rep.Chains) != 3 ||
			!rep.Chains[0].Continued || rep.Chains[0].Chain != "replica-b" || !rep.Chains[1].Continued {
			t.Errorf("report %+v", rep)
		}
	})
	for _, x := range []struct {
		name           string
		first, second  int64
		prunedBefore   int64
		wantFirstChain string
	}{
		{"pruned twice", 5, 10, 11, "replica-a"},
		{"pruned twice, first before log positions", 3, 10, 11, "replica-a"},
		{"pruned twice, both before log positions", 3, 8, 9, "replica-b"},
	} {
		t.Run(x.name, func(t *testing.T) {
			m := buildChains(t, c, retentionLayout)
			appendPrune(t, m, "replica-a", x.first)
			m.remove(1, x.first)
			appendPrune(t, m, "replica-b", x.second)
			m.remove(1, x.second)
			rep := mustVerify(t, m, verifyOpts())
			if !rep.OK() || rep.PrunedBefore != x.prunedBefore || rep.Chains[0].Chain != x.wantFirstChain {
				t.Errorf("report %+v", rep)
			}
		})
	}
	t.Run("pruned start covered by an anchor of chain b", func(t *testing.T) {
		// No checkpoint record names 9 (checkpoint 11 names 8 and 10):
		// only the exported checkpoint covers the removal.
		anchor := chainCheckpoint(t, c, "replica-b", 9, full.at(t, 9).Hash)
		m := pruned(t, 9, 9)
		rep := mustVerify(t, m, verifyOpts(anchor))
		if !rep.OK() || rep.PrunedBefore != 10 {
			t.Errorf("report %+v", rep)
		}
		wantProblem(t, mustVerify(t, m, verifyOpts()), 1, "records 1..9 are missing and no signed checkpoint covers")
	})

	tests := []struct {
		name    string
		log     func(t *testing.T) *memLog
		anchors func(t *testing.T) []audit.Checkpoint
		bad     int64
		problem string
	}{
		{"the checkpoint record that covered the start deleted too", func(t *testing.T) *memLog {
			m := pruned(t, 10, 10)
			m.remove(11, 11)
			return m
		}, nil, 1, "records 1..11 are missing and no signed checkpoint covers"},
		{"the checkpoint record that covered a start pruned before log positions deleted", func(t *testing.T) *memLog {
			m := pruned(t, 8, 8)
			m.remove(11, 11)
			return m
		}, nil, 1, "records 1..8 are missing and no signed checkpoint covers"},
		{"deleted through the checkpoint and the records before it", func(t *testing.T) *memLog {
			return pruned(t, 11, 11)
		}, nil, 1, "no signed checkpoint covers"},
		{"deleted between the checkpoint's chain record and its log position", func(t *testing.T) *memLog {
			// 9 lies between 8, the record of chain a checkpoint 11 names,
			// and 10, the log's record before it.
			return pruned(t, 9, 9)
		}, nil, 1, "records 1..9 are missing"},
		{"deleted between the older checkpoint's chain record and its log position", func(t *testing.T) *memLog {
			return pruned(t, 4, 4)
		}, nil, 1, "records 1..4 are missing"},
		{"deleted one record less than the checkpoint covers", func(t *testing.T) *memLog {
			return pruned(t, 7, 7)
		}, nil, 1, "records 1..7 are missing"},
		{"deleted at a checkpoint without an audit.prune record", func(t *testing.T) *memLog {
			return pruned(t, 0, 10)
		}, nil, 1, "audit.prune"},
		{"deleted at a chain record without an audit.prune record", func(t *testing.T) *memLog {
			return pruned(t, 0, 8)
		}, nil, 1, "audit.prune"},
		{"audit.prune record names the chain record, not the log position", func(t *testing.T) *memLog {
			return pruned(t, 8, 10)
		}, nil, 1, "audit.prune"},
		{"audit.prune record names other records", func(t *testing.T) *memLog {
			return pruned(t, 7, 8)
		}, nil, 1, "audit.prune"},
		{"audit.prune record names more records", func(t *testing.T) *memLog {
			return pruned(t, 11, 10)
		}, nil, 1, "audit.prune"},
		{"audit.prune record names more records than the chain record", func(t *testing.T) *memLog {
			return pruned(t, 9, 8)
		}, nil, 1, "audit.prune"},
		{"the covering checkpoint record names another log record", func(t *testing.T) *memLog {
			// Checkpoint 11 (first after pruning through 10) holds a log
			// position of 9, signed with the keys: it covers 8 and 9, not
			// the start that is gone.
			m := pruned(t, 10, 10)
			e := m.at(t, 11)
			e.Detail = cpJSON(t, logCheckpoint(t, c, "replica-a", audit.Head{Seq: 9, Hash: full.at(t, 9).Hash},
				audit.Head{Seq: 8, Hash: e.PrevHash}))
			forgeRecord(e, e.PrevHash)
			resealChains(t, m, c, 12, "replica-a")
			return m
		}, nil, 1, "records 1..10 are missing and no signed checkpoint covers"},
		{"anchor names the pruned record under another chain", func(t *testing.T) *memLog {
			return pruned(t, 9, 9)
		}, func(t *testing.T) []audit.Checkpoint {
			return []audit.Checkpoint{chainCheckpoint(t, c, "replica-a", 9, full.at(t, 9).Hash)}
		}, 1, "records 1..9 are missing"},
		{"anchor names the pruned record with another hash", func(t *testing.T) *memLog {
			return pruned(t, 9, 9)
		}, func(t *testing.T) []audit.Checkpoint {
			return []audit.Checkpoint{chainCheckpoint(t, c, "replica-b", 9, someHash)}
		}, 1, "records 1..9 are missing"},
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
			// 1 a, 2 b, 3 B (names 2), 4 A (names 1 and log record 3),
			// 5 a, 6 b, pruned through 2 (covered by 3). Checkpoint 4 is
			// forged (with the keys) to name 3, a record that is still
			// there and not replica-a's.
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
			m := pruned(t, 10, 10)
			m.at(t, 13).Principal = "mallory"
			return m
		}, nil, 13, "altered"},
		{"the default chain's first record moved to a new chain", func(t *testing.T) *memLog {
			m := pruned(t, 10, 10)
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

	t.Run("altered between a start pruned before log positions and the covering checkpoint record", func(t *testing.T) {
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
	t.Run("the covering checkpoint record altered", func(t *testing.T) {
		// Pruned through 10: checkpoint record 11 covers the start with
		// its log position (10), and is itself altered (its detail, and
		// so its signed checkpoint, left as it was). The look-ahead finds
		// the signed log position: the break is 11, the start is covered.
		m := pruned(t, 10, 10)
		m.at(t, 11).Principal = "mallory"
		wantProblem(t, mustVerify(t, m, verifyOpts()), 11, "altered")
	})
}

// memStore is an audit.Backend and audit.Pruner over a memLog that seals
// like the SQL stores: after the log's newest record (its seq and hash),
// on the head of the writer's own chain, under one lock.
type memStore struct{ *memLog }

func (s memStore) AppendAudit(_ context.Context, chain *audit.Chain, events []*audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := lastSeq(s.memLog) + 1
	last := logHead(s.memLog, next)
	head := headOf(s.memLog, chain.ID(), next)
	for _, e := range events {
		if err := chain.SealAt(e, last, head); err != nil {
			return err
		}
		s.events = append(s.events, *e)
		head = audit.Head{Seq: e.Seq, Hash: e.Hash}
		last = head
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
// checkpoints come from replica-a only. Prune removes through a
// checkpoint's log position (the record before the checkpoint record,
// here replica-b's), never past what a sink has shipped, and the rest
// verifies from the checkpoint record with both chains continued.
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
		bSeq := emit(wb)
		cp, err := wa.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Chain != "replica-a" || cp.Seq != aSeq || cp.Hash != store.at(t, aSeq).Hash ||
			cp.LogSeq != bSeq || cp.LogHash != store.at(t, bSeq).Hash {
			t.Fatalf("checkpoint %+v, want replica-a's record %d and the log's %d", cp, aSeq, bSeq)
		}
		cps = append(cps, cp)
		cpRecords = append(cpRecords, lastSeq(store.memLog))
		emit(wb)
	}
	// Checkpoint records 5, 11, 17 name replica-a's records 3, 9, 15 and
	// the log's 4, 10, 16.
	if !slices.Equal(cpRecords, []int64{5, 11, 17}) || cps[1].Seq != 9 || cps[1].LogSeq != 10 {
		t.Fatalf("checkpoint records %v, checkpoints %+v", cpRecords, cps)
	}
	if rep := mustVerify(t, store, verifyOpts(cps...)); !rep.OK() || len(rep.Chains) != 2 || rep.Checkpoints != 3 ||
		rep.Anchors != 3 {
		t.Fatalf("before pruning: %+v", rep)
	}
	clock.set(time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC))
	cutoff := audit.RetentionCutoff(clock.Now(), 1) // 2026-03-01: January and February may go

	// A sink has shipped through 9: February's checkpoint would remove
	// record 10 (its log position), not shipped; January's (through 4)
	// is used.
	res, err := audit.Prune(ctx, store, wb, cutoff, 9)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != 4 || res.Deleted != 4 {
		t.Fatalf("keepAfter=9: pruned %+v, want through 4 (January's checkpoint record 5 first)", res)
	}
	rep := mustVerify(t, store, verifyOpts(cps...))
	if !rep.OK() || rep.PrunedBefore != 5 || rep.FirstSeq != 5 || rep.Chains[0].Chain != "replica-a" ||
		rep.Chains[0].FirstSeq != 5 || !rep.Chains[0].Continued {
		t.Fatalf("after pruning with keepAfter 9: %+v", rep)
	}
	// Still shipped through 9 only: nothing more.
	if res, err := audit.Prune(ctx, store, wb, cutoff, 9); err != nil || res.ThroughSeq != 0 || res.Deleted != 0 {
		t.Fatalf("keepAfter=9 again: %+v, %v; want nothing pruned", res, err)
	}
	// Shipped through 10: February's checkpoint is used, through 10.
	res, err = audit.Prune(ctx, store, wb, cutoff, 10)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThroughSeq != 10 || res.Deleted != 6 {
		t.Fatalf("keepAfter=10: pruned %+v, want 5..10", res)
	}
	// Nothing more before the cutoff.
	if res, err := audit.Prune(ctx, store, wb, cutoff, 0); err != nil || res.ThroughSeq != 0 {
		t.Fatalf("no sink, after pruning through February: %+v, %v; want nothing pruned", res, err)
	}
	// The audit.prune records name the log positions (and the records'
	// hashes) they pruned through.
	prunes, err := store.QueryAudit(ctx, audit.Query{Type: audit.AuditPrune, Ascending: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(prunes) != 2 {
		t.Fatalf("audit.prune records %+v", prunes)
	}
	for i, x := range []audit.Checkpoint{cps[0], cps[1]} {
		var d struct {
			ThroughSeq      int64  `json:"through_seq"`
			CheckpointHash  string `json:"checkpoint_hash"`
			CheckpointChain string `json:"checkpoint_chain"`
		}
		if err := json.Unmarshal([]byte(prunes[i].Detail), &d); err != nil {
			t.Fatal(err)
		}
		if d.ThroughSeq != x.LogSeq || d.CheckpointHash != x.LogHash || d.CheckpointChain != "replica-a" ||
			prunes[i].Chain != "replica-b" {
			t.Errorf("audit.prune record %d: %s (chain %q), want through %d", prunes[i].Seq, prunes[i].Detail,
				prunes[i].Chain, x.LogSeq)
		}
	}
	rep = mustVerify(t, store, verifyOpts(cps...))
	if !rep.OK() || rep.FirstSeq != 11 || rep.PrunedBefore != 11 || rep.Anchors != 1 {
		t.Fatalf("after pruning: %+v", rep)
	}
	// February's checkpoint record 11 (replica-a) is now the first; the
	// records of replica-b continue at 12. Both continue pruned records.
	want := []audit.ChainReport{
		{Chain: "replica-a", Records: 4, FirstSeq: 11, LastSeq: 17, HeadHash: store.at(t, 17).Hash, Continued: true},
		{Chain: "replica-b", Records: 6, FirstSeq: 12, LastSeq: 20, HeadHash: store.at(t, 20).Hash, Continued: true},
	}
	if diff := cmp.Diff(want, rep.Chains); diff != "" {
		t.Errorf("chains (-want +got):\n%s", diff)
	}
	// The writers carry on from their chains' heads.
	emit(wa)
	emit(wb)
	if rep := mustVerify(t, store, verifyOpts(cps...)); !rep.OK() || rep.LastSeq != 22 {
		t.Errorf("after more records: %+v", rep)
	}
}

// TestMultiChainUnsealedPrefix: records written before the chain existed
// are unsealed and belong to no chain. They are the default chain's
// start, so the first sealed record after them must be the default
// chain's, at genesis: a replica's chain right after them is refused, or
// whole chains could be stripped of their seals and passed off as that
// prefix. A record that names a chain is never part of the prefix.
func TestMultiChainUnsealedPrefix(t *testing.T) {
	c := audittest.Chain()
	opts := verifyOpts()
	opts.AcceptUnsealedPrefix = true
	// strip builds layout and strips the seals of records 1..n, as an
	// attacker without the keys can.
	strip := func(t *testing.T, layout string, n int64) *memLog {
		m := buildChains(t, c, layout)
		for s := int64(1); s <= n; s++ {
			e := m.at(t, s)
			e.Chain, e.PrevHash, e.Hash = "", "", ""
		}
		return m
	}
	// unseal is strip, with the rest sealed again on the heads that are
	// left: records 1..n were written before the chain existed, the rest
	// by writers with it.
	unseal := func(t *testing.T, layout string, n int64) *memLog {
		m := strip(t, layout, n)
		resealChains(t, m, c, n+1)
		return m
	}

	t.Run("the default chain, then replicas", func(t *testing.T) {
		// 1-3 unsealed; 4 d (genesis) 5 a 6 b 7 a 8 d 9 b 10 b 11 A 12 a 13 b 14 d.
		m := unseal(t, "dddd"+tamperLayout[:10], 3)
		if m.at(t, 4).PrevHash != audit.GenesisHash || m.at(t, 4).Chain != "" {
			t.Fatalf("record 4: %+v", *m.at(t, 4))
		}
		rep := mustVerify(t, m, opts)
		if !rep.OK() || rep.Unsealed != 3 || rep.Records != 11 || rep.FirstSeq != 1 || rep.LastSeq != 14 ||
			rep.Checkpoints != 1 {
			t.Fatalf("report %+v", rep)
		}
		want := []audit.ChainReport{
			{Chain: "", Records: 3, FirstSeq: 4, LastSeq: 14, HeadHash: m.at(t, 14).Hash},
			{Chain: "replica-a", Records: 4, FirstSeq: 5, LastSeq: 12, HeadHash: m.at(t, 12).Hash},
			{Chain: "replica-b", Records: 4, FirstSeq: 6, LastSeq: 13, HeadHash: m.at(t, 13).Hash},
		}
		if diff := cmp.Diff(want, rep.Chains); diff != "" {
			t.Errorf("chains (-want +got):\n%s", diff)
		}
		// Not accepted without the option.
		wantProblem(t, mustVerify(t, m, verifyOpts()), 1, "not sealed")
		// An unsealed record of a named chain is a break, prefix or not.
		m.at(t, 2).Chain = "replica-a"
		wantProblem(t, mustVerify(t, m, opts), 2, "not sealed")
	})
	t.Run("a default-chain checkpoint right after the prefix", func(t *testing.T) {
		// 4 D names the default chain's genesis and the log's record 3,
		// unsealed (no hash).
		m := unseal(t, "dddDab", 3)
		cp := exported(t, m, 4)
		if cp.Chain != "" || cp.Seq != 0 || cp.Hash != audit.GenesisHash || cp.LogSeq != 3 || cp.LogHash != "" {
			t.Fatalf("checkpoint record 4 holds %+v", cp)
		}
		rep := mustVerify(t, m, audit.VerifyOptions{Chain: opts.Chain, PublicKey: opts.PublicKey,
			AcceptUnsealedPrefix: true, Anchors: []audit.Checkpoint{cp}})
		if !rep.OK() || rep.Unsealed != 3 || rep.Checkpoints != 1 || rep.Records != 3 {
			t.Fatalf("report %+v", rep)
		}
		// Exported, it detects the removal of everything it covers
		// after the first unsealed records.
		m.remove(3, 6)
		rep = mustVerify(t, m, audit.VerifyOptions{Chain: opts.Chain, PublicKey: opts.PublicKey,
			AcceptUnsealedPrefix: true, Anchors: []audit.Checkpoint{cp}})
		wantProblem(t, rep, 3, "truncated")
	})
	t.Run("a replica's chain right after the prefix", func(t *testing.T) {
		// What no upgrade writes: the first sealed record (4) is
		// replica-a's, at genesis.
		m := unseal(t, "ddd"+tamperLayout[:10], 3)
		wantProblem(t, mustVerify(t, m, opts), 4,
			`the first sealed record after the unsealed prefix is on chain "replica-a", not the default chain`)
	})
	// Attacks: seals stripped from the start of an intact log (nothing
	// sealed again).
	tests := []struct {
		name    string
		layout  string
		n       int64
		bad     int64
		problem string
	}{
		// Every record before a replica's first stripped: the replica's
		// chain starts at genesis right after them, and every record
		// after them is intact.
		{"the default chain stripped, replica-a next", "ddabab", 2, 3, `on chain "replica-a", not the default chain`},
		{"the default chain and replica-a's first stripped, replica-b next", "dababb", 2, 3, `on chain "replica-b", not the default chain`},
		{"a default-chain checkpoint stripped, replica-b's checkpoint next", "dDBb", 2, 3, `on chain "replica-b"`},
		// Stripping part of a chain leaves its next record linked to a
		// record that is not sealed any more.
		{"the default chain's first records stripped", "dddabd", 2, 3, `chain "" does not start`},
		{"a replica's first record stripped", "adad", 1, 3, `chain "replica-a" does not start`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			intact := buildChains(t, c, tt.layout)
			if rep := mustVerify(t, intact, opts); !rep.OK() || rep.Unsealed != 0 {
				t.Fatalf("before: %+v", rep)
			}
			wantProblem(t, mustVerify(t, strip(t, tt.layout, tt.n), opts), tt.bad, tt.problem)
		})
	}
}

// TestChainsCheckpointSignature: a named chain's checkpoint signs its
// chain id and its log position (v2); the default chain's keeps the v1
// message while it has no log position (a log with one chain), so
// checkpoints exported before chains had names still verify. Every signed
// field, the log position included, is covered by the signature.
func TestChainsCheckpointSignature(t *testing.T) {
	c := audittest.Chain()
	at := time.Date(2026, 6, 1, 12, 0, 0, 987654321, time.UTC)
	head := audit.Head{Seq: 41, Hash: someHash}         // the chain's record
	logRec := audit.Head{Seq: 57, Hash: otherChainHash} // the log's, of another chain
	const atText = "2026-06-01T12:00:00.987654321Z"

	// A named chain's checkpoint whose record is also the log's newest:
	// v2, the log position lines zero and empty.
	named := signedAt(t, c, "replica-b", head, head, at)
	if err := named.Verify(c.PublicKey()); err != nil {
		t.Fatalf("v2 checkpoint: %v", err)
	}
	wantMsg := "portcullis-audit-checkpoint-v2\nreplica-b\n41\n" + someHash + "\n0\n\n" + atText
	if got := string(named.SignedMessage()); got != wantMsg {
		t.Errorf("v2 SignedMessage = %q, want %q", got, wantMsg)
	}
	if named.LogSeq != 0 || named.LogHash != "" {
		t.Errorf("checkpoint sealed right after its chain's record has log position %d %q", named.LogSeq, named.LogHash)
	}
	// With other chains' records after the chain's: the log position is
	// the log's record just before the checkpoint record.
	logged := signedAt(t, c, "replica-b", logRec, head, at)
	wantMsg = "portcullis-audit-checkpoint-v2\nreplica-b\n41\n" + someHash + "\n57\n" + otherChainHash + "\n" + atText
	if got := string(logged.SignedMessage()); got != wantMsg {
		t.Errorf("v2 SignedMessage with a log position = %q, want %q", got, wantMsg)
	}
	if err := logged.Verify(c.PublicKey()); err != nil {
		t.Fatalf("v2 checkpoint with a log position: %v", err)
	}
	for _, x := range []struct {
		cp   audit.Checkpoint
		seq  int64
		hash string
	}{{named, 41, someHash}, {logged, 57, otherChainHash}} {
		if seq, hash := x.cp.LogPosition(); seq != x.seq || hash != x.hash {
			t.Errorf("LogPosition of %+v = %d %s, want %d %s", x.cp, seq, hash, x.seq, x.hash)
		}
	}
	// Through JSON (as exported) and back.
	for _, cp := range []audit.Checkpoint{named, logged} {
		b, err := json.Marshal(cp)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"chain":"replica-b"`) {
			t.Errorf("exported checkpoint %s does not name its chain", b)
		}
		if hasLog := strings.Contains(string(b), `"log_seq"`) || strings.Contains(string(b), `"log_hash"`); hasLog != (cp.LogSeq != 0) {
			t.Errorf("exported checkpoint %s: log position fields present = %v", b, hasLog)
		}
		back, err := audit.ParseCheckpoint(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(cp, back); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
		if err := back.Verify(c.PublicKey()); err != nil {
			t.Errorf("after the round trip: %v", err)
		}
	}
	if b, _ := json.Marshal(logged); !strings.Contains(string(b), `"log_seq":57,"log_hash":"`+otherChainHash+`"`) {
		t.Errorf("exported checkpoint %s does not hold its log position", b)
	}
	// Every signed field is covered: changing one breaks the signature.
	for _, x := range []struct {
		name   string
		cp     audit.Checkpoint
		change func(*audit.Checkpoint)
	}{
		{"chain replica-a", named, func(cp *audit.Checkpoint) { cp.Chain = "replica-a" }},
		{"default chain", named, func(cp *audit.Checkpoint) { cp.Chain = "" }},
		{"chain replica-b2", named, func(cp *audit.Checkpoint) { cp.Chain = "replica-b2" }},
		{"chain Replica-b", named, func(cp *audit.Checkpoint) { cp.Chain = "Replica-b" }},
		{"seq", named, func(cp *audit.Checkpoint) { cp.Seq = 40 }},
		{"hash", named, func(cp *audit.Checkpoint) { cp.Hash = otherChainHash }},
		{"time", named, func(cp *audit.Checkpoint) { cp.Time = cp.Time.Add(time.Nanosecond) }},
		{"log position added", named, func(cp *audit.Checkpoint) { cp.LogSeq, cp.LogHash = 57, otherChainHash }},
		{"log seq", logged, func(cp *audit.Checkpoint) { cp.LogSeq = 58 }},
		{"log seq of the log's last record moved back", logged, func(cp *audit.Checkpoint) { cp.LogSeq = 42 }},
		{"log hash", logged, func(cp *audit.Checkpoint) { cp.LogHash = someHash }},
		{"log hash emptied", logged, func(cp *audit.Checkpoint) { cp.LogHash = "" }},
		{"log position removed", logged, func(cp *audit.Checkpoint) { cp.LogSeq, cp.LogHash = 0, "" }},
		{"chain of a logged checkpoint", logged, func(cp *audit.Checkpoint) { cp.Chain = "replica-a" }},
	} {
		cp := x.cp
		x.change(&cp)
		if err := cp.Verify(c.PublicKey()); !errors.Is(err, audit.ErrBadCheckpoint) {
			t.Errorf("%s changed: Verify = %v, want ErrBadCheckpoint", x.name, err)
		}
	}
	// Another chain's signature over the same positions does not transfer.
	cp := named
	cp.Signature = signedAt(t, c, "replica-a", head, head, at).Signature
	if err := cp.Verify(c.PublicKey()); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("replica-a's signature on replica-b's checkpoint: %v", err)
	}

	def := signedAt(t, c, "", head, head, at)
	v1 := "portcullis-audit-checkpoint-v1\n41\n" + someHash + "\n" + atText
	if got := string(def.SignedMessage()); got != v1 {
		t.Errorf("default chain SignedMessage = %q, want %q", got, v1)
	}
	if err := def.Verify(c.PublicKey()); err != nil {
		t.Errorf("v1 checkpoint: %v", err)
	}
	b, _ := json.Marshal(def)
	if strings.Contains(string(b), `"chain"`) || strings.Contains(string(b), `"log_`) {
		t.Errorf("default-chain checkpoint %s has a chain or log position field", b)
	}
	// A v1 signature does not verify once the checkpoint is given a chain.
	relabelled := def
	relabelled.Chain = "replica-b"
	if err := relabelled.Verify(c.PublicKey()); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("v1 checkpoint relabelled to a chain: %v", err)
	}
	// The default chain's checkpoint with a log position (replicas wrote
	// between) is v2 with an empty chain line, and cannot be passed off as
	// a v1 checkpoint by dropping the log position.
	defLogged := signedAt(t, c, "", logRec, head, at)
	wantMsg = "portcullis-audit-checkpoint-v2\n\n41\n" + someHash + "\n57\n" + otherChainHash + "\n" + atText
	if got := string(defLogged.SignedMessage()); got != wantMsg {
		t.Errorf("default chain SignedMessage with a log position = %q, want %q", got, wantMsg)
	}
	if err := defLogged.Verify(c.PublicKey()); err != nil {
		t.Errorf("default-chain v2 checkpoint: %v", err)
	}
	if b, _ := json.Marshal(defLogged); strings.Contains(string(b), `"chain"`) || !strings.Contains(string(b), `"log_seq":57`) {
		t.Errorf("default-chain checkpoint with a log position exported as %s", b)
	}
	stripped := defLogged
	stripped.LogSeq, stripped.LogHash = 0, ""
	if err := stripped.Verify(c.PublicKey()); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("default-chain checkpoint stripped of its log position: %v", err)
	}
	cp = defLogged
	cp.Signature = def.Signature
	if err := cp.Verify(c.PublicKey()); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("v1 signature on a checkpoint with a log position: %v", err)
	}

	// A checkpoint record sealed by the code before chains (golden, same
	// keys) still parses, verifies and is a default-chain checkpoint.
	old, err := audit.ParseCheckpoint([]byte(goldenV1Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Verify(c.PublicKey()); err != nil || old.Chain != "" || old.Seq != 7 || old.Hash != someHash ||
		old.LogSeq != 0 || old.LogHash != "" {
		t.Errorf("pre-chains checkpoint %+v: %v", old, err)
	}
	if seq, hash := old.LogPosition(); seq != 7 || hash != someHash {
		t.Errorf("pre-chains checkpoint LogPosition = %d %s", seq, hash)
	}
	h7 := audit.Head{Seq: 7, Hash: someHash}
	if diff := cmp.Diff(old, signedAt(t, c, "", h7, h7, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))); diff != "" {
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
	// And log positions no log can have: not after the chain's record, a
	// hash that is not one, a hash without a position.
	lb, _ := json.Marshal(logged)
	valid := string(lb)
	swap := func(old, repl string) string {
		t.Helper()
		if !strings.Contains(valid, old) {
			t.Fatalf("%q not in %s", old, valid)
		}
		return strings.Replace(valid, old, repl, 1)
	}
	for _, x := range []struct{ name, in string }{
		{"negative log seq", swap(`"log_seq":57`, `"log_seq":-1`)},
		{"log seq of the chain's record", swap(`"log_seq":57`, `"log_seq":41`)},
		{"log seq before the chain's record", swap(`"log_seq":57`, `"log_seq":40`)},
		{"log seq as a string", swap(`"log_seq":57`, `"log_seq":"57"`)},
		{"upper-case log hash", swap(otherChainHash, strings.ToUpper(otherChainHash))},
		{"short log hash", swap(otherChainHash, otherChainHash[:63])},
		{"long log hash", swap(otherChainHash, otherChainHash+"0")},
		{"log hash not hex", swap(otherChainHash, strings.Repeat("g", 64))},
		{"log hash without a log seq", swap(`"log_seq":57,`, ``)},
		{"log hash with log seq 0", swap(`"log_seq":57`, `"log_seq":0`)},
	} {
		if cp, err := audit.ParseCheckpoint([]byte(x.in)); err == nil {
			t.Errorf("%s: ParseCheckpoint(%s) = %+v, want an error", x.name, x.in, cp)
		}
	}
	// An empty log hash names an unsealed record (from before the chain
	// existed); the record right after the chain's is the nearest log
	// position; a chain with no record yet (seq 0) may name any.
	for _, x := range []struct{ name, in string }{
		{"empty log hash", swap(`,"log_hash":"`+otherChainHash+`"`, ``)},
		{"log seq right after the chain's record", swap(`"log_seq":57`, `"log_seq":42`)},
		{"the original", valid},
	} {
		if _, err := audit.ParseCheckpoint([]byte(x.in)); err != nil {
			t.Errorf("%s: ParseCheckpoint(%s): %v", x.name, x.in, err)
		}
	}
	genesis := signedAt(t, c, "replica-b", audit.Head{Seq: 1, Hash: otherChainHash}, audit.Head{Hash: audit.GenesisHash}, at)
	if genesis.Seq != 0 || genesis.LogSeq != 1 || genesis.LogHash != otherChainHash || genesis.Verify(c.PublicKey()) != nil {
		t.Errorf("checkpoint of a chain with no record after log record 1: %+v", genesis)
	}
}

// otherChainHash is a valid-looking hash of another chain's record.
var otherChainHash = hexSHA256("another chain's record")

// signedAt returns the checkpoint that a record of chain id sealed at time
// at after last (the log's newest record) on prev (the chain's head) holds.
func signedAt(t testing.TB, c *audit.Chain, id string, last, prev audit.Head, at time.Time) audit.Checkpoint {
	t.Helper()
	e := audit.Event{Type: audit.AuditCheckpoint, Time: at}
	if err := withID(t, c, id).SealAt(&e, last, prev); err != nil {
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
	h41 := audit.Head{Seq: 41, Hash: someHash}
	viaSealAt := fullEvent()
	if err := withID(t, c, "").SealAt(&viaSealAt, h41, h41); err != nil {
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
	// So does SealAt with the chain's record as the log's newest: a log
	// with one chain seals checkpoint records as before chains.
	h7 := audit.Head{Seq: 7, Hash: someHash}
	cpe2 := audit.Event{ID: "evt_cp", Type: audit.AuditCheckpoint, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	if err := withID(t, c, "").SealAt(&cpe2, h7, h7); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cpe2, cpe) {
		t.Errorf("default-chain checkpoint record via SealAt %+v, via Seal %+v", cpe2, cpe)
	}

	named := fullEvent()
	if err := withID(t, c, "x").SealAt(&named, h41, h41); err != nil {
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
	if err := b.SealAt(&e, audit.Head{Seq: 4, Hash: otherChainHash}, audit.Head{Seq: 2, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	if !c.Check(&e) || !a.Check(&e) || e.Chain != "replica-b" {
		t.Errorf("record sealed into replica-b (chain %q) does not check under other ids of the same key", e.Chain)
	}
	if newChain(t, otherChainKey).Check(&e) {
		t.Error("another key checks it")
	}
}

// TestChainsSealAt: SealAt places a record right after the log's newest
// record, linked to its chain's head (at or before that record), and
// refuses anything else without touching the event. A checkpoint record
// names both: its chain's head and, when that is not the same record, the
// log's newest.
func TestChainsSealAt(t *testing.T) {
	c := withID(t, audittest.Chain(), "replica-a")
	for _, x := range []struct {
		last, prev audit.Head
	}{
		{audit.Head{Seq: 4, Hash: otherChainHash}, audit.Head{Seq: 5, Hash: someHash}}, // the chain ahead of the log
		{audit.Head{}, audit.Head{Seq: 1, Hash: someHash}},                             // a chain head in an empty log
		{audit.Head{Seq: -1}, audit.Head{Hash: audit.GenesisHash}},
		{audit.Head{}, audit.Head{Seq: -1, Hash: audit.GenesisHash}},
		{audit.Head{Seq: 3}, audit.Head{Seq: -1, Hash: audit.GenesisHash}},
		{audit.Head{Seq: -3}, audit.Head{Seq: -5, Hash: audit.GenesisHash}},
	} {
		for _, typ := range []audit.Type{audit.ToolCallEnd, audit.AuditCheckpoint} {
			e := fullEvent()
			e.Type = typ
			before := e
			if err := c.SealAt(&e, x.last, x.prev); err == nil {
				t.Errorf("SealAt(%s, last %d, head %d) accepted", typ, x.last.Seq, x.prev.Seq)
			}
			if !reflect.DeepEqual(e, before) {
				t.Errorf("a refused SealAt(%s, last %d, head %d) changed the event: %+v", typ, x.last.Seq, x.prev.Seq, e)
			}
		}
	}
	// A gap in the chain (other chains' records between) is the normal
	// case; the log's newest record sets the sequence, not the link.
	e := fullEvent()
	e.Chain = "forged" // SealAt sets the chain, whatever the caller put there
	if err := c.SealAt(&e, audit.Head{Seq: 8, Hash: otherChainHash}, audit.Head{Seq: 2, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	if e.Chain != "replica-a" || e.Seq != 9 || e.PrevHash != someHash || !c.Check(&e) {
		t.Errorf("sealed %+v", e)
	}
	// A record that is not a checkpoint does not depend on the log's
	// newest record's hash (the hash is not part of the row).
	e2 := fullEvent()
	if err := c.SealAt(&e2, audit.Head{Seq: 8, Hash: audit.GenesisHash}, audit.Head{Seq: 2, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e, e2) {
		t.Errorf("the log head's hash changed a record: %+v, %+v", e, e2)
	}
	// The first record of a chain may come anywhere in the log, and the
	// first record of the log is 1.
	first := fullEvent()
	if err := c.SealAt(&first, audit.Head{Seq: 999, Hash: otherChainHash}, audit.Head{Hash: audit.GenesisHash}); err != nil ||
		first.PrevHash != audit.GenesisHash || first.Seq != 1000 {
		t.Errorf("first record after 999: %v %+v", err, first)
	}
	if err := c.SealAt(&first, audit.Head{}, audit.Head{Hash: audit.GenesisHash}); err != nil || first.Seq != 1 {
		t.Errorf("first record of the log: %v %+v", err, first)
	}
	opts := cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Signature" }, cmp.Ignore())
	pub := base64.StdEncoding.EncodeToString(c.PublicKey())
	for _, x := range []struct {
		name       string
		last, prev audit.Head
		want       audit.Checkpoint
	}{
		// A checkpoint names the head it was sealed on, with the chain
		// id, and the log's record before it.
		{"after another chain's record", audit.Head{Seq: 8, Hash: otherChainHash}, audit.Head{Seq: 2, Hash: someHash},
			audit.Checkpoint{Chain: "replica-a", Seq: 2, Hash: someHash, LogSeq: 8, LogHash: otherChainHash}},
		// Right after its chain's record: no log position.
		{"after its chain's record", audit.Head{Seq: 2, Hash: someHash}, audit.Head{Seq: 2, Hash: someHash},
			audit.Checkpoint{Chain: "replica-a", Seq: 2, Hash: someHash}},
		// A chain with no record yet: its genesis head and the log's
		// record, even an unsealed one (no hash).
		{"a new chain", audit.Head{Seq: 8, Hash: otherChainHash}, audit.Head{Hash: audit.GenesisHash},
			audit.Checkpoint{Chain: "replica-a", Hash: audit.GenesisHash, LogSeq: 8, LogHash: otherChainHash}},
		{"a new chain after an unsealed record", audit.Head{Seq: 3}, audit.Head{Hash: audit.GenesisHash},
			audit.Checkpoint{Chain: "replica-a", Hash: audit.GenesisHash, LogSeq: 3}},
		{"a new chain in an empty log", audit.Head{}, audit.Head{Hash: audit.GenesisHash},
			audit.Checkpoint{Chain: "replica-a", Hash: audit.GenesisHash}},
	} {
		cpe := audit.Event{Type: audit.AuditCheckpoint, Time: t0, Detail: "overwritten"}
		if err := c.SealAt(&cpe, x.last, x.prev); err != nil {
			t.Fatalf("%s: %v", x.name, err)
		}
		cp, err := audit.ParseCheckpoint([]byte(cpe.Detail))
		if err != nil {
			t.Fatalf("%s: %v", x.name, err)
		}
		x.want.Time, x.want.PublicKey = t0, pub
		if diff := cmp.Diff(x.want, cp, opts); diff != "" {
			t.Errorf("%s: checkpoint (-want +got):\n%s", x.name, diff)
		}
		if err := cp.Verify(c.PublicKey()); err != nil {
			t.Errorf("%s: Verify: %v", x.name, err)
		}
		if cpe.Seq != x.last.Seq+1 || cpe.PrevHash != x.prev.Hash || !c.Check(&cpe) {
			t.Errorf("%s: checkpoint record %+v", x.name, cpe)
		}
	}
	// A checkpoint record does depend on the log head's hash.
	var details []string
	for _, h := range []string{otherChainHash, someHash} {
		cpe := audit.Event{Type: audit.AuditCheckpoint, Time: t0}
		if err := c.SealAt(&cpe, audit.Head{Seq: 8, Hash: h}, audit.Head{Seq: 2, Hash: someHash}); err != nil {
			t.Fatal(err)
		}
		details = append(details, cpe.Detail)
	}
	if details[0] == details[1] {
		t.Errorf("checkpoints after different log records are the same: %s", details[0])
	}
	// Seal is SealAt with the chain's head as the log's newest record.
	viaSeal := fullEvent()
	if err := c.Seal(&viaSeal, 8, someHash); err != nil {
		t.Fatal(err)
	}
	viaSealAt := fullEvent()
	if err := c.SealAt(&viaSealAt, audit.Head{Seq: 8, Hash: someHash}, audit.Head{Seq: 8, Hash: someHash}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(viaSeal, viaSealAt) || viaSeal.Seq != 9 {
		t.Errorf("Seal %+v, SealAt %+v", viaSeal, viaSealAt)
	}
}

// TestMultiChainAnchorCountedByLogRecord: an exported checkpoint whose
// chain record is none (the chain's first record was the checkpoint) is
// checked by its log record, and counted.
func TestMultiChainAnchorCountedByLogRecord(t *testing.T) {
	m := buildChains(t, audittest.Chain(), "bbbbA")
	rep := mustVerify(t, m, verifyOpts(exported(t, m, 5)))
	if !rep.OK() || rep.Anchors != 1 {
		t.Errorf("report %+v, want intact with the one anchor checked", rep)
	}
}
