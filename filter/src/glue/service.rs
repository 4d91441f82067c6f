//! The per-Envoy background service (a singleton `WasmService`): ships
//! usage records in batches and polls the budget state; both directions
//! retry, neither ever blocks a request.
//!
//! A batch the control service refuses as invalid (4xx) is never retried as
//! it is: it is split in halves until the record at fault stands alone, and
//! that record is parked (logged with its id, counted in the metric
//! `tollgate.usage_parked`) so one bad record cannot stop the records after
//! it. Transport errors and 5xx are retried with backoff.

use std::collections::VecDeque;
use std::time::Duration;

use proxy_wasm::traits::Context;

use super::{add_metric, now_ms, update_counter};
use crate::budget::{self, Amount, Counter};
use crate::config::Config;
use crate::record::UsageRecord;
use crate::state::{encode_meta, IngestAck, StateDoc, STATE_KEY, STATE_META_KEY};

/// A batch in flight to the control service.
struct InFlightBatch {
    token: u32,
    records: Vec<Vec<u8>>,
    deltas: Vec<(String, Amount)>,
}

pub(super) struct Service {
    node: String,
    poll_ms: u64,
    queue: u32,
    buffer: VecDeque<Vec<u8>>,
    /// Records to send alone or in small groups after a refused batch.
    split: VecDeque<Vec<Vec<u8>>>,
    dropped: u64,
    dropped_logged: u64,
    parked: u64,
    batch: Option<InFlightBatch>,
    next_flush_ms: u64,
    flush_failures: u32,
    state_token: Option<u32>,
    next_poll_ms: u64,
    etag: String,
    generation: u64,
    applied_seq: u64,
    /// Acknowledged batches not yet visible in an applied state: (seq, deltas).
    unreflected: Vec<(u64, Vec<(String, Amount)>)>,
    poll_failures: u32,
}

/// The budget deltas of one record: what it adds to each of its scopes.
fn deltas_of(raw: &[u8], out: &mut Vec<(String, Amount)>) {
    if let Ok(r) = serde_json::from_slice::<UsageRecord>(raw) {
        let amount = Amount { micros: r.cost_micros, tokens: r.usage.budget_tokens() };
        for s in r.budget_scopes {
            out.push((s, amount));
        }
    }
}

impl Service {
    pub(super) fn new(node: String, queue: u32, poll_ms: u64) -> Self {
        Service {
            node,
            poll_ms,
            queue,
            buffer: VecDeque::new(),
            split: VecDeque::new(),
            dropped: 0,
            dropped_logged: 0,
            parked: 0,
            batch: None,
            next_flush_ms: 0,
            flush_failures: 0,
            state_token: None,
            next_poll_ms: 0,
            etag: String::new(),
            generation: 0,
            applied_seq: 0,
            unreflected: Vec::new(),
            poll_failures: 0,
        }
    }

    pub(super) fn tick(&mut self, ctx: &dyn Context, cfg: &Config) {
        let Some(ctl) = &cfg.control else { return };
        let now = now_ms(ctx);
        // Drain the queue into the bounded buffer; past the bound, drop the oldest.
        while let Ok(Some(rec)) = ctx.dequeue_shared_queue(self.queue) {
            if self.buffer.len() >= ctl.max_buffered_records {
                self.buffer.pop_front();
                self.dropped += 1;
            }
            self.buffer.push_back(rec);
        }
        if self.dropped > self.dropped_logged {
            log::warn!(
                "usage buffer full ({} records): dropped {} oldest records so far",
                ctl.max_buffered_records,
                self.dropped
            );
            add_metric(crate::metrics::Kind::Counter, "tollgate.usage_dropped".into(), self.dropped - self.dropped_logged);
            self.dropped_logged = self.dropped;
        }
        if self.batch.is_none() && (!self.buffer.is_empty() || !self.split.is_empty()) && now >= self.next_flush_ms {
            self.flush(ctx, cfg, now);
        }
        if self.state_token.is_none() && now >= self.next_poll_ms {
            self.poll(ctx, cfg, now);
        }
    }

