//! The grant arithmetic: how much of each limit a polling Envoy may hold
//! (docs/budgets.md, "Fleet-wide: grants"). Pure integers, shared by both
//! backends; the ledger stores what it decides.

use super::{Budget, Used};

/// Of what is left of a limit, the part grants leave free (1/16): an Envoy
/// joining the fleet gets its first share from it at once. Without it the
/// Envoys already there held the whole limit between them, and a newcomer's
/// first share was 0: it refused every budgeted request as exhausted until
/// they had polled and given back (a second on a small fleet, the length of
/// a full state's walk at a million budgets). Near the limit it costs a
/// sixteenth of what is left: an Envoy refuses when what is left of its
/// share is below 16/15 of a request's worst case instead of below it.
pub const JOIN_RESERVE: u64 = 16;

/// A node's fair part of what is left of a limit: an equal part among the
/// active nodes, less the [`JOIN_RESERVE`].
pub fn fair_part(limit: u64, used_total: u64, active: u64) -> u64 {
    let equal = limit.saturating_sub(used_total) / active.max(1);
    equal - equal / JOIN_RESERVE
}

/// The grant arithmetic, for one limit. `grants` holds every node's
/// (used, granted) for the period, `me` indexes the polling node. Its new
/// grant is its own use plus its [`fair_part`] of what is left, but never
/// more than what the other nodes' grants leave free: the grants' sum never
/// exceeds the limit. A node joining a budget others hold room in (it has
/// no grant of it yet) leaves half of what nobody holds (at most half the
/// reserve) for the next, so that Envoys starting together each get a
/// part. A node's grant may shrink when it polls (it learns the smaller
/// share in the same answer). Integers only.
pub fn rebalance(limit: u64, used_total: u64, grants: &[(u64, Option<u64>)], me: usize, active: u64) -> u64 {
    let effective = |(used, granted): (u64, Option<u64>)| granted.unwrap_or(used).max(used);
    let others: u64 = grants
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(_, g)| effective(*g))
        .fold(0u64, |a, b| a.saturating_add(b));
    let used_me = grants.get(me).map(|g| g.0).unwrap_or(0);
    let mine = grants.get(me).map(|g| effective(*g)).unwrap_or(0);
    // Room it holds (granted, not used) and what nobody holds.
    let held = mine.saturating_sub(used_me);
    let free = limit.saturating_sub(others).saturating_sub(mine);
    let joining = grants.get(me).is_none_or(|g| g.1.is_none())
        && grants.iter().enumerate().any(|(i, g)| i != me && effective(*g) > g.0);
    // A joining node leaves half of what is free for the next one, but
    // never more than half the reserve: where much is free (an Envoy that
    // left held it), it takes its whole part at once.
    let leave = if joining { (free / 2).min(limit.saturating_sub(used_total) / (2 * JOIN_RESERVE)) } else { 0 };
    let growth = free.saturating_sub(leave);
    used_me.saturating_add(fair_part(limit, used_total, active).min(held.saturating_add(growth)))
}

/// One node's (used, granted) in micros and in tokens for a budget period.
pub type NodeUse = (String, (u64, Option<u64>), (u64, Option<u64>));

/// The budget document for `node` and its new grants (micros, tokens), from
/// every node's use and grants in the period. Shared by both backends; the
/// caller stores the grants in the same transaction.
pub fn grant_doc(
    b: &Budget,
    (start, end): (u64, u64),
    used: (u64, u64),
    mut nodes: Vec<NodeUse>,
    node: &str,
    active: u64,
) -> (tollgate_protocol::state::BudgetDoc, u64, u64) {
    let me = match nodes.iter().position(|r| r.0 == node) {
        Some(p) => p,
        None => {
            nodes.push((node.to_string(), (0, None), (0, None)));
            nodes.len() - 1
        }
    };
    let micros: Vec<(u64, Option<u64>)> = nodes.iter().map(|r| r.1).collect();
    let tokens: Vec<(u64, Option<u64>)> = nodes.iter().map(|r| r.2).collect();
    let (my_m, my_t) = (micros.get(me).map(|x| x.0).unwrap_or(0), tokens.get(me).map(|x| x.0).unwrap_or(0));
    let mut doc = b.doc((start, end), Used { micros: used.0, tokens: used.1 });
    let n = active.max(1);
    let gm = doc.hard_limit_micros().map(|l| rebalance(l, doc.used_micros, &micros, me, n));
    let gt = doc.hard_limit_tokens().map(|l| rebalance(l, doc.used_tokens, &tokens, me, n));
    // The share is headroom against this node's own recorded use, which is
    // exactly what the node's pending counts are relative to.
    doc.share_micros = gm.map(|g| g.saturating_sub(my_m));
    doc.share_tokens = gt.map(|g| g.saturating_sub(my_t));
    (doc, gm.unwrap_or(my_m), gt.unwrap_or(my_t))
}
