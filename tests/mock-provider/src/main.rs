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

mod answer;
mod audio;
mod chat;
mod completions;
mod decisions;
mod embeddings;
mod form;
mod gemini;
mod gemini_embed;
mod gemini_routes;
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

use answer::{obfuscation_asked, obfuscation_pad, paced_answer, served_tier, sse};
use chat::handle;
use gemini_routes::{gemini_compat, gemini_compat_embed, gemini_native};

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
