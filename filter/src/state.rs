//! The state as the request path uses it: the per-budget and per-key
//! shared-data entries, read by scope or hash on demand, and the small meta
//! value workers read on every request. Wire types: `tollgate_protocol::state`.

use std::collections::HashMap;
use std::rc::Rc;

use crate::config::KeyInfo;
pub use tollgate_protocol::state::*;

/// The shared-data entry of the budget of this scope (written by the
/// background service from full states and deltas): `"<epoch> <BudgetDoc
/// JSON>"`, or empty once the budget is gone. One entry per budget, read by
/// scope on demand: no worker holds or parses budgets it does not use.
pub fn budget_entry(scope_type: ScopeType, scope_id: &str) -> String {
    format!("tollgate:v1:budget_state:{}:{scope_id}", scope_type.as_str())
}

pub fn encode_budget_entry(epoch: u64, doc: &BudgetDoc) -> Vec<u8> {
    let mut out = format!("{epoch} ").into_bytes();
    // A BudgetDoc has no map with non-string keys: this cannot fail.
    out.extend(serde_json::to_vec(doc).unwrap_or_default());
    out
}

/// The budget of `(scope_type, scope_id)` in an entry, if the entry
/// belongs to the state of `epoch` or a newer one (entries left from before
/// the last full state carry an older epoch and count as absent).
pub fn decode_budget_entry(entry: &[u8], scope_type: ScopeType, scope_id: &str, epoch: u64) -> Option<BudgetDoc> {
    let space = entry.iter().position(|b| *b == b' ')?;
    let written: u64 = std::str::from_utf8(entry.get(..space)?).ok()?.parse().ok()?;
    if written < epoch {
        return None;
    }
    let doc: BudgetDoc = serde_json::from_slice(entry.get(space + 1..)?).ok()?;
    (doc.scope_type == scope_type && doc.scope_id == scope_id).then_some(doc)
}

/// A worker's budgets as last read, by scope. An entry is parsed again only
/// when its bytes changed. A scope without a budget is read again when the
/// state's generation moved; a budget is kept across states and handed out
/// marked `recheck`: its terms are checked against those posted in its
/// counter when the request reserves ([`crate::budget::Posted`]), and its
/// entry read again only when they differ (`refresh`). Bounded: cleared
/// when full.
#[derive(Debug, Default)]
pub struct BudgetCache {
    /// Per scope type (indexed as `ScopeType::ALL`): scope id -> entry.
    entries: [HashMap<String, CachedBudget>; ScopeType::ALL.len()],
}

/// A budget a request is subject to, as its worker holds it.
#[derive(Debug, Clone)]
pub struct HeldBudget {
    pub doc: Rc<BudgetDoc>,
    /// Read under an older state: its figures may be out of date (the
    /// counter's posted ones are used), its terms too (checked against them).
    pub recheck: bool,
}

#[derive(Debug)]
struct CachedBudget {
    generation: u64,
    epoch: u64,
    /// [`digest`] of the entry it was parsed from.
    digest: u64,
    doc: Option<Rc<BudgetDoc>>,
}

/// What the caches keep of an entry's bytes to tell whether it changed
/// (and what names a budget's terms, `budget::terms_of`): a 64-bit SipHash (the entry itself would double a cache's memory). Two
/// different entries of one name colliding would keep the older parse
/// until the entry changes again: odds of 2^-64 per change.
pub fn digest<T: std::hash::Hash + ?Sized>(v: &T) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Scopes a worker keeps read (a parsed budget and its name: about 250 bytes).
pub const BUDGET_CACHE_MAX: usize = 16_384;

