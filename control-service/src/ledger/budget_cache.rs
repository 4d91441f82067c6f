//! The budgets a batch of records counts against, kept between batches.
//!
//! Each batch needs the budget (or none) of every scope its records name:
//! with a budget on each key, about 500 lookups a batch. Read from the
//! database they were a third of the time a batch holds the ingest lock
//! on PostgreSQL (6 of 20 ms; that lock orders the counting, so it bounds
//! ingest: 24,000 records/s with a budget on each of 10,000 keys).
//!
//! The cache is checked against the budget sequence (`budget_seq`, which
//! every budget put or delete moves in its transaction) inside the
//! batch's own transaction, while no budget can change until it commits
//! (on PostgreSQL the batch holds the budget lock shared, on SQLite it is
//! the only writer): scopes changed or deleted since the last batch are
//! brought up to date from the rows that say so, so a batch
//! counts against exactly the budgets it would have read from the
//! database, whichever replica changed them. It is a cache of reads, not
//! a second copy: it never holds a budget the database did not hold.

use std::collections::HashMap;

use tollgate_protocol::state::ScopeType;

use crate::db::Tx;
use crate::store::*;

use super::{budgets, grants};

/// Scopes kept at most; past this the cache starts again (a cache of the
/// active scopes; with a budget on each of a million keys, the ones that
/// sent records lately). About 200 bytes each.
const MAX_SCOPES: usize = 100_000;

/// Budget changes read one by one at most; a larger jump (a bulk import)
/// empties the cache instead. Below `grants::DELTA_MAX_CHANGES`: deleted
/// budgets' tombstones are kept that long, no longer.
const MAX_CHANGES: u64 = 5_000;

pub struct BudgetCache {
    /// The budget sequence the entries are current at (none: nothing read yet).
    seq: Option<u64>,
    /// Per scope type (indexed as `ScopeType::ALL`): scope id -> its budget, or none.
    by_type: [HashMap<String, Option<Budget>>; ScopeType::ALL.len()],
    max_scopes: usize,
}

impl Default for BudgetCache {
    fn default() -> Self {
        BudgetCache { seq: None, by_type: Default::default(), max_scopes: MAX_SCOPES }
    }
}

impl BudgetCache {
    /// The budgets of these scopes, as the database holds them in `tx`
    /// (see the module's note). Reads only the scopes it does not hold.
    pub fn of_scopes<'a>(&mut self, tx: &mut dyn Tx, scopes: impl IntoIterator<Item = (ScopeType, &'a str)>) -> Result<Vec<Budget>> {
        self.sync(tx)?;
        let mut wanted: Vec<(ScopeType, &str)> = scopes.into_iter().collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut missing: Vec<(ScopeType, &str)> = wanted.iter().copied().filter(|(t, id)| !self.map(*t).is_some_and(|m| m.contains_key(*id))).collect();
        if !missing.is_empty() {
            if self.len() + missing.len() > self.max_scopes {
                // Full: start again, and read every scope asked for.
                self.by_type = Default::default();
                missing.clone_from(&wanted);
            }
            let found = budgets::of_scopes(tx, missing.iter().copied())?;
            for (t, id) in missing {
                if let Some(m) = self.map_mut(t) {
                    m.insert(id.to_owned(), None);
                }
            }
            for b in found {
                if let Some(m) = self.map_mut(b.scope_type) {
                    m.insert(b.scope_id.clone(), Some(b));
                }
            }
        }
        Ok(wanted.iter().filter_map(|(t, id)| self.map(*t).and_then(|m| m.get(*id)).cloned().flatten()).collect())
    }

    /// Brings the held scopes whose budgets changed since up to date.
    fn sync(&mut self, tx: &mut dyn Tx) -> Result<()> {
        let now = tx.query_one(grants::BUDGET_SEQ, &[])?.u64(0)?;
        match self.seq {
            Some(seq) if seq == now => return Ok(()),
            Some(seq) if seq < now && now - seq <= MAX_CHANGES => {
                // Read after `now`: at least as new as it. Held scopes take
                // the rows as read (no second read); others stay unheld.
                for b in budgets::changed_between(tx, seq, now)? {
                    self.replace(b.scope_type, &b.scope_id.clone(), Some(b));
                }
                for s in grants::removed_between(tx, seq, now)? {
                    self.replace(s.scope_type, &s.scope_id, None);
                }
            }
            _ => self.by_type = Default::default(),
        }
        self.seq = Some(now);
        Ok(())
    }

    fn replace(&mut self, t: ScopeType, id: &str, budget: Option<Budget>) {
        if let Some(held) = self.map_mut(t).and_then(|m| m.get_mut(id)) {
            *held = budget;
        }
    }

    fn len(&self) -> usize {
        self.by_type.iter().map(HashMap::len).sum()
    }

    fn map(&self, t: ScopeType) -> Option<&HashMap<String, Option<Budget>>> {
        self.by_type.get(t as usize)
    }

    fn map_mut(&mut self, t: ScopeType) -> Option<&mut HashMap<String, Option<Budget>>> {
        self.by_type.get_mut(t as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, TxKind};
    use crate::sqlite::SqliteStore;

    fn team(id: &str) -> Budget {
        Budget { limit_micros: Some(100), ..Budget::monthly(ScopeType::Team, id, 1_795_885_000_000) }
    }

    #[test]
    fn kept_scopes_are_not_read_again_until_their_budget_changes_and_a_full_cache_starts_again() {
        let dir = std::env::temp_dir().join(format!("tollgate-budget-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("t.db")).unwrap();
        store.put_budgets(&["t0", "t1", "t2", "t3"].map(team), 1).unwrap();
        let mut cache = BudgetCache { max_scopes: 5, ..BudgetCache::default() };
        let ask = |cache: &mut BudgetCache, ids: &[&str]| -> Vec<String> {
            let got = store.db.run(TxKind::Read, |tx| cache.of_scopes(tx, ids.iter().map(|id| (ScopeType::Team, *id)))).unwrap();
            got.into_iter().map(|b| b.scope_id).collect()
        };
        assert_eq!(ask(&mut cache, &["t0", "t1", "none"]), ["t0", "t1"]);
        // Gone from the table behind the ledger's back (no budget sequence
        // moved): still served, so it was not read again.
        store.db.run(TxKind::Write, |tx| tx.execute("DELETE FROM budgets WHERE scope_id = 't0'", &[])).unwrap();
        assert_eq!(ask(&mut cache, &["t0"]), ["t0"]);
        // Deleted through the ledger: the sequence moved, read again.
        store.put_budget(&team("t0"), 1).unwrap();
        store.delete_budget(ScopeType::Team, "t0").unwrap();
        assert_eq!(ask(&mut cache, &["t0", "t1"]), ["t1"]);
        // 3 kept + 4 new > 5: emptied, and every scope asked for is read.
        assert_eq!(ask(&mut cache, &["t1", "t2", "t3", "x", "y"]), ["t1", "t2", "t3"]);
        assert_eq!(cache.len(), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
