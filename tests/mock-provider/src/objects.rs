//! OpenAI's stored objects, kept as the API keeps them: every response not
//! sent with `store: false`, with its input items; and conversations with
//! their items. Read back, listed, deleted by id
//! (openai/openai-openapi `openapi.yaml`: `/responses/{response_id}`,
//! `…/cancel`, `…/input_items`, `/conversations`, `…/{conversation_id}`,
//! `…/items`, `…/items/{item_id}`, and their schemas `Response`,
//! `ResponseItemList`, `ConversationResource`, `CreateConversationBody`
//! (`items` at most 20), `UpdateConversationBody` (`metadata` required),
//! `DeletedConversationResource`, `ConversationItemList`); and files
//! (`/files`, `…/{file_id}`, `…/content`: `CreateFileRequest`, its
//! `purpose` one of six, `OpenAIFile`, `ListFilesResponse`,
//! `DeleteFileResponse`; an unknown id is "No such File object", the
//! API's wording). A response's `input_file` naming a kept file is billed
//! the file's text as input; naming none is refused.
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
//!
//! What it bills: a response continuing a stored one (`previous_response_id`)
//! or a conversation (`conversation`) is billed that context as input ("all
//! previous input tokens for responses in the chain are billed as input
//! tokens": OpenAI's "Conversation state" guide); the two together are
//! refused. A response only foreground-made cannot be cancelled (only
//! `background=true` ones can: the API reference, "Cancel a response"; the
//! 400 as sgl-project/sglang#38002 describes it against that contract).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode, Uri};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::responses::{Plan, Refusal};
use crate::{count_tokens, openai_checks, openai_error, respond, App};

/// A kept response: its object, its input items, the context a response
/// continuing it is billed.
struct Kept {
    object: Value,
    input: Vec<Value>,
    context: u64,
}

struct StoredFile {
    object: Value,
    data: Bytes,
}

struct Conversation {
    created_at: u64,
    metadata: Value,
    items: Vec<Value>,
    context: u64,
}

/// Both kinds of stored object (at most 100,000 of each).
#[derive(Default)]
pub struct Store {
    responses: Mutex<HashMap<String, Kept>>,
    conversations: Mutex<HashMap<String, Conversation>>,
    files: Mutex<HashMap<String, StoredFile>>,
    /// Anthropic's, apart: another provider's store.
    anthropic_files: Mutex<HashMap<String, StoredFile>>,
    seq: std::sync::atomic::AtomicU64,
}

const LIMIT: usize = 100_000;

fn not_found(kind: &str, id: &str) -> Refusal {
    (404, format!("{kind} with id '{id}' not found."), None, None)
}

