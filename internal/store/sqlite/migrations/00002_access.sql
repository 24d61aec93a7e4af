-- +goose Up
-- Issue 4: key scopes and rotation, and a change counter that every
-- identity or permission change bumps (triggers), so that every process on
-- this database notices changes (decision caches, grants) by polling one row.

ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]'; -- JSON array of tool patterns
ALTER TABLE api_keys ADD COLUMN rotated_from TEXT NOT NULL DEFAULT '';

CREATE TABLE access_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
) STRICT;
INSERT INTO access_version (id, version) VALUES (1, 1);

-- +goose StatementBegin
CREATE TRIGGER users_changed AFTER UPDATE ON users BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER users_deleted AFTER DELETE ON users BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER user_roles_added AFTER INSERT ON user_roles BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER user_roles_removed AFTER DELETE ON user_roles BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER roles_added AFTER INSERT ON roles BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER roles_removed AFTER DELETE ON roles BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER grants_added AFTER INSERT ON role_permissions BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER grants_changed AFTER UPDATE ON role_permissions BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER grants_removed AFTER DELETE ON role_permissions BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER keys_changed AFTER UPDATE ON api_keys BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER keys_changed;
DROP TRIGGER grants_removed;
DROP TRIGGER grants_changed;
DROP TRIGGER grants_added;
DROP TRIGGER roles_removed;
DROP TRIGGER roles_added;
DROP TRIGGER user_roles_removed;
DROP TRIGGER user_roles_added;
DROP TRIGGER users_deleted;
DROP TRIGGER users_changed;
DROP TABLE access_version;
ALTER TABLE api_keys DROP COLUMN rotated_from;
ALTER TABLE api_keys DROP COLUMN scopes;
