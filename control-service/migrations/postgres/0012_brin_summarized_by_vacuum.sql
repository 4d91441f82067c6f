-- The BRIN index on usage(ts_ms) asked autovacuum to summarise each new
-- block range as ingest filled it (autosummarize). Under sustained ingest
-- autovacuum's small work-item queue is full, and every refused request
-- wrote a LOG line with the whole multi-row INSERT to the server log
-- (hundreds a minute, a few KB each) — about a tenth of the server's time
-- in an ingest benchmark. Ranges not yet summarised are still scanned, so
-- answers are the same; (auto)vacuum, which insert-only tables get since
-- PostgreSQL 13, summarises them.
ALTER INDEX usage_ts_brin SET (autosummarize = off);
