//! Budget admission in the filter: reserve the worst case before a request
//! goes upstream, settle with the real cost after. Pure arithmetic; the glue
//! stores [`Counter`]s in Envoy shared data with compare-and-swap.
//!
//! Per scope (key, team, project) an Envoy keeps
//! - `reserved`: worst cases of requests in flight on this Envoy;
//! - `pending`: real cost of finished requests on this Envoy that the
//!   control service's `used` does not include yet.
//!
//! A request is admitted when, for every budgeted scope it belongs to,
//! `pending + reserved + worst ≤ share`, where `share` is this Envoy's part of
//! what is left: (hard limit − fleet used) / active Envoys.

use crate::errors::GatewayError;
use crate::state::{BudgetDoc, ScopeType};
use tollgate_protocol::scope::Scope;

/// Per-scope counters of one Envoy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub pending_micros: u64,
    pub pending_tokens: u64,
    pub reserved_micros: u64,
    pub reserved_tokens: u64,
    /// Reflected before it was settled: a worker writes its settlements a
    /// little later (`admission::Local`, or hands them to the background
    /// service), so the fleet's `used` may count a request before this
    /// Envoy moved it to `pending`. The excess
    /// waits here and is taken off the settlement when it lands, so the
    /// order of the two never counts a request twice.
    pub credit_micros: u64,
    pub credit_tokens: u64,
    /// The budget's figures as the background service last posted them,
    /// in the same write as the reflections they include ([`Posted`]).
    pub posted: Option<Posted>,
}

/// The figures of a budget that move with spend (`used`, `share`), which
/// the background service writes into the budget's counter with each
/// state, in the same compare-and-swap as the reflections the new `used`
/// includes: read with the counter, they always agree with its `pending`.
/// `terms` names the rest of the budget they belong to ([`terms_of`]), so
/// a worker may keep a budget it parsed across states and read its entry
/// again only when its terms changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Posted {
    pub terms: u64,
    pub used_micros: u64,
    pub used_tokens: u64,
    pub share_micros: Option<u64>,
    pub share_tokens: Option<u64>,
}

impl Posted {
    pub fn of(b: &BudgetDoc) -> Posted {
        Posted { terms: terms_of(b), used_micros: b.used_micros, used_tokens: b.used_tokens, share_micros: b.share_micros, share_tokens: b.share_tokens }
    }

    /// The five words [`Counter::encode`] writes after the six numbers.
    fn decode(words: &[&str]) -> Option<Posted> {
        let [terms, used_m, used_t, share_m, share_t] = words else { return None };
        let n = |w: &str| w.parse::<u64>().ok();
        let share = |w: &str| if w == "-" { Some(None) } else { n(w).map(Some) };
        Some(Posted {
            terms: n(terms).filter(|t| *t != 0)?,
            used_micros: n(used_m)?,
            used_tokens: n(used_t)?,
            share_micros: share(share_m)?,
            share_tokens: share(share_t)?,
        })
    }

    /// `b` with these figures.
    pub fn apply(&self, b: &BudgetDoc) -> BudgetDoc {
        BudgetDoc {
            used_micros: self.used_micros,
            used_tokens: self.used_tokens,
            share_micros: self.share_micros,
            share_tokens: self.share_tokens,
            ..b.clone()
        }
    }
}

/// What names a budget's terms: its scope, limits, thresholds and period,
/// everything but the figures [`Posted`] carries. Never 0. (The 64-bit
/// [`crate::state::digest`]: two different terms of one scope colliding would keep the
/// older terms until they change again, odds of 2^-64 per change; a
/// filter built with another hasher never matches and reads the entry.)
pub fn terms_of(b: &BudgetDoc) -> u64 {
    let terms = (b.scope_type.as_str(), b.scope_id.as_str(), b.limit_micros, b.limit_tokens, b.period_start_ms, b.period_end_ms, b.soft_pct, b.hard_pct);
    crate::state::digest(&terms).max(1)
}

/// `pending + add`, less what `credit` already took off.
fn add_against_credit(pending: u64, credit: u64, add: u64) -> (u64, u64) {
    let offset = add.min(credit);
    (pending.saturating_add(add - offset), credit - offset)
}

/// `pending - amount`; what `pending` cannot cover becomes credit.
fn take_or_credit(pending: u64, credit: u64, amount: u64) -> (u64, u64) {
    match pending.checked_sub(amount) {
        Some(left) => (left, credit),
        None => (0, credit.saturating_add(amount - pending)),
    }
}

