package storetest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/secrets"
	"github.com/portcullis/portcullis/internal/store"
)

// secret is an encrypted-looking record (the backend stores bytes only).
func secret(name, user string, fill byte, when time.Time) secrets.Record {
	return secrets.Record{Name: name, User: user, Nonce: bytes.Repeat([]byte{fill}, 12),
		Ciphertext: append([]byte{0, 0xff}, bytes.Repeat([]byte{fill}, 40)...), CreatedAt: when, UpdatedAt: when}
}

var secretCases = []testCase{
	{name: "PutAndGet", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		shared := secret("GITHUB_TOKEN", "", 1, t0)
		own := secret("GITHUB_TOKEN", "alice", 2, at(time.Minute))
		must(t, b.PutSecret(ctx, shared))
		must(t, b.PutSecret(ctx, own))
		for _, want := range []secrets.Record{shared, own} {
			got, err := b.GetSecret(ctx, want.Name, want.User)
			must(t, err)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("GetSecret(%s, %q) (-want +got):\n%s", want.Name, want.User, diff)
			}
		}
		for _, k := range [][2]string{{"GITHUB_TOKEN", "bob"}, {"github_token", ""}, {"GITHUB_%", ""}, {"NOPE", ""}} {
			if _, err := b.GetSecret(ctx, k[0], k[1]); !errors.Is(err, secrets.ErrNotFound) {
				t.Errorf("GetSecret(%q, %q) = %v, want secrets.ErrNotFound", k[0], k[1], err)
			}
		}
	}},
	{name: "ReplaceKeepsCreationTime", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		must(t, b.PutSecret(ctx, secret("API_KEY", "", 1, t0)))
		next := secret("API_KEY", "", 2, at(time.Hour))
		must(t, b.PutSecret(ctx, next))
		got, err := b.GetSecret(ctx, "API_KEY", "")
		must(t, err)
		want := next
		want.CreatedAt = t0
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after replacing (-want +got):\n%s", diff)
		}
		if list, err := b.ListSecrets(ctx); err != nil || len(list) != 1 {
			t.Errorf("ListSecrets after a replace = %v, %v; want one", list, err)
		}
	}},
	{name: "ListNamesOnly", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		if list, err := b.ListSecrets(ctx); err != nil || len(list) != 0 {
			t.Fatalf("ListSecrets on a new store = %v, %v", list, err)
		}
		for i, k := range [][2]string{{"b", "alice"}, {"b", ""}, {"a", "zed"}, {"c", ""}} {
			must(t, b.PutSecret(ctx, secret(k[0], k[1], byte(i), at(time.Duration(i)*time.Minute))))
		}
		got, err := b.ListSecrets(ctx)
		must(t, err)
		want := []secrets.Info{
			{Name: "a", User: "zed", UpdatedAt: at(2 * time.Minute)},
			{Name: "b", UpdatedAt: at(time.Minute)},
			{Name: "b", User: "alice", UpdatedAt: t0},
			{Name: "c", UpdatedAt: at(3 * time.Minute)},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ListSecrets, by name then user (-want +got):\n%s", diff)
		}
	}},
	{name: "Delete", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		must(t, b.PutSecret(ctx, secret("TOKEN", "", 1, t0)))
		must(t, b.PutSecret(ctx, secret("TOKEN", "alice", 2, t0)))
		must(t, b.DeleteSecret(ctx, "TOKEN", "alice"))
		if _, err := b.GetSecret(ctx, "TOKEN", "alice"); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("GetSecret after delete = %v, want secrets.ErrNotFound", err)
		}
		if _, err := b.GetSecret(ctx, "TOKEN", ""); err != nil {
			t.Errorf("deleting alice's value took the shared one: %v", err)
		}
		for _, k := range [][2]string{{"TOKEN", "alice"}, {"NOPE", ""}, {"TOK%", ""}} {
			if err := b.DeleteSecret(ctx, k[0], k[1]); !errors.Is(err, secrets.ErrNotFound) {
				t.Errorf("DeleteSecret(%q, %q) = %v, want secrets.ErrNotFound", k[0], k[1], err)
			}
		}
		list, err := b.ListSecrets(ctx)
		if err != nil || len(list) != 1 || list[0].User != "" {
			t.Errorf("ListSecrets = %v, %v; want the shared TOKEN only", list, err)
		}
	}},
	{name: "ThroughSecretsStore", handles: 2, run: func(t *testing.T, bs []Backend) {
		// Set through one replica, read through the other: values are
		// encrypted at rest and the per-user value falls back to the shared.
		ctx := t.Context()
		key := bytes.Repeat([]byte{7}, secrets.KeySize)
		var stores [2]*secrets.Store
		for i, b := range bs {
			s, err := secrets.New(key, b, func() time.Time { return t0 })
			must(t, err)
			stores[i] = s
		}
		value := []byte("s3cr3t-value-do-not-log")
		must(t, stores[0].Set(ctx, "DB_PASSWORD", "", value))
		must(t, stores[0].Set(ctx, "DB_PASSWORD", "alice", []byte("alice-only")))
		for user, want := range map[string]string{"": string(value), "alice": "alice-only", "bob": string(value)} {
			got, err := stores[1].Get(ctx, "DB_PASSWORD", user)
			if err != nil || string(got) != want {
				t.Errorf("Get(DB_PASSWORD, %q) on the other replica = %q, %v; want %q", user, got, err, want)
			}
		}
		raw, err := bs[1].GetSecret(ctx, "DB_PASSWORD", "")
		must(t, err)
		if bytes.Contains(raw.Ciphertext, value) || bytes.Contains(raw.Nonce, value) {
			t.Error("the stored record holds the value in clear")
		}
		must(t, stores[1].Delete(ctx, "DB_PASSWORD", "alice"))
		if got, err := stores[0].Get(ctx, "DB_PASSWORD", "alice"); err != nil || string(got) != string(value) {
			t.Errorf("after deleting alice's value: %q, %v; want the shared value", got, err)
		}
	}},
}

