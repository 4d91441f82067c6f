//! Envoy metrics for a usage record. Names carry their labels as
//! `.<label>.<value>` segments; the `stats_tags` in envoy/demo/envoy.yaml
//! (documented in docs/metrics.md) turn them into Prometheus labels:
//!
//! ```text
//! wasmcustom.tollgate.requests.team.search.project.ranker.model.gpt-5_4.provider.openai.outcome.ok
//! -> tollgate_requests{team="search",project="ranker",model="gpt-5_4",provider="openai",outcome="ok"}
//! ```

use crate::record::{Outcome, UsageRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    /// Set to the value (not added).
    Gauge,
    Histogram,
}

/// A label value safe inside a stat name: `[A-Za-z0-9_-]`, others become
/// `_`, at most 64 characters, never empty.
pub fn label(v: &str) -> String {
    let s: String = v
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    if s.is_empty() {
        "none".into()
    } else {
        s
    }
}

/// One metric of a record's label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Series {
    Requests(Outcome),
    InputTokens,
    CachedInputTokens,
    CacheWriteTokens,
    OutputTokens,
    ReasoningTokens,
    CostMicros,
    CacheSavingsMicros,
    /// Requests whose prompt-cache miss the filter explained, and what it cost.
    CacheMisses,
    CacheMissLostMicros,
    BudgetDenied,
    UpstreamErrors,
    LatencyMs,
}

impl Series {
    pub fn kind(self) -> Kind {
        match self {
            Series::LatencyMs => Kind::Histogram,
            _ => Kind::Counter,
        }
    }

    /// The stat name under the label set `dims` ([`Dims::label`]).
    pub fn name(self, dims: &str) -> String {
        let base = match self {
            Series::Requests(o) => return format!("tollgate.requests.{dims}.outcome.{}", o.as_str()),
            Series::InputTokens => "input_tokens",
            Series::CachedInputTokens => "cached_input_tokens",
            Series::CacheWriteTokens => "cache_write_tokens",
            Series::OutputTokens => "output_tokens",
            Series::ReasoningTokens => "reasoning_tokens",
            Series::CostMicros => "cost_micros",
            Series::CacheSavingsMicros => "cache_savings_micros",
            Series::CacheMisses => "cache_misses",
            Series::CacheMissLostMicros => "cache_miss_lost_micros",
            Series::BudgetDenied => "budget_denied",
            Series::UpstreamErrors => "upstream_errors",
            Series::LatencyMs => "latency_ms",
        };
        format!("tollgate.{base}.{dims}")
    }
}

/// A record's labels, raw.
///
/// The model label is the upstream model only when the provider served the
/// request (so the model exists); otherwise it is the route that matched
/// (configured by the operator). Clients inventing model names under a
/// wildcard route (`openai/*`) therefore cannot create new series.
pub struct Dims<'a> {
    team: &'a str,
    project: &'a str,
    model: &'a str,
    provider: &'a str,
}

impl<'a> Dims<'a> {
    pub fn of(r: &'a UsageRecord) -> Self {
        let served = r.outcome == Outcome::Ok || r.usage_source == crate::record::UsageSource::Provider;
        let model = if served { r.model_upstream.as_deref() } else { r.route.as_deref() };
        Dims { team: &r.team, project: &r.project, model: model.unwrap_or(""), provider: r.provider.as_deref().unwrap_or("") }
    }

    /// A cache key for the label set (cheaper than [`Dims::label`]).
    pub fn key(&self) -> String {
        [self.team, self.project, self.model, self.provider].join("\u{1}")
    }

    /// The label segments of a stat name.
    pub fn label(&self) -> String {
        format!(
            "team.{}.project.{}.model.{}.provider.{}",
            label(self.team),
            label(self.project),
            label(self.model),
            label(self.provider)
        )
    }
}

