//! The per-Envoy background service (a singleton `WasmService`): ships
//! usage records and polls the budget state; neither ever blocks a request.
//! The shipping rules live in [`crate::shipper`]; this file moves bytes
//! between it and the host (the queue, HTTP calls, shared data, logs).

use std::time::Duration;

use proxy_wasm::traits::Context;

use super::{add_metric, host, now_ms, HostCounters};
use crate::budget::{self, Counter};
use crate::config::Config;
use crate::keysync::{entry_write, Fetched, KeySync};
use crate::shipper::{Answer, Shipper};
use crate::budgetsync::BudgetSync;
use crate::state::{encode_meta, Meta, StateDoc, STATE_META_KEY};

pub(super) struct Service {
    node: String,
    poll_ms: u64,
    queue: u32,
    shipper: Shipper,
    dropped_reported: u64,
    state_token: Option<u32>,
    next_poll_ms: u64,
    etag: String,
    generation: u64,
    poll_failures: u32,
    keys: KeySync,
    budgets: BudgetSync,
    last_ok_ms: u64,
    /// The guardrail policy, the prompt registry and the auto router ([`super::synced`]).
    synced: [super::synced::Synced; 3],
}

/// Keys per `GET /v1/key-changes` page: 5,000 entries of a few hundred
/// bytes, about 1.5 MB per answer.
const KEY_PAGE: usize = 5000;

impl Service {
    pub(super) fn new(node: String, queue: u32, poll_ms: u64, max_buffered: usize) -> Self {
        Service {
            node,
            poll_ms,
            queue,
            shipper: Shipper::new(max_buffered),
            dropped_reported: 0,
            state_token: None,
            next_poll_ms: 0,
            etag: String::new(),
            generation: 0,
            poll_failures: 0,
            keys: KeySync::new(KEY_PAGE),
            budgets: BudgetSync::default(),
            last_ok_ms: 0,
            synced: [super::synced::Synced::guardrails(), super::synced::Synced::prompts(), super::synced::Synced::routing()],
        }
    }

    pub(super) fn tick(&mut self, ctx: &dyn Context, cfg: &Config) {
        let Some(ctl) = &cfg.control else { return };
        super::report_vm_memory();
        let now = now_ms();
        let mut settled = super::write_settlements(&[]);
        while let Some(group) = host::dequeue(self.queue) {
            // The workers' settlements first: the records' use is reflected only after they are shipped.
            settled += super::write_settlements(&group);
            for rec in crate::outbox::records(&group) {
                self.shipper.push(rec.to_vec());
            }
        }
        if settled > 0 {
            add_metric(crate::metrics::Kind::Counter, "tollgate.budget_settlements_handed_over".into(), settled);
        }
        let dropped = self.shipper.dropped();
        if dropped > self.dropped_reported {
            log::warn!("usage buffer full ({} records): dropped {dropped} oldest records so far", ctl.max_buffered_records);
            add_metric(crate::metrics::Kind::Counter, "tollgate.usage_dropped".into(), dropped - self.dropped_reported);
            self.dropped_reported = dropped;
        }
        if self.shipper.due(now) {
            self.flush(ctx, cfg, now);
        }
        if self.state_token.is_none() && now >= self.next_poll_ms {
            self.poll(ctx, cfg, now);
        }
        self.fetch_keys(ctx, cfg);
        for doc in &mut self.synced {
            doc.fetch(ctx, ctl);
        }
        // Serving from what it last had: say so (prompts, guardrails, keys, budgets).
        let stale = u64::from(self.last_ok_ms == 0 || now.saturating_sub(self.last_ok_ms) > 3 * self.poll_ms.max(1000));
        add_metric(crate::metrics::Kind::Gauge, "tollgate.control_stale".into(), stale);
        add_metric(crate::metrics::Kind::Gauge, "tollgate.prompt_registry_change".into(), self.synced[1].held());
        // What this VM holds for the control service (its memory follows it).
        add_metric(crate::metrics::Kind::Gauge, "tollgate.usage_buffered".into(), self.shipper.buffered() as u64);
    }

    /// Asks for the next page of key changes when this Envoy is behind.
    fn fetch_keys(&mut self, ctx: &dyn Context, cfg: &Config) {
        let Some(ctl) = &cfg.control else { return };
        let Some(path) = self.keys.next_fetch() else { return };
        let auth = format!("Bearer {}", ctl.token.expose());
        let headers = vec![(":method", "GET"), (":path", path.as_str()), (":authority", ctl.authority.as_str()), ("authorization", auth.as_str())];
        match ctx.dispatch_http_call(&ctl.cluster, headers, None, vec![], Duration::from_millis(ctl.timeout_ms)) {
            Ok(token) => self.keys.sent(token),
            Err(e) => log::warn!("cannot fetch key changes from cluster '{}': {e:?}", ctl.cluster),
        }
    }

    fn on_keys(&mut self, ctx: &dyn Context, cfg: &Config, status: u16, body_size: usize) {
        let body = super::host::buffer(super::host::CALL_RESPONSE_BODY, 0, body_size);
        match self.keys.on_answer(status, &body) {
            Fetched::Apply(page) => {
                for change in &page.changes {
                    let (name, value) = entry_write(change);
                    if super::host::set_shared(&name, &value, None) != super::host::SetShared::Ok {
                        log::warn!("cannot store a key in shared data; will fetch the changes again");
                        return;
                    }
                }
                self.keys.applied(page.seq);
                self.publish_meta();
                if page.more {
                    self.fetch_keys(ctx, cfg);
                }
            }
            Fetched::Failed(why) => log::warn!("cannot apply key changes from the control service ({why}); will retry"),
        }
    }

