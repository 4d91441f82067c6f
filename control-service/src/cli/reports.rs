//! `tollgate spend`, `movers`, `report monthly`, `alerts`.

use serde_json::json;

use super::args::{AuditArgs, CacheMissArgs, GuardrailsCmd, MoversArgs, Range, SpendArgs};
use super::{out, parse_time, s, table, usd, Client};

/// A query string from (parameter, value) pairs; times parsed, values escaped.
fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = Vec::new();
    for (param, v) in pairs {
        let Some(v) = v else { continue };
        let v = if *param == "from_ms" || *param == "to_ms" { parse_time(v).to_string() } else { v.to_string() };
        let enc: String = v
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        q.push(format!("{param}={enc}"));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn range<'a>(r: &'a Range, top: &'a Option<String>) -> [(&'static str, Option<&'a str>); 3] {
    [("from_ms", r.from.as_deref()), ("to_ms", r.to.as_deref()), ("top", top.as_deref())]
}

pub fn spend(c: &Client, a: SpendArgs) {
    let top = a.range.top.map(|t| t.to_string());
    let mut pairs = vec![("group_by", a.group_by.as_deref()), ("bucket", a.bucket.as_deref())];
    pairs.extend(range(&a.range, &top));
    pairs.extend([
        ("team", a.team.as_deref()),
        ("project", a.project.as_deref()),
        ("key", a.key.as_deref()),
        ("model", a.model.as_deref()),
        ("provider", a.provider.as_deref()),
        ("feature", a.feature.as_deref()),
        ("prompt_version", a.prompt_version.as_deref()),
        ("session", a.session.as_deref()),
    ]);
    let mut qs = query_string(&pairs);
    if a.csv {
        qs.push_str(if qs.is_empty() { "?format=csv" } else { "&format=csv" });
        out(&c.call_text("GET", &format!("/v1/reports/spend{qs}"), None));
        return;
    }
    let v = c.call("GET", &format!("/v1/reports/spend{qs}"), None);
    c.print(&v, |v| {
        let dims: Vec<String> = v["group_by"].as_array().cloned().unwrap_or_default().iter().map(s).collect();
        let bucketed = !v["bucket"].is_null();
        let mut headers: Vec<&str> = dims.iter().map(String::as_str).collect();
        if bucketed {
            headers.push("bucket");
        }
        headers.extend(["requests", "input", "cache hit %", "cache saved", "output", "cost", "errors", "429s"]);
        let rows = v["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let mut row: Vec<String> = dims.iter().map(|d| s(&r[d.as_str()])).collect();
                if bucketed {
                    row.push(tollgate_protocol::format::rfc3339(r["bucket_start_ms"].as_u64().unwrap_or(0)));
                }
                row.extend([
                    s(&r["requests"]),
                    s(&r["input_tokens"]),
                    match r["cache_hit_rate_pct"].as_f64() {
                        Some(h) => format!("{h:.1}%"),
                        None => "n/a".into(),
                    },
                    r["cache_savings_micros"].as_i64().map(tollgate_protocol::format::usd_signed).map(|u| format!("${u}")).unwrap_or_default(),
                    s(&r["output_tokens"]),
                    usd(&r["cost_micros"]),
                    s(&r["errors"]),
                    s(&r["rate_limited"]),
                ]);
                row
            })
            .collect();
        table(&headers, rows);
    });
}

pub fn audit(c: &Client, a: AuditArgs) {
    let pairs = [
        ("from_ms", a.from.as_deref()),
        ("to_ms", a.to.as_deref()),
        ("class", a.class.as_deref()),
        ("team", a.team.as_deref()),
        ("provider", a.provider.as_deref()),
        ("action", a.action.as_deref()),
        ("direction", a.direction.as_deref()),
    ];
    let qs = query_string(&pairs);
    if a.export {
        let sep = if qs.is_empty() { "?" } else { "&" };
        out(&c.call_text("GET", &format!("/v1/audit/findings{qs}{sep}format=jsonl&limit=1000000"), None));
        return;
    }
    let v = c.call("GET", &format!("/v1/audit{qs}"), None);
    c.print(&v, |v| {
        let rows = v["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| vec![s(&r["team"]), s(&r["provider"]), s(&r["direction"]), s(&r["class"]), s(&r["action"]), s(&r["requests"]), s(&r["values"])])
            .collect();
        table(&["team", "provider", "direction", "class", "action", "requests", "values"], rows);
    });
}

pub fn cache_misses(c: &Client, a: CacheMissArgs) {
    let pairs = [("from_ms", a.from.as_deref()), ("to_ms", a.to.as_deref()), ("team", a.team.as_deref()), ("feature", a.feature.as_deref())];
    let v = c.call("GET", &format!("/v1/reports/cache-misses{}", query_string(&pairs)), None);
    c.print(&v, |v| {
        let rows = v["rows"].as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            out("No cache misses the gateway could explain in this range.\n");
        }
        for r in &rows {
            out(&format!("{}\n", s(&r["finding"])));
        }
        if !rows.is_empty() {
            out("\n");
            table(
                &["feature", "prompt", "model", "reason", "segment", "offset", "requests", "lost"],
                rows.iter()
                    .map(|r| vec![s(&r["feature"]), s(&r["prompt_version"]), s(&r["model"]), s(&r["reason"]), s(&r["segment"]), s(&r["offset"]), s(&r["requests"]), usd(&r["lost_micros"])])
                    .collect(),
            );
        }
    });
}

