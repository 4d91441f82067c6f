//! A worker's outbox: its usage records, handed to the background service
//! in groups rather than one by one.
//!
//! Each hand-over (`enqueue_shared_queue`) makes Envoy post a task to the
//! service's thread and wake it. Once per request, that wake-up and the
//! service's call into its VM cost about 7 % of the filter's throughput
//! (paired, 1 KB JSON: `make bench`, docs/architecture.md). Grouped, a
//! worker hands over at most every [`MAX_RECORDS`] records, [`MAX_BYTES`],
//! or on its tick (500 ms), and when its VM ends.
//!
//! A group is the records joined by `\n`. Records are compact JSON written
//! by serde_json, which escapes every control character inside strings, so
//! a record never holds a raw newline. A group from an older filter is one
//! record without a newline and reads the same.
//!
//! A group also carries budget settlements a worker hands to the service
//! instead of writing them itself ([`crate::admission`], a rarely used
//! budget's counter): a line `=` followed by a JSON array (the counter's
//! key, the reservation given back and the real cost, micro-dollars and
//! tokens each). The service writes them before it takes the records.
//!
//! What a worker gathered and has not handed over is lost if its VM traps
//! (at most [`MAX_RECORDS`] − 1 records, or up to 500 ms of them at a low
//! rate), with the settlements among them: their reservations then stay
//! held in the counter, as the room and the owed settlements the worker's
//! own table held do (docs/budgets.md): the budget is never overspent for
//! it, only refused early by that much, until Envoy restarts (the
//! counters live in its shared data).

use crate::budget::{Amount, COUNTER_PREFIX};

/// The first byte of a settlement's line (a record's is `{`).
const SETTLEMENT: u8 = b'=';

/// Records gathered before a group is handed over.
pub const MAX_RECORDS: usize = 16;
/// Bytes gathered before a group is handed over (records with captures are large).
pub const MAX_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Outbox {
    group: Vec<u8>,
    records: usize,
}

impl Outbox {
    /// Adds one record; returns the group to hand over when it is full.
    pub fn push(&mut self, record: &[u8]) -> Option<Vec<u8>> {
        if record.is_empty() {
            return None;
        }
        if self.records > 0 {
            self.group.push(b'\n');
        }
        self.group.extend_from_slice(record);
        self.records += 1;
        if self.records >= MAX_RECORDS || self.group.len() >= MAX_BYTES {
            return self.take();
        }
        None
    }

    /// Adds a budget settlement for the service to write; returns the group
    /// to hand over when it is full.
    pub fn push_settlement(&mut self, counter: &str, reserved: Amount, actual: Amount) -> Option<Vec<u8>> {
        let fields = (counter, reserved.micros, reserved.tokens, actual.micros, actual.tokens);
        let mut line = vec![SETTLEMENT];
        serde_json::to_writer(&mut line, &fields).ok()?;
        self.push(&line)
    }

    /// Everything gathered so far (the tick, the VM's end), if anything.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.records == 0 {
            return None;
        }
        self.records = 0;
        Some(std::mem::take(&mut self.group))
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// The records of a group, as the service reads it.
pub fn records(group: &[u8]) -> impl Iterator<Item = &[u8]> {
    group.split(|b| *b == b'\n').filter(|r| !r.is_empty() && r.first() != Some(&SETTLEMENT))
}

/// The budget settlements of a group: (counter key, reservation given back,
/// real cost). A line that does not read as one, or names anything but a
/// budget counter, is skipped.
pub fn settlements(group: &[u8]) -> impl Iterator<Item = (String, Amount, Amount)> + '_ {
    group.split(|b| *b == b'\n').filter_map(|line| {
        let json = line.strip_prefix(&[SETTLEMENT])?;
        let (key, rm, rt, am, at): (String, u64, u64, u64, u64) = serde_json::from_slice(json).ok()?;
        key.starts_with(COUNTER_PREFIX).then_some((key, Amount { micros: rm, tokens: rt }, Amount { micros: am, tokens: at }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_handed_over_when_full_and_reads_back_record_by_record() {
        let mut o = Outbox::default();
        for i in 0..MAX_RECORDS - 1 {
            assert_eq!(o.push(format!("{{\"id\":{i}}}").as_bytes()), None);
        }
        let group = o.push(b"{\"id\":99}").unwrap_or_default();
        let back: Vec<&[u8]> = records(&group).collect();
        assert_eq!(back.len(), MAX_RECORDS);
        assert_eq!(back[0], b"{\"id\":0}");
        assert_eq!(back[MAX_RECORDS - 1], b"{\"id\":99}");
        assert!(o.is_empty());
        assert_eq!(o.take(), None);
    }

    #[test]
    fn large_records_go_before_the_count_is_reached() {
        let mut o = Outbox::default();
        let big = vec![b'x'; MAX_BYTES / 2];
        assert_eq!(o.push(&big), None);
        let group = o.push(&big).unwrap_or_default();
        assert_eq!(records(&group).count(), 2);
    }

    #[test]
    fn the_tick_takes_a_partial_group_and_an_old_single_record_reads_as_one() {
        let mut o = Outbox::default();
        assert_eq!(o.push(b""), None);
        assert_eq!(o.take(), None, "an empty record is not a record");
        assert_eq!(o.push(b"{\"a\":1}"), None);
        assert_eq!(o.take(), Some(b"{\"a\":1}".to_vec()));
        assert_eq!(records(b"{\"a\":1}").count(), 1);
    }

    #[test]
    fn settlements_travel_beside_the_records_and_are_read_apart_from_them() {
        let mut o = Outbox::default();
        let (r, a) = (Amount { micros: 1_500, tokens: 40 }, Amount { micros: u64::MAX, tokens: 0 });
        let key = crate::budget::counter_key(crate::state::ScopeType::Team, "t\n\"=x");
        assert_eq!(o.push(b"{\"a\":1}"), None);
        assert_eq!(o.push_settlement(&key, r, a), None);
        assert_eq!(o.push(b"{\"a\":2}"), None);
        let group = o.take().unwrap_or_default();
        assert_eq!(group.iter().filter(|b| **b == b'\n').count(), 2, "a hostile scope id cannot add a line");
        let back: Vec<&[u8]> = records(&group).collect();
        assert_eq!(back, vec![&b"{\"a\":1}"[..], &b"{\"a\":2}"[..]]);
        assert_eq!(settlements(&group).collect::<Vec<_>>(), vec![(key, r, a)]);
        // Only budget counters: a line naming another shared-data key, or unreadable, is no settlement.
        let other = b"=[\"tollgate:v1:state-meta\",1,1,1,1]\n=[1,2]\n=[\"tollgate:v1:budget:team:x\",1,2,3]";
        assert_eq!(settlements(other).count(), 0);
        assert_eq!(records(other).count(), 0);
    }

    #[test]
    fn a_serialised_record_never_holds_a_raw_newline() {
        // Hostile text in every string a record copies from a request.
        let mut rec = crate::record::tests::sample();
        rec.id = "a\nb".into();
        rec.project = "p\r\n\u{2028}".into();
        rec.tags.insert("t\n".into(), "v\n\u{0}".into());
        rec.user = Some("u\n".into());
        let json = serde_json::to_vec(&rec).unwrap_or_default();
        assert!(!json.is_empty());
        assert!(!json.contains(&b'\n'));
        let mut o = Outbox::default();
        o.push(&json);
        o.push(&json);
        let group = o.take().unwrap_or_default();
        let back: Vec<&[u8]> = records(&group).collect();
        assert_eq!(back, vec![&json[..], &json[..]]);
    }
}
