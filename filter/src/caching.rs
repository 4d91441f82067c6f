//! Anthropic prompt caching without code changes (opt-in per route,
//! `auto_cache`): Anthropic caches only where a request marks
//! `cache_control`, so a client that never marks pays full price for a
//! prefix it sends again and again. The gateway adds the breakpoints the
//! provider documents: after the tools, after the system prompt, and after
//! the last message before the newest turn (the conversation so far), each
//! only where the prefix up to it is long enough to be cached (the
//! provider's minimum, 1,024 tokens for most models; a shorter marked prefix
//! silently caches nothing). At most 3 are added (the API allows 4). A
//! request that already carries any `cache_control` is left exactly as it
//! is: the client manages its own caching.

use serde_json::{Map, Value};

use crate::request::estimate_tokens;

/// The route's opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoCache {
    /// The shortest prefix worth marking, in (estimated) tokens.
    pub min_tokens: u64,
    /// Write to the 1-hour cache (billed 2× input) instead of the
    /// 5-minute one (1.25×).
    pub ttl_1h: bool,
}

/// Content blocks the API lets carry `cache_control`.
const CACHEABLE: &[&str] = &["text", "image", "document", "tool_use", "tool_result", "search_result"];

/// The members to replace: (name, new JSON), and how many breakpoints
/// were added. `None`: nothing to add (too short, client markers, or a
/// shape this does not know; the request then goes as it came).
pub fn plan(tools: Option<&str>, system: Option<&str>, messages: &str, opts: AutoCache) -> Option<(Vec<(&'static str, String)>, u8)> {
    let marked = |raw: Option<&str>| raw.is_some_and(|r| r.contains("\"cache_control\""));
    if marked(tools) || marked(system) || marked(Some(messages)) {
        return None;
    }
    let mut cc = Map::new();
    cc.insert("type".into(), Value::String("ephemeral".into()));
    if opts.ttl_1h {
        cc.insert("ttl".into(), Value::String("1h".into()));
    }
    let cc = Value::Object(cc);
    let long_enough = |bytes: usize| estimate_tokens(bytes as u64) >= opts.min_tokens;
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut prefix = 0usize;

    if let Some(raw) = tools {
        prefix += raw.len();
        if long_enough(prefix) {
            let mut v: Value = serde_json::from_str(raw).ok()?;
            if let Some(last) = v.as_array_mut().and_then(|a| a.last_mut()).and_then(Value::as_object_mut) {
                last.insert("cache_control".into(), cc.clone());
                out.push(("tools", serde_json::to_string(&v).ok()?));
            }
        }
    }
    if let Some(raw) = system {
        prefix += raw.len();
        if long_enough(prefix) {
            let mut v: Value = serde_json::from_str(raw).ok()?;
            if mark_content(&mut v, &cc) {
                out.push(("system", serde_json::to_string(&v).ok()?));
            }
        }
    }
    // The conversation before the newest message.
    let mut msgs: Value = serde_json::from_str(messages).ok()?;
    if let Some(list) = msgs.as_array_mut() {
        if list.len() >= 2 {
            let stable = list.len() - 2;
            prefix += list.iter().take(stable + 1).map(|m| serde_json::to_string(m).map(|s| s.len()).unwrap_or(0)).sum::<usize>();
            if long_enough(prefix) {
                if let Some(content) = list.get_mut(stable).and_then(|m| m.get_mut("content")) {
                    if mark_content(content, &cc) {
                        out.push(("messages", serde_json::to_string(&msgs).ok()?));
                    }
                }
            }
        }
    }
    let added = u8::try_from(out.len()).unwrap_or(u8::MAX);
    (added > 0).then_some((out, added))
}

/// Marks a `system` or message `content` value: a non-empty string becomes
/// one text block carrying the marker; a block list marks its last block
/// when that block may carry one.
fn mark_content(v: &mut Value, cc: &Value) -> bool {
    match v {
        Value::String(s) if !s.is_empty() => {
            let mut block = Map::new();
            block.insert("type".into(), Value::String("text".into()));
            block.insert("text".into(), Value::String(std::mem::take(s)));
            block.insert("cache_control".into(), cc.clone());
            *v = Value::Array(vec![Value::Object(block)]);
            true
        }
        Value::Array(blocks) => match blocks.last_mut().and_then(Value::as_object_mut) {
            Some(b) if b.get("type").and_then(Value::as_str).is_some_and(|t| CACHEABLE.contains(&t)) => {
                b.insert("cache_control".into(), cc.clone());
                true
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIVE_MIN: AutoCache = AutoCache { min_tokens: 1024, ttl_1h: false };

    fn long(n: usize) -> String {
        "lorem ipsum ".repeat(n / 12 + 1)
    }

    fn markers(s: &str) -> usize {
        s.matches("\"cache_control\"").count()
    }

    #[test]
    fn marks_tools_system_and_the_conversation_so_far() {
        let tools = json!([{"name": "a", "input_schema": {"type": "object"}}, {"name": "b", "description": long(5000), "input_schema": {}}]).to_string();
        let system = json!(long(100)).to_string();
        let messages = json!([{"role": "user", "content": "first"}, {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                              {"role": "user", "content": "newest"}]).to_string();
        let (out, n) = plan(Some(&tools), Some(&system), &messages, FIVE_MIN).unwrap();
        assert_eq!(n, 3);
        let get = |name: &str| serde_json::from_str::<Value>(&out.iter().find(|(k, _)| *k == name).unwrap().1).unwrap();
        let t = get("tools");
        assert_eq!(t[1]["cache_control"], json!({"type": "ephemeral"}));
        assert!(t[0].get("cache_control").is_none(), "only the last tool");
        let s = get("system");
        assert_eq!(s, json!([{"type": "text", "text": long(100), "cache_control": {"type": "ephemeral"}}]), "the text is kept whole");
        let m = get("messages");
        assert_eq!(m[1]["content"][0]["cache_control"], json!({"type": "ephemeral"}), "the last message before the newest");
        assert_eq!(m[2]["content"], json!("newest"), "the newest turn is not marked");
        assert!(out.iter().map(|(_, v)| markers(v)).sum::<usize>() <= 4);
    }

    #[test]
    fn short_prefixes_and_client_markers_are_left_alone() {
        let messages = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "q"}]).to_string();
        assert_eq!(plan(None, Some("\"short system\""), &messages, FIVE_MIN), None, "below the minimum: a marker would do nothing");
        let system = json!([{"type": "text", "text": long(8000), "cache_control": {"type": "ephemeral"}}]).to_string();
        assert_eq!(plan(None, Some(&system), &messages, FIVE_MIN), None, "the client manages its caching");
        // the text "cache_control" inside a prompt is not a marker
        let quoted = json!(format!("{} explain \"cache_control\" to me", long(8000))).to_string();
        assert!(plan(None, Some(&quoted), &messages, FIVE_MIN).is_some());
    }

    #[test]
    fn the_one_hour_cache_and_blocks_that_cannot_carry_a_marker() {
        let system = json!(long(8000)).to_string();
        let messages = json!([{"role": "user", "content": "q"}]).to_string();
        let (out, n) = plan(None, Some(&system), &messages, AutoCache { min_tokens: 1024, ttl_1h: true }).unwrap();
        assert_eq!(n, 1, "a single message: nothing stable to mark yet");
        let v: Value = serde_json::from_str(&out[0].1).unwrap();
        assert_eq!(v[0]["cache_control"], json!({"type": "ephemeral", "ttl": "1h"}));
        let thinking = json!([{"type": "thinking", "thinking": long(8000)}]).to_string();
        assert_eq!(plan(None, Some(&thinking), &messages, FIVE_MIN), None);
        assert_eq!(plan(None, Some("{not json"), &messages, FIVE_MIN), None);
    }
}
