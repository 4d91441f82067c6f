//! `tollgate`: the control service (`tollgate serve`) and the admin command line.

use std::sync::Arc;

use serde_json::{json, Value};
use tollgate_control::api::{alert_loop, router, AppState, Settings};
use tollgate_control::cli::{fail, parse_time, s, table, usd, Client};
use tollgate_control::sqlite::SqliteStore;
use tollgate_control::{log_event, store::Store};
use tollgate_filter::keys::{hash_key, to_hex};

// Every line the CLI prints goes through `cli::out`, which escapes terminal
// control characters (values in reports come from clients).
macro_rules! print {
    ($($t:tt)*) => { tollgate_control::cli::out(&format!($($t)*)) };
}
macro_rules! println {
    () => { tollgate_control::cli::out("\n") };
    ($($t:tt)*) => { tollgate_control::cli::out(&format!("{}\n", format!($($t)*))) };
}

const HELP: &str = "tollgate — Tollgate control service and admin command line

USAGE:
    tollgate serve [--listen ADDR] [--db PATH]      run the control service (tollgate serve --help)
    tollgate keys create|list|revoke|rotate ...      virtual keys
    tollgate budgets set|show|delete ...             budgets per key, team or project
    tollgate spend [--group-by DIMS] [--bucket hour|day] [--from T] [--to T] [--csv] ...
    tollgate movers [--by key,model] [--from T] [--to T]
                                                     what moved the most against the previous equal range
    tollgate report monthly [--month 2026-11]        the monthly review (Markdown)
    tollgate alerts                                  budget threshold alerts
    tollgate requests create|list|approve|refuse ... budget increase requests
    tollgate key new [--prefix tg-]                  offline: a key and its hash, for static YAML keys
    tollgate key hash <KEY|->                        offline: the hash of a key

Every command takes --help. Admin commands talk to the control service:
    --url URL      (TOLLGATE_URL, default http://127.0.0.1:7070)
    --token TOKEN  (TOLLGATE_ADMIN_TOKEN)
    --json         machine-readable output
";

const SERVE_HELP: &str = "tollgate serve [--listen ADDR] [--db PATH]

Runs the control service. Settings (flags win over environment):
    TOLLGATE_LISTEN        listen address (127.0.0.1:7070)
    TOLLGATE_DB            SQLite file (./tollgate.db), or a PostgreSQL connection string
                           (postgresql://user:pass@host/db or \"host=... user=... dbname=...\")
    TOLLGATE_ADMIN_TOKEN   admin API token (required)
    TOLLGATE_FILTER_TOKEN  token of the Envoy filters: ingest + state only (required)
    TOLLGATE_WEBHOOK_URL   where budget alerts are POSTed (optional)
    TOLLGATE_NODE_TTL_MS   an Envoy counts as active this long after its last poll (15000)
";

const KEYS_HELP: &str = "tollgate keys create --team TEAM --project PROJECT [--id ID] [--models a,b*] [--projects x,y|*] [--tag k=v]...
tollgate keys list
tollgate keys revoke ID
tollgate keys rotate ID

create and rotate print the key once; only its hash is stored.
";

const BUDGETS_HELP: &str = "tollgate budgets set key|team|project ID --period daily|weekly|monthly|fixed
                    [--limit-usd 12.50 | --limit-micros N] [--limit-tokens N] [--timezone Europe/Paris]
                    [--soft-pct 80|off] [--hard-pct 100|off] [--window-start T --window-end T]
tollgate budgets show [key|team|project ID]
tollgate budgets delete key|team|project ID
";

const SPEND_HELP: &str = "tollgate spend [--group-by team,project,key,model,provider,feature,prompt_version] [--bucket hour|day]
              [--from T] [--to T] [--team X] [--project X] [--key X] [--model X] [--provider X]
              [--feature X] [--prompt-version X] [--top N] [--csv]

T is 2026-11-01, an RFC 3339 time, or Unix ms. Default range: the last 30 days.
";

struct Args {
    pos: Vec<String>,
    opts: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    fn parse(raw: &[String], flags: &[&str]) -> Args {
        let mut a = Args { pos: vec![], opts: vec![], flags: vec![] };
        let mut it = raw.iter();
        while let Some(x) = it.next() {
            if let Some(name) = x.strip_prefix("--") {
                if flags.contains(&name) || name == "help" || name == "json" {
                    a.flags.push(name.to_string());
                } else if let Some((k, v)) = name.split_once('=') {
                    a.opts.push((k.to_string(), v.to_string()));
                } else {
                    let v = it.next().unwrap_or_else(|| fail(&format!("--{name} needs a value")));
                    a.opts.push((name.to_string(), v.clone()));
                }
            } else if x == "-h" {
                a.flags.push("help".into());
            } else {
                a.pos.push(x.clone());
            }
        }
        a
    }
    fn opt(&self, k: &str) -> Option<&str> {
        self.opts.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.opts.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect()
    }
    fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }
}

fn client(a: &Args) -> Client {
    let url = a.opt("url").map(str::to_string).unwrap_or_else(|| env_or("TOLLGATE_URL", "http://127.0.0.1:7070"));
    let token = a
        .opt("token")
        .map(str::to_string)
        .or_else(|| std::env::var("TOLLGATE_ADMIN_TOKEN").ok())
        .unwrap_or_else(|| fail("no admin token: pass --token or set TOLLGATE_ADMIN_TOKEN"));
    Client { url, token, json: a.flag("json") }
}

/// "12.5" USD -> 12500000 micro-dollars, exactly.
fn usd_to_micros(v: &str) -> u64 {
    let v = v.trim().trim_start_matches('$');
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty() || frac.len() > 6 || !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        fail(&format!("'{v}' is not an amount in USD with at most 6 decimals"));
    }
    let w: u64 = whole.parse().unwrap_or(0);
    let f: u64 = format!("{frac:0<6}").parse().unwrap_or(0);
    w.checked_mul(1_000_000).and_then(|x| x.checked_add(f)).unwrap_or_else(|| fail("amount too large"))
}

