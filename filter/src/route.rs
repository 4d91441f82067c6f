//! Route planning: from a complete request body to what goes upstream.
//!
//! [`plan`] parses the body, checks the key's permissions, resolves the
//! route, checks the price rule, and computes the budget's worst case and
//! the rewrite (body, path, authority, cluster, credential). Pure: the glue
//! reserves the budget between [`plan`] and [`Plan::apply`] and writes the
//! result to Envoy.

use crate::budget::Amount;
use crate::config::{Config, KeyInfo, UnpricedModels};
use crate::translate::Direction;
use crate::errors::GatewayError;
use crate::request::{azure_deployment, parse_chat_for, Api, ChatRequest, ParsedBody, Rewrite};
use crate::usage::Usage;

/// The model a moderation without one runs: OpenAI's default
/// (openai-python `moderation_create_params.py`).
pub const DEFAULT_MODERATION_MODEL: &str = "omni-moderation-latest";

/// Where a request goes (recorded in its usage record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub provider: String,
    pub route: String,
    pub upstream_model: String,
    /// Another model runs within the request at the same provider
    /// (Anthropic's advisor tool, the Responses API's image generation
    /// tool), recorded apart: [`advisor`].
    pub advisor: Option<Box<advisor::AdvisorTarget>>,
}

/// A refusal, with what was known of the request when it was refused.
#[derive(Debug)]
pub struct Refusal {
    pub error: GatewayError,
    pub chat: Option<ChatRequest>,
    pub target: Option<Target>,
}

/// What to send upstream.
#[derive(Debug)]
pub struct Plan {
    pub chat: ChatRequest,
    pub target: Target,
    /// The budget reservation: estimated input + the output bound, priced.
    pub worst: Amount,
    /// The upstream model has a price (`worst.micros` is 0 when not: a
    /// budget in dollars cannot hold the request, see `admission::admit`).
    pub priced: bool,
    /// The new body, when it changes.
    pub body: Option<Vec<u8>>,
    /// Request headers to set (credentials included: never log these).
    pub headers: Vec<(String, String)>,
    pub cluster: String,
    /// A request in the other provider format: the body went up translated,
    /// and the answer must come back translated ([`crate::translate`]).
    pub translate: Option<Direction>,
    /// The flat names a translated Responses request's namespaced functions
    /// went under, for its answer ([`crate::translate::namespaces`]).
    pub tool_names: Option<std::rc::Rc<crate::translate::namespaces::ToolNames>>,
    /// The route repairs JSON answers ([`crate::jsonfix`]).
    pub json_repair: bool,
    /// Models to try next when this upstream fails before answering.
    pub fallbacks: Vec<String>,
    /// The auto router picked the model.
    pub routed: bool,
    /// The prompt prefix's fingerprint (scope not set), when asked for and long enough.
    pub prefix: Option<crate::fingerprint::Fingerprint>,
    /// The body as rendered from a named prompt, and the version's tag.
    pub rendered: Option<(Vec<u8>, String)>,
}

/// The budget reservation: the estimated input and the output bound,
/// priced, for each call of a server tool loop, with the searches billed on every request, and what an
/// advisor's calls reserve ([`advisor::worst`]). (The output side is a real
/// bound: the cap goes upstream when the client set none.)
fn worst_of(cfg: &Config, chat: &ChatRequest, target: &Target, price: Option<&crate::pricing::Price>) -> Amount {
    // Each call of Anthropic's server tool loop reads the context and may
    // write the cap (an answer without usage is still charged one call's estimate).
    let calls = chat.sampling_calls.max(1);
    let worst_usage = Usage {
        input_tokens: chat.input_bound().saturating_mul(calls),
        image_input_tokens: chat.image_input_bound().saturating_mul(calls),
        audio_input_tokens: crate::request::audio::tokens(chat.input_audio_ms),
        audio_input_ms: chat.input_audio_ms,
        output_tokens: chat.output_bound(cfg.default_max_tokens).saturating_mul(calls),
        web_search_requests: chat.reserved_searches,
        // Speech: its characters (`tts-1`) or the audio it may speak.
        input_characters: chat.speech.map_or(0, |s| s.characters),
        audio_output_tokens: chat.speech.map_or(0, |s| s.output_bound()),
        container_gb: chat.container_gb,
        ..Default::default()
    };
    let billed = price.map(|p| p.billed(worst_usage)).unwrap_or(worst_usage);
    let micros = price.map(|p| p.at(chat.premium).reserving().cost_micros(&billed)).unwrap_or(0);
    Amount { micros, tokens: billed.budget_tokens() }.saturating_add(advisor::worst(target, chat))
}

