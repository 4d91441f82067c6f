//! A chat request for a model OpenAI serves only through its Responses API
//! (the Codex models, the `-pro` models, deep research), and the Responses
//! answer as a chat completion. An Anthropic client's request reaches such a
//! model through the chat translation first ([`super::to_openai`]), so both
//! clients share these rules.
//!
//! OpenAI answers a chat request for these models 404 "This model is only
//! supported in v1/responses and not in v1/chat/completions."
//! (n8n-io/n8n#18352, openai/codex#1306), and every chat client (the
//! OpenAI SDK's `chat.completions`, LangChain's `ChatOpenAI`, Claude Code
//! through an Anthropic-to-OpenAI gateway) fails on them.

use serde_json::{json, Map, Value};

use crate::errors::GatewayError;
use crate::request::Api;

const TARGET: &str = "a Responses-only OpenAI model";

/// Chat members the Responses API has no place for.
const REFUSED: &[&str] = &[
    "stop", "n", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "seed", "audio", "modalities",
    "prediction", "web_search_options", "functions", "function_call",
];

/// Models OpenAI serves only through `POST /v1/responses`, by name (a
/// router's `openai/` prefix looked past): the Codex models (`gpt-5-codex`,
/// `gpt-5.1-codex-max`, `codex-mini-latest`), the `-pro` models (`o1-pro`,
/// `o3-pro`, `gpt-5-pro`, `gpt-5.4-pro` and their snapshots), deep research
/// and computer use (OpenAI's model pages; langchain-ai/langchain#35594,
/// run-llama/llama_index#21922). A route's `upstream_api` overrides this.
///
/// Asked for every chat request to an OpenAI-format route, so it reads the
/// name in place (no lowercased copy).
pub fn responses_only(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    let starts = |p: &str| m.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let openai_family = ["gpt-", "o1", "o3", "o4"].into_iter().any(starts);
    let deep_research = m.as_bytes().windows(13).any(|w| w.eq_ignore_ascii_case(b"deep-research"));
    starts("codex-")
        || starts("computer-use-preview")
        || (openai_family && (deep_research || m.split('-').any(|t| t.eq_ignore_ascii_case("codex") || t.eq_ignore_ascii_case("pro"))))
}

fn refuse(param: &'static str, why: &str) -> GatewayError {
    super::refuse(param, why, TARGET)
}

/// A message's text: a string, or text (and refusal) parts joined.
fn text_of(v: &Value, i: usize) -> Result<String, GatewayError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text").or_else(|| p.get("refusal"))) {
                    (Some("text" | "refusal"), Some(Value::String(t))) => out.push_str(t),
                    _ => return Err(super::bad_message(i, "content parts here may be text only")),
                }
            }
            Ok(out)
        }
        _ => Err(super::bad_message(i, "content must be a string or an array of parts")),
    }
}

/// A user message's content as Responses input parts.
fn user_content(v: &Value, i: usize) -> Result<Value, GatewayError> {
    let Value::Array(parts) = v else { return Ok(Value::from(text_of(v, i)?)) };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let part = match p.get("type").and_then(Value::as_str) {
            Some("text") => match p.get("text") {
                Some(Value::String(t)) => json!({"type": "input_text", "text": t}),
                _ => return Err(super::bad_message(i, "a text part's text must be a string")),
            },
            Some("image_url") => {
                let img = p.get("image_url").unwrap_or(&Value::Null);
                let url = img.as_str().or_else(|| img.get("url").and_then(Value::as_str));
                let url = url.ok_or_else(|| super::bad_message(i, "an image_url part needs image_url.url, a string"))?;
                let detail = img.get("detail").and_then(Value::as_str).unwrap_or("auto");
                json!({"type": "input_image", "image_url": url, "detail": detail})
            }
            Some("file") => {
                let f = p.get("file").and_then(Value::as_object).ok_or_else(|| super::bad_message(i, "a file part needs a file object"))?;
                let mut part = Map::new();
                part.insert("type".into(), Value::from("input_file"));
                for k in ["file_data", "file_id", "filename"] {
                    match f.get(k) {
                        Some(Value::String(s)) => {
                            part.insert(k.into(), Value::from(s.as_str()));
                        }
                        None | Some(Value::Null) => {}
                        Some(_) => return Err(super::bad_message(i, "a file part's file_data, file_id and filename must be strings")),
                    }
                }
                Value::Object(part)
            }
            _ => return Err(super::bad_message(i, "content parts may be text, image_url and file")),
        };
        out.push(part);
    }
    Ok(Value::Array(out))
}

