//! Usage records in: stored once by id, counted against every budget they
//! fall under, thresholds checked, all in the caller's transaction.

use std::collections::HashMap;

use tollgate_protocol::record::UsageRecord;
use tollgate_protocol::state::IngestAck;

use crate::db::{int, Arg, Tx};
use crate::store::*;

use super::budgets;

/// The ingest sequence: every batch up to it is counted.
pub fn seq(tx: &mut dyn Tx) -> Result<u64> {
    tx.query_one("SELECT seq FROM ingest_seq", &[])?.u64(0)
}

const INSERT: &str = "INSERT INTO usage (id, seq, node, ts_ms, key_id, team, project, feature, prompt_version, provider, model,
        status, outcome, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_micros, record)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) ON CONFLICT (id) DO NOTHING";

/// Adds to a period's use, saturating at i64::MAX (records are bounded,
/// sums of many are not).
const BUMP: &str = "INSERT INTO budget_usage (scope_type, scope_id, period_start_ms, used_micros, used_tokens) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (scope_type, scope_id, period_start_ms) DO UPDATE SET
        used_micros = CASE WHEN budget_usage.used_micros > 9223372036854775807 - excluded.used_micros THEN 9223372036854775807 ELSE budget_usage.used_micros + excluded.used_micros END,
        used_tokens = CASE WHEN budget_usage.used_tokens > 9223372036854775807 - excluded.used_tokens THEN 9223372036854775807 ELSE budget_usage.used_tokens + excluded.used_tokens END";

const BUMP_NODE: &str = "INSERT INTO budget_usage_node (scope_type, scope_id, period_start_ms, node, used_micros, used_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT (scope_type, scope_id, period_start_ms, node) DO UPDATE SET
        used_micros = CASE WHEN budget_usage_node.used_micros > 9223372036854775807 - excluded.used_micros THEN 9223372036854775807 ELSE budget_usage_node.used_micros + excluded.used_micros END,
        used_tokens = CASE WHEN budget_usage_node.used_tokens > 9223372036854775807 - excluded.used_tokens THEN 9223372036854775807 ELSE budget_usage_node.used_tokens + excluded.used_tokens END";

/// Stores a batch (idempotent by record id) and counts it. `raw[i]`, when
/// given, is the JSON text `records[i]` was parsed from (stored as is).
pub fn batch(tx: &mut dyn Tx, node: &str, records: &[UsageRecord], raw: Option<&[&str]>, now_ms: u64) -> Result<IngestAck> {
    // The counter row's lock orders ingest transactions (across replicas on PostgreSQL).
    let seq = tx.query_one("UPDATE ingest_seq SET seq = seq + 1 RETURNING seq", &[])?.u64(0)?;
    let budgets = budgets::list(tx)?;
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    // (budget index, period start) -> a request was refused by it
    let mut touched: HashMap<(usize, u64), bool> = HashMap::new();
    for (idx, r) in records.iter().enumerate() {
        if r.id.is_empty() {
            return Err(StoreError::Invalid("a record has an empty id".into()));
        }
        let text = match raw.and_then(|raw| raw.get(idx)) {
            Some(t) => std::borrow::Cow::Borrowed(*t),
            None => std::borrow::Cow::Owned(serde_json::to_string(r).unwrap_or_default()),
        };
        let n = tx.execute(
            INSERT,
            &[
                (&r.id).into(),
                int(seq),
                node.into(),
                int(r.ts_ms),
                (&r.key_id).into(),
                (&r.team).into(),
                (&r.project).into(),
                (&r.feature).into(),
                (&r.prompt_version).into(),
                (&r.provider).into(),
                (&r.model_upstream).into(),
                Arg::Int(i64::from(r.status)),
                r.outcome.as_str().into(),
                int(r.usage.input_tokens),
                int(r.usage.cached_input_tokens),
                int(r.usage.cache_write_tokens),
                int(r.usage.output_tokens),
                int(r.usage.reasoning_tokens),
                int(r.cost_micros),
                text.as_ref().into(),
            ],
        )?;
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
            let (st, id) = (b.scope_type.as_str().into(), (&b.scope_id).into());
            tx.execute(BUMP, &[st, id, int(start), int(r.cost_micros), int(fx.tokens)])?;
            tx.execute(BUMP_NODE, &[st, id, int(start), node.into(), int(r.cost_micros), int(fx.tokens)])?;
            touched.entry((bi, start)).or_insert(false);
        }
    }
    for ((bi, start), stopped) in &touched {
        let Some(b) = budgets.get(*bi) else { continue };
        let used = budgets::used(tx, b.scope_type, &b.scope_id, *start)?;
        budgets::thresholds(tx, b, *start, used, now_ms, *stopped)?;
    }
    Ok(IngestAck { accepted, duplicates, rejected: Vec::new(), seq })
}
