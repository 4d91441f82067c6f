//! Budgets: their limits, the current period recounted when one changes,
//! and threshold alerts. Each change takes a budget sequence number, which
//! state polls read deltas by (`grants.rs`).

use tollgate_protocol::state::{pct_of, ScopeType};

use crate::db::{int, opt_int, params, statement_chunks, values, Arg, Tx};
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

/// The budgets whose limits were set under the budget sequences (from, to]
/// (index `budgets_changed`).
pub fn changed_between(tx: &mut dyn Tx, from: u64, to: u64) -> Result<Vec<Budget>> {
    let sql = format!("SELECT {BUDGET_COLS} FROM budgets WHERE changed_seq > ?1 AND changed_seq <= ?2");
    rows::all(tx.query(&sql, &[int(from), int(to)])?, rows::budget)
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
        for chunk in statement_chunks(&ids) {
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
    let seq = super::grants::next_budget_seqs(tx, 1)?;
    tx.execute(
        "INSERT INTO budget_removed (scope_type, scope_id, seq) VALUES (?1, ?2, ?3) ON CONFLICT (scope_type, scope_id) DO UPDATE SET seq = excluded.seq",
        &[st.as_str().into(), id.into(), int(seq)],
    )?;
    tx.execute("DELETE FROM budget_removed WHERE seq <= ?1", &[int(seq.saturating_sub(super::grants::DELTA_MAX_CHANGES))])?;
    Ok(())
}

/// Sets a budget (see [`put_many`]).
pub fn put(tx: &mut dyn Tx, b: &Budget, now_ms: u64) -> Result<()> {
    put_many(tx, std::slice::from_ref(b), now_ms)
}

/// Sets budgets: the rows, each stamped with its own next budget sequence
/// (in batch order; a scope given twice keeps its last), fresh grants (never
/// more than a new limit), the current periods recounted from the records,
/// thresholds checked. Set-based: a batch of 10,000 (a bulk import) is a
/// few dozen statements, not ten a budget, each a round trip to PostgreSQL
/// (about 800 budgets/s that way, against 44,000 on SQLite).
pub fn put_many(tx: &mut dyn Tx, batch: &[Budget], now_ms: u64) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut batch: Vec<&Budget> = batch.iter().rev().filter(|b| seen.insert((b.scope_type, b.scope_id.as_str()))).collect();
    batch.reverse();
    if batch.is_empty() {
        return Ok(());
    }
    let first = super::grants::next_budget_seqs(tx, batch.len() as u64)?;
    let mut numbered = 0u64;
    for chunk in statement_chunks(&batch) {
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(chunk.len() * 12);
        for (j, b) in chunk.iter().enumerate() {
            args.extend([
                b.scope_type.as_str().into(),
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
                int(first + numbered + j as u64),
            ]);
        }
        tx.execute(
            &format!(
                "INSERT INTO budgets ({BUDGET_COLS}, changed_seq) VALUES {}
                 ON CONFLICT (scope_type, scope_id) DO UPDATE SET limit_micros = excluded.limit_micros, limit_tokens = excluded.limit_tokens,
                   period = excluded.period, timezone = excluded.timezone, window_start_ms = excluded.window_start_ms,
                   window_end_ms = excluded.window_end_ms, soft_pct = excluded.soft_pct, hard_pct = excluded.hard_pct,
                   updated_ms = excluded.updated_ms, changed_seq = excluded.changed_seq",
                values(chunk.len(), 12)
            ),
            &args,
        )?;
        numbered += chunk.len() as u64;
    }
    for t in ScopeType::ALL {
        let ids: Vec<&str> = batch.iter().filter(|b| b.scope_type == t).map(|b| b.scope_id.as_str()).collect();
        for chunk in statement_chunks(&ids) {
            let mut args: Vec<Arg<'_>> = vec![t.as_str().into()];
            args.extend(chunk.iter().map(|id| Arg::Text(id)));
            let list = params(2, chunk.len());
            tx.execute(&format!("DELETE FROM budget_removed WHERE scope_type = ?1 AND scope_id IN ({list})"), &args)?;
            tx.execute(&format!("DELETE FROM budget_grants WHERE scope_type = ?1 AND scope_id IN ({list})"), &args)?;
        }
    }
    // The current period of each, recounted: by scope type and period,
    // under the lock that orders the counting (ingest's). A batch holding
    // it has read the budgets without these and counts its records against
    // none of them; its records are not committed, so a recount now would
    // miss them too (PostgreSQL contract test
    // `a_budget_set_while_a_batch_is_being_counted_counts_that_batch`).
    // Waiting for it, the recount sees them; batches after count against
    // these budgets. (On PostgreSQL the budget lock, taken first, already
    // waits for every batch in flight: each holds it shared. The counter
    // row's lock is the second guard of the same order.)
    tx.execute("UPDATE ingest_seq SET seq = seq", &[])?;
    let mut periods: std::collections::BTreeMap<(ScopeType, u64, u64), Vec<&Budget>> = std::collections::BTreeMap::new();
    for b in &batch {
        if let Some((start, end)) = b.bounds(now_ms) {
            periods.entry((b.scope_type, start, end)).or_default().push(b);
        }
    }
    for ((t, start, end), bs) in periods {
        for chunk in statement_chunks(&bs) {
            recount(tx, t, (start, end), chunk, now_ms)?;
        }
    }
    Ok(())
}

