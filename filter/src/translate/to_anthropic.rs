//! OpenAI chat completions to and from Anthropic messages, so an OpenAI SDK
//! can use a Claude model through `/v1/chat/completions`.
//!
//! Request (OpenAI → Anthropic), member by member:
//!
//! | OpenAI | Anthropic |
//! |---|---|
//! | `model` | the route's upstream model |
//! | `messages`: `system` / `developer` | `system` (text blocks, in order) |
//! | `messages`: `user` text, `image_url` and `file` parts | `user` text, `image` blocks (`data:` URLs as base64, others as `url`) and `document` blocks (a PDF's `file_data`) |
//! | `messages`: `assistant` content and `tool_calls` | `assistant` text and `tool_use` blocks (`arguments` parsed) |
//! | `messages`: `tool` (`tool_call_id`, content) | `user` turn with a `tool_result` block |
//! | `max_tokens` / `max_completion_tokens` | `max_tokens` (the gateway's `default_max_tokens` when absent: Anthropic requires it) |
//! | `temperature` (0–1 only), `top_p`, `stop`, `stream`, `user` | `temperature`, `top_p` (left out where the model refuses them: [`super::sampling`]), `stop_sequences`, `stream`, `metadata.user_id` |
//! | `tools` (`function`) | `tools` (`name`, `description`, `input_schema`) |
//! | `tool_choice` `auto` / `none` / `required` / `{function}`, `parallel_tool_calls: false` | `tool_choice` `auto` / `none` / `any` / `{tool}`, `disable_parallel_tool_use` |
//! | `stream_options.include_usage` | a final usage chunk in the translated stream |
//! | `response_format` `json_schema` | `output_config.format` (`json_schema` with the schema): Anthropic's structured outputs |
//! | `reasoning_effort` | `thinking` in the form the model takes, `enabled` with a budget (Claude 3.7–4.5) or `adaptive` with `output_config.effort` (4.6 and later); none where Anthropic would refuse it (see [`think`]) |
//! | `prompt_cache_key`, `safety_identifier`, `store: false`, `n: 1` | nothing (no effect on the answer) |
//!
//! Anything else (`n` > 1, `logprobs`, `response_format` other than text,
//! penalties, `seed`, `logit_bias`, audio, …) cannot be translated faithfully:
//! 400 `untranslatable_field` naming it, nothing sent.
//!
//! Response (Anthropic → OpenAI): text blocks become `message.content`,
//! `tool_use` blocks `tool_calls`, thinking blocks are left out;
//! `stop_reason` `end_turn`/`stop_sequence` → `stop`, `max_tokens` → `length`,
//! `tool_use` → `tool_calls`, `refusal` → `content_filter`; usage:
//! `prompt_tokens` = input + cache reads + cache writes, `cached_tokens` =
//! cache reads, `cache_write_tokens` = cache writes (OpenAI's own member
//! since GPT-5.6). Errors keep their status, in OpenAI's error shape.

use serde_json::{json, Map, Value};

use crate::errors::GatewayError;
use crate::request::ParsedBody;

const IGNORED: &[&str] = &["prompt_cache_key", "safety_identifier"];
/// Untranslatable members, by name (for a static `param`).
const REFUSED: &[&str] = &[
    "n", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "seed", "response_format",
    "audio", "modalities", "prediction", "service_tier", "web_search_options", "functions", "function_call",
    "verbosity", "store", "metadata",
];

use super::bad_message;

fn untranslatable(param: &'static str, why: &str) -> GatewayError {
    super::refuse(param, why, "an Anthropic model")
}

/// Text of a content value: a string, or `text` parts (others refused).
fn text_parts(v: &Value, i: usize) -> Result<String, GatewayError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    _ => return Err(bad_message(i, "only text parts can be translated here")),
                }
            }
            Ok(out)
        }
        _ => Err(bad_message(i, "content must be a string or an array of parts")),
    }
}

