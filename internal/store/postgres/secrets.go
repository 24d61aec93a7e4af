package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/secrets"
)

var _ secrets.Backend = (*DB)(nil)

// PutSecret implements secrets.Backend (insert or replace, keeping the
// creation time).
func (db *DB) PutSecret(ctx context.Context, r secrets.Record) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO secrets (name, user_name, nonce, ciphertext, created_ns, updated_ns)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, user_name) DO UPDATE SET nonce = excluded.nonce,
		ciphertext = excluded.ciphertext, updated_ns = excluded.updated_ns`,
		r.Name, r.User, r.Nonce, r.Ciphertext, ns(r.CreatedAt), ns(r.UpdatedAt))
	if err != nil {
		return wrap("secret", err)
	}
	return nil
}

// GetSecret implements secrets.Backend; unknown: secrets.ErrNotFound.
func (db *DB) GetSecret(ctx context.Context, name, user string) (secrets.Record, error) {
	r := secrets.Record{Name: name, User: user}
	var created, updated int64
	err := db.pool.QueryRow(ctx, `SELECT nonce, ciphertext, created_ns, updated_ns FROM secrets
		WHERE name = $1 AND user_name = $2`, name, user).Scan(&r.Nonce, &r.Ciphertext, &created, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("%w: %q", secrets.ErrNotFound, name)
	}
	if err != nil {
		return r, wrap("secret", err)
	}
	r.CreatedAt, r.UpdatedAt = fromNS(created), fromNS(updated)
	return r, nil
}

// ListSecrets implements secrets.Backend: names only, by name then user.
func (db *DB) ListSecrets(ctx context.Context) ([]secrets.Info, error) {
	rows, err := db.pool.Query(ctx, `SELECT name, user_name, updated_ns FROM secrets ORDER BY name, user_name`)
	if err != nil {
		return nil, wrap("secrets", err)
	}
	defer rows.Close()
	var out []secrets.Info
	for rows.Next() {
		var i secrets.Info
		var t int64
		if err := rows.Scan(&i.Name, &i.User, &t); err != nil {
			return nil, wrap("secrets", err)
		}
		i.UpdatedAt = fromNS(t)
		out = append(out, i)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("secrets", err)
	}
	return out, nil
}

// DeleteSecret implements secrets.Backend; unknown: secrets.ErrNotFound.
func (db *DB) DeleteSecret(ctx context.Context, name, user string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM secrets WHERE name = $1 AND user_name = $2`, name, user)
	if err != nil {
		return wrap("secret", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", secrets.ErrNotFound, name)
	}
	return nil
}
