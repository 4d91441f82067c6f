use super::*;
use crate::config::KeyInfo;
use crate::owned::{Answer, Kind, Unread};
use serde_json::{json, Value};
use tollgate_protocol::record::ServiceTier;

const CFG: &str = r#"{
  "providers": [
    {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
    {"name": "other", "format": "openai", "cluster": "other", "host": "api.other.example"},
    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
  "routes": [{"model": "gpt-5*", "provider": "openai"}, {"model": "o3-deep-research*", "provider": "openai"},
             {"model": "cheap", "provider": "other"}, {"model": "claude-*", "provider": "anthropic"},
             {"model": "gpt-image-*", "provider": "openai"}],
  "pricing": {"openai/gpt-5": {"input": 1250000, "cached_input": 125000, "output": 10000000, "web_search_per_1k": 10000000},
              "openai/gpt-image-2.6-sunburst": {"input": 5000000, "output": 30000000}},
  "stored_objects": "openai"}"#;

fn cfg() -> Config {
    Config::from_json(CFG.as_bytes()).unwrap()
}

fn key() -> KeyInfo {
    KeyInfo { id: "key-1".into(), key_hash: "h".into(), team: "search".into(), project: "ranking".into(), models: None, projects: vec![], tags: Default::default() }
}

fn owner() -> Owner {
    Owner { key: "key-1".into(), team: "search".into(), project: "ranking".into() }
}

fn planned(c: &Config, body: Value) -> crate::route::Plan {
    crate::route::plan_for(c, &key(), Api::OpenAiResponses, body.to_string().as_bytes(), "/v1/responses", false, crate::route::Choice::default()).unwrap()
}

#[test]
fn a_background_request_is_served_only_where_a_read_can_charge_it() {
    let c = cfg();
    let ask = |extra: Value| {
        let mut b = json!({"model": "gpt-5", "input": "Write a report.", "background": true});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    assert!(check(&c, &planned(&c, ask(json!({}))), None).is_ok());
    assert!(check(&c, &planned(&c, ask(json!({"stream": true, "previous_response_id": "resp_1"}))), None).is_ok(), "a stream, a chain");
    let code = |p: &crate::route::Plan, g: Option<&crate::guard::Policy>| check(&c, p, g).map_err(|e| (e.status, e.code, e.param));
    let refused = Err((400, "unsupported_field", Some("background")));
    // Another provider than the one its reads go to; a provider that does not run it.
    assert_eq!(code(&planned(&c, ask(json!({"model": "cheap"}))), None), refused);
    let translated = crate::route::plan_for(&c, &key(), Api::OpenAiResponses, ask(json!({"model": "claude-sonnet-4-5"})).to_string().as_bytes(), "/v1/responses", false, crate::route::Choice::default());
    assert_eq!(translated.map(|_| ()).map_err(|r| r.error.param), Err(Some("background")));
    // Its output would be readable in the conversation's items.
    assert_eq!(code(&planned(&c, ask(json!({"conversation": "conv_1"}))), None), refused);
    // A second model's cost that only the create's own answer reports.
    assert_eq!(code(&planned(&c, ask(json!({"tools": [{"type": "image_generation"}]}))), None), refused);
    // Answers a policy reads would come back unread from the stored response.
    let policy = |v: Value| crate::guard::Policy::build(serde_json::from_value(v).unwrap()).unwrap();
    assert!(check(&c, &planned(&c, ask(json!({}))), Some(&policy(json!({"version": "g1"})))).is_ok(), "requests scanned only");
    assert_eq!(code(&planned(&c, ask(json!({}))), Some(&policy(json!({"version": "g2", "responses": "redact"})))), refused);
    // No provider keeps stored responses: none could be read back.
    let mut v: Value = serde_json::from_str(CFG).unwrap();
    v.as_object_mut().unwrap().remove("stored_objects");
    let none = Config::from_json(v.to_string().as_bytes()).unwrap();
    let e = check(&none, &planned(&none, ask(json!({}))), None).unwrap_err();
    assert!(e.message.contains("'stored_objects': none"), "{}", e.message);
}

#[test]
fn a_created_response_names_its_owner_and_estimated_input_in_metadata() {
    let body = br#"{"model":"gpt-5","input":"x","background":true,"metadata":{"job":"nightly"},"n":1e400}"#;
    let tagged: Value = serde_json::from_slice(&tag(body, &owner(), 1234, 0).unwrap()).unwrap_or(Value::Null);
    let raw = String::from_utf8(tag(body, &owner(), 1234, 0).unwrap()).unwrap();
    assert!(raw.contains(r#""n":1e400"#), "the client's members go as sent: {raw}");
    assert_eq!(tagged, Value::Null, "(serde_json cannot hold 1e400: the provider's to refuse)");
    let plain: Value = serde_json::from_slice(&tag(br#"{"model":"gpt-5","input":"x","background":true,"metadata":{"job":"nightly"}}"#, &owner(), 1234, 0).unwrap()).unwrap();
    assert_eq!(
        plain["metadata"],
        json!({"job": "nightly", "tollgate_key": "key-1", "tollgate_team": "search", "tollgate_project": "ranking", "tollgate_input_tokens": "1234"})
    );
    let code = |b: &str| tag(b.as_bytes(), &owner(), 1, 0).unwrap_err().code;
    assert_eq!(code(r#"{"model":"gpt-5","metadata":{"tollgate_key":"someone-else"}}"#), "reserved_metadata");
    assert_eq!(code(r#"{"model":"gpt-5","metadata":{"tollgate_input_tokens":"1"}}"#), "reserved_metadata");
    let twelve: serde_json::Map<String, Value> = (0..12).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert!(tag(json!({"model": "gpt-5", "metadata": twelve}).to_string().as_bytes(), &owner(), 1, 0).is_ok(), "12 of the client's and Tollgate's 4");
    let thirteen: serde_json::Map<String, Value> = (0..13).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(code(&json!({"model": "gpt-5", "metadata": thirteen}).to_string()), "metadata_full");
    assert_eq!(code(r#"{"model":"gpt-5","model":"o3"}"#), "duplicate_key");
    // A code interpreter container it creates: written too (billed however it ends, in no usage), one member less for the client's.
    let boxed: Value = serde_json::from_slice(&tag(br#"{"model":"gpt-5","input":"x"}"#, &owner(), 7, 4).unwrap()).unwrap();
    assert_eq!((boxed["metadata"]["tollgate_container_gb"].as_str(), boxed["metadata"].as_object().unwrap().len()), (Some("4"), 5));
    let eleven: serde_json::Map<String, Value> = (0..12).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(tag(json!({"model": "gpt-5", "metadata": eleven}).to_string().as_bytes(), &owner(), 1, 4).unwrap_err().code, "metadata_full");
    assert_eq!(code(r#"{"model":"gpt-5","metadata":{"a":1}}"#), "invalid_type");
}

/// A background response as the API returns it (the API reference's
/// cancel example, openai/openai-openapi `cancelResponse`), ended and ours.
fn response(status: &str, extra: Value) -> Value {
    let mut r = json!({
        "id": "resp_67cb71b351908190a308f3859487620d06981a8637e6bc44", "object": "response", "created_at": 1741386163,
        "status": status, "background": true, "completed_at": 1741386463, "error": null, "incomplete_details": null,
        "instructions": null, "max_output_tokens": null, "model": "gpt-5-2025-08-07",
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Silent circuits hum,  \nThoughts emerge in data streams—  \nDigital dawn breaks.", "annotations": []}]}],
        "parallel_tool_calls": true, "previous_response_id": null, "reasoning": {"effort": null, "summary": null}, "store": true,
        "service_tier": "default", "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled",
        "usage": {"input_tokens": 1500, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 500,
                  "output_tokens_details": {"reasoning_tokens": 300}, "total_tokens": 2000},
        "user": null,
        "metadata": {"tollgate_key": "key-1", "tollgate_team": "search", "tollgate_project": "ranking", "tollgate_input_tokens": "900", "job": "x"}
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn charged(r: &Value) -> Option<Charge> {
    charge(r.to_string().as_bytes())
}

#[test]
fn an_ended_background_response_is_charged_to_the_owner_its_metadata_names() {
    let c = charged(&response("completed", json!({}))).unwrap();
    assert_eq!(c.owner, owner());
    assert_eq!(c.record_id, "tg-bg-resp_67cb71b351908190a308f3859487620d06981a8637e6bc44");
    assert_eq!((c.model.as_deref(), c.api, c.source), (Some("gpt-5-2025-08-07"), Api::OpenAiResponses, UsageSource::Provider));
    assert_eq!((c.usage.input_tokens, c.usage.cached_input_tokens, c.usage.output_tokens, c.usage.reasoning_tokens), (1500, 1024, 500, 300));
    assert_eq!((c.created_ms, c.ended_ms, c.error_code, c.tier), (Some(1_741_386_163_000), Some(1_741_386_463_000), None, None));
    // The tier that served it is its price; hosted searches are in its usage.
    let flex = charged(&response("completed", json!({"service_tier": "flex", "tool_usage": {"web_search": {"num_requests": 3}}}))).unwrap();
    assert_eq!((flex.tier, flex.usage.web_search_requests), (Some(ServiceTier::Flex), 3));
    for s in ["failed", "incomplete", "cancelled"] {
        assert_eq!(charged(&response(s, json!({}))).unwrap().error_code, Some(format!("response_{s}")), "{s}");
    }
}

#[test]
fn the_containers_a_background_response_created_are_charged_however_it_ended() {
    let c = cfg();
    let mut meta = response("completed", json!({}))["metadata"].clone();
    meta["tollgate_container_gb"] = json!("4");
    for r in [response("completed", json!({"metadata": meta})), response("cancelled", json!({"metadata": meta, "usage": null}))] {
        assert_eq!(charged(&r).unwrap().usage.container_gb, 4);
    }
    let rec = &records(&c, "openai", response("completed", json!({"metadata": meta})).to_string().into_bytes(), &crate::decode::Coding::Identity, 5).unwrap()[0];
    assert_eq!(rec.cost_micros, 5_723 + 4 * 30_000);
}

#[test]
fn a_response_not_ended_not_background_or_not_ours_charges_nothing() {
    for s in ["queued", "in_progress", "COMPLETED", ""] {
        assert_eq!(charged(&response(s, json!({"usage": null}))), None, "{s}");
        assert_eq!(charged(&response(s, json!({}))), None, "{s}");
    }
    // A response made in the foreground was charged when it was answered.
    for b in [json!(false), Value::Null] {
        assert_eq!(charged(&response("completed", json!({"background": b}))), None);
    }
    // Made around the gateway, or before it served background responses; an owner no key could be.
    assert_eq!(charged(&response("completed", json!({"metadata": {}}))), None);
    for hostile in [json!({"tollgate_key": "key-1\nx"}), json!({"tollgate_key": ""}), json!({"tollgate_key": "k".repeat(129)}),
                    json!({"tollgate_key": "key-1", "tollgate_team": "a\u{7}b"})] {
        assert_eq!(charged(&response("completed", json!({"metadata": hostile}))), None, "{hostile}");
    }
    assert_eq!(charged(&response("completed", json!({"metadata": null}))), None);
    // Not a response; a member twice; not JSON.
    assert_eq!(charged(&response("completed", json!({"object": "response.compaction"}))), None);
    let text = response("completed", json!({})).to_string();
    let twice = format!("{},\"status\":\"queued\"}}", text.strip_suffix('}').unwrap());
    assert_eq!(charge(twice.as_bytes()), None);
    assert_eq!(charge(b"\xff{"), None);
    // An id that could not name a record (a line break, a space, empty).
    for id in ["resp_1\nx", "resp 1", ""] {
        assert_eq!(charged(&response("completed", json!({"id": id}))), None, "{id:?}");
    }
}

#[test]
fn a_response_cancelled_without_usage_is_charged_its_estimated_input_and_the_output_it_shows() {
    // The API reference's cancel answer: the output so far, `usage: null`.
    let c = charged(&response("cancelled", json!({"usage": null, "completed_at": null}))).unwrap();
    assert_eq!(c.source, UsageSource::Estimated);
    // 900 input tokens as estimated when created; 80 bytes of text shown, 4 bytes a token.
    assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (900, 20));
    assert_eq!(c.ended_ms, None);
    // A hostile estimate is a number or nothing.
    let mut meta = response("cancelled", json!({}))["metadata"].clone();
    meta["tollgate_input_tokens"] = json!("lots");
    let c = charged(&response("cancelled", json!({"usage": null, "metadata": meta, "output": []}))).unwrap();
    assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (0, 0));
    meta["tollgate_input_tokens"] = json!("18446744073709551615");
    let c = charged(&response("cancelled", json!({"usage": null, "metadata": meta}))).unwrap();
    assert_eq!(c.usage, c.usage.bounded());
}

#[test]
fn the_record_is_the_same_on_every_read_priced_as_the_model_it_dates() {
    let c = cfg();
    let answer = response("completed", json!({})).to_string().into_bytes();
    let r = records(&c, "openai", answer.clone(), &crate::decode::Coding::Identity, 5).unwrap();
    assert_eq!(r, records(&c, "openai", answer.clone(), &crate::decode::Coding::Identity, 99).unwrap());
    let r = &r[0];
    assert_eq!((r.id.as_str(), r.key_id.as_str(), r.team.as_str(), r.project.as_str()), ("tg-bg-resp_67cb71b351908190a308f3859487620d06981a8637e6bc44", "key-1", "search", "ranking"));
    // 476 uncached at $1.25/M, 1,024 cached at $0.125/M, 500 out at $10/M: 595 + 128 + 5,000 micro-dollars.
    assert_eq!((r.cost_micros, r.priced, r.ts_ms, r.latency_ms), (5_723, true, 1_741_386_463_000, 300_000));
    assert!(r.validate().is_ok());
    // Compressed by the provider: read decoded; broken: nothing charged.
    let zipped = crate::decode::tests::gzip(&answer, false);
    assert_eq!(records(&c, "openai", zipped.clone(), &crate::decode::Coding::Gzip, 5).unwrap()[0], *r);
    assert!(records(&c, "openai", zipped[..zipped.len() - 4].to_vec(), &crate::decode::Coding::Gzip, 5).is_err());
}

#[test]
fn an_answer_read_as_it_passes_finds_the_charge_in_json_or_in_a_streams_terminal_event() {
    let c = cfg();
    let done = response("completed", json!({}));
    // JSON in any pieces.
    let text = done.to_string();
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Identity, false, None);
    for piece in text.as_bytes().chunks(7) {
        a.push(piece);
    }
    assert_eq!(a.records(&c, "openai", 5).unwrap()[0].cost_micros, 5_723);
    // A stream (a resumed GET, `stream=true&starting_after=`): only the terminal event is kept.
    let mut queued = done.clone();
    queued["status"] = json!("in_progress");
    queued["usage"] = Value::Null;
    let mut stream = String::new();
    stream += &format!("event: response.in_progress\ndata: {}\n\n", json!({"type": "response.in_progress", "sequence_number": 4, "response": queued}));
    for i in 0..1000 {
        stream += &format!("event: response.output_text.delta\r\ndata: {}\r\n\r\n", json!({"type": "response.output_text.delta", "sequence_number": 5 + i, "delta": "word "}));
    }
    stream += &format!("event: response.completed\ndata: {}", json!({"type": "response.completed", "sequence_number": 1005, "response": done}));
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Identity, true, None);
    for piece in stream.as_bytes().chunks(13) {
        a.push(piece);
    }
    let r = a.records(&c, "openai", 5).unwrap();
    assert_eq!((r.len(), r[0].cost_micros), (1, 5_723), "the last event, even without its blank line");
    // A stream that ends before its terminal event, after output came (a client that
    // left): the input estimated when it was created and the output streamed.
    let cut = stream.split("event: response.completed").next().unwrap();
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Identity, true, None);
    a.push(cut.as_bytes());
    let r = a.records(&c, "openai", 5).unwrap();
    assert_eq!((r[0].usage_source, r[0].usage.input_tokens, r[0].usage.output_tokens, r[0].error_code.as_deref()), (UsageSource::Estimated, 900, 1250, Some("response_cut")));
    assert_eq!(r[0].id, "tg-bg-resp_67cb71b351908190a308f3859487620d06981a8637e6bc44");
    // Before any output: nothing taken, nothing charged (a later read charges it).
    let early = stream.split("event: response.output_text.delta").next().unwrap();
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Identity, true, None);
    a.push(early.as_bytes());
    assert!(a.records(&c, "openai", 5).unwrap().is_empty());
    // A JSON answer is held whole (by the glue, within max_response_bytes); a compressed stream
    // past the limit is not read (said so).
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Identity, false, None);
    assert!(a.holds());
    a.push(&vec![b' '; crate::owned::MAX_ANSWER_BYTES]);
    a.push(text.as_bytes());
    assert_eq!(a.records(&c, "openai", 5).unwrap()[0].cost_micros, 5_723);
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Gzip, true, None);
    assert!(!a.holds());
    a.push(&vec![0; crate::owned::MAX_ANSWER_BYTES]);
    a.push(b"x");
    assert_eq!(a.records(&c, "openai", 5).unwrap_err(), Unread::TooLarge);
    // A compressed stream is held and decoded whole.
    let zipped = crate::decode::tests::gzip(stream.as_bytes(), false);
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Gzip, true, None);
    a.push(&zipped);
    assert_eq!(a.records(&c, "openai", 5).unwrap()[0].cost_micros, 5_723);
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Gzip, true, None);
    a.push(&zipped[..zipped.len() - 4]);
    assert_eq!(a.records(&c, "openai", 5).unwrap_err(), Unread::Undecodable);
}

#[test]
fn a_stream_resumed_after_an_event_is_read_from_its_start_and_passed_on_after_it() {
    let c = cfg();
    let done = response("completed", json!({}));
    let mut running = done.clone();
    running["status"] = json!("in_progress");
    running["usage"] = Value::Null;
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let mut events = vec![ev("response.created", json!({"type": "response.created", "sequence_number": 0, "response": running})),
                          ev("response.in_progress", json!({"type": "response.in_progress", "sequence_number": 1, "response": running}))];
    for i in 2..6 {
        events.push(ev("response.output_text.delta", json!({"type": "response.output_text.delta", "sequence_number": i, "delta": "abcd"})));
    }
    events.push(": a comment, no number\n\n".to_string());
    events.push(ev("response.completed", json!({"type": "response.completed", "sequence_number": 6, "response": done})));
    let whole = events.concat();
    // `starting_after=3`: the client gets 4, 5, the comment and 6, as if the provider had started there.
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Identity, true, Some(3));
    assert!(a.rewrites());
    let mut out = Vec::new();
    for piece in whole.as_bytes().chunks(5) {
        out.extend(a.push(piece).unwrap());
    }
    out.extend(a.finish().unwrap());
    assert_eq!(String::from_utf8(out).unwrap(), events[4..].concat());
    assert_eq!(a.records(&c, "openai", 5).unwrap()[0].cost_micros, 5_723);
    // Left after event 5: the events before the client's start say whose and what it is.
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Identity, true, Some(3));
    let sent = a.push(events[..6].concat().as_bytes()).unwrap();
    assert_eq!(String::from_utf8(sent).unwrap(), events[4..6].concat());
    let r = a.records(&c, "openai", 5).unwrap();
    assert_eq!((r[0].usage.input_tokens, r[0].usage.output_tokens, r[0].key_id.as_str()), (900, 4, "key-1"), "16 characters streamed");
    // Not resumed: passed on as it came (None: unchanged).
    let mut a = Answer::new(Kind::Response, crate::decode::Coding::Identity, true, None);
    assert!(!a.rewrites() && a.push(whole.as_bytes()).is_none() && a.finish().is_none());
}

#[test]
fn this_envoy_remembers_the_charges_it_counted_in_one_bounded_entry() {
    use crate::owned::{counted, with_counted, COUNTED_MAX};
    let mut entry = Vec::new();
    assert!(!counted(&entry, "tg-bg-resp_1"));
    entry = with_counted(&entry, "tg-bg-resp_1");
    entry = with_counted(&entry, "tg-batch-batch_1");
    assert!(counted(&entry, "tg-bg-resp_1") && counted(&entry, "tg-batch-batch_1"));
    assert!(!counted(&entry, "tg-bg-resp_") && !counted(&entry, "resp_1") && !counted(&entry, ""), "whole ids only");
    for i in 0..2 * COUNTED_MAX {
        entry = with_counted(&entry, &format!("tg-bg-resp_n{i}"));
    }
    assert_eq!(entry.split(|b| *b == b'\n').count(), COUNTED_MAX);
    assert!(!counted(&entry, "tg-bg-resp_1"), "the oldest forgotten");
    assert!(counted(&entry, &format!("tg-bg-resp_n{}", 2 * COUNTED_MAX - 1)) && counted(&entry, &format!("tg-bg-resp_n{}", COUNTED_MAX)));
    assert!(!counted(&entry, &format!("tg-bg-resp_n{}", COUNTED_MAX - 1)));
}
