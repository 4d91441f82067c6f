//! Tollgate's Envoy filter.
//!
//! Everything but [`glue`] is pure logic with no host calls, tested natively
//! with `cargo test` and shared with the control service (the usage record,
//! pricing). [`glue`] maps proxy-wasm callbacks onto it and exists only in
//! the wasm32 build.

pub mod access_log;
pub mod admission;
pub mod background;
pub mod big_event;
pub mod batch;
pub mod budget;
pub mod caching;
pub mod config;
pub mod context;
pub mod decode;
pub mod errors;
pub mod fingerprint;
pub mod gemini;
pub mod guard;
pub mod hostmap;
pub mod ids;
pub use tollgate_protocol::jsonfix;
pub mod budgetsync;
pub mod keysync;
pub mod metrics;
pub mod models;
pub mod objects;
pub mod owned;
pub mod outbox;
pub mod pricing;
pub mod prompts;
pub mod reader;
pub mod record;
pub mod request;
pub mod request_head;
pub mod responses_api;
pub mod served;
pub mod response;
pub mod route;
pub mod shipper;
pub mod splice;
pub mod sse;
pub mod state;
pub mod translate;
pub mod usage;

/// The wire contract's key hashing and text bounds, used throughout the filter.
pub use tollgate_protocol::{keys, text};

#[cfg(any(target_arch = "wasm32", feature = "glue-lint"))]
mod glue;
