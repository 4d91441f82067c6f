//! Non-streamed response bodies, read within a memory bound.
//!
//! A body up to `max_response_bytes` is kept whole and parsed. A larger one
//! is not held: only its first and last 64 KiB are kept, and the usage is
//! read from the `"usage"` member found there (providers put it at the end,
//! after the content). When even that fails the record says why and the
//! output is estimated from the body's size: never a silent zero.

use serde::de::DeserializeOwned;

use crate::request::Api;
use crate::usage::{parse_json_response, usage_from_value, usage_member, ResponseInfo};

/// Bytes kept from each end of a body too large to hold.
pub const WINDOW: usize = 64 << 10;

/// The two ends of a byte run too long to hold: its first `head_max`
/// bytes and at least its last [`WINDOW`], in at most `head_max` + 2 ×
/// [`WINDOW`] bytes (a large body here, an over-long stream event in
/// [`crate::big_event`]).
#[derive(Debug, Default)]
pub struct Ends {
    head_max: usize,
    pub head: Vec<u8>,
    tail: Vec<u8>,
}

impl Ends {
    pub fn new(head_max: usize) -> Self {
        Ends { head_max, ..Default::default() }
    }

    pub fn push(&mut self, b: &[u8]) {
        if self.head.len() < self.head_max {
            let need = self.head_max - self.head.len();
            self.head.extend_from_slice(b.get(..need.min(b.len())).unwrap_or_default());
        }
        self.tail.extend_from_slice(b);
        if self.tail.len() > 2 * WINDOW {
            let cut = self.tail.len() - WINDOW;
            self.tail.drain(..cut);
        }
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The last [`WINDOW`] bytes.
    pub fn tail(&self) -> &[u8] {
        self.tail.get(self.tail.len().saturating_sub(WINDOW)..).unwrap_or_default()
    }
}

/// Collects a (decoded) JSON response body.
#[derive(Debug, Default)]
pub struct JsonCollector {
    max: usize,
    whole: Vec<u8>,
    /// Past `max`: its ends only.
    ends: Option<Ends>,
    total: u64,
}

/// What reading a response body gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyReading {
    pub info: ResponseInfo,
    /// Decoded bytes seen.
    pub bytes: u64,
    /// Why the body could not be read whole, if it could not.
    pub note: Option<&'static str>,
}

impl JsonCollector {
    pub fn new(max: usize) -> Self {
        JsonCollector { max, ..Default::default() }
    }

    pub fn push(&mut self, b: &[u8]) {
        self.total = self.total.saturating_add(b.len() as u64);
        if self.ends.is_none() && self.whole.len() + b.len() <= self.max {
            self.whole.extend_from_slice(b);
            return;
        }
        let whole = std::mem::take(&mut self.whole);
        let ends = self.ends.get_or_insert_with(|| Ends::new(WINDOW));
        ends.push(&whole);
        ends.push(b);
    }

    pub fn finish(self, api: Api) -> BodyReading {
        let Some(ends) = self.ends else {
            return BodyReading { info: parse_json_response(api, &self.whole), bytes: self.total, note: None };
        };
        let found = [ends.tail(), &ends.head].into_iter().find_map(|w| {
            let v = member::<serde_json::Value>(w, usage_member(api))?;
            Some((crate::usage::advisor_from_value(api, &v), usage_from_value(api, v)?))
        });
        let (mut advisor, mut usage) = found.map_or((None, None), |(a, u)| (a, Some(u)));
        // The Responses API reports its hosted tools apart (`tool_usage`):
        // an image generation's images in `output` make such answers long.
        if api == Api::OpenAiResponses {
            let tail = ends.tail();
            advisor = member::<serde_json::Value>(tail, b"\"image_gen\"").and_then(crate::responses_api::image_gen_from_value);
            if let (Some(u), Some(n)) = (usage.as_mut(), member::<u64>(tail, b"\"num_requests\"")) {
                u.web_search_requests = n.min(tollgate_protocol::usage::MAX_COUNT);
            }
        }
        let model = member::<String>(&ends.head, b"\"model\"").map(|m| crate::text::clean_field(&m, 256));
        let note = if usage.is_some() { "usage_from_tail:response_too_large" } else { "usage_unreadable:response_too_large" };
        let note = Some(note);
        BodyReading { info: ResponseInfo { model, usage, advisor, ..Default::default() }, bytes: self.total, note }
    }
}

/// The value of the last member `name` (given with its quotes) in a window
/// of JSON text. An unescaped `"name"` followed by `:` can only be a member
/// name: inside a string its quotes would be escaped.
pub(crate) fn member<T: DeserializeOwned>(w: &[u8], name: &[u8]) -> Option<T> {
    let mut end = w.len();
    while let Some(pos) = w.get(..end).and_then(|s| rfind(s, name)) {
        end = pos;
        if pos > 0 && w.get(pos - 1) == Some(&b'\\') {
            continue;
        }
        let rest = w.get(pos + name.len()..)?;
        let rest = trim_start(rest);
        let Some(rest) = rest.strip_prefix(b":") else { continue };
        let mut it = serde_json::Deserializer::from_slice(trim_start(rest)).into_iter::<T>();
        if let Some(Ok(v)) = it.next() {
            return Some(v);
        }
    }
    None
}

