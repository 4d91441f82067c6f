//! OpenAI's Responses API (`POST /v1/responses`): usage from the response
//! object and from its event stream.
//!
//! - JSON: `usage.input_tokens` (including `input_tokens_details.cached_tokens`),
//!   `usage.output_tokens` (including `output_tokens_details.reasoning_tokens`);
//!   built-in web searches are `web_search_call` items in `output`, and
//!   hosted file searches `file_search_call` items, each billed per call
//!   (openai/openai-python `types/responses/response_file_search_tool_call.py`;
//!   "File search tool call: $2.50 / 1k calls", openai.com/api/pricing).
//! - Stream: typed events (`event: response.output_text.delta` …); the usage
//!   comes once, in the terminal event's `response` (`response.completed`,
//!   `response.incomplete` or `response.failed`); no `include_usage` is
//!   needed and nothing is rewritten. An `error` event ends a stream too.
//!   Hosted calls are counted from their `response.output_item.done`
//!   events as well, the larger count kept.
//! - Web searches: the answer's `tool_usage.web_search.num_requests` where
//!   it has one ("counts billable searches. Discounted searches and
//!   actions such as opening a page are excluded", openai-python
//!   `types/responses/response.py`): a `web_search_call` item is also an
//!   `open_page` or `find_in_page` action (`response_function_web_search.py`),
//!   which counting items billed as a search. Without it, the items.
//!
//! Sources: OpenAI API reference, "Responses" and "Streaming events"
//! (platform.openai.com/docs/api-reference/responses,
//! …/responses-streaming); a live response recorded in openai/openai-python
//! `tests/lib/responses/test_responses.py` (tests/captures/README.md).

use serde::Deserialize;

use crate::served::{Served, Word};
use crate::usage::{EventSeen as Seen, Usage};

#[derive(Deserialize, Default)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    /// GPT-5.6 and later: input written to the prompt cache, billed 1.25 ×
    /// input (a live gpt-5.6-sol answer's `usage.input_tokens_details.cache_write_tokens`,
    /// recorded in coder/mux#3705), as chat completions' `prompt_tokens_details` says it.
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
pub(crate) struct ResponsesUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::usage::object")]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::usage::object")]
    output_tokens_details: Option<OutputDetails>,
}

impl ResponsesUsage {
    /// `{}` is no count (as chat's `OpenAiUsage::counted`).
    fn counted(&self) -> bool {
        self.input_tokens.is_some() || self.output_tokens.is_some()
    }

    fn normalise(self, calls: Calls) -> Usage {
        let cached = self.input_tokens_details.as_ref().and_then(|d| d.cached_tokens);
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            cached_input_tokens: cached.unwrap_or(0),
            cache_write_tokens: self.input_tokens_details.as_ref().and_then(|d| d.cache_write_tokens).unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
            reasoning_tokens: self.output_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
            web_search_requests: calls.web_searches,
            file_search_calls: calls.file_searches,
            cache_reported: cached.is_some(),
            ..Default::default()
        }
        .bounded()
    }
}

/// The hosted tool calls an answer's `output` lists, each billed apart.
#[derive(Default, Clone, Copy)]
struct Calls {
    web_searches: u64,
    file_searches: u64,
}

#[derive(Deserialize)]
struct OutputItem {
    #[serde(rename = "type", default)]
    kind: String,
}

/// The response object (a JSON body, or the `response` of a stream event).
#[derive(Deserialize, Default)]
pub(crate) struct ResponseObject {
    /// `resp_…`: what a later request names to continue it.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// The tier that served it ([`crate::served`]).
    #[serde(default)]
    service_tier: Word,
    #[serde(default, deserialize_with = "crate::usage::object")]
    usage: Option<ResponsesUsage>,
    #[serde(default)]
    output: Option<Vec<OutputItem>>,
    /// Hosted tools' usage, apart from `usage` (`tool_usage.image_gen`).
    #[serde(default, deserialize_with = "crate::usage::object")]
    tool_usage: Option<ToolUsage>,
}

