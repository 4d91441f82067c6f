//! Gemini bodies that name the model inside them, besides the path: the
//! native embeddings and the `generateContentRequest` form of a token
//! count. The model the provider runs (or counts for) must be the one the
//! key was allowed and the request priced at: the path's. The gateway
//! writes the upstream model into each `model` such a body holds, so a
//! request naming another model inside its body cannot have it run.
//!
//! Embeddings: `models/{model}:embedContent` (`content`) and
//! `:batchEmbedContents` (`requests`, each an `EmbedContentRequest` naming
//! the model), what google-genai's `embed_content` sends. A batch names a
//! model in every request (the API requires it, and that it match the
//! path's), and `embedContent` may name one too.
//!
//! Counts: `models/{model}:countTokens` takes `contents`, or a whole
//! `generateContentRequest` (its `model` required, `models/{model}`) to
//! count a system instruction, tools and a cached content as
//! `generateContent` would; "contents and generateContentRequest are
//! mutually exclusive". The second is what Google's legacy JavaScript SDK
//! (@google/generative-ai, `formatCountTokensInput`: always) and its Dart
//! SDK (google-gemini/generative-ai-dart#169) send.
//!
//! Sources: Gemini API reference, "Embeddings" (ai.google.dev/api/embeddings:
//! `EmbedContentRequest` — `model`, `content`, `taskType`, `title`,
//! `outputDimensionality` — and "The model in each of these requests must
//! match the model specified BatchEmbedContentsRequest.model"); the batch
//! limit Google answers with "* BatchEmbedContentsRequest.requests: at most
//! 100 requests can be in one batch" (langchain-ai/langchainjs#4491,
//! weaviate/weaviate#11277); google-genai's `models.embed_content`
//! (`_EmbedContentParametersPrivate_to_mldev`: `requests[].content`,
//! `requests[].model`, config as `taskType`, `title`, `outputDimensionality`);
//! "Counting tokens" (ai.google.dev/api/tokens: `CountTokensRequest`).

use super::{bad, Members};
use crate::errors::GatewayError;
use crate::splice::Object;

/// Requests in one batch, at most (Google's limit).
pub const MAX_BATCH: usize = 100;

/// Checks what the gateway relies on in an embedding body: `content`, or
/// `requests` as 1 to [`MAX_BATCH`] objects, each with a `content` and at
/// most one `model`. The rest is the provider's to refuse.
pub fn check(members: &Members<'_>, batch: bool) -> Result<(), GatewayError> {
    let member = |name: &str| members.get(name);
    if !batch {
        return match member("content") {
            Some(_) => Ok(()),
            None => Err(bad("missing_content", "The request has no 'content'; :embedContent embeds one content (:batchEmbedContents takes 'requests').").with_param("content")),
        };
    }
    let Some(raw) = member("requests") else {
        return Err(bad("missing_requests", "The request has no 'requests'; :batchEmbedContents takes a list of embed requests (:embedContent takes one 'content').").with_param("requests"));
    };
    let requests = serde_json::from_str::<Vec<Members<'_>>>(raw)
        .map_err(|_| bad("invalid_type", "'requests' must be a list of embed request objects.").with_param("requests"))?;
    if requests.is_empty() || requests.len() > MAX_BATCH {
        return Err(bad("invalid_request", format!("'requests' must hold 1 to {MAX_BATCH} embed requests; it holds {}.", requests.len())).with_param("requests"));
    }
    for (i, r) in requests.iter().enumerate() {
        let named = |name: &str| r.0.iter().filter(|(k, _)| k == name).count();
        if named("content") != 1 || named("model") > 1 {
            return Err(bad("invalid_request", format!("'requests[{i}]' must have one 'content' and at most one 'model'.")).with_param("requests"));
        }
    }
    Ok(())
}

/// The names a count's whole request goes by (JSON and proto).
pub const COUNTED_REQUEST: [&str; 2] = ["generateContentRequest", "generate_content_request"];

