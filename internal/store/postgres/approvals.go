package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/store"
)

const approvalColumns = `id, principal, tool, args_sha256, args, justification, state, created_ns, expires_ns,
	decided_by, decided_ns, comment, consumed_ns, request_id, session`

func scanApproval(row pgx.Row) (store.Approval, error) {
	var a store.Approval
	var args string
	var created, expires int64
	var decided, consumed *int64
	err := row.Scan(&a.ID, &a.Principal, &a.Tool, &a.ArgsSHA256, &args, &a.Justification, &a.State, &created, &expires,
		&a.DecidedBy, &decided, &a.Comment, &consumed, &a.RequestID, &a.Session)
	if args != "" {
		a.Args = []byte(args)
	}
	a.CreatedAt, a.ExpiresAt = fromNS(created), fromNS(expires)
	a.DecidedAt, a.ConsumedAt = fromNullNS(decided), fromNullNS(consumed)
	return a, err
}

// CreateApproval implements store.ApprovalStore. A second pending request
// for the same call (principal, tool, arguments digest), from any replica,
// or an id already used: ErrConflict.
func (db *DB) CreateApproval(ctx context.Context, a store.Approval) error {
	if err := a.ValidateNew(); err != nil {
		return err
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO approvals (id, principal, tool, args_sha256, args, justification, state,
		created_ns, expires_ns, request_id, session) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		a.ID, a.Principal, a.Tool, a.ArgsSHA256, string(a.Args), a.Justification, a.State, ns(a.CreatedAt),
		ns(a.ExpiresAt), a.RequestID, a.Session)
	if isUnique(err) {
		return fmt.Errorf("%w: approval %s exists", store.ErrConflict, a.ID)
	}
	if err != nil {
		return wrap("approval", err)
	}
	return nil
}

// GetApproval implements store.ApprovalStore.
func (db *DB) GetApproval(ctx context.Context, id string) (store.Approval, error) {
	a, err := scanApproval(db.pool.QueryRow(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("%w: approval %q", store.ErrNotFound, id)
	}
	if err != nil {
		return a, wrap("approval", err)
	}
	return a, nil
}

// ListApprovals implements store.ApprovalStore (limit 1000 when <= 0 or
// above 10000).
func (db *DB) ListApprovals(ctx context.Context, state string, limit int) ([]store.Approval, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	var rows pgx.Rows
	var err error
	if state == "" {
		rows, err = db.pool.Query(ctx, `SELECT `+approvalColumns+` FROM approvals
			ORDER BY created_ns DESC, id DESC LIMIT $1`, limit)
	} else {
		rows, err = db.pool.Query(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE state = $1
			ORDER BY created_ns DESC, id DESC LIMIT $2`, state, limit)
	}
	if err != nil {
		return nil, wrap("approvals", err)
	}
	defer rows.Close()
	var out []store.Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, wrap("approvals", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("approvals", err)
	}
	return out, nil
}

// FindApproval implements store.ApprovalStore.
func (db *DB) FindApproval(ctx context.Context, principal, tool, digest string, states []string, now time.Time) (store.Approval, error) {
	if len(states) == 0 {
		return store.Approval{}, fmt.Errorf("%w: no states", store.ErrInvalid)
	}
	a, err := scanApproval(db.pool.QueryRow(ctx, `SELECT `+approvalColumns+` FROM approvals
		WHERE principal = $1 AND tool = $2 AND args_sha256 = $3 AND expires_ns > $4 AND state = ANY ($5)
		ORDER BY created_ns DESC LIMIT 1`, principal, tool, digest, ns(now), states))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, store.ErrNotFound
	}
	if err != nil {
		return a, wrap("approval", err)
	}
	return a, nil
}

// transition moves id from one of the states from, if unexpired at at,
// applying set (column assignments numbered from $4, with args): one
// compare-and-set UPDATE, so of replicas racing on one request exactly one
// wins; the others get ErrConflict and the request as it is now.
func (db *DB) transition(ctx context.Context, id string, from []string, set string, at time.Time, args ...any) (store.Approval, error) {
	all := append([]any{id, ns(at), from}, args...)
	a, err := scanApproval(db.pool.QueryRow(ctx, `UPDATE approvals SET `+set+`
		WHERE id = $1 AND expires_ns > $2 AND state = ANY ($3) RETURNING `+approvalColumns, all...))
	if err == nil {
		return a, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return store.Approval{}, wrap("approval", err)
	}
	cur, err := scanApproval(db.pool.QueryRow(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return cur, fmt.Errorf("%w: approval %q", store.ErrNotFound, id)
	}
	if err != nil {
		return cur, wrap("approval", err)
	}
	return cur, fmt.Errorf("%w: approval %s is %s", store.ErrConflict, id, cur.State)
}

// DecideApproval implements store.ApprovalStore.
func (db *DB) DecideApproval(ctx context.Context, id, state, by, comment string, at time.Time) (store.Approval, error) {
	if err := store.ValidateDecision(state); err != nil {
		return store.Approval{}, err
	}
	return db.transition(ctx, id, []string{store.ApprovalPending},
		`state = $4, decided_by = $5, decided_ns = $6, comment = $7`, at, state, by, ns(at), comment)
}

// ConsumeApproval implements store.ApprovalStore.
func (db *DB) ConsumeApproval(ctx context.Context, id string, at time.Time) (store.Approval, error) {
	return db.transition(ctx, id, []string{store.ApprovalApproved}, `state = 'consumed', consumed_ns = $4`, at, ns(at))
}

// ExpireApprovals implements store.ApprovalStore: one UPDATE, returning
// the requests it expired.
func (db *DB) ExpireApprovals(ctx context.Context, at time.Time) ([]store.Approval, error) {
	rows, err := db.pool.Query(ctx, `UPDATE approvals SET state = 'expired'
		WHERE state IN ('pending', 'approved') AND expires_ns <= $1 RETURNING `+approvalColumns, ns(at))
	if err != nil {
		return nil, wrap("approvals expire", err)
	}
	defer rows.Close()
	var out []store.Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, wrap("approvals expire", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("approvals expire", err)
	}
	return out, nil
}
