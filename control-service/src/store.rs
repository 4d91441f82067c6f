//! What the API asks of storage (`Store`) and the types it answers in;
//! the pure arithmetic of grants (`grant_math`) and of what a record does
//! to budgets (`effects`), and the insight features' rows (`insight_rows`).
//! One implementation: the ledger (`ledger/`) over either database (`db.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tollgate_protocol::record::UsageRecord;
use tollgate_protocol::state::{IngestAck, ScopeType};

use crate::periods::Period;

mod effects;
mod grant_math;
mod insight_rows;

pub use effects::{own_scopes, record_effects, scopes_touched, RecordEffects, ScopeIndex};
pub use grant_math::{fair_part, grant_doc, rebalance, NodeUse, JOIN_RESERVE};
pub use insight_rows::{
    AuditFinding, AuditQuery, AuditSum, CacheAlert, CacheMissQuery, CacheMissSum, EvalItem, EvalRun, EvalSet, JsonCompliance,
    PromptEvent, PromptSummary, PromptVersion, PromptView, RoutingPolicyRow,
};

#[derive(Debug, Clone)]
pub enum StoreError {
    NotFound(String),
    Conflict(String),
    Invalid(String),
    Backend(String),
}

/// One sender's batch for [`Store::ingest_many`].
pub struct IngestJob<'a> {
    pub node: &'a str,
    pub records: &'a [UsageRecord],
    /// The JSON text each record was parsed from, when known.
    pub raw: Option<&'a [&'a str]>,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound(m) | StoreError::Conflict(m) | StoreError::Invalid(m) | StoreError::Backend(m) => {
                f.write_str(m)
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRow {
    pub id: String,
    pub key_hash: String,
    pub team: String,
    pub project: String,
    pub models: Option<Vec<String>>,
    pub projects: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub created_ms: u64,
    pub revoked_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub scope_type: ScopeType,
    pub scope_id: String,
    pub limit_micros: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub period: Period,
    pub timezone: String,
    pub window_start_ms: Option<u64>,
    pub window_end_ms: Option<u64>,
    pub soft_pct: Option<u32>,
    pub hard_pct: Option<u32>,
    pub updated_ms: u64,
}

impl Budget {
    /// A monthly UTC budget with the default thresholds (80 % warning, 100 % stop) and no limit yet.
    pub fn monthly(scope_type: ScopeType, scope_id: &str, now_ms: u64) -> Budget {
        Budget {
            scope_type,
            scope_id: scope_id.to_string(),
            limit_micros: None,
            limit_tokens: None,
            period: Period::Monthly,
            timezone: "UTC".into(),
            window_start_ms: None,
            window_end_ms: None,
            soft_pct: Some(80),
            hard_pct: Some(100),
            updated_ms: now_ms,
        }
    }

    /// The budget after approving `r`: the request's limits on this budget
    /// (or on a new monthly one when the scope had none).
    pub fn approved(current: Option<Budget>, r: &IncreaseRequest, now_ms: u64) -> Budget {
        let mut b = current.unwrap_or_else(|| Budget::monthly(r.scope_type, &r.scope_id, now_ms));
        if r.limit_micros.is_some() {
            b.limit_micros = r.limit_micros;
        }
        if r.limit_tokens.is_some() {
            b.limit_tokens = r.limit_tokens;
        }
        b.updated_ms = now_ms;
        b
    }

    pub fn window(&self) -> Option<(u64, u64)> {
        Some((self.window_start_ms?, self.window_end_ms?))
    }

    /// The period containing `at_ms`.
    pub fn bounds(&self, at_ms: u64) -> Option<(u64, u64)> {
        let tz = crate::periods::parse_tz(&self.timezone)?;
        crate::periods::bounds(self.period, tz, self.window(), at_ms)
    }

    /// The budget's state for a period with this use (no share yet).
    pub fn doc(&self, (start, end): (u64, u64), used: Used) -> tollgate_protocol::state::BudgetDoc {
        tollgate_protocol::state::BudgetDoc {
            scope_type: self.scope_type,
            scope_id: self.scope_id.clone(),
            limit_micros: self.limit_micros,
            limit_tokens: self.limit_tokens,
            period_start_ms: start,
            period_end_ms: end,
            used_micros: used.micros,
            used_tokens: used.tokens,
            soft_pct: self.soft_pct,
            hard_pct: self.hard_pct,
            share_micros: None,
            share_tokens: None,
        }
    }

}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Used {
    pub micros: u64,
    pub tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRow {
    pub id: i64,
    pub scope_type: ScopeType,
    pub scope_id: String,
    /// "soft" or "hard".
    pub threshold: String,
    pub period_start_ms: u64,
    pub used_micros: u64,
    pub used_tokens: u64,
    pub limit_micros: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub created_ms: u64,
    pub delivered_ms: Option<u64>,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A request to raise a budget, and its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncreaseRequest {
    pub id: i64,
    pub scope_type: ScopeType,
    pub scope_id: String,
    pub limit_micros: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub justification: String,
    pub requested_by: String,
    pub created_ms: u64,
    /// "pending", "approved" or "refused".
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_ms: Option<u64>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SpendTotals {
    pub requests: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micros: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SpendFilter {
    pub scope: Option<(ScopeType, String)>,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
}

/// The state of every current budget for one Envoy, consistent with `seq`.
#[derive(Debug, Clone, Default)]
pub struct GrantSnapshot {
    pub seq: u64,
    pub nodes_active: u32,
    /// `budgets` is every budget in force (else only those changed since the cursor).
    pub full: bool,
    /// Why the Envoy's cursor did not hold (a full state's first page).
    pub full_because: Option<&'static str>,
    /// Grants of silent Envoys reclaimed by this answer.
    pub reclaimed: u64,
    pub budgets: Vec<tollgate_protocol::state::BudgetDoc>,
    /// A full state continues: ask again with `cursor` for the next page.
    pub more: bool,
    /// Deleted or out of their window since the cursor (deltas only).
    pub removed: Vec<tollgate_protocol::state::BudgetScope>,
    /// What to send back at the next poll.
    pub cursor: String,
}

/// See `Store::state_seqs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSeqs {
    pub keys: u64,
    pub guardrails: u64,
    pub prompts: u64,
    pub routing: u64,
}

/// What one run of grant pruning removed (`Store::prune_grants`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub grants: u64,
    pub node_use: u64,
    pub nodes: u64,
}

pub trait Store: Send + Sync + 'static {
    fn create_key(&self, key: &KeyRow) -> Result<()>;
    /// Creates every key or none (one transaction); Conflict names the first clash.
    fn create_keys(&self, keys: &[KeyRow]) -> Result<()>;
    /// What changed in the set of live keys after change `since` (at most
    /// `limit` changes), for Envoys keeping their key entries in step.
    fn key_changes(&self, since: u64, limit: u32) -> Result<tollgate_protocol::state::KeyChanges>;
    /// How many keys exist, and at most `limit` of them in the order they
    /// were made, after the key with id `after`.
    fn keys_page(&self, after: Option<&str>, limit: usize) -> Result<(u64, Vec<KeyRow>)>;
    fn get_key(&self, id: &str) -> Result<Option<KeyRow>>;
    /// The live (not revoked) key with this hash, through the unique index.
    fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRow>>;
    fn revoke_key(&self, id: &str, now_ms: u64) -> Result<()>;
    /// Replaces the key's hash (rotation); the old key stops working.
    fn set_key_hash(&self, id: &str, key_hash: &str) -> Result<()>;

    /// Creates or replaces the budget of a scope, and recounts its current period.
    fn put_budget(&self, budget: &Budget, now_ms: u64) -> Result<()>;
    /// Sets many budgets in one transaction, all or none (`POST /v1/budget-imports`).
    fn put_budgets(&self, budgets: &[Budget], now_ms: u64) -> Result<()>;
    /// How many budgets of this scope type, and up to `limit` of them (scope order).
    fn budgets_of_type(&self, scope_type: ScopeType, limit: usize) -> Result<(u64, Vec<Budget>)>;
    /// Up to `limit` budgets after `after`, in scope order.
    fn budgets_page(&self, after: Option<(ScopeType, &str)>, limit: usize) -> Result<Vec<Budget>>;
    fn get_budget(&self, scope_type: ScopeType, scope_id: &str) -> Result<Option<Budget>>;
    fn delete_budget(&self, scope_type: ScopeType, scope_id: &str) -> Result<()>;
    /// Hands the Envoy `node` its share of every budget's remaining room and
    /// returns the budgets' state for it, all in one transaction (see
    /// docs/budgets.md, "Grants"): grants are durable and their sum never
    /// exceeds a hard limit, so the fleet cannot spend past it.
    fn grant(&self, node: &str, now_ms: u64, node_ttl_ms: u64, cursor: Option<&str>, page: usize) -> Result<GrantSnapshot>;
    /// The numbers of the last key change, guardrail policy, prompt and
    /// routing change, read at once (an Envoy's state names them).
    fn state_seqs(&self) -> Result<StateSeqs>;
    /// Retention: grants and per-Envoy use of ended periods and deleted
    /// budgets, and Envoys silent for `forget_after_ms` (each budget's use
    /// per period stays).
    fn prune_grants(&self, now_ms: u64, forget_after_ms: u64) -> Result<Pruned>;
    /// Retention of the log of which budgets' use changed (what state-poll
    /// deltas read): the batches of the last `keep_ms` stay. The number of
    /// batches' entries removed.
    fn prune_use_log(&self, now_ms: u64, keep_ms: u64) -> Result<u64>;
    /// The Envoy `node` was answered at `now_ms`: it counts as seen then.
    /// `grant` records a poll's start; an answer that took longer than the
    /// node TTL would otherwise leave the Envoy silent by its next poll, and
    /// it would start over at its first page, again and again.
    fn node_seen(&self, node: &str, now_ms: u64) -> Result<()>;
    /// Refreshes the database's planner statistics where they are stale
    /// (`Db::refresh_statistics`); the tables refreshed.
    fn refresh_statistics(&self) -> Result<Vec<String>>;
    /// Budget room handed to Envoys and not yet recorded as used, summed over
    /// Envoys: what they may be spending right now (in flight or not yet shipped).
    fn reserved(&self, scope_type: ScopeType, scope_id: &str, period_start_ms: u64) -> Result<Used>;
    /// What a scope used in the period starting at `period_start_ms`.
    fn used(&self, scope_type: ScopeType, scope_id: &str, period_start_ms: u64) -> Result<Used>;

    /// Stores records durably (idempotent by record id), counts them against
    /// budgets and raises threshold alerts, all in one transaction.
    /// `raw[i]`, when given, is the JSON text `records[i]` was parsed from
    /// (stored as is, which saves serialising it again).
    fn ingest(&self, node: &str, records: &[UsageRecord], raw: Option<&[&str]>, now_ms: u64) -> Result<IngestAck>;
    /// Several senders' batches in one transaction (one commit, one fsync),
    /// each acknowledged as `ingest` would: when one of them fails, each is
    /// retried in a transaction of its own, so only the one at fault is refused.
    fn ingest_many(&self, jobs: &[IngestJob<'_>], now_ms: u64) -> Vec<Result<IngestAck>>;
    /// How many `ingest_many` calls are worth running side by side.
    fn ingest_writers(&self) -> usize;
    /// The current ingest sequence.
    fn seq(&self) -> Result<u64>;
    /// Envoys that polled the state within the last `node_ttl_ms`.
    fn nodes_active(&self, now_ms: u64, node_ttl_ms: u64) -> Result<u32>;
    fn spend(&self, filter: &SpendFilter) -> Result<SpendTotals>;
    /// Spend grouped by dimensions and time buckets, highest cost first.
    fn report(&self, q: &crate::reports::ReportQuery) -> Result<Vec<crate::reports::ReportRow>>;

    fn list_alerts(&self, limit: u32) -> Result<Vec<AlertRow>>;

    /// Files a budget increase request (status pending); returns it with its id.
    fn create_request(&self, r: &IncreaseRequest) -> Result<IncreaseRequest>;
    fn list_requests(&self, status: Option<&str>) -> Result<Vec<IncreaseRequest>>;
    fn get_request(&self, id: i64) -> Result<Option<IncreaseRequest>>;
    /// Records the decision on a pending request (Conflict if already decided).
    /// Approves or refuses a pending request; an approval applies the new
    /// limit in the same transaction (two concurrent approvals cannot both
    /// act; the second is a Conflict).
    fn decide_request(&self, id: i64, approve: bool, by: &str, note: Option<&str>, now_ms: u64) -> Result<IncreaseRequest>;
    /// Alerts not yet delivered whose next attempt is due.
    fn due_alerts(&self, now_ms: u64) -> Result<Vec<AlertRow>>;
    fn alert_attempted(&self, id: i64, ok: bool, error: Option<&str>, next_attempt_ms: u64, now_ms: u64) -> Result<()>;

    /// The guardrail audit trail, summed per team, provider, class and action.
    fn audit_summary(&self, q: &AuditQuery) -> Result<Vec<AuditSum>>;
    /// The findings themselves (export), oldest first.
    fn audit_findings(&self, q: &AuditQuery, limit: u32) -> Result<Vec<AuditFinding>>;
    /// Retention: drops findings older than `before_ms`.
    fn purge_audit(&self, before_ms: u64) -> Result<u64>;
    /// The guardrail policy every Envoy applies (none: their own).
    fn guard_policy(&self) -> Result<tollgate_protocol::guard::GuardrailsDoc>;
    /// Puts a (validated) policy in force, or none.
    fn set_guard_policy(&self, policy: Option<&tollgate_protocol::guard::PolicyDoc>, now_ms: u64) -> Result<tollgate_protocol::guard::GuardrailsDoc>;

    /// The prompt registry: a new version (or the existing one with the
    /// same content: `false`), labels, views, and the Envoys' document.
    fn add_prompt_version(
        &self,
        name: &str,
        content: &tollgate_protocol::prompts::PromptContent,
        by: &str,
        note: Option<&str>,
        now_ms: u64,
    ) -> Result<(PromptVersion, bool)>;
    fn set_prompt_label(&self, name: &str, label: &str, version: u32, by: &str, now_ms: u64) -> Result<()>;
    fn prompt(&self, name: &str) -> Result<Option<PromptView>>;
    fn list_prompts(&self) -> Result<Vec<PromptSummary>>;
    fn prompts_current(&self) -> Result<tollgate_protocol::prompts::PromptsDoc>;

    /// Prompt-cache misses the filters explained, summed.
    fn cache_misses(&self, q: &CacheMissQuery) -> Result<Vec<CacheMissSum>>;
    /// Raises cache-drop alerts (a new prompt version's hit rate fell by
    /// half or more); how many are new.
    fn check_cache_drops(&self, now_ms: u64) -> Result<u64>;
    fn list_cache_alerts(&self, limit: u32) -> Result<Vec<CacheAlert>>;
    fn due_cache_alerts(&self, now_ms: u64) -> Result<Vec<CacheAlert>>;
    fn cache_alert_attempted(&self, id: i64, ok: bool, error: Option<&str>, next_attempt_ms: u64, now_ms: u64) -> Result<()>;

    /// Choosing cheaper models: JSON compliance, evaluation sets and runs, the auto router.
    fn json_compliance(&self, from_ms: u64, to_ms: u64) -> Result<Vec<JsonCompliance>>;
    fn eval_items(&self, feature: &str, limit: u32) -> Result<Vec<EvalItem>>;
    fn eval_sets(&self) -> Result<Vec<EvalSet>>;
    fn delete_eval_items(&self, feature: Option<&str>, before_ms: Option<u64>, id: Option<i64>) -> Result<u64>;
    fn create_eval(&self, feature: &str, candidate: &str, judge: Option<&str>, report: &serde_json::Value, now_ms: u64) -> Result<EvalRun>;
    fn finish_eval(&self, id: i64, status: &str, report: &serde_json::Value, now_ms: u64) -> Result<()>;
    fn get_eval(&self, id: i64) -> Result<Option<EvalRun>>;
    fn evals(&self, feature: Option<&str>, limit: u32) -> Result<Vec<EvalRun>>;
    fn feature_requests(&self, feature: &str, from_ms: u64) -> Result<u64>;
    fn set_routing_policy(&self, feature: &str, policy: &serde_json::Value, now_ms: u64) -> Result<()>;
    fn routing_policy(&self, feature: &str) -> Result<Option<RoutingPolicyRow>>;
    fn routing_policies(&self) -> Result<Vec<RoutingPolicyRow>>;
    fn choose_route(&self, feature: &str, model: Option<&str>, reason: &str, by: &str, now_ms: u64) -> Result<u64>;
    fn routing_current(&self) -> Result<tollgate_protocol::routing::RoutingDoc>;
}

#[cfg(test)]
mod tests;
