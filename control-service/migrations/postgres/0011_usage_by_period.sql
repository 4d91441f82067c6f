-- The state poll reads every budget's use in the current periods in one
-- pass by period (not one query per budget). Ingest only updates these
-- rows' amounts, never their period, so the index costs a write only when
-- a budget starts a new period on a node.
CREATE INDEX IF NOT EXISTS budget_usage_period ON budget_usage (period_start_ms);
CREATE INDEX IF NOT EXISTS budget_usage_node_period ON budget_usage_node (period_start_ms);
