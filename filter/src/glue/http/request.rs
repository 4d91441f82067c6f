//! A request's way in: its headers (path, key, tags), then its whole body
//! (planned by `route`, guarded, budgeted, rewritten).

use std::rc::Rc;

use proxy_wasm::types::Action;

use super::super::host::{self, REQUEST_BODY};
use super::super::{awaiting_body, shared_key};
use super::{Phase, TollgateHttp};
use crate::admission::Decision;
use crate::budget::Amount;
use crate::config::{Config, KeyInfo, OtherPaths};
use crate::errors::GatewayError;
use crate::keys::hash_key;
use crate::models;
use crate::record::BudgetDecision;
use crate::request::{classify_path, Api, Endpoint};
use crate::request_head::charged_key;
use crate::route;

impl TollgateHttp {
    pub(super) fn authenticate(&mut self, cfg: &Config) -> Result<Rc<KeyInfo>, GatewayError> {
        let keys = self.headers.keys()?;
        // Gemini's REST convention `?key=`, on Gemini's native paths only;
        // never sent upstream (request::upstream_query).
        let query = match keys {
            [None, None, None, None] => crate::request::query_key(&self.path).filter(|_| crate::gemini::takes_query_key(&self.path)),
            _ => None,
        };
        let presented = keys.into_iter().flatten().chain(query);
        let resolve = |k: &str| {
            let hash = hash_key(k);
            cfg.key_by_hash(&hash).cloned().or_else(|| cfg.control.as_ref().and_then(|_| shared_key(&hash)))
        };
        if let Some(k) = charged_key(presented.clone(), resolve, |a, b| a.key_hash == b.key_hash)? {
            return Ok(k);
        }
        // Several keys (a repeated Authorization header Envoy joined with a comma)?
        let several = presented.clone().next().is_some_and(|k| k.contains(','));
        drop(presented); // (it borrows the headers; the state check below needs self)
        // Until this Envoy holds every key the control service has (just
        // started, or the service is unreachable since), an unknown key
        // may be a valid one not loaded yet: retryable, not "invalid".
        if cfg.control.is_some() && !self.state().is_some_and(|m| m.keys_synced) {
            return Err(GatewayError::keys_loading());
        }
        Err(GatewayError::unknown_key(several))
    }