/// Checks a token count's body: `contents` or one `generateContentRequest`
/// (an object naming its model at most once), not both. The rest is the
/// provider's to refuse.
pub fn check_count(members: &Members<'_>) -> Result<(), GatewayError> {
    let contents = members.0.iter().any(|(k, _)| k == "contents");
    let mut inner = members.0.iter().filter(|(k, _)| COUNTED_REQUEST.contains(&k.as_str()));
    let param = COUNTED_REQUEST[0];
    match (contents, inner.next(), inner.next()) {
        (false, None, _) => Err(bad("missing_contents", "The request has no 'contents' (or 'generateContentRequest'): name what to count.").with_param("contents")),
        (true, None, _) => Ok(()),
        (_, Some(_), Some(_)) => Err(bad("duplicate_key", "'generateContentRequest' and 'generate_content_request' name the same field: send one.").with_param(param)),
        (true, Some(_), None) => Err(bad("invalid_request", "'contents' and 'generateContentRequest' are mutually exclusive: send one.").with_param(param)),
        (false, Some((_, raw)), None) => match serde_json::from_str::<Members<'_>>(raw.get()) {
            Ok(r) if r.0.iter().filter(|(k, _)| k == "model").count() <= 1 => Ok(()),
            Ok(_) => Err(bad("invalid_request", "'generateContentRequest' names its 'model' more than once.").with_param(param)),
            Err(_) => Err(bad("invalid_type", "'generateContentRequest' must be an object (a generateContent request).").with_param(param)),
        },
    }
}

