//! OpenAI's background responses (`POST /v1/responses` with `background:
//! true`): the provider answers at once with the response `queued` and
//! runs it on its own, for minutes (deep research, `*-pro` models); the
//! client polls `GET /v1/responses/{id}` (or streams it as it runs). The
//! cost is known only when a read shows the response ended, so it is
//! charged as a batch is ([`crate::owned`]):
//!
//! - **Creating** one: planned, guarded and admitted against budgets as
//!   any request (its reservation given back when the provider has
//!   answered), with who asked written into its `metadata`, and the
//!   input Tollgate estimated (`tollgate_input_tokens`: a response
//!   cancelled before it ends reports no usage). Refused ([`check`]) where
//!   a later read could not reach it or could not be charged: a provider
//!   that is not the `stored_objects` one, a translated route, a
//!   `conversation` (its items would show the output unread), the image
//!   generation tool (a second model's cost, reported on the request's
//!   own answer only), a guardrail policy that reads answers.
//! - **Reading** one that ended (`completed`, `failed`, `incomplete`,
//!   `cancelled`: the answer to a `GET`, to a cancel, or the terminal
//!   event of its stream) is its charge, under the id `tg-bg-<response
//!   id>`, whoever reads it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{Config, ProviderFormat};
use crate::errors::GatewayError;
use crate::owned::{Charge, Owner};
use crate::request::Api;
use tollgate_protocol::record::{UsageRecord, UsageSource};
use tollgate_protocol::usage::Usage;

/// The metadata member holding the input Tollgate estimated.
pub const INPUT: &str = "tollgate_input_tokens";
/// The metadata member holding the GB of code interpreter containers the
/// request had the provider create (when it had any): billed however the
/// response ends, and not in its usage.
pub const CONTAINERS: &str = "tollgate_container_gb";

fn refused(msg: impl Into<String>) -> GatewayError {
    GatewayError::bad_request("unsupported_field", msg).with_param("background")
}

/// Whether a planned background request can be charged when it ends:
/// `Err` is the answer instead. `policy`: the guardrail policy in force.
pub fn check(cfg: &Config, plan: &crate::route::Plan, policy: Option<&crate::guard::Policy>) -> Result<(), GatewayError> {
    let stored = cfg.stored_objects(ProviderFormat::Openai).map(|(_, p)| p.name.as_str());
    if plan.translate.is_some() || stored != Some(plan.target.provider.as_str()) {
        return Err(refused(format!(
            "Background responses are served only by the provider that keeps stored responses ('stored_objects': {}), where they are read back and charged; this request goes to '{}'.",
            stored.unwrap_or("none"),
            crate::text::clean_field(&plan.target.provider, 64)
        )));
    }
    if plan.chat.conversation {
        return Err(refused("A background response cannot add to a conversation: its output would be readable in the conversation's items, which are not charged. Send it without 'conversation' (or 'previous_response_id' to continue)."));
    }
    if plan.chat.image_tool.is_some() || plan.target.advisor.is_some() {
        return Err(refused("A background response cannot use the image generation tool: the image model's cost is reported only in the answer to the request itself."));
    }
    if let Some(g) = policy.filter(|g| g.reads_answers()) {
        return Err(refused(format!(
            "Guardrail policy '{}' reads answers, and a background response's output is read later, from the stored response, where it would not be scanned or restored.",
            g.version
        )));
    }
    Ok(())
}

/// The create request with `owner`, the estimated input and the
/// containers it creates written into its metadata (the client's members
/// as sent).
pub fn tag(body: &[u8], owner: &Owner, input_tokens: u64, container_gb: u64) -> Result<Vec<u8>, GatewayError> {
    let members = crate::owned::members_once(body)?;
    let mut ours = vec![(INPUT, input_tokens.to_string())];
    if container_gb > 0 {
        ours.push((CONTAINERS, container_gb.to_string()));
    }
    crate::owned::with_owner(&members, owner, &ours, "response")
}

/// The record id of a background response's charge.
pub fn record_id(response_id: &str) -> String {
    format!("tg-bg-{response_id}")
}

/// The members of `Response` a charge reads besides its usage (a member
/// given twice makes the object unreadable: nothing is charged from it).
#[derive(Deserialize)]
struct Head {
    id: String,
    object: String,
    status: String,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    created_at: Option<u64>,
    #[serde(default)]
    completed_at: Option<u64>,
}

/// A response's `output`, read only for an estimate.
#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    output: Option<Vec<serde_json::Value>>,
}

