//! The context a stored Responses API answer carries into the turns that
//! continue it. A request naming a `previous_response_id` (or a
//! `conversation`) is billed the earlier turns as input, which its body
//! does not hold, so a reservation of what the body holds could be passed
//! by the whole conversation so far. Each stored answer's context (its
//! input and output tokens: the next turn's input starts with them) is
//! remembered in the Envoy's shared data under the answer's id (and the
//! conversation's), and a request continuing it reserves that too.
//!
//! Bounded: [`SLOTS`] entries of 16 bytes; an id takes the slot its hash
//! names, replacing what was there, and a lookup checks the hash, so an id
//! replaced, never seen here (stored through another Envoy) or not stored
//! reserves what its body holds, as before. Output includes reasoning:
//! the next turn may not carry all of it, so the reservation errs high.

use crate::usage::Usage;

/// Shared-data slots (16 bytes each).
pub const SLOTS: u64 = 4096;

fn id_hash(id: &str) -> u64 {
    crate::fingerprint::hash(id.as_bytes())
}

/// An id worth remembering or looking up: one a provider could have made
/// (not empty, at most 256 bytes).
pub fn usable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256
}

/// The shared-data key of the slot `id` takes.
pub fn slot_key(id: &str) -> String {
    format!("tollgate:v1:ctx:{}", id_hash(id) % SLOTS)
}

/// The context an answer leaves for the turn that continues it.
pub fn carried(usage: &Usage) -> u64 {
    usage.input_tokens.saturating_add(usage.output_tokens)
}

/// The slot's value remembering `tokens` for `id`.
pub fn entry(id: &str, tokens: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    let (h, t) = e.split_at_mut(8);
    h.copy_from_slice(&id_hash(id).to_le_bytes());
    t.copy_from_slice(&tokens.to_le_bytes());
    e
}

/// The tokens `entry` remembers for `id`: `None` when it is another id's,
/// or not an entry.
pub fn tokens(id: &str, entry: &[u8]) -> Option<u64> {
    let (h, t) = (entry.get(..8)?, entry.get(8..16)?);
    (entry.len() == 16 && h == id_hash(id).to_le_bytes()).then(|| u64::from_le_bytes(<[u8; 8]>::try_from(t).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_answers_for_its_own_id_only() {
        let e = entry("resp_abc", 41_000);
        assert_eq!(tokens("resp_abc", &e), Some(41_000));
        assert_eq!(tokens("resp_abd", &e), None, "another id in the same slot reads nothing");
        assert_eq!(tokens("resp_abc", &e[..15]), None);
        assert_eq!(tokens("resp_abc", &[e.as_slice(), b"x"].concat()), None);
        assert_eq!(tokens("resp_abc", b""), None);
        assert!(slot_key("resp_abc").starts_with("tollgate:v1:ctx:"));
        // Ids spread over the slots.
        let used: std::collections::HashSet<String> = (0..2000).map(|i| slot_key(&format!("resp_{i:040x}"))).collect();
        assert!(used.len() > 1500, "{} slots for 2000 ids", used.len());
        let u = Usage { input_tokens: 30_000, output_tokens: 11_000, reasoning_tokens: 9_000, ..Default::default() };
        assert_eq!(carried(&u), 41_000);
    }
}
