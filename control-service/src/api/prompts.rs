//! The prompt registry: `GET /v1/prompts`, `GET /v1/prompts/{name}`,
//! `POST /v1/prompts/{name}/versions`, `PUT /v1/prompts/{name}/labels/{label}`,
//! `GET /v1/prompts/{name}/diff?from=&to=` (admin), and
//! `GET /v1/prompts/current` for the Envoys (fleet token).

use super::*;
use tollgate_protocol::prompts::{valid_name, version_tag, PromptContent, PromptsDoc};

/// Names the registry keeps for itself.
const RESERVED: &[&str] = &["current"];

fn check_name(name: &str, what: &str) -> ApiResult<()> {
    if !valid_name(name) || RESERVED.contains(&name) {
        return Err(ApiError::bad("invalid_name", format!("the {what} must be 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.' (not 'current')")));
    }
    Ok(())
}

/// Who made a change: `by` in the body (bounded, cleaned), else "admin".
fn actor(by: Option<String>) -> String {
    by.map(|b| tollgate_protocol::text::clean_field(&b, 64)).filter(|b| !b.is_empty()).unwrap_or_else(|| "admin".into())
}

pub(super) async fn prompts_list(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let prompts = blocking(move || store.list_prompts()).await?;
    Ok(Json(json!({"prompts": prompts})))
}

pub(super) async fn prompts_current(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<PromptsDoc>> {
    role(&st, &headers)?;
    let store = st.store.clone();
    Ok(Json(blocking(move || store.prompts_current()).await?))
}

pub(super) async fn prompt_get(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    check_name(&name, "prompt name")?;
    let store = st.store.clone();
    let n = name.clone();
    let view = blocking(move || store.prompt(&n)).await?.ok_or_else(|| StoreError::NotFound(format!("no prompt '{name}'")))?;
    let versions: Vec<Value> = view
        .versions
        .iter()
        .map(|v| {
            json!({"version": v.version, "hash": v.hash, "tag": version_tag(&view.name, v.version, &v.hash), "content": v.content,
                   "variables": v.content.variables(), "static_prefix_bytes": v.content.static_prefix_bytes(),
                   "created_ms": v.created_ms, "created_by": v.created_by, "note": v.note})
        })
        .collect();
    Ok(Json(json!({"name": view.name, "labels": view.labels, "versions": versions, "history": view.history})))
}

/// A provider caches from about 1,024 tokens (~4 KiB) of identical prefix.
const CACHEABLE_BYTES: usize = 4096;

pub(super) async fn prompt_add_version(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    admin(&st, &headers)?;
    check_name(&name, "prompt name")?;
    let raw: serde_json::Map<String, Value> = parse_json(&body, "invalid_json")?;
    if let Some(k) = raw.keys().find(|k| !["system", "messages", "note", "by", "label"].contains(&k.as_str())) {
        return Err(ApiError::bad("invalid_json", format!("unknown field '{}'", tollgate_protocol::text::clean_field(k, 64))));
    }
    let text = |k: &str| -> ApiResult<Option<String>> {
        match raw.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::bad("invalid_json", format!("{k}: must be a string"))),
        }
    };
    let (note, by, label) = (text("note")?, text("by")?, text("label")?);
    let only_content: serde_json::Map<String, Value> = raw.iter().filter(|(k, _)| *k == "system" || *k == "messages").map(|(k, v)| (k.clone(), v.clone())).collect();
    let content: PromptContent = serde_path_to_error::deserialize(Value::Object(only_content))
        .map_err(|e| ApiError::bad("invalid_prompt", format!("{}: {}", e.path(), e.inner())))?;
    content.validate().map_err(|(f, m)| ApiError::bad("invalid_prompt", format!("{f}: {m}")))?;
    if let Some(l) = &label {
        check_name(l, "label")?;
    }
    let by = actor(by);
    let note = note.map(|n| tollgate_protocol::text::clean_field(&n, 500));
    let store = st.store.clone();
    let (n, label_moved) = (name.clone(), label.clone());
    let (v, created) = blocking(move || {
        let (v, created) = store.add_prompt_version(&n, &content, &by, note.as_deref(), now_ms())?;
        if let Some(l) = &label {
            store.set_prompt_label(&n, l, v.version, &by, now_ms())?;
        }
        Ok((v, created))
    })
    .await?;
    let prefix = v.content.static_prefix_bytes();
    let mut warnings = Vec::new();
    if prefix < CACHEABLE_BYTES {
        warnings.push(format!(
            "the part before the first variable is {prefix} bytes: below ~{CACHEABLE_BYTES} bytes (1,024 tokens) providers do not cache it"
        ));
    }
    log_event("info", "prompt_version", json!({"name": name, "version": v.version, "created": created}));
    let body = json!({"name": name, "version": v.version, "hash": v.hash, "tag": version_tag(&name, v.version, &v.hash), "created": created,
                      "variables": v.content.variables(), "static_prefix_bytes": prefix, "warnings": warnings, "label": label_moved});
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveLabel {
    version: u32,
    #[serde(default)]
    by: Option<String>,
}

pub(super) async fn prompt_set_label(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((name, label)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    check_name(&name, "prompt name")?;
    check_name(&label, "label")?;
    let req: MoveLabel = parse_json(&body, "invalid_json")?;
    let by = actor(req.by);
    let store = st.store.clone();
    let (n, l) = (name.clone(), label.clone());
    blocking(move || store.set_prompt_label(&n, &l, req.version, &by, now_ms())).await?;
    log_event("info", "prompt_label", json!({"name": name, "label": label, "version": req.version}));
    Ok(Json(json!({"name": name, "label": label, "version": req.version})))
}

/// A version's content as lines, for a diff.
fn as_text(c: &PromptContent) -> String {
    let mut out = String::new();
    if let Some(s) = &c.system {
        out.push_str("[system]\n");
        out.push_str(s);
        out.push('\n');
    }
    for m in &c.messages {
        out.push_str(&format!("[{}]\n{}\n", m.role, m.content));
    }
    out
}

/// A unified diff of two versions' contents.
pub fn diff(a: &PromptContent, b: &PromptContent, from: u32, to: u32) -> String {
    similar::TextDiff::from_lines(&as_text(a), &as_text(b)).unified_diff().context_radius(3).header(&format!("v{from}"), &format!("v{to}")).to_string()
}

pub(super) async fn prompt_diff(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    check_name(&name, "prompt name")?;
    let num = |k: &str| q.get(k).map(|v| v.parse::<u32>().map_err(|_| ApiError::bad("invalid_field", format!("'{k}' must be a version number")))).transpose();
    let (from, to) = (num("from")?, num("to")?);
    let store = st.store.clone();
    let n = name.clone();
    let view = blocking(move || store.prompt(&n)).await?.ok_or_else(|| StoreError::NotFound(format!("no prompt '{name}'")))?;
    let latest = view.versions.last().map_or(0, |v| v.version);
    let to = to.unwrap_or(latest);
    let from = from.unwrap_or(to.saturating_sub(1).max(1));
    let get = |v: u32| view.versions.iter().find(|x| x.version == v).ok_or_else(|| ApiError::from(StoreError::NotFound(format!("prompt '{name}' has no version {v}"))));
    let (a, b) = (get(from)?, get(to)?);
    Ok(Json(json!({"name": name, "from": from, "to": to, "diff": diff(&a.content, &b.content, from, to)})))
}
