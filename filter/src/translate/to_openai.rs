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
    let name = super::bare_model(model);
    let chat_only = name.starts_with("gpt-5") && name.contains("-chat");
    !(chat_only || ["gpt-4", "gpt-3.5", "chatgpt-"].iter().any(|family| name.starts_with(family)))
}

/// OpenAI's reasoning models (the o-series, GPT-5 and later but their
/// chat models), by name past a router's prefix.
pub(super) fn openai_reasoning_model(model: &str) -> bool {
    let name = super::bare_model(model);
    let o_series = name.strip_prefix('o').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    o_series || (gpt_version(&name).is_some_and(|v| v >= (5, 0)) && takes_reasoning_effort(&name))
}

/// OpenAI's `response_format` for Anthropic's structured output
/// (`output_config.format`, `json_schema`): strict, as Anthropic's
/// constrained decoding is, when the schema is one OpenAI's strict mode
/// takes. Anthropic takes optional properties (a `required` that leaves
/// some out: a Pydantic model's defaults); OpenAI's strict mode refuses
/// them ("'required' is required to be supplied and to be an array
/// including every key in properties"), so such a schema goes non-strict:
/// served and followed, not guaranteed, where it was refused upstream
/// before.
fn response_format(format: &Value) -> Result<Value, GatewayError> {
    match (format.get("type").and_then(Value::as_str), format.get("schema").filter(|s| s.is_object())) {
        (Some("json_schema"), Some(schema)) => {
            Ok(json!({"type": "json_schema", "json_schema": {"name": "output", "strict": strict_compatible(schema, 0), "schema": schema}}))
        }
        _ => Err(refuse("output_config", "format must be json_schema with a schema object")),
    }
}

/// Whether OpenAI's strict mode takes `schema`: every object with
/// `properties` lists them all in `required` and closes itself with
/// `additionalProperties: false`, at every depth (properties, items,
/// `anyOf`, `$defs`). Deeper than 64 levels counts as not (OpenAI's own
/// limit is lower).
fn strict_compatible(schema: &Value, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    let Some(o) = schema.as_object() else {
        return schema.is_boolean();
    };
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = o.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        if props.keys().any(|k| !required.contains(&k.as_str())) || o.get("additionalProperties") != Some(&Value::Bool(false)) {
            return false;
        }
    }
    let nested = |name: &str| -> Vec<&Value> {
        match o.get(name) {
            Some(Value::Object(m)) if matches!(name, "properties" | "$defs" | "definitions") => m.values().collect(),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            _ => Vec::new(),
        }
    };
    ["properties", "$defs", "definitions", "items", "anyOf", "allOf"].iter().flat_map(|n| nested(n)).all(|s| strict_compatible(s, depth + 1))
}

