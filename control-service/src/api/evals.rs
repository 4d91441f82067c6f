//! Choosing cheaper models: evaluation sets (`/v1/eval-sets`), runs
//! (`/v1/evals`), the auto router (`/v1/routing`, and
//! `/v1/routing/current` for the Envoys) and JSON compliance
//! (`/v1/reports/json-compliance`). docs/evaluations.md.

use super::*;
use crate::evals::{self, EvalSpec, Report, RoutingPolicy};

const DAY: u64 = 86_400_000;

fn feature_ok(f: &str) -> ApiResult<()> {
    if f.is_empty() || f.len() > 256 || f.chars().any(char::is_control) {
        return Err(ApiError::bad("invalid_feature", "a feature is 1 to 256 characters, no control characters"));
    }
    Ok(())
}

pub(super) async fn eval_sets(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    Ok(Json(json!({"sets": blocking(move || store.eval_sets()).await?})))
}

pub(super) async fn eval_set(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(feature): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    feature_ok(&feature)?;
    let limit = q.get("limit").and_then(|l| l.parse::<u32>().ok()).unwrap_or(100).clamp(1, 1000);
    let bodies = q.get("bodies").map(String::as_str) == Some("true");
    let store = st.store.clone();
    let f = feature.clone();
    let items = blocking(move || store.eval_items(&f, limit)).await?;
    let items: Vec<Value> = items
        .iter()
        .map(|i| {
            let mut v = json!({"id": i.id, "record_id": i.record_id, "ts_ms": i.ts_ms, "api": i.api, "route": i.route, "model": i.model,
                               "request_bytes": i.request.len(), "response_bytes": i.response.len(), "cost_micros": i.cost_micros, "latency_ms": i.latency_ms});
            if bodies {
                v["request"] = serde_json::from_str(&i.request).unwrap_or(Value::Null);
                v["response"] = serde_json::from_str(&i.response).unwrap_or(Value::Null);
            }
            v
        })
        .collect();
    Ok(Json(json!({"feature": feature, "items": items})))
}

/// `DELETE /v1/eval-sets/{feature}` (optionally `?before_ms=`): retention and deletion.
pub(super) async fn eval_set_delete(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(feature): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    feature_ok(&feature)?;
    let before = q.get("before_ms").map(|v| v.parse::<u64>().map_err(|_| ApiError::bad("invalid_field", "'before_ms' must be Unix ms"))).transpose()?;
    let store = st.store.clone();
    let f = feature.clone();
    let removed = blocking(move || store.delete_eval_items(Some(&f), before, None)).await?;
    log_event("info", "eval_set_deleted", json!({"feature": feature, "removed": removed}));
    Ok(Json(json!({"removed": removed})))
}

pub(super) async fn eval_item_delete(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((feature, id)): Path<(String, i64)>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    feature_ok(&feature)?;
    let store = st.store.clone();
    let removed = blocking(move || store.delete_eval_items(Some(&feature), None, Some(id))).await?;
    if removed == 0 {
        return Err(StoreError::NotFound(format!("no item {id}")).into());
    }
    Ok(Json(json!({"removed": removed})))
}