impl Plan {
    /// The request continues a stored context of `tokens` (billed as input,
    /// not in its body: [`crate::context`]): its estimate and reservation
    /// grow by it.
    pub fn add_context(&mut self, cfg: &Config, tokens: u64) {
        self.chat.estimated_input_tokens = self.chat.estimated_input_tokens.saturating_add(tokens);
        self.worst = worst_of(cfg, &self.chat, &self.target, cfg.price_for(self.chat.api, &self.target.provider, &self.target.upstream_model).as_ref());
    }
}

/// Plans a request whose whole body is `body`. `path` is the client's
/// `:path` (its query string is kept).
pub fn plan(
    cfg: &Config,
    key: &KeyInfo,
    api: Api,
    body: &[u8],
    path: &str,
    has_anthropic_version: bool,
) -> Result<Plan, Box<Refusal>> {
    plan_for(cfg, key, api, body, path, has_anthropic_version, Choice::default())
}

/// The refusal code of a body that names a prompt: render it, then plan.
pub const NEEDS_RENDER: &str = "prompt_not_rendered";

/// Who picks the model besides the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Choice<'a> {
    /// A fallback: this model instead of the body's.
    pub model: Option<&'a str>,
    /// The auto router's pick for the request's feature: used for
    /// `model: "auto"`, and for every request when the feature is bound.
    pub auto: Option<&'a tollgate_protocol::routing::Routed>,
    /// Fingerprint the prompt prefix ([`crate::fingerprint`], `cache_insights`).
    pub fingerprint: bool,
    /// Render a named prompt (`tollgate_prompt`) with this registry (`None`
    /// inside: never loaded); not set: such a body is refused with [`NEEDS_RENDER`].
    pub prompts: Option<Option<&'a crate::prompts::Registry>>,
    /// Token counting (Anthropic's `POST /v1/messages/count_tokens`,
    /// Gemini's `…/models/{model}:countTokens`, the Responses API's
    /// `/v1/responses/input_tokens`): routed like the request it
    /// counts, to a provider of the client's own format only, with nothing
    /// added (no output cap: Anthropic's endpoint refuses `max_tokens`),
    /// free, so neither priced nor sent to fallbacks.
    pub count_tokens: bool,
    /// A compaction (`/v1/responses/compact`): billed like a response, but
    /// to an OpenAI-format provider's Responses API only (no other API
    /// compacts), with no output cap added (the endpoint takes none: its
    /// output is reserved at `default_max_tokens`, an estimate, and charged
    /// as reported), never sent to fallbacks, and not a stored response.
    pub compact: bool,
    /// Vertex AI's tier header, as the client sent it ([`crate::request::VERTEX_TIER`]).
    pub tier_header: Option<&'a [u8]>,
}

