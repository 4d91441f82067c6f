//! The control service's own Prometheus metrics.

use super::*;

pub(super) fn prom_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus text format: process counters and every budget's state.
/// Budgets of one scope type past which their per-budget series are left out.
pub const METRIC_BUDGETS: usize = 1000;

pub(super) async fn metrics(State(st): State<Arc<AppState>>) -> ApiResult<Response> {
    let c = &st.counters;
    let mut out = String::new();
    for (name, help, v) in [
        ("tollgate_control_ingest_batches_total", "usage batches received", c.ingest_batches.load(Relaxed)),
        ("tollgate_control_ingest_records_total", "usage records stored (new)", c.ingest_records.load(Relaxed)),
        ("tollgate_control_ingest_duplicates_total", "usage records received again and ignored", c.ingest_duplicates.load(Relaxed)),
        ("tollgate_control_ingest_errors_total", "usage batches refused or failed", c.ingest_errors.load(Relaxed)),
        ("tollgate_control_ingest_rejected_total", "usage records refused as invalid (listed in the ack, not stored)", c.ingest_rejected.load(Relaxed)),
        ("tollgate_control_state_polls_total", "budget state polls by Envoys", c.state_polls.load(Relaxed)),
        ("tollgate_control_state_not_modified_total", "polls answered 304", c.state_not_modified.load(Relaxed)),
        ("tollgate_control_state_full_total", "full states begun (their first page sent to an Envoy)", c.state_full.load(Relaxed)),
        ("tollgate_control_state_slow_total", "polls that took the control service over a second", c.state_slow.load(Relaxed)),
        ("tollgate_control_key_change_pages_total", "key-change pages served to Envoys", c.key_change_pages.load(Relaxed)),
        ("tollgate_control_keys_imported_total", "keys created through /v1/key-imports", c.keys_imported.load(Relaxed)),
        ("tollgate_control_alerts_delivered_total", "alert webhook deliveries that succeeded", c.alerts_delivered.load(Relaxed)),
        ("tollgate_control_alert_delivery_failures_total", "alert webhook attempts that failed", c.alerts_failed.load(Relaxed)),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"));
    }
    // Per-budget series for a scope type only while it has at most
    // METRIC_BUDGETS budgets: a budget on each of a million keys would be
    // millions of series and a million reads per scrape. The count of each
    // type is always there; every budget's figures are in the API.
    let store = st.store.clone();
    let (budgets, counts, seq) = blocking(move || {
        let now = now_ms();
        let (mut v, mut counts) = (Vec::new(), Vec::new());
        for t in ScopeType::ALL {
            let (n, some) = store.budgets_of_type(t, METRIC_BUDGETS)?;
            counts.push((t, n));
            if n as usize > METRIC_BUDGETS {
                continue;
            }
            for b in some {
                if let Some(d) = budget_doc(store.as_ref(), &b, now)? {
                    v.push(d);
                }
            }
        }
        Ok((v, counts, store.seq()?))
    })
    .await?;
    out.push_str("# HELP tollgate_control_budgets budgets set, by scope type\n# TYPE tollgate_control_budgets gauge\n");
    for (t, n) in counts {
        out.push_str(&format!("tollgate_control_budgets{{scope_type=\"{}\"}} {n}\n", t.as_str()));
    }
    out.push_str(&format!("# HELP tollgate_control_ingest_seq ingest sequence\n# TYPE tollgate_control_ingest_seq gauge\ntollgate_control_ingest_seq {seq}\n"));
    for (name, help) in [
        ("tollgate_budget_used_micros", "spend this period, micro-dollars"),
        ("tollgate_budget_limit_micros", "budget limit, micro-dollars"),
        ("tollgate_budget_used_tokens", "tokens this period"),
        ("tollgate_budget_limit_tokens", "budget limit, tokens"),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for d in &budgets {
            let v = match name {
                "tollgate_budget_used_micros" => Some(d.used_micros),
                "tollgate_budget_limit_micros" => d.limit_micros,
                "tollgate_budget_used_tokens" => Some(d.used_tokens),
                _ => d.limit_tokens,
            };
            if let Some(v) = v {
                out.push_str(&format!(
                    "{name}{{scope_type=\"{}\",scope_id=\"{}\"}} {v}\n",
                    d.scope_type.as_str(),
                    prom_label(&d.scope_id)
                ));
            }
        }
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}
