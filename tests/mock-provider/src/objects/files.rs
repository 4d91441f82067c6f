//! Files: OpenAI's (`/files`, `…/{file_id}`, `…/content`:
//! `CreateFileRequest`, its `purpose` one of six, `OpenAIFile`,
//! `ListFilesResponse`, `DeleteFileResponse`; an unknown id is "No such
//! File object", the API's wording), a response's `input_file` naming a
//! kept file billed the file's text as input, naming none refused.
//!
//! Anthropic's Files API on the same paths, for a request that sends
//! `anthropic-version` (its docs, platform.claude.com/docs/en/api/files-create,
//! `files-list`, `files-metadata`, `files-delete`, `files-content`):
//! `x-api-key`, a form with one `file` (and `expires_in_seconds`, an
//! integer); the beta header `files-api-2025-04-14` those docs ask for is
//! not required: anthropic-sdk-python 2.14's `beta.files` sends it only
//! when `betas` are given, so the API it was written against takes files
//! without it; `FileMetadata` (`file_…` ids, an RFC 3339 `created_at`,
//! `mime_type`, `size_bytes`, `downloadable: false` for an upload, which
//! cannot be downloaded); a list paged by `after_id` / `before_id`; deletion
//! answering `file_deleted`. A message's `document` block whose source is
//! `{"type": "file", "file_id"}` is billed the file's text as input.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode, Uri};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::{answer, page, poisoned, Answer, Store, LIMIT};
use crate::responses::Refusal;
use crate::{count_tokens, openai_checks, openai_error, respond, App};

pub struct StoredFile {
    pub object: Value,
    pub data: Bytes,
}

pub fn routes(r: Router<Arc<App>>) -> Router<Arc<App>> {
    r.route("/v1/files", post(upload_file).get(list_files))
        .route("/v1/files/{id}", get(get_file).delete(delete_file))
        .route("/v1/files/{id}/content", get(file_content))
}

impl Store {
    /// The input tokens of the kept files a response's input names
    /// (`input_file` parts with a `file_id`); an unknown one is refused.
    pub fn file_tokens(&self, m: &Map<String, Value>) -> Result<u64, Refusal> {
        let mut ids = Vec::new();
        file_ids(m.get("input").unwrap_or(&Value::Null), &mut ids);
        let files = self.files.lock().map_err(|_| poisoned())?;
        ids.iter().try_fold(0u64, |sum, id| {
            let f = files.get(*id).ok_or_else(|| no_such_file(id))?;
            Ok(sum + count_tokens(&String::from_utf8_lossy(&f.data)))
        })
    }

    /// The input tokens of the kept Anthropic files a message names (a
    /// `document` block with a `file` source); an unknown id is refused.
    pub fn anthropic_file_tokens(&self, req: &Value) -> Result<u64, Refusal> {
        let mut ids = Vec::new();
        anthropic_file_ids(req.get("messages").unwrap_or(&Value::Null), &mut ids);
        if ids.is_empty() {
            return Ok(0);
        }
        let files = self.anthropic_files.lock().map_err(|_| poisoned())?;
        ids.iter().try_fold(0u64, |sum, id| {
            let f = files.get(*id).ok_or_else(|| (404, format!("File not found: {id}"), None, None))?;
            Ok(sum + count_tokens(&String::from_utf8_lossy(&f.data)))
        })
    }
}

/// The `file_id` of every `input_file` part in a response's input.
fn file_ids<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| file_ids(x, out)),
        Value::Object(o) => {
            if o.get("type").and_then(Value::as_str) == Some("input_file") {
                if let Some(id) = o.get("file_id").and_then(Value::as_str) {
                    out.push(id);
                }
            }
            if let Some(c) = o.get("content") {
                file_ids(c, out);
            }
        }
        _ => {}
    }
}

/// The `file_id` of every `document` block with a `file` source.
fn anthropic_file_ids<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| anthropic_file_ids(x, out)),
        Value::Object(o) => {
            let source = o.get("source").filter(|_| o.get("type").and_then(Value::as_str) == Some("document"));
            if let Some(id) = source.filter(|s| s.get("type").and_then(Value::as_str) == Some("file")).and_then(|s| s.get("file_id")).and_then(Value::as_str) {
                out.push(id);
            }
            if let Some(c) = o.get("content") {
                anthropic_file_ids(c, out);
            }
        }
        _ => {}
    }
}

pub(super) fn no_such_file(id: &str) -> Refusal {
    (404, format!("No such File object: {id}"), Some("id"), None)
}

pub(super) const PURPOSES: &[&str] = &["assistants", "batch", "fine-tune", "vision", "user_data", "evals"];

