//! Gemini: its native paths, its OpenAI-compatible endpoint, its counts.

use super::*;

#[test]
fn gemini_native_requests_name_the_model_in_the_path_and_chat_goes_to_its_openai_endpoint() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "google", "format": "gemini", "cluster": "google", "host": "generativelanguage.googleapis.com", "api_key": "g-up"}],
      "routes": [{"model": "google/*", "provider": "google"}],
      "pricing": {"google/gemini-2.5-flash": {"input": 300000, "output": 2500000}}}"#).unwrap();
    let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"temperature":0.2}}"#;
    let p = plan(&cfg, &key(None), Api::GeminiGenerateContent, body, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", false).unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!(h[":path"], "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    assert_eq!(h["x-goog-api-key"], "g-up");
    assert!(p.chat.stream && p.target.route == "google/*" && p.target.upstream_model == "gemini-2.5-flash");
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!(sent["generationConfig"], serde_json::json!({"temperature": 0.2, "maxOutputTokens": 4096}));
    let body = br#"{"contents":[],"generationConfig":{"maxOutputTokens":50,"candidateCount":2}}"#;
    let p = plan(&cfg, &key(None), Api::GeminiGenerateContent, body, "/v1beta/models/google/gemini-2.5-flash:generateContent", false).unwrap();
    assert!(p.body.is_none() && !p.chat.stream);
    assert_eq!(p.chat.output_bound(4096), 100);
    // an OpenAI chat request goes to Gemini's OpenAI-compatible endpoint
    let p = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"google/gemini-2.5-flash","messages":[]}"#, "/v1/chat/completions", false).unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["authorization"].as_str()), ("/v1beta/openai/chat/completions", "Bearer g-up"));
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!((sent["model"].as_str(), sent["max_tokens"].as_u64()), (Some("gemini-2.5-flash"), Some(4096)));
    let r = plan(&cfg, &key(None), Api::GeminiGenerateContent, b"{}", "/v1beta/models/gemini-2.5-flash:generateContent", false).unwrap_err();
    assert_eq!(r.error.code, "missing_contents");
}

/// Gemini's native embeddings (google-genai's `embed_content`) go to the
/// route's upstream model on the same method, every `model` in the body
/// made the upstream one, input reserved and no output; a model served by
/// another format has no such API.
#[test]
fn gemini_embeddings_go_to_the_upstream_model_named_in_the_path_and_every_request() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "google", "format": "gemini", "cluster": "google", "host": "generativelanguage.googleapis.com", "api_key": "g-up"},
                    {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"}],
      "routes": [{"model": "embed", "provider": "google", "upstream_model": "gemini-embedding-001"}, {"model": "google/*", "provider": "google"},
                 {"model": "text-embedding-*", "provider": "openai"}],
      "pricing": {"google/gemini-embedding-001": {"input": 150000, "output": 0}, "openai/text-embedding-3-small": {"input": 20000, "output": 0}},
      "unpriced_models": "deny"}"#).unwrap();
    let batch = br#"{"requests":[{"content":{"parts":[{"text":"What is the meaning of life?"}]},"model":"models/embed","taskType":"RETRIEVAL_DOCUMENT"},{"content":{"parts":[{"text":"How does the brain work?"}]},"model":"models/gemini-3-pro-preview"}]}"#;
    let p = plan(&cfg, &key(None), Api::GeminiEmbedContent, batch, "/v1beta/models/embed:batchEmbedContents", false).unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["x-goog-api-key"].as_str()), ("/v1beta/models/gemini-embedding-001:batchEmbedContents", "g-up"));
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    let models: Vec<&str> = sent["requests"].as_array().unwrap().iter().filter_map(|r| r["model"].as_str()).collect();
    assert_eq!(models, ["models/gemini-embedding-001"; 2], "the model priced is the model run");
    assert_eq!(sent["requests"][0]["taskType"], "RETRIEVAL_DOCUMENT");
    assert!(!p.chat.stream && p.chat.estimated_input_tokens > 0);
    assert_eq!(p.worst.tokens, p.chat.estimated_input_tokens, "no output side");
    assert_eq!(p.worst.micros, (p.chat.estimated_input_tokens * 150_000).div_ceil(1_000_000), "input at the input price");
    // One content on :embedContent, the key in the query kept out.
    let one = br#"{"content":{"parts":[{"text":"hi"}]},"outputDimensionality":8}"#;
    let p = plan(&cfg, &key(None), Api::GeminiEmbedContent, one, "/v1beta/models/google/gemini-embedding-001:embedContent?key=tg-1", false).unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!(h[":path"], "/v1beta/models/gemini-embedding-001:embedContent");
    assert_eq!(p.body.as_deref(), Some(&one[..]), "nothing to change");
    // The body each method needs; a key held to other models; another format's model.
    let code = |body: &[u8], path: &str| plan(&cfg, &key(None), Api::GeminiEmbedContent, body, path, false).unwrap_err().error.code;
    assert_eq!(code(one, "/v1beta/models/embed:batchEmbedContents"), "missing_requests");
    assert_eq!(code(batch, "/v1beta/models/embed:embedContent"), "missing_content");
    let r = plan(&cfg, &key(Some(vec!["google/gemini-2.5-*"])), Api::GeminiEmbedContent, one, "/v1beta/models/embed:embedContent", false).unwrap_err();
    assert_eq!(r.error.code, "model_not_allowed");
    let r = plan(&cfg, &key(None), Api::GeminiEmbedContent, one, "/v1beta/models/text-embedding-3-small:embedContent", false).unwrap_err();
    assert_eq!(r.error.code, "wrong_api_for_model");
    assert!(r.error.message.contains("no Gemini embedContent API"), "{}", r.error.message);
    assert_eq!(crate::request::classify_path("/v1beta/models/embed:batchEmbedContents"), crate::request::Endpoint::Chat(Api::GeminiEmbedContent));
    assert_eq!(crate::request::classify_path("/v1/models/embed:embedContent?key=k"), crate::request::Endpoint::Chat(Api::GeminiEmbedContent));
    assert_eq!(crate::request::classify_path("/v1beta/models/embed%3AembedContent"), crate::request::Endpoint::Disguised);
}

