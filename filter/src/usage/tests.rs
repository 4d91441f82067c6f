use super::null_usage::strip_null_usage;
use super::*;
use crate::sse::parse_event;

#[test]
fn an_event_too_large_to_translate_ends_the_clients_stream_with_an_error_in_its_format() {
    use crate::translate::Direction::*;
    for (d, client_error) in [
        (OpenAiToAnthropic, "data: {\"error\""),
        (ChatToResponses, "data: {\"error\""),
        (AnthropicToOpenAi, "event: error"),
        (AnthropicToResponses, "event: error"),
        (ResponsesToChat, "\"type\":\"error\""),
        (ResponsesToAnthropic, "\"type\":\"error\""),
    ] {
        let mut t = StreamTracker::new(d.upstream_api(), false).translating(d.stream(1, true, None));
        // An event that never ends, in pieces, then more events the client must not get.
        let mut out = Vec::new();
        out.extend(t.push(b"data: {\"x\":\""));
        for _ in 0..40 {
            out.extend(t.push(&[b'a'; 64 << 10]));
        }
        out.extend(t.push(b"\"}\n\ndata: {\"later\":1}\n\n"));
        out.extend(t.finish());
        let text = String::from_utf8(out).unwrap_or_default();
        assert_eq!(text.matches(client_error).count(), 1, "{d:?}: {text}");
        assert!(text.contains("larger than the gateway reads") && !text.contains("later") && !text.contains("aaaa"), "{d:?}: {text}");
        assert!(t.summary().oversized, "{d:?}");
        // Ended another way (a compressed answer that stops decoding): once, then nothing more.
        let mut t = StreamTracker::new(d.upstream_api(), false).translating(d.stream(1, true, None));
        let said = String::from_utf8(t.end_with_error("content_encoding", "not valid gzip")).unwrap_or_default();
        assert!(said.matches(client_error).count() == 1 && said.contains("not valid gzip"), "{d:?}: {said}");
        assert!(t.end_with_error("content_encoding", "again").is_empty() && t.push(b"data: {\"later\":1}\n\n").is_empty() && t.finish().is_empty());
    }
    // A stream passed on as it comes cannot be ended cleanly (an event may be half sent).
    assert!(StreamTracker::new(Api::OpenAiChat, false).end_with_error("content_encoding", "x").is_empty());
    // One sent on decoded in whole events is ended in its own API's format, after the last whole event.
    for (api, strip, event_line, message) in [
        (Api::OpenAiChat, true, None, "/error/message"),
        (Api::OpenAiChat, false, None, "/error/message"),
        (Api::AnthropicMessages, false, Some("event: error"), "/error/message"),
        (Api::OpenAiResponses, false, Some("event: error"), "/message"),
    ] {
        let mut t = StreamTracker::new(api, strip).whole_events();
        assert!(t.rewrites());
        let mut out = t.push(b"data: {\"a\":1}\n\ndata: {\"half");
        assert_eq!(out, b"data: {\"a\":1}\n\n", "{api:?}: a partial event is held");
        out.extend(t.end_with_error("content_encoding", "not valid gzip"));
        out.extend(t.push(b"\"}\n\ndata: {\"later\":1}\n\n"));
        out.extend(t.finish());
        let text = String::from_utf8(out).unwrap_or_default();
        let mut events = text.split("\n\n").filter(|e| !e.is_empty());
        assert_eq!(events.next(), Some("data: {\"a\":1}"), "{api:?}: {text}");
        let last = events.next().unwrap_or_default();
        assert_eq!(events.next(), None, "{api:?}: nothing after the error: {text}");
        let ev = parse_event(last.as_bytes());
        assert_eq!(ev.name, event_line.map(|l| &l[7..]), "{api:?}: {last}");
        let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or_default();
        assert_eq!(v.pointer(message).and_then(|m| m.as_str()), Some("not valid gzip"), "{api:?}: {last}");
        assert!(t.end_with_error("content_encoding", "again").is_empty());
    }
}

#[test]
fn openai_json_usage_with_cache_and_reasoning() {
    let body = br#"{"id":"x","object":"chat.completion","model":"gpt-5.4-2026","choices":[],
        "usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,
        "prompt_tokens_details":{"cached_tokens":64,"audio_tokens":0},
        "completion_tokens_details":{"reasoning_tokens":10}}}"#;
    let r = parse_json_response(Api::OpenAiChat, body);
    assert_eq!(r.model.as_deref(), Some("gpt-5.4-2026"));
    assert_eq!(
        r.usage,
        Some(Usage { input_tokens: 120, cached_input_tokens: 64, cache_write_tokens: 0, output_tokens: 30, reasoning_tokens: 10, cache_reported: true, ..Default::default() })
    );
}

#[test]
fn openai_audio_tokens_are_read_in_json_and_stream() {
    // gpt-audio: spoken input and a spoken answer (openai-python CompletionUsage's details).
    let usage = r#"{"prompt_tokens":220,"completion_tokens":480,"total_tokens":700,
        "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":200},
        "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":400,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#;
    let body = format!(r#"{{"id":"x","object":"chat.completion","model":"gpt-audio","choices":[],"usage":{usage}}}"#);
    let u = parse_json_response(Api::OpenAiChat, body.as_bytes()).usage.unwrap();
    assert_eq!((u.input_tokens, u.audio_input_tokens, u.output_tokens, u.audio_output_tokens), (220, 200, 480, 400));
    let mut t = StreamTracker::new(Api::OpenAiChat, false);
    let usage = usage.replace('\n', "");
    t.push(format!("data: {{\"choices\":[],\"usage\":{usage}}}\n\ndata: [DONE]\n\n").as_bytes());
    let s = t.summary().usage.unwrap();
    assert_eq!((s.audio_input_tokens, s.audio_output_tokens), (200, 400));
}

