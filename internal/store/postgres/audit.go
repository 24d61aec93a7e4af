package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
)

// auditLockKey is the transaction advisory lock that serializes appends to
// the log across every connection and replica ("pcl_audt"), so that
// sequence numbers are assigned in commit order.
const auditLockKey int64 = 0x7063_6c5f_6175_6474

const auditColumns = `seq, id, time_ns, type, principal, roles, session, request_id, remote_addr, tool, server,
	args_digest, args, decision, reason, status, duration_ns, result_digest, error, detail, prev_hash, hash, chain`

// insertAudit inserts a batch as one statement from parallel arrays (one
// round trip, one prepared statement whatever the batch size).
const insertAudit = `INSERT INTO audit_events (` + auditColumns + `)
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
		$16::text[], $17::bigint[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[])`

// AppendAudit implements audit.Backend. In one transaction it takes the
// log's advisory lock (pg_advisory_xact_lock, released at commit), reads
// the newest sequence number and the head of chain.ID()'s chain (the
// replica's own), seals each event onto them with chain and inserts them
// all in one statement, then commits; the commit is durable when it
// returns (synchronous_commit is at least on). Holding the lock while
// reading keeps the sequence in commit order across every replica, which
// the readers that follow the log rely on, and each chain linear even when
// two replicas share an id.
//
// As in the SQLite backend, stored rows are never rewritten: the chain
// continues from the newest sealed row, and roles are stored (and sealed)
// sorted. Text PostgreSQL cannot hold (a NUL byte, invalid UTF-8, which a
// client can put in a tool name or header) is stored, and sealed, with
// U+FFFD in its place, so that one such record cannot fail the whole
// group commit of everyone's records. On error nothing is stored, and the
// events' Seq and hashes are reset.
func (db *DB) AppendAudit(ctx context.Context, chain *audit.Chain, events []*audit.Event) (err error) {
	if chain == nil {
		return errors.New("postgres: audit append without a chain")
	}
	defer func() {
		if err != nil { // rolled back: no event got a place in the chain
			for _, e := range events {
				e.Seq, e.PrevHash, e.Hash = 0, "", ""
			}
		}
	}()
	if len(events) == 0 {
		return nil
	}
	// Read committed, whatever the server's default: the heads must be
	// read after the lock is granted, not from a snapshot taken before.
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return wrap("audit begin", err)
	}
	defer rollback(ctx, tx)
	last, head, err := auditHead(ctx, tx, chain.ID())
	if err != nil {
		return err
	}
	cols := newAuditBatch(len(events))
	for _, e := range events {
		cleanEvent(e)
		if err := chain.SealAt(e, last, head); err != nil {
			return err
		}
		cols.add(e)
		head = audit.Head{Seq: e.Seq, Hash: e.Hash}
		last = head
	}
	if _, err := tx.Exec(ctx, insertAudit, cols.args()...); err != nil {
		return wrap("audit insert", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap("audit commit", err)
	}
	return nil
}

// auditHead takes the log's lock and returns the log's newest record (of
// any chain; Head{} for an empty log) and the head of chain id: its newest
// sealed record (an unsealed one is skipped; Verify reports it), or the
// genesis head. Lock and reads go in one round trip; the reads run after
// the lock is granted, so they see every earlier append.
func auditHead(ctx context.Context, tx pgx.Tx, id string) (audit.Head, audit.Head, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, auditLockKey)
	b.Queue(`SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`)
	b.Queue(`SELECT seq, hash FROM audit_events WHERE chain = $1 AND hash <> '' ORDER BY seq DESC LIMIT 1`, id)
	br := tx.SendBatch(ctx, b)
	var last audit.Head
	h := audit.Head{Hash: audit.GenesisHash}
	_, err := br.Exec()
	if err == nil {
		if err = br.QueryRow().Scan(&last.Seq, &last.Hash); errors.Is(err, pgx.ErrNoRows) {
			err = nil
		}
	}
	if err == nil {
		if err = br.QueryRow().Scan(&h.Seq, &h.Hash); errors.Is(err, pgx.ErrNoRows) {
			err = nil
		}
	}
	if cerr := br.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return last, h, wrap("audit head", err)
	}
	return last, h, nil
}

// cleanEvent makes e's text storable before it is sealed, and its roles
// sorted as stored.
func cleanEvent(e *audit.Event) {
	for _, s := range []*string{&e.ID, &e.Principal, &e.Session, &e.RequestID, &e.RemoteAddr, &e.Tool, &e.Server,
		&e.ArgsDigest, &e.Decision, &e.Status, &e.ResultDigest, &e.Error, &e.Detail} { // (Chain: SealAt sets it)
		*s = storable(*s)
	}
	e.Type = audit.Type(storable(string(e.Type)))
	e.Reason = reason.Code(storable(string(e.Reason)))
	if a := string(e.Args); a != "" {
		if c := storable(a); c != a {
			e.Args = []byte(c)
		}
	}
	roles := make([]string, len(e.Roles))
	for i, r := range e.Roles {
		roles[i] = storable(r)
	}
	e.Roles = store.SplitRoles(store.JoinRoles(roles))
}

// auditBatch holds a batch as the parallel arrays of insertAudit.
type auditBatch struct {
	seq, timeNS, duration []int64
	text                  [20][]string // the text columns, in auditColumns order
}

