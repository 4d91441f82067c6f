//! `POST /v1/audio/speech`, as OpenAI answers it.
//!
//! Sources: openai/openai-openapi `openapi.yaml`, `CreateSpeechRequest`
//! (`additionalProperties: false`; `model`, `input` and `voice` required;
//! `input` and `instructions` at most 4,096 characters; `voice` a built-in
//! name or `{"id": …}`; `response_format` mp3 (the default), opus, aac,
//! flac, wav, pcm; `speed` 0.25 to 4; `stream_format` sse or audio, "sse is
//! not supported for tts-1 or tts-1-hd"), `/audio/speech` (200:
//! `application/octet-stream`, chunked, or `text/event-stream`),
//! `SpeechAudioDeltaEvent` and `SpeechAudioDoneEvent` (its example: 14 in,
//! 101 out, 115 total); openai-python `types/audio/speech_model.py` (the
//! models); the text-to-speech guide (`pcm`: 24 kHz, 16-bit signed, little
//! endian, no header). What `tts-1` does with `sse`: sfortis/openai_tts#73
//! measured it, one request each: `tts-1` and `tts-1-hd` answer 200 with the
//! raw audio (the parameter ignored), `gpt-4o-mini-tts` the events. OpenAI's
//! refusals in its usual words ("Invalid 'input': string too long…",
//! `string_above_max_length`; "Unrecognized request argument supplied").
//!
//! The mock's own choices where the API decides: speech runs 15 characters
//! a second at speed 1 (`x-mock-speech-ms` sets the length: a voice told to
//! read slowly); its audio is silence, `mp3` as MPEG-2 Layer III frames at
//! 24 kHz, 64 kbit/s, `wav` a RIFF header stating its length, then 24 kHz
//! 16-bit mono; `opus` Ogg pages (RFC 3533, RFC 7845) a second each, their
//! granule positions the samples played; `aac` and `flac` a container's
//! first bytes, then silence at 64 kbit/s. `gpt-4o-mini-tts` bills its text (and
//! instructions) at a token per 4 bytes and 1,250 audio tokens a minute.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::embeddings::Refusal;

const PARAMS: &[&str] = &["model", "input", "instructions", "voice", "response_format", "speed", "stream_format"];
const MODELS: &[&str] = &["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-03-20", "gpt-4o-mini-tts-2025-12-15"];
const VOICES: &[&str] = &["alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin", "cedar"];
const FORMATS: &[&str] = &["mp3", "opus", "aac", "flac", "wav", "pcm"];
const MAX_CHARS: usize = 4096;

fn bad(msg: impl Into<String>, param: &'static str, code: Option<&'static str>) -> Refusal {
    (400, msg.into(), Some(param), code)
}

/// What a request asked for, checked.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub model: &'static str,
    pub format: &'static str,
    /// Events (`gpt-4o-mini-tts` asked for `sse`); else the audio.
    pub sse: bool,
    /// How long the audio plays.
    pub ms: u64,
    /// Characters of `input` (what `tts-1` bills).
    pub characters: u64,
    /// Text tokens (`gpt-4o-mini-tts`).
    pub input_tokens: u64,
}

fn text<'a>(m: &'a Map<String, Value>, k: &'static str) -> Result<Option<&'a str>, Refusal> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("Invalid type for '{k}': expected a string."), k, Some("invalid_type"))),
    }
}

fn at_most_4096(k: &'static str, s: &str) -> Result<(), Refusal> {
    let n = s.chars().count();
    if n > MAX_CHARS {
        return Err(bad(format!("Invalid '{k}': string too long. Expected a string with maximum length {MAX_CHARS}, but got a string with length {n} instead."), k, Some("string_above_max_length")));
    }
    Ok(())
}

