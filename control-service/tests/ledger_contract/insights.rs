//! What the records tell beyond spend: cache economics and misses,
//! guardrail findings and policy, prompt versions and their cache alerts.

use super::*;

pub(super) fn cache_economics_sum_over_sum_and_keep_not_reported_apart(s: Arc<dyn Store>) {
    use tollgate_control::reports::{Dim, ReportQuery};
    let with = |id: &str, team: &str, cached: u64, reported: bool, saved: i64| {
        let mut r = rec(id, team, 100, 1000, 10);
        r.usage.cached_input_tokens = cached;
        r.usage.cache_reported = reported;
        r.cache_savings_micros = saved;
        r
    };
    // team x: 400 of 2000 reported input cached, one request paid a write premium
    s.ingest("n", &[with("c1", "x", 400, true, 900), with("c2", "x", 0, true, -125), with("c3", "y", 0, false, 0)], None, NOW).unwrap();
    let q = ReportQuery { group_by: vec![Dim::Team], from_ms: NOW - 1, to_ms: NOW + 1, ..Default::default() };
    let rows = s.report(&q).unwrap();
    let x = rows.iter().find(|r| r.group[0].as_deref() == Some("x")).unwrap();
    let y = rows.iter().find(|r| r.group[0].as_deref() == Some("y")).unwrap();
    assert_eq!((x.cache_hit_rate_permille(), x.cache_savings_micros, x.cache_reported_input_tokens), (Some(200), 775, 2000));
    assert_eq!((y.cache_hit_rate_permille(), y.cache_savings_micros), (None, 0), "not reported is not 0 %");
    let csv = tollgate_control::reports::to_csv(&q, &rows);
    assert!(csv.contains(",20.0,775,0.000775\r\n") && csv.contains(",,0,0.000000\r\n"), "{csv}");
    let total = s.report(&ReportQuery { from_ms: NOW - 1, to_ms: NOW + 1, ..Default::default() }).unwrap();
    assert_eq!(total[0].cache_hit_rate_permille(), Some(200), "requests that did not report are left out of the rate");
}

pub(super) fn guardrail_findings_answer_who_sent_what_where_and_expire(s: Arc<dyn Store>) {
    use tollgate_control::store::AuditQuery;
    use tollgate_protocol::record::Guardrails;
    let with = |id: &str, team: &str, provider: &str, classes: &[(&str, u64)], action: &str, ts: u64| {
        let mut r = rec(id, team, 1, 1, 1);
        r.ts_ms = ts;
        r.provider = Some(provider.into());
        r.guardrails = Some(Guardrails {
            classes: classes.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            action: action.into(),
            policy: "p1".into(),
            response_classes: Default::default(),
            response_action: None,
            restored: 0,
        });
        r
    };
    // An answer that carried e-mail addresses (the request had nothing).
    let mut answer = with("g5", "labs", "anthropic", &[], "none", NOW);
    if let Some(g) = answer.guardrails.as_mut() {
        g.response_classes = [("email".to_string(), 2)].into();
        g.response_action = Some("redacted".into());
    }
    s.ingest("n", &[
        with("g1", "search", "openai", &[("card", 1)], "blocked", NOW),
        with("g2", "search", "openai", &[("card", 2), ("email", 1)], "blocked", NOW),
        with("g3", "labs", "anthropic", &[("email", 3)], "redacted", NOW),
        with("g4", "labs", "anthropic", &[("card", 1)], "blocked", NOW - 40 * 86_400_000),
        rec("plain", "labs", 1, 1, 1),
        answer,
    ], None, NOW).unwrap();
    // ingesting the same records again adds nothing
    s.ingest("n", &[with("g1", "search", "openai", &[("card", 1)], "blocked", NOW)], None, NOW).unwrap();
    let last_month = AuditQuery { from_ms: NOW - 30 * 86_400_000, to_ms: NOW + 1, class: Some("card".into()), ..Default::default() };
    let rows = s.audit_summary(&last_month).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].team.as_str(), rows[0].provider.as_deref(), rows[0].requests, rows[0].values), ("search", Some("openai"), 2, 3));
    let all = s.audit_summary(&AuditQuery { from_ms: 0, to_ms: NOW + 1, ..Default::default() }).unwrap();
    assert_eq!(all.iter().map(|r| r.requests).sum::<u64>(), 6);
    let found = s.audit_findings(&AuditQuery { from_ms: 0, to_ms: NOW + 1, team: Some("labs".into()), ..Default::default() }, 100).unwrap();
    assert_eq!(
        found.iter().map(|f| (f.record_id.as_str(), f.direction.as_str(), f.class.as_str(), f.count, f.action.as_str())).collect::<Vec<_>>(),
        vec![("g4", "request", "card", 1, "blocked"), ("g3", "request", "email", 3, "redacted"), ("g5", "response", "email", 2, "redacted")]
    );
    let answers = AuditQuery { from_ms: 0, to_ms: NOW + 1, direction: Some("response".into()), ..Default::default() };
    let rows = s.audit_summary(&answers).unwrap();
    assert_eq!(rows.iter().map(|r| (r.team.as_str(), r.direction.as_str(), r.values)).collect::<Vec<_>>(), vec![("labs", "response", 2)]);
    // retention
    assert_eq!(s.purge_audit(NOW - 30 * 86_400_000).unwrap(), 1);
    assert_eq!(s.audit_findings(&AuditQuery { from_ms: 0, to_ms: NOW + 1, ..Default::default() }, 100).unwrap().len(), 5);
}