impl BudgetCache {
    /// The budgets a request of (key, team, project) is subject to, under
    /// the state `meta` names; `read` fetches an entry from shared data.
    pub fn budgets_for(&mut self, meta: Meta, key_id: &str, team: &str, project: &str, mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> Vec<HeldBudget> {
        [(ScopeType::Key, key_id), (ScopeType::Team, team), (ScopeType::Project, project)]
            .into_iter()
            .filter_map(|(t, id)| self.budget(meta, t, id, &mut read))
            .collect()
    }

    fn budget(&mut self, meta: Meta, st: ScopeType, id: &str, read: &mut impl FnMut(&str) -> Option<Vec<u8>>) -> Option<HeldBudget> {
        let map = self.entries.get_mut(st as usize)?;
        if let Some(c) = map.get(id).filter(|c| c.epoch == meta.epoch) {
            match &c.doc {
                Some(doc) => return Some(HeldBudget { doc: doc.clone(), recheck: c.generation != meta.generation }),
                None if c.generation == meta.generation => return None,
                None => {}
            }
        }
        self.refresh(meta, st, id, read).map(|doc| HeldBudget { doc, recheck: false })
    }

    /// The budget of a scope as its entry holds it now (None: none), read
    /// and kept for the requests after.
    pub fn refresh(&mut self, meta: Meta, st: ScopeType, id: &str, read: &mut impl FnMut(&str) -> Option<Vec<u8>>) -> Option<Rc<BudgetDoc>> {
        let bytes = read(&budget_entry(st, id)).unwrap_or_default();
        let d = digest(&bytes);
        let map = self.entries.get_mut(st as usize)?;
        if let Some(c) = map.get_mut(id) {
            if c.digest == d && c.epoch == meta.epoch {
                c.generation = meta.generation;
                return c.doc.clone();
            }
        }
        let doc = decode_budget_entry(&bytes, st, id, meta.epoch).map(Rc::new);
        // Counted only when an entry is added, not on every lookup.
        if self.len() >= BUDGET_CACHE_MAX {
            self.entries.iter_mut().for_each(HashMap::clear);
        }
        let cached = CachedBudget { generation: meta.generation, epoch: meta.epoch, digest: d, doc: doc.clone() };
        self.entries.get_mut(st as usize)?.insert(id.to_string(), cached);
        doc
    }

    pub fn len(&self) -> usize {
        self.entries.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What workers read on every request: the state's generation (read the
/// budget entries again when it moved; 0 = no state yet), when the last
/// poll succeeded (stale?), whether this Envoy has loaded the control
/// service's keys (`KeySync::loaded`), and the epoch of the last full
/// budget state (older budget entries are left-overs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub generation: u64,
    pub ok_ms: u64,
    pub keys_synced: bool,
    pub epoch: u64,
}

/// `"<generation> <last ok poll ms> <keys synced 0|1> <epoch>"`.
pub fn encode_meta(m: Meta) -> String {
    format!("{} {} {} {}", m.generation, m.ok_ms, u8::from(m.keys_synced), m.epoch)
}

pub fn decode_meta(b: &[u8]) -> Option<Meta> {
    let s = std::str::from_utf8(b).ok()?;
    let mut it = s.split(' ');
    let generation = it.next()?.parse().ok()?;
    let ok_ms = it.next()?.parse().ok()?;
    let keys_synced = it.next().is_some_and(|v| v == "1");
    let epoch = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    Some(Meta { generation, ok_ms, keys_synced, epoch })
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
    entries: HashMap<String, (u64, Rc<KeyInfo>)>,
}

/// Entries a worker keeps parsed (a parsed key and its hash: a few hundred bytes).
pub const KEY_CACHE_MAX: usize = 16_384;

impl KeyCache {
    /// The key for `hash` given its current entry bytes; `None` when the
    /// entry is empty or unreadable.
    pub fn resolve(&mut self, hash: &str, entry: &[u8]) -> Option<Rc<KeyInfo>> {
        if entry.is_empty() {
            self.entries.remove(hash);
            return None;
        }
        let d = digest(entry);
        if let Some((seen, info)) = self.entries.get(hash) {
            if *seen == d {
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
        self.entries.insert(hash.to_string(), (d, info.clone()));
        Some(info)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

pub const STATE_META_KEY: &str = "tollgate:v1:state_meta";
pub const USAGE_QUEUE: &str = "tollgate_usage";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip() {
        let m = Meta { generation: 3, ok_ms: 1700, keys_synced: true, epoch: 9 };
        assert_eq!(decode_meta(encode_meta(m).as_bytes()), Some(m));
        assert_eq!(decode_meta(b"3 1700").map(|m| m.keys_synced), Some(false));
        assert_eq!(decode_meta(b"x"), None);
    }

    fn doc(st: ScopeType, id: &str, used: u64) -> BudgetDoc {
        serde_json::from_str(&format!(
            r#"{{"scope_type":"{}","scope_id":"{id}","limit_micros":10,"limit_tokens":null,"period_start_ms":0,
              "period_end_ms":9,"used_micros":{used},"used_tokens":0,"soft_pct":80,"hard_pct":100,"share_micros":4,"share_tokens":null}}"#,
            st.as_str()
        ))
        .unwrap()
    }

    #[test]
    fn budget_entries_are_read_by_scope_and_only_again_when_the_state_moved() {
        let mut shared: HashMap<String, Vec<u8>> = HashMap::new();
        shared.insert(budget_entry(ScopeType::Team, "t"), encode_budget_entry(5, &doc(ScopeType::Team, "t", 1)));
        // An entry under another scope's name is not that scope's budget.
        shared.insert(budget_entry(ScopeType::Project, "p"), encode_budget_entry(5, &doc(ScopeType::Project, "other", 1)));
        let reads = std::cell::Cell::new(0);
        let mut c = BudgetCache::default();
        let mut m = Meta { generation: 1, ok_ms: 0, keys_synced: true, epoch: 5 };
        let mut read = |k: &str| {
            reads.set(reads.get() + 1);
            shared.get(k).cloned()
        };
        let got = c.budgets_for(m, "k1", "t", "p", &mut read);
        assert_eq!((got.len(), got[0].doc.used_micros, got[0].recheck, reads.get()), (1, 1, false, 3));
        c.budgets_for(m, "k1", "t", "p", &mut read);
        assert_eq!(reads.get(), 3, "same generation: no shared-data read");
        m.generation = 2;
        // A newer state: the scopes without a budget are read again (one may
        // have one now); the budget is kept, to be checked against its counter.
        let again = c.budgets_for(m, "k1", "t", "p", &mut read);
        assert_eq!(reads.get(), 5);
        assert!(Rc::ptr_eq(&got[0].doc, &again[0].doc) && again[0].recheck);
        // Read again when its counter says its terms changed: same bytes, not parsed again.
        let fresh = c.refresh(m, ScopeType::Team, "t", &mut read).unwrap();
        assert!(Rc::ptr_eq(&got[0].doc, &fresh) && reads.get() == 6);
        assert!(!c.budgets_for(m, "k1", "t", "p", &mut read)[0].recheck, "read under this state");
        assert_eq!(reads.get(), 6);
        // A newer full state (epoch 6): the epoch-5 entry is a left-over.
        m = Meta { generation: 3, epoch: 6, ..m };
        assert!(c.budgets_for(m, "k1", "t", "p", &mut read).is_empty());
        // Bounded, whatever the number of scopes asked for.
        for i in 0..(BUDGET_CACHE_MAX + 10) {
            c.budgets_for(m, &format!("k{i}"), "t", "p", |_| None);
        }
        assert!(c.len() <= BUDGET_CACHE_MAX && !c.is_empty());
    }

    #[test]
    fn budget_entries_refuse_what_they_cannot_trust() {
        let d = doc(ScopeType::Key, "k", 3);
        let e = encode_budget_entry(7, &d);
        assert_eq!(decode_budget_entry(&e, ScopeType::Key, "k", 7).as_ref(), Some(&d));
        assert_eq!(decode_budget_entry(&e, ScopeType::Key, "k", 3).as_ref(), Some(&d), "newer than the meta: written by the state being applied");
        assert_eq!(decode_budget_entry(&e, ScopeType::Key, "k", 8), None, "older than the last full state");
        assert_eq!(decode_budget_entry(&e, ScopeType::Team, "k", 7), None);
        for bad in [&b""[..], b" {}", b"x {}", b"7", b"7 {", b"7 null", b"-1 {}", b"\xff\xfe"] {
            assert_eq!(decode_budget_entry(bad, ScopeType::Key, "k", 0), None);
        }
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