impl Counter {
    /// Four numbers, six when there is credit (older filters read the
    /// first four), then the posted figures: `<terms> <used µ$> <used
    /// tokens> <share µ$|-> <share tokens|->` (older filters stop at six).
    pub fn encode(&self) -> String {
        let (p, r) = ((self.pending_micros, self.pending_tokens), (self.reserved_micros, self.reserved_tokens));
        let mut out = if self.credit_micros == 0 && self.credit_tokens == 0 && self.posted.is_none() {
            format!("{} {} {} {}", p.0, p.1, r.0, r.1)
        } else {
            format!("{} {} {} {} {} {}", p.0, p.1, r.0, r.1, self.credit_micros, self.credit_tokens)
        };
        if let Some(f) = &self.posted {
            let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
            out.push_str(&format!(" {} {} {} {} {}", f.terms, f.used_micros, f.used_tokens, opt(f.share_micros), opt(f.share_tokens)));
        }
        out
    }

    /// Unreadable or missing values count as zero; posted figures that are
    /// not all there and readable count as none.
    pub fn decode(b: &[u8]) -> Counter {
        let s = std::str::from_utf8(b).unwrap_or("");
        let mut words = s.split(' ');
        let mut it = words.by_ref().take(6).map(|x| x.parse::<u64>().unwrap_or(0));
        let mut c = Counter {
            pending_micros: it.next().unwrap_or(0),
            pending_tokens: it.next().unwrap_or(0),
            reserved_micros: it.next().unwrap_or(0),
            reserved_tokens: it.next().unwrap_or(0),
            credit_micros: it.next().unwrap_or(0),
            credit_tokens: it.next().unwrap_or(0),
            posted: None,
        };
        c.posted = Posted::decode(&words.collect::<Vec<_>>());
        c
    }

    pub fn reserve(&mut self, c: Amount) {
        self.reserved_micros = self.reserved_micros.saturating_add(c.micros);
        self.reserved_tokens = self.reserved_tokens.saturating_add(c.tokens);
    }

    /// Replaces a reservation with the real amount.
    pub fn settle(&mut self, reserved: Amount, actual: Amount) {
        self.reserved_micros = self.reserved_micros.saturating_sub(reserved.micros);
        self.reserved_tokens = self.reserved_tokens.saturating_sub(reserved.tokens);
        (self.pending_micros, self.credit_micros) = add_against_credit(self.pending_micros, self.credit_micros, actual.micros);
        (self.pending_tokens, self.credit_tokens) = add_against_credit(self.pending_tokens, self.credit_tokens, actual.tokens);
    }

    /// Records now counted in the fleet's `used`: no longer pending here.
    pub fn reflect(&mut self, amount: Amount) {
        (self.pending_micros, self.credit_micros) = take_or_credit(self.pending_micros, self.credit_micros, amount.micros);
        (self.pending_tokens, self.credit_tokens) = take_or_credit(self.pending_tokens, self.credit_tokens, amount.tokens);
    }
}

/// Money and tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    pub micros: u64,
    pub tokens: u64,
}

impl Amount {
    pub fn saturating_add(self, o: Amount) -> Amount {
        Amount { micros: self.micros.saturating_add(o.micros), tokens: self.tokens.saturating_add(o.tokens) }
    }

    pub fn saturating_sub(self, o: Amount) -> Amount {
        Amount { micros: self.micros.saturating_sub(o.micros), tokens: self.tokens.saturating_sub(o.tokens) }
    }
}

/// The shared-data key of a scope's counter.
pub fn counter_key(scope_type: ScopeType, scope_id: &str) -> String {
    format!("{COUNTER_PREFIX}{}:{}", scope_type.as_str(), scope_id)
}

/// What every budget counter's shared-data key starts with.
pub const COUNTER_PREFIX: &str = "tollgate:v1:budget:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Admitted; `soft` when the soft threshold is reached.
    Allow { soft: bool, remaining: Remaining },
    Deny { remaining: Remaining },
}

/// What is left for this Envoy in a scope (None = no limit of that kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remaining {
    pub micros: Option<u64>,
    pub tokens: Option<u64>,
}

impl Remaining {
    /// What is left once `a` more is taken (or given back: `plus`); an
    /// unlimited kind stays unlimited.
    pub fn minus(self, a: Amount) -> Remaining {
        Remaining { micros: self.micros.map(|m| m.saturating_sub(a.micros)), tokens: self.tokens.map(|t| t.saturating_sub(a.tokens)) }
    }

