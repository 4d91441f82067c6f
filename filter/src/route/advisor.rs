//! Anthropic's advisor tool: another model runs inside the request, at the
//! same provider, billed at its own rates and reported apart from the
//! request's usage (`usage.iterations`, `advisor_message`). It is held to
//! what the executor is held to: the key must be allowed the model, the
//! gateway must route it to the provider serving the request, it must be
//! priced (under `unpriced_models: deny`), and its calls are reserved.
//!
//! The tool's `model` goes upstream as the client wrote it, so it must be
//! the provider's own id (the route may not rename it). The reservation
//! holds `max_uses` calls of the whole estimated input and `max_tokens` of
//! output each; without them (Claude Code sends neither) it holds one call
//! of `default_max_tokens`, an estimate: Anthropic bounds neither, and what
//! ran is charged from the answer's usage.
//!
//! The Responses API's image generation tool is the same kind of thing (a
//! GPT image model, at the provider serving the request, reported apart in
//! `tool_usage.image_gen`), held to the same rules: its calls reserve one
//! image each at the tool's quality and size, `max_tool_calls` calls or
//! one (an estimate: the API bounds the calls by nothing else).

use super::Target;
use crate::budget::Amount;
use crate::config::{Config, KeyInfo, Provider, ProviderFormat, UnpricedModels};
use crate::errors::GatewayError;
use crate::pricing::Price;
use crate::request::server_tools::{Advisor, ImageTool};
use crate::request::ChatRequest;
use crate::usage::Usage;

/// What runs within a request besides its own model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Companion {
    /// Anthropic's advisor tool.
    Advisor,
    /// The Responses API's image generation tool.
    ImageGeneration,
}

impl Companion {
    /// Its name in records (`<request id>-<name>`, `routed_by: "<name>: <request id>"`).
    pub fn name(self) -> &'static str {
        match self {
            Companion::Advisor => "advisor",
            Companion::ImageGeneration => "image_generation",
        }
    }

    fn described(self) -> &'static str {
        match self {
            Companion::Advisor => "advisor",
            Companion::ImageGeneration => "image generation",
        }
    }
}

/// The model a request runs besides its own (an advisor, an image
/// generation tool): where it is routed, and its reservation's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisorTarget {
    pub kind: Companion,
    /// The model as the tool names it (and as it goes upstream).
    pub model: String,
    pub route: String,
    /// Calls and output tokens a call the reservation holds.
    pub calls: u64,
    pub output_per_call: u64,
    /// Its price (looked up once: reserved, checked and charged with it).
    pub price: Option<Price>,
}

fn shown(s: &str) -> String {
    tollgate_protocol::text::clean_field(s, 64)
}

/// Routes the advisor of a request served by `provider` (`translated`:
/// in another provider's format). Every refusal names `tools`.
pub fn plan(cfg: &Config, key: &KeyInfo, provider: &Provider, translated: bool, advisor: &Advisor) -> Result<AdvisorTarget, GatewayError> {
    let bad = |code, msg: String| GatewayError::bad_request(code, msg).with_param("tools");
    let (model, max_uses, max_tokens) = match advisor {
        Advisor::Unreadable(why) => return Err(bad("invalid_request", (*why).to_string())),
        Advisor::Offered { model, max_uses, max_tokens } => (model.as_str(), *max_uses, *max_tokens),
    };
    if translated || provider.format != ProviderFormat::Anthropic {
        return Err(bad(
            "unsupported_field",
            format!("The advisor tool is run by Anthropic's Messages API; this request's model is served by provider '{}', which has none.", provider.name),
        ));
    }
    let (route, price) = route_companion(cfg, key, provider, model, Companion::Advisor)?;
    Ok(AdvisorTarget {
        kind: Companion::Advisor,
        model: model.to_string(),
        route,
        calls: max_uses.unwrap_or(1).min(tollgate_protocol::usage::MAX_COUNT),
        output_per_call: max_tokens.unwrap_or(cfg.default_max_tokens),
        price,
    })
}

