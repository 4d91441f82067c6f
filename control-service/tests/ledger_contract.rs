//! The ledger's contract, run against both backends: a real SQLite file
//! and a real PostgreSQL (started by `support/pg.rs`). Every flow is one
//! function taking the store; `contract!` runs each on both. Below it,
//! what only one backend has (SQLite reopening a file, migrations of a
//! database written before versioned migrations).

mod support;

use std::sync::{Arc, Barrier};

use std::collections::BTreeMap;

use tollgate_control::sqlite::SqliteStore;
use tollgate_control::store::{fair_part as part, Budget, KeyRow, SpendFilter, Store, StoreError};
use tollgate_protocol::record::{BudgetDecision, Outcome, UsageRecord, UsageSource};
use tollgate_protocol::Api;
use tollgate_protocol::state::ScopeType;
use tollgate_protocol::usage::Usage;

const NOW: u64 = 1_795_885_000_000; // 2026-11-28

fn sqlite() -> (Arc<dyn Store>, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    (Arc::new(SqliteStore::open(&dir.path.join("t.db")).unwrap()), dir)
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test] fn $name() { let (s, _dir) = super::sqlite(); super::$name(s) })*
        }
        mod on_postgres {
            $(#[test] fn $name() { super::$name(std::sync::Arc::new(super::support::pg::store())) })*
        }
    };
}

contract!(
    ingest_is_idempotent_by_record_id,
    grouped_batches_are_acknowledged_one_by_one,
    concurrent_batches_with_the_same_ids_count_each_record_once,
    budgets_count_their_scope_and_period_and_recount_on_change,
    a_batch_counts_against_its_own_scopes_among_many_budgets,
    budgets_set_in_bulk_recount_each_scope_in_its_own_period,
    thresholds_raise_one_alert_each_per_period,
    keys_create_revoke_rotate,
    keys_in_bulk_all_or_none,
    keys_are_listed_a_page_at_a_time_in_the_order_they_were_made,
    reports_group_bucket_filter_and_monthly_markdown,
    concurrent_approvals_act_once_and_apply_the_limit_with_the_decision,
    a_key_is_found_by_its_hash_until_revoked,
    grants_share_the_room_and_never_exceed_the_limit,
    envoys_joining_together_each_get_a_part_at_once,
    a_newcomer_takes_its_whole_part_where_room_is_free,
    grants_of_ended_periods_deleted_budgets_and_gone_envoys_are_pruned,
    budget_deltas_carry_only_changes_and_add_up_to_the_full_state,
    the_use_log_keeps_what_deltas_need_and_an_older_cursor_gets_the_full_state,
    a_full_state_in_pages_misses_nothing_that_changes_meanwhile,
    a_budget_changed_during_a_walk_comes_with_the_next_page,
    a_delta_larger_than_a_few_pages_comes_as_the_full_state,
    an_envoy_back_from_silence_gets_the_full_state_with_its_reclaimed_share,
    an_envoy_answered_slowly_counts_as_seen_when_answered,
    a_newcomer_gets_its_fair_part_after_envoys_come_and_go,
    an_answer_that_never_arrived_is_sent_again,
    a_silent_envoys_grants_are_reclaimed_page_by_page,
    budgets_are_read_by_scope_by_type_and_a_page_at_a_time,
    sums_saturate_instead_of_failing,
    key_changes_replay_to_the_live_key_set,
    cache_economics_sum_over_sum_and_keep_not_reported_apart,
    guardrail_findings_answer_who_sent_what_where_and_expire,
    the_guardrail_policy_has_one_current_version_and_a_history,
    prompt_versions_are_immutable_and_labels_move,
    cache_misses_sum_per_feature_and_say_why,
    a_new_prompt_version_that_loses_the_cache_raises_one_alert,
    findings_of_batches_of_every_size_are_stored_once,
    budgets_set_changed_or_deleted_between_batches_count_from_the_next_batch,
    envoys_batches_and_budget_changes_side_by_side_count_every_record_without_deadlock,
);

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
        session_id: None,
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
        cache_savings_micros: 0,
        priced: true,
        latency_ms: 1,
        ttfb_ms: None,
        budget_scopes: vec![],
        budget_decision: BudgetDecision::Off,
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

fn budget(team: &str, limit: u64) -> Budget {
    Budget { limit_micros: Some(limit), ..Budget::monthly(ScopeType::Team, team, NOW) }
}

fn ingest_is_idempotent_by_record_id(s: Arc<dyn Store>) {
    let a = s.ingest("n1", &[rec("r1", "t", 10, 1, 2), rec("r2", "t", 20, 3, 4)], None, NOW).unwrap();
    assert_eq!((a.accepted, a.duplicates), (2, 0));
    let b = s.ingest("n2", &[rec("r2", "t", 20, 3, 4), rec("r3", "t", 5, 0, 1)], None, NOW).unwrap();
    assert_eq!((b.accepted, b.duplicates), (1, 1));
    assert!(b.seq > a.seq);
    let t = s.spend(&SpendFilter::default()).unwrap();
    assert_eq!((t.requests, t.cost_micros, t.input_tokens, t.output_tokens), (3, 35, 4, 7));
    // a big batch (several multi-row INSERTs) with repeats inside it and of earlier batches
    let mut big: Vec<UsageRecord> = (0..130).map(|i| rec(&format!("b{i}"), "t", 1, 0, 0)).collect();
    big.push(rec("b7", "t", 1, 0, 0));
    big.push(rec("r1", "t", 10, 1, 2));
    big.push(rec("b129", "t", 1, 0, 0));
    let c = s.ingest("n3", &big, None, NOW).unwrap();
    assert_eq!((c.accepted, c.duplicates), (130, 3));
    assert_eq!(s.spend(&SpendFilter::default()).unwrap().cost_micros, 35 + 130);
}

/// Batches committed together (group commit) are acknowledged as if each
/// had its own transaction: a refused one leaves nothing behind and does
/// not take the others with it; repeats across them count once.
fn grouped_batches_are_acknowledged_one_by_one(s: Arc<dyn Store>) {
    use tollgate_control::store::IngestJob;
    s.put_budget(&budget("t", 1_000_000), NOW).unwrap();
    let (a, b, bad) = ([rec("g1", "t", 10, 0, 0), rec("g2", "t", 20, 0, 0)], [rec("g2", "t", 20, 0, 0), rec("g3", "t", 5, 0, 0)], [rec("g4", "t", 7, 0, 0), rec("", "t", 1, 0, 0)]);
    let jobs = [
        IngestJob { node: "n1", records: &a, raw: None },
        IngestJob { node: "n2", records: &bad, raw: None },
        IngestJob { node: "n3", records: &b, raw: None },
    ];
    let acks = s.ingest_many(&jobs, NOW);
    assert_eq!(acks.len(), 3);
    let (a1, a3) = (acks[0].as_ref().unwrap(), acks[2].as_ref().unwrap());
    assert!(matches!(acks[1], Err(StoreError::Invalid(_))), "{:?}", acks[1]);
    assert_eq!((a1.accepted, a1.duplicates, a3.accepted, a3.duplicates), (2, 0, 1, 1));
    assert!(a3.seq > a1.seq);
    assert_eq!(s.spend(&SpendFilter::default()).unwrap().cost_micros, 35, "g4 of the refused batch is not stored");
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, 35);
    // all good: one transaction, each acknowledged
    let (c, d) = ([rec("g5", "t", 1, 0, 0)], [rec("g5", "t", 1, 0, 0), rec("g6", "t", 2, 0, 0)]);
    let acks = s.ingest_many(&[IngestJob { node: "n", records: &c, raw: None }, IngestJob { node: "n", records: &d, raw: None }], NOW);
    let got: Vec<(u64, u64)> = acks.iter().map(|a| a.as_ref().map(|a| (a.accepted, a.duplicates)).unwrap()).collect();
    assert_eq!(got, [(1, 0), (1, 1)]);
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, 38);
}

/// Envoys retry: the same records arrive in batches that overlap, from
/// several threads at once (on PostgreSQL several transactions insert side
/// by side). Each record is stored and counted once, and batch numbers
/// are distinct.
fn concurrent_batches_with_the_same_ids_count_each_record_once(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", u64::MAX / 4), NOW).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|k| {
            let s = s.clone();
            std::thread::spawn(move || {
                // thread k sends ids in its own order, overlapping its neighbours'
                let mut ids: Vec<u32> = (k * 50..k * 50 + 150).collect();
                if k % 2 == 1 {
                    ids.reverse();
                }
                let recs: Vec<UsageRecord> = ids.iter().map(|i| rec(&format!("c{i}"), "t", 3, 0, 0)).collect();
                recs.chunks(40).map(|c| s.ingest("n", c, None, NOW).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let acks: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let accepted: u64 = acks.iter().map(|a| a.accepted).sum();
    let distinct = 5 * 50 + 150;
    assert_eq!(accepted, distinct);
    assert_eq!(acks.iter().map(|a| a.accepted + a.duplicates).sum::<u64>(), 6 * 150);
    let mut seqs: Vec<u64> = acks.iter().map(|a| a.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), acks.len(), "each batch has its own number");
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, 3 * distinct);
    assert_eq!(s.spend(&SpendFilter::default()).unwrap().requests, distinct);
}

/// Several Envoys (two of them one node, as an Envoy's workers are) ship
/// batches that all touch one team budget and overlapping per-key budgets,
/// while budgets are set again and again beside them. On PostgreSQL a batch
/// adds to the budgets' use before it takes the counting lock, and a budget
/// change recounts under that lock: without the budget lock the batch holds
/// shared, the two waited for each other and PostgreSQL broke the deadlock
/// by refusing one. Every batch is accepted, and every budget's use is the
/// sum of its records.
fn envoys_batches_and_budget_changes_side_by_side_count_every_record_without_deadlock(s: Arc<dyn Store>) {
    let key_budget = |k: u32| Budget { limit_micros: Some(u64::MAX / 4), ..Budget::monthly(ScopeType::Key, &format!("sk{k}"), NOW) };
    s.put_budget(&budget("t", u64::MAX / 4), NOW).unwrap();
    s.put_budgets(&(0..40).map(key_budget).collect::<Vec<_>>(), NOW).unwrap();
    let senders: Vec<_> = ["n0", "n1", "n2", "n2"]
        .into_iter()
        .enumerate()
        .map(|(k, node)| {
            let s = s.clone();
            std::thread::spawn(move || {
                for b in 0..12u32 {
                    // Keys overlap the other senders' (and in reverse order for odd senders).
                    let mut keys: Vec<u32> = (0..30).map(|j| (j + b * 3 + k as u32 * 5) % 40).collect();
                    if k % 2 == 1 {
                        keys.reverse();
                    }
                    let recs: Vec<UsageRecord> = keys
                        .iter()
                        .enumerate()
                        .map(|(j, key)| UsageRecord { key_id: format!("sk{key}"), ..rec(&format!("s{k}-{b}-{j}"), "t", 1 + u64::from(*key), 0, 0) })
                        .collect();
                    s.ingest(node, &recs, None, NOW).unwrap_or_else(|e| panic!("sender {k} batch {b}: {e}"));
                }
            })
        })
        .collect();
    let setter = std::thread::spawn({
        let s = s.clone();
        move || {
            for i in 0..8u32 {
                s.put_budget(&budget("t", u64::MAX / 4 - u64::from(i)), NOW).unwrap();
                s.put_budgets(&[key_budget(i * 5), key_budget(i * 5 + 1)], NOW).unwrap();
            }
        }
    });
    for t in senders {
        t.join().unwrap();
    }
    setter.join().unwrap();
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    let mut per_key = [0u64; 40];
    for k in 0..4u32 {
        for b in 0..12u32 {
            for j in 0..30 {
                let key = (j + b * 3 + k * 5) % 40;
                per_key[key as usize] += 1 + u64::from(key);
            }
        }
    }
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, per_key.iter().sum::<u64>());
    for (key, want) in per_key.iter().enumerate() {
        assert_eq!(s.used(ScopeType::Key, &format!("sk{key}"), start).unwrap().micros, *want, "key sk{key}");
    }
}

