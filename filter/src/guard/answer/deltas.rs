//! Where each API's stream events carry generated text: the channels an
//! answer guard holds text in.

use serde_json::Value;
use tollgate_protocol::Api;

/// Calls `f(channel, text)` for every piece of generated text an event of
/// `api`'s stream carries.
pub(super) fn for_each_delta(api: Api, v: &mut Value, f: &mut dyn FnMut(String, &mut String)) {
    let idx = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    match api {
        Api::OpenAiChat | Api::OpenAiCompletions => {
            let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else { return };
            for c in choices {
                let i = idx(c, "index");
                if let Some(Value::String(s)) = c.get_mut("text") {
                    f(format!("c{i}"), s);
                }
                let Some(d) = c.get_mut("delta") else { continue };
                for k in ["content", "refusal", "reasoning_content"] {
                    if let Some(Value::String(s)) = d.get_mut(k) {
                        f(format!("{k}{i}"), s);
                    }
                }
                for tc in d.get_mut("tool_calls").and_then(Value::as_array_mut).into_iter().flatten() {
                    let t = idx(tc, "index");
                    if let Some(Value::String(s)) = tc.get_mut("function").and_then(|x| x.get_mut("arguments")) {
                        f(format!("tool{i}.{t}"), s);
                    }
                }
            }
        }
        Api::AnthropicMessages => {
            if v.get("type").and_then(Value::as_str) != Some("content_block_delta") {
                return;
            }
            let i = idx(v, "index");
            let Some(d) = v.get_mut("delta").and_then(Value::as_object_mut) else { return };
            for k in ["text", "partial_json", "thinking"] {
                if let Some(Value::String(s)) = d.get_mut(k) {
                    f(format!("b{i}"), s);
                }
            }
        }
        Api::OpenAiResponses => {
            let ty = v.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
            if !ty.ends_with(".delta") {
                return;
            }
            let ch = format!("{}.{}.{}", idx(v, "output_index"), idx(v, "content_index"), ty);
            if let Some(Value::String(s)) = v.get_mut("delta") {
                f(ch, s);
            }
        }
        Api::GeminiGenerateContent => {
            let Some(cands) = v.get_mut("candidates").and_then(Value::as_array_mut) else { return };
            for (n, c) in cands.iter_mut().enumerate() {
                let i = c.get("index").and_then(Value::as_u64).unwrap_or(n as u64);
                let parts = c.get_mut("content").and_then(|x| x.get_mut("parts")).and_then(Value::as_array_mut);
                for (j, p) in parts.into_iter().flatten().enumerate() {
                    if let Some(Value::String(s)) = p.get_mut("text") {
                        f(format!("{i}.{j}"), s);
                    }
                }
            }
        }
        // A transcript's text (`transcript.text.done` repeats it whole, scanned as a whole event).
        Api::OpenAiTranscriptions | Api::OpenAiTranslations => {
            if v.get("type").and_then(Value::as_str) != Some("transcript.text.delta") {
                return;
            }
            if let Some(Value::String(s)) = v.get_mut("delta") {
                f("transcript".to_string(), s);
            }
        }
        Api::OpenAiEmbeddings | Api::GeminiEmbedContent | Api::OpenAiModerations | Api::OpenAiImages | Api::OpenAiImageEdits | Api::OpenAiSpeech | Api::OpenAiDecisions => {}
    }
}
