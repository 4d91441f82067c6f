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

pub mod detect;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use detect::Class;

/// What a policy does with a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Observe,
    Redact,
    Block,
}

impl Action {
    pub fn past(self) -> &'static str {
        match self {
            Action::Observe => "observed",
            Action::Redact => "redacted",
            Action::Block => "blocked",
        }
    }
}

type Actions = BTreeMap<String, Action>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustom {
    name: String,
    #[serde(default)]
    words: Option<Vec<String>>,
    #[serde(default)]
    pattern: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    actions: Actions,
    #[serde(default)]
    teams: BTreeMap<String, Actions>,
    #[serde(default)]
    routes: BTreeMap<String, Actions>,
    #[serde(default)]
    custom: Vec<RawCustom>,
}

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

/// A validated policy.
pub struct Policy {
    pub version: String,
    defaults: Actions,
    teams: BTreeMap<String, Actions>,
    routes: BTreeMap<String, Actions>,
    custom: Vec<Custom>,
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

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl RawPolicy {
    /// Validates; an error names the field (below `guardrails`).
    pub fn validate(self) -> Result<Policy, (String, String)> {
        let mut custom = Vec::with_capacity(self.custom.len());
        for (i, c) in self.custom.into_iter().enumerate() {
            let f = |n: &str| format!("custom[{i}].{n}");
            if !valid_name(&c.name) || Class::from_name(&c.name).is_some() {
                return Err((f("name"), "must be 1 to 32 of a-z, 0-9 and _, and not a built-in class".into()));
            }
            let matcher = match (c.words, c.pattern) {
                (Some(w), None) => {
                    if w.is_empty() || w.len() > 10_000 || w.iter().any(|x| x.trim().is_empty() || x.len() > 256) {
                        return Err((f("words"), "must be 1 to 10000 non-empty words of at most 256 bytes".into()));
                    }
                    Matcher::Words(w.iter().map(|x| x.trim().to_lowercase()).collect())
                }
                (None, Some(p)) => {
                    if p.len() > 1024 {
                        return Err((f("pattern"), "must be at most 1024 bytes".into()));
                    }
                    match regex_lite::RegexBuilder::new(&p).size_limit(1 << 20).build() {
                        Ok(r) if !r.is_match("") => Matcher::Pattern(r),
                        Ok(_) => return Err((f("pattern"), "must not match the empty string".into())),
                        Err(e) => return Err((f("pattern"), format!("is not a valid pattern: {}", crate::text::clean_field(&e.to_string(), 200)))),
                    }
                }
                _ => return Err((f("words"), "give exactly one of 'words' and 'pattern'".into())),
            };
            custom.push(Custom { label: c.name.to_uppercase(), name: c.name, matcher });
        }
        let known = |n: &str| Class::from_name(n).is_some() || custom.iter().any(|c| c.name == n);
        let check = |field: String, a: &Actions| -> Result<(), (String, String)> {
            match a.keys().find(|k| !known(k)) {
                Some(k) => Err((field, format!("'{}' is not a class (built-in: email, phone, card, iban, ssn, ip, secret; or a custom name)", crate::text::clean_field(k, 64)))),
                None => Ok(()),
            }
        };
        check("actions".into(), &self.actions)?;
        for (t, a) in &self.teams {
            check(format!("teams.{}", crate::text::clean_field(t, 64)), a)?;
        }
        for (r, a) in &self.routes {
            check(format!("routes.{}", crate::text::clean_field(r, 64)), a)?;
        }
        let mut defaults = default_actions();
        for c in &custom {
            defaults.insert(c.name.clone(), Action::Observe);
        }
        defaults.extend(self.actions);
        let version = self.version.unwrap_or_else(|| "default".into());
        if version.is_empty() || version.len() > 64 || !crate::text::header_safe(&version) {
            return Err(("version".into(), "must be 1 to 64 visible ASCII characters".into()));
        }
        Ok(Policy { version, defaults, teams: self.teams, routes: self.routes, custom })
    }
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
}

/// Members whose strings are identifiers or encoded payloads, not text.
const SKIP: &[&str] = &["model", "role", "type", "id", "tool_call_id", "tool_use_id", "media_type", "data", "previous_response_id", "signature"];

struct Walk<'a> {
    policy: &'a Policy,
    /// Action per class for this request.
    action: &'a dyn Fn(&str) -> Action,
    counts: BTreeMap<String, u64>,
    /// Placeholder per (class, value) seen.
    placeholders: BTreeMap<(String, String), String>,
    per_class: BTreeMap<String, u64>,
    redacted: bool,
}

