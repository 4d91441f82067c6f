//! The proxy-wasm glue: maps Envoy's callbacks onto the pure logic.
//!
//! Root context: parses and validates the configuration once (`on_configure`
//! returning false makes Envoy refuse the plugin). HTTP context: one per
//! request; every failure path ends in a local reply or a pass-through, never
//! a panic (a panic kills the VM and every request on the worker fails).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::{Config, KeyInfo, OtherPaths, Provider, ProviderFormat, UnpricedModels};
use crate::errors::GatewayError;
use crate::keys::{hash_key, key_ref, presented_key};
use crate::record::{account, Observed, Outcome, Termination, UsageRecord, UsageSource, RECORD_VERSION};
use crate::request::{classify_path, parse_chat, query_of, Api, ChatRequest, Endpoint};
use crate::usage::{parse_json_response, ResponseInfo, StreamTracker, Usage};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TollgateRoot { config: None }) });
}}

const HDR_PROJECT: &str = "x-tollgate-project";
const HDR_FEATURE: &str = "x-tollgate-feature";
const HDR_PROMPT_VERSION: &str = "x-tollgate-prompt-version";

struct TollgateRoot {
    config: Option<Rc<Config>>,
}

impl Context for TollgateRoot {}

impl RootContext for TollgateRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(c) => {
                log::info!(
                    "configured: {} keys, {} providers, max_request_bytes={}",
                    c.keys.len(),
                    c.providers.len(),
                    c.max_request_bytes
                );
                self.config = Some(Rc::new(c));
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
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
        }
    }

    /// Sends a local error reply; records it when the caller is known.
    fn reject(&mut self, e: GatewayError) -> Action {
        self.replied = true;
        self.status = e.status;
        let body = e.body();
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
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
        cfg.key_by_hash(&hash).cloned().ok_or_else(GatewayError::invalid_key)
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
        // Filter state for access logs: %FILTER_STATE(wasm.tollgate.usage:PLAIN)% and flat fields.
        self.set_property(vec!["tollgate.usage"], Some(json.as_bytes()));
        let fields: [(&str, String); 9] = [
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
