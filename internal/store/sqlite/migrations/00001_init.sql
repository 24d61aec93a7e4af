-- +goose Up
-- Schema after the seed's design (seed 000): users, roles, permissions,
-- role_permissions, sessions, audit events; plus user_roles (several roles
-- per user) and api_keys (stored only as keyed HMAC digests).

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    disabled   INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_ns INTEGER NOT NULL
) STRICT;

CREATE TABLE roles (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE permissions (
    id      INTEGER PRIMARY KEY,
    action  TEXT NOT NULL CHECK (action IN ('call', 'admin', 'approve')),
    pattern TEXT NOT NULL,
    UNIQUE (action, pattern)
) STRICT;

CREATE TABLE role_permissions (
    role_id       INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission_id INTEGER NOT NULL REFERENCES permissions (id) ON DELETE CASCADE,
    effect        TEXT    NOT NULL DEFAULT 'allow' CHECK (effect IN ('allow', 'deny')),
    PRIMARY KEY (role_id, permission_id)
) STRICT;

CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
) STRICT;

CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash         BLOB    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    roles        TEXT    NOT NULL, -- JSON array of role names
    created_ns   INTEGER NOT NULL,
    expires_ns   INTEGER,
    revoked_ns   INTEGER,
    last_used_ns INTEGER
) STRICT;

CREATE TABLE sessions (
    id               TEXT    PRIMARY KEY,
    principal        TEXT    NOT NULL,
    protocol_version TEXT    NOT NULL DEFAULT '',
    client_name      TEXT    NOT NULL DEFAULT '',
    created_ns       INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    time_ns       INTEGER NOT NULL,
    type          TEXT    NOT NULL,
    principal     TEXT    NOT NULL DEFAULT '',
    roles         TEXT    NOT NULL DEFAULT '', -- comma-separated
    session       TEXT    NOT NULL DEFAULT '',
    request_id    TEXT    NOT NULL DEFAULT '',
    remote_addr   TEXT    NOT NULL DEFAULT '',
    tool          TEXT    NOT NULL DEFAULT '',
    server        TEXT    NOT NULL DEFAULT '',
    args_digest   TEXT    NOT NULL DEFAULT '',
    args          TEXT    NOT NULL DEFAULT '',
    decision      TEXT    NOT NULL DEFAULT '',
    reason        TEXT    NOT NULL DEFAULT '',
    status        TEXT    NOT NULL DEFAULT '',
    duration_ns   INTEGER NOT NULL DEFAULT 0,
    result_digest TEXT    NOT NULL DEFAULT '',
    error         TEXT    NOT NULL DEFAULT '',
    detail        TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX audit_events_time ON audit_events (time_ns);
CREATE INDEX audit_events_principal ON audit_events (principal, seq);
CREATE INDEX audit_events_tool ON audit_events (tool, seq);
CREATE INDEX audit_events_type ON audit_events (type, seq);
CREATE INDEX audit_events_request ON audit_events (request_id);

-- Default roles (DESIGN §2).
INSERT INTO roles (name, description) VALUES
    ('guest', 'read-only file tools'),
    ('developer', 'file tools, code execution, network and git tools'),
    ('admin', 'everything without approval; approves requests; admin API');

INSERT INTO permissions (action, pattern) VALUES
    ('call', 'list_directory'),
    ('call', 'read_file'),
    ('call', 'search_files'),
    ('call', 'file_info'),
    ('call', 'write_file'),
    ('call', 'edit_file'),
    ('call', 'move_file'),
    ('call', 'delete_file'),
    ('call', 'execute_python'),
    ('call', 'run_command'),
    ('call', 'http_fetch'),
    ('call', 'sql_query'),
    ('call', 'git_status'),
    ('call', 'git_diff'),
    ('call', 'git_log'),
    ('call', '*'),
    ('admin', '*'),
    ('approve', '*');

INSERT INTO role_permissions (role_id, permission_id)
SELECT r.id, p.id FROM roles r, permissions p
WHERE r.name = 'guest' AND p.action = 'call'
  AND p.pattern IN ('list_directory', 'read_file', 'search_files', 'file_info');

INSERT INTO role_permissions (role_id, permission_id)
SELECT r.id, p.id FROM roles r, permissions p
WHERE r.name = 'developer' AND p.action = 'call'
  AND p.pattern IN ('list_directory', 'read_file', 'search_files', 'file_info',
                    'write_file', 'edit_file', 'move_file', 'delete_file',
                    'execute_python', 'run_command', 'http_fetch', 'sql_query',
                    'git_status', 'git_diff', 'git_log');

INSERT INTO role_permissions (role_id, permission_id)
SELECT r.id, p.id FROM roles r, permissions p
WHERE r.name = 'admin' AND p.pattern = '*';

-- +goose Down
DROP TABLE audit_events;
DROP TABLE sessions;
DROP TABLE api_keys;
DROP TABLE user_roles;
DROP TABLE role_permissions;
DROP TABLE permissions;
DROP TABLE roles;
DROP TABLE users;
