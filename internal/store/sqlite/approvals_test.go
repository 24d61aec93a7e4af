package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

// TestApprovalNULStrings: a NUL byte in a name is stored and matched as a
// literal. The shared suite (storetest, Approvals/HostileStrings) covers
// every other hostile string; PostgreSQL text cannot hold a NUL byte, so
// this one is SQLite's.
func TestApprovalNULStrings(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.UTC)
	pending := func(id, name string, n int) store.Approval {
		return store.Approval{ID: id, Principal: name, Tool: name, ArgsSHA256: fmt.Sprintf("%064x", n+1),
			Args: json.RawMessage(`{"x":1}`), Justification: name, State: store.ApprovalPending,
			CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), RequestID: "req_" + id, Session: "sess_1"}
	}
	if err := db.CreateApproval(ctx, pending("apr_safe", "alice", 1)); err != nil {
		t.Fatal(err)
	}
	for i, s := range injections {
		if !strings.Contains(s, "\x00") {
			continue
		}
		a := pending(fmt.Sprintf("apr_inj_%d", i), s, 100+i)
		if err := db.CreateApproval(ctx, a); err != nil {
			t.Fatalf("CreateApproval(%q): %v", s, err)
		}
		got, err := db.FindApproval(ctx, s, s, a.ArgsSHA256, []string{store.ApprovalPending}, t0)
		if err != nil || got.ID != a.ID || got.Principal != s || got.Justification != s {
			t.Errorf("%q: FindApproval = %+v, %v", s, got, err)
		}
		if _, err := db.GetApproval(ctx, s); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetApproval(%q): %v; want ErrNotFound", s, err)
		}
		if as, err := db.ListApprovals(ctx, s, 0); err != nil || len(as) != 0 {
			t.Errorf("ListApprovals(state %q) = %d requests, %v; want none", s, len(as), err)
		}
	}
	if a, err := db.GetApproval(ctx, "apr_safe"); err != nil || a.State != store.ApprovalPending {
		t.Errorf("apr_safe = %s, %v after hostile requests; want pending", a.State, err)
	}
}
