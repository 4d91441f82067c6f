//! Mock LLM provider for Tollgate's tests and demo.
//!
//! Speaks, on one port, the wire formats of:
//! - OpenAI chat completions (`POST /v1/chat/completions`): JSON, and SSE
//!   `chat.completion.chunk` events ending in `data: [DONE]`; the final usage
//!   chunk (`choices: []`) and `"usage":null` on every other chunk only when
//!   `stream_options.include_usage` is true; `prompt_tokens_details.cached_tokens`;
//!   an `obfuscation` member (random characters padding the chunk) last on
//!   every chunk unless `stream_options.include_obfuscation` is false, as
//!   api.openai.com has sent since 2025 (tests/captures/openai_chat_stream_usage.sse).
//! - DeepSeek (OpenAI format, chosen when the Host or model says deepseek):
//!   `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens`; thinking mode
//!   on by default (its `reasoning_content` in the message or in deltas
//!   before the answer when reasoning tokens are asked for), and a tool loop
//!   without it handed back refused (strict.rs).
//! - Anthropic messages (`POST /v1/messages`): JSON, and SSE `message_start`
//!   … `message_delta` (usage) … `message_stop`; cache read/write counts.
//!
//! Token counts are deterministic functions of the input (see `count_tokens`).
//! Errors are injected per request with headers (all optional):
//! - `x-mock-status: 429|500|503|529|400|401`: an error in the provider's format
//!   (429 carries `retry-after`).
//! - `x-mock-delay-ms: N`: wait N ms before the first byte.
//! - `x-mock-chunk-delay-ms: N`: wait N ms between stream events.
//! - `x-mock-cut-after: N`: close the connection after N stream events (or
//!   half-way through a JSON body).
//! - `x-mock-output-tokens: N`: generate N output tokens (default 12, capped by max_tokens).
//! - A last message `TASK: add A B` or `JUDGE: …` is answered by models of
//!   different quality (tasks.rs): evaluations can tell them apart.
//! - `x-mock-gzip: 1` (or a `Host` starting `gzip.`): the answer gzipped
//!   although no accept-encoding asked for it (hostile.rs); `corrupt`:
//!   the same, turning invalid halfway.
//! - A `Host` starting `huge.`: an answer whose model name is 40 MiB long
//!   (as `x-mock-model-bytes`), for calls whose headers a client cannot set.
//! - `x-mock-echo: 1`: answer with the last message's text, 3 characters a token;
//!   `x-mock-say: TEXT`: answer with TEXT, the same way.
//! - `x-mock-tool-call: NAME`: after its text the model calls the tool NAME
//!   with `{}` (`tool_use`, or chat's `tool_calls`), which the request must
//!   offer (400 otherwise: a model cannot call what it was not given).
//! - `x-mock-cached-tokens: N` / `x-mock-cache-write-tokens: N`: prompt-cache counts
//!   (otherwise the mock's prompt cache decides them, as the provider would:
//!   prefix_cache.rs).
//! - `x-mock-reasoning-tokens: N`: OpenAI and DeepSeek reasoning tokens, Anthropic
//!   thinking tokens (`output_tokens_details.thinking_tokens`, as a real
//!   claude-fable-5 answer reports them: braintrustdata/lingua
//!   `payloads/snapshots/fableTemperatureParam/anthropic/response.json`);
//!   added to output.
//! - `x-mock-web-searches: N`: server-side web searches the model runs (an
//!   Anthropic request's at most its tool's `max_uses`); on Anthropic each
//!   is a call of the server tool loop (server_loop.rs), writing
//!   `x-mock-search-turn-tokens: N` (default 20) and adding
//!   `x-mock-search-result-tokens: N` (default 0) to what later calls read.
//! - `x-mock-served-tier: priority|default|flex|…`: the tier an OpenAI answer
//!   says served it, whatever was asked (a project's default tier, or Fast
//!   mode falling back to standard); `x-mock-served-speed: fast|standard`
//!   and `x-mock-served-geo: us|global`: Anthropic's `usage.speed` and
//!   `usage.inference_geo` (a workspace's default geography).
//!
//! Every response carries `x-mock-auth` (the credential received), `x-mock-api-key`
//! (an Azure key header received),
//! `x-mock-host`, `x-mock-path`, `x-mock-model`, `x-mock-cache-breakpoints`
//! (Anthropic `cache_control` markers received) and `x-mock-anthropic-version`
//! so tests can prove what the gateway sent upstream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

mod audio;
mod completions;
mod decisions;
mod embeddings;
mod form;
mod gemini;
mod gemini_embed;
mod hostile;
mod image_edits;
mod images;
mod moderation;
mod objects;
mod prefix_cache;
mod responses;
mod server_loop;
mod strict;
mod thinking;
mod diagnostics;
mod speech;
mod transcriptions;
mod tasks;

#[derive(Default)]
struct Keys {
    openai: Option<String>,
    anthropic: Option<String>,
    deepseek: Option<String>,
    gemini: Option<String>,
}

