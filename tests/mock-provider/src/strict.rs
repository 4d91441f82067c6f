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

mod anthropic;
mod openai;

pub use anthropic::*;
pub use openai::*;

/// A refusal: status, message, and the parameter at fault.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Num,
    Bool,
    Obj,
    Arr,
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

/// Whether `model` could be one of the provider's model names (see the
/// module's sources).
pub fn known_model_name(dialect: Dialect, model: &str) -> bool {
    let plain = !model.contains('/') && !model.chars().any(char::is_whitespace);
    plain && (dialect != Dialect::Anthropic || model.starts_with("claude-"))
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

#[cfg(test)]
mod tests;
