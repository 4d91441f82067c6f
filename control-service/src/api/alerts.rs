//! The alert worker: threshold alerts delivered to the webhook, with retries.

use super::*;

/// Delivers threshold alerts to the webhook, retrying with backoff.
pub async fn alert_loop(st: Arc<AppState>) {
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), st.alerts_wake.notified()).await;
        let Some(url) = st.settings.webhook_url.clone() else { continue };
        let store = st.store.clone();
        let due = match tokio::task::spawn_blocking(move || store.due_alerts(now_ms())).await {
            Ok(Ok(d)) => d,
            _ => continue,
        };
        for a in due {
            let url = url.clone();
            let payload = json!({"event": "tollgate.budget_threshold", "alert": a});
            let res = tokio::task::spawn_blocking(move || {
                let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().new_agent();
                agent.post(&url).send_json(&payload).map(|r| r.status().as_u16())
            })
            .await;
            let (ok, err) = match res {
                Ok(Ok(s)) if (200..300).contains(&s) => (true, None),
                Ok(Ok(s)) => (false, Some(format!("webhook answered {s}"))),
                Ok(Err(e)) => (false, Some(e.to_string())),
                Err(e) => (false, Some(e.to_string())),
            };
            if ok {
                st.counters.alerts_delivered.fetch_add(1, Relaxed);
            } else {
                st.counters.alerts_failed.fetch_add(1, Relaxed);
            }
            let backoff = 1000u64 << a.attempts.min(6);
            let store = st.store.clone();
            let e2 = err.clone();
            let _ = tokio::task::spawn_blocking(move || {
                store.alert_attempted(a.id, ok, e2.as_deref(), now_ms() + backoff, now_ms())
            })
            .await;
            log_event(
                if ok { "info" } else { "warn" },
                "alert delivery",
                json!({"alert_id": a.id, "scope": format!("{}:{}", a.scope_type.as_str(), a.scope_id), "threshold": a.threshold, "ok": ok, "error": err}),
            );
        }
    }
}

// ---- reports ----------------------------------------------------------------
