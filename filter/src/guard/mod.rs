//! Guardrails: what data classes a request carries, and what the policy
//! does about each (docs/guardrails.md).
//!
//! The built-in classes ([`detect`]) and the operator's own (word lists
//! and patterns) are looked for in every string of the request body — every
//! message, content block, system prompt, tool definition, tool-call
//! argument and tool result, in any API's shape — except identifiers and
//! base64 payloads. Per class the policy says `observe` (record only),
//! `redact` (replace with `[EMAIL_1]`-style placeholders, the same value the
//! same placeholder) or `block` (a 400 that names the class and the policy,
//! never the value); teams and routes can override the defaults. The usage
//! record carries the classes and counts found and the action taken, never
//! a value.

pub mod answer;
pub mod detect;
mod unique;

use std::collections::BTreeMap;

use serde_json::Value;

pub use tollgate_protocol::guard::{Action, PolicyDoc, ResponseMode};
use tollgate_protocol::guard::Actions;

enum Matcher {
    /// Lower-cased words, matched case-insensitively on word boundaries.
    Words(Vec<String>),
    Pattern(regex_lite::Regex),
}

struct Custom {
    name: String,
    label: String,
    matcher: Matcher,
}

/// A validated, compiled policy.
pub struct Policy {
    pub version: String,
    defaults: Actions,
    keys: BTreeMap<String, Actions>,
    projects: BTreeMap<String, Actions>,
    teams: BTreeMap<String, Actions>,
    routes: BTreeMap<String, Actions>,
    custom: Vec<Custom>,
    pub responses: ResponseMode,
    pub restore: bool,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("version", &self.version).finish_non_exhaustive()
    }
}

/// The defaults a security team can start from: secrets, card numbers and
/// SSNs never leave; IBANs are redacted; e-mail, phone and IP are recorded.
fn default_actions() -> Actions {
    [
        ("secret", Action::Block),
        ("card", Action::Block),
        ("ssn", Action::Block),
        ("iban", Action::Redact),
        ("email", Action::Observe),
        ("phone", Action::Observe),
        ("ip", Action::Observe),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Policy {
    /// Validates (the same checks as the control service's) and compiles;
    /// an error names the field (below `guardrails`).
    pub fn build(doc: PolicyDoc) -> Result<Policy, (String, String)> {
        doc.validate()?;
        let version = doc.version().to_string();
        let mut custom = Vec::with_capacity(doc.custom.len());
        for (i, c) in doc.custom.into_iter().enumerate() {
            let matcher = match (c.words, c.pattern) {
                (Some(w), _) => Matcher::Words(w.iter().map(|x| x.trim().to_lowercase()).collect()),
                (None, Some(p)) => {
                    Matcher::Pattern(tollgate_protocol::guard::compile_pattern(&p).map_err(|m| (format!("custom[{i}].pattern"), m))?)
                }
                (None, None) => return Err((format!("custom[{i}].words"), "give exactly one of 'words' and 'pattern'".into())),
            };
            custom.push(Custom { label: c.name.to_uppercase(), name: c.name, matcher });
        }
        let mut defaults = default_actions();
        for c in &custom {
            defaults.insert(c.name.clone(), Action::Observe);
        }
        defaults.extend(doc.actions);
        Ok(Policy {
            version,
            defaults,
            keys: doc.keys,
            projects: doc.projects,
            teams: doc.teams,
            routes: doc.routes,
            custom,
            responses: doc.responses,
            restore: doc.restore,
        })
    }

    /// Whether answers must be read whole or event by event (scanned or restored).
    pub fn reads_answers(&self) -> bool {
        self.responses != ResponseMode::Off || self.restore
    }

    /// Whether answers are scanned for data classes (not only restored).
    pub fn scans_answers(&self) -> bool {
        self.responses != ResponseMode::Off
    }
}

/// Who a request is for: the key's id, project and team, and the route.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub key: &'a str,
    pub project: &'a str,
    pub team: &'a str,
    pub route: &'a str,
}

/// What was found (class name → count) and the strongest action taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub counts: BTreeMap<String, u64>,
    pub action: Action,
    pub policy: String,
}

