-- The text columns ingest indexes, and those they are compared with,
-- compare in byte order (COLLATE "C"), as SQLite compares every text (and
-- as Rust orders strings). Under the database's own collation each index
-- entry a record writes compared by the locale's rules (strcoll: C.UTF-8
-- in the tests, en_US.UTF-8 on many servers, slower still): with a budget
-- on each of 10,000 keys (the ingest_bench example, 2 cores, seven runs
-- alternated) ingest went from 46.8k to 49.1k records/s, and with three
-- budgets from 70.8k to 72.6k. Equality is the same either way (every
-- deterministic collation compares equal exactly the same bytes); only the
-- order of a state's pages of budgets changes on a server whose collation
-- is not byte order, so every Envoy's cursor is made stale (its next poll
-- gets the whole state, walked in the new order). A change of collation
-- alone rewrites no table; the indexes on these columns are rebuilt.
ALTER TABLE usage ALTER COLUMN id TYPE TEXT COLLATE "C", ALTER COLUMN key_id TYPE TEXT COLLATE "C",
    ALTER COLUMN team TYPE TEXT COLLATE "C", ALTER COLUMN project TYPE TEXT COLLATE "C",
    ALTER COLUMN session_id TYPE TEXT COLLATE "C";
ALTER TABLE budgets ALTER COLUMN scope_type TYPE TEXT COLLATE "C", ALTER COLUMN scope_id TYPE TEXT COLLATE "C";
ALTER TABLE budget_usage ALTER COLUMN scope_type TYPE TEXT COLLATE "C", ALTER COLUMN scope_id TYPE TEXT COLLATE "C";
ALTER TABLE budget_usage_node ALTER COLUMN scope_type TYPE TEXT COLLATE "C", ALTER COLUMN scope_id TYPE TEXT COLLATE "C",
    ALTER COLUMN node TYPE TEXT COLLATE "C";
ALTER TABLE budget_grants ALTER COLUMN scope_type TYPE TEXT COLLATE "C", ALTER COLUMN scope_id TYPE TEXT COLLATE "C",
    ALTER COLUMN node TYPE TEXT COLLATE "C";
ALTER TABLE budget_removed ALTER COLUMN scope_type TYPE TEXT COLLATE "C", ALTER COLUMN scope_id TYPE TEXT COLLATE "C";
ALTER TABLE nodes ALTER COLUMN node TYPE TEXT COLLATE "C";
ALTER TABLE alerts ALTER COLUMN scope_type TYPE TEXT COLLATE "C", ALTER COLUMN scope_id TYPE TEXT COLLATE "C";
ALTER TABLE guard_findings ALTER COLUMN record_id TYPE TEXT COLLATE "C";
ALTER TABLE cache_misses ALTER COLUMN record_id TYPE TEXT COLLATE "C";
ALTER TABLE json_checks ALTER COLUMN record_id TYPE TEXT COLLATE "C";
ALTER TABLE eval_items ALTER COLUMN record_id TYPE TEXT COLLATE "C";
UPDATE nodes SET answer = answer + 1;
