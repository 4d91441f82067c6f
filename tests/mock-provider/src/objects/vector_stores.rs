//! OpenAI's vector stores: the files a response's `file_search` tool
//! searches (openai/openai-openapi: `/vector_stores`, `…/{vector_store_id}`,
//! `…/search`, `…/files`, `…/files/{file_id}`, `…/files/{file_id}/content`,
//! `…/file_batches`, `…/file_batches/{batch_id}`, `…/cancel`, `…/files`;
//! `CreateVectorStoreRequest` (`file_ids` at most 500),
//! `UpdateVectorStoreRequest`, `CreateVectorStoreFileRequest` (`file_id`
//! required), `CreateVectorStoreFileBatchRequest` (1 to 2,000 `file_ids`),
//! `VectorStoreSearchRequest` (`query` required), each with
//! `additionalProperties: false`; `VectorStoreObject`,
//! `VectorStoreFileObject`, `VectorStoreSearchResultsPage`,
//! `VectorStoreFileContentResponse`, `VectorStoreFileBatchObject` and the
//! deletions). A file must be one the provider keeps ("No such File
//! object"). Files are processed at once (`completed`): a batch done can no
//! longer be cancelled. A search finds the files whose text holds a word of
//! the query, its chunk the file's first 400 characters.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, Uri};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::conversations::{metadata, only};
use super::files::no_such_file;
use super::{answer, missing, object_body, page, poisoned, Answer, Store, LIMIT};
use crate::responses::Refusal;
use crate::App;

/// A vector store: its object, its files (`vector_store.file` objects) in
/// the order attached, its batches.
pub struct VectorStore {
    object: Value,
    files: Vec<Value>,
    batches: Vec<Value>,
}

pub fn routes(r: Router<Arc<App>>) -> Router<Arc<App>> {
    r.route("/v1/vector_stores", post(create).get(list))
        .route("/v1/vector_stores/{id}", get(retrieve).post(modify).delete(remove))
        .route("/v1/vector_stores/{id}/search", post(search))
        .route("/v1/vector_stores/{id}/files", post(attach).get(list_files))
        .route("/v1/vector_stores/{id}/files/{file}", get(get_file).post(update_file).delete(detach))
        .route("/v1/vector_stores/{id}/files/{file}/content", get(file_content))
        .route("/v1/vector_stores/{id}/file_batches", post(create_batch))
        .route("/v1/vector_stores/{id}/file_batches/{batch}", get(get_batch))
        .route("/v1/vector_stores/{id}/file_batches/{batch}/cancel", post(cancel_batch))
        .route("/v1/vector_stores/{id}/file_batches/{batch}/files", get(batch_files))
}

fn no_store(id: &str) -> Refusal {
    (404, format!("No vector store found with id '{id}'."), None, None)
}

fn counts(n: usize) -> Value {
    json!({"in_progress": 0, "completed": n, "failed": 0, "cancelled": 0, "total": n})
}

impl Store {
    /// A kept file's text and name, or the API's refusal.
    fn file_text(&self, id: &str) -> Result<(String, String, usize), Refusal> {
        let files = self.files.lock().map_err(|_| poisoned())?;
        let f = files.get(id).ok_or_else(|| no_such_file(id))?;
        let name = f.object.get("filename").and_then(Value::as_str).unwrap_or_default().to_string();
        Ok((name, String::from_utf8_lossy(&f.data).into_owned(), f.data.len()))
    }

