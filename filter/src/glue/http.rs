//! One HTTP context per request: reads what Envoy gives (as bytes, through
//! [`super::host`]), calls the pure logic, applies its answer.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, REQUEST_BODY, REQUEST_HEADERS, RESPONSE_BODY, RESPONSE_HEADERS};
use super::{awaiting_body, body_arrived, budgets_for, current_state, enqueue_record, next_request_id, now_ms, record_metrics, report_vm_memory, shared_key, HostCounters};
use crate::admission::{self, Decision, Reservation};
use crate::record::BudgetDecision;
use tollgate_protocol::scope::Scope;
use crate::budget::Amount;
use crate::config::{Config, KeyInfo, OtherPaths};
use crate::errors::GatewayError;
use crate::keys::{hash_key, key_ref, presented_key};
use crate::record::{account, Observed, Outcome, Termination, UsageRecord, UsageSource, RECORD_VERSION};
use crate::request::{classify_path, Api, ChatRequest, Endpoint};
use crate::route::{self, Target};
use crate::reader::{self, Reader, ResponseHead};
use crate::state::Meta;
use crate::usage::{ResponseInfo, Usage};

const HDR_PROJECT: &str = "x-tollgate-project";
const HDR_SESSION: &str = "x-tollgate-session";
const HDR_FEATURE: &str = "x-tollgate-feature";
const HDR_PROMPT_VERSION: &str = "x-tollgate-prompt-version";

/// The request headers the filter looks at, read with one host call, as
/// bytes: a value is only turned into text where it is used, and a value
/// that is not valid there is a 400/401, never a panic.
#[derive(Default)]
struct RequestHeaders {
    path: Vec<u8>,
    method: Vec<u8>,
    authorization: Option<Vec<u8>>,
    x_api_key: Option<Vec<u8>>,
    /// Gemini clients send their key here.
    x_goog_api_key: Option<Vec<u8>>,
    request_id: Option<Vec<u8>>,
    session: Option<Vec<u8>>,
    claude_code_session: Option<Vec<u8>>,
    project: Option<Vec<u8>>,
    feature: Option<Vec<u8>>,
    prompt_version: Option<Vec<u8>>,
    has_anthropic_version: bool,
    /// The body's `content-encoding` (several headers joined, so refused).
    content_encoding: Option<Vec<u8>>,
    /// Headers present that must not go upstream.
    to_remove: Vec<String>,
}

impl RequestHeaders {
    fn read<'a>(all: impl Iterator<Item = (&'a [u8], &'a [u8])>, cluster_header: &str) -> Self {
        let mut h = RequestHeaders::default();
        for (name, value) in all {
            let remove = |h: &mut RequestHeaders| h.to_remove.push(String::from_utf8_lossy(name).into_owned());
            let value = || value.to_vec();
            match name {
                b":path" => h.path = value(),
                b":method" => h.method = value(),
                b"authorization" => {
                    h.authorization = Some(value());
                    remove(&mut h);
                }
                b"x-api-key" => {
                    h.x_api_key = Some(value());
                    remove(&mut h);
                }
                b"x-goog-api-key" => {
                    h.x_goog_api_key = Some(value());
                    remove(&mut h);
                }
                b"x-request-id" => h.request_id = Some(value()),
                b"x-claude-code-session-id" => h.claude_code_session = Some(value()),
                n if n == HDR_SESSION.as_bytes() => {
                    h.session = Some(value());
                    remove(&mut h);
                }
                n if n == HDR_PROJECT.as_bytes() => {
                    h.project = Some(value());
                    remove(&mut h);
                }
                n if n == HDR_FEATURE.as_bytes() => {
                    h.feature = Some(value());
                    remove(&mut h);
                }
                n if n == HDR_PROMPT_VERSION.as_bytes() => {
                    h.prompt_version = Some(value());
                    remove(&mut h);
                }
                b"anthropic-version" => h.has_anthropic_version = true,
                b"content-encoding" => match &mut h.content_encoding {
                    Some(joined) => {
                        joined.extend_from_slice(b", ");
                        joined.extend(value());
                    }
                    None => h.content_encoding = Some(value()),
                },
                // The response must be readable (uncompressed) to count its usage.
                b"accept-encoding" => remove(&mut h),
                n if n == cluster_header.as_bytes() => remove(&mut h),
                _ => {}
            }
        }
        h
    }
}

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
    /// The gateway answered itself (local reply).
    Replied,
    /// The usage record was emitted: nothing more to do.
    Recorded,
}

