//! Requests that name a registered prompt instead of carrying it:
//!
//! ```json
//! {"model": "cheap", "tollgate_prompt": {"name": "support", "label": "production",
//!   "variables": {"customer": "Ann"}}, "messages": [{"role": "user", "content": "…"}]}
//! ```
//!
//! The filter renders the version the label points at (or the `version`
//! named) from the registry the control service syncs to every Envoy: its
//! system prompt first (OpenAI: a system message; Anthropic: `system`),
//! then its messages with the variables filled in, then the request's own
//! messages; `tollgate_prompt` never goes upstream. The same reference and
//! variables give the same bytes, and the system prompt has no variables,
//! so the prefix a provider caches stays the same across requests. The
//! record names the version as `name@version#hash8`.

use std::collections::{BTreeMap, HashMap};

use tollgate_protocol::prompts::{pieces, version_tag, Piece, PromptContent, PromptsDoc, DEFAULT_LABEL};
use tollgate_protocol::Api;

use crate::errors::GatewayError;
use crate::request::Members;

/// The member a request names a prompt with.
pub const MEMBER: &str = "tollgate_prompt";

/// The registry as a worker holds it: prompt -> (labels, versions), each
/// version's templates split once, when the registry arrives.
#[derive(Debug, Default)]
pub struct Registry {
    pub seq: u64,
    prompts: HashMap<String, Prompt>,
}

#[derive(Debug)]
struct Prompt {
    labels: BTreeMap<String, u32>,
    versions: HashMap<u32, Compiled>,
}

/// A template piece, text already JSON-escaped (without quotes).
#[derive(Debug)]
enum Part {
    Text(String),
    Var(String),
}

#[derive(Debug)]
struct Compiled {
    tag: String,
    /// The system prompt as a JSON string (quotes included), and as an
    /// OpenAI system message.
    system: Option<String>,
    system_message: Option<String>,
    /// (role as a JSON string, parts) per message.
    messages: Vec<(String, Vec<Part>)>,
    variables: Vec<String>,
}

/// `s` as JSON string text without its quotes.
fn escaped(s: &str) -> String {
    let q = json(s);
    q.get(1..q.len().saturating_sub(1)).unwrap_or_default().to_string()
}

fn compile(name: &str, version: u32, hash: &str, c: &PromptContent) -> Compiled {
    let messages = c
        .messages
        .iter()
        .map(|m| {
            let parts = pieces(&m.content)
                .unwrap_or_default()
                .into_iter()
                .map(|p| match p {
                    Piece::Text(t) => Part::Text(escaped(t)),
                    Piece::Var(v) => Part::Var(v.to_string()),
                })
                .collect();
            (json(&m.role), parts)
        })
        .collect();
    let system = c.system.as_deref().map(json);
    let system_message = system.as_ref().map(|s| format!("{{\"role\":\"system\",\"content\":{s}}}"));
    Compiled { tag: version_tag(name, version, hash), system, system_message, messages, variables: c.variables() }
}

