//! Grants: each Envoy's share of every budget's remaining room, handed out
//! at its state poll, with the budgets' state. An Envoy that sends back
//! the cursor of its last state gets only the budgets that changed since:
//! a poll's cost follows what changed, not how many budgets exist.

use tollgate_protocol::state::{BudgetDoc, BudgetScope, ScopeType};

use crate::db::{int, params, statement_chunks, Arg, Tx};
use crate::store::*;

use super::{budgets, rows};

mod cursor;
mod periods;

pub use cursor::Cursor;
use periods::{every_period, page_periods, these_periods, Periods};

/// Budgets per page of a state (about 250 bytes each): a full state of a
/// million per-key budgets is 200 pages, never one document an Envoy's VM
/// must hold at once.
pub const STATE_PAGE_MAX: usize = 5000;

/// Pages' worth of budget changes (or of ingest batches) since a cursor
/// past which the full state is sent instead of the delta.
const DELTA_PAGES: u64 = 4;

/// The most budget changes a delta ever spans (pages are at most
/// `STATE_PAGE_MAX`): a cursor further behind gets the full state, so a
/// deleted budget's tombstone older than this is never read again.
pub const DELTA_MAX_CHANGES: u64 = DELTA_PAGES * STATE_PAGE_MAX as u64;

/// The budget change sequence (limits set, budgets deleted).
pub(super) const BUDGET_SEQ: &str = "SELECT seq FROM budget_seq";

/// The first of the next `n` budget change numbers (taken at once); the
/// row's lock orders budget changes.
pub fn next_budget_seqs(tx: &mut dyn Tx, n: u64) -> Result<u64> {
    let last = tx.query_one("UPDATE budget_seq SET seq = seq + ?1 RETURNING seq", &[int(n)])?.u64(0)?;
    Ok(last + 1 - n)
}

/// `rows` read with one more than a page: cut to the page, and its last
/// row when more follow (the next page starts after it).
fn cut_page<T>(rows: &mut Vec<T>, page: usize) -> Option<&T> {
    if rows.len() <= page {
        return None;
    }
    rows.truncate(page);
    rows.last()
}

/// See `Store::node_seen` (never moves a node's time back).
pub fn seen(tx: &mut dyn Tx, node: &str, now_ms: u64) -> Result<()> {
    tx.execute("UPDATE nodes SET last_seen_ms = ?2 WHERE node = ?1 AND last_seen_ms < ?2", &[node.into(), int(now_ms)]).map(|_| ())
}

/// When a budget's state next changes by itself: the end of its current
/// period, or the opening of a window still ahead.
fn next_change(b: &Budget, now_ms: u64) -> Option<u64> {
    match b.bounds(now_ms) {
        Some((_, end)) => Some(end),
        None => b.window().map(|(start, _)| start).filter(|s| *s > now_ms),
    }
}

