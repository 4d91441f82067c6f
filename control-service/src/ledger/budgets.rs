//! Budgets: their limits, the current period recounted when one changes,
//! and threshold alerts. Each change takes a budget sequence number, which
//! state polls read deltas by (`grants.rs`).

use tollgate_protocol::state::{pct_of, ScopeType};

use crate::db::{int, opt_int, Arg, Tx};
use crate::store::*;

use super::rows::{self, scope_column, BUDGET_COLS};

/// The earliest start of any budget's current period: periods are cut by
/// (period, timezone, window) alone, so one row per distinct rule is read,
/// not a row per budget (a budget on each of a million keys shares one).
pub fn earliest_start(tx: &mut dyn Tx, now_ms: u64) -> Result<Option<u64>> {
    let rules = tx.query(
        "SELECT DISTINCT 'team', '', CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), period, timezone, window_start_ms, window_end_ms,
                CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(0 AS BIGINT) FROM budgets",
        &[],
    )?;
    Ok(rows::all(rules, rows::budget)?.iter().filter_map(|b| b.bounds(now_ms)).map(|(start, _)| start).min())
}

/// How many budgets of a scope type, and up to `limit` of them.
pub fn of_type(tx: &mut dyn Tx, st: ScopeType, limit: usize) -> Result<(u64, Vec<Budget>)> {
    let n = tx.query_one("SELECT COUNT(*) FROM budgets WHERE scope_type = ?1", &[st.as_str().into()])?.u64(0)?;
    let sql = format!("SELECT {BUDGET_COLS} FROM budgets WHERE scope_type = ?1 ORDER BY scope_id LIMIT ?2");
    Ok((n, rows::all(tx.query(&sql, &[st.as_str().into(), int(limit as u64)])?, rows::budget)?))
}

/// Up to `limit` budgets after `after`, in scope order (the pages of a
/// full state; the row comparison walks the primary key).
pub fn page(tx: &mut dyn Tx, after: Option<(ScopeType, &str)>, limit: usize) -> Result<Vec<Budget>> {
    let limit = int(limit as u64);
    match after {
        None => rows::all(tx.query(&format!("SELECT {BUDGET_COLS} FROM budgets ORDER BY scope_type, scope_id LIMIT ?1"), &[limit])?, rows::budget),
        Some((st, id)) => rows::all(
            tx.query(
                &format!(
                    "SELECT {BUDGET_COLS} FROM budgets WHERE (scope_type, scope_id) > (?1, ?2)
                     ORDER BY scope_type, scope_id LIMIT ?3"
                ),
                &[st.as_str().into(), id.into(), limit],
            )?,
            rows::budget,
        ),
    }
}

/// The budgets of these scopes (those a batch of records can touch): a few
/// indexed lookups, however many budgets exist (listing every budget for
/// each batch took ingest from ~70,000 to ~28,000 records/s with 10,000).
pub fn of_scopes<'a>(tx: &mut dyn Tx, scopes: impl IntoIterator<Item = (ScopeType, &'a str)>) -> Result<Vec<Budget>> {
    let wanted: std::collections::BTreeSet<(ScopeType, &str)> = scopes.into_iter().collect();
    let mut out = Vec::new();
    for st in ScopeType::ALL {
        let ids: Vec<&str> = wanted.iter().filter(|(t, _)| *t == st).map(|(_, id)| *id).collect();
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("?{i}")).collect();
            let mut args: Vec<Arg<'_>> = vec![st.as_str().into()];
            args.extend(chunk.iter().map(|id| Arg::Text(id)));
            let sql = format!("SELECT {BUDGET_COLS} FROM budgets WHERE scope_type = ?1 AND scope_id IN ({})", marks.join(", "));
            out.extend(rows::all(tx.query(&sql, &args)?, rows::budget)?);
        }
    }
    Ok(out)
}