impl Walk<'_> {
    fn hits(&self, text: &str) -> Vec<(usize, usize, String, String)> {
        let mut hits: Vec<(usize, usize, String, String)> =
            detect::scan(text).into_iter().map(|h| (h.start, h.end, h.class.name().to_string(), h.class.label().to_string())).collect();
        // Lower-cased only when a word list needs it (an allocation per string otherwise).
        let has_words = self.policy.custom.iter().any(|c| matches!(c.matcher, Matcher::Words(_)));
        let lower = if has_words { text.to_lowercase() } else { String::new() };
        for c in &self.policy.custom {
            match &c.matcher {
                Matcher::Pattern(r) => {
                    for m in r.find_iter(text) {
                        hits.push((m.start(), m.end(), c.name.clone(), c.label.clone()));
                    }
                }
                // `to_lowercase` keeps byte offsets for ASCII; other text is matched, offsets checked.
                Matcher::Words(words) if lower.len() == text.len() => {
                    for w in words {
                        let mut from = 0;
                        while let Some(p) = lower.get(from..).and_then(|s| s.find(w.as_str())) {
                            let (s, e) = (from + p, from + p + w.len());
                            let edge = |i: Option<u8>| i.is_none_or(|b| !b.is_ascii_alphanumeric());
                            if edge(s.checked_sub(1).and_then(|i| lower.as_bytes().get(i).copied())) && edge(lower.as_bytes().get(e).copied()) {
                                hits.push((s, e, c.name.clone(), c.label.clone()));
                            }
                            from = e;
                        }
                    }
                }
                Matcher::Words(_) => {}
            }
        }
        hits.sort_by_key(|h| (h.0, std::cmp::Reverse(h.1)));
        let mut out: Vec<(usize, usize, String, String)> = Vec::with_capacity(hits.len());
        for h in hits {
            if out.last().is_none_or(|l| h.0 >= l.1) {
                out.push(h);
            }
        }
        out
    }

    fn text(&mut self, s: &mut String) {
        if s.starts_with("data:") {
            return;
        }
        let hits = self.hits(s);
        if hits.is_empty() {
            return;
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for (start, end, class, label) in hits {
            *self.counts.entry(class.clone()).or_insert(0) += 1;
            if (self.action)(&class) != Action::Redact {
                continue;
            }
            let value = s.get(start..end).unwrap_or_default().to_string();
            let n = self.per_class.entry(class.clone()).or_insert(0);
            let ph = self
                .placeholders
                .entry((class, value))
                .or_insert_with(|| {
                    *n += 1;
                    format!("[{label}_{n}]")
                })
                .clone();
            out.push_str(s.get(last..start).unwrap_or_default());
            out.push_str(&ph);
            last = end;
            self.redacted = true;
        }
        if last > 0 {
            out.push_str(s.get(last..).unwrap_or_default());
            *s = out;
        }
    }

    fn value(&mut self, v: &mut Value) {
        match v {
            Value::String(s) => self.text(s),
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(x)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if !SKIP.contains(&k.as_str()) {
                        self.value(x);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Policy {
    fn action_for(&self, team: &str, route: &str, class: &str) -> Action {
        self.routes
            .get(route)
            .and_then(|a| a.get(class))
            .or_else(|| self.teams.get(team).and_then(|a| a.get(class)))
            .or_else(|| self.defaults.get(class))
            .copied()
            .unwrap_or(Action::Observe)
    }

    /// Scans a JSON request body for a key of `team` on `route`.
    pub fn apply(&self, team: &str, route: &str, body: &[u8]) -> Outcome {
        let Ok(mut v) = serde_json::from_slice::<Value>(body) else { return Outcome::Clean };
        let action = |c: &str| self.action_for(team, route, c);
        let mut w = Walk { policy: self, action: &action, counts: BTreeMap::new(), placeholders: BTreeMap::new(), per_class: BTreeMap::new(), redacted: false };
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

/// Applies `policy` to the body about to go to `target` for a key of `team`.
pub fn decide(policy: &Policy, team: &str, target: &crate::route::Target, body: &[u8]) -> (Decision, Option<crate::errors::GatewayError>) {
    let record = |f: &Finding| {
        Some(tollgate_protocol::record::Guardrails { classes: f.counts.clone(), action: f.action.past().to_string(), policy: f.policy.clone() })
    };
    match policy.apply(team, &target.route, body) {
        Outcome::Clean => (Decision { record: None, body: None }, None),
        Outcome::Observed(f) => (Decision { record: record(&f), body: None }, None),
        Outcome::Redacted(b, f) => (Decision { record: record(&f), body: Some(b) }, None),
        Outcome::Blocked(class, f) => {
            let e = crate::errors::GatewayError::bad_request(
                "content_blocked",
                format!(
                    "The request contains data of class '{class}', which guardrail policy '{}' does not allow to be sent to provider '{}'.",
                    f.policy, target.provider
                ),
            );
            (Decision { record: record(&f), body: None }, Some(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: Value) -> Policy {
        serde_json::from_value::<RawPolicy>(v).unwrap().validate().unwrap()
    }

    #[test]
    fn redacts_with_stable_placeholders_and_blocks_by_class() {
        let p = policy(json!({"version": "v7", "actions": {"email": "redact"}, "custom": [{"name": "codename", "words": ["Bluebird"]}],
                              "teams": {"labs": {"codename": "block"}}}));
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "Mail a@b.io and c@d.io, then a@b.io again about bluebird."},
            {"role": "assistant", "tool_calls": [{"id": "x@y.zz", "function": {"arguments": "{\"to\":\"a@b.io\"}"}}]}]});
        let b = serde_json::to_vec(&body).unwrap();
        let Outcome::Redacted(out, f) = p.apply("search", "r", &b) else { panic!() };
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["messages"][0]["content"], "Mail [EMAIL_1] and [EMAIL_2], then [EMAIL_1] again about bluebird.");
        assert_eq!(out["messages"][1]["tool_calls"][0]["function"]["arguments"], "{\"to\":\"[EMAIL_1]\"}");
        assert_eq!(out["messages"][1]["tool_calls"][0]["id"], "x@y.zz", "identifiers are not text");
        assert_eq!(f.counts, BTreeMap::from([("codename".into(), 1), ("email".into(), 4)]));
        assert_eq!((f.action, f.policy.as_str()), (Action::Redact, "v7"));
        let Outcome::Blocked(class, f) = p.apply("labs", "r", &b) else { panic!() };
        assert_eq!((class.as_str(), f.action), ("codename", Action::Block));
        let card = serde_json::to_vec(&json!({"messages": [{"content": "4111-1111-1111-1111"}]})).unwrap();
        assert!(matches!(p.apply("search", "r", &card), Outcome::Blocked(c, _) if c == "card"), "secure defaults");
        assert!(matches!(p.apply("search", "r", br#"{"messages":[{"content":"hello"}]}"#), Outcome::Clean));
    }

    #[test]
    fn bad_policies_are_refused_with_the_field_named() {
        for (v, field) in [
            (json!({"custom": [{"name": "x", "pattern": "("}]}), "custom[0].pattern"),
            (json!({"custom": [{"name": "x", "pattern": "a*"}]}), "custom[0].pattern"),
            (json!({"custom": [{"name": "Bad Name", "words": ["a"]}]}), "custom[0].name"),
            (json!({"custom": [{"name": "email", "words": ["a"]}]}), "custom[0].name"),
            (json!({"custom": [{"name": "x", "words": ["a"], "pattern": "b"}]}), "custom[0].words"),
            (json!({"actions": {"passport": "block"}}), "actions"),
            (json!({"teams": {"labs": {"emial": "block"}}}), "teams.labs"),
        ] {
            let e = serde_json::from_value::<RawPolicy>(v).unwrap().validate().err().unwrap();
            assert_eq!(e.0, field, "{}", e.1);
        }
        assert!(serde_json::from_value::<RawPolicy>(json!({"actions": {"email": "shred"}})).is_err());
    }
}