    pub(super) fn on_request_headers(&mut self, cfg: &Config, end_of_stream: bool) -> Action {
        let Ok(path) = String::from_utf8(std::mem::take(&mut self.headers.path)) else {
            return self.reject(GatewayError::bad_request("invalid_path", "The request path is not valid UTF-8."));
        };
        self.path = path.clone();
        let endpoint = match classify_path(&path) {
            // (An Anthropic client's `/v1/files` is Anthropic's Files API, never OpenAI's.)
            Endpoint::Stored(o) if o.format(self.headers.has_anthropic_version).and_then(|f| cfg.stored_objects(f)).is_none() => Endpoint::Other,
            e => e,
        };
        if endpoint == Endpoint::Disguised {
            return self.reject(GatewayError::disguised_path());
        }
        if endpoint == Endpoint::Other {
            return match cfg.other_paths {
                OtherPaths::Pass => {
                    self.phase = Phase::Passthrough;
                    // Never let a client pick the upstream cluster itself.
                    self.set_request_header(&cfg.cluster_header, None);
                    Action::Continue
                }
                OtherPaths::Deny => self.reject(GatewayError::not_routed(&path)),
            };
        }
        if self.headers.websocket {
            return self.reject(GatewayError::websocket_not_supported());
        }
        if let Some(clean) = crate::request::path_without_key(&path) {
            self.set_request_header(":path", Some(&clean));
        }
        let key = match self.authenticate(cfg) {
            Ok(k) => k,
            Err(e) => return self.reject(e),
        };
        self.project = key.project.clone();
        self.key = Some(key.clone());
        let method = std::mem::take(&mut self.headers.method);

        if matches!(endpoint, Endpoint::Models | Endpoint::Model) {
            return self.models(cfg, &key, endpoint == Endpoint::Model, &method, &path);
        }

        if let Endpoint::Stored(_) = endpoint {
            let method = String::from_utf8_lossy(&method).into_owned();
            return self.stored_object(cfg, &key, &method, end_of_stream);
        }
        let api = match endpoint {
            Endpoint::Chat(api) => api,
            Endpoint::CountTokens(api) => {
                self.counting = true;
                api
            }
            // (Free as a count is: routed and guarded the same way.)
            Endpoint::Moderations => {
                self.counting = true;
                Api::OpenAiModerations
            }
            Endpoint::Compact => {
                self.compacting = true;
                Api::OpenAiResponses
            }
            Endpoint::Models | Endpoint::Model | Endpoint::Stored(_) | Endpoint::Disguised | Endpoint::Other => return Action::Continue,
        };
        self.api = Some(api);
        if method != b"POST" {
            return self.reject(GatewayError::method_not_allowed("These requests must be POST."));
        }

        if let Err(e) = self.attribution(&key) {
            return self.reject(e);
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

    /// `GET /v1/models` (or one model, `one`): answered here, in the
    /// client's format; listing models is not usage.
    fn models(&mut self, cfg: &Config, key: &KeyInfo, one: bool, method: &[u8], path: &str) -> Action {
        if method != b"GET" {
            return self.reject(GatewayError::method_not_allowed("Use GET /v1/models."));
        }
        self.key = None;
        let google_key = self.headers.x_goog_api_key.is_some() || crate::request::query_key(path).is_some();
        let shape = models::Shape::of(path, self.headers.has_anthropic_version, google_key);
        let body = match crate::request::model_path_id(path).filter(|_| one) {
            None => models::list(cfg, key, shape),
            Some(id) => match models::one(cfg, key, &id, shape) {
                Ok(b) => b,
                Err(e) => return self.reject(e),
            },
        };
        host::send_response(200, &[("content-type", "application/json")], body.as_bytes());
        self.phase = Phase::Replied;
        Action::Pause
    }

    /// The attribution tags the headers give: the project (one the key
    /// may name), the feature, the prompt version.
    fn attribution(&mut self, key: &KeyInfo) -> Result<(), GatewayError> {
        if let Some(p) = self.headers.project(key)? {
            self.project = p;
        }
        self.feature = self.headers.feature()?;
        self.prompt_version = self.headers.prompt_version()?;
        Ok(())
    }

    /// The buffered request body, decoded when compressed (and whether it
    /// was). Never read past a pause Envoy did not honour: if it did not,
    /// the router already picked an upstream and the headers went there.
    /// Whether it does is a property of the filter's configuration in this
    /// Envoy: checked until one request shows it (a host call saved after that).
    pub(super) fn whole_body(&mut self, cfg: &Config, body_size: usize) -> Result<(Vec<u8>, bool), GatewayError> {
        if !self.pause_verified.get() {
            if host::property(&["upstream", "address"]).is_some_and(|a| !a.is_empty()) {
                log::error!("[{}] request headers went upstream before the body was read: 'allow_on_headers_stop_iteration: true' is missing on the Wasm filter", self.context_id);
                return Err(GatewayError::headers_already_forwarded());
            }
            self.pause_verified.set(true);
        }
        let body = host::buffer(REQUEST_BODY, 0, body_size);
        // A compressed body is read, and sent on, decoded.
        match crate::decode::request_body(self.headers.content_encoding.as_deref(), &body, cfg.max_request_bytes)? {
            Some(plain) => Ok((plain, true)),
            None => Ok((body, false)),
        }
    }

    /// Reserves `worst` against every budget of this request's scopes
    /// ([`admission::admit`]), or answers 429 (exhausted) / 503 (fail
    /// closed) and returns the action.
    pub(super) fn admit(&mut self, cfg: &Config, key: &KeyInfo, worst: Amount, priced: bool) -> Result<(), Action> {
        if cfg.control.is_none() {
            return Ok(());
        }
        match self.admission(cfg, key, worst, priced) {
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
    pub(super) fn compare_prefix(&self, key: &KeyInfo, model: &str, mut current: crate::fingerprint::Fingerprint, body: &[u8]) -> crate::fingerprint::Verdict {
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
}

/// A Responses API request continuing a stored context this Envoy
/// remembers (`previous_response_id`, `conversation`): estimated and
/// reserved with it ([`crate::context`]).
pub(super) fn add_stored_context(cfg: &Config, plan: &mut route::Plan) {
    let Some(id) = plan.chat.continues.as_deref() else { return };
    let (entry, _) = host::shared(&crate::context::slot_key(id));
    if let Some(tokens) = entry.and_then(|e| crate::context::tokens(id, &e)) {
        plan.add_context(cfg, tokens);
    }
}
