//! The Gemini API's endpoints: the native `models/{model}:method` (generate,
//! stream, count, embed) and the OpenAI-compatible ones under
//! `/v1beta/openai/`, each with Google's key and query rules; the answers
//! themselves are written by [`crate::gemini`] and [`crate::gemini_embed`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use serde_json::{json, Value};

use crate::{chat, decorate, embed, gemini, gemini_embed, header_str, header_u64, remember, replayed, respond, App};

/// A query parameter Google's API frontend does not bind: it refuses the
/// request, as for any Google API ("Invalid JSON payload received. Unknown
/// name \"beta\": Cannot bind query parameter. Field 'beta' could not be
/// found in request message.", quoted from real answers in
/// demisto/content's GoogleChronicleBackstory tests and others). Google's
/// system parameters are taken (cloud.google.com/apis/docs/system-parameters).
fn gemini_unbound_query(uri: &Uri) -> Option<String> {
    const SYSTEM: &[&str] = &["alt", "$alt", "key", "fields", "$fields", "prettyPrint", "$prettyPrint", "quotaUser", "$quotaUser",
                              "callback", "$callback", "access_token", "upload_protocol", "uploadType", "userIp", "$userIp"];
    let name = uri.query()?.split('&').filter(|kv| !kv.is_empty()).map(|kv| kv.split('=').next().unwrap_or(kv)).find(|n| !SYSTEM.contains(n))?;
    Some(format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. Field '{name}' could not be found in request message."))
}

/// Gemini's key: `x-goog-api-key` or `?key=` (native), `Authorization: Bearer` (compatible endpoint).
fn gemini_key_ok(app: &App, h: &HeaderMap, uri: &Uri) -> bool {
    let presented = header_str(h, "x-goog-api-key")
        .map(str::to_string)
        .or_else(|| uri.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key=").map(str::to_string))))
        .or_else(|| header_str(h, "authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::to_string));
    match (presented, &app.keys.gemini) {
        (Some(p), Some(k)) => &p == k,
        (Some(p), None) => !p.is_empty(),
        (None, _) => false,
    }
}

pub(crate) async fn gemini_native(State(app): State<Arc<App>>, axum::extract::Path(rest): axum::extract::Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    let err = |code: u16, status: &str, msg: &str| {
        respond(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), &h, &uri, gemini::error(code, status, msg), "application/json")
    };
    remember(&app, &body);
    if let Some(msg) = gemini_unbound_query(&uri) {
        return err(400, "INVALID_ARGUMENT", &msg);
    }
    if !gemini_key_ok(&app, &h, &uri) {
        return err(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.");
    }
    if let Some(s) = header_u64(&h, "x-mock-status") {
        let status = match s { 429 => "RESOURCE_EXHAUSTED", 503 => "UNAVAILABLE", _ => "INTERNAL" };
        return err(s as u16, status, "Mock error requested by x-mock-status.");
    }
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&body) else {
        return err(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    match replayed(&app, &h, &uri) {
        Some(Ok(r)) => return r,
        Some(Err(())) => return err(404, "NOT_FOUND", "x-mock-replay: no such capture"),
        None => {}
    }
    if let Some((model, method @ ("embedContent" | "batchEmbedContents"))) = rest.rsplit_once(':') {
        // `x-mock-embed-usage: none` answers without `usageMetadata`.
        let usage = header_str(&h, "x-mock-embed-usage") != Some("none");
        return match gemini_embed::answer(model, method, &m, usage) {
            Ok((v, tokens)) => {
                app.served_requests.fetch_add(1, Ordering::SeqCst);
                app.served_input.fetch_add(tokens, Ordering::SeqCst);
                respond(StatusCode::OK, &h, &uri, v.to_string(), "application/json")
            }
            Err((code, msg)) => err(code, if code == 404 { "NOT_FOUND" } else { "INVALID_ARGUMENT" }, &msg),
        };
    }
    if rest.ends_with(":countTokens") {
        return match gemini::count(&m) {
            Ok(v) => respond(StatusCode::OK, &h, &uri, v.to_string(), "application/json"),
            Err((code, msg)) => err(code, "INVALID_ARGUMENT", &msg),
        };
    }
    let plan = match gemini::plan(
        &rest,
        &m,
        header_u64(&h, "x-mock-output-tokens").unwrap_or(12),
        header_u64(&h, "x-mock-reasoning-tokens").unwrap_or(0),
        header_u64(&h, "x-mock-cached-tokens").unwrap_or(0),
    ) {
        Ok(p) => p,
        Err((code, msg)) => return err(code, if code == 404 { "NOT_FOUND" } else { "INVALID_ARGUMENT" }, &msg),
    };
    let mut plan = plan;
    if gemini::grounded(&m) {
        plan.searches = header_u64(&h, "x-mock-web-searches").unwrap_or(1).min(100_000);
    }
    if let Some(msg) = gemini::image_refusal(&plan.model, &m) {
        return err(400, "INVALID_ARGUMENT", &msg);
    }
    if gemini::wants_image(&m) {
        plan.image_bytes = header_u64(&h, "x-mock-image-bytes").unwrap_or(4096).min(64 << 20) as usize;
    }
    // The tier that served it, in `x-gemini-service-tier` ("standard" when
    // Priority is over its limit and downgraded: ai.google.dev/gemini-api/
    // docs/priority-inference); `x-mock-served-tier` plays the downgrade.
    let tier = match gemini::service_tier(&m, header_str(&h, "x-vertex-ai-llm-shared-request-type")) {
        Ok(t) => header_str(&h, "x-mock-served-tier").unwrap_or(t).to_string(),
        Err((code, msg)) => return err(code, "INVALID_ARGUMENT", &msg),
    };
    let tier = HeaderValue::from_str(&tier).unwrap_or(HeaderValue::from_static("standard"));
    let seq = app.seq.fetch_add(1, Ordering::SeqCst);
    let id = format!("mock{seq:020}");
    app.served_requests.fetch_add(1, Ordering::SeqCst);
    app.served_input.fetch_add(plan.input, Ordering::SeqCst);
    let images = if plan.image_bytes > 0 { gemini::IMAGE_TOKENS } else { 0 };
    app.served_output.fetch_add(plan.output + plan.thoughts + images, Ordering::SeqCst);
    if !plan.stream {
        let mut r = respond(StatusCode::OK, &h, &uri, gemini::json_body(&plan, &id), "application/json");
        r.headers_mut().insert("x-gemini-service-tier", tier);
        return r;
    }
    if !uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse")) {
        // Without alt=sse Gemini streams a JSON array; the gateway's clients ask for SSE.
        return err(400, "INVALID_ARGUMENT", "This mock streams only with alt=sse.");
    }
    let events: Vec<Result<Bytes, std::io::Error>> = gemini::stream_events(&plan, &id).into_iter().map(|e| Ok(Bytes::from(e))).collect();
    let mut r = Response::new(Body::from_stream(tokio_stream::iter(events)));
    decorate(r.headers_mut(), &h, &uri, "text/event-stream");
    r.headers_mut().insert("x-gemini-service-tier", tier);
    r
}

/// Gemini's OpenAI-compatible endpoint: Gemini's key, then the mock's OpenAI
/// dialect (`Err`: the refusal of a wrong key).
fn gemini_compat_key(app: &App, uri: &Uri, h: &mut HeaderMap) -> Result<(), Box<Response<Body>>> {
    if let Some(msg) = gemini_unbound_query(uri) {
        let body = json!([{"error": {"code": 400, "message": msg, "status": "INVALID_ARGUMENT"}}]).to_string();
        return Err(Box::new(respond(StatusCode::BAD_REQUEST, h, uri, body, "application/json")));
    }
    if !gemini_key_ok(app, h, uri) {
        let body = json!([{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}}]).to_string();
        return Err(Box::new(respond(StatusCode::BAD_REQUEST, h, uri, body, "application/json")));
    }
    if let Some(v) = app.keys.openai.as_ref().and_then(|k| HeaderValue::from_str(&format!("Bearer {k}")).ok()) {
        h.insert("authorization", v);
    }
    Ok(())
}

pub(crate) async fn gemini_compat(State(app): State<Arc<App>>, uri: Uri, mut h: HeaderMap, body: Bytes) -> Response<Body> {
    match gemini_compat_key(&app, &uri, &mut h) {
        Ok(()) => chat(State(app), uri, h, body).await,
        Err(r) => *r,
    }
}

pub(crate) async fn gemini_compat_embed(State(app): State<Arc<App>>, uri: Uri, mut h: HeaderMap, body: Bytes) -> Response<Body> {
    match gemini_compat_key(&app, &uri, &mut h) {
        Ok(()) => embed(State(app), uri, h, body).await,
        Err(r) => *r,
    }
}