    fn vs_file(&self, store: &str, file: &str, attributes: Option<&Value>) -> Result<Value, Refusal> {
        let (_, _, bytes) = self.file_text(file)?;
        Ok(json!({"id": file, "object": "vector_store.file", "usage_bytes": bytes, "created_at": 1_767_225_600, "vector_store_id": store,
                  "status": "completed", "last_error": null, "attributes": attributes.cloned().unwrap_or(json!({})),
                  "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}}))
    }

    /// `f` on vector store `id`, its object refreshed (files, bytes) after.
    fn with_store(&self, id: &str, f: impl FnOnce(&mut VectorStore) -> Answer) -> Answer {
        let mut all = self.vector_stores.lock().map_err(|_| poisoned())?;
        let vs = all.get_mut(id).ok_or_else(|| no_store(id))?;
        let out = f(vs);
        let bytes: u64 = vs.files.iter().filter_map(|f| f.get("usage_bytes").and_then(Value::as_u64)).sum();
        vs.object["file_counts"] = counts(vs.files.len());
        vs.object["usage_bytes"] = json!(bytes);
        out
    }
}

/// A string list: each a kept file's id, `min`–`max` of them.
fn file_ids(store: &Store, v: Option<&Value>, field: &'static str, (min, max): (usize, usize)) -> Result<Vec<String>, Refusal> {
    let ids: Vec<String> = match v {
        None | Some(Value::Null) if min == 0 => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        None | Some(Value::Null) => return Err(missing(field)),
        Some(_) => return Err((400, format!("Invalid type for '{field}': expected an array of strings."), Some(field), Some("invalid_type"))),
    };
    if ids.len() < min || ids.len() > max {
        return Err((400, format!("Invalid '{field}': expected between {min} and {max} file ids, got {}.", ids.len()), Some(field), Some("invalid_value")));
    }
    for id in &ids {
        store.file_text(id)?;
    }
    Ok(ids)
}

async fn create(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        only(&m, &["file_ids", "name", "description", "expires_after", "chunking_strategy", "metadata"])?;
        let ids = file_ids(&app.objects, m.get("file_ids"), "file_ids", (0, 500))?;
        let id = app.objects.next_id("vs");
        let object = json!({"id": id, "object": "vector_store", "created_at": 1_767_225_600, "name": m.get("name").cloned().unwrap_or(Value::Null),
                            "usage_bytes": 0, "file_counts": counts(0), "status": "completed", "expires_after": m.get("expires_after").cloned().unwrap_or(Value::Null),
                            "expires_at": null, "last_active_at": 1_767_225_600, "metadata": metadata(m.get("metadata"))?});
        let files = ids.iter().map(|f| app.objects.vs_file(&id, f, None)).collect::<Result<Vec<_>, _>>()?;
        {
            let mut all = app.objects.vector_stores.lock().map_err(|_| poisoned())?;
            if all.len() >= LIMIT {
                return Err((429, "Too many vector stores.".into(), None, None));
            }
            all.insert(id.clone(), VectorStore { object, files, batches: Vec::new() });
        }
        app.objects.with_store(&id, |vs| Ok(vs.object.clone()))
    })
}

async fn list(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let all = app.objects.vector_stores.lock().map_err(|_| poisoned())?;
        let mut stores: Vec<Value> = all.values().map(|v| v.object.clone()).collect();
        stores.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        page(&uri, &stores)
    })
}

async fn retrieve(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || app.objects.with_store(&id, |vs| Ok(vs.object.clone())))
}

async fn modify(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        only(&m, &["name", "expires_after", "metadata"])?;
        let md = m.get("metadata").map(|v| metadata(Some(v))).transpose()?;
        app.objects.with_store(&id, |vs| {
            if let Some(n) = m.get("name") {
                vs.object["name"] = n.clone();
            }
            if let Some(md) = md {
                vs.object["metadata"] = md;
            }
            Ok(vs.object.clone())
        })
    })
}

async fn remove(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let gone = app.objects.vector_stores.lock().ok().and_then(|mut m| m.remove(&id));
        gone.map(|_| json!({"id": id, "object": "vector_store.deleted", "deleted": true})).ok_or_else(|| no_store(&id))
    })
}

/// The query's words (a string or a list of strings), lower-cased.
fn query_words(m: &Map<String, Value>) -> Result<(Vec<String>, Vec<String>), Refusal> {
    let queries: Vec<String> = match m.get("query") {
        Some(Value::String(q)) => vec![q.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        None => return Err((400, "Missing required parameter: 'query'.".into(), Some("query"), Some("missing_required_parameter"))),
        Some(_) => return Err((400, "Invalid type for 'query': expected a string or an array of strings.".into(), Some("query"), Some("invalid_type"))),
    };
    let words = queries.iter().flat_map(|q| q.split(|c: char| !c.is_alphanumeric())).filter(|w| w.len() > 2).map(str::to_lowercase).collect();
    Ok((queries, words))
}

async fn search(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        only(&m, &["query", "rewrite_query", "max_num_results", "filters", "ranking_options"])?;
        let (queries, words) = query_words(&m)?;
        let max = match m.get("max_num_results") {
            None => 10,
            Some(v) => v.as_u64().filter(|n| (1..=50).contains(n)).ok_or((400, "Invalid 'max_num_results': expected an integer between 1 and 50.".to_string(), Some("max_num_results"), Some("invalid_value")))?,
        };
        let ids: Vec<String> = app.objects.with_store(&id, |vs| Ok(json!(vs.files.iter().filter_map(|f| f.get("id").cloned()).collect::<Vec<_>>())))?
            .as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
        let mut data = Vec::new();
        for f in ids {
            let (name, text, _) = app.objects.file_text(&f)?;
            let lower = text.to_lowercase();
            let hits = words.iter().filter(|w| lower.contains(w.as_str())).count();
            if hits > 0 && data.len() < max as usize {
                let chunk: String = text.chars().take(400).collect();
                data.push(json!({"file_id": f, "filename": name, "score": hits as f64 / words.len().max(1) as f64, "attributes": {},
                                 "content": [{"type": "text", "text": chunk}]}));
            }
        }
        Ok(json!({"object": "vector_store.search_results.page", "search_query": queries, "data": data, "has_more": false, "next_page": null}))
    })
}

