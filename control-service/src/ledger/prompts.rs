//! The prompt registry in the ledger: versions (immutable, numbered per
//! prompt, one per distinct content), labels (moved, never edited in
//! place), and the change log that numbers every change (the Envoys'
//! `prompts_seq`).

use std::collections::BTreeMap;

use tollgate_protocol::prompts::{content_hash, PromptContent, PromptDoc, PromptsDoc, VersionDoc};

use crate::db::{int, opt_int, Row, Tx};
use crate::store::*;

fn log(tx: &mut dyn Tx, name: &str, what: &str, version: Option<u32>, label: Option<&str>, by: &str, now_ms: u64) -> Result<u64> {
    let seq = seq(tx)? + 1;
    tx.execute(
        "INSERT INTO prompt_events (seq, name, what, version, label, ts_ms, by_whom) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &[int(seq), name.into(), what.into(), opt_int(version.map(u64::from)), label.into(), int(now_ms), by.into()],
    )?;
    Ok(seq)
}

/// The registry's change number (0: empty).
pub const SEQ: &str = "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM prompt_events";

fn seq(tx: &mut dyn Tx) -> Result<u64> {
    tx.query_one(SEQ, &[])?.u64(0)
}

fn version_row(r: &Row) -> Result<PromptVersion> {
    let content: PromptContent = serde_json::from_str(&r.text(2)?).map_err(|e| StoreError::Backend(format!("stored prompt content: {e}")))?;
    Ok(PromptVersion {
        version: u32::try_from(r.u64(0)?).unwrap_or(u32::MAX),
        hash: r.text(1)?,
        content,
        created_ms: r.u64(3)?,
        created_by: r.text(4)?,
        note: r.opt_text(5)?,
    })
}

const VERSION_COLS: &str = "version, hash, content, created_ms, created_by, note";

/// Stores `content` as the next version of `name`, unless a version has the
/// same content (then that one; `false`). Content is validated by the caller.
pub fn add_version(tx: &mut dyn Tx, name: &str, content: &PromptContent, by: &str, note: Option<&str>, now_ms: u64) -> Result<(PromptVersion, bool)> {
    let hash = content_hash(content);
    if let Some(r) = tx.query_opt(&format!("SELECT {VERSION_COLS} FROM prompt_versions WHERE name = ?1 AND hash = ?2"), &[name.into(), hash.as_str().into()])? {
        return Ok((version_row(&r)?, false));
    }
    let version = tx.query_one("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM prompt_versions WHERE name = ?1", &[name.into()])?.u64(0)? + 1;
    let text = serde_json::to_string(content).map_err(|e| StoreError::Backend(e.to_string()))?;
    tx.execute(
        &format!("INSERT INTO prompt_versions ({VERSION_COLS}, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        &[int(version), hash.as_str().into(), text.as_str().into(), int(now_ms), by.into(), note.into(), name.into()],
    )?;
    let v = u32::try_from(version).map_err(|_| StoreError::Invalid("too many versions".into()))?;
    log(tx, name, "version", Some(v), None, by, now_ms)?;
    Ok((PromptVersion { version: v, hash, content: content.clone(), created_ms: now_ms, created_by: by.to_string(), note: note.map(str::to_string) }, true))
}

/// Points `label` of `name` at `version` (which must exist).
pub fn set_label(tx: &mut dyn Tx, name: &str, label: &str, version: u32, by: &str, now_ms: u64) -> Result<()> {
    let v = int(u64::from(version));
    if tx.query_opt("SELECT version FROM prompt_versions WHERE name = ?1 AND version = ?2", &[name.into(), v])?.is_none() {
        return Err(StoreError::NotFound(format!("prompt '{name}' has no version {version}")));
    }
    tx.execute(
        "INSERT INTO prompt_labels (name, label, version, updated_ms, updated_by) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name, label) DO UPDATE SET version = excluded.version, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
        &[name.into(), label.into(), v, int(now_ms), by.into()],
    )?;
    log(tx, name, "label", Some(version), Some(label), by, now_ms)?;
    Ok(())
}

fn labels(tx: &mut dyn Tx, name: Option<&str>) -> Result<Vec<(String, String, u32)>> {
    let rows = match name {
        Some(n) => tx.query("SELECT name, label, version FROM prompt_labels WHERE name = ?1 ORDER BY label", &[n.into()])?,
        None => tx.query("SELECT name, label, version FROM prompt_labels ORDER BY name, label", &[])?,
    };
    rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?, u32::try_from(r.u64(2)?).unwrap_or(u32::MAX)))).collect()
}

/// One prompt: its versions (oldest first), labels and change log.
pub fn get(tx: &mut dyn Tx, name: &str) -> Result<Option<PromptView>> {
    let versions =
        tx.query(&format!("SELECT {VERSION_COLS} FROM prompt_versions WHERE name = ?1 ORDER BY version"), &[name.into()])?.iter().map(version_row).collect::<Result<Vec<_>>>()?;
    if versions.is_empty() {
        return Ok(None);
    }
    let labels = labels(tx, Some(name))?.into_iter().map(|(_, l, v)| (l, v)).collect();
    let history = tx
        .query("SELECT seq, what, version, label, ts_ms, by_whom FROM prompt_events WHERE name = ?1 ORDER BY seq", &[name.into()])?
        .iter()
        .map(|r| {
            Ok(PromptEvent {
                seq: r.u64(0)?,
                what: r.text(1)?,
                version: r.opt_u64(2)?.and_then(|v| u32::try_from(v).ok()),
                label: r.opt_text(3)?,
                ts_ms: r.u64(4)?,
                by: r.text(5)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(PromptView { name: name.to_string(), versions, labels, history }))
}

/// Every prompt: name, newest version, labels, last change.
pub fn list(tx: &mut dyn Tx) -> Result<Vec<PromptSummary>> {
    let mut out: Vec<PromptSummary> = tx
        .query(
            "SELECT v.name, CAST(MAX(v.version) AS BIGINT), CAST(MAX(e.ts_ms) AS BIGINT) FROM prompt_versions v
             JOIN prompt_events e ON e.name = v.name GROUP BY v.name ORDER BY v.name",
            &[],
        )?
        .iter()
        .map(|r| Ok(PromptSummary { name: r.text(0)?, latest: u32::try_from(r.u64(1)?).unwrap_or(u32::MAX), labels: BTreeMap::new(), updated_ms: r.u64(2)? }))
        .collect::<Result<Vec<_>>>()?;
    for (name, label, v) in labels(tx, None)? {
        if let Some(p) = out.iter_mut().find(|p| p.name == name) {
            p.labels.insert(label, v);
        }
    }
    Ok(out)
}

/// Everything the Envoys render from.
pub fn current(tx: &mut dyn Tx) -> Result<PromptsDoc> {
    let seq = seq(tx)?;
    let mut prompts: Vec<PromptDoc> = Vec::new();
    for r in tx.query(&format!("SELECT {VERSION_COLS}, name FROM prompt_versions ORDER BY name, version"), &[])?.iter() {
        let name = r.text(6)?;
        let v = version_row(r)?;
        let doc = VersionDoc { version: v.version, hash: v.hash, content: v.content };
        match prompts.last_mut() {
            Some(p) if p.name == name => p.versions.push(doc),
            _ => prompts.push(PromptDoc { name, versions: vec![doc], labels: BTreeMap::new() }),
        }
    }
    for (name, label, v) in labels(tx, None)? {
        if let Some(p) = prompts.iter_mut().find(|p| p.name == name) {
            p.labels.insert(label, v);
        }
    }
    Ok(PromptsDoc { seq, prompts })
}
