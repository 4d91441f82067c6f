//! Fallbacks: when a route's upstream fails before the client got a byte
//! — 429, 5xx, Envoy's own 503 for a refused connection or 504 for a
//! timeout — the response is held and the route's next alternative is
//! asked (an HTTP call from the filter: its provider format, credential
//! and translation planned as for a first attempt, guardrails applied
//! again); its answer replaces the failed one. The failed attempts cost
//! nothing (provider errors are free) and are listed in the record; the
//! budget reservation is moved to the alternative's worst case (denied:
//! the client gets the original error); one answer is charged once.
//! Streams are never retried once a byte went out — a failure is only seen
//! at the response headers, before anything is sent. The alternative's
//! stream arrives whole and is sent as one body.

use std::time::Duration;

use proxy_wasm::traits::Context;
use proxy_wasm::types::Action;

use super::super::host;
use super::TollgateHttp;
use crate::admission::{self, Decision};
use crate::config::Config;
use crate::errors::GatewayError;
use crate::reader::{Reader, ResponseHead};
use crate::record::Termination;
use crate::route;
use tollgate_protocol::record::Attempt;

/// How long an alternative may take to answer.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(120);

/// Statuses worth another provider: rate limits and server-side failures.
pub(super) fn retryable(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

impl TollgateHttp {
    /// Records the failed attempt and asks the next alternative; true when
    /// one was asked (the response must then be held).
    pub(super) fn try_fallback(&mut self, cfg: &Config, status: u16) -> bool {
        if let Some(t) = &self.target {
            self.attempts.push(Attempt { provider: t.provider.clone(), model: t.upstream_model.clone(), status });
        }
        let (Some(api), Some(key), Some(body)) = (self.api, self.key.clone(), self.client_body.clone()) else { return false };
        while let Some(model) = self.fallbacks.pop_front() {
            let Ok(mut plan) = route::plan_for(cfg, &key, api, &body, &self.path, self.headers.has_anthropic_version, route::Choice { model: Some(&model), ..Default::default() }) else {
                log::debug!("[{}] fallback '{}' cannot serve this request; next", self.context_id, crate::text::clean_field(&model, 64));
                continue;
            };
            super::request::add_stored_context(cfg, &mut plan);
            let mut sent = plan.body.clone().unwrap_or_else(|| body.clone());
            if let Some(policy) = super::super::synced::guard_policy(cfg) {
                let who = crate::guard::Subject { key: &key.id, project: &self.project, team: &key.team, route: &plan.target.route };
                let (outcome, error) = crate::guard::decide(&policy, who, &plan.target, &sent, &mut crate::guard::Placeholders::default());
                if error.is_some() {
                    continue;
                }
                if let Some(b) = outcome.body {
                    sent = b;
                }
            }
            // The reservation follows what will run.
            if cfg.control.is_some() {
                super::super::with_budget_local(|u| admission::release(&super::HostCounters, u, &self.reservations));
                self.reservations.clear();
                match self.admission(cfg, &key, plan.worst, plan.priced) {
                    Decision::Admitted { reservations, .. } => self.reservations = reservations,
                    Decision::Unchecked { .. } => {}
                    Decision::Denied { .. } => return false,
                }
            }
            let content_type = match &self.client_upload {
                Some(u) => match u.sent(&sent) {
                    Ok(form) => {
                        sent = form;
                        u.content_type()
                    }
                    Err(_) => continue,
                },
                None => "application/json".to_string(),
            };
            let length = sent.len().to_string();
            let mut headers: Vec<(&str, &str)> = vec![(":method", "POST"), ("content-type", &content_type), ("content-length", &length)];
            for (k, v) in &plan.headers {
                if k != "content-length" && *k != cfg.cluster_header {
                    headers.push((k.as_str(), v.as_str()));
                }
            }
            match self.dispatch_http_call(&plan.cluster, headers, Some(&sent), vec![], FALLBACK_TIMEOUT) {
                Ok(token) => {
                    log::debug!("[{}] upstream answered {status}: trying '{}'", self.context_id, plan.target.route);
                    self.fallback_call = Some(token);
                    self.chat = Some(plan.chat);
                    self.target = Some(plan.target);
                    self.translate = plan.translate;
                    self.tool_names = plan.tool_names;
                    self.json_repair = plan.json_repair;
                    return true;
                }
                Err(e) => log::warn!("[{}] cannot call fallback cluster '{}': {e:?}", self.context_id, plan.cluster),
            }
        }
        false
    }

    /// The alternative answered: pass its answer on (or try the next one).
    pub(super) fn on_fallback_answer(&mut self, token: u32, body_size: usize) {
        if self.fallback_call != Some(token) {
            return;
        }
        self.fallback_call = None;
        let Some(cfg) = self.config.clone() else { return };
        let headers = host::header_pairs(host::CALL_RESPONSE_HEADERS);
        let head = ResponseHead::read(headers.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        let status = if head.status == 0 { 502 } else { head.status };
        if retryable(status) && self.try_fallback(&cfg, status) {
            return;
        }
        self.status = status;
        // Status 0: the call brought back nothing (failed, reset, timed out or over Envoy's buffer).
        self.upstream_responded = head.status != 0;
        // Compressed although not asked: decoded and answered decoded, as a
        // first attempt's rewritten answer is; one that does not decode (or
        // in a coding the filter cannot read) goes on as it came, unread, or
        // (translated) becomes an error in the client's format.
        let (body, undecoded) = crate::decode::whole_answer(&head.coding(), host::buffer(host::CALL_RESPONSE_BODY, 0, body_size), cfg.max_response_bytes);
        // The answer is read like a first attempt's: guarded when the policy reads answers.
        // (A status it could not read, 502 here, is no success either way.)
        self.start_answer_guard(&head);
        let (provider, model) = self.target.as_ref().map(|t| (t.provider.clone(), t.upstream_model.clone())).unwrap_or_default();
        let mut replaced = match head.status {
            0 => Some(GatewayError::no_answer(&provider)),
            _ => undecoded.as_deref().and_then(|why| crate::reader::unread_error(why, status, &self.wants(&cfg))),
        };
        self.replaced = replaced.as_ref().map(|e| (e.status, e.code));
        let (out, costs) = self.read_fallback_answer(&cfg, &head, body, undecoded.is_some(), &mut replaced);
        let retry = replaced.as_ref().and_then(|e| e.retry_header(status));
        let content_type = String::from_utf8_lossy(&head.content_type).into_owned();
        let (status, out, content_type) = match replaced {
            Some(e) => (e.status, e.body().into_bytes(), "application/json".to_owned()),
            None => (status, out, content_type),
        };
        let mut reply: Vec<(&str, &str)> = vec![("content-type", if content_type.is_empty() { "application/json" } else { content_type.as_str() })];
        let encoding = String::from_utf8_lossy(head.encoding.as_deref().unwrap_or_default()).into_owned();
        reply.extend(retry);
        if undecoded.is_some() && self.replaced.is_none() {
            reply.push(("content-encoding", encoding.as_str()));
        }
        reply.push(("x-tollgate-request-id", self.request_id.as_str()));
        reply.push(("x-tollgate-provider", &provider));
        reply.push(("x-tollgate-model", &model));
        let attempts = self.attempts.len().to_string();
        reply.push(("x-tollgate-fallback-attempts", &attempts));
        for (k, v) in &costs {
            reply.push((k, v.as_str()));
        }
        host::send_response(u32::from(status), &reply, &out);
    }

    /// The alternative's answer read as a first attempt's is (unread when
    /// it could not be decoded, a stream, speech, or JSON) and settled: the
    /// bytes for the client and the cost headers. A JSON answer the client
    /// cannot be given becomes the error in `replaced`.
    fn read_fallback_answer(&mut self, cfg: &Config, head: &ResponseHead, body: Vec<u8>, undecoded: bool, replaced: &mut Option<GatewayError>) -> (Vec<u8>, Vec<(&'static str, String)>) {
        if undecoded {
            self.reader = Reader::Unreadable { bytes: body.len() as u64 };
            self.response_complete = true;
            let rec = self.settle(Termination::Complete);
            return (body, rec.filter(|_| cfg.cost_headers).map(|r| crate::record::cost_headers(&r)).unwrap_or_default());
        }
        if head.is_stream() {
            let mut tracker = self.wants(cfg).tracker(true);
            let mut out = tracker.push(&body);
            out.extend_from_slice(&tracker.finish());
            let rewrites = tracker.rewrites();
            self.reader = Reader::Stream { tracker, inflater: None, decoded: false };
            let out = if rewrites { out } else { body };
            let out = match self.answer_guard.as_mut() {
                Some(g) => [g.push(&out), g.finish()].concat(),
                None => out,
            };
            // Settled after the guard read it: the record carries what it found.
            self.response_complete = true;
            self.settle(Termination::Complete);
            (out, Vec::new())
        } else if self.response_api().speaks() && head.guardable() {
            // Speech: the audio, measured.
            self.reader = Reader::Audio { meter: Default::default(), plain: true };
            self.reader.feed_audio(&body, &body, body.len());
            self.response_complete = true;
            self.settle(Termination::Complete);
            (body, Vec::new())
        } else {
            self.reader = Reader::Json { collector: crate::response::JsonCollector::new(cfg.max_response_bytes), inflater: None };
            self.reader.feed_json(&body);
            let new = match self.client_answer(cfg, &body, false) {
                Ok(new) => new,
                Err(e) if replaced.is_none() => {
                    self.replaced = Some((e.status, e.code));
                    *replaced = Some(e);
                    None
                }
                Err(_) => None,
            };
            let rec = self.finish_json();
            let costs = rec.filter(|_| cfg.cost_headers).map(|r| crate::record::cost_headers(&r)).unwrap_or_default();
            (new.unwrap_or(body), costs)
        }
    }

    /// The budgets' answer for `worst`, without replying.
    pub(super) fn admission(&mut self, cfg: &Config, key: &crate::config::KeyInfo, worst: crate::budget::Amount, priced: bool) -> Decision {
        let Some(ctl) = &cfg.control else { return Decision::Unchecked { decision: crate::record::BudgetDecision::Off } };
        let meta = self.state();
        let now = super::now_ms();
        let held = meta.map(|m| super::budgets_for(m, &key.id, &key.team, &self.project)).unwrap_or_default();
        let budgets: Vec<&crate::state::BudgetDoc> = held.iter().map(|b| b.doc.as_ref()).collect();
        let recheck: Vec<bool> = held.iter().map(|b| b.recheck).collect();
        let situation = admission::Situation {
            budgets: &budgets,
            recheck: &recheck,
            stale: meta.map(|m| m.ok_ms).is_none_or(|ok| now.saturating_sub(ok) > ctl.stale_after_ms),
            have_state: meta.is_some_and(|m| m.generation > 0),
            failure_mode: ctl.failure_mode,
            now_ms: now,
            generation: meta.map_or(0, |m| m.generation),
            epoch: meta.map_or(0, |m| m.epoch),
            priced,
        };
        super::super::with_budget_local(|u| admission::admit(&super::HostCounters, u, &situation, worst))
    }

    /// While an alternative is asked, the failed response stays held.
    pub(super) fn holding_for_fallback(&self) -> Option<Action> {
        self.fallback_call.map(|_| Action::Pause)
    }
}
