//! Ingest: each record stored and counted once, against the budgets of
//! its scopes and periods, whatever batches, replicas and budget changes
//! run beside it; thresholds alert once; sums saturate.

use super::*;

pub(super) fn ingest_is_idempotent_by_record_id(s: Arc<dyn Store>) {
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
pub(super) fn grouped_batches_are_acknowledged_one_by_one(s: Arc<dyn Store>) {
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
pub(super) fn concurrent_batches_with_the_same_ids_count_each_record_once(s: Arc<dyn Store>) {
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
pub(super) fn envoys_batches_and_budget_changes_side_by_side_count_every_record_without_deadlock(s: Arc<dyn Store>) {
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

pub(super) fn budgets_count_their_scope_and_period_and_recount_on_change(s: Arc<dyn Store>) {
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
pub(super) fn budgets_set_in_bulk_recount_each_scope_in_its_own_period(s: Arc<dyn Store>) {
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

pub(super) fn a_batch_counts_against_its_own_scopes_among_many_budgets(s: Arc<dyn Store>) {
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
pub(super) fn budgets_set_changed_or_deleted_between_batches_count_from_the_next_batch(s: Arc<dyn Store>) {
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

pub(super) fn thresholds_raise_one_alert_each_per_period(s: Arc<dyn Store>) {
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

pub(super) fn sums_saturate_instead_of_failing(s: Arc<dyn Store>) {
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
