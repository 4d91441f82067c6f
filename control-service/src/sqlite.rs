//! SQLite backend: the embedded default (a single file, nothing to install).
//! WAL with `synchronous = FULL`: a commit is on disk before the API answers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use tollgate_filter::record::UsageRecord;
use tollgate_filter::state::{pct_of, IngestAck, ScopeType};

use crate::periods::Period;
use crate::store::*;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    team TEXT NOT NULL,
    project TEXT NOT NULL,
    models TEXT,
    projects TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS budgets (
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    limit_micros INTEGER,
    limit_tokens INTEGER,
    period TEXT NOT NULL,
    timezone TEXT NOT NULL,
    window_start_ms INTEGER,
    window_end_ms INTEGER,
    soft_pct INTEGER,
    hard_pct INTEGER,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (scope_type, scope_id)
);
CREATE TABLE IF NOT EXISTS usage (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    node TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    team TEXT NOT NULL,
    project TEXT NOT NULL,
    feature TEXT,
    prompt_version TEXT,
    provider TEXT,
    model TEXT,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_micros INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts_ms);
CREATE INDEX IF NOT EXISTS usage_team_ts ON usage (team, ts_ms);
CREATE INDEX IF NOT EXISTS usage_project_ts ON usage (project, ts_ms);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key_id, ts_ms);
CREATE TABLE IF NOT EXISTS budget_usage (
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL,
    used_micros INTEGER NOT NULL,
    used_tokens INTEGER NOT NULL,
    PRIMARY KEY (scope_type, scope_id, period_start_ms)
);
CREATE TABLE IF NOT EXISTS budget_usage_node (
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL,
    node TEXT NOT NULL,
    used_micros INTEGER NOT NULL,
    used_tokens INTEGER NOT NULL,
    PRIMARY KEY (scope_type, scope_id, period_start_ms, node)
);
CREATE TABLE IF NOT EXISTS budget_grants (
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL,
    node TEXT NOT NULL,
    granted_micros INTEGER NOT NULL,
    granted_tokens INTEGER NOT NULL,
    PRIMARY KEY (scope_type, scope_id, period_start_ms, node)
);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    last_seen_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS budget_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    limit_micros INTEGER,
    limit_tokens INTEGER,
    justification TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_ms INTEGER,
    note TEXT
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    threshold TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL,
    used_micros INTEGER NOT NULL,
    used_tokens INTEGER NOT NULL,
    limit_micros INTEGER,
    limit_tokens INTEGER,
    created_ms INTEGER NOT NULL,
    delivered_ms INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (scope_type, scope_id, threshold, period_start_ms)
);
"#;

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path).map_err(be)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
        )
        .map_err(be)?;
        conn.execute_batch(SCHEMA).map_err(be)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key_from_row(r: &rusqlite::Row) -> rusqlite::Result<KeyRow> {
    let models: Option<String> = r.get(4)?;
    let projects: String = r.get(5)?;
    let tags: String = r.get(6)?;
    Ok(KeyRow {
        id: r.get(0)?,
        key_hash: r.get(1)?,
        team: r.get(2)?,
        project: r.get(3)?,
        models: models.and_then(|m| serde_json::from_str(&m).ok()),
        projects: serde_json::from_str(&projects).unwrap_or_default(),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        created_ms: u(r.get(7)?),
        revoked_ms: r.get::<_, Option<i64>>(8)?.map(u),
    })
}

const KEY_COLS: &str = "id, key_hash, team, project, models, projects, tags, created_ms, revoked_ms";

fn budget_from_row(r: &rusqlite::Row) -> rusqlite::Result<Budget> {
    let st: String = r.get(0)?;
    let period: String = r.get(4)?;
    Ok(Budget {
        scope_type: ScopeType::parse(&st).unwrap_or(ScopeType::Team),
        scope_id: r.get(1)?,
        limit_micros: r.get::<_, Option<i64>>(2)?.map(u),
        limit_tokens: r.get::<_, Option<i64>>(3)?.map(u),
        period: Period::parse(&period).unwrap_or(Period::Monthly),
        timezone: r.get(5)?,
        window_start_ms: r.get::<_, Option<i64>>(6)?.map(u),
        window_end_ms: r.get::<_, Option<i64>>(7)?.map(u),
        soft_pct: r.get::<_, Option<i64>>(8)?.map(|v| v as u32),
        hard_pct: r.get::<_, Option<i64>>(9)?.map(|v| v as u32),
        updated_ms: u(r.get(10)?),
    })
}

