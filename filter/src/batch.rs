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
use crate::pricing::{Premium, Price};
use crate::request::{Api, Members};
use tollgate_protocol::record::{BudgetDecision, Guardrails, Outcome, ServiceTier, UsageRecord, UsageSource, RECORD_VERSION};
use tollgate_protocol::usage::Usage;

/// The metadata members Tollgate writes into a batch it creates.
pub const KEY: &str = "tollgate_key";
pub const TEAM: &str = "tollgate_team";
pub const PROJECT: &str = "tollgate_project";
/// What a client's own metadata members may not start with.
const RESERVED: &str = "tollgate_";
/// The API's limits on `metadata`: 16 members, values of 512 characters.
const MAX_METADATA: usize = 16;
const MAX_VALUE: usize = 512;

/// The largest answer read for charges: a batch object is about 1 KB, its
/// metadata at most 16 × 576 bytes; a list holds up to 100 of them.
pub const MAX_ANSWER_BYTES: usize = 2 << 20;

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

/// Who a batch is charged to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub key: String,
    pub team: String,
    pub project: String,
}

fn bad(code: &'static str, msg: impl Into<String>) -> GatewayError {
    GatewayError::bad_request(code, msg)
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
    let members: Members = serde_json::from_slice(body).map_err(|_| bad("invalid_json", "The request body is not a JSON object."))?;
    let mut seen: Vec<&str> = Vec::with_capacity(members.0.len());
    for (k, _) in &members.0 {
        if seen.contains(&k.as_str()) {
            return Err(bad("duplicate_key", format!("The request body has the member '{}' more than once.", crate::text::clean_field(k, 64))));
        }
        seen.push(k);
    }
    let raw = |name: &str| members.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.get());
    let endpoint = match raw("endpoint").map(serde_json::from_str::<String>) {
        None => return Err(bad("missing_required_parameter", "Missing required parameter: 'endpoint'.").with_param("endpoint")),
        Some(Ok(e)) => e,
        Some(Err(_)) => return Err(bad("invalid_type", "Invalid type for 'endpoint': expected a string.").with_param("endpoint")),
    };
    let api = endpoint_api(&endpoint).ok_or_else(|| {
        bad(
            "unsupported_batch_endpoint",
            format!(
                "Batches of '{}' are not served: Tollgate prices batches of /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/completions, /v1/moderations, /v1/images/generations and /v1/images/edits.",
                crate::text::clean_field(&endpoint, 64)
            ),
        )
        .with_param("endpoint")
    })?;
    let mut metadata: Vec<(String, String)> = match raw("metadata") {
        None | Some("null") => Vec::new(),
        Some(m) => metadata_of(m)?,
    };
    if let Some((k, _)) = metadata.iter().find(|(k, _)| k.starts_with(RESERVED)) {
        return Err(bad(
            "reserved_metadata",
            format!("Metadata members starting with '{RESERVED}' are Tollgate's (who the batch is charged to): '{}' cannot be set.", crate::text::clean_field(k, 64)),
        )
        .with_param("metadata"));
    }
    if metadata.len() + 3 > MAX_METADATA {
        return Err(bad(
            "metadata_full",
            format!("A batch's metadata holds {MAX_METADATA} members and Tollgate adds 3 (who the batch is charged to): send at most {}.", MAX_METADATA - 3),
        )
        .with_param("metadata"));
    }
    for (name, v) in [(KEY, &owner.key), (TEAM, &owner.team), (PROJECT, &owner.project)] {
        if v.chars().count() > MAX_VALUE {
            return Err(GatewayError::internal(format!("The key's {name} is longer than a batch's metadata holds.")));
        }
        metadata.push((name.to_string(), v.clone()));
    }
    // The client's members as sent (raw), the metadata rewritten.
    let mut out = Vec::with_capacity(body.len() + 256);
    out.push(b'{');
    for (k, v) in members.0.iter().filter(|(k, _)| k != "metadata") {
        let name = serde_json::to_vec(k).map_err(|_| GatewayError::internal("The batch request could not be written."))?;
        out.extend_from_slice(&name);
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
        out.push(b',');
    }
    let meta: serde_json::Map<String, serde_json::Value> = metadata.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    out.extend_from_slice(b"\"metadata\":");
    out.extend_from_slice(&serde_json::to_vec(&meta).map_err(|_| GatewayError::internal("The batch request could not be written."))?);
    out.push(b'}');
    let body = out;
    Ok((body, api))
}

