//! Claude's thinking in the form each model takes: an OpenAI client's
//! `reasoning_effort` turned into it ([`members`]), and an Anthropic
//! client's `thinking` fitted to the model it reaches ([`fit`]).
//!
//! Claude models take thinking in one of two forms, by model (sources in
//! docs/translation.md): `{"type": "enabled", "budget_tokens": n}` from
//! Claude 3.7 to 4.5, and `{"type": "adaptive"}` with
//! `output_config.effort` from 4.6 on (Opus 4.7 and later, and the Claude 5
//! models, refuse the budget form: "\"thinking.type.enabled\" is not
//! supported for this model"). Models before 3.7 refuse thinking ("does not
//! support thinking").

use serde_json::{json, Value};

use crate::errors::GatewayError;

/// The thinking a model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// It does not think (Claude before 3.7).
    None,
    /// `enabled` with a token budget (Claude 3.7 to 4.5; other
    /// Anthropic-format models, whose APIs copied this form).
    Budget,
    /// `adaptive` with an effort (Claude 4.6 and later, and Claude models
    /// whose names carry no version: new families).
    Adaptive,
}

/// The version in a Claude model name (`claude-3-7-sonnet-20250219` 3.7,
/// `claude-sonnet-4-20250514` 4.0, `claude-opus-4.7` 4.7, Bedrock's
/// `us.anthropic.claude-opus-4-1-…-v1:0` 4.1); a date is no version.
fn claude_version(rest: &str) -> Option<(u32, u32)> {
    let mut nums = rest
        .split(['-', '.', '@', ':', '_'])
        .skip_while(|t| t.parse::<u32>().is_err())
        .map_while(|t| t.parse::<u32>().ok().filter(|n| *n < 100));
    let major = nums.next()?;
    Some((major, nums.next().unwrap_or(0)))
}

/// `Some` for a Claude model (a router's prefix, `anthropic/claude-…`, and
/// Bedrock's `us.anthropic.` looked past), with its version if its name
/// carries one; `None` for any other model.
pub(super) fn claude(model: &str) -> Option<Option<(u32, u32)>> {
    let name = model.to_ascii_lowercase();
    let at = name.find("claude")?;
    Some(name.get(at + "claude".len()..).and_then(claude_version))
}

/// The thinking form of an upstream model, by name.
pub fn form(model: &str) -> Form {
    match claude(model) {
        None => Form::Budget,
        Some(Some(v)) if v < (3, 7) => Form::None,
        Some(Some(v)) if v < (4, 6) => Form::Budget,
        Some(_) => Form::Adaptive,
    }
}

/// Thinking tokens per effort in the budget form: the bands the other
/// direction reads back (`to_openai`: below 4,096 low, below 16,384
/// medium), Anthropic's least (1,024) for `minimal`.
fn budget_for(effort: &str) -> u64 {
    match effort {
        "minimal" => 1024,
        "low" => 2048,
        "medium" => 8192,
        "high" => 16_384,
        _ => 32_768, // xhigh, max
    }
}

/// The smallest budget Anthropic takes.
const MIN_BUDGET: u64 = 1024;

/// The members to send for an OpenAI `reasoning_effort` (already checked
/// by [`effort`]) on `model` with `max_tokens` as the output cap: the
/// `thinking` and, in the adaptive form, the `output_config`. `None`: no
/// thinking (`none`, a model that does not think, or a cap too small).
///
/// A budget never takes more than half the cap, so the answer keeps room:
/// thinking counts against `max_tokens` as OpenAI's reasoning counts
/// against `max_completion_tokens`, so the cap, and with it the budget
/// reservation, still bounds the whole output.
pub fn members(effort: &str, model: &str, max_tokens: u64) -> Option<(Value, Option<Value>)> {
    if effort == "none" {
        return None;
    }
    match form(model) {
        Form::None => None,
        Form::Budget => {
            let budget = budget_for(effort).min(max_tokens / 2);
            (budget >= MIN_BUDGET).then(|| (json!({"type": "enabled", "budget_tokens": budget}), None))
        }
        Form::Adaptive => {
            // The levels every adaptive model takes (`xhigh` and `max` are not on all of them).
            let level = match effort {
                "minimal" | "low" => "low",
                "medium" => "medium",
                _ => "high",
            };
            Some((json!({"type": "adaptive"}), Some(json!({"effort": level}))))
        }
    }
}

