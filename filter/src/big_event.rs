//! A stream event longer than the splitter holds ([`crate::sse::MAX_EVENT_BYTES`])
//! goes on in fragments, unparsed. Three such events carry the usage:
//!
//! - the Responses API's terminal event (`response.completed` …) holds the
//!   whole response, its output text included, so an answer of a few
//!   hundred thousand tokens makes it pass 1 MiB;
//! - a Gemini chunk with an image (`inlineData`, base64: a 1024×1024 PNG is
//!   about 2 MB) carries the usage and `finishReason` after it;
//! - an image generation's `image_generation.completed` event holds the
//!   image (megabytes of base64) and its usage after it.
//!
//! Read like a body too large to hold ([`crate::response`]): only the
//! event's first bytes (its name and type) and its last 64 KiB are kept,
//! and the usage is the last usage member found in those. Before, the
//! usage of such an event was lost and the answer was estimated from its
//! bytes: an image's base64 counted as hundreds of thousands of output
//! tokens, a long answer's reasoning not at all.

use crate::request::Api;
use crate::response::{member, Ends};
use crate::usage::{usage_from_value, usage_member, Usage};

/// Bytes kept from an event's start: enough for its `event:` line and `"type"`.
const HEAD: usize = 512;

/// The ends of one over-long event, in bounded memory.
#[derive(Debug)]
pub struct BigEvent(Ends);

impl Default for BigEvent {
    fn default() -> Self {
        BigEvent(Ends::new(HEAD))
    }
}

/// What the ends of an over-long event say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BigSeen {
    pub usage: Option<Usage>,
    /// The stream's terminal event: the Responses API's `response.completed`,
    /// `.incomplete` or `.failed`; a Gemini chunk with a `finishReason`.
    pub terminal: bool,
    /// The Responses API's `response.failed`.
    pub failed: bool,
    /// The Responses API's image generation tool's usage (`tool_usage.image_gen`).
    pub image_gen: Option<Usage>,
    /// The Responses API's billable web searches (`tool_usage.web_search.num_requests`).
    pub searches_reported: Option<u64>,
}

impl BigEvent {
    /// Takes one fragment; true when it ends the event (it ends with the
    /// blank line: no earlier fragment can, the splitter would have ended
    /// the event there).
    pub fn push(&mut self, fragment: &[u8]) -> bool {
        self.0.push(fragment);
        ends_with_blank_line(fragment)
    }

    /// Reads the ended event's usage and whether it ends the stream.
    pub fn read(self, api: Api) -> BigSeen {
        let tail = self.0.tail();
        let named = |k: &[u8]| memchr::memmem::find(&self.0.head, k).is_some();
        let failed = api == Api::OpenAiResponses && named(b"response.failed");
        let terminal = match api {
            Api::OpenAiResponses => failed || named(b"response.completed") || named(b"response.incomplete"),
            Api::GeminiGenerateContent => member::<String>(tail, b"\"finishReason\"").is_some(),
            // An image of a stream, its usage after it (`crate::usage`'s images).
            Api::OpenAiImages => named(crate::usage::images::COMPLETED.as_bytes()),
            Api::OpenAiImageEdits => named(crate::usage::images::EDIT_COMPLETED.as_bytes()),
            // A transcript's end, its usage after its text (and logprobs).
            Api::OpenAiTranscriptions | Api::OpenAiTranslations => named(crate::usage::audio::DONE.as_bytes()),
            // (Its audio deltas may be long; its end is small, but read either way.)
            Api::OpenAiSpeech => named(crate::usage::speech::DONE.as_bytes()),
            // Their usage comes in small events of its own (OpenAI's usage chunk,
            // Anthropic's message_start / message_delta).
            _ => return BigSeen::default(),
        };
        let usage = member::<serde_json::Value>(tail, usage_member(api)).and_then(|v| usage_from_value(api, v));
        let (image_gen, searches_reported) = match api {
            Api::OpenAiResponses => (
                member::<serde_json::Value>(tail, b"\"image_gen\"").and_then(crate::responses_api::image_gen_from_value),
                member::<u64>(tail, b"\"num_requests\""),
            ),
            _ => (None, None),
        };
        BigSeen { usage, terminal, failed, image_gen, searches_reported }
    }
}

