//! `POST /v1/audio/transcriptions` and `/v1/audio/translations`, as
//! OpenAI answers them.
//!
//! Sources: openai-python `types/audio/transcription_create_params.py`
//! and `translation_create_params.py` (a multipart/form-data body: `file`
//! in flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm; `model`; lists as
//! `include[]`, `timestamp_granularities[]`, `known_speaker_names[]`,
//! `known_speaker_references[]`, at most 4 speakers; `chunking_strategy`
//! `auto` or `server_vad`, required for `gpt-4o-transcribe-diarize` past
//! 30 seconds; `prompt` not for diarization; `timestamp_granularities`
//! only with `verbose_json` on `whisper-1`, ignored by the others; `logprobs` only with `json` on `gpt-4o-transcribe`
//! and `gpt-4o-mini-transcribe`; "Streaming is not supported for the
//! `whisper-1` model and will be ignored"); the formats each model answers
//! (`whisper-1`: json, text, srt, verbose_json, vtt; the diarizing model:
//! json, text, diarized_json; the others json and text); `audio_model.py`
//! (the models); `transcription.py`, `transcription_verbose.py`,
//! `transcription_diarized.py`, `translation.py`, `translation_verbose.py`
//! (the answers: a translation carries no usage); OpenAI's API reference,
//! "Create transcription", its examples (a `whisper-1` verbose answer of
//! 8.47 s with `usage: {"type": "duration", "seconds": 9}`, the seconds
//! rounded up; a `gpt-4o-transcribe` answer with token usage; the stream:
//! `data:` lines only, `transcript.text.delta` events and one
//! `transcript.text.done` whose `usage` has no `type`,
//! tests/captures/openai_transcription_stream.sse); the speech-to-text
//! guide (25 MB the largest upload). OpenAI's errors: "Invalid file format.
//! Supported formats: [...]" for a file it does not take, "Audio file might
//! be corrupted or unsupported" (`invalid_value`, param `file`) for one it
//! cannot decode, 413 past 25 MB.
//!
//! The mock's own choices where the API decides: the audio's length is
//! read from a WAV's header (the tests send WAV); any other format it takes
//! is reckoned at 128 kbit/s; the transcript is 2.5 words a second of a
//! fixed text, a token a word; a token-billed model bills 10 audio tokens a
//! second and the prompt at a token per 4 bytes.

use axum::body::Bytes;
use serde_json::{json, Map, Value};

use crate::embeddings::Refusal;

const FORMATS: [&str; 10] = ["flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"];
const MAX_FILE: usize = 25 * 1024 * 1024;
const TRANSCRIBE_PARAMS: &[&str] = &[
    "file", "model", "chunking_strategy", "include", "keywords", "known_speaker_names", "known_speaker_references", "language", "languages", "prompt",
    "response_format", "stream", "temperature", "timestamp_granularities",
];
const TRANSLATE_PARAMS: &[&str] = &["file", "model", "prompt", "response_format", "temperature"];
const WORDS: [&str; 9] = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"];

fn bad(msg: impl Into<String>, param: Option<&'static str>) -> Refusal {
    (400, msg.into(), param, None)
}

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Transcribe,
    Translate,
}

/// A form as the API reads it: text fields (lists and objects as JSON),
/// the file's name and bytes.
#[derive(Debug, Default)]
pub struct Form {
    fields: Map<String, Value>,
    file: Option<(String, Bytes)>,
}

pub async fn read_form(content_type: &str, body: Bytes) -> Result<Form, Refusal> {
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(bad("Invalid Content-Type header (application/json), expected multipart/form-data.", None));
    }
    let mut form = Form::default();
    for crate::form::Part { name, file_name, data, .. } in crate::form::parts(content_type, body).await? {
        if name == "file" {
            let Some(f) = file_name else { return Err(bad("Invalid file: 'file' must be an uploaded file.", Some("file"))) };
            if form.file.replace((f, data)).is_some() {
                return Err(bad("Duplicate parameter: 'file'.", Some("file")));
            }
            continue;
        }
        if file_name.is_some() {
            return Err(bad(format!("Unrecognized file parameter: '{name}'."), None));
        }
        let text = String::from_utf8(data.to_vec()).map_err(|_| bad(format!("Invalid value for '{name}': not UTF-8."), None))?;
        let dup = || bad(format!("Duplicate parameter: '{name}'."), None);
        if let Some(base) = name.strip_suffix("[]") {
            match form.fields.entry(base).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(a) => a.push(Value::String(text)),
                _ => return Err(dup()),
            }
        } else if let Some((base, key)) = name.strip_suffix(']').and_then(|n| n.split_once('[')) {
            match form.fields.entry(base).or_insert_with(|| Value::Object(Map::new())) {
                Value::Object(o) if !o.contains_key(key) => {
                    o.insert(key.to_string(), Value::String(text));
                }
                _ => return Err(dup()),
            }
        } else if form.fields.insert(name.clone(), Value::String(text)).is_some() {
            return Err(dup());
        }
    }
    Ok(form)
}