/// Hands the Envoy `node` its share of each budget's remaining room (see
/// `store::grant_doc`) and returns the budgets' state for it: every budget
/// when `cursor` is absent or no longer holds, otherwise those changed
/// since it; in pages of `page` budgets, each naming the cursor of the
/// next (`usize::MAX`: one answer, for Envoys from before pages).
/// The backend serialises grant transactions (`TxKind::Grant`).
pub fn grant(tx: &mut dyn Tx, node: &str, now_ms: u64, node_ttl_ms: u64, cursor: Option<&str>, page: usize) -> Result<GrantSnapshot> {
    let page = page.max(1);
    let alive_since = now_ms.saturating_sub(node_ttl_ms);
    let head = Head::read(tx, node, now_ms, alive_since)?;
    let Head { seq, budget_seq, answer, active, .. } = head;
    // A delta of more changes than a few pages (a bulk import) is sent as
    // the full state: its pages walk the primary key, while a delta's
    // changed set is read and ordered again for each page.
    let delta_max = (page.min(STATE_PAGE_MAX) as u64) * DELTA_PAGES;
    let since = holding(tx, cursor, &head, now_ms, delta_max)?;
    let full_because = since.as_ref().err().copied();
    let since = since.ok();
    let first_page = since.is_none();
    // What the answer's cursor will say: the sequences of now, or of the
    // first page of the state being sent in pages.
    let mut next = match &since {
        None => Cursor { ingest: seq, budgets: budget_seq, active, boundary_ms: u64::MAX, answer, from: None, after: None },
        Some(c) if c.after.is_none() => Cursor { ingest: seq, budgets: budget_seq, from: Some((c.ingest, c.budgets)), ..c.clone() },
        Some(c) => c.clone(),
    };
    // A later page of a state (a full state's, or a long delta's) also
    // brings the budgets set or deleted since the page before it, wherever
    // they are in scope order: a limit changed during a long walk (200
    // pages of a million budgets take 20 to 80 s) is in force on this Envoy
    // with its next page, not after the last one. The walk then counts
    // budget changes from now. More changes than a page (a bulk import)
    // wait for the delta after the walk.
    let catch_up = match &since {
        Some(c) if c.after.is_some() && budget_seq > c.budgets => {
            (budget_seq - c.budgets <= page.min(STATE_PAGE_MAX) as u64).then_some(c.budgets)
        }
        _ => None,
    };
    let after = since.as_ref().and_then(|c| c.after.as_ref()).map(|(t, id)| (*t, id.as_str()));
    let (candidates, last, mut removed) = match next.from {
        None => {
            let mut found = budgets::page(tx, after, page.saturating_add(1))?;
            let last = cut_page(&mut found, page).map(|b| (b.scope_type, b.scope_id.clone()));
            (found, last, Vec::new())
        }
        Some(from) => changed(tx, node, from, (next.ingest, next.budgets), after, page)?,
    };
    if after.is_some() {
        removed.clear(); // sent with the first page
    }
    let mut caught = Vec::new();
    if let Some(from) = catch_up {
        let on_page: std::collections::HashSet<(ScopeType, &str)> = candidates.iter().map(|b| (b.scope_type, b.scope_id.as_str())).collect();
        caught = budgets::changed_between(tx, from, budget_seq)?;
        caught.retain(|b| !on_page.contains(&(b.scope_type, b.scope_id.as_str())));
        removed.extend(removed_between(tx, from, budget_seq)?);
        next.budgets = budget_seq;
    }
    let delta = next.from.is_some();
    let more = last.is_some();
    next.after = last;
    if !more {
        next.from = None;
    }
    let mut current = in_force(candidates, now_ms, &mut next.boundary_ms, delta.then_some(&mut removed));
    // Caught-up budgets are scattered, as a delta's are.
    let caught_current = in_force(caught, now_ms, &mut next.boundary_ms, Some(&mut removed));
    let reclaimed = if delta { 0 } else { reclaim_silent(tx, alive_since, &current, first_page && !more)? };
    // Every budget in one answer: one pass over the current periods. One
    // page of a full state: one range of scopes. A delta (scattered
    // budgets): reads by scope, a statement per scope type and period.
    let mut periods = match (delta, first_page && !more) {
        (false, true) => every_period(tx, node, &current)?,
        (false, false) => page_periods(tx, node, &current)?,
        (true, _) => these_periods(tx, node, &current)?,
    };
    if !caught_current.is_empty() {
        periods.extend(these_periods(tx, node, &caught_current)?);
        current.extend(caught_current);
    }
    let (out, writes) = shares(current, periods, node, active);
    if !writes.is_empty() {
        // An answer that changes the node's grants gets a number of its own:
        // one that never arrives is sent again, as a full state. Answers
        // that change nothing keep the number, so they stay the same
        // document (the ETag's 304).
        next.answer = answer.saturating_add(1);
        tx.execute("UPDATE nodes SET answer = ?2 WHERE node = ?1", &[node.into(), int(next.answer)])?;
    }
    write_grants(tx, node, &writes)?;
    Ok(GrantSnapshot {
        seq,
        nodes_active: u32::try_from(active).unwrap_or(u32::MAX),
        budgets: out,
        full: first_page,
        full_because,
        reclaimed,
        more,
        removed,
        cursor: next.encode(),
    })
}

/// What a poll reads first, in one statement (a round trip on
/// PostgreSQL): the sequences (what is read after them includes at least
/// those changes), the node's row, and the other active nodes; the node is
/// then marked seen.
struct Head {
    seq: u64,
    budget_seq: u64,
    /// The number of the node's last answer that changed its grants.
    answer: u64,
    use_log_from: u64,
    /// Seen within the TTL before this poll. A node silent past it may
    /// have had its grants reclaimed (and handed to others) without a
    /// change any cursor sees: it starts over.
    was_active: bool,
    /// Active nodes, this one included.
    active: u64,
}

