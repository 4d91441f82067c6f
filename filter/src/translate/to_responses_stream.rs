//! Chat chunks written as the Responses API's stream events, for a
//! Responses API client whose request went to a chat or Anthropic provider
//! ([`super::responses_client`]): `response.created`, `response.in_progress`,
//! each item's `response.output_item.added`, its deltas and `…done` events,
//! then `response.completed` (or `response.incomplete`) carrying the whole
//! response; each event with its `sequence_number` and an `event:` line.
//! Shapes as in the OpenAI API reference ("Streaming events") and the
//! recorded stream in tests/captures (`openai_response_stream_function_call.sse`).

use serde_json::{json, Value};

use super::namespaces::ToolNames;
use super::responses_client::{call_item, chat_id, message_item, reasoning_item, response};

/// An item being streamed: a message's text or a function call's arguments.
#[derive(Debug)]
enum Open {
    Reasoning { index: u64, text: String },
    Text { index: u64, text: String },
    Call { index: u64, chat_index: u64, call_id: Value, name: Value, args: String },
}

/// Chat chunks (from a chat provider, or from Anthropic's events through
/// [`super::from_anthropic_stream`]) written as the Responses API's events.
#[derive(Debug, Default)]
pub struct ChatToResponses {
    id: String,
    created: u64,
    model: Value,
    started: bool,
    seq: u64,
    open: Option<Open>,
    output: Vec<Value>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
    /// The flat names of the request's namespaced functions.
    names: Option<std::rc::Rc<ToolNames>>,
}

impl ChatToResponses {
    pub fn new(created_s: u64, names: Option<std::rc::Rc<ToolNames>>) -> Self {
        ChatToResponses { created: created_s, names, ..Default::default() }
    }

    fn emit(&mut self, out: &mut Vec<u8>, mut ev: Value) {
        let kind = ev.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(o) = ev.as_object_mut() {
            o.insert("sequence_number".into(), Value::from(self.seq));
        }
        self.seq += 1;
        out.extend(crate::sse::event_bytes(Some(&kind), &ev.to_string()));
    }

    fn now(&self, done: bool) -> Value {
        response(&self.id, self.created, &self.model, if done { self.output.clone() } else { Vec::new() }, self.finish.as_deref(), self.usage.as_ref(), done)
    }

    /// Ends the open item with its `…done` events.
    fn close(&mut self, out: &mut Vec<u8>) {
        match self.open.take() {
            Some(Open::Reasoning { index, text }) => {
                let item = reasoning_item(&format!("rs_{}_{index}", self.id), &text);
                self.emit(out, json!({"type": "response.output_item.done", "output_index": index, "item": item}));
                self.output.push(item);
            }
            Some(Open::Text { index, text }) => {
                let item_id = format!("msg_{}_{index}", self.id);
                self.emit(out, json!({"type": "response.output_text.done", "item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}));
                self.emit(out, json!({"type": "response.content_part.done", "item_id": item_id, "output_index": index, "content_index": 0,
                                      "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": text}}));
                let item = message_item(&item_id, &text, true);
                self.emit(out, json!({"type": "response.output_item.done", "output_index": index, "item": item}));
                self.output.push(item);
            }
            Some(Open::Call { index, call_id, name, args, .. }) => {
                let item = call_item(&format!("{}_{index}", self.id), &call_id, &name, &args, true, self.names.as_deref());
                self.emit(out, json!({"type": "response.function_call_arguments.done", "item_id": item.get("id"), "output_index": index, "arguments": args}));
                self.emit(out, json!({"type": "response.output_item.done", "output_index": index, "item": item}));
                self.output.push(item);
            }
            None => {}
        }
    }

    /// Reasoning is sent whole when its item ends (`output_item.done`), as
    /// an item without streamed summary events.
    fn reasoning(&mut self, out: &mut Vec<u8>, delta: &str) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close(out);
            let index = self.output.len() as u64;
            self.emit(out, json!({"type": "response.output_item.added", "output_index": index,
                                  "item": {"id": format!("rs_{}_{index}", self.id), "type": "reasoning", "summary": []}}));
            self.open = Some(Open::Reasoning { index, text: String::new() });
        }
        if let Some(Open::Reasoning { text, .. }) = self.open.as_mut() {
            text.push_str(delta);
        }
    }

