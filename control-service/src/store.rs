//! What the API asks of storage (`Store`), the types it answers in, and
//! the pure arithmetic of grants and record effects. One implementation:
//! the ledger (`ledger/`) over either database (`db.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tollgate_protocol::record::{BudgetDecision, UsageRecord};
use tollgate_protocol::state::{IngestAck, ScopeType};

use crate::periods::Period;

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

/// Of what is left of a limit, the part grants leave free (1/16): an Envoy
/// joining the fleet gets its first share from it at once. Without it the
/// Envoys already there held the whole limit between them, and a newcomer's
/// first share was 0: it refused every budgeted request as exhausted until
/// they had polled and given back (a second on a small fleet, the length of
/// a full state's walk at a million budgets). Near the limit it costs a
/// sixteenth of what is left: an Envoy refuses when what is left of its
/// share is below 16/15 of a request's worst case instead of below it.
pub const JOIN_RESERVE: u64 = 16;

/// A node's fair part of what is left of a limit: an equal part among the
/// active nodes, less the [`JOIN_RESERVE`].
pub fn fair_part(limit: u64, used_total: u64, active: u64) -> u64 {
    let equal = limit.saturating_sub(used_total) / active.max(1);
    equal - equal / JOIN_RESERVE
}

/// The grant arithmetic, for one limit. `grants` holds every node's
/// (used, granted) for the period, `me` indexes the polling node. Its new
/// grant is its own use plus its [`fair_part`] of what is left, but never
/// more than what the other nodes' grants leave free: the grants' sum never
/// exceeds the limit. A node joining a budget others hold room in (it has
/// no grant of it yet) leaves half of what nobody holds (at most half the
/// reserve) for the next, so that Envoys starting together each get a
/// part. A node's grant may shrink when it polls (it learns the smaller
/// share in the same answer). Integers only.
pub fn rebalance(limit: u64, used_total: u64, grants: &[(u64, Option<u64>)], me: usize, active: u64) -> u64 {
    let effective = |(used, granted): (u64, Option<u64>)| granted.unwrap_or(used).max(used);
    let others: u64 = grants
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(_, g)| effective(*g))
        .fold(0u64, |a, b| a.saturating_add(b));
    let used_me = grants.get(me).map(|g| g.0).unwrap_or(0);
    let mine = grants.get(me).map(|g| effective(*g)).unwrap_or(0);
    // Room it holds (granted, not used) and what nobody holds.
    let held = mine.saturating_sub(used_me);
    let free = limit.saturating_sub(others).saturating_sub(mine);
    let joining = grants.get(me).is_none_or(|g| g.1.is_none())
        && grants.iter().enumerate().any(|(i, g)| i != me && effective(*g) > g.0);
    // A joining node leaves half of what is free for the next one, but
    // never more than half the reserve: where much is free (an Envoy that
    // left held it), it takes its whole part at once.
    let leave = if joining { (free / 2).min(limit.saturating_sub(used_total) / (2 * JOIN_RESERVE)) } else { 0 };
    let growth = free.saturating_sub(leave);
    used_me.saturating_add(fair_part(limit, used_total, active).min(held.saturating_add(growth)))
}

/// What one new usage record does to the budgets (indices into `budgets`,
/// with the period start of the record's time): the budgets it counts
/// against, and the budgets that refused it (a filter's 429).
pub struct RecordEffects {
    pub counts: Vec<(usize, u64)>,
    pub denied_by: Vec<(usize, u64)>,
    /// Tokens counted against token limits: input + output.
    pub tokens: u64,
}

/// The budgets by scope: a record is matched against the budgets of its
/// own scopes (its key, team and project, and the scopes that refused it),
/// never against every budget (with a thousand idle per-key budgets, a
/// scan of all of them per record cut ingest from ~60,000 to ~8,700
/// records/s).
pub struct ScopeIndex<'a> {
    /// Per scope type (indexed as `ScopeType::ALL`): scope id -> indices into the budgets.
    by_type: [std::collections::HashMap<&'a str, Vec<usize>>; ScopeType::ALL.len()],
}

