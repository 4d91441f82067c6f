//! `POST /v1/images/edits`, as OpenAI answers it for the GPT image models.
//!
//! Sources: openai-python 3.3.1 `types/image_edit_params.py` (a
//! multipart/form-data body: `image` one file or several, `image[]` as the
//! SDK names them, each a png, webp or jpg under 50 MB, at most 16; `mask` a
//! PNG under 4 MB; `prompt` required, at most 32,000 characters;
//! `input_fidelity` high or low; the model `gpt-image-1.5` when none is
//! named), `types/image_edit_completed_event.py` and
//! `image_edit_partial_image_event.py` (the stream: `image_edit.*` events);
//! the JSON form of the same request, which names its images by reference
//! (`images: [{"image_url"} | {"file_id"}]`, `mask` likewise: Azure
//! Foundry's reference "Create an image edit json", ZenMux's OpenAI-
//! compatible reference); the Vercel AI SDK's OpenAI provider 3.0.141
//! (`markup`, a PNG, for GPT Image 2.5 and 2.6; `complexity`,
//! `safety_identifier`); a client that edits in production, sdcb/chats
//! (`moderation` on edits, and a recorded `image_edit.completed`: 194
//! input image tokens for one 1024×1024 image at low fidelity, as the
//! mock bills it; tests/captures/openai_image_edit_stream.sse); OpenAI's answer to an image it cannot read (400
//! "Invalid image file or mode for image 1, please check your image
//! file.", `invalid_image_file`, as quoted in lofcz/LLMTornado#105).
//!
//! The mock's own choices where the API decides (it publishes no formula):
//! each input image is 194 tokens at low fidelity (a 1024×1024 picture's,
//! as developers measured GPT Image 1) and 3,050 at high (fal.ai's
//! published figure for 1024×1024), the GPT Image 2 models' always high;
//! a mask or markup costs nothing more. The output is a generation's
//! (images.rs), billed per image with its input.

use axum::body::Bytes;
use serde_json::{Map, Value};

use crate::embeddings::Refusal;
use crate::images::{self, Plan};

/// Members an edit takes besides a generation's own (checked by `images::plan`).
const PARAMS: &[&str] = &[
    "image", "images", "prompt", "background", "input_fidelity", "mask", "markup", "model", "n", "output_compression", "output_format",
    "partial_images", "quality", "response_format", "size", "stream", "user", "complexity", "safety_identifier", "moderation",
];
const MAX_IMAGE: usize = 50 * 1024 * 1024;
const MAX_MASK: usize = 4 * 1024 * 1024;
const LOW_FIDELITY: u64 = 194;
const HIGH_FIDELITY: u64 = 3050;

fn bad(msg: impl Into<String>, param: Option<&'static str>) -> Refusal {
    (400, msg.into(), param, None)
}

/// A file's format, by its first bytes.
fn format(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if b.starts_with(b"\xff\xd8\xff") {
        Some("jpeg")
    } else if b.len() >= 12 && b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        Some("webp")
    } else {
        None
    }
}

/// The images an edit sends (a mask or markup is a member of the body).
#[derive(Debug, Default)]
pub struct Inputs {
    images: u64,
}

/// A form's fields, typed as the API reads them, and its files checked.
pub async fn read_form(content_type: &str, body: Bytes) -> Result<(Map<String, Value>, Inputs), Refusal> {
    let mut m = Map::new();
    let mut inputs = Inputs::default();
    let mut singles: Vec<String> = Vec::new();
    for crate::form::Part { name, file_name, data, .. } in crate::form::parts(content_type, body).await? {
        let file = file_name.is_some();
        match name.as_str() {
            "image" | "image[]" => {
                inputs.images += 1;
                if !file || data.len() > MAX_IMAGE || format(&data).is_none() {
                    return Err((400, format!("Invalid image file or mode for image {}, please check your image file.", inputs.images), None, Some("invalid_image_file")));
                }
            }
            "mask" | "markup" => {
                if singles.contains(&name) {
                    return Err(bad(format!("Duplicate parameter: '{name}'."), None));
                }
                if !file || data.len() > MAX_MASK || format(&data) != Some("png") {
                    return Err(bad(format!("Invalid file '{name}': it must be a PNG file under 4 MB."), Some(if name == "mask" { "mask" } else { "markup" })));
                }
                m.insert(name.clone(), Value::Bool(true));
                singles.push(name);
            }
            _ if file => return Err(bad(format!("Unknown parameter: '{name}'."), None)),
            _ => {
                let text = String::from_utf8(data.to_vec()).map_err(|_| bad(format!("Invalid value for '{name}': not UTF-8."), None))?;
                let typed = match name.as_str() {
                    "n" | "partial_images" | "output_compression" => text.parse::<u64>().map(Value::from).unwrap_or(Value::String(text)),
                    "stream" => match text.as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        _ => Value::String(text),
                    },
                    _ => Value::String(text),
                };
                if m.insert(name.clone(), typed).is_some() {
                    return Err(bad(format!("Duplicate parameter: '{name}'."), None));
                }
            }
        }
    }
    Ok((m, inputs))
}

