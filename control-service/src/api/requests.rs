//! Budget increase requests: filed with a team key or by an admin, approved or refused by an admin.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRequest {
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
pub(super) async fn create_request(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Response> {
    let req: NewRequest = serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))?;
    let scope_type = scope_of(&req.scope_type)?;
    if req.limit_micros.is_none() && req.limit_tokens.is_none() {
        return Err(ApiError::bad("missing_limit", "ask for a new limit_micros and/or limit_tokens"));
    }
    super::budgets::limits_fit(req.limit_micros, req.limit_tokens)?;
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
            let key = blocking(move || store.key_by_hash(&h))
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
pub(super) struct RequestsQuery {
    #[serde(default)]
    status: Option<String>,
}

pub(super) async fn list_requests(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<RequestsQuery>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let v = blocking(move || store.list_requests(q.status.as_deref())).await?;
    Ok(Json(json!({"requests": v})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Decision {
    #[serde(default)]
    decided_by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

pub(super) async fn approve_request(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<i64>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    decide(st, headers, id, body, true).await
}

pub(super) async fn refuse_request(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<i64>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    decide(st, headers, id, body, false).await
}

pub(super) async fn decide(st: Arc<AppState>, headers: HeaderMap, id: i64, body: axum::body::Bytes, approve: bool) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let d: Decision = if body.is_empty() { Decision::default() } else { serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))? };
    let by = d.decided_by.unwrap_or_else(|| "admin".into());
    let store = st.store.clone();
    // One transaction in the store: the decision and, for an approval, the new limit.
    let decided = blocking(move || store.decide_request(id, approve, &by, d.note.as_deref(), now_ms())).await?;
    log_event("info", "budget increase decided", json!({"id": id, "status": decided.status, "by": decided.decided_by}));
    Ok(Json(serde_json::to_value(decided).unwrap_or(Value::Null)))
}