#[test]
fn gemini_audio_modalities_are_read() {
    let body = br#"{"candidates":[],"usageMetadata":{"promptTokenCount":330,"candidatesTokenCount":900,"totalTokenCount":1230,
        "promptTokensDetails":[{"modality":"TEXT","tokenCount":30},{"modality":"AUDIO","tokenCount":300}],
        "candidatesTokensDetails":[{"modality":"AUDIO","tokenCount":880},{"modality":"TEXT","tokenCount":20},{"modality":"AUDIO"},{"tokenCount":5}]}}"#;
    let u = parse_json_response(Api::GeminiGenerateContent, body).usage.unwrap();
    assert_eq!((u.input_tokens, u.audio_input_tokens, u.output_tokens, u.audio_output_tokens), (330, 300, 900, 880));
    // image output of the image models, beside their text
    let img = br#"{"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":1302,"thoughtsTokenCount":100,
        "candidatesTokensDetails":[{"modality":"TEXT","tokenCount":12},{"modality":"IMAGE","tokenCount":1290}]}}"#;
    let u = parse_json_response(Api::GeminiGenerateContent, img).usage.unwrap();
    assert_eq!((u.output_tokens, u.image_output_tokens, u.audio_output_tokens), (1402, 1290, 0));
    // Gemini 3 Pro Image's answers list the image alone, the text beyond it unlisted
    let only = br#"{"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":1223,"thoughtsTokenCount":106,
        "candidatesTokensDetails":[{"modality":"IMAGE","tokenCount":1120}]}}"#;
    let u = parse_json_response(Api::GeminiGenerateContent, only).usage.unwrap();
    assert_eq!((u.output_tokens, u.image_output_tokens), (1223 + 106, 1120));
    // an odd entry never fails the usage beside it
    let odd = br#"{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,"promptTokensDetails":[{"modality":7,"tokenCount":"x"}]}}"#;
    assert_eq!(parse_json_response(Api::GeminiGenerateContent, odd).usage.map(|u| u.input_tokens), Some(3));
}

#[test]
fn deepseek_cache_hit_fields() {
    let body = br#"{"model":"deepseek-v4","usage":{"prompt_tokens":100,"completion_tokens":5,"total_tokens":105,
        "prompt_cache_hit_tokens":80,"prompt_cache_miss_tokens":20}}"#;
    let u = parse_json_response(Api::OpenAiChat, body).usage.unwrap();
    assert_eq!((u.input_tokens, u.cached_input_tokens, u.output_tokens, u.cache_reported), (100, 80, 5, true));
}

#[test]
fn null_details_are_zero() {
    let body = br#"{"usage":{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":null}}}"#;
    let u = parse_json_response(Api::OpenAiChat, body).usage.unwrap();
    assert_eq!(u, Usage { input_tokens: 1, output_tokens: 2, ..Default::default() });
    assert!(!u.cache_reported, "no cache figure: not reported, which is not 0 %");
}

