//! The usage of OpenAI's transcriptions (`/v1/audio/transcriptions`) and
//! translations (`/v1/audio/translations`).
//!
//! A `json` or `verbose_json` transcription ends with `usage`, one of two
//! kinds (openai-python `types/audio/transcription.py`,
//! `transcription_verbose.py`): `{"type": "tokens", "input_tokens",
//! "input_token_details": {"audio_tokens", "text_tokens"}, "output_tokens"}`
//! for the token-billed models (`gpt-4o-transcribe` and its kin), or
//! `{"type": "duration", "seconds"}` for those billed by the audio's length
//! (`whisper-1`). A translation (`translation.py`) carries none; its
//! `verbose_json` says the audio's `duration`, which `whisper-1` bills in
//! whole seconds, rounded up. `text`, `srt` and `vtt` answers are not JSON: the request's
//! audio is charged as its length estimated it ([`crate::request::audio`]).
//!
//! A stream (`transcription_stream_event.py`) sends `transcript.text.delta`
//! events (the text), `transcript.text.segment` (diarized segments) and
//! one `transcript.text.done` with the usage (tokens only: `whisper-1` does
//! not stream; asked to, it answers JSON).

use serde::Deserialize;

use super::Usage;
use crate::usage::MAX_COUNT;

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    audio_tokens: Option<u64>,
}

/// A `usage` as OpenAI sends it. Its `type` names the kind, but a
/// stream's `transcript.text.done` leaves it out (OpenAI's API reference,
/// the streaming example: `"usage":{"input_tokens":14,…}`): a usage
/// without one is read by its members.
#[derive(Deserialize)]
struct AudioUsage {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    seconds: Option<f64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::usage::object")]
    input_token_details: Option<Details>,
}

/// Seconds as whole milliseconds; `None` for a value that is no length.
fn ms(seconds: f64) -> Option<u64> {
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round().min(MAX_COUNT as f64) as u64)
}

impl AudioUsage {
    fn usage(self) -> Option<Usage> {
        // (Without a type, one that could be read both ways is neither.)
        match (self.kind.as_deref(), self.seconds, self.input_tokens, self.output_tokens) {
            (Some("tokens"), _, Some(input_tokens), Some(output_tokens)) | (None, None, Some(input_tokens), Some(output_tokens)) => Some(
                Usage {
                    input_tokens,
                    // (Text tokens, a prompt's, are the rest of the input.)
                    audio_input_tokens: self.input_token_details.and_then(|d| d.audio_tokens).unwrap_or(input_tokens),
                    output_tokens,
                    ..Default::default()
                }
                .bounded(),
            ),
            (Some("duration") | None, Some(seconds), None, None) => Some(Usage { audio_input_ms: ms(seconds)?, ..Default::default() }.bounded()),
            _ => None,
        }
    }
}

/// The usage of a JSON answer: its `usage`, else (a translation's
/// `verbose_json`) its `duration`.
pub fn from_body(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        usage: Option<serde_json::Value>,
        #[serde(default)]
        duration: Option<f64>,
    }
    let b = serde_json::from_slice::<Body>(body).ok()?;
    match (b.usage, b.duration) {
        (Some(u), _) => from_value(u),
        // (A length, not a usage: billed in whole seconds.)
        (None, Some(d)) => Some(Usage { audio_input_ms: crate::request::audio::whole_seconds(ms(d)?), ..Default::default() }.bounded()),
        (None, None) => None,
    }
}

/// A `usage` object found on its own (the tail of an answer too large to hold).
pub fn from_value(v: serde_json::Value) -> Option<Usage> {
    super::from_object::<AudioUsage>(&v)?.usage()
}

/// What one stream event says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub usage: Option<Usage>,
    /// Characters of transcript the event carries.
    pub output_chars: u64,
    /// `transcript.text.done`: the stream's end.
    pub done: bool,
    pub error: bool,
}

/// The event type that ends a transcript's stream.
pub const DONE: &str = "transcript.text.done";

