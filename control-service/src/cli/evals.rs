//! `tollgate eval …`, `tollgate eval-sets …`, `tollgate routing …` and
//! `tollgate json-compliance`: choosing cheaper models from the command line.

use serde_json::{json, Value};

use super::args::{EvalCmd, EvalSetsCmd, RoutingCmd};
use super::{fail, out, s, table, usd, Client};

fn pct(v: &Value) -> String {
    v.as_f64().map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "-".into())
}

fn print_report(v: &Value) {
    let r = &v["report"];
    out(&format!(
        "evaluation #{} of {} on feature {}: {}\n",
        s(&v["id"]),
        s(&v["candidate"]),
        s(&v["feature"]),
        s(&v["status"])
    ));
    out(&format!(
        "  items {}  scored {}  passed {}  unscored {}  pass rate {} (95% CI {} – {})\n",
        s(&r["items"]),
        s(&r["scored"]),
        s(&r["passed"]),
        s(&r["unscored"]),
        pct(&r["pass_rate"]),
        pct(&r["ci_low"]),
        pct(&r["ci_high"])
    ));
    if r["json_asked"].as_u64().unwrap_or(0) > 0 {
        out(&format!("  JSON asked for {}, valid {}\n", s(&r["json_asked"]), s(&r["json_valid"])));
    }
    table(
        &["", "cost/request", "latency p50"],
        vec![
            vec!["candidate".into(), usd(&r["candidate_cost_micros_per_request"]), format!("{} ms", s(&r["candidate_latency_p50_ms"]))],
            vec!["incumbent".into(), usd(&r["incumbent_cost_micros_per_request"]), format!("{} ms", s(&r["incumbent_latency_p50_ms"]))],
        ],
    );
    out(&format!("  spent {} of its budget {}\n", usd(&r["spent_micros"]), usd(&r["spec"]["budget_micros"])));
    if !r["stopped"].is_null() {
        out(&format!("  stopped: {}\n", s(&r["stopped"])));
    }
}