impl Registry {
    pub fn from_doc(doc: PromptsDoc) -> Registry {
        let prompts = doc
            .prompts
            .into_iter()
            .map(|p| {
                let versions = p.versions.iter().map(|v| (v.version, compile(&p.name, v.version, &v.hash, &v.content))).collect();
                (p.name, Prompt { labels: p.labels, versions })
            })
            .collect();
        Registry { seq: doc.seq, prompts }
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

/// A rendered request: the body to plan and send, and the version's tag.
#[derive(Debug)]
pub struct Rendered {
    pub body: Vec<u8>,
    pub tag: String,
}

/// Whether `body` may name a prompt (a quick look before any parsing).
pub fn mentions_prompt(body: &[u8]) -> bool {
    let needle = b"\"tollgate_prompt\"";
    body.iter().enumerate().any(|(i, &b)| b == b'"' && body.get(i..i + needle.len()) == Some(needle.as_slice()))
}

fn bad(code: &'static str, msg: String) -> GatewayError {
    GatewayError::bad_request(code, msg).with_param(MEMBER)
}

/// Borrowed from the request body where no escape forces a copy.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Reference<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    label: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    version: Option<u32>,
    /// Raw JSON values: a string's text goes into the prompt as it is
    /// (already JSON-escaped), never decoded and encoded again.
    #[serde(default, borrow)]
    variables: BTreeMap<std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue>,
}

fn shown(s: &str) -> String {
    crate::text::clean_field(s, 64)
}

/// Renders the prompt a request names. `Ok(None)`: it names none.
/// `registry` is `None` when this Envoy has never loaded one.
pub fn render(api: Api, body: &[u8], registry: Option<&Registry>) -> Result<Option<Rendered>, GatewayError> {
    if !mentions_prompt(body) {
        return Ok(None);
    }
    let Ok(members) = serde_json::from_slice::<Members>(body) else {
        return Ok(None); // not an object: the request parser says what is wrong
    };
    let pairs: Vec<(&str, &str)> = members.pairs().collect();
    render_members(api, &pairs, registry)
}

/// [`render`] over the top-level members the request parser found (name,
/// raw JSON value), so a named prompt costs no second parse of the body.
pub fn render_members(api: Api, members: &[(&str, &str)], registry: Option<&Registry>) -> Result<Option<Rendered>, GatewayError> {
    let mut named = members.iter().filter(|(k, _)| *k == MEMBER).map(|(_, v)| *v);
    let Some(reference) = named.next() else { return Ok(None) };
    if named.next().is_some() {
        return Err(bad("duplicate_key", format!("The request body has the member '{MEMBER}' more than once.")));
    }
    if !matches!(api, Api::OpenAiChat | Api::AnthropicMessages) {
        return Err(bad("prompt_not_supported", format!("'{MEMBER}' works with chat completions and messages requests.")));
    }
    let r: Reference = serde_json::from_str(reference)
        .map_err(|e| bad("invalid_prompt_reference", format!("'{MEMBER}' must be {{\"name\", optional \"label\" or \"version\", \"variables\"}}: {}", shown(&e.to_string()))))?;
    let v = version(&r, registry)?;
    let values = values(&r)?;
    let anthropic_system = v.system.as_ref().filter(|_| api == Api::AnthropicMessages);
    if anthropic_system.is_some() && members.iter().any(|(k, _)| *k == "system") {
        return Err(bad("prompt_conflict", format!("Prompt '{}' sets the system prompt; leave 'system' out of the request.", v.tag)));
    }
    let prefix = Prefix { version: v, api, values: &values };
    let body_len: usize = members.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = crate::splice::Object::with_capacity(body_len + prefix.len() + 256);
    let mut saw_messages = false;
    for &(k, raw) in members {
        match k {
            MEMBER => {}
            "messages" => {
                saw_messages = true;
                // Spliced in front of the request's own, without parsing them.
                let text = raw.trim();
                let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
                    return Err(GatewayError::bad_request("invalid_type", "'messages' must be an array.").with_param("messages"));
                };
                let sep = if inner.trim().is_empty() || prefix.is_empty() { "" } else { "," };
                out.member(k, b"[");
                let buf = out.buffer();
                prefix.write(buf);
                buf.extend_from_slice(sep.as_bytes());
                buf.extend_from_slice(inner.as_bytes());
                buf.push(b']');
            }
            _ => out.member(k, raw.as_bytes()),
        }
    }
    if !saw_messages {
        out.member("messages", b"[");
        prefix.write(out.buffer());
        out.buffer().push(b']');
    }
    if let Some(sys) = anthropic_system {
        out.member("system", sys.as_bytes());
    }
    Ok(Some(Rendered { body: out.close(), tag: v.tag.clone() }))
}

