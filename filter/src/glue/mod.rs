//! The proxy-wasm glue: maps Envoy's callbacks onto the pure logic.
//!
//! Root context: parses and validates the configuration once (`on_configure`
//! returning false makes Envoy refuse the plugin). HTTP context: one per
//! request; every failure path ends in a local reply or a pass-through, never
//! a panic (a panic kills the VM and every request on the worker fails).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};

use crate::budget::{self, Amount, Check, Counter};
use crate::config::{Config, FailureMode, KeyInfo, OtherPaths, Provider, ProviderFormat, UnpricedModels};
use crate::state::{decode_meta, encode_meta, IngestAck, StateDoc, StateView, STATE_KEY, STATE_META_KEY, USAGE_QUEUE};
use crate::errors::GatewayError;
use crate::keys::{hash_key, key_ref, presented_key};
use crate::record::{account, Observed, Outcome, Termination, UsageRecord, UsageSource, RECORD_VERSION};
use crate::request::{classify_path, parse_chat, query_of, Api, ChatRequest, Endpoint};
use crate::usage::{parse_json_response, ResponseInfo, StreamTracker, Usage};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TollgateRoot { config: None, service: None }) });
}}

const HDR_PROJECT: &str = "x-tollgate-project";
const HDR_FEATURE: &str = "x-tollgate-feature";
const HDR_PROMPT_VERSION: &str = "x-tollgate-prompt-version";

/// One root context type for both roles: the HTTP filter (root_id
/// `tollgate`) and the per-Envoy background service (a singleton
/// `WasmService` whose root_id ends in `_service`).
struct TollgateRoot {
    config: Option<Rc<Config>>,
    service: Option<Service>,
}

impl Context for TollgateRoot {
    fn on_http_call_response(&mut self, token: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(mut svc) = self.service.take() else { return };
        svc.on_response(self, token, body_size);
        self.service = Some(svc);
    }
}

impl RootContext for TollgateRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let c = match Config::from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let root_id = self
            .get_property(vec!["plugin_root_id"])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if root_id.ends_with("_service") {
            let Some(ctl) = &c.control else {
                log::error!("invalid tollgate configuration: field 'control': the background service ({root_id}) needs a 'control' section");
                return false;
            };
            let node = ctl.node.clone().unwrap_or_else(|| {
                self.get_property(vec!["node", "id"])
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| format!("envoy-{}", now_ms(self)))
            });
            let queue = self.register_shared_queue(USAGE_QUEUE);
            let tick = ctl.flush_ms.min(ctl.poll_ms).min(250);
            self.set_tick_period(Duration::from_millis(tick));
            log::info!("service: node '{node}', control cluster '{}', poll every {} ms", ctl.cluster, ctl.poll_ms);
            self.service = Some(Service::new(node, queue, ctl.poll_ms));
        } else {
            log::info!(
                "configured: {} keys, {} providers, max_request_bytes={}, control={}",
                c.keys.len(),
                c.providers.len(),
                c.max_request_bytes,
                c.control.as_ref().map(|c| c.cluster.as_str()).unwrap_or("none")
            );
        }
        self.config = Some(Rc::new(c));
        true
    }

    fn on_tick(&mut self) {
        let (Some(mut svc), Some(cfg)) = (self.service.take(), self.config.clone()) else { return };
        svc.tick(self, &cfg);
        self.service = Some(svc);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Must never return None (the SDK would panic).
        Some(Box::new(TollgateHttp::new(self.config.clone(), context_id)))
    }
}

/// The request headers the filter looks at, read with one host call.
#[derive(Default)]
struct RequestHeaders {
    path: String,
    method: String,
    authorization: Option<String>,
    x_api_key: Option<String>,
    request_id: Option<String>,
    project: Option<String>,
    feature: Option<String>,
    prompt_version: Option<String>,
    has_anthropic_version: bool,
    /// Headers present that must not go upstream.
    to_remove: Vec<String>,
}

impl RequestHeaders {
    fn read(all: Vec<(String, String)>, cluster_header: &str) -> Self {
        let mut h = RequestHeaders::default();
        for (name, value) in all {
            match name.as_str() {
                ":path" => h.path = value,
                ":method" => h.method = value,
                "authorization" => {
                    h.authorization = Some(value);
                    h.to_remove.push(name);
                }
                "x-api-key" => {
                    h.x_api_key = Some(value);
                    h.to_remove.push(name);
                }
                "x-request-id" => h.request_id = Some(value),
                HDR_PROJECT => {
                    h.project = Some(value);
                    h.to_remove.push(name);
                }
                HDR_FEATURE => {
                    h.feature = Some(value);
                    h.to_remove.push(name);
                }
                HDR_PROMPT_VERSION => {
                    h.prompt_version = Some(value);
                    h.to_remove.push(name);
                }
                "anthropic-version" => h.has_anthropic_version = true,
                // The response must be readable (uncompressed) to count its usage.
                "accept-encoding" => h.to_remove.push(name),
                n if n == cluster_header => h.to_remove.push(name),
                _ => {}
            }
        }
        h
    }
}

#[derive(Default)]
struct Target {
    provider: String,
    route: String,
    upstream_model: String,
}