struct App {
    keys: Keys,
    /// Real captured responses served by `x-mock-replay`.
    captures: std::path::PathBuf,
    seq: AtomicU64,
    /// Totals of the successful completions served (GET /mock/stats): what
    /// the provider would bill.
    served_requests: AtomicU64,
    served_input: AtomicU64,
    served_output: AtomicU64,
    /// GB of code interpreter containers created (each billed a session).
    served_container_gb: AtomicU64,
    /// Milliseconds of audio billed by its length (whisper-1).
    served_audio_ms: AtomicU64,
    /// Characters of speech input served (tts-1 bills them).
    served_characters: AtomicU64,
    /// The last chat, messages, token-count, Responses or Gemini request body (GET /mock/last-body): what
    /// the gateway actually sent upstream.
    last_body: std::sync::Mutex<Bytes>,
    /// Prompt prefixes served recently ([`prefix_cache`]).
    cache: prefix_cache::PrefixCache,
    /// Stored responses and conversations ([`objects`]).
    objects: objects::Store,
    /// Anthropic prompts for cache diagnostics ([`diagnostics`]).
    diagnosed: diagnostics::Recent,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialect {
    OpenAi,
    DeepSeek,
    Anthropic,
}

fn usage_exit() -> ! {
    eprintln!(
        "usage: mock-provider [--listen 127.0.0.1:8080] [--openai-key K] [--anthropic-key K] [--deepseek-key K] [--gemini-key K] [--captures DIR]\n\
         Without a --*-key flag, any non-empty credential is accepted for that provider."
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut keys = Keys::default();
    let mut captures = std::path::PathBuf::from("tests/captures");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage_exit());
        match a.as_str() {
            "--listen" => listen = val().parse().unwrap_or_else(|_| usage_exit()),
            "--openai-key" => keys.openai = Some(val()),
            "--anthropic-key" => keys.anthropic = Some(val()),
            "--deepseek-key" => keys.deepseek = Some(val()),
            "--gemini-key" => keys.gemini = Some(val()),
            "--captures" => captures = val().into(),
            _ => usage_exit(),
        }
    }
    let app = Arc::new(App {
        keys,
        captures,
        seq: AtomicU64::new(1),
        served_requests: AtomicU64::new(0),
        served_input: AtomicU64::new(0),
        served_output: AtomicU64::new(0),
        served_container_gb: AtomicU64::new(0),
        served_audio_ms: AtomicU64::new(0),
        served_characters: AtomicU64::new(0),
        last_body: std::sync::Mutex::new(Bytes::new()),
        cache: prefix_cache::PrefixCache::default(),
        objects: objects::Store::default(),
        diagnosed: diagnostics::Recent::default(),
    });
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_message_tokens))
        .route("/v1/embeddings", post(embed))
        .route("/v1/moderations", post(moderate))
        .route("/v1/decisions", post(decide))
        .route("/v1/images/generations", post(generate_images))
        .route("/v1/images/edits", post(edit_images))
        .route("/v1/audio/transcriptions", post(transcribe))
        .route("/v1/audio/translations", post(translate))
        .route("/v1/audio/speech", post(speak))
        .route("/v1/completions", post(complete))
        .route("/v1/responses", post(respond_api))
        .route("/v1/responses/input_tokens", post(count_input_tokens))
        .route("/v1/responses/compact", post(compact_responses))
        .route("/v1beta/models/{*rest}", post(gemini_native))
        .route("/v1beta/openai/chat/completions", post(gemini_compat))
        .route("/v1beta/openai/embeddings", post(gemini_compat_embed))
        .route("/responses", post(respond_api))
        .route("/completions", post(complete))
        .route("/embeddings", post(embed))
        .merge(objects::routes())
        .route("/mock/stats", get(stats))
        .route("/mock/last-body", get(last_body))
        .fallback(not_found)
        // The providers accept large bodies (Anthropic refuses past 32 MB).
        .layer(axum::extract::DefaultBodyLimit::max(32 << 20))
        .with_state(app);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-provider: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    println!("mock-provider listening on {addr}");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // No Nagle: SSE events are small writes that must leave at once.
    if let Err(e) = axum::serve(listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    }), router).with_graceful_shutdown(shutdown).await {
        eprintln!("mock-provider: {e}");
        std::process::exit(1);
    }
}

async fn stats(State(app): State<Arc<App>>) -> Response<Body> {
    let body = json!({
        "requests": app.served_requests.load(Ordering::SeqCst),
        "input_tokens": app.served_input.load(Ordering::SeqCst),
        "output_tokens": app.served_output.load(Ordering::SeqCst),
        "audio_ms": app.served_audio_ms.load(Ordering::SeqCst),
        "characters": app.served_characters.load(Ordering::SeqCst),
        "container_gb": app.served_container_gb.load(Ordering::SeqCst),
    });
    respond(StatusCode::OK, &HeaderMap::new(), &Uri::from_static("/mock/stats"), body.to_string(), "application/json")
}

async fn not_found(uri: Uri) -> Response<Body> {
    let body = json!({"error": {"message": format!("Invalid URL (POST {})", uri.path()), "type": "invalid_request_error", "param": null, "code": null}});
    respond(StatusCode::NOT_FOUND, &HeaderMap::new(), &uri, body.to_string(), "application/json")
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)?.to_str().ok()
}

/// Deterministic token count of text: one token per 4 bytes, rounded up.
fn count_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// All text in a content value (string, or an array of blocks with `text`).
fn content_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            for it in items {
                if let Some(t) = it.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                } else if let Some(c) = it.get("content") {
                    content_text(c, out);
                }
            }
        }
        _ => {}
    }
}

/// Input tokens: the messages' text (+ system), plus 4 per message of framing.
fn prompt_tokens(req: &Value) -> u64 {
    let mut text = String::new();
    let mut n = 0u64;
    if let Some(sys) = req.get("system") {
        content_text(sys, &mut text);
    }
    if let Some(msgs) = req.get("messages").and_then(Value::as_array) {
        for m in msgs {
            n += 1;
            if let Some(c) = m.get("content") {
                content_text(c, &mut text);
            }
        }
    }
    count_tokens(&text) + 4 * n
}

const WORDS: &[&str] = &[
    "Sure", ",", " here", " is", " a", " mock", " answer", " from", " the", " provider", ".", " It", " has", " as", " many",
    " tokens", " as", " asked", " for", ",", " and", " the", " counts", " are", " exact",
];

/// The generated output: `n` tokens, each a short word piece.
fn output_pieces(n: u64) -> Vec<&'static str> {
    (0..n as usize).map(|i| WORDS[i % WORDS.len()]).collect()
}

struct Plan {
    dialect: Dialect,
    model: String,
    /// Anthropic: the answer's cache `diagnostics`, when the request asked
    /// ([`diagnostics`]).
    diagnostics: Option<Value>,
    /// OpenAI: the tier the answer says served it (`priority` and `flex` as
    /// asked, else `default`), as api.openai.com answers.
    service_tier: &'static str,
    /// Anthropic: where inference ran, when the request said or the
    /// workspace's default is set (`usage.inference_geo`).
    inference_geo: Option<&'static str>,
    /// Anthropic: the speed it ran at, when the request said (`usage.speed`).
    speed: Option<&'static str>,
    stream: bool,
    include_usage: bool,
    /// OpenAI streams: an `obfuscation` member on every chunk (the default).
    include_obfuscation: bool,
    input: u64,
    cached: u64,
    cache_write: u64,
    output: u64,
    reasoning: u64,
    finish: &'static str,
    delay: Duration,
    chunk_delay: Duration,
    cut_after: Option<u64>,
    /// OpenAI `n`: choices generated, each with `output` tokens.
    choices: u64,
    cache_write_1h: u64,
    /// Anthropic server-side compaction that ran (the request's
    /// `context_management` has a `compact_*` edit and the test says the
    /// context crossed its trigger: `x-mock-compaction-tokens: IN,OUT`):
    /// the pass's tokens, reported apart in `usage.iterations`.
    compaction: Option<(u64, u64)>,
    /// Anthropic's advisor tool, consulted: its model and each call's
    /// (input, output) tokens, reported apart in `usage.iterations`
    /// (`x-mock-advisor-tokens: IN,OUT`, `x-mock-advisor-calls: N`, at most
    /// the tool's `max_uses`; by default one call reading the whole prompt
    /// and writing 600 tokens).
    advisor: Option<(String, Vec<(u64, u64)>)>,
    web_searches: u64,
    /// Anthropic's server tool loop, when a search ran (server_loop.rs):
    /// `input` above is already every call's.
    server_loop: Option<server_loop::Loop>,
    /// Report this many output tokens, whatever was generated (a lying provider).
    usage_output: Option<u64>,
    endless_event: Option<u64>,
    /// DeepSeek in thinking mode with reasoning tokens asked for: the
    /// reasoning it returns as `reasoning_content`, before the answer.
    reasoning_text: Option<&'static str>,
    /// `x-mock-echo: 1`: the answer repeats the last message's text, in
    /// 3-character pieces (a model that quotes its prompt, with tokens that
    /// split words and placeholders).
    echo: Option<Vec<String>>,
    /// OpenAI audio models: the audio tokens in the prompt and the answer ([`audio`]).
    audio: audio::Audio,
    /// `x-mock-tool-call`: the offered tool the model calls after its text.
    tool_call: Option<String>,
}

