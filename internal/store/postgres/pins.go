package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/plugins/pin"
)

var _ pin.Backend = (*DB)(nil)

const pinColumns = `server, tool, status, hash, definition, findings, pending_hash, pending_definition,
	pending_findings, first_seen_ns, updated_ns, accepted_by, accepted_ns`

// PutPin implements pin.Backend (insert or replace the pin of server and
// tool; pin.ErrInvalid, wrapped, for a record failing Record.Validate).
func (db *DB) PutPin(ctx context.Context, r pin.Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	findings, err := pin.MarshalFindings(r.Findings)
	if err != nil {
		return err
	}
	pending, err := pin.MarshalFindings(r.PendingFindings)
	if err != nil {
		return err
	}
	var accepted *int64
	if !r.AcceptedAt.IsZero() {
		v := ns(r.AcceptedAt)
		accepted = &v
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO plugin_pins (`+pinColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (server, tool) DO UPDATE SET status = excluded.status, hash = excluded.hash,
		definition = excluded.definition, findings = excluded.findings, pending_hash = excluded.pending_hash,
		pending_definition = excluded.pending_definition, pending_findings = excluded.pending_findings,
		first_seen_ns = excluded.first_seen_ns, updated_ns = excluded.updated_ns,
		accepted_by = excluded.accepted_by, accepted_ns = excluded.accepted_ns`,
		r.Server, r.Tool, string(r.Status), r.Hash, string(r.Definition), findings, r.PendingHash,
		string(r.PendingDefinition), pending, ns(r.FirstSeen), ns(r.UpdatedAt), r.AcceptedBy, accepted)
	if err != nil {
		return wrap("pin", err)
	}
	return nil
}

// GetPin implements pin.Backend; unknown: pin.ErrNotFound.
func (db *DB) GetPin(ctx context.Context, server, tool string) (pin.Record, error) {
	r, err := scanPin(db.pool.QueryRow(ctx, `SELECT `+pinColumns+` FROM plugin_pins
		WHERE server = $1 AND tool = $2`, server, tool))
	if errors.Is(err, pgx.ErrNoRows) {
		return pin.Record{}, fmt.Errorf("%w: %q/%q", pin.ErrNotFound, server, tool)
	}
	if err != nil {
		return pin.Record{}, wrap("pin", err)
	}
	return r, nil
}

// ListPins implements pin.Backend: the pins of server ("" for all),
// ordered by server then tool (byte order).
func (db *DB) ListPins(ctx context.Context, server string) ([]pin.Record, error) {
	q := `SELECT ` + pinColumns + ` FROM plugin_pins`
	var args []any
	if server != "" {
		q += ` WHERE server = $1`
		args = append(args, server)
	}
	rows, err := db.pool.Query(ctx, q+` ORDER BY server, tool`, args...)
	if err != nil {
		return nil, wrap("pins", err)
	}
	defer rows.Close()
	var out []pin.Record
	for rows.Next() {
		r, err := scanPin(rows)
		if err != nil {
			return nil, wrap("pins", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("pins", err)
	}
	return out, nil
}

func scanPin(row pgx.Row) (pin.Record, error) {
	var r pin.Record
	var status, def, findings, pendingDef, pendingFindings string
	var firstSeen, updated int64
	var accepted *int64
	if err := row.Scan(&r.Server, &r.Tool, &status, &r.Hash, &def, &findings, &r.PendingHash, &pendingDef,
		&pendingFindings, &firstSeen, &updated, &r.AcceptedBy, &accepted); err != nil {
		return r, err
	}
	r.Status = pin.Status(status)
	if def != "" {
		r.Definition = json.RawMessage(def)
	}
	if pendingDef != "" {
		r.PendingDefinition = json.RawMessage(pendingDef)
	}
	var err error
	if r.Findings, err = pin.ParseFindings(findings); err != nil {
		return r, err
	}
	if r.PendingFindings, err = pin.ParseFindings(pendingFindings); err != nil {
		return r, err
	}
	r.FirstSeen, r.UpdatedAt = fromNS(firstSeen), fromNS(updated)
	if accepted != nil {
		r.AcceptedAt = fromNS(*accepted)
	}
	return r, nil
}
