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
//! What a worker gathered and has not handed over is lost if its VM traps
//! (at most [`MAX_RECORDS`] − 1 records, or up to 500 ms of them at a low
//! rate): budgets are not affected, as admission settles its counters on
//! its own (docs/budgets.md).

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
    group.split(|b| *b == b'\n').filter(|r| !r.is_empty())
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
