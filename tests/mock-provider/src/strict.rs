//! What the real APIs refuse, refused here too, with their error bodies.
//!
//! Sources (see also ../shared/WIRE.md and tests/captures/README.md):
//! - OpenAI Chat Completions: the API reference's list of request
//!   parameters (platform.openai.com/docs/api-reference/chat/create); an
//!   unknown one is `400 invalid_request_error "Unrecognized request argument
//!   supplied: <name>"`; a wrong type is `"Invalid type for '<name>': expected
//!   <type>, but got <type> instead."` with `code: invalid_type`;
//!   `stream_options` without `stream: true` is refused.
//! - Anthropic Messages: the API reference's request body
//!   (docs.anthropic.com/en/api/messages); unknown top-level members are
//!   `400 invalid_request_error "<field>: Extra inputs are not permitted"`
//!   (anthropics/claude-code#21612 for `context_management`, amrit110/oli#7
//!   for `response_format`); `max_tokens` is required and ≥ 1.
//! - Empty messages. Anthropic: no message at all is `"messages: at least
//!   one message is required"` (langchain-ai/langchain#31657, #31696); an
//!   empty text block `"messages: text content blocks must be non-empty"`
//!   (cecli-dev/cecli#102, a real response body); empty content before the
//!   last message `"messages.<i>: all messages must have non-empty content
//!   except for the optional final assistant message"`
//!   (glowingjade/obsidian-smart-composer#156, a real response body).
//!   OpenAI: `"Invalid 'messages': empty array. Expected an array with
//!   minimum length 1, but got an empty array instead."`, `param`
//!   `messages`, `code` `empty_array` (a real api.openai.com answer of
//!   2025 recorded in envoyproxy/ai-gateway
//!   `tests/internal/testopenai/cassettes/chat-no-messages.yaml`; in 2023
//!   it was "[] is too short - 'messages'", run-llama/llama_index#9373);
//!   empty strings in content are accepted.
//! - Anthropic's cache diagnostics: `diagnostics` (`previous_message_id`, a
//!   string or null) is a request member (anthropic-sdk-python 2.17.0
//!   `types/message_create_params.py`; the answer's: `diagnostics.rs`; the
//!   SDK's `workspace_id` and `user_profile_id` go as headers, not members).
//! - Anthropic token counting (`POST /v1/messages/count_tokens`): the API
//!   reference's body (platform.claude.com/docs/en/api/messages/count_tokens:
//!   `messages`, `model`, `cache_control`, `output_config`, `system`,
//!   `thinking`, `tool_choice`, `tools`, and `speed` since
//!   anthropic-sdk-python 2.17.0; beta adds `context_management`,
//!   `mcp_servers`, `output_format`); the same refusal for anything else,
//!   `max_tokens` included (Wei-Shaw/sub2api#4913: "Anthropic
//!   /v1/messages/count_tokens does not accept max_tokens … Extra inputs are
//!   not permitted"). The answer is `{"input_tokens": n}`.
//! - OpenAI's models that do not reason (GPT-4, GPT-3.5, `chatgpt-4o-latest`,
//!   the GPT-5 `-chat-latest` models) refuse a reasoning effort: in chat
//!   `400 "Unsupported parameter: 'reasoning_effort' is not supported with
//!   this model."`, `param` `reasoning_effort`, `code`
//!   `unsupported_parameter` (carlrobertoh/ProxyAI#1203, a real response
//!   body); in the Responses API the same for `'reasoning.effort'`
//!   (BoundaryML/baml#2708 and RageAgainstThePixel/OpenAI-DotNet#500, gpt-4.1
//!   and gpt-4o, real response bodies).
//! - OpenAI's reasoning models (o-series, GPT-5) refuse `max_tokens`:
//!   `400 "Unsupported parameter: 'max_tokens' is not supported with this
//!   model. Use 'max_completion_tokens' instead."`, `param` `max_tokens`,
//!   `code` `unsupported_parameter` (a real api.openai.com answer for
//!   gpt-5-nano recorded in envoyproxy/ai-gateway
//!   `tests/internal/testopenai/cassettes/chat-bad-request.yaml`).
//! - OpenAI's reasoning models refuse `top_p`: `400 "Unsupported parameter:
//!   'top_p' is not supported with this model."` (a real answer for
//!   gpt-5-nano recorded in braintrustdata/lingua
//!   `payloads/snapshots/topPReasoningModelParam`).
//! - OpenAI's reasoning models refuse a `temperature` other than 1:
//!   `400 "Unsupported value: 'temperature' does not support 0.2 with this
//!   model. Only the default (1) value is supported."`, `param`
//!   `temperature`, `code` `unsupported_value` (real answers for gpt-5 in
//!   diffbot/code-gpt-docs#445, gpt-5-mini in QwenLM/qwen-code#921, gpt-5.4
//!   in johny-b/llmcomp#69, gpt-5.5 in BerriAI/litellm#32060). GPT-5.1 and
//!   later take it, and `top_p`, at the reasoning effort `none` (vercel/ai's
//!   `supportsNonReasoningParameters`, after OpenAI's GPT-5.1 parameter
//!   compatibility), the default of GPT-5.1 and GPT-5.2 only (probed live in
//!   BerriAI/litellm-docs#1064: gpt-5.2 takes `temperature: 0` unset and at
//!   `none`, refuses it at `medium`; gpt-5.5 refuses it unset). GPT-5.4's
//!   default is taken as reasoning too (llmcomp#69's refusal; the effort it
//!   sent is not known): the stricter reading.
//! - GPT-5.2 and later refuse function tools beside a reasoning effort in
//!   chat completions: `400 "Function tools with reasoning_effort are not
//!   supported for gpt-5.4-mini in /v1/chat/completions. Please use
//!   /v1/responses instead."`, `param` `reasoning_effort`, `code` null
//!   (lingua `functionToolsWithReasoningEffortParam`; pipecat-ai/pipecat#4043
//!   for gpt-5.4); from GPT-5.6 with "To use function tools, use
//!   /v1/responses or set reasoning_effort to 'none'.", and without an
//!   effort too, the model's default being `medium`
//!   (GoogleChromeLabs/webmcp-tools#417, laurent22/joplin#16451).
//! - An output cap below 1 is refused: OpenAI `400 "Invalid 'max_tokens':
//!   integer below minimum value. Expected a value >= 1, but got 0
//!   instead."`, `param` the cap, `code` `integer_below_min_value`
//!   (it-at-m/mucgpt#608, OpenBMB/ChatDev#446); DeepSeek `"Invalid
//!   max_tokens value, the valid range of max_tokens is [1, 8192]"`
//!   (we0-dev/we0#56, Backtthefuture/chatlogwebUI#7).
//! - DeepSeek documents only `max_tokens` as its output cap and ignores
//!   `max_completion_tokens` (earendil-works/pi#8018, measured on
//!   api.deepseek.com: `max_completion_tokens: 5` gave 76 output tokens,
//!   `max_tokens: 5` gave 5); the mock caps DeepSeek answers by
//!   `max_tokens` only.
//! - Anthropic refuses an empty tool result marked as an error:
//!   `"messages.<i>.content.<j>.tool_result: content cannot be empty if
//!   `is_error` is true"` (bytedance/trae-agent#231, a real response body);
//!   an empty one not so marked is accepted.
//! - Anthropic's `output_config` (`effort`, `format`) is a request member
//!   like any other; `output_format` (structured outputs) needs a beta
//!   header. 116 real api.anthropic.com exchanges say so
//!   (tests/captures/anthropic_exchanges.json); the mock refused
//!   `output_config` until they did. Thinking's rules: `thinking.rs`.
//! - DeepSeek documents no refusal of unknown members: the mock accepts them,
//!   but checks types like OpenAI.
//! - Anthropic's `inference_geo` (`global`, `us`: platform.claude.com
//!   "Data residency"; supported from Claude Opus 4.6 and Sonnet 4.6, "Requests
//!   with inference_geo on legacy models return a 400 error"; the answer's
//!   `usage.inference_geo` says where it ran) and `speed` (`standard`,
//!   `fast`: "Fast mode"), request members like any other.
//! - A model the provider does not have. Anthropic: `404 not_found_error
//!   "model: <name>"` (anthropics/anthropic-sdk-typescript#690 for
//!   `invalid-model`, anthropics/claude-code#5349 for `sonnet4`, real
//!   response bodies); its models are all named `claude-…`. OpenAI: `404
//!   invalid_request_error "The model `<name>` does not exist or you do not
//!   have access to it."`, `code` `model_not_found`. The mock knows no
//!   model list, so it refuses what no provider names a model: a name with
//!   a `/` or white space (a gateway that left its `provider/` prefix on),
//!   and for Anthropic one not starting `claude-`.

