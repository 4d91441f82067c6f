//! Each path's handler (but Gemini's, gemini_routes.rs): the checks every
//! endpoint makes (wire.rs), then the module that plans and writes the
//! answer, and the served totals counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use serde_json::{json, Value};

use crate::answer::{paced_answer, served_tier, sse};
use crate::chat::handle;
use crate::wire::{check_key, decorate, error_body_with, header_str, header_u64, openai_checks, openai_error, openai_prelude, remember, respond};
use crate::{completions, decisions, embeddings, hostile, image_edits, images, moderation, prompt_tokens, responses, speech, strict, transcriptions, App, Dialect};

pub(crate) async fn last_body(State(app): State<Arc<App>>) -> Response<Body> {
    let body = app.last_body.lock().map(|b| b.clone()).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

pub(crate) async fn chat(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let host = header_str(&h, "host").unwrap_or("");
    let req: Result<Value, _> = serde_json::from_slice(&body);
    let model = req.as_ref().ok().and_then(|r| r.get("model")).and_then(Value::as_str).unwrap_or("").to_string();
    let dialect = if host.contains("deepseek") || model.starts_with("deepseek") { Dialect::DeepSeek } else { Dialect::OpenAi };
    handle(app, dialect, uri, h, req, model).await
}

pub(crate) async fn complete(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    let err = |status: u16, msg: &str, param: Option<&str>, code: Option<&str>| openai_error(&h, &uri, status, msg, param, code);
    let m = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let plan = match completions::plan(&m, header_u64(&h, "x-mock-output-tokens").unwrap_or(12)) {
        Ok(p) => p,
        Err((status, msg, param, code)) => return err(status, &msg, param, code),
    };
    let seq = app.seq.fetch_add(1, Ordering::SeqCst);
    let id = format!("cmpl-mock{seq:024}");
    let created = 1_767_225_600 + seq;
    app.served_requests.fetch_add(1, Ordering::SeqCst);
    app.served_input.fetch_add(plan.input, Ordering::SeqCst);
    app.served_output.fetch_add(plan.output * plan.choices, Ordering::SeqCst);
    if !plan.stream {
        return respond(StatusCode::OK, &h, &uri, completions::json_body(&plan, &id, created), "application/json");
    }
    let events: Vec<Result<Bytes, std::io::Error>> =
        completions::stream_data(&plan, &id, created).iter().map(|d| Ok(sse(None, d))).collect();
    let mut r = Response::new(Body::from_stream(tokio_stream::iter(events)));
    decorate(r.headers_mut(), &h, &uri, "text/event-stream");
    r
}

pub(crate) async fn count_input_tokens(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let m = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match responses::count(&m) {
        Ok(v) => respond(StatusCode::OK, &h, &uri, v.to_string(), "application/json"),
        Err((status, msg, param, code)) => openai_error(&h, &uri, status, &msg, param, code),
    }
}

/// Compaction: billed like a response (counted as served), never streamed.
pub(crate) async fn compact_responses(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let m = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let seq = app.seq.fetch_add(1, Ordering::SeqCst);
    let wanted = header_u64(&h, "x-mock-output-tokens").unwrap_or(12);
    billed_json(&app, &h, &uri, responses::compact(&m, &format!("mock{seq:024}"), 1_767_225_600 + seq, wanted))
}

/// A JSON answer counted as served (its input and output tokens), or the refusal.
pub(crate) fn billed_json(app: &App, h: &HeaderMap, uri: &Uri, made: Result<(Value, u64, u64), responses::Refusal>) -> Response<Body> {
    match made {
        Ok((doc, input, output)) => {
            app.served_requests.fetch_add(1, Ordering::SeqCst);
            app.served_input.fetch_add(input, Ordering::SeqCst);
            app.served_output.fetch_add(output, Ordering::SeqCst);
            respond(StatusCode::OK, h, uri, doc.to_string(), "application/json")
        }
        Err((status, msg, param, code)) => openai_error(h, uri, status, &msg, param, code),
    }
}

pub(crate) async fn respond_api(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let err = |status: u16, msg: &str, param: Option<&str>, code: Option<&str>| openai_error(&h, &uri, status, msg, param, code);
    let m = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let wanted = header_u64(&h, "x-mock-output-tokens").unwrap_or(12);
    let reasoning = header_u64(&h, "x-mock-reasoning-tokens").unwrap_or(0);
    let cached = header_u64(&h, "x-mock-cached-tokens").unwrap_or(0);
    let mut plan = match responses::plan(&m, wanted, reasoning, cached) {
        Ok(p) => p,
        Err((status, msg, param, code)) => return err(status, &msg, param, code),
    };
    plan.service_tier = served_tier(m.get("service_tier").and_then(Value::as_str), &h);
    plan.tool_usage = h.get("x-mock-no-tool-usage").is_none();
    plan.page_opens = header_u64(&h, "x-mock-page-opens").unwrap_or(0).min(100);
    plan.image_input_tokens = header_u64(&h, "x-mock-image-input-tokens").unwrap_or(0).min(1 << 20);
    plan.run_tools(header_u64(&h, "x-mock-file-searches"), header_u64(&h, "x-mock-web-searches"), header_u64(&h, "x-mock-image-calls"));
    plan.cache_write = header_u64(&h, "x-mock-cache-write-tokens").unwrap_or(0).min(plan.input - plan.cached);
    let conversation = match app.objects.conversation_of(&m, plan.previous.is_some()) {
        Ok(c) => c,
        Err((status, msg, param, code)) => return err(status, &msg, param, code),
    };
    if let Err((status, msg, param, code)) = app.objects.continue_from(&mut plan, conversation.as_deref()) {
        return err(status, &msg, param, code);
    }
    match app.objects.file_tokens(&m) {
        Ok(n) => plan.input = plan.input.saturating_add(n),
        Err((status, msg, param, code)) => return err(status, &msg, param, code),
    }
    let seq = app.seq.fetch_add(1, Ordering::SeqCst);
    let id = format!("mock{seq:024}");
    let created = 1_767_225_600 + seq;
    app.objects.keep(&plan, &responses::object(&plan, &id, created, true), &m, conversation.as_deref());
    app.served_requests.fetch_add(1, Ordering::SeqCst);
    app.served_input.fetch_add(plan.input, Ordering::SeqCst);
    app.served_output.fetch_add(plan.output, Ordering::SeqCst);
    app.served_container_gb.fetch_add(plan.hosted.container_gb, Ordering::SeqCst);
    if plan.background {
        // Run on: done after `x-mock-background-ms`, read back by id.
        let delay = header_u64(&h, "x-mock-background-ms").unwrap_or(0).min(600_000);
        app.objects.run_in_background(&format!("resp_{id}"), delay, plan.output, responses::events(&plan, &id, created));
        if !plan.stream {
            let mut queued = responses::object(&plan, &id, created, false);
            queued["status"] = json!("queued");
            let r = respond(StatusCode::OK, &h, &uri, queued.to_string(), "application/json");
            return hostile::misbehave(r, &h).await;
        }
    }
    if !plan.stream {
        let r = respond(StatusCode::OK, &h, &uri, responses::object(&plan, &id, created, true).to_string(), "application/json");
        return hostile::misbehave(r, &h).await;
    }
    let events = responses::events(&plan, &id, created).iter().map(|(n, d)| sse(Some(n), d)).collect();
    paced_answer(events, &h, &uri, "text/event-stream").await
}

pub(crate) async fn embed(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    let err = |status: u16, msg: &str, param: Option<&str>, code: Option<&str>| openai_error(&h, &uri, status, msg, param, code);
    let m = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let (tokens, dimensions, base64) = match embeddings::check(&m) {
        Ok(p) => p,
        Err((status, msg, param, code)) => return err(status, &msg, param, code),
    };
    let model = m.get("model").and_then(Value::as_str).unwrap_or_default();
    if !model.starts_with("text-embedding-") && !model.starts_with("gemini-embedding-") {
        return err(404, &format!("The model `{model}` does not exist or you do not have access to it."), None, Some("model_not_found"));
    }
    let (body, total) = embeddings::response(model, &tokens, dimensions, base64);
    app.served_requests.fetch_add(1, Ordering::SeqCst);
    app.served_input.fetch_add(total, Ordering::SeqCst);
    respond(StatusCode::OK, &h, &uri, body, "application/json")
}

/// OpenAI's moderation classifier (moderation.rs). Free: not counted as served.
pub(crate) async fn moderate(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let m = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match moderation::answer(&m, app.seq.fetch_add(1, Ordering::Relaxed)) {
        Ok(body) => respond(StatusCode::OK, &h, &uri, body, "application/json"),
        Err((status, msg, param, code)) => openai_error(&h, &uri, status, &msg, param, code),
    }
}

/// OpenAI's Decisions API (decisions.rs): `x-mock-cached-tokens` sets
/// how much of the input the cache served.
pub(crate) async fn decide(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let m = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    billed_json(&app, &h, &uri, decisions::answer(&m, header_u64(&h, "x-mock-cached-tokens").unwrap_or(0)))
}

/// OpenAI's image generations (images.rs): `x-mock-image-bytes` sets the
/// length of each image's base64 (a real image is megabytes).
pub(crate) async fn generate_images(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let m = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let plan = match images::plan(&m) {
        Ok(p) => p,
        Err((status, msg, param, code)) => return openai_error(&h, &uri, status, &msg, param, code),
    };
    serve_images(app, uri, h, plan).await
}

/// OpenAI's image edits (image_edits.rs): a multipart form, or JSON naming
/// its images by reference; answered as a generation is.
pub(crate) async fn edit_images(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let refuse = |(status, msg, param, code): embeddings::Refusal| openai_error(&h, &uri, status, &msg, param, code);
    let content_type = header_str(&h, "content-type").unwrap_or("").to_string();
    let read = if content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        if let Err(r) = openai_checks(&app, &uri, &h) {
            return *r;
        }
        image_edits::read_form(&content_type, body).await
    } else {
        match openai_prelude(&app, &uri, &h, &body) {
            Ok(m) => image_edits::json_inputs(&m).map(|i| (m, i)),
            Err(r) => return *r,
        }
    };
    let plan = match read.and_then(|(m, inputs)| image_edits::plan(&m, &inputs)) {
        Ok(p) => p,
        Err(r) => return refuse(r),
    };
    serve_images(app, uri, h, plan).await
}

