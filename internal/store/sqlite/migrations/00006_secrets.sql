-- +goose Up
-- Issue 9: secrets for upstream servers, encrypted at rest (AES-256-GCM
-- with a key in the data dir; the name and user are authenticated data,
-- so a ciphertext cannot be moved to another name). Values are never
-- stored, logged or audited in clear.

CREATE TABLE secrets (
    name       TEXT    NOT NULL,
    user       TEXT    NOT NULL DEFAULT '', -- '' is the shared secret
    nonce      BLOB    NOT NULL,
    ciphertext BLOB    NOT NULL,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (name, user)
) STRICT;

-- +goose Down
DROP TABLE secrets;
