-- +goose Up
-- Issue 9: tool pinning of upstream MCP servers (rug-pull defence). One row
-- per (server, tool): the accepted definition (canonical JSON and its
-- "sha256:<hex>" fingerprint; '' until one is accepted) and, while status
-- is 'pending', the definition awaiting an admin. Findings are JSON arrays
-- of the poisoning scan (internal/plugins/pin). accepted_by '' with an
-- accepted_ns is trust on first use; accepted_ns NULL, never accepted.

CREATE TABLE plugin_pins (
    server             TEXT    NOT NULL,
    tool               TEXT    NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('accepted', 'pending')),
    hash               TEXT    NOT NULL DEFAULT '',
    definition         TEXT    NOT NULL DEFAULT '',
    findings           TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(findings)),
    pending_hash       TEXT    NOT NULL DEFAULT '',
    pending_definition TEXT    NOT NULL DEFAULT '',
    pending_findings   TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(pending_findings)),
    first_seen_ns      INTEGER NOT NULL,
    updated_ns         INTEGER NOT NULL,
    accepted_by        TEXT    NOT NULL DEFAULT '',
    accepted_ns        INTEGER,
    PRIMARY KEY (server, tool),
    CHECK ((status = 'pending') = (pending_hash <> '')),
    CHECK (status = 'pending' OR hash <> '')
) STRICT;

-- +goose Down
DROP TABLE plugin_pins;
