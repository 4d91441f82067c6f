//! Real provider traffic made hostile: every request and answer captured
//! from the providers (tests/captures, each file's source cited in its
//! README) with one hostile value put anywhere in its JSON, or its text cut,
//! given a duplicate member, a number past u64 or bytes that are not UTF-8.
//! Random bytes (properties.rs) rarely get past a parser's first character;
//! these reach every member a real request or answer has.
//!
//! Run in `cargo test`'s dev profile, so an arithmetic overflow panics here
//! where the release build would wrap it silently (a bill counted small).
//! What must hold whatever the values:
//! - nothing panics: planning, answers and streams read, priced, recorded;
//! - what goes upstream is capped within what the request reserved, a
//!   guardrail's redaction changes neither its members nor its cap, cache
//!   breakpoints are added only where the client set none (at most four),
//!   and a token count goes up with nothing added;
//! - a stream gives the same usage however it is cut into chunks, and
//!   what reaches the client (translated, guarded) is JSON event by event;
//! - the record is one the control service accepts.

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)] // a test crate: a panic is a failed test

use std::collections::BTreeMap;
use std::sync::OnceLock;

mod common;

use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tollgate_filter::config::{Config, KeyInfo};
use tollgate_filter::record::{account, charged, Observed, Termination, UsageRecord, UsageSource};
use tollgate_filter::request::Api;
use tollgate_filter::route::{plan_for, Choice};
use tollgate_filter::translate::Direction;
use tollgate_filter::usage::{parse_json_response, StreamTracker};

/// One captured request (its path) or answer (JSON or a stream).
#[derive(Debug)]
enum Capture {
    Request { api: Api, path: String, body: Value },
    Answer { api: Api, body: Value },
    Stream { api: Api, events: Vec<String> },
}

fn api_of_path(path: &str) -> Api {
    match path {
        "/v1/chat/completions" => Api::OpenAiChat,
        "/v1/responses" => Api::OpenAiResponses,
        "/v1/completions" => Api::OpenAiCompletions,
        "/v1/embeddings" => Api::OpenAiEmbeddings,
        "/v1/messages" => Api::AnthropicMessages,
        other => panic!("a captured request to an unknown path: {other}"),
    }
}

fn corpus() -> &'static [Capture] {
    static CORPUS: OnceLock<Vec<Capture>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut out = Vec::new();
        let file = |text: &str| serde_json::from_str::<Vec<Value>>(text).unwrap();
        for e in file(include_str!("../../tests/captures/openai_exchanges.json"))
            .into_iter()
            .chain(file(include_str!("../../tests/captures/openai_lingua_exchanges.json")))
        {
            let path = e["path"].as_str().unwrap().to_string();
            out.push(Capture::Request { api: api_of_path(&path), path, body: e["request"].clone() });
        }
        for e in file(include_str!("../../tests/captures/anthropic_exchanges.json")) {
            out.push(Capture::Request { api: Api::AnthropicMessages, path: "/v1/messages".into(), body: e["request"].clone() });
        }
        for e in file(include_str!("../../tests/captures/gemini_exchanges.json")) {
            let model = e["model"].as_str().unwrap_or("gemini-2.5-flash");
            out.push(Capture::Request {
                api: Api::GeminiGenerateContent,
                path: format!("/v1beta/models/{model}:generateContent"),
                body: e["request"].clone(),
            });
        }
        for e in file(include_str!("../../tests/captures/gemini_embed_requests.json")) {
            let (model, method) = (e["model"].as_str().unwrap(), e["method"].as_str().unwrap());
            out.push(Capture::Request { api: Api::GeminiEmbedContent, path: format!("/v1beta/models/{model}:{method}"), body: e["request"].clone() });
        }
        for line in common::RECORDED_ANSWERS.lines().filter(|l| !l.trim().is_empty()) {
            let e: Value = serde_json::from_str(line).unwrap();
            let api = common::api_of(e["api"].as_str().unwrap());
            match (e.get("json"), e.get("sse").and_then(Value::as_str)) {
                (Some(body), _) => {
                    // Gemini's answers as its stream sends them (`alt=sse`: each
                    // chunk a whole response object, CRLF-framed): the recordings
                    // hold no Gemini stream.
                    if api == Api::GeminiGenerateContent {
                        out.push(Capture::Stream { api, events: vec![format!("data: {body}\r\n\r\n")] });
                    }
                    out.push(Capture::Answer { api, body: body.clone() });
                }
                (None, Some(sse)) => out.push(Capture::Stream { api, events: sse.split_inclusive("\n\n").map(str::to_string).collect() }),
                _ => panic!("a recorded answer with neither json nor sse: {line}"),
            }
        }
        assert!(out.len() > 1000, "the captures hold {} exchanges", out.len());
        out
    })
}

