//! Reporting: spend grouped by any dimensions and time buckets, movers
//! against the previous equal range, CSV rendering. Backend-independent
//! types; the SQL lives in the store.

use serde::{Deserialize, Serialize};

/// A dimension a report can group or filter by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Team,
    Project,
    Key,
    Model,
    Provider,
    Feature,
    PromptVersion,
    /// The client's session (`x-tollgate-session`, Claude Code's `x-claude-code-session-id`).
    Session,
}

impl Dim {
    pub const ALL: [Dim; 8] = [Dim::Team, Dim::Project, Dim::Key, Dim::Model, Dim::Provider, Dim::Feature, Dim::PromptVersion, Dim::Session];

    pub fn name(self) -> &'static str {
        match self {
            Dim::Team => "team",
            Dim::Project => "project",
            Dim::Key => "key",
            Dim::Model => "model",
            Dim::Provider => "provider",
            Dim::Feature => "feature",
            Dim::PromptVersion => "prompt_version",
            Dim::Session => "session",
        }
    }

    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The usage table column.
    pub fn column(self) -> &'static str {
        match self {
            Dim::Team => "team",
            Dim::Project => "project",
            Dim::Key => "key_id",
            Dim::Model => "model",
            Dim::Provider => "provider",
            Dim::Feature => "feature",
            Dim::PromptVersion => "prompt_version",
            Dim::Session => "session_id",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn ms(self) -> u64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    pub group_by: Vec<Dim>,
    pub bucket: Option<Bucket>,
    pub from_ms: u64,
    pub to_ms: u64,
    pub filters: Vec<(Dim, String)>,
    /// Keep the N rows with the highest cost.
    pub top: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    /// Values of the group-by dimensions, in order (null = not set, e.g. no feature tag).
    pub group: Vec<Option<String>>,
    /// Start of the time bucket (UTC), when bucketed.
    pub bucket_start_ms: Option<u64>,
    pub requests: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micros: u64,
    /// Provider errors and cut streams.
    pub errors: u64,
    /// Requests answered 429 (budget stops and provider rate limits).
    pub rate_limited: u64,
    /// Input tokens of the requests whose provider reported its cache (the
    /// hit rate's denominator).
    pub cache_reported_input_tokens: u64,
    /// What prompt caches saved against uncached prices (negative: cache
    /// writes cost more than the reads saved).
    pub cache_savings_micros: i64,
}

impl ReportRow {
    /// Cache hit rate in per-mille: cached input over the input of requests
    /// whose provider reported its cache (sum over sum). `None` when no
    /// request reported it: "not reported" is not 0 %.
    pub fn cache_hit_rate_permille(&self) -> Option<u64> {
        (self.cached_input_tokens.min(self.cache_reported_input_tokens).saturating_mul(1000)).checked_div(self.cache_reported_input_tokens)
    }

    /// Cached share of input tokens in per-mille (integer; 1000 = all cached).
    pub fn cache_share_permille(&self) -> u64 {
        (self.cached_input_tokens.saturating_mul(1000)).checked_div(self.input_tokens).unwrap_or(0)
    }
}

/// A mover: how a group's cost changed against the previous equal range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mover {
    pub dim: Dim,
    pub value: Option<String>,
    pub previous_micros: u64,
    pub current_micros: u64,
    pub delta_micros: i64,
}

/// Joins the current and previous reports of one dimension into movers,
/// the largest absolute change first.
pub fn movers(dim: Dim, current: &[ReportRow], previous: &[ReportRow], top: usize) -> Vec<Mover> {
    use std::collections::BTreeMap;
    let mut m: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    // Saturating: each row's sum is at most i64::MAX (db::sum), and a
    // bucketed report has many rows per value.
    for r in previous {
        let e = m.entry(r.group.first().cloned().flatten()).or_default();
        e.0 = e.0.saturating_add(r.cost_micros);
    }
    for r in current {
        let e = m.entry(r.group.first().cloned().flatten()).or_default();
        e.1 = e.1.saturating_add(r.cost_micros);
    }
    let mut out: Vec<Mover> = m
        .into_iter()
        .map(|(value, (p, c))| Mover {
            dim,
            value,
            previous_micros: p,
            current_micros: c,
            delta_micros: i64::try_from(c).unwrap_or(i64::MAX).saturating_sub(i64::try_from(p).unwrap_or(i64::MAX)),
        })
        .collect();
    out.sort_by(|a, b| b.delta_micros.unsigned_abs().cmp(&a.delta_micros.unsigned_abs()).then(a.value.cmp(&b.value)));
    out.truncate(top);
    out
}

