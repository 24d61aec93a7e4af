package app_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
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
)

func noGetenv(string) string { return "" }

func emitN(t *testing.T, a *app.App, n int) {
	t.Helper()
	for range n {
		if err := a.Audit.Emit(context.Background(), &audit.Event{Type: audit.ToolCallStart, Principal: "dev",
			Tool: "read_file", Status: audit.StatusStarted}); err != nil {
			t.Fatal(err)
		}
	}
}

func verify(t *testing.T, a *app.App, opts app.VerifyOptions) audit.VerifyReport {
	t.Helper()
	rep, err := app.VerifyAudit(context.Background(), a.Config, opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestAuditKeysCreatedPrivate: first start creates the chain and signing
// keys 0600 in the data dir; offline resolution finds the same keys.
func TestAuditKeysCreatedPrivate(t *testing.T) {
	a, _, _ := openApp(t, nil)
	for _, name := range []string{datadir.AuditChainKey, datadir.AuditSigningKey, datadir.AuditKey} {
		fi, err := os.Stat(filepath.Join(a.Config.DataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o", name, fi.Mode().Perm())
		}
	}
	chain, err := app.AuditChain(a.Config, noGetenv, false)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := a.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Verify(chain.PublicKey()); err != nil {
		t.Errorf("offline key does not verify the server's checkpoint: %v", err)
	}
	// The chain key and the redaction key differ: `audit hash` (which
	// computes HMACs under the redaction key) must not be a chain oracle.
	ck, _ := os.ReadFile(filepath.Join(a.Config.DataDir, datadir.AuditChainKey))
	rk, _ := os.ReadFile(filepath.Join(a.Config.DataDir, datadir.AuditKey))
	if string(ck) == string(rk) {
		t.Error("chain key equals redaction key")
	}
}

// TestAuditChainKeySources: the environment and a configured file win
// over the data dir; bad values are errors that never echo the key.
func TestAuditChainKeySources(t *testing.T) {
	a, _, _ := openApp(t, nil)
	emitN(t, a, 3)
	if rep := verify(t, a, app.VerifyOptions{}); !rep.OK() || rep.Records < 3 {
		t.Fatalf("fresh log: %+v", rep)
	}
	other := strings.Repeat("ab", 32)
	t.Setenv(app.ChainKeyEnv, other)
	if rep := verify(t, a, app.VerifyOptions{}); rep.OK() || rep.BadSeq != 1 {
		t.Errorf("verify with another chain key from the environment: %+v", rep)
	}
	for _, bad := range []string{"zz" + other, "abcd", other[:62]} {
		t.Setenv(app.ChainKeyEnv, bad)
		_, err := app.AuditChain(a.Config, os.Getenv, false)
		if err == nil || strings.Contains(err.Error(), bad) {
			t.Errorf("%q: err %v (must fail and not echo the value)", bad, err)
		}
	}
	t.Setenv(app.ChainKeyEnv, "")

	cfg := *a.Config
	dir := t.TempDir()
	cfg.Audit.ChainKeyFile = filepath.Join(dir, "chain.key")
	if _, err := app.AuditChain(&cfg, noGetenv, true); err == nil {
		t.Error("a missing configured key file was accepted (it must never be created silently)")
	}
	key, _ := hex.DecodeString(other)
	if err := os.WriteFile(cfg.Audit.ChainKeyFile, key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := app.AuditChain(&cfg, noGetenv, false); !errors.Is(err, datadir.ErrInsecure) {
		t.Errorf("world-readable key file: %v", err)
	}
	os.Chmod(cfg.Audit.ChainKeyFile, 0o600)
	if _, err := app.AuditChain(&cfg, noGetenv, false); err != nil {
		t.Errorf("configured key file: %v", err)
	}
	os.WriteFile(cfg.Audit.ChainKeyFile, key[:16], 0o600)
	if _, err := app.AuditChain(&cfg, noGetenv, false); err == nil {
		t.Error("a 16-byte chain key was accepted")
	}

	offline := config.Default()
	offline.DataDir = t.TempDir()
	if _, err := app.AuditChain(offline, noGetenv, false); err == nil || !strings.Contains(err.Error(), datadir.AuditSigningKey) && !strings.Contains(err.Error(), datadir.AuditChainKey) {
		t.Errorf("offline without keys: %v", err)
	}
}

// TestCheckpointFileAnchorsTruncation: a checkpoint is stored in the data
// dir; deleting records behind it is then detected, naming the first
// missing sequence number.
func TestCheckpointFileAnchorsTruncation(t *testing.T) {
	a, _, _ := openApp(t, nil)
	emitN(t, a, 5)
	cp, err := a.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(a.Config.DataDir, datadir.AuditCheckpointFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("checkpoint file: %v %v", fi, err)
	}
	got, err := app.ReadCheckpointFile(path)
	if err != nil || got.Seq != cp.Seq || got.Hash != cp.Hash {
		t.Fatalf("checkpoint file holds %+v, want %+v (%v)", got, cp, err)
	}
	if rep := verify(t, a, app.VerifyOptions{}); !rep.OK() || rep.Anchors != 1 {
		t.Fatalf("before truncation: %+v", rep)
	}
	raw, err := sql.Open("sqlite", filepath.Join(a.Config.DataDir, datadir.DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`DELETE FROM audit_events WHERE seq >= ?`, cp.Seq-1); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, a, app.VerifyOptions{})
	if rep.OK() || rep.BadSeq != cp.Seq-1 || !strings.Contains(rep.Problem, "truncated") {
		t.Errorf("after truncation: %+v", rep)
	}
	// The copy-only mode ignores the data dir's anchor (a backup is older).
	if rep := verify(t, a, app.VerifyOptions{SnapshotOnly: true}); !rep.OK() {
		t.Errorf("snapshot mode: %+v", rep)
	}
	// An exported checkpoint file that is not a checkpoint is an error.
	junk := filepath.Join(t.TempDir(), "cp.json")
	os.WriteFile(junk, []byte(`{"seq":1}`), 0o600)
	if _, err := app.VerifyAudit(context.Background(), a.Config, app.VerifyOptions{Checkpoints: []string{junk}},
		slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a malformed exported checkpoint was accepted")
	}
}

// TestAuditMaintenance: checkpoints are written on the interval only when
// records were added, and Close leaves a final one.
func TestAuditMaintenance(t *testing.T) {
	a, _, _ := openApp(t, func(c *config.Config) { c.Audit.CheckpointInterval = 30 * time.Millisecond })
	a.StartBackground()
	emitN(t, a, 2)
	waitFor(t, "a periodic checkpoint", func() bool { return len(auditTypes(t, a, audit.AuditCheckpoint)) == 1 })
	// Idle: the newest record is the checkpoint, so no further ones.
	time.Sleep(10 * 30 * time.Millisecond)
	if n := len(auditTypes(t, a, audit.AuditCheckpoint)); n != 1 {
		t.Errorf("%d checkpoints while idle, want 1", n)
	}
	emitN(t, a, 1)
	waitFor(t, "a checkpoint after new records", func() bool { return len(auditTypes(t, a, audit.AuditCheckpoint)) == 2 })
}

// TestDataDirLocked: a second gateway on the same data dir is refused.
func TestDataDirLocked(t *testing.T) {
	a, _, _ := openApp(t, nil)
	cfg := *a.Config
	_, err := app.Open(context.Background(), &cfg, slog.New(slog.DiscardHandler))
	if !errors.Is(err, datadir.ErrLocked) {
		t.Errorf("second Open on one data dir: %v", err)
	}
}

// TestAuditChainIDPerReplica: on PostgreSQL each replica seals into the
// chain named by its replica id; SQLite keeps the default chain. A host
// name that cannot name a chain is never used as one.
func TestAuditChainIDPerReplica(t *testing.T) {
	a, _, _ := openApp(t, nil)
	chain, err := app.AuditChain(a.Config, noGetenv, false)
	if err != nil || chain.ID() != "" {
		t.Fatalf("SQLite: chain %q, %v; want the default chain", chain.ID(), err)
	}
	cfg := *a.Config
	cfg.Storage.Driver = config.DriverPostgres
	cfg.Storage.ReplicaID = "gw-2.eu_west"
	if chain, err := app.AuditChain(&cfg, noGetenv, false); err != nil || chain.ID() != "gw-2.eu_west" {
		t.Errorf("PostgreSQL with replica_id: chain %q, %v; want gw-2.eu_west", chain.ID(), err)
	}
	cfg.Storage.ReplicaID = ""
	chain, err = app.AuditChain(&cfg, noGetenv, false)
	if err != nil || chain.ID() == "" || chain.ID() != app.ReplicaID(&cfg) || !audit.ValidChainID(chain.ID()) {
		t.Errorf("PostgreSQL without replica_id: chain %q, %v; want the replica id %q", chain.ID(), err, app.ReplicaID(&cfg))
	}
}