#[test]
fn a_usage_is_read_only_from_an_object_never_from_an_array_by_position() {
    // serde's derive read `[900, 5]` as prompt_tokens 900, completion_tokens 5.
    for (api, body) in [(Api::OpenAiChat, &br#"{"model":"m","usage":[900,5]}"#[..]), (Api::AnthropicMessages, br#"{"model":"m","usage":[900,5]}"#),
                        (Api::OpenAiResponses, br#"{"id":"r","model":"m","usage":[900,5,905]}"#)] {
        assert_eq!(parse_json_response(api, body).usage, None, "{api:?}");
    }
    for (api, body) in [(Api::OpenAiChat, &br#"{"usage":null}"#[..]), (Api::AnthropicMessages, br#"{"usage":null}"#)] {
        assert_eq!(parse_json_response(api, body).usage, None, "{api:?}: null is no usage");
    }
    let u = parse_json_response(Api::OpenAiChat, br#"{"usage":{"prompt_tokens":900,"completion_tokens":5}}"#).usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (900, 5));
    // A usage found on its own (a big event's tail, a translation) the same.
    for api in [Api::OpenAiChat, Api::AnthropicMessages, Api::OpenAiResponses, Api::GeminiGenerateContent] {
        assert_eq!(crate::usage::usage_from_value(api, serde_json::json!([900, 5, 905])), None, "{api:?}");
    }
    // In a stream: an array-shaped usage chunk is no usage either.
    let mut t = StreamTracker::new(Api::OpenAiChat, false);
    t.push(b"data: {\"choices\":[],\"usage\":[900,5]}\n\ndata: [DONE]\n\n");
    assert_eq!(t.summary().usage, None);
}

#[test]
fn a_usage_detail_is_read_only_from_an_object_never_from_an_array_by_position() {
    use serde_json::json;
    // A detail that is an array fails the usage as a string always did
    // (the record is then estimated): `[800]` was 800 cached tokens.
    for (api, detail, array) in [
        (Api::OpenAiChat, "prompt_tokens_details", json!([800])),
        (Api::OpenAiChat, "completion_tokens_details", json!([null, 5])),
        (Api::AnthropicMessages, "cache_creation", json!([0, 900])),
        (Api::AnthropicMessages, "server_tool_use", json!([40])),
        (Api::OpenAiResponses, "input_tokens_details", json!([800])),
        (Api::OpenAiResponses, "output_tokens_details", json!([5])),
        (Api::OpenAiImages, "input_tokens_details", json!([null, 900])),
        (Api::OpenAiTranscriptions, "input_token_details", json!([null, 10])),
    ] {
        let with = |v: serde_json::Value| {
            let mut u = match api {
                Api::OpenAiChat => json!({"prompt_tokens": 900, "completion_tokens": 5}),
                Api::OpenAiTranscriptions => json!({"type": "tokens", "input_tokens": 900, "output_tokens": 5}),
                _ => json!({"input_tokens": 900, "output_tokens": 5}),
            };
            u[detail] = v;
            u
        };
        let (usage, as_string, as_object) = (with(array), with(json!("text")), with(json!({})));
        let body = |u: &serde_json::Value| json!({"model": "m", "usage": u}).to_string();
        assert_eq!(parse_json_response(api, body(&usage).as_bytes()).usage, None, "{api:?} {usage}");
        assert_eq!(parse_json_response(api, body(&as_string).as_bytes()).usage, None, "{api:?} {as_string}");
        assert_eq!(crate::usage::usage_from_value(api, usage.clone()), None, "{api:?} {usage} on its own");
        let read = parse_json_response(api, body(&as_object).as_bytes()).usage;
        assert_eq!(read.map(|u| (u.input_tokens, u.output_tokens)), Some((900, 5)), "{api:?} {as_object}");
    }
    // Anthropic's thinking detail is lenient: of another shape, no thinking; the usage still counts.
    let u = parse_json_response(Api::AnthropicMessages, br#"{"usage":{"input_tokens":900,"output_tokens":50,"output_tokens_details":[40]}}"#).usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens, u.reasoning_tokens), (900, 50, 0));
    // An `iterations` entry given as an array was an advisor's or a compaction's
    // tokens by position; the list is now ignored, the top level still counts.
    let entry = json!([100, 100, null, null, null, null, null, null, null, "advisor_message"]);
    let top = json!({"input_tokens": 900, "output_tokens": 50, "iterations": [entry]});
    assert_eq!(crate::usage::advisor_from_value(Api::AnthropicMessages, &top), None);
    let compaction = json!({"input_tokens": 900, "output_tokens": 50, "iterations": [[100, 100, null, null, null, null, null, null, null, "compaction"]]});
    let u = crate::usage::usage_from_value(Api::AnthropicMessages, compaction).unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (900, 50));
    // The same entries as objects are read.
    let advised = json!({"input_tokens": 900, "output_tokens": 50, "iterations": [{"type": "advisor_message", "input_tokens": 100, "output_tokens": 100}]});
    assert_eq!(crate::usage::advisor_from_value(Api::AnthropicMessages, &advised).map(|u| (u.input_tokens, u.output_tokens)), Some((100, 100)));
    // Gemini's usageMetadata, in a body and on its own; images', audio's and speech's usages on their own.
    assert_eq!(parse_json_response(Api::GeminiGenerateContent, br#"{"candidates":[],"usageMetadata":[12,0,2580]}"#).usage, None);
    assert_eq!(crate::gemini::usage_from_value(json!([12, 0, 2580])), None);
    assert_eq!(images::from_value(json!([900, 5])), None);
    assert_eq!(images::from_body(br#"{"usage":[900,5]}"#), None);
    assert_eq!(audio::from_value(json!([null, 5.0])), None);
    assert_eq!(speech::from_value(json!([14, 101])), None);
    assert!(speech::from_value(json!({"input_tokens": 14, "output_tokens": 101})).is_some());
    assert!(crate::gemini::usage_from_value(json!({"promptTokenCount": 12, "candidatesTokenCount": 3})).is_some());
}

#[test]
fn anthropic_json_usage_counts_cache_in_input() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],
        "usage":{"input_tokens":50,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000,"output_tokens":40}}"#;
    let u = parse_json_response(Api::AnthropicMessages, body).usage.unwrap();
    assert_eq!(u, Usage { input_tokens: 1250, cached_input_tokens: 1000, cache_write_tokens: 200, output_tokens: 40, reasoning_tokens: 0, cache_reported: true, ..Default::default() });
}

/// Anthropic reports the part of the output spent thinking (Claude 5 era:
/// a real claude-fable-5 answer in braintrustdata/lingua
/// `payloads/snapshots/fableTemperatureParam/anthropic/response.json`
/// carries `"output_tokens_details": {"thinking_tokens": 0}`), in the
/// message and in a stream's `message_delta`: read as reasoning tokens,
/// never above the output (the SDK: "Always ≤ `output_tokens`").
#[test]
fn anthropic_thinking_tokens_are_its_reasoning_tokens() {
    let body = br#"{"type":"message","model":"claude-opus-4-8","content":[],"stop_details":null,
        "usage":{"input_tokens":10,"output_tokens":41,"output_tokens_details":{"thinking_tokens":34},"service_tier":"standard"}}"#;
    let u = parse_json_response(Api::AnthropicMessages, body).usage.unwrap();
    assert_eq!((u.output_tokens, u.reasoning_tokens), (41, 34));
    let over = br#"{"usage":{"input_tokens":1,"output_tokens":5,"output_tokens_details":{"thinking_tokens":9}}}"#;
    assert_eq!(parse_json_response(Api::AnthropicMessages, over).usage.unwrap().reasoning_tokens, 5);
    // A detail of another shape (a misbehaving provider) is no thinking, and the usage is still read.
    for odd in [&br#"{"usage":{"input_tokens":1,"output_tokens":5,"output_tokens_details":null}}"#[..],
                br#"{"usage":{"input_tokens":1,"output_tokens":5,"output_tokens_details":{}}}"#,
                br#"{"usage":{"input_tokens":1,"output_tokens":5,"output_tokens_details":"many"}}"#,
                br#"{"usage":{"input_tokens":1,"output_tokens":5,"output_tokens_details":true}}"#,
                br#"{"usage":{"input_tokens":1,"output_tokens":5,"output_tokens_details":{"thinking_tokens":-3}}}"#,
                br#"{"usage":{"input_tokens":1,"output_tokens":5,"output_tokens_details":{"thinking_tokens":"3"}}}"#,
                br#"{"usage":{"input_tokens":1,"output_tokens":5,"output_tokens_details":{"thinking_tokens":2.5}}}"#] {
        assert_eq!(parse_json_response(Api::AnthropicMessages, odd).usage.unwrap(), Usage { input_tokens: 1, output_tokens: 5, ..Default::default() });
    }
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-opus-4-8\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n\
        event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":19,\"output_tokens_details\":{\"thinking_tokens\":6}}}\n\n\
        event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (_, s) = run(Api::AnthropicMessages, true, stream.as_bytes(), 7);
    assert_eq!(s.usage.map(|u| (u.output_tokens, u.reasoning_tokens)), Some((19, 6)));
}

/// Server-side compaction's passes are billed at the model's rates but left
/// out of the top-level usage (anthropic-sdk-python `types/beta/beta_usage.py`):
/// they are added; `message` entries, which the top level sums, are not.
#[test]
fn anthropic_compaction_iterations_are_added_to_the_top_level_usage() {
    let usage = r#"{"input_tokens":50,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000,"output_tokens":40,
        "iterations":[{"type":"compaction","input_tokens":180000,"output_tokens":3000,"cache_read_input_tokens":5000,"cache_creation_input_tokens":100,
                       "cache_creation":{"ephemeral_5m_input_tokens":40,"ephemeral_1h_input_tokens":60}},
                      {"type":"message","input_tokens":50,"output_tokens":40,"cache_read_input_tokens":1000,"cache_creation_input_tokens":200}]}"#;
    let body = format!(r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"usage":{usage}}}"#);
    let want = Usage { input_tokens: 1250 + 185_100, cached_input_tokens: 6000, cache_write_tokens: 300, cache_write_1h_tokens: 60,
                       output_tokens: 3040, cache_reported: true, ..Default::default() };
    assert_eq!(parse_json_response(Api::AnthropicMessages, body.as_bytes()).usage, Some(want));
    // In a stream, from the message_delta that carries them.
    let stream = format!(concat!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"model\":\"claude-sonnet-4-6\",\"usage\":{{\"input_tokens\":50,\"cache_creation_input_tokens\":200,\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}}}}\n\n",
        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{usage}}}\n\n",
        "event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"), usage = usage.replace('\n', ""));
    for size in [1, 7, 10_000] {
        assert_eq!(run(Api::AnthropicMessages, false, stream.as_bytes(), size).1.usage, Some(want), "{size}");
    }
    // No compaction, or iterations the parser cannot read as such, add nothing.
    for its in [r#"[]"#, r#"[{"type":"message","input_tokens":9}]"#, r#"null"#, r#"[{"type":"advisor_message","input_tokens":9,"model":"m"}]"#,
                r#""x""#, r#"{"type":"compaction"}"#, r#"[{"type":"compaction","input_tokens":"9"}]"#, r#"[1]"#, r#"[{"type":7,"input_tokens":9}]"#] {
        let body = format!(r#"{{"model":"m","usage":{{"input_tokens":5,"output_tokens":2,"iterations":{its}}}}}"#);
        assert_eq!(parse_json_response(Api::AnthropicMessages, body.as_bytes()).usage.map(|u| (u.input_tokens, u.output_tokens)), Some((5, 2)), "{its}");
    }
    let huge = r#"{"model":"m","usage":{"input_tokens":5,"output_tokens":2,"iterations":[{"type":"compaction","input_tokens":18446744073709551615},{"type":"compaction","input_tokens":18446744073709551615}]}}"#;
    assert_eq!(parse_json_response(Api::AnthropicMessages, huge.as_bytes()).usage.map(|u| u.input_tokens), Some(tollgate_protocol::usage::MAX_COUNT), "clamped, never wrapped");
}