    fn text(&mut self, out: &mut Vec<u8>, delta: &str) {
        if !matches!(self.open, Some(Open::Text { .. })) {
            self.close(out);
            let index = self.output.len() as u64;
            let item_id = format!("msg_{}_{index}", self.id);
            self.emit(out, json!({"type": "response.output_item.added", "output_index": index, "item": message_item(&item_id, "", false)}));
            self.emit(out, json!({"type": "response.content_part.added", "item_id": item_id, "output_index": index, "content_index": 0,
                                  "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}));
            self.open = Some(Open::Text { index, text: String::new() });
        }
        if let Some(Open::Text { index, text }) = self.open.as_mut() {
            text.push_str(delta);
            let index = *index;
            let item_id = format!("msg_{}_{index}", self.id);
            self.emit(out, json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []}));
        }
    }

    fn call(&mut self, out: &mut Vec<u8>, tc: &Value) {
        let chat_index = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
        let same = matches!(&self.open, Some(Open::Call { chat_index: k, .. }) if *k == chat_index);
        if !same {
            self.close(out);
            let index = self.output.len() as u64;
            let (call_id, name) = (tc.get("id").cloned().unwrap_or(Value::Null), tc.pointer("/function/name").cloned().unwrap_or(Value::Null));
            self.emit(out, json!({"type": "response.output_item.added", "output_index": index,
                                  "item": call_item(&format!("{}_{index}", self.id), &call_id, &name, "", false, self.names.as_deref())}));
            self.open = Some(Open::Call { index, chat_index, call_id, name, args: String::new() });
        }
        let Some(delta) = tc.pointer("/function/arguments").and_then(Value::as_str).filter(|d| !d.is_empty()) else { return };
        if let Some(Open::Call { index, args, .. }) = self.open.as_mut() {
            args.push_str(delta);
            let index = *index;
            let item_id = format!("fc_{}_{index}", self.id);
            self.emit(out, json!({"type": "response.function_call_arguments.delta", "item_id": item_id, "output_index": index, "delta": delta}));
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        self.close(out);
        let r = self.now(true);
        let kind = if r.get("status").and_then(Value::as_str) == Some("incomplete") { "response.incomplete" } else { "response.completed" };
        self.emit(out, json!({"type": kind, "response": r}));
    }
}

impl super::StreamTranslator for ChatToResponses {
    fn event(&mut self, _name: Option<&str>, data: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if data.trim() == "[DONE]" {
            self.finish(&mut out);
            return out;
        }
        let Ok(c) = serde_json::from_str::<Value>(data) else { return out };
        if let Some(e) = c.get("error").filter(|e| !e.is_null()) {
            self.done = true;
            let msg = e.get("message").filter(|m| m.is_string()).cloned().unwrap_or_else(|| Value::from("The provider failed."));
            self.emit(&mut out, json!({"type": "error", "code": e.get("code").filter(|c| c.is_string()), "message": msg, "param": null}));
            return out;
        }
        if !self.started {
            self.started = true;
            self.id = chat_id(&c);
            self.model = c.get("model").filter(|m| m.is_string()).cloned().unwrap_or(Value::Null);
            let r = self.now(false);
            self.emit(&mut out, json!({"type": "response.created", "response": r}));
            let r = self.now(false);
            self.emit(&mut out, json!({"type": "response.in_progress", "response": r}));
        }
        if let Some(u) = c.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let choice = c.pointer("/choices/0").unwrap_or(&Value::Null);
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(r) = delta.get("reasoning_content").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            self.reasoning(&mut out, r);
        }
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            self.text(&mut out, t);
        }
        for tc in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            self.call(&mut out, tc);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Events as (type, data) from what the writer wrote.
    pub(crate) fn events(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|b| {
                let (name, data) = b.split_once("\ndata: ").unwrap_or_default();
                let v: Value = serde_json::from_str(data).unwrap_or_default();
                assert_eq!(name.strip_prefix("event: "), v["type"].as_str(), "the event line names the type");
                v
            })
            .collect()
    }

