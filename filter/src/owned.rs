//! Work the provider runs after the request that asked for it was
//! answered: an OpenAI batch ([`crate::batch`]) and a background response
//! ([`crate::background`]). What such work costs is known only when a
//! later read shows it ended, maybe through another Envoy, under another
//! key. Both objects keep a `metadata` map that the API lets no one change
//! afterwards; so:
//!
//! - **creating** one writes who asked into its metadata (`tollgate_key`,
//!   `tollgate_team`, `tollgate_project`; a client may set no
//!   `tollgate_*` member itself): [`with_owner`];
//! - **reading** one that has ended with its usage is its [`Charge`], a
//!   record for that owner ([`record`]) whose id is the same on every read
//!   (`tg-batch-<id>`, `tg-bg-<id>`): the ledger counts it once, and each
//!   Envoy logs and counts it once ([`COUNTED`]).

use std::collections::BTreeMap;

use crate::errors::GatewayError;
use crate::pricing::{Premium, Price};
use crate::request::{Api, Members};
use tollgate_protocol::record::{BudgetDecision, Outcome, ServiceTier, UsageRecord, UsageSource, RECORD_VERSION};
use tollgate_protocol::usage::Usage;

/// The metadata members Tollgate writes.
pub const KEY: &str = "tollgate_key";
pub const TEAM: &str = "tollgate_team";
pub const PROJECT: &str = "tollgate_project";
/// What a client's own metadata members may not start with.
const RESERVED: &str = "tollgate_";
/// The API's limits on `metadata` (batches and responses alike): 16
/// members, values of 512 characters.
const MAX_METADATA: usize = 16;
const MAX_VALUE: usize = 512;

/// Who the work is charged to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub key: String,
    pub team: String,
    pub project: String,
}

fn bad(code: &'static str, msg: impl Into<String>) -> GatewayError {
    GatewayError::bad_request(code, msg)
}

/// A request body's members, each once (serde and the provider could
/// disagree on which of two wins).
pub(crate) fn members_once(body: &[u8]) -> Result<Members<'_>, GatewayError> {
    let members: Members = serde_json::from_slice(body).map_err(|_| bad("invalid_json", "The request body is not a JSON object."))?;
    let mut seen: Vec<&str> = Vec::with_capacity(members.0.len());
    for (k, _) in &members.0 {
        if seen.contains(&k.as_str()) {
            return Err(bad("duplicate_key", format!("The request body has the member '{}' more than once.", crate::text::clean_field(k, 64))));
        }
        seen.push(k);
    }
    Ok(members)
}