/// A JSON body's images (`images`, references), counted and checked.
pub fn json_inputs(m: &Map<String, Value>) -> Result<Inputs, Refusal> {
    if m.contains_key("image") {
        return Err(bad("Unknown parameter: 'image'. A JSON request names its images in 'images'.", Some("image")));
    }
    let reference = |v: &Value| {
        let o = v.as_object()?;
        let url = o.get("image_url").and_then(Value::as_str);
        let file = o.get("file_id").and_then(Value::as_str);
        let ok = o.len() == 1 && (url.is_some_and(|u| u.starts_with("https://") || u.starts_with("data:image/")) || file.is_some_and(|f| !f.is_empty()));
        ok.then_some(())
    };
    let images = match m.get("images") {
        None | Some(Value::Null) => 0,
        Some(Value::Array(a)) if a.iter().all(|v| reference(v).is_some()) => a.len() as u64,
        Some(_) => return Err(bad("Invalid 'images': each must be an object with one of 'image_url' (https or a data URL) or 'file_id'.", Some("images"))),
    };
    for single in ["mask", "markup"] {
        if m.get(single).is_some_and(|v| !v.is_null() && reference(v).is_none()) {
            return Err(bad(format!("Invalid '{single}': it must be an object with one of 'image_url' or 'file_id'."), None));
        }
    }
    Ok(Inputs { images })
}

