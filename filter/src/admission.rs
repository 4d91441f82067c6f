//! Budget admission: reserve a request's worst case against every budget of
//! its scopes, or refuse it; settle with the real amount afterwards.
//!
//! Pure logic over [`SharedCounters`], the one host effect it needs (Envoy
//! shared data with compare-and-swap). The glue passes the real shared data;
//! the tests pass [`MemCounters`], which can also lose CAS races on purpose.

use crate::budget::{check, counter_key, exhausted_error, terms_of, Amount, Check, Counter, Remaining};
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
    /// Hands a settlement (the reservation `reserved` given back, the real
    /// cost `actual`) to be written off the request path, by the
    /// background service ([`crate::outbox`]); false when it cannot, and
    /// the caller writes it.
    fn defer(&self, _key: &str, _reserved: Amount, _actual: Amount) -> bool {
        false
    }
    /// The budget of a scope as its shared-data entry holds it now (None:
    /// none), read again because the one a request holds is not the one
    /// its counter's figures were posted for. The glue keeps it for the
    /// requests after.
    fn budget(&self, scope_type: ScopeType, scope_id: &str, _generation: u64, epoch: u64) -> Option<BudgetDoc> {
        let entry = self.get(&crate::state::budget_entry(scope_type, scope_id)).0.unwrap_or_default();
        crate::state::decode_budget_entry(&entry, scope_type, scope_id, epoch)
    }
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

/// Writes a settlement: `reserved` given back, `actual` spent.
pub fn apply_settlement(store: &dyn SharedCounters, key: &str, reserved: Amount, actual: Amount) -> Result<Counter, CounterError> {
    update_counter(store, key, |c| {
        c.settle(reserved, actual);
        true
    })
}

/// Settlements handed over that could not be written yet: (counter key,
/// reservation given back, real cost).
pub type Unwritten = Vec<(String, Amount, Amount)>;

/// Settlements kept for another try, at most (shared data refusing every
/// write for long): past it the oldest go, their reservations held.
pub const MAX_UNWRITTEN: usize = 65_536;