/// The version a reference names (by number, by label, or the default
/// label's); the variables given must be exactly the version's.
fn version<'r>(r: &Reference<'_>, registry: Option<&'r Registry>) -> Result<&'r Compiled, GatewayError> {
    if r.label.is_some() && r.version.is_some() {
        return Err(bad("invalid_prompt_reference", format!("'{MEMBER}' names a label or a version, not both.")));
    }
    let Some(registry) = registry else {
        return Err(GatewayError::unavailable(
            "prompt_registry_unavailable",
            "This gateway has not loaded the prompt registry from the control service yet; retry shortly.",
        ));
    };
    let prompt = registry.prompts.get(r.name.as_ref()).ok_or_else(|| bad("prompt_not_found", format!("No prompt '{}' in the registry.", shown(&r.name))))?;
    let version = match (r.version, r.label.as_deref()) {
        (Some(v), _) => v,
        (None, label) => {
            let label = label.unwrap_or(DEFAULT_LABEL);
            *prompt.labels.get(label).ok_or_else(|| bad("prompt_label_not_found", format!("Prompt '{}' has no label '{}'.", shown(&r.name), shown(label))))?
        }
    };
    let v = prompt.versions.get(&version).ok_or_else(|| bad("prompt_version_not_found", format!("Prompt '{}' has no version {version}.", shown(&r.name))))?;
    if let Some(missing) = v.variables.iter().find(|x| !r.variables.contains_key(x.as_str())) {
        return Err(bad("prompt_variable_missing", format!("Prompt '{}' needs the variable '{missing}'.", v.tag)));
    }
    if let Some(extra) = r.variables.keys().find(|k| !v.variables.iter().any(|x| x == k.as_ref())) {
        return Err(bad("prompt_variable_unknown", format!("Prompt '{}' has no variable '{}'.", v.tag, shown(extra))));
    }
    Ok(v)
}

/// Each variable's JSON string text without its quotes (checked to be a string).
fn values<'r>(r: &'r Reference<'_>) -> Result<Vec<(&'r str, &'r str)>, GatewayError> {
    let mut values = Vec::with_capacity(r.variables.len());
    for (k, x) in &r.variables {
        let text = x.get();
        if !text.starts_with('"') || serde_json::from_str::<std::borrow::Cow<'_, str>>(text).is_err() {
            return Err(bad("invalid_prompt_variable", format!("The variable '{}' must be a string.", shown(k))));
        }
        values.push((k.as_ref(), text.get(1..text.len() - 1).unwrap_or_default()));
    }
    Ok(values)
}

/// The prompt's messages as JSON text, written where they go (OpenAI's
/// system message first).
struct Prefix<'a> {
    version: &'a Compiled,
    api: Api,
    values: &'a [(&'a str, &'a str)],
}

impl Prefix<'_> {
    fn system_message(&self) -> Option<&String> {
        self.version.system_message.as_ref().filter(|_| self.api == Api::OpenAiChat)
    }

    fn is_empty(&self) -> bool {
        self.version.messages.is_empty() && self.system_message().is_none()
    }

    /// Room to reserve for it.
    fn len(&self) -> usize {
        self.version.system_message.as_ref().map_or(0, String::len) + self.version.messages.iter().map(|(_, p)| p.len() * 16 + 64).sum::<usize>()
    }

    fn write(&self, out: &mut Vec<u8>) {
        let value_of = |n: &str| self.values.iter().find(|(k, _)| *k == n).map_or("", |(_, v)| *v);
        let mut first = true;
        if let Some(sys) = self.system_message() {
            out.extend_from_slice(sys.as_bytes());
            first = false;
        }
        for (role, parts) in &self.version.messages {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"{\"role\":");
            out.extend_from_slice(role.as_bytes());
            out.extend_from_slice(b",\"content\":\"");
            for p in parts {
                out.extend_from_slice(match p {
                    Part::Text(t) => t.as_bytes(),
                    Part::Var(n) => value_of(n).as_bytes(),
                });
            }
            out.extend_from_slice(b"\"}");
        }
    }
}

