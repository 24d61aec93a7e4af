-- +goose Up
-- Issue 5: the audit hash chain (hash = HMAC-SHA256(key, prev_hash ||
-- canonical row)), indexes for the new query filters, and the cursors of
-- forwarding sinks (how far each has shipped, so a failing sink resumes
-- from the store and never costs a record). Rows written before this
-- migration keep empty hashes (never sealed afterwards: sealing what is
-- already stored would let a tamperer have the key seal an edit); `audit
-- verify --accept-unsealed-prefix` accepts them as an unverifiable prefix.

ALTER TABLE audit_events ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_events ADD COLUMN hash TEXT NOT NULL DEFAULT '';

-- Every index costs each group commit dirty pages: plugin and request
-- indexes are partial (built-in tools have no server; gateway records no
-- request id), and status is filtered together with an indexed column.
CREATE INDEX audit_events_server ON audit_events (server, seq) WHERE server != '';
DROP INDEX audit_events_request;
CREATE INDEX audit_events_request ON audit_events (request_id) WHERE request_id != '';

CREATE TABLE audit_cursors (
    name       TEXT    PRIMARY KEY,
    seq        INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
) STRICT;

-- One row that readiness probes rewrite to prove the store takes durable
-- writes again after a fault (full disk, read-only file system).
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ns INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE write_probe;
DROP TABLE audit_cursors;
DROP INDEX audit_events_request;
CREATE INDEX audit_events_request ON audit_events (request_id);
DROP INDEX audit_events_server;
ALTER TABLE audit_events DROP COLUMN hash;
ALTER TABLE audit_events DROP COLUMN prev_hash;
