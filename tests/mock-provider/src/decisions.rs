//! `POST /v1/decisions`, OpenAI's Decisions API, as the provider answers it:
//! typed answers, one a question, in question order, and the Responses
//! API's usage; no stream.
//!
//! Sources: openai-python 3.57 `resources/decisions.py` (`model`, `input`,
//! `questions` required; `prompt_cache_key`, `prompt_cache_options`,
//! `safety_identifier`; "Only `gpt-6-luna` is supported"),
//! `types/decision_create_params.py` (`input` a string or an array of
//! user, developer, system and assistant messages, function and custom
//! tool calls and their outputs; 1 to 400 questions, each `predicate`
//! (`instructions`), `choice` (`instructions`, 2 to 255 unique `choices`
//! of a string or boolean `value`) or `score` (`instructions`, `levels` of
//! a `label`), `name` optional; `prompt_cache_options.mode` implicit or
//! explicit, `ttl` only `30m`), `types/decision.py` (`answers`, `model`,
//! `usage` with `input_tokens_details.cached_tokens` and
//! `cache_write_tokens`, `output_tokens_details.reasoning_tokens`); the
//! promptfoo provider's documentation (two to ten score levels); OpenAI's
//! price for it, $0.10 a million input tokens and no output, cache-read
//! or cache-write charges (apidog.com, "What is the OpenAI Decisions API",
//! 2026-10-10; vercel.com/ai-gateway/models/openai/gpt-6-luna-decisions).

use serde_json::{json, Map, Value};

use crate::embeddings::Refusal;
use crate::objects::missing;
use crate::responses::text_of;

const PARAMS: &[&str] = &["model", "input", "questions", "prompt_cache_key", "prompt_cache_options", "safety_identifier"];
const MODELS: &[&str] = &["gpt-6-luna"];
const ITEM_TYPES: &[&str] = &["message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output"];
const ROLES: &[&str] = &["user", "developer", "system", "assistant"];

fn bad(msg: impl Into<String>, param: &'static str, code: &'static str) -> Refusal {
    (400, msg.into(), Some(param), Some(code))
}

fn check_input(v: Option<&Value>) -> Result<(), Refusal> {
    let invalid = |what: String| bad(format!("Invalid 'input': {what}."), "input", "invalid_value");
    match v {
        None | Some(Value::Null) => Err(missing("input")),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.is_empty() => Err(invalid("expected at least one item".into())),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
                if !ITEM_TYPES.contains(&kind) {
                    return Err(invalid(format!("item {i} has the unknown type '{kind}'")));
                }
                if kind == "message" && !item.get("role").and_then(Value::as_str).is_some_and(|r| ROLES.contains(&r)) {
                    return Err(invalid(format!("item {i} must have a role of {}", ROLES.join(", "))));
                }
            }
            Ok(())
        }
        Some(_) => Err(bad("Invalid type for 'input': expected a string or an array of items.", "input", "invalid_type")),
    }
}

/// One question's answer (deterministic: what a test can check).
fn answer_to(i: usize, q: &Value) -> Result<Value, Refusal> {
    let invalid = |what: &str| bad(format!("Invalid 'questions[{i}]': {what}."), "questions", "invalid_value");
    let q = q.as_object().ok_or_else(|| invalid("expected an object"))?;
    if q.get("instructions").is_none_or(Value::is_null) {
        return Err(invalid("'instructions' is required"));
    }
    let name = q.get("name").cloned().unwrap_or(Value::Null);
    let allowed: &[&str] = match q.get("type").and_then(Value::as_str) {
        Some("predicate") => &["type", "name", "instructions"],
        Some("choice") => &["type", "name", "instructions", "choices"],
        Some("score") => &["type", "name", "instructions", "levels"],
        _ => return Err(invalid("'type' must be predicate, choice or score")),
    };
    if let Some(k) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(&format!("unknown parameter '{k}'")));
    }
    Ok(match q.get("type").and_then(Value::as_str) {
        Some("choice") => {
            let choices = q.get("choices").and_then(Value::as_array).filter(|c| (2..=255).contains(&c.len())).ok_or_else(|| invalid("'choices' must hold 2 to 255 choices"))?;
            let values: Vec<&Value> = choices.iter().filter_map(|c| c.get("value")).filter(|v| v.is_string() || v.is_boolean()).collect();
            if values.len() != choices.len() || values.iter().enumerate().any(|(j, v)| values[..j].contains(v)) {
                return Err(invalid("each choice needs a unique string or boolean 'value'"));
            }
            let p = 1.0 / values.len() as f64;
            json!({"type": "choice", "name": name, "choice": values[0], "confidence": p,
                   "probabilities": values.iter().map(|v| json!({"value": v, "probability": p})).collect::<Vec<_>>()})
        }
        Some("score") => {
            let levels = q.get("levels").and_then(Value::as_array).filter(|l| (2..=10).contains(&l.len())).ok_or_else(|| invalid("'levels' must hold 2 to 10 levels"))?;
            if levels.iter().any(|l| !l.get("label").is_some_and(Value::is_string)) {
                return Err(invalid("each level needs a string 'label'"));
            }
            let p = 1.0 / levels.len() as f64;
            json!({"type": "score", "name": name, "score": (levels.len() - 1) as f64 / 2.0, "confidence": p,
                   "probabilities": levels.iter().enumerate().map(|(v, l)| json!({"label": l["label"], "value": v, "probability": p})).collect::<Vec<_>>()})
        }
        _ => json!({"type": "predicate", "name": name, "probability": 0.5}),
    })
}