    pub fn plus(self, a: Amount) -> Remaining {
        Remaining { micros: self.micros.map(|m| m.saturating_add(a.micros)), tokens: self.tokens.map(|t| t.saturating_add(a.tokens)) }
    }
}

/// May a request whose worst case is `worst` start, given the counter?
pub fn check(b: &BudgetDoc, c: &Counter, worst: Amount) -> Check {
    let spent_m = c.pending_micros.saturating_add(c.reserved_micros);
    let spent_t = c.pending_tokens.saturating_add(c.reserved_tokens);
    let remaining = Remaining {
        micros: b.share_micros.map(|s| s.saturating_sub(spent_m)),
        tokens: b.share_tokens.map(|s| s.saturating_sub(spent_t)),
    };
    let over_m = b.share_micros.is_some_and(|s| spent_m.saturating_add(worst.micros) > s);
    let over_t = b.share_tokens.is_some_and(|s| spent_t.saturating_add(worst.tokens) > s);
    // An exhausted scope refuses even free requests: nothing is left.
    let exhausted = remaining.micros == Some(0) || remaining.tokens == Some(0);
    if over_m || over_t || exhausted {
        return Check::Deny { remaining };
    }
    let used_m = b.used_micros.saturating_add(c.pending_micros);
    let used_t = b.used_tokens.saturating_add(c.pending_tokens);
    let soft = b.soft_limit_micros().is_some_and(|l| used_m >= l) || b.soft_limit_tokens().is_some_and(|l| used_t >= l);
    Check::Allow { soft, remaining }
}

/// The 429 a client gets when a budget is exhausted.
pub fn exhausted_error(b: &BudgetDoc, c: &Counter, now_ms: u64) -> (GatewayError, Vec<(String, String)>) {
    let details = exhausted_details(b, c);
    let label = Scope::new(b.scope_type, &b.scope_id).to_string();
    let used_m = b.used_micros.saturating_add(c.pending_micros);
    let used_t = b.used_tokens.saturating_add(c.pending_tokens);
    let mut limits = Vec::new();
    if let Some(l) = b.limit_micros {
        limits.push(format!("{} of {} USD", usd(used_m), usd(l)));
    }
    if let Some(l) = b.limit_tokens {
        limits.push(format!("{used_t} of {l} tokens"));
    }
    let resets = rfc3339(b.period_end_ms);
    let message = format!(
        "The budget of {} '{}' is exhausted: {} used this period, and no room is left for this request's worst case (its prompt and max_tokens). It resets at {}. \
         To ask for more, POST /v1/budget-requests on the Tollgate control service with your key, \
         {{\"scope_type\": \"{}\", \"scope_id\": \"{}\", \"limit_micros\": <new limit>, \"justification\": \"...\"}} \
         (or: tollgate requests create {} {} --limit-usd N --why \"...\"); an admin approves it.",
        b.scope_type.as_str(),
        b.scope_id,
        limits.join(", "),
        resets,
        b.scope_type.as_str(),
        b.scope_id,
        b.scope_type.as_str(),
        b.scope_id
    );
    let e = GatewayError::budget_exhausted(message, details);
    let retry = b.period_end_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
    let mut headers = vec![
        ("retry-after".to_string(), retry.to_string()),
        // The OpenAI and Anthropic SDKs honour this: retrying cannot help until the reset.
        ("x-should-retry".to_string(), "false".to_string()),
        ("x-tollgate-budget-scope".to_string(), label),
        ("x-tollgate-budget-resets-at".to_string(), resets),
    ];
    if b.limit_micros.is_some() {
        headers.push(("x-tollgate-budget-remaining-micros".to_string(), "0".to_string()));
    }
    if b.limit_tokens.is_some() {
        headers.push(("x-tollgate-budget-remaining-tokens".to_string(), "0".to_string()));
    }
    (e, headers)
}

/// The budget part of a 429 body, added next to `error.type/code/message`.
pub fn exhausted_details(b: &BudgetDoc, c: &Counter) -> serde_json::Value {
    serde_json::json!({
        "scope": Scope::new(b.scope_type, &b.scope_id),
        "limit_micros": b.limit_micros,
        "limit_tokens": b.limit_tokens,
        "used_micros": b.used_micros.saturating_add(c.pending_micros),
        "used_tokens": b.used_tokens.saturating_add(c.pending_tokens),
        "period_start": rfc3339(b.period_start_ms),
        "resets_at": rfc3339(b.period_end_ms),
        "how_to_increase": format!(
            "POST /v1/budget-requests on the Tollgate control service with your key: {{\"scope_type\": \"{}\", \"scope_id\": \"{}\", \"limit_micros\": <new limit>, \"justification\": \"...\"}}; an admin approves it",
            b.scope_type.as_str(),
            b.scope_id
        ),
    })
}

