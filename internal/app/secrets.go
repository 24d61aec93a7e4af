package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/datadir"
	"github.com/portcullis/portcullis/internal/secrets"
)

// SecretsAdmin manages the secrets store offline (`portcullis secret`):
// it works on --data-dir, also while a gateway serves from it, and audits
// every change (admin.secret.set / admin.secret.delete, never the value).
type SecretsAdmin struct {
	*secrets.Store
	db Storage
	w  *audit.Writer
	by string
}

// OpenSecretsAdmin opens the data dir's store; by names the operator in
// the audit records. Close it.
func OpenSecretsAdmin(ctx context.Context, cfg *config.Config, by string, log *slog.Logger) (*SecretsAdmin, error) {
	if err := datadir.Ensure(cfg.DataDir); err != nil {
		return nil, err
	}
	db, err := OpenStorage(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	head, err := checkKeyFiles(ctx, cfg, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	key, _, err := datadir.LoadOrCreateSecret(cfg.DataDir, datadir.SecretsKey, secrets.KeySize)
	if err != nil {
		db.Close()
		return nil, err
	}
	chain, err := AuditChain(cfg, os.Getenv, true)
	if err == nil {
		err = keysMatchStore(ctx, db, chain, head)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	st, err := secrets.New(key, db, nil)
	if err != nil {
		db.Close()
		return nil, err
	}
	w, err := audit.NewWriter(audit.Config{CommitTimeout: cfg.Audit.CommitTimeout, QueueSize: 4, MaxBatch: 4, Chain: chain},
		db, nil, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &SecretsAdmin{Store: st, db: db, w: w, by: by}, nil
}

// Set stores a secret, audited first (fail closed: no record, no change).
func (a *SecretsAdmin) Set(ctx context.Context, name, user string, value []byte) error {
	if err := a.w.Emit(ctx, &audit.Event{Type: audit.AdminSecretSet, Principal: a.by, Status: audit.StatusOK,
		Detail: fmt.Sprintf("secret %q user %q", name, user)}); err != nil {
		return err
	}
	return a.Store.Set(ctx, name, user, value)
}

// Delete removes a secret, audited first.
func (a *SecretsAdmin) Delete(ctx context.Context, name, user string) error {
	if err := a.w.Emit(ctx, &audit.Event{Type: audit.AdminSecretDelete, Principal: a.by, Status: audit.StatusOK,
		Detail: fmt.Sprintf("secret %q user %q", name, user)}); err != nil {
		return err
	}
	return a.Store.Delete(ctx, name, user)
}

// Close flushes the audit writer and closes the store.
func (a *SecretsAdmin) Close() error {
	err := a.w.Close(context.Background())
	if cerr := a.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// SecretNames lists the stored secrets by name and user, never a value
// (GET /admin/v1/secrets). It reads the store's secrets backend directly:
// listing needs no key.
func (a *App) SecretNames(ctx context.Context) ([]secrets.Info, error) {
	b, ok := a.Store.(interface {
		ListSecrets(ctx context.Context) ([]secrets.Info, error)
	})
	if !ok {
		return nil, fmt.Errorf("secrets: store %T keeps no secrets", a.Store)
	}
	return b.ListSecrets(ctx)
}
