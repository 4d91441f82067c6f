-- Which budgets' use changed, batch by batch: see the PostgreSQL migration
-- of the same name (there the gain is heap-only updates; here one index
-- entry less a budget a batch, and one schema for both).
DROP INDEX IF EXISTS budget_usage_changed;
CREATE TABLE IF NOT EXISTS budget_use_log (seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, scopes TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS budget_use_log_from (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO budget_use_log_from (one, seq) SELECT 1, seq FROM ingest_seq;
