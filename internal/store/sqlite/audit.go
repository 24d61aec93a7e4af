package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
)

const insertAudit = `INSERT INTO audit_events (
	seq, id, time_ns, type, principal, roles, session, request_id, remote_addr, tool, server,
	args_digest, args, decision, reason, status, duration_ns, result_digest, error, detail, prev_hash, hash, chain
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

const auditColumns = `seq, id, time_ns, type, principal, roles, session, request_id, remote_addr, tool, server,
	args_digest, args, decision, reason, status, duration_ns, result_digest, error, detail, prev_hash, hash, chain`

// AppendAudit implements audit.Backend: in one IMMEDIATE transaction on the
// writer connection (synchronous=FULL, so the commit is durable when it
// returns) it reads the log's newest sequence number and the head of
// chain.ID()'s chain, seals each event onto them with chain and inserts it.
// Reading both inside the write transaction keeps sequence numbers in
// commit order and each chain linear even if another process appends to
// the same file (with its own chain id or the same one). Stored
// rows are never rewritten: rows without a seal (written before the chain
// existed, or blanked by someone) stay unsealed and the chain continues
// from the newest sealed row, so the key can never be made to seal what
// someone else wrote. On error nothing is stored, and the events' Seq and
// hashes must be ignored.
func (db *DB) AppendAudit(ctx context.Context, chain *audit.Chain, events []*audit.Event) (err error) {
	if chain == nil {
		return errors.New("sqlite: audit append without a chain")
	}
	defer func() {
		if err != nil { // rolled back: no event got a place in the chain
			for _, e := range events {
				e.Seq, e.PrevHash, e.Hash = 0, "", ""
			}
		}
	}()
	st, err := db.auditStatements(ctx)
	if err != nil {
		return err
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: audit begin: %w", err)
	}
	defer tx.Rollback()
	last, head, err := auditHead(ctx, tx.StmtContext(ctx, st.last), tx.StmtContext(ctx, st.head), chain.ID())
	if err != nil {
		return err
	}
	stmt := tx.StmtContext(ctx, st.insert) // closed with the transaction
	for _, e := range events {
		e.Roles = store.SplitRoles(store.JoinRoles(e.Roles)) // seal the roles as stored: sorted
		if err := chain.SealAt(e, last, head); err != nil {
			return err
		}
		if _, err := stmt.ExecContext(ctx, auditValues(e)...); err != nil {
			return fmt.Errorf("sqlite: audit insert: %w", err)
		}
		head = audit.Head{Seq: e.Seq, Hash: e.Hash}
		last = head
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: audit commit: %w", err)
	}
	return nil
}

func auditValues(e *audit.Event) []any {
	return []any{e.Seq, e.ID, ns(e.Time), string(e.Type), e.Principal, strings.Join(e.Roles, ","), e.Session, e.RequestID,
		e.RemoteAddr, e.Tool, e.Server, e.ArgsDigest, string(e.Args), e.Decision, string(e.Reason),
		e.Status, int64(e.Duration), e.ResultDigest, e.Error, e.Detail, e.PrevHash, e.Hash, e.Chain}
}

// auditStmts are the prepared statements of AppendAudit.
type auditStmts struct {
	last, head, insert *sql.Stmt
}

// auditStatements prepares the append's statements once on the writer
// connection; a transaction uses them through tx.StmtContext without
// parsing them again.
func (db *DB) auditStatements(ctx context.Context) (auditStmts, error) {
	db.stmtOnce.Do(func() {
		ctx := context.WithoutCancel(ctx)
		if db.stmts.last, db.stmtErr = db.w.PrepareContext(ctx, selectAuditLast); db.stmtErr != nil {
			return
		}
		if db.stmts.head, db.stmtErr = db.w.PrepareContext(ctx, selectAuditHead); db.stmtErr != nil {
			return
		}
		db.stmts.insert, db.stmtErr = db.w.PrepareContext(ctx, insertAudit)
	})
	if db.stmtErr != nil {
		return auditStmts{}, fmt.Errorf("sqlite: audit prepare: %w", db.stmtErr)
	}
	return db.stmts, nil
}

// selectAuditLast reads the log's newest record (of any chain, sealed or
// not); selectAuditHead the head of one chain: its newest sealed record
// (an unsealed one, written before the chain existed or blanked by
// someone, is skipped; Verify reports it).
const (
	selectAuditLast = `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`
	selectAuditHead = `SELECT seq, hash FROM audit_events WHERE chain = ? AND hash != '' ORDER BY seq DESC LIMIT 1`
)

// auditHead returns, read inside the transaction, the log's newest record
// (Head{} for an empty log) and the head of chain id (the genesis head
// when the chain has no sealed record yet). last and head are the
// prepared selectAuditLast and selectAuditHead bound to the transaction.
func auditHead(ctx context.Context, last, head *sql.Stmt, id string) (audit.Head, audit.Head, error) {
	var l audit.Head
	if err := last.QueryRowContext(ctx).Scan(&l.Seq, &l.Hash); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return l, l, fmt.Errorf("sqlite: audit head: %w", err)
	}
	h := audit.Head{Hash: audit.GenesisHash}
	err := head.QueryRowContext(ctx, id).Scan(&h.Seq, &h.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return l, h, fmt.Errorf("sqlite: audit head: %w", err)
	}
	return l, h, nil
}

// QueryAudit implements store.Store.
func (db *DB) QueryAudit(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	for _, f := range []struct{ col, v string }{
		{"principal", q.Principal}, {"tool", q.Tool}, {"server", q.Server}, {"type", string(q.Type)},
		{"status", q.Status}, {"decision", q.Decision}, {"request_id", q.RequestID}, {"session", q.Session},
		{"chain", q.Chain},
	} {
		if f.v != "" {
			add(f.col+" = ?", f.v)
		}
	}
	if q.Role != "" {
		add("instr(',' || roles || ',', ',' || ? || ',') > 0", q.Role)
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
	if q.AfterSeq > 0 {
		add("seq > ?", q.AfterSeq)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = audit.DefaultQueryLimit
	}
	limit = min(limit, audit.MaxQueryLimit)
	query := `SELECT ` + auditColumns + ` FROM audit_events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	if q.Ascending {
		query += " ORDER BY seq ASC LIMIT ?"
	} else {
		query += " ORDER BY seq DESC LIMIT ?"
	}
	args = append(args, limit)
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit query: %w", err)
	}
	return scanEvents(rows)
}

