-- Time-window scans over all usage use a BRIN index instead of a B-tree:
-- records arrive nearly in time order, so block ranges summarise ts_ms
-- well, and a BRIN index costs almost nothing per insert (the B-tree was
-- one of the five indexes every ingested record updated).
DROP INDEX IF EXISTS usage_ts;
CREATE INDEX IF NOT EXISTS usage_ts_brin ON usage USING brin (ts_ms) WITH (pages_per_range = 32, autosummarize = on);
