//! Usage records in: stored once by id, counted against every budget they
//! fall under, thresholds checked, all in the caller's transaction.

use std::collections::{HashMap, HashSet};

use tollgate_protocol::record::UsageRecord;
use tollgate_protocol::state::{IngestAck, ScopeType};

use crate::db::{int, statement_chunks, Arg, Arrays, Col, Tx, ROWS_PER_STATEMENT};
use crate::store::*;

use super::budget_cache::BudgetCache;
use super::budgets;

/// The ingest sequence: every batch up to it is counted.
pub const SEQ: &str = "SELECT seq FROM ingest_seq";

pub fn seq(tx: &mut dyn Tx) -> Result<u64> {
    tx.query_one(SEQ, &[])?.u64(0)
}

const COLUMNS: &str = "id, seq, node, ts_ms, key_id, team, project, feature, prompt_version, provider, model,
        status, outcome, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_micros, record,
        cache_reported_input_tokens, cache_savings_micros, session_id";
/// Arguments per record: a full statement of `ROWS_PER_STATEMENT` records,
/// one round trip per 500, binds 11,500 (below SQLite's 32,766 and
/// PostgreSQL's 65,535).
const PER_ROW: usize = 23;

/// The types of `COLUMNS`, in order.
const TYPES: [Col; PER_ROW] = {
    use Col::{Int as I, Text as T};
    [T, I, T, I, T, T, T, T, T, T, T, I, T, I, I, I, I, I, I, T, I, I, T]
};

/// The INSERT of any number of records as one array per column (where
/// [`Tx::takes_arrays`]). A chunk of 500 records with a budget on each of
/// 10,000 keys (the ingest_bench example, PostgreSQL, 2 cores, six rounds
/// alternated with the VALUES list): 49.5k against 50.7k records/s, every
/// round ahead; with three budgets 70.5k against 73.1k.
fn array_insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| crate::db::array_insert_sql(&format!("usage ({COLUMNS})"), "ON CONFLICT (id) DO NOTHING", &TYPES))
}

/// Stores rows of `PER_ROW` arguments (`args`, in `COLUMNS` order): one
/// array per column where the database takes arrays, else one VALUES
/// list (built once for a full chunk). The rows it stored.
fn insert_rows(tx: &mut dyn Tx, args: &[Arg<'_>]) -> Result<u64> {
    if tx.takes_arrays() {
        return crate::db::insert_arrays(tx, array_insert_sql(), &TYPES, args);
    }
    let rows = args.len() / PER_ROW;
    let sql = if rows == ROWS_PER_STATEMENT { std::borrow::Cow::Borrowed(full_insert_sql()) } else { insert_sql(rows).into() };
    tx.execute(&sql, args)
}

/// Which of `n` ids (`?2`…) this batch (`?1`, its seq) stored.
fn stored_now_sql(n: usize) -> String {
    let marks: Vec<String> = (2..=n + 1).map(|i| format!("?{i}")).collect();
    format!("SELECT id FROM usage WHERE seq = ?1 AND id IN ({})", marks.join(", "))
}

/// The INSERT of a full chunk, built once (11,500 placeholders).
fn full_insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| insert_sql(ROWS_PER_STATEMENT))
}

/// One INSERT for `rows` records; a record whose id is stored already is
/// skipped. (Not `RETURNING id`: on SQLite it costs a fifth of the ingest
/// rate. When the INSERT stored fewer rows than it was given, the ones it
/// stored are those carrying this batch's seq.)
fn insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO usage ({COLUMNS}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..PER_ROW {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", r * PER_ROW + c + 1));
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    sql
}

/// A batch's mark on its rows: random in [2^40, 2^62), above every batch
/// number written before marks were random.
fn batch_mark() -> Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| StoreError::Backend(format!("no randomness for a batch mark: {e}")))?;
    Ok((u64::from_le_bytes(b) >> 2) | (1 << 40))
}

