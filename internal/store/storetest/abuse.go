package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portcullis/portcullis/internal/store"
)

// violation is a fully populated violation; i varies it.
func violation(id, principal, typ string, when time.Time) store.Violation {
	return store.Violation{ID: id, Time: when, Principal: principal, Session: "sess-" + principal, Plugin: "files",
		Tool: "read_file", Type: typ, Severity: store.SeverityHigh, RequestID: "req-" + id, Detail: "detail of " + id}
}

func violationIDs(vs []store.Violation) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, v.ID)
	}
	return out
}

var violationCases = []testCase{
	{name: "RoundTripNewestFirst", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		if vs, err := b.ListViolations(ctx, store.ViolationQuery{}); err != nil || len(vs) != 0 {
			t.Fatalf("ListViolations on a new store = %v, %v", vs, err)
		}
		v1 := violation("vio_1", "alice", "policy_denial", t0)
		v2 := violation("vio_2", "bob", "path_escape", at(time.Minute))
		v2.Severity, v2.Session, v2.Plugin, v2.Detail = store.SeverityCritical, "", "", ""
		v3 := violation("vio_3", "", "auth_failure", at(2*time.Minute))
		v3.Severity = store.SeverityLow
		// Two batches, each its own transaction.
		must(t, b.RecordViolations(ctx, []store.Violation{v2, v1}))
		must(t, b.RecordViolations(ctx, []store.Violation{v3}))
		must(t, b.RecordViolations(ctx, nil)) // nothing to record is no error
		got, err := b.ListViolations(ctx, store.ViolationQuery{})
		must(t, err)
		if diff := cmp.Diff([]store.Violation{v3, v2, v1}, got); diff != "" {
			t.Errorf("ListViolations, newest first (-want +got):\n%s", diff)
		}
	}},
	{name: "Filters", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		var all []store.Violation
		principals := []string{"alice", "bob", "%"}
		types := []string{"policy_denial", "auth_failure"}
		for i := range 12 {
			v := violation(fmt.Sprintf("vio_%02d", i), principals[i%3], types[i%2], at(time.Duration(i)*time.Minute))
			v.Severity = store.Severity(i%4 + 1) // LOW, MEDIUM, HIGH, CRITICAL in turn
			all = append(all, v)
		}
		must(t, b.RecordViolations(ctx, all))
		newest := func(keep func(v store.Violation) bool, limit int) []string {
			var out []string
			for i := len(all) - 1; i >= 0 && len(out) < limit; i-- {
				if keep(all[i]) {
					out = append(out, all[i].ID)
				}
			}
			return out
		}
		everything := func(store.Violation) bool { return true }
		byID := map[string]store.Violation{}
		for _, v := range all {
			byID[v.ID] = v
		}
		for _, tc := range []struct {
			name string
			q    store.ViolationQuery
			want []string
		}{
			{"none", store.ViolationQuery{}, newest(everything, 100)},
			{"principal", store.ViolationQuery{Principal: "alice"}, newest(func(v store.Violation) bool { return v.Principal == "alice" }, 100)},
			{"principal is a literal", store.ViolationQuery{Principal: "%"}, newest(func(v store.Violation) bool { return v.Principal == "%" }, 100)},
			{"unknown principal", store.ViolationQuery{Principal: "carol"}, nil},
			{"type", store.ViolationQuery{Type: "auth_failure"}, newest(func(v store.Violation) bool { return v.Type == "auth_failure" }, 100)},
			{"since is inclusive", store.ViolationQuery{Since: at(9 * time.Minute)}, []string{"vio_11", "vio_10", "vio_09"}},
			{"since after the newest", store.ViolationQuery{Since: at(time.Hour)}, nil},
			{"limit keeps the newest", store.ViolationQuery{Limit: 2}, []string{"vio_11", "vio_10"}},
			{"principal and type", store.ViolationQuery{Principal: "bob", Type: "policy_denial"}, []string{"vio_10", "vio_04"}},
			{"min severity", store.ViolationQuery{MinSeverity: store.SeverityHigh},
				newest(func(v store.Violation) bool { return v.Severity >= store.SeverityHigh }, 100)},
			{"min severity critical and principal", store.ViolationQuery{MinSeverity: store.SeverityCritical, Principal: "alice"},
				newest(func(v store.Violation) bool { return v.Severity == store.SeverityCritical && v.Principal == "alice" }, 100)},
			{"all filters", store.ViolationQuery{Principal: "alice", Type: "policy_denial", Since: at(3 * time.Minute), Limit: 1}, []string{"vio_06"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := b.ListViolations(ctx, tc.q)
				must(t, err)
				if diff := cmp.Diff(tc.want, violationIDs(got), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("ListViolations(%+v) (-want +got):\n%s", tc.q, diff)
				}
				for _, v := range got {
					if diff := cmp.Diff(byID[v.ID], v); diff != "" {
						t.Errorf("ListViolations(%+v): %s (-want +got):\n%s", tc.q, v.ID, diff)
					}
				}
			})
		}
	}},
	{name: "HostilePrincipals", run: func(t *testing.T, bs []Backend) {
		// Filter values are literals, never SQL or patterns.
		b, ctx := bs[0], t.Context()
		hostiles := append(hostile[:len(hostile):len(hostile)], `'); DELETE FROM audit_events; --`)
		var all []store.Violation
		for i, s := range hostiles {
			v := violation(fmt.Sprintf("vio_%02d", i), s, "path_escape", at(time.Duration(i)*time.Minute))
			v.Severity = store.Severity(i%4 + 1)
			all = append(all, v)
		}
		must(t, b.RecordViolations(ctx, all))
		for _, v := range all {
			got, err := b.ListViolations(ctx, store.ViolationQuery{Principal: v.Principal})
			must(t, err)
			if diff := cmp.Diff([]store.Violation{v}, got); diff != "" {
				t.Errorf("ListViolations(principal %q) (-want +got):\n%s", v.Principal, diff)
			}
		}
		if got, err := b.ListViolations(ctx, store.ViolationQuery{}); err != nil || len(got) != len(all) {
			t.Errorf("ListViolations = %v, %v; want all %d", violationIDs(got), err, len(all))
		}
	}},
	{name: "DefaultLimit", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		var vs []store.Violation
		for i := range 150 {
			vs = append(vs, violation(fmt.Sprintf("vio_%03d", i), "alice", "rate_limit", at(time.Duration(i)*time.Second)))
		}
		must(t, b.RecordViolations(ctx, vs))
		got, err := b.ListViolations(ctx, store.ViolationQuery{})
		must(t, err)
		if len(got) != 100 || got[0].ID != "vio_149" || got[99].ID != "vio_050" {
			t.Errorf("ListViolations without a limit = %d records (%v ... ); want the newest 100", len(got), violationIDs(got[:min(len(got), 2)]))
		}
		for _, limit := range []int{1000, 1_000_000} {
			if got, err := b.ListViolations(ctx, store.ViolationQuery{Limit: limit}); err != nil || len(got) != 150 {
				t.Errorf("ListViolations(limit %d) = %d records, %v; want all 150", limit, len(got), err)
			}
		}
	}},
	{name: "BatchIsAtomic", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		first := violation("vio_first", "alice", "policy_denial", t0)
		must(t, b.RecordViolations(ctx, []store.Violation{first}))
		ok := violation("vio_ok", "alice", "policy_denial", at(time.Minute))
		after := violation("vio_after", "carol", "path_escape", at(3*time.Minute))
		for _, tc := range []struct {
			name string
			bad  func(v *store.Violation)
			want error // nil: any error
		}{
			{"no id", func(v *store.Violation) { v.ID = "" }, store.ErrInvalid},
			{"no type", func(v *store.Violation) { v.Type = "" }, store.ErrInvalid},
			{"no severity", func(v *store.Violation) { v.Severity = 0 }, store.ErrInvalid},
			{"severity above critical", func(v *store.Violation) { v.Severity = store.SeverityCritical + 1 }, store.ErrInvalid},
			{"duplicate id", func(v *store.Violation) { v.ID = first.ID }, nil},
			{"duplicate id in the batch", func(v *store.Violation) { v.ID = ok.ID }, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bad := violation("vio_bad", "bob", "path_escape", at(2*time.Minute))
				tc.bad(&bad)
				// The bad record between good ones: none is stored.
				err := b.RecordViolations(ctx, []store.Violation{ok, bad, after})
				if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
					t.Errorf("RecordViolations with a bad record (%s) = %v, want %v", tc.name, err, tc.want)
				}
				got, err := b.ListViolations(ctx, store.ViolationQuery{})
				must(t, err)
				if diff := cmp.Diff([]string{"vio_first"}, violationIDs(got)); diff != "" {
					t.Errorf("after a refused batch (-want +got):\n%s", diff)
				}
			})
		}
	}},
}

