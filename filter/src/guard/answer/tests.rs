use super::held::MAX_WORD;
use super::*;
use serde_json::json;

fn guard(policy: Value, api: Api) -> AnswerGuard {
    let p = Rc::new(Policy::build(serde_json::from_value(policy).unwrap()).unwrap());
    let mut ph = Placeholders::default();
    assert_eq!(ph.for_value("email", "EMAIL", "ann@corp.example"), "[EMAIL_1]");
    let owner = Owner { key: "k1".into(), project: "p".into(), team: "t".into(), route: "r".into() };
    AnswerGuard::new(p, owner, ph, api).unwrap()
}

/// An OpenAI chat stream of `pieces` as content deltas, then the finish chunk and [DONE].
fn chat_stream(pieces: &[&str]) -> Vec<u8> {
    let mut s = String::new();
    for p in pieces {
        s.push_str(&format!("data: {}\n\n", json!({"id": "c", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]})));
    }
    s.push_str(&format!("data: {}\n\ndata: [DONE]\n\n", json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
    s.into_bytes()
}

/// The text a client assembles from a chat stream (and checks every event is whole JSON).
fn assembled(out: &[u8]) -> String {
    let mut text = String::new();
    let mut sp = SseSplitter::new();
    sp.push(out, |raw, _| {
        let ev = parse_event(raw);
        if ev.data == "[DONE]" {
            return;
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    });
    assert!(sp.pending().is_empty(), "every event ends");
    text
}

fn run(g: &mut AnswerGuard, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        out.extend(g.push(&stream[last..c]));
        last = c;
    }
    out.extend(g.finish());
    out
}

#[test]
fn placeholders_split_across_deltas_are_restored_and_values_counted_once() {
    let pieces = ["Sure: I wrote to [", "EMAIL", "_1", "] and to bob@exa", "mple.com", ", card 4111 1111 ", "1111 1111", " done. [NOT_A", "_PLACEHOLDER]"];
    let stream = chat_stream(&pieces);
    let policy = json!({"responses": "redact", "restore": true, "actions": {"email": "redact"}});
    // The same answer whatever the network's chunking.
    let mut seen = None;
    for cuts in [vec![], vec![1, 50, 51, 200, 333], (1..stream.len()).step_by(7).collect::<Vec<_>>(), (1..stream.len()).collect::<Vec<_>>()] {
        let mut g = guard(policy.clone(), Api::OpenAiChat);
        let text = assembled(&run(&mut g, &stream, &cuts));
        assert_eq!(text, "Sure: I wrote to ann@corp.example and to [EMAIL_2], card [CARD_1] done. [NOT_A_PLACEHOLDER]");
        assert_eq!(g.counts, BTreeMap::from([("card".into(), 1), ("email".into(), 1)]), "the restored value is not a finding");
        assert_eq!((g.restored, g.redacted), (1, true));
        if let Some(prev) = &seen {
            assert_eq!(prev, &text);
        }
        seen = Some(text);
    }
}

#[test]
fn observe_records_without_changing_a_byte_and_restore_alone_holds_only_brackets() {
    let stream = chat_stream(&["call +1 415 555", " 0100 or mail x@y.io", " now"]);
    let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
    let out = run(&mut g, &stream, &[10, 120]);
    assert_eq!(assembled(&out), "call +1 415 555 0100 or mail x@y.io now");
    assert_eq!(g.counts, BTreeMap::from([("email".into(), 1), ("phone".into(), 1)]));
    assert_eq!(g.finding().map(|f| f.1), Some("observed"));
    let mut g = guard(json!({"restore": true}), Api::OpenAiChat);
    let stream = chat_stream(&["Hello ", "[EMAIL_1", "]!"]);
    let out = run(&mut g, &stream, &[]);
    assert_eq!(assembled(&out), "Hello ann@corp.example!");
    assert!(g.counts.is_empty());
}

#[test]
fn anthropic_responses_and_gemini_streams_and_json_answers() {
    let policy = json!({"responses": "redact", "restore": true, "actions": {"email": "redact"}});
    // Anthropic: held text goes out before content_block_stop, in a delta of its own block.
    let mut g = guard(policy.clone(), Api::AnthropicMessages);
    let ev = |t: &str, v: Value| format!("event: {t}\ndata: {v}\n\n");
    let stream = [
        ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "to [EMAIL_"}})),
        ev("ping", json!({"type": "ping"})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "1] and z@q.io"}})),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
    ]
    .concat();
    let out = String::from_utf8(run(&mut g, stream.as_bytes(), &[])).unwrap();
    let text: String = out
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "to ann@corp.example and [EMAIL_2]");
    assert!(out.find("[EMAIL_2]").unwrap() < out.find("content_block_stop").unwrap(), "{out}");
    // Responses: deltas restored, and the full text of the terminal events too (not counted twice).
    let mut g = guard(policy.clone(), Api::OpenAiResponses);
    let stream = [
        ev("response.output_text.delta", json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "hi [EMAIL_1] z@q.io"})),
        ev("response.output_text.done", json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": "hi [EMAIL_1] z@q.io"})),
    ]
    .concat();
    let out = String::from_utf8(run(&mut g, stream.as_bytes(), &[17])).unwrap();
    let events: Vec<Value> = out.split("\n\n").filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: "))).filter_map(|d| serde_json::from_str(d).ok()).collect();
    let deltas: String = events.iter().filter_map(|v| v["delta"].as_str()).collect();
    assert_eq!(deltas, "hi ann@corp.example [EMAIL_2]");
    assert_eq!(events.last().unwrap()["text"], "hi ann@corp.example [EMAIL_2]", "{out}");
    assert_eq!(g.counts.get("email"), Some(&1));
    // Gemini: the last piece is held until the end of the stream.
    let mut g = guard(policy.clone(), Api::GeminiGenerateContent);
    let chunk = |t: &str| format!("data: {}\n\n", json!({"candidates": [{"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 3}}));
    let out = String::from_utf8(run(&mut g, [chunk("mail [EMA"), chunk("IL_1]")].concat().as_bytes(), &[])).unwrap();
    let text: String = out
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["candidates"][0]["content"]["parts"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "mail ann@corp.example");
    // A JSON answer: every text, in any shape.
    let mut g = guard(policy, Api::OpenAiChat);
    let body = json!({"id": "x@y.io", "choices": [{"message": {"role": "assistant", "content": "[EMAIL_1], meet q@z.io"}}]});
    let out: Value = serde_json::from_slice(&g.json(&serde_json::to_vec(&body).unwrap()).unwrap().unwrap()).unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "ann@corp.example, meet [EMAIL_2]");
    assert_eq!(out["id"], "x@y.io", "identifiers are not text");
}

#[test]
fn a_server_tools_result_in_an_anthropic_stream_is_scanned_and_counted_once() {
    // The advisor's advice (and a search's results) arrive whole in the
    // block's start, never as deltas: the same finding a JSON answer
    // records, and redacted when the policy redacts.
    let ev = |t: &str, v: Value| format!("event: {t}\ndata: {v}\n\n");
    let advice = "Ask ops@corp.example before you migrate.";
    let stream = [
        ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "advisor", "input": {}}})),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ev("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "advisor_tool_result", "tool_use_id": "srvtoolu_1", "content": {"type": "advisor_result", "text": advice}}})),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ev("content_block_start", json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Done."}})),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 2})),
    ]
    .concat();
    let mut g = guard(json!({"responses": "observe"}), Api::AnthropicMessages);
    let out = String::from_utf8(run(&mut g, stream.as_bytes(), &[40, 300])).unwrap();
    assert!(out.contains(&format!("\"text\":\"{advice}\"")), "observing changes no text: {out}");
    assert_eq!(g.counts, BTreeMap::from([("email".into(), 1)]));
    let mut g = guard(json!({"responses": "redact", "actions": {"email": "redact"}}), Api::AnthropicMessages);
    let out = String::from_utf8(run(&mut g, stream.as_bytes(), &[])).unwrap();
    assert!(!out.contains("ops@corp.example") && out.contains("Ask [EMAIL_2] before"), "{out}");
    assert_eq!((g.counts.get("email"), g.redacted), (Some(&1), true));
    // The same answer as JSON records the same finding.
    let body = json!({"type": "message", "content": [{"type": "advisor_tool_result", "tool_use_id": "srvtoolu_1", "content": {"type": "advisor_result", "text": advice}}]});
    let mut g = guard(json!({"responses": "observe"}), Api::AnthropicMessages);
    assert_eq!(g.json(&serde_json::to_vec(&body).unwrap()), Ok(None));
    assert_eq!(g.counts, BTreeMap::from([("email".into(), 1)]));
}

