//! `POST /v1/completions`, OpenAI's legacy text completions.
//!
//! Sources: the OpenAI API reference, "Completions"
//! (platform.openai.com/docs/api-reference/completions/create: `prompt`
//! required; `max_tokens` defaults to 16; `best_of` candidates are
//! generated server-side and billed; `stream_options.include_usage`), and
//! real responses recorded in envoyproxy/ai-gateway
//! `tests/internal/testopenai/cassettes/completion-*.yaml`: the JSON and
//! SSE shapes below (every chunk carries `"usage":null` when usage was asked
//! for, then a `"choices":[]` chunk with it), and the refusal of a negative
//! `max_tokens` (`integer_below_min_value`). tests/captures holds two of
//! them byte for byte.

use serde_json::{json, Map, Value};

use crate::{count_tokens, output_pieces};

const PARAMS: &[&str] = &[
    "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
    "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user",
];

/// A refusal: status, message, param, code.
pub type Refusal = (u16, String, Option<&'static str>, Option<&'static str>);

/// What to generate.
pub struct Plan {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub input: u64,
    pub output: u64,
    pub choices: u64,
    pub finish: &'static str,
}

fn prompt_tokens(v: Option<&Value>) -> Result<u64, Refusal> {
    let missing = || (400, "Missing required parameter: 'prompt'.".to_string(), Some("prompt"), Some("missing_required_parameter"));
    match v {
        None | Some(Value::Null) => Err(missing()),
        Some(Value::String(s)) => Ok(count_tokens(s)),
        Some(Value::Array(items)) => Ok(items
            .iter()
            .map(|it| match it {
                Value::String(s) => count_tokens(s),
                Value::Number(_) => 1,
                Value::Array(a) => a.len() as u64,
                _ => 0,
            })
            .sum()),
        Some(_) => Err((400, "Invalid type for 'prompt'.".into(), Some("prompt"), Some("invalid_type"))),
    }
}

/// Checks a request; `wanted` is how many tokens the test asked the mock to generate.
pub fn plan(m: &Map<String, Value>, wanted: u64) -> Result<Plan, Refusal> {
    if let Some(k) = m.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err((400, format!("Unrecognized request argument supplied: {k}"), None, None));
    }
    if let Err(r) = crate::strict::completions_types(m) {
        let param = r.param.and_then(|p| PARAMS.iter().copied().chain(["stream_options.include_usage"]).find(|k| *k == p));
        return Err((r.status, r.message, param, r.code));
    }
    let model = match m.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err((400, "you must provide a model parameter".into(), None, None)),
    };
    let int = |name: &'static str, min: i64| -> Result<Option<u64>, Refusal> {
        match m.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if n >= min => Ok(Some(n as u64)),
                Some(n) => Err((
                    400,
                    format!("Invalid '{name}': integer below minimum value. Expected a value >= {min}, but got {n} instead."),
                    Some(name),
                    Some("integer_below_min_value"),
                )),
                None => Err((400, format!("Invalid type for '{name}': expected an integer, but got {v} instead."), Some(name), Some("invalid_type"))),
            },
        }
    };
    let max_tokens = int("max_tokens", 0)?.unwrap_or(16);
    let choices = int("n", 1)?.unwrap_or(1).max(int("best_of", 1)?.unwrap_or(1));
    let stream = m.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if m.get("stream_options").is_some_and(|v| !v.is_null()) && !stream {
        return Err((400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(), Some("stream_options"), None));
    }
    let input = prompt_tokens(m.get("prompt"))?;
    let output = wanted.min(max_tokens);
    Ok(Plan {
        model,
        stream,
        include_usage: m.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false),
        input,
        output,
        choices,
        finish: if output < wanted { "length" } else { "stop" },
    })
}

fn usage(p: &Plan) -> Value {
    let out = p.output * p.choices;
    json!({"prompt_tokens": p.input, "completion_tokens": out, "total_tokens": p.input + out})
}

