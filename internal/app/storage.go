package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

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
