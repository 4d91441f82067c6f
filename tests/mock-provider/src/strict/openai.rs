//! What api.openai.com (and DeepSeek, in OpenAI's format) refuses
//! (sources: strict.rs): members, types, sampling on reasoning models,
//! file parts, strict schemas, tools with reasoning, DeepSeek's reasoning
//! not passed back; and which models are which.

use serde_json::{Map, Value};

use super::{kind_ok, output_caps, refuse, Kind, Refusal, TYPES};
use crate::Dialect;

pub(super) const OPENAI_PARAMS: &[&str] = &[
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "max_completion_tokens",
    "max_tokens", "messages", "metadata", "modalities", "model", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
];

/// OpenAI's check of member types (`"Invalid type for '<name>': expected
/// <type>, but got <type> instead."`, `code` `invalid_type`), with the same
/// for `stream_options.include_usage` (OpenAI names a nested member by its
/// path).
pub(super) fn openai_types(req: &Map<String, Value>, types: &[(&'static str, Kind)]) -> Result<(), Refusal> {
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
pub(super) const COMPLETIONS_TYPES: &[(&str, Kind)] = &[
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

pub(super) fn openai_type_name(k: Kind) -> &'static str {
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

pub(super) fn deepseek_reasoning_passed_back(req: &Map<String, Value>) -> Result<(), Refusal> {
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
pub(super) fn openai_file_parts(req: &Map<String, Value>) -> Result<(), Refusal> {
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
pub(super) fn openai_tools_with_reasoning(model: &str, req: &Map<String, Value>) -> Option<Refusal> {
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

/// OpenAI's chat completions, and DeepSeek's (which takes what OpenAI's
/// takes, with checks of its own).
pub(super) fn check_openai(dialect: Dialect, req: &Map<String, Value>) -> Result<(), Refusal> {
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
