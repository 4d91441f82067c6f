//! The HTTP API (axum), generic over the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_protocol::keys::{hash_key, to_hex};
use tollgate_protocol::record::UsageRecord;
use tollgate_protocol::state::{BudgetDoc, IngestBatch, KeyChanges, RejectedRecord, ScopeType, StateDoc};

use crate::periods::{parse_tz, Period};
use crate::store::{Budget, KeyRow, SpendFilter, Store, StoreError};
use crate::{log_event, now_ms};

mod alerts;
mod audit;
mod budgets;
mod evals;
mod fleet;
mod keys;
mod metrics;
mod pages;
mod prompts;
mod reports;
mod requests;

pub use alerts::alert_loop;
use alerts::cache_alerts_check;
pub use audit::audit_retention_loop;
pub use fleet::{grant_retention_loop, statistics_loop, use_log_retention_loop};
pub use budgets::budget_doc;
use audit::*;
use budgets::*;
use evals::*;
use fleet::*;
use keys::*;
use metrics::*;
use prompts::*;
use pages::*;
use reports::*;
use requests::*;


/// The latest instant the service accepts in a budget window: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: u64 = tollgate_protocol::record::MAX_TS_MS;

pub struct Settings {
    pub admin_token_hash: String,
    pub filter_token_hash: String,
    pub webhook_url: Option<String>,
    /// An Envoy counts as active this long after its last state poll.
    pub node_ttl_ms: u64,
    /// How long the log of budget use changes keeps a batch
    /// (`TOLLGATE_USE_LOG_KEEP_MS`): a delta's cursor older than that
    /// gets the full state.
    pub use_log_keep_ms: u64,
    /// Budgets per page of a state sent in pages (`TOLLGATE_STATE_PAGE`, 1 to 5,000).
    pub state_page: usize,
    /// The filter's .wasm (`TOLLGATE_FILTER_WASM`), served at
    /// `GET /v1/filter.wasm` so meshes can fetch it over HTTP: (bytes, sha256 hex).
    pub filter_wasm: Option<(Vec<u8>, String)>,
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub alerts_wake: tokio::sync::Notify,
    pub counters: Counters,
    /// Usage batches go through one writer that commits them together.
    pub ingest: crate::group_commit::GroupCommit,
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
    pub state_full: std::sync::atomic::AtomicU64,
    pub state_slow: std::sync::atomic::AtomicU64,
    pub key_change_pages: std::sync::atomic::AtomicU64,
    pub keys_imported: std::sync::atomic::AtomicU64,
    pub alerts_delivered: std::sync::atomic::AtomicU64,
    pub alerts_failed: std::sync::atomic::AtomicU64,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Arc<AppState> {
        let ingest = crate::group_commit::GroupCommit::start(store.clone());
        Arc::new(AppState { store, settings, alerts_wake: tokio::sync::Notify::new(), counters: Counters::default(), ingest })
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

/// A refusal's message: it may quote what the client sent, so it is cut to
/// 200 characters (an answer need not echo a 100,000-character parameter)
/// and loses control characters.
fn cut(message: String) -> String {
    tollgate_protocol::text::clean_field(&message, 200)
}

/// The query string, as axum's `Query` reads it, with two differences: a
/// refusal is the API's JSON error (axum answers plain text), and a
/// parameter that is not UTF-8 once percent-decoded is refused. axum reads
/// those bytes lossily as U+FFFD, so `node=%FF` polled the state as an
/// Envoy named "\u{FFFD}", and every such name was the same Envoy.
pub(super) struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        if let Some(name) = non_utf8_parameter(raw) {
            return Err(ApiError::bad("invalid_query", cut(format!("query: parameter {name:?} is not UTF-8 once percent-decoded"))));
        }
        axum::extract::Query::<T>::try_from_uri(&parts.uri).map(|q| Query(q.0)).map_err(|r| {
            let text = r.body_text();
            let why = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
            ApiError::bad("invalid_query", cut(format!("query: {why}")))
        })
    }
}

/// The first parameter of `query` whose name or value is not UTF-8 once
/// percent-decoded, by its name read lossily (`None` when all are).
fn non_utf8_parameter(query: &str) -> Option<String> {
    let decodes = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().is_ok();
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (!decodes(name) || !decodes(value)).then(|| percent_encoding::percent_decode_str(name).decode_utf8_lossy().into_owned())
    })
}

/// Path parameters as axum's `Path` reads them, refused with the API's
/// JSON error instead of axum's plain text.
pub(super) struct Path<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Path(p.0)),
            Err(r) if r.status().is_client_error() => {
                let text = r.body_text();
                let why = text.strip_prefix("Invalid URL: ").unwrap_or(&text);
                Err(ApiError::bad("invalid_path", cut(format!("path: {why}"))))
            }
            Err(r) => Err(ApiError::new(r.status(), "api_error", "internal", cut(r.body_text()))),
        }
    }
}

