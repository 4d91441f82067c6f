-- Number ingest batches as PostgreSQL does (one counter row, every record of
-- a batch carries the batch's number) so the ledger's SQL is the same on both.
-- Records keep the numbers they had; the counter continues after the largest.
CREATE TABLE ingest_seq (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL);
INSERT INTO ingest_seq (one, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM usage;
CREATE TABLE usage_v2 (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    node TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    team TEXT NOT NULL,
    project TEXT NOT NULL,
    feature TEXT,
    prompt_version TEXT,
    provider TEXT,
    model TEXT,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_micros INTEGER NOT NULL,
    record TEXT NOT NULL
);
INSERT INTO usage_v2 (id, seq, node, ts_ms, key_id, team, project, feature, prompt_version, provider, model, status, outcome,
                      input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_micros, record)
    SELECT id, seq, node, ts_ms, key_id, team, project, feature, prompt_version, provider, model, status, outcome,
           input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_micros, record FROM usage;
DROP TABLE usage;
ALTER TABLE usage_v2 RENAME TO usage;
CREATE INDEX usage_ts ON usage (ts_ms);
CREATE INDEX usage_team_ts ON usage (team, ts_ms);
CREATE INDEX usage_project_ts ON usage (project, ts_ms);
CREATE INDEX usage_key_ts ON usage (key_id, ts_ms);
