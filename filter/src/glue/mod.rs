//! The proxy-wasm glue: maps Envoy's callbacks onto the pure logic.
//!
//! - [`host`]: raw host calls that never panic (headers and bodies as bytes)
//! - [`logger`]: the `log::` facade onto Envoy's log
//! - [`http`]: one context per request
//! - [`service`]: the per-Envoy background service (usage shipping, state)
//! - this file: the root context (configuration, ticks) and the shared
//!   per-VM helpers (clock, request ids, budget counters, state cache, queue,
//!   metrics)
//!
//! Root context: parses and validates the configuration once (`on_configure`
//! returning false makes Envoy refuse the plugin). Every failure path ends in
//! a local reply or a pass-through, never a panic (a panic kills the VM and
//! every request on the worker fails).

mod host;
mod http;
mod logger;
mod service;
mod synced;

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::config::{Config, KeyInfo};
use crate::ids::IdMaker;
use crate::record::UsageRecord;
use crate::state::{decode_meta, BudgetCache, BudgetDoc, HeldBudget, KeyCache, Meta, ScopeType, STATE_META_KEY, USAGE_QUEUE};

proxy_wasm::main! {{
    logger::install();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TollgateRoot { config: None, service: None, pause_verified: Rc::default() }) });
}}

/// One root context type for both roles: the HTTP filter (root_id
/// `tollgate`) and the per-Envoy background service (a singleton
/// `WasmService` whose root_id ends in `_service`).
struct TollgateRoot {
    config: Option<Rc<Config>>,
    service: Option<service::Service>,
    /// Envoy was seen to hold a request's headers until its body was read
    /// (see `http::TollgateHttp::on_request_complete`): per plugin
    /// configuration, so a new configuration is checked again.
    pause_verified: Rc<std::cell::Cell<bool>>,
}

impl Context for TollgateRoot {
    fn on_http_call_response(&mut self, token: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(mut svc) = self.service.take() else { return };
        match self.config.clone() {
            Some(cfg) => svc.on_response(self, &cfg, token, body_size),
            None => log::warn!("a control-service answer arrived before the configuration"),
        }
        self.service = Some(svc);
    }

    /// The VM is going away (a new configuration, Envoy draining): what
    /// this worker still owes its budget counters is written now, and the
    /// records it gathered are handed over.
    fn on_done(&mut self) -> bool {
        flush_settlements();
        flush_outbox();
        true
    }
}

/// This Envoy's node id (`--service-node` / `node.id` in the bootstrap):
/// Envoy's attribute `xds.node` (the older `node` path answers nothing).
fn node_id() -> String {
    [&["xds", "node", "id"][..], &["node", "id"][..]]
        .into_iter()
        .find_map(|p| host::property(p).filter(|b| !b.is_empty()))
        .map(|b| crate::text::loggable(&b, 128))
        .unwrap_or_default()
}

