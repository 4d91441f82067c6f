//! `tollgate keys import FILE` and `tollgate budgets import FILE`: keys or
//! budgets in bulk from CSV or JSON Lines, as teams moving from another
//! gateway have them, sent in batches to `POST /v1/key-imports` or
//! `POST /v1/budget-imports` (each batch all or none).
//!
//! Keys, CSV: a header row naming the columns, from `id`, `team`, `project`,
//! `models` and `projects` (lists separated by `;`), `tags` (`k=v;k=v`),
//! `key` (the existing key, hashed by the service) or `key_hash`
//! (its SHA3-256). JSON Lines: one object per line with the same fields
//! (lists as arrays, tags as an object). Keys made for rows without `key`
//! or `key_hash` are printed once, as JSON Lines, to `--made` or stdout.
//!
//! Budgets: `scope_type`, `scope_id` and the fields of `PUT /v1/budgets`
//! (`limit_micros`, `limit_tokens`, `period`, `timezone`,
//! `window_start_ms`, `window_end_ms`, `soft_pct`, `hard_pct`; in CSV the
//! numbers as digits, `off` for a threshold turned off).

use std::io::{BufRead, Write};

use serde_json::{json, Map, Value};

use super::{fail, Client};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

/// What is imported: its name in messages and in the request body, where
/// to, and its CSV columns (those in `numbers` are sent as numbers).
pub struct Kind {
    noun: &'static str,
    endpoint: &'static str,
    columns: &'static [&'static str],
    numbers: &'static [&'static str],
}

pub const KEYS: Kind = Kind {
    noun: "keys",
    endpoint: "/v1/key-imports",
    columns: &["id", "team", "project", "models", "projects", "tags", "key", "key_hash"],
    numbers: &[],
};

pub const BUDGETS: Kind = Kind {
    noun: "budgets",
    endpoint: "/v1/budget-imports",
    columns: &["scope_type", "scope_id", "limit_micros", "limit_tokens", "period", "timezone", "window_start_ms", "window_end_ms", "soft_pct", "hard_pct"],
    numbers: &["limit_micros", "limit_tokens", "window_start_ms", "window_end_ms", "soft_pct", "hard_pct"],
};

/// One CSV record as an import object; `line` for messages.
fn csv_row(kind: &Kind, headers: &[String], rec: &csv::StringRecord, line: u64) -> Result<Value, String> {
    let mut o = Map::new();
    for (h, v) in headers.iter().zip(rec.iter()) {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let value = match h.as_str() {
            "soft_pct" | "hard_pct" if v.eq_ignore_ascii_case("off") => Value::Null,
            n if kind.numbers.contains(&n) => {
                json!(v.parse::<u64>().map_err(|_| format!("line {line}: '{n}' must be a whole number, not '{}'", super::terminal_safe(v)))?)
            }
            "models" | "projects" => json!(v.split(';').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>()),
            "tags" => {
                let mut t = Map::new();
                for pair in v.split(';').filter(|p| !p.trim().is_empty()) {
                    let (k, val) = pair.split_once('=').ok_or_else(|| format!("line {line}: tags must be key=value;key=value"))?;
                    t.insert(k.trim().to_string(), json!(val.trim()));
                }
                Value::Object(t)
            }
            _ => json!(v),
        };
        o.insert(h.clone(), value);
    }
    Ok(Value::Object(o))
}

/// Calls `each` with every import object of a file and its line number,
/// reading as it goes (a million keys are never all in memory).
fn read(kind: &Kind, path: &str, format: Format, each: &mut dyn FnMut(u64, Value)) {
    let reader: Box<dyn std::io::Read> = if path == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).unwrap_or_else(|e| fail(&format!("cannot open {path}: {e}"))))
    };
    match format {
        Format::Jsonl => {
            for (i, line) in std::io::BufReader::new(reader).lines().enumerate() {
                let n = i as u64 + 1;
                let line = line.unwrap_or_else(|e| fail(&format!("{path}: line {n}: {e}")));
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| fail(&format!("{path}: line {n}: not JSON: {e}")));
                if !v.is_object() {
                    fail(&format!("{path}: line {n}: expected an object"));
                }
                each(n, v);
            }
        }
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new().flexible(false).from_reader(reader);
            let headers: Vec<String> = r
                .headers()
                .unwrap_or_else(|e| fail(&format!("{path}: {e}")))
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
            if let Some(bad) = headers.iter().find(|h| !kind.columns.contains(&h.as_str())) {
                fail(&format!("{path}: unknown column '{}' (columns: {})", super::terminal_safe(bad), kind.columns.join(", ")));
            }
            for rec in r.records() {
                let rec = rec.unwrap_or_else(|e| fail(&format!("{path}: {e}")));
                let n = rec.position().map(|p| p.line()).unwrap_or(0);
                each(n, csv_row(kind, &headers, &rec, n).unwrap_or_else(|e| fail(&format!("{path}: {e}"))));
            }
        }
    }
}

