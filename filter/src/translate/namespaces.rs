//! The Responses API's namespace tools, for a provider without them.
//!
//! A Responses request may group function tools under a namespace
//! (`{"type": "namespace", "name": "crm", "description": …, "tools": [...]}`;
//! Codex offers its sub-agent tools so, as `multi_agent_v1`), and the model's
//! calls then name the function and its `namespace` (openai-python
//! `types/responses/namespace_tool.py`, `response_function_tool_call.py`).
//! Chat completions and Anthropic's Messages API have flat function names
//! only: such a tool is offered as `{namespace}__{name}`, and a call of
//! that name is handed back as the function and its namespace. The names
//! are the request's own (no guess from the name's shape), so the plan
//! carries them to the answer.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::errors::GatewayError;

/// Longest flat name: chat completions' limit (`^[a-zA-Z0-9_-]{1,64}$`),
/// the tighter of the two APIs (Anthropic takes 128).
const MAX_NAME: usize = 64;

/// The flat names a request's namespaced tools were offered under: each
/// flat name's namespace and function (found by hash: a request may offer
/// thousands of functions).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ToolNames(HashMap<String, (String, String)>);

fn refuse(why: String) -> GatewayError {
    GatewayError::bad_request(
        "untranslatable_field",
        format!("'tools' {why}: this request goes to a model served in another format and cannot be translated. See docs/translation.md."),
    )
    .with_param("tools")
}

/// The name a namespaced function is offered under.
pub fn flat(namespace: &str, name: &str) -> String {
    format!("{namespace}__{name}")
}

fn valid(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ToolNames {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The namespace and function a flat name stands for, if it is one of
    /// this request's.
    pub fn split(&self, flat: &str) -> Option<(&str, &str)> {
        self.0.get(flat).map(|(ns, name)| (ns.as_str(), name.as_str()))
    }

    /// A namespace tool's functions as chat function tools (`member` names
    /// each inner tool's members to keep), their flat names recorded.
    /// `taken`: the request's other function names, which a flat name
    /// must not repeat.
    pub fn flatten(&mut self, tool: &Value, taken: &HashSet<&str>, keep: &[&str]) -> Result<Vec<Value>, GatewayError> {
        let Some(ns) = tool.get("name").and_then(Value::as_str).filter(|n| valid(n)) else {
            return Err(refuse("holds a namespace without a name of letters, digits, '_' or '-'".into()));
        };
        let Some(inner) = tool.get("tools").and_then(Value::as_array) else {
            return Err(refuse(format!("holds namespace '{ns}' without a list of tools")));
        };
        let about = tool.get("description").and_then(Value::as_str).filter(|d| !d.is_empty());
        let mut out = Vec::with_capacity(inner.len());
        for t in inner {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(refuse(format!("holds namespace '{ns}' with a tool other than a function (custom tools are OpenAI's)")));
            }
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                return Err(refuse(format!("holds namespace '{ns}' with a function without a name")));
            };
            let f = flat(ns, name);
            if !valid(&f) {
                return Err(refuse(format!("holds namespace '{ns}' with function '{}', whose flat name would not be 1 to {MAX_NAME} letters, digits, '_' or '-'", crate::text::clean_field(name, 64))));
            }
            if taken.contains(&f.as_str()) || self.split(&f).is_some() {
                return Err(refuse(format!("names '{f}' twice (a namespaced function is offered as namespace__name)")));
            }
            let mut m = Map::new();
            for k in keep {
                if let Some(x) = t.get(*k).filter(|x| !x.is_null()) {
                    m.insert((*k).into(), x.clone());
                }
            }
            m.insert("name".into(), Value::from(f.as_str()));
            let description = match (about, t.get("description").and_then(Value::as_str).filter(|d| !d.is_empty())) {
                (Some(a), Some(d)) => Some(format!("{a}\n\n{d}")),
                (a, d) => a.or(d).map(str::to_string),
            };
            if let Some(d) = description {
                m.insert("description".into(), Value::from(d));
            }
            out.push(Value::Object(m));
            self.0.insert(f, (ns.to_string(), name.to_string()));
        }
        Ok(out)
    }

    /// A function call item as the client's API reports it: a flat name of
    /// this request's becomes the function's, beside its `namespace`.
    pub fn restore(&self, item: &mut Value) {
        let Some(o) = item.as_object_mut() else { return };
        let Some((ns, name)) = o.get("name").and_then(Value::as_str).and_then(|f| self.split(f)) else { return };
        let (ns, name) = (Value::from(ns), Value::from(name));
        o.insert("name".into(), name);
        o.insert("namespace".into(), ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEEP: &[&str] = &["name", "description", "parameters", "strict"];

    #[test]
    fn codexs_sub_agent_tools_are_offered_flat_and_handed_back_under_their_namespace() {
        let ns = json!({"type": "namespace", "name": "multi_agent_v1", "description": "Tools for spawning and managing sub-agents.",
                        "tools": [{"type": "function", "name": "spawn_agent", "description": "Spawn one.", "strict": false, "parameters": {"type": "object"}},
                                  {"type": "function", "name": "close_agent", "parameters": {"type": "object"}, "defer_loading": true}]});
        let mut names = ToolNames::default();
        let tools = names.flatten(&ns, &HashSet::from(["exec_command"]), KEEP).unwrap();
        assert_eq!(tools[0], json!({"name": "multi_agent_v1__spawn_agent", "description": "Tools for spawning and managing sub-agents.\n\nSpawn one.",
                                    "strict": false, "parameters": {"type": "object"}}));
        assert_eq!(tools[1]["name"], "multi_agent_v1__close_agent");
        assert_eq!(tools[1]["description"], "Tools for spawning and managing sub-agents.");
        let mut call = json!({"type": "function_call", "name": "multi_agent_v1__spawn_agent", "call_id": "c", "arguments": "{}"});
        names.restore(&mut call);
        assert_eq!((call["name"].as_str(), call["namespace"].as_str()), (Some("spawn_agent"), Some("multi_agent_v1")));
        // A name the request did not flatten is left as it is, whatever its shape.
        let mut other = json!({"type": "function_call", "name": "mcp__server__tool"});
        names.restore(&mut other);
        assert_eq!(other, json!({"type": "function_call", "name": "mcp__server__tool"}));
    }

    #[test]
    fn a_namespace_that_cannot_be_offered_flat_is_refused_by_name() {
        let refused = |ns: Value, taken: &[&str]| ToolNames::default().flatten(&ns, &taken.iter().copied().collect(), KEEP).unwrap_err();
        let f = |name: &str| json!({"type": "function", "name": name});
        for ns in [
            json!({"type": "namespace", "tools": [f("a")]}),
            json!({"type": "namespace", "name": "a.b", "tools": [f("a")]}),
            json!({"type": "namespace", "name": "crm"}),
            json!({"type": "namespace", "name": "crm", "tools": [{"type": "custom", "name": "patch"}]}),
            json!({"type": "namespace", "name": "crm", "tools": [{"type": "function"}]}),
            json!({"type": "namespace", "name": "crm", "tools": [f(&"x".repeat(60))]}),
            json!({"type": "namespace", "name": "crm", "tools": [f("a b")]}),
            json!({"type": "namespace", "name": "crm", "tools": [f("a"), f("a")]}),
        ] {
            let e = refused(ns.clone(), &[]);
            assert_eq!((e.code, e.param), ("untranslatable_field", Some("tools")), "{ns}");
        }
        // a top-level function already named so
        assert_eq!(refused(json!({"type": "namespace", "name": "crm", "tools": [f("find")]}), &["crm__find"]).code, "untranslatable_field");
    }
}