pub(super) fn the_guardrail_policy_has_one_current_version_and_a_history(s: Arc<dyn Store>) {
    use tollgate_protocol::guard::PolicyDoc;
    assert_eq!((s.state_seqs().unwrap().guardrails, s.guard_policy().unwrap().policy), (0, None), "never set");
    let p1: PolicyDoc = serde_json::from_value(serde_json::json!({"version": "v1", "actions": {"email": "redact"}, "responses": "observe"})).unwrap();
    let d = s.set_guard_policy(Some(&p1), NOW).unwrap();
    assert_eq!((d.seq, d.policy.as_ref()), (1, Some(&p1)));
    let p2: PolicyDoc = serde_json::from_value(serde_json::json!({"version": "v2", "custom": [{"name": "code", "words": ["Bluebird"]}], "restore": true})).unwrap();
    s.set_guard_policy(Some(&p2), NOW + 1).unwrap();
    let now = s.guard_policy().unwrap();
    assert_eq!((now.seq, now.policy, now.updated_ms), (2, Some(p2), NOW + 1), "the newest is in force, exactly as put");
    let cleared = s.set_guard_policy(None, NOW + 2).unwrap();
    assert_eq!((cleared.seq, s.guard_policy().unwrap().policy, s.state_seqs().unwrap().guardrails), (3, None, 3), "cleared is a change too");
}