fn budgets_count_their_scope_and_period_and_recount_on_change(s: Arc<dyn Store>) {
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

/// A bulk batch is set as one put after the other would set it: each
/// scope's current period recounted from the records (in total and per
/// Envoy), whatever its type and period, a scope given twice keeps its
/// last, thresholds crossed raise their alert, and an Envoy's next delta
/// carries every budget of the batch.
fn budgets_set_in_bulk_recount_each_scope_in_its_own_period(s: Arc<dyn Store>) {
    let mut yesterday = rec("y", "t1", 7, 0, 0);
    yesterday.ts_ms = NOW - 86_400_000;
    s.ingest("n1", &[rec("a", "t1", 100, 1, 2), rec("b", "t2", 30, 0, 0), yesterday], None, NOW).unwrap();
    s.ingest("n2", &[rec("c", "t1", 20, 0, 0)], None, NOW).unwrap();
    let mut v = View::new(5000);
    v.poll(&s, "n1", NOW);
    let daily = |t: &str| Budget { period: tollgate_control::periods::Period::Daily, limit_micros: Some(1000), ..budget(t, 0) };
    let key = Budget { limit_micros: Some(100), ..Budget::monthly(ScopeType::Key, "k1", NOW) };
    let batch = vec![budget("t1", 5), daily("t2"), key, budget("t3", 50), budget("t1", 1000)];
    s.put_budgets(&batch, NOW).unwrap();
    let start = |b: &Budget| b.bounds(NOW).unwrap().0;
    let t1 = s.get_budget(ScopeType::Team, "t1").unwrap().unwrap();
    assert_eq!(t1.limit_micros, Some(1000), "the last of a scope given twice");
    assert_eq!(s.used(ScopeType::Team, "t1", start(&t1)).unwrap().micros, 127, "the month: both Envoys, yesterday included");
    assert_eq!(s.used(ScopeType::Team, "t2", start(&daily("t2"))).unwrap().micros, 30, "today only");
    assert_eq!(s.used(ScopeType::Key, "k1", start(&batch[2])).unwrap().micros, 157, "every record of the key");
    assert_eq!(s.used(ScopeType::Team, "t3", start(&t1)).unwrap().micros, 0);
    // The key's 157 of 100: over the hard threshold, one alert.
    let alerts = s.list_alerts(10).unwrap();
    assert!(alerts.iter().any(|a| a.scope_id == "k1" && a.threshold == "hard"), "{alerts:?}");
    assert!(!alerts.iter().any(|a| a.scope_id == "t1"), "{alerts:?}");
    // Each Envoy's own use of the period, recounted: n1, alone, is granted
    // its part of t1's room (n2's 20 counted in the use).
    let g = v.poll(&s, "n1", NOW + 1);
    assert!(!g.full);
    let ids: std::collections::BTreeSet<_> = g.budgets.iter().map(|b| format!("{}:{}", b.scope_type.as_str(), b.scope_id)).collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["key:k1", "team:t1", "team:t2", "team:t3"]);
    v.check(&s, "n1", NOW + 1);
    let t1_doc = g.budgets.iter().find(|b| b.scope_id == "t1").unwrap();
    assert_eq!((t1_doc.used_micros, t1_doc.share_micros), (127, Some(part(1000, 127, 1))));
}

fn a_batch_counts_against_its_own_scopes_among_many_budgets(s: Arc<dyn Store>) {
    for i in 0..40 {
        s.put_budget(&budget(&format!("idle-{i}"), 1000), NOW).unwrap();
    }
    // A budget on each of 600 teams: more than one statement adds to
    s.put_budgets(&(0..600).map(|i| budget(&format!("t-{i:03}"), 1_000_000)).collect::<Vec<_>>(), NOW).unwrap();
    // 600 records of 600 teams: more scopes than one lookup takes
    let mut recs: Vec<UsageRecord> = (0..600).map(|i| rec(&format!("r{i}"), &format!("t-{i:03}"), 10 + i, 1, 1)).collect();
    // refused by a budget that is not its own team's
    let mut denied = rec("denied", "x", 0, 0, 0);
    denied.budget_decision = BudgetDecision::Denied;
    denied.budget_scopes = vec![tollgate_protocol::scope::Scope::new(ScopeType::Team, "t-510")];
    recs.push(denied);
    s.ingest("n", &recs, None, NOW).unwrap();
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    for (t, cost) in [("t-000", 10), ("t-510", 520), ("t-599", 609), ("idle-0", 0), ("idle-39", 0)] {
        assert_eq!(s.used(ScopeType::Team, t, start).unwrap().micros, cost, "{t}");
    }
    let alerts = s.list_alerts(10).unwrap();
    assert_eq!(alerts.iter().map(|a| (a.scope_id.as_str(), a.threshold.as_str())).collect::<Vec<_>>(), vec![("t-510", "hard"), ("t-510", "soft")]);
    // The same teams again, from a second Envoy: every period adds, each
    // Envoy's part apart (what the grants reclaim by).
    let again: Vec<UsageRecord> = (0..600).map(|i| rec(&format!("s{i}"), &format!("t-{i:03}"), 10 + i, 1, 1)).collect();
    s.ingest("m", &again, None, NOW).unwrap();
    for i in 0..600u64 {
        let used = s.used(ScopeType::Team, &format!("t-{i:03}"), start).unwrap();
        assert_eq!((used.micros, used.tokens), (2 * (10 + i), 4), "t-{i:03}");
    }
    let g = s.grant("m", NOW, 60_000, None, 5000).unwrap();
    let t599 = g.budgets.iter().find(|b| b.scope_id == "t-599").unwrap();
    assert_eq!(t599.used_micros, 2 * 609);
    assert_eq!(s.list_alerts(10).unwrap().len(), 2);
}

/// Ingest keeps the budgets it counted against between batches
/// (`ledger/budget_cache.rs`): a budget set, changed or deleted between
/// two batches counts for the second as if read afresh, also after more
/// changes than it reads one by one (a bulk import).
fn budgets_set_changed_or_deleted_between_batches_count_from_the_next_batch(s: Arc<dyn Store>) {
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    let used = |t: &str| s.used(ScopeType::Team, t, start).unwrap().micros;
    s.put_budget(&budget("a", 1000), NOW).unwrap();
    s.ingest("n", &[rec("1", "a", 10, 0, 0), rec("2", "b", 20, 0, 0)], None, NOW).unwrap();
    assert_eq!((used("a"), used("b")), (10, 0));
    // b had none when the first batch was counted; a is deleted.
    s.put_budget(&budget("b", 1000), NOW).unwrap();
    s.delete_budget(ScopeType::Team, "a").unwrap();
    s.ingest("n", &[rec("3", "a", 7, 0, 0), rec("4", "b", 5, 0, 0)], None, NOW).unwrap();
    assert_eq!((used("a"), used("b")), (10, 25), "a deleted budget counts no more; a new one at once");
    // b's limit lowered to just above its use: the next batch crosses it.
    s.put_budget(&budget("b", 34), NOW).unwrap();
    assert!(s.list_alerts(10).unwrap().is_empty());
    s.ingest("n", &[rec("5", "b", 10, 0, 0)], None, NOW).unwrap();
    let alerts = s.list_alerts(10).unwrap();
    assert!(alerts.iter().any(|a| a.scope_id == "b" && a.threshold == "hard" && a.limit_micros == Some(34)), "{alerts:?}");
    // More changes than are read one by one, c among them.
    s.ingest("n", &[rec("6", "c", 1, 0, 0)], None, NOW).unwrap();
    s.put_budgets(&(0..6000).map(|i| budget(&format!("c{i}"), 1000)).chain([budget("c", 1000)]).collect::<Vec<_>>(), NOW).unwrap();
    s.ingest("n", &[rec("7", "c", 2, 0, 0)], None, NOW).unwrap();
    assert_eq!(used("c"), 3);
}

