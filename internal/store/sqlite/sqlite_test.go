package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

// Hostile strings used as names and filter values: each must be stored and
// matched as a literal, never interpreted as SQL.
var injections = []string{
	`' OR 1=1 --`,
	`' OR '1'='1`,
	`x"; DROP TABLE users; --`,
	`'); DELETE FROM audit_events; --`,
	`%`,
	`_`,
	`\`,
	"nul\x00byte",
}

// clock is an injected, manually advanced clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openAt(t testing.TB, path string, c *clock) *sqlite.DB {
	t.Helper()
	opts := sqlite.Options{Logger: testLogger()}
	if c != nil {
		opts.Now = c.Now
	}
	db, err := sqlite.Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openTemp(t testing.TB) (*sqlite.DB, *clock) {
	t.Helper()
	c := newClock()
	return openAt(t, filepath.Join(t.TempDir(), "portcullis.db"), c), c
}

func TestOpenRejectsNilLogger(t *testing.T) {
	if _, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "x.db"), sqlite.Options{}); err == nil {
		t.Fatal("Open accepted a nil logger")
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.Options{Logger: testLogger()})
	if err == nil {
		db.Close()
		t.Fatal("Open succeeded in a directory that does not exist")
	}
}

// TestOpenPathIsLiteral: characters that mean something in a URI (space,
// '?', '#', '%', '&', '=') are part of the file name, not DSN parameters.
func TestOpenPathIsLiteral(t *testing.T) {
	for _, name := range []string{"with space.db", "q?mode=memory.db", "hash#frag.db", "pct%41.db", "amp&_pragma=x.db"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			db := openAt(t, path, nil)
			if _, _, err := db.EnsureUser(t.Context(), "alice", nil); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Contains(names, name) {
				t.Fatalf("database not created at %q; directory holds %q", name, names)
			}
			// Reopening finds the same data: it really lives in that file.
			db = openAt(t, path, nil)
			if _, err := db.UserByName(t.Context(), "alice"); err != nil {
				t.Errorf("reopened database lost its user: %v", err)
			}
		})
	}
}

func TestOpenAppliesMigrations(t *testing.T) {
	db, _ := openTemp(t)
	ctx := t.Context()
	roles, err := db.Roles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"admin", "developer", "guest"}, roles); diff != "" {
		t.Errorf("Roles (-want +got):\n%s", diff)
	}
	grants, err := db.Grants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	has := func(role, action, pattern, effect string) bool {
		return slices.Contains(grants, store.Grant{Role: role, Action: action, Pattern: pattern, Effect: effect})
	}
	must := []store.Grant{
		{Role: "guest", Action: "call", Pattern: "read_file", Effect: "allow"},
		{Role: "guest", Action: "call", Pattern: "list_directory", Effect: "allow"},
		{Role: "developer", Action: "call", Pattern: "write_file", Effect: "allow"},
		{Role: "developer", Action: "call", Pattern: "execute_python", Effect: "allow"},
		{Role: "admin", Action: "call", Pattern: "*", Effect: "allow"},
		{Role: "admin", Action: "admin", Pattern: "*", Effect: "allow"},
		{Role: "admin", Action: "approve", Pattern: "*", Effect: "allow"},
	}
	for _, g := range must {
		if !has(g.Role, g.Action, g.Pattern, g.Effect) {
			t.Errorf("missing default grant %+v", g)
		}
	}
	// Least privilege: what lower roles must NOT have.
	for _, g := range grants {
		switch {
		case g.Role == "guest" && slices.Contains([]string{"write_file", "edit_file", "move_file", "delete_file", "execute_python", "run_command", "http_fetch", "*"}, g.Pattern):
			t.Errorf("guest holds %+v", g)
		case g.Role != "admin" && (g.Action != "call" || g.Pattern == "*"):
			t.Errorf("%s holds admin-only grant %+v", g.Role, g)
		case g.Effect != "allow" && g.Effect != "deny":
			t.Errorf("grant with effect %q", g.Effect)
		}
	}
}

func TestReopenIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	ctx := t.Context()
	db := openAt(t, path, nil)
	roles1, _ := db.Roles(ctx)
	grants1, _ := db.Grants(ctx)
	if _, _, err := db.EnsureUser(ctx, "alice", []string{"guest"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		db = openAt(t, path, nil)
		roles2, _ := db.Roles(ctx)
		grants2, _ := db.Grants(ctx)
		if diff := cmp.Diff(roles1, roles2); diff != "" {
			t.Errorf("reopen %d: roles changed:\n%s", i, diff)
		}
		if diff := cmp.Diff(grants1, grants2); diff != "" {
			t.Errorf("reopen %d: grants changed (seed applied twice?):\n%s", i, diff)
		}
		if u, err := db.UserByName(ctx, "alice"); err != nil || !slices.Equal(u.Roles, []string{"guest"}) {
			t.Errorf("reopen %d: alice = %+v, %v", i, u, err)
		}
		db.Close()
	}
}

func TestPragmas(t *testing.T) {
	db, _ := openTemp(t)
	ctx := t.Context()
	tests := []struct {
		pragma string
		reader bool
		want   string
	}{
		{"journal_mode", false, "wal"},
		{"synchronous", false, "2"}, // FULL
		{"foreign_keys", false, "1"},
		{"busy_timeout", false, "10000"},
		{"query_only", false, "0"},
		{"journal_mode", true, "wal"},
		{"synchronous", true, "2"},
		{"foreign_keys", true, "1"},
		{"query_only", true, "1"},
	}
	for _, tt := range tests {
		name := tt.pragma + "/writer"
		if tt.reader {
			name = tt.pragma + "/reader"
		}
		t.Run(name, func(t *testing.T) {
			got, err := sqlite.Pragma(ctx, db, tt.pragma, tt.reader)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.EqualFold(got, tt.want) {
				t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}
}

// TestReadPoolCannotWrite: the read pool is query_only, so a bug that
// routes a write to it fails loudly instead of bypassing the writer.
func TestReadPoolCannotWrite(t *testing.T) {
	db, _ := openTemp(t)
	err := sqlite.Exec(t.Context(), db, true, `INSERT INTO users (name, created_ns) VALUES ('mallory', 0)`)
	if err == nil {
		t.Fatal("write through the read pool succeeded")
	}
	if _, err := db.UserByName(t.Context(), "mallory"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserByName(mallory) = %v, want ErrNotFound", err)
	}
}

func TestPingAndClose(t *testing.T) {
	db, _ := openTemp(t)
	if err := db.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Ping(t.Context()); err == nil {
		t.Error("Ping on a closed store succeeded")
	}
	if _, err := db.Roles(t.Context()); err == nil {
		t.Error("Roles on a closed store succeeded")
	}
}

func TestEnsureUser(t *testing.T) {
	db, c := openTemp(t)
	ctx := t.Context()
	u, created, err := db.EnsureUser(ctx, "alice", []string{"guest", "developer"})
	if err != nil || !created {
		t.Fatalf("EnsureUser = %+v, %v, %v; want created", u, created, err)
	}
	want := store.User{ID: u.ID, Name: "alice", Roles: []string{"developer", "guest"}, CreatedAt: c.Now()}
	if diff := cmp.Diff(want, u); diff != "" {
		t.Errorf("created user (-want +got):\n%s", diff)
	}
	c.Advance(time.Hour)
	u2, created, err := db.EnsureUser(ctx, "alice", []string{"admin"})
	if err != nil || created {
		t.Fatalf("second EnsureUser = %v, created=%v; want existing", err, created)
	}
	// The existing user is returned unchanged: EnsureUser never adds roles
	// (in particular not admin) to an existing user.
	if diff := cmp.Diff(want, u2); diff != "" {
		t.Errorf("existing user (-want +got):\n%s", diff)
	}
	got, err := db.UserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UserByName (-want +got):\n%s", diff)
	}
	if _, err := db.UserByName(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserByName(bob) = %v, want ErrNotFound", err)
	}
	// Names are case-sensitive identities.
	if _, err := db.UserByName(ctx, "Alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserByName(Alice) = %v, want ErrNotFound", err)
	}
}

func TestEnsureUserInvalid(t *testing.T) {
	tests := []struct {
		name  string
		user  string
		roles []string
	}{
		{"empty name", "", []string{"guest"}},
		{"unknown role", "eve", []string{"root"}},
		{"unknown role after a good one", "eve", []string{"guest", "superuser"}},
		{"injected role", "eve", []string{`guest' OR '1'='1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openTemp(t)
			ctx := t.Context()
			if _, _, err := db.EnsureUser(ctx, tt.user, tt.roles); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("EnsureUser = %v, want ErrInvalid", err)
			}
			// Rolled back: no half-created user, no stray role rows.
			if _, err := db.UserByName(ctx, tt.user); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("user exists after a failed EnsureUser: %v", err)
			}
			for _, table := range []string{"users", "user_roles"} {
				if n, err := sqlite.CountRows(ctx, db, table); err != nil || n != 0 {
					t.Errorf("%s has %d rows (err %v) after rollback", table, n, err)
				}
			}
		})
	}
}

