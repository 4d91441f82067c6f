//! What the filter leaves in Envoy's filter state for access logs
//! (`%FILTER_STATE(wasm.tollgate.<field>:PLAIN)%`). Each field is one host
//! call per request, so the configuration (`access_log_fields`) names the
//! ones the access-log format reads; the default is every field.

use std::borrow::Cow;

use serde::Deserialize;

use crate::record::UsageRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The whole usage record as JSON.
    Usage,
    BudgetDecision,
    Team,
    Project,
    KeyId,
    Model,
    Provider,
    CostMicros,
    InputTokens,
    OutputTokens,
    Outcome,
}

impl Field {
    pub const ALL: [Field; 11] = [
        Field::Usage,
        Field::BudgetDecision,
        Field::Team,
        Field::Project,
        Field::KeyId,
        Field::Model,
        Field::Provider,
        Field::CostMicros,
        Field::InputTokens,
        Field::OutputTokens,
        Field::Outcome,
    ];

    /// The property name (Envoy prefixes `wasm.`).
    pub fn property(self) -> &'static str {
        match self {
            Field::Usage => "tollgate.usage",
            Field::BudgetDecision => "tollgate.budget_decision",
            Field::Team => "tollgate.team",
            Field::Project => "tollgate.project",
            Field::KeyId => "tollgate.key_id",
            Field::Model => "tollgate.model",
            Field::Provider => "tollgate.provider",
            Field::CostMicros => "tollgate.cost_micros",
            Field::InputTokens => "tollgate.input_tokens",
            Field::OutputTokens => "tollgate.output_tokens",
            Field::Outcome => "tollgate.outcome",
        }
    }

    /// The value for `rec`, whose JSON form is `json`.
    pub fn value<'a>(self, rec: &'a UsageRecord, json: &'a str) -> Cow<'a, str> {
        match self {
            Field::Usage => Cow::Borrowed(json),
            Field::BudgetDecision => Cow::Borrowed(rec.budget_decision.as_str()),
            Field::Team => Cow::Borrowed(&rec.team),
            Field::Project => Cow::Borrowed(&rec.project),
            Field::KeyId => Cow::Borrowed(&rec.key_id),
            Field::Model => Cow::Borrowed(rec.model_upstream.as_deref().unwrap_or_default()),
            Field::Provider => Cow::Borrowed(rec.provider.as_deref().unwrap_or_default()),
            Field::CostMicros => Cow::Owned(rec.cost_micros.to_string()),
            Field::InputTokens => Cow::Owned(rec.usage.input_tokens.to_string()),
            Field::OutputTokens => Cow::Owned(rec.usage.output_tokens.to_string()),
            Field::Outcome => Cow::Borrowed(rec.outcome.as_str()),
        }
    }
}

/// The configured list, each field once, in the given order; every field
/// when the configuration names none.
pub fn fields(configured: Option<Vec<Field>>) -> Vec<Field> {
    let Some(list) = configured else { return Field::ALL.to_vec() };
    let mut out: Vec<Field> = Vec::with_capacity(list.len());
    for f in list {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_every_field_and_a_list_is_deduplicated() {
        assert_eq!(fields(None), Field::ALL.to_vec());
        assert_eq!(fields(Some(vec![Field::Team, Field::CostMicros, Field::Team])), vec![Field::Team, Field::CostMicros]);
        assert!(fields(Some(vec![])).is_empty());
        let names: Vec<&str> = Field::ALL.iter().map(|f| f.property()).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names.len(), unique.len());
        assert!(names.iter().all(|n| n.starts_with("tollgate.")));
    }

    #[test]
    fn names_in_the_configuration_are_the_property_suffixes() {
        for f in Field::ALL {
            let json = format!("\"{}\"", f.property().trim_start_matches("tollgate."));
            assert_eq!(serde_json::from_str::<Field>(&json).unwrap(), f);
        }
        assert!(serde_json::from_str::<Field>("\"cost\"").is_err());
    }
}