/// The chat messages as Responses input items: messages keep their role
/// (system and developer included, in place), an assistant's tool calls
/// become `function_call` items and tool messages `function_call_output`.
fn input(messages: &Value) -> Result<Vec<Value>, GatewayError> {
    let list = messages.as_array().ok_or_else(|| refuse("messages", "must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => out.push(json!({"role": role, "content": text_of(content, i)?})),
            "user" => out.push(json!({"role": "user", "content": user_content(content, i)?})),
            "assistant" => {
                if m.get("audio").is_some_and(|a| !a.is_null()) || m.get("function_call").is_some_and(|f| !f.is_null()) {
                    return Err(super::bad_message(i, "an assistant's audio and function_call cannot be translated (use tool_calls)"));
                }
                let text = text_of(content, i)?;
                if !text.is_empty() {
                    out.push(json!({"role": "assistant", "content": text}));
                }
                for c in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let f = c.get("function").unwrap_or(&Value::Null);
                    let (Some(id), Some(name)) = (c.get("id").and_then(Value::as_str), f.get("name").and_then(Value::as_str)) else {
                        return Err(super::bad_message(i, "a tool call needs an id and function.name, strings"));
                    };
                    let Some(arguments) = f.get("arguments").and_then(Value::as_str) else {
                        return Err(super::bad_message(i, "a tool call's function.arguments must be a string (JSON text)"));
                    };
                    out.push(json!({"type": "function_call", "call_id": id, "name": name, "arguments": arguments}));
                }
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| super::bad_message(i, "a tool message needs tool_call_id, a string"))?;
                out.push(json!({"type": "function_call_output", "call_id": id, "output": text_of(content, i)?}));
            }
            _ => return Err(super::bad_message(i, "role must be system, developer, user, assistant or tool")),
        }
    }
    Ok(out)
}

/// Function tools as the Responses API takes them (`name` and `parameters`
/// at the top). `strict` is sent `false` when the client set none: chat
/// completions treats an absent `strict` as off, the Responses API as on
/// ("To opt out of strict mode in Responses … explicitly set strict: false",
/// OpenAI's function-calling guide, quoted in 0xPlaygrounds/rig#2477), and a
/// loose schema would then be refused or its optional members filled in.
fn tools(v: &Value) -> Result<Value, GatewayError> {
    let list = v.as_array().ok_or_else(|| refuse("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for t in list {
        let f = t.get("function").filter(|_| t.get("type").and_then(Value::as_str) == Some("function"));
        let f = f.and_then(Value::as_object).ok_or_else(|| refuse("tools", "may hold only function tools"))?;
        let mut tool = Map::new();
        tool.insert("type".into(), Value::from("function"));
        tool.insert("name".into(), f.get("name").cloned().unwrap_or(Value::Null));
        if let Some(d) = f.get("description").filter(|d| !d.is_null()) {
            tool.insert("description".into(), d.clone());
        }
        let parameters = f.get("parameters").filter(|p| !p.is_null()).cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        tool.insert("parameters".into(), parameters);
        tool.insert("strict".into(), f.get("strict").filter(|s| s.is_boolean()).cloned().unwrap_or(Value::Bool(false)));
        out.push(Value::Object(tool));
    }
    Ok(Value::Array(out))
}

fn tool_choice(v: Value) -> Result<Value, GatewayError> {
    match &v {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(v),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str);
            let name = name.ok_or_else(|| refuse("tool_choice", "naming a function needs function.name, a string"))?;
            Ok(json!({"type": "function", "name": name}))
        }
        _ => Err(refuse("tool_choice", "must be auto, none, required or a function")),
    }
}

