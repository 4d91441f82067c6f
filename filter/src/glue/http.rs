//! One HTTP context per request: reads what Envoy gives (as bytes, through
//! [`super::host`]), calls the pure logic, applies its answer.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, REQUEST_HEADERS, RESPONSE_HEADERS};
use super::{body_arrived, budgets_for, current_state, next_request_id, now_ms, HostCounters};
use crate::admission::Reservation;
use crate::record::BudgetDecision;
use tollgate_protocol::scope::Scope;
use crate::config::{Config, KeyInfo};
use crate::errors::GatewayError;
use crate::record::{Outcome, UsageSource};
use crate::request::{Api, ChatRequest};
use crate::route::Target;
use crate::reader::Reader;
use crate::request_head::RequestHead;
use crate::state::Meta;
use crate::usage::{ResponseInfo, Usage};

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Headers not seen yet.
    Start,
    /// Headers paused; the body is being buffered.
    AwaitBody,
    /// Went upstream; the response is being followed.
    Upstream,
    /// Not ours (other paths in `pass` mode): touch nothing.
    Passthrough,
    /// A token count went upstream: its answer is passed on as it is.
    Counting,
    /// An answer is being read as it passes, for the charge it may carry
    /// (an ended batch's, an ended background response's).
    Charged,
    /// The gateway answered itself (local reply).
    Replied,
    /// The usage record was emitted: nothing more to do.
    Recorded,
}

mod accounting;
mod answer;
mod body;
mod fallback;
mod objects;
mod request;

/// Per-request state.
pub(super) struct TollgateHttp {
    config: Option<Rc<Config>>,
    context_id: u32,
    phase: Phase,
    start_ms: u64,
    headers: RequestHead,
    /// The client's `:path` (valid UTF-8, checked once).
    path: String,
    request_id: String,
    client_request_id: Option<String>,
    session_id: Option<String>,
    api: Option<Api>,
    key: Option<Rc<KeyInfo>>,
    project: String,
    feature: Option<String>,
    prompt_version: Option<String>,
    chat: Option<ChatRequest>,
    target: Option<Target>,
    request_body_size: usize,
    status: u16,
    ttfb_ms: Option<u64>,
    upstream_responded: bool,
    response_complete: bool,
    reader: Reader,
    response_info: Option<ResponseInfo>,
    body_note: Option<&'static str>,
    /// What the answer's headers say served it ([`crate::served`]).
    head_served: crate::served::Served,
    body_bytes: u64,
    /// Budget reservations taken for this request.
    reservations: Vec<Reservation>,
    budget_decision: BudgetDecision,
    budget_headers: Vec<(String, String)>,
    /// The scope whose budget refused this request.
    denied_scope: Option<Scope>,
    /// The control service's state as this request saw it (read once).
    state: Option<Option<Meta>>,
    /// Shared by the requests of one plugin configuration: Envoy held the
    /// headers of an earlier request until its body was read.
    pause_verified: Rc<std::cell::Cell<bool>>,
    /// A request sent in the other provider format: the answer is read in
    /// the provider's format and translated back ([`crate::translate`]).
    translate: Option<crate::translate::Direction>,
    /// The flat names of a translated Responses request's namespaced functions.
    tool_names: Option<std::rc::Rc<crate::translate::namespaces::ToolNames>>,
    /// What the guardrails found in the request, for the record.
    guardrails: Option<tollgate_protocol::record::Guardrails>,
    /// The policy, who the request was for and its placeholders, kept for
    /// the answer when the policy reads answers ([`crate::guard::answer`]).
    answer_seed: Option<(Rc<crate::guard::Policy>, crate::guard::answer::Owner, crate::guard::Placeholders)>,
    answer_guard: Option<crate::guard::answer::AnswerGuard>,
    /// The prefix compared with recent requests, and an ineffective cache marker.
    cache_verdict: Option<(crate::fingerprint::Verdict, crate::fingerprint::Markers)>,
    /// The route repairs JSON answers; what the check found.
    json_repair: bool,
    json_check: Option<tollgate_protocol::record::JsonCheck>,
    /// Fallbacks still to try, the body as the client sent it (for them),
    /// the attempts that failed, and the fallback call in flight.
    fallbacks: std::collections::VecDeque<String>,
    client_body: Option<Vec<u8>>,
    /// An image edit's form, for the fallbacks' bodies.
    client_upload: Option<std::rc::Rc<crate::request::multipart::Upload>>,
    attempts: Vec<tollgate_protocol::record::Attempt>,
    fallback_call: Option<u32>,
    /// Why the gateway chose the model (auto router).
    routed_by: Option<String>,
    /// A request sampled for evaluations (its answer added when it comes).
    capture: Option<tollgate_protocol::record::Capture>,
    /// A token count (`/v1/messages/count_tokens`): routed and checked like
    /// a messages request, but free: no budget, no record.
    counting: bool,
    /// A compaction (`/v1/responses/compact`, [`crate::request::Endpoint::Compact`]).
    compacting: bool,
    /// A stored-object request waiting for its body ([`crate::objects`]).
    object_plan: Option<crate::objects::Plan>,
    /// An answer read for its charge ([`crate::owned`]).
    charge_read: Option<objects::ChargeRead>,
    /// The status and code of the error the client got in place of the
    /// provider's answer (one the filter cannot translate, or a redacting
    /// guard cannot read; [`Self::replace_answer`]).
    replaced: Option<(u16, &'static str)>,
    /// That error's body, in place of the held answer's body: until sent,
    /// then empty ([`Self::swallow_body`]).
    swallowing: Option<Vec<u8>>,
}

impl Context for TollgateHttp {
    fn on_http_call_response(&mut self, token: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        self.on_fallback_answer(token, body_size);
    }
}

impl TollgateHttp {
    pub(super) fn new(config: Option<Rc<Config>>, context_id: u32, pause_verified: Rc<std::cell::Cell<bool>>) -> Self {
        TollgateHttp {
            config,
            context_id,
            phase: Phase::Start,
            start_ms: 0,
            headers: RequestHead::default(),
            path: String::new(),
            request_id: String::new(),
            client_request_id: None,
            session_id: None,
            api: None,
            key: None,
            project: String::new(),
            feature: None,
            prompt_version: None,
            chat: None,
            target: None,
            request_body_size: 0,
            status: 0,
            ttfb_ms: None,
            upstream_responded: false,
            response_complete: false,
            reader: Reader::None,
            response_info: None,
            body_note: None,
            head_served: Default::default(),
            body_bytes: 0,
            reservations: Vec::new(),
            budget_decision: BudgetDecision::Off,
            budget_headers: Vec::new(),
            denied_scope: None,
            state: None,
            pause_verified,
            translate: None,
            tool_names: None,
            guardrails: None,
            answer_seed: None,
            answer_guard: None,
            cache_verdict: None,
            json_repair: false,
            json_check: None,
            fallbacks: Default::default(),
            client_body: None,
            client_upload: None,
            replaced: None,
            swallowing: None,
            attempts: Vec::new(),
            fallback_call: None,
            routed_by: None,
            capture: None,
            counting: false,
            compacting: false,
            object_plan: None,
            charge_read: None,
        }
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        host::set_header(REQUEST_HEADERS, name, value);
    }