/// --limit-usd / --limit-micros / --limit-tokens into a request body.
fn limit_options(a: &Args, body: &mut Value) {
    if let Some(u) = a.opt("limit-usd") {
        body["limit_micros"] = json!(usd_to_micros(u));
    }
    if let Some(m) = a.opt("limit-micros") {
        body["limit_micros"] = json!(m.parse::<u64>().unwrap_or_else(|_| fail("--limit-micros takes an integer")));
    }
    if let Some(m) = a.opt("limit-tokens") {
        body["limit_tokens"] = json!(m.parse::<u64>().unwrap_or_else(|_| fail("--limit-tokens takes an integer")));
    }
}

fn pct_opt(a: &Args, k: &str) -> Option<Value> {
    a.opt(k).map(|v| {
        if v == "off" {
            Value::Null
        } else {
            json!(v.parse::<u32>().unwrap_or_else(|_| fail(&format!("--{k} takes a percent or 'off'"))))
        }
    })
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let first = raw.first().map(String::as_str).unwrap_or("");
    let rest = raw.get(1..).unwrap_or(&[]);
    match first {
        "" | "-h" | "--help" | "help" => print!("{HELP}"),
        "serve" => {
            if rest.iter().any(|a| a == "--help" || a == "-h") {
                print!("{SERVE_HELP}");
                return;
            }
            let flags: Vec<&str> = rest.iter().map(String::as_str).collect();
            serve(&flags)
        }
        "key" => offline_key(rest),
        "keys" => keys(&Args::parse(rest, &[])),
        "budgets" => budgets(&Args::parse(rest, &[])),
        "spend" => spend(&Args::parse(rest, &["csv"])),
        "movers" => movers(&Args::parse(rest, &[])),
        "report" => report(&Args::parse(rest, &[])),
        "alerts" => alerts(&Args::parse(rest, &[])),
        "requests" => requests_cmd(&Args::parse(rest, &[])),
        _ => fail(&format!("unknown command: {}\n\n{HELP}", raw.join(" "))),
    }
}

