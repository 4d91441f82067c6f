//! An Anthropic messages stream rewritten, event by event, as the OpenAI
//! chat completion chunks an OpenAI SDK expects (see [`super::to_anthropic`]).
//!
//! | Anthropic event | OpenAI chunk |
//! |---|---|
//! | `message_start` | `delta: {role: "assistant", content: ""}` |
//! | `content_block_start` (`tool_use`) | `delta.tool_calls[{index, id, type, function: {name, arguments: ""}}]` |
//! | `content_block_delta` `text_delta` | `delta.content` |
//! | `content_block_delta` `input_json_delta` | `delta.tool_calls[{index, function.arguments}]` |
//! | `message_delta` (`stop_reason`) | `delta: {}`, `finish_reason` |
//! | `message_stop` | the usage chunk (`choices: []`) when the client asked for `include_usage`, then `data: [DONE]` |
//! | `error` | `data: {"error": {…}}` |
//! | `ping`, thinking and signature deltas, block stops | nothing |

use std::collections::HashMap;

use serde_json::{json, Value};

use super::to_anthropic::{finish_reason, usage_json};
use super::{data, ChatChunks};

#[derive(Debug)]
pub struct AnthropicToOpenAi {
    out: ChatChunks,
    /// Anthropic content block index -> OpenAI tool call index.
    tools: HashMap<u64, u64>,
    usage: serde_json::Map<String, Value>,
    finish: Option<&'static str>,
}

impl super::StreamTranslator for AnthropicToOpenAi {
    fn event(&mut self, name: Option<&str>, payload: &str) -> Vec<u8> {
        self.on_event(name, payload)
    }
}

impl AnthropicToOpenAi {
    pub fn new(created_s: u64, include_usage: bool) -> Self {
        AnthropicToOpenAi {
            out: ChatChunks::new(created_s, include_usage),
            tools: HashMap::new(),
            usage: serde_json::Map::new(),
            finish: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Vec<u8> {
        self.out.chunk(delta, finish)
    }

    fn merge_usage(&mut self, u: Option<&Value>) {
        for (k, v) in u.and_then(Value::as_object).into_iter().flatten() {
            if v.is_u64() {
                self.usage.insert(k.clone(), v.clone());
            }
        }
    }

    /// The OpenAI bytes for one Anthropic event (`name` from its `event:` line).
    pub fn on_event(&mut self, name: Option<&str>, payload: &str) -> Vec<u8> {
        let Ok(ev) = serde_json::from_str::<Value>(payload) else { return Vec::new() };
        let kind = ev.get("type").and_then(Value::as_str).or(name).unwrap_or("");
        match kind {
            "message_start" => {
                let m = ev.get("message").unwrap_or(&Value::Null);
                self.out.id = crate::text::clean_field(m.get("id").and_then(Value::as_str).unwrap_or(""), 128);
                self.out.model = m.get("model").cloned().unwrap_or(Value::Null);
                self.merge_usage(m.get("usage"));
                self.chunk(json!({"role": "assistant", "content": ""}), None)
            }
            "content_block_start" => {
                let block = ev.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                    return Vec::new();
                }
                let k = self.tools.len() as u64;
                self.tools.insert(ev.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX), k);
                self.chunk(
                    json!({"tool_calls": [{"index": k, "id": block.get("id"), "type": "function",
                                           "function": {"name": block.get("name"), "arguments": ""}}]}),
                    None,
                )
            }
            "content_block_delta" => {
                let d = ev.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => self.chunk(json!({"content": d.get("text")}), None),
                    Some("input_json_delta") => {
                        let idx = ev.get("index").and_then(Value::as_u64).and_then(|i| self.tools.get(&i).copied()).unwrap_or(0);
                        self.chunk(json!({"tool_calls": [{"index": idx, "function": {"arguments": d.get("partial_json")}}]}), None)
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                self.merge_usage(ev.get("usage"));
                let f = finish_reason(ev.pointer("/delta/stop_reason").and_then(Value::as_str));
                self.finish = Some(f);
                self.chunk(json!({}), Some(f))
            }
            "message_stop" => {
                let mut out = self.out.usage(usage_json(&Value::Object(self.usage.clone())));
                out.extend_from_slice(b"data: [DONE]\n\n");
                out
            }
            "error" => {
                let e = ev.get("error").unwrap_or(&Value::Null);
                data(&json!({"error": {"message": e.get("message"), "type": e.get("type"), "param": null, "code": null}}))
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stream: &[u8], include_usage: bool) -> Vec<Value> {
        let mut t = AnthropicToOpenAi::new(7, include_usage);
        crate::translate::chat_chunks(crate::translate::run_stream(&mut t, stream, stream.len()))
    }

    #[test]
    fn a_real_tool_use_stream_becomes_openai_chunks() {
        // Anthropic's documented tool-use stream (tests/captures/README.md).
        let chunks = run(include_bytes!("../../../tests/captures/anthropic_stream_tool_use.sse"), true);
        assert_eq!(chunks.last().unwrap(), "[DONE]");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let args: String = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str))
            .collect();
        let parsed: Value = serde_json::from_str(&args).unwrap();
        assert!(parsed.is_object(), "the argument fragments make one JSON object: {args}");
        assert!(chunks.iter().any(|c| c.pointer("/choices/0/delta/tool_calls/0/id").is_some()));
        let finish: Vec<&Value> = chunks.iter().filter_map(|c| c.pointer("/choices/0/finish_reason")).filter(|f| !f.is_null()).collect();
        assert_eq!(finish, vec![&Value::from("tool_calls")]);
        let usage = &chunks[chunks.len() - 2];
        assert_eq!(usage["choices"], json!([]));
        assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert!(chunks.iter().all(|c| c == "[DONE]" || c.get("object") == Some(&Value::from("chat.completion.chunk"))));
    }

    #[test]
    fn without_include_usage_there_is_no_usage_chunk_and_errors_pass_as_openai_errors() {
        let chunks = run(include_bytes!("../../../tests/captures/anthropic_stream_overloaded.sse"), false);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        assert!(chunks.iter().any(|c| c.pointer("/error/type") == Some(&Value::from("overloaded_error"))));
    }
}