pub use tollgate_protocol::format::{rfc3339, usd};

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(limit: u64, used: u64, share: u64) -> BudgetDoc {
        BudgetDoc {
            scope_type: ScopeType::Team,
            scope_id: "search".into(),
            limit_micros: Some(limit),
            limit_tokens: None,
            period_start_ms: 1_793_491_200_000,
            period_end_ms: 1_796_083_200_000,
            used_micros: used,
            used_tokens: 0,
            soft_pct: Some(80),
            hard_pct: Some(100),
            share_micros: Some(share),
            share_tokens: None,
        }
    }

    #[test]
    fn counter_round_trip_and_garbage() {
        let c = Counter { pending_micros: 1, pending_tokens: 2, reserved_micros: 3, reserved_tokens: 4, ..Default::default() };
        assert_eq!(Counter::decode(c.encode().as_bytes()), c);
        assert_eq!(c.encode(), "1 2 3 4", "no credit: the four numbers older filters read");
        let c = Counter { credit_micros: 5, credit_tokens: 6, ..c };
        assert_eq!(Counter::decode(c.encode().as_bytes()), c);
        assert_eq!(Counter::decode(b"junk"), Counter::default());
    }

    /// Figures come after the six numbers older filters read; a counter
    /// such a filter wrote back has none, and figures not all readable
    /// count as none (a worker then reads the budget's entry).
    #[test]
    fn posted_figures_round_trip_after_what_older_filters_read() {
        let posted = Posted { terms: 7, used_micros: 500, used_tokens: 0, share_micros: Some(250), share_tokens: None };
        let c = Counter { pending_micros: 1, reserved_micros: 3, posted: Some(posted), ..Default::default() };
        assert_eq!(c.encode(), "1 0 3 0 0 0 7 500 0 250 -");
        assert_eq!(Counter::decode(c.encode().as_bytes()), c);
        assert_eq!(Counter::decode(b"1 0 3 0").posted, None, "written back by an older filter");
        for bad in ["1 0 3 0 0 0 7 500 0 250", "1 0 3 0 0 0 0 500 0 250 -", "1 0 3 0 0 0 7 x 0 250 -", "1 0 3 0 0 0 7 500 0 250 - 9"] {
            assert_eq!(Counter::decode(bad.as_bytes()), Counter { pending_micros: 1, reserved_micros: 3, ..Default::default() }, "{bad}");
        }
        // The terms leave out what moves with spend, and nothing else.
        let b = doc(1000, 500, 250);
        let spent = BudgetDoc { used_micros: 900, share_micros: Some(50), used_tokens: 3, share_tokens: Some(1), ..b.clone() };
        assert_eq!(terms_of(&b), terms_of(&spent));
        assert_eq!(Posted::of(&spent).apply(&b), spent);
        for other in [
            BudgetDoc { limit_micros: Some(1001), ..b.clone() },
            BudgetDoc { hard_pct: Some(90), ..b.clone() },
            BudgetDoc { period_end_ms: 1, ..b.clone() },
            BudgetDoc { scope_id: "other".into(), ..b.clone() },
        ] {
            assert_ne!(terms_of(&b), terms_of(&other), "{other:?}");
        }
    }

    #[test]
    fn reserve_settle_reflect() {
        let mut c = Counter::default();
        c.reserve(Amount { micros: 100, tokens: 10 });
        c.settle(Amount { micros: 100, tokens: 10 }, Amount { micros: 40, tokens: 7 });
        assert_eq!(c, Counter { pending_micros: 40, pending_tokens: 7, ..Default::default() });
        c.reflect(Amount { micros: 50, tokens: 7 });
        assert_eq!(c, Counter { credit_micros: 10, ..Default::default() }, "10 reflected before they were settled");
    }

    /// Settling and reflecting in either order leaves the same counter.
    #[test]
    fn reflect_before_settle_counts_once() {
        let (worst, actual) = (Amount { micros: 100, tokens: 10 }, Amount { micros: 40, tokens: 7 });
        let mut a = Counter::default();
        a.reserve(worst);
        a.reserve(worst);
        let mut b = a;
        a.settle(worst, actual);
        a.reflect(actual);
        b.reflect(actual);
        assert_eq!((b.pending_micros, b.credit_micros, b.credit_tokens), (0, 40, 7));
        b.settle(worst, actual);
        assert_eq!(a, b);
        assert_eq!(a, Counter { reserved_micros: 100, reserved_tokens: 10, ..Default::default() });
    }

    #[test]
    fn admission_against_the_share() {
        let b = doc(1000, 500, 250); // two Envoys share the 500 left
        let c = Counter { pending_micros: 100, reserved_micros: 100, ..Default::default() };
        assert!(matches!(check(&b, &c, Amount { micros: 50, tokens: 0 }), Check::Allow { .. }));
        assert!(matches!(check(&b, &c, Amount { micros: 51, tokens: 0 }), Check::Deny { .. }));
    }

    #[test]
    fn soft_threshold_counts_pending() {
        let b = doc(1000, 700, 300);
        let c = Counter { pending_micros: 99, ..Default::default() };
        assert_eq!(check(&b, &c, Amount::default()), Check::Allow { soft: false, remaining: Remaining { micros: Some(201), tokens: None } });
        let c = Counter { pending_micros: 100, ..Default::default() };
        assert!(matches!(check(&b, &c, Amount::default()), Check::Allow { soft: true, .. }));
    }

    #[test]
    fn exhausted_refuses_even_free_requests() {
        let b = doc(1000, 1000, 0);
        assert!(matches!(check(&b, &Counter::default(), Amount::default()), Check::Deny { .. }));
        // no hard stop: never denied
        let mut b = doc(1000, 5000, 0);
        b.hard_pct = None;
        b.share_micros = None;
        assert!(matches!(check(&b, &Counter::default(), Amount { micros: 10, tokens: 0 }), Check::Allow { soft: true, .. }));
    }

    #[test]
    fn error_says_scope_limit_use_reset_and_how() {
        let b = doc(10_000_000, 10_002_100, 0);
        let (e, h) = exhausted_error(&b, &Counter::default(), 1_796_083_100_000);
        assert_eq!((e.status, e.kind, e.code), (429, "budget_exhausted", "budget_exhausted"));
        assert!(e.message.contains("team 'search'"), "{}", e.message);
        assert!(e.message.contains("10.002100 of 10.000000 USD"), "{}", e.message);
        assert!(h.iter().any(|(k, _)| k == "x-tollgate-budget-remaining-micros"));
        assert!(!h.iter().any(|(k, _)| k == "x-tollgate-budget-remaining-tokens"), "no token limit, no token header");
        assert!(e.message.contains("2026-12-01T00:00:00Z"), "{}", e.message);
        assert!(e.message.contains("POST /v1/budget-requests") && e.message.contains("\"scope_id\": \"search\""), "{}", e.message);
        assert!(h.contains(&("retry-after".into(), "100".into())));
        let body: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(body["error"]["scope"], "team:search");
        assert_eq!(body["error"]["limit_micros"], 10_000_000);
        assert_eq!(body["error"]["resets_at"], "2026-12-01T00:00:00Z");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_083_200_000), "2026-12-01T00:00:00Z");
        assert_eq!(usd(1), "0.000001");
        assert_eq!(usd(12_345_678), "12.345678");
    }

    #[test]
    fn scope_labels() {
        assert_eq!(counter_key(ScopeType::Key, "k1"), "tollgate:v1:budget:key:k1");
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever bytes a counter holds (a torn write, an older or newer
        /// filter's words, non-UTF-8, numbers past u64), reading it never
        /// panics, and what is read writes back to itself.
        #[test]
        fn any_counter_bytes_read_without_panic_and_write_back_stably(words in prop::collection::vec(prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            Just("-".to_string()), Just("0".to_string()), Just("18446744073709551616".to_string()),
            Just("\u{0}\u{1b}[2J".to_string()), Just(String::new()), ".{0,6}",
        ], 0..14), raw in prop::collection::vec(any::<u8>(), 0..80)) {
            let c = Counter::decode(words.join(" ").as_bytes());
            prop_assert_eq!(Counter::decode(c.encode().as_bytes()), c);
            let c = Counter::decode(&raw);
            prop_assert_eq!(Counter::decode(c.encode().as_bytes()), c);
        }
    }
}
