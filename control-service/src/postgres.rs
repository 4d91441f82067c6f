//! PostgreSQL backend, for several control-service replicas behind a load
//! balancer. The same model as the SQLite store (sqlite.rs), with what
//! concurrency across replicas needs:
//! - ingest batches are numbered by one counter row (`ingest_seq`), whose row
//!   lock orders ingest transactions, so a state's `seq` means "every batch
//!   up to here is counted";
//! - a record counts once: `INSERT … ON CONFLICT (id) DO NOTHING` decides;
//! - grants are serialised with a transaction-level advisory lock.
//!
//! The store API is synchronous (handlers call it from `spawn_blocking`);
//! each call runs its future on the service's Tokio runtime.

use std::collections::HashMap;

use tokio::runtime::Handle;
use tokio_postgres::{types::ToSql, NoTls, Row};
use tollgate_filter::record::UsageRecord;
use tollgate_filter::state::{pct_of, IngestAck, ScopeType};

use crate::periods::Period;
use crate::reports::{ReportQuery, ReportRow};
use crate::store::*;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, team TEXT NOT NULL, project TEXT NOT NULL,
    models TEXT, projects TEXT NOT NULL, tags TEXT NOT NULL, created_ms BIGINT NOT NULL, revoked_ms BIGINT);
CREATE TABLE IF NOT EXISTS budgets (
    scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, limit_micros BIGINT, limit_tokens BIGINT, period TEXT NOT NULL,
    timezone TEXT NOT NULL, window_start_ms BIGINT, window_end_ms BIGINT, soft_pct BIGINT, hard_pct BIGINT,
    updated_ms BIGINT NOT NULL, PRIMARY KEY (scope_type, scope_id));
CREATE TABLE IF NOT EXISTS ingest_seq (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), seq BIGINT NOT NULL);
INSERT INTO ingest_seq (one, seq) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS usage (
    id TEXT PRIMARY KEY, seq BIGINT NOT NULL, node TEXT NOT NULL, ts_ms BIGINT NOT NULL, key_id TEXT NOT NULL,
    team TEXT NOT NULL, project TEXT NOT NULL, feature TEXT, prompt_version TEXT, provider TEXT, model TEXT,
    status BIGINT NOT NULL, outcome TEXT NOT NULL, input_tokens BIGINT NOT NULL, cached_input_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts_ms);
CREATE INDEX IF NOT EXISTS usage_team_ts ON usage (team, ts_ms);
CREATE INDEX IF NOT EXISTS usage_project_ts ON usage (project, ts_ms);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key_id, ts_ms);
CREATE TABLE IF NOT EXISTS budget_usage (
    scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, period_start_ms BIGINT NOT NULL,
    used_micros BIGINT NOT NULL, used_tokens BIGINT NOT NULL, PRIMARY KEY (scope_type, scope_id, period_start_ms));
CREATE TABLE IF NOT EXISTS budget_usage_node (
    scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, period_start_ms BIGINT NOT NULL, node TEXT NOT NULL,
    used_micros BIGINT NOT NULL, used_tokens BIGINT NOT NULL, PRIMARY KEY (scope_type, scope_id, period_start_ms, node));
CREATE TABLE IF NOT EXISTS budget_grants (
    scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, period_start_ms BIGINT NOT NULL, node TEXT NOT NULL,
    granted_micros BIGINT NOT NULL, granted_tokens BIGINT NOT NULL, PRIMARY KEY (scope_type, scope_id, period_start_ms, node));
CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, last_seen_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS budget_requests (
    id BIGSERIAL PRIMARY KEY, scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, limit_micros BIGINT, limit_tokens BIGINT,
    justification TEXT NOT NULL, requested_by TEXT NOT NULL, created_ms BIGINT NOT NULL, status TEXT NOT NULL,
    decided_by TEXT, decided_ms BIGINT, note TEXT);
CREATE TABLE IF NOT EXISTS alerts (
    id BIGSERIAL PRIMARY KEY, scope_type TEXT NOT NULL, scope_id TEXT NOT NULL, threshold TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL, used_micros BIGINT NOT NULL, used_tokens BIGINT NOT NULL, limit_micros BIGINT,
    limit_tokens BIGINT, created_ms BIGINT NOT NULL, delivered_ms BIGINT, attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0, last_error TEXT, UNIQUE (scope_type, scope_id, threshold, period_start_ms));
"#;

pub struct PgStore {
    pool: deadpool_postgres::Pool,
    handle: Handle,
}

/// Connections per replica.
const POOL_SIZE: usize = 8;

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}
fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
fn uo(v: Option<i64>) -> Option<u64> {
    v.map(u)
}

