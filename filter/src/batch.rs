//! OpenAI's Batch API (`/v1/batches`, `…/{id}`, `…/{id}/cancel`): a file
//! of requests (uploaded as `purpose: "batch"`) that the provider runs
//! within 24 hours at its batch price. Tollgate never sees those requests
//! run: they are read from the file by the provider, and end hours later.
//! What it sees is the batch object, which since September 2025 carries
//! the batch's `model` and its total `usage` (openai/openai-openapi,
//! `Batch`). So:
//!
//! - **Creating** a batch writes who asked for it into its `metadata`
//!   (`tollgate_key`, `tollgate_team`, `tollgate_project`), which no one
//!   can change afterwards (the API has no update) and which the client
//!   may not set itself. It is refused to a key limited to some models
//!   (the file's models are not read, so the limit could not hold), for an
//!   endpoint no price covers, and when the key's budget is spent.
//! - **Reading** a batch (`GET`, or the answer to a cancel) that has ended
//!   with its `usage` is its charge: a record for the key, team and
//!   project its metadata names (whichever key reads it), the model's
//!   prices times `batch_percent`, dated when the batch ended. Its id,
//!   `tg-batch-<batch id>`, is the ledger's idempotency key: every later
//!   read of the same batch sends the same record, counted once.
//!
//! A batch no one reads through Tollgate after it ends is not charged, and
//! a batch can spend past a budget by its own size (the budget is checked
//! when it is created; the cost lands when it ends): docs/security.md.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::errors::GatewayError;
use crate::owned::{Charge, Owner};
use crate::request::Api;
use tollgate_protocol::record::{Guardrails, ServiceTier, UsageRecord, UsageSource};
use tollgate_protocol::usage::Usage;

/// The priced API a batch's `endpoint` runs; `None`: one Tollgate cannot
/// price (`/v1/videos`, or anything new).
pub fn endpoint_api(endpoint: &str) -> Option<Api> {
    Some(match endpoint {
        "/v1/chat/completions" => Api::OpenAiChat,
        "/v1/responses" => Api::OpenAiResponses,
        "/v1/embeddings" => Api::OpenAiEmbeddings,
        "/v1/completions" => Api::OpenAiCompletions,
        "/v1/moderations" => Api::OpenAiModerations,
        "/v1/images/generations" => Api::OpenAiImages,
        "/v1/images/edits" => Api::OpenAiImageEdits,
        _ => return None,
    })
}

/// Whether `key` may create batches: not when it is limited to some
/// models, since the models a batch runs are in its file.
pub fn allowed(key: &crate::config::KeyInfo) -> Result<(), GatewayError> {
    match key.models {
        None => Ok(()),
        Some(_) => Err(GatewayError::forbidden(
            "batch_not_allowed",
            "This key may use only some models, and a batch's models are in its input file, which Tollgate does not read: use a key allowed every model of the provider.",
        )),
    }
}

/// A create request (`CreateBatchRequest`) with `owner` written into its
/// metadata, and the API its endpoint runs. Refused: a body that is not
/// one JSON object, a member given twice, an endpoint without a price, a
/// `tollgate_*` metadata member, metadata with no room for the three.
pub fn tag(body: &[u8], owner: &Owner) -> Result<(Vec<u8>, Api), GatewayError> {
    let members = crate::owned::members_once(body)?;
    let endpoint = match members.get("endpoint").map(serde_json::from_str::<String>) {
        None => return Err(GatewayError::bad_request("missing_required_parameter", "Missing required parameter: 'endpoint'.").with_param("endpoint")),
        Some(Ok(e)) => e,
        Some(Err(_)) => return Err(GatewayError::bad_request("invalid_type", "Invalid type for 'endpoint': expected a string.").with_param("endpoint")),
    };
    let api = endpoint_api(&endpoint).ok_or_else(|| {
        GatewayError::bad_request(
            "unsupported_batch_endpoint",
            format!(
                "Batches of '{}' are not served: Tollgate prices batches of /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/completions, /v1/moderations, /v1/images/generations and /v1/images/edits.",
                crate::text::clean_field(&endpoint, 64)
            ),
        )
        .with_param("endpoint")
    })?;
    Ok((crate::owned::with_owner(&members, owner, &[], "batch")?, api))
}

