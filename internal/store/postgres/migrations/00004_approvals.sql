-- +goose Up
-- Approval requests bound to the exact call (SQLite migration 00005):
-- principal, tool and the keyed HMAC-SHA256 of the canonical JSON of the
-- validated arguments. States: pending -> approved | denied | expired;
-- approved -> consumed | expired. Transitions are compare-and-set UPDATEs.

CREATE TABLE approvals (
    id            text   COLLATE "C" PRIMARY KEY,
    principal     text   NOT NULL,
    tool          text   NOT NULL,
    args_sha256   text   NOT NULL,
    args          text   NOT NULL DEFAULT '', -- redacted JSON, for the approver
    justification text   NOT NULL DEFAULT '',
    state         text   NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'consumed')),
    created_ns    bigint NOT NULL,
    expires_ns    bigint NOT NULL,
    decided_by    text   NOT NULL DEFAULT '',
    decided_ns    bigint,
    comment       text   NOT NULL DEFAULT '',
    consumed_ns   bigint,
    request_id    text   NOT NULL DEFAULT '',
    session       text   NOT NULL DEFAULT ''
);
CREATE INDEX approvals_call ON approvals (principal, tool, args_sha256, state);
CREATE INDEX approvals_state ON approvals (state, expires_ns);
CREATE INDEX approvals_created ON approvals (created_ns, id);
-- One pending request per exact call: identical calls racing to create one
-- must not open several (each would be approvable, and run, once).
CREATE UNIQUE INDEX approvals_pending ON approvals (principal, tool, args_sha256) WHERE state = 'pending';

-- +goose Down
DROP TABLE approvals;
