//! The upstream side of a plan once the route is known: which API of the
//! provider serves the request (and whether it can), the path it goes to,
//! and the headers that carry it there (the credential included).

use super::Choice;
use crate::config::{Config, Provider, ProviderFormat, Resolved, UpstreamApi};
use crate::errors::GatewayError;
use crate::gemini::Method;
use crate::request::{upstream_query, Api};
use crate::translate::{Direction, Upstream};

/// The API a route's provider is reached on.
pub(super) fn api_of(resolved: &Resolved<'_>, upstream_model: &str) -> Upstream {
    match resolved.provider.format {
        ProviderFormat::Anthropic => Upstream::Anthropic,
        ProviderFormat::Gemini => Upstream::ChatOnly,
        ProviderFormat::Openai if resolved.upstream_api.responses(upstream_model) => Upstream::Responses,
        ProviderFormat::Openai if resolved.upstream_api == UpstreamApi::ChatCompletions => Upstream::ChatOnly,
        ProviderFormat::Openai => Upstream::Chat,
    }
}

/// Whether `provider` can serve a request of `api` as `choice` asks
/// (translated when `translate` is set): a count, a compaction and every
/// API but chat each have their own rule.
pub(super) fn served(api: Api, choice: &Choice<'_>, provider: &Provider, upstream: Upstream, translate: Option<Direction>, model: &str) -> Result<(), GatewayError> {
    // A count goes to a provider of the client's own format (Anthropic's
    // count_tokens, Gemini's countTokens), or is not found, as
    // Anthropic-format clients expect of a gateway that cannot count:
    // Claude Code then counts locally.
    let counts_here = match provider.format {
        ProviderFormat::Anthropic => api == Api::AnthropicMessages,
        ProviderFormat::Gemini => api == Api::GeminiGenerateContent,
        ProviderFormat::Openai => matches!(api, Api::OpenAiResponses | Api::OpenAiModerations),
    };
    if choice.count_tokens && (translate.is_some() || !counts_here) {
        let what = match api {
            Api::OpenAiModerations => "Moderation is served for models routed to an OpenAI-format provider",
            _ => "Token counting is served for models routed to a provider of the request's own format (Anthropic, Gemini, OpenAI's Responses API)",
        };
        return Err(GatewayError::not_found(format!("{what}; the model '{model}' is served by provider '{}'.", provider.name)));
    }
    if choice.compact && (translate.is_some() || !matches!(upstream, Upstream::Chat | Upstream::Responses)) {
        return Err(GatewayError::bad_request(
            "wrong_api_for_model",
            format!(
                "Compaction (POST /v1/responses/compact) is served for models routed to an OpenAI-format provider's Responses API; the model '{model}' is served by provider '{}' on another API.",
                provider.name
            ),
        ));
    }
    if translate.is_some() || provider.format.serves(api) {
        return Ok(());
    }
    Err(match (provider.format, api) {
        (_, Api::OpenAiEmbeddings | Api::OpenAiCompletions | Api::OpenAiResponses | Api::OpenAiImages | Api::OpenAiImageEdits | Api::OpenAiTranscriptions | Api::OpenAiTranslations | Api::OpenAiSpeech | Api::OpenAiDecisions | Api::GeminiGenerateContent | Api::GeminiEmbedContent) => GatewayError::bad_request(
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
    })
}

/// How a request reaches its provider.
pub(super) struct Way<'a> {
    pub provider: &'a Provider,
    /// The API it is sent to (the client's, or the one it is translated for).
    pub api: Api,
    pub translate: Option<Direction>,
    pub upstream_model: &'a str,
    /// The Gemini method the client's path named.
    pub gemini_method: Option<Method>,
    pub stream: bool,
}

/// The upstream `:path`. The client's query string belongs to its own API
/// (the Anthropic SDK's `?beta=true`, Azure OpenAI's `api-version`): it
/// goes on only to a provider of that API. Google's frontend refuses a
/// parameter it does not bind ("Cannot bind query parameter"), so Claude
/// Code's requests translated for Gemini failed, and so would an OpenAI
/// client's own query on Gemini's OpenAI-compatible endpoint.
pub(super) fn path(way: &Way<'_>, choice: &Choice<'_>, client_path: &str) -> String {
    let (provider, model) = (way.provider, way.upstream_model);
    let compat_gemini = provider.format == ProviderFormat::Gemini && !way.api.is_gemini();
    let query = match way.translate {
        None if !compat_gemini => upstream_query(client_path),
        _ => String::new(),
    };
    let prefix = &provider.path_prefix;
    match (way.api, provider.format) {
        (Api::GeminiGenerateContent, _) if choice.count_tokens => format!("{prefix}/models/{model}:countTokens{query}"),
        (Api::OpenAiResponses, _) if choice.count_tokens => format!("{prefix}/responses/input_tokens{query}"),
        (Api::OpenAiModerations, _) => format!("{prefix}/moderations{query}"),
        (Api::OpenAiResponses, _) if choice.compact => format!("{prefix}/responses/compact{query}"),
        _ if choice.count_tokens => format!("{prefix}/messages/count_tokens{query}"),
        // (The method the path named; a translated request has none and generates.)
        (a, _) if a.is_gemini() => {
            let method = way.gemini_method.map_or(if way.stream { "streamGenerateContent" } else { "generateContent" }, Method::name);
            format!("{prefix}/models/{model}:{method}{query}")
        }
        // Gemini answers OpenAI-format requests on its compatible endpoint.
        (_, ProviderFormat::Gemini) => format!("{prefix}/openai{}{query}", way.api.upstream_suffix()),
        _ => format!("{prefix}{}{query}", way.api.upstream_suffix()),
    }
}

/// The request headers to set: where it goes (path, authority, cluster),
/// the new body's length, and the credential and headers of the
/// provider's format (translated requests included).
pub(super) fn headers(cfg: &Config, way: &Way<'_>, path: String, body_len: Option<usize>, has_anthropic_version: bool) -> Vec<(String, String)> {
    let provider = way.provider;
    let mut headers = vec![
        (":path".to_string(), path),
        (":authority".to_string(), provider.host.clone()),
        (cfg.cluster_header.clone(), provider.cluster.clone()),
    ];
    if let Some(n) = body_len {
        headers.push(("content-length".to_string(), n.to_string()));
    }
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
            if !has_anthropic_version || way.translate.is_some() {
                headers.push(("anthropic-version".to_string(), provider.anthropic_version.clone()));
            }
        }
        ProviderFormat::Gemini => {
            if let Some(k) = &provider.api_key {
                if way.api.is_gemini() {
                    headers.push(("x-goog-api-key".to_string(), k.expose().to_string()));
                } else {
                    headers.push(("authorization".to_string(), format!("Bearer {}", k.expose())));
                }
            }
        }
    }
    headers
}