/// `response_format` as the Responses API's `text.format`.
fn text_format(v: &Value) -> Result<Option<Value>, GatewayError> {
    match v.get("type").and_then(Value::as_str) {
        _ if v.is_null() => Ok(None),
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let s = v.get("json_schema").and_then(Value::as_object);
            let s = s.filter(|s| s.get("schema").is_some_and(Value::is_object));
            let s = s.ok_or_else(|| refuse("response_format", "of type json_schema needs json_schema.schema, an object"))?;
            let mut f = Map::new();
            f.insert("type".into(), Value::from("json_schema"));
            f.insert("name".into(), s.get("name").filter(|n| n.is_string()).cloned().unwrap_or_else(|| Value::from("output")));
            for k in ["schema", "description", "strict"] {
                if let Some(x) = s.get(k).filter(|x| !x.is_null()) {
                    f.insert(k.into(), x.clone());
                }
            }
            Ok(Some(Value::Object(f)))
        }
        _ => Err(refuse("response_format", "must be of type text, json_object or json_schema")),
    }
}

/// The Responses request for a chat request (`chat`, its members as the
/// client sent them, already checked by the filter's parser). `store` is
/// sent `false` unless the client asked: a chat completion is not stored,
/// a response is unless told otherwise.
/// `default_cap`: the output cap sent when the client set none (the
/// gateway's `default_max_tokens`, which the budget reservation assumed).
pub fn chat_to_responses(chat: Map<String, Value>, upstream_model: &str, default_cap: u64) -> Result<Vec<u8>, GatewayError> {
    let mut out = Map::new();
    out.insert("model".into(), Value::from(upstream_model));
    let mut text = Map::new();
    for (k, v) in chat {
        match k.as_str() {
            "model" | "stream_options" => {}
            "messages" => {
                out.insert("input".into(), Value::Array(input(&v)?));
            }
            // The Responses API's least cap is 16 ("integer below minimum
            // value"): a smaller one (a probe's `max_tokens: 1`) is raised to
            // it rather than refused; the reservation uses the client's.
            "max_tokens" | "max_completion_tokens" => match v.as_u64() {
                Some(n) => {
                    out.insert("max_output_tokens".into(), Value::from(n.max(16)));
                }
                None if v.is_null() => {}
                None => {
                    out.insert("max_output_tokens".into(), v);
                }
            },
            // A level this gateway does not know goes as it came (the
            // provider names its levels); a value that is no level at all is refused.
            "reasoning_effort" if v.is_string() => {
                out.insert("reasoning".into(), json!({"effort": v}));
            }
            "reasoning_effort" if !v.is_null() => return Err(refuse("reasoning_effort", "must be a string (low, medium, high, …)")),
            "verbosity" if !v.is_null() => {
                text.insert("verbosity".into(), v);
            }
            "response_format" => {
                if let Some(f) = text_format(&v)? {
                    text.insert("format".into(), f);
                }
            }
            "tools" if !v.is_null() => {
                out.insert("tools".into(), tools(&v)?);
            }
            "tool_choice" if !v.is_null() => {
                out.insert("tool_choice".into(), tool_choice(v)?);
            }
            // (Left out below where the model refuses them.)
            "temperature" | "top_p" | "stream" | "parallel_tool_calls" | "user" | "prompt_cache_key" | "prompt_cache_retention" | "safety_identifier"
            | "service_tier" | "metadata" | "store" => {
                if !v.is_null() {
                    out.insert(k, v);
                }
            }
            "reasoning_effort" | "verbosity" | "tools" | "tool_choice" => {}
            "stop" if v.is_null() => {}
            "n" if v.is_null() || v.as_u64() == Some(1) => {}
            "logprobs" if v.is_null() || v == Value::Bool(false) => {}
            other => return Err(super::unknown_member(other, REFUSED, TARGET)),
        }
    }
    if !text.is_empty() {
        out.insert("text".into(), Value::Object(text));
    }
    // A temperature other than 1 and a top_p, refused by OpenAI's reasoning
    // models (every Codex and -pro model is one) unless they do not reason
    // (super::sampling), as the chat translation leaves them out.
    let effort = out.get("reasoning").and_then(|r| r.get("effort")).and_then(Value::as_str);
    if !super::sampling::openai_takes(upstream_model, effort) {
        out.retain(|k, v| !(matches!(k.as_str(), "temperature" | "top_p") && super::sampling::refused_value(k, v)));
    }
    out.entry("store").or_insert(Value::Bool(false));
    out.entry("max_output_tokens").or_insert(Value::from(default_cap.max(16)));
    serde_json::to_vec(&Value::Object(out)).map_err(|_| GatewayError::internal("the translated request could not be written"))
}

