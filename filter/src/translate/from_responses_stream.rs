//! A Responses API stream rewritten, event by event, as the chat
//! completion chunks a chat client expects (see [`super::to_responses`]).
//!
//! | Responses event | chat chunk |
//! |---|---|
//! | `response.created` | `delta: {role: "assistant", content: ""}` |
//! | `response.output_text.delta` | `delta.content` |
//! | `response.refusal.delta` | `delta.refusal` |
//! | `response.output_item.added` (`function_call`) | `delta.tool_calls[{index, id, type, function: {name, arguments: ""}}]` |
//! | `response.function_call_arguments.delta` | `delta.tool_calls[{index, function.arguments}]` |
//! | `response.completed` / `response.incomplete` | `delta: {}` with `finish_reason`, the usage chunk (`choices: []`) when the client asked for `include_usage`, then `data: [DONE]` |
//! | `response.failed`, `error` | `data: {"error": {…}}`, then `data: [DONE]` |
//! | reasoning, item and part bookkeeping, everything else | nothing |

use std::collections::HashMap;

use serde_json::{json, Value};

use super::to_responses::{chat_usage, finish_reason};
use super::{data, ChatChunks};

#[derive(Debug)]
pub struct ResponsesToChat {
    out: ChatChunks,
    /// Responses output index -> chat tool call index.
    tools: HashMap<u64, u64>,
    done: bool,
}

impl super::StreamTranslator for ResponsesToChat {
    fn event(&mut self, name: Option<&str>, payload: &str) -> Vec<u8> {
        self.on_event(name, payload)
    }
}

