//! Stored objects, kept as the providers keep them, one file a kind:
//! responses (here), conversations, files (OpenAI's and Anthropic's),
//! vector stores, chat completions made with `store: true`, batches and
//! uploads (a file sent in parts). Read back, listed, deleted by id (openai/openai-openapi
//! `openapi.yaml`: `/responses/{response_id}`, `…/cancel`, `…/input_items`,
//! their schemas `Response`, `ResponseItemList`).
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
use crate::{openai_checks, openai_error, respond, App};

mod batches;
mod chat;
mod conversations;
mod files;
mod uploads;
mod vector_stores;

use conversations::Conversation;
use files::StoredFile;

/// A kept response: its object, its input items, the context a response
/// continuing it is billed.
struct Kept {
    object: Value,
    input: Vec<Value>,
    context: u64,
    /// A background response: when it is done (before: `in_progress`),
    /// its output tokens (not billed when cancelled before), its events
    /// (a `GET …?stream=true` replays them).
    background: Option<Running>,
}

struct Running {
    ready_at: std::time::Instant,
    output: u64,
    events: Vec<(String, String)>,
}

/// Every kind of stored object (at most 100,000 of each).
#[derive(Default)]
pub struct Store {
    responses: Mutex<HashMap<String, Kept>>,
    conversations: Mutex<HashMap<String, Conversation>>,
    files: Mutex<HashMap<String, StoredFile>>,
    /// Anthropic's, apart: another provider's store.
    anthropic_files: Mutex<HashMap<String, StoredFile>>,
    vector_stores: Mutex<HashMap<String, vector_stores::VectorStore>>,
    chats: Mutex<HashMap<String, chat::KeptChat>>,
    batches: Mutex<HashMap<String, Value>>,
    uploads: Mutex<HashMap<String, uploads::Upload>>,
    seq: std::sync::atomic::AtomicU64,
}

pub(super) const LIMIT: usize = 100_000;

/// The largest object kept whole (a response, a chat completion).
pub(super) const KEPT_BYTES: usize = 1 << 20;

/// `metadata` as the API checks it on batches and responses: an object of
/// at most 16 strings of at most 512 characters, keys of at most 64.
pub fn metadata(v: Option<&Value>) -> Result<Value, Refusal> {
    let invalid = |msg: String| (400, msg, Some("metadata"), Some("invalid_value"));
    match v {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Object(md)) => {
            if md.len() > 16 {
                return Err(invalid(format!("Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got {} instead.", md.len())));
            }
            for (k, v) in md {
                if k.chars().count() > 64 {
                    return Err(invalid(format!("Invalid 'metadata': key '{k}' is longer than 64 characters.")));
                }
                if v.as_str().is_none_or(|s| s.chars().count() > 512) {
                    return Err(invalid(format!("Invalid 'metadata': the value of '{k}' must be a string of at most 512 characters.")));
                }
            }
            Ok(Value::Object(md.clone()))
        }
        Some(_) => Err((400, "Invalid type for 'metadata': expected an object.".into(), Some("metadata"), Some("invalid_type"))),
    }
}

pub(super) fn not_found(kind: &str, id: &str) -> Refusal {
    (404, format!("{kind} with id '{id}' not found."), None, None)
}

impl Store {
    pub(super) fn next_id(&self, prefix: &str) -> String {
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
        // (A response over 1 MiB keeps only its context: the tests' huge
        // answers would otherwise hold gigabytes; reading one back is 404.)
        let small = object.to_string().len() + Value::Array(input.clone()).to_string().len() <= KEPT_BYTES;
        let (object, input) = if small { (object.clone(), input) } else { (Value::Null, Vec::new()) };
        if let (true, Ok(mut m)) = (p.store, self.responses.lock()) {
            if m.len() < LIMIT {
                m.insert(id, Kept { object, input, context, background: None });
            }
        }
    }