/// The tool `x-mock-tool-call` names, when the request offers it (by its
/// `name`, or chat's `function.name`).
fn offered_tool(req: &Value, h: &HeaderMap) -> Result<Option<String>, String> {
    let Some(name) = header_str(h, "x-mock-tool-call") else { return Ok(None) };
    let offered = req.get("tools").and_then(Value::as_array).into_iter().flatten()
        .filter_map(|t| t.get("name").or_else(|| t.pointer("/function/name")).and_then(Value::as_str))
        .any(|n| n == name);
    if offered { Ok(Some(name.to_string())) } else { Err(format!("x-mock-tool-call: the request offers no tool named '{name}'")) }
}

impl Plan {
    /// The generated text, piece by piece.
    fn pieces(&self) -> Vec<String> {
        match &self.echo {
            Some(p) => p.iter().take(self.output as usize).cloned().collect(),
            None => output_pieces(self.output).into_iter().map(str::to_string).collect(),
        }
    }
}

/// `text` in pieces of 3 characters.
fn echo_pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(3).map(|c| c.iter().collect()).collect()
}

fn error_body(dialect: Dialect, status: u16, message: &str) -> String {
    error_body_with(dialect, status, message, None, None)
}

fn error_body_with(dialect: Dialect, status: u16, message: &str, param: Option<&str>, code: Option<&str>) -> String {
    match dialect {
        Dialect::Anthropic => {
            let t = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": t, "message": message}}).to_string()
        }
        _ => {
            let (t, default_code) = match status {
                400 | 404 => ("invalid_request_error", Value::Null),
                401 => ("invalid_request_error", json!("invalid_api_key")),
                429 => ("requests", json!("rate_limit_exceeded")),
                _ => ("server_error", Value::Null),
            };
            let code = code.map(Value::from).unwrap_or(default_code);
            json!({"error": {"message": message, "type": t, "param": param, "code": code}}).to_string()
        }
    }
}

fn respond(status: StatusCode, req_h: &HeaderMap, uri: &Uri, body: String, ctype: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    decorate(r.headers_mut(), req_h, uri, ctype);
    r
}

/// Echo what the gateway sent upstream, for the tests.
fn decorate(h: &mut HeaderMap, req_h: &HeaderMap, uri: &Uri, ctype: &str) {
    let echo = |v: Option<&str>| HeaderValue::from_str(v.unwrap_or("")).unwrap_or(HeaderValue::from_static(""));
    let auth = header_str(req_h, "authorization").or_else(|| header_str(req_h, "x-api-key"));
    h.insert("content-type", HeaderValue::from_str(ctype).unwrap_or(HeaderValue::from_static("text/plain")));
    h.insert("x-mock-auth", echo(auth));
    h.insert("x-mock-host", echo(header_str(req_h, "host")));
    // (Azure OpenAI's key header: the gateway's clients send a virtual key there.)
    h.insert("x-mock-api-key", echo(header_str(req_h, "api-key")));
    h.insert("x-mock-path", echo(uri.path_and_query().map(|p| p.as_str())));
    h.insert("x-mock-anthropic-version", echo(header_str(req_h, "anthropic-version")));
    h.insert("x-mock-request-encoding", echo(header_str(req_h, "content-encoding")));
    h.insert("x-mock-cache-breakpoints", echo(Some(header_str(req_h, "x-mock-internal-breakpoints").unwrap_or("0"))));
    h.insert("x-mock-tollgate-headers", echo(Some(
        &req_h.keys().filter(|k| k.as_str().starts_with("x-tollgate")).map(|k| k.as_str()).collect::<Vec<_>>().join(","),
    )));
}

/// The mock's OpenAI key belongs to organization `org-mock`, project
/// `proj_mock`: a request naming another in `OpenAI-Organization` /
/// `OpenAI-Project` is refused as api.openai.com refuses it (401
/// "OpenAI-Organization header should match organization for API key",
/// `code` `mismatched_organization`: real response bodies in
/// microsoft/foundry-dev-tools#262 and Realiserad/fish-ai#62; the project
/// header the same way). A client's own headers reaching the provider
/// beside the gateway's key fail so.
fn foreign_organization(h: &HeaderMap) -> Option<(&'static str, &'static str)> {
    if header_str(h, "openai-organization").is_some_and(|o| o != "org-mock") {
        return Some(("OpenAI-Organization header should match organization for API key", "mismatched_organization"));
    }
    if header_str(h, "openai-project").is_some_and(|p| p != "proj_mock") {
        return Some(("OpenAI-Project header should match project for API key", "mismatched_project"));
    }
    None
}