/// `POST /v1/files`: a form with `file` and `purpose` (and nothing else
/// but `expires_after`), at most 512 MB.
async fn upload_file(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    if h.contains_key("anthropic-version") {
        return anthropic::upload(&app, &uri, &h, body).await;
    }
    if let Err(r) = openai_checks(&app, &uri, &h) {
        return *r;
    }
    let ctype = crate::header_str(&h, "content-type").unwrap_or("").to_string();
    let made = async {
        let mut file = None;
        let mut purpose = None;
        for crate::form::Part { name, file_name, data, .. } in crate::form::parts(&ctype, body).await? {
            match name.as_str() {
                "file" => file = Some((file_name.unwrap_or_else(|| "file".into()), data)),
                "purpose" => purpose = Some(String::from_utf8_lossy(&data).into_owned()),
                n if n.starts_with("expires_after") => {}
                other => return Err((400, format!("Unknown parameter: '{other}'."), None, Some("unknown_parameter"))),
            }
        }
        let Some((filename, data)) = file else {
            return Err((400, "Missing required parameter: 'file'.".to_string(), Some("file"), Some("missing_required_parameter")));
        };
        let purpose = match purpose {
            Some(p) if PURPOSES.contains(&p.as_str()) => p,
            Some(p) => return Err((400, format!("Invalid value for 'purpose': '{p}'. Supported values are: {}.", PURPOSES.join(", ")), Some("purpose"), Some("invalid_value"))),
            None => return Err((400, "Missing required parameter: 'purpose'.".to_string(), Some("purpose"), Some("missing_required_parameter"))),
        };
        let id = app.objects.next_id("file").replace('_', "-");
        let object = json!({"id": id, "object": "file", "bytes": data.len(), "created_at": 1_767_225_600, "expires_at": null,
                            "filename": filename, "purpose": purpose, "status": "processed", "status_details": null});
        let mut all = app.objects.files.lock().map_err(|_| poisoned())?;
        if all.len() < LIMIT {
            all.insert(id, StoredFile { object: object.clone(), data });
        }
        Ok(object)
    };
    match made.await {
        Ok(v) => respond(StatusCode::OK, &h, &uri, v.to_string(), "application/json"),
        Err((status, msg, param, code)) => openai_error(&h, &uri, status, &msg, param, code),
    }
}

async fn list_files(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap) -> Response<Body> {
    if h.contains_key("anthropic-version") {
        return anthropic::list(&app, &uri, &h);
    }
    answer(&app, &uri, &h, || {
        let files = app.objects.files.lock().map_err(|_| poisoned())?;
        let mut all: Vec<Value> = files.values().map(|f| f.object.clone()).collect();
        all.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        page(&uri, &all)
    })
}

async fn get_file(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    if h.contains_key("anthropic-version") {
        return anthropic::get(&app, &uri, &h, &id);
    }
    answer(&app, &uri, &h, || app.objects.files.lock().ok().and_then(|m| Some(m.get(&id)?.object.clone())).ok_or_else(|| no_such_file(&id)))
}

async fn delete_file(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    if h.contains_key("anthropic-version") {
        return anthropic::delete(&app, &uri, &h, &id);
    }
    answer(&app, &uri, &h, || {
        let gone = app.objects.files.lock().ok().and_then(|mut m| m.remove(&id));
        gone.map(|_| json!({"id": id, "object": "file", "deleted": true})).ok_or_else(|| no_such_file(&id))
    })
}

async fn file_content(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    if h.contains_key("anthropic-version") {
        return anthropic::content(&app, &uri, &h, &id);
    }
    if let Err(r) = openai_checks(&app, &uri, &h) {
        return *r;
    }
    match app.objects.files.lock().ok().and_then(|m| Some(m.get(&id)?.data.clone())) {
        Some(data) => {
            let mut r = Response::new(Body::from(data));
            crate::decorate(r.headers_mut(), &h, &uri, "application/octet-stream");
            r
        }
        None => {
            let (status, msg, param, code) = no_such_file(&id);
            openai_error(&h, &uri, status, &msg, param, code)
        }
    }
}

/// Anthropic's Files API (see the module's notes).
mod anthropic {
    use super::*;
    use crate::{error_body_with, Dialect};

    fn error(uri: &Uri, h: &HeaderMap, (status, msg, _, _): Refusal) -> Response<Body> {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        respond(code, h, uri, error_body_with(Dialect::Anthropic, status, &msg, None, None), "application/json")
    }

    /// The key, then `f`.
    fn checked(app: &App, uri: &Uri, h: &HeaderMap, f: impl FnOnce() -> Answer) -> Response<Body> {
        if let Err(m) = crate::check_key(app, Dialect::Anthropic, h) {
            return error(uri, h, (401, m, None, None));
        }
        match f() {
            Ok(v) => respond(StatusCode::OK, h, uri, v.to_string(), "application/json"),
            Err(r) => error(uri, h, r),
        }
    }