/// [`plan`], with the model chosen by a fallback or the auto router.
pub fn plan_for(
    cfg: &Config,
    key: &KeyInfo,
    api: Api,
    body: &[u8],
    path: &str,
    has_anthropic_version: bool,
    choice: Choice<'_>,
) -> Result<Plan, Box<Refusal>> {
    let refuse = |error, chat: Option<&ChatRequest>, target: Option<&Target>| {
        Box::new(Refusal { error, chat: chat.cloned(), target: target.cloned() })
    };
    // An Azure OpenAI path names its deployment: the model run.
    let deployment = azure_deployment(path);
    // (A moderation names its model or takes OpenAI's default.)
    let model_optional = api.is_gemini() || deployment.is_some() || api == Api::OpenAiModerations;
    let parsed = parse_chat_for(api, body, model_optional).map_err(|e| refuse(e, None, None))?;
    // A named prompt: rendered, then planned.
    if parsed.request.names_prompt {
        return plan_rendered(cfg, key, api, &parsed, path, has_anthropic_version, choice);
    }
    let mut chat = parsed.request.clone();
    chat.premium.tier = crate::request::with_tier_header(chat.premium.tier, choice.tier_header).map_err(|e| refuse(e, Some(&chat), None))?;
    // From the members the parser found: no second parse.
    let prefix = if choice.fingerprint && matches!(api, Api::OpenAiChat | Api::AnthropicMessages) {
        let raw = |n: &str| parsed.members().find(|(k, _)| *k == n).map(|(_, v)| v);
        crate::fingerprint::fingerprint_raw([raw("tools"), raw("system"), raw("messages")], 0)
    } else {
        None
    };
    let Chosen { routed, google, gemini_method } = choose_model(&mut chat, api, deployment.as_deref(), path, &parsed, &choice)?;
    // Anthropic's server-side fallbacks let the provider serve the turn with
    // models the client names, beyond the route, priced as theirs: neither
    // the key's models nor the price would hold. (A count runs no model: it
    // is served.)
    if chat.server_fallbacks && !choice.count_tokens {
        let e = GatewayError::bad_request(
            "unsupported_field",
            "Server-side fallbacks let other models serve the turn, priced as theirs: the gateway could neither hold them to this key's models nor price them, so it does not serve them. Send the request without it (route fallbacks, configured in the gateway, are accounted).",
        );
        return Err(refuse(e.with_param("fallbacks"), Some(&chat), None));
    }
    let model = chat.model.as_str();
    let candidates = || std::iter::once(model).chain(google.as_deref()).filter(|m| key.may_use(m));
    if candidates().next().is_none() {
        let e = GatewayError::forbidden("model_not_allowed", format!("This key may not use the model '{model}'."));
        return Err(refuse(e.with_param("model"), Some(&chat), None));
    }
    let Some((resolved, upstream_model)) = candidates().find_map(|m| cfg.resolve(m)) else {
        return Err(refuse(GatewayError::unknown_model(model, &cfg.models_for(key)), Some(&chat), None));
    };
    let provider = resolved.provider;
    let mut target = Target { provider: provider.name.clone(), route: resolved.route.to_string(), upstream_model, advisor: None };
    // A chat request in the other provider's format: translated both ways.
    let upstream = upstream::api_of(&resolved, &target.upstream_model);
    let translate = Direction::between(api, upstream);
    upstream::served(api, &choice, provider, upstream, translate, model).map_err(|e| refuse(e.with_param("model"), Some(&chat), Some(&target)))?;
    if choice.compact {
        chat.stored = false;
    }
    let price = cfg.price_for(api, &provider.name, &target.upstream_model);
    if cfg.unpriced_models == UnpricedModels::Deny && price.is_none() && !choice.count_tokens {
        let e = GatewayError::bad_request(
            "model_not_priced",
            format!("The model '{model}' has no price configured, and this gateway refuses unpriced models."),
        );
        return Err(refuse(e.with_param("model"), Some(&chat), Some(&target)));
    }
    if !choice.count_tokens {
        target.advisor = inner_model(cfg, key, provider, translate.is_some(), &chat).map_err(|e| refuse(e, Some(&chat), Some(&target)))?;
    }
    let worst = worst_of(cfg, &chat, &target, price.as_ref());
    let body = upstream_body(cfg, api, &parsed, &resolved, &target.upstream_model, translate, &choice).map_err(|e| refuse(e, Some(&chat), Some(&target)))?;
    let way = upstream::Way {
        provider,
        api: translate.map_or(api, Direction::upstream_api),
        translate,
        upstream_model: &target.upstream_model,
        gemini_method,
        stream: chat.stream,
    };
    let headers = upstream::headers(cfg, &way, upstream::path(&way, &choice, path), body.as_ref().map(Vec::len), has_anthropic_version);
    let fallbacks = if choice.count_tokens || choice.compact { Vec::new() } else { resolved.fallbacks.to_vec() };
    // (An unpriced advisor makes the request unpriced: a budget in dollars could not hold it.)
    let priced = price.is_some() && target.advisor.as_deref().is_none_or(|a| a.price.is_some());
    let tool_names = translate.and_then(|d| d.tool_names(&parsed)).map(std::rc::Rc::new);
    Ok(Plan { chat, target, worst, priced, body, headers, cluster: provider.cluster.clone(), translate, tool_names, json_repair: resolved.json_repair, fallbacks, routed, prefix, rendered: None })
}

/// A request naming a registered prompt: rendered from the members just
/// parsed, then the rendered body is planned (the request as named is not
/// copied: it is only read again on a refusal).
fn plan_rendered(
    cfg: &Config,
    key: &KeyInfo,
    api: Api,
    parsed: &ParsedBody,
    path: &str,
    has_anthropic_version: bool,
    choice: Choice<'_>,
) -> Result<Plan, Box<Refusal>> {
    let refuse = |error| Box::new(Refusal { error, chat: Some(parsed.request.clone()), target: None });
    let not_rendered = || {
        let e = GatewayError::bad_request(NEEDS_RENDER, "The request names a prompt ('tollgate_prompt') this gateway did not render.");
        refuse(e.with_param(crate::prompts::MEMBER))
    };
    let registry = choice.prompts.ok_or_else(not_rendered)?;
    let members: Vec<(&str, &str)> = parsed.members().collect();
    let r = crate::prompts::render_members(api, &members, registry).map_err(refuse)?.ok_or_else(not_rendered)?;
    let mut plan = plan_for(cfg, key, api, &r.body, path, has_anthropic_version, Choice { prompts: None, ..choice })?;
    plan.rendered = Some((r.body, r.tag));
    Ok(plan)
}

/// A model the request runs within itself: Anthropic's advisor tool, or
/// the Responses API's image generation tool (an image model).
fn inner_model(
    cfg: &Config,
    key: &KeyInfo,
    provider: &crate::config::Provider,
    translated: bool,
    chat: &ChatRequest,
) -> Result<Option<Box<advisor::AdvisorTarget>>, GatewayError> {
    let mut inner = None;
    if let Some(a) = chat.advisor.as_ref() {
        inner = Some(Box::new(advisor::plan(cfg, key, provider, translated, a)?));
    }
    if let Some(t) = chat.image_tool.as_ref() {
        inner = Some(Box::new(advisor::image_tool(cfg, key, provider, translated, t, chat)?));
    }
    Ok(inner)
}