#[derive(Debug)]
pub enum Outcome {
    /// Nothing found.
    Clean,
    /// Found and recorded; the body goes as it is.
    Observed(Finding),
    /// The body to send instead.
    Redacted(Vec<u8>, Finding),
    /// Refused: the first blocked class.
    Blocked(String, Finding),
    /// Refused: the body is JSON the request path reads (it skips what it
    /// does not use) but the scan cannot (nested deeper than 128, a number
    /// out of range such as `1e400`, a lone surrogate `\ud800`, a member
    /// given twice in one object: [`unique`]), so what it holds cannot be
    /// checked. Sending it unchecked let any value past the
    /// policy; why, as serde_json says it (a position, never a value).
    Unreadable(String),
}

/// A value the scanners found: byte range, class name and placeholder stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found<'p> {
    pub start: usize,
    pub end: usize,
    pub class: &'p str,
    pub label: &'p str,
}

impl Policy {
    /// Every value in `text` of a built-in or custom class, in order,
    /// without overlaps (the earlier and longer wins).
    pub fn hits(&self, text: &str) -> Vec<Found<'_>> {
        let mut hits: Vec<Found<'_>> =
            detect::scan(text).into_iter().map(|h| Found { start: h.start, end: h.end, class: h.class.name(), label: h.class.label() }).collect();
        // Lower-cased only when a word list needs it (an allocation per string otherwise).
        let has_words = self.custom.iter().any(|c| matches!(c.matcher, Matcher::Words(_)));
        let lower = if has_words { text.to_lowercase() } else { String::new() };
        for c in &self.custom {
            let found = |start, end| Found { start, end, class: &c.name, label: &c.label };
            match &c.matcher {
                Matcher::Pattern(r) => hits.extend(r.find_iter(text).map(|m| found(m.start(), m.end()))),
                // `to_lowercase` keeps byte offsets for ASCII; other text is matched, offsets checked.
                Matcher::Words(words) if lower.len() == text.len() => {
                    for w in words {
                        let mut from = 0;
                        while let Some(p) = lower.get(from..).and_then(|s| s.find(w.as_str())) {
                            let (s, e) = (from + p, from + p + w.len());
                            let edge = |i: Option<u8>| i.is_none_or(|b| !b.is_ascii_alphanumeric());
                            if edge(s.checked_sub(1).and_then(|i| lower.as_bytes().get(i).copied())) && edge(lower.as_bytes().get(e).copied()) {
                                hits.push(found(s, e));
                            }
                            from = e;
                        }
                    }
                }
                Matcher::Words(_) => {}
            }
        }
        hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        let mut out: Vec<Found<'_>> = Vec::with_capacity(hits.len());
        for h in hits {
            if out.last().is_none_or(|l| h.start >= l.end) {
                out.push(h);
            }
        }
        out
    }
}

/// The placeholders of one request: the same value the same placeholder,
/// in the request and in its answer; and back, for restoring. Lives only
/// as long as the request (never logged, never recorded).
#[derive(Debug, Default)]
pub struct Placeholders {
    by_value: BTreeMap<(String, String), String>,
    by_placeholder: BTreeMap<String, String>,
    per_class: BTreeMap<String, u64>,
}

impl Placeholders {
    /// The placeholder for `value` of `class` (`[LABEL_n]`), made on first use.
    pub fn for_value(&mut self, class: &str, label: &str, value: &str) -> String {
        if let Some(p) = self.by_value.get(&(class.to_string(), value.to_string())) {
            return p.clone();
        }
        let n = self.per_class.entry(class.to_string()).or_insert(0);
        *n += 1;
        let p = format!("[{label}_{n}]");
        self.by_value.insert((class.to_string(), value.to_string()), p.clone());
        self.by_placeholder.insert(p.clone(), value.to_string());
        p
    }

    /// The value a placeholder stands for.
    pub fn value_of(&self, placeholder: &str) -> Option<&str> {
        self.by_placeholder.get(placeholder).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }
}

