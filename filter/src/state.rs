//! The budget-state document the control service serves to the filters
//! (`GET /v1/state`), and the ingest batch they send (`POST /v1/usage`).
//! Shared by both sides; docs/control-api.md is the contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};


/// A key as the control service publishes it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDoc {
    pub id: String,
    pub key_hash: String,
    pub team: String,
    pub project: String,
    /// Route names the key may use; `None` = all.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub projects: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeType {
    Key,
    Team,
    Project,
}

impl ScopeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeType::Key => "key",
            ScopeType::Team => "team",
            ScopeType::Project => "project",
        }
    }

    pub fn parse(s: &str) -> Option<ScopeType> {
        match s {
            "key" => Some(ScopeType::Key),
            "team" => Some(ScopeType::Team),
            "project" => Some(ScopeType::Project),
            _ => None,
        }
    }
}

/// One budget as the fleet sees it right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetDoc {
    pub scope_type: ScopeType,
    /// Key id, team name or project name.
    pub scope_id: String,
    pub limit_micros: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    /// Recorded by the whole fleet in this period (ingested records).
    pub used_micros: u64,
    pub used_tokens: u64,
    /// Soft threshold in percent of the limit (warning); `None` = off.
    pub soft_pct: Option<u32>,
    /// Hard threshold in percent of the limit (stop); `None` = off.
    pub hard_pct: Option<u32>,
    /// What the polling Envoy may spend beyond `used` until its next state:
    /// (hard limit − used) / active Envoys. `None` = no hard stop.
    pub share_micros: Option<u64>,
    pub share_tokens: Option<u64>,
}

impl BudgetDoc {
    pub fn hard_limit_micros(&self) -> Option<u64> {
        Some(pct_of(self.limit_micros?, self.hard_pct?))
    }
    pub fn hard_limit_tokens(&self) -> Option<u64> {
        Some(pct_of(self.limit_tokens?, self.hard_pct?))
    }
    pub fn soft_limit_micros(&self) -> Option<u64> {
        Some(pct_of(self.limit_micros?, self.soft_pct?))
    }
    pub fn soft_limit_tokens(&self) -> Option<u64> {
        Some(pct_of(self.limit_tokens?, self.soft_pct?))
    }
}

/// `limit × pct / 100`, rounded down, in integers.
pub fn pct_of(limit: u64, pct: u32) -> u64 {
    u64::try_from(u128::from(limit) * u128::from(pct) / 100).unwrap_or(u64::MAX)
}

/// `GET /v1/state` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StateDoc {
    /// Ingest sequence the `used` figures include (monotonic).
    pub seq: u64,
    pub generated_ms: u64,
    pub nodes_active: u32,
    pub keys: Vec<KeyDoc>,
    pub budgets: Vec<BudgetDoc>,
}

/// `POST /v1/usage` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAck {
    pub accepted: u64,
    pub duplicates: u64,
    /// Records refused as invalid (not stored, never to be retried as they
    /// are): their index in the batch, id and the field at fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedRecord>,
    /// The ingest sequence once these records are counted: a state with
    /// `seq >= this` includes them.
    pub seq: u64,
}

/// `POST /v1/usage`: a batch of usage records from one Envoy. Records stay
/// raw JSON text on both sides (the filter serialised them once; the service
/// stores the text as received and checks each record on its own).
#[derive(Debug, Serialize, Deserialize)]
pub struct IngestBatch<'a> {
    #[serde(borrow)]
    pub node: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub records: Vec<&'a serde_json::value::RawValue>,
}

/// A record the control service refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    pub index: usize,
    pub id: String,
    pub reason: String,
}

/// A parsed state, indexed for the request path.
#[derive(Debug, Default)]
pub struct StateView {
    pub seq: u64,
    pub keys: std::collections::HashMap<String, std::rc::Rc<crate::config::KeyInfo>>,
    pub budgets: std::collections::HashMap<(ScopeType, String), BudgetDoc>,
}

impl StateView {
    pub fn from_doc(doc: StateDoc) -> StateView {
        let keys = doc
            .keys
            .iter()
            .map(|k| (k.key_hash.clone(), std::rc::Rc::new(crate::config::KeyInfo::from_doc(k))))
            .collect();
        let budgets = doc.budgets.into_iter().map(|b| ((b.scope_type, b.scope_id.clone()), b)).collect();
        StateView { seq: doc.seq, keys, budgets }
    }

    /// The budgets a request of (key, team, project) is subject to.
    pub fn budgets_for(&self, key_id: &str, team: &str, project: &str) -> Vec<&BudgetDoc> {
        [(ScopeType::Key, key_id), (ScopeType::Team, team), (ScopeType::Project, project)]
            .into_iter()
            .filter_map(|(t, id)| self.budgets.get(&(t, id.to_string())))
            .collect()
    }
}

/// `"<generation> <last ok poll ms>"`: the small shared-data value workers
/// read on every request to know whether to reload the state and whether it is stale.
pub fn encode_meta(generation: u64, ok_ms: u64) -> String {
    format!("{generation} {ok_ms}")
}

pub fn decode_meta(b: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(b).ok()?;
    let (g, t) = s.split_once(' ')?;
    Some((g.parse().ok()?, t.parse().ok()?))
}

pub const STATE_KEY: &str = "tollgate:v1:state";
pub const STATE_META_KEY: &str = "tollgate:v1:state_meta";
pub const USAGE_QUEUE: &str = "tollgate_usage";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip() {
        assert_eq!(decode_meta(encode_meta(3, 1700).as_bytes()), Some((3, 1700)));
        assert_eq!(decode_meta(b"x"), None);
    }

    #[test]
    fn view_indexes_keys_and_budgets() {
        let doc: StateDoc = serde_json::from_str(r#"{"seq":5,"generated_ms":1,"nodes_active":2,
            "keys":[{"id":"k1","key_hash":"ab","team":"t","project":"p","models":["cheap","bad*x"]}],
            "budgets":[{"scope_type":"team","scope_id":"t","limit_micros":10,"limit_tokens":null,"period_start_ms":0,
              "period_end_ms":9,"used_micros":1,"used_tokens":0,"soft_pct":80,"hard_pct":100,"share_micros":4,"share_tokens":null}]}"#).unwrap();
        let v = StateView::from_doc(doc);
        assert_eq!(v.seq, 5);
        let k = v.keys.get("ab").unwrap();
        assert!(k.may_use("cheap") && !k.may_use("bad*x") && !k.may_use("other"));
        assert_eq!(v.budgets_for("k1", "t", "p").len(), 1);
        assert_eq!(v.budgets_for("k1", "u", "p").len(), 0);
    }
}