pub(super) fn prompt_versions_are_immutable_and_labels_move(s: Arc<dyn Store>) {
    use tollgate_protocol::prompts::{content_hash, PromptContent};
    let c = |sys: &str| serde_json::from_value::<PromptContent>(serde_json::json!({"system": sys, "messages": [{"role": "user", "content": "Q: {{q}}"}]})).unwrap();
    assert_eq!((s.state_seqs().unwrap().prompts, s.prompts_current().unwrap().prompts.len()), (0, 0));
    let (v1, created) = s.add_prompt_version("support", &c("You help."), "ann", Some("first"), NOW).unwrap();
    assert_eq!((v1.version, created, v1.hash.clone()), (1, true, content_hash(&c("You help."))));
    let (again, created) = s.add_prompt_version("support", &c("You help."), "bob", None, NOW + 1).unwrap();
    assert_eq!((again.version, created, again.created_by.as_str()), (1, false, "ann"), "same content, same version");
    let (v2, _) = s.add_prompt_version("support", &c("You help, briefly."), "bob", None, NOW + 2).unwrap();
    assert_eq!(v2.version, 2);
    s.add_prompt_version("billing", &c("Billing."), "ann", None, NOW + 3).unwrap();
    s.set_prompt_label("support", "production", 1, "ann", NOW + 4).unwrap();
    s.set_prompt_label("support", "production", 2, "bob", NOW + 5).unwrap();
    assert!(matches!(s.set_prompt_label("support", "staging", 9, "bob", NOW), Err(StoreError::NotFound(_))));
    assert!(matches!(s.set_prompt_label("nope", "production", 1, "bob", NOW), Err(StoreError::NotFound(_))));
    let view = s.prompt("support").unwrap().unwrap();
    assert_eq!(view.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(view.versions[0].content, c("You help."), "a version keeps its content");
    assert_eq!(view.labels.get("production"), Some(&2));
    let h: Vec<(String, Option<u32>, Option<String>, String)> = view.history.iter().map(|e| (e.what.clone(), e.version, e.label.clone(), e.by.clone())).collect();
    assert_eq!(h, vec![
        ("version".into(), Some(1), None, "ann".into()), ("version".into(), Some(2), None, "bob".into()),
        ("label".into(), Some(1), Some("production".into()), "ann".into()), ("label".into(), Some(2), Some("production".into()), "bob".into()),
    ]);
    let doc = s.prompts_current().unwrap();
    assert_eq!(doc.seq, s.state_seqs().unwrap().prompts);
    assert_eq!(doc.seq, 5, "every change numbered: 3 versions, 2 label moves, and not the unchanged push");
    assert_eq!(doc.prompts.iter().map(|p| (p.name.as_str(), p.versions.len(), p.labels.get("production").copied())).collect::<Vec<_>>(),
               vec![("billing", 1, None), ("support", 2, Some(2))]);
    let list = s.list_prompts().unwrap();
    assert_eq!((list[1].name.as_str(), list[1].latest, list[1].updated_ms), ("support", 2, NOW + 5));
    assert!(s.prompt("nope").unwrap().is_none());
}

pub(super) fn cache_misses_sum_per_feature_and_say_why(s: Arc<dyn Store>) {
    use tollgate_control::store::CacheMissQuery;
    use tollgate_protocol::record::CacheMiss;
    let miss = |id: &str, feature: &str, reason: &str, lost: u64| {
        let mut r = rec(id, "search", 10, 5000, 10);
        r.feature = Some(feature.into());
        r.prompt_version = Some("support@3#abcdef12".into());
        r.cache_miss = Some(CacheMiss { reason: reason.into(), segment: (reason == "prefix_changed").then(|| "system".into()), offset: Some(0), lost_micros: lost });
        r
    };
    s.ingest("n", &[miss("c1", "chat", "prefix_changed", 1_000), miss("c2", "chat", "prefix_changed", 2_500), miss("c3", "search", "not_cached", 400),
                    rec("plain", "search", 1, 1, 1)], None, NOW).unwrap();
    s.ingest("n", &[miss("c1", "chat", "prefix_changed", 1_000)], None, NOW).unwrap();
    let rows = s.cache_misses(&CacheMissQuery { from_ms: 0, to_ms: NOW + 1, ..Default::default() }).unwrap();
    assert_eq!(rows.iter().map(|r| (r.feature.as_deref(), r.reason.as_str(), r.requests, r.lost_micros)).collect::<Vec<_>>(),
               vec![(Some("chat"), "prefix_changed", 2, 3_500), (Some("search"), "not_cached", 1, 400)], "costliest first, each record once");
    let sentence = rows[0].sentence();
    assert!(sentence.starts_with("feature chat (prompt support@3#abcdef12) lost $0.003500 to cache misses on 2 requests since "), "{sentence}");
    assert!(sentence.ends_with("the system prompt's first bytes change on every request"), "{sentence}");
    let only = s.cache_misses(&CacheMissQuery { from_ms: 0, to_ms: NOW + 1, feature: Some("search".into()), ..Default::default() }).unwrap();
    assert_eq!(only.len(), 1);
}

pub(super) fn a_new_prompt_version_that_loses_the_cache_raises_one_alert(s: Arc<dyn Store>) {
    let call = |id: String, version: &str, cached: u64, ts: u64| {
        let mut r = rec(&id, "search", 10, 1000, 10);
        r.ts_ms = ts;
        r.feature = Some("chat".into());
        r.prompt_version = Some(version.into());
        r.usage.cached_input_tokens = cached;
        r.usage.cache_reported = true;
        r
    };
    let mut batch: Vec<UsageRecord> = (0..5).map(|i| call(format!("a{i}"), "support@1#aaaaaaaa", 600, NOW - 3_600_000 + i)).collect();
    // the same feature on another version that keeps its cache: no alert
    batch.extend((0..5).map(|i| call(format!("k{i}"), "support@0#00000000", 700, NOW - 7_200_000 + i)));
    s.ingest("n", &batch, None, NOW).unwrap();
    assert_eq!(s.check_cache_drops(NOW).unwrap(), 0, "hit rate 60 % after 70 %: not a drop by half");
    let later: Vec<UsageRecord> = (0..5).map(|i| call(format!("b{i}"), "support@2#bbbbbbbb", 0, NOW - 60_000 + i)).collect();
    s.ingest("n", &later, None, NOW).unwrap();
    assert_eq!(s.check_cache_drops(NOW).unwrap(), 1);
    assert_eq!(s.check_cache_drops(NOW + 1).unwrap(), 0, "once per feature and version");
    let alerts = s.list_cache_alerts(10).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!((a.feature.as_str(), a.prompt_version.as_str(), a.previous_version.as_str()), ("chat", "support@2#bbbbbbbb", "support@1#aaaaaaaa"));
    assert_eq!((a.hit_before_permille, a.hit_after_permille, a.requests_after, a.delivered_ms), (600, 0, 5, None));
    let due = s.due_cache_alerts(NOW).unwrap();
    assert_eq!(due.len(), 1);
    s.cache_alert_attempted(due[0].id, true, None, NOW, NOW).unwrap();
    assert!(s.due_cache_alerts(NOW + 10).unwrap().is_empty());
    assert_eq!(s.list_cache_alerts(10).unwrap()[0].delivered_ms, Some(NOW));
}

/// Guardrail findings, cache misses, JSON checks and captures go in with
/// multi-row statements cut into a few sizes (`db::statement_chunks`):
/// batches on each side of every cut keep every row, once, and a batch
/// sent again adds none.
pub(super) fn findings_of_batches_of_every_size_are_stored_once(s: Arc<dyn Store>) {
    use tollgate_control::store::{AuditQuery, CacheMissQuery};
    use tollgate_protocol::record::{CacheMiss, Capture, Guardrails, JsonCheck};
    let with_findings = |id: String| {
        let mut r = rec(&id, "t", 1, 1, 1);
        r.feature = Some("summarise".into());
        r.guardrails = Some(Guardrails {
            classes: [("email".to_string(), 1), ("phone".to_string(), 2)].into(),
            action: "observed".into(),
            policy: "p1".into(),
            response_classes: [("card".to_string(), 1)].into(),
            response_action: Some("observed".into()),
            restored: 0,
        });
        r.cache_miss = Some(CacheMiss { reason: "prefix_changed".into(), segment: Some("system".into()), offset: Some(7), lost_micros: 2 });
        r.json_check = Some(JsonCheck { valid: true, repaired: false, error: None });
        r.capture = Some(Capture { request: format!("{{\"q\":\"{id}\"}}"), response: "{}".into() });
        r
    };
    let sizes = [1usize, 2, 3, 255, 256, 257, 499, 500, 501, 1023];
    let mut batches = Vec::new();
    for (b, n) in sizes.iter().enumerate() {
        let batch: Vec<UsageRecord> = (0..*n).map(|i| with_findings(format!("f{b}-{i}"))).collect();
        let ack = s.ingest("n", &batch, None, NOW).unwrap();
        assert_eq!((ack.accepted, ack.duplicates), (*n as u64, 0), "batch of {n}");
        batches.push(batch);
    }
    // Sent again (a retry), and once more with new records among the old.
    assert_eq!(s.ingest("n", &batches[5], None, NOW).unwrap().accepted, 0);
    let mut mixed = batches[6].clone();
    mixed.extend((0..3).map(|i| with_findings(format!("late-{i}"))));
    let ack = s.ingest("n", &mixed, None, NOW).unwrap();
    assert_eq!((ack.accepted, ack.duplicates), (3, 499));
    let total: u64 = sizes.iter().sum::<usize>() as u64 + 3;
    let q = AuditQuery { from_ms: NOW - 1000, to_ms: NOW + 1000, class: None, team: None, provider: None, action: None, direction: None };
    let per_class: BTreeMap<(String, String), (u64, u64)> =
        s.audit_summary(&q).unwrap().into_iter().map(|a| ((a.direction, a.class), (a.requests, a.values))).collect();
    let expected: BTreeMap<(String, String), (u64, u64)> = [
        (("request".to_string(), "email".to_string()), (total, total)),
        (("request".to_string(), "phone".to_string()), (total, 2 * total)),
        (("response".to_string(), "card".to_string()), (total, total)),
    ]
    .into();
    assert_eq!(per_class, expected);
    let misses = s.cache_misses(&CacheMissQuery { from_ms: NOW - 1000, to_ms: NOW + 1000, team: None, feature: None }).unwrap();
    assert_eq!(misses.iter().map(|m| (m.requests, m.lost_micros)).collect::<Vec<_>>(), [(total, 2 * total)]);
    let checks = s.json_compliance(NOW - 1000, NOW + 1000).unwrap();
    assert_eq!(checks.iter().map(|c| (c.asked, c.valid)).collect::<Vec<_>>(), [(total, total)]);
    let items = s.eval_items("summarise", 10_000).unwrap();
    assert_eq!(items.len() as u64, total);
    assert!(items.iter().any(|i| i.record_id == "late-2" && i.request == "{\"q\":\"late-2\"}"));
}