/// How long a file plays, in milliseconds: a WAV's from its header, any
/// other format the API takes at 128 kbit/s; `None` for bytes no format.
fn length_ms(b: &[u8]) -> Option<u64> {
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WAVE") {
        let u32le = |at: usize| b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64);
        let (mut at, mut rate) = (12usize, None);
        while let (Some(id), Some(size)) = (b.get(at..at + 4), u32le(at + 4)) {
            match id {
                b"fmt " => rate = u32le(at + 16).filter(|r| *r > 0),
                b"data" => return Some(size.min((b.len() - at - 8) as u64) * 1000 / rate?),
                _ => {}
            }
            at += 8 + (size as usize).next_multiple_of(2);
        }
        return None;
    }
    let known = [&b"fLaC"[..], b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\x1a\x45\xdf\xa3"];
    (known.iter().any(|m| b.starts_with(m)) || b.get(4..8) == Some(b"ftyp")).then(|| b.len() as u64 * 8 / 128)
}

/// A checked request: what to answer and what it bills.
#[derive(Debug)]
pub struct Plan {
    pub task: Task,
    pub model: String,
    pub format: String,
    pub stream: bool,
    pub ms: u64,
    prompt_tokens: u64,
    logprobs: bool,
    words: bool,
}

fn field<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

