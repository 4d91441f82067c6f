//! A request's answer: read as [`crate::reader`] chooses, guarded, translated
//! or replaced, and what the client gets in its place.

use proxy_wasm::types::Action;

use super::super::host::{self, RESPONSE_BODY, RESPONSE_HEADERS};
use super::super::{body_arrived, now_ms, report_vm_memory};
use super::{fallback, Phase, TollgateHttp};
use crate::config::Config;
use crate::errors::GatewayError;
use crate::reader::{self, Reader, ResponseHead};
use crate::record::{Termination, UsageRecord};
use crate::request::Api;

impl TollgateHttp {
    pub(super) fn response_headers(&mut self, end_of_stream: bool) -> Action {
        if self.phase == Phase::Counting {
            self.tag_count_answer();
            return Action::Continue;
        }
        if self.phase == Phase::Charged {
            self.charged_answer_head();
            return Action::Continue;
        }
        if self.phase != Phase::Upstream {
            return Action::Continue;
        }
        // "via_upstream": the provider answered; anything else is Envoy's own reply.
        if host::property(&["response", "code_details"]).is_some_and(|d| d.as_slice() == b"via_upstream") {
            self.upstream_responded = true;
            self.ttfb_ms = Some(now_ms().saturating_sub(self.start_ms));
        }
        let head = ResponseHead::read(crate::hostmap::pairs(&host::header_map(RESPONSE_HEADERS)));
        self.status = head.status;
        for name in &head.impostors {
            host::set_header(RESPONSE_HEADERS, name, None);
        }
        // A failure before any byte went out: the next alternative, if the route has one.
        if fallback::retryable(self.status) && !self.fallbacks.is_empty() {
            if let Some(cfg) = self.config.clone() {
                if self.try_fallback(&cfg, self.status) {
                    return Action::Pause;
                }
            }
        }
        // (After a fallback is tried: the answer that is accounted is the fallback's.)
        if self.response_api() == Api::GeminiGenerateContent {
            self.head_served = head.gemini_tier;
        }
        self.add_target_headers();
        for (k, v) in &self.budget_headers {
            self.add_own_header(k, v);
        }
        let Some(cfg) = self.config.clone() else { return Action::Continue };
        if end_of_stream {
            self.response_complete = true;
            if let Some(rec) = self.settle(Termination::Complete) {
                if cfg.cost_headers {
                    self.add_cost_headers(&rec);
                }
            }
            return Action::Continue;
        }
        self.start_answer_guard(&head);
        let choice = reader::choose(&head, &self.wants(&cfg));
        if let Some(name) = &choice.unreadable {
            log::warn!("[{}] response content-encoding '{name}' cannot be read: usage will be estimated", self.context_id);
        }
        if let Some(e) = choice.replace {
            self.replace_answer(e);
        }
        if choice.drop_encoding {
            host::set_header(RESPONSE_HEADERS, "content-encoding", None);
        }
        if choice.drop_length {
            host::set_header(RESPONSE_HEADERS, "content-length", None);
        }
        self.reader = choice.reader;
        if choice.hold {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    pub(super) fn response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase == Phase::Charged {
            return self.charged_answer_body(body_size, end_of_stream);
        }
        if self.phase != Phase::Upstream {
            return Action::Continue;
        }
        if let Some(held) = self.holding_for_fallback() {
            return held;
        }
        let Some(cfg) = self.config.clone() else {
            return Action::Continue;
        };
        match &mut self.reader {
            Reader::Stream { .. } => {
                let raw = host::buffer(RESPONSE_BODY, 0, body_size);
                if let Some(out) = self.reader.stream_chunk(self.answer_guard.as_mut(), raw, end_of_stream) {
                    host::set_buffer(RESPONSE_BODY, 0, body_size, &out);
                }
                if end_of_stream {
                    self.response_complete = true;
                    self.settle(Termination::Complete);
                }
                Action::Continue
            }
            Reader::Held { inflater } => {
                if reader::holds_more(body_size, end_of_stream, cfg.max_response_bytes) {
                    return Action::Pause;
                }
                // Everything so far is buffered: read it once.
                let inflater = inflater.take();
                self.held_body(&cfg, inflater, body_size, end_of_stream)
            }
            Reader::Json { .. } => {
                let chunk = host::buffer(RESPONSE_BODY, 0, body_size);
                self.reader.feed_json(&chunk);
                self.swallow_body(body_size);
                if end_of_stream {
                    self.finish_json();
                }
                Action::Continue
            }
            Reader::Audio { .. } => self.audio_body(body_size, end_of_stream),
            Reader::Unreadable { bytes } => {
                *bytes = bytes.saturating_add(body_size as u64);
                self.swallow_body(body_size);
                if end_of_stream {
                    self.response_complete = true;
                    self.settle(Termination::Complete);
                }
                Action::Continue
            }
            Reader::None => Action::Continue,
        }
    }

    /// A held answer, whole or as much as is held: read once (decoded,
    /// guarded, translated or replaced as `reader::held` says), its cost
    /// headers added at its end.
    fn held_body(&mut self, cfg: &Config, inflater: Option<crate::decode::Inflater>, body_size: usize, end_of_stream: bool) -> Action {
        let body = host::buffer(RESPONSE_BODY, 0, body_size);
        let held = reader::held(inflater, body, end_of_stream, self.status, &self.wants(cfg));
        if held.sent_decoded {
            host::set_header(RESPONSE_HEADERS, "content-encoding", None);
        }
        if let Some(e) = held.replace {
            self.replace_answer(e);
        }
        let compressed = matches!(&held.reader, Reader::Json { inflater: Some(_), .. });
        self.reader = held.reader;
        let body = held.body;
        self.reader.feed_json(&body);
        self.swallow_body(body_size);
        if end_of_stream {
            let new = match self.client_answer(cfg, &body, compressed) {
                Ok(new) => new,
                Err(e) => {
                    // (The headers are still held: the error goes in the answer's place.)
                    self.replace_answer(e);
                    self.swallowing.take()
                }
            };
            if let Some(rec) = self.finish_json() {
                if cfg.cost_headers {
                    self.add_cost_headers(&rec);
                }
            }
            let new = new.or_else(|| held.sent_decoded.then_some(body));
            if let Some(new) = new {
                host::set_buffer(RESPONSE_BODY, 0, body_size, &new);
                self.set_response_header("content-length", &new.len().to_string());
            }
        }
        // Too big to hold: let it go without cost headers, keep reading.
        Action::Continue
    }

    /// Speech: read only for its meter's head and tail (the rest is
    /// counted by its size).
    fn audio_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let tail = crate::request::speech::TAIL;
        let wants = self.reader.audio_wants();
        if body_size <= wants.saturating_add(tail) {
            let chunk = host::buffer(RESPONSE_BODY, 0, body_size);
            self.reader.feed_audio(&chunk, &chunk, body_size);
        } else {
            let start = if wants > 0 { host::buffer(RESPONSE_BODY, 0, wants) } else { Vec::new() };
            let end = host::buffer(RESPONSE_BODY, body_size.saturating_sub(tail), tail);
            self.reader.feed_audio(&start, &end, body_size);
        }
        self.swallow_body(body_size);
        if end_of_stream {
            self.response_complete = true;
            self.settle(Termination::Complete);
        }
        Action::Continue
    }

