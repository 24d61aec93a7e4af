-- +goose Up
-- Issue 7: approval requests bound to the exact call (principal, tool,
-- HMAC-SHA256 (keyed, so that arguments holding a password cannot be confirmed by guessing) of the canonical JSON of the validated arguments). States:
-- pending -> approved | denied | expired; approved -> consumed | expired.

CREATE TABLE approvals (
    id            TEXT    PRIMARY KEY,
    principal     TEXT    NOT NULL,
    tool          TEXT    NOT NULL,
    args_sha256   TEXT    NOT NULL,
    args          TEXT    NOT NULL DEFAULT '', -- redacted, for the approver
    justification TEXT    NOT NULL DEFAULT '',
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'consumed')),
    created_ns    INTEGER NOT NULL,
    expires_ns    INTEGER NOT NULL,
    decided_by    TEXT    NOT NULL DEFAULT '',
    decided_ns    INTEGER,
    comment       TEXT    NOT NULL DEFAULT '',
    consumed_ns   INTEGER,
    request_id    TEXT    NOT NULL DEFAULT '',
    session       TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX approvals_call ON approvals (principal, tool, args_sha256, state);
CREATE INDEX approvals_state ON approvals (state, expires_ns);
-- One pending request per exact call: identical calls racing to create one
-- must not open several (each would be approvable, and run, once).
CREATE UNIQUE INDEX approvals_pending ON approvals (principal, tool, args_sha256) WHERE state = 'pending';

-- DESIGN §2: developers may commit, but only with an approval (git_commit is
-- CRITICAL; admins are exempt).
INSERT OR IGNORE INTO permissions (action, pattern) VALUES ('call', 'git_commit');
INSERT OR IGNORE INTO role_permissions (role_id, permission_id)
SELECT r.id, p.id FROM roles r, permissions p
WHERE r.name = 'developer' AND p.action = 'call' AND p.pattern = 'git_commit';

-- +goose Down
DROP TABLE approvals;
