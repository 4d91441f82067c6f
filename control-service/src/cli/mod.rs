//! The admin command line: talks to the control service's API.
//!
//! `args` declares it (clap); `keys`, `budgets` (and budget requests),
//! `reports` and `serve` run its command groups; this file holds the HTTP
//! client and the output helpers every group uses.

pub mod args;
pub mod budgets;
pub mod evals;
pub mod import;
pub mod keys;
pub mod prompts;
pub mod reports;
pub mod serve;

use serde_json::{json, Value};

pub struct Client {
    pub url: String,
    pub token: String,
    pub json: bool,
}

pub fn fail(msg: &str) -> ! {
    eprintln!("tollgate: {}", terminal_safe(msg));
    std::process::exit(2)
}

/// Text for a terminal: values in the output come from clients (tags,
/// model names, user ids), so control characters (ESC, C1 controls such as
/// U+009B CSI, BEL, backspace, DEL…) are shown as `\u{..}` escapes instead
/// of being sent to the terminal. Newlines and tabs stay.
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Writes to stdout through [`terminal_safe`]. The CLI prints only this way.
pub fn out(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(terminal_safe(s).as_bytes());
}

impl Client {
    /// From the global options: the URL, and the admin token (required).
    pub fn from_global(g: &args::Global) -> Client {
        let token = g.token.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| fail("no admin token: pass --token or set TOLLGATE_ADMIN_TOKEN"));
        Client { url: g.url.clone(), token, json: g.json }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let text = self.call_text(method, path, body);
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    pub fn call_text(&self, method: &str, path: &str, body: Option<Value>) -> String {
        self.try_call_text(method, path, body).unwrap_or_else(|(status, msg)| fail(&format!("{method} {path}: {status}: {msg}")))
    }

    /// The answer's text, or its status and error message (≥ 400). An
    /// unreachable service ends the command.
    pub fn try_call_text(&self, method: &str, path: &str, body: Option<Value>) -> Result<String, (u16, String)> {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let url = format!("{}{}", self.url.trim_end_matches('/'), path);
        let auth = format!("Bearer {}", self.token);
        let result = match (method, body) {
            ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => agent.delete(&url).header("authorization", &auth).call(),
            (m, b) => {
                let req = match m {
                    "PUT" => agent.put(&url),
                    _ => agent.post(&url),
                }
                .header("authorization", &auth);
                req.send_json(b.unwrap_or(json!({})))
            }
        };
        let mut resp = result.unwrap_or_else(|e| fail(&format!("cannot reach the control service at {}: {e}", self.url)));
        let status = resp.status().as_u16();
        let text = resp.body_mut().with_config().limit(64 << 20).read_to_string().unwrap_or_default();
        if status >= 400 {
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            return Err((status, msg));
        }
        Ok(text)
    }

    pub fn print(&self, v: &Value, table: impl FnOnce(&Value)) {
        if self.json {
            out(&format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()));
        } else {
            table(v);
        }
    }
}

/// Prints rows as aligned columns.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    rows_table(headers, rows, true)
}

/// Rows as aligned columns, under the headers or not (a later page).
fn rows_table(headers: &[&str], rows: Vec<Vec<String>>, with_headers: bool) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w.get(i).copied().unwrap_or(0))).collect();
        out(&format!("{}\n", parts.join("  ").trim_end()));
    };
    if with_headers {
        line(headers.iter().map(|h| h.to_uppercase()).collect());
    }
    for r in rows {
        line(r);
    }
}

/// Shows a list endpoint that answers `{field: [...], total, next}` for
/// `limit` and `after` (`GET /v1/keys`, `GET /v1/budgets`): one page, with
/// where the next starts, or with `--all` every page in turn, never the
/// whole list in one answer.
pub fn list_pages(c: &Client, path: &str, field: &str, page: &args::PageArgs, headers: &[&str], row: fn(&Value) -> Vec<String>) {
    let get = |limit: u64, after: Option<&str>| {
        let after = after.map(|a| format!("&after={}", path_segment(a))).unwrap_or_default();
        c.call("GET", &format!("{path}?limit={limit}{after}"), None)
    };
    if !page.all {
        let v = get(page.limit, page.after.as_deref());
        c.print(&v, |v| {
            let items = v[field].as_array().map(Vec::as_slice).unwrap_or_default();
            table(headers, items.iter().map(row).collect());
            if let Some(next) = v["next"].as_str() {
                eprintln!("{} of {}; the next page: --after {}", items.len(), s(&v["total"]), terminal_safe(next));
            }
        });
        return;
    }
    let mut after: Option<String> = None;
    let mut first = true;
    loop {
        let v = get(5000, after.as_deref());
        let items = v[field].as_array().map(Vec::as_slice).unwrap_or_default();
        if c.json {
            let lines: String = items.iter().map(|i| format!("{i}\n")).collect();
            out(&lines);
        } else {
            rows_table(headers, items.iter().map(row).collect(), first);
        }
        first = false;
        match v["next"].as_str() {
            Some(n) if !items.is_empty() => after = Some(n.to_string()),
            _ => return,
        }
    }
}

/// A value as one URL path segment (the service checks names; this keeps the URL well-formed).
pub fn path_segment(v: &str) -> String {
    v.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

pub fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

pub fn usd(v: &Value) -> String {
    v.as_u64().map(|m| format!("${}", tollgate_protocol::format::usd(m))).unwrap_or_else(|| "-".into())
}

/// "2026-11-01" or "2026-11-01T12:00:00Z" or Unix ms → Unix ms.
pub fn parse_time(t: &str) -> u64 {
    if let Ok(ms) = t.parse::<u64>() {
        return ms;
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return d.timestamp_millis() as u64;
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(dt) = d.and_hms_opt(0, 0, 0) {
            return dt.and_utc().timestamp_millis() as u64;
        }
    }
    fail(&format!("cannot read the time '{t}' (use 2026-11-01, an RFC 3339 time, or Unix ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_shown_not_sent() {
        let t = terminal_safe("team\u{1b}[2J\u{9b}31m\u{7}ok\n");
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t}");
        assert!(t.contains("\\u{1b}[2J") && t.ends_with("ok\n"), "{t}");
        assert!(matches!(terminal_safe("plain\ttext\n"), std::borrow::Cow::Borrowed(_)));
    }
}
