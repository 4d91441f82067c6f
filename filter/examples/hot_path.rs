//! The filter's own per-request work on the host, step by step (no Envoy,
//! no host calls): where the wasm code's time goes, to profile natively.
//!
//!     cargo run --release -p tollgate-filter --example hot_path
//!
//! Wasm in V8 runs the same code about 1.5-2x slower; the host calls (headers,
//! bodies, properties, shared data) come on top (docs/architecture.md). Each
//! step also prints the heap allocations it makes; the last lines measure
//! what `smol_str` and hashbrown + foldhash would save ("Packages" there).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

use tollgate_filter::config::{Config, KeyInfo};
use tollgate_filter::record::*;
use tollgate_protocol::Api;

const CFG: &str = r#"{
  "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"}],
  "routes": [{"model": "openai/*", "provider": "openai"}],
  "pricing": {"openai/gpt-5.4": {"input": 1250000, "output": 10000000}},
  "unpriced_models": "deny"}"#;

const RESPONSE: &[u8] = br#"{"id":"chatcmpl-abc123","object":"chat.completion","created":1741569952,"model":"gpt-5.4-2026-03-01","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today? lorem ipsum dolor sit amet","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":250,"completion_tokens":12,"total_tokens":262,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_abc"}"#;

/// An OpenAI chat stream as the mock provider sends it for a short answer
/// (`stream_options.include_usage` forced: `"usage":null` on every chunk,
/// then the `obfuscation` member api.openai.com pads every chunk with).
fn openai_stream() -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-mock00000000000000000001","object":"chat.completion.chunk","created":1767225601,"model":"gpt-5.4","service_tier":"default","system_fingerprint":"fp_mock","choices":"#;
    let mut s = format!("data: {head}[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null,\"obfuscation\":\"k3Ze\"}}\n\n");
    for word in "Hello! How can I assist you today? lorem ipsum dolor sit amet".split(' ') {
        s += &format!("data: {head}[{{\"index\":0,\"delta\":{{\"content\":\"{word} \"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null,\"obfuscation\":\"k3Ze\"}}\n\n");
    }
    s += &format!("data: {head}[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null,\"obfuscation\":\"IPio8PDe\"}}\n\n");
    s += &format!("data: {head}[],\"usage\":{{\"prompt_tokens\":235,\"completion_tokens\":12,\"total_tokens\":247,\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}},\"obfuscation\":\"pVAV\"}}\n\n");
    s += "data: [DONE]\n\n";
    s.into_bytes()
}

/// Counts heap allocations (and their bytes), to say what each step
/// allocates: in wasm every allocation is dlmalloc's work in the VM.
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static SMALL: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call goes to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        if layout.size() <= 23 {
            SMALL.fetch_add(1, Relaxed);
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        // SAFETY: as for `alloc`; `ptr` came from it with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn time<T>(name: &str, n: u32, mut f: impl FnMut() -> T) {
    for _ in 0..n / 10 {
        black_box(f());
    }
    let (a0, b0, s0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed), SMALL.load(Relaxed));
    let t = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let per = |now: u64, then: u64| (now - then) as f64 / f64::from(n);
    let (a, b, s) = (per(ALLOCS.load(Relaxed), a0), per(BYTES.load(Relaxed), b0), per(SMALL.load(Relaxed), s0));
    println!("{name:<44} {us:>7.2} µs {a:>6.1} allocations ({s:.1} of <= 23 bytes) {b:>8.0} bytes");
}