/// The body of `members` with `owner` (and `extra` `tollgate_*` members)
/// added to its `metadata` (the client's other members as sent,
/// unparsed). Refused: a `tollgate_*` member of the client's, metadata
/// with no room for Tollgate's. `what` names the object in the messages
/// (`batch`, `response`).
pub(crate) fn with_owner(members: &Members<'_>, owner: &Owner, extra: &[(&str, String)], what: &str) -> Result<Vec<u8>, GatewayError> {
    let raw = members.get("metadata");
    let mut metadata: Vec<(String, String)> = match raw {
        None | Some("null") => Vec::new(),
        Some(m) => metadata_of(m)?,
    };
    if let Some((k, _)) = metadata.iter().find(|(k, _)| k.starts_with(RESERVED)) {
        return Err(bad(
            "reserved_metadata",
            format!("Metadata members starting with '{RESERVED}' are Tollgate's (who the {what} is charged to): '{}' cannot be set.", crate::text::clean_field(k, 64)),
        )
        .with_param("metadata"));
    }
    let ours = 3 + extra.len();
    if metadata.len() + ours > MAX_METADATA {
        return Err(bad(
            "metadata_full",
            format!("A {what}'s metadata holds {MAX_METADATA} members and Tollgate adds {ours} (who the {what} is charged to): send at most {}.", MAX_METADATA.saturating_sub(ours)),
        )
        .with_param("metadata"));
    }
    let owner_members = [(KEY, &owner.key), (TEAM, &owner.team), (PROJECT, &owner.project)];
    for (name, v) in owner_members.into_iter().chain(extra.iter().map(|(k, v)| (*k, v))) {
        if v.chars().count() > MAX_VALUE {
            return Err(GatewayError::internal(format!("The key's {name} is longer than a {what}'s metadata holds.")));
        }
        metadata.push((name.to_string(), v.clone()));
    }
    let mut out = crate::splice::Object::for_members(members.pairs(), 256);
    for (k, v) in members.0.iter().filter(|(k, _)| k != "metadata") {
        out.member(k, v.get().as_bytes());
    }
    let meta: serde_json::Map<String, serde_json::Value> = metadata.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    let meta = serde_json::to_vec(&meta).map_err(|_| GatewayError::internal("The request could not be written."))?;
    out.member("metadata", &meta);
    Ok(out.close())
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

/// Whether a provider's object id can name a record (`tg-batch-<id>`):
/// an id as a path may name it ([`crate::objects::is_id`]), short enough
/// that the record's id holds it whole.
pub fn usable_id(id: &str) -> bool {
    crate::objects::is_id(id) && id.len() <= 200
}

/// The owner an object's metadata names; `None` when it names no key
/// (made before Tollgate, or around it), or names one no key could be
/// (control characters, longer than a record holds: not written by
/// Tollgate, and a record would carry it mangled).
pub fn owner_of(metadata: Option<BTreeMap<String, Option<String>>>) -> Option<Owner> {
    let meta = metadata.unwrap_or_default();
    let field = |name: &str| meta.get(name).cloned().flatten();
    let owner = Owner { key: field(KEY)?, team: field(TEAM).unwrap_or_default(), project: field(PROJECT).unwrap_or_default() };
    let fits = |v: &str| v.chars().count() <= tollgate_protocol::record::MAX_NAME && !v.chars().any(char::is_control);
    (!owner.key.is_empty() && [&owner.key, &owner.team, &owner.project].iter().all(|v| fits(v))).then_some(owner)
}

/// What ended work cost, and who it is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The record's id: the same on every read of the object.
    pub record_id: String,
    pub model: Option<String>,
    pub api: Api,
    pub usage: Usage,
    /// `Provider`, or `Estimated` where the object reports no usage.
    pub source: UsageSource,
    pub owner: Owner,
    /// Why it ended, when not completed (`batch_expired`, `response_cancelled`).
    pub error_code: Option<String>,
    /// The tier it is priced at (a batch's: `Batch`).
    pub tier: Option<ServiceTier>,
    pub created_ms: Option<u64>,
    pub ended_ms: Option<u64>,
}

/// A model name without the date the provider appends to it
/// (`gpt-5-2025-08-07` → `gpt-5`): an object reports the model that served
/// it, dated, where prices name the model as requests do.
pub fn undated(model: &str) -> Option<&str> {
    let (name, date) = model.len().checked_sub(11).and_then(|i| Some((model.get(..i)?, model.get(i..)?)))?;
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    (b.first() == Some(&b'-') && digits(1..5) && b.get(5) == Some(&b'-') && digits(6..8) && b.get(8) == Some(&b'-') && digits(9..11) && !name.is_empty())
        .then_some(name)
}

/// The price of a model at `provider`: as the object names it, else
/// without its date ([`undated`]).
pub fn price(cfg: &crate::config::Config, provider: &str, model: &str) -> Option<Price> {
    cfg.price(provider, model).or_else(|| cfg.price(provider, undated(model)?))
}

/// The largest event, or compressed stream, read for a charge (a
/// response's terminal event carries the whole response).
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// An answer read whole, decoded when the provider compressed it; `Err`
/// when it does not decode (nothing is charged from it).
pub fn decoded(answer: Vec<u8>, coding: &crate::decode::Coding) -> Result<Vec<u8>, crate::decode::DecodeError> {
    match crate::decode::Inflater::new(coding) {
        None => Ok(answer),
        Some(mut inflater) => crate::decode::whole(&mut inflater, &answer, MAX_ANSWER_BYTES),
    }
}

/// The shared-data entry listing the charges this Envoy counted lately
/// (its logs and metrics count each once; the ledger counts an id once
/// however often it comes). One bounded entry, not one a charge: shared
/// data is never freed while Envoy runs.
pub const COUNTED: &str = "tollgate.charged";

/// How many recent charges [`COUNTED`] remembers (about 40 KB): a charge
/// read again after this many others is logged and counted in this
/// Envoy's metrics again, never in the ledger.
pub const COUNTED_MAX: usize = 512;

