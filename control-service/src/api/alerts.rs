//! The alert worker: budget threshold alerts and cache-drop alerts
//! delivered to the webhook, with retries; cache drops looked for every
//! minute (or at once: `POST /v1/cache-alerts/check`).

use super::*;

/// How often the cache-drop rule runs.
const CACHE_CHECK_EVERY_MS: u64 = 60_000;

/// POSTs `payload`; (delivered, error).
async fn deliver(url: String, payload: Value) -> (bool, Option<String>) {
    let res = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().new_agent();
        agent.post(&url).send_json(&payload).map(|r| r.status().as_u16())
    })
    .await;
    match res {
        Ok(Ok(s)) if (200..300).contains(&s) => (true, None),
        Ok(Ok(s)) => (false, Some(format!("webhook answered {s}"))),
        Ok(Err(e)) => (false, Some(e.to_string())),
        Err(e) => (false, Some(e.to_string())),
    }
}

/// Delivers due alerts to the webhook, retrying with backoff.
pub async fn alert_loop(st: Arc<AppState>) {
    let mut next_check = 0u64;
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), st.alerts_wake.notified()).await;
        if now_ms() >= next_check {
            next_check = now_ms() + CACHE_CHECK_EVERY_MS;
            let store = st.store.clone();
            if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || store.check_cache_drops(now_ms())).await {
                if n > 0 {
                    log_event("warn", "cache_hit_rate_drop", json!({"new_alerts": n}));
                }
            }
        }
        let Some(url) = st.settings.webhook_url.clone() else { continue };
        let store = st.store.clone();
        let Ok(Ok((budget, cache))) = tokio::task::spawn_blocking(move || Ok::<_, StoreError>((store.due_alerts(now_ms())?, store.due_cache_alerts(now_ms())?))).await
        else {
            continue;
        };
        for a in budget {
            let (ok, err) = deliver(url.clone(), json!({"event": "tollgate.budget_threshold", "alert": a})).await;
            let backoff = 1000u64 << a.attempts.min(6);
            let (store, e2) = (st.store.clone(), err.clone());
            let _ = tokio::task::spawn_blocking(move || store.alert_attempted(a.id, ok, e2.as_deref(), now_ms() + backoff, now_ms())).await;
            delivered(&st, ok, json!({"alert_id": a.id, "scope": format!("{}:{}", a.scope_type.as_str(), a.scope_id), "threshold": a.threshold, "ok": ok, "error": err}));
        }
        for a in cache {
            let (ok, err) = deliver(url.clone(), json!({"event": "tollgate.cache_hit_rate_drop", "alert": a})).await;
            let backoff = 1000u64 << a.attempts.min(6);
            let (store, e2) = (st.store.clone(), err.clone());
            let _ = tokio::task::spawn_blocking(move || store.cache_alert_attempted(a.id, ok, e2.as_deref(), now_ms() + backoff, now_ms())).await;
            delivered(&st, ok, json!({"cache_alert_id": a.id, "feature": a.feature, "prompt_version": a.prompt_version, "ok": ok, "error": err}));
        }
    }
}

fn delivered(st: &AppState, ok: bool, what: Value) {
    if ok {
        st.counters.alerts_delivered.fetch_add(1, Relaxed);
    } else {
        st.counters.alerts_failed.fetch_add(1, Relaxed);
    }
    log_event(if ok { "info" } else { "warn" }, "alert delivery", what);
}

/// `POST /v1/cache-alerts/check`: runs the cache-drop rule now.
pub(super) async fn cache_alerts_check(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&st, &headers)?;
    let store = st.store.clone();
    let new = blocking(move || store.check_cache_drops(now_ms())).await?;
    st.alerts_wake.notify_one();
    Ok(Json(json!({"new_alerts": new})))
}