func TestGrantUserRole(t *testing.T) {
	db, _ := openTemp(t)
	ctx := t.Context()
	u, _, err := db.EnsureUser(ctx, "alice", []string{"guest"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := db.GrantUserRole(ctx, u.ID, "developer"); err != nil {
			t.Fatalf("GrantUserRole: %v", err)
		}
	}
	if err := db.GrantUserRole(ctx, u.ID, "guest"); err != nil {
		t.Fatalf("GrantUserRole(existing role): %v", err)
	}
	got, _ := db.UserByName(ctx, "alice")
	if diff := cmp.Diff([]string{"developer", "guest"}, got.Roles); diff != "" {
		t.Errorf("roles (-want +got):\n%s", diff)
	}

	if err := db.GrantUserRole(ctx, u.ID, "root"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("GrantUserRole(unknown role) = %v, want ErrInvalid", err)
	}
	if err := db.GrantUserRole(ctx, u.ID+1000, "guest"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GrantUserRole(unknown user) = %v, want ErrNotFound", err)
	}
	if n, _ := sqlite.CountRows(ctx, db, "user_roles"); n != 2 {
		t.Errorf("user_roles has %d rows, want 2", n)
	}
}

func TestInjectionInNames(t *testing.T) {
	db, _ := openTemp(t)
	ctx := t.Context()
	if _, _, err := db.EnsureUser(ctx, "alice", []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range injections {
		t.Run(name, func(t *testing.T) {
			// Looking up a hostile name that does not exist must not match alice.
			if u, err := db.UserByName(ctx, name); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("UserByName(%q) = %+v, %v; want ErrNotFound", name, u, err)
			}
			u, created, err := db.EnsureUser(ctx, name, []string{"guest"})
			if err != nil || !created {
				t.Fatalf("EnsureUser(%q) = %v, created=%v", name, err, created)
			}
			got, err := db.UserByName(ctx, name)
			if err != nil || got.Name != name || got.ID != u.ID || !slices.Equal(got.Roles, []string{"guest"}) {
				t.Errorf("UserByName(%q) = %+v, %v", name, got, err)
			}
			if _, err := db.RevokeAPIKey(ctx, name, time.Now()); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("RevokeAPIKey(%q) = %v, want ErrNotFound", name, err)
			}
			if _, _, err := db.APIKeyByHash(ctx, []byte(name)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("APIKeyByHash(%q) = %v, want ErrNotFound", name, err)
			}
		})
	}
	// Every table survived and alice still is the only admin.
	if u, err := db.UserByName(ctx, "alice"); err != nil || !slices.Equal(u.Roles, []string{"admin"}) {
		t.Errorf("alice = %+v, %v", u, err)
	}
	if n, err := sqlite.CountRows(ctx, db, "users"); err != nil || n != 1+len(injections) {
		t.Errorf("users = %d (%v), want %d", n, err, 1+len(injections))
	}
}

