//! Choosing cheaper models in the ledger: JSON compliance per record,
//! evaluation sets captured from traffic, evaluation runs, and the auto
//! router's policies and picks (whose change log numbers the Envoys'
//! `routing_seq`).

use std::collections::BTreeMap;

use tollgate_protocol::record::UsageRecord;
use tollgate_protocol::routing::{Routed, RoutingDoc};

use crate::db::{insert_rows, int, opt_int, Arg, Col, Row, Tx};
use crate::store::*;

/// The evaluation set a record's capture belongs to: its feature, else `route:<route>`.
pub fn set_of(r: &UsageRecord) -> String {
    match (&r.feature, &r.route) {
        (Some(f), _) => f.clone(),
        (None, Some(route)) => format!("route:{route}"),
        (None, None) => "unnamed".into(),
    }
}

/// The types of `json_checks`' and `eval_items`' columns, as `insert_all` fills them.
const CHECK_TYPES: [Col; 8] = {
    use Col::{Int as I, Text as T};
    [T, I, T, T, T, T, I, I]
};
const ITEM_TYPES: [Col; 10] = {
    use Col::{Int as I, Text as T};
    [T, T, I, T, T, T, T, T, I, I]
};

/// The JSON checks and captures of the records stored just now
/// (multi-row statements, as `audit::insert_all`).
pub fn insert_all(tx: &mut dyn Tx, records: &[&UsageRecord]) -> Result<()> {
    let mut checks: Vec<Arg<'_>> = Vec::new();
    for r in records {
        if let Some(j) = &r.json_check {
            checks.extend([(&r.id).into(), int(r.ts_ms), (&r.team).into(), (&r.feature).into(), (&r.provider).into(), (&r.model_upstream).into(), int(u64::from(j.valid)), int(u64::from(j.repaired))]);
        }
    }
    insert_rows(tx, "json_checks (record_id, ts_ms, team, feature, provider, model, valid, repaired)", "ON CONFLICT (record_id) DO NOTHING", &CHECK_TYPES, &checks)?;
    // (The set names are made first: the arguments borrow them.)
    let captured: Vec<(&UsageRecord, &tollgate_protocol::record::Capture, String)> =
        records.iter().filter_map(|r| r.capture.as_ref().map(|c| (*r, c, set_of(r)))).collect();
    let mut items: Vec<Arg<'_>> = Vec::new();
    for (r, c, set) in &captured {
        items.extend([
            set.as_str().into(),
            (&r.id).into(),
            int(r.ts_ms),
            if r.api == tollgate_protocol::Api::AnthropicMessages { "anthropic_messages" } else { "openai_chat" }.into(),
            (&r.route).into(),
            (&r.model_upstream).into(),
            c.request.as_str().into(),
            c.response.as_str().into(),
            int(r.cost_micros),
            int(r.latency_ms),
        ]);
    }
    insert_rows(
        tx,
        "eval_items (feature, record_id, ts_ms, api, route, model, request, response, cost_micros, latency_ms)",
        "ON CONFLICT (record_id) DO NOTHING",
        &ITEM_TYPES,
        &items,
    )?;
    Ok(())
}

/// JSON compliance per model (and provider), most requests first.
pub fn json_compliance(tx: &mut dyn Tx, from_ms: u64, to_ms: u64) -> Result<Vec<JsonCompliance>> {
    tx.query(
        "SELECT provider, model, COUNT(*), CAST(COALESCE(SUM(valid), 0) AS BIGINT), CAST(COALESCE(SUM(repaired), 0) AS BIGINT)
         FROM json_checks WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY provider, model ORDER BY 3 DESC LIMIT 200",
        &[int(from_ms), int(to_ms)],
    )?
    .iter()
    .map(|r| Ok(JsonCompliance { provider: r.opt_text(0)?, model: r.opt_text(1)?, asked: r.u64(2)?, valid: r.u64(3)?, repaired: r.u64(4)? }))
    .collect()
}

const ITEM_COLS: &str = "id, feature, record_id, ts_ms, api, route, model, request, response, cost_micros, latency_ms";

