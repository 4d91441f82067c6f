//! OpenAI's Uploads API (`/v1/uploads`, `…/{upload_id}/parts`,
//! `…/complete`, `…/cancel`), a large file sent in parts, as
//! openai/openai-openapi's `openapi.yaml` has it and the API reference
//! describes it (platform.openai.com/docs/api-reference/uploads, quoted in
//! razmser/openai-markdown-docs `docs/platform-api/uploads.md`):
//! `CreateUploadRequest` (`filename`, `purpose`, `bytes` of at most 8 GB,
//! `mime_type`, all required, `expires_after` optional), an `Upload`
//! (`upload_…`, `pending` → `completed` with its `file`, or `cancelled`),
//! a part a form of one `data` field of at most 64 MB answered as an
//! `upload.part`; completing names the parts in order (`part_ids`, `md5`
//! optional), and their bytes must add up to the `bytes` promised. The
//! completed upload is a file like any `POST /v1/files` made (`file-…`,
//! readable, nameable by a response).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::files::{StoredFile, PURPOSES};
use super::{answer, missing, object_body, poisoned, Answer, LIMIT};
use crate::responses::Refusal;
use crate::{openai_checks, openai_error, respond, App};

/// An upload: its object and the parts added to it, by id.
pub struct Upload {
    object: Value,
    parts: HashMap<String, Bytes>,
}

const MAX_BYTES: u64 = 8 << 30;
const MAX_PART: usize = 64 << 20;

pub fn routes(r: Router<Arc<App>>) -> Router<Arc<App>> {
    r.route("/v1/uploads", post(create))
        .route("/v1/uploads/{id}/parts", post(add_part))
        .route("/v1/uploads/{id}/complete", post(complete))
        .route("/v1/uploads/{id}/cancel", post(cancel))
}

fn not_found(id: &str) -> Refusal {
    (404, format!("No such Upload object: {id}"), Some("upload_id"), None)
}

/// The pending upload `id`: parts are added to, and it is completed or
/// cancelled, only while it is.
fn pending<'a>(all: &'a mut HashMap<String, Upload>, id: &str) -> Result<&'a mut Upload, Refusal> {
    let up = all.get_mut(id).ok_or_else(|| not_found(id))?;
    match up.object["status"].as_str() {
        Some("pending") => Ok(up),
        other => Err((400, format!("Upload {id} is already {}.", other.unwrap_or("?")), None, Some("invalid_state"))),
    }
}

async fn create(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        if let Some(k) = m.keys().find(|k| !["filename", "purpose", "bytes", "mime_type", "expires_after"].contains(&k.as_str())) {
            return Err((400, format!("Unrecognized request argument supplied: {k}"), None, None));
        }
        let text = |name: &'static str| match m.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            None | Some(Value::Null) => Err(missing(name)),
            Some(_) => Err((400, format!("Invalid type for '{name}': expected a non-empty string."), Some(name), Some("invalid_type"))),
        };
        let (filename, purpose, mime) = (text("filename")?, text("purpose")?, text("mime_type")?);
        if !PURPOSES.contains(&purpose.as_str()) {
            return Err((400, format!("Invalid value for 'purpose': '{purpose}'. Supported values are: {}.", PURPOSES.join(", ")), Some("purpose"), Some("invalid_value")));
        }
        let bytes = match m.get("bytes") {
            None | Some(Value::Null) => return Err(missing("bytes")),
            Some(v) => v.as_u64().filter(|b| (1..=MAX_BYTES).contains(b)).ok_or_else(|| {
                (400, format!("Invalid value for 'bytes': expected an integer between 1 and {MAX_BYTES}."), Some("bytes"), Some("invalid_value"))
            })?,
        };
        let id = app.objects.next_id("upload");
        let object = json!({"id": id, "object": "upload", "bytes": bytes, "created_at": 1_767_225_600, "expires_at": 1_767_229_200,
                            "filename": filename, "purpose": purpose, "status": "pending", "file": null, "mime_type": mime});
        let mut all = app.objects.uploads.lock().map_err(|_| poisoned())?;
        if all.len() < LIMIT {
            all.insert(id, Upload { object: object.clone(), parts: HashMap::new() });
        }
        Ok(public(&object))
    })
}

