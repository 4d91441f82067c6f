//! Spend reports (grouped, bucketed, filtered, the monthly Markdown) and
//! budget requests approved once.

use super::*;

pub(super) fn reports_group_bucket_filter_and_monthly_markdown(s: Arc<dyn Store>) {
    use tollgate_control::reports::{Bucket, Dim, ReportQuery};
    let day = 86_400_000u64;
    let mut recs = vec![];
    for i in 0..10u64 {
        let mut r = rec(&format!("a{i}"), if i % 2 == 0 { "search" } else { "labs" }, 100 + i, 1000, 10);
        r.model_upstream = Some(if i < 7 { "gpt-5.4".into() } else { "deepseek-v4".into() });
        r.usage.cached_input_tokens = 250;
        r.feature = Some("summarise".into());
        r.ts_ms = NOW - (i % 3) * day;
        // Sessions: three records of one Claude Code session, one of another, the rest none.
        r.session_id = match i {
            0..=2 => Some("cc-session-1".into()),
            3 => Some("cc-session-2".into()),
            _ => None,
        };
        if i == 9 {
            r.status = 429;
            r.outcome = Outcome::Rejected;
        }
        recs.push(r);
    }
    s.ingest("n", &recs, None, NOW).unwrap();
    let q = |group_by: Vec<Dim>| ReportQuery { group_by, from_ms: NOW - 5 * day, to_ms: NOW + 1, ..Default::default() };

    let by_team = s.report(&q(vec![Dim::Team])).unwrap();
    assert_eq!(by_team.len(), 2);
    assert_eq!(by_team[0].group, vec![Some("labs".to_string())]); // 101+103+105+107+109 > 100+102+...
    assert_eq!(by_team[0].cost_micros, 525);
    assert_eq!(by_team[0].rate_limited, 1);
    assert_eq!(by_team[0].cache_share_permille(), 250);

    let mut f = q(vec![Dim::Model]);
    f.filters = vec![(Dim::Team, "search".into())];
    let by_model = s.report(&f).unwrap();
    assert_eq!(by_model.iter().map(|r| r.requests).sum::<u64>(), 5);

    let mut b = q(vec![]);
    b.bucket = Some(Bucket::Day);
    let days = s.report(&b).unwrap();
    assert_eq!(days.len(), 3);
    assert!(days.windows(2).all(|w| w[0].bucket_start_ms < w[1].bucket_start_ms));
    assert_eq!(days.iter().map(|r| r.requests).sum::<u64>(), 10);

    let mut t = q(vec![Dim::Model]);
    t.top = Some(1);
    assert_eq!(s.report(&t).unwrap().len(), 1);

    // What one session cost, and every session's cost (records without one grouped as none).
    let by_session = s.report(&q(vec![Dim::Session])).unwrap();
    let of = |sid: Option<&str>| by_session.iter().find(|r| r.group == vec![sid.map(str::to_string)]).map(|r| (r.requests, r.cost_micros));
    assert_eq!(of(Some("cc-session-1")), Some((3, 100 + 101 + 102)));
    assert_eq!(of(Some("cc-session-2")), Some((1, 103)));
    assert_eq!(of(None).map(|x| x.0), Some(6));
    let mut one = q(vec![Dim::Model]);
    one.filters = vec![(Dim::Session, "cc-session-1".into())];
    assert_eq!(s.report(&one).unwrap().iter().map(|r| r.requests).sum::<u64>(), 3);

    let month = tollgate_control::monthly::current_month(NOW);
    let (from, to, prev) = tollgate_control::monthly::month_bounds(&month).unwrap();
    let md = tollgate_control::monthly::render(&*s, &month, from, to, prev).unwrap();
    assert!(md.starts_with(&format!("# AI spend review — {month}")), "{md}");
    assert!(md.contains("**Total spend: $0.001045**"), "{md}");
    assert!(md.contains("| gpt-5.4 | 7 | 70.0% |"), "{md}");
    assert!(md.contains("25.0% of input tokens were served from provider prompt caches"), "{md}");
    assert!(md.contains("| summarise | (none) | gpt-5.4 | 7 |"), "{md}");
}

pub(super) fn concurrent_approvals_act_once_and_apply_the_limit_with_the_decision(s: Arc<dyn Store>) {
    use tollgate_control::store::IncreaseRequest;
    let r = s
        .create_request(&IncreaseRequest {
            id: 0,
            scope_type: ScopeType::Team,
            scope_id: "growth".into(),
            limit_micros: Some(9_000_000),
            limit_tokens: None,
            justification: "launch".into(),
            requested_by: "growth-app".into(),
            created_ms: 1,
            status: "pending".into(),
            decided_by: None,
            decided_ms: None,
            note: None,
        })
        .unwrap();
    let results: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || s.decide_request(r.id, true, &format!("admin{i}"), None, 10 + i))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one approval acts");
    let b = s.budgets_page(None, usize::MAX).unwrap().into_iter().find(|b| b.scope_id == "growth").unwrap();
    assert_eq!(b.limit_micros, Some(9_000_000), "the limit applied with the decision");
    // a refused request changes no budget
    let mut other = s.create_request(&IncreaseRequest { scope_id: "ops".into(), ..r.clone() }).unwrap();
    other = s.decide_request(other.id, false, "admin", Some("no"), 20).unwrap();
    assert_eq!(other.status, "refused");
    assert!(s.budgets_page(None, usize::MAX).unwrap().iter().all(|b| b.scope_id != "ops"));
}
