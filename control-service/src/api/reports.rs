//! Spend, alerts and reports: totals, grouped reports (JSON, CSV), movers, the monthly review.

use super::*;

#[derive(Deserialize)]
pub(super) struct AlertsQuery {
    #[serde(default)]
    limit: Option<u32>,
}

pub(super) async fn list_alerts(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<AlertsQuery>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let limit = q.limit.unwrap_or(100).min(1000);
    let (alerts, cache_alerts) = blocking(move || Ok((store.list_alerts(limit)?, store.list_cache_alerts(limit)?))).await?;
    Ok(Json(json!({"alerts": alerts, "cache_alerts": cache_alerts})))
}

#[derive(Deserialize)]
pub(super) struct SpendQuery {
    #[serde(default)]
    scope_type: Option<String>,
    #[serde(default)]
    scope_id: Option<String>,
    #[serde(default)]
    from_ms: Option<u64>,
    #[serde(default)]
    to_ms: Option<u64>,
}

pub(super) async fn spend(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<SpendQuery>) -> ApiResult<Json<Value>> {
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

pub(super) const DAY_MS: u64 = 86_400_000;

pub(super) fn report_query(params: &HashMap<String, String>) -> ApiResult<crate::reports::ReportQuery> {
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
                let known: Vec<&str> = Dim::ALL.iter().map(|d| d.name()).collect();
                ApiError::bad("invalid_dimension", format!("unknown dimension '{name}' ({})", known.join(", ")))
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

pub(super) async fn report_spend(
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
                "cache_hit_rate_pct": r.cache_hit_rate_permille().map(|h| h as f64 / 10.0),
                "cache_reported_input_tokens": r.cache_reported_input_tokens,
                "cache_savings_micros": r.cache_savings_micros,
                "cache_savings_usd": tollgate_protocol::format::usd_signed(r.cache_savings_micros),
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

pub(super) async fn report_movers(
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

pub(super) async fn report_monthly(
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

/// `GET /v1/reports/cache-misses`: what prompt-cache misses cost, per
/// feature, prompt version, model, reason and segment, each with its sentence.
pub(super) async fn report_cache_misses(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let r = report_query(&params)?;
    let name = |k: &str| params.get(k).filter(|v| !v.is_empty() && v.len() <= 256).cloned();
    let q = crate::store::CacheMissQuery { from_ms: r.from_ms, to_ms: r.to_ms, team: name("team"), feature: name("feature") };
    let store = st.store.clone();
    let rows = blocking(move || store.cache_misses(&q)).await?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|m| {
            let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
            v["lost_usd"] = json!(tollgate_protocol::format::usd(m.lost_micros));
            v["finding"] = json!(m.sentence());
            v
        })
        .collect();
    Ok(Json(json!({"from_ms": r.from_ms, "to_ms": r.to_ms, "rows": rows})))
}