    /// Runs kept response `id` in the background: done after `delay_ms`.
    pub fn run_in_background(&self, id: &str, delay_ms: u64, output: u64, events: Vec<(String, String)>) {
        if let Some(k) = self.responses.lock().ok().as_mut().and_then(|m| m.get_mut(id)) {
            let ready_at = std::time::Instant::now() + std::time::Duration::from_millis(delay_ms);
            k.background = Some(Running { ready_at, output, events });
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

    pub(super) fn stored_item(&self, mut item: Value) -> Value {
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

pub fn routes() -> Router<Arc<App>> {
    let r = Router::new()
        .route("/v1/responses/{id}", get(get_response).delete(delete_response))
        .route("/v1/responses/{id}/cancel", post(cancel_response))
        .route("/v1/responses/{id}/input_items", get(input_items));
    uploads::routes(batches::routes(chat::routes(vector_stores::routes(files::routes(conversations::routes(r))))))
}

pub(super) type Answer = Result<Value, Refusal>;

/// A required member left out, in the API's words.
pub(crate) fn missing(name: &'static str) -> Refusal {
    (400, format!("Missing required parameter: '{name}'."), Some(name), Some("missing_required_parameter"))
}

/// A store whose lock a panic poisoned.
pub(super) fn poisoned() -> Refusal {
    (500, "store poisoned".to_string(), None, None)
}

/// The key and requested errors checked, `f`'s answer or refusal sent.
pub(super) fn answer(app: &App, uri: &Uri, h: &HeaderMap, f: impl FnOnce() -> Answer) -> Response<Body> {
    if let Err(r) = openai_checks(app, uri, h) {
        return *r;
    }
    match f() {
        Ok(v) => respond(StatusCode::OK, h, uri, v.to_string(), "application/json"),
        Err((status, msg, param, code)) => openai_error(h, uri, status, &msg, param, code),
    }
}

/// A JSON object body, or the API's refusal of it.
pub(super) fn object_body(body: &Bytes) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err((400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)".into(), None, None)),
    }
}

/// `limit` (1–100, default 20), `order` (`asc`/`desc`, default `desc`),
/// `after` (an id): one page of `items`, as a list object.
pub(super) fn page(uri: &Uri, items: &[Value]) -> Answer {
    page_from(uri, items, true)
}

/// The same, oldest first unless `order` says (`desc` by default when `newest_first`).
pub(super) fn page_from(uri: &Uri, items: &[Value], newest_first: bool) -> Answer {
    let mut limit = 20;
    let mut desc = newest_first;
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

/// A background response still running: `in_progress`, no output, no usage.
fn running(object: &Value) -> Value {
    let mut o = object.clone();
    o["status"] = json!("in_progress");
    o["output"] = json!([]);
    o["usage"] = Value::Null;
    o["completed_at"] = Value::Null;
    o
}

/// `?stream=true` (and `starting_after`): a background response's events
/// replayed from there, once it is done.
fn stream_query(uri: &Uri) -> Result<Option<u64>, Refusal> {
    let (mut stream, mut after) = (false, None);
    for kv in uri.query().unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=').unwrap_or((kv, "")) {
            ("stream", v) => stream = v == "true",
            ("starting_after", v) => after = Some(v.parse::<u64>().map_err(|_| (400, format!("Invalid 'starting_after': expected an integer, but got '{v}' instead."), Some("starting_after"), Some("invalid_type")))?),
            _ => {}
        }
    }
    Ok(stream.then_some(after.map_or(0, |a| a + 1)))
}

async fn get_response(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    let from = match stream_query(&uri) {
        Ok(f) => f,
        Err((status, msg, param, code)) => return openai_error(&h, &uri, status, &msg, param, code),
    };
    if let Some(from) = from {
        if let Err(r) = openai_checks(&app, &uri, &h) {
            return *r;
        }
        let run = app.objects.responses.lock().ok().and_then(|m| m.get(&id).map(|k| k.background.as_ref().map(|b| (b.ready_at, b.events.clone()))));
        let (ready_at, events) = match run {
            None => return openai_error(&h, &uri, 404, &format!("Response with id '{id}' not found."), None, None),
            Some(None) => return openai_error(&h, &uri, 400, "Only background responses can be streamed from a GET.", Some("stream"), None),
            Some(Some(r)) => r,
        };
        tokio::time::sleep(ready_at.saturating_duration_since(std::time::Instant::now())).await;
        let chunks = events.iter().skip(usize::try_from(from).unwrap_or(usize::MAX)).map(|(n, d)| crate::sse(Some(n), d)).collect();
        return crate::paced_answer(chunks, &h, &uri, "text/event-stream").await;
    }
    let r = answer(&app, &uri, &h, || {
        let m = app.objects.responses.lock().map_err(|_| poisoned())?;
        let k = m.get(&id).filter(|k| !k.object.is_null()).ok_or_else(|| not_found("Response", &id))?;
        Ok(match &k.background {
            Some(b) if std::time::Instant::now() < b.ready_at => running(&k.object),
            _ => k.object.clone(),
        })
    });
    crate::hostile::misbehave(r, &h).await
}

async fn delete_response(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let gone = app.objects.responses.lock().ok().and_then(|mut m| m.remove(&id));
        gone.map(|_| json!({"id": id, "object": "response", "deleted": true})).ok_or_else(|| not_found("Response", &id))
    })
}

/// Cancels a background response: one still running ends `cancelled`
/// with the output so far and no usage (the API reference's example);
/// one that has ended is returned as it is (cancelling is idempotent: the
/// background guide).
async fn cancel_response(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    let r = answer(&app, &uri, &h, || {
        let mut m = app.objects.responses.lock().map_err(|_| poisoned())?;
        let k = m.get_mut(&id).ok_or_else(|| not_found("Response", &id))?;
        let Some(run) = k.background.as_mut() else {
            return Err((400, "Only responses created with background=true can be cancelled.".into(), None, None));
        };
        if std::time::Instant::now() < run.ready_at && k.object["status"] != "cancelled" {
            k.object["status"] = json!("cancelled");
            k.object["usage"] = Value::Null;
            k.object["completed_at"] = Value::Null;
            if let Some(items) = k.object["output"].as_array_mut() {
                for item in items {
                    item["status"] = json!("in_progress");
                }
            }
            // What it had not generated yet is not billed.
            let _ = app.served_output.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |o| Some(o.saturating_sub(run.output)));
            run.ready_at = std::time::Instant::now();
        }
        Ok(k.object.clone())
    });
    crate::hostile::misbehave(r, &h).await
}

async fn input_items(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let input = app.objects.responses.lock().ok().and_then(|m| Some(m.get(&id)?.input.clone())).ok_or_else(|| not_found("Response", &id))?;
        page(&uri, &input)
    })
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

