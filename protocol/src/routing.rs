//! The auto router's contract: per feature, the model the control
//! service chose (the cheapest whose latest evaluation passed the
//! feature's threshold, or one an admin promoted), as every Envoy gets it
//! (`GET /v1/routing/current`; the state document's `routing_seq`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The model `auto` means for one feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed {
    pub model: String,
    /// Why, for the usage record (`routed_by`).
    pub reason: String,
    /// Every request of the feature goes to `model`, not only `model: auto`.
    #[serde(default)]
    pub bind: bool,
}

/// `GET /v1/routing/current`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingDoc {
    pub seq: u64,
    pub features: BTreeMap<String, Routed>,
}

/// The model name that asks the router.
pub const AUTO: &str = "auto";
