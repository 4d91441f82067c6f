//! The ledger: keys, budgets, grants, usage, reports, budget requests and
//! alerts, written once over [`Db`]. The backends (`sqlite.rs`,
//! `postgres.rs`) hold only connection handling and schema migrations.
//!
//! Rooms: `rows.rs` (columns ↔ types), `keys.rs`, `budgets.rs` (limits,
//! recount, thresholds), `grants.rs` (shares, budget deltas), `ingest.rs` (records counted once),
//! `reports.rs` (spend and grouped reports), `requests.rs` (increase
//! requests and alert delivery), `audit.rs` (guardrails: the audit trail
//! and the fleet's policy), `prompts.rs` (the prompt registry),
//! `cache_misses.rs` (why prompt caches were cold), `evals.rs` (JSON
//! compliance, evaluation sets and runs, the auto router).

mod audit;
mod cache_misses;
mod evals;
mod prompts;
mod budget_cache;
mod budgets;
mod grants;
pub use grants::{DELTA_MAX_CHANGES, STATE_PAGE_MAX};
mod ingest;
mod keys;
mod reports;
mod requests;
mod rows;

use tollgate_protocol::record::UsageRecord;
use tollgate_protocol::state::{IngestAck, KeyChanges, ScopeType};

use crate::db::{Db, TxKind};
use crate::reports::{ReportQuery, ReportRow};
use crate::store::*;

/// The ledger over one database.
pub struct Ledger<D> {
    db: D,
    /// The budgets ingest counts against, between batches (`budget_cache.rs`).
    budgets: std::sync::Mutex<budget_cache::BudgetCache>,
}

impl<D: Db> Ledger<D> {
    /// A ledger over a database whose schema is already migrated.
    pub fn new(db: D) -> Ledger<D> {
        Ledger { db, budgets: Default::default() }
    }
    /// The database, to run the ledger over it wrapped (tests that count
    /// or pause its statements).
    pub fn into_db(self) -> D {
        self.db
    }
}

impl<D: Db> Store for Ledger<D> {
    fn create_key(&self, key: &KeyRow) -> Result<()> {
        self.db.run(TxKind::Keys, |tx| keys::create(tx, key))
    }
    fn create_keys(&self, batch: &[KeyRow]) -> Result<()> {
        self.db.run(TxKind::Keys, |tx| keys::create_many(tx, batch))
    }
    fn key_changes(&self, since: u64, limit: u32) -> Result<KeyChanges> {
        self.db.run(TxKind::Read, |tx| keys::changes(tx, since, limit))
    }
    fn keys_page(&self, after: Option<&str>, limit: usize) -> Result<(u64, Vec<KeyRow>)> {
        self.db.run(TxKind::Read, |tx| Ok((keys::count(tx)?, keys::page(tx, after, limit)?)))
    }
    fn get_key(&self, id: &str) -> Result<Option<KeyRow>> {
        self.db.run(TxKind::Read, |tx| keys::by_id(tx, id))
    }
    fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRow>> {
        self.db.run(TxKind::Read, |tx| keys::by_hash(tx, key_hash))
    }
    fn revoke_key(&self, id: &str, now_ms: u64) -> Result<()> {
        self.db.run(TxKind::Keys, |tx| keys::revoke(tx, id, now_ms))
    }
    fn set_key_hash(&self, id: &str, key_hash: &str) -> Result<()> {
        self.db.run(TxKind::Keys, |tx| keys::set_hash(tx, id, key_hash))
    }