    #[test]
    fn a_claude_tool_use_stream_becomes_responses_events() {
        // Anthropic's documented tool-use stream, through chat chunks, as a Codex client reads it.
        let stream = include_bytes!("../../../tests/captures/anthropic_stream_tool_use.sse");
        for piece in [1, 64, 100_000] {
            let mut t = crate::translate::Direction::ResponsesToAnthropic.stream(9, false, None);
            let ev = events(&crate::translate::run_stream(t.as_mut(), stream, piece));
            let kinds: Vec<&str> = ev.iter().filter_map(|e| e["type"].as_str()).collect();
            assert_eq!(&kinds[..2], ["response.created", "response.in_progress"]);
            assert_eq!(kinds.last(), Some(&"response.completed"));
            let seq: Vec<u64> = ev.iter().filter_map(|e| e["sequence_number"].as_u64()).collect();
            assert_eq!(seq, (0..ev.len() as u64).collect::<Vec<_>>());
            let done = &ev[ev.len() - 1]["response"];
            let call = done["output"].as_array().unwrap().iter().find(|i| i["type"] == "function_call").unwrap();
            assert_eq!(call["name"], "get_weather");
            let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
            assert!(args.is_object());
            let streamed: String = ev.iter().filter(|e| e["type"] == "response.function_call_arguments.delta").filter_map(|e| e["delta"].as_str()).collect();
            assert_eq!(streamed, call["arguments"].as_str().unwrap());
            assert!(done["usage"]["output_tokens"].as_u64().unwrap() > 0);
            let text: String = ev.iter().filter(|e| e["type"] == "response.output_text.delta").filter_map(|e| e["delta"].as_str()).collect();
            let item = done["output"].as_array().unwrap().iter().find(|i| i["type"] == "message").unwrap();
            assert_eq!(item["content"][0]["text"].as_str(), Some(text.as_str()));
        }
    }

    /// The first event of each type in a recorded stream.
    fn recorded(stream: &str) -> std::collections::HashMap<String, Value> {
        let mut out = std::collections::HashMap::new();
        for v in events(stream.as_bytes()) {
            out.entry(v["type"].as_str().unwrap_or("").to_string()).or_insert(v);
        }
        out
    }

    #[test]
    fn every_event_has_the_members_of_the_recorded_ones() {
        // Real streams: a function call (lingua) and a text answer (the documented order around a recorded response).
        let mut real = recorded(include_str!("../../../tests/captures/openai_response_stream_function_call.sse"));
        real.extend(recorded(include_str!("../../../tests/captures/openai_response_stream.sse")));
        let mut t = ChatToResponses::new(1, None);
        let mut out = Vec::new();
        for d in [r#"{"id":"a","model":"m","choices":[{"delta":{"role":"assistant","content":"Hi"}}]}"#,
                  r#"{"id":"a","choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"w","arguments":""}}]}}]}"#,
                  r#"{"id":"a","choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
                  r#"{"id":"a","choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
                  r#"{"id":"a","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#, "[DONE]"] {
            out.extend(super::super::StreamTranslator::event(&mut t, None, d));
        }
        let ours = events(&out);
        for kind in ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", "response.output_text.delta",
                     "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.completed"] {
            let r = &real[kind];
            let o = ours.iter().find(|e| e["type"] == kind).unwrap_or_else(|| panic!("no {kind}"));
            let missing: Vec<&String> = r.as_object().unwrap().keys().filter(|k| *k != "obfuscation" && o.get(k.as_str()).is_none()).collect();
            assert!(missing.is_empty(), "{kind}: {missing:?}");
            if let (Some(ri), Some(oi)) = (r.get("response"), o.get("response")) {
                let missing: Vec<&String> = ri.as_object().unwrap().keys().filter(|k| oi.get(k.as_str()).is_none() && !matches!(k.as_str(),
                    "completed_at" | "frequency_penalty" | "presence_penalty" | "moderation" | "prompt_cache_retention")).collect();
                assert!(missing.is_empty(), "{kind}.response: {missing:?}");
            }
        }
    }

    #[test]
    fn errors_and_hostile_chunks_give_valid_events() {
        let mut t = ChatToResponses::new(1, None);
        let mut out = Vec::new();
        for d in ["{\"id\":5,\"model\":{\"x\":1},\"choices\":[{\"delta\":{\"content\":7,\"tool_calls\":[{\"index\":\"a\",\"function\":{\"arguments\":3}}]}}]}",
                  "not json", "{\"choices\":[{\"delta\":{\"content\":\"\\u0000\\u001b\"}}],\"usage\":{\"prompt_tokens\":1e30}}",
                  "{\"error\":{\"message\":\"overloaded\"}}", "[DONE]"] {
            out.extend(super::super::StreamTranslator::event(&mut t, None, d));
        }
        let ev = events(&out);
        assert_eq!(ev.last().unwrap()["type"], "error");
        assert_eq!(ev.last().unwrap()["message"], "overloaded");
    }
}