/// Members whose strings are identifiers or encoded payloads, not text.
pub(crate) const SKIP: &[&str] =
    &["model", "role", "type", "id", "tool_call_id", "tool_use_id", "media_type", "data", "previous_response_id", "signature"];

struct Walk<'a> {
    policy: &'a Policy,
    /// Action per class for this request.
    action: &'a dyn Fn(&str) -> Action,
    counts: BTreeMap<String, u64>,
    placeholders: &'a mut Placeholders,
    redacted: bool,
}

impl Walk<'_> {
    fn text(&mut self, s: &mut String) {
        if s.starts_with("data:") {
            return;
        }
        let hits = self.policy.hits(s);
        if hits.is_empty() {
            return;
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for h in hits {
            *self.counts.entry(h.class.to_string()).or_insert(0) += 1;
            if (self.action)(h.class) != Action::Redact {
                continue;
            }
            let ph = self.placeholders.for_value(h.class, h.label, s.get(h.start..h.end).unwrap_or_default());
            out.push_str(s.get(last..h.start).unwrap_or_default());
            out.push_str(&ph);
            last = h.end;
            self.redacted = true;
        }
        if last > 0 {
            out.push_str(s.get(last..).unwrap_or_default());
            *s = out;
        }
    }

    fn value(&mut self, v: &mut Value) {
        for_each_text(v, &mut |s| self.text(s));
    }
}

/// Calls `f` on every text string of a JSON value (not under [`SKIP`] members).
pub(crate) fn for_each_text(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| for_each_text(x, f)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if !SKIP.contains(&k.as_str()) {
                    for_each_text(x, f);
                }
            }
        }
        _ => {}
    }
}

impl Policy {
    /// The action for `class`: the strongest among the overrides that name
    /// it (key, project, team, route), else `actions`, else the default.
    pub fn action_for(&self, who: Subject<'_>, class: &str) -> Action {
        [self.keys.get(who.key), self.projects.get(who.project), self.teams.get(who.team), self.routes.get(who.route)]
            .into_iter()
            .flatten()
            .filter_map(|a| a.get(class).copied())
            .max()
            .or_else(|| self.defaults.get(class).copied())
            .unwrap_or(Action::Observe)
    }

    /// Whether some class is blocked or redacted for `who`: content the
    /// scan cannot read (an uploaded file) would pass it unchecked.
    pub fn acts_for(&self, who: Subject<'_>) -> bool {
        let named = [self.keys.get(who.key), self.projects.get(who.project), self.teams.get(who.team), self.routes.get(who.route)];
        let classes = self.defaults.keys().chain(named.iter().flatten().flat_map(|a| a.keys()));
        classes.into_iter().any(|c| self.action_for(who, c) != Action::Observe)
    }

    /// Scans a JSON request body for `who`; redactions use (and add to) `placeholders`.
    pub fn apply(&self, who: Subject<'_>, body: &[u8], placeholders: &mut Placeholders) -> Outcome {
        let mut v = match unique::parse(body) {
            Ok(v) => v,
            Err(e) => return Outcome::Unreadable(e.to_string()),
        };
        let action = |c: &str| self.action_for(who, c);
        let mut w = Walk { policy: self, action: &action, counts: BTreeMap::new(), placeholders, redacted: false };
        w.value(&mut v);
        if w.counts.is_empty() {
            return Outcome::Clean;
        }
        let strongest = w.counts.keys().map(|c| action(c)).max().unwrap_or(Action::Observe);
        let finding = Finding { counts: w.counts.clone(), action: strongest, policy: self.version.clone() };
        if strongest == Action::Block {
            let class = w.counts.keys().find(|c| action(c) == Action::Block).cloned().unwrap_or_default();
            return Outcome::Blocked(class, finding);
        }
        if w.redacted {
            if let Ok(b) = serde_json::to_vec(&v) {
                return Outcome::Redacted(b, finding);
            }
        }
        Outcome::Observed(Finding { action: Action::Observe, ..finding })
    }
}