use serde_json::{Map, Value};

use crate::Dialect;

/// A refusal: status, message, and the parameter at fault.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

const OPENAI_PARAMS: &[&str] = &[
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "max_completion_tokens",
    "max_tokens", "messages", "metadata", "modalities", "model", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
];

const ANTHROPIC_PARAMS: &[&str] = &[
    "model", "messages", "max_tokens", "cache_control", "container", "diagnostics", "inference_geo", "metadata", "output_config",
    "service_tier", "speed", "stop_sequences", "stream", "system", "temperature", "thinking", "tool_choice", "tools", "top_k", "top_p",
];
/// Accepted only with an `anthropic-beta` header.
const ANTHROPIC_BETA_PARAMS: &[&str] = &["context_management", "mcp_servers", "output_format"];

const COUNT_TOKENS_PARAMS: &[&str] =
    &["model", "messages", "cache_control", "output_config", "speed", "system", "thinking", "tool_choice", "tools"];
const COUNT_TOKENS_BETA_PARAMS: &[&str] = &["context_management", "mcp_servers", "output_format"];

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Num,
    Bool,
    Obj,
    Arr,
}

/// OpenAI's check of member types (`"Invalid type for '<name>': expected
/// <type>, but got <type> instead."`, `code` `invalid_type`), with the same
/// for `stream_options.include_usage` (OpenAI names a nested member by its
/// path).
fn openai_types(req: &Map<String, Value>, types: &[(&'static str, Kind)]) -> Result<(), Refusal> {
    let nested = req.get("stream_options").and_then(|o| o.get("include_usage")).map(|v| ("stream_options.include_usage", Kind::Bool, v));
    let top = types.iter().filter_map(|(name, kind)| req.get(*name).map(|v| (*name, *kind, v)));
    for (name, kind, v) in top.chain(nested) {
        if !v.is_null() && !kind_ok(v, kind) {
            return Err(refuse(
                400,
                format!("Invalid type for '{name}': expected {}, but got {} instead.", openai_type_name(kind), openai_value_name(v)),
                Some(name),
                Some("invalid_type"),
            ));
        }
    }
    Ok(())
}

/// Legacy completions' members, typed as chat's are (`prompt` and `stop`
/// take a string or an array: checked where they are read).
const COMPLETIONS_TYPES: &[(&str, Kind)] = &[
    ("model", Kind::Str),
    ("best_of", Kind::Int),
    ("echo", Kind::Bool),
    ("frequency_penalty", Kind::Num),
    ("logit_bias", Kind::Obj),
    ("logprobs", Kind::Int),
    ("max_tokens", Kind::Int),
    ("n", Kind::Int),
    ("presence_penalty", Kind::Num),
    ("seed", Kind::Int),
    ("stream", Kind::Bool),
    ("stream_options", Kind::Obj),
    ("suffix", Kind::Str),
    ("temperature", Kind::Num),
    ("top_p", Kind::Num),
    ("user", Kind::Str),
];

/// [`openai_types`] for a legacy completions request.
pub fn completions_types(req: &Map<String, Value>) -> Result<(), Refusal> {
    openai_types(req, COMPLETIONS_TYPES)
}

fn kind_ok(v: &Value, k: Kind) -> bool {
    match k {
        Kind::Str => v.is_string(),
        Kind::Int => v.is_u64() || v.is_i64(),
        Kind::Num => v.is_number(),
        Kind::Bool => v.is_boolean(),
        Kind::Obj => v.is_object(),
        Kind::Arr => v.is_array(),
    }
}

fn openai_type_name(k: Kind) -> &'static str {
    match k {
        Kind::Str => "a string",
        Kind::Int => "an integer",
        Kind::Num => "a decimal",
        Kind::Bool => "a boolean",
        Kind::Obj => "an object",
        Kind::Arr => "an array",
    }
}

pub fn openai_value_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::Bool(_) => "a boolean",
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::Null => "null",
    }
}