pub fn get(tx: &mut dyn Tx, st: ScopeType, id: &str) -> Result<Option<Budget>> {
    tx.query_opt(&format!("SELECT {BUDGET_COLS} FROM budgets WHERE scope_type = ?1 AND scope_id = ?2"), &[st.as_str().into(), id.into()])?
        .as_ref()
        .map(rows::budget)
        .transpose()
}

/// Deletes a budget; a tombstone tells the Envoys to drop it. Tombstones
/// no delta can reach any more go at the same time (the table stays at
/// most `DELTA_MAX_CHANGES` rows, whatever is deleted over the years).
pub fn delete(tx: &mut dyn Tx, st: ScopeType, id: &str) -> Result<()> {
    let n = tx.execute("DELETE FROM budgets WHERE scope_type = ?1 AND scope_id = ?2", &[st.as_str().into(), id.into()])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("no budget for {} '{id}'", st.as_str())));
    }
    let seq = super::grants::next_budget_seq(tx)?;
    tx.execute(
        "INSERT INTO budget_removed (scope_type, scope_id, seq) VALUES (?1, ?2, ?3) ON CONFLICT (scope_type, scope_id) DO UPDATE SET seq = excluded.seq",
        &[st.as_str().into(), id.into(), int(seq)],
    )?;
    tx.execute("DELETE FROM budget_removed WHERE seq <= ?1", &[int(seq.saturating_sub(super::grants::DELTA_MAX_CHANGES))])?;
    Ok(())
}

/// Sets a budget: the row (stamped with the next budget sequence), fresh grants (never more than the new limit),
/// the current period recounted from the records (the period may have
/// changed), thresholds checked.
pub fn put(tx: &mut dyn Tx, b: &Budget, now_ms: u64) -> Result<()> {
    let st = b.scope_type.as_str();
    tx.execute(
        &format!(
            "INSERT INTO budgets ({BUDGET_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (scope_type, scope_id) DO UPDATE SET limit_micros = excluded.limit_micros, limit_tokens = excluded.limit_tokens,
               period = excluded.period, timezone = excluded.timezone, window_start_ms = excluded.window_start_ms,
               window_end_ms = excluded.window_end_ms, soft_pct = excluded.soft_pct, hard_pct = excluded.hard_pct, updated_ms = excluded.updated_ms"
        ),
        &[
            st.into(),
            (&b.scope_id).into(),
            opt_int(b.limit_micros),
            opt_int(b.limit_tokens),
            b.period.as_str().into(),
            (&b.timezone).into(),
            opt_int(b.window_start_ms),
            opt_int(b.window_end_ms),
            opt_int(b.soft_pct.map(u64::from)),
            opt_int(b.hard_pct.map(u64::from)),
            int(b.updated_ms),
        ],
    )?;
    let seq = super::grants::next_budget_seq(tx)?;
    tx.execute("UPDATE budgets SET changed_seq = ?3 WHERE scope_type = ?1 AND scope_id = ?2", &[st.into(), (&b.scope_id).into(), int(seq)])?;
    tx.execute("DELETE FROM budget_removed WHERE scope_type = ?1 AND scope_id = ?2", &[st.into(), (&b.scope_id).into()])?;
    tx.execute("DELETE FROM budget_grants WHERE scope_type = ?1 AND scope_id = ?2", &[st.into(), (&b.scope_id).into()])?;
    let Some((start, end)) = b.bounds(now_ms) else { return Ok(()) };
    let col = scope_column(b.scope_type);
    let args = [st.into(), (&b.scope_id).into(), int(start), int(end)];
    let used = rows::used(tx.query_opt(
        &format!(
            "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT), CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT)
             FROM usage WHERE {col} = ?1 AND ts_ms >= ?2 AND ts_ms < ?3"
        ),
        &args[1..],
    )?)?;
    tx.execute(
        "INSERT INTO budget_usage (scope_type, scope_id, period_start_ms, used_micros, used_tokens) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (scope_type, scope_id, period_start_ms) DO UPDATE SET used_micros = excluded.used_micros, used_tokens = excluded.used_tokens",
        &[st.into(), (&b.scope_id).into(), int(start), int(used.micros), int(used.tokens)],
    )?;
    tx.execute(
        "DELETE FROM budget_usage_node WHERE scope_type = ?1 AND scope_id = ?2 AND period_start_ms = ?3",
        &[st.into(), (&b.scope_id).into(), int(start)],
    )?;
    tx.execute(
        &format!(
            "INSERT INTO budget_usage_node (scope_type, scope_id, period_start_ms, node, used_micros, used_tokens)
             SELECT ?1, ?2, ?3, node, CAST(SUM(cost_micros) AS BIGINT), CAST(SUM(input_tokens + output_tokens) AS BIGINT)
             FROM usage WHERE {col} = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 GROUP BY node"
        ),
        &args,
    )?;
    thresholds(tx, b, start, used, now_ms, false)
}

