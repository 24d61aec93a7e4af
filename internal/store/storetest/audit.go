package storetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
)

// auditEvent is a realistic record with most fields set; i varies them.
func auditEvent(i int, when time.Time) *audit.Event {
	e := &audit.Event{
		ID: fmt.Sprintf("evt_%05d", i), Time: when, Type: audit.ToolCallStart,
		Principal: []string{"alice", "bob", "%"}[i%3], Roles: []string{"guest", "developer"}, Session: fmt.Sprintf("sess-%d", i%2),
		RequestID: fmt.Sprintf("req-%d", i), RemoteAddr: "192.0.2.1:4000", Tool: []string{"read_file", "git_commit"}[i%2],
		Server: "files", ArgsDigest: "hmac-sha256:" + strings.Repeat("0", 64),
		Args: json.RawMessage(fmt.Sprintf(`{"path":"f%d.txt"}`, i)), Decision: audit.DecisionAllow, Status: audit.StatusStarted,
	}
	if i%4 == 3 {
		e.Type, e.Status, e.Duration, e.Reason = audit.ToolCallEnd, audit.StatusOK, time.Duration(i)*time.Millisecond, "OK"
		e.ResultDigest, e.Detail = "hmac-sha256:"+strings.Repeat("1", 64), "rule 2"
	}
	if i%5 == 4 {
		e.Type, e.Decision, e.Status, e.Roles, e.Server = audit.PolicyDeny, audit.DecisionDeny, audit.StatusRefused, []string{"guest"}, ""
	}
	return e
}

// appendEvents appends events numbered from..to-1 (one second apart) in
// one transaction and returns them as sealed.
func appendEvents(t *testing.T, b Backend, from, to int) []*audit.Event {
	t.Helper()
	var es []*audit.Event
	for i := from; i < to; i++ {
		es = append(es, auditEvent(i, at(time.Duration(i)*time.Second)))
	}
	if err := b.AppendAudit(t.Context(), audittest.Chain(), es); err != nil {
		t.Fatalf("AppendAudit(%d..%d): %v", from, to-1, err)
	}
	return es
}

// allEvents returns every stored record, oldest first.
func allEvents(t *testing.T, b Backend) []audit.Event {
	t.Helper()
	es, err := b.QueryAudit(t.Context(), audit.Query{Ascending: true, Limit: audit.MaxQueryLimit})
	must(t, err)
	return es
}

func seqs(es []audit.Event) []int64 {
	out := []int64{}
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func eventIDs(es []audit.Event) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// verifyChain runs audit verify over b and returns its report.
func verifyChain(t *testing.T, b Backend, anchors ...audit.Checkpoint) audit.VerifyReport {
	t.Helper()
	c := audittest.Chain()
	rep, err := audit.Verify(t.Context(), b, audit.VerifyOptions{Chain: c, PublicKey: c.PublicKey(), Anchors: anchors})
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	return rep
}

func wantIntact(t *testing.T, rep audit.VerifyReport, records int64) {
	t.Helper()
	if !rep.OK() || rep.Records != records {
		t.Errorf("audit.Verify = %+v; want intact with %d records", rep, records)
	}
}

// clock is a settable clock for audit writers.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// newWriter starts a group-commit audit writer over b, closed when t ends.
func newWriter(t *testing.T, b Backend, now func() time.Time) *audit.Writer {
	t.Helper()
	return newChainWriter(t, b, now, "")
}

// newChainWriter is newWriter sealing into the chain named id.
func newChainWriter(t *testing.T, b Backend, now func() time.Time, id string) *audit.Writer {
	t.Helper()
	chain, err := audittest.Chain().WithID(id)
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.NewWriter(audit.Config{CommitTimeout: time.Minute, QueueSize: 64, MaxBatch: 16,
		Linger: 200 * time.Microsecond, Chain: chain}, b, now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(context.Background()); err != nil {
			t.Errorf("audit writer Close: %v", err)
		}
	})
	return w
}