func scanEvents(rows *sql.Rows) ([]audit.Event, error) {
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		var t, dur int64
		var typ, roles, args, rc string
		if err := rows.Scan(&e.Seq, &e.ID, &t, &typ, &e.Principal, &roles, &e.Session, &e.RequestID,
			&e.RemoteAddr, &e.Tool, &e.Server, &e.ArgsDigest, &args, &e.Decision, &rc, &e.Status,
			&dur, &e.ResultDigest, &e.Error, &e.Detail, &e.PrevHash, &e.Hash, &e.Chain); err != nil {
			return nil, fmt.Errorf("sqlite: audit scan: %w", err)
		}
		e.Time = fromNS(t)
		e.Type = audit.Type(typ)
		e.Roles = store.SplitRoles(roles)
		if args != "" {
			e.Args = []byte(args)
		}
		e.Reason = reason.Code(rc)
		e.Duration = time.Duration(dur)
		out = append(out, e)
	}
	return out, rows.Err()
}

// PruneAudit implements store.Store: it deletes every record with
// sequence <= throughSeq in one transaction and returns how many.
func (db *DB) PruneAudit(ctx context.Context, throughSeq int64) (int64, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM audit_events WHERE seq <= ?`, throughSeq)
	if err != nil {
		return 0, fmt.Errorf("sqlite: audit prune: %w", err)
	}
	return res.RowsAffected()
}

// AuditCursor implements store.Store: the last sequence the named sink
// acknowledged, 0 if it never did.
func (db *DB) AuditCursor(ctx context.Context, name string) (int64, error) {
	var seq int64
	err := db.r.QueryRowContext(ctx, `SELECT seq FROM audit_cursors WHERE name = ?`, name).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: audit cursor: %w", err)
	}
	return seq, nil
}

// SetAuditCursor implements store.Store.
func (db *DB) SetAuditCursor(ctx context.Context, name string, seq int64) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO audit_cursors (name, seq, updated_ns) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_ns = excluded.updated_ns`,
		name, seq, ns(db.now()))
	if err != nil {
		return fmt.Errorf("sqlite: audit cursor: %w", err)
	}
	return nil
}

// ProbeWrite implements audit.Backend: one durable write (a single row
// rewritten and committed), so that readiness can tell when a store that
// failed (full disk, read-only file system) takes writes again.
func (db *DB) ProbeWrite(ctx context.Context) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO write_probe (id, ns) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET ns = excluded.ns`, ns(db.now()))
	if err != nil {
		return fmt.Errorf("sqlite: write probe: %w", err)
	}
	return nil
}

// Backup implements store.Store: an online, transactionally consistent
// copy of the whole database into a new file at path (VACUUM INTO), taken
// while the gateway keeps writing. The file is created first with mode
// 0600 (VACUUM INTO fills an empty file and keeps its mode), so the copy
// is never readable by others; an existing path is ErrConflict. On error
// the file is removed.
func (db *DB) Backup(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %s exists", store.ErrConflict, path)
	}
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	f.Close()
	// On a connection of its own: the copy is one read transaction, the
	// writer connection (audit appends) is not held while it runs, and
	// the query-only read pool refuses VACUUM.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	c, err := sql.Open("sqlite", "file:"+(&url.URL{Path: db.path}).EscapedPath()+"?"+q.Encode())
	if err == nil {
		_, err = c.ExecContext(ctx, `VACUUM INTO ?`, path)
		c.Close()
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	return nil
}
