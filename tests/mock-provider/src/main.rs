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
use axum::http::{HeaderMap, Response, StatusCode, Uri};
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
mod routes;
mod wire;

use answer::{obfuscation_asked, obfuscation_pad, paced_answer, sse};
use gemini_routes::{gemini_compat, gemini_compat_embed, gemini_native};
use routes::{
    chat, compact_responses, complete, count_input_tokens, count_message_tokens, decide, edit_images, embed, generate_images, last_body, messages,
    moderate, respond_api, speak, transcribe, translate,
};
// (The modules answering each API use these as `crate::…`.)
use wire::{
    check_key, decorate, error_body, error_body_with, foreign_organization, header_str, header_u64, openai_checks, openai_error, remember, replayed,
    respond,
};

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
