-- The guardrail audit trail: one row per record and data class found (the
-- class, how many values, what was done, under which policy; never a value).
CREATE TABLE guard_findings (
    record_id TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    team TEXT NOT NULL,
    project TEXT NOT NULL,
    provider TEXT,
    model TEXT,
    class TEXT NOT NULL,
    count BIGINT NOT NULL,
    action TEXT NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (record_id, class)
);
CREATE INDEX guard_findings_ts ON guard_findings (ts_ms);
CREATE INDEX guard_findings_class_ts ON guard_findings (class, ts_ms);