/// Raises the soft/hard alert of a budget period if its use crossed them.
/// `stopped`: a filter refused a request of this scope (the hard stop
/// acted, even if reservations kept `used` just under the limit).
pub fn thresholds(tx: &mut dyn Tx, b: &Budget, period_start: u64, used: Used, now_ms: u64, stopped: bool) -> Result<()> {
    for (name, pct) in [("soft", b.soft_pct), ("hard", b.hard_pct)] {
        let Some(pct) = pct else { continue };
        let over_micros = b.limit_micros.is_some_and(|l| used.micros >= pct_of(l, pct));
        let over_tokens = b.limit_tokens.is_some_and(|l| used.tokens >= pct_of(l, pct));
        if over_micros || over_tokens || stopped {
            tx.execute(
                "INSERT INTO alerts (scope_type, scope_id, threshold, period_start_ms, used_micros, used_tokens, limit_micros, limit_tokens, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                &[
                    b.scope_type.as_str().into(),
                    (&b.scope_id).into(),
                    name.into(),
                    int(period_start),
                    int(used.micros),
                    int(used.tokens),
                    opt_int(b.limit_micros),
                    opt_int(b.limit_tokens),
                    int(now_ms),
                ],
            )?;
        }
    }
    Ok(())
}

pub fn used(tx: &mut dyn Tx, st: ScopeType, id: &str, period_start_ms: u64) -> Result<Used> {
    rows::used(tx.query_opt(
        "SELECT used_micros, used_tokens FROM budget_usage WHERE scope_type = ?1 AND scope_id = ?2 AND period_start_ms = ?3",
        &[st.as_str().into(), id.into(), int(period_start_ms)],
    )?)
}

/// Room handed to Envoys and not yet recorded as used, summed over Envoys.
pub fn reserved(tx: &mut dyn Tx, st: ScopeType, id: &str, period_start_ms: u64) -> Result<Used> {
    rows::used(tx.query_opt(
        "SELECT CAST(COALESCE(SUM(CASE WHEN g.granted_micros > COALESCE(u.used_micros, 0) THEN g.granted_micros - COALESCE(u.used_micros, 0) ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN g.granted_tokens > COALESCE(u.used_tokens, 0) THEN g.granted_tokens - COALESCE(u.used_tokens, 0) ELSE 0 END), 0) AS BIGINT)
         FROM budget_grants g LEFT JOIN budget_usage_node u ON u.scope_type = g.scope_type AND u.scope_id = g.scope_id
              AND u.period_start_ms = g.period_start_ms AND u.node = g.node
         WHERE g.scope_type = ?1 AND g.scope_id = ?2 AND g.period_start_ms = ?3",
        &[st.as_str().into(), id.into(), int(period_start_ms)],
    )?)
}

pub fn nodes_active(tx: &mut dyn Tx, now_ms: u64, node_ttl_ms: u64) -> Result<u32> {
    let n = tx.query_one("SELECT COUNT(*) FROM nodes WHERE last_seen_ms >= ?1", &[int(now_ms.saturating_sub(node_ttl_ms))])?.u64(0)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}