/// One CSV cell. Values come from clients (tags, model names, user ids),
/// so a cell a spreadsheet would run as a formula (`= + - @`, or a tab /
/// carriage return first) is prefixed with `'` (OWASP "CSV injection");
/// quotes, commas and line breaks are quoted per RFC 4180.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// RFC 4180 CSV of a report, with a header row.
pub fn to_csv(q: &ReportQuery, rows: &[ReportRow]) -> String {
    let mut out = String::new();
    let mut header: Vec<&str> = q.group_by.iter().map(|d| d.name()).collect();
    if q.bucket.is_some() {
        header.push("bucket_start");
    }
    header.extend([
        "requests",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "cost_micros",
        "cost_usd",
        "cache_share_pct",
        "errors",
        "rate_limited",
        "cache_hit_rate_pct",
        "cache_savings_micros",
        "cache_savings_usd",
    ]);
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for r in rows {
        let mut f: Vec<String> = r.group.iter().map(|g| csv_field(g.as_deref().unwrap_or(""))).collect();
        if q.bucket.is_some() {
            f.push(r.bucket_start_ms.map(tollgate_protocol::format::rfc3339).unwrap_or_default());
        }
        let share = r.cache_share_permille();
        f.extend([
            r.requests.to_string(),
            r.input_tokens.to_string(),
            r.cached_input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.cost_micros.to_string(),
            tollgate_protocol::format::usd(r.cost_micros),
            format!("{}.{}", share / 10, share % 10),
            r.errors.to_string(),
            r.rate_limited.to_string(),
            r.cache_hit_rate_permille().map(|h| format!("{}.{}", h / 10, h % 10)).unwrap_or_default(),
            r.cache_savings_micros.to_string(),
            tollgate_protocol::format::usd_signed(r.cache_savings_micros),
        ]);
        out.push_str(&f.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &str, cost: u64) -> ReportRow {
        ReportRow { group: vec![Some(v.into())], cost_micros: cost, ..Default::default() }
    }

    #[test]
    fn movers_rank_by_absolute_change() {
        let prev = vec![row("a", 100), row("b", 500), row("gone", 50)];
        let cur = vec![row("a", 1100), row("b", 100), row("new", 30)];
        let m = movers(Dim::Key, &cur, &prev, 10);
        let order: Vec<_> = m.iter().map(|x| (x.value.clone().unwrap(), x.delta_micros)).collect();
        assert_eq!(order, vec![("a".into(), 1000), ("b".into(), -400), ("gone".into(), -50), ("new".into(), 30)]);
        assert_eq!(movers(Dim::Key, &cur, &prev, 1).len(), 1);
    }

    #[test]
    fn csv_cells_are_never_formulas() {
        assert_eq!(csv_field("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        for v in ["+1", "-2+3", "@SUM(A1)", "\tx"] {
            assert!(csv_field(v).trim_start_matches('"').starts_with('\''), "{v}");
        }
        assert_eq!(csv_field("gpt-5.4"), "gpt-5.4");
    }

    #[test]
    fn csv_quotes_and_shares() {
        let q = ReportQuery { group_by: vec![Dim::Feature], ..Default::default() };
        let r = ReportRow { group: vec![Some("a,\"b\"".into())], input_tokens: 3, cached_input_tokens: 1, cost_micros: 1_500_000, ..Default::default() };
        let csv = to_csv(&q, &[r]);
        let mut lines = csv.split("\r\n");
        assert_eq!(
            lines.next().unwrap(),
            "feature,requests,input_tokens,cached_input_tokens,output_tokens,cost_micros,cost_usd,cache_share_pct,errors,rate_limited,cache_hit_rate_pct,cache_savings_micros,cache_savings_usd"
        );
        assert_eq!(lines.next().unwrap(), "\"a,\"\"b\"\"\",0,3,1,0,1500000,1.500000,33.3,0,0,,0,0.000000");
    }

    #[test]
    fn dims_parse() {
        for d in Dim::ALL {
            assert_eq!(Dim::parse(d.name()), Some(d));
        }
        assert_eq!(Dim::parse("user"), None);
    }
}
