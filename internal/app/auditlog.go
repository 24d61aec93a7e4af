package app

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/datadir"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

// ChainKeyEnv carries the audit chain key itself (hex) for deployments that
// inject secrets as environment variables.
const ChainKeyEnv = "PORTCULLIS_AUDIT_CHAIN_KEY"

// AuditChain resolves the audit chain key and the checkpoint signing key
// as configured: the chain key from $PORTCULLIS_AUDIT_CHAIN_KEY (hex),
// else audit.chain_key_file, else <data_dir>/audit-chain.key; the signing
// key (an Ed25519 seed) from audit.signing_key_file, else
// <data_dir>/audit-signing.key. With create, missing data-dir key files
// are created (mode 0600); offline tools pass false and get an error
// naming the missing file. getenv is os.Getenv in production.
//
// On PostgreSQL, where several replicas append to one log, the chain
// seals into the replica's own chain (chain id = ReplicaID); a SQLite
// store has one writer and keeps the default chain "".
func AuditChain(cfg *config.Config, getenv func(string) string, create bool) (*audit.Chain, error) {
	key, err := chainKey(cfg, getenv, create)
	if err != nil {
		return nil, err
	}
	seed, err := secretFile(cfg.Audit.SigningKeyFile, cfg.DataDir, datadir.AuditSigningKey, ed25519.SeedSize, create)
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("audit signing key: want a %d-byte Ed25519 seed, found %d bytes", ed25519.SeedSize, len(seed))
	}
	chain, err := audit.NewChain(key, ed25519.NewKeyFromSeed(seed))
	if err != nil || cfg.Storage.Driver != config.DriverPostgres {
		return chain, err
	}
	return chain.WithID(ReplicaID(cfg))
}

