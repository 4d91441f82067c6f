//! Evaluations: a feature's captured requests replayed through Envoy to a
//! candidate model (so keys, prices and budgets apply), each answer scored
//! by deterministic checks (the JSON the request asked for, regexes, exact
//! match) and by an LLM judge comparing it with the answer the feature got
//! in production (pairwise, with a rubric); a pass rate with its 95 %
//! Wilson interval, cost per request and latency, candidate against
//! incumbent. Honest under failure: a judge answer without a readable
//! verdict leaves the item unscored (never passed), a failed replay fails
//! the item, and the run stops when its own budget is spent.
//!
//! The gateway: `TOLLGATE_EVAL_GATEWAY` (Envoy's listener URL) and
//! `TOLLGATE_EVAL_KEY` (a virtual key, ideally of a team with its own budget).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tollgate_protocol::jsonfix;

use crate::store::EvalItem;

/// What to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    pub feature: String,
    pub candidate: String,
    /// The judge model (through the gateway); none: deterministic checks only.
    #[serde(default)]
    pub judge: Option<String>,
    #[serde(default)]
    pub rubric: Option<String>,
    /// Regular expressions every candidate answer must match.
    #[serde(default)]
    pub regex: Vec<String>,
    /// The candidate's answer must equal the incumbent's (trimmed).
    #[serde(default)]
    pub exact: bool,
    #[serde(default = "default_items")]
    pub max_items: u32,
    /// The run's own budget (replays and judge calls), micro-dollars.
    #[serde(default = "default_budget")]
    pub budget_micros: u64,
}

fn default_items() -> u32 {
    50
}

fn default_budget() -> u64 {
    1_000_000
}

/// Checks a spec; Err names the field.
pub fn check_spec(s: &EvalSpec) -> Result<(), String> {
    let name = |v: &str| !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_control);
    if !name(&s.feature) {
        return Err("feature: 1 to 256 characters, no control characters".into());
    }
    if !name(&s.candidate) || s.judge.as_deref().is_some_and(|j| !name(j)) {
        return Err("candidate/judge: a model name".into());
    }
    if s.rubric.as_ref().is_some_and(|r| r.len() > 4000) {
        return Err("rubric: at most 4000 bytes".into());
    }
    if s.regex.len() > 16 {
        return Err("regex: at most 16".into());
    }
    for (i, r) in s.regex.iter().enumerate() {
        tollgate_protocol::guard::compile_pattern(r).map_err(|e| format!("regex[{i}]: {e}"))?;
    }
    if !(1..=1000).contains(&s.max_items) {
        return Err("max_items: 1 to 1000".into());
    }
    if s.budget_micros == 0 || s.budget_micros > 1_000_000_000 {
        return Err("budget_micros: 1 to 1000000000".into());
    }
    Ok(())
}

/// One item's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemResult {
    pub item: i64,
    /// None: unscored (the judge's verdict could not be read).
    pub passed: Option<bool>,
    pub why: String,
    pub cost_micros: u64,
    pub latency_ms: u64,
}

/// A run's report (stored as JSON with the run).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub spec: Option<EvalSpec>,
    pub items: u64,
    pub scored: u64,
    pub passed: u64,
    pub unscored: u64,
    pub pass_rate: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub json_asked: u64,
    pub json_valid: u64,
    pub candidate_cost_micros_per_request: u64,
    pub incumbent_cost_micros_per_request: u64,
    pub candidate_latency_p50_ms: u64,
    pub incumbent_latency_p50_ms: u64,
    pub spent_micros: u64,
    pub stopped: Option<String>,
    pub results: Vec<ItemResult>,
}

/// The 95 % Wilson score interval of `passed` out of `n`.
pub fn wilson(passed: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (p, n, z) = (passed as f64 / n as f64, n as f64, 1.96f64);
    let denom = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    Some(((center - half).max(0.0), (center + half).min(1.0)))
}

/// The verdict in a judge's answer: `VERDICT: PASS` / `FAIL` (any case), the last one.
pub fn verdict(answer: &str) -> Option<bool> {
    let up = answer.to_ascii_uppercase();
    let at = up.rfind("VERDICT:")?;
    let rest = up.get(at + 8..)?.trim_start();
    if rest.starts_with("PASS") {
        Some(true)
    } else if rest.starts_with("FAIL") {
        Some(false)
    } else {
        None
    }
}

