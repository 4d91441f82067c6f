//! The prompt registry's contract: a prompt version's content, its hash,
//! its variables, and the document the Envoys sync (`GET /v1/prompts/current`).
//!
//! A version is immutable and named by its content hash; labels
//! (`production`, `staging`) point at versions and move. The system prompt
//! carries no variables: it stays a byte-identical, cacheable prefix, and
//! variables are filled in the messages that follow it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One message of a prompt: a role and a text with `{{variable}}`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptMessage {
    pub role: String,
    pub content: String,
}

/// A prompt version's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default)]
    pub messages: Vec<PromptMessage>,
}

/// A stored version, as the Envoys get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDoc {
    pub version: u32,
    /// [`content_hash`] of the content (hex, 64).
    pub hash: String,
    #[serde(flatten)]
    pub content: PromptContent,
}

/// A prompt: its versions and where its labels point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptDoc {
    pub name: String,
    pub versions: Vec<VersionDoc>,
    pub labels: BTreeMap<String, u32>,
}

/// `GET /v1/prompts/current`: every prompt, for the Envoys; `seq` is the
/// registry's change number (the state document's `prompts_seq`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptsDoc {
    pub seq: u64,
    pub prompts: Vec<PromptDoc>,
}

/// The label a request gets when it names none.
pub const DEFAULT_LABEL: &str = "production";
/// Bounds: a version's content, a registry document.
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;
pub const MAX_MESSAGES: usize = 64;
pub const MAX_VARIABLES: usize = 64;

/// A prompt or label name: 1 to 64 of a-z, A-Z, 0-9, `-`, `_`, `.`.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn valid_var(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A template's pieces: literal text and variables, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits a template at `{{name}}`s; Err names what is malformed.
pub fn pieces(t: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Piece::Text(rest.get(..open).unwrap_or_default()));
        }
        let after = rest.get(open + 2..).unwrap_or_default();
        let close = after.find("}}").ok_or("a '{{' without its '}}'")?;
        let name = after.get(..close).unwrap_or_default().trim();
        if !valid_var(name) {
            return Err(format!("'{{{{{}}}}}' is not a variable (1 to 64 of a-z, A-Z, 0-9 and _)", crate::text::clean_field(name, 64)));
        }
        out.push(Piece::Var(name));
        rest = after.get(close + 2..).unwrap_or_default();
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

impl PromptContent {
    /// Checks the content; Err is (field, what is wrong).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bytes = self.system.as_ref().map_or(0, String::len) + self.messages.iter().map(|m| m.content.len()).sum::<usize>();
        if bytes > MAX_CONTENT_BYTES {
            return Err(("content".into(), format!("at most {MAX_CONTENT_BYTES} bytes")));
        }
        if self.system.is_none() && self.messages.is_empty() {
            return Err(("messages".into(), "a prompt needs a system prompt or messages".into()));
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(("messages".into(), format!("at most {MAX_MESSAGES}")));
        }
        if let Some(s) = &self.system {
            match pieces(s) {
                Ok(p) if p.iter().any(|x| matches!(x, Piece::Var(_))) => {
                    return Err((
                        "system".into(),
                        "has a variable: the system prompt stays the same bytes on every request (a cacheable prefix); put variables in the messages".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(("system".into(), e)),
            }
        }
        for (i, m) in self.messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "user" | "assistant") {
                return Err((format!("messages[{i}].role"), "user or assistant".into()));
            }
            pieces(&m.content).map_err(|e| (format!("messages[{i}].content"), e))?;
        }
        if self.variables().len() > MAX_VARIABLES {
            return Err(("messages".into(), format!("at most {MAX_VARIABLES} variables")));
        }
        Ok(())
    }

    /// The variables the messages name, sorted, once each.
    pub fn variables(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .messages
            .iter()
            .filter_map(|m| pieces(&m.content).ok())
            .flatten()
            .filter_map(|p| match p {
                Piece::Var(n) => Some(n.to_string()),
                Piece::Text(_) => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The bytes every request of this version starts with before any
    /// variable: the part a provider can cache.
    pub fn static_prefix_bytes(&self) -> usize {
        let mut n = self.system.as_ref().map_or(0, String::len);
        for m in &self.messages {
            match pieces(&m.content).ok().and_then(|p| p.iter().position(|x| matches!(x, Piece::Var(_))).map(|i| (p, i))) {
                Some((p, i)) => {
                    return n + p.iter().take(i).map(|x| if let Piece::Text(t) = x { t.len() } else { 0 }).sum::<usize>();
                }
                None => n += m.content.len(),
            }
        }
        n
    }
}

/// The content's hash: SHA3-256 of its canonical JSON, hex.
pub fn content_hash(c: &PromptContent) -> String {
    crate::keys::hash_key(&serde_json::to_string(c).unwrap_or_default())
}

/// How a record names a version: `name@version#hash8`.
pub fn version_tag(name: &str, version: u32, hash: &str) -> String {
    format!("{name}@{version}#{}", hash.get(..8).unwrap_or(hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn content(v: serde_json::Value) -> PromptContent {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn templates_variables_and_the_static_prefix() {
        let c = content(json!({"system": "You are support for Acme.", "messages": [{"role": "user", "content": "Customer {{ name }} asks: {{question}}"}]}));
        assert!(c.validate().is_ok());
        assert_eq!(c.variables(), ["name", "question"]);
        assert_eq!(c.static_prefix_bytes(), "You are support for Acme.".len() + "Customer ".len());
        assert_eq!(pieces("a{{x}}b").unwrap(), vec![Piece::Text("a"), Piece::Var("x"), Piece::Text("b")]);
        assert_eq!(content_hash(&c).len(), 64);
        assert_ne!(content_hash(&c), content_hash(&content(json!({"system": "You are support for Acme!", "messages": c.messages}))));
        assert_eq!(version_tag("support", 3, &content_hash(&c)).len(), "support@3#".len() + 8);
        for (bad, field) in [
            (json!({"system": "Today is {{date}}."}), "system"),
            (json!({"messages": [{"role": "user", "content": "{{bad name}}"}]}), "messages[0].content"),
            (json!({"messages": [{"role": "user", "content": "{{open"}]}), "messages[0].content"),
            (json!({"messages": [{"role": "system", "content": "x"}]}), "messages[0].role"),
            (json!({"messages": []}), "messages"),
        ] {
            assert_eq!(content(bad).validate().unwrap_err().0, field);
        }
    }
}