fn main() -> Result<(), String> {
    let cfg = Config::from_json(CFG.as_bytes()).map_err(|e| e.to_string())?;
    let filler = "lorem ipsum dolor sit amet ".repeat(40);
    let body = format!(
        r#"{{"model": "openai/gpt-5.4", "messages": [{{"role": "system", "content": "You are terse."}}, {{"role": "user", "content": "{}"}}], "stream": false}}"#,
        &filler[..900]
    );
    let key = Rc::new(KeyInfo {
        id: "key-search".into(),
        key_hash: "9f".repeat(32),
        team: "search".into(),
        project: "web".into(),
        models: None,
        projects: vec![],
        tags: BTreeMap::from([("env".to_string(), "prod".to_string())]),
    });
    let n = 200_000;
    time("sha3 of the key", n, || tollgate_filter::keys::hash_key("tg-demo-search-key"));
    time("plan (parse, route, rewrite, price)", n, || {
        tollgate_filter::route::plan(&cfg, &key, Api::OpenAiChat, body.as_bytes(), "/v1/chat/completions", false).is_ok()
    });
    prompts(&cfg, &key, n);
    let stream = openai_stream();
    time("stream: split into events", n / 4, || {
        let mut sp = tollgate_filter::sse::SseSplitter::new();
        let (a, b) = stream.split_at(stream.len() / 2);
        let mut k = 0;
        sp.push(a, |e, _| k += e.len());
        sp.push(b, |e, _| k += e.len());
        k
    });
    time("stream: split + each event's fields", n / 4, || {
        let mut sp = tollgate_filter::sse::SseSplitter::new();
        let (a, b) = stream.split_at(stream.len() / 2);
        let mut k = 0;
        sp.push(a, |e, _| k += tollgate_filter::sse::parse_event(e).data.len());
        sp.push(b, |e, _| k += tollgate_filter::sse::parse_event(e).data.len());
        k
    });
    time("stream: 16 events followed, not rewritten", n / 4, || {
        let mut t = tollgate_filter::usage::StreamTracker::new(Api::OpenAiChat, false);
        let (a, b) = stream.split_at(stream.len() / 2);
        let out = t.push(a).len() + t.push(b).len() + t.finish().len();
        (out, t.summary().usage.is_some())
    });
    time("stream: 16 events followed, usage stripped", n / 4, || {
        let mut t = tollgate_filter::usage::StreamTracker::new(Api::OpenAiChat, true);
        let (a, b) = stream.split_at(stream.len() / 2);
        let out = t.push(a).len() + t.push(b).len() + t.finish().len();
        (out, t.summary().usage.is_some())
    });
    time("response: collect + read usage", n, || {
        let mut c = tollgate_filter::response::JsonCollector::new(1 << 20);
        c.push(RESPONSE);
        c.finish(Api::OpenAiChat).info.usage.is_some()
    });
    let plan = tollgate_filter::route::plan(&cfg, &key, Api::OpenAiChat, body.as_bytes(), "/v1/chat/completions", false).map_err(|e| e.error.message.clone())?;
    let usage = tollgate_filter::usage::parse_json_response(Api::OpenAiChat, RESPONSE).usage.unwrap_or_default();
    let rec = || UsageRecord {
        v: RECORD_VERSION,
        id: "0f3a9c2b7d104e5f-000000000001".into(),
        client_request_id: None,
        session_id: None,
        ts_ms: 1_764_000_000_000,
        key_id: key.id.clone(),
        key_hash: key.key_hash.clone(),
        team: key.team.clone(),
        project: key.project.clone(),
        feature: None,
        prompt_version: None,
        user: None,
        tags: key.tags.clone(),
        api: Api::OpenAiChat,
        provider: Some(plan.target.provider.clone()),
        route: Some(plan.target.route.clone()),
        model_requested: Some(plan.chat.model.clone()),
        model_upstream: Some(plan.target.upstream_model.clone()),
        model_served: Some("gpt-5.4-2026-03-01".into()),
        stream: false,
        status: 200,
        outcome: Outcome::Ok,
        error_code: None,
        usage,
        usage_source: UsageSource::Provider,
        cost_micros: 432,
        cache_savings_micros: 0,
        priced: true,
        latency_ms: 3,
        ttfb_ms: Some(2),
        budget_scopes: vec![],
        budget_decision: BudgetDecision::Ok,
        guardrails: None,
        cache_miss: None,
        json_check: None,
        attempts: Vec::new(),
        routed_by: None,
        service_tier: None,
        inference_geo: None,
        capture: None,
    };
    time("record: build", n, &rec);
    time("record: build + bounded", n, || rec().bounded());
    let r = rec().bounded();
    time("record: serialise", n, || serde_json::to_string(&r).unwrap_or_default());
    let json = serde_json::to_string(&r).unwrap_or_default();
    let fields = tollgate_filter::access_log::fields(None);
    time("access-log fields (values)", n, || fields.iter().map(|f| f.value(&r, &json).len()).sum::<usize>());
    time("metrics: dims key + points", n, || {
        let d = tollgate_filter::metrics::Dims::of(&r);
        (d.key(), tollgate_filter::metrics::points(&r))
    });
    let part = || serde_json::from_slice::<tollgate_protocol::record::BudgetPart>(json.as_bytes()).is_ok();
    time("service: read the record's budget part", n, part);
    println!("(record {} bytes, request body {} bytes)", json.len(), body.len());
    packages(n);
    Ok(())
}