/// OpenAI's transcriptions (transcriptions.rs): a multipart form only.
pub(crate) async fn transcribe(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    hear(app, transcriptions::Task::Transcribe, uri, h, body).await
}

/// OpenAI's translations (transcriptions.rs): `whisper-1`, English text.
pub(crate) async fn translate(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    hear(app, transcriptions::Task::Translate, uri, h, body).await
}

pub(crate) async fn hear(app: Arc<App>, task: transcriptions::Task, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    if let Err(r) = openai_checks(&app, &uri, &h) {
        return *r;
    }
    let content_type = header_str(&h, "content-type").unwrap_or("").to_string();
    let plan = match transcriptions::read_form(&content_type, body).await.and_then(|f| transcriptions::plan(task, &f)) {
        Ok(p) => p,
        Err((status, msg, param, code)) => return openai_error(&h, &uri, status, &msg, param, code),
    };
    let (input, output, ms) = plan.billed();
    app.served_requests.fetch_add(1, Ordering::SeqCst);
    app.served_input.fetch_add(input, Ordering::SeqCst);
    app.served_output.fetch_add(output, Ordering::SeqCst);
    app.served_audio_ms.fetch_add(ms, Ordering::SeqCst);
    if !plan.stream {
        let (body, ctype) = plan.answer();
        return hostile::misbehave(respond(StatusCode::OK, &h, &uri, body, ctype), &h).await;
    }
    let events = plan.events().iter().map(|d| sse(None, d)).collect();
    paced_answer(events, &h, &uri, "text/event-stream").await
}