fn check_key(app: &App, dialect: Dialect, h: &HeaderMap) -> Result<(), String> {
    let presented = match dialect {
        Dialect::Anthropic => header_str(h, "x-api-key").map(str::to_string),
        _ => header_str(h, "authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::to_string),
    };
    let expected = match dialect {
        Dialect::OpenAi => &app.keys.openai,
        Dialect::DeepSeek => &app.keys.deepseek,
        Dialect::Anthropic => &app.keys.anthropic,
    };
    match (presented, expected) {
        (None, _) => Err(match dialect {
            Dialect::Anthropic => "x-api-key header is required".into(),
            _ => "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth.".into(),
        }),
        (Some(p), _) if p.is_empty() => Err("invalid x-api-key".into()),
        (Some(p), Some(e)) if &p != e => Err(match dialect {
            Dialect::Anthropic => "invalid x-api-key".into(),
            _ => "Incorrect API key provided.".into(),
        }),
        _ => Ok(()),
    }
}

async fn last_body(State(app): State<Arc<App>>) -> Response<Body> {
    let body = app.last_body.lock().map(|b| b.clone()).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn remember(app: &App, body: &Bytes) {
    if let Ok(mut b) = app.last_body.lock() {
        *b = body.clone();
    }
}

async fn chat(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let host = header_str(&h, "host").unwrap_or("");
    let req: Result<Value, _> = serde_json::from_slice(&body);
    let model = req.as_ref().ok().and_then(|r| r.get("model")).and_then(Value::as_str).unwrap_or("").to_string();
    let dialect = if host.contains("deepseek") || model.starts_with("deepseek") { Dialect::DeepSeek } else { Dialect::OpenAi };
    handle(app, dialect, uri, h, req, model).await
}

/// An OpenAI-format error answer.
fn openai_error(h: &HeaderMap, uri: &Uri, status: u16, msg: &str, param: Option<&str>, code: Option<&str>) -> Response<Body> {
    let body = error_body_with(Dialect::OpenAi, status, msg, param, code);
    respond(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), h, uri, body, "application/json")
}

/// A recorded answer when the test asks for one (`x-mock-replay`): `None` when it does not.
fn replayed(app: &App, h: &HeaderMap, uri: &Uri) -> Option<Result<Response<Body>, ()>> {
    let name = header_str(h, "x-mock-replay")?;
    let Some((bytes, ctype)) = hostile::replay(&app.captures, name) else { return Some(Err(())) };
    let chunk = header_u64(h, "x-mock-chunk-bytes").unwrap_or(bytes.len() as u64 + 1) as usize;
    let mut r = Response::new(hostile::chunked(bytes, chunk));
    decorate(r.headers_mut(), h, uri, ctype);
    Some(Ok(r))
}

/// What every OpenAI-format endpoint checks first: the key, a requested
/// error status, a JSON object body, a requested replay. `Err`: the answer.
fn openai_prelude(app: &App, uri: &Uri, h: &HeaderMap, body: &Bytes) -> Result<serde_json::Map<String, Value>, Box<Response<Body>>> {
    openai_checks(app, uri, h)?;
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new(openai_error(h, uri, 400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)", None, None)));
    };
    Ok(m)
}

/// The key, a requested error status, a requested replay: what every
/// OpenAI-format endpoint checks before it reads the body.
fn openai_checks(app: &App, uri: &Uri, h: &HeaderMap) -> Result<(), Box<Response<Body>>> {
    let err = |status: u16, msg: &str| Box::new(openai_error(h, uri, status, msg, None, None));
    if let Err(m) = check_key(app, Dialect::OpenAi, h) {
        return Err(err(401, &m));
    }
    if let Some((msg, code)) = foreign_organization(h) {
        return Err(Box::new(openai_error(h, uri, 401, msg, None, Some(code))));
    }
    if let Some(s) = header_u64(h, "x-mock-status") {
        return Err(err(s as u16, "Mock error requested by x-mock-status."));
    }
    match replayed(app, h, uri) {
        Some(Ok(r)) => Err(Box::new(r)),
        Some(Err(())) => Err(err(404, "x-mock-replay: no such capture")),
        None => Ok(()),
    }
}

async fn complete(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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

async fn gemini_native(State(app): State<Arc<App>>, axum::extract::Path(rest): axum::extract::Path<String>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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

async fn gemini_compat(State(app): State<Arc<App>>, uri: Uri, mut h: HeaderMap, body: Bytes) -> Response<Body> {
    match gemini_compat_key(&app, &uri, &mut h) {
        Ok(()) => chat(State(app), uri, h, body).await,
        Err(r) => *r,
    }
}

async fn gemini_compat_embed(State(app): State<Arc<App>>, uri: Uri, mut h: HeaderMap, body: Bytes) -> Response<Body> {
    match gemini_compat_key(&app, &uri, &mut h) {
        Ok(()) => embed(State(app), uri, h, body).await,
        Err(r) => *r,
    }
}

async fn count_input_tokens(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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
async fn compact_responses(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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
fn billed_json(app: &App, h: &HeaderMap, uri: &Uri, made: Result<(Value, u64, u64), responses::Refusal>) -> Response<Body> {
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

async fn respond_api(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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

async fn embed(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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
async fn moderate(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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
async fn decide(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    remember(&app, &body);
    let m = match openai_prelude(&app, &uri, &h, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    billed_json(&app, &h, &uri, decisions::answer(&m, header_u64(&h, "x-mock-cached-tokens").unwrap_or(0)))
}

/// OpenAI's image generations (images.rs): `x-mock-image-bytes` sets the
/// length of each image's base64 (a real image is megabytes).
async fn generate_images(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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
async fn edit_images(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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
async fn transcribe(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    hear(app, transcriptions::Task::Transcribe, uri, h, body).await
}

/// OpenAI's translations (transcriptions.rs): `whisper-1`, English text.
async fn translate(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
    hear(app, transcriptions::Task::Translate, uri, h, body).await
}

async fn hear(app: Arc<App>, task: transcriptions::Task, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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
async fn speak(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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
async fn serve_images(app: Arc<App>, uri: Uri, h: HeaderMap, plan: images::Plan) -> Response<Body> {
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

async fn messages(State(app): State<Arc<App>>, uri: Uri, mut h: HeaderMap, body: Bytes) -> Response<Body> {
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
async fn count_message_tokens(State(app): State<Arc<App>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response<Body> {
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

async fn handle(
    app: Arc<App>,
    dialect: Dialect,
    uri: Uri,
    h: HeaderMap,
    req: Result<Value, serde_json::Error>,
    model: String,
) -> Response<Body> {
    let err = |status: u16, msg: &str| {
        let mut r = respond(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &h,
            &uri,
            error_body(dialect, status, msg),
            "application/json",
        );
        if status == 429 {
            r.headers_mut().insert("retry-after", HeaderValue::from_static("2"));
            r.headers_mut().insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
        }
        r
    };
    if let Some(ms) = header_u64(&h, "x-mock-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Err(m) = check_key(&app, dialect, &h) {
        return err(401, &m);
    }
    if let Some((msg, code)) = foreign_organization(&h).filter(|_| dialect == Dialect::OpenAi) {
        return openai_error(&h, &uri, 401, msg, None, Some(code));
    }
    if dialect == Dialect::Anthropic && header_str(&h, "anthropic-version").is_none() {
        return err(400, "anthropic-version: header is required");
    }
    if let Some(s) = header_u64(&h, "x-mock-status") {
        let msg = match s {
            429 => "Rate limit reached for requests. Please try again in 2s.",
            529 => "Overloaded",
            500 => "The server had an error while processing your request. Sorry about that!",
            503 => "The engine is currently overloaded, please try again later.",
            _ => "Mock error requested by x-mock-status.",
        };
        return err(s as u16, msg);
    }
    let req = match req {
        Ok(Value::Object(m)) => Value::Object(m),
        Ok(_) | Err(_) => {
            return err(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)")
        }
    };
    if let Value::Object(m) = &req {
        if let Err(r) = strict::check(dialect, m, header_str(&h, "anthropic-beta")) {
            let body = error_body_with(dialect, r.status, &r.message, r.param.as_deref(), r.code);
            return respond(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST), &h, &uri, body, "application/json");
        }
    }
    if model.is_empty() {
        return err(400, "you must provide a model parameter");
    }
    match replayed(&app, &h, &uri) {
        Some(Ok(r)) => return r,
        Some(Err(())) => return err(404, "x-mock-replay: no such capture"),
        None => {}
    }
    if req.get("messages").and_then(Value::as_array).is_none() {
        return err(400, "messages: Field required");
    }
    // The cap the provider honours: OpenAI's newer member when both are
    // given; DeepSeek only `max_tokens` (it ignores `max_completion_tokens`,
    // strict.rs cites the measurement).
    let cap_of = |name: &str| req.get(name).and_then(Value::as_u64);
    let max_tokens = match dialect {
        Dialect::OpenAi => cap_of("max_completion_tokens").or_else(|| cap_of("max_tokens")),
        Dialect::DeepSeek | Dialect::Anthropic => cap_of("max_tokens"),
    };
    let choices = if dialect == Dialect::Anthropic { 1 } else { req.get("n").and_then(Value::as_u64).unwrap_or(1).max(1) };
    if dialect == Dialect::Anthropic && max_tokens.is_none() {
        return err(400, "max_tokens: Field required");
    }
    let mut input = prompt_tokens(&req);
    if dialect == Dialect::Anthropic {
        match app.objects.anthropic_file_tokens(&req) {
            Ok(n) => input = input.saturating_add(n),
            Err((status, msg, _, _)) => return err(status, &msg),
        }
    }
    let last_text = {
        let mut last = String::new();
        if let Some(c) = req.get("messages").and_then(Value::as_array).and_then(|m| m.last()).and_then(|m| m.get("content")) {
            content_text(c, &mut last);
        }
        last
    };
    let task = tasks::answer(&model, &last_text, tasks::wants_json(&req));
    let echo = match (header_str(&h, "x-mock-echo"), header_str(&h, "x-mock-say")) {
        (_, Some(say)) => Some(echo_pieces(say)),
        _ if task.is_some() => task.as_deref().map(echo_pieces),
        (Some("1"), None) => Some(echo_pieces(&last_text)),
        _ => None,
    };
    let wanted = match &echo {
        Some(p) => p.len() as u64,
        None => header_u64(&h, "x-mock-output-tokens").unwrap_or(12),
    };
    let reasoning = header_u64(&h, "x-mock-reasoning-tokens").unwrap_or(0);
    let cap = max_tokens.unwrap_or(u64::MAX);
    let output = wanted.min(cap.saturating_sub(reasoning));
    let finish = if output < wanted { "length" } else { "stop" };
    // The prompt cache, as the provider keeps it (prefix_cache.rs), unless a test names the counts.
    let scope = format!("{model}\u{1}{}", header_str(&h, "authorization").or_else(|| header_str(&h, "x-api-key")).unwrap_or(""));
    let (text, ends) = prefix_cache::prompt_text(&req);
    let (cache_read, cache_written) = match dialect {
        Dialect::Anthropic => app.cache.anthropic(&scope, &text, &ends),
        _ => (app.cache.openai(&scope, &text), 0),
    };
    // A test naming either count names both (the other is 0).
    let (cached, cache_write) = match (header_u64(&h, "x-mock-cached-tokens"), header_u64(&h, "x-mock-cache-write-tokens")) {
        (None, None) => (cache_read.min(input), cache_written.min(input.saturating_sub(cache_read))),
        (c, w) => (c.unwrap_or(0), w.unwrap_or(0)),
    };
    let audio = match dialect {
        Dialect::OpenAi => match audio::plan(&req, &model, output, header_u64(&h, "x-mock-audio-output-tokens")) {
            Ok(a) => a,
            Err((msg, param)) => return openai_error(&h, &uri, 400, &msg, param, None),
        },
        _ => audio::Audio::default(),
    };
    let thinks = dialect == Dialect::DeepSeek && reasoning > 0 && req.as_object().is_some_and(strict::deepseek_thinks);
    let tool_call = match offered_tool(&req, &h) {
        Ok(t) => t,
        Err(why) => return err(400, &why),
    };
    let web_searches = match dialect {
        Dialect::Anthropic => strict::anthropic_searches(&req, header_u64(&h, "x-mock-web-searches")),
        _ => header_u64(&h, "x-mock-web-searches").unwrap_or(0),
    };
    // Anthropic's input_tokens leave out cache reads and writes; OpenAI's prompt_tokens include them (and audio).
    let first_input = if dialect == Dialect::Anthropic { input.saturating_sub(cached + cache_write).max(1) } else { input.max(cached) + audio.input };
    let server_loop = (dialect == Dialect::Anthropic)
        .then(|| {
            let (turn, results) = (header_u64(&h, "x-mock-search-turn-tokens").unwrap_or(20), header_u64(&h, "x-mock-search-result-tokens").unwrap_or(0));
            server_loop::run(first_input, web_searches, cap, turn, results)
        })
        .flatten();
    let plan = Plan {
        diagnostics: None,
        tool_call,
        reasoning_text: thinks.then_some("The user wants an answer; let me think it through."),
        dialect,
        model,
        stream: req.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: req.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false),
        include_obfuscation: dialect == Dialect::OpenAi && obfuscation_asked(req.get("stream_options")),
        input: server_loop.map_or(first_input, |l| l.input),
        cached,
        cache_write,
        output,
        reasoning,
        finish,
        delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(header_u64(&h, "x-mock-chunk-delay-ms").unwrap_or(0)),
        cut_after: header_u64(&h, "x-mock-cut-after"),
        choices,
        cache_write_1h: header_u64(&h, "x-mock-cache-write-1h-tokens").unwrap_or(0),
        compaction: header_str(&h, "x-mock-compaction-tokens")
            .and_then(|v| v.split_once(','))
            .and_then(|(i, o)| Some((i.trim().parse().ok()?, o.trim().parse().ok()?)))
            .filter(|_| dialect == Dialect::Anthropic && strict::asks_compaction(&req)),
        advisor: match req.as_object().map(|m| strict::advisor(m, header_str(&h, "anthropic-beta").unwrap_or(""))) {
            Some(Ok(Some((advisor, max_uses)))) if dialect == Dialect::Anthropic => {
                let each = header_str(&h, "x-mock-advisor-tokens")
                    .and_then(|v| v.split_once(','))
                    .and_then(|(i, o)| Some((i.trim().parse().ok()?, o.trim().parse().ok()?)))
                    .unwrap_or((input, 600));
                let calls = header_u64(&h, "x-mock-advisor-calls").unwrap_or(1).min(max_uses.unwrap_or(u64::MAX)).min(16);
                Some((advisor, vec![each; calls as usize])).filter(|(_, c)| !c.is_empty())
            }
            _ => None,
        },
        web_searches,
        server_loop,
        usage_output: header_u64(&h, "x-mock-usage-output"),
        endless_event: header_u64(&h, "x-mock-endless-event"),
        echo,
        audio,
        service_tier: served_tier(req.get("service_tier").and_then(Value::as_str), &h),
        speed: match header_str(&h, "x-mock-served-speed").or(req.get("speed").and_then(Value::as_str)) {
            Some("fast") => Some("fast"),
            Some(_) => Some("standard"),
            None => None,
        },
        inference_geo: match header_str(&h, "x-mock-served-geo").or(req.get("inference_geo").and_then(Value::as_str)) {
            Some("us") => Some("us"),
            Some(_) => Some("global"),
            None => None,
        },
    };
    let mut plan = plan;
    // A Host starting `huge.` asks for a 40 MiB answer: for calls whose
    // headers the client does not choose (a fallback's).
    let huge = header_str(&h, "host").is_some_and(|v| v.starts_with("huge.")).then_some(40 << 20);
    if let Some(n) = header_u64(&h, "x-mock-model-bytes").or(huge) {
        plan.model = "m".repeat(n.min(64 << 20) as usize);
    }
    let _ = plan.delay;
    let n = app.seq.fetch_add(1, Ordering::Relaxed);
    if let (Dialect::Anthropic, Some(m)) = (dialect, req.as_object()) {
        plan.diagnostics = app.diagnosed.diagnose(&format!("msg_mock{n:020}"), m);
    }
    if plan.cut_after.is_none() {
        app.served_requests.fetch_add(1, Ordering::SeqCst);
        app.served_input.fetch_add(plan.input, Ordering::SeqCst);
        app.served_output.fetch_add(completion_tokens(&plan), Ordering::SeqCst);
    }
    if dialect == Dialect::OpenAi && req.get("store") == Some(&Value::Bool(true)) {
        app.objects.keep_chat(chat_object(&plan, n, &plan.pieces().concat()), &req);
    }
    let r = if let Some(bytes) = plan.endless_event {
        let mut r = Response::new(hostile::endless_event(bytes));
        decorate(r.headers_mut(), &h, &uri, "text/event-stream; charset=utf-8");
        r
    } else if plan.stream {
        stream_response(plan, n, &h, &uri)
    } else {
        json_response(plan, n, &h, &uri)
    };
    hostile::misbehave(r, &h).await
}

/// Output tokens billed: every choice's, reasoning included (or what a lying
/// provider reports).
fn completion_tokens(p: &Plan) -> u64 {
    p.usage_output.unwrap_or((p.output + p.reasoning + p.audio.output).saturating_mul(p.choices) + loop_output(p))
}

/// What the searching calls of Anthropic's server tool loop wrote.
fn loop_output(p: &Plan) -> u64 {
    p.server_loop.map_or(0, |l| l.output)
}

fn openai_usage(p: &Plan) -> Value {
    let completion = completion_tokens(p);
    match p.dialect {
        Dialect::DeepSeek => json!({
            "prompt_tokens": p.input, "completion_tokens": completion, "total_tokens": p.input + completion,
            "prompt_tokens_details": {"cached_tokens": p.cached},
            "completion_tokens_details": {"reasoning_tokens": p.reasoning},
            "prompt_cache_hit_tokens": p.cached, "prompt_cache_miss_tokens": p.input - p.cached.min(p.input)
        }),
        _ => json!({
            "prompt_tokens": p.input, "completion_tokens": completion, "total_tokens": p.input + completion,
            "prompt_tokens_details": if p.cache_write > 0 {
                // GPT-5.6 and later report cache writes.
                json!({"cached_tokens": p.cached, "cache_write_tokens": p.cache_write, "audio_tokens": p.audio.input})
            } else {
                json!({"cached_tokens": p.cached, "audio_tokens": p.audio.input})
            },
            "completion_tokens_details": {"reasoning_tokens": p.reasoning, "audio_tokens": p.audio.output * p.choices,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        }),
    }
}

/// The `iterations` of an answer whose context was compacted or whose
/// advisor was consulted: the compaction pass (its tokens not in the
/// top-level counts), then the messages, whose tokens the top level sums,
/// with the advisor's calls between them (each `advisor_message` with its
/// model, also not in the top-level counts): anthropic-sdk-python
/// `types/beta/beta_iterations_usage.py`, the shape of a real record in
/// ccusage/ccusage#1115.
fn iterations(p: &Plan, output: u64) -> Option<Value> {
    if p.compaction.is_none() && p.advisor.is_none() {
        return None;
    }
    let mut it = Vec::new();
    if let Some((input, out)) = p.compaction {
        it.push(json!({"type": "compaction", "input_tokens": input, "output_tokens": out, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}));
    }
    let message = |input: u64, output: u64, read: u64, write: u64| {
        json!({"type": "message", "input_tokens": input, "output_tokens": output, "cache_read_input_tokens": read, "cache_creation_input_tokens": write})
    };
    match &p.advisor {
        None => it.push(message(p.input, output, p.cached, p.cache_write)),
        Some((model, calls)) => {
            // The executor asks for advice, then answers: its tokens split across the two.
            let asked = output.min(5);
            it.push(message(p.input, asked, p.cached, p.cache_write));
            for (input, out) in calls {
                it.push(json!({"type": "advisor_message", "model": model, "input_tokens": input, "output_tokens": out,
                               "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}));
            }
            it.push(message(0, output - asked, 0, 0));
        }
    }
    Some(Value::Array(it))
}

/// The advisor's blocks before the answer's text: a `server_tool_use`
/// (name `advisor`, empty input: "the executor only decides the timing")
/// and its `advisor_tool_result`, per call.
fn advisor_blocks(p: &Plan, n: u64) -> Vec<Value> {
    let Some((_, calls)) = &p.advisor else { return Vec::new() };
    (0..calls.len())
        .flat_map(|i| {
            let id = format!("srvtoolu_mock{n:012}{i:04}");
            [json!({"type": "server_tool_use", "id": id, "name": "advisor", "input": {}}),
             json!({"type": "advisor_tool_result", "tool_use_id": id,
                    "content": {"type": "advisor_result", "text": "Plan: check the inputs first, then answer briefly.", "stop_reason": "end_turn"}})]
        })
        .collect()
}

fn anthropic_usage_with_iterations(p: &Plan) -> Value {
    let mut u = anthropic_usage(p, p.output + p.reasoning + loop_output(p));
    if let Some(it) = iterations(p, p.usage_output.unwrap_or(p.output)) {
        u["iterations"] = it;
    }
    u
}

fn anthropic_usage(p: &Plan, output: u64) -> Value {
    let output = p.usage_output.unwrap_or(output);
    let mut u = json!({"input_tokens": p.input, "cache_creation_input_tokens": p.cache_write,
           "cache_read_input_tokens": p.cached, "output_tokens": output,
           "cache_creation": {"ephemeral_5m_input_tokens": p.cache_write - p.cache_write_1h.min(p.cache_write),
                              "ephemeral_1h_input_tokens": p.cache_write_1h.min(p.cache_write)},
           "output_tokens_details": {"thinking_tokens": p.reasoning.min(output)}});
    if p.web_searches > 0 {
        u["server_tool_use"] = json!({"web_search_requests": p.web_searches});
    }
    if let Some(geo) = p.inference_geo {
        u["inference_geo"] = json!(geo);
    }
    if let Some(speed) = p.speed {
        u["speed"] = json!(speed);
    }
    u
}

/// A stream's `message_start` usage: the first call's input, one output
/// token (the totals come in `message_delta`).
fn first_call_usage(p: &Plan) -> Value {
    let mut u = anthropic_usage(p, 1);
    u["output_tokens_details"] = json!({"thinking_tokens": 0});
    if let Some(l) = p.server_loop {
        u["input_tokens"] = json!(l.first_input);
        if let Some(m) = u.as_object_mut() {
            m.remove("server_tool_use");
        }
    }
    u
}

/// The tier an OpenAI answer says served it (`service_tier`): as asked
/// (`fast` is reported as `priority`; `auto`, `default`, `scale` and none
/// as `default`), unless `x-mock-served-tier` says otherwise: the
/// project's default tier serving `auto`, or Fast mode falling back to
/// standard under a surge, as api.openai.com answers (developers.openai.com/
/// api/docs/guides/fast-mode).
fn served_tier(asked: Option<&str>, h: &HeaderMap) -> &'static str {
    match header_str(h, "x-mock-served-tier").or(asked) {
        Some("priority" | "fast") => "priority",
        Some("ultrafast") => "ultrafast",
        Some("flex") => "flex",
        _ => "default",
    }
}

/// DeepSeek has no tiers: its answers carry no `service_tier` (the
/// "Your first API call" example, api-docs.deepseek.com; tests/captures/
/// deepseek_chat_blank_lines.json).
fn without_tier_for_deepseek(mut v: Value, dialect: Dialect) -> Value {
    if let (Dialect::DeepSeek, Some(o)) = (dialect, v.as_object_mut()) {
        o.remove("service_tier");
    }
    v
}

/// Why an Anthropic answer stopped: its cap, a tool call, or its end.
fn anthropic_stop(p: &Plan) -> &'static str {
    match (p.finish, &p.tool_call) {
        // The loop's ten calls ran out before the searches did.
        _ if p.web_searches >= server_loop::LIMIT && p.server_loop.is_some() => "pause_turn",
        ("length", _) => "max_tokens",
        (_, Some(_)) => "tool_use",
        _ => "end_turn",
    }
}

/// Why a chat answer stopped: its cap, a tool call, or its end.
fn chat_finish(p: &Plan) -> &'static str {
    match (p.finish, &p.tool_call) {
        ("length", _) => "length",
        (_, Some(_)) => "tool_calls",
        (f, None) => f,
    }
}

/// A chat completion as the API answers it (and keeps it, `store: true`).
fn chat_object(p: &Plan, n: u64, text: &str) -> Value {
    json!({
        "id": format!("chatcmpl-mock{n:020}"), "object": "chat.completion", "created": 1_767_225_600u64 + n,
        "model": p.model,
        "choices": (0..p.choices).map(|i| {
            let mut message = json!({"role": "assistant", "content": text, "refusal": null, "annotations": []});
            if p.audio.output > 0 {
                // A spoken answer: its text is the audio's transcript.
                message["audio"] = audio::message(text, n);
                message["content"] = Value::Null;
            }
            if let Some(r) = p.reasoning_text {
                message["reasoning_content"] = json!(r);
            }
            if let Some(name) = &p.tool_call {
                message["tool_calls"] = json!([{"id": format!("call_mock{n:020}"), "type": "function", "function": {"name": name, "arguments": "{}"}}]);
            }
            json!({"index": i, "message": message, "logprobs": null, "finish_reason": chat_finish(p)})
        }).collect::<Vec<_>>(),
        "usage": openai_usage(p), "service_tier": p.service_tier, "system_fingerprint": "fp_mock"
    })
}

fn json_response(p: Plan, n: u64, h: &HeaderMap, uri: &Uri) -> Response<Body> {
    let text: String = p.pieces().concat();
    let body: Value = match p.dialect {
        Dialect::Anthropic => json!({
            "id": format!("msg_mock{n:020}"), "type": "message", "role": "assistant", "model": p.model,
            "content": advisor_blocks(&p, n).into_iter().chain([json!({"type": "text", "text": text})]).chain(
                p.tool_call.as_ref().map(|name| json!({"type": "tool_use", "id": format!("toolu_mock{n:020}"), "name": name, "input": {}}))).collect::<Vec<_>>(),
            "stop_reason": anthropic_stop(&p), "stop_sequence": null, "stop_details": null,
            "usage": anthropic_usage_with_iterations(&p)
        }),
        _ => chat_object(&p, n, &text),
    };
    let mut body = body;
    if let (Some(d), Some(m)) = (&p.diagnostics, body.as_object_mut()) {
        m.insert("diagnostics".into(), d.clone());
    }
    let body = without_tier_for_deepseek(body, p.dialect).to_string();
    let mut resp = if let Some(_cut) = p.cut_after {
        // Half the body, then the connection drops.
        let half = Bytes::from(body.into_bytes());
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        tokio::spawn(async move {
            let _ = tx.send(Ok(half.slice(..half.len() / 2))).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(Err(std::io::Error::other("mock cut"))).await;
        });
        let mut r = Response::new(Body::from_stream(ReceiverStream::new(rx)));
        decorate(r.headers_mut(), h, uri, "application/json");
        r
    } else {
        respond(StatusCode::OK, h, uri, body, "application/json")
    };
    add_common(resp.headers_mut(), &p, n);
    resp
}

fn add_common(h: &mut HeaderMap, p: &Plan, n: u64) {
    let shown = p.model.get(..p.model.len().min(256)).unwrap_or("");
    h.insert("x-mock-model", HeaderValue::from_str(shown).unwrap_or(HeaderValue::from_static("")));
    match p.dialect {
        Dialect::Anthropic => {
            h.insert("request-id", HeaderValue::from_str(&format!("req_mock{n}")).unwrap_or(HeaderValue::from_static("")));
        }
        _ => {
            h.insert("x-ratelimit-limit-requests", HeaderValue::from_static("10000"));
            h.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("9999"));
            h.insert("openai-processing-ms", HeaderValue::from_static("1"));
        }
    }
}

/// Whether OpenAI stream events carry the `obfuscation` member: by
/// default, unless `stream_options.include_obfuscation` is false (OpenAI API
/// reference: ChatCompletionStreamOptions, ResponseStreamOptions).
pub fn obfuscation_asked(stream_options: Option<&Value>) -> bool {
    stream_options.and_then(|o| o.get("include_obfuscation")).and_then(Value::as_bool).unwrap_or(true)
}

/// Event `i`'s `obfuscation`: random characters padding the event's size in
/// the real API; here 1 to 15 of a fixed string, varying from event to event.
pub fn obfuscation_pad(i: u64) -> &'static str {
    const PAD: &str = "Zk3WuQNXpVAVIPi";
    PAD.get(..(i % 15 + 1) as usize).unwrap_or(PAD)
}

pub(crate) fn sse(name: Option<&str>, data: &str) -> Bytes {
    match name {
        Some(n) => Bytes::from(format!("event: {n}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

fn stream_events(p: &Plan, n: u64) -> Vec<Bytes> {
    let pieces = p.pieces();
    let mut ev = Vec::with_capacity(pieces.len() + 8);
    match p.dialect {
        Dialect::Anthropic => {
            let start = json!({"type": "message_start", "message": {
                "id": format!("msg_mock{n:020}"), "type": "message", "role": "assistant", "content": [], "model": p.model,
                "stop_reason": null, "stop_sequence": null, "usage": first_call_usage(p)}});
            let mut start = start;
            if let Some(d) = &p.diagnostics {
                start["message"]["diagnostics"] = d.clone();
            }
            ev.push(sse(Some("message_start"), &start.to_string()));
            // The advisor's blocks come whole, each started and stopped.
            let advised = advisor_blocks(p, n);
            for (i, b) in advised.iter().enumerate() {
                ev.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": i, "content_block": b}).to_string()));
                ev.push(sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": i}).to_string()));
            }
            let t = advised.len();
            ev.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": t, "content_block": {"type": "text", "text": ""}}).to_string()));
            ev.push(sse(Some("ping"), r#"{"type": "ping"}"#));
            for piece in pieces {
                let d = json!({"type": "content_block_delta", "index": t, "delta": {"type": "text_delta", "text": piece}});
                ev.push(sse(Some("content_block_delta"), &d.to_string()));
            }
            ev.push(sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": t}).to_string()));
            if let Some(name) = &p.tool_call {
                let block = json!({"type": "tool_use", "id": format!("toolu_mock{n:020}"), "name": name, "input": {}});
                ev.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": t + 1, "content_block": block}).to_string()));
                for partial in ["", "{}"] {
                    let d = json!({"type": "content_block_delta", "index": t + 1, "delta": {"type": "input_json_delta", "partial_json": partial}});
                    ev.push(sse(Some("content_block_delta"), &d.to_string()));
                }
                ev.push(sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": t + 1}).to_string()));
            }
            let stop = anthropic_stop(p);
            let output = p.usage_output.unwrap_or(p.output + p.reasoning + loop_output(p));
            let mut d = json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                           "usage": {"output_tokens": output, "output_tokens_details": {"thinking_tokens": p.reasoning.min(output)}}});
            if p.server_loop.is_some() {
                // After a server tool loop, the totals of every call (as the real stream's).
                d["usage"] = anthropic_usage(p, p.output + p.reasoning + loop_output(p));
            }
            if let Some(it) = iterations(p, p.usage_output.unwrap_or(p.output)) {
                d["usage"]["iterations"] = it;
            }
            ev.push(sse(Some("message_delta"), &d.to_string()));
            ev.push(sse(Some("message_stop"), r#"{"type":"message_stop"}"#));
        }
        _ => {
            let id = format!("chatcmpl-mock{n:020}");
            let created = 1_767_225_600u64 + n;
            let mut k = 0u64;
            let mut obfuscate = |c: &mut Value| {
                if p.include_obfuscation {
                    k += 1;
                    c["obfuscation"] = json!(obfuscation_pad(n + 7 * k));
                }
            };
            // `usage`: null on every chunk but the last (when asked), the
            // counts on the last, which has no choices.
            let mut chunk_with = |choices: Value, usage: Option<Value>| {
                let c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": p.model,
                                   "service_tier": p.service_tier, "system_fingerprint": "fp_mock", "choices": choices});
                let mut c = without_tier_for_deepseek(c, p.dialect);
                if p.include_usage {
                    c["usage"] = usage.unwrap_or(Value::Null);
                }
                obfuscate(&mut c);
                sse(None, &c.to_string())
            };
            let mut chunk = |choices: Value| chunk_with(choices, None);
            ev.push(chunk(json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}])));
            if let Some(r) = p.reasoning_text {
                ev.push(chunk(json!([{"index": 0, "delta": {"content": null, "reasoning_content": r}, "logprobs": null, "finish_reason": null}])));
            }
            for piece in pieces {
                ev.push(chunk(json!([{"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}])));
            }
            if let Some(name) = &p.tool_call {
                let call = json!({"index": 0, "id": format!("call_mock{n:020}"), "type": "function", "function": {"name": name, "arguments": ""}});
                ev.push(chunk(json!([{"index": 0, "delta": {"tool_calls": [call]}, "logprobs": null, "finish_reason": null}])));
                let args = json!({"index": 0, "function": {"arguments": "{}"}});
                ev.push(chunk(json!([{"index": 0, "delta": {"tool_calls": [args]}, "logprobs": null, "finish_reason": null}])));
            }
            ev.push(chunk(json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": chat_finish(p)}])));
            if p.include_usage {
                ev.push(chunk_with(json!([]), Some(openai_usage(p))));
            }
            ev.push(Bytes::from_static(b"data: [DONE]\n\n"));
        }
    }
    ev
}

fn stream_response(p: Plan, n: u64, h: &HeaderMap, uri: &Uri) -> Response<Body> {
    let mut r = Response::new(paced(stream_events(&p, n), p.chunk_delay, p.cut_after));
    decorate(r.headers_mut(), h, uri, "text/event-stream; charset=utf-8");
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    add_common(r.headers_mut(), &p, n);
    r
}

/// A 200 whose body comes in `chunks` as the request's headers pace and
/// cut them (`x-mock-chunk-delay-ms`, `x-mock-cut-after`), misbehaving as
/// they ask (hostile.rs).
pub(crate) async fn paced_answer(chunks: Vec<Bytes>, h: &HeaderMap, uri: &Uri, ctype: &str) -> Response<Body> {
    let pace = Duration::from_millis(header_u64(h, "x-mock-chunk-delay-ms").unwrap_or(0));
    let mut r = Response::new(paced(chunks, pace, header_u64(h, "x-mock-cut-after")));
    decorate(r.headers_mut(), h, uri, ctype);
    hostile::misbehave(r, h).await
}

/// A stream's events, `chunk_delay` apart (`x-mock-chunk-delay-ms`), the
/// connection dropped after `cut_after` of them (`x-mock-cut-after`).
fn paced(events: Vec<Bytes>, chunk_delay: Duration, cut_after: Option<u64>) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        for (i, e) in events.into_iter().enumerate() {
            if cut_after.is_some_and(|c| i as u64 >= c) {
                // Give the proxy time to forward what was sent, then drop the connection.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = tx.send(Err(std::io::Error::other("mock cut"))).await;
                return;
            }
            if i > 0 && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            if tx.send(Ok(e)).await.is_err() {
                return; // client went away
            }
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}
