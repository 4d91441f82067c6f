//! Budget admission: reserve a request's worst case against every budget of
//! its scopes, or refuse it; settle with the real amount afterwards.
//!
//! Pure logic over [`SharedCounters`], the one host effect it needs (Envoy
//! shared data with compare-and-swap). The glue passes the real shared data;
//! the tests pass [`MemCounters`], which can also lose CAS races on purpose.

use crate::budget::{check, counter_key, exhausted_error, Amount, Check, Counter};
use crate::record::BudgetDecision;
use tollgate_protocol::scope::Scope;
use crate::config::FailureMode;
use crate::errors::GatewayError;
use crate::state::{BudgetDoc, ScopeType};

/// Envoy shared data, as admission uses it.
pub trait SharedCounters {
    /// The value and its CAS token (None when absent).
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes if the CAS token still matches.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetResult {
    Ok,
    /// Someone wrote in between: read again and retry.
    CasMismatch,
    Failed,
}

/// Why a counter update did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterError {
    /// The update function declined (the budget refused the request).
    Refused,
    /// The counter could not be written: 32 lost races, or a host error.
    Busy,
}

/// Lost CAS races tolerated before giving up on a counter.
pub const CAS_RETRIES: usize = 32;

/// Read-modify-write of a budget counter with compare-and-swap; `f`
/// returns false to leave the counter unchanged.
pub fn update_counter(
    store: &dyn SharedCounters,
    key: &str,
    mut f: impl FnMut(&mut Counter) -> bool,
) -> Result<Counter, CounterError> {
    for _ in 0..CAS_RETRIES {
        let (value, cas) = store.get(key);
        let mut c = value.map(|v| Counter::decode(&v)).unwrap_or_default();
        if !f(&mut c) {
            return Err(CounterError::Refused);
        }
        match store.set(key, c.encode().as_bytes(), cas) {
            SetResult::Ok => return Ok(c),
            SetResult::CasMismatch => continue,
            SetResult::Failed => return Err(CounterError::Busy),
        }
    }
    Err(CounterError::Busy)
}

/// A reservation taken for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub scope_type: ScopeType,
    pub scope_id: String,
    pub amount: Amount,
}

/// What admission decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No budget applies (or none could be checked and the mode says serve):
    /// `decision` is `Off` or `Unenforced`.
    Unchecked { decision: BudgetDecision },
    /// Admitted: the reservations taken, the response headers to add, and
    /// `soft` / `ok`.
    Admitted { reservations: Vec<Reservation>, headers: Vec<(String, String)>, decision: BudgetDecision },
    /// Refused: the error and its headers; `scope` is the scope that said no
    /// (None when the state was stale and the mode fails closed).
    Denied { error: GatewayError, headers: Vec<(String, String)>, scope: Option<Scope> },
}

