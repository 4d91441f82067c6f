//! `make bench` part: control-service ingest throughput on the SQLite store,
//! directly through the store and over HTTP (POST /v1/usage, batches of 500,
//! four senders), with three budgets matching every record (and
//! `BENCH_BUDGETS` more that match none); and the same
//! over HTTP on PostgreSQL when `BENCH_PG` names a database (make bench
//! starts one). Prints records/s. `BENCH_PG_ONLY=1` skips both SQLite
//! runs (printed as 0), to measure PostgreSQL alone on a busy machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tollgate_control::api::{router, AppState, Settings};
use tollgate_control::postgres::PgStore;
use tollgate_control::sqlite::SqliteStore;
use tollgate_control::store::{Budget, Store};
use tollgate_protocol::keys::hash_key;
use tollgate_protocol::record::{Outcome, UsageRecord, UsageSource};
use tollgate_protocol::Api;
use tollgate_protocol::state::ScopeType;
use tollgate_protocol::usage::Usage;

fn record(i: u64, now: u64) -> UsageRecord {
    UsageRecord {
        v: 1,
        id: format!("bench-{i:012}"),
        client_request_id: None,
        session_id: None,
        ts_ms: now,
        key_id: format!("key-{}", i % keys()),
        key_hash: "0".repeat(64),
        team: format!("team-{}", i % 10),
        project: format!("project-{}", i % 20),
        feature: Some("summarise".into()),
        prompt_version: Some("v3".into()),
        user: None,
        tags: BTreeMap::new(),
        api: Api::OpenAiChat,
        provider: Some("openai".into()),
        route: Some("openai/gpt-5.4".into()),
        model_requested: Some("openai/gpt-5.4".into()),
        model_upstream: Some("gpt-5.4".into()),
        model_served: Some("gpt-5.4".into()),
        stream: i.is_multiple_of(3),
        status: 200,
        outcome: Outcome::Ok,
        error_code: None,
        usage: Usage { input_tokens: 900, cached_input_tokens: 300, output_tokens: 120, ..Default::default() },
        usage_source: UsageSource::Provider,
        cost_micros: 4000,
        cache_savings_micros: 0,
        priced: true,
        latency_ms: 800,
        ttfb_ms: Some(200),
        budget_scopes: vec![],
        budget_decision: tollgate_protocol::record::BudgetDecision::Ok,
        guardrails: None,
        cache_miss: None,
        json_check: None,
        attempts: Vec::new(),
        routed_by: None,
        service_tier: None,
        inference_geo: None,
        capture: None,
    }
}

/// With `BENCH_FINDINGS=1`, what a fleet with the cache-miss detector,
/// guardrails and JSON checks on sends: a third of the records explain a
/// cache miss, a tenth carry two guardrail findings (an email address and
/// a phone number in the request), a tenth a JSON check.
fn with_findings(mut r: UsageRecord, i: u64) -> UsageRecord {
    use tollgate_protocol::record::{CacheMiss, Guardrails, JsonCheck};
    if i.is_multiple_of(3) {
        r.cache_miss = Some(CacheMiss { reason: "prefix_changed".into(), segment: Some("system".into()), offset: Some(1200), lost_micros: 310 });
    }
    if i.is_multiple_of(10) {
        let classes = [("email".to_string(), 1), ("phone".to_string(), 2)].into_iter().collect();
        r.guardrails = Some(Guardrails { classes, action: "observed".into(), policy: "p1".into(), response_classes: Default::default(), response_action: None, restored: 0 });
    }
    if i % 10 == 5 {
        r.json_check = Some(JsonCheck { valid: true, repaired: false, error: None });
    }
    r
}

