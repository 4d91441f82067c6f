//! Group commit for usage batches: on SQLite one writer thread takes every
//! batch that is waiting and stores them in one transaction
//! (`Store::ingest_many`); on PostgreSQL several writers store one batch
//! each, side by side (see `GroupCommit::start`).
//!
//! Each transaction costs a commit (on SQLite a WAL fsync and, now and then,
//! a checkpoint) whatever it holds; with four Envoys shipping at once,
//! committing their batches together instead of one after another is what
//! takes ingest past 50,000 records/s (see docs/architecture.md). Parsing
//! stays on the request threads; only the store's work is serialised, as it
//! was behind the database's write lock anyway. A batch is acknowledged only
//! after the transaction that holds it committed.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tollgate_protocol::record::UsageRecord;
use tollgate_protocol::state::IngestAck;

use crate::store::{IngestJob, Result, Store, StoreError};

/// At most this many batches, or about this many records, in one transaction
/// (a transaction holds the write lock; readers wait for it).
const MAX_BATCHES: usize = 16;
const MAX_RECORDS: usize = 8_000;
/// Batches waiting for the writer before senders are told to retry.
const QUEUE: usize = 64;

/// A parsed batch on its way to the writer.
pub struct Batch {
    pub node: String,
    pub records: Vec<UsageRecord>,
    /// The JSON text of each record, stored as received.
    pub raw: Vec<String>,
    pub now_ms: u64,
}

type Reply = tokio::sync::oneshot::Sender<Result<IngestAck>>;

/// The sending side; cheap to share.
pub struct GroupCommit {
    tx: SyncSender<(Batch, Reply)>,
}

impl GroupCommit {
    /// Starts the writer threads over `store` (as many as it can keep
    /// busy: one on SQLite). They end when this is dropped.
    pub fn start(store: Arc<dyn Store>) -> GroupCommit {
        let (tx, rx) = sync_channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let writers = store.ingest_writers().max(1);
        // Several writers (PostgreSQL) take one batch each: a transaction
        // holding two would take the counter's lock while counting the first
        // and then wait for the second's ids, which another writer may hold
        // while it waits for that lock (a deadlock). One batch per
        // transaction inserts its ids in order before it takes the lock.
        let max_batches = if writers == 1 { MAX_BATCHES } else { 1 };
        for i in 0..writers {
            let (store, rx) = (store.clone(), rx.clone());
            std::thread::Builder::new()
                .name(format!("tollgate-ingest-{i}"))
                .spawn(move || writer(store.as_ref(), &rx, max_batches))
                .unwrap_or_else(|e| panic!("cannot start an ingest writer thread: {e}"));
        }
        GroupCommit { tx }
    }

    /// Queues a batch; the receiver gets its acknowledgement once committed.
    /// A full queue is refused at once (the sender keeps its records and retries).
    pub fn submit(&self, batch: Batch) -> Result<tokio::sync::oneshot::Receiver<Result<IngestAck>>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        match self.tx.try_send((batch, reply)) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(StoreError::Backend("the ingest queue is full".into())),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Backend("the ingest writer stopped".into())),
        }
    }
}

fn writer(store: &dyn Store, rx: &Mutex<Receiver<(Batch, Reply)>>, max_batches: usize) {
    loop {
        // The queue is held only while a group is taken from it.
        let group = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            let Ok(first) = rx.recv() else { return };
            let mut records = first.0.records.len();
            let mut group = vec![first];
            while group.len() < max_batches && records < MAX_RECORDS {
                let Ok(next) = rx.try_recv() else { break };
                records += next.0.records.len();
                group.push(next);
            }
            group
        };
        let acks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(store, &group)))
            .unwrap_or_else(|_| group.iter().map(|_| Err(StoreError::Backend("the ingest writer panicked".into()))).collect());
        for ((_, reply), ack) in group.into_iter().zip(acks) {
            let _ = reply.send(ack);
        }
    }
}

fn commit(store: &dyn Store, group: &[(Batch, Reply)]) -> Vec<Result<IngestAck>> {
    let raw: Vec<Vec<&str>> = group.iter().map(|(b, _)| b.raw.iter().map(String::as_str).collect()).collect();
    let jobs: Vec<IngestJob<'_>> = group
        .iter()
        .zip(&raw)
        .map(|((b, _), raw)| IngestJob { node: &b.node, records: &b.records, raw: (raw.len() == b.records.len()).then_some(raw.as_slice()) })
        .collect();
    // Batches arrive within milliseconds of each other; one clock for the group.
    let now_ms = group.iter().map(|(b, _)| b.now_ms).max().unwrap_or(0);
    store.ingest_many(&jobs, now_ms)
}