/// Whether `entry` (of [`COUNTED`]) lists `id`.
pub fn counted(entry: &[u8], id: &str) -> bool {
    entry.split(|b| *b == b'\n').any(|l| l == id.as_bytes())
}

/// `entry` with `id` added last, the oldest dropped past [`COUNTED_MAX`].
pub fn with_counted(entry: &[u8], id: &str) -> Vec<u8> {
    let ids: Vec<&[u8]> = entry.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let keep = ids.get(ids.len().saturating_sub(COUNTED_MAX - 1)..).unwrap_or_default();
    let mut out = keep.join(&b'\n');
    if !out.is_empty() {
        out.push(b'\n');
    }
    out.extend_from_slice(id.as_bytes());
    out
}

/// The usage record of `c` for `provider`, priced at `price` (the model's,
/// before the charge's tier) or unpriced; `now_ms` dates work whose end
/// time the provider did not say.
pub fn record(c: &Charge, provider: &str, price: Option<Price>, now_ms: u64) -> UsageRecord {
    let price = price.map(|p| p.at(Premium { tier: c.tier, geo: None }));
    let usage = crate::record::charged(c.usage, c.source, price.as_ref());
    let (cost, savings) = price.map(|p| p.cost_and_savings(&usage)).unwrap_or((0, 0));
    let ended = c.ended_ms.unwrap_or(now_ms);
    UsageRecord {
        v: RECORD_VERSION,
        id: c.record_id.clone(),
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
        error_code: c.error_code.clone(),
        usage,
        usage_source: c.source,
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
        service_tier: c.tier,
        inference_geo: None,
        capture: None,
    }
    .bounded()
}

/// Which object an answer is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A batch, or a list of them ([`crate::batch::records`]).
    Batch,
    /// A response object, or its event stream (the terminal event's `response`).
    Response,
}

/// An answer read for the charge it carries. A JSON object is held whole
/// ([`Answer::holds`]); an uncompressed event stream is split as it comes, and only what a charge
/// needs kept: its terminal event's `response`, else the response as the
/// stream showed it first and the output it streamed (a stream left before
/// its end, after output came, is charged an estimate). A stream resumed
/// after an event (`starting_after`, asked from its start:
/// [`crate::objects::Plan::skip_through`]) has the events up to it left out.
pub struct Answer {
    kind: Kind,
    coding: crate::decode::Coding,
    event_stream: bool,
    events: Option<Events>,
    /// The JSON (or a compressed stream) so far.
    body: Vec<u8>,
    too_large: bool,
}

struct Events {
    split: crate::sse::SseSplitter,
    /// The last terminal event's `response`.
    terminal: Option<Vec<u8>>,
    /// The response as the last other event carrying one showed it.
    head: Option<Vec<u8>>,
    /// Characters of output the events streamed.
    output_chars: u64,
    skip_through: Option<u64>,
}

impl Events {
    fn new(skip_through: Option<u64>) -> Self {
        Events { split: crate::sse::SseSplitter::with_max_event(MAX_ANSWER_BYTES), terminal: None, head: None, output_chars: 0, skip_through }
    }

    /// Splits `bytes` into events and reads each, adding what the client
    /// gets to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut split = std::mem::take(&mut self.split);
        split.push(bytes, |ev, whole| self.read(ev, whole, out));
        self.split = split;
    }

    /// Reads a last event that came without its blank line.
    fn end(&mut self, out: &mut Vec<u8>) {
        let pending = self.split.take_pending();
        if !pending.is_empty() {
            self.read(&pending, true, out);
        }
    }

    /// Reads one event (`whole`; else a fragment of an over-long one,
    /// passed on unread) and adds what the client gets of it to `out`.
    fn read(&mut self, ev: &[u8], whole: bool, out: &mut Vec<u8>) {
        #[derive(serde::Deserialize)]
        struct Seen<'a> {
            #[serde(rename = "type", default)]
            kind: Option<std::borrow::Cow<'a, str>>,
            #[serde(default)]
            sequence_number: Option<u64>,
            #[serde(borrow, default)]
            response: Option<&'a serde_json::value::RawValue>,
        }
        if !whole {
            out.extend_from_slice(ev);
            return;
        }
        let parsed = crate::sse::parse_event(ev);
        let seen: Option<Seen> = serde_json::from_str(&parsed.data).ok();
        let seq = seen.as_ref().and_then(|s| s.sequence_number);
        if let Some(s) = seen {
            let kind = s.kind.as_deref().or(parsed.name).unwrap_or("");
            match (s.response, TERMINAL.contains(&kind)) {
                (Some(r), true) => self.terminal = Some(r.get().as_bytes().to_vec()),
                (Some(r), false) => self.head = Some(r.get().as_bytes().to_vec()),
                (None, _) => {}
            }
            self.output_chars = self.output_chars.saturating_add(crate::responses_api::observe(parsed.name, &parsed.data).output_chars);
        }
        if self.skip_through.is_none_or(|n| seq.is_none_or(|s| s > n)) {
            out.extend_from_slice(ev);
        }
    }
}

