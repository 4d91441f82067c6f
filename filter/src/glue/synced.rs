//! Documents the control service hands to every Envoy besides the budget
//! state and the keys: the guardrail policy (`PUT /v1/guardrails`), the
//! prompt registry and the auto router's picks. The state document names each one's change number;
//! the background service fetches a newer one into shared data (checked
//! first: a document a worker could not use is never stored) with its
//! number beside it, and every worker reads the number on its tick (twice
//! a second) and the document only when the number moved — no request pays
//! a host call for it. An unreachable control service leaves each
//! Envoy with what it last had.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::Context;
use tollgate_protocol::guard::GuardrailsDoc;
use tollgate_protocol::prompts::PromptsDoc;
use tollgate_protocol::routing::RoutingDoc;

use super::host;
use crate::config::{Config, Control};
use crate::guard::Policy;
use crate::prompts::Registry;

/// One synced document, on the background service's side.
pub(super) struct Synced {
    what: &'static str,
    path: &'static str,
    key: &'static str,
    /// Checks a fetched body; its change number.
    check: fn(&[u8]) -> Result<u64, String>,
    held: u64,
    wanted: u64,
    token: Option<u32>,
}

impl Synced {
    pub(super) fn guardrails() -> Synced {
        Synced { what: "guardrail policy", path: "/v1/guardrails/current", key: GUARD_KEY, check: check_guardrails, held: 0, wanted: 0, token: None }
    }

    pub(super) fn prompts() -> Synced {
        Synced { what: "prompt registry", path: "/v1/prompts/current", key: PROMPTS_KEY, check: check_prompts, held: 0, wanted: 0, token: None }
    }

    pub(super) fn routing() -> Synced {
        Synced { what: "auto router", path: "/v1/routing/current", key: ROUTING_KEY, check: check_routing, held: 0, wanted: 0, token: None }
    }

    /// The change this Envoy holds.
    pub(super) fn held(&self) -> u64 {
        self.held
    }

    /// The state names change `seq`.
    pub(super) fn want(&mut self, seq: u64) {
        self.wanted = seq;
    }

    /// Fetches when behind and nothing is in flight.
    pub(super) fn fetch(&mut self, ctx: &dyn Context, ctl: &Control) {
        if self.token.is_some() || self.wanted == self.held {
            return;
        }
        let auth = format!("Bearer {}", ctl.token.expose());
        let headers = vec![(":method", "GET"), (":path", self.path), (":authority", ctl.authority.as_str()), ("authorization", auth.as_str())];
        match ctx.dispatch_http_call(&ctl.cluster, headers, None, vec![], Duration::from_millis(ctl.timeout_ms)) {
            Ok(token) => self.token = Some(token),
            Err(e) => log::warn!("cannot fetch the {} from cluster '{}': {e:?}", self.what, ctl.cluster),
        }
    }

    /// Takes the answer if it is this document's.
    pub(super) fn on_answer(&mut self, token: u32, status: u16, body_size: usize) -> bool {
        if self.token != Some(token) {
            return false;
        }
        self.token = None;
        let body = host::buffer(host::CALL_RESPONSE_BODY, 0, body_size);
        if status != 200 {
            log::warn!("cannot get the {} from the control service (status {status}); keeping the current one, will retry", self.what);
            return true;
        }
        match (self.check)(&body) {
            Ok(seq) => {
                // The document, then its number: workers read the small entry on every tick.
                if host::set_shared(self.key, &body, None) != host::SetShared::Ok
                    || host::set_shared(&seq_key(self.key), seq.to_string().as_bytes(), None) != host::SetShared::Ok
                {
                    log::warn!("cannot store the {} in shared data; will retry", self.what);
                    return true;
                }
                log::info!("{} change {seq} applied", self.what);
                self.held = seq;
            }
            Err(why) => {
                // Workers could not use it either: keep what is in force, do not ask again for this change.
                log::error!("the control service's {} is unusable ({why}); keeping the current one", self.what);
                self.held = self.wanted;
            }
        }
        true
    }
}

/// The entry holding a document's change number.
fn seq_key(key: &str) -> String {
    format!("{key}:seq")
}

/// Shared-data entries: the documents as received.
const GUARD_KEY: &str = "tollgate:v1:guardrails";
const PROMPTS_KEY: &str = "tollgate:v1:prompts";
const ROUTING_KEY: &str = "tollgate:v1:routing";

/// The largest registry an Envoy takes (each worker holds it parsed).
pub(super) const MAX_REGISTRY_BYTES: usize = 8 << 20;

fn check_guardrails(body: &[u8]) -> Result<u64, String> {
    let doc: GuardrailsDoc = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some(p) = doc.policy {
        Policy::build(p).map_err(|(f, m)| format!("guardrails.{f}: {m}"))?;
    }
    Ok(doc.seq)
}

fn check_routing(body: &[u8]) -> Result<u64, String> {
    let doc: RoutingDoc = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some((f, _)) = doc.features.iter().find(|(_, r)| !crate::request::valid_model_name(&r.model)) {
        return Err(format!("feature '{}' routes to an invalid model name", crate::text::clean_field(f, 64)));
    }
    Ok(doc.seq)
}

fn check_prompts(body: &[u8]) -> Result<u64, String> {
    if body.len() > MAX_REGISTRY_BYTES {
        return Err(format!("{} bytes, more than the {MAX_REGISTRY_BYTES} an Envoy holds", body.len()));
    }
    let doc: PromptsDoc = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(doc.seq)
}

/// A worker's copy of a document: the change number it was read at, and
/// what it held.
type Held<T> = RefCell<(Option<Vec<u8>>, Option<Rc<T>>)>;

thread_local! {
    static GUARD: Held<Policy> = const { RefCell::new((None, None)) };
    static PROMPTS: Held<Registry> = const { RefCell::new((None, None)) };
    static ROUTING: Held<RoutingDoc> = const { RefCell::new((None, None)) };
}

/// Reads `key` again when its number moved (only the small entry otherwise).
fn reread<T>(cell: &Held<T>, key: &str, parse: impl FnOnce(&[u8]) -> Option<T>) {
    let seq = host::shared(&seq_key(key)).0;
    let mut c = cell.borrow_mut();
    if c.0 == seq {
        return;
    }
    c.0 = seq;
    c.1 = host::shared(key).0.and_then(|b| parse(&b)).map(Rc::new);
}

/// Re-reads the documents that changed (a worker's tick and configuration).
pub(super) fn refresh() {
    GUARD.with(|c| {
        reread(c, GUARD_KEY, |b| serde_json::from_slice::<GuardrailsDoc>(b).ok().and_then(|d| d.policy).and_then(|p| Policy::build(p).ok()))
    });
    PROMPTS.with(|c| reread(c, PROMPTS_KEY, |b| serde_json::from_slice::<PromptsDoc>(b).ok().map(Registry::from_doc)));
    ROUTING.with(|c| reread(c, ROUTING_KEY, |b| serde_json::from_slice::<RoutingDoc>(b).ok()));
}

/// The auto router's picks this worker holds.
pub(super) fn routing() -> Option<Rc<RoutingDoc>> {
    ROUTING.with(|c| c.borrow().1.clone())
}

/// The guardrail policy for a request: the control service's, else the configuration's.
pub(super) fn guard_policy(cfg: &Config) -> Option<Rc<Policy>> {
    GUARD.with(|c| c.borrow().1.clone()).or_else(|| cfg.guardrails.clone())
}

/// The prompt registry this worker holds (`None`: never loaded).
pub(super) fn registry() -> Option<Rc<Registry>> {
    PROMPTS.with(|c| c.borrow().1.clone())
}
