-- Findings in answers, not only in requests: the audit row names its
-- direction ('request' or 'response'), so a record may have both for one
-- class. The table is rebuilt for the wider key (its rows are kept).
CREATE TABLE guard_findings_v2 (
    record_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    team TEXT NOT NULL,
    project TEXT NOT NULL,
    provider TEXT,
    model TEXT,
    direction TEXT NOT NULL,
    class TEXT NOT NULL,
    count INTEGER NOT NULL,
    action TEXT NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (record_id, direction, class)
);
INSERT INTO guard_findings_v2 (record_id, ts_ms, key_id, team, project, provider, model, direction, class, count, action, policy)
    SELECT record_id, ts_ms, key_id, team, project, provider, model, 'request', class, count, action, policy FROM guard_findings;
DROP TABLE guard_findings;
ALTER TABLE guard_findings_v2 RENAME TO guard_findings;
CREATE INDEX guard_findings_ts ON guard_findings (ts_ms);
CREATE INDEX guard_findings_class_ts ON guard_findings (class, ts_ms);

-- The guardrail policy every Envoy applies (PUT /v1/guardrails): one row per
-- change; the newest is in force. A NULL policy hands control back to each
-- Envoy's own configuration.
CREATE TABLE guard_policies (
    seq INTEGER PRIMARY KEY,
    policy TEXT,
    updated_ms INTEGER NOT NULL
);