impl Store {
    fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}_mock{:024}", self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }

    /// The conversation a response request names (`"conv_…"` or `{"id": …}`).
    pub fn conversation_of(&self, m: &Map<String, Value>, previous: bool) -> Result<Option<String>, Refusal> {
        let id = match m.get("conversation") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => match o.get("id") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err((400, "Missing required parameter: 'conversation.id'.".into(), Some("conversation.id"), Some("missing_required_parameter"))),
            },
            Some(_) => return Err((400, "Invalid type for 'conversation': expected a string or an object.".into(), Some("conversation"), Some("invalid_type"))),
        };
        if previous {
            return Err((400, "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or 'conversation'.".into(), None, Some("mutually_exclusive_parameters")));
        }
        Ok(Some(id))
    }

    /// Adds the context a response continues (a stored response, or a
    /// conversation) to its input; an unknown id is refused.
    pub fn continue_from(&self, p: &mut Plan, conversation: Option<&str>) -> Result<(), Refusal> {
        let context = match (&p.previous, conversation) {
            (Some(prev), _) => self.responses.lock().ok().and_then(|m| m.get(prev).map(|k| k.context)).ok_or_else(|| {
                (400, format!("Previous response with id '{prev}' not found."), Some("previous_response_id"), Some("previous_response_not_found"))
            })?,
            (None, Some(c)) => self.conversations.lock().ok().and_then(|m| m.get(c).map(|k| k.context)).ok_or_else(|| not_found("Conversation", c))?,
            (None, None) => 0,
        };
        p.input = p.input.saturating_add(context);
        Ok(())
    }

    /// The input tokens of the kept files a response's input names
    /// (`input_file` parts with a `file_id`); an unknown one is refused.
    pub fn file_tokens(&self, m: &Map<String, Value>) -> Result<u64, Refusal> {
        let mut ids = Vec::new();
        file_ids(m.get("input").unwrap_or(&Value::Null), &mut ids);
        let files = self.files.lock().map_err(|_| (500, "store poisoned".to_string(), None, None))?;
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
        let files = self.anthropic_files.lock().map_err(|_| (500, "store poisoned".to_string(), None, None))?;
        ids.iter().try_fold(0u64, |sum, id| {
            let f = files.get(*id).ok_or_else(|| (404, format!("File not found: {id}"), None, None))?;
            Ok(sum + count_tokens(&String::from_utf8_lossy(&f.data)))
        })
    }

    /// Keeps a response that was not sent with `store: false`, and adds
    /// its input and output to its conversation.
    pub fn keep(&self, p: &Plan, object: &Value, request: &Map<String, Value>, conversation: Option<&str>) {
        let input = self.items_of(request.get("input"));
        let output = object.get("output").and_then(Value::as_array).cloned().unwrap_or_default();
        let context = (p.input + p.output).saturating_sub(p.reasoning);
        if let (Some(c), Ok(mut m)) = (conversation, self.conversations.lock()) {
            if let Some(conv) = m.get_mut(c) {
                conv.items.extend(input.iter().cloned().chain(output));
                conv.context = context;
            }
        }
        let id = object.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        if let (true, Ok(mut m)) = (p.store, self.responses.lock()) {
            if m.len() < LIMIT {
                m.insert(id, Kept { object: object.clone(), input, context });
            }
        }
    }

    /// Input as the items the API lists: a string is one user message;
    /// each item gets an id and its content as parts.
    fn items_of(&self, input: Option<&Value>) -> Vec<Value> {
        let items = match input {
            Some(Value::String(s)) => vec![json!({"type": "message", "role": "user", "content": s})],
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        items.into_iter().map(|i| self.stored_item(i)).collect()
    }

    fn stored_item(&self, mut item: Value) -> Value {
        let Some(o) = item.as_object_mut() else { return item };
        let kind = o.entry("type").or_insert_with(|| json!("message")).as_str().unwrap_or("message").to_string();
        if !o.contains_key("id") {
            let prefix = if kind == "message" { "msg" } else { "item" };
            o.insert("id".into(), json!(self.next_id(prefix)));
        }
        if kind == "message" {
            o.entry("status").or_insert_with(|| json!("completed"));
            let part = if o.get("role").and_then(Value::as_str) == Some("assistant") { "output_text" } else { "input_text" };
            if let Some(Value::String(s)) = o.get("content").cloned() {
                o.insert("content".into(), json!([{"type": part, "text": s}]));
            }
        }
        item
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

fn no_such_file(id: &str) -> Refusal {
    (404, format!("No such File object: {id}"), Some("id"), None)
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/responses/{id}", get(get_response).delete(delete_response))
        .route("/v1/responses/{id}/cancel", post(cancel_response))
        .route("/v1/responses/{id}/input_items", get(input_items))
        .route("/v1/conversations", post(create_conversation))
        .route("/v1/conversations/{id}", get(get_conversation).post(update_conversation).delete(delete_conversation))
        .route("/v1/conversations/{id}/items", get(list_items).post(add_items))
        .route("/v1/conversations/{id}/items/{item}", get(get_item).delete(delete_item))
        .route("/v1/files", post(upload_file).get(list_files))
        .route("/v1/files/{id}", get(get_file).delete(delete_file))
        .route("/v1/files/{id}/content", get(file_content))
}

type Answer = Result<Value, Refusal>;

/// The key and requested errors checked, `f`'s answer or refusal sent.
fn answer(app: &App, uri: &Uri, h: &HeaderMap, f: impl FnOnce() -> Answer) -> Response<Body> {
    if let Err(r) = openai_checks(app, uri, h) {
        return *r;
    }
    match f() {
        Ok(v) => respond(StatusCode::OK, h, uri, v.to_string(), "application/json"),
        Err((status, msg, param, code)) => openai_error(h, uri, status, &msg, param, code),
    }
}

/// A JSON object body, or the API's refusal of it.
fn object_body(body: &Bytes) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err((400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)".into(), None, None)),
    }
}

/// `limit` (1–100, default 20), `order` (`asc`/`desc`, default `desc`),
/// `after` (an id): one page of `items`, as a list object.
fn page(uri: &Uri, items: &[Value]) -> Answer {
    let mut limit = 20;
    let mut desc = true;
    let mut after = None;
    for kv in uri.query().unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => return Err((400, format!("Invalid 'limit': expected an integer between 1 and 100, but got '{v}' instead."), Some("limit"), Some("invalid_value"))),
            },
            "order" if v == "asc" || v == "desc" => desc = v == "desc",
            "order" => return Err((400, format!("Invalid value: '{v}'. Supported values are: 'asc' and 'desc'."), Some("order"), Some("invalid_value"))),
            "after" => after = Some(v.to_string()),
            _ => {}
        }
    }
    let mut ordered: Vec<&Value> = items.iter().collect();
    if desc {
        ordered.reverse();
    }
    let start = match after {
        Some(a) => ordered.iter().position(|i| i.get("id").and_then(Value::as_str) == Some(a.as_str())).map_or(ordered.len(), |p| p + 1),
        None => 0,
    };
    let rest = ordered.get(start..).unwrap_or_default();
    let data: Vec<&Value> = rest.iter().take(limit).copied().collect();
    let id = |v: Option<&&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    Ok(json!({"object": "list", "data": data, "first_id": id(data.first()), "last_id": id(data.last()), "has_more": rest.len() > limit}))
}