/// `POST /v1/evals`: starts a run (202); it goes on in the background.
pub(super) async fn eval_start(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Response> {
    admin(&st, &headers)?;
    let spec: EvalSpec = parse_json(&body, "invalid_json")?;
    evals::check_spec(&spec).map_err(|e| ApiError::bad("invalid_eval", e))?;
    let (Ok(url), Ok(key)) = (std::env::var("TOLLGATE_EVAL_GATEWAY"), std::env::var("TOLLGATE_EVAL_KEY")) else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", "eval_gateway_unconfigured", "set TOLLGATE_EVAL_GATEWAY (Envoy's URL) and TOLLGATE_EVAL_KEY (a virtual key) to run evaluations"));
    };
    let store = st.store.clone();
    let s2 = spec.clone();
    let (run, items) = blocking(move || {
        let items = store.eval_items(&s2.feature, s2.max_items)?;
        if items.is_empty() {
            return Err(StoreError::Invalid(format!("no captured requests for feature '{}' (turn capture on for it)", s2.feature)));
        }
        let report = serde_json::to_value(Report { spec: Some(s2.clone()), ..Default::default() }).unwrap_or(Value::Null);
        Ok((store.create_eval(&s2.feature, &s2.candidate, s2.judge.as_deref(), &report, now_ms())?, items))
    })
    .await?;
    let (id, state) = (run.id, st.clone());
    tokio::spawn(async move {
        let store = state.store.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let gw = evals::HttpGateway { url, key };
            let mut last = 0u64;
            let report = evals::run(&spec, &items, &gw, &mut |r| {
                // progress, at most every 10 items
                if r.items >= last + 10 {
                    last = r.items;
                    let _ = store.finish_eval(id, "running", &serde_json::to_value(r).unwrap_or(Value::Null), now_ms());
                }
            });
            let status = if report.stopped.is_some() { "stopped" } else { "done" };
            let _ = store.finish_eval(id, status, &serde_json::to_value(&report).unwrap_or(Value::Null), now_ms());
            log_event("info", "eval_finished", json!({"id": id, "feature": spec.feature, "candidate": spec.candidate, "scored": report.scored, "passed": report.passed, "status": status}));
            let _ = reroute(store.as_ref(), &spec.feature, "auto-promotion", true);
        })
        .await;
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id, "status": "running", "items": run.report.get("items")}))).into_response())
}

pub(super) async fn eval_list(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let feature = q.get("feature").cloned();
    let runs = blocking(move || store.evals(feature.as_deref(), 100)).await?;
    // The list leaves out per-item results.
    let runs: Vec<Value> = runs
        .into_iter()
        .map(|mut r| {
            if let Some(o) = r.report.as_object_mut() {
                o.remove("results");
            }
            serde_json::to_value(r).unwrap_or(Value::Null)
        })
        .collect();
    Ok(Json(json!({"evals": runs})))
}

pub(super) async fn eval_get(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let run = blocking(move || store.get_eval(id)).await?.ok_or_else(|| StoreError::NotFound(format!("no evaluation {id}")))?;
    Ok(Json(serde_json::to_value(run).unwrap_or(Value::Null)))
}

/// The finished runs of a feature as (id, candidate, report), newest first.
fn finished(store: &dyn Store, feature: &str) -> Result<Vec<(i64, String, Report)>, StoreError> {
    Ok(store
        .evals(Some(feature), 200)?
        .into_iter()
        .filter(|r| r.status == "done")
        .filter_map(|r| serde_json::from_value::<Report>(r.report).ok().map(|rep| (r.id, r.candidate, rep)))
        .collect())
}

/// Re-picks a feature's model (only when its policy promotes automatically, if `auto`).
fn reroute(store: &dyn Store, feature: &str, by: &str, auto: bool) -> Result<Option<String>, StoreError> {
    let Some(row) = store.routing_policy(feature)? else { return Ok(None) };
    let Ok(policy) = serde_json::from_value::<RoutingPolicy>(row.policy) else { return Ok(None) };
    if auto && !policy.auto_promote {
        return Ok(None);
    }
    let monthly = store.feature_requests(feature, now_ms().saturating_sub(30 * DAY))?;
    let standings = evals::standings(&policy, &finished(store, feature)?, monthly);
    match evals::pick(feature, &policy, &standings) {
        Some((model, reason)) if row.chosen.as_deref() != Some(model.as_str()) => {
            store.choose_route(feature, Some(&model), &reason, by, now_ms())?;
            log_event("info", "routing_promoted", json!({"feature": feature, "model": model, "by": by}));
            Ok(Some(model))
        }
        _ => Ok(None),
    }
}

pub(super) async fn routing_put(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(feature): Path<String>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    feature_ok(&feature)?;
    let policy: RoutingPolicy = parse_json(&body, "invalid_json")?;
    evals::check_policy(&policy).map_err(|e| ApiError::bad("invalid_policy", e))?;
    let store = st.store.clone();
    let f = feature.clone();
    let v = serde_json::to_value(&policy).unwrap_or(Value::Null);
    let picked = blocking(move || {
        store.set_routing_policy(&f, &v, now_ms())?;
        reroute(store.as_ref(), &f, "policy", true)
    })
    .await?;
    Ok(Json(json!({"feature": feature, "policy": policy, "promoted": picked})))
}

