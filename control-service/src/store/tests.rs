use super::{fair_part, rebalance};

fn sum_ok(limit: u64, grants: &[(u64, Option<u64>)]) -> bool {
    grants.iter().map(|(u, g)| g.unwrap_or(*u).max(*u)).sum::<u64>() <= limit
}

#[test]
fn grants_share_fairly_and_never_exceed_the_limit() {
    // alone: everything left but the sixteenth kept for Envoys joining
    assert_eq!(rebalance(1000, 0, &[(0, None)], 0, 1), 938);
    // a second node arrives while the first holds its part: half of what is free, at once
    assert_eq!(rebalance(1000, 0, &[(0, Some(938)), (0, None)], 1, 2), 31);
    // a third arriving with it: half of what is still free
    assert_eq!(rebalance(1000, 0, &[(0, Some(938)), (0, Some(31)), (0, None)], 2, 3), 16);
    // the first polls again and shrinks to its fair part...
    assert_eq!(rebalance(1000, 0, &[(0, Some(938)), (0, Some(31))], 0, 2), 469);
    // ...which frees room for the second, which takes all it may now
    let g = [(0, Some(469)), (0, Some(31))];
    assert_eq!(rebalance(1000, 0, &g, 1, 2), 469);
    // node 0 used 400: its fair part is (1000-400)/2 less a sixteenth on top of its use
    assert_eq!(rebalance(1000, 400, &[(400, Some(500)), (0, Some(500))], 0, 2), 500);
    // the limit was raised: more for everyone
    assert_eq!(rebalance(2000, 400, &[(400, Some(500)), (0, Some(500))], 0, 2), 1150);
    // spend over a grant is committed; nothing more
    assert_eq!(rebalance(1000, 1100, &[(1100, Some(1000))], 0, 1), 1100);
    // a node that spent all its room is not a newcomer: it takes what is free, up to its part
    assert_eq!(rebalance(1000, 469, &[(469, Some(469)), (0, Some(469))], 0, 2), 531);
    // a newcomer where much is free (a node that left held it): its whole part at once,
    // half the reserve left for the next newcomer
    assert_eq!(rebalance(1000, 0, &[(0, Some(469)), (0, None)], 1, 2), 469);
    assert_eq!(rebalance(1000, 0, &[(0, Some(469)), (0, Some(31)), (0, None)], 2, 2), 469);
    // a budget of one micro-dollar: the one is granted
    assert_eq!(rebalance(1, 0, &[(0, None)], 0, 1), 1);
    assert_eq!(fair_part(1000, 0, 1) + 62, 1000);
    assert_eq!(fair_part(0, 5, 3), 0);
    // extremes: no overflow, never past the limit
    let max = u64::MAX;
    assert_eq!(rebalance(max, 0, &[(0, None)], 0, 1), max - max / 16);
    assert_eq!(rebalance(max, max, &[(max, Some(max)), (max, None)], 1, 2), max);
    assert_eq!(rebalance(max, 0, &[(0, Some(max)), (0, None)], 1, 0), 0);
    assert!(sum_ok(max, &[(0, Some(max - max / 16)), (0, Some(rebalance(max, 0, &[(0, Some(max - max / 16)), (0, None)], 1, 2)))]));
    // an index past the list (never given): what is free, up to the part
    assert_eq!(rebalance(5, 0, &[], 3, 1), 5);
    // random walks keep the sum within the limit
    let mut grants = vec![(0u64, None::<u64>); 3];
    let mut x = 12345u64;
    for step in 0..500 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let me = (x >> 33) as usize % 3;
        let g = rebalance(1000, grants.iter().map(|g| g.0).sum(), &grants, me, 3);
        grants[me].1 = Some(g);
        // the node spends part of its headroom
        let head = g.saturating_sub(grants[me].0);
        grants[me].0 += head / 2;
        assert!(sum_ok(1000, &grants), "step {step}: {grants:?}");
    }
}

#[test]
fn a_record_counts_against_the_budgets_of_its_own_scopes_only() {
    use super::{record_effects, Budget, ScopeIndex};
    use tollgate_protocol::record::{BudgetDecision, UsageRecord};
    use tollgate_protocol::scope::Scope;
    use tollgate_protocol::state::ScopeType;
    let now = 1_764_000_000_000;
    let mut budgets: Vec<Budget> = (0..2000).map(|i| Budget::monthly(ScopeType::Key, &format!("idle-{i}"), now)).collect();
    budgets.push(Budget::monthly(ScopeType::Team, "t", now));
    budgets.push(Budget::monthly(ScopeType::Key, "k", now));
    budgets.push(Budget::monthly(ScopeType::Project, "p", now));
    // the same id under another scope type is another budget
    budgets.push(Budget::monthly(ScopeType::Team, "k", now));
    let index = ScopeIndex::new(&budgets);
    let rec = |cost: u64, decision: BudgetDecision, scopes: Vec<Scope>| {
        let mut r: UsageRecord = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "r", "ts_ms": now, "key_id": "k", "key_hash": "", "team": "t", "project": "p", "tags": {}, "feature": null, "prompt_version": null, "user": null, "provider": null, "route": null, "model_requested": null, "model_upstream": null, "model_served": null, "error_code": null, "ttfb_ms": null, "budget_scopes": [],
            "api": "openai_chat", "stream": false, "status": 200, "outcome": "ok",
            "usage": {"input_tokens": 0, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0},
            "usage_source": "provider", "cost_micros": cost, "priced": true, "latency_ms": 1, "budget_decision": "ok"}))
        .unwrap_or_else(|e| panic!("{e}"));
        r.budget_decision = decision;
        r.budget_scopes = scopes;
        r
    };
    let start = budgets[2000].bounds(now).map(|p| p.0).unwrap_or_default();
    let mut counts = record_effects(&budgets, &index, &rec(5, BudgetDecision::Ok, vec![])).counts;
    counts.sort();
    assert_eq!(counts, vec![(2000, start), (2001, start), (2002, start)]);
    // nothing spent: counts against nothing
    assert!(record_effects(&budgets, &index, &rec(0, BudgetDecision::Ok, vec![])).counts.is_empty());
    // refused by its team budget (named twice by a hostile record): one refusal
    let team = Scope::new(ScopeType::Team, "t");
    let fx = record_effects(&budgets, &index, &rec(0, BudgetDecision::Denied, vec![team.clone(), team.clone()]));
    assert_eq!(fx.denied_by, vec![(2000, start)]);
    // a scope the record names but has no budget: nothing
    let fx = record_effects(&budgets, &index, &rec(0, BudgetDecision::Denied, vec![Scope::new(ScopeType::Project, "none")]));
    assert!(fx.denied_by.is_empty());
    // scopes on a record that was not refused are not refusals
    assert!(record_effects(&budgets, &index, &rec(5, BudgetDecision::Ok, vec![team])).denied_by.is_empty());
}
