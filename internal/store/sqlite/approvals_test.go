package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

var aprT0 = time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.UTC)

// aprDigest returns a distinct, well-formed args digest for n.
func aprDigest(n int) string { return fmt.Sprintf("%064x", n+1) }

func aprPending(id, principal, tool string, n int, created time.Time, ttl time.Duration) store.Approval {
	return store.Approval{ID: id, Principal: principal, Tool: tool, ArgsSHA256: aprDigest(n),
		Args: json.RawMessage(`{"path":"a","token":"hmac-sha256:00"}`), Justification: "needed", State: store.ApprovalPending,
		CreatedAt: created, ExpiresAt: created.Add(ttl), RequestID: "req_" + id, Session: "sess_1"}
}

func aprCreate(t *testing.T, db *sqlite.DB, as ...store.Approval) {
	t.Helper()
	for _, a := range as {
		if err := db.CreateApproval(context.Background(), a); err != nil {
			t.Fatalf("CreateApproval(%s): %v", a.ID, err)
		}
	}
}

func aprState(t *testing.T, db *sqlite.DB, id string) string {
	t.Helper()
	a, err := db.GetApproval(context.Background(), id)
	if err != nil {
		t.Fatalf("GetApproval(%s): %v", id, err)
	}
	return a.State
}

func aprIDs(as []store.Approval) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func TestApprovalCreateValidation(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	good := aprPending("apr_1", "alice", "deploy", 1, aprT0, time.Hour)
	for _, tc := range []struct {
		name string
		mut  func(*store.Approval)
	}{
		{"no id", func(a *store.Approval) { a.ID = "" }},
		{"no principal", func(a *store.Approval) { a.Principal = "" }},
		{"no tool", func(a *store.Approval) { a.Tool = "" }},
		{"no digest", func(a *store.Approval) { a.ArgsSHA256 = "" }},
		{"short digest", func(a *store.Approval) { a.ArgsSHA256 = a.ArgsSHA256[:63] }},
		{"long digest", func(a *store.Approval) { a.ArgsSHA256 += "0" }},
		{"created approved", func(a *store.Approval) { a.State = store.ApprovalApproved }},
		{"created consumed", func(a *store.Approval) { a.State = store.ApprovalConsumed }},
		{"no state", func(a *store.Approval) { a.State = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := good
			tc.mut(&a)
			if err := db.CreateApproval(ctx, a); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateApproval = %v; want ErrInvalid", err)
			}
		})
	}
	if n, err := sqlite.CountRows(ctx, db, "approvals"); err != nil || n != 0 {
		t.Fatalf("%d rows after invalid creates (%v)", n, err)
	}
	aprCreate(t, db, good)
	dup := aprPending("apr_1", "bob", "other", 2, aprT0, time.Hour)
	if err := db.CreateApproval(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate id: %v; want ErrConflict", err)
	}
	got, err := db.GetApproval(ctx, "apr_1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(good, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := db.GetApproval(ctx, "apr_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v; want ErrNotFound", err)
	}
}

// TestApprovalHostileStrings: names and filters are literals, never SQL.
func TestApprovalHostileStrings(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	aprCreate(t, db, aprPending("apr_safe", "alice", "deploy", 1, aprT0, time.Hour))
	for i, s := range injections {
		a := aprPending(fmt.Sprintf("apr_inj_%d", i), s, s, 100+i, aprT0, time.Hour)
		a.Justification, a.Args = s, json.RawMessage(`{"x":1}`)
		aprCreate(t, db, a)
		got, err := db.FindApproval(ctx, s, s, a.ArgsSHA256, []string{store.ApprovalPending}, aprT0)
		if err != nil || got.ID != a.ID || got.Principal != s || got.Justification != s {
			t.Errorf("%q: FindApproval = %+v, %v", s, got, err)
		}
		if _, err := db.GetApproval(ctx, s); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetApproval(%q): %v; want ErrNotFound", s, err)
		}
		if as, err := db.ListApprovals(ctx, s, 0); err != nil || len(as) != 0 {
			t.Errorf("ListApprovals(state %q) = %v, %v; want none", s, aprIDs(as), err)
		}
	}
	if aprState(t, db, "apr_safe") != store.ApprovalPending {
		t.Error("a hostile string changed another request")
	}
}

