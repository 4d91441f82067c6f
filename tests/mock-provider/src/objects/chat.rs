//! Chat completions made with `store: true`, kept as the API keeps them
//! (openai/openai-openapi: `/chat/completions/{completion_id}` GET, POST
//! (`metadata`, required, alone), DELETE answering
//! `chat.completion.deleted`; `…/messages` a list of the request's
//! messages, each with an id, oldest first by default).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, Uri};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::conversations::metadata_update;
use super::{answer, page_from, poisoned, Store, KEPT_BYTES, LIMIT};
use crate::responses::Refusal;
use crate::App;

/// A kept completion: the answer, with `metadata`, and the request's messages.
pub struct KeptChat {
    object: Value,
    messages: Vec<Value>,
}

pub fn routes(r: Router<Arc<App>>) -> Router<Arc<App>> {
    r.route("/v1/chat/completions/{id}", get(retrieve).post(update).delete(remove))
        .route("/v1/chat/completions/{id}/messages", get(messages))
}

fn not_found(id: &str) -> Refusal {
    (404, format!("Chat completion {id} not found."), None, None)
}

impl Store {
    /// Keeps a completion made with `store: true` and its request's messages.
    /// (Never by indexing: a hostile request's message may be a number,
    /// and a panic would end the mock.)
    pub fn keep_chat(&self, mut object: Value, req: &Value) {
        let id = object.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(o) = object.as_object_mut() {
            o.insert("metadata".into(), req.get("metadata").cloned().unwrap_or(json!({})));
        }
        let messages = req.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
        let messages = messages
            .into_iter()
            .enumerate()
            .map(|(i, mut m)| {
                if let Some(o) = m.as_object_mut() {
                    o.insert("id".into(), json!(format!("{id}-{i}")));
                }
                m
            })
            .collect();
        if object.to_string().len() > KEPT_BYTES {
            return;
        }
        if let Ok(mut all) = self.chats.lock() {
            if all.len() < LIMIT {
                all.insert(id, KeptChat { object, messages });
            }
        }
    }
}

async fn retrieve(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || app.objects.chats.lock().ok().and_then(|m| Some(m.get(&id)?.object.clone())).ok_or_else(|| not_found(&id)))
}

async fn update(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let md = metadata_update(&body)?;
        let mut all = app.objects.chats.lock().map_err(|_| poisoned())?;
        let kept = all.get_mut(&id).ok_or_else(|| not_found(&id))?;
        if let Some(o) = kept.object.as_object_mut() {
            o.insert("metadata".into(), md);
        }
        Ok(kept.object.clone())
    })
}

async fn remove(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let gone = app.objects.chats.lock().ok().and_then(|mut m| m.remove(&id));
        gone.map(|_| json!({"object": "chat.completion.deleted", "id": id, "deleted": true})).ok_or_else(|| not_found(&id))
    })
}

async fn messages(State(app): State<Arc<App>>, Path(id): Path<String>, uri: Uri, h: HeaderMap) -> Response<Body> {
    answer(&app, &uri, &h, || {
        let messages = app.objects.chats.lock().ok().and_then(|m| Some(m.get(&id)?.messages.clone())).ok_or_else(|| not_found(&id))?;
        page_from(&uri, &messages, false)
    })
}