func newAuditBatch(n int) *auditBatch {
	b := &auditBatch{seq: make([]int64, 0, n), timeNS: make([]int64, 0, n), duration: make([]int64, 0, n)}
	for i := range b.text {
		b.text[i] = make([]string, 0, n)
	}
	return b
}

func (b *auditBatch) add(e *audit.Event) {
	b.seq = append(b.seq, e.Seq)
	b.timeNS = append(b.timeNS, ns(e.Time))
	b.duration = append(b.duration, int64(e.Duration))
	for i, s := range [20]string{e.ID, string(e.Type), e.Principal, strings.Join(e.Roles, ","), e.Session, e.RequestID,
		e.RemoteAddr, e.Tool, e.Server, e.ArgsDigest, string(e.Args), e.Decision, string(e.Reason), e.Status,
		e.ResultDigest, e.Error, e.Detail, e.PrevHash, e.Hash, e.Chain} {
		b.text[i] = append(b.text[i], s)
	}
}

// args returns insertAudit's parameters $1..$23.
func (b *auditBatch) args() []any {
	t := b.text
	return []any{b.seq, t[0], b.timeNS, t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12],
		t[13], b.duration, t[14], t[15], t[16], t[17], t[18], t[19]}
}

// QueryAudit implements store.Store: every filter of audit.Query, newest
// first unless Ascending, at most Limit (default audit.DefaultQueryLimit,
// capped at audit.MaxQueryLimit) records.
func (db *DB) QueryAudit(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	var args []any
	where := []string{"true"}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	for _, f := range []struct{ col, v string }{
		{"principal", q.Principal}, {"tool", q.Tool}, {"server", q.Server}, {"type", string(q.Type)},
		{"status", q.Status}, {"decision", q.Decision}, {"request_id", q.RequestID}, {"session", q.Session},
		{"chain", q.Chain},
	} {
		if f.v != "" {
			add(f.col+" = $%d", f.v)
		}
	}
	if q.Role != "" {
		// A whole name of the comma-separated list, never a pattern.
		add("strpos(',' || roles || ',', ',' || $%d || ',') > 0", q.Role)
	}
	if !q.Since.IsZero() {
		add("time_ns >= $%d", ns(q.Since))
	}
	if !q.Until.IsZero() {
		add("time_ns < $%d", ns(q.Until))
	}
	if q.BeforeSeq > 0 {
		add("seq < $%d", q.BeforeSeq)
	}
	if q.AfterSeq > 0 {
		add("seq > $%d", q.AfterSeq)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = audit.DefaultQueryLimit
	}
	limit = min(limit, audit.MaxQueryLimit)
	order := "DESC"
	if q.Ascending {
		order = "ASC"
	}
	args = append(args, limit)
	query := fmt.Sprintf(`SELECT %s FROM audit_events WHERE %s ORDER BY seq %s LIMIT $%d`,
		auditColumns, strings.Join(where, " AND "), order, len(args))
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap("audit query", err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		var t, dur int64
		var typ, roles, eargs, rc string
		if err := rows.Scan(&e.Seq, &e.ID, &t, &typ, &e.Principal, &roles, &e.Session, &e.RequestID,
			&e.RemoteAddr, &e.Tool, &e.Server, &e.ArgsDigest, &eargs, &e.Decision, &rc, &e.Status,
			&dur, &e.ResultDigest, &e.Error, &e.Detail, &e.PrevHash, &e.Hash, &e.Chain); err != nil {
			return nil, wrap("audit scan", err)
		}
		e.Time = fromNS(t)
		e.Type = audit.Type(typ)
		e.Roles = store.SplitRoles(roles)
		if eargs != "" {
			e.Args = []byte(eargs)
		}
		e.Reason = reason.Code(rc)
		e.Duration = time.Duration(dur)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("audit query", err)
	}
	return out, nil
}

// PruneAudit implements store.Store: it deletes every record with
// sequence <= throughSeq in one statement and returns how many.
func (db *DB) PruneAudit(ctx context.Context, throughSeq int64) (int64, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM audit_events WHERE seq <= $1`, throughSeq)
	if err != nil {
		return 0, wrap("audit prune", err)
	}
	return tag.RowsAffected(), nil
}

// AuditCursor implements store.Store: the last sequence the named sink
// acknowledged, 0 if it never did.
func (db *DB) AuditCursor(ctx context.Context, name string) (int64, error) {
	var seq int64
	err := db.pool.QueryRow(ctx, `SELECT seq FROM audit_cursors WHERE name = $1`, name).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, wrap("audit cursor", err)
	}
	return seq, nil
}

// SetAuditCursor implements store.Store.
func (db *DB) SetAuditCursor(ctx context.Context, name string, seq int64) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO audit_cursors (name, seq, updated_ns) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_ns = excluded.updated_ns`,
		name, seq, ns(db.now()))
	if err != nil {
		return wrap("audit cursor", err)
	}
	return nil
}

// ProbeWrite implements audit.Backend: one durable write (a single row
// rewritten and committed), so that readiness can tell when a store that
// failed (server down, disk full, failover to a read-only standby) takes
// writes again.
func (db *DB) ProbeWrite(ctx context.Context) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO write_probe (id, ns) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET ns = excluded.ns`, ns(db.now()))
	if err != nil {
		return wrap("write probe", err)
	}
	return nil
}
