//! `POST /v1/responses`, OpenAI's Responses API.
//!
//! Sources: the OpenAI API reference, "Create a model response"
//! (platform.openai.com/docs/api-reference/responses/create: the request
//! members below; `max_output_tokens` at least 16), "The response object"
//! and "Streaming events" (platform.openai.com/docs/api-reference/responses-streaming);
//! a live response recorded by openai/openai-python (tests/captures/
//! openai_response.json, whose members this mock's answer carries).
//! Usage is always reported, at the end; a stream ends with
//! `response.completed` (no `[DONE]`).

use serde_json::{json, Map, Value};

use crate::{count_tokens, output_pieces};

const PARAMS: &[&str] = &[
    "background", "conversation", "include", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata",
    "model", "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
    "reasoning", "safety_identifier", "service_tier", "store", "stream", "stream_options", "temperature", "text",
    "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
];

/// A refusal: status, message, param, code.
pub type Refusal = (u16, String, Option<&'static str>, Option<&'static str>);

pub struct Plan {
    pub model: String,
    pub stream: bool,
    pub input: u64,
    pub cached: u64,
    pub output: u64,
    pub reasoning: u64,
    pub incomplete: bool,
    pub store: bool,
    pub previous: Option<String>,
    /// Streams: an `obfuscation` member on each delta event (the default;
    /// `stream_options.include_obfuscation: false` turns it off).
    pub obfuscation: bool,
}

fn text_of(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => items.iter().for_each(|i| text_of(i, out)),
        Value::Object(m) => {
            for k in ["text", "content", "output", "arguments"] {
                if let Some(x) = m.get(k) {
                    text_of(x, out);
                }
            }
        }
        _ => {}
    }
}

/// Checks a request. `wanted`, `reasoning` and `cached` are what the test asked for.
pub fn plan(m: &Map<String, Value>, wanted: u64, reasoning: u64, cached: u64) -> Result<Plan, Refusal> {
    if let Some(k) = m.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        if k == "max_tokens" || k == "max_completion_tokens" {
            return Err((400, format!("Unsupported parameter: '{k}'. In the Responses API, this parameter has moved to 'max_output_tokens'."), None, Some("unsupported_parameter")));
        }
        return Err((400, format!("Unknown parameter: '{k}'."), None, Some("unknown_parameter")));
    }
    let model = match m.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err((400, "Missing required parameter: 'model'.".into(), Some("model"), Some("missing_required_parameter"))),
    };
    if m.get("reasoning").and_then(|r| r.get("effort")).is_some_and(|e| !e.is_null()) && crate::strict::openai_plain_model(&model) {
        let r = crate::strict::unsupported_parameter("reasoning.effort", "");
        return Err((r.status, r.message, Some("reasoning.effort"), r.code));
    }
    let format = m.get("text").and_then(|t| t.get("format")).filter(|f| f.get("type").and_then(Value::as_str) == Some("json_schema"));
    let strict = format.filter(|f| f.get("strict").and_then(Value::as_bool) == Some(true));
    let name = strict.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("");
    if let Some(msg) = strict.and_then(|f| f.get("schema")).and_then(|schema| crate::strict::strict_schema(name, schema)) {
        return Err((400, msg, None, None));
    }
    // A real answer for gpt-5-nano (braintrustdata/lingua `topPReasoningModelParam`).
    if m.get("top_p").is_some_and(|v| !v.is_null()) && crate::strict::openai_reasoning_model(&model) {
        let r = crate::strict::unsupported_parameter("top_p", "");
        return Err((r.status, r.message, Some("top_p"), r.code));
    }
    let cap = match m.get("max_output_tokens") {
        None | Some(Value::Null) => u64::MAX,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 16 => n as u64,
            Some(n) => {
                return Err((
                    400,
                    format!("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {n} instead."),
                    Some("max_output_tokens"),
                    Some("integer_below_min_value"),
                ))
            }
            None => return Err((400, "Invalid type for 'max_output_tokens': expected an integer.".into(), Some("max_output_tokens"), Some("invalid_type"))),
        },
    };
    if m.get("input").is_none() && m.get("prompt").is_none() && m.get("previous_response_id").is_none() {
        return Err((400, "Missing required parameter: 'input'.".into(), Some("input"), Some("missing_required_parameter")));
    }
    let previous = match m.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.starts_with("resp_") => Some(s.clone()),
        Some(_) => return Err((400, "Invalid 'previous_response_id': expected an ID that begins with 'resp'.".into(), Some("previous_response_id"), Some("invalid_value"))),
    };
    let mut text = String::new();
    for k in ["instructions", "input"] {
        if let Some(v) = m.get(k) {
            text_of(v, &mut text);
        }
    }
    let input = count_tokens(&text).max(1);
    let reasoning = reasoning.min(cap);
    let output = (wanted + reasoning).min(cap);
    Ok(Plan {
        model,
        stream: m.get("stream").and_then(Value::as_bool).unwrap_or(false),
        input: input.max(cached),
        cached,
        output,
        reasoning,
        incomplete: wanted + reasoning > cap,
        store: m.get("store").and_then(Value::as_bool).unwrap_or(true),
        previous,
        obfuscation: crate::obfuscation_asked(m.get("stream_options")),
    })
}

fn text(p: &Plan) -> String {
    output_pieces(p.output - p.reasoning).concat()
}

