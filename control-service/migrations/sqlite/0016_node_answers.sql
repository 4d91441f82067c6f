-- The number of the last state answer that changed an Envoy's grants
-- (ledger/grants.rs). Its cursor carries it back: a cursor with another
-- number means that answer never arrived (the Envoy timed out while the
-- service still wrote its grants), so the Envoy gets the full state again.
ALTER TABLE nodes ADD COLUMN answer INTEGER NOT NULL DEFAULT 0;
