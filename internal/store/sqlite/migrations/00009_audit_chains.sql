-- +goose Up
-- One hash chain per writer (issue 12): chain names the chain a record is
-- sealed into (the writing replica's id; '' is the default chain, which
-- every older record is on). seq stays the global order of the log; a
-- record's prev_hash is the hash of the previous record of its own chain,
-- which the append finds through this index.
ALTER TABLE audit_events ADD COLUMN chain TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_events_chain ON audit_events (chain, seq);

-- +goose Down
DROP INDEX audit_events_chain;
ALTER TABLE audit_events DROP COLUMN chain;
