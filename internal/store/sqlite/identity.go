package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

// EnsureUser implements store.Store.
func (db *DB) EnsureUser(ctx context.Context, name string, roles []string) (store.User, bool, error) {
	if name == "" {
		return store.User{}, false, fmt.Errorf("%w: empty user name", store.ErrInvalid)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return store.User{}, false, err
	}
	defer tx.Rollback()
	var id int64
	err = tx.QueryRowContext(ctx, `SELECT id FROM users WHERE name = ?`, name).Scan(&id)
	created := false
	switch {
	case errors.Is(err, sql.ErrNoRows):
		res, err := tx.ExecContext(ctx, `INSERT INTO users (name, created_ns) VALUES (?, ?)`, name, ns(db.now()))
		if err != nil {
			return store.User{}, false, fmt.Errorf("sqlite: create user: %w", err)
		}
		if id, err = res.LastInsertId(); err != nil {
			return store.User{}, false, err
		}
		for _, r := range roles {
			if err := grantRoleTx(ctx, tx, id, r); err != nil {
				return store.User{}, false, err
			}
		}
		created = true
	case err != nil:
		return store.User{}, false, fmt.Errorf("sqlite: lookup user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.User{}, false, err
	}
	u, err := db.userByID(ctx, db.w, id)
	return u, created, err
}

func grantRoleTx(ctx context.Context, tx *sql.Tx, userID int64, role string) error {
	res, err := tx.ExecContext(ctx,
		`INSERT OR IGNORE INTO user_roles (user_id, role_id) SELECT ?, id FROM roles WHERE name = ?`, userID, role)
	if err != nil {
		return fmt.Errorf("sqlite: grant role: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM roles WHERE name = ?)`, role).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("%w: unknown role %q", store.ErrInvalid, role)
		}
	}
	return nil
}

// GrantUserRole implements store.Store.
func (db *DB) GrantUserRole(ctx context.Context, userID int64, role string) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Without this check an unknown user surfaces as a raw FOREIGN KEY
	// error instead of the documented store.ErrNotFound.
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM users WHERE id = ?)`, userID).Scan(&exists); err != nil {
		return fmt.Errorf("sqlite: grant role: %w", err)
	}
	if !exists {
		return fmt.Errorf("%w: user %d", store.ErrNotFound, userID)
	}
	if err := grantRoleTx(ctx, tx, userID, role); err != nil {
		return err
	}
	return tx.Commit()
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (db *DB) userByID(ctx context.Context, q querier, id int64) (store.User, error) {
	return scanUser(ctx, q, `SELECT id, name, disabled, created_ns FROM users WHERE id = ?`, id)
}

// UserByName implements store.Store.
func (db *DB) UserByName(ctx context.Context, name string) (store.User, error) {
	return scanUser(ctx, db.r, `SELECT id, name, disabled, created_ns FROM users WHERE name = ?`, name)
}

func scanUser(ctx context.Context, q querier, query string, arg any) (store.User, error) {
	var u store.User
	var created int64
	err := q.QueryRowContext(ctx, query, arg).Scan(&u.ID, &u.Name, &u.Disabled, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, fmt.Errorf("%w: user", store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("sqlite: user: %w", err)
	}
	u.CreatedAt = fromNS(created)
	rows, err := q.QueryContext(ctx,
		`SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = ? ORDER BY r.name`, u.ID)
	if err != nil {
		return store.User{}, fmt.Errorf("sqlite: user roles: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return store.User{}, err
		}
		u.Roles = append(u.Roles, r)
	}
	return u, rows.Err()
}

// CreateAPIKey implements store.Store.
func (db *DB) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	roles, scopesJSON, err := store.EncodeKeyLists(k)
	if err != nil {
		return err
	}
	_, err = db.w.ExecContext(ctx,
		`INSERT INTO api_keys (id, user_id, hash, prefix, roles, created_ns, expires_ns, scopes, rotated_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.UserID, k.Hash, k.Prefix, roles, ns(k.CreatedAt), nullNS(k.ExpiresAt), scopesJSON, k.RotatedFrom)
	if isUnique(err) {
		return fmt.Errorf("%w: api key", store.ErrConflict)
	}
	if err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed") {
		return fmt.Errorf("%w: user %d", store.ErrNotFound, k.UserID)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create api key: %w", err)
	}
	return nil
}

