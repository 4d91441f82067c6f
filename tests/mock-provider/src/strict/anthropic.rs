//! What api.anthropic.com refuses (sources: strict.rs): members it does
//! not know (or knows only in a beta), types, cache breakpoints, empty
//! messages and tool results, metadata, custom tools, the advisor tool;
//! and what a request asks of it (searches, compaction).

use serde_json::{Map, Value};

use super::{kind_ok, refuse, Kind, Refusal, TYPES};

pub(super) const ANTHROPIC_PARAMS: &[&str] = &[
    "model", "messages", "max_tokens", "cache_control", "container", "diagnostics", "inference_geo", "metadata", "output_config",
    "service_tier", "speed", "stop_sequences", "stream", "system", "temperature", "thinking", "tool_choice", "tools", "top_k", "top_p",
];
/// Accepted only with an `anthropic-beta` header.
pub(super) const ANTHROPIC_BETA_PARAMS: &[&str] = &["context_management", "mcp_servers", "output_format"];

pub(super) const COUNT_TOKENS_PARAMS: &[&str] =
    &["model", "messages", "cache_control", "output_config", "speed", "system", "thinking", "tool_choice", "tools"];
pub(super) const COUNT_TOKENS_BETA_PARAMS: &[&str] = &["context_management", "mcp_servers", "output_format"];

pub(super) fn anthropic_type_name(k: Kind) -> &'static str {
    match k {
        Kind::Str => "a valid string",
        Kind::Int => "a valid integer",
        Kind::Num => "a valid number",
        Kind::Bool => "a valid boolean",
        Kind::Obj => "a valid dictionary",
        Kind::Arr => "a valid list",
    }
}

/// The `cache_control` markers of an Anthropic request: on the request
/// itself, on tools, on system blocks and on message content blocks.
pub fn cache_breakpoints(req: &Map<String, Value>) -> Vec<&Value> {
    let mut out: Vec<&Value> = req.get("cache_control").into_iter().collect();
    fn blocks(v: Option<&Value>) -> impl Iterator<Item = &Value> {
        v.and_then(Value::as_array).into_iter().flatten()
    }
    for b in blocks(req.get("tools")).chain(blocks(req.get("system"))) {
        out.extend(b.get("cache_control"));
    }
    for m in blocks(req.get("messages")) {
        for b in blocks(m.get("content")) {
            out.extend(b.get("cache_control"));
        }
    }
    out
}

/// Anthropic's rules for `cache_control`: `{"type": "ephemeral"}` with an
/// optional `ttl` of 5m or 1h, at most 4 per request.
pub(super) fn check_cache_control(req: &Map<String, Value>) -> Result<(), Refusal> {
    let marks = cache_breakpoints(req);
    if marks.len() > 4 {
        return Err(refuse(400, format!("A maximum of 4 blocks with cache_control may be provided. Found {}.", marks.len()), None, None));
    }
    for m in marks {
        let Some(o) = m.as_object() else {
            return Err(refuse(400, "cache_control: Input should be a valid dictionary".into(), None, None));
        };
        if o.get("type").and_then(Value::as_str) != Some("ephemeral") {
            return Err(refuse(400, "cache_control.type: Input should be 'ephemeral'".into(), None, None));
        }
        if let Some(k) = o.keys().find(|k| !["type", "ttl"].contains(&k.as_str())) {
            return Err(refuse(400, format!("cache_control.{k}: Extra inputs are not permitted"), None, None));
        }
        if o.get("ttl").is_some_and(|t| !matches!(t.as_str(), Some("5m" | "1h"))) {
            return Err(refuse(400, "cache_control.ttl: Input should be '5m' or '1h'".into(), None, None));
        }
    }
    Ok(())
}

/// Anthropic's rule on tool results marked as errors (source in the module's notes).
pub(super) fn anthropic_error_results_not_empty(i: usize, blocks: &[Value]) -> Result<(), Refusal> {
    for (j, b) in blocks.iter().enumerate() {
        let empty = match b.get("content") {
            None | Some(Value::Null) => true,
            Some(Value::String(t)) => t.is_empty(),
            Some(Value::Array(parts)) => parts.is_empty(),
            Some(_) => false,
        };
        if b.get("type").and_then(Value::as_str) == Some("tool_result") && b.get("is_error").and_then(Value::as_bool) == Some(true) && empty {
            return Err(refuse(400, format!("messages.{i}.content.{j}.tool_result: content cannot be empty if `is_error` is true"), None, None));
        }
    }
    Ok(())
}

