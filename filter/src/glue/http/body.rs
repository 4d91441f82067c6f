//! A request's whole body, once buffered: planned, guarded, sampled,
//! budgeted, written back. One method per step, each ending the request
//! with its refusal (`Err(action)`) or handing on what the next needs.

use std::rc::Rc;

use proxy_wasm::types::Action;

use super::super::host::{self, REQUEST_BODY, REQUEST_HEADERS};
use super::super::synced;
use super::request::add_stored_context;
use super::{Phase, TollgateHttp};
use crate::config::{Config, KeyInfo};
use crate::errors::GatewayError;
use crate::keys::key_ref;
use crate::request::multipart::Upload;
use crate::request::Api;
use crate::route;

/// The body a plan was made from: as the client sent it (a form read as
/// the JSON it stands for), or as a named prompt rendered it.
struct Body {
    bytes: Vec<u8>,
    /// Inflated from the client's content-encoding.
    decoded: bool,
    /// Rendered from a named prompt.
    rendered: bool,
    upload: Option<Rc<Upload>>,
}

impl TollgateHttp {
    /// The whole request body is buffered (end of stream, or trailers).
    pub(super) fn on_request_complete(&mut self, cfg: &Config, body_size: usize) -> Action {
        if let Some(plan) = self.object_plan.take() {
            return self.stored_object_body(cfg, plan, body_size);
        }
        let (Some(api), Some(key)) = (self.api, self.key.clone()) else {
            return Action::Continue;
        };
        match self.complete(cfg, api, &key, body_size) {
            Ok(()) => Action::Continue,
            Err(action) => action,
        }
    }

    fn complete(&mut self, cfg: &Config, api: Api, key: &Rc<KeyInfo>, body_size: usize) -> Result<(), Action> {
        let mut body = self.read_body(cfg, api, body_size)?;
        let mut plan = self.plan_body(cfg, api, key, &mut body)?;
        self.guard(cfg, key, &mut plan, &body.bytes)?;
        // Who a background response is charged to, when a read shows it ended.
        if plan.chat.background {
            let owner = crate::owned::Owner { key: key.id.clone(), team: key.team.clone(), project: self.project.clone() };
            let tagged = crate::background::tag(plan.body.as_deref().unwrap_or(&body.bytes), &owner, plan.chat.input_bound(), plan.chat.container_gb);
            plan.body = Some(tagged.map_err(|e| self.reject(e))?);
        }
        self.sample(cfg, api, &plan, &body.bytes);
        // Budgets: reserve the worst case against every budgeted scope.
        if cfg.control.is_some() && !self.counting {
            self.admit(cfg, key, plan.worst, plan.priced)?;
        }
        self.note_cache(cfg, api, key, &mut plan, &body.bytes);
        self.send(plan, body, body_size, key)
    }

    /// The buffered body, decoded; a form (an image edit's, a
    /// transcription's) as the JSON it stands for, written back as a form.
    fn read_body(&mut self, cfg: &Config, api: Api, body_size: usize) -> Result<Body, Action> {
        let (bytes, decoded) = self.whole_body(cfg, body_size).map_err(|e| self.reject(e))?;
        let content_type = api.takes_forms()
            .then(|| crate::request_head::content_type(crate::hostmap::pairs(&host::header_map(REQUEST_HEADERS))))
            .flatten();
        let (upload, bytes) = Upload::read(api, content_type.as_deref(), bytes).map_err(|e| self.reject(e))?;
        Ok(Body { bytes, decoded, rendered: false, upload: upload.map(Rc::new) })
    }

    /// The plan ([`route::plan_for`]), with the auto router's pick for this
    /// feature and a named prompt rendered from the synced registry; what
    /// the answer and the record need of it is kept on the request.
    fn plan_body(&mut self, cfg: &Config, api: Api, key: &KeyInfo, body: &mut Body) -> Result<route::Plan, Action> {
        let routing = synced::routing();
        let auto = self.feature.as_deref().and_then(|f| routing.as_ref()?.features.get(f));
        let registry = synced::registry();
        let choice = route::Choice {
            model: None,
            auto,
            fingerprint: cfg.cache_insights && !self.counting,
            prompts: Some(registry.as_deref()),
            count_tokens: self.counting,
            compact: self.compacting,
            tier_header: self.headers.vertex_tier.as_deref(),
        };
        let mut plan = match route::plan_for(cfg, key, api, &body.bytes, &self.path, self.headers.has_anthropic_version, choice) {
            Ok(p) => p,
            Err(r) => {
                self.chat = r.chat;
                self.target = r.target;
                return Err(self.reject(r.error));
            }
        };
        if let Some((b, tag)) = plan.rendered.take() {
            body.bytes = b;
            body.rendered = true;
            self.prompt_version = Some(tag);
        }
        add_stored_context(cfg, &mut plan);
        self.chat = Some(plan.chat.clone());
        self.target = Some(plan.target.clone());
        self.translate = plan.translate;
        self.tool_names = plan.tool_names.clone();
        self.json_repair = plan.json_repair;
        if let (true, Some(r)) = (plan.routed, auto) {
            self.routed_by = Some(format!("auto: {}", r.reason));
        }
        // A background response is read back from the provider that ran it: no alternative.
        if plan.chat.background {
            plan.fallbacks.clear();
            crate::background::check(cfg, &plan, synced::guard_policy(cfg).as_deref()).map_err(|e| self.reject(e))?;
        }
        // Alternatives are planned from the body as the client sent it (or as rendered).
        self.fallbacks = std::mem::take(&mut plan.fallbacks).into();
        if !self.fallbacks.is_empty() {
            self.client_body = Some(body.bytes.clone());
            self.client_upload = body.upload.clone();
        }
        Ok(plan)
    }