mod fallback;

/// The cost headers of a record: always cost, input, cached input and
/// output; cache writes and reasoning tokens only when non-zero (each
/// header is a host call).
fn cost_header_values(rec: &UsageRecord) -> Vec<(&'static str, String)> {
    let u = &rec.usage;
    [
        ("x-tollgate-cost-micros", rec.cost_micros, true),
        ("x-tollgate-input-tokens", u.input_tokens, true),
        ("x-tollgate-cached-input-tokens", u.cached_input_tokens, true),
        ("x-tollgate-output-tokens", u.output_tokens, true),
        ("x-tollgate-cache-write-tokens", u.cache_write_tokens, false),
        ("x-tollgate-reasoning-tokens", u.reasoning_tokens, false),
    ]
    .into_iter()
    .filter(|(_, v, always)| *always || *v > 0)
    .map(|(k, v, _)| (k, v.to_string()))
    .collect()
}

/// Per-request state.
pub(super) struct TollgateHttp {
    config: Option<Rc<Config>>,
    context_id: u32,
    phase: Phase,
    start_ms: u64,
    headers: RequestHeaders,
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
    attempts: Vec<tollgate_protocol::record::Attempt>,
    fallback_call: Option<u32>,
    /// Why the gateway chose the model (auto router).
    routed_by: Option<String>,
    /// A request sampled for evaluations (its answer added when it comes).
    capture: Option<tollgate_protocol::record::Capture>,
    /// A token count (`/v1/messages/count_tokens`): routed and checked like
    /// a messages request, but free: no budget, no record.
    counting: bool,
    /// The status of the error the client got in place of the provider's
    /// answer (one the filter cannot translate; [`Self::replace_answer`]).
    replaced: Option<u16>,
    /// That error's body, in place of the held answer's body: until sent,
    /// then empty ([`Self::swallow_body`]).
    swallowing: Option<Vec<u8>>,
}

impl Context for TollgateHttp {
    fn on_http_call_response(&mut self, token: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        self.on_fallback_answer(token, body_size);
    }
}

/// A tag header's value: trimmed, at most 128 visible ASCII characters.
fn tag_value(v: Option<Vec<u8>>) -> Result<Option<String>, ()> {
    let Some(v) = v else { return Ok(None) };
    let s = std::str::from_utf8(&v).map_err(|_| ())?.trim();
    if s.is_empty() {
        Ok(None)
    } else if s.len() > 128 || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Err(())
    } else {
        Ok(Some(s.to_string()))
    }
}

fn bad_tag(header: &'static str) -> GatewayError {
    GatewayError::bad_request("invalid_tag", format!("The header '{header}' must be 1 to 128 printable ASCII characters."))
}