pub fn plan(task: Task, form: &Form) -> Result<Plan, Refusal> {
    let m = &form.fields;
    let params = if task == Task::Transcribe { TRANSCRIBE_PARAMS } else { TRANSLATE_PARAMS };
    if let Some(k) = m.keys().find(|k| !params.contains(&k.as_str())) {
        return Err((400, format!("Unrecognized request argument supplied: {k}"), None, None));
    }
    let Some((name, bytes)) = &form.file else { return Err(bad("1 validation error for Request\nbody -> file\n  field required (type=value_error.missing)", Some("file"))) };
    let model = field(m, "model").filter(|s| !s.is_empty()).ok_or_else(|| bad("you must provide a model parameter", Some("model")))?.to_string();
    let known = match task {
        Task::Transcribe => ["whisper-1", "gpt-transcribe", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-transcribe-diarize"].contains(&model.as_str()),
        Task::Translate => model == "whisper-1",
    };
    if !known {
        return Err((404, format!("The model `{model}` does not exist or you do not have access to it."), Some("model"), Some("model_not_found")));
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if !FORMATS.contains(&ext.as_str()) {
        return Err(bad(format!("Invalid file format. Supported formats: {FORMATS:?}"), None));
    }
    if bytes.len() > MAX_FILE {
        return Err((413, format!("Maximum content size limit ({MAX_FILE}) exceeded ({} bytes read)", bytes.len()), None, None));
    }
    let ms = length_ms(bytes).ok_or((400, "Audio file might be corrupted or unsupported".to_string(), Some("file"), Some("invalid_value")))?;
    let whisper = model == "whisper-1";
    let diarize = model == "gpt-4o-transcribe-diarize";
    let format = field(m, "response_format").unwrap_or("json").to_string();
    let formats: &[&str] = match (whisper, diarize) {
        (true, _) => &["json", "text", "srt", "verbose_json", "vtt"],
        (_, true) => &["json", "text", "diarized_json"],
        _ => &["json", "text"],
    };
    if !formats.contains(&format.as_str()) {
        let allowed = formats.iter().map(|f| format!("'{f}'")).collect::<Vec<_>>().join(" or ");
        return Err((400, format!("response_format '{format}' is not compatible with model '{model}'. Use {allowed}."), Some("response_format"), Some("unsupported_value")));
    }
    let list = |k: &str| -> Result<Vec<String>, Refusal> {
        match m.get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.iter().filter_map(Value::as_str).map(str::to_string).collect()),
            Some(_) => Err(bad(format!("Invalid type for '{k}': expected an array (send it as '{k}[]')."), None)),
        }
    };
    let granularities = list("timestamp_granularities")?;
    if granularities.iter().any(|g| g != "word" && g != "segment") {
        return Err(bad("Invalid value for 'timestamp_granularities': expected 'word' or 'segment'.", Some("timestamp_granularities")));
    }
    // whisper-1 refuses them without verbose_json (SubtitleEdit/subtitleedit#11151 quotes the
    // error); the gpt-4o models ignore them (the Vercel AI SDK sends `segment` with `json` to
    // gpt-4o-transcribe, verified against the API in vercel/ai#8246).
    if !granularities.is_empty() && whisper && format != "verbose_json" {
        return Err(bad("`response_format` must be `verbose_json` if `timestamp_granularities[]` is provided", Some("timestamp_granularities")));
    }
    let include = list("include")?;
    let logprobs = include.iter().any(|i| i == "logprobs");
    if include.iter().any(|i| i != "logprobs") || (logprobs && (whisper || diarize || format != "json")) {
        return Err(bad("logprobs is only supported with response_format 'json' on gpt-4o-transcribe and gpt-4o-mini-transcribe.", Some("include")));
    }
    let names = list("known_speaker_names")?;
    let refs = list("known_speaker_references")?;
    if names.len() != refs.len() || names.len() > 4 || (!names.is_empty() && !diarize) {
        return Err(bad("known_speaker_names[] and known_speaker_references[] must name the same speakers, at most 4, for gpt-4o-transcribe-diarize.", Some("known_speaker_names")));
    }
    if diarize && m.contains_key("prompt") {
        return Err(bad("prompt is not supported with gpt-4o-transcribe-diarize.", Some("prompt")));
    }
    if diarize && ms > 30_000 && !m.contains_key("chunking_strategy") {
        return Err(bad("chunking_strategy is required for gpt-4o-transcribe-diarize when the audio is longer than 30 seconds.", Some("chunking_strategy")));
    }
    match m.get("chunking_strategy") {
        None => {}
        Some(Value::String(s)) if s == "auto" => {}
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("server_vad") => {}
        Some(_) => return Err(bad("Invalid chunking_strategy: expected 'auto' or an object with type 'server_vad'.", Some("chunking_strategy"))),
    }
    if let Some(t) = field(m, "temperature") {
        if !t.parse::<f64>().is_ok_and(|t| (0.0..=1.0).contains(&t)) {
            return Err(bad(format!("Invalid temperature: {t}. Expected a number from 0 to 1."), Some("temperature")));
        }
    }
    let stream = match field(m, "stream") {
        None | Some("false") => false,
        Some("true") => true,
        Some(s) => return Err(bad(format!("Invalid value for 'stream': '{s}' is not a boolean."), Some("stream"))),
    };
    Ok(Plan {
        task,
        // (whisper-1 does not stream: asked to, it answers whole.)
        stream: stream && !whisper,
        prompt_tokens: field(m, "prompt").map_or(0, |p| (p.len() as u64).div_ceil(4)),
        model,
        format,
        ms,
        logprobs,
        words: granularities.iter().any(|g| g == "word"),
    })
}

impl Plan {
    fn whisper(&self) -> bool {
        self.model == "whisper-1"
    }

    fn seconds(&self) -> f64 {
        self.ms as f64 / 1000.0
    }

