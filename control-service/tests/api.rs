//! The HTTP API on port 0, over real HTTP, with a real SQLite file.

use std::sync::Arc;

use serde_json::{json, Value};
use tollgate_control::api::{router, AppState, Settings};
use tollgate_control::sqlite::SqliteStore;
use tollgate_protocol::keys::hash_key;

const ADMIN: &str = "admin-token-0123456789";
const FILTER: &str = "filter-token-0123456789";

async fn start() -> (String, std::path::PathBuf) {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-api-{}", u64::from_le_bytes(raw)));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("t.db")).unwrap());
    let st = AppState::new(
        store,
        Settings { admin_token_hash: hash_key(ADMIN), filter_token_hash: hash_key(FILTER), webhook_url: None, node_ttl_ms: 60_000, use_log_keep_ms: 600_000, state_page: 5000, filter_wasm: None },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(st)).await.unwrap() });
    (format!("http://{addr}"), dir)
}

fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>, etag: Option<&str>) -> (u16, Value, Option<String>) {
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut req = match method {
        "GET" => agent.get(url).force_send_body(),
        "POST" => agent.post(url),
        "PUT" => agent.put(url),
        _ => agent.delete(url).force_send_body(),
    };
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    let mut resp = match body {
        Some(b) => req.send_json(b).unwrap(),
        None => req.send_empty().unwrap(),
    };
    let status = resp.status().as_u16();
    let tag = resp.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), tag)
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_validation_state_and_etag() {
    let (base, _dir) = start().await;
    let b = base.clone();
    tokio::task::spawn_blocking(move || {
        let base = b;
        // tokens
        assert_eq!(call("GET", &format!("{base}/v1/keys"), None, None, None).0, 401);
        assert_eq!(call("GET", &format!("{base}/v1/keys"), Some("wrong-token-0000000"), None, None).0, 401);
        let (s, v, _) = call("POST", &format!("{base}/v1/keys"), Some(FILTER), Some(json!({"team": "t", "project": "p"})), None);
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("admin_only")));
        // create a key: the secret once, only its hash stored
        let (s, key, _) = call("POST", &format!("{base}/v1/keys"), Some(ADMIN), Some(json!({"team": "t", "project": "p", "id": "k1"})), None);
        assert_eq!(s, 201);
        let secret = key["key"].as_str().unwrap().to_string();
        assert_eq!(key["key_hash"].as_str().unwrap(), hash_key(&secret));
        let (_, list, _) = call("GET", &format!("{base}/v1/keys"), Some(ADMIN), None, None);
        assert!(!list.to_string().contains(&secret));
        assert_eq!(call("POST", &format!("{base}/v1/keys"), Some(ADMIN), Some(json!({"team": "t", "project": "p", "id": "k1"})), None).0, 409);
        assert_eq!(call("POST", &format!("{base}/v1/keys"), Some(ADMIN), Some(json!({"team": "bad team", "project": "p"})), None).0, 400);
        // budgets: validation
        let put = |body: Value| call("PUT", &format!("{base}/v1/budgets/team/t"), Some(ADMIN), Some(body), None);
        let put_scope = |t: &str| call("PUT", &format!("{base}/v1/budgets/team/{t}"), Some(ADMIN), Some(json!({"limit_micros": 1000, "period": "daily"})), None);
        assert_eq!(put(json!({"period": "monthly"})).1["error"]["code"], "missing_limit");
        assert_eq!(put(json!({"limit_micros": 5, "period": "yearly"})).1["error"]["code"], "invalid_period");
        assert_eq!(put(json!({"limit_micros": 5, "period": "daily", "timezone": "Mars/Base"})).1["error"]["code"], "invalid_timezone");
        assert_eq!(put(json!({"limit_micros": 5, "period": "fixed"})).1["error"]["code"], "invalid_window");
        assert_eq!(put(json!({"limit_micros": 5, "period": "daily", "soft_pct": "x"})).0, 400);
        // The warning may not come after the stop, the default warning included; null turns it off.
        for (body, says) in [
            (json!({"limit_micros": 5, "period": "daily", "soft_pct": 120}), "'soft_pct' (120) must not exceed 'hard_pct' (100)"),
            (json!({"limit_micros": 5, "period": "daily", "hard_pct": 50}), "'soft_pct' (80, the default) must not exceed 'hard_pct' (50)"),
        ] {
            let (s, e, _) = put(body);
            assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_field")));
            assert!(e["error"]["message"].as_str().unwrap().starts_with(says), "{e}");
        }
        assert_eq!(put(json!({"limit_micros": 5, "period": "daily", "hard_pct": 50, "soft_pct": null})).0, 200);
        assert_eq!(put(json!({"limit_micros": 5, "period": "daily", "soft_pct": 150, "hard_pct": null})).0, 200);
        assert_eq!(put(json!({"limit_micros": 5, "period": "daily", "soft_pct": 120, "hard_pct": 120})).0, 200);
        // A limit the ledger cannot store as sent is refused, naming the field.
        let (s, e, _) = put(json!({"limit_micros": 5, "limit_tokens": u64::MAX, "period": "daily"}));
        assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_field")));
        assert!(e["error"]["message"].as_str().unwrap().contains("limit_tokens"), "{e}");
        let (s, b, _) = put(json!({"limit_micros": i64::MAX, "period": "daily"}));
        assert_eq!((s, b["limit_micros"].as_u64()), (200, Some(i64::MAX as u64)));
        let (_, got, _) = call("GET", &format!("{base}/v1/budgets/team/t"), Some(ADMIN), None, None);
        assert_eq!(got["limit_micros"].as_u64(), Some(i64::MAX as u64), "stored as sent: {got}");
        let (s, b, _) = put(json!({"limit_micros": 1000, "period": "daily", "soft_pct": null}));
        assert_eq!(s, 200);
        assert!(b["soft_pct"].is_null() && b["hard_pct"] == 100);
        // state for the filters, with an ETag
        let url = format!("{base}/v1/state?node=envoy-a");
        let (s, st, tag) = call("GET", &url, Some(FILTER), None, None);
        assert_eq!(s, 200);
        assert!(st.get("keys").is_none(), "keys travel as changes, not in the state");
        assert_eq!(st["keys_seq"], 1);
        let (_, page, _) = call("GET", &format!("{base}/v1/key-changes?since=0"), Some(FILTER), None, None);
        assert_eq!((page["seq"].as_u64(), page["changes"][0]["op"].as_str()), (Some(1), Some("put")));
        assert_eq!(page["changes"][0]["key"]["id"], "k1");
        // All of it but the sixteenth kept free for Envoys joining.
        assert_eq!(st["budgets"][0]["share_micros"], 938);
        let (s, _, _) = call("GET", &url, Some(FILTER), None, tag.as_deref());
        assert_eq!(s, 304, "unchanged state costs nothing");
        // With its cursor: only what changed (nothing), and a 304 the next time.
        assert_eq!(st["budgets_full"], true);
        let since = format!("{url}&cursor={}", st["budgets_cursor"].as_str().unwrap());
        let (s, delta, dtag) = call("GET", &since, Some(FILTER), None, None);
        assert_eq!((s, &delta["budgets_full"], delta["budgets"].as_array().map(Vec::len)), (200, &json!(false), Some(0)));
        assert_eq!(call("GET", &since, Some(FILTER), None, dtag.as_deref()).0, 304);
        // Cursors and page sizes it did not write: the full state, never an error or a panic.
        let long = "b2.".to_string() + &"9".repeat(60_000);
        for q in ["cursor=%00%01", "cursor=b2.99999999999999999999999.0.0.0.0", "cursor=p2.0.0.1.99999999999999.0.key.zz", "cursor=b1.0.0.1.99999999999999", "limit=0", "limit=99999999999"] {
            let (s, full, _) = call("GET", &format!("{url}&{q}"), Some(FILTER), None, None);
            assert_eq!((s, &full["budgets_full"], full["budgets"].as_array().map(Vec::len)), (200, &json!(true), Some(1)), "{q}");
        }
        let (s, _, _) = call("GET", &format!("{url}&cursor={long}"), Some(FILTER), None, None);
        assert!(s == 200 || s == 414 || s == 431, "{s}");
        assert_eq!(call("GET", &format!("{url}&limit=abc"), Some(FILTER), None, None).0, 400);
        // Bytes that are no text are refused, as in every query (before: read as U+FFFD).
        assert_eq!(call("GET", &format!("{url}&cursor=%00%ff%fe"), Some(FILTER), None, None).0, 400);
        // Pages only for an Envoy that sends a cursor (even empty): one from
        // before pages sends none and gets every budget at once.
        for t in ["u", "v"] {
            assert_eq!(put_scope(t).0, 200);
        }
        let (_, all, _) = call("GET", &format!("{url}&limit=1"), Some(FILTER), None, None);
        assert_eq!((all["budgets"].as_array().map(Vec::len), all.get("budgets_more")), (Some(3), None));
        let (_, first, _) = call("GET", &format!("{url}&cursor=&limit=1"), Some(FILTER), None, None);
        assert_eq!((first["budgets"].as_array().map(Vec::len), &first["budgets_more"]), (Some(1), &json!(true)));
        // The fleet view (no node) is one page too, whoever asks: never every budget at once.
        let (s, fleet, _) = call("GET", &format!("{base}/v1/state?limit=2"), Some(FILTER), None, None);
        assert_eq!((s, fleet["budgets"].as_array().map(Vec::len), &fleet["budgets_more"]), (200, Some(2), &json!(true)));
        assert!(fleet["budgets"].as_array().unwrap().iter().all(|b| b["share_micros"].is_null()), "no shares in the fleet view");
        let (_, fleet, _) = call("GET", &format!("{base}/v1/state"), Some(ADMIN), None, None);
        assert_eq!((fleet["budgets"].as_array().map(Vec::len), fleet.get("budgets_more")), (Some(3), None));
        for t in ["u", "v"] {
            assert_eq!(call("DELETE", &format!("{base}/v1/budgets/team/{t}"), Some(ADMIN), None, None).0, 204);
        }
        // a second Envoy: at once, half of what envoy-a left free; then
        // envoy-a shrinks to its part of two
        let (_, st_b, _) = call("GET", &format!("{base}/v1/state?node=envoy-b"), Some(FILTER), None, None);
        assert_eq!(st_b["budgets"][0]["share_micros"], 31);
        let (_, st, tag2) = call("GET", &url, Some(FILTER), None, tag.as_deref());
        assert_eq!(st["budgets"][0]["share_micros"], 469);
        assert_ne!(tag, tag2);
        // the budget view shows what the Envoys hold: envoy-a 469, envoy-b 31 (it polled
        // while envoy-a still held its part of one; it gets its part at its next poll)
        let (_, b, _) = call("GET", &format!("{base}/v1/budgets/team/t"), Some(ADMIN), None, None);
        assert_eq!((b["reserved_micros"].as_u64(), b["used_micros"].as_u64()), (Some(500), Some(0)));
        let (_, st_b, _) = call("GET", &format!("{base}/v1/state?node=envoy-b"), Some(FILTER), None, None);
        assert_eq!(st_b["budgets"][0]["share_micros"], 469);
        let (_, b, _) = call("GET", &format!("{base}/v1/budgets/team/t"), Some(ADMIN), None, None);
        assert_eq!(b["reserved_micros"].as_u64(), Some(938));
        // revoke: a newer key sequence, and a deletion in the changes
        assert_eq!(call("POST", &format!("{base}/v1/keys/k1/revoke"), Some(ADMIN), None, None).0, 200);
        let (_, st, _) = call("GET", &url, Some(FILTER), None, None);
        assert_eq!(st["keys_seq"], 2);
        let (_, page, _) = call("GET", &format!("{base}/v1/key-changes?since=1"), Some(FILTER), None, None);
        assert_eq!(page["changes"][0]["op"], "del");
        assert_eq!(call("POST", &format!("{base}/v1/keys/nope/revoke"), Some(ADMIN), None, None).0, 404);
        // ingest refuses a bad record on its own (listed, not stored), and a body that is no batch with 400
        let (s, ack, _) = call("POST", &format!("{base}/v1/usage"), Some(FILTER), Some(json!({"node": "n", "records": [{"id": 1}]})), None);
        assert_eq!((s, ack["accepted"].as_u64(), ack["rejected"][0]["index"].as_u64()), (200, Some(0), Some(0)));
        let (s, e, _) = call("POST", &format!("{base}/v1/usage"), Some(FILTER), Some(json!({"records": "nope"})), None);
        assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_json")));
        // One rule for an Envoy's name on both of its endpoints: a name the
        // ingest refuses is refused by the state poll too, never read as an
        // admin's (before, a 200-character name of 3-byte characters was
        // stored with its usage but polled as the fleet view, with no shares).
        let long_multibyte = "\u{4e16}".repeat(200);
        let (s, st, _) = call("GET", &format!("{base}/v1/state?node={long_multibyte}"), Some(FILTER), None, None);
        assert_eq!((s, st["budgets"][0]["share_micros"].is_u64()), (200, true), "{st}");
        let usage = |node: &str| call("POST", &format!("{base}/v1/usage"), Some(FILTER), Some(json!({"node": node, "records": []})), None).0;
        assert_eq!(usage(&long_multibyte), 200);
        for bad in ["%0d%0aset-cookie:%20x", "a%00b", &"n".repeat(257)] {
            let (s, e, _) = call("GET", &format!("{base}/v1/state?node={bad}"), Some(FILTER), None, None);
            assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_field")), "{bad}");
            assert!(e["error"]["message"].as_str().is_some_and(|m| m.starts_with("node: ")), "{bad}: {e}");
        }
        for bad in ["a\r\nb", "a\0b", &"n".repeat(257)] {
            assert_eq!(usage(bad), 400, "{bad:?}");
            // The same code as the state poll's (it was `invalid_json` for valid JSON).
            let (_, e, _) = call("POST", &format!("{base}/v1/usage"), Some(FILTER), Some(json!({"node": bad, "records": []})), None);
            assert_eq!((e["error"]["code"].as_str(), e["error"]["message"].as_str().map(|m| m.starts_with("node: "))), (Some("invalid_field"), Some(true)), "{bad:?}");
        }
        let (_, h, _) = call("GET", &format!("{base}/healthz"), None, None, None);
        assert_eq!(h["status"], "ok");
    })
    .await
    .unwrap();
}

