//! An OpenAI chat completion stream rewritten as the Anthropic events an
//! Anthropic SDK expects (see [`super::to_openai`]).
//!
//! | OpenAI chunk | Anthropic events |
//! |---|---|
//! | the first chunk | `message_start` (usage 0 so far) |
//! | `delta.reasoning_content` (DeepSeek) | `content_block_start` (thinking, empty signature) once, then `content_block_delta` `thinking_delta` |
//! | `delta.content` | `content_block_start` (text) once, then `content_block_delta` `text_delta` |
//! | `delta.tool_calls[i]` with an id | `content_block_stop` for the open block, `content_block_start` (`tool_use`) |
//! | `delta.tool_calls[i].function.arguments` | `content_block_delta` `input_json_delta` |
//! | `finish_reason` | remembered as `stop_reason` |
//! | the usage chunk (asked for by the gateway) | remembered |
//! | `data: [DONE]` | `content_block_stop`, `message_delta` (stop reason, usage), `message_stop` |
//! | `{"error": …}` | `event: error` |

use serde_json::{json, Value};

use super::to_openai::{stop_reason, usage_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    Tool,
}

#[derive(Debug, Default)]
pub struct OpenAiToAnthropic {
    started: bool,
    /// Index of the open content block, and which kind it is.
    open: Option<(u64, Block)>,
    next_index: u64,
    /// OpenAI tool call index -> Anthropic block index.
    tools: Vec<(u64, u64)>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
}

fn event(name: &str, v: &Value) -> Vec<u8> {
    crate::sse::event_bytes(Some(name), &v.to_string())
}

impl OpenAiToAnthropic {
    pub fn new() -> Self {
        Self::default()
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((i, _)) = self.open.take() {
            out.extend(event("content_block_stop", &json!({"type": "content_block_stop", "index": i})));
        }
    }

    /// The index of the open block of `kind`, opening one (`start`) after
    /// closing any other.
    fn block(&mut self, out: &mut Vec<u8>, kind: Block, start: Value) -> u64 {
        match self.open {
            Some((i, k)) if k == kind => i,
            _ => {
                self.close(out);
                let i = self.next_index;
                self.next_index += 1;
                self.open = Some((i, kind));
                out.extend(event("content_block_start", &json!({"type": "content_block_start", "index": i, "content_block": start})));
                i
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        self.close(out);
        let usage = usage_of(self.usage.as_ref().unwrap_or(&Value::Null));
        out.extend(event("message_delta", &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null}, "usage": usage})));
        out.extend(event("message_stop", &json!({"type": "message_stop"})));
    }
}

impl super::StreamTranslator for OpenAiToAnthropic {
    fn event(&mut self, _name: Option<&str>, data: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if data.trim() == "[DONE]" {
            self.finish(&mut out);
            return out;
        }
        let Ok(c) = serde_json::from_str::<Value>(data) else { return out };
        if let Some(e) = c.get("error").filter(|e| !e.is_null()) {
            out.extend(event("error", &json!({"type": "error", "error": {"type": "api_error", "message": e.get("message")}})));
            return out;
        }
        if !self.started {
            self.started = true;
            out.extend(event("message_start", &json!({"type": "message_start", "message": {
                "id": format!("msg_{}", crate::text::clean_field(c.get("id").and_then(Value::as_str).unwrap_or(""), 128)),
                "type": "message", "role": "assistant", "model": c.get("model"), "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}}})));
        }
        if let Some(u) = c.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let choice = c.pointer("/choices/0").unwrap_or(&Value::Null);
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(r) = delta.get("reasoning_content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let index = self.block(&mut out, Block::Thinking, json!({"type": "thinking", "thinking": "", "signature": ""}));
            out.extend(event("content_block_delta", &json!({"type": "content_block_delta", "index": index,
                                                            "delta": {"type": "thinking_delta", "thinking": r}})));
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let index = self.block(&mut out, Block::Text, json!({"type": "text", "text": ""}));
            out.extend(event("content_block_delta", &json!({"type": "content_block_delta", "index": index,
                                                            "delta": {"type": "text_delta", "text": text}})));
        }
        for tc in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let k = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
            let known = self.tools.iter().find(|(t, _)| *t == k).map(|(_, b)| *b);
            let block = match known {
                Some(b) => b,
                None => {
                    self.close(&mut out);
                    let b = self.next_index;
                    self.next_index += 1;
                    self.tools.push((k, b));
                    self.open = Some((b, Block::Tool));
                    out.extend(event("content_block_start", &json!({"type": "content_block_start", "index": b,
                        "content_block": {"type": "tool_use", "id": tc.get("id"), "name": tc.pointer("/function/name"), "input": {}}})));
                    b
                }
            };
            if let Some(args) = tc.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                out.extend(event("content_block_delta", &json!({"type": "content_block_delta", "index": block,
                                                                "delta": {"type": "input_json_delta", "partial_json": args}})));
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::StreamTranslator;
    use super::*;

    fn events(chunks: &[&str]) -> Vec<(String, Value)> {
        let mut t = OpenAiToAnthropic::new();
        let out: Vec<u8> = chunks.iter().flat_map(|c| t.event(None, c)).collect();
        String::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|b| {
                let (name, data) = b.split_once('\n').unwrap();
                (name.trim_start_matches("event: ").to_string(), serde_json::from_str(data.trim_start_matches("data: ")).unwrap())
            })
            .collect()
    }

    #[test]
    fn deepseeks_reasoning_comes_first_as_a_thinking_block() {
        let ev = events(&[
            r#"{"id":"c1","model":"deepseek-v4","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"The user "}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"wants a file."}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Reading."}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ]);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                               "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(ev[1].1["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
        let thought: String = ev.iter().filter_map(|(_, v)| v.pointer("/delta/thinking").and_then(Value::as_str)).collect();
        assert_eq!(thought, "The user wants a file.");
        assert_eq!((ev[5].1["index"].as_u64(), ev[6].1["delta"]["text"].as_str()), (Some(1), Some("Reading.")));
    }

    #[test]
    fn a_misbehaving_providers_reasoning_makes_valid_events() {
        // reasoning that is no string is ignored; control characters stay escaped;
        // reasoning after the text opens a thinking block of its own.
        let ev = events(&[
            r#"{"id":"c1","model":"deepseek-v4","choices":[{"index":0,"delta":{"reasoning_content":{"a":1}}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"reasoning_content":7,"content":"Hi"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"reasoning_content":"late\u0000\u001b[2J"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ]);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["message_start", "content_block_start", "content_block_delta", "content_block_stop", "content_block_start",
                               "content_block_delta", "content_block_stop", "message_delta", "message_stop"]);
        assert_eq!((ev[1].1["content_block"]["type"].as_str(), ev[4].1["content_block"]["type"].as_str()), (Some("text"), Some("thinking")));
        assert_eq!(ev[5].1["delta"]["thinking"], "late\u{0}\u{1b}[2J", "a JSON string again, escaped on the wire");
    }

    #[test]
    fn text_then_a_tool_call_then_usage() {
        let ev = events(&[
            r#"{"id":"c1","model":"gpt-5.4","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Let me "}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"check."}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":9}}"#,
            "[DONE]",
        ]);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                               "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta",
                               "content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(ev[5].1["content_block"], json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}}));
        let json_args: String = ev.iter().filter_map(|(_, v)| v.pointer("/delta/partial_json").and_then(Value::as_str)).collect();
        assert_eq!(json_args, r#"{"a":1}"#);
        assert_eq!(ev[9].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[9].1["usage"]["output_tokens"], 9);
        assert_eq!(ev[9].1["usage"]["input_tokens"], 20);
    }
}
