//! Budgets per key, team or project: set, get, list, delete; the budget view with use, reservations and projection.

use super::*;

/// A JSON field that may be absent (default), null (off) or a number.
pub(super) fn pct_field(v: &Option<Value>, name: &str, default: u32) -> ApiResult<Option<u32>> {
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

/// A limit as the ledger stores it (a signed 64-bit integer): a larger one
/// would be stored as another number than the one sent, so it is refused.
pub(super) fn limits_fit(limit_micros: Option<u64>, limit_tokens: Option<u64>) -> ApiResult<()> {
    for (name, v) in [("limit_micros", limit_micros), ("limit_tokens", limit_tokens)] {
        if v.is_some_and(|v| i64::try_from(v).is_err()) {
            return Err(ApiError::bad("invalid_field", format!("'{name}' must be at most {}", i64::MAX)));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetReq {
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
pub(super) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

pub(super) fn scope_of(s: &str) -> ApiResult<ScopeType> {
    ScopeType::parse(s).ok_or_else(|| ApiError::bad("invalid_scope", "scope type must be key, team or project"))
}

pub(super) fn budget_json(b: &Budget, doc: Option<&BudgetDoc>, reserved: Option<crate::store::Used>) -> Value {
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

pub(super) async fn put_budget(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((scope_type, scope_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let req: BudgetReq = serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))?;
    let b = budget_of(&scope_type, scope_id, req)?;
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

/// A budget from its scope and request body, checked.
fn budget_of(scope_type: &str, scope_id: String, req: BudgetReq) -> ApiResult<Budget> {
    let scope_type = scope_of(scope_type)?;
    valid_name("scope_id", &scope_id)?;
    if req.limit_micros.is_none() && req.limit_tokens.is_none() {
        return Err(ApiError::bad("missing_limit", "set limit_micros and/or limit_tokens"));
    }
    limits_fit(req.limit_micros, req.limit_tokens)?;
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
    let (soft_pct, hard_pct) = (pct_field(&req.soft_pct, "soft_pct", 80)?, pct_field(&req.hard_pct, "hard_pct", 100)?);
    // A warning after the stop warns of nothing: the stop comes first.
    if let (Some(soft), Some(hard)) = (soft_pct, hard_pct) {
        if soft > hard {
            let given = if req.soft_pct.is_none() { ", the default" } else { "" };
            return Err(ApiError::bad(
                "invalid_field",
                format!("'soft_pct' ({soft}{given}) must not exceed 'hard_pct' ({hard}): set soft_pct at most {hard}, or null to turn the warning off"),
            ));
        }
    }
    Ok(Budget {
        scope_type,
        scope_id,
        limit_micros: req.limit_micros,
        limit_tokens: req.limit_tokens,
        period,
        timezone,
        window_start_ms: req.window_start_ms,
        window_end_ms: req.window_end_ms,
        soft_pct,
        hard_pct,
        updated_ms: now_ms(),
    })
}

/// Budgets per import request.
pub const MAX_BUDGET_IMPORT: usize = 10_000;

/// `POST /v1/budget-imports`: `{"budgets": [{"scope_type", "scope_id", …the
/// body of PUT /v1/budgets…}]}`, up to 10,000 set in one transaction, all
/// or none (a budget already set for a scope is replaced, as by PUT).
pub(super) async fn import_budgets(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Response> {
    admin(&st, &headers)?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        budgets: Vec<serde_json::Map<String, Value>>,
    }
    // Rows are read as maps (scope apart from the PUT body), and a map keeps
    // the last of a member given twice: refuse such a body instead.
    tollgate_protocol::json::no_duplicate_members(&body).map_err(|e| ApiError::bad("duplicate_key", e))?;
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))?;
    if batch.budgets.is_empty() || batch.budgets.len() > MAX_BUDGET_IMPORT {
        return Err(ApiError::bad("invalid_field", format!("'budgets' must hold 1 to {MAX_BUDGET_IMPORT} budgets")));
    }
    let mut out = Vec::with_capacity(batch.budgets.len());
    let mut seen = std::collections::HashSet::new();
    for (i, mut row) in batch.budgets.into_iter().enumerate() {
        let at = |e: ApiError| ApiError::bad(e.code, format!("budgets[{i}]: {}", e.message));
        let mut text = |name: &str| match row.remove(name) {
            Some(Value::String(v)) => Ok(v),
            _ => Err(ApiError::bad("invalid_field", format!("budgets[{i}]: '{name}' must be a string"))),
        };
        let (scope_type, scope_id) = (text("scope_type")?, text("scope_id")?);
        // The rest is the body of PUT /v1/budgets (unknown fields refused).
        let req: BudgetReq = serde_json::from_value(Value::Object(row)).map_err(|e| ApiError::bad("invalid_json", format!("budgets[{i}]: {e}")))?;
        let b = budget_of(&scope_type, scope_id, req).map_err(at)?;
        if !seen.insert((b.scope_type, b.scope_id.clone())) {
            return Err(ApiError::bad("duplicate_scope", format!("budgets[{i}]: {} '{}' appears twice in the batch", b.scope_type.as_str(), b.scope_id)));
        }
        out.push(b);
    }
    let n = out.len();
    let store = st.store.clone();
    blocking(move || store.put_budgets(&out, now_ms())).await?;
    log_event("info", "budgets imported", json!({"count": n}));
    st.alerts_wake.notify_one();
    Ok((StatusCode::CREATED, Json(json!({"set": n}))).into_response())
}

/// A budget's state now and what Envoys hold of it.
pub(super) fn budget_view(store: &dyn Store, b: &Budget) -> Result<(Option<BudgetDoc>, Option<crate::store::Used>), StoreError> {
    let doc = budget_doc(store, b, now_ms())?;
    let reserved = match &doc {
        Some(d) => Some(store.reserved(b.scope_type, &b.scope_id, d.period_start_ms)?),
        None => None,
    };
    Ok((doc, reserved))
}

pub(super) async fn get_budget(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((scope_type, scope_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let scope_type = scope_of(&scope_type)?;
    let store = st.store.clone();
    let id = scope_id.clone();
    let b = blocking(move || store.get_budget(scope_type, &id))
        .await?
        .ok_or_else(|| ApiError::from(StoreError::NotFound(format!("no budget for {} '{scope_id}'", scope_type.as_str()))))?;
    let store = st.store.clone();
    let bc = b.clone();
    let (doc, reserved) = blocking(move || budget_view(store.as_ref(), &bc)).await?;
    Ok(Json(budget_json(&b, doc.as_ref(), reserved)))
}

pub(super) async fn delete_budget(
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

/// `GET /v1/budgets[?limit=N&after=type:id]`: every budget in scope order,
/// or a page of them; `total` counts them all, `next` names the page after.
pub(super) async fn list_budgets(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<super::PageQuery>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(a) => {
            let (t, id) = a.split_once(':').ok_or_else(|| ApiError::bad("invalid_field", "'after' is scope_type:scope_id"))?;
            Some((scope_of(t)?, id.to_string()))
        }
    };
    let limit = q.limit.unwrap_or(usize::MAX).max(1);
    let store = st.store.clone();
    let (out, total, next) = blocking(move || {
        let page = store.budgets_page(after.as_ref().map(|(t, id)| (*t, id.as_str())), limit.saturating_add(1))?;
        let next = (page.len() > limit).then(|| page.get(limit - 1).map(|b| format!("{}:{}", b.scope_type.as_str(), b.scope_id))).flatten();
        let mut v = Vec::new();
        for b in page.iter().take(limit) {
            let (doc, reserved) = budget_view(store.as_ref(), b)?;
            v.push(budget_json(b, doc.as_ref(), reserved));
        }
        let mut total = 0;
        for t in ScopeType::ALL {
            total += store.budgets_of_type(t, 0)?.0;
        }
        Ok((v, total, next))
    })
    .await?;
    Ok(Json(json!({"budgets": out, "total": total, "next": next})))
}

/// A budget's fleet-wide state now (no Envoy share: shares are grants, see
/// `Store::grant`). `None` when the budget has no current period (a fixed
/// window outside now).
pub fn budget_doc(store: &dyn Store, b: &Budget, now: u64) -> Result<Option<BudgetDoc>, StoreError> {
    let Some((start, end)) = b.bounds(now) else { return Ok(None) };
    let used = store.used(b.scope_type, &b.scope_id, start)?;
    Ok(Some(b.doc((start, end), used)))
}