fn col(st: ScopeType) -> &'static str {
    match st {
        ScopeType::Key => "key_id",
        ScopeType::Team => "team",
        ScopeType::Project => "project",
    }
}

const KEY_COLS: &str = "id, key_hash, team, project, models, projects, tags, created_ms, revoked_ms";
fn key_row(r: &Row) -> KeyRow {
    let models: Option<String> = r.get(4);
    KeyRow {
        id: r.get(0),
        key_hash: r.get(1),
        team: r.get(2),
        project: r.get(3),
        models: models.and_then(|m| serde_json::from_str(&m).ok()),
        projects: serde_json::from_str(&r.get::<_, String>(5)).unwrap_or_default(),
        tags: serde_json::from_str(&r.get::<_, String>(6)).unwrap_or_default(),
        created_ms: u(r.get(7)),
        revoked_ms: uo(r.get(8)),
    }
}

const BUDGET_COLS: &str =
    "scope_type, scope_id, limit_micros, limit_tokens, period, timezone, window_start_ms, window_end_ms, soft_pct, hard_pct, updated_ms";
fn budget_row(r: &Row) -> Budget {
    Budget {
        scope_type: ScopeType::parse(&r.get::<_, String>(0)).unwrap_or(ScopeType::Team),
        scope_id: r.get(1),
        limit_micros: uo(r.get(2)),
        limit_tokens: uo(r.get(3)),
        period: Period::parse(&r.get::<_, String>(4)).unwrap_or(Period::Monthly),
        timezone: r.get(5),
        window_start_ms: uo(r.get(6)),
        window_end_ms: uo(r.get(7)),
        soft_pct: r.get::<_, Option<i64>>(8).map(|v| v as u32),
        hard_pct: r.get::<_, Option<i64>>(9).map(|v| v as u32),
        updated_ms: u(r.get(10)),
    }
}

const ALERT_COLS: &str = "id, scope_type, scope_id, threshold, period_start_ms, used_micros, used_tokens, limit_micros, limit_tokens, created_ms, delivered_ms, attempts, last_error";
fn alert_row(r: &Row) -> AlertRow {
    AlertRow {
        id: r.get(0),
        scope_type: ScopeType::parse(&r.get::<_, String>(1)).unwrap_or(ScopeType::Team),
        scope_id: r.get(2),
        threshold: r.get(3),
        period_start_ms: u(r.get(4)),
        used_micros: u(r.get(5)),
        used_tokens: u(r.get(6)),
        limit_micros: uo(r.get(7)),
        limit_tokens: uo(r.get(8)),
        created_ms: u(r.get(9)),
        delivered_ms: uo(r.get(10)),
        attempts: r.get::<_, i64>(11) as u32,
        last_error: r.get(12),
    }
}

const REQ_COLS: &str =
    "id, scope_type, scope_id, limit_micros, limit_tokens, justification, requested_by, created_ms, status, decided_by, decided_ms, note";
fn req_row(r: &Row) -> IncreaseRequest {
    IncreaseRequest {
        id: r.get(0),
        scope_type: ScopeType::parse(&r.get::<_, String>(1)).unwrap_or(ScopeType::Team),
        scope_id: r.get(2),
        limit_micros: uo(r.get(3)),
        limit_tokens: uo(r.get(4)),
        justification: r.get(5),
        requested_by: r.get(6),
        created_ms: u(r.get(7)),
        status: r.get(8),
        decided_by: r.get(9),
        decided_ms: uo(r.get(10)),
        note: r.get(11),
    }
}

async fn check_thresholds(
    c: &impl tokio_postgres::GenericClient,
    b: &Budget,
    start: u64,
    used: Used,
    now: u64,
    stopped: bool,
) -> Result<()> {
    for (name, pct) in [("soft", b.soft_pct), ("hard", b.hard_pct)] {
        let Some(pct) = pct else { continue };
        let over = b.limit_micros.is_some_and(|l| used.micros >= pct_of(l, pct)) || b.limit_tokens.is_some_and(|l| used.tokens >= pct_of(l, pct));
        if over || stopped {
            c.execute(
                "INSERT INTO alerts (scope_type, scope_id, threshold, period_start_ms, used_micros, used_tokens, limit_micros, limit_tokens, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                &[&b.scope_type.as_str(), &b.scope_id, &name, &i(start), &i(used.micros), &i(used.tokens), &b.limit_micros.map(i), &b.limit_tokens.map(i), &i(now)],
            )
            .await
            .map_err(be)?;
        }
    }
    Ok(())
}