fn anthropic_type_name(k: Kind) -> &'static str {
    match k {
        Kind::Str => "a valid string",
        Kind::Int => "a valid integer",
        Kind::Num => "a valid number",
        Kind::Bool => "a valid boolean",
        Kind::Obj => "a valid dictionary",
        Kind::Arr => "a valid list",
    }
}

const TYPES: &[(&str, Kind)] = &[
    ("model", Kind::Str),
    ("messages", Kind::Arr),
    ("stream", Kind::Bool),
    ("max_tokens", Kind::Int),
    ("max_completion_tokens", Kind::Int),
    ("n", Kind::Int),
    ("temperature", Kind::Num),
    ("top_p", Kind::Num),
    ("user", Kind::Str),
    ("stream_options", Kind::Obj),
    ("metadata", Kind::Obj),
    ("stop_sequences", Kind::Arr),
    ("tools", Kind::Arr),
    ("top_k", Kind::Int),
];

fn refuse(status: u16, message: String, param: Option<&str>, code: Option<&'static str>) -> Refusal {
    Refusal { status, message, param: param.map(str::to_string), code }
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
fn check_cache_control(req: &Map<String, Value>) -> Result<(), Refusal> {
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

/// OpenAI's refusal of a member the model does not take (`then`: what it
/// suggests instead, after the sentence).
pub fn unsupported_parameter(param: &'static str, then: &str) -> Refusal {
    let message = format!("Unsupported parameter: '{param}' is not supported with this model.{then}");
    refuse(400, message, Some(param), Some("unsupported_parameter"))
}

/// OpenAI's models that do not reason: they refuse a reasoning effort
/// (sources in the module's notes).
pub fn openai_plain_model(model: &str) -> bool {
    const PLAIN: &[&str] = &["gpt-4", "gpt-3.5", "chatgpt-4o"];
    PLAIN.iter().any(|p| model.starts_with(p)) || (model.starts_with("gpt-5") && model.ends_with("-chat-latest"))
}

/// OpenAI's reasoning models (the o-series, GPT-5 and GPT-6 but their chat
/// models): they refuse `max_tokens` and `top_p` (sources in the module's notes).
pub fn openai_reasoning_model(model: &str) -> bool {
    let o_series = model.strip_prefix('o').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    o_series || ((model.starts_with("gpt-5") || model.starts_with("gpt-6")) && !openai_plain_model(model))
}

/// Whether an OpenAI model takes a `temperature` other than 1 and a
/// `top_p` at reasoning `effort` (`None`: its default): every model that
/// does not reason; GPT-5.1 and later (not `-pro`, not Codex, not GPT-6) at
/// `none`, the default of 5.1 and 5.2 (sources in the module's notes).
pub fn openai_samples(model: &str, effort: Option<&str>) -> bool {
    if !openai_reasoning_model(model) {
        return true;
    }
    let minor = model.strip_prefix("gpt-5.").and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()).and_then(|d| d.parse::<u32>().ok());
    match minor {
        Some(m) if m >= 1 && !model.contains("-pro") && !model.contains("codex") => effort.map_or(m <= 2, |e| e == "none"),
        _ => false,
    }
}

/// The refusal of a sampling member an OpenAI model does not take at the
/// request's effort (`req`: chat's `reasoning_effort` or the Responses
/// API's `reasoning.effort`, read by the caller): a `temperature` other
/// than 1, any `top_p`.
pub fn openai_sampling(model: &str, effort: Option<&str>, req: &Map<String, Value>) -> Option<Refusal> {
    if openai_samples(model, effort) {
        return None;
    }
    if let Some(t) = req.get("temperature").filter(|t| t.as_f64().is_some_and(|t| t != 1.0)) {
        let message = format!("Unsupported value: 'temperature' does not support {t} with this model. Only the default (1) value is supported.");
        return Some(refuse(400, message, Some("temperature"), Some("unsupported_value")));
    }
    req.get("top_p").is_some_and(|v| !v.is_null()).then(|| unsupported_parameter("top_p", ""))
}

/// OpenAI's models served only by the Responses API: the Codex models, the
/// `-pro` models, deep research, computer use. Chat completions answers them
/// 404 "This model is only supported in v1/responses and not in
/// v1/chat/completions." (param `model`, code null: the body in
/// n8n-io/n8n#18352 for gpt-4o-deep-research; openai/codex#1306 for
/// codex-mini-latest; the families from OpenAI's model pages, as
/// langchain-ai/langchain#35594 and run-llama/llama_index#21922 list them).
pub fn openai_responses_only(model: &str) -> bool {
    let family = model.starts_with("gpt-") || model.starts_with('o');
    model.starts_with("codex-")
        || model.starts_with("computer-use-preview")
        || (family && (model.contains("deep-research") || model.split('-').any(|t| t == "codex" || t == "pro")))
}

/// DeepSeek's thinking mode (on by default; `thinking: {"type":
/// "disabled"}` or the legacy `deepseek-chat` turns it off) wants every
/// assistant message between two user messages that called tools to carry
/// its `reasoning_content` back (api-docs.deepseek.com, Thinking Mode; the
/// refusal: Gitlawb/openclaude#878, syt2/paper-chat-for-zotero#16).
pub fn deepseek_thinks(req: &Map<String, Value>) -> bool {
    let off = req.get("thinking").and_then(|t| t.get("type")).and_then(Value::as_str) == Some("disabled");
    !off && req.get("model").and_then(Value::as_str) != Some("deepseek-chat")
}

fn deepseek_reasoning_passed_back(req: &Map<String, Value>) -> Result<(), Refusal> {
    if !deepseek_thinks(req) {
        return Ok(());
    }
    let msgs = req.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for span in msgs.split(|m| m.get("role").and_then(Value::as_str) == Some("user")) {
        let assistants = || span.iter().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
        let called = assistants().any(|m| m.get("tool_calls").and_then(Value::as_array).is_some_and(|c| !c.is_empty()));
        if called && assistants().any(|m| !m.get("reasoning_content").is_some_and(Value::is_string)) {
            return Err(refuse(400, "The `reasoning_content` in the thinking mode must be passed back to the API.".into(), None, None));
        }
    }
    Ok(())
}

/// A `file` part's `file_data` must be a `data:` URL (lingua
/// `chatCompletionsGcsBackedVideoFileParam`, a real answer).
fn openai_file_parts(req: &Map<String, Value>) -> Result<(), Refusal> {
    for (i, m) in req.get("messages").and_then(Value::as_array).into_iter().flatten().enumerate() {
        for (j, part) in m.get("content").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let data = part.get("file").and_then(|f| f.get("file_data")).and_then(Value::as_str);
            if part.get("type").and_then(Value::as_str) == Some("file") && data.is_some_and(|d| !d.starts_with("data:")) {
                return Err(refuse(
                    400,
                    format!("Invalid file data: 'messages[{i}].content[{j}].file.file_data'. Expected a base64-encoded data URL with an application/pdf MIME type (e.g. 'data:application/pdf;base64,SGVsbG8sIFdvcmxkIQ=='), but got a value without the 'data:' prefix."),
                    None,
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// A strict JSON schema names every property of its top-level object in
/// `required` (lingua `textFormatJsonSchemaMissingRequiredPropertyParam`,
/// a real answer, chat and Responses alike; nested objects not checked).
pub fn strict_schema(name: &str, schema: &Value) -> Option<String> {
    let required: Vec<&str> = schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let missing = schema.get("properties").and_then(Value::as_object)?.keys().find(|k| !required.contains(&k.as_str()))?;
    Some(format!(
        "Invalid schema for response_format '{name}': In context=(), 'required' is required to be supplied and to be an array including every key in properties. Missing '{missing}'."
    ))
}

/// GPT-5.2 and later refuse function tools beside a reasoning effort in chat
/// completions, their default effort included from 5.6 (sources in the
/// module's notes): the refusal, if this request earns it.
fn openai_tools_with_reasoning(model: &str, req: &Map<String, Value>) -> Option<Refusal> {
    let tools = req.get("tools").and_then(Value::as_array).is_some_and(|t| t.iter().any(|t| t.get("type").and_then(Value::as_str) == Some("function")));
    let v = model.strip_prefix("gpt-")?.split('-').next()?;
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    let version = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
    if !tools || version < (5, 2) || !openai_reasoning_model(model) {
        return None;
    }
    let default = if version >= (5, 6) { "medium" } else { "none" };
    let effort = req.get("reasoning_effort").and_then(Value::as_str).unwrap_or(default);
    let advice = if version >= (5, 6) { "To use function tools, use /v1/responses or set reasoning_effort to 'none'." } else { "Please use /v1/responses instead." };
    (effort != "none").then(|| {
        refuse(400, format!("Function tools with reasoning_effort are not supported for {model} in /v1/chat/completions. {advice}"), Some("reasoning_effort"), None)
    })
}

/// Anthropic's rule on tool results marked as errors (source in the module's notes).
fn anthropic_error_results_not_empty(i: usize, blocks: &[Value]) -> Result<(), Refusal> {
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
fn anthropic_messages_not_empty(msgs: &[Value]) -> Result<(), Refusal> {
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
fn anthropic_members(req: &Map<String, Value>, params: &[&str], beta: &[&str]) -> Result<(), Refusal> {
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
fn anthropic_metadata(req: &Map<String, Value>) -> Result<(), Refusal> {
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
fn anthropic_custom_tools(req: &Map<String, Value>) -> Result<(), Refusal> {
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

/// Whether `model` could be one of the provider's model names (see the
/// module's sources).
pub fn known_model_name(dialect: Dialect, model: &str) -> bool {
    let plain = !model.contains('/') && !model.chars().any(char::is_whitespace);
    plain && (dialect != Dialect::Anthropic || model.starts_with("claude-"))
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

/// Checks a request body as the provider would.
/// `beta`: the request's `anthropic-beta` header, if any.
pub fn check(dialect: Dialect, req: &Map<String, Value>, beta: Option<&str>) -> Result<(), Refusal> {
    if let Some(model) = req.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) {
        if !known_model_name(dialect, model) {
            return Err(match dialect {
                Dialect::Anthropic => refuse(404, format!("model: {model}"), None, None),
                _ => refuse(
                    404,
                    format!("The model `{model}` does not exist or you do not have access to it."),
                    None,
                    Some("model_not_found"),
                ),
            });
        }
    }
    match dialect {
        Dialect::Anthropic => check_anthropic(req, beta),
        Dialect::OpenAi | Dialect::DeepSeek => check_openai(dialect, req),
    }
}

/// Anthropic's Messages API.
fn check_anthropic(req: &Map<String, Value>, beta: Option<&str>) -> Result<(), Refusal> {
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

/// OpenAI's chat completions, and DeepSeek's (which takes what OpenAI's
/// takes, with checks of its own).
fn check_openai(dialect: Dialect, req: &Map<String, Value>) -> Result<(), Refusal> {
    if dialect == Dialect::OpenAi {
        if let Some(k) = req.keys().find(|k| !OPENAI_PARAMS.contains(&k.as_str())) {
            return Err(refuse(400, format!("Unrecognized request argument supplied: {k}"), None, None));
        }
    }
    openai_types(req, TYPES)?;
    let streaming = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if req.get("stream_options").is_some_and(|v| !v.is_null()) && !streaming {
        return Err(refuse(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
            Some("stream_options"),
            None,
        ));
    }
    let model = req.get("model").and_then(Value::as_str).unwrap_or("");
    if dialect == Dialect::OpenAi && openai_responses_only(model) {
        return Err(refuse(404, "This model is only supported in v1/responses and not in v1/chat/completions.".into(), Some("model"), None));
    }
    let given = |name: &str| dialect == Dialect::OpenAi && req.get(name).is_some_and(|v| !v.is_null());
    if given("max_tokens") && openai_reasoning_model(model) {
        return Err(unsupported_parameter("max_tokens", " Use 'max_completion_tokens' instead."));
    }
    output_caps(dialect, req)?;
    if given("reasoning_effort") && openai_plain_model(model) {
        return Err(unsupported_parameter("reasoning_effort", ""));
    }
    if dialect == Dialect::OpenAi {
        if let Some(r) = openai_sampling(model, req.get("reasoning_effort").and_then(Value::as_str), req) {
            return Err(r);
        }
    }
    if let Some(r) = openai_tools_with_reasoning(model, req).filter(|_| dialect == Dialect::OpenAi) {
        return Err(r);
    }
    if dialect == Dialect::DeepSeek {
        deepseek_reasoning_passed_back(req)?;
    }
    if dialect == Dialect::OpenAi {
        openai_file_parts(req)?;
        let format = req.get("response_format").filter(|f| f.get("type").and_then(Value::as_str) == Some("json_schema"));
        let spec = format.and_then(|f| f.get("json_schema")).filter(|j| j.get("strict").and_then(Value::as_bool) == Some(true));
        let name = spec.and_then(|j| j.get("name")).and_then(Value::as_str).unwrap_or("");
        if let Some(msg) = spec.and_then(|j| j.get("schema")).and_then(|schema| strict_schema(name, schema)) {
            return Err(refuse(400, msg, None, None));
        }
    }
    if dialect == Dialect::OpenAi && req.get("messages").and_then(Value::as_array).is_some_and(Vec::is_empty) {
        return Err(refuse(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".into(),
            Some("messages"),
            Some("empty_array"),
        ));
    }
    if let Some(n) = req.get("n").and_then(Value::as_i64) {
        if !(1..=128).contains(&n) {
            return Err(refuse(400, format!("{n} is less than the minimum of 1 - 'n'"), Some("n"), None));
        }
    }
    Ok(())
}

/// `max_tokens` and `max_completion_tokens` below 1, refused as each provider words it.
fn output_caps(dialect: Dialect, req: &Map<String, Value>) -> Result<(), Refusal> {
    for cap in ["max_tokens", "max_completion_tokens"] {
        let n = req.get(cap).and_then(Value::as_i64).filter(|n| *n < 1);
        match (n, dialect) {
            (Some(n), Dialect::OpenAi) => {
                return Err(refuse(
                    400,
                    format!("Invalid '{cap}': integer below minimum value. Expected a value >= 1, but got {n} instead."),
                    Some(cap),
                    Some("integer_below_min_value"),
                ))
            }
            (Some(_), Dialect::DeepSeek) if cap == "max_tokens" => {
                return Err(refuse(400, "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]".into(), None, Some("invalid_request_error")))
            }
            _ => {}
        }
    }
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

#[cfg(test)]
mod tests;
