-- The client's session (a Claude Code conversation, an agent's run) a
-- record belongs to: reports group and filter by it. Indexed only where
-- set, so records without a session cost the ingest nothing more.
ALTER TABLE usage ADD COLUMN session_id TEXT;
CREATE INDEX usage_session ON usage (session_id, ts_ms) WHERE session_id IS NOT NULL;
