-- The schema as Tollgate created it before migrations were versioned
-- (IF NOT EXISTS: a database from then takes this as already applied).
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    team TEXT NOT NULL,
    project TEXT NOT NULL,
    models TEXT,
    projects TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS budgets (
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    limit_micros INTEGER,
    limit_tokens INTEGER,
    period TEXT NOT NULL,
    timezone TEXT NOT NULL,
    window_start_ms INTEGER,
    window_end_ms INTEGER,
    soft_pct INTEGER,
    hard_pct INTEGER,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (scope_type, scope_id)
);
CREATE TABLE IF NOT EXISTS usage (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
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
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts_ms);
CREATE INDEX IF NOT EXISTS usage_team_ts ON usage (team, ts_ms);
CREATE INDEX IF NOT EXISTS usage_project_ts ON usage (project, ts_ms);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key_id, ts_ms);
CREATE TABLE IF NOT EXISTS budget_usage (
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL,
    used_micros INTEGER NOT NULL,
    used_tokens INTEGER NOT NULL,
    PRIMARY KEY (scope_type, scope_id, period_start_ms)
);
CREATE TABLE IF NOT EXISTS budget_usage_node (
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL,
    node TEXT NOT NULL,
    used_micros INTEGER NOT NULL,
    used_tokens INTEGER NOT NULL,
    PRIMARY KEY (scope_type, scope_id, period_start_ms, node)
);
CREATE TABLE IF NOT EXISTS budget_grants (
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL,
    node TEXT NOT NULL,
    granted_micros INTEGER NOT NULL,
    granted_tokens INTEGER NOT NULL,
    PRIMARY KEY (scope_type, scope_id, period_start_ms, node)
);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    last_seen_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS budget_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    limit_micros INTEGER,
    limit_tokens INTEGER,
    justification TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_ms INTEGER,
    note TEXT
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    threshold TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL,
    used_micros INTEGER NOT NULL,
    used_tokens INTEGER NOT NULL,
    limit_micros INTEGER,
    limit_tokens INTEGER,
    created_ms INTEGER NOT NULL,
    delivered_ms INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (scope_type, scope_id, threshold, period_start_ms)
);