const BUDGET_COLS: &str =
    "scope_type, scope_id, limit_micros, limit_tokens, period, timezone, window_start_ms, window_end_ms, soft_pct, hard_pct, updated_ms";

fn alert_from_row(r: &rusqlite::Row) -> rusqlite::Result<AlertRow> {
    let st: String = r.get(1)?;
    Ok(AlertRow {
        id: r.get(0)?,
        scope_type: ScopeType::parse(&st).unwrap_or(ScopeType::Team),
        scope_id: r.get(2)?,
        threshold: r.get(3)?,
        period_start_ms: u(r.get(4)?),
        used_micros: u(r.get(5)?),
        used_tokens: u(r.get(6)?),
        limit_micros: r.get::<_, Option<i64>>(7)?.map(u),
        limit_tokens: r.get::<_, Option<i64>>(8)?.map(u),
        created_ms: u(r.get(9)?),
        delivered_ms: r.get::<_, Option<i64>>(10)?.map(u),
        attempts: r.get::<_, i64>(11)? as u32,
        last_error: r.get(12)?,
    })
}

const ALERT_COLS: &str = "id, scope_type, scope_id, threshold, period_start_ms, used_micros, used_tokens, limit_micros, limit_tokens, created_ms, delivered_ms, attempts, last_error";

const REQ_COLS: &str =
    "id, scope_type, scope_id, limit_micros, limit_tokens, justification, requested_by, created_ms, status, decided_by, decided_ms, note";

fn request_from_row(r: &rusqlite::Row) -> rusqlite::Result<IncreaseRequest> {
    let st: String = r.get(1)?;
    Ok(IncreaseRequest {
        id: r.get(0)?,
        scope_type: ScopeType::parse(&st).unwrap_or(ScopeType::Team),
        scope_id: r.get(2)?,
        limit_micros: r.get::<_, Option<i64>>(3)?.map(u),
        limit_tokens: r.get::<_, Option<i64>>(4)?.map(u),
        justification: r.get(5)?,
        requested_by: r.get(6)?,
        created_ms: u(r.get(7)?),
        status: r.get(8)?,
        decided_by: r.get(9)?,
        decided_ms: r.get::<_, Option<i64>>(10)?.map(u),
        note: r.get(11)?,
    })
}

fn scope_column(st: ScopeType) -> &'static str {
    match st {
        ScopeType::Key => "key_id",
        ScopeType::Team => "team",
        ScopeType::Project => "project",
    }
}

fn load_budgets(c: &Connection) -> Result<Vec<Budget>> {
    let mut s = c.prepare_cached(&format!("SELECT {BUDGET_COLS} FROM budgets ORDER BY scope_type, scope_id")).map_err(be)?;
    let rows = s.query_map([], budget_from_row).map_err(be)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)
}

