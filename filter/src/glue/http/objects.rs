//! A stored response or conversation ([`crate::objects`]): sent on with
//! the provider's key, its body (conversation items) first through the
//! guardrails when a policy is in force. Free: no budget, no record (but
//! for a guardrail refusal, which the audit must see). A batch is created
//! with its owner in its metadata, and read for its charge once it has
//! ended ([`crate::batch`]).

use proxy_wasm::types::Action;

use super::super::host::{self, REQUEST_BODY, REQUEST_HEADERS, RESPONSE_BODY, RESPONSE_HEADERS};
use super::super::{awaiting_body, enqueue_record, now_ms, synced, HostCounters};
use super::{Phase, TollgateHttp};
use crate::budget::Amount;
use crate::config::{Config, KeyInfo};
use crate::errors::GatewayError;
use crate::reader::ResponseHead;
use crate::objects::Plan;
use crate::request::Api;

impl TollgateHttp {
    pub(super) fn stored_object(&mut self, cfg: &Config, key: &KeyInfo, method: &str, end_of_stream: bool) -> Action {
        // (As a count is: a refusal leaves no record unless the guardrails made it.)
        self.counting = true;
        let policy = synced::guard_policy(cfg);
        let plan = match crate::objects::plan(cfg, key, &self.path, method, self.headers.has_anthropic_version, policy.as_deref()) {
            Ok(p) => p,
            Err(e) => return self.reject(e),
        };
        for h in std::mem::take(&mut self.headers.to_remove) {
            self.set_request_header(&h, None);
        }
        if plan.creates_batch {
            if end_of_stream {
                return self.reject(GatewayError::bad_request("invalid_json", "A batch is created with a JSON body: none was sent."));
            }
            // (A refusal from here on is recorded, as a request's is.)
            self.counting = false;
        }
        if plan.scan_upload && end_of_stream {
            if let Some(g) = policy.as_deref() {
                return self.reject(crate::objects::unscannable(g, &plan.provider));
            }
        }
        if (plan.scan || plan.creates_batch || plan.scan_upload) && !end_of_stream {
            self.api = Some(Api::OpenAiResponses);
            self.object_plan = Some(plan);
            self.phase = Phase::AwaitBody;
            awaiting_body(self.context_id, self.start_ms);
            return Action::Pause;
        }
        self.send_object(&plan)
    }

    /// The body of a stored-object request that sends content: what the
    /// guardrails let go (a redacted body in place of the client's).
    pub(super) fn stored_object_body(&mut self, cfg: &Config, plan: Plan, body_size: usize) -> Action {
        if plan.creates_batch {
            return self.create_batch(cfg, plan, body_size);
        }
        if plan.scan_upload {
            return self.scan_upload(cfg, plan, body_size);
        }
        let (Some(key), Some(policy)) = (self.key.clone(), synced::guard_policy(cfg)) else {
            return self.send_object(&plan);
        };
        let (body, decoded) = match self.whole_body(cfg, body_size) {
            Ok(b) => b,
            Err(e) => return self.reject(e),
        };
        let target = plan.target();
        let who = crate::guard::Subject { key: &key.id, project: &self.project, team: &key.team, route: "" };
        let (outcome, error) = crate::guard::decide(&policy, who, &target, &body, &mut crate::guard::Placeholders::default());
        self.guardrails = outcome.record;
        if let Some(e) = error {
            self.target = Some(target);
            return self.reject(e);
        }
        let new_body = outcome.body.or(decoded.then_some(body));
        self.send_object_with(&plan, body_size, new_body.as_deref(), decoded)
    }

    /// A batch created: its owner written into its metadata, refused when
    /// the key's budget is spent (nothing is reserved: what the batch will
    /// cost is in its file, and is charged when it ends).
    fn create_batch(&mut self, cfg: &Config, plan: Plan, body_size: usize) -> Action {
        let Some(key) = self.key.clone() else {
            return self.send_object(&plan);
        };
        let (body, decoded) = match self.whole_body(cfg, body_size) {
            Ok(b) => b,
            Err(e) => return self.reject(e),
        };
        let owner = crate::owned::Owner { key: key.id.clone(), team: key.team.clone(), project: self.project.clone() };
        let (new_body, api) = match crate::batch::tag(&body, &owner) {
            Ok(t) => t,
            Err(e) => return self.reject(e),
        };
        self.api = Some(api);
        self.target = Some(plan.target());
        // The smallest spend: refused where a budget has no room left.
        let least = Amount { micros: 1, tokens: 1 };
        if let Err(action) = self.admit(cfg, &key, least, true) {
            return action;
        }
        let reservations = std::mem::take(&mut self.reservations);
        super::super::with_budget_local(|u| crate::admission::release(&HostCounters, u, &reservations));
        self.send_object_with(&plan, body_size, Some(&new_body), decoded)
    }

