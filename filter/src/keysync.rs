//! Keeping this Envoy's key entries in step with the control service, as a
//! state machine the background service drives (no host calls here).
//!
//! Every state poll says the key-change sequence (`StateDoc::keys_seq`).
//! When ours is behind, ask `GET /v1/key-changes?since=<ours>` for the
//! next page; apply it (the caller writes each `Put` / `Del` to its
//! shared-data entry) and move to the page's sequence; ask again at once
//! while pages say `more`. A failed fetch is retried at the next poll.
//! The cost of a poll where nothing changed does not depend on the number
//! of keys, and no VM ever holds the whole key set.

use crate::state::{KeyChange, KeyChanges};

#[derive(Debug)]
pub struct KeySync {
    /// Every change up to this one is in shared data.
    applied: u64,
    /// The control service's sequence, from the last state.
    target: u64,
    /// A state was received at least once.
    seen_state: bool,
    /// Every key was held once (sticky: a change still being fetched does
    /// not make the whole key set "not loaded").
    loaded: bool,
    in_flight: Option<u32>,
    page: usize,
}

/// What became of a fetch.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Write these entries, then call [`KeySync::applied`].
    Apply(KeyChanges),
    /// Not usable (status or body); try again at the next poll.
    Failed(String),
}

impl KeySync {
    pub fn new(page: usize) -> KeySync {
        KeySync { applied: 0, target: 0, seen_state: false, loaded: false, in_flight: None, page: page.max(1) }
    }

    /// A state arrived with this key sequence. A sequence below ours means
    /// the control service's database was replaced: start over.
    pub fn on_state(&mut self, keys_seq: u64) {
        if keys_seq < self.applied {
            self.applied = 0;
        }
        self.target = keys_seq;
        self.seen_state = true;
        self.loaded |= self.applied >= self.target;
    }

    /// The path to fetch now, if a fetch is due.
    pub fn next_fetch(&self) -> Option<String> {
        (self.in_flight.is_none() && self.applied < self.target)
            .then(|| format!("/v1/key-changes?since={}&limit={}", self.applied, self.page))
    }

    pub fn sent(&mut self, token: u32) {
        self.in_flight = Some(token);
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    /// The answer to the fetch in flight.
    pub fn on_answer(&mut self, status: u16, body: &[u8]) -> Fetched {
        self.in_flight = None;
        if status != 200 {
            return Fetched::Failed(format!("status {status}"));
        }
        match serde_json::from_slice::<KeyChanges>(body) {
            Ok(page) if page.seq >= self.applied => Fetched::Apply(page),
            Ok(page) => Fetched::Failed(format!("page ends at {} before {}", page.seq, self.applied)),
            Err(e) => Fetched::Failed(format!("unreadable page: {e}")),
        }
    }

    /// The page ending at `seq` is written to shared data.
    pub fn applied(&mut self, seq: u64) {
        self.applied = self.applied.max(seq);
        self.target = self.target.max(self.applied);
        self.loaded |= self.seen_state && self.applied >= self.target;
    }

    /// This Envoy held every key the control service had at least once
    /// (since then it follows changes within a poll or two). Before that,
    /// an unknown key may be a valid one not loaded yet.
    pub fn loaded(&self) -> bool {
        self.loaded
    }
}

/// The shared-data writes of one change: (entry name, value); an empty
/// value deletes.
pub fn entry_write(change: &KeyChange) -> (String, Vec<u8>) {
    match change {
        KeyChange::Put { key } => (crate::state::key_entry(&key.key_hash), serde_json::to_vec(key).unwrap_or_default()),
        KeyChange::Del { key_hash } => (crate::state::key_entry(key_hash), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyDoc;

    fn doc(h: &str) -> KeyDoc {
        KeyDoc { id: format!("id-{h}"), key_hash: h.into(), team: "t".into(), project: "p".into(), models: None, projects: vec![], tags: Default::default() }
    }

    fn page(seq: u64, more: bool, changes: Vec<KeyChange>) -> Vec<u8> {
        serde_json::to_vec(&KeyChanges { seq, more, changes }).unwrap()
    }

    #[test]
    fn fetches_pages_until_caught_up() {
        let mut k = KeySync::new(2);
        assert!(!k.loaded(), "nothing is known before the first state");
        assert_eq!(k.next_fetch(), None);
        k.on_state(3);
        assert_eq!(k.next_fetch().as_deref(), Some("/v1/key-changes?since=0&limit=2"));
        k.sent(7);
        assert_eq!(k.next_fetch(), None, "one fetch at a time");
        let body = page(2, true, vec![KeyChange::Put { key: doc("a") }, KeyChange::Put { key: doc("b") }]);
        let Fetched::Apply(p) = k.on_answer(200, &body) else { panic!() };
        assert_eq!(p.changes.len(), 2);
        k.applied(p.seq);
        assert!(!k.loaded());
        assert_eq!(k.next_fetch().as_deref(), Some("/v1/key-changes?since=2&limit=2"));
        k.sent(8);
        let Fetched::Apply(p) = k.on_answer(200, &page(3, false, vec![KeyChange::Del { key_hash: "a".into() }])) else { panic!() };
        k.applied(p.seq);
        assert!(k.loaded());
        assert_eq!(k.next_fetch(), None);
        // nothing changed: nothing to fetch
        k.on_state(3);
        assert_eq!(k.next_fetch(), None);
        // a change to fetch: still loaded (unknown keys stay 401, not 503)
        k.on_state(4);
        assert!(k.loaded() && k.next_fetch().is_some());
    }

    #[test]
    fn no_keys_at_all_is_loaded_at_the_first_state() {
        let mut k = KeySync::new(10);
        k.on_state(0);
        assert!(k.loaded() && k.next_fetch().is_none());
    }

    #[test]
    fn failures_retry_and_a_reset_database_starts_over() {
        let mut k = KeySync::new(10);
        k.on_state(5);
        k.sent(1);
        assert!(matches!(k.on_answer(503, b""), Fetched::Failed(_)));
        assert!(k.next_fetch().is_some(), "retried");
        k.sent(2);
        assert!(matches!(k.on_answer(200, b"{nope"), Fetched::Failed(_)));
        k.sent(3);
        let Fetched::Apply(p) = k.on_answer(200, &page(5, false, vec![])) else { panic!() };
        k.applied(p.seq);
        assert!(k.loaded());
        k.on_state(2);
        assert_eq!(k.next_fetch().as_deref(), Some("/v1/key-changes?since=0&limit=10"));
    }

    #[test]
    fn writes_put_the_doc_and_delete_with_an_empty_value() {
        let (name, value) = entry_write(&KeyChange::Put { key: doc("ab") });
        assert_eq!(name, "tollgate:v1:key:ab");
        assert_eq!(serde_json::from_slice::<KeyDoc>(&value).unwrap(), doc("ab"));
        assert_eq!(entry_write(&KeyChange::Del { key_hash: "ab".into() }), ("tollgate:v1:key:ab".into(), vec![]));
    }
}
