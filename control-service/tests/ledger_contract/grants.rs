//! Grants: each Envoy's share of a budget's room, pruned when it ends, and
//! the state an Envoy is sent (deltas, pages, walks) adding up to the whole.

use super::*;

pub(super) fn grants_share_the_room_and_never_exceed_the_limit(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    let share = |g: &tollgate_control::store::GrantSnapshot| g.budgets[0].share_micros;
    // alone: everything but the sixteenth kept free for Envoys joining (938)
    let alone = part(1000, 0, 1);
    assert_eq!((alone, share(&s.grant("n1", NOW, 60_000, None, 5000).unwrap())), (938, Some(938)));
    // a second node: half of what is free at once, the rest once the first polls again
    let g2 = s.grant("n2", NOW, 60_000, None, 5000).unwrap();
    assert_eq!((share(&g2), g2.nodes_active), (Some(31), 2));
    assert_eq!(s.reserved(ScopeType::Team, "t", start).unwrap().micros, 969);
    s.ingest("n1", &[rec("g1", "t", 300, 0, 0)], None, NOW).unwrap();
    // n1: its use plus its part of what is left, (1000 - 300) / 2 less a sixteenth
    let half = part(1000, 300, 2);
    assert_eq!(half, 329);
    assert_eq!(share(&s.grant("n1", NOW, 60_000, None, 5000).unwrap()), Some(half));
    assert_eq!(share(&s.grant("n2", NOW, 60_000, None, 5000).unwrap()), Some(half));
    let reserved = s.reserved(ScopeType::Team, "t", start).unwrap().micros;
    assert_eq!(reserved, 2 * half);
    assert!(reserved + s.used(ScopeType::Team, "t", start).unwrap().micros <= 1000);
    // a node silent past the TTL gives back what it did not spend
    assert_eq!(share(&s.grant("n1", NOW + 120_000, 60_000, None, 5000).unwrap()), Some(part(1000, 300, 1)));
}

/// Envoys joining a fleet (a scale-up, a rollout) each get a part of a
/// budget at once, from what the grants leave free: before, the Envoys
/// already there held all of it and a newcomer's share was 0 (it refused
/// every budgeted request) until they had polled and given back.
pub(super) fn envoys_joining_together_each_get_a_part_at_once(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1_000_000), NOW).unwrap();
    let start = budget("t", 0).bounds(NOW).unwrap().0;
    let share = |node: &str, at: u64| s.grant(node, at, 60_000, None, 5000).unwrap().budgets[0].share_micros.unwrap_or(0);
    assert_eq!(share("a", NOW), part(1_000_000, 0, 1));
    let joined: Vec<u64> = ["b", "c", "d"].iter().map(|n| share(n, NOW + 1)).collect();
    // Half of what is free, then half of what is left of it: 31,250, 15,625, 7,813.
    assert_eq!(joined, [31_250, 15_625, 7_813]);
    assert!(s.reserved(ScopeType::Team, "t", start).unwrap().micros <= 1_000_000);
    // Two rounds of polls later, everyone holds its part of four.
    for at in [NOW + 2, NOW + 3] {
        for n in ["a", "b", "c", "d"] {
            share(n, at);
        }
    }
    let parts: Vec<u64> = ["a", "b", "c", "d"].iter().map(|n| share(n, NOW + 4)).collect();
    assert_eq!(parts, [part(1_000_000, 0, 4); 4]);
    assert!(s.reserved(ScopeType::Team, "t", start).unwrap().micros <= 1_000_000);
}