    /// An upload under a policy that blocks or redacts: sent only when the
    /// form is a batch file (`purpose` `batch`, one `file`), each of its
    /// lines through the guardrails as a request is (blocked: 400
    /// `content_blocked`, recorded; redacted: the file sent redacted).
    fn scan_upload(&mut self, cfg: &Config, plan: Plan, body_size: usize) -> Action {
        let (Some(key), Some(policy)) = (self.key.clone(), synced::guard_policy(cfg)) else {
            return self.send_object(&plan);
        };
        let (body, decoded) = match self.whole_body(cfg, body_size) {
            Ok(b) => b,
            Err(e) => return self.reject(e),
        };
        let content_type = crate::request_head::content_type(crate::hostmap::pairs(&host::header_map(REQUEST_HEADERS)));
        let form = match content_type.as_deref().map(crate::request::multipart::boundary) {
            Some(Ok(Some(b))) => crate::request::multipart::Form::read(&body, &b),
            Some(Err(e)) => Err(e),
            _ => Err(crate::objects::unscannable(&policy, &plan.provider)),
        };
        let scanned = form.and_then(|form| {
            let (purpose, file) = (form.only(&body, "purpose")?, form.only(&body, "file")?);
            let (Some(b"batch"), Some(file)) = (purpose, file) else {
                return Err(crate::objects::unscannable(&policy, &plan.provider));
            };
            let target = plan.target();
            let who = crate::guard::Subject { key: &key.id, project: &self.project, team: &key.team, route: "" };
            let (mut found, mut placeholders) = (None, crate::guard::Placeholders::default());
            let lines = crate::batch::guard_lines(file, |line| {
                let (outcome, error) = crate::guard::decide(&policy, who, &target, line, &mut placeholders);
                found = crate::batch::merge(found.take(), outcome.record);
                error.map_or(Ok(outcome.body), Err)
            });
            self.guardrails = found;
            match lines {
                Ok(Some(new)) => form.replacing(&body, "file", &new).map(Some),
                Ok(None) => Ok(None),
                Err(e) => {
                    self.target = Some(target);
                    Err(e)
                }
            }
        });
        let new_body = match scanned {
            Ok(new) => new.or(decoded.then_some(body)),
            Err(e) => return self.reject(e),
        };
        self.send_object_with(&plan, body_size, new_body.as_deref(), decoded)
    }

    /// Sends the request on with `body` in place of the client's (`None`:
    /// the client's, as it came), decoded when it came compressed.
    fn send_object_with(&mut self, plan: &Plan, body_size: usize, body: Option<&[u8]>, decoded: bool) -> Action {
        if let Some(b) = body {
            host::set_buffer(REQUEST_BODY, 0, body_size, b);
            self.set_request_header("content-length", Some(&b.len().to_string()));
            if decoded {
                self.set_request_header("content-encoding", None);
            }
        }
        self.send_object(plan)
    }

    fn send_object(&mut self, plan: &Plan) -> Action {
        for (name, value) in &plan.headers {
            self.set_request_header(name, Some(value));
        }
        for name in plan.remove() {
            self.set_request_header(name, None);
        }
        log::debug!("[{}] stored object {:?} -> provider={}", self.context_id, plan.object, plan.provider);
        self.phase = Phase::Counting;
        if let Some(kind) = plan.charged {
            self.read_for_charge(kind, &plan.provider, plan.skip_through);
        }
        Action::Continue
    }

    /// The answer to come is read as it passes for the charge it may
    /// carry ([`crate::owned`]).
    pub(super) fn read_for_charge(&mut self, kind: crate::owned::Kind, provider: &str, skip_through: Option<u64>) {
        self.phase = Phase::Charged;
        self.charge_read = Some(ChargeRead { kind, provider: provider.to_string(), skip_through, answer: None });
    }

