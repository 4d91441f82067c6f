//! The chat handler both formats share (OpenAI chat and completions,
//! Anthropic messages, DeepSeek): the request checked as strictly as the
//! provider would, the answer planned ([`crate::Plan`]: tokens, cache,
//! reasoning, tools, faults asked by `x-mock-*` headers), then written by
//! [`crate::answer`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use serde_json::Value;

use crate::answer::{chat_object, completion_tokens, json_response, obfuscation_asked, served_tier, stream_response};
use crate::{
    audio, check_key, content_text, decorate, echo_pieces, error_body, error_body_with, foreign_organization, header_str, header_u64,
    hostile, offered_tool, openai_error, prefix_cache, prompt_tokens, replayed, respond, server_loop, strict, tasks, App, Dialect, Plan,
};

type Refused = Box<Response<Body>>;

pub(crate) async fn handle(
    app: Arc<App>,
    dialect: Dialect,
    uri: Uri,
    h: HeaderMap,
    req: Result<Value, serde_json::Error>,
    model: String,
) -> Response<Body> {
    if let Some(ms) = header_u64(&h, "x-mock-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let ask = Ask { app: &app, dialect, uri: &uri, h: &h };
    let req = match ask.admitted(req, &model) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let mut plan = match ask.plan(&req, model) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    // A Host starting `huge.` asks for a 40 MiB answer: for calls whose
    // headers the client does not choose (a fallback's).
    let huge = header_str(&h, "host").is_some_and(|v| v.starts_with("huge.")).then_some(40 << 20);
    if let Some(n) = header_u64(&h, "x-mock-model-bytes").or(huge) {
        plan.model = "m".repeat(n.min(64 << 20) as usize);
    }
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

/// One chat request as the mock reads it.
struct Ask<'a> {
    app: &'a App,
    dialect: Dialect,
    uri: &'a Uri,
    h: &'a HeaderMap,
}

impl Ask<'_> {
    /// An error in the provider's format (a 429 with its retry headers).
    fn error(&self, status: u16, msg: &str) -> Refused {
        let mut r = respond(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            self.h,
            self.uri,
            error_body(self.dialect, status, msg),
            "application/json",
        );
        if status == 429 {
            r.headers_mut().insert("retry-after", HeaderValue::from_static("2"));
            r.headers_mut().insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
        }
        Box::new(r)
    }

    /// The request, or what the provider would answer instead: a wrong
    /// key or organization, a missing version, an error a test asks for
    /// (`x-mock-status`), a body the provider refuses (strict.rs), a
    /// recorded answer to replay.
    fn admitted(&self, req: Result<Value, serde_json::Error>, model: &str) -> Result<Value, Refused> {
        let (h, dialect) = (self.h, self.dialect);
        if let Err(m) = check_key(self.app, dialect, h) {
            return Err(self.error(401, &m));
        }
        if let Some((msg, code)) = foreign_organization(h).filter(|_| dialect == Dialect::OpenAi) {
            return Err(Box::new(openai_error(h, self.uri, 401, msg, None, Some(code))));
        }
        if dialect == Dialect::Anthropic && header_str(h, "anthropic-version").is_none() {
            return Err(self.error(400, "anthropic-version: header is required"));
        }
        if let Some(s) = header_u64(h, "x-mock-status") {
            let msg = match s {
                429 => "Rate limit reached for requests. Please try again in 2s.",
                529 => "Overloaded",
                500 => "The server had an error while processing your request. Sorry about that!",
                503 => "The engine is currently overloaded, please try again later.",
                _ => "Mock error requested by x-mock-status.",
            };
            return Err(self.error(s as u16, msg));
        }
        let Ok(Value::Object(m)) = req else {
            return Err(self.error(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"));
        };
        if let Err(r) = strict::check(dialect, &m, header_str(h, "anthropic-beta")) {
            let body = error_body_with(dialect, r.status, &r.message, r.param.as_deref(), r.code);
            return Err(Box::new(respond(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST), h, self.uri, body, "application/json")));
        }
        if model.is_empty() {
            return Err(self.error(400, "you must provide a model parameter"));
        }
        match replayed(self.app, h, self.uri) {
            Some(Ok(r)) => return Err(Box::new(r)),
            Some(Err(())) => return Err(self.error(404, "x-mock-replay: no such capture")),
            None => {}
        }
        if m.get("messages").and_then(Value::as_array).is_none() {
            return Err(self.error(400, "messages: Field required"));
        }
        Ok(Value::Object(m))
    }

    /// The answer to give: its tokens (capped as the provider caps them),
    /// the prompt cache's counts, reasoning, tools, server tools, and the
    /// faults and tiers the test asks for.
    fn plan(&self, req: &Value, model: String) -> Result<Plan, Refused> {
        let (h, dialect) = (self.h, self.dialect);
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
            return Err(self.error(400, "max_tokens: Field required"));
        }
        let mut input = prompt_tokens(req);
        if dialect == Dialect::Anthropic {
            match self.app.objects.anthropic_file_tokens(req) {
                Ok(n) => input = input.saturating_add(n),
                Err((status, msg, _, _)) => return Err(self.error(status, &msg)),
            }
        }
        let echo = self.echo(req, &model);
        let wanted = match &echo {
            Some(p) => p.len() as u64,
            None => header_u64(h, "x-mock-output-tokens").unwrap_or(12),
        };
        let reasoning = header_u64(h, "x-mock-reasoning-tokens").unwrap_or(0);
        let cap = max_tokens.unwrap_or(u64::MAX);
        let output = wanted.min(cap.saturating_sub(reasoning));
        let (cached, cache_write) = self.cache_counts(req, &model, input);
        let audio = match dialect {
            Dialect::OpenAi => audio::plan(req, &model, output, header_u64(h, "x-mock-audio-output-tokens"))
                .map_err(|(msg, param)| Box::new(openai_error(h, self.uri, 400, &msg, param, None)))?,
            _ => audio::Audio::default(),
        };
        let thinks = dialect == Dialect::DeepSeek && reasoning > 0 && req.as_object().is_some_and(strict::deepseek_thinks);
        let tool_call = offered_tool(req, h).map_err(|why| self.error(400, &why))?;
        let web_searches = match dialect {
            Dialect::Anthropic => strict::anthropic_searches(req, header_u64(h, "x-mock-web-searches")),
            _ => header_u64(h, "x-mock-web-searches").unwrap_or(0),
        };
        // Anthropic's input_tokens leave out cache reads and writes; OpenAI's prompt_tokens include them (and audio).
        let first_input = if dialect == Dialect::Anthropic { input.saturating_sub(cached + cache_write).max(1) } else { input.max(cached) + audio.input };
        let server_loop = (dialect == Dialect::Anthropic)
            .then(|| {
                let (turn, results) = (header_u64(h, "x-mock-search-turn-tokens").unwrap_or(20), header_u64(h, "x-mock-search-result-tokens").unwrap_or(0));
                server_loop::run(first_input, web_searches, cap, turn, results)
            })
            .flatten();
        Ok(Plan {
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
            finish: if output < wanted { "length" } else { "stop" },
            chunk_delay: Duration::from_millis(header_u64(h, "x-mock-chunk-delay-ms").unwrap_or(0)),
            cut_after: header_u64(h, "x-mock-cut-after"),
            choices,
            cache_write_1h: header_u64(h, "x-mock-cache-write-1h-tokens").unwrap_or(0),
            compaction: pair(h, "x-mock-compaction-tokens").filter(|_| dialect == Dialect::Anthropic && strict::asks_compaction(req)),
            advisor: self.advisor(req, input),
            web_searches,
            server_loop,
            usage_output: header_u64(h, "x-mock-usage-output"),
            endless_event: header_u64(h, "x-mock-endless-event"),
            echo,
            audio,
            service_tier: served_tier(req.get("service_tier").and_then(Value::as_str), h),
            speed: match header_str(h, "x-mock-served-speed").or(req.get("speed").and_then(Value::as_str)) {
                Some("fast") => Some("fast"),
                Some(_) => Some("standard"),
                None => None,
            },
            inference_geo: match header_str(h, "x-mock-served-geo").or(req.get("inference_geo").and_then(Value::as_str)) {
                Some("us") => Some("us"),
                Some(_) => Some("global"),
                None => None,
            },
        })
    }

    /// The text the model says, when it is not the default words: what a
    /// test says (`x-mock-say`), a task's answer (tasks.rs), or the last
    /// message echoed (`x-mock-echo: 1`).
    fn echo(&self, req: &Value, model: &str) -> Option<Vec<String>> {
        let mut last_text = String::new();
        if let Some(c) = req.get("messages").and_then(Value::as_array).and_then(|m| m.last()).and_then(|m| m.get("content")) {
            content_text(c, &mut last_text);
        }
        let task = tasks::answer(model, &last_text, tasks::wants_json(req));
        match (header_str(self.h, "x-mock-echo"), header_str(self.h, "x-mock-say")) {
            (_, Some(say)) => Some(echo_pieces(say)),
            _ if task.is_some() => task.as_deref().map(echo_pieces),
            (Some("1"), None) => Some(echo_pieces(&last_text)),
            _ => None,
        }
    }

    /// Cache reads and writes: as the provider's prompt cache keeps them
    /// (prefix_cache.rs), unless a test names the counts (naming either
    /// names both: the other is 0).
    fn cache_counts(&self, req: &Value, model: &str, input: u64) -> (u64, u64) {
        let h = self.h;
        let scope = format!("{model}\u{1}{}", header_str(h, "authorization").or_else(|| header_str(h, "x-api-key")).unwrap_or(""));
        let (text, ends) = prefix_cache::prompt_text(req);
        let (cache_read, cache_written) = match self.dialect {
            Dialect::Anthropic => self.app.cache.anthropic(&scope, &text, &ends),
            _ => (self.app.cache.openai(&scope, &text), 0),
        };
        match (header_u64(h, "x-mock-cached-tokens"), header_u64(h, "x-mock-cache-write-tokens")) {
            (None, None) => (cache_read.min(input), cache_written.min(input.saturating_sub(cache_read))),
            (c, w) => (c.unwrap_or(0), w.unwrap_or(0)),
        }
    }

    /// Anthropic's advisor tool, consulted: its model and each call's
    /// (input, output) tokens (`x-mock-advisor-tokens: IN,OUT`, by default
    /// the whole prompt and 600; `x-mock-advisor-calls: N`, at most the
    /// tool's `max_uses`).
    fn advisor(&self, req: &Value, input: u64) -> Option<(String, Vec<(u64, u64)>)> {
        if self.dialect != Dialect::Anthropic {
            return None;
        }
        let (advisor, max_uses) = strict::advisor(req.as_object()?, header_str(self.h, "anthropic-beta").unwrap_or("")).ok()??;
        let each = pair(self.h, "x-mock-advisor-tokens").unwrap_or((input, 600));
        let calls = header_u64(self.h, "x-mock-advisor-calls").unwrap_or(1).min(max_uses.unwrap_or(u64::MAX)).min(16);
        Some((advisor, vec![each; calls as usize])).filter(|(_, c)| !c.is_empty())
    }
}

/// A header of two counts, `A,B`.
fn pair(h: &HeaderMap, name: &str) -> Option<(u64, u64)> {
    let (a, b) = header_str(h, name)?.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}
