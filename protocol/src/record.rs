//! The usage record: one per request, the unit the control service counts.
//! docs/usage-record.md is its contract; bump `v` on incompatible change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scope::Scope;
use crate::usage::Usage;
use crate::Api;

pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider answered 2xx and (for streams) finished the stream.
    Ok,
    /// The gateway refused the request before it went upstream (bad body, unknown model, …).
    Rejected,
    /// The provider (or Envoy on its behalf) answered with an error status, or sent an error event mid-stream.
    ProviderError,
    /// The response stopped before its end because the upstream went away.
    UpstreamCut,
    /// The client went away before the response ended.
    ClientAborted,
}

impl Outcome {
    /// The name used in records, metrics and access logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Rejected => "rejected",
            Outcome::ProviderError => "provider_error",
            Outcome::UpstreamCut => "upstream_cut",
            Outcome::ClientAborted => "client_aborted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// Counts reported by the provider.
    Provider,
    /// Some or all counts estimated by the gateway (cut or aborted streams).
    Estimated,
    /// Nothing was spent (or nothing can be known): all counts zero.
    None,
}

/// A processing tier a request asked for that the provider prices apart
/// from the standard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceTier {
    /// OpenAI's Priority processing, renamed Fast mode in July 2026
    /// (`service_tier: "priority"` or `"fast"`).
    Priority,
    /// OpenAI's Ultrafast mode (`service_tier: "ultrafast"`, 6 × on GPT-6 Astra).
    Ultrafast,
    /// OpenAI's Flex processing (`service_tier: "flex"`), billed below standard.
    Flex,
    /// Anthropic's fast mode (`speed: "fast"`; 2 × to 6 × by model).
    Fast,
    /// OpenAI's Batch API: a batch's requests, billed below standard
    /// (charged when Tollgate sees the batch ended: `filter/src/batch.rs`).
    Batch,
}

/// Where a request asked its inference to run, when that is priced apart
/// (Anthropic's `inference_geo: "us"`, 1.1 ×).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InferenceGeo {
    Us,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Schema version.
    pub v: u32,
    /// Unique request id, made by Tollgate (never the client's header): the
    /// idempotency key of ingest. See [`crate::ids`].
    pub id: String,
    /// The client's `x-request-id`, when it sent a clean one: for
    /// correlation only, never used to de-duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// The client's session (a Claude Code conversation, an agent's run):
    /// `x-tollgate-session`, else Claude Code's `x-claude-code-session-id`,
    /// when clean as `client_request_id`. Reports group and filter by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Request start, Unix milliseconds.
    pub ts_ms: u64,
    pub key_id: String,
    /// SHA3-256 of the virtual key (never the key).
    pub key_hash: String,
    pub team: String,
    pub project: String,
    pub feature: Option<String>,
    pub prompt_version: Option<String>,
    /// End-user id passed by the client (`user` / `metadata.user_id`).
    pub user: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub api: Api,
    pub provider: Option<String>,
    pub route: Option<String>,
    pub model_requested: Option<String>,
    pub model_upstream: Option<String>,
    /// The model the provider says served the request.
    pub model_served: Option<String>,
    pub stream: bool,
    /// HTTP status the client received.
    pub status: u16,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub usage: Usage,
    pub usage_source: UsageSource,
    /// Cost in micro-dollars (rounded up once per request).
    pub cost_micros: u64,
    /// What the provider's prompt cache saved: the cost of this request
    /// with every input token at the uncached input price, minus
    /// `cost_micros`. Negative when cache writes (billed above the input
    /// price) outweighed the reads.
    #[serde(default)]
    pub cache_savings_micros: i64,
    /// False when no price was configured for the served model (cost is then 0).
    pub priced: bool,
    /// From request start to the end of the response (or of the request when rejected).
    pub latency_ms: u64,
    /// From request start to the first response byte from upstream.
    pub ttfb_ms: Option<u64>,
    /// Budgeted scopes this request was admitted against (`"team:search"`),
    /// or the one that refused it.
    #[serde(default)]
    pub budget_scopes: Vec<Scope>,
    #[serde(default)]
    pub budget_decision: BudgetDecision,
    /// What the guardrails found (data classes and counts, never a value)
    /// and did; absent when the gateway has no guardrails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<Guardrails>,
    /// Why the provider's prompt cache could not serve this request's
    /// prefix, when the filter can tell (docs/caching.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_miss: Option<CacheMiss>,
    /// A request that asked for JSON (`response_format`): whether the
    /// answer was one JSON value matching its schema (docs/json.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_check: Option<JsonCheck>,
    /// The upstream attempts that failed before the one that answered
    /// (fallbacks), oldest first; empty when the first one answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// Why the model was chosen when the gateway chose it (`auto` routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_by: Option<String>,
    /// The tier the request was charged at, when priced other than
    /// standard: the one the answer says served it, else the one asked
    /// (`cost_micros` is at that tier's price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// The inference geography the request was charged at, when priced
    /// apart: where the answer says it ran, else the one asked
    /// (`cost_micros` is at its price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_geo: Option<InferenceGeo>,
    /// A sampled request and its answer, for evaluations (opt-in per
    /// feature or route; after guardrail redaction). The control service
    /// keeps it apart from the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<Capture>,
}