#[test]
fn held_text_is_bounded_and_a_stream_without_text_passes_unchanged() {
    let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
    let long = "x".repeat(5000);
    let out = g.push(&chat_stream(&[&long, &long]));
    assert!(g.channels.values().all(|c| c.held.len() <= MAX_WORD), "a word never holds more than its bound");
    let text = assembled(&[out, g.finish()].concat());
    assert_eq!(text.len(), 10_000, "nothing lost");
    // a provider naming a thousand choices: at most MAX_CHANNELS hold text
    let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
    let mut many = String::new();
    for i in 0..1000 {
        many.push_str(&format!("data: {}\n\n", json!({"choices": [{"index": i, "delta": {"content": "word"}}]})));
    }
    let out = [g.push(many.as_bytes()), g.finish()].concat();
    assert!(g.channels.len() <= MAX_CHANNELS);
    assert_eq!(String::from_utf8(out).unwrap().matches("word").count(), 1000, "nothing lost");
    let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
    let plain = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n: keep-alive\n\ndata: [DONE]\n\n";
    assert_eq!([g.push(plain), g.finish()].concat(), plain.to_vec());
}

#[test]
fn a_redacting_guard_never_passes_what_it_cannot_read() {
    let redact = json!({"responses": "redact", "actions": {"email": "redact"}});
    let hidden = "card 4111 1111 1111 1111, mail bob@example.com";
    let ok = |p: &str| format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": p}}]}));
    // A data line that is not JSON, bytes that are not UTF-8, an
    // event too long to hold: the stream ends there for the client,
    // held text first (scanned whole), then one error event.
    let nested = format!("data: {}{{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{hidden}\"}}}}]}}{}\n\n", "[".repeat(200), "]".repeat(200));
    let mut bad_utf8 = format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{hidden}").into_bytes();
    bad_utf8.extend_from_slice(b"\xff\"}}]}\n\n");
    let long = ok(&"x ".repeat(crate::sse::MAX_EVENT_BYTES));
    let shadowed = format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{hidden}\",\"content\":\"x\"}}}}]}}\n\n");
    // (A member given twice is refused only when redacting: a value holds it.)
    for (bad, why) in [(nested.into_bytes(), "not JSON"), (bad_utf8, "not JSON"), (shadowed.into_bytes(), "given twice"), (long.into_bytes(), "larger than the gateway reads")] {
        let stream = [ok("Dear bob@exa").into_bytes(), bad.clone(), ok(hidden).into_bytes(), b"data: [DONE]\n\n".to_vec()].concat();
        // (An event is too long to hold when its end is not yet there.)
        for cuts in [vec![stream.len() * 3 / 4], (1..stream.len()).step_by(4096).collect::<Vec<_>>()] {
            let mut g = guard(redact.clone(), Api::OpenAiChat);
            let out = String::from_utf8(run(&mut g, &stream, &cuts)).unwrap();
            assert!(!out.contains("4111") && !out.contains("bob@example.com") && !out.contains("[DONE]"), "{why}: {}", &out[..out.len().min(400)]);
            let (text, last) = out.trim_end().rsplit_once("\n\n").unwrap();
            assert_eq!(assembled(format!("{text}\n\n").as_bytes()), "Dear bob@exa", "{why}: the text before, the held part too");
            let err: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
            assert_eq!(err["error"]["code"], "answer_unreadable");
            assert!(err["error"]["message"].as_str().unwrap().contains(why), "{err}");
            assert!(g.unread);
        }
        if why == "given twice" {
            continue;
        }
        // Observing: the event passes unread, byte for byte, and the stream goes on.
        let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
        let out = run(&mut g, &stream, &[stream.len() * 3 / 4]);
        assert!(out.windows(bad.len()).any(|w| w == bad.as_slice()) && out.ends_with(b"data: [DONE]\n\n"), "{why}");
        assert!(!g.unread);
    }
    // An Anthropic client gets the error event its SDK reads.
    let mut g = guard(redact.clone(), Api::AnthropicMessages);
    let out = String::from_utf8([g.push(b"event: content_block_delta\ndata: {not json\n\n"), g.finish()].concat()).unwrap();
    assert!(out.starts_with("event: error\ndata: {") && out.contains("\"type\":\"error\"") && out.contains("redacts answers"), "{out}");
    // What carries no text is read as ever: keep-alives, [DONE], pings.
    let mut g = guard(redact.clone(), Api::OpenAiChat);
    let plain = b": keep-alive\n\ndata:\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\ndata: [DONE]\n\n";
    assert_eq!(run(&mut g, plain, &[]), plain.to_vec());
    // A JSON answer: an error when redacting, as it came otherwise; empty is no text.
    let nested = format!("{}\"{hidden}\"{}", "[".repeat(200), "]".repeat(200));
    let twice = format!("{{\"choices\":[{{\"message\":{{\"content\":\"{hidden}\",\"content\":\"hi\"}}}}]}}");
    for body in [nested.as_str(), "{\"n\": 1e400}", "{\"t\": \"\\ud800\"}", "not json", twice.as_str()] {
        let why = guard(redact.clone(), Api::OpenAiChat).json(body.as_bytes()).expect_err(body);
        assert!(why.contains("not JSON the scan can read"), "{why}");
        assert_eq!(guard(json!({"responses": "observe"}), Api::OpenAiChat).json(body.as_bytes()), Ok(None));
    }
    assert_eq!(guard(redact, Api::OpenAiChat).json(b" \n"), Ok(None));
}
