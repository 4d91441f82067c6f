-- Reclaiming what silent Envoys hold is one statement a poll over the
-- grants of the current periods: found by period, not by scanning every
-- grant ever handed out (Envoys with changing names leave many behind).
CREATE INDEX IF NOT EXISTS budget_grants_period ON budget_grants (period_start_ms);