#[derive(Deserialize, Default)]
struct ToolUsage {
    #[serde(default)]
    image_gen: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "crate::usage::object")]
    web_search: Option<WebSearchUsage>,
}

#[derive(Deserialize, Default)]
struct WebSearchUsage {
    #[serde(default)]
    num_requests: Option<u64>,
}

/// The image generation tool's usage in a `tool_usage.image_gen` object
/// (all zero when the tool ran no call: none).
pub(crate) fn image_gen_from_value(v: serde_json::Value) -> Option<Usage> {
    crate::usage::images::from_value(v).filter(|u| u.budget_tokens() > 0)
}

impl ResponseObject {
    pub fn served(&self) -> Served {
        Served::openai(self.service_tier)
    }

    /// The image generation tool's usage (`tool_usage.image_gen`).
    pub fn image_gen(&self) -> Option<Usage> {
        self.tool_usage.as_ref().and_then(|t| t.image_gen.clone()).and_then(image_gen_from_value)
    }

    /// The image generation calls in `output`.
    pub fn image_calls(&self) -> u64 {
        self.output.iter().flatten().filter(|i| i.kind == "image_generation_call").count() as u64
    }

    /// The billable web searches the answer reports (`tool_usage.web_search.num_requests`).
    pub fn searches_reported(&self) -> Option<u64> {
        self.tool_usage.as_ref().and_then(|t| t.web_search.as_ref()).and_then(|w| w.num_requests)
    }

    pub fn usage(self) -> Option<Usage> {
        let count = |kind: &str| self.output.iter().flatten().filter(|i| i.kind == kind).count() as u64;
        let web_searches = self.searches_reported().unwrap_or_else(|| count("web_search_call"));
        let calls = Calls { web_searches, file_searches: count("file_search_call") };
        self.usage.filter(ResponsesUsage::counted).map(|u| u.normalise(calls))
    }
}

/// Usage from a `usage` object found on its own (the tail of a large body).
pub(crate) fn usage_from_value(v: serde_json::Value) -> Option<Usage> {
    crate::usage::from_object::<ResponsesUsage>(&v).filter(ResponsesUsage::counted).map(|u| u.normalise(Calls::default()))
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    response: Option<ResponseObject>,
    /// `response.output_item.done`: the item finished.
    #[serde(default)]
    item: Option<OutputItem>,
}

