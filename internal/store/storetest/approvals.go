package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portcullis/portcullis/internal/store"
)

// digest returns a distinct, well-formed args digest (64 hex) for n.
func digest(n int) string { return fmt.Sprintf("%064x", n+1) }

// pending is a pending request for principal's call of tool with the
// arguments numbered n, created at created and expiring ttl later.
func pending(id, principal, tool string, n int, created time.Time, ttl time.Duration) store.Approval {
	return store.Approval{ID: id, Principal: principal, Tool: tool, ArgsSHA256: digest(n),
		Args: json.RawMessage(`{"path":"a","token":"hmac-sha256:00"}`), Justification: "needed", State: store.ApprovalPending,
		CreatedAt: created, ExpiresAt: created.Add(ttl), RequestID: "req_" + id, Session: "sess_1"}
}

func createApprovals(t *testing.T, b Backend, as ...store.Approval) {
	t.Helper()
	for _, a := range as {
		if err := b.CreateApproval(t.Context(), a); err != nil {
			t.Fatalf("CreateApproval(%s): %v", a.ID, err)
		}
	}
}

func approvalState(t *testing.T, b Backend, id string) string {
	t.Helper()
	a, err := b.GetApproval(t.Context(), id)
	if err != nil {
		t.Fatalf("GetApproval(%s): %v", id, err)
	}
	return a.State
}

func approvalIDs(as []store.Approval) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func decide(t *testing.T, b Backend, id, state string, when time.Time) store.Approval {
	t.Helper()
	a, err := b.DecideApproval(t.Context(), id, state, "root", "", when)
	if err != nil {
		t.Fatalf("DecideApproval(%s, %s): %v", id, state, err)
	}
	return a
}

