//! The rows the insight features answer in: audit findings, cache misses,
//! evaluations, routing policies and the prompt registry.

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
