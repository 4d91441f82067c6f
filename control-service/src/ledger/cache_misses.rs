//! Prompt-cache misses in the ledger: one row per record whose filter
//! explained why the provider's cache could not serve it, filled at
//! ingest; summed per feature, prompt version, reason and segment.

use tollgate_protocol::record::UsageRecord;

use crate::db::{int, opt_int, Arg, Tx};
use crate::store::*;

/// The explanation of a record stored just now.
pub fn insert(tx: &mut dyn Tx, r: &UsageRecord) -> Result<()> {
    let Some(m) = &r.cache_miss else { return Ok(()) };
    tx.execute(
        "INSERT INTO cache_misses (record_id, ts_ms, key_id, team, project, feature, prompt_version, provider, model, reason, segment, offset_bytes, lost_micros)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (record_id) DO NOTHING",
        &[
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
        ],
    )?;
    Ok(())
}

/// Misses per feature, prompt version, model, reason and segment, costliest first.
pub fn summary(tx: &mut dyn Tx, q: &CacheMissQuery) -> Result<Vec<CacheMissSum>> {
    let mut sql = String::from(
        "SELECT feature, prompt_version, model, reason, segment, CAST(MIN(offset_bytes) AS BIGINT), COUNT(*),
                CAST(COALESCE(SUM(lost_micros), 0) AS BIGINT), CAST(MIN(ts_ms) AS BIGINT), CAST(MAX(ts_ms) AS BIGINT)
         FROM cache_misses WHERE ts_ms >= ?1 AND ts_ms < ?2",
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
