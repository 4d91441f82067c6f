//! The cursor an Envoy sends back with its state poll: what its last
//! state included, so that the next answer can be only what changed.

use tollgate_protocol::state::ScopeType;

/// What an Envoy was last sent: the ingest and budget sequences its state
/// includes, the number of active Envoys its shares were cut for, and the
/// earliest time one of its budgets' periods ends or a window opens (a new
/// period changes a budget without any write). A cursor that no longer
/// holds (fewer or more Envoys, a boundary passed, a database behind it,
/// or an Envoy silent past the node TTL, whose grants may have been
/// reclaimed) gets the whole state. So does a cursor older than the last
/// answer that changed the Envoy's grants (`answer`, counted per node):
/// that answer was written but never applied (the Envoy gave up waiting),
/// and what it changed may not come again in a delta.
///
/// A state of more budgets than a page comes in pages: `after` names the
/// last budget sent, and `from` the sequences a delta started from (none:
/// a full state). The sequences are those of the first page, so what
/// changes while the pages are fetched comes in the next delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ingest: u64,
    pub budgets: u64,
    pub active: u64,
    pub boundary_ms: u64,
    pub answer: u64,
    pub from: Option<(u64, u64)>,
    pub after: Option<(ScopeType, String)>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let head = format!("{}.{}.{}.{}.{}", self.ingest, self.budgets, self.active, self.boundary_ms, self.answer);
        match (&self.after, self.from) {
            (None, _) => format!("b2.{head}"),
            (Some((t, id)), None) => format!("p2.{head}.{}.{}", t.as_str(), hex(id.as_bytes())),
            (Some((t, id)), Some((fi, fb))) => format!("d2.{head}.{fi}.{fb}.{}.{}", t.as_str(), hex(id.as_bytes())),
        }
    }

    /// `None` for anything but a cursor this service wrote.
    pub fn decode(s: &str) -> Option<Cursor> {
        let (kind, rest) = s.split_at_checked(3)?;
        let mut parts = rest.split('.');
        let mut num = || parts.next().filter(|p| p.bytes().all(|b| b.is_ascii_digit())).and_then(|p| p.parse::<u64>().ok());
        let (ingest, budgets, active, boundary_ms, answer) = (num()?, num()?, num()?, num()?, num()?);
        let from = match kind {
            "b2." | "p2." => None,
            "d2." => Some((num()?, num()?)),
            _ => return None,
        };
        let after = if kind == "b2." {
            None
        } else {
            let st = ScopeType::parse(parts.next()?)?;
            Some((st, String::from_utf8(unhex(parts.next()?)?).ok()?))
        };
        parts.next().is_none().then_some(Cursor { ingest, budgets, active, boundary_ms, answer, from, after })
    }

    /// The ingest sequence a delta reads use changes from: the cursor's
    /// own for the delta it asks for, the first page's for a later page of
    /// a delta, none for a page of a full state.
    pub(super) fn use_from(&self) -> Option<u64> {
        match (&self.after, self.from) {
            (None, _) => Some(self.ingest),
            (Some(_), from) => from.map(|(ingest, _)| ingest),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = Cursor { ingest: 7, budgets: 3, active: 2, boundary_ms: u64::MAX, answer: 4, from: None, after: None };
        assert_eq!(c.encode(), "b2.7.3.2.18446744073709551615.4");
        assert_eq!(Cursor::decode(&c.encode()), Some(c.clone()));
        let odd = "a.b é\u{0}%&=\"'\n";
        let p = Cursor { after: Some((ScopeType::Key, odd.to_string())), ..c.clone() };
        let d = Cursor { from: Some((5, 1)), ..p.clone() };
        for c in [p, d] {
            let text = c.encode();
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'), "{text}");
            assert_eq!(Cursor::decode(&text), Some(c));
        }
        for bad in [
            "", "b2", "b2.", "b2.7.3.2.9", "b2.7.3.2.9.4.1", "b3.7.3.2.9.4", "b2.7.3.+2.9.4", "b2.7.3.-2.9.4", "b2.7.3.2.99999999999999999999.4",
            "b2.7. 3.2.9.4", "B2.7.3.2.9.4", "p2.7.3.2.9.4", "p2.7.3.2.9.4.key", "p2.7.3.2.9.4.key.6", "p2.7.3.2.9.4.key.6g", "p2.7.3.2.9.4.nope.61",
            "p2.7.3.2.9.4.key.ff", "p2.7.3.2.9.4.key.61.1", "é1.7", "b", "d2.7.3.2.9.4.key.61", "d2.7.3.2.9.4.5.key.61", "d2.7.3.2.9.4.5.1",
            "b2.7.3.2.9.4.5.1",
            // A cursor from before the answer number: refused, so a full state.
            "b1.7.3.2.9", "p1.7.3.2.9.key.61", "d1.7.3.2.9.5.1.key.61",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn any_mutation_of_a_cursor_is_refused_or_read_never_a_panic() {
        let good = Cursor { ingest: 7, budgets: 3, active: 2, boundary_ms: 99, answer: 4, from: Some((1, 2)), after: Some((ScopeType::Team, "té".into())) }.encode();
        for cut in 0..=good.len() {
            let _ = Cursor::decode(good.get(..cut).unwrap_or(""));
        }
        for at in 0..good.len() {
            for b in [b'.', b'0', b'9', b'a', b'f', b'g', b'-', 0, 0xc3, 0xff] {
                let mut m = good.clone().into_bytes();
                if let Some(x) = m.get_mut(at) {
                    *x = b;
                }
                if let Ok(text) = String::from_utf8(m) {
                    if let Some(c) = Cursor::decode(&text) {
                        assert_eq!(Cursor::decode(&c.encode()), Some(c), "what is read writes back the same");
                    }
                }
            }
        }
    }
}
