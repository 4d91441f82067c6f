//! Usage shipping, as a state machine: records in, batches out, answers in.
//! The background service's glue only moves bytes (queue → [`Shipper::push`],
//! [`Shipper::take_batch`] → an HTTP call, its answer → [`Shipper::on_answer`]).
//!
//! - Batches respect a record count and a byte size.
//! - A transport error or a 5xx (or 401/403/429) is retried, the same batch
//!   first, with exponential backoff (250 ms … 8 s).
//! - A batch refused as invalid (another 4xx) is split in halves until the
//!   record at fault stands alone; that record is *parked*: reported once,
//!   never retried, never blocking the records after it.
//! - An acknowledged batch's budget amounts stay pending on this Envoy until
//!   a budget state with `seq >=` the ack's is applied ([`Shipper::on_state_applied`]).

use std::collections::VecDeque;

use crate::budget::Amount;
use crate::state::IngestAck;
use tollgate_protocol::record::BudgetPart;
use tollgate_protocol::scope::Scope;

/// A batch handed to the transport.
#[derive(Debug)]
pub struct Pending {
    records: Vec<Vec<u8>>,
    deltas: Deltas,
}

/// What an answer from the control service means for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Stored; `refused` records were parked by the service (ids, reasons).
    Acked { refused: Vec<(String, String)> },
    /// Split for another try, or the one record at fault parked (its id).
    Refused { parked: Option<String> },
    /// Will be retried; `first` when this is the first failure in a row.
    Retry { first: bool },
}

#[derive(Debug, Default)]
pub struct Shipper {
    max_buffered: usize,
    buffer: VecDeque<Vec<u8>>,
    /// Groups split off a refused batch, sent before anything else.
    split: VecDeque<Vec<Vec<u8>>>,
    dropped: u64,
    parked: u64,
    in_flight: Option<(u32, Pending)>,
    next_flush_ms: u64,
    failures: u32,
    applied_seq: u64,
    /// Acknowledged batches not yet visible in an applied state: (seq, deltas).
    unreflected: Vec<(u64, Deltas)>,
}

/// Adds one record's budget deltas (what it adds to each of its scopes) to
/// `out`, one entry per scope: a batch of a thousand records of one team is
/// one counter update when it is reflected, not a thousand.
///
/// Also the check that `raw` is a record at all (one parse: a record that
/// is not a JSON object returns false).
fn deltas_of(raw: &[u8], out: &mut Deltas) -> bool {
    // (A struct also reads from a JSON array: not a record.)
    if raw.first() != Some(&b'{') {
        return false;
    }
    let Ok(part) = serde_json::from_slice::<BudgetPart>(raw) else { return false };
    let (micros, tokens) = part.amount();
    for s in part.budget_scopes {
        merge_delta(out, s, Amount { micros, tokens });
    }
    true
}

