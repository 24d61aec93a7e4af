-- +goose Up
-- Creating a user (with or without roles) or an API key is a change of
-- access too: bump the counter so every process reloads (00002 counted
-- only updates and deletes of these tables).
-- +goose StatementBegin
CREATE TRIGGER users_added AFTER INSERT ON users BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER api_keys_added AFTER INSERT ON api_keys BEGIN UPDATE access_version SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER api_keys_added;
DROP TRIGGER users_added;