/// What becomes of an Anthropic client's `thinking` on a Claude model.
#[derive(Debug, Clone, PartialEq)]
pub enum Fit {
    /// It is the form the model takes (or thinking is off): sent as it came.
    Keep,
    /// The model does not think: left out.
    Drop,
    /// The other form: this `thinking`; in the adaptive form the effort
    /// (an `output_config` the request did not have); in the budget form the
    /// client's effort taken out of its `output_config` (the budget carries
    /// it, and Claude before Opus 4.5 takes no effort).
    Replace { thinking: Value, effort: Option<&'static str>, drop_effort: bool },
}

/// An Anthropic client's `thinking` fitted to the form `model` takes. A
/// client written for one Claude model, a route, a fallback or the auto
/// router may send it to another that refuses its form: Opus 4.7 and later
/// refuse `enabled` (the budget form older Claude Code and Agent SDK
/// versions and most SDK integrations send: anomalyco/opencode#22863,
/// zhukunpenglinyutong/jetbrains-cc-gui#1003), Claude 3.5 refuses any
/// thinking, and adaptive thinking is for Claude 4.6 and later only
/// (Anthropic's adaptive-thinking docs list its models). A budget becomes
/// the effort band the other direction uses (below 4,096 `low`, below
/// 16,384 `medium`, else `high`); an effort (`high` when none is given,
/// Anthropic's default) becomes a budget as for OpenAI clients, never over
/// half of `max_tokens`.
///
/// Only a well-formed request is fitted: a budget that is no whole number
/// of tokens, an `output_config` that is no object, or an effort Anthropic
/// does not name goes as it came, for the provider to refuse in its own
/// words (the gateway does not quietly mend what a client got wrong).
pub fn fit(thinking: &Value, output_config: Option<&Value>, model: &str, max_tokens: u64) -> Fit {
    let kind = thinking.get("type").and_then(Value::as_str);
    let budget_ok = kind != Some("enabled") || thinking.get("budget_tokens").is_some_and(Value::is_u64);
    let config_ok = output_config.is_none_or(|c| {
        c.is_object() && c.get("effort").is_none_or(|e| matches!(e.as_str(), Some("low" | "medium" | "high" | "xhigh" | "max")))
    });
    if !budget_ok || !config_ok {
        return Fit::Keep;
    }
    // Claude 4.6 takes both forms (the budget one deprecated): kept as sent.
    let both = claude(model) == Some(Some((4, 6)));
    match (kind, form(model)) {
        (Some("enabled" | "adaptive"), Form::None) => Fit::Drop,
        (Some("enabled"), Form::Adaptive) if !both => {
            let effort = match thinking.get("budget_tokens").and_then(Value::as_u64).unwrap_or(0) {
                b if b < 4096 => "low",
                b if b < 16_384 => "medium",
                _ => "high",
            };
            Fit::Replace { thinking: json!({"type": "adaptive"}), effort: Some(effort).filter(|_| output_config.is_none()), drop_effort: false }
        }
        (Some("adaptive"), Form::Budget) => {
            let effort = match output_config.and_then(|c| c.get("effort")).and_then(Value::as_str) {
                Some("low") => "low",
                Some("medium") => "medium",
                Some("xhigh" | "max") => "xhigh",
                _ => "high",
            };
            match budget_for(effort).min(max_tokens / 2) {
                b if b >= MIN_BUDGET => Fit::Replace { thinking: json!({"type": "enabled", "budget_tokens": b}), effort: None, drop_effort: true },
                _ => Fit::Drop,
            }
        }
        _ => Fit::Keep,
    }
}

/// A client's `reasoning_effort` value, as OpenAI accepts it (`max` since
/// GPT-5.6: real requests in tests/captures/openai_lingua_exchanges.json,
/// answered 200); `None` for null.
pub fn effort(v: &Value) -> Result<Option<&str>, GatewayError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if matches!(s.as_str(), "none" | "minimal" | "low" | "medium" | "high" | "xhigh" | "max") => Ok(Some(s)),
        _ => Err(super::refuse("reasoning_effort", "must be none, minimal, low, medium, high, xhigh or max", "an Anthropic model")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_model_gets_the_form_it_takes() {
        for m in ["claude-3-5-haiku-20241022", "claude-3-haiku-20240307", "claude-2.1", "claude-instant-1.2", "anthropic.claude-3-5-sonnet-20240620-v1:0"] {
            assert_eq!(form(m), Form::None, "{m}");
        }
        for m in ["claude-3-7-sonnet-20250219", "claude-sonnet-4-20250514", "claude-opus-4-1-20250805", "claude-sonnet-4-5", "claude-haiku-4-5@20251001",
                  "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "deepseek-chat", "glm-4.6"] {
            assert_eq!(form(m), Form::Budget, "{m}");
        }
        for m in ["claude-sonnet-4-6", "claude-opus-4-6", "claude-opus-4-7", "claude-opus-4.8", "claude-opus-5", "claude-sonnet-5",
                  "claude-mythos-preview", "anthropic/claude-opus-4-8", "Claude-Opus-4-7"] {
            assert_eq!(form(m), Form::Adaptive, "{m}");
        }
    }

    #[test]
    fn a_budget_leaves_half_the_cap_for_the_answer() {
        let budget = |effort, cap| members(effort, "claude-sonnet-4-5", cap).map(|(t, _)| t["budget_tokens"].as_u64().unwrap());
        assert_eq!(budget("high", 64_000), Some(16_384));
        assert_eq!(budget("xhigh", 64_000), Some(32_000));
        assert_eq!(budget("medium", 4096), Some(2048));
        assert_eq!(budget("low", 2048), Some(1024));
        assert_eq!(budget("low", 2047), None, "below Anthropic's least budget: no thinking");
        assert_eq!(budget("none", 64_000), None);
        assert_eq!(members("high", "claude-3-5-haiku-20241022", 64_000), None);
        // Every budget the form sends is one Anthropic takes: at least 1,024, below the cap.
        for cap in [1, 1024, 2048, 2049, 5000, 100_000] {
            for e in ["minimal", "low", "medium", "high", "xhigh"] {
                if let Some(b) = budget(e, cap) {
                    assert!(b >= 1024 && b < cap, "{e} {cap}: {b}");
                }
            }
        }
    }

    #[test]
    fn adaptive_models_get_an_effort_every_one_of_them_takes() {
        let (t, c) = members("xhigh", "claude-opus-4-8", 100).unwrap();
        assert_eq!((t, c), (json!({"type": "adaptive"}), Some(json!({"effort": "high"}))));
        assert_eq!(members("minimal", "claude-sonnet-4-6", 100).unwrap().1, Some(json!({"effort": "low"})));
    }

    #[test]
    fn an_anthropic_clients_thinking_is_fitted_to_the_model() {
        let enabled = json!({"type": "enabled", "budget_tokens": 31999});
        let adaptive = json!({"type": "adaptive"});
        assert_eq!(fit(&enabled, None, "claude-opus-4-8", 32000), Fit::Replace { thinking: adaptive.clone(), effort: Some("high"), drop_effort: false });
        assert_eq!(fit(&json!({"type": "enabled", "budget_tokens": 2048}), Some(&json!({"format": {}})), "claude-sonnet-5", 32000),
                   Fit::Replace { thinking: adaptive.clone(), effort: None, drop_effort: false }, "the client's output_config stays as it is");
        assert_eq!(fit(&adaptive, Some(&json!({"effort": "medium"})), "claude-sonnet-4-5", 32000),
                   Fit::Replace { thinking: json!({"type": "enabled", "budget_tokens": 8192}), effort: None, drop_effort: true });
        assert_eq!(fit(&adaptive, None, "claude-haiku-4-5", 64000), Fit::Replace { thinking: json!({"type": "enabled", "budget_tokens": 16384}), effort: None, drop_effort: true });
        assert_eq!(fit(&adaptive, None, "claude-haiku-4-5", 20000), Fit::Replace { thinking: json!({"type": "enabled", "budget_tokens": 10000}), effort: None, drop_effort: true });
        assert_eq!(fit(&adaptive, None, "claude-sonnet-4-5", 2000), Fit::Drop, "no room for Anthropic's least budget");
        assert_eq!(fit(&enabled, None, "claude-3-5-haiku-20241022", 32000), Fit::Drop);
        // Malformed: sent as it came, for the provider to refuse in its own words.
        for bad in [json!({"type": "enabled", "budget_tokens": 1e30}), json!({"type": "enabled", "budget_tokens": -5}),
                    json!({"type": "enabled", "budget_tokens": "lots"}), json!({"type": "enabled"})] {
            assert_eq!(fit(&bad, None, "claude-opus-4-8", 32000), Fit::Keep, "{bad}");
        }
        for bad in [json!("x"), json!([]), json!({"effort": 7}), json!({"effort": "huge"})] {
            assert_eq!(fit(&adaptive, Some(&bad), "claude-sonnet-4-5", 32000), Fit::Keep, "{bad}");
        }
        for (t, m) in [(&enabled, "claude-sonnet-4-5"), (&adaptive, "claude-opus-4-8"), (&json!({"type": "disabled"}), "claude-3-5-haiku"),
                       (&json!({"type": "weird"}), "claude-opus-4-8"), (&enabled, "claude-opus-4-6"), (&adaptive, "claude-sonnet-4-6")] {
            assert_eq!(fit(t, None, m, 32000), Fit::Keep, "{t} on {m}");
        }
    }

    #[test]
    fn an_effort_openai_would_refuse_is_refused() {
        assert_eq!(effort(&json!("high")).unwrap(), Some("high"));
        assert_eq!(effort(&json!("max")).unwrap(), Some("max"));
        assert_eq!(effort(&Value::Null).unwrap(), None);
        assert_eq!(members("max", "claude-sonnet-4-5", 64_000).map(|m| m.0), Some(json!({"type": "enabled", "budget_tokens": 32_000})));
        assert_eq!(members("max", "claude-opus-4-8", 64_000).and_then(|m| m.1), Some(json!({"effort": "high"})));
        for bad in [json!("maximum"), json!(3), json!({"effort": "high"})] {
            assert_eq!(effort(&bad).unwrap_err().param, Some("reasoning_effort"));
        }
    }
}