fn rfind(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() {
        return None;
    }
    memchr::memmem::rfind(h, n)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    b.get(i..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;

    fn big_openai(content_len: usize) -> Vec<u8> {
        let content = "ab \\\"usage\\\": {\\\"prompt_tokens\\\": 1} ".repeat(content_len / 30 + 1);
        format!(
            r#"{{"id":"c","object":"chat.completion","model":"gpt-5.4","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}}}}],"usage":{{"prompt_tokens":10,"completion_tokens":2500000,"total_tokens":2500010}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn small_bodies_are_parsed_whole() {
        let body = big_openai(100);
        let mut c = JsonCollector::new(1 << 20);
        for ch in body.chunks(7) {
            c.push(ch);
        }
        let r = c.finish(Api::OpenAiChat);
        assert_eq!(r.note, None);
        assert_eq!(r.info.usage.map(|u| u.output_tokens), Some(2_500_000));
    }

    #[test]
    fn large_bodies_are_priced_from_the_tail_in_bounded_memory() {
        let body = big_openai(1_000_000);
        let mut c = JsonCollector::new(100_000);
        for ch in body.chunks(16_384) {
            c.push(ch);
            assert!(c.whole.len() + c.ends.as_ref().map_or(0, Ends::held) <= 100_000 + 3 * WINDOW + 16_384);
        }
        let r = c.finish(Api::OpenAiChat);
        assert_eq!(r.note, Some("usage_from_tail:response_too_large"));
        assert_eq!(r.info.model.as_deref(), Some("gpt-5.4"));
        assert_eq!(r.info.usage, Some(Usage { input_tokens: 10, output_tokens: 2_500_000, ..Default::default() }));
        assert_eq!(r.bytes, body.len() as u64);
    }

    #[test]
    fn escaped_usage_inside_content_is_not_taken() {
        // the only unescaped "usage" is missing: the content's escaped ones must not count
        let body = big_openai(300_000);
        let cut = body.len() - 90;
        let mut c = JsonCollector::new(1000);
        c.push(body.get(..cut).unwrap());
        let r = c.finish(Api::OpenAiChat);
        assert_eq!(r.info.usage, None);
        assert_eq!(r.note, Some("usage_unreadable:response_too_large"));
    }

    /// An answer past the limit still says what its advisor's calls took
    /// (its usage is read from the tail).
    #[test]
    fn anthropic_tail_keeps_the_advisors_calls() {
        let text = "x".repeat(300_000);
        let body = format!(
            r#"{{"model":"claude-sonnet-4-6","content":[{{"type":"text","text":"{text}"}}],"usage":{{"input_tokens":5,"output_tokens":70,"iterations":[{{"type":"advisor_message","model":"claude-opus-4-8","input_tokens":9000,"output_tokens":800}}]}}}}"#
        );
        let mut c = JsonCollector::new(1000);
        c.push(body.as_bytes());
        let r = c.finish(Api::AnthropicMessages);
        assert_eq!(r.info.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((5, 70)));
        assert_eq!(r.info.advisor.map(|u| (u.input_tokens, u.output_tokens)), Some((9000, 800)));
    }

    /// A Responses answer past the limit (its images in `output`) still
    /// says what its image generation tool and its web searches took.
    #[test]
    fn responses_tail_keeps_the_hosted_tools_usage() {
        let image = "iVBORw0KGgo".repeat(100_000);
        let body = format!(
            r#"{{"id":"resp_1","model":"gpt-5.4","output":[{{"type":"image_generation_call","id":"ig_1","status":"completed","result":"{image}"}}],"usage":{{"input_tokens":40,"output_tokens":12}},"tool_usage":{{"image_gen":{{"input_tokens":20,"output_tokens":1056,"total_tokens":1076,"input_tokens_details":{{"image_tokens":0,"text_tokens":20}}}},"web_search":{{"num_requests":2}}}}}}"#
        );
        let mut c = JsonCollector::new(1000);
        c.push(body.as_bytes());
        let r = c.finish(Api::OpenAiResponses);
        assert_eq!(r.info.usage.map(|u| (u.input_tokens, u.output_tokens, u.web_search_requests)), Some((40, 12, 2)));
        assert_eq!(r.info.advisor.map(|u| (u.input_tokens, u.image_output_tokens)), Some((20, 1056)));
    }

    #[test]
    fn anthropic_tail() {
        let text = "x".repeat(300_000);
        let body = format!(
            r#"{{"id":"msg","type":"message","model":"claude-sonnet-4-6","content":[{{"type":"text","text":"{text}"}}],"usage":{{"input_tokens":5,"cache_read_input_tokens":100,"output_tokens":75000}}}}"#
        );
        let mut c = JsonCollector::new(1000);
        c.push(body.as_bytes());
        let u = c.finish(Api::AnthropicMessages).info.usage.unwrap();
        assert_eq!((u.input_tokens, u.cached_input_tokens, u.output_tokens), (105, 100, 75_000));
    }

    #[test]
    fn gemini_tail_is_its_usage_metadata() {
        // Several images (base64) past the limit: the usage comes after them.
        let image = "iVBORw0KGgo".repeat(100_000);
        let body = format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"inlineData":{{"mimeType":"image/png","data":"{image}"}}}}],"role":"model"}},"finishReason":"STOP"}}],"usageMetadata":{{"promptTokenCount":12,"candidatesTokenCount":2580,"totalTokenCount":2592}},"modelVersion":"gemini-2.5-flash-image"}}"#
        );
        let mut c = JsonCollector::new(1000);
        c.push(body.as_bytes());
        let r = c.finish(Api::GeminiGenerateContent);
        assert_eq!(r.info.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((12, 2580)));
        assert_eq!(r.note, Some("usage_from_tail:response_too_large"));
    }
}
