//! Virtual keys: stored by hash, found by id or through the hash's unique index.

use crate::db::{int, opt_int, Arg, Tx};
use crate::store::*;

use super::rows::{self, KEY_COLS};

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub fn create(tx: &mut dyn Tx, k: &KeyRow) -> Result<()> {
    let models = k.models.as_ref().map(json);
    let (projects, tags) = (json(&k.projects), json(&k.tags));
    let res = tx.execute(
        &format!("INSERT INTO keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        &[
            (&k.id).into(),
            (&k.key_hash).into(),
            (&k.team).into(),
            (&k.project).into(),
            models.as_deref().into(),
            (&projects).into(),
            (&tags).into(),
            int(k.created_ms),
            opt_int(k.revoked_ms),
        ],
    );
    match res {
        Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!("a key with id '{}' (or this key's hash) already exists", k.id))),
        other => other.map(|_| ()),
    }
}

pub fn list(tx: &mut dyn Tx) -> Result<Vec<KeyRow>> {
    rows::all(tx.query(&format!("SELECT {KEY_COLS} FROM keys ORDER BY created_ms, id"), &[])?, rows::key)
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
    let n = tx.execute("UPDATE keys SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1", &[id.into(), int(now_ms)])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("no key with id '{id}'")));
    }
    Ok(())
}

pub fn set_hash(tx: &mut dyn Tx, id: &str, key_hash: &str) -> Result<()> {
    let n = tx.execute("UPDATE keys SET key_hash = ?2 WHERE id = ?1 AND revoked_ms IS NULL", &[id.into(), Arg::Text(key_hash)])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("no active key with id '{id}'")));
    }
    Ok(())
}
