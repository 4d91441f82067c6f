-- Prompt-cache misses the filter explains (a record's cache_miss): which
-- segment of the prefix changed, at which offset, and what the part that
-- could have been cached cost above the cached price.
CREATE TABLE cache_misses (
    record_id TEXT PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    team TEXT NOT NULL,
    project TEXT NOT NULL,
    feature TEXT,
    prompt_version TEXT,
    provider TEXT,
    model TEXT,
    reason TEXT NOT NULL,
    segment TEXT,
    offset_bytes BIGINT,
    lost_micros BIGINT NOT NULL
);
CREATE INDEX cache_misses_ts ON cache_misses (ts_ms);

-- A feature's cache hit rate fell sharply with a new prompt version: one
-- alert per (feature, version), delivered to the webhook like budget alerts.
CREATE TABLE cache_alerts (
    id BIGSERIAL PRIMARY KEY,
    feature TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    previous_version TEXT NOT NULL,
    hit_before_permille BIGINT NOT NULL,
    hit_after_permille BIGINT NOT NULL,
    requests_after BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    delivered_ms BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (feature, prompt_version)
);