/// Anthropic's rules on empty messages (sources in the module's notes).
pub(super) fn anthropic_messages_not_empty(msgs: &[Value]) -> Result<(), Refusal> {
    let Some(last) = msgs.len().checked_sub(1) else {
        return Err(refuse(400, "messages: at least one message is required".into(), None, None));
    };
    for (i, m) in msgs.iter().enumerate() {
        if let Some(Value::Array(blocks)) = m.get("content") {
            anthropic_error_results_not_empty(i, blocks)?;
        }
        let final_assistant = i == last && m.get("role").and_then(Value::as_str) == Some("assistant");
        let empty = match m.get("content") {
            Some(Value::String(t)) => t.is_empty(),
            Some(Value::Array(blocks)) => {
                let text_empty = |b: &Value| b.get("type").and_then(Value::as_str) == Some("text") && b.get("text").and_then(Value::as_str) == Some("");
                if blocks.iter().any(text_empty) {
                    return Err(refuse(400, "messages: text content blocks must be non-empty".into(), None, None));
                }
                blocks.is_empty()
            }
            _ => false,
        };
        if empty && !final_assistant {
            return Err(refuse(
                400,
                format!("messages.{i}: all messages must have non-empty content except for the optional final assistant message"),
                None,
                None,
            ));
        }
    }
    Ok(())
}

/// Anthropic's checks of a body's members: known, typed, cache markers well placed.
pub(super) fn anthropic_members(req: &Map<String, Value>, params: &[&str], beta: &[&str]) -> Result<(), Refusal> {
    check_cache_control(req)?;
    if let Some(k) = req.keys().find(|k| !params.contains(&k.as_str()) && !beta.contains(&k.as_str())) {
        return Err(refuse(400, format!("{k}: Extra inputs are not permitted"), None, None));
    }
    for (name, kind) in TYPES {
        match req.get(*name) {
            Some(v) if !kind_ok(v, *kind) => return Err(refuse(400, format!("{name}: Input should be {}", anthropic_type_name(*kind)), None, None)),
            _ => {}
        }
    }
    anthropic_metadata(req)?;
    if req.get("diagnostics").is_some_and(|d| !d.is_object() && !d.is_null()) {
        return Err(refuse(400, format!("diagnostics: Input should be {}", anthropic_type_name(Kind::Obj)), None, None));
    }
    anthropic_custom_tools(req)
}

/// `metadata` holds `user_id` only, a string or null (the Messages API
/// reference: "user_id: an external identifier for the user"; anything
/// else is an extra input, refused as every unknown member is).
pub(super) fn anthropic_metadata(req: &Map<String, Value>) -> Result<(), Refusal> {
    let Some(Value::Object(m)) = req.get("metadata") else { return Ok(()) };
    if let Some(k) = m.keys().find(|k| *k != "user_id") {
        return Err(refuse(400, format!("metadata.{k}: Extra inputs are not permitted"), None, None));
    }
    match m.get("user_id") {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(_) => Err(refuse(400, "metadata.user_id: Input should be a valid string".into(), None, None)),
    }
}