impl Head {
    fn read(tx: &mut dyn Tx, node: &str, now_ms: u64, alive_since: u64) -> Result<Head> {
        let row = tx.query_one(
            &format!(
                "SELECT ({}), ({BUDGET_SEQ}), (SELECT last_seen_ms FROM nodes WHERE node = ?1), (SELECT answer FROM nodes WHERE node = ?1),
                        (SELECT COUNT(*) FROM nodes WHERE last_seen_ms >= ?2 AND node <> ?1), ({USE_LOG_FROM})",
                super::ingest::SEQ
            ),
            &[node.into(), int(alive_since)],
        )?;
        let head = Head {
            seq: row.u64(0)?,
            budget_seq: row.u64(1)?,
            answer: row.opt_u64(3)?.unwrap_or(0),
            use_log_from: row.u64(5)?,
            was_active: row.opt_u64(2)?.is_some_and(|seen| seen >= alive_since),
            active: row.u64(4)? + 1,
        };
        tx.execute(
            "INSERT INTO nodes (node, last_seen_ms) VALUES (?1, ?2) ON CONFLICT (node) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
            &[node.into(), int(now_ms)],
        )?;
        Ok(head)
    }
}

/// The node's cursor when it still holds, or why not (the full state's
/// first page logs it).
fn holding(tx: &mut dyn Tx, cursor: Option<&str>, head: &Head, now_ms: u64, delta_max: u64) -> Result<std::result::Result<Cursor, &'static str>> {
    let since = match cursor.map(Cursor::decode) {
        None => Err("no cursor"),
        Some(_) if !head.was_active => Err("silent past the node TTL"),
        Some(None) => Err("not a cursor of this service"),
        Some(Some(c)) if c.answer != head.answer => Err("its last answer did not arrive (or another Envoy has its node name)"),
        Some(Some(c)) if c.ingest > head.seq || c.budgets > head.budget_seq => Err("ahead of the database"),
        Some(Some(c)) if c.active != head.active => Err("the number of active Envoys changed"),
        Some(Some(c)) if now_ms >= c.boundary_ms => Err("a budget period ended or a window opened"),
        Some(Some(c)) if c.after.is_none() && head.budget_seq - c.budgets > delta_max => Err("too many budget changes"),
        Some(Some(c)) if c.use_from().is_some_and(|f| f < head.use_log_from) => Err("its use changes are no longer logged"),
        Some(Some(c)) => Ok(c),
    };
    // Use changed since the cursor: counted in budget periods, not in
    // ingest batches (a fleet retrying or splitting batches passed four
    // pages of them within one full state, and every poll was then a full
    // state).
    if let Ok(c) = &since {
        if c.after.is_none() && c.ingest < head.seq && use_changes(tx, c.ingest, head.seq, delta_max)? > delta_max {
            return Ok(Err("too many use changes"));
        }
    }
    Ok(since)
}

/// The silent nodes' grants of the budgets a full state sends, reclaimed:
/// of every current period when the state is one answer; of a page's
/// budgets before its grants are cut (one range per scope type, as it is
/// read). How many grants.
fn reclaim_silent(tx: &mut dyn Tx, alive_since: u64, current: &[(Budget, (u64, u64))], whole: bool) -> Result<u64> {
    if current.is_empty() {
        return Ok(0);
    }
    let silent = silent_holders(tx, alive_since)?;
    if whole {
        let earliest = current.iter().map(|(_, (start, _))| *start).min().unwrap_or(0);
        return reclaim(tx, &silent, "period_start_ms >= ?1", &[int(earliest)]);
    }
    let mut reclaimed = 0;
    for run in current.chunk_by(|(a, _), (b, _)| a.scope_type == b.scope_type) {
        let (Some((first, _)), Some((last, _))) = (run.first(), run.last()) else { continue };
        let range = [Arg::Text(first.scope_type.as_str()), Arg::Text(&first.scope_id), Arg::Text(&last.scope_id)];
        reclaimed += reclaim(tx, &silent, "scope_type = ?1 AND scope_id >= ?2 AND scope_id <= ?3", &range)?;
    }
    Ok(reclaimed)
}

/// A grant to write: (scope type, scope id, period start, micros, tokens, short).
type GrantWrite = (ScopeType, String, u64, u64, u64, bool);