    fn publish_meta(&self) {
        let meta = Meta { generation: self.generation, ok_ms: self.last_ok_ms, keys_synced: self.keys.loaded(), epoch: self.budgets.epoch() };
        super::host::set_shared(STATE_META_KEY, encode_meta(meta).as_bytes(), None);
    }

    fn flush(&mut self, ctx: &dyn Context, cfg: &Config, now: u64) {
        let Some(ctl) = &cfg.control else { return };
        let Some((body, pending)) = self.shipper.take_batch(&self.node, ctl.max_batch, ctl.max_batch_bytes) else { return };
        let auth = format!("Bearer {}", ctl.token.expose());
        let headers = vec![
            (":method", "POST"),
            (":path", "/v1/usage"),
            (":authority", ctl.authority.as_str()),
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ];
        match ctx.dispatch_http_call(&ctl.cluster, headers, Some(&body), vec![], Duration::from_millis(ctl.timeout_ms)) {
            Ok(token) => self.shipper.sent(token, pending),
            Err(e) => {
                log::warn!("cannot send usage to cluster '{}': {e:?}", ctl.cluster);
                self.shipper.send_failed(pending, now);
            }
        }
    }

    fn poll(&mut self, ctx: &dyn Context, cfg: &Config, now: u64) {
        let Some(ctl) = &cfg.control else { return };
        // Always a cursor, empty at first: it tells the service this Envoy reads pages.
        let path = format!("/v1/state?node={}&cursor={}", url_encode(&self.node), url_encode(self.budgets.cursor().unwrap_or("")));
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

    pub(super) fn on_response(&mut self, ctx: &dyn Context, cfg: &Config, token: u32, body_size: usize) {
        let now = now_ms();
        let headers = super::host::header_pairs(super::host::CALL_RESPONSE_HEADERS);
        let header = |name: &[u8]| headers.iter().find(|(k, _)| k.as_slice() == name).map(|(_, v)| v.clone());
        let status: u16 = header(b":status").and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok()).unwrap_or(0);
        if self.shipper.owns(token) {
            let body = super::host::buffer(super::host::CALL_RESPONSE_BODY, 0, body_size);
            match self.shipper.on_answer(status, &body, now) {
                Answer::Acked { refused } => {
                    for (id, reason) in refused {
                        log::error!("control service refused usage record '{id}': {reason}; parked, not retried (it stays in this Envoy's log)");
                        add_metric(crate::metrics::Kind::Counter, "tollgate.usage_parked".into(), 1);
                    }
                }
                Answer::Refused { parked: Some(id) } => {
                    log::error!(
                        "control service refused usage record '{id}' (status {status}): parked, not retried ({} parked so far; it stays in this Envoy's log)",
                        self.shipper.parked()
                    );
                    add_metric(crate::metrics::Kind::Counter, "tollgate.usage_parked".into(), 1);
                }
                Answer::Refused { parked: None } => {}
                Answer::Retry { first } => {
                    if first {
                        log::warn!("control service did not take a usage batch (status {status}); will retry");
                    }
                }
            }
            return;
        }
        if self.keys.owns(token) {
            self.on_keys(ctx, cfg, status, body_size);
            return;
        }
        if self.synced.iter_mut().any(|d| d.on_answer(token, status, body_size)) {
            return;
        }
        if self.state_token == Some(token) {
            self.state_token = None;
            let etag = header(b"etag").map(|e| crate::text::loggable(&e, 256)).unwrap_or_default();
            self.on_state(status, body_size, etag, now);
            // The next page of a state in pages is asked at once; a page
            // that failed is asked again on the retry delay (at once, it
            // doubled the load of a control service already too slow, and
            // asked a cluster Envoy was tearing down at exit).
            if self.budgets.more() && self.poll_failures == 0 {
                self.poll(ctx, cfg, now);
            }
            // A newer policy or registry is fetched at once, not on the next tick.
            if let Some(ctl) = &cfg.control {
                for doc in &mut self.synced {
                    doc.fetch(ctx, ctl);
                }
            }
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
                // Epochs from the clock: above those of an earlier VM of this Envoy.
                let Some(applied) = self.budgets.apply(&doc, now.saturating_mul(1024)) else {
                    log::warn!("control service sent a budget delta without a full state before it; asking for the whole state");
                    self.etag.clear();
                    self.poll_failed(now);
                    return;
                };
                for (name, value) in applied.writes {
                    if super::host::set_shared(&name, &value, None) != super::host::SetShared::Ok {
                        log::warn!("cannot store a budget in shared data; asking for the whole state");
                        self.budgets.reset();
                        self.etag.clear();
                        self.poll_failed(now);
                        return;
                    }
                }
                let reflect = applied.settled_seq.map(|seq| self.shipper.on_state_applied(seq)).unwrap_or_default();
                self.generation += 1;
                self.keys.on_state(doc.keys_seq);
                self.synced[0].want(doc.guardrails_seq);
                self.synced[1].want(doc.prompts_seq);
                self.synced[2].want(doc.routing_seq);
                if crate::budgetsync::post(&HostCounters, &doc, reflect) {
                    self.etag = etag;
                } else {
                    log::warn!("cannot post a budget's figures in its counter; asking for the whole state");
                    self.budgets.reset();
                    self.etag.clear();
                }
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
        self.last_ok_ms = now;
        self.publish_meta();
        self.next_poll_ms = now + self.poll_ms;
    }

    fn poll_failed(&mut self, now: u64) {
        self.poll_failures = self.poll_failures.saturating_add(1);
        // Retry sooner than the regular poll, but do not hammer a down service.
        self.next_poll_ms = now + (self.poll_ms / 2).max(100);
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
