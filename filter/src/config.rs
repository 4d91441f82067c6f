//! The plugin configuration: parsed and fully validated once, in
//! `on_configure`. Any error names the field (`routes[2].provider`) so the
//! single log line Envoy prints says what to fix. docs/configuration.md
//! documents every field.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde::Deserialize;

use crate::pricing::Price;
use crate::request::Api;

/// A configuration error: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid tollgate configuration: field '{}': {}", self.field, self.message)
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
pub const DEFAULT_CLUSTER_HEADER: &str = "x-tollgate-cluster";
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    keys: Vec<RawKey>,
    providers: Vec<RawProvider>,
    routes: Vec<RawRoute>,
    #[serde(default)]
    pricing: BTreeMap<String, Price>,
    #[serde(default)]
    unpriced_models: Option<UnpricedModels>,
    #[serde(default)]
    max_request_bytes: Option<usize>,
    #[serde(default)]
    max_response_bytes: Option<usize>,
    #[serde(default)]
    other_paths: Option<OtherPaths>,
    #[serde(default)]
    cluster_header: Option<String>,
    #[serde(default)]
    cost_headers: Option<bool>,
    #[serde(default)]
    cache_insights: Option<bool>,
    #[serde(default)]
    force_stream_usage: Option<bool>,
    #[serde(default)]
    log_records: Option<bool>,
    #[serde(default)]
    control: Option<RawControl>,
    #[serde(default)]
    default_max_tokens: Option<u64>,
    #[serde(default)]
    body_wait_ms: Option<u64>,
    #[serde(default)]
    metrics: Option<bool>,
    #[serde(default)]
    access_log_fields: Option<Vec<crate::access_log::Field>>,
    #[serde(default)]
    guardrails: Option<crate::guard::PolicyDoc>,
    #[serde(default)]
    capture: Option<RawCapture>,
    #[serde(default)]
    stored_objects: Option<OneOrMany>,
    #[serde(default)]
    list_stored_objects: Option<bool>,
}

/// A provider name, or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    token: String,
    #[serde(default)]
    poll_ms: Option<u64>,
    #[serde(default)]
    flush_ms: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_batch: Option<usize>,
    #[serde(default)]
    max_batch_bytes: Option<usize>,
    #[serde(default)]
    max_buffered_records: Option<usize>,
    #[serde(default)]
    stale_after_ms: Option<u64>,
    #[serde(default)]
    failure_mode: Option<FailureMode>,
    #[serde(default)]
    node: Option<String>,
}

/// What the filter does with budgets when its budget state is stale
/// (no successful poll of the control service for `stale_after_ms`).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Keep enforcing from the last known state and local counters (default).
    #[default]
    Local,
    /// Stop enforcing budgets (serve everything, still record usage).
    Open,
    /// Refuse budget-checked requests with 503 until state is fresh again.
    Closed,
}

/// The control service connection (optional: without it, static keys only and no budgets).
#[derive(Debug)]
pub struct Control {
    pub cluster: String,
    pub authority: String,
    pub token: Secret,
    pub poll_ms: u64,
    pub flush_ms: u64,
    pub timeout_ms: u64,
    pub max_batch: usize,
    /// Most bytes in one usage batch (below the service's body limit).
    pub max_batch_bytes: usize,
    pub max_buffered_records: usize,
    pub stale_after_ms: u64,
    pub failure_mode: FailureMode,
    /// This Envoy's name towards the control service; default: Envoy's node id.
    pub node: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    key_hash: String,
    team: String,
    project: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    projects: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    format: ProviderFormat,
    cluster: String,
    host: String,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    anthropic_version: Option<String>,
    #[serde(default)]
    output_cap_field: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    model: String,
    provider: String,
    #[serde(default)]
    upstream_model: Option<String>,
    #[serde(default)]
    auto_cache: Option<RawAutoCache>,
    #[serde(default)]
    json_repair: Option<bool>,
    #[serde(default)]
    fallbacks: Vec<String>,
    #[serde(default)]
    upstream_api: Option<String>,
}

/// Which requests are captured for evaluations (`capture`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    percent: Option<u32>,
    #[serde(default)]
    max_bytes: Option<usize>,
}