/// Adds to periods' use, saturating at i64::MAX (records are bounded,
/// sums of many are not); `{rows}` are `(scope_type, scope_id,
/// period_start_ms, micros, tokens)` ([`bump_rows`]). Returns each period's use after it.
/// No indexed column changes: on PostgreSQL a heap-only update (which
/// periods changed is in `budget_use_log`, see `LOG_USE`).
const BUMP: &str = "INSERT INTO budget_usage (scope_type, scope_id, period_start_ms, used_micros, used_tokens) {rows}
     ON CONFLICT (scope_type, scope_id, period_start_ms) DO UPDATE SET
        used_micros = CASE WHEN budget_usage.used_micros > 9223372036854775807 - excluded.used_micros THEN 9223372036854775807 ELSE budget_usage.used_micros + excluded.used_micros END,
        used_tokens = CASE WHEN budget_usage.used_tokens > 9223372036854775807 - excluded.used_tokens THEN 9223372036854775807 ELSE budget_usage.used_tokens + excluded.used_tokens END
     RETURNING scope_type, scope_id, period_start_ms, used_micros, used_tokens";

/// The same for this Envoy's part (`?1` the node): `{rows}` are
/// `(scope_type, scope_id, period_start_ms, ?1, micros, tokens)`.
const BUMP_NODE: &str = "INSERT INTO budget_usage_node (scope_type, scope_id, period_start_ms, node, used_micros, used_tokens) {rows}
     ON CONFLICT (scope_type, scope_id, period_start_ms, node) DO UPDATE SET
        used_micros = CASE WHEN budget_usage_node.used_micros > 9223372036854775807 - excluded.used_micros THEN 9223372036854775807 ELSE budget_usage_node.used_micros + excluded.used_micros END,
        used_tokens = CASE WHEN budget_usage_node.used_tokens > 9223372036854775807 - excluded.used_tokens THEN 9223372036854775807 ELSE budget_usage_node.used_tokens + excluded.used_tokens END";

/// Periods above which [`bump`] sends column arrays where it can. A batch
/// of 500 records with a budget on each of 10,000 keys (about 490 periods,
/// ten VALUES statements, two with arrays; the ingest_bench example,
/// PostgreSQL, 2 cores, alternated): 55.8k -> 58.4k records/s, every one of
/// six rounds ahead. With three budgets (three periods) arrays measured
/// 1.5 % slower than two small VALUES statements, hence the floor.
const ARRAYS_FROM: usize = 16;

/// A budget period a batch adds to: (scope type, scope id, period start), micros, tokens.
type Bump<'a> = ((ScopeType, &'a str, u64), u64, u64);

/// Adds a batch's amounts (`bumps`, in scope order) to its budget
/// periods: a few multi-row statements, not three a budget (a batch over
/// 500 keys with a budget each was 1,500 round trips to PostgreSQL: 2,073
/// records/s). The use of each period after it. Run before the batch takes
/// the counting lock (see [`batch`]). (Sending the statements pipelined,
/// one round trip for all, measured no gain on PostgreSQL: 41.2k/45.0k
/// records/s against 43.6k/44.7k sent one by one; not kept.)
fn bump(tx: &mut dyn Tx, node: &str, bumps: &[Bump<'_>]) -> Result<HashMap<(ScopeType, String, u64), Used>> {
    let mut after = HashMap::with_capacity(bumps.len());
    // Per-key budgets first (`Key` sorts first), then the shared ones
    // (teams, projects: in nearly every batch), each Envoy's part before
    // the total: every batch locks rows in this one order (no deadlock
    // between batches), and the rows nearly every batch locks are locked
    // last, so a concurrent batch waits for them only from there to commit.
    let shared = bumps.partition_point(|((t, _, _), _, _)| *t == ScopeType::Key);
    let (keys, others) = bumps.split_at(shared);
    for part in [keys, others] {
        // Many periods (the keys' budgets of a batch over many keys): a
        // part in one statement each, a column array per value, whatever
        // its size. A few (the teams' and projects'), or SQLite: a VALUES
        // list in chunks of the sizes statements are cached for.
        let arrays = tx.takes_arrays() && part.len() > ARRAYS_FROM;
        let chunks: Vec<&[Bump<'_>]> = if arrays { vec![part] } else { statement_chunks(part).collect() };
        for chunk in &chunks {
            let (sql, args) = bump_rows(BUMP_NODE, chunk, Some(node), arrays)?;
            tx.execute(&sql, &args.args())?;
        }
        for chunk in &chunks {
            let (sql, args) = bump_rows(BUMP, chunk, None, arrays)?;
            for r in tx.query(&sql, &args.args())? {
                after.insert((super::rows::scope(&r.text(0)?)?, r.text(1)?, r.u64(2)?), Used { micros: r.u64(3)?, tokens: r.u64(4)? });
            }
        }
    }
    Ok(after)
}

/// The arguments of a [`BUMP`] or [`BUMP_NODE`] statement: a row's five
/// values each, or (where the database takes arrays) one array per column.
enum BumpArgs<'a> {
    Rows(Vec<Arg<'a>>),
    Columns { node: Option<&'a str>, arrays: Arrays<'a> },
}

impl BumpArgs<'_> {
    fn args(&self) -> std::borrow::Cow<'_, [Arg<'_>]> {
        match self {
            BumpArgs::Rows(args) => std::borrow::Cow::Borrowed(args),
            BumpArgs::Columns { node, arrays } => node.iter().map(|n| Arg::Text(n)).chain(arrays.args()).collect::<Vec<_>>().into(),
        }
    }
}