fn item(r: &Row) -> Result<EvalItem> {
    Ok(EvalItem {
        id: r.i64(0)?,
        feature: r.text(1)?,
        record_id: r.text(2)?,
        ts_ms: r.u64(3)?,
        api: r.text(4)?,
        route: r.opt_text(5)?,
        model: r.opt_text(6)?,
        request: r.text(7)?,
        response: r.text(8)?,
        cost_micros: r.u64(9)?,
        latency_ms: r.u64(10)?,
    })
}

/// A set's items, newest first, at most `limit`.
pub fn items(tx: &mut dyn Tx, feature: &str, limit: u32) -> Result<Vec<EvalItem>> {
    tx.query(&format!("SELECT {ITEM_COLS} FROM eval_items WHERE feature = ?1 ORDER BY id DESC LIMIT {limit}"), &[feature.into()])?.iter().map(item).collect()
}

/// Every set: items, first and last capture.
pub fn sets(tx: &mut dyn Tx) -> Result<Vec<EvalSet>> {
    tx.query("SELECT feature, COUNT(*), CAST(MIN(ts_ms) AS BIGINT), CAST(MAX(ts_ms) AS BIGINT) FROM eval_items GROUP BY feature ORDER BY feature", &[])?
        .iter()
        .map(|r| Ok(EvalSet { feature: r.text(0)?, items: r.u64(1)?, first_ms: r.u64(2)?, last_ms: r.u64(3)? }))
        .collect()
}

/// Deletes a set's items (older than `before_ms` when given, or one `id`); how many.
pub fn delete_items(tx: &mut dyn Tx, feature: Option<&str>, before_ms: Option<u64>, id: Option<i64>) -> Result<u64> {
    let mut sql = String::from("DELETE FROM eval_items WHERE 1 = 1");
    let mut args: Vec<Arg<'_>> = Vec::new();
    if let Some(f) = feature {
        args.push(f.into());
        sql.push_str(&format!(" AND feature = ?{}", args.len()));
    }
    if let Some(b) = before_ms {
        args.push(int(b));
        sql.push_str(&format!(" AND ts_ms < ?{}", args.len()));
    }
    if let Some(i) = id {
        args.push(Arg::Int(i));
        sql.push_str(&format!(" AND id = ?{}", args.len()));
    }
    tx.execute(&sql, &args)
}

const EVAL_COLS: &str = "id, feature, candidate, judge, status, created_ms, finished_ms, report";

fn eval(r: &Row) -> Result<EvalRun> {
    Ok(EvalRun {
        id: r.i64(0)?,
        feature: r.text(1)?,
        candidate: r.text(2)?,
        judge: r.opt_text(3)?,
        status: r.text(4)?,
        created_ms: r.u64(5)?,
        finished_ms: r.opt_u64(6)?,
        report: serde_json::from_str(&r.text(7)?).unwrap_or(serde_json::Value::Null),
    })
}

pub fn create_eval(tx: &mut dyn Tx, feature: &str, candidate: &str, judge: Option<&str>, report: &serde_json::Value, now_ms: u64) -> Result<EvalRun> {
    let row = tx.query_one(
        &format!("INSERT INTO evals (feature, candidate, judge, status, created_ms, report) VALUES (?1, ?2, ?3, 'running', ?4, ?5) RETURNING {EVAL_COLS}"),
        &[feature.into(), candidate.into(), judge.into(), int(now_ms), report.to_string().as_str().into()],
    )?;
    eval(&row)
}

pub fn finish_eval(tx: &mut dyn Tx, id: i64, status: &str, report: &serde_json::Value, now_ms: u64) -> Result<()> {
    tx.execute(
        "UPDATE evals SET status = ?2, finished_ms = ?3, report = ?4 WHERE id = ?1",
        &[Arg::Int(id), status.into(), opt_int(Some(now_ms)), report.to_string().as_str().into()],
    )?;
    Ok(())
}

pub fn get_eval(tx: &mut dyn Tx, id: i64) -> Result<Option<EvalRun>> {
    tx.query_opt(&format!("SELECT {EVAL_COLS} FROM evals WHERE id = ?1"), &[Arg::Int(id)])?.as_ref().map(eval).transpose()
}