/// A captured request (JSON text, as sent upstream in the client's API)
/// and its answer (JSON text, as the provider gave it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    pub request: String,
    pub response: String,
}

/// The largest capture a record may carry, each side.
pub const MAX_CAPTURE_BYTES: usize = 256 * 1024;

/// The JSON check of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCheck {
    pub valid: bool,
    /// The gateway removed fences or text around the value (`json_repair`).
    pub repaired: bool,
    /// The first mismatch: a path and a reason, never a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An upstream attempt that failed (and was not charged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    /// The status the attempt ended with (Envoy's for a timeout or a refused connection).
    pub status: u16,
}

/// Most attempts a record lists.
pub const MAX_ATTEMPTS: usize = 8;

/// A prompt-cache miss the filter explains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheMiss {
    /// `prefix_changed`, `not_cached`, `no_cache_marker`,
    /// `marker_below_minimum`, or (the provider's own diagnosis)
    /// `model_changed`.
    pub reason: String,
    /// Where the prefix first differs from recent requests: `tools`,
    /// `system` or `messages[N]`; `messages` (an earlier message changed)
    /// from the provider's diagnosis, which gives no offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Byte offset in that segment (512-byte precision), or the marked
    /// prefix's bytes for `marker_below_minimum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// What the part that could have been cached cost above the cached price.
    pub lost_micros: u64,
}