/// The types of a bump's row (`bump_args` without the node).
const BUMP_TYPES: [Col; 5] = [Col::Text, Col::Text, Col::Int, Col::Int, Col::Int];

/// `template` ([`BUMP`], [`BUMP_NODE`]) for `chunk`, after `node` when
/// given: one VALUES row per period, or a SELECT from `unnest` of a column
/// array each, in the chunk's order (the order rows are locked in).
fn bump_rows<'a>(template: &str, chunk: &'a [Bump<'_>], node: Option<&'a str>, arrays: bool) -> Result<(String, BumpArgs<'a>)> {
    let first = 1 + usize::from(node.is_some());
    if arrays {
        let node_col = if node.is_some() { "?1::TEXT, " } else { "" };
        let (p, q, r, s, t) = (first, first + 1, first + 2, first + 3, first + 4);
        let select = format!(
            "SELECT t, i, s, {node_col}m, k FROM unnest(?{p}::TEXT[], ?{q}::TEXT[], ?{r}::BIGINT[], ?{s}::BIGINT[], ?{t}::BIGINT[]) \
             WITH ORDINALITY AS b(t, i, s, m, k, o) ORDER BY o"
        );
        let arrays = Arrays::of(&BUMP_TYPES, &bump_args(chunk, None))?;
        return Ok((template.replace("{rows}", &select), BumpArgs::Columns { node, arrays }));
    }
    let row = |p: usize| match node {
        Some(_) => format!("(?{p}, ?{}, ?{}, ?1, ?{}, ?{})", p + 1, p + 2, p + 3, p + 4),
        None => format!("(?{p}, ?{}, ?{}, ?{}, ?{})", p + 1, p + 2, p + 3, p + 4),
    };
    let values = (0..chunk.len()).map(|j| row(first + j * 5)).collect::<Vec<_>>().join(", ");
    Ok((template.replace("{rows}", &format!("VALUES {values}")), BumpArgs::Rows(bump_args(chunk, node))))
}

/// `(scope_type, scope_id, period_start_ms, micros, tokens)` of each, after `node` when given.
fn bump_args<'a>(chunk: &'a [Bump<'_>], node: Option<&'a str>) -> Vec<Arg<'a>> {
    let mut args: Vec<Arg<'a>> = Vec::with_capacity(1 + chunk.len() * 5);
    args.extend(node.map(Arg::from));
    for ((t, id, start), micros, tokens) in chunk {
        args.extend([t.as_str().into(), Arg::Text(id), int(*start), int(*micros), int(*tokens)]);
    }
    args
}

/// Which scopes' use a batch changed (`budget_use_log`: a state poll's
/// delta reads them there): one row a batch, where an indexed stamp on
/// each period's use cost an index entry (and on PostgreSQL a row version
/// off the page) a period.
const LOG_USE: &str = "INSERT INTO budget_use_log (seq, ts_ms, scopes) VALUES (?1, ?2, ?3)";