    /// The next batch: a split-off group first, else the oldest records up
    /// to `max_batch` records and `max_batch_bytes` bytes.
    fn next_batch(&mut self, max_batch: usize, max_bytes: usize) -> Vec<Vec<u8>> {
        if let Some(group) = self.split.pop_front() {
            return group;
        }
        let mut records = Vec::new();
        let mut bytes = 64usize;
        while let Some(r) = self.buffer.front() {
            if records.len() >= max_batch || (!records.is_empty() && bytes + r.len() + 1 > max_bytes) {
                break;
            }
            bytes += r.len() + 1;
            if let Some(r) = self.buffer.pop_front() {
                records.push(r);
            }
        }
        records
    }

    fn flush(&mut self, ctx: &dyn Context, cfg: &Config, now: u64) {
        let Some(ctl) = &cfg.control else { return };
        let records = self.next_batch(ctl.max_batch, ctl.max_batch_bytes);
        if records.is_empty() {
            return;
        }
        let mut body = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum::<usize>() + 64);
        body.extend_from_slice(b"{\"node\":");
        body.extend_from_slice(serde_json::to_string(&self.node).unwrap_or_default().as_bytes());
        body.extend_from_slice(b",\"records\":[");
        let mut deltas = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r);
            deltas_of(r, &mut deltas);
        }
        body.extend_from_slice(b"]}");
        let auth = format!("Bearer {}", ctl.token.expose());
        let headers = vec![
            (":method", "POST"),
            (":path", "/v1/usage"),
            (":authority", ctl.authority.as_str()),
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ];
        match ctx.dispatch_http_call(&ctl.cluster, headers, Some(&body), vec![], Duration::from_millis(ctl.timeout_ms)) {
            Ok(token) => self.batch = Some(InFlightBatch { token, records, deltas }),
            Err(e) => {
                log::warn!("cannot send usage to cluster '{}': {e:?}", ctl.cluster);
                self.retry_later(records, now);
            }
        }
    }

    fn retry_later(&mut self, records: Vec<Vec<u8>>, now: u64) {
        self.split.push_front(records);
        self.flush_failures = self.flush_failures.saturating_add(1);
        self.next_flush_ms = now + (250u64 << self.flush_failures.min(5));
    }

    /// The service refused the batch as invalid: split it, or park the one
    /// record at fault.
    fn refused(&mut self, mut records: Vec<Vec<u8>>, status: u16) {
        if records.len() > 1 {
            let second = records.split_off(records.len() / 2);
            self.split.push_front(second);
            self.split.push_front(records);
            return;
        }
        for r in records {
            self.parked += 1;
            let id = serde_json::from_slice::<UsageRecord>(&r).map(|r| r.id).unwrap_or_else(|_| "(unreadable)".into());
            log::error!(
                "control service refused usage record '{}' (status {status}, {} bytes): parked, not retried ({} parked so far; the record stays in this Envoy's log)",
                crate::text::clean_field(&id, 128),
                r.len(),
                self.parked
            );
            add_metric(crate::metrics::Kind::Counter, "tollgate.usage_parked".into(), 1);
        }
    }

    fn poll(&mut self, ctx: &dyn Context, cfg: &Config, now: u64) {
        let Some(ctl) = &cfg.control else { return };
        let path = format!("/v1/state?node={}", url_encode(&self.node));
        let auth = format!("Bearer {}", ctl.token.expose());
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", ctl.authority.as_str()),
            ("authorization", auth.as_str()),
        ];
        if !self.etag.is_empty() {
            headers.push(("if-none-match", self.etag.as_str()));
        }
        match ctx.dispatch_http_call(&ctl.cluster, headers, None, vec![], Duration::from_millis(ctl.timeout_ms)) {
            Ok(token) => self.state_token = Some(token),
            Err(e) => {
                log::warn!("cannot poll budget state from cluster '{}': {e:?}", ctl.cluster);
                self.next_poll_ms = now + ctl.poll_ms;
            }
        }
    }

    pub(super) fn on_response(&mut self, ctx: &dyn Context, token: u32, body_size: usize) {
        let now = now_ms(ctx);
        let headers = super::host::header_pairs(super::host::CALL_RESPONSE_HEADERS);
        let header = |name: &[u8]| headers.iter().find(|(k, _)| k.as_slice() == name).map(|(_, v)| v.clone());
        let status: u16 = header(b":status").and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok()).unwrap_or(0);
        if self.batch.as_ref().is_some_and(|b| b.token == token) {
            let Some(batch) = self.batch.take() else { return };
            let ack = (status == 200)
                .then(|| super::host::buffer(super::host::CALL_RESPONSE_BODY, 0, body_size))
                .and_then(|b| serde_json::from_slice::<IngestAck>(&b).ok());
            match ack {
                Some(ack) => {
                    self.flush_failures = 0;
                    self.next_flush_ms = now;
                    if !batch.deltas.is_empty() {
                        self.unreflected.push((ack.seq, batch.deltas));
                        self.reflect();
                    }
                }
                None if (400..500).contains(&status) && status != 401 && status != 403 && status != 429 => {
                    self.refused(batch.records, status);
                    self.next_flush_ms = now;
                }
                None => {
                    if self.flush_failures == 0 || self.flush_failures.is_multiple_of(20) {
                        log::warn!("control service did not take a usage batch (status {status}); will retry");
                    }
                    self.retry_later(batch.records, now);
                }
            }
            return;
        }
        if self.state_token == Some(token) {
            self.state_token = None;
            let etag = header(b"etag").map(|e| crate::text::loggable(&e, 256)).unwrap_or_default();
            self.on_state(status, body_size, etag, now);
        }
    }

    fn on_state(&mut self, status: u16, body_size: usize, etag: String, now: u64) {
        match status {
            200 => {
                let body = super::host::buffer(super::host::CALL_RESPONSE_BODY, 0, body_size);
                let Ok(doc) = serde_json::from_slice::<StateDoc>(&body) else {
                    log::warn!("control service sent an unreadable budget state; keeping the last one");
                    self.poll_failed(now);
                    return;
                };
                // Counters must exist before workers can see a budget (they CAS on them).
                for b in &doc.budgets {
                    let key = budget::counter_key(b.scope_type, &b.scope_id);
                    if super::host::shared(&key).0.is_none() {
                        super::host::set_shared(&key, Counter::default().encode().as_bytes(), None);
                    }
                }
                if super::host::set_shared(STATE_KEY, &body, None) != super::host::SetShared::Ok {
                    log::warn!("cannot store the budget state in shared data");
                    return;
                }
                self.etag = etag;
                self.generation += 1;
                self.applied_seq = doc.seq;
                self.reflect();
                self.poll_ok(now);
            }
            304 => self.poll_ok(now),
            _ => {
                if self.poll_failures == 0 || self.poll_failures.is_multiple_of(20) {
                    log::warn!("cannot get budget state from the control service (status {status}); enforcing from the last state");
                }
                self.poll_failed(now);
            }
        }
    }

    fn poll_ok(&mut self, now: u64) {
        self.poll_failures = 0;
        super::host::set_shared(STATE_META_KEY, encode_meta(self.generation, now).as_bytes(), None);
        self.next_poll_ms = now + self.poll_ms;
    }

    fn poll_failed(&mut self, now: u64) {
        self.poll_failures = self.poll_failures.saturating_add(1);
        // Retry sooner than the regular poll, but do not hammer a down service.
        self.next_poll_ms = now + (self.poll_ms / 2).max(100);
    }

    /// Acknowledged records that the applied state now includes are no
    /// longer pending on this Envoy.
    fn reflect(&mut self) {
        let applied = self.applied_seq;
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unreflected).into_iter().partition(|(seq, _)| *seq <= applied);
        self.unreflected = keep;
        for (_, deltas) in done {
            for (label, amount) in deltas {
                let Some((t, id)) = budget::parse_scope_label(&label) else { continue };
                let _ = update_counter(&budget::counter_key(t, id), |c| {
                    c.reflect(amount);
                    true
                });
            }
        }
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
