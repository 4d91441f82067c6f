//! Budget increase requests and their decisions; alert delivery bookkeeping.

use crate::db::{int, opt_int, Arg, Tx};
use crate::store::*;

use super::budgets;
use super::rows::{self, ALERT_COLS, REQ_COLS};

pub fn create(tx: &mut dyn Tx, r: &IncreaseRequest) -> Result<IncreaseRequest> {
    let row = tx.query_one(
        &format!(
            "INSERT INTO budget_requests (scope_type, scope_id, limit_micros, limit_tokens, justification, requested_by, created_ms, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending') RETURNING {REQ_COLS}"
        ),
        &[
            r.scope_type.as_str().into(),
            (&r.scope_id).into(),
            opt_int(r.limit_micros),
            opt_int(r.limit_tokens),
            (&r.justification).into(),
            (&r.requested_by).into(),
            int(r.created_ms),
        ],
    )?;
    rows::request(&row)
}

pub fn list(tx: &mut dyn Tx, status: Option<&str>) -> Result<Vec<IncreaseRequest>> {
    let sql = format!("SELECT {REQ_COLS} FROM budget_requests WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) ORDER BY id DESC");
    rows::all(tx.query(&sql, &[status.into()])?, rows::request)
}

pub fn get(tx: &mut dyn Tx, id: i64) -> Result<Option<IncreaseRequest>> {
    tx.query_opt(&format!("SELECT {REQ_COLS} FROM budget_requests WHERE id = ?1"), &[Arg::Int(id)])?.as_ref().map(rows::request).transpose()
}

/// Approves or refuses a pending request; an approval applies the new
/// limit in the same transaction. The UPDATE's row lock (and the backend's
/// `TxKind::Budget` lock) orders concurrent decisions: the second finds it
/// decided and is a Conflict.
pub fn decide(tx: &mut dyn Tx, id: i64, approve: bool, by: &str, note: Option<&str>, now_ms: u64) -> Result<IncreaseRequest> {
    let status = if approve { "approved" } else { "refused" };
    let row = tx.query_opt(
        &format!(
            "UPDATE budget_requests SET status = ?2, decided_by = ?3, decided_ms = ?4, note = ?5
             WHERE id = ?1 AND status = 'pending' RETURNING {REQ_COLS}"
        ),
        &[Arg::Int(id), status.into(), by.into(), int(now_ms), note.into()],
    )?;
    let r = match row {
        Some(row) => rows::request(&row)?,
        None => {
            return match get(tx, id)? {
                Some(r) => Err(StoreError::Conflict(format!("request {id} was already {}", r.status))),
                None => Err(StoreError::NotFound(format!("no budget request {id}"))),
            }
        }
    };
    if approve {
        let current = budgets::get(tx, r.scope_type, &r.scope_id)?;
        budgets::put(tx, &Budget::approved(current, &r, now_ms), now_ms)?;
    }
    Ok(r)
}

pub fn alerts(tx: &mut dyn Tx, limit: u32) -> Result<Vec<AlertRow>> {
    rows::all(tx.query(&format!("SELECT {ALERT_COLS} FROM alerts ORDER BY id DESC LIMIT ?1"), &[Arg::Int(i64::from(limit))])?, rows::alert)
}

/// Alerts not yet delivered whose next attempt is due (at most 50 attempts).
pub fn due_alerts(tx: &mut dyn Tx, now_ms: u64) -> Result<Vec<AlertRow>> {
    let sql = format!(
        "SELECT {ALERT_COLS} FROM alerts WHERE delivered_ms IS NULL AND next_attempt_ms <= ?1 AND attempts < 50 ORDER BY id LIMIT 100"
    );
    rows::all(tx.query(&sql, &[int(now_ms)])?, rows::alert)
}

pub fn alert_attempted(tx: &mut dyn Tx, id: i64, ok: bool, error: Option<&str>, next_attempt_ms: u64, now_ms: u64) -> Result<()> {
    tx.execute(
        "UPDATE alerts SET attempts = attempts + 1, delivered_ms = ?2, last_error = ?3, next_attempt_ms = ?4 WHERE id = ?1",
        &[Arg::Int(id), opt_int(ok.then_some(now_ms)), error.into(), int(next_attempt_ms)],
    )?;
    Ok(())
}