/// The events that end a response's stream.
const TERMINAL: &[&str] = &["response.completed", "response.failed", "response.incomplete", "response.cancelled"];

/// Why an answer was not read for its charge.
#[derive(Debug, PartialEq, Eq)]
pub enum Unread {
    TooLarge,
    Undecodable,
}

impl Answer {
    pub fn new(kind: Kind, coding: crate::decode::Coding, event_stream: bool, skip_through: Option<u64>) -> Self {
        let events = (event_stream && coding == crate::decode::Coding::Identity).then(|| Events::new(skip_through));
        Answer { kind, coding, event_stream, events, body: Vec::new(), too_large: false }
    }

    /// Whether the answer is held whole before any of it goes on: a JSON
    /// object, whose charge (its usage, its owner) comes after what it
    /// hands out (a response's output, a batch's output file), so a client
    /// that left halfway would have had it uncharged.
    pub fn holds(&self) -> bool {
        !self.event_stream
    }

    /// Whether what the client gets is rewritten (a resumed stream's
    /// events before its start left out): its length changes.
    pub fn rewrites(&self) -> bool {
        self.events.as_ref().is_some_and(|e| e.skip_through.is_some())
    }

    /// Reads a chunk; `Some`: what the client gets in its place.
    pub fn push(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        match self.events.as_mut() {
            Some(e) => {
                let mut out = Vec::new();
                e.feed(chunk, &mut out);
                e.skip_through.is_some().then_some(out)
            }
            // (A JSON object is held whole by the glue, within `max_response_bytes`.)
            None if !self.event_stream || self.body.len().saturating_add(chunk.len()) <= MAX_ANSWER_BYTES => {
                self.body.extend_from_slice(chunk);
                None
            }
            None => {
                self.too_large = true;
                None
            }
        }
    }

    /// At the end of the answer: a last event without its blank line,
    /// read; `Some`: what the client gets of it.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let e = self.events.as_mut()?;
        let mut out = Vec::new();
        e.end(&mut out);
        e.skip_through.is_some().then_some(out)
    }

    /// The records the answer's charges make, priced by `cfg`.
    pub fn records(mut self, cfg: &crate::config::Config, provider: &str, now_ms: u64) -> Result<Vec<UsageRecord>, Unread> {
        self.finish();
        if self.too_large {
            return Err(Unread::TooLarge);
        }
        let priced = |c: &Charge| record(c, provider, c.model.as_deref().and_then(|m| price(cfg, provider, m)), now_ms);
        let body = match self.events.take() {
            Some(Events { terminal: Some(t), .. }) => t,
            // Left (or cut) before its end, after output came: an estimate.
            Some(e) => return Ok(e.head.as_deref().and_then(|h| crate::background::cut(h, e.output_chars)).iter().map(priced).collect()),
            None => decoded(self.body, &self.coding).map_err(|_| Unread::Undecodable)?,
        };
        // A compressed stream, decoded: its terminal event, read as an uncompressed one's is.
        let body = match (self.event_stream, &self.coding) {
            (true, crate::decode::Coding::Identity) | (false, _) => body,
            (true, _) => {
                let mut e = Events::new(None);
                e.feed(&body, &mut Vec::new());
                e.end(&mut Vec::new());
                e.terminal.unwrap_or_default()
            }
        };
        let identity = crate::decode::Coding::Identity;
        match self.kind {
            Kind::Batch => crate::batch::records(cfg, provider, body, &identity, now_ms),
            Kind::Response => crate::background::records(cfg, provider, body, &identity, now_ms),
        }
        .map_err(|_| Unread::Undecodable)
    }
}

