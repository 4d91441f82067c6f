//! `tollgate budgets …` and `tollgate requests …`.

use serde_json::{json, Value};

use super::args::{BudgetsCmd, Limits, RequestsCmd};
use super::{fail, out, parse_time, s, table, usd, Client};

/// "12.5" USD -> 12500000 micro-dollars, exactly.
pub fn usd_to_micros(v: &str) -> u64 {
    let v = v.trim().trim_start_matches('$');
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty() || frac.len() > 6 || !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        fail(&format!("'{v}' is not an amount in USD with at most 6 decimals"));
    }
    let w: u64 = whole.parse().unwrap_or(0);
    let f: u64 = format!("{frac:0<6}").parse().unwrap_or(0);
    w.checked_mul(1_000_000).and_then(|x| x.checked_add(f)).unwrap_or_else(|| fail("amount too large"))
}

fn limit_options(l: &Limits, body: &mut Value) {
    if let Some(u) = &l.limit_usd {
        body["limit_micros"] = json!(usd_to_micros(u));
    }
    if let Some(m) = l.limit_micros {
        body["limit_micros"] = json!(m);
    }
    if let Some(t) = l.limit_tokens {
        body["limit_tokens"] = json!(t);
    }
}

fn pct(v: &Option<String>, flag: &str) -> Option<Value> {
    v.as_ref().map(|v| {
        if v == "off" {
            Value::Null
        } else {
            json!(v.parse::<u32>().unwrap_or_else(|_| fail(&format!("--{flag} takes a percent or 'off'"))))
        }
    })
}

fn budget_row(b: &Value) -> Vec<String> {
    vec![
        format!("{}:{}", s(&b["scope_type"]), s(&b["scope_id"])),
        s(&b["period"]),
        if b["limit_micros"].is_null() { "-".into() } else { usd(&b["limit_micros"]) },
        usd(&b["used_micros"]),
        usd(&b["reserved_micros"]),
        s(&b["limit_tokens"]),
        s(&b["used_tokens"]),
        b["used_pct_micros"].as_f64().or(b["used_pct_tokens"].as_f64()).map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into()),
        usd(&b["projected_micros"]),
        format!("{}/{}", s(&b["soft_pct"]), s(&b["hard_pct"])),
        b["period_end_ms"].as_u64().map(tollgate_protocol::format::rfc3339).unwrap_or_else(|| "-".into()),
    ]
}

const BUDGET_HEADERS: [&str; 11] =
    ["scope", "period", "limit", "used", "reserved", "limit tok", "used tok", "used %", "projected", "soft/hard %", "resets"];

pub fn run(c: &Client, cmd: BudgetsCmd) {
    match cmd {
        BudgetsCmd::Set { scope_type, id, period, limits, timezone, soft_pct, hard_pct, window_start, window_end } => {
            let mut body = json!({"period": period});
            limit_options(&limits, &mut body);
            if let Some(tz) = timezone {
                body["timezone"] = json!(tz);
            }
            if let Some(p) = pct(&soft_pct, "soft-pct") {
                body["soft_pct"] = p;
            }
            if let Some(p) = pct(&hard_pct, "hard-pct") {
                body["hard_pct"] = p;
            }
            if let Some(w) = window_start {
                body["window_start_ms"] = json!(parse_time(&w));
            }
            if let Some(w) = window_end {
                body["window_end_ms"] = json!(parse_time(&w));
            }
            let v = c.call("PUT", &format!("/v1/budgets/{scope_type}/{}", super::path_segment(&id)), Some(body));
            c.print(&v, |v| table(&BUDGET_HEADERS, vec![budget_row(v)]));
        }
        BudgetsCmd::Show { scope_type: Some(t), id: Some(id), .. } => {
            let v = c.call("GET", &format!("/v1/budgets/{t}/{}", super::path_segment(&id)), None);
            c.print(&v, |v| table(&BUDGET_HEADERS, vec![budget_row(v)]));
        }
        BudgetsCmd::Show { scope_type: Some(_), id: None, .. } => fail("budgets show takes a scope and an id, or nothing"),
        BudgetsCmd::Show { page, .. } => super::list_pages(c, "/v1/budgets", "budgets", &page, &BUDGET_HEADERS, budget_row),
        BudgetsCmd::Import { from } => super::import::run(&super::import::BUDGETS, c, &from, None),
        BudgetsCmd::Delete { scope_type, id } => {
            c.call_text("DELETE", &format!("/v1/budgets/{scope_type}/{}", super::path_segment(&id)), None);
            out(&if c.json {
                format!("{}\n", json!({"deleted": format!("{scope_type}:{id}")}))
            } else {
                format!("budget {scope_type}:{id} deleted\n")
            });
        }
    }
}

pub fn requests(c: &Client, cmd: RequestsCmd) {
    let show = |v: &Value| {
        vec![
            s(&v["id"]),
            format!("{}:{}", s(&v["scope_type"]), s(&v["scope_id"])),
            if v["limit_micros"].is_null() { format!("{} tokens", s(&v["limit_tokens"])) } else { usd(&v["limit_micros"]) },
            s(&v["status"]),
            s(&v["requested_by"]),
            s(&v["justification"]),
            s(&v["decided_by"]),
        ]
    };
    let headers = ["id", "scope", "asked", "status", "by", "why", "decided by"];
    match cmd {
        RequestsCmd::Create { scope_type, id, limits, why, by } => {
            let mut body = json!({"scope_type": scope_type, "scope_id": id, "justification": why});
            limit_options(&limits, &mut body);
            if let Some(b) = by {
                body["requested_by"] = json!(b);
            }
            let v = c.call("POST", "/v1/budget-requests", Some(body));
            c.print(&v, |v| table(&headers, vec![show(v)]));
        }
        RequestsCmd::List { status } => {
            let qs = status.map(|st| format!("?status={st}")).unwrap_or_default();
            let v = c.call("GET", &format!("/v1/budget-requests{qs}"), None);
            c.print(&v, |v| table(&headers, v["requests"].as_array().cloned().unwrap_or_default().iter().map(show).collect()));
        }
        RequestsCmd::Approve { id, by, note } => decide(c, "approve", &id, by, note, &headers, show),
        RequestsCmd::Refuse { id, by, note } => decide(c, "refuse", &id, by, note, &headers, show),
    }
}

fn decide(
    c: &Client,
    verb: &str,
    id: &str,
    by: Option<String>,
    note: Option<String>,
    headers: &[&str],
    show: impl Fn(&Value) -> Vec<String>,
) {
    let mut body = json!({});
    if let Some(b) = by {
        body["decided_by"] = json!(b);
    }
    if let Some(n) = note {
        body["note"] = json!(n);
    }
    let v = c.call("POST", &format!("/v1/budget-requests/{id}/{verb}"), Some(body));
    c.print(&v, |v| table(headers, vec![show(v)]));
}
