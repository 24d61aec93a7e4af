-- +goose Up
-- Encrypted secrets for upstream servers and tool pins of upstream MCP
-- servers (SQLite migrations 00006 and 00007).

-- Values are AES-256-GCM ciphertexts (the key stays in the data dir; name
-- and user are authenticated data). user_name '' is the shared value.
CREATE TABLE secrets (
    name       text   COLLATE "C" NOT NULL,
    user_name  text   COLLATE "C" NOT NULL DEFAULT '',
    nonce      bytea  NOT NULL,
    ciphertext bytea  NOT NULL,
    created_ns bigint NOT NULL,
    updated_ns bigint NOT NULL,
    PRIMARY KEY (name, user_name)
);

-- One row per (server, tool): the accepted definition (canonical JSON and
-- its "sha256:<hex>" fingerprint; '' until one is accepted) and, while
-- status is 'pending', the definition awaiting an admin. Findings are JSON
-- arrays of the poisoning scan. accepted_by '' with an accepted_ns is
-- trust on first use; accepted_ns NULL, never accepted.
CREATE TABLE plugin_pins (
    server             text   COLLATE "C" NOT NULL,
    tool               text   COLLATE "C" NOT NULL,
    status             text   NOT NULL CHECK (status IN ('accepted', 'pending')),
    hash               text   NOT NULL DEFAULT '',
    definition         text   NOT NULL DEFAULT '',
    findings           text   NOT NULL DEFAULT '[]' CHECK ((findings::json) IS NOT NULL),
    pending_hash       text   NOT NULL DEFAULT '',
    pending_definition text   NOT NULL DEFAULT '',
    pending_findings   text   NOT NULL DEFAULT '[]' CHECK ((pending_findings::json) IS NOT NULL),
    first_seen_ns      bigint NOT NULL,
    updated_ns         bigint NOT NULL,
    accepted_by        text   NOT NULL DEFAULT '',
    accepted_ns        bigint,
    PRIMARY KEY (server, tool),
    CHECK ((status = 'pending') = (pending_hash <> '')),
    CHECK (status = 'pending' OR hash <> '')
);

-- +goose Down
DROP TABLE plugin_pins;
DROP TABLE secrets;