#[derive(Deserialize)]
struct BatchUsage {
    input_tokens: u64,
    #[serde(default, deserialize_with = "crate::usage::object")]
    input_tokens_details: Option<InputDetails>,
    output_tokens: u64,
    #[serde(default, deserialize_with = "crate::usage::object")]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// The members of `Batch` a charge reads (others ignored; a member given
/// twice makes the object unreadable, and nothing is charged from it).
#[derive(Deserialize)]
struct BatchObject {
    id: String,
    object: String,
    endpoint: String,
    #[serde(default)]
    model: Option<String>,
    status: String,
    #[serde(default, deserialize_with = "crate::usage::object")]
    usage: Option<BatchUsage>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    created_at: Option<u64>,
    #[serde(default)]
    completed_at: Option<u64>,
    #[serde(default)]
    failed_at: Option<u64>,
    #[serde(default)]
    expired_at: Option<u64>,
    #[serde(default)]
    cancelled_at: Option<u64>,
}

/// The charge a batch object read from the provider carries: one that has
/// ended (`completed`, `failed`, `expired`, `cancelled`: the requests that
/// ran are billed whatever ended it), reports its usage, and was created
/// through Tollgate (its metadata names the key). `None` otherwise.
pub fn charge(answer: &[u8]) -> Option<Charge> {
    let b: BatchObject = serde_json::from_slice(answer).ok()?;
    if b.object != "batch" || !crate::owned::usable_id(&b.id) {
        return None;
    }
    let ended = match b.status.as_str() {
        "completed" => b.completed_at,
        "failed" => b.failed_at,
        "expired" => b.expired_at,
        "cancelled" => b.cancelled_at,
        _ => return None,
    };
    let u = b.usage?;
    let owner = crate::owned::owner_of(b.metadata)?;
    let cached = u.input_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0);
    let reasoning = u.output_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0);
    let usage = Usage {
        input_tokens: u.input_tokens,
        cached_input_tokens: cached.min(u.input_tokens),
        output_tokens: u.output_tokens,
        reasoning_tokens: reasoning.min(u.output_tokens),
        ..Usage::default()
    };
    Some(Charge {
        record_id: record_id(&b.id),
        model: b.model.filter(|m| !m.is_empty()),
        api: endpoint_api(&b.endpoint).unwrap_or(Api::OpenAiChat),
        usage: usage.bounded(),
        source: UsageSource::Provider,
        owner,
        error_code: (b.status != "completed").then(|| format!("batch_{}", b.status)),
        tier: Some(ServiceTier::Batch),
        created_ms: b.created_at.map(|s| s.saturating_mul(1000)),
        ended_ms: ended.map(|s| s.saturating_mul(1000)),
    })
}

/// A batch input file (JSON Lines: one request a line) as the
/// guardrails let it go: each line passed to `scan` whole (its `custom_id`
/// and its request body alike), which answers `Ok(None)` (as it is),
/// `Ok(Some(line))` (redacted) or the refusal. `Ok(None)`: the file goes
/// as it came. Line breaks (`\n`, `\r\n`) and blank lines are kept.
pub fn guard_lines(file: &[u8], mut scan: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, GatewayError>) -> Result<Option<Vec<u8>>, GatewayError> {
    let mut out: Option<Vec<u8>> = None;
    let mut at = 0;
    for raw in file.split_inclusive(|b| *b == b'\n') {
        let body = raw.strip_suffix(b"\n").unwrap_or(raw);
        let (line, cr) = match body.strip_suffix(b"\r") {
            Some(l) => (l, true),
            None => (body, false),
        };
        let changed = if line.iter().all(u8::is_ascii_whitespace) { None } else { scan(line)? };
        match changed {
            Some(new) => {
                let o = out.get_or_insert_with(|| file.get(..at).unwrap_or_default().to_vec());
                o.extend_from_slice(&new);
                if cr {
                    o.push(b'\r');
                }
                if raw.ends_with(b"\n") {
                    o.push(b'\n');
                }
            }
            None => {
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(raw);
                }
            }
        }
        at += raw.len();
    }
    Ok(out)
}

/// What the guardrails found in a batch file's lines, added up: every
/// class counted, the strongest action (`blocked` over `redacted` over
/// `observed`).
pub fn merge(acc: Option<Guardrails>, next: Option<Guardrails>) -> Option<Guardrails> {
    let rank = |a: &str| ["none", "observed", "redacted", "blocked"].iter().position(|x| *x == a).unwrap_or(0);
    match (acc, next) {
        (Some(mut a), Some(n)) => {
            for (class, count) in n.classes {
                let c = a.classes.entry(class).or_insert(0);
                *c = c.saturating_add(count);
            }
            if rank(&n.action) > rank(&a.action) {
                a.action = n.action;
            }
            Some(a)
        }
        (a, n) => a.or(n),
    }
}

/// The charges an answer carries: a batch object's ([`charge`]), or those
/// of each batch a list of them (`ListBatchesResponse`) holds, which hands
/// out their output files as well as a read by id does.
pub fn charges(answer: &[u8]) -> Vec<Charge> {
    #[derive(Deserialize)]
    struct List<'a> {
        object: &'a str,
        #[serde(borrow)]
        data: Vec<&'a serde_json::value::RawValue>,
    }
    match serde_json::from_slice::<List>(answer) {
        Ok(l) if l.object == "list" => l.data.iter().filter_map(|b| charge(b.get().as_bytes())).collect(),
        _ => charge(answer).into_iter().collect(),
    }
}

/// The records of the charges an answer read whole carries ([`charges`]),
/// decoded first when the provider compressed it (`coding`), priced by
/// `cfg` (the model's prices times its `batch_percent`); `Err` when it
/// does not decode (nothing is charged from it).
pub fn records(cfg: &crate::config::Config, provider: &str, answer: Vec<u8>, coding: &crate::decode::Coding, now_ms: u64) -> Result<Vec<UsageRecord>, crate::decode::DecodeError> {
    let answer = crate::owned::decoded(answer, coding)?;
    Ok(charges(&answer).iter().map(|c| crate::owned::record(c, provider, c.model.as_deref().and_then(|m| crate::owned::price(cfg, provider, m)), now_ms)).collect())
}

/// The record id of a batch's charge: the same on every read of it.
pub fn record_id(batch_id: &str) -> String {
    format!("tg-batch-{batch_id}")
}

#[cfg(test)]
mod tests;
