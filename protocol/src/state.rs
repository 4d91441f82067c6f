//! The budget-state document the control service serves to the filters
//! (`GET /v1/state`), the ingest batch they send (`POST /v1/usage`) and its
//! answer. docs/control-api.md is the contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::scope::ScopeType;

/// A key as the control service publishes it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDoc {
    pub id: String,
    pub key_hash: String,
    pub team: String,
    pub project: String,
    /// Route names the key may use; `None` = all.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub projects: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One budget as the fleet sees it right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetDoc {
    pub scope_type: ScopeType,
    /// Key id, team name or project name.
    pub scope_id: String,
    pub limit_micros: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    /// Recorded by the whole fleet in this period (ingested records).
    pub used_micros: u64,
    pub used_tokens: u64,
    /// Soft threshold in percent of the limit (warning); `None` = off.
    pub soft_pct: Option<u32>,
    /// Hard threshold in percent of the limit (stop); `None` = off.
    pub hard_pct: Option<u32>,
    /// What the polling Envoy may spend beyond `used` until its next state:
    /// (hard limit − used) / active Envoys. `None` = no hard stop.
    pub share_micros: Option<u64>,
    pub share_tokens: Option<u64>,
}

impl BudgetDoc {
    pub fn hard_limit_micros(&self) -> Option<u64> {
        Some(pct_of(self.limit_micros?, self.hard_pct?))
    }
    pub fn hard_limit_tokens(&self) -> Option<u64> {
        Some(pct_of(self.limit_tokens?, self.hard_pct?))
    }
    pub fn soft_limit_micros(&self) -> Option<u64> {
        Some(pct_of(self.limit_micros?, self.soft_pct?))
    }
    pub fn soft_limit_tokens(&self) -> Option<u64> {
        Some(pct_of(self.limit_tokens?, self.soft_pct?))
    }
}

/// `limit × pct / 100`, rounded down, in integers.
pub fn pct_of(limit: u64, pct: u32) -> u64 {
    u64::try_from(u128::from(limit) * u128::from(pct) / 100).unwrap_or(u64::MAX)
}

/// `GET /v1/state` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDoc {
    /// Ingest sequence the `used` figures include (monotonic).
    pub seq: u64,
    pub generated_ms: u64,
    pub nodes_active: u32,
    /// The key-change sequence: an Envoy whose keys are older fetches
    /// `GET /v1/key-changes?since=<its seq>` ([`KeyChanges`]). Keys are not
    /// in this document: it stays small however many keys exist.
    #[serde(default)]
    pub keys_seq: u64,
    /// The guardrail policy's change sequence: an Envoy that has applied
    /// an older one fetches `GET /v1/guardrails` ([`crate::guard::GuardrailsDoc`]);
    /// 0 = the control service never held a policy.
    #[serde(default)]
    pub guardrails_seq: u64,
    /// The prompt registry's change sequence (`GET /v1/prompts/current`
    /// when newer than an Envoy's); 0 = empty.
    #[serde(default)]
    pub prompts_seq: u64,
    /// The auto router's change sequence (`GET /v1/routing/current`).
    #[serde(default)]
    pub routing_seq: u64,
    /// `true` (and when absent, as from a control service before budget
    /// deltas): `budgets` is every budget in force, and any budget not in it
    /// is gone. `false`: `budgets` holds only the budgets that changed since
    /// the cursor the Envoy sent, and `budgets_removed` those deleted or
    /// out of their window; every other budget stands as last sent.
    ///
    /// A full state of many budgets comes in pages: the first has
    /// `budgets_full`, each but the last has `budgets_more`, and its cursor
    /// asks for the next page (which is neither full nor a delta: more of
    /// the same full state).
    #[serde(default = "full_by_default")]
    pub budgets_full: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub budgets_more: bool,
    pub budgets: Vec<BudgetDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets_removed: Vec<BudgetScope>,
    /// Opaque: send it back as `GET /v1/state?node=…&cursor=…` to receive
    /// only what changed since this document (empty: always ask in full).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub budgets_cursor: String,
}

fn full_by_default() -> bool {
    true
}

impl Default for StateDoc {
    fn default() -> Self {
        StateDoc {
            seq: 0,
            generated_ms: 0,
            nodes_active: 0,
            keys_seq: 0,
            guardrails_seq: 0,
            prompts_seq: 0,
            routing_seq: 0,
            budgets_full: true,
            budgets_more: false,
            budgets: Vec::new(),
            budgets_removed: Vec::new(),
            budgets_cursor: String::new(),
        }
    }
}

/// A budget named by its scope (a removal in a budget delta).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BudgetScope {
    pub scope_type: ScopeType,
    pub scope_id: String,
}

/// `GET /v1/key-changes?since=N&limit=M`: what changed in the key set
/// after change `N`, oldest first. Applying every page in order, from 0,
/// gives the current set of live keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyChanges {
    /// The last change this page includes (ask for `since=seq` next).
    pub seq: u64,
    /// More changes follow this page.
    pub more: bool,
    pub changes: Vec<KeyChange>,
}

/// One change to the key set, as it is now (a key created then revoked
/// between two fetches arrives as a deletion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum KeyChange {
    /// A live key with this hash (new, or changed).
    Put { key: KeyDoc },
    /// No live key has this hash any more (revoked, or rotated away).
    Del { key_hash: String },
}

/// `POST /v1/usage` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAck {
    pub accepted: u64,
    pub duplicates: u64,
    /// Records refused as invalid (not stored, never to be retried as they
    /// are): their index in the batch, id and the field at fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedRecord>,
    /// The ingest sequence once these records are counted: a state with
    /// `seq >= this` includes them.
    pub seq: u64,
}

/// The most characters an Envoy's name (`node`) may have.
pub const NODE_MAX_CHARS: usize = 256;

/// Why `node` cannot name an Envoy, if it cannot: one rule for the filter's
/// `control.node`, the ingest batch and the state poll, so a name one of
/// them takes the others take too (an Envoy whose polls were read as an
/// admin's would get no budget shares while its usage was stored).
pub fn node_problem(node: &str) -> Option<&'static str> {
    let ok = !node.is_empty() && node.chars().count() <= NODE_MAX_CHARS && !node.chars().any(char::is_control);
    (!ok).then_some("1 to 256 characters, no control characters")
}

/// `POST /v1/usage`: a batch of usage records from one Envoy. Records stay
/// raw JSON text on both sides (the filter serialised them once; the service
/// stores the text as received and checks each record on its own).
#[derive(Debug, Serialize, Deserialize)]
pub struct IngestBatch<'a> {
    #[serde(borrow)]
    pub node: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub records: Vec<&'a serde_json::value::RawValue>,
}

/// A record the control service refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    pub index: usize,
    pub id: String,
    pub reason: String,
}
