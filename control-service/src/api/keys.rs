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

/// A checked key row for a key with this hash: team, project and id
/// valid; without an id, one made from the hash. (Creation and import.)
fn key_row(k: NewKey, key_hash: String, now: u64) -> ApiResult<KeyRow> {
    valid_name("team", &k.team)?;
    valid_name("project", &k.project)?;
    let id = match k.id {
        Some(id) => {
            valid_name("id", &id)?;
            id
        }
        None => format!("key-{}", key_hash.get(..12).unwrap_or(&key_hash)),
    };
    Ok(KeyRow { id, key_hash, team: k.team, project: k.project, models: k.models, projects: k.projects, tags: k.tags, created_ms: now, revoked_ms: None })
}

pub(super) fn key_json(k: &KeyRow) -> Value {
    json!({"id": k.id, "key_hash": k.key_hash, "team": k.team, "project": k.project, "models": k.models,
           "projects": k.projects, "tags": k.tags, "created_ms": k.created_ms, "revoked_ms": k.revoked_ms,
           "status": if k.revoked_ms.is_some() { "revoked" } else { "active" }})
}

pub(super) async fn create_key(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Response> {
    admin(&st, &headers)?;
    let req: NewKey = serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))?;
    let secret = new_secret("tg-")?;
    let row = key_row(req, hash_key(&secret), now_ms())?;
    let store = st.store.clone();
    let r = row.clone();
    blocking(move || store.create_key(&r)).await?;
    log_event("info", "key created", json!({"key_id": row.id, "team": row.team, "project": row.project}));
    let mut v = key_json(&row);
    v["key"] = Value::String(secret);
    v["note"] = Value::String("the key is shown once; only its hash is stored".into());
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// One key of an import. A key migrating from another gateway keeps
/// working: give its `key` (hashed here, never stored) or its `key_hash`
/// (SHA3-256, hex); with neither, a new key is made and returned once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportKey {
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
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportBatch {
    keys: Vec<ImportKey>,
}

/// Keys per import request.
pub const MAX_IMPORT: usize = 10_000;

/// A checked import row, and the key made for it (shown once).
fn import_row(i: usize, k: ImportKey, now: u64) -> ApiResult<(KeyRow, Option<String>)> {
    let at = |e: ApiError| ApiError::bad(e.code, format!("keys[{i}]: {}", e.message));
    let ImportKey { id, team, project, models, projects, tags, key, key_hash } = k;
    // "*" lets a key charge any project.
    for p in projects.iter().filter(|p| p.as_str() != "*") {
        valid_name("projects", p).map_err(at)?;
    }
    let (hash, made) = match (key, key_hash) {
        (Some(_), Some(_)) => return Err(ApiError::bad("invalid_field", format!("keys[{i}]: give 'key' or 'key_hash', not both"))),
        (Some(key), None) => {
            if key.len() < 16 || key.len() > 256 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ApiError::bad("invalid_field", format!("keys[{i}]: 'key' must be 16-256 visible ASCII characters")));
            }
            (hash_key(&key), None)
        }
        (None, Some(h)) => {
            if !tollgate_protocol::keys::is_key_hash(&h) {
                return Err(ApiError::bad("invalid_field", format!("keys[{i}]: 'key_hash' must be 64 lowercase hex digits (SHA3-256)")));
            }
            (h, None)
        }
        (None, None) => {
            let secret = new_secret("tg-")?;
            (hash_key(&secret), Some(secret))
        }
    };
    let row = key_row(NewKey { id, team, project, models, projects, tags }, hash, now).map_err(at)?;
    Ok((row, made))
}

/// `POST /v1/key-imports`: up to 10,000 keys in one transaction, all or
/// none (a bad row or a clash names its index and creates nothing).
pub(super) async fn import_keys(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Response> {
    admin(&st, &headers)?;
    let batch: ImportBatch = serde_json::from_slice(&body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))?;
    if batch.keys.is_empty() || batch.keys.len() > MAX_IMPORT {
        return Err(ApiError::bad("invalid_field", format!("'keys' must hold 1 to {MAX_IMPORT} keys")));
    }
    let now = now_ms();
    let mut rows = Vec::with_capacity(batch.keys.len());
    let mut made = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, k) in batch.keys.into_iter().enumerate() {
        let (row, secret) = import_row(i, k, now)?;
        if !ids.insert(row.id.clone()) {
            return Err(ApiError::bad("duplicate_id", format!("keys[{i}]: id '{}' appears twice in the batch", row.id)));
        }
        if let Some(s) = secret {
            made.push(json!({"index": i, "id": row.id, "key": s}));
        }
        rows.push(row);
    }
    let n = rows.len();
    let store = st.store.clone();
    blocking(move || store.create_keys(&rows)).await?;
    st.counters.keys_imported.fetch_add(n as u64, Relaxed);
    log_event("info", "keys imported", json!({"count": n, "made": made.len()}));
    let body = json!({"created": n, "made": made, "note": "made keys are shown once; only their hashes are stored"});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/keys[?limit=N&after=id]`: keys in the order they were made,
/// all of them or a page; `total` counts them all, `next` names the page
/// after (pass it as `after`).
pub(super) async fn list_keys(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<super::PageQuery>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let limit = q.limit.unwrap_or(usize::MAX).max(1);
    let after = q.after.filter(|a| !a.is_empty());
    let (total, mut keys) = blocking(move || store.keys_page(after.as_deref(), limit.saturating_add(1))).await?;
    let next = (keys.len() > limit).then(|| {
        keys.truncate(limit);
        keys.last().map(|k| k.id.clone())
    });
    Ok(Json(json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>(), "total": total, "next": next.flatten()})))
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