const keyColumns = `k.id, k.user_id, u.name, k.hash, k.prefix, k.roles, k.created_ns, k.expires_ns, k.revoked_ns, k.last_used_ns, k.scopes, k.rotated_from`

type rowScanner interface{ Scan(dest ...any) error }

func scanKey(row rowScanner) (store.APIKey, error) {
	var k store.APIKey
	var roles, scopes string
	var created int64
	var expires, revoked, used sql.NullInt64
	if err := row.Scan(&k.ID, &k.UserID, &k.UserName, &k.Hash, &k.Prefix, &roles, &created, &expires, &revoked, &used, &scopes, &k.RotatedFrom); err != nil {
		return k, err
	}
	if err := store.DecodeKeyLists(&k, roles, scopes); err != nil {
		return k, fmt.Errorf("sqlite: %w", err)
	}
	k.CreatedAt = fromNS(created)
	k.ExpiresAt, k.RevokedAt, k.LastUsedAt = fromNullNS(expires), fromNullNS(revoked), fromNullNS(used)
	return k, nil
}

// APIKeyByHash implements store.Store.
func (db *DB) APIKeyByHash(ctx context.Context, hash []byte) (store.APIKey, store.User, error) {
	row := db.r.QueryRowContext(ctx,
		`SELECT `+keyColumns+` FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.hash = ?`, hash)
	k, err := scanKey(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.APIKey{}, store.User{}, fmt.Errorf("%w: api key", store.ErrNotFound)
	}
	if err != nil {
		return store.APIKey{}, store.User{}, fmt.Errorf("sqlite: api key: %w", err)
	}
	u, err := db.userByID(ctx, db.r, k.UserID)
	if err != nil {
		return store.APIKey{}, store.User{}, err
	}
	return k, u, nil
}

// ListAPIKeys implements store.Store.
func (db *DB) ListAPIKeys(ctx context.Context) ([]store.APIKey, error) {
	rows, err := db.r.QueryContext(ctx,
		`SELECT `+keyColumns+` FROM api_keys k JOIN users u ON u.id = k.user_id ORDER BY k.created_ns DESC, k.id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list api keys: %w", err)
	}
	defer rows.Close()
	var out []store.APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey implements store.Store.
func (db *DB) RevokeAPIKey(ctx context.Context, id string, at time.Time) (store.APIKey, error) {
	res, err := db.w.ExecContext(ctx, `UPDATE api_keys SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL`, ns(at), id)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("sqlite: revoke api key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.APIKey{}, fmt.Errorf("%w: active api key %q", store.ErrNotFound, id)
	}
	k, err := scanKey(db.w.QueryRowContext(ctx,
		`SELECT `+keyColumns+` FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?`, id))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("sqlite: revoke api key: %w", err)
	}
	return k, nil
}

// Roles implements store.Store.
func (db *DB) Roles(ctx context.Context) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT name FROM roles ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: roles: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Grants implements store.Store.
func (db *DB) Grants(ctx context.Context) ([]store.Grant, error) {
	rows, err := db.r.QueryContext(ctx, `
		SELECT r.name, p.action, p.pattern, rp.effect
		FROM role_permissions rp
		JOIN roles r ON r.id = rp.role_id
		JOIN permissions p ON p.id = rp.permission_id
		ORDER BY r.name, p.action, p.pattern`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: grants: %w", err)
	}
	defer rows.Close()
	var out []store.Grant
	for rows.Next() {
		var g store.Grant
		if err := rows.Scan(&g.Role, &g.Action, &g.Pattern, &g.Effect); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// RecordSession implements store.Store.
func (db *DB) RecordSession(ctx context.Context, s store.Session) error {
	_, err := db.w.ExecContext(ctx,
		`INSERT OR IGNORE INTO sessions (id, principal, protocol_version, client_name, created_ns) VALUES (?, ?, ?, ?, ?)`,
		s.ID, s.Principal, s.ProtocolVersion, s.ClientName, ns(s.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: record session: %w", err)
	}
	return nil
}
