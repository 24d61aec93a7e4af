package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/store"
)

// userColumns selects a user with its role names sorted (byte order), in
// one statement and so from one snapshot.
const userColumns = `u.id, u.name, u.disabled, u.created_ns,
	COALESCE((SELECT array_agg(r.name ORDER BY r.name) FROM user_roles ur JOIN roles r ON r.id = ur.role_id
		WHERE ur.user_id = u.id), '{}')`

func scanUser(row pgx.Row) (store.User, error) {
	var u store.User
	var created int64
	if err := row.Scan(&u.ID, &u.Name, &u.Disabled, &created, &u.Roles); err != nil {
		return store.User{}, err
	}
	if len(u.Roles) == 0 {
		u.Roles = nil
	}
	u.CreatedAt = fromNS(created)
	return u, nil
}

func (db *DB) userWhere(ctx context.Context, q querier, cond string, arg any) (store.User, error) {
	u, err := scanUser(q.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE `+cond, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.User{}, fmt.Errorf("%w: user", store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, wrap("user", err)
	}
	return u, nil
}

// EnsureUser implements store.Store. Of replicas creating one user at
// once, one creates it (with its roles, in one transaction) and the others
// wait for that commit and return the user with created false.
func (db *DB) EnsureUser(ctx context.Context, name string, roles []string) (store.User, bool, error) {
	if name == "" {
		return store.User{}, false, fmt.Errorf("%w: empty user name", store.ErrInvalid)
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return store.User{}, false, wrap("create user", err)
	}
	defer rollback(ctx, tx)
	var id int64
	created := false
	err = tx.QueryRow(ctx, `SELECT id FROM users WHERE name = $1`, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		// ON CONFLICT waits for a concurrent creator's transaction; if it
		// committed, this inserts nothing and the user is read below.
		err = tx.QueryRow(ctx, `INSERT INTO users (name, created_ns) VALUES ($1, $2)
			ON CONFLICT (name) DO NOTHING RETURNING id`, name, ns(db.now())).Scan(&id)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			err = tx.QueryRow(ctx, `SELECT id FROM users WHERE name = $1`, name).Scan(&id)
		case err == nil:
			created = true
			for _, r := range roles {
				if err := grantRoleTx(ctx, tx, id, r); err != nil {
					return store.User{}, false, err
				}
			}
		}
	}
	if err != nil {
		return store.User{}, false, wrap("create user", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return store.User{}, false, wrap("create user", err)
	}
	u, err := db.userWhere(ctx, db.pool, `u.id = $1`, id)
	return u, created, err
}

// grantRoleTx gives the user role inside tx (idempotent); an unknown role
// is store.ErrInvalid.
func grantRoleTx(ctx context.Context, tx pgx.Tx, userID int64, role string) error {
	tag, err := tx.Exec(ctx, `INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = $2
		ON CONFLICT DO NOTHING`, userID, role)
	if isForeignKey(err) {
		return fmt.Errorf("%w: user %d", store.ErrNotFound, userID)
	}
	if err != nil {
		return wrap("grant role", err)
	}
	if tag.RowsAffected() == 0 {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM roles WHERE name = $1)`, role).Scan(&exists); err != nil {
			return wrap("grant role", err)
		}
		if !exists {
			return fmt.Errorf("%w: unknown role %q", store.ErrInvalid, role)
		}
	}
	return nil
}

// GrantUserRole implements store.Store.
func (db *DB) GrantUserRole(ctx context.Context, userID int64, role string) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return wrap("grant role", err)
	}
	defer rollback(ctx, tx)
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, userID).Scan(&exists); err != nil {
		return wrap("grant role", err)
	}
	if !exists {
		return fmt.Errorf("%w: user %d", store.ErrNotFound, userID)
	}
	if err := grantRoleTx(ctx, tx, userID, role); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		if isForeignKey(err) { // the user was deleted meanwhile
			return fmt.Errorf("%w: user %d", store.ErrNotFound, userID)
		}
		return wrap("grant role", err)
	}
	return nil
}

// UserByName implements store.Store.
func (db *DB) UserByName(ctx context.Context, name string) (store.User, error) {
	return db.userWhere(ctx, db.pool, `u.name = $1`, name)
}

