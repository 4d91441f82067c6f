//! The guardrail audit trail: what data classes went (or were stopped on
//! their way) to which provider, from which team — counts and actions, never
//! values. Filled at ingest from each record's `guardrails`.

use tollgate_protocol::record::UsageRecord;

use crate::db::{int, Arg, Tx};
use crate::store::*;

const INSERT: &str = "INSERT INTO guard_findings (record_id, ts_ms, key_id, team, project, provider, model, class, count, action, policy)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (record_id, class) DO NOTHING";

/// The findings of a record stored just now.
pub fn insert(tx: &mut dyn Tx, r: &UsageRecord) -> Result<()> {
    let Some(g) = &r.guardrails else { return Ok(()) };
    for (class, count) in &g.classes {
        tx.execute(
            INSERT,
            &[
                (&r.id).into(),
                int(r.ts_ms),
                (&r.key_id).into(),
                (&r.team).into(),
                (&r.project).into(),
                (&r.provider).into(),
                (&r.model_upstream).into(),
                class.as_str().into(),
                int(*count),
                g.action.as_str().into(),
                g.policy.as_str().into(),
            ],
        )?;
    }
    Ok(())
}

/// WHERE clause and arguments for a query (`?1`, `?2` the range).
fn filter<'a>(q: &'a AuditQuery) -> (String, Vec<Arg<'a>>) {
    let mut sql = String::from(" WHERE ts_ms >= ?1 AND ts_ms < ?2");
    let mut args: Vec<Arg<'a>> = vec![int(q.from_ms), int(q.to_ms)];
    for (col, v) in [("class", &q.class), ("team", &q.team), ("provider", &q.provider), ("action", &q.action)] {
        if let Some(v) = v {
            args.push(v.into());
            sql.push_str(&format!(" AND {col} = ?{}", args.len()));
        }
    }
    (sql, args)
}

/// Requests and values per team, provider, class and action, most first.
pub fn summary(tx: &mut dyn Tx, q: &AuditQuery) -> Result<Vec<AuditSum>> {
    let (wh, args) = filter(q);
    let sql = format!(
        "SELECT team, provider, class, action, COUNT(*), CAST(COALESCE(SUM(count),0) AS BIGINT) FROM guard_findings{wh}
         GROUP BY team, provider, class, action ORDER BY 5 DESC, 1, 2, 3, 4"
    );
    tx.query(&sql, &args)?
        .iter()
        .map(|r| {
            Ok(AuditSum { team: r.text(0)?, provider: r.opt_text(1)?, class: r.text(2)?, action: r.text(3)?, requests: r.u64(4)?, values: r.u64(5)? })
        })
        .collect()
}

/// The findings themselves, oldest first (for export), at most `limit`.
pub fn findings(tx: &mut dyn Tx, q: &AuditQuery, limit: u32) -> Result<Vec<AuditFinding>> {
    let (wh, args) = filter(q);
    let sql = format!(
        "SELECT record_id, ts_ms, key_id, team, project, provider, model, class, count, action, policy FROM guard_findings{wh}
         ORDER BY ts_ms, record_id, class LIMIT {limit}"
    );
    tx.query(&sql, &args)?
        .iter()
        .map(|r| {
            Ok(AuditFinding {
                record_id: r.text(0)?,
                ts_ms: r.u64(1)?,
                key_id: r.text(2)?,
                team: r.text(3)?,
                project: r.text(4)?,
                provider: r.opt_text(5)?,
                model: r.opt_text(6)?,
                class: r.text(7)?,
                count: r.u64(8)?,
                action: r.text(9)?,
                policy: r.text(10)?,
            })
        })
        .collect()
}

/// Retention: removes findings older than `before_ms`; how many went.
pub fn purge(tx: &mut dyn Tx, before_ms: u64) -> Result<u64> {
    tx.execute("DELETE FROM guard_findings WHERE ts_ms < ?1", &[int(before_ms)])
}