/// The answer and its usage (input, output tokens), or the refusal.
pub fn answer(m: &Map<String, Value>, cached: u64) -> Result<(Value, u64, u64), Refusal> {
    if let Some(k) = m.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err((400, format!("Unknown parameter: '{k}'."), None, Some("unknown_parameter")));
    }
    let model = match m.get("model") {
        None | Some(Value::Null) => return Err(missing("model")),
        Some(Value::String(s)) if MODELS.contains(&s.as_str()) => s.clone(),
        Some(v) => return Err(bad(format!("The model {v} is not supported on /v1/decisions: only gpt-6-luna is."), "model", "model_not_found")),
    };
    check_input(m.get("input"))?;
    let questions = match m.get("questions") {
        None | Some(Value::Null) => return Err(missing("questions")),
        Some(Value::Array(q)) if (1..=400).contains(&q.len()) => q,
        Some(_) => return Err(bad("Invalid 'questions': expected an array of 1 to 400 questions.", "questions", "invalid_value")),
    };
    let answers = questions.iter().enumerate().map(|(i, q)| answer_to(i, q)).collect::<Result<Vec<_>, _>>()?;
    if let Some(o) = m.get("prompt_cache_options").filter(|o| !o.is_null()) {
        let mode_ok = o.get("mode").is_none_or(|v| v.is_null() || v == "implicit" || v == "explicit");
        let ttl_ok = o.get("ttl").is_none_or(|v| v == "30m");
        if !o.is_object() || !mode_ok || !ttl_ok || o.as_object().is_some_and(|o| o.keys().any(|k| k != "mode" && k != "ttl")) {
            return Err(bad("Invalid 'prompt_cache_options': 'mode' is implicit or explicit, 'ttl' only 30m.", "prompt_cache_options", "invalid_value"));
        }
    }
    let mut text = String::new();
    text_of(&m["input"], &mut text);
    for q in questions {
        text_of(q.get("instructions").unwrap_or(&Value::Null), &mut text);
    }
    let input = super::count_tokens(&text).max(1);
    let cached = cached.min(input);
    // One output token an answer (typed answers, no prose).
    let output = answers.len() as u64;
    let body = json!({"answers": answers, "model": model,
        "usage": {"input_tokens": input, "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": cached},
                  "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output}});
    Ok((body, input, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(body: Value) -> Result<(Value, u64, u64), Refusal> {
        answer(body.as_object().unwrap(), 0)
    }

    #[test]
    fn what_the_api_refuses_is_refused() {
        let ok = json!({"model": "gpt-6-luna", "input": "I was charged twice.", "questions": [{"type": "predicate", "instructions": "Charged twice?"}]});
        assert!(ask(ok.clone()).is_ok());
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            ask(b).unwrap_err().3
        };
        assert_eq!(with("model", json!("gpt-6-sol")), Some("model_not_found"));
        assert_eq!(with("questions", json!([])), Some("invalid_value"));
        assert_eq!(with("questions", json!([{"type": "choice", "instructions": "x", "choices": [{"value": "a"}]}])), Some("invalid_value"));
        assert_eq!(with("questions", json!([{"type": "choice", "instructions": "x", "choices": [{"value": "a"}, {"value": "a"}]}])), Some("invalid_value"));
        assert_eq!(with("questions", json!([{"type": "score", "instructions": "x", "levels": [{"label": "low"}]}])), Some("invalid_value"));
        assert_eq!(with("questions", json!([{"type": "boolean", "instructions": "x"}])), Some("invalid_value"));
        assert_eq!(with("input", json!([{"role": "tool", "content": "x"}])), Some("invalid_value"));
        assert_eq!(with("prompt_cache_options", json!({"ttl": "1h"})), Some("invalid_value"));
        assert_eq!(with("max_output_tokens", json!(5)), Some("unknown_parameter"));
        let mut b = ok.clone();
        b.as_object_mut().unwrap().remove("questions");
        assert_eq!(ask(b).unwrap_err().3, Some("missing_required_parameter"));
    }

    #[test]
    fn answers_come_in_question_order_with_typed_values() {
        let (v, input, output) = ask(json!({"model": "gpt-6-luna", "input": [{"role": "user", "content": "Refund issued."}],
            "questions": [{"type": "choice", "name": "c", "instructions": "Kind?", "choices": [{"value": true}, {"value": "true"}]},
                          {"type": "score", "instructions": "How bad?", "levels": [{"label": "low"}, {"label": "mid"}, {"label": "high"}]}]}))
        .unwrap();
        assert_eq!((v["answers"][0]["choice"].clone(), v["answers"][1]["score"].clone()), (json!(true), json!(1.0)));
        assert_eq!((v["usage"]["input_tokens"].as_u64(), v["usage"]["output_tokens"].as_u64(), output), (Some(input), Some(2), 2));
    }
}