fn keys(a: &Args) {
    if a.flag("help") || a.pos.is_empty() {
        print!("{KEYS_HELP}");
        return;
    }
    let c = client(a);
    match a.pos.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create"] => {
            let mut body = json!({
                "team": a.opt("team").unwrap_or_else(|| fail("--team is required")),
                "project": a.opt("project").unwrap_or_else(|| fail("--project is required")),
            });
            if let Some(id) = a.opt("id") {
                body["id"] = json!(id);
            }
            if let Some(m) = a.opt("models") {
                body["models"] = json!(m.split(',').collect::<Vec<_>>());
            }
            if let Some(p) = a.opt("projects") {
                body["projects"] = json!(p.split(',').collect::<Vec<_>>());
            }
            let mut tags = serde_json::Map::new();
            for t in a.all("tag") {
                let (k, v) = t.split_once('=').unwrap_or_else(|| fail("--tag takes key=value"));
                tags.insert(k.into(), json!(v));
            }
            body["tags"] = Value::Object(tags);
            let v = c.call("POST", "/v1/keys", Some(body));
            c.print(&v, |v| {
                println!(
                    "key:      {}\nid:       {}\nkey_hash: {}\nteam:     {}\nproject:  {}\n\nThe key is shown once; only its hash is stored.",
                    s(&v["key"]),
                    s(&v["id"]),
                    s(&v["key_hash"]),
                    s(&v["team"]),
                    s(&v["project"])
                );
            });
        }
        ["list"] => {
            let v = c.call("GET", "/v1/keys", None);
            c.print(&v, |v| {
                let rows = v["keys"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|k| {
                        vec![
                            s(&k["id"]),
                            s(&k["team"]),
                            s(&k["project"]),
                            s(&k["status"]),
                            k["models"].as_array().map(|m| m.iter().map(s).collect::<Vec<_>>().join(",")).unwrap_or_else(|| "all".into()),
                            tollgate_filter::budget::rfc3339(k["created_ms"].as_u64().unwrap_or(0)),
                        ]
                    })
                    .collect();
                table(&["id", "team", "project", "status", "models", "created"], rows);
            });
        }
        ["revoke", id] => {
            let v = c.call("POST", &format!("/v1/keys/{id}/revoke"), None);
            c.print(&v, |_| println!("key {id} revoked; every Envoy refuses it within two polls (about 2 s)."));
        }
        ["rotate", id] => {
            let v = c.call("POST", &format!("/v1/keys/{id}/rotate"), None);
            c.print(&v, |v| {
                println!("new key:  {}\nkey_hash: {}\n\nThe old key stopped working; the new one is shown once.", s(&v["key"]), s(&v["key_hash"]))
            });
        }
        _ => fail(&format!("unknown keys command\n\n{KEYS_HELP}")),
    }
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
        b["period_end_ms"].as_u64().map(tollgate_filter::budget::rfc3339).unwrap_or_else(|| "-".into()),
    ]
}

const BUDGET_HEADERS: [&str; 11] = ["scope", "period", "limit", "used", "reserved", "limit tok", "used tok", "used %", "projected", "soft/hard %", "resets"];