/// The log's scopes: a JSON array of `[scope_type, scope_id]` (serde
/// escapes whatever an id holds), each once.
fn use_log_text(bumps: &[Bump<'_>]) -> Result<String> {
    let mut scopes: Vec<(&str, &str)> = bumps.iter().map(|((t, id, _), _, _)| (t.as_str(), *id)).collect();
    scopes.dedup();
    serde_json::to_string(&scopes).map_err(|e| StoreError::Backend(format!("the use log's scopes: {e}")))
}

/// Stores a batch (idempotent by record id) and counts it. `raw[i]`, when
/// given, is the JSON text `records[i]` was parsed from (stored as is).
/// Records go in with multi-row INSERTs; what they add to each budget
/// period is summed in memory and written once per period, so a batch
/// costs a few statements, not a few per record.
pub fn batch(tx: &mut dyn Tx, cache: &std::sync::Mutex<BudgetCache>, node: &str, records: &[UsageRecord], raw: Option<&[&str]>, now_ms: u64) -> Result<IngestAck> {
    if records.iter().any(|r| r.id.is_empty()) {
        return Err(StoreError::Invalid("a record has an empty id".into()));
    }
    let (counted, duplicates) = store(tx, node, records, raw)?;
    let accepted = counted.len() as u64;
    super::audit::insert_all(tx, &counted)?;
    super::cache_misses::insert_all(tx, &counted)?;
    super::evals::insert_all(tx, &counted)?;
    // (A cache poisoned by a panic elsewhere is emptied: it is only reads.)
    let mut held = cache.lock().unwrap_or_else(|poisoned| {
        cache.clear_poison();
        let mut c = poisoned.into_inner();
        *c = BudgetCache::default();
        c
    });
    let budgets = held.of_scopes(tx, counted.iter().flat_map(|r| scopes_touched(r)))?;
    drop(held);
    let touched = touched(&budgets, &counted);
    let bumps = bumps_of(&budgets, &touched);
    // The use first, then the counter row's lock, which orders the counting
    // (across replicas on PostgreSQL): batches commit in `seq` order, so
    // every batch up to `seq` is in the budgets' use when this one commits.
    // The use is added before the lock, so batches add side by side and
    // hold the lock only from here to commit (ingest with a budget on each
    // of 10,000 keys on PostgreSQL: 42.5k to 46.6k records/s, five runs
    // each). That is safe because on PostgreSQL a batch holds the budget
    // lock shared (`TxKind::Ingest`): no budget changes, and no recount
    // deletes the per-Envoy rows this batch holds, until it commits (a
    // recount waiting for those rows while this batch waited for the
    // counter it holds was a deadlock). So the budgets read above are still
    // those in force. SQLite has one writer at a time.
    let after = bump(tx, node, &bumps)?;
    let seq = tx.query_one("UPDATE ingest_seq SET seq = seq + 1 RETURNING seq", &[])?.u64(0)?;
    if !bumps.is_empty() {
        tx.execute(LOG_USE, &[int(seq), int(now_ms), Arg::Text(&use_log_text(&bumps)?)])?;
    }
    for ((bi, start), (_, _, stopped)) in &touched {
        let Some(b) = budgets.get(*bi) else { continue };
        // (A budget only refused at no cost was not bumped: its use is read.)
        let used = match after.get(&(b.scope_type, b.scope_id.clone(), *start)) {
            Some(u) => *u,
            None => budgets::used(tx, b.scope_type, &b.scope_id, *start)?,
        };
        budgets::thresholds(tx, b, *start, used, now_ms, *stopped)?;
    }
    Ok(IngestAck { accepted, duplicates, rejected: Vec::new(), seq })
}

/// Stores the batch's records, each id once (idempotent: one stored
/// before, by another batch or replica, is a duplicate): the records
/// stored now, to be counted, and how many were duplicates. `raw[i]`,
/// when given, is the JSON text `records[i]` was parsed from (stored as is).
fn store<'r>(tx: &mut dyn Tx, node: &str, records: &'r [UsageRecord], raw: Option<&[&str]>) -> Result<(Vec<&'r UsageRecord>, u64)> {
    // The rows carry this batch's own mark (`usage.seq`, only ever read to
    // tell which rows this batch stored): a random number above any batch
    // number stored before marks were random, so concurrent batches on
    // PostgreSQL insert side by side and take the ordering lock (in
    // [`batch`]) only to be counted.
    let mark = batch_mark()?;
    let mut counted: Vec<&UsageRecord> = Vec::with_capacity(records.len());
    // In id order: concurrent batches on PostgreSQL take the id index's
    // locks in the same order (no deadlock between them), and a repeated id
    // lands next to its first (stable sort: the first one sent is kept).
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&a, &b| records[a].id.cmp(&records[b].id));
    order.dedup_by_key(|i| records[*i].id.as_str());
    let mut duplicates = (records.len() - order.len()) as u64;
    // Column arrays take any number of records in one statement; a VALUES
    // list goes in chunks of the sizes statements are cached for.
    let chunks: Vec<&[usize]> = if tx.takes_arrays() { order.chunks(ROWS_PER_STATEMENT).collect() } else { statement_chunks(&order).collect() };
    for chunk in chunks {
        let mut fresh: Vec<(usize, &UsageRecord)> = chunk.iter().map(|&i| (i, &records[i])).collect();
        let texts: Vec<std::borrow::Cow<'_, str>> = fresh
            .iter()
            .map(|(idx, r)| match raw.and_then(|raw| raw.get(*idx)).filter(|_| r.capture.is_none()) {
                Some(t) => std::borrow::Cow::Borrowed(*t),
                // A capture is kept apart (eval_items), not in the record's text.
                None => std::borrow::Cow::Owned(serde_json::to_string(&UsageRecord { capture: None, ..(*r).clone() }).unwrap_or_default()),
            })
            .collect();
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(fresh.len() * PER_ROW);
        for ((_, r), text) in fresh.iter().zip(&texts) {
            row_args(r, mark, node, text, &mut args);
        }
        let stored = insert_rows(tx, &args)?;
        if stored < fresh.len() as u64 {
            // Some were stored before (another batch, another replica): keep the new ones.
            let mut ids: Vec<Arg<'_>> = vec![int(mark)];
            ids.extend(fresh.iter().map(|(_, r)| Arg::from(&r.id)));
            let now: HashSet<String> = tx.query(&stored_now_sql(fresh.len()), &ids)?.iter().map(|row| row.text(0)).collect::<Result<_>>()?;
            duplicates += fresh.len() as u64 - now.len() as u64;
            fresh.retain(|(_, r)| now.contains(&r.id));
        }
        counted.extend(fresh.into_iter().map(|(_, r)| r));
    }
    Ok((counted, duplicates))
}