/// The advisor tool's calls (`advisor_message` entries, the advisor
/// model's tokens) are left out of the top-level usage and read apart. The
/// shape and the figures are a real Claude Code record quoted in
/// ccusage/ccusage#1115 (Sonnet 4.6 executor, Opus 4.7 advisor: top level
/// 2 / 491 / 226,584 read / 7,853 written; a `message` iteration 1 / 45 /
/// 109,696 / 7,192; the advisor 159,419 in / 7,805 out); the quote stops
/// inside the advisor entry, so its cache members and the last `message`
/// entry are filled in here.
#[test]
fn anthropic_advisor_iterations_are_read_apart_from_the_top_level_usage() {
    let usage = r#"{"input_tokens":2,"output_tokens":491,"cache_read_input_tokens":226584,"cache_creation_input_tokens":7853,
        "iterations":[{"type":"message","input_tokens":1,"output_tokens":45,"cache_read_input_tokens":109696,"cache_creation_input_tokens":7192},
                      {"type":"advisor_message","model":"claude-opus-4-7","input_tokens":159419,"output_tokens":7805,"cache_read_input_tokens":0,"cache_creation_input_tokens":0},
                      {"type":"message","input_tokens":1,"output_tokens":446,"cache_read_input_tokens":116888,"cache_creation_input_tokens":661}]}"#;
    let body = format!(r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"usage":{usage}}}"#);
    let main = Usage { input_tokens: 2 + 226_584 + 7853, cached_input_tokens: 226_584, cache_write_tokens: 7853, output_tokens: 491, cache_reported: true, ..Default::default() };
    let advisor = Usage { input_tokens: 159_419, output_tokens: 7805, cache_reported: true, ..Default::default() };
    let info = parse_json_response(Api::AnthropicMessages, body.as_bytes());
    assert_eq!((info.usage, info.advisor), (Some(main), Some(advisor)), "the top level is the executor's alone");
    // In a stream, from the message_delta that carries them, in any chunking.
    let stream = format!(concat!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"model\":\"claude-sonnet-4-6\",\"usage\":{{\"input_tokens\":2,\"cache_creation_input_tokens\":7853,\"cache_read_input_tokens\":226584,\"output_tokens\":1}}}}}}\n\n",
        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{usage}}}\n\n",
        "event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"), usage = usage.replace('\n', ""));
    for size in [1, 7, 10_000] {
        let s = run(Api::AnthropicMessages, false, stream.as_bytes(), size).1;
        assert_eq!((s.usage, s.advisor), (Some(main), Some(advisor)), "{size}");
    }
    // Several calls are summed; with a compaction pass beside them, each goes where it belongs.
    let two = r#"{"model":"m","usage":{"input_tokens":5,"output_tokens":2,"iterations":[{"type":"advisor_message","model":"a","input_tokens":10,"output_tokens":3,"cache_read_input_tokens":4},
        {"type":"compaction","input_tokens":100,"output_tokens":7},{"type":"advisor_message","model":"a","input_tokens":20,"output_tokens":4,"cache_creation_input_tokens":6}]}}"#;
    let info = parse_json_response(Api::AnthropicMessages, two.as_bytes());
    assert_eq!(info.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((105, 9)));
    assert_eq!(info.advisor.map(|u| (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens, u.output_tokens)), Some((40, 4, 6, 7)));
    // None ran, or iterations the parser cannot read: no advisor usage, the top level still counts.
    for its in ["[]", r#"[{"type":"message","input_tokens":9}]"#, "null", r#""x""#, r#"[{"type":"advisor_message","input_tokens":"9"}]"#, "[1]"] {
        let body = format!(r#"{{"model":"m","usage":{{"input_tokens":5,"output_tokens":2,"iterations":{its}}}}}"#);
        let info = parse_json_response(Api::AnthropicMessages, body.as_bytes());
        assert_eq!((info.usage.map(|u| u.input_tokens), info.advisor), (Some(5), None), "{its}");
    }
    let huge = r#"{"model":"m","usage":{"input_tokens":5,"iterations":[{"type":"advisor_message","output_tokens":18446744073709551615},{"type":"advisor_message","output_tokens":18446744073709551615}]}}"#;
    assert_eq!(parse_json_response(Api::AnthropicMessages, huge.as_bytes()).advisor.map(|u| u.output_tokens), Some(tollgate_protocol::usage::MAX_COUNT), "clamped, never wrapped");
    // Only Anthropic's answers have it.
    assert_eq!(advisor_from_value(Api::OpenAiChat, &serde_json::json!({"iterations": [{"type": "advisor_message", "input_tokens": 1}]})), None);
}

