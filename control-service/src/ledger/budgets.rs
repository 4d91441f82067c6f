//! Budgets: their limits, the current period recounted when one changes,
//! threshold alerts, and the grants that hand each Envoy its share.

use tollgate_protocol::state::{pct_of, ScopeType};

use crate::db::{int, opt_int, Arg, Tx};
use crate::store::*;

use super::rows::{self, scope_column, BUDGET_COLS};

pub fn list(tx: &mut dyn Tx) -> Result<Vec<Budget>> {
    rows::all(tx.query(&format!("SELECT {BUDGET_COLS} FROM budgets ORDER BY scope_type, scope_id"), &[])?, rows::budget)
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

pub fn delete(tx: &mut dyn Tx, st: ScopeType, id: &str) -> Result<()> {
    let n = tx.execute("DELETE FROM budgets WHERE scope_type = ?1 AND scope_id = ?2", &[st.as_str().into(), id.into()])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("no budget for {} '{id}'", st.as_str())));
    }
    Ok(())
}

/// Sets a budget: the row, fresh grants (never more than the new limit),
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

/// Hands the Envoy `node` its share of every budget's remaining room (see
/// `store::grant_doc`) and returns the budgets' state for it. The backend
/// serialises grant transactions (`TxKind::Grant`).
pub fn grant(tx: &mut dyn Tx, node: &str, now_ms: u64, node_ttl_ms: u64) -> Result<GrantSnapshot> {
    // seq first: the counts read after it include at least those batches.
    let seq = super::ingest::seq(tx)?;
    tx.execute(
        "INSERT INTO nodes (node, last_seen_ms) VALUES (?1, ?2) ON CONFLICT (node) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
        &[node.into(), int(now_ms)],
    )?;
    let alive_since = int(now_ms.saturating_sub(node_ttl_ms));
    let active = tx.query_one("SELECT COUNT(*) FROM nodes WHERE last_seen_ms >= ?1", &[alive_since])?.u64(0)?;
    let current: Vec<(Budget, (u64, u64))> = list(tx)?.into_iter().filter_map(|b| b.bounds(now_ms).map(|p| (b, p))).collect();
    // Reclaim what silent nodes hold but did not spend: one statement for
    // the current periods of every budget (a grant already down to its use
    // is left alone; earlier periods are over).
    let Some(earliest) = current.iter().map(|(_, (start, _))| *start).min() else {
        return Ok(GrantSnapshot { seq, nodes_active: u32::try_from(active).unwrap_or(u32::MAX), budgets: Vec::new() });
    };
    let spent = "(SELECT COALESCE(MAX(u.used_micros), 0), COALESCE(MAX(u.used_tokens), 0) FROM budget_usage_node u
        WHERE u.scope_type = budget_grants.scope_type AND u.scope_id = budget_grants.scope_id
          AND u.period_start_ms = budget_grants.period_start_ms AND u.node = budget_grants.node)";
    tx.execute(
        &format!(
            "UPDATE budget_grants SET (granted_micros, granted_tokens) = {spent}
             WHERE period_start_ms >= ?3 AND node <> ?1 AND node NOT IN (SELECT node FROM nodes WHERE last_seen_ms >= ?2)
               AND (granted_micros, granted_tokens) <> {spent}"
        ),
        &[node.into(), alive_since, int(earliest)],
    )?;
    // Every budget's use in the current periods and every node's use and
    // grant in them: one pass by period (indexed), not a query per budget.
    let mut periods: std::collections::HashMap<(String, String, u64), PeriodUse> = std::collections::HashMap::new();
    for r in tx.query(
        "SELECT CAST(0 AS BIGINT), scope_type, scope_id, period_start_ms, CAST(NULL AS TEXT), used_micros, used_tokens
           FROM budget_usage WHERE period_start_ms >= ?1
         UNION ALL
         SELECT CAST(1 AS BIGINT), scope_type, scope_id, period_start_ms, node, used_micros, used_tokens
           FROM budget_usage_node WHERE period_start_ms >= ?1
         UNION ALL
         SELECT CAST(2 AS BIGINT), scope_type, scope_id, period_start_ms, node, granted_micros, granted_tokens
           FROM budget_grants WHERE period_start_ms >= ?1",
        &[int(earliest)],
    )? {
        let p = periods.entry((r.text(1)?, r.text(2)?, r.u64(3)?)).or_default();
        let (what, micros, tokens) = (r.i64(0)?, r.u64(5)?, r.u64(6)?);
        match r.opt_text(4)? {
            None => p.used = (micros, tokens),
            Some(n) => {
                let ((um, gm), (ut, gt)) = p.nodes.entry(n).or_default();
                if what == 1 {
                    (*um, *ut) = (micros, tokens);
                } else {
                    (*gm, *gt) = (Some(micros), Some(tokens));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(current.len());
    for (b, (start, end)) in current {
        let scope = [Arg::Text(b.scope_type.as_str()), Arg::Text(&b.scope_id), int(start)];
        let found = periods.remove(&(b.scope_type.as_str().to_string(), b.scope_id.clone(), start)).unwrap_or_default();
        let used = found.used;
        let nodes: Vec<NodeUse> = found.nodes.into_iter().map(|(n, ((um, gm), (ut, gt)))| (n, (um, gm), (ut, gt))).collect();
        // This node's grant as it stands: rewritten only when it changes
        // (a budget nobody spent from since the last poll costs one read).
        let held = nodes.iter().find(|r| r.0 == node).map(|r| (r.1 .1, r.2 .1));
        let (doc, gm, gt) = grant_doc(&b, (start, end), used, nodes, node, active);
        out.push(doc);
        if held == Some((Some(gm), Some(gt))) {
            continue;
        }
        tx.execute(
            "INSERT INTO budget_grants (scope_type, scope_id, period_start_ms, node, granted_micros, granted_tokens)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (scope_type, scope_id, period_start_ms, node) DO UPDATE SET
                granted_micros = excluded.granted_micros, granted_tokens = excluded.granted_tokens",
            &[scope[0], scope[1], scope[2], node.into(), int(gm), int(gt)],
        )?;
    }
    Ok(GrantSnapshot { seq, nodes_active: u32::try_from(active).unwrap_or(u32::MAX), budgets: out })
}

/// Drops what served only ended periods and gone Envoys: grants and
/// per-Envoy use of periods before every budget's current one, those of
/// deleted budgets, and Envoys silent for `forget_after_ms`. Each budget's
/// use per period (its history) stays. Runs in a grant transaction, so
/// never beside a poll; a late record may bring a pruned per-Envoy row back
/// (it counts for its own period) until the next run.
pub fn prune(tx: &mut dyn Tx, now_ms: u64, forget_after_ms: u64) -> Result<Pruned> {
    let mut out = Pruned::default();
    let earliest = list(tx)?.iter().filter_map(|b| b.bounds(now_ms)).map(|(start, _)| start).min();
    if let Some(e) = earliest {
        out.grants += tx.execute("DELETE FROM budget_grants WHERE period_start_ms < ?1", &[int(e)])?;
        out.node_use += tx.execute("DELETE FROM budget_usage_node WHERE period_start_ms < ?1", &[int(e)])?;
    }
    for table in ["budget_grants", "budget_usage_node"] {
        let n = tx.execute(
            &format!(
                "DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM budgets b
                   WHERE b.scope_type = {table}.scope_type AND b.scope_id = {table}.scope_id)"
            ),
            &[],
        )?;
        if table == "budget_grants" {
            out.grants += n;
        } else {
            out.node_use += n;
        }
    }
    out.nodes = tx.execute("DELETE FROM nodes WHERE last_seen_ms < ?1", &[int(now_ms.saturating_sub(forget_after_ms))])?;
    Ok(out)
}

/// One budget period as the grant pass reads it: its use, and each node's
/// (used, granted) micros and tokens.
#[derive(Default)]
struct PeriodUse {
    used: (u64, u64),
    nodes: std::collections::BTreeMap<String, (UsedGranted, UsedGranted)>,
}

/// A node's use and grant (none yet) of one limit.
type UsedGranted = (u64, Option<u64>);

