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
