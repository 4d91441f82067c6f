//! A planned chat answer written out: its usage object in each format,
//! the JSON body, and the stream's events, paced and cut as the test asked.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{audio, decorate, header_str, header_u64, hostile, respond, server_loop, Dialect, Plan};

/// Output tokens billed: every choice's, reasoning included (or what a lying
/// provider reports).
pub(crate) fn completion_tokens(p: &Plan) -> u64 {
    p.usage_output.unwrap_or((p.output + p.reasoning + p.audio.output).saturating_mul(p.choices) + loop_output(p))
}

/// What the searching calls of Anthropic's server tool loop wrote.
fn loop_output(p: &Plan) -> u64 {
    p.server_loop.map_or(0, |l| l.output)
}

fn openai_usage(p: &Plan) -> Value {
    let completion = completion_tokens(p);
    match p.dialect {
        Dialect::DeepSeek => json!({
            "prompt_tokens": p.input, "completion_tokens": completion, "total_tokens": p.input + completion,
            "prompt_tokens_details": {"cached_tokens": p.cached},
            "completion_tokens_details": {"reasoning_tokens": p.reasoning},
            "prompt_cache_hit_tokens": p.cached, "prompt_cache_miss_tokens": p.input - p.cached.min(p.input)
        }),
        _ => json!({
            "prompt_tokens": p.input, "completion_tokens": completion, "total_tokens": p.input + completion,
            "prompt_tokens_details": if p.cache_write > 0 {
                // GPT-5.6 and later report cache writes.
                json!({"cached_tokens": p.cached, "cache_write_tokens": p.cache_write, "audio_tokens": p.audio.input})
            } else {
                json!({"cached_tokens": p.cached, "audio_tokens": p.audio.input})
            },
            "completion_tokens_details": {"reasoning_tokens": p.reasoning, "audio_tokens": p.audio.output * p.choices,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        }),
    }
}

/// The `iterations` of an answer whose context was compacted or whose
/// advisor was consulted: the compaction pass (its tokens not in the
/// top-level counts), then the messages, whose tokens the top level sums,
/// with the advisor's calls between them (each `advisor_message` with its
/// model, also not in the top-level counts): anthropic-sdk-python
/// `types/beta/beta_iterations_usage.py`, the shape of a real record in
/// ccusage/ccusage#1115.
fn iterations(p: &Plan, output: u64) -> Option<Value> {
    if p.compaction.is_none() && p.advisor.is_none() {
        return None;
    }
    let mut it = Vec::new();
    if let Some((input, out)) = p.compaction {
        it.push(json!({"type": "compaction", "input_tokens": input, "output_tokens": out, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}));
    }
    let message = |input: u64, output: u64, read: u64, write: u64| {
        json!({"type": "message", "input_tokens": input, "output_tokens": output, "cache_read_input_tokens": read, "cache_creation_input_tokens": write})
    };
    match &p.advisor {
        None => it.push(message(p.input, output, p.cached, p.cache_write)),
        Some((model, calls)) => {
            // The executor asks for advice, then answers: its tokens split across the two.
            let asked = output.min(5);
            it.push(message(p.input, asked, p.cached, p.cache_write));
            for (input, out) in calls {
                it.push(json!({"type": "advisor_message", "model": model, "input_tokens": input, "output_tokens": out,
                               "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}));
            }
            it.push(message(0, output - asked, 0, 0));
        }
    }
    Some(Value::Array(it))
}

/// The advisor's blocks before the answer's text: a `server_tool_use`
/// (name `advisor`, empty input: "the executor only decides the timing")
/// and its `advisor_tool_result`, per call.
fn advisor_blocks(p: &Plan, n: u64) -> Vec<Value> {
    let Some((_, calls)) = &p.advisor else { return Vec::new() };
    (0..calls.len())
        .flat_map(|i| {
            let id = format!("srvtoolu_mock{n:012}{i:04}");
            [json!({"type": "server_tool_use", "id": id, "name": "advisor", "input": {}}),
             json!({"type": "advisor_tool_result", "tool_use_id": id,
                    "content": {"type": "advisor_result", "text": "Plan: check the inputs first, then answer briefly.", "stop_reason": "end_turn"}})]
        })
        .collect()
}

fn anthropic_usage_with_iterations(p: &Plan) -> Value {
    let mut u = anthropic_usage(p, p.output + p.reasoning + loop_output(p));
    if let Some(it) = iterations(p, p.usage_output.unwrap_or(p.output)) {
        u["iterations"] = it;
    }
    u
}

fn anthropic_usage(p: &Plan, output: u64) -> Value {
    let output = p.usage_output.unwrap_or(output);
    let mut u = json!({"input_tokens": p.input, "cache_creation_input_tokens": p.cache_write,
           "cache_read_input_tokens": p.cached, "output_tokens": output,
           "cache_creation": {"ephemeral_5m_input_tokens": p.cache_write - p.cache_write_1h.min(p.cache_write),
                              "ephemeral_1h_input_tokens": p.cache_write_1h.min(p.cache_write)},
           "output_tokens_details": {"thinking_tokens": p.reasoning.min(output)}});
    if p.web_searches > 0 {
        u["server_tool_use"] = json!({"web_search_requests": p.web_searches});
    }
    if let Some(geo) = p.inference_geo {
        u["inference_geo"] = json!(geo);
    }
    if let Some(speed) = p.speed {
        u["speed"] = json!(speed);
    }
    u
}

/// A stream's `message_start` usage: the first call's input, one output
/// token (the totals come in `message_delta`).
fn first_call_usage(p: &Plan) -> Value {
    let mut u = anthropic_usage(p, 1);
    u["output_tokens_details"] = json!({"thinking_tokens": 0});
    if let Some(l) = p.server_loop {
        u["input_tokens"] = json!(l.first_input);
        if let Some(m) = u.as_object_mut() {
            m.remove("server_tool_use");
        }
    }
    u
}

/// The tier an OpenAI answer says served it (`service_tier`): as asked
/// (`fast` is reported as `priority`; `auto`, `default`, `scale` and none
/// as `default`), unless `x-mock-served-tier` says otherwise: the
/// project's default tier serving `auto`, or Fast mode falling back to
/// standard under a surge, as api.openai.com answers (developers.openai.com/
/// api/docs/guides/fast-mode).
pub(crate) fn served_tier(asked: Option<&str>, h: &HeaderMap) -> &'static str {
    match header_str(h, "x-mock-served-tier").or(asked) {
        Some("priority" | "fast") => "priority",
        Some("ultrafast") => "ultrafast",
        Some("flex") => "flex",
        _ => "default",
    }
}

/// DeepSeek has no tiers: its answers carry no `service_tier` (the
/// "Your first API call" example, api-docs.deepseek.com; tests/captures/
/// deepseek_chat_blank_lines.json).
fn without_tier_for_deepseek(mut v: Value, dialect: Dialect) -> Value {
    if let (Dialect::DeepSeek, Some(o)) = (dialect, v.as_object_mut()) {
        o.remove("service_tier");
    }
    v
}

/// Why an Anthropic answer stopped: its cap, a tool call, or its end.
fn anthropic_stop(p: &Plan) -> &'static str {
    match (p.finish, &p.tool_call) {
        // The loop's ten calls ran out before the searches did.
        _ if p.web_searches >= server_loop::LIMIT && p.server_loop.is_some() => "pause_turn",
        ("length", _) => "max_tokens",
        (_, Some(_)) => "tool_use",
        _ => "end_turn",
    }
}

/// Why a chat answer stopped: its cap, a tool call, or its end.
fn chat_finish(p: &Plan) -> &'static str {
    match (p.finish, &p.tool_call) {
        ("length", _) => "length",
        (_, Some(_)) => "tool_calls",
        (f, None) => f,
    }
}

/// A chat completion as the API answers it (and keeps it, `store: true`).
pub(crate) fn chat_object(p: &Plan, n: u64, text: &str) -> Value {
    json!({
        "id": format!("chatcmpl-mock{n:020}"), "object": "chat.completion", "created": 1_767_225_600u64 + n,
        "model": p.model,
        "choices": (0..p.choices).map(|i| {
            let mut message = json!({"role": "assistant", "content": text, "refusal": null, "annotations": []});
            if p.audio.output > 0 {
                // A spoken answer: its text is the audio's transcript.
                message["audio"] = audio::message(text, n);
                message["content"] = Value::Null;
            }
            if let Some(r) = p.reasoning_text {
                message["reasoning_content"] = json!(r);
            }
            if let Some(name) = &p.tool_call {
                message["tool_calls"] = json!([{"id": format!("call_mock{n:020}"), "type": "function", "function": {"name": name, "arguments": "{}"}}]);
            }
            json!({"index": i, "message": message, "logprobs": null, "finish_reason": chat_finish(p)})
        }).collect::<Vec<_>>(),
        "usage": openai_usage(p), "service_tier": p.service_tier, "system_fingerprint": "fp_mock"
    })
}

pub(crate) fn json_response(p: Plan, n: u64, h: &HeaderMap, uri: &Uri) -> Response<Body> {
    let text: String = p.pieces().concat();
    let body: Value = match p.dialect {
        Dialect::Anthropic => json!({
            "id": format!("msg_mock{n:020}"), "type": "message", "role": "assistant", "model": p.model,
            "content": advisor_blocks(&p, n).into_iter().chain([json!({"type": "text", "text": text})]).chain(
                p.tool_call.as_ref().map(|name| json!({"type": "tool_use", "id": format!("toolu_mock{n:020}"), "name": name, "input": {}}))).collect::<Vec<_>>(),
            "stop_reason": anthropic_stop(&p), "stop_sequence": null, "stop_details": null,
            "usage": anthropic_usage_with_iterations(&p)
        }),
        _ => chat_object(&p, n, &text),
    };
    let mut body = body;
    if let (Some(d), Some(m)) = (&p.diagnostics, body.as_object_mut()) {
        m.insert("diagnostics".into(), d.clone());
    }
    let body = without_tier_for_deepseek(body, p.dialect).to_string();
    let mut resp = if let Some(_cut) = p.cut_after {
        // Half the body, then the connection drops.
        let half = Bytes::from(body.into_bytes());
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        tokio::spawn(async move {
            let _ = tx.send(Ok(half.slice(..half.len() / 2))).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(Err(std::io::Error::other("mock cut"))).await;
        });
        let mut r = Response::new(Body::from_stream(ReceiverStream::new(rx)));
        decorate(r.headers_mut(), h, uri, "application/json");
        r
    } else {
        respond(StatusCode::OK, h, uri, body, "application/json")
    };
    add_common(resp.headers_mut(), &p, n);
    resp
}

fn add_common(h: &mut HeaderMap, p: &Plan, n: u64) {
    let shown = p.model.get(..p.model.len().min(256)).unwrap_or("");
    h.insert("x-mock-model", HeaderValue::from_str(shown).unwrap_or(HeaderValue::from_static("")));
    match p.dialect {
        Dialect::Anthropic => {
            h.insert("request-id", HeaderValue::from_str(&format!("req_mock{n}")).unwrap_or(HeaderValue::from_static("")));
        }
        _ => {
            h.insert("x-ratelimit-limit-requests", HeaderValue::from_static("10000"));
            h.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("9999"));
            h.insert("openai-processing-ms", HeaderValue::from_static("1"));
        }
    }
}