/// The JSON answer.
pub fn json_body(p: &Plan, id: &str, created: u64) -> String {
    let text: String = output_pieces(p.output).concat();
    let choices: Vec<Value> =
        (0..p.choices).map(|i| json!({"text": text, "index": i, "logprobs": null, "finish_reason": p.finish})).collect();
    json!({"id": id, "object": "text_completion", "created": created, "model": p.model, "choices": choices, "usage": usage(p)})
        .to_string()
}

/// The SSE events' data, in order (`[DONE]` last).
pub fn stream_data(p: &Plan, id: &str, created: u64) -> Vec<String> {
    let mut out = Vec::new();
    let pieces = output_pieces(p.output);
    let last = pieces.len().saturating_sub(1);
    for (k, piece) in pieces.iter().enumerate() {
        for i in 0..p.choices {
            let finish = if k == last { Value::from(p.finish) } else { Value::Null };
            let mut chunk = json!({"id": id, "object": "text_completion", "created": created,
                                   "choices": [{"text": piece, "index": i, "logprobs": null, "finish_reason": finish}],
                                   "model": p.model});
            if p.include_usage {
                chunk["usage"] = Value::Null;
            }
            out.push(chunk.to_string());
        }
    }
    if p.include_usage {
        out.push(json!({"id": id, "object": "text_completion", "created": created, "model": p.model,
                        "usage": usage(p), "choices": []}).to_string());
    }
    out.push("[DONE]".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn refuses_what_openai_refuses() {
        let e = plan(&obj(json!({"model": "m", "prompt": "", "max_tokens": -1})), 12).err().unwrap();
        assert_eq!(e.1, "Invalid 'max_tokens': integer below minimum value. Expected a value >= 0, but got -1 instead.");
        assert_eq!(e.3, Some("integer_below_min_value"));
        let e = plan(&obj(json!({"model": "m", "prompt": "x", "max_completion_tokens": 5})), 12).err().unwrap();
        assert_eq!(e.1, "Unrecognized request argument supplied: max_completion_tokens");
        assert!(plan(&obj(json!({"model": "m"})), 12).is_err());
        assert!(plan(&obj(json!({"model": "m", "prompt": "x", "stream_options": {"include_usage": true}})), 12).is_err());
        // Typed as chat's members are (found by tests/e2e/test_mutated_exchanges.py).
        for (body, param) in [(json!({"model": "m", "prompt": "x", "stream": true, "stream_options": 7}), "stream_options"),
                              (json!({"model": "m", "prompt": "x", "stream": true, "stream_options": {"include_usage": 1}}), "stream_options.include_usage"),
                              (json!({"model": "m", "prompt": "x", "temperature": "hot"}), "temperature")] {
            let Err((status, message, got, code)) = plan(&obj(body), 12) else { panic!("accepted") };
            assert_eq!((status, got, code), (400, Some(param), Some("invalid_type")), "{message}");
            assert!(message.starts_with(&format!("Invalid type for '{param}': expected ")), "{message}");
        }
    }

    #[test]
    fn bills_the_default_cap_and_every_best_of_candidate() {
        let p = plan(&obj(json!({"model": "m", "prompt": "abcdefgh", "best_of": 3})), 40).unwrap();
        assert_eq!((p.input, p.output, p.choices, p.finish), (2, 16, 3, "length"));
        let v: Value = serde_json::from_str(&json_body(&p, "cmpl-1", 0)).unwrap();
        assert_eq!(v["usage"], json!({"prompt_tokens": 2, "completion_tokens": 48, "total_tokens": 50}));
        let p = plan(&obj(json!({"model": "m", "prompt": "x", "stream": true, "stream_options": {"include_usage": true}})), 3).unwrap();
        let d = stream_data(&p, "cmpl-1", 0);
        assert_eq!(d.len(), 5);
        assert!(d[0].contains(r#""usage":null"#) && d[3].contains(r#""choices":[]"#) && d[4] == "[DONE]");
    }
}
