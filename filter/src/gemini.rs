//! Google Gemini's native API (`models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`): the path, and usage from
//! `usageMetadata`.
//!
//! `usageMetadata`: `promptTokenCount` (including `cachedContentTokenCount`),
//! `toolUsePromptTokenCount` (input too), `candidatesTokenCount` (the answer)
//! and `thoughtsTokenCount` (thinking, billed as output but *not* included in
//! `candidatesTokenCount`). Gemini reports `cachedContentTokenCount` only
//! when its cache served something, so a response without it is a reported
//! 0 %. A stream sends a full `GenerateContentResponse` per event, each with
//! the usage so far; the last one (with a `finishReason`) is final; there is
//! no `[DONE]`.
//!
//! Sources: Gemini API reference, "Generating content"
//! (ai.google.dev/api/generate-content: `UsageMetadata`, `FinishReason`,
//! `streamGenerateContent` with `alt=sse`), "Thinking" (thought tokens
//! priced as output) and "Context caching" (implicit caching); a Vertex AI
//! response in envoyproxy/ai-gateway `tests/data-plane/testupstream_test.go`
//! (tests/captures/README.md).

use serde::Deserialize;

use crate::usage::{EventSeen as Seen, Usage};

/// What a native path asks of its model (`…/models/{model}:{method}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    /// `:streamGenerateContent`
    Stream,
    /// `:countTokens`: free, routed as the generate request would be.
    CountTokens,
    /// `:embedContent`: one embedding (`content`).
    Embed,
    /// `:batchEmbedContents`: several (`requests`, each naming the model),
    /// what google-genai's `embed_content` sends to the Gemini API.
    BatchEmbed,
}

impl Method {
    /// The method's name in a path.
    pub fn name(self) -> &'static str {
        match self {
            Method::Generate => "generateContent",
            Method::Stream => "streamGenerateContent",
            Method::CountTokens => "countTokens",
            Method::Embed => "embedContent",
            Method::BatchEmbed => "batchEmbedContents",
        }
    }

    /// Whether the method makes embeddings.
    pub fn embeds(self) -> bool {
        matches!(self, Method::Embed | Method::BatchEmbed)
    }
}

/// The methods of Gemini's models API (`…/models/{model}:{method}`), served
/// here or not: a path naming one is a call, never a model id to describe
/// ([`crate::request::model_path_id`]).
const MODEL_METHODS: &[&str] = &[
    "generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents", "batchGenerateContent",
    "asyncBatchEmbedContent", "predict", "predictLongRunning", "generateAnswer", "generateMessage", "generateText",
    "countMessageTokens", "countTextTokens", "embedText", "batchEmbedText",
];

/// Whether `name` is a method of Gemini's models API, in any letter case
/// (a path is also read lower-cased, to find disguised endpoints).
pub fn is_model_method(name: &str) -> bool {
    MODEL_METHODS.iter().any(|m| m.eq_ignore_ascii_case(name))
}

/// A native path's model and method; `None` for a method not served here
/// or an unsafe model id.
pub fn path_method(path: &str) -> Option<(&str, Method)> {
    let p = path.split(['?', '#']).next().unwrap_or("");
    let rest = ["/v1beta/models/", "/v1/models/", "/models/"].iter().find_map(|pre| p.strip_prefix(pre))?;
    let (model, method) = rest.rsplit_once(':')?;
    if !plain_model_id(model) {
        return None;
    }
    let method = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream,
        "countTokens" => Method::CountTokens,
        "embedContent" => Method::Embed,
        "batchEmbedContents" => Method::BatchEmbed,
        _ => return None,
    };
    Some((model, method))
}

/// A model id a native path may name: it goes into the upstream path, so a
/// plain id (optionally `google/<id>`), never `..`, `%`-escapes or other
/// path syntax that could reach another endpoint with the provider's key.
pub fn plain_model_id(model: &str) -> bool {
    let id = model.strip_prefix("google/").unwrap_or(model);
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
    !id.is_empty() && id.len() <= 128 && !id.starts_with('.') && !id.contains("..") && id.bytes().all(plain)
}

