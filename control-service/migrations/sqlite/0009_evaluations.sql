-- JSON compliance: one row per record whose request asked for JSON.
CREATE TABLE json_checks (
    record_id TEXT PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    team TEXT NOT NULL,
    feature TEXT,
    provider TEXT,
    model TEXT,
    valid INTEGER NOT NULL,
    repaired INTEGER NOT NULL
);
CREATE INDEX json_checks_ts ON json_checks (ts_ms);

-- Evaluation sets: requests and answers captured from real traffic
-- (after guardrail redaction), per feature.
CREATE TABLE eval_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    feature TEXT NOT NULL,
    record_id TEXT NOT NULL UNIQUE,
    ts_ms INTEGER NOT NULL,
    api TEXT NOT NULL,
    route TEXT,
    model TEXT,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    cost_micros INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL
);
CREATE INDEX eval_items_feature ON eval_items (feature, id);

-- Evaluation runs: a candidate model replayed on a feature's set, scored.
CREATE TABLE evals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    feature TEXT NOT NULL,
    candidate TEXT NOT NULL,
    judge TEXT,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    report TEXT NOT NULL
);
CREATE INDEX evals_feature ON evals (feature, id);

-- The auto router: a policy per feature, and every pick it made.
CREATE TABLE routing_policies (
    feature TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    chosen TEXT,
    reason TEXT,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE routing_events (
    seq INTEGER PRIMARY KEY,
    feature TEXT NOT NULL,
    model TEXT,
    reason TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    by_whom TEXT NOT NULL
);