/// An `IngestBatch` as JSON, the records copied as they are (each already
/// checked to be a JSON object).
fn batch_body(node: &str, records: &[Vec<u8>]) -> Option<Vec<u8>> {
    let size = records.iter().map(|r| r.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(size.saturating_add(node.len()).saturating_add(32));
    body.extend_from_slice(b"{\"node\":");
    serde_json::to_writer(&mut body, node).ok()?;
    body.extend_from_slice(b",\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(r);
    }
    body.extend_from_slice(b"]}");
    Some(body)
}

/// What records add to each budget scope.
pub type Deltas = std::collections::BTreeMap<Scope, Amount>;

fn merge_delta(out: &mut Deltas, scope: Scope, amount: Amount) {
    let a = out.entry(scope).or_default();
    *a = a.saturating_add(amount);
}

fn record_id(raw: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Id {
        #[serde(default)]
        id: String,
    }
    serde_json::from_slice::<Id>(raw).map(|i| crate::text::clean_field(&i.id, 128)).unwrap_or_else(|_| "(unreadable)".into())
}

impl Shipper {
    pub fn new(max_buffered: usize) -> Self {
        Shipper { max_buffered: max_buffered.max(1), ..Default::default() }
    }

    /// A record from a worker. Past `max_buffered`, the oldest is dropped.
    pub fn push(&mut self, rec: Vec<u8>) {
        if self.buffer.len() >= self.max_buffered {
            self.buffer.pop_front();
            self.dropped += 1;
        }
        self.buffer.push_back(rec);
    }

    /// Records dropped so far (buffer full).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records parked so far (refused as invalid).
    pub fn parked(&self) -> u64 {
        self.parked
    }

    /// Records held for shipping: waiting, split off a refused batch, or
    /// in flight until the control service answers (the
    /// `tollgate.usage_buffered` gauge).
    pub fn buffered(&self) -> usize {
        let in_flight = self.in_flight.as_ref().map_or(0, |(_, p)| p.records.len());
        self.buffer.len() + self.split.iter().map(Vec::len).sum::<usize>() + in_flight
    }

    /// Is a batch due now?
    pub fn due(&self, now_ms: u64) -> bool {
        self.in_flight.is_none() && (!self.buffer.is_empty() || !self.split.is_empty()) && now_ms >= self.next_flush_ms
    }

    /// The next batch's body (`IngestBatch` JSON), within `max_batch` records
    /// and `max_bytes` bytes (one record always goes, whatever its size).
    pub fn take_batch(&mut self, node: &str, max_batch: usize, max_bytes: usize) -> Option<(Vec<u8>, Pending)> {
        let records = match self.split.pop_front() {
            Some(group) => group,
            None => {
                let mut records = Vec::new();
                let mut bytes = 64usize.saturating_add(node.len());
                while let Some(r) = self.buffer.front() {
                    if records.len() >= max_batch.max(1) || (!records.is_empty() && bytes + r.len() + 1 > max_bytes) {
                        break;
                    }
                    bytes += r.len() + 1;
                    if let Some(r) = self.buffer.pop_front() {
                        records.push(r);
                    }
                }
                records
            }
        };
        if records.is_empty() {
            return None;
        }
        // One parse a record: one that is not a JSON object (it cannot
        // happen: the filter wrote it) is parked here; the others go, with
        // their budget deltas.
        let mut deltas = Deltas::new();
        let mut good = Vec::with_capacity(records.len());
        for r in records {
            if deltas_of(&r, &mut deltas) {
                good.push(r);
            } else {
                self.parked += 1;
            }
        }
        if good.is_empty() {
            return None;
        }
        Some((batch_body(node, &good)?, Pending { records: good, deltas }))
    }

    /// The batch is on its way; `token` identifies its answer.
    pub fn sent(&mut self, token: u32, pending: Pending) {
        self.in_flight = Some((token, pending));
    }

    /// The batch could not even be sent: retry later.
    pub fn send_failed(&mut self, pending: Pending, now_ms: u64) {
        self.retry(pending.records, now_ms);
    }

    fn retry(&mut self, records: Vec<Vec<u8>>, now_ms: u64) {
        self.split.push_front(records);
        self.failures = self.failures.saturating_add(1);
        self.next_flush_ms = now_ms.saturating_add(250u64 << self.failures.min(5));
    }

    /// Is `token` the batch in flight?
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|(t, _)| *t == token)
    }

    /// The control service answered the batch in flight (`status`, body).
    pub fn on_answer(&mut self, status: u16, body: &[u8], now_ms: u64) -> Answer {
        let Some((_, pending)) = self.in_flight.take() else { return Answer::Retry { first: false } };
        let ack = (status == 200).then(|| serde_json::from_slice::<IngestAck>(body).ok()).flatten();
        if let Some(ack) = ack {
            self.failures = 0;
            self.next_flush_ms = now_ms;
            // Refused records were not counted: their deltas must not be reflected either.
            let refused_ids: Vec<&str> = ack.rejected.iter().map(|r| r.id.as_str()).collect();
            let deltas = if refused_ids.is_empty() {
                pending.deltas
            } else {
                let mut d = Deltas::new();
                for r in pending.records.iter().filter(|r| !refused_ids.contains(&record_id(r).as_str())) {
                    deltas_of(r, &mut d);
                }
                d
            };
            if !deltas.is_empty() {
                self.unreflected.push((ack.seq, deltas));
            }
            self.parked += ack.rejected.len() as u64;
            return Answer::Acked { refused: ack.rejected.into_iter().map(|r| (r.id, r.reason)).collect() };
        }
        let invalid = (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 429);
        if invalid {
            self.next_flush_ms = now_ms;
            let mut records = pending.records;
            if records.len() > 1 {
                let second = records.split_off(records.len() / 2);
                self.split.push_front(second);
                self.split.push_front(records);
                return Answer::Refused { parked: None };
            }
            self.parked += 1;
            return Answer::Refused { parked: records.first().map(|r| record_id(r)) };
        }
        let first = self.failures == 0;
        self.retry(pending.records, now_ms);
        Answer::Retry { first }
    }

    /// A budget state with sequence `seq` was applied: the amounts of the
    /// acknowledged batches it includes are no longer pending here.
    pub fn on_state_applied(&mut self, seq: u64) -> Deltas {
        self.applied_seq = self.applied_seq.max(seq);
        let applied = self.applied_seq;
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unreflected).into_iter().partition(|(s, _)| *s <= applied);
        self.unreflected = keep;
        let mut out = Deltas::new();
        for (scope, amount) in done.into_iter().flat_map(|(_, d)| d) {
            merge_delta(&mut out, scope, amount);
        }
        out
    }

    /// Acknowledged amounts not yet included in an applied state.
    pub fn unreflected(&self) -> usize {
        self.unreflected.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::IngestBatch;

    fn rec(id: &str, cost: u64, scope: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "v": 1, "id": id, "ts_ms": 0, "key_id": "k", "key_hash": "", "team": "t", "project": "p", "feature": null,
            "prompt_version": null, "user": null, "tags": {}, "api": "openai_chat", "provider": "openai", "route": "r",
            "model_requested": "m", "model_upstream": "m", "model_served": "m", "stream": false, "status": 200,
            "outcome": "ok", "error_code": null, "usage": {"input_tokens": 1, "cached_input_tokens": 0,
            "cache_write_tokens": 0, "output_tokens": 2, "reasoning_tokens": 0}, "usage_source": "provider",
            "cost_micros": cost, "priced": true, "latency_ms": 1, "ttfb_ms": 1, "budget_scopes": [scope],
            "budget_decision": "ok"}))
        .unwrap()
    }

    fn ids(body: &[u8]) -> Vec<String> {
        let b: IngestBatch = serde_json::from_slice(body).unwrap();
        b.records.iter().map(|r| serde_json::from_str::<serde_json::Value>(r.get()).unwrap()["id"].as_str().unwrap().to_string()).collect()
    }

    fn ack(seq: u64) -> Vec<u8> {
        serde_json::to_vec(&IngestAck { accepted: 1, duplicates: 0, rejected: vec![], seq }).unwrap()
    }

    #[test]
    fn batches_respect_count_and_bytes_and_the_buffer_bound() {
        let mut s = Shipper::new(5);
        for i in 0..7 {
            s.push(rec(&format!("r{i}"), 1, "team:t"));
        }
        assert_eq!((s.dropped(), s.buffered()), (2, 5), "the two oldest dropped");
        let (body, p) = s.take_batch("n", 2, 1 << 20).unwrap();
        assert_eq!(ids(&body), ["r2", "r3"]);
        s.sent(1, p);
        assert!(!s.due(0), "one batch at a time");
        assert_eq!(s.buffered(), 5, "a batch in flight is still held");
        assert_eq!(s.on_answer(200, &ack(1), 0), Answer::Acked { refused: vec![] });
        assert_eq!(s.buffered(), 3, "until it is acknowledged");
        let one = rec("x", 1, "team:t").len();
        let (body, _) = s.take_batch("n", 100, 64 + one + 2).unwrap();
        assert_eq!(ids(&body).len(), 1, "the byte limit holds");
    }

    #[test]
    fn failures_back_off_and_retry_the_same_batch_first() {
        let mut s = Shipper::new(100);
        s.push(rec("a", 1, "team:t"));
        s.push(rec("b", 1, "team:t"));
        let (_, p) = s.take_batch("n", 1, 1 << 20).unwrap();
        s.sent(7, p);
        assert!(s.owns(7) && !s.owns(8));
        assert_eq!(s.on_answer(503, b"", 1000), Answer::Retry { first: true });
        assert!(!s.due(1000) && !s.due(1499) && s.due(1500), "250 << 1 ms of backoff");
        let (body, p) = s.take_batch("n", 1, 1 << 20).unwrap();
        assert_eq!(ids(&body), ["a"], "the failed batch goes first");
        s.sent(8, p);
        assert_eq!(s.on_answer(0, b"", 2000), Answer::Retry { first: false });
        assert!(!s.due(2999) && s.due(3000), "backoff grows");
    }

    #[test]
    fn a_poisoned_record_is_isolated_and_parked_and_the_rest_ship() {
        let mut s = Shipper::new(100);
        for i in 0..8 {
            s.push(rec(&format!("r{i}"), 1, "team:t"));
        }
        let mut shipped = Vec::new();
        let mut parked = Vec::new();
        let mut token = 0;
        while s.due(0) {
            let (body, p) = s.take_batch("n", 100, 1 << 20).unwrap();
            token += 1;
            s.sent(token, p);
            let batch = ids(&body);
            if batch.contains(&"r5".to_string()) {
                match s.on_answer(400, b"{}", 0) {
                    Answer::Refused { parked: Some(id) } => parked.push(id),
                    Answer::Refused { parked: None } => {}
                    a => panic!("{a:?}"),
                }
            } else {
                assert_eq!(s.on_answer(200, &ack(token as u64), 0), Answer::Acked { refused: vec![] });
                shipped.extend(batch);
            }
            assert!(token < 50, "terminates");
        }
        shipped.sort();
        assert_eq!(parked, ["r5"]);
        assert_eq!(shipped, ["r0", "r1", "r2", "r3", "r4", "r6", "r7"]);
        assert_eq!(s.parked(), 1);
    }

    #[test]
    fn amounts_stay_pending_until_a_state_includes_them() {
        let mut s = Shipper::new(100);
        s.push(rec("a", 300, "team:t"));
        s.push(rec("b", 200, "team:t"));
        let (_, p) = s.take_batch("n", 10, 1 << 20).unwrap();
        s.sent(1, p);
        s.on_answer(200, &ack(42), 0);
        s.push(rec("c", 100, "team:t"));
        s.push(rec("d", 1, "team:u"));
        let (_, p) = s.take_batch("n", 10, 1 << 20).unwrap();
        s.sent(2, p);
        s.on_answer(200, &ack(42), 0);
        assert!(s.on_state_applied(41).is_empty(), "an older state does not include it yet");
        let team = |id: &str| Scope::new(crate::state::ScopeType::Team, id);
        // one update per scope, however many records and batches
        assert_eq!(
            s.on_state_applied(42).into_iter().collect::<Vec<_>>(),
            [(team("t"), Amount { micros: 600, tokens: 9 }), (team("u"), Amount { micros: 1, tokens: 3 })]
        );
        assert!(s.on_state_applied(43).is_empty(), "reflected once");
    }

    #[test]
    fn a_record_without_budget_scopes_has_no_deltas_and_a_value_cannot_fake_one() {
        let mut d = Deltas::new();
        let mut none: serde_json::Value = serde_json::from_slice(&rec("a", 5, "team:t")).unwrap();
        none["budget_scopes"] = serde_json::json!([]);
        deltas_of(&serde_json::to_vec(&none).unwrap(), &mut d);
        assert!(d.is_empty());
        // a tag whose value spells the empty member: the real member still counts
        let mut r: serde_json::Value = serde_json::from_slice(&rec("b", 5, "team:t")).unwrap();
        r["tags"] = serde_json::json!({"x": "\"budget_scopes\":[]"});
        deltas_of(&serde_json::to_vec(&r).unwrap(), &mut d);
        assert_eq!(d.get(&Scope::new(crate::state::ScopeType::Team, "t")), Some(&Amount { micros: 5, tokens: 3 }));
    }

    #[test]
    fn records_the_service_refused_are_not_reflected() {
        let mut s = Shipper::new(100);
        s.push(rec("good", 5, "team:t"));
        s.push(rec("bad", 7, "team:t"));
        let (_, p) = s.take_batch("n", 10, 1 << 20).unwrap();
        s.sent(1, p);
        let answer = serde_json::to_vec(&serde_json::json!({"accepted": 1, "duplicates": 0, "seq": 9,
            "rejected": [{"index": 1, "id": "bad", "reason": "usage: too big"}]})).unwrap();
        assert_eq!(s.on_answer(200, &answer, 0), Answer::Acked { refused: vec![("bad".into(), "usage: too big".into())] });
        assert_eq!(s.on_state_applied(9).into_iter().collect::<Vec<_>>(), [(Scope::new(crate::state::ScopeType::Team, "t"), Amount { micros: 5, tokens: 3 })]);
        assert_eq!(s.parked(), 1);
    }

    #[test]
    fn a_batch_is_the_records_as_written_and_what_is_not_a_record_is_parked() {
        let mut s = Shipper::new(100);
        let (a, b) = (rec("a", 5, "team:t"), rec("b", 7, "key:k1"));
        s.push(a.clone());
        for junk in [&b"[[], 5, {}]"[..], b"{\"id\":1} x", b"\"text\"", b"{\"cost_micros\":1,\"cost_micros\":2}", b"\xff{}"] {
            s.push(junk.to_vec());
        }
        s.push(b.clone());
        let (body, p) = s.take_batch("node \"1\"\n", 100, 1 << 20).unwrap();
        assert_eq!(s.parked(), 5);
        let raws = [&a, &b].map(|r| serde_json::from_slice::<&serde_json::value::RawValue>(r).unwrap());
        let expected = serde_json::to_vec(&IngestBatch { node: "node \"1\"\n".into(), records: raws.to_vec() }).unwrap();
        assert_eq!(body, expected);
        s.sent(1, p);
        assert!(matches!(s.on_answer(200, &ack(4), 0), Answer::Acked { .. }));
        let d = s.on_state_applied(4);
        assert_eq!(d.get(&Scope::new(crate::state::ScopeType::Team, "t")), Some(&Amount { micros: 5, tokens: 3 }));
        assert_eq!(d.get(&Scope::new(crate::state::ScopeType::Key, "k1")), Some(&Amount { micros: 7, tokens: 3 }));
    }

    #[test]
    fn the_budget_part_reads_what_the_whole_record_counts() {
        let raw = rec("a", 123, "team:t");
        let whole: tollgate_protocol::record::UsageRecord = serde_json::from_slice(&raw).unwrap();
        let part: BudgetPart = serde_json::from_slice(&raw).unwrap();
        assert_eq!(part.amount(), whole.budget_amount());
        assert_eq!(part.budget_scopes, whole.budget_scopes);
        let mut huge: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        huge["usage"]["input_tokens"] = serde_json::json!(u64::MAX);
        huge["usage"]["output_tokens"] = serde_json::json!(u64::MAX);
        let part: BudgetPart = serde_json::from_slice(&serde_json::to_vec(&huge).unwrap()).unwrap();
        assert_eq!(part.amount(), (123, u64::MAX), "saturates, like the whole record");
    }
}