/// OpenAI's text to speech (speech.rs): the audio, chunked, or its events.
pub(crate) async fn speak(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let plan = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => speech::plan(&m, header_u64(&h, "x-mock-speech-ms")),
        Err(r) => return *r,
    };
    let plan = match plan {
        Ok(p) => p,
        Err((status, msg, param, code)) => return openai_error(&h, &uri, status, &msg, param, code),
    };
    app.served_requests.fetch_add(1, Ordering::SeqCst);
    app.served_input.fetch_add(plan.input_tokens, Ordering::SeqCst);
    app.served_output.fetch_add(plan.output_tokens(), Ordering::SeqCst);
    app.served_characters.fetch_add(plan.characters, Ordering::SeqCst);
    let (chunks, ctype): (Vec<Bytes>, _) = match plan.sse {
        true => (plan.events().iter().map(|d| sse(None, d)).collect(), "text/event-stream"),
        false => (plan.audio(16 << 10).into_iter().map(Bytes::from).collect(), plan.content_type()),
    };
    paced_answer(chunks, &h, &uri, ctype).await
}

/// An image generation's or edit's answer: JSON, or its stream.
pub(crate) async fn serve_images(app: Arc<App>, uri: Uri, h: HeaderMap, plan: images::Plan) -> Response<Body> {
    let created = 1_767_225_600 + app.seq.fetch_add(1, Ordering::SeqCst);
    let b64 = header_u64(&h, "x-mock-image-bytes").map(|n| n as usize);
    app.served_requests.fetch_add(1, Ordering::SeqCst);
    app.served_input.fetch_add((plan.input + plan.image_input) * plan.n, Ordering::SeqCst);
    app.served_output.fetch_add(plan.output(), Ordering::SeqCst);
    if !plan.stream {
        return hostile::misbehave(respond(StatusCode::OK, &h, &uri, plan.answer(created, b64), "application/json"), &h).await;
    }
    let events = plan.events(created, b64).iter().map(|(n, d)| sse(Some(n), d)).collect();
    paced_answer(events, &h, &uri, "text/event-stream").await
}