/// The object as the API shows it (the MIME type is the request's, kept for the file).
fn public(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("mime_type");
    }
    o
}

async fn add_part(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    if let Err(r) = openai_checks(&app, &uri, &h) {
        return *r;
    }
    let ctype = crate::header_str(&h, "content-type").unwrap_or("").to_string();
    let made: Answer = async {
        let mut data = None;
        for crate::form::Part { name, data: d, .. } in crate::form::parts(&ctype, body).await? {
            match name.as_str() {
                "data" if data.is_none() => data = Some(d),
                other => return Err((400, format!("Unknown parameter: '{other}'."), None, Some("unknown_parameter"))),
            }
        }
        let data = data.ok_or_else(|| missing("data"))?;
        if data.len() > MAX_PART {
            return Err((400, format!("A part may be at most {MAX_PART} bytes; this one is {}.", data.len()), Some("data"), Some("invalid_value")));
        }
        let mut all = app.objects.uploads.lock().map_err(|_| poisoned())?;
        let up = pending(&mut all, &id)?;
        let part = app.objects.next_id("part");
        up.parts.insert(part.clone(), data);
        Ok(json!({"id": part, "object": "upload.part", "created_at": 1_767_225_601, "upload_id": id}))
    }
    .await;
    match made {
        Ok(v) => respond(StatusCode::OK, &h, &uri, v.to_string(), "application/json"),
        Err((status, msg, param, code)) => openai_error(&h, &uri, status, &msg, param, code),
    }
}

async fn complete(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        if let Some(k) = m.keys().find(|k| !["part_ids", "md5"].contains(&k.as_str())) {
            return Err((400, format!("Unrecognized request argument supplied: {k}"), None, None));
        }
        let ids: Vec<&str> = match m.get("part_ids") {
            None | Some(Value::Null) => return Err(missing("part_ids")),
            Some(v) => v.as_array().and_then(|a| a.iter().map(Value::as_str).collect::<Option<_>>()).ok_or_else(|| {
                (400, "Invalid type for 'part_ids': expected an array of strings.".to_string(), Some("part_ids"), Some("invalid_type"))
            })?,
        };
        let mut all = app.objects.uploads.lock().map_err(|_| poisoned())?;
        let up = pending(&mut all, &id)?;
        let mut data = Vec::new();
        for p in &ids {
            let part = up.parts.get(*p).ok_or_else(|| (400, format!("Part {p} does not belong to upload {id}."), Some("part_ids"), Some("invalid_value")))?;
            data.extend_from_slice(part);
        }
        let promised = up.object["bytes"].as_u64().unwrap_or(0);
        if data.len() as u64 != promised {
            return Err((400, format!("The parts add up to {} bytes, and the upload was created for {promised}.", data.len()), Some("part_ids"), Some("invalid_value")));
        }
        let file_id = app.objects.next_id("file").replace('_', "-");
        let file = json!({"id": file_id, "object": "file", "bytes": promised, "created_at": 1_767_225_602, "expires_at": null,
                          "filename": up.object["filename"], "purpose": up.object["purpose"], "status": "processed", "status_details": null});
        up.object["status"] = json!("completed");
        up.object["file"] = file.clone();
        up.parts.clear();
        let done = public(&up.object);
        drop(all);
        let mut files = app.objects.files.lock().map_err(|_| poisoned())?;
        if files.len() < LIMIT {
            files.insert(file_id, StoredFile { object: file, data: Bytes::from(data) });
        }
        Ok(done)
    })
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let mut all = app.objects.uploads.lock().map_err(|_| poisoned())?;
        let up = pending(&mut all, &id)?;
        up.object["status"] = json!("cancelled");
        up.parts.clear();
        Ok(public(&up.object))
    })
}
