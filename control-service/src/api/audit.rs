//! The guardrail audit trail: `GET /v1/audit` (sums per team, provider,
//! class and action), `GET /v1/audit/findings` (JSON or JSON Lines export),
//! `DELETE /v1/audit?before_ms=` (retention). Admin only: it says who sent
//! what class of data where.

use super::*;
use crate::store::AuditQuery;

fn audit_query(params: &HashMap<String, String>) -> ApiResult<AuditQuery> {
    let num = |k: &str| -> ApiResult<Option<u64>> {
        params
            .get(k)
            .map(|v| v.parse::<u64>().map_err(|_| ApiError::bad("invalid_field", format!("'{k}' must be an integer (Unix ms)"))))
            .transpose()
    };
    let to_ms = num("to_ms")?.unwrap_or_else(now_ms).min(MAX_TIME_MS);
    let from_ms = num("from_ms")?.unwrap_or(to_ms.saturating_sub(30 * DAY_MS));
    if from_ms >= to_ms {
        return Err(ApiError::bad("invalid_range", "from_ms must be before to_ms"));
    }
    let text = |k: &'static str, ok: &dyn Fn(&str) -> bool| -> ApiResult<Option<String>> {
        match params.get(k) {
            Some(v) if ok(v) => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::bad("invalid_field", format!("'{k}' is not a valid value"))),
            None => Ok(None),
        }
    };
    let name = |v: &str| !v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control);
    Ok(AuditQuery {
        from_ms,
        to_ms,
        class: text("class", &|v| !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))?,
        team: text("team", &name)?,
        provider: text("provider", &name)?,
        action: text("action", &|v| matches!(v, "observed" | "redacted" | "blocked"))?,
    })
}

pub(super) async fn audit_summary(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(params): Query<HashMap<String, String>>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let q = audit_query(&params)?;
    let store = st.store.clone();
    let q2 = q.clone();
    let rows = blocking(move || store.audit_summary(&q2)).await?;
    Ok(Json(json!({"from_ms": q.from_ms, "to_ms": q.to_ms, "rows": rows})))
}

pub(super) async fn audit_findings(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(params): Query<HashMap<String, String>>) -> ApiResult<Response> {
    admin(&st, &headers)?;
    let q = audit_query(&params)?;
    let limit = match params.get("limit") {
        Some(v) => v.parse::<u32>().ok().filter(|l| (1..=1_000_000).contains(l)).ok_or_else(|| ApiError::bad("invalid_field", "'limit' must be 1 to 1000000"))?,
        None => 10_000,
    };
    let store = st.store.clone();
    let rows = blocking(move || store.audit_findings(&q, limit)).await?;
    if params.get("format").map(String::as_str) == Some("jsonl") {
        let mut out = String::new();
        for r in &rows {
            out.push_str(&serde_json::to_string(r).unwrap_or_default());
            out.push('\n');
        }
        return Ok(([("content-type", "application/x-ndjson"), ("content-disposition", "attachment; filename=\"tollgate-audit.jsonl\"")], out).into_response());
    }
    Ok(Json(json!({"findings": rows})).into_response())
}

pub(super) async fn audit_purge(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(params): Query<HashMap<String, String>>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let before = params
        .get("before_ms")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad("invalid_field", "'before_ms' (Unix ms) is required"))?;
    let store = st.store.clone();
    let removed = blocking(move || store.purge_audit(before)).await?;
    log_event("info", "audit_purged", json!({"before_ms": before, "removed": removed}));
    Ok(Json(json!({"removed": removed})))
}