impl RootContext for TollgateRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        // (Not the SDK's get_plugin_configuration: it unwraps the host's status.)
        let bytes = host::buffer(host::PLUGIN_CONFIGURATION, 0, usize::MAX);
        let c = match Config::from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let root_id = host::property(&["plugin_root_id"]).map(|b| crate::text::loggable(&b, 128)).unwrap_or_default();
        if root_id.ends_with("_service") {
            let Some(ctl) = &c.control else {
                log::error!("invalid tollgate configuration: field 'control': the background service ({root_id}) needs a 'control' section");
                return false;
            };
            let node = match ctl.node.clone().or_else(|| Some(node_id()).filter(|n| !n.is_empty())) {
                Some(n) => n,
                None => {
                    // No stable name: budgets would be split with every past
                    // incarnation of this Envoy until their grants expire.
                    let n = format!("envoy-{}", now_ms());
                    log::warn!("service: Envoy has no node id (start it with --service-node or set control.node); using '{n}' until restart");
                    n
                }
            };
            let Some(queue) = host::register_queue(USAGE_QUEUE) else {
                log::error!("service: Envoy refused to register the usage queue; usage is not shipped");
                return false;
            };
            let tick = ctl.flush_ms.min(ctl.poll_ms).min(250);
            host::set_tick_period(u32::try_from(tick).unwrap_or(250));
            log::info!("service: node '{node}', control cluster '{}', poll every {} ms", ctl.cluster, ctl.poll_ms);
            self.service = Some(service::Service::new(node, queue, ctl.poll_ms, ctl.max_buffered_records));
        } else {
            // Watch for requests whose body never reaches the filter, and
            // for a new guardrail policy or prompt registry (see `on_tick`).
            host::set_tick_period(500);
            synced::refresh();
            log::info!(
                "configured: {} keys, {} providers, max_request_bytes={}, control={}",
                c.keys.len(),
                c.providers.len(),
                c.max_request_bytes,
                c.control.as_ref().map(|c| c.cluster.as_str()).unwrap_or("none")
            );
        }
        self.config = Some(Rc::new(c));
        self.pause_verified = Rc::default();
        true
    }

    fn on_tick(&mut self) {
        let Some(cfg) = self.config.clone() else { return };
        match self.service.take() {
            Some(mut svc) => {
                svc.tick(self, &cfg);
                self.service = Some(svc);
            }
            None => {
                flush_metrics();
                flush_settlements();
                flush_outbox();
                let _ = write_settlements(&[]);
                synced::refresh();
                self.answer_stuck_requests(&cfg);
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Must never return None (the SDK would panic).
        Some(Box::new(http::TollgateHttp::new(self.config.clone(), context_id, self.pause_verified.clone())))
    }
}

impl TollgateRoot {
    /// Requests paused in their headers whose body never came: Envoy is not
    /// passing bodies to the filter (`allow_on_headers_stop_iteration` is
    /// missing, so the pause became StopAllIterationAndWatermark). Without
    /// an answer they would hang until the route timeout; they get a 503
    /// that names the setting, and the log says it once per worker.
    fn answer_stuck_requests(&self, cfg: &Config) {
        let now = now_ms();
        let stuck: Vec<u32> = AWAITING_BODY.with(|a| {
            let mut a = a.borrow_mut();
            let ids: Vec<u32> = a.iter().filter(|(_, since)| now.saturating_sub(**since) >= cfg.body_wait_ms).map(|(id, _)| *id).collect();
            for id in &ids {
                a.remove(id);
            }
            ids
        });
        for id in stuck {
            if !host::set_effective_context(id) {
                continue;
            }
            let e = crate::errors::GatewayError::body_not_delivered(cfg.body_wait_ms);
            host::send_response(u32::from(e.status), &[("content-type", "application/json")], e.body().as_bytes());
            STUCK_LOGGED.with(|l| {
                if !l.replace(true) {
                    log::error!(
                        "a request's body did not reach the filter within {} ms of its headers: answered 503. If this repeats, the Wasm filter is missing 'allow_on_headers_stop_iteration: true' and Envoy never passes bodies to it.",
                        cfg.body_wait_ms
                    );
                }
            });
        }
    }
}

thread_local! {
    static STUCK_LOGGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Notes that request `context_id` paused in its headers to wait for its body.
fn awaiting_body(context_id: u32, since_ms: u64) {
    AWAITING_BODY.with(|a| a.borrow_mut().insert(context_id, since_ms));
}

/// The body came (or the request ended): stop watching it.
fn body_arrived(context_id: u32) {
    AWAITING_BODY.with(|a| a.borrow_mut().remove(&context_id));
}

fn now_ms() -> u64 {
    host::now_ms()
}

const VM_SEQ_KEY: &str = "tollgate:v1:vm-seq";

thread_local! {
    /// Requests of this worker paused in their headers, waiting for their
    /// body: context id -> since (ms). Watched by the root context's tick.
    static AWAITING_BODY: RefCell<std::collections::HashMap<u32, u64>> = RefCell::new(std::collections::HashMap::new());
    static ID_MAKER: RefCell<Option<IdMaker>> = const { RefCell::new(None) };
    static BUDGET_CACHE: RefCell<BudgetCache> = RefCell::new(BudgetCache::default());
    static USAGE_QUEUE_ID: RefCell<Option<u32>> = const { RefCell::new(None) };
    static OUTBOX: RefCell<crate::outbox::Outbox> = RefCell::new(crate::outbox::Outbox::default());
    static KEY_CACHE: RefCell<KeyCache> = RefCell::new(KeyCache::default());
    static VM_NUMBER: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    static VM_PAGES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static METRIC_IDS: RefCell<std::collections::HashMap<String, u32>> = RefCell::new(std::collections::HashMap::new());
    static METRIC_SETS: RefCell<std::collections::HashMap<String, MetricSet>> = RefCell::new(std::collections::HashMap::new());
    static PENDING_METRICS: RefCell<crate::metrics::Pending> = RefCell::new(crate::metrics::Pending::default());
    /// This worker's side of its budget counters (room ahead, settlements owed).
    static BUDGET_LOCAL: RefCell<crate::admission::Local> = RefCell::new(crate::admission::Local::default());
    /// Settlements from the outbox that could not be written yet ([`write_settlements`]).
    static UNWRITTEN: RefCell<crate::admission::Unwritten> = const { RefCell::new(Vec::new()) };
}

/// A new request id (see [`crate::ids`]). The VM draws its number from a
/// shared counter on first use.
fn next_request_id() -> String {
    ID_MAKER.with(|m| {
        let mut m = m.borrow_mut();
        if m.is_none() {
            *m = Some(IdMaker::new(&node_id(), now_ms(), vm_number()));
        }
        m.as_mut().map(IdMaker::next_id).unwrap_or_default()
    })
}

/// This VM's number in this Envoy, drawn once from a shared counter.
fn vm_number() -> u64 {
    if let Some(n) = VM_NUMBER.get() {
        return n;
    }
    let mut vm = 0u64;
    for _ in 0..64 {
        let (value, cas) = host::shared(VM_SEQ_KEY);
        vm = value.and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()).unwrap_or(0);
        if host::set_shared(VM_SEQ_KEY, (vm + 1).to_string().as_bytes(), cas) != host::SetShared::CasMismatch {
            break;
        }
    }
    VM_NUMBER.set(Some(vm));
    vm
}

/// This VM's linear memory as a gauge, `tollgate.vm_memory_bytes.vm_<n>`,
/// set when it changed (Wasm memory only grows): what each worker and the
/// background service hold, apart from Envoy's shared data.
fn report_vm_memory() {
    #[cfg(target_arch = "wasm32")]
    let pages = core::arch::wasm32::memory_size(0) as u64;
    #[cfg(not(target_arch = "wasm32"))]
    let pages = 0u64;
    if VM_PAGES.get() != pages {
        VM_PAGES.set(pages);
        add_metric(crate::metrics::Kind::Gauge, format!("tollgate.vm_memory_bytes.vm_{}", vm_number()), pages * 65_536);
    }
}

/// Envoy shared data as the pure budget logic sees it ([`crate::admission`]).
pub(crate) struct HostCounters;

/// Runs `f` with this worker's side of its budget counters.
pub(crate) fn with_budget_local<T>(f: impl FnOnce(&mut crate::admission::Local) -> T) -> T {
    BUDGET_LOCAL.with(|u| f(&mut u.borrow_mut()))
}

/// Writes what this worker owes its budget counters and gives its room
/// back (the tick, and the VM's end).
fn flush_settlements() {
    with_budget_local(|u| {
        if !u.is_empty() {
            crate::admission::flush(&HostCounters, u);
        }
    });
}

impl crate::admission::SharedCounters for HostCounters {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        host::shared(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> crate::admission::SetResult {
        match host::set_shared(key, value, cas) {
            host::SetShared::Ok => crate::admission::SetResult::Ok,
            host::SetShared::CasMismatch => crate::admission::SetResult::CasMismatch,
            host::SetShared::Failed => crate::admission::SetResult::Failed,
        }
    }

    /// Into the worker's outbox, beside its usage records, for the
    /// background service to write (when this Envoy has one).
    fn defer(&self, key: &str, reserved: crate::budget::Amount, actual: crate::budget::Amount) -> bool {
        if usage_queue().is_none() {
            return false;
        }
        if let Some(group) = OUTBOX.with(|o| o.borrow_mut().push_settlement(key, reserved, actual)) {
            enqueue_group(&group);
        }
        true
    }

    /// Read again and kept in the worker's cache for the requests after.
    fn budget(&self, scope_type: ScopeType, scope_id: &str, generation: u64, epoch: u64) -> Option<BudgetDoc> {
        let meta = Meta { generation, epoch, ..Meta::default() };
        let doc = BUDGET_CACHE.with(|c| c.borrow_mut().refresh(meta, scope_type, scope_id, &mut |name| host::shared(name).0))?;
        Some(BudgetDoc::clone(&doc))
    }
}

/// The state's meta (`None`: no poll ever succeeded).
fn current_state() -> Option<Meta> {
    host::shared(STATE_META_KEY).0.and_then(|b| decode_meta(&b))
}

/// The budgets a request of (key, team, project) is subject to, from their
/// shared-data entries ([`BudgetCache`]).
fn budgets_for(meta: Meta, key_id: &str, team: &str, project: &str) -> Vec<HeldBudget> {
    if meta.generation == 0 {
        return Vec::new();
    }
    BUDGET_CACHE.with(|c| c.borrow_mut().budgets_for(meta, key_id, team, project, |name| host::shared(name).0))
}

/// The key with this hash from its shared-data entry (written by the
/// background service from the control service's key changes).
fn shared_key(hash: &str) -> Option<Rc<KeyInfo>> {
    let entry = host::shared(&crate::state::key_entry(hash)).0?;
    KEY_CACHE.with(|c| c.borrow_mut().resolve(hash, &entry))
}

/// Hands a usage record to this Envoy's background service: gathered in
/// the worker's outbox, handed over a group at a time ([`crate::outbox`]).
fn enqueue_record(json: &[u8]) {
    if let Some(group) = OUTBOX.with(|o| o.borrow_mut().push(json)) {
        enqueue_group(&group);
    }
}

/// Hands over what the worker's outbox holds (the tick, the VM's end).
fn flush_outbox() {
    if let Some(group) = OUTBOX.with(|o| o.borrow_mut().take()) {
        enqueue_group(&group);
    }
}

/// The background service's usage queue, resolved lazily: the service may
/// register it after this worker started.
fn usage_queue() -> Option<u32> {
    USAGE_QUEUE_ID.with(|q| {
        let mut q = q.borrow_mut();
        if q.is_none() {
            let vm_id = host::property(&["plugin_vm_id"]).map(|b| crate::text::loggable(&b, 256)).unwrap_or_default();
            *q = host::resolve_queue(&vm_id, USAGE_QUEUE);
        }
        *q
    })
}

fn enqueue_group(group: &[u8]) {
    match usage_queue() {
        Some(id) => {
            if !host::enqueue(id, group) {
                log::warn!("usage queue unavailable; record kept only in the log");
                USAGE_QUEUE_ID.with(|q| *q.borrow_mut() = None);
                let _ = write_settlements(group);
            }
        }
        None => {
            log::warn!("usage queue not found (is the tollgate_service bootstrap extension configured with the same vm_id?)");
            let _ = write_settlements(group);
        }
    }
}

/// Writes the budget settlements a group carries (the background service,
/// or a worker whose group could not be handed over) and those this VM
/// could not write before ([`crate::admission::write_handed_over`]; an
/// empty group on the tick retries those only); returns how many were
/// written.
fn write_settlements(group: &[u8]) -> u64 {
    UNWRITTEN.with(|u| {
        let mut left = u.borrow_mut();
        let (written, dropped) = crate::admission::write_handed_over(&HostCounters, &mut left, group);
        if !left.is_empty() {
            log::warn!("cannot write {} budget settlements to shared data now; trying again on the next tick", left.len());
        }
        if dropped > 0 {
            log::error!("dropping {dropped} budget settlements that shared data would not take; their reservations stay held until this Envoy restarts");
        }
        written
    })
}

/// Adds a record to the Envoy metrics. Series are defined on first use
/// (per worker, found again by the record's label set without formatting
/// names); counters are summed in the worker and handed to Envoy by
/// [`flush_metrics`] on the worker's tick, histograms recorded at once.
fn record_metrics(rec: &UsageRecord) {
    use crate::metrics::{Dims, Kind};
    let dims = Dims::of(rec);
    let points = crate::metrics::points(rec);
    METRIC_SETS.with(|sets| {
        let mut sets = sets.borrow_mut();
        let key = dims.key();
        if !sets.contains_key(&key) {
            // Bound the label sets one worker defines (label cardinality).
            if sets.len() >= 2_000 {
                return;
            }
            sets.insert(key.clone(), MetricSet { label: dims.label(), ids: std::collections::HashMap::new() });
        }
        let Some(set) = sets.get_mut(&key) else { return };
        for (series, value) in points {
            let id = match set.ids.get(&series) {
                Some(id) => *id,
                None => {
                    let t = match series.kind() {
                        Kind::Counter => 0,
                        Kind::Gauge => 1,
                        Kind::Histogram => 2,
                    };
                    let Some(id) = host::define_metric(t, &series.name(&set.label)) else { continue };
                    set.ids.insert(series, id);
                    id
                }
            };
            match series.kind() {
                Kind::Counter => PENDING_METRICS.with(|p| p.borrow_mut().add(id, value)),
                Kind::Gauge | Kind::Histogram => host::record_metric(id, value),
            }
        }
    });
}

/// Hands the counters summed since the last flush to Envoy.
fn flush_metrics() {
    for (id, v) in PENDING_METRICS.with(|p| p.borrow_mut().drain()) {
        host::increment_metric(id, v);
    }
}

/// The series of one label set, by kind of value.
struct MetricSet {
    label: String,
    ids: std::collections::HashMap<crate::metrics::Series, u32>,
}

fn add_metric(kind: crate::metrics::Kind, name: String, value: u64) {
    let id = METRIC_IDS.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(id) = m.get(&name) {
            return Some(*id);
        }
        let t = match kind {
            crate::metrics::Kind::Counter => 0,
            crate::metrics::Kind::Gauge => 1,
            crate::metrics::Kind::Histogram => 2,
        };
        let id = host::define_metric(t, &name)?;
        m.insert(name, id);
        Some(id)
    });
    let Some(id) = id else { return };
    match kind {
        crate::metrics::Kind::Counter => host::increment_metric(id, value),
        crate::metrics::Kind::Gauge | crate::metrics::Kind::Histogram => host::record_metric(id, value),
    }
}
