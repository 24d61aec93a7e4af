package app

import (
	"context"
	"encoding/base64"
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

// openPostgres opens the configured PostgreSQL store; readOnly is for
// offline readers: no migrations, read-only transactions.
func openPostgres(ctx context.Context, cfg *config.Config, log *slog.Logger, readOnly bool) (*postgres.DB, error) {
	dsn, err := cfg.Storage.PostgresDSN()
	if err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, dsn, postgres.Options{Logger: log, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("storage.driver postgres: %w", err)
	}
	return db, nil
}

// OpenStorage opens the backend storage.driver selects: SQLite in the data
// dir (created if missing) or PostgreSQL at the configured DSN (migrated,
// with a bounded connect timeout; an unreachable server fails the start).
// Errors never contain the DSN.
func OpenStorage(ctx context.Context, cfg *config.Config, log *slog.Logger) (Storage, error) {
	switch cfg.Storage.Driver {
	case config.DriverPostgres:
		return openPostgres(ctx, cfg, log, false)
	case config.DriverSQLite:
		return sqlite.Open(ctx, filepath.Join(cfg.DataDir, datadir.DatabaseFile), sqlite.Options{Logger: log})
	}
	return nil, fmt.Errorf("%w: storage.driver %q", config.ErrInvalid, cfg.Storage.Driver)
}

// ReplicaID names this gateway among replicas sharing a store:
// storage.replica_id, else the host name, else "local".
func (a *App) ReplicaID() string { return ReplicaID(a.Config) }

// ReplicaID names the gateway configured by cfg among replicas sharing a
// store: storage.replica_id, else the host name (when it can name an audit
// chain: at most 64 letters, digits, '.', '_' or '-'), else "local".
func ReplicaID(cfg *config.Config) string {
	if id := cfg.Storage.ReplicaID; id != "" {
		return id
	}
	if h, err := os.Hostname(); err == nil && h != "" && audit.ValidChainID(h) {
		return h
	}
	return "local"
}

// checkKeyFiles runs before any key file is created: a data dir whose
// store already holds data (audit records, API keys or secrets) must
// bring that store's key files, or the gateway would make new ones and
// then seal records the chain cannot verify, compute API-key and approval
// digests nothing matches, and write secrets the other replicas cannot
// decrypt (a replica started without the shared key files, or a data dir
// whose keys were lost). Missing files are an error naming them; nothing
// is created. Key files configured elsewhere (audit.chain_key_file,
// PORTCULLIS_AUDIT_CHAIN_KEY, audit.signing_key_file) are the
// configuration's to provide. It returns the newest audit record (none
// for an empty log), for keysMatchStore.
func checkKeyFiles(ctx context.Context, cfg *config.Config, db Storage) ([]audit.Event, error) {
	evs, err := db.QueryAudit(ctx, audit.Query{Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	keys, err := db.ListAPIKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API keys: %w", err)
	}
	secs, err := db.ListSecrets(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the secrets: %w", err)
	}
	if len(evs) == 0 && len(keys) == 0 && len(secs) == 0 {
		return evs, nil // a new store: the keys made now are its keys
	}
	var missing []string
	for _, name := range datadir.KeyFiles {
		switch {
		case name == datadir.AuditChainKey && (cfg.Audit.ChainKeyFile != "" || chainKeyFromEnv(os.Getenv) != ""),
			name == datadir.AuditSigningKey && cfg.Audit.SigningKeyFile != "",
			name == datadir.SecretsKey && len(secs) == 0: // made on first use
			continue
		}
		if _, err := os.Lstat(filepath.Join(cfg.DataDir, name)); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s missing from %s although the store holds data: %s", strings.Join(missing, ", "), cfg.DataDir, keyFilesFix())
	}
	return evs, nil
}

// keysMatchStore checks the audit keys against what the store holds: the
// newest sealed record must verify under the chain key, and the newest
// checkpoint must be signed by the signing key. (The server secret and
// audit key leave nothing checkable in the store; checkKeyFiles makes sure
// they are not made anew for a store in use.) head is the newest record,
// as checkKeyFiles read it.
func keysMatchStore(ctx context.Context, db Storage, chain *audit.Chain, head []audit.Event) error {
	if evs := head; len(evs) == 1 && evs[0].Hash != "" && !chain.Check(&evs[0]) {
		return fmt.Errorf("the audit chain key does not match this store's records (seq %d does not verify): %s", evs[0].Seq, keyFilesFix())
	}
	cps, err := db.QueryAudit(ctx, audit.Query{Type: audit.AuditCheckpoint, Limit: 1})
	if err != nil {
		return fmt.Errorf("reading the last checkpoint: %w", err)
	}
	if len(cps) == 1 {
		cp, err := audit.ParseCheckpoint([]byte(cps[0].Detail))
		if err == nil && cp.PublicKey != base64.StdEncoding.EncodeToString(chain.PublicKey()) {
			return fmt.Errorf("the audit signing key is not the one that signed this store's checkpoints (seq %d): %s", cps[0].Seq, keyFilesFix())
		}
	}
	return nil
}

func keyFilesFix() string {
	return "copy " + strings.Join(datadir.KeyFiles, ", ") + " (mode 0600) " +
		"from the data dir of the gateway that created this store, then start again (docs/operations.md)"
}