/// A request naming a registered prompt (1 KB system prompt) against the
/// same request carrying it: the work `make bench`'s rendering pair compares.
fn prompts(cfg: &Config, key: &Rc<KeyInfo>, n: u32) {
    let system = "The quick brown fox jumps over the lazy dog. ".repeat(23)[..1024].to_string();
    let doc = serde_json::json!({"seq": 1, "prompts": [{"name": "bench", "labels": {"production": 1},
        "versions": [{"version": 1, "hash": "aaaaaaaabbbb", "system": system, "messages": [{"role": "user", "content": "Context: {{ctx}}"}]}]}]});
    let Ok(doc) = serde_json::from_value(doc) else { return };
    let registry = tollgate_filter::prompts::Registry::from_doc(doc);
    let ask = serde_json::json!({"role": "user", "content": "Where is my order?"});
    let named = serde_json::json!({"model": "openai/gpt-5.4", "tollgate_prompt": {"name": "bench", "variables": {"ctx": "order 42"}}, "messages": [ask]}).to_string();
    let carried = serde_json::json!({"model": "openai/gpt-5.4", "messages": [{"role": "system", "content": system}, {"role": "user", "content": "Context: order 42"}, ask]}).to_string();
    let choice = tollgate_filter::route::Choice { prompts: Some(Some(&registry)), ..Default::default() };
    let plan = |body: &str| tollgate_filter::route::plan_for(cfg, key, Api::OpenAiChat, body.as_bytes(), "/v1/chat/completions", false, choice).is_ok();
    time("plan, 1 KB prompt carried", n, || plan(&carried));
    time("plan, the same prompt named (rendered)", n, || plan(&named));
    time("  parse named", n, || tollgate_filter::request::parse_chat(Api::OpenAiChat, named.as_bytes()).is_ok());
    time("  render", n, || tollgate_filter::prompts::render(Api::OpenAiChat, named.as_bytes(), Some(&registry)).is_ok());
    time("  parse carried", n, || tollgate_filter::request::parse_chat(Api::OpenAiChat, carried.as_bytes()).is_ok());
}

/// What the design's packages would save on the work above
/// (docs/architecture.md, "Packages"): the small strings a request copies
/// (the plan's and the record's: ids, team, project, provider, route,
/// models, header values), as `String` and as `smol_str` (inline up to 23
/// bytes); and the hash-map lookups a request makes (its key, its budgets'
/// entries, its metric set), with std's SipHash and with hashbrown and
/// foldhash.
fn packages(n: u32) {
    let words: Vec<String> = ["key-search", "search", "web", "openai", "openai/gpt-5.4", "gpt-5.4", "gpt-5.4-2026-03-01", "application/json"]
        .iter()
        .map(|w| w.to_string())
        .collect();
    let smol: Vec<smol_str::SmolStr> = words.iter().map(smol_str::SmolStr::new).collect();
    // 33 copies a request, as counted above (plan 23, record 10).
    time("33 small strings copied, String", n, || words.iter().cycle().take(33).cloned().collect::<Vec<_>>().len());
    time("33 small strings copied, smol_str", n, || smol.iter().cycle().take(33).cloned().collect::<Vec<_>>().len());
    let keys: Vec<String> = (0..64).map(|i| format!("{:064x}", i * 7919)).collect();
    let mut std_map = std::collections::HashMap::new();
    let mut fast_map: hashbrown::HashMap<String, usize, foldhash::fast::RandomState> = hashbrown::HashMap::default();
    for (i, k) in keys.iter().enumerate() {
        std_map.insert(k.clone(), i);
        fast_map.insert(k.clone(), i);
    }
    // Six lookups a request: the key cache, two budget entries, the metric
    // set and its series, the body-wait table (keys of 64 bytes).
    time("6 map lookups, std (SipHash)", n, || (0..6).filter_map(|i| keys.get(i * 9 % 64).and_then(|k| std_map.get(k))).sum::<usize>());
    time("6 map lookups, hashbrown + foldhash", n, || (0..6).filter_map(|i| keys.get(i * 9 % 64).and_then(|k| fast_map.get(k))).sum::<usize>());
}
