//! OpenAI's conversations and their items (openai/openai-openapi:
//! `/conversations`, `…/{conversation_id}`, `…/items`, `…/items/{item_id}`;
//! `ConversationResource`, `CreateConversationBody` (`items` at most 20),
//! `UpdateConversationBody` (`metadata` required),
//! `DeletedConversationResource`, `ConversationItemList`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, Uri};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::{answer, missing, not_found, object_body, page, poisoned, Answer, LIMIT};
use crate::responses::Refusal;
use crate::{count_tokens, App};

pub struct Conversation {
    pub created_at: u64,
    pub metadata: Value,
    pub items: Vec<Value>,
    pub context: u64,
}

pub fn routes(r: Router<Arc<App>>) -> Router<Arc<App>> {
    r.route("/v1/conversations", post(create_conversation))
        .route("/v1/conversations/{id}", get(get_conversation).post(update_conversation).delete(delete_conversation))
        .route("/v1/conversations/{id}/items", get(list_items).post(add_items))
        .route("/v1/conversations/{id}/items/{item}", get(get_item).delete(delete_item))
}

/// At most 20 items, each a valid input item.
fn new_items(v: Option<&Value>, field: &'static str, required: bool) -> Result<Vec<Value>, Refusal> {
    match v {
        None | Some(Value::Null) if !required => Ok(Vec::new()),
        None | Some(Value::Null) => Err(missing(field)),
        Some(Value::Array(a)) if a.len() > 20 => {
            Err((400, format!("Invalid '{field}': array too long. Expected an array with maximum length 20, but got an array with length {} instead.", a.len()), Some(field), Some("array_above_max_length")))
        }
        Some(Value::Array(a)) => crate::responses::input(a).map(|()| a.clone()),
        Some(_) => Err((400, format!("Invalid type for '{field}': expected an array of objects."), Some(field), Some("invalid_type"))),
    }
}

/// `metadata`: at most 16 pairs, keys ≤ 64 characters, values strings ≤ 512.
pub(super) fn metadata(v: Option<&Value>) -> Result<Value, Refusal> {
    match v {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::Object(m)) if m.len() <= 16 && m.iter().all(|(k, v)| k.chars().count() <= 64 && v.as_str().is_some_and(|s| s.chars().count() <= 512)) => {
            Ok(Value::Object(m.clone()))
        }
        Some(_) => Err((400, "Invalid 'metadata': at most 16 pairs, keys of at most 64 characters, values strings of at most 512.".into(), Some("metadata"), Some("invalid_value"))),
    }
}

pub(super) fn only(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), Refusal> {
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
        let mut all = app.objects.conversations.lock().map_err(|_| poisoned())?;
        if all.len() < LIMIT {
            all.insert(id, c);
        }
        Ok(out)
    })
}

/// `f` on conversation `id`, or 404.
fn with_conversation(app: &App, id: &str, f: impl FnOnce(&mut Conversation) -> Answer) -> Answer {
    let mut all = app.objects.conversations.lock().map_err(|_| poisoned())?;
    f(all.get_mut(id).ok_or_else(|| not_found("Conversation", id))?)
}

async fn get_conversation(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || with_conversation(&app, &id, |c| Ok(resource(&id, c))))
}

/// An update's body: `metadata`, required, and nothing else (a
/// conversation's, a stored chat completion's).
pub(super) fn metadata_update(body: &Bytes) -> Result<Value, Refusal> {
    let m = object_body(body)?;
    only(&m, &["metadata"])?;
    if !m.contains_key("metadata") {
        return Err((400, "Missing required parameter: 'metadata'.".into(), Some("metadata"), Some("missing_required_parameter")));
    }
    metadata(m.get("metadata"))
}

async fn update_conversation(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let md = metadata_update(&body)?;
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
