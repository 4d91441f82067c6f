//! Envoys coming and going: silence, slow answers, answers that never
//! arrived, newcomers' fair parts, deltas too large for pages.

use super::*;

pub(super) fn an_envoy_back_from_silence_gets_the_full_state_with_its_reclaimed_share(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let (mut a, mut b) = (View::new(5000), View::new(5000));
    a.poll(&s, "a", NOW);
    b.poll(&s, "b", NOW + 1);
    a.poll(&s, "a", NOW + 2);
    let share = |v: &View| v.budgets.values().next().and_then(|d| d.share_micros);
    b.poll(&s, "b", NOW + 3);
    assert_eq!(share(&b), Some(part(1000, 0, 2)));
    // b falls silent past the TTL (60 s here) with its cursor; a polls on and
    // is handed the room b held.
    for t in [30_000, 70_000, 100_000] {
        a.poll(&s, "a", NOW + t);
    }
    assert_eq!(share(&a), Some(part(1000, 0, 1)), "b's grant was reclaimed");
    // b comes back: the number of Envoys is what its cursor says, but its
    // grant is gone; it must not keep spending the share it remembers.
    let g = b.poll(&s, "b", NOW + 101_000);
    assert!(g.full, "a silent Envoy starts over");
    let free = 1000 - part(1000, 0, 1);
    assert_eq!(share(&b), Some(free.div_ceil(2)), "half of what a leaves free, until a polls again");
    // Its next poll (no longer joining) takes the rest of what is free.
    b.poll(&s, "b", NOW + 101_001);
    assert_eq!(share(&b), Some(free));
    b.check(&s, "b", NOW + 101_001);
}

pub(super) fn an_envoy_answered_slowly_counts_as_seen_when_answered(s: Arc<dyn Store>) {
    s.put_budget(&budget("t", 1000), NOW).unwrap();
    let mut v = View::new(5000);
    v.poll(&s, "a", NOW);
    // The answer took 50 s of the 60 s TTL; the next poll comes 20 s after it.
    s.node_seen("a", NOW + 50_000).unwrap();
    s.node_seen("a", NOW + 1).unwrap(); // never moved back
    let g = v.poll(&s, "a", NOW + 70_000);
    assert!(!g.full, "the Envoy was not silent: its cursor still holds");
    assert_eq!(s.nodes_active(NOW + 70_000, 60_000).unwrap(), 1);
    s.node_seen("nobody", NOW).unwrap();
    assert_eq!(s.nodes_active(NOW, 60_000).unwrap(), 1, "a node is made only by its poll");
    v.check(&s, "a", NOW + 70_000);
}

/// An Envoy as the filter's background service runs it: polls once a
/// second, the next page at once while a state comes in pages.
struct Sim {
    name: &'static str,
    cursor: String,
    next_at: u64,
    last: Option<tollgate_control::store::GrantSnapshot>,
    /// Each budget's share as the Envoy holds it.
    shares: BTreeMap<String, Option<u64>>,
    /// The next answer never arrives.
    lose_next: bool,
}

impl Sim {
    /// Each of `sims` holds `budgets` budgets, a share of `fair` in each.
    fn assert_fair(sims: &[&Sim], budgets: usize, fair: u64) {
        for sim in sims {
            assert_eq!(sim.shares.len(), budgets, "{} holds every budget", sim.name);
            let unfair: Vec<_> = sim.shares.iter().filter(|(_, v)| **v != Some(fair)).collect();
            assert!(unfair.is_empty(), "{} not at its fair part: {unfair:?}", sim.name);
        }
    }
    fn new(name: &'static str, at: u64) -> Sim {
        Sim { name, cursor: String::new(), next_at: at, last: None, shares: BTreeMap::new(), lose_next: false }
    }
    fn tick(&mut self, s: &Arc<dyn Store>, now: u64, ttl: u64, page: usize) {
        if now < self.next_at {
            return;
        }
        let cursor = (!self.cursor.is_empty()).then_some(self.cursor.as_str());
        let g = s.grant(self.name, now, ttl, cursor, page).unwrap();
        if self.lose_next {
            // The answer was written but never arrived (the Envoy gave up
            // waiting): it asks again later with the cursor it has.
            self.lose_next = false;
            self.next_at = now + 1000;
            return;
        }
        if g.full {
            // The first page of a full state: what it leaves out is gone.
            self.shares.clear();
        }
        for b in &g.budgets {
            self.shares.insert(b.scope_id.clone(), b.share_micros);
        }
        for r in &g.removed {
            self.shares.remove(&r.scope_id);
        }
        self.cursor = g.cursor.clone();
        self.next_at = now + if g.more { 100 } else { 1000 };
        self.last = Some(g);
    }
}