impl PgStore {
    /// Connects (e.g. `host=127.0.0.1 port=5432 user=tollgate dbname=tollgate`) and creates the schema.
    /// Must be called from inside a Tokio runtime.
    pub async fn connect(conninfo: &str) -> Result<PgStore> {
        let config: tokio_postgres::Config = conninfo.parse().map_err(be)?;
        let manager = deadpool_postgres::Manager::from_config(
            config,
            NoTls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = deadpool_postgres::Pool::builder(manager).max_size(POOL_SIZE).build().map_err(be)?;
        let store = PgStore { pool, handle: Handle::current() };
        // Replicas may start together: one creates the schema at a time.
        let client = store.conn().await?;
        client.batch_execute("SELECT pg_advisory_lock(72461)").await.map_err(be)?;
        let r = client.batch_execute(SCHEMA).await;
        client.batch_execute("SELECT pg_advisory_unlock(72461)").await.map_err(be)?;
        r.map_err(be)?;
        drop(client);
        Ok(store)
    }

    /// A connection from the pool (a broken one is replaced, not reused).
    async fn conn(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(be)
    }

    fn run<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.handle.block_on(f)
    }

    /// Sets a budget inside a transaction: the row, fresh grants, the
    /// current period recounted from the records, thresholds checked.
    async fn put_budget_tx(tx: &tokio_postgres::Transaction<'_>, b: &Budget, now_ms: u64) -> Result<()> {
        tx.execute(
            &format!(
                "INSERT INTO budgets ({BUDGET_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (scope_type, scope_id) DO UPDATE SET limit_micros = excluded.limit_micros, limit_tokens = excluded.limit_tokens,
                   period = excluded.period, timezone = excluded.timezone, window_start_ms = excluded.window_start_ms,
                   window_end_ms = excluded.window_end_ms, soft_pct = excluded.soft_pct, hard_pct = excluded.hard_pct, updated_ms = excluded.updated_ms"
            ),
            &[&b.scope_type.as_str(), &b.scope_id, &b.limit_micros.map(i), &b.limit_tokens.map(i), &b.period.as_str(), &b.timezone,
              &b.window_start_ms.map(i), &b.window_end_ms.map(i), &b.soft_pct.map(i64::from), &b.hard_pct.map(i64::from), &i(b.updated_ms)],
        )
        .await
        .map_err(be)?;
        tx.execute("DELETE FROM budget_grants WHERE scope_type = $1 AND scope_id = $2", &[&b.scope_type.as_str(), &b.scope_id])
            .await
            .map_err(be)?;
        if let Some((start, end)) = b.bounds(now_ms) {
            let used = Self::recount(tx, b, start, end).await?;
            check_thresholds(tx, b, start, used, now_ms, false).await?;
        }
        Ok(())
    }

    async fn recount(tx: &tokio_postgres::Transaction<'_>, b: &Budget, start: u64, end: u64) -> Result<Used> {
        let st = b.scope_type.as_str();
        let c = col(b.scope_type);
        let r = tx
            .query_one(
                &format!("SELECT COALESCE(SUM(cost_micros),0)::BIGINT, COALESCE(SUM(input_tokens + output_tokens),0)::BIGINT FROM usage WHERE {c} = $1 AND ts_ms >= $2 AND ts_ms < $3"),
                &[&b.scope_id, &i(start), &i(end)],
            )
            .await
            .map_err(be)?;
        let used = Used { micros: u(r.get(0)), tokens: u(r.get(1)) };
        tx.execute(
            "INSERT INTO budget_usage (scope_type, scope_id, period_start_ms, used_micros, used_tokens) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (scope_type, scope_id, period_start_ms) DO UPDATE SET used_micros = excluded.used_micros, used_tokens = excluded.used_tokens",
            &[&st, &b.scope_id, &i(start), &i(used.micros), &i(used.tokens)],
        )
        .await
        .map_err(be)?;
        tx.execute("DELETE FROM budget_usage_node WHERE scope_type = $1 AND scope_id = $2 AND period_start_ms = $3", &[&st, &b.scope_id, &i(start)])
            .await
            .map_err(be)?;
        tx.execute(
            &format!(
                "INSERT INTO budget_usage_node (scope_type, scope_id, period_start_ms, node, used_micros, used_tokens)
                 SELECT $1, $2, $3, node, SUM(cost_micros)::BIGINT, SUM(input_tokens + output_tokens)::BIGINT FROM usage
                 WHERE {c} = $2 AND ts_ms >= $3 AND ts_ms < $4 GROUP BY node"
            ),
            &[&st, &b.scope_id, &i(start), &i(end)],
        )
        .await
        .map_err(be)?;
        Ok(used)
    }
}

async fn budgets_of(c: &impl tokio_postgres::GenericClient) -> Result<Vec<Budget>> {
    let rows = c.query(&format!("SELECT {BUDGET_COLS} FROM budgets ORDER BY scope_type, scope_id"), &[]).await.map_err(be)?;
    Ok(rows.iter().map(budget_row).collect())
}

