//! OpenAI's Batch API (`/v1/batches`, `…/{batch_id}`, `…/cancel`), as
//! openai/openai-openapi's `openapi.yaml` has it: `CreateBatchRequest`
//! (`input_file_id` of a file uploaded with purpose `batch`, `endpoint`
//! one of eight, `completion_window` only `24h`, `metadata` of at most 16
//! members, keys of 64 characters and string values of 512), the `Batch`
//! object (`validating` → `in_progress` → `finalizing` → `completed`, or
//! `failed` with `errors`, or `cancelling` → `cancelled`) with its `model`
//! and `usage` (reported on batches created since September 2025), and
//! `ListBatchesResponse`. The input file's lines are the batch guide's
//! (`{"custom_id", "method": "POST", "url", "body"}`, one model per file,
//! each `custom_id` once); the output file's are its
//! (`{"id": "batch_req_…", "custom_id", "response": {"status_code",
//! "request_id", "body"}, "error": null}`; developers.openai.com/api/docs/guides/batch,
//! also quoted in tests/captures/README.md). Each line is answered by the
//! mock's own endpoint for it, so a batch bills what those requests would
//! (and `/mock/stats` counts them).
//!
//! `x-mock-batch-delay-ms: N` on the create holds the batch `in_progress`
//! for N ms first (a batch to cancel); a batch read back misbehaves as the
//! other answers do when asked (`x-mock-gzip`, hostile.rs).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, Uri};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::files::StoredFile;
use super::{answer, missing, object_body, page, poisoned, Answer, LIMIT};
use crate::responses::Refusal;
use crate::App;

const ENDPOINTS: &[&str] = &[
    "/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos",
];
const MAX_LINES: usize = 50_000;

/// Unix seconds now (batch times are real: a charge is dated when its batch ended).
fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn routes(r: Router<Arc<App>>) -> Router<Arc<App>> {
    r.route("/v1/batches", post(create).get(list))
        .route("/v1/batches/{id}", get(retrieve))
        .route("/v1/batches/{id}/cancel", post(cancel))
}

fn invalid(msg: String, param: &'static str) -> Refusal {
    (400, msg, Some(param), Some("invalid_value"))
}

fn not_found(id: &str) -> Refusal {
    (404, format!("No batch found with id '{id}'."), None, None)
}

/// The request checked as the API checks it: the batch object, `validating`.
fn created(app: &App, body: &Bytes) -> Answer {
    let m = object_body(body)?;
    for k in m.keys() {
        if !["input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"].contains(&k.as_str()) {
            return Err((400, format!("Unrecognized request argument supplied: {k}"), None, None));
        }
    }
    let text = |name: &'static str| match m.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(missing(name)),
        Some(_) => Err((400, format!("Invalid type for '{name}': expected a string."), Some(name), Some("invalid_type"))),
    };
    let (file, endpoint, window) = (text("input_file_id")?, text("endpoint")?, text("completion_window")?);
    if !ENDPOINTS.contains(&endpoint.as_str()) {
        return Err(invalid(format!("Invalid value for 'endpoint': '{endpoint}'. Supported values are: {}.", ENDPOINTS.join(", ")), "endpoint"));
    }
    if window != "24h" {
        return Err(invalid(format!("Invalid value for 'completion_window': '{window}'. Supported values are: '24h'."), "completion_window"));
    }
    let metadata = super::metadata(m.get("metadata"))?;
    let files = app.objects.files.lock().map_err(|_| poisoned())?;
    match files.get(&file).and_then(|f| f.object.get("purpose")?.as_str()) {
        Some("batch") => {}
        Some(_) => return Err(invalid(format!("Invalid 'input_file_id': '{file}'. The file must be uploaded with purpose 'batch'."), "input_file_id")),
        None => return Err(invalid(format!("Invalid 'input_file_id': '{file}'. No such File object."), "input_file_id")),
    }
    Ok(json!({
        "id": app.objects.next_id("batch"), "object": "batch", "endpoint": endpoint, "model": null, "errors": null,
        "input_file_id": file, "completion_window": "24h", "status": "validating", "output_file_id": null, "error_file_id": null,
        "created_at": now(), "in_progress_at": null, "expires_at": now() + 86_400, "finalizing_at": null, "completed_at": null,
        "failed_at": null, "expired_at": null, "cancelling_at": null, "cancelled_at": null,
        "request_counts": {"total": 0, "completed": 0, "failed": 0}, "usage": null, "metadata": metadata,
    }))
}

