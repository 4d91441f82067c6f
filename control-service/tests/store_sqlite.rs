//! The SQLite store against a real database file.

use std::collections::BTreeMap;

use tollgate_control::sqlite::SqliteStore;
use tollgate_control::store::{Budget, KeyRow, SpendFilter, Store};
use tollgate_filter::record::{Outcome, UsageRecord, UsageSource};
use tollgate_filter::request::Api;
use tollgate_filter::state::ScopeType;
use tollgate_filter::usage::Usage;

const NOW: u64 = 1_795_885_000_000; // 2026-11-28

fn store() -> (SqliteStore, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    (SqliteStore::open(&dir.path.join("t.db")).unwrap(), dir)
}

mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Dir {
            let mut raw = [0u8; 8];
            getrandom::fill(&mut raw).unwrap();
            let path = std::env::temp_dir().join(format!("tollgate-test-{}", u64::from_le_bytes(raw)));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn rec(id: &str, team: &str, cost: u64, input: u64, output: u64) -> UsageRecord {
    UsageRecord {
        v: 1,
        id: id.into(),
        client_request_id: None,
        ts_ms: NOW,
        key_id: "k1".into(),
        key_hash: "h".into(),
        team: team.into(),
        project: "p".into(),
        feature: None,
        prompt_version: None,
        user: None,
        tags: BTreeMap::new(),
        api: Api::OpenAiChat,
        provider: Some("openai".into()),
        route: None,
        model_requested: None,
        model_upstream: Some("gpt-5.4".into()),
        model_served: None,
        stream: false,
        status: 200,
        outcome: Outcome::Ok,
        error_code: None,
        usage: Usage { input_tokens: input, output_tokens: output, ..Default::default() },
        usage_source: UsageSource::Provider,
        cost_micros: cost,
        priced: true,
        latency_ms: 1,
        ttfb_ms: None,
        budget_scopes: vec![],
        budget_decision: "off".into(),
    }
}

fn budget(team: &str, limit: u64) -> Budget {
    Budget { limit_micros: Some(limit), ..Budget::monthly(ScopeType::Team, team, NOW) }
}

#[test]
fn ingest_is_idempotent_by_record_id() {
    let (s, _d) = store();
    let a = s.ingest("n1", &[rec("r1", "t", 10, 1, 2), rec("r2", "t", 20, 3, 4)], None, NOW).unwrap();
    assert_eq!((a.accepted, a.duplicates), (2, 0));
    let b = s.ingest("n2", &[rec("r2", "t", 20, 3, 4), rec("r3", "t", 5, 0, 1)], None, NOW).unwrap();
    assert_eq!((b.accepted, b.duplicates), (1, 1));
    assert!(b.seq > a.seq);
    let t = s.spend(&SpendFilter::default()).unwrap();
    assert_eq!((t.requests, t.cost_micros, t.input_tokens, t.output_tokens), (3, 35, 4, 7));
}

#[test]
fn budgets_count_their_scope_and_period_and_recount_on_change() {
    let (s, _d) = store();
    s.ingest("n", &[rec("old", "t", 100, 0, 0)], None, NOW).unwrap();
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, 100, "existing usage is counted when a budget is set");
    s.ingest("n", &[rec("a", "t", 50, 1, 1), rec("b", "other", 70, 1, 1)], None, NOW).unwrap();
    let mut late = rec("late", "t", 999, 0, 0);
    late.ts_ms = start - 1; // last month
    s.ingest("n", &[late], None, NOW).unwrap();
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, 150);
}