/// Each current budget's document for `node`, with its share of the room
/// left ([`grant_doc`]), and the grants that changed. A grant is rewritten
/// only when it changes (a budget nobody spent from since the last poll
/// costs one read).
fn shares(
    current: Vec<(Budget, (u64, u64))>,
    mut periods: Periods,
    node: &str,
    active: u64,
) -> (Vec<BudgetDoc>, Vec<GrantWrite>) {
    let mut out = Vec::with_capacity(current.len());
    let mut writes = Vec::new();
    for (b, (start, end)) in current {
        let found = periods.remove(&(b.scope_type.as_str().to_string(), b.scope_id.clone(), start)).unwrap_or_default();
        let nodes: Vec<NodeUse> = found.nodes.into_iter().map(|(n, ((um, gm), (ut, gt)))| (n, (um, gm), (ut, gt))).collect();
        let held = nodes.iter().find(|r| r.0 == node).map(|r| (r.1 .1, r.2 .1));
        let (doc, gm, gt) = grant_doc(&b, (start, end), found.used, nodes, node, active);
        let short = short_of_fair(&doc, active);
        out.push(doc);
        if held == Some((Some(gm), Some(gt))) && found.mine_short == short {
            continue;
        }
        writes.push((b.scope_type, b.scope_id, start, gm, gt, short));
    }
    (out, writes)
}

/// The ingest sequence after which `budget_use_log` holds every batch's
/// use changes (see `prune_use_log`).
const USE_LOG_FROM: &str = "SELECT seq FROM budget_use_log_from";

/// The scopes whose use the batches (`?{from}`, `?{to}`] changed, as
/// `scope_type, scope_id` (with repeats: one a batch that changed it).
fn use_changed_sql(tx: &dyn Tx, from: usize, to: usize) -> String {
    let pairs = tx.json_pairs("budget_use_log", "scopes", &format!("t.seq > ?{from} AND t.seq <= ?{to}"));
    format!("SELECT first AS scope_type, second AS scope_id FROM ({pairs}) AS logged")
}

/// Scopes whose use changed in the ingest sequences (from, to], counted
/// up to `cap + 1` (the log's rows of those batches, however many budgets
/// exist).
fn use_changes(tx: &mut dyn Tx, from: u64, to: u64, cap: u64) -> Result<u64> {
    let sql = format!("SELECT COUNT(*) FROM (SELECT DISTINCT scope_type, scope_id FROM ({}) AS u LIMIT ?3) AS changed", use_changed_sql(tx, 1, 2));
    tx.query_one(&sql, &[int(from), int(to), int(cap.saturating_add(1))])?.u64(0)
}

/// Keeps `budget_use_log` to the batches of the last `keep_ms`: a cursor
/// from before them gets the whole state.
/// In a grant transaction, so never beside a poll reading the log. The
/// number of batches' rows removed.
pub fn prune_use_log(tx: &mut dyn Tx, now_ms: u64, keep_ms: u64) -> Result<u64> {
    let cut = tx.query_one(
        "SELECT MAX(seq) FROM budget_use_log WHERE ts_ms < ?1",
        &[int(now_ms.saturating_sub(keep_ms))],
    )?;
    let Some(upto) = cut.opt_u64(0)? else { return Ok(0) };
    tx.execute("UPDATE budget_use_log_from SET seq = ?1 WHERE seq < ?1", &[int(upto)])?;
    tx.execute("DELETE FROM budget_use_log WHERE seq <= ?1", &[int(upto)])
}

/// Grant rows written in multi-row statements (a full state's page of
/// 5,000 is ten statements, not 5,000 round trips to PostgreSQL).
fn write_grants(tx: &mut dyn Tx, node: &str, writes: &[GrantWrite]) -> Result<()> {
    for chunk in statement_chunks(writes) {
        let mut rows = Vec::with_capacity(chunk.len());
        let mut args: Vec<Arg<'_>> = vec![node.into()];
        for (j, (t, id, start, gm, gt, short)) in chunk.iter().enumerate() {
            let p = 2 + j * 6;
            rows.push(format!("(?{p}, ?{}, ?{}, ?1, ?{}, ?{}, ?{})", p + 1, p + 2, p + 3, p + 4, p + 5));
            args.extend([t.as_str().into(), Arg::Text(id), int(*start), int(*gm), int(*gt), int(u64::from(*short))]);
        }
        tx.execute(
            &format!(
                "INSERT INTO budget_grants (scope_type, scope_id, period_start_ms, node, granted_micros, granted_tokens, short)
                 VALUES {}
                 ON CONFLICT (scope_type, scope_id, period_start_ms, node) DO UPDATE SET
                    granted_micros = excluded.granted_micros, granted_tokens = excluded.granted_tokens, short = excluded.short",
                rows.join(", ")
            ),
            &args,
        )?;
    }
    Ok(())
}