impl Store for PgStore {
    fn create_key(&self, k: &KeyRow) -> Result<()> {
        self.run(async {
            let c = self.conn().await?;
            let models = k.models.as_ref().map(|m| serde_json::to_string(m).unwrap_or_default());
            let res = c
                .execute(
                    &format!("INSERT INTO keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
                    &[&k.id, &k.key_hash, &k.team, &k.project, &models, &serde_json::to_string(&k.projects).unwrap_or_default(),
                      &serde_json::to_string(&k.tags).unwrap_or_default(), &i(k.created_ms), &k.revoked_ms.map(i)],
                )
                .await;
            match res {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    Err(StoreError::Conflict(format!("a key with id '{}' already exists", k.id)))
                }
                Err(e) => Err(be(e)),
            }
        })
    }

    fn list_keys(&self) -> Result<Vec<KeyRow>> {
        self.run(async {
            let c = self.conn().await?;
            let rows = c.query(&format!("SELECT {KEY_COLS} FROM keys ORDER BY created_ms, id"), &[]).await.map_err(be)?;
            Ok(rows.iter().map(key_row).collect())
        })
    }

    fn get_key(&self, id: &str) -> Result<Option<KeyRow>> {
        self.run(async {
            let c = self.conn().await?;
            Ok(c.query_opt(&format!("SELECT {KEY_COLS} FROM keys WHERE id = $1"), &[&id]).await.map_err(be)?.as_ref().map(key_row))
        })
    }

    fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRow>> {
        self.run(async {
            let c = self.conn().await?;
            let sql = format!("SELECT {KEY_COLS} FROM keys WHERE key_hash = $1 AND revoked_ms IS NULL");
            Ok(c.query_opt(&sql, &[&key_hash]).await.map_err(be)?.as_ref().map(key_row))
        })
    }

