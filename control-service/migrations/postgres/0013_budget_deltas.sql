-- Budget deltas: a state poll names what the Envoy was last sent (a
-- cursor), and only the budgets that changed since are read, granted and
-- sent. A budget's limits change under the budget sequence (budgets.changed_seq),
-- its use under the ingest sequence (budget_usage.changed_seq); deleted
-- budgets leave a tombstone under the budget sequence. A grant smaller than
-- the node's fair share (another node held the rest) is marked short and
-- recomputed at each of that node's polls until it is not.
CREATE TABLE IF NOT EXISTS budget_seq (seq BIGINT NOT NULL);
INSERT INTO budget_seq (seq) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM budget_seq);
ALTER TABLE budgets ADD COLUMN changed_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE budget_usage ADD COLUMN changed_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE budget_grants ADD COLUMN short BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS budgets_changed ON budgets (changed_seq);
CREATE INDEX IF NOT EXISTS budget_usage_changed ON budget_usage (changed_seq);
CREATE INDEX IF NOT EXISTS budget_grants_short ON budget_grants (node, scope_type, scope_id) WHERE short = 1;
CREATE TABLE IF NOT EXISTS budget_removed (
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (scope_type, scope_id)
);
CREATE INDEX IF NOT EXISTS budget_removed_seq ON budget_removed (seq);