async fn get_response(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || app.objects.responses.lock().ok().and_then(|m| Some(m.get(&id)?.object.clone())).ok_or_else(|| not_found("Response", &id)))
}

async fn delete_response(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let gone = app.objects.responses.lock().ok().and_then(|mut m| m.remove(&id));
        gone.map(|_| json!({"id": id, "object": "response", "deleted": true})).ok_or_else(|| not_found("Response", &id))
    })
}

async fn cancel_response(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let kept = app.objects.responses.lock().ok().and_then(|m| m.get(&id).map(|k| k.object.get("background") == Some(&json!(true))));
        match kept {
            None => Err(not_found("Response", &id)),
            Some(false) => Err((400, "Only responses created with background=true can be cancelled.".into(), None, None)),
            Some(true) => Err((400, "Background responses are not made by this mock.".into(), None, None)),
        }
    })
}

async fn input_items(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let input = app.objects.responses.lock().ok().and_then(|m| Some(m.get(&id)?.input.clone())).ok_or_else(|| not_found("Response", &id))?;
        page(&uri, &input)
    })
}

/// At most 20 items, each a valid input item.
fn new_items(v: Option<&Value>, field: &'static str, required: bool) -> Result<Vec<Value>, Refusal> {
    match v {
        None | Some(Value::Null) if !required => Ok(Vec::new()),
        None | Some(Value::Null) => Err((400, format!("Missing required parameter: '{field}'."), Some(field), Some("missing_required_parameter"))),
        Some(Value::Array(a)) if a.len() > 20 => {
            Err((400, format!("Invalid '{field}': array too long. Expected an array with maximum length 20, but got an array with length {} instead.", a.len()), Some(field), Some("array_above_max_length")))
        }
        Some(Value::Array(a)) => crate::responses::input(a).map(|()| a.clone()),
        Some(_) => Err((400, format!("Invalid type for '{field}': expected an array of objects."), Some(field), Some("invalid_type"))),
    }
}

/// `metadata`: at most 16 pairs, keys ≤ 64 characters, values strings ≤ 512.
fn metadata(v: Option<&Value>) -> Result<Value, Refusal> {
    match v {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::Object(m)) if m.len() <= 16 && m.iter().all(|(k, v)| k.chars().count() <= 64 && v.as_str().is_some_and(|s| s.chars().count() <= 512)) => {
            Ok(Value::Object(m.clone()))
        }
        Some(_) => Err((400, "Invalid 'metadata': at most 16 pairs, keys of at most 64 characters, values strings of at most 512.".into(), Some("metadata"), Some("invalid_value"))),
    }
}

fn only(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), Refusal> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err((400, format!("Unknown parameter: '{k}'."), None, Some("unknown_parameter"))),
        None => Ok(()),
    }
}

fn resource(id: &str, c: &Conversation) -> Value {
    json!({"id": id, "object": "conversation", "created_at": c.created_at, "metadata": c.metadata})
}

fn item_text(items: &[Value]) -> u64 {
    let mut text = String::new();
    items.iter().for_each(|i| crate::responses::text_of(i, &mut text));
    count_tokens(&text)
}

async fn create_conversation(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        only(&m, &["items", "metadata"])?;
        let items = new_items(m.get("items"), "items", false)?;
        let metadata = metadata(m.get("metadata"))?;
        let items: Vec<Value> = items.into_iter().map(|i| app.objects.stored_item(i)).collect();
        let id = app.objects.next_id("conv");
        let c = Conversation { created_at: 1_767_225_600, metadata, context: item_text(&items), items };
        let out = resource(&id, &c);
        let mut all = app.objects.conversations.lock().map_err(|_| (500, "store poisoned".to_string(), None, None))?;
        if all.len() < LIMIT {
            all.insert(id, c);
        }
        Ok(out)
    })
}