fn budgets(a: &Args) {
    if a.flag("help") || a.pos.is_empty() {
        print!("{BUDGETS_HELP}");
        return;
    }
    let c = client(a);
    match a.pos.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["set", t, id] => {
            let mut body = json!({"period": a.opt("period").unwrap_or_else(|| fail("--period is required"))});
            limit_options(a, &mut body);
            if let Some(tz) = a.opt("timezone") {
                body["timezone"] = json!(tz);
            }
            if let Some(p) = pct_opt(a, "soft-pct") {
                body["soft_pct"] = p;
            }
            if let Some(p) = pct_opt(a, "hard-pct") {
                body["hard_pct"] = p;
            }
            if let Some(w) = a.opt("window-start") {
                body["window_start_ms"] = json!(parse_time(w));
            }
            if let Some(w) = a.opt("window-end") {
                body["window_end_ms"] = json!(parse_time(w));
            }
            let v = c.call("PUT", &format!("/v1/budgets/{t}/{id}"), Some(body));
            c.print(&v, |v| table(&BUDGET_HEADERS, vec![budget_row(v)]));
        }
        ["show"] => {
            let v = c.call("GET", "/v1/budgets", None);
            c.print(&v, |v| table(&BUDGET_HEADERS, v["budgets"].as_array().cloned().unwrap_or_default().iter().map(budget_row).collect()));
        }
        ["show", t, id] => {
            let v = c.call("GET", &format!("/v1/budgets/{t}/{id}"), None);
            c.print(&v, |v| table(&BUDGET_HEADERS, vec![budget_row(v)]));
        }
        ["delete", t, id] => {
            c.call_text("DELETE", &format!("/v1/budgets/{t}/{id}"), None);
            if c.json {
                println!("{}", json!({"deleted": format!("{t}:{id}")}));
            } else {
                println!("budget {t}:{id} deleted");
            }
        }
        _ => fail(&format!("unknown budgets command\n\n{BUDGETS_HELP}")),
    }
}