struct Import<'a> {
    kind: &'a Kind,
    client: &'a Client,
    sink: Box<dyn Write>,
    /// Rows imported (or skipped) so far.
    done: usize,
    imported: usize,
}

impl Import<'_> {
    fn send(&mut self, chunk: &[(u64, Value)]) {
        let mut body = Map::new();
        body.insert(self.kind.noun.into(), Value::Array(chunk.iter().map(|(_, v)| v.clone()).collect()));
        match self.client.try_call_text("POST", self.kind.endpoint, Some(Value::Object(body))) {
            Ok(text) => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                for m in v["made"].as_array().into_iter().flatten() {
                    let i = m["index"].as_u64().unwrap_or(0) as usize;
                    let line = chunk.get(i).map(|(n, _)| *n).unwrap_or(0);
                    let rec = json!({"line": line, "id": m["id"], "key": m["key"]});
                    let _ = writeln!(self.sink, "{rec}");
                }
            }
            Err((status, msg)) => {
                let _ = self.sink.flush();
                // "keys[i]: …" names the row inside the batch: say its line.
                let line = msg
                    .strip_prefix(self.kind.noun)
                    .and_then(|r| r.strip_prefix('['))
                    .and_then(|r| r.split_once(']'))
                    .and_then(|(i, _)| i.parse::<usize>().ok())
                    .and_then(|i| chunk.get(i))
                    .map(|(n, _)| format!(" (line {n})"))
                    .unwrap_or_default();
                let done = self.done;
                fail(&format!(
                    "import stopped: {status}: {msg}{line}. The first {done} rows were imported; \
                     fix the file and run again with --skip {done}"
                ));
            }
        }
        self.done += chunk.len();
        self.imported += chunk.len();
        eprintln!("imported {}", self.done);
    }
}

pub fn run(kind: &Kind, c: &Client, from: &super::args::ImportArgs, made: Option<&str>) {
    let (path, skip) = (from.file.as_str(), from.skip);
    let format = from.format.unwrap_or(if path.ends_with(".csv") { Format::Csv } else { Format::Jsonl });
    let sink: Box<dyn Write> = match made {
        Some(p) => {
            let mut o = std::fs::OpenOptions::new();
            o.create(true).append(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            Box::new(o.open(p).unwrap_or_else(|e| fail(&format!("cannot write {p}: {e}"))))
        }
        None => Box::new(std::io::stdout()),
    };
    let batch = from.batch.clamp(1, 10_000);
    let started = std::time::Instant::now();
    let mut imp = Import { kind, client: c, sink, done: 0, imported: 0 };
    let (mut seen, mut pending) = (0usize, Vec::with_capacity(batch));
    read(kind, path, format, &mut |line, v| {
        seen += 1;
        if seen <= skip {
            imp.done += 1;
            return;
        }
        pending.push((line, v));
        if pending.len() == batch {
            imp.send(&pending);
            pending.clear();
        }
    });
    if !pending.is_empty() {
        imp.send(&pending);
    }
    let _ = imp.sink.flush();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let noun = kind.noun;
    eprintln!("{} {noun} imported in {secs:.1} s ({:.0} {noun}/s)", imp.imported, imp.imported as f64 / secs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_import_objects() {
        let headers: Vec<String> = ["id", "team", "project", "models", "tags", "key"].iter().map(|s| s.to_string()).collect();
        let rec = csv::StringRecord::from(vec!["k1", "search", "web", "cheap; gpt-*", "env=prod;tier=1", ""]);
        let v = csv_row(&KEYS, &headers, &rec, 2).unwrap();
        assert_eq!(v, json!({"id": "k1", "team": "search", "project": "web", "models": ["cheap", "gpt-*"], "tags": {"env": "prod", "tier": "1"}}));
        let bad = csv::StringRecord::from(vec!["k1", "t", "p", "", "oops", ""]);
        assert!(csv_row(&KEYS, &headers, &bad, 7).unwrap_err().contains("line 7"));
    }

    #[test]
    fn csv_budget_rows_send_numbers_as_numbers() {
        let headers: Vec<String> = ["scope_type", "scope_id", "limit_micros", "period", "soft_pct", "hard_pct"].iter().map(|s| s.to_string()).collect();
        let rec = csv::StringRecord::from(vec!["key", "k1", "5000000", "monthly", "off", ""]);
        let v = csv_row(&BUDGETS, &headers, &rec, 3).unwrap();
        assert_eq!(v, json!({"scope_type": "key", "scope_id": "k1", "limit_micros": 5000000, "period": "monthly", "soft_pct": null}));
        let bad = csv::StringRecord::from(vec!["key", "k1", "5.5", "monthly", "", ""]);
        let e = csv_row(&BUDGETS, &headers, &bad, 4).unwrap_err();
        assert!(e.contains("line 4") && e.contains("limit_micros"), "{e}");
        let hostile = csv::StringRecord::from(vec!["key", "k1", "\u{1b}[2J", "monthly", "", ""]);
        assert!(!csv_row(&BUDGETS, &headers, &hostile, 5).unwrap_err().contains('\u{1b}'), "terminal escapes are not echoed");
    }
}