// quarantine is an active quarantine created by an administrator.
func quarantine(id, kind, subject string, when time.Time) store.Quarantine {
	return store.Quarantine{ID: id, Kind: kind, Subject: subject, Reason: "reason " + id, CreatedAt: when, CreatedBy: "root"}
}

func activeIDs(t *testing.T, b Backend, all bool) []string {
	t.Helper()
	qs, err := b.ListQuarantines(t.Context(), all)
	must(t, err)
	out := []string{}
	for _, q := range qs {
		out = append(out, q.ID)
	}
	return out
}

var quarantineCases = []testCase{
	{name: "CreateAndList", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		q1 := quarantine("qua_1", store.QuarantinePrincipal, "alice", t0)
		q2 := quarantine("qua_2", store.QuarantineSession, "sess-1", at(time.Minute))
		q3 := quarantine("qua_3", store.QuarantinePlugin, "files", at(2*time.Minute))
		q3.CreatedBy = "system"
		// Not created in time order: listed by creation time, not insertion.
		for _, q := range []store.Quarantine{q2, q3, q1} {
			got, err := b.CreateQuarantine(ctx, q)
			if err != nil {
				t.Fatalf("CreateQuarantine(%s): %v", q.ID, err)
			}
			if diff := cmp.Diff(q, got); diff != "" {
				t.Errorf("CreateQuarantine returned (-want +got):\n%s", diff)
			}
		}
		for _, all := range []bool{false, true} {
			got, err := b.ListQuarantines(ctx, all)
			must(t, err)
			if diff := cmp.Diff([]store.Quarantine{q3, q2, q1}, got); diff != "" {
				t.Errorf("ListQuarantines(all=%v), newest first (-want +got):\n%s", all, diff)
			}
		}
	}},
	{name: "SecondCreateWhileActive", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		q1 := quarantine("qua_1", store.QuarantinePrincipal, "alice", t0)
		_, err := b.CreateQuarantine(ctx, q1)
		must(t, err)
		got, err := b.CreateQuarantine(ctx, quarantine("qua_2", store.QuarantinePrincipal, "alice", at(time.Minute)))
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("second CreateQuarantine of an active subject = %v, want ErrConflict", err)
		}
		if diff := cmp.Diff(q1, got); diff != "" {
			t.Errorf("the conflict returns the existing quarantine (-want +got):\n%s", diff)
		}
		// The same subject under another kind is another quarantine.
		_, err = b.CreateQuarantine(ctx, quarantine("qua_3", store.QuarantineSession, "alice", at(2*time.Minute)))
		must(t, err)
		// A duplicate id of another subject is refused too.
		if _, err := b.CreateQuarantine(ctx, quarantine("qua_1", store.QuarantinePlugin, "files", at(3*time.Minute))); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateQuarantine with an existing id = %v, want ErrConflict", err)
		}
		if diff := cmp.Diff([]string{"qua_3", "qua_1"}, activeIDs(t, b, true)); diff != "" {
			t.Errorf("quarantines (-want +got):\n%s", diff)
		}
	}},
	{name: "Rejects", run: func(t *testing.T, bs []Backend) {
		b := bs[0]
		for _, tc := range []struct {
			name string
			q    store.Quarantine
		}{
			{"unknown kind", quarantine("qua_1", "user", "alice", t0)},
			{"no kind", quarantine("qua_1", "", "alice", t0)},
			{"no id", quarantine("", store.QuarantinePrincipal, "alice", t0)},
			{"no subject", quarantine("qua_1", store.QuarantinePrincipal, "", t0)},
		} {
			if _, err := b.CreateQuarantine(t.Context(), tc.q); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateQuarantine(%s) = %v, want ErrInvalid", tc.name, err)
			}
		}
		if got := activeIDs(t, b, true); len(got) != 0 {
			t.Errorf("refused quarantines were stored: %v", got)
		}
	}},
	{name: "ReleaseByID", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		for _, q := range []store.Quarantine{
			quarantine("qua_1", store.QuarantinePrincipal, "alice", t0),
			quarantine("qua_2", store.QuarantineSession, "sess-1", at(time.Minute)),
		} {
			_, err := b.CreateQuarantine(ctx, q)
			must(t, err)
		}
		when := at(time.Hour)
		got, err := b.ReleaseQuarantine(ctx, "qua_1", "root", "false alarm", when)
		must(t, err)
		want := quarantine("qua_1", store.QuarantinePrincipal, "alice", t0)
		want.ReleasedAt, want.ReleasedBy, want.ReleaseReason = &when, "root", "false alarm"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ReleaseQuarantine returned (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"qua_2"}, activeIDs(t, b, false)); diff != "" {
			t.Errorf("active after release (-want +got):\n%s", diff)
		}
		all, err := b.ListQuarantines(ctx, true)
		must(t, err)
		if len(all) != 2 || all[1].ID != "qua_1" {
			t.Fatalf("ListQuarantines(all) = %v; want both, the released one last", all)
		}
		if diff := cmp.Diff(want, all[1]); diff != "" {
			t.Errorf("stored released quarantine (-want +got):\n%s", diff)
		}
		if _, err := b.ReleaseQuarantine(ctx, "qua_1", "root", "again", at(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second release = %v, want ErrNotFound", err)
		}
		for _, s := range []string{"qua_nope", "qua_%", "%", "", `' OR 1=1 --`} {
			if _, err := b.ReleaseQuarantine(ctx, s, "root", "", when); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ReleaseQuarantine(%q) = %v, want ErrNotFound", s, err)
			}
		}
		if diff := cmp.Diff([]string{"qua_2"}, activeIDs(t, b, false)); diff != "" {
			t.Errorf("active after refused releases (-want +got):\n%s", diff)
		}
	}},
	{name: "ReleaseBySubject", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		// The same subject as a session (older) and as a principal: the
		// principal is released first.
		for _, q := range []store.Quarantine{
			quarantine("qua_s", store.QuarantineSession, "mallory", t0),
			quarantine("qua_p", store.QuarantinePrincipal, "mallory", at(time.Minute)),
			quarantine("qua_x", store.QuarantinePrincipal, "alice", at(2*time.Minute)),
		} {
			_, err := b.CreateQuarantine(ctx, q)
			must(t, err)
		}
		when := at(time.Hour)
		for _, w := range []store.Quarantine{
			quarantine("qua_p", store.QuarantinePrincipal, "mallory", at(time.Minute)),
			quarantine("qua_s", store.QuarantineSession, "mallory", t0),
		} {
			got, err := b.ReleaseQuarantine(ctx, "mallory", "admin", "false positive "+w.ID, when)
			want := w
			want.ReleasedAt, want.ReleasedBy, want.ReleaseReason = &when, "admin", "false positive "+w.ID
			if err != nil {
				t.Errorf("ReleaseQuarantine(mallory) = %v; want %s released", err, w.ID)
			} else if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ReleaseQuarantine(mallory) (-want +got):\n%s", diff)
			}
		}
		if _, err := b.ReleaseQuarantine(ctx, "mallory", "root", "", at(time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("third ReleaseQuarantine(mallory) = %v, want ErrNotFound", err)
		}
		if diff := cmp.Diff([]string{"qua_x"}, activeIDs(t, b, false)); diff != "" {
			t.Errorf("active (-want +got):\n%s", diff)
		}
	}},
	{name: "CreateAfterRelease", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		_, err := b.CreateQuarantine(ctx, quarantine("qua_1", store.QuarantinePrincipal, "alice", t0))
		must(t, err)
		_, err = b.ReleaseQuarantine(ctx, "alice", "root", "", at(time.Minute))
		must(t, err)
		_, err = b.CreateQuarantine(ctx, quarantine("qua_2", store.QuarantinePrincipal, "alice", at(2*time.Minute)))
		if err != nil {
			t.Fatalf("quarantining a released subject again = %v", err)
		}
		if diff := cmp.Diff([]string{"qua_2"}, activeIDs(t, b, false)); diff != "" {
			t.Errorf("active (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"qua_2", "qua_1"}, activeIDs(t, b, true)); diff != "" {
			t.Errorf("all (-want +got):\n%s", diff)
		}
		if all, err := b.ListQuarantines(ctx, true); err != nil || len(all) != 2 || all[0].ReleasedAt != nil || all[1].ReleasedAt == nil {
			t.Errorf("ListQuarantines(all) = %+v, %v; want qua_2 active, qua_1 released", all, err)
		}
		// The new one is active: a duplicate of it conflicts again.
		if _, err := b.CreateQuarantine(ctx, quarantine("qua_3", store.QuarantinePrincipal, "alice", t0)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate of the re-quarantine = %v, want ErrConflict", err)
		}
	}},
	{name: "HostileSubjects", run: func(t *testing.T, bs []Backend) {
		// Subjects are literals: stored as they are, released by id.
		b, ctx := bs[0], t.Context()
		_, err := b.CreateQuarantine(ctx, quarantine("qua_alice", store.QuarantinePrincipal, "alice", t0))
		must(t, err)
		when := at(time.Hour)
		for i, s := range append(hostile[:len(hostile):len(hostile)], `'); DELETE FROM audit_events; --`) {
			q := quarantine(fmt.Sprintf("qua_%d", i), store.QuarantinePlugin, s, at(time.Duration(i+1)*time.Second))
			if got, err := b.CreateQuarantine(ctx, q); err != nil || !cmp.Equal(q, got) {
				t.Fatalf("CreateQuarantine(%q) = %+v, %v", s, got, err)
			}
			want := q
			want.ReleasedAt, want.ReleasedBy, want.ReleaseReason = &when, "admin", "ok"
			got, err := b.ReleaseQuarantine(ctx, q.ID, "admin", "ok", when)
			if err != nil {
				t.Errorf("ReleaseQuarantine(%s) = %v", q.ID, err)
			} else if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ReleaseQuarantine(%s) (-want +got):\n%s", q.ID, diff)
			}
			if _, err := b.ReleaseQuarantine(ctx, q.ID, "admin", "twice", when); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("releasing the released %s = %v, want ErrNotFound", q.ID, err)
			}
		}
		if _, err := b.ReleaseQuarantine(ctx, `' OR 1=1 --`, "admin", "x", when); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ReleaseQuarantine of an injection string = %v, want ErrNotFound", err)
		}
		if diff := cmp.Diff([]string{"qua_alice"}, activeIDs(t, b, false)); diff != "" {
			t.Errorf("active (-want +got):\n%s", diff)
		}
	}},
	{name: "AccessVersion", run: func(t *testing.T, bs []Backend) {
		// Quarantine changes bump AccessVersion (processes sharing the
		// store notice them); refused changes, violations and usage
		// (written every few seconds) must not, or every quota flush would
		// invalidate every cache.
		b, ctx := bs[0], t.Context()
		for _, s := range []struct {
			name string
			do   func() error
			bump bool
		}{
			{"create", func() error {
				_, err := b.CreateQuarantine(ctx, quarantine("qua_1", store.QuarantinePrincipal, "alice", t0))
				return err
			}, true},
			{"conflicting create", func() error {
				_, err := b.CreateQuarantine(ctx, quarantine("qua_2", store.QuarantinePrincipal, "alice", t0))
				if errors.Is(err, store.ErrConflict) {
					return nil
				}
				return fmt.Errorf("want ErrConflict, got %v", err)
			}, false},
			{"release", func() error {
				_, err := b.ReleaseQuarantine(ctx, "qua_1", "admin", "ok", t0)
				return err
			}, true},
			{"failed release", func() error {
				_, err := b.ReleaseQuarantine(ctx, "qua_1", "admin", "ok", t0)
				if errors.Is(err, store.ErrNotFound) {
					return nil
				}
				return fmt.Errorf("want ErrNotFound, got %v", err)
			}, false},
			{"violations", func() error {
				return b.RecordViolations(ctx, []store.Violation{violation("vio_1", "alice", "path_escape", t0)})
			}, false},
			{"usage", func() error { return b.AddUsage(ctx, store.Usage{Principal: "alice", Day: "2026-05-01", Calls: 1}) }, false},
		} {
			before, err := b.AccessVersion(ctx)
			must(t, err)
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			after, err := b.AccessVersion(ctx)
			must(t, err)
			if (after > before) != s.bump || after < before {
				t.Errorf("%s: AccessVersion %d -> %d, want bump %v", s.name, before, after, s.bump)
			}
		}
	}},
	{name: "ConcurrentCreateAcrossReplicas", handles: 2, run: func(t *testing.T, bs []Backend) {
		var got [racers]store.Quarantine
		errs := race(bs, racers, func(i int, b Backend) error {
			var err error
			got[i], err = b.CreateQuarantine(t.Context(),
				quarantine(fmt.Sprintf("qua_%d", i), store.QuarantinePrincipal, "mallory", at(time.Duration(i)*time.Second)))
			return err
		})
		w := oneWinner(t, "CreateQuarantine", errs, store.ErrConflict)
		if w < 0 {
			return
		}
		winner := fmt.Sprintf("qua_%d", w)
		for i, err := range errs {
			if err != nil && got[i].ID != winner {
				t.Errorf("goroutine %d: the conflict returned %q, want the winner %s", i, got[i].ID, winner)
			}
		}
		for _, b := range bs {
			if diff := cmp.Diff([]string{winner}, activeIDs(t, b, true)); diff != "" {
				t.Errorf("quarantines (-want +got):\n%s", diff)
			}
		}
	}},
	{name: "ConcurrentReleaseAcrossReplicas", handles: 2, run: func(t *testing.T, bs []Backend) {
		_, err := bs[0].CreateQuarantine(t.Context(), quarantine("qua_1", store.QuarantinePrincipal, "mallory", t0))
		must(t, err)
		errs := race(bs, racers, func(i int, b Backend) error {
			target := "mallory"
			if i%2 == 1 {
				target = "qua_1"
			}
			_, err := b.ReleaseQuarantine(t.Context(), target, fmt.Sprintf("admin-%d", i), "", at(time.Hour))
			return err
		})
		w := oneWinner(t, "ReleaseQuarantine", errs, store.ErrNotFound)
		all, err := bs[1].ListQuarantines(t.Context(), true)
		must(t, err)
		if len(all) != 1 || all[0].ReleasedAt == nil || (w >= 0 && all[0].ReleasedBy != fmt.Sprintf("admin-%d", w)) {
			t.Errorf("after concurrent releases: %+v; want released once, by the winner", all)
		}
	}},
	{name: "SeenByReplica", handles: 2, run: func(t *testing.T, bs []Backend) {
		a, other, ctx := bs[0], bs[1], t.Context()
		_, err := a.CreateQuarantine(ctx, quarantine("qua_1", store.QuarantinePrincipal, "mallory", t0))
		must(t, err)
		if diff := cmp.Diff([]string{"qua_1"}, activeIDs(t, other, false)); diff != "" {
			t.Errorf("quarantine made on one handle, listed on the other (-want +got):\n%s", diff)
		}
		_, err = other.ReleaseQuarantine(ctx, "qua_1", "root", "", at(time.Minute))
		must(t, err)
		if got := activeIDs(t, a, false); len(got) != 0 {
			t.Errorf("released on the other handle, still active on the first: %v", got)
		}
	}},
}

