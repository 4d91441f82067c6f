//! Audio in chat completions (OpenAI's audio models: gpt-audio,
//! gpt-4o-audio-preview …), as api.openai.com answers them.
//!
//! Sources: the API reference, "Create chat completion" (`modalities`:
//! `["text", "audio"]` with an `audio` object naming `voice` and `format`;
//! the answer's `message.audio` — `id`, `data` (base64), `expires_at`,
//! `transcript` — and `content` null); openai-python
//! `types/completion_usage.py` (`prompt_tokens_details.audio_tokens`,
//! `completion_tokens_details.audio_tokens`, within the prompt and
//! completion totals); an audio model asked for neither audio in nor out
//! answers 400 "This model requires that either input content or output
//! modality contain audio." (quoted in CherryHQ/cherry-studio#1179).
//! Audio tokens are billed at their own, higher rates: a gateway that
//! prices them as text counts a fraction of the bill.

use serde_json::{json, Value};

/// The audio tokens of a request's input and of its answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Audio {
    pub input: u64,
    pub output: u64,
}

fn is_audio_model(model: &str) -> bool {
    model.starts_with("gpt-audio") || model.contains("-audio-")
}

/// The `input_audio` parts of the messages: a token per 64 base64 bytes.
fn input_tokens(req: &Value) -> Option<u64> {
    let parts = req.get("messages")?.as_array()?.iter().filter_map(|m| m.get("content")?.as_array()).flatten();
    let audio: Vec<u64> = parts
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("input_audio"))
        .map(|p| p.pointer("/input_audio/data").and_then(Value::as_str).map_or(0, |d| d.len() as u64).div_ceil(64).max(1))
        .collect();
    (!audio.is_empty()).then(|| audio.iter().sum())
}

/// Checks the request; `output` is the answer's text tokens (the spoken
/// answer is `x-mock-audio-output-tokens`, else 4 a text token).
pub fn plan(req: &Value, model: &str, output: u64, audio_output: Option<u64>) -> Result<Audio, (String, Option<&'static str>)> {
    let speaks = req.get("modalities").and_then(Value::as_array).is_some_and(|m| m.iter().any(|v| v == "audio"));
    if speaks && !req.get("audio").is_some_and(|a| a.get("voice").is_some() && a.get("format").is_some()) {
        return Err(("Missing required parameter: 'audio'.".into(), Some("audio")));
    }
    let input = input_tokens(req);
    if is_audio_model(model) && !speaks && input.is_none() {
        return Err(("This model requires that either input content or output modality contain audio.".into(), None));
    }
    Ok(Audio { input: input.unwrap_or(0), output: if speaks { audio_output.unwrap_or(output * 4) } else { 0 } })
}

/// `message.audio` of a spoken answer whose transcript is `text`.
pub fn message(text: &str, n: u64) -> Value {
    json!({"id": format!("audio_mock{n:020}"), "data": "UklGRiQAAABXQVZFZm10IBAAAAABAAEAgD4AAAB9AAACABAAZGF0YQAAAAA=",
           "expires_at": 1_767_229_200u64 + n, "transcript": text})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_is_asked_and_counted_as_the_api_does() {
        let ask = json!({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
                         "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "A".repeat(640), "format": "wav"}}]}]});
        assert_eq!(plan(&ask, "gpt-audio", 10, None), Ok(Audio { input: 10, output: 40 }));
        assert_eq!(plan(&ask, "gpt-audio", 10, Some(7)).map(|a| a.output), Ok(7));
        let no_voice = json!({"modalities": ["text", "audio"], "messages": []});
        assert_eq!(plan(&no_voice, "gpt-audio", 10, None).unwrap_err().1, Some("audio"));
        let text_only = json!({"messages": [{"role": "user", "content": "hi"}]});
        assert!(plan(&text_only, "gpt-4o-audio-preview", 10, None).unwrap_err().0.starts_with("This model requires"));
        assert_eq!(plan(&text_only, "gpt-5.4", 10, None), Ok(Audio::default()));
    }
}