/// Requests sampled for evaluation sets: those of these features or
/// routes, `percent` of them (by request id), each side at most `max_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub features: Vec<String>,
    pub routes: Vec<String>,
    pub percent: u32,
    pub max_bytes: usize,
}

impl Capture {
    /// Whether a request of `feature` on `route` with this id is sampled.
    pub fn wants(&self, feature: Option<&str>, route: &str, request_id: &str) -> bool {
        let named = feature.is_some_and(|f| self.features.iter().any(|x| x == f)) || self.routes.iter().any(|r| r == route);
        named && request_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) % 100 < u64::from(self.percent)
    }
}

/// A route's opt-in to Anthropic prompt-cache breakpoints (`caching.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoCache {
    #[serde(default)]
    min_tokens: Option<u64>,
    #[serde(default)]
    ttl: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderFormat {
    /// OpenAI chat completions (OpenAI, DeepSeek, and other compatible APIs).
    Openai,
    /// Anthropic messages.
    Anthropic,
    /// Google Gemini: its native `generateContent` API and, for OpenAI
    /// chat requests, its OpenAI-compatible endpoint (`<prefix>/openai/…`).
    Gemini,
}

impl ProviderFormat {
    /// Whether a provider of this format answers requests of `api`.
    pub fn serves(self, api: Api) -> bool {
        match self {
            ProviderFormat::Openai => !api.is_anthropic() && !api.is_gemini(),
            ProviderFormat::Anthropic => api == Api::AnthropicMessages,
            ProviderFormat::Gemini => matches!(api, Api::GeminiGenerateContent | Api::GeminiEmbedContent | Api::OpenAiChat | Api::OpenAiEmbeddings),
        }
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OtherPaths {
    /// 404 for any path that is not a chat or models endpoint (default).
    #[default]
    Deny,
    /// Let other paths through untouched (no authentication, no accounting).
    Pass,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnpricedModels {
    /// Serve, record the tokens, cost 0, `priced: false` in the record (default).
    #[default]
    Allow,
    /// Refuse with 400 before anything is spent.
    Deny,
}

/// A model-name pattern: exact, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        match s.find('*') {
            None => Ok(Pattern::Exact(s.to_string())),
            Some(i) if i + 1 == s.len() => Ok(Pattern::Prefix(s.get(..i).unwrap_or("").to_string())),
            Some(_) => Err(format!("'{s}': '*' may only appear once, at the end")),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == name,
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }

    /// Whether some name matches both patterns.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Exact(a), o) | (o, Pattern::Exact(a)) => o.matches(a),
            (Pattern::Prefix(a), Pattern::Prefix(b)) => a.starts_with(b.as_str()) || b.starts_with(a.as_str()),
        }
    }
}

/// A virtual key's identity and permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub key_hash: String,
    pub team: String,
    pub project: String,
    /// Models (route names) the key may use; `None` = all.
    pub models: Option<Vec<Pattern>>,
    /// Other projects the key may tag requests with (`x-tollgate-project`); "*" = any.
    pub projects: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

impl KeyInfo {
    /// A key published by the control service. Invalid model patterns are
    /// dropped (the service validates them; a stale or odd entry must not
    /// widen the key's rights).
    pub fn from_doc(d: &tollgate_protocol::state::KeyDoc) -> KeyInfo {
        KeyInfo {
            id: d.id.clone(),
            key_hash: d.key_hash.clone(),
            team: d.team.clone(),
            project: d.project.clone(),
            models: d.models.as_ref().map(|ms| ms.iter().filter_map(|m| Pattern::parse(m).ok()).collect()),
            projects: d.projects.clone(),
            tags: d.tags.clone(),
        }
    }

    pub fn may_use(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|ps| ps.iter().any(|p| p.matches(model)))
    }

    pub fn may_tag_project(&self, project: &str) -> bool {
        project == self.project || self.projects.iter().any(|p| p == "*" || p == project)
    }
}

pub struct Provider {
    pub name: String,
    pub format: ProviderFormat,
    pub cluster: String,
    pub host: String,
    pub path_prefix: String,
    /// Injected upstream; `None` when Envoy injects the credential itself.
    pub api_key: Option<Secret>,
    pub anthropic_version: String,
    /// The member the filter adds with `default_max_tokens` when a request
    /// sets no output cap, so the budget reservation is a real bound.
    /// `None`: nothing is added (Anthropic requires `max_tokens` anyway).
    pub output_cap_field: Option<&'static str>,
}