/// The node's share is below its fair part of what is left (other nodes
/// hold the rest): looked at again at its next poll, changed or not.
fn short_of_fair(doc: &BudgetDoc, active: u64) -> bool {
    let fair = |limit: Option<u64>, used: u64| limit.map(|l| crate::store::fair_part(l, used, active));
    let below = |fair: Option<u64>, share: Option<u64>| matches!((fair, share), (Some(f), Some(s)) if s < f);
    below(fair(doc.hard_limit_micros(), doc.used_micros), doc.share_micros) || below(fair(doc.hard_limit_tokens(), doc.used_tokens), doc.share_tokens)
}

/// The budgets changed since the ingest and budget sequences `from` (their
/// limits, their use, or this node's grant short of its fair part), at
/// most `page` scopes of them after `after` in scope order, the last scope
/// of the page when more follow, and the scopes deleted since.
#[allow(clippy::type_complexity)]
fn changed(
    tx: &mut dyn Tx,
    node: &str,
    from: (u64, u64),
    upto: (u64, u64),
    after: Option<(ScopeType, &str)>,
    page: usize,
) -> Result<(Vec<Budget>, Option<(ScopeType, String)>, Vec<BudgetScope>)> {
    let mut args: Vec<Arg<'_>> =
        vec![int(from.1), int(from.0), node.into(), int(page.saturating_add(1) as u64), int(upto.1), int(upto.0)];
    let cut = match after {
        None => "",
        Some((t, id)) => {
            args.extend([Arg::Text(t.as_str()), Arg::Text(id)]);
            "AND (scope_type, scope_id) > (?7, ?8)"
        }
    };
    // Changes up to the sequences of the delta's first page (later ones
    // come in the next delta). The closed range also keeps PostgreSQL on
    // the index: with `> $1` alone and statistics not yet gathered after a
    // bulk import, it expected a third of the table and read all of it
    // (35 ms a poll at 300,000 budgets).
    // Cut in the database's own order, as the pages of a full state are.
    // The changed limits and use are few (at most DELTA_PAGES pages); short
    // grants may be many (every budget, when an Envoy joins a fleet that
    // holds all of them), so they are read in order from their index, a
    // page at a time.
    let used = use_changed_sql(tx, 2, 6);
    let sql = format!(
        "SELECT scope_type, scope_id FROM (
           SELECT scope_type, scope_id FROM budgets WHERE changed_seq > ?1 AND changed_seq <= ?5 {cut}
           UNION SELECT scope_type, scope_id FROM ({used}) AS used WHERE 1 = 1 {cut}
           UNION SELECT * FROM (SELECT scope_type, scope_id FROM budget_grants WHERE node = ?3 AND short = 1 {cut}
                                ORDER BY scope_type, scope_id LIMIT ?4) AS short_grants
         ) AS changed ORDER BY scope_type, scope_id LIMIT ?4"
    );
    let mut scopes: Vec<(ScopeType, String)> =
        tx.query(&sql, &args)?.iter().map(|r| Ok((rows::scope(&r.text(0)?)?, r.text(1)?))).collect::<Result<_>>()?;
    let last = cut_page(&mut scopes, page).cloned();
    // A scope whose budget is gone (its use changed just before) is no budget.
    let found = budgets::of_scopes(tx, scopes.iter().map(|(t, id)| (*t, id.as_str())))?;
    Ok((found, last, removed_between(tx, from.1, u64::MAX)?))
}

/// The scopes whose budgets were deleted under the budget sequences (from, to].
pub(super) fn removed_between(tx: &mut dyn Tx, from: u64, to: u64) -> Result<Vec<BudgetScope>> {
    tx.query("SELECT scope_type, scope_id FROM budget_removed WHERE seq > ?1 AND seq <= ?2", &[int(from), int(to)])?
        .iter()
        .map(|r| Ok(BudgetScope { scope_type: rows::scope(&r.text(0)?)?, scope_id: r.text(1)? }))
        .collect()
}

