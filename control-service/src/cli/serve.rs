//! `tollgate serve`: the control service.

use std::sync::Arc;

use tollgate_protocol::keys::{hash_key, to_hex};

use super::args::ServeArgs;
use super::{fail, out};
use crate::api::{alert_loop, audit_retention_loop, grant_retention_loop, router, statistics_loop, use_log_retention_loop, AppState, Settings};
use crate::sqlite::SqliteStore;
use crate::store::Store;
use crate::log_event;

/// A setting from the environment, `default` when unset or empty; a value
/// that is not UTF-8 is refused by name (it was taken as unset: the
/// default ran while the operator believed their value did).
fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        Err(std::env::VarError::NotUnicode(_)) => fail(&format!("{name} is not valid UTF-8")),
        _ => default.to_string(),
    }
}

/// SHA-256 of `bytes`, lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    to_hex(&sha2::Sha256::digest(bytes))
}

/// Settings from the environment (tokens, webhook, node TTL, filter module).
fn settings() -> Settings {
    let admin = std::env::var("TOLLGATE_ADMIN_TOKEN").unwrap_or_default();
    let filter = std::env::var("TOLLGATE_FILTER_TOKEN").unwrap_or_default();
    if admin.len() < 16 || filter.len() < 16 {
        fail("TOLLGATE_ADMIN_TOKEN and TOLLGATE_FILTER_TOKEN must be set (16 characters or more each)");
    }
    if admin == filter {
        fail("TOLLGATE_ADMIN_TOKEN and TOLLGATE_FILTER_TOKEN must differ");
    }
    let node_ttl_ms: u64 =
        env_or("TOLLGATE_NODE_TTL_MS", "15000").parse().unwrap_or_else(|_| fail("TOLLGATE_NODE_TTL_MS must be an integer"));
    // The log of budget use changes must outlast a silent-but-active
    // Envoy's cursor (twice the node TTL) and a full state's walk of pages.
    let use_log_keep_ms = env_or("TOLLGATE_USE_LOG_KEEP_MS", "600000")
        .parse()
        .ok()
        .filter(|&ms: &u64| ms >= node_ttl_ms.saturating_mul(2).max(60_000))
        .unwrap_or_else(|| fail("TOLLGATE_USE_LOG_KEEP_MS must be an integer of at least 60000 and twice TOLLGATE_NODE_TTL_MS"));
    let state_page = env_or("TOLLGATE_STATE_PAGE", "5000")
        .parse()
        .ok()
        .filter(|n| (1..=crate::ledger::STATE_PAGE_MAX).contains(n))
        .unwrap_or_else(|| fail("TOLLGATE_STATE_PAGE must be an integer from 1 to 5000"));
    let filter_wasm = std::env::var("TOLLGATE_FILTER_WASM").ok().filter(|v| !v.is_empty()).map(|path| {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| fail(&format!("TOLLGATE_FILTER_WASM: cannot read {path}: {e}")));
        let sha = sha256_hex(&bytes);
        (bytes, sha)
    });
    Settings {
        admin_token_hash: hash_key(&admin),
        filter_token_hash: hash_key(&filter),
        webhook_url: std::env::var("TOLLGATE_WEBHOOK_URL").ok().filter(|v| !v.is_empty()),
        node_ttl_ms,
        use_log_keep_ms,
        state_page,
        filter_wasm,
    }
}

pub fn run(a: ServeArgs) {
    let settings = settings();
    let (listen, db, retention_days, capture_days) = (a.listen, a.db, a.audit_retention_days, a.capture_retention_days);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        let is_pg = db.starts_with("postgres://") || db.starts_with("postgresql://") || db.contains("host=");
        let store: Arc<dyn Store> = if is_pg {
            match crate::postgres::PgStore::connect(&db).await {
                Ok(s) => Arc::new(s),
                Err(e) => fail(&format!("cannot open the PostgreSQL database: {e}")),
            }
        } else {
            match SqliteStore::open(std::path::Path::new(&db)) {
                Ok(s) => Arc::new(s),
                Err(e) => fail(&format!("cannot open database {db}: {e}")),
            }
        };
        let db = if is_pg { "postgresql".to_string() } else { db };
        let state = AppState::new(store, settings);
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => fail(&format!("cannot listen on {listen}: {e}")),
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
        tokio::spawn(alert_loop(state.clone()));
        tokio::spawn(audit_retention_loop(state.clone(), retention_days, capture_days));
        tokio::spawn(grant_retention_loop(state.clone()));
        tokio::spawn(statistics_loop(state.clone()));
        tokio::spawn(use_log_retention_loop(state.clone()));
        log_event("info", "listening", serde_json::json!({"addr": addr, "db": db}));
        out(&format!("tollgate control service listening on {addr}\n"));
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            log_event("info", "shutting down", serde_json::json!({}));
        };
        if let Err(e) = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await {
            fail(&format!("server error: {e}"));
        }
    });
}
