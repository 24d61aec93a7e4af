package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/datadir"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/secrets"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/postgres"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

// Storage is everything the gateway keeps in its store backend: the
// repository (users, keys, grants, audit, abuse, approvals), the
// encrypted secrets and the tool pins. Both backends implement it and pass
// the same conformance suite (internal/store/storetest).
type Storage interface {
	store.Store
	secrets.Backend
	pin.Backend
}

var (
	_ Storage = (*sqlite.DB)(nil)
	_ Storage = (*postgres.DB)(nil)
)

// OpenStorage opens the backend storage.driver selects: SQLite in the data
// dir (created if missing) or PostgreSQL at the configured DSN (migrated,
// with a bounded connect timeout; an unreachable server fails the start).
// Errors never contain the DSN.
func OpenStorage(ctx context.Context, cfg *config.Config, log *slog.Logger) (Storage, error) {
	switch cfg.Storage.Driver {
	case config.DriverPostgres:
		dsn, err := cfg.Storage.PostgresDSN()
		if err != nil {
			return nil, err
		}
		db, err := postgres.Open(ctx, dsn, postgres.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("storage.driver postgres: %w", err)
		}
		return db, nil
	case config.DriverSQLite, "":
		return sqlite.Open(ctx, filepath.Join(cfg.DataDir, datadir.DatabaseFile), sqlite.Options{Logger: log})
	}
	return nil, fmt.Errorf("%w: storage.driver %q", config.ErrInvalid, cfg.Storage.Driver)
}

// ReplicaID names this gateway among replicas sharing a store:
// storage.replica_id, else the host name, else "local".
func (a *App) ReplicaID() string {
	if id := a.Config.Storage.ReplicaID; id != "" {
		return id
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "local"
}

// keysMatchStore refuses to start with keys that do not belong to the
// store's data: a gateway (typically a new replica on a shared PostgreSQL,
// or a data dir whose key files were lost) that created its keys just now
// would otherwise seal records the chain cannot verify, and compute API-key
// and approval digests nothing matches. The newest sealed audit record
// must verify under the chain key; a server secret or audit key created
// now is refused (and removed again) when the store already holds records
// or keys.
func keysMatchStore(ctx context.Context, cfg *config.Config, db Storage, chain *audit.Chain, newServerSecret, newAuditKey bool) error {
	fix := "copy " + strings.Join(datadir.KeyFiles, ", ") + " (mode 0600) " +
		"from the data dir of the gateway that created this store, then start again (docs/operations.md)"
	evs, err := db.QueryAudit(ctx, audit.Query{Limit: 1})
	if err != nil {
		return fmt.Errorf("reading the audit head: %w", err)
	}
	if len(evs) == 1 && evs[0].Hash != "" && !chain.Check(&evs[0]) {
		return fmt.Errorf("the audit chain key does not match this store's records (seq %d does not verify): %s", evs[0].Seq, fix)
	}
	if !newServerSecret && !newAuditKey {
		return nil
	}
	keys, err := db.ListAPIKeys(ctx)
	if err != nil {
		return fmt.Errorf("reading the API keys: %w", err)
	}
	if len(evs) == 0 && len(keys) == 0 {
		return nil // a new store: the new keys are its keys
	}
	var created []string
	if newServerSecret {
		created = append(created, datadir.ServerSecret)
	}
	if newAuditKey {
		created = append(created, datadir.AuditKey)
	}
	var rmErr error
	for _, name := range created { // a restart must not take them for the real ones
		rmErr = errors.Join(rmErr, os.Remove(filepath.Join(cfg.DataDir, name)))
	}
	if rmErr != nil {
		return fmt.Errorf("%s were missing from %s although the store holds data (and removing the ones just made failed: %v): %s",
			created, cfg.DataDir, rmErr, fix)
	}
	return fmt.Errorf("%v were missing from %s although the store holds data: %s", created, cfg.DataDir, fix)
}