func chainKey(cfg *config.Config, getenv func(string) string, create bool) ([]byte, error) {
	if v := chainKeyFromEnv(getenv); v != "" {
		key, err := hex.DecodeString(v)
		if err != nil || len(key) < 32 {
			// Never echo the value: it is the key.
			return nil, fmt.Errorf("%s: want at least 64 hex digits (32 bytes)", ChainKeyEnv)
		}
		return key, nil
	}
	key, err := secretFile(cfg.Audit.ChainKeyFile, cfg.DataDir, datadir.AuditChainKey, 32, create)
	if err != nil {
		return nil, fmt.Errorf("audit chain key: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("audit chain key: want at least 32 bytes, found %d", len(key))
	}
	return key, nil
}

// chainKeyFromEnv returns $PORTCULLIS_AUDIT_CHAIN_KEY as the chain key
// source sees it (blank counts as unset), so that the start-up key check
// and the key itself agree on where the key comes from.
func chainKeyFromEnv(getenv func(string) string) string {
	return strings.TrimSpace(getenv(ChainKeyEnv))
}

// secretFile reads an explicitly configured key file (never created) or
// the data-dir default (created when create is set).
func secretFile(configured, dir, name string, n int, create bool) ([]byte, error) {
	if configured != "" {
		return datadir.ReadPrivate(configured)
	}
	if create {
		b, _, err := datadir.LoadOrCreateSecret(dir, name, n)
		return b, err
	}
	b, err := datadir.ReadPrivate(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s not found: is --data-dir the gateway's data directory?", filepath.Join(dir, name))
	}
	return b, err
}

// Checkpoint writes a signed checkpoint record now and stores it as
// <data_dir>/audit-checkpoint.json (replaced atomically), which `audit
// verify` uses as an anchor. Exporting it elsewhere is what makes
// truncation detectable by someone who can also rewrite the data dir.
func (a *App) Checkpoint(ctx context.Context) (audit.Checkpoint, error) {
	cp, err := a.Audit.Checkpoint(ctx)
	if err != nil {
		return cp, err
	}
	if err := WriteCheckpointFile(filepath.Join(a.Config.DataDir, datadir.AuditCheckpointFile), cp); err != nil {
		a.Log.Error("audit checkpoint file", "err", err)
	}
	return cp, nil
}

// WriteCheckpointFile stores cp as JSON at path, replacing it atomically
// (temp file, fsync, rename).
func WriteCheckpointFile(path string, cp audit.Checkpoint) error {
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	os.Remove(tmp)
	if err := datadir.WritePrivate(tmp, append(b, '\n')); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ReadCheckpointFile reads a checkpoint exported with `audit checkpoint`
// (or the data dir's copy). The signature is checked by Verify.
func ReadCheckpointFile(path string) (audit.Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return audit.Checkpoint{}, err
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, _ := f.Read(b)
	cp, err := audit.ParseCheckpoint(b[:n])
	if err != nil {
		return cp, fmt.Errorf("%s: %w", path, err)
	}
	return cp, nil
}

// auditMaintenance writes a checkpoint every interval when records were
// added since the last one, and applies retention once a day.
func (a *App) auditMaintenance(ctx context.Context) {
	interval := a.Config.Audit.CheckpointInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastPrune time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.checkpointIfNew(ctx)
		if m := a.Config.Audit.RetentionMonths; m > 0 && time.Since(lastPrune) >= 24*time.Hour {
			lastPrune = time.Now()
			a.applyRetention(ctx, m)
		}
	}
}

// checkpointIfNew writes a checkpoint unless the newest record of this
// gateway's chain already is one.
func (a *App) checkpointIfNew(ctx context.Context) {
	head, err := a.Store.QueryAudit(ctx, audit.Query{Chain: a.Audit.ChainID(), Limit: 1})
	if err != nil || len(head) == 0 || head[0].Type == audit.AuditCheckpoint {
		return
	}
	if _, err := a.Checkpoint(ctx); err != nil {
		a.Log.Error("audit checkpoint failed", "err", err)
	}
}

func (a *App) applyRetention(ctx context.Context, months int) {
	// Records a forwarding sink has not shipped yet are kept.
	var keepAfter int64
	for i, sk := range a.Config.Audit.Sinks {
		c, err := a.Store.AuditCursor(ctx, sk.Name)
		if err != nil {
			a.Log.Error("audit retention: sink cursor", "sink", sk.Name, "err", err)
			return
		}
		if i == 0 || c < keepAfter {
			keepAfter = c
		}
	}
	if len(a.Config.Audit.Sinks) > 0 && keepAfter == 0 {
		return // a sink has shipped nothing yet
	}
	res, err := audit.Prune(ctx, a.Store, a.Audit, audit.RetentionCutoff(time.Now(), months), keepAfter)
	if err != nil {
		a.Log.Error("audit retention failed", "err", err)
		return
	}
	if res.Deleted > 0 {
		a.Log.Info("audit retention pruned records", "through_seq", res.ThroughSeq, "deleted", res.Deleted,
			"cutoff", res.Cutoff)
	}
}

// VerifyOptions configures VerifyAudit.
type VerifyOptions struct {
	// Checkpoints are exported checkpoint files to check against; the data
	// dir's audit-checkpoint.json is added when it exists.
	Checkpoints []string
	// PublicKey overrides the checkpoint key derived from the signing key.
	PublicKey ed25519.PublicKey
	// Database is the SQLite file to verify; default the data dir's.
	Database string
	// AcceptUnsealedPrefix accepts records from before the chain existed.
	AcceptUnsealedPrefix bool
	// SnapshotOnly verifies a copy (backup) on its own: the data dir's
	// audit-checkpoint.json may be newer than the copy and is not used.
	SnapshotOnly bool
	Progress     func(records, seq int64)
}

// VerifyAudit verifies the audit chain of the database in cfg.DataDir (or
// opts.Database), offline and read-only (safe while a gateway is serving
// from it), and also runs SQLite's integrity check. With storage.driver
// postgres (and no opts.Database) it verifies the shared PostgreSQL
// database instead.
func VerifyAudit(ctx context.Context, cfg *config.Config, opts VerifyOptions, log *slog.Logger) (audit.VerifyReport, error) {
	chain, err := AuditChain(cfg, os.Getenv, false)
	if err != nil {
		return audit.VerifyReport{}, err
	}
	pub := opts.PublicKey
	if pub == nil {
		pub = chain.PublicKey()
	}
	var anchors []audit.Checkpoint
	paths := opts.Checkpoints
	if own := filepath.Join(cfg.DataDir, datadir.AuditCheckpointFile); !opts.SnapshotOnly && fileExists(own) {
		paths = append(paths, own)
	}
	for _, p := range paths {
		cp, err := ReadCheckpointFile(p)
		if err != nil {
			return audit.VerifyReport{}, err
		}
		anchors = append(anchors, cp)
	}
	vopts := audit.VerifyOptions{Chain: chain, PublicKey: pub, Anchors: anchors,
		Progress: opts.Progress, AcceptUnsealedPrefix: opts.AcceptUnsealedPrefix}
	if cfg.Storage.Driver == config.DriverPostgres && opts.Database == "" {
		// Every replica's records, in the shared database; PostgreSQL
		// checks its own pages (data checksums), there is no file to check.
		db, err := openPostgres(ctx, cfg, log, true)
		if err != nil {
			return audit.VerifyReport{}, err
		}
		defer db.Close()
		return audit.Verify(ctx, db, vopts)
	}
	path := opts.Database
	if path == "" {
		path = filepath.Join(cfg.DataDir, datadir.DatabaseFile)
	}
	db, err := sqlite.OpenReadOnly(ctx, path, sqlite.Options{Logger: log})
	if err != nil {
		return audit.VerifyReport{}, err
	}
	defer db.Close()
	if err := db.IntegrityCheck(ctx); err != nil {
		return audit.VerifyReport{}, err
	}
	return audit.Verify(ctx, db, vopts)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
