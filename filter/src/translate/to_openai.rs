//! An Anthropic messages request for an OpenAI-format model, and the chat
//! completion back as an Anthropic message (docs/translation.md).

use serde_json::{json, Map, Value};

use crate::errors::GatewayError;
use crate::request::ParsedBody;

/// Untranslatable members, by name (for a static `param`).
const REFUSED: &[&str] = &["top_k", "container", "mcp_servers", "service_tier"];

use super::bad_message;

fn refuse(param: &'static str, why: &str) -> GatewayError {
    super::refuse(param, why, "an OpenAI-format model")
}

/// A text block's text: a block whose `text` is missing or not a string is
/// refused, as Anthropic refuses it (read as empty, it was sent on as if
/// the client had written nothing).
fn block_text(b: &Value, i: usize) -> Result<&str, GatewayError> {
    b.get("text").and_then(Value::as_str).ok_or_else(|| bad_message(i, "a text block's text must be a string"))
}

/// Text of a string or of `text` blocks (other blocks refused).
fn text_of(v: &Value, i: usize) -> Result<String, GatewayError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = String::new();
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => out.push_str(block_text(b, i)?),
                    _ => return Err(bad_message(i, "only text blocks can be translated here")),
                }
            }
            Ok(out)
        }
        Value::Null => Ok(String::new()),
        _ => Err(bad_message(i, "content must be a string or an array of blocks")),
    }
}

/// The line Claude Code puts first in its system prompt for Anthropic's
/// billing ("x-anthropic-billing-header: cc_version=2.1.153.d02;
/// cc_entrypoint=cli; cch=97bd6;"), a new `cch` on every request: it means
/// nothing to another provider and, first in the prompt, it would make
/// every prefix new there, so their prompt caches could never hit
/// (jwadow/kiro-gateway#215 measured the cost; insightflo/chatgpt-codex-proxy#2).
pub(crate) const CLAUDE_CODE_ATTRIBUTION: &str = "x-anthropic-billing-header:";

/// A system prompt without Claude Code's attribution line, wherever a text
/// (the whole string, or a block) starts with it.
fn without_attribution(mut v: Value) -> Value {
    fn strip(t: &mut String) {
        if t.starts_with(CLAUDE_CODE_ATTRIBUTION) {
            *t = t.split_once('\n').map_or("", |(_, rest)| rest).to_string();
        }
    }
    match &mut v {
        Value::String(t) => strip(t),
        Value::Array(blocks) => {
            for b in blocks.iter_mut() {
                if let Some(Value::String(t)) = b.get_mut("text") {
                    strip(t);
                }
            }
        }
        _ => {}
    }
    v
}

/// How much an OpenAI-format model reasons, from how much Claude would
/// think: `output_config.effort` when given (`xhigh` and `max` are
/// OpenAI's `high`, which every OpenAI reasoning model takes),
/// else `thinking.budget_tokens` (below 4,096 `low`, below 16,384
/// `medium`, else `high`); `disabled`, or `adaptive` without an effort,
/// leave the model's default. Either way the output cap bounds the
/// reasoning tokens, as Anthropic's `max_tokens` bounds thinking, so the
/// reservation still holds. Claude Code sends `thinking` to whatever model
/// it is pointed at: refused, every Claude Code turn to an OpenAI-format
/// model failed (weave-os/router#323: dropping it instead left reasoning
/// models at their least effort).
fn reasoning_effort(thinking: Option<&Value>, config: Option<&Value>) -> Result<Option<&'static str>, GatewayError> {
    let from_config = match config {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) if c.keys().all(|k| k == "effort" || k == "format") => match c.get("effort").map(Value::as_str) {
            Some(Some("low")) => Some("low"),
            Some(Some("medium")) => Some("medium"),
            Some(Some("high" | "xhigh" | "max")) => Some("high"),
            None => None,
            Some(_) => return Err(refuse("output_config", "effort must be low, medium, high, xhigh or max")),
        },
        Some(_) => return Err(refuse("output_config", "only its effort and format have a translation")),
    };
    let from_thinking = match thinking {
        None | Some(Value::Null) => None,
        Some(t) => match (t.get("type").and_then(Value::as_str), t.get("budget_tokens").and_then(Value::as_u64)) {
            (Some("disabled" | "adaptive"), _) => None,
            (Some("enabled"), Some(b)) if b < 4096 => Some("low"),
            (Some("enabled"), Some(b)) if b < 16384 => Some("medium"),
            (Some("enabled"), Some(_)) => Some("high"),
            _ => return Err(refuse("thinking", "must be enabled with budget_tokens, adaptive or disabled")),
        },
    };
    Ok(from_config.or(from_thinking))
}

