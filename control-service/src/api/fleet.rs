//! What the Envoys call: usage ingest and the budget state (grants, keys).

use super::*;
use crate::group_commit::Batch;

/// Ingests a batch. Each record is checked on its own: one that does not
/// parse or is out of bounds (`UsageRecord::validate`) is refused and listed
/// in the ack's `rejected`, the others are stored. A bad record never
/// blocks the records after it; only a body that is not a batch at all is
/// a 400.
pub(super) async fn ingest(State(st): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    role(&st, &headers)?;
    let (n, rejected, parsed) = blocking(move || {
        let batch: IngestBatch = serde_json::from_slice(&body).map_err(|e| StoreError::Invalid(format!("invalid JSON: {e}")))?;
        // Valid JSON naming no Envoy: refused before its records are read,
        // with the field at fault, as the state poll says it.
        if let Some(why) = tollgate_protocol::state::node_problem(&batch.node) {
            return Ok(Err(ApiError::bad("invalid_field", format!("node: {why}"))));
        }
        let mut raw = Vec::with_capacity(batch.records.len());
        let mut records = Vec::with_capacity(batch.records.len());
        let mut rejected = Vec::new();
        for (index, r) in batch.records.iter().enumerate() {
            let parsed = serde_json::from_str::<UsageRecord>(r.get()).map_err(|e| format!("invalid JSON: {e}"));
            match parsed.and_then(|rec| rec.validate().map(|()| rec)) {
                Ok(rec) => {
                    raw.push(r.get().to_owned());
                    records.push(rec);
                }
                Err(reason) => {
                    #[derive(Deserialize)]
                    struct Id {
                        #[serde(default)]
                        id: String,
                    }
                    let id = serde_json::from_str::<Id>(r.get()).map(|i| i.id).unwrap_or_default();
                    let id = tollgate_protocol::text::clean_field(&id, 128);
                    rejected.push(RejectedRecord { index, id, reason });
                }
            }
        }
        let n = records.len();
        Ok(Ok((n, rejected, Batch { node: batch.node.to_string(), records, raw, now_ms: now_ms() })))
    })
    .await
    .map_err(|e| match e.code {
        "invalid" => ApiError::bad("invalid_json", e.message),
        _ => e,
    })
    .and_then(|checked| checked)
    .inspect_err(|_| {
        st.counters.ingest_errors.fetch_add(1, Relaxed);
    })?;
    // A full queue is not a storage failure: the sender keeps its records and retries.
    let committed = st.ingest.submit(parsed).map_err(|e| {
        st.counters.ingest_errors.fetch_add(1, Relaxed);
        log_event("warn", "ingest refused", json!({"reason": e.to_string()}));
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", "ingest_busy", "usage arrives faster than it can be stored: retry the batch")
    })?;
    let mut ack = match committed.await {
        Ok(Ok(ack)) => ack,
        Ok(Err(e)) => {
            st.counters.ingest_errors.fetch_add(1, Relaxed);
            return Err(e.into());
        }
        Err(_) => {
            st.counters.ingest_errors.fetch_add(1, Relaxed);
            return Err(StoreError::Backend("the ingest writer stopped".into()).into());
        }
    };
    ack.rejected = rejected;
    st.counters.ingest_batches.fetch_add(1, Relaxed);
    st.counters.ingest_records.fetch_add(ack.accepted, Relaxed);
    st.counters.ingest_duplicates.fetch_add(ack.duplicates, Relaxed);
    st.counters.ingest_rejected.fetch_add(ack.rejected.len() as u64, Relaxed);
    if ack.accepted > 0 {
        st.alerts_wake.notify_one();
    }
    for r in &ack.rejected {
        log_event("warn", "usage record rejected", json!({"index": r.index, "id": r.id, "reason": r.reason}));
    }
    log_event("debug", "ingest", json!({"records": n, "accepted": ack.accepted, "duplicates": ack.duplicates, "seq": ack.seq}));
    Ok(Json(serde_json::to_value(ack).unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
pub(super) struct StateQuery {
    #[serde(default)]
    node: Option<String>,
    /// The `budgets_cursor` of the Envoy's last state: only what changed since.
    #[serde(default)]
    cursor: Option<String>,
    /// Budgets per page of a state sent in pages (`TOLLGATE_STATE_PAGE` when absent).
    #[serde(default)]
    limit: Option<usize>,
}

pub(super) async fn get_state(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<StateQuery>) -> ApiResult<Response> {
    role(&st, &headers)?;
    let now = now_ms();
    // No node (or an empty one) is an admin looking; a node that cannot
    // name an Envoy is refused, never read as an admin's poll.
    let node = q.node.filter(|n| !n.is_empty());
    if let Some(why) = node.as_deref().and_then(tollgate_protocol::state::node_problem) {
        return Err(ApiError::bad("invalid_field", format!("node: {why}")));
    }
    // An Envoy that sends a cursor (even empty) reads pages; one from before
    // deltas sends none and gets every budget in one answer, as it expects.
    let page = match &q.cursor {
        Some(_) => q.limit.unwrap_or(st.settings.state_page).clamp(1, crate::ledger::STATE_PAGE_MAX),
        None => usize::MAX,
    };
    let cursor = q.cursor.filter(|c| !c.is_empty());
    // The fleet view is for people: one page, whoever asks (the filter's token may).
    let fleet_page = q.limit.unwrap_or(st.settings.state_page).clamp(1, crate::ledger::STATE_PAGE_MAX);
    let ttl = st.settings.node_ttl_ms;
    let store = st.store.clone();
    let started = std::time::Instant::now();
    let app = st.clone();
    let doc = blocking(move || {
        let crate::store::StateSeqs { keys: keys_seq, guardrails: guardrails_seq, prompts: prompts_seq, routing: routing_seq } = store.state_seqs()?;
        match node {
            // An Envoy: grant it its share (durably) and return it.
            Some(n) => {
                let g = store.grant(&n, now, ttl, cursor.as_deref(), page)?;
                // Accounted here, not once answered: an Envoy that gave up
                // waiting drops the request, and what was done must still show.
                account(&app, &n, &g, started.elapsed());
                let doc = StateDoc {
                    seq: g.seq,
                    generated_ms: now,
                    nodes_active: g.nodes_active,
                    keys_seq,
                    guardrails_seq,
                    prompts_seq,
                    routing_seq,
                    budgets_full: g.full,
                    budgets_more: g.more,
                    budgets: g.budgets,
                    budgets_removed: g.removed,
                    budgets_cursor: g.cursor,
                };
                Ok(doc)
            }
            // Anyone else (an admin looking): the fleet view, no shares, of
            // the first page of budgets (`budgets_more`: GET /v1/budgets has the rest).
            None => {
                let seq = store.seq()?;
                let mut page = store.budgets_page(None, fleet_page.saturating_add(1))?;
                let more = page.len() > fleet_page;
                page.truncate(fleet_page);
                let mut budgets = Vec::new();
                for b in &page {
                    if let Some(d) = budget_doc(store.as_ref(), b, now)? {
                        budgets.push(d);
                    }
                }
                let nodes_active = store.nodes_active(now, ttl)?;
                let doc = StateDoc {
                    seq,
                    generated_ms: now,
                    nodes_active,
                    keys_seq,
                    guardrails_seq,
                    prompts_seq,
                    routing_seq,
                    budgets,
                    budgets_more: more,
                    ..StateDoc::default()
                };
                slow(&app, started.elapsed(), json!({"node": null}));
                Ok(doc)
            }
        }
    })
    .await?;
    // Serialised once: the body, and the ETag over it without the generation time.
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    let tag = state_etag(&body);
    st.counters.state_polls.fetch_add(1, Relaxed);
    let etag = HeaderValue::from_str(&tag).ok();
    let mut r = if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        st.counters.state_not_modified.fetch_add(1, Relaxed);
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    };
    if let Some(v) = etag {
        r.headers_mut().insert("etag", v);
    }
    Ok(r)
}

/// A state poll slower than this is logged: an Envoy polls once a second,
/// so its budgets and key changes are that much later.
const SLOW_STATE: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts and logs what one Envoy's state poll did: a full state (why its
/// cursor did not hold, grants reclaimed), a slow answer.
fn account(st: &AppState, node: &str, g: &crate::store::GrantSnapshot, took: std::time::Duration) {
    if let Some(why) = g.full_because {
        st.counters.state_full.fetch_add(1, Relaxed);
        // Every Envoy's full state follows a join or a leave: worth a line,
        // with why its cursor did not hold (a loop of them shows here).
        log_event("info", "full budget state", json!({"node": node, "because": why, "active": g.nodes_active, "reclaimed_grants": g.reclaimed}));
    }
    if slow(st, took, json!({"node": node, "full": g.full, "more": g.more, "budgets": g.budgets.len()})) {
        // Seen when answered, not only when asked (`Store::node_seen`).
        if let Err(e) = st.store.node_seen(node, now_ms()) {
            log_event("warn", "node not marked seen after a slow state poll", json!({"error": e.to_string()}));
        }
    }
}

/// Counts and logs a state poll that took `SLOW_STATE` or more (`fields`
/// say which); true when it did.
fn slow(st: &AppState, took: std::time::Duration, mut fields: Value) -> bool {
    if took < SLOW_STATE {
        return false;
    }
    st.counters.state_slow.fetch_add(1, Relaxed);
    if let Some(f) = fields.as_object_mut() {
        f.insert("ms".into(), json!(took.as_millis() as u64));
    }
    log_event("warn", "slow state poll", fields);
    true
}

/// The ETag of a serialised state: a hash of everything but the value of
/// its top-level `generated_ms` (a poll that changes nothing else is a 304).
/// Inside a JSON string a quote is escaped, so `"generated_ms":` can only
/// be that member's name.
fn state_etag(body: &[u8]) -> String {
    use sha2::Digest;
    const NAME: &[u8] = b"\"generated_ms\":";
    let mut h = sha2::Sha256::new();
    match body.windows(NAME.len()).position(|w| w == NAME) {
        Some(at) => {
            let value = at + NAME.len();
            let digits = body.get(value..).map_or(0, |r| r.iter().take_while(|b| b.is_ascii_digit()).count());
            h.update(body.get(..value).unwrap_or_default());
            h.update(body.get(value + digits..).unwrap_or_default());
        }
        None => h.update(body),
    }
    format!("\"{}\"", &to_hex(&h.finalize())[..32])
}

#[derive(Deserialize)]
pub(super) struct ChangesQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    limit: Option<u32>,
}

/// The most key changes one answer carries.
const MAX_KEY_PAGE: u32 = 10_000;

/// `GET /v1/key-changes?since=N&limit=M`: the key set's changes after N,
/// for Envoys keeping their per-key entries in step (`KeyChanges`).
pub(super) async fn key_changes(State(st): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<ChangesQuery>) -> ApiResult<Json<KeyChanges>> {
    role(&st, &headers)?;
    let limit = q.limit.unwrap_or(MAX_KEY_PAGE).clamp(1, MAX_KEY_PAGE);
    let store = st.store.clone();
    let page = blocking(move || store.key_changes(q.since, limit)).await?;
    st.counters.key_change_pages.fetch_add(1, Relaxed);
    Ok(Json(page))
}

/// How often grants of ended periods are pruned.
const GRANT_RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Prunes, hourly, the grants and per-Envoy use of ended periods and of
/// deleted budgets, and forgets Envoys silent for a day: the tables every
/// state poll reads stay the size of the current periods, however many
/// periods pass and however many Envoys (pod names) come and go.
pub async fn grant_retention_loop(st: Arc<AppState>) {
    let forget_after_ms = super::reports::DAY_MS.max(st.settings.node_ttl_ms);
    loop {
        let store = st.store.clone();
        match tokio::task::spawn_blocking(move || store.prune_grants(now_ms(), forget_after_ms)).await {
            Ok(Ok(p)) if p != crate::store::Pruned::default() => {
                log_event("info", "grant retention", json!({"grants_removed": p.grants, "node_use_removed": p.node_use, "nodes_forgotten": p.nodes}))
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => log_event("warn", "grant retention failed", json!({"error": e.to_string()})),
        }
        tokio::time::sleep(GRANT_RETENTION_EVERY).await;
    }
}

/// How often the log of budget use changes is pruned. It keeps
/// `Settings::use_log_keep_ms` (10 minutes unless set): longer than a
/// state in pages takes to walk (a million budgets: 20 to 80 s measured;
/// an Envoy whose walk outlasts the log gets the full state again) and
/// than the node TTL, so a cursor of an Envoy that kept polling finds
/// every change since it. About 10 KB a batch when each of its 500
/// records has a budget of its own: at 100 batches/s, ten minutes are
/// about 600 MB before compression.
const USE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Prunes the log of which budgets' use changed (`Store::prune_use_log`).
pub async fn use_log_retention_loop(st: Arc<AppState>) {
    let keep_ms = st.settings.use_log_keep_ms;
    loop {
        tokio::time::sleep(USE_LOG_EVERY).await;
        let store = st.store.clone();
        match tokio::task::spawn_blocking(move || store.prune_use_log(now_ms(), keep_ms)).await {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => log_event("warn", "budget use log not pruned", json!({"error": e.to_string()})),
        }
    }
}

/// How often the planner statistics are checked (see `Db::refresh_statistics`).
const STATISTICS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the database's planner statistics current on the tables the state
/// poll reads, so that a bulk import is planned for within seconds, not at
/// autovacuum's next round.
pub async fn statistics_loop(st: Arc<AppState>) {
    loop {
        tokio::time::sleep(STATISTICS_EVERY).await;
        let store = st.store.clone();
        match tokio::task::spawn_blocking(move || store.refresh_statistics()).await {
            Ok(Ok(tables)) if !tables.is_empty() => log_event("info", "planner statistics refreshed", json!({"tables": tables})),
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => log_event("warn", "planner statistics not refreshed", json!({"error": e.to_string()})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_etag_ignores_only_the_generation_time() {
        let doc = |generated_ms, used_micros| StateDoc {
            seq: 7,
            generated_ms,
            budgets: vec![BudgetDoc {
                scope_type: ScopeType::Team,
                scope_id: "a \"generated_ms\":1 b".into(),
                limit_micros: Some(100),
                limit_tokens: None,
                period_start_ms: 1,
                period_end_ms: 2,
                used_micros,
                used_tokens: 0,
                soft_pct: None,
                hard_pct: Some(100),
                share_micros: Some(10),
                share_tokens: None,
            }],
            ..StateDoc::default()
        };
        let tag = |d: &StateDoc| state_etag(&serde_json::to_vec(d).unwrap());
        assert_eq!(tag(&doc(1, 5)), tag(&doc(1_795_885_000_000, 5)));
        assert_ne!(tag(&doc(1, 5)), tag(&doc(1, 6)));
        assert_ne!(tag(&doc(1, 5)), tag(&StateDoc { seq: 8, ..doc(1, 5) }));
        assert_eq!(tag(&doc(1, 5)).len(), 34);
    }
}