/// The use of these budgets (one scope type, one period) from the records:
/// in total and per Envoy, and their thresholds.
fn recount(tx: &mut dyn Tx, t: ScopeType, (start, end): (u64, u64), chunk: &[&Budget], now_ms: u64) -> Result<()> {
    let col = scope_column(t);
    let n = chunk.len();
    let ids = chunk.iter().map(|b| Arg::Text(&b.scope_id));
    // Every parameter of a statement is used (PostgreSQL types each from its use).
    let period: Vec<Arg<'_>> = [int(start), int(end)].into_iter().chain(ids.clone()).collect();
    let mut used: std::collections::HashMap<String, Used> = std::collections::HashMap::new();
    for r in tx.query(
        &format!(
            "SELECT {col}, {}, {}
             FROM usage WHERE {col} IN ({}) AND ts_ms >= ?1 AND ts_ms < ?2 GROUP BY {col}",
            tx.sum("cost_micros"),
            tx.sum("input_tokens + output_tokens"),
            params(3, n)
        ),
        &period,
    )? {
        used.insert(r.text(0)?, Used { micros: r.u64(1)?, tokens: r.u64(2)? });
    }
    let mut rows = Vec::with_capacity(n);
    let mut uargs: Vec<Arg<'_>> = vec![t.as_str().into(), int(start)];
    for (j, b) in chunk.iter().enumerate() {
        let u = used.get(&b.scope_id).copied().unwrap_or_default();
        let p = 3 + j * 3;
        rows.push(format!("(?1, ?{p}, ?2, ?{}, ?{})", p + 1, p + 2));
        uargs.extend([Arg::Text(&b.scope_id), int(u.micros), int(u.tokens)]);
    }
    tx.execute(
        &format!(
            "INSERT INTO budget_usage (scope_type, scope_id, period_start_ms, used_micros, used_tokens) VALUES {}
             ON CONFLICT (scope_type, scope_id, period_start_ms) DO UPDATE SET used_micros = excluded.used_micros, used_tokens = excluded.used_tokens",
            rows.join(", ")
        ),
        &uargs,
    )?;
    let scoped: Vec<Arg<'_>> = [t.as_str().into(), int(start)].into_iter().chain(ids.clone()).collect();
    tx.execute(&format!("DELETE FROM budget_usage_node WHERE scope_type = ?1 AND period_start_ms = ?2 AND scope_id IN ({})", params(3, n)), &scoped)?;
    let all: Vec<Arg<'_>> = [t.as_str().into(), int(start), int(end)].into_iter().chain(ids).collect();
    tx.execute(
        &format!(
            "INSERT INTO budget_usage_node (scope_type, scope_id, period_start_ms, node, used_micros, used_tokens)
             SELECT ?1, {col}, ?2, node, {}, {}
             FROM usage WHERE {col} IN ({}) AND ts_ms >= ?2 AND ts_ms < ?3 GROUP BY {col}, node",
            tx.sum("cost_micros"),
            tx.sum("input_tokens + output_tokens"),
            params(4, n)
        ),
        &all,
    )?;
    for b in chunk {
        thresholds(tx, b, start, used.get(&b.scope_id).copied().unwrap_or_default(), now_ms, false)?;
    }
    Ok(())
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