impl<'a> ScopeIndex<'a> {
    pub fn new(budgets: &'a [Budget]) -> Self {
        let mut by_type: [std::collections::HashMap<&'a str, Vec<usize>>; ScopeType::ALL.len()] = Default::default();
        for (i, b) in budgets.iter().enumerate() {
            if let Some(m) = by_type.get_mut(b.scope_type as usize) {
                m.entry(b.scope_id.as_str()).or_default().push(i);
            }
        }
        ScopeIndex { by_type }
    }

    fn of(&self, scope_type: ScopeType, id: &str) -> &[usize] {
        self.by_type.get(scope_type as usize).and_then(|m| m.get(id)).map(Vec::as_slice).unwrap_or_default()
    }
}

/// The scopes a record's spend counts against: its key, team and project.
pub fn own_scopes(r: &UsageRecord) -> [(ScopeType, &str); 3] {
    [(ScopeType::Key, r.key_id.as_str()), (ScopeType::Team, r.team.as_str()), (ScopeType::Project, r.project.as_str())]
}

/// Every scope whose budget a record can touch: its own, and those that refused it.
pub fn scopes_touched(r: &UsageRecord) -> impl Iterator<Item = (ScopeType, &str)> {
    own_scopes(r).into_iter().chain(r.budget_scopes.iter().map(|s| (s.scope_type, s.id.as_str())))
}

pub fn record_effects(budgets: &[Budget], index: &ScopeIndex<'_>, r: &UsageRecord) -> RecordEffects {
    let (micros, tokens) = r.budget_amount();
    let mut e = RecordEffects { counts: Vec::new(), denied_by: Vec::new(), tokens };
    let period = |bi: usize| budgets.get(bi).and_then(|b| b.bounds(r.ts_ms)).map(|(start, _)| (bi, start));
    if r.budget_decision == BudgetDecision::Denied {
        for s in &r.budget_scopes {
            for &bi in index.of(s.scope_type, &s.id) {
                if let Some(k) = period(bi).filter(|k| !e.denied_by.contains(k)) {
                    e.denied_by.push(k);
                }
            }
        }
    }
    if micros > 0 || tokens > 0 {
        for (scope_type, id) in own_scopes(r) {
            e.counts.extend(index.of(scope_type, id).iter().filter_map(|&bi| period(bi)));
        }
    }
    e
}

/// One node's (used, granted) in micros and in tokens for a budget period.
pub type NodeUse = (String, (u64, Option<u64>), (u64, Option<u64>));

/// The budget document for `node` and its new grants (micros, tokens), from
/// every node's use and grants in the period. Shared by both backends; the
/// caller stores the grants in the same transaction.
pub fn grant_doc(
    b: &Budget,
    (start, end): (u64, u64),
    used: (u64, u64),
    mut nodes: Vec<NodeUse>,
    node: &str,
    active: u64,
) -> (tollgate_protocol::state::BudgetDoc, u64, u64) {
    let me = match nodes.iter().position(|r| r.0 == node) {
        Some(p) => p,
        None => {
            nodes.push((node.to_string(), (0, None), (0, None)));
            nodes.len() - 1
        }
    };
    let micros: Vec<(u64, Option<u64>)> = nodes.iter().map(|r| r.1).collect();
    let tokens: Vec<(u64, Option<u64>)> = nodes.iter().map(|r| r.2).collect();
    let (my_m, my_t) = (micros.get(me).map(|x| x.0).unwrap_or(0), tokens.get(me).map(|x| x.0).unwrap_or(0));
    let mut doc = b.doc((start, end), Used { micros: used.0, tokens: used.1 });
    let n = active.max(1);
    let gm = doc.hard_limit_micros().map(|l| rebalance(l, doc.used_micros, &micros, me, n));
    let gt = doc.hard_limit_tokens().map(|l| rebalance(l, doc.used_tokens, &tokens, me, n));
    // The share is headroom against this node's own recorded use, which is
    // exactly what the node's pending counts are relative to.
    doc.share_micros = gm.map(|g| g.saturating_sub(my_m));
    doc.share_tokens = gt.map(|g| g.saturating_sub(my_t));
    (doc, gm.unwrap_or(my_m), gt.unwrap_or(my_t))
}

/// An audit question: a time range and optional filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub from_ms: u64,
    pub to_ms: u64,
    pub class: Option<String>,
    pub team: Option<String>,
    pub provider: Option<String>,
    pub action: Option<String>,
    /// `request` or `response`.
    pub direction: Option<String>,
}

/// Requests and values found, per team, provider, class and action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditSum {
    pub team: String,
    pub provider: Option<String>,
    pub direction: String,
    pub class: String,
    pub action: String,
    pub requests: u64,
    pub values: u64,
}

/// One record's finding of one class.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditFinding {
    pub record_id: String,
    pub ts_ms: u64,
    pub key_id: String,
    pub team: String,
    pub project: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub direction: String,
    pub class: String,
    pub count: u64,
    pub action: String,
    pub policy: String,
}

/// Which cache misses to sum.
#[derive(Debug, Clone, Default)]
pub struct CacheMissQuery {
    pub from_ms: u64,
    pub to_ms: u64,
    pub team: Option<String>,
    pub feature: Option<String>,
}

/// Cache misses of one kind, with what they cost.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheMissSum {
    pub feature: Option<String>,
    pub prompt_version: Option<String>,
    pub model: Option<String>,
    pub reason: String,
    pub segment: Option<String>,
    pub offset: Option<u64>,
    pub requests: u64,
    pub lost_micros: u64,
    pub since_ms: u64,
    pub last_ms: u64,
}

