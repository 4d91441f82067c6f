//! Virtual keys: create (shown once), list, get, revoke, rotate.

use super::*;

pub(super) fn new_secret(prefix: &str) -> ApiResult<String> {
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| ApiError::from(StoreError::Backend(e.to_string())))?;
    Ok(format!("{prefix}{}", to_hex(&raw)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
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

pub(super) fn valid_name(field: &str, v: &str) -> ApiResult<()> {
    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b)) {
        return Err(ApiError::bad("invalid_field", format!("'{field}' must be 1-128 characters of [A-Za-z0-9-_.:/@]")));
    }
    Ok(())
}

pub(super) fn key_json(k: &KeyRow) -> Value {
    json!({"id": k.id, "key_hash": k.key_hash, "team": k.team, "project": k.project, "models": k.models,
           "projects": k.projects, "tags": k.tags, "created_ms": k.created_ms, "revoked_ms": k.revoked_ms,
           "status": if k.revoked_ms.is_some() { "revoked" } else { "active" }})
}

pub(super) async fn create_key(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Response> {
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

pub(super) async fn list_keys(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let keys = blocking(move || store.list_keys()).await?;
    Ok(Json(json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()})))
}

pub(super) async fn get_key(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let idc = id.clone();
    match blocking(move || store.get_key(&idc)).await? {
        Some(k) => Ok(Json(key_json(&k))),
        None => Err(StoreError::NotFound(format!("no key with id '{id}'")).into()),
    }
}

pub(super) async fn revoke_key(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let idc = id.clone();
    blocking(move || store.revoke_key(&idc, now_ms())).await?;
    log_event("info", "key revoked", json!({"key_id": id}));
    Ok(Json(json!({"id": id, "status": "revoked"})))
}

pub(super) async fn rotate_key(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let secret = new_secret("tg-")?;
    let h = hash_key(&secret);
    let store = st.store.clone();
    let (idc, hc) = (id.clone(), h.clone());
    blocking(move || store.set_key_hash(&idc, &hc)).await?;
    log_event("info", "key rotated", json!({"key_id": id}));
    Ok(Json(json!({"id": id, "key": secret, "key_hash": h, "note": "the old key stopped working; the new key is shown once"})))
}
