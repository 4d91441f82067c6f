//! Route planning: from a complete request body to what goes upstream.
//!
//! [`plan`] parses the body, checks the key's permissions, resolves the
//! route, checks the price rule, and computes the budget's worst case and
//! the rewrite (body, path, authority, cluster, credential). Pure: the glue
//! reserves the budget between [`plan`] and [`Plan::apply`] and writes the
//! result to Envoy.

use crate::budget::Amount;
use crate::config::{Config, KeyInfo, ProviderFormat, UnpricedModels, UpstreamApi};
use crate::translate::{Direction, Upstream};
use crate::errors::GatewayError;
use crate::request::{parse_chat, upstream_query, Api, ChatRequest, Rewrite};
use crate::usage::Usage;

/// Where a request goes (recorded in its usage record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub provider: String,
    pub route: String,
    pub upstream_model: String,
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
    /// The new body, when it changes.
    pub body: Option<Vec<u8>>,
    /// Request headers to set (credentials included: never log these).
    pub headers: Vec<(String, String)>,
    pub cluster: String,
    /// A request in the other provider format: the body went up translated,
    /// and the answer must come back translated ([`crate::translate`]).
    pub translate: Option<Direction>,
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
    /// Anthropic's token counting (`POST /v1/messages/count_tokens`):
    /// routed like the messages request it counts, to an Anthropic-format
    /// provider only, with nothing added (no output cap: the endpoint
    /// refuses `max_tokens`), free, so neither priced nor sent to fallbacks.
    pub count_tokens: bool,
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
    let parsed = parse_chat(api, body).map_err(|e| refuse(e, None, None))?;
    let mut chat = parsed.request.clone();
    // A named prompt: rendered from the members just parsed, then the
    // rendered body is planned.
    if chat.names_prompt {
        let Some(registry) = choice.prompts else {
            let e = GatewayError::bad_request(NEEDS_RENDER, "The request names a prompt ('tollgate_prompt') this gateway did not render.");
            return Err(refuse(e.with_param(crate::prompts::MEMBER), Some(&chat), None));
        };
        let members: Vec<(&str, &str)> = parsed.members().collect();
        let Some(r) = crate::prompts::render_members(api, &members, registry).map_err(|e| refuse(e, Some(&chat), None))? else {
            let e = GatewayError::bad_request(NEEDS_RENDER, "The request names a prompt ('tollgate_prompt') this gateway did not render.");
            return Err(refuse(e.with_param(crate::prompts::MEMBER), Some(&chat), None));
        };
        let mut plan = plan_for(cfg, key, api, &r.body, path, has_anthropic_version, Choice { prompts: None, ..choice })?;
        plan.rendered = Some((r.body, r.tag));
        return Ok(plan);
    }
    // From the members the parser found: no second parse.
    let prefix = if choice.fingerprint && matches!(api, Api::OpenAiChat | Api::AnthropicMessages) {
        let raw = |n: &str| parsed.members().find(|(k, _)| *k == n).map(|(_, v)| v);
        crate::fingerprint::fingerprint_raw([raw("tools"), raw("system"), raw("messages")], 0)
    } else {
        None
    };
    let mut routed = false;
    if api != Api::GeminiGenerateContent {
        if let Some(m) = choice.model {
            chat.model = m.to_string();
        } else if chat.model == tollgate_protocol::routing::AUTO {
            let Some(r) = choice.auto else {
                let e = GatewayError::bad_request(
                    "auto_route_unavailable",
                    "The model 'auto' needs a feature (x-tollgate-feature) whose routing policy has chosen a model.",
                );
                return Err(refuse(e.with_param("model"), Some(&chat), None));
            };
            chat.model = r.model.clone();
            routed = true;
        } else if let Some(r) = choice.auto.filter(|r| r.bind) {
            chat.model = r.model.clone();
            routed = true;
        }
    }
    // Gemini's native API names the model and streaming in the path; its
    // model ids are routed as they are or as `google/<id>`.
    let mut google = None;
    if api == Api::GeminiGenerateContent {
        let Some((m, stream)) = crate::gemini::path_model(path).filter(|(m, _)| crate::request::valid_model_name(m)) else {
            let e = GatewayError::bad_request("invalid_model", "The model in the path must be 1 to 256 visible ASCII characters.");
            return Err(refuse(e.with_param("model"), None, None));
        };
        chat.model = m.to_string();
        chat.stream = stream;
        google = Some(format!("google/{m}"));
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
    let target = Target { provider: provider.name.clone(), route: resolved.route.to_string(), upstream_model };
    // A chat request in the other provider's format: translated both ways.
    let upstream = match provider.format {
        ProviderFormat::Anthropic => Upstream::Anthropic,
        ProviderFormat::Gemini => Upstream::ChatOnly,
        ProviderFormat::Openai if resolved.upstream_api.responses(&target.upstream_model) => Upstream::Responses,
        ProviderFormat::Openai if resolved.upstream_api == UpstreamApi::ChatCompletions => Upstream::ChatOnly,
        ProviderFormat::Openai => Upstream::Chat,
    };
    let translate = Direction::between(api, upstream);
    if choice.count_tokens && (translate.is_some() || provider.format != ProviderFormat::Anthropic) {
        // Not found, as Anthropic-format clients expect of a gateway that
        // cannot count: Claude Code then counts locally.
        let e = GatewayError::not_found(format!(
            "Token counting is served for models routed to an Anthropic-format provider; the model '{model}' is served by provider '{}'.",
            provider.name
        ));
        return Err(refuse(e.with_param("model"), Some(&chat), Some(&target)));
    }
    if translate.is_none() && !provider.format.serves(api) {
        let e = match (provider.format, api) {
            (_, Api::OpenAiEmbeddings | Api::OpenAiCompletions | Api::OpenAiResponses | Api::GeminiGenerateContent) => GatewayError::bad_request(
                "wrong_api_for_model",
                format!("The model '{model}' is served by provider '{}', which has no {} API.", provider.name, api.describe()),
            ),
            _ => {
                let (name, p) = match provider.format {
                    ProviderFormat::Openai => ("OpenAI chat completions", "/v1/chat/completions"),
                    ProviderFormat::Anthropic => ("Anthropic messages", "/v1/messages"),
                    ProviderFormat::Gemini => ("Gemini generateContent", "/v1beta/models/{model}:generateContent"),
                };
                GatewayError::bad_request(
                    "wrong_api_for_model",
                    format!("The model '{model}' is served by provider '{}', which speaks the {name} API; send this request to {p}.", provider.name),
                )
            }
        };
        return Err(refuse(e.with_param("model"), Some(&chat), Some(&target)));
    }
    let price = cfg.price(&provider.name, &target.upstream_model);
    if cfg.unpriced_models == UnpricedModels::Deny && price.is_none() && !choice.count_tokens {
        let e = GatewayError::bad_request(
            "model_not_priced",
            format!("The model '{model}' has no price configured, and this gateway refuses unpriced models."),
        );
        return Err(refuse(e.with_param("model"), Some(&chat), Some(&target)));
    }
    // The output side is a real bound: the cap goes upstream when the client set none.
    let worst_usage = Usage {
        input_tokens: chat.estimated_input_tokens,
        output_tokens: chat.output_bound(cfg.default_max_tokens),
        ..Default::default()
    };
    let worst = Amount { micros: price.map(|p| p.cost_micros(&worst_usage)).unwrap_or(0), tokens: worst_usage.budget_tokens() };
    let opts = match choice.count_tokens {
        true => Rewrite { force_include_usage: false, output_cap: None, auto_cache: None },
        false => Rewrite {
            force_include_usage: cfg.force_stream_usage,
            output_cap: api.output_cap_field().or(provider.output_cap_field).map(|f| (f, cfg.default_max_tokens)),
            auto_cache: resolved.auto_cache,
        },
    };
    let body = match translate {
        Some(d) => Some(d.request(&parsed, &target.upstream_model, provider.output_cap_field.unwrap_or("max_tokens"), cfg.default_max_tokens)),
        None => parsed.rewrite(&target.upstream_model, opts).map(Ok),
    }
    .transpose()
    .map_err(|e| refuse(e, Some(&chat), Some(&target)))?;
    let upstream_api = translate.map_or(api, Direction::upstream_api);
    let upstream_path = match (upstream_api, provider.format) {
        _ if choice.count_tokens => format!("{}/messages/count_tokens{}", provider.path_prefix, upstream_query(path)),
        (Api::GeminiGenerateContent, _) => {
            let method = if chat.stream { "streamGenerateContent" } else { "generateContent" };
            format!("{}/models/{}:{method}{}", provider.path_prefix, target.upstream_model, upstream_query(path))
        }
        // Gemini answers OpenAI-format requests on its compatible endpoint.
        (_, ProviderFormat::Gemini) => format!("{}/openai{}{}", provider.path_prefix, upstream_api.upstream_suffix(), upstream_query(path)),
        _ => format!("{}{}{}", provider.path_prefix, upstream_api.upstream_suffix(), upstream_query(path)),
    };
    let mut headers = vec![
        (":path".to_string(), upstream_path),
        (":authority".to_string(), provider.host.clone()),
        (cfg.cluster_header.clone(), provider.cluster.clone()),
    ];
    if let Some(b) = &body {
        headers.push(("content-length".to_string(), b.len().to_string()));
    }
    // The credential and headers of the provider's format (translated requests included).
    match provider.format {
        ProviderFormat::Openai => {
            if let Some(k) = &provider.api_key {
                headers.push(("authorization".to_string(), format!("Bearer {}", k.expose())));
            }
        }
        ProviderFormat::Anthropic => {
            if let Some(k) = &provider.api_key {
                headers.push(("x-api-key".to_string(), k.expose().to_string()));
            }
            if !has_anthropic_version || translate.is_some() {
                headers.push(("anthropic-version".to_string(), provider.anthropic_version.clone()));
            }
        }
        ProviderFormat::Gemini => {
            if let Some(k) = &provider.api_key {
                if upstream_api == Api::GeminiGenerateContent {
                    headers.push(("x-goog-api-key".to_string(), k.expose().to_string()));
                } else {
                    headers.push(("authorization".to_string(), format!("Bearer {}", k.expose())));
                }
            }
        }
    }
    let fallbacks = if choice.count_tokens { Vec::new() } else { resolved.fallbacks.to_vec() };
    Ok(Plan { chat, target, worst, body, headers, cluster: provider.cluster.clone(), translate, json_repair: resolved.json_repair, fallbacks, routed, prefix, rendered: None })
}

