package sqlite_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

var abuseT0 = time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.UTC)

func TestViolationsRoundTrip(t *testing.T) {
	db, _ := openTemp(t)
	ctx := t.Context()
	var all []store.Violation
	for i := range 12 {
		v := store.Violation{
			ID:        fmt.Sprintf("vio_%02d", i),
			Time:      abuseT0.Add(time.Duration(i) * time.Minute),
			Principal: []string{"alice", "bob", injections[i%len(injections)]}[i%3],
			Session:   fmt.Sprintf("sess-%d", i%2),
			Plugin:    []string{"", "github"}[i%2],
			Tool:      "read_file",
			Type:      []string{"path_escape", "policy_denial"}[i%2],
			Severity:  store.Severity(i%4 + 1),
			RequestID: fmt.Sprintf("req-%d", i),
			Detail:    "PATH_OUTSIDE_WORKSPACE: ../../etc/passwd",
		}
		all = append(all, v)
	}
	// Two batches: one transaction each.
	if err := db.RecordViolations(ctx, all[:5]); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordViolations(ctx, all[5:]); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordViolations(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	newestFirst := func(pred func(store.Violation) bool, limit int) []store.Violation {
		var out []store.Violation
		for i := len(all) - 1; i >= 0 && (limit == 0 || len(out) < limit); i-- {
			if pred(all[i]) {
				out = append(out, all[i])
			}
		}
		return out
	}
	every := func(store.Violation) bool { return true }
	tests := []struct {
		name string
		q    store.ViolationQuery
		want []store.Violation
	}{
		{"all, newest first", store.ViolationQuery{}, newestFirst(every, 0)},
		{"by principal", store.ViolationQuery{Principal: "alice"}, newestFirst(func(v store.Violation) bool { return v.Principal == "alice" }, 0)},
		{"by hostile principal is literal", store.ViolationQuery{Principal: injections[2]},
			newestFirst(func(v store.Violation) bool { return v.Principal == injections[2] }, 0)},
		{"LIKE wildcard is literal", store.ViolationQuery{Principal: "%"}, nil},
		{"by type", store.ViolationQuery{Type: "policy_denial"}, newestFirst(func(v store.Violation) bool { return v.Type == "policy_denial" }, 0)},
		{"since is inclusive", store.ViolationQuery{Since: abuseT0.Add(9 * time.Minute)}, newestFirst(func(v store.Violation) bool { return !v.Time.Before(abuseT0.Add(9 * time.Minute)) }, 0)},
		{"limit", store.ViolationQuery{Limit: 3}, newestFirst(every, 3)},
		{"combined", store.ViolationQuery{Principal: "bob", Type: "policy_denial", Since: abuseT0.Add(2 * time.Minute), Limit: 1},
			newestFirst(func(v store.Violation) bool {
				return v.Principal == "bob" && v.Type == "policy_denial" && !v.Time.Before(abuseT0.Add(2*time.Minute))
			}, 1)},
		{"nothing matches", store.ViolationQuery{Principal: "carol"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.ListViolations(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ListViolations(%+v) (-want +got):\n%s", tc.q, diff)
			}
		})
	}
}

func TestViolationsDefaultLimit(t *testing.T) {
	db, _ := openTemp(t)
	var vs []store.Violation
	for i := range 150 {
		vs = append(vs, store.Violation{ID: fmt.Sprintf("vio_%03d", i), Time: abuseT0.Add(time.Duration(i) * time.Second),
			Type: "rate_limit", Severity: store.SeverityLow})
	}
	if err := db.RecordViolations(t.Context(), vs); err != nil {
		t.Fatal(err)
	}
	got, err := db.ListViolations(t.Context(), store.ViolationQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 || got[0].ID != "vio_149" {
		t.Fatalf("default query returned %d, first %q; want 100 newest first", len(got), got[0].ID)
	}
	if got, _ := db.ListViolations(t.Context(), store.ViolationQuery{Limit: 1_000_000}); len(got) != 150 {
		t.Fatalf("a huge limit returned %d of 150", len(got))
	}
}

// TestViolationsBatchIsAtomic: an invalid record fails the whole batch.
func TestViolationsBatchIsAtomic(t *testing.T) {
	ok := func(id string) store.Violation {
		return store.Violation{ID: id, Time: abuseT0, Type: "path_escape", Severity: store.SeverityHigh}
	}
	tests := []struct {
		name    string
		bad     store.Violation
		invalid bool
	}{
		{"no id", store.Violation{Time: abuseT0, Type: "path_escape", Severity: store.SeverityHigh}, true},
		{"no type", store.Violation{ID: "vio_x", Time: abuseT0, Severity: store.SeverityHigh}, true},
		{"no severity", store.Violation{ID: "vio_x", Time: abuseT0, Type: "path_escape"}, true},
		{"severity too high", store.Violation{ID: "vio_x", Time: abuseT0, Type: "path_escape", Severity: 5}, true},
		{"duplicate id", ok("vio_a"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openTemp(t)
			err := db.RecordViolations(t.Context(), []store.Violation{ok("vio_a"), tc.bad, ok("vio_b")})
			if err == nil {
				t.Fatal("batch accepted")
			}
			if tc.invalid && !errors.Is(err, store.ErrInvalid) {
				t.Errorf("err %v, want ErrInvalid", err)
			}
			if n, err := sqlite.CountRows(t.Context(), db, "violations"); err != nil || n != 0 {
				t.Errorf("violations stored after a failed batch: %d, %v", n, err)
			}
		})
	}
}

func quarantine(id, kind, subject string, at time.Time) store.Quarantine {
	return store.Quarantine{ID: id, Kind: kind, Subject: subject, Reason: "10 violations", CreatedAt: at, CreatedBy: "system"}
}

func TestQuarantineLifecycle(t *testing.T) {
	db, _ := openTemp(t)
	ctx := t.Context()

	q1 := quarantine("qua_1", store.QuarantinePrincipal, "alice", abuseT0)
	got, err := db.CreateQuarantine(ctx, q1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(q1, got); diff != "" {
		t.Errorf("CreateQuarantine returned (-want +got):\n%s", diff)
	}

	// A second active quarantine of the same kind and subject conflicts and
	// returns the existing one.
	dup, err := db.CreateQuarantine(ctx, quarantine("qua_2", store.QuarantinePrincipal, "alice", abuseT0.Add(time.Second)))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate active quarantine: %v, want ErrConflict", err)
	}
	if diff := cmp.Diff(q1, dup); diff != "" {
		t.Errorf("conflict returned (-want existing +got):\n%s", diff)
	}
	// Other kinds with the same subject are separate.
	// Older than the principal's, so "principal first" is not just age.
	qs := quarantine("qua_3", store.QuarantineSession, "alice", abuseT0.Add(-time.Minute))
	if _, err := db.CreateQuarantine(ctx, qs); err != nil {
		t.Fatalf("session quarantine with a principal's name: %v", err)
	}
	qp := quarantine("qua_4", store.QuarantinePlugin, injections[0], abuseT0.Add(3*time.Second))
	if _, err := db.CreateQuarantine(ctx, qp); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []store.Quarantine{
		quarantine("qua_x", "user", "bob", abuseT0),
		quarantine("qua_x", "", "bob", abuseT0),
		quarantine("qua_x", store.QuarantinePrincipal, "", abuseT0),
		quarantine("", store.QuarantinePrincipal, "bob", abuseT0),
	} {
		if _, err := db.CreateQuarantine(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateQuarantine(%+v): %v, want ErrInvalid", bad, err)
		}
	}

	active, err := db.ListQuarantines(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.Quarantine{qp, q1, qs}, active); diff != "" {
		t.Errorf("active quarantines, newest first (-want +got):\n%s", diff)
	}

	// Release by subject: the principal first.
	relAt := abuseT0.Add(time.Hour)
	rel, err := db.ReleaseQuarantine(ctx, "alice", "admin", "false positive", relAt)
	if err != nil {
		t.Fatal(err)
	}
	wantRel := q1
	wantRel.ReleasedAt, wantRel.ReleasedBy, wantRel.ReleaseReason = &relAt, "admin", "false positive"
	if diff := cmp.Diff(wantRel, rel); diff != "" {
		t.Errorf("release by subject (-want +got):\n%s", diff)
	}
	// Then the session of the same name.
	if rel, err := db.ReleaseQuarantine(ctx, "alice", "admin", "too", relAt); err != nil || rel.ID != qs.ID {
		t.Fatalf("second release by subject: %s, %v; want %s", rel.ID, err, qs.ID)
	}
	if _, err := db.ReleaseQuarantine(ctx, "alice", "admin", "again", relAt); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("release with nothing active: %v, want ErrNotFound", err)
	}
	// By id, with a hostile subject.
	if rel, err := db.ReleaseQuarantine(ctx, "qua_4", "admin", "ok", relAt); err != nil || rel.Subject != injections[0] {
		t.Fatalf("release by id: %+v, %v", rel, err)
	}
	if _, err := db.ReleaseQuarantine(ctx, "qua_4", "admin", "twice", relAt); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("releasing a released quarantine: %v, want ErrNotFound", err)
	}
	if _, err := db.ReleaseQuarantine(ctx, "' OR 1=1 --", "admin", "x", relAt); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("release of an injection string: %v, want ErrNotFound", err)
	}

	// The unique index covers active quarantines only: quarantine again.
	q5 := quarantine("qua_5", store.QuarantinePrincipal, "alice", abuseT0.Add(2*time.Hour))
	if _, err := db.CreateQuarantine(ctx, q5); err != nil {
		t.Fatalf("re-quarantine after release: %v", err)
	}
	active, err = db.ListQuarantines(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.Quarantine{q5}, active); diff != "" {
		t.Errorf("active after re-quarantine (-want +got):\n%s", diff)
	}
	hist, err := db.ListQuarantines(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	released := 0
	for _, q := range hist {
		ids = append(ids, q.ID)
		if q.ReleasedAt != nil {
			released++
		}
	}
	if diff := cmp.Diff([]string{"qua_5", "qua_4", "qua_1", "qua_3"}, ids); diff != "" || released != 3 {
		t.Errorf("history ids (-want +got):\n%s; released %d, want 3", diff, released)
	}
	// And a duplicate of the new one conflicts again.
	if _, err := db.CreateQuarantine(ctx, quarantine("qua_6", store.QuarantinePrincipal, "alice", abuseT0)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate of the re-quarantine: %v, want ErrConflict", err)
	}
}