/// Writes `r` as an object whose `model` is `model` (JSON text), first,
/// and its other members as sent.
fn with_model(out: &mut Vec<u8>, r: &Members<'_>, model: &str) {
    out.extend_from_slice(b"{\"model\":");
    out.extend_from_slice(model.as_bytes());
    for (name, value) in r.0.iter().filter(|(name, _)| name != "model") {
        out.push(b',');
        crate::splice::name(out, name);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
}

/// The body with the upstream model (`models/{upstream_model}`) in its
/// `model`, if it names one, in every request of a batch, and in a
/// count's `generateContentRequest` (which must name one: it is added if
/// missing). Spliced: every other byte stays as sent. `None` if the body
/// is not what [`check`] or [`check_count`] passed (never sent unchanged:
/// the caller refuses it).
pub fn rewrite(members: &Members<'_>, upstream_model: &str) -> Option<Vec<u8>> {
    let model = serde_json::to_string(&format!("models/{upstream_model}")).ok()?;
    let mut object = Object::for_members(members.pairs(), 64);
    for (k, v) in &members.0 {
        object.member(k, b"");
        let out = object.buffer();
        match k.as_str() {
            "model" => out.extend_from_slice(model.as_bytes()),
            "requests" => {
                let requests = serde_json::from_str::<Vec<Members<'_>>>(v.get()).ok()?;
                out.push(b'[');
                for (j, r) in requests.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    with_model(out, r, &model);
                }
                out.push(b']');
            }
            k if COUNTED_REQUEST.contains(&k) => with_model(out, &serde_json::from_str(v.get()).ok()?, &model),
            _ => out.extend_from_slice(v.get().as_bytes()),
        }
    }
    Some(object.close())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn members(v: &str) -> Members<'_> {
        serde_json::from_str(v).unwrap()
    }

    #[test]
    fn a_batch_names_the_upstream_model_in_every_request_whatever_it_said() {
        // google-genai's body, one request naming another model, one none.
        let body = r#"{"requests":[{"content":{"parts":[{"text":"a"}]},"model":"models/gemini-embedding-001","taskType":"RETRIEVAL_DOCUMENT"},{"model":"models/gemini-3-pro","content":{"parts":[{"text":"b"}]}},{"content":{"parts":[{"text":"c"}]},"outputDimensionality":8}]}"#;
        let m = members(body);
        check(&m, true).unwrap();
        let out: Value = serde_json::from_slice(&rewrite(&m, "gemini-embedding-001").unwrap()).unwrap();
        let models: Vec<&str> = out["requests"].as_array().unwrap().iter().map(|r| r["model"].as_str().unwrap()).collect();
        assert_eq!(models, ["models/gemini-embedding-001"; 3]);
        assert_eq!(out["requests"][0]["taskType"], "RETRIEVAL_DOCUMENT");
        assert_eq!(out["requests"][2]["outputDimensionality"], 8);
        assert_eq!(out["requests"][1]["content"], json!({"parts": [{"text": "b"}]}));
        // One content: its model, if it names one, is the upstream one; nothing is added.
        let m = members(r#"{"model":"models/alias","content":{"parts":[{"text":"x"}]},"title":"t"}"#);
        check(&m, false).unwrap();
        let out: Value = serde_json::from_slice(&rewrite(&m, "gemini-embedding-001").unwrap()).unwrap();
        assert_eq!(out, json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "x"}]}, "title": "t"}));
        let m = members(r#"{"content":{"parts":[{"text":"x"}]}}"#);
        assert_eq!(rewrite(&m, "e").unwrap(), br#"{"content":{"parts":[{"text":"x"}]}}"#);
    }

    /// @google/generative-ai 0.24's `countTokens` body (its
    /// `formatCountTokensInput`: the model's settings beside the contents).
    #[test]
    fn a_counted_request_names_the_upstream_model_and_nothing_else_changes() {
        let body = r#"{"generateContentRequest":{"model":"models/gemini-alias","contents":[{"role":"user","parts":[{"text":"How many?"}]}],"systemInstruction":{"role":"system","parts":[{"text":"Be terse."}]},"tools":[{"functionDeclarations":[{"name":"f"}]}]}}"#;
        let m = members(body);
        check_count(&m).unwrap();
        let out: Value = serde_json::from_slice(&rewrite(&m, "gemini-2.5-flash").unwrap()).unwrap();
        let mut want: Value = serde_json::from_str(body).unwrap();
        want["generateContentRequest"]["model"] = json!("models/gemini-2.5-flash");
        assert_eq!(out, want);
        // Its model is required: one is added; the proto name is read the same.
        let m = members(r#"{"generate_content_request":{"contents":[]}}"#);
        check_count(&m).unwrap();
        assert_eq!(rewrite(&m, "g").unwrap(), br#"{"generate_content_request":{"model":"models/g","contents":[]}}"#);
        // The contents form is sent as it came.
        let m = members(r#"{"contents":[{"parts":[{"text":"x"}]}]}"#);
        check_count(&m).unwrap();
        assert_eq!(rewrite(&m, "g").unwrap(), br#"{"contents":[{"parts":[{"text":"x"}]}]}"#);
    }

    #[test]
    fn a_count_the_gateway_could_not_hold_to_one_model_is_refused() {
        let code = |body: &str| check_count(&members(body)).unwrap_err().code;
        assert_eq!(code(r#"{}"#), "missing_contents");
        assert_eq!(code(r#"{"model":"models/x"}"#), "missing_contents");
        assert_eq!(code(r#"{"contents":[],"generateContentRequest":{}}"#), "invalid_request");
        assert_eq!(code(r#"{"generateContentRequest":{},"generate_content_request":{}}"#), "duplicate_key");
        assert_eq!(code(r#"{"generateContentRequest":[]}"#), "invalid_type");
        assert_eq!(code(r#"{"generateContentRequest":null}"#), "invalid_type");
        assert_eq!(code(r#"{"generateContentRequest":{"model":"models/a","m\u006fdel":"models/b"}}"#), "invalid_request");
    }

    #[test]
    fn what_the_gateway_could_not_hold_is_refused() {
        let code = |body: &str, batch: bool| check(&members(body), batch).unwrap_err().code;
        assert_eq!(code(r#"{"requests":[]}"#, false), "missing_content");
        assert_eq!(code(r#"{"content":{}}"#, true), "missing_requests");
        assert_eq!(code(r#"{"requests":{}}"#, true), "invalid_type");
        assert_eq!(code(r#"{"requests":[1]}"#, true), "invalid_type");
        assert_eq!(code(r#"{"requests":[]}"#, true), "invalid_request");
        let many = format!(r#"{{"requests":[{}]}}"#, vec![r#"{"content":{}}"#; MAX_BATCH + 1].join(","));
        assert_eq!(code(&many, true), "invalid_request");
        let full = format!(r#"{{"requests":[{}]}}"#, vec![r#"{"content":{}}"#; MAX_BATCH].join(","));
        assert!(check(&members(&full), true).is_ok());
        // A model named twice in one request: which one would run is the parser's guess.
        assert_eq!(code(r#"{"requests":[{"content":{},"model":"models/a","model":"models/b"}]}"#, true), "invalid_request");
        assert_eq!(code(r#"{"requests":[{"model":"models/a"}]}"#, true), "invalid_request");
        assert_eq!(code(r#"{"requests":[{"content":{},"content":{}}]}"#, true), "invalid_request");
    }
}
