//! The budget-state document the control service serves to the filters
//! (`GET /v1/state`), and the ingest batch they send (`POST /v1/usage`).
//! Shared by both sides; docs/control-api.md is the contract.


pub use tollgate_protocol::state::*;

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