/// Whether a key may come as `?key=` (Gemini's REST convention): on a
/// native call or Gemini's models list (`/v1beta/models`, `…/models/{id}`).
pub fn takes_query_key(path: &str) -> bool {
    let p = path.split(['?', '#']).next().unwrap_or("");
    path_method(p).is_some() || p == "/v1beta/models" || p.starts_with("/v1beta/models/")
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    tool_use_prompt_token_count: Option<u64>,
    /// Per modality (`TEXT`, `IMAGE`, `AUDIO`, `VIDEO`): audio input is
    /// priced apart (Gemini 2.5 Flash: $1.00 against $0.30 per million;
    /// ai.google.dev/gemini-api/docs/pricing), and audio output of the
    /// native-audio and TTS models, and image output of the image models
    /// (Gemini 3 Pro Image: $120 against $12 for text per million).
    #[serde(default)]
    prompt_tokens_details: Option<serde_json::Value>,
    #[serde(default)]
    candidates_tokens_details: Option<serde_json::Value>,
}

/// The tokens of one modality's entries (`{"modality": "AUDIO", "tokenCount": n}`);
/// an entry of another shape counts nothing and fails nothing.
fn modality(details: &Option<serde_json::Value>, name: &str) -> u64 {
    let entries = details.as_ref().and_then(serde_json::Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .filter(|d| d.get("modality").is_some_and(|m| m == name))
        .filter_map(|d| d.get("tokenCount").and_then(serde_json::Value::as_u64))
        .fold(0, u64::saturating_add)
}

impl UsageMetadata {
    fn normalise(&self) -> Usage {
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        Usage {
            input_tokens: self.prompt_token_count.unwrap_or(0).saturating_add(self.tool_use_prompt_token_count.unwrap_or(0)),
            cached_input_tokens: self.cached_content_token_count.unwrap_or(0),
            output_tokens: self.candidates_token_count.unwrap_or(0).saturating_add(thoughts),
            reasoning_tokens: thoughts,
            audio_input_tokens: modality(&self.prompt_tokens_details, "AUDIO"),
            audio_output_tokens: modality(&self.candidates_tokens_details, "AUDIO"),
            image_output_tokens: modality(&self.candidates_tokens_details, "IMAGE"),
            cache_reported: true,
            ..Default::default()
        }
        .bounded()
    }
}

#[derive(Deserialize, Default)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    grounding_metadata: Option<Grounding>,
}

/// Grounding with Google Search: the queries it ran. Google bills them
/// apart from tokens: Gemini 3 per search query ($14 per 1,000), Gemini
/// 2.5 per grounded prompt ($35 per 1,000); "for billing purposes, we
/// ignore the empty web search queries when counting unique queries"
/// (ai.google.dev/gemini-api/docs/google-search, …/pricing). Counted here
/// as web searches, priced at the model's `web_search_per_1k`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Grounding {
    /// (Any JSON: an entry that is not a string is not a query.)
    #[serde(default)]
    web_search_queries: Option<serde_json::Value>,
}

/// At most this many queries are counted from one answer.
const MAX_QUERIES: usize = 10_000;

/// One `GenerateContentResponse` (a JSON body, or one stream event).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default, deserialize_with = "crate::usage::object")]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl GenerateResponse {
    pub fn usage(&self) -> Option<Usage> {
        self.usage_with(self.searches())
    }

    /// The usage, with the grounding queries already counted.
    fn usage_with(&self, searches: u64) -> Option<Usage> {
        self.usage_metadata.as_ref().map(|u| Usage { web_search_requests: searches, ..u.normalise() }.bounded())
    }

    /// The distinct non-empty search queries of every candidate's grounding.
    fn searches(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        let queries = self.candidates.iter().filter_map(|c| c.grounding_metadata.as_ref()?.web_search_queries.as_ref()?.as_array());
        for q in queries.flatten().filter_map(serde_json::Value::as_str).filter(|q| !q.is_empty()) {
            if seen.len() >= MAX_QUERIES {
                break;
            }
            seen.insert(q);
        }
        seen.len() as u64
    }
}