func TestApprovalListAndFilter(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	for i := range 5 {
		aprCreate(t, db, aprPending(fmt.Sprintf("apr_%d", i), "alice", "deploy", i, aprT0.Add(time.Duration(i)*time.Second), time.Hour))
	}
	at := aprT0.Add(time.Minute)
	if _, err := db.DecideApproval(ctx, "apr_1", store.ApprovalApproved, "root", "", at); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DecideApproval(ctx, "apr_2", store.ApprovalDenied, "root", "no", at); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DecideApproval(ctx, "apr_3", store.ApprovalApproved, "root", "", at); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ConsumeApproval(ctx, "apr_3", at); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		state string
		limit int
		want  []string
	}{
		{"", 0, []string{"apr_4", "apr_3", "apr_2", "apr_1", "apr_0"}},
		{"", 2, []string{"apr_4", "apr_3"}},
		{"", -1, []string{"apr_4", "apr_3", "apr_2", "apr_1", "apr_0"}},
		{store.ApprovalPending, 0, []string{"apr_4", "apr_0"}},
		{store.ApprovalApproved, 0, []string{"apr_1"}},
		{store.ApprovalDenied, 0, []string{"apr_2"}},
		{store.ApprovalConsumed, 0, []string{"apr_3"}},
		{store.ApprovalExpired, 0, nil},
		{"PENDING", 0, nil},
	} {
		as, err := db.ListApprovals(ctx, tc.state, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, aprIDs(as)); diff != "" {
			t.Errorf("ListApprovals(%q, %d) (-want +got):\n%s", tc.state, tc.limit, diff)
		}
	}
	got, err := db.GetApproval(ctx, "apr_2")
	if err != nil {
		t.Fatal(err)
	}
	if got.DecidedBy != "root" || got.Comment != "no" || got.DecidedAt == nil || !got.DecidedAt.Equal(at) || got.ConsumedAt != nil {
		t.Errorf("denied request = %+v", got)
	}
	got, _ = db.GetApproval(ctx, "apr_3")
	if got.State != store.ApprovalConsumed || got.ConsumedAt == nil || !got.ConsumedAt.Equal(at) {
		t.Errorf("consumed request = %+v", got)
	}
}

// TestFindApproval: only the exact (principal, tool, digest), only in the
// given states, only unexpired, newest first.
func TestFindApproval(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	old := aprPending("apr_old", "alice", "deploy", 1, aprT0, time.Hour)
	newer := aprPending("apr_new", "alice", "deploy", 1, aprT0.Add(time.Minute), time.Hour)
	short := aprPending("apr_short", "alice", "deploy", 2, aprT0, time.Minute)
	denied := aprPending("apr_denied", "alice", "deploy", 3, aprT0, time.Hour)
	aprCreate(t, db, old, short, denied)
	// One pending request per exact call: a second is a conflict until the
	// first is decided.
	if err := db.CreateApproval(ctx, newer); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second pending request for one call: %v, want ErrConflict", err)
	}
	for _, id := range []string{"apr_denied", "apr_old"} {
		if _, err := db.DecideApproval(ctx, id, store.ApprovalDenied, "root", "", aprT0); err != nil {
			t.Fatal(err)
		}
	}
	aprCreate(t, db, newer)
	pending := []string{store.ApprovalPending}
	for _, tc := range []struct {
		name                 string
		principal, tool, dig string
		states               []string
		now                  time.Time
		want                 string // "" = ErrNotFound
	}{
		{"newest of two", "alice", "deploy", aprDigest(1), []string{store.ApprovalPending, store.ApprovalDenied}, aprT0.Add(2 * time.Minute), "apr_new"},
		{"other principal", "bob", "deploy", aprDigest(1), pending, aprT0, ""},
		{"principal case", "Alice", "deploy", aprDigest(1), pending, aprT0, ""},
		{"other tool", "alice", "deploy2", aprDigest(1), pending, aprT0, ""},
		{"other digest", "alice", "deploy", aprDigest(9), pending, aprT0, ""},
		{"digest case", "alice", "deploy", strings.ToUpper(aprDigest(10)), pending, aprT0, ""},
		{"unexpired", "alice", "deploy", aprDigest(2), pending, aprT0.Add(time.Minute - 1), "apr_short"},
		{"expired at its expiry", "alice", "deploy", aprDigest(2), pending, aprT0.Add(time.Minute), ""},
		{"expired after", "alice", "deploy", aprDigest(2), pending, aprT0.Add(time.Hour), ""},
		{"other state", "alice", "deploy", aprDigest(3), pending, aprT0, ""},
		{"approved only", "alice", "deploy", aprDigest(1), []string{store.ApprovalApproved}, aprT0, ""},
		{"in the states asked", "alice", "deploy", aprDigest(3), []string{store.ApprovalPending, store.ApprovalDenied}, aprT0, "apr_denied"},
		{"old expired, newer live", "alice", "deploy", aprDigest(1), pending, aprT0.Add(time.Hour + 30*time.Second), "apr_new"},
		{"both expired", "alice", "deploy", aprDigest(1), pending, aprT0.Add(time.Hour + time.Minute), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.FindApproval(ctx, tc.principal, tc.tool, tc.dig, tc.states, tc.now)
			if tc.want == "" {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("FindApproval = %s, %v; want ErrNotFound", got.ID, err)
				}
				return
			}
			if err != nil || got.ID != tc.want {
				t.Errorf("FindApproval = %s, %v; want %s", got.ID, err, tc.want)
			}
		})
	}
	if _, err := db.FindApproval(ctx, "alice", "deploy", aprDigest(1), nil, aprT0); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("no states: %v; want ErrInvalid", err)
	}
}