func newKey(id string, userID int64, created time.Time) store.APIKey {
	return store.APIKey{
		ID: id, UserID: userID, Hash: []byte("hash-of-" + id), Prefix: "pcl_" + id[:3],
		Roles: []string{"guest"}, CreatedAt: created,
	}
}

func TestAPIKeys(t *testing.T) {
	db, c := openTemp(t)
	ctx := t.Context()
	alice, _, err := db.EnsureUser(ctx, "alice", []string{"developer"})
	if err != nil {
		t.Fatal(err)
	}
	exp := c.Now().Add(24 * time.Hour)
	k1 := newKey("key_one", alice.ID, c.Now())
	k1.ExpiresAt = &exp
	k1.Roles = []string{"developer", "guest"}
	k2 := newKey("key_two", alice.ID, c.Now().Add(time.Minute))
	k3 := newKey("key_three", alice.ID, c.Now().Add(2*time.Minute))
	k3.Roles = nil
	for _, k := range []store.APIKey{k1, k2, k3} {
		if err := db.CreateAPIKey(ctx, k); err != nil {
			t.Fatalf("CreateAPIKey(%s): %v", k.ID, err)
		}
	}

	t.Run("lookup by hash", func(t *testing.T) {
		k, u, err := db.APIKeyByHash(ctx, k1.Hash)
		if err != nil {
			t.Fatal(err)
		}
		want := k1
		want.UserName = "alice"
		if diff := cmp.Diff(want, k); diff != "" {
			t.Errorf("key (-want +got):\n%s", diff)
		}
		if u.Name != "alice" || !slices.Equal(u.Roles, []string{"developer"}) {
			t.Errorf("user = %+v", u)
		}
		if _, _, err := db.APIKeyByHash(ctx, []byte("hash-of-key_on")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("lookup by a prefix of a hash = %v, want ErrNotFound", err)
		}
		if _, _, err := db.APIKeyByHash(ctx, nil); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("lookup by nil hash = %v, want ErrNotFound", err)
		}
	})

	t.Run("duplicates conflict", func(t *testing.T) {
		dupID := newKey("key_one", alice.ID, c.Now())
		dupID.Hash = []byte("another hash")
		dupHash := newKey("key_new", alice.ID, c.Now())
		dupHash.Hash = k2.Hash
		for name, k := range map[string]store.APIKey{"id": dupID, "hash": dupHash} {
			if err := db.CreateAPIKey(ctx, k); !errors.Is(err, store.ErrConflict) {
				t.Errorf("duplicate %s: CreateAPIKey = %v, want ErrConflict", name, err)
			}
		}
		if n, _ := sqlite.CountRows(ctx, db, "api_keys"); n != 3 {
			t.Errorf("api_keys has %d rows after conflicts, want 3", n)
		}
	})

	t.Run("unknown user", func(t *testing.T) {
		k := newKey("key_orphan", alice.ID+99, c.Now())
		if err := db.CreateAPIKey(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CreateAPIKey for a user that does not exist = %v, want ErrNotFound", err)
		}
	})

	t.Run("list newest first", func(t *testing.T) {
		keys, err := db.ListAPIKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, k := range keys {
			ids = append(ids, k.ID)
			if k.UserName != "alice" {
				t.Errorf("%s: UserName %q", k.ID, k.UserName)
			}
		}
		if diff := cmp.Diff([]string{"key_three", "key_two", "key_one"}, ids); diff != "" {
			t.Errorf("order (-want +got):\n%s", diff)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		at := c.Now().Add(time.Hour)
		k, err := db.RevokeAPIKey(ctx, "key_two", at)
		if err != nil {
			t.Fatal(err)
		}
		if k.RevokedAt == nil || !k.RevokedAt.Equal(at) || k.ID != "key_two" {
			t.Errorf("revoked key = %+v", k)
		}
		if k.Active(at) {
			t.Error("revoked key is Active")
		}
		got, _, err := db.APIKeyByHash(ctx, k2.Hash)
		if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(at) {
			t.Errorf("stored key after revoke = %+v, %v", got, err)
		}
		if _, err := db.RevokeAPIKey(ctx, "key_two", at.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second revoke = %v, want ErrNotFound", err)
		}
		// The first revocation time is kept.
		got, _, _ = db.APIKeyByHash(ctx, k2.Hash)
		if !got.RevokedAt.Equal(at) {
			t.Errorf("second revoke moved RevokedAt to %v", got.RevokedAt)
		}
		if _, err := db.RevokeAPIKey(ctx, "key_nope", at); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("revoke unknown = %v, want ErrNotFound", err)
		}
		// Other keys untouched.
		other, _, _ := db.APIKeyByHash(ctx, k1.Hash)
		if other.RevokedAt != nil {
			t.Error("revoking key_two revoked key_one")
		}
	})
}