/// The text of an answer in either API's shape.
pub fn answer_text(v: &Value) -> String {
    if let Some(c) = v.pointer("/choices/0/message/content").and_then(Value::as_str) {
        return c.to_string();
    }
    v.get("content").and_then(Value::as_array).map(|blocks| blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect()).unwrap_or_default()
}

/// The last user message's text of a request in either API's shape.
fn last_user_text(req: &Value) -> String {
    let msgs = req.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(m) = msgs.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")) else { return String::new() };
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// The judge's prompt: pairwise, the production answer as the reference.
pub fn judge_prompt(rubric: Option<&str>, request_text: &str, reference: &str, candidate: &str) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    format!(
        "JUDGE: You compare a candidate answer with a reference answer to the same request.\nRubric: {}\nREQUEST:\n{request_text}\nREFERENCE: {}\nCANDIDATE: {}\nReply with your reasoning, then a last line 'VERDICT: PASS' if the candidate is at least as good as the reference, or 'VERDICT: FAIL'.",
        one_line(rubric.unwrap_or("The candidate must be correct and complete; style does not matter.")),
        one_line(reference),
        one_line(candidate),
    )
}

/// A call through the gateway: (status, body, cost micros from its header, latency).
pub trait Gateway {
    fn call(&self, api: &str, body: &Value, feature: &str) -> Result<(u16, Value, u64, u64), String>;
}

/// The real gateway: HTTP to Envoy with the evaluation key.
pub struct HttpGateway {
    pub url: String,
    pub key: String,
}

impl Gateway for HttpGateway {
    fn call(&self, api: &str, body: &Value, feature: &str) -> Result<(u16, Value, u64, u64), String> {
        let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(120))).http_status_as_error(false).build().new_agent();
        let (path, auth) = if api == "anthropic_messages" { ("/v1/messages", "x-api-key") } else { ("/v1/chat/completions", "authorization") };
        let token = if auth == "authorization" { format!("Bearer {}", self.key) } else { self.key.clone() };
        let started = Instant::now();
        let mut resp = agent
            .post(&format!("{}{path}", self.url.trim_end_matches('/')))
            .header(auth, &token)
            .header("x-tollgate-feature", &format!("eval:{feature}"))
            .send_json(body)
            .map_err(|e| e.to_string())?;
        let latency = started.elapsed().as_millis() as u64;
        let status = resp.status().as_u16();
        let cost = resp.headers().get("x-tollgate-cost-micros").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null), cost, latency))
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Why the candidate's answer fails the item's checks, in order: the JSON
/// the request asked for, the spec's patterns, the incumbent's answer
/// exactly (None: it passes them all). Counts JSON asked and valid in `rep`.
fn failed_check(spec: &EvalSpec, regexes: &[tollgate_protocol::guard::Pattern], req: &Value, answer: &str, reference: &str, rep: &mut Report) -> Option<String> {
    if let Some(ask) = req.get("response_format").and_then(|f| jsonfix::ask_of(&f.to_string())) {
        rep.json_asked += 1;
        let (c, _) = jsonfix::check(answer, &ask, false);
        if !c.valid {
            return Some(format!("not the JSON asked for ({})", c.error.unwrap_or_default()));
        }
        rep.json_valid += 1;
    }
    if let Some(r) = regexes.iter().find(|r| !r.is_match(answer)) {
        return Some(format!("does not match /{}/", r.as_str()));
    }
    (spec.exact && answer.trim() != reference.trim()).then(|| "differs from the incumbent's answer".into())
}

/// The judge model's verdict on an answer that passed its checks: passed
/// (None: unscored), why, and what the judge's call cost.
fn judged(spec: &EvalSpec, judge: &str, gw: &dyn Gateway, req: &Value, reference: &str, answer: &str) -> (Option<bool>, String, u64) {
    let prompt = judge_prompt(spec.rubric.as_deref(), &last_user_text(req), reference, answer);
    let jreq = json!({"model": judge, "messages": [{"role": "user", "content": prompt}], "max_tokens": 400});
    match gw.call("openai_chat", &jreq, &spec.feature) {
        Ok((200..=299, jbody, jcost, _)) => match verdict(&answer_text(&jbody)) {
            Some(true) => (Some(true), "judge: pass".into(), jcost),
            Some(false) => (Some(false), "judge: fail".into(), jcost),
            None => (None, "judge: no readable verdict (unscored)".into(), jcost),
        },
        Ok((status, ..)) => (None, format!("judge: status {status} (unscored)"), 0),
        Err(e) => (None, format!("judge: {} (unscored)", tollgate_protocol::text::clean_field(&e, 120)), 0),
    }
}

