-- A silent Envoy's grants are reclaimed by deleting them, found by node
-- (ledger/grants.rs, reclaim), not by reading every grant of the fleet.
CREATE INDEX IF NOT EXISTS budget_grants_node ON budget_grants (node, period_start_ms);
