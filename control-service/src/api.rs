//! The HTTP API (axum), generic over the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_filter::keys::{hash_key, to_hex};
use tollgate_filter::record::UsageRecord;
use tollgate_filter::state::{BudgetDoc, IngestBatch, KeyDoc, RejectedRecord, ScopeType, StateDoc};

use crate::periods::{parse_tz, Period};
use crate::store::{Budget, KeyRow, SpendFilter, Store, StoreError};
use crate::{log_event, now_ms};

/// The latest instant the service accepts in a budget window: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

pub struct Settings {
    pub admin_token_hash: String,
    pub filter_token_hash: String,
    pub webhook_url: Option<String>,
    /// An Envoy counts as active this long after its last state poll.
    pub node_ttl_ms: u64,
    /// The filter's .wasm (`TOLLGATE_FILTER_WASM`), served at
    /// `GET /v1/filter.wasm` so meshes can fetch it over HTTP: (bytes, sha256 hex).
    pub filter_wasm: Option<(Vec<u8>, String)>,
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub alerts_wake: tokio::sync::Notify,
    pub counters: Counters,
}

/// Process counters for /metrics.
#[derive(Default)]
pub struct Counters {
    pub ingest_batches: std::sync::atomic::AtomicU64,
    pub ingest_records: std::sync::atomic::AtomicU64,
    pub ingest_duplicates: std::sync::atomic::AtomicU64,
    pub ingest_errors: std::sync::atomic::AtomicU64,
    pub ingest_rejected: std::sync::atomic::AtomicU64,
    pub state_polls: std::sync::atomic::AtomicU64,
    pub state_not_modified: std::sync::atomic::AtomicU64,
    pub alerts_delivered: std::sync::atomic::AtomicU64,
    pub alerts_failed: std::sync::atomic::AtomicU64,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Arc<AppState> {
        Arc::new(AppState { store, settings, alerts_wake: tokio::sync::Notify::new(), counters: Counters::default() })
    }
}

/// A typed API error: status + JSON body in the same shape as the filter's errors.
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, code, message: message.into() }
    }
    fn bad(code: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, m)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found_error", "not_found", m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "invalid_request_error", "conflict", m),
            StoreError::Invalid(m) => ApiError::bad("invalid", m),
            StoreError::Backend(m) => {
                // Internals go to the log, not to the client.
                log_event("error", "store error", json!({"error": m}));
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", "storage_unavailable", "storage is unavailable")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"type": "error", "error": {"type": self.kind, "code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

#[derive(PartialEq, Eq, Clone, Copy)]
enum Role {
    Admin,
    Filter,
}

/// The bearer token of a request (same parsing as the gateway's key extraction).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    tollgate_filter::keys::presented_key(headers.get("authorization").and_then(|v| v.to_str().ok()), None)
}

fn role(state: &AppState, headers: &HeaderMap) -> ApiResult<Role> {
    let token = bearer(headers).ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", "missing_token", "send 'Authorization: Bearer <token>'"))?;
    let h = hash_key(token);
    if h == state.settings.admin_token_hash {
        Ok(Role::Admin)
    } else if h == state.settings.filter_token_hash {
        Ok(Role::Filter)
    } else {
        Err(ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", "invalid_token", "unknown token"))
    }
}

fn admin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    match role(state, headers)? {
        Role::Admin => Ok(()),
        Role::Filter => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "admin_only",
            "the filter token may only ingest usage and read state",
        )),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::from(StoreError::Backend(e.to_string()))),
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/filter.wasm", get(filter_wasm))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(dashboard))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{id}", get(get_key))
        .route("/v1/keys/{id}/revoke", post(revoke_key))
        .route("/v1/keys/{id}/rotate", post(rotate_key))
        .route("/v1/budgets", get(list_budgets))
        .route("/v1/budgets/{scope_type}/{scope_id}", put(put_budget).get(get_budget).delete(delete_budget))
        // Batches are bounded by the filter (control.max_batch_bytes, at most 16 MiB).
        .route("/v1/usage", post(ingest).layer(axum::extract::DefaultBodyLimit::max(16 << 20)))
        .route("/v1/state", get(get_state))
        .route("/v1/alerts", get(list_alerts))
        .route("/v1/spend", get(spend))
        .route("/v1/budget-requests", post(create_request).get(list_requests))
        .route("/v1/budget-requests/{id}/approve", post(approve_request))
        .route("/v1/budget-requests/{id}/refuse", post(refuse_request))
        .route("/v1/reports/spend", get(report_spend))
        .route("/v1/reports/movers", get(report_movers))
        .route("/v1/reports/monthly", get(report_monthly))
        .with_state(state)
}