/// `GET /v1/models`: the models a key may name exactly, in the list shape
/// of the client's API. Anthropic clients (they send `anthropic-version`:
/// the Anthropic SDKs, Claude Code's gateway model discovery) get
/// Anthropic's (`ModelInfo` = `type`, `id`, `display_name`, `created_at`,
/// "an epoch value if the release date is unknown", and the page's
/// `has_more`, `first_id`, `last_id`: platform.claude.com/docs/en/api/models);
/// every other client OpenAI's (`object: list`, `id`, `object`, `created`,
/// `owned_by`). One page: the route table is small.
pub fn models_document(models: &[(&str, &str)], anthropic: bool) -> String {
    let data: Vec<_> = models.iter().map(|(id, owner)| model_item(id, owner, anthropic)).collect();
    let doc = if anthropic {
        let (first, last) = (models.first().map(|m| m.0), models.last().map(|m| m.0));
        serde_json::json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
    } else {
        serde_json::json!({"object": "list", "data": data})
    };
    doc.to_string()
}

fn model_item(id: &str, owner: &str, anthropic: bool) -> serde_json::Value {
    match anthropic {
        true => serde_json::json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"}),
        false => serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner}),
    }
}

/// `GET /v1/models/{id}`: the model when this key may use it and a route
/// serves it (a wildcard's too), in the client's shape; else 404.
pub fn model_document(cfg: &Config, key: &KeyInfo, id: &str, anthropic: bool) -> Result<String, GatewayError> {
    let served = crate::request::valid_model_name(id) && key.may_use(id);
    match cfg.resolve(id).filter(|_| served) {
        Some((r, _)) => Ok(model_item(id, &r.provider.name, anthropic).to_string()),
        None => Err(GatewayError::no_such_model(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    const CFG: &str = r#"{
      "providers": [
        {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
        {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
      "routes": [{"model": "cheap", "provider": "openai", "upstream_model": "gpt-5.4-mini"},
                 {"model": "openai/*", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/gpt-5.4-mini": {"input": 1000000, "output": 2000000},
                  "openai/text-embedding-3-small": {"input": 20000, "output": 0}},
      "unpriced_models": "deny"}"#;

    fn key(models: Option<Vec<&str>>) -> Rc<KeyInfo> {
        Rc::new(KeyInfo {
            id: "k".into(),
            key_hash: "h".into(),
            team: "t".into(),
            project: "p".into(),
            models: models.map(|ms| ms.into_iter().map(|m| crate::config::Pattern::parse(m).unwrap()).collect()),
            projects: vec![],
            tags: Default::default(),
        })
    }

    #[test]
    fn plans_the_rewrite_headers_and_worst_case() {
        let cfg = Config::from_json(CFG.as_bytes()).unwrap();
        let body = br#"{"model":"cheap","messages":[{"role":"user","content":"12345678"}],"max_tokens":100}"#;
        let p = plan(&cfg, &key(None), Api::OpenAiChat, body, "/v1/chat/completions?x=1", false).unwrap();
        assert_eq!(p.target, Target { provider: "openai".into(), route: "cheap".into(), upstream_model: "gpt-5.4-mini".into() });
        let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
        assert_eq!(h[":path"], "/v1/chat/completions?x=1");
        assert_eq!(h[":authority"], "api.openai.com");
        assert_eq!(h["x-tollgate-cluster"], "openai");
        assert_eq!(h["authorization"], "Bearer sk-up");
        let new_body: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(new_body["model"], "gpt-5.4-mini");
        assert_eq!(h["content-length"], p.body.as_ref().unwrap().len().to_string());
        // input estimate: the messages' raw JSON / 4; output: the client's cap
        let input = p.chat.estimated_input_tokens;
        assert_eq!(p.worst.tokens, input + 100);
        assert_eq!(p.worst.micros, (input * 1_000_000 + 100 * 2_000_000).div_ceil(1_000_000));
    }

    #[test]
    fn refusals_carry_what_was_known() {
        let cfg = Config::from_json(CFG.as_bytes()).unwrap();
        let r = plan(&cfg, &key(Some(vec!["cheap"])), Api::OpenAiChat, br#"{"model":"openai/gpt-5.4","messages":[]}"#, "/", false)
            .unwrap_err();
        assert_eq!((r.error.code, r.chat.is_some(), r.target.is_some()), ("model_not_allowed", true, false));
        // An embeddings request for an Anthropic model has no translation: refused by name.
        let r = plan(&cfg, &key(None), Api::OpenAiEmbeddings, br#"{"model":"claude-x","input":"x"}"#, "/", false).unwrap_err();
        assert_eq!((r.error.code, r.target.map(|t| t.provider)), ("wrong_api_for_model", Some("anthropic".into())));
        let r = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"openai/gpt-9","messages":[]}"#, "/", false).unwrap_err();
        assert_eq!(r.error.code, "model_not_priced");
        let r = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"nope","messages":[]}"#, "/", false).unwrap_err();
        assert_eq!(r.error.code, "model_not_found");
        let r = plan(&cfg, &key(None), Api::OpenAiChat, b"{", "/", false).unwrap_err();
        assert_eq!((r.error.code, r.chat.is_none()), ("invalid_json", true));
    }

    #[test]
    fn anthropic_gets_its_version_unless_the_client_sent_one() {
        let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
        let body = br#"{"model":"claude-x","max_tokens":5,"messages":[]}"#;
        let p = plan(&cfg, &key(None), Api::AnthropicMessages, body, "/v1/messages", false).unwrap();
        assert!(p.headers.iter().any(|(k, v)| k == "anthropic-version" && v == "2023-06-01"));
        assert!(!p.headers.iter().any(|(k, _)| k == "x-api-key"), "Envoy injects it: none configured");
        assert!(p.body.is_none(), "nothing to change");
        let p = plan(&cfg, &key(None), Api::AnthropicMessages, body, "/v1/messages", true).unwrap();
        assert!(!p.headers.iter().any(|(k, _)| k == "anthropic-version"));
    }

    #[test]
    fn models_are_listed_in_the_clients_shape() {
        let models = [("cheap", "openai"), ("claude-sonnet-4-6", "anthropic")];
        let openai: serde_json::Value = serde_json::from_str(&models_document(&models, false)).unwrap();
        assert_eq!(
            openai,
            serde_json::json!({"object": "list", "data": [
                {"id": "cheap", "object": "model", "created": 0, "owned_by": "openai"},
                {"id": "claude-sonnet-4-6", "object": "model", "created": 0, "owned_by": "anthropic"}]})
        );
        let anthropic: serde_json::Value = serde_json::from_str(&models_document(&models, true)).unwrap();
        assert_eq!(anthropic["data"][1], serde_json::json!({"type": "model", "id": "claude-sonnet-4-6",
            "display_name": "claude-sonnet-4-6", "created_at": "1970-01-01T00:00:00Z"}));
        assert_eq!((&anthropic["first_id"], &anthropic["last_id"], &anthropic["has_more"]), (&"cheap".into(), &"claude-sonnet-4-6".into(), &false.into()));
        // One model: a wildcard's too, never one the key may not use.
        let cfg = Config::from_json(CFG.as_bytes()).unwrap();
        let one: serde_json::Value = serde_json::from_str(&model_document(&cfg, &key(None), "openai/gpt-9", false).unwrap()).unwrap();
        assert_eq!(one, serde_json::json!({"id": "openai/gpt-9", "object": "model", "created": 0, "owned_by": "openai"}));
        let e = model_document(&cfg, &key(Some(vec!["cheap"])), "openai/gpt-9", true).unwrap_err();
        assert_eq!((e.status, e.code), (404, "model_not_found"));
        assert_eq!(model_document(&cfg, &key(None), "nope", true).unwrap_err().status, 404);
        let empty: serde_json::Value = serde_json::from_str(&models_document(&[], true)).unwrap();
        assert_eq!(empty, serde_json::json!({"data": [], "has_more": false, "first_id": null, "last_id": null}));
    }

    #[test]
    fn a_token_count_goes_to_the_anthropic_provider_as_counted_with_nothing_added() {
        let routes = r#""routes": [{"model": "sonnet", "provider": "anthropic", "upstream_model": "claude-sonnet-4-5",
                                    "auto_cache": {"min_tokens": 1}, "fallbacks": ["claude-y"]},"#;
        let priced = r#""pricing": {"anthropic/claude-sonnet-4-5": {"input": 3000000, "output": 15000000},"#;
        let cfg = Config::from_json(CFG.replace(r#""routes": ["#, routes).replace(r#""pricing": {"#, priced).as_bytes()).unwrap();
        let count = Choice { count_tokens: true, ..Default::default() };
        let body = br#"{"model":"sonnet","messages":[{"role":"user","content":"hi"}],"system":"be brief"}"#;
        let p = plan_for(&cfg, &key(None), Api::AnthropicMessages, body, "/v1/messages/count_tokens?beta=true", false, count).unwrap();
        let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
        assert_eq!((h[":path"].as_str(), h["anthropic-version"].as_str()), ("/v1/messages/count_tokens?beta=true", "2023-06-01"));
        assert_eq!((p.target.provider.as_str(), p.target.upstream_model.as_str()), ("anthropic", "claude-sonnet-4-5"));
        // The model rewritten, nothing added (no cache marker), no fallback.
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}], "system": "be brief"})
        );
        assert!(p.fallbacks.is_empty());
        // The same body as a messages request gets the route's cache marker and fallbacks.
        let m = plan(&cfg, &key(None), Api::AnthropicMessages, body, "/v1/messages", false).unwrap();
        assert!(String::from_utf8_lossy(m.body.as_ref().unwrap()).contains("cache_control"));
        assert_eq!(m.fallbacks, vec!["claude-y".to_string()]);
        // Free, so an unpriced model is counted even where unpriced models are refused.
        assert!(plan_for(&cfg, &key(None), Api::AnthropicMessages, br#"{"model":"claude-z","messages":[]}"#, "/", false, count).is_ok());
        // A model served in another format cannot be counted there: 404, as Claude Code expects.
        let r = plan_for(&cfg, &key(None), Api::AnthropicMessages, br#"{"model":"cheap","messages":[]}"#, "/", false, count).unwrap_err();
        assert_eq!((r.error.status, r.error.code), (404, "unknown_endpoint"));
        assert!(r.error.message.contains("provider 'openai'"), "{}", r.error.message);
        // The key's model list holds as for any request.
        let r = plan_for(&cfg, &key(Some(vec!["cheap"])), Api::AnthropicMessages, body, "/", false, count).unwrap_err();
        assert_eq!(r.error.code, "model_not_allowed");
    }

    #[test]
    fn embeddings_reserve_input_only_and_get_no_output_cap() {
        let cfg = Config::from_json(CFG.replace(r#""api_key": "sk-up""#, r#""api_key": "sk-up", "output_cap_field": "max_tokens""#).as_bytes()).unwrap();
        let body = br#"{"model":"openai/text-embedding-3-small","input":["abcdefgh","ijkl"],"encoding_format":"float"}"#;
        let p = plan(&cfg, &key(None), Api::OpenAiEmbeddings, body, "/v1/embeddings", false).unwrap();
        let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
        assert_eq!(h[":path"], "/v1/embeddings");
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent, serde_json::json!({"model": "text-embedding-3-small", "input": ["abcdefgh", "ijkl"], "encoding_format": "float"}));
        assert_eq!(p.worst.tokens, p.chat.estimated_input_tokens, "no output side");
        assert!(p.chat.estimated_input_tokens > 0);
        // Anthropic has no embeddings; a chat body on the embeddings path lacks `input`.
        let r = plan(&cfg, &key(None), Api::OpenAiEmbeddings, br#"{"model":"claude-x","input":"a"}"#, "/", false).unwrap_err();
        assert_eq!(r.error.code, "wrong_api_for_model");
        assert!(r.error.message.contains("no OpenAI embeddings API"), "{}", r.error.message);
        let r = plan(&cfg, &key(None), Api::OpenAiEmbeddings, br#"{"model":"cheap","messages":[]}"#, "/", false).unwrap_err();
        assert_eq!(r.error.code, "missing_input");
    }

    #[test]
    fn legacy_completions_bound_output_by_the_apis_default_and_best_of() {
        let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
        // No max_tokens: the API's own default (16) is the bound, and nothing is added upstream.
        let body = br#"{"model":"openai/gpt-3.5-turbo-instruct","prompt":"Say this is a test","n":2,"best_of":3,"stream":true}"#;
        let p = plan(&cfg, &key(None), Api::OpenAiCompletions, body, "/v1/completions", false).unwrap();
        assert_eq!(p.chat.output_bound(4096), 16 * 3, "best_of candidates are all billed");
        assert_eq!(p.worst.tokens, p.chat.estimated_input_tokens + 48);
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["stream_options"], serde_json::json!({"include_usage": true}), "usage forced as for chat");
        assert!(sent.get("max_completion_tokens").is_none() && sent.get("max_tokens").is_none());
        assert!(p.headers.iter().any(|(k, v)| k == ":path" && v == "/v1/completions"));
        let body = br#"{"model":"openai/gpt-3.5-turbo-instruct","prompt":["a","b"],"max_tokens":100}"#;
        let p = plan(&cfg, &key(None), Api::OpenAiCompletions, body, "/v1/completions", false).unwrap();
        assert_eq!(p.chat.output_bound(4096), 100);
        let r = plan(&cfg, &key(None), Api::OpenAiCompletions, br#"{"model":"cheap","messages":[]}"#, "/", false).unwrap_err();
        assert_eq!(r.error.code, "missing_prompt");
        let r = plan(&cfg, &key(None), Api::OpenAiCompletions, br#"{"model":"claude-x","prompt":"a"}"#, "/", false).unwrap_err();
        assert!(r.error.message.contains("no OpenAI completions API"), "{}", r.error.message);
    }

    #[test]
    fn responses_get_max_output_tokens_when_the_client_set_no_cap() {
        let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
        let body = br#"{"model":"cheap","input":"hi","previous_response_id":"resp_1","store":false,"stream":true}"#;
        let p = plan(&cfg, &key(None), Api::OpenAiResponses, body, "/v1/responses", false).unwrap();
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["max_output_tokens"], 4096);
        assert!(sent.get("max_completion_tokens").is_none() && sent.get("stream_options").is_none());
        assert_eq!((sent["previous_response_id"].as_str(), sent["store"].as_bool()), (Some("resp_1"), Some(false)));
        assert!(p.headers.iter().any(|(k, v)| k == ":path" && v == "/v1/responses"));
        let body = br#"{"model":"cheap","input":"hi","max_output_tokens":300}"#;
        let p = plan(&cfg, &key(None), Api::OpenAiResponses, body, "/v1/responses", false).unwrap();
        assert_eq!(p.chat.output_bound(4096), 300);
        assert!(p.body.as_ref().is_some_and(|b| !String::from_utf8_lossy(b).contains("4096")));
        // input may come from a stored prompt or a previous response
        assert!(plan(&cfg, &key(None), Api::OpenAiResponses, br#"{"model":"cheap","prompt":{"id":"pmpt_1"}}"#, "/", false).is_ok());
    }

    #[test]
    fn an_openai_chat_request_for_a_claude_model_goes_up_translated() {
        let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
        let body = br#"{"model":"claude-x","messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
        let p = plan(&cfg, &key(None), Api::OpenAiChat, body, "/v1/chat/completions", false).unwrap();
        assert_eq!(p.translate, Some(Direction::OpenAiToAnthropic));
        let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
        assert_eq!((h[":path"].as_str(), h["anthropic-version"].as_str()), ("/v1/messages", "2023-06-01"));
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["system"], serde_json::json!([{"type": "text", "text": "s"}]));
        assert_eq!(sent["max_tokens"], 4096);
        assert!(sent.get("stream_options").is_none());
        assert_eq!(p.worst.tokens, p.chat.estimated_input_tokens + 4096);
        let r = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"claude-x","messages":[],"n":3}"#, "/", false).unwrap_err();
        assert_eq!((r.error.code, r.error.param), ("untranslatable_field", Some("n")));
    }

    #[test]
    fn chat_and_anthropic_requests_for_a_responses_only_model_go_to_the_responses_api() {
        let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
        let chat = br#"{"model":"openai/gpt-5.1-codex","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
        let p = plan(&cfg, &key(None), Api::OpenAiChat, chat, "/v1/chat/completions", false).unwrap();
        assert_eq!(p.translate, Some(Direction::ChatToResponses));
        assert!(p.headers.iter().any(|(k, v)| k == ":path" && v == "/v1/responses"));
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent, serde_json::json!({"model": "gpt-5.1-codex", "input": [{"role": "user", "content": "hi"}], "stream": true,
                                            "store": false, "max_output_tokens": 4096}));
        // An Anthropic client: through chat (no stream_options, the effort kept beside tools: the Responses API takes both).
        let msgs = br#"{"model":"openai/gpt-5.3-codex","max_tokens":900,"stream":true,"thinking":{"type":"enabled","budget_tokens":20000},
                        "tools":[{"name":"Read","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"hi"}]}"#;
        let p = plan(&cfg, &key(None), Api::AnthropicMessages, msgs, "/v1/messages", false).unwrap();
        assert_eq!(p.translate, Some(Direction::AnthropicToResponses));
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!((sent["max_output_tokens"].as_u64(), &sent["reasoning"]), (Some(900), &serde_json::json!({"effort": "high"})));
        assert_eq!(sent["tools"][0]["name"], "Read");
        assert!(sent.get("stream_options").is_none());
        // Other models stay on chat completions; a route may say which API.
        let p = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"openai/gpt-5.4","messages":[]}"#, "/", false).unwrap();
        assert_eq!(p.translate, None);
        let forced = CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"")
            .replace(r#"{"model": "openai/*", "provider": "openai"}"#, r#"{"model": "openai/*", "provider": "openai", "upstream_api": "chat_completions"}, {"model": "r/*", "provider": "openai", "upstream_api": "responses"}"#);
        let cfg = Config::from_json(forced.as_bytes()).unwrap();
        assert_eq!(plan(&cfg, &key(None), Api::OpenAiChat, chat, "/", false).unwrap().translate, None);
        let p = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"r/gpt-6","messages":[]}"#, "/", false).unwrap();
        assert_eq!(p.translate, Some(Direction::ChatToResponses));
        // A Responses client for such a model is not translated.
        let p = plan(&cfg, &key(None), Api::OpenAiResponses, br#"{"model":"r/gpt-6","input":"x"}"#, "/v1/responses", false).unwrap();
        assert_eq!(p.translate, None);
        for (route, field) in [(r#"{"model": "x", "provider": "anthropic", "upstream_api": "responses"}"#, "routes[0].upstream_api"),
                               (r#"{"model": "x", "provider": "openai", "upstream_api": "assistants"}"#, "routes[0].upstream_api")] {
            let bad = CFG.replace(r#""routes": [{"model": "cheap", "provider": "openai", "upstream_model": "gpt-5.4-mini"},"#, &format!(r#""routes": [{route},"#));
            let e = Config::from_json(bad.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn gemini_native_requests_name_the_model_in_the_path_and_chat_goes_to_its_openai_endpoint() {
        let cfg = Config::from_json(br#"{
          "providers": [{"name": "google", "format": "gemini", "cluster": "google", "host": "generativelanguage.googleapis.com", "api_key": "g-up"}],
          "routes": [{"model": "google/*", "provider": "google"}],
          "pricing": {"google/gemini-2.5-flash": {"input": 300000, "output": 2500000}}}"#).unwrap();
        let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"temperature":0.2}}"#;
        let p = plan(&cfg, &key(None), Api::GeminiGenerateContent, body, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", false).unwrap();
        let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
        assert_eq!(h[":path"], "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
        assert_eq!(h["x-goog-api-key"], "g-up");
        assert!(p.chat.stream && p.target.route == "google/*" && p.target.upstream_model == "gemini-2.5-flash");
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["generationConfig"], serde_json::json!({"temperature": 0.2, "maxOutputTokens": 4096}));
        let body = br#"{"contents":[],"generationConfig":{"maxOutputTokens":50,"candidateCount":2}}"#;
        let p = plan(&cfg, &key(None), Api::GeminiGenerateContent, body, "/v1beta/models/google/gemini-2.5-flash:generateContent", false).unwrap();
        assert!(p.body.is_none() && !p.chat.stream);
        assert_eq!(p.chat.output_bound(4096), 100);
        // an OpenAI chat request goes to Gemini's OpenAI-compatible endpoint
        let p = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"google/gemini-2.5-flash","messages":[]}"#, "/v1/chat/completions", false).unwrap();
        let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
        assert_eq!((h[":path"].as_str(), h["authorization"].as_str()), ("/v1beta/openai/chat/completions", "Bearer g-up"));
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!((sent["model"].as_str(), sent["max_tokens"].as_u64()), (Some("gemini-2.5-flash"), Some(4096)));
        let r = plan(&cfg, &key(None), Api::GeminiGenerateContent, b"{}", "/v1beta/models/gemini-2.5-flash:generateContent", false).unwrap_err();
        assert_eq!(r.error.code, "missing_contents");
    }
}
