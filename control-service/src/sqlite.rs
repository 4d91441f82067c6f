//! SQLite backend: the embedded default (a single file, nothing to install).
//! WAL with `synchronous = FULL`: a commit is on disk before the API
//! answers. One connection behind a mutex: SQLite has one writer anyway,
//! and every write transaction starts IMMEDIATE so none has to upgrade.
//! The ledger's flows are in `ledger/`; this file holds only the
//! connection, the value conversions and the schema migrations.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use crate::db::{migrate, Arg, Db, Migration, Row, Tx, TxKind, Value};
use crate::ledger::Ledger;
use crate::store::{Result, StoreError};

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "baseline", sql: include_str!("../migrations/sqlite/0001_baseline.sql") },
    Migration { version: 2, name: "batch_seq", sql: include_str!("../migrations/sqlite/0002_batch_seq.sql") },
    Migration { version: 3, name: "key_events", sql: include_str!("../migrations/sqlite/0003_key_events.sql") },
    Migration { version: 4, name: "cache_economics", sql: include_str!("../migrations/sqlite/0004_cache_economics.sql") },
    Migration { version: 5, name: "guard_findings", sql: include_str!("../migrations/sqlite/0005_guard_findings.sql") },
    Migration { version: 6, name: "guard_policy", sql: include_str!("../migrations/sqlite/0006_guard_policy.sql") },
    Migration { version: 7, name: "prompt_registry", sql: include_str!("../migrations/sqlite/0007_prompt_registry.sql") },
    Migration { version: 8, name: "cache_misses", sql: include_str!("../migrations/sqlite/0008_cache_misses.sql") },
    Migration { version: 9, name: "evaluations", sql: include_str!("../migrations/sqlite/0009_evaluations.sql") },
    Migration { version: 10, name: "grants_by_period", sql: include_str!("../migrations/sqlite/0010_grants_by_period.sql") },
    Migration { version: 11, name: "usage_by_period", sql: include_str!("../migrations/sqlite/0011_usage_by_period.sql") },
    Migration { version: 13, name: "budget_deltas", sql: include_str!("../migrations/sqlite/0013_budget_deltas.sql") },
    Migration { version: 14, name: "keys_by_creation", sql: include_str!("../migrations/sqlite/0014_keys_by_creation.sql") },
    Migration { version: 15, name: "grants_by_node", sql: include_str!("../migrations/sqlite/0015_grants_by_node.sql") },
    Migration { version: 16, name: "node_answers", sql: include_str!("../migrations/sqlite/0016_node_answers.sql") },
    Migration { version: 17, name: "usage_sessions", sql: include_str!("../migrations/sqlite/0017_usage_sessions.sql") },
    Migration { version: 18, name: "budget_use_log", sql: include_str!("../migrations/sqlite/0018_budget_use_log.sql") },
];

pub struct SqliteDb {
    conn: Mutex<Connection>,
    /// Dropped with the database: the checkpoint thread then ends.
    _checkpoints: Option<std::sync::mpsc::Sender<()>>,
}

/// The ledger on SQLite.
pub type SqliteStore = Ledger<SqliteDb>;

impl Ledger<SqliteDb> {
    /// Opens (or creates) the database file and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let db = SqliteDb::open(path)?;
        migrate(&db, MIGRATIONS, crate::now_ms())?;
        Ok(Ledger::new(db))
    }
}

fn be(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, m) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Conflict(m.unwrap_or_else(|| f.to_string()))
        }
        e => StoreError::Backend(e.to_string()),
    }
}

impl SqliteDb {
    /// Opens the file without touching its schema (see `SqliteStore::open`).
    pub fn open(path: &Path) -> Result<SqliteDb> {
        let conn = Connection::open(path).map_err(be)?;
        // SQLite's own page cache size (2 MiB) on purpose: 64 MiB made a
        // million-key import 20 % faster (37 s to 29 s) but ingest 12 %
        // slower (store direct, eight runs each), and ingest is what runs all day.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        )
        .map_err(be)?;
        // The ledger's statements are about 150 texts (multi-row statements
        // come in ten sizes, `db::statement_chunks`); with room for 64,
        // batches of mixed sizes evicted and prepared again statements in use.
        // 256, as PostgreSQL's bound (`postgres::MAX_PREPARED`): one
        // connection, a few KiB a statement. Report shapes past it are LRU-evicted.
        conn.set_prepared_statement_cache_capacity(256);
        let checkpoints = checkpointer(path, &conn);
        Ok(SqliteDb { conn: Mutex::new(conn), _checkpoints: checkpoints })
    }
}

/// WAL frames after which the writer checkpoints by itself (64 MiB), a
/// safety net: normally the checkpoint thread keeps the WAL far below it.
const WRITER_CHECKPOINT_PAGES: u32 = 16_384;
/// Above this many frames left in the WAL, the checkpoint thread waits for
/// a moment without writers so the WAL starts over (RESTART) instead of growing.
const RESTART_FRAMES: i64 = 8_192;

/// Copies committed WAL frames into the database file from a thread of its
/// own (every 200 ms, PASSIVE: it never blocks a writer), so the writer's
/// commits only append to the WAL. Checkpointing on the writer (SQLite's
/// default, every 1,000 pages) took about a sixth of ingest's time.
/// Without a second connection (the file cannot be opened twice) the
/// writer keeps checkpointing as SQLite does by default.
fn checkpointer(path: &Path, writer: &Connection) -> Option<std::sync::mpsc::Sender<()>> {
    let c = Connection::open(path).ok()?;
    c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL;").ok()?;
    writer.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES).ok()?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let started = std::thread::Builder::new().name("tollgate-checkpoint".into()).spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(std::time::Duration::from_millis(200)) {
            let left = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok(r.get::<_, i64>(1)? - r.get::<_, i64>(2)?));
            if matches!(left, Ok(n) if n > RESTART_FRAMES) {
                let _ = c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
            }
        }
    });
    if started.is_err() {
        let _ = writer.pragma_update(None, "wal_autocheckpoint", 1000);
        return None;
    }
    Some(stop)
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Arg::Int(v) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(v)),
            Arg::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::Texts(_) | Arg::Ints(_) => return Err(rusqlite::Error::ToSqlConversionFailure("SQLite takes no arrays".into())),
        })
    }
}

struct SqliteTx<'a> {
    c: &'a Connection,
}

impl Tx for SqliteTx<'_> {
    fn json_pairs(&self, table: &str, col: &str, filter: &str) -> String {
        format!("SELECT json_extract(p.value, '$[0]') AS first, json_extract(p.value, '$[1]') AS second FROM {table} AS t, json_each(t.{col}) AS p WHERE {filter}")
    }
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let mut s = self.c.prepare_cached(sql).map_err(be)?;
        Ok(s.execute(rusqlite::params_from_iter(args.iter())).map_err(be)? as u64)
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let mut s = self.c.prepare_cached(sql).map_err(be)?;
        let n = s.column_count();
        let mut rows = s.query(rusqlite::params_from_iter(args.iter())).map_err(be)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(be)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(be)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    other => return Err(StoreError::Backend(format!("column {i}: unexpected {:?}", other.data_type()))),
                });
            }
            out.push(Row(row));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.c.execute_batch(sql).map_err(be)
    }
}

impl Db for SqliteDb {
    fn run<T>(&self, kind: TxKind, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if kind == TxKind::Read {
            return f(&mut SqliteTx { c: &c });
        }
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(be)?;
        let out = f(&mut SqliteTx { c: &tx })?;
        tx.commit().map_err(be)?;
        Ok(out)
    }
}