async fn create(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    let made = std::cell::Cell::new(None);
    let r = answer(&app, &uri, &h, || {
        let b = created(&app, &body)?;
        let id = b["id"].as_str().unwrap_or_default().to_string();
        let mut all = app.objects.batches.lock().map_err(|_| poisoned())?;
        if all.len() >= LIMIT {
            return Err((429, "Too many batches.".into(), None, None));
        }
        all.insert(id.clone(), b.clone());
        made.set(Some(id));
        Ok(b)
    });
    if let Some(id) = made.take() {
        let delay = crate::header_u64(&h, "x-mock-batch-delay-ms").unwrap_or(0).min(60_000);
        let mut line_h = HeaderMap::new();
        for name in ["authorization", "host"] {
            if let Some(v) = h.get(name) {
                line_h.insert(name, v.clone());
            }
        }
        tokio::spawn(run(app, id, line_h, delay));
    }
    r
}

/// Applies `f` to the batch kept under `id`; its new state.
fn update(app: &App, id: &str, f: impl FnOnce(&mut Map<String, Value>)) -> Option<Value> {
    let mut all = app.objects.batches.lock().ok()?;
    let b = all.get_mut(id)?;
    if let Some(o) = b.as_object_mut() {
        f(o);
    }
    Some(b.clone())
}

fn status(app: &App, id: &str) -> String {
    app.objects.batches.lock().ok().and_then(|m| Some(m.get(id)?["status"].as_str()?.to_string())).unwrap_or_default()
}

/// One line of the input file checked: its custom id, model and body.
fn line_of(n: usize, text: &str, endpoint: &str, seen: &mut Vec<String>) -> Result<(String, String, Value), Value> {
    let fail = |code: &str, message: String| json!({"code": code, "message": message, "param": null, "line": n});
    let Ok(Value::Object(l)) = serde_json::from_str::<Value>(text) else {
        return Err(fail("invalid_json_line", "This line is not parseable as valid JSON.".into()));
    };
    let Some(Value::String(custom)) = l.get("custom_id") else {
        return Err(fail("missing_required_parameter", "Missing required parameter: 'custom_id'.".into()));
    };
    if seen.contains(custom) {
        return Err(fail("duplicate_custom_id", format!("The custom_id '{custom}' is used more than once in this file.")));
    }
    if l.get("method").and_then(Value::as_str) != Some("POST") {
        return Err(fail("invalid_method", "The 'method' of a batch request must be 'POST'.".into()));
    }
    if l.get("url").and_then(Value::as_str) != Some(endpoint) {
        return Err(fail("mismatched_endpoint", format!("The 'url' of this request does not match the batch's endpoint '{endpoint}'.")));
    }
    let Some(body @ Value::Object(_)) = l.get("body") else {
        return Err(fail("missing_required_parameter", "Missing required parameter: 'body'.".into()));
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return Err(fail("missing_required_parameter", "Missing required parameter: 'body.model'.".into()));
    };
    seen.push(custom.clone());
    Ok((custom.clone(), model.to_string(), body.clone()))
}

/// Tokens a line's answer reports, whatever its API's names for them.
fn tokens(u: &Value) -> [u64; 4] {
    let n = |names: &[&str]| names.iter().find_map(|k| u.get(*k)?.as_u64()).unwrap_or(0);
    let cached = ["prompt_tokens_details", "input_tokens_details"].iter().find_map(|k| u.get(*k)?.get("cached_tokens")?.as_u64()).unwrap_or(0);
    let reasoning = ["completion_tokens_details", "output_tokens_details"].iter().find_map(|k| u.get(*k)?.get("reasoning_tokens")?.as_u64()).unwrap_or(0);
    [n(&["prompt_tokens", "input_tokens"]), cached, n(&["completion_tokens", "output_tokens"]), reasoning]
}