/// The budgets with their current period, each period's end (or a window's
/// opening) lowering `boundary_ms`; those out of their window go to
/// `removed` when given (the Envoy drops them), else are left out.
fn in_force(budgets: Vec<Budget>, now_ms: u64, boundary_ms: &mut u64, mut removed: Option<&mut Vec<BudgetScope>>) -> Vec<(Budget, (u64, u64))> {
    let mut out = Vec::with_capacity(budgets.len());
    for b in budgets {
        if let Some(t) = next_change(&b, now_ms) {
            *boundary_ms = (*boundary_ms).min(t);
        }
        match (b.bounds(now_ms), removed.as_deref_mut()) {
            (Some(p), _) => out.push((b, p)),
            (None, Some(r)) => r.push(BudgetScope { scope_type: b.scope_type, scope_id: b.scope_id }),
            (None, None) => {}
        }
    }
    out
}

/// Reclaims what the `silent` nodes hold but did not spend, among the
/// grants `range` selects (its arguments first), by deleting them: a node
/// without a grant counts as its recorded use (`store::rebalance`,
/// `budgets::reserved`), which is what reclaiming set it to. Only on a full
/// state: a node falling silent changes the active count, which makes every
/// Envoy's next poll a full one, and the first Envoy through its pages
/// reclaims for all.
///
/// Page by page, each page's budgets before its grants are cut: all of a
/// silent node's grants at the first page took 3.5–4.6 s at a million
/// budgets on SQLite, longer than the filter waits (2 s), so that answer
/// was lost and the Envoy started over (setting each grant to its use
/// instead, before, read every grant of the fleet: 17–34 s on PostgreSQL).
fn reclaim(tx: &mut dyn Tx, silent: &[String], range: &str, args: &[Arg<'_>]) -> Result<u64> {
    let mut n = 0;
    for chunk in statement_chunks(silent) {
        let mut all: Vec<Arg<'_>> = args.to_vec();
        all.extend(chunk.iter().map(|s| Arg::Text(s)));
        let list = params(args.len() + 1, chunk.len());
        n += tx.execute(&format!("DELETE FROM budget_grants WHERE {range} AND node IN ({list})"), &all)?;
    }
    Ok(n)
}

/// The nodes silent since `alive_since` that still hold grants (index
/// `budget_grants_node`): usually none, and then a page reclaims nothing
/// without a statement. Never the polling node: its row was just seen.
fn silent_holders(tx: &mut dyn Tx, alive_since: u64) -> Result<Vec<String>> {
    tx.query(
        "SELECT node FROM nodes n WHERE last_seen_ms < ?1 AND EXISTS (SELECT 1 FROM budget_grants g WHERE g.node = n.node)",
        &[int(alive_since)],
    )?
    .iter()
    .map(|r| r.text(0))
    .collect()
}

/// Drops what served only ended periods and gone Envoys: grants and
/// per-Envoy use of periods before every budget's current one, those of
/// deleted budgets, and Envoys silent for `forget_after_ms`. Each budget's
/// use per period (its history) stays. Runs in a grant transaction, so
/// never beside a poll; a late record may bring a pruned per-Envoy row back
/// (it counts for its own period) until the next run.
pub fn prune(tx: &mut dyn Tx, now_ms: u64, forget_after_ms: u64) -> Result<Pruned> {
    let mut out = Pruned::default();
    let earliest = budgets::earliest_start(tx, now_ms)?;
    if let Some(e) = earliest {
        out.grants += tx.execute("DELETE FROM budget_grants WHERE period_start_ms < ?1", &[int(e)])?;
        out.node_use += tx.execute("DELETE FROM budget_usage_node WHERE period_start_ms < ?1", &[int(e)])?;
    }
    for table in ["budget_grants", "budget_usage_node"] {
        let n = tx.execute(
            &format!(
                "DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM budgets b
                   WHERE b.scope_type = {table}.scope_type AND b.scope_id = {table}.scope_id)"
            ),
            &[],
        )?;
        if table == "budget_grants" {
            out.grants += n;
        } else {
            out.node_use += n;
        }
    }
    let forget = [int(now_ms.saturating_sub(forget_after_ms))];
    // What a forgotten node still held (reclaimed already, unless no full
    // state was asked since it went silent).
    out.grants += tx.execute("DELETE FROM budget_grants WHERE node IN (SELECT node FROM nodes WHERE last_seen_ms < ?1)", &forget)?;
    out.nodes = tx.execute("DELETE FROM nodes WHERE last_seen_ms < ?1", &forget)?;
    Ok(out)
}