/// Whether an OpenAI-format model takes `reasoning_effort`. OpenAI's models
/// that do not reason refuse it (`400 unsupported_parameter` "Unsupported
/// parameter: 'reasoning_effort' is not supported with this model.",
/// carlrobertoh/ProxyAI#1203), so every Claude Code turn (it sends
/// `thinking` whatever the model) to gpt-4.1 or gpt-4o failed; for them the
/// effort is left out, as BerriAI/litellm#38842 does: they do not reason
/// either way, and the output cap still bounds the answer. Known by name:
/// the GPT-4 and GPT-3.5 families, `chatgpt-*`, GPT-5's chat models
/// (`gpt-5-chat-latest`); a router's provider prefix (`openai/gpt-4o`) is
/// looked past. Any other model (o-series, GPT-5, DeepSeek, Gemini, models
/// this list does not know) gets the effort.
fn takes_reasoning_effort(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    let chat_only = name.starts_with("gpt-5") && name.contains("-chat");
    !(chat_only || ["gpt-4", "gpt-3.5", "chatgpt-"].iter().any(|family| name.starts_with(family)))
}

/// OpenAI's reasoning models (the o-series, GPT-5 and later but their
/// chat models), by name past a router's prefix.
pub(super) fn openai_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    let o_series = name.strip_prefix('o').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    o_series || (gpt_version(&name).is_some_and(|v| v >= (5, 0)) && takes_reasoning_effort(&name))
}

/// OpenAI's `response_format` for Anthropic's structured output
/// (`output_config.format`, `json_schema`): strict, as Anthropic's
/// constrained decoding is (OpenAI then wants every property `required`
/// and `additionalProperties: false`, and says so when a schema lacks them).
fn response_format(format: &Value) -> Result<Value, GatewayError> {
    match (format.get("type").and_then(Value::as_str), format.get("schema").filter(|s| s.is_object())) {
        (Some("json_schema"), Some(schema)) => Ok(json!({"type": "json_schema", "json_schema": {"name": "output", "strict": true, "schema": schema}})),
        _ => Err(refuse("output_config", "format must be json_schema with a schema object")),
    }
}

/// The GPT version in a model name (`gpt-5.4-mini` 5.4, `openai/gpt-6-astra` 6.0).
fn gpt_version(model: &str) -> Option<(u32, u32)> {
    let name = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    let version = name.strip_prefix("gpt-")?.split('-').next()?.to_string();
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    Some((major, parts.next().map_or(Some(0), |m| m.parse().ok())?))
}

/// The `reasoning_effort` to send beside function tools. OpenAI's GPT-5.2
/// and later refuse function tools with a reasoning effort in chat
/// completions (400, `param: reasoning_effort`, "Function tools with
/// reasoning_effort are not supported for gpt-5.4 in /v1/chat/completions.
/// Please use /v1/responses instead.": pipecat-ai/pipecat#4043, and a
/// recorded answer for gpt-5.4-mini in braintrustdata/lingua), and from
/// GPT-5.6 their own default effort too, so `none` must be sent ("… or set
/// reasoning_effort to 'none'": GoogleChromeLabs/webmcp-tools#417,
/// laurent22/joplin#16451). Claude Code sends tools on every turn, so every
/// turn it thought in failed on these models; now it is answered without
/// reasoning, as livekit/agents#5088 does. (GPT-6 models refuse `none` as
/// well, decolua/9router#4031: their tool turns need the Responses API.)
fn effort_beside_tools(effort: Option<&'static str>, model: &str) -> Option<&'static str> {
    match gpt_version(model) {
        Some(v) if v >= (5, 6) && takes_reasoning_effort(model) => Some("none"),
        Some(v) if v >= (5, 2) => None,
        _ => effort,
    }
}

/// A tool result's content for an OpenAI `tool` message, which holds text
/// only, and the images and documents it carried (Claude Code's Read tool
/// answers with an image block for a screenshot, a document block for a
/// PDF: refused, a session on an OpenAI-format model broke at the first
/// one). They go in the user message that follows the tool messages (OpenAI
/// wants every tool message right after the assistant's calls), and the
/// tool message says so.
fn tool_result(content: &Value, i: usize) -> Result<(String, Vec<Value>), GatewayError> {
    let Value::Array(blocks) = content else {
        return Ok((text_of(content, i)?, Vec::new()));
    };
    let (mut text, mut attached) = (String::new(), Vec::new());
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block_text(b, i)?),
            Some("image") => attached.push(image_part(b, i)?),
            Some("document") => attached.push(file_part(b, i)?),
            _ => return Err(bad_message(i, "tool_result blocks other than text, image and document cannot be translated")),
        }
    }
    if !attached.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str("(The result's images and documents follow in the next user message.)");
    }
    Ok((text, attached))
}

/// An Anthropic `document` block as an OpenAI part: a base64 PDF as a
/// `file` part (`file_data`, the `data:` URL OpenAI wants), a plain-text
/// document as text. A URL or an uploaded file exists only at Anthropic.
fn file_part(b: &Value, i: usize) -> Result<Value, GatewayError> {
    let src = b.get("source").unwrap_or(&Value::Null);
    let field = |k: &str| src.get(k).and_then(Value::as_str);
    let data = || field("data").ok_or_else(|| bad_message(i, "a document's source.data must be a string"));
    match (field("type"), field("media_type")) {
        (Some("base64"), Some("application/pdf")) => {
            let name = b.get("title").and_then(Value::as_str).unwrap_or("document.pdf");
            Ok(json!({"type": "file", "file": {"filename": name, "file_data": format!("data:application/pdf;base64,{}", data()?)}}))
        }
        (Some("text"), _) => Ok(json!({"type": "text", "text": data()?})),
        _ => Err(bad_message(i, "only base64 PDF and plain-text documents can be translated")),
    }
}