/// Every model in the captures is routed (OpenAI's to the OpenAI-format
/// provider, Claude's to Anthropic's, Gemini's to Gemini's; or, `crossed`,
/// chat in the other format, so the translations run too) and priced at
/// every rate there is.
fn config(crossed: bool) -> Config {
    {
        let (openai, anthropic) = if crossed { ("anthropic", "openai") } else { ("openai", "anthropic") };
        // Breakpoints added wherever a prefix allows (Anthropic routes only).
        let auto_cache = |mut route: Value| {
            if !crossed {
                route["auto_cache"] = json!({"min_tokens": 1});
            }
            route
        };
        let price = json!({"input": 2_500_000, "output": 10_000_000, "cached_input": 250_000, "cache_write": 3_125_000, "cache_write_1h": 5_000_000,
            "audio_input": 32_000_000, "audio_output": 64_000_000, "image_output": 120_000_000, "web_search_per_1k": 25_000_000,
            "file_search_per_1k": 2_500_000, "web_searches_per_request": 1,
            "long_context": {"above_input_tokens": 200_000, "input": 5_000_000, "output": 15_000_000}});
        let cfg = json!({
            "providers": [
                {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com", "api_key": "sk-ant"},
                {"name": "gemini", "format": "gemini", "cluster": "gemini", "host": "generativelanguage.googleapis.com", "api_key": "g"}],
            "routes": [{"model": "*", "provider": openai}, auto_cache(json!({"model": "claude-*", "provider": anthropic})), {"model": "gemini-*", "provider": "gemini"},
                       {"model": "text-embedding-*", "provider": "openai"}, {"model": "babbage-*", "provider": "openai"},
                       {"model": "gpt-3.5-turbo-instruct", "provider": "openai"}],
            "pricing": {"openai/*": price, "anthropic/*": price, "gemini/*": price},
            "unpriced_models": "deny"});
        Config::from_json(cfg.to_string().as_bytes()).unwrap()
    }
}

fn key() -> KeyInfo {
    KeyInfo {
        id: "key-fuzz".into(),
        key_hash: "9f".repeat(32),
        team: "t".into(),
        project: "p".into(),
        models: None,
        projects: vec![],
        tags: BTreeMap::new(),
    }
}

/// What is put in place of a value.
fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(i64::MAX)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        Just(json!("")),
        Just(json!("\u{0}\r\n\u{1b}[31mx\u{202e}")),
        Just(json!("x".repeat(70_000))),
        Just(json!([])),
        Just(json!({})),
        Just(json!([u64::MAX, -1, null])),
        Just(json!({"input_tokens": u64::MAX, "output_tokens": u64::MAX, "prompt_tokens": u64::MAX, "completion_tokens": u64::MAX})),
        Just((0..200).fold(json!(1), |v, _| json!([v]))),
    ]
}

