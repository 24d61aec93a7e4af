package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/secrets"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/postgres"
	"github.com/portcullis/portcullis/internal/store/postgres/pgtest"
)

// password is the password part of the DSNs of the connection tests
// (made per run: no literal password in the repository).
var password = "pw-" + rand.Text()

// sql runs one query on dsn's database and scans its single row into dest.
func sql(t *testing.T, dsn, query string, dest ...any) {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(t.Context(), query).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// wantSecretFree fails if err leaks the password or the DSN.
func wantSecretFree(t *testing.T, err error, dsn string) {
	t.Helper()
	if msg := err.Error(); strings.Contains(msg, password) || strings.Contains(msg, dsn) {
		t.Errorf("error shows the password or the DSN: %s", msg)
	}
}

func TestOpenRejectsNilLogger(t *testing.T) {
	if _, err := postgres.Open(t.Context(), "postgres://127.0.0.1/x", postgres.Options{}); err == nil {
		t.Fatal("Open accepted a nil logger")
	}
}

func TestOpenEmptyDSN(t *testing.T) {
	for _, dsn := range []string{"", "  ", "\n"} {
		start := time.Now()
		_, err := postgres.Open(t.Context(), dsn, postgres.Options{Logger: testLogger()})
		if err == nil || !strings.Contains(err.Error(), "empty DSN") {
			t.Errorf("Open(%q) = %v, want an empty DSN error", dsn, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Open(%q) took %s, want an immediate refusal", dsn, d)
		}
	}
}

func TestOpenMalformedDSNHidesPassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://portcullis:" + password + "@127.0.0.1:notaport/db",
		"postgres://portcullis:" + password + "@[::1/db",
		"host=127.0.0.1 password=" + password + " port=x",
		"host=127.0.0.1 password='" + password,
	} {
		_, err := postgres.Open(t.Context(), dsn, postgres.Options{Logger: testLogger()})
		if err == nil {
			t.Errorf("Open(malformed DSN) = nil, want an error")
			continue
		}
		wantSecretFree(t, err, dsn)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestOpenUnreachable: a refused connection and a server that never
// answers both fail within the connect timeout, naming where Open tried
// to connect but never the password or the DSN.
func TestOpenUnreachable(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts (the kernel does), never speaks
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silentPort := silent.Addr().(*net.TCPAddr).Port
	refused := closedPort(t)
	const timeout = 750 * time.Millisecond
	for _, tc := range []struct {
		name string
		port int
		dsn  string
	}{
		{"refused URL", refused, fmt.Sprintf("postgres://portcullis:%s@127.0.0.1:%d/portcullis?sslmode=disable", password, refused)},
		{"refused key=value", refused, fmt.Sprintf("host=127.0.0.1 port=%d user=portcullis password=%s dbname=portcullis sslmode=disable", refused, password)},
		{"silent server", silentPort, fmt.Sprintf("postgres://portcullis:%s@127.0.0.1:%d/portcullis?sslmode=disable", password, silentPort)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			db, err := postgres.Open(t.Context(), tc.dsn, postgres.Options{Logger: testLogger(), ConnectTimeout: timeout})
			took := time.Since(start)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded against a port without PostgreSQL")
			}
			if took > timeout+3*time.Second {
				t.Errorf("Open failed after %s, want within the connect timeout %s", took, timeout)
			}
			wantSecretFree(t, err, tc.dsn)
			if where := "127.0.0.1:" + strconv.Itoa(tc.port); !strings.Contains(err.Error(), where) {
				t.Errorf("error %q does not say where it tried (%s)", err, where)
			}
		})
	}
}

// TestOpenWrongPasswordHidesIt: the server refuses the login; the error
// says so without the password that was tried.
func TestOpenWrongPasswordHidesIt(t *testing.T) {
	u, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	dsn := u.String()
	_, err = postgres.Open(t.Context(), dsn, postgres.Options{Logger: testLogger()})
	if err == nil {
		t.Fatal("Open with a wrong password succeeded")
	}
	wantSecretFree(t, err, dsn)
}