/// Routes the image generation tool of a Responses request served by
/// `provider` (`translated`: through another API). Every refusal names `tools`.
pub fn image_tool(cfg: &Config, key: &KeyInfo, provider: &Provider, translated: bool, tool: &ImageTool, chat: &ChatRequest) -> Result<AdvisorTarget, GatewayError> {
    let bad = |code, msg: String| GatewayError::bad_request(code, msg).with_param("tools");
    let (model, ask) = match tool {
        ImageTool::Unreadable(why) => return Err(bad("invalid_request", (*why).to_string())),
        ImageTool::Offered { model, ask } => (model.as_str(), ask),
    };
    if translated || provider.format != ProviderFormat::Openai {
        return Err(bad(
            "unsupported_field",
            format!("The image_generation tool is run by OpenAI's Responses API; this request's model is served by provider '{}' through another API.", provider.name),
        ));
    }
    let (route, price) = route_companion(cfg, key, provider, model, Companion::ImageGeneration)?;
    Ok(AdvisorTarget {
        kind: Companion::ImageGeneration,
        model: model.to_string(),
        route,
        calls: chat.max_tool_calls.unwrap_or(1).min(tollgate_protocol::usage::MAX_COUNT),
        output_per_call: ask.tokens_per_image(chat.stream),
        price,
    })
}

/// The checks a companion model passes: the key may use it, the gateway
/// routes it to the provider serving the request under its own id (it goes
/// upstream as the tool names it), and it is priced where it must be.
fn route_companion(cfg: &Config, key: &KeyInfo, provider: &Provider, model: &str, kind: Companion) -> Result<(String, Option<Price>), GatewayError> {
    let bad = |code, msg: String| GatewayError::bad_request(code, msg).with_param("tools");
    let what = kind.described();
    if !crate::request::valid_model_name(model) {
        return Err(bad("invalid_model", format!("The {what} tool's model must be 1 to 256 visible ASCII characters.")));
    }
    // As the key names models: the provider's id, or under the provider's name.
    let qualified = format!("{}/{model}", provider.name);
    let named: Vec<&str> = [model, qualified.as_str()].into_iter().filter(|m| key.may_use(m)).collect();
    if named.is_empty() {
        return Err(GatewayError::forbidden("model_not_allowed", format!("This key may not use the {what} model '{}'.", shown(model))).with_param("tools"));
    }
    let Some((resolved, upstream)) = named.iter().find_map(|m| cfg.resolve(m)) else {
        return Err(bad("model_not_found", format!("The {what} model '{}' is not routed by this gateway.", shown(model))));
    };
    if resolved.provider.name != provider.name {
        return Err(bad(
            "unsupported_field",
            format!("The {what} model runs at the provider serving the request ('{}'), but this gateway routes '{}' to '{}'.", provider.name, shown(model), resolved.provider.name),
        ));
    }
    if upstream != model {
        return Err(bad(
            "invalid_model",
            format!("The {what} tool's model goes to the provider as named: name it by the provider's id ('{}'), not '{}'.", shown(&upstream), shown(model)),
        ));
    }
    let price = cfg.price(&provider.name, model);
    if cfg.unpriced_models == UnpricedModels::Deny && price.is_none() {
        return Err(bad("model_not_priced", format!("The {what} model '{}' has no price configured, and this gateway refuses unpriced models.", shown(model))));
    }
    Ok((resolved.route.to_string(), price))
}

/// What the advisor's calls reserve: each reads the whole conversation
/// (the request's estimated input) and writes up to its output bound.
pub fn worst(target: &Target, chat: &ChatRequest) -> Amount {
    let Some(a) = target.advisor.as_deref() else { return Amount::default() };
    let usage = Usage {
        input_tokens: chat.estimated_input_tokens.saturating_mul(a.calls),
        output_tokens: a.output_per_call.saturating_mul(a.calls),
        ..Usage::default()
    };
    let micros = a.price.map(|p| p.reserving().cost_micros(&p.billed(usage))).unwrap_or(0);
    Amount { micros, tokens: usage.budget_tokens() }
}