pub(super) fn a_newcomer_gets_its_fair_part_after_envoys_come_and_go(s: Arc<dyn Store>) {
    let budgets: Vec<Budget> = (0..30).map(|i| budget(&format!("b{i:02}"), 1000)).collect();
    s.put_budgets(&budgets, NOW).unwrap();
    let (ttl, page) = (5_000, 4);
    // The bench's sequence: one Envoy alone; a new one fetches its full
    // state and falls silent; 6 s later a probe joins and keeps polling.
    let mut big = Sim::new("big", NOW);
    let mut new = Sim::new("new", NOW + 5_000);
    let mut probe = Sim::new("probe", u64::MAX);
    let mut new_done = false;
    let mut t = NOW;
    while t < NOW + 120_000 {
        big.tick(&s, t, ttl, page);
        if !new_done {
            new.tick(&s, t, ttl, page);
            if new.last.as_ref().is_some_and(|g| !g.more) {
                new_done = true;
                probe.next_at = t + 6_000;
            }
        }
        probe.tick(&s, t, ttl, page);
        t += 100;
    }
    let g = probe.last.clone().expect("the probe polled");
    assert!(!g.full && !g.more && g.budgets.is_empty(), "the probe's deltas empty: {:?}", g.budgets.iter().map(|b| (&b.scope_id, b.share_micros)).collect::<Vec<_>>());
    // Two Envoys active, nothing spent: each holds its part of two of every budget.
    Sim::assert_fair(&[&big, &probe], 30, part(1000, 0, 2));
}

/// The stuck newcomer of `make bench-scale`: an Envoy's full state whose
/// first page took longer than the filter waits (it reclaimed a silent
/// Envoy's million grants) was written but never applied, and the Envoy's
/// old cursor still held, the count of active Envoys being back where it
/// was (2, 1, then 2 again with another Envoy). The ledger believed it held
/// the whole of every budget of that page, and the newcomer got none of
/// them, for good.
pub(super) fn an_answer_that_never_arrived_is_sent_again(s: Arc<dyn Store>) {
    let budgets: Vec<Budget> = (0..8).map(|i| budget(&format!("b{i}"), 1000)).collect();
    s.put_budgets(&budgets, NOW).unwrap();
    let (ttl, page) = (5_000, 4);
    let mut big = Sim::new("big", NOW);
    let mut gone = Sim::new("gone", NOW + 1_000);
    let mut probe = Sim::new("probe", u64::MAX);
    let mut t = NOW;
    while t < NOW + 60_000 {
        if t == NOW + 8_000 {
            // "gone" fell silent at 3 s: big's next poll is a full state
            // (alone again), and its answer is lost; the probe joins.
            big.next_at = t;
            big.lose_next = true;
            probe.next_at = t + 100;
        }
        big.tick(&s, t, ttl, page);
        if t < NOW + 3_000 {
            gone.tick(&s, t, ttl, page);
        }
        probe.tick(&s, t, ttl, page);
        t += 100;
    }
    Sim::assert_fair(&[&big, &probe], 8, part(1000, 0, 2));
}

pub(super) fn a_delta_larger_than_a_few_pages_comes_as_the_full_state(s: Arc<dyn Store>) {
    let mut v = View::new(2);
    s.put_budget(&budget("first", 1000), NOW).unwrap();
    v.poll(&s, "n1", NOW);
    // Four pages' worth of changes: still a delta.
    let few: Vec<Budget> = (0..8).map(|i| budget(&format!("few{i}"), 1000)).collect();
    s.put_budgets(&few, NOW).unwrap();
    let g = v.poll(&s, "n1", NOW + 1);
    assert_eq!((g.full, g.budgets.len(), v.pages), (false, 8, 4));
    // One more (a bulk import): the full state, in pages, adds up the same.
    let many: Vec<Budget> = (0..9).map(|i| budget(&format!("many{i}"), 1000)).collect();
    s.put_budgets(&many, NOW).unwrap();
    let g = v.poll(&s, "n1", NOW + 2);
    assert_eq!((g.full, g.budgets.len(), v.pages), (true, 18, 9));
    v.check(&s, "n1", NOW + 2);
    // Many ingest batches (more than the delta's four pages hold budgets) on few
    // budgets: a delta of those budgets, not the full state again (a busy
    // fleet would get nothing but full states).
    for i in 0..30 {
        s.ingest("n1", &[rec(&format!("busy{i}"), if i % 2 == 0 { "few0" } else { "few1" }, 1, 0, 0)], None, NOW + 3).unwrap();
    }
    let g = v.poll(&s, "n1", NOW + 3);
    assert_eq!((g.full, names(&g).1), (false, vec!["few0".to_string(), "few1".to_string()]));
    v.check(&s, "n1", NOW + 3);
    // Use changed on more budgets than four pages: the full state.
    let spread: Vec<UsageRecord> = (0..9).map(|i| rec(&format!("spread{i}"), &format!("many{i}"), 1, 0, 0)).collect();
    s.ingest("n1", &spread, None, NOW + 4).unwrap();
    assert!(v.poll(&s, "n1", NOW + 4).full);
    v.check(&s, "n1", NOW + 4);
}
