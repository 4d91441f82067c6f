//! The usage of OpenAI's text to speech (`/v1/audio/speech`).
//!
//! The answer is the audio (no usage: [`crate::request::speech`] charges
//! it). Asked for `stream_format: "sse"` (`gpt-4o-mini-tts`; `tts-1` refuses
//! it), it is `speech.audio.delta` events (`audio`: base64) and one
//! `speech.audio.done` with `usage: {"input_tokens", "output_tokens",
//! "total_tokens"}` (openai/openai-openapi, `SpeechAudioDoneEvent`; its
//! example: 14 in, 101 out). The input is the text and the instructions,
//! the output the audio spoken: audio output tokens, at their own rate.

use serde::Deserialize;

use super::Usage;

#[derive(Deserialize)]
struct SpeechUsage {
    input_tokens: u64,
    output_tokens: u64,
}

/// A `usage` object: every output token is audio.
pub fn from_value(v: serde_json::Value) -> Option<Usage> {
    let u = super::from_object::<SpeechUsage>(&v)?;
    Some(Usage { input_tokens: u.input_tokens, output_tokens: u.output_tokens, audio_output_tokens: u.output_tokens, ..Default::default() }.bounded())
}

/// A JSON answer's usage (a speech answer is audio: a provider that
/// answers JSON with a `usage` is read as one).
pub fn from_body(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Body {
        usage: serde_json::Value,
    }
    from_value(serde_json::from_slice::<Body>(body).ok()?.usage)
}

/// The event type that ends a speech stream.
pub const DONE: &str = "speech.audio.done";

/// What one stream event says (a transcript's shape; speech carries no text).
pub use super::audio::Seen;

pub fn observe(name: Option<&str>, data: &str) -> Seen {
    let Some(ev) = super::typed_event(name, data) else { return Seen::default() };
    match ev.kind.as_deref() {
        Some(DONE) => Seen { usage: ev.usage.and_then(from_value), done: true, ..Default::default() },
        Some("error") => Seen { error: true, ..Default::default() },
        _ => Seen::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_done_event_counts_its_output_as_audio() {
        // openai/openai-openapi, SpeechAudioDoneEvent's example.
        let done = r#"{"type":"speech.audio.done","usage":{"input_tokens":14,"output_tokens":101,"total_tokens":115}}"#;
        let seen = observe(None, done);
        let u = seen.usage.unwrap();
        assert!(seen.done && !seen.error);
        assert_eq!((u.input_tokens, u.output_tokens, u.audio_output_tokens), (14, 101, 101));
        assert_eq!(observe(None, r#"{"type":"speech.audio.delta","audio":"AAAA"}"#), Seen::default());
        assert!(observe(Some("error"), "{}").error);
        // A usage missing a count, or a count that is no integer, is no usage.
        for bad in [r#"{"input_tokens":14}"#, r#"{"input_tokens":14,"output_tokens":-1}"#, r#"{"input_tokens":"14","output_tokens":1}"#] {
            assert_eq!(from_value(serde_json::from_str(bad).unwrap()), None, "{bad}");
        }
        assert_eq!(from_value(serde_json::json!({"input_tokens": 1, "output_tokens": u64::MAX})).unwrap().output_tokens, crate::usage::MAX_COUNT);
    }
}
