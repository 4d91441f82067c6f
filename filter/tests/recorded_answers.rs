//! Every answer in tests/captures/recorded_answers.jsonl (524 real answers
//! of api.anthropic.com, api.openai.com's chat and Responses APIs and the
//! Gemini API, recorded by braintrustdata/lingua; source in
//! tests/captures/README.md) is read for exactly the usage it reports:
//! JSON bodies whole, streams in pieces of every size a network may cut
//! them into. The expected counts come from each recording's own usage
//! object, read here by the providers' documented rules
//! (../shared/WIRE.md) over plain `serde_json::Value`s, not by the filter's
//! parsers. New models' fields (`inference_geo`, `stop_details`,
//! `serviceTier`, …) must not disturb the count.

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)] // a test crate: a panic is a failed test

mod common;

use common::api_of;
use serde_json::Value;
use tollgate_filter::request::Api;
use tollgate_filter::usage::{parse_json_response, StreamTracker};
use tollgate_protocol::usage::Usage;

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

/// (input incl. cache, cache reads, cache writes, output incl. reasoning, reasoning, web searches)
type Counts = (u64, u64, u64, u64, u64, u64);

fn counts(u: &Usage) -> Counts {
    (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens, u.output_tokens, u.reasoning_tokens, u.web_search_requests)
}

/// What a usage object says, by each API's documented meaning.
fn expected(api: Api, u: &Value) -> Counts {
    match api {
        Api::AnthropicMessages => {
            let (read, write) = (n(u, "/cache_read_input_tokens"), n(u, "/cache_creation_input_tokens"));
            let output = n(u, "/output_tokens");
            // The part spent thinking (Claude 5 era answers), never above the output.
            let thinking = n(u, "/output_tokens_details/thinking_tokens").min(output);
            (n(u, "/input_tokens") + read + write, read, write, output, thinking, n(u, "/server_tool_use/web_search_requests"))
        }
        Api::OpenAiChat => (
            n(u, "/prompt_tokens"),
            n(u, "/prompt_tokens_details/cached_tokens"),
            n(u, "/prompt_tokens_details/cache_write_tokens"),
            n(u, "/completion_tokens"),
            n(u, "/completion_tokens_details/reasoning_tokens"),
            0,
        ),
        Api::OpenAiResponses => (
            n(u, "/input_tokens"),
            n(u, "/input_tokens_details/cached_tokens"),
            n(u, "/input_tokens_details/cache_write_tokens"),
            n(u, "/output_tokens"),
            n(u, "/output_tokens_details/reasoning_tokens"),
            0,
        ),
        // Thoughts are billed as output but not inside candidatesTokenCount; tool-use prompts are input.
        _ => (
            n(u, "/promptTokenCount") + n(u, "/toolUsePromptTokenCount"),
            n(u, "/cachedContentTokenCount"),
            0,
            n(u, "/candidatesTokenCount") + n(u, "/thoughtsTokenCount"),
            n(u, "/thoughtsTokenCount"),
            0,
        ),
    }
}

/// The usage a recorded stream reports, from its events: Anthropic's
/// `message_start` then `message_delta` (a later field wins), OpenAI's last
/// chunk with a usage, the Responses API's terminal response.
fn stream_usage(api: Api, sse: &str) -> Option<Value> {
    let events: Vec<Value> = sse.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect();
    match api {
        Api::AnthropicMessages => {
            let mut u = serde_json::Map::new();
            for e in &events {
                let part = e.pointer("/message/usage").or_else(|| e.get("usage").filter(|_| e["type"] == "message_delta"));
                for (k, v) in part.and_then(Value::as_object).into_iter().flatten() {
                    if !v.is_null() {
                        u.insert(k.clone(), v.clone());
                    }
                }
            }
            Some(Value::Object(u))
        }
        Api::OpenAiChat => events.iter().rev().find_map(|e| e.get("usage").filter(|u| u.is_object()).cloned()),
        _ => events.iter().rev().find_map(|e| e.pointer("/response/usage").filter(|u| u.is_object()).cloned()),
    }
}

#[test]
fn every_recorded_answer_is_counted_as_its_provider_reported_it() {
    let text = common::RECORDED_ANSWERS;
    let (mut checked, mut with_output, mut streams) = (0, 0, 0);
    for line in text.lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let api = api_of(rec["api"].as_str().unwrap());
        let name = format!("{} {} {}", rec["api"], rec["case"], rec["file"]);
        let got: Vec<(usize, Option<Counts>)>;
        let want = if let Some(body) = rec.get("json") {
            let usage_key = if api == Api::GeminiGenerateContent { "usageMetadata" } else { "usage" };
            let Some(u) = body.get(usage_key) else { continue };
            got = vec![(0, parse_json_response(api, body.to_string().as_bytes()).usage.as_ref().map(counts))];
            expected(api, u)
        } else {
            let sse = rec["sse"].as_str().unwrap();
            let Some(u) = stream_usage(api, sse) else {
                // A chat stream without `include_usage` reports none: none is read (the filter then estimates).
                let mut t = StreamTracker::new(api, false);
                t.push(sse.as_bytes());
                t.finish();
                assert_eq!(t.summary().usage, None, "{name}: no usage invented");
                continue;
            };
            streams += 1;
            got = [1, 7, 64, 1000, usize::MAX]
                .iter()
                .map(|&piece| {
                    let mut t = StreamTracker::new(api, false);
                    for chunk in sse.as_bytes().chunks(piece.min(sse.len()).max(1)) {
                        t.push(chunk);
                    }
                    t.finish();
                    let s = t.summary();
                    assert!(s.finished && !s.error_event, "{name}: the stream ends as recorded");
                    (piece, s.usage.as_ref().map(counts))
                })
                .collect();
            expected(api, &u)
        };
        for (piece, g) in got {
            assert_eq!(g, Some(want), "{name} in pieces of {piece}");
        }
        checked += 1;
        with_output += usize::from(want.3 > 0);
    }
    println!("{checked} recorded answers counted exactly ({streams} streams, {with_output} with output tokens)");
    assert!(checked >= 480 && streams >= 90 && with_output >= 450, "the recordings were read: {checked} / {streams} / {with_output}");
}
