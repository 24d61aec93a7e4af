package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/portcullis/portcullis/internal/secrets"
)

var _ secrets.Backend = (*DB)(nil)

// PutSecret implements secrets.Backend (insert or replace, keeping the
// creation time).
func (db *DB) PutSecret(ctx context.Context, r secrets.Record) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO secrets (name, user, nonce, ciphertext, created_ns, updated_ns)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, user) DO UPDATE SET nonce = excluded.nonce,
		ciphertext = excluded.ciphertext, updated_ns = excluded.updated_ns`,
		r.Name, r.User, r.Nonce, r.Ciphertext, ns(r.CreatedAt), ns(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: secret: %w", err)
	}
	return nil
}

// GetSecret implements secrets.Backend.
func (db *DB) GetSecret(ctx context.Context, name, user string) (secrets.Record, error) {
	r := secrets.Record{Name: name, User: user}
	var created, updated int64
	err := db.r.QueryRowContext(ctx, `SELECT nonce, ciphertext, created_ns, updated_ns FROM secrets
		WHERE name = ? AND user = ?`, name, user).Scan(&r.Nonce, &r.Ciphertext, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%w: %q", secrets.ErrNotFound, name)
	}
	if err != nil {
		return r, fmt.Errorf("sqlite: secret: %w", err)
	}
	r.CreatedAt, r.UpdatedAt = fromNS(created), fromNS(updated)
	return r, nil
}

// ListSecrets implements secrets.Backend: names only.
func (db *DB) ListSecrets(ctx context.Context) ([]secrets.Info, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT name, user, updated_ns FROM secrets ORDER BY name, user`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: secrets: %w", err)
	}
	defer rows.Close()
	var out []secrets.Info
	for rows.Next() {
		var i secrets.Info
		var t int64
		if err := rows.Scan(&i.Name, &i.User, &t); err != nil {
			return nil, fmt.Errorf("sqlite: secrets: %w", err)
		}
		i.UpdatedAt = fromNS(t)
		out = append(out, i)
	}
	return out, rows.Err()
}

// DeleteSecret implements secrets.Backend.
func (db *DB) DeleteSecret(ctx context.Context, name, user string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM secrets WHERE name = ? AND user = ?`, name, user)
	if err != nil {
		return fmt.Errorf("sqlite: secret: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %q", secrets.ErrNotFound, name)
	}
	return nil
}