pub fn guardrails(c: &Client, cmd: GuardrailsCmd) {
    let v = match cmd {
        GuardrailsCmd::Show => c.call("GET", "/v1/guardrails", None),
        GuardrailsCmd::Set { file } => {
            let text = if file == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(&file) };
            let text = text.unwrap_or_else(|e| super::fail(&format!("cannot read {file}: {e}")));
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| super::fail(&format!("{file} is not JSON: {e}")));
            c.call("PUT", "/v1/guardrails", Some(body))
        }
        GuardrailsCmd::Clear => c.call("DELETE", "/v1/guardrails", None),
    };
    c.print(&v, |v| {
        let version = v["policy"]["version"].as_str().map(|s| s.to_string()).unwrap_or_else(|| if v["policy"].is_null() { "(none: each Envoy's own)".into() } else { "default".into() });
        out(&format!("change {}  policy {}\n", s(&v["seq"]), version));
        if !v["policy"].is_null() {
            out(&format!("{}\n", serde_json::to_string_pretty(&v["policy"]).unwrap_or_default()));
        }
    });
}

pub fn movers(c: &Client, a: MoversArgs) {
    let top = a.range.top.map(|t| t.to_string());
    let mut pairs = vec![("by", a.by.as_deref())];
    pairs.extend(range(&a.range, &top));
    let v = c.call("GET", &format!("/v1/reports/movers{}", query_string(&pairs)), None);
    c.print(&v, |v| {
        for d in ["team", "project", "key", "model", "provider", "feature", "prompt_version"] {
            let Some(list) = v[d].as_array() else { continue };
            out(&format!("{d}:\n"));
            table(
                &["value", "previous", "current", "change"],
                list.iter()
                    .map(|m| {
                        let delta = m["delta_micros"].as_i64().unwrap_or(0);
                        vec![
                            s(&m["value"]),
                            usd(&m["previous_micros"]),
                            usd(&m["current_micros"]),
                            format!("{}${}", if delta < 0 { "-" } else { "+" }, tollgate_protocol::format::usd(delta.unsigned_abs())),
                        ]
                    })
                    .collect(),
            );
            out("\n");
        }
    });
}

pub fn monthly(c: &Client, month: Option<String>) {
    let qs = month.map(|m| format!("?month={m}")).unwrap_or_default();
    let md = c.call_text("GET", &format!("/v1/reports/monthly{qs}"), None);
    out(&if c.json { format!("{}\n", json!({"markdown": md})) } else { md });
}

pub fn alerts(c: &Client) {
    let v = c.call("GET", "/v1/alerts", None);
    c.print(&v, |v| {
        table(
            &["scope", "threshold", "used", "limit", "raised", "delivered"],
            v["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|x| {
                    vec![
                        format!("{}:{}", s(&x["scope_type"]), s(&x["scope_id"])),
                        s(&x["threshold"]),
                        usd(&x["used_micros"]),
                        usd(&x["limit_micros"]),
                        tollgate_protocol::format::rfc3339(x["created_ms"].as_u64().unwrap_or(0)),
                        x["delivered_ms"]
                            .as_u64()
                            .map(tollgate_protocol::format::rfc3339)
                            .unwrap_or_else(|| format!("no ({} attempts)", s(&x["attempts"]))),
                    ]
                })
                .collect(),
        );
        let cache = v["cache_alerts"].as_array().cloned().unwrap_or_default();
        if !cache.is_empty() {
            out("\ncache hit rate drops after a prompt version change:\n");
            table(
                &["feature", "version", "before", "hit rate before", "hit rate after", "requests", "raised"],
                cache
                    .iter()
                    .map(|x| {
                        let pct = |k: &str| format!("{:.1}%", x[k].as_u64().unwrap_or(0) as f64 / 10.0);
                        vec![
                            s(&x["feature"]),
                            s(&x["prompt_version"]),
                            s(&x["previous_version"]),
                            pct("hit_before_permille"),
                            pct("hit_after_permille"),
                            s(&x["requests_after"]),
                            tollgate_protocol::format::rfc3339(x["created_ms"].as_u64().unwrap_or(0)),
                        ]
                    })
                    .collect(),
            );
        }
    });
}