// CreateAPIKey implements store.Store.
func (db *DB) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	roles, scopesJSON, err := store.EncodeKeyLists(k)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO api_keys
		(id, user_id, hash, prefix, roles, created_ns, expires_ns, scopes, rotated_from)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		k.ID, k.UserID, k.Hash, k.Prefix, roles, ns(k.CreatedAt), nullNS(k.ExpiresAt), scopesJSON, k.RotatedFrom)
	switch {
	case isUnique(err):
		return fmt.Errorf("%w: api key", store.ErrConflict)
	case isForeignKey(err):
		return fmt.Errorf("%w: user %d", store.ErrNotFound, k.UserID)
	case err != nil:
		return wrap("create api key", err)
	}
	return nil
}

const keyColumns = `k.id, k.user_id, u.name, k.hash, k.prefix, k.roles, k.created_ns, k.expires_ns, k.revoked_ns,
	k.last_used_ns, k.scopes, k.rotated_from`

// scanKey scans keyColumns followed by extra destinations.
func scanKey(row pgx.Row, extra ...any) (store.APIKey, error) {
	var k store.APIKey
	var roles, scopes string
	var created int64
	var expires, revoked, used *int64
	dest := append([]any{&k.ID, &k.UserID, &k.UserName, &k.Hash, &k.Prefix, &roles, &created, &expires, &revoked,
		&used, &scopes, &k.RotatedFrom}, extra...)
	if err := row.Scan(dest...); err != nil {
		return k, err
	}
	if err := store.DecodeKeyLists(&k, roles, scopes); err != nil {
		return k, fmt.Errorf("postgres: %w", err)
	}
	k.CreatedAt = fromNS(created)
	k.ExpiresAt, k.RevokedAt, k.LastUsedAt = fromNullNS(expires), fromNullNS(revoked), fromNullNS(used)
	return k, nil
}

// APIKeyByHash implements store.Store: the key and its user (with roles)
// in one statement, the authentication hot path.
func (db *DB) APIKeyByHash(ctx context.Context, hash []byte) (store.APIKey, store.User, error) {
	var u store.User
	var userCreated int64
	k, err := scanKey(db.pool.QueryRow(ctx, `SELECT `+keyColumns+`, u.disabled, u.created_ns,
		COALESCE((SELECT array_agg(r.name ORDER BY r.name) FROM user_roles ur JOIN roles r ON r.id = ur.role_id
			WHERE ur.user_id = u.id), '{}')
		FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.hash = $1`, hash),
		&u.Disabled, &userCreated, &u.Roles)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.APIKey{}, store.User{}, fmt.Errorf("%w: api key", store.ErrNotFound)
	}
	if err != nil {
		return store.APIKey{}, store.User{}, wrap("api key", err)
	}
	u.ID, u.Name, u.CreatedAt = k.UserID, k.UserName, fromNS(userCreated)
	if len(u.Roles) == 0 {
		u.Roles = nil
	}
	return k, u, nil
}

// APIKeyByID implements store.Store.
func (db *DB) APIKeyByID(ctx context.Context, id string) (store.APIKey, error) {
	k, err := scanKey(db.pool.QueryRow(ctx,
		`SELECT `+keyColumns+` FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.APIKey{}, fmt.Errorf("%w: api key %q", store.ErrNotFound, id)
	}
	if err != nil {
		return store.APIKey{}, wrap("api key", err)
	}
	return k, nil
}

// ListAPIKeys implements store.Store.
func (db *DB) ListAPIKeys(ctx context.Context) ([]store.APIKey, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT `+keyColumns+` FROM api_keys k JOIN users u ON u.id = k.user_id ORDER BY k.created_ns DESC, k.id`)
	if err != nil {
		return nil, wrap("list api keys", err)
	}
	defer rows.Close()
	var out []store.APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, wrap("list api keys", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list api keys", err)
	}
	return out, nil
}

// RevokeAPIKey implements store.Store: compare-and-set on an unrevoked
// key, so of replicas revoking one key at once exactly one succeeds.
func (db *DB) RevokeAPIKey(ctx context.Context, id string, at time.Time) (store.APIKey, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, `UPDATE api_keys k SET revoked_ns = $1 FROM users u
		WHERE u.id = k.user_id AND k.id = $2 AND k.revoked_ns IS NULL RETURNING `+keyColumns, ns(at), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.APIKey{}, fmt.Errorf("%w: active api key %q", store.ErrNotFound, id)
	}
	if err != nil {
		return store.APIKey{}, wrap("revoke api key", err)
	}
	return k, nil
}

// RecordSession implements store.Store.
func (db *DB) RecordSession(ctx context.Context, s store.Session) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO sessions (id, principal, protocol_version, client_name, created_ns)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`,
		s.ID, s.Principal, s.ProtocolVersion, s.ClientName, ns(s.CreatedAt))
	if err != nil {
		return wrap("record session", err)
	}
	return nil
}
