-- Ingest adds to a period's use in place: about two rows a budget a batch
-- touches (its total and this Envoy's part), a thousand a batch when every
-- key has a budget. Pages half full leave room for each new row version
-- on its own page: an update of a node's part (no indexed column changes)
-- is then a heap-only tuple, with no index entry to add, and the total's
-- new version stays next to the old. With a budget on each of 10,000 keys
-- (make bench), ingest went from 27,000-29,000 to 34,000-36,000 records/s
-- (half full: 34,000; 70 %: 32,000; 30 %: no better than half). The price:
-- these two tables take twice the pages (about 100 bytes a row; 200 MB
-- rather than 100 for a million budgets). Applies to pages written from
-- now on; existing pages fill as before until rewritten.
ALTER TABLE budget_usage SET (fillfactor = 50);
ALTER TABLE budget_usage_node SET (fillfactor = 50);
