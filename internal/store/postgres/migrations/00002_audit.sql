-- +goose Up
-- The audit log (SQLite migrations 00001 and 00003): one row per record,
-- sealed into a hash chain (hash = HMAC-SHA256(key, prev_hash || canonical
-- row)); appends serialize on a transaction-level advisory lock and read
-- the log's head and their chain's head under it.
--
-- chain names the hash chain a record belongs to: the writing replica's
-- id, '' for the default chain (00006 made seq unique across chains).

CREATE TABLE audit_events (
    chain         text   COLLATE "C" NOT NULL DEFAULT '',
    seq           bigint NOT NULL CHECK (seq > 0),
    id            text   NOT NULL UNIQUE,
    time_ns       bigint NOT NULL,
    type          text   NOT NULL,
    principal     text   NOT NULL DEFAULT '',
    roles         text   NOT NULL DEFAULT '', -- comma-separated, sorted
    session       text   NOT NULL DEFAULT '',
    request_id    text   NOT NULL DEFAULT '',
    remote_addr   text   NOT NULL DEFAULT '',
    tool          text   NOT NULL DEFAULT '',
    server        text   NOT NULL DEFAULT '',
    args_digest   text   NOT NULL DEFAULT '',
    args          text   NOT NULL DEFAULT '', -- redacted JSON, byte for byte
    decision      text   NOT NULL DEFAULT '',
    reason        text   NOT NULL DEFAULT '',
    status        text   NOT NULL DEFAULT '',
    duration_ns   bigint NOT NULL DEFAULT 0,
    result_digest text   NOT NULL DEFAULT '',
    error         text   NOT NULL DEFAULT '',
    detail        text   NOT NULL DEFAULT '',
    prev_hash     text   NOT NULL DEFAULT '',
    hash          text   NOT NULL DEFAULT '',
    PRIMARY KEY (chain, seq)
);

-- Every index costs each group commit: the plugin and request indexes are
-- partial (built-in tools have no server; gateway records no request id),
-- and status is filtered together with an indexed column.
CREATE INDEX audit_events_time ON audit_events (time_ns);
CREATE INDEX audit_events_principal ON audit_events (principal, seq);
CREATE INDEX audit_events_tool ON audit_events (tool, seq);
CREATE INDEX audit_events_type ON audit_events (type, seq);
CREATE INDEX audit_events_server ON audit_events (server, seq) WHERE server <> '';
CREATE INDEX audit_events_request ON audit_events (request_id) WHERE request_id <> '';

-- How far each forwarding sink has shipped, so a failing sink resumes
-- from the store and never costs a record.
CREATE TABLE audit_cursors (
    name       text   PRIMARY KEY,
    seq        bigint NOT NULL,
    updated_ns bigint NOT NULL
);

-- One row that readiness probes rewrite to prove the store takes durable
-- writes again after a fault.
CREATE TABLE write_probe (
    id integer PRIMARY KEY CHECK (id = 1),
    ns bigint  NOT NULL
);

-- +goose Down
DROP TABLE write_probe;
DROP TABLE audit_cursors;
DROP TABLE audit_events;