impl CacheMiss {
    fn check(&self) -> Result<(), String> {
        if !matches!(self.reason.as_str(), "prefix_changed" | "not_cached" | "no_cache_marker" | "marker_below_minimum" | "model_changed") {
            return Err("cache_miss.reason: prefix_changed, not_cached, no_cache_marker, marker_below_minimum or model_changed".into());
        }
        let seg_ok = |s: &str| {
            matches!(s, "tools" | "system" | "messages")
                || s.strip_prefix("messages[").and_then(|r| r.strip_suffix(']')).is_some_and(|n| n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
        };
        if self.segment.as_deref().is_some_and(|s| !seg_ok(s)) {
            return Err("cache_miss.segment: tools, system, messages or messages[N]".into());
        }
        if self.offset.is_some_and(|o| o > 1 << 32) || self.lost_micros > MAX_COST_MICROS {
            return Err("cache_miss: offset or lost_micros out of range".into());
        }
        Ok(())
    }
}

/// A request's guardrail finding, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// Data class (`email`, `card`, … or a custom name) -> values found
    /// in the request.
    pub classes: BTreeMap<String, u64>,
    /// `observed`, `redacted` or `blocked`; `none` when the request had
    /// nothing (and only the answer did).
    pub action: String,
    /// The policy's version.
    pub policy: String,
    /// Classes found in the answer (when the policy scans answers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_classes: BTreeMap<String, u64>,
    /// `observed` or `redacted`, with `response_classes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_action: Option<String>,
    /// Placeholders in the answer given back their original value.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restored: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Most classes one record may name.
pub const MAX_GUARD_CLASSES: usize = 64;

impl Guardrails {
    fn check(&self) -> Result<(), String> {
        for (field, classes) in [("classes", &self.classes), ("response_classes", &self.response_classes)] {
            if classes.len() > MAX_GUARD_CLASSES {
                return Err(format!("guardrails.{field}: more than {MAX_GUARD_CLASSES}"));
            }
            let name_ok = crate::guard::valid_class_name;
            if let Some((k, _)) = classes.iter().find(|(k, v)| !name_ok(k) || **v > crate::usage::MAX_COUNT) {
                return Err(format!("guardrails.{field}: '{}' is not a class name with a count", crate::text::clean_field(k, 32)));
            }
        }
        match (self.action.as_str(), self.classes.is_empty()) {
            ("observed" | "redacted" | "blocked", false) | ("none", true) => {}
            _ => return Err("guardrails.action: one of observed, redacted, blocked (none when no class was found)".into()),
        }
        match (self.response_action.as_deref(), self.response_classes.is_empty()) {
            (Some("observed" | "redacted"), false) | (None, true) => {}
            _ => return Err("guardrails.response_action: observed or redacted, given exactly when response_classes are".into()),
        }
        if self.restored > crate::usage::MAX_COUNT {
            return Err("guardrails.restored: too large".into());
        }
        if self.policy.is_empty() || self.policy.len() > 64 || self.policy.chars().any(char::is_control) {
            return Err("guardrails.policy: 1 to 64 characters, no control characters".into());
        }
        Ok(())
    }
}

/// What the budgets said about a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetDecision {
    /// No budget applies.
    #[default]
    Off,
    /// Admitted (reserved against every budget that applies).
    Ok,
    /// Admitted past a soft threshold.
    Soft,
    /// Refused (429).
    Denied,
    /// Not checked: the state is stale and the failure mode is `open`.
    Unenforced,
}

impl BudgetDecision {
    /// The name used in records, metrics and access logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetDecision::Off => "off",
            BudgetDecision::Ok => "ok",
            BudgetDecision::Soft => "soft",
            BudgetDecision::Denied => "denied",
            BudgetDecision::Unenforced => "unenforced",
        }
    }
}

/// The most a record's cost may say: 10^15 micro-dollars ($1 billion).
pub const MAX_COST_MICROS: u64 = 1_000_000_000_000_000;
/// The latest request time a record may carry: 9999-12-31T23:59:59.999Z,
/// the control service's bound on every instant (budget windows, reports).
/// Before, a record stamped later was stored, counted by `/v1/spend` and
/// missing from the bucketed reports of the same range.
pub const MAX_TS_MS: u64 = 253_402_300_799_999;
/// Bounds on a record's text fields (characters) and lists.
pub const MAX_ID: usize = 128;
pub const MAX_NAME: usize = 128;
pub const MAX_MODEL: usize = 256;
pub const MAX_TAGS: usize = 32;
pub const MAX_SCOPES: usize = 16;

impl UsageRecord {
    /// What the record counts against a budget: its cost, and input +
    /// output tokens.
    pub fn budget_amount(&self) -> (u64, u64) {
        (self.cost_micros, self.usage.budget_tokens())
    }
}

/// The members of a record that count against budgets, read without the
/// rest (no text copied): an Envoy's background service reads them from
/// every record it ships.
#[derive(Debug, Default, Deserialize)]
pub struct BudgetPart {
    #[serde(default)]
    pub budget_scopes: Vec<Scope>,
    #[serde(default)]
    cost_micros: u64,
    #[serde(default)]
    usage: BudgetTokens,
}

