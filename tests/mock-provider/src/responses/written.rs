//! The answer written from a plan: the response object (its output items,
//! usage and tool usage) and its stream of typed events.

use serde_json::{json, Value};

use super::{Plan, OPEN_PAGE};
use crate::output_pieces;

fn text(p: &Plan) -> String {
    output_pieces(p.output - p.reasoning).concat()
}

fn message(p: &Plan, id: &str, done: bool) -> Value {
    let content = if done { json!([{"type": "output_text", "annotations": [], "logprobs": [], "text": text(p)}]) } else { json!([]) };
    json!({"id": format!("msg_{id}"), "type": "message", "status": if done { "completed" } else { "in_progress" },
           "content": content, "role": "assistant"})
}

/// A hosted tool call's output item (`kind` its item type, `k` its place).
fn call_item(p: &Plan, id: &str, k: usize, kind: &str, done: bool) -> Value {
    let status = if done { "completed" } else { "in_progress" };
    let query = p.model.clone();
    match kind {
        "file_search_call" => json!({"id": format!("fs_{id}_{k}"), "type": kind, "status": status, "queries": [query], "results": null}),
        "image_generation_call" => {
            let status = if done { "completed" } else { "generating" };
            json!({"id": format!("ig_{id}_{k}"), "type": kind, "status": status, "result": if done { json!(crate::images::PNG) } else { Value::Null }})
        }
        OPEN_PAGE => json!({"id": format!("ws_{id}_{k}"), "type": "web_search_call", "status": status, "action": {"type": "open_page", "url": "https://example.com/"}}),
        _ => json!({"id": format!("ws_{id}_{k}"), "type": kind, "status": status, "action": {"type": "search", "query": query}}),
    }
}

/// The answer's output items: its hosted tool calls, then the message.
fn output(p: &Plan, id: &str) -> Value {
    let mut items: Vec<Value> = p.calls.iter().enumerate().map(|(k, kind)| call_item(p, id, k, kind, true)).collect();
    items.push(message(p, id, true));
    Value::Array(items)
}

/// The response object; `usage` and output only once done.
pub fn object(p: &Plan, id: &str, created: u64, done: bool) -> Value {
    let status = if !done { "in_progress" } else if p.incomplete { "incomplete" } else { "completed" };
    let details = if p.cache_write > 0 {
        json!({"cached_tokens": p.cached, "cache_write_tokens": p.cache_write})
    } else {
        json!({"cached_tokens": p.cached})
    };
    let usage = done.then(|| json!({
        "input_tokens": p.input, "input_tokens_details": details,
        "output_tokens": p.output, "output_tokens_details": {"reasoning_tokens": p.reasoning},
        "total_tokens": p.input + p.output}));
    let mut o = json!({"id": format!("resp_{id}"), "object": "response", "created_at": created, "status": status,
           "background": p.background, "error": null,
           "incomplete_details": if done && p.incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
           "instructions": p.instructions, "max_output_tokens": null, "max_tool_calls": p.hosted.max_calls, "model": p.model,
           "output": if done { output(p, id) } else { json!([]) },
           "parallel_tool_calls": true, "previous_response_id": p.previous, "prompt_cache_key": null,
           "reasoning": {"effort": null, "summary": null}, "safety_identifier": null, "service_tier": p.service_tier,
           "store": p.store, "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
           "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
           "usage": usage, "user": null, "metadata": if p.metadata.is_null() { json!({}) } else { p.metadata.clone() }});
    if done && p.tool_usage && (p.hosted.image.is_some() || p.hosted.web_search) {
        o["tool_usage"] = tool_usage(p, p.hosted.image.unwrap_or_default());
    }
    o
}

/// `tool_usage`: the image generation calls' tokens, summed; web searches counted.
fn tool_usage(p: &Plan, (per_image, partials): (u64, u64)) -> Value {
    let calls = p.calls.iter().filter(|k| **k == "image_generation_call").count() as u64;
    let images_in = p.image_input_tokens * calls;
    let input = crate::images::TOOL_PROMPT_TOKENS * calls + images_in;
    let output = (per_image + if p.stream { partials * 100 } else { 0 }) * calls;
    json!({"image_gen": {"input_tokens": input, "input_tokens_details": {"image_tokens": images_in, "text_tokens": input - images_in},
                         "output_tokens": output, "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
                         "total_tokens": input + output},
           "web_search": {"num_requests": p.calls.iter().filter(|k| **k == "web_search_call").count()}})
}

/// The stream's events: (name, data), in order.
pub fn events(p: &Plan, id: &str, created: u64) -> Vec<(String, String)> {
    let mid = format!("msg_{id}");
    let mut ev: Vec<Value> = vec![
        json!({"type": "response.created", "response": object(p, id, created, false)}),
        json!({"type": "response.in_progress", "response": object(p, id, created, false)}),
    ];
    for (k, kind) in p.calls.iter().enumerate() {
        let item = call_item(p, id, k, kind, false);
        let item_id = item["id"].clone();
        ev.push(json!({"type": "response.output_item.added", "output_index": k, "item": item}));
        let image = *kind == "image_generation_call";
        let kind = if *kind == OPEN_PAGE { "web_search_call" } else { kind };
        let phases: &[&str] = if image { &["in_progress", "generating"] } else { &["in_progress", "searching"] };
        for phase in phases {
            ev.push(json!({"type": format!("response.{kind}.{phase}"), "output_index": k, "item_id": item_id}));
        }
        for i in 0..if image { p.hosted.image.map_or(0, |(_, partials)| partials) } else { 0 } {
            ev.push(json!({"type": "response.image_generation_call.partial_image", "output_index": k, "item_id": item_id,
                           "partial_image_index": i, "partial_image_b64": crate::images::PNG}));
        }
        ev.push(json!({"type": format!("response.{kind}.completed"), "output_index": k, "item_id": item_id}));
        ev.push(json!({"type": "response.output_item.done", "output_index": k, "item": call_item(p, id, k, kind, true)}));
    }
    let at = p.calls.len();
    ev.push(json!({"type": "response.output_item.added", "output_index": at, "item": message(p, id, false)}));
    ev.push(json!({"type": "response.content_part.added", "item_id": mid, "output_index": at, "content_index": 0,
               "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}));
    for (k, piece) in (0u64..).zip(output_pieces(p.output - p.reasoning)) {
        let mut d = json!({"type": "response.output_text.delta", "item_id": mid, "output_index": at, "content_index": 0,
                           "delta": piece, "logprobs": []});
        // api.openai.com pads delta events too.
        if p.obfuscation {
            d["obfuscation"] = json!(crate::obfuscation_pad(k));
        }
        ev.push(d);
    }
    ev.push(json!({"type": "response.output_text.done", "item_id": mid, "output_index": at, "content_index": 0,
                   "text": text(p), "logprobs": []}));
    ev.push(json!({"type": "response.output_item.done", "output_index": at, "item": message(p, id, true)}));
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