/// A client tool (no `type`, or `custom`) needs a `name` of 1 to 128 of
/// `[a-zA-Z0-9_-]` and an `input_schema` object (the tool reference:
/// "name must match ^[a-zA-Z0-9_-]{1,128}$"; `input_schema` required).
pub(super) fn anthropic_custom_tools(req: &Map<String, Value>) -> Result<(), Refusal> {
    let Some(Value::Array(tools)) = req.get("tools") else { return Ok(()) };
    for (i, t) in tools.iter().enumerate() {
        let Some(t) = t.as_object() else { return Err(refuse(400, format!("tools.{i}: Input should be a valid dictionary"), None, None)) };
        if t.get("type").is_some_and(|ty| ty != "custom") {
            continue;
        }
        let name_ok = t.get("name").and_then(Value::as_str).is_some_and(|n| (1..=128).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        if !name_ok {
            return Err(refuse(400, format!("tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"), None, None));
        }
        if !t.get("input_schema").is_some_and(Value::is_object) {
            return Err(refuse(400, format!("tools.{i}.custom.input_schema: Field required"), None, None));
        }
    }
    Ok(())
}

/// Checks a token count's body as Anthropic would.
/// Claude models before Opus and Sonnet 4.6 (3.x, 4, 4.1, 4.5), which refuse `inference_geo`.
pub fn anthropic_before_4_6(model: &str) -> bool {
    model.starts_with("claude-3") || ["-4-5", "-4-1", "-4-2025", "-4-0"].iter().any(|v| model.contains(v))
}

/// The web searches an Anthropic answer runs (`x-mock-web-searches`):
/// only with a web search tool (`web_search_*`), and at most the tools'
/// `max_uses` ("limit the number of searches per request"; past it the
/// tool answers `max_uses_exceeded`: platform.claude.com, web search tool).
pub fn anthropic_searches(req: &Value, asked: Option<u64>) -> u64 {
    let tools = req.get("tools").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let is_search = |t: &&Value| t.get("type").and_then(Value::as_str).is_some_and(|k| k.starts_with("web_search_"));
    let searches: Vec<&Value> = tools.iter().filter(is_search).collect();
    if searches.is_empty() {
        return 0;
    }
    // None when one of them is unbounded
    let bound = searches.iter().try_fold(0u64, |n, t| t.get("max_uses").and_then(Value::as_u64).map(|m| n.saturating_add(m)));
    let asked = asked.unwrap_or(0);
    bound.map_or(asked, |b| asked.min(b))
}

pub fn check_count_tokens(req: &Map<String, Value>, beta: bool) -> Result<(), Refusal> {
    anthropic_members(req, COUNT_TOKENS_PARAMS, if beta { COUNT_TOKENS_BETA_PARAMS } else { &[] })?;
    for field in ["model", "messages"] {
        if !req.contains_key(field) {
            return Err(refuse(400, format!("{field}: Field required"), None, None));
        }
    }
    match req.get("messages").and_then(Value::as_array) {
        Some(msgs) => anthropic_messages_not_empty(msgs),
        None => Ok(()),
    }
}

/// Anthropic's Messages API.
pub(super) fn check_anthropic(req: &Map<String, Value>, beta: Option<&str>) -> Result<(), Refusal> {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("");
    if req.get("inference_geo").is_some_and(|g| !g.is_null()) && anthropic_before_4_6(model) {
        return Err(refuse(400, format!("inference_geo: not supported on {model}"), None, None));
    }
    anthropic_members(req, ANTHROPIC_PARAMS, if beta.is_some() { ANTHROPIC_BETA_PARAMS } else { &[] })?;
    match req.get("max_tokens").and_then(Value::as_i64) {
        None => return Err(refuse(400, "max_tokens: Field required".into(), None, None)),
        Some(n) if n < 1 => {
            return Err(refuse(400, "max_tokens: Input should be greater than or equal to 1".into(), None, None))
        }
        _ => {}
    }
    if let Some(msgs) = req.get("messages").and_then(Value::as_array) {
        anthropic_messages_not_empty(msgs)?;
    }
    crate::thinking::check_sampling(req)?;
    crate::thinking::check(req, beta.unwrap_or(""))?;
    advisor(req, beta.unwrap_or(""))?;
    Ok(())
}

/// Anthropic's advisor tool (platform.claude.com, "Advisor tool";
/// anthropic-sdk-python `types/beta/beta_advisor_tool_20260301_param.py`):
/// in beta, so only with the `advisor-tool-2026-03-01` beta header; `name`
/// must be `advisor`, `model` is required, the bounds are whole numbers
/// (`max_tokens` at least 1,024: the AI SDK's `@ai-sdk/anthropic` docs
/// "Minimum 1024"), and the advisor "must be at least as capable as the
/// executor": the documented pairs all take an Opus advisor (anything else
/// is "a 400 invalid_request_error naming the unsupported combination").
/// The advisor the request offers: its model, and how many calls it allows.
pub fn advisor(req: &Map<String, Value>, beta: &str) -> Result<Option<(String, Option<u64>)>, Refusal> {
    let tools = req.get("tools").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut found = None;
    for (i, t) in tools.iter().enumerate() {
        let Some(kind) = t.get("type").and_then(Value::as_str).filter(|k| k.starts_with("advisor_")) else { continue };
        let bad = |msg: String| Err(refuse(400, format!("tools.{i}.{kind}: {msg}"), None, None));
        if kind != "advisor_20260301" {
            return bad("Input tag does not match any of the expected tags".into());
        }
        if !beta.split(',').any(|b| b.trim() == "advisor-tool-2026-03-01") {
            return bad("The advisor tool requires the beta header 'advisor-tool-2026-03-01'.".into());
        }
        if t.get("name").and_then(Value::as_str) != Some("advisor") {
            return bad("name: Input should be 'advisor'".into());
        }
        let Some(model) = t.get("model").and_then(Value::as_str) else { return bad("model: Field required".into()) };
        for bound in ["max_uses", "max_tokens"] {
            if t.get(bound).is_some_and(|v| !v.is_null() && v.as_u64().is_none_or(|n| n < 1)) {
                return bad(format!("{bound}: Input should be a valid integer greater than or equal to 1"));
            }
        }
        if t.get("max_tokens").and_then(Value::as_u64).is_some_and(|n| n < 1024) {
            return bad("max_tokens: Input should be greater than or equal to 1024".into());
        }
        let executor = req.get("model").and_then(Value::as_str).unwrap_or("");
        if !model.starts_with("claude-opus-") {
            return bad(format!("The advisor model '{model}' cannot advise the executor model '{executor}': this combination is not supported."));
        }
        if found.is_some() {
            return bad("Tool names must be unique.".into());
        }
        found = Some((model.to_string(), t.get("max_uses").and_then(Value::as_u64)));
    }
    Ok(found)
}

/// Whether an Anthropic request asks for server-side compaction: a
/// `compact_*` edit in `context_management.edits` (platform.claude.com
/// compaction; the `compact_20260112` strategy).
pub fn asks_compaction(req: &Value) -> bool {
    req.get("context_management").and_then(|c| c.get("edits")).and_then(Value::as_array).into_iter().flatten()
        .any(|e| e.get("type").and_then(Value::as_str).is_some_and(|t| t.starts_with("compact_")))
}