/// Writes the settlements an outbox group carries ([`crate::outbox`]) and
/// those `left` from before (an empty group retries those only). One that
/// cannot be written now (32 lost races, a host error) stays in `left` for
/// the next call, as a worker keeps an unwritten counter in its table:
/// until it lands its reservation stays held, which refuses early and
/// never overspends. Returns how many were written and how many of the
/// oldest were given up past [`MAX_UNWRITTEN`].
pub fn write_handed_over(store: &dyn SharedCounters, left: &mut Unwritten, group: &[u8]) -> (u64, usize) {
    left.extend(crate::outbox::settlements(group));
    let mut written = 0;
    left.retain(|(key, reserved, actual)| {
        let ok = apply_settlement(store, key, *reserved, *actual).is_ok();
        written += u64::from(ok);
        !ok
    });
    let over = left.len().saturating_sub(MAX_UNWRITTEN);
    left.drain(..over);
    (written, over)
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
    /// Per budget (missing: false): held from an older state, so checked
    /// against its counter's posted terms ([`as_of`]).
    pub recheck: &'a [bool],
    /// The state is older than `stale_after_ms`, or was never received.
    pub stale: bool,
    /// A state was received at least once.
    pub have_state: bool,
    pub failure_mode: FailureMode,
    pub now_ms: u64,
    /// The budget state's generation (room is used only under the one it was taken in).
    pub generation: u64,
    /// The epoch of the last full budget state (entries older are left-overs).
    pub epoch: u64,
    /// The request's model has a price. One without is served at a recorded
    /// cost of 0 (`unpriced_models: allow`), so a budget in dollars could
    /// not hold it: such a request is refused where one applies.
    pub priced: bool,
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A worker's side of its budget counters, so that most requests touch no
/// shared data at all:
/// - **room**: budget reserved in the counter ahead of requests (taken
///   with a request's own reservation when plenty is left: at most 15 more
///   worst cases of that request, and at most 1/16 of what is left; none
///   near the limit, see [`near`]). Later
///   requests of this worker are admitted from it without reading the
///   counter; it is never used under a newer budget state, and it goes back
///   to the counter on the worker's tick.
/// - **owed**: settlements of finished requests, written with the next
///   write of the same counter or on the tick. Until then the request's
///   worst case stays reserved: other workers see more spent than there is,
///   never less (a reflection that overtakes it becomes credit,
///   [`Counter::settle`]).
///
/// So a request costs a read and a write of shared data per budget only
/// when its worker's room is used up, and never more than one of each.
/// Everything room admits was checked against the budget's share when it
/// was reserved: the budget cannot be overspent through it.
#[derive(Debug, Default)]
pub struct Local {
    entries: Vec<(String, Entry)>,
    /// Never used: what `entry` would hand out if a found index vanished.
    spare: Entry,
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    room: Amount,
    /// The budget state generation the room was reserved under.
    generation: u64,
    /// What the counter had left after the last write, room excluded.
    remaining: Remaining,
    /// Use in percent at the last write, when past the soft threshold.
    soft_pct: Option<u64>,
    owed_reserved: Amount,
    owed_actual: Amount,
    /// Requests this worker reserved on the counter that have not settled:
    /// a full table's flush leaves their entries alone (see [`settle`]).
    in_flight: u32,
}

/// Counters a worker keeps entries for; above it `settle` writes and drops
/// those with no request in flight.
const MAX_LOCAL: usize = 64;
/// Room taken ahead: at most this many more of the request's worst case…
const AHEAD_REQUESTS: u64 = 15;
/// …and at most this part of what is left.
const AHEAD_PART: u64 = 16;
/// See [`near`].
const NEAR: u64 = 32;

fn covers(room: Amount, worst: Amount) -> bool {
    room.micros >= worst.micros && room.tokens >= worst.tokens
}

/// The room to take with a request whose worst case is `worst`, given what
/// is left before it (None: no limit of that kind).
fn ahead(remaining: Remaining, worst: Amount) -> Amount {
    if near(remaining, worst) {
        return Amount::default();
    }
    let one = |left: Option<u64>, w: u64| {
        let most = w.saturating_mul(AHEAD_REQUESTS);
        left.map_or(most, |l| most.min(l.saturating_sub(w) / AHEAD_PART))
    };
    Amount { micros: one(remaining.micros, worst.micros), tokens: one(remaining.tokens, worst.tokens) }
}

/// Fewer than [`NEAR`] worst cases left in a limited kind: no room is taken
/// and settlements are written at once, so near its limit a budget is
/// decided exactly as without any of this (room and unwritten settlements
/// held by other workers would otherwise refuse requests early).
fn near(remaining: Remaining, worst: Amount) -> bool {
    let one = |left: Option<u64>, w: u64| left.is_some_and(|l| l < w.saturating_mul(NEAR));
    one(remaining.micros, worst.micros) || one(remaining.tokens, worst.tokens)
}

impl Local {
    fn entry(&mut self, key: &str) -> &mut Entry {
        match self.entries.iter().position(|e| e.0 == key) {
            Some(i) => self.entries.get_mut(i).map(|e| &mut e.1).unwrap_or(&mut self.spare),
            None => {
                self.entries.push((key.to_string(), Entry::default()));
                self.entries.last_mut().map(|e| &mut e.1).unwrap_or(&mut self.spare)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reserves `worst` against every budget, or refuses. A counter that cannot
/// be written (contention) admits the request unreserved for that scope: the
/// budget said yes, the reservation is what failed. `generation` is the
/// budget state's: room taken under an older one is not used.
pub fn admit(store: &dyn SharedCounters, local: &mut Local, s: &Situation<'_>, worst: Amount) -> Decision {
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
    // A budget in dollars this request would pass unseen (priced requests
    // skip the search). A budget held from an older state may have other
    // terms now: it is asked when its counter is read, below.
    let recheck = |i: usize| s.recheck.get(i).copied().unwrap_or(false);
    let unpriceable = if s.priced { None } else { s.budgets.iter().enumerate().find(|(i, b)| b.limit_micros.is_some() && !recheck(*i)) };
    if let Some((_, b)) = unpriceable {
        return unpriced(b);
    }
    let mut reservations: Vec<Reservation> = Vec::new();
    let mut soft: Option<(String, u64)> = None;
    let (mut remaining_m, mut remaining_t) = (None, None);
    for (i, b) in s.budgets.iter().enumerate() {
        let key = counter_key(b.scope_type, &b.scope_id);
        let e = local.entry(&key);
        let left = e.remaining.plus(e.room);
        // (An exhausted scope is asked again: it refuses even free requests.)
        let exhausted = left.micros == Some(0) || left.tokens == Some(0);
        if e.generation == s.generation && covers(e.room, worst) && !exhausted {
            // From this worker's room: no shared data.
            e.room = e.room.saturating_sub(worst);
            e.in_flight = e.in_flight.saturating_add(1);
            if let Some(pct) = e.soft_pct {
                soft = Some((Scope::new(b.scope_type, &b.scope_id).to_string(), pct));
            }
            remaining_m = min_opt(remaining_m, left.micros);
            remaining_t = min_opt(remaining_t, left.tokens);
            reservations.push(Reservation { scope_type: b.scope_type, scope_id: b.scope_id.clone(), amount: worst });
            continue;
        }
        // One write: the old room back, what is owed, this request's worst case and room ahead.
        let give_back = e.room.saturating_add(e.owed_reserved);
        let (owed_actual, in_flight) = (e.owed_actual, e.in_flight);
        let recheck = recheck(i);
        let (mut verdict, mut fresh, mut gone) = (None, None, false);
        let res = update_counter(store, &key, |c| {
            let Some(doc) = as_of(store, s, b, recheck, c, &mut fresh) else {
                gone = true;
                return false;
            };
            c.settle(give_back, owed_actual);
            // (Terms read again may have a dollar limit this request cannot be priced against.)
            let v = if !s.priced && doc.limit_micros.is_some() { None } else { Some(check(&doc, c, worst)) };
            let taken = match v {
                Some(Check::Allow { remaining, .. }) => worst.saturating_add(ahead(remaining, worst)),
                _ => Amount::default(),
            };
            c.reserve(taken);
            let ok = matches!(v, Some(Check::Allow { .. }));
            verdict = Some((v, *c, taken, doc));
            ok
        });
        if gone {
            // The budget was removed since this worker read it: none applies here.
            continue;
        }
        match (res, verdict) {
            (Ok(_), Some((Some(Check::Allow { soft: is_soft, remaining }), c, taken, doc))) => {
                let pct = is_soft.then(|| used_pct(&doc, &c));
                *e = Entry {
                    room: taken.saturating_sub(worst),
                    generation: s.generation,
                    remaining: remaining.minus(taken),
                    soft_pct: pct,
                    in_flight: in_flight.saturating_add(1),
                    ..Entry::default()
                };
                reservations.push(Reservation { scope_type: b.scope_type, scope_id: b.scope_id.clone(), amount: worst });
                if let Some(pct) = pct {
                    soft = Some((Scope::new(b.scope_type, &b.scope_id).to_string(), pct));
                }
                remaining_m = min_opt(remaining_m, remaining.micros);
                remaining_t = min_opt(remaining_t, remaining.tokens);
            }
            (Err(CounterError::Refused), Some((None, _, _, doc))) => {
                release(store, local, &reservations);
                return unpriced(&doc);
            }
            (Err(CounterError::Refused), Some((_, c, _, doc))) => {
                release(store, local, &reservations);
                let (error, headers) = exhausted_error(&doc, &c, s.now_ms);
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

/// The refusal of a request without a price where a budget in dollars applies.
fn unpriced(b: &BudgetDoc) -> Decision {
    let scope = Scope::new(b.scope_type, &b.scope_id);
    let error = GatewayError::bad_request(
        "model_not_priced",
        format!("The model has no price configured, and budget '{scope}' limits spend in dollars, which a request it cannot price would pass unseen. Give the model a price (the plugin's 'pricing') or use a priced model."),
    )
    .with_param("model");
    Decision::Denied { error, headers: Vec::new(), scope: Some(scope) }
}

/// The budget a request is decided on, as of its counter `c`: the figures
/// that move with spend (used, share) are the ones the background service
/// posted in `c` when there are some, written with the reflections they
/// include, so they always agree with `c`'s `pending`; the terms are
/// `held`'s when they are the ones posted, else its entry is read again
/// (at most once a request: `fresh`). A budget held from an older state
/// (`recheck`) whose counter has no figures posted (just created, or
/// written by an older filter) is read again too, and decided on its
/// entry's own figures, as before figures were posted. None: the budget
/// is gone.
fn as_of(store: &dyn SharedCounters, s: &Situation<'_>, held: &BudgetDoc, recheck: bool, c: &Counter, fresh: &mut Option<Option<BudgetDoc>>) -> Option<BudgetDoc> {
    match c.posted {
        Some(p) if p.terms == terms_of(held) => return Some(p.apply(held)),
        None if !recheck => return Some(held.clone()),
        _ => {}
    }
    let read = fresh.get_or_insert_with(|| store.budget(held.scope_type, &held.scope_id, s.generation, s.epoch)).as_ref()?;
    Some(c.posted.map_or_else(|| read.clone(), |p| p.apply(read)))
}

/// How much of a budget is used, in percent (money first, else tokens).
fn used_pct(b: &BudgetDoc, c: &Counter) -> u64 {
    let used = b.used_micros.saturating_add(c.pending_micros);
    b.limit_micros.filter(|l| *l > 0).map(|l| used.saturating_mul(100) / l).unwrap_or_else(|| {
        let used_t = b.used_tokens.saturating_add(c.pending_tokens);
        b.limit_tokens.filter(|l| *l > 0).map(|l| used_t.saturating_mul(100) / l).unwrap_or(0)
    })
}

/// Gives reservations back unused (the request was refused or went
/// elsewhere): a settlement at no cost.
pub fn release(store: &dyn SharedCounters, local: &mut Local, reservations: &[Reservation]) {
    settle(store, local, reservations, Amount::default());
}

/// Replaces each reservation with what the request really cost: what is
/// left of its worst case becomes room again, the real cost is owed to the
/// counter (written with this worker's next write of it, or by [`flush`]).
/// Near the limit ([`near`]), or not knowing, the settlement is written at once.
///
/// When the worker's table holds more than [`MAX_LOCAL`] counters (requests
/// over many budgets, each used rarely), the counters with nothing in
/// flight are dropped from it, their settlements handed to the background
/// service to write ([`SharedCounters::defer`]; written here when it
/// cannot take them). A counter with a request in flight keeps its entry,
/// room included, until that request settles (or the tick): dropped at
/// once, its settlement would find no entry and be written on its own.
/// So such a request costs its worker one write of shared data, its
/// reservation (2.29 writes a request over 10,000 budgets with 16 in
/// flight when in-flight entries were dropped, 2.0 when the worker wrote
/// its settlements: unit test `a_rarely_used_budget_costs_its_worker_one_write`).
pub fn settle(store: &dyn SharedCounters, local: &mut Local, reservations: &[Reservation], actual: Amount) {
    for r in reservations {
        let key = counter_key(r.scope_type, &r.scope_id);
        let e = local.entry(&key);
        e.in_flight = e.in_flight.saturating_sub(1);
        // (generation 0: this worker has not written the counter since its
        // last flush, so it does not know how near the limit it is.)
        if e.generation == 0 || near(e.remaining, r.amount) {
            let (give_back, owed) = (e.owed_reserved.saturating_add(r.amount), e.owed_actual.saturating_add(actual));
            let written = apply_settlement(store, &key, give_back, owed);
            (e.owed_reserved, e.owed_actual) = if written.is_ok() { (Amount::default(), Amount::default()) } else { (give_back, owed) };
            continue;
        }
        let spent = Amount { micros: actual.micros.min(r.amount.micros), tokens: actual.tokens.min(r.amount.tokens) };
        e.room = e.room.saturating_add(r.amount.saturating_sub(spent));
        e.owed_reserved = e.owed_reserved.saturating_add(spent);
        e.owed_actual = e.owed_actual.saturating_add(actual);
    }
    if local.entries.len() > MAX_LOCAL {
        write_back(store, local, true, |e| e.in_flight == 0);
    }
}

/// Writes what this worker owes its counters and gives its room back (a
/// counter that stays busy keeps its entry for the next flush).
pub fn flush(store: &dyn SharedCounters, local: &mut Local) {
    write_back(store, local, false, |_| true);
}

/// [`flush`] of the entries `which` picks (handed over with `defer` when
/// the store takes them); the others are kept as they are.
fn write_back(store: &dyn SharedCounters, local: &mut Local, defer: bool, which: impl Fn(&Entry) -> bool) {
    local.entries.retain(|(key, e)| {
        if !which(e) {
            return true;
        }
        let (give_back, actual) = (e.room.saturating_add(e.owed_reserved), e.owed_actual);
        if give_back == Amount::default() && actual == Amount::default() {
            return false;
        }
        if defer && store.defer(key, give_back, actual) {
            return false;
        }
        apply_settlement(store, key, give_back, actual).is_err()
    });
}

/// An in-memory [`SharedCounters`] for tests: CAS tokens like Envoy's, and
/// `lose_races` makes the next N writes fail with a CAS mismatch. With
/// `deferring` set it takes settlements handed over, as the background
/// service does, until [`MemCounters::write_deferred`].
#[derive(Default)]
pub struct MemCounters {
    data: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
    pub lose_races: std::cell::Cell<u32>,
    pub deferring: std::cell::Cell<bool>,
    /// Settlements handed over: the outbox, and the groups it filled.
    deferred: std::cell::RefCell<(crate::outbox::Outbox, Vec<u8>)>,
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

    fn defer(&self, key: &str, reserved: Amount, actual: Amount) -> bool {
        if !self.deferring.get() {
            return false;
        }
        // Through the outbox's own lines, as the glue hands them over.
        let (outbox, groups) = &mut *self.deferred.borrow_mut();
        if let Some(group) = outbox.push_settlement(key, reserved, actual) {
            groups.extend_from_slice(&group);
            groups.push(b'\n');
        }
        true
    }
}

impl MemCounters {
    /// Writes the settlements handed over, as the background service does;
    /// returns how many.
    pub fn write_deferred(&self) -> usize {
        let group = {
            let (outbox, groups) = &mut *self.deferred.borrow_mut();
            let mut all = std::mem::take(groups);
            all.extend(outbox.take().unwrap_or_default());
            all
        };
        let mut left = Unwritten::new();
        let (written, _) = write_handed_over(self, &mut left, &group);
        usize::try_from(written).unwrap_or(usize::MAX)
    }

    pub fn counter(&self, t: ScopeType, id: &str) -> Counter {
        self.get(&counter_key(t, id)).0.map(|v| Counter::decode(&v)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