    fn revoke_key(&self, id: &str, now_ms: u64) -> Result<()> {
        self.run(async {
            let c = self.conn().await?;
            let n = c.execute("UPDATE keys SET revoked_ms = COALESCE(revoked_ms, $2) WHERE id = $1", &[&id, &i(now_ms)]).await.map_err(be)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("no key with id '{id}'")));
            }
            Ok(())
        })
    }

    fn set_key_hash(&self, id: &str, key_hash: &str) -> Result<()> {
        self.run(async {
            let c = self.conn().await?;
            let n = c.execute("UPDATE keys SET key_hash = $2 WHERE id = $1 AND revoked_ms IS NULL", &[&id, &key_hash]).await.map_err(be)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("no active key with id '{id}'")));
            }
            Ok(())
        })
    }

    fn put_budget(&self, b: &Budget, now_ms: u64) -> Result<()> {
        self.run(async {
            let mut c = self.conn().await?;
            let tx = tokio_postgres::Client::transaction(&mut c).await.map_err(be)?;
            Self::put_budget_tx(&tx, b, now_ms).await?;
            tx.commit().await.map_err(be)
        })
    }

    fn list_budgets(&self) -> Result<Vec<Budget>> {
        self.run(async {
            let c = self.conn().await?;
            budgets_of(&**c).await
        })
    }

    fn delete_budget(&self, st: ScopeType, id: &str) -> Result<()> {
        self.run(async {
            let c = self.conn().await?;
            let n = c.execute("DELETE FROM budgets WHERE scope_type = $1 AND scope_id = $2", &[&st.as_str(), &id]).await.map_err(be)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("no budget for {} '{id}'", st.as_str())));
            }
            Ok(())
        })
    }

    fn grant(&self, node: &str, now_ms: u64, node_ttl_ms: u64) -> Result<GrantSnapshot> {
        self.run(async {
            let mut c = self.conn().await?;
            let tx = tokio_postgres::Client::transaction(&mut c).await.map_err(be)?;
            tx.batch_execute("SELECT pg_advisory_xact_lock(72462)").await.map_err(be)?;
            // seq first: the counts read after it include at least those batches.
            let seq: i64 = tx.query_one("SELECT seq FROM ingest_seq", &[]).await.map_err(be)?.get(0);
            tx.execute(
                "INSERT INTO nodes (node, last_seen_ms) VALUES ($1, $2) ON CONFLICT (node) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
                &[&node, &i(now_ms)],
            )
            .await
            .map_err(be)?;
            let alive = i(now_ms.saturating_sub(node_ttl_ms));
            let active: i64 = tx.query_one("SELECT COUNT(*) FROM nodes WHERE last_seen_ms >= $1", &[&alive]).await.map_err(be)?.get(0);
            let mut out = Vec::new();
            for b in budgets_of(&tx).await? {
                let Some((start, end)) = b.bounds(now_ms) else { continue };
                let st = b.scope_type.as_str();
                tx.execute(
                    "UPDATE budget_grants g SET
                        granted_micros = COALESCE((SELECT used_micros FROM budget_usage_node u WHERE u.scope_type = g.scope_type AND u.scope_id = g.scope_id
                            AND u.period_start_ms = g.period_start_ms AND u.node = g.node), 0),
                        granted_tokens = COALESCE((SELECT used_tokens FROM budget_usage_node u WHERE u.scope_type = g.scope_type AND u.scope_id = g.scope_id
                            AND u.period_start_ms = g.period_start_ms AND u.node = g.node), 0)
                     WHERE g.scope_type = $1 AND g.scope_id = $2 AND g.period_start_ms = $3 AND g.node <> $4
                       AND g.node NOT IN (SELECT node FROM nodes WHERE last_seen_ms >= $5)",
                    &[&st, &b.scope_id, &i(start), &node, &alive],
                )
                .await
                .map_err(be)?;
                let used = tx
                    .query_opt("SELECT used_micros, used_tokens FROM budget_usage WHERE scope_type = $1 AND scope_id = $2 AND period_start_ms = $3", &[&st, &b.scope_id, &i(start)])
                    .await
                    .map_err(be)?
                    .map(|r| (u(r.get(0)), u(r.get(1))))
                    .unwrap_or((0, 0));
                let rows = tx
                    .query(
                        "SELECT n, COALESCE(MAX(um), 0)::BIGINT, COALESCE(MAX(ut), 0)::BIGINT, MAX(gm), MAX(gt) FROM (
                            SELECT node AS n, used_micros AS um, used_tokens AS ut, NULL::BIGINT AS gm, NULL::BIGINT AS gt FROM budget_usage_node
                              WHERE scope_type = $1 AND scope_id = $2 AND period_start_ms = $3
                            UNION ALL
                            SELECT node, NULL, NULL, granted_micros, granted_tokens FROM budget_grants
                              WHERE scope_type = $1 AND scope_id = $2 AND period_start_ms = $3) x GROUP BY n",
                        &[&st, &b.scope_id, &i(start)],
                    )
                    .await
                    .map_err(be)?;
                let nodes: Vec<NodeUse> = rows
                    .iter()
                    .map(|r| (r.get::<_, String>(0), (u(r.get(1)), uo(r.get(3))), (u(r.get(2)), uo(r.get(4)))))
                    .collect();
                let (doc, gm, gt) = grant_doc(&b, (start, end), used, nodes, node, u64::try_from(active).unwrap_or(1));
                tx.execute(
                    "INSERT INTO budget_grants (scope_type, scope_id, period_start_ms, node, granted_micros, granted_tokens) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (scope_type, scope_id, period_start_ms, node) DO UPDATE SET granted_micros = excluded.granted_micros, granted_tokens = excluded.granted_tokens",
                    &[&st, &b.scope_id, &i(start), &node, &i(gm), &i(gt)],
                )
                .await
                .map_err(be)?;
                out.push(doc);
            }
            tx.commit().await.map_err(be)?;
            Ok(GrantSnapshot { seq: u(seq), nodes_active: u32::try_from(active).unwrap_or(u32::MAX), budgets: out })
        })
    }

    fn reserved(&self, st: ScopeType, id: &str, period_start_ms: u64) -> Result<Used> {
        self.run(async {
            let c = self.conn().await?;
            let r = c
                .query_one(
                    "SELECT COALESCE(SUM(GREATEST(g.granted_micros - COALESCE(u.used_micros, 0), 0)), 0)::BIGINT,
                            COALESCE(SUM(GREATEST(g.granted_tokens - COALESCE(u.used_tokens, 0), 0)), 0)::BIGINT
                     FROM budget_grants g LEFT JOIN budget_usage_node u ON u.scope_type = g.scope_type AND u.scope_id = g.scope_id
                          AND u.period_start_ms = g.period_start_ms AND u.node = g.node
                     WHERE g.scope_type = $1 AND g.scope_id = $2 AND g.period_start_ms = $3",
                    &[&st.as_str(), &id, &i(period_start_ms)],
                )
                .await
                .map_err(be)?;
            Ok(Used { micros: u(r.get(0)), tokens: u(r.get(1)) })
        })
    }

    fn used(&self, st: ScopeType, id: &str, period_start_ms: u64) -> Result<Used> {
        self.run(async {
            let c = self.conn().await?;
            Ok(c.query_opt(
                "SELECT used_micros, used_tokens FROM budget_usage WHERE scope_type = $1 AND scope_id = $2 AND period_start_ms = $3",
                &[&st.as_str(), &id, &i(period_start_ms)],
            )
            .await
            .map_err(be)?
            .map(|r| Used { micros: u(r.get(0)), tokens: u(r.get(1)) })
            .unwrap_or_default())
        })
    }

    fn ingest(&self, node: &str, records: &[UsageRecord], raw: Option<&[&str]>, now_ms: u64) -> Result<IngestAck> {
        self.run(async {
            let mut c = self.conn().await?;
            let tx = tokio_postgres::Client::transaction(&mut c).await.map_err(be)?;
            // The counter row's lock orders ingest transactions across replicas.
            let seq: i64 = tx.query_one("UPDATE ingest_seq SET seq = seq + 1 RETURNING seq", &[]).await.map_err(be)?.get(0);
            let budgets = budgets_of(&tx).await?;
            let insert = tx
                .prepare(
                    "INSERT INTO usage (id, seq, node, ts_ms, key_id, team, project, feature, prompt_version, provider, model, status, outcome,
                        input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_micros, record)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) ON CONFLICT (id) DO NOTHING",
                )
                .await
                .map_err(be)?;
            let (mut accepted, mut duplicates) = (0u64, 0u64);
            let mut touched: HashMap<(usize, u64), bool> = HashMap::new();
            for (idx, r) in records.iter().enumerate() {
                if r.id.is_empty() {
                    return Err(StoreError::Invalid("a record has an empty id".into()));
                }
                let outcome = serde_json::to_string(&r.outcome).unwrap_or_default();
                let text = match raw.and_then(|x| x.get(idx)) {
                    Some(t) => t.to_string(),
                    None => serde_json::to_string(r).unwrap_or_default(),
                };
                let params: [&(dyn ToSql + Sync); 20] = [
                    &r.id, &seq, &node, &i(r.ts_ms), &r.key_id, &r.team, &r.project, &r.feature, &r.prompt_version, &r.provider,
                    &r.model_upstream, &i64::from(r.status), &outcome.trim_matches('"').to_string(), &i(r.usage.input_tokens),
                    &i(r.usage.cached_input_tokens), &i(r.usage.cache_write_tokens), &i(r.usage.output_tokens),
                    &i(r.usage.reasoning_tokens), &i(r.cost_micros), &text,
                ];
                if tx.execute(&insert, &params).await.map_err(be)? == 0 {
                    duplicates += 1;
                    continue;
                }
                accepted += 1;
                let fx = record_effects(&budgets, r);
                for k in fx.denied_by {
                    touched.insert(k, true);
                }
                for (bi, start) in fx.counts {
                    let Some(b) = budgets.get(bi) else { continue };
                    let st = b.scope_type.as_str();
                    tx.execute(
                        "INSERT INTO budget_usage (scope_type, scope_id, period_start_ms, used_micros, used_tokens) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (scope_type, scope_id, period_start_ms) DO UPDATE SET
                           used_micros = CASE WHEN budget_usage.used_micros > 9223372036854775807 - excluded.used_micros THEN 9223372036854775807 ELSE budget_usage.used_micros + excluded.used_micros END, used_tokens = CASE WHEN budget_usage.used_tokens > 9223372036854775807 - excluded.used_tokens THEN 9223372036854775807 ELSE budget_usage.used_tokens + excluded.used_tokens END",
                        &[&st, &b.scope_id, &i(start), &i(r.cost_micros), &i(fx.tokens)],
                    )
                    .await
                    .map_err(be)?;
                    tx.execute(
                        "INSERT INTO budget_usage_node (scope_type, scope_id, period_start_ms, node, used_micros, used_tokens) VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (scope_type, scope_id, period_start_ms, node) DO UPDATE SET
                           used_micros = CASE WHEN budget_usage_node.used_micros > 9223372036854775807 - excluded.used_micros THEN 9223372036854775807 ELSE budget_usage_node.used_micros + excluded.used_micros END, used_tokens = CASE WHEN budget_usage_node.used_tokens > 9223372036854775807 - excluded.used_tokens THEN 9223372036854775807 ELSE budget_usage_node.used_tokens + excluded.used_tokens END",
                        &[&st, &b.scope_id, &i(start), &node, &i(r.cost_micros), &i(fx.tokens)],
                    )
                    .await
                    .map_err(be)?;
                    touched.entry((bi, start)).or_insert(false);
                }
            }
            for ((bi, start), stopped) in &touched {
                let Some(b) = budgets.get(*bi) else { continue };
                let used = tx
                    .query_opt("SELECT used_micros, used_tokens FROM budget_usage WHERE scope_type = $1 AND scope_id = $2 AND period_start_ms = $3", &[&b.scope_type.as_str(), &b.scope_id, &i(*start)])
                    .await
                    .map_err(be)?
                    .map(|r| Used { micros: u(r.get(0)), tokens: u(r.get(1)) })
                    .unwrap_or_default();
                check_thresholds(&tx, b, *start, used, now_ms, *stopped).await?;
            }
            tx.commit().await.map_err(be)?;
            Ok(IngestAck { accepted, duplicates, rejected: Vec::new(), seq: u(seq) })
        })
    }

    fn nodes_active(&self, now_ms: u64, node_ttl_ms: u64) -> Result<u32> {
        self.run(async {
            let c = self.conn().await?;
            let since = i(now_ms.saturating_sub(node_ttl_ms));
            let n: i64 = c.query_one("SELECT COUNT(*) FROM nodes WHERE last_seen_ms >= $1", &[&since]).await.map_err(be)?.get(0);
            Ok(u32::try_from(n).unwrap_or(0))
        })
    }

    fn seq(&self) -> Result<u64> {
        self.run(async {
            let c = self.conn().await?;
            Ok(u(c.query_one("SELECT seq FROM ingest_seq", &[]).await.map_err(be)?.get(0)))
        })
    }

    fn spend(&self, f: &SpendFilter) -> Result<SpendTotals> {
        let q = ReportQuery {
            group_by: vec![],
            bucket: None,
            from_ms: f.from_ms.unwrap_or(0),
            to_ms: f.to_ms.unwrap_or(i64::MAX as u64),
            filters: f
                .scope
                .as_ref()
                .map(|(t, id)| {
                    let d = match t {
                        ScopeType::Key => crate::reports::Dim::Key,
                        ScopeType::Team => crate::reports::Dim::Team,
                        ScopeType::Project => crate::reports::Dim::Project,
                    };
                    vec![(d, id.clone())]
                })
                .unwrap_or_default(),
            top: None,
        };
        let r = self.report(&q)?.into_iter().next().unwrap_or_default();
        Ok(SpendTotals {
            requests: r.requests,
            input_tokens: r.input_tokens,
            cached_input_tokens: r.cached_input_tokens,
            output_tokens: r.output_tokens,
            cost_micros: r.cost_micros,
        })
    }

    fn report(&self, q: &ReportQuery) -> Result<Vec<ReportRow>> {
        self.run(async {
            let c = self.conn().await?;
            let mut select: Vec<String> = q.group_by.iter().map(|d| d.column().to_string()).collect();
            let mut group = select.clone();
            match q.bucket {
                Some(b) => {
                    select.push(format!("(ts_ms / {0}) * {0}", b.ms()));
                    group.push(format!("(ts_ms / {0}) * {0}", b.ms()));
                }
                None => select.push("NULL::BIGINT".into()),
            }
            let mut sql = format!(
                "SELECT {}, COUNT(*)::BIGINT, COALESCE(SUM(input_tokens),0)::BIGINT, COALESCE(SUM(cached_input_tokens),0)::BIGINT,
                        COALESCE(SUM(output_tokens),0)::BIGINT, COALESCE(SUM(cost_micros),0)::BIGINT,
                        COALESCE(SUM(CASE WHEN outcome IN ('provider_error','upstream_cut') THEN 1 ELSE 0 END),0)::BIGINT,
                        COALESCE(SUM(CASE WHEN status = 429 THEN 1 ELSE 0 END),0)::BIGINT
                 FROM usage WHERE ts_ms >= $1 AND ts_ms < $2",
                select.join(", ")
            );
            let from = i(q.from_ms);
            let to = i(q.to_ms);
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&from, &to];
            for (n, (d, v)) in q.filters.iter().enumerate() {
                sql.push_str(&format!(" AND {} = ${}", d.column(), n + 3));
                params.push(v);
            }
            if !group.is_empty() {
                sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
            }
            let n = q.group_by.len();
            if q.bucket.is_some() {
                sql.push_str(&format!(" ORDER BY {} ASC, {} DESC", n + 1, n + 6));
            } else {
                sql.push_str(&format!(" ORDER BY {} DESC", n + 6));
                if let Some(t) = q.top {
                    sql.push_str(&format!(" LIMIT {t}"));
                }
            }
            let rows = c.query(&sql, &params).await.map_err(be)?;
            Ok(rows
                .iter()
                .map(|r| ReportRow {
                    group: (0..n).map(|k| r.get::<_, Option<String>>(k)).collect(),
                    bucket_start_ms: uo(r.get(n)),
                    requests: u(r.get(n + 1)),
                    input_tokens: u(r.get(n + 2)),
                    cached_input_tokens: u(r.get(n + 3)),
                    output_tokens: u(r.get(n + 4)),
                    cost_micros: u(r.get(n + 5)),
                    errors: u(r.get(n + 6)),
                    rate_limited: u(r.get(n + 7)),
                })
                .collect())
        })
    }

    fn list_alerts(&self, limit: u32) -> Result<Vec<AlertRow>> {
        self.run(async {
            let c = self.conn().await?;
            let rows = c.query(&format!("SELECT {ALERT_COLS} FROM alerts ORDER BY id DESC LIMIT $1"), &[&i64::from(limit)]).await.map_err(be)?;
            Ok(rows.iter().map(alert_row).collect())
        })
    }

    fn due_alerts(&self, now_ms: u64) -> Result<Vec<AlertRow>> {
        self.run(async {
            let c = self.conn().await?;
            let rows = c
                .query(&format!("SELECT {ALERT_COLS} FROM alerts WHERE delivered_ms IS NULL AND next_attempt_ms <= $1 AND attempts < 50 ORDER BY id LIMIT 100"), &[&i(now_ms)])
                .await
                .map_err(be)?;
            Ok(rows.iter().map(alert_row).collect())
        })
    }

    fn alert_attempted(&self, id: i64, ok: bool, error: Option<&str>, next_attempt_ms: u64, now_ms: u64) -> Result<()> {
        self.run(async {
            let c = self.conn().await?;
            c.execute(
                "UPDATE alerts SET attempts = attempts + 1, delivered_ms = CASE WHEN $2 THEN $5::BIGINT ELSE NULL END, last_error = $3, next_attempt_ms = $4 WHERE id = $1",
                &[&id, &ok, &error, &i(next_attempt_ms), &i(now_ms)],
            )
            .await
            .map_err(be)?;
            Ok(())
        })
    }

    fn create_request(&self, r: &IncreaseRequest) -> Result<IncreaseRequest> {
        self.run(async {
            let c = self.conn().await?;
            let row = c
                .query_one(
                    &format!(
                        "INSERT INTO budget_requests (scope_type, scope_id, limit_micros, limit_tokens, justification, requested_by, created_ms, status)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') RETURNING {REQ_COLS}"
                    ),
                    &[&r.scope_type.as_str(), &r.scope_id, &r.limit_micros.map(i), &r.limit_tokens.map(i), &r.justification, &r.requested_by, &i(r.created_ms)],
                )
                .await
                .map_err(be)?;
            Ok(req_row(&row))
        })
    }

    fn list_requests(&self, status: Option<&str>) -> Result<Vec<IncreaseRequest>> {
        self.run(async {
            let c = self.conn().await?;
            let rows = c
                .query(&format!("SELECT {REQ_COLS} FROM budget_requests WHERE ($1::TEXT IS NULL OR status = $1) ORDER BY id DESC"), &[&status])
                .await
                .map_err(be)?;
            Ok(rows.iter().map(req_row).collect())
        })
    }

    fn get_request(&self, id: i64) -> Result<Option<IncreaseRequest>> {
        self.run(async {
            let c = self.conn().await?;
            Ok(c.query_opt(&format!("SELECT {REQ_COLS} FROM budget_requests WHERE id = $1"), &[&id]).await.map_err(be)?.as_ref().map(req_row))
        })
    }

    fn decide_request(&self, id: i64, approve: bool, by: &str, note: Option<&str>, now_ms: u64) -> Result<IncreaseRequest> {
        self.run(async {
            let mut c = self.conn().await?;
            let tx = tokio_postgres::Client::transaction(&mut c).await.map_err(be)?;
            let status = if approve { "approved" } else { "refused" };
            // The row lock of this UPDATE orders concurrent decisions: the second sees it decided.
            let row = tx
                .query_opt(
                    &format!("UPDATE budget_requests SET status = $2, decided_by = $3, decided_ms = $4, note = $5 WHERE id = $1 AND status = 'pending' RETURNING {REQ_COLS}"),
                    &[&id, &status, &by, &i(now_ms), &note],
                )
                .await
                .map_err(be)?;
            let r = match row {
                Some(r) => req_row(&r),
                None => {
                    return match tx.query_opt("SELECT status FROM budget_requests WHERE id = $1", &[&id]).await.map_err(be)? {
                        Some(r) => Err(StoreError::Conflict(format!("request {id} was already {}", r.get::<_, String>(0)))),
                        None => Err(StoreError::NotFound(format!("no budget request {id}"))),
                    }
                }
            };
            if approve {
                let current = tx
                    .query_opt(
                        &format!("SELECT {BUDGET_COLS} FROM budgets WHERE scope_type = $1 AND scope_id = $2 FOR UPDATE"),
                        &[&r.scope_type.as_str(), &r.scope_id],
                    )
                    .await
                    .map_err(be)?
                    .map(|row| budget_row(&row));
                Self::put_budget_tx(&tx, &Budget::approved(current, &r, now_ms), now_ms).await?;
            }
            tx.commit().await.map_err(be)?;
            Ok(r)
        })
    }
}