/// Checks a request body as the API does; `ms`: a length the test sets.
pub fn plan(m: &Map<String, Value>, ms: Option<u64>) -> Result<Plan, Refusal> {
    if let Some(k) = m.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err((400, format!("Unrecognized request argument supplied: {k}"), None, None));
    }
    let model = match text(m, "model")? {
        None => return Err(bad("Missing required parameter: 'model'.", "model", None)),
        Some(s) => MODELS.iter().copied().find(|x| *x == s).ok_or((404, format!("The model `{s}` does not exist or you do not have access to it."), None, Some("model_not_found")))?,
    };
    let input = text(m, "input")?.ok_or_else(|| bad("Missing required parameter: 'input'.", "input", None))?;
    at_most_4096("input", input)?;
    let instructions = text(m, "instructions")?.unwrap_or("");
    at_most_4096("instructions", instructions)?;
    match m.get("voice") {
        None | Some(Value::Null) => return Err(bad("Missing required parameter: 'voice'.", "voice", None)),
        Some(Value::String(v)) if VOICES.contains(&v.as_str()) => {}
        Some(Value::Object(o)) if o.len() == 1 && o.get("id").is_some_and(Value::is_string) => {}
        Some(v) => return Err(bad(format!("Invalid value: {v}. Supported values are: {}.", VOICES.iter().map(|x| format!("'{x}'")).collect::<Vec<_>>().join(", ")), "voice", Some("invalid_value"))),
    }
    let format = match text(m, "response_format")? {
        None => "mp3",
        Some(f) => FORMATS.iter().copied().find(|x| *x == f).ok_or_else(|| {
            bad(format!("Invalid value: '{f}'. Supported values are: {}.", FORMATS.iter().map(|x| format!("'{x}'")).collect::<Vec<_>>().join(", ")), "response_format", Some("invalid_value"))
        })?,
    };
    let speed = match m.get("speed") {
        None | Some(Value::Null) => 1.0,
        Some(v) => v.as_f64().filter(|s| (0.25..=4.0).contains(s)).ok_or_else(|| {
            bad("Invalid 'speed': expected a number between 0.25 and 4.0.", "speed", Some("invalid_value"))
        })?,
    };
    let sse = match text(m, "stream_format")? {
        None | Some("audio") => false,
        Some("sse") => true,
        Some(f) => return Err(bad(format!("Invalid value: '{f}'. Supported values are: 'sse' and 'audio'."), "stream_format", Some("invalid_value"))),
    };
    let characters = input.chars().count() as u64;
    let ms = ms.unwrap_or_else(|| ((characters as f64) * 1000.0 / 15.0 / speed).round() as u64);
    let tts = model.starts_with("tts-1");
    // (tts-1 ignores both `sse` and `instructions`.)
    let input_tokens = if tts { 0 } else { ((input.len() + instructions.len()) as u64).div_ceil(4) };
    Ok(Plan { model, format, sse: sse && !tts, ms, characters, input_tokens })
}

/// Bytes a second of the mock's `pcm` and `wav`: 24 kHz, 16-bit, mono.
const PCM_RATE: u64 = 48_000;
/// One MPEG-2 Layer III frame: 24 kHz, 64 kbit/s, mono, no padding: 576
/// samples (24 ms) in 192 bytes.
const MP3_FRAME_HEADER: [u8; 4] = [0xff, 0xf3, 0x84, 0xc0];
const MP3_FRAME_BYTES: u64 = 192;

impl Plan {
    /// Audio output tokens billed (`gpt-4o-mini-tts`): one each 48 ms.
    pub fn output_tokens(&self) -> u64 {
        if self.model.starts_with("tts-1") { 0 } else { self.ms.div_ceil(48) }
    }

    pub fn content_type(&self) -> &'static str {
        match self.format {
            "mp3" => "audio/mpeg",
            "opus" => "audio/ogg",
            "aac" => "audio/aac",
            "flac" => "audio/flac",
            "wav" => "audio/wav",
            _ => "audio/pcm",
        }
    }

    /// The audio, in pieces of at most `piece` bytes.
    pub fn audio(&self, piece: usize) -> Vec<Vec<u8>> {
        let mut out = match self.format {
            "mp3" => {
                let frames = self.ms.div_ceil(24);
                let mut frame = MP3_FRAME_HEADER.to_vec();
                frame.resize(MP3_FRAME_BYTES as usize, 0);
                frame.repeat(frames as usize)
            }
            "wav" | "pcm" => {
                let data = self.ms * PCM_RATE / 1000;
                let mut b = Vec::new();
                if self.format == "wav" {
                    b.extend(b"RIFF");
                    b.extend((36 + data as u32).to_le_bytes());
                    b.extend(b"WAVEfmt \x10\0\0\0\x01\0\x01\0\xc0\x5d\0\0\x80\xbb\0\0\x02\0\x10\0data");
                    b.extend((data as u32).to_le_bytes());
                }
                b.resize(b.len() + data as usize, 0);
                b
            }
            "opus" => ogg_opus(self.ms),
            other => {
                let magic: &[u8] = if other == "flac" { b"fLaC" } else { &[0xff, 0xf1] };
                let mut b = magic.to_vec();
                b.resize((self.ms * 8) as usize, 0);
                b
            }
        };
        let mut pieces = Vec::new();
        while out.len() > piece {
            let rest = out.split_off(piece);
            pieces.push(std::mem::replace(&mut out, rest));
        }
        pieces.push(out);
        pieces
    }

    /// The `sse` stream's events: the audio in base64 deltas, then the usage.
    pub fn events(&self) -> Vec<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ev: Vec<String> = self.audio(12 << 10).iter().map(|a| json!({"type": "speech.audio.delta", "audio": b64.encode(a)}).to_string()).collect();
        let out = self.output_tokens();
        ev.push(json!({"type": "speech.audio.done", "usage": {"input_tokens": self.input_tokens, "output_tokens": out, "total_tokens": self.input_tokens + out}}).to_string());
        ev
    }
}