fn thresholds_raise_one_alert_each_per_period(s: Arc<dyn Store>) {
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
    denied.budget_decision = BudgetDecision::Denied;
    denied.budget_scopes = vec![tollgate_protocol::scope::Scope::new(ScopeType::Team, "t")];
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

fn keys_create_revoke_rotate(s: Arc<dyn Store>) {
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

fn reports_group_bucket_filter_and_monthly_markdown(s: Arc<dyn Store>) {
    use tollgate_control::reports::{Bucket, Dim, ReportQuery};
    let day = 86_400_000u64;
    let mut recs = vec![];
    for i in 0..10u64 {
        let mut r = rec(&format!("a{i}"), if i % 2 == 0 { "search" } else { "labs" }, 100 + i, 1000, 10);
        r.model_upstream = Some(if i < 7 { "gpt-5.4".into() } else { "deepseek-v4".into() });
        r.usage.cached_input_tokens = 250;
        r.feature = Some("summarise".into());
        r.ts_ms = NOW - (i % 3) * day;
        // Sessions: three records of one Claude Code session, one of another, the rest none.
        r.session_id = match i {
            0..=2 => Some("cc-session-1".into()),
            3 => Some("cc-session-2".into()),
            _ => None,
        };
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

    // What one session cost, and every session's cost (records without one grouped as none).
    let by_session = s.report(&q(vec![Dim::Session])).unwrap();
    let of = |sid: Option<&str>| by_session.iter().find(|r| r.group == vec![sid.map(str::to_string)]).map(|r| (r.requests, r.cost_micros));
    assert_eq!(of(Some("cc-session-1")), Some((3, 100 + 101 + 102)));
    assert_eq!(of(Some("cc-session-2")), Some((1, 103)));
    assert_eq!(of(None).map(|x| x.0), Some(6));
    let mut one = q(vec![Dim::Model]);
    one.filters = vec![(Dim::Session, "cc-session-1".into())];
    assert_eq!(s.report(&one).unwrap().iter().map(|r| r.requests).sum::<u64>(), 3);

    let month = tollgate_control::monthly::current_month(NOW);
    let (from, to, prev) = tollgate_control::monthly::month_bounds(&month).unwrap();
    let md = tollgate_control::monthly::render(&*s, &month, from, to, prev).unwrap();
    assert!(md.starts_with(&format!("# AI spend review — {month}")), "{md}");
    assert!(md.contains("**Total spend: $0.001045**"), "{md}");
    assert!(md.contains("| gpt-5.4 | 7 | 70.0% |"), "{md}");
    assert!(md.contains("25.0% of input tokens were served from provider prompt caches"), "{md}");
    assert!(md.contains("| summarise | (none) | gpt-5.4 | 7 |"), "{md}");
}

fn concurrent_approvals_act_once_and_apply_the_limit_with_the_decision(s: Arc<dyn Store>) {
    use tollgate_control::store::IncreaseRequest;
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
    let b = s.budgets_page(None, usize::MAX).unwrap().into_iter().find(|b| b.scope_id == "growth").unwrap();
    assert_eq!(b.limit_micros, Some(9_000_000), "the limit applied with the decision");
    // a refused request changes no budget
    let mut other = s.create_request(&IncreaseRequest { scope_id: "ops".into(), ..r.clone() }).unwrap();
    other = s.decide_request(other.id, false, "admin", Some("no"), 20).unwrap();
    assert_eq!(other.status, "refused");
    assert!(s.budgets_page(None, usize::MAX).unwrap().iter().all(|b| b.scope_id != "ops"));
}

fn a_key_is_found_by_its_hash_until_revoked(s: Arc<dyn Store>) {
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

fn key(id: &str, hash: char) -> KeyRow {
    KeyRow {
        id: id.into(),
        key_hash: hash.to_string().repeat(64),
        team: "t".into(),
        project: "p".into(),
        models: None,
        projects: vec![],
        tags: BTreeMap::new(),
        created_ms: NOW,
        revoked_ms: None,
    }
}

fn keys_in_bulk_all_or_none(s: Arc<dyn Store>) {
    let clash = [key("b1", 'a'), key("b2", 'b'), key("b1", 'c')];
    assert!(matches!(s.create_keys(&clash), Err(StoreError::Conflict(_))));
    assert!(s.keys_page(None, usize::MAX).unwrap().1.is_empty(), "a refused batch creates no key");
    s.create_keys(&[key("b1", 'a'), key("b2", 'b')]).unwrap();
    assert_eq!(s.keys_page(None, usize::MAX).unwrap().1.len(), 2);
    let same_hash = [key("b3", 'a')];
    assert!(matches!(s.create_keys(&same_hash), Err(StoreError::Conflict(_))), "two keys cannot share a hash");
    // Batches longer than one statement: a clash in the second statement
    // (the id, then the hash, of a key made before; two keys of the batch
    // with one hash or one id) names its key, and the first statement's keys are not made.
    let many = |n: usize| -> Vec<KeyRow> {
        (0..n).map(|i| KeyRow { id: format!("m{i}"), key_hash: format!("{i:064x}"), ..key("x", 'x') }).collect()
    };
    let conflict = |batch: &[KeyRow]| match s.create_keys(batch) {
        Err(StoreError::Conflict(m)) => m,
        other => panic!("{other:?}"),
    };
    let mut by_id = many(700);
    by_id[650].id = "b2".into();
    assert!(conflict(&by_id).contains("'b2'"));
    let mut by_hash = many(700);
    by_hash[600].key_hash = key("", 'b').key_hash;
    assert!(conflict(&by_hash).contains("'m600'"));
    let mut twice = many(700);
    twice[699].key_hash = twice[3].key_hash.clone();
    assert!(conflict(&twice).contains("'m699'"));
    let mut id_twice = many(700);
    id_twice[690].id = "m5".into();
    assert!(conflict(&id_twice).contains("'m5'"), "two keys of the batch with one id");
    assert_eq!(s.keys_page(None, usize::MAX).unwrap().0, 2, "a refused batch creates no key");
    let seq = s.state_seqs().unwrap().keys;
    s.create_keys(&many(700)).unwrap();
    assert_eq!(s.keys_page(None, usize::MAX).unwrap().0, 702);
    let ch = s.key_changes(seq, 1000).unwrap();
    assert_eq!(ch.changes.len(), 700, "one change each");
    assert_eq!(s.key_by_hash(&format!("{:064x}", 699)).unwrap().unwrap().id, "m699");
}

fn keys_are_listed_a_page_at_a_time_in_the_order_they_were_made(s: Arc<dyn Store>) {
    // Made out of id order, two in the same millisecond (then by id).
    let mut ks = vec![key("m", 'a'), key("z", 'b'), key("a", 'c'), key("b", 'd')];
    for (k, at) in ks.iter_mut().zip([NOW + 2, NOW, NOW + 1, NOW + 1]) {
        k.created_ms = at;
    }
    s.create_keys(&ks).unwrap();
    s.revoke_key("a", NOW + 5).unwrap();
    let ids = |(n, v): (u64, Vec<KeyRow>)| (n, v.into_iter().map(|k| k.id).collect::<Vec<_>>());
    assert_eq!(ids(s.keys_page(None, 3).unwrap()), (4, vec!["z".to_string(), "a".into(), "b".into()]));
    assert_eq!(ids(s.keys_page(Some("a"), 2).unwrap()), (4, vec!["b".to_string(), "m".into()]), "revoked keys keep their place");
    assert_eq!(ids(s.keys_page(Some("m"), 2).unwrap()), (4, vec![]));
    assert_eq!(ids(s.keys_page(Some("no-such-key"), 2).unwrap()), (4, vec![]));
    assert_eq!(s.keys_page(None, usize::MAX).unwrap().1.into_iter().map(|k| k.id).collect::<Vec<_>>(), ["z", "a", "b", "m"]);
}

fn grants_share_the_room_and_never_exceed_the_limit(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    let share = |g: &tollgate_control::store::GrantSnapshot| g.budgets[0].share_micros;
    // alone: everything but the sixteenth kept free for Envoys joining (938)
    let alone = part(1000, 0, 1);
    assert_eq!((alone, share(&s.grant("n1", NOW, 60_000, None, 5000).unwrap())), (938, Some(938)));
    // a second node: half of what is free at once, the rest once the first polls again
    let g2 = s.grant("n2", NOW, 60_000, None, 5000).unwrap();
    assert_eq!((share(&g2), g2.nodes_active), (Some(31), 2));
    assert_eq!(s.reserved(ScopeType::Team, "t", start).unwrap().micros, 969);
    s.ingest("n1", &[rec("g1", "t", 300, 0, 0)], None, NOW).unwrap();
    // n1: its use plus its part of what is left, (1000 - 300) / 2 less a sixteenth
    let half = part(1000, 300, 2);
    assert_eq!(half, 329);
    assert_eq!(share(&s.grant("n1", NOW, 60_000, None, 5000).unwrap()), Some(half));
    assert_eq!(share(&s.grant("n2", NOW, 60_000, None, 5000).unwrap()), Some(half));
    let reserved = s.reserved(ScopeType::Team, "t", start).unwrap().micros;
    assert_eq!(reserved, 2 * half);
    assert!(reserved + s.used(ScopeType::Team, "t", start).unwrap().micros <= 1000);
    // a node silent past the TTL gives back what it did not spend
    assert_eq!(share(&s.grant("n1", NOW + 120_000, 60_000, None, 5000).unwrap()), Some(part(1000, 300, 1)));
}

/// Envoys joining a fleet (a scale-up, a rollout) each get a part of a
/// budget at once, from what the grants leave free: before, the Envoys
/// already there held all of it and a newcomer's share was 0 (it refused
/// every budgeted request) until they had polled and given back.
fn envoys_joining_together_each_get_a_part_at_once(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1_000_000), NOW).unwrap();
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    let share = |node: &str, at: u64| s.grant(node, at, 60_000, None, 5000).unwrap().budgets[0].share_micros.unwrap_or(0);
    assert_eq!(share("a", NOW), part(1_000_000, 0, 1));
    let joined: Vec<u64> = ["b", "c", "d"].iter().map(|n| share(n, NOW + 1)).collect();
    // Half of what is free, then half of what is left of it: 31,250, 15,625, 7,813.
    assert_eq!(joined, [31_250, 15_625, 7_813]);
    assert!(s.reserved(ScopeType::Team, "t", start).unwrap().micros <= 1_000_000);
    // Two rounds of polls later, everyone holds its part of four.
    for at in [NOW + 2, NOW + 3] {
        for n in ["a", "b", "c", "d"] {
            share(n, at);
        }
    }
    let parts: Vec<u64> = ["a", "b", "c", "d"].iter().map(|n| share(n, NOW + 4)).collect();
    assert_eq!(parts, [part(1_000_000, 0, 4); 4]);
    assert!(s.reserved(ScopeType::Team, "t", start).unwrap().micros <= 1_000_000);
}

/// `make bench-scale`'s sequence on PostgreSQL: an Envoy took its first
/// part of every budget and fell silent, the Envoy already there shrank to
/// its part of two, and a probe joined before anyone had reclaimed the
/// silent one's grants. Half of what was free left the probe short of its
/// part in every budget (a million budgets walked again, a page a poll,
/// for minutes); it takes its whole part at once, leaving half the reserve.
fn a_newcomer_takes_its_whole_part_where_room_is_free(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let ttl = 5_000;
    let grant = |node: &str, at: u64, cursor: Option<&str>| s.grant(node, at, ttl, cursor, 5000).unwrap();
    grant("big", NOW, None);
    assert_eq!(grant("new", NOW + 1, None).budgets[0].share_micros, Some(31));
    let big = grant("big", NOW + 2, None);
    assert_eq!(big.budgets[0].share_micros, Some(part(1000, 0, 2)));
    grant("big", NOW + 4_000, Some(&big.cursor));
    // "new" silent past the TTL, its 31 not reclaimed yet; big holds 469.
    let probe = grant("probe", NOW + 6_000, None);
    assert_eq!((probe.nodes_active, probe.budgets[0].share_micros), (2, Some(part(1000, 0, 2))));
    // At its part: its next delta is empty (nothing short to send again).
    let next = grant("probe", NOW + 6_001, Some(&probe.cursor));
    assert!(!next.full && next.budgets.is_empty(), "{:?}", next.budgets);
}

fn grants_of_ended_periods_deleted_budgets_and_gone_envoys_are_pruned(s: Arc<dyn Store>) {
    use tollgate_control::store::Pruned;
    const DAY: u64 = 86_400_000;
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let (start, _) = budget("t", 0).bounds(NOW).unwrap();
    // Last month: an Envoy "old" was granted room and spent some, then went away.
    let last_month = start - 10 * DAY;
    let (old_start, _) = budget("t", 0).bounds(last_month).unwrap();
    assert!(old_start < start);
    s.grant("old", last_month, 60_000, None, 5000).unwrap();
    s.ingest("old", &[UsageRecord { ts_ms: last_month, ..rec("p1", "t", 40, 0, 0) }], None, last_month).unwrap();
    // This month: "n1" holds room in "t" and in "g", a budget then deleted,
    // and today in "d", a daily budget in another timezone (its period
    // starts later than the month's: pruning goes by the earliest).
    s.put_budget(&budget("g", 500), NOW).unwrap();
    let daily = Budget { period: tollgate_control::periods::Period::Daily, timezone: "Asia/Tokyo".into(), ..budget("d", 100) };
    s.put_budget(&daily, NOW).unwrap();
    s.grant("n1", NOW, 60_000, None, 5000).unwrap();
    s.ingest("n1", &[rec("p2", "t", 30, 0, 0)], None, NOW).unwrap();
    s.grant("n1", NOW, 60_000, None, 5000).unwrap();
    s.delete_budget(ScopeType::Team, "g").unwrap();
    let reserved_before = s.reserved(ScopeType::Team, "t", start).unwrap();
    assert!(reserved_before.micros > 0);

    let pruned = s.prune_grants(NOW, DAY).unwrap();
    assert_eq!(pruned, Pruned { grants: 2, node_use: 1, nodes: 1 }, "last month's grant of t, n1's grant of g; old's use of t; Envoy old");
    // The current period is untouched, and last month's spend stays in the history.
    assert_eq!(s.reserved(ScopeType::Team, "t", start).unwrap(), reserved_before);
    assert_eq!(s.reserved(ScopeType::Team, "t", old_start).unwrap().micros, 0);
    assert_eq!(s.used(ScopeType::Team, "t", old_start).unwrap().micros, 40);
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, 30);
    let g = s.grant("n1", NOW, 60_000, None, 5000).unwrap();
    assert_eq!((g.nodes_active, g.budgets.len()), (1, 2));
    // Nothing more to prune; a recent Envoy is not forgotten.
    assert_eq!(s.prune_grants(NOW, DAY).unwrap(), Pruned::default());
}

/// An Envoy's view of the budgets, kept from full states (in pages of
/// `page`) and deltas as the filter keeps it.
struct View {
    budgets: BTreeMap<(ScopeType, String), tollgate_protocol::state::BudgetDoc>,
    cursor: String,
    page: usize,
    pages: usize,
}

impl View {
    fn new(page: usize) -> View {
        View { budgets: BTreeMap::new(), cursor: String::new(), page, pages: 0 }
    }

    /// One answer applied.
    fn step(&mut self, s: &Arc<dyn Store>, node: &str, now: u64) -> tollgate_control::store::GrantSnapshot {
        let cursor = (!self.cursor.is_empty()).then_some(self.cursor.as_str());
        let g = s.grant(node, now, 60_000, cursor, self.page).unwrap();
        if g.full {
            self.budgets.clear();
            assert!(g.removed.is_empty(), "a full state removes by leaving out");
        }
        for r in &g.removed {
            self.budgets.remove(&(r.scope_type, r.scope_id.clone()));
        }
        for b in &g.budgets {
            self.budgets.insert((b.scope_type, b.scope_id.clone()), b.clone());
        }
        // A later page of a full state may also bring up to a page of changed budgets.
        assert!(g.budgets.len() <= 2 * self.page);
        self.cursor = g.cursor.clone();
        self.pages += 1;
        g
    }

    /// A poll: every page of it, as one answer.
    fn poll(&mut self, s: &Arc<dyn Store>, node: &str, now: u64) -> tollgate_control::store::GrantSnapshot {
        self.pages = 0;
        let mut g = self.step(s, node, now);
        while g.more {
            let next = self.step(s, node, now);
            g.budgets.extend(next.budgets);
            g.removed.extend(next.removed);
            (g.more, g.cursor) = (next.more, next.cursor);
        }
        g
    }

    /// The view equals what a full state says now.
    fn check(&self, s: &Arc<dyn Store>, node: &str, now: u64) {
        let full = s.grant(node, now, 60_000, None, 5000).unwrap();
        let want: BTreeMap<_, _> = full.budgets.into_iter().map(|b| ((b.scope_type, b.scope_id.clone()), b)).collect();
        assert_eq!(self.budgets, want, "deltas add up to the full state");
    }
}

fn names(g: &tollgate_control::store::GrantSnapshot) -> (bool, Vec<String>, Vec<String>) {
    (g.full, g.budgets.iter().map(|b| b.scope_id.clone()).collect(), g.removed.iter().map(|r| r.scope_id.clone()).collect())
}

/// Which budgets' use changed is logged a batch at a time (scope ids as
/// JSON in the database, read back by each dialect's JSON functions) and
/// pruned after a while: a cursor from before what is kept gets the whole
/// state, one after it goes on with deltas.
fn the_use_log_keeps_what_deltas_need_and_an_older_cursor_gets_the_full_state(s: Arc<dyn Store>) {
    // Team names as odd as a client can make them: quotes, backslashes,
    // control characters, something that looks like the log's own JSON.
    let odd = ["q\"uo\\te", "tab\tnew\nline\u{1}", "é✓ [\"team\",\"x\"]", "t1"];
    for t in odd {
        s.put_budget(&budget(t, 1_000_000), NOW).unwrap();
    }
    let (mut early, mut late) = (View::new(5000), View::new(5000));
    for k in 0..2 {
        early.poll(&s, "n1", NOW + k);
        late.poll(&s, "n2", NOW + k);
    }
    assert!(!late.poll(&s, "n2", NOW + 2).full, "both Envoys settled");
    let before = NOW - 600_000;
    for (i, t) in odd.iter().enumerate() {
        s.ingest("n1", &[rec(&format!("u{i}"), t, 10, 0, 0)], None, before).unwrap();
    }
    let g = late.poll(&s, "n2", NOW + 3);
    let mut got = names(&g).1;
    got.sort();
    let mut want: Vec<String> = odd.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!((g.full, got), (false, want), "every changed scope, its id as it was");
    assert!(g.budgets.iter().all(|b| b.used_micros == 10));
    late.check(&s, "n2", NOW + 3);
    // Within the time kept nothing goes; past it, the four batches do.
    assert_eq!(s.prune_use_log(before + 1000, 300_000).unwrap(), 0);
    assert_eq!(s.prune_use_log(NOW, 300_000).unwrap(), 4);
    assert_eq!(s.prune_use_log(NOW, 300_000).unwrap(), 0);
    // `early` last polled before those batches: what changed since is gone from the log.
    let g = early.poll(&s, "n1", NOW + 4);
    assert_eq!((g.full, g.full_because), (true, Some("its use changes are no longer logged")));
    early.check(&s, "n1", NOW + 4);
    // `late` polled after them: deltas go on, and a change after the prune comes.
    assert!(!late.poll(&s, "n2", NOW + 5).full);
    s.ingest("n1", &[rec("v", odd[0], 5, 0, 0)], None, NOW).unwrap();
    let g = late.poll(&s, "n2", NOW + 6);
    assert!(!g.full);
    assert!(g.budgets.iter().any(|b| b.scope_id == odd[0] && b.used_micros == 15), "{:?}", names(&g));
    late.check(&s, "n2", NOW + 6);
}

fn budget_deltas_carry_only_changes_and_add_up_to_the_full_state(s: Arc<dyn Store>) {
    let none: Vec<String> = Vec::new();
    for (t, l) in [("t1", 1000), ("t2", 500), ("t3", 300)] {
        s.put_budget(&budget(t, l), NOW).unwrap();
    }
    let mut v1 = View::new(5000);
    assert_eq!(names(&v1.poll(&s, "n1", NOW)), (true, vec!["t1".into(), "t2".into(), "t3".into()], none.clone()));
    // Nothing changed: nothing sent, and the answer is the same bytes (a 304).
    let quiet = v1.poll(&s, "n1", NOW + 1);
    assert_eq!(names(&quiet), (false, none.clone(), none.clone()));
    assert_eq!(v1.poll(&s, "n1", NOW + 2).cursor, quiet.cursor);
    // Use: only the budget it counts against.
    s.ingest("n1", &[rec("d1", "t1", 100, 0, 0)], None, NOW).unwrap();
    let g = v1.poll(&s, "n1", NOW + 3);
    assert_eq!(names(&g), (false, vec!["t1".into()], none.clone()));
    assert_eq!((g.budgets[0].used_micros, g.budgets[0].share_micros), (100, Some(part(1000, 100, 1))));
    v1.check(&s, "n1", NOW + 3);
    // Use of a scope without a budget changes nothing.
    s.ingest("n1", &[rec("d2", "nobody", 100, 0, 0)], None, NOW).unwrap();
    assert_eq!(names(&v1.poll(&s, "n1", NOW + 4)), (false, none.clone(), none.clone()));
    // A new limit, a deleted budget, a budget deleted and made again.
    s.put_budget(&budget("t2", 800), NOW).unwrap();
    s.delete_budget(ScopeType::Team, "t3").unwrap();
    s.put_budget(&budget("t4", 50), NOW).unwrap();
    s.delete_budget(ScopeType::Team, "t4").unwrap();
    s.put_budget(&budget("t4", 60), NOW).unwrap();
    let g = v1.poll(&s, "n1", NOW + 5);
    assert_eq!(names(&g), (false, vec!["t2".into(), "t4".into()], vec!["t3".into()]));
    assert_eq!(g.budgets[0].share_micros, Some(part(800, 0, 1)));
    v1.check(&s, "n1", NOW + 5);
    // A second Envoy, whose full state comes a budget a page: every
    // Envoy's next state is full (shares are cut anew).
    let mut v2 = View::new(1);
    let g2 = v2.poll(&s, "n2", NOW + 6);
    assert_eq!((g2.full, g2.budgets.len(), v2.pages), (true, 3, 3));
    let t1 = |g: &tollgate_control::store::GrantSnapshot| g.budgets.iter().find(|b| b.scope_id == "t1").and_then(|b| b.share_micros);
    // n1 holds its part of t1's room; n2 gets half of the rest at once.
    let free = 1000 - 100 - part(1000, 100, 1);
    assert_eq!(t1(&g2), Some(free.div_ceil(2)), "half of what n1 leaves free");
    let g1 = v1.poll(&s, "n1", NOW + 7);
    assert!(g1.full, "the number of Envoys changed");
    assert_eq!(t1(&g1), Some(part(1000, 100, 2)), "n1 gives back: its part of two");
    // n2's share of t1 was short of its fair part: sent again although nothing changed.
    let g2 = v2.poll(&s, "n2", NOW + 8);
    assert!(!g2.full);
    assert_eq!(t1(&g2), Some(part(1000, 100, 2)));
    assert!(g2.budgets.iter().all(|b| b.scope_id != "t4" || b.share_micros == Some(part(60, 0, 2))));
    v2.check(&s, "n2", NOW + 8);
    // Once fair, quiet again.
    assert_eq!(names(&v2.poll(&s, "n2", NOW + 9)), (false, none.clone(), none.clone()));
    v1.poll(&s, "n1", NOW + 9);
    v1.check(&s, "n1", NOW + 9);
    // A cursor this service did not write, or whose period has ended: the full state.
    assert!(s.grant("n1", NOW + 10, 60_000, Some("b2.99999.0.2.1.0"), 5000).unwrap().full);
    assert!(s.grant("n1", NOW + 10, 60_000, Some("garbage"), 5000).unwrap().full);
    let (_, end) = budget("t1", 0).bounds(NOW).unwrap();
    let mut late = View { cursor: v1.cursor.clone(), ..View::new(5000) };
    let g = late.poll(&s, "n1", end);
    assert!(g.full, "a new period starts every budget afresh");
    assert!(g.budgets.iter().all(|b| b.period_start_ms == end && b.used_micros == 0));
}

fn a_full_state_in_pages_misses_nothing_that_changes_meanwhile(s: Arc<dyn Store>) {
    for t in ["a", "b", "c", "d"] {
        s.put_budget(&budget(t, 1000), NOW).unwrap();
    }
    let mut v = View::new(2);
    let first = v.step(&s, "n1", NOW);
    assert_eq!((first.full, first.more, names(&first).1), (true, true, vec!["a".to_string(), "b".to_string()]));
    // Between pages: a page already sent changes, one not yet sent is deleted, one is made.
    s.ingest("n1", &[rec("m1", "a", 10, 0, 0)], None, NOW).unwrap();
    s.delete_budget(ScopeType::Team, "d").unwrap();
    s.put_budget(&budget("bb", 1000), NOW).unwrap();
    let second = v.step(&s, "n1", NOW + 1);
    // The deletion comes with the next page (budget changes are caught up
    // page by page); the new budget is on that page already.
    assert_eq!(names(&second), (false, vec!["bb".to_string(), "c".to_string()], vec!["d".to_string()]));
    assert!(!second.more);
    // The delta after the last page brings the use that changed since the first.
    let after = v.poll(&s, "n1", NOW + 2);
    assert!(!after.full);
    assert!(names(&after).2.is_empty(), "the deletion was sent already");
    assert!(after.budgets.iter().any(|b| b.scope_id == "a" && b.used_micros == 10));
    v.check(&s, "n1", NOW + 2);
    // A delta of more budgets than a page comes in pages too; removals once.
    s.ingest("n1", &[rec("m2", "a", 1, 0, 0), rec("m3", "b", 1, 0, 0), rec("m4", "c", 1, 0, 0)], None, NOW).unwrap();
    s.delete_budget(ScopeType::Team, "bb").unwrap();
    let paged = v.poll(&s, "n1", NOW + 3);
    assert_eq!((paged.full, v.pages, names(&paged).1, names(&paged).2), (false, 2, vec!["a".into(), "b".into(), "c".into()], vec!["bb".to_string()]));
    v.check(&s, "n1", NOW + 3);
    // A page cursor that no longer holds starts the full state again.
    let mut w = View::new(2);
    w.step(&s, "n1", NOW + 3);
    let mut other = View::new(2);
    other.poll(&s, "n2", NOW + 3);
    let restart = w.step(&s, "n1", NOW + 4);
    assert!(restart.full, "another Envoy came: the shares are cut anew");
}

/// A limit set or a budget deleted while an Envoy walks the pages of a
/// full state reaches it with the walk's next page, wherever the budget
/// is in scope order; more changes than a page wait for the walk's end.
fn a_budget_changed_during_a_walk_comes_with_the_next_page(s: Arc<dyn Store>) {
    for t in ["a", "b", "c", "d", "e", "f", "g"] {
        s.put_budget(&budget(t, 1000), NOW).unwrap();
    }
    let share = |g: &tollgate_control::store::GrantSnapshot, t: &str| g.budgets.iter().find(|b| b.scope_id == t).and_then(|b| b.share_micros);
    let mut v = View::new(3);
    assert_eq!(names(&v.step(&s, "n1", NOW)).1, ["a", "b", "c"]);
    // Walked already, not walked yet, deleted: three changes, a page's worth.
    s.put_budget(&budget("a", 400), NOW).unwrap();
    s.put_budget(&budget("f", 300), NOW).unwrap();
    s.delete_budget(ScopeType::Team, "b").unwrap();
    let second = v.step(&s, "n1", NOW + 1);
    let (full, mut sent, gone) = names(&second);
    sent.sort();
    assert_eq!((full, sent, gone), (false, vec!["a".into(), "d".into(), "e".into(), "f".into()], vec!["b".to_string()]));
    assert_eq!((share(&second, "a"), share(&second, "f"), second.more), (Some(part(400, 0, 1)), Some(part(300, 0, 1)), true));
    assert_eq!(names(&v.step(&s, "n1", NOW + 2)), (false, vec!["g".to_string()], vec![]));
    // Nothing is sent twice after the walk.
    assert_eq!(names(&v.poll(&s, "n1", NOW + 3)), (false, vec![], vec![]));
    v.check(&s, "n1", NOW + 3);
    // Four changes, more than a page: the walk goes on without them.
    let mut w = View::new(3);
    assert_eq!(names(&w.step(&s, "n2", NOW + 4)).1, ["a", "c", "d"]);
    v.poll(&s, "n1", NOW + 4); // n2 joined: n1 takes its new shares
    for (t, l) in [("c", 100), ("d", 200), ("e", 300), ("g", 400)] {
        s.put_budget(&budget(t, l), NOW).unwrap();
    }
    assert_eq!(names(&w.step(&s, "n2", NOW + 5)), (false, vec!["e".into(), "f".into(), "g".into()], vec![]), "only its own page");
    let rest = w.poll(&s, "n2", NOW + 6);
    assert!(rest.budgets.iter().any(|b| b.scope_id == "c"), "the delta after the walk brings them");
    w.check(&s, "n2", NOW + 6);
    // A delta in pages catches up the same way (both Envoys fair first, so
    // the delta is the use below).
    v.poll(&s, "n1", NOW + 6);
    w.poll(&s, "n2", NOW + 6);
    s.ingest("n2", &[rec("w1", "a", 1, 0, 0), rec("w2", "c", 1, 0, 0), rec("w3", "d", 1, 0, 0), rec("w4", "e", 1, 0, 0)], None, NOW).unwrap();
    let first = w.step(&s, "n2", NOW + 7);
    assert_eq!((first.full, first.more, names(&first).1), (false, true, vec!["a".to_string(), "c".to_string(), "d".to_string()]));
    s.put_budget(&budget("a", 50), NOW).unwrap();
    let second = w.step(&s, "n2", NOW + 8);
    let mut sent = names(&second).1;
    sent.sort();
    let limit = second.budgets.iter().find(|b| b.scope_id == "a").and_then(|b| b.limit_micros);
    assert_eq!((sent, limit, second.more), (vec!["a".to_string(), "e".to_string()], Some(50), false));
    w.poll(&s, "n2", NOW + 9);
    w.check(&s, "n2", NOW + 9);
}

fn budgets_are_read_by_scope_by_type_and_a_page_at_a_time(s: Arc<dyn Store>) {
    let mut batch: Vec<Budget> = ["b", "a", "c"].iter().map(|t| budget(t, 10)).collect();
    batch.push(Budget { limit_micros: Some(5), ..Budget::monthly(ScopeType::Key, "k1", NOW) });
    s.put_budgets(&batch, NOW).unwrap();
    assert_eq!(s.get_budget(ScopeType::Team, "b").unwrap().map(|b| b.limit_micros), Some(Some(10)));
    assert!(s.get_budget(ScopeType::Project, "b").unwrap().is_none());
    let (n, some) = s.budgets_of_type(ScopeType::Team, 2).unwrap();
    assert_eq!((n, some.iter().map(|b| b.scope_id.as_str()).collect::<Vec<_>>()), (3, vec!["a", "b"]));
    assert_eq!(s.budgets_of_type(ScopeType::Project, 5).unwrap(), (0, vec![]));
    let ids = |v: Vec<Budget>| v.into_iter().map(|b| format!("{}:{}", b.scope_type.as_str(), b.scope_id)).collect::<Vec<_>>();
    assert_eq!(ids(s.budgets_page(None, 2).unwrap()), ["key:k1", "team:a"]);
    assert_eq!(ids(s.budgets_page(Some((ScopeType::Team, "a")), 5).unwrap()), ["team:b", "team:c"]);
    assert!(s.budgets_page(Some((ScopeType::Team, "c")), 5).unwrap().is_empty());
}

/// A silent Envoy's grants go page by page, each page's before its grants
/// are cut: all of them at the first page took longer than the filter
/// waits at a million budgets.
fn a_silent_envoys_grants_are_reclaimed_page_by_page(s: Arc<dyn Store>) {
    let budgets: Vec<Budget> = (0..8).map(|i| budget(&format!("b{i}"), 1000)).collect();
    s.put_budgets(&budgets, NOW).unwrap();
    let (ttl, page) = (5_000, 4);
    let walk = |node: &str, now: u64| {
        let mut out = Vec::new();
        let mut g = s.grant(node, now, ttl, None, page).unwrap();
        loop {
            out.push((g.reclaimed, g.budgets.iter().map(|b| b.share_micros).collect::<Vec<_>>()));
            if !g.more {
                return out;
            }
            g = s.grant(node, now, ttl, Some(&g.cursor), page).unwrap();
        }
    };
    walk("a", NOW);
    walk("b", NOW + 1);
    walk("a", NOW + 2);
    // b held half of each; silent since NOW + 1, a walks its pages alone.
    let pages = walk("a", NOW + 10_000);
    assert_eq!(pages.len(), 2);
    for (reclaimed, shares) in &pages {
        assert_eq!(*reclaimed, 4, "b's grants of this page, and only those");
        assert_eq!(shares, &vec![Some(part(1000, 0, 1)); 4], "a holds its part of one once b's grant is gone");
    }
    // Nothing left to reclaim: the next walk deletes nothing.
    assert!(walk("a", NOW + 10_001).iter().all(|(r, _)| *r == 0));
}

fn an_envoy_back_from_silence_gets_the_full_state_with_its_reclaimed_share(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let (mut a, mut b) = (View::new(5000), View::new(5000));
    a.poll(&s, "a", NOW);
    b.poll(&s, "b", NOW + 1);
    a.poll(&s, "a", NOW + 2);
    let share = |v: &View| v.budgets.values().next().and_then(|d| d.share_micros);
    b.poll(&s, "b", NOW + 3);
    assert_eq!(share(&b), Some(part(1000, 0, 2)));
    // b falls silent past the TTL (60 s here) with its cursor; a polls on and
    // is handed the room b held.
    for t in [30_000, 70_000, 100_000] {
        a.poll(&s, "a", NOW + t);
    }
    assert_eq!(share(&a), Some(part(1000, 0, 1)), "b's grant was reclaimed");
    // b comes back: the number of Envoys is what its cursor says, but its
    // grant is gone; it must not keep spending the share it remembers.
    let g = b.poll(&s, "b", NOW + 101_000);
    assert!(g.full, "a silent Envoy starts over");
    let free = 1000 - part(1000, 0, 1);
    assert_eq!(share(&b), Some(free.div_ceil(2)), "half of what a leaves free, until a polls again");
    // Its next poll (no longer joining) takes the rest of what is free.
    b.poll(&s, "b", NOW + 101_001);
    assert_eq!(share(&b), Some(free));
    b.check(&s, "b", NOW + 101_001);
}

fn an_envoy_answered_slowly_counts_as_seen_when_answered(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let mut v = View::new(5000);
    v.poll(&s, "a", NOW);
    // The answer took 50 s of the 60 s TTL; the next poll comes 20 s after it.
    s.node_seen("a", NOW + 50_000).unwrap();
    s.node_seen("a", NOW + 1).unwrap(); // never moved back
    let g = v.poll(&s, "a", NOW + 70_000);
    assert!(!g.full, "the Envoy was not silent: its cursor still holds");
    assert_eq!(s.nodes_active(NOW + 70_000, 60_000).unwrap(), 1);
    s.node_seen("nobody", NOW).unwrap();
    assert_eq!(s.nodes_active(NOW, 60_000).unwrap(), 1, "a node is made only by its poll");
    v.check(&s, "a", NOW + 70_000);
}

/// An Envoy as the filter's background service runs it: polls once a
/// second, the next page at once while a state comes in pages.
struct Sim {
    name: &'static str,
    cursor: String,
    next_at: u64,
    last: Option<tollgate_control::store::GrantSnapshot>,
    /// Each budget's share as the Envoy holds it.
    shares: BTreeMap<String, Option<u64>>,
    /// The next answer never arrives.
    lose_next: bool,
}

impl Sim {
    /// Each of `sims` holds `budgets` budgets, a share of `fair` in each.
    fn assert_fair(sims: &[&Sim], budgets: usize, fair: u64) {
        for sim in sims {
            assert_eq!(sim.shares.len(), budgets, "{} holds every budget", sim.name);
            let unfair: Vec<_> = sim.shares.iter().filter(|(_, v)| **v != Some(fair)).collect();
            assert!(unfair.is_empty(), "{} not at its fair part: {unfair:?}", sim.name);
        }
    }
    fn new(name: &'static str, at: u64) -> Sim {
        Sim { name, cursor: String::new(), next_at: at, last: None, shares: BTreeMap::new(), lose_next: false }
    }
    fn tick(&mut self, s: &Arc<dyn Store>, now: u64, ttl: u64, page: usize) {
        if now < self.next_at {
            return;
        }
        let cursor = (!self.cursor.is_empty()).then_some(self.cursor.as_str());
        let g = s.grant(self.name, now, ttl, cursor, page).unwrap();
        if self.lose_next {
            // The answer was written but never arrived (the Envoy gave up
            // waiting): it asks again later with the cursor it has.
            self.lose_next = false;
            self.next_at = now + 1000;
            return;
        }
        if g.full {
            // The first page of a full state: what it leaves out is gone.
            self.shares.clear();
        }
        for b in &g.budgets {
            self.shares.insert(b.scope_id.clone(), b.share_micros);
        }
        for r in &g.removed {
            self.shares.remove(&r.scope_id);
        }
        self.cursor = g.cursor.clone();
        self.next_at = now + if g.more { 100 } else { 1000 };
        self.last = Some(g);
    }
}

fn a_newcomer_gets_its_fair_part_after_envoys_come_and_go(s: Arc<dyn Store>) {
    let budgets: Vec<Budget> = (0..30).map(|i| budget(&format!("b{i:02}"), 1000)).collect();
    s.put_budgets(&budgets, NOW).unwrap();
    let (ttl, page) = (5_000, 4);
    // The bench's sequence: one Envoy alone; a new one fetches its full
    // state and falls silent; 6 s later a probe joins and keeps polling.
    let mut big = Sim::new("big", NOW);
    let mut new = Sim::new("new", NOW + 5_000);
    let mut probe = Sim::new("probe", u64::MAX);
    let mut new_done = false;
    let mut t = NOW;
    while t < NOW + 120_000 {
        big.tick(&s, t, ttl, page);
        if !new_done {
            new.tick(&s, t, ttl, page);
            if new.last.as_ref().is_some_and(|g| !g.more) {
                new_done = true;
                probe.next_at = t + 6_000;
            }
        }
        probe.tick(&s, t, ttl, page);
        t += 100;
    }
    let g = probe.last.clone().expect("the probe polled");
    assert!(!g.full && !g.more && g.budgets.is_empty(), "the probe's deltas empty: {:?}", g.budgets.iter().map(|b| (&b.scope_id, b.share_micros)).collect::<Vec<_>>());
    // Two Envoys active, nothing spent: each holds its part of two of every budget.
    Sim::assert_fair(&[&big, &probe], 30, part(1000, 0, 2));
}

/// The stuck newcomer of `make bench-scale`: an Envoy's full state whose
/// first page took longer than the filter waits (it reclaimed a silent
/// Envoy's million grants) was written but never applied, and the Envoy's
/// old cursor still held, the count of active Envoys being back where it
/// was (2, 1, then 2 again with another Envoy). The ledger believed it held
/// the whole of every budget of that page, and the newcomer got none of
/// them, for good.
fn an_answer_that_never_arrived_is_sent_again(s: Arc<dyn Store>) {
    let budgets: Vec<Budget> = (0..8).map(|i| budget(&format!("b{i}"), 1000)).collect();
    s.put_budgets(&budgets, NOW).unwrap();
    let (ttl, page) = (5_000, 4);
    let mut big = Sim::new("big", NOW);
    let mut gone = Sim::new("gone", NOW + 1_000);
    let mut probe = Sim::new("probe", u64::MAX);
    let mut t = NOW;
    while t < NOW + 60_000 {
        if t == NOW + 8_000 {
            // "gone" fell silent at 3 s: big's next poll is a full state
            // (alone again), and its answer is lost; the probe joins.
            big.next_at = t;
            big.lose_next = true;
            probe.next_at = t + 100;
        }
        big.tick(&s, t, ttl, page);
        if t < NOW + 3_000 {
            gone.tick(&s, t, ttl, page);
        }
        probe.tick(&s, t, ttl, page);
        t += 100;
    }
    Sim::assert_fair(&[&big, &probe], 8, part(1000, 0, 2));
}

fn a_delta_larger_than_a_few_pages_comes_as_the_full_state(s: Arc<dyn Store>) {
    let mut v = View::new(2);
    s.put_budget(&budget("first", 1000), NOW).unwrap();
    v.poll(&s, "n1", NOW);
    // Four pages' worth of changes: still a delta.
    let few: Vec<Budget> = (0..8).map(|i| budget(&format!("few{i}"), 1000)).collect();
    s.put_budgets(&few, NOW).unwrap();
    let g = v.poll(&s, "n1", NOW + 1);
    assert_eq!((g.full, g.budgets.len(), v.pages), (false, 8, 4));
    // One more (a bulk import): the full state, in pages, adds up the same.
    let many: Vec<Budget> = (0..9).map(|i| budget(&format!("many{i}"), 1000)).collect();
    s.put_budgets(&many, NOW).unwrap();
    let g = v.poll(&s, "n1", NOW + 2);
    assert_eq!((g.full, g.budgets.len(), v.pages), (true, 18, 9));
    v.check(&s, "n1", NOW + 2);
    // Many ingest batches (more than the delta's four pages hold budgets) on few
    // budgets: a delta of those budgets, not the full state again (a busy
    // fleet would get nothing but full states).
    for i in 0..30 {
        s.ingest("n1", &[rec(&format!("busy{i}"), if i % 2 == 0 { "few0" } else { "few1" }, 1, 0, 0)], None, NOW + 3).unwrap();
    }
    let g = v.poll(&s, "n1", NOW + 3);
    assert_eq!((g.full, names(&g).1), (false, vec!["few0".to_string(), "few1".to_string()]));
    v.check(&s, "n1", NOW + 3);
    // Use changed on more budgets than four pages: the full state.
    let spread: Vec<UsageRecord> = (0..9).map(|i| rec(&format!("spread{i}"), &format!("many{i}"), 1, 0, 0)).collect();
    s.ingest("n1", &spread, None, NOW + 4).unwrap();
    assert!(v.poll(&s, "n1", NOW + 4).full);
    v.check(&s, "n1", NOW + 4);
}

fn sums_saturate_instead_of_failing(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    let big = i64::MAX as u64 - 5;
    s.ingest("n", &[rec("s1", "t", big, 0, 0)], None, NOW).unwrap();
    s.ingest("n", &[rec("s2", "t", big, 0, 0)], None, NOW).unwrap();
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, i64::MAX as u64);
    assert_eq!(s.ingest("n", &[rec("s3", "t", 1, 0, 0)], None, NOW).unwrap().accepted, 1, "later records still count");
    // Reports, and the recount a budget change runs, sum in SQL: they
    // saturate too. Before, SQLite's SUM raised "integer overflow" and
    // PostgreSQL's CAST "bigint out of range", for good.
    let scope = Some((ScopeType::Team, "t".to_string()));
    let t = s.spend(&SpendFilter { scope: scope.clone(), ..Default::default() }).unwrap();
    assert_eq!((t.requests, t.cost_micros), (3, i64::MAX as u64));
    s.put_budget(&budget("t", 2000), NOW).unwrap();
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, i64::MAX as u64, "recounted, saturated");
    // Exact below the bound, tokens as well as money, with the parts in
    // millions and units both carrying.
    let (a, b) = (4_000_000_000_000_999_999u64, 5_000_000_000_000_999_999u64);
    s.ingest("n", &[rec("e1", "u", a, 999_999, 1), rec("e2", "u", b, 2_000_001, 0)], None, NOW).unwrap();
    let t = s.spend(&SpendFilter { scope: Some((ScopeType::Team, "u".into())), ..Default::default() }).unwrap();
    assert_eq!((t.cost_micros, t.input_tokens, t.output_tokens), (a + b, 3_000_000, 1));
    s.put_budget(&budget("u", 1), NOW).unwrap();
    let u = s.used(ScopeType::Team, "u", start).unwrap();
    assert_eq!((u.micros, u.tokens), (a + b, 3_000_001));
    // A grouped report: each team's row its own sum, one saturated, one exact.
    let rows = s
        .report(&tollgate_control::reports::ReportQuery {
            group_by: vec![tollgate_control::reports::Dim::Team],
            bucket: None,
            from_ms: 0,
            to_ms: i64::MAX as u64,
            filters: vec![],
            top: None,
        })
        .unwrap();
    let by: BTreeMap<_, _> = rows.iter().map(|r| (r.group[0].clone().unwrap_or_default(), r.cost_micros)).collect();
    assert_eq!((by["t"], by["u"]), (i64::MAX as u64, a + b));
    // Records the service accepts (each at most MAX_COST_MICROS, $1 billion)
    // reach the bound too: 9,224 of them.
    use tollgate_protocol::record::MAX_COST_MICROS;
    for batch in 0..10 {
        let recs: Vec<UsageRecord> = (0..1000).map(|i| rec(&format!("v{batch}-{i}"), "v", MAX_COST_MICROS, 0, 0)).collect();
        assert!(recs.iter().all(|r| r.validate().is_ok()));
        s.ingest("n", &recs, None, NOW).unwrap();
    }
    let t = s.spend(&SpendFilter { scope: Some((ScopeType::Team, "v".into())), ..Default::default() }).unwrap();
    assert_eq!((t.requests, t.cost_micros), (10_000, i64::MAX as u64));
}