func usageOn(t *testing.T, b Backend, day string) []store.Usage {
	t.Helper()
	us, err := b.UsageOn(t.Context(), day)
	must(t, err)
	return us
}

var usageCases = []testCase{
	{name: "AddAndReadPerDay", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		for _, u := range []store.Usage{
			{Principal: "bob", Day: "2026-05-01", Calls: 1, CPUMillis: 7},
			{Principal: "alice", Day: "2026-05-01", Calls: 1, CPUMillis: 10},
			{Principal: "alice", Day: "2026-05-01", Calls: 2, CPUMillis: 5},
			{Principal: "alice", Day: "2026-05-02", Calls: 1},
			{Principal: "%", Day: "2026-05-01", CPUMillis: 3},
			{Principal: `' OR '1'='1`, Day: "2026-05-01", CPUMillis: 5},
		} {
			must(t, b.AddUsage(ctx, u))
		}
		for day, want := range map[string][]store.Usage{
			"2026-05-01": {
				{Principal: "%", Day: "2026-05-01", CPUMillis: 3},
				{Principal: `' OR '1'='1`, Day: "2026-05-01", CPUMillis: 5},
				{Principal: "alice", Day: "2026-05-01", Calls: 3, CPUMillis: 15},
				{Principal: "bob", Day: "2026-05-01", Calls: 1, CPUMillis: 7},
			},
			"2026-05-02": {{Principal: "alice", Day: "2026-05-02", Calls: 1}},
			"2026-05-03": nil,
			"2026-05-%":  nil,
		} {
			if diff := cmp.Diff(want, usageOn(t, b, day), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("UsageOn(%s), by principal (-want +got):\n%s", day, diff)
			}
		}
	}},
	{name: "Rejects", run: func(t *testing.T, bs []Backend) {
		b := bs[0]
		for _, u := range []store.Usage{
			{Day: "2026-05-01", Calls: 1},
			{Principal: "alice", Calls: 1},
			{Principal: "alice", Day: "2026-5-1", Calls: 1},
			{Principal: "alice", Day: "today", Calls: 1},
		} {
			if err := b.AddUsage(t.Context(), u); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("AddUsage(%+v) = %v, want ErrInvalid", u, err)
			}
		}
		if got := usageOn(t, b, "2026-05-01"); len(got) != 0 {
			t.Errorf("refused usage was stored: %v", got)
		}
	}},
	{name: "ConcurrentAddsCountedOnce", handles: 2, run: func(t *testing.T, bs []Backend) {
		// Every replica adds its own calls: none may be lost or doubled.
		const adds = 15
		errs := race(bs, racers, func(i int, b Backend) error {
			for range adds {
				for _, p := range []string{"alice", "bob"} {
					if err := b.AddUsage(t.Context(), store.Usage{Principal: p, Day: "2026-05-01", Calls: 1, CPUMillis: int64(i + 1)}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("goroutine %d: AddUsage = %v", i, err)
			}
		}
		cpu := int64(0)
		for i := range racers {
			cpu += int64(i+1) * adds
		}
		want := []store.Usage{
			{Principal: "alice", Day: "2026-05-01", Calls: racers * adds, CPUMillis: cpu},
			{Principal: "bob", Day: "2026-05-01", Calls: racers * adds, CPUMillis: cpu},
		}
		for i, b := range bs {
			if diff := cmp.Diff(want, usageOn(t, b, "2026-05-01")); diff != "" {
				t.Errorf("UsageOn through handle %d (-want +got):\n%s", i, diff)
			}
		}
	}},
}
