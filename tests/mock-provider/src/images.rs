//! `POST /v1/images/generations`, as OpenAI answers it for the GPT image models.
//!
//! Sources: openai-python 3.3.1 (2026-08) `types/image_generate_params.py`
//! (the members, `n` 1 to 10, `partial_images` 0 to 3, `quality` low /
//! medium / high / auto for the GPT image models, `response_format` and
//! `style` DALL·E's only, `gpt-image-2` sizes `WIDTHxHEIGHT` divisible by
//! 16, aspect ratio at most 3:1, edge at most 3840, 8,294,400 pixels),
//! `types/image_model.py` (the model names), `types/images_response.py`
//! (the answer and its `usage`, `output_tokens_details` beside it),
//! `types/image_gen_stream_event.py`, `image_gen_partial_image_event.py`,
//! `image_gen_completed_event.py` (the stream: partial images, then a
//! completed event with the usage); OpenAI's image generation guide
//! ("Cost and latency": 272 / 1,056 / 4,160 tokens for a 1024×1024 image
//! at low / medium / high, 1.5 × for 1024×1536 and 1536×1024; each partial
//! image 100 more output tokens). The Vercel AI SDK's OpenAI provider
//! 3.0.141 (`modelMaxImagesPerCall`, `openaiImageModelGenerationOptions`)
//! for the models after those: GPT Image 2.5 (`xhigh` and `max` quality)
//! and 2.6 (`complexity`; animated GIFs, `frame_count` 2 to 64, 9 by
//! default, `frame_duration_ms` 20 to 2000), and `safety_identifier`. The
//! DALL·E models, which report no usage, are not served: OpenAI's
//! deprecations page retired them on 2026-05-12, since when a request
//! naming one (or none: DALL·E 2 is the default) is refused "The model
//! `dall-e-3` has been deprecated. …", `model_not_found` (as developers
//! migrating quoted it, e.g. dev.to "DALL·E shuts down May 12"). GPT
//! Image 1 the same way: openai-python 3.57 `resources/images.py`,
//! "`gpt-image-1` was shut down on October 23, 2026".
//!
//! Each image of `n` is billed as a call of its own, its input tokens with
//! it (measured: community.openai.com, "OpenAI must document the input
//! image pricing of gpt-image-2", 2026-06: "n>1 constitutes billing as
//! individual calls").
//!
//! The mock's own choices where the API decides: `auto` quality is medium,
//! `auto` size 1024×1024; a stream sends each image's usage in its
//! completed event (the prompt's tokens with each); past the published
//! sizes, twice the pixels' share of tokens; `xhigh` and `max` 2 and 4
//! times `high`; a GIF a whole image a frame (the gateway reserves the same:
//! filter `request/images.rs`).

use serde_json::{json, Map, Value};

use crate::embeddings::Refusal;

const PARAMS: &[&str] = &[
    "prompt", "model", "background", "moderation", "n", "output_compression", "output_format", "partial_images",
    "quality", "response_format", "size", "style", "user", "stream", "complexity", "frame_count", "frame_duration_ms", "safety_identifier",
];
const MODELS: &[&str] = &[
    "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2", "gpt-image-2-2026-04-21", "chatgpt-image-latest",
    "gpt-image-2.5-flare", "gpt-image-2.5-flare-2026-09-08", "gpt-image-2.5-sunburst", "gpt-image-2.5-sunburst-2026-09-08",
    "gpt-image-2.6-flare", "gpt-image-2.6-sunburst",
];
const STANDARD_SIZES: &[&str] = &["1024x1024", "1536x1024", "1024x1536"];
/// A real 1×1 PNG.
pub const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

fn bad(msg: impl Into<String>, param: &'static str) -> Refusal {
    (400, msg.into(), Some(param), None)
}

fn invalid(param: &'static str) -> Refusal {
    bad(format!("Invalid value for '{param}'. Please check the API reference: https://platform.openai.com/docs/api-reference."), param)
}

/// What a request asked for, checked.
#[derive(Debug)]
pub struct Plan {
    pub model: &'static str,
    pub stream: bool,
    pub n: u64,
    pub partial_images: u64,
    quality: &'static str,
    size: String,
    pixels: u64,
    background: &'static str,
    output_format: &'static str,
    frames: u64,
    pub input: u64,
    /// An edit's input image tokens (0 for a generation).
    pub image_input: u64,
    /// The stream's event prefix: `image_generation`, or `image_edit`.
    pub kind: &'static str,
}

fn text<'a>(m: &'a Map<String, Value>, k: &'static str) -> Result<Option<&'a str>, Refusal> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(k)),
    }
}