/// `make bench-scale`'s sequence on PostgreSQL: an Envoy took its first
/// part of every budget and fell silent, the Envoy already there shrank to
/// its part of two, and a probe joined before anyone had reclaimed the
/// silent one's grants. Half of what was free left the probe short of its
/// part in every budget (a million budgets walked again, a page a poll,
/// for minutes); it takes its whole part at once, leaving half the reserve.
pub(super) fn a_newcomer_takes_its_whole_part_where_room_is_free(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let ttl = 5_000;
    let grant = |node: &str, at: u64, cursor: Option<&str>| s.grant(node, at, ttl, cursor, 5000).unwrap();
    grant("big", NOW, None);
    assert_eq!(grant("new", NOW + 1, None).budgets[0].share_micros, Some(31));
    let big = grant("big", NOW + 2, None);
    assert_eq!(big.budgets[0].share_micros, Some(part(1000, 0, 2)));
    grant("big", NOW + 4_000, Some(&big.cursor));
    // "new" silent past the TTL, its 31 not reclaimed yet; big holds 469.
    let probe = grant("probe", NOW + 6_000, None);
    assert_eq!((probe.nodes_active, probe.budgets[0].share_micros), (2, Some(part(1000, 0, 2))));
    // At its part: its next delta is empty (nothing short to send again).
    let next = grant("probe", NOW + 6_001, Some(&probe.cursor));
    assert!(!next.full && next.budgets.is_empty(), "{:?}", next.budgets);
}

pub(super) fn grants_of_ended_periods_deleted_budgets_and_gone_envoys_are_pruned(s: Arc<dyn Store>) {
    use tollgate_control::store::Pruned;
    const DAY: u64 = 86_400_000;
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let (start, _) = budget("t", 0).bounds(NOW).unwrap();
    // Last month: an Envoy "old" was granted room and spent some, then went away.
    let last_month = start - 10 * DAY;
    let (old_start, _) = budget("t", 0).bounds(last_month).unwrap();
    assert!(old_start < start);
    s.grant("old", last_month, 60_000, None, 5000).unwrap();
    s.ingest("old", &[UsageRecord { ts_ms: last_month, ..rec("p1", "t", 40, 0, 0) }], None, last_month).unwrap();
    // This month: "n1" holds room in "t" and in "g", a budget then deleted,
    // and today in "d", a daily budget in another timezone (its period
    // starts later than the month's: pruning goes by the earliest).
    s.put_budget(&budget("g", 500), NOW).unwrap();
    let daily = Budget { period: tollgate_control::periods::Period::Daily, timezone: "Asia/Tokyo".into(), ..budget("d", 100) };
    s.put_budget(&daily, NOW).unwrap();
    s.grant("n1", NOW, 60_000, None, 5000).unwrap();
    s.ingest("n1", &[rec("p2", "t", 30, 0, 0)], None, NOW).unwrap();
    s.grant("n1", NOW, 60_000, None, 5000).unwrap();
    s.delete_budget(ScopeType::Team, "g").unwrap();
    let reserved_before = s.reserved(ScopeType::Team, "t", start).unwrap();
    assert!(reserved_before.micros > 0);

    let pruned = s.prune_grants(NOW, DAY).unwrap();
    assert_eq!(pruned, Pruned { grants: 2, node_use: 1, nodes: 1 }, "last month's grant of t, n1's grant of g; old's use of t; Envoy old");
    // The current period is untouched, and last month's spend stays in the history.
    assert_eq!(s.reserved(ScopeType::Team, "t", start).unwrap(), reserved_before);
    assert_eq!(s.reserved(ScopeType::Team, "t", old_start).unwrap().micros, 0);
    assert_eq!(s.used(ScopeType::Team, "t", old_start).unwrap().micros, 40);
    assert_eq!(s.used(ScopeType::Team, "t", start).unwrap().micros, 30);
    let g = s.grant("n1", NOW, 60_000, None, 5000).unwrap();
    assert_eq!((g.nodes_active, g.budgets.len()), (1, 2));
    // Nothing more to prune; a recent Envoy is not forgotten.
    assert_eq!(s.prune_grants(NOW, DAY).unwrap(), Pruned::default());
}