/// `GET /v1/routing/{feature}`: the policy, the pick, and every candidate's
/// standing with its projected monthly saving — before anyone switches.
pub(super) async fn routing_get(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(feature): Path<String>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    feature_ok(&feature)?;
    let store = st.store.clone();
    let f = feature.clone();
    let out = blocking(move || {
        let row = store.routing_policy(&f)?.ok_or_else(|| StoreError::NotFound(format!("feature '{f}' has no routing policy")))?;
        let policy: RoutingPolicy = serde_json::from_value(row.policy.clone()).map_err(|e| StoreError::Backend(e.to_string()))?;
        let monthly = store.feature_requests(&f, now_ms().saturating_sub(30 * DAY))?;
        let standings = evals::standings(&policy, &finished(store.as_ref(), &f)?, monthly);
        let recommended = evals::pick(&f, &policy, &standings).map(|(m, why)| json!({"model": m, "reason": why}));
        Ok(json!({"feature": f, "policy": policy, "chosen": row.chosen, "reason": row.reason, "requests_last_30_days": monthly,
                  "candidates": standings, "recommended": recommended}))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Promote {
    model: Option<String>,
    #[serde(default)]
    by: Option<String>,
    /// Promote a model whose evaluation did not qualify (or none).
    #[serde(default)]
    force: bool,
}

/// `POST /v1/routing/{feature}/promote`: the manual approval (or a rollback).
pub(super) async fn routing_promote(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(feature): Path<String>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    feature_ok(&feature)?;
    let req: Promote = parse_json(&body, "invalid_json")?;
    let by = req.by.map(|b| tollgate_protocol::text::clean_field(&b, 64)).filter(|b| !b.is_empty()).unwrap_or_else(|| "admin".into());
    let store = st.store.clone();
    let f = feature.clone();
    let model = req.model.clone();
    let seq = blocking(move || {
        let row = store.routing_policy(&f)?.ok_or_else(|| StoreError::NotFound(format!("feature '{f}' has no routing policy")))?;
        let policy: RoutingPolicy = serde_json::from_value(row.policy).map_err(|e| StoreError::Backend(e.to_string()))?;
        let reason = match &model {
            None => "no model: requests naming 'auto' are refused".to_string(),
            Some(m) => {
                let monthly = store.feature_requests(&f, now_ms().saturating_sub(30 * DAY))?;
                let standings = evals::standings(&policy, &finished(store.as_ref(), &f)?, monthly);
                match standings.iter().find(|s| &s.model == m) {
                    Some(s) if s.eligible => format!(
                        "feature {f}: {m} promoted by {by} (evaluation #{} passed {:.1}%)",
                        s.eval_id.unwrap_or(0),
                        s.pass_rate.unwrap_or(0.0) * 100.0
                    ),
                    _ if req.force => format!("feature {f}: {m} promoted by {by} without a qualifying evaluation"),
                    _ => return Err(StoreError::Invalid(format!("{m} has no evaluation that passed the threshold; send \"force\": true to promote it anyway"))),
                }
            }
        };
        store.choose_route(&f, model.as_deref(), &reason, &by, now_ms())
    })
    .await?;
    Ok(Json(json!({"feature": feature, "model": req.model, "routing_seq": seq})))
}

pub(super) async fn routing_list(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    Ok(Json(json!({"policies": blocking(move || store.routing_policies()).await?})))
}

pub(super) async fn routing_current(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<tollgate_protocol::routing::RoutingDoc>> {
    role(&st, &headers)?;
    let store = st.store.clone();
    Ok(Json(blocking(move || store.routing_current()).await?))
}

pub(super) async fn report_json_compliance(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(params): Query<HashMap<String, String>>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let r = report_query(&params)?;
    let store = st.store.clone();
    let (from, to) = (r.from_ms, r.to_ms);
    let rows = blocking(move || store.json_compliance(from, to)).await?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            v["compliance_pct"] = json!((1000 * c.valid).checked_div(c.asked).map(|p| p as f64 / 10.0));
            v
        })
        .collect();
    Ok(Json(json!({"from_ms": from, "to_ms": to, "rows": rows})))
}