pub fn eval(c: &Client, cmd: EvalCmd) {
    match cmd {
        EvalCmd::Run { feature, candidate, judge, rubric, regex, exact, max_items, budget_micros, no_wait } => {
            let mut body = json!({"feature": feature, "candidate": candidate, "regex": regex, "exact": exact});
            for (k, v) in [("judge", judge.map(Value::from)), ("rubric", rubric.map(Value::from)), ("max_items", max_items.map(Value::from)), ("budget_micros", budget_micros.map(Value::from))] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            let started = c.call("POST", "/v1/evals", Some(body));
            let id = started["id"].as_i64().unwrap_or_else(|| fail("the service did not start an evaluation"));
            if no_wait {
                c.print(&started, |v| out(&format!("evaluation #{} started\n", s(&v["id"]))));
                return;
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
            loop {
                let v = c.call("GET", &format!("/v1/evals/{id}"), None);
                if v["status"] != "running" || std::time::Instant::now() > deadline {
                    c.print(&v, print_report);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        }
        EvalCmd::List { feature } => {
            let q = feature.map(|f| format!("?feature={}", super::path_segment(&f))).unwrap_or_default();
            let v = c.call("GET", &format!("/v1/evals{q}"), None);
            c.print(&v, |v| {
                let rows = v["evals"].as_array().cloned().unwrap_or_default();
                table(
                    &["id", "feature", "candidate", "status", "scored", "pass rate", "cost/request", "incumbent"],
                    rows.iter()
                        .map(|e| {
                            let r = &e["report"];
                            vec![s(&e["id"]), s(&e["feature"]), s(&e["candidate"]), s(&e["status"]), s(&r["scored"]), pct(&r["pass_rate"]), usd(&r["candidate_cost_micros_per_request"]), usd(&r["incumbent_cost_micros_per_request"])]
                        })
                        .collect(),
                );
            });
        }
        EvalCmd::Show { id } => {
            let v = c.call("GET", &format!("/v1/evals/{id}"), None);
            c.print(&v, print_report);
        }
    }
}

pub fn eval_sets(c: &Client, cmd: EvalSetsCmd) {
    match cmd {
        EvalSetsCmd::List => {
            let v = c.call("GET", "/v1/eval-sets", None);
            c.print(&v, |v| {
                let rows = v["sets"].as_array().cloned().unwrap_or_default();
                table(
                    &["feature", "items", "first", "last"],
                    rows.iter()
                        .map(|x| {
                            let t = |k: &str| x[k].as_u64().map(tollgate_protocol::format::rfc3339).unwrap_or_default();
                            vec![s(&x["feature"]), s(&x["items"]), t("first_ms"), t("last_ms")]
                        })
                        .collect(),
                );
            });
        }
        EvalSetsCmd::Delete { feature, before } => {
            let q = before.map(|b| format!("?before_ms={}", super::parse_time(&b))).unwrap_or_default();
            let v = c.call("DELETE", &format!("/v1/eval-sets/{}{q}", super::path_segment(&feature)), None);
            c.print(&v, |v| out(&format!("removed {} captured requests\n", s(&v["removed"]))));
        }
    }
}

pub fn routing(c: &Client, cmd: RoutingCmd) {
    match cmd {
        RoutingCmd::Set { feature, candidates, threshold, min_items, auto_promote, bind } => {
            let mut body = json!({"candidates": candidates.split(',').map(str::trim).collect::<Vec<_>>(), "threshold": threshold,
                                  "auto_promote": auto_promote, "bind": bind});
            if let Some(n) = min_items {
                body["min_items"] = json!(n);
            }
            let v = c.call("PUT", &format!("/v1/routing/{}", super::path_segment(&feature)), Some(body));
            c.print(&v, |v| out(&format!("routing policy for {} set{}\n", s(&v["feature"]), v["promoted"].as_str().map(|m| format!("; {m} promoted")).unwrap_or_default())));
        }
        RoutingCmd::Show { feature } => {
            let v = c.call("GET", &format!("/v1/routing/{}", super::path_segment(&feature)), None);
            c.print(&v, |v| {
                out(&format!("feature {}: auto → {}\n", s(&v["feature"]), s(&v["chosen"])));
                if let Some(r) = v["reason"].as_str() {
                    out(&format!("  {r}\n"));
                }
                out(&format!("  {} requests in the last 30 days; threshold {}\n", s(&v["requests_last_30_days"]), pct(&v["policy"]["threshold"])));
                let rows = v["candidates"].as_array().cloned().unwrap_or_default();
                table(
                    &["candidate", "evaluation", "pass rate", "scored", "cost/request", "incumbent", "eligible", "projected monthly saving"],
                    rows.iter()
                        .map(|x| {
                            let saving = x["projected_monthly_saving_micros"].as_i64().map(|m| {
                                let sign = if m < 0 { "-" } else { "" };
                                format!("{sign}${}", tollgate_protocol::format::usd(m.unsigned_abs()))
                            });
                            vec![
                                s(&x["model"]),
                                x["eval_id"].as_i64().map(|i| format!("#{i}")).unwrap_or_else(|| "none yet".into()),
                                pct(&x["pass_rate"]),
                                s(&x["scored"]),
                                usd(&x["cost_micros_per_request"]),
                                usd(&x["incumbent_cost_micros_per_request"]),
                                if x["eligible"] == true { "yes".into() } else { "no".into() },
                                saving.unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect(),
                );
                if let Some(r) = v["recommended"].as_object() {
                    out(&format!("recommended: {}\n", s(&r["model"].clone())));
                }
            });
        }
        RoutingCmd::Promote { feature, model, force, by } => {
            let mut body = json!({"model": if model == "none" { Value::Null } else { json!(model) }, "force": force});
            if let Some(b) = by {
                body["by"] = json!(b);
            }
            let v = c.call("POST", &format!("/v1/routing/{}/promote", super::path_segment(&feature)), Some(body));
            c.print(&v, |v| out(&format!("feature {}: auto → {} (routing change {})\n", s(&v["feature"]), s(&v["model"]), s(&v["routing_seq"]))));
        }
    }
}

pub fn json_compliance(c: &Client) {
    let v = c.call("GET", "/v1/reports/json-compliance", None);
    c.print(&v, |v| {
        let rows = v["rows"].as_array().cloned().unwrap_or_default();
        table(
            &["provider", "model", "asked for JSON", "valid", "repaired", "compliance"],
            rows.iter()
                .map(|r| vec![s(&r["provider"]), s(&r["model"]), s(&r["asked"]), s(&r["valid"]), s(&r["repaired"]), r["compliance_pct"].as_f64().map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into())])
                .collect(),
        );
    });
}