#[derive(Debug, Default, Deserialize)]
struct BudgetTokens {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

impl BudgetPart {
    /// The same as [`UsageRecord::budget_amount`].
    pub fn amount(&self) -> (u64, u64) {
        let usage = Usage { input_tokens: self.usage.input_tokens, output_tokens: self.usage.output_tokens, ..Usage::default() };
        (self.cost_micros, usage.budget_tokens())
    }
}

impl UsageRecord {

    /// Every field within the bounds [`validate`](Self::validate) checks:
    /// text cleaned of control characters and cut, counts clamped. The
    /// filter applies it to every record it emits, so a hostile client or
    /// provider cannot make a record the control service must refuse.
    pub fn bounded(mut self) -> UsageRecord {
        use crate::text::bound_in_place as c;
        let opt = |o: &mut Option<String>, n: usize| {
            if let Some(s) = o.as_mut() {
                c(s, n);
            }
        };
        c(&mut self.id, MAX_ID);
        opt(&mut self.client_request_id, MAX_ID);
        opt(&mut self.session_id, MAX_ID);
        for s in [&mut self.key_id, &mut self.key_hash, &mut self.team, &mut self.project] {
            c(s, MAX_NAME);
        }
        for (o, n) in [
            (&mut self.feature, MAX_NAME),
            (&mut self.prompt_version, MAX_NAME),
            (&mut self.user, 256),
            (&mut self.provider, MAX_NAME),
            (&mut self.route, MAX_MODEL),
            (&mut self.model_requested, MAX_MODEL),
            (&mut self.model_upstream, MAX_MODEL),
            (&mut self.model_served, MAX_MODEL),
            (&mut self.error_code, MAX_NAME),
        ] {
            opt(o, n);
        }
        let clean = |v: &str, n: usize| v.len() <= n && !v.chars().any(char::is_control);
        if self.tags.len() > MAX_TAGS || self.tags.iter().any(|(k, v)| !clean(k, MAX_NAME) || !clean(v, MAX_NAME)) {
            use crate::text::clean_field as cf;
            self.tags = self.tags.iter().take(MAX_TAGS).map(|(k, v)| (cf(k, MAX_NAME), cf(v, MAX_NAME))).collect();
        }
        self.budget_scopes.truncate(MAX_SCOPES);
        if self.guardrails.as_ref().is_some_and(|g| g.check().is_err()) {
            self.guardrails = None;
        }
        if self.cache_miss.as_ref().is_some_and(|c| c.check().is_err()) {
            self.cache_miss = None;
        }
        if let Some(j) = &mut self.json_check {
            if let Some(e) = &mut j.error {
                c(e, 256);
            }
        }
        self.attempts.truncate(MAX_ATTEMPTS);
        for a in &mut self.attempts {
            c(&mut a.provider, MAX_NAME);
            c(&mut a.model, MAX_NAME);
        }
        if let Some(r) = &mut self.routed_by {
            c(r, 256);
        }
        // A capture the service would refuse is dropped, never the record with it.
        let json = |t: &str| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok();
        if self.capture.as_ref().is_some_and(|k| k.request.len() > MAX_CAPTURE_BYTES || k.response.len() > MAX_CAPTURE_BYTES || !json(&k.request) || !json(&k.response)) {
            self.capture = None;
        }
        for s in &mut self.budget_scopes {
            c(&mut s.id, MAX_NAME);
        }
        self.usage = self.usage.bounded();
        self.cost_micros = self.cost_micros.min(MAX_COST_MICROS);
        self.cache_savings_micros = self.cache_savings_micros.clamp(-(MAX_COST_MICROS as i64), MAX_COST_MICROS as i64);
        self
    }

