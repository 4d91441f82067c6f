//! Virtual keys: stored by hash, found by id or through the hash's unique index.

use tollgate_protocol::state::{KeyChange, KeyChanges, KeyDoc};

use crate::db::{int, opt_int, params, statement_chunks, values, Arg, Tx};
use crate::store::*;

use super::rows::{self, KEY_COLS};

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub fn create(tx: &mut dyn Tx, k: &KeyRow) -> Result<()> {
    create_many(tx, std::slice::from_ref(k))
}

/// Creates keys all or none, up to `db::ROWS_PER_STATEMENT` to a statement (a
/// million keys on PostgreSQL were two round trips a key, 5,000 keys a
/// second). A clash with a key made before, or two keys of the batch with
/// one id or hash, names the key.
///
/// Each statement inserts first, under a savepoint, and looks for the
/// clashing key only when the unique indexes refused a row: the insert
/// reads those indexes anyway, and a separate check before every statement
/// read them twice (a million keys took 42 s on SQLite instead of 23 s, and
/// cost 39 ms a statement on PostgreSQL). The savepoint keeps PostgreSQL's
/// transaction usable after the refusal, for the query that names the key.
/// The caller's transaction serialises key changes (`TxKind::Keys`).
pub fn create_many(tx: &mut dyn Tx, batch: &[KeyRow]) -> Result<()> {
    let mut ids = std::collections::HashSet::with_capacity(batch.len());
    let mut hashes = std::collections::HashSet::with_capacity(batch.len());
    if let Some(k) = batch.iter().find(|k| !ids.insert(k.id.as_str()) || !hashes.insert(k.key_hash.as_str())) {
        return Err(StoreError::Conflict(format!("key '{}' appears twice in the batch (its id or its hash)", k.id)));
    }
    for chunk in statement_chunks(batch) {
        let n = chunk.len();
        let json_cols: Vec<(Option<String>, String, String)> = chunk.iter().map(|k| (k.models.as_ref().map(json), json(&k.projects), json(&k.tags))).collect();
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(n * 9);
        for (k, (models, projects, tags)) in chunk.iter().zip(&json_cols) {
            args.extend([
                (&k.id).into(),
                (&k.key_hash).into(),
                (&k.team).into(),
                (&k.project).into(),
                models.as_deref().into(),
                projects.into(),
                tags.into(),
                int(k.created_ms),
                opt_int(k.revoked_ms),
            ]);
        }
        tx.execute("SAVEPOINT key_batch", &[])?;
        match tx.execute(&format!("INSERT INTO keys ({KEY_COLS}) VALUES {}", values(n, 9)), &args) {
            Ok(_) => tx.execute("RELEASE SAVEPOINT key_batch", &[])?,
            Err(StoreError::Conflict(refused)) => {
                tx.execute("ROLLBACK TO SAVEPOINT key_batch", &[])?;
                return Err(taken(tx, chunk)?.map_or(StoreError::Conflict(refused), |id| clash(&id)));
            }
            Err(e) => return Err(e),
        };
        // Numbered in the batch's order.
        let args: Vec<Arg<'_>> = chunk.iter().map(|k| (&k.key_hash).into()).collect();
        tx.execute(&format!("INSERT INTO key_events (key_hash) VALUES {}", values(n, 1)), &args)?;
    }
    Ok(())
}

/// The id of `chunk`'s key that an existing key clashes with: the same id,
/// or else the same hash (each list read on its own unique index: with
/// `OR … LIMIT 1` PostgreSQL expected an early match and scanned the table).
fn taken(tx: &mut dyn Tx, chunk: &[KeyRow]) -> Result<Option<String>> {
    let n = chunk.len();
    let mut args: Vec<Arg<'_>> = chunk.iter().map(|k| (&k.id).into()).collect();
    args.extend(chunk.iter().map(|k| Arg::from(&k.key_hash)));
    let found = tx.query(
        &format!(
            "SELECT id, key_hash FROM keys WHERE id IN ({}) UNION ALL SELECT id, key_hash FROM keys WHERE key_hash IN ({})",
            params(1, n),
            params(n + 1, n)
        ),
        &args,
    )?;
    let Some(r) = found.first() else { return Ok(None) };
    let (id, hash) = (r.text(0)?, r.text(1)?);
    let k = chunk.iter().find(|k| k.id == id).or_else(|| chunk.iter().find(|k| k.key_hash == hash));
    Ok(Some(k.map_or(id, |k| k.id.clone())))
}

