-- Keys listed a page at a time in the order they were made (GET /v1/keys
-- with limit and after): a keyset over this index, not a sort of every key.
CREATE INDEX IF NOT EXISTS keys_created ON keys (created_ms, id);