/// Runs, newest first (of one feature when given).
pub fn evals(tx: &mut dyn Tx, feature: Option<&str>, limit: u32) -> Result<Vec<EvalRun>> {
    let rows = match feature {
        Some(f) => tx.query(&format!("SELECT {EVAL_COLS} FROM evals WHERE feature = ?1 ORDER BY id DESC LIMIT {limit}"), &[f.into()])?,
        None => tx.query(&format!("SELECT {EVAL_COLS} FROM evals ORDER BY id DESC LIMIT {limit}"), &[])?,
    };
    rows.iter().map(eval).collect()
}

/// Requests of a feature since `from_ms` (for projected savings).
pub fn feature_requests(tx: &mut dyn Tx, feature: &str, from_ms: u64) -> Result<u64> {
    tx.query_one("SELECT COUNT(*) FROM usage WHERE feature = ?1 AND ts_ms >= ?2", &[feature.into(), int(from_ms)])?.u64(0)
}

pub const ROUTING_SEQ: &str = "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM routing_events";

fn routing_seq(tx: &mut dyn Tx) -> Result<u64> {
    tx.query_one(ROUTING_SEQ, &[])?.u64(0)
}

pub fn set_policy(tx: &mut dyn Tx, feature: &str, policy: &serde_json::Value, now_ms: u64) -> Result<()> {
    tx.execute(
        "INSERT INTO routing_policies (feature, policy, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (feature) DO UPDATE SET policy = excluded.policy, updated_ms = excluded.updated_ms",
        &[feature.into(), policy.to_string().as_str().into(), int(now_ms)],
    )?;
    Ok(())
}

pub fn policy(tx: &mut dyn Tx, feature: &str) -> Result<Option<RoutingPolicyRow>> {
    tx.query_opt("SELECT feature, policy, chosen, reason, updated_ms FROM routing_policies WHERE feature = ?1", &[feature.into()])?
        .as_ref()
        .map(policy_row)
        .transpose()
}

fn policy_row(r: &Row) -> Result<RoutingPolicyRow> {
    Ok(RoutingPolicyRow {
        feature: r.text(0)?,
        policy: serde_json::from_str(&r.text(1)?).unwrap_or(serde_json::Value::Null),
        chosen: r.opt_text(2)?,
        reason: r.opt_text(3)?,
        updated_ms: r.u64(4)?,
    })
}

/// Points a feature at `model` (or nowhere), logging who and why.
pub fn choose(tx: &mut dyn Tx, feature: &str, model: Option<&str>, reason: &str, by: &str, now_ms: u64) -> Result<u64> {
    let n = tx.execute(
        "UPDATE routing_policies SET chosen = ?2, reason = ?3, updated_ms = ?4 WHERE feature = ?1",
        &[feature.into(), model.into(), reason.into(), int(now_ms)],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("feature '{feature}' has no routing policy")));
    }
    let seq = routing_seq(tx)? + 1;
    tx.execute(
        "INSERT INTO routing_events (seq, feature, model, reason, ts_ms, by_whom) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[int(seq), feature.into(), model.into(), reason.into(), int(now_ms), by.into()],
    )?;
    Ok(seq)
}

/// What every Envoy routes `auto` to.
pub fn routing_current(tx: &mut dyn Tx) -> Result<RoutingDoc> {
    let seq = routing_seq(tx)?;
    let mut features = BTreeMap::new();
    for r in tx.query("SELECT feature, policy, chosen, reason, updated_ms FROM routing_policies WHERE chosen IS NOT NULL ORDER BY feature", &[])?.iter() {
        let p = policy_row(r)?;
        if let Some(model) = p.chosen {
            let bind = p.policy.get("bind").and_then(serde_json::Value::as_bool).unwrap_or(false);
            features.insert(p.feature, Routed { model, reason: p.reason.unwrap_or_default(), bind });
        }
    }
    Ok(RoutingDoc { seq, features })
}

pub fn policies(tx: &mut dyn Tx) -> Result<Vec<RoutingPolicyRow>> {
    tx.query("SELECT feature, policy, chosen, reason, updated_ms FROM routing_policies ORDER BY feature", &[])?.iter().map(policy_row).collect()
}