impl CacheMissSum {
    /// The finding in one sentence (clients' names cleaned for any output).
    pub fn sentence(&self) -> String {
        let clean = |v: &Option<String>, none: &str| v.as_deref().map(|s| tollgate_protocol::text::clean_field(s, 64)).unwrap_or_else(|| none.to_string());
        let part = |seg: &str| match seg {
            "system" => "system prompt".to_string(),
            "tools" => "tool definitions".to_string(),
            other => tollgate_protocol::text::clean_field(other, 16),
        };
        let what = match (self.reason.as_str(), self.segment.as_deref(), self.offset) {
            ("prefix_changed", Some(seg), Some(0)) => format!("the {}'s first bytes change on every request", part(seg)),
            ("prefix_changed", Some(seg), Some(o)) => format!("the {} changes around byte {o} on every request", part(seg)),
            // The provider's own diagnosis: what changed, not where.
            ("prefix_changed", Some("messages"), None) => "earlier messages change between requests, where only appending new ones keeps the cache (the provider's diagnosis)".into(),
            ("prefix_changed", Some(seg), None) => format!("the {} changes between requests (the provider's diagnosis)", part(seg)),
            ("model_changed", _, _) => "requests switch between models or speeds, and each keeps its own cache (the provider's diagnosis)".into(),
            ("not_cached", _, _) => "the same prefix repeats but the provider cached none of it (requests too far apart for its cache lifetime, or spread over accounts)".into(),
            ("no_cache_marker", _, _) => "the same prefix repeats, but Anthropic caches only at cache_control markers and none were sent (a route's auto_cache adds them)".into(),
            ("marker_below_minimum", _, _) => "its cache_control markers sit on prefixes shorter than the provider's minimum (about 1,024 tokens) and do nothing".into(),
            _ => "its prompt prefix changes from request to request".into(),
        };
        format!(
            "feature {} (prompt {}) lost ${} to cache misses on {} requests since {}: {what}",
            clean(&self.feature, "(none)"),
            clean(&self.prompt_version, "(none)"),
            tollgate_protocol::format::usd(self.lost_micros),
            self.requests,
            tollgate_protocol::format::rfc3339(self.since_ms),
        )
    }
}

/// A feature's cache hit rate fell sharply with a new prompt version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheAlert {
    pub id: i64,
    pub feature: String,
    pub prompt_version: String,
    pub previous_version: String,
    pub hit_before_permille: u64,
    pub hit_after_permille: u64,
    pub requests_after: u64,
    pub created_ms: u64,
    pub delivered_ms: Option<u64>,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// JSON compliance of one model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JsonCompliance {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub asked: u64,
    pub valid: u64,
    pub repaired: u64,
}

/// A captured request and answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EvalItem {
    pub id: i64,
    pub feature: String,
    pub record_id: String,
    pub ts_ms: u64,
    /// `openai_chat` or `anthropic_messages`.
    pub api: String,
    pub route: Option<String>,
    pub model: Option<String>,
    pub request: String,
    pub response: String,
    pub cost_micros: u64,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EvalSet {
    pub feature: String,
    pub items: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

/// An evaluation run and its report (`crate::evals::Report` as JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalRun {
    pub id: i64,
    pub feature: String,
    pub candidate: String,
    pub judge: Option<String>,
    /// `running`, `done` or `stopped` (its budget ran out).
    pub status: String,
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    pub report: serde_json::Value,
}

/// A feature's routing policy (`crate::evals::RoutingPolicy` as JSON) and its pick.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoutingPolicyRow {
    pub feature: String,
    pub policy: serde_json::Value,
    pub chosen: Option<String>,
    pub reason: Option<String>,
    pub updated_ms: u64,
}

/// A stored prompt version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PromptVersion {
    pub version: u32,
    pub hash: String,
    pub content: tollgate_protocol::prompts::PromptContent,
    pub created_ms: u64,
    pub created_by: String,
    pub note: Option<String>,
}

/// One change to the registry: a new version, or a label moved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PromptEvent {
    pub seq: u64,
    /// `version` or `label`.
    pub what: String,
    pub version: Option<u32>,
    pub label: Option<String>,
    pub ts_ms: u64,
    pub by: String,
}

/// A prompt with its versions, labels and history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PromptView {
    pub name: String,
    pub versions: Vec<PromptVersion>,
    pub labels: std::collections::BTreeMap<String, u32>,
    pub history: Vec<PromptEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PromptSummary {
    pub name: String,
    pub latest: u32,
    pub labels: std::collections::BTreeMap<String, u32>,
    pub updated_ms: u64,
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
