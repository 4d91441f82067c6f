//! Gemini's native embeddings: `models/{model}:embedContent` and
//! `:batchEmbedContents`, as the Gemini API answers them.
//!
//! Sources: Gemini API reference, "Embeddings" (ai.google.dev/api/embeddings:
//! `EmbedContentRequest` — `model`, `content` (required; "only the
//! `parts.text` fields will be counted"), `taskType`, `title`,
//! `outputDimensionality` — `BatchEmbedContentsRequest.requests`, "the model
//! in each of these requests must match the model specified
//! BatchEmbedContentsRequest.model"; the `TaskType` enum); the batch limit
//! Google answers with "* BatchEmbedContentsRequest.requests: at most 100
//! requests can be in one batch" (langchain-ai/langchainjs#4491,
//! weaviate/weaviate#11277); the answer's `usageMetadata` with
//! `promptTokenCount` and `promptTokensDetails` (google-genai's
//! `_EmbedContentResponse_from_mldev` reads it; LeenHawk/gproxy's wire types,
//! from Google's "Embeddings.md", give `EmbeddingUsageMetadata` on both
//! answers); gemini-embedding-001's 3,072 dimensions by default
//! (ai.google.dev/gemini-api/docs/embeddings). Google's exact wording for a
//! batch request naming another model is not recorded anywhere we found:
//! that message is the mock's own.

use serde_json::{json, Map, Value};

use crate::count_tokens;

const MAX_BATCH: usize = 100;
/// gemini-embedding-001's default and largest vector.
const DIMENSIONS: u64 = 3072;
const TASK_TYPES: &[&str] = &[
    "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION", "CLUSTERING",
    "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY",
];
/// An embed request's fields, by JSON name and proto name.
const FIELDS: &[(&str, &str)] = &[
    ("model", "model"),
    ("content", "content"),
    ("taskType", "task_type"),
    ("title", "title"),
    ("outputDimensionality", "output_dimensionality"),
];

type Refusal = (u16, String);

fn bad(msg: impl Into<String>) -> Refusal {
    (400, msg.into())
}

/// One request's tokens and dimensions; `at` names it in messages
/// (`EmbedContentRequest` or `BatchEmbedContentsRequest.requests[i]`).
fn one(r: &Map<String, Value>, at: &str, model: &str, model_required: bool) -> Result<(u64, u64), Refusal> {
    let mut seen: Vec<&str> = Vec::new();
    for k in r.keys() {
        let Some((json, _)) = FIELDS.iter().find(|(j, p)| j == k || p == k) else {
            return Err(bad(format!("Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field.")));
        };
        if seen.contains(json) {
            return Err(bad(format!("Invalid JSON payload received. Duplicate field \"{k}\".")));
        }
        seen.push(json);
    }
    let field = |j: &str, p: &str| r.get(j).or(r.get(p)).filter(|v| !v.is_null());
    match field("model", "model") {
        Some(Value::String(m)) if m.strip_prefix("models/").unwrap_or(m) == model => {}
        Some(Value::String(_)) => return Err(bad(format!("* {at}.model: the model in each request must match the model of the call, models/{model}"))),
        Some(_) => return Err(bad(format!("Invalid value at '{at}.model' (TYPE_STRING)"))),
        None if model_required => return Err(bad(format!("* {at}.model: model is not specified"))),
        None => {}
    }
    let Some(content) = field("content", "content") else {
        return Err(bad(format!("* {at}.content: content is not specified")));
    };
    let parts = content.get("parts").and_then(Value::as_array).filter(|p| !p.is_empty());
    let Some(parts) = parts else {
        return Err(bad(format!("* {at}.content.parts: contents.parts must not be empty.")));
    };
    let mut text = String::new();
    for p in parts {
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
    }
    if let Some(t) = field("taskType", "task_type") {
        if !t.as_str().is_some_and(|t| TASK_TYPES.contains(&t)) {
            return Err(bad(format!("Invalid value at '{at}.task_type' (type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), {t}")));
        }
    }
    if field("title", "title").is_some_and(|t| !t.is_string()) {
        return Err(bad(format!("Invalid value at '{at}.title' (TYPE_STRING)")));
    }
    let dimensions = match field("outputDimensionality", "output_dimensionality") {
        None => DIMENSIONS,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=DIMENSIONS).contains(&d) => d,
            _ => return Err(bad(format!("* {at}.output_dimensionality: output_dimensionality must be between 1 and {DIMENSIONS}, inclusive."))),
        },
    };
    Ok((count_tokens(&text).max(1), dimensions))
}

/// A deterministic vector of `d` values for the `i`-th content.
fn vector(i: usize, d: u64) -> Value {
    let v: Vec<f32> = (0..d).map(|k| (((i as u64 * 7919 + k * 104_729) % 2001) as f32 - 1000.0) / 25_000.0).collect();
    json!({"values": v})
}

