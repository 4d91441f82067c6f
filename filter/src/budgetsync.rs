//! Keeping this Envoy's budget entries in step with the control service,
//! as a state machine the background service drives (no host calls here).
//!
//! Each state poll sends back the cursor of the last state applied; the
//! answer is the whole budget state (`budgets_full`) or the budgets
//! changed since that cursor and those removed. Each budget is written to
//! its own shared-data entry ([`crate::state::budget_entry`]), so workers
//! read only the budgets of the requests they serve. A full state starts a
//! new epoch: entries it did not rewrite are left-overs, which workers
//! ignore, so nothing needs deleting and no VM holds the set of scopes.
//!
//! A state of many budgets comes in pages (`budgets_more`; the next page
//! is asked at once). Entries of a full state's pages carry its new epoch,
//! which workers trust only once the last page is written: until then they
//! keep using the previous state's entries and any newer ones.

use crate::admission::{update_counter, SharedCounters};
use crate::budget::{counter_key, Posted};
use crate::shipper::Deltas;
use crate::state::{budget_entry, encode_budget_entry, StateDoc};
use tollgate_protocol::scope::Scope;

#[derive(Debug, Default)]
pub struct BudgetSync {
    cursor: String,
    epoch: u64,
    /// The epoch of a full state whose pages are still coming.
    paging: Option<u64>,
    /// More pages follow the last answer.
    more: bool,
    /// The ingest sequence of the first page of the answer being received.
    first_seq: Option<u64>,
}

/// What to do with one answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    /// Shared-data writes (an empty value: the budget is gone).
    pub writes: Vec<(String, Vec<u8>)>,
    /// The answer is complete and its budgets include every batch up to
    /// this ingest sequence (that of its first page: later pages may
    /// include more, never less).
    pub settled_seq: Option<u64>,
}

/// Longest cursor sent back (about 60 bytes, plus twice a scope id's
/// length in the pages of a state).
const CURSOR_MAX: usize = 4096;

impl BudgetSync {
    /// The cursor to send with the next poll (`None`: ask for everything).
    pub fn cursor(&self) -> Option<&str> {
        (!self.cursor.is_empty()).then_some(self.cursor.as_str())
    }

    /// The epoch workers must trust entries from (0: no budget state yet).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The last answer was a page and another follows: poll again now.
    pub fn more(&self) -> bool {
        self.more
    }

    /// The shared-data writes that bring the entries to `doc`. `fresh_epoch` must be above every epoch
    /// used before in this Envoy (the clock is used); it is taken when the
    /// state is full. `None`: a delta without a full state before it (the
    /// next poll asks for everything).
    pub fn apply(&mut self, doc: &StateDoc, fresh_epoch: u64) -> Option<Applied> {
        let writing = if doc.budgets_full {
            self.first_seq = None;
            let e = fresh_epoch.max(self.epoch + 1).max(self.paging.map_or(0, |p| p + 1));
            self.paging = Some(e);
            e
        } else if let Some(e) = self.paging {
            e
        } else if self.epoch == 0 || self.cursor.is_empty() {
            self.reset();
            return None;
        } else {
            self.epoch
        };
        let mut writes = Vec::with_capacity(doc.budgets.len() + doc.budgets_removed.len());
        for r in &doc.budgets_removed {
            writes.push((budget_entry(r.scope_type, &r.scope_id), Vec::new()));
        }
        for b in &doc.budgets {
            writes.push((budget_entry(b.scope_type, &b.scope_id), encode_budget_entry(writing, b)));
        }
        self.cursor = if doc.budgets_cursor.len() <= CURSOR_MAX { doc.budgets_cursor.clone() } else { String::new() };
        self.more = doc.budgets_more;
        let first = *self.first_seq.get_or_insert(doc.seq);
        let mut settled_seq = None;
        if self.more && self.cursor.is_empty() {
            // The rest cannot be asked for: the state is not complete.
            self.reset();
        } else if !self.more {
            if let Some(e) = self.paging.take() {
                self.epoch = e;
            }
            self.first_seq = None;
            settled_seq = Some(first);
        }
        Some(Applied { writes, settled_seq })
    }

    /// A write failed or a state was unusable: the next poll asks for the
    /// whole state.
    pub fn reset(&mut self) {
        self.cursor.clear();
        self.paging = None;
        self.more = false;
        self.first_seq = None;
    }
}