/// A client's `metadata`: an object of strings, each member once.
fn metadata_of(raw: &str) -> Result<Vec<(String, String)>, GatewayError> {
    let not_object = || bad("invalid_type", "Invalid type for 'metadata': expected an object of strings.").with_param("metadata");
    let members: Members = serde_json::from_str(raw).map_err(|_| not_object())?;
    let mut out: Vec<(String, String)> = Vec::with_capacity(members.0.len());
    for (k, v) in &members.0 {
        if out.iter().any(|(seen, _)| seen == k) {
            return Err(bad("duplicate_key", format!("'metadata' has the member '{}' more than once.", crate::text::clean_field(k, 64))).with_param("metadata"));
        }
        out.push((k.clone(), serde_json::from_str(v.get()).map_err(|_| not_object())?));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct BatchUsage {
    input_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    output_tokens: u64,
    #[serde(default)]
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
    #[serde(default)]
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

/// What an ended batch cost to run, and who it is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub batch_id: String,
    pub model: Option<String>,
    pub api: Api,
    pub usage: Usage,
    pub owner: Owner,
    /// `completed`, `failed`, `expired` or `cancelled`.
    pub status: String,
    pub created_ms: Option<u64>,
    pub ended_ms: Option<u64>,
}

/// The charge a batch object read from the provider carries: one that has
/// ended (`completed`, `failed`, `expired`, `cancelled`: the requests that
/// ran are billed whatever ended it), reports its usage, and was created
/// through Tollgate (its metadata names the key). `None` otherwise.
pub fn charge(answer: &[u8]) -> Option<Charge> {
    let b: BatchObject = serde_json::from_slice(answer).ok()?;
    if b.object != "batch" {
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
    let meta = b.metadata.unwrap_or_default();
    let field = |name: &str| meta.get(name).cloned().flatten();
    let owner = Owner { key: field(KEY)?, team: field(TEAM).unwrap_or_default(), project: field(PROJECT).unwrap_or_default() };
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
        batch_id: b.id,
        model: b.model.filter(|m| !m.is_empty()),
        api: endpoint_api(&b.endpoint).unwrap_or(Api::OpenAiChat),
        usage: usage.bounded(),
        owner,
        status: b.status,
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

/// A model name without the date the provider appends to it
/// (`gpt-5-2025-08-07` → `gpt-5`): a batch reports the model that served
/// it, dated, where prices name the model as requests do.
pub fn undated(model: &str) -> Option<&str> {
    let (name, date) = model.len().checked_sub(11).and_then(|i| Some((model.get(..i)?, model.get(i..)?)))?;
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    (b.first() == Some(&b'-') && digits(1..5) && b.get(5) == Some(&b'-') && digits(6..8) && b.get(8) == Some(&b'-') && digits(9..11) && !name.is_empty())
        .then_some(name)
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

/// The price of a batch's model at `provider`: as the batch names it, else
/// without its date ([`undated`]); before the batch percent.
pub fn price(cfg: &crate::config::Config, provider: &str, model: &str) -> Option<Price> {
    cfg.price(provider, model).or_else(|| cfg.price(provider, undated(model)?))
}

/// The records of the charges an answer read whole carries ([`charges`]),
/// decoded first when the provider compressed it (`coding`), priced by
/// `cfg`; `Err` when it does not decode (nothing is charged from it).
pub fn records(cfg: &crate::config::Config, provider: &str, answer: Vec<u8>, coding: &crate::decode::Coding, now_ms: u64) -> Result<Vec<UsageRecord>, crate::decode::DecodeError> {
    let answer = match crate::decode::Inflater::new(coding) {
        None => answer,
        Some(mut inflater) => crate::decode::whole(&mut inflater, &answer, MAX_ANSWER_BYTES)?,
    };
    Ok(charges(&answer).iter().map(|c| record(c, provider, c.model.as_deref().and_then(|m| price(cfg, provider, m)), now_ms)).collect())
}

/// The shared-data entry that marks a charge as counted on this Envoy.
pub fn counted_key(record_id: &str) -> String {
    format!("tollgate.batch.{record_id}")
}

/// The record id of a batch's charge: the same on every read of it.
pub fn record_id(batch_id: &str) -> String {
    format!("tg-batch-{batch_id}")
}

/// The usage record of `c` for `provider`, priced at `price` (the model's,
/// before the batch percent) or unpriced; `now_ms` dates a batch whose end
/// time the provider did not say.
pub fn record(c: &Charge, provider: &str, price: Option<Price>, now_ms: u64) -> UsageRecord {
    let price = price.map(|p| p.at(Premium { tier: Some(ServiceTier::Batch), geo: None }));
    let (cost, savings) = price.map(|p| p.cost_and_savings(&c.usage)).unwrap_or((0, 0));
    let ended = c.ended_ms.unwrap_or(now_ms);
    UsageRecord {
        v: RECORD_VERSION,
        id: record_id(&c.batch_id),
        client_request_id: None,
        session_id: None,
        ts_ms: ended,
        key_id: c.owner.key.clone(),
        key_hash: String::new(),
        team: c.owner.team.clone(),
        project: c.owner.project.clone(),
        feature: None,
        prompt_version: None,
        user: None,
        tags: BTreeMap::new(),
        api: c.api,
        provider: Some(provider.to_string()),
        route: None,
        model_requested: None,
        model_upstream: c.model.clone(),
        model_served: c.model.clone(),
        stream: false,
        status: 200,
        outcome: Outcome::Ok,
        error_code: (c.status != "completed").then(|| format!("batch_{}", c.status)),
        usage: c.usage,
        usage_source: UsageSource::Provider,
        cost_micros: cost,
        cache_savings_micros: savings,
        priced: price.is_some(),
        latency_ms: c.created_ms.map_or(0, |s| ended.saturating_sub(s)),
        ttfb_ms: None,
        budget_scopes: Vec::new(),
        budget_decision: BudgetDecision::Off,
        guardrails: None,
        cache_miss: None,
        json_check: None,
        attempts: Vec::new(),
        routed_by: None,
        service_tier: Some(ServiceTier::Batch),
        inference_geo: None,
        capture: None,
    }
    .bounded()
}

#[cfg(test)]
mod tests;
