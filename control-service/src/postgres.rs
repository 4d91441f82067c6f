//! PostgreSQL backend, for several control-service replicas behind a load
//! balancer. The ledger's flows are in `ledger/`; this file holds the
//! connection pool, the value conversions, the locks each kind of
//! transaction takes across replicas, and the schema migrations:
//! - ingest batches are numbered by one counter row (`ingest_seq`) whose
//!   row lock orders ingest transactions, so a state's `seq` means "every
//!   batch up to here is counted";
//! - grants, budget changes, key changes and migrations each take a
//!   transaction-level advisory lock (key changes: so their numbers become
//!   visible in order and an Envoy fetching changes never skips one).
//!
//! The store API is synchronous (handlers call it from `spawn_blocking`);
//! each statement runs on the service's Tokio runtime, so no runtime
//! worker ever waits on the database.

use std::error::Error;

use bytes::BytesMut;
use tokio::runtime::Handle;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::NoTls;

use crate::db::{dollar_placeholders, migrate, Arg, Db, Migration, Row, Tx, TxKind, Value};
use crate::ledger::Ledger;
use crate::store::{Result, StoreError};

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "baseline", sql: include_str!("../migrations/postgres/0001_baseline.sql") },
    Migration { version: 2, name: "key_events", sql: include_str!("../migrations/postgres/0002_key_events.sql") },
    Migration { version: 3, name: "cache_economics", sql: include_str!("../migrations/postgres/0003_cache_economics.sql") },
    Migration { version: 4, name: "guard_findings", sql: include_str!("../migrations/postgres/0004_guard_findings.sql") },
    Migration { version: 5, name: "guard_policy", sql: include_str!("../migrations/postgres/0005_guard_policy.sql") },
    Migration { version: 6, name: "prompt_registry", sql: include_str!("../migrations/postgres/0006_prompt_registry.sql") },
    Migration { version: 7, name: "cache_misses", sql: include_str!("../migrations/postgres/0007_cache_misses.sql") },
    Migration { version: 8, name: "evaluations", sql: include_str!("../migrations/postgres/0008_evaluations.sql") },
    Migration { version: 9, name: "usage_ts_brin", sql: include_str!("../migrations/postgres/0009_usage_ts_brin.sql") },
    Migration { version: 10, name: "grants_by_period", sql: include_str!("../migrations/postgres/0010_grants_by_period.sql") },
    Migration { version: 11, name: "usage_by_period", sql: include_str!("../migrations/postgres/0011_usage_by_period.sql") },
    Migration { version: 12, name: "brin_summarized_by_vacuum", sql: include_str!("../migrations/postgres/0012_brin_summarized_by_vacuum.sql") },
    Migration { version: 13, name: "budget_deltas", sql: include_str!("../migrations/postgres/0013_budget_deltas.sql") },
    Migration { version: 14, name: "keys_by_creation", sql: include_str!("../migrations/postgres/0014_keys_by_creation.sql") },
    Migration { version: 15, name: "grants_by_node", sql: include_str!("../migrations/postgres/0015_grants_by_node.sql") },
    Migration { version: 16, name: "node_answers", sql: include_str!("../migrations/postgres/0016_node_answers.sql") },
    Migration { version: 17, name: "usage_sessions", sql: include_str!("../migrations/postgres/0017_usage_sessions.sql") },
    Migration { version: 18, name: "budget_use_fillfactor", sql: include_str!("../migrations/postgres/0018_budget_use_fillfactor.sql") },
    Migration { version: 19, name: "budget_use_log", sql: include_str!("../migrations/postgres/0019_budget_use_log.sql") },
    Migration { version: 20, name: "byte_order", sql: include_str!("../migrations/postgres/0020_byte_order.sql") },
];

/// Connections per replica.
const POOL_SIZE: usize = 8;

/// Statements a connection keeps prepared, at most. PostgreSQL holds each
/// prepared statement (its parse tree, a plan once reused) for the
/// connection's life, and a multi-row statement's text follows its row
/// count: a text for every count grew the backends by 440 MiB
/// (`db::statement_chunks` now keeps the ledger to about 150 texts). Past
/// this, a connection forgets them all and prepares again what it uses.
const MAX_PREPARED: usize = 256;

