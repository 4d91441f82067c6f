-- Every change to the key set, numbered: Envoys fetch the changes after the
-- last one they hold (GET /v1/key-changes) instead of the whole key list.
CREATE TABLE key_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, key_hash TEXT NOT NULL);
INSERT INTO key_events (key_hash) SELECT key_hash FROM keys ORDER BY created_ms, id;
