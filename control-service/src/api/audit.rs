//! Guardrails: the audit trail — `GET /v1/audit` (sums per team, provider,
//! direction, class and action), `GET /v1/audit/findings` (JSON or JSON
//! Lines export), `DELETE /v1/audit?before_ms=` (retention; also run on a
//! schedule, `--audit-retention-days`) — and the policy every Envoy applies:
//! `GET`/`PUT`/`DELETE /v1/guardrails`. Admin only: it says who sent what
//! class of data where, and decides what may leave.

use super::*;
use crate::store::AuditQuery;
use tollgate_protocol::guard::{GuardrailsDoc, PolicyDoc};

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
        direction: text("direction", &|v| matches!(v, "request" | "response"))?,
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

pub(super) async fn guardrails_get(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<GuardrailsDoc>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    Ok(Json(blocking(move || store.guard_policy()).await?))
}

/// Envoys fetch the policy with their fleet token (as they fetch keys).
pub(super) async fn guardrails_fetch(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<GuardrailsDoc>> {
    role(&st, &headers)?;
    let store = st.store.clone();
    Ok(Json(blocking(move || store.guard_policy()).await?))
}

/// `PUT /v1/guardrails`: a policy for every Envoy, checked as the filter
/// checks it (a refusal names the field).
pub(super) async fn guardrails_put(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Json<GuardrailsDoc>> {
    admin(&st, &headers)?;
    let policy: PolicyDoc = parse_json(&body, "invalid_policy")?;
    policy.validate().map_err(|(field, msg)| ApiError::bad("invalid_policy", format!("{field}: {msg}")))?;
    let store = st.store.clone();
    let doc = blocking(move || store.set_guard_policy(Some(&policy), now_ms())).await?;
    log_event("info", "guardrail_policy_set", json!({"seq": doc.seq, "version": doc.policy.as_ref().map(|p| p.version().to_string())}));
    Ok(Json(doc))
}

/// `DELETE /v1/guardrails`: every Envoy goes back to its own configuration's policy.
pub(super) async fn guardrails_clear(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<GuardrailsDoc>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let doc = blocking(move || store.set_guard_policy(None, now_ms())).await?;
    log_event("info", "guardrail_policy_cleared", json!({"seq": doc.seq}));
    Ok(Json(doc))
}

/// How often the retention sweep runs.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Scheduled retention: audit findings older than `audit_days` and
/// captured evaluation requests older than `capture_days` are removed, at
/// start and then hourly (0 keeps them).
pub async fn audit_retention_loop(st: Arc<AppState>, audit_days: u64, capture_days: u64) {
    if audit_days == 0 && capture_days == 0 {
        return;
    }
    loop {
        let now = now_ms();
        let before = |days: u64| (days > 0).then(|| now.saturating_sub(days.saturating_mul(DAY_MS)));
        let (audit_before, capture_before) = (before(audit_days), before(capture_days));
        let store = st.store.clone();
        let res = tokio::task::spawn_blocking(move || -> Result<(u64, u64), StoreError> {
            let a = match audit_before {
                Some(b) => store.purge_audit(b)?,
                None => 0,
            };
            let c = match capture_before {
                Some(b) => store.delete_eval_items(None, Some(b), None)?,
                None => 0,
            };
            Ok((a, c))
        })
        .await;
        match res {
            Ok(Ok((a, c))) if a + c > 0 => log_event("info", "retention", json!({"audit_removed": a, "captures_removed": c})),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log_event("warn", "retention_failed", json!({"error": e.to_string()})),
            Err(_) => {}
        }
        tokio::time::sleep(RETENTION_EVERY).await;
    }
}