/// Two line breaks at the end (each `\n`, `\r\n` or `\r`, as the splitter reads them).
fn ends_with_blank_line(b: &[u8]) -> bool {
    let without_break = |b: &[u8]| -> Option<usize> {
        match b {
            [.., b'\r', b'\n'] => Some(b.len() - 2),
            [.., b'\n' | b'\r'] => Some(b.len() - 1),
            _ => None,
        }
    };
    without_break(b).and_then(|n| b.get(..n)).and_then(without_break).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `event` as the splitter would: fragments, the last one ending the event.
    fn read(api: Api, event: &[u8]) -> (BigSeen, usize) {
        let mut big = BigEvent::default();
        let mut ended = 0;
        let mut splitter = crate::sse::SseSplitter::with_max_event(4096);
        for chunk in event.chunks(1000) {
            splitter.push(chunk, |frag, whole| {
                assert!(!whole);
                ended += usize::from(big.push(frag));
            });
        }
        (std::mem::take(&mut big).read(api), ended)
    }

    #[test]
    fn a_long_responses_terminal_event_gives_its_usage() {
        let text = "word \\\"usage\\\": {\\\"input_tokens\\\": 1} ".repeat(8000);
        let ev = format!(
            "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{text}\"}}]}}],\"usage\":{{\"input_tokens\":20,\"output_tokens\":70000,\"output_tokens_details\":{{\"reasoning_tokens\":900}}}},\"user\":null,\"metadata\":{{}}}}}}\n\n"
        );
        let (seen, ended) = read(Api::OpenAiResponses, ev.as_bytes());
        assert_eq!(ended, 1, "only the last fragment ends it");
        assert!(seen.terminal);
        let u = seen.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.reasoning_tokens), (20, 70000, 900));
        // A long delta event is no terminal one and has no usage.
        let delta = format!("event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"{text}\"}}\n\n");
        assert_eq!(read(Api::OpenAiResponses, delta.as_bytes()).0, BigSeen::default());
    }

    #[test]
    fn a_gemini_chunk_with_an_image_gives_its_usage_and_finish() {
        let image = "iVBORw0KGgo".repeat(30_000);
        let ev = format!(
            "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"inlineData\":{{\"mimeType\":\"image/png\",\"data\":\"{image}\"}}}}],\"role\":\"model\"}},\"finishReason\":\"STOP\",\"index\":0}}],\"usageMetadata\":{{\"promptTokenCount\":12,\"candidatesTokenCount\":1290,\"totalTokenCount\":1302}},\"modelVersion\":\"gemini-2.5-flash-image\"}}\r\n\r\n"
        );
        let (seen, ended) = read(Api::GeminiGenerateContent, ev.as_bytes());
        assert_eq!(ended, 1);
        assert!(seen.terminal);
        assert_eq!(seen.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((12, 1290)));
        // Without the finish: usage so far, not terminal.
        let partial = ev.replace("\"finishReason\":\"STOP\",", "");
        let (seen, _) = read(Api::GeminiGenerateContent, partial.as_bytes());
        assert!(!seen.terminal && seen.usage.is_some());
    }

    #[test]
    fn an_event_ends_at_any_blank_line_the_splitter_reads() {
        for end in ["\n\n", "\r\n\r\n", "\r\r", "\n\r\n", "\r\n\n", "\n\r"] {
            assert!(ends_with_blank_line(format!("data: x{end}").as_bytes()), "{end:?}");
        }
        for not in ["data: x\n", "data: x\r\n", "data: x", "", "\n"] {
            assert!(!ends_with_blank_line(not.as_bytes()), "{not:?}");
        }
        // Two over-long events in a row, ended by mixed breaks: each read apart
        // (read as one, the first one's name would hide the second's end).
        let long = "x".repeat(1_100_000);
        let delta = format!("event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"{long}\"}}\n\r\n");
        let done = format!("event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"output\":[{{\"text\":\"{long}\"}}],\"usage\":{{\"input_tokens\":9,\"output_tokens\":1}}}}}}\r\n\n");
        let mut tracker = crate::usage::StreamTracker::new(Api::OpenAiResponses, false);
        for chunk in format!("{delta}{done}").as_bytes().chunks(4096) {
            tracker.push(chunk);
        }
        let s = tracker.summary();
        assert!(s.finished && s.usage_final && s.oversized);
        assert_eq!(s.usage.map(|u| u.input_tokens), Some(9));
    }

    #[test]
    fn other_apis_and_garbage_read_nothing() {
        let junk = format!("data: {}\n\n", "\"usage\": {\"prompt_tokens\": ".repeat(5000));
        for api in [Api::OpenAiChat, Api::AnthropicMessages, Api::OpenAiResponses, Api::GeminiGenerateContent] {
            assert_eq!(read(api, junk.as_bytes()).0.usage, None, "{api:?}");
        }
        // Memory stays bounded whatever the event's length.
        let mut big = BigEvent::default();
        for _ in 0..1000 {
            big.push(&[b'x'; 10_000]);
        }
        assert!(big.0.held() <= HEAD + 2 * crate::response::WINDOW);
    }
}
