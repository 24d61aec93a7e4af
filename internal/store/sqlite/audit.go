package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/reason"
)

const insertAudit = `INSERT INTO audit_events (
	id, time_ns, type, principal, roles, session, request_id, remote_addr, tool, server,
	args_digest, args, decision, reason, status, duration_ns, result_digest, error, detail
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// AppendAudit implements audit.Backend: all events in one IMMEDIATE
// transaction on the writer connection, synchronous=FULL, so the commit is
// durable when it returns. Each event's Seq is set.
func (db *DB) AppendAudit(ctx context.Context, events []*audit.Event) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: audit begin: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, insertAudit)
	if err != nil {
		return fmt.Errorf("sqlite: audit prepare: %w", err)
	}
	defer stmt.Close()
	seqs := make([]int64, len(events))
	for i, e := range events {
		res, err := stmt.ExecContext(ctx,
			e.ID, ns(e.Time), string(e.Type), e.Principal, joinRoles(e.Roles), e.Session, e.RequestID,
			e.RemoteAddr, e.Tool, e.Server, e.ArgsDigest, string(e.Args), e.Decision, string(e.Reason),
			e.Status, int64(e.Duration), e.ResultDigest, e.Error, e.Detail)
		if err != nil {
			return fmt.Errorf("sqlite: audit insert: %w", err)
		}
		if seqs[i], err = res.LastInsertId(); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: audit commit: %w", err)
	}
	for i, e := range events {
		e.Seq = seqs[i]
	}
	return nil
}

// QueryAudit implements store.Store.
func (db *DB) QueryAudit(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if q.Principal != "" {
		add("principal = ?", q.Principal)
	}
	if q.Tool != "" {
		add("tool = ?", q.Tool)
	}
	if q.Type != "" {
		add("type = ?", string(q.Type))
	}
	if q.Status != "" {
		add("status = ?", q.Status)
	}
	if q.RequestID != "" {
		add("request_id = ?", q.RequestID)
	}
	if !q.Since.IsZero() {
		add("time_ns >= ?", ns(q.Since))
	}
	if !q.Until.IsZero() {
		add("time_ns < ?", ns(q.Until))
	}
	if q.BeforeSeq > 0 {
		add("seq < ?", q.BeforeSeq)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = audit.DefaultQueryLimit
	}
	limit = min(limit, audit.MaxQueryLimit)
	query := `SELECT seq, id, time_ns, type, principal, roles, session, request_id, remote_addr, tool, server,
		args_digest, args, decision, reason, status, duration_ns, result_digest, error, detail FROM audit_events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY seq DESC LIMIT ?"
	args = append(args, limit)
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit query: %w", err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		var t, dur int64
		var typ, roles, args, rc string
		if err := rows.Scan(&e.Seq, &e.ID, &t, &typ, &e.Principal, &roles, &e.Session, &e.RequestID,
			&e.RemoteAddr, &e.Tool, &e.Server, &e.ArgsDigest, &args, &e.Decision, &rc, &e.Status,
			&dur, &e.ResultDigest, &e.Error, &e.Detail); err != nil {
			return nil, fmt.Errorf("sqlite: audit scan: %w", err)
		}
		e.Time = fromNS(t)
		e.Type = audit.Type(typ)
		e.Roles = splitRoles(roles)
		if args != "" {
			e.Args = []byte(args)
		}
		e.Reason = reason.Code(rc)
		e.Duration = time.Duration(dur)
		out = append(out, e)
	}
	return out, rows.Err()
}