    pub(super) fn log_end(&mut self) {
        body_arrived(self.context_id);
        report_vm_memory();
        if self.phase == Phase::Charged {
            return self.charge_cut();
        }
        if self.phase != Phase::Upstream {
            return;
        }
        // The status the client actually got: Envoy may have replaced a
        // held or failed upstream response with its own (e.g. 502). (Not
        // when the filter replaced the answer: the provider's status and
        // usage stand.)
        if let Some(code) = host::property(&["response", "code"])
            .filter(|_| self.replaced.is_none())
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(|b| u64::from_le_bytes(b) as u16)
            .filter(|c| *c != 0)
        {
            self.status = code;
        }
        if matches!(self.reader, Reader::Json { .. }) && !self.response_complete {
            // The body ended early: what was read still says what it can.
            let termination = self.termination_from_host();
            let api = self.response_api();
            if let Some(reading) = self.reader.finish_json(api) {
                self.body_bytes = reading.bytes;
                self.response_info = Some(reading.info);
            }
            self.settle(termination);
            return;
        }
        let termination = self.termination_from_host();
        self.settle(termination);
    }

    /// A token count's answer: passed on as the provider sent it, with
    /// Tollgate's headers (the provider's own in that namespace removed).
    pub(super) fn tag_count_answer(&self) {
        let head = ResponseHead::read(crate::hostmap::pairs(&host::header_map(RESPONSE_HEADERS)));
        for name in &head.impostors {
            host::set_header(RESPONSE_HEADERS, name, None);
        }
        self.add_target_headers();
    }