// TestOpenRedactionRevealsNothing: redaction must not itself point at the
// password. A (wrong) password equal to the user name, or a short one,
// is not replaced where the message names the user or other text: a
// "[PASSWORD]" standing for the user name would tell the reader the
// password.
func TestOpenRedactionRevealsNothing(t *testing.T) {
	u, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	user := u.User.Username()
	for _, pw := range []string{user, "conn"} {
		u.User = url.UserPassword(user, pw)
		_, err := postgres.Open(t.Context(), u.String(), postgres.Options{Logger: testLogger()})
		if err == nil {
			t.Fatalf("Open with the wrong password %q succeeded", pw)
		}
		if msg := err.Error(); strings.Contains(msg, "[PASSWORD]") || !strings.Contains(msg, fmt.Sprintf("user %q", user)) {
			t.Errorf("password %q: error %q; want the user named and no [PASSWORD] marking where the password appears", pw, msg)
		}
	}
}

// schemaVersions returns the migrations goose recorded, in order.
func schemaVersions(t *testing.T, dsn string) []int64 {
	t.Helper()
	var vs []int64
	sql(t, dsn, `SELECT COALESCE(array_agg(version_id ORDER BY id), '{}') FROM goose_db_version WHERE version_id > 0`, &vs)
	return vs
}

// TestConcurrentOpenMigratesOnce: replicas starting together on a new
// database: the migration lock lets one migrate while the others wait,
// and all of them open.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const replicas = 4
	dbs := make([]*postgres.DB, replicas)
	errs := make([]error, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			<-start
			dbs[i], errs[i] = postgres.Open(t.Context(), dsn, postgres.Options{Logger: testLogger()})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open = %v", i, err)
			continue
		}
		defer dbs[i].Close()
	}
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6}, schemaVersions(t, dsn)); diff != "" {
		t.Errorf("migrations applied (-want +got):\n%s", diff)
	}
	if errs[0] == nil {
		roles, err := dbs[0].ListRoles(t.Context())
		if err != nil || len(roles) != 3 {
			t.Errorf("default roles after concurrent migrations = %v, %v; want 3, seeded once", roles, err)
		}
	}
}