fn one_of(m: &Map<String, Value>, k: &'static str, known: &[&'static str], default: &'static str) -> Result<&'static str, Refusal> {
    match text(m, k)? {
        None => Ok(default),
        Some(v) => known.iter().copied().find(|x| *x == v).ok_or_else(|| {
            bad(format!("Invalid value: '{v}'. Supported values are: {}.", known.iter().map(|x| format!("'{x}'")).collect::<Vec<_>>().join(", ")), k)
        }),
    }
}

fn int(m: &Map<String, Value>, k: &'static str, range: std::ops::RangeInclusive<u64>, default: u64) -> Result<u64, Refusal> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().filter(|n| range.contains(n)).ok_or_else(|| invalid(k)),
    }
}

/// A `gpt-image-2` size: each edge a multiple of 16 and at most 3840, at most 3:1, at most 8,294,400 pixels.
fn free_size(s: &str) -> Option<(u64, u64)> {
    let (w, h) = s.split_once('x')?;
    let (w, h): (u64, u64) = (w.parse().ok()?, h.parse().ok()?);
    let ok = w > 0 && h > 0 && w % 16 == 0 && h % 16 == 0 && w.max(h) <= 3840 && w.max(h) <= 3 * w.min(h) && w * h <= 3840 * 2160;
    ok.then_some((w, h))
}

