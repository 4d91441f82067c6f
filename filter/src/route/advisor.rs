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

use super::Target;
use crate::budget::Amount;
use crate::config::{Config, KeyInfo, Provider, ProviderFormat, UnpricedModels};
use crate::errors::GatewayError;
use crate::pricing::Price;
use crate::request::server_tools::Advisor;
use crate::request::ChatRequest;
use crate::usage::Usage;

/// The advisor a request runs: where it is routed, and its reservation's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisorTarget {
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
    if !crate::request::valid_model_name(model) {
        return Err(bad("invalid_model", "The advisor's model must be 1 to 256 visible ASCII characters.".into()));
    }
    // As the key names models: the provider's id, or under the provider's name.
    let qualified = format!("{}/{model}", provider.name);
    let named: Vec<&str> = [model, qualified.as_str()].into_iter().filter(|m| key.may_use(m)).collect();
    if named.is_empty() {
        return Err(GatewayError::forbidden("model_not_allowed", format!("This key may not use the advisor model '{}'.", shown(model))).with_param("tools"));
    }
    let Some((resolved, upstream)) = named.iter().find_map(|m| cfg.resolve(m)) else {
        return Err(bad("model_not_found", format!("The advisor model '{}' is not routed by this gateway.", shown(model))));
    };
    if resolved.provider.name != provider.name {
        return Err(bad(
            "unsupported_field",
            format!("The advisor runs at the provider serving the request ('{}'), but this gateway routes '{}' to '{}'.", provider.name, shown(model), resolved.provider.name),
        ));
    }
    if upstream != model {
        return Err(bad(
            "invalid_model",
            format!("The advisor's model goes to the provider as named: name it by the provider's id ('{}'), not '{}'.", shown(&upstream), shown(model)),
        ));
    }
    let price = cfg.price(&provider.name, model);
    if cfg.unpriced_models == UnpricedModels::Deny && price.is_none() {
        return Err(bad("model_not_priced", format!("The advisor model '{}' has no price configured, and this gateway refuses unpriced models.", shown(model))));
    }
    Ok(AdvisorTarget {
        model: model.to_string(),
        route: resolved.route.to_string(),
        calls: max_uses.unwrap_or(1).min(tollgate_protocol::usage::MAX_COUNT),
        output_per_call: max_tokens.unwrap_or(cfg.default_max_tokens),
        price,
    })
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