func TestRecordSession(t *testing.T) {
	db, c := openTemp(t)
	ctx := t.Context()
	s := store.Session{ID: "sess-1", Principal: "alice", ProtocolVersion: "2025-11-25", ClientName: "cli", CreatedAt: c.Now()}
	for range 3 {
		if err := db.RecordSession(ctx, s); err != nil {
			t.Fatalf("RecordSession: %v", err)
		}
	}
	s2 := s
	s2.ID = injections[0]
	if err := db.RecordSession(ctx, s2); err != nil {
		t.Fatal(err)
	}
	if n, err := sqlite.CountRows(ctx, db, "sessions"); err != nil || n != 2 {
		t.Errorf("sessions = %d (%v), want 2", n, err)
	}
}

func mkEvent(id string, at time.Time, typ audit.Type, principal, tool, status, req string) *audit.Event {
	return &audit.Event{
		ID: id, Time: at, Type: typ, Principal: principal, Tool: tool, Status: status, RequestID: req,
	}
}

func TestAppendAuditRoundTrip(t *testing.T) {
	db, c := openTemp(t)
	ctx := t.Context()
	e := &audit.Event{
		ID: "evt_full", Time: c.Now(), Type: audit.ToolCallEnd, Principal: "alice",
		Roles: []string{"guest", "developer"}, Session: "s1", RequestID: "r1", RemoteAddr: "127.0.0.1:5",
		Tool: "read_file", Server: "srv", ArgsDigest: "hmac-sha256:00", Args: []byte(`{"path":"a.txt"}`),
		Decision: audit.DecisionAllow, Reason: "OK", Status: audit.StatusOK, Duration: 1500 * time.Microsecond,
		ResultDigest: "hmac-sha256:11", Error: "generic", Detail: "rule 3",
	}
	bare := &audit.Event{ID: "evt_bare", Time: c.Now(), Type: audit.ServerStart}
	if err := db.AppendAudit(ctx, audittest.Chain(), []*audit.Event{e, bare}); err != nil {
		t.Fatal(err)
	}
	got, err := db.QueryAudit(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	want := *e
	want.Roles = []string{"developer", "guest"} // stored sorted
	if diff := cmp.Diff([]audit.Event{*bare, want}, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestAppendAuditSeq(t *testing.T) {
	db, c := openTemp(t)
	ctx := t.Context()
	var last int64
	for b := range 5 {
		batch := make([]*audit.Event, b+1)
		for i := range batch {
			batch[i] = mkEvent(fmt.Sprintf("evt_%d_%d", b, i), c.Now(), audit.ToolCallStart, "p", "t", "started", "r")
		}
		if err := db.AppendAudit(ctx, audittest.Chain(), batch); err != nil {
			t.Fatal(err)
		}
		for i, e := range batch {
			if e.Seq <= last {
				t.Errorf("batch %d event %d: Seq %d not after %d", b, i, e.Seq, last)
			}
			last = e.Seq
		}
	}
	if err := db.AppendAudit(ctx, audittest.Chain(), nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
}

// TestAppendAuditAtomic: a batch with one bad event stores nothing and
// assigns no Seq; sequence numbers are never reused afterwards.
func TestAppendAuditAtomic(t *testing.T) {
	tests := []struct {
		name  string
		batch func(now time.Time) []*audit.Event
	}{
		{"duplicate of a stored id", func(now time.Time) []*audit.Event {
			return []*audit.Event{
				mkEvent("evt_new1", now, audit.ToolCallStart, "p", "", "", ""),
				mkEvent("evt_existing", now, audit.ToolCallStart, "p", "", "", ""),
				mkEvent("evt_new2", now, audit.ToolCallStart, "p", "", "", ""),
			}
		}},
		{"duplicate inside the batch", func(now time.Time) []*audit.Event {
			return []*audit.Event{
				mkEvent("evt_twice", now, audit.ToolCallStart, "p", "", "", ""),
				mkEvent("evt_new3", now, audit.ToolCallStart, "p", "", "", ""),
				mkEvent("evt_twice", now, audit.ToolCallStart, "p", "", "", ""),
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, c := openTemp(t)
			ctx := t.Context()
			existing := mkEvent("evt_existing", c.Now(), audit.ServerStart, "", "", "", "")
			if err := db.AppendAudit(ctx, audittest.Chain(), []*audit.Event{existing}); err != nil {
				t.Fatal(err)
			}
			batch := tt.batch(c.Now())
			if err := db.AppendAudit(ctx, audittest.Chain(), batch); err == nil {
				t.Fatal("AppendAudit with a duplicate id succeeded")
			}
			for i, e := range batch {
				if e.Seq != 0 {
					t.Errorf("event %d got Seq %d from a rolled-back batch", i, e.Seq)
				}
			}
			got, err := db.QueryAudit(ctx, audit.Query{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].ID != "evt_existing" {
				t.Errorf("after a failed batch the log holds %v, want only evt_existing", ids(got))
			}
			next := mkEvent("evt_after", c.Now(), audit.ServerStop, "", "", "", "")
			if err := db.AppendAudit(ctx, audittest.Chain(), []*audit.Event{next}); err != nil {
				t.Fatalf("append after a failed batch: %v", err)
			}
			if next.Seq <= existing.Seq {
				t.Errorf("Seq after failure = %d, want > %d", next.Seq, existing.Seq)
			}
		})
	}
}

// TestAppendAuditCancelledContext: the writer passes a ctx bounded by its
// CommitTimeout; an expired ctx must fail the batch, not half-store it.
func TestAppendAuditCancelledContext(t *testing.T) {
	db, c := openTemp(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	batch := []*audit.Event{mkEvent("evt_a", c.Now(), audit.ToolCallStart, "p", "", "", "")}
	if err := db.AppendAudit(ctx, audittest.Chain(), batch); err == nil {
		t.Fatal("AppendAudit with a cancelled ctx succeeded")
	}
	if batch[0].Seq != 0 {
		t.Errorf("Seq %d set by a failed append", batch[0].Seq)
	}
	if n, _ := sqlite.CountRows(t.Context(), db, "audit_events"); n != 0 {
		t.Errorf("%d events stored by a failed append", n)
	}
	// The writer connection is still usable afterwards.
	if err := db.AppendAudit(t.Context(), audittest.Chain(), batch); err != nil || batch[0].Seq == 0 {
		t.Errorf("append after a cancelled one = %v (Seq %d)", err, batch[0].Seq)
	}
}

func ids(events []audit.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func TestQueryAudit(t *testing.T) {
	db, _ := openTemp(t)
	ctx := t.Context()
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	evil := injections[0]
	events := []*audit.Event{
		mkEvent("e1", at(0), audit.ToolCallStart, "alice", "read_file", "started", "r1"),
		mkEvent("e2", at(1), audit.ToolCallEnd, "alice", "read_file", "ok", "r1"),
		mkEvent("e3", at(2), audit.PolicyDeny, "bob", "write_file", "refused", "r2"),
		mkEvent("e4", at(3), audit.ToolCallStart, "bob", "read_file", "started", "r3"),
		mkEvent("e5", at(4), audit.ToolCallEnd, "bob", "read_file", "error", "r3"),
		mkEvent("e6", at(5), audit.AuthFailure, evil, "", "refused", evil),
		mkEvent("e7", at(6), audit.ToolCallStart, "alice", evil, "started", "r4"),
	}
	if err := db.AppendAudit(ctx, audittest.Chain(), events); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    audit.Query
		want []string
	}{
		{"all newest first", audit.Query{}, []string{"e7", "e6", "e5", "e4", "e3", "e2", "e1"}},
		{"principal", audit.Query{Principal: "alice"}, []string{"e7", "e2", "e1"}},
		{"tool", audit.Query{Tool: "read_file"}, []string{"e5", "e4", "e2", "e1"}},
		{"type", audit.Query{Type: audit.ToolCallEnd}, []string{"e5", "e2"}},
		{"status", audit.Query{Status: "refused"}, []string{"e6", "e3"}},
		{"request id", audit.Query{RequestID: "r3"}, []string{"e5", "e4"}},
		{"combined", audit.Query{Principal: "bob", Tool: "read_file", Status: "error"}, []string{"e5"}},
		{"since is inclusive", audit.Query{Since: at(4)}, []string{"e7", "e6", "e5"}},
		{"until is exclusive", audit.Query{Until: at(2)}, []string{"e2", "e1"}},
		{"window", audit.Query{Since: at(1), Until: at(3)}, []string{"e3", "e2"}},
		{"empty window", audit.Query{Since: at(3), Until: at(3)}, nil},
		{"before seq", audit.Query{BeforeSeq: events[3].Seq}, []string{"e3", "e2", "e1"}},
		{"before seq and limit (paging)", audit.Query{BeforeSeq: events[5].Seq, Limit: 2}, []string{"e5", "e4"}},
		{"limit", audit.Query{Limit: 2}, []string{"e7", "e6"}},
		{"no match", audit.Query{Principal: "carol"}, nil},
		{"no partial match", audit.Query{Principal: "ali"}, nil},
		{"like wildcards are literal", audit.Query{Principal: "%"}, nil},
		{"injected principal is literal", audit.Query{Principal: evil}, []string{"e6"}},
		{"injected tool is literal", audit.Query{Tool: evil}, []string{"e7"}},
		{"injected request id is literal", audit.Query{RequestID: evil}, []string{"e6"}},
		{"drop table in type", audit.Query{Type: audit.Type(injections[2])}, nil},
		{"drop table in status", audit.Query{Status: injections[3]}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.QueryAudit(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, ids(got)); len(got)+len(tt.want) > 0 && diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
	// The log survived the hostile filters.
	if n, err := sqlite.CountRows(ctx, db, "audit_events"); err != nil || n != len(events) {
		t.Errorf("audit_events = %d (%v), want %d", n, err, len(events))
	}
}

func TestQueryAuditLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts more than MaxQueryLimit events")
	}
	db, c := openTemp(t)
	ctx := t.Context()
	n := audit.MaxQueryLimit + 5
	batch := make([]*audit.Event, n)
	for i := range batch {
		batch[i] = mkEvent(fmt.Sprintf("evt_%05d", i), c.Now(), audit.ToolCallStart, "p", "t", "started", "r")
	}
	if err := db.AppendAudit(ctx, audittest.Chain(), batch); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		limit, want int
	}{
		{0, audit.DefaultQueryLimit},
		{-1, audit.DefaultQueryLimit},
		{1, 1},
		{audit.MaxQueryLimit, audit.MaxQueryLimit},
		{audit.MaxQueryLimit + 1, audit.MaxQueryLimit},
		{1 << 30, audit.MaxQueryLimit},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			got, err := db.QueryAudit(ctx, audit.Query{Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Fatalf("Limit %d returned %d events, want %d", tt.limit, len(got), tt.want)
			}
			if got[0].ID != batch[n-1].ID {
				t.Errorf("first event %s, want the newest %s", got[0].ID, batch[n-1].ID)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Seq >= got[i-1].Seq {
					t.Fatalf("not newest first at %d: %d after %d", i, got[i].Seq, got[i-1].Seq)
				}
			}
		})
	}
}

// TestConcurrentWriters: writers are serialized (one writer connection per
// handle, BEGIN IMMEDIATE and busy_timeout across handles); none of them
// sees SQLITE_BUSY / "database is locked", and readers run alongside. The
// two-handle case is what two processes on one data dir (serve plus an
// offline admin command) look like.
func TestConcurrentWriters(t *testing.T) {
	for _, handles := range []int{1, 2} {
		t.Run(fmt.Sprintf("handles=%d", handles), func(t *testing.T) {
			c := newClock()
			path := filepath.Join(t.TempDir(), "portcullis.db")
			dbs := make([]*sqlite.DB, handles)
			for i := range dbs {
				dbs[i] = openAt(t, path, c)
			}
			testConcurrentWriters(t, dbs, c)
		})
	}
}

func testConcurrentWriters(t *testing.T, dbs []*sqlite.DB, c *clock) {
	ctx := t.Context()
	const workers, perWorker = 20, 10
	var wg sync.WaitGroup
	var failures, createdShared atomic.Int64
	fail := func(format string, args ...any) {
		failures.Add(1)
		t.Errorf(format, args...)
	}
	for w := range workers {
		db := dbs[w%len(dbs)]
		wg.Go(func() {
			name := fmt.Sprintf("user-%02d", w)
			u, created, err := db.EnsureUser(ctx, name, []string{"guest"})
			if err != nil || !created {
				fail("EnsureUser(%s) = %v, created=%v", name, err, created)
				return
			}
			// Everyone races to create the same user: exactly one wins.
			if _, created, err := db.EnsureUser(ctx, "shared", []string{"guest"}); err != nil {
				fail("EnsureUser(shared) = %v", err)
			} else if created {
				createdShared.Add(1)
			}
			if err := db.GrantUserRole(ctx, u.ID, "developer"); err != nil {
				fail("GrantUserRole: %v", err)
			}
			if err := db.CreateAPIKey(ctx, newKey(fmt.Sprintf("key_%02d", w), u.ID, c.Now())); err != nil {
				fail("CreateAPIKey: %v", err)
			}
			for i := range perWorker {
				e := mkEvent(fmt.Sprintf("evt_%02d_%02d", w, i), c.Now(), audit.ToolCallStart, name, "read_file", "started", "r")
				if err := db.AppendAudit(ctx, audittest.Chain(), []*audit.Event{e}); err != nil {
					fail("AppendAudit: %v", err)
				}
				if _, err := db.QueryAudit(ctx, audit.Query{Principal: name}); err != nil {
					fail("QueryAudit: %v", err)
				}
			}
			if err := db.RecordSession(ctx, store.Session{ID: name, Principal: name, CreatedAt: c.Now()}); err != nil {
				fail("RecordSession: %v", err)
			}
			if err := db.Ping(ctx); err != nil {
				fail("Ping: %v", err)
			}
		})
	}
	wg.Wait()
	if failures.Load() > 0 {
		return
	}
	if n := createdShared.Load(); n != 1 {
		t.Errorf("concurrent EnsureUser(shared) created it %d times, want 1", n)
	}
	db := dbs[0]
	for table, want := range map[string]int{"users": workers + 1, "user_roles": 2*workers + 1, "api_keys": workers, "audit_events": workers * perWorker, "sessions": workers} {
		if n, err := sqlite.CountRows(ctx, db, table); err != nil || n != want {
			t.Errorf("%s = %d (%v), want %d", table, n, err, want)
		}
	}
	got, err := db.QueryAudit(ctx, audit.Query{Limit: audit.MaxQueryLimit})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, e := range got {
		if seen[e.Seq] {
			t.Errorf("Seq %d assigned twice", e.Seq)
		}
		seen[e.Seq] = true
	}
}

// TestWriterOverSQLite wires audit.Writer to the real store: acknowledged
// events are durable (visible after reopening the file).
func TestWriterOverSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	db := openAt(t, path, nil)
	w, err := audit.NewWriter(audit.Config{CommitTimeout: time.Minute, QueueSize: 64, MaxBatch: 16, Chain: audittest.Chain()}, db, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if err := w.Emit(context.Background(), &audit.Event{Type: audit.ToolCallStart, Principal: fmt.Sprint(i)}); err != nil {
				t.Errorf("Emit: %v", err)
			}
		})
	}
	wg.Wait()
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openAt(t, path, nil)
	got, err := db.QueryAudit(t.Context(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 {
		t.Errorf("%d events durable after reopen, want 50", len(got))
	}
}

func BenchmarkAppendAudit(b *testing.B) {
	for _, size := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			db, c := openTemp(b)
			ctx := context.Background()
			batch := make([]*audit.Event, size)
			var n int
			args := []byte(`{"path":"src/main.go","offset":0,"limit":4096}`)
			for b.Loop() {
				for i := range batch {
					batch[i] = &audit.Event{
						ID: fmt.Sprintf("evt_%d_%d", n, i), Time: c.Now(), Type: audit.ToolCallStart,
						Principal: "alice", Roles: []string{"developer"}, RequestID: "req", Tool: "read_file",
						ArgsDigest: "hmac-sha256:0000000000000000000000000000000000000000000000000000000000000000",
						Args:       args, Decision: audit.DecisionAllow, Status: audit.StatusStarted,
					}
				}
				if err := db.AppendAudit(ctx, audittest.Chain(), batch); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// TestOpenRefusesNewerSchema: a database a newer Portcullis migrated (a
// schema version this binary does not know) is refused with
// store.ErrSchemaNewer, before anything is written to it.
func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw := rawOpen(t, path)
	rawExec(t, raw, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (9999, 1)`)
	_, err = sqlite.Open(t.Context(), path, sqlite.Options{Logger: testLogger()})
	if !errors.Is(err, store.ErrSchemaNewer) || !strings.Contains(err.Error(), "9999") {
		t.Fatalf("Open of a database at schema 9999 = %v; want ErrSchemaNewer naming the version", err)
	}
	// Back at a version it knows, it opens again.
	rawExec(t, raw, `DELETE FROM goose_db_version WHERE version_id = 9999`)
	db, err = sqlite.Open(t.Context(), path, sqlite.Options{Logger: testLogger()})
	if err != nil {
		t.Fatalf("Open after the newer version was removed: %v", err)
	}
	db.Close()
}