fn key_changes_replay_to_the_live_key_set(s: Arc<dyn Store>) {
    use std::collections::BTreeSet;
    use tollgate_protocol::state::KeyChange;
    // Applies every change after `since` in pages of `page`, as an Envoy does.
    fn replay(s: &dyn Store, since: &mut u64, page: u32, set: &mut BTreeSet<String>) {
        loop {
            let p = s.key_changes(*since, page).unwrap();
            for c in &p.changes {
                match c {
                    KeyChange::Put { key } => set.insert(key.key_hash.clone()),
                    KeyChange::Del { key_hash } => set.remove(key_hash),
                };
            }
            assert!(p.seq >= *since);
            *since = p.seq;
            if !p.more {
                break;
            }
        }
    }
    let live = |s: &dyn Store| s.keys_page(None, usize::MAX).unwrap().1.into_iter().filter(|k| k.revoked_ms.is_none()).map(|k| k.key_hash).collect::<BTreeSet<_>>();
    assert_eq!(s.state_seqs().unwrap().keys, 0);
    s.create_keys(&(0..7).map(|i| key(&format!("c{i}"), char::from(b'a' + i))).collect::<Vec<_>>()).unwrap();
    let (mut since, mut set) = (0, BTreeSet::new());
    replay(&*s, &mut since, 3, &mut set);
    assert_eq!(set, live(&*s));
    assert_eq!(since, s.state_seqs().unwrap().keys);
    // revoke, rotate twice (the middle hash must not survive), create
    s.revoke_key("c1", NOW).unwrap();
    s.revoke_key("c1", NOW).unwrap(); // again: no change
    s.set_key_hash("c2", &"x".repeat(64)).unwrap();
    s.set_key_hash("c2", &"y".repeat(64)).unwrap();
    s.create_key(&key("c9", 'z')).unwrap();
    replay(&*s, &mut since, 2, &mut set);
    assert_eq!(set, live(&*s));
    assert!(!set.contains(&"b".repeat(64)) && !set.contains(&"c".repeat(64)) && !set.contains(&"x".repeat(64)));
    assert!(set.contains(&"y".repeat(64)) && set.contains(&"z".repeat(64)));
    // a fresh Envoy replaying from 0 gets the same set
    let (mut s0, mut set0) = (0, BTreeSet::new());
    replay(&*s, &mut s0, 1000, &mut set0);
    assert_eq!(set0, set);
    // nothing new: an empty page at the same sequence
    let p = s.key_changes(since, 10).unwrap();
    assert_eq!((p.seq, p.more, p.changes.len()), (since, false, 0));
}