/// Runs `spec` over `items` through `gw`; `progress` sees the report after each item.
pub fn run(spec: &EvalSpec, items: &[EvalItem], gw: &dyn Gateway, progress: &mut dyn FnMut(&Report)) -> Report {
    let mut rep = Report { spec: Some(spec.clone()), ..Default::default() };
    let regexes: Vec<_> = spec.regex.iter().filter_map(|r| tollgate_protocol::guard::compile_pattern(r).ok()).collect();
    let (mut cand_cost, mut cand_lat, mut inc_cost, mut inc_lat) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for it in items {
        if rep.spent_micros >= spec.budget_micros {
            rep.stopped = Some(format!("the run's budget of {} micro-dollars is spent", spec.budget_micros));
            break;
        }
        let Ok(mut req) = serde_json::from_str::<Value>(&it.request) else { continue };
        let reference = serde_json::from_str::<Value>(&it.response).map(|v| answer_text(&v)).unwrap_or_default();
        if let Some(o) = req.as_object_mut() {
            o.insert("model".into(), json!(spec.candidate));
            o.remove("stream");
            o.remove("stream_options");
        }
        rep.items += 1;
        inc_cost.push(it.cost_micros);
        inc_lat.push(it.latency_ms);
        let mut result = ItemResult { item: it.id, passed: Some(false), why: String::new(), cost_micros: 0, latency_ms: 0 };
        match gw.call(&it.api, &req, &spec.feature) {
            Ok((status, body, cost, latency)) if (200..300).contains(&status) => {
                rep.spent_micros = rep.spent_micros.saturating_add(cost);
                (result.cost_micros, result.latency_ms) = (cost, latency);
                cand_cost.push(cost);
                cand_lat.push(latency);
                let answer = answer_text(&body);
                let fail = failed_check(spec, &regexes, &req, &answer, &reference, &mut rep);
                result.passed = Some(fail.is_none());
                result.why = fail.unwrap_or_else(|| "checks passed".into());
                if let (Some(judge), Some(true)) = (&spec.judge, result.passed) {
                    let (passed, why, cost) = judged(spec, judge, gw, &req, &reference, &answer);
                    rep.spent_micros = rep.spent_micros.saturating_add(cost);
                    (result.passed, result.why) = (passed, why);
                }
            }
            Ok((status, ..)) => result.why = format!("the candidate answered {status}"),
            Err(e) => result.why = format!("the gateway: {}", tollgate_protocol::text::clean_field(&e, 120)),
        }
        match result.passed {
            Some(true) => {
                rep.scored += 1;
                rep.passed += 1;
            }
            Some(false) => rep.scored += 1,
            None => rep.unscored += 1,
        }
        if rep.results.len() < 1000 {
            rep.results.push(result);
        }
        rep.pass_rate = (rep.scored > 0).then(|| rep.passed as f64 / rep.scored as f64);
        progress(&rep);
    }
    if let Some((lo, hi)) = wilson(rep.passed, rep.scored) {
        (rep.ci_low, rep.ci_high) = (Some(lo), Some(hi));
    }
    let avg = |v: &[u64]| if v.is_empty() { 0 } else { v.iter().fold(0u64, |a, b| a.saturating_add(*b)).div_ceil(v.len() as u64) };
    rep.candidate_cost_micros_per_request = avg(&cand_cost);
    rep.incumbent_cost_micros_per_request = avg(&inc_cost);
    rep.candidate_latency_p50_ms = median(cand_lat);
    rep.incumbent_latency_p50_ms = median(inc_lat);
    rep
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Fake {
        judge_says: &'static str,
        calls: RefCell<u32>,
    }

    impl Gateway for Fake {
        fn call(&self, _api: &str, body: &Value, _f: &str) -> Result<(u16, Value, u64, u64), String> {
            *self.calls.borrow_mut() += 1;
            if body["model"] == "judge" {
                return Ok((200, json!({"choices": [{"message": {"content": self.judge_says}}]}), 10, 5));
            }
            let q = body["messages"][0]["content"].as_str().unwrap_or_default();
            let answer = if q.contains("json") { "```json\n{\"a\": 1}\n```" } else { "{\"a\": 1}" };
            Ok((200, json!({"choices": [{"message": {"content": answer}}]}), 100, 20))
        }
    }

    fn items(n: i64, q: &str) -> Vec<EvalItem> {
        (0..n)
            .map(|id| EvalItem {
                id,
                feature: "f".into(),
                record_id: format!("r{id}"),
                ts_ms: 0,
                api: "openai_chat".into(),
                route: None,
                model: Some("big".into()),
                request: json!({"model": "big", "messages": [{"role": "user", "content": q}], "response_format": {"type": "json_object"}, "stream": true}).to_string(),
                response: json!({"choices": [{"message": {"content": "{\"a\": 1}"}}]}).to_string(),
                cost_micros: 1000,
                latency_ms: 40,
            })
            .collect()
    }

    fn spec(judge: bool, budget: u64) -> EvalSpec {
        EvalSpec { feature: "f".into(), candidate: "small".into(), judge: judge.then(|| "judge".into()), rubric: None, regex: vec![], exact: false, max_items: 50, budget_micros: budget }
    }

    #[test]
    fn scores_checks_the_judge_and_the_budget_honestly() {
        let gw = Fake { judge_says: "Fine.\nVERDICT: PASS", calls: RefCell::new(0) };
        let r = run(&spec(true, 1_000_000), &items(10, "q"), &gw, &mut |_| {});
        assert_eq!((r.items, r.scored, r.passed, r.unscored, r.json_asked, r.json_valid), (10, 10, 10, 0, 10, 10));
        assert_eq!((r.candidate_cost_micros_per_request, r.incumbent_cost_micros_per_request), (100, 1000));
        assert_eq!(r.spent_micros, 10 * 110, "replays and judge calls");
        let (lo, hi) = (r.ci_low.unwrap(), r.ci_high.unwrap());
        assert!(lo > 0.69 && lo < 0.73 && hi == 1.0, "Wilson 10/10: [0.722, 1]: {lo} {hi}");
        // fenced JSON is not the JSON asked for: a deterministic fail, no judge call needed
        let gw = Fake { judge_says: "VERDICT: PASS", calls: RefCell::new(0) };
        let r = run(&spec(true, 1_000_000), &items(4, "json please"), &gw, &mut |_| {});
        assert_eq!((r.scored, r.passed, *gw.calls.borrow()), (4, 0, 4));
        // a judge nobody can read: unscored, never passed
        let gw = Fake { judge_says: "It depends.", calls: RefCell::new(0) };
        let r = run(&spec(true, 1_000_000), &items(5, "q"), &gw, &mut |_| {});
        assert_eq!((r.scored, r.passed, r.unscored, r.pass_rate), (0, 0, 5, None));
        // the run's own budget: 3 replays of 100 fit in 250 (the third starts below it)
        let gw = Fake { judge_says: "VERDICT: FAIL", calls: RefCell::new(0) };
        let r = run(&spec(false, 250), &items(10, "q"), &gw, &mut |_| {});
        assert_eq!(r.items, 3);
        assert!(r.stopped.is_some());
    }

    #[test]
    fn verdicts_and_intervals() {
        assert_eq!(verdict("blah\nVERDICT: PASS"), Some(true));
        assert_eq!(verdict("verdict: fail because"), Some(false));
        assert_eq!(verdict("VERDICT: PASS\nactually VERDICT: FAIL"), Some(false), "the last one counts");
        assert_eq!(verdict("VERDICT: maybe"), None);
        assert_eq!(wilson(0, 0), None);
        let (lo, hi) = wilson(45, 50).unwrap();
        assert!((lo - 0.786).abs() < 0.01 && (hi - 0.957).abs() < 0.01, "{lo} {hi}");
        let bad = EvalSpec { regex: vec!["(".into()], ..spec(false, 1) };
        assert!(check_spec(&bad).unwrap_err().starts_with("regex[0]"));
    }
}

