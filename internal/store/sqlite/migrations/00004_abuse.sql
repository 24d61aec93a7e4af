-- +goose Up
-- Issue 6: violations (one typed record per misbehaviour), quarantines
-- (active until released; every change also audited), and daily usage
-- for quotas. Quarantine changes bump access_version so that every
-- process sharing the store reloads them.

CREATE TABLE violations (
    id         TEXT    PRIMARY KEY,
    time_ns    INTEGER NOT NULL,
    principal  TEXT    NOT NULL DEFAULT '',
    session    TEXT    NOT NULL DEFAULT '',
    plugin     TEXT    NOT NULL DEFAULT '',
    tool       TEXT    NOT NULL DEFAULT '',
    type       TEXT    NOT NULL,
    severity   INTEGER NOT NULL CHECK (severity BETWEEN 1 AND 4),
    request_id TEXT    NOT NULL DEFAULT '',
    detail     TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX violations_time ON violations (time_ns);
CREATE INDEX violations_principal ON violations (principal, time_ns);

CREATE TABLE quarantines (
    id             TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL CHECK (kind IN ('principal', 'session', 'plugin')),
    subject        TEXT    NOT NULL,
    reason         TEXT    NOT NULL DEFAULT '',
    created_ns     INTEGER NOT NULL,
    created_by     TEXT    NOT NULL DEFAULT '',
    released_ns    INTEGER,
    released_by    TEXT    NOT NULL DEFAULT '',
    release_reason TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE UNIQUE INDEX quarantines_active ON quarantines (kind, subject) WHERE released_ns IS NULL;

-- +goose StatementBegin
CREATE TRIGGER quarantines_added AFTER INSERT ON quarantines BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER quarantines_changed AFTER UPDATE ON quarantines BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd

CREATE TABLE usage (
    principal TEXT    NOT NULL,
    day       TEXT    NOT NULL, -- UTC, YYYY-MM-DD
    calls     INTEGER NOT NULL DEFAULT 0,
    cpu_ms    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (principal, day)
) STRICT;

-- +goose Down
DROP TABLE usage;
DROP TRIGGER quarantines_changed;
DROP TRIGGER quarantines_added;
DROP TABLE quarantines;
DROP TABLE violations;