fn cache_economics_sum_over_sum_and_keep_not_reported_apart(s: Arc<dyn Store>) {
    use tollgate_control::reports::{Dim, ReportQuery};
    let with = |id: &str, team: &str, cached: u64, reported: bool, saved: i64| {
        let mut r = rec(id, team, 100, 1000, 10);
        r.usage.cached_input_tokens = cached;
        r.usage.cache_reported = reported;
        r.cache_savings_micros = saved;
        r
    };
    // team x: 400 of 2000 reported input cached, one request paid a write premium
    s.ingest("n", &[with("c1", "x", 400, true, 900), with("c2", "x", 0, true, -125), with("c3", "y", 0, false, 0)], None, NOW).unwrap();
    let q = ReportQuery { group_by: vec![Dim::Team], from_ms: NOW - 1, to_ms: NOW + 1, ..Default::default() };
    let rows = s.report(&q).unwrap();
    let x = rows.iter().find(|r| r.group[0].as_deref() == Some("x")).unwrap();
    let y = rows.iter().find(|r| r.group[0].as_deref() == Some("y")).unwrap();
    assert_eq!((x.cache_hit_rate_permille(), x.cache_savings_micros, x.cache_reported_input_tokens), (Some(200), 775, 2000));
    assert_eq!((y.cache_hit_rate_permille(), y.cache_savings_micros), (None, 0), "not reported is not 0 %");
    let csv = tollgate_control::reports::to_csv(&q, &rows);
    assert!(csv.contains(",20.0,775,0.000775\r\n") && csv.contains(",,0,0.000000\r\n"), "{csv}");
    let total = s.report(&ReportQuery { from_ms: NOW - 1, to_ms: NOW + 1, ..Default::default() }).unwrap();
    assert_eq!(total[0].cache_hit_rate_permille(), Some(200), "requests that did not report are left out of the rate");
}