/// What one record adds: (series, value). Counters only when non-zero.
pub fn points(r: &UsageRecord) -> Vec<(Series, u64)> {
    let mut out = Vec::with_capacity(8);
    out.push((Series::Requests(r.outcome), 1));
    let u = &r.usage;
    for (series, v) in [
        (Series::InputTokens, u.input_tokens),
        (Series::CachedInputTokens, u.cached_input_tokens),
        (Series::CacheWriteTokens, u.cache_write_tokens),
        (Series::OutputTokens, u.output_tokens),
        (Series::ReasoningTokens, u.reasoning_tokens),
        (Series::CostMicros, r.cost_micros),
    ] {
        if v > 0 {
            out.push((series, v));
        }
    }
    // A counter only grows: savings when positive (a net write premium is in the record).
    if let Ok(saved @ 1..) = u64::try_from(r.cache_savings_micros) {
        out.push((Series::CacheSavingsMicros, saved));
    }
    if let Some(m) = &r.cache_miss {
        out.push((Series::CacheMisses, 1));
        if m.lost_micros > 0 {
            out.push((Series::CacheMissLostMicros, m.lost_micros));
        }
    }
    if r.budget_decision == crate::record::BudgetDecision::Denied {
        out.push((Series::BudgetDenied, 1));
    }
    if r.status >= 500 || matches!(r.outcome, Outcome::UpstreamCut | Outcome::ProviderError) {
        out.push((Series::UpstreamErrors, 1));
    }
    if r.outcome != Outcome::Rejected {
        out.push((Series::LatencyMs, r.latency_ms));
    }
    out
}

/// The metrics one record adds to: (kind, name, value).
pub fn for_record(r: &UsageRecord) -> Vec<(Kind, String, u64)> {
    let dims = Dims::of(r).label();
    points(r).into_iter().map(|(s, v)| (s.kind(), s.name(&dims), v)).collect()
}

/// Counter increments of one worker, added up between flushes: a request
/// costs no host call per counter; the worker's tick hands the sums to
/// Envoy (one call per series that moved).
#[derive(Default)]
pub struct Pending {
    sums: std::collections::HashMap<u32, u64>,
}

impl Pending {
    pub fn add(&mut self, id: u32, v: u64) {
        let s = self.sums.entry(id).or_insert(0);
        *s = s.saturating_add(v);
    }

    /// Everything added since the last call.
    pub fn drain(&mut self) -> Vec<(u32, u64)> {
        self.sums.drain().filter(|(_, v)| *v > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_counters_add_up_and_drain_once() {
        let mut p = Pending::default();
        p.add(3, 2);
        p.add(3, 5);
        p.add(4, u64::MAX);
        p.add(4, 1);
        p.add(5, 0);
        let mut d = p.drain();
        d.sort();
        assert_eq!(d, vec![(3, 7), (4, u64::MAX)]);
        assert!(p.drain().is_empty());
    }

    #[test]
    fn labels_are_safe() {
        assert_eq!(label("gpt-5.4"), "gpt-5_4");
        assert_eq!(label(""), "none");
        assert_eq!(label("a b/c"), "a_b_c");
        assert_eq!(label(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn failed_requests_are_labelled_by_route_not_by_invented_model() {
        let rec: UsageRecord = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "x", "ts_ms": 0, "key_id": "k", "key_hash": "", "team": "t", "project": "p", "feature": null,
            "prompt_version": null, "user": null, "tags": {}, "api": "openai_chat", "provider": "openai",
            "route": "openai/*", "model_requested": "openai/made-up-1", "model_upstream": "made-up-1",
            "model_served": null, "stream": false, "status": 404, "outcome": "provider_error", "error_code": null,
            "usage": {"input_tokens": 0, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 0,
                      "reasoning_tokens": 0}, "usage_source": "none", "cost_micros": 0, "priced": true,
            "latency_ms": 1, "ttfb_ms": 1}))
        .unwrap();
        let names: Vec<String> = for_record(&rec).into_iter().map(|(_, n, _)| n).collect();
        assert!(names.iter().all(|n| !n.contains("made-up") && n.contains("model.openai__")), "{names:?}");
        let ok = UsageRecord { outcome: Outcome::Ok, usage_source: crate::record::UsageSource::Provider, ..rec };
        assert!(for_record(&ok).iter().any(|(_, n, _)| n.contains("model.made-up-1")));
    }
}