/// Whether OpenAI stream events carry the `obfuscation` member: by
/// default, unless `stream_options.include_obfuscation` is false (OpenAI API
/// reference: ChatCompletionStreamOptions, ResponseStreamOptions).
pub fn obfuscation_asked(stream_options: Option<&Value>) -> bool {
    stream_options.and_then(|o| o.get("include_obfuscation")).and_then(Value::as_bool).unwrap_or(true)
}

/// Event `i`'s `obfuscation`: random characters padding the event's size in
/// the real API; here 1 to 15 of a fixed string, varying from event to event.
pub fn obfuscation_pad(i: u64) -> &'static str {
    const PAD: &str = "Zk3WuQNXpVAVIPi";
    PAD.get(..(i % 15 + 1) as usize).unwrap_or(PAD)
}

pub(crate) fn sse(name: Option<&str>, data: &str) -> Bytes {
    match name {
        Some(n) => Bytes::from(format!("event: {n}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

fn stream_events(p: &Plan, n: u64) -> Vec<Bytes> {
    let pieces = p.pieces();
    let mut ev = Vec::with_capacity(pieces.len() + 8);
    match p.dialect {
        Dialect::Anthropic => {
            let start = json!({"type": "message_start", "message": {
                "id": format!("msg_mock{n:020}"), "type": "message", "role": "assistant", "content": [], "model": p.model,
                "stop_reason": null, "stop_sequence": null, "usage": first_call_usage(p)}});
            let mut start = start;
            if let Some(d) = &p.diagnostics {
                start["message"]["diagnostics"] = d.clone();
            }
            ev.push(sse(Some("message_start"), &start.to_string()));
            // The advisor's blocks come whole, each started and stopped.
            let advised = advisor_blocks(p, n);
            for (i, b) in advised.iter().enumerate() {
                ev.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": i, "content_block": b}).to_string()));
                ev.push(sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": i}).to_string()));
            }
            let t = advised.len();
            ev.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": t, "content_block": {"type": "text", "text": ""}}).to_string()));
            ev.push(sse(Some("ping"), r#"{"type": "ping"}"#));
            for piece in pieces {
                let d = json!({"type": "content_block_delta", "index": t, "delta": {"type": "text_delta", "text": piece}});
                ev.push(sse(Some("content_block_delta"), &d.to_string()));
            }
            ev.push(sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": t}).to_string()));
            if let Some(name) = &p.tool_call {
                let block = json!({"type": "tool_use", "id": format!("toolu_mock{n:020}"), "name": name, "input": {}});
                ev.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": t + 1, "content_block": block}).to_string()));
                for partial in ["", "{}"] {
                    let d = json!({"type": "content_block_delta", "index": t + 1, "delta": {"type": "input_json_delta", "partial_json": partial}});
                    ev.push(sse(Some("content_block_delta"), &d.to_string()));
                }
                ev.push(sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": t + 1}).to_string()));
            }
            let stop = anthropic_stop(p);
            let output = p.usage_output.unwrap_or(p.output + p.reasoning + loop_output(p));
            let mut d = json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                           "usage": {"output_tokens": output, "output_tokens_details": {"thinking_tokens": p.reasoning.min(output)}}});
            if p.server_loop.is_some() {
                // After a server tool loop, the totals of every call (as the real stream's).
                d["usage"] = anthropic_usage(p, p.output + p.reasoning + loop_output(p));
            }
            if let Some(it) = iterations(p, p.usage_output.unwrap_or(p.output)) {
                d["usage"]["iterations"] = it;
            }
            ev.push(sse(Some("message_delta"), &d.to_string()));
            ev.push(sse(Some("message_stop"), r#"{"type":"message_stop"}"#));
        }
        _ => {
            let id = format!("chatcmpl-mock{n:020}");
            let created = 1_767_225_600u64 + n;
            let mut k = 0u64;
            let mut obfuscate = |c: &mut Value| {
                if p.include_obfuscation {
                    k += 1;
                    c["obfuscation"] = json!(obfuscation_pad(n + 7 * k));
                }
            };
            // `usage`: null on every chunk but the last (when asked), the
            // counts on the last, which has no choices.
            let mut chunk_with = |choices: Value, usage: Option<Value>| {
                let c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": p.model,
                                   "service_tier": p.service_tier, "system_fingerprint": "fp_mock", "choices": choices});
                let mut c = without_tier_for_deepseek(c, p.dialect);
                if p.include_usage {
                    c["usage"] = usage.unwrap_or(Value::Null);
                }
                obfuscate(&mut c);
                sse(None, &c.to_string())
            };
            let mut chunk = |choices: Value| chunk_with(choices, None);
            ev.push(chunk(json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}])));
            if let Some(r) = p.reasoning_text {
                ev.push(chunk(json!([{"index": 0, "delta": {"content": null, "reasoning_content": r}, "logprobs": null, "finish_reason": null}])));
            }
            for piece in pieces {
                ev.push(chunk(json!([{"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}])));
            }
            if let Some(name) = &p.tool_call {
                let call = json!({"index": 0, "id": format!("call_mock{n:020}"), "type": "function", "function": {"name": name, "arguments": ""}});
                ev.push(chunk(json!([{"index": 0, "delta": {"tool_calls": [call]}, "logprobs": null, "finish_reason": null}])));
                let args = json!({"index": 0, "function": {"arguments": "{}"}});
                ev.push(chunk(json!([{"index": 0, "delta": {"tool_calls": [args]}, "logprobs": null, "finish_reason": null}])));
            }
            ev.push(chunk(json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": chat_finish(p)}])));
            if p.include_usage {
                ev.push(chunk_with(json!([]), Some(openai_usage(p))));
            }
            ev.push(Bytes::from_static(b"data: [DONE]\n\n"));
        }
    }
    ev
}

pub(crate) fn stream_response(p: Plan, n: u64, h: &HeaderMap, uri: &Uri) -> Response<Body> {
    let mut r = Response::new(paced(stream_events(&p, n), p.chunk_delay, p.cut_after));
    decorate(r.headers_mut(), h, uri, "text/event-stream; charset=utf-8");
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    add_common(r.headers_mut(), &p, n);
    r
}

/// A 200 whose body comes in `chunks` as the request's headers pace and
/// cut them (`x-mock-chunk-delay-ms`, `x-mock-cut-after`), misbehaving as
/// they ask (hostile.rs).
pub(crate) async fn paced_answer(chunks: Vec<Bytes>, h: &HeaderMap, uri: &Uri, ctype: &str) -> Response<Body> {
    let pace = Duration::from_millis(header_u64(h, "x-mock-chunk-delay-ms").unwrap_or(0));
    let mut r = Response::new(paced(chunks, pace, header_u64(h, "x-mock-cut-after")));
    decorate(r.headers_mut(), h, uri, ctype);
    hostile::misbehave(r, h).await
}

/// A stream's events, `chunk_delay` apart (`x-mock-chunk-delay-ms`), the
/// connection dropped after `cut_after` of them (`x-mock-cut-after`).
fn paced(events: Vec<Bytes>, chunk_delay: Duration, cut_after: Option<u64>) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        for (i, e) in events.into_iter().enumerate() {
            if cut_after.is_some_and(|c| i as u64 >= c) {
                // Give the proxy time to forward what was sent, then drop the connection.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = tx.send(Err(std::io::Error::other("mock cut"))).await;
                return;
            }
            if i > 0 && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            if tx.send(Ok(e)).await.is_err() {
                return; // client went away
            }
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}
