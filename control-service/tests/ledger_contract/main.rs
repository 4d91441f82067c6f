//! The ledger's contract, run against both backends: a real SQLite file
//! and a real PostgreSQL (started by `support/pg.rs`). Every flow is one
//! function taking the store, in the module of its topic; `contract!` runs
//! each on both. What only one backend has is in `backends.rs`.

#[path = "../support/mod.rs"]
mod support;

mod backends;
mod counting;
mod envoys;
mod grants;
mod insights;
mod keys;
mod reports;

use counting::*;
use envoys::*;
use grants::*;
use insights::*;
use keys::*;
use reports::*;

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

fn names(g: &tollgate_control::store::GrantSnapshot) -> (bool, Vec<String>, Vec<String>) {
    (g.full, g.budgets.iter().map(|b| b.scope_id.clone()).collect(), g.removed.iter().map(|r| r.scope_id.clone()).collect())
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

/// `Ledger` owns its database; the test keeps a handle on it (to count or
/// pause its statements).
struct SharedDb<D>(Arc<D>);

impl<D: tollgate_control::db::Db> tollgate_control::db::Db for SharedDb<D> {
    fn run<T>(&self, kind: tollgate_control::db::TxKind, f: impl FnOnce(&mut dyn tollgate_control::db::Tx) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.0.run(kind, f)
    }
}