pub struct PgDb {
    pool: deadpool_postgres::Pool,
    handle: Handle,
}

/// The ledger on PostgreSQL.
pub type PgStore = Ledger<PgDb>;

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        return StoreError::Conflict(e.to_string());
    }
    // The server's message says what it refused; Display alone says "db error".
    match e.as_db_error() {
        Some(d) => StoreError::Backend(format!("{}: {}", d.code().code(), d.message())),
        None => StoreError::Backend(e.to_string()),
    }
}

impl Ledger<PgDb> {
    /// Connects (e.g. `host=127.0.0.1 port=5432 user=tollgate dbname=tollgate`)
    /// and applies pending migrations. Must be called from inside a Tokio runtime.
    pub async fn connect(conninfo: &str) -> Result<PgStore> {
        let config: tokio_postgres::Config = conninfo.parse().map_err(be)?;
        let manager = deadpool_postgres::Manager::from_config(
            config,
            NoTls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = deadpool_postgres::Pool::builder(manager).max_size(POOL_SIZE).build().map_err(be)?;
        let db = PgDb { pool, handle: Handle::current() };
        // Fail now, not at the first request, when the database cannot be reached.
        drop(db.pool.get().await.map_err(be)?);
        let db = tokio::task::spawn_blocking(move || migrate(&db, MIGRATIONS, crate::now_ms()).map(|_| db)).await.map_err(be)??;
        Ok(Ledger::new(db))
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, Box<dyn Error + Sync + Send>> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                _ if <&str as ToSql>::accepts(ty) => v.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("cannot send an integer as {ty}").into()),
            },
            Arg::Text(s) => s.to_sql(ty, out),
            Arg::Texts(v) => v.to_sql(ty, out),
            Arg::Ints(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn value(r: &tokio_postgres::Row, i: usize) -> Result<Value> {
    let ty = r.columns().get(i).map(|c| c.type_().clone()).ok_or_else(|| be(format!("no column {i}")))?;
    let v = match ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(pg)?.map(Value::Int),
        Type::INT4 => r.try_get::<_, Option<i32>>(i).map_err(pg)?.map(|v| Value::Int(v.into())),
        Type::INT2 => r.try_get::<_, Option<i16>>(i).map_err(pg)?.map(|v| Value::Int(v.into())),
        Type::BOOL => r.try_get::<_, Option<bool>>(i).map_err(pg)?.map(|v| Value::Int(v.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => r.try_get::<_, Option<String>>(i).map_err(pg)?.map(Value::Text),
        other => return Err(be(format!("column {i}: unexpected type {other} (CAST it in the query)"))),
    };
    Ok(v.unwrap_or(Value::Null))
}

enum Conn<'a> {
    Client(&'a deadpool_postgres::Client),
    Tx(&'a deadpool_postgres::Transaction<'a>),
}

struct PgTx<'a> {
    conn: Conn<'a>,
    handle: &'a Handle,
}

impl PgTx<'_> {
    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        let sql = dollar_placeholders(sql);
        self.handle
            .block_on(async {
                match &self.conn {
                    Conn::Client(c) => c.prepare_cached(&sql).await,
                    Conn::Tx(t) => t.prepare_cached(&sql).await,
                }
            })
            .map_err(pg)
    }

    fn params<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
        args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
    }
}