/// The state of the budgets as one request sees it.
pub struct Situation<'a> {
    /// Budgets of the request's key, team and project (empty: none apply).
    pub budgets: &'a [&'a BudgetDoc],
    /// The state is older than `stale_after_ms`, or was never received.
    pub stale: bool,
    /// A state was received at least once.
    pub have_state: bool,
    pub failure_mode: FailureMode,
    pub now_ms: u64,
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Reserves `worst` against every budget, or refuses. A counter that cannot
/// be written (contention) admits the request unreserved for that scope: the
/// budget said yes, the reservation is what failed.
pub fn admit(store: &dyn SharedCounters, s: &Situation<'_>, worst: Amount) -> Decision {
    if s.stale {
        match s.failure_mode {
            FailureMode::Open => return Decision::Unchecked { decision: BudgetDecision::Unenforced },
            FailureMode::Closed => {
                return Decision::Denied { error: GatewayError::budget_state_unavailable(), headers: Vec::new(), scope: None }
            }
            FailureMode::Local => {}
        }
    }
    if !s.have_state || s.budgets.is_empty() {
        return Decision::Unchecked { decision: BudgetDecision::Off };
    }
    let mut reservations: Vec<Reservation> = Vec::new();
    let mut soft: Option<(String, u64)> = None;
    let (mut remaining_m, mut remaining_t) = (None, None);
    for b in s.budgets {
        let key = counter_key(b.scope_type, &b.scope_id);
        let mut verdict = None;
        let res = update_counter(store, &key, |c| {
            let v = check(b, c, worst);
            let ok = matches!(v, Check::Allow { .. });
            if ok {
                c.reserve(worst);
            }
            verdict = Some((v, *c));
            ok
        });
        match (res, verdict) {
            (Ok(_), Some((Check::Allow { soft: is_soft, remaining }, c))) => {
                reservations.push(Reservation { scope_type: b.scope_type, scope_id: b.scope_id.clone(), amount: worst });
                if is_soft {
                    soft = Some((Scope::new(b.scope_type, &b.scope_id).to_string(), used_pct(b, &c)));
                }
                remaining_m = min_opt(remaining_m, remaining.micros);
                remaining_t = min_opt(remaining_t, remaining.tokens);
            }
            (Err(CounterError::Refused), Some((_, c))) => {
                release(store, &reservations);
                let (error, headers) = exhausted_error(b, &c, s.now_ms);
                return Decision::Denied { error, headers, scope: Some(Scope::new(b.scope_type, &b.scope_id)) };
            }
            // Busy: admitted without a reservation in this scope.
            _ => {}
        }
    }
    let mut headers = Vec::new();
    if let Some((label, pct)) = &soft {
        headers.push(("x-tollgate-budget-warning".to_string(), format!("{label} at {pct}% of its budget")));
    }
    if let Some(m) = remaining_m {
        headers.push(("x-tollgate-budget-remaining-micros".to_string(), m.saturating_sub(worst.micros).to_string()));
    }
    if let Some(t) = remaining_t {
        headers.push(("x-tollgate-budget-remaining-tokens".to_string(), t.saturating_sub(worst.tokens).to_string()));
    }
    Decision::Admitted { reservations, headers, decision: if soft.is_some() { BudgetDecision::Soft } else { BudgetDecision::Ok } }
}

/// How much of a budget is used, in percent (money first, else tokens).
fn used_pct(b: &BudgetDoc, c: &Counter) -> u64 {
    let used = b.used_micros.saturating_add(c.pending_micros);
    b.limit_micros.filter(|l| *l > 0).map(|l| used.saturating_mul(100) / l).unwrap_or_else(|| {
        let used_t = b.used_tokens.saturating_add(c.pending_tokens);
        b.limit_tokens.filter(|l| *l > 0).map(|l| used_t.saturating_mul(100) / l).unwrap_or(0)
    })
}

/// Gives reservations back unused (the request was refused elsewhere).
pub fn release(store: &dyn SharedCounters, reservations: &[Reservation]) {
    settle(store, reservations, Amount::default());
}

/// Replaces each reservation with what the request really cost.
pub fn settle(store: &dyn SharedCounters, reservations: &[Reservation], actual: Amount) {
    for r in reservations {
        let _ = update_counter(store, &counter_key(r.scope_type, &r.scope_id), |c| {
            c.settle(r.amount, actual);
            true
        });
    }
}

/// An in-memory [`SharedCounters`] for tests: CAS tokens like Envoy's, and
/// `lose_races` makes the next N writes fail with a CAS mismatch.
#[derive(Default)]
pub struct MemCounters {
    data: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
    pub lose_races: std::cell::Cell<u32>,
}

impl SharedCounters for MemCounters {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.data.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> SetResult {
        if self.lose_races.get() > 0 {
            self.lose_races.set(self.lose_races.get() - 1);
            return SetResult::CasMismatch;
        }
        let mut d = self.data.borrow_mut();
        let current = d.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return SetResult::CasMismatch;
        }
        d.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0).wrapping_add(1)));
        SetResult::Ok
    }
}