/// What one row of `usage` is given: the record's columns and its text.
fn row_args<'a>(r: &'a UsageRecord, mark: u64, node: &'a str, text: &'a str, args: &mut Vec<Arg<'a>>) {
    args.extend([
        (&r.id).into(),
        int(mark),
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
        text.into(),
        int(if r.usage.cache_reported { r.usage.input_tokens } else { 0 }),
        Arg::Int(r.cache_savings_micros),
        (&r.session_id).into(),
    ]);
}

/// What the counted records add to each budget period they count
/// against, and whether one was refused by it:
/// (budget index, period start) -> (micros, tokens, refused).
fn touched(budgets: &[Budget], counted: &[&UsageRecord]) -> HashMap<(usize, u64), (u64, u64, bool)> {
    let index = ScopeIndex::new(budgets);
    let mut touched: HashMap<(usize, u64), (u64, u64, bool)> = HashMap::new();
    for r in counted {
        let fx = record_effects(budgets, &index, r);
        for k in fx.denied_by {
            touched.entry(k).or_insert((0, 0, false)).2 = true;
        }
        for k in fx.counts {
            let t = touched.entry(k).or_insert((0, 0, false));
            t.0 = t.0.saturating_add(r.cost_micros);
            t.1 = t.1.saturating_add(fx.tokens);
        }
    }
    touched
}

/// The periods whose use grows, in scope order (the order every batch
/// locks them in: see [`bump`]).
fn bumps_of<'b>(budgets: &'b [Budget], touched: &HashMap<(usize, u64), (u64, u64, bool)>) -> Vec<Bump<'b>> {
    let mut bumps: Vec<Bump<'b>> = touched
        .iter()
        .filter(|(_, (micros, tokens, _))| *micros > 0 || *tokens > 0)
        .filter_map(|((bi, start), (micros, tokens, _))| budgets.get(*bi).map(|b| ((b.scope_type, b.scope_id.as_str(), *start), *micros, *tokens)))
        .collect();
    bumps.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    bumps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arrays' types follow the table's (a text array for a BIGINT
    /// column would be refused; a BIGINT array for a text column, a text
    /// stored as NULL).
    #[test]
    fn the_array_insert_types_each_column_as_the_table_does() {
        let names: Vec<&str> = COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(names.len(), PER_ROW);
        let bigint = ["seq", "ts_ms", "status", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
                      "cost_micros", "cache_reported_input_tokens", "cache_savings_micros"];
        for (name, ty) in names.iter().zip(TYPES) {
            assert_eq!(ty == Col::Text, !bigint.contains(name), "{name}");
        }
        assert_eq!(array_insert_sql().matches("TEXT[]").count() + array_insert_sql().matches("BIGINT[]").count(), PER_ROW);
    }
}
