use super::*;
use crate::owned::{price, record, undated, Owner};
use crate::pricing::Price;
use tollgate_protocol::record::ServiceTier;
use crate::config::{KeyInfo, Pattern};
use serde_json::{json, Value};

fn owner() -> Owner {
    Owner { key: "key-1".into(), team: "search".into(), project: "ranking".into() }
}

fn tagged(body: &str) -> Result<(Value, Api), GatewayError> {
    tag(body.as_bytes(), &owner()).map(|(b, api)| (serde_json::from_slice(&b).unwrap(), api))
}

fn code(body: &str) -> &'static str {
    tagged(body).unwrap_err().code
}

#[test]
fn a_created_batch_names_its_owner_in_metadata_and_keeps_everything_else() {
    let (b, api) = tagged(r#"{"input_file_id":"file-1","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"job":"nightly"}}"#).unwrap();
    assert_eq!(api, Api::OpenAiChat);
    assert_eq!(b["metadata"], json!({"job": "nightly", "tollgate_key": "key-1", "tollgate_team": "search", "tollgate_project": "ranking"}));
    assert_eq!(b["input_file_id"], "file-1");
    assert_eq!(b["completion_window"], "24h");
    // (The client's members go as sent, unparsed: a number serde cannot hold is the provider's to refuse.)
    let raw = tag(br#"{"endpoint":"/v1/responses","x":1e400}"#, &owner()).unwrap().0;
    assert!(String::from_utf8(raw).unwrap().contains(r#""x":1e400"#));
    // No metadata, or null: only the owner's.
    for body in [r#"{"endpoint":"/v1/embeddings"}"#, r#"{"endpoint":"/v1/embeddings","metadata":null}"#] {
        let (b, api) = tagged(body).unwrap();
        assert_eq!((api, b["metadata"].as_object().unwrap().len()), (Api::OpenAiEmbeddings, 3));
    }
}

#[test]
fn a_create_the_owner_could_not_be_written_into_is_refused() {
    // The client cannot name another owner, even with its own spelling of ours.
    assert_eq!(code(r#"{"endpoint":"/v1/chat/completions","metadata":{"tollgate_key":"someone-else"}}"#), "reserved_metadata");
    assert_eq!(code(r#"{"endpoint":"/v1/chat/completions","metadata":{"tollgate_x":"1"}}"#), "reserved_metadata");
    // Members twice (serde and the provider could disagree on which wins).
    assert_eq!(code(r#"{"endpoint":"/v1/chat/completions","metadata":{"a":"1","a":"2"}}"#), "duplicate_key");
    assert_eq!(code(r#"{"endpoint":"/v1/chat/completions","metadata":{},"metadata":{"tollgate_key":"x"}}"#), "duplicate_key");
    assert_eq!(code(r#"{"endpoint":"/v1/videos","endpoint":"/v1/chat/completions"}"#), "duplicate_key");
    // No room for the three.
    let full: serde_json::Map<String, Value> = (0..14).map(|i| (format!("m{i}"), json!("v"))).collect();
    assert_eq!(code(&json!({"endpoint": "/v1/responses", "metadata": full}).to_string()), "metadata_full");
    let fits: serde_json::Map<String, Value> = (0..13).map(|i| (format!("m{i}"), json!("v"))).collect();
    assert_eq!(tagged(&json!({"endpoint": "/v1/responses", "metadata": fits}).to_string()).unwrap().0["metadata"].as_object().unwrap().len(), 16);
    // Endpoints without a price, or none.
    assert_eq!(code(r#"{"endpoint":"/v1/videos"}"#), "unsupported_batch_endpoint");
    assert_eq!(code(r#"{"input_file_id":"file-1"}"#), "missing_required_parameter");
    assert_eq!(code(r#"{"endpoint":7}"#), "invalid_type");
    // Not an object; metadata not an object of strings.
    for body in ["[]", "", "{", "\"x\"", "{\"endpoint\":\"/v1/responses\"} x"] {
        assert_eq!(code(body), "invalid_json", "{body}");
    }
    assert_eq!(code(r#"{"endpoint":"/v1/responses","metadata":{"a":1}}"#), "invalid_type");
    assert_eq!(code(r#"{"endpoint":"/v1/responses","metadata":["a"]}"#), "invalid_type");
}

#[test]
fn only_a_key_allowed_every_model_creates_batches() {
    let mut k = KeyInfo { id: "k".into(), key_hash: "h".into(), team: "t".into(), project: "p".into(), models: None, projects: vec![], tags: Default::default() };
    assert!(allowed(&k).is_ok());
    k.models = Some(vec![Pattern::parse("gpt-4o-mini").unwrap()]);
    assert_eq!(allowed(&k).unwrap_err().code, "batch_not_allowed");
}

fn batch(status: &str, extra: Value) -> Value {
    let mut b = json!({
        "id": "batch_abc123", "object": "batch", "endpoint": "/v1/chat/completions", "model": "gpt-5-2025-08-07",
        "errors": null, "input_file_id": "file-abc123", "completion_window": "24h", "status": status,
        "output_file_id": "file-cvaTdG", "error_file_id": null, "created_at": 1711471533, "in_progress_at": 1711471538,
        "expires_at": 1711557933, "finalizing_at": 1711493133, "completed_at": 1711493163, "failed_at": null,
        "expired_at": null, "cancelling_at": null, "cancelled_at": null,
        "request_counts": {"total": 100, "completed": 95, "failed": 5},
        "usage": {"input_tokens": 1500, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 500,
                  "output_tokens_details": {"reasoning_tokens": 300}, "total_tokens": 2000},
        "metadata": {"tollgate_key": "key-1", "tollgate_team": "search", "tollgate_project": "ranking", "job": "nightly"}
    });
    if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    b
}

fn charged(b: &Value) -> Option<Charge> {
    charge(b.to_string().as_bytes())
}

#[test]
fn an_ended_batch_is_charged_to_the_owner_its_metadata_names() {
    // The API reference's completed batch (openai/openai-openapi, `Batch`'s example), with our metadata.
    let c = charged(&batch("completed", json!({}))).unwrap();
    assert_eq!(c.owner, owner());
    assert_eq!((c.record_id.as_str(), c.model.as_deref(), c.api), ("tg-batch-batch_abc123", Some("gpt-5-2025-08-07"), Api::OpenAiChat));
    assert_eq!((c.source, c.tier, c.error_code.as_deref()), (UsageSource::Provider, Some(ServiceTier::Batch), None));
    assert_eq!((c.usage.input_tokens, c.usage.cached_input_tokens, c.usage.output_tokens, c.usage.reasoning_tokens), (1500, 1024, 500, 300));
    assert_eq!((c.created_ms, c.ended_ms), (Some(1_711_471_533_000), Some(1_711_493_163_000)));
    // Ended otherwise: the requests that ran are billed.
    let failed = charged(&batch("failed", json!({"failed_at": 1711493000, "completed_at": null}))).unwrap();
    assert_eq!((failed.error_code.as_deref(), failed.ended_ms), (Some("batch_failed"), Some(1_711_493_000_000)));
    for s in ["expired", "cancelled"] {
        assert_eq!(charged(&batch(s, json!({}))).unwrap().ended_ms, None, "{s}");
    }
}

#[test]
fn a_batch_not_ended_or_not_ours_or_unreadable_charges_nothing() {
    for s in ["validating", "in_progress", "finalizing", "cancelling", "COMPLETED", ""] {
        assert_eq!(charged(&batch(s, json!({}))), None, "{s}");
    }
    // Created before Tollgate (or around it): no owner to charge.
    assert_eq!(charged(&batch("completed", json!({"metadata": {"job": "x"}}))), None);
    assert_eq!(charged(&batch("completed", json!({"metadata": null}))), None);
    assert_eq!(charged(&batch("completed", json!({"metadata": {"tollgate_key": null}}))), None);
    // Created before the API reported usage.
    assert_eq!(charged(&batch("completed", json!({"usage": null}))), None);
    // Not a batch; a member twice; not JSON.
    assert_eq!(charged(&batch("completed", json!({"object": "list"}))), None);
    let text = batch("completed", json!({})).to_string();
    let twice = text.replacen("\"status\":\"completed\"", "\"status\":\"completed\",\"status\":\"in_progress\"", 1);
    assert_eq!(charge(twice.as_bytes()), None);
    assert_eq!(charge(b"\xff{"), None);
}

#[test]
fn a_batch_usage_or_detail_given_as_an_array_is_never_read_by_position() {
    // serde's derive read `[1500, 500]` as 1,500 input tokens and 500
    // output, and `[1024]` as 1,024 cached: unreadable now, as a string is.
    for usage in [json!([1500, 500]), json!({"input_tokens": 1500, "output_tokens": 500, "input_tokens_details": [1024]}),
                  json!({"input_tokens": 1500, "output_tokens": 500, "output_tokens_details": [300]})] {
        assert_eq!(charged(&batch("completed", json!({"usage": usage}))), None, "{usage}");
    }
    let u = charged(&batch("completed", json!({"usage": {"input_tokens": 1500, "output_tokens": 500}}))).unwrap().usage;
    assert_eq!((u.input_tokens, u.cached_input_tokens, u.output_tokens), (1500, 0, 500));
}

#[test]
fn hostile_counts_are_bounded_and_parts_never_exceed_their_totals() {
    let c = charged(&batch("completed", json!({"usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 99},
        "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 50}, "total_tokens": 15}}))).unwrap();
    assert_eq!((c.usage.cached_input_tokens, c.usage.reasoning_tokens), (10, 5));
    let huge = charged(&batch("completed", json!({"usage": {"input_tokens": u64::MAX, "output_tokens": u64::MAX, "total_tokens": 0}}))).unwrap();
    assert_eq!(huge.usage, huge.usage.bounded());
    // Negative or fractional counts: not a usage.
    assert_eq!(charged(&batch("completed", json!({"usage": {"input_tokens": -1, "output_tokens": 1}}))), None);
    assert_eq!(charged(&batch("completed", json!({"usage": {"input_tokens": 1.5, "output_tokens": 1}}))), None);
}

#[test]
fn the_record_is_the_same_on_every_read_priced_at_the_batch_percent() {
    let c = charged(&batch("completed", json!({}))).unwrap();
    let price = Price { input: 1_250_000, cached_input: Some(125_000), output: 10_000_000, batch_percent: Some(50), ..Default::default() };
    let r = record(&c, "openai", Some(price), 5);
    assert_eq!(r, record(&c, "openai", Some(price), 99), "an ended batch's record does not depend on when it is read");
    assert_eq!(r.id, "tg-batch-batch_abc123");
    assert_eq!((r.key_id.as_str(), r.team.as_str(), r.project.as_str()), ("key-1", "search", "ranking"));
    assert_eq!((r.ts_ms, r.latency_ms), (1_711_493_163_000, 21_630_000));
    assert_eq!((r.service_tier, r.api, r.error_code.as_deref()), (Some(ServiceTier::Batch), Api::OpenAiChat, None));
    // 476 uncached at $0.625/M, 1,024 cached at $0.0625/M, 500 out at $5/M: 297.5 + 64 + 2,500 = 2,861.5 micro-dollars, rounded up once.
    assert_eq!(r.cost_micros, 2_862);
    assert!(r.priced);
    assert!(r.validate().is_ok());
    // No price: recorded, unpriced; the batch percent unset: the standard prices (never less than billed).
    let unpriced = record(&c, "openai", None, 5);
    assert_eq!((unpriced.cost_micros, unpriced.priced), (0, false));
    assert_eq!(record(&c, "openai", Some(Price { batch_percent: None, ..price }), 5).cost_micros, 5_723);
    // Ended otherwise: said so; no end time: dated when read.
    let expired = charged(&batch("expired", json!({}))).unwrap();
    let r = record(&expired, "openai", Some(price), 7_000);
    assert_eq!((r.error_code.as_deref(), r.ts_ms), (Some("batch_expired"), 7_000));
}

#[test]
fn a_dated_model_is_priced_as_the_model_it_dates() {
    assert_eq!(undated("gpt-5-2025-08-07"), Some("gpt-5"));
    assert_eq!(undated("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
    for m in ["gpt-5", "gpt-5.4", "-2025-08-07", "gpt-5-2025-08-7x", "gpt-5_2025-08-07", "gpt-5-2025_08-07", "", "é-2025-08-07x"] {
        assert_eq!(undated(m), None, "{m}");
    }
    // (Multi-byte characters never split.)
    assert_eq!(undated("modèle-2025-08-07"), Some("modèle"));
    assert_eq!(undated("ééééééé"), None);
}

#[test]
fn a_batch_files_lines_are_scanned_whole_and_only_changed_lines_rewritten() {
    let file = b"{\"custom_id\":\"a\",\"body\":{\"x\":\"ok\"}}\r\n\n  \n{\"custom_id\":\"b\",\"body\":{\"x\":\"SECRET\"}}\n{\"custom_id\":\"c\"}";
    let mut seen = Vec::new();
    let redact = |line: &[u8]| -> Result<Option<Vec<u8>>, GatewayError> {
        let s = String::from_utf8(line.to_vec()).unwrap();
        Ok(s.contains("SECRET").then(|| s.replace("SECRET", "[SECRET_1]").into_bytes()))
    };
    let out = guard_lines(file, |l| {
        seen.push(String::from_utf8(l.to_vec()).unwrap());
        redact(l)
    })
    .unwrap()
    .unwrap();
    // Blank lines are not requests; each line is scanned without its line break.
    assert_eq!(seen, [r#"{"custom_id":"a","body":{"x":"ok"}}"#, r#"{"custom_id":"b","body":{"x":"SECRET"}}"#, r#"{"custom_id":"c"}"#]);
    assert_eq!(out, b"{\"custom_id\":\"a\",\"body\":{\"x\":\"ok\"}}\r\n\n  \n{\"custom_id\":\"b\",\"body\":{\"x\":\"[SECRET_1]\"}}\n{\"custom_id\":\"c\"}");
    // Nothing changed: the file goes as it came; a refusal is the first line's.
    assert_eq!(guard_lines(b"{}\n{}\n", |_| Ok(None)).unwrap(), None);
    let mut n = 0;
    let e = guard_lines(b"{}\nno\n{}\n", |l| {
        n += 1;
        if l == b"no" { Err(GatewayError::bad_request("content_blocked", "x")) } else { Ok(None) }
    });
    assert_eq!((e.unwrap_err().code, n), ("content_blocked", 2));
    assert_eq!(guard_lines(b"", |_| Ok(Some(Vec::new()))).unwrap(), None);
}

#[test]
fn what_a_files_lines_held_is_added_up_the_strongest_action_kept() {
    let g = |classes: &[(&str, u64)], action: &str| Some(Guardrails {
        classes: classes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        action: action.into(),
        policy: "p".into(),
        response_classes: Default::default(),
        response_action: None,
        restored: 0,
    });
    let m = merge(merge(g(&[("email", 1)], "observed"), g(&[("email", 2), ("card", 1)], "blocked")), g(&[("iban", 1)], "redacted")).unwrap();
    assert_eq!((m.classes.get("email"), m.classes.get("card"), m.classes.get("iban"), m.action.as_str()), (Some(&3), Some(&1), Some(&1), "blocked"));
    assert_eq!(merge(None, None), None);
    assert_eq!(merge(None, g(&[], "observed")).unwrap().action, "observed");
}

#[test]
fn each_ended_batch_a_list_shows_is_charged_as_a_read_of_it() {
    let list = json!({"object": "list", "data": [batch("completed", json!({})), batch("in_progress", json!({"id": "batch_2"})),
        batch("expired", json!({"id": "batch_3"})), batch("completed", json!({"id": "batch_4", "metadata": {}}))],
        "first_id": "batch_abc123", "last_id": "batch_4", "has_more": false});
    let got: Vec<String> = charges(list.to_string().as_bytes()).into_iter().map(|c| c.record_id).collect();
    assert_eq!(got, ["tg-batch-batch_abc123", "tg-batch-batch_3"]);
    // One batch, or anything else.
    assert_eq!(charges(batch("completed", json!({})).to_string().as_bytes()).len(), 1);
    assert!(charges(br#"{"object":"list","data":[1,"x",null]}"#).is_empty());
    assert!(charges(br#"{"object":"list","data":{}}"#).is_empty());
    assert!(charges(b"[]").is_empty());
}

#[test]
fn an_answer_is_decoded_then_each_charge_priced_by_the_configuration() {
    let cfg = crate::config::Config::from_json(
        br#"{"providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"}],
             "routes": [{"model": "gpt-5*", "provider": "openai"}],
             "pricing": {"openai/gpt-5": {"input": 1250000, "cached_input": 125000, "output": 10000000, "batch_percent": 50}}}"#,
    )
    .unwrap();
    // The batch reports the dated model; the price names the undated one.
    assert_eq!(price(&cfg, "openai", "gpt-5-2025-08-07").map(|p| p.input), Some(1_250_000));
    assert_eq!(price(&cfg, "openai", "gpt-4o-2024-08-06"), None);
    let answer = batch("completed", json!({})).to_string().into_bytes();
    let plain = records(&cfg, "openai", answer.clone(), &crate::decode::Coding::Identity, 5).unwrap();
    assert_eq!((plain.len(), plain[0].cost_micros, plain[0].priced), (1, 2_862, true));
    let zipped = crate::decode::tests::gzip(&answer, false);
    assert_eq!(records(&cfg, "openai", zipped.clone(), &crate::decode::Coding::Gzip, 5).unwrap(), plain);
    // Broken compression: nothing charged from it.
    assert!(records(&cfg, "openai", zipped[..zipped.len() - 4].to_vec(), &crate::decode::Coding::Gzip, 5).is_err());
}
