//! The monthly review report, in Markdown for people who do not read logs.

use std::fmt::Write;

use chrono::{Datelike, NaiveDate};
use tollgate_protocol::format::usd;

use crate::reports::{movers, Dim, ReportQuery, ReportRow};
use crate::store::{Result, Store};

/// "2026-11" for a Unix ms (UTC).
pub fn current_month(now_ms: u64) -> String {
    let d = chrono::DateTime::from_timestamp_millis(now_ms as i64).unwrap_or_default();
    format!("{:04}-{:02}", d.year(), d.month())
}

/// (start, end, previous month's start) in Unix ms, UTC.
pub fn month_bounds(month: &str) -> Option<(u64, u64, u64)> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let start = NaiveDate::from_ymd_opt(y, m, 1)?;
    let next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1)? } else { NaiveDate::from_ymd_opt(y, m + 1, 1)? };
    let prev = if m == 1 { NaiveDate::from_ymd_opt(y - 1, 12, 1)? } else { NaiveDate::from_ymd_opt(y, m - 1, 1)? };
    let ms = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis() as u64);
    Some((ms(start)?, ms(next)?, ms(prev)?))
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    let permille = u128::from(part) * 1000 / u128::from(whole);
    format!("{}.{}%", permille / 10, permille % 10)
}

fn change(cur: u64, prev: u64) -> String {
    let delta = cur as i128 - prev as i128;
    let sign = if delta >= 0 { "+" } else { "−" };
    let abs = delta.unsigned_abs() as u64;
    if prev == 0 {
        format!("{sign}${} (no spend the month before)", usd(abs))
    } else {
        format!("{sign}${} ({sign}{})", usd(abs), pct(abs, prev))
    }
}

fn name(v: &Option<String>) -> String {
    v.as_deref().map(md_cell).unwrap_or_else(|| "(none)".into())
}

/// Text from clients (tags, model names) inside a Markdown table cell or
/// code span: no HTML, no table breaks, no line breaks, no backticks, no
/// Markdown emphasis or links.
pub fn md_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The months a review compares: this one, `[from, to)`, and the one
/// before, `[prev_from, from)`.
#[derive(Clone, Copy)]
struct Months {
    from: u64,
    to: u64,
    prev_from: u64,
}

impl Months {
    fn this(&self, group_by: Vec<Dim>) -> ReportQuery {
        ReportQuery { group_by, from_ms: self.from, to_ms: self.to, ..Default::default() }
    }

    fn before(&self, group_by: Vec<Dim>) -> ReportQuery {
        ReportQuery { group_by, from_ms: self.prev_from, to_ms: self.from, ..Default::default() }
    }
}

/// The review of `month` (`[from, to)`, against `[prev_from, from)`): the
/// total, what drove its change, where the traffic went, budgets, the
/// highest-volume workflows and explained prompt-cache misses.
pub fn render(store: &dyn Store, month: &str, from: u64, to: u64, prev_from: u64) -> Result<String> {
    let months = Months { from, to, prev_from };
    let total = store.report(&months.this(vec![]))?.into_iter().next().unwrap_or_default();
    let prev_total = store.report(&months.before(vec![]))?.into_iter().next().unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(md, "# AI spend review — {month}\n");
    let _ = writeln!(
        md,
        "**Total spend: ${}** over {} requests ({} input and {} output tokens). Change against the month before: {}.\n",
        usd(total.cost_micros),
        total.requests,
        total.input_tokens,
        total.output_tokens,
        change(total.cost_micros, prev_total.cost_micros)
    );
    drivers(&mut md, store, months)?;
    traffic(&mut md, store, months, &total)?;
    budgets(&mut md, store, months)?;
    workflows(&mut md, store, months)?;
    cache_misses(&mut md, store, months)?;
    Ok(md)
}

/// A group's value as a table cell ("(none)" when the row has no such group).
fn cell(r: &ReportRow, i: usize) -> String {
    r.group.get(i).map_or_else(|| "(none)".into(), name)
}

/// The teams, projects, models and keys whose spend moved most.
fn drivers(md: &mut String, store: &dyn Store, months: Months) -> Result<()> {
    let _ = writeln!(md, "## What drove the change\n");
    for (d, title) in [(Dim::Team, "Teams"), (Dim::Project, "Projects"), (Dim::Model, "Models"), (Dim::Key, "Keys")] {
        let cur = store.report(&months.this(vec![d]))?;
        let prev = store.report(&months.before(vec![d]))?;
        let m = movers(d, &cur, &prev, 5);
        if m.is_empty() {
            continue;
        }
        let _ = writeln!(md, "**{title}**\n\n| {} | last month | this month | change |\n|---|---:|---:|---:|", d.name());
        for x in m {
            let _ = writeln!(
                md,
                "| {} | ${} | ${} | {} |",
                name(&x.value),
                usd(x.previous_micros),
                usd(x.current_micros),
                change(x.current_micros, x.previous_micros)
            );
        }
        md.push('\n');
    }
    Ok(())
}