fn query_string(a: &Args, keys: &[(&str, &str)]) -> String {
    let mut q = Vec::new();
    for (flag, param) in keys {
        if let Some(v) = a.opt(flag) {
            let v = if *param == "from_ms" || *param == "to_ms" { parse_time(v).to_string() } else { v.to_string() };
            let enc: String = v
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            q.push(format!("{param}={enc}"));
        }
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn spend(a: &Args) {
    if a.flag("help") {
        print!("{SPEND_HELP}");
        return;
    }
    let c = client(a);
    let mut qs = query_string(
        a,
        &[
            ("group-by", "group_by"),
            ("bucket", "bucket"),
            ("from", "from_ms"),
            ("to", "to_ms"),
            ("team", "team"),
            ("project", "project"),
            ("key", "key"),
            ("model", "model"),
            ("provider", "provider"),
            ("feature", "feature"),
            ("prompt-version", "prompt_version"),
            ("top", "top"),
        ],
    );
    if a.flag("csv") {
        qs.push_str(if qs.is_empty() { "?format=csv" } else { "&format=csv" });
        print!("{}", c.call_text("GET", &format!("/v1/reports/spend{qs}"), None));
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
        headers.extend(["requests", "input", "cached %", "output", "cost", "errors", "429s"]);
        let rows = v["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let mut row: Vec<String> = dims.iter().map(|d| s(&r[d.as_str()])).collect();
                if bucketed {
                    row.push(tollgate_filter::budget::rfc3339(r["bucket_start_ms"].as_u64().unwrap_or(0)));
                }
                row.extend([
                    s(&r["requests"]),
                    s(&r["input_tokens"]),
                    format!("{}%", s(&r["cache_share_pct"])),
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

fn movers(a: &Args) {
    if a.flag("help") {
        println!("tollgate movers [--by key,model,team,...] [--from T] [--to T] [--top N]\n\nWhich groups' spend moved the most against the previous range of the same length.");
        return;
    }
    let c = client(a);
    let qs = query_string(a, &[("by", "by"), ("from", "from_ms"), ("to", "to_ms"), ("top", "top")]);
    let v = c.call("GET", &format!("/v1/reports/movers{qs}"), None);
    c.print(&v, |v| {
        for d in ["team", "project", "key", "model", "provider", "feature", "prompt_version"] {
            let Some(list) = v[d].as_array() else { continue };
            println!("{d}:");
            table(
                &["value", "previous", "current", "change"],
                list.iter()
                    .map(|m| {
                        let delta = m["delta_micros"].as_i64().unwrap_or(0);
                        vec![
                            s(&m["value"]),
                            usd(&m["previous_micros"]),
                            usd(&m["current_micros"]),
                            format!("{}${}", if delta < 0 { "-" } else { "+" }, tollgate_filter::budget::usd(delta.unsigned_abs())),
                        ]
                    })
                    .collect(),
            );
            println!();
        }
    });
}

fn report(a: &Args) {
    if a.flag("help") || a.pos.first().map(String::as_str) != Some("monthly") {
        println!("tollgate report monthly [--month 2026-11]\n\nThe monthly review in Markdown: total and change, drivers, traffic per model, cache share, budgets hit, highest-volume workflows.");
        return;
    }
    let c = client(a);
    let qs = a.opt("month").map(|m| format!("?month={m}")).unwrap_or_default();
    let md = c.call_text("GET", &format!("/v1/reports/monthly{qs}"), None);
    if c.json {
        println!("{}", json!({"markdown": md}));
    } else {
        print!("{md}");
    }
}

fn alerts(a: &Args) {
    if a.flag("help") {
        println!("tollgate alerts\n\nBudget threshold alerts, newest first, with webhook delivery status.");
        return;
    }
    let c = client(a);
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
                        tollgate_filter::budget::rfc3339(x["created_ms"].as_u64().unwrap_or(0)),
                        x["delivered_ms"]
                            .as_u64()
                            .map(tollgate_filter::budget::rfc3339)
                            .unwrap_or_else(|| format!("no ({} attempts)", s(&x["attempts"]))),
                    ]
                })
                .collect(),
        );
    });
}

const REQUESTS_HELP: &str = "tollgate requests create key|team|project ID [--limit-usd N | --limit-micros N] [--limit-tokens N] --why TEXT
                      (with --token: an admin token, or your virtual key for your own key/team/project)
tollgate requests list [--status pending|approved|refused]
tollgate requests approve ID [--by NAME] [--note TEXT]     the new limit applies in every Envoy within a poll
tollgate requests refuse ID [--by NAME] [--note TEXT]
";

fn requests_cmd(a: &Args) {
    if a.flag("help") || a.pos.is_empty() {
        print!("{REQUESTS_HELP}");
        return;
    }
    let c = client(a);
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
    match a.pos.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create", t, id] => {
            let mut body = json!({"scope_type": t, "scope_id": id,
                                  "justification": a.opt("why").unwrap_or_else(|| fail("--why is required"))});
            limit_options(a, &mut body);
            if let Some(b) = a.opt("by") {
                body["requested_by"] = json!(b);
            }
            let v = c.call("POST", "/v1/budget-requests", Some(body));
            c.print(&v, |v| table(&headers, vec![show(v)]));
        }
        ["list"] => {
            let qs = a.opt("status").map(|st| format!("?status={st}")).unwrap_or_default();
            let v = c.call("GET", &format!("/v1/budget-requests{qs}"), None);
            c.print(&v, |v| table(&headers, v["requests"].as_array().cloned().unwrap_or_default().iter().map(show).collect()));
        }
        [verb @ ("approve" | "refuse"), id] => {
            let mut body = json!({});
            if let Some(b) = a.opt("by") {
                body["decided_by"] = json!(b);
            }
            if let Some(n) = a.opt("note") {
                body["note"] = json!(n);
            }
            let v = c.call("POST", &format!("/v1/budget-requests/{id}/{verb}"), Some(body));
            c.print(&v, |v| table(&headers, vec![show(v)]));
        }
        _ => fail(&format!("unknown requests command\n\n{REQUESTS_HELP}")),
    }
}