/// What the request path does with a policy's outcome: the record's
/// finding, the body to send instead (redacted), or the refusal.
pub struct Decision {
    pub record: Option<tollgate_protocol::record::Guardrails>,
    pub body: Option<Vec<u8>>,
}

/// Applies `policy` to the body about to go to `target` for `who`.
pub fn decide(
    policy: &Policy,
    who: Subject<'_>,
    target: &crate::route::Target,
    body: &[u8],
    placeholders: &mut Placeholders,
) -> (Decision, Option<crate::errors::GatewayError>) {
    let record = |f: &Finding| {
        Some(tollgate_protocol::record::Guardrails {
            classes: f.counts.clone(),
            action: f.action.past().to_string(),
            policy: f.policy.clone(),
            response_classes: BTreeMap::new(),
            response_action: None,
            restored: 0,
        })
    };
    match policy.apply(who, body, placeholders) {
        Outcome::Clean => (Decision { record: None, body: None }, None),
        Outcome::Observed(f) => (Decision { record: record(&f), body: None }, None),
        Outcome::Redacted(b, f) => (Decision { record: record(&f), body: Some(b) }, None),
        Outcome::Blocked(class, f) => {
            let e = crate::errors::GatewayError::bad_request(
                crate::errors::GatewayError::CONTENT_BLOCKED,
                format!(
                    "The request contains data of class '{class}', which guardrail policy '{}' does not allow to be sent to provider '{}'.",
                    f.policy, target.provider
                ),
            );
            (Decision { record: record(&f), body: None }, Some(e))
        }
        Outcome::Unreadable(why) => {
            let e = crate::errors::GatewayError::bad_request(
                crate::errors::GatewayError::CONTENT_UNREADABLE,
                format!(
                    "The request body cannot be checked by guardrail policy '{}' ({}), so it is not sent to provider '{}'. Send it without members given twice, numbers out of range, lone surrogate escapes or nesting deeper than 128.",
                    policy.version,
                    crate::text::clean_field(&why, 160),
                    target.provider
                ),
            );
            (Decision { record: None, body: None }, Some(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: Value) -> Policy {
        Policy::build(serde_json::from_value::<PolicyDoc>(v).unwrap()).unwrap()
    }

    fn who<'a>(team: &'a str, route: &'a str) -> Subject<'a> {
        Subject { key: "k1", project: "p1", team, route }
    }

    fn apply(p: &Policy, team: &str, route: &str, body: &[u8]) -> Outcome {
        p.apply(who(team, route), body, &mut Placeholders::default())
    }

    #[test]
    fn redacts_with_stable_placeholders_and_blocks_by_class() {
        let p = policy(json!({"version": "v7", "actions": {"email": "redact"}, "custom": [{"name": "codename", "words": ["Bluebird"]}],
                              "teams": {"labs": {"codename": "block"}}}));
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "Mail a@b.io and c@d.io, then a@b.io again about bluebird."},
            {"role": "assistant", "tool_calls": [{"id": "x@y.zz", "function": {"arguments": "{\"to\":\"a@b.io\"}"}}]}]});
        let b = serde_json::to_vec(&body).unwrap();
        let Outcome::Redacted(out, f) = apply(&p, "search", "r", &b) else { panic!() };
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["messages"][0]["content"], "Mail [EMAIL_1] and [EMAIL_2], then [EMAIL_1] again about bluebird.");
        assert_eq!(out["messages"][1]["tool_calls"][0]["function"]["arguments"], "{\"to\":\"[EMAIL_1]\"}");
        assert_eq!(out["messages"][1]["tool_calls"][0]["id"], "x@y.zz", "identifiers are not text");
        assert_eq!(f.counts, BTreeMap::from([("codename".into(), 1), ("email".into(), 4)]));
        assert_eq!((f.action, f.policy.as_str()), (Action::Redact, "v7"));
        let Outcome::Blocked(class, f) = apply(&p, "labs", "r", &b) else { panic!() };
        assert_eq!((class.as_str(), f.action), ("codename", Action::Block));
        let card = serde_json::to_vec(&json!({"messages": [{"content": "4111-1111-1111-1111"}]})).unwrap();
        assert!(matches!(apply(&p, "search", "r", &card), Outcome::Blocked(c, _) if c == "card"), "secure defaults");
        assert!(matches!(apply(&p, "search", "r", br#"{"messages":[{"content":"hello"}]}"#), Outcome::Clean));
    }

    #[test]
    fn the_strongest_override_wins_over_the_defaults() {
        let p = policy(json!({"actions": {"email": "redact"}, "teams": {"research": {"email": "observe"}}, "routes": {"cheap": {"email": "block"}},
                              "keys": {"k9": {"card": "observe"}}, "projects": {"p1": {"phone": "redact"}}}));
        let at = |key, team, route, class| p.action_for(Subject { key, project: "p1", team, route }, class);
        assert_eq!(at("k1", "search", "r", "email"), Action::Redact, "policy default");
        assert_eq!(at("k1", "research", "r", "email"), Action::Observe, "a team relaxes");
        assert_eq!(at("k1", "research", "cheap", "email"), Action::Block, "a route to an external provider still blocks");
        assert_eq!(at("k9", "search", "r", "card"), Action::Observe, "a key override");
        assert_eq!(at("k1", "search", "r", "card"), Action::Block, "built-in default");
        assert_eq!(at("k1", "search", "r", "phone"), Action::Redact, "a project override");
    }

    /// JSON the request path accepts (it skips members it does not use,
    /// whatever their depth or numbers) but a `Value` cannot hold: each
    /// went upstream unchecked, the e-mail beside it with it, until the
    /// scan refused what it cannot read. (Found by probing: the request
    /// parser took all three, the scan said "clean".)
    #[test]
    fn a_body_the_scan_cannot_read_is_refused_not_sent_unchecked() {
        let p = policy(json!({"version": "v3", "actions": {"email": "block"}}));
        let target = crate::route::Target { provider: "openai".into(), route: "r".into(), upstream_model: "m".into(), advisor: None };
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        // (A member given twice: a Value keeps the last, the provider may
        // read the first, and it leaves with the body either way.)
        let twice = r#"[{"content":"4111 1111 1111 1111","content":"hi"}]"#;
        for (extra, why) in [(deep.as_str(), "recursion limit"), ("1e400", "number out of range"), ("\"\\ud800 x\"", "hex escape"), (twice, "'content' is given twice")] {
            let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"mail bob@example.com"}}],"user":{extra}}}"#);
            assert!(crate::request::parse_chat(crate::request::Api::OpenAiChat, body.as_bytes()).is_ok(), "the request path reads {extra:.20}");
            let Outcome::Unreadable(reason) = apply(&p, "t", "r", body.as_bytes()) else { panic!("{extra:.20} was not refused") };
            assert!(reason.contains(why), "{reason}");
            let (d, e) = decide(&p, who("t", "r"), &target, body.as_bytes(), &mut Placeholders::default());
            let e = e.expect("refused");
            assert_eq!((e.status, e.code, d.body, d.record), (400, crate::errors::GatewayError::CONTENT_UNREADABLE, None, None));
            assert!(e.message.contains("'v3'") && e.message.contains(why) && !e.message.contains("bob@"), "{}", e.message);
        }
        // JSON a Value holds, however odd, is still scanned (and blocked).
        for extra in ["123456789012345678901234567890", "-0", "{\"a\":1,\"b\":{\"a\":2}}", "\"\\ud83d\\ude00\""] {
            let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"mail bob@example.com"}}],"user":{extra}}}"#);
            assert!(matches!(apply(&p, "t", "r", body.as_bytes()), Outcome::Blocked(..)), "{extra}");
        }
    }

    #[test]
    fn a_bad_policy_is_refused_with_the_field_named() {
        let doc: PolicyDoc = serde_json::from_value(json!({"custom": [{"name": "x", "pattern": "("}]})).unwrap();
        assert_eq!(Policy::build(doc).err().unwrap().0, "custom[0].pattern");
    }
}