var approvalCases = []testCase{
	{name: "CreateAndGet", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		a := pending("apr_1", "alice", "git_commit", 1, t0, time.Hour)
		bare := pending("apr_2", "bob", "deploy", 2, t0, time.Minute)
		bare.Args, bare.Justification, bare.RequestID, bare.Session = nil, "", "", ""
		createApprovals(t, b, a, bare)
		for _, want := range []store.Approval{a, bare} {
			got, err := b.GetApproval(ctx, want.ID)
			must(t, err)
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("GetApproval(%s) (-want +got):\n%s", want.ID, diff)
			}
		}
		// The fully populated request comes back exactly, empty and nil
		// alike.
		if got, err := b.GetApproval(ctx, a.ID); err != nil || !cmp.Equal(a, got) {
			t.Errorf("GetApproval(%s), exactly (-want +got):\n%s (%v)", a.ID, cmp.Diff(a, got), err)
		}
		for _, id := range []string{"apr_nope", "apr_%", "", "APR_1"} {
			if _, err := b.GetApproval(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetApproval(%q) = %v, want ErrNotFound", id, err)
			}
		}
	}},
	{name: "CreateRejects", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		for _, tc := range []struct {
			name string
			bad  func(a *store.Approval)
		}{
			{"no id", func(a *store.Approval) { a.ID = "" }},
			{"no principal", func(a *store.Approval) { a.Principal = "" }},
			{"no tool", func(a *store.Approval) { a.Tool = "" }},
			{"short digest", func(a *store.Approval) { a.ArgsSHA256 = a.ArgsSHA256[:63] }},
			{"long digest", func(a *store.Approval) { a.ArgsSHA256 += "0" }},
			{"no digest", func(a *store.Approval) { a.ArgsSHA256 = "" }},
			{"created approved", func(a *store.Approval) { a.State = store.ApprovalApproved }},
			{"created consumed", func(a *store.Approval) { a.State = store.ApprovalConsumed }},
			{"no state", func(a *store.Approval) { a.State = "" }},
		} {
			a := pending("apr_1", "alice", "deploy", 1, t0, time.Hour)
			tc.bad(&a)
			if err := b.CreateApproval(ctx, a); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateApproval(%s) = %v, want ErrInvalid", tc.name, err)
			}
		}
		if as, err := b.ListApprovals(ctx, "", 0); err != nil || len(as) != 0 {
			t.Errorf("refused requests were stored: %v, %v", approvalIDs(as), err)
		}
	}},
	{name: "HostileStrings", run: func(t *testing.T, bs []Backend) {
		// Names and filters are literals, never SQL or patterns.
		b, ctx := bs[0], t.Context()
		createApprovals(t, b, pending("apr_safe", "alice", "deploy", 1, t0, time.Hour))
		for i, s := range append(hostile[:len(hostile):len(hostile)], `'); DELETE FROM audit_events; --`) {
			a := pending(fmt.Sprintf("apr_inj_%d", i), s, s, 100+i, t0, time.Hour)
			a.Justification, a.Args = s, json.RawMessage(`{"x":1}`)
			createApprovals(t, b, a)
			got, err := b.FindApproval(ctx, s, s, a.ArgsSHA256, []string{store.ApprovalPending}, t0)
			if err != nil || got.ID != a.ID || got.Principal != s || got.Tool != s || got.Justification != s {
				t.Errorf("%q: FindApproval = %+v, %v", s, got, err)
			}
			if _, err := b.GetApproval(ctx, s); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetApproval(%q) = %v, want ErrNotFound", s, err)
			}
			if as, err := b.ListApprovals(ctx, s, 0); err != nil || len(as) != 0 {
				t.Errorf("ListApprovals(state %q) = %v, %v; want none", s, approvalIDs(as), err)
			}
		}
		if s := approvalState(t, b, "apr_safe"); s != store.ApprovalPending {
			t.Errorf("apr_safe is %s after hostile requests, want pending", s)
		}
	}},
	{name: "OnePendingPerCall", run: func(t *testing.T, bs []Backend) {
		// Identical calls racing to ask must not open several requests:
		// the approval service relies on the conflict to reuse the first.
		b, ctx := bs[0], t.Context()
		createApprovals(t, b, pending("apr_1", "alice", "deploy", 1, t0, time.Hour))
		wantErr(t, "second pending request for one call", b.CreateApproval(ctx, pending("apr_2", "alice", "deploy", 1, at(time.Second), time.Hour)), store.ErrConflict)
		wantErr(t, "duplicate id", b.CreateApproval(ctx, pending("apr_1", "bob", "other", 7, t0, time.Hour)), store.ErrConflict)
		// Other calls are other requests.
		createApprovals(t, b,
			pending("apr_3", "bob", "deploy", 1, t0, time.Hour),
			pending("apr_4", "alice", "deploy2", 1, t0, time.Hour),
			pending("apr_5", "alice", "deploy", 2, t0, time.Hour))
		// Once the first is decided, the same call may ask again.
		decide(t, b, "apr_1", store.ApprovalDenied, at(time.Minute))
		createApprovals(t, b, pending("apr_6", "alice", "deploy", 1, at(2*time.Minute), time.Hour))
		if s := approvalState(t, b, "apr_1"); s != store.ApprovalDenied {
			t.Errorf("apr_1 is %s after a new request for its call, want denied", s)
		}
	}},
	{name: "ListByState", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		for i := range 5 {
			createApprovals(t, b, pending(fmt.Sprintf("apr_%d", i), "alice", "deploy", i, at(time.Duration(i)*time.Minute), time.Hour))
		}
		decide(t, b, "apr_1", store.ApprovalApproved, at(10*time.Minute))
		decide(t, b, "apr_3", store.ApprovalApproved, at(10*time.Minute))
		decide(t, b, "apr_2", store.ApprovalDenied, at(10*time.Minute))
		_, err := b.ConsumeApproval(ctx, "apr_3", at(11*time.Minute))
		must(t, err)
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
			{"%", 0, nil},
			{"PENDING", 0, nil},
		} {
			got, err := b.ListApprovals(ctx, tc.state, tc.limit)
			must(t, err)
			if diff := cmp.Diff(tc.want, approvalIDs(got), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListApprovals(%q, %d), newest first (-want +got):\n%s", tc.state, tc.limit, diff)
			}
		}
	}},
	{name: "Find", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		createApprovals(t, b,
			pending("apr_old", "alice", "deploy", 1, t0, time.Hour),
			pending("apr_short", "alice", "deploy", 2, t0, time.Minute),
			pending("apr_denied", "alice", "deploy", 3, t0, time.Hour))
		decide(t, b, "apr_old", store.ApprovalDenied, t0)
		decide(t, b, "apr_denied", store.ApprovalDenied, t0)
		createApprovals(t, b, pending("apr_new", "alice", "deploy", 1, at(time.Minute), time.Hour))
		pend := []string{store.ApprovalPending}
		both := []string{store.ApprovalPending, store.ApprovalDenied}
		for _, tc := range []struct {
			name                 string
			principal, tool, dig string
			states               []string
			now                  time.Time
			want                 string // "": ErrNotFound
		}{
			{"newest of two", "alice", "deploy", digest(1), both, at(2 * time.Minute), "apr_new"},
			{"only the states asked", "alice", "deploy", digest(1), []string{store.ApprovalDenied}, at(2 * time.Minute), "apr_old"},
			{"other principal", "bob", "deploy", digest(1), pend, t0, ""},
			{"principal case", "Alice", "deploy", digest(1), pend, t0, ""},
			{"principal pattern", "%", "deploy", digest(1), pend, t0, ""},
			{"other tool", "alice", "deploy2", digest(1), pend, t0, ""},
			{"other digest", "alice", "deploy", digest(9), pend, t0, ""},
			{"digest case", "alice", "deploy", strings.ToUpper(digest(10)), pend, t0, ""},
			{"before expiry", "alice", "deploy", digest(2), pend, at(time.Minute - time.Microsecond), "apr_short"},
			{"a nanosecond before expiry", "alice", "deploy", digest(2), pend, at(time.Minute - time.Nanosecond), "apr_short"},
			{"at expiry", "alice", "deploy", digest(2), pend, at(time.Minute), ""},
			{"after expiry", "alice", "deploy", digest(2), pend, at(time.Hour), ""},
			{"other state", "alice", "deploy", digest(3), pend, t0, ""},
			{"approved only", "alice", "deploy", digest(1), []string{store.ApprovalApproved}, t0, ""},
			{"in the states asked", "alice", "deploy", digest(3), both, t0, "apr_denied"},
			{"old expired, newer live", "alice", "deploy", digest(1), both, at(time.Hour + 30*time.Second), "apr_new"},
			{"old expired, newer live, pending only", "alice", "deploy", digest(1), pend, at(time.Hour + 30*time.Second), "apr_new"},
			{"both expired", "alice", "deploy", digest(1), both, at(time.Hour + time.Minute), ""},
			{"both expired, pending only", "alice", "deploy", digest(1), pend, at(time.Hour + time.Minute), ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := b.FindApproval(ctx, tc.principal, tc.tool, tc.dig, tc.states, tc.now)
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
		if _, err := b.FindApproval(ctx, "alice", "deploy", digest(1), nil, t0); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("FindApproval without states = %v, want ErrInvalid", err)
		}
	}},
	{name: "DecideOnce", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		createApprovals(t, b,
			pending("apr_a", "alice", "deploy", 1, t0, time.Hour),
			pending("apr_d", "alice", "deploy", 2, t0, time.Hour),
			pending("apr_x", "alice", "deploy", 3, t0, time.Minute))
		when := at(time.Minute)
		got, err := b.DecideApproval(ctx, "apr_a", store.ApprovalApproved, "root", "looks fine", when)
		must(t, err)
		want := pending("apr_a", "alice", "deploy", 1, t0, time.Hour)
		want.State, want.DecidedBy, want.DecidedAt, want.Comment = store.ApprovalApproved, "root", &when, "looks fine"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("DecideApproval returned (-want +got):\n%s", diff)
		}
		if stored, err := b.GetApproval(ctx, "apr_a"); err != nil || !cmp.Equal(want, stored) {
			t.Errorf("stored after decision: %s", cmp.Diff(want, stored))
		}
		if _, err := b.DecideApproval(ctx, "apr_d", store.ApprovalDenied, "root", "no", when); err != nil {
			t.Fatalf("DecideApproval(apr_d, denied): %v", err)
		}
		wantD := pending("apr_d", "alice", "deploy", 2, t0, time.Hour)
		wantD.State, wantD.DecidedBy, wantD.DecidedAt, wantD.Comment = store.ApprovalDenied, "root", &when, "no"
		if stored, err := b.GetApproval(ctx, "apr_d"); err != nil || !cmp.Equal(wantD, stored) {
			t.Errorf("stored after denial (%v): %s", err, cmp.Diff(wantD, stored))
		}
		for _, tc := range []struct {
			name, id, state string
			when            time.Time
			want            error
			cur             string // ErrConflict: the state returned with it
		}{
			{"approve twice", "apr_a", store.ApprovalApproved, when, store.ErrConflict, store.ApprovalApproved},
			{"deny an approved one", "apr_a", store.ApprovalDenied, when, store.ErrConflict, store.ApprovalApproved},
			{"approve a denied one", "apr_d", store.ApprovalApproved, when, store.ErrConflict, store.ApprovalDenied},
			{"decide at expiry", "apr_x", store.ApprovalApproved, at(time.Minute), store.ErrConflict, store.ApprovalPending},
			{"decide after expiry", "apr_x", store.ApprovalDenied, at(time.Hour), store.ErrConflict, store.ApprovalPending},
			{"decide consumed", "apr_x", store.ApprovalConsumed, t0, store.ErrInvalid, ""},
			{"decide pending", "apr_x", store.ApprovalPending, t0, store.ErrInvalid, ""},
			{"decide expired", "apr_x", store.ApprovalExpired, t0, store.ErrInvalid, ""},
			{"decide with no state", "apr_x", "", t0, store.ErrInvalid, ""},
			{"decide upper case", "apr_x", "APPROVED", t0, store.ErrInvalid, ""},
			{"unknown id", "apr_nope", store.ApprovalApproved, when, store.ErrNotFound, ""},
		} {
			cur, err := b.DecideApproval(ctx, tc.id, tc.state, "mallory", "", tc.when)
			wantErr(t, "DecideApproval("+tc.name+")", err, tc.want)
			if tc.cur != "" && (cur.ID != tc.id || cur.State != tc.cur || (cur.DecidedBy != "" && cur.DecidedBy != "root")) {
				t.Errorf("DecideApproval(%s) returned %s %s decided by %q with the conflict; want the request as it is: %s", tc.name, cur.ID, cur.State, cur.DecidedBy, tc.cur)
			}
		}
		for id, state := range map[string]string{"apr_a": store.ApprovalApproved, "apr_d": store.ApprovalDenied, "apr_x": store.ApprovalPending} {
			got, err := b.GetApproval(ctx, id)
			if err != nil || got.State != state || (got.DecidedBy != "" && got.DecidedBy != "root") {
				t.Errorf("%s after refused decisions: %s by %q (%v); want %s, never decided by mallory", id, got.State, got.DecidedBy, err, state)
			}
		}
	}},
	{name: "ConsumeOnce", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		createApprovals(t, b,
			pending("apr_a", "alice", "deploy", 1, t0, time.Hour),
			pending("apr_p", "alice", "deploy", 2, t0, time.Hour),
			pending("apr_d", "alice", "deploy", 3, t0, time.Hour),
			pending("apr_x", "alice", "deploy", 4, t0, time.Minute))
		decide(t, b, "apr_a", store.ApprovalApproved, t0)
		decide(t, b, "apr_d", store.ApprovalDenied, t0)
		decide(t, b, "apr_x", store.ApprovalApproved, t0)
		when := at(30 * time.Second)
		got, err := b.ConsumeApproval(ctx, "apr_a", when)
		must(t, err)
		if got.State != store.ApprovalConsumed || got.ConsumedAt == nil || !got.ConsumedAt.Equal(when) || got.DecidedBy != "root" {
			t.Errorf("ConsumeApproval returned %s at %v decided by %q; want consumed at %v, decision kept", got.State, got.ConsumedAt, got.DecidedBy, when)
		}
		for _, tc := range []struct {
			name, id string
			when     time.Time
			want     error
			cur      string // ErrConflict: the state returned with it
		}{
			{"consume twice", "apr_a", when, store.ErrConflict, store.ApprovalConsumed},
			{"consume pending", "apr_p", when, store.ErrConflict, store.ApprovalPending},
			{"consume denied", "apr_d", when, store.ErrConflict, store.ApprovalDenied},
			{"consume at expiry", "apr_x", at(time.Minute), store.ErrConflict, store.ApprovalApproved},
			{"consume after expiry", "apr_x", at(time.Hour), store.ErrConflict, store.ApprovalApproved},
			{"unknown id", "apr_nope", when, store.ErrNotFound, ""},
		} {
			cur, err := b.ConsumeApproval(ctx, tc.id, tc.when)
			wantErr(t, "ConsumeApproval("+tc.name+")", err, tc.want)
			if tc.cur != "" && (cur.ID != tc.id || cur.State != tc.cur) {
				t.Errorf("ConsumeApproval(%s) returned %s %s with the conflict; want the request as it is: %s", tc.name, cur.ID, cur.State, tc.cur)
			}
		}
		for id, state := range map[string]string{"apr_a": store.ApprovalConsumed, "apr_p": store.ApprovalPending,
			"apr_d": store.ApprovalDenied, "apr_x": store.ApprovalApproved} {
			if s := approvalState(t, b, id); s != state {
				t.Errorf("%s is %s, want %s", id, s, state)
			}
		}
		if stored, err := b.GetApproval(ctx, "apr_a"); err != nil || stored.ConsumedAt == nil || !stored.ConsumedAt.Equal(when) {
			t.Errorf("consumed request consumed at %v (%v); want the first consumption time %v kept", stored.ConsumedAt, err, when)
		}
	}},
	{name: "Expire", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		createApprovals(t, b,
			pending("apr_pend", "alice", "deploy", 1, t0, time.Minute),
			pending("apr_appr", "alice", "deploy", 2, t0, time.Minute),
			pending("apr_den", "alice", "deploy", 3, t0, time.Minute),
			pending("apr_used", "alice", "deploy", 4, t0, time.Minute),
			pending("apr_live", "alice", "deploy", 5, t0, time.Hour))
		decide(t, b, "apr_appr", store.ApprovalApproved, t0)
		decide(t, b, "apr_den", store.ApprovalDenied, t0)
		decide(t, b, "apr_used", store.ApprovalApproved, t0)
		_, err := b.ConsumeApproval(ctx, "apr_used", t0)
		must(t, err)
		for _, d := range []time.Duration{time.Microsecond, time.Nanosecond} {
			if as, err := b.ExpireApprovals(ctx, at(time.Minute-d)); err != nil || len(as) != 0 {
				t.Fatalf("ExpireApprovals %v before expiry = %v, %v; want none", d, approvalIDs(as), err)
			}
		}
		as, err := b.ExpireApprovals(ctx, at(time.Minute))
		must(t, err)
		got := map[string]string{}
		for _, a := range as {
			got[a.ID] = a.State
		}
		if diff := cmp.Diff(map[string]string{"apr_pend": store.ApprovalExpired, "apr_appr": store.ApprovalExpired}, got); diff != "" {
			t.Errorf("ExpireApprovals at expiry (-want +got):\n%s", diff)
		}
		for id, want := range map[string]string{"apr_pend": store.ApprovalExpired, "apr_appr": store.ApprovalExpired,
			"apr_den": store.ApprovalDenied, "apr_used": store.ApprovalConsumed, "apr_live": store.ApprovalPending} {
			if s := approvalState(t, b, id); s != want {
				t.Errorf("%s is %s, want %s", id, s, want)
			}
		}
		if as, err := b.ExpireApprovals(ctx, at(time.Minute)); err != nil || len(as) != 0 {
			t.Errorf("second sweep = %v, %v; want none", approvalIDs(as), err)
		}
		// Expired is final, even at a time before the expiry.
		wantErr(t, "deciding an expired request", func() error {
			_, err := b.DecideApproval(ctx, "apr_pend", store.ApprovalApproved, "root", "", t0)
			return err
		}(), store.ErrConflict)
		wantErr(t, "consuming an expired approval", func() error {
			_, err := b.ConsumeApproval(ctx, "apr_appr", t0)
			return err
		}(), store.ErrConflict)
		// The call may ask again once its pending request expired.
		createApprovals(t, b, pending("apr_again", "alice", "deploy", 1, at(2*time.Minute), time.Hour))
	}},
	{name: "AcrossReplicas", handles: 2, run: func(t *testing.T, bs []Backend) {
		// Created on A, approved through B, consumed on A, seen on B.
		a, other, ctx := bs[0], bs[1], t.Context()
		createApprovals(t, a, pending("apr_1", "alice", "deploy", 1, t0, time.Hour))
		if s := approvalState(t, other, "apr_1"); s != store.ApprovalPending {
			t.Fatalf("request created on A is %s on B", s)
		}
		decide(t, other, "apr_1", store.ApprovalApproved, at(time.Minute))
		found, err := a.FindApproval(ctx, "alice", "deploy", digest(1), []string{store.ApprovalApproved}, at(2*time.Minute))
		if err != nil || found.ID != "apr_1" {
			t.Fatalf("approval decided on B, found on A: %q %s, %v", found.ID, found.State, err)
		}
		_, err = a.ConsumeApproval(ctx, "apr_1", at(2*time.Minute))
		must(t, err)
		if s := approvalState(t, other, "apr_1"); s != store.ApprovalConsumed {
			t.Errorf("consumed on A, %s on B", s)
		}
		if _, err := other.ConsumeApproval(ctx, "apr_1", at(3*time.Minute)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("consuming on B what A consumed = %v, want ErrConflict", err)
		}
	}},
	{name: "ConcurrentDecideAcrossReplicas", handles: 2, run: func(t *testing.T, bs []Backend) {
		createApprovals(t, bs[0], pending("apr_1", "alice", "deploy", 1, t0, time.Hour))
		states := [2]string{store.ApprovalApproved, store.ApprovalDenied}
		errs := race(bs, racers, func(i int, b Backend) error {
			_, err := b.DecideApproval(t.Context(), "apr_1", states[(i/2)%2], fmt.Sprintf("approver-%d", i), "", at(time.Minute))
			return err
		})
		w := oneWinner(t, "DecideApproval", errs, store.ErrConflict)
		got, err := bs[1].GetApproval(t.Context(), "apr_1")
		must(t, err)
		if w >= 0 && (got.State != states[(w/2)%2] || got.DecidedBy != fmt.Sprintf("approver-%d", w)) {
			t.Errorf("after concurrent decisions: %s by %s; want the winner's %s by approver-%d", got.State, got.DecidedBy, states[(w/2)%2], w)
		}
	}},
	{name: "ConcurrentConsumeAcrossReplicas", handles: 2, run: func(t *testing.T, bs []Backend) {
		// Single use: of identical calls on several replicas, one runs.
		createApprovals(t, bs[0], pending("apr_1", "alice", "deploy", 1, t0, time.Hour))
		decide(t, bs[1], "apr_1", store.ApprovalApproved, t0)
		errs := race(bs, racers, func(i int, b Backend) error {
			_, err := b.ConsumeApproval(t.Context(), "apr_1", at(time.Duration(i+1)*time.Second))
			return err
		})
		w := oneWinner(t, "ConsumeApproval", errs, store.ErrConflict)
		got, err := bs[0].GetApproval(t.Context(), "apr_1")
		must(t, err)
		if w >= 0 && (got.State != store.ApprovalConsumed || got.ConsumedAt == nil || !got.ConsumedAt.Equal(at(time.Duration(w+1)*time.Second))) {
			t.Errorf("after concurrent consumption: %s at %v; want consumed at the winner's time %v", got.State, got.ConsumedAt, at(time.Duration(w+1)*time.Second))
		}
	}},
	{name: "ConcurrentCreateForOneCall", handles: 2, run: func(t *testing.T, bs []Backend) {
		errs := race(bs, racers, func(i int, b Backend) error {
			return b.CreateApproval(t.Context(), pending(fmt.Sprintf("apr_%d", i), "alice", "deploy", 1, at(time.Duration(i)*time.Second), time.Hour))
		})
		oneWinner(t, "CreateApproval for one call", errs, store.ErrConflict)
		if as, err := bs[1].ListApprovals(t.Context(), store.ApprovalPending, 0); err != nil || len(as) != 1 {
			t.Errorf("pending requests = %v, %v; want one", approvalIDs(as), err)
		}
	}},
}
