//! Tollgate control service: receives usage from every Envoy, counts it
//! against budgets, serves budget state, keys, guardrail policy, prompts
//! and routing back, raises alerts, runs evaluations.

pub mod api;
pub mod cli;
pub mod db;
pub mod evals;
pub mod group_commit;
pub mod ledger;
pub mod periods;
pub mod postgres;
pub mod monthly;
pub mod reports;
pub mod sqlite;
pub mod store;

/// Wall-clock now, Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One structured log line (JSON) on stderr. Never pass a secret.
pub fn log_event(level: &str, msg: &str, fields: serde_json::Value) {
    if level == "debug" && std::env::var("TOLLGATE_LOG_DEBUG").is_err() {
        return;
    }
    let mut line = serde_json::json!({"ts_ms": now_ms(), "level": level, "msg": msg});
    if let (Some(obj), serde_json::Value::Object(f)) = (line.as_object_mut(), fields) {
        obj.extend(f);
    }
    eprintln!("{line}");
}