fn image_part(b: &Value, i: usize) -> Result<Value, GatewayError> {
    let src = b.get("source").unwrap_or(&Value::Null);
    let url = match src.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            src.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
            src.get("data").and_then(Value::as_str).unwrap_or("")
        ),
        Some("url") => src.get("url").and_then(Value::as_str).unwrap_or("").to_string(),
        _ => return Err(bad_message(i, "only base64 and url image sources can be translated")),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// DeepSeek's models (by name), whose thinking mode (api-docs.deepseek.com,
/// Thinking Mode) is on unless the request says `thinking: {"type":
/// "disabled"}`, and which then want their earlier reasoning back as the
/// assistant message's `reasoning_content` for every assistant turn between
/// two user messages that called tools: "The `reasoning_content` in the
/// thinking mode must be passed back to the API." (Gitlawb/openclaude#878,
/// syt2/paper-chat-for-zotero#16). OpenAI's own models never get either
/// member.
pub(super) fn is_deepseek(model: &str) -> bool {
    model.to_ascii_lowercase().contains("deepseek")
}

/// DeepSeek's `thinking` for a request that `asked` for it: enabled, but
/// not when a tool loop in `msgs` lacks the reasoning DeepSeek wants back
/// (every assistant turn between two user turns where one called tools
/// must carry its `reasoning_content`, api-docs.deepseek.com, Thinking
/// Mode): a conversation begun on another model, or whose reasoning the
/// client dropped, would be refused ("The `reasoning_content` in the
/// thinking mode must be passed back to the API."); that turn goes without
/// thinking instead, as a Claude tool loop's does.
pub(super) fn deepseek_thinking(msgs: &[Value], asked: bool) -> Value {
    json!({"type": if asked && deepseek_loops_complete(msgs) { "enabled" } else { "disabled" }})
}

/// Whether every tool loop in `msgs` carries DeepSeek's reasoning back.
fn deepseek_loops_complete(msgs: &[Value]) -> bool {
    let role = |m: &Value, r: &str| m.get("role").and_then(Value::as_str) == Some(r);
    msgs.split(|m| role(m, "user")).all(|span| {
        let mut assistants = span.iter().filter(|m| role(m, "assistant"));
        let called = assistants.clone().any(|m| m.get("tool_calls").and_then(Value::as_array).is_some_and(|c| !c.is_empty()));
        !called || assistants.all(|m| m.get("reasoning_content").is_some_and(Value::is_string))
    })
}

/// One Anthropic turn as OpenAI messages (tool results become `tool` messages).
fn turn(m: &Value, i: usize, out: &mut Vec<Value>, keep_reasoning: bool) -> Result<(), GatewayError> {
    let content = m.get("content").unwrap_or(&Value::Null);
    match m.get("role").and_then(Value::as_str) {
        Some("user") => {
            let Value::Array(blocks) = content else {
                out.push(json!({"role": "user", "content": text_of(content, i)?}));
                return Ok(());
            };
            let mut parts = Vec::new();
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => parts.push(json!({"type": "text", "text": block_text(b, i)?})),
                    Some("image") => parts.push(image_part(b, i)?),
                    Some("document") => parts.push(file_part(b, i)?),
                    Some("tool_result") => {
                        let (text, attached) = tool_result(b.get("content").unwrap_or(&Value::Null), i)?;
                        out.push(json!({"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": text}));
                        parts.extend(attached);
                    }
                    _ => return Err(bad_message(i, "user blocks other than text, image, document and tool_result cannot be translated")),
                }
            }
            if !parts.is_empty() {
                out.push(json!({"role": "user", "content": parts}));
            }
        }
        Some("assistant") => {
            let mut text = String::new();
            let mut reasoning = String::new();
            let mut calls = Vec::new();
            match content {
                Value::String(s) => text.push_str(s),
                Value::Array(blocks) => {
                    for b in blocks {
                        match b.get("type").and_then(Value::as_str) {
                            Some("text") => text.push_str(block_text(b, i)?),
                            Some("tool_use") => calls.push(json!({"id": b.get("id"), "type": "function", "function": {
                                "name": b.get("name"), "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into())}})),
                            // Earlier reasoning goes back only to a model that takes it (see `is_deepseek`).
                            Some("thinking") => reasoning.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or("")),
                            Some("redacted_thinking") => {}
                            _ => return Err(bad_message(i, "assistant blocks other than text, tool_use and thinking cannot be translated")),
                        }
                    }
                }
                _ => return Err(bad_message(i, "content must be a string or an array of blocks")),
            }
            let mut msg = Map::new();
            msg.insert("role".into(), "assistant".into());
            msg.insert("content".into(), if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::from(text) });
            if keep_reasoning && !reasoning.is_empty() {
                msg.insert("reasoning_content".into(), Value::from(reasoning));
            }
            if !calls.is_empty() {
                msg.insert("tool_calls".into(), Value::Array(calls));
            }
            out.push(Value::Object(msg));
        }
        // A system message inside the conversation (Anthropic takes one on
        // recent models: a recorded claude-opus-4-8 answer in braintrustdata/lingua)
        // stays where it is, as OpenAI takes one anywhere.
        Some("system") => out.push(json!({"role": "system", "content": text_of(content, i)?})),
        _ => return Err(bad_message(i, "the role must be user, assistant or system")),
    }
    Ok(())
}

