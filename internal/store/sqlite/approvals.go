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

const approvalColumns = `id, principal, tool, args_sha256, args, justification, state, created_ns, expires_ns,
	decided_by, decided_ns, comment, consumed_ns, request_id, session`

func scanApproval(row interface{ Scan(...any) error }) (store.Approval, error) {
	var a store.Approval
	var args string
	var created, expires int64
	var decided, consumed sql.NullInt64
	err := row.Scan(&a.ID, &a.Principal, &a.Tool, &a.ArgsSHA256, &args, &a.Justification, &a.State, &created, &expires,
		&a.DecidedBy, &decided, &a.Comment, &consumed, &a.RequestID, &a.Session)
	if args != "" {
		a.Args = []byte(args)
	}
	a.CreatedAt, a.ExpiresAt = fromNS(created), fromNS(expires)
	a.DecidedAt, a.ConsumedAt = fromNullNS(decided), fromNullNS(consumed)
	return a, err
}

// CreateApproval implements store.ApprovalStore.
func (db *DB) CreateApproval(ctx context.Context, a store.Approval) error {
	if err := a.ValidateNew(); err != nil {
		return err
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO approvals (id, principal, tool, args_sha256, args, justification, state,
		created_ns, expires_ns, request_id, session) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.Principal, a.Tool, a.ArgsSHA256, string(a.Args), a.Justification, a.State, ns(a.CreatedAt),
		ns(a.ExpiresAt), a.RequestID, a.Session)
	if isUnique(err) {
		return fmt.Errorf("%w: approval %s exists", store.ErrConflict, a.ID)
	}
	if err != nil {
		return fmt.Errorf("sqlite: approval: %w", err)
	}
	return nil
}

// GetApproval implements store.ApprovalStore.
func (db *DB) GetApproval(ctx context.Context, id string) (store.Approval, error) {
	a, err := scanApproval(db.r.QueryRowContext(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("%w: approval %q", store.ErrNotFound, id)
	}
	if err != nil {
		return a, fmt.Errorf("sqlite: approval: %w", err)
	}
	return a, nil
}

// ListApprovals implements store.ApprovalStore.
func (db *DB) ListApprovals(ctx context.Context, state string, limit int) ([]store.Approval, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	q := `SELECT ` + approvalColumns + ` FROM approvals`
	args := []any{}
	if state != "" {
		q += ` WHERE state = ?`
		args = append(args, state)
	}
	rows, err := db.r.QueryContext(ctx, q+` ORDER BY created_ns DESC, id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: approvals: %w", err)
	}
	defer rows.Close()
	var out []store.Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: approvals: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// FindApproval implements store.ApprovalStore.
func (db *DB) FindApproval(ctx context.Context, principal, tool, digest string, states []string, now time.Time) (store.Approval, error) {
	if len(states) == 0 {
		return store.Approval{}, fmt.Errorf("%w: no states", store.ErrInvalid)
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(states)), ", ")
	args := []any{principal, tool, digest, ns(now)}
	for _, s := range states {
		args = append(args, s)
	}
	// The writer connection: a decision just committed must be seen.
	a, err := scanApproval(db.w.QueryRowContext(ctx, `SELECT `+approvalColumns+` FROM approvals
		WHERE principal = ? AND tool = ? AND args_sha256 = ? AND expires_ns > ? AND state IN (`+marks+`)
		ORDER BY created_ns DESC LIMIT 1`, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return a, store.ErrNotFound
	}
	if err != nil {
		return a, fmt.Errorf("sqlite: approval: %w", err)
	}
	return a, nil
}

// transition moves id from one of from to state `to` when unexpired at
// `at`, with set (column assignments) applied; CAS in one statement.
func (db *DB) transition(ctx context.Context, id string, from []string, set string, at time.Time, args ...any) (store.Approval, error) {
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(from)), ", ")
	q := `UPDATE approvals SET ` + set + ` WHERE id = ? AND expires_ns > ? AND state IN (` + marks + `)`
	all := append(args, id, ns(at))
	for _, f := range from {
		all = append(all, f)
	}
	res, err := db.w.ExecContext(ctx, q, all...)
	if err != nil {
		return store.Approval{}, fmt.Errorf("sqlite: approval: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		cur, gerr := scanApproval(db.w.QueryRowContext(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = ?`, id))
		if errors.Is(gerr, sql.ErrNoRows) {
			return cur, fmt.Errorf("%w: approval %q", store.ErrNotFound, id)
		}
		return cur, fmt.Errorf("%w: approval %s is %s", store.ErrConflict, id, cur.State)
	}
	return scanApproval(db.w.QueryRowContext(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = ?`, id))
}

// DecideApproval implements store.ApprovalStore.
func (db *DB) DecideApproval(ctx context.Context, id, state, by, comment string, at time.Time) (store.Approval, error) {
	if err := store.ValidateDecision(state); err != nil {
		return store.Approval{}, err
	}
	return db.transition(ctx, id, []string{store.ApprovalPending},
		`state = ?, decided_by = ?, decided_ns = ?, comment = ?`, at, state, by, ns(at), comment)
}

// ConsumeApproval implements store.ApprovalStore.
func (db *DB) ConsumeApproval(ctx context.Context, id string, at time.Time) (store.Approval, error) {
	return db.transition(ctx, id, []string{store.ApprovalApproved}, `state = 'consumed', consumed_ns = ?`, at, ns(at))
}

// ExpireApprovals implements store.ApprovalStore.
func (db *DB) ExpireApprovals(ctx context.Context, at time.Time) ([]store.Approval, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: approvals expire: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+approvalColumns+` FROM approvals
		WHERE state IN ('pending', 'approved') AND expires_ns <= ?`, ns(at))
	if err != nil {
		return nil, fmt.Errorf("sqlite: approvals expire: %w", err)
	}
	var out []store.Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: approvals expire: %w", err)
		}
		a.State = store.ApprovalExpired
		out = append(out, a)
	}
	rows.Close()
	if _, err := tx.ExecContext(ctx, `UPDATE approvals SET state = 'expired'
		WHERE state IN ('pending', 'approved') AND expires_ns <= ?`, ns(at)); err != nil {
		return nil, fmt.Errorf("sqlite: approvals expire: %w", err)
	}
	return out, tx.Commit()
}
