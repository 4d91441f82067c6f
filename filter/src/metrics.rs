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

/// The metrics one record adds to: (kind, name, value).
///
/// The model label is the upstream model only when the provider served the
/// request (so the model exists); otherwise it is the route that matched
/// (configured by the operator). Clients inventing model names under a
/// wildcard route (`openai/*`) therefore cannot create new series.
pub fn for_record(r: &UsageRecord) -> Vec<(Kind, String, u64)> {
    let served = r.outcome == Outcome::Ok || r.usage_source == crate::record::UsageSource::Provider;
    let model = if served { r.model_upstream.as_deref() } else { r.route.as_deref() };
    let dims = format!(
        "team.{}.project.{}.model.{}.provider.{}",
        label(&r.team),
        label(&r.project),
        label(model.unwrap_or("")),
        label(r.provider.as_deref().unwrap_or(""))
    );
    let mut out = vec![(Kind::Counter, format!("tollgate.requests.{dims}.outcome.{}", r.outcome.as_str()), 1)];
    let u = &r.usage;
    for (name, v) in [
        ("input_tokens", u.input_tokens),
        ("cached_input_tokens", u.cached_input_tokens),
        ("cache_write_tokens", u.cache_write_tokens),
        ("output_tokens", u.output_tokens),
        ("reasoning_tokens", u.reasoning_tokens),
        ("cost_micros", r.cost_micros),
    ] {
        if v > 0 {
            out.push((Kind::Counter, format!("tollgate.{name}.{dims}"), v));
        }
    }
    // A counter only grows: savings when positive (a net write premium is in the record).
    if let Ok(saved @ 1..) = u64::try_from(r.cache_savings_micros) {
        out.push((Kind::Counter, format!("tollgate.cache_savings_micros.{dims}"), saved));
    }
    if r.budget_decision == crate::record::BudgetDecision::Denied {
        out.push((Kind::Counter, format!("tollgate.budget_denied.{dims}"), 1));
    }
    if r.status >= 500 || matches!(r.outcome, Outcome::UpstreamCut | Outcome::ProviderError) {
        out.push((Kind::Counter, format!("tollgate.upstream_errors.{dims}"), 1));
    }
    if r.outcome != Outcome::Rejected {
        out.push((Kind::Histogram, format!("tollgate.latency_ms.{dims}"), r.latency_ms));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