    fn not_found(id: &str) -> Refusal {
        (404, format!("File not found: {id}"), None, None)
    }

    pub async fn upload(app: &App, uri: &Uri, h: &HeaderMap, body: Bytes) -> Response<Body> {
        let ctype = crate::header_str(h, "content-type").unwrap_or("").to_string();
        let parts = crate::form::parts(&ctype, body).await;
        checked(app, uri, h, || {
            let mut file = None;
            for crate::form::Part { name, file_name, content_type, data } in parts? {
                match name.as_str() {
                    "file" => file = Some((file_name.unwrap_or_else(|| "file".into()), content_type, data)),
                    // (The SDKs' `expires_in_seconds`: an integer.)
                    "expires_in_seconds" if std::str::from_utf8(&data).ok().and_then(|v| v.parse::<u64>().ok()).is_some() => {}
                    "expires_in_seconds" => return Err((400, "expires_in_seconds: Input should be a valid integer".into(), None, None)),
                    other => return Err((400, format!("{other}: Extra inputs are not permitted"), None, None)),
                }
            }
            let (filename, mime, data) = file.ok_or_else(|| (400, "file: Field required".to_string(), None, None))?;
            let id = format!("file_011CMock{:012}", app.objects.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
            let object = json!({"id": id, "created_at": "2026-01-01T00:00:00Z", "filename": filename,
                                "mime_type": mime.unwrap_or_else(|| "application/octet-stream".into()), "size_bytes": data.len(),
                                "type": "file", "downloadable": false});
            let mut all = app.objects.anthropic_files.lock().map_err(|_| poisoned())?;
            if all.len() < LIMIT {
                all.insert(id, StoredFile { object: object.clone(), data });
            }
            Ok(object)
        })
    }

    /// Newest first; `limit` 1–1000 (default 20), `after_id` / `before_id`.
    pub fn list(app: &App, uri: &Uri, h: &HeaderMap) -> Response<Body> {
        checked(app, uri, h, || {
            let (mut limit, mut after, mut before) = (20usize, None, None);
            for kv in uri.query().unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match k {
                    "limit" => limit = v.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| (400, "limit: Input should be between 1 and 1000".to_string(), None, None))?,
                    "after_id" => after = Some(v.to_string()),
                    "before_id" => before = Some(v.to_string()),
                    _ => {}
                }
            }
            let files = app.objects.anthropic_files.lock().map_err(|_| poisoned())?;
            let mut all: Vec<Value> = files.values().map(|f| f.object.clone()).collect();
            all.sort_by(|a, b| b["id"].as_str().cmp(&a["id"].as_str()));
            let at = |id: &Option<String>| id.as_ref().and_then(|i| all.iter().position(|f| f["id"].as_str() == Some(i.as_str())));
            let (from, to) = match (at(&after), at(&before)) {
                (Some(a), _) => (a + 1, all.len()),
                (None, Some(b)) => (b.saturating_sub(limit), b),
                (None, None) => (0, all.len()),
            };
            let rest = all.get(from..to).unwrap_or_default();
            let data: Vec<&Value> = rest.iter().take(limit).collect();
            let id = |v: Option<&&Value>| v.and_then(|f| f.get("id")).cloned().unwrap_or(Value::Null);
            Ok(json!({"data": data, "first_id": id(data.first()), "last_id": id(data.last()), "has_more": rest.len() > limit}))
        })
    }

    pub fn get(app: &App, uri: &Uri, h: &HeaderMap, id: &str) -> Response<Body> {
        checked(app, uri, h, || app.objects.anthropic_files.lock().ok().and_then(|m| Some(m.get(id)?.object.clone())).ok_or_else(|| not_found(id)))
    }

    pub fn delete(app: &App, uri: &Uri, h: &HeaderMap, id: &str) -> Response<Body> {
        checked(app, uri, h, || {
            let gone = app.objects.anthropic_files.lock().ok().and_then(|mut m| m.remove(id));
            gone.map(|_| json!({"id": id, "type": "file_deleted"})).ok_or_else(|| not_found(id))
        })
    }

    /// Only files the model made can be downloaded: an upload cannot.
    pub fn content(app: &App, uri: &Uri, h: &HeaderMap, id: &str) -> Response<Body> {
        checked(app, uri, h, || {
            let known = app.objects.anthropic_files.lock().ok().is_some_and(|m| m.contains_key(id));
            Err(if known { (400, format!("File {id} is not downloadable."), None, None) } else { not_found(id) })
        })
    }
}