/// JSON text of a string or values (never fails for these types).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn registry() -> Registry {
        let doc: PromptsDoc = serde_json::from_value(json!({"seq": 4, "prompts": [{"name": "support", "labels": {"production": 1, "staging": 2},
            "versions": [
                {"version": 1, "hash": "aaaaaaaabbbb", "system": "You are Acme support.", "messages": [{"role": "user", "content": "Customer {{name}}:"}]},
                {"version": 2, "hash": "ccccccccdddd", "system": "You are Acme support. Be brief.", "messages": [{"role": "user", "content": "Customer {{name}} ({{tier}}):"}]}
            ]}]}))
        .unwrap();
        Registry::from_doc(doc)
    }

    fn render_json(api: Api, v: Value) -> Result<(Value, String), GatewayError> {
        let r = render(api, &serde_json::to_vec(&v).unwrap(), Some(&registry()))?.unwrap();
        Ok((serde_json::from_slice(&r.body).unwrap(), r.tag))
    }

    #[test]
    fn a_label_renders_its_version_in_either_api() {
        let req = json!({"model": "m", "tollgate_prompt": {"name": "support", "variables": {"name": "Ann"}}, "messages": [{"role": "user", "content": "Where is my order?"}], "stream": true});
        let (body, tag) = render_json(Api::OpenAiChat, req.clone()).unwrap();
        assert_eq!(tag, "support@1#aaaaaaaa");
        assert_eq!(body["messages"], json!([{"role": "system", "content": "You are Acme support."}, {"role": "user", "content": "Customer Ann:"},
                                             {"role": "user", "content": "Where is my order?"}]));
        assert!(body.get("tollgate_prompt").is_none() && body["stream"] == true && body["model"] == "m");
        let (body, _) = render_json(Api::AnthropicMessages, req.clone()).unwrap();
        assert_eq!(body["system"], "You are Acme support.");
        assert_eq!(body["messages"][0], json!({"role": "user", "content": "Customer Ann:"}));
        // deterministic: the same request, the same bytes
        let b = serde_json::to_vec(&req).unwrap();
        assert_eq!(render(Api::OpenAiChat, &b, Some(&registry())).unwrap().unwrap().body, render(Api::OpenAiChat, &b, Some(&registry())).unwrap().unwrap().body);
        let (body, tag) = render_json(Api::OpenAiChat, json!({"model": "m", "tollgate_prompt": {"name": "support", "label": "staging", "variables": {"name": "Bo", "tier": "gold"}}})).unwrap();
        assert_eq!((tag.as_str(), &body["messages"][1]["content"]), ("support@2#cccccccc", &json!("Customer Bo (gold):")));
        // no mention, no change
        assert!(render(Api::OpenAiChat, br#"{"model":"m","messages":[]}"#, None).unwrap().is_none());
    }

    #[test]
    fn every_mistake_is_a_clear_400() {
        for (reference, code) in [
            (json!({"name": "nope"}), "prompt_not_found"),
            (json!({"name": "support", "label": "canary", "variables": {"name": "x"}}), "prompt_label_not_found"),
            (json!({"name": "support", "version": 9}), "prompt_version_not_found"),
            (json!({"name": "support"}), "prompt_variable_missing"),
            (json!({"name": "support", "variables": {"name": "x", "age": "3"}}), "prompt_variable_unknown"),
            (json!({"name": "support", "variables": {"name": 3}}), "invalid_prompt_variable"),
            (json!({"name": "support", "label": "production", "version": 1}), "invalid_prompt_reference"),
            (json!({"name": "support", "colour": "red"}), "invalid_prompt_reference"),
            (json!("support"), "invalid_prompt_reference"),
        ] {
            let e = render_json(Api::OpenAiChat, json!({"model": "m", "tollgate_prompt": reference, "messages": []})).unwrap_err();
            assert_eq!(e.code, code, "{reference}");
            assert_eq!(e.status, 400);
        }
        let e = render_json(Api::AnthropicMessages, json!({"model": "m", "system": "mine", "tollgate_prompt": {"name": "support", "variables": {"name": "x"}}, "messages": []})).unwrap_err();
        assert_eq!(e.code, "prompt_conflict");
        let b = serde_json::to_vec(&json!({"model": "m", "tollgate_prompt": {"name": "support"}, "input": "x"})).unwrap();
        assert_eq!(render(Api::OpenAiEmbeddings, &b, Some(&registry())).unwrap_err().code, "prompt_not_supported");
        let b = serde_json::to_vec(&json!({"model": "m", "tollgate_prompt": {"name": "support"}, "messages": []})).unwrap();
        assert_eq!(render(Api::OpenAiChat, &b, None).unwrap_err().status, 503, "never loaded: retry, not a client mistake");
        let twice = br#"{"model":"m","tollgate_prompt":{"name":"support","variables":{"name":"a"}},"messages":[],"tollgate_prompt":{"name":"nope"}}"#;
        assert_eq!(render(Api::OpenAiChat, twice, Some(&registry())).unwrap_err().code, "duplicate_key");
        let not_array = br#"{"model":"m","tollgate_prompt":{"name":"support","variables":{"name":"a"}},"messages":"hi"}"#;
        assert_eq!(render(Api::OpenAiChat, not_array, Some(&registry())).unwrap_err().code, "invalid_type");
    }
}