var auditCases = []testCase{
	{name: "AppendSealsOneChain", run: func(t *testing.T, bs []Backend) {
		b, c := bs[0], audittest.Chain()
		var sealed []*audit.Event
		// Batches of 1, 2 and 3: the chain continues across transactions.
		for from, size := 0, 1; size <= 3; from, size = from+size, size+1 {
			sealed = append(sealed, appendEvents(t, b, from, from+size)...)
		}
		prev := audit.GenesisHash
		for i, e := range sealed {
			if e.Seq != int64(i+1) || e.PrevHash != prev || e.Hash == "" {
				t.Errorf("appended event %d: seq %d prev %.8s hash %.8s; want seq %d after %.8s", i, e.Seq, e.PrevHash, e.Hash, i+1, prev)
			}
			prev = e.Hash
		}
		stored := allEvents(t, b)
		if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6}, seqs(stored)); diff != "" {
			t.Fatalf("stored sequence (-want +got):\n%s", diff)
		}
		for i := range stored {
			if stored[i].ID != sealed[i].ID || stored[i].Hash != sealed[i].Hash || stored[i].PrevHash != sealed[i].PrevHash {
				t.Errorf("stored record %d = %s %.8s, appended %s %.8s", i+1, stored[i].ID, stored[i].Hash, sealed[i].ID, sealed[i].Hash)
			}
			// The seal covers what is stored, not what was handed in.
			if !c.Check(&stored[i]) {
				t.Errorf("stored record %d does not check against its seal", stored[i].Seq)
			}
		}
		wantIntact(t, verifyChain(t, b), 6)
	}},
	{name: "RoundTrip", run: func(t *testing.T, bs []Backend) {
		b := bs[0]
		full := &audit.Event{
			ID: "evt_full", Time: t0, Type: audit.ToolCallEnd, Principal: "alice",
			Roles: []string{"guest", "developer"}, Session: "s1", RequestID: "r1", RemoteAddr: "127.0.0.1:5",
			Tool: "read_file", Server: "srv", ArgsDigest: "hmac-sha256:00", Args: json.RawMessage(`{"path":"a.txt","n":[1,2]}`),
			Decision: audit.DecisionAllow, Reason: "OK", Status: audit.StatusOK, Duration: 1500 * time.Microsecond,
			ResultDigest: "hmac-sha256:11", Error: "generic", Detail: `rule 3 "quoted", ünïcödé`,
		}
		bare := &audit.Event{ID: "evt_bare", Time: at(time.Second), Type: audit.ServerStart}
		must(t, b.AppendAudit(t.Context(), audittest.Chain(), []*audit.Event{full, bare}))
		wantFull := *full
		wantFull.Roles = []string{"developer", "guest"} // stored, and sealed, sorted
		got := allEvents(t, b)
		if diff := cmp.Diff([]audit.Event{wantFull, *bare}, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("stored records (-appended +stored):\n%s", diff)
		}
		for i := range got {
			if !audittest.Chain().Check(&got[i]) {
				t.Errorf("record %d does not check against its seal", got[i].Seq)
			}
		}
	}},
	{name: "AppendIsAtomic", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		first := appendEvents(t, b, 0, 2)
		dup := auditEvent(0, at(time.Hour)) // the id of a stored record
		refused := []*audit.Event{auditEvent(7, at(time.Hour)), dup}
		err := b.AppendAudit(ctx, audittest.Chain(), refused)
		if err == nil {
			t.Fatal("AppendAudit with a duplicate id = nil, want an error")
		}
		for _, e := range refused { // no place in the chain was given
			if e.Seq != 0 || e.PrevHash != "" || e.Hash != "" {
				t.Errorf("event %s of the refused append kept seq %d hash %.8s", e.ID, e.Seq, e.Hash)
			}
		}
		if err := b.AppendAudit(ctx, nil, []*audit.Event{auditEvent(8, at(time.Hour))}); err == nil {
			t.Error("AppendAudit without a chain = nil, want an error")
		}
		if diff := cmp.Diff([]string{first[0].ID, first[1].ID}, eventIDs(allEvents(t, b))); diff != "" {
			t.Fatalf("after refused appends (-want +got):\n%s", diff)
		}
		next := appendEvents(t, b, 2, 3)
		if next[0].Seq != 3 || next[0].PrevHash != first[1].Hash {
			t.Errorf("append after a failed one: seq %d prev %.8s; want 3 after %.8s", next[0].Seq, next[0].PrevHash, first[1].Hash)
		}
		wantIntact(t, verifyChain(t, b), 3)
	}},
	{name: "QueryFilters", run: func(t *testing.T, bs []Backend) {
		b := bs[0]
		var all []*audit.Event
		for from := 0; from < 20; from += 5 {
			all = append(all, appendEvents(t, b, from, from+5)...)
		}
		newest := func(keep func(e *audit.Event) bool) []string {
			out := []string{}
			for i := len(all) - 1; i >= 0; i-- {
				if keep(all[i]) {
					out = append(out, all[i].ID)
				}
			}
			return out
		}
		for _, tc := range []struct {
			name string
			q    audit.Query
			keep func(e *audit.Event) bool
		}{
			{"principal", audit.Query{Principal: "alice"}, func(e *audit.Event) bool { return e.Principal == "alice" }},
			{"principal is a literal", audit.Query{Principal: "%"}, func(e *audit.Event) bool { return e.Principal == "%" }},
			{"principal matches whole", audit.Query{Principal: "ali"}, func(*audit.Event) bool { return false }},
			{"role", audit.Query{Role: "developer"}, func(e *audit.Event) bool { return slices.Contains(e.Roles, "developer") }},
			{"role matches whole names", audit.Query{Role: "guest,developer"}, func(*audit.Event) bool { return false }},
			{"role part", audit.Query{Role: "dev"}, func(*audit.Event) bool { return false }},
			{"tool", audit.Query{Tool: "git_commit"}, func(e *audit.Event) bool { return e.Tool == "git_commit" }},
			{"server", audit.Query{Server: "files"}, func(e *audit.Event) bool { return e.Server == "files" }},
			{"type", audit.Query{Type: audit.ToolCallEnd}, func(e *audit.Event) bool { return e.Type == audit.ToolCallEnd }},
			{"status", audit.Query{Status: audit.StatusRefused}, func(e *audit.Event) bool { return e.Status == audit.StatusRefused }},
			{"decision", audit.Query{Decision: audit.DecisionDeny}, func(e *audit.Event) bool { return e.Decision == audit.DecisionDeny }},
			{"request id", audit.Query{RequestID: "req-7"}, func(e *audit.Event) bool { return e.RequestID == "req-7" }},
			{"session", audit.Query{Session: "sess-1"}, func(e *audit.Event) bool { return e.Session == "sess-1" }},
			{"since is inclusive", audit.Query{Since: at(15 * time.Second)}, func(e *audit.Event) bool { return !e.Time.Before(at(15 * time.Second)) }},
			{"until is exclusive", audit.Query{Until: at(3 * time.Second)}, func(e *audit.Event) bool { return e.Time.Before(at(3 * time.Second)) }},
			{"since and until", audit.Query{Since: at(5 * time.Second), Until: at(8 * time.Second)},
				func(e *audit.Event) bool {
					return !e.Time.Before(at(5*time.Second)) && e.Time.Before(at(8*time.Second))
				}},
			{"before seq", audit.Query{BeforeSeq: 4}, func(e *audit.Event) bool { return e.Seq < 4 }},
			{"after seq", audit.Query{AfterSeq: 17}, func(e *audit.Event) bool { return e.Seq > 17 }},
			{"principal and tool", audit.Query{Principal: "bob", Tool: "read_file"},
				func(e *audit.Event) bool { return e.Principal == "bob" && e.Tool == "read_file" }},
			{"hostile value", audit.Query{Principal: `' OR 1=1 --`}, func(*audit.Event) bool { return false }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := b.QueryAudit(t.Context(), tc.q)
				must(t, err)
				if diff := cmp.Diff(newest(tc.keep), eventIDs(got)); diff != "" {
					t.Errorf("QueryAudit(%+v), newest first (-want +got):\n%s", tc.q, diff)
				}
			})
		}
	}},
	{name: "QueryOrderAndLimits", run: func(t *testing.T, bs []Backend) {
		b := bs[0]
		for from := 0; from < 120; from += 40 {
			appendEvents(t, b, from, from+40)
		}
		rng := func(from, to int64) []int64 { // from..to, either direction
			out := []int64{}
			for s := from; ; {
				out = append(out, s)
				if s == to {
					return out
				}
				if from < to {
					s++
				} else {
					s--
				}
			}
		}
		for _, tc := range []struct {
			name string
			q    audit.Query
			want []int64
		}{
			{"default: newest 100", audit.Query{}, rng(120, 21)},
			{"limit", audit.Query{Limit: 3}, []int64{120, 119, 118}},
			{"ascending", audit.Query{Ascending: true, Limit: 3}, []int64{1, 2, 3}},
			{"ascending default limit", audit.Query{Ascending: true}, rng(1, 100)},
			{"page backwards", audit.Query{BeforeSeq: 50, Limit: 3}, []int64{49, 48, 47}},
			{"page forwards", audit.Query{AfterSeq: 50, Ascending: true, Limit: 3}, []int64{51, 52, 53}},
			{"after, newest first", audit.Query{AfterSeq: 117}, []int64{120, 119, 118}},
			{"between", audit.Query{AfterSeq: 10, BeforeSeq: 14, Ascending: true}, []int64{11, 12, 13}},
			{"nothing after the head", audit.Query{AfterSeq: 120}, nil},
			{"large limit", audit.Query{Limit: 1000, Ascending: true}, rng(1, 120)},
		} {
			got, err := b.QueryAudit(t.Context(), tc.q)
			must(t, err)
			if diff := cmp.Diff(tc.want, seqs(got), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: QueryAudit(%+v) sequence (-want +got):\n%s", tc.name, tc.q, diff)
			}
		}
	}},
	{name: "ExportInOrder", run: func(t *testing.T, bs []Backend) {
		// Export and forwarding page forwards with AfterSeq, oldest first.
		b := bs[0]
		for from := 0; from < 30; from += 7 {
			appendEvents(t, b, from, min(from+7, 30))
		}
		var buf bytes.Buffer
		x, err := audit.NewExporter(&buf, audit.FormatJSONL)
		must(t, err)
		q := audit.Query{Principal: "alice", Ascending: true, Limit: 3}
		pages := 0
		for {
			page, err := b.QueryAudit(t.Context(), q)
			must(t, err)
			pages++
			for i := range page {
				must(t, x.Write(&page[i]))
			}
			if len(page) < q.Limit {
				break
			}
			q.AfterSeq = page[len(page)-1].Seq
		}
		must(t, x.Flush())
		var got []string
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			var e audit.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("export line %q: %v", sc.Text(), err)
			}
			got = append(got, fmt.Sprintf("%d/%s", e.Seq, e.Principal))
		}
		var want []string
		for i := 0; i < 30; i += 3 {
			want = append(want, fmt.Sprintf("%d/alice", i+1))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("exported alice's records, oldest first (-want +got):\n%s", diff)
		}
		if pages != 4 {
			t.Errorf("export read %d pages of 3, want 4", pages)
		}
	}},
	{name: "WritersOnTwoReplicas", handles: 2, run: func(t *testing.T, bs []Backend) {
		// Two gateways' group-commit writers on one store, each sealing
		// into its own chain: every record acknowledged is stored once,
		// the sequence is global and gap-free, each chain links only its
		// own records, and the log verifies as two chains.
		const perEmitter = 10
		ids := []string{"replica-a", "replica-b"}
		ws := []*audit.Writer{newChainWriter(t, bs[0], nil, ids[0]), newChainWriter(t, bs[1], nil, ids[1])}
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				for j := range perEmitter {
					e := &audit.Event{Type: audit.ToolCallStart, Principal: fmt.Sprintf("p%d", i), RequestID: fmt.Sprintf("r%d-%d", i, j)}
					if err := ws[i%2].Emit(t.Context(), e); err != nil {
						t.Errorf("Emit: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		const total = racers * perEmitter
		stored := allEvents(t, bs[0])
		want := make([]int64, total)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if diff := cmp.Diff(want, seqs(stored)); diff != "" {
			t.Errorf("sequence of %d records from two writers (-want +got):\n%s", total, diff)
		}
		reqs := map[string]bool{}
		heads := map[string]string{}
		for _, e := range stored {
			if reqs[e.RequestID] {
				t.Errorf("request %s stored twice", e.RequestID)
			}
			reqs[e.RequestID] = true
			var i int
			if _, err := fmt.Sscanf(e.Principal, "p%d", &i); err != nil || e.Chain != ids[i%2] {
				t.Errorf("record %d of %s is on chain %q, want %q", e.Seq, e.Principal, e.Chain, ids[i%2])
			}
			prev, ok := heads[e.Chain]
			if !ok {
				prev = audit.GenesisHash
			}
			if e.PrevHash != prev {
				t.Errorf("record %d (chain %s) links to %.8s, want its chain's previous record %.8s", e.Seq, e.Chain, e.PrevHash, prev)
			}
			heads[e.Chain] = e.Hash
		}
		rep := verifyChain(t, bs[1])
		wantIntact(t, rep, total)
		if len(rep.Chains) != 2 || rep.Chains[0].Records+rep.Chains[1].Records != total ||
			rep.Chains[0].Records != total/2 || rep.Chains[0].HeadHash != heads[rep.Chains[0].Chain] {
			t.Errorf("verify chains = %+v; want two chains of %d records", rep.Chains, total/2)
		}
		for _, id := range ids {
			mine, err := bs[0].QueryAudit(t.Context(), audit.Query{Chain: id, Ascending: true, Limit: audit.MaxQueryLimit})
			must(t, err)
			if len(mine) != total/2 || slices.ContainsFunc(mine, func(e audit.Event) bool { return e.Chain != id }) {
				t.Errorf("QueryAudit(chain %s) = %d records, some of another chain? want %d of it", id, len(mine), total/2)
			}
		}
	}},
	{name: "ChainsPerWriter", handles: 2, run: func(t *testing.T, bs []Backend) {
		// Batches from three chains (two named, the default) interleave
		// in one log: each continues its own chain across transactions
		// and handles, and a checkpoint names its own chain's head.
		c := audittest.Chain()
		a, err := c.WithID("replica-a")
		must(t, err)
		b, err := c.WithID("replica-b")
		must(t, err)
		appendOn := func(h Backend, ch *audit.Chain, from, to int) []*audit.Event {
			var es []*audit.Event
			for i := from; i < to; i++ {
				es = append(es, auditEvent(i, at(time.Duration(i)*time.Second)))
			}
			must(t, h.AppendAudit(t.Context(), ch, es))
			return es
		}
		a1 := appendOn(bs[0], a, 0, 3) // 1-3
		b1 := appendOn(bs[1], b, 3, 5) // 4-5
		d1 := appendOn(bs[0], c, 5, 6) // 6
		a2 := appendOn(bs[1], a, 6, 8) // 7-8: chain a through the other handle
		cp := &audit.Event{Type: audit.AuditCheckpoint, Time: at(9 * time.Second), Principal: audit.SystemPrincipal, Status: audit.StatusOK}
		must(t, bs[0].AppendAudit(t.Context(), b, []*audit.Event{cp})) // 9
		for _, tc := range []struct {
			what     string
			e        *audit.Event
			seq      int64
			chain    string
			prevHash string
		}{
			{"a's first", a1[0], 1, "replica-a", audit.GenesisHash},
			{"b's first", b1[0], 4, "replica-b", audit.GenesisHash},
			{"the default chain's first", d1[0], 6, "", audit.GenesisHash},
			{"a continued", a2[0], 7, "replica-a", a1[2].Hash},
			{"b's checkpoint", cp, 9, "replica-b", b1[1].Hash},
		} {
			if tc.e.Seq != tc.seq || tc.e.Chain != tc.chain || tc.e.PrevHash != tc.prevHash {
				t.Errorf("%s: seq %d chain %q prev %.8s; want seq %d chain %q prev %.8s", tc.what, tc.e.Seq, tc.e.Chain, tc.e.PrevHash, tc.seq, tc.chain, tc.prevHash)
			}
		}
		got, err := audit.ParseCheckpoint([]byte(cp.Detail))
		must(t, err)
		if got.Chain != "replica-b" || got.Seq != 5 || got.Hash != b1[1].Hash || got.LogSeq != 8 || got.LogHash != a2[1].Hash {
			t.Errorf("b's checkpoint = %+v; want chain replica-b, seq 5 (b's head) and log position 8 (a's record before it)", got)
		}
		rep := verifyChain(t, bs[1], got)
		wantIntact(t, rep, 9)
		var chains []string
		for _, r := range rep.Chains {
			chains = append(chains, fmt.Sprintf("%s:%d:%d-%d", r.Chain, r.Records, r.FirstSeq, r.LastSeq))
		}
		if diff := cmp.Diff([]string{"replica-a:5:1-8", "replica-b:3:4-9", ":1:6-6"}, chains); diff != "" {
			t.Errorf("verified chains (-want +got):\n%s", diff)
		}
		if rep.Checkpoints != 1 || rep.Anchors != 1 {
			t.Errorf("verify checked %d checkpoint records and %d anchors, want 1 and 1", rep.Checkpoints, rep.Anchors)
		}
	}},
	{name: "RetentionAcrossChains", handles: 2, run: func(t *testing.T, bs []Backend) {
		// Retention prunes the whole log up to a checkpoint of one chain;
		// the other chain continues from pruned records and the log still
		// verifies, from the checkpoint and the audit.prune record.
		ctx := t.Context()
		clk := &clock{}
		wa, wb := newChainWriter(t, bs[0], clk.Now, "replica-a"), newChainWriter(t, bs[1], clk.Now, "replica-b")
		emit := func(w *audit.Writer, day int) {
			clk.Set(time.Date(2026, time.January, day, 9, 0, 0, 0, time.UTC))
			must(t, w.Emit(ctx, &audit.Event{Type: audit.ToolCallStart, Principal: "alice"}))
		}
		emit(wa, 2) // 1
		emit(wb, 3) // 2
		emit(wa, 4) // 3
		emit(wb, 5) // 4
		clk.Set(time.Date(2026, time.January, 31, 0, 0, 0, 0, time.UTC))
		cp, err := wa.Checkpoint(ctx) // 5, covers a's 3 and the log's 4
		must(t, err)
		if cp.Seq != 3 || cp.Chain != "replica-a" || cp.LogSeq != 4 || cp.LogHash == "" {
			t.Fatalf("a's checkpoint = %+v; want seq 3 on replica-a, log position 4", cp)
		}
		emit(wb, 6) // 6 (still January, but after the checkpoint)
		clk.Set(time.Date(2026, time.April, 1, 0, 0, 0, 0, time.UTC))
		res, err := audit.Prune(ctx, bs[1], wb, time.Date(2026, time.March, 1, 0, 0, 0, 0, time.UTC), 0) // prune record 7
		must(t, err)
		if res.ThroughSeq != 4 || res.Deleted != 4 {
			t.Fatalf("Prune = %+v; want through 4 (the log position of a's checkpoint), 4 deleted", res)
		}
		rep := verifyChain(t, bs[0], cp)
		wantIntact(t, rep, 3) // 5..7: the checkpoint record is the first
		if rep.FirstSeq != 5 || rep.PrunedBefore != 5 || len(rep.Chains) != 2 {
			t.Fatalf("after retention: %+v; want FirstSeq = PrunedBefore = 5, two chains", rep)
		}
		for _, c := range rep.Chains {
			if !c.Continued {
				t.Errorf("chain %s: not reported as continuing from pruned records", c.Chain)
			}
		}
		// Both writers go on after retention, each on its own chain.
		emit(wa, 7)
		emit(wb, 8)
		wantIntact(t, verifyChain(t, bs[0], cp), 5)
	}},
	{name: "CheckpointAndRetention", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		clk := &clock{}
		w := newWriter(t, b, clk.Now)
		var cps []audit.Checkpoint
		for month := time.January; month <= time.March; month++ {
			for d := range 3 {
				clk.Set(time.Date(2026, month, 3+d, 9, 0, 0, 0, time.UTC))
				must(t, w.Emit(ctx, &audit.Event{Type: audit.ToolCallStart, Principal: "alice"}))
			}
			clk.Set(time.Date(2026, month+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Minute))
			cp, err := w.Checkpoint(ctx)
			must(t, err)
			cps = append(cps, cp)
		}
		// Jan 1-3 cp 4, Feb 5-7 cp 8, Mar 9-11 cp 12.
		if cps[1].Seq != 7 {
			t.Fatalf("February's checkpoint covers seq %d, want 7", cps[1].Seq)
		}
		rep := verifyChain(t, b, cps...)
		wantIntact(t, rep, 12)
		if rep.Checkpoints != 3 || rep.Anchors != 3 {
			t.Errorf("verify checked %d checkpoint records and %d anchors, want 3 and 3", rep.Checkpoints, rep.Anchors)
		}
		clk.Set(time.Date(2026, 4, 15, 0, 0, 0, 0, time.UTC))
		res, err := audit.Prune(ctx, b, w, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), 0)
		must(t, err)
		if res.ThroughSeq != 7 || res.Deleted != 7 {
			t.Fatalf("Prune at March 1 = %+v; want through 7 (February's checkpoint), 7 deleted", res)
		}
		rep = verifyChain(t, b, cps...)
		wantIntact(t, rep, 13-7) // 8..12 and the audit.prune record 13
		if rep.FirstSeq != 8 || rep.PrunedBefore != 8 {
			t.Errorf("after retention: %+v; want FirstSeq = PrunedBefore = 8", rep)
		}
	}},
	{name: "PruneKeepsSequence", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		sealed := appendEvents(t, b, 0, 5)
		n, err := b.PruneAudit(ctx, 3)
		if err != nil || n != 3 {
			t.Fatalf("PruneAudit(3) = %d, %v; want 3", n, err)
		}
		if diff := cmp.Diff([]int64{4, 5}, seqs(allEvents(t, b))); diff != "" {
			t.Errorf("after pruning through 3 (-want +got):\n%s", diff)
		}
		if n, err := b.PruneAudit(ctx, 3); err != nil || n != 0 {
			t.Errorf("PruneAudit(3) again = %d, %v; want 0", n, err)
		}
		next := appendEvents(t, b, 5, 6)
		if next[0].Seq != 6 || next[0].PrevHash != sealed[4].Hash {
			t.Errorf("append after pruning: seq %d prev %.8s; want 6 after %.8s", next[0].Seq, next[0].PrevHash, sealed[4].Hash)
		}
	}},
	{name: "Cursors", handles: 2, run: func(t *testing.T, bs []Backend) {
		a, other, ctx := bs[0], bs[1], t.Context()
		for _, name := range []string{"siem", "%", `' OR 1=1 --`} {
			if seq, err := a.AuditCursor(ctx, name); err != nil || seq != 0 {
				t.Errorf("AuditCursor(%q) before any = %d, %v; want 0", name, seq, err)
			}
		}
		must(t, a.SetAuditCursor(ctx, "siem", 5))
		must(t, a.SetAuditCursor(ctx, "siem", 9))
		must(t, other.SetAuditCursor(ctx, "%", 2))
		for _, tc := range []struct {
			name string
			want int64
		}{{"siem", 9}, {"%", 2}, {"syslog", 0}, {"sie", 0}} {
			for i, b := range bs {
				if seq, err := b.AuditCursor(ctx, tc.name); err != nil || seq != tc.want {
					t.Errorf("handle %d: AuditCursor(%q) = %d, %v; want %d", i, tc.name, seq, err, tc.want)
				}
			}
		}
	}},
	{name: "ProbeWrite", handles: 2, run: func(t *testing.T, bs []Backend) {
		for i, b := range bs {
			for range 2 {
				if err := b.ProbeWrite(t.Context()); err != nil {
					t.Errorf("handle %d: ProbeWrite = %v", i, err)
				}
			}
		}
		if es := allEvents(t, bs[0]); len(es) != 0 {
			t.Errorf("ProbeWrite wrote %d audit records, want none", len(es))
		}
	}},
}