/// Requests and spend per model, and what prompt caches served and saved.
fn traffic(md: &mut String, store: &dyn Store, months: Months, total: &ReportRow) -> Result<()> {
    let models = store.report(&months.this(vec![Dim::Model]))?;
    let _ = writeln!(md, "## Where the traffic went\n\n| model | requests | share of requests | spend | cached share of input |\n|---|---:|---:|---:|---:|");
    for r in &models {
        let _ = writeln!(
            md,
            "| {} | {} | {} | ${} | {} |",
            cell(r, 0),
            r.requests,
            pct(r.requests, total.requests),
            usd(r.cost_micros),
            pct(r.cached_input_tokens, r.input_tokens)
        );
    }
    let _ = writeln!(
        md,
        "\nOverall, {} of input tokens were served from provider prompt caches (cheaper).",
        pct(total.cached_input_tokens, total.input_tokens)
    );
    let hit = match total.cache_hit_rate_permille() {
        Some(h) => format!("a hit rate of {}.{}% on the input whose provider reported its cache", h / 10, h % 10),
        None => "no provider reported its cache".to_string(),
    };
    let _ = writeln!(
        md,
        "Prompt caches saved ${} against uncached prices this month ({hit}).\n",
        tollgate_protocol::format::usd_signed(total.cache_savings_micros)
    );
    Ok(())
}

/// The budgets that reached a threshold during the month.
fn budgets(md: &mut String, store: &dyn Store, months: Months) -> Result<()> {
    let _ = writeln!(md, "## Budgets\n");
    let alerts: Vec<_> = store
        .list_alerts(1000)?
        .into_iter()
        .filter(|a| a.created_ms >= months.from && a.created_ms < months.to)
        .collect();
    if alerts.is_empty() {
        let _ = writeln!(md, "No budget reached its warning or stop threshold this month.\n");
        return Ok(());
    }
    for a in alerts {
        let what = if a.threshold == "hard" { "was **stopped** (hard limit)" } else { "passed its warning threshold" };
        let _ = writeln!(md, "- {} **{}** {what} on {}.", a.scope_type.as_str(), md_cell(&a.scope_id), tollgate_protocol::format::rfc3339(a.created_ms));
    }
    md.push('\n');
    Ok(())
}

/// The ten (feature, prompt version, model) with the most requests.
fn workflows(md: &mut String, store: &dyn Store, months: Months) -> Result<()> {
    let mut flows: Vec<ReportRow> = store.report(&months.this(vec![Dim::Feature, Dim::PromptVersion, Dim::Model]))?;
    flows.sort_by_key(|r| std::cmp::Reverse(r.requests));
    flows.truncate(10);
    let _ = writeln!(
        md,
        "## Highest-volume workflows\n\nCandidates for a cheaper model: many requests with short answers.\n\n| feature | prompt version | model | requests | avg input tokens | avg output tokens | spend |\n|---|---|---|---:|---:|---:|---:|"
    );
    for r in flows {
        let n = r.requests.max(1);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | ${} |",
            cell(&r, 0),
            cell(&r, 1),
            cell(&r, 2),
            r.requests,
            r.input_tokens / n,
            r.output_tokens / n,
            usd(r.cost_micros)
        );
    }
    Ok(())
}

/// The ten costliest prompt-cache misses the gateway could explain.
fn cache_misses(md: &mut String, store: &dyn Store, months: Months) -> Result<()> {
    let misses = store.cache_misses(&crate::store::CacheMissQuery { from_ms: months.from, to_ms: months.to, ..Default::default() })?;
    let _ = writeln!(md, "\n## Prompt-cache misses\n");
    if misses.is_empty() {
        let _ = writeln!(md, "No cache misses the gateway could explain.");
    }
    for m in misses.iter().take(10) {
        let _ = writeln!(md, "- {}", md_cell(&m.sentence()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_cannot_break_the_report() {
        let v = md_cell("<script>alert(1)</script>|x\n# title `code` [a](b)");
        assert!(!v.contains('<') && !v.contains('\n'), "{v}");
        let unescaped_pipe = v.char_indices().any(|(i, c)| c == '|' && !v[..i].ends_with('\\'));
        assert!(!unescaped_pipe && v.contains("\\|x"), "{v}");
        assert!(v.contains("\\[a\\](b)"), "{v}");
    }

    #[test]
    fn month_bounds_wrap_years() {
        let (s, e, p) = month_bounds("2026-01").unwrap();
        assert_eq!(tollgate_protocol::format::rfc3339(s), "2026-01-01T00:00:00Z");
        assert_eq!(tollgate_protocol::format::rfc3339(e), "2026-02-01T00:00:00Z");
        assert_eq!(tollgate_protocol::format::rfc3339(p), "2025-12-01T00:00:00Z");
        assert!(month_bounds("2026-13").is_none());
        assert!(month_bounds("nope").is_none());
        assert_eq!(change(150, 100), "+$0.000050 (+50.0%)");
        assert_eq!(change(50, 100), "−$0.000050 (−50.0%)");
    }
}
