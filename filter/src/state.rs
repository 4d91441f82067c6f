//! The state as the request path uses it: the budget state indexed for
//! lookups, the small meta value workers read on every request, and the
//! per-key shared-data entries. Wire types: `tollgate_protocol::state`.

use std::collections::HashMap;
use std::rc::Rc;

use crate::config::KeyInfo;
pub use tollgate_protocol::state::*;

/// A parsed budget state, indexed for the request path.
#[derive(Debug, Default)]
pub struct StateView {
    pub seq: u64,
    pub budgets: HashMap<(ScopeType, String), BudgetDoc>,
}

impl StateView {
    pub fn from_doc(doc: StateDoc) -> StateView {
        let budgets = doc.budgets.into_iter().map(|b| ((b.scope_type, b.scope_id.clone()), b)).collect();
        StateView { seq: doc.seq, budgets }
    }

    /// The budgets a request of (key, team, project) is subject to.
    pub fn budgets_for(&self, key_id: &str, team: &str, project: &str) -> Vec<&BudgetDoc> {
        [(ScopeType::Key, key_id), (ScopeType::Team, team), (ScopeType::Project, project)]
            .into_iter()
            .filter_map(|(t, id)| self.budgets.get(&(t, id.to_string())))
            .collect()
    }
}

/// What workers read on every request: the state's generation (reload the
/// budget state when it changed), when the last poll succeeded (stale?),
/// and whether this Envoy has loaded the control service's keys
/// (`KeySync::loaded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub generation: u64,
    pub ok_ms: u64,
    pub keys_synced: bool,
}

/// `"<generation> <last ok poll ms> <keys synced 0|1>"`.
pub fn encode_meta(m: Meta) -> String {
    format!("{} {} {}", m.generation, m.ok_ms, u8::from(m.keys_synced))
}

pub fn decode_meta(b: &[u8]) -> Option<Meta> {
    let s = std::str::from_utf8(b).ok()?;
    let mut it = s.split(' ');
    let generation = it.next()?.parse().ok()?;
    let ok_ms = it.next()?.parse().ok()?;
    let keys_synced = it.next().is_some_and(|v| v == "1");
    Some(Meta { generation, ok_ms, keys_synced })
}

/// The shared-data entry of the key with this hash: its `KeyDoc` as JSON,
/// or empty when no live key has the hash (revoked or rotated away). One
/// entry per key, read by hash on demand: no worker ever holds or parses
/// the whole key set, however large.
pub fn key_entry(key_hash: &str) -> String {
    format!("tollgate:v1:key:{key_hash}")
}

/// A worker's cache of parsed key entries: the same bytes give the same
/// `KeyInfo` without parsing again. Bounded: cleared when full.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: HashMap<String, (Vec<u8>, Rc<KeyInfo>)>,
}

/// Entries a worker keeps parsed (each about 600 bytes: at most ~10 MiB).
pub const KEY_CACHE_MAX: usize = 16_384;

impl KeyCache {
    /// The key for `hash` given its current entry bytes; `None` when the
    /// entry is empty or unreadable.
    pub fn resolve(&mut self, hash: &str, entry: &[u8]) -> Option<Rc<KeyInfo>> {
        if entry.is_empty() {
            self.entries.remove(hash);
            return None;
        }
        if let Some((bytes, info)) = self.entries.get(hash) {
            if bytes.as_slice() == entry {
                return Some(info.clone());
            }
        }
        let doc: KeyDoc = serde_json::from_slice(entry).ok()?;
        if doc.key_hash != hash {
            return None;
        }
        let info = Rc::new(KeyInfo::from_doc(&doc));
        if self.entries.len() >= KEY_CACHE_MAX {
            self.entries.clear();
        }
        self.entries.insert(hash.to_string(), (entry.to_vec(), info.clone()));
        Some(info)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

pub const STATE_KEY: &str = "tollgate:v1:state";
pub const STATE_META_KEY: &str = "tollgate:v1:state_meta";
pub const USAGE_QUEUE: &str = "tollgate_usage";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip() {
        let m = Meta { generation: 3, ok_ms: 1700, keys_synced: true };
        assert_eq!(decode_meta(encode_meta(m).as_bytes()), Some(m));
        assert_eq!(decode_meta(b"3 1700").map(|m| m.keys_synced), Some(false));
        assert_eq!(decode_meta(b"x"), None);
    }

    #[test]
    fn view_indexes_budgets() {
        let doc: StateDoc = serde_json::from_str(r#"{"seq":5,"generated_ms":1,"nodes_active":2,"keys_seq":7,
            "budgets":[{"scope_type":"team","scope_id":"t","limit_micros":10,"limit_tokens":null,"period_start_ms":0,
              "period_end_ms":9,"used_micros":1,"used_tokens":0,"soft_pct":80,"hard_pct":100,"share_micros":4,"share_tokens":null}]}"#).unwrap();
        let v = StateView::from_doc(doc);
        assert_eq!(v.seq, 5);
        assert_eq!(v.budgets_for("k1", "t", "p").len(), 1);
        assert_eq!(v.budgets_for("k1", "u", "p").len(), 0);
    }

    #[test]
    fn key_entries_resolve_by_hash_and_follow_changes() {
        let mut c = KeyCache::default();
        let e1 = br#"{"id":"k1","key_hash":"ab","team":"t","project":"p","models":["cheap","bad*x"]}"#;
        let k = c.resolve("ab", e1).unwrap();
        assert!(k.may_use("cheap") && !k.may_use("bad*x") && !k.may_use("other"));
        assert!(Rc::ptr_eq(&k, &c.resolve("ab", e1).unwrap()), "same bytes, same parsed key");
        let e2 = br#"{"id":"k1","key_hash":"ab","team":"t2","project":"p"}"#;
        assert_eq!(c.resolve("ab", e2).unwrap().team, "t2", "a changed entry is parsed again");
        assert!(c.resolve("ab", b"").is_none(), "an empty entry is a deleted key");
        assert!(c.resolve("cd", e1).is_none(), "an entry must be the key of its own hash");
        assert!(c.resolve("ab", b"{not json").is_none());
        for i in 0..(KEY_CACHE_MAX + 10) {
            let h = format!("h{i}");
            let e = format!(r#"{{"id":"k{i}","key_hash":"{h}","team":"t","project":"p"}}"#);
            assert!(c.resolve(&h, e.as_bytes()).is_some());
        }
        assert!(c.len() <= KEY_CACHE_MAX);
    }
}