impl ResponsesToChat {
    pub fn new(created_s: u64, include_usage: bool) -> Self {
        ResponsesToChat { out: ChatChunks::new(created_s, include_usage), tools: HashMap::new(), done: false }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Vec<u8> {
        self.out.chunk(delta, finish)
    }

    fn tool_index(&self, ev: &Value) -> u64 {
        ev.get("output_index").and_then(Value::as_u64).and_then(|i| self.tools.get(&i).copied()).unwrap_or(0)
    }

    /// The chat bytes for one Responses event (`name` from its `event:` line).
    pub fn on_event(&mut self, name: Option<&str>, payload: &str) -> Vec<u8> {
        if self.done {
            return Vec::new();
        }
        let Ok(ev) = serde_json::from_str::<Value>(payload) else { return Vec::new() };
        let kind = ev.get("type").and_then(Value::as_str).or(name).unwrap_or("");
        let text = |k: &str| ev.get(k).filter(|d| d.is_string()).cloned();
        match kind {
            "response.created" => {
                let r = ev.get("response").unwrap_or(&Value::Null);
                self.out.id = crate::text::clean_field(r.get("id").and_then(Value::as_str).unwrap_or(""), 128);
                self.out.model = r.get("model").filter(|m| m.is_string()).cloned().unwrap_or(Value::Null);
                if let Some(c) = r.get("created_at").and_then(Value::as_u64) {
                    self.out.created_s = c;
                }
                self.chunk(json!({"role": "assistant", "content": ""}), None)
            }
            "response.output_text.delta" => text("delta").map_or_else(Vec::new, |d| self.chunk(json!({"content": d}), None)),
            "response.refusal.delta" => text("delta").map_or_else(Vec::new, |d| self.chunk(json!({"refusal": d}), None)),
            "response.output_item.added" => {
                let item = ev.get("item").unwrap_or(&Value::Null);
                if item.get("type").and_then(Value::as_str) != Some("function_call") {
                    return Vec::new();
                }
                let k = self.tools.len() as u64;
                self.tools.insert(ev.get("output_index").and_then(Value::as_u64).unwrap_or(u64::MAX), k);
                let args = item.get("arguments").filter(|a| a.is_string()).cloned().unwrap_or_else(|| Value::from(""));
                self.chunk(
                    json!({"tool_calls": [{"index": k, "id": item.get("call_id"), "type": "function",
                                           "function": {"name": item.get("name"), "arguments": args}}]}),
                    None,
                )
            }
            "response.function_call_arguments.delta" => match text("delta") {
                Some(d) => self.chunk(json!({"tool_calls": [{"index": self.tool_index(&ev), "function": {"arguments": d}}]}), None),
                None => Vec::new(),
            },
            "response.completed" | "response.incomplete" => {
                self.done = true;
                let r = ev.get("response").unwrap_or(&Value::Null);
                let mut out = self.chunk(json!({}), Some(finish_reason(r, !self.tools.is_empty())));
                if let Some(u) = r.get("usage").filter(|u| u.is_object()) {
                    out.extend(self.out.usage(chat_usage(u)));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                out
            }
            "response.failed" | "error" => {
                self.done = true;
                let e = match kind {
                    "error" => &ev,
                    _ => ev.pointer("/response/error").unwrap_or(&Value::Null),
                };
                let mut out = data(&json!({"error": {"message": e.get("message").filter(|m| m.is_string()).cloned().unwrap_or_else(|| Value::from("The response failed.")),
                                                     "type": "server_error", "param": e.get("param").filter(|p| p.is_string()), "code": e.get("code").filter(|c| c.is_string())}}));
                out.extend_from_slice(b"data: [DONE]\n\n");
                out
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stream: &[u8], include_usage: bool, piece: usize) -> Vec<Value> {
        let mut t = ResponsesToChat::new(7, include_usage);
        crate::translate::chat_chunks(crate::translate::run_stream(&mut t, stream, piece))
    }

    #[test]
    fn a_real_function_call_stream_becomes_chat_chunks() {
        // A real gpt-5.4-mini stream (tests/captures/openai_response_stream_function_call.sse).
        for piece in [1, 7, 64, 100_000] {
            let chunks = run(include_bytes!("../../../tests/captures/openai_response_stream_function_call.sse"), true, piece);
            assert_eq!(chunks.last().unwrap(), "[DONE]");
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            assert_eq!(chunks[0]["model"], "gpt-5.4-mini-2026-03-17");
            let call = chunks.iter().find_map(|c| c.pointer("/choices/0/delta/tool_calls/0/id")).unwrap();
            assert_eq!(call, "call_ahg2yVSnxIlU0OsPkAmndF76");
            let args: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str)).collect();
            assert_eq!(args, "{\"location\":\"Tokyo\"}");
            let finish: Vec<&Value> = chunks.iter().filter_map(|c| c.pointer("/choices/0/finish_reason")).filter(|f| !f.is_null()).collect();
            assert_eq!(finish, vec![&Value::from("tool_calls")]);
            let usage = &chunks[chunks.len() - 2]["usage"];
            assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(41), Some(43)));
            assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 23);
        }
    }

    #[test]
    fn text_streams_without_usage_and_failures() {
        let chunks = run(include_bytes!("../../../tests/captures/openai_response_stream.sse"), false, 13);
        let text: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
        assert!(text.starts_with("I can't provide"), "{text}");
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(chunks.iter().filter(|c| c.pointer("/choices/0/finish_reason") == Some(&Value::from("stop"))).count(), 1);
        let failed = b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n\
                       event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"late\"}\n\n";
        let chunks = run(failed, true, 5);
        assert_eq!(chunks[0]["error"]["message"], "boom");
        assert_eq!(chunks.len(), 2, "nothing after the end: {chunks:?}");
    }

    #[test]
    fn an_anthropic_client_gets_the_stream_as_anthropic_events() {
        let stream = include_bytes!("../../../tests/captures/openai_response_stream_function_call.sse");
        for piece in [1, 64, 100_000] {
            let mut t = crate::translate::Direction::AnthropicToResponses.stream(7, false, None);
            let text = String::from_utf8(crate::translate::run_stream(t.as_mut(), stream, piece)).unwrap();
            let events: Vec<Value> = text.split("\n\n").filter(|b| !b.is_empty()).map(|b| serde_json::from_str(b.split_once("data: ").unwrap().1).unwrap()).collect();
            let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
            assert_eq!(kinds.first(), Some(&"message_start"));
            assert_eq!(kinds.last(), Some(&"message_stop"));
            let tool = events.iter().find(|e| e["type"] == "content_block_start").unwrap();
            assert_eq!((tool["content_block"]["type"].as_str(), tool["content_block"]["name"].as_str()), (Some("tool_use"), Some("get_weather")));
            let args: String = events.iter().filter_map(|e| e.pointer("/delta/partial_json").and_then(Value::as_str)).collect();
            assert_eq!(args, "{\"location\":\"Tokyo\"}");
            let delta = events.iter().find(|e| e["type"] == "message_delta").unwrap();
            assert_eq!((delta["delta"]["stop_reason"].as_str(), delta["usage"]["input_tokens"].as_u64(), delta["usage"]["output_tokens"].as_u64()),
                       (Some("tool_use"), Some(41), Some(43)));
        }
    }

    #[test]
    fn hostile_events_give_valid_chunks() {
        let hostile = "data: {\"type\":\"response.output_text.delta\",\"delta\":7}\n\n\
                       data: {\"type\":\"response.output_item.added\",\"output_index\":\"x\",\"item\":{\"type\":\"function_call\",\"name\":{\"a\":1},\"arguments\":5}}\n\n\
                       data: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":99,\"delta\":\"\\u0000\\u001b\"}\n\n\
                       data: not json\n\n\
                       data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":1e30,\"output_tokens\":-1}}}\n\n";
        let chunks = run(hostile.as_bytes(), true, 3);
        assert_eq!(chunks.last().unwrap(), "[DONE]");
        assert!(chunks.iter().all(|c| c == "[DONE]" || c.get("object") == Some(&Value::from("chat.completion.chunk"))));
    }
}