// TestReopenIsIdempotent: opening a migrated database again applies
// nothing and changes nothing.
func TestReopenIsIdempotent(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db, err := postgres.Open(t.Context(), dsn, postgres.Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.EnsureUser(t.Context(), "alice", []string{"developer"}); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(t.Context(), audittest.Chain(), []*audit.Event{{ID: "evt_1", Time: time.Now(), Type: audit.ServerStart}}); err != nil {
		t.Fatal(err)
	}
	version, err := db.AccessVersion(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	before := schemaVersions(t, dsn)
	for range 2 {
		db := open(t, dsn, nil)
		if diff := cmp.Diff(before, schemaVersions(t, dsn)); diff != "" {
			t.Errorf("reopening migrated again (-before +after):\n%s", diff)
		}
		if v, err := db.AccessVersion(t.Context()); err != nil || v != version {
			t.Errorf("AccessVersion after reopening = %d, %v; want %d", v, err, version)
		}
		if u, err := db.UserByName(t.Context(), "alice"); err != nil || !slices.Equal(u.Roles, []string{"developer"}) {
			t.Errorf("user after reopening = %+v, %v", u, err)
		}
		if es, err := db.QueryAudit(t.Context(), audit.Query{}); err != nil || len(es) != 1 {
			t.Errorf("audit after reopening = %d records, %v; want 1", len(es), err)
		}
		db.Close()
	}
}

// TestOpenReadOnly: an offline reader (audit verify) reads a live store but
// can write nothing, and applies no migrations: on a database nobody has
// migrated it creates no table (it fails on the missing schema instead).
func TestOpenReadOnly(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	rw := open(t, dsn, nil)
	if err := rw.AppendAudit(t.Context(), audittest.Chain(), []*audit.Event{{ID: "evt_1", Time: time.Now(), Type: audit.ServerStart}}); err != nil {
		t.Fatal(err)
	}
	ro, err := postgres.Open(t.Context(), dsn, postgres.Options{Logger: testLogger(), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if es, err := ro.QueryAudit(t.Context(), audit.Query{}); err != nil || len(es) != 1 {
		t.Fatalf("read-only QueryAudit = %d records, %v; want 1", len(es), err)
	}
	if err := ro.AppendAudit(t.Context(), audittest.Chain(), []*audit.Event{{ID: "evt_2", Time: time.Now(), Type: audit.ServerStart}}); err == nil {
		t.Error("a read-only handle appended an audit record")
	}
	if err := ro.CreateRole(t.Context(), "sneaky", ""); err == nil {
		t.Error("a read-only handle created a role")
	}
	if es, _ := rw.QueryAudit(t.Context(), audit.Query{}); len(es) != 1 {
		t.Errorf("the store holds %d records after the refused writes, want 1", len(es))
	}

	fresh := pgtest.NewDatabase(t)
	ro2, err := postgres.Open(t.Context(), fresh, postgres.Options{Logger: testLogger(), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro2.Close()
	if _, err := ro2.QueryAudit(t.Context(), audit.Query{}); err == nil {
		t.Error("a read-only open of an unmigrated database found an audit table: it migrated")
	}
}

// TestDurabilityEnforced: a DSN (or server default) turning
// synchronous_commit off is overridden; stronger settings are kept.
func TestDurabilityEnforced(t *testing.T) {
	base := pgtest.NewDatabase(t)
	for setting, want := range map[string]string{"off": "on", "local": "local", "remote_apply": "remote_apply"} {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		u.RawQuery += "&options=" + strings.ReplaceAll(url.QueryEscape("-c synchronous_commit="+setting), "+", "%20")
		db := open(t, u.String(), nil)
		if got, err := postgres.SynchronousCommit(t.Context(), db); err != nil || got != want {
			t.Errorf("synchronous_commit with the DSN asking for %s = %q, %v; want %q", setting, got, err, want)
		}
	}
}

// TestHostileTextInBatches: a NUL byte or invalid UTF-8 (which PostgreSQL
// text refuses) in one audit record or violation does not fail its batch:
// it is stored, and sealed, with U+FFFD in its place, and the other
// records are stored as given.
func TestHostileTextInBatches(t *testing.T) {
	db := open(t, pgtest.NewDatabase(t), nil)
	ctx, c := t.Context(), audittest.Chain()
	ok := &audit.Event{ID: "evt_ok", Time: time.Unix(0, 1_700_000_000_123_456_789), Type: audit.ToolCallStart,
		Principal: "alice", Roles: []string{"guest"}, Tool: "read_file", Args: json.RawMessage(`{"path":"a"}`)}
	bad := &audit.Event{ID: "evt_bad", Time: ok.Time, Type: audit.PolicyDeny, Principal: "mallory\x00",
		Roles: []string{"dev\xffeloper", "guest"}, Tool: "x\x00y", Session: "s\xc3", Detail: "ok",
		Args: json.RawMessage("{\"p\":\"\xff\"}")}
	if err := db.AppendAudit(ctx, c, []*audit.Event{ok, bad}); err != nil {
		t.Fatalf("AppendAudit with hostile text = %v, want it stored", err)
	}
	got, err := db.QueryAudit(ctx, audit.Query{Ascending: true})
	if err != nil || len(got) != 2 {
		t.Fatalf("QueryAudit = %d records, %v", len(got), err)
	}
	wantOK := *ok
	wantOK.Time = ok.Time.UTC()
	if diff := cmp.Diff(wantOK, got[0], cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("the well-formed record (-appended +stored):\n%s", diff)
	}
	for field, v := range map[string]string{"principal": got[1].Principal, "tool": got[1].Tool, "session": got[1].Session,
		"roles": strings.Join(got[1].Roles, ","), "args": string(got[1].Args)} {
		if strings.ContainsRune(v, 0) || !strings.ContainsRune(v, '\uFFFD') {
			t.Errorf("hostile %s stored as %q; want U+FFFD in place of the bad bytes", field, v)
		}
	}
	if got[1].Principal != "mallory\uFFFD" || got[1].Tool != "x\uFFFDy" {
		t.Errorf("stored %q / %q", got[1].Principal, got[1].Tool)
	}
	if bad.Principal != got[1].Principal || bad.Hash != got[1].Hash {
		t.Errorf("the appended event does not show what was stored and sealed: %q %.8s vs %q %.8s", bad.Principal, bad.Hash, got[1].Principal, got[1].Hash)
	}
	rep, err := audit.Verify(ctx, db, audit.VerifyOptions{Chain: c, PublicKey: c.PublicKey()})
	if err != nil || !rep.OK() || rep.Records != 2 {
		t.Errorf("audit.Verify = %+v, %v; want the sanitized records intact", rep, err)
	}

	vs := []store.Violation{
		{ID: "vio_ok", Time: ok.Time, Principal: "alice", Type: "policy_denial", Severity: store.SeverityLow},
		{ID: "vio_bad", Time: ok.Time, Principal: "alice", Tool: "x\x00y", Detail: "\xff", Type: "policy_denial", Severity: store.SeverityLow},
	}
	if err := db.RecordViolations(ctx, vs); err != nil {
		t.Fatalf("RecordViolations with hostile text = %v, want it stored", err)
	}
	if got, err := db.ListViolations(ctx, store.ViolationQuery{}); err != nil || len(got) != 2 {
		t.Errorf("ListViolations = %d, %v; want 2", len(got), err)
	}
	if vs[1].Tool != "x\x00y" {
		t.Error("RecordViolations changed the caller's records")
	}
}

// TestUnstorableTextIsInvalid: elsewhere, text PostgreSQL cannot hold is
// store.ErrInvalid (SQLite would have stored it).
func TestUnstorableTextIsInvalid(t *testing.T) {
	db := open(t, pgtest.NewDatabase(t), nil)
	if _, _, err := db.EnsureUser(t.Context(), "a\x00b", nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("EnsureUser(NUL) = %v, want ErrInvalid", err)
	}
	if err := db.CreateRole(t.Context(), "r\xff", ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateRole(invalid UTF-8) = %v, want ErrInvalid", err)
	}
}

func TestBackupCoversEverySchemaTable(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	open(t, dsn, nil)
	var tables []string
	sql(t, dsn, `SELECT array_agg(table_name::text ORDER BY table_name) FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_name <> 'goose_db_version'`, &tables)
	if diff := cmp.Diff(tables, postgres.BackupTables, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("tables Backup copies (-schema +backup):\n%s", diff)
	}
}

// TestBackupRestores: the script Backup writes, run by psql on another
// database migrated to the same version, restores everything: the audit
// chain verifies, keys authenticate, secrets decrypt, and new rows get
// fresh ids.
func TestBackupRestores(t *testing.T) {
	psql := pgtest.Tool("psql")
	if psql == "" {
		t.Skip("no psql to restore with (apt-get install postgresql-client)")
	}
	ctx, c := t.Context(), audittest.Chain()
	src := open(t, pgtest.NewDatabase(t), nil)
	alice, _, err := src.EnsureUser(ctx, "alice", []string{"developer", "guest"})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.CreateRole(ctx, "auditor", "reads \"quoted\"\ttext\\"); err != nil {
		t.Fatal(err)
	}
	if err := src.GrantPermission(ctx, store.Grant{Role: "auditor", Action: "admin", Pattern: "audit", Effect: "deny"}); err != nil {
		t.Fatal(err)
	}
	key := store.APIKey{ID: "key_1", UserID: alice.ID, Hash: []byte{0, 1, '\\', 0xff}, Prefix: "pcl_k", Roles: []string{"guest"},
		Scopes: []string{"read_file"}, CreatedAt: time.Unix(0, 1_700_000_000_000_000_001)}
	if err := src.CreateAPIKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	sec, err := secrets.New(bytes.Repeat([]byte{7}, secrets.KeySize), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sec.Set(ctx, "TOKEN", "", []byte("v4lue\n\\x")); err != nil {
		t.Fatal(err)
	}
	p := pin.Record{Server: "notes", Tool: "read", Status: pin.Accepted, Hash: "sha256:aa",
		Definition: json.RawMessage(`{"name":"read","d":"a\nb"}`), FirstSeen: time.Unix(0, 5), UpdatedAt: time.Unix(0, 6)}
	if err := src.PutPin(ctx, p); err != nil {
		t.Fatal(err)
	}
	var events []*audit.Event
	for i := range 20 {
		events = append(events, &audit.Event{ID: fmt.Sprintf("evt_%02d", i), Time: time.Unix(0, int64(i)), Type: audit.ToolCallStart,
			Principal: "alice", Roles: []string{"guest"}, Args: json.RawMessage(fmt.Sprintf(`{"n":%d,"s":"tab\there"}`, i)), Detail: "line\nbreak"})
	}
	if err := src.AppendAudit(ctx, c, events); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "backup.sql")
	if err := src.Backup(ctx, path); err != nil {
		t.Fatal(err)
	}
	dstDSN := pgtest.NewDatabase(t)
	dst := open(t, dstDSN, nil)
	if _, _, err := dst.EnsureUser(ctx, "stale", nil); err != nil { // replaced by the restore
		t.Fatal(err)
	}
	restore := func() {
		t.Helper()
		out, err := exec.CommandContext(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path, dstDSN).CombinedOutput()
		if err != nil {
			t.Fatalf("psql restore: %v\n%s", err, out)
		}
	}
	restore()
	restore() // a second restore replaces the first

	for name, f := range map[string]func(b *postgres.DB) (any, error){
		"users":   func(b *postgres.DB) (any, error) { return b.ListUsers(ctx) },
		"roles":   func(b *postgres.DB) (any, error) { return b.ListRoles(ctx) },
		"keys":    func(b *postgres.DB) (any, error) { return b.ListAPIKeys(ctx) },
		"secrets": func(b *postgres.DB) (any, error) { return b.ListSecrets(ctx) },
		"pins":    func(b *postgres.DB) (any, error) { return b.ListPins(ctx, "") },
		"audit":   func(b *postgres.DB) (any, error) { return b.QueryAudit(ctx, audit.Query{Ascending: true}) },
	} {
		want, err := f(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f(dst)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("restored %s (-source +restored):\n%s", name, diff)
		}
	}
	if _, u, err := dst.APIKeyByHash(ctx, key.Hash); err != nil || u.Name != "alice" {
		t.Errorf("restored key authenticates %+v, %v", u, err)
	}
	dsec, err := secrets.New(bytes.Repeat([]byte{7}, secrets.KeySize), dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := dsec.Get(ctx, "TOKEN", ""); err != nil || string(v) != "v4lue\n\\x" {
		t.Errorf("restored secret = %q, %v", v, err)
	}
	rep, err := audit.Verify(ctx, dst, audit.VerifyOptions{Chain: c, PublicKey: c.PublicKey()})
	if err != nil || !rep.OK() || rep.Records != 20 {
		t.Errorf("restored audit log: %+v, %v; want 20 intact records", rep, err)
	}
	bob, created, err := dst.EnsureUser(ctx, "bob", nil)
	if err != nil || !created || bob.ID <= alice.ID {
		t.Errorf("new user after restore = %+v, %v; want a fresh id after %d", bob, err, alice.ID)
	}
	if err := dst.CreateRole(ctx, "another", ""); err != nil {
		t.Errorf("new role after restore: %v", err)
	}
	if err := dst.AppendAudit(ctx, c, []*audit.Event{{ID: "evt_next", Time: time.Unix(0, 99), Type: audit.ServerStart}}); err != nil {
		t.Errorf("append after restore: %v", err)
	}
	if es, err := dst.QueryAudit(ctx, audit.Query{Limit: 1}); err != nil || len(es) != 1 || es[0].Seq != 21 {
		t.Errorf("the chain continues at seq 21 after restore: %+v, %v", es, err)
	}
}

// TestBackupRefusesOtherSchemaVersion: a restore into a database at
// another schema version changes nothing.
func TestBackupRefusesOtherSchemaVersion(t *testing.T) {
	psql := pgtest.Tool("psql")
	if psql == "" {
		t.Skip("no psql to restore with (apt-get install postgresql-client)")
	}
	ctx := t.Context()
	src := open(t, pgtest.NewDatabase(t), nil)
	path := filepath.Join(t.TempDir(), "backup.sql")
	if err := src.Backup(ctx, path); err != nil {
		t.Fatal(err)
	}
	dstDSN := pgtest.NewDatabase(t)
	dst := open(t, dstDSN, nil)
	if _, _, err := dst.EnsureUser(ctx, "keep", nil); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dstDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, true)`); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path, dstDSN).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "schema version") {
		t.Errorf("restore into version 99 = %v\n%s\nwant refused", err, out)
	}
	if _, err := dst.UserByName(ctx, "keep"); err != nil {
		t.Errorf("a refused restore changed the database: %v", err)
	}
}

func TestBackupFileMode(t *testing.T) {
	db := open(t, pgtest.NewDatabase(t), nil)
	path := filepath.Join(t.TempDir(), "b.sql")
	if err := db.Backup(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file %v, %v; want mode 0600", fi, err)
	}
}

// TestOpenRefusesNewerSchema: a replica left on an older binary after
// another replica migrated the shared database to a newer schema refuses
// to open it (store.ErrSchemaNewer) instead of writing what the new
// schema does not expect (ADR 0004: rolling upgrades).
func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db, err := postgres.Open(t.Context(), dsn, postgres.Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	var n int64
	sql(t, dsn, `WITH i AS (INSERT INTO goose_db_version (version_id, is_applied) VALUES (9999, true) RETURNING 1) SELECT count(*) FROM i`, &n)
	_, err = postgres.Open(t.Context(), dsn, postgres.Options{Logger: testLogger()})
	if !errors.Is(err, store.ErrSchemaNewer) || !strings.Contains(err.Error(), "9999") {
		t.Fatalf("Open of a database at schema 9999 = %v; want ErrSchemaNewer naming the version", err)
	}
}