/// Keys the records come from (`BENCH_KEYS`, default 50); with
/// `BENCH_KEY_BUDGETS=1` each has a budget of its own, as a fleet with
/// per-key budgets has (a batch then touches hundreds of budgets).
fn keys() -> u64 {
    // Read once: every record asks.
    static KEYS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *KEYS.get_or_init(|| std::env::var("BENCH_KEYS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(50))
}

fn key_budgets() -> bool {
    std::env::var("BENCH_KEY_BUDGETS").is_ok_and(|v| v == "1")
}

/// Budgets besides the three that match: per-key budgets of keys that send
/// nothing here (`BENCH_BUDGETS`, default 0), as a fleet with many keys has.
fn idle_budgets() -> usize {
    std::env::var("BENCH_BUDGETS").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn budgets(s: &dyn Store, now: u64) {
    let idle: Vec<String> = (0..idle_budgets()).map(|i| format!("idle-key-{i}")).collect();
    let matching = [(ScopeType::Team, "team-1"), (ScopeType::Project, "project-1"), (ScopeType::Key, "key-1")];
    let per_key: Vec<String> = if key_budgets() { (0..keys()).map(|i| format!("key-{i}")).collect() } else { Vec::new() };
    let all: Vec<Budget> = matching
        .into_iter()
        .chain(idle.iter().chain(&per_key).map(|k| (ScopeType::Key, k.as_str())))
        .map(|(t, id)| Budget { limit_micros: Some(u64::MAX / 4), ..Budget::monthly(t, id, now) })
        .collect();
    s.put_budgets(&all, now).unwrap_or_else(|e| panic!("{e}"));
}

fn main() {
    let n: u64 = std::env::var("BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let batch: u64 = std::env::var("BENCH_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let dir = std::env::temp_dir().join(format!("tollgate-ingest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let now = tollgate_control::now_ms();

    // 1. Directly through the store.
    let store = SqliteStore::open(&dir.join("direct.db")).unwrap_or_else(|e| panic!("{e}"));
    budgets(&store, now);
    let findings = std::env::var("BENCH_FINDINGS").is_ok_and(|v| v == "1");
    let recs: Vec<UsageRecord> = (0..n).map(|i| if findings { with_findings(record(i, now), i) } else { record(i, now) }).collect();
    let pg_only = std::env::var("BENCH_PG_ONLY").is_ok_and(|v| v == "1");
    let direct = if pg_only {
        0.0
    } else {
        let t = Instant::now();
        for chunk in recs.chunks(batch as usize) {
            store.ingest("bench", chunk, None, now).unwrap_or_else(|e| panic!("{e}"));
        }
        n as f64 / t.elapsed().as_secs_f64()
    };

    // 2. Over HTTP, JSON batches, four senders (as four Envoys would be:
    // parsing overlaps with the serialised writes).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let bodies: Arc<Vec<String>> = Arc::new(
        recs.chunks(batch as usize).map(|c| serde_json::json!({"node": "bench", "records": c}).to_string()).collect(),
    );
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("http.db")).unwrap_or_else(|e| panic!("{e}")));
    let http = if pg_only { 0.0 } else { over_http(&rt, sqlite, &bodies, n, now) };
    let pg = std::env::var("BENCH_PG").ok().filter(|v| !v.is_empty()).map(|conninfo| {
        let store: Arc<dyn Store> = Arc::new(rt.block_on(PgStore::connect(&conninfo)).unwrap_or_else(|e| panic!("{e}")));
        over_http(&rt, store, &bodies, n, now)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let per_key = if key_budgets() { format!(", one on each of the {} keys", keys()) } else { String::new() };
    println!("control-service ingest, SQLite (synchronous=FULL, WAL), {n} records in batches of {batch}, {} budgets{per_key}:", 3 + idle_budgets());
    println!("  store direct           : {direct:>10.0} records/s");
    let verdict = |v: f64| if v >= 50_000.0 { "met" } else { "NOT met" };
    println!("  HTTP /v1/usage, {SENDERS} senders: {http:>10.0} records/s   (target >= 50000/s: {})", verdict(http));
    match pg {
        Some(pg) => println!(
            "control-service ingest, PostgreSQL (local server, fsync off), same batches:\n  HTTP /v1/usage, {SENDERS} senders: {pg:>10.0} records/s   (target >= 50000/s: {})",
            verdict(pg)
        ),
        None => println!("(PostgreSQL not measured: set BENCH_PG to a connection string)"),
    }
}

const SENDERS: usize = 4;

/// Records/s through `POST /v1/usage` on a control service over `store`.
fn over_http(rt: &tokio::runtime::Runtime, store: Arc<dyn Store>, bodies: &Arc<Vec<String>>, records: u64, now: u64) -> f64 {
    budgets(store.as_ref(), now);
    let st = AppState::new(
        store,
        Settings { admin_token_hash: hash_key("a".repeat(20).as_str()), filter_token_hash: hash_key("f".repeat(20).as_str()), webhook_url: None, node_ttl_ms: 15_000, use_log_keep_ms: 600_000, state_page: 5000, filter_wasm: None },
    );
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    rt.spawn(async move { axum::serve(listener, router(st)).await });
    let auth = format!("Bearer {}", "f".repeat(20));
    let url = format!("http://{addr}/v1/usage");
    let t = Instant::now();
    let handles: Vec<_> = (0..SENDERS)
        .map(|k| {
            let (bodies, auth, url) = (bodies.clone(), auth.clone(), url.clone());
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                for b in bodies.iter().skip(k).step_by(SENDERS) {
                    let r = agent
                        .post(&url)
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .send(b.as_bytes())
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(r.status().as_u16(), 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap_or_else(|_| panic!("sender failed"));
    }
    records as f64 / t.elapsed().as_secs_f64()
}