fn guardrail_findings_answer_who_sent_what_where_and_expire(s: Arc<dyn Store>) {
    use tollgate_control::store::AuditQuery;
    use tollgate_protocol::record::Guardrails;
    let with = |id: &str, team: &str, provider: &str, classes: &[(&str, u64)], action: &str, ts: u64| {
        let mut r = rec(id, team, 1, 1, 1);
        r.ts_ms = ts;
        r.provider = Some(provider.into());
        r.guardrails = Some(Guardrails {
            classes: classes.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            action: action.into(),
            policy: "p1".into(),
            response_classes: Default::default(),
            response_action: None,
            restored: 0,
        });
        r
    };
    // An answer that carried e-mail addresses (the request had nothing).
    let mut answer = with("g5", "labs", "anthropic", &[], "none", NOW);
    if let Some(g) = answer.guardrails.as_mut() {
        g.response_classes = [("email".to_string(), 2)].into();
        g.response_action = Some("redacted".into());
    }
    s.ingest("n", &[
        with("g1", "search", "openai", &[("card", 1)], "blocked", NOW),
        with("g2", "search", "openai", &[("card", 2), ("email", 1)], "blocked", NOW),
        with("g3", "labs", "anthropic", &[("email", 3)], "redacted", NOW),
        with("g4", "labs", "anthropic", &[("card", 1)], "blocked", NOW - 40 * 86_400_000),
        rec("plain", "labs", 1, 1, 1),
        answer,
    ], None, NOW).unwrap();
    // ingesting the same records again adds nothing
    s.ingest("n", &[with("g1", "search", "openai", &[("card", 1)], "blocked", NOW)], None, NOW).unwrap();
    let last_month = AuditQuery { from_ms: NOW - 30 * 86_400_000, to_ms: NOW + 1, class: Some("card".into()), ..Default::default() };
    let rows = s.audit_summary(&last_month).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].team.as_str(), rows[0].provider.as_deref(), rows[0].requests, rows[0].values), ("search", Some("openai"), 2, 3));
    let all = s.audit_summary(&AuditQuery { from_ms: 0, to_ms: NOW + 1, ..Default::default() }).unwrap();
    assert_eq!(all.iter().map(|r| r.requests).sum::<u64>(), 6);
    let found = s.audit_findings(&AuditQuery { from_ms: 0, to_ms: NOW + 1, team: Some("labs".into()), ..Default::default() }, 100).unwrap();
    assert_eq!(
        found.iter().map(|f| (f.record_id.as_str(), f.direction.as_str(), f.class.as_str(), f.count, f.action.as_str())).collect::<Vec<_>>(),
        vec![("g4", "request", "card", 1, "blocked"), ("g3", "request", "email", 3, "redacted"), ("g5", "response", "email", 2, "redacted")]
    );
    let answers = AuditQuery { from_ms: 0, to_ms: NOW + 1, direction: Some("response".into()), ..Default::default() };
    let rows = s.audit_summary(&answers).unwrap();
    assert_eq!(rows.iter().map(|r| (r.team.as_str(), r.direction.as_str(), r.values)).collect::<Vec<_>>(), vec![("labs", "response", 2)]);
    // retention
    assert_eq!(s.purge_audit(NOW - 30 * 86_400_000).unwrap(), 1);
    assert_eq!(s.audit_findings(&AuditQuery { from_ms: 0, to_ms: NOW + 1, ..Default::default() }, 100).unwrap().len(), 5);
}

fn the_guardrail_policy_has_one_current_version_and_a_history(s: Arc<dyn Store>) {
    use tollgate_protocol::guard::PolicyDoc;
    assert_eq!((s.state_seqs().unwrap().guardrails, s.guard_policy().unwrap().policy), (0, None), "never set");
    let p1: PolicyDoc = serde_json::from_value(serde_json::json!({"version": "v1", "actions": {"email": "redact"}, "responses": "observe"})).unwrap();
    let d = s.set_guard_policy(Some(&p1), NOW).unwrap();
    assert_eq!((d.seq, d.policy.as_ref()), (1, Some(&p1)));
    let p2: PolicyDoc = serde_json::from_value(serde_json::json!({"version": "v2", "custom": [{"name": "code", "words": ["Bluebird"]}], "restore": true})).unwrap();
    s.set_guard_policy(Some(&p2), NOW + 1).unwrap();
    let now = s.guard_policy().unwrap();
    assert_eq!((now.seq, now.policy, now.updated_ms), (2, Some(p2), NOW + 1), "the newest is in force, exactly as put");
    let cleared = s.set_guard_policy(None, NOW + 2).unwrap();
    assert_eq!((cleared.seq, s.guard_policy().unwrap().policy, s.state_seqs().unwrap().guardrails), (3, None, 3), "cleared is a change too");
}