impl TollgateHttp {
    pub(super) fn new(config: Option<Rc<Config>>, context_id: u32, pause_verified: Rc<std::cell::Cell<bool>>) -> Self {
        TollgateHttp {
            config,
            context_id,
            phase: Phase::Start,
            start_ms: 0,
            headers: RequestHeaders::default(),
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
            body_bytes: 0,
            reservations: Vec::new(),
            budget_decision: BudgetDecision::Off,
            budget_headers: Vec::new(),
            denied_scope: None,
            state: None,
            pause_verified,
            translate: None,
            guardrails: None,
            answer_seed: None,
            answer_guard: None,
            cache_verdict: None,
            json_repair: false,
            json_check: None,
            fallbacks: Default::default(),
            client_body: None,
            replaced: None,
            swallowing: None,
            attempts: Vec::new(),
            fallback_call: None,
            routed_by: None,
            capture: None,
            counting: false,
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
        if self.key.is_some() && (!self.counting || e.code == GatewayError::CONTENT_BLOCKED) {
            let mut rec = self.build_record(Usage::default(), UsageSource::None, Outcome::Rejected, Some(e.code.to_string()), 0, false);
            self.emit(&mut rec);
        }
        Action::Pause
    }

    fn authenticate(&mut self, cfg: &Config) -> Result<Rc<KeyInfo>, GatewayError> {
        fn text(v: &Option<Vec<u8>>) -> Result<Option<&str>, GatewayError> {
            v.as_deref().map(|b| std::str::from_utf8(b).map_err(|_| GatewayError::invalid_key())).transpose()
        }
        let auth = text(&self.headers.authorization)?;
        let xkey = text(&self.headers.x_api_key)?.or(text(&self.headers.x_goog_api_key)?);
        // Gemini's REST convention `?key=`, on Gemini's native paths only;
        // never sent upstream (request::upstream_query).
        let xkey = xkey.or_else(|| crate::request::query_key(&self.path).filter(|_| crate::gemini::path_model(&self.path).is_some()));
        let presented = presented_key(auth, xkey).ok_or_else(GatewayError::missing_key)?;
        let hash = hash_key(presented);
        if let Some(k) = cfg.key_by_hash(&hash) {
            return Ok(k.clone());
        }
        // Several keys (a repeated Authorization header Envoy joined with a comma)?
        let several = presented.contains(',');
        if cfg.control.is_some() {
            if let Some(k) = shared_key(&hash) {
                return Ok(k);
            }
            // Until this Envoy holds every key the control service has (just
            // started, or the service is unreachable since), an unknown key
            // may be a valid one not loaded yet: retryable, not "invalid".
            if !self.state().is_some_and(|m| m.keys_synced) {
                return Err(GatewayError::keys_loading());
            }
        }
        Err(GatewayError::unknown_key(several))
    }

    fn on_request_headers(&mut self, cfg: &Config, end_of_stream: bool) -> Action {
        let Ok(path) = String::from_utf8(std::mem::take(&mut self.headers.path)) else {
            return self.reject(GatewayError::bad_request("invalid_path", "The request path is not valid UTF-8."));
        };
        self.path = path.clone();
        let endpoint = classify_path(&path);
        if endpoint == Endpoint::Other {
            return match cfg.other_paths {
                OtherPaths::Pass => {
                    self.phase = Phase::Passthrough;
                    // Never let a client pick the upstream cluster itself.
                    self.set_request_header(&cfg.cluster_header, None);
                    Action::Continue
                }
                OtherPaths::Deny => {
                    let p = crate::text::clean_field(path.split('?').next().unwrap_or(""), 128);
                    self.reject(GatewayError::not_found(format!(
                        "Tollgate serves POST /v1/chat/completions, /v1/messages, /v1/messages/count_tokens, /v1/responses, /v1/embeddings, /v1/completions and Gemini's /v1beta/models/{{model}}:generateContent, and GET /v1/models and /v1/models/{{id}}; '{p}' is not routed."
                    )))
                }
            };
        }
        let key = match self.authenticate(cfg) {
            Ok(k) => k,
            Err(e) => return self.reject(e),
        };
        self.project = key.project.clone();
        self.key = Some(key.clone());
        let method = std::mem::take(&mut self.headers.method);

        if matches!(endpoint, Endpoint::Models | Endpoint::Model) {
            if method != b"GET" {
                return self.reject(GatewayError::method_not_allowed("Use GET /v1/models."));
            }
            self.key = None; // listing models is not usage
            let anthropic = self.headers.has_anthropic_version;
            let body = match crate::request::model_path_id(&path).filter(|_| endpoint == Endpoint::Model) {
                None => route::models_document(&cfg.listable_models(&key), anthropic),
                Some(id) => match route::model_document(cfg, &key, &id, anthropic) {
                    Ok(b) => b,
                    Err(e) => return self.reject(e),
                },
            };
            host::send_response(200, &[("content-type", "application/json")], body.as_bytes());
            self.phase = Phase::Replied;
            return Action::Pause;
        }

        let api = match endpoint {
            Endpoint::Chat(api) => api,
            Endpoint::CountTokens => {
                self.counting = true;
                Api::AnthropicMessages
            }
            Endpoint::Models | Endpoint::Model | Endpoint::Other => return Action::Continue,
        };
        self.api = Some(api);
        if method != b"POST" {
            return self.reject(GatewayError::method_not_allowed("These requests must be POST."));
        }

        // Attribution tags.
        match tag_value(self.headers.project.take()) {
            Ok(Some(p)) if key.may_tag_project(&p) => self.project = p,
            Ok(Some(p)) => {
                return self.reject(GatewayError::forbidden(
                    "project_not_allowed",
                    format!("This key may not charge requests to project '{p}'."),
                ))
            }
            Ok(None) => {}
            Err(()) => return self.reject(bad_tag(HDR_PROJECT)),
        }
        match tag_value(self.headers.feature.take()) {
            Ok(v) => self.feature = v,
            Err(()) => return self.reject(bad_tag(HDR_FEATURE)),
        }
        match tag_value(self.headers.prompt_version.take()) {
            Ok(v) => self.prompt_version = v,
            Err(()) => return self.reject(bad_tag(HDR_PROMPT_VERSION)),
        }

        // Nothing of the client's credentials or Tollgate's own headers goes upstream.
        for h in std::mem::take(&mut self.headers.to_remove) {
            self.set_request_header(&h, None);
        }

        if end_of_stream {
            return self.reject(GatewayError::bad_request("missing_body", "The request has no body; send a JSON request."));
        }
        // Wait for the body: routing depends on its `model`.
        self.phase = Phase::AwaitBody;
        awaiting_body(self.context_id, self.start_ms);
        Action::Pause
    }

    /// The whole request body is buffered (end of stream, or trailers).
    fn on_request_complete(&mut self, cfg: &Config, body_size: usize) -> Action {
        let (Some(api), Some(key)) = (self.api, self.key.clone()) else {
            return Action::Continue;
        };
        // Never route wrong silently: if Envoy did not honour the pause in
        // the headers, the router already picked an upstream. Whether it
        // does is a property of the filter's configuration in this Envoy:
        // checked until one request shows it (a host call saved after that).
        if !self.pause_verified.get() {
            if host::property(&["upstream", "address"]).is_some_and(|a| !a.is_empty()) {
                log::error!("[{}] request headers went upstream before the body was read: 'allow_on_headers_stop_iteration: true' is missing on the Wasm filter", self.context_id);
                return self.reject(GatewayError::headers_already_forwarded());
            }
            self.pause_verified.set(true);
        }
        let mut body = host::buffer(REQUEST_BODY, 0, body_size);
        // A compressed body is read, and sent on, decoded.
        let decoded = match crate::decode::request_body(self.headers.content_encoding.as_deref(), &body, cfg.max_request_bytes) {
            Ok(Some(plain)) => {
                body = plain;
                true
            }
            Ok(None) => false,
            Err(e) => return self.reject(e),
        };
        // The auto router's pick for this feature (a lookup in what the control service synced).
        let routing = super::synced::routing();
        let auto = self.feature.as_deref().and_then(|f| routing.as_ref()?.features.get(f));
        // A named prompt is rendered inside planning, from the synced registry.
        let registry = super::synced::registry();
        let choice = route::Choice {
            model: None,
            auto,
            fingerprint: cfg.cache_insights && !self.counting,
            prompts: Some(registry.as_deref()),
            count_tokens: self.counting,
        };
        let mut planned = route::plan_for(cfg, &key, api, &body, &self.path, self.headers.has_anthropic_version, choice);
        let mut rendered = false;
        if let Ok(p) = planned.as_mut() {
            if let Some((b, tag)) = p.rendered.take() {
                body = b;
                self.prompt_version = Some(tag);
                rendered = true;
            }
        }
        let plan = match planned {
            Ok(p) => p,
            Err(r) => {
                self.chat = r.chat;
                self.target = r.target;
                return self.reject(r.error);
            }
        };
        self.chat = Some(plan.chat.clone());
        self.target = Some(plan.target.clone());
        self.translate = plan.translate;
        self.json_repair = plan.json_repair;
        if let (true, Some(r)) = (plan.routed, auto) {
            self.routed_by = Some(format!("auto: {}", r.reason));
        }
        let mut plan = plan;
        // Alternatives are planned from the body as the client sent it (or as rendered).
        self.fallbacks = std::mem::take(&mut plan.fallbacks).into();
        if !self.fallbacks.is_empty() {
            self.client_body = Some(body.clone());
        }
        // Guardrails look at exactly what would go upstream.
        if let Some(policy) = super::synced::guard_policy(cfg) {
            let sent = plan.body.as_deref().unwrap_or(&body);
            let who = crate::guard::Subject { key: &key.id, project: &self.project, team: &key.team, route: &plan.target.route };
            let mut placeholders = crate::guard::Placeholders::default();
            let (outcome, error) = crate::guard::decide(&policy, who, &plan.target, sent, &mut placeholders);
            self.guardrails = outcome.record;
            if let Some(e) = error {
                return self.reject(e);
            }
            if let Some(new_body) = outcome.body {
                plan.headers.retain(|(k, _)| k != "content-length");
                plan.headers.push(("content-length".to_string(), new_body.len().to_string()));
                plan.body = Some(new_body);
            }
            if policy.reads_answers() && !self.counting {
                // The answer must be readable to be scanned or restored.
                self.set_request_header("accept-encoding", None);
                let owner = crate::guard::answer::Owner {
                    key: key.id.clone(),
                    project: self.project.clone(),
                    team: key.team.clone(),
                    route: plan.target.route.clone(),
                };
                self.answer_seed = Some((policy, owner, placeholders));
            }
        }
        // Sampled for evaluations: the request as sent (after redaction), in the client's API.
        if let Some(c) = cfg.capture.as_ref().filter(|_| !self.counting) {
            let sent = plan.body.as_deref().unwrap_or(&body);
            let chat_like = matches!(api, Api::OpenAiChat | Api::AnthropicMessages);
            if chat_like && plan.translate.is_none() && !plan.chat.stream && sent.len() <= c.max_bytes
                && c.wants(self.feature.as_deref(), &plan.target.route, &self.request_id)
            {
                self.capture = std::str::from_utf8(sent).ok().map(|r| tollgate_protocol::record::Capture { request: r.to_string(), response: String::new() });
            }
        }
        // Budgets: reserve the worst case against every budgeted scope.
        if cfg.control.is_some() && !self.counting {
            if let Err(action) = self.admit(cfg, &key, plan.worst) {
                return action;
            }
        }
        if cfg.cache_insights && !self.counting {
            use crate::fingerprint::{Markers, Verdict};
            let sent = plan.body.as_deref().unwrap_or(&body);
            let markers = crate::fingerprint::markers(plan.translate.map_or(api, |d| d.upstream_api()), sent);
            let verdict = match plan.prefix.take() {
                Some(prefix) => self.compare_prefix(&key, &plan.target.upstream_model, prefix, &body),
                None => Verdict::Unknown,
            };
            if verdict != Verdict::Unknown || markers != Markers::NotApplicable {
                self.cache_verdict = Some((verdict, markers));
            }
        }
        if decoded {
            self.set_request_header("content-encoding", None);
        }
        if (rendered || decoded) && plan.body.is_none() {
            plan.headers.retain(|(k, _)| k != "content-length");
            plan.headers.push(("content-length".to_string(), body.len().to_string()));
            plan.body = Some(body);
        }
        if let Some(new_body) = &plan.body {
            host::set_buffer(REQUEST_BODY, 0, body_size, new_body);
        }
        for (name, value) in &plan.headers {
            self.set_request_header(name, Some(value));
        }
        log::debug!(
            "[{}] key={} model={} -> provider={} cluster={} upstream_model={}",
            self.context_id,
            key_ref(&key.key_hash),
            plan.chat.model,
            plan.target.provider,
            plan.cluster,
            plan.target.upstream_model
        );
        self.phase = if self.counting { Phase::Counting } else { Phase::Upstream };
        Action::Continue
    }

    /// A token count's answer: passed on as the provider sent it, with
    /// Tollgate's headers (the provider's own in that namespace removed).
    fn tag_count_answer(&self) {
        let map = host::header_map(RESPONSE_HEADERS);
        let impostors: Vec<String> = crate::hostmap::pairs(&map)
            .filter(|(n, _)| n.starts_with(b"x-tollgate-"))
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        for name in impostors {
            host::set_header(RESPONSE_HEADERS, &name, None);
        }
        self.add_target_headers();
    }

    /// The request's id, and where it went.
    fn add_target_headers(&self) {
        self.add_own_header("x-tollgate-request-id", &self.request_id);
        if let Some(t) = &self.target {
            self.add_own_header("x-tollgate-provider", &t.provider);
            self.add_own_header("x-tollgate-model", &t.upstream_model);
        }
    }

    fn build_record(
        &self,
        usage: Usage,
        source: UsageSource,
        outcome: Outcome,
        error_code: Option<String>,
        cost_micros: u64,
        priced: bool,
    ) -> UsageRecord {
        let key = self.key.as_deref();
        let end = now_ms();
        let model_served = match &self.reader {
            Reader::Stream { tracker, .. } => tracker.summary().model,
            _ => None,
        }
        .or_else(|| self.response_info.as_ref().and_then(|r| r.model.clone()));
        UsageRecord {
            v: RECORD_VERSION,
            id: self.request_id.clone(),
            client_request_id: self.client_request_id.clone(),
            session_id: self.session_id.clone(),
            ts_ms: self.start_ms,
            key_id: key.map(|k| k.id.clone()).unwrap_or_default(),
            key_hash: key.map(|k| k.key_hash.clone()).unwrap_or_default(),
            team: key.map(|k| k.team.clone()).unwrap_or_default(),
            project: self.project.clone(),
            feature: self.feature.clone(),
            prompt_version: self.prompt_version.clone(),
            user: self.chat.as_ref().and_then(|c| c.user.clone()),
            tags: key.map(|k| k.tags.clone()).unwrap_or_default(),
            api: self.api.unwrap_or(Api::OpenAiChat),
            provider: self.target.as_ref().map(|t| t.provider.clone()),
            route: self.target.as_ref().map(|t| t.route.clone()),
            model_requested: self.chat.as_ref().map(|c| c.model.clone()),
            model_upstream: self.target.as_ref().map(|t| t.upstream_model.clone()),
            model_served,
            stream: self.chat.as_ref().is_some_and(|c| c.stream),
            // What the client got (the provider's status is what is accounted).
            status: self.replaced.unwrap_or(self.status),
            outcome,
            error_code,
            usage,
            usage_source: source,
            cost_micros,
            cache_savings_micros: 0,
            priced,
            latency_ms: end.saturating_sub(self.start_ms),
            ttfb_ms: self.ttfb_ms,
            budget_scopes: match &self.denied_scope {
                Some(d) => vec![d.clone()],
                None => self.reservations.iter().map(|r| Scope::new(r.scope_type, &r.scope_id)).collect(),
            },
            budget_decision: self.budget_decision,
            guardrails: self.guardrails_for_record(),
            cache_miss: None,
            json_check: self.json_check.clone(),
            attempts: self.attempts.clone(),
            routed_by: self.routed_by.clone(),
            capture: self.capture.clone().filter(|c| !c.response.is_empty()),
        }
        .bounded()
    }

    /// Reserves `worst` against every budget of this request's scopes
    /// ([`admission::admit`]), or answers 429 (exhausted) / 503 (fail
    /// closed) and returns the action.
    fn admit(&mut self, cfg: &Config, key: &KeyInfo, worst: Amount) -> Result<(), Action> {
        if cfg.control.is_none() {
            return Ok(());
        }
        match self.admission(cfg, key, worst) {
            Decision::Unchecked { decision } => {
                self.budget_decision = decision;
                Ok(())
            }
            Decision::Admitted { reservations, headers, decision } => {
                self.reservations = reservations;
                self.budget_headers = headers;
                self.budget_decision = decision;
                Ok(())
            }
            Decision::Denied { error, headers, scope } => {
                self.budget_decision = BudgetDecision::Denied;
                log::debug!("[{}] budget refused: {}", self.context_id, scope.as_ref().map_or_else(|| "state unavailable".to_string(), |s| s.to_string()));
                self.denied_scope = scope;
                Err(self.reject_with(error, headers))
            }
        }
    }

    /// Compares the request's prefix with its scope's recent ones and puts
    /// it first among them (shared data; skipped when it is the newest
    /// already; a concurrent writer wins: the entry is a sample).
    fn compare_prefix(&self, key: &KeyInfo, model: &str, mut current: crate::fingerprint::Fingerprint, body: &[u8]) -> crate::fingerprint::Verdict {
        use crate::fingerprint as fp;
        current.scope = fp::scope(&key.id, self.feature.as_deref().unwrap_or(""), self.prompt_version.as_deref().unwrap_or(""), model);
        let bucket = fp::bucket_key(current.scope);
        let (entry, cas) = host::shared(&bucket);
        let entry = entry.unwrap_or_default();
        let recent = fp::decode(&entry);
        let verdict = match current.verdict(&recent) {
            fp::Verdict::Changed { segment, offset, lost_bytes } if segment == "messages" => {
                let (segment, offset) = fp::locate(body, 2, offset);
                fp::Verdict::Changed { segment, offset, lost_bytes }
            }
            v => v,
        };
        if !recent.first().is_some_and(|newest| current.same_as(newest)) {
            let _ = host::set_shared(&bucket, &fp::updated(&current, &entry), cas);
        }
        verdict
    }

    /// A whole answer as the client gets it — translated, captured (the
    /// provider's, before anything is restored in it), guarded, JSON-checked
    /// (and repaired on a json_repair route) — before the record is
    /// settled, which carries what was found. `None`: send `body` as it is
    /// (always so for a `compressed` one, which could not be decoded).
    fn client_answer(&mut self, cfg: &Config, body: &[u8], compressed: bool) -> Option<Vec<u8>> {
        if compressed {
            return None;
        }
        let ok = (200..300).contains(&self.status);
        let mut new = self.translate.and_then(|d| d.answer(body, self.status, now_ms() / 1000));
        if let (Some(c), true) = (self.capture.as_mut(), ok) {
            let answer = new.as_deref().unwrap_or(body);
            if answer.len() <= cfg.capture.as_ref().map_or(0, |k| k.max_bytes) {
                c.response = String::from_utf8_lossy(answer).into_owned();
            }
        }
        if let Some(g) = self.answer_guard.as_mut() {
            if let Some(guarded) = g.json(new.as_deref().unwrap_or(body)) {
                new = Some(guarded);
            }
        }
        if let (Some(ask), true) = (self.chat.as_ref().and_then(|c| c.json.clone()), ok) {
            let (checked, fixed) = crate::jsonfix::answer(new.as_deref().unwrap_or(body), &ask, self.json_repair);
            if fixed.is_some() {
                new = fixed;
            }
            self.json_check = checked.map(|c| tollgate_protocol::record::JsonCheck { valid: c.valid, repaired: c.repaired, error: c.error });
        }
        new
    }

    /// Sends `e` to the client in place of the provider's answer, whose
    /// headers are still held; the answer is read on for its usage and its
    /// bytes dropped ([`Self::swallow_body`]).
    fn replace_answer(&mut self, e: GatewayError) {
        log::warn!("[{}] the provider's answer is replaced by a {} {}", self.context_id, e.status, e.code);
        let body = e.body().into_bytes();
        host::set_header(RESPONSE_HEADERS, ":status", Some(&e.status.to_string()));
        host::set_header(RESPONSE_HEADERS, "content-type", Some("application/json"));
        host::set_header(RESPONSE_HEADERS, "content-encoding", None);
        host::set_header(RESPONSE_HEADERS, "content-length", Some(&body.len().to_string()));
        if let Some((name, value)) = e.retry_header(self.status) {
            host::set_header(RESPONSE_HEADERS, name, Some(value));
        }
        self.replaced = Some(e.status);
        self.swallowing = Some(body);
    }

    /// For an answer replaced by an error: the error's body in place of the
    /// first chunk, nothing in place of the rest.
    fn swallow_body(&mut self, body_size: usize) {
        if let Some(body) = self.swallowing.as_mut() {
            host::set_buffer(RESPONSE_BODY, 0, body_size, &std::mem::take(body));
        }
    }

    /// What this request asked for that decides how its answer is read.
    fn wants(&self, cfg: &Config) -> reader::Wants {
        let chat = self.chat.as_ref();
        reader::Wants {
            api: self.response_api(),
            translate: self.translate,
            guarded: self.answer_guard.is_some(),
            cost_headers: cfg.cost_headers,
            force_stream_usage: cfg.force_stream_usage,
            max_response_bytes: cfg.max_response_bytes,
            client_stream: chat.is_some_and(|c| c.stream),
            client_include_usage: chat.is_some_and(|c| c.client_include_usage),
            json_checked: chat.is_some_and(|c| c.json.is_some()),
            captured: self.capture.is_some(),
            now_s: now_ms() / 1000,
        }
    }

    /// The answer is guarded when the policy reads answers and the answer
    /// is one a guard can read. (Made whether the answer is compressed or
    /// not: a compressed answer the filter rewrites is decoded for it.)
    fn start_answer_guard(&mut self, head: &ResponseHead) {
        if let (true, Some((policy, owner, placeholders))) = (head.guardable(), self.answer_seed.take()) {
            self.answer_guard = crate::guard::answer::AnswerGuard::new(policy, owner, placeholders, self.api.unwrap_or(Api::OpenAiChat));
        }
    }

    /// The request's finding with the answer's added.
    fn guardrails_for_record(&self) -> Option<tollgate_protocol::record::Guardrails> {
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

    fn answer_seed_version(&self) -> String {
        self.answer_guard.as_ref().map(|g| g.policy_version().to_string()).unwrap_or_default()
    }

    /// The API the provider answers in (Anthropic's when translating).
    fn response_api(&self) -> Api {
        self.translate.map_or(self.api.unwrap_or(Api::OpenAiChat), |d| d.upstream_api())
    }

    /// The state for this request: read from shared data once, then reused.
    fn state(&mut self) -> Option<Meta> {
        *self.state.get_or_insert_with(current_state)
    }

    /// Accounts for the response and emits the usage record (once).
    fn settle(&mut self, termination: Termination) -> Option<UsageRecord> {
        if self.phase != Phase::Upstream {
            return None;
        }
        let cfg = self.config.clone()?;
        let target = self.target.as_ref()?;
        let (stream, body_note, body_bytes) = self.reader.observed().unwrap_or((None, self.body_note, self.body_bytes));
        let observed = Observed {
            status: self.status,
            upstream_responded: self.upstream_responded,
            termination,
            estimated_input_tokens: self.chat.as_ref().map(|c| c.estimated_input_tokens).unwrap_or(0),
            json: self.response_info.clone(),
            stream,
            body_note,
            body_bytes,
        };
        let (usage, source, outcome, error) = account(&observed);
        let price = cfg.price(&target.provider, &target.upstream_model);
        let (cost, savings) = price.map(|p| p.cost_and_savings(&usage)).unwrap_or((0, 0));
        let mut rec = self.build_record(usage, source, outcome, error, cost, price.is_some());
        rec.cache_savings_micros = savings;
        if let (Some((verdict, marker)), true) = (&self.cache_verdict, outcome == Outcome::Ok) {
            rec.cache_miss = crate::fingerprint::explain(verdict, *marker, &rec.usage, price.as_ref());
        }
        let actual = Amount { micros: rec.cost_micros, tokens: rec.usage.budget_tokens() };
        super::with_budget_local(|u| admission::settle(&HostCounters, u, &self.reservations, actual));
        self.emit(&mut rec);
        Some(rec)
    }

    /// (Takes the capture out of `rec`: it leaves with the shipped record only.)
    fn emit(&mut self, rec: &mut UsageRecord) {
        self.phase = Phase::Recorded;
        let Some(cfg) = self.config.clone() else { return };
        // A capture (prompt and answer text) goes to the control service only: never to a log.
        let capture = rec.capture.take();
        // Serialised only for what reads it: the log line, the access log's
        // whole-record field, the control service.
        let logged = cfg.log_records || cfg.access_log_fields.contains(&crate::access_log::Field::Usage);
        let json = if logged { serde_json::to_string(&rec).unwrap_or_default() } else { String::new() };
        if cfg.log_records {
            log::info!("tollgate.usage {json}");
        }
        if cfg.control.is_some() {
            match capture {
                Some(c) => {
                    rec.capture = Some(c);
                    let shipped = serde_json::to_string(&*rec).unwrap_or_default();
                    rec.capture = None;
                    enqueue_record(self, shipped.as_bytes());
                }
                None if logged => enqueue_record(self, json.as_bytes()),
                None => enqueue_record(self, serde_json::to_string(&rec).unwrap_or_default().as_bytes()),
            }
        }
        // Filter state for access logs (`access_log_fields`): %FILTER_STATE(wasm.tollgate.usage:PLAIN)% and flat fields.
        for f in &cfg.access_log_fields {
            host::set_property(&[f.property()], f.value(rec, &json).as_bytes());
        }
        if cfg.metrics {
            record_metrics(rec);
        }
    }

    fn add_cost_headers(&self, rec: &UsageRecord) {
        for (k, v) in cost_header_values(rec) {
            self.add_own_header(k, &v);
        }
    }

    fn termination_from_host(&self) -> Termination {
        if self.response_complete {
            return Termination::Complete;
        }
        let details = host::property(&["response", "code_details"]).unwrap_or_default();
        if details.windows(10).any(|w| w == b"downstream") {
            Termination::DownstreamReset
        } else {
            Termination::UpstreamReset
        }
    }

    /// The JSON body is complete: read it and settle.
    fn finish_json(&mut self) -> Option<UsageRecord> {
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
        self.headers = RequestHeaders::read(crate::hostmap::pairs(&map), &cfg.cluster_header);
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
        if self.phase == Phase::Counting {
            self.tag_count_answer();
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

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
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
                let body = host::buffer(RESPONSE_BODY, 0, body_size);
                let held = reader::held(inflater, body, end_of_stream, self.status, &self.wants(&cfg));
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
                    let new = self.client_answer(&cfg, &body, compressed);
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
            Reader::Json { .. } => {
                let chunk = host::buffer(RESPONSE_BODY, 0, body_size);
                self.reader.feed_json(&chunk);
                self.swallow_body(body_size);
                if end_of_stream {
                    self.finish_json();
                }
                Action::Continue
            }
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

    fn on_log(&mut self) {
        body_arrived(self.context_id);
        report_vm_memory();
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
}