/// After an answer's entries are written: posts each budget's figures in
/// its counter ([`Posted`]) with what `reflect` holds for it (the amounts
/// of this Envoy's acknowledged records the answer's `used` includes, once
/// it is complete) in the same compare-and-swap, clears the figures of the
/// budgets removed, and reflects the amounts of scopes the answer did not
/// change. A worker reads a budget's figures with its counter, so the
/// `used` it decides on and the `pending` it adds never disagree. False
/// when a counter could not be written (32 lost races, a host error): its
/// figures are older than its entry (and its reflection waits), and the
/// caller asks for the whole state again.
pub fn post(store: &dyn SharedCounters, doc: &StateDoc, mut reflect: Deltas) -> bool {
    let mut all = true;
    for b in &doc.budgets {
        let amount = reflect.remove(&Scope::new(b.scope_type, &b.scope_id)).unwrap_or_default();
        let posted = Posted::of(b);
        all &= update_counter(store, &counter_key(b.scope_type, &b.scope_id), |c| {
            c.reflect(amount);
            c.posted = Some(posted);
            true
        })
        .is_ok();
    }
    for r in &doc.budgets_removed {
        let key = counter_key(r.scope_type, &r.scope_id);
        if store.get(&key).0.is_some() {
            all &= update_counter(store, &key, |c| {
                c.posted = None;
                true
            })
            .is_ok();
        }
    }
    for (scope, amount) in reflect {
        // (A reflection lost here leaves `pending` high: refusals early, never overspend.)
        let _ = update_counter(store, &counter_key(scope.scope_type, &scope.id), |c| {
            c.reflect(amount);
            true
        });
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{decode_budget_entry, BudgetDoc, BudgetScope, ScopeType};
    use std::collections::HashMap;

    fn doc(id: &str, used: u64) -> BudgetDoc {
        BudgetDoc {
            scope_type: ScopeType::Team,
            scope_id: id.into(),
            limit_micros: Some(10),
            limit_tokens: None,
            period_start_ms: 0,
            period_end_ms: 9,
            used_micros: used,
            used_tokens: 0,
            soft_pct: None,
            hard_pct: Some(100),
            share_micros: Some(1),
            share_tokens: None,
        }
    }

    fn state(full: bool, budgets: Vec<BudgetDoc>, removed: &[&str], cursor: &str) -> StateDoc {
        StateDoc {
            budgets_full: full,
            budgets_more: false,
            budgets,
            budgets_removed: removed.iter().map(|id| BudgetScope { scope_type: ScopeType::Team, scope_id: id.to_string() }).collect(),
            budgets_cursor: cursor.into(),
            ..StateDoc::default()
        }
    }

    /// What a worker sees for team `id` after these writes.
    fn seen(shared: &HashMap<String, Vec<u8>>, id: &str, epoch: u64) -> Option<u64> {
        let e = shared.get(&budget_entry(ScopeType::Team, id))?;
        decode_budget_entry(e, ScopeType::Team, id, epoch).map(|d| d.used_micros)
    }

    #[test]
    fn full_states_and_deltas_become_entries_and_left_overs_are_ignored() {
        let mut s = BudgetSync::default();
        let mut shared = HashMap::new();
        assert_eq!(s.cursor(), None);
        for (k, v) in s.apply(&state(true, vec![doc("a", 1), doc("b", 2)], &[], "c1"), 100).unwrap().writes {
            shared.insert(k, v);
        }
        assert_eq!((s.cursor(), s.epoch()), (Some("c1"), 100));
        for (k, v) in s.apply(&state(false, vec![doc("a", 5)], &["b"], "c2"), 200).unwrap().writes {
            shared.insert(k, v);
        }
        assert_eq!(s.epoch(), 100, "a delta keeps the epoch");
        assert_eq!((seen(&shared, "a", 100), seen(&shared, "b", 100)), (Some(5), None));
        // A full state without "a": its entry is a left-over under the new epoch.
        for (k, v) in s.apply(&state(true, vec![doc("c", 3)], &[], "c3"), 50).unwrap().writes {
            shared.insert(k, v);
        }
        assert_eq!(s.epoch(), 101, "epochs only grow, even if the clock went back");
        assert_eq!((seen(&shared, "a", 101), seen(&shared, "c", 101)), (None, Some(3)));
    }

    /// Each budget's figures go in its counter with its reflection in one
    /// write; a removed budget's are cleared (a counter that does not
    /// exist is not made); the other scopes are reflected; a counter that
    /// cannot be written is reported.
    #[test]
    fn figures_are_posted_with_their_reflection_in_one_write() {
        use crate::admission::MemCounters;
        use crate::budget::{Amount, Counter, Posted};
        let store = MemCounters::default();
        let scope = |id: &str| Scope::new(ScopeType::Team, id);
        for id in ["a", "gone", "other"] {
            let c = Counter { pending_micros: 10, ..Default::default() };
            store.set(&counter_key(ScopeType::Team, id), c.encode().as_bytes(), None);
        }
        store.set(&counter_key(ScopeType::Team, "gone"), Counter { posted: Some(Posted::of(&doc("gone", 1))), ..Default::default() }.encode().as_bytes(), None);
        let reflect: Deltas = [(scope("a"), Amount { micros: 4, tokens: 0 }), (scope("other"), Amount { micros: 10, tokens: 0 })].into_iter().collect();
        assert!(post(&store, &state(false, vec![doc("a", 5)], &["gone", "never"], "c"), reflect));
        let a = store.counter(ScopeType::Team, "a");
        assert_eq!((a.pending_micros, a.posted), (6, Some(Posted::of(&doc("a", 5)))));
        assert_eq!(store.counter(ScopeType::Team, "gone").posted, None);
        assert_eq!(store.get(&counter_key(ScopeType::Team, "never")).0, None, "not made for a removal");
        assert_eq!(store.counter(ScopeType::Team, "other").pending_micros, 0);
        store.lose_races.set(u32::MAX);
        assert!(!post(&store, &state(false, vec![doc("a", 6)], &[], "c"), Deltas::new()));
        assert_eq!(store.counter(ScopeType::Team, "a").posted, Some(Posted::of(&doc("a", 5))), "the figures stay with the reflection they include");
    }

    #[test]
    fn a_delta_without_a_base_or_a_huge_cursor_asks_for_everything() {
        let mut s = BudgetSync::default();
        assert!(s.apply(&state(false, vec![doc("a", 1)], &[], "c1"), 100).is_none());
        assert_eq!(s.cursor(), None);
        s.apply(&state(true, vec![], &[], &"x".repeat(CURSOR_MAX + 1)), 100).unwrap();
        assert_eq!(s.cursor(), None);
        s.apply(&state(true, vec![], &[], "c1"), 100).unwrap();
        s.reset();
        assert_eq!(s.cursor(), None);
        assert!(s.apply(&state(false, vec![], &[], "c2"), 100).is_none(), "after a reset only a full state is applied");
    }

    #[test]
    fn a_state_in_pages_is_trusted_once_its_last_page_is_written() {
        let mut s = BudgetSync::default();
        let mut shared = HashMap::new();
        fn put(shared: &mut HashMap<String, Vec<u8>>, a: Applied) -> Option<u64> {
            shared.extend(a.writes);
            a.settled_seq
        }
        put(&mut shared, s.apply(&state(true, vec![doc("a", 1), doc("z", 1)], &[], "c1"), 100).unwrap());
        assert!(!s.more());
        // A new full state in two pages (the number of Envoys changed): "z" is gone.
        let first = StateDoc { budgets_more: true, seq: 7, ..state(true, vec![doc("a", 2)], &[], "p1") };
        assert_eq!(put(&mut shared, s.apply(&first, 200).unwrap()), None, "not settled before the last page");
        assert_eq!((s.more(), s.cursor(), s.epoch()), (true, Some("p1"), 100), "the old epoch until the last page");
        // Meanwhile a page's entries are newer than the trusted epoch, so
        // they are used at once (what a page brings, a limit changed during
        // the walk included, is in force with that page); the rest of the
        // old state still counts.
        assert_eq!((seen(&shared, "a", 100), seen(&shared, "z", 100)), (Some(2), Some(1)));
        let last = StateDoc { seq: 9, ..state(false, vec![doc("b", 3)], &[], "c2") };
        assert_eq!(put(&mut shared, s.apply(&last, 300).unwrap()), Some(7), "the first page's sequence");
        assert_eq!((s.more(), s.epoch()), (false, 200));
        fn seen_all(shared: &HashMap<String, Vec<u8>>, e: u64) -> (Option<u64>, Option<u64>, Option<u64>) {
            (seen(shared, "a", e), seen(shared, "b", e), seen(shared, "z", e))
        }
        assert_eq!(seen_all(&shared, 200), (Some(2), Some(3), None));
        // A delta after it writes under the same epoch.
        let delta = StateDoc { seq: 11, ..state(false, vec![doc("b", 4)], &[], "c3") };
        assert_eq!(put(&mut shared, s.apply(&delta, 400).unwrap()), Some(11));
        assert_eq!(seen_all(&shared, 200), (Some(2), Some(4), None));
        // A page that fails to be written: reset, the next poll asks for everything.
        s.apply(&StateDoc { budgets_more: true, ..state(true, vec![], &[], "p2") }, 500).unwrap();
        s.reset();
        assert_eq!((s.more(), s.cursor(), s.epoch()), (false, None, 200));
        // A page whose cursor is too long to send back cannot be continued.
        s.apply(&StateDoc { budgets_more: true, ..state(true, vec![], &[], &"x".repeat(CURSOR_MAX + 1)) }, 600).unwrap();
        assert_eq!((s.more(), s.cursor(), s.epoch()), (false, None, 200), "an incomplete state is never trusted");
    }
}