fn prompt_versions_are_immutable_and_labels_move(s: Arc<dyn Store>) {
    use tollgate_protocol::prompts::{content_hash, PromptContent};
    let c = |sys: &str| serde_json::from_value::<PromptContent>(serde_json::json!({"system": sys, "messages": [{"role": "user", "content": "Q: {{q}}"}]})).unwrap();
    assert_eq!((s.state_seqs().unwrap().prompts, s.prompts_current().unwrap().prompts.len()), (0, 0));
    let (v1, created) = s.add_prompt_version("support", &c("You help."), "ann", Some("first"), NOW).unwrap();
    assert_eq!((v1.version, created, v1.hash.clone()), (1, true, content_hash(&c("You help."))));
    let (again, created) = s.add_prompt_version("support", &c("You help."), "bob", None, NOW + 1).unwrap();
    assert_eq!((again.version, created, again.created_by.as_str()), (1, false, "ann"), "same content, same version");
    let (v2, _) = s.add_prompt_version("support", &c("You help, briefly."), "bob", None, NOW + 2).unwrap();
    assert_eq!(v2.version, 2);
    s.add_prompt_version("billing", &c("Billing."), "ann", None, NOW + 3).unwrap();
    s.set_prompt_label("support", "production", 1, "ann", NOW + 4).unwrap();
    s.set_prompt_label("support", "production", 2, "bob", NOW + 5).unwrap();
    assert!(matches!(s.set_prompt_label("support", "staging", 9, "bob", NOW), Err(StoreError::NotFound(_))));
    assert!(matches!(s.set_prompt_label("nope", "production", 1, "bob", NOW), Err(StoreError::NotFound(_))));
    let view = s.prompt("support").unwrap().unwrap();
    assert_eq!(view.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(view.versions[0].content, c("You help."), "a version keeps its content");
    assert_eq!(view.labels.get("production"), Some(&2));
    let h: Vec<(String, Option<u32>, Option<String>, String)> = view.history.iter().map(|e| (e.what.clone(), e.version, e.label.clone(), e.by.clone())).collect();
    assert_eq!(h, vec![
        ("version".into(), Some(1), None, "ann".into()), ("version".into(), Some(2), None, "bob".into()),
        ("label".into(), Some(1), Some("production".into()), "ann".into()), ("label".into(), Some(2), Some("production".into()), "bob".into()),
    ]);
    let doc = s.prompts_current().unwrap();
    assert_eq!(doc.seq, s.state_seqs().unwrap().prompts);
    assert_eq!(doc.seq, 5, "every change numbered: 3 versions, 2 label moves, and not the unchanged push");
    assert_eq!(doc.prompts.iter().map(|p| (p.name.as_str(), p.versions.len(), p.labels.get("production").copied())).collect::<Vec<_>>(),
               vec![("billing", 1, None), ("support", 2, Some(2))]);
    let list = s.list_prompts().unwrap();
    assert_eq!((list[1].name.as_str(), list[1].latest, list[1].updated_ms), ("support", 2, NOW + 5));
    assert!(s.prompt("nope").unwrap().is_none());
}

fn cache_misses_sum_per_feature_and_say_why(s: Arc<dyn Store>) {
    use tollgate_control::store::CacheMissQuery;
    use tollgate_protocol::record::CacheMiss;
    let miss = |id: &str, feature: &str, reason: &str, lost: u64| {
        let mut r = rec(id, "search", 10, 5000, 10);
        r.feature = Some(feature.into());
        r.prompt_version = Some("support@3#abcdef12".into());
        r.cache_miss = Some(CacheMiss { reason: reason.into(), segment: (reason == "prefix_changed").then(|| "system".into()), offset: Some(0), lost_micros: lost });
        r
    };
    s.ingest("n", &[miss("c1", "chat", "prefix_changed", 1_000), miss("c2", "chat", "prefix_changed", 2_500), miss("c3", "search", "not_cached", 400),
                    rec("plain", "search", 1, 1, 1)], None, NOW).unwrap();
    s.ingest("n", &[miss("c1", "chat", "prefix_changed", 1_000)], None, NOW).unwrap();
    let rows = s.cache_misses(&CacheMissQuery { from_ms: 0, to_ms: NOW + 1, ..Default::default() }).unwrap();
    assert_eq!(rows.iter().map(|r| (r.feature.as_deref(), r.reason.as_str(), r.requests, r.lost_micros)).collect::<Vec<_>>(),
               vec![(Some("chat"), "prefix_changed", 2, 3_500), (Some("search"), "not_cached", 1, 400)], "costliest first, each record once");
    let sentence = rows[0].sentence();
    assert!(sentence.starts_with("feature chat (prompt support@3#abcdef12) lost $0.003500 to cache misses on 2 requests since "), "{sentence}");
    assert!(sentence.ends_with("the system prompt's first bytes change on every request"), "{sentence}");
    let only = s.cache_misses(&CacheMissQuery { from_ms: 0, to_ms: NOW + 1, feature: Some("search".into()), ..Default::default() }).unwrap();
    assert_eq!(only.len(), 1);
}

fn a_new_prompt_version_that_loses_the_cache_raises_one_alert(s: Arc<dyn Store>) {
    let call = |id: String, version: &str, cached: u64, ts: u64| {
        let mut r = rec(&id, "search", 10, 1000, 10);
        r.ts_ms = ts;
        r.feature = Some("chat".into());
        r.prompt_version = Some(version.into());
        r.usage.cached_input_tokens = cached;
        r.usage.cache_reported = true;
        r
    };
    let mut batch: Vec<UsageRecord> = (0..5).map(|i| call(format!("a{i}"), "support@1#aaaaaaaa", 600, NOW - 3_600_000 + i)).collect();
    // the same feature on another version that keeps its cache: no alert
    batch.extend((0..5).map(|i| call(format!("k{i}"), "support@0#00000000", 700, NOW - 7_200_000 + i)));
    s.ingest("n", &batch, None, NOW).unwrap();
    assert_eq!(s.check_cache_drops(NOW).unwrap(), 0, "hit rate 60 % after 70 %: not a drop by half");
    let later: Vec<UsageRecord> = (0..5).map(|i| call(format!("b{i}"), "support@2#bbbbbbbb", 0, NOW - 60_000 + i)).collect();
    s.ingest("n", &later, None, NOW).unwrap();
    assert_eq!(s.check_cache_drops(NOW).unwrap(), 1);
    assert_eq!(s.check_cache_drops(NOW + 1).unwrap(), 0, "once per feature and version");
    let alerts = s.list_cache_alerts(10).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!((a.feature.as_str(), a.prompt_version.as_str(), a.previous_version.as_str()), ("chat", "support@2#bbbbbbbb", "support@1#aaaaaaaa"));
    assert_eq!((a.hit_before_permille, a.hit_after_permille, a.requests_after, a.delivered_ms), (600, 0, 5, None));
    let due = s.due_cache_alerts(NOW).unwrap();
    assert_eq!(due.len(), 1);
    s.cache_alert_attempted(due[0].id, true, None, NOW, NOW).unwrap();
    assert!(s.due_cache_alerts(NOW + 10).unwrap().is_empty());
    assert_eq!(s.list_cache_alerts(10).unwrap()[0].delivered_ms, Some(NOW));
}

// ---- PostgreSQL only ----

/// Ids compare in byte order on PostgreSQL whatever the server's
/// collation (migration 0020), as on SQLite: a state's budgets, walked a
/// page at a time, come in the same order from both (ICU's `en-US` puts
/// `a` before `B`, bytes put `B` first), and the text columns ingest
/// indexes are byte-ordered (under the server's collation each index entry
/// a record wrote compared by the locale's rules: the slower ingest).
#[test]
fn postgres_compares_ids_in_byte_order_whatever_the_servers_collation() {
    let url = support::pg::fresh_database_with("LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0");
    let rt = &support::pg::server().rt;
    let pg: Arc<dyn Store> = Arc::new(rt.block_on(tollgate_control::postgres::PgStore::connect(&url)).unwrap());
    let (lite, _dir) = sqlite();
    let ids = ["b", "B", "a", "_z", "Z", "a-2", "A"];
    let mut bytes: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    bytes.sort();
    for s in [&pg, &lite] {
        for id in ids {
            s.put_budget(&budget(id, 1000), NOW).unwrap();
        }
        let records: Vec<UsageRecord> = ids.iter().enumerate().map(|(i, t)| rec(&format!("r{i}"), t, 5, 1, 1)).collect();
        s.ingest("n1", &records, None, NOW).unwrap();
        let walked = View::new(2).poll(s, "n1", NOW);
        assert_eq!(names(&walked).1, bytes);
        assert!(walked.budgets.iter().all(|b| b.used_micros == 5), "each team's record counted once");
    }
    let loose: Vec<String> = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let rows = c
            .query(
                "SELECT table_name || '.' || column_name FROM information_schema.columns
                  WHERE (table_name, column_name) IN (('usage', 'id'), ('usage', 'key_id'), ('usage', 'team'), ('usage', 'project'),
                        ('usage', 'session_id'), ('budgets', 'scope_id'), ('budget_usage', 'scope_id'), ('budget_usage_node', 'scope_id'),
                        ('budget_usage_node', 'node'), ('budget_grants', 'scope_id'), ('budget_grants', 'node'), ('nodes', 'node'),
                        ('guard_findings', 'record_id'), ('cache_misses', 'record_id'), ('json_checks', 'record_id'), ('eval_items', 'record_id'))
                    AND collation_name IS DISTINCT FROM 'C'",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    });
    assert!(loose.is_empty(), "compared under the server's collation: {loose:?}");
}

/// A table filled in bulk gets planner statistics within one check (the
/// service checks every few seconds), not at autovacuum's next round, and
/// is not measured again until it changes again.
#[test]
fn postgres_statistics_follow_a_bulk_import() {
    let s = support::pg::store();
    let batch: Vec<Budget> = (0..3000).map(|i| Budget::monthly(ScopeType::Key, &format!("k{i}"), NOW)).collect();
    s.put_budgets(&batch, NOW).unwrap();
    // The server's table counters are flushed within a second or so of the commit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let measured = loop {
        let t = s.refresh_statistics().unwrap();
        if t.iter().any(|t| t == "budgets") || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(measured.iter().any(|t| t == "budgets"), "{measured:?}");
    assert!(!measured.iter().any(|t| t == "usage"), "only the tables the state poll reads: {measured:?}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let again = s.refresh_statistics().unwrap();
    assert!(!again.iter().any(|t| t == "budgets"), "measured once: {again:?}");
}

/// Two replicas over one PostgreSQL: budgets one sets or deletes count in
/// the other's next batch (each replica's ingest keeps the budgets it
/// read, and checks them against the database's in every batch).
#[test]
fn postgres_replicas_count_against_each_others_budget_changes_at_once() {
    let url = support::pg::fresh_database();
    let rt = &support::pg::server().rt;
    let (one, two) = (rt.block_on(tollgate_control::postgres::PgStore::connect(&url)).unwrap(), rt.block_on(tollgate_control::postgres::PgStore::connect(&url)).unwrap());
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    one.ingest("n", &[rec("1", "x", 10, 0, 0)], None, NOW).unwrap();
    two.put_budget(&budget("x", 1000), NOW).unwrap();
    one.ingest("n", &[rec("2", "x", 5, 0, 0)], None, NOW).unwrap();
    assert_eq!(two.used(ScopeType::Team, "x", start).unwrap().micros, 15);
    two.delete_budget(ScopeType::Team, "x").unwrap();
    one.ingest("n", &[rec("3", "x", 7, 0, 0)], None, NOW).unwrap();
    assert_eq!(one.used(ScopeType::Team, "x", start).unwrap().micros, 15);
}

/// A budget set while another replica's batch is being counted (it holds
/// the counting lock, has read the budgets without this one, and its
/// records are not yet committed): the budget's use includes that batch.
/// Before, the budget's recount ran at once, missed the uncommitted
/// records, and the batch counted against no budget: its spend was lost
/// to the budget for the whole period.
#[test]
fn a_budget_set_while_a_batch_is_being_counted_counts_that_batch() {
    let url = support::pg::fresh_database();
    let rt = &support::pg::server().rt;
    let connect = || rt.block_on(tollgate_control::postgres::PgStore::connect(&url)).unwrap();
    let paused = Arc::new(Pausing { db: connect().into_db(), armed: Default::default(), held: Barrier::new(2), go: Barrier::new(2) });
    let one = Arc::new(tollgate_control::ledger::Ledger::new(SharedDb(paused.clone())));
    let two = connect();
    let start = budget("x", 0).bounds(NOW).unwrap().0;
    paused.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let batch = std::thread::spawn({
        let one = one.clone();
        move || one.ingest("n", &[rec("1", "x", 10, 0, 0)], None, NOW).unwrap()
    });
    // The batch has run every statement and holds its transaction open.
    paused.held.wait();
    let setting = std::thread::spawn(move || {
        two.put_budget(&budget("x", 1000), NOW).unwrap();
        two
    });
    // Long enough for the budget to be set, had it not waited for the batch.
    std::thread::sleep(std::time::Duration::from_millis(700));
    paused.go.wait();
    batch.join().unwrap();
    let two = setting.join().unwrap();
    assert_eq!(two.used(ScopeType::Team, "x", start).unwrap().micros, 10);
    // And the next batch counts on top of it.
    one.ingest("n", &[rec("2", "x", 5, 0, 0)], None, NOW).unwrap();
    assert_eq!(two.used(ScopeType::Team, "x", start).unwrap().micros, 15);
}

/// A database whose next write transaction, once `armed`, stops before
/// committing: it meets `held`, then waits at `go`.
struct Pausing<D> {
    db: D,
    armed: std::sync::atomic::AtomicBool,
    /// Two parties each: the paused transaction and the test.
    held: Barrier,
    go: Barrier,
}

impl<D: tollgate_control::db::Db> tollgate_control::db::Db for Pausing<D> {
    fn run<T>(&self, kind: tollgate_control::db::TxKind, f: impl FnOnce(&mut dyn tollgate_control::db::Tx) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.db.run(kind, |tx| {
            let out = f(tx);
            if kind == tollgate_control::db::TxKind::Ingest && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                self.held.wait();
                self.go.wait();
            }
            out
        })
    }
}

/// `Ledger` owns its database; the test keeps a handle on it (to count or
/// pause its statements).
struct SharedDb<D>(Arc<D>);

impl<D: tollgate_control::db::Db> tollgate_control::db::Db for SharedDb<D> {
    fn run<T>(&self, kind: tollgate_control::db::TxKind, f: impl FnOnce(&mut dyn tollgate_control::db::Tx) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.0.run(kind, f)
    }
}

// ---- SQLite only ----

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


/// A database written by Tollgate before versioned migrations (the
/// baseline schema, one number per record) is migrated in place: records,
/// keys and duplicates detection survive, batch numbers continue.
#[test]
fn a_database_from_before_migrations_is_migrated_in_place() {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("old.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(tollgate_control::sqlite::MIGRATIONS[0].sql).unwrap();
        c.execute_batch(
            "INSERT INTO keys VALUES ('k1', 'h1', 't', 'p', NULL, '[]', '{}', 1, NULL);
             INSERT INTO usage (id, node, ts_ms, key_id, team, project, status, outcome, input_tokens, cached_input_tokens,
                 cache_write_tokens, output_tokens, reasoning_tokens, cost_micros, record)
             VALUES ('old1', 'n', 1795885000000, 'k1', 't', 'p', 200, 'ok', 1, 0, 0, 1, 0, 10, '{}'),
                    ('old2', 'n', 1795885000000, 'k1', 't', 'p', 200, 'ok', 1, 0, 0, 1, 0, 20, '{}');",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.spend(&SpendFilter::default()).unwrap().cost_micros, 30);
    assert_eq!(s.seq().unwrap(), 2);
    assert_eq!(s.get_key("k1").unwrap().unwrap().team, "t");
    let a = s.ingest("n", &[rec("old1", "t", 10, 1, 1), rec("new", "t", 5, 0, 0)], None, NOW).unwrap();
    assert_eq!((a.accepted, a.duplicates, a.seq), (1, 1, 3));
    drop(s);
    // opening again applies nothing
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.spend(&SpendFilter::default()).unwrap().requests, 3);
}

#[test]
fn a_database_from_a_newer_tollgate_is_refused_on_both_backends() {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("new.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("INSERT INTO schema_migrations VALUES (999, 'from_the_future', 1)")
        .unwrap();
    let e = SqliteStore::open(&path).err().expect("refused");
    assert!(e.to_string().contains("schema version 999"), "{e}");

    let url = support::pg::fresh_database();
    let rt = &support::pg::server().rt;
    drop(rt.block_on(tollgate_control::postgres::PgStore::connect(&url)).unwrap());
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c.batch_execute("INSERT INTO schema_migrations VALUES (999, 'from_the_future', 1)").await.unwrap();
    });
    let e = rt.block_on(tollgate_control::postgres::PgStore::connect(&url)).err().expect("refused");
    assert!(e.to_string().contains("schema version 999"), "{e}");
}

/// Tombstones of deleted budgets go once no delta can reach them (a
/// cursor that far behind gets the full state): deleting budgets for
/// years never grows the table past `DELTA_MAX_CHANGES` rows, and a
/// delta at the horizon still carries every removal it needs. `sql` runs
/// a statement on the store's database and returns the first column.
fn tombstones_are_kept_exactly_as_long_as_a_delta_can_need_them(s: Arc<dyn Store>, sql: &dyn Fn(&str) -> Vec<String>) {
    let horizon = tollgate_control::ledger::DELTA_MAX_CHANGES;
    for t in ["a", "b", "c", "d"] {
        s.put_budget(&budget(t, 1000), NOW).unwrap();
    }
    let mut v = View::new(tollgate_control::ledger::STATE_PAGE_MAX);
    v.poll(&s, "n1", NOW);
    s.delete_budget(ScopeType::Team, "a").unwrap();
    // Budget changes up to the horizon (as a bulk import would make them).
    sql(&format!("UPDATE budget_seq SET seq = seq + {}", horizon - 2));
    s.delete_budget(ScopeType::Team, "b").unwrap();
    assert_eq!(sql("SELECT scope_id FROM budget_removed ORDER BY scope_id"), ["a", "b"], "a's tombstone is still within reach");
    let g = v.poll(&s, "n1", NOW + 1);
    assert_eq!((g.full, names(&g).2), (false, vec!["a".to_string(), "b".to_string()]), "a delta spanning the horizon carries both");
    v.check(&s, "n1", NOW + 1);
    // One more change: a's tombstone is out of every delta's reach and goes.
    s.delete_budget(ScopeType::Team, "c").unwrap();
    assert_eq!(sql("SELECT scope_id FROM budget_removed ORDER BY scope_id"), ["b", "c"]);
    let g = v.poll(&s, "n1", NOW + 2);
    assert_eq!((g.full, names(&g).2), (false, vec!["c".to_string()]));
    v.check(&s, "n1", NOW + 2);
    // A cursor from before a's deletion is past the horizon: the full state, without a.
    let old = s.grant("n1", NOW + 3, 60_000, None, tollgate_control::ledger::STATE_PAGE_MAX).unwrap();
    assert_eq!(names(&old), (true, vec!["d".to_string()], vec![]));
}

#[test]
fn tombstones_are_kept_exactly_as_long_as_a_delta_can_need_them_on_both_backends() {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("t.db");
    let lite: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    tombstones_are_kept_exactly_as_long_as_a_delta_can_need_them(lite, &|q| {
        let mut st = c.prepare(q).unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            if n > 0 {
                out.push(r.get::<_, String>(0).unwrap());
            }
        }
        out
    });

    let url = support::pg::fresh_database();
    let rt = &support::pg::server().rt;
    let pg: Arc<dyn Store> = Arc::new(rt.block_on(tollgate_control::postgres::PgStore::connect(&url)).unwrap());
    let client = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c
    });
    tombstones_are_kept_exactly_as_long_as_a_delta_can_need_them(pg, &|q| {
        rt.block_on(client.query(q, &[])).unwrap().iter().map(|r| r.get::<_, String>(0)).collect()
    });
}