func TestUsageAdditive(t *testing.T) {
	db, _ := openTemp(t)
	ctx := t.Context()
	for _, u := range []store.Usage{
		{Principal: "bob", Day: "2026-05-01", Calls: 3, CPUMillis: 100},
		{Principal: "alice", Day: "2026-05-01", Calls: 1},
		{Principal: "bob", Day: "2026-05-01", Calls: 2, CPUMillis: 50},
		{Principal: "bob", Day: "2026-05-02", Calls: 7},
		{Principal: injections[1], Day: "2026-05-01", CPUMillis: 5},
	} {
		if err := db.AddUsage(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.UsageOn(ctx, "2026-05-01")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Usage{
		{Principal: injections[1], Day: "2026-05-01", CPUMillis: 5},
		{Principal: "alice", Day: "2026-05-01", Calls: 1},
		{Principal: "bob", Day: "2026-05-01", Calls: 5, CPUMillis: 150},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UsageOn (-want +got):\n%s", diff)
	}
	if got, _ := db.UsageOn(ctx, "2026-05-02"); len(got) != 1 || got[0].Calls != 7 {
		t.Errorf("next day: %+v", got)
	}
	if got, err := db.UsageOn(ctx, "2026-04-30"); err != nil || len(got) != 0 {
		t.Errorf("empty day: %+v, %v", got, err)
	}
	for _, bad := range []store.Usage{{Day: "2026-05-01", Calls: 1}, {Principal: "bob", Calls: 1}, {Principal: "bob", Day: "today", Calls: 1}} {
		if err := db.AddUsage(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("AddUsage(%+v): %v, want ErrInvalid", bad, err)
		}
	}
}

// TestQuarantineBumpsAccessVersion: every process sharing the store
// notices quarantine changes through AccessVersion; violations and usage
// (written every few seconds) must not bump it, or every quota flush would
// invalidate every cache.
func TestQuarantineBumpsAccessVersion(t *testing.T) {
	db, _ := openTemp(t)
	ctx := t.Context()
	version := func() int64 {
		t.Helper()
		v, err := db.AccessVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	steps := []struct {
		name string
		do   func() error
		bump bool
	}{
		{"create", func() error {
			_, err := db.CreateQuarantine(ctx, quarantine("qua_1", store.QuarantinePrincipal, "alice", abuseT0))
			return err
		}, true},
		{"conflicting create", func() error {
			_, err := db.CreateQuarantine(ctx, quarantine("qua_2", store.QuarantinePrincipal, "alice", abuseT0))
			if errors.Is(err, store.ErrConflict) {
				return nil
			}
			return fmt.Errorf("want ErrConflict, got %v", err)
		}, false},
		{"release", func() error {
			_, err := db.ReleaseQuarantine(ctx, "qua_1", "admin", "ok", abuseT0)
			return err
		}, true},
		{"failed release", func() error {
			_, err := db.ReleaseQuarantine(ctx, "qua_1", "admin", "ok", abuseT0)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return fmt.Errorf("want ErrNotFound, got %v", err)
		}, false},
		{"violations", func() error {
			return db.RecordViolations(ctx, []store.Violation{{ID: "vio_1", Time: abuseT0, Type: "path_escape", Severity: store.SeverityHigh}})
		}, false},
		{"usage", func() error { return db.AddUsage(ctx, store.Usage{Principal: "alice", Day: "2026-05-01", Calls: 1}) }, false},
	}
	for _, s := range steps {
		before := version()
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if after := version(); (after > before) != s.bump || after < before {
			t.Errorf("%s: access version %d -> %d, want bump %v", s.name, before, after, s.bump)
		}
	}
}