#[test]
fn embeddings_usage_is_input_only() {
    // A real api.openai.com response (tests/captures/README.md).
    let body = include_bytes!("../../../tests/captures/openai_embeddings.json");
    let info = parse_json_response(Api::OpenAiEmbeddings, body);
    assert_eq!(info.model.as_deref(), Some("text-embedding-3-small"));
    assert_eq!(info.usage, Some(Usage { input_tokens: 7, ..Default::default() }));
}

#[test]
fn legacy_completion_streams_are_read_and_their_null_usage_stripped() {
    // A real api.openai.com stream (tests/captures/README.md).
    let stream = include_bytes!("../../../tests/captures/openai_completion_stream_usage.sse");
    let mut t = StreamTracker::new(Api::OpenAiCompletions, true);
    let mut out = t.push(stream);
    out.extend(t.finish());
    let s = t.summary();
    assert_eq!(s.usage, Some(Usage { input_tokens: 31, output_tokens: 25, cache_reported: false, ..Default::default() }));
    assert_eq!(s.model.as_deref(), Some("babbage:2023-07-21-v2"));
    assert!(s.finished && s.output_chars > 40, "{s:?}");
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("usage"), "the usage chunk and the null usage members are gone: {out}");
    assert!(out.contains(r#""text":" fib""#) && out.ends_with("data: [DONE]\n\n"));
    let json = include_bytes!("../../../tests/captures/openai_completion.json");
    assert_eq!(parse_json_response(Api::OpenAiCompletions, json).usage.map(|u| (u.input_tokens, u.output_tokens)), Some((31, 25)));
}

#[test]
fn responses_api_streams_are_read_in_any_chunking_and_left_unchanged() {
    let stream = include_bytes!("../../../tests/captures/openai_response_stream.sse");
    for size in [1, 7, 61, stream.len()] {
        let mut t = StreamTracker::new(Api::OpenAiResponses, true);
        assert!(!t.rewrites(), "nothing is added upstream, so nothing is removed");
        for c in stream.chunks(size) {
            t.push(c);
        }
        t.finish();
        let s = t.summary();
        assert_eq!(s.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((14, 50)), "chunks of {size}");
        assert!(s.finished && s.usage_final && !s.error_event);
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert!(s.output_chars > 200);
    }
}

#[test]
fn a_responses_stream_cut_before_its_last_event_has_no_usage_but_its_text_counted() {
    let stream = include_bytes!("../../../tests/captures/openai_response_stream.sse");
    let cut = &stream[..stream.len() / 2];
    let mut t = StreamTracker::new(Api::OpenAiResponses, false);
    t.push(cut);
    let s = t.summary();
    assert!(s.usage.is_none() && !s.finished && s.output_chars > 0, "{s:?}");
    let o = crate::record::Observed {
        status: 200,
        upstream_responded: true,
        termination: crate::record::Termination::UpstreamReset,
        estimated_input_tokens: 9,
        image_bound: None,
        image_input_bound: 0,
        audio_input_ms: 0,
        input_characters: 0,
        spoken: None,
        json: None,
        stream: Some(s.clone()),
        body_note: None,
        body_bytes: 0,
        head_served: Default::default(),
        container_gb: 0,
    };
    let (u, source, outcome, _) = crate::record::account(&o);
    assert_eq!((source, outcome), (crate::record::UsageSource::Estimated, crate::record::Outcome::UpstreamCut));
    assert_eq!((u.input_tokens, u.output_tokens), (9, s.output_chars.div_ceil(4)));
}

#[test]
fn hosted_calls_done_are_billed_though_the_stream_is_cut_or_its_last_event_unread() {
    let item = |kind: &str| format!("event: response.output_item.done\ndata: {{\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{{\"id\":\"x\",\"type\":\"{kind}\",\"status\":\"completed\"}}}}\n\n");
    let calls = [item("web_search_call"), item("file_search_call"), item("web_search_call"), item("message"), item("function_call")].concat();
    let mut t = StreamTracker::new(Api::OpenAiResponses, false);
    t.push(calls.as_bytes());
    let s = t.summary();
    assert_eq!(s.usage.map(|u| (u.web_search_requests, u.file_search_calls, u.input_tokens)), Some((2, 1, 0)));
    // cut there: an estimate, with the calls
    let o = crate::record::Observed {
        status: 200,
        upstream_responded: true,
        termination: crate::record::Termination::DownstreamReset,
        estimated_input_tokens: 9,
        image_bound: None,
        image_input_bound: 0,
        audio_input_ms: 0,
        input_characters: 0,
        spoken: None,
        json: None,
        stream: Some(s),
        body_note: None,
        body_bytes: 0,
        head_served: Default::default(),
        container_gb: 0,
    };
    let (u, source, _, _) = crate::record::account(&o);
    assert_eq!((source, u.input_tokens, u.web_search_requests, u.file_search_calls), (crate::record::UsageSource::Estimated, 9, 2, 1));
    // The terminal event lists the same calls: counted once. One whose output could not be read (over 1 MiB) lists none: the items count.
    for output in [r#"[{"type":"web_search_call"},{"type":"file_search_call"},{"type":"web_search_call"},{"type":"message"}]"#, "[]"] {
        let mut t = StreamTracker::new(Api::OpenAiResponses, false);
        t.push(calls.as_bytes());
        t.push(format!("event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"output\":{output},\"usage\":{{\"input_tokens\":5,\"output_tokens\":7}}}}}}\n\n").as_bytes());
        let s = t.summary();
        assert!(s.usage_final);
        assert_eq!(s.usage.map(|u| (u.web_search_requests, u.file_search_calls, u.input_tokens)), Some((2, 1, 5)), "{output}");
    }
    // No call: no usage made up.
    let mut t = StreamTracker::new(Api::OpenAiResponses, false);
    t.push(item("message").as_bytes());
    assert_eq!(t.summary().usage, None);
}

#[test]
fn error_and_garbage_bodies_have_no_usage() {
    assert_eq!(parse_json_response(Api::OpenAiChat, br#"{"error":{"message":"x"}}"#).usage, None);
    assert_eq!(parse_json_response(Api::OpenAiChat, b"not json"), ResponseInfo::default());
}

const OPENAI_STREAM: &str = include_str!("../../fixtures/openai_stream_include_usage.sse");
const ANTHROPIC_STREAM: &str = include_str!("../../fixtures/anthropic_stream.sse");

fn run(api: Api, strip: bool, stream: &[u8], chunk: usize) -> (Vec<u8>, StreamSummary) {
    let mut t = StreamTracker::new(api, strip);
    let mut out = Vec::new();
    for c in stream.chunks(chunk) {
        let o = t.push(c);
        if t.rewrites() {
            out.extend_from_slice(&o);
        } else {
            out.extend_from_slice(c);
        }
    }
    out.extend_from_slice(&t.finish());
    (out, t.summary())
}

#[test]
fn openai_stream_usage_at_every_chunk_size() {
    for size in [1, 2, 3, 7, 16, 64, 10_000] {
        let (out, s) = run(Api::OpenAiChat, false, OPENAI_STREAM.as_bytes(), size);
        assert_eq!(out, OPENAI_STREAM.as_bytes());
        assert!(s.finished);
        assert_eq!(s.model.as_deref(), Some("gpt-5.4-2026-03-05"));
        assert_eq!(s.usage, Some(Usage { input_tokens: 19, cached_input_tokens: 0, output_tokens: 10, reasoning_tokens: 0, cache_write_tokens: 0, cache_reported: true, ..Default::default() }));
        assert_eq!(s.output_chars, "Hello! How can I help you today?".len() as u64);
    }
}

#[test]
fn stripping_gives_the_stream_without_include_usage() {
    let expected = include_str!("../../fixtures/openai_stream_plain.sse");
    for size in [1, 5, 13, 100, 10_000] {
        let (out, s) = run(Api::OpenAiChat, true, OPENAI_STREAM.as_bytes(), size);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "chunk size {size}");
        assert_eq!(s.usage.unwrap().output_tokens, 10);
    }
}

#[test]
fn strip_null_usage_variants() {
    let strip = |raw: &[u8]| {
        let mut out = b"kept:".to_vec();
        strip_null_usage(raw, &mut out);
        String::from_utf8(out).unwrap_or_default()
    };
    assert_eq!(strip(br#"{"a":1,"usage":null}"#), r#"kept:{"a":1}"#);
    assert_eq!(strip(b"data: {\"a\":1,\"usage\":null}\r\n\r\n"), "kept:data: {\"a\":1}\r\n\r\n");
    assert_eq!(strip(br#"{"usage":null,"a":1}"#), r#"kept:{"a":1}"#);
    assert_eq!(strip(br#"{"a":1, "usage" : null }"#), r#"kept:{"a":1 }"#);
    assert_eq!(strip(br#"{"usage":null}"#), r#"kept:{}"#);
    // OpenAI's own order since 2025: usage, then obfuscation (tests/captures).
    assert_eq!(strip(br#"{"a":1,"usage":null,"obfuscation":"x}\"y"}"#), r#"kept:{"a":1,"obfuscation":"x}\"y"}"#);
    // Last but nested, with more after it: not the top level's.
    assert_eq!(strip(br#"{"x":{"usage":null,"o":"}"},"y":1}"#), r#"kept:{"x":{"usage":null,"o":"}"},"y":1}"#);
    // Not last: found by following the nesting.
    assert_eq!(strip(br#"{"a":[{"b":"}"}],"usage":null,"c":{"d":1}}"#), r#"kept:{"a":[{"b":"}"}],"c":{"d":1}}"#);
    // escaped inside a string: untouched
    assert_eq!(strip(br#"{"c":"\"usage\":null"}"#), r#"kept:{"c":"\"usage\":null"}"#);
    assert_eq!(strip(br#"{"c":"\\","usage":null}"#), r#"kept:{"c":"\\"}"#);
    assert_eq!(strip(br#"{"usage":{"x":1}}"#), r#"kept:{"usage":{"x":1}}"#);
    // A member named usage deeper in the chunk is the provider's.
    assert_eq!(strip(br#"{"x":{"usage":null}}"#), r#"kept:{"x":{"usage":null}}"#);
    assert_eq!(strip(br#"{"x":{"usage":null},"usage":null}"#), r#"kept:{"x":{"usage":null}}"#);
    assert_eq!(strip(br#"{"usage":null,"x":{"usage":null}}"#), r#"kept:{"x":{"usage":null}}"#);
    // Broken JSON is passed on as it came (or nearly): never a panic.
    for raw in [&b"{\"usage\":nul"[..], b"\"usage\":null}", b"{\"a\":\"\\", b"}}}\"usage\":null", b""] {
        let _ = strip(raw);
    }
}

#[test]
fn anthropic_stream_at_every_chunk_size() {
    for size in [1, 2, 9, 33, 10_000] {
        let (out, s) = run(Api::AnthropicMessages, true, ANTHROPIC_STREAM.as_bytes(), size);
        assert_eq!(out, ANTHROPIC_STREAM.as_bytes(), "anthropic streams are never rewritten");
        assert!(s.finished);
        assert_eq!(s.model.as_deref(), Some("claude-sonnet-4-6"));
        assert_eq!(
            s.usage,
            Some(Usage { input_tokens: 25 + 2048 + 512, cached_input_tokens: 2048, cache_write_tokens: 512, output_tokens: 15, reasoning_tokens: 0, cache_reported: true, ..Default::default() })
        );
        assert_eq!(s.output_chars, "Hello! How can I help?".len() as u64);
    }
}

#[test]
fn cut_stream_is_not_finished() {
    let cut = &OPENAI_STREAM.as_bytes()[..OPENAI_STREAM.len() / 2];
    let (_, s) = run(Api::OpenAiChat, false, cut, 17);
    assert!(!s.finished);
    assert_eq!(s.usage, None);
    assert!(s.output_chars > 0);
    let cut = &ANTHROPIC_STREAM.as_bytes()[..ANTHROPIC_STREAM.len() / 2];
    let (_, s) = run(Api::AnthropicMessages, false, cut, 17);
    assert!(!s.finished);
    assert_eq!(s.usage.map(|u| u.input_tokens), Some(25 + 2048 + 512), "message_start already told the input");
}

#[test]
fn hostile_chunks_are_counted_unescaped_or_skipped_never_misread() {
    let chunk = |body: &str| format!("data: {body}\n\n");
    let mut s = String::new();
    // Escaped text counts as the characters it stands for: é, a newline, a quote, an emoji (a surrogate pair).
    s += &chunk(r#"{"model":"gpt-\u0035","choices":[{"delta":{"content":"\u00e9\n\"\ud83d\ude00"}}],"usage":null}"#);
    // Control characters and NUL are characters too.
    s += &chunk(r#"{"choices":[{"delta":{"content":"a\u0000\u001b"}}],"usage":null}"#);
    // Text that is not a string, a lone surrogate, a duplicate member: unreadable, so not counted.
    s += &chunk(r#"{"choices":[{"delta":{"content":{"x":"yyyyyyyy"}}}],"usage":null}"#);
    s += &chunk(r#"{"choices":[{"delta":{"content":"\ud800"}}],"usage":null}"#);
    s += &chunk(r#"{"model":"a","model":"b","choices":[{"delta":{"content":"zzzz"}}]}"#);
    // A reply quoting the member the gateway strips keeps its text.
    s += &chunk(r#"{"choices":[{"delta":{"content":"say \"usage\":null"}}],"usage":null}"#);
    s += &chunk(r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#);
    s += "data: [DONE]\n\n";
    for size in [1, 7, 10_000] {
        let (out, sum) = run(Api::OpenAiChat, true, s.as_bytes(), size);
        assert_eq!(sum.model.as_deref(), Some("gpt-5"), "chunk size {size}");
        assert_eq!(sum.output_chars, 4 + 3 + 16, "chunk size {size}");
        assert_eq!(sum.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((7, 3)));
        let out = String::from_utf8(out).unwrap_or_default();
        assert!(out.contains(r#"{"choices":[{"delta":{"content":"say \"usage\":null"}}]}"#), "{out}");
        assert!(!out.contains("prompt_tokens"), "the forced usage chunk is not passed on: {out}");
    }
}

#[test]
fn error_event_is_noted() {
    let stream = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let (_, s) = run(Api::AnthropicMessages, false, stream, 4);
    assert!(s.error_event && !s.finished);
}

#[test]
fn every_format_says_the_tier_and_geography_that_served_it_in_body_and_stream() {
    use crate::served::Served;
    use tollgate_protocol::record::{InferenceGeo, ServiceTier};
    let priority = Served { tier: Some(Some(ServiceTier::Priority)), geo: None };
    // OpenAI chat: the answer's top-level `service_tier`, even beside a usage it cannot spoil.
    let chat = br#"{"model":"gpt-5","service_tier":"priority","usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    let info = parse_json_response(Api::OpenAiChat, chat);
    assert_eq!((info.served, info.usage.map(|u| u.output_tokens)), (priority, Some(2)));
    let odd = br#"{"model":"gpt-5","service_tier":{"x":1},"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    let info = parse_json_response(Api::OpenAiChat, odd);
    assert_eq!((info.served, info.usage.map(|u| u.output_tokens)), (Served::default(), Some(2)));
    // Responses API: the response object's.
    let resp = br#"{"id":"resp_1","model":"gpt-5","service_tier":"default","usage":{"input_tokens":3,"output_tokens":2}}"#;
    assert_eq!(parse_json_response(Api::OpenAiResponses, resp).served.tier, Some(None));
    // Anthropic: the usage's `speed` and `inference_geo`.
    let msg = br#"{"model":"claude-opus-4-6","usage":{"input_tokens":3,"output_tokens":2,"speed":"fast","inference_geo":"us"}}"#;
    let info = parse_json_response(Api::AnthropicMessages, msg);
    assert_eq!((info.served.tier, info.served.geo), (Some(Some(ServiceTier::Fast)), Some(Some(InferenceGeo::Us))));
    // Streams, at every chunk size: each chunk's word, the last one said winning.
    let chunks = "data: {\"model\":\"gpt-5\",\"service_tier\":\"default\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
                  data: {\"model\":\"gpt-5\",\"service_tier\":\"priority\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
                  data: [DONE]\n\n";
    let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-opus-4-6\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1,\"inference_geo\":\"us\",\"speed\":\"fast\"}}}\n\n\
                     event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":2}}\n\n\
                     event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let responses = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"service_tier\":\"auto\"}}\n\n\
                     event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"service_tier\":\"flex\",\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}}\n\n";
    for chunk in [1, 7, 4096] {
        assert_eq!(run(Api::OpenAiChat, true, chunks.as_bytes(), chunk).1.served, priority, "{chunk}");
        let s = run(Api::AnthropicMessages, false, anthropic.as_bytes(), chunk).1.served;
        assert_eq!((s.tier, s.geo), (Some(Some(ServiceTier::Fast)), Some(Some(InferenceGeo::Us))), "{chunk}");
        assert_eq!(run(Api::OpenAiResponses, false, responses.as_bytes(), chunk).1.served.tier, Some(Some(ServiceTier::Flex)), "{chunk}");
    }
    // A stream that never says: nothing served is known (charged as asked).
    let silent = "data: {\"model\":\"gpt-5\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
    assert_eq!(run(Api::OpenAiChat, true, silent.as_bytes(), 5).1.served, Served::default());
}

#[test]
fn a_usage_that_counts_nothing_is_no_usage_in_any_format() {
    for (api, body) in [
        (Api::OpenAiChat, &br#"{"usage":{}}"#[..]),
        (Api::AnthropicMessages, br#"{"usage":{"prompt_tokens":5,"completion_tokens":5}}"#),
        (Api::AnthropicMessages, br#"{"usage":{"cache_read_input_tokens":5}}"#),
        (Api::OpenAiResponses, br#"{"usage":{}}"#),
    ] {
        assert_eq!(parse_json_response(api, body).usage, None, "{api:?}");
    }
    assert!(parse_json_response(Api::AnthropicMessages, br#"{"usage":{"input_tokens":0,"output_tokens":0}}"#).usage.is_some());
    // A stream's usage chunk that counts nothing: the stream is estimated, and the chunk still removed.
    let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\ndata: {\"choices\":[],\"usage\":{}}\n\ndata: [DONE]\n\n";
    let (out, s) = run(Api::OpenAiChat, true, stream.as_bytes(), 9);
    assert_eq!((s.usage, s.usage_final, s.output_chars), (None, false, 5));
    assert!(!String::from_utf8_lossy(&out).contains("usage"));
}

#[test]
fn hostile_audio_image_and_cache_write_counts_never_count_past_their_totals() {
    // A count a provider should never send (negative, a float, past u64, a
    // string, an object, a duplicate member) in OpenAI's or the Responses
    // API's details leaves no provider usage: the record is estimated (see
    // record::unreadable_bodies_are_estimated_never_free), never cheaper
    // for a part read wrong. Gemini's modality entries are a list of
    // entries, each read on its own: an odd one counts nothing (but a
    // number past f64, which no JSON reader here takes, leaves none).
    let detail = |v: &str| {
        let chat = format!(r#"{{"usage":{{"prompt_tokens":220,"completion_tokens":480,"prompt_tokens_details":{{"audio_tokens":{v}}},"completion_tokens_details":{{"audio_tokens":{v}}}}}}}"#);
        let responses = format!(r#"{{"usage":{{"input_tokens":220,"output_tokens":480,"input_tokens_details":{{"cache_write_tokens":{v}}}}}}}"#);
        let gemini = format!(r#"{{"usageMetadata":{{"promptTokenCount":7,"candidatesTokenCount":100,"candidatesTokensDetails":[{{"modality":"IMAGE","tokenCount":{v}}},{{"modality":"IMAGE","tokenCount":{v}}}]}}}}"#);
        (
            parse_json_response(Api::OpenAiChat, chat.as_bytes()).usage.map(|u| (u.audio_input_tokens, u.audio_output_tokens)),
            parse_json_response(Api::OpenAiResponses, responses.as_bytes()).usage.map(|u| u.cache_write_tokens),
            parse_json_response(Api::GeminiGenerateContent, gemini.as_bytes()).usage.map(|u| (u.output_tokens, u.image_output_tokens)),
        )
    };
    for odd in ["-5", "1.5", "1e999", "18446744073709551616", r#""400""#, "{}"] {
        let (chat, responses, gemini) = detail(odd);
        assert_eq!((chat, responses), (None, None), "{odd}");
        assert_eq!(gemini, if odd == "1e999" { None } else { Some((100, 0)) }, "{odd}");
    }
    // The largest count there is: no part counts more than its total.
    assert_eq!(detail("18446744073709551615"), (Some((220, 480)), Some(220), Some((100, 100))));
    assert_eq!(detail("null"), (Some((0, 0)), Some(0), Some((100, 0))));
    let dup = br#"{"usage":{"prompt_tokens":2,"completion_tokens":480,"completion_tokens_details":{"audio_tokens":400,"audio_tokens":1}}}"#;
    assert_eq!(parse_json_response(Api::OpenAiChat, dup).usage, None);
}

#[test]
fn an_image_streams_completed_images_are_counted_even_past_the_event_limit() {
    // openai-python ImageGenStreamEvent: partial images, then a completed event for each image.
    let usage = r#""usage":{"input_tokens":7,"input_tokens_details":{"image_tokens":0,"text_tokens":7},"output_tokens":1056,"total_tokens":1063}"#;
    let big = "A".repeat(2 << 20);
    let events = format!(
        "event: image_generation.partial_image\ndata: {{\"type\":\"image_generation.partial_image\",\"b64_json\":\"{big}\",\"partial_image_index\":0}}\n\n\
         event: image_generation.completed\ndata: {{\"type\":\"image_generation.completed\",\"b64_json\":\"{big}\",\"size\":\"1024x1024\",{usage}}}\n\n\
         event: image_generation.completed\ndata: {{\"type\":\"image_generation.completed\",\"b64_json\":\"AA==\",{usage}}}\n\n"
    );
    let mut t = StreamTracker::new(Api::OpenAiImages, false);
    for chunk in events.as_bytes().chunks(100_000) {
        t.push(chunk);
    }
    t.finish();
    let s = t.summary();
    assert!(s.finished && s.usage_final && !s.error_event, "{s:?}");
    let u = s.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens, u.image_output_tokens), (14, 2112, 2112));
    // the partial image alone, cut there: no usage, not finished
    let mut t = StreamTracker::new(Api::OpenAiImages, false);
    t.push(&events.as_bytes()[..(2 << 20) + 200]);
    assert!(t.summary().usage.is_none() && !t.summary().finished);
}

#[test]
fn a_decision_answer_a_provider_got_wrong_gives_bounded_usage_or_none() {
    let read = |usage: &str| parse_json_response(Api::OpenAiDecisions, format!(r#"{{"answers":[],"model":"gpt-6-luna","usage":{usage}}}"#).as_bytes()).usage;
    // Past any real count: clamped, cached never above the input.
    let u = read(r#"{"input_tokens":18446744073709551615,"input_tokens_details":{"cached_tokens":18446744073709551615,"cache_write_tokens":5},"output_tokens":3}"#).unwrap();
    assert_eq!((u.input_tokens, u.cached_input_tokens, u.cache_write_tokens), (tollgate_protocol::usage::MAX_COUNT, tollgate_protocol::usage::MAX_COUNT, 0));
    // Not a count: no usage (the request's estimate is charged instead).
    for wrong in [r#"{"input_tokens":1e30,"output_tokens":1}"#, r#"{"input_tokens":-5,"output_tokens":1}"#, r#"{"input_tokens":"12"}"#, "[]", "{}"] {
        assert_eq!(read(wrong), None, "{wrong}");
    }
    // Two usages: which one the client reads is unknown, so neither is believed.
    let twice = br#"{"answers":[],"model":"gpt-6-luna","usage":{"input_tokens":1,"output_tokens":0},"usage":{"input_tokens":900,"output_tokens":0}}"#;
    assert_eq!(parse_json_response(Api::OpenAiDecisions, twice).usage, None);
}