#[test]
fn thresholds_raise_one_alert_each_per_period() {
    let (s, _d) = store();
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    s.ingest("n", &[rec("a", "t", 500, 0, 0)], None, NOW).unwrap();
    assert!(s.list_alerts(10).unwrap().is_empty());
    s.ingest("n", &[rec("b", "t", 300, 0, 0)], None, NOW).unwrap();
    s.ingest("n", &[rec("c", "t", 10, 0, 0)], None, NOW).unwrap();
    let alerts = s.list_alerts(10).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].threshold.as_str(), alerts[0].used_micros), ("soft", 800));
    // a refused request marks the hard stop even below 100 %
    let mut denied = rec("d", "t", 0, 0, 0);
    denied.budget_decision = "denied".into();
    denied.budget_scopes = vec!["team:t".into()];
    s.ingest("n", &[denied], None, NOW).unwrap();
    let alerts = s.list_alerts(10).unwrap();
    assert_eq!(alerts.iter().map(|a| a.threshold.as_str()).collect::<Vec<_>>(), vec!["hard", "soft"]);
    // delivery bookkeeping
    let due = s.due_alerts(NOW).unwrap();
    assert_eq!(due.len(), 2);
    s.alert_attempted(due[0].id, true, None, NOW, NOW).unwrap();
    s.alert_attempted(due[1].id, false, Some("503"), NOW + 1000, NOW).unwrap();
    assert_eq!(s.due_alerts(NOW).unwrap().len(), 0);
    assert_eq!(s.due_alerts(NOW + 1000).unwrap().len(), 1);
}

#[test]
fn keys_create_revoke_rotate() {
    let (s, _d) = store();
    let k = KeyRow {
        id: "k1".into(),
        key_hash: "a".repeat(64),
        team: "t".into(),
        project: "p".into(),
        models: Some(vec!["cheap".into()]),
        projects: vec![],
        tags: BTreeMap::new(),
        created_ms: NOW,
        revoked_ms: None,
    };
    s.create_key(&k).unwrap();
    assert!(matches!(s.create_key(&k), Err(tollgate_control::store::StoreError::Conflict(_))));
    s.set_key_hash("k1", &"b".repeat(64)).unwrap();
    assert_eq!(s.get_key("k1").unwrap().unwrap().key_hash, "b".repeat(64));
    s.revoke_key("k1", NOW + 1).unwrap();
    assert_eq!(s.get_key("k1").unwrap().unwrap().revoked_ms, Some(NOW + 1));
    assert!(s.set_key_hash("k1", &"c".repeat(64)).is_err(), "a revoked key cannot be rotated back to life");
    assert!(s.revoke_key("nope", NOW).is_err());
}