    /// A whole answer as the client gets it — translated, captured (the
    /// provider's, before anything is restored in it), guarded, JSON-checked
    /// (and repaired on a json_repair route) — before the record is
    /// settled, which carries what was found. `Ok(None)`: send `body` as it
    /// is (always so for a `compressed` one, which could not be decoded).
    /// `Err`: a policy redacting answers cannot read it; the client gets
    /// the error instead.
    pub(super) fn client_answer(&mut self, cfg: &Config, body: &[u8], compressed: bool) -> Result<Option<Vec<u8>>, GatewayError> {
        if compressed {
            return Ok(None);
        }
        let ok = (200..300).contains(&self.status);
        let mut new = self.translate.and_then(|d| d.answer(body, self.status, now_ms() / 1000, self.tool_names.as_deref()));
        if let (Some(c), true) = (self.capture.as_mut(), ok) {
            let answer = new.as_deref().unwrap_or(body);
            if answer.len() <= cfg.capture.as_ref().map_or(0, |k| k.max_bytes) {
                c.response = String::from_utf8_lossy(answer).into_owned();
            }
        }
        if let Some(g) = self.answer_guard.as_mut() {
            match g.json(new.as_deref().unwrap_or(body)) {
                Ok(Some(guarded)) => new = Some(guarded),
                Ok(None) => {}
                Err(why) => return Err(GatewayError::unread_answer(g.policy_version(), &why)),
            }
        }
        if let (Some(ask), true) = (self.chat.as_ref().and_then(|c| c.json.clone()), ok) {
            let (checked, fixed) = crate::jsonfix::answer(new.as_deref().unwrap_or(body), &ask, self.json_repair);
            if fixed.is_some() {
                new = fixed;
            }
            self.json_check = checked.map(|c| tollgate_protocol::record::JsonCheck { valid: c.valid, repaired: c.repaired, error: c.error });
        }
        Ok(new)
    }

    /// Sends `e` to the client in place of the provider's answer, whose
    /// headers are still held; the answer is read on for its usage and its
    /// bytes dropped ([`Self::swallow_body`]).
    pub(super) fn replace_answer(&mut self, e: GatewayError) {
        log::warn!("[{}] the provider's answer is replaced by a {} {}", self.context_id, e.status, e.code);
        let body = e.body().into_bytes();
        host::set_header(RESPONSE_HEADERS, ":status", Some(&e.status.to_string()));
        host::set_header(RESPONSE_HEADERS, "content-type", Some("application/json"));
        host::set_header(RESPONSE_HEADERS, "content-encoding", None);
        host::set_header(RESPONSE_HEADERS, "content-length", Some(&body.len().to_string()));
        if let Some((name, value)) = e.retry_header(self.status) {
            host::set_header(RESPONSE_HEADERS, name, Some(value));
        }
        self.replaced = Some((e.status, e.code));
        self.swallowing = Some(body);
    }

