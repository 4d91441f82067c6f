//! The storage trait. One real backend today (SQLite, `sqlite.rs`); the API
//! is generic over it so PostgreSQL slots in beside it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tollgate_filter::record::UsageRecord;
use tollgate_filter::state::{IngestAck, ScopeType};

use crate::periods::Period;

#[derive(Debug)]
pub enum StoreError {
    NotFound(String),
    Conflict(String),
    Invalid(String),
    Backend(String),
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
    pub fn window(&self) -> Option<(u64, u64)> {
        Some((self.window_start_ms?, self.window_end_ms?))
    }

    /// The period containing `at_ms`.
    pub fn bounds(&self, at_ms: u64) -> Option<(u64, u64)> {
        let tz = crate::periods::parse_tz(&self.timezone)?;
        crate::periods::bounds(self.period, tz, self.window(), at_ms)
    }

    pub fn matches(&self, r: &UsageRecord) -> bool {
        match self.scope_type {
            ScopeType::Key => r.key_id == self.scope_id,
            ScopeType::Team => r.team == self.scope_id,
            ScopeType::Project => r.project == self.scope_id,
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

pub trait Store: Send + Sync + 'static {
    fn create_key(&self, key: &KeyRow) -> Result<()>;
    fn list_keys(&self) -> Result<Vec<KeyRow>>;
    fn get_key(&self, id: &str) -> Result<Option<KeyRow>>;
    fn revoke_key(&self, id: &str, now_ms: u64) -> Result<()>;
    /// Replaces the key's hash (rotation); the old key stops working.
    fn set_key_hash(&self, id: &str, key_hash: &str) -> Result<()>;

    /// Creates or replaces the budget of a scope, and recounts its current period.
    fn put_budget(&self, budget: &Budget, now_ms: u64) -> Result<()>;
    fn list_budgets(&self) -> Result<Vec<Budget>>;
    fn delete_budget(&self, scope_type: ScopeType, scope_id: &str) -> Result<()>;
    /// What a scope used in the period starting at `period_start_ms`.
    fn used(&self, scope_type: ScopeType, scope_id: &str, period_start_ms: u64) -> Result<Used>;

    /// Stores records durably (idempotent by record id), counts them against
    /// budgets and raises threshold alerts, all in one transaction.
    /// `raw[i]`, when given, is the JSON text `records[i]` was parsed from
    /// (stored as is, which saves serialising it again).
    fn ingest(&self, node: &str, records: &[UsageRecord], raw: Option<&[&str]>, now_ms: u64) -> Result<IngestAck>;
    /// The current ingest sequence.
    fn seq(&self) -> Result<u64>;
    fn spend(&self, filter: &SpendFilter) -> Result<SpendTotals>;
    /// Spend grouped by dimensions and time buckets, highest cost first.
    fn report(&self, q: &crate::reports::ReportQuery) -> Result<Vec<crate::reports::ReportRow>>;

    fn list_alerts(&self, limit: u32) -> Result<Vec<AlertRow>>;
    /// Alerts not yet delivered whose next attempt is due.
    fn due_alerts(&self, now_ms: u64) -> Result<Vec<AlertRow>>;
    fn alert_attempted(&self, id: i64, ok: bool, error: Option<&str>, next_attempt_ms: u64, now_ms: u64) -> Result<()>;
}