impl MemCounters {
    pub fn counter(&self, t: ScopeType, id: &str) -> Counter {
        self.get(&counter_key(t, id)).0.map(|v| Counter::decode(&v)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64) -> BudgetDoc {
        serde_json::from_value(serde_json::json!({
            "scope_type": "team", "scope_id": "t", "limit_micros": limit, "limit_tokens": null,
            "period_start_ms": 0, "period_end_ms": 86_400_000, "used_micros": 0, "used_tokens": 0,
            "soft_pct": 80, "hard_pct": 100, "share_micros": limit, "share_tokens": null
        }))
        .unwrap()
    }

    fn situation<'a>(b: &'a [&'a BudgetDoc]) -> Situation<'a> {
        Situation { budgets: b, stale: false, have_state: true, failure_mode: FailureMode::Local, now_ms: 1000 }
    }

    const W: Amount = Amount { micros: 300, tokens: 10 };

    #[test]
    fn reserves_until_the_worst_case_no_longer_fits_then_settles() {
        let store = MemCounters::default();
        let b0 = budget(1000);
        let b = [&b0];
        let mut taken = Vec::new();
        for _ in 0..3 {
            match admit(&store, &situation(&b), W) {
                Decision::Admitted { reservations, .. } => taken.push(reservations),
                d => panic!("{d:?}"),
            }
        }
        assert!(matches!(admit(&store, &situation(&b), W), Decision::Denied { scope: Some(ref s), .. } if s.to_string() == "team:t"));
        assert_eq!(store.counter(ScopeType::Team, "t").reserved_micros, 900);
        // the real cost was lower: room again
        settle(&store, &taken[0], Amount { micros: 100, tokens: 3 });
        let c = store.counter(ScopeType::Team, "t");
        assert_eq!((c.reserved_micros, c.pending_micros), (600, 100));
        assert!(matches!(admit(&store, &situation(&b), W), Decision::Admitted { .. }));
    }

    #[test]
    fn lost_races_are_retried_and_contention_never_answers_exhausted() {
        let store = MemCounters::default();
        let b0 = budget(1000);
        let b = [&b0];
        store.lose_races.set(5);
        assert!(matches!(admit(&store, &situation(&b), W), Decision::Admitted { ref reservations, .. } if reservations.len() == 1));
        // more lost races than retries: served, unreserved, never a 429
        store.lose_races.set(CAS_RETRIES as u32 + 1);
        match admit(&store, &situation(&b), W) {
            Decision::Admitted { reservations, decision, .. } => assert!(reservations.is_empty() && decision == BudgetDecision::Ok),
            d => panic!("contention must not refuse: {d:?}"),
        }
    }

    #[test]
    fn a_refusal_gives_back_what_was_reserved_in_other_scopes() {
        let store = MemCounters::default();
        let mut project = budget(100);
        project.scope_type = ScopeType::Project;
        project.scope_id = "p".into();
        let team = budget(1000);
        let b = [&team, &project];
        assert!(matches!(admit(&store, &situation(&b), W), Decision::Denied { .. }));
        assert_eq!(store.counter(ScopeType::Team, "t").reserved_micros, 0, "team reservation released");
    }

    #[test]
    fn stale_state_follows_the_failure_mode() {
        let store = MemCounters::default();
        let b0 = budget(1000);
        let b = [&b0];
        let mut s = situation(&b);
        s.stale = true;
        s.failure_mode = FailureMode::Open;
        assert_eq!(admit(&store, &s, W), Decision::Unchecked { decision: BudgetDecision::Unenforced });
        s.failure_mode = FailureMode::Closed;
        assert!(matches!(admit(&store, &s, W), Decision::Denied { scope: None, ref error, .. } if error.status == 503));
        s.failure_mode = FailureMode::Local;
        assert!(matches!(admit(&store, &s, W), Decision::Admitted { .. }), "local: enforce from the last state");
        assert_eq!(admit(&store, &situation(&[]), W), Decision::Unchecked { decision: BudgetDecision::Off });
    }

    #[test]
    fn soft_threshold_warns() {
        let store = MemCounters::default();
        let mut b = budget(1000);
        b.used_micros = 850;
        b.share_micros = Some(150);
        let d = admit(&store, &situation(&[&b]), Amount { micros: 100, tokens: 1 });
        match d {
            Decision::Admitted { headers, decision, .. } => {
                assert_eq!(decision, BudgetDecision::Soft);
                assert!(headers.iter().any(|(k, v)| k == "x-tollgate-budget-warning" && v == "team:t at 85% of its budget"));
            }
            d => panic!("{d:?}"),
        }
    }
}