/// Which budgets' use changed is logged a batch at a time (scope ids as
/// JSON in the database, read back by each dialect's JSON functions) and
/// pruned after a while: a cursor from before what is kept gets the whole
/// state, one after it goes on with deltas.
pub(super) fn the_use_log_keeps_what_deltas_need_and_an_older_cursor_gets_the_full_state(s: Arc<dyn Store>) {
    // Team names as odd as a client can make them: quotes, backslashes,
    // control characters, something that looks like the log's own JSON.
    let odd = ["q\"uo\\te", "tab\tnew\nline\u{1}", "é✓ [\"team\",\"x\"]", "t1"];
    for t in odd {
        s.put_budget(&budget(t, 1_000_000), NOW).unwrap();
    }
    let (mut early, mut late) = (View::new(5000), View::new(5000));
    for k in 0..2 {
        early.poll(&s, "n1", NOW + k);
        late.poll(&s, "n2", NOW + k);
    }
    assert!(!late.poll(&s, "n2", NOW + 2).full, "both Envoys settled");
    let before = NOW - 600_000;
    for (i, t) in odd.iter().enumerate() {
        s.ingest("n1", &[rec(&format!("u{i}"), t, 10, 0, 0)], None, before).unwrap();
    }
    let g = late.poll(&s, "n2", NOW + 3);
    let mut got = names(&g).1;
    got.sort();
    let mut want: Vec<String> = odd.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!((g.full, got), (false, want), "every changed scope, its id as it was");
    assert!(g.budgets.iter().all(|b| b.used_micros == 10));
    late.check(&s, "n2", NOW + 3);
    // Within the time kept nothing goes; past it, the four batches do.
    assert_eq!(s.prune_use_log(before + 1000, 300_000).unwrap(), 0);
    assert_eq!(s.prune_use_log(NOW, 300_000).unwrap(), 4);
    assert_eq!(s.prune_use_log(NOW, 300_000).unwrap(), 0);
    // `early` last polled before those batches: what changed since is gone from the log.
    let g = early.poll(&s, "n1", NOW + 4);
    assert_eq!((g.full, g.full_because), (true, Some("its use changes are no longer logged")));
    early.check(&s, "n1", NOW + 4);
    // `late` polled after them: deltas go on, and a change after the prune comes.
    assert!(!late.poll(&s, "n2", NOW + 5).full);
    s.ingest("n1", &[rec("v", odd[0], 5, 0, 0)], None, NOW).unwrap();
    let g = late.poll(&s, "n2", NOW + 6);
    assert!(!g.full);
    assert!(g.budgets.iter().any(|b| b.scope_id == odd[0] && b.used_micros == 15), "{:?}", names(&g));
    late.check(&s, "n2", NOW + 6);
}