/// What is done to a capture's text after a value was replaced.
#[derive(Debug, Clone)]
enum Edit {
    None,
    /// Cut at this fraction (per mille) of the text.
    Cut(usize),
    /// A number token (the n-th) written past what u64 or f64 holds.
    Number(usize, &'static str),
    /// A member written twice: the n-th `"name":` gets a copy of itself (with a hostile value) before it.
    Duplicate(usize, &'static str),
    /// Bytes that are not UTF-8, or control bytes, at this fraction.
    Bytes(usize, &'static [u8]),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => Just(Edit::None),
        1 => (0usize..1000).prop_map(Edit::Cut),
        2 => (0usize..64, prop::sample::select(vec!["1e999", "18446744073709551616", "-0", "1E+2", "-18446744073709551617", "0.0000001"]))
            .prop_map(|(n, s)| Edit::Number(n, s)),
        2 => (0usize..64, prop::sample::select(vec!["0", "18446744073709551615", "null", "\"x\"", "{}"])).prop_map(|(n, s)| Edit::Duplicate(n, s)),
        1 => (0usize..1000, prop::sample::select(vec![&b"\xff\xfe"[..], b"\x00", b"\r\n\r\n", b"\xe2\x80"])).prop_map(|(at, b)| Edit::Bytes(at, b)),
    ]
}

/// Replaces the `pick`-th value of `v` (in document order, `v` itself
/// first) with `with`; `pick` wraps around the number of values.
fn replace_nth(v: &mut Value, pick: usize, with: Value) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn go(v: &mut Value, mut n: usize, with: Value) -> Result<(), (usize, Value)> {
        if n == 0 {
            *v = with;
            return Ok(());
        }
        n -= 1;
        let children: Vec<&mut Value> = match v {
            Value::Array(a) => a.iter_mut().collect(),
            Value::Object(o) => o.values_mut().collect(),
            _ => return Err((n, with)),
        };
        let mut with = with;
        for c in children {
            match go(c, n, with) {
                Ok(()) => return Ok(()),
                Err((left, w)) => (n, with) = (left, w),
            }
        }
        Err((n, with))
    }
    let total = count(v);
    let _ = go(v, pick % total, with);
}

fn apply(text: String, edit: &Edit) -> Vec<u8> {
    let mut b = text.into_bytes();
    let at = |per_mille: usize, len: usize| len * per_mille / 1000;
    match edit {
        Edit::None => {}
        Edit::Cut(p) => b.truncate(at(*p, b.len())),
        Edit::Bytes(p, bytes) => {
            let i = at(*p, b.len());
            b.splice(i..i, bytes.iter().copied());
        }
        Edit::Number(n, s) => {
            // the n-th run of digits outside strings (roughly: after `:`, `[` or `,`)
            let starts: Vec<usize> = (1..b.len()).filter(|&i| b[i].is_ascii_digit() && matches!(b[i - 1], b':' | b'[' | b',' | b' ')).collect();
            if let Some(&i) = starts.get(n % starts.len().max(1)) {
                let end = (i..b.len()).find(|&j| !(b[j].is_ascii_digit() || matches!(b[j], b'.' | b'e' | b'E' | b'+' | b'-'))).unwrap_or(b.len());
                b.splice(i..end, s.bytes());
            }
        }
        Edit::Duplicate(n, value) => {
            let starts: Vec<usize> = (0..b.len()).filter(|&i| b[i] == b'"' && i > 0 && matches!(b[i - 1], b'{' | b',')).collect();
            if let Some(&i) = starts.get(n % starts.len().max(1)) {
                if let Some(close) = (i + 1..b.len()).find(|&j| b[j] == b'"' && b[j - 1] != b'\\') {
                    let name = b[i..=close].to_vec();
                    let mut member = name;
                    member.push(b':');
                    member.extend_from_slice(value.as_bytes());
                    member.push(b',');
                    b.splice(i..i, member);
                }
            }
        }
    }
    b
}

/// An object's members in order, values as raw JSON (duplicates kept, so
/// they can be seen; numbers past f64 kept, as the provider would get them).
/// The filter has the same reader (`request::Members`); the test keeps one
/// of its own, so that what it checks is not read by the code it checks.
fn members(text: &[u8]) -> Option<Vec<(String, Box<RawValue>)>> {
    struct Members(Vec<(String, Box<RawValue>)>);
    impl<'de> serde::Deserialize<'de> for Members {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Members;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                    let mut v = Vec::new();
                    while let Some(e) = m.next_entry::<String, Box<RawValue>>()? {
                        v.push(e);
                    }
                    Ok(Members(v))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Members>(text).ok().map(|m| m.0)
}

/// The one output cap `body` sends upstream in `api`'s member for it
/// (`Err` when the member is there twice: the provider might read the other).
fn sent_cap(api: Api, body: &[u8]) -> Result<Option<u64>, String> {
    let (outer, inner) = match api {
        Api::OpenAiChat => ("max_completion_tokens", None),
        Api::OpenAiResponses => ("max_output_tokens", None),
        Api::OpenAiCompletions | Api::AnthropicMessages => ("max_tokens", None),
        Api::GeminiGenerateContent => ("generationConfig", Some("maxOutputTokens")),
        Api::OpenAiEmbeddings | Api::GeminiEmbedContent | Api::OpenAiModerations | Api::OpenAiImages | Api::OpenAiImageEdits | Api::OpenAiTranscriptions | Api::OpenAiTranslations | Api::OpenAiSpeech | Api::OpenAiDecisions => return Ok(None),
    };
    let top = members(body).ok_or("the body sent upstream is not a JSON object")?;
    let mut found = top.iter().filter(|(k, _)| k == outer).map(|(_, v)| v.get().as_bytes().to_vec());
    let (Some(value), None) = (found.next(), found.next()) else {
        return Err(format!("'{outer}' is sent {} times", top.iter().filter(|(k, _)| k == outer).count()));
    };
    match inner {
        None => Ok(serde_json::from_slice::<u64>(&value).ok()),
        Some(name) => sent_cap_in(&value, name),
    }
}

fn sent_cap_in(object: &[u8], name: &str) -> Result<Option<u64>, String> {
    let m = members(object).ok_or("the cap's object is not a JSON object")?;
    let mut found = m.iter().filter(|(k, _)| k == name);
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Ok(serde_json::from_str::<u64>(v.get()).ok()),
        (None, _) => Ok(None),
        _ => Err(format!("'{name}' is sent twice")),
    }
}

/// Anthropic's `cache_control` markers (where the mock and the API count
/// them: the request, tools, system blocks, message content blocks), or
/// `None` for a body a JSON value cannot hold.
fn cache_markers(body: &[u8]) -> Option<usize> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let blocks = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    let mut n = usize::from(v.get("cache_control").is_some());
    for b in blocks(v.get("tools")).iter().chain(&blocks(v.get("system"))) {
        n += usize::from(b.get("cache_control").is_some());
    }
    for m in blocks(v.get("messages")) {
        n += blocks(m.get("content")).iter().filter(|b| b.get("cache_control").is_some()).count();
    }
    Some(n)
}