/// Checks a request body as the API does.
pub fn plan(m: &Map<String, Value>) -> Result<Plan, Refusal> {
    if let Some(k) = m.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err((400, format!("Unknown parameter: '{k}'."), None, Some("unknown_parameter")));
    }
    let retired = |m: &str| (404, format!("The model `{m}` has been deprecated. Learn more: https://platform.openai.com/docs/deprecations"), None, Some("model_not_found"));
    let model = match text(m, "model")? {
        // OpenAI's default is DALL·E 2.
        None => return Err(retired("dall-e-2")),
        Some(s @ ("dall-e-2" | "dall-e-3" | "gpt-image-1")) => return Err(retired(s)),
        Some(s) => MODELS.iter().copied().find(|x| *x == s).ok_or((404, format!("The model `{s}` does not exist or you do not have access to it."), None, Some("model_not_found")))?,
    };
    let prompt = text(m, "prompt")?.ok_or_else(|| bad("Missing required parameter: 'prompt'.", "prompt"))?;
    if prompt.chars().count() > 32_000 {
        return Err(bad("Invalid 'prompt': string too long. Expected a string with maximum length 32000.", "prompt"));
    }
    for dalle_only in ["response_format", "style"] {
        if m.get(dalle_only).is_some_and(|v| !v.is_null()) {
            return Err(bad(format!("Unknown parameter: '{dalle_only}'."), if dalle_only == "style" { "style" } else { "response_format" }));
        }
    }
    let stream = match m.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream")),
    };
    let n = int(m, "n", 1..=10, 1)?;
    let partial_images = int(m, "partial_images", 0..=3, 0)?;
    let v25 = model.starts_with("gpt-image-2.5");
    let v26 = model.starts_with("gpt-image-2.6");
    let qualities: &[&'static str] = if v25 { &["low", "medium", "high", "xhigh", "max", "auto"] } else { &["low", "medium", "high", "auto"] };
    let quality = match one_of(m, "quality", qualities, "auto")? {
        "auto" => "medium",
        q => q,
    };
    for only_26 in ["complexity", "frame_count", "frame_duration_ms"] {
        if !v26 && m.get(only_26).is_some_and(|v| !v.is_null()) {
            return Err(bad(format!("Unknown parameter: '{only_26}'."), if only_26 == "complexity" { "complexity" } else { "frame_count" }));
        }
    }
    one_of(m, "complexity", &["low", "medium", "high"], "high")?;
    int(m, "frame_duration_ms", 20..=2000, 200)?;
    let (size, pixels) = match text(m, "size")? {
        None | Some("auto") => ("1024x1024".to_string(), 1024 * 1024),
        Some(s) if STANDARD_SIZES.contains(&s) || model.starts_with("gpt-image-2") => {
            let (w, h) = free_size(s).ok_or_else(|| bad(format!("Invalid size '{s}'."), "size"))?;
            (s.to_string(), w * h)
        }
        Some(s) => return Err(bad(format!("Invalid value: '{s}'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'."), "size")),
    };
    let formats: &[&'static str] = if v26 { &["png", "jpeg", "webp", "gif"] } else { &["png", "jpeg", "webp"] };
    let output_format = one_of(m, "output_format", formats, "png")?;
    let frames = int(m, "frame_count", 2..=64, 9)?;
    let background = match one_of(m, "background", &["transparent", "opaque", "auto"], "auto")? {
        "transparent" if output_format == "jpeg" => return Err(bad("Transparent background requires output_format png or webp.", "background")),
        "auto" => "opaque",
        b => b,
    };
    one_of(m, "moderation", &["low", "auto"], "auto")?;
    int(m, "output_compression", 0..=100, 100)?;
    if m.get("user").is_some_and(|u| !u.is_string()) {
        return Err(invalid("user"));
    }
    if m.get("safety_identifier").is_some_and(|u| u.as_str().is_none_or(|s| s.len() > 128)) {
        return Err(invalid("safety_identifier"));
    }
    let frames = if output_format == "gif" { frames } else { 1 };
    let input = (prompt.len() as u64).div_ceil(4);
    Ok(Plan { model, stream, n, partial_images, quality, size, pixels, background, output_format, frames, input, image_input: 0, kind: "image_generation" })
}

/// The Responses API's image generation tool (openai-python 3.57
/// `types/responses/tool.py`, `ImageGeneration`: `gpt-image-2.6-sunburst`
/// when it names no model), checked as an image generation asking the same:
/// (tokens of one image, partial images a stream gets).
pub fn tool(t: &Value) -> Result<(u64, u64), Refusal> {
    let mut m = Map::new();
    m.insert("prompt".into(), json!("the prompt the model writes"));
    m.insert("model".into(), t.get("model").cloned().unwrap_or(json!("gpt-image-2.6-sunburst")));
    for k in ["quality", "size", "partial_images", "background", "output_format", "output_compression", "moderation"] {
        if let Some(v) = t.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    let p = plan(&m)?;
    Ok((p.image_tokens(), p.partial_images))
}

/// The tool's input tokens a call: the prompt the model writes for it (the mock's choice).
pub const TOOL_PROMPT_TOKENS: u64 = 20;

impl Plan {
    /// One image's output tokens (its partial images' with it when streamed).
    pub fn image_tokens(&self) -> u64 {
        let square = match self.quality {
            "low" => 272,
            "medium" => 1056,
            "xhigh" => 2 * 4160,
            "max" => 4 * 4160,
            _ => 4160,
        };
        let beyond_the_table = if self.pixels > 1536 * 1024 { 2 } else { 1 };
        (square * self.pixels * beyond_the_table).div_ceil(1024 * 1024) * self.frames + if self.stream { self.partial_images * 100 } else { 0 }
    }

    /// All output tokens.
    pub fn output(&self) -> u64 {
        self.image_tokens() * self.n
    }

    fn usage(&self, images: u64) -> Value {
        // Each image is billed as a call of its own, its input with it.
        let output = self.image_tokens() * images;
        let input = (self.input + self.image_input) * images;
        let mut u = json!({
            "input_tokens": input,
            "input_tokens_details": {"image_tokens": self.image_input * images, "text_tokens": self.input * images},
            "output_tokens": output,
            "total_tokens": input + output,
        });
        // (GPT Image 1 Mini reports no output details, as GPT Image 1 did.)
        if !self.model.starts_with("gpt-image-1") || self.model == "gpt-image-1.5" {
            u["output_tokens_details"] = json!({"image_tokens": output, "text_tokens": 0});
        }
        u
    }

    /// The JSON answer; `b64_bytes`, when given, the length of each image's base64.
    pub fn answer(&self, created: u64, b64_bytes: Option<usize>) -> String {
        let b64 = image(b64_bytes);
        let data: Vec<Value> = (0..self.n).map(|_| json!({"b64_json": b64})).collect();
        json!({
            "created": created, "background": self.background, "data": data, "output_format": self.output_format,
            "quality": self.quality, "size": self.size, "usage": self.usage(self.n),
        })
        .to_string()
    }

    /// The stream's events (name, data): each image's partial images, then its completed event.
    pub fn events(&self, created: u64, b64_bytes: Option<usize>) -> Vec<(&'static str, String)> {
        let b64 = image(b64_bytes);
        let mut out = Vec::new();
        let (partial, completed) = if self.kind == "image_edit" {
            ("image_edit.partial_image", "image_edit.completed")
        } else {
            ("image_generation.partial_image", "image_generation.completed")
        };
        for _ in 0..self.n {
            for i in 0..self.partial_images {
                let ev = json!({"type": partial, "b64_json": b64, "created_at": created, "size": self.size,
                    "quality": self.quality, "background": self.background, "output_format": self.output_format, "partial_image_index": i});
                out.push((partial, ev.to_string()));
            }
            let ev = json!({"type": completed, "b64_json": b64, "created_at": created, "size": self.size,
                "quality": self.quality, "background": self.background, "output_format": self.output_format, "usage": self.usage(1)});
            out.push((completed, ev.to_string()));
        }
        out
    }
}

/// An image's base64: a real PNG, or `bytes` of base64 (the size of a real image).
fn image(bytes: Option<usize>) -> String {
    match bytes {
        Some(n) => "A".repeat(n / 4 * 4),
        None => PNG.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn answers_with_the_tokens_of_the_quality_and_size() {
        let p = plan(&obj(json!({"model": "gpt-image-1.5", "prompt": "an otter", "n": 2, "size": "1536x1024", "quality": "high"}))).unwrap();
        let a: Value = serde_json::from_str(&p.answer(1, None)).unwrap();
        assert_eq!((a["usage"]["output_tokens"].as_u64(), a["data"].as_array().unwrap().len()), (Some(2 * 6240), 2));
        assert_eq!(a["usage"]["output_tokens_details"]["image_tokens"], json!(12480));
        let p = plan(&obj(json!({"model": "gpt-image-1-mini", "prompt": "x", "stream": true, "partial_images": 2, "quality": "low"}))).unwrap();
        let ev = p.events(1, None);
        assert_eq!(ev.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"]);
        let done: Value = serde_json::from_str(&ev[2].1).unwrap();
        assert_eq!(done["usage"]["output_tokens"], json!(272 + 200));
        assert!(done["usage"].get("output_tokens_details").is_none(), "GPT Image 1 Mini reports none");
        // Shut down on 2026-10-23: refused as the retired DALL·E models are.
        assert_eq!(plan(&obj(json!({"model": "gpt-image-1", "prompt": "x"}))).unwrap_err().3, Some("model_not_found"));
        let p = plan(&obj(json!({"model": "gpt-image-2", "prompt": "x", "size": "3840x2160", "quality": "high"}))).unwrap();
        assert_eq!(p.output(), (2 * 4160 * 3840 * 2160u64).div_ceil(1 << 20));
        let p = plan(&obj(json!({"model": "gpt-image-2.6-flare", "prompt": "x", "output_format": "gif", "frame_count": 12, "quality": "low", "size": "1024x1024"}))).unwrap();
        assert_eq!(p.output(), 12 * 272);
        let p = plan(&obj(json!({"model": "gpt-image-2.5-sunburst", "prompt": "x", "quality": "max", "size": "1024x1024"}))).unwrap();
        assert_eq!(p.output(), 4 * 4160);
    }

    #[test]
    fn refuses_what_openai_refuses() {
        for (body, status) in [
            (json!({"model": "gpt-image-1.5"}), 400),
            (json!({"prompt": "x"}), 404),
            (json!({"model": "dall-e-3", "prompt": "x"}), 404),
            (json!({"model": "gpt-image-1.5", "prompt": "x", "n": 11}), 400),
            (json!({"model": "gpt-image-1.5", "prompt": "x", "quality": "hd"}), 400),
            (json!({"model": "gpt-image-1.5", "prompt": "x", "size": "1792x1024"}), 400),
            (json!({"model": "gpt-image-2", "prompt": "x", "size": "1000x1000"}), 400),
            (json!({"model": "gpt-image-2", "prompt": "x", "size": "3840x1024"}), 400),
            (json!({"model": "gpt-image-1.5", "prompt": "x", "response_format": "b64_json"}), 400),
            (json!({"model": "gpt-image-1.5", "prompt": "x", "style": "vivid"}), 400),
            (json!({"model": "gpt-image-1.5", "prompt": "x", "partial_images": 4}), 400),
            (json!({"model": "gpt-image-1.5", "prompt": "x", "background": "transparent", "output_format": "jpeg"}), 400),
            (json!({"model": "gpt-image-1.5", "prompt": "x", "max_tokens": 5}), 400),
            (json!({"model": "gpt-image-1.5", "prompt": 7}), 400),
            (json!({"model": "gpt-image-1.5", "prompt": "x", "quality": "xhigh"}), 400),
            (json!({"model": "gpt-image-2.5-flare", "prompt": "x", "output_format": "gif"}), 400),
            (json!({"model": "gpt-image-2.6-flare", "prompt": "x", "output_format": "gif", "frame_count": 65}), 400),
            (json!({"model": "gpt-image-2", "prompt": "x", "frame_count": 9}), 400),
        ] {
            assert_eq!(plan(&obj(body.clone())).unwrap_err().0, status, "{body}");
        }
    }
}
