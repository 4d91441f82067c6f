//! Prompt-cache misses in the ledger: one row per record whose filter
//! explained why the provider's cache could not serve it, filled at
//! ingest; summed per feature, prompt version, reason and segment.

use tollgate_protocol::record::UsageRecord;

use crate::db::{insert_rows, int, opt_int, Arg, Col, Tx};
use crate::store::*;

/// The types of `cache_misses`' columns, as `insert_all` fills them.
const TYPES: [Col; 13] = {
    use Col::{Int as I, Text as T};
    [T, I, T, T, T, T, T, T, T, T, T, I, I]
};

/// The explanations of the records stored just now (multi-row statements,
/// as `audit::insert_all`).
pub fn insert_all(tx: &mut dyn Tx, records: &[&UsageRecord]) -> Result<()> {
    let mut args: Vec<Arg<'_>> = Vec::new();
    for r in records {
        let Some(m) = &r.cache_miss else { continue };
        args.extend([
            (&r.id).into(),
            int(r.ts_ms),
            (&r.key_id).into(),
            (&r.team).into(),
            (&r.project).into(),
            (&r.feature).into(),
            (&r.prompt_version).into(),
            (&r.provider).into(),
            (&r.model_upstream).into(),
            m.reason.as_str().into(),
            (&m.segment).into(),
            opt_int(m.offset),
            int(m.lost_micros),
        ]);
    }
    insert_rows(
        tx,
        "cache_misses (record_id, ts_ms, key_id, team, project, feature, prompt_version, provider, model, reason, segment, offset_bytes, lost_micros)",
        "ON CONFLICT (record_id) DO NOTHING",
        &TYPES,
        &args,
    )?;
    Ok(())
}

/// Misses per feature, prompt version, model, reason and segment, costliest first.
pub fn summary(tx: &mut dyn Tx, q: &CacheMissQuery) -> Result<Vec<CacheMissSum>> {
    let mut sql = format!(
        "SELECT feature, prompt_version, model, reason, segment, CAST(MIN(offset_bytes) AS BIGINT), COUNT(*),
                {}, CAST(MIN(ts_ms) AS BIGINT), CAST(MAX(ts_ms) AS BIGINT)
         FROM cache_misses WHERE ts_ms >= ?1 AND ts_ms < ?2",
        tx.sum("lost_micros")
    );
    let mut args: Vec<Arg<'_>> = vec![int(q.from_ms), int(q.to_ms)];
    for (col, v) in [("team", &q.team), ("feature", &q.feature)] {
        if let Some(v) = v {
            args.push(v.into());
            sql.push_str(&format!(" AND {col} = ?{}", args.len()));
        }
    }
    sql.push_str(" GROUP BY feature, prompt_version, model, reason, segment ORDER BY 8 DESC, 7 DESC LIMIT 100");
    tx.query(&sql, &args)?
        .iter()
        .map(|r| {
            Ok(CacheMissSum {
                feature: r.opt_text(0)?,
                prompt_version: r.opt_text(1)?,
                model: r.opt_text(2)?,
                reason: r.text(3)?,
                segment: r.opt_text(4)?,
                offset: r.opt_u64(5)?,
                requests: r.u64(6)?,
                lost_micros: r.u64(7)?,
                since_ms: r.u64(8)?,
                last_ms: r.u64(9)?,
            })
        })
        .collect()
}

/// The rule for a cache-drop alert: over the last `window_ms`, the newest
/// prompt version of a feature (by first use) hit the cache at most half
/// as often as the version before it, which hit at least `min_before_permille`;
/// both with at least `min_requests` requests whose provider reported its cache.
#[derive(Debug, Clone, Copy)]
pub struct DropRule {
    pub window_ms: u64,
    pub min_requests: u64,
    pub min_before_permille: u64,
}

pub const DROP_RULE: DropRule = DropRule { window_ms: 7 * 86_400_000, min_requests: 5, min_before_permille: 200 };

