//! The wire contract between Tollgate's filter and its control service,
//! and nothing else: serde types and the few pure functions both sides
//! must compute the same way.
//!
//! - [`record`]: the usage record (one per request), its outcome and
//!   budget-decision enums, its bounds and the budget amount it counts;
//! - [`scope`]: budget scopes, `"team:search"` on the wire;
//! - [`state`]: the state document (`GET /v1/state`), the ingest batch
//!   (`POST /v1/usage`) and its acknowledgement;
//! - [`usage`]: normalised token counts; [`Api`]: the client APIs;
//! - [`guard`]: a guardrail policy and its validation;
//! - [`json`]: refusing a JSON document with a member twice; [`jsonfix`]:
//!   whether an answer is the JSON its request asked for (filter and evaluations);
//! - [`prompts`]: the prompt registry (versions, labels, templates);
//! - [`keys`]: how a virtual key is hashed (the service stores hashes the
//!   filter compares); [`format`]: money and time as text; [`text`]: how
//!   untrusted text is bounded before it is stored or shown.
//!
//! The filter (`tollgate-filter`) and the service (`tollgate-control`) both
//! depend on this crate; neither depends on the other.

mod api;
pub mod format;
pub mod guard;
pub mod json;
pub mod jsonfix;
pub mod prompts;
pub mod keys;
pub mod record;
pub mod routing;
pub mod scope;
pub mod state;
pub mod text;
pub mod usage;

pub use api::Api;
