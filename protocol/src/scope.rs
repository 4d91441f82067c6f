//! Budget scopes: a key, a team or a project, written `"team:search"` on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeType {
    Key,
    Team,
    Project,
}

impl ScopeType {
    /// Every scope type, in declaration order (`scope_type as usize` indexes it).
    pub const ALL: [ScopeType; 3] = [ScopeType::Key, ScopeType::Team, ScopeType::Project];

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeType::Key => "key",
            ScopeType::Team => "team",
            ScopeType::Project => "project",
        }
    }

    pub fn parse(s: &str) -> Option<ScopeType> {
        match s {
            "key" => Some(ScopeType::Key),
            "team" => Some(ScopeType::Team),
            "project" => Some(ScopeType::Project),
            _ => None,
        }
    }
}

/// One budget scope. On the wire (records, headers, logs) it is the label
/// `"<type>:<id>"`; the id may itself contain `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub scope_type: ScopeType,
    pub id: String,
}

impl Scope {
    pub fn new(scope_type: ScopeType, id: &str) -> Scope {
        Scope { scope_type, id: id.to_string() }
    }

    /// Parses `"team:search"`.
    pub fn parse(label: &str) -> Option<Scope> {
        let (t, id) = label.split_once(':')?;
        Some(Scope { scope_type: ScopeType::parse(t)?, id: id.to_string() })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.scope_type.as_str(), self.id)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
        let label = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Scope::parse(&label).ok_or_else(|| serde::de::Error::custom(format!("budget scope: expected \"key|team|project:<id>\", found {label:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order() {
        for (i, st) in ScopeType::ALL.into_iter().enumerate() {
            assert_eq!(st as usize, i, "{st:?}");
        }
    }

    #[test]
    fn a_scope_is_its_label_on_the_wire() {
        let s = Scope::new(ScopeType::Team, "a:b");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"team:a:b\"");
        assert_eq!(serde_json::from_str::<Scope>("\"team:a:b\"").unwrap(), s);
        assert!(serde_json::from_str::<Scope>("\"nope:x\"").unwrap_err().to_string().contains("budget scope"));
        assert_eq!(Scope::parse("project:p"), Some(Scope::new(ScopeType::Project, "p")));
        assert_eq!(Scope::parse("team"), None);
    }
}
