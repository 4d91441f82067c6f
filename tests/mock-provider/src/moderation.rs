//! `POST /v1/moderations`, as OpenAI answers it: free, one result per input.
//!
//! Sources: openai-python 3.57 `types/moderation_create_params.py` (`input`
//! a string, an array of strings, or an array of multi-modal inputs, each
//! `{"type": "text", "text"}` or `{"type": "image_url", "image_url":
//! {"url"}}`; `model`, `omni-moderation-latest` when absent),
//! `types/moderation_model.py` (the four model names),
//! `types/moderation.py` and `moderation_create_response.py` (the answer:
//! `id`, `model`, `results[]` with `flagged`, `categories`,
//! `category_scores` and `category_applied_input_types` over thirteen
//! categories). Images are classified by the omni models only.

use serde_json::{json, Map, Value};

use crate::embeddings::Refusal;

const PARAMS: &[&str] = &["input", "model"];
const MODELS: &[&str] = &["omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest", "text-moderation-stable"];
const CATEGORIES: &[&str] = &[
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent", "self-harm",
    "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence", "violence/graphic",
];
/// The categories an image is classified for too (OpenAI's moderation guide).
const IMAGE_CATEGORIES: &[&str] = &["self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic"];

fn bad(msg: impl Into<String>, param: Option<&'static str>) -> Refusal {
    (400, msg.into(), param, None)
}

/// One input's text and whether it holds an image.
struct Input {
    text: String,
    image: bool,
}

fn inputs(v: Option<&Value>, omni: bool) -> Result<Vec<Input>, Refusal> {
    let invalid = || bad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", Some("input"));
    let Some(v) = v else { return Err(bad("'input' is a required property", Some("input"))) };
    match v {
        Value::String(s) => Ok(vec![Input { text: s.clone(), image: false }]),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Ok(items.iter().map(|s| Input { text: s.as_str().unwrap_or_default().to_string(), image: false }).collect())
        }
        // Multi-modal: one input made of its parts.
        Value::Array(items) if !items.is_empty() => {
            let mut one = Input { text: String::new(), image: false };
            for part in items {
                match (part.get("type").and_then(Value::as_str), part) {
                    (Some("text"), p) => one.text.push_str(p.get("text").and_then(Value::as_str).ok_or_else(invalid)?),
                    (Some("image_url"), p) if p.pointer("/image_url/url").and_then(Value::as_str).is_some() => one.image = true,
                    _ => return Err(invalid()),
                }
            }
            if one.image && !omni {
                return Err(bad("Image inputs are only supported by the omni-moderation models.", Some("input")));
            }
            Ok(vec![one])
        }
        _ => Err(invalid()),
    }
}

/// The answer for a request body, or the refusal the API gives.
pub fn answer(m: &Map<String, Value>, n: u64) -> Result<String, Refusal> {
    if let Some(k) = m.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err((400, format!("Unrecognized request argument supplied: {k}"), None, None));
    }
    let model = match m.get("model") {
        None | Some(Value::Null) => MODELS[0],
        Some(Value::String(s)) => MODELS.iter().find(|x| **x == s).copied().ok_or((404, format!("The model `{s}` does not exist or you do not have access to it."), None, Some("model_not_found")))?,
        Some(_) => return Err(bad("'$.model' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", Some("model"))),
    };
    let omni = model.starts_with("omni-");
    let results: Vec<Value> = inputs(m.get("input"), omni)?
        .iter()
        .map(|i| {
            // The mock flags "violence" for text that names it, nothing else.
            let violent = i.text.to_lowercase().contains("kill");
            let categories: Map<String, Value> = CATEGORIES.iter().map(|c| (c.to_string(), json!(*c == "violence" && violent))).collect();
            let scores: Map<String, Value> =
                CATEGORIES.iter().map(|c| (c.to_string(), json!(if *c == "violence" && violent { 0.91 } else { 0.000_012 }))).collect();
            let applied: Map<String, Value> = CATEGORIES
                .iter()
                .map(|c| {
                    let types = if i.image && IMAGE_CATEGORIES.contains(c) { json!(["text", "image"]) } else { json!(["text"]) };
                    (c.to_string(), types)
                })
                .collect();
            json!({"flagged": violent, "categories": categories, "category_scores": scores, "category_applied_input_types": applied})
        })
        .collect();
    Ok(json!({"id": format!("modr-mock{n:020}"), "model": format!("{model}-mock"), "results": results}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn answers_each_input_as_openai_does() {
        let a: Value = serde_json::from_str(&answer(&obj(json!({"input": ["hello", "I will kill the process"]})), 1).unwrap()).unwrap();
        assert_eq!(a["results"].as_array().unwrap().len(), 2);
        assert_eq!((a["results"][0]["flagged"].as_bool(), a["results"][1]["flagged"].as_bool()), (Some(false), Some(true)));
        assert_eq!(a["results"][0]["categories"].as_object().unwrap().len(), 13);
        let img = json!({"model": "omni-moderation-latest", "input": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]});
        let a: Value = serde_json::from_str(&answer(&obj(img), 2).unwrap()).unwrap();
        assert_eq!(a["results"][0]["category_applied_input_types"]["violence"], json!(["text", "image"]));
    }

    #[test]
    fn refuses_what_openai_refuses() {
        for (body, status) in [
            (json!({"model": "omni-moderation-latest"}), 400),
            (json!({"input": "x", "model": "gpt-5.4"}), 404),
            (json!({"input": "x", "max_tokens": 5}), 400),
            (json!({"input": 7}), 400),
            (json!({"input": []}), 400),
            (json!({"input": [{"type": "image_url", "image_url": {"url": "u"}}], "model": "text-moderation-latest"}), 400),
        ] {
            assert_eq!(answer(&obj(body.clone()), 1).unwrap_err().0, status, "{body}");
        }
    }
}
