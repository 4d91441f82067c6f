//! OpenAI's text to speech (`POST /v1/audio/speech`): what a request asks
//! for, what it may cost, and how long the audio it got plays.
//!
//! Two ways of billing (OpenAI's pricing page): `tts-1` and `tts-1-hd` bill
//! the `input`'s characters ($15 and $30 a million), which the request
//! states exactly; `gpt-4o-mini-tts` bills its text as input tokens and the
//! audio it speaks as audio output tokens ($0.60 and $12 a million,
//! "$0.015 a minute"). The answer is the audio itself, with no usage; only
//! a `stream_format: "sse"` stream ends with one (`speech.audio.done`,
//! `crate::usage::speech`). So an answer without usage is charged the
//! audio's length as the model bills it: read from the audio's bytes where
//! the format states it (`pcm`, `wav`, `mp3`, Ogg `opus`: [`Meter`]), else the
//! text's expected reading time.
//!
//! Sources: openai/openai-openapi `openapi.yaml` (`CreateSpeechRequest`:
//! `input` and `instructions` at most 4,096 characters, `speed` 0.25 to 4,
//! `response_format` mp3, opus, aac, flac, wav, pcm; `stream_format` sse or
//! audio; `SpeechAudioDoneEvent`); the text-to-speech guide ("pcm: raw
//! samples in 24kHz (16-bit signed, low-endian), without the header").

use crate::errors::GatewayError;

/// The audio format a speech request asks for (`response_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Mp3,
    Wav,
    Pcm,
    /// Ogg Opus: its last page says how far it played.
    Opus,
    /// aac, flac, or one the provider will refuse: the length is not read
    /// from its bytes.
    Other,
}

/// What a speech request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speech {
    /// Characters of `input`: what `tts-1` bills.
    pub characters: u64,
    /// `speed` in thousandths (250 to 4,000).
    pub speed_milli: u64,
    pub format: Format,
    /// `stream_format: "sse"`: events, the last with the usage.
    pub sse: bool,
}

impl Default for Speech {
    fn default() -> Self {
        Speech { characters: 0, speed_milli: 1000, format: Format::Mp3, sse: false }
    }
}

/// Bytes a second of OpenAI's `pcm` (and `wav`) speech: 24 kHz, 16-bit, mono.
pub const PCM_BYTES_PER_SECOND: u64 = 48_000;

/// Audio output tokens a minute of speech bills: OpenAI estimates
/// `gpt-4o-mini-tts` at $0.015 a minute and prices its audio output at $12
/// a million tokens, 1,250 a minute (one each 48 ms).
pub fn output_tokens(ms: u64) -> u64 {
    ms.div_ceil(48)
}

/// The most audio `characters` of text read at `speed_milli` can make: at
/// the slowest reading pace, 8 characters a second at speed 1 (a slow,
/// pause-rich delivery runs 11 to 13; normal speech about 15). What the
/// reservation holds.
pub fn bound_ms(characters: u64, speed_milli: u64) -> u64 {
    characters.saturating_mul(125_000) / speed_milli.max(1)
}

/// The audio `characters` of text read at `speed_milli` is expected to make:
/// 15 characters a second at speed 1. What an answer whose audio length
/// cannot be read is charged.
pub fn expected_ms(characters: u64, speed_milli: u64) -> u64 {
    characters.saturating_mul(66_667) / speed_milli.max(1)
}

impl Speech {
    /// Reads `input`: a string (the provider refuses anything else).
    pub fn input(&mut self, raw: &str) -> Result<(), GatewayError> {
        let text: String = serde_json::from_str(raw).map_err(|_| bad("'input' must be a string: the text to speak.", "input"))?;
        self.characters = text.chars().count() as u64;
        Ok(())
    }

    /// Reads `speed`: a number from 0.25 to 4 (null: 1).
    pub fn speed(&mut self, raw: &str) -> Result<(), GatewayError> {
        match serde_json::from_str::<Option<f64>>(raw) {
            Ok(None) => Ok(()),
            Ok(Some(s)) if (0.25..=4.0).contains(&s) => {
                self.speed_milli = (s * 1000.0).round() as u64;
                Ok(())
            }
            _ => Err(bad("'speed' must be a number from 0.25 to 4.0.", "speed")),
        }
    }

    /// Reads `response_format` (an unknown one goes on: the provider refuses it).
    pub fn format(&mut self, raw: &str) {
        self.format = match serde_json::from_str::<Option<String>>(raw).ok().flatten().as_deref() {
            None | Some("mp3") => Format::Mp3,
            Some("wav") => Format::Wav,
            Some("pcm") => Format::Pcm,
            Some("opus") => Format::Opus,
            Some(_) => Format::Other,
        };
    }

    /// Reads `stream_format`: `sse` streams events, `audio` (the default) the audio.
    pub fn stream_format(&mut self, raw: &str) -> Result<(), GatewayError> {
        self.sse = match serde_json::from_str::<Option<String>>(raw).map_err(|_| bad("'stream_format' must be 'sse' or 'audio'.", "stream_format"))?.as_deref() {
            Some("sse") => true,
            None | Some("audio") => false,
            Some(_) => return Err(bad("'stream_format' must be 'sse' or 'audio'.", "stream_format")),
        };
        Ok(())
    }

