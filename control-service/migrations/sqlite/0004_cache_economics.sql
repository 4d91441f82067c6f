-- Cache economics per record: input tokens of requests whose provider said
-- how much its prompt cache served (the hit rate's denominator: "0 %" is not
-- "not reported"), and what the cache saved against uncached prices.
ALTER TABLE usage ADD COLUMN cache_reported_input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN cache_savings_micros INTEGER NOT NULL DEFAULT 0;