/// Reads one event (`name` from its `event:` line, `data` its payload).
pub(crate) fn observe(name: Option<&str>, data: &str) -> Seen {
    let Ok(ev) = serde_json::from_str::<Event>(data) else { return Seen::default() };
    let kind = if ev.kind.is_empty() { name.unwrap_or("") } else { ev.kind.as_str() };
    let mut seen = Seen::default();
    match kind {
        "response.output_text.delta"
        | "response.function_call_arguments.delta"
        | "response.reasoning_summary_text.delta"
        | "response.reasoning_text.delta"
        | "response.refusal.delta" => {
            seen.output_chars = ev.delta.as_deref().map(|d| d.chars().count() as u64).unwrap_or(0);
        }
        "response.completed" | "response.incomplete" | "response.failed" => {
            seen.terminal = true;
            seen.error = kind == "response.failed";
            if let Some(r) = ev.response {
                seen.model = r.model.clone();
                seen.id = r.id.clone();
                seen.served = r.served();
                seen.image_gen = r.image_gen();
                seen.searches_reported = r.searches_reported();
                seen.usage = r.usage();
            }
        }
        // Each hosted call is its own item, done before the answer goes on:
        // counted as they finish, they are billed even when the stream is
        // cut before its terminal event, or that event is too long to read whole.
        "response.output_item.done" => match ev.item.as_ref().map(|i| i.kind.as_str()) {
            Some("web_search_call") => seen.searches = 1,
            Some("file_search_call") => seen.file_searches = 1,
            Some("image_generation_call") => seen.image_calls = 1,
            _ => {}
        },
        "response.created" | "response.in_progress" => {
            if let Some(r) = ev.response {
                seen.served = r.served();
                (seen.model, seen.id) = (r.model, r.id);
            }
        }
        "error" => {
            seen.terminal = true;
            seen.error = true;
        }
        _ => {}
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_response_object_gives_its_usage() {
        let body = include_bytes!("../../tests/captures/openai_response.json");
        let r: ResponseObject = serde_json::from_slice(body).unwrap();
        assert_eq!(r.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert!(r.id.as_deref().is_some_and(|id| id.starts_with("resp_")), "{:?}", r.id);
        let u = r.usage().unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_reported), (14, 50, 0, true));
    }

    #[test]
    fn stream_events_give_output_so_far_and_the_final_usage() {
        let d = observe(Some("response.output_text.delta"), r#"{"type":"response.output_text.delta","delta":"héllo"}"#);
        assert_eq!(d.output_chars, 5);
        let done = observe(
            None,
            r#"{"type":"response.completed","response":{"model":"gpt-5","output":[{"type":"web_search_call"},{"type":"message"}],
               "usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":64},"output_tokens":30,"output_tokens_details":{"reasoning_tokens":20}}}}"#,
        );
        assert!(done.terminal && !done.error);
        assert_eq!(observe(None, r#"{"type":"response.created","response":{"id":"resp_1","model":"gpt-5"}}"#).id.as_deref(), Some("resp_1"));
        let u = done.usage.unwrap();
        assert_eq!((u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens, u.web_search_requests), (100, 64, 30, 20, 1));
        assert!(observe(None, r#"{"type":"error","code":"server_error"}"#).error);
        assert!(observe(None, r#"{"type":"response.failed","response":{"usage":null}}"#).terminal);
        assert_eq!(observe(None, "not json"), Seen::default());
        // hostile numbers are clamped, not overflowed
        let big = observe(None, r#"{"type":"response.completed","response":{"usage":{"input_tokens":18446744073709551615,"output_tokens":1}}}"#);
        assert!(big.usage.unwrap().input_tokens <= crate::usage::MAX_COUNT);
    }

    #[test]
    fn cache_writes_are_read_as_chat_completions_reads_them() {
        let body = r#"{"usage":{"input_tokens":5000,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":3207},"output_tokens":9}}"#;
        let u = serde_json::from_str::<ResponseObject>(body).unwrap().usage().unwrap();
        assert_eq!((u.input_tokens, u.cache_write_tokens, u.cached_input_tokens), (5000, 3207, 0));
        let tail = usage_from_value(serde_json::json!({"input_tokens": 10, "input_tokens_details": {"cache_write_tokens": 99}})).unwrap();
        assert_eq!(tail.cache_write_tokens, 10, "never more than the input");
    }

    #[test]
    fn hosted_file_searches_are_counted_per_call_beside_web_searches() {
        // The item as openai-python's ResponseFileSearchToolCall has it.
        let body = r#"{"model":"gpt-5","output":[
            {"id":"fs_1","type":"file_search_call","status":"completed","queries":["refund policy"],"results":null},
            {"id":"fs_2","type":"file_search_call","status":"completed","queries":["returns"]},
            {"id":"ws_1","type":"web_search_call","status":"completed","action":{"type":"search","query":"x"}},
            {"type":"message","content":[]}, {"type":"file_search"}, {"kind":"file_search_call"}],
            "usage":{"input_tokens":10,"output_tokens":2}}"#;
        let u = serde_json::from_str::<ResponseObject>(body).unwrap().usage().unwrap();
        assert_eq!((u.file_search_calls, u.web_search_requests), (2, 1));
        let done = observe(None, &format!(r#"{{"type":"response.completed","response":{body}}}"#));
        assert_eq!(done.usage.map(|u| u.file_search_calls), Some(2));
        // Without a usage there is nothing to hang the calls on: an estimate follows.
        assert!(serde_json::from_str::<ResponseObject>(r#"{"output":[{"type":"file_search_call"}]}"#).unwrap().usage().is_none());
    }

    #[test]
    fn the_image_generation_tools_usage_is_read_apart_from_the_requests() {
        // openai-python types/responses/response.py: `tool_usage.image_gen`, summed over the calls.
        let body = br#"{"id":"resp_1","model":"gpt-5.4","output":[{"type":"image_generation_call","id":"ig_1","status":"completed","result":"iVBORw0KGgo="},{"type":"message"}],
            "usage":{"input_tokens":40,"output_tokens":12},
            "tool_usage":{"image_gen":{"input_tokens":30,"input_tokens_details":{"image_tokens":0,"text_tokens":30},"output_tokens":1056,"total_tokens":1086,
                          "cached_tokens":10,"output_tokens_details":{"image_tokens":1056,"text_tokens":0}},"web_search":{"num_requests":0}}}"#;
        let info = crate::usage::parse_json_response(crate::request::Api::OpenAiResponses, body);
        let (u, g) = (info.usage.unwrap(), info.advisor.unwrap());
        assert_eq!((u.input_tokens, u.output_tokens), (40, 12), "the request's own usage stays its own");
        assert_eq!((g.input_tokens, g.cached_input_tokens, g.output_tokens, g.image_output_tokens), (30, 10, 1056, 1056));
        assert_eq!(info.image_calls, 1);
        // All zero (the tool ran no call): none. Absent: none, its calls counted.
        let zero = br#"{"usage":{"input_tokens":1,"output_tokens":1},"tool_usage":{"image_gen":{"input_tokens":0,"input_tokens_details":{"image_tokens":0,"text_tokens":0},"output_tokens":0,"total_tokens":0},"web_search":{"num_requests":0}}}"#;
        assert_eq!(crate::usage::parse_json_response(crate::request::Api::OpenAiResponses, zero).advisor, None);
        let seen = observe(None, r#"{"type":"response.output_item.done","output_index":0,"item":{"type":"image_generation_call","id":"ig_1","status":"completed"}}"#);
        assert_eq!((seen.image_calls, seen.image_gen), (1, None));
        let done = observe(None, r#"{"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":1},"tool_usage":{"image_gen":{"input_tokens":5,"output_tokens":272,"total_tokens":277,"input_tokens_details":{"image_tokens":0,"text_tokens":5}}}}}"#);
        assert_eq!(done.image_gen.map(|g| (g.input_tokens, g.image_output_tokens)), Some((5, 272)));
    }

    #[test]
    fn billable_searches_are_the_answers_count_not_its_page_openings() {
        let item = |action: &str| format!(r#"{{"type":"web_search_call","id":"ws","status":"completed","action":{{"type":"{action}"}}}}"#);
        let items = [item("search"), item("open_page"), item("find_in_page")].join(",");
        let body = |tool_usage: &str| format!(r#"{{"output":[{items}],"usage":{{"input_tokens":10,"output_tokens":2}}{tool_usage}}}"#);
        let reported = body(r#","tool_usage":{"web_search":{"num_requests":1},"image_gen":{"input_tokens":0,"output_tokens":0,"total_tokens":0,"input_tokens_details":{"image_tokens":0,"text_tokens":0}}}"#);
        let u = |b: &str| crate::usage::parse_json_response(crate::request::Api::OpenAiResponses, b.as_bytes()).usage.unwrap().web_search_requests;
        assert_eq!((u(&reported), u(&body(""))), (1, 3), "the answer's count; without one, every call");
        // Streamed: the calls as they finish, then the terminal event's count wins.
        let mut t = crate::usage::StreamTracker::new(crate::request::Api::OpenAiResponses, false);
        for action in ["search", "open_page", "find_in_page"] {
            t.push(format!("event: response.output_item.done\ndata: {{\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{}}}\n\n", item(action)).as_bytes());
        }
        assert_eq!(t.summary().usage.map(|u| u.web_search_requests), Some(3), "cut here: every call counted");
        let done = format!(r#"{{"type":"response.completed","response":{}}}"#, reported);
        t.push(format!("event: response.completed\ndata: {done}\n\n").as_bytes());
        assert_eq!(t.summary().usage.map(|u| u.web_search_requests), Some(1));
    }
}