pub(super) fn budget_deltas_carry_only_changes_and_add_up_to_the_full_state(s: Arc<dyn Store>) {
    let none: Vec<String> = Vec::new();
    for (t, l) in [("t1", 1000), ("t2", 500), ("t3", 300)] {
        s.put_budget(&budget(t, l), NOW).unwrap();
    }
    let mut v1 = View::new(5000);
    assert_eq!(names(&v1.poll(&s, "n1", NOW)), (true, vec!["t1".into(), "t2".into(), "t3".into()], none.clone()));
    // Nothing changed: nothing sent, and the answer is the same bytes (a 304).
    let quiet = v1.poll(&s, "n1", NOW + 1);
    assert_eq!(names(&quiet), (false, none.clone(), none.clone()));
    assert_eq!(v1.poll(&s, "n1", NOW + 2).cursor, quiet.cursor);
    // Use: only the budget it counts against.
    s.ingest("n1", &[rec("d1", "t1", 100, 0, 0)], None, NOW).unwrap();
    let g = v1.poll(&s, "n1", NOW + 3);
    assert_eq!(names(&g), (false, vec!["t1".into()], none.clone()));
    assert_eq!((g.budgets[0].used_micros, g.budgets[0].share_micros), (100, Some(part(1000, 100, 1))));
    v1.check(&s, "n1", NOW + 3);
    // Use of a scope without a budget changes nothing.
    s.ingest("n1", &[rec("d2", "nobody", 100, 0, 0)], None, NOW).unwrap();
    assert_eq!(names(&v1.poll(&s, "n1", NOW + 4)), (false, none.clone(), none.clone()));
    // A new limit, a deleted budget, a budget deleted and made again.
    s.put_budget(&budget("t2", 800), NOW).unwrap();
    s.delete_budget(ScopeType::Team, "t3").unwrap();
    s.put_budget(&budget("t4", 50), NOW).unwrap();
    s.delete_budget(ScopeType::Team, "t4").unwrap();
    s.put_budget(&budget("t4", 60), NOW).unwrap();
    let g = v1.poll(&s, "n1", NOW + 5);
    assert_eq!(names(&g), (false, vec!["t2".into(), "t4".into()], vec!["t3".into()]));
    assert_eq!(g.budgets[0].share_micros, Some(part(800, 0, 1)));
    v1.check(&s, "n1", NOW + 5);
    // A second Envoy, whose full state comes a budget a page: every
    // Envoy's next state is full (shares are cut anew).
    let mut v2 = View::new(1);
    let g2 = v2.poll(&s, "n2", NOW + 6);
    assert_eq!((g2.full, g2.budgets.len(), v2.pages), (true, 3, 3));
    let t1 = |g: &tollgate_control::store::GrantSnapshot| g.budgets.iter().find(|b| b.scope_id == "t1").and_then(|b| b.share_micros);
    // n1 holds its part of t1's room; n2 gets half of the rest at once.
    let free = 1000 - 100 - part(1000, 100, 1);
    assert_eq!(t1(&g2), Some(free.div_ceil(2)), "half of what n1 leaves free");
    let g1 = v1.poll(&s, "n1", NOW + 7);
    assert!(g1.full, "the number of Envoys changed");
    assert_eq!(t1(&g1), Some(part(1000, 100, 2)), "n1 gives back: its part of two");
    // n2's share of t1 was short of its fair part: sent again although nothing changed.
    let g2 = v2.poll(&s, "n2", NOW + 8);
    assert!(!g2.full);
    assert_eq!(t1(&g2), Some(part(1000, 100, 2)));
    assert!(g2.budgets.iter().all(|b| b.scope_id != "t4" || b.share_micros == Some(part(60, 0, 2))));
    v2.check(&s, "n2", NOW + 8);
    // Once fair, quiet again.
    assert_eq!(names(&v2.poll(&s, "n2", NOW + 9)), (false, none.clone(), none.clone()));
    v1.poll(&s, "n1", NOW + 9);
    v1.check(&s, "n1", NOW + 9);
    // A cursor this service did not write, or whose period has ended: the full state.
    assert!(s.grant("n1", NOW + 10, 60_000, Some("b2.99999.0.2.1.0"), 5000).unwrap().full);
    assert!(s.grant("n1", NOW + 10, 60_000, Some("garbage"), 5000).unwrap().full);
    let (_, end) = budget("t1", 0).bounds(NOW).unwrap();
    let mut late = View { cursor: v1.cursor.clone(), ..View::new(5000) };
    let g = late.poll(&s, "n1", end);
    assert!(g.full, "a new period starts every budget afresh");
    assert!(g.budgets.iter().all(|b| b.period_start_ms == end && b.used_micros == 0));
}

pub(super) fn a_full_state_in_pages_misses_nothing_that_changes_meanwhile(s: Arc<dyn Store>) {
    for t in ["a", "b", "c", "d"] {
        s.put_budget(&budget(t, 1000), NOW).unwrap();
    }
    let mut v = View::new(2);
    let first = v.step(&s, "n1", NOW);
    assert_eq!((first.full, first.more, names(&first).1), (true, true, vec!["a".to_string(), "b".to_string()]));
    // Between pages: a page already sent changes, one not yet sent is deleted, one is made.
    s.ingest("n1", &[rec("m1", "a", 10, 0, 0)], None, NOW).unwrap();
    s.delete_budget(ScopeType::Team, "d").unwrap();
    s.put_budget(&budget("bb", 1000), NOW).unwrap();
    let second = v.step(&s, "n1", NOW + 1);
    // The deletion comes with the next page (budget changes are caught up
    // page by page); the new budget is on that page already.
    assert_eq!(names(&second), (false, vec!["bb".to_string(), "c".to_string()], vec!["d".to_string()]));
    assert!(!second.more);
    // The delta after the last page brings the use that changed since the first.
    let after = v.poll(&s, "n1", NOW + 2);
    assert!(!after.full);
    assert!(names(&after).2.is_empty(), "the deletion was sent already");
    assert!(after.budgets.iter().any(|b| b.scope_id == "a" && b.used_micros == 10));
    v.check(&s, "n1", NOW + 2);
    // A delta of more budgets than a page comes in pages too; removals once.
    s.ingest("n1", &[rec("m2", "a", 1, 0, 0), rec("m3", "b", 1, 0, 0), rec("m4", "c", 1, 0, 0)], None, NOW).unwrap();
    s.delete_budget(ScopeType::Team, "bb").unwrap();
    let paged = v.poll(&s, "n1", NOW + 3);
    assert_eq!((paged.full, v.pages, names(&paged).1, names(&paged).2), (false, 2, vec!["a".into(), "b".into(), "c".into()], vec!["bb".to_string()]));
    v.check(&s, "n1", NOW + 3);
    // A page cursor that no longer holds starts the full state again.
    let mut w = View::new(2);
    w.step(&s, "n1", NOW + 3);
    let mut other = View::new(2);
    other.poll(&s, "n2", NOW + 3);
    let restart = w.step(&s, "n1", NOW + 4);
    assert!(restart.full, "another Envoy came: the shares are cut anew");
}