/// A feature's routing policy: which candidates, how good is good enough.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingPolicy {
    pub candidates: Vec<String>,
    /// The pass rate a candidate's latest evaluation must reach (0..1).
    pub threshold: f64,
    /// Scored items it needs at least.
    #[serde(default = "default_min_items")]
    pub min_items: u64,
    /// Promote the pick when an evaluation finishes (else an admin approves it).
    #[serde(default)]
    pub auto_promote: bool,
    /// Every request of the feature goes to the pick, not only `model: "auto"`.
    #[serde(default)]
    pub bind: bool,
}

fn default_min_items() -> u64 {
    10
}

pub fn check_policy(p: &RoutingPolicy) -> Result<(), String> {
    if p.candidates.is_empty() || p.candidates.len() > 16 || p.candidates.iter().any(|c| c.is_empty() || c.len() > 256 || c.chars().any(|ch| ch.is_control() || ch == ' ')) {
        return Err("candidates: 1 to 16 model names".into());
    }
    if !(0.0..=1.0).contains(&p.threshold) {
        return Err("threshold: a pass rate from 0 to 1".into());
    }
    if p.min_items == 0 || p.min_items > 1000 {
        return Err("min_items: 1 to 1000".into());
    }
    Ok(())
}

/// A candidate's standing: its latest finished evaluation, and whether it qualifies.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Standing {
    pub model: String,
    pub eval_id: Option<i64>,
    pub pass_rate: Option<f64>,
    pub scored: u64,
    pub cost_micros_per_request: Option<u64>,
    pub incumbent_cost_micros_per_request: Option<u64>,
    pub eligible: bool,
    /// (incumbent − candidate) cost per request × the feature's requests over the last 30 days.
    pub projected_monthly_saving_micros: Option<i64>,
}

