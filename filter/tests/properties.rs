//! Property tests ("fuzzing in CI") for every parser the filter runs on bytes
//! from clients and providers: arbitrary input never panics, chunking never
//! changes a result, pricing never overflows and never decreases as tokens
//! grow. `make test` runs the default number of cases (bounded time);
//! `make fuzz` runs many more (PROPTEST_CASES).

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // a test crate: a panic is a failed test

use proptest::prelude::*;
use tollgate_filter::translate::Direction;
use tollgate_filter::budget::Counter;
use tollgate_filter::config::Config;
use tollgate_filter::decode::{Coding, Inflater};
use tollgate_filter::pricing::Price;
use tollgate_filter::request::{parse_chat, Api, Rewrite};
use tollgate_filter::response::JsonCollector;
use tollgate_filter::sse::SseSplitter;
use tollgate_filter::usage::{parse_json_response, StreamTracker, Usage};

const OPENAI_STREAM: &[u8] = include_bytes!("../fixtures/openai_stream_include_usage.sse");
const ANTHROPIC_STREAM: &[u8] = include_bytes!("../fixtures/anthropic_stream.sse");

/// Cut points for splitting `len` bytes into chunks.
fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=len, 0..12).prop_map(|mut v| {
        v.sort_unstable();
        v.dedup();
        v
    })
}

fn split<'a>(b: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        out.push(&b[at..c]);
        at = c;
    }
    out.push(&b[at..]);
    out
}

fn api() -> impl Strategy<Value = Api> {
    prop_oneof![
        Just(Api::OpenAiChat),
        Just(Api::AnthropicMessages),
        Just(Api::OpenAiResponses),
        Just(Api::OpenAiCompletions),
        Just(Api::OpenAiEmbeddings)
    ]
}