/// A limit set or a budget deleted while an Envoy walks the pages of a
/// full state reaches it with the walk's next page, wherever the budget
/// is in scope order; more changes than a page wait for the walk's end.
pub(super) fn a_budget_changed_during_a_walk_comes_with_the_next_page(s: Arc<dyn Store>) {
    for t in ["a", "b", "c", "d", "e", "f", "g"] {
        s.put_budget(&budget(t, 1000), NOW).unwrap();
    }
    let share = |g: &tollgate_control::store::GrantSnapshot, t: &str| g.budgets.iter().find(|b| b.scope_id == t).and_then(|b| b.share_micros);
    let mut v = View::new(3);
    assert_eq!(names(&v.step(&s, "n1", NOW)).1, ["a", "b", "c"]);
    // Walked already, not walked yet, deleted: three changes, a page's worth.
    s.put_budget(&budget("a", 400), NOW).unwrap();
    s.put_budget(&budget("f", 300), NOW).unwrap();
    s.delete_budget(ScopeType::Team, "b").unwrap();
    let second = v.step(&s, "n1", NOW + 1);
    let (full, mut sent, gone) = names(&second);
    sent.sort();
    assert_eq!((full, sent, gone), (false, vec!["a".into(), "d".into(), "e".into(), "f".into()], vec!["b".to_string()]));
    assert_eq!((share(&second, "a"), share(&second, "f"), second.more), (Some(part(400, 0, 1)), Some(part(300, 0, 1)), true));
    assert_eq!(names(&v.step(&s, "n1", NOW + 2)), (false, vec!["g".to_string()], vec![]));
    // Nothing is sent twice after the walk.
    assert_eq!(names(&v.poll(&s, "n1", NOW + 3)), (false, vec![], vec![]));
    v.check(&s, "n1", NOW + 3);
    // Four changes, more than a page: the walk goes on without them.
    let mut w = View::new(3);
    assert_eq!(names(&w.step(&s, "n2", NOW + 4)).1, ["a", "c", "d"]);
    v.poll(&s, "n1", NOW + 4); // n2 joined: n1 takes its new shares
    for (t, l) in [("c", 100), ("d", 200), ("e", 300), ("g", 400)] {
        s.put_budget(&budget(t, l), NOW).unwrap();
    }
    assert_eq!(names(&w.step(&s, "n2", NOW + 5)), (false, vec!["e".into(), "f".into(), "g".into()], vec![]), "only its own page");
    let rest = w.poll(&s, "n2", NOW + 6);
    assert!(rest.budgets.iter().any(|b| b.scope_id == "c"), "the delta after the walk brings them");
    w.check(&s, "n2", NOW + 6);
    // A delta in pages catches up the same way (both Envoys fair first, so
    // the delta is the use below).
    v.poll(&s, "n1", NOW + 6);
    w.poll(&s, "n2", NOW + 6);
    s.ingest("n2", &[rec("w1", "a", 1, 0, 0), rec("w2", "c", 1, 0, 0), rec("w3", "d", 1, 0, 0), rec("w4", "e", 1, 0, 0)], None, NOW).unwrap();
    let first = w.step(&s, "n2", NOW + 7);
    assert_eq!((first.full, first.more, names(&first).1), (false, true, vec!["a".to_string(), "c".to_string(), "d".to_string()]));
    s.put_budget(&budget("a", 50), NOW).unwrap();
    let second = w.step(&s, "n2", NOW + 8);
    let mut sent = names(&second).1;
    sent.sort();
    let limit = second.budgets.iter().find(|b| b.scope_id == "a").and_then(|b| b.limit_micros);
    assert_eq!((sent, limit, second.more), (vec!["a".to_string(), "e".to_string()], Some(50), false));
    w.poll(&s, "n2", NOW + 9);
    w.check(&s, "n2", NOW + 9);
}