/// One Ogg page (RFC 3533): `granule`, one packet (checksum left 0: the
/// audio is silence no test plays).
fn ogg_page(granule: u64, seq: u32, packet: &[u8]) -> Vec<u8> {
    let mut p = b"OggS\0".to_vec();
    p.push(if seq == 0 { 2 } else { 0 });
    p.extend(granule.to_le_bytes());
    p.extend(1u32.to_le_bytes());
    p.extend(seq.to_le_bytes());
    p.extend([0u8; 4]);
    let lacing: Vec<u8> = std::iter::repeat_n(255u8, packet.len() / 255).chain([(packet.len() % 255) as u8]).collect();
    p.push(lacing.len() as u8);
    p.extend(lacing);
    p.extend(packet);
    p
}

/// Ogg Opus (RFC 7845): OpusHead (mono, 312 samples of pre-skip, 24 kHz
/// input), OpusTags, then a page a second of 8,000 bytes (64 kbit/s), each
/// page's granule the 48 kHz samples played by its end, pre-skip included.
fn ogg_opus(ms: u64) -> Vec<u8> {
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend(312u16.to_le_bytes());
    head.extend(24_000u32.to_le_bytes());
    head.extend([0, 0, 0]);
    let mut b = ogg_page(0, 0, &head);
    b.extend(ogg_page(0, 1, b"OpusTags\x04\0\0\0mock\0\0\0\0"));
    let mut played = 0;
    let mut seq = 2;
    while played < ms {
        let step = (ms - played).min(1000);
        played += step;
        b.extend(ogg_page(312 + played * 48, seq, &vec![0u8; (step * 8) as usize]));
        seq += 1;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(v: Value) -> Result<Plan, Refusal> {
        plan(v.as_object().unwrap(), None)
    }

    #[test]
    fn speech_is_checked_and_spoken_as_the_api_does() {
        let fox = "The quick brown fox jumped over the lazy dog.";
        let p = ask(json!({"model": "gpt-4o-mini-tts", "input": fox, "voice": "alloy", "stream_format": "sse"})).unwrap();
        assert_eq!((p.format, p.sse, p.ms, p.characters, p.input_tokens, p.output_tokens()), ("mp3", true, 3_000, 45, 12, 63));
        let ev = p.events();
        assert!(ev.last().unwrap().contains(r#""usage":{"input_tokens":12,"output_tokens":63,"total_tokens":75}"#));
        // tts-1 ignores sse (sfortis/openai_tts#73) and bills no tokens.
        let t = ask(json!({"model": "tts-1", "input": fox, "voice": {"id": "voice_1234"}, "stream_format": "sse", "response_format": "pcm", "speed": 2})).unwrap();
        assert_eq!((t.sse, t.ms, t.output_tokens()), (false, 1_500, 0));
        assert_eq!(t.audio(1 << 20).concat().len(), 72_000);
        // mp3: 125 frames of 24 ms, 192 bytes each (64 kbit/s).
        assert_eq!(p.audio(1000).iter().map(Vec::len).sum::<usize>(), 125 * 192);
        for (v, param) in [
            (json!({"model": "tts-1", "input": fox, "voice": "alloy", "stream": true}), None),
            (json!({"model": "tts-1", "input": "x".repeat(4097), "voice": "alloy"}), Some("input")),
            (json!({"model": "tts-1", "input": fox}), Some("voice")),
            (json!({"model": "tts-1", "input": fox, "voice": "robot"}), Some("voice")),
            (json!({"model": "tts-1", "input": fox, "voice": "alloy", "speed": 5}), Some("speed")),
            (json!({"model": "tts-1", "input": fox, "voice": "alloy", "response_format": "ogg"}), Some("response_format")),
            (json!({"model": "tts-1", "voice": "alloy"}), Some("input")),
        ] {
            assert_eq!(ask(v.clone()).unwrap_err().2, param, "{v}");
        }
        assert_eq!(ask(json!({"model": "tts-2", "input": fox, "voice": "alloy"})).unwrap_err().0, 404);
        // Ogg Opus: the last page's granule is the 3 s played (at 48 kHz), pre-skip included.
        let o = ask(json!({"model": "gpt-4o-mini-tts", "input": fox, "voice": "alloy", "response_format": "opus"})).unwrap().audio(1 << 20).concat();
        let last = o.windows(4).rposition(|w| w == b"OggS").unwrap();
        assert_eq!(u64::from_le_bytes(o[last + 6..last + 14].try_into().unwrap()), 312 + 3_000 * 48);
    }
}