/// The answer to `method` on `model` for body `m`, and the tokens it
/// counted; `usage: false` answers without `usageMetadata`.
pub fn answer(model: &str, method: &str, m: &Map<String, Value>, usage: bool) -> Result<(Value, u64), Refusal> {
    let (mut body, tokens) = match method {
        "embedContent" => {
            let (tokens, d) = one(m, "EmbedContentRequest", model, false)?;
            (json!({"embedding": vector(0, d)}), tokens)
        }
        "batchEmbedContents" => {
            if let Some(k) = m.keys().find(|k| *k != "requests") {
                return Err(bad(format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field.")));
            }
            let requests = m.get("requests").and_then(Value::as_array).filter(|r| !r.is_empty());
            let Some(requests) = requests else {
                return Err(bad("* BatchEmbedContentsRequest.requests: requests is not specified"));
            };
            if requests.len() > MAX_BATCH {
                return Err(bad("* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"));
            }
            let mut total = 0u64;
            let mut embeddings = Vec::with_capacity(requests.len());
            for (i, r) in requests.iter().enumerate() {
                let at = format!("BatchEmbedContentsRequest.requests[{i}]");
                let Some(r) = r.as_object() else { return Err(bad(format!("Invalid value at '{at}' (type.googleapis.com/google.ai.generativelanguage.v1beta.EmbedContentRequest)"))) };
                let (tokens, d) = one(r, &at, model, true)?;
                total += tokens;
                embeddings.push(vector(i, d));
            }
            (json!({"embeddings": embeddings}), total)
        }
        _ => return Err((404, format!("Method {method} not found."))),
    };
    if usage {
        body["usageMetadata"] = json!({"promptTokenCount": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}], "totalTokenCount": tokens});
    }
    Ok((body, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn answers_google_genais_batch_and_one_content_with_their_usage() {
        // What google-genai's `embed_content(model=…, contents=[…], config=…)` sends.
        let batch = obj(json!({"requests": [
            {"content": {"parts": [{"text": "What is the meaning of life?"}], "role": "user"}, "model": "models/gemini-embedding-001", "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 8},
            {"content": {"parts": [{"text": "How does the brain work?"}]}, "model": "models/gemini-embedding-001", "output_dimensionality": 8}]}));
        let (v, tokens) = answer("gemini-embedding-001", "batchEmbedContents", &batch, true).unwrap();
        assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);
        assert_eq!(v["embeddings"][1]["values"].as_array().unwrap().len(), 8);
        assert_eq!(v["usageMetadata"]["promptTokenCount"], tokens);
        assert!(tokens >= 2);
        let (v, _) = answer("gemini-embedding-001", "embedContent", &obj(json!({"content": {"parts": [{"text": "hi"}]}})), false).unwrap();
        assert_eq!(v["embedding"]["values"].as_array().unwrap().len(), 3072);
        assert!(v.get("usageMetadata").is_none());
    }

    #[test]
    fn refuses_what_the_gemini_api_refuses() {
        let refusal = |method: &str, v: Value| answer("gemini-embedding-001", method, &obj(v), true).unwrap_err().1;
        let item = |extra: Value| {
            let mut r = obj(json!({"content": {"parts": [{"text": "x"}]}, "model": "models/gemini-embedding-001"}));
            r.extend(obj(extra));
            Value::Object(r)
        };
        assert!(refusal("batchEmbedContents", json!({"requests": vec![item(json!({})); 101]})).contains("at most 100 requests"));
        assert!(refusal("batchEmbedContents", json!({"requests": [item(json!({"model": "models/gemini-2.5-flash"}))]})).contains("must match"));
        assert!(refusal("batchEmbedContents", json!({"requests": [{"content": {"parts": [{"text": "x"}]}}]})).contains("model is not specified"));
        assert!(refusal("batchEmbedContents", json!({"requests": []})).contains("requests is not specified"));
        assert!(refusal("batchEmbedContents", json!({"requests": [item(json!({"taskType": "SEARCH"}))]})).contains("TaskType"));
        assert!(refusal("batchEmbedContents", json!({"requests": [item(json!({"outputDimensionality": 0}))]})).contains("between 1 and 3072"));
        assert!(refusal("batchEmbedContents", json!({"requests": [item(json!({"taskType": "CLUSTERING", "task_type": "CLUSTERING"}))]})).contains("Duplicate field"));
        assert!(refusal("batchEmbedContents", json!({"requests": [item(json!({"dimensions": 8}))]})).contains("Unknown name \"dimensions\""));
        assert!(refusal("batchEmbedContents", json!({"model": "models/gemini-embedding-001", "requests": [item(json!({}))]})).contains("Unknown name \"model\""));
        assert!(refusal("embedContent", json!({"contents": [{"parts": [{"text": "x"}]}]})).contains("Unknown name \"contents\""));
        assert!(refusal("embedContent", json!({"content": {"parts": []}})).contains("must not be empty"));
        assert!(refusal("embedContent", json!({"content": {"parts": [{"text": "x"}]}, "model": "models/other"})).contains("must match"));
        assert_eq!(answer("m", "embedText", &obj(json!({})), true).unwrap_err().0, 404);
    }
}
