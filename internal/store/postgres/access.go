package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/store"
)

// RevokeUserRole implements store.Store.
func (db *DB) RevokeUserRole(ctx context.Context, userID int64, role string) error {
	tag, err := db.pool.Exec(ctx,
		`DELETE FROM user_roles WHERE user_id = $1 AND role_id = (SELECT id FROM roles WHERE name = $2)`, userID, role)
	if err != nil {
		return wrap("revoke role", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: user %d does not hold role %q", store.ErrNotFound, userID, role)
	}
	return nil
}

// ListUsers implements store.Store.
func (db *DB) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+userColumns+` FROM users u ORDER BY u.name`)
	if err != nil {
		return nil, wrap("list users", err)
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, wrap("list users", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list users", err)
	}
	return out, nil
}

// SetUserDisabled implements store.Store.
func (db *DB) SetUserDisabled(ctx context.Context, name string, disabled bool) (store.User, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE users SET disabled = $1 WHERE name = $2`, disabled, name)
	if err != nil {
		return store.User{}, wrap("disable user", err)
	}
	if tag.RowsAffected() == 0 {
		return store.User{}, fmt.Errorf("%w: user %q", store.ErrNotFound, name)
	}
	return db.userWhere(ctx, db.pool, `u.name = $1`, name)
}

// Roles implements store.Store.
func (db *DB) Roles(ctx context.Context) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT name FROM roles ORDER BY name`)
	if err != nil {
		return nil, wrap("roles", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("roles", err)
	}
	return out, nil
}

// Grants implements store.Store.
func (db *DB) Grants(ctx context.Context) ([]store.Grant, error) {
	return grants(ctx, db.pool)
}

func grants(ctx context.Context, q querier) ([]store.Grant, error) {
	rows, err := q.Query(ctx, `
		SELECT r.name, p.action, p.pattern, rp.effect
		FROM role_permissions rp
		JOIN roles r ON r.id = rp.role_id
		JOIN permissions p ON p.id = rp.permission_id
		ORDER BY r.name, p.action, p.pattern`)
	if err != nil {
		return nil, wrap("grants", err)
	}
	defer rows.Close()
	var out []store.Grant
	for rows.Next() {
		var g store.Grant
		if err := rows.Scan(&g.Role, &g.Action, &g.Pattern, &g.Effect); err != nil {
			return nil, wrap("grants", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("grants", err)
	}
	return out, nil
}

// ListRoles implements store.Store: roles and grants from one snapshot.
func (db *DB) ListRoles(ctx context.Context) ([]store.Role, error) {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, wrap("list roles", err)
	}
	defer rollback(ctx, tx)
	rows, err := tx.Query(ctx, `SELECT name, description FROM roles ORDER BY name`)
	if err != nil {
		return nil, wrap("list roles", err)
	}
	var out []store.Role
	idx := map[string]int{}
	for rows.Next() {
		var r store.Role
		if err := rows.Scan(&r.Name, &r.Description); err != nil {
			rows.Close()
			return nil, wrap("list roles", err)
		}
		idx[r.Name] = len(out)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap("list roles", err)
	}
	gs, err := grants(ctx, tx)
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
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
	_, err := db.pool.Exec(ctx, `INSERT INTO roles (name, description) VALUES ($1, $2)`, name, description)
	if isUnique(err) {
		return fmt.Errorf("%w: role %q exists", store.ErrConflict, name)
	}
	if err != nil {
		return wrap("create role", err)
	}
	return nil
}

// GrantPermission implements store.Store.
func (db *DB) GrantPermission(ctx context.Context, g store.Grant) error {
	if err := g.Validate(); err != nil {
		return err
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return wrap("grant", err)
	}
	defer rollback(ctx, tx)
	var roleID int64
	err = tx.QueryRow(ctx, `SELECT id FROM roles WHERE name = $1`, g.Role).Scan(&roleID)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: unknown role %q", store.ErrInvalid, g.Role)
	}
	if err != nil {
		return wrap("grant", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO permissions (action, pattern) VALUES ($1, $2)
		ON CONFLICT (action, pattern) DO NOTHING`, g.Action, g.Pattern); err != nil {
		return wrap("grant", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO role_permissions (role_id, permission_id, effect)
		SELECT $1, id, $2 FROM permissions WHERE action = $3 AND pattern = $4
		ON CONFLICT (role_id, permission_id) DO UPDATE SET effect = excluded.effect
		WHERE role_permissions.effect <> excluded.effect`,
		roleID, g.Effect, g.Action, g.Pattern); err != nil {
		return wrap("grant", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap("grant", err)
	}
	return nil
}

// RevokePermission implements store.Store.
func (db *DB) RevokePermission(ctx context.Context, role, action, pattern string) error {
	tag, err := db.pool.Exec(ctx, `
		DELETE FROM role_permissions
		WHERE role_id = (SELECT id FROM roles WHERE name = $1)
		  AND permission_id = (SELECT id FROM permissions WHERE action = $2 AND pattern = $3)`, role, action, pattern)
	if err != nil {
		return wrap("revoke grant", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: role %q has no %s grant for %q", store.ErrNotFound, role, action, pattern)
	}
	return nil
}

// AccessVersion implements store.Store: a counter that deferred triggers
// raise at the commit of every change of users, roles, grants, keys and
// quarantines, made by any replica.
func (db *DB) AccessVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := db.pool.QueryRow(ctx, `SELECT version FROM access_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, wrap("access version", err)
	}
	return v, nil
}
