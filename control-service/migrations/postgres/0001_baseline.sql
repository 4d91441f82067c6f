-- The schema as Tollgate created it before migrations were versioned
-- (IF NOT EXISTS: a database from then takes this as already applied).
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, team TEXT NOT NULL, project TEXT NOT NULL,
    models TEXT, projects TEXT NOT NULL, tags TEXT NOT NULL, created_ms BIGINT NOT NULL, revoked_ms BIGINT);
CREATE TABLE IF NOT EXISTS budgets (
    scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, limit_micros BIGINT, limit_tokens BIGINT, period TEXT NOT NULL,
    timezone TEXT NOT NULL, window_start_ms BIGINT, window_end_ms BIGINT, soft_pct BIGINT, hard_pct BIGINT,
    updated_ms BIGINT NOT NULL, PRIMARY KEY (scope_type, scope_id));
CREATE TABLE IF NOT EXISTS ingest_seq (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), seq BIGINT NOT NULL);
INSERT INTO ingest_seq (one, seq) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS usage (
    id TEXT PRIMARY KEY, seq BIGINT NOT NULL, node TEXT NOT NULL, ts_ms BIGINT NOT NULL, key_id TEXT NOT NULL,
    team TEXT NOT NULL, project TEXT NOT NULL, feature TEXT, prompt_version TEXT, provider TEXT, model TEXT,
    status BIGINT NOT NULL, outcome TEXT NOT NULL, input_tokens BIGINT NOT NULL, cached_input_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts_ms);
CREATE INDEX IF NOT EXISTS usage_team_ts ON usage (team, ts_ms);
CREATE INDEX IF NOT EXISTS usage_project_ts ON usage (project, ts_ms);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key_id, ts_ms);
CREATE TABLE IF NOT EXISTS budget_usage (
    scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, period_start_ms BIGINT NOT NULL,
    used_micros BIGINT NOT NULL, used_tokens BIGINT NOT NULL, PRIMARY KEY (scope_type, scope_id, period_start_ms));
CREATE TABLE IF NOT EXISTS budget_usage_node (
    scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, period_start_ms BIGINT NOT NULL, node TEXT NOT NULL,
    used_micros BIGINT NOT NULL, used_tokens BIGINT NOT NULL, PRIMARY KEY (scope_type, scope_id, period_start_ms, node));
CREATE TABLE IF NOT EXISTS budget_grants (
    scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, period_start_ms BIGINT NOT NULL, node TEXT NOT NULL,
    granted_micros BIGINT NOT NULL, granted_tokens BIGINT NOT NULL, PRIMARY KEY (scope_type, scope_id, period_start_ms, node));
CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, last_seen_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS budget_requests (
    id BIGSERIAL PRIMARY KEY, scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, limit_micros BIGINT, limit_tokens BIGINT,
    justification TEXT NOT NULL, requested_by TEXT NOT NULL, created_ms BIGINT NOT NULL, status TEXT NOT NULL,
    decided_by TEXT, decided_ms BIGINT, note TEXT);
CREATE TABLE IF NOT EXISTS alerts (
    id BIGSERIAL PRIMARY KEY, scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, threshold TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL, used_micros BIGINT NOT NULL, used_tokens BIGINT NOT NULL, limit_micros BIGINT,
    limit_tokens BIGINT, created_ms BIGINT NOT NULL, delivered_ms BIGINT, attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0, last_error TEXT, UNIQUE (scope_type, scope_id, threshold, period_start_ms));
