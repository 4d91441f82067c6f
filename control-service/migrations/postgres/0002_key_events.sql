-- Every change to the key set, numbered: Envoys fetch the changes after the
-- last one they hold (GET /v1/key-changes) instead of the whole key list.
-- Writers of key events take one advisory lock (TxKind::Keys), so numbers
-- become visible in order and a reader never skips one.
CREATE TABLE key_events (seq BIGSERIAL PRIMARY KEY, key_hash TEXT NOT NULL);
INSERT INTO key_events (key_hash) SELECT key_hash FROM keys ORDER BY created_ms, id;