/// A background response of ours: its head, its owner, the input
/// Tollgate estimated when it was created, and what its JSON says.
fn ours(answer: &[u8]) -> Option<(Head, Owner, Written, crate::usage::ResponseInfo)> {
    let h: Head = serde_json::from_slice(answer).ok()?;
    if h.object != "response" || !crate::owned::usable_id(&h.id) || h.background != Some(true) {
        return None;
    }
    let number = |name: &str| h.metadata.as_ref().and_then(|m| m.get(name)?.as_deref()?.parse::<u64>().ok());
    let written = Written { input: number(INPUT), container_gb: number(CONTAINERS).unwrap_or(0) };
    let owner = crate::owned::owner_of(h.metadata.clone())?;
    let info = crate::usage::parse_json_response(Api::OpenAiResponses, answer);
    Some((h, owner, written, info))
}

/// What Tollgate wrote into a background response's metadata besides its owner.
struct Written {
    input: Option<u64>,
    container_gb: u64,
}

/// The charge of `usage` for response `h`.
fn charge_of(h: Head, owner: Owner, info: crate::usage::ResponseInfo, usage: Usage, source: UsageSource, error_code: Option<String>) -> Charge {
    let premium = crate::pricing::Premium::default().settled(info.served);
    Charge {
        record_id: record_id(&h.id),
        model: info.model.filter(|m| !m.is_empty()),
        api: Api::OpenAiResponses,
        usage,
        source,
        owner,
        error_code,
        tier: premium.tier,
        created_ms: h.created_at.map(|s| s.saturating_mul(1000)),
        ended_ms: h.completed_at.map(|s| s.saturating_mul(1000)),
    }
}

/// The charge a response object carries: a background one (`background:
/// true`) that has ended and whose metadata names its owner. Usage as
/// reported; where none is (a cancelled response), estimated: the input
/// Tollgate wrote when it was created and the output it shows.
pub fn charge(answer: &[u8]) -> Option<Charge> {
    let (h, owner, written, info) = ours(answer)?;
    if !matches!(h.status.as_str(), "completed" | "failed" | "incomplete" | "cancelled") {
        return None;
    }
    let (mut usage, source) = match info.usage {
        Some(u) => (u, UsageSource::Provider),
        None => {
            let output = serde_json::from_slice::<Output>(answer).ok().and_then(|o| o.output);
            let shown: usize = output.iter().flatten().map(text_bytes).sum();
            (estimate(written.input, crate::request::estimate_tokens(shown as u64)), UsageSource::Estimated)
        }
    };
    usage.container_gb = written.container_gb;
    let usage = usage.bounded();
    let error_code = (h.status != "completed").then(|| format!("response_{}", h.status));
    Some(charge_of(h, owner, info, usage, source, error_code))
}

/// The charge of a background response's stream that ended before its
/// terminal event, after `output_chars` of output came: `head` the
/// response as the stream showed it (its first events carry it), charged
/// the input estimated when it was created and the output streamed.
/// `None` when no output came (nothing taken: a later read charges it).
pub fn cut(head: &[u8], output_chars: u64) -> Option<Charge> {
    if output_chars == 0 {
        return None;
    }
    let (h, owner, written, info) = ours(head)?;
    let usage = Usage { container_gb: written.container_gb, ..estimate(written.input, crate::request::estimate_tokens(output_chars)) }.bounded();
    Some(charge_of(h, owner, info, usage, UsageSource::Estimated, Some("response_cut".to_string())))
}

fn estimate(input: Option<u64>, output: u64) -> Usage {
    Usage { input_tokens: input.unwrap_or(0), output_tokens: output, ..Default::default() }.bounded()
}

/// The bytes of text an output item shows (a message's parts, a
/// reasoning summary, a call's arguments), nested at most four deep.
fn text_bytes(item: &serde_json::Value) -> usize {
    fn walk(v: &serde_json::Value, depth: u8) -> usize {
        match v {
            serde_json::Value::Object(m) if depth < 4 => m
                .iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("text" | "arguments" | "refusal", serde_json::Value::String(s)) => s.len(),
                    (_, v) => walk(v, depth + 1),
                })
                .sum(),
            serde_json::Value::Array(a) if depth < 4 => a.iter().map(|v| walk(v, depth + 1)).sum(),
            _ => 0,
        }
    }
    walk(item, 0)
}

/// The record of the charge an answer read whole carries, decoded first
/// when the provider compressed it, priced by `cfg`; `Err` when it does
/// not decode.
pub fn records(cfg: &Config, provider: &str, answer: Vec<u8>, coding: &crate::decode::Coding, now_ms: u64) -> Result<Vec<UsageRecord>, crate::decode::DecodeError> {
    let answer = crate::owned::decoded(answer, coding)?;
    Ok(charge(&answer).iter().map(|c| crate::owned::record(c, provider, c.model.as_deref().and_then(|m| crate::owned::price(cfg, provider, m)), now_ms)).collect())
}

#[cfg(test)]
mod tests;