var lifecycleCases = []testCase{
	{name: "Ping", handles: 2, run: func(t *testing.T, bs []Backend) {
		for i, b := range bs {
			if err := b.Ping(t.Context()); err != nil {
				t.Errorf("handle %d: Ping = %v", i, err)
			}
		}
	}},
	{name: "CloseOneHandle", handles: 2, run: func(t *testing.T, bs []Backend) {
		// A replica stopping leaves the others working.
		must(t, bs[0].Close())
		if err := bs[0].Ping(t.Context()); err == nil {
			t.Error("Ping on a closed handle = nil, want an error")
		}
		if err := bs[1].Ping(t.Context()); err != nil {
			t.Errorf("the other handle after one closed: Ping = %v", err)
		}
		if _, _, err := bs[1].EnsureUser(t.Context(), "alice", nil); err != nil {
			t.Errorf("the other handle after one closed: EnsureUser = %v", err)
		}
	}},
	{name: "Backup", run: func(t *testing.T, bs []Backend) {
		b, ctx := bs[0], t.Context()
		ensure(t, b, "alice", "guest")
		dir := t.TempDir()
		path := filepath.Join(dir, "backup")
		must(t, b.Backup(ctx, path))
		fi, err := os.Stat(path)
		if err != nil || fi.Size() == 0 {
			t.Fatalf("backup file: %v, %v; want a non-empty file", fi, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("backup file mode %v; want no access for group or others", fi.Mode().Perm())
		}
		existing := filepath.Join(dir, "existing")
		must(t, os.WriteFile(existing, []byte("keep me"), 0o600))
		if err := b.Backup(ctx, existing); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Backup over an existing file = %v, want ErrConflict", err)
		}
		if got, err := os.ReadFile(existing); err != nil || string(got) != "keep me" {
			t.Errorf("Backup over an existing file changed it: %q, %v", got, err)
		}
		// The store keeps serving after a backup.
		if _, err := b.UserByName(ctx, "alice"); err != nil {
			t.Errorf("UserByName after Backup = %v", err)
		}
	}},
}