async fn healthz(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let store = st.store.clone();
    let seq = blocking(move || store.seq()).await?;
    Ok(Json(json!({"status": "ok", "seq": seq})))
}

fn new_secret(prefix: &str) -> ApiResult<String> {
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| ApiError::from(StoreError::Backend(e.to_string())))?;
    Ok(format!("{prefix}{}", to_hex(&raw)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    id: Option<String>,
    team: String,
    project: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    projects: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn valid_name(field: &str, v: &str) -> ApiResult<()> {
    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b)) {
        return Err(ApiError::bad("invalid_field", format!("'{field}' must be 1-128 characters of [A-Za-z0-9-_.:/@]")));
    }
    Ok(())
}

fn key_json(k: &KeyRow) -> Value {
    json!({"id": k.id, "key_hash": k.key_hash, "team": k.team, "project": k.project, "models": k.models,
           "projects": k.projects, "tags": k.tags, "created_ms": k.created_ms, "revoked_ms": k.revoked_ms,
           "status": if k.revoked_ms.is_some() { "revoked" } else { "active" }})
}

async fn create_key(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Response> {
    admin(&st, &headers)?;
    let req: NewKey = serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))?;
    valid_name("team", &req.team)?;
    valid_name("project", &req.project)?;
    let secret = new_secret("tg-")?;
    let id = match req.id {
        Some(id) => {
            valid_name("id", &id)?;
            id
        }
        None => format!("key-{}", &hash_key(&secret)[..12]),
    };
    let row = KeyRow {
        id,
        key_hash: hash_key(&secret),
        team: req.team,
        project: req.project,
        models: req.models,
        projects: req.projects,
        tags: req.tags,
        created_ms: now_ms(),
        revoked_ms: None,
    };
    let store = st.store.clone();
    let r = row.clone();
    blocking(move || store.create_key(&r)).await?;
    log_event("info", "key created", json!({"key_id": row.id, "team": row.team, "project": row.project}));
    let mut v = key_json(&row);
    v["key"] = Value::String(secret);
    v["note"] = Value::String("the key is shown once; only its hash is stored".into());
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn list_keys(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let keys = blocking(move || store.list_keys()).await?;
    Ok(Json(json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()})))
}

async fn get_key(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let idc = id.clone();
    match blocking(move || store.get_key(&idc)).await? {
        Some(k) => Ok(Json(key_json(&k))),
        None => Err(StoreError::NotFound(format!("no key with id '{id}'")).into()),
    }
}

async fn revoke_key(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let idc = id.clone();
    blocking(move || store.revoke_key(&idc, now_ms())).await?;
    log_event("info", "key revoked", json!({"key_id": id}));
    Ok(Json(json!({"id": id, "status": "revoked"})))
}

async fn rotate_key(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let secret = new_secret("tg-")?;
    let h = hash_key(&secret);
    let store = st.store.clone();
    let (idc, hc) = (id.clone(), h.clone());
    blocking(move || store.set_key_hash(&idc, &hc)).await?;
    log_event("info", "key rotated", json!({"key_id": id}));
    Ok(Json(json!({"id": id, "key": secret, "key_hash": h, "note": "the old key stopped working; the new key is shown once"})))
}

