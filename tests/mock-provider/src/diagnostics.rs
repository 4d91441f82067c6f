//! Anthropic's cache diagnostics, as the API gives them: a request whose
//! `diagnostics.previous_message_id` names an earlier answer of this client
//! gets, in its answer, `diagnostics.cache_miss_reason`: what differs from
//! that request's prompt (`model_changed` for the model or its speed, then
//! `system_changed`, `tools_changed`, `messages_changed` when an earlier
//! message changed rather than messages being appended), with
//! `cache_missed_input_tokens`, the tokens that would have been read from
//! cache; `previous_message_not_found` for an id it does not know; null when
//! nothing diverged (anthropic-sdk-python 2.17.0 `types/diagnostics.py`,
//! `types/cache_miss_*.py`). A client opts in by sending `diagnostics` on
//! every turn (`previous_message_id: null` on the first: "Pass null on the
//! first turn to opt in"), so the mock keeps the last [`KEPT`] prompts of
//! requests that carried it, and does no work for the others.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

/// Prompts remembered for a later diagnosis.
const KEPT: usize = 256;

/// A prompt, by its parts, as a later request is compared with it.
struct Prompt {
    id: String,
    model: String,
    system: String,
    tools: String,
    messages: Vec<String>,
}

#[derive(Default)]
pub struct Recent(Mutex<VecDeque<Prompt>>);

fn part(req: &Map<String, Value>, name: &str) -> String {
    req.get(name).map(Value::to_string).unwrap_or_default()
}

fn prompt(id: &str, req: &Map<String, Value>) -> Prompt {
    let model = format!("{}\u{1}{}", part(req, "model"), part(req, "speed"));
    let messages = req.get("messages").and_then(Value::as_array).map(|m| m.iter().map(Value::to_string).collect()).unwrap_or_default();
    Prompt { id: id.to_string(), model, system: part(req, "system"), tools: part(req, "tools"), messages }
}

/// Tokens of a prompt's parts, as the mock counts them (1 per 4 bytes).
fn tokens(p: &Prompt) -> u64 {
    let bytes = p.system.len() + p.tools.len() + p.messages.iter().map(String::len).sum::<usize>();
    (bytes as u64).div_ceil(4)
}

impl Recent {
    /// The answer's `diagnostics` for `req`, answered as message `id`
    /// (`None`: the request asked for none). The request is remembered.
    pub fn diagnose(&self, id: &str, req: &Map<String, Value>) -> Option<Value> {
        let asked = req.get("diagnostics").filter(|d| d.is_object())?;
        let now = prompt(id, req);
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let answer = match asked.get("previous_message_id").and_then(Value::as_str) {
            None => Value::Null,
            Some(prev) => match kept.iter().find(|p| p.id == prev) {
                None => json!({"cache_miss_reason": {"type": "previous_message_not_found"}}),
                Some(before) => {
                    let kind = if before.model != now.model {
                        "model_changed"
                    } else if before.system != now.system {
                        "system_changed"
                    } else if before.tools != now.tools {
                        "tools_changed"
                    } else if !now.messages.starts_with(&before.messages) {
                        "messages_changed"
                    } else {
                        ""
                    };
                    match kind {
                        "" => Value::Null,
                        k => json!({"cache_miss_reason": {"type": k, "cache_missed_input_tokens": tokens(before)}}),
                    }
                }
            },
        };
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(now);
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_named_against_the_message_the_client_names() {
        let r = Recent::default();
        let req = |v: Value| v.as_object().unwrap().clone();
        let base = json!({"model": "claude-opus-4-8", "system": "be brief", "messages": [{"role": "user", "content": "a"}]});
        assert_eq!(r.diagnose("m0", &req(base.clone())), None, "not asked: not kept either");
        let mut next = base.clone();
        next["diagnostics"] = json!({"previous_message_id": null});
        assert_eq!(r.diagnose("m1", &req(next.clone())), Some(Value::Null), "opted in, nothing to compare");
        next["diagnostics"] = json!({"previous_message_id": "m0"});
        assert_eq!(r.diagnose("m2", &req(next.clone()))
            .unwrap()["cache_miss_reason"]["type"], "previous_message_not_found", "a request that did not opt in is not kept");
        let mut appended = base.clone();
        appended["messages"].as_array_mut().unwrap().push(json!({"role": "user", "content": "b"}));
        appended["diagnostics"] = json!({"previous_message_id": "m1"});
        assert_eq!(r.diagnose("m3", &req(appended)), Some(Value::Null), "only appended: no miss");
        for (change, kind) in [(json!({"system": "be long"}), "system_changed"), (json!({"model": "claude-sonnet-5-5"}), "model_changed"),
                               (json!({"speed": "fast"}), "model_changed"), (json!({"tools": []}), "tools_changed"),
                               (json!({"messages": [{"role": "user", "content": "z"}]}), "messages_changed")] {
            let mut v = base.clone();
            v.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
            v["diagnostics"] = json!({"previous_message_id": "m1"});
            let d = r.diagnose("mx", &req(v)).unwrap();
            assert_eq!(d["cache_miss_reason"]["type"], kind, "{d}");
            assert!(d["cache_miss_reason"]["cache_missed_input_tokens"].as_u64().unwrap() > 0);
        }
        next["diagnostics"] = json!({"previous_message_id": "msg_unknown"});
        assert_eq!(r.diagnose("m9", &req(next)).unwrap()["cache_miss_reason"]["type"], "previous_message_not_found");
    }
}
