-- JSON compliance: one row per record whose request asked for JSON.
CREATE TABLE json_checks (
    record_id TEXT PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    team TEXT NOT NULL,
    feature TEXT,
    provider TEXT,
    model TEXT,
    valid BIGINT NOT NULL,
    repaired BIGINT NOT NULL
);
CREATE INDEX json_checks_ts ON json_checks (ts_ms);

-- Evaluation sets: requests and answers captured from real traffic
-- (after guardrail redaction), per feature.
CREATE TABLE eval_items (
    id BIGSERIAL PRIMARY KEY,
    feature TEXT NOT NULL,
    record_id TEXT NOT NULL UNIQUE,
    ts_ms BIGINT NOT NULL,
    api TEXT NOT NULL,
    route TEXT,
    model TEXT,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    cost_micros BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL
);
CREATE INDEX eval_items_feature ON eval_items (feature, id);

-- Evaluation runs: a candidate model replayed on a feature's set, scored.
CREATE TABLE evals (
    id BIGSERIAL PRIMARY KEY,
    feature TEXT NOT NULL,
    candidate TEXT NOT NULL,
    judge TEXT,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    report TEXT NOT NULL
);
CREATE INDEX evals_feature ON evals (feature, id);

-- The auto router: a policy per feature, and every pick it made.
CREATE TABLE routing_policies (
    feature TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    chosen TEXT,
    reason TEXT,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE routing_events (
    seq BIGINT PRIMARY KEY,
    feature TEXT NOT NULL,
    model TEXT,
    reason TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    by_whom TEXT NOT NULL
);
