//! Sampling parameters, left out where the model refuses them: Claude's
//! newest models, and OpenAI's reasoning models at a reasoning effort.
//!
//! Opus 4.7 and later, and the Claude 5 models (Sonnet 5 and 5.5, Opus 5
//! and 5.5, Fable), refuse `temperature` at any value but its default 1 and
//! `top_p` and `top_k` at any value, the default included: 400
//! invalid_request_error "`temperature` is deprecated for this model."
//! (Anthropic's Claude Sonnet 5 migration guide: "sampling parameters
//! (`temperature`, `top_p`, `top_k`) set to non-default values return a
//! 400 error"; the values probed on the live API for Opus 4.8 in
//! mnfst/modelparams.dev#238; real answers for Opus 4.7 in
//! RooCodeInc/Roo-Code#12162, for Opus 4.7, 4.8 and Fable 5 in
//! router-for-me/CLIProxyAPI#4383 and The-PR-Agent/pr-agent#2456). Claude
//! names without a version (new families) are taken to refuse them too,
//! as they take only the newer thinking form ([`super::thinking::form`]).
//!
//! A client written for an older model (an OpenAI client's
//! `temperature`, an Anthropic one's `top_k`), or sent to a newer one by a
//! route, a fallback or the auto router, failed there: those members are
//! left out instead, as OpenRouter and other gateways do. The models
//! sample at their own settings either way; nothing is billed differently.
//!
//! OpenAI's reasoning models refuse a `temperature` other than 1 (400
//! invalid_request_error, code `unsupported_value`, "Unsupported value:
//! 'temperature' does not support 0.2 with this model. Only the default (1)
//! value is supported.": real answers for gpt-5 in diffbot/code-gpt-docs#445,
//! gpt-5-mini in QwenLM/qwen-code#921, gpt-5.4 in johny-b/llmcomp#69, gpt-5.5
//! in BerriAI/litellm#32060) and `top_p` (gpt-5-nano,
//! braintrustdata/lingua). GPT-5.1 and later take both at the effort
//! `none` (OpenAI's GPT-5.1 parameter compatibility, as vercel/ai's
//! `supportsNonReasoningParameters` reads it), which is the default of
//! GPT-5.1 and GPT-5.2 only: probed live in BerriAI/litellm-docs#1064
//! (gpt-5.2 takes `temperature: 0` unset and at `none`, refuses it at
//! `medium`; gpt-5.5 refuses it unset). GPT-5 itself, the o-series, the
//! `-pro` and Codex models and GPT-6 take them at no effort.

use serde_json::Value;

/// Whether `model` takes sampling parameters: every model but the Claude
/// models named above.
pub fn taken_by(model: &str) -> bool {
    match super::thinking::claude(model) {
        None => true,
        Some(None) => false,
        Some(Some(v)) => v < (4, 7) || (v < (5, 0) && !model.to_ascii_lowercase().contains("opus")),
    }
}

/// Whether an OpenAI-format `model` takes a client's `temperature` and
/// `top_p` at the reasoning `effort` the request sends (`None`: the
/// model's default). Every model that does not reason does (GPT-4, GPT-5's
/// chat models, DeepSeek, any name this does not know as OpenAI's).
pub fn openai_takes(model: &str, effort: Option<&str>) -> bool {
    if !super::to_openai::openai_reasoning_model(model) {
        return true;
    }
    let name = super::bare_model(model);
    let Some((5, minor @ 1..)) = super::to_openai::gpt_version(&name) else { return false };
    if name.contains("-pro") || name.contains("codex") {
        return false;
    }
    effort.map_or(minor <= 2, |e| e == "none")
}

/// Whether the member `name` (its value `raw`, JSON text) is one such a
/// model refuses: a `temperature` other than 1, any `top_p` or `top_k`.
/// Only numbers: a `null` is no value, and a value of the wrong type goes
/// as it came, for the provider to refuse in its own words (the gateway
/// does not quietly mend what a client got wrong).
pub fn refused(name: &str, raw: &str) -> bool {
    matches!(name, "temperature" | "top_p" | "top_k") && serde_json::from_str::<Value>(raw).is_ok_and(|v| refused_value(name, &v))
}

/// [`refused`] for a value already read.
pub fn refused_value(name: &str, v: &Value) -> bool {
    match name {
        "temperature" => v.as_f64().is_some_and(|t| t != 1.0),
        "top_p" | "top_k" => v.is_number(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_models_that_refuse_sampling_are_told_apart_by_name() {
        for m in ["claude-opus-4-7", "claude-opus-4-8", "claude-opus-4.8", "anthropic/claude-opus-4-7", "us.anthropic.claude-opus-4-7-v1:0",
                  "claude-sonnet-5", "claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5", "claude-fable-5-1", "claude-mythos-preview", "Claude-Opus-4-8"] {
            assert!(!taken_by(m), "{m}");
        }
        for m in ["claude-sonnet-4-6", "claude-opus-4-6", "claude-haiku-4-5", "claude-sonnet-4-5-20250929", "claude-3-7-sonnet-20250219",
                  "gpt-5.4", "deepseek-chat", "glm-4.6", "gemini-3-pro"] {
            assert!(taken_by(m), "{m}");
        }
    }

    #[test]
    fn openais_reasoning_models_take_sampling_only_at_no_reasoning_from_gpt_5_1() {
        for (m, effort) in [("gpt-4.1", Some("high")), ("gpt-4o", None), ("gpt-5-chat-latest", None), ("deepseek-chat", None), ("openai/gpt-5.1", None),
                            ("gpt-5.2", None), ("gpt-5.2-2025-12-11", Some("none")), ("gpt-5.5", Some("none")), ("gpt-5.6-terra", Some("none")), ("GPT-5.4", Some("none"))] {
            assert!(openai_takes(m, effort), "{m} {effort:?}");
        }
        for (m, effort) in [("gpt-5", None), ("gpt-5-mini", Some("minimal")), ("gpt-5-nano", Some("none")), ("o3", None), ("o4-mini", Some("low")),
                            ("gpt-5.1", Some("low")), ("gpt-5.2", Some("medium")), ("gpt-5.4", None), ("openai/gpt-5.5", None), ("gpt-5.6-terra", None),
                            ("gpt-5.2-pro", Some("none")), ("gpt-5.1-codex", Some("none")), ("gpt-6", Some("none")), ("gpt-6-sol", None)] {
            assert!(!openai_takes(m, effort), "{m} {effort:?}");
        }
    }

    #[test]
    fn only_numbers_other_than_a_temperature_of_one_are_left_out() {
        for (name, raw) in [("temperature", "0"), ("temperature", "0.7"), ("temperature", "2"), ("top_p", "1"), ("top_p", "0.9"), ("top_k", "0"), ("top_k", "40")] {
            assert!(refused(name, raw), "{name}: {raw}");
        }
        for (name, raw) in [("temperature", "1"), ("temperature", "1.0"), ("temperature", " 1e0 "), ("temperature", "null"), ("temperature", "\"0.5\""), ("top_p", "null"), ("top_k", " null"), ("top_k", "[]"), ("max_tokens", "5")] {
            assert!(!refused(name, raw), "{name}: {raw}");
        }
    }
}