fn image_block(url: &str, i: usize) -> Result<Value, GatewayError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| bad_message(i, "a data: URL without data"))?;
        let media = meta.strip_suffix(";base64").ok_or_else(|| bad_message(i, "only base64 data: URLs can be translated"))?;
        return Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(bad_message(i, "an image URL must be https:// or a base64 data: URL"))
}

/// An OpenAI `file` part (a PDF as a base64 `data:` URL, as OpenAI takes
/// it) as an Anthropic `document` block; a file uploaded to OpenAI
/// (`file_id`) exists only there.
fn document_block(f: &Value, i: usize) -> Result<Value, GatewayError> {
    let data = f.get("file_data").and_then(Value::as_str).ok_or_else(|| bad_message(i, "only a file given as file_data can be translated (a file_id exists only at OpenAI)"))?;
    let pdf = data.strip_prefix("data:application/pdf;base64,").ok_or_else(|| bad_message(i, "a file's file_data must be a base64 data: URL of a PDF"))?;
    let mut block = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}});
    if let (Some(name), Some(b)) = (f.get("filename").and_then(Value::as_str), block.as_object_mut()) {
        b.insert("title".into(), Value::from(name));
    }
    Ok(block)
}

fn user_content(v: &Value, i: usize) -> Result<Value, GatewayError> {
    match v {
        Value::String(s) => Ok(Value::from(s.as_str())),
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    // An empty text part carries nothing, and Anthropic refuses it.
                    // A part whose text is not a string is refused, as OpenAI refuses it.
                    Some("text") => match p.get("text").and_then(Value::as_str) {
                        Some("") => {}
                        Some(text) => blocks.push(json!({"type": "text", "text": text})),
                        None => return Err(bad_message(i, "a text part's text must be a string")),
                    },
                    Some("image_url") => {
                        let url = p.pointer("/image_url/url").and_then(Value::as_str).ok_or_else(|| bad_message(i, "image_url without url"))?;
                        blocks.push(image_block(url, i)?);
                    }
                    Some("file") => blocks.push(document_block(p.get("file").unwrap_or(&Value::Null), i)?),
                    Some(other) => return Err(bad_message(i, &format!("content parts of type '{}' cannot be translated", crate::text::clean_field(other, 32)))),
                    None => return Err(bad_message(i, "a content part without a type")),
                }
            }
            Ok(Value::Array(blocks))
        }
        _ => Err(bad_message(i, "content must be a string or an array of parts")),
    }
}

/// The messages, in Anthropic's terms. OpenAI takes empty content where
/// Anthropic refuses it (an empty text block, or a turn with no content
/// before the last: tests/mock-provider/src/strict.rs cites the errors), so
/// system text, turns and text parts that carry nothing are left out
/// (Anthropic joins the consecutive turns that may leave).
fn messages(list: &Value) -> Result<(Vec<Value>, Vec<Value>), GatewayError> {
    let list = list.as_array().ok_or_else(|| GatewayError::bad_request("invalid_type", "'messages' must be an array.").with_param("messages"))?;
    let (mut system, mut out) = (Vec::new(), Vec::new());
    let empty = |v: &Value| v.as_str().is_some_and(str::is_empty) || v.as_array().is_some_and(Vec::is_empty);
    for (i, m) in list.iter().enumerate() {
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => {
                let text = text_parts(content, i)?;
                if !text.is_empty() {
                    system.push(json!({"type": "text", "text": text}));
                }
            }
            Some("user") => {
                let content = user_content(content, i)?;
                if !empty(&content) {
                    out.push(json!({"role": "user", "content": content}));
                }
            }
            Some("assistant") => {
                let mut blocks = Vec::new();
                let text = text_parts(content, i)?;
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for c in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    let input: Value = serde_json::from_str(if args.trim().is_empty() { "{}" } else { args })
                        .map_err(|_| bad_message(i, "tool_calls arguments are not JSON"))?;
                    blocks.push(json!({"type": "tool_use", "id": c.get("id").cloned().unwrap_or(Value::Null),
                                       "name": c.pointer("/function/name").cloned().unwrap_or(Value::Null), "input": input}));
                }
                if !blocks.is_empty() {
                    out.push(json!({"role": "assistant", "content": blocks}));
                }
            }
            Some("tool") => {
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| bad_message(i, "a tool message without tool_call_id"))?;
                out.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": text_parts(content, i)?}]}));
            }
            _ => return Err(bad_message(i, "the role must be system, developer, user, assistant or tool")),
        }
    }
    Ok((system, out))
}