/// Usage from a `usageMetadata` object found on its own (the tail of a large body).
pub(crate) fn usage_from_value(v: serde_json::Value) -> Option<Usage> {
    crate::usage::from_object::<UsageMetadata>(&v).map(|u| u.normalise())
}

/// An embedding answer (`embedContent`'s `{embedding, usageMetadata}`,
/// `batchEmbedContents`' `{embeddings, usageMetadata}`): its input tokens,
/// when it says them. The Gemini API's answer carries `usageMetadata`
/// with `promptTokenCount` (google-genai reads it into `usage_metadata`
/// and, on Vertex, into each embedding's `statistics.token_count`); one
/// without a count is not read as free: `None`, and the record estimates
/// the input from the request (`usage_missing`). Nothing is cached or
/// generated, so the cache's share is not reported.
pub(crate) fn embed_usage(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct EmbedResponse {
        #[serde(default, deserialize_with = "crate::usage::object")]
        usage_metadata: Option<UsageMetadata>,
    }
    let u = serde_json::from_slice::<EmbedResponse>(body).ok()?.usage_metadata?;
    u.prompt_token_count?;
    Some(Usage { output_tokens: 0, reasoning_tokens: 0, audio_output_tokens: 0, image_output_tokens: 0, cache_reported: false, ..u.normalise() }.bounded())
}