// TestDecideApprovalCAS: only a pending, unexpired request is decided,
// once; the current state comes back with the conflict.
func TestDecideApprovalCAS(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	aprCreate(t, db,
		aprPending("apr_a", "alice", "deploy", 1, aprT0, time.Hour),
		aprPending("apr_b", "alice", "deploy", 2, aprT0, time.Hour),
		aprPending("apr_c", "alice", "deploy", 3, aprT0, time.Minute))

	for _, bad := range []string{store.ApprovalPending, store.ApprovalConsumed, store.ApprovalExpired, "", "APPROVED"} {
		if _, err := db.DecideApproval(ctx, "apr_a", bad, "root", "", aprT0); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("decision %q: %v; want ErrInvalid", bad, err)
		}
	}
	got, err := db.DecideApproval(ctx, "apr_a", store.ApprovalApproved, "root", "fine", aprT0.Add(time.Second))
	if err != nil || got.State != store.ApprovalApproved || got.DecidedBy != "root" || got.Comment != "fine" {
		t.Fatalf("approve = %+v, %v", got, err)
	}
	for _, state := range []string{store.ApprovalApproved, store.ApprovalDenied} {
		cur, err := db.DecideApproval(ctx, "apr_a", state, "root2", "again", aprT0.Add(2*time.Second))
		if !errors.Is(err, store.ErrConflict) || cur.State != store.ApprovalApproved || cur.DecidedBy != "root" {
			t.Errorf("second decision %s = %+v, %v; want ErrConflict with root's approval", state, cur, err)
		}
	}
	if _, err := db.DecideApproval(ctx, "apr_b", store.ApprovalDenied, "root", "", aprT0); err != nil {
		t.Fatal(err)
	}
	if cur, err := db.DecideApproval(ctx, "apr_b", store.ApprovalApproved, "root", "", aprT0); !errors.Is(err, store.ErrConflict) ||
		cur.State != store.ApprovalDenied {
		t.Errorf("approve after deny = %+v, %v; want ErrConflict, denied", cur, err)
	}
	// Expired, though the sweep has not marked it yet.
	if cur, err := db.DecideApproval(ctx, "apr_c", store.ApprovalApproved, "root", "", aprT0.Add(time.Minute)); !errors.Is(err, store.ErrConflict) ||
		cur.State != store.ApprovalPending {
		t.Errorf("approve at expiry = %+v, %v; want ErrConflict", cur, err)
	}
	if aprState(t, db, "apr_c") != store.ApprovalPending {
		t.Error("an expired request was decided")
	}
	if _, err := db.DecideApproval(ctx, "apr_nope", store.ApprovalApproved, "root", "", aprT0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v; want ErrNotFound", err)
	}
}

// TestConsumeApprovalCAS: only an approved, unexpired request is consumed,
// once.
func TestConsumeApprovalCAS(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	aprCreate(t, db,
		aprPending("apr_pend", "alice", "deploy", 1, aprT0, time.Hour),
		aprPending("apr_ok", "alice", "deploy", 2, aprT0, time.Hour),
		aprPending("apr_den", "alice", "deploy", 3, aprT0, time.Hour),
		aprPending("apr_late", "alice", "deploy", 4, aprT0, time.Minute))
	for id, state := range map[string]string{"apr_ok": store.ApprovalApproved, "apr_den": store.ApprovalDenied, "apr_late": store.ApprovalApproved} {
		if _, err := db.DecideApproval(ctx, id, state, "root", "", aprT0); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ id, state string }{
		{"apr_pend", store.ApprovalPending},
		{"apr_den", store.ApprovalDenied},
	} {
		if cur, err := db.ConsumeApproval(ctx, tc.id, aprT0); !errors.Is(err, store.ErrConflict) || cur.State != tc.state {
			t.Errorf("consume %s = %+v, %v; want ErrConflict", tc.id, cur, err)
		}
	}
	if _, err := db.ConsumeApproval(ctx, "apr_late", aprT0.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("consume at expiry: %v; want ErrConflict", err)
	}
	if aprState(t, db, "apr_late") != store.ApprovalApproved {
		t.Error("an expired approval was consumed")
	}
	got, err := db.ConsumeApproval(ctx, "apr_ok", aprT0.Add(time.Second))
	if err != nil || got.State != store.ApprovalConsumed || got.ConsumedAt == nil || !got.ConsumedAt.Equal(aprT0.Add(time.Second)) {
		t.Fatalf("consume = %+v, %v", got, err)
	}
	if cur, err := db.ConsumeApproval(ctx, "apr_ok", aprT0.Add(2*time.Second)); !errors.Is(err, store.ErrConflict) || cur.State != store.ApprovalConsumed {
		t.Errorf("second consume = %+v, %v; want ErrConflict", cur, err)
	}
	if _, err := db.ConsumeApproval(ctx, "apr_nope", aprT0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v; want ErrNotFound", err)
	}
}

