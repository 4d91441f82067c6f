//! Columns ↔ the store's types, one place for both dialects.

use tollgate_protocol::state::ScopeType;

use crate::db::Row;
use crate::periods::Period;
use crate::store::*;

pub const KEY_COLS: &str = "id, key_hash, team, project, models, projects, tags, created_ms, revoked_ms";

pub fn key(r: &Row) -> Result<KeyRow> {
    Ok(KeyRow {
        id: r.text(0)?,
        key_hash: r.text(1)?,
        team: r.text(2)?,
        project: r.text(3)?,
        models: r.opt_text(4)?.and_then(|m| serde_json::from_str(&m).ok()),
        projects: serde_json::from_str(&r.text(5)?).unwrap_or_default(),
        tags: serde_json::from_str(&r.text(6)?).unwrap_or_default(),
        created_ms: r.u64(7)?,
        revoked_ms: r.opt_u64(8)?,
    })
}

pub const BUDGET_COLS: &str =
    "scope_type, scope_id, limit_micros, limit_tokens, period, timezone, window_start_ms, window_end_ms, soft_pct, hard_pct, updated_ms";

pub fn scope(s: &str) -> Result<ScopeType> {
    ScopeType::parse(s).ok_or_else(|| StoreError::Backend(format!("unknown scope type '{s}' in the database")))
}

fn pct(v: Option<u64>) -> Option<u32> {
    v.map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

pub fn budget(r: &Row) -> Result<Budget> {
    let period = r.text(4)?;
    Ok(Budget {
        scope_type: scope(&r.text(0)?)?,
        scope_id: r.text(1)?,
        limit_micros: r.opt_u64(2)?,
        limit_tokens: r.opt_u64(3)?,
        period: Period::parse(&period).ok_or_else(|| StoreError::Backend(format!("unknown period '{period}' in the database")))?,
        timezone: r.text(5)?,
        window_start_ms: r.opt_u64(6)?,
        window_end_ms: r.opt_u64(7)?,
        soft_pct: pct(r.opt_u64(8)?),
        hard_pct: pct(r.opt_u64(9)?),
        updated_ms: r.u64(10)?,
    })
}

pub const ALERT_COLS: &str = "id, scope_type, scope_id, threshold, period_start_ms, used_micros, used_tokens, limit_micros, limit_tokens, created_ms, delivered_ms, attempts, last_error";

pub fn alert(r: &Row) -> Result<AlertRow> {
    Ok(AlertRow {
        id: r.i64(0)?,
        scope_type: scope(&r.text(1)?)?,
        scope_id: r.text(2)?,
        threshold: r.text(3)?,
        period_start_ms: r.u64(4)?,
        used_micros: r.u64(5)?,
        used_tokens: r.u64(6)?,
        limit_micros: r.opt_u64(7)?,
        limit_tokens: r.opt_u64(8)?,
        created_ms: r.u64(9)?,
        delivered_ms: r.opt_u64(10)?,
        attempts: u32::try_from(r.u64(11)?).unwrap_or(u32::MAX),
        last_error: r.opt_text(12)?,
    })
}

pub const REQ_COLS: &str =
    "id, scope_type, scope_id, limit_micros, limit_tokens, justification, requested_by, created_ms, status, decided_by, decided_ms, note";

pub fn request(r: &Row) -> Result<IncreaseRequest> {
    Ok(IncreaseRequest {
        id: r.i64(0)?,
        scope_type: scope(&r.text(1)?)?,
        scope_id: r.text(2)?,
        limit_micros: r.opt_u64(3)?,
        limit_tokens: r.opt_u64(4)?,
        justification: r.text(5)?,
        requested_by: r.text(6)?,
        created_ms: r.u64(7)?,
        status: r.text(8)?,
        decided_by: r.opt_text(9)?,
        decided_ms: r.opt_u64(10)?,
        note: r.opt_text(11)?,
    })
}

pub fn all<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// The usage column a scope counts by.
pub fn scope_column(st: ScopeType) -> &'static str {
    match st {
        ScopeType::Key => "key_id",
        ScopeType::Team => "team",
        ScopeType::Project => "project",
    }
}

pub fn used(r: Option<Row>) -> Result<Used> {
    match r {
        Some(r) => Ok(Used { micros: r.u64(0)?, tokens: r.u64(1)? }),
        None => Ok(Used::default()),
    }
}