async fn answer_line(app: &Arc<App>, endpoint: &str, h: &HeaderMap, body: Bytes) -> (u16, Value) {
    let uri: Uri = endpoint.parse().unwrap_or_else(|_| Uri::from_static("/"));
    let (s, h) = (State(app.clone()), h.clone());
    let r = match endpoint {
        "/v1/chat/completions" => crate::chat(s, uri, h, body).await,
        "/v1/responses" => crate::respond_api(s, uri, h, body).await,
        "/v1/embeddings" => crate::embed(s, uri, h, body).await,
        "/v1/completions" => crate::complete(s, uri, h, body).await,
        "/v1/moderations" => crate::moderate(s, uri, h, body).await,
        "/v1/images/generations" => crate::generate_images(s, uri, h, body).await,
        _ => return (400, json!({"error": {"message": format!("Batches of {endpoint} are not served by this mock."), "type": "invalid_request_error", "param": null, "code": null}})),
    };
    let status = r.status().as_u16();
    let bytes = axum::body::to_bytes(r.into_body(), 64 << 20).await.unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn keep_file(app: &App, data: String, name: &str) -> Option<String> {
    let id = app.objects.next_id("file").replace('_', "-");
    let object = json!({"id": id, "object": "file", "bytes": data.len(), "created_at": now(), "expires_at": null,
                        "filename": name, "purpose": "batch_output", "status": "processed", "status_details": null});
    let mut all = app.objects.files.lock().ok()?;
    (all.len() < LIMIT).then(|| all.insert(id.clone(), StoredFile { object, data: Bytes::from(data) }))?;
    Some(id)
}

/// Runs a batch: validation, each line answered, the files and usage kept.
async fn run(app: Arc<App>, id: String, h: HeaderMap, delay_ms: u64) {
    let Some(batch) = update(&app, &id, |_| {}) else { return };
    let endpoint = batch["endpoint"].as_str().unwrap_or_default().to_string();
    let input = batch["input_file_id"].as_str().unwrap_or_default().to_string();
    let data = app.objects.files.lock().ok().and_then(|m| Some(m.get(&input)?.data.clone())).unwrap_or_default();
    let text = String::from_utf8_lossy(&data).into_owned();
    let (mut lines, mut errors, mut seen, mut model) = (Vec::new(), Vec::new(), Vec::new(), None::<String>);
    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match line_of(i + 1, l, &endpoint, &mut seen) {
            Ok((custom, m, body)) => {
                match &model {
                    Some(first) if *first != m => errors.push(json!({"code": "mismatched_model", "message": format!("The provided model '{m}' does not match the model '{first}' of the other requests: a batch runs one model."), "param": "body.model", "line": i + 1})),
                    _ => model = Some(m),
                }
                lines.push((custom, body));
            }
            Err(e) => errors.push(e),
        }
    }
    if lines.len() > MAX_LINES {
        errors.push(json!({"code": "too_many_requests", "message": format!("A batch holds at most {MAX_LINES} requests."), "param": null, "line": null}));
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(json!({"code": "empty_file", "message": "The input file has no requests.", "param": null, "line": null}));
    }
    if !errors.is_empty() {
        update(&app, &id, |b| {
            b.insert("status".into(), json!("failed"));
            b.insert("failed_at".into(), json!(now()));
            b.insert("errors".into(), json!({"object": "list", "data": errors}));
        });
        return;
    }
    update(&app, &id, |b| {
        b.insert("status".into(), json!("in_progress"));
        b.insert("in_progress_at".into(), json!(now()));
        b.insert("model".into(), json!(model));
        b.insert("request_counts".into(), json!({"total": lines.len(), "completed": 0, "failed": 0}));
    });
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let (mut out, mut failed_out, mut sums, mut done, mut failed) = (String::new(), String::new(), [0u64; 4], 0u64, 0u64);
    for (n, (custom, body)) in lines.into_iter().enumerate() {
        if status(&app, &id) == "cancelling" {
            break;
        }
        let (code, answer) = answer_line(&app, &endpoint, &h, Bytes::from(body.to_string())).await;
        let req = format!("req_mock{n:020}");
        if code == 200 {
            let t = tokens(answer.get("usage").unwrap_or(&Value::Null));
            for (s, v) in sums.iter_mut().zip(t) {
                *s = s.saturating_add(v);
            }
            done += 1;
            out.push_str(&json!({"id": format!("batch_req_{req}"), "custom_id": custom, "response": {"status_code": 200, "request_id": req, "body": answer}, "error": null}).to_string());
            out.push('\n');
        } else {
            failed += 1;
            failed_out.push_str(&json!({"id": format!("batch_req_{req}"), "custom_id": custom, "response": {"status_code": code, "request_id": req, "body": answer}, "error": null}).to_string());
            failed_out.push('\n');
        }
    }
    let cancelled = status(&app, &id) == "cancelling";
    let output = (!out.is_empty()).then(|| keep_file(&app, out, &format!("{id}_output.jsonl"))).flatten();
    let error_file = (!failed_out.is_empty()).then(|| keep_file(&app, failed_out, &format!("{id}_error.jsonl"))).flatten();
    let [input_tokens, cached, output_tokens, reasoning] = sums;
    update(&app, &id, |b| {
        let (status, at) = if cancelled { ("cancelled", "cancelled_at") } else { ("completed", "completed_at") };
        if !cancelled {
            b.insert("finalizing_at".into(), json!(now()));
        }
        b.insert("status".into(), json!(status));
        b.insert(at.into(), json!(now()));
        b.insert("output_file_id".into(), json!(output));
        b.insert("error_file_id".into(), json!(error_file));
        let total = b.get("request_counts").and_then(|c| c.get("total")).cloned().unwrap_or(json!(0));
        b.insert("request_counts".into(), json!({"total": total, "completed": done, "failed": failed}));
        b.insert("usage".into(), json!({"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": input_tokens.saturating_add(output_tokens)}));
    });
}