pub fn observe(name: Option<&str>, data: &str) -> Seen {
    let Some(ev) = super::typed_event(name, data) else { return Seen::default() };
    match ev.kind.as_deref() {
        Some(DONE) => Seen { usage: ev.usage.and_then(from_value), done: true, ..Default::default() },
        Some("transcript.text.delta") => Seen { output_chars: ev.delta.map_or(0, |d| d.chars().count() as u64), ..Default::default() },
        Some("error") => Seen { error: true, ..Default::default() },
        _ => Seen::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcription_is_priced_by_its_tokens_or_its_seconds() {
        // OpenAI's API reference, "Create transcription", gpt-4o-transcribe's answer.
        let tokens = br#"{"text":"Imagine the wildest idea that you've ever had, and you're curious about how it might scale to something that's a 100, a 1,000 times bigger. This is a place where you can get to do that.","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":0,"audio_tokens":14},"output_tokens":45,"total_tokens":59}}"#;
        let u = from_body(tokens).unwrap();
        assert_eq!((u.input_tokens, u.audio_input_tokens, u.output_tokens, u.audio_input_ms), (14, 14, 45, 0));
        // whisper-1: the audio's length.
        let whisper = br#"{"text":"Hello.","usage":{"type":"duration","seconds":9}}"#;
        assert_eq!(from_body(whisper).unwrap(), Usage { audio_input_ms: 9_000, ..Default::default() });
        // verbose_json: the usage wins over the duration beside it.
        let verbose = br#"{"task":"transcribe","language":"english","duration":8.47,"text":"x","segments":[],"usage":{"type":"duration","seconds":9}}"#;
        assert_eq!(from_body(verbose).unwrap().audio_input_ms, 9_000);
        // A translation's verbose_json: its duration; its json: nothing.
        assert_eq!(from_body(br#"{"task":"translate","language":"german","duration":12.25,"text":"Hi"}"#).unwrap().audio_input_ms, 13_000);
        assert_eq!(from_body(br#"{"text":"Hi"}"#), None);
        // text / srt / vtt are not JSON.
        assert_eq!(from_body(b"1\n00:00:00,000 --> 00:00:02,000\nHi\n"), None);
        // A prompt's text tokens are the input's rest.
        let prompted = from_value(serde_json::json!({"type":"tokens","input_tokens":30,"input_token_details":{"text_tokens":10,"audio_tokens":20},"output_tokens":5})).unwrap();
        assert_eq!((prompted.input_tokens, prompted.audio_input_tokens), (30, 20));
    }

    #[test]
    fn a_usage_that_is_no_count_is_none() {
        for bad in [
            serde_json::json!({"type":"duration","seconds":-1}),
            serde_json::json!({"type":"duration","seconds":"9"}),
            serde_json::json!({"type":"tokens","input_tokens":-1,"output_tokens":1}),
            serde_json::json!({"type":"minutes","minutes":1}),
            serde_json::json!({"type":"duration","input_tokens":1,"output_tokens":1}),
            serde_json::json!({"type":"tokens","seconds":9}),
            serde_json::json!({"seconds":9,"input_tokens":1,"output_tokens":1}),
            serde_json::json!({"input_tokens":1}),
        ] {
            assert_eq!(from_value(bad.clone()), None, "{bad}");
        }
        // A length past any count is clamped, never wrapped.
        assert_eq!(from_value(serde_json::json!({"type":"duration","seconds":1e300})).unwrap().audio_input_ms, MAX_COUNT);
        // More audio tokens than input: clamped to the input.
        let odd = from_value(serde_json::json!({"type":"tokens","input_tokens":5,"input_token_details":{"audio_tokens":9},"output_tokens":1})).unwrap();
        assert_eq!(odd.audio_input_tokens, 5);
    }

    #[test]
    fn a_stream_counts_its_text_and_ends_with_its_usage() {
        let delta = observe(None, r#"{"type":"transcript.text.delta","delta":"Héllo"}"#);
        assert_eq!((delta.output_chars, delta.done), (5, false));
        let done = observe(None, r#"{"type":"transcript.text.done","text":"Héllo","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":0,"audio_tokens":14},"output_tokens":45,"total_tokens":59}}"#);
        assert!(done.done && done.usage.is_some_and(|u| u.output_tokens == 45));
        // The published stream's done event names no usage type: read by its members.
        let published = include_str!("../../../tests/captures/openai_transcription_stream.sse");
        let last = published.trim_end().rsplit("\n\n").next().and_then(|e| e.strip_prefix("data: ")).unwrap();
        let u = observe(None, last).usage.unwrap();
        assert_eq!((u.input_tokens, u.audio_input_tokens, u.output_tokens), (14, 14, 45));
        assert_eq!(observe(None, r#"{"type":"transcript.text.segment","id":"seg_1","speaker":"A","text":"Hi","start":0.0,"end":1.0}"#), Seen::default());
        assert!(observe(Some("error"), r#"{"error":{"message":"x"}}"#).error);
        assert!(observe(None, r#"{"type":"error","error":{"message":"x"}}"#).error);
    }
}
