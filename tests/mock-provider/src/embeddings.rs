//! `POST /v1/embeddings`, as OpenAI answers it.
//!
//! Sources: the OpenAI API reference, "Create embeddings"
//! (platform.openai.com/docs/api-reference/embeddings/create: `input` a
//! string, an array of strings, an array of token ids or an array of such
//! arrays; `model`; `encoding_format` `float` | `base64`; `dimensions` ≥ 1;
//! `user`) and real responses recorded in envoyproxy/ai-gateway
//! `tests/internal/testopenai/cassettes/embeddings-*.yaml` (the shape below,
//! `usage` with `prompt_tokens` and `total_tokens` only; the refusal
//! "-1 is less than the minimum of 1 - 'dimensions'"; an unknown model is
//! 404 `model_not_found`). `tests/captures/openai_embeddings.json` is one of
//! them byte for byte.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::count_tokens;

const PARAMS: &[&str] = &["input", "model", "encoding_format", "dimensions", "user"];
/// text-embedding-3-small's vector length.
const DEFAULT_DIMENSIONS: u64 = 1536;

/// A refusal: status, message, param, code.
pub type Refusal = (u16, String, Option<&'static str>, Option<&'static str>);

fn bad(msg: impl Into<String>, param: Option<&'static str>) -> Refusal {
    (400, msg.into(), param, None)
}

/// Tokens of each input, or the refusal the API gives.
fn inputs(v: Option<&Value>) -> Result<Vec<u64>, Refusal> {
    let invalid = || bad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", Some("input"));
    let Some(v) = v else { return Err(bad("'input' is a required property", Some("input"))) };
    let tokens_of = |a: &Vec<Value>| -> Option<u64> {
        (!a.is_empty() && a.iter().all(|t| t.as_u64().is_some())).then_some(a.len() as u64)
    };
    match v {
        Value::String(s) if !s.is_empty() => Ok(vec![count_tokens(s)]),
        Value::Array(items) if !items.is_empty() && items.len() <= 2048 => {
            if let Some(n) = tokens_of(items) {
                return Ok(vec![n]);
            }
            items
                .iter()
                .map(|it| match it {
                    Value::String(s) if !s.is_empty() => Some(count_tokens(s)),
                    Value::Array(a) => tokens_of(a),
                    _ => None,
                })
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(invalid)
        }
        _ => Err(invalid()),
    }
}

/// Checks a request; the plan is (tokens per input, dimensions, base64).
pub fn check(m: &Map<String, Value>) -> Result<(Vec<u64>, u64, bool), Refusal> {
    if let Some(k) = m.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(bad(format!("Unrecognized request argument supplied: {k}"), None));
    }
    match m.get("model") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(bad("you must provide a model parameter", None)),
    }
    // `dimensions` is checked before `encoding_format`: a recorded request
    // with both wrong was answered about `dimensions`
    // (envoyproxy/ai-gateway cassettes/embeddings-bad-request.yaml).
    let dimensions = match m.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(v) => match v.as_i64() {
            Some(d) if d >= 1 => d as u64,
            Some(d) => return Err(bad(format!("{d} is less than the minimum of 1 - 'dimensions'"), None)),
            None => return Err(bad(format!("Invalid type for 'dimensions': expected an integer, but got {v} instead."), Some("dimensions"))),
        },
    };
    let base64 = match m.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "float" => false,
        Some(Value::String(s)) if s == "base64" => true,
        Some(other) => return Err(bad(format!("{other} is not one of ['float', 'base64'] - 'encoding_format'"), None)),
    };
    if !matches!(m.get("user"), None | Some(Value::String(_))) {
        return Err(bad("Invalid type for 'user': expected a string.", Some("user")));
    }
    Ok((inputs(m.get("input"))?, dimensions.min(4096), base64))
}

/// The response body: one deterministic unit-ish vector per input.
pub fn response(model: &str, tokens: &[u64], dimensions: u64, base64: bool) -> (String, u64) {
    let data: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let v: Vec<f32> = (0..dimensions).map(|d| (((i as u64 * 7919 + d * 104_729) % 2001) as f32 - 1000.0) / 25_000.0).collect();
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Value::from(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let total: u64 = tokens.iter().sum();
    let body = json!({"object": "list", "data": data, "model": model,
                      "usage": {"prompt_tokens": total, "total_tokens": total}});
    (body.to_string(), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn refuses_what_openai_refuses() {
        let e = check(&obj(json!({"model": "m", "input": "x", "stream": true}))).err().unwrap();
        assert_eq!(e.1, "Unrecognized request argument supplied: stream");
        let e = check(&obj(json!({"model": "m", "input": "x", "dimensions": -1}))).err().unwrap();
        assert_eq!(e.1, "-1 is less than the minimum of 1 - 'dimensions'");
        assert!(check(&obj(json!({"model": "m", "input": ""}))).is_err());
        assert!(check(&obj(json!({"model": "m", "input": []}))).is_err());
        assert!(check(&obj(json!({"model": "m", "input": [1, "a"]}))).is_err());
        assert!(check(&obj(json!({"model": "m"}))).is_err());
        assert!(check(&obj(json!({"model": "m", "input": "x", "encoding_format": "hex"}))).is_err());
    }

    #[test]
    fn counts_tokens_of_every_input_shape() {
        assert_eq!(check(&obj(json!({"model": "m", "input": "abcdefgh"}))).unwrap().0, vec![2]);
        assert_eq!(check(&obj(json!({"model": "m", "input": [4438, 656, 358]}))).unwrap().0, vec![3]);
        assert_eq!(check(&obj(json!({"model": "m", "input": ["abcd", [1, 2]]}))).unwrap().0, vec![1, 2]);
        let (body, total) = response("m", &[1, 2], 4, true);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(total, 3);
        assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(v["data"][1]["embedding"].as_str().unwrap().len(), 24); // 16 bytes in base64
    }
}