async fn attach(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        only(&m, &["file_id", "chunking_strategy", "attributes"])?;
        let file = m.get("file_id").and_then(Value::as_str).ok_or((400, "Missing required parameter: 'file_id'.".to_string(), Some("file_id"), Some("missing_required_parameter")))?;
        let object = app.objects.vs_file(&id, file, m.get("attributes"))?;
        app.objects.with_store(&id, |vs| {
            vs.files.retain(|f| f.get("id").and_then(Value::as_str) != Some(file));
            vs.files.push(object.clone());
            Ok(object)
        })
    })
}

async fn list_files(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || app.objects.with_store(&id, |vs| page(&uri, &vs.files)))
}

fn file_at(vs: &VectorStore, file: &str) -> Result<usize, Refusal> {
    vs.files.iter().position(|f| f.get("id").and_then(Value::as_str) == Some(file)).ok_or_else(|| (404, format!("No file found with id '{file}' in vector store."), None, None))
}

async fn get_file(State(app): State<Arc<App>>, Path((id, file)): Path<(String, String)>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || app.objects.with_store(&id, |vs| Ok(vs.files.get(file_at(vs, &file)?).cloned().unwrap_or(Value::Null))))
}

async fn update_file(State(app): State<Arc<App>>, Path((id, file)): Path<(String, String)>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        only(&m, &["attributes"])?;
        let attributes = m.get("attributes").cloned().ok_or((400, "Missing required parameter: 'attributes'.".to_string(), Some("attributes"), Some("missing_required_parameter")))?;
        app.objects.with_store(&id, |vs| {
            let at = file_at(vs, &file)?;
            let f = vs.files.get_mut(at).ok_or_else(poisoned)?;
            f["attributes"] = attributes;
            Ok(f.clone())
        })
    })
}

async fn detach(State(app): State<Arc<App>>, Path((id, file)): Path<(String, String)>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        app.objects.with_store(&id, |vs| {
            let at = file_at(vs, &file)?;
            vs.files.remove(at);
            Ok(json!({"id": file, "object": "vector_store.file.deleted", "deleted": true}))
        })
    })
}

async fn file_content(State(app): State<Arc<App>>, Path((id, file)): Path<(String, String)>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        app.objects.with_store(&id, |vs| file_at(vs, &file).map(|_| Value::Null))?;
        let (_, text, _) = app.objects.file_text(&file)?;
        Ok(json!({"object": "vector_store.file_content.page", "data": [{"type": "text", "text": text}], "has_more": false, "next_page": null}))
    })
}

async fn create_batch(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        only(&m, &["file_ids", "files", "chunking_strategy", "attributes"])?;
        let ids = file_ids(&app.objects, m.get("file_ids"), "file_ids", (1, 2000))?;
        let files = ids.iter().map(|f| app.objects.vs_file(&id, f, m.get("attributes"))).collect::<Result<Vec<_>, _>>()?;
        let batch = json!({"id": app.objects.next_id("vsfb"), "object": "vector_store.files_batch", "created_at": 1_767_225_600,
                           "vector_store_id": id, "status": "completed", "file_counts": counts(files.len()), "file_ids": ids});
        app.objects.with_store(&id, |vs| {
            for f in files {
                let fid = f.get("id").cloned();
                vs.files.retain(|x| x.get("id") != fid.as_ref());
                vs.files.push(f);
            }
            vs.batches.push(batch.clone());
            Ok(batch)
        })
    })
}

fn batch_at<'a>(vs: &'a VectorStore, batch: &str) -> Result<&'a Value, Refusal> {
    vs.batches.iter().find(|b| b.get("id").and_then(Value::as_str) == Some(batch)).ok_or_else(|| (404, format!("No file batch found with id '{batch}'."), None, None))
}

/// The batch as the API shows it (its file ids are the mock's own note).
fn shown(b: &Value) -> Value {
    let mut b = b.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("file_ids");
    }
    b
}

async fn get_batch(State(app): State<Arc<App>>, Path((id, batch)): Path<(String, String)>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || app.objects.with_store(&id, |vs| batch_at(vs, &batch).map(shown)))
}

async fn cancel_batch(State(app): State<Arc<App>>, Path((id, batch)): Path<(String, String)>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        app.objects.with_store(&id, |vs| {
            batch_at(vs, &batch)?;
            Err((400, "Cannot cancel a file batch that has already completed.".into(), None, None))
        })
    })
}

async fn batch_files(State(app): State<Arc<App>>, Path((id, batch)): Path<(String, String)>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        app.objects.with_store(&id, |vs| {
            let ids: Vec<Value> = batch_at(vs, &batch)?.get("file_ids").and_then(Value::as_array).cloned().unwrap_or_default();
            let files: Vec<Value> = vs.files.iter().filter(|f| f.get("id").is_some_and(|i| ids.contains(i))).cloned().collect();
            page(&uri, &files)
        })
    })
}