// TestConcurrentConsume: of many processes consuming one approval, one
// wins; the others see ErrConflict. Two handles on one file stand for two
// replicas.
func TestConcurrentConsume(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "p.db")
	db, other := openAt(t, path, c), openAt(t, path, c)
	ctx := context.Background()
	aprCreate(t, db, aprPending("apr_x", "alice", "deploy", 1, aprT0, time.Hour))
	if _, err := db.DecideApproval(ctx, "apr_x", store.ApprovalApproved, "root", "", aprT0); err != nil {
		t.Fatal(err)
	}
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 20 {
		h := db
		if i%2 == 1 {
			h = other
		}
		wg.Go(func() {
			<-start
			_, err := h.ConsumeApproval(ctx, "apr_x", aprT0.Add(time.Second))
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("consume: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != 19 {
		t.Errorf("%d wins, %d conflicts; want 1 and 19", wins.Load(), conflicts.Load())
	}
}

// TestExpireApprovals: pending and approved requests past their expiry
// are marked expired and returned; decided, consumed and unexpired ones
// are left alone.
func TestExpireApprovals(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	aprCreate(t, db,
		aprPending("apr_pend", "alice", "deploy", 1, aprT0, time.Minute),
		aprPending("apr_appr", "alice", "deploy", 2, aprT0, time.Minute),
		aprPending("apr_den", "alice", "deploy", 3, aprT0, time.Minute),
		aprPending("apr_used", "alice", "deploy", 4, aprT0, time.Minute),
		aprPending("apr_live", "alice", "deploy", 5, aprT0, time.Hour))
	for id, state := range map[string]string{"apr_appr": store.ApprovalApproved, "apr_den": store.ApprovalDenied, "apr_used": store.ApprovalApproved} {
		if _, err := db.DecideApproval(ctx, id, state, "root", "", aprT0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ConsumeApproval(ctx, "apr_used", aprT0); err != nil {
		t.Fatal(err)
	}
	if as, err := db.ExpireApprovals(ctx, aprT0.Add(time.Minute-1)); err != nil || len(as) != 0 {
		t.Fatalf("before expiry: %v, %v", aprIDs(as), err)
	}
	as, err := db.ExpireApprovals(ctx, aprT0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range as {
		got[a.ID] = a.State
	}
	if diff := cmp.Diff(map[string]string{"apr_pend": store.ApprovalExpired, "apr_appr": store.ApprovalExpired}, got); diff != "" {
		t.Errorf("expired (-want +got):\n%s", diff)
	}
	for id, want := range map[string]string{"apr_pend": store.ApprovalExpired, "apr_appr": store.ApprovalExpired,
		"apr_den": store.ApprovalDenied, "apr_used": store.ApprovalConsumed, "apr_live": store.ApprovalPending} {
		if s := aprState(t, db, id); s != want {
			t.Errorf("%s is %s, want %s", id, s, want)
		}
	}
	if as, err := db.ExpireApprovals(ctx, aprT0.Add(time.Minute)); err != nil || len(as) != 0 {
		t.Errorf("second sweep: %v, %v; want none", aprIDs(as), err)
	}
	// An expired request is final: no decision, no consumption.
	if _, err := db.DecideApproval(ctx, "apr_pend", store.ApprovalApproved, "root", "", aprT0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("deciding an expired request: %v; want ErrConflict", err)
	}
	if _, err := db.ConsumeApproval(ctx, "apr_appr", aprT0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("consuming an expired approval: %v; want ErrConflict", err)
	}
}