/// A fallback of a Gemini-native request goes to the fallback's model (the
/// path names the one that failed): it was planned for the path's model
/// again, so the "alternative" was the failing model once more. A fallback
/// of another format cannot take a native Gemini request.
#[test]
fn a_gemini_native_fallback_goes_to_the_fallbacks_model_not_the_paths() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "google", "format": "gemini", "cluster": "google", "host": "generativelanguage.googleapis.com", "api_key": "g-up"},
                    {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"}],
      "routes": [{"model": "gemini-2.5-flash", "provider": "google", "fallbacks": ["lite", "gpt-5.4"]},
                 {"model": "lite", "provider": "google", "upstream_model": "gemini-2.5-flash-lite"}, {"model": "gpt-*", "provider": "openai"},
                 {"model": "google/*", "provider": "google"}],
      "pricing": {"google/*": {"input": 300000, "output": 2500000}, "openai/*": {"input": 1, "output": 1}}}"#).unwrap();
    let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let first = plan(&cfg, &key(None), Api::GeminiGenerateContent, body, path, false).unwrap();
    assert_eq!(first.fallbacks, ["lite", "gpt-5.4"]);
    let fallback = |model: &str| plan_for(&cfg, &key(None), Api::GeminiGenerateContent, body, path, false, Choice { model: Some(model), ..Choice::default() });
    let p = fallback("lite").unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!(h[":path"], "/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent?alt=sse");
    assert_eq!((p.target.route.as_str(), p.target.upstream_model.as_str(), p.chat.model.as_str()), ("lite", "gemini-2.5-flash-lite", "lite"));
    assert!(p.chat.stream);
    assert_eq!(fallback("gpt-5.4").unwrap_err().error.code, "wrong_api_for_model");
    // (A key held to the path's model is held to it for its fallbacks too: each is the key's to use.)
    assert_eq!(plan_for(&cfg, &key(Some(vec!["gemini-2.5-flash"])), Api::GeminiGenerateContent, body, path, false, Choice { model: Some("lite"), ..Choice::default() }).unwrap_err().error.code, "model_not_allowed");
}

/// Gemini's token counting is routed as the generation it counts would be,
/// to `:countTokens` on the route's upstream model, with nothing added,
/// free; for a model of another format it is not found.
#[test]
fn a_gemini_count_goes_to_count_tokens_with_nothing_added() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "google", "format": "gemini", "cluster": "google", "host": "generativelanguage.googleapis.com", "api_key": "g-up"},
                    {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"}],
      "routes": [{"model": "google/*", "provider": "google"}, {"model": "gpt-*", "provider": "openai"}],
      "unpriced_models": "deny"}"#).unwrap();
    let count = |path: &str| {
        let choice = Choice { count_tokens: true, ..Choice::default() };
        plan_for(&cfg, &key(None), Api::GeminiGenerateContent, br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#, path, false, choice)
    };
    let p = count("/v1/models/gemini-2.5-flash:countTokens").unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["x-goog-api-key"].as_str()), ("/v1beta/models/gemini-2.5-flash:countTokens", "g-up"));
    assert!(p.body.is_none() && p.fallbacks.is_empty() && !p.chat.stream, "no cap added, unpriced yet served");
    let e = count("/v1/models/gpt-5.4:countTokens").unwrap_err().error;
    assert_eq!((e.status, e.code), (404, "unknown_endpoint"), "{}", e.message);
    // The whole-request form (Google's legacy SDKs) counts for the upstream
    // model, whatever model it names; it cannot be generated from.
    let whole = br#"{"generateContentRequest":{"model":"models/gemini-3-pro","contents":[{"parts":[{"text":"hi"}]}]}}"#;
    let choice = Choice { count_tokens: true, ..Choice::default() };
    let p = plan_for(&cfg, &key(None), Api::GeminiGenerateContent, whole, "/v1beta/models/gemini-2.5-flash:countTokens", false, choice).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_deref().unwrap()).unwrap();
    assert_eq!(sent["generateContentRequest"]["model"], "models/gemini-2.5-flash");
    let e = plan(&cfg, &key(None), Api::GeminiGenerateContent, whole, "/v1beta/models/gemini-2.5-flash:generateContent", false).unwrap_err();
    assert_eq!(e.error.code, "missing_contents");
    // The Responses API's count goes to the OpenAI-format provider, its model rewritten, no cap added.
    let choice = Choice { count_tokens: true, ..Choice::default() };
    let p = plan_for(&cfg, &key(None), Api::OpenAiResponses, br#"{"model":"gpt-5.4","input":"hi"}"#, "/v1/responses/input_tokens", false, choice).unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!(h[":path"], "/v1/responses/input_tokens");
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_deref().unwrap_or(br#"{"model":"gpt-5.4","input":"hi"}"#)).unwrap();
    assert_eq!(sent, serde_json::json!({"model": "gpt-5.4", "input": "hi"}), "nothing added");
}