/// (A `range: bytes=A-B` is served as a CDN in front of an API would:
/// 206 and those bytes. A gateway must not let a client read a batch that way.)
async fn retrieve(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    let whole = answer(&app, &uri, &h, || update(&app, &id, |_| {}).ok_or_else(|| not_found(&id)));
    let whole = if whole.status() == axum::http::StatusCode::OK { crate::hostile::misbehave(whole, &h).await } else { whole };
    let Some((a, b)) = crate::header_str(&h, "range").and_then(|r| r.strip_prefix("bytes=")?.split_once('-')) else { return whole };
    let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) else { return whole };
    if whole.status() != axum::http::StatusCode::OK {
        return whole;
    }
    let (parts, body) = whole.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let Some(slice) = bytes.get(a..=b.min(bytes.len().saturating_sub(1))) else { return Response::from_parts(parts, Body::from(bytes)) };
    let mut r = Response::from_parts(parts, Body::from(slice.to_vec()));
    *r.status_mut() = axum::http::StatusCode::PARTIAL_CONTENT;
    r.headers_mut().remove("content-length");
    r
}

/// Only a batch not yet ended can be cancelled; it is `cancelling` until
/// the request running stops.
async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let current = status(&app, &id);
        match current.as_str() {
            "" => Err(not_found(&id)),
            "validating" | "in_progress" => update(&app, &id, |b| {
                b.insert("status".into(), json!("cancelling"));
                b.insert("cancelling_at".into(), json!(now()));
            })
            .ok_or_else(|| not_found(&id)),
            "cancelling" => update(&app, &id, |_| {}).ok_or_else(|| not_found(&id)),
            other => Err((409, format!("Cannot cancel a batch with status '{other}'."), None, None)),
        }
    })
}

async fn list(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let all = app.objects.batches.lock().map_err(|_| poisoned())?;
        let mut items: Vec<Value> = all.values().cloned().collect();
        items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        page(&uri, &items)
    })
}