fn tools(v: &Value) -> Result<Value, GatewayError> {
    let list = v.as_array().ok_or_else(|| untranslatable("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for t in list {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(untranslatable("tools", "may hold only function tools"));
        }
        let f = t.get("function").ok_or_else(|| untranslatable("tools", "needs a function"))?;
        let mut tool = Map::new();
        tool.insert("name".into(), f.get("name").cloned().unwrap_or(Value::Null));
        if let Some(d) = f.get("description") {
            tool.insert("description".into(), d.clone());
        }
        // (OpenAI takes a function without parameters, or with `null`; Anthropic requires a schema object.)
        tool.insert("input_schema".into(), f.get("parameters").filter(|p| !p.is_null()).cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})));
        out.push(Value::Object(tool));
    }
    Ok(Value::Array(out))
}

fn tool_choice(v: &Value, parallel: Option<bool>) -> Result<Value, GatewayError> {
    let mut choice = match v {
        Value::String(s) if s == "auto" => json!({"type": "auto"}),
        Value::String(s) if s == "none" => json!({"type": "none"}),
        Value::String(s) if s == "required" => json!({"type": "any"}),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            json!({"type": "tool", "name": o.get("function").and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null)})
        }
        _ => return Err(untranslatable("tool_choice", "must be auto, none, required or a function")),
    };
    if parallel == Some(false) && choice.get("type").and_then(Value::as_str) != Some("none") {
        if let Some(o) = choice.as_object_mut() {
            o.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    Ok(choice)
}

/// Claude's thinking for the client's `reasoning_effort` (the form the
/// model takes: [`super::thinking`]), except where Anthropic refuses
/// thinking and an OpenAI client could not have avoided it:
/// - a forced tool (`tool_choice` `required` or a function): "Thinking may
///   not be enabled when tool_choice forces tool use.";
/// - in a tool loop (the last assistant turn called tools): Anthropic wants
///   the last assistant turn to start with the thinking blocks it answered
///   with, which an OpenAI client never received to send back.
///
/// There the request goes without thinking. A `temperature` other than 1
/// is refused by name: Anthropic refuses it while Claude thinks, as
/// OpenAI refuses it with reasoning models.
fn think(out: &mut Map<String, Value>, effort: &str, model: &str, max_tokens: u64) -> Result<(), GatewayError> {
    let forced = matches!(out.get("tool_choice").and_then(|c| c.get("type")).and_then(Value::as_str), Some("any" | "tool"));
    // The last assistant turn called tools: what follows (Anthropic joins consecutive user turns) holds their results.
    let has = |m: &Value, kind: &str| m.get("content").and_then(Value::as_array).is_some_and(|b| b.iter().any(|b| b.get("type").and_then(Value::as_str) == Some(kind)));
    let msgs = out.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let in_tool_loop = msgs.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("assistant")).is_some_and(|m| has(m, "tool_use"));
    let Some((thinking, config)) = super::thinking::members(effort, model, max_tokens).filter(|_| !forced && !in_tool_loop) else {
        return Ok(());
    };
    if out.get("temperature").and_then(Value::as_f64).is_some_and(|t| t != 1.0) {
        return Err(untranslatable("temperature", "must be 1 or left out with 'reasoning_effort' (Claude thinks only at temperature 1)"));
    }
    out.insert("thinking".into(), thinking);
    // Beside a structured output's format, if the request asked for one.
    if let Some(Value::Object(config)) = config {
        match out.get_mut("output_config") {
            Some(Value::Object(existing)) => existing.extend(config),
            _ => {
                out.insert("output_config".into(), Value::Object(config));
            }
        }
    }
    Ok(())
}

