// Package storetest is the conformance suite every store backend must pass
// (STYLE §10): the same cases run against SQLite (internal/store/sqlite)
// and PostgreSQL, so that the gateway behaves the same on either. A
// backend's test calls Run with an Opener.
//
// Cases with two handles on one database are what two gateway replicas
// sharing it see (issue 12): an approval is decided once and consumed
// once whichever replica tries, a subject is quarantined once, usage is
// counted once, and a key revoked or a grant changed through one handle
// is seen through the other at once.
//
// Audit records appended through several handles share one global
// sequence, gap-free and in commit order, while each writer seals into its
// own hash chain (audit.Chain.WithID, the replica id): the audit.Backend
// contract is that AppendAudit reads the newest sequence number and its
// chain's head inside its transaction, under a lock that orders commits.
//
// The suite's own times mostly have microsecond precision, but audit
// records and pins need nanoseconds: the audit seal covers the record's
// UnixNano, so a backend storing audit times more coarsely breaks its own
// chain (WritersOnTwoReplicas, with real clock times, catches that), and
// pintest compares nanoseconds. Both backends store nanoseconds as
// integers. Strings never contain NUL bytes,
// which PostgreSQL text cannot hold; byte fields (key digests, nonces,
// ciphertexts) do. JSON values (approval and audit arguments) come back
// byte for byte, so they cannot be stored reformatted (jsonb).
package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/plugins/pin/pintest"
	"github.com/portcullis/portcullis/internal/secrets"
	"github.com/portcullis/portcullis/internal/store"
)

// Backend is everything one store backend implements: the gateway's
// repository (store.Store, which includes audit.Backend, store.AbuseStore
// and store.ApprovalStore), the backend of the encrypted secrets and the
// backend of the tool pins.
type Backend interface {
	store.Store
	secrets.Backend
	pin.Backend
}

// Opener returns n handles (n >= 1) on one new database holding nothing
// but the schema and the default roles (guest, developer, admin with their
// grants). Each handle has connections of its own, as n gateway replicas
// sharing the database would. The opener closes the handles when t ends;
// a handle the suite closed itself is closed again then, which must be
// harmless.
type Opener func(t *testing.T, n int) []Backend

// KnownBugs maps a case, named by its path below Run
// ("AccessVersion/IncreasesOn_create_key"), to the description of a bug of
// the backend that makes it fail. Such a case is skipped with "BUG: " and
// the description, so that every run lists the bug until it is fixed and
// the entry removed. A name that is no case of the suite is an error.
type KnownBugs map[string]string

// Run runs every case of the suite, each on a new database from open.
// bugs may be nil.
func Run(t *testing.T, open Opener, bugs KnownBugs) {
	checked := func(t *testing.T, n int) []Backend {
		t.Helper()
		bs := open(t, n)
		if len(bs) != n {
			t.Fatalf("storetest: opener returned %d handles, want %d", len(bs), n)
		}
		return bs
	}
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"Users", userCases},
		{"Roles", roleCases},
		{"AccessVersion", accessVersionCases},
		{"APIKeys", keyCases},
		{"Sessions", sessionCases},
		{"Violations", violationCases},
		{"Quarantines", quarantineCases},
		{"Usage", usageCases},
		{"Approvals", approvalCases},
		{"Audit", auditCases},
		{"Secrets", secretCases},
		{"Lifecycle", lifecycleCases},
	}
	known := map[string]bool{}
	for _, g := range groups {
		for _, c := range g.cases {
			known[g.name+"/"+c.name] = true
		}
	}
	for name := range bugs {
		if !known[name] {
			t.Errorf("storetest: KnownBugs names %q, which is no case of the suite", name)
		}
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					if why, ok := bugs[g.name+"/"+c.name]; ok {
						t.Skip("BUG: " + why)
					}
					c.run(t, checked(t, max(c.handles, 1)))
				})
			}
		})
	}
	t.Run("Pins", func(t *testing.T) {
		pintest.Conformance(t, func(t *testing.T) pin.Backend { return checked(t, 1)[0] })
	})
}

// testCase is one case of the suite: run gets handles (default 1) on a
// new database.
type testCase struct {
	name    string
	handles int
	run     func(t *testing.T, bs []Backend)
}

// t0 is the suite's reference time (microsecond precision, UTC).
var t0 = time.Date(2026, 5, 1, 10, 0, 0, 123456000, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// racers is how many goroutines the concurrency cases start, spread over
// the handles; enough to collide, few enough for a loaded 2-core runner.
const racers = 8

// race runs f on n goroutines, the i-th on handles[i%len(handles)], all
// released together, and returns their errors by index.
func race(handles []Backend, n int, f func(i int, b Backend) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		b := handles[i%len(handles)]
		wg.Go(func() {
			<-start
			errs[i] = f(i, b)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner checks that exactly one of errs is nil and every other one
// wraps lose; it returns the winner's index (-1 if none).
func oneWinner(t *testing.T, what string, errs []error, lose error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("%s: goroutines %d and %d both succeeded; want exactly one", what, winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, lose):
			t.Errorf("%s: goroutine %d: %v, want %v", what, i, err, lose)
		}
	}
	if winner < 0 {
		t.Errorf("%s: no goroutine succeeded; want exactly one", what)
	}
	return winner
}

// must fails the test at once on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr reports an error unless err wraps want.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", what, err, want)
	}
}