/// Raises the soft/hard alert of a budget period if its use crossed them.
/// `stopped`: a filter refused a request of this scope (the hard stop acted,
/// even if reservations kept `used` just under the limit).
fn check_thresholds(c: &Connection, b: &Budget, period_start: u64, used: Used, now_ms: u64, stopped: bool) -> Result<()> {
    for (name, pct) in [("soft", b.soft_pct), ("hard", b.hard_pct)] {
        let Some(pct) = pct else { continue };
        let over_micros = b.limit_micros.is_some_and(|l| used.micros >= pct_of(l, pct));
        let over_tokens = b.limit_tokens.is_some_and(|l| used.tokens >= pct_of(l, pct));
        if over_micros || over_tokens || stopped {
            c.prepare_cached(
                "INSERT OR IGNORE INTO alerts (scope_type, scope_id, threshold, period_start_ms, used_micros, used_tokens, limit_micros, limit_tokens, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(be)?
            .execute(params![
                b.scope_type.as_str(),
                b.scope_id,
                name,
                i(period_start),
                i(used.micros),
                i(used.tokens),
                b.limit_micros.map(i),
                b.limit_tokens.map(i),
                i(now_ms)
            ])
            .map_err(be)?;
        }
    }
    Ok(())
}

/// Sets a budget inside a transaction: the row, fresh grants, the current
/// period recounted from the records, thresholds checked.
fn put_budget_tx(tx: &rusqlite::Transaction<'_>, b: &Budget, now_ms: u64) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT OR REPLACE INTO budgets ({BUDGET_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ),
        params![
            b.scope_type.as_str(),
            b.scope_id,
            b.limit_micros.map(i),
            b.limit_tokens.map(i),
            b.period.as_str(),
            b.timezone,
            b.window_start_ms.map(i),
            b.window_end_ms.map(i),
            b.soft_pct.map(i64::from),
            b.hard_pct.map(i64::from),
            i(b.updated_ms)
        ],
    )
    .map_err(be)?;
    // A changed budget starts its grants afresh (never more than the new limit).
    tx.execute("DELETE FROM budget_grants WHERE scope_type = ?1 AND scope_id = ?2", params![b.scope_type.as_str(), b.scope_id])
        .map_err(be)?;
    // Recount the current period from the records (the period may have changed).
    if let Some((start, end)) = b.bounds(now_ms) {
        let col = scope_column(b.scope_type);
        let used: (i64, i64) = tx
            .query_row(
                &format!(
                    "SELECT COALESCE(SUM(cost_micros), 0), COALESCE(SUM(input_tokens + output_tokens), 0)
                     FROM usage WHERE {col} = ?1 AND ts_ms >= ?2 AND ts_ms < ?3"
                ),
                params![b.scope_id, i(start), i(end)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(be)?;
        tx.execute(
            "INSERT OR REPLACE INTO budget_usage (scope_type, scope_id, period_start_ms, used_micros, used_tokens) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![b.scope_type.as_str(), b.scope_id, i(start), used.0, used.1],
        )
        .map_err(be)?;
        tx.execute(
            "DELETE FROM budget_usage_node WHERE scope_type = ?1 AND scope_id = ?2 AND period_start_ms = ?3",
            params![b.scope_type.as_str(), b.scope_id, i(start)],
        )
        .map_err(be)?;
        tx.execute(
            &format!(
                "INSERT INTO budget_usage_node (scope_type, scope_id, period_start_ms, node, used_micros, used_tokens)
                 SELECT ?1, ?2, ?3, node, SUM(cost_micros), SUM(input_tokens + output_tokens)
                 FROM usage WHERE {col} = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 GROUP BY node"
            ),
            params![b.scope_type.as_str(), b.scope_id, i(start), i(end)],
        )
        .map_err(be)?;
        check_thresholds(tx, b, start, Used { micros: u(used.0), tokens: u(used.1) }, now_ms, false)?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn create_key(&self, k: &KeyRow) -> Result<()> {
        let c = self.conn();
        let res = c.execute(
            &format!("INSERT INTO keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                k.id,
                k.key_hash,
                k.team,
                k.project,
                k.models.as_ref().map(|m| serde_json::to_string(m).unwrap_or_default()),
                serde_json::to_string(&k.projects).unwrap_or_default(),
                serde_json::to_string(&k.tags).unwrap_or_default(),
                i(k.created_ms),
                k.revoked_ms.map(i)
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::Conflict(format!("a key with id '{}' already exists", k.id)))
            }
            Err(e) => Err(be(e)),
        }
    }

    fn list_keys(&self) -> Result<Vec<KeyRow>> {
        let c = self.conn();
        let mut s = c.prepare_cached(&format!("SELECT {KEY_COLS} FROM keys ORDER BY created_ms, id")).map_err(be)?;
        let rows = s.query_map([], key_from_row).map_err(be)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)
    }

    fn get_key(&self, id: &str) -> Result<Option<KeyRow>> {
        let c = self.conn();
        c.query_row(&format!("SELECT {KEY_COLS} FROM keys WHERE id = ?1"), [id], key_from_row).optional().map_err(be)
    }

    fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRow>> {
        let c = self.conn();
        c.query_row(&format!("SELECT {KEY_COLS} FROM keys WHERE key_hash = ?1 AND revoked_ms IS NULL"), [key_hash], key_from_row)
            .optional()
            .map_err(be)
    }

    fn revoke_key(&self, id: &str, now_ms: u64) -> Result<()> {
        let c = self.conn();
        let n = c
            .execute("UPDATE keys SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1", params![id, i(now_ms)])
            .map_err(be)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no key with id '{id}'")));
        }
        Ok(())
    }

    fn set_key_hash(&self, id: &str, key_hash: &str) -> Result<()> {
        let c = self.conn();
        let n = c
            .execute("UPDATE keys SET key_hash = ?2 WHERE id = ?1 AND revoked_ms IS NULL", params![id, key_hash])
            .map_err(be)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no active key with id '{id}'")));
        }
        Ok(())
    }

    fn put_budget(&self, b: &Budget, now_ms: u64) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(be)?;
        put_budget_tx(&tx, b, now_ms)?;
        tx.commit().map_err(be)
    }

    fn list_budgets(&self) -> Result<Vec<Budget>> {
        load_budgets(&self.conn())
    }

    fn grant(&self, node: &str, now_ms: u64, node_ttl_ms: u64) -> Result<GrantSnapshot> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(be)?;
        tx.execute(
            "INSERT INTO nodes (node, last_seen_ms) VALUES (?1, ?2) ON CONFLICT (node) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
            params![node, i(now_ms)],
        )
        .map_err(be)?;
        let alive_since = i(now_ms.saturating_sub(node_ttl_ms));
        let active: i64 = tx
            .query_row("SELECT COUNT(*) FROM nodes WHERE last_seen_ms >= ?1", [alive_since], |r| r.get(0))
            .map_err(be)?;
        let seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM usage", [], |r| r.get(0)).map_err(be)?;
        let mut out = Vec::new();
        for b in load_budgets(&tx)? {
            let Some((start, end)) = b.bounds(now_ms) else { continue };
            let st = b.scope_type.as_str();
            // Reclaim what silent nodes hold but did not spend.
            tx.execute(
                "UPDATE budget_grants SET
                    granted_micros = COALESCE((SELECT used_micros FROM budget_usage_node u WHERE u.scope_type = budget_grants.scope_type
                        AND u.scope_id = budget_grants.scope_id AND u.period_start_ms = budget_grants.period_start_ms AND u.node = budget_grants.node), 0),
                    granted_tokens = COALESCE((SELECT used_tokens FROM budget_usage_node u WHERE u.scope_type = budget_grants.scope_type
                        AND u.scope_id = budget_grants.scope_id AND u.period_start_ms = budget_grants.period_start_ms AND u.node = budget_grants.node), 0)
                 WHERE scope_type = ?1 AND scope_id = ?2 AND period_start_ms = ?3 AND node != ?4
                   AND node NOT IN (SELECT node FROM nodes WHERE last_seen_ms >= ?5)",
                params![st, b.scope_id, i(start), node, alive_since],
            )
            .map_err(be)?;
            let used: (i64, i64) = tx
                .query_row(
                    "SELECT COALESCE(MAX(used_micros), 0), COALESCE(MAX(used_tokens), 0) FROM budget_usage
                     WHERE scope_type = ?1 AND scope_id = ?2 AND period_start_ms = ?3",
                    params![st, b.scope_id, i(start)],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(be)?;
            // Every node's (used, granted) in this period; this node first.
            let mut rows: Vec<NodeUse> = Vec::new();
            {
                let mut q = tx
                    .prepare_cached(
                        "SELECT n, COALESCE(MAX(um), 0), COALESCE(MAX(ut), 0), MAX(gm), MAX(gt) FROM (
                            SELECT node AS n, used_micros AS um, used_tokens AS ut, NULL AS gm, NULL AS gt FROM budget_usage_node
                              WHERE scope_type = ?1 AND scope_id = ?2 AND period_start_ms = ?3
                            UNION ALL
                            SELECT node, NULL, NULL, granted_micros, granted_tokens FROM budget_grants
                              WHERE scope_type = ?1 AND scope_id = ?2 AND period_start_ms = ?3
                         ) GROUP BY n",
                    )
                    .map_err(be)?;
                let it = q
                    .query_map(params![st, b.scope_id, i(start)], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            (u(r.get(1)?), r.get::<_, Option<i64>>(3)?.map(u)),
                            (u(r.get(2)?), r.get::<_, Option<i64>>(4)?.map(u)),
                        ))
                    })
                    .map_err(be)?;
                for row in it {
                    rows.push(row.map_err(be)?);
                }
            }
            let (doc, gm, gt) = grant_doc(&b, (start, end), (u(used.0), u(used.1)), rows, node, u64::try_from(active).unwrap_or(1));
            tx.execute(
                "INSERT INTO budget_grants (scope_type, scope_id, period_start_ms, node, granted_micros, granted_tokens)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (scope_type, scope_id, period_start_ms, node) DO UPDATE SET
                    granted_micros = excluded.granted_micros, granted_tokens = excluded.granted_tokens",
                params![st, b.scope_id, i(start), node, i(gm), i(gt)],
            )
            .map_err(be)?;
            out.push(doc);
        }
        tx.commit().map_err(be)?;
        Ok(GrantSnapshot { seq: u(seq), nodes_active: u32::try_from(active).unwrap_or(u32::MAX), budgets: out })
    }

    fn delete_budget(&self, st: ScopeType, id: &str) -> Result<()> {
        let c = self.conn();
        let n = c
            .execute("DELETE FROM budgets WHERE scope_type = ?1 AND scope_id = ?2", params![st.as_str(), id])
            .map_err(be)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no budget for {} '{id}'", st.as_str())));
        }
        Ok(())
    }

    fn reserved(&self, st: ScopeType, id: &str, period_start_ms: u64) -> Result<Used> {
        let c = self.conn();
        let r: (i64, i64) = c
            .query_row(
                "SELECT COALESCE(SUM(MAX(g.granted_micros - COALESCE(u.used_micros, 0), 0)), 0),
                        COALESCE(SUM(MAX(g.granted_tokens - COALESCE(u.used_tokens, 0), 0)), 0)
                 FROM budget_grants g LEFT JOIN budget_usage_node u ON u.scope_type = g.scope_type AND u.scope_id = g.scope_id
                      AND u.period_start_ms = g.period_start_ms AND u.node = g.node
                 WHERE g.scope_type = ?1 AND g.scope_id = ?2 AND g.period_start_ms = ?3",
                params![st.as_str(), id, i(period_start_ms)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(be)?;
        Ok(Used { micros: u(r.0), tokens: u(r.1) })
    }

    fn used(&self, st: ScopeType, id: &str, period_start_ms: u64) -> Result<Used> {
        let c = self.conn();
        let r: Option<(i64, i64)> = c
            .query_row(
                "SELECT used_micros, used_tokens FROM budget_usage WHERE scope_type = ?1 AND scope_id = ?2 AND period_start_ms = ?3",
                params![st.as_str(), id, i(period_start_ms)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(be)?;
        Ok(r.map(|(m, t)| Used { micros: u(m), tokens: u(t) }).unwrap_or_default())
    }

    fn ingest(&self, node: &str, records: &[UsageRecord], raw: Option<&[&str]>, now_ms: u64) -> Result<IngestAck> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(be)?;
        let budgets = load_budgets(&tx)?;
        let mut accepted = 0u64;
        let mut duplicates = 0u64;
        // (budget index, period start) -> a request was refused by it
        let mut touched: HashMap<(usize, u64), bool> = HashMap::new();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO usage (id, node, ts_ms, key_id, team, project, feature, prompt_version, provider, model,
                        status, outcome, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
                        cost_micros, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                )
                .map_err(be)?;
            let mut bump = tx
                .prepare_cached(
                    "INSERT INTO budget_usage (scope_type, scope_id, period_start_ms, used_micros, used_tokens) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (scope_type, scope_id, period_start_ms) DO UPDATE SET
                        used_micros = CASE WHEN used_micros > 9223372036854775807 - excluded.used_micros THEN 9223372036854775807 ELSE used_micros + excluded.used_micros END, used_tokens = CASE WHEN used_tokens > 9223372036854775807 - excluded.used_tokens THEN 9223372036854775807 ELSE used_tokens + excluded.used_tokens END",
                )
                .map_err(be)?;
            let mut bump_node = tx
                .prepare_cached(
                    "INSERT INTO budget_usage_node (scope_type, scope_id, period_start_ms, node, used_micros, used_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (scope_type, scope_id, period_start_ms, node) DO UPDATE SET
                        used_micros = CASE WHEN used_micros > 9223372036854775807 - excluded.used_micros THEN 9223372036854775807 ELSE used_micros + excluded.used_micros END, used_tokens = CASE WHEN used_tokens > 9223372036854775807 - excluded.used_tokens THEN 9223372036854775807 ELSE used_tokens + excluded.used_tokens END",
                )
                .map_err(be)?;
            for (idx, r) in records.iter().enumerate() {
                if r.id.is_empty() {
                    return Err(StoreError::Invalid("a record has an empty id".into()));
                }
                let outcome = serde_json::to_string(&r.outcome).unwrap_or_default();
                let text = match raw.and_then(|raw| raw.get(idx)) {
                    Some(t) => std::borrow::Cow::Borrowed(*t),
                    None => std::borrow::Cow::Owned(serde_json::to_string(r).unwrap_or_default()),
                };
                let n = insert
                    .execute(params![
                        r.id,
                        node,
                        i(r.ts_ms),
                        r.key_id,
                        r.team,
                        r.project,
                        r.feature,
                        r.prompt_version,
                        r.provider,
                        r.model_upstream,
                        r.status,
                        outcome.trim_matches('"'),
                        i(r.usage.input_tokens),
                        i(r.usage.cached_input_tokens),
                        i(r.usage.cache_write_tokens),
                        i(r.usage.output_tokens),
                        i(r.usage.reasoning_tokens),
                        i(r.cost_micros),
                        text.as_ref()
                    ])
                    .map_err(be)?;
                if n == 0 {
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
                    bump.execute(params![b.scope_type.as_str(), b.scope_id, i(start), i(r.cost_micros), i(fx.tokens)])
                        .map_err(be)?;
                    bump_node
                        .execute(params![b.scope_type.as_str(), b.scope_id, i(start), node, i(r.cost_micros), i(fx.tokens)])
                        .map_err(be)?;
                    touched.entry((bi, start)).or_insert(false);
                }
            }
        }
        for ((bi, start), stopped) in &touched {
            let Some(b) = budgets.get(*bi) else { continue };
            let used: (i64, i64) = tx
                .query_row(
                    "SELECT COALESCE(MAX(used_micros), 0), COALESCE(MAX(used_tokens), 0) FROM budget_usage
                     WHERE scope_type = ?1 AND scope_id = ?2 AND period_start_ms = ?3",
                    params![b.scope_type.as_str(), b.scope_id, i(*start)],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(be)?;
            check_thresholds(&tx, b, *start, Used { micros: u(used.0), tokens: u(used.1) }, now_ms, *stopped)?;
        }
        let seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM usage", [], |r| r.get(0)).map_err(be)?;
        tx.commit().map_err(be)?;
        Ok(IngestAck { accepted, duplicates, rejected: Vec::new(), seq: u(seq) })
    }

    fn nodes_active(&self, now_ms: u64, node_ttl_ms: u64) -> Result<u32> {
        let c = self.conn();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM nodes WHERE last_seen_ms >= ?1", [i(now_ms.saturating_sub(node_ttl_ms))], |r| r.get(0))
            .map_err(be)?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    fn seq(&self) -> Result<u64> {
        let c = self.conn();
        let s: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) FROM usage", [], |r| r.get(0)).map_err(be)?;
        Ok(u(s))
    }

    fn spend(&self, f: &SpendFilter) -> Result<SpendTotals> {
        let c = self.conn();
        let mut sql = "SELECT COUNT(*), COALESCE(SUM(input_tokens),0), COALESCE(SUM(cached_input_tokens),0),
                              COALESCE(SUM(output_tokens),0), COALESCE(SUM(cost_micros),0) FROM usage WHERE ts_ms >= ?1 AND ts_ms < ?2"
            .to_string();
        let mut scope_id = String::new();
        if let Some((st, id)) = &f.scope {
            sql.push_str(&format!(" AND {} = ?3", scope_column(*st)));
            scope_id = id.clone();
        }
        let from = i(f.from_ms.unwrap_or(0));
        let to = i(f.to_ms.unwrap_or(u64::MAX));
        let map = |r: &rusqlite::Row| {
            Ok(SpendTotals {
                requests: u(r.get(0)?),
                input_tokens: u(r.get(1)?),
                cached_input_tokens: u(r.get(2)?),
                output_tokens: u(r.get(3)?),
                cost_micros: u(r.get(4)?),
            })
        };
        if f.scope.is_some() {
            c.query_row(&sql, params![from, to, scope_id], map).map_err(be)
        } else {
            c.query_row(&sql, params![from, to], map).map_err(be)
        }
    }

    fn report(&self, q: &crate::reports::ReportQuery) -> Result<Vec<crate::reports::ReportRow>> {
        use rusqlite::types::Value as SqlValue;
        let c = self.conn();
        let mut select: Vec<String> = q.group_by.iter().map(|d| d.column().to_string()).collect();
        let mut group: Vec<String> = select.clone();
        if let Some(b) = q.bucket {
            select.push(format!("(ts_ms / {0}) * {0}", b.ms()));
            group.push(format!("(ts_ms / {0}) * {0}", b.ms()));
        } else {
            select.push("NULL".into());
        }
        let mut sql = format!(
            "SELECT {}, COUNT(*), COALESCE(SUM(input_tokens),0), COALESCE(SUM(cached_input_tokens),0), COALESCE(SUM(output_tokens),0),
                    COALESCE(SUM(cost_micros),0),
                    COALESCE(SUM(CASE WHEN outcome IN ('provider_error','upstream_cut') THEN 1 ELSE 0 END),0),
                    COALESCE(SUM(CASE WHEN status = 429 THEN 1 ELSE 0 END),0)
             FROM usage WHERE ts_ms >= ?1 AND ts_ms < ?2",
            select.join(", ")
        );
        let mut args: Vec<SqlValue> = vec![SqlValue::Integer(i(q.from_ms)), SqlValue::Integer(i(q.to_ms))];
        for (d, v) in &q.filters {
            args.push(SqlValue::Text(v.clone()));
            sql.push_str(&format!(" AND {} = ?{}", d.column(), args.len()));
        }
        if !group.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
        }
        // Columns (1-based): dims 1..=n, bucket n+1, then count, input, cached, output, cost (n+6).
        let cost_col = q.group_by.len() + 6;
        if q.bucket.is_some() {
            sql.push_str(&format!(" ORDER BY {} ASC, {cost_col} DESC", q.group_by.len() + 1));
        } else {
            sql.push_str(&format!(" ORDER BY {cost_col} DESC"));
            if let Some(t) = q.top {
                sql.push_str(&format!(" LIMIT {t}"));
            }
        }
        let n = q.group_by.len();
        let mut stmt = c.prepare(&sql).map_err(be)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                let mut g = Vec::with_capacity(n);
                for k in 0..n {
                    g.push(r.get::<_, Option<String>>(k)?);
                }
                Ok(crate::reports::ReportRow {
                    group: g,
                    bucket_start_ms: r.get::<_, Option<i64>>(n)?.map(u),
                    requests: u(r.get(n + 1)?),
                    input_tokens: u(r.get(n + 2)?),
                    cached_input_tokens: u(r.get(n + 3)?),
                    output_tokens: u(r.get(n + 4)?),
                    cost_micros: u(r.get(n + 5)?),
                    errors: u(r.get(n + 6)?),
                    rate_limited: u(r.get(n + 7)?),
                })
            })
            .map_err(be)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)
    }

    fn create_request(&self, r: &IncreaseRequest) -> Result<IncreaseRequest> {
        let c = self.conn();
        c.execute(
            "INSERT INTO budget_requests (scope_type, scope_id, limit_micros, limit_tokens, justification, requested_by, created_ms, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
            params![r.scope_type.as_str(), r.scope_id, r.limit_micros.map(i), r.limit_tokens.map(i), r.justification, r.requested_by, i(r.created_ms)],
        )
        .map_err(be)?;
        let id = c.last_insert_rowid();
        c.query_row(&format!("SELECT {REQ_COLS} FROM budget_requests WHERE id = ?1"), [id], request_from_row).map_err(be)
    }

    fn list_requests(&self, status: Option<&str>) -> Result<Vec<IncreaseRequest>> {
        let c = self.conn();
        let mut s = c
            .prepare_cached(&format!("SELECT {REQ_COLS} FROM budget_requests WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC"))
            .map_err(be)?;
        let rows = s.query_map([status], request_from_row).map_err(be)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)
    }

    fn get_request(&self, id: i64) -> Result<Option<IncreaseRequest>> {
        let c = self.conn();
        c.query_row(&format!("SELECT {REQ_COLS} FROM budget_requests WHERE id = ?1"), [id], request_from_row).optional().map_err(be)
    }

    fn decide_request(&self, id: i64, approve: bool, by: &str, note: Option<&str>, now_ms: u64) -> Result<IncreaseRequest> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(be)?;
        let n = tx
            .execute(
                "UPDATE budget_requests SET status = ?2, decided_by = ?3, decided_ms = ?4, note = ?5 WHERE id = ?1 AND status = 'pending'",
                params![id, if approve { "approved" } else { "refused" }, by, i(now_ms), note],
            )
            .map_err(be)?;
        let row = tx.query_row(&format!("SELECT {REQ_COLS} FROM budget_requests WHERE id = ?1"), [id], request_from_row).optional().map_err(be)?;
        let r = match (n, row) {
            (1, Some(r)) => r,
            (_, Some(r)) => return Err(StoreError::Conflict(format!("request {id} was already {}", r.status))),
            (_, None) => return Err(StoreError::NotFound(format!("no budget request {id}"))),
        };
        if approve {
            let current = tx
                .query_row(
                    &format!("SELECT {BUDGET_COLS} FROM budgets WHERE scope_type = ?1 AND scope_id = ?2"),
                    params![r.scope_type.as_str(), r.scope_id],
                    budget_from_row,
                )
                .optional()
                .map_err(be)?;
            put_budget_tx(&tx, &Budget::approved(current, &r, now_ms), now_ms)?;
        }
        tx.commit().map_err(be)?;
        Ok(r)
    }

    fn list_alerts(&self, limit: u32) -> Result<Vec<AlertRow>> {
        let c = self.conn();
        let mut s = c.prepare_cached(&format!("SELECT {ALERT_COLS} FROM alerts ORDER BY id DESC LIMIT ?1")).map_err(be)?;
        let rows = s.query_map([limit], alert_from_row).map_err(be)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)
    }

    fn due_alerts(&self, now_ms: u64) -> Result<Vec<AlertRow>> {
        let c = self.conn();
        let mut s = c
            .prepare_cached(&format!(
                "SELECT {ALERT_COLS} FROM alerts WHERE delivered_ms IS NULL AND next_attempt_ms <= ?1 AND attempts < 50 ORDER BY id LIMIT 100"
            ))
            .map_err(be)?;
        let rows = s.query_map([i(now_ms)], alert_from_row).map_err(be)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)
    }

    fn alert_attempted(&self, id: i64, ok: bool, error: Option<&str>, next_attempt_ms: u64, now_ms: u64) -> Result<()> {
        let c = self.conn();
        c.execute(
            "UPDATE alerts SET attempts = attempts + 1, delivered_ms = CASE WHEN ?2 THEN ?5 ELSE NULL END,
                               last_error = ?3, next_attempt_ms = ?4 WHERE id = ?1",
            params![id, ok, error, i(next_attempt_ms), i(now_ms)],
        )
        .map_err(be)?;
        Ok(())
    }
}