/// The GPT version in a model name (`gpt-5.4-mini` 5.4, `openai/gpt-6-astra` 6.0).
pub(super) fn gpt_version(model: &str) -> Option<(u32, u32)> {
    let name = super::bare_model(model);
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
/// OpenAI, `max_tokens` for DeepSeek and most compatible APIs); it carries
/// the client's `max_tokens`, or `default_cap` (the gateway's
/// `default_max_tokens`) when it set none.
pub fn messages_to_chat_request(p: &ParsedBody<'_>, upstream_model: &str, cap_field: &str, default_cap: u64) -> Result<Vec<u8>, GatewayError> {
    let chat = chat_request(p, upstream_model, (cap_field, default_cap), true)?;
    serde_json::to_vec(&Value::Object(chat)).map_err(|_| GatewayError::internal("the translated request could not be written"))
}

/// The same request on its way to OpenAI's Responses API
/// ([`super::to_responses`]), which takes a reasoning effort beside
/// function tools, and streams its usage unasked.
pub fn messages_to_responses_request(p: &ParsedBody<'_>, upstream_model: &str, default_cap: u64) -> Result<Vec<u8>, GatewayError> {
    let chat = chat_request(p, upstream_model, ("max_completion_tokens", default_cap), false)?;
    super::to_responses::chat_to_responses(chat, upstream_model, default_cap)
}

/// `chat_api`: the request goes to chat completions itself (its rules for
/// tools beside an effort, and the stream's usage asked for).
/// `cap`: the provider's cap member and the cap for a request that set none.
fn chat_request(p: &ParsedBody<'_>, upstream_model: &str, cap: (&str, u64), chat_api: bool) -> Result<Map<String, Value>, GatewayError> {
    let mut out = Map::new();
    out.insert("model".into(), Value::from(upstream_model));
    // The cap the reservation assumed, as read (a `max_tokens` of null or
    // none at all went up as null or nothing before, and OpenAI took that as
    // no cap: an answer up to the model's limit against a reservation of
    // `default_max_tokens`).
    let (cap_field, default_cap) = cap;
    out.insert(cap_field.to_string(), Value::from(p.request.max_tokens.unwrap_or(default_cap)));
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
            "max_tokens" => {}
            // (Left out below where the model refuses them at the effort sent.)
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
                out.insert("tools".into(), function_tools(&v)?);
            }
            "tool_choice" => {
                out.insert("tool_choice".into(), tool_choice(&v)?);
                if v.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
                    parallel = Some(false);
                }
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
    reasoning(&mut out, upstream_model, thinking.as_ref(), output_config.as_ref(), &msgs, chat_api)?;
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

/// Anthropic's client tools as OpenAI function tools (a server tool, such
/// as web search, is Anthropic's own: refused).
fn function_tools(v: &Value) -> Result<Value, GatewayError> {
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
    Ok(Value::Array(tools))
}

/// Anthropic's `tool_choice` as OpenAI's.
fn tool_choice(v: &Value) -> Result<Value, GatewayError> {
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => json!({"type": "function", "function": {"name": v.get("name")}}),
        _ => return Err(refuse("tool_choice", "must be auto, any, none or a tool")),
    })
}

/// The reasoning the request asks for (`thinking`, `output_config.effort`)
/// as the upstream model takes it: an effort only for a model that
/// reasons, DeepSeek's own `thinking`, and the sampling members a
/// reasoning model refuses left out.
fn reasoning(out: &mut Map<String, Value>, upstream_model: &str, thinking: Option<&Value>, output_config: Option<&Value>, msgs: &[Value], chat_api: bool) -> Result<(), GatewayError> {
    let effort = reasoning_effort(thinking, output_config)?.filter(|_| takes_reasoning_effort(upstream_model));
    let has_tools = out.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    let mut effort = if has_tools && chat_api { effort_beside_tools(effort, upstream_model) } else { effort };
    if is_deepseek(upstream_model) {
        // An Anthropic request thinks only when it asks to; DeepSeek thinks
        // unless told not to, and its reasoning tokens are billed as output.
        let asked = matches!(thinking.and_then(|t| t.get("type")).and_then(Value::as_str), Some("enabled" | "adaptive"));
        let thinks = deepseek_thinking(msgs, asked);
        effort = effort.filter(|_| thinks.get("type").and_then(Value::as_str) == Some("enabled"));
        out.insert("thinking".into(), thinks);
    }
    if let Some(effort) = effort {
        out.insert("reasoning_effort".into(), Value::from(effort));
    }
    // OpenAI's reasoning models refuse a temperature other than 1 and any
    // top_p unless they do not reason ([`super::sampling`]): left out, as
    // they shape nothing such a model samples.
    if !super::sampling::openai_takes(upstream_model, effort) {
        out.retain(|k, v| !(matches!(k.as_str(), "temperature" | "top_p") && super::sampling::refused_value(k, v)));
    }
    Ok(())
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
/// as plain input; the reasoning tokens are Anthropic's thinking tokens
/// (`output_tokens_details.thinking_tokens`, within the output).
/// Read by the filter's own usage parser (`usage::usage_from_value`), so
/// what the client is told is what was priced.
pub fn usage_of(u: &Value) -> Value {
    let u = crate::usage::usage_from_value(crate::request::Api::OpenAiChat, u.clone()).unwrap_or_default();
    json!({"input_tokens": u.input_tokens - u.cached_input_tokens - u.cache_write_tokens, "cache_creation_input_tokens": u.cache_write_tokens,
           "cache_read_input_tokens": u.cached_input_tokens, "output_tokens": u.output_tokens,
           "output_tokens_details": {"thinking_tokens": u.reasoning_tokens}})
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
mod tests;