#[test]
fn data_survives_reopen() {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("t.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.ingest("n", &[rec("r1", "t", 10, 1, 1)], None, NOW).unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.spend(&SpendFilter::default()).unwrap().requests, 1);
    assert_eq!(s.ingest("n", &[rec("r1", "t", 10, 1, 1)], None, NOW).unwrap().duplicates, 1);
}

#[test]
fn reports_group_bucket_filter_and_monthly_markdown() {
    use tollgate_control::reports::{Bucket, Dim, ReportQuery};
    let (s, _d) = store();
    let day = 86_400_000u64;
    let mut recs = vec![];
    for i in 0..10u64 {
        let mut r = rec(&format!("a{i}"), if i % 2 == 0 { "search" } else { "labs" }, 100 + i, 1000, 10);
        r.model_upstream = Some(if i < 7 { "gpt-5.4".into() } else { "deepseek-v4".into() });
        r.usage.cached_input_tokens = 250;
        r.feature = Some("summarise".into());
        r.ts_ms = NOW - (i % 3) * day;
        if i == 9 {
            r.status = 429;
            r.outcome = Outcome::Rejected;
        }
        recs.push(r);
    }
    s.ingest("n", &recs, None, NOW).unwrap();
    let q = |group_by: Vec<Dim>| ReportQuery { group_by, from_ms: NOW - 5 * day, to_ms: NOW + 1, ..Default::default() };

    let by_team = s.report(&q(vec![Dim::Team])).unwrap();
    assert_eq!(by_team.len(), 2);
    assert_eq!(by_team[0].group, vec![Some("labs".to_string())]); // 101+103+105+107+109 > 100+102+...
    assert_eq!(by_team[0].cost_micros, 525);
    assert_eq!(by_team[0].rate_limited, 1);
    assert_eq!(by_team[0].cache_share_permille(), 250);

    let mut f = q(vec![Dim::Model]);
    f.filters = vec![(Dim::Team, "search".into())];
    let by_model = s.report(&f).unwrap();
    assert_eq!(by_model.iter().map(|r| r.requests).sum::<u64>(), 5);

    let mut b = q(vec![]);
    b.bucket = Some(Bucket::Day);
    let days = s.report(&b).unwrap();
    assert_eq!(days.len(), 3);
    assert!(days.windows(2).all(|w| w[0].bucket_start_ms < w[1].bucket_start_ms));
    assert_eq!(days.iter().map(|r| r.requests).sum::<u64>(), 10);

    let mut t = q(vec![Dim::Model]);
    t.top = Some(1);
    assert_eq!(s.report(&t).unwrap().len(), 1);

    let month = tollgate_control::monthly::current_month(NOW);
    let (from, to, prev) = tollgate_control::monthly::month_bounds(&month).unwrap();
    let md = tollgate_control::monthly::render(&s, &month, from, to, prev).unwrap();
    assert!(md.starts_with(&format!("# AI spend review — {month}")), "{md}");
    assert!(md.contains("**Total spend: $0.001045**"), "{md}");
    assert!(md.contains("| gpt-5.4 | 7 | 70.0% |"), "{md}");
    assert!(md.contains("25.0% of input tokens were served from provider prompt caches"), "{md}");
    assert!(md.contains("| summarise | (none) | gpt-5.4 | 7 |"), "{md}");
}

#[test]
fn concurrent_approvals_act_once_and_apply_the_limit_with_the_decision() {
    use tollgate_control::store::IncreaseRequest;
    let (s, _dir) = store();
    let s = std::sync::Arc::new(s);
    let r = s
        .create_request(&IncreaseRequest {
            id: 0,
            scope_type: ScopeType::Team,
            scope_id: "growth".into(),
            limit_micros: Some(9_000_000),
            limit_tokens: None,
            justification: "launch".into(),
            requested_by: "growth-app".into(),
            created_ms: 1,
            status: "pending".into(),
            decided_by: None,
            decided_ms: None,
            note: None,
        })
        .unwrap();
    let results: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || s.decide_request(r.id, true, &format!("admin{i}"), None, 10 + i))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one approval acts");
    let b = s.list_budgets().unwrap().into_iter().find(|b| b.scope_id == "growth").unwrap();
    assert_eq!(b.limit_micros, Some(9_000_000), "the limit applied with the decision");
    // a refused request changes no budget
    let mut other = s.create_request(&IncreaseRequest { scope_id: "ops".into(), ..r.clone() }).unwrap();
    other = s.decide_request(other.id, false, "admin", Some("no"), 20).unwrap();
    assert_eq!(other.status, "refused");
    assert!(s.list_budgets().unwrap().iter().all(|b| b.scope_id != "ops"));
}

#[test]
fn a_key_is_found_by_its_hash_until_revoked() {
    let (s, _dir) = store();
    let k = KeyRow {
        id: "kh".into(),
        key_hash: "b".repeat(64),
        team: "t".into(),
        project: "p".into(),
        models: None,
        projects: vec![],
        tags: BTreeMap::new(),
        created_ms: NOW,
        revoked_ms: None,
    };
    s.create_key(&k).unwrap();
    assert_eq!(s.key_by_hash(&"b".repeat(64)).unwrap().map(|k| k.id), Some("kh".to_string()));
    assert!(s.key_by_hash(&"c".repeat(64)).unwrap().is_none());
    s.revoke_key("kh", NOW + 1).unwrap();
    assert!(s.key_by_hash(&"b".repeat(64)).unwrap().is_none(), "a revoked key is no longer found");
}