/// A JSON request body: a member given twice is refused, and a refusal
/// names the field (`custom[0].pattern: …`).
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], code: &'static str) -> ApiResult<T> {
    tollgate_protocol::json::no_duplicate_members(body).map_err(|e| ApiError::bad("invalid_json", e))?;
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)).map_err(|e| {
        let at = e.path().to_string();
        ApiError::bad(code, if at == "." { e.inner().to_string() } else { format!("{at}: {}", e.inner()) })
    })
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Role {
    Admin,
    Filter,
}

/// The bearer token of a request (same parsing as the gateway's key extraction).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    tollgate_protocol::keys::presented_key(headers.get("authorization").and_then(|v| v.to_str().ok()), None)
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
        .route("/v1/key-imports", post(import_keys).layer(axum::extract::DefaultBodyLimit::max(16 << 20)))
        .route("/v1/budget-imports", post(import_budgets).layer(axum::extract::DefaultBodyLimit::max(16 << 20)))
        .route("/v1/key-changes", get(key_changes))
        .route("/v1/keys/{id}", get(get_key))
        .route("/v1/keys/{id}/revoke", post(revoke_key))
        .route("/v1/keys/{id}/rotate", post(rotate_key))
        .route("/v1/budgets", get(list_budgets))
        .route("/v1/budgets/{scope_type}/{scope_id}", put(put_budget).get(get_budget).delete(delete_budget))
        // Batches are bounded by the filter (control.max_batch_bytes, at most 16 MiB).
        .route("/v1/usage", post(ingest).layer(axum::extract::DefaultBodyLimit::max(16 << 20)))
        .route("/v1/state", get(get_state))
        .route("/v1/alerts", get(list_alerts))
        .route("/v1/cache-alerts/check", post(cache_alerts_check))
        .route("/v1/spend", get(spend))
        .route("/v1/budget-requests", post(create_request).get(list_requests))
        .route("/v1/budget-requests/{id}/approve", post(approve_request))
        .route("/v1/budget-requests/{id}/refuse", post(refuse_request))
        .route("/v1/reports/spend", get(report_spend))
        .route("/v1/reports/movers", get(report_movers))
        .route("/v1/reports/monthly", get(report_monthly))
        .route("/v1/reports/cache-misses", get(report_cache_misses))
        .route("/v1/reports/json-compliance", get(report_json_compliance))
        .route("/v1/eval-sets", get(eval_sets))
        .route("/v1/eval-sets/{feature}", get(eval_set).delete(eval_set_delete))
        .route("/v1/eval-sets/{feature}/items/{id}", axum::routing::delete(eval_item_delete))
        .route("/v1/evals", post(eval_start).get(eval_list))
        .route("/v1/evals/{id}", get(eval_get))
        .route("/v1/routing", get(routing_list))
        .route("/v1/routing/current", get(routing_current))
        .route("/v1/routing/{feature}", get(routing_get).put(routing_put))
        .route("/v1/routing/{feature}/promote", post(routing_promote))
        .route("/v1/audit", get(audit_summary).delete(audit_purge))
        .route("/v1/audit/findings", get(audit_findings))
        .route("/v1/guardrails", get(guardrails_get).put(guardrails_put).delete(guardrails_clear))
        .route("/v1/guardrails/current", get(guardrails_fetch))
        .route("/v1/prompts", get(prompts_list))
        .route("/v1/prompts/current", get(prompts_current))
        .route("/v1/prompts/{name}", get(prompt_get))
        .route("/v1/prompts/{name}/versions", post(prompt_add_version))
        .route("/v1/prompts/{name}/labels/{label}", put(prompt_set_label))
        .route("/v1/prompts/{name}/diff", get(prompt_diff))
        .with_state(state)
        .layer(axum::middleware::map_response(json_errors))
}

/// Every refusal in the API's JSON error shape, also those axum writes
/// itself: an unknown endpoint (404, empty), a method the endpoint does
/// not take (405, empty) and a body over the endpoint's limit (413, plain
/// text). A client reads `error.code` whatever went wrong.
async fn json_errors(method: axum::http::Method, resp: Response) -> Response {
    let status = resp.status();
    let json = resp.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (kind, code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found_error", "not_found", "no such endpoint".to_string()),
        // axum adds the `Allow` header after this layer.
        StatusCode::METHOD_NOT_ALLOWED => ("invalid_request_error", "method_not_allowed", format!("this endpoint does not take {method} (its Allow header lists what it takes)")),
        StatusCode::PAYLOAD_TOO_LARGE => ("invalid_request_error", "too_large", "the body is larger than this endpoint takes".to_string()),
        s if s.is_client_error() => ("invalid_request_error", "invalid", s.canonical_reason().unwrap_or("refused").to_string()),
        s => ("api_error", "internal", s.canonical_reason().unwrap_or("failed").to_string()),
    };
    ApiError::new(status, kind, code, message).into_response()
}

async fn healthz(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let store = st.store.clone();
    let seq = blocking(move || store.seq()).await?;
    Ok(Json(json!({"status": "ok", "seq": seq})))
}

/// A page of a list (`GET /v1/keys`, `GET /v1/budgets`): at most `limit`
/// items after the one `after` names (the previous page's `next`). Without
/// `limit`, every item (the answer then grows with the list).
#[derive(serde::Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub after: Option<String>,
}