/// Each candidate's standing from the latest finished runs (`(id, candidate, report)`, newest first).
pub fn standings(p: &RoutingPolicy, runs: &[(i64, String, Report)], monthly_requests: u64) -> Vec<Standing> {
    p.candidates
        .iter()
        .map(|m| {
            let latest = runs.iter().find(|(_, c, r)| c == m && r.stopped.is_none());
            let eligible = latest.is_some_and(|(_, _, r)| r.scored >= p.min_items && r.pass_rate.is_some_and(|x| x >= p.threshold));
            let saving = latest.map(|(_, _, r)| {
                let per = i64::try_from(r.incumbent_cost_micros_per_request).unwrap_or(i64::MAX) - i64::try_from(r.candidate_cost_micros_per_request).unwrap_or(i64::MAX);
                per.saturating_mul(i64::try_from(monthly_requests).unwrap_or(i64::MAX))
            });
            Standing {
                model: m.clone(),
                eval_id: latest.map(|l| l.0),
                pass_rate: latest.and_then(|l| l.2.pass_rate),
                scored: latest.map_or(0, |l| l.2.scored),
                cost_micros_per_request: latest.map(|l| l.2.candidate_cost_micros_per_request),
                incumbent_cost_micros_per_request: latest.map(|l| l.2.incumbent_cost_micros_per_request),
                eligible,
                projected_monthly_saving_micros: saving,
            }
        })
        .collect()
}

/// The cheapest eligible candidate, and why (for the record's `routed_by`).
pub fn pick(feature: &str, p: &RoutingPolicy, standings: &[Standing]) -> Option<(String, String)> {
    let best = standings.iter().filter(|s| s.eligible).min_by_key(|s| s.cost_micros_per_request.unwrap_or(u64::MAX))?;
    Some((
        best.model.clone(),
        format!(
            "feature {feature}: {} is the cheapest candidate whose evaluation #{} passed {:.1}% (threshold {:.0}%, {} items)",
            best.model,
            best.eval_id.unwrap_or(0),
            best.pass_rate.unwrap_or(0.0) * 100.0,
            p.threshold * 100.0,
            best.scored
        ),
    ))
}

#[cfg(test)]
mod routing_tests {
    use super::*;

    #[test]
    fn the_cheapest_candidate_that_passes_is_picked() {
        let p = RoutingPolicy { candidates: vec!["bad-cheap".into(), "good-cheap".into()], threshold: 0.9, min_items: 10, auto_promote: true, bind: false };
        let rep = |rate: f64, cost: u64| Report { scored: 20, passed: (rate * 20.0) as u64, pass_rate: Some(rate), candidate_cost_micros_per_request: cost, incumbent_cost_micros_per_request: 1000, ..Default::default() };
        let runs = vec![(2, "bad-cheap".to_string(), rep(0.5, 50)), (1, "good-cheap".to_string(), rep(0.95, 120))];
        let s = standings(&p, &runs, 30_000);
        assert_eq!(s.iter().map(|x| x.eligible).collect::<Vec<_>>(), [false, true]);
        assert_eq!(s[1].projected_monthly_saving_micros, Some(880 * 30_000));
        let (m, why) = pick("faq", &p, &s).unwrap();
        assert_eq!(m, "good-cheap");
        assert!(why.contains("evaluation #1 passed 95.0%"), "{why}");
        // a run stopped by its budget does not count; nothing eligible: no pick
        let runs = vec![(3, "good-cheap".to_string(), Report { stopped: Some("budget".into()), ..rep(1.0, 10) })];
        assert_eq!(pick("faq", &p, &standings(&p, &runs, 1)), None);
        assert!(check_policy(&RoutingPolicy { threshold: 1.5, ..p.clone() }).is_err());
    }
}