pub(super) fn budgets_are_read_by_scope_by_type_and_a_page_at_a_time(s: Arc<dyn Store>) {
    let mut batch: Vec<Budget> = ["b", "a", "c"].iter().map(|t| budget(t, 10)).collect();
    batch.push(Budget { limit_micros: Some(5), ..Budget::monthly(ScopeType::Key, "k1", NOW) });
    s.put_budgets(&batch, NOW).unwrap();
    assert_eq!(s.get_budget(ScopeType::Team, "b").unwrap().map(|b| b.limit_micros), Some(Some(10)));
    assert!(s.get_budget(ScopeType::Project, "b").unwrap().is_none());
    let (n, some) = s.budgets_of_type(ScopeType::Team, 2).unwrap();
    assert_eq!((n, some.iter().map(|b| b.scope_id.as_str()).collect::<Vec<_>>()), (3, vec!["a", "b"]));
    assert_eq!(s.budgets_of_type(ScopeType::Project, 5).unwrap(), (0, vec![]));
    let ids = |v: Vec<Budget>| v.into_iter().map(|b| format!("{}:{}", b.scope_type.as_str(), b.scope_id)).collect::<Vec<_>>();
    assert_eq!(ids(s.budgets_page(None, 2).unwrap()), ["key:k1", "team:a"]);
    assert_eq!(ids(s.budgets_page(Some((ScopeType::Team, "a")), 5).unwrap()), ["team:b", "team:c"]);
    assert!(s.budgets_page(Some((ScopeType::Team, "c")), 5).unwrap().is_empty());
}

/// A silent Envoy's grants go page by page, each page's before its grants
/// are cut: all of them at the first page took longer than the filter
/// waits at a million budgets.
pub(super) fn a_silent_envoys_grants_are_reclaimed_page_by_page(s: Arc<dyn Store>) {
    let budgets: Vec<Budget> = (0..8).map(|i| budget(&format!("b{i}"), 1000)).collect();
    s.put_budgets(&budgets, NOW).unwrap();
    let (ttl, page) = (5_000, 4);
    let walk = |node: &str, now: u64| {
        let mut out = Vec::new();
        let mut g = s.grant(node, now, ttl, None, page).unwrap();
        loop {
            out.push((g.reclaimed, g.budgets.iter().map(|b| b.share_micros).collect::<Vec<_>>()));
            if !g.more {
                return out;
            }
            g = s.grant(node, now, ttl, Some(&g.cursor), page).unwrap();
        }
    };
    walk("a", NOW);
    walk("b", NOW + 1);
    walk("a", NOW + 2);
    // b held half of each; silent since NOW + 1, a walks its pages alone.
    let pages = walk("a", NOW + 10_000);
    assert_eq!(pages.len(), 2);
    for (reclaimed, shares) in &pages {
        assert_eq!(*reclaimed, 4, "b's grants of this page, and only those");
        assert_eq!(shares, &vec![Some(part(1000, 0, 1)); 4], "a holds its part of one once b's grant is gone");
    }
    // Nothing left to reclaim: the next walk deletes nothing.
    assert!(walk("a", NOW + 10_001).iter().all(|(r, _)| *r == 0));
}