    /// The head of an answer read for a charge: passed on (impostor
    /// headers removed), its status, coding and kind kept for reading its body.
    pub(super) fn charged_answer_head(&mut self) {
        let head = ResponseHead::read(crate::hostmap::pairs(&host::header_map(RESPONSE_HEADERS)));
        for name in &head.impostors {
            host::set_header(RESPONSE_HEADERS, name, None);
        }
        self.add_target_headers();
        self.status = head.status;
        if let Some(r) = self.charge_read.as_mut() {
            let answer = crate::owned::Answer::new(r.kind, head.coding(), head.is_stream(), r.skip_through);
            if answer.rewrites() {
                host::set_header(RESPONSE_HEADERS, "content-length", None);
            } else if r.skip_through.is_some() && head.is_stream() {
                log::warn!("[{}] a resumed stream came compressed: passed on whole, its earlier events included", self.context_id);
            }
            r.answer = Some(answer);
        }
    }

    /// The body of an answer read for a charge: a JSON object held whole
    /// (up to `max_response_bytes`) and charged before it goes on; an event
    /// stream read as it passes. At its end, what it charges.
    pub(super) fn charged_answer_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let max = self.config.as_ref().map_or(0, |c| c.max_response_bytes);
        let Some(answer) = self.charge_read.as_mut().and_then(|r| r.answer.as_mut()) else { return Action::Continue };
        if answer.holds() {
            if crate::reader::holds_more(body_size, end_of_stream, max) {
                return Action::Pause;
            }
            if !end_of_stream {
                log::warn!("[{}] an answer over {max} bytes (max_response_bytes) was not held: not read for its charge", self.context_id);
                self.charge_read = None;
                return Action::Continue;
            }
            answer.push(&host::buffer(RESPONSE_BODY, 0, body_size));
        } else {
            let mut out = answer.push(&host::buffer(RESPONSE_BODY, 0, body_size));
            if end_of_stream {
                if let (Some(o), Some(last)) = (out.as_mut(), answer.finish()) {
                    o.extend_from_slice(&last);
                }
            }
            if let Some(o) = out {
                host::set_buffer(RESPONSE_BODY, 0, body_size, &o);
            }
        }
        if end_of_stream {
            if let Some(read) = self.charge_read.take() {
                self.charge(read);
            }
        }
        Action::Continue
    }

    /// The answer ended before its end of stream (the client left, the
    /// provider cut it): what it carried so far is read for a charge.
    pub(super) fn charge_cut(&mut self) {
        if let Some(mut read) = self.charge_read.take() {
            if let Some(a) = read.answer.as_mut() {
                a.finish();
            }
            self.charge(read);
        }
    }

    fn charge(&mut self, read: ChargeRead) {
        let (Some(cfg), Some(answer)) = (self.config.clone(), read.answer) else { return };
        if self.status != 200 {
            return;
        }
        let records = match answer.records(&cfg, &read.provider, now_ms()) {
            Ok(r) => r,
            Err(crate::owned::Unread::TooLarge) => {
                log::warn!("[{}] an answer over {} bytes was not read for its charge", self.context_id, crate::owned::MAX_ANSWER_BYTES);
                return;
            }
            Err(crate::owned::Unread::Undecodable) => {
                log::warn!("[{}] an answer could not be decoded: not read for its charge", self.context_id);
                return;
            }
        };
        for (i, mut rec) in records.into_iter().enumerate() {
            self.ship_charge(&cfg, &mut rec, i == 0);
        }
    }

    /// Ships a charge read from an object: once on this Envoy (logs,
    /// metrics); the control service gets it on every read, and counts
    /// its id once.
    pub(super) fn ship_charge(&self, cfg: &Config, rec: &mut crate::record::UsageRecord, primary: bool) {
        // (A concurrent writer wins: at worst the charge is logged twice here.)
        let (entry, cas) = host::shared(crate::owned::COUNTED);
        let entry = entry.unwrap_or_default();
        if crate::owned::counted(&entry, &rec.id) {
            if cfg.control.is_some() {
                enqueue_record(serde_json::to_string(&*rec).unwrap_or_default().as_bytes());
            }
            return;
        }
        let _ = host::set_shared(crate::owned::COUNTED, &crate::owned::with_counted(&entry, &rec.id), cas);
        log::debug!("[{}] {} charged to key {}: {} micro-dollars", self.context_id, rec.id, rec.key_id, rec.cost_micros);
        self.ship(cfg, rec, primary);
    }
}

/// An answer being read for its charge.
pub(super) struct ChargeRead {
    kind: crate::owned::Kind,
    provider: String,
    /// A resumed stream's start ([`crate::objects::Plan::skip_through`]).
    skip_through: Option<u64>,
    /// Made when its head arrives.
    answer: Option<crate::owned::Answer>,
}
