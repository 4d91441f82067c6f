//! The guardrail policy in force on this worker: the control service's
//! (`PUT /v1/guardrails`, fetched by the background service into shared
//! data), else the configuration's. Checked on the worker's tick, so a
//! change reaches every request within a poll and a tick; no request pays
//! a host call for it.

use std::cell::RefCell;
use std::rc::Rc;

use tollgate_protocol::guard::GuardrailsDoc;

use super::host;
use crate::config::Config;
use crate::guard::Policy;

/// Shared-data entry: the control service's `GuardrailsDoc` as received.
pub(super) const GUARD_KEY: &str = "tollgate:v1:guardrails";

thread_local! {
    /// The entry's CAS when last read, and the policy it held.
    static CONTROL: RefCell<(Option<u32>, Option<Rc<Policy>>)> = const { RefCell::new((None, None)) };
}

/// Re-reads the entry when it changed.
pub(super) fn refresh() {
    let (bytes, cas) = host::shared(GUARD_KEY);
    CONTROL.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 == cas {
            return;
        }
        c.0 = cas;
        c.1 = bytes.and_then(|b| serde_json::from_slice::<GuardrailsDoc>(&b).ok()).and_then(|d| d.policy).and_then(|p| match Policy::build(p) {
            Ok(p) => {
                log::info!("guardrail policy '{}' from the control service is in force", p.version);
                Some(Rc::new(p))
            }
            Err((field, msg)) => {
                log::error!("the control service's guardrail policy is invalid (guardrails.{field}: {msg}); using the configuration's");
                None
            }
        });
    });
}

/// The policy for a request.
pub(super) fn policy(cfg: &Config) -> Option<Rc<Policy>> {
    CONTROL.with(|c| c.borrow().1.clone()).or_else(|| cfg.guardrails.clone())
}
