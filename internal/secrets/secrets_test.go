package secrets_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/secrets"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

func open(t *testing.T, key []byte) (*secrets.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := secrets.New(key, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, secrets.KeySize) }

// fakeValue is built at run time (secret scanners read the source).
func fakeValue() []byte { return []byte("tok-" + strings.Repeat("c0ffee", 6)) }

func TestRoundTripAndUserFallback(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, key(1))
	v := fakeValue()
	if err := s.Set(ctx, "notes_token", "", v); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "notes_token", "alice", []byte("alice-own")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ user, want string }{{"", string(v)}, {"alice", "alice-own"}, {"bob", string(v)}} {
		got, err := s.Get(ctx, "notes_token", tc.user)
		if err != nil || string(got) != tc.want {
			t.Errorf("Get(notes_token, %q) = %q, %v; want %q", tc.user, got, err, tc.want)
		}
	}
	if err := s.Set(ctx, "notes_token", "", []byte("rotated")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "notes_token", "bob"); string(got) != "rotated" {
		t.Errorf("after replace: %q", got)
	}
	infos, err := s.List(ctx)
	if err != nil || len(infos) != 2 || infos[0].Name != "notes_token" {
		t.Fatalf("List = %+v, %v", infos, err)
	}
	if err := s.Delete(ctx, "notes_token", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "notes_token", "alice"); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := s.Get(ctx, "missing", ""); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
}

// TestEncryptedAtRest: the value is nowhere in the database files, and a
// ciphertext moved to another name or user, tampered with, or read with
// another key does not decrypt.
func TestEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	s, path := open(t, key(2))
	v := fakeValue()
	if err := s.Set(ctx, "api", "", v); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err == nil && bytes.Contains(b, v) {
			t.Fatalf("the value is stored in clear in %s", filepath.Base(path+suffix))
		}
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Moved to another name and to a user: AAD binds both.
	if _, err := raw.Exec(`INSERT INTO secrets (name, user, nonce, ciphertext, created_ns, updated_ns)
		SELECT 'other', '', nonce, ciphertext, created_ns, updated_ns FROM secrets WHERE name = 'api'`); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO secrets (name, user, nonce, ciphertext, created_ns, updated_ns)
		SELECT 'api', 'mallory', nonce, ciphertext, created_ns, updated_ns FROM secrets WHERE name = 'api'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "other", ""); !errors.Is(err, secrets.ErrCorrupt) {
		t.Errorf("moved to another name: %v, want ErrCorrupt", err)
	}
	if _, err := s.Get(ctx, "api", "mallory"); !errors.Is(err, secrets.ErrCorrupt) {
		t.Errorf("moved to another user: %v, want ErrCorrupt", err)
	}
	// Another key.
	db2, err := sqlite.Open(ctx, path, sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	other, _ := secrets.New(key(3), db2, nil)
	if _, err := other.Get(ctx, "api", ""); !errors.Is(err, secrets.ErrCorrupt) {
		t.Errorf("another key: %v, want ErrCorrupt", err)
	}
	// Tampered ciphertext.
	if _, err := raw.Exec(`UPDATE secrets SET ciphertext = zeroblob(length(ciphertext)) WHERE name = 'api' AND user = ''`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "api", ""); !errors.Is(err, secrets.ErrCorrupt) {
		t.Errorf("tampered: %v, want ErrCorrupt", err)
	}
}

func TestInvalidInput(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, key(4))
	for _, tc := range []struct {
		name, user string
		value      []byte
	}{
		{"", "", []byte("x")}, {"-flag", "", []byte("x")}, {"a b", "", []byte("x")}, {"ok", "bad user", []byte("x")},
		{"ok", "", nil}, {"ok", "", make([]byte, secrets.MaxValueBytes+1)}, {strings.Repeat("n", 129), "", []byte("x")},
		{"../x", "", []byte("x")},
	} {
		if err := s.Set(ctx, tc.name, tc.user, tc.value); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("Set(%q, %q, %d bytes) = %v, want ErrInvalid", tc.name, tc.user, len(tc.value), err)
		}
	}
	if _, err := secrets.New(make([]byte, 16), nil, nil); err == nil {
		t.Error("a 16-byte key was accepted")
	}
}

// TestGetOwnNeverFallsBack: a user without a value of their own never
// gets the shared one through GetOwn, nor after their own was deleted.
func TestGetOwnNeverFallsBack(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, key(1))
	shared := fakeValue()
	if err := s.Set(ctx, "notes_token", "", shared); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "notes_token", "alice", []byte("alice-own")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetOwn(ctx, "notes_token", "alice"); err != nil || string(got) != "alice-own" {
		t.Errorf("GetOwn(alice) = %q, %v", got, err)
	}
	if got, err := s.GetOwn(ctx, "notes_token", "bob"); !errors.Is(err, secrets.ErrNotFound) || got != nil {
		t.Errorf("GetOwn(bob) = %q, %v; want ErrNotFound, not the shared value", got, err)
	}
	if err := s.Delete(ctx, "notes_token", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOwn(ctx, "notes_token", "alice"); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("GetOwn(alice) after delete: %v; want ErrNotFound", err)
	}
	if got, err := s.GetOwn(ctx, "notes_token", ""); err != nil || !bytes.Equal(got, shared) {
		t.Errorf("GetOwn of the shared value itself = %v", err)
	}
	if _, err := s.GetOwn(ctx, "notes_token", "bad user"); !errors.Is(err, secrets.ErrInvalid) {
		t.Errorf("GetOwn with an invalid user: %v", err)
	}
}
