//! Guardrails in the ledger: the audit trail (what data classes went, or
//! were stopped on their way, to which provider, from which team, in
//! requests and in answers — counts and actions, never values; filled at
//! ingest from each record's `guardrails`) and the policy every Envoy
//! applies (`PUT /v1/guardrails`).

use tollgate_protocol::guard::{GuardrailsDoc, PolicyDoc};
use tollgate_protocol::record::UsageRecord;

use crate::db::{insert_rows, int, Arg, Col, Tx};
use crate::store::*;

/// The types of `guard_findings`' columns, as `insert_all` fills them.
const TYPES: [Col; 12] = {
    use Col::{Int as I, Text as T};
    [T, I, T, T, T, T, T, T, T, I, T, T]
};

/// The findings of the records stored just now: a few multi-row
/// statements a batch (a statement a finding took PostgreSQL's ingest from
/// about 45,000 to 16,000 records/s when a tenth of the records had two
/// findings and a third a cache miss).
pub fn insert_all(tx: &mut dyn Tx, records: &[&UsageRecord]) -> Result<()> {
    let mut args: Vec<Arg<'_>> = Vec::new();
    for r in records {
        let Some(g) = &r.guardrails else { continue };
        let request = g.classes.iter().map(|c| ("request", c, g.action.as_str()));
        let response = g.response_classes.iter().map(|c| ("response", c, g.response_action.as_deref().unwrap_or("observed")));
        for (direction, (class, count), action) in request.chain(response) {
            args.extend([
                (&r.id).into(),
                int(r.ts_ms),
                (&r.key_id).into(),
                (&r.team).into(),
                (&r.project).into(),
                (&r.provider).into(),
                (&r.model_upstream).into(),
                direction.into(),
                class.as_str().into(),
                int(*count),
                action.into(),
                g.policy.as_str().into(),
            ]);
        }
    }
    insert_rows(
        tx,
        "guard_findings (record_id, ts_ms, key_id, team, project, provider, model, direction, class, count, action, policy)",
        "ON CONFLICT (record_id, direction, class) DO NOTHING",
        &TYPES,
        &args,
    )?;
    Ok(())
}

/// WHERE clause and arguments for a query (`?1`, `?2` the range).
fn filter<'a>(q: &'a AuditQuery) -> (String, Vec<Arg<'a>>) {
    let mut sql = String::from(" WHERE ts_ms >= ?1 AND ts_ms < ?2");
    let mut args: Vec<Arg<'a>> = vec![int(q.from_ms), int(q.to_ms)];
    for (col, v) in [("class", &q.class), ("team", &q.team), ("provider", &q.provider), ("action", &q.action), ("direction", &q.direction)] {
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
        "SELECT team, provider, direction, class, action, COUNT(*), {} FROM guard_findings{wh}
         GROUP BY team, provider, direction, class, action ORDER BY 6 DESC, 1, 2, 3, 4, 5",
        tx.sum("count")
    );
    tx.query(&sql, &args)?
        .iter()
        .map(|r| {
            Ok(AuditSum {
                team: r.text(0)?,
                provider: r.opt_text(1)?,
                direction: r.text(2)?,
                class: r.text(3)?,
                action: r.text(4)?,
                requests: r.u64(5)?,
                values: r.u64(6)?,
            })
        })
        .collect()
}

/// The findings themselves, oldest first (for export), at most `limit`.
pub fn findings(tx: &mut dyn Tx, q: &AuditQuery, limit: u32) -> Result<Vec<AuditFinding>> {
    let (wh, args) = filter(q);
    let sql = format!(
        "SELECT record_id, ts_ms, key_id, team, project, provider, model, direction, class, count, action, policy FROM guard_findings{wh}
         ORDER BY ts_ms, record_id, direction, class LIMIT {limit}"
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
                direction: r.text(7)?,
                class: r.text(8)?,
                count: r.u64(9)?,
                action: r.text(10)?,
                policy: r.text(11)?,
            })
        })
        .collect()
}

/// Retention: removes findings older than `before_ms`; how many went.
pub fn purge(tx: &mut dyn Tx, before_ms: u64) -> Result<u64> {
    tx.execute("DELETE FROM guard_findings WHERE ts_ms < ?1", &[int(before_ms)])
}

/// The policy in force (the newest change), or none ever set.
pub fn policy(tx: &mut dyn Tx) -> Result<GuardrailsDoc> {
    let Some(row) = tx.query_opt("SELECT seq, policy, updated_ms FROM guard_policies ORDER BY seq DESC LIMIT 1", &[])? else {
        return Ok(GuardrailsDoc::default());
    };
    let policy = match row.opt_text(1)? {
        Some(text) => Some(serde_json::from_str::<PolicyDoc>(&text).map_err(|e| StoreError::Backend(format!("stored guardrail policy: {e}")))?),
        None => None,
    };
    Ok(GuardrailsDoc { seq: row.u64(0)?, policy, updated_ms: row.u64(2)? })
}

/// The policy's change sequence (0: never set).
pub const POLICY_SEQ: &str = "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM guard_policies";

fn policy_seq(tx: &mut dyn Tx) -> Result<u64> {
    tx.query_one(POLICY_SEQ, &[])?.u64(0)
}

/// Puts `policy` (validated by the caller) in force, or none (each Envoy's own).
pub fn set_policy(tx: &mut dyn Tx, policy: Option<&PolicyDoc>, now_ms: u64) -> Result<GuardrailsDoc> {
    let seq = policy_seq(tx)? + 1;
    let text = match policy {
        Some(p) => Some(serde_json::to_string(p).map_err(|e| StoreError::Backend(e.to_string()))?),
        None => None,
    };
    tx.execute("INSERT INTO guard_policies (seq, policy, updated_ms) VALUES (?1, ?2, ?3)", &[int(seq), text.as_deref().into(), int(now_ms)])?;
    Ok(GuardrailsDoc { seq, policy: policy.cloned(), updated_ms: now_ms })
}