    /// The code of why the client did not get the provider's answer
    /// (whole): replaced by an error, or a stream a redacting guard ended.
    pub(super) fn withheld(&self) -> Option<&'static str> {
        let ended = self.answer_guard.as_ref().is_some_and(|g| g.unread);
        self.replaced.map(|r| r.1).or(ended.then_some(GatewayError::ANSWER_UNREADABLE))
    }

    /// For an answer replaced by an error: the error's body in place of the
    /// first chunk, nothing in place of the rest.
    pub(super) fn swallow_body(&mut self, body_size: usize) {
        if let Some(body) = self.swallowing.as_mut() {
            host::set_buffer(RESPONSE_BODY, 0, body_size, &std::mem::take(body));
        }
    }

    /// What this request asked for that decides how its answer is read.
    pub(super) fn wants(&self, cfg: &Config) -> reader::Wants<'_> {
        let chat = self.chat.as_ref();
        reader::Wants {
            api: self.response_api(),
            translate: self.translate,
            tool_names: self.tool_names.as_ref(),
            guarded: self.answer_guard.is_some(),
            redacts: self.answer_guard.as_ref().filter(|g| g.redacts()).map(|g| g.policy_version()),
            cost_headers: cfg.cost_headers,
            force_stream_usage: cfg.force_stream_usage,
            max_response_bytes: cfg.max_response_bytes,
            client_stream: chat.is_some_and(|c| c.stream),
            client_include_usage: chat.is_some_and(|c| c.client_include_usage),
            json_checked: chat.is_some_and(|c| c.json.is_some()),
            captured: self.capture.is_some(),
            // (A clock read is a host call: made only for what uses it.)
            now_s: if self.translate.is_some() { now_ms() / 1000 } else { 0 },
        }
    }

    /// The answer is guarded when the policy reads answers and the answer
    /// is one a guard can read. (Made whether the answer is compressed or
    /// not: a compressed answer the filter rewrites is decoded for it.)
    pub(super) fn start_answer_guard(&mut self, head: &ResponseHead) {
        if let (true, Some((policy, owner, placeholders))) = (head.guardable(), self.answer_seed.take()) {
            self.answer_guard = crate::guard::answer::AnswerGuard::new(policy, owner, placeholders, self.api.unwrap_or(Api::OpenAiChat));
        }
    }

    /// The request's finding with the answer's added.
    pub(super) fn guardrails_for_record(&self) -> Option<tollgate_protocol::record::Guardrails> {
        let Some(g) = &self.answer_guard else { return self.guardrails.clone() };
        let found = g.finding();
        if found.is_none() && g.restored == 0 {
            return self.guardrails.clone();
        }
        let mut rec = self.guardrails.clone().unwrap_or_else(|| tollgate_protocol::record::Guardrails {
            classes: Default::default(),
            action: "none".into(),
            policy: self.answer_seed_version(),
            response_classes: Default::default(),
            response_action: None,
            restored: 0,
        });
        if let Some((classes, action)) = found {
            rec.response_classes = classes;
            rec.response_action = Some(action.to_string());
        }
        rec.restored = g.restored;
        Some(rec)
    }

    pub(super) fn answer_seed_version(&self) -> String {
        self.answer_guard.as_ref().map(|g| g.policy_version().to_string()).unwrap_or_default()
    }

    /// The API the provider answers in (Anthropic's when translating).
    pub(super) fn response_api(&self) -> Api {
        self.translate.map_or(self.api.unwrap_or(Api::OpenAiChat), |d| d.upstream_api())
    }

    /// The JSON body is complete: read it and settle.
    pub(super) fn finish_json(&mut self) -> Option<UsageRecord> {
        let api = self.response_api();
        if let Some(reading) = self.reader.finish_json(api) {
            self.body_bytes = reading.bytes;
            self.body_note = reading.note;
            self.response_info = Some(reading.info);
        }
        self.response_complete = true;
        self.settle(Termination::Complete)
    }
}
