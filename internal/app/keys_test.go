package app_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/datadir"
	"github.com/portcullis/portcullis/internal/secrets"
)

// TestOpenRefusesKeysThatDoNotMatchTheStore: a gateway whose data dir
// lost its key files, or got other ones, must not start and write records
// the chain cannot verify (the case of a replica started without the
// shared key files).
func TestOpenRefusesKeysThatDoNotMatchTheStore(t *testing.T) {
	root := t.TempDir()
	cfg := config.Default()
	cfg.DataDir, cfg.Workspace = filepath.Join(root, "data"), filepath.Join(root, "ws")
	cfg.Python.Interpreter = filepath.Join(root, "no-python")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	closeApp := func(a *app.App) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Gateway.Shutdown(ctx)
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	open := func() (*app.App, error) {
		a, err := app.Open(context.Background(), cfg, log)
		if err == nil {
			closeApp(a)
		}
		return a, err
	}
	a, err := app.Open(context.Background(), cfg, log) // a new store: its keys are created
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Audit.Emit(context.Background(), &audit.Event{Type: audit.ServerStart, Principal: "system", Status: audit.StatusOK}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Checkpoint(context.Background()); err != nil { // signed with the signing key
		t.Fatal(err)
	}
	if _, _, err := datadir.LoadOrCreateSecret(cfg.DataDir, datadir.SecretsKey, secrets.KeySize); err != nil {
		t.Fatal(err)
	}
	if err := a.Store.PutSecret(context.Background(), secrets.Record{Name: "TOKEN", Nonce: make([]byte, 12), Ciphertext: []byte("x"),
		CreatedAt: time.Now(), UpdatedAt: time.Now()}); err != nil { // the store now needs its secrets.key
		t.Fatal(err)
	}
	closeApp(a)
	key := func(name string) string { return filepath.Join(cfg.DataDir, name) }
	save := func(name string) []byte {
		b, err := os.ReadFile(key(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	put := func(name string, b []byte) {
		if err := os.WriteFile(key(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("another chain key", func(t *testing.T) {
		orig := save(datadir.AuditChainKey)
		defer put(datadir.AuditChainKey, orig)
		other := make([]byte, 32)
		rand.Read(other)
		put(datadir.AuditChainKey, other)
		if _, err := open(); err == nil || !strings.Contains(err.Error(), "chain key does not match") {
			t.Fatalf("Open with another chain key = %v, want a refusal", err)
		}
	})
	t.Run("another signing key", func(t *testing.T) {
		orig := save(datadir.AuditSigningKey)
		defer put(datadir.AuditSigningKey, orig)
		other := make([]byte, 32)
		rand.Read(other)
		put(datadir.AuditSigningKey, other)
		if _, err := open(); err == nil || !strings.Contains(err.Error(), "signing key") {
			t.Fatalf("Open with another signing key = %v, want a refusal", err)
		}
	})
	for _, name := range datadir.KeyFiles {
		t.Run("lost "+name, func(t *testing.T) {
			orig := save(name)
			defer put(name, orig)
			if err := os.Remove(key(name)); err != nil {
				t.Fatal(err)
			}
			_, err := open()
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "copy") {
				t.Fatalf("Open without %s = %v, want a refusal naming it", name, err)
			}
			if _, err := os.Stat(key(name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused start made a new %s (%v): a restart would take it", name, err)
			}
		})
	}
	t.Run("blank chain key variable", func(t *testing.T) {
		// Blank counts as unset for the key itself, so it must not excuse
		// a missing chain key file either (a new key would be made).
		orig := save(datadir.AuditChainKey)
		defer put(datadir.AuditChainKey, orig)
		if err := os.Remove(key(datadir.AuditChainKey)); err != nil {
			t.Fatal(err)
		}
		t.Setenv(app.ChainKeyEnv, "  \t")
		if _, err := open(); err == nil || !strings.Contains(err.Error(), datadir.AuditChainKey) {
			t.Fatalf("Open without %s and a blank %s = %v, want a refusal naming the file", datadir.AuditChainKey, app.ChainKeyEnv, err)
		}
		if _, err := os.Stat(key(datadir.AuditChainKey)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused start made a new chain key (%v)", err)
		}
	})
	t.Run("the right keys still open", func(t *testing.T) {
		if _, err := open(); err != nil {
			t.Fatalf("Open with the original keys: %v", err)
		}
	})
}