/// Checks an edit as the API does: its images, then what it asks of them as a generation.
pub fn plan(m: &Map<String, Value>, inputs: &Inputs) -> Result<Plan, Refusal> {
    if let Some(k) = m.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err((400, format!("Unknown parameter: '{k}'."), None, Some("unknown_parameter")));
    }
    match inputs.images {
        0 => return Err(bad("Missing required parameter: 'image'.", Some("image"))),
        1..=16 => {}
        _ => return Err(bad("Invalid 'image': at most 16 images may be edited at once.", Some("image"))),
    }
    if m.contains_key("mask") && m.contains_key("markup") {
        return Err(bad("'markup' cannot be combined with 'mask'.", Some("markup")));
    }
    let high = match m.get("input_fidelity") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "high" => true,
        Some(Value::String(s)) if s == "low" => false,
        Some(_) => return Err(bad("Invalid value for 'input_fidelity': expected 'high' or 'low'.", Some("input_fidelity"))),
    };
    let mut as_generation = m.clone();
    for k in ["image", "images", "mask", "markup", "input_fidelity"] {
        as_generation.remove(k);
    }
    // An edit's default model is GPT Image 1.5, not the retired DALL·E 2.
    as_generation.entry("model").or_insert_with(|| Value::String("gpt-image-1.5".into()));
    let mut p = images::plan(&as_generation)?;
    let high = high || !p.model.starts_with("gpt-image-1");
    p.image_input = inputs.images * if high { HIGH_FIDELITY } else { LOW_FIDELITY };
    p.kind = "image_edit";
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn form(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Bytes) {
        let mut b = Vec::new();
        for (k, v) in fields {
            b.extend_from_slice(format!("--B\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
        }
        for (k, data) in files {
            b.extend_from_slice(format!("--B\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"f\"\r\n\r\n").as_bytes());
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--B--\r\n");
        ("multipart/form-data; boundary=B".into(), Bytes::from(b))
    }

    async fn edit(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> Result<Plan, Refusal> {
        let (ct, body) = form(fields, files);
        let (m, inputs) = read_form(&ct, body).await?;
        plan(&m, &inputs)
    }

    #[tokio::test]
    async fn an_edit_bills_its_images_as_input_and_its_output_as_a_generation() {
        let p = edit(&[("model", "gpt-image-1.5"), ("prompt", "add a hat"), ("n", "2"), ("quality", "low"), ("size", "1024x1024")], &[("image[]", PNG), ("image[]", PNG)]).await.unwrap();
        let a: Value = serde_json::from_str(&p.answer(1, None)).unwrap();
        let text = "add a hat".len().div_ceil(4) as u64;
        assert_eq!(a["usage"]["input_tokens_details"], json!({"image_tokens": 2 * 2 * 194, "text_tokens": 2 * text}));
        assert_eq!(a["usage"]["output_tokens"], json!(2 * 272));
        let p = edit(&[("model", "gpt-image-2"), ("prompt", "x"), ("stream", "true"), ("partial_images", "1")], &[("image", PNG), ("mask", PNG)]).await.unwrap();
        assert_eq!((p.image_input, p.stream), (3050, true));
        assert_eq!(p.events(1, None).iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["image_edit.partial_image", "image_edit.completed"]);
        // the JSON form
        let m = json!({"model": "gpt-image-1.5", "prompt": "x", "images": [{"file_id": "file-1"}, {"image_url": "https://example.com/a.png"}], "input_fidelity": "high"});
        let m = m.as_object().unwrap();
        assert_eq!(plan(m, &json_inputs(m).unwrap()).unwrap().image_input, 2 * 3050);
    }

    type Fields = Vec<(&'static str, &'static str)>;
    type Files = Vec<(&'static str, &'static [u8])>;

    #[tokio::test]
    async fn refuses_what_openai_refuses() {
        let cases: Vec<(Fields, Files)> = vec![
            (vec![("model", "gpt-image-1.5"), ("prompt", "x")], vec![]),
            (vec![("model", "gpt-image-1.5")], vec![("image", PNG)]),
            (vec![("model", "gpt-image-1.5"), ("prompt", "x")], vec![("image", b"GIF89a")]),
            (vec![("model", "gpt-image-1.5"), ("prompt", "x")], vec![("image", PNG), ("mask", b"\xff\xd8\xff")]),
            (vec![("model", "gpt-image-1.5"), ("prompt", "x"), ("image", "https://example.com/a.png")], vec![]),
            (vec![("model", "gpt-image-1.5"), ("prompt", "x"), ("input_fidelity", "max")], vec![("image", PNG)]),
            (vec![("model", "gpt-image-1.5"), ("prompt", "x"), ("moderation", "strict")], vec![("image", PNG)]),
            (vec![("model", "gpt-image-1.5"), ("prompt", "x"), ("prompt", "y")], vec![("image", PNG)]),
            (vec![("model", "gpt-image-1.5"), ("prompt", "x"), ("n", "two")], vec![("image", PNG)]),
            (vec![("model", "dall-e-2"), ("prompt", "x")], vec![("image", PNG)]),
            (vec![("model", "gpt-image-2.5-flare"), ("prompt", "x")], vec![("image", PNG), ("mask", PNG), ("markup", PNG)]),
            (vec![("model", "gpt-image-1.5"), ("prompt", "x")], vec![("image", PNG), ("photo", PNG)]),
        ];
        for (fields, files) in cases {
            assert!(edit(&fields, &files).await.is_err(), "{fields:?} {}", files.len());
        }
        let seventeen: Vec<(&str, &[u8])> = (0..17).map(|_| ("image[]", PNG)).collect();
        assert!(edit(&[("model", "gpt-image-1.5"), ("prompt", "x")], &seventeen).await.is_err());
        for bad in [json!({"images": [{"image_url": "http://x"}]}), json!({"images": [{"file_id": "f", "image_url": "https://x"}]}), json!({"images": "f"}), json!({"image": [{"file_id": "f"}]})] {
            assert!(json_inputs(bad.as_object().unwrap()).is_err(), "{bad}");
        }
    }
}