/// `f` on conversation `id`, or 404.
fn with_conversation(app: &App, id: &str, f: impl FnOnce(&mut Conversation) -> Answer) -> Answer {
    let mut all = app.objects.conversations.lock().map_err(|_| (500, "store poisoned".to_string(), None, None))?;
    f(all.get_mut(id).ok_or_else(|| not_found("Conversation", id))?)
}

async fn get_conversation(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || with_conversation(&app, &id, |c| Ok(resource(&id, c))))
}

async fn update_conversation(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        only(&m, &["metadata"])?;
        if !m.contains_key("metadata") {
            return Err((400, "Missing required parameter: 'metadata'.".into(), Some("metadata"), Some("missing_required_parameter")));
        }
        let md = metadata(m.get("metadata"))?;
        with_conversation(&app, &id, |c| {
            c.metadata = md;
            Ok(resource(&id, c))
        })
    })
}

async fn delete_conversation(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let gone = app.objects.conversations.lock().ok().and_then(|mut m| m.remove(&id));
        gone.map(|_| json!({"id": id, "object": "conversation.deleted", "deleted": true})).ok_or_else(|| not_found("Conversation", &id))
    })
}

async fn list_items(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || with_conversation(&app, &id, |c| page(&uri, &c.items)))
}

async fn add_items(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let m = object_body(&body)?;
        only(&m, &["items"])?;
        let items: Vec<Value> = new_items(m.get("items"), "items", true)?.into_iter().map(|i| app.objects.stored_item(i)).collect();
        with_conversation(&app, &id, |c| {
            c.context += item_text(&items);
            c.items.extend(items.iter().cloned());
            let id = |i: Option<&Value>| i.and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
            Ok(json!({"object": "list", "data": items, "first_id": id(items.first()), "last_id": id(items.last()), "has_more": false}))
        })
    })
}

fn item_index(c: &Conversation, item: &str) -> Result<usize, Refusal> {
    c.items.iter().position(|i| i.get("id").and_then(Value::as_str) == Some(item)).ok_or_else(|| not_found("Item", item))
}

async fn get_item(State(app): State<Arc<App>>, Path((id, item)): Path<(String, String)>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || with_conversation(&app, &id, |c| Ok(c.items.get(item_index(c, &item)?).cloned().unwrap_or(Value::Null))))
}

async fn delete_item(State(app): State<Arc<App>>, Path((id, item)): Path<(String, String)>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        with_conversation(&app, &id, |c| {
            let at = item_index(c, &item)?;
            let gone = c.items.remove(at);
            c.context = c.context.saturating_sub(item_text(std::slice::from_ref(&gone)));
            Ok(resource(&id, c))
        })
    })
}

const PURPOSES: &[&str] = &["assistants", "batch", "fine-tune", "vision", "user_data", "evals"];

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
        let mut all = app.objects.files.lock().map_err(|_| (500, "store poisoned".to_string(), None, None))?;
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
        let files = app.objects.files.lock().map_err(|_| (500, "store poisoned".to_string(), None, None))?;
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
            let mut all = app.objects.anthropic_files.lock().map_err(|_| (500, "store poisoned".to_string(), None, None))?;
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
            let files = app.objects.anthropic_files.lock().map_err(|_| (500, "store poisoned".to_string(), None, None))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_lists_newest_first_by_default_and_continues_after_an_id() {
        let items: Vec<Value> = (1..=5).map(|i| json!({"id": format!("msg_{i}")})).collect();
        let uri: Uri = "/v1/x?limit=2".parse().unwrap();
        let p = page(&uri, &items).unwrap();
        assert_eq!((p["first_id"].as_str(), p["last_id"].as_str(), p["has_more"].as_bool()), (Some("msg_5"), Some("msg_4"), Some(true)));
        let uri: Uri = "/v1/x?order=asc&after=msg_4".parse().unwrap();
        let p = page(&uri, &items).unwrap();
        assert_eq!((p["first_id"].as_str(), p["data"].as_array().unwrap().len(), p["has_more"].as_bool()), (Some("msg_5"), 1, Some(false)));
        assert_eq!(page(&"/v1/x?limit=0".parse().unwrap(), &items).unwrap_err().0, 400);
        assert_eq!(page(&"/v1/x?order=up".parse().unwrap(), &items).unwrap_err().0, 400);
    }

    #[test]
    fn a_string_input_is_kept_as_one_user_message_of_parts() {
        let s = Store::default();
        let items = s.items_of(Some(&json!("Hello!")));
        assert_eq!(items[0]["content"], json!([{"type": "input_text", "text": "Hello!"}]));
        assert_eq!((items[0]["type"].as_str(), items[0]["role"].as_str(), items[0]["status"].as_str()), (Some("message"), Some("user"), Some("completed")));
        assert!(items[0]["id"].as_str().unwrap().starts_with("msg_"));
    }
}