/// A guardrail policy redacting what it finds in requests and answers.
fn policy() -> std::rc::Rc<tollgate_filter::guard::Policy> {
    let doc: tollgate_filter::guard::PolicyDoc = serde_json::from_value(json!({
        "actions": {"email": "redact", "card": "redact", "secret": "redact", "phone": "redact", "ip": "observe"},
        "custom": [{"name": "w", "words": ["weather"]}, {"name": "p", "pattern": "[0-9]{3}"}],
        "responses": "redact", "restore": true}))
    .unwrap();
    std::rc::Rc::new(tollgate_filter::guard::Policy::build(doc).unwrap())
}

fn check_request(api: Api, path: &str, body: &[u8], crossed: bool) -> Result<(), TestCaseError> {
    let cfg = &config(crossed);
    if matches!(api, Api::AnthropicMessages | Api::GeminiGenerateContent | Api::OpenAiResponses) && !crossed {
        check_count_tokens(cfg, api, path, body)?;
    }
    let choice = Choice { fingerprint: true, prompts: Some(None), ..Choice::default() };
    let Ok(plan) = plan_for(cfg, &key(), api, body, path, api == Api::AnthropicMessages, choice) else {
        return Ok(()); // refused: a clear error, nothing went upstream
    };
    let sent = plan.body.as_deref().unwrap_or(body);
    let upstream = plan.translate.map_or(api, |d| d.upstream_api());
    let shown = || String::from_utf8_lossy(sent).chars().take(600).collect::<String>();
    // Breakpoints are added only where the client set none, and never past Anthropic's four.
    if upstream == Api::AnthropicMessages && plan.translate.is_none() {
        if let (Some(client), Some(now)) = (cache_markers(body), cache_markers(sent)) {
            prop_assert!(now == client || (client == 0 && now <= 4), "{} breakpoints sent for the client's {}: {}", now, client, shown());
        }
    }
    // A redacting guardrail changes text, never the members the gateway bounded the request by.
    let who = tollgate_filter::guard::Subject { key: "k", project: "p", team: "t", route: "r" };
    if let tollgate_filter::guard::Outcome::Redacted(redacted, _) = policy().apply(who, sent, &mut Default::default()) {
        let names = |b: &[u8]| members(b).map(|m| m.into_iter().map(|(k, _)| k).collect::<Vec<_>>());
        prop_assert_eq!(names(&redacted), names(sent), "a redaction changed the members");
        prop_assert_eq!(sent_cap(upstream, &redacted), sent_cap(upstream, sent), "a redaction changed the cap");
    }
    prop_assert!(plan.priced, "every route is priced");
    if api == Api::GeminiEmbedContent {
        // The model priced is the model run: every `model` the body names is the upstream one, once.
        let want = format!("\"models/{}\"", plan.target.upstream_model);
        let top = members(sent).ok_or_else(|| TestCaseError::fail(format!("not an object: {}", shown())))?;
        for (k, v) in &top {
            match k.as_str() {
                "model" => prop_assert_eq!(v.get(), want.as_str(), "{}", shown()),
                "requests" => {
                    let requests: Vec<Box<RawValue>> = serde_json::from_str(v.get()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    for r in requests {
                        let models: Vec<String> = members(r.get().as_bytes()).unwrap_or_default().into_iter().filter(|(k, _)| k == "model").map(|(_, v)| v.get().to_string()).collect();
                        prop_assert_eq!(models, vec![want.clone()], "{}", shown());
                    }
                }
                _ => {}
            }
        }
    }
    if upstream.has_output() {
        prop_assert!(plan.worst.micros > 0, "a priced request reserves something: {}", shown());
        // (Legacy completions take none or null as their default, 16.)
        let cap = sent_cap(upstream, sent).map_err(|e| TestCaseError::fail(format!("{e}: {}", shown())))?.or(upstream.default_max_tokens());
        let bound = plan.chat.output_bound(cfg.default_max_tokens);
        // (Anthropic requires an integer `max_tokens` and refuses a request
        // without one, free: the filter adds none, output_cap_field `none`.)
        let refused_upstream = cap.is_none() && upstream == Api::AnthropicMessages;
        prop_assert!(cap.is_some_and(|c| c <= bound) || refused_upstream, "sent cap {:?} above the reserved bound {} ({:?} → {:?}): {}", cap, bound, api, upstream, shown());
    }
    Ok(())
}

/// Token counting (Anthropic's, Gemini's, the Responses API's): routed as the request it counts
/// would be, with nothing added (Anthropic's endpoint refuses `max_tokens`),
/// never priced.
fn check_count_tokens(cfg: &Config, api: Api, path: &str, body: &[u8]) -> Result<(), TestCaseError> {
    let choice = Choice { count_tokens: true, prompts: Some(None), ..Choice::default() };
    let (path, cap) = match api {
        Api::GeminiGenerateContent => (path.replace(":generateContent", ":countTokens"), "generationConfig"),
        Api::OpenAiResponses => ("/v1/responses/input_tokens".to_string(), "max_output_tokens"),
        _ => ("/v1/messages/count_tokens".to_string(), "max_tokens"),
    };
    let Ok(plan) = plan_for(cfg, &key(), api, body, &path, api == Api::AnthropicMessages, choice) else {
        return Ok(());
    };
    let sent = plan.body.as_deref().unwrap_or(body);
    let has_cap = |b: &[u8]| members(b).is_some_and(|m| m.iter().any(|(k, _)| k == cap));
    prop_assert_eq!(has_cap(sent), has_cap(body), "a cap added to a token count: {}", String::from_utf8_lossy(sent).chars().take(400).collect::<String>());
    prop_assert!(plan.fallbacks.is_empty());
    if api == Api::GeminiGenerateContent {
        check_whole_request_count(cfg, &path, body)?;
    }
    Ok(())
}

/// Gemini's count of a whole request (`{"generateContentRequest": …}`,
/// what Google's legacy SDKs send): the body counted as a generation, its
/// `model` the upstream one, named once, and nothing else of it changed.
fn check_whole_request_count(cfg: &Config, path: &str, body: &[u8]) -> Result<(), TestCaseError> {
    let Some(inner) = members(body) else { return Ok(()) };
    let mut whole = b"{\"generateContentRequest\":{\"model\":\"models/not-the-route\"".to_vec();
    for (k, v) in inner.iter().filter(|(k, _)| k != "model") {
        whole.extend_from_slice(format!(",{}:{}", serde_json::to_string(k).unwrap(), v.get()).as_bytes());
    }
    whole.extend_from_slice(b"}}");
    let choice = Choice { count_tokens: true, prompts: Some(None), ..Choice::default() };
    let Ok(plan) = plan_for(cfg, &key(), Api::GeminiGenerateContent, &whole, path, false, choice) else {
        return Ok(());
    };
    let sent = plan.body.as_deref().unwrap_or(&whole);
    let shown = || String::from_utf8_lossy(sent).chars().take(400).collect::<String>();
    let top = members(sent).ok_or_else(|| TestCaseError::fail(format!("not an object: {}", shown())))?;
    prop_assert_eq!(top.len(), 1, "{}", shown());
    let counted = members(top[0].1.get().as_bytes()).ok_or_else(|| TestCaseError::fail(shown()))?;
    let models: Vec<&str> = counted.iter().filter(|(k, _)| k == "model").map(|(_, v)| v.get()).collect();
    let want = format!("\"models/{}\"", plan.target.upstream_model);
    prop_assert_eq!(models, vec![want.as_str()], "{}", shown());
    let rest = |m: &[(String, Box<RawValue>)]| m.iter().filter(|(k, _)| k != "model").map(|(k, v)| (k.clone(), v.get().to_string())).collect::<Vec<_>>();
    prop_assert_eq!(rest(&counted), rest(&inner), "the counted request changed: {}", shown());
    Ok(())
}

/// A record as the filter makes one for this answer; the control service's check on it.
fn record_of(api: Api, usage: tollgate_filter::usage::Usage, source: UsageSource) -> Result<(), TestCaseError> {
    let price = config(false).price("openai", "gpt-5.4").unwrap();
    let usage = charged(usage, source, Some(&price));
    let (cost, savings) = price.cost_and_savings(&usage);
    let rec: UsageRecord = serde_json::from_value(json!({
        "v": tollgate_filter::record::RECORD_VERSION, "id": "0f3a9c2b7d104e5f-000000000001", "ts_ms": 1_764_000_000_000u64,
        "key_id": "k", "key_hash": "h", "team": "t", "project": "p", "feature": null, "prompt_version": null, "user": null, "tags": {},
        "api": api, "provider": "openai", "route": "*", "model_requested": "m", "model_upstream": "m", "model_served": null,
        "stream": false, "status": 200, "outcome": "ok", "error_code": null, "usage": usage, "usage_source": source,
        "cost_micros": cost, "cache_savings_micros": savings, "priced": true, "latency_ms": 1, "ttfb_ms": 1}))
    .map_err(|e| TestCaseError::fail(format!("record: {e}")))?;
    let rec = rec.bounded();
    prop_assert_eq!(rec.validate(), Ok(()));
    let text = serde_json::to_string(&rec).unwrap();
    let back: UsageRecord = serde_json::from_str(&text).unwrap();
    prop_assert_eq!(back.usage, rec.usage);
    Ok(())
}

fn observed(status: u16) -> Observed {
    Observed {
        status,
        upstream_responded: true,
        termination: Termination::Complete,
        estimated_input_tokens: 12,
        image_bound: None,
        image_input_bound: 0,
        audio_input_ms: 0,
        input_characters: 0,
        spoken: None,
        json: None,
        body_note: None,
        body_bytes: 0,
        stream: None,
        head_served: Default::default(),
        container_gb: 0,
    }
}

fn check_answer(api: Api, body: &[u8]) -> Result<(), TestCaseError> {
    let info = parse_json_response(api, body);
    let mut collector = tollgate_filter::response::JsonCollector::new(4096);
    collector.push(body);
    let _ = collector.finish(api);
    // Translated for a client of the other format: what it gets is JSON.
    for d in directions_from(api) {
        for status in [200, 400, 529] {
            if let Some(out) = d.answer(body, status, 0, None) {
                prop_assert!(serde_json::from_slice::<serde::de::IgnoredAny>(&out).is_ok(), "{:?} answer not JSON: {}", d, String::from_utf8_lossy(&out));
            }
        }
    }
    // The answer guard (redact, placeholders restored): what it passes on is JSON.
    if let Some(mut g) = answer_guard(api) {
        if let Ok(Some(out)) = g.json(body) {
            prop_assert!(serde_json::from_slice::<serde::de::IgnoredAny>(&out).is_ok(), "a guarded answer is not JSON");
        }
    }
    let o = Observed { json: Some(info), body_bytes: body.len() as u64, ..observed(200) };
    let (usage, source, _, _) = account(&o);
    prop_assert!(usage.input_tokens + usage.output_tokens > 0 || source == UsageSource::Provider, "a 200 answer is never free unread");
    record_of(api, usage, source)
}

fn answer_guard(api: Api) -> Option<tollgate_filter::guard::answer::AnswerGuard> {
    let mut ph = tollgate_filter::guard::Placeholders::default();
    ph.for_value("email", "EMAIL", "a@b.io");
    tollgate_filter::guard::answer::AnswerGuard::new(policy(), Default::default(), ph, api)
}

/// The translations that read an answer in `api`'s format.
fn directions_from(api: Api) -> Vec<Direction> {
    use Direction::*;
    [OpenAiToAnthropic, AnthropicToOpenAi, ChatToResponses, AnthropicToResponses, ResponsesToAnthropic, ResponsesToChat]
        .into_iter()
        .filter(|d| d.upstream_api() == api)
        .collect()
}

/// Every event a client is sent carries JSON (or OpenAI's `[DONE]`; or,
/// passed on as the provider sent it, no data at all, which has nothing to
/// scan and which an SSE client does not dispatch).
fn check_events(d: Option<Direction>, out: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(out);
    for line in text.lines().filter_map(|l| l.strip_prefix("data:")) {
        let data = line.trim();
        let empty_passed_on = d.is_none() && data.is_empty();
        prop_assert!(data == "[DONE]" || empty_passed_on || serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok(), "{:?}: an event the client cannot read: {}", d, data);
    }
    Ok(())
}

fn check_stream(api: Api, events: &[u8], cuts: &[usize]) -> Result<(), TestCaseError> {
    let run = |d: Option<Direction>, pieces: &[&[u8]]| {
        let mut t = StreamTracker::new(api, true);
        if let Some(d) = d {
            t = t.translating(d.stream(0, true, None));
        }
        let mut out = Vec::new();
        for p in pieces {
            out.extend(t.push(p));
        }
        out.extend(t.finish());
        (t.summary(), out)
    };
    let mut at = 0;
    let mut pieces = Vec::new();
    for &c in cuts.iter().filter(|&&c| c <= events.len()) {
        pieces.push(&events[at..c.max(at)]);
        at = c.max(at);
    }
    pieces.push(&events[at..]);
    let (whole, _) = run(None, &[events]);
    let (chunked, _) = run(None, &pieces);
    prop_assert_eq!(&whole, &chunked, "the usage depends on how the stream was cut");
    if let Some(mut g) = answer_guard(api) {
        let mut out = Vec::new();
        for p in &pieces {
            out.extend(g.push(p));
        }
        out.extend(g.finish());
        check_events(None, &out)?;
    }
    for d in directions_from(api) {
        let (translated, out) = run(Some(d), &pieces);
        prop_assert_eq!(translated.usage, whole.usage, "{:?} reads another usage", d);
        check_events(Some(d), &out)?;
    }
    let o = Observed { stream: Some(whole), body_bytes: events.len() as u64, ..observed(200) };
    let (usage, source, _, _) = account(&o);
    record_of(api, usage, source)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn captured_traffic_with_hostile_values_is_read_priced_and_recorded_safely(
        which in any::<prop::sample::Index>(), pick in any::<usize>(), value in hostile(), edit in edit(),
        crossed in any::<bool>(), cuts in prop::collection::vec(0usize..200_000, 0..8),
    ) {
        let c = which.get(corpus());
        match c {
            Capture::Request { api, path, body } => {
                let mut body = body.clone();
                replace_nth(&mut body, pick, value);
                let bytes = apply(body.to_string(), &edit);
                check_request(*api, path, &bytes, crossed)?;
            }
            Capture::Answer { api, body } => {
                let mut body = body.clone();
                replace_nth(&mut body, pick, value);
                let bytes = apply(body.to_string(), &edit);
                check_answer(*api, &bytes)?;
            }
            Capture::Stream { api, events } => {
                // one event's JSON made hostile, the rest as recorded
                let i = pick % events.len();
                let mut text = String::new();
                for (j, e) in events.iter().enumerate() {
                    match (j == i, e.find("data: ")) {
                        (true, Some(d)) => {
                            let (head, data) = e.split_at(d + 6);
                            let end = if data.ends_with("\r\n\r\n") { "\r\n\r\n" } else { "\n\n" };
                            match serde_json::from_str::<Value>(data.trim_end()) {
                                Ok(mut v) => {
                                    replace_nth(&mut v, pick / events.len(), value.clone());
                                    text.push_str(head);
                                    text.push_str(&String::from_utf8_lossy(&apply(v.to_string(), &edit)));
                                    text.push_str(end);
                                }
                                Err(_) => text.push_str(e),
                            }
                        }
                        _ => text.push_str(e),
                    }
                }
                check_stream(*api, text.as_bytes(), &cuts)?;
            }
        }
    }
}

/// The corpus itself, unchanged, passes the same checks (so a failure
/// above is the hostile value's doing, not the harness's).
#[test]
fn the_captures_as_recorded_pass_every_check() {
    for c in corpus() {
        let r = match c {
            Capture::Request { api, path, body } => {
                let bytes = serde_json::to_vec(body).unwrap();
                check_request(*api, path, &bytes, false).and_then(|()| check_request(*api, path, &bytes, true))
            }
            Capture::Answer { api, body } => check_answer(*api, &serde_json::to_vec(body).unwrap()),
            Capture::Stream { api, events } => check_stream(*api, events.concat().as_bytes(), &[7, 100, 1000]),
        };
        if let Err(e) = r {
            panic!("{c:?}: {e}");
        }
    }
}