    fn put_budget(&self, budget: &Budget, now_ms: u64) -> Result<()> {
        self.db.run(TxKind::Budget, |tx| budgets::put(tx, budget, now_ms))
    }
    fn put_budgets(&self, batch: &[Budget], now_ms: u64) -> Result<()> {
        self.db.run(TxKind::Budget, |tx| budgets::put_many(tx, batch, now_ms))
    }
    fn budgets_of_type(&self, scope_type: ScopeType, limit: usize) -> Result<(u64, Vec<Budget>)> {
        self.db.run(TxKind::Read, |tx| budgets::of_type(tx, scope_type, limit))
    }
    fn budgets_page(&self, after: Option<(ScopeType, &str)>, limit: usize) -> Result<Vec<Budget>> {
        self.db.run(TxKind::Read, |tx| budgets::page(tx, after, limit))
    }
    fn get_budget(&self, scope_type: ScopeType, scope_id: &str) -> Result<Option<Budget>> {
        self.db.run(TxKind::Read, |tx| budgets::get(tx, scope_type, scope_id))
    }
    fn delete_budget(&self, scope_type: ScopeType, scope_id: &str) -> Result<()> {
        self.db.run(TxKind::Budget, |tx| budgets::delete(tx, scope_type, scope_id))
    }
    fn grant(&self, node: &str, now_ms: u64, node_ttl_ms: u64, cursor: Option<&str>, page: usize) -> Result<GrantSnapshot> {
        self.db.run(TxKind::Grant, |tx| grants::grant(tx, node, now_ms, node_ttl_ms, cursor, page))
    }
    fn state_seqs(&self) -> Result<StateSeqs> {
        // One statement: a round trip on PostgreSQL, not four.
        let sql = format!("SELECT ({}), ({}), ({}), ({})", keys::SEQ, audit::POLICY_SEQ, prompts::SEQ, evals::ROUTING_SEQ);
        self.db.run(TxKind::Read, |tx| {
            let r = tx.query_one(&sql, &[])?;
            Ok(StateSeqs { keys: r.u64(0)?, guardrails: r.u64(1)?, prompts: r.u64(2)?, routing: r.u64(3)? })
        })
    }
    fn node_seen(&self, node: &str, now_ms: u64) -> Result<()> {
        self.db.run(TxKind::Grant, |tx| grants::seen(tx, node, now_ms))
    }
    fn prune_grants(&self, now_ms: u64, forget_after_ms: u64) -> Result<Pruned> {
        self.db.run(TxKind::Grant, |tx| grants::prune(tx, now_ms, forget_after_ms))
    }
    fn prune_use_log(&self, now_ms: u64, keep_ms: u64) -> Result<u64> {
        self.db.run(TxKind::Grant, |tx| grants::prune_use_log(tx, now_ms, keep_ms))
    }
    fn refresh_statistics(&self) -> Result<Vec<String>> {
        self.db.refresh_statistics()
    }
    fn reserved(&self, scope_type: ScopeType, scope_id: &str, period_start_ms: u64) -> Result<Used> {
        self.db.run(TxKind::Read, |tx| budgets::reserved(tx, scope_type, scope_id, period_start_ms))
    }
    fn used(&self, scope_type: ScopeType, scope_id: &str, period_start_ms: u64) -> Result<Used> {
        self.db.run(TxKind::Read, |tx| budgets::used(tx, scope_type, scope_id, period_start_ms))
    }

