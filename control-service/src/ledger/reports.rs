//! Spend: totals and grouped reports, straight from the usage records.

use tollgate_protocol::state::ScopeType;

use crate::db::{int, Arg, Tx};
use crate::reports::{Dim, ReportQuery, ReportRow};
use crate::store::*;

/// Totals for a scope and range: the report with no grouping.
pub fn spend(tx: &mut dyn Tx, f: &SpendFilter) -> Result<SpendTotals> {
    let filters = f
        .scope
        .as_ref()
        .map(|(t, id)| {
            let d = match t {
                ScopeType::Key => Dim::Key,
                ScopeType::Team => Dim::Team,
                ScopeType::Project => Dim::Project,
            };
            vec![(d, id.clone())]
        })
        .unwrap_or_default();
    let q = ReportQuery {
        group_by: vec![],
        bucket: None,
        from_ms: f.from_ms.unwrap_or(0),
        to_ms: f.to_ms.unwrap_or(i64::MAX as u64),
        filters,
        top: None,
    };
    let r = report(tx, &q)?.into_iter().next().unwrap_or_default();
    Ok(SpendTotals {
        requests: r.requests,
        input_tokens: r.input_tokens,
        cached_input_tokens: r.cached_input_tokens,
        output_tokens: r.output_tokens,
        cost_micros: r.cost_micros,
    })
}

/// Spend grouped by dimensions and time buckets, highest cost first. The
/// column names come from `Dim::column` (a closed set), values are bound.
pub fn report(tx: &mut dyn Tx, q: &ReportQuery) -> Result<Vec<ReportRow>> {
    let mut select: Vec<String> = q.group_by.iter().map(|d| d.column().to_string()).collect();
    let mut group = select.clone();
    match q.bucket {
        Some(b) => {
            select.push(format!("(ts_ms / {0}) * {0}", b.ms()));
            group.push(format!("(ts_ms / {0}) * {0}", b.ms()));
        }
        None => select.push("CAST(NULL AS BIGINT)".into()),
    }
    let mut sql = format!(
        "SELECT {}, COUNT(*), {}, {}, {}, {},
                CAST(COALESCE(SUM(CASE WHEN outcome IN ('provider_error','upstream_cut') THEN 1 ELSE 0 END),0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN status = 429 THEN 1 ELSE 0 END),0) AS BIGINT), {}, {}
         FROM usage WHERE ts_ms >= ?1 AND ts_ms < ?2",
        select.join(", "),
        tx.sum("input_tokens"),
        tx.sum("cached_input_tokens"),
        tx.sum("output_tokens"),
        tx.sum("cost_micros"),
        tx.sum("cache_reported_input_tokens"),
        tx.sum("cache_savings_micros"),
    );
    let mut args: Vec<Arg<'_>> = vec![int(q.from_ms), int(q.to_ms)];
    for (d, v) in &q.filters {
        args.push(v.into());
        sql.push_str(&format!(" AND {} = ?{}", d.column(), args.len()));
    }
    if !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
    }
    // Columns (1-based): dims 1..=n, bucket n+1, then count, input, cached, output, cost (n+6).
    let n = q.group_by.len();
    if q.bucket.is_some() {
        sql.push_str(&format!(" ORDER BY {} ASC, {} DESC", n + 1, n + 6));
    } else {
        sql.push_str(&format!(" ORDER BY {} DESC", n + 6));
        if let Some(t) = q.top {
            sql.push_str(&format!(" LIMIT {t}"));
        }
    }
    tx.query(&sql, &args)?
        .iter()
        .map(|r| {
            Ok(ReportRow {
                group: (0..n).map(|k| r.opt_text(k)).collect::<Result<_>>()?,
                bucket_start_ms: r.opt_u64(n)?,
                requests: r.u64(n + 1)?,
                input_tokens: r.u64(n + 2)?,
                cached_input_tokens: r.u64(n + 3)?,
                output_tokens: r.u64(n + 4)?,
                cost_micros: r.u64(n + 5)?,
                errors: r.u64(n + 6)?,
                rate_limited: r.u64(n + 7)?,
                cache_reported_input_tokens: r.u64(n + 8)?,
                cache_savings_micros: r.i64(n + 9)?,
            })
        })
        .collect()
}