/// The OpenAI chat request for an Anthropic messages request. `cap_field`
/// is the provider's output cap member (`max_completion_tokens` for
/// OpenAI, `max_tokens` for DeepSeek and most compatible APIs).
pub fn messages_to_chat_request(p: &ParsedBody<'_>, upstream_model: &str, cap_field: &str) -> Result<Vec<u8>, GatewayError> {
    let chat = chat_request(p, upstream_model, cap_field, true)?;
    serde_json::to_vec(&Value::Object(chat)).map_err(|_| GatewayError::internal("the translated request could not be written"))
}

/// The same request on its way to OpenAI's Responses API
/// ([`super::to_responses`]), which takes a reasoning effort beside
/// function tools, and streams its usage unasked.
pub fn messages_to_responses_request(p: &ParsedBody<'_>, upstream_model: &str, default_cap: u64) -> Result<Vec<u8>, GatewayError> {
    let chat = chat_request(p, upstream_model, "max_completion_tokens", false)?;
    super::to_responses::chat_to_responses(chat, upstream_model, default_cap)
}

/// `chat_api`: the request goes to chat completions itself (its rules for
/// tools beside an effort, and the stream's usage asked for).
fn chat_request(p: &ParsedBody<'_>, upstream_model: &str, cap_field: &str, chat_api: bool) -> Result<Map<String, Value>, GatewayError> {
    let mut out = Map::new();
    out.insert("model".into(), Value::from(upstream_model));
    let mut system = None;
    let mut msgs = Vec::new();
    let mut parallel = None;
    let mut stream = false;
    let (mut thinking, mut output_config, mut output_format) = (None, None, None);
    for (k, raw) in p.members() {
        let v: Value = serde_json::from_str(raw).map_err(|_| GatewayError::bad_request("invalid_json", "The request body is not valid JSON."))?;
        match k {
            // OpenAI caches prompt prefixes by itself: the markers have no effect there.
            // Context editing (`context_management`: clear old tool results or
            // thinking as the context grows) is Anthropic's; Claude Code sends it
            // on every request (decolua/9router#1468, teremterem/claude-code-gpt-5-codex#116)
            // and refused, no turn reached the model. Left out, the model reads
            // the whole context: more input, all of it in the request, so
            // estimated and reserved as sent.
            "model" | "cache_control" | "context_management" => {}
            "system" => system = Some(text_of(&without_attribution(v), 0).map_err(|_| refuse("system", "may hold only text"))?),
            "messages" => {
                let list = v.as_array().ok_or_else(|| refuse("messages", "must be an array"))?;
                let keep_reasoning = is_deepseek(upstream_model);
                for (i, m) in list.iter().enumerate() {
                    turn(m, i, &mut msgs, keep_reasoning)?;
                }
            }
            "max_tokens" => {
                out.insert(cap_field.to_string(), v);
            }
            // OpenAI's reasoning models refuse `top_p` ("Unsupported parameter:
            // 'top_p' is not supported with this model.", a real answer for
            // gpt-5-nano in braintrustdata/lingua): left out for them, as it
            // shapes nothing a reasoning model samples.
            "top_p" if openai_reasoning_model(upstream_model) => {}
            "temperature" | "top_p" => {
                out.insert(k.to_string(), v);
            }
            "stream" => {
                stream = v.as_bool().unwrap_or(false);
                out.insert("stream".into(), v);
            }
            "stop_sequences" => {
                out.insert("stop".into(), v);
            }
            "metadata" => {
                if let Some(u) = v.get("user_id").and_then(Value::as_str) {
                    out.insert("user".into(), Value::from(u));
                }
            }
            "tools" => {
                let mut tools = Vec::new();
                for t in v.as_array().into_iter().flatten() {
                    if t.get("type").is_some_and(|ty| ty != "custom") {
                        return Err(refuse("tools", "may hold only client tools (server tools such as web search are Anthropic's)"));
                    }
                    let mut f = Map::new();
                    f.insert("name".into(), t.get("name").cloned().unwrap_or(Value::Null));
                    if let Some(d) = t.get("description") {
                        f.insert("description".into(), d.clone());
                    }
                    f.insert("parameters".into(), t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})));
                    tools.push(json!({"type": "function", "function": Value::Object(f)}));
                }
                out.insert("tools".into(), Value::Array(tools));
            }
            "tool_choice" => {
                let choice = match v.get("type").and_then(Value::as_str) {
                    Some("auto") => json!("auto"),
                    Some("any") => json!("required"),
                    Some("none") => json!("none"),
                    Some("tool") => json!({"type": "function", "function": {"name": v.get("name")}}),
                    _ => return Err(refuse("tool_choice", "must be auto, any, none or a tool")),
                };
                if v.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
                    parallel = Some(false);
                }
                out.insert("tool_choice".into(), choice);
            }
            "thinking" => thinking = Some(v),
            "output_config" => output_config = Some(v),
            // The structured-outputs beta's member, before it moved into `output_config.format`.
            "output_format" if !v.is_null() => output_format = Some(v),
            other => return Err(super::unknown_member(other, REFUSED, "an OpenAI-format model")),
        }
    }
    // Read (and refused when malformed) whatever the model, sent only to one that reasons.
    if let Some(format) = output_config.as_ref().and_then(|c| c.get("format")).filter(|f| !f.is_null()).or(output_format.as_ref()) {
        out.insert("response_format".into(), response_format(format)?);
    }
    let effort = reasoning_effort(thinking.as_ref(), output_config.as_ref())?.filter(|_| takes_reasoning_effort(upstream_model));
    let has_tools = out.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    let mut effort = if has_tools && chat_api { effort_beside_tools(effort, upstream_model) } else { effort };
    if is_deepseek(upstream_model) {
        // An Anthropic request thinks only when it asks to; DeepSeek thinks
        // unless told not to, and its reasoning tokens are billed as output.
        let asked = matches!(thinking.as_ref().and_then(|t| t.get("type")).and_then(Value::as_str), Some("enabled" | "adaptive"));
        let thinks = deepseek_thinking(&msgs, asked);
        effort = effort.filter(|_| thinks.get("type").and_then(Value::as_str) == Some("enabled"));
        out.insert("thinking".into(), thinks);
    }
    if let Some(effort) = effort {
        out.insert("reasoning_effort".into(), Value::from(effort));
    }
    if let Some(s) = system.filter(|s| !s.is_empty()) {
        msgs.insert(0, json!({"role": "system", "content": s}));
    }
    out.insert("messages".into(), Value::Array(msgs));
    if let Some(p) = parallel {
        out.insert("parallel_tool_calls".into(), Value::Bool(p));
    }
    if stream && chat_api {
        // The usage arrives only when asked for; the client never sees the chunk.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(out)
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's `usage` for OpenAI's, split as Anthropic splits it (input
/// not read from or written to the cache, reads, writes): the cache read
/// is DeepSeek's `prompt_cache_hit_tokens` where given (what it bills;
/// its `cached_tokens` may differ), else `cached_tokens`; the writes are
/// GPT-5.6's `cache_write_tokens` (../shared/WIRE.md), which were counted
/// as plain input.
/// Read by the filter's own usage parser (`usage::usage_from_value`), so
/// what the client is told is what was priced.
pub fn usage_of(u: &Value) -> Value {
    let u = crate::usage::usage_from_value(crate::request::Api::OpenAiChat, u.clone()).unwrap_or_default();
    json!({"input_tokens": u.input_tokens - u.cached_input_tokens - u.cache_write_tokens, "cache_creation_input_tokens": u.cache_write_tokens,
           "cache_read_input_tokens": u.cached_input_tokens, "output_tokens": u.output_tokens})
}

/// The Anthropic message for a chat completion body (or, for an error
/// status, Anthropic's error). `None`: not JSON, passed on as it is.
pub fn chat_to_message(body: &[u8], status: u16) -> Option<Vec<u8>> {
    serde_json::to_vec(&chat_value_to_message(&serde_json::from_slice(body).ok()?, status)?).ok()
}

/// The same, on the parsed body (a chain of translations parses once).
pub fn chat_value_to_message(v: &Value, status: u16) -> Option<Value> {
    if status >= 400 || v.get("error").is_some_and(|e| !e.is_null()) {
        let e = v.get("error").unwrap_or(&Value::Null);
        let kind = match status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            503 | 529 => "overloaded_error",
            _ => "api_error",
        };
        let out = json!({"type": "error", "error": {"type": kind,
                         "message": e.get("message").cloned().unwrap_or_else(|| Value::from("The provider refused the request."))}});
        return Some(out);
    }
    let choice = v.pointer("/choices/0").unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    // DeepSeek's (and other OpenAI-format reasoners') reasoning, as the
    // thinking block an Anthropic client keeps and sends back (see
    // `is_deepseek`); no signature: no Anthropic model wrote it.
    if let Some(r) = msg.get("reasoning_content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = msg.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for c in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": c.get("id"), "name": c.pointer("/function/name"), "input": input}));
    }
    let out = json!({
        "id": format!("msg_{}", v.get("id").and_then(Value::as_str).unwrap_or("")),
        "type": "message", "role": "assistant", "model": v.get("model"), "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)), "stop_sequence": null,
        "usage": usage_of(v.get("usage").unwrap_or(&Value::Null)),
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse_chat, Api};

    fn tr(body: Value) -> Result<Value, GatewayError> {
        tr_for("gpt-5.4", body)
    }

    fn tr_for(model: &str, body: Value) -> Result<Value, GatewayError> {
        let b = serde_json::to_vec(&body).unwrap();
        let p = parse_chat(Api::AnthropicMessages, &b).unwrap();
        messages_to_chat_request(&p, model, "max_completion_tokens").map(|v| serde_json::from_slice(&v).unwrap())
    }

    #[test]
    fn an_anthropic_tool_conversation_becomes_an_openai_one() {
        let got = tr(json!({
            "model": "openai/gpt-5.4", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."}],
            "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "stream": true,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                                             {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                                  {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "png"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a PNG"}]}],
            "tools": [{"name": "lookup", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}})).unwrap();
        assert_eq!(got, json!({
            "model": "gpt-5.4", "max_completion_tokens": 100, "stop": ["END"], "user": "u1", "stream": true,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function",
                    "function": {"name": "lookup", "arguments": "{\"q\":\"png\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "a PNG"}],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "parallel_tool_calls": false,
            "stream_options": {"include_usage": true}}));
    }

    #[test]
    fn claude_codes_attribution_line_is_left_out_so_the_prefix_stays_cacheable() {
        let system = |cch: &str| json!([
            {"type": "text", "text": format!("x-anthropic-billing-header: cc_version=2.1.153.d02; cc_entrypoint=cli; cch={cch};")},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]);
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let a = tr(json!({"model": "m", "max_tokens": 5, "system": system("97bd6"), "messages": msgs})).unwrap();
        let b = tr(json!({"model": "m", "max_tokens": 5, "system": system("24c2d"), "messages": msgs})).unwrap();
        assert_eq!(a["messages"][0], json!({"role": "system", "content": "You are Claude Code."}));
        assert_eq!(a, b, "two turns differing only in cch are the same prompt upstream");
        // In a string, or first in a block with more text: only that line goes.
        let c = tr(json!({"model": "m", "max_tokens": 5, "messages": msgs,
                          "system": "x-anthropic-billing-header: cc_version=2.1.1; cch=1;\nBe brief."})).unwrap();
        assert_eq!(c["messages"][0]["content"], "Be brief.");
        // Only at the start: the same words elsewhere are the client's text.
        let d = tr(json!({"model": "m", "max_tokens": 5, "messages": msgs, "system": "Quote: x-anthropic-billing-header: x"})).unwrap();
        assert_eq!(d["messages"][0]["content"], "Quote: x-anthropic-billing-header: x");
        // Nothing else left: no system message.
        let e = tr(json!({"model": "m", "max_tokens": 5, "messages": msgs, "system": "x-anthropic-billing-header: cch=1;"})).unwrap();
        assert_eq!(e["messages"][0]["role"], "user");
    }

    #[test]
    fn how_much_claude_would_think_is_how_much_the_model_reasons() {
        let effort = |extra: Value| {
            let mut body = json!({"model": "m", "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            tr(body).unwrap().get("reasoning_effort").cloned()
        };
        let budget = |b: u64| effort(json!({"thinking": {"type": "enabled", "budget_tokens": b}}));
        assert_eq!((budget(1024), budget(4095)), (Some(json!("low")), Some(json!("low"))));
        assert_eq!((budget(4096), budget(16383)), (Some(json!("medium")), Some(json!("medium"))));
        assert_eq!(budget(31999), Some(json!("high")), "Claude Code's usual budget");
        assert_eq!(effort(json!({"thinking": {"type": "disabled"}})), None);
        assert_eq!(effort(json!({"thinking": {"type": "adaptive"}})), None, "the model's default");
        assert_eq!(effort(json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}})), Some(json!("medium")));
        assert_eq!(effort(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}, "output_config": {"effort": "max"}})), Some(json!("high")));
        assert_eq!(effort(json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}})), Some(json!("high")), "Opus 4.7's level");
        assert_eq!(effort(json!({})), None);
        // Beside function tools, GPT-5.2 and later take no effort in chat, and from 5.6 need `none`.
        let tools = json!([{"name": "Read", "input_schema": {"type": "object"}}]);
        let with_tools = |model: &str| {
            tr_for(model, json!({"model": "m", "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}], "tools": tools,
                                 "thinking": {"type": "enabled", "budget_tokens": 31999}})).unwrap().get("reasoning_effort").cloned()
        };
        assert_eq!(with_tools("gpt-5.1"), Some(json!("high")));
        assert_eq!(with_tools("o3"), Some(json!("high")));
        assert_eq!(with_tools("deepseek-v4"), Some(json!("high")));
        assert_eq!((with_tools("gpt-5.2"), with_tools("openai/gpt-5.4-mini")), (None, None));
        assert_eq!((with_tools("gpt-5.6-terra"), with_tools("gpt-6-astra")), (Some(json!("none")), Some(json!("none"))));
        assert_eq!(with_tools("gpt-5.6-chat-latest"), None, "a chat model takes no effort at all");
        assert_eq!((gpt_version("gpt-5"), gpt_version("gpt-5.4-mini"), gpt_version("gpt-4o"), gpt_version("o3")), (Some((5, 0)), Some((5, 4)), None, None));
        // A model that does not reason refuses the member: left out for it, still checked.
        let to = |model: &str, thinking: Value| {
            tr_for(model, json!({"model": "m", "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}], "thinking": thinking}))
        };
        let enabled = json!({"type": "enabled", "budget_tokens": 31999});
        for model in ["gpt-4.1", "gpt-4o-mini", "GPT-4o", "gpt-3.5-turbo", "chatgpt-4o-latest", "gpt-5-chat-latest", "openai/gpt-4.1"] {
            assert!(to(model, enabled.clone()).unwrap().get("reasoning_effort").is_none(), "{model}");
        }
        for model in ["gpt-5.4", "o4-mini", "o3", "gpt-5.4-mini", "deepseek-reasoner", "gemini-2.5-flash", "openai/gpt-5.4"] {
            assert_eq!(to(model, enabled.clone()).unwrap()["reasoning_effort"], "high", "{model}");
        }
        assert_eq!(to("gpt-4.1", json!({"type": "enabled"})).unwrap_err().param, Some("thinking"));
        // Claude Code's context editing is left out: the model reads the whole context.
        let cm = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}});
        assert!(tr(cm).unwrap().get("context_management").is_none());
        let e = tr(json!({"model": "m", "max_tokens": 5, "messages": [], "output_config": {"effort": "extreme"}})).unwrap_err();
        assert_eq!(e.param, Some("output_config"));
        // Not a string (was left out silently, the model then reasoning at its default).
        let e = tr(json!({"model": "m", "max_tokens": 5, "messages": [], "output_config": {"effort": 7}})).unwrap_err();
        assert_eq!(e.param, Some("output_config"));
    }

    #[test]
    fn what_cannot_be_translated_is_refused_by_name() {
        for (body, param) in [
            (json!({"model": "m", "max_tokens": 5, "messages": [], "top_k": 5}), "top_k"),
            (json!({"model": "m", "max_tokens": 5, "messages": [], "mcp_servers": []}), "mcp_servers"),
            (json!({"model": "m", "max_tokens": 5, "messages": [], "thinking": {"type": "enabled"}}), "thinking"),
            (json!({"model": "m", "max_tokens": 5, "messages": [], "output_config": {"format": {"type": "json_schema"}}}), "output_config"),
            (json!({"model": "m", "max_tokens": 5, "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}), "tools"),
            (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]}), "messages"),
            // A text block whose text is not a string (was read as empty and sent on).
            (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}]}), "messages"),
            (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "text"}]}]}), "messages"),
            (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": null}]}]}]}), "messages"),
            (json!({"model": "m", "max_tokens": 5, "messages": [], "system": [{"type": "text", "text": ["x"]}]}), "system"),
        ] {
            let e = tr(body).unwrap_err();
            assert_eq!((e.code, e.param), ("untranslatable_field", Some(param)), "{}", e.message);
        }
    }

    #[test]
    fn a_tool_results_image_follows_the_tool_messages() {
        let got = tr(json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": "Look at both"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}},
                                              {"type": "tool_use", "id": "t2", "name": "Read", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
                {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "a.txt: hello"}]},
                {"type": "text", "text": "Which is newer?"}]}]})).unwrap();
        let m = got["messages"].as_array().unwrap();
        let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "tool", "tool", "user"]);
        assert_eq!(m[2]["content"], "(The result's images and documents follow in the next user message.)");
        assert_eq!(m[3]["content"], "a.txt: hello");
        // The results' attachments where the results were, then the user's own words.
        assert_eq!(m[4]["content"], json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}, {"type": "text", "text": "Which is newer?"}]));
        let bad = json!([{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "search_result", "source": "x"}]}]);
        assert_eq!(tr(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": bad}]})).unwrap_err().param, Some("messages"));
    }

    #[test]
    fn what_a_recorded_anthropic_request_carries_reaches_an_openai_model() {
        // braintrustdata/lingua's recorded requests, sent to an OpenAI model: top_p
        // (refused by reasoning models), a system message mid-conversation, the
        // structured-outputs beta's output_format.
        let base = json!({"model": "m", "max_tokens": 100, "top_p": 0.9, "messages": [{"role": "user", "content": "hi"},
            {"role": "system", "content": "Answer in French."}],
            "output_format": {"type": "json_schema", "schema": {"type": "object", "properties": {}, "required": [], "additionalProperties": false}}});
        let to_reasoner = tr_for("openai/gpt-5.4", base.clone()).unwrap();
        assert!(to_reasoner.get("top_p").is_none(), "{to_reasoner}");
        assert_eq!(to_reasoner["messages"][1], json!({"role": "system", "content": "Answer in French."}));
        assert_eq!(to_reasoner["response_format"]["json_schema"]["strict"], true);
        for keeps in ["gpt-4.1", "gpt-5.2-chat-latest", "deepseek-v4"] {
            assert_eq!(tr_for(keeps, base.clone()).unwrap()["top_p"], 0.9, "{keeps}");
        }
        assert!(openai_reasoning_model("o3-mini") && openai_reasoning_model("gpt-6-astra") && !openai_reasoning_model("gpt-4o"));
    }

    #[test]
    fn a_document_becomes_a_file_part() {
        let doc = |source: Value| tr(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "document", "source": source, "title": "report.pdf"}, {"type": "text", "text": "Summarise"}]}]}));
        let got = doc(json!({"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"})).unwrap();
        assert_eq!(got["messages"][0]["content"][0], json!({"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}));
        assert_eq!(doc(json!({"type": "text", "media_type": "text/plain", "data": "plain words"})).unwrap()["messages"][0]["content"][0],
                   json!({"type": "text", "text": "plain words"}));
        assert_eq!(doc(json!({"type": "url", "url": "https://x.test/a.pdf"})).unwrap_err().param, Some("messages"));
        // Data that is no string is refused by name, not sent as an empty document.
        for bad in [json!({"type": "base64", "media_type": "application/pdf", "data": 7}), json!({"type": "base64", "media_type": "application/pdf"}),
                    json!({"type": "text", "data": null})] {
            assert!(doc(bad).unwrap_err().message.contains("source.data must be a string"));
        }
    }

    #[test]
    fn a_structured_output_becomes_a_strict_json_schema_response_format() {
        // lingua's outputConfigEffortWithJsonSchemaParam: a format and an effort together.
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false});
        let got = tr(json!({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Extract"}],
                            "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}}})).unwrap();
        assert_eq!(got["response_format"], json!({"type": "json_schema", "json_schema": {"name": "output", "strict": true, "schema": schema}}));
        assert_eq!(got["reasoning_effort"], "low");
        let bad = tr(json!({"model": "m", "max_tokens": 100, "messages": [], "output_config": {"format": {"type": "json_object"}}})).unwrap_err();
        assert_eq!(bad.param, Some("output_config"));
    }

    #[test]
    fn deepseeks_reasoning_goes_back_and_forth_as_thinking() {
        // The answer: reasoning_content becomes the first block, a thinking block Claude Code keeps.
        let body = br#"{"id":"c1","model":"deepseek-v4","choices":[{"index":0,"message":{"role":"assistant","content":null,
            "reasoning_content":"Read it first.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"Read","arguments":"{}"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":10,"completion_tokens":5}}"#;
        let v: Value = serde_json::from_slice(&chat_to_message(body, 200).unwrap()).unwrap();
        assert_eq!(v["content"][0], json!({"type": "thinking", "thinking": "Read it first.", "signature": ""}));
        assert_eq!(v["content"][1]["type"], "tool_use");
        // The next request: the thinking goes back as reasoning_content to DeepSeek, never to OpenAI.
        let next = json!({"model": "m", "max_tokens": 100, "messages": [
            {"role": "user", "content": "Read a.txt"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "Read it first.", "signature": ""},
                                              {"type": "tool_use", "id": "call_1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "hello"}]}]});
        let to_deepseek = tr_for("deepseek-v4", next.clone()).unwrap();
        assert_eq!(to_deepseek["messages"][1]["reasoning_content"], "Read it first.");
        // DeepSeek thinks by default: told to only when the client asked, with its effort.
        assert_eq!((&to_deepseek["thinking"], to_deepseek.get("reasoning_effort")), (&json!({"type": "disabled"}), None));
        let mut asked = next.clone();
        asked["thinking"] = json!({"type": "enabled", "budget_tokens": 8192});
        asked["output_config"] = json!({"effort": "high"});
        let on = tr_for("deepseek-v4", asked.clone()).unwrap();
        assert_eq!((&on["thinking"], &on["reasoning_effort"]), (&json!({"type": "enabled"}), &json!("high")));
        asked["thinking"] = json!({"type": "disabled"});
        let off = tr_for("deepseek-v4", asked).unwrap();
        assert_eq!((&off["thinking"], off.get("reasoning_effort")), (&json!({"type": "disabled"}), None), "an effort with thinking off asks nothing");
        assert!(tr_for("gpt-5.4", next.clone()).unwrap().get("thinking").is_none());
        assert!(tr_for("gpt-5.4", next).unwrap()["messages"][1].get("reasoning_content").is_none());
    }

    #[test]
    fn a_chat_completion_comes_back_as_an_anthropic_message() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-5.4","choices":[{"index":0,
            "message":{"role":"assistant","content":"Looking.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":100,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":64}}}"#;
        let v: Value = serde_json::from_slice(&chat_to_message(body, 200).unwrap()).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["content"], json!([{"type": "text", "text": "Looking."}, {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}]));
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["usage"], json!({"input_tokens": 36, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 64, "output_tokens": 9}));
        // GPT-5.6's cache writes are Anthropic's cache creation, not plain input.
        let u = json!({"prompt_tokens": 20000, "completion_tokens": 120, "prompt_tokens_details": {"cached_tokens": 4096, "cache_write_tokens": 15872}});
        assert_eq!(usage_of(&u), json!({"input_tokens": 32, "cache_creation_input_tokens": 15872, "cache_read_input_tokens": 4096, "output_tokens": 120}));
        // DeepSeek's hit tokens are what it bills as read, whatever cached_tokens says.
        let u = json!({"prompt_tokens": 1000, "completion_tokens": 2, "prompt_cache_hit_tokens": 640, "prompt_cache_miss_tokens": 360,
                       "prompt_tokens_details": {"cached_tokens": 768}});
        assert_eq!(usage_of(&u)["cache_read_input_tokens"], 640);
        assert_eq!(usage_of(&u)["input_tokens"], 360);
        // Hostile counts: never below zero.
        let u = json!({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 50}});
        assert_eq!(usage_of(&u), json!({"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": 0}));
        let e: Value = serde_json::from_slice(&chat_to_message(br#"{"error":{"message":"slow down","type":"requests"}}"#, 429).unwrap()).unwrap();
        assert_eq!(e, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}));
    }
}