    /// Guardrails look at exactly what would go upstream: refused, or
    /// redacted, and the answer readable when the policy reads answers.
    fn guard(&mut self, cfg: &Config, key: &KeyInfo, plan: &mut route::Plan, body: &[u8]) -> Result<(), Action> {
        let Some(policy) = synced::guard_policy(cfg) else { return Ok(()) };
        let sent = plan.body.as_deref().unwrap_or(body);
        let who = crate::guard::Subject { key: &key.id, project: &self.project, team: &key.team, route: &plan.target.route };
        let mut placeholders = crate::guard::Placeholders::default();
        let (outcome, error) = crate::guard::decide(&policy, who, &plan.target, sent, &mut placeholders);
        self.guardrails = outcome.record;
        if let Some(e) = error {
            return Err(self.reject(e));
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
        Ok(())
    }

    /// Sampled for evaluations: the request as sent (after redaction), in the client's API.
    fn sample(&mut self, cfg: &Config, api: Api, plan: &route::Plan, body: &[u8]) {
        let Some(c) = cfg.capture.as_ref().filter(|_| !self.counting) else { return };
        let sent = plan.body.as_deref().unwrap_or(body);
        let chat_like = matches!(api, Api::OpenAiChat | Api::AnthropicMessages);
        if chat_like && plan.translate.is_none() && !plan.chat.stream && sent.len() <= c.max_bytes
            && c.wants(self.feature.as_deref(), &plan.target.route, &self.request_id)
        {
            self.capture = std::str::from_utf8(sent).ok().map(|r| tollgate_protocol::record::Capture { request: r.to_string(), response: String::new() });
        }
    }

    /// The prompt cache: the prefix compared with this key's last, and the
    /// markers of what goes upstream.
    fn note_cache(&mut self, cfg: &Config, api: Api, key: &KeyInfo, plan: &mut route::Plan, body: &[u8]) {
        use crate::fingerprint::{Markers, Verdict};
        if !cfg.cache_insights || self.counting {
            return;
        }
        let sent = plan.body.as_deref().unwrap_or(body);
        let markers = crate::fingerprint::markers(plan.translate.map_or(api, |d| d.upstream_api()), sent);
        let verdict = match plan.prefix.take() {
            Some(prefix) => self.compare_prefix(key, &plan.target.upstream_model, prefix, body),
            None => Verdict::Unknown,
        };
        if verdict != Verdict::Unknown || markers != Markers::NotApplicable {
            self.cache_verdict = Some((verdict, markers));
        }
    }

    /// The body and headers written for the provider; the request goes on.
    fn send(&mut self, mut plan: route::Plan, body: Body, body_size: usize, key: &KeyInfo) -> Result<(), Action> {
        if body.decoded {
            self.set_request_header("content-encoding", None);
        }
        let rewritten = body.rendered || body.decoded;
        let sent = crate::request::outgoing_body(plan.body.take(), body.bytes, rewritten, body.upload.as_deref()).map_err(|e| self.reject(e))?;
        if let Some(pieces) = &sent {
            plan.headers.retain(|(k, _)| k != "content-length");
            plan.headers.push(("content-length".to_string(), pieces.iter().map(|p| p.len()).sum::<usize>().to_string()));
            // The first replaces the body; each next one is appended (Envoy
            // appends what is written at or past the body's end).
            let mut at = 0;
            for (i, piece) in pieces.iter().enumerate() {
                let (start, replaced) = if i == 0 { (0, body_size) } else { (at, 0) };
                if !host::set_buffer(REQUEST_BODY, start, replaced, piece) {
                    // (Never a body cut short or out of order upstream.)
                    log::error!("[{}] Envoy refused the request body written back (piece {i} at {start})", self.context_id);
                    return Err(self.reject(GatewayError::internal("The request body could not be written back for the provider.")));
                }
                at += piece.len();
            }
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
        Ok(())
    }
}