/// The Anthropic request for an OpenAI chat request.
pub fn chat_to_messages(p: &ParsedBody<'_>, upstream_model: &str, default_max_tokens: u64) -> Result<Vec<u8>, GatewayError> {
    let mut out = Map::new();
    out.insert("model".into(), Value::from(upstream_model));
    let mut parallel = None;
    let mut choice = None;
    let mut effort = None;
    for (k, raw) in p.members() {
        let v: Value = serde_json::from_str(raw).map_err(|_| GatewayError::bad_request("invalid_json", "The request body is not valid JSON."))?;
        match k {
            "model" | "stream_options" => {}
            k if IGNORED.contains(&k) => {}
            "messages" => {
                let (system, msgs) = messages(&v)?;
                if !system.is_empty() {
                    out.insert("system".into(), Value::Array(system));
                }
                out.insert("messages".into(), Value::Array(msgs));
            }
            "max_tokens" | "max_completion_tokens" => {}
            "temperature" => match v.as_f64() {
                Some(t) if (0.0..=1.0).contains(&t) => {
                    out.insert("temperature".into(), v);
                }
                None if v.is_null() => {}
                _ => return Err(untranslatable("temperature", "must be between 0 and 1 for Anthropic models")),
            },
            "top_p" | "stream" if !v.is_null() => {
                out.insert(k.into(), v);
            }
            "top_p" | "stream" => {}
            "stop" => match v {
                Value::String(s) => {
                    out.insert("stop_sequences".into(), json!([s]));
                }
                Value::Array(_) => {
                    out.insert("stop_sequences".into(), v);
                }
                Value::Null => {}
                _ => return Err(untranslatable("stop", "must be a string or an array of strings")),
            },
            "user" => {
                if let Some(u) = v.as_str() {
                    out.insert("metadata".into(), json!({"user_id": u}));
                }
            }
            "tools" if !v.is_null() => {
                out.insert("tools".into(), tools(&v)?);
            }
            "tool_choice" if !v.is_null() => choice = Some(v),
            "reasoning_effort" => effort = super::thinking::effort(&v)?.map(str::to_string),
            "parallel_tool_calls" => parallel = v.as_bool(),
            "n" if v.is_null() || v.as_u64() == Some(1) => {}
            "store" if v.is_null() || v == Value::Bool(false) => {}
            "response_format" if v.is_null() || v.get("type").and_then(Value::as_str) == Some("text") => {}
            "response_format" if v.get("type").and_then(Value::as_str) == Some("json_schema") => {
                let schema = v.pointer("/json_schema/schema").filter(|s| s.is_object());
                let schema = schema.ok_or_else(|| untranslatable("response_format", "of type json_schema needs json_schema.schema, an object"))?;
                // Anthropic's structured outputs (output_config.format), constrained decoding like OpenAI's strict mode.
                out.insert("output_config".into(), json!({"format": {"type": "json_schema", "schema": schema}}));
            }
            "logprobs" if v.is_null() || v == Value::Bool(false) => {}
            "tools" | "tool_choice" => {}
            other => return Err(super::unknown_member(other, REFUSED, "an Anthropic model")),
        }
    }
    // OpenAI takes a conversation of empty texts or system messages only;
    // Anthropic refuses one with no message left ("messages: at least one
    // message is required"): refused here by name rather than upstream.
    if out.get("messages").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return Err(untranslatable("messages", "must hold a user or assistant message with content (the Responses API's input likewise)"));
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), tool_choice(&c, parallel)?);
    } else if parallel == Some(false) && out.contains_key("tools") {
        out.insert("tool_choice".into(), json!({"type": "auto", "disable_parallel_tool_use": true}));
    }
    // Sampling the model refuses is left out (before thinking: a model that
    // samples at its own settings has no temperature to refuse beside it).
    if !super::sampling::taken_by(upstream_model) {
        out.retain(|k, v| !super::sampling::refused_value(k, v));
    }
    let max_tokens = p.request.max_tokens.unwrap_or(default_max_tokens);
    if let Some(effort) = effort {
        think(&mut out, &effort, upstream_model, max_tokens)?;
    }
    out.insert("max_tokens".into(), Value::from(max_tokens));
    serde_json::to_vec(&Value::Object(out)).map_err(|_| GatewayError::internal("the translated request could not be written"))
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's `usage` for Anthropic's counts: cache writes in
/// `cache_write_tokens`, where OpenAI itself reports them since GPT-5.6
/// (../shared/WIRE.md), so a client can tell them from plain input;
/// thinking in `completion_tokens_details.reasoning_tokens`. Read
/// by the filter's own usage parser (`usage::usage_from_value`), so what
/// the client is told is what was priced.
pub fn usage_json(u: &Value) -> Value {
    let u = crate::usage::usage_from_value(crate::request::Api::AnthropicMessages, u.clone()).unwrap_or_default();
    let (prompt, out) = (u.input_tokens, u.output_tokens);
    json!({"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt.saturating_add(out),
           "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens, "cache_write_tokens": u.cache_write_tokens},
           "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}})
}

/// The OpenAI chat completion for an Anthropic response body (or, for an
/// error status, the OpenAI error). `None`: not JSON, passed on as it is.
pub fn messages_to_chat(body: &[u8], status: u16, created_s: u64) -> Option<Vec<u8>> {
    serde_json::to_vec(&message_value_to_chat(&serde_json::from_slice(body).ok()?, status, created_s)?).ok()
}

/// The same, on the parsed body (a chain of translations parses once).
pub fn message_value_to_chat(v: &Value, status: u16, created_s: u64) -> Option<Value> {
    if status >= 400 || v.get("type").and_then(Value::as_str) == Some("error") {
        let e = v.get("error").unwrap_or(&Value::Null);
        let out = json!({"error": {"message": e.get("message").cloned().unwrap_or_else(|| Value::from("The provider refused the request.")),
                                   "type": e.get("type").cloned().unwrap_or(Value::from("api_error")), "param": null, "code": null}});
        return Some(out);
    }
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in v.get("content").and_then(Value::as_array).into_iter().flatten() {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({"id": b.get("id"), "type": "function", "function": {
                "name": b.get("name"), "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into())}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::from(text) },
                             "refusal": null, "annotations": []});
    if let (false, Some(m)) = (calls.is_empty(), message.as_object_mut()) {
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    let out = json!({
        "id": format!("chatcmpl-{}", v.get("id").and_then(Value::as_str).unwrap_or("")),
        "object": "chat.completion", "created": created_s, "model": v.get("model"),
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(v.get("stop_reason").and_then(Value::as_str))}],
        "usage": usage_json(v.get("usage").unwrap_or(&Value::Null)),
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse_chat, Api};

    fn tr(body: Value) -> Result<Value, GatewayError> {
        let b = serde_json::to_vec(&body).unwrap();
        let p = parse_chat(Api::OpenAiChat, &b).unwrap();
        chat_to_messages(&p, "claude-sonnet-4-6", 4096).map(|v| serde_json::from_slice(&v).unwrap())
    }

    #[test]
    fn a_tool_conversation_with_images_is_translated_member_by_member() {
        let got = tr(json!({
            "model": "anthropic/claude-sonnet-4-6", "temperature": 0.5, "stop": "END", "user": "u1", "stream": true,
            "stream_options": {"include_usage": true}, "parallel_tool_calls": false,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                                             {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "lookup", "arguments": "{\"q\":\"png\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a PNG"}],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "required"})).unwrap();
        assert_eq!(got, json!({
            "model": "claude-sonnet-4-6", "temperature": 0.5, "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
            "stream": true,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "png"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "a PNG"}]}],
            "tools": [{"name": "lookup", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "max_tokens": 4096}));
    }

    #[test]
    fn what_carries_nothing_is_left_out_as_anthropic_refuses_it() {
        let got = tr(json!({"model": "m", "messages": [
            {"role": "system", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": ""}]},
            {"role": "user", "content": "Still there?"},
            {"role": "assistant", "content": null}]}))
        .unwrap();
        assert_eq!(got["messages"], json!([
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "user", "content": "Still there?"}]));
        assert!(got.get("system").is_none(), "{got}");
    }

    #[test]
    fn a_function_without_parameters_gets_the_schema_anthropic_requires() {
        let got = tr(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [
            {"type": "function", "function": {"name": "now"}},
            {"type": "function", "function": {"name": "ping", "parameters": null}}]})).unwrap();
        for t in got["tools"].as_array().unwrap() {
            assert_eq!(t["input_schema"], json!({"type": "object", "properties": {}}), "{t}");
        }
    }

    #[test]
    fn what_cannot_be_translated_is_refused_by_name() {
        for (body, param) in [
            (json!({"model": "m", "messages": [], "n": 2}), "n"),
            (json!({"model": "m", "messages": [], "response_format": {"type": "json_object"}}), "response_format"),
            (json!({"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}), "response_format"),
            (json!({"model": "m", "messages": [], "temperature": 1.5}), "temperature"),
            (json!({"model": "m", "messages": [], "seed": 1}), "seed"),
            (json!({"model": "m", "messages": [], "frobnicate": 1}), "(root)"),
            (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}), "messages"),
            (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}), "messages"),
            // A text part whose text is not a string (was read as empty and left out).
            (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": {"a": 1}}]}]}), "messages"),
            // No message with content left: Anthropic would refuse it ("messages: at least one message is required").
            (json!({"model": "m", "messages": []}), "messages"),
            (json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": ""}]}), "messages"),
        ] {
            let e = tr(body).unwrap_err();
            assert_eq!((e.status, e.code, e.param), (400, "untranslatable_field", Some(param)), "{}", e.message);
        }
        // what has no effect passes: n = 1, store false, a text response format, a cache key
        let ok = tr(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 1, "store": false,
                           "response_format": {"type": "text"}, "prompt_cache_key": "k", "max_completion_tokens": 99})).unwrap();
        assert_eq!(ok["max_tokens"], 99);
    }

    #[test]
    fn a_pdf_file_part_becomes_a_document_block() {
        let part = |file: Value| tr(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Summarise"}, {"type": "file", "file": file}]}]}));
        let got = part(json!({"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"})).unwrap();
        assert_eq!(got["messages"][0]["content"][1], json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}, "title": "a.pdf"}));
        for bad in [json!({"file_id": "file-abc"}), json!({"file_data": "gs://bucket/x.mp4"}), json!({"file_data": "data:text/csv;base64,YQ=="})] {
            assert_eq!(part(bad).unwrap_err().param, Some("messages"));
        }
    }

    #[test]
    fn a_json_schema_response_format_becomes_anthropics_structured_output() {
        // The OpenAI SDK's `.parse()` sends this; the schema from lingua's outputConfigJsonSchemaParam.
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "number"}},
                            "required": ["name", "age"], "additionalProperties": false});
        let body = |extra: Value| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "Extract: John is 25."}],
                               "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": schema}}});
            b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            b
        };
        assert_eq!(tr(body(json!({}))).unwrap()["output_config"], json!({"format": {"type": "json_schema", "schema": schema}}));
        // With thinking (adaptive: an effort), both in one output_config.
        let both = tr(body(json!({"reasoning_effort": "low"}))).unwrap();
        assert_eq!(both["output_config"], json!({"format": {"type": "json_schema", "schema": schema}, "effort": "low"}));
    }

    #[test]
    fn a_reasoning_effort_becomes_the_thinking_the_model_takes() {
        let to = |model: &str, body: Value| {
            let b = serde_json::to_vec(&body).unwrap();
            let p = parse_chat(Api::OpenAiChat, &b).unwrap();
            chat_to_messages(&p, model, 4096).map(|v| serde_json::from_slice::<Value>(&v).unwrap())
        };
        let ask = |extra: Value| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high"});
            b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            b
        };
        let got = to("claude-sonnet-4-5", ask(json!({"max_completion_tokens": 64000}))).unwrap();
        assert_eq!((&got["thinking"], got.get("output_config"), &got["max_tokens"]), (&json!({"type": "enabled", "budget_tokens": 16384}), None, &json!(64000)));
        let got = to("claude-opus-4-8", ask(json!({}))).unwrap();
        assert_eq!((&got["thinking"], &got["output_config"], &got["max_tokens"]), (&json!({"type": "adaptive"}), &json!({"effort": "high"}), &json!(4096)));
        // No thinking: `none`, a model that does not think, a cap too small for Anthropic's least budget.
        for (model, extra) in [("claude-opus-4-8", json!({"reasoning_effort": "none"})), ("claude-3-5-haiku-20241022", json!({})),
                               ("claude-sonnet-4-5", json!({"max_tokens": 2000}))] {
            let got = to(model, ask(extra)).unwrap();
            assert!(got.get("thinking").is_none() && got.get("output_config").is_none(), "{model}: {got}");
        }
        // A forced tool, or a tool loop's next step: Anthropic would refuse thinking there.
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        let forced = to("claude-opus-4-8", ask(json!({"tools": tools, "tool_choice": "required"}))).unwrap();
        assert!(forced.get("thinking").is_none(), "{forced}");
        let lp = json!([{"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]);
        let in_loop = to("claude-opus-4-8", ask(json!({"tools": tools, "messages": lp}))).unwrap();
        assert!(in_loop.get("thinking").is_none(), "{in_loop}");
        // A user's words after the results are still that turn (Anthropic joins the user turns).
        let mut more = lp.clone();
        more.as_array_mut().unwrap().push(json!({"role": "user", "content": "and then?"}));
        assert!(to("claude-opus-4-8", ask(json!({"tools": tools, "messages": more}))).unwrap().get("thinking").is_none());
        // Claude thinks only at temperature 1: another is refused by name, 1 passes.
        let e = to("claude-sonnet-4-6", ask(json!({"temperature": 0.2}))).unwrap_err();
        assert_eq!((e.code, e.param), ("untranslatable_field", Some("temperature")), "{}", e.message);
        assert!(to("claude-sonnet-4-6", ask(json!({"temperature": 1}))).is_ok());
        assert!(to("claude-3-5-haiku-20241022", ask(json!({"temperature": 0.2}))).is_ok(), "no thinking, no conflict");
        // A model that refuses sampling gets none: no temperature left to refuse beside thinking.
        let got = to("claude-opus-4-8", ask(json!({"temperature": 0.2, "top_p": 0.9}))).unwrap();
        assert_eq!((got.get("temperature"), got.get("top_p"), &got["thinking"]), (None, None, &json!({"type": "adaptive"})), "{got}");
        assert_eq!(to("claude-opus-4-8", ask(json!({"temperature": 1}))).unwrap()["temperature"], json!(1));
        assert_eq!(to("claude-opus-4-8", ask(json!({"reasoning_effort": "maximum"}))).unwrap_err().param, Some("reasoning_effort"));
        // GPT-5.6's `max` (real requests answered 200): the highest level every adaptive model takes.
        assert_eq!(to("claude-opus-4-8", ask(json!({"reasoning_effort": "max"}))).unwrap()["output_config"], json!({"effort": "high"}));
    }

    #[test]
    fn responses_and_errors_come_back_in_openai_shape() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6",
            "content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"Let me look."},
                       {"type":"tool_use","id":"toolu_1","name":"lookup","input":{"q":"x"}}],
            "stop_reason":"tool_use","usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":7,
            "output_tokens_details":{"thinking_tokens":3}}}"#;
        let v: Value = serde_json::from_slice(&messages_to_chat(body, 200, 42).unwrap()).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "Let me look.");
        assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], r#"{"q":"x"}"#);
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"], json!({"prompt_tokens": 115, "completion_tokens": 7, "total_tokens": 122, "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
                                     "completion_tokens_details": {"reasoning_tokens": 3}}));
        let e = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let v: Value = serde_json::from_slice(&messages_to_chat(e, 529, 0).unwrap()).unwrap();
        assert_eq!(v, json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}}));
        assert!(messages_to_chat(b"<html>", 502, 0).is_none());
    }
}