impl Tx for PgTx<'_> {
    fn takes_arrays(&self) -> bool {
        true
    }
    fn json_pairs(&self, table: &str, col: &str, filter: &str) -> String {
        format!("SELECT p->>0 AS first, p->>1 AS second FROM {table} AS t, jsonb_array_elements(t.{col}::jsonb) AS p WHERE {filter}")
    }
    /// SUM of BIGINT is an exact NUMERIC here: only the cast back can fail.
    fn sum(&self, expr: &str) -> String {
        format!("CAST(GREATEST(LEAST(COALESCE(SUM({expr}), 0), 9223372036854775807), -9223372036854775807) AS BIGINT)")
    }
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let st = self.statement(sql)?;
        let params = Self::params(args);
        self.handle
            .block_on(async {
                match &self.conn {
                    Conn::Client(c) => c.execute(&st, &params).await,
                    Conn::Tx(t) => t.execute(&st, &params).await,
                }
            })
            .map_err(pg)
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        let params = Self::params(args);
        let rows = self
            .handle
            .block_on(async {
                match &self.conn {
                    Conn::Client(c) => c.query(&st, &params).await,
                    Conn::Tx(t) => t.query(&st, &params).await,
                }
            })
            .map_err(pg)?;
        rows.iter().map(|r| (0..r.len()).map(|i| value(r, i)).collect::<Result<Vec<_>>>().map(Row)).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.handle
            .block_on(async {
                match &self.conn {
                    Conn::Client(c) => c.batch_execute(sql).await,
                    Conn::Tx(t) => t.batch_execute(sql).await,
                }
            })
            .map_err(pg)
    }
}

impl Db for PgDb {
    /// Batches insert side by side and queue only to be counted
    /// (`ledger::ingest`); half the pool, the rest stays free for the API's
    /// reads. (Measured with 4 senders: 2 writers 43–45k records/s, 3
    /// writers 42–60k, 4 writers 52–54k, 6 writers 49–51k.)
    fn writers(&self) -> usize {
        POOL_SIZE / 2
    }
    /// Without statistics (a table filled in bulk before autovacuum's next
    /// round, up to a minute later), PostgreSQL guessed that a period matches
    /// 0.5 % of `budget_usage` and read a delta's 500 budgets through the
    /// period index, every row of a million: state polls took seconds
    /// (EXPLAIN ANALYZE, docs/budgets.md; the slowest statements of that run
    /// were others, since fixed). Autovacuum's own rule (a tenth changed),
    /// checked every few seconds, on the tables the state poll reads.
    fn refresh_statistics(&self) -> Result<Vec<String>> {
        let stale = self.run(TxKind::Read, |tx| {
            tx.query(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname IN \
                 ('keys', 'budgets', 'budget_usage', 'budget_usage_node', 'budget_use_log', 'budget_grants', 'budget_removed', 'nodes') \
                 AND n_mod_since_analyze > 1000 + n_live_tup / 10 ORDER BY relname",
                &[],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<Vec<_>>>()
        })?;
        if !stale.is_empty() {
            // Names from the fixed list above, never from input.
            self.run(TxKind::Read, |tx| tx.batch(&format!("ANALYZE {}", stale.join(", "))))?;
        }
        Ok(stale)
    }
    fn run<T>(&self, kind: TxKind, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let h = &self.handle;
        // A connection from the pool (a broken one is replaced, not reused).
        let mut client = h.block_on(self.pool.get()).map_err(be)?;
        if client.statement_cache.size() > MAX_PREPARED {
            crate::log_event("debug", "a database connection forgets its prepared statements", serde_json::json!({"prepared": client.statement_cache.size()}));
            client.statement_cache.clear();
        }
        if kind == TxKind::Read {
            return f(&mut PgTx { conn: Conn::Client(&client), handle: h });
        }
        let tx = h.block_on(client.transaction()).map_err(pg)?;
        let lock = match kind {
            TxKind::Grant => Some("SELECT pg_advisory_xact_lock(72462)"),
            TxKind::Budget => Some("SELECT pg_advisory_xact_lock(72463)"),
            TxKind::Migrate => Some("SELECT pg_advisory_xact_lock(72461)"),
            TxKind::Keys => Some("SELECT pg_advisory_xact_lock(72464)"),
            TxKind::Ingest => Some("SELECT pg_advisory_xact_lock_shared(72463)"),
            TxKind::Read | TxKind::Write => None,
        };
        if let Some(lock) = lock {
            h.block_on(tx.batch_execute(lock)).map_err(pg)?;
        }
        let out = f(&mut PgTx { conn: Conn::Tx(&tx), handle: h })?;
        h.block_on(tx.commit()).map_err(pg)?;
        Ok(out)
    }
}