/// Per-request state.
struct TollgateHttp {
    config: Option<Rc<Config>>,
    context_id: u32,
    start_ms: u64,
    headers: RequestHeaders,
    request_id: String,
    /// The request is not ours (other paths in `pass` mode): touch nothing.
    passthrough: bool,
    api: Option<Api>,
    key: Option<Rc<KeyInfo>>,
    project: String,
    feature: Option<String>,
    prompt_version: Option<String>,
    chat: Option<ChatRequest>,
    target: Option<Target>,
    /// The gateway answered itself (local reply): the response is ours.
    replied: bool,
    status: u16,
    ttfb_ms: Option<u64>,
    tracker: Option<StreamTracker>,
    /// Non-streamed response: headers held until the body is complete.
    holding: bool,
    json_body: Vec<u8>,
    json_too_big: bool,
    response_info: Option<ResponseInfo>,
    response_complete: bool,
    upstream_responded: bool,
    recorded: bool,
    /// Budget reservations taken for this request: (scope type, scope id, amount).
    reservations: Vec<(crate::state::ScopeType, String, Amount)>,
    budget_decision: &'static str,
    budget_headers: Vec<(String, String)>,
    /// The scope whose budget refused this request.
    denied_scope: Option<String>,
    /// The control service's state as this request saw it (read once).
    state: Option<(Option<Rc<StateView>>, Option<u64>)>,
}

impl Context for TollgateHttp {}

fn now_ms(ctx: &dyn Context) -> u64 {
    ctx.get_current_time()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A tag header's value: trimmed, at most 128 visible ASCII characters.
fn tag_value(v: Option<String>) -> Result<Option<String>, ()> {
    match v {
        None => Ok(None),
        Some(s) => {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else if s.len() > 128 || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                Err(())
            } else {
                Ok(Some(s.to_string()))
            }
        }
    }
}

impl TollgateHttp {
    fn new(config: Option<Rc<Config>>, context_id: u32) -> Self {
        TollgateHttp {
            config,
            context_id,
            start_ms: 0,
            headers: RequestHeaders::default(),
            request_id: String::new(),
            passthrough: false,
            api: None,
            key: None,
            project: String::new(),
            feature: None,
            prompt_version: None,
            chat: None,
            target: None,
            replied: false,
            status: 0,
            ttfb_ms: None,
            tracker: None,
            holding: false,
            json_body: Vec::new(),
            json_too_big: false,
            response_info: None,
            response_complete: false,
            upstream_responded: false,
            recorded: false,
            reservations: Vec::new(),
            budget_decision: "off",
            budget_headers: Vec::new(),
            denied_scope: None,
            state: None,
        }
    }

    /// Sends a local error reply; records it when the caller is known.
    fn reject(&mut self, e: GatewayError) -> Action {
        self.reject_with(e, Vec::new())
    }

    fn reject_with(&mut self, e: GatewayError, extra: Vec<(String, String)>) -> Action {
        self.replied = true;
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
        self.send_http_response(e.status as u32, headers, Some(body.as_bytes()));
        if self.key.is_some() {
            let rec = self.build_record(Usage::default(), UsageSource::None, Outcome::Rejected, Some(e.code.to_string()), 0, false);
            self.emit(rec);
        }
        Action::Pause
    }

    fn authenticate(&mut self, cfg: &Config) -> Result<Rc<KeyInfo>, GatewayError> {
        let h = &self.headers;
        let presented =
            presented_key(h.authorization.as_deref(), h.x_api_key.as_deref()).ok_or_else(GatewayError::missing_key)?;
        let hash = hash_key(presented);
        if let Some(k) = cfg.key_by_hash(&hash) {
            return Ok(k.clone());
        }
        if cfg.control.is_some() {
            if let Some(view) = self.state().0 {
                if let Some(k) = view.keys.get(&hash) {
                    return Ok(k.clone());
                }
            }
        }
        Err(GatewayError::invalid_key())
    }

