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

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Rejected => "rejected",
        Outcome::ProviderError => "provider_error",
        Outcome::UpstreamCut => "upstream_cut",
        Outcome::ClientAborted => "client_aborted",
    }
}

/// The metrics one record adds to: (kind, name, value).
pub fn for_record(r: &UsageRecord) -> Vec<(Kind, String, u64)> {
    let dims = format!(
        "team.{}.project.{}.model.{}.provider.{}",
        label(&r.team),
        label(&r.project),
        label(r.model_upstream.as_deref().unwrap_or("")),
        label(r.provider.as_deref().unwrap_or(""))
    );
    let mut out = vec![(Kind::Counter, format!("tollgate.requests.{dims}.outcome.{}", outcome_name(r.outcome)), 1)];
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
    if r.budget_decision == "denied" {
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
}