    fn set_response_header(&self, name: &str, value: &str) {
        host::set_header(RESPONSE_HEADERS, name, Some(value));
    }

    /// One of Tollgate's own `x-tollgate-*` response headers: the upstream's
    /// were removed when the response headers were read, so it is added.
    fn add_own_header(&self, name: &str, value: &str) {
        host::add_header(RESPONSE_HEADERS, name, value);
    }

    /// Sends a local error reply; records it when the caller is known.
    fn reject(&mut self, e: GatewayError) -> Action {
        self.reject_with(e, Vec::new())
    }

    fn reject_with(&mut self, e: GatewayError, extra: Vec<(String, String)>) -> Action {
        self.status = e.status;
        let body = e.body();
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        for (k, v) in &extra {
            headers.push((k.as_str(), v.as_str()));
        }
        if !self.request_id.is_empty() {
            headers.push(("x-tollgate-request-id", self.request_id.as_str()));
        }
        if e.status == 401 {
            headers.push(("www-authenticate", "Bearer realm=\"tollgate\""));
        }
        log::debug!("[{}] rejected {} {}", self.context_id, e.status, e.code);
        host::send_response(u32::from(e.status), &headers, body.as_bytes());
        self.phase = Phase::Replied;
        // A token count is no usage, but one the guardrails stopped is an
        // attempt the audit must see: without its record, counts could
        // probe what the guardrails catch without a trace.
        if self.key.is_some() && (!self.counting || [GatewayError::CONTENT_BLOCKED, GatewayError::CONTENT_UNREADABLE].contains(&e.code)) {
            let mut rec = self.build_record(Usage::default(), UsageSource::None, Outcome::Rejected, Some(e.code.to_string()), 0, false);
            self.emit(&mut rec);
        }
        Action::Pause
    }

    /// The request's id, and where it went.
    fn add_target_headers(&self) {
        self.add_own_header("x-tollgate-request-id", &self.request_id);
        if let Some(t) = &self.target {
            self.add_own_header("x-tollgate-provider", &t.provider);
            self.add_own_header("x-tollgate-model", &t.upstream_model);
        }
    }

    /// The state for this request: read from shared data once, then reused.
    fn state(&mut self) -> Option<Meta> {
        *self.state.get_or_insert_with(current_state)
    }
}

impl HttpContext for TollgateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.start_ms = now_ms();
        let Some(cfg) = self.config.clone() else {
            return self.reject(GatewayError::internal("The Tollgate filter has no valid configuration."));
        };
        let map = host::header_map(REQUEST_HEADERS);
        #[cfg(feature = "test-trap")]
        if crate::hostmap::pairs(&map).any(|(k, _)| k == b"x-tollgate-test-trap") {
            std::process::abort();
        }
        self.headers = RequestHead::read(crate::hostmap::pairs(&map), &cfg.cluster_header);
        self.request_id = next_request_id();
        self.client_request_id = crate::ids::client_request_id(self.headers.request_id.take().as_deref());
        self.session_id = crate::ids::session_id(self.headers.session.take().as_deref(), self.headers.claude_code_session.take().as_deref());
        self.on_request_headers(&cfg, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase != Phase::AwaitBody {
            return Action::Continue;
        }
        body_arrived(self.context_id);
        let Some(cfg) = self.config.clone() else {
            return Action::Continue;
        };
        self.request_body_size = body_size;
        if body_size > cfg.max_request_bytes {
            return self.reject(GatewayError::too_large(cfg.max_request_bytes));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.on_request_complete(&cfg, body_size)
    }

    /// HTTP/2 and gRPC-style clients may end a request with trailers: the
    /// body is then complete without an end-of-stream body callback.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.phase != Phase::AwaitBody {
            return Action::Continue;
        }
        body_arrived(self.context_id);
        let Some(cfg) = self.config.clone() else {
            return Action::Continue;
        };
        self.on_request_complete(&cfg, self.request_body_size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_body(body_size, end_of_stream)
    }

    fn on_log(&mut self) {
        self.log_end()
    }
}