    fn on_request_headers(&mut self, cfg: &Config, end_of_stream: bool) -> Action {
        let path = self.headers.path.clone();
        let endpoint = classify_path(&path);
        if endpoint == Endpoint::Other {
            return match cfg.other_paths {
                OtherPaths::Pass => {
                    self.passthrough = true;
                    // Never let a client pick the upstream cluster itself.
                    self.set_http_request_header(&cfg.cluster_header, None);
                    Action::Continue
                }
                OtherPaths::Deny => {
                    let p = path.split('?').next().unwrap_or("").to_string();
                    self.reject(GatewayError::not_found(format!(
                        "Tollgate serves POST /v1/chat/completions, POST /v1/messages and GET /v1/models; '{p}' is not routed."
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
        let method = self.headers.method.clone();

        if endpoint == Endpoint::Models {
            if method != "GET" {
                return self.reject(GatewayError::method_not_allowed("Use GET /v1/models."));
            }
            self.replied = true;
            self.key = None; // listing models is not usage
            let data: Vec<serde_json::Value> = cfg
                .listable_models(&key)
                .into_iter()
                .map(|(id, owner)| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
                .collect();
            let body = serde_json::json!({"object": "list", "data": data}).to_string();
            self.send_http_response(200, vec![("content-type", "application/json")], Some(body.as_bytes()));
            return Action::Pause;
        }

        let Endpoint::Chat(api) = endpoint else {
            return Action::Continue;
        };
        self.api = Some(api);
        if method != "POST" {
            return self.reject(GatewayError::method_not_allowed("Chat requests must be POST."));
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
            self.set_http_request_header(&h, None);
        }

        if end_of_stream {
            return self.reject(GatewayError::bad_request("missing_body", "The request has no body; send a JSON chat request."));
        }
        // Wait for the body: routing depends on its `model`.
        Action::Pause
    }

    fn on_request_body(&mut self, cfg: &Config, body_size: usize, end_of_stream: bool) -> Action {
        if body_size > cfg.max_request_bytes {
            return self.reject(GatewayError::too_large(cfg.max_request_bytes));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let (Some(api), Some(key)) = (self.api, self.key.clone()) else {
            return Action::Continue;
        };
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let parsed = match parse_chat(api, &body) {
            Ok(p) => p,
            Err(e) => return self.reject(e),
        };
        let model = parsed.request.model.clone();
        self.chat = Some(parsed.request.clone());
        if !key.may_use(&model) {
            return self.reject(
                GatewayError::forbidden("model_not_allowed", format!("This key may not use the model '{model}'."))
                    .with_param("model"),
            );
        }
        let Some((resolved, upstream_model)) = cfg.resolve(&model) else {
            return self.reject(GatewayError::unknown_model(&model, &cfg.models_for(&key)));
        };
        let provider: &Provider = resolved.provider;
        self.target = Some(Target {
            provider: provider.name.clone(),
            route: resolved.route.to_string(),
            upstream_model: upstream_model.clone(),
        });
        if provider.format.api() != api {
            let (name, path) = match provider.format {
                ProviderFormat::Openai => ("OpenAI chat completions", "/v1/chat/completions"),
                ProviderFormat::Anthropic => ("Anthropic messages", "/v1/messages"),
            };
            return self.reject(
                GatewayError::bad_request(
                    "wrong_api_for_model",
                    format!("The model '{model}' is served by provider '{}', which speaks the {name} API; send this request to {path}.", provider.name),
                )
                .with_param("model"),
            );
        }
        if cfg.unpriced_models == UnpricedModels::Deny && cfg.price(&provider.name, &upstream_model).is_none() {
            return self.reject(
                GatewayError::bad_request(
                    "model_not_priced",
                    format!("The model '{model}' has no price configured, and this gateway refuses unpriced models."),
                )
                .with_param("model"),
            );
        }

        // Budgets: reserve the worst case against every budgeted scope.
        if cfg.control.is_some() {
            let chat = &parsed.request;
            let out = chat.max_tokens.unwrap_or(cfg.default_max_tokens);
            let worst_usage = crate::usage::Usage {
                input_tokens: chat.estimated_input_tokens,
                output_tokens: out,
                ..Default::default()
            };
            let worst = Amount {
                micros: cfg.price(&provider.name, &upstream_model).map(|p| p.cost_micros(&worst_usage)).unwrap_or(0),
                tokens: chat.estimated_input_tokens.saturating_add(out),
            };
            if let Err(action) = self.admit(&cfg, &key, worst) {
                return action;
            }
        }

        if let Some(new_body) = parsed.rewrite(&upstream_model, cfg.force_stream_usage) {
            self.set_http_request_body(0, body_size, &new_body);
            self.set_http_request_header("content-length", Some(&new_body.len().to_string()));
        }
        let upstream_path =
            format!("{}{}{}", provider.path_prefix, api.upstream_suffix(), query_of(&self.headers.path));
        self.set_http_request_header(":path", Some(&upstream_path));
        self.set_http_request_header(":authority", Some(&provider.host));
        self.set_http_request_header(&cfg.cluster_header, Some(&provider.cluster));
        match provider.format {
            ProviderFormat::Openai => {
                if let Some(k) = &provider.api_key {
                    self.set_http_request_header("authorization", Some(&format!("Bearer {}", k.expose())));
                }
            }
            ProviderFormat::Anthropic => {
                if let Some(k) = &provider.api_key {
                    self.set_http_request_header("x-api-key", Some(k.expose()));
                }
                if !self.headers.has_anthropic_version {
                    self.set_http_request_header("anthropic-version", Some(&provider.anthropic_version));
                }
            }
        }
        log::debug!(
            "[{}] key={} model={} -> provider={} cluster={} upstream_model={}",
            self.context_id,
            key_ref(&key.key_hash),
            model,
            provider.name,
            provider.cluster,
            upstream_model
        );
        Action::Continue
    }

    fn tracked(&self) -> bool {
        !self.passthrough && !self.replied && self.target.is_some()
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
        let end = now_ms(self);
        UsageRecord {
            v: RECORD_VERSION,
            id: self.request_id.clone(),
            ts_ms: self.start_ms,
            key_id: key.map(|k| k.id.clone()).unwrap_or_default(),
            key_hash: key.map(|k| k.key_hash.clone()).unwrap_or_default(),
            team: key.map(|k| k.team.clone()).unwrap_or_default(),
            project: self.project.clone(),
            feature: self.feature.clone(),
            prompt_version: self.prompt_version.clone(),
            user: self.chat.as_ref().and_then(|c| c.user.clone()),
            tags: key.map(|k| k.tags.clone()).unwrap_or_else(BTreeMap::new),
            api: self.api.unwrap_or(Api::OpenAiChat),
            provider: self.target.as_ref().map(|t| t.provider.clone()),
            route: self.target.as_ref().map(|t| t.route.clone()),
            model_requested: self.chat.as_ref().map(|c| c.model.clone()),
            model_upstream: self.target.as_ref().map(|t| t.upstream_model.clone()),
            model_served: self
                .tracker
                .as_ref()
                .and_then(|t| t.summary().model)
                .or_else(|| self.response_info.as_ref().and_then(|r| r.model.clone())),
            stream: self.chat.as_ref().is_some_and(|c| c.stream),
            status: self.status,
            outcome,
            error_code,
            usage,
            usage_source: source,
            cost_micros,
            priced,
            latency_ms: end.saturating_sub(self.start_ms),
            ttfb_ms: self.ttfb_ms,
            budget_scopes: match &self.denied_scope {
                Some(d) => vec![d.clone()],
                None => self.reservations.iter().map(|(t, id, _)| budget::scope_label(*t, id)).collect(),
            },
            budget_decision: self.budget_decision.to_string(),
        }
    }

    /// Reserves `worst` against every budget of this request's scopes, or
    /// answers 429 (exhausted) / 503 (fail closed) and returns the action.
    fn admit(&mut self, cfg: &Config, key: &KeyInfo, worst: Amount) -> Result<(), Action> {
        let Some(ctl) = &cfg.control else { return Ok(()) };
        let (view, stale) = self.state();
        let now = now_ms(self);
        let stale = stale.is_none_or(|ok_ms| now.saturating_sub(ok_ms) > ctl.stale_after_ms);
        if stale {
            match ctl.failure_mode {
                FailureMode::Open => {
                    self.budget_decision = "unenforced";
                    return Ok(());
                }
                FailureMode::Closed => {
                    self.budget_decision = "denied";
                    return Err(self.reject(GatewayError::budget_state_unavailable()));
                }
                FailureMode::Local => {}
            }
        }
        let Some(view) = view else { return Ok(()) };
        let budgets: Vec<crate::state::BudgetDoc> =
            view.budgets_for(&key.id, &key.team, &self.project).into_iter().cloned().collect();
        if budgets.is_empty() {
            return Ok(());
        }
        let mut soft: Option<(String, u64)> = None;
        let mut remaining_m: Option<u64> = None;
        let mut remaining_t: Option<u64> = None;
        for b in &budgets {
            let ckey = budget::counter_key(b.scope_type, &b.scope_id);
            let mut verdict = None;
            let res = update_counter(self, &ckey, |c| {
                let v = budget::check(b, c, worst);
                let ok = matches!(v, Check::Allow { .. });
                if ok {
                    c.reserve(worst);
                }
                verdict = Some((v, *c));
                ok
            });
            match (res, verdict) {
                (Ok(_), Some((Check::Allow { soft: s, remaining }, c))) => {
                    self.reservations.push((b.scope_type, b.scope_id.clone(), worst));
                    if s {
                        let used = b.used_micros.saturating_add(c.pending_micros);
                        let pct = b.limit_micros.filter(|l| *l > 0).map(|l| used.saturating_mul(100) / l).unwrap_or_else(|| {
                            let used_t = b.used_tokens.saturating_add(c.pending_tokens);
                            b.limit_tokens.filter(|l| *l > 0).map(|l| used_t.saturating_mul(100) / l).unwrap_or(0)
                        });
                        soft = Some((budget::scope_label(b.scope_type, &b.scope_id), pct));
                    }
                    remaining_m = min_opt(remaining_m, remaining.micros);
                    remaining_t = min_opt(remaining_t, remaining.tokens);
                }
                (_, Some((_, c))) => {
                    self.release_reservations();
                    self.budget_decision = "denied";
                    self.denied_scope = Some(budget::scope_label(b.scope_type, &b.scope_id));
                    let (e, headers) = budget::exhausted_error(b, &c, now);
                    log::debug!("[{}] budget exhausted for {}", self.context_id, budget::scope_label(b.scope_type, &b.scope_id));
                    return Err(self.reject_with(e, headers));
                }
                (_, None) => {
                    // The counter could not be updated (contention): treat as unknown, keep serving.
                    log::warn!("budget counter {ckey} busy; request admitted without reservation");
                }
            }
        }
        self.budget_decision = if soft.is_some() { "soft" } else { "ok" };
        if let Some((label, pct)) = soft {
            self.budget_headers.push(("x-tollgate-budget-warning".into(), format!("{label} at {pct}% of its budget")));
        }
        if let Some(m) = remaining_m {
            self.budget_headers.push(("x-tollgate-budget-remaining-micros".into(), m.saturating_sub(worst.micros).to_string()));
        }
        if let Some(t) = remaining_t {
            self.budget_headers.push(("x-tollgate-budget-remaining-tokens".into(), t.saturating_sub(worst.tokens).to_string()));
        }
        Ok(())
    }

    /// The state for this request: read from shared data once, then reused.
    fn state(&mut self) -> (Option<Rc<StateView>>, Option<u64>) {
        if self.state.is_none() {
            self.state = Some(current_state(self));
        }
        self.state.clone().unwrap_or((None, None))
    }

    fn release_reservations(&mut self) {
        for (t, id, amount) in std::mem::take(&mut self.reservations) {
            let _ = update_counter(self, &budget::counter_key(t, &id), |c| {
                c.settle(amount, Amount::default());
                true
            });
        }
    }

    /// Replaces the reservations with the real amount.
    fn settle_reservations(&mut self, usage: &crate::usage::Usage, cost_micros: u64) {
        let actual = Amount { micros: cost_micros, tokens: usage.input_tokens.saturating_add(usage.output_tokens) };
        for (t, id, amount) in &self.reservations {
            let (t, amount) = (*t, *amount);
            let _ = update_counter(self, &budget::counter_key(t, id), |c| {
                c.settle(amount, actual);
                true
            });
        }
    }

    /// Accounts for the response and emits the usage record (once).
    fn settle(&mut self, termination: Termination) -> Option<UsageRecord> {
        if self.recorded || !self.tracked() {
            return None;
        }
        let cfg = self.config.clone()?;
        let target = self.target.as_ref()?;
        let observed = Observed {
            status: self.status,
            upstream_responded: self.upstream_responded,
            termination,
            estimated_input_tokens: self.chat.as_ref().map(|c| c.estimated_input_tokens).unwrap_or(0),
            json: self.response_info.clone(),
            stream: self.tracker.as_ref().map(|t| t.summary()),
        };
        let (usage, source, outcome, error) = account(&observed);
        let price = cfg.price(&target.provider, &target.upstream_model);
        let cost = price.map(|p| p.cost_micros(&usage)).unwrap_or(0);
        self.settle_reservations(&usage, cost);
        let rec = self.build_record(usage, source, outcome, error, cost, price.is_some());
        self.emit(rec.clone());
        Some(rec)
    }

    fn emit(&mut self, rec: UsageRecord) {
        self.recorded = true;
        let json = serde_json::to_string(&rec).unwrap_or_default();
        if self.config.as_ref().is_some_and(|c| c.log_records) {
            log::info!("tollgate.usage {json}");
        }
        if self.config.as_ref().is_some_and(|c| c.control.is_some()) {
            enqueue_record(self, json.as_bytes());
        }
        // Filter state for access logs: %FILTER_STATE(wasm.tollgate.usage:PLAIN)% and flat fields.
        self.set_property(vec!["tollgate.usage"], Some(json.as_bytes()));
        let fields: [(&str, String); 10] = [
            ("tollgate.budget_decision", rec.budget_decision.clone()),
            ("tollgate.team", rec.team.clone()),
            ("tollgate.project", rec.project.clone()),
            ("tollgate.key_id", rec.key_id.clone()),
            ("tollgate.model", rec.model_upstream.clone().unwrap_or_default()),
            ("tollgate.provider", rec.provider.clone().unwrap_or_default()),
            ("tollgate.cost_micros", rec.cost_micros.to_string()),
            ("tollgate.input_tokens", rec.usage.input_tokens.to_string()),
            ("tollgate.output_tokens", rec.usage.output_tokens.to_string()),
            ("tollgate.outcome", serde_json::to_string(&rec.outcome).unwrap_or_default().trim_matches('"').to_string()),
        ];
        for (k, v) in fields {
            self.set_property(vec![k], Some(v.as_bytes()));
        }
        if self.config.as_ref().is_some_and(|c| c.metrics) {
            record_metrics(&rec);
        }
    }

    fn add_cost_headers(&self, rec: &UsageRecord) {
        let u = &rec.usage;
        // Always: cost, input, cached input, output. Only when non-zero:
        // cache writes and reasoning tokens (each header is a host call).
        for (k, v, always) in [
            ("x-tollgate-cost-micros", rec.cost_micros, true),
            ("x-tollgate-input-tokens", u.input_tokens, true),
            ("x-tollgate-cached-input-tokens", u.cached_input_tokens, true),
            ("x-tollgate-output-tokens", u.output_tokens, true),
            ("x-tollgate-cache-write-tokens", u.cache_write_tokens, false),
            ("x-tollgate-reasoning-tokens", u.reasoning_tokens, false),
        ] {
            if always || v > 0 {
                self.set_http_response_header(k, Some(&v.to_string()));
            }
        }
    }

    fn termination_from_host(&self) -> Termination {
        if self.response_complete {
            return Termination::Complete;
        }
        let details = self
            .get_property(vec!["response", "code_details"])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if details.contains("downstream") {
            Termination::DownstreamReset
        } else {
            Termination::UpstreamReset
        }
    }
}

fn bad_tag(header: &'static str) -> GatewayError {
    GatewayError::bad_request("invalid_tag", format!("The header '{header}' must be 1 to 128 printable ASCII characters."))
}

impl HttpContext for TollgateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.start_ms = now_ms(self);
        let Some(cfg) = self.config.clone() else {
            return self.reject(GatewayError::internal("The Tollgate filter has no valid configuration."));
        };
        self.headers = RequestHeaders::read(self.get_http_request_headers(), &cfg.cluster_header);
        self.request_id = self
            .headers
            .request_id
            .take()
            .filter(|s| !s.is_empty() && s.len() <= 128)
            .unwrap_or_else(|| format!("tg-{}-{}", self.start_ms, self.context_id));
        self.on_request_headers(&cfg, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.passthrough || self.replied {
            return Action::Continue;
        }
        let Some(cfg) = self.config.clone() else {
            return Action::Continue;
        };
        self.on_request_body(&cfg, body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !self.tracked() {
            return Action::Continue;
        }
        // "via_upstream": the provider answered; anything else is Envoy's own reply.
        let via_upstream = self
            .get_property(vec!["response", "code_details"])
            .is_some_and(|d| d.as_slice() == b"via_upstream");
        if via_upstream {
            self.upstream_responded = true;
            self.ttfb_ms = Some(now_ms(self).saturating_sub(self.start_ms));
        }
        let mut content_type = String::new();
        let mut has_content_length = false;
        for (name, value) in self.get_http_response_headers() {
            match name.as_str() {
                ":status" => self.status = value.parse().unwrap_or(0),
                "content-type" => content_type = value,
                "content-length" => has_content_length = true,
                _ => {}
            }
        }
        self.set_http_response_header("x-tollgate-request-id", Some(&self.request_id));
        for (k, v) in &self.budget_headers {
            self.set_http_response_header(k, Some(v));
        }
        if let Some(t) = &self.target {
            self.set_http_response_header("x-tollgate-provider", Some(&t.provider));
            self.set_http_response_header("x-tollgate-model", Some(&t.upstream_model));
        }
        let cfg = self.config.clone();
        if end_of_stream {
            self.response_complete = true;
            if let Some(rec) = self.settle(Termination::Complete) {
                if cfg.as_ref().is_some_and(|c| c.cost_headers) {
                    self.add_cost_headers(&rec);
                }
            }
            return Action::Continue;
        }
        if content_type.starts_with("text/event-stream") {
            let chat = self.chat.as_ref();
            let strip = cfg.as_ref().is_some_and(|c| c.force_stream_usage)
                && chat.is_some_and(|c| c.stream && !c.client_include_usage);
            let tracker = StreamTracker::new(self.api.unwrap_or(Api::OpenAiChat), strip);
            if tracker.rewrites() && has_content_length {
                self.set_http_response_header("content-length", None);
            }
            self.tracker = Some(tracker);
            return Action::Continue;
        }
        if cfg.as_ref().is_some_and(|c| c.cost_headers) {
            // Hold the headers until the body (and so the cost) is known.
            self.holding = true;
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.tracked() || self.recorded {
            return Action::Continue;
        }
        let Some(cfg) = self.config.clone() else {
            return Action::Continue;
        };
        if let Some(mut tracker) = self.tracker.take() {
            let chunk = self.get_http_response_body(0, body_size).unwrap_or_default();
            let mut out = tracker.push(&chunk);
            if end_of_stream {
                out.extend_from_slice(&tracker.finish());
            }
            if tracker.rewrites() {
                self.set_http_response_body(0, body_size, &out);
            }
            self.tracker = Some(tracker);
            if end_of_stream {
                self.response_complete = true;
                self.settle(Termination::Complete);
            }
            return Action::Continue;
        }

        // Non-streamed body.
        if self.holding {
            if body_size > cfg.max_response_bytes {
                // Too big to hold: let it go without cost headers, stop reading.
                self.holding = false;
                self.json_too_big = true;
                return Action::Continue;
            }
            if !end_of_stream {
                return Action::Pause;
            }
            let body = self.get_http_response_body(0, body_size).unwrap_or_default();
            self.response_info = Some(parse_json_response(self.api.unwrap_or(Api::OpenAiChat), &body));
            self.response_complete = true;
            self.holding = false;
            if let Some(rec) = self.settle(Termination::Complete) {
                self.add_cost_headers(&rec);
            }
            return Action::Continue;
        }
        if !self.json_too_big {
            let chunk = self.get_http_response_body(0, body_size).unwrap_or_default();
            if self.json_body.len() + chunk.len() > cfg.max_response_bytes {
                self.json_too_big = true;
                self.json_body = Vec::new();
            } else {
                self.json_body.extend_from_slice(&chunk);
            }
        }
        if end_of_stream {
            let body = std::mem::take(&mut self.json_body);
            self.response_info = Some(parse_json_response(self.api.unwrap_or(Api::OpenAiChat), &body));
            self.response_complete = true;
            self.settle(Termination::Complete);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.recorded || !self.tracked() {
            return;
        }
        // The status the client actually got: Envoy may have replaced a
        // held or failed upstream response with its own (e.g. 502).
        if let Some(code) = self
            .get_property(vec!["response", "code"])
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(|b| u64::from_le_bytes(b) as u16)
            .filter(|c| *c != 0)
        {
            self.status = code;
        }
        let termination = self.termination_from_host();
        self.settle(termination);
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Read-modify-write of a budget counter with compare-and-swap. `f` returns
/// false to leave the counter unchanged. Gives up after 32 lost races.
fn update_counter(ctx: &dyn Context, key: &str, mut f: impl FnMut(&mut Counter) -> bool) -> Result<Counter, ()> {
    for _ in 0..32 {
        let (value, cas) = ctx.get_shared_data(key);
        let mut c = value.map(|v| Counter::decode(&v)).unwrap_or_default();
        if !f(&mut c) {
            return Err(());
        }
        match ctx.set_shared_data(key, Some(c.encode().as_bytes()), cas) {
            Ok(()) => return Ok(c),
            Err(Status::CasMismatch) => continue,
            Err(_) => return Err(()),
        }
    }
    Err(())
}

/// Per-worker cache of the parsed state, reloaded when its generation changes.
struct StateCache {
    generation: u64,
    view: Option<Rc<StateView>>,
}

thread_local! {
    static STATE_CACHE: RefCell<StateCache> = const { RefCell::new(StateCache { generation: 0, view: None }) };
    static USAGE_QUEUE_ID: RefCell<Option<u32>> = const { RefCell::new(None) };
}

/// The current state view (if any was ever received) and the time of the
/// last successful poll (None = never).
fn current_state(ctx: &dyn Context) -> (Option<Rc<StateView>>, Option<u64>) {
    let Some((generation, ok_ms)) = ctx.get_shared_data(STATE_META_KEY).0.and_then(|b| decode_meta(&b)) else {
        return (None, None);
    };
    STATE_CACHE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.generation != generation || cache.view.is_none() {
            if let Some(doc) = ctx.get_shared_data(STATE_KEY).0.and_then(|b| serde_json::from_slice::<StateDoc>(&b).ok()) {
                cache.view = Some(Rc::new(StateView::from_doc(doc)));
                cache.generation = generation;
            }
        }
        (cache.view.clone(), Some(ok_ms))
    })
}

/// Hands a usage record to this Envoy's background service.
fn enqueue_record(ctx: &dyn Context, json: &[u8]) {
    let vm_id = || ctx.get_property(vec!["plugin_vm_id"]).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let qid = USAGE_QUEUE_ID.with(|q| {
        let mut q = q.borrow_mut();
        if q.is_none() {
            // Resolved lazily: the service may register the queue after this worker started.
            *q = ctx.resolve_shared_queue(&vm_id(), USAGE_QUEUE);
        }
        *q
    });
    match qid {
        Some(id) => {
            if ctx.enqueue_shared_queue(id, Some(json)).is_err() {
                log::warn!("usage queue unavailable; record kept only in the log");
                USAGE_QUEUE_ID.with(|q| *q.borrow_mut() = None);
            }
        }
        None => log::warn!("usage queue not found (is the tollgate_service bootstrap extension configured with the same vm_id?)"),
    }
}

// ---- the background service ---------------------------------------------

#[derive(serde::Deserialize)]
struct RecordDeltas {
    #[serde(default)]
    budget_scopes: Vec<String>,
    #[serde(default)]
    cost_micros: u64,
    #[serde(default)]
    usage: crate::usage::Usage,
}

/// A batch in flight to the control service.
struct InFlightBatch {
    token: u32,
    records: Vec<Vec<u8>>,
    deltas: Vec<(String, Amount)>,
}

/// One per Envoy (singleton): ships usage records in batches and polls the
/// budget state; both directions retry, neither ever blocks a request.
struct Service {
    node: String,
    poll_ms: u64,
    queue: u32,
    buffer: VecDeque<Vec<u8>>,
    dropped: u64,
    dropped_logged: u64,
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

impl Service {
    fn new(node: String, queue: u32, poll_ms: u64) -> Self {
        Service {
            node,
            poll_ms,
            queue,
            buffer: VecDeque::new(),
            dropped: 0,
            dropped_logged: 0,
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

    fn tick(&mut self, ctx: &dyn Context, cfg: &Config) {
        let Some(ctl) = &cfg.control else { return };
        let now = now_ms(ctx);
        // Drain the queue into the bounded buffer; past the bound, drop the oldest.
        loop {
            match ctx.dequeue_shared_queue(self.queue) {
                Ok(Some(rec)) => {
                    if self.buffer.len() >= ctl.max_buffered_records {
                        self.buffer.pop_front();
                        self.dropped += 1;
                    }
                    self.buffer.push_back(rec);
                }
                _ => break,
            }
        }
        if self.dropped > self.dropped_logged {
            log::warn!(
                "usage buffer full ({} records): dropped {} oldest records so far",
                ctl.max_buffered_records,
                self.dropped
            );
            self.dropped_logged = self.dropped;
        }
        if self.batch.is_none() && !self.buffer.is_empty() && now >= self.next_flush_ms {
            self.flush(ctx, cfg, now);
        }
        if self.state_token.is_none() && now >= self.next_poll_ms {
            self.poll(ctx, cfg, now);
        }
    }

    fn flush(&mut self, ctx: &dyn Context, cfg: &Config, now: u64) {
        let Some(ctl) = &cfg.control else { return };
        let n = ctl.max_batch.min(self.buffer.len());
        let records: Vec<Vec<u8>> = self.buffer.drain(..n).collect();
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
            if let Ok(d) = serde_json::from_slice::<RecordDeltas>(r) {
                let amount = Amount {
                    micros: d.cost_micros,
                    tokens: d.usage.input_tokens.saturating_add(d.usage.output_tokens),
                };
                for s in d.budget_scopes {
                    deltas.push((s, amount));
                }
            }
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
                self.requeue(records, now);
            }
        }
    }

    fn requeue(&mut self, records: Vec<Vec<u8>>, now: u64) {
        for r in records.into_iter().rev() {
            self.buffer.push_front(r);
        }
        self.flush_failures = self.flush_failures.saturating_add(1);
        self.next_flush_ms = now + (250u64 << self.flush_failures.min(5));
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

    fn on_response(&mut self, ctx: &dyn Context, token: u32, body_size: usize) {
        let now = now_ms(ctx);
        let status: u16 = ctx
            .get_http_call_response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if self.batch.as_ref().is_some_and(|b| b.token == token) {
            let Some(batch) = self.batch.take() else { return };
            let ack = (status == 200)
                .then(|| ctx.get_http_call_response_body(0, body_size))
                .flatten()
                .and_then(|b| serde_json::from_slice::<IngestAck>(&b).ok());
            match ack {
                Some(ack) => {
                    self.flush_failures = 0;
                    self.next_flush_ms = now;
                    if !batch.deltas.is_empty() {
                        self.unreflected.push((ack.seq, batch.deltas));
                        self.reflect(ctx);
                    }
                }
                None => {
                    if self.flush_failures == 0 || self.flush_failures % 20 == 0 {
                        log::warn!("control service refused a usage batch (status {status}); will retry");
                    }
                    self.requeue(batch.records, now);
                }
            }
            return;
        }
        if self.state_token == Some(token) {
            self.state_token = None;
            self.on_state(ctx, status, body_size, now);
        }
    }

    fn on_state(&mut self, ctx: &dyn Context, status: u16, body_size: usize, now: u64) {
        match status {
            200 => {
                let body = ctx.get_http_call_response_body(0, body_size).unwrap_or_default();
                let Ok(doc) = serde_json::from_slice::<StateDoc>(&body) else {
                    log::warn!("control service sent an unreadable budget state; keeping the last one");
                    self.poll_failed(now);
                    return;
                };
                // Counters must exist before workers can see a budget (they CAS on them).
                for b in &doc.budgets {
                    let key = budget::counter_key(b.scope_type, &b.scope_id);
                    if ctx.get_shared_data(&key).0.is_none() {
                        let _ = ctx.set_shared_data(&key, Some(Counter::default().encode().as_bytes()), None);
                    }
                }
                if ctx.set_shared_data(STATE_KEY, Some(&body), None).is_err() {
                    log::warn!("cannot store the budget state in shared data");
                    return;
                }
                self.etag = ctx.get_http_call_response_header("etag").unwrap_or_default();
                self.generation += 1;
                self.applied_seq = doc.seq;
                self.reflect(ctx);
                self.poll_ok(ctx, now);
            }
            304 => self.poll_ok(ctx, now),
            _ => {
                if self.poll_failures == 0 || self.poll_failures % 20 == 0 {
                    log::warn!("cannot get budget state from the control service (status {status}); enforcing from the last state");
                }
                self.poll_failed(now);
            }
        }
    }

    fn poll_ok(&mut self, ctx: &dyn Context, now: u64) {
        self.poll_failures = 0;
        let _ = ctx.set_shared_data(STATE_META_KEY, Some(encode_meta(self.generation, now).as_bytes()), None);
        self.next_poll_ms = now + self.poll_ms;
    }

    fn poll_failed(&mut self, now: u64) {
        self.poll_failures = self.poll_failures.saturating_add(1);
        // Retry sooner than the regular poll, but do not hammer a down service.
        self.next_poll_ms = now + (self.poll_ms / 2).max(100);
    }

    /// Acknowledged records that the applied state now includes are no
    /// longer pending on this Envoy.
    fn reflect(&mut self, ctx: &dyn Context) {
        let applied = self.applied_seq;
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unreflected).into_iter().partition(|(seq, _)| *seq <= applied);
        self.unreflected = keep;
        for (_, deltas) in done {
            for (label, amount) in deltas {
                let Some((t, id)) = budget::parse_scope_label(&label) else { continue };
                let _ = update_counter(ctx, &budget::counter_key(t, id), |c| {
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

thread_local! {
    static METRIC_IDS: RefCell<std::collections::HashMap<String, u32>> = RefCell::new(std::collections::HashMap::new());
}

/// Adds a record to the Envoy metrics (defined on first use, per worker).
fn record_metrics(rec: &UsageRecord) {
    use proxy_wasm::types::MetricType;
    for (kind, name, value) in crate::metrics::for_record(rec) {
        let id = METRIC_IDS.with(|m| {
            let mut m = m.borrow_mut();
            if let Some(id) = m.get(&name) {
                return Some(*id);
            }
            // Bound the number of series one worker defines (label cardinality).
            if m.len() >= 20_000 {
                return None;
            }
            let t = match kind {
                crate::metrics::Kind::Counter => MetricType::Counter,
                crate::metrics::Kind::Histogram => MetricType::Histogram,
            };
            let id = proxy_wasm::hostcalls::define_metric(t, &name).ok()?;
            m.insert(name, id);
            Some(id)
        });
        let Some(id) = id else { continue };
        let _ = match kind {
            crate::metrics::Kind::Counter => proxy_wasm::hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX)),
            crate::metrics::Kind::Histogram => proxy_wasm::hostcalls::record_metric(id, value),
        };
    }
}