fn clash(id: &str) -> StoreError {
    StoreError::Conflict(format!("a key with id '{id}' (or this key's hash) already exists"))
}

/// Numbers a change of the key with this hash (see `changes`).
fn changed(tx: &mut dyn Tx, key_hash: &str) -> Result<()> {
    tx.execute("INSERT INTO key_events (key_hash) VALUES (?1)", &[key_hash.into()]).map(|_| ())
}

/// The key-change sequence.
pub const SEQ: &str = "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM key_events";

/// The changes after `since`, oldest first, at most `limit`, each as the
/// key set is now: a live key with the hash is a Put, none is a Del.
pub fn changes(tx: &mut dyn Tx, since: u64, limit: u32) -> Result<KeyChanges> {
    let cols = KEY_COLS.split(", ").map(|c| format!("k.{c}")).collect::<Vec<_>>().join(", ");
    let rows = tx.query(
        &format!(
            "SELECT e.seq, e.key_hash, {cols} FROM key_events e
             LEFT JOIN keys k ON k.key_hash = e.key_hash AND k.revoked_ms IS NULL
             WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2"
        ),
        &[int(since), Arg::Int(i64::from(limit))],
    )?;
    let mut out = KeyChanges { seq: since, more: rows.len() >= limit as usize, changes: Vec::with_capacity(rows.len()) };
    for r in &rows {
        out.seq = r.u64(0)?;
        let change = match r.opt_text(2)? {
            Some(_) => {
                let k = rows::key(&crate::db::Row(r.0[2..].to_vec()))?;
                KeyChange::Put {
                    key: KeyDoc { id: k.id, key_hash: k.key_hash, team: k.team, project: k.project, models: k.models, projects: k.projects, tags: k.tags },
                }
            }
            None => KeyChange::Del { key_hash: r.text(1)? },
        };
        out.changes.push(change);
    }
    Ok(out)
}

/// At most `limit` keys in the order they were made, after the key `after`
/// (keys are never deleted, so a page's last id always names its place).
pub fn page(tx: &mut dyn Tx, after: Option<&str>, limit: usize) -> Result<Vec<KeyRow>> {
    let limit = int(limit as u64);
    let found = match after {
        None => tx.query(&format!("SELECT {KEY_COLS} FROM keys ORDER BY created_ms, id LIMIT ?1"), &[limit])?,
        Some(id) => tx.query(
            &format!(
                "SELECT {KEY_COLS} FROM keys WHERE (created_ms, id) > ((SELECT created_ms FROM keys WHERE id = ?1), ?1)
                 ORDER BY created_ms, id LIMIT ?2"
            ),
            &[id.into(), limit],
        )?,
    };
    rows::all(found, rows::key)
}

pub fn count(tx: &mut dyn Tx) -> Result<u64> {
    tx.query_one("SELECT COUNT(*) FROM keys", &[])?.u64(0)
}

pub fn by_id(tx: &mut dyn Tx, id: &str) -> Result<Option<KeyRow>> {
    tx.query_opt(&format!("SELECT {KEY_COLS} FROM keys WHERE id = ?1"), &[id.into()])?.as_ref().map(rows::key).transpose()
}

pub fn by_hash(tx: &mut dyn Tx, key_hash: &str) -> Result<Option<KeyRow>> {
    tx.query_opt(&format!("SELECT {KEY_COLS} FROM keys WHERE key_hash = ?1 AND revoked_ms IS NULL"), &[key_hash.into()])?
        .as_ref()
        .map(rows::key)
        .transpose()
}

pub fn revoke(tx: &mut dyn Tx, id: &str, now_ms: u64) -> Result<()> {
    let Some(k) = by_id(tx, id)? else {
        return Err(StoreError::NotFound(format!("no key with id '{id}'")));
    };
    if k.revoked_ms.is_none() {
        tx.execute("UPDATE keys SET revoked_ms = ?2 WHERE id = ?1", &[id.into(), int(now_ms)])?;
        changed(tx, &k.key_hash)?;
    }
    Ok(())
}

pub fn set_hash(tx: &mut dyn Tx, id: &str, key_hash: &str) -> Result<()> {
    let old = match by_id(tx, id)? {
        Some(k) if k.revoked_ms.is_none() => k.key_hash,
        _ => return Err(StoreError::NotFound(format!("no active key with id '{id}'"))),
    };
    tx.execute("UPDATE keys SET key_hash = ?2 WHERE id = ?1", &[id.into(), Arg::Text(key_hash)])?;
    // The old hash stops working, the new one starts.
    changed(tx, &old)?;
    changed(tx, key_hash)
}