/// Chat's `usage` for a Responses usage object, read by the filter's own
/// usage parser so the client is told what was priced.
pub fn chat_usage(u: &Value) -> Value {
    let u = crate::usage::usage_from_value(Api::OpenAiResponses, u.clone()).unwrap_or_default();
    json!({"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens, "total_tokens": u.input_tokens.saturating_add(u.output_tokens),
           "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens}, "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}})
}

/// Chat's `finish_reason` for a response's status (`incomplete` with its reason).
pub fn finish_reason(response: &Value, called: bool) -> &'static str {
    match response.get("status").and_then(Value::as_str) {
        Some("incomplete") => match response.pointer("/incomplete_details/reason").and_then(Value::as_str) {
            Some("content_filter") => "content_filter",
            _ => "length",
        },
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// The chat completion for a Responses API body. An error body (`{"error":
/// {…}}`, the same shape in both APIs) and anything not JSON are passed on
/// as they are (`None`); a response that failed becomes chat's error shape.
pub fn responses_to_chat(body: &[u8], status: u16) -> Option<Vec<u8>> {
    serde_json::to_vec(&responses_value_to_chat(&serde_json::from_slice(body).ok()?, status)?).ok()
}

/// The same, on the parsed body (a chain of translations parses once).
pub fn responses_value_to_chat(v: &Value, status: u16) -> Option<Value> {
    if status >= 400 || v.get("object").and_then(Value::as_str) != Some("response") {
        return None;
    }
    if v.get("status").and_then(Value::as_str) == Some("failed") {
        let e = v.get("error").unwrap_or(&Value::Null);
        let err = json!({"error": {"message": e.get("message").cloned().unwrap_or_else(|| Value::from("The response failed.")),
                                   "type": "server_error", "param": null, "code": e.get("code")}});
        return Some(err);
    }
    let (mut text, mut refusal, mut calls) = (String::new(), String::new(), Vec::new());
    for item in v.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    match (part.get("type").and_then(Value::as_str), part.get("text"), part.get("refusal")) {
                        (Some("output_text"), Some(Value::String(t)), _) => text.push_str(t),
                        (Some("refusal"), _, Some(Value::String(r))) => refusal.push_str(r),
                        _ => {}
                    }
                }
            }
            Some("function_call") => calls.push(json!({"id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments").filter(|a| a.is_string()).cloned().unwrap_or_else(|| Value::from("{}"))}})),
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), Value::from("assistant"));
    message.insert("content".into(), if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::from(text) });
    message.insert("refusal".into(), if refusal.is_empty() { Value::Null } else { Value::from(refusal) });
    let finish = finish_reason(v, !calls.is_empty());
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let id = crate::text::clean_field(v.get("id").and_then(Value::as_str).unwrap_or(""), 128);
    let mut out = Map::new();
    out.insert("id".into(), Value::from(format!("chatcmpl-{id}")));
    out.insert("object".into(), Value::from("chat.completion"));
    out.insert("created".into(), v.get("created_at").filter(|c| c.is_u64()).cloned().unwrap_or(Value::from(0)));
    out.insert("model".into(), v.get("model").cloned().unwrap_or(Value::Null));
    out.insert("choices".into(), json!([{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}]));
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        out.insert("usage".into(), chat_usage(u));
    }
    if let Some(t) = v.get("service_tier").filter(|t| t.is_string()) {
        out.insert("service_tier".into(), t.clone());
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(chat: Value) -> Result<Value, GatewayError> {
        let Value::Object(m) = chat else { panic!("an object") };
        chat_to_responses(m, "gpt-5.1-codex", 4096).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn knows_the_models_openai_serves_only_through_responses() {
        for m in ["gpt-5-codex", "OpenAI/GPT-5-Codex", "openai/gpt-5.1-codex-max", "gpt-5.3-codex", "codex-mini-latest", "o1-pro", "o3-pro-2025-06-10", "gpt-5-pro",
                  "gpt-5.4-pro-2026-03-05", "o3-deep-research", "o4-mini-deep-research", "computer-use-preview"] {
            assert!(responses_only(m), "{m}");
        }
        for m in ["gpt-5.4", "gpt-5.4-mini", "o3", "o4-mini", "gpt-4o", "gemini-2.5-pro", "google/gemini-2.5-pro", "deepseek-v4", "claude-opus-4-8",
                  "gpt-5-chat-latest", "prompt-pro"] {
            assert!(!responses_only(m), "{m}");
        }
    }

    #[test]
    fn a_tool_loop_becomes_input_items() {
        let r = translate(json!({
            "model": "codex", "max_completion_tokens": 500, "stream": true, "stream_options": {"include_usage": true},
            "reasoning_effort": "high", "parallel_tool_calls": false,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":\"SF\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "w"}}}))
        .unwrap();
        assert_eq!(r, json!({
            "model": "gpt-5.1-codex", "max_output_tokens": 500, "stream": true, "reasoning": {"effort": "high"}, "parallel_tool_calls": false,
            "input": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}, {"type": "input_image", "image_url": "data:image/png;base64,AA==", "detail": "auto"}]},
                {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{\"c\":\"SF\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "21 C"}],
            "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": false}],
            "tool_choice": {"type": "function", "name": "w"}, "store": false}));
    }

    #[test]
    fn formats_caps_and_what_has_no_place() {
        let r = translate(json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1, "store": true, "verbosity": "low",
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "strict": true, "schema": {"type": "object"}}}})).unwrap();
        assert_eq!(r["max_output_tokens"], 16, "raised to the API's least");
        assert_eq!(r["store"], true);
        assert_eq!(r["text"], json!({"verbosity": "low", "format": {"type": "json_schema", "name": "p", "schema": {"type": "object"}, "strict": true}}));
        assert_eq!(translate(json!({"reasoning_effort": {"deep": true}})).unwrap_err().param, Some("reasoning_effort"));
        for (k, v) in [("stop", json!("\n")), ("seed", json!(1)), ("n", json!(2)), ("logit_bias", json!({})), ("frequency_penalty", json!(0.5)), ("weird", json!(1))] {
            let e = translate(json!({"messages": [], k: v})).unwrap_err();
            assert_eq!(e.code, "untranslatable_field", "{k}");
        }
        assert!(translate(json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})).is_err());
        assert!(translate(json!({"messages": [{"role": "tool", "content": "x"}]})).is_err(), "no tool_call_id");
        for args in [json!({"a": 1}), Value::Null, json!(5)] {
            let m = json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "w", "arguments": args}}]});
            assert!(translate(json!({"messages": [m]})).is_err(), "arguments {args} are no JSON text: refused, not mended");
        }
        assert!(translate(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]})).is_err());
        let r = translate(json!({"messages": [], "stop": null, "n": 1, "logprobs": false, "top_p": 0.9, "temperature": 0.2})).unwrap();
        assert!(r.get("top_p").is_none() && r.get("temperature").is_none(), "a reasoning model refuses them");
        let r = translate(json!({"messages": [], "temperature": 1})).unwrap();
        assert_eq!(r["temperature"], 1, "its default: kept");
        assert_eq!(r["max_output_tokens"], 4096, "the gateway's cap when the client set none (the reservation's bound)");
    }

    #[test]
    fn a_real_function_call_answer_becomes_a_chat_completion() {
        // A real gpt-5.4-mini answer (braintrustdata/lingua, functionToolsWithReasoningEffortParam), shortened to its members read here.
        let body = json!({"id": "resp_0daca4", "object": "response", "created_at": 1778521092, "status": "completed", "model": "gpt-5.4-mini-2026-03-17",
            "output": [{"id": "rs_1", "type": "reasoning", "summary": []},
                       {"id": "fc_1", "type": "function_call", "status": "completed", "arguments": "{\"location\":\"Tokyo\"}", "call_id": "call_ahg", "name": "get_weather"}],
            "usage": {"input_tokens": 41, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 43, "output_tokens_details": {"reasoning_tokens": 23}, "total_tokens": 84}});
        let out: Value = serde_json::from_slice(&responses_to_chat(body.to_string().as_bytes(), 200).unwrap()).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(out["choices"][0]["message"]["tool_calls"][0], json!({"id": "call_ahg", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Tokyo\"}"}}));
        assert_eq!(out["usage"], json!({"prompt_tokens": 41, "completion_tokens": 43, "total_tokens": 84, "prompt_tokens_details": {"cached_tokens": 0},
                                        "completion_tokens_details": {"reasoning_tokens": 23}}));
        assert_eq!((out["id"].as_str(), out["created"].as_u64()), (Some("chatcmpl-resp_0daca4"), Some(1778521092)));
    }

    #[test]
    fn text_refusals_incomplete_failed_and_errors() {
        let incomplete = json!({"object": "response", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hel"}, {"type": "output_text", "text": "lo"}]}]});
        let out: Value = serde_json::from_slice(&responses_to_chat(incomplete.to_string().as_bytes(), 200).unwrap()).unwrap();
        assert_eq!((out["choices"][0]["message"]["content"].as_str(), out["choices"][0]["finish_reason"].as_str()), (Some("Hello"), Some("length")));
        let refused = json!({"object": "response", "status": "completed", "output": [{"type": "message", "content": [{"type": "refusal", "refusal": "No."}]}]});
        let out: Value = serde_json::from_slice(&responses_to_chat(refused.to_string().as_bytes(), 200).unwrap()).unwrap();
        assert_eq!((out["choices"][0]["message"]["refusal"].as_str(), out["choices"][0]["message"]["content"].as_str()), (Some("No."), Some("")));
        let failed = json!({"object": "response", "status": "failed", "error": {"code": "server_error", "message": "boom"}});
        let out: Value = serde_json::from_slice(&responses_to_chat(failed.to_string().as_bytes(), 200).unwrap()).unwrap();
        assert_eq!(out["error"]["message"], "boom");
        let err = br#"{"error": {"message": "Unknown parameter: 'x'.", "type": "invalid_request_error", "param": null, "code": "unknown_parameter"}}"#;
        assert_eq!(responses_to_chat(err, 400), None, "an error passes as it is: the same shape in both APIs");
        assert_eq!(responses_to_chat(b"not json", 200), None);
        assert_eq!(responses_to_chat(b"{\"object\": \"response\", \"output\": 5, \"usage\": \"x\", \"id\": 7}", 200).map(|b| b.is_empty()), Some(false));
    }
}