    fn words(&self) -> Vec<&'static str> {
        let n = (self.ms * 25).div_ceil(10_000).max(1) as usize;
        WORDS.iter().cycle().take(n).copied().collect()
    }

    pub fn text(&self) -> String {
        let mut t = self.words().join(" ");
        t.push('.');
        if let Some(first) = t.get(..1).map(str::to_ascii_uppercase) {
            t.replace_range(..1, &first);
        }
        t
    }

    /// What the request bills: input tokens, output tokens, audio milliseconds.
    pub fn billed(&self) -> (u64, u64, u64) {
        if self.whisper() {
            // Billed by the second, rounded up (the reference's 8.47 s are 9).
            return (0, 0, self.ms.div_ceil(1000) * 1000);
        }
        (self.ms.div_ceil(100) + self.prompt_tokens, self.words().len() as u64, 0)
    }

    fn usage(&self, typed: bool) -> Value {
        let (input, output, ms) = self.billed();
        if self.whisper() {
            return json!({"type": "duration", "seconds": ms / 1000});
        }
        let mut u = json!({"input_tokens": input, "input_token_details": {"text_tokens": self.prompt_tokens, "audio_tokens": input - self.prompt_tokens}, "output_tokens": output, "total_tokens": input + output});
        if typed {
            u.as_object_mut().map(|o| o.insert("type".into(), json!("tokens")));
        }
        u
    }

    fn logprobs(&self) -> Value {
        Value::Array(self.words().iter().map(|w| json!({"token": format!(" {w}"), "logprob": -0.0001, "bytes": format!(" {w}").into_bytes()})).collect())
    }

    fn timestamp(&self, sep: char) -> String {
        let ms = self.ms;
        format!("{:02}:{:02}:{:02}{sep}{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
    }

    /// The whole answer: its body and content type.
    pub fn answer(&self) -> (String, &'static str) {
        let text = self.text();
        let task = if self.task == Task::Transcribe { "transcribe" } else { "translate" };
        let segment = json!({"id": 0, "seek": 0, "start": 0.0, "end": self.seconds(), "text": format!(" {text}"), "tokens": [50364, 440, 50530],
            "temperature": 0.0, "avg_logprob": -0.28, "compression_ratio": 1.23, "no_speech_prob": 0.01});
        let mut body = match self.format.as_str() {
            "text" => return (format!("{text}\n"), "text/plain; charset=utf-8"),
            "srt" => return (format!("1\n00:00:00,000 --> {}\n{text}\n\n", self.timestamp(',')), "text/plain; charset=utf-8"),
            "vtt" => return (format!("WEBVTT\n\n00:00:00.000 --> {}\n{text}\n\n", self.timestamp('.')), "text/plain; charset=utf-8"),
            "verbose_json" => {
                let mut v = json!({"task": task, "language": "english", "duration": self.seconds(), "text": text, "segments": [segment]});
                if self.words {
                    let step = self.seconds() / self.words().len() as f64;
                    let words: Vec<Value> = self.words().iter().enumerate().map(|(i, w)| json!({"word": w, "start": i as f64 * step, "end": (i + 1) as f64 * step})).collect();
                    v["words"] = Value::Array(words);
                }
                v
            }
            "diarized_json" => json!({"task": "transcribe", "duration": self.seconds(), "text": format!("A: {text}"),
                "segments": [{"type": "transcript.text.segment", "id": "seg_001", "start": 0.0, "end": self.seconds(), "text": text, "speaker": "A"}]}),
            _ => json!({"text": text}),
        };
        if self.task == Task::Transcribe {
            body["usage"] = self.usage(true);
        }
        if self.logprobs {
            body["logprobs"] = self.logprobs();
        }
        (body.to_string(), "application/json")
    }

    /// The stream's events (`data:` lines only, as OpenAI sends them).
    pub fn events(&self) -> Vec<String> {
        let words = self.words();
        let mut out: Vec<String> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let delta = if i == 0 { w.to_string() } else { format!(" {w}") };
                json!({"type": "transcript.text.delta", "delta": delta}).to_string()
            })
            .collect();
        out.push(json!({"type": "transcript.text.delta", "delta": "."}).to_string());
        // (The text the deltas spell; the first word as sent.)
        let text: String = words.iter().enumerate().map(|(i, w)| if i == 0 { w.to_string() } else { format!(" {w}") }).collect::<String>() + ".";
        out.push(json!({"type": "transcript.text.done", "text": text, "usage": self.usage(false)}).to_string());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(ms: u64) -> Vec<u8> {
        let data = (ms * 16) as u32; // 8 kHz mono 16-bit: 16 bytes a millisecond
        let mut w = b"RIFF".to_vec();
        w.extend((36 + data).to_le_bytes());
        w.extend(b"WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data");
        w.extend(data.to_le_bytes());
        w.extend(vec![0u8; data as usize]);
        w
    }

    fn form(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Bytes) {
        let mut b = Vec::new();
        for (k, v) in fields {
            b.extend_from_slice(format!("--B\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
        }
        if let Some((name, data)) = file {
            b.extend_from_slice(format!("--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n").as_bytes());
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--B--\r\n");
        ("multipart/form-data; boundary=B".into(), Bytes::from(b))
    }

    async fn transcribe(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Result<Plan, Refusal> {
        let (ct, body) = form(fields, file);
        plan(Task::Transcribe, &read_form(&ct, body).await?)
    }

    #[tokio::test]
    async fn whisper_bills_seconds_rounded_up_and_the_others_tokens() {
        let audio = wav(8_470);
        let p = transcribe(&[("model", "whisper-1"), ("response_format", "verbose_json"), ("timestamp_granularities[]", "word")], Some(("speech.wav", &audio))).await.unwrap();
        let (body, ct) = p.answer();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((ct, &v["usage"], &v["duration"]), ("application/json", &json!({"type": "duration", "seconds": 9}), &json!(8.47)));
        assert!(v["words"].as_array().is_some_and(|w| !w.is_empty()));
        let p = transcribe(&[("model", "gpt-4o-transcribe"), ("prompt", "names: Ada")], Some(("a.wav", &audio))).await.unwrap();
        let v: Value = serde_json::from_str(&p.answer().0).unwrap();
        assert_eq!(v["usage"]["input_token_details"], json!({"text_tokens": 3, "audio_tokens": 85}));
        assert_eq!(v["usage"]["type"], "tokens");
        // A stream: deltas, then the done event with an untyped usage (as published).
        let p = transcribe(&[("model", "gpt-4o-mini-transcribe"), ("stream", "true")], Some(("a.wav", &audio))).await.unwrap();
        let events = p.events();
        let done: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert_eq!((done["type"].as_str(), done["usage"].get("type")), (Some("transcript.text.done"), None));
        // whisper-1 asked to stream answers whole; srt as text.
        let p = transcribe(&[("model", "whisper-1"), ("stream", "true"), ("response_format", "srt")], Some(("a.wav", &audio))).await.unwrap();
        assert!(!p.stream);
        assert!(p.answer().0.starts_with("1\n00:00:00,000 --> 00:00:08,470\n"));
    }

    type Fields<'a> = Vec<(&'a str, &'a str)>;
    type File<'a> = Option<(&'a str, &'a [u8])>;

    #[tokio::test]
    async fn refuses_what_openai_refuses() {
        let audio = wav(1_000);
        let a: Option<(&str, &[u8])> = Some(("a.wav", &audio));
        let cases: Vec<(Fields, File)> = vec![
            (vec![("model", "whisper-1")], None),
            (vec![], a),
            (vec![("model", "gpt-4o")], a),
            (vec![("model", "whisper-1")], Some(("a.txt", &audio))),
            (vec![("model", "whisper-1")], Some(("a.mp3", b"not audio"))),
            (vec![("model", "gpt-4o-transcribe"), ("response_format", "srt")], a),
            (vec![("model", "whisper-1"), ("timestamp_granularities[]", "word")], a),
            (vec![("model", "whisper-1"), ("include[]", "logprobs")], a),
            (vec![("model", "gpt-4o-transcribe-diarize"), ("prompt", "x")], a),
            (vec![("model", "whisper-1"), ("temperature", "2")], a),
            (vec![("model", "whisper-1"), ("stream", "yes")], a),
            (vec![("model", "whisper-1"), ("max_tokens", "5")], a),
            (vec![("model", "whisper-1"), ("model", "whisper-1")], a),
            (vec![("model", "gpt-4o-transcribe-diarize"), ("known_speaker_names[]", "agent")], a),
            (vec![("model", "whisper-1"), ("include", "logprobs"), ("include[]", "logprobs")], a),
        ];
        for (fields, file) in cases {
            assert!(transcribe(&fields, file).await.is_err(), "{fields:?}");
        }
        let (ct, body) = form(&[("model", "gpt-4o-transcribe")], a);
        assert!(plan(Task::Translate, &read_form(&ct, body).await.unwrap()).is_err());
        assert!(read_form("application/json", Bytes::from_static(b"{}")).await.is_err());
        let long = wav(31_000);
        assert!(transcribe(&[("model", "gpt-4o-transcribe-diarize")], Some(("a.wav", &long))).await.is_err());
        assert!(transcribe(&[("model", "gpt-4o-transcribe-diarize"), ("chunking_strategy", "auto")], Some(("a.wav", &long))).await.is_ok());
    }
}