pub(crate) fn observe(data: &str) -> Seen {
    let Ok(r) = serde_json::from_str::<GenerateResponse>(data) else { return Seen::default() };
    let searches = r.searches();
    let mut seen = Seen { usage: r.usage_with(searches), error: r.error.is_some(), searches, ..Default::default() };
    for c in &r.candidates {
        for p in c.content.iter().flat_map(|c| &c.parts) {
            seen.output_chars += p.text.as_deref().map(|t| t.chars().count() as u64).unwrap_or(0);
        }
        seen.terminal |= c.finish_reason.is_some();
    }
    seen.terminal |= seen.error;
    seen.model = r.model_version;
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_paths_name_the_model_and_the_method() {
        assert_eq!(path_method("/v1beta/models/gemini-2.5-flash:generateContent"), Some(("gemini-2.5-flash", Method::Generate)));
        assert_eq!(path_method("/v1beta/models/google/gemini-2.5-flash:streamGenerateContent?alt=sse"), Some(("google/gemini-2.5-flash", Method::Stream)));
        assert_eq!(path_method("/v1/models/gemini-2.5-flash:countTokens"), Some(("gemini-2.5-flash", Method::CountTokens)));
        assert_eq!(path_method("/v1/models/gemini-embedding-001:batchEmbedContents"), Some(("gemini-embedding-001", Method::BatchEmbed)));
        assert_eq!(path_method("/v1beta/models/gemini-embedding-001:embedContent"), Some(("gemini-embedding-001", Method::Embed)));
        assert_eq!(path_method("/v1beta/models/gemini-embedding-001:batchEmbedText"), None);
        assert_eq!(path_method("/v1beta/models/gemini-2.5-flash"), None);
        assert_eq!(path_method("/v1/chat/completions"), None);
        for bad in ["../../v1/files", "gem%0Aini", "a/b", ".hidden", "x..y", ""] {
            assert_eq!(path_method(&format!("/v1beta/models/{bad}:generateContent")), None, "{bad}");
        }
    }

    #[test]
    fn an_embedding_answer_is_read_for_its_input_and_never_read_as_free() {
        // The Gemini API's batch answer (google-genai reads `usageMetadata`).
        let body = br#"{"embeddings":[{"values":[0.1,-0.2]},{"values":[0.3,0.4]}],"usageMetadata":{"promptTokenCount":17,"promptTokensDetails":[{"modality":"TEXT","tokenCount":17}],"totalTokenCount":17}}"#;
        let u = embed_usage(body).unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.cache_reported), (17, 0, false));
        // A count of something else is not input, and no count is no usage (estimated, not free).
        let odd = br#"{"embedding":{"values":[0.1]},"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":9,"thoughtsTokenCount":3}}"#;
        assert_eq!(embed_usage(odd).map(|u| (u.input_tokens, u.output_tokens, u.reasoning_tokens)), Some((5, 0, 0)));
        for none in [&br#"{"embedding":{"values":[0.1]}}"#[..], br#"{"embeddings":[],"usageMetadata":{}}"#, br#"{"usageMetadata":{"promptTokenCount":-1}}"#, b"[1]", b""] {
            assert_eq!(embed_usage(none), None, "{}", String::from_utf8_lossy(none));
        }
        let huge = format!(r#"{{"usageMetadata":{{"promptTokenCount":{}}}}}"#, u64::MAX);
        assert!(embed_usage(huge.as_bytes()).unwrap().input_tokens <= 1_000_000_000_000, "bounded");
        assert_eq!(crate::usage::parse_json_response(tollgate_protocol::Api::GeminiEmbedContent, body).usage.map(|u| u.input_tokens), Some(17));
    }

    #[test]
    fn grounding_queries_are_counted_distinct_and_non_empty_in_body_and_stream() {
        let body = r#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP",
            "groundingMetadata":{"webSearchQueries":["", "euro 2024 winner", "euro 2024 winner", "spain", 7, null, {"q":1}],
                                 "searchEntryPoint":{"renderedContent":"<div/>"}}}],
            "usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5}}"#;
        let u = serde_json::from_str::<GenerateResponse>(body).unwrap().usage().unwrap();
        assert_eq!((u.web_search_requests, u.output_tokens), (2, 5));
        // Not a list, or no grounding: no searches, the usage still read.
        let odd = r#"{"candidates":[{"groundingMetadata":{"webSearchQueries":"spain"}}],"usageMetadata":{"promptTokenCount":10}}"#;
        assert_eq!(serde_json::from_str::<GenerateResponse>(odd).unwrap().usage().map(|u| (u.web_search_requests, u.input_tokens)), Some((0, 10)));
        // A stream whose grounding comes in an event before the last usage.
        let stream = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"groundingMetadata\":{\"webSearchQueries\":[\"q1\",\"q2\",\"q3\"]}}],\"usageMetadata\":{\"promptTokenCount\":4}}\r\n\r\n\
                      data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":2}}\r\n\r\n";
        let mut t = crate::usage::StreamTracker::new(crate::request::Api::GeminiGenerateContent, false);
        for c in stream.as_bytes().chunks(5) {
            t.push(c);
        }
        t.finish();
        let u = t.summary().usage.unwrap();
        assert_eq!((u.web_search_requests, u.output_tokens), (3, 2));
        // A hostile answer naming 20,000 queries counts at most MAX_QUERIES.
        let many: Vec<String> = (0..20_000).map(|i| format!("q{i}")).collect();
        let body = serde_json::json!({"candidates": [{"groundingMetadata": {"webSearchQueries": many}}], "usageMetadata": {"promptTokenCount": 1}});
        let u = serde_json::from_value::<GenerateResponse>(body).unwrap().usage().unwrap();
        assert_eq!(u.web_search_requests, MAX_QUERIES as u64);
    }

    #[test]
    fn thoughts_are_output_and_cached_content_is_part_of_the_prompt() {
        // A Vertex AI response (tests/captures/README.md) and a thinking one.
        let r: GenerateResponse = serde_json::from_slice(include_bytes!("../../tests/captures/gemini_function_call.json")).unwrap();
        let u = r.usage().unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_reported), (50, 11, 0, true));
        assert_eq!(r.model_version.as_deref(), Some("gemini-2.0-flash-001"));
        let s = observe(r#"{"candidates":[{"content":{"parts":[{"text":"héllo"}],"role":"model"},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":1000,"cachedContentTokenCount":600,"candidatesTokenCount":20,"thoughtsTokenCount":300,"toolUsePromptTokenCount":5}}"#);
        let u = s.usage.unwrap();
        assert_eq!((u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens), (1005, 600, 320, 300));
        assert!(s.terminal && s.output_chars == 5);
        assert!(observe(r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}"#).error);
        assert_eq!(observe("[DONE]"), Seen::default());
    }
}
