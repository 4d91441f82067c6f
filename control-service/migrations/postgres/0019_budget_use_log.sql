-- Which budgets' use changed, batch by batch: a state poll's delta reads
-- them from here (budget_use_log), no longer from a sequence stamped on
-- each period's use. That stamp was indexed, so every bump of a budget's
-- use wrote a new row version and three index entries; without an indexed
-- column changing, the bump is a heap-only update in the room migration
-- 0018 left. With a budget on each of 10,000 keys (the ingest_bench
-- example, 100,000 records, 2 cores) ingest went from 43-44k to 47-49k
-- records/s in five runs; the bump statement from 5.5 to 2.2 ms.
-- One row per ingest batch that added to any budget: its sequence, when,
-- and the scopes as a JSON array of [scope_type, scope_id]. The log keeps
-- the changes after budget_use_log_from.seq (older rows are pruned); a
-- cursor from before that gets the whole state. Starts at the current
-- sequence: a cursor from before this migration gets the whole state once.
-- (budget_usage.changed_seq stays, no longer written, so that a replica
-- not yet upgraded still runs; during such a rolling upgrade the old
-- replicas neither write nor read this log, so a use change they count
-- reaches Envoys polling the new ones with that scope's next logged
-- change or the next full state, and the reverse.)
DROP INDEX IF EXISTS budget_usage_changed;
CREATE TABLE IF NOT EXISTS budget_use_log (seq BIGINT PRIMARY KEY, ts_ms BIGINT NOT NULL, scopes TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS budget_use_log_from (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), seq BIGINT NOT NULL);
INSERT INTO budget_use_log_from (one, seq) SELECT TRUE, seq FROM ingest_seq ON CONFLICT DO NOTHING;