/// Raises the alerts the rule finds (once per feature and version); how many are new.
pub fn check_drops(tx: &mut dyn Tx, now_ms: u64, rule: DropRule) -> Result<u64> {
    let rows = tx.query(
        &format!(
            "SELECT feature, prompt_version, COUNT(*), {}, {}, CAST(MIN(ts_ms) AS BIGINT)
             FROM usage WHERE ts_ms >= ?1 AND feature IS NOT NULL AND prompt_version IS NOT NULL AND cache_reported_input_tokens > 0
             GROUP BY feature, prompt_version ORDER BY feature, 6",
            tx.sum("cached_input_tokens"),
            tx.sum("cache_reported_input_tokens")
        ),
        &[int(now_ms.saturating_sub(rule.window_ms))],
    )?;
    // (feature, version, requests, hit ‰), oldest version first per feature
    let mut per: Vec<(String, String, u64, u64)> = Vec::new();
    for r in &rows {
        let (cached, reported) = (r.u64(3)?, r.u64(4)?);
        per.push((r.text(0)?, r.text(1)?, r.u64(2)?, cached.saturating_mul(1000).checked_div(reported).unwrap_or(0)));
    }
    let mut new = 0;
    for pair in per.windows(2) {
        let [(f0, v0, n0, h0), (f1, v1, n1, h1)] = pair else { continue };
        let newest = per.iter().rev().find(|p| p.0 == *f1).map(|p| &p.1);
        if f0 != f1 || newest != Some(v1) || *n0 < rule.min_requests || *n1 < rule.min_requests || *h0 < rule.min_before_permille || h1 * 2 > *h0 {
            continue;
        }
        new += tx.execute(
            "INSERT INTO cache_alerts (feature, prompt_version, previous_version, hit_before_permille, hit_after_permille, requests_after, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (feature, prompt_version) DO NOTHING",
            &[f1.into(), v1.into(), v0.into(), int(*h0), int(*h1), int(*n1), int(now_ms)],
        )?;
    }
    Ok(new)
}

const ALERT_COLS: &str =
    "id, feature, prompt_version, previous_version, hit_before_permille, hit_after_permille, requests_after, created_ms, delivered_ms, attempts, last_error";

fn alert_row(r: &crate::db::Row) -> Result<CacheAlert> {
    Ok(CacheAlert {
        id: r.i64(0)?,
        feature: r.text(1)?,
        prompt_version: r.text(2)?,
        previous_version: r.text(3)?,
        hit_before_permille: r.u64(4)?,
        hit_after_permille: r.u64(5)?,
        requests_after: r.u64(6)?,
        created_ms: r.u64(7)?,
        delivered_ms: r.opt_u64(8)?,
        attempts: u32::try_from(r.u64(9)?).unwrap_or(u32::MAX),
        last_error: r.opt_text(10)?,
    })
}

pub fn alerts(tx: &mut dyn Tx, limit: u32) -> Result<Vec<CacheAlert>> {
    tx.query(&format!("SELECT {ALERT_COLS} FROM cache_alerts ORDER BY id DESC LIMIT {limit}"), &[])?.iter().map(alert_row).collect()
}

pub fn due_alerts(tx: &mut dyn Tx, now_ms: u64) -> Result<Vec<CacheAlert>> {
    tx.query(&format!("SELECT {ALERT_COLS} FROM cache_alerts WHERE delivered_ms IS NULL AND next_attempt_ms <= ?1 AND attempts < 50 ORDER BY id LIMIT 100"), &[int(now_ms)])?
        .iter()
        .map(alert_row)
        .collect()
}

pub fn alert_attempted(tx: &mut dyn Tx, id: i64, ok: bool, error: Option<&str>, next_attempt_ms: u64, now_ms: u64) -> Result<()> {
    tx.execute(
        "UPDATE cache_alerts SET attempts = attempts + 1, delivered_ms = ?2, last_error = ?3, next_attempt_ms = ?4 WHERE id = ?1",
        &[Arg::Int(id), opt_int(ok.then_some(now_ms)), error.into(), int(next_attempt_ms)],
    )?;
    Ok(())
}
