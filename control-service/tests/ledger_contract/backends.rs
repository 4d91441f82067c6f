//! What only one backend has (PostgreSQL's collation, statistics,
//! replicas, locks and BRIN summaries; SQLite reopening and migrating a file)
//! and the tombstones both keep.

use super::*;

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