pub(crate) async fn messages(State(app): State<Arc<App>>, uri: Uri, mut h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let req: Result<Value, _> = serde_json::from_slice(&body);
    let model = req.as_ref().ok().and_then(|r| r.get("model")).and_then(Value::as_str).unwrap_or("").to_string();
    // Echoed as x-mock-cache-breakpoints (how many cache_control markers arrived).
    let marks = req.as_ref().ok().and_then(Value::as_object).map(|m| strict::cache_breakpoints(m).len()).unwrap_or(0);
    h.insert("x-mock-internal-breakpoints", HeaderValue::from(marks));
    handle(app, Dialect::Anthropic, uri, h, req, model).await
}

/// Anthropic's token counting: the input tokens the same body would take
/// as a message (cache reads and writes included), refused as the real
/// endpoint refuses (strict.rs). Free: not counted as served.
pub(crate) async fn count_message_tokens(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let err = |status: u16, message: &str, param: Option<&str>| {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        respond(code, &h, &uri, error_body_with(Dialect::Anthropic, status, message, param, None), "application/json")
    };
    if let Err(m) = check_key(&app, Dialect::Anthropic, &h) {
        return err(401, &m, None);
    }
    if header_str(&h, "anthropic-version").is_none() {
        return err(400, "anthropic-version: header is required", None);
    }
    let req = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => return err(400, "There was an error parsing the body of your request.", None),
    };
    if let Err(r) = strict::check_count_tokens(&req, header_str(&h, "anthropic-beta").is_some()) {
        return err(r.status, &r.message, r.param.as_deref());
    }
    let input = prompt_tokens(&Value::Object(req));
    respond(StatusCode::OK, &h, &uri, json!({ "input_tokens": input }).to_string(), "application/json")
}