    fn ingest(&self, node: &str, records: &[UsageRecord], raw: Option<&[&str]>, now_ms: u64) -> Result<IngestAck> {
        self.db.run(TxKind::Ingest, |tx| ingest::batch(tx, &self.budgets, node, records, raw, now_ms))
    }
    fn ingest_writers(&self) -> usize {
        self.db.writers()
    }
    fn ingest_many(&self, jobs: &[IngestJob<'_>], now_ms: u64) -> Vec<Result<IngestAck>> {
        let together: Result<Vec<IngestAck>> = self.db.run(TxKind::Ingest, |tx| jobs.iter().map(|j| ingest::batch(tx, &self.budgets, j.node, j.records, j.raw, now_ms)).collect());
        match together {
            Ok(acks) => acks.into_iter().map(Ok).collect(),
            Err(e) if jobs.len() == 1 => vec![Err(e)],
            // One of them failed and took the others' transaction with it:
            // each on its own, so only the one at fault is refused.
            Err(_) => jobs.iter().map(|j| self.ingest(j.node, j.records, j.raw, now_ms)).collect(),
        }
    }
    fn seq(&self) -> Result<u64> {
        self.db.run(TxKind::Read, ingest::seq)
    }
    fn nodes_active(&self, now_ms: u64, node_ttl_ms: u64) -> Result<u32> {
        self.db.run(TxKind::Read, |tx| budgets::nodes_active(tx, now_ms, node_ttl_ms))
    }
    fn spend(&self, filter: &SpendFilter) -> Result<SpendTotals> {
        self.db.run(TxKind::Read, |tx| reports::spend(tx, filter))
    }
    fn report(&self, q: &ReportQuery) -> Result<Vec<ReportRow>> {
        self.db.run(TxKind::Read, |tx| reports::report(tx, q))
    }

    fn list_alerts(&self, limit: u32) -> Result<Vec<AlertRow>> {
        self.db.run(TxKind::Read, |tx| requests::alerts(tx, limit))
    }
    fn create_request(&self, r: &IncreaseRequest) -> Result<IncreaseRequest> {
        self.db.run(TxKind::Write, |tx| requests::create(tx, r))
    }
    fn list_requests(&self, status: Option<&str>) -> Result<Vec<IncreaseRequest>> {
        self.db.run(TxKind::Read, |tx| requests::list(tx, status))
    }
    fn get_request(&self, id: i64) -> Result<Option<IncreaseRequest>> {
        self.db.run(TxKind::Read, |tx| requests::get(tx, id))
    }
    fn decide_request(&self, id: i64, approve: bool, by: &str, note: Option<&str>, now_ms: u64) -> Result<IncreaseRequest> {
        self.db.run(TxKind::Budget, |tx| requests::decide(tx, id, approve, by, note, now_ms))
    }
    fn due_alerts(&self, now_ms: u64) -> Result<Vec<AlertRow>> {
        self.db.run(TxKind::Read, |tx| requests::due_alerts(tx, now_ms))
    }
    fn alert_attempted(&self, id: i64, ok: bool, error: Option<&str>, next_attempt_ms: u64, now_ms: u64) -> Result<()> {
        self.db.run(TxKind::Write, |tx| requests::alert_attempted(tx, id, ok, error, next_attempt_ms, now_ms))
    }

    fn audit_summary(&self, q: &AuditQuery) -> Result<Vec<AuditSum>> {
        self.db.run(TxKind::Read, |tx| audit::summary(tx, q))
    }
    fn audit_findings(&self, q: &AuditQuery, limit: u32) -> Result<Vec<AuditFinding>> {
        self.db.run(TxKind::Read, |tx| audit::findings(tx, q, limit))
    }
    fn purge_audit(&self, before_ms: u64) -> Result<u64> {
        self.db.run(TxKind::Write, |tx| audit::purge(tx, before_ms))
    }
    fn guard_policy(&self) -> Result<tollgate_protocol::guard::GuardrailsDoc> {
        self.db.run(TxKind::Read, audit::policy)
    }
    fn set_guard_policy(&self, policy: Option<&tollgate_protocol::guard::PolicyDoc>, now_ms: u64) -> Result<tollgate_protocol::guard::GuardrailsDoc> {
        self.db.run(TxKind::Write, |tx| audit::set_policy(tx, policy, now_ms))
    }

    fn add_prompt_version(
        &self,
        name: &str,
        content: &tollgate_protocol::prompts::PromptContent,
        by: &str,
        note: Option<&str>,
        now_ms: u64,
    ) -> Result<(PromptVersion, bool)> {
        self.db.run(TxKind::Write, |tx| prompts::add_version(tx, name, content, by, note, now_ms))
    }
    fn set_prompt_label(&self, name: &str, label: &str, version: u32, by: &str, now_ms: u64) -> Result<()> {
        self.db.run(TxKind::Write, |tx| prompts::set_label(tx, name, label, version, by, now_ms))
    }
    fn prompt(&self, name: &str) -> Result<Option<PromptView>> {
        self.db.run(TxKind::Read, |tx| prompts::get(tx, name))
    }
    fn list_prompts(&self) -> Result<Vec<PromptSummary>> {
        self.db.run(TxKind::Read, prompts::list)
    }
    fn prompts_current(&self) -> Result<tollgate_protocol::prompts::PromptsDoc> {
        self.db.run(TxKind::Read, prompts::current)
    }
    fn cache_misses(&self, q: &CacheMissQuery) -> Result<Vec<CacheMissSum>> {
        self.db.run(TxKind::Read, |tx| cache_misses::summary(tx, q))
    }
    fn check_cache_drops(&self, now_ms: u64) -> Result<u64> {
        self.db.run(TxKind::Write, |tx| cache_misses::check_drops(tx, now_ms, cache_misses::DROP_RULE))
    }
    fn list_cache_alerts(&self, limit: u32) -> Result<Vec<CacheAlert>> {
        self.db.run(TxKind::Read, |tx| cache_misses::alerts(tx, limit))
    }
    fn due_cache_alerts(&self, now_ms: u64) -> Result<Vec<CacheAlert>> {
        self.db.run(TxKind::Read, |tx| cache_misses::due_alerts(tx, now_ms))
    }
    fn cache_alert_attempted(&self, id: i64, ok: bool, error: Option<&str>, next_attempt_ms: u64, now_ms: u64) -> Result<()> {
        self.db.run(TxKind::Write, |tx| cache_misses::alert_attempted(tx, id, ok, error, next_attempt_ms, now_ms))
    }

    fn json_compliance(&self, from_ms: u64, to_ms: u64) -> Result<Vec<JsonCompliance>> {
        self.db.run(TxKind::Read, |tx| evals::json_compliance(tx, from_ms, to_ms))
    }
    fn eval_items(&self, feature: &str, limit: u32) -> Result<Vec<EvalItem>> {
        self.db.run(TxKind::Read, |tx| evals::items(tx, feature, limit))
    }
    fn eval_sets(&self) -> Result<Vec<EvalSet>> {
        self.db.run(TxKind::Read, evals::sets)
    }
    fn delete_eval_items(&self, feature: Option<&str>, before_ms: Option<u64>, id: Option<i64>) -> Result<u64> {
        self.db.run(TxKind::Write, |tx| evals::delete_items(tx, feature, before_ms, id))
    }
    fn create_eval(&self, feature: &str, candidate: &str, judge: Option<&str>, report: &serde_json::Value, now_ms: u64) -> Result<EvalRun> {
        self.db.run(TxKind::Write, |tx| evals::create_eval(tx, feature, candidate, judge, report, now_ms))
    }
    fn finish_eval(&self, id: i64, status: &str, report: &serde_json::Value, now_ms: u64) -> Result<()> {
        self.db.run(TxKind::Write, |tx| evals::finish_eval(tx, id, status, report, now_ms))
    }
    fn get_eval(&self, id: i64) -> Result<Option<EvalRun>> {
        self.db.run(TxKind::Read, |tx| evals::get_eval(tx, id))
    }
    fn evals(&self, feature: Option<&str>, limit: u32) -> Result<Vec<EvalRun>> {
        self.db.run(TxKind::Read, |tx| evals::evals(tx, feature, limit))
    }
    fn feature_requests(&self, feature: &str, from_ms: u64) -> Result<u64> {
        self.db.run(TxKind::Read, |tx| evals::feature_requests(tx, feature, from_ms))
    }
    fn set_routing_policy(&self, feature: &str, policy: &serde_json::Value, now_ms: u64) -> Result<()> {
        self.db.run(TxKind::Write, |tx| evals::set_policy(tx, feature, policy, now_ms))
    }
    fn routing_policy(&self, feature: &str) -> Result<Option<RoutingPolicyRow>> {
        self.db.run(TxKind::Read, |tx| evals::policy(tx, feature))
    }
    fn routing_policies(&self) -> Result<Vec<RoutingPolicyRow>> {
        self.db.run(TxKind::Read, evals::policies)
    }
    fn choose_route(&self, feature: &str, model: Option<&str>, reason: &str, by: &str, now_ms: u64) -> Result<u64> {
        self.db.run(TxKind::Write, |tx| evals::choose(tx, feature, model, reason, by, now_ms))
    }
    fn routing_current(&self) -> Result<tollgate_protocol::routing::RoutingDoc> {
        self.db.run(TxKind::Read, evals::routing_current)
    }
}
