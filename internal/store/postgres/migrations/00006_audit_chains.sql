-- +goose Up
-- One hash chain per replica (issue 12): chain (00002) now names the chain
-- a record is sealed into, the writing replica's id ('' is the default
-- chain). seq stays the global order of the whole log, unique across
-- chains and assigned in commit order under the append's advisory lock;
-- readers (verify, export, tail, the forwarding sinks) follow it.
CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);

-- +goose Down
DROP INDEX audit_events_seq;
