package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/store"
)

// RecordViolations implements store.AbuseStore: all or none, in one
// transaction. Text PostgreSQL cannot hold (NUL, invalid UTF-8) is stored
// with U+FFFD in its place (see storable): the batch mixes the records of
// many callers, and one client's tool name must not cost the others'.
func (db *DB) RecordViolations(ctx context.Context, vs []store.Violation) error {
	if len(vs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, v := range vs {
		if err := v.Validate(); err != nil {
			return err
		}
		b.Queue(`INSERT INTO violations
			(id, time_ns, principal, session, plugin, tool, type, severity, request_id, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			storable(v.ID), ns(v.Time), storable(v.Principal), storable(v.Session), storable(v.Plugin),
			storable(v.Tool), storable(v.Type), int16(v.Severity), storable(v.RequestID), storable(v.Detail))
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return wrap("violations", err)
	}
	defer rollback(ctx, tx)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return wrap("violations", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap("violations", err)
	}
	return nil
}

// ListViolations implements store.AbuseStore.
func (db *DB) ListViolations(ctx context.Context, q store.ViolationQuery) ([]store.Violation, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.Principal != "" {
		add("principal = $%d", q.Principal)
	}
	if q.MinSeverity > 0 {
		add("severity >= $%d", int(q.MinSeverity))
	}
	if q.Type != "" {
		add("type = $%d", q.Type)
	}
	if !q.Since.IsZero() {
		add("time_ns >= $%d", ns(q.Since))
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10000)
	query := `SELECT id, time_ns, principal, session, plugin, tool, type, severity, request_id, detail FROM violations`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	query += fmt.Sprintf(" ORDER BY time_ns DESC, id DESC LIMIT $%d", len(args))
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap("violations", err)
	}
	defer rows.Close()
	var out []store.Violation
	for rows.Next() {
		var v store.Violation
		var t int64
		var sev int16
		if err := rows.Scan(&v.ID, &t, &v.Principal, &v.Session, &v.Plugin, &v.Tool, &v.Type, &sev, &v.RequestID,
			&v.Detail); err != nil {
			return nil, wrap("violations", err)
		}
		v.Time, v.Severity = fromNS(t), store.Severity(sev)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("violations", err)
	}
	return out, nil
}

const quarantineColumns = `id, kind, subject, reason, created_ns, created_by, released_ns, released_by, release_reason`

func scanQuarantine(row pgx.Row) (store.Quarantine, error) {
	var q store.Quarantine
	var created int64
	var released *int64
	err := row.Scan(&q.ID, &q.Kind, &q.Subject, &q.Reason, &created, &q.CreatedBy, &released, &q.ReleasedBy, &q.ReleaseReason)
	q.CreatedAt, q.ReleasedAt = fromNS(created), fromNullNS(released)
	return q, err
}

// CreateQuarantine implements store.AbuseStore. The unique index on active
// (kind, subject) decides between replicas: the loser gets ErrConflict and
// the winner's quarantine. An id already used is ErrConflict too.
func (db *DB) CreateQuarantine(ctx context.Context, q store.Quarantine) (store.Quarantine, error) {
	if err := q.Validate(); err != nil {
		return q, err
	}
	// A conflicting quarantine may be released between the failed insert
	// and the look-up; then the insert is tried again.
	for range 3 {
		_, err := db.pool.Exec(ctx, `INSERT INTO quarantines (id, kind, subject, reason, created_ns, created_by)
			VALUES ($1, $2, $3, $4, $5, $6)`, q.ID, q.Kind, q.Subject, q.Reason, ns(q.CreatedAt), q.CreatedBy)
		if err == nil {
			return q, nil
		}
		code, constraint := pgCode(err)
		switch {
		case code != codeUniqueViolation:
			return q, wrap("quarantine", err)
		case constraint != "quarantines_active": // the primary key
			return q, fmt.Errorf("%w: quarantine %s exists", store.ErrConflict, q.ID)
		}
		existing, err := scanQuarantine(db.pool.QueryRow(ctx, `SELECT `+quarantineColumns+
			` FROM quarantines WHERE kind = $1 AND subject = $2 AND released_ns IS NULL`, q.Kind, q.Subject))
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return q, wrap("quarantine", err)
		}
		return existing, fmt.Errorf("%w: %s %s is already quarantined (%s)", store.ErrConflict, q.Kind, q.Subject, existing.ID)
	}
	return q, fmt.Errorf("%w: %s %s is being quarantined and released concurrently", store.ErrConflict, q.Kind, q.Subject)
}

// ListQuarantines implements store.AbuseStore.
func (db *DB) ListQuarantines(ctx context.Context, all bool) ([]store.Quarantine, error) {
	query := `SELECT ` + quarantineColumns + ` FROM quarantines`
	if !all {
		query += ` WHERE released_ns IS NULL`
	}
	rows, err := db.pool.Query(ctx, query+` ORDER BY created_ns DESC, id DESC LIMIT 10000`)
	if err != nil {
		return nil, wrap("quarantines", err)
	}
	defer rows.Close()
	var out []store.Quarantine
	for rows.Next() {
		q, err := scanQuarantine(rows)
		if err != nil {
			return nil, wrap("quarantines", err)
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("quarantines", err)
	}
	return out, nil
}

// ReleaseQuarantine implements store.AbuseStore: in one statement, the
// active quarantine with this id, else of this subject (a principal
// first, then the oldest), is locked and released. A concurrent release
// of the same one makes this statement move on to the next candidate or
// find none (ErrNotFound), exactly as if the two had run one after the
// other.
func (db *DB) ReleaseQuarantine(ctx context.Context, idOrSubject, by, reason string, at time.Time) (store.Quarantine, error) {
	q, err := scanQuarantine(db.pool.QueryRow(ctx, `UPDATE quarantines SET released_ns = $2, released_by = $3, release_reason = $4
		WHERE released_ns IS NULL AND id = (
			SELECT id FROM quarantines
			WHERE released_ns IS NULL AND (id = $1 OR subject = $1)
			ORDER BY id = $1 DESC, kind = 'principal' DESC, created_ns
			LIMIT 1 FOR UPDATE)
		RETURNING `+quarantineColumns, idOrSubject, ns(at), by, reason))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Quarantine{}, fmt.Errorf("%w: no active quarantine %q", store.ErrNotFound, idOrSubject)
	}
	if err != nil {
		return store.Quarantine{}, wrap("quarantine release", err)
	}
	return q, nil
}

// AddUsage implements store.AbuseStore: an atomic upsert, so concurrent
// additions from any number of replicas are each counted once.
func (db *DB) AddUsage(ctx context.Context, u store.Usage) error {
	if err := u.Validate(); err != nil {
		return err
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO usage (principal, day, calls, cpu_ms) VALUES ($1, $2, $3, $4)
		ON CONFLICT (principal, day) DO UPDATE
		SET calls = usage.calls + excluded.calls, cpu_ms = usage.cpu_ms + excluded.cpu_ms`,
		u.Principal, u.Day, u.Calls, u.CPUMillis)
	if err != nil {
		return wrap("usage", err)
	}
	return nil
}

// UsageOn implements store.AbuseStore.
func (db *DB) UsageOn(ctx context.Context, day string) ([]store.Usage, error) {
	rows, err := db.pool.Query(ctx, `SELECT principal, day, calls, cpu_ms FROM usage WHERE day = $1 ORDER BY principal`, day)
	if err != nil {
		return nil, wrap("usage", err)
	}
	defer rows.Close()
	var out []store.Usage
	for rows.Next() {
		var u store.Usage
		if err := rows.Scan(&u.Principal, &u.Day, &u.Calls, &u.CPUMillis); err != nil {
			return nil, wrap("usage", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("usage", err)
	}
	return out, nil
}