/// A query or path the service cannot read is refused with the API's JSON
/// error, never read lossily: axum's own extractors answered plain text,
/// and decoded `%FF` as U+FFFD, so `node=%FF` polled as an Envoy named
/// "\u{FFFD}" (200) and every such name was the same Envoy.
#[tokio::test(flavor = "multi_thread")]
async fn queries_paths_and_endpoints_that_cannot_be_read_are_refused_as_json() {
    let (base, _dir) = start().await;
    tokio::task::spawn_blocking(move || {
        let refused = |token: &str, path: &str, code: &str, says: &str| {
            let (s, e, _) = call("GET", &format!("{base}{path}"), Some(token), None, None);
            let m = e["error"]["message"].as_str().unwrap_or_default().to_string();
            assert_eq!((s, e["error"]["code"].as_str()), (400, Some(code)), "{path}: {e}");
            assert!(m.contains(says) && m.chars().count() <= 201, "{path}: {m}");
        };
        refused(FILTER, "/v1/state?node=%FF", "invalid_query", "parameter \"node\" is not UTF-8");
        refused(FILTER, "/v1/state?node=envoy-a&cursor=%C3%28", "invalid_query", "\"cursor\"");
        refused(FILTER, "/v1/state?n%FFde=x", "invalid_query", "is not UTF-8");
        refused(ADMIN, "/v1/spend?scope_type=team&scope_id=%ED%A0%80", "invalid_query", "\"scope_id\"");
        refused(ADMIN, "/v1/keys?limit=abc", "invalid_query", "limit: invalid digit");
        refused(ADMIN, &format!("/v1/keys?limit={}", "9".repeat(5000)), "invalid_query", "limit: number too large");
        refused(ADMIN, "/v1/keys/%FF", "invalid_path", "Invalid UTF-8 in `id`");
        refused(ADMIN, "/v1/budgets/team/%FF%FE", "invalid_path", "`scope_id`");
        refused(ADMIN, &format!("/v1/evals/{}", "x".repeat(5000)), "invalid_path", "Cannot parse");
        // Percent-encoded UTF-8 and bytes that encode nothing stay readable.
        let (s, st, _) = call("GET", &format!("{base}/v1/state?node=%E4%B8%96%E7%95%8C"), Some(FILTER), None, None);
        assert_eq!((s, st["nodes_active"].as_u64()), (200, Some(1)), "{st}");
        assert_eq!(call("GET", &format!("{base}/v1/keys?x=%ZZ&limit=1"), Some(ADMIN), None, None).0, 200);
        assert_eq!(call("GET", &format!("{base}/v1/keys?after=a+b%20c"), Some(ADMIN), None, None).0, 200);
        // What axum answers itself (404 and 405 empty, 413 plain text) comes
        // in the same shape, so a client reads `error.code` whatever failed.
        let (s, e, _) = call("GET", &format!("{base}/v1/nope"), Some(ADMIN), None, None);
        assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")), "{e}");
        let (s, e, _) = call("DELETE", &format!("{base}/v1/keys"), Some(ADMIN), None, None);
        assert_eq!((s, e["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{e}");
        assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("DELETE")), "{e}");
        // A body over the endpoint's 2 MiB (sent raw: a client library may
        // fail on the refusal before it has written all of it).
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
        let size = (2 << 20) + 1024;
        let head = format!("POST /v1/keys HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n");
        conn.write_all(head.as_bytes()).unwrap();
        let _ = conn.write_all(&vec![b' '; size]);
        // Read until the answer's JSON is whole (the server may keep the connection for the body).
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let (mut answer, mut buf, mut e) = (String::new(), [0u8; 4096], Value::Null);
        while let Ok(n @ 1..) = conn.read(&mut buf) {
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            e = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap_or(Value::Null);
            if !e.is_null() {
                break;
            }
        }
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert_eq!(e["error"]["code"], "too_large", "{answer}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guardrail_policy_is_validated_versioned_and_named_by_the_state() {
    let (base, _dir) = start().await;
    tokio::task::spawn_blocking(move || {
        let url = format!("{base}/v1/state?node=envoy-a");
        let (_, st, tag) = call("GET", &url, Some(FILTER), None, None);
        assert_eq!(st["guardrails_seq"], 0, "never set");
        let policy = json!({"version": "v3", "actions": {"email": "redact"}, "responses": "observe", "keys": {"k1": {"card": "observe"}}});
        assert_eq!(call("PUT", &format!("{base}/v1/guardrails"), Some(FILTER), Some(policy.clone()), None).0, 403, "the fleet token cannot set it");
        let (s, doc, _) = call("PUT", &format!("{base}/v1/guardrails"), Some(ADMIN), Some(policy.clone()), None);
        assert_eq!((s, doc["seq"].as_u64()), (200, Some(1)));
        let (s, _, tag2) = call("GET", &url, Some(FILTER), None, tag.as_deref());
        assert_eq!(s, 200, "a new policy changes the state's tag");
        assert_ne!(tag, tag2);
        let (_, st, _) = call("GET", &url, Some(FILTER), None, None);
        assert_eq!(st["guardrails_seq"], 1);
        let (s, cur, _) = call("GET", &format!("{base}/v1/guardrails/current"), Some(FILTER), None, None);
        assert_eq!((s, &cur["policy"]["keys"]["k1"]["card"]), (200, &json!("observe")));
        // refused, with the field named; nothing changes
        for (bad, field) in [
            (json!({"custom": [{"name": "x", "pattern": "(a"}]}), "custom[0].pattern"),
            (json!({"projects": {"p": {"passport": "block"}}}), "projects.p"),
            (json!({"responses": "sometimes"}), "responses"),
        ] {
            let (s, e, _) = call("PUT", &format!("{base}/v1/guardrails"), Some(ADMIN), Some(bad), None);
            assert_eq!(s, 400);
            assert!(e["error"]["message"].as_str().unwrap().contains(field), "{e}");
        }
        let (_, cur, _) = call("GET", &format!("{base}/v1/guardrails"), Some(ADMIN), None, None);
        let mut stored = policy.clone();
        stored["restore"] = json!(false);
        assert_eq!((cur["seq"].as_u64(), &cur["policy"]), (Some(1), &stored), "as put (with the defaults named)");
        let (s, cleared, _) = call("DELETE", &format!("{base}/v1/guardrails"), Some(ADMIN), None, None);
        assert_eq!((s, cleared["seq"].as_u64(), cleared["policy"].is_null()), (200, Some(2), true));
        let (_, st, _) = call("GET", &url, Some(FILTER), None, None);
        assert_eq!(st["guardrails_seq"], 2);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_findings_older_than_the_retention_go_on_schedule() {
    use tollgate_control::store::{AuditQuery, Store};
    let dir = std::env::temp_dir().join(format!("tollgate-retention-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("t.db")).unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let rec = |id: &str, age_days: u64| {
        let mut r: tollgate_protocol::record::UsageRecord = serde_json::from_value(json!({
            "v": 1, "id": id, "ts_ms": now - age_days * 86_400_000, "key_id": "k", "key_hash": "0".repeat(64), "team": "t", "project": "p", "tags": {},
            "api": "openai_chat", "route": "r", "model_requested": "m", "stream": false, "status": 200, "outcome": "ok",
            "usage": {"input_tokens": 1, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 1, "reasoning_tokens": 0}, "usage_source": "provider", "cost_micros": 1, "priced": true, "latency_ms": 1}))
        .unwrap();
        r.guardrails = Some(tollgate_protocol::record::Guardrails {
            classes: [("card".to_string(), 1)].into(),
            action: "blocked".into(),
            policy: "p".into(),
            response_classes: Default::default(),
            response_action: None,
            restored: 0,
        });
        r
    };
    store.ingest("n", &[rec("old", 40), rec("new", 1)], None, now).unwrap();
    let st = AppState::new(
        store.clone(),
        Settings { admin_token_hash: hash_key(ADMIN), filter_token_hash: hash_key(FILTER), webhook_url: None, node_ttl_ms: 60_000, use_log_keep_ms: 600_000, state_page: 5000, filter_wasm: None },
    );
    let sweep = tokio::spawn(tollgate_control::api::audit_retention_loop(st, 30, 0));
    let all = AuditQuery { from_ms: 0, to_ms: now + 1, ..Default::default() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ids: Vec<String> = store.audit_findings(&all, 10).unwrap().into_iter().map(|f| f.record_id).collect();
        if ids == ["new"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sweep did not run: {ids:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    sweep.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn budgets_in_bulk_and_metrics_that_stay_small_with_many_key_budgets() {
    let (base, _dir) = start().await;
    let b = base.clone();
    tokio::task::spawn_blocking(move || {
        let base = b;
        let url = format!("{base}/v1/budget-imports");
        let mut rows: Vec<Value> = (0..1001).map(|i| json!({"scope_type": "key", "scope_id": format!("k{i}"), "limit_micros": 5, "period": "monthly"})).collect();
        rows.push(json!({"scope_type": "team", "scope_id": "t", "limit_micros": 9, "period": "daily", "soft_pct": null}));
        // all or none: one bad row refuses the batch and names it
        let mut bad = rows.clone();
        bad[7]["period"] = json!("yearly");
        let (s, e, _) = call("POST", &url, Some(ADMIN), Some(json!({"budgets": bad})), None);
        assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_period")));
        assert!(e["error"]["message"].as_str().unwrap().starts_with("budgets[7]: "), "{e}");
        let mut dup = rows.clone();
        dup[9]["scope_id"] = json!("k0");
        assert_eq!(call("POST", &url, Some(ADMIN), Some(json!({"budgets": dup})), None).1["error"]["code"], "duplicate_scope");
        let mut unknown = rows.clone();
        unknown[3]["limit_usd"] = json!(5);
        assert_eq!(call("POST", &url, Some(ADMIN), Some(json!({"budgets": unknown})), None).0, 400);
        assert_eq!(call("POST", &url, Some(FILTER), Some(json!({"budgets": rows.clone()})), None).0, 403);
        // A member twice (the second would win in a map) refuses the batch, as it does PUT.
        let twice = r#"{"budgets": [{"scope_type": "key", "scope_id": "k0", "limit_micros": 5, "period": "monthly", "limit_micros": 5000000000}]}"#;
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let mut r = agent.post(&url).header("authorization", &format!("Bearer {ADMIN}")).header("content-type", "application/json").send(twice.as_bytes()).unwrap();
        let e: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!((r.status().as_u16(), e["error"]["code"].as_str()), (400, Some("duplicate_key")));
        let put_twice = r#"{"limit_micros": 5, "period": "monthly", "limit_micros": 7}"#;
        let r = agent.put(&format!("{base}/v1/budgets/key/k0")).header("authorization", &format!("Bearer {ADMIN}")).header("content-type", "application/json").send(put_twice.as_bytes()).unwrap();
        assert_eq!(r.status().as_u16(), 400, "PUT refuses it too");
        assert_eq!(call("POST", &url, Some(ADMIN), Some(json!({"budgets": []})), None).0, 400);
        assert_eq!(call("GET", &format!("{base}/v1/budgets/key/k0"), Some(ADMIN), None, None).0, 404, "nothing of a refused batch is set");
        let (s, v, _) = call("POST", &url, Some(ADMIN), Some(json!({"budgets": rows})), None);
        assert_eq!((s, v["set"].as_u64()), (201, Some(1002)));
        let (_, t, _) = call("GET", &format!("{base}/v1/budgets/team/t"), Some(ADMIN), None, None);
        assert_eq!((t["limit_micros"].as_u64(), t["soft_pct"].is_null()), (Some(9), true));
        // Listed a page at a time; one read by scope.
        let (_, page, _) = call("GET", &format!("{base}/v1/budgets?limit=2"), Some(ADMIN), None, None);
        assert_eq!((page["budgets"].as_array().map(Vec::len), page["total"].as_u64(), page["next"].as_str()), (Some(2), Some(1002), Some("key:k1")));
        let (_, page, _) = call("GET", &format!("{base}/v1/budgets?limit=2&after=key:k1"), Some(ADMIN), None, None);
        assert_eq!(page["budgets"][0]["scope_id"], "k10");
        let (_, last, _) = call("GET", &format!("{base}/v1/budgets?limit=5&after=key:k999"), Some(ADMIN), None, None);
        assert_eq!((last["budgets"].as_array().map(Vec::len), last["next"].is_null()), (Some(1), true), "the team's, and no next");
        assert_eq!(call("GET", &format!("{base}/v1/budgets?after=nonsense"), Some(ADMIN), None, None).0, 400);
        assert_eq!(call("GET", &format!("{base}/v1/budgets/key/k500"), Some(ADMIN), None, None).1["limit_micros"], 5);
        // 1,001 key budgets: counted, but no series each; the team's stay.
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let text = agent.get(&format!("{base}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
        assert!(text.contains("tollgate_control_budgets{scope_type=\"key\"} 1001"), "{text}");
        assert!(text.contains("tollgate_budget_limit_micros{scope_type=\"team\",scope_id=\"t\"} 9"));
        assert!(!text.contains("scope_type=\"key\",scope_id="));
        assert!(text.contains("tollgate_control_state_full_total 0\n"), "{text}");
        // An Envoy's first poll begins its full state, counted; a delta is not.
        let state = |cursor: &str| call("GET", &format!("{base}/v1/state?node=n1&cursor={cursor}"), Some(FILTER), None, None).1;
        let first = state("");
        assert_eq!((first["budgets_full"].as_bool(), first["budgets_more"].as_bool().unwrap_or(false)), (Some(true), false), "{first}");
        let delta = state(first["budgets_cursor"].as_str().unwrap());
        assert_eq!(delta["budgets_full"].as_bool(), Some(false), "{delta}");
        let text = agent.get(&format!("{base}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
        assert!(text.contains("tollgate_control_state_full_total 1\n"), "{text}");
        assert!(text.contains("tollgate_control_state_slow_total 0\n"), "{text}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_listed_a_page_at_a_time() {
    let (base, _dir) = start().await;
    tokio::task::spawn_blocking(move || {
        let url = format!("{base}/v1/keys");
        for i in 0..5 {
            let (s, _, _) = call("POST", &url, Some(ADMIN), Some(json!({"team": "t", "project": "p", "id": format!("pk{i}")})), None);
            assert_eq!(s, 201);
        }
        let ids = |v: &Value| v["keys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        let (_, all, _) = call("GET", &url, Some(ADMIN), None, None);
        assert_eq!((ids(&all).len(), all["total"].as_u64(), all["next"].is_null()), (5, Some(5), true), "no limit: every key, as before");
        // Walk the pages by `next`: every key once, in the order they were made.
        let (mut seen, mut after) = (Vec::new(), String::new());
        loop {
            let (s, page, _) = call("GET", &format!("{url}?limit=2&after={after}"), Some(ADMIN), None, None);
            assert_eq!((s, page["total"].as_u64()), (200, Some(5)));
            assert!(ids(&page).len() <= 2);
            seen.extend(ids(&page));
            match page["next"].as_str() {
                Some(n) => after = n.to_string(),
                None => break,
            }
        }
        assert_eq!(seen, ids(&all));
        assert!(all["keys"].as_array().unwrap().iter().all(|k| k.get("key").is_none()), "never the key itself (its hash only)");
        // Hostile pages: an id that is no key, bytes that are no text, a limit of 0 or of no number.
        assert_eq!(ids(&call("GET", &format!("{url}?limit=2&after=%00%01"), Some(ADMIN), None, None).1), Vec::<String>::new());
        assert_eq!(call("GET", &format!("{url}?limit=2&after=%00%ff%fe"), Some(ADMIN), None, None).0, 400);
        assert_eq!(ids(&call("GET", &format!("{url}?limit=0"), Some(ADMIN), None, None).1).len(), 1);
        assert_eq!(call("GET", &format!("{url}?limit=abc"), Some(ADMIN), None, None).0, 400);
        assert_eq!(call("GET", &format!("{url}?limit=2"), Some(FILTER), None, None).0, 403, "the filter's token lists no keys");
    })
    .await
    .unwrap();
}
