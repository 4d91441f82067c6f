//! What a state answer reads of the budgets' current periods: each
//! budget's use, and every Envoy's use and grant, in one pass per
//! statement (a full state, one of its pages, or a delta's budgets).

use std::collections::BTreeMap;

use tollgate_protocol::state::ScopeType;

use crate::db::{int, params, statement_chunks, Arg, Tx};
use crate::store::*;

pub(super) type Periods = std::collections::HashMap<(String, String, u64), PeriodUse>;

/// Columns: what (0 use, 1 a node's use, 2 a node's grant), scope type,
/// scope id, period start, node, micros, tokens, short.
const PERIOD_ROWS: &str = "SELECT CAST(0 AS BIGINT), scope_type, scope_id, period_start_ms, CAST(NULL AS TEXT), used_micros, used_tokens, CAST(0 AS BIGINT)
       FROM budget_usage WHERE {where}
     UNION ALL
     SELECT CAST(1 AS BIGINT), scope_type, scope_id, period_start_ms, node, used_micros, used_tokens, CAST(0 AS BIGINT)
       FROM budget_usage_node WHERE {where}
     UNION ALL
     SELECT CAST(2 AS BIGINT), scope_type, scope_id, period_start_ms, node, granted_micros, granted_tokens, short
       FROM budget_grants WHERE {where}";

/// Every budget's use in the current periods and every node's use and
/// grant in them: one pass by period (indexed), not a query per budget.
pub(super) fn every_period(tx: &mut dyn Tx, node: &str, current: &[(Budget, (u64, u64))]) -> Result<Periods> {
    let mut periods = Periods::new();
    let Some(earliest) = current.iter().map(|(_, (start, _))| *start).min() else { return Ok(periods) };
    let rows = tx.query(&PERIOD_ROWS.replace("{where}", "period_start_ms >= ?1"), &[int(earliest)])?;
    absorb(&mut periods, node, &rows)?;
    Ok(periods)
}

/// The same for one page of a full state (budgets in scope order): one
/// range of the tables' primary keys per scope type on the page, from the
/// type's first scope to its last, instead of a read per budget. The type
/// is compared for equality: PostgreSQL estimates a row comparison
/// `(scope_type, scope_id) >= (…)` by its first column alone, took the
/// range for the whole table and scanned it (300–470 ms a page at 200,000
/// budgets, 30–45 ms on the key).
pub(super) fn page_periods(tx: &mut dyn Tx, node: &str, current: &[(Budget, (u64, u64))]) -> Result<Periods> {
    let mut periods = Periods::new();
    let Some(earliest) = current.iter().map(|(_, (start, _))| *start).min() else { return Ok(periods) };
    let range = "scope_type = ?1 AND scope_id >= ?2 AND scope_id <= ?3 AND period_start_ms >= ?4";
    let sql = PERIOD_ROWS.replace("{where}", range);
    for run in current.chunk_by(|(a, _), (b, _)| a.scope_type == b.scope_type) {
        let (Some((first, _)), Some((last, _))) = (run.first(), run.last()) else { continue };
        let args = [Arg::Text(first.scope_type.as_str()), Arg::Text(&first.scope_id), Arg::Text(&last.scope_id), int(earliest)];
        absorb(&mut periods, node, &tx.query(&sql, &args)?)?;
    }
    Ok(periods)
}

/// The same for the budgets of a delta (scattered in scope order): one
/// read per scope type and period, of up to `db::ROWS_PER_STATEMENT` scopes
/// each (not one a budget: a round trip each on PostgreSQL).
pub(super) fn these_periods(tx: &mut dyn Tx, node: &str, current: &[(Budget, (u64, u64))]) -> Result<Periods> {
    let mut periods = Periods::new();
    let mut groups: BTreeMap<(ScopeType, u64), Vec<&str>> = BTreeMap::new();
    for (b, (start, _)) in current {
        groups.entry((b.scope_type, *start)).or_default().push(&b.scope_id);
    }
    for ((t, start), ids) in groups {
        for chunk in statement_chunks(&ids) {
            let list = params(3, chunk.len());
            let mut args: Vec<Arg<'_>> = vec![Arg::Text(t.as_str()), int(start)];
            args.extend(chunk.iter().map(|id| Arg::Text(id)));
            let sql = PERIOD_ROWS.replace("{where}", &format!("scope_type = ?1 AND period_start_ms = ?2 AND scope_id IN ({list})"));
            absorb(&mut periods, node, &tx.query(&sql, &args)?)?;
        }
    }
    Ok(periods)
}

fn absorb(periods: &mut Periods, node: &str, rows: &[crate::db::Row]) -> Result<()> {
    for r in rows {
        let p = periods.entry((r.text(1)?, r.text(2)?, r.u64(3)?)).or_default();
        let (what, micros, tokens) = (r.i64(0)?, r.u64(5)?, r.u64(6)?);
        match r.opt_text(4)? {
            None => p.used = (micros, tokens),
            Some(n) => {
                if what == 2 && n == node {
                    p.mine_short = r.i64(7)? != 0;
                }
                let ((um, gm), (ut, gt)) = p.nodes.entry(n).or_default();
                if what == 1 {
                    (*um, *ut) = (micros, tokens);
                } else {
                    (*gm, *gt) = (Some(micros), Some(tokens));
                }
            }
        }
    }
    Ok(())
}

/// One budget period as the grant pass reads it: its use, each node's
/// (used, granted) micros and tokens, and whether the polling node's grant
/// was short of its fair part.
#[derive(Default)]
pub(super) struct PeriodUse {
    pub(super) used: (u64, u64),
    pub(super) nodes: BTreeMap<String, (UsedGranted, UsedGranted)>,
    pub(super) mine_short: bool,
}

/// A node's use and grant (none yet) of one limit.
pub(super) type UsedGranted = (u64, Option<u64>);
