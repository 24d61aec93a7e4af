package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/portcullis/portcullis/internal/store"
)

// RevokeUserRole implements store.Store.
func (db *DB) RevokeUserRole(ctx context.Context, userID int64, role string) error {
	res, err := db.w.ExecContext(ctx,
		`DELETE FROM user_roles WHERE user_id = ? AND role_id = (SELECT id FROM roles WHERE name = ?)`, userID, role)
	if err != nil {
		return fmt.Errorf("sqlite: revoke role: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: user %d does not hold role %q", store.ErrNotFound, userID, role)
	}
	return nil
}

// ListUsers implements store.Store.
func (db *DB) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := db.r.QueryContext(ctx, `
		SELECT u.id, u.name, u.disabled, u.created_ns, COALESCE(GROUP_CONCAT(r.name, ','), '')
		FROM users u
		LEFT JOIN user_roles ur ON ur.user_id = u.id
		LEFT JOIN roles r ON r.id = ur.role_id
		GROUP BY u.id ORDER BY u.name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list users: %w", err)
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		var u store.User
		var created int64
		var roles string
		if err := rows.Scan(&u.ID, &u.Name, &u.Disabled, &created, &roles); err != nil {
			return nil, err
		}
		u.CreatedAt = fromNS(created)
		u.Roles = store.SplitRoles(store.JoinRoles(store.SplitRoles(roles))) // sorted
		out = append(out, u)
	}
	return out, rows.Err()
}

// SetUserDisabled implements store.Store.
func (db *DB) SetUserDisabled(ctx context.Context, name string, disabled bool) (store.User, error) {
	res, err := db.w.ExecContext(ctx, `UPDATE users SET disabled = ? WHERE name = ?`, disabled, name)
	if err != nil {
		return store.User{}, fmt.Errorf("sqlite: disable user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.User{}, fmt.Errorf("%w: user %q", store.ErrNotFound, name)
	}
	return scanUser(ctx, db.w, `SELECT id, name, disabled, created_ns FROM users WHERE name = ?`, name)
}

// APIKeyByID implements store.Store.
func (db *DB) APIKeyByID(ctx context.Context, id string) (store.APIKey, error) {
	k, err := scanKey(db.r.QueryRowContext(ctx,
		`SELECT `+keyColumns+` FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.APIKey{}, fmt.Errorf("%w: api key %q", store.ErrNotFound, id)
	}
	if err != nil {
		return store.APIKey{}, fmt.Errorf("sqlite: api key: %w", err)
	}
	return k, nil
}

// ListRoles implements store.Store.
func (db *DB) ListRoles(ctx context.Context) ([]store.Role, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT name, description FROM roles ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list roles: %w", err)
	}
	defer rows.Close()
	var out []store.Role
	idx := map[string]int{}
	for rows.Next() {
		var r store.Role
		if err := rows.Scan(&r.Name, &r.Description); err != nil {
			return nil, err
		}
		idx[r.Name] = len(out)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	grants, err := db.Grants(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range grants {
		if i, ok := idx[g.Role]; ok {
			out[i].Grants = append(out[i].Grants, g)
		}
	}
	return out, nil
}

// CreateRole implements store.Store.
func (db *DB) CreateRole(ctx context.Context, name, description string) error {
	if name == "" {
		return fmt.Errorf("%w: empty role name", store.ErrInvalid)
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO roles (name, description) VALUES (?, ?)`, name, description)
	if isUnique(err) {
		return fmt.Errorf("%w: role %q exists", store.ErrConflict, name)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create role: %w", err)
	}
	return nil
}

// GrantPermission implements store.Store.
func (db *DB) GrantPermission(ctx context.Context, g store.Grant) error {
	if err := g.Validate(); err != nil {
		return err
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var roleID int64
	err = tx.QueryRowContext(ctx, `SELECT id FROM roles WHERE name = ?`, g.Role).Scan(&roleID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: unknown role %q", store.ErrInvalid, g.Role)
	}
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO permissions (action, pattern) VALUES (?, ?)`, g.Action, g.Pattern); err != nil {
		return fmt.Errorf("sqlite: grant: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO role_permissions (role_id, permission_id, effect)
		SELECT ?, id, ? FROM permissions WHERE action = ? AND pattern = ?
		ON CONFLICT (role_id, permission_id) DO UPDATE SET effect = excluded.effect WHERE effect != excluded.effect`,
		roleID, g.Effect, g.Action, g.Pattern); err != nil {
		return fmt.Errorf("sqlite: grant: %w", err)
	}
	return tx.Commit()
}

// RevokePermission implements store.Store.
func (db *DB) RevokePermission(ctx context.Context, role, action, pattern string) error {
	res, err := db.w.ExecContext(ctx, `
		DELETE FROM role_permissions
		WHERE role_id = (SELECT id FROM roles WHERE name = ?)
		  AND permission_id = (SELECT id FROM permissions WHERE action = ? AND pattern = ?)`, role, action, pattern)
	if err != nil {
		return fmt.Errorf("sqlite: revoke grant: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: role %q has no %s grant for %q", store.ErrNotFound, role, action, pattern)
	}
	return nil
}

// AccessVersion implements store.Store.
func (db *DB) AccessVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := db.r.QueryRowContext(ctx, `SELECT version FROM access_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: access version: %w", err)
	}
	return v, nil
}