    /// The most audio output tokens the request can bill: its reservation's output.
    pub fn output_bound(&self) -> u64 {
        output_tokens(bound_ms(self.characters, self.speed_milli))
    }

    /// The audio output tokens an answer without usage is charged: its
    /// audio's length where its bytes state it, else the text's expected
    /// reading time.
    pub fn charged_output(&self, played_ms: Option<u64>) -> u64 {
        output_tokens(played_ms.unwrap_or_else(|| expected_ms(self.characters, self.speed_milli)))
    }
}

fn bad(msg: &'static str, param: &'static str) -> GatewayError {
    GatewayError::bad_request("invalid_type", msg).with_param(param)
}

/// Watches a speech answer's audio pass (never held): its size, its first
/// bytes, where a container states its rate, and its last, where an Ogg
/// stream's last page says how far it played.
#[derive(Debug, Default)]
pub struct Meter {
    head: Vec<u8>,
    tail: Vec<u8>,
    bytes: u64,
}

/// Bytes of the answer's start kept for its header (an ID3 tag and the
/// first MPEG frame, a WAV's chunks before its data, Ogg's first pages).
const HEAD: usize = 16 << 10;
/// Bytes of the answer's end kept: an Ogg page is at most 65,307 bytes;
/// OpenAI's speech pages are a few kilobytes.
pub const TAIL: usize = 16 << 10;

impl Meter {
    /// A whole chunk.
    pub fn push(&mut self, b: &[u8]) {
        self.push_parts(b, b, b.len());
    }

    /// A chunk of `size` bytes, of which `start` are the first (at least
    /// [`Self::wants`] of them, when there are so many) and `end` the last
    /// (at least [`TAIL`] of them, when there are so many).
    pub fn push_parts(&mut self, start: &[u8], end: &[u8], size: usize) {
        self.bytes = self.bytes.saturating_add(size as u64);
        let room = self.wants();
        self.head.extend_from_slice(start.get(..room.min(start.len()).min(size)).unwrap_or_default());
        // (`end` is contiguous with the tail kept only when it is the whole chunk; past TAIL it replaces it.)
        if end.len() >= TAIL {
            self.tail.clear();
        }
        self.tail.extend_from_slice(end);
        let cut = self.tail.len().saturating_sub(TAIL);
        self.tail.drain(..cut);
    }

    /// How many of the next bytes the meter reads from their start (the
    /// rest only counted, but for their last [`TAIL`]).
    pub fn wants(&self) -> usize {
        HEAD.saturating_sub(self.head.len())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How long the audio plays, when its format says: `pcm` by its bytes
    /// at OpenAI's rate, `wav` and `mp3` by their headers' rates.
    pub fn played_ms(&self, format: Format) -> Option<u64> {
        match format {
            Format::Pcm => Some(self.bytes.saturating_mul(1000) / PCM_BYTES_PER_SECOND),
            Format::Wav | Format::Mp3 | Format::Opus => super::audio::streamed_ms(&self.head, &self.tail, self.bytes),
            Format::Other => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_bounded_by_its_slowest_reading() {
        let mut s = Speech::default();
        s.input(r#""The quick brown fox jumped over the lazy dog.""#).unwrap();
        assert_eq!(s.characters, 45);
        // 45 characters at 8 a second: 5.625 s, 118 tokens at one each 48 ms.
        assert_eq!((bound_ms(45, 1000), s.output_bound()), (5_625, 118));
        s.speed("0.25").unwrap();
        assert_eq!(s.output_bound(), 469);
        // Characters, not bytes: what the provider's 4,096 limit counts.
        s.input(r#""héllo 世界""#).unwrap();
        assert_eq!(s.characters, 8);
        for (bad, param) in [("5", "speed"), ("\"fast\"", "speed"), ("0.1", "speed")] {
            assert_eq!(s.speed(bad).unwrap_err().param, Some(param));
        }
        assert!(s.input("[\"a\"]").is_err() && s.stream_format("\"chunks\"").is_err());
        s.stream_format("\"sse\"").unwrap();
        assert!(s.sse);
    }

    #[test]
    fn pcm_plays_its_bytes_at_24_khz_and_the_rest_their_text() {
        let mut m = Meter::default();
        m.push(&[0u8; 96_000]);
        assert_eq!(m.played_ms(Format::Pcm), Some(2_000));
        assert_eq!(m.played_ms(Format::Other), None);
        // A chunk read in parts: its start, its end; the tail keeps the last TAIL bytes.
        let mut m = Meter::default();
        let chunk: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        m.push_parts(&chunk[..HEAD], &chunk[100_000 - TAIL..], 100_000);
        m.push(&[7, 7]);
        assert_eq!((m.bytes(), m.head.len(), m.tail.len()), (100_002, HEAD, TAIL));
        assert_eq!(m.tail[TAIL - 3..], [chunk[99_999], 7, 7]);
        let s = Speech { characters: 150, ..Default::default() };
        // 150 characters at 15 a second: 10 s, 209 tokens.
        assert_eq!((s.charged_output(None), s.charged_output(Some(2_000))), (209, 42));
    }
}