/// A JSON field that may be absent (default), null (off) or a number.
fn pct_field(v: &Option<Value>, name: &str, default: u32) -> ApiResult<Option<u32>> {
    match v {
        None => Ok(Some(default)),
        Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(p) if (1..=1000).contains(&p) => Ok(Some(p as u32)),
            _ => Err(ApiError::bad("invalid_field", format!("'{name}' must be an integer percent from 1 to 1000, or null"))),
        },
        Some(_) => Err(ApiError::bad("invalid_field", format!("'{name}' must be an integer percent, or null to turn it off"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetReq {
    #[serde(default)]
    limit_micros: Option<u64>,
    #[serde(default)]
    limit_tokens: Option<u64>,
    period: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    window_start_ms: Option<u64>,
    #[serde(default)]
    window_end_ms: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    soft_pct: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    hard_pct: Option<Value>,
}

/// Keeps an explicit `null` (Some(Null)) apart from an absent field (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn scope_of(s: &str) -> ApiResult<ScopeType> {
    ScopeType::parse(s).ok_or_else(|| ApiError::bad("invalid_scope", "scope type must be key, team or project"))
}

fn budget_json(b: &Budget, doc: Option<&BudgetDoc>, reserved: Option<crate::store::Used>) -> Value {
    let mut v = serde_json::to_value(b).unwrap_or(Value::Null);
    if let Some(d) = doc {
        v["period_start_ms"] = json!(d.period_start_ms);
        v["period_end_ms"] = json!(d.period_end_ms);
        v["used_micros"] = json!(d.used_micros);
        v["used_tokens"] = json!(d.used_tokens);
        let pct = |used: u64, limit: Option<u64>| limit.filter(|l| *l > 0).map(|l| (used as f64) * 100.0 / l as f64);
        v["used_pct_micros"] = json!(pct(d.used_micros, d.limit_micros));
        v["used_pct_tokens"] = json!(pct(d.used_tokens, d.limit_tokens));
        // Projection to period end at the rate so far (integers).
        let now = now_ms().clamp(d.period_start_ms, d.period_end_ms);
        let elapsed = now.saturating_sub(d.period_start_ms).max(1);
        let length = d.period_end_ms.saturating_sub(d.period_start_ms);
        let project = |used: u64| u64::try_from(u128::from(used) * u128::from(length) / u128::from(elapsed)).unwrap_or(u64::MAX);
        v["projected_micros"] = json!(project(d.used_micros));
        v["projected_tokens"] = json!(project(d.used_tokens));
        if let Some(r) = reserved {
            // Room the Envoys hold beyond what is recorded: in flight, or spent and not yet shipped.
            v["reserved_micros"] = json!(r.micros);
            v["reserved_tokens"] = json!(r.tokens);
        }
    }
    v
}

async fn put_budget(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((scope_type, scope_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let scope_type = scope_of(&scope_type)?;
    valid_name("scope_id", &scope_id)?;
    let req: BudgetReq = serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))?;
    if req.limit_micros.is_none() && req.limit_tokens.is_none() {
        return Err(ApiError::bad("missing_limit", "set limit_micros and/or limit_tokens"));
    }
    let period = Period::parse(&req.period)
        .ok_or_else(|| ApiError::bad("invalid_period", "period must be daily, weekly, monthly or fixed"))?;
    let timezone = req.timezone.unwrap_or_else(|| "UTC".into());
    if parse_tz(&timezone).is_none() {
        return Err(ApiError::bad("invalid_timezone", format!("unknown time zone '{timezone}' (use an IANA name like Europe/Paris)")));
    }
    if period == Period::Fixed {
        match (req.window_start_ms, req.window_end_ms) {
            // Bounded so every date derived from it renders (year 9999 at most).
            (Some(s), Some(e)) if s < e && e <= MAX_TIME_MS => {}
            _ => {
                return Err(ApiError::bad(
                    "invalid_window",
                    format!("a fixed period needs window_start_ms < window_end_ms <= {MAX_TIME_MS} (9999-12-31)"),
                ))
            }
        }
    }
    let b = Budget {
        scope_type,
        scope_id,
        limit_micros: req.limit_micros,
        limit_tokens: req.limit_tokens,
        period,
        timezone,
        window_start_ms: req.window_start_ms,
        window_end_ms: req.window_end_ms,
        soft_pct: pct_field(&req.soft_pct, "soft_pct", 80)?,
        hard_pct: pct_field(&req.hard_pct, "hard_pct", 100)?,
        updated_ms: now_ms(),
    };
    let store = st.store.clone();
    let bc = b.clone();
    blocking(move || store.put_budget(&bc, now_ms())).await?;
    log_event("info", "budget set", json!({"scope_type": b.scope_type.as_str(), "scope_id": b.scope_id}));
    st.alerts_wake.notify_one();
    let store = st.store.clone();
    let bc = b.clone();
    let (doc, reserved) = blocking(move || budget_view(store.as_ref(), &bc)).await?;
    Ok(Json(budget_json(&b, doc.as_ref(), reserved)))
}

/// A budget's state now and what Envoys hold of it.
fn budget_view(store: &dyn Store, b: &Budget) -> Result<(Option<BudgetDoc>, Option<crate::store::Used>), StoreError> {
    let doc = budget_doc(store, b, now_ms())?;
    let reserved = match &doc {
        Some(d) => Some(store.reserved(b.scope_type, &b.scope_id, d.period_start_ms)?),
        None => None,
    };
    Ok((doc, reserved))
}

async fn get_budget(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((scope_type, scope_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let scope_type = scope_of(&scope_type)?;
    let store = st.store.clone();
    let budgets = blocking(move || store.list_budgets()).await?;
    let b = budgets
        .into_iter()
        .find(|b| b.scope_type == scope_type && b.scope_id == scope_id)
        .ok_or_else(|| ApiError::from(StoreError::NotFound(format!("no budget for {} '{scope_id}'", scope_type.as_str()))))?;
    let store = st.store.clone();
    let bc = b.clone();
    let (doc, reserved) = blocking(move || budget_view(store.as_ref(), &bc)).await?;
    Ok(Json(budget_json(&b, doc.as_ref(), reserved)))
}

async fn delete_budget(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((scope_type, scope_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    admin(&st, &headers)?;
    let scope_type = scope_of(&scope_type)?;
    let store = st.store.clone();
    blocking(move || store.delete_budget(scope_type, &scope_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_budgets(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let out = blocking(move || {
        let mut v = Vec::new();
        for b in store.list_budgets()? {
            let (doc, reserved) = budget_view(store.as_ref(), &b)?;
            v.push(budget_json(&b, doc.as_ref(), reserved));
        }
        Ok(v)
    })
    .await?;
    Ok(Json(json!({"budgets": out})))
}

/// A budget's fleet-wide state now (no Envoy share: shares are grants, see
/// `Store::grant`). `None` when the budget has no current period (a fixed
/// window outside now).
pub fn budget_doc(store: &dyn Store, b: &Budget, now: u64) -> Result<Option<BudgetDoc>, StoreError> {
    let Some((start, end)) = b.bounds(now) else { return Ok(None) };
    let used = store.used(b.scope_type, &b.scope_id, start)?;
    Ok(Some(b.doc((start, end), used)))
}

/// Ingests a batch. Each record is checked on its own: one that does not
/// parse or is out of bounds (`UsageRecord::validate`) is refused and listed
/// in the ack's `rejected`, the others are stored. A bad record never
/// blocks the records after it; only a body that is not a batch at all is
/// a 400.
async fn ingest(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    role(&st, &headers)?;
    let store = st.store.clone();
    let (n, ack) = blocking(move || {
        let batch: IngestBatch = serde_json::from_slice(&body).map_err(|e| StoreError::Invalid(format!("invalid JSON: {e}")))?;
        if batch.node.is_empty() || batch.node.chars().count() > 256 || batch.node.chars().any(char::is_control) {
            return Err(StoreError::Invalid("node: 1 to 256 characters, no control characters".into()));
        }
        let mut raw = Vec::with_capacity(batch.records.len());
        let mut records = Vec::with_capacity(batch.records.len());
        let mut rejected = Vec::new();
        for (index, r) in batch.records.iter().enumerate() {
            let parsed = serde_json::from_str::<UsageRecord>(r.get()).map_err(|e| format!("invalid JSON: {e}"));
            match parsed.and_then(|rec| rec.validate().map(|()| rec)) {
                Ok(rec) => {
                    raw.push(r.get());
                    records.push(rec);
                }
                Err(reason) => {
                    #[derive(Deserialize)]
                    struct Id {
                        #[serde(default)]
                        id: String,
                    }
                    let id = serde_json::from_str::<Id>(r.get()).map(|i| i.id).unwrap_or_default();
                    let id = tollgate_filter::text::clean_field(&id, 128);
                    rejected.push(RejectedRecord { index, id, reason });
                }
            }
        }
        let mut ack = store.ingest(&batch.node, &records, Some(&raw), now_ms())?;
        ack.rejected = rejected;
        Ok((records.len(), ack))
    })
    .await
    .map_err(|e| {
        st.counters.ingest_errors.fetch_add(1, Relaxed);
        match e.code {
            "invalid" => ApiError::bad("invalid_json", e.message),
            _ => e,
        }
    })?;
    st.counters.ingest_batches.fetch_add(1, Relaxed);
    st.counters.ingest_records.fetch_add(ack.accepted, Relaxed);
    st.counters.ingest_duplicates.fetch_add(ack.duplicates, Relaxed);
    st.counters.ingest_rejected.fetch_add(ack.rejected.len() as u64, Relaxed);
    if ack.accepted > 0 {
        st.alerts_wake.notify_one();
    }
    for r in &ack.rejected {
        log_event("warn", "usage record rejected", json!({"index": r.index, "id": r.id, "reason": r.reason}));
    }
    log_event("debug", "ingest", json!({"records": n, "accepted": ack.accepted, "duplicates": ack.duplicates, "seq": ack.seq}));
    Ok(Json(serde_json::to_value(ack).unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
struct StateQuery {
    #[serde(default)]
    node: Option<String>,
}

async fn get_state(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<StateQuery>) -> ApiResult<Response> {
    role(&st, &headers)?;
    let now = now_ms();
    let node = q.node.filter(|n| !n.is_empty() && n.len() <= 256);
    let ttl = st.settings.node_ttl_ms;
    let store = st.store.clone();
    let doc = blocking(move || {
        let keys = store
            .list_keys()?
            .into_iter()
            .filter(|k| k.revoked_ms.is_none())
            .map(|k| KeyDoc { id: k.id, key_hash: k.key_hash, team: k.team, project: k.project, models: k.models, projects: k.projects, tags: k.tags })
            .collect();
        match node {
            // An Envoy: grant it its share (durably) and return it.
            Some(n) => {
                let g = store.grant(&n, now, ttl)?;
                Ok(StateDoc { seq: g.seq, generated_ms: now, nodes_active: g.nodes_active, keys, budgets: g.budgets })
            }
            // Anyone else (an admin looking): the fleet view, no shares.
            None => {
                let seq = store.seq()?;
                let mut budgets = Vec::new();
                for b in store.list_budgets()? {
                    if let Some(d) = budget_doc(store.as_ref(), &b, now)? {
                        budgets.push(d);
                    }
                }
                let nodes_active = store.nodes_active(now, ttl)?;
                Ok(StateDoc { seq, generated_ms: now, nodes_active, keys, budgets })
            }
        }
    })
    .await?;
    // The ETag covers everything but the generation time.
    let mut for_tag = doc.clone();
    for_tag.generated_ms = 0;
    let tag = format!("\"{}\"", &hash_key(&serde_json::to_string(&for_tag).unwrap_or_default())[..32]);
    st.counters.state_polls.fetch_add(1, Relaxed);
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        st.counters.state_not_modified.fetch_add(1, Relaxed);
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&tag) {
            r.headers_mut().insert("etag", v);
        }
        return Ok(r);
    }
    let mut r = Json(doc).into_response();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        r.headers_mut().insert("etag", v);
    }
    Ok(r)
}

#[derive(Deserialize)]
struct AlertsQuery {
    #[serde(default)]
    limit: Option<u32>,
}

async fn list_alerts(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<AlertsQuery>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let limit = q.limit.unwrap_or(100).min(1000);
    let alerts = blocking(move || store.list_alerts(limit)).await?;
    Ok(Json(json!({"alerts": alerts})))
}

#[derive(Deserialize)]
struct SpendQuery {
    #[serde(default)]
    scope_type: Option<String>,
    #[serde(default)]
    scope_id: Option<String>,
    #[serde(default)]
    from_ms: Option<u64>,
    #[serde(default)]
    to_ms: Option<u64>,
}

async fn spend(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<SpendQuery>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let scope = match (q.scope_type, q.scope_id) {
        (Some(t), Some(id)) => Some((scope_of(&t)?, id)),
        (None, None) => None,
        _ => return Err(ApiError::bad("invalid_scope", "give both scope_type and scope_id, or neither")),
    };
    let f = SpendFilter { scope, from_ms: q.from_ms, to_ms: q.to_ms };
    let store = st.store.clone();
    let t = blocking(move || store.spend(&f)).await?;
    Ok(Json(serde_json::to_value(t).unwrap_or(Value::Null)))
}

/// Delivers threshold alerts to the webhook, retrying with backoff.
pub async fn alert_loop(st: Arc<AppState>) {
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), st.alerts_wake.notified()).await;
        let Some(url) = st.settings.webhook_url.clone() else { continue };
        let store = st.store.clone();
        let due = match tokio::task::spawn_blocking(move || store.due_alerts(now_ms())).await {
            Ok(Ok(d)) => d,
            _ => continue,
        };
        for a in due {
            let url = url.clone();
            let payload = json!({"event": "tollgate.budget_threshold", "alert": a});
            let res = tokio::task::spawn_blocking(move || {
                let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().new_agent();
                agent.post(&url).send_json(&payload).map(|r| r.status().as_u16())
            })
            .await;
            let (ok, err) = match res {
                Ok(Ok(s)) if (200..300).contains(&s) => (true, None),
                Ok(Ok(s)) => (false, Some(format!("webhook answered {s}"))),
                Ok(Err(e)) => (false, Some(e.to_string())),
                Err(e) => (false, Some(e.to_string())),
            };
            if ok {
                st.counters.alerts_delivered.fetch_add(1, Relaxed);
            } else {
                st.counters.alerts_failed.fetch_add(1, Relaxed);
            }
            let backoff = 1000u64 << a.attempts.min(6);
            let store = st.store.clone();
            let e2 = err.clone();
            let _ = tokio::task::spawn_blocking(move || {
                store.alert_attempted(a.id, ok, e2.as_deref(), now_ms() + backoff, now_ms())
            })
            .await;
            log_event(
                if ok { "info" } else { "warn" },
                "alert delivery",
                json!({"alert_id": a.id, "scope": format!("{}:{}", a.scope_type.as_str(), a.scope_id), "threshold": a.threshold, "ok": ok, "error": err}),
            );
        }
    }
}

// ---- reports ----------------------------------------------------------------

const DAY_MS: u64 = 86_400_000;

fn report_query(params: &HashMap<String, String>) -> ApiResult<crate::reports::ReportQuery> {
    use crate::reports::{Bucket, Dim, ReportQuery};
    let num = |k: &str| -> ApiResult<Option<u64>> {
        params
            .get(k)
            .map(|v| v.parse::<u64>().map_err(|_| ApiError::bad("invalid_field", format!("'{k}' must be an integer (Unix ms)"))))
            .transpose()
    };
    let to_ms = num("to_ms")?.unwrap_or_else(now_ms);
    let from_ms = num("from_ms")?.unwrap_or(to_ms.saturating_sub(30 * DAY_MS));
    if from_ms >= to_ms {
        return Err(ApiError::bad("invalid_range", "from_ms must be before to_ms"));
    }
    let mut group_by = Vec::new();
    if let Some(g) = params.get("group_by").filter(|g| !g.is_empty()) {
        for name in g.split(',') {
            let d = Dim::parse(name.trim()).ok_or_else(|| {
                ApiError::bad("invalid_dimension", format!("unknown dimension '{name}' (team, project, key, model, provider, feature, prompt_version)"))
            })?;
            group_by.push(d);
        }
    }
    let bucket = match params.get("bucket").map(String::as_str) {
        None | Some("") | Some("none") => None,
        Some(b) => Some(Bucket::parse(b).ok_or_else(|| ApiError::bad("invalid_bucket", "bucket must be hour or day"))?),
    };
    let filters = Dim::ALL.into_iter().filter_map(|d| params.get(d.name()).map(|v| (d, v.clone()))).collect();
    let top = num("top")?.map(|t| t.min(10_000) as u32);
    Ok(ReportQuery { group_by, bucket, from_ms, to_ms, filters, top })
}

async fn report_spend(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    admin(&st, &headers)?;
    let q = report_query(&params)?;
    let store = st.store.clone();
    let q2 = q.clone();
    let rows = blocking(move || store.report(&q2)).await?;
    if params.get("format").map(String::as_str) == Some("csv") {
        let csv = crate::reports::to_csv(&q, &rows);
        return Ok((
            [("content-type", "text/csv; charset=utf-8"), ("content-disposition", "attachment; filename=\"tollgate-spend.csv\"")],
            csv,
        )
            .into_response());
    }
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = json!({
                "requests": r.requests, "input_tokens": r.input_tokens, "cached_input_tokens": r.cached_input_tokens,
                "output_tokens": r.output_tokens, "cost_micros": r.cost_micros,
                "cache_share_pct": r.cache_share_permille() as f64 / 10.0,
                "errors": r.errors, "rate_limited": r.rate_limited,
            });
            for (d, g) in q.group_by.iter().zip(&r.group) {
                v[d.name()] = json!(g);
            }
            if let Some(b) = r.bucket_start_ms {
                v["bucket_start_ms"] = json!(b);
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "from_ms": q.from_ms, "to_ms": q.to_ms,
        "group_by": q.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
        "bucket": q.bucket, "rows": rows
    }))
    .into_response())
}

async fn report_movers(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    use crate::reports::{movers, Dim};
    admin(&st, &headers)?;
    let mut q = report_query(&params)?;
    let dims: Vec<Dim> = match params.get("by") {
        Some(b) => b.split(',').filter_map(|x| Dim::parse(x.trim())).collect(),
        None => vec![Dim::Key, Dim::Model],
    };
    if dims.is_empty() {
        return Err(ApiError::bad("invalid_dimension", "'by' names no known dimension"));
    }
    let top = q.top.unwrap_or(10) as usize;
    q.top = None;
    q.bucket = None;
    let span = q.to_ms - q.from_ms;
    let (from_ms, to_ms) = (q.from_ms, q.to_ms);
    let store = st.store.clone();
    let out = blocking(move || {
        let mut out = Vec::new();
        for d in dims {
            let cur = crate::reports::ReportQuery { group_by: vec![d], ..q.clone() };
            let prev = crate::reports::ReportQuery { from_ms: q.from_ms.saturating_sub(span), to_ms: q.from_ms, ..cur.clone() };
            out.push((d, movers(d, &store.report(&cur)?, &store.report(&prev)?, top)));
        }
        Ok(out)
    })
    .await?;
    let mut v = json!({"from_ms": from_ms, "to_ms": to_ms, "previous_from_ms": from_ms.saturating_sub(span)});
    for (d, m) in out {
        v[d.name()] = serde_json::to_value(m).unwrap_or(Value::Null);
    }
    Ok(Json(v))
}

async fn report_monthly(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    admin(&st, &headers)?;
    let month = params.get("month").cloned().unwrap_or_else(|| crate::monthly::current_month(now_ms()));
    let (from, to, prev_from) = crate::monthly::month_bounds(&month)
        .ok_or_else(|| ApiError::bad("invalid_month", "month must look like 2026-11"))?;
    let store = st.store.clone();
    let md = blocking(move || crate::monthly::render(store.as_ref(), &month, from, to, prev_from)).await?;
    Ok(([("content-type", "text/markdown; charset=utf-8")], md).into_response())
}

fn prom_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus text format: process counters and every budget's state.
async fn metrics(State(st): State<Arc<AppState>>) -> ApiResult<Response> {
    let c = &st.counters;
    let mut out = String::new();
    for (name, help, v) in [
        ("tollgate_control_ingest_batches_total", "usage batches received", c.ingest_batches.load(Relaxed)),
        ("tollgate_control_ingest_records_total", "usage records stored (new)", c.ingest_records.load(Relaxed)),
        ("tollgate_control_ingest_duplicates_total", "usage records received again and ignored", c.ingest_duplicates.load(Relaxed)),
        ("tollgate_control_ingest_errors_total", "usage batches refused or failed", c.ingest_errors.load(Relaxed)),
        ("tollgate_control_ingest_rejected_total", "usage records refused as invalid (listed in the ack, not stored)", c.ingest_rejected.load(Relaxed)),
        ("tollgate_control_state_polls_total", "budget state polls by Envoys", c.state_polls.load(Relaxed)),
        ("tollgate_control_state_not_modified_total", "polls answered 304", c.state_not_modified.load(Relaxed)),
        ("tollgate_control_alerts_delivered_total", "alert webhook deliveries that succeeded", c.alerts_delivered.load(Relaxed)),
        ("tollgate_control_alert_delivery_failures_total", "alert webhook attempts that failed", c.alerts_failed.load(Relaxed)),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"));
    }
    let store = st.store.clone();
    let (budgets, seq) = blocking(move || {
        let now = now_ms();
        let mut v = Vec::new();
        for b in store.list_budgets()? {
            if let Some(d) = budget_doc(store.as_ref(), &b, now)? {
                v.push(d);
            }
        }
        Ok((v, store.seq()?))
    })
    .await?;
    out.push_str(&format!("# HELP tollgate_control_ingest_seq ingest sequence\n# TYPE tollgate_control_ingest_seq gauge\ntollgate_control_ingest_seq {seq}\n"));
    for (name, help) in [
        ("tollgate_budget_used_micros", "spend this period, micro-dollars"),
        ("tollgate_budget_limit_micros", "budget limit, micro-dollars"),
        ("tollgate_budget_used_tokens", "tokens this period"),
        ("tollgate_budget_limit_tokens", "budget limit, tokens"),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for d in &budgets {
            let v = match name {
                "tollgate_budget_used_micros" => Some(d.used_micros),
                "tollgate_budget_limit_micros" => d.limit_micros,
                "tollgate_budget_used_tokens" => Some(d.used_tokens),
                _ => d.limit_tokens,
            };
            if let Some(v) = v {
                out.push_str(&format!(
                    "{name}{{scope_type=\"{}\",scope_id=\"{}\"}} {v}\n",
                    d.scope_type.as_str(),
                    prom_label(&d.scope_id)
                ));
            }
        }
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}

/// The dashboard: one self-contained page (no CDN); its data comes from the
/// reporting API with the admin token the user enters (kept in the tab's
/// session storage, or passed once as `#token=` in the URL fragment, which
/// never reaches the server's logs).
/// The filter module, for Envoys that fetch it over HTTP (Istio: the
/// EnvoyFilter's remote code and the bootstrap's WasmService). Not secret.
async fn filter_wasm(State(st): State<Arc<AppState>>) -> Response {
    match &st.settings.filter_wasm {
        Some((bytes, sha)) => {
            ([("content-type", "application/wasm"), ("x-tollgate-sha256", sha.as_str())], bytes.clone()).into_response()
        }
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found_error", "not_found", "no filter module is served here (set TOLLGATE_FILTER_WASM)")
            .into_response(),
    }
}

async fn dashboard() -> Response {
    (
        [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-cache"), ("x-frame-options", "DENY")],
        include_str!("dashboard.html"),
    )
        .into_response()
}

// ---- budget increase requests ----------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    scope_type: String,
    scope_id: String,
    #[serde(default)]
    limit_micros: Option<u64>,
    #[serde(default)]
    limit_tokens: Option<u64>,
    justification: String,
    #[serde(default)]
    requested_by: Option<String>,
}

/// Anyone with an active virtual key may ask for more for its own key, team
/// or project (the key goes in `Authorization: Bearer`, as for the gateway);
/// admins for any scope.
async fn create_request(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Response> {
    let req: NewRequest = serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))?;
    let scope_type = scope_of(&req.scope_type)?;
    if req.limit_micros.is_none() && req.limit_tokens.is_none() {
        return Err(ApiError::bad("missing_limit", "ask for a new limit_micros and/or limit_tokens"));
    }
    if req.justification.trim().len() < 10 {
        return Err(ApiError::bad("missing_justification", "say why (10 characters or more)"));
    }
    let requested_by = match role(&st, &headers) {
        Ok(Role::Admin) => req.requested_by.clone().unwrap_or_else(|| "admin".into()),
        Ok(Role::Filter) => return Err(ApiError::new(StatusCode::FORBIDDEN, "permission_error", "admin_only", "the filter token cannot file requests")),
        Err(_) => {
            // A virtual key.
            let h = hash_key(bearer(&headers).unwrap_or(""));
            let store = st.store.clone();
            let key = blocking(move || Ok(store.list_keys()?.into_iter().find(|k| k.key_hash == h && k.revoked_ms.is_none())))
                .await?
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", "invalid_token", "send your virtual key or an admin token"))?;
            let own = match scope_type {
                ScopeType::Key => key.id == req.scope_id,
                ScopeType::Team => key.team == req.scope_id,
                ScopeType::Project => key.project == req.scope_id,
            };
            if !own {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "permission_error", "not_your_scope", "a key may only ask for its own key, team or project"));
            }
            format!("key:{}", key.id)
        }
    };
    let r = crate::store::IncreaseRequest {
        id: 0,
        scope_type,
        scope_id: req.scope_id,
        limit_micros: req.limit_micros,
        limit_tokens: req.limit_tokens,
        justification: req.justification,
        requested_by,
        created_ms: now_ms(),
        status: "pending".into(),
        decided_by: None,
        decided_ms: None,
        note: None,
    };
    let store = st.store.clone();
    let created = blocking(move || store.create_request(&r)).await?;
    log_event("info", "budget increase requested", json!({"id": created.id, "scope": format!("{}:{}", created.scope_type.as_str(), created.scope_id)}));
    Ok((StatusCode::CREATED, Json(serde_json::to_value(created).unwrap_or(Value::Null))).into_response())
}

#[derive(Deserialize)]
struct RequestsQuery {
    #[serde(default)]
    status: Option<String>,
}

async fn list_requests(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<RequestsQuery>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let v = blocking(move || store.list_requests(q.status.as_deref())).await?;
    Ok(Json(json!({"requests": v})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    decided_by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

async fn approve_request(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<i64>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    decide(st, headers, id, body, true).await
}

async fn refuse_request(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<i64>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    decide(st, headers, id, body, false).await
}

async fn decide(st: Arc<AppState>, headers: HeaderMap, id: i64, body: axum::body::Bytes, approve: bool) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let d: Decision = if body.is_empty() { Decision::default() } else { serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))? };
    let by = d.decided_by.unwrap_or_else(|| "admin".into());
    let store = st.store.clone();
    let decided = blocking(move || {
        let r = store.get_request(id)?.ok_or_else(|| StoreError::NotFound(format!("no budget request {id}")))?;
        if r.status != "pending" {
            return Err(StoreError::Conflict(format!("request {id} was already {}", r.status)));
        }
        if approve {
            // Apply first: an approval that is recorded has taken effect.
            let now = now_ms();
            let mut b = store
                .list_budgets()?
                .into_iter()
                .find(|b| b.scope_type == r.scope_type && b.scope_id == r.scope_id)
                .unwrap_or_else(|| Budget::monthly(r.scope_type, &r.scope_id, now));
            if r.limit_micros.is_some() {
                b.limit_micros = r.limit_micros;
            }
            if r.limit_tokens.is_some() {
                b.limit_tokens = r.limit_tokens;
            }
            b.updated_ms = now;
            store.put_budget(&b, now)?;
        }
        store.decide_request(id, approve, &by, d.note.as_deref(), now_ms())
    })
    .await?;
    log_event("info", "budget increase decided", json!({"id": id, "status": decided.status, "by": decided.decided_by}));
    Ok(Json(serde_json::to_value(decided).unwrap_or(Value::Null)))
}
