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

// RecordViolations implements store.AbuseStore.
func (db *DB) RecordViolations(ctx context.Context, vs []store.Violation) error {
	if len(vs) == 0 {
		return nil
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: violations: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO violations
		(id, time_ns, principal, session, plugin, tool, type, severity, request_id, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: violations: %w", err)
	}
	defer stmt.Close()
	for _, v := range vs {
		if err := v.Validate(); err != nil {
			return err
		}
		if _, err := stmt.ExecContext(ctx, v.ID, ns(v.Time), v.Principal, v.Session, v.Plugin, v.Tool, v.Type,
			int(v.Severity), v.RequestID, v.Detail); err != nil {
			return fmt.Errorf("sqlite: violations: %w", err)
		}
	}
	return tx.Commit()
}

// ListViolations implements store.AbuseStore.
func (db *DB) ListViolations(ctx context.Context, q store.ViolationQuery) ([]store.Violation, error) {
	var where []string
	var args []any
	if q.Principal != "" {
		where, args = append(where, "principal = ?"), append(args, q.Principal)
	}
	if q.MinSeverity > 0 {
		where, args = append(where, "severity >= ?"), append(args, int(q.MinSeverity))
	}
	if q.Type != "" {
		where, args = append(where, "type = ?"), append(args, q.Type)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "time_ns >= ?"), append(args, ns(q.Since))
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
	query += " ORDER BY time_ns DESC, id DESC LIMIT ?"
	rows, err := db.r.QueryContext(ctx, query, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: violations: %w", err)
	}
	defer rows.Close()
	var out []store.Violation
	for rows.Next() {
		var v store.Violation
		var t int64
		var sev int
		if err := rows.Scan(&v.ID, &t, &v.Principal, &v.Session, &v.Plugin, &v.Tool, &v.Type, &sev, &v.RequestID,
			&v.Detail); err != nil {
			return nil, fmt.Errorf("sqlite: violations: %w", err)
		}
		v.Time, v.Severity = fromNS(t), store.Severity(sev)
		out = append(out, v)
	}
	return out, rows.Err()
}

const quarantineColumns = `id, kind, subject, reason, created_ns, created_by, released_ns, released_by, release_reason`

func scanQuarantine(row interface{ Scan(...any) error }) (store.Quarantine, error) {
	var q store.Quarantine
	var created int64
	var released sql.NullInt64
	err := row.Scan(&q.ID, &q.Kind, &q.Subject, &q.Reason, &created, &q.CreatedBy, &released, &q.ReleasedBy, &q.ReleaseReason)
	q.CreatedAt, q.ReleasedAt = fromNS(created), fromNullNS(released)
	return q, err
}

// CreateQuarantine implements store.AbuseStore.
func (db *DB) CreateQuarantine(ctx context.Context, q store.Quarantine) (store.Quarantine, error) {
	if err := q.Validate(); err != nil {
		return q, err
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO quarantines (id, kind, subject, reason, created_ns, created_by)
		VALUES (?, ?, ?, ?, ?, ?)`, q.ID, q.Kind, q.Subject, q.Reason, ns(q.CreatedAt), q.CreatedBy)
	if isUnique(err) {
		existing, qerr := scanQuarantine(db.w.QueryRowContext(ctx, `SELECT `+quarantineColumns+
			` FROM quarantines WHERE kind = ? AND subject = ? AND released_ns IS NULL`, q.Kind, q.Subject))
		if errors.Is(qerr, sql.ErrNoRows) {
			// The id is taken (not this subject's active quarantine), or
			// the conflicting one was released meanwhile.
			return q, fmt.Errorf("%w: quarantine id %s already exists", store.ErrConflict, q.ID)
		}
		if qerr != nil {
			return q, fmt.Errorf("sqlite: quarantine: %w", qerr)
		}
		return existing, fmt.Errorf("%w: %s %s is already quarantined (%s)", store.ErrConflict, q.Kind, q.Subject, existing.ID)
	}
	if err != nil {
		return q, fmt.Errorf("sqlite: quarantine: %w", err)
	}
	return q, nil
}

// ListQuarantines implements store.AbuseStore.
func (db *DB) ListQuarantines(ctx context.Context, all bool) ([]store.Quarantine, error) {
	query := `SELECT ` + quarantineColumns + ` FROM quarantines`
	if !all {
		query += ` WHERE released_ns IS NULL`
	}
	rows, err := db.r.QueryContext(ctx, query+` ORDER BY created_ns DESC, id DESC LIMIT 10000`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: quarantines: %w", err)
	}
	defer rows.Close()
	var out []store.Quarantine
	for rows.Next() {
		q, err := scanQuarantine(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: quarantines: %w", err)
		}
		out = append(out, q)
	}
	return out, rows.Err()
}

// ReleaseQuarantine implements store.AbuseStore.
func (db *DB) ReleaseQuarantine(ctx context.Context, idOrSubject, by, reason string, at time.Time) (store.Quarantine, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return store.Quarantine{}, fmt.Errorf("sqlite: quarantine release: %w", err)
	}
	defer tx.Rollback()
	q, err := scanQuarantine(tx.QueryRowContext(ctx, `SELECT `+quarantineColumns+` FROM quarantines
		WHERE released_ns IS NULL AND (id = ? OR subject = ?)
		ORDER BY id = ? DESC, kind = 'principal' DESC, created_ns LIMIT 1`, idOrSubject, idOrSubject, idOrSubject))
	if errors.Is(err, sql.ErrNoRows) {
		return q, fmt.Errorf("%w: no active quarantine %q", store.ErrNotFound, idOrSubject)
	}
	if err != nil {
		return q, fmt.Errorf("sqlite: quarantine release: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE quarantines SET released_ns = ?, released_by = ?, release_reason = ?
		WHERE id = ?`, ns(at), by, reason, q.ID); err != nil {
		return q, fmt.Errorf("sqlite: quarantine release: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return q, fmt.Errorf("sqlite: quarantine release: %w", err)
	}
	t := at.UTC()
	q.ReleasedAt, q.ReleasedBy, q.ReleaseReason = &t, by, reason
	return q, nil
}

// AddUsage implements store.AbuseStore.
func (db *DB) AddUsage(ctx context.Context, u store.Usage) error {
	if err := u.Validate(); err != nil {
		return err
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO usage (principal, day, calls, cpu_ms) VALUES (?, ?, ?, ?)
		ON CONFLICT (principal, day) DO UPDATE SET calls = calls + excluded.calls, cpu_ms = cpu_ms + excluded.cpu_ms`,
		u.Principal, u.Day, u.Calls, u.CPUMillis)
	if err != nil {
		return fmt.Errorf("sqlite: usage: %w", err)
	}
	return nil
}

// UsageOn implements store.AbuseStore.
func (db *DB) UsageOn(ctx context.Context, day string) ([]store.Usage, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT principal, day, calls, cpu_ms FROM usage WHERE day = ? ORDER BY principal`, day)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage: %w", err)
	}
	defer rows.Close()
	var out []store.Usage
	for rows.Next() {
		var u store.Usage
		if err := rows.Scan(&u.Principal, &u.Day, &u.Calls, &u.CPUMillis); err != nil {
			return nil, fmt.Errorf("sqlite: usage: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