fn run_tracker(api: Api, strip: bool, chunks: &[&[u8]]) -> (Vec<u8>, tollgate_filter::usage::StreamSummary) {
    let mut t = StreamTracker::new(api, strip);
    let mut out = Vec::new();
    for c in chunks {
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

/// Any JSON value, with strings full of quotes, backslashes and braces (and
/// the text `"usage":null`), and objects that may hold a member named
/// `usage` themselves.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z\"\\\\{}\\[\\]:, ]{0,8}".prop_map(Value::from),
        Just(Value::from("\"usage\":null}")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((prop_oneof![Just("usage"), Just("a"), Just("b")], inner), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// Cases per property: proptest's default, or PROPTEST_CASES (`make fuzz`).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn sse_splitting_does_not_depend_on_chunking(stream in prop::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b'd'), Just(b' '), any::<u8>()], 0..400),
            c in cuts(400), max in 4usize..64) {
        let c: Vec<usize> = c.into_iter().filter(|&x| x <= stream.len()).collect();
        let collect = |chunks: Vec<&[u8]>| {
            let mut s = SseSplitter::with_max_event(max);
            let mut passed = Vec::new();
            for ch in chunks {
                s.push(ch, |ev, _| passed.extend_from_slice(ev));
            }
            passed.extend(s.take_pending());
            passed
        };
        // every byte handed on exactly once, in order, however it was cut
        prop_assert_eq!(collect(split(&stream, &c)), stream.clone());
        // and with no limit in play, the same events whatever the chunking
        let events = |chunks: Vec<&[u8]>| {
            let mut s = SseSplitter::new();
            let mut evs = Vec::new();
            for ch in chunks {
                s.push(ch, |ev, whole| evs.push((ev.to_vec(), whole)));
            }
            evs
        };
        prop_assert_eq!(events(split(&stream, &c)), events(vec![&stream[..]]));
    }

    #[test]
    fn usage_does_not_depend_on_chunking(c in cuts(OPENAI_STREAM.len()), strip in any::<bool>()) {
        for (api, stream) in [(Api::OpenAiChat, OPENAI_STREAM), (Api::AnthropicMessages, ANTHROPIC_STREAM)] {
            let c: Vec<usize> = c.iter().copied().filter(|&x| x <= stream.len()).collect();
            let whole = run_tracker(api, strip, &[stream]);
            let cut = run_tracker(api, strip, &split(stream, &c));
            prop_assert_eq!(&cut.0, &whole.0);
            prop_assert_eq!(&cut.1, &whole.1);
            prop_assert!(whole.1.usage.is_some());
        }
    }

    #[test]
    fn stripping_removes_the_top_level_null_usage_and_nothing_else(
        members in prop::collection::vec((0usize..6, json_value()), 0..6),
        at in 0usize..7,
        spaced in any::<bool>(),
        obfuscation in any::<bool>(),
    ) {
        // Members the tracker reads (choices, model) stay out: any value is
        // allowed for these, and the chunk still parses.
        let names = ["id", "object", "x", "usage_x", "created", "service_tier"];
        let mut list: Vec<(String, serde_json::Value)> = Vec::new();
        for (n, v) in members {
            if !list.iter().any(|(k, _)| k == names[n]) {
                list.push((names[n].to_string(), v));
            }
        }
        let expected = serde_json::Value::Object(list.iter().cloned().collect());
        list.insert(at.min(list.len()), ("usage".to_string(), serde_json::Value::Null));
        if obfuscation {
            // api.openai.com's order: usage, then obfuscation.
            list.push(("obfuscation".to_string(), serde_json::Value::from("k3}\"Ze")));
        }
        let sp = if spaced { " " } else { "" };
        let text: Vec<String> = list.iter().map(|(k, v)| format!("{}{sp}:{sp}{}", serde_json::Value::from(k.as_str()), v)).collect();
        let stream = format!("data: {{{}}}\n\n", text.join(&format!(",{sp}")));
        let (out, _) = run_tracker(Api::OpenAiChat, true, &[stream.as_bytes()]);
        let out = String::from_utf8(out).unwrap();
        let data = out.strip_prefix("data: ").unwrap().trim_end();
        let mut got: serde_json::Value = serde_json::from_str(data).unwrap();
        if obfuscation {
            prop_assert!(got.as_object_mut().unwrap().remove("obfuscation").is_some(), "{}", out);
        }
        prop_assert_eq!(got, expected, "{} -> {}", stream, out);
    }

    #[test]
    fn arbitrary_streams_never_panic(api in api(), strip in any::<bool>(), bytes in prop::collection::vec(any::<u8>(), 0..2000),
                                     c in cuts(2000)) {
        let c: Vec<usize> = c.into_iter().filter(|&x| x <= bytes.len()).collect();
        let (out, _) = run_tracker(api, strip, &split(&bytes, &c));
        if !strip || !matches!(api, Api::OpenAiChat | Api::OpenAiCompletions) {
            prop_assert_eq!(&out, &bytes);
        }
        // the same bytes as a stream translated either way
        for d in [Direction::OpenAiToAnthropic, Direction::AnthropicToOpenAi] {
            let mut t = StreamTracker::new(d.upstream_api(), false).translating(d.stream(0, strip, None));
            for piece in split(&bytes, &c) {
                t.push(piece);
            }
            t.finish();
        }
    }

    #[test]
    fn a_named_prompt_renders_to_json_whatever_the_variables(value in ".{0,200}", extra in prop::collection::vec(any::<u8>(), 0..64)) {
        let reg: tollgate_protocol::prompts::PromptsDoc = serde_json::from_str(r#"{"seq": 1, "prompts": [{"name": "p", "labels": {"production": 1},
            "versions": [{"version": 1, "hash": "00000000", "system": "S", "messages": [{"role": "user", "content": "a {{x}} b"}]}]}]}"#).unwrap();
        let reg = tollgate_filter::prompts::Registry::from_doc(reg);
        let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": String::from_utf8_lossy(&extra)}],
                                      "tollgate_prompt": {"name": "p", "variables": {"x": value}}});
        let out = tollgate_filter::prompts::render(Api::OpenAiChat, &serde_json::to_vec(&body).unwrap(), Some(&reg)).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        prop_assert_eq!(v["messages"][1]["content"].as_str().unwrap(), format!("a {value} b"));
        prop_assert!(v.get("tollgate_prompt").is_none());
    }

    #[test]
    fn arbitrary_bodies_never_panic(api in api(), bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse_json_response(api, &bytes);
        let text = String::from_utf8_lossy(&bytes);
        for h in tollgate_filter::guard::detect::scan(&text) {
            prop_assert!(h.start < h.end && h.end <= text.len() && text.is_char_boundary(h.start) && text.is_char_boundary(h.end));
        }
        let policy: tollgate_filter::guard::PolicyDoc = serde_json::from_str(r#"{"actions": {"email": "redact", "card": "redact", "secret": "redact"},
            "custom": [{"name": "w", "words": ["ab"]}, {"name": "p", "pattern": "[0-9]{3}"}], "responses": "redact", "restore": true}"#).unwrap();
        if let Ok(p) = tollgate_filter::guard::Policy::build(policy) {
            let who = tollgate_filter::guard::Subject { key: "k", project: "p", team: "t", route: "r" };
            let mut ph = tollgate_filter::guard::Placeholders::default();
            if let tollgate_filter::guard::Outcome::Redacted(b, _) = p.apply(who, &bytes, &mut ph) {
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&b).is_ok());
            }
            // The answer guard over the same bytes, as a JSON answer and as a stream cut anywhere.
            let p = std::rc::Rc::new(p);
            let mut ph = tollgate_filter::guard::Placeholders::default();
            ph.for_value("email", "EMAIL", "a@b.io");
            let owner = tollgate_filter::guard::answer::Owner::default();
            if let Some(mut g) = tollgate_filter::guard::answer::AnswerGuard::new(p, owner, ph, api) {
                if let Ok(Some(b)) = g.json(&bytes) {
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(&b).is_ok());
                }
                let cut = bytes.len() / 3;
                let _ = g.push(&bytes[..cut]);
                let _ = g.push(&bytes[cut..]);
                let _ = g.finish();
            }
        }
        // prompt rendering and prefix fingerprints on the same bytes
        let reg: tollgate_protocol::prompts::PromptsDoc = serde_json::from_str(r#"{"seq": 1, "prompts": [{"name": "p", "labels": {"production": 1},
            "versions": [{"version": 1, "hash": "00000000", "system": "S", "messages": [{"role": "user", "content": "{{x}}"}]}]}]}"#).unwrap();
        let reg = tollgate_filter::prompts::Registry::from_doc(reg);
        if let Ok(Some(r)) = tollgate_filter::prompts::render(api, &bytes, Some(&reg)) {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_ok(), "a rendered body is JSON");
        }
        if let Some(f) = tollgate_filter::fingerprint::fingerprint(api, &bytes, 1) {
            prop_assert!(f.blocks.len() <= tollgate_filter::fingerprint::MAX_BLOCKS);
            let _ = f.verdict(&tollgate_filter::fingerprint::decode(&bytes));
            let _ = tollgate_filter::fingerprint::updated(&f, &bytes);
        }
        let _ = tollgate_filter::fingerprint::markers(api, &bytes);
        for d in [Direction::OpenAiToAnthropic, Direction::AnthropicToOpenAi] {
            let _ = d.answer(&bytes, 200, 0, None);
            let _ = d.answer(&bytes, 500, 0, None);
        }
        if let Ok(p) = parse_chat(api, &bytes) {
            if let Ok(t) = tollgate_filter::translate::to_anthropic::chat_to_messages(&p, "m", 7) {
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&t).is_ok());
            }
            if let Ok(t) = tollgate_filter::translate::to_openai::messages_to_chat_request(&p, "m", "max_tokens", 7) {
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&t).is_ok());
            }
            // with breakpoints added wherever the prefix allows (1 token), on hostile bodies too
            let _ = p.rewrite("m", Rewrite { force_include_usage: true, output_cap: Some(("max_tokens", 7)), auto_cache: Some(tollgate_filter::caching::AutoCache { min_tokens: 1, ttl_1h: false }) });
        }
        let _ = Config::from_json(&bytes);
        let _ = Counter::decode(&bytes);
        let _ = tollgate_filter::hostmap::decode(&bytes);
        let mut j = JsonCollector::new(64);
        j.push(&bytes);
        let _ = j.finish(api);
        for coding in [Coding::Gzip, Coding::Deflate] {
            if let Some(mut inf) = Inflater::new(&coding) {
                inf.push(&bytes, |_| {});
            }
        }
    }

    #[test]
    fn json_text_requests_never_panic_and_rewrites_stay_json(
            model in "[ -~]{0,40}", extra in prop::collection::vec(("[a-z_]{1,12}", any::<i64>()), 0..6),
            max in prop::option::of(any::<u64>()), n in prop::option::of(any::<u64>()), stream in any::<bool>(), api in api()) {
        let mut obj = serde_json::Map::new();
        obj.insert("model".into(), model.clone().into());
        obj.insert("messages".into(), serde_json::json!([{"role": "user", "content": "hi"}]));
        obj.insert("stream".into(), stream.into());
        if let Some(m) = max { obj.insert("max_tokens".into(), m.into()); }
        if let Some(n) = n { obj.insert("n".into(), n.into()); }
        for (k, v) in extra { obj.entry(k).or_insert(v.into()); }
        let body = serde_json::to_vec(&obj).unwrap();
        if let Ok(p) = parse_chat(api, &body) {
            prop_assert!(p.request.output_bound(4096) >= p.request.max_tokens.unwrap_or(4096).min(p.request.output_bound(4096)));
            if let Some(out) = p.rewrite("upstream-model", Rewrite { force_include_usage: true, output_cap: Some(("max_completion_tokens", 4096)), auto_cache: None }) {
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(v["model"].as_str(), Some("upstream-model"));
                prop_assert!(api == Api::OpenAiChat || v.get("stream_options").is_none());
                if max.is_none() && api == Api::OpenAiChat {
                    prop_assert_eq!(v["max_completion_tokens"].as_u64(), Some(4096));
                }
            }
        }
    }

    /// What the reservation assumed is what the provider is told: a chat
    /// request goes upstream with one cap, in the provider's member, equal
    /// to the bound the filter reserved for (the client's cap, the larger
    /// of two, or the gateway's own when it named none of chat's members).
    #[test]
    fn a_chat_request_goes_upstream_capped_as_reserved(
            caps in prop::collection::vec((prop::sample::select(vec!["max_tokens", "max_completion_tokens", "max_output_tokens"]),
                                           prop::option::of(0u64..100_000)), 0..3),
            field in prop::sample::select(vec!["max_tokens", "max_completion_tokens"])) {
        let mut obj = serde_json::Map::new();
        obj.insert("model".into(), "m".into());
        obj.insert("messages".into(), serde_json::json!([{"role": "user", "content": "hi"}]));
        for (k, v) in caps { obj.insert(k.to_string(), v.map_or(serde_json::Value::Null, Into::into)); }
        let body = serde_json::to_vec(&obj).unwrap();
        let p = parse_chat(Api::OpenAiChat, &body).unwrap();
        let bound = p.request.output_bound(4096);
        let out = p.rewrite("m", Rewrite { force_include_usage: false, output_cap: Some((field, 4096)), auto_cache: None });
        let sent: serde_json::Value = serde_json::from_slice(out.as_deref().unwrap_or(&body)).unwrap();
        let other = if field == "max_tokens" { "max_completion_tokens" } else { "max_tokens" };
        prop_assert_eq!(sent[field].as_u64(), Some(bound), "{}", sent);
        prop_assert!(sent.get(other).is_none_or(serde_json::Value::is_null), "{}", sent);
    }

    /// Whatever thinking an Anthropic client sends (any type, budget or
    /// effort, any cap) to whichever Claude model, what goes upstream is one
    /// Anthropic takes for that model (the rules the mock holds, cited in
    /// tests/mock-provider/src/thinking.rs): no thinking on Claude 3.5, no
    /// budget form where only adaptive is taken, a budget of at least 1,024
    /// below `max_tokens`, and no adaptive form before Claude 4.6.
    #[test]
    fn an_anthropic_clients_thinking_goes_upstream_in_a_form_the_model_takes(
            kind in prop::sample::select(vec!["enabled", "adaptive", "disabled"]), budget in 0u64..70_000,
            effort in prop::option::of(prop::sample::select(vec!["low", "medium", "high", "xhigh", "max"])), max_tokens in 1u64..70_000,
            model in prop::sample::select(vec!["claude-3-5-haiku-20241022", "claude-3-7-sonnet-20250219", "claude-sonnet-4-20250514",
                                              "claude-sonnet-4-5", "claude-opus-4-5", "claude-sonnet-4-6", "claude-opus-4-7",
                                              "claude-opus-4-8", "claude-sonnet-5", "claude-mythos-preview"])) {
        let mut thinking = serde_json::json!({"type": kind});
        if kind == "enabled" { thinking["budget_tokens"] = budget.into(); }
        let mut req = serde_json::json!({"model": "claude-opus-4-5", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}], "thinking": thinking});
        if let Some(e) = effort { req["output_config"] = serde_json::json!({"effort": e}); }
        let body = serde_json::to_vec(&req).unwrap();
        let p = parse_chat(Api::AnthropicMessages, &body).unwrap();
        let out = p.rewrite(model, Rewrite::default()).unwrap_or_else(|| body.clone());
        let sent: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let v = |i: usize| model.trim_start_matches("claude-").split('-').filter_map(|t| t.parse::<u32>().ok()).filter(|n| *n < 100).nth(i);
        let version = v(0).map(|major| (major, v(1).unwrap_or(0)));
        let sent_kind = sent.pointer("/thinking/type").and_then(serde_json::Value::as_str);
        let on = matches!(sent_kind, Some("enabled" | "adaptive"));
        let client_on = kind != "disabled";
        prop_assert!(!(on && version.is_some_and(|v| v < (3, 7))), "{}", sent);
        if sent_kind == Some("enabled") && client_on && kind != "enabled" {
            let b = sent["thinking"]["budget_tokens"].as_u64().unwrap_or(0);
            prop_assert!(b >= 1024 && b < max_tokens, "{}", sent);
        }
        let adaptive_only = version.is_none_or(|v| v >= (5, 0) || (model.contains("opus") && v >= (4, 7)));
        prop_assert!(!(sent_kind == Some("enabled") && adaptive_only), "{}", sent);
        prop_assert!(!(sent_kind == Some("adaptive") && version.is_some_and(|v| v < (4, 6))), "{}", sent);
        prop_assert_eq!(sent["messages"].clone(), req["messages"].clone());
    }

    #[test]
    fn large_bodies_give_the_same_usage_at_any_chunking(pad in 0usize..200_000, c in cuts(200_000), max in 1000usize..300_000) {
        let body = format!(r#"{{"model":"m","choices":[{{"message":{{"content":"{}"}}}}],"usage":{{"prompt_tokens":3,"completion_tokens":{pad}}}}}"#, "x".repeat(pad));
        let b = body.as_bytes();
        let c: Vec<usize> = c.into_iter().filter(|&x| x <= b.len()).collect();
        let mut j = JsonCollector::new(max);
        for ch in split(b, &c) { j.push(ch); }
        let r = j.finish(Api::OpenAiChat);
        prop_assert_eq!(r.info.usage.map(|u| u.output_tokens), Some(pad as u64));
    }

    #[test]
    fn pricing_never_overflows_and_never_decreases(
            input in any::<u64>(), cached in any::<u64>(), write in any::<u64>(), w1h in any::<u64>(), out in any::<u64>(),
            searches in any::<u64>(), more in 0u64..1_000_000, p_in in any::<u64>(), p_out in any::<u64>(),
            p_c in prop::option::of(any::<u64>()), p_w in prop::option::of(any::<u64>())) {
        let p = Price { input: p_in, cached_input: p_c, cache_write: p_w, cache_write_1h: None, output: p_out, web_search_per_1k: None, ..Default::default() };
        let u = Usage { input_tokens: input, cached_input_tokens: cached, cache_write_tokens: write, output_tokens: out,
                        reasoning_tokens: 0, cache_write_1h_tokens: w1h, web_search_requests: searches, file_search_calls: 0, audio_input_tokens: 0, image_input_tokens: 0, audio_output_tokens: 0, image_output_tokens: 0, audio_input_ms: 0, input_characters: 0, container_gb: 0, cache_reported: true };
        let base = p.cost_micros(&u);
        // more output, more uncached input, more searches: never cheaper
        let mut o = u; o.output_tokens = out.saturating_add(more);
        prop_assert!(p.cost_micros(&o) >= base);
        let mut s = u; s.web_search_requests = searches.saturating_add(more);
        prop_assert!(p.cost_micros(&s) >= base);
        let b = u.bounded();
        let mut i = b; i.input_tokens = b.input_tokens.saturating_add(more);
        prop_assert!(p.cost_micros(&i) >= p.cost_micros(&b));
        prop_assert_eq!(b.bounded(), b);
    }

    /// Shared-data bytes are written by another VM: whatever they are,
    /// reading them never panics, and an entry read as a budget is the
    /// budget of the scope asked for, of the epoch asked for or newer.
    #[test]
    fn shared_budget_entries_and_meta_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), epoch in any::<u64>(), id in ".{0,20}") {
        use tollgate_filter::state::{decode_budget_entry, decode_meta, ScopeType};
        let _ = decode_meta(&bytes);
        for st in ScopeType::ALL {
            if let Some(d) = decode_budget_entry(&bytes, st, &id, epoch) {
                prop_assert!(d.scope_type == st && d.scope_id == id);
            }
        }
    }

    /// Whatever states the control service sends, in whatever order: no
    /// panic, the trusted epoch never goes back, a delta is applied only on
    /// top of a full state, and the cursor sent back stays bounded.
    #[test]
    fn budget_sync_holds_its_rules_over_any_sequence_of_states(steps in prop::collection::vec(
        (any::<bool>(), any::<bool>(), 0u64..3, ".{0,12}", 0usize..4, any::<u64>()), 0..24)) {
        use tollgate_filter::budgetsync::BudgetSync;
        use tollgate_filter::state::{BudgetDoc, BudgetScope, ScopeType, StateDoc};
        let mut sync = BudgetSync::default();
        let mut epoch = 0;
        let mut had_full = false;
        for (full, more, seq, cursor, n, clock) in steps {
            let budgets = (0..n).map(|i| BudgetDoc {
                scope_type: ScopeType::Team, scope_id: format!("t{i}"), limit_micros: Some(1), limit_tokens: None,
                period_start_ms: 0, period_end_ms: 1, used_micros: 0, used_tokens: 0, soft_pct: None, hard_pct: Some(100),
                share_micros: Some(1), share_tokens: None }).collect();
            let removed = vec![BudgetScope { scope_type: ScopeType::Key, scope_id: cursor.clone() }];
            let doc = StateDoc { seq, budgets_full: full, budgets_more: more, budgets, budgets_removed: removed,
                                 budgets_cursor: cursor, ..StateDoc::default() };
            let applied = sync.apply(&doc, clock);
            had_full |= full;
            if !full && !had_full {
                prop_assert!(applied.is_none(), "a delta with no full state before it");
            }
            prop_assert!(sync.epoch() >= epoch);
            epoch = sync.epoch();
            prop_assert!(sync.cursor().is_none_or(|c| c.len() <= 4096));
            if let Some(a) = applied {
                prop_assert!(a.settled_seq.is_none() || !sync.more());
            }
        }
    }
}