/// The body sent upstream (None: the client's, unchanged): translated to
/// the provider's format, or rewritten to name the upstream model (with the
/// output cap, usage in streams and cache breakpoints the route adds; none
/// of them on a count or a compaction).
fn upstream_body(
    cfg: &Config,
    api: Api,
    parsed: &ParsedBody,
    resolved: &crate::config::Resolved<'_>,
    upstream_model: &str,
    translate: Option<Direction>,
    choice: &Choice<'_>,
) -> Result<Option<Vec<u8>>, GatewayError> {
    let provider = resolved.provider;
    let opts = match choice.count_tokens || choice.compact {
        true => Rewrite { force_include_usage: false, output_cap: None, auto_cache: None },
        false => Rewrite {
            force_include_usage: cfg.force_stream_usage,
            output_cap: api.output_cap_field().or(provider.output_cap_field).map(|f| (f, cfg.default_max_tokens)),
            auto_cache: resolved.auto_cache,
        },
    };
    match translate {
        Some(d) => Some(d.request(parsed, upstream_model, provider.output_cap_field.unwrap_or("max_tokens"), cfg.default_max_tokens)),
        // (Always rewritten: every model it names is the upstream one.)
        None if api == Api::GeminiEmbedContent || (api == Api::GeminiGenerateContent && choice.count_tokens && parsed.names_model_inside()) => {
            Some(parsed.rewrite_gemini_models(upstream_model))
        }
        None => parsed.rewrite(upstream_model, opts).map(Ok),
    }
    .transpose()
}

/// The model the request runs, as chosen besides its body.
struct Chosen {
    /// The auto router picked it.
    routed: bool,
    /// Gemini's native API: the model's `google/` name, routed too.
    google: Option<String>,
    /// Gemini's native API: the method its path named.
    gemini_method: Option<crate::gemini::Method>,
}

/// Sets `chat.model` from what names it besides the body: an Azure
/// deployment in the path, OpenAI's default moderation model, a fallback,
/// the auto router, or Gemini's path (which also says whether it streams).
fn choose_model(chat: &mut ChatRequest, api: Api, deployment: Option<&str>, path: &str, parsed: &ParsedBody<'_>, choice: &Choice<'_>) -> Result<Chosen, Box<Refusal>> {
    let refuse = |error: GatewayError, chat: Option<&ChatRequest>| Box::new(Refusal { error: error.with_param("model"), chat: chat.cloned(), target: None });
    if let Some(d) = deployment {
        if !crate::request::valid_model_name(d) {
            return Err(refuse(GatewayError::bad_request("invalid_model", "The deployment in the path must be 1 to 256 visible ASCII characters."), None));
        }
        chat.model = d.to_string();
    }
    if api == Api::OpenAiModerations && chat.model.is_empty() {
        chat.model = DEFAULT_MODERATION_MODEL.to_string();
    }
    let mut routed = false;
    if !api.is_gemini() {
        if let Some(m) = choice.model {
            chat.model = m.to_string();
        } else if chat.model == tollgate_protocol::routing::AUTO {
            let Some(r) = choice.auto else {
                let e = GatewayError::bad_request(
                    "auto_route_unavailable",
                    "The model 'auto' needs a feature (x-tollgate-feature) whose routing policy has chosen a model.",
                );
                return Err(refuse(e, Some(chat)));
            };
            chat.model = r.model.clone();
            routed = true;
        } else if let Some(r) = choice.auto.filter(|r| r.bind) {
            chat.model = r.model.clone();
            routed = true;
        }
        return Ok(Chosen { routed, google: None, gemini_method: None });
    }
    // Gemini's native API names the model and streaming in the path; its
    // model ids are routed as they are or as `google/<id>`.
    let Some((m, method)) = crate::gemini::path_method(path).filter(|(m, _)| crate::request::valid_model_name(m)) else {
        return Err(refuse(GatewayError::bad_request("invalid_model", "The model in the path must be 1 to 256 visible ASCII characters."), None));
    };
    parsed.check_gemini(method).map_err(|e| Box::new(Refusal { error: e, chat: None, target: None }))?;
    // (A fallback names its own model: the path's failed.)
    let m = choice.model.unwrap_or(m);
    chat.model = m.to_string();
    chat.stream = method == crate::gemini::Method::Stream;
    Ok(Chosen { routed, google: (!m.starts_with("google/")).then(|| format!("google/{m}")), gemini_method: Some(method) })
}

pub mod advisor;
mod upstream;
#[cfg(test)]
mod tests;