#[test]
fn postgres_leaves_brin_summaries_to_vacuum_and_time_windows_still_count_every_record() {
    // With autosummarize, every block range ingest filled queued an
    // autovacuum work item; under sustained ingest the queue was full and
    // each refusal logged the whole multi-row INSERT (migration 0012).
    let url = support::pg::fresh_database();
    let rt = &support::pg::server().rt;
    let s = rt.block_on(tollgate_control::postgres::PgStore::connect(&url)).unwrap();
    for b in 0..4u64 {
        let batch: Vec<UsageRecord> =
            (0..500u64).map(|i| UsageRecord { ts_ms: NOW + b * 500 + i, ..rec(&format!("brin-{b}-{i}"), "t", 1, 1, 1) }).collect();
        s.ingest("n", &batch, None, NOW).unwrap();
    }
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let opts: Vec<String> =
            c.query_one("SELECT reloptions FROM pg_class WHERE relname = 'usage_ts_brin'", &[]).await.unwrap().get(0);
        assert!(opts.iter().any(|o| o == "autosummarize=off"), "{opts:?}");
        // Ranges nobody summarised yet are scanned: a window still sees every record.
        c.batch_execute("SET enable_seqscan = off").await.unwrap();
        let (from, to) = (i64::try_from(NOW + 100).unwrap(), i64::try_from(NOW + 1_899).unwrap());
        let n: i64 = c.query_one("SELECT COUNT(*) FROM usage WHERE ts_ms BETWEEN $1 AND $2", &[&from, &to]).await.unwrap().get(0);
        assert_eq!(n, 1_800);
    });
    assert_eq!(s.spend(&SpendFilter::default()).unwrap().requests, 2_000);
}

/// Guardrail findings, cache misses, JSON checks and captures go in with
/// multi-row statements cut into a few sizes (`db::statement_chunks`):
/// batches on each side of every cut keep every row, once, and a batch
/// sent again adds none.
fn findings_of_batches_of_every_size_are_stored_once(s: Arc<dyn Store>) {
    use tollgate_control::store::{AuditQuery, CacheMissQuery};
    use tollgate_protocol::record::{CacheMiss, Capture, Guardrails, JsonCheck};
    let with_findings = |id: String| {
        let mut r = rec(&id, "t", 1, 1, 1);
        r.feature = Some("summarise".into());
        r.guardrails = Some(Guardrails {
            classes: [("email".to_string(), 1), ("phone".to_string(), 2)].into(),
            action: "observed".into(),
            policy: "p1".into(),
            response_classes: [("card".to_string(), 1)].into(),
            response_action: Some("observed".into()),
            restored: 0,
        });
        r.cache_miss = Some(CacheMiss { reason: "prefix_changed".into(), segment: Some("system".into()), offset: Some(7), lost_micros: 2 });
        r.json_check = Some(JsonCheck { valid: true, repaired: false, error: None });
        r.capture = Some(Capture { request: format!("{{\"q\":\"{id}\"}}"), response: "{}".into() });
        r
    };
    let sizes = [1usize, 2, 3, 255, 256, 257, 499, 500, 501, 1023];
    let mut batches = Vec::new();
    for (b, n) in sizes.iter().enumerate() {
        let batch: Vec<UsageRecord> = (0..*n).map(|i| with_findings(format!("f{b}-{i}"))).collect();
        let ack = s.ingest("n", &batch, None, NOW).unwrap();
        assert_eq!((ack.accepted, ack.duplicates), (*n as u64, 0), "batch of {n}");
        batches.push(batch);
    }
    // Sent again (a retry), and once more with new records among the old.
    assert_eq!(s.ingest("n", &batches[5], None, NOW).unwrap().accepted, 0);
    let mut mixed = batches[6].clone();
    mixed.extend((0..3).map(|i| with_findings(format!("late-{i}"))));
    let ack = s.ingest("n", &mixed, None, NOW).unwrap();
    assert_eq!((ack.accepted, ack.duplicates), (3, 499));
    let total: u64 = sizes.iter().sum::<usize>() as u64 + 3;
    let q = AuditQuery { from_ms: NOW - 1000, to_ms: NOW + 1000, class: None, team: None, provider: None, action: None, direction: None };
    let per_class: BTreeMap<(String, String), (u64, u64)> =
        s.audit_summary(&q).unwrap().into_iter().map(|a| ((a.direction, a.class), (a.requests, a.values))).collect();
    let expected: BTreeMap<(String, String), (u64, u64)> = [
        (("request".to_string(), "email".to_string()), (total, total)),
        (("request".to_string(), "phone".to_string()), (total, 2 * total)),
        (("response".to_string(), "card".to_string()), (total, total)),
    ]
    .into();
    assert_eq!(per_class, expected);
    let misses = s.cache_misses(&CacheMissQuery { from_ms: NOW - 1000, to_ms: NOW + 1000, team: None, feature: None }).unwrap();
    assert_eq!(misses.iter().map(|m| (m.requests, m.lost_micros)).collect::<Vec<_>>(), [(total, 2 * total)]);
    let checks = s.json_compliance(NOW - 1000, NOW + 1000).unwrap();
    assert_eq!(checks.iter().map(|c| (c.asked, c.valid)).collect::<Vec<_>>(), [(total, total)]);
    let items = s.eval_items("summarise", 10_000).unwrap();
    assert_eq!(items.len() as u64, total);
    assert!(items.iter().any(|i| i.record_id == "late-2" && i.request == "{\"q\":\"late-2\"}"));
}

/// Every statement text the ledger sends, counted: the database keeps one
/// prepared statement per text (PostgreSQL for the connection's life).
struct Counting<D> {
    db: D,
    texts: std::sync::Mutex<std::collections::HashSet<String>>,
}

struct CountingTx<'a> {
    tx: &'a mut dyn tollgate_control::db::Tx,
    texts: &'a std::sync::Mutex<std::collections::HashSet<String>>,
}

impl CountingTx<'_> {
    fn seen(&self, sql: &str) {
        self.texts.lock().unwrap().insert(sql.to_string());
    }
}

impl tollgate_control::db::Tx for CountingTx<'_> {
    fn json_pairs(&self, table: &str, col: &str, filter: &str) -> String {
        self.tx.json_pairs(table, col, filter)
    }
    fn execute(&mut self, sql: &str, args: &[tollgate_control::db::Arg<'_>]) -> Result<u64, StoreError> {
        self.seen(sql);
        self.tx.execute(sql, args)
    }
    fn query(&mut self, sql: &str, args: &[tollgate_control::db::Arg<'_>]) -> Result<Vec<tollgate_control::db::Row>, StoreError> {
        self.seen(sql);
        self.tx.query(sql, args)
    }
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.tx.batch(sql)
    }
}

impl<D: tollgate_control::db::Db> tollgate_control::db::Db for Counting<D> {
    fn run<T>(&self, kind: tollgate_control::db::TxKind, f: impl FnOnce(&mut dyn tollgate_control::db::Tx) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.db.run(kind, |tx| f(&mut CountingTx { tx, texts: &self.texts }))
    }
}

#[test]
fn statements_stay_few_whatever_the_batch_sizes() {
    let dir = tempdir::Dir::new();
    let db = tollgate_control::sqlite::SqliteDb::open(&dir.path.join("t.db")).unwrap();
    tollgate_control::db::migrate(&db, tollgate_control::sqlite::MIGRATIONS, NOW).unwrap();
    let counting = Arc::new(Counting { db, texts: Default::default() });
    let store = tollgate_control::ledger::Ledger::new(SharedDb(counting.clone()));
    let budgets: Vec<Budget> = (0..200).map(|i| budget(&format!("t{i}"), 1_000_000)).collect();
    // Envoys send batches of every size (what gathered in a flush), and
    // budgets come in imports of every size: before, each size was a
    // statement text of its own (500 for the ingest's INSERT alone).
    for n in 1..=200usize {
        let batch: Vec<UsageRecord> = (0..n)
            .map(|i| {
                let mut r = rec(&format!("b{n}-{i}"), &format!("t{}", i % 200), 1, 1, 1);
                r.cache_miss = Some(tollgate_protocol::record::CacheMiss { reason: "prefix_changed".into(), segment: None, offset: None, lost_micros: 1 });
                r
            })
            .collect();
        store.ingest("n", &batch, None, NOW).unwrap();
        if n % 3 == 0 {
            store.put_budgets(budgets.get(..n).unwrap(), NOW).unwrap();
            store.grant("n", NOW, 60_000, None, n).unwrap();
        }
    }
    // Up to 300: 3,012 texts before, 110 now.
    let texts = counting.texts.lock().unwrap().len();
    assert!(texts <= 160, "{texts} statement texts");
}