fn message(p: &Plan, id: &str, done: bool) -> Value {
    let content = if done { json!([{"type": "output_text", "annotations": [], "logprobs": [], "text": text(p)}]) } else { json!([]) };
    json!({"id": format!("msg_{id}"), "type": "message", "status": if done { "completed" } else { "in_progress" },
           "content": content, "role": "assistant"})
}

/// The response object; `usage` and output only once done.
pub fn object(p: &Plan, id: &str, created: u64, done: bool) -> Value {
    let status = if !done { "in_progress" } else if p.incomplete { "incomplete" } else { "completed" };
    let usage = done.then(|| json!({
        "input_tokens": p.input, "input_tokens_details": {"cached_tokens": p.cached},
        "output_tokens": p.output, "output_tokens_details": {"reasoning_tokens": p.reasoning},
        "total_tokens": p.input + p.output}));
    json!({"id": format!("resp_{id}"), "object": "response", "created_at": created, "status": status,
           "background": false, "error": null,
           "incomplete_details": if done && p.incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
           "instructions": null, "max_output_tokens": null, "max_tool_calls": null, "model": p.model,
           "output": if done { json!([message(p, id, true)]) } else { json!([]) },
           "parallel_tool_calls": true, "previous_response_id": p.previous, "prompt_cache_key": null,
           "reasoning": {"effort": null, "summary": null}, "safety_identifier": null, "service_tier": "default",
           "store": p.store, "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
           "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
           "usage": usage, "user": null, "metadata": {}})
}

/// The stream's events: (name, data), in order.
pub fn events(p: &Plan, id: &str, created: u64) -> Vec<(String, String)> {
    let mid = format!("msg_{id}");
    let mut ev: Vec<Value> = vec![
        json!({"type": "response.created", "response": object(p, id, created, false)}),
        json!({"type": "response.in_progress", "response": object(p, id, created, false)}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": message(p, id, false)}),
        json!({"type": "response.content_part.added", "item_id": mid, "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}),
    ];
    for (k, piece) in (0u64..).zip(output_pieces(p.output - p.reasoning)) {
        let mut d = json!({"type": "response.output_text.delta", "item_id": mid, "output_index": 0, "content_index": 0,
                           "delta": piece, "logprobs": []});
        // api.openai.com pads delta events too.
        if p.obfuscation {
            d["obfuscation"] = json!(crate::obfuscation_pad(k));
        }
        ev.push(d);
    }
    ev.push(json!({"type": "response.output_text.done", "item_id": mid, "output_index": 0, "content_index": 0,
                   "text": text(p), "logprobs": []}));
    ev.push(json!({"type": "response.output_item.done", "output_index": 0, "item": message(p, id, true)}));
    let terminal = if p.incomplete { "response.incomplete" } else { "response.completed" };
    ev.push(json!({"type": terminal, "response": object(p, id, created, true)}));
    ev.into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e["sequence_number"] = json!(i);
            let name = e["type"].as_str().unwrap_or_default().to_string();
            (name, e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn refuses_what_the_responses_api_refuses() {
        let e = plan(&obj(json!({"model": "m", "input": "x", "max_tokens": 5})), 12, 0, 0).err().unwrap();
        assert!(e.1.contains("moved to 'max_output_tokens'"));
        let e = plan(&obj(json!({"model": "m", "input": "x", "max_output_tokens": 5})), 12, 0, 0).err().unwrap();
        assert_eq!(e.3, Some("integer_below_min_value"));
        assert!(plan(&obj(json!({"model": "m", "input": "x", "stream_options": {}, "n": 2})), 12, 0, 0).is_err());
        assert!(plan(&obj(json!({"model": "m"})), 12, 0, 0).is_err());
        assert!(plan(&obj(json!({"model": "m", "previous_response_id": "resp_1"})), 12, 0, 0).is_ok());
        let e = plan(&obj(json!({"model": "gpt-4.1", "input": "x", "reasoning": {"effort": "low"}})), 12, 0, 0).err().unwrap();
        assert_eq!((e.1.as_str(), e.2, e.3), ("Unsupported parameter: 'reasoning.effort' is not supported with this model.", Some("reasoning.effort"), Some("unsupported_parameter")));
        assert!(plan(&obj(json!({"model": "gpt-5.4", "input": "x", "reasoning": {"effort": "low"}})), 12, 0, 0).is_ok());
    }

    #[test]
    fn usage_counts_reasoning_in_output_and_the_stream_ends_with_it() {
        let p = plan(&obj(json!({"model": "m", "input": [{"role": "user", "content": "abcdefgh"}], "stream": true})), 5, 3, 0).unwrap();
        let o = object(&p, "1", 0, true);
        assert_eq!(o["usage"]["output_tokens"], 8);
        assert_eq!(o["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
        let ev = events(&p, "1", 0);
        assert_eq!(ev.last().unwrap().0, "response.completed");
        assert_eq!(ev.iter().filter(|(n, _)| n == "response.output_text.delta").count(), 5);
        assert!(ev[0].1.contains(r#""usage":null"#));
        let padded = |ev: &[(String, String)]| ev.iter().filter(|(_, d)| d.contains(r#""obfuscation":"#)).count();
        assert_eq!(padded(&ev), 5, "every delta event, and only those");
        let off = obj(json!({"model": "m", "input": "x", "stream": true, "stream_options": {"include_obfuscation": false}}));
        assert_eq!(padded(&events(&plan(&off, 5, 0, 0).unwrap(), "1", 0)), 0);
    }
}