fn offline_key(raw: &[String]) {
    let json = raw.iter().any(|a| a == "--json");
    let rest: Vec<&str> = raw.iter().map(String::as_str).filter(|a| *a != "--json").collect();
    match rest.as_slice() {
        [] | ["--help"] | ["-h"] => print!("{HELP}"),
        ["new", more @ ..] => {
            let prefix = match more {
                [] => "tg-",
                ["--prefix", p] => p,
                _ => fail("usage: tollgate key new [--prefix PREFIX]"),
            };
            let mut raw = [0u8; 24];
            if let Err(e) = getrandom::fill(&mut raw) {
                fail(&format!("no randomness available: {e}"));
            }
            let key = format!("{prefix}{}", to_hex(&raw));
            let hash = hash_key(&key);
            if json {
                println!("{}", serde_json::json!({"key": key, "key_hash": hash}));
            } else {
                println!("key:      {key}\nkey_hash: {hash}\n\nThe key is shown once. Put key_hash in the filter configuration (keys[].key_hash).");
            }
        }
        ["hash", k] => {
            let key = if *k == "-" {
                let mut s = String::new();
                if std::io::stdin().read_line(&mut s).is_err() {
                    fail("cannot read the key from standard input");
                }
                s.trim().to_string()
            } else {
                k.to_string()
            };
            if key.is_empty() {
                fail("the key is empty");
            }
            let hash = hash_key(&key);
            if json {
                println!("{}", serde_json::json!({"key_hash": hash}));
            } else {
                println!("{hash}");
            }
        }
        _ => fail(&format!("unknown command: key {}\n\n{HELP}", rest.join(" "))),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

fn serve(flags: &[&str]) {
    let mut listen = env_or("TOLLGATE_LISTEN", "127.0.0.1:7070");
    let mut db = env_or("TOLLGATE_DB", "tollgate.db");
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        match (*f, it.next()) {
            ("--listen", Some(v)) => listen = v.to_string(),
            ("--db", Some(v)) => db = v.to_string(),
            _ => fail("usage: tollgate serve [--listen ADDR] [--db PATH]"),
        }
    }
    let admin = std::env::var("TOLLGATE_ADMIN_TOKEN").unwrap_or_default();
    let filter = std::env::var("TOLLGATE_FILTER_TOKEN").unwrap_or_default();
    if admin.len() < 16 || filter.len() < 16 {
        fail("TOLLGATE_ADMIN_TOKEN and TOLLGATE_FILTER_TOKEN must be set (16 characters or more each)");
    }
    if admin == filter {
        fail("TOLLGATE_ADMIN_TOKEN and TOLLGATE_FILTER_TOKEN must differ");
    }
    let node_ttl_ms = env_or("TOLLGATE_NODE_TTL_MS", "15000").parse().unwrap_or_else(|_| fail("TOLLGATE_NODE_TTL_MS must be an integer"));
    let filter_wasm = std::env::var("TOLLGATE_FILTER_WASM").ok().filter(|v| !v.is_empty()).map(|path| {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| fail(&format!("TOLLGATE_FILTER_WASM: cannot read {path}: {e}")));
        let sha = sha256_hex(&bytes);
        (bytes, sha)
    });
    let settings = Settings {
        admin_token_hash: hash_key(&admin),
        filter_token_hash: hash_key(&filter),
        webhook_url: std::env::var("TOLLGATE_WEBHOOK_URL").ok().filter(|v| !v.is_empty()),
        node_ttl_ms,
        filter_wasm,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        let is_pg = db.starts_with("postgres://") || db.starts_with("postgresql://") || db.contains("host=");
        let store: Arc<dyn Store> = if is_pg {
            match tollgate_control::postgres::PgStore::connect(&db).await {
                Ok(s) => Arc::new(s),
                Err(e) => fail(&format!("cannot open the PostgreSQL database: {e}")),
            }
        } else {
            match SqliteStore::open(std::path::Path::new(&db)) {
                Ok(s) => Arc::new(s),
                Err(e) => fail(&format!("cannot open database {db}: {e}")),
            }
        };
        let db = if is_pg { "postgresql".to_string() } else { db };
        let state = AppState::new(store, settings);
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => fail(&format!("cannot listen on {listen}: {e}")),
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
        tokio::spawn(alert_loop(state.clone()));
        log_event("info", "listening", serde_json::json!({"addr": addr, "db": db}));
        println!("tollgate control service listening on {addr}");
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            log_event("info", "shutting down", serde_json::json!({}));
        };
        if let Err(e) = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await {
            fail(&format!("server error: {e}"));
        }
    });
}

/// SHA-256 of `bytes`, lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    to_hex(&sha2::Sha256::digest(bytes))
}