    /// Checks a record received from an Envoy: what the control service
    /// stores must be bounded (no field can grow a row, a report or a sum
    /// past its limits). Returns the first field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let text = |name: &str, v: &str, max: usize| -> Result<(), String> {
            if v.chars().count() > max {
                return Err(format!("{name}: longer than {max} characters"));
            }
            if v.chars().any(char::is_control) {
                return Err(format!("{name}: control characters"));
            }
            Ok(())
        };
        if self.id.is_empty() {
            return Err("id: empty".into());
        }
        if self.ts_ms > MAX_TS_MS {
            return Err(format!("ts_ms: after {MAX_TS_MS} (9999-12-31)"));
        }
        text("id", &self.id, MAX_ID)?;
        for (n, v) in [("key_id", &self.key_id), ("key_hash", &self.key_hash), ("team", &self.team), ("project", &self.project)] {
            text(n, v, MAX_NAME)?;
        }
        for (n, v, max) in [
            ("client_request_id", &self.client_request_id, MAX_ID),
            ("session_id", &self.session_id, MAX_ID),
            ("feature", &self.feature, MAX_NAME),
            ("prompt_version", &self.prompt_version, MAX_NAME),
            ("user", &self.user, 256),
            ("provider", &self.provider, MAX_NAME),
            ("route", &self.route, MAX_MODEL),
            ("model_requested", &self.model_requested, MAX_MODEL),
            ("model_upstream", &self.model_upstream, MAX_MODEL),
            ("model_served", &self.model_served, MAX_MODEL),
            ("error_code", &self.error_code, MAX_NAME),
        ] {
            if let Some(v) = v {
                text(n, v, max)?;
            }
        }
        if self.tags.len() > MAX_TAGS {
            return Err(format!("tags: more than {MAX_TAGS}"));
        }
        for (k, v) in &self.tags {
            text("tags", k, MAX_NAME)?;
            text("tags", v, MAX_NAME)?;
        }
        if self.budget_scopes.len() > MAX_SCOPES {
            return Err(format!("budget_scopes: more than {MAX_SCOPES}"));
        }
        for s in &self.budget_scopes {
            text("budget_scopes", &s.id, MAX_NAME)?;
        }
        if self.usage != self.usage.bounded() {
            return Err(format!("usage: a count above {} or a part larger than its total", crate::usage::MAX_COUNT));
        }
        if self.cost_micros > MAX_COST_MICROS {
            return Err(format!("cost_micros: above {MAX_COST_MICROS}"));
        }
        if self.cache_savings_micros.unsigned_abs() > MAX_COST_MICROS {
            return Err(format!("cache_savings_micros: beyond ±{MAX_COST_MICROS}"));
        }
        if let Some(g) = &self.guardrails {
            g.check()?;
        }
        if let Some(c) = &self.cache_miss {
            c.check()?;
        }
        if self.json_check.as_ref().and_then(|j| j.error.as_ref()).is_some_and(|e| e.len() > 256 || e.chars().any(char::is_control)) {
            return Err("json_check.error: at most 256 characters, no control characters".into());
        }
        if self.attempts.len() > MAX_ATTEMPTS {
            return Err(format!("attempts: more than {MAX_ATTEMPTS}"));
        }
        for a in &self.attempts {
            text("attempts", &a.provider, MAX_NAME)?;
            text("attempts", &a.model, MAX_NAME)?;
        }
        if let Some(r) = &self.routed_by {
            text("routed_by", r, 256)?;
        }
        if let Some(c) = &self.capture {
            if c.request.len() > MAX_CAPTURE_BYTES || c.response.len() > MAX_CAPTURE_BYTES {
                return Err(format!("capture: more than {MAX_CAPTURE_BYTES} bytes a side"));
            }
            if serde_json::from_str::<serde::de::IgnoredAny>(&c.request).is_err() || serde_json::from_str::<serde::de::IgnoredAny>(&c.response).is_err() {
                return Err("capture: request and response must be JSON".into());
            }
        }
        Ok(())
    }
}
