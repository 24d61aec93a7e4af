-- +goose Up
-- Violations, quarantines and daily usage (SQLite migration 00004).
-- Quarantine changes bump access_version so that every replica reloads them.

CREATE TABLE violations (
    id         text     COLLATE "C" PRIMARY KEY,
    time_ns    bigint   NOT NULL,
    principal  text     NOT NULL DEFAULT '',
    session    text     NOT NULL DEFAULT '',
    plugin     text     NOT NULL DEFAULT '',
    tool       text     NOT NULL DEFAULT '',
    type       text     NOT NULL,
    severity   smallint NOT NULL CHECK (severity BETWEEN 1 AND 4),
    request_id text     NOT NULL DEFAULT '',
    detail     text     NOT NULL DEFAULT ''
);
CREATE INDEX violations_time ON violations (time_ns);
CREATE INDEX violations_principal ON violations (principal, time_ns);

CREATE TABLE quarantines (
    id             text   COLLATE "C" PRIMARY KEY,
    kind           text   NOT NULL CHECK (kind IN ('principal', 'session', 'plugin')),
    subject        text   NOT NULL,
    reason         text   NOT NULL DEFAULT '',
    created_ns     bigint NOT NULL,
    created_by     text   NOT NULL DEFAULT '',
    released_ns    bigint,
    released_by    text   NOT NULL DEFAULT '',
    release_reason text   NOT NULL DEFAULT ''
);
-- At most one active quarantine per (kind, subject), whichever replica asks.
CREATE UNIQUE INDEX quarantines_active ON quarantines (kind, subject) WHERE released_ns IS NULL;
CREATE INDEX quarantines_subject ON quarantines (subject) WHERE released_ns IS NULL;

CREATE CONSTRAINT TRIGGER quarantines_changed AFTER INSERT OR UPDATE OR DELETE ON quarantines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_access_version();

CREATE TABLE usage (
    principal text   COLLATE "C" NOT NULL,
    day       text   NOT NULL, -- UTC, YYYY-MM-DD
    calls     bigint NOT NULL DEFAULT 0,
    cpu_ms    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (principal, day)
);
CREATE INDEX usage_day ON usage (day, principal);

-- +goose Down
DROP TABLE usage;
DROP TABLE quarantines;
DROP TABLE violations;