/// A credential; `Debug` never prints it.
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("cluster", &self.cluster)
            .field("host", &self.host)
            .field("api_key", &self.api_key)
            .finish()
    }
}

#[derive(Debug)]
struct Route {
    pattern: Pattern,
    name: String,
    provider: usize,
    upstream_model: Option<String>,
    auto_cache: Option<crate::caching::AutoCache>,
    json_repair: bool,
    fallbacks: Vec<String>,
    upstream_api: UpstreamApi,
}

/// Which OpenAI API a route's chat requests (OpenAI chat and Anthropic
/// messages clients) go to upstream (`routes[].upstream_api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamApi {
    /// The Responses API for the models OpenAI serves only there
    /// ([`crate::translate::to_responses::responses_only`]), chat completions otherwise.
    ByModel,
    ChatCompletions,
    Responses,
}

impl UpstreamApi {
    /// Whether a request for `upstream_model` goes to the Responses API.
    pub fn responses(self, upstream_model: &str) -> bool {
        match self {
            UpstreamApi::ByModel => crate::translate::to_responses::responses_only(upstream_model),
            UpstreamApi::ChatCompletions => false,
            UpstreamApi::Responses => true,
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    pub route: &'a str,
    pub provider: &'a Provider,
    /// Anthropic prompt-cache breakpoints, when the route opts in.
    pub auto_cache: Option<crate::caching::AutoCache>,
    /// Repair JSON answers ([`crate::jsonfix`]).
    pub json_repair: bool,
    /// Models to try, in order, when this route's upstream fails before answering.
    pub fallbacks: &'a [String],
    /// Chat completions or the Responses API, for an OpenAI-format provider.
    pub upstream_api: UpstreamApi,
}

#[derive(Debug)]
pub struct Config {
    pub keys: HashMap<String, Rc<KeyInfo>>,
    pub providers: Vec<Provider>,
    routes: Vec<Route>,
    pricing: Vec<(Pattern, Price)>,
    pub unpriced_models: UnpricedModels,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub other_paths: OtherPaths,
    pub cluster_header: String,
    pub cost_headers: bool,
    /// Fingerprint prompt prefixes to explain cache misses ([`crate::fingerprint`]).
    pub cache_insights: bool,
    pub force_stream_usage: bool,
    pub log_records: bool,
    pub control: Option<Control>,
    /// Output tokens reserved for a request that names no max_tokens.
    pub default_max_tokens: u64,
    /// How long a request may wait for its body after its headers before
    /// the filter answers 503 (Envoy is not passing bodies to the filter:
    /// `allow_on_headers_stop_iteration` is missing).
    pub body_wait_ms: u64,
    /// Envoy metrics per team / project / model / provider.
    pub metrics: bool,
    /// Filter-state properties set for access logs (each a host call).
    pub access_log_fields: Vec<crate::access_log::Field>,
    /// What data classes may leave for a provider ([`crate::guard`]).
    pub guardrails: Option<std::rc::Rc<crate::guard::Policy>>,
    /// Requests captured for evaluations.
    pub capture: Option<Capture>,
    /// The providers that keep stored objects ([`crate::objects`]): an
    /// OpenAI-format one (responses, conversations, files) and an
    /// Anthropic-format one (files), each at most once.
    stored_objects: Vec<usize>,
    /// Whether stored files and vector stores may be listed (every key's).
    pub list_stored_objects: bool,
}

fn non_empty(field: String, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        Err(err(field, "must not be empty"))
    } else {
        Ok(())
    }
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Config {
    /// Parses and validates the plugin configuration (JSON).
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() { "(root)".to_string() } else { path };
            err(field, e.into_inner().to_string())
        })?;
        validate::config(raw)
    }

    pub fn key_by_hash(&self, hash: &str) -> Option<&Rc<KeyInfo>> {
        self.keys.get(hash)
    }

    /// Resolves a requested model name: an exact route first, then the
    /// longest matching wildcard. Returns the route and the upstream model.
    pub fn resolve(&self, model: &str) -> Option<(Resolved<'_>, String)> {
        let route = self
            .routes
            .iter()
            .find(|r| matches!(&r.pattern, Pattern::Exact(e) if e == model))
            .or_else(|| {
                self.routes
                    .iter()
                    .filter(|r| matches!(&r.pattern, Pattern::Prefix(p) if model.starts_with(p.as_str())))
                    .max_by_key(|r| match &r.pattern {
                        Pattern::Prefix(p) => p.len(),
                        Pattern::Exact(_) => 0,
                    })
            })?;
        let provider = self.providers.get(route.provider)?;
        let upstream = match &route.upstream_model {
            Some(m) => m.clone(),
            None => {
                // "openai/gpt-5.4" sent to provider "openai" is "gpt-5.4" upstream.
                let prefix = format!("{}/", provider.name);
                model.strip_prefix(prefix.as_str()).unwrap_or(model).to_string()
            }
        };
        Some((Resolved { route: &route.name, provider, auto_cache: route.auto_cache, json_repair: route.json_repair, fallbacks: &route.fallbacks, upstream_api: route.upstream_api }, upstream))
    }

    /// The provider that keeps the stored objects of a format (OpenAI's, or
    /// Anthropic's files), and its index.
    pub fn stored_objects(&self, format: ProviderFormat) -> Option<(usize, &Provider)> {
        self.stored_objects.iter().filter_map(|&i| Some((i, self.providers.get(i)?))).find(|(_, p)| p.format == format)
    }

    /// Whether `key` may use some model a route sends to provider `index`
    /// (a key limited to other providers' models cannot reach this one's
    /// stored objects).
    pub fn reaches(&self, key: &KeyInfo, index: usize) -> bool {
        let Some(allowed) = &key.models else { return true };
        self.routes.iter().filter(|r| r.provider == index).any(|r| allowed.iter().any(|k| k.overlaps(&r.pattern)))
    }

    /// Route names (patterns included) a key may use, in configuration order.
    pub fn models_for(&self, key: &KeyInfo) -> Vec<String> {
        self.routes.iter().filter(|r| key.may_use(&r.name)).map(|r| r.name.clone()).collect()
    }

    /// (model name, provider) of what a key may name: every exact route,
    /// then every exactly priced `provider/model` a wildcard route serves
    /// as priced (`google/*` → provider `google` serves the price
    /// `google/gemini-2.5-flash` under that name), in configuration order.
    pub fn listable_models(&self, key: &KeyInfo) -> Vec<(&str, &Provider)> {
        let exact = self.routes.iter().filter(|r| matches!(r.pattern, Pattern::Exact(_)));
        let mut listed: Vec<(&str, &Provider)> = exact
            .filter(|r| key.may_use(&r.name))
            .filter_map(|r| Some((r.name.as_str(), self.providers.get(r.provider)?)))
            .collect();
        for (pattern, _) in &self.pricing {
            let Pattern::Exact(name) = pattern else { continue };
            let Some((r, upstream)) = self.resolve(name).filter(|_| key.may_use(name)) else { continue };
            let served_as_priced = name.strip_prefix(r.provider.name.as_str()).and_then(|m| m.strip_prefix('/')) == Some(upstream.as_str());
            if served_as_priced && !listed.iter().any(|(n, _)| n == name) {
                listed.push((name.as_str(), r.provider));
            }
        }
        listed
    }

    /// The price of `provider/upstream_model`, if configured.
    pub fn price(&self, provider: &str, upstream_model: &str) -> Option<Price> {
        let full = format!("{provider}/{upstream_model}");
        self.pricing.iter().find(|(p, _)| p.matches(&full)).map(|(_, price)| *price)
    }

    /// [`Self::price`] as `api` bills it: the Decisions API bills the
    /// model's input alone ([`Price::for_decisions`]).
    pub fn price_for(&self, api: Api, provider: &str, upstream_model: &str) -> Option<Price> {
        let price = self.price(provider, upstream_model);
        if api == Api::OpenAiDecisions {
            return price.map(Price::for_decisions);
        }
        price
    }
}

mod validate;

#[cfg(test)]
mod tests;
