//! A guardrail policy as written in the Envoy configuration (`guardrails`)
//! or stored by the control service (`PUT /v1/guardrails`), and the one
//! validation both sides run, so a policy the service accepts is one every
//! filter can load. The filter compiles it (`tollgate_filter::guard`);
//! docs/guardrails.md is the user's guide.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::text::{clean_field, header_safe};

/// What a policy does with a data class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Observe,
    Redact,
    Block,
}

impl Action {
    /// The record's word for it.
    pub fn past(self) -> &'static str {
        match self {
            Action::Observe => "observed",
            Action::Redact => "redacted",
            Action::Block => "blocked",
        }
    }
}

/// What the filter does with answers (`responses`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    /// Answers are not scanned.
    #[default]
    Off,
    /// Classes found in answers are recorded.
    Observe,
    /// Recorded, and values of classes the policy redacts or blocks are
    /// replaced by placeholders in the answer.
    Redact,
}

/// The built-in classes (the filter's detectors).
pub const BUILTIN_CLASSES: [&str; 7] = ["email", "phone", "card", "iban", "ssn", "ip", "secret"];

pub type Actions = BTreeMap<String, Action>;

/// A custom class: a word list or a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDoc {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// A guardrail policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Named in records, audit entries and refusals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Class -> action, over the defaults.
    #[serde(default)]
    pub actions: Actions,
    /// Overrides by key id, project, team and route name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, Actions>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub projects: BTreeMap<String, Actions>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub teams: BTreeMap<String, Actions>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, Actions>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomDoc>,
    #[serde(default)]
    pub responses: ResponseMode,
    /// Put the original values back where the answer uses a request's
    /// placeholders.
    #[serde(default)]
    pub restore: bool,
}

/// Custom classes one policy may define.
pub const MAX_CUSTOM: usize = 32;
/// Longest custom pattern, and the compiled program's size limit.
pub const MAX_PATTERN_BYTES: usize = 1024;
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// A class name: 1 to 32 of a-z, 0-9 and `_`.
pub fn valid_class_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A compiled pattern: a guardrail's own class, or an evaluation's check.
pub type Pattern = regex_lite::Regex;

/// Compiles a custom pattern as the filter does (linear-time engine).
pub fn compile_pattern(p: &str) -> Result<Pattern, String> {
    if p.len() > MAX_PATTERN_BYTES {
        return Err(format!("must be at most {MAX_PATTERN_BYTES} bytes"));
    }
    match regex_lite::RegexBuilder::new(p).size_limit(PATTERN_SIZE_LIMIT).build() {
        Ok(r) if r.is_match("") => Err("must not match the empty string".into()),
        Ok(r) => Ok(r),
        Err(e) => Err(format!("is not a valid pattern: {}", clean_field(&e.to_string(), 200))),
    }
}

impl PolicyDoc {
    /// The version named in records ("default" when none is given).
    pub fn version(&self) -> &str {
        self.version.as_deref().unwrap_or("default")
    }

    /// Checks everything the filter relies on; an error names the field
    /// (relative to the policy) and says what is wrong, never echoing more
    /// than a bounded, cleaned piece of the input.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.custom.len() > MAX_CUSTOM {
            return Err(("custom".into(), format!("at most {MAX_CUSTOM} custom classes")));
        }
        for (i, c) in self.custom.iter().enumerate() {
            let f = |n: &str| format!("custom[{i}].{n}");
            if !valid_class_name(&c.name) || BUILTIN_CLASSES.contains(&c.name.as_str()) {
                return Err((f("name"), "must be 1 to 32 of a-z, 0-9 and _, and not a built-in class".into()));
            }
            if self.custom.iter().take(i).any(|o| o.name == c.name) {
                return Err((f("name"), "is defined twice".into()));
            }
            match (&c.words, &c.pattern) {
                (Some(w), None) => {
                    if w.is_empty() || w.len() > 10_000 || w.iter().any(|x| x.trim().is_empty() || x.len() > 256) {
                        return Err((f("words"), "must be 1 to 10000 non-empty words of at most 256 bytes".into()));
                    }
                }
                (None, Some(p)) => {
                    compile_pattern(p).map_err(|m| (f("pattern"), m))?;
                }
                _ => return Err((f("words"), "give exactly one of 'words' and 'pattern'".into())),
            }
        }
        let known = |n: &str| BUILTIN_CLASSES.contains(&n) || self.custom.iter().any(|c| c.name == n);
        let check = |field: String, a: &Actions| -> Result<(), (String, String)> {
            match a.keys().find(|k| !known(k)) {
                Some(k) => Err((
                    field,
                    format!("'{}' is not a class (built-in: {}; or a custom name)", clean_field(k, 64), BUILTIN_CLASSES.join(", ")),
                )),
                None => Ok(()),
            }
        };
        check("actions".into(), &self.actions)?;
        for (section, map) in [("keys", &self.keys), ("projects", &self.projects), ("teams", &self.teams), ("routes", &self.routes)] {
            if map.len() > 10_000 {
                return Err((section.into(), "at most 10000 entries".into()));
            }
            for (name, a) in map {
                check(format!("{section}.{}", clean_field(name, 64)), a)?;
            }
        }
        let v = self.version();
        if v.is_empty() || v.len() > 64 || !header_safe(v) {
            return Err(("version".into(), "must be 1 to 64 visible ASCII characters".into()));
        }
        Ok(())
    }
}

/// `GET /v1/guardrails`: the policy the control service holds for every
/// Envoy (`None`: each Envoy uses its configuration's), and its change
/// sequence (the state document's `guardrails_seq`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardrailsDoc {
    pub seq: u64,
    pub policy: Option<PolicyDoc>,
    #[serde(default)]
    pub updated_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_policies_are_refused_with_the_field_named() {
        for (v, field) in [
            (json!({"custom": [{"name": "x", "pattern": "("}]}), "custom[0].pattern"),
            (json!({"custom": [{"name": "x", "pattern": "a*"}]}), "custom[0].pattern"),
            (json!({"custom": [{"name": "Bad Name", "words": ["a"]}]}), "custom[0].name"),
            (json!({"custom": [{"name": "email", "words": ["a"]}]}), "custom[0].name"),
            (json!({"custom": [{"name": "x", "words": ["a"]}, {"name": "x", "words": ["b"]}]}), "custom[1].name"),
            (json!({"custom": [{"name": "x", "words": ["a"], "pattern": "b"}]}), "custom[0].words"),
            (json!({"actions": {"passport": "block"}}), "actions"),
            (json!({"teams": {"labs": {"emial": "block"}}}), "teams.labs"),
            (json!({"keys": {"k1": {"x": "block"}}}), "keys.k1"),
            (json!({"projects": {"p\u{1b}[2J": {"x": "block"}}}), "projects.p[2J"),
            (json!({"version": "a\nb"}), "version"),
        ] {
            let e = serde_json::from_value::<PolicyDoc>(v).unwrap().validate().err().unwrap();
            assert_eq!(e.0, field, "{}", e.1);
        }
        for bad in [json!({"actions": {"email": "shred"}}), json!({"responses": "always"}), json!({"colour": 1})] {
            assert!(serde_json::from_value::<PolicyDoc>(bad).is_err());
        }
        let ok: PolicyDoc = serde_json::from_value(json!({"responses": "redact", "restore": true, "keys": {"k": {"email": "block"}}})).unwrap();
        assert!(ok.validate().is_ok());
        assert_eq!(serde_json::from_value::<PolicyDoc>(serde_json::to_value(&ok).unwrap()).unwrap(), ok, "round trip");
    }
}
