use super::*;
use std::rc::Rc;

const CFG: &str = r#"{
  "providers": [
    {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
  "routes": [{"model": "cheap", "provider": "openai", "upstream_model": "gpt-5.4-mini"},
             {"model": "openai/*", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
  "pricing": {"openai/gpt-5.4-mini": {"input": 1000000, "output": 2000000},
              "openai/text-embedding-3-small": {"input": 20000, "output": 0}},
  "unpriced_models": "deny"}"#;

fn key(models: Option<Vec<&str>>) -> Rc<KeyInfo> {
    Rc::new(KeyInfo {
        id: "k".into(),
        key_hash: "h".into(),
        team: "t".into(),
        project: "p".into(),
        models: models.map(|ms| ms.into_iter().map(|m| crate::config::Pattern::parse(m).unwrap()).collect()),
        projects: vec![],
        tags: Default::default(),
    })
}

#[test]
fn plans_the_rewrite_headers_and_worst_case() {
    let cfg = Config::from_json(CFG.as_bytes()).unwrap();
    let body = br#"{"model":"cheap","messages":[{"role":"user","content":"12345678"}],"max_tokens":100}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiChat, body, "/v1/chat/completions?x=1", false).unwrap();
    assert_eq!(p.target, Target { provider: "openai".into(), route: "cheap".into(), upstream_model: "gpt-5.4-mini".into(), advisor: None });
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!(h[":path"], "/v1/chat/completions?x=1");
    assert_eq!(h[":authority"], "api.openai.com");
    assert_eq!(h["x-tollgate-cluster"], "openai");
    assert_eq!(h["authorization"], "Bearer sk-up");
    let new_body: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!(new_body["model"], "gpt-5.4-mini");
    assert_eq!(h["content-length"], p.body.as_ref().unwrap().len().to_string());
    // input estimate: the messages' raw JSON / 4; output: the client's cap
    let input = p.chat.estimated_input_tokens;
    assert_eq!(p.worst.tokens, input + 100);
    assert_eq!(p.worst.micros, (input * 1_000_000 + 100 * 2_000_000).div_ceil(1_000_000));
}

#[test]
fn an_audio_or_image_models_reservation_holds_its_output_at_the_dearest_rate() {
    let mut v: serde_json::Value = serde_json::from_str(CFG).unwrap();
    v["pricing"]["openai/gpt-audio"] = serde_json::json!({"input": 1000000, "output": 2000000, "audio_output": 64000000});
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    let body = br#"{"model":"openai/gpt-audio","messages":[{"role":"user","content":"12345678"}],"max_tokens":100}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiChat, body, "/v1/chat/completions", false).unwrap();
    let input = p.chat.estimated_input_tokens;
    assert_eq!(p.worst.micros, (input * 1_000_000 + 100 * 64_000_000).div_ceil(1_000_000), "the answer may be all audio");
    assert_eq!(p.worst.tokens, input + 100);
}

/// A request's bounded searches are reserved, and so is each model call
/// Anthropic's server tool loop may make for them, reading the context and
/// writing up to `max_tokens` (request/server_tools.rs).
#[test]
fn the_searches_a_request_bounds_and_their_calls_are_reserved() {
    let mut v: serde_json::Value = serde_json::from_str(CFG).unwrap();
    v["pricing"]["anthropic/claude-x"] = serde_json::json!({"input": 1000000, "output": 2000000, "web_search_per_1k": 10000000});
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    let body = |tools: &str| format!(r#"{{"model":"claude-x","max_tokens":100,"messages":[{{"role":"user","content":"hi"}}],"tools":{tools}}}"#);
    let plan_of = |tools: &str| plan(&cfg, &key(None), Api::AnthropicMessages, body(tools).as_bytes(), "/v1/messages", true).unwrap();
    // One call's tokens, priced.
    let call = |p: &Plan| (p.chat.estimated_input_tokens * 1_000_000 + 100 * 2_000_000).div_ceil(1_000_000);
    let one = plan_of(r#"[{"name":"f","input_schema":{"type":"object"}}]"#);
    assert_eq!(one.worst.tokens, one.chat.estimated_input_tokens + 100, "a client tool: one call");
    let five = plan_of(r#"[{"type":"web_search_20250305","name":"web_search","max_uses":5}]"#);
    assert_eq!(five.worst.micros, 6 * call(&five) + 5 * 10_000, "five $10-per-1,000 searches, six calls");
    assert_eq!(five.worst.tokens, 6 * (five.chat.estimated_input_tokens + 100));
    let unbounded = plan_of(r#"[{"type":"web_search_20250305","name":"web_search"}]"#);
    assert_eq!(unbounded.worst.micros, 2 * call(&unbounded) + 10_000, "unbounded: one search, an estimate");
    let coded = plan_of(r#"[{"type":"code_execution_20250825","name":"code_execution"}]"#);
    assert_eq!(coded.worst.tokens, 2 * (coded.chat.estimated_input_tokens + 100), "no bound: one use, an estimate");
    let many = plan_of(r#"[{"type":"web_search_20250305","name":"web_search","max_uses":40}]"#);
    assert_eq!(many.worst.tokens, 10 * (many.chat.estimated_input_tokens + 100), "the loop's ten calls at most");
}

#[test]
fn a_search_models_reservation_holds_its_per_request_search() {
    let mut v: serde_json::Value = serde_json::from_str(CFG).unwrap();
    v["pricing"]["openai/gpt-5-search-api"] = serde_json::json!({"input": 1000000, "output": 2000000, "web_searches_per_request": 1});
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    let body = br#"{"model":"openai/gpt-5-search-api","messages":[{"role":"user","content":"12345678"}],"max_tokens":100}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiChat, body, "/v1/chat/completions", false).unwrap();
    let input = p.chat.estimated_input_tokens;
    assert_eq!(p.worst.micros, (input * 1_000_000 + 100 * 2_000_000).div_ceil(1_000_000) + 10_000, "tokens and one $10-per-1,000 search");
    assert_eq!(p.worst.tokens, input + 100, "a search is no token");
    v["pricing"]["openai/gpt-5-search-api"]["web_searches_per_request"] = serde_json::json!(101);
    let e = Config::from_json(v.to_string().as_bytes()).err().unwrap();
    assert!(e.to_string().contains("pricing.openai/gpt-5-search-api.web_searches_per_request"), "{e}");
    v["pricing"]["openai/gpt-5-search-api"]["web_searches_per_request"] = serde_json::json!(1);
    v["pricing"]["openai/gpt-5-search-api"]["web_search_unit"] = serde_json::json!("query");
    let e = Config::from_json(v.to_string().as_bytes()).err().unwrap();
    assert!(e.to_string().contains("web_search_unit"), "{e}");
}

#[test]
fn refusals_carry_what_was_known() {
    let cfg = Config::from_json(CFG.as_bytes()).unwrap();
    let r = plan(&cfg, &key(Some(vec!["cheap"])), Api::OpenAiChat, br#"{"model":"openai/gpt-5.4","messages":[]}"#, "/", false)
        .unwrap_err();
    assert_eq!((r.error.code, r.chat.is_some(), r.target.is_some()), ("model_not_allowed", true, false));
    // An embeddings request for an Anthropic model has no translation: refused by name.
    let r = plan(&cfg, &key(None), Api::OpenAiEmbeddings, br#"{"model":"claude-x","input":"x"}"#, "/", false).unwrap_err();
    assert_eq!((r.error.code, r.target.map(|t| t.provider)), ("wrong_api_for_model", Some("anthropic".into())));
    let r = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"openai/gpt-9","messages":[]}"#, "/", false).unwrap_err();
    assert_eq!(r.error.code, "model_not_priced");
    let r = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"nope","messages":[]}"#, "/", false).unwrap_err();
    assert_eq!(r.error.code, "model_not_found");
    let r = plan(&cfg, &key(None), Api::OpenAiChat, b"{", "/", false).unwrap_err();
    assert_eq!((r.error.code, r.chat.is_none()), ("invalid_json", true));
}

#[test]
fn anthropic_gets_its_version_unless_the_client_sent_one() {
    let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
    let body = br#"{"model":"claude-x","max_tokens":5,"messages":[]}"#;
    let p = plan(&cfg, &key(None), Api::AnthropicMessages, body, "/v1/messages", false).unwrap();
    assert!(p.headers.iter().any(|(k, v)| k == "anthropic-version" && v == "2023-06-01"));
    assert!(!p.headers.iter().any(|(k, _)| k == "x-api-key"), "Envoy injects it: none configured");
    assert!(p.body.is_none(), "nothing to change");
    let p = plan(&cfg, &key(None), Api::AnthropicMessages, body, "/v1/messages", true).unwrap();
    assert!(!p.headers.iter().any(|(k, _)| k == "anthropic-version"));
}

#[test]
fn a_token_count_goes_to_the_anthropic_provider_as_counted_with_nothing_added() {
    let routes = r#""routes": [{"model": "sonnet", "provider": "anthropic", "upstream_model": "claude-sonnet-4-5",
                                "auto_cache": {"min_tokens": 1}, "fallbacks": ["claude-y"]},"#;
    let priced = r#""pricing": {"anthropic/claude-sonnet-4-5": {"input": 3000000, "output": 15000000},"#;
    let cfg = Config::from_json(CFG.replace(r#""routes": ["#, routes).replace(r#""pricing": {"#, priced).as_bytes()).unwrap();
    let count = Choice { count_tokens: true, ..Default::default() };
    let body = br#"{"model":"sonnet","messages":[{"role":"user","content":"hi"}],"system":"be brief"}"#;
    let p = plan_for(&cfg, &key(None), Api::AnthropicMessages, body, "/v1/messages/count_tokens?beta=true", false, count).unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["anthropic-version"].as_str()), ("/v1/messages/count_tokens?beta=true", "2023-06-01"));
    assert_eq!((p.target.provider.as_str(), p.target.upstream_model.as_str()), ("anthropic", "claude-sonnet-4-5"));
    // The model rewritten, nothing added (no cache marker), no fallback.
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}], "system": "be brief"})
    );
    assert!(p.fallbacks.is_empty());
    // The same body as a messages request gets the route's cache marker and fallbacks.
    let m = plan(&cfg, &key(None), Api::AnthropicMessages, body, "/v1/messages", false).unwrap();
    assert!(String::from_utf8_lossy(m.body.as_ref().unwrap()).contains("cache_control"));
    assert_eq!(m.fallbacks, vec!["claude-y".to_string()]);
    // Free, so an unpriced model is counted even where unpriced models are refused.
    assert!(plan_for(&cfg, &key(None), Api::AnthropicMessages, br#"{"model":"claude-z","messages":[]}"#, "/", false, count).is_ok());
    // A model served in another format cannot be counted there: 404, as Claude Code expects.
    let r = plan_for(&cfg, &key(None), Api::AnthropicMessages, br#"{"model":"cheap","messages":[]}"#, "/", false, count).unwrap_err();
    assert_eq!((r.error.status, r.error.code), (404, "unknown_endpoint"));
    assert!(r.error.message.contains("provider 'openai'"), "{}", r.error.message);
    // The key's model list holds as for any request.
    let r = plan_for(&cfg, &key(Some(vec!["cheap"])), Api::AnthropicMessages, body, "/", false, count).unwrap_err();
    assert_eq!(r.error.code, "model_not_allowed");
}

#[test]
fn embeddings_reserve_input_only_and_get_no_output_cap() {
    let cfg = Config::from_json(CFG.replace(r#""api_key": "sk-up""#, r#""api_key": "sk-up", "output_cap_field": "max_tokens""#).as_bytes()).unwrap();
    let body = br#"{"model":"openai/text-embedding-3-small","input":["abcdefgh","ijkl"],"encoding_format":"float"}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiEmbeddings, body, "/v1/embeddings", false).unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!(h[":path"], "/v1/embeddings");
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!(sent, serde_json::json!({"model": "text-embedding-3-small", "input": ["abcdefgh", "ijkl"], "encoding_format": "float"}));
    assert_eq!(p.worst.tokens, p.chat.estimated_input_tokens, "no output side");
    assert!(p.chat.estimated_input_tokens > 0);
    // Anthropic has no embeddings; a chat body on the embeddings path lacks `input`.
    let r = plan(&cfg, &key(None), Api::OpenAiEmbeddings, br#"{"model":"claude-x","input":"a"}"#, "/", false).unwrap_err();
    assert_eq!(r.error.code, "wrong_api_for_model");
    assert!(r.error.message.contains("no OpenAI embeddings API"), "{}", r.error.message);
    let r = plan(&cfg, &key(None), Api::OpenAiEmbeddings, br#"{"model":"cheap","messages":[]}"#, "/", false).unwrap_err();
    assert_eq!(r.error.code, "missing_input");
}

#[test]
fn legacy_completions_bound_output_by_the_apis_default_and_best_of() {
    let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
    // No max_tokens: the API's own default (16) is the bound, and nothing is added upstream.
    let body = br#"{"model":"openai/gpt-3.5-turbo-instruct","prompt":"Say this is a test","n":2,"best_of":3,"stream":true}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiCompletions, body, "/v1/completions", false).unwrap();
    assert_eq!(p.chat.output_bound(4096), 16 * 3, "best_of candidates are all billed");
    assert_eq!(p.worst.tokens, p.chat.estimated_input_tokens + 48);
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!(sent["stream_options"], serde_json::json!({"include_usage": true}), "usage forced as for chat");
    assert!(sent.get("max_completion_tokens").is_none() && sent.get("max_tokens").is_none());
    assert!(p.headers.iter().any(|(k, v)| k == ":path" && v == "/v1/completions"));
    let body = br#"{"model":"openai/gpt-3.5-turbo-instruct","prompt":["a","b"],"max_tokens":100}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiCompletions, body, "/v1/completions", false).unwrap();
    assert_eq!(p.chat.output_bound(4096), 100);
    let r = plan(&cfg, &key(None), Api::OpenAiCompletions, br#"{"model":"cheap","messages":[]}"#, "/", false).unwrap_err();
    assert_eq!(r.error.code, "missing_prompt");
    let r = plan(&cfg, &key(None), Api::OpenAiCompletions, br#"{"model":"claude-x","prompt":"a"}"#, "/", false).unwrap_err();
    assert!(r.error.message.contains("no OpenAI completions API"), "{}", r.error.message);
}

#[test]
fn responses_get_max_output_tokens_when_the_client_set_no_cap() {
    let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
    let body = br#"{"model":"cheap","input":"hi","previous_response_id":"resp_1","store":false,"stream":true}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiResponses, body, "/v1/responses", false).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!(sent["max_output_tokens"], 4096);
    assert!(sent.get("max_completion_tokens").is_none() && sent.get("stream_options").is_none());
    assert_eq!((sent["previous_response_id"].as_str(), sent["store"].as_bool()), (Some("resp_1"), Some(false)));
    assert!(p.headers.iter().any(|(k, v)| k == ":path" && v == "/v1/responses"));
    let body = br#"{"model":"cheap","input":"hi","max_output_tokens":300}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiResponses, body, "/v1/responses", false).unwrap();
    assert_eq!(p.chat.output_bound(4096), 300);
    assert!(p.body.as_ref().is_some_and(|b| !String::from_utf8_lossy(b).contains("4096")));
    // input may come from a stored prompt or a previous response
    assert!(plan(&cfg, &key(None), Api::OpenAiResponses, br#"{"model":"cheap","prompt":{"id":"pmpt_1"}}"#, "/", false).is_ok());
}

#[test]
fn an_openai_chat_request_for_a_claude_model_goes_up_translated() {
    let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
    let body = br#"{"model":"claude-x","messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiChat, body, "/v1/chat/completions", false).unwrap();
    assert_eq!(p.translate, Some(Direction::OpenAiToAnthropic));
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["anthropic-version"].as_str()), ("/v1/messages", "2023-06-01"));
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!(sent["system"], serde_json::json!([{"type": "text", "text": "s"}]));
    assert_eq!(sent["max_tokens"], 4096);
    assert!(sent.get("stream_options").is_none());
    assert_eq!(p.worst.tokens, p.chat.estimated_input_tokens + 4096);
    let r = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"claude-x","messages":[],"n":3}"#, "/", false).unwrap_err();
    assert_eq!((r.error.code, r.error.param), ("untranslatable_field", Some("n")));
}

#[test]
fn chat_and_anthropic_requests_for_a_responses_only_model_go_to_the_responses_api() {
    let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
    let chat = br#"{"model":"openai/gpt-5.1-codex","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let p = plan(&cfg, &key(None), Api::OpenAiChat, chat, "/v1/chat/completions", false).unwrap();
    assert_eq!(p.translate, Some(Direction::ChatToResponses));
    assert!(p.headers.iter().any(|(k, v)| k == ":path" && v == "/v1/responses"));
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!(sent, serde_json::json!({"model": "gpt-5.1-codex", "input": [{"role": "user", "content": "hi"}], "stream": true,
                                        "store": false, "max_output_tokens": 4096}));
    // An Anthropic client: through chat (no stream_options, the effort kept beside tools: the Responses API takes both).
    let msgs = br#"{"model":"openai/gpt-5.3-codex","max_tokens":900,"stream":true,"thinking":{"type":"enabled","budget_tokens":20000},
                    "tools":[{"name":"Read","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"hi"}]}"#;
    let p = plan(&cfg, &key(None), Api::AnthropicMessages, msgs, "/v1/messages", false).unwrap();
    assert_eq!(p.translate, Some(Direction::AnthropicToResponses));
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
    assert_eq!((sent["max_output_tokens"].as_u64(), &sent["reasoning"]), (Some(900), &serde_json::json!({"effort": "high"})));
    assert_eq!(sent["tools"][0]["name"], "Read");
    assert!(sent.get("stream_options").is_none());
    // Other models stay on chat completions; a route may say which API.
    let p = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"openai/gpt-5.4","messages":[]}"#, "/", false).unwrap();
    assert_eq!(p.translate, None);
    let forced = CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"")
        .replace(r#"{"model": "openai/*", "provider": "openai"}"#, r#"{"model": "openai/*", "provider": "openai", "upstream_api": "chat_completions"}, {"model": "r/*", "provider": "openai", "upstream_api": "responses"}"#);
    let cfg = Config::from_json(forced.as_bytes()).unwrap();
    assert_eq!(plan(&cfg, &key(None), Api::OpenAiChat, chat, "/", false).unwrap().translate, None);
    let p = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"r/gpt-6","messages":[]}"#, "/", false).unwrap();
    assert_eq!(p.translate, Some(Direction::ChatToResponses));
    // A Responses client for such a model is not translated.
    let p = plan(&cfg, &key(None), Api::OpenAiResponses, br#"{"model":"r/gpt-6","input":"x"}"#, "/v1/responses", false).unwrap();
    assert_eq!(p.translate, None);
    for (route, field) in [(r#"{"model": "x", "provider": "anthropic", "upstream_api": "responses"}"#, "routes[0].upstream_api"),
                           (r#"{"model": "x", "provider": "openai", "upstream_api": "assistants"}"#, "routes[0].upstream_api")] {
        let bad = CFG.replace(r#""routes": [{"model": "cheap", "provider": "openai", "upstream_model": "gpt-5.4-mini"},"#, &format!(r#""routes": [{route},"#));
        let e = Config::from_json(bad.as_bytes()).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}

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

/// The client's query string (the Anthropic SDK's `?beta=true`, which
/// Claude Code sends on every request) goes on only to a provider of the
/// client's own API: Google's frontend refuses a parameter it does not bind,
/// so Claude Code's requests translated for Gemini were all refused, and
/// an OpenAI client's query to Gemini's OpenAI-compatible endpoint would be.
#[test]
fn a_clients_query_goes_on_only_to_a_provider_of_its_own_api() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "google", "format": "gemini", "cluster": "google", "host": "generativelanguage.googleapis.com"},
                    {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
      "routes": [{"model": "google/*", "provider": "google"}, {"model": "gpt-*", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "unpriced_models": "allow"}"#).unwrap();
    let path_for = |api: Api, body: &str, path: &str| {
        let p = plan(&cfg, &key(None), api, body.as_bytes(), path, true).unwrap();
        p.headers.iter().find(|(k, _)| k == ":path").map(|(_, v)| v.clone()).unwrap()
    };
    let messages = |m: &str| format!(r#"{{"model":"{m}","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}]}}"#);
    assert_eq!(path_for(Api::AnthropicMessages, &messages("google/gemini-2.5-flash"), "/v1/messages?beta=true"), "/v1beta/openai/chat/completions");
    assert_eq!(path_for(Api::AnthropicMessages, &messages("gpt-5.4"), "/v1/messages?beta=true"), "/v1/chat/completions");
    assert_eq!(path_for(Api::AnthropicMessages, &messages("claude-x"), "/v1/messages?beta=true"), "/v1/messages?beta=true", "its own API: kept");
    let chat = r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(path_for(Api::OpenAiChat, chat, "/v1/chat/completions?x=1"), "/v1/chat/completions?x=1");
    // Gemini's OpenAI-compatible endpoint is Google's frontend too: an
    // OpenAI client's own query (Azure's api-version) does not go there.
    let on_gemini = r#"{"model":"google/gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(path_for(Api::OpenAiChat, on_gemini, "/v1/chat/completions?api-version=2024-10-21"), "/v1beta/openai/chat/completions");
    let gemini = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;
    assert_eq!(path_for(Api::GeminiGenerateContent, gemini, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=k"),
               "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "the key never, alt=sse kept");
}

/// Anthropic's server-side `fallbacks` let other models serve the turn,
/// priced as theirs: passed on, a key limited to Haiku could have Opus
/// answer, priced as Haiku. Refused before sending; a count runs no model.
#[test]
fn server_side_fallbacks_are_refused() {
    let cfg = Config::from_json(CFG.replace("\"unpriced_models\": \"deny\"", "\"unpriced_models\": \"allow\"").as_bytes()).unwrap();
    let body = |extra: &str| format!(r#"{{"model":"claude-x","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}]{extra}}}"#);
    let refused = |extra: &str| {
        plan(&cfg, &key(Some(vec!["claude-x"])), Api::AnthropicMessages, body(extra).as_bytes(), "/v1/messages", true)
            .err()
            .map(|r| (r.error.status, r.error.code, r.error.param))
    };
    for chain in [r#"[{"model":"claude-opus-4-7"}]"#, r#"{"model":"x"}"#, r#""claude-opus-4-7""#] {
        assert_eq!(refused(&format!(r#","fallbacks":{chain}"#)), Some((400, "unsupported_field", Some("fallbacks"))), "{chain}");
    }
    for fine in ["", r#","fallbacks":null"#, r#","fallbacks":[]"#, r#","tools":[{"name":"advisor","input_schema":{"type":"object"}}]"#] {
        assert_eq!(refused(fine), None, "{fine}");
    }
    let choice = Choice { count_tokens: true, ..Choice::default() };
    let counted = body(r#","fallbacks":[{"model":"claude-opus-4-7"}]"#);
    assert!(plan_for(&cfg, &key(None), Api::AnthropicMessages, counted.as_bytes(), "/v1/messages/count_tokens", true, choice).is_ok());
    // OpenAI-format requests have no such members: a `fallbacks` there is the provider's to refuse.
    let chat = br#"{"model":"cheap","messages":[{"role":"user","content":"hi"}],"fallbacks":["x"]}"#;
    assert!(plan(&cfg, &key(None), Api::OpenAiChat, chat, "/v1/chat/completions", false).is_ok());
}

/// Anthropic's advisor tool (Claude Code's `/advisor`) runs another model
/// within the request, whose tokens Anthropic reports apart from the
/// top-level usage (an advisor's Opus tokens were 90 % of a real turn's
/// cost, ccusage/ccusage#1115). It is held to what the executor is: the
/// key's models, a route to the same provider, a price; and its calls are
/// reserved: `max_uses` calls of the whole input and `max_tokens` output
/// each, or one call of `default_max_tokens` when it names no bounds.
#[test]
fn an_advisor_is_held_to_the_key_routed_priced_and_reserved() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"},
                    {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"}],
      "routes": [{"model": "claude-*", "provider": "anthropic"}, {"model": "opus", "provider": "anthropic", "upstream_model": "claude-opus-4-8"},
                 {"model": "claude-gpt", "provider": "openai", "upstream_model": "gpt-5.4"}, {"model": "gpt-*", "provider": "openai"}],
      "pricing": {"anthropic/claude-haiku-4-5": {"input": 1000000, "output": 5000000}, "anthropic/claude-opus-4-8": {"input": 5000000, "output": 25000000},
                  "openai/gpt-5.4": {"input": 1, "output": 1}},
      "default_max_tokens": 2000,
      "unpriced_models": "deny"}"#).unwrap();
    let tool = |extra: &str| format!(r#"{{"type":"advisor_20260301","name":"advisor","model":"claude-opus-4-8"{extra}}}"#);
    let body = |model: &str, tools: &str| format!(r#"{{"model":"{model}","max_tokens":100,"messages":[{{"role":"user","content":"{}"}}],"tools":[{tools}]}}"#, "x".repeat(400));
    let run = |k: Option<Vec<&str>>, b: &str| plan(&cfg, &key(k), Api::AnthropicMessages, b.as_bytes(), "/v1/messages", true);
    let refused = |k: Option<Vec<&str>>, b: &str| run(k, b).err().map(|r| (r.error.status, r.error.code, r.error.param));
    // Claude Code's form: routed, one call of default_max_tokens reserved
    // on top of the executor's input and its 100 output tokens (Haiku $1 /
    // $5, Opus $5 / $25 a million).
    let p = run(None, &body("claude-haiku-4-5", &tool(""))).unwrap();
    let a = p.target.advisor.as_deref().unwrap();
    assert_eq!((a.model.as_str(), a.route.as_str(), a.calls, a.output_per_call), ("claude-opus-4-8", "claude-*", 1, 2000));
    let input = p.chat.estimated_input_tokens;
    assert!(input > 100);
    // The executor writes again after the advice: two calls of its own.
    let executor = 2 * (input + 100 * 5);
    let opus = |calls: u64, out: u64| calls * (input * 5 + out * 25);
    assert_eq!(p.worst.micros, executor + opus(1, 2000), "{:?}", p.worst);
    assert_eq!(p.worst.tokens, 2 * (input + 100) + input + 2000);
    // Its own bounds: max_uses calls of max_tokens each (and the executor's
    // call after each).
    let p = run(None, &body("claude-haiku-4-5", &tool(r#","max_uses":3,"max_tokens":1024"#))).unwrap();
    let input = p.chat.estimated_input_tokens;
    assert_eq!(p.worst.tokens, 4 * (input + 100) + 3 * (input + 1024));
    assert_eq!(p.worst.micros, 4 * (input + 500) + 3 * (input * 5 + 1024 * 25));
    // The tool goes upstream as sent.
    assert!(p.body.as_deref().is_none_or(|b| String::from_utf8_lossy(b).contains(r#""model":"claude-opus-4-8""#)));
    // A key that may not use the advisor's model.
    assert_eq!(refused(Some(vec!["claude-haiku-*"]), &body("claude-haiku-4-5", &tool(""))), Some((403, "model_not_allowed", Some("tools"))));
    assert!(run(Some(vec!["claude-haiku-*", "claude-opus-*"]), &body("claude-haiku-4-5", &tool(""))).is_ok());
    // Routes that name models under the provider's name (`anthropic/*`): the
    // tool's provider id is found there, and the key is read the same way.
    let prefixed = Config::from_json(br#"{"providers": [{"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
      "routes": [{"model": "anthropic/*", "provider": "anthropic"}], "unpriced_models": "allow"}"#).unwrap();
    let b = body("anthropic/claude-haiku-4-5", &tool(""));
    let p = plan(&prefixed, &key(Some(vec!["anthropic/claude-haiku-*", "anthropic/claude-opus-*"])), Api::AnthropicMessages, b.as_bytes(), "/v1/messages", true).unwrap();
    assert_eq!(p.target.advisor.map(|a| (a.model, a.route)), Some(("claude-opus-4-8".to_string(), "anthropic/*".to_string())));
    let r = plan(&prefixed, &key(Some(vec!["anthropic/claude-haiku-*"])), Api::AnthropicMessages, b.as_bytes(), "/v1/messages", true).err().unwrap();
    assert_eq!((r.error.status, r.error.code), (403, "model_not_allowed"));
    // Not priced, not routed, renamed by its route, routed elsewhere, unreadable, translated.
    let named = |m: &str| format!(r#"{{"type":"advisor_20260301","name":"advisor","model":"{m}"}}"#);
    for (tools, code) in [
        (named("claude-opus-9"), "model_not_priced"),
        (named("mystery"), "model_not_found"),
        (named("opus"), "invalid_model"),
        (named("gpt-5.4"), "unsupported_field"),
        (named("bad model"), "invalid_model"),
        (r#"{"type":"advisor_20260301","name":"advisor","model":"claude-opus-4-8","max_uses":-1}"#.to_string(), "invalid_request"),
        (format!("{},{}", tool(""), tool("")), "invalid_request"),
    ] {
        assert_eq!(refused(None, &body("claude-haiku-4-5", &tools)), Some((400, code, Some("tools"))), "{tools}");
    }
    assert_eq!(refused(None, &body("claude-gpt", &tool(""))), Some((400, "unsupported_field", Some("tools"))), "translated for OpenAI");
    // Under `unpriced_models: allow` an unpriced advisor is served, but the
    // request counts as unpriced: a budget in dollars could not hold it.
    let allow = Config::from_json(br#"{"providers": [{"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
      "routes": [{"model": "claude-*", "provider": "anthropic"}], "pricing": {"anthropic/claude-haiku-4-5": {"input": 1, "output": 1}}}"#).unwrap();
    let b = body("claude-haiku-4-5", &tool(""));
    assert!(!plan(&allow, &key(None), Api::AnthropicMessages, b.as_bytes(), "/v1/messages", true).unwrap().priced);
    assert!(plan(&allow, &key(None), Api::AnthropicMessages, body("claude-haiku-4-5", r#"{"name":"f","input_schema":{}}"#).as_bytes(), "/v1/messages", true).unwrap().priced);
    // A count runs no model: served, nothing reserved for the advisor.
    let choice = Choice { count_tokens: true, ..Choice::default() };
    let p = plan_for(&cfg, &key(None), Api::AnthropicMessages, body("claude-haiku-4-5", &named("mystery")).as_bytes(), "/v1/messages/count_tokens", true, choice).unwrap();
    assert_eq!(p.target.advisor, None);
}

/// Conversation compaction (`/v1/responses/compact`, Codex's remote
/// compaction, which has no fallback when it fails) is billed like a
/// response: priced and reserved, its model rewritten, nothing added (the
/// endpoint takes no output cap), no fallbacks, not stored; refused for a
/// model no Responses API serves.
#[test]
fn a_compaction_goes_to_the_responses_apis_compact_endpoint_priced_with_nothing_added() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"},
                    {"name": "deepseek", "format": "openai", "cluster": "deepseek", "host": "api.deepseek.com", "path_prefix": ""}],
      "routes": [{"model": "codex", "provider": "openai", "upstream_model": "gpt-5.1-codex", "fallbacks": ["claude-x"]},
                 {"model": "gpt-*", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"},
                 {"model": "cheap", "provider": "deepseek", "upstream_model": "deepseek-v4", "upstream_api": "chat_completions"}],
      "pricing": {"openai/gpt-5.1-codex": {"input": 1000000, "output": 8000000}, "openai/gpt-5.4": {"input": 1000000, "output": 8000000},
                  "anthropic/claude-x": {"input": 1, "output": 1}, "deepseek/deepseek-v4": {"input": 1, "output": 1}},
      "default_max_tokens": 2000,
      "unpriced_models": "deny"}"#).unwrap();
    let compact = |body: &str, path: &str| {
        let choice = Choice { compact: true, ..Choice::default() };
        plan_for(&cfg, &key(None), Api::OpenAiResponses, body.as_bytes(), path, false, choice)
    };
    // Codex's body (openai/codex `CompactionInput`).
    let body = r#"{"model":"codex","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"fix the bug"}]}],"instructions":"Summarise.","tools":[],"parallel_tool_calls":false,"reasoning":{"effort":"medium"},"prompt_cache_key":"s1"}"#;
    let p = compact(body, "/v1/responses/compact").unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["authorization"].as_str()), ("/v1/responses/compact", "Bearer sk-up"));
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_deref().unwrap()).unwrap();
    let mut want: serde_json::Value = serde_json::from_str(body).unwrap();
    want["model"] = "gpt-5.1-codex".into();
    assert_eq!(sent, want, "the model rewritten, nothing added: no max_output_tokens, no stream_options");
    assert!(p.fallbacks.is_empty() && !p.chat.stored && !p.chat.stream);
    assert!(p.priced && p.worst.tokens == p.chat.estimated_input_tokens + 2000, "reserved at default_max_tokens");
    assert_eq!(p.worst.micros, (p.chat.estimated_input_tokens * 1_000_000 + 2000 * 8_000_000).div_ceil(1_000_000));
    // The query is kept; a model served on another API is refused before sending.
    let p = compact(r#"{"model":"gpt-5.4","input":"hi"}"#, "/responses/compact?x=1").unwrap();
    assert_eq!(p.headers.iter().find(|(k, _)| k == ":path").map(|(_, v)| v.as_str()), Some("/v1/responses/compact?x=1"));
    for model in ["claude-x", "cheap"] {
        let e = compact(&format!(r#"{{"model":"{model}","input":"hi"}}"#), "/v1/responses/compact").unwrap_err().error;
        assert_eq!((e.status, e.code, e.param), (400, "wrong_api_for_model", Some("model")), "{model}: {}", e.message);
    }
    let e = compact(r#"{"model":"gpt-unpriced","input":"hi"}"#, "/v1/responses/compact").unwrap_err().error;
    assert_eq!(e.code, "model_not_priced", "billed: the price rule holds");
}

/// Gemini takes a field by its JSON name or its proto name, as protobuf's
/// JSON parsers do. Before, a cap or candidate count spelled the proto way
/// was not read: the request reserved 4,096 tokens for one candidate, a
/// second cap was added beside the client's (or a second config beside
/// theirs), and the provider ran what the client asked.
#[test]
fn a_gemini_cap_under_either_name_is_read_and_never_given_twice() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "google", "format": "gemini", "cluster": "google", "host": "generativelanguage.googleapis.com", "api_key": "g-up"}],
      "routes": [{"model": "google/*", "provider": "google"}]}"#).unwrap();
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let run = |body: &str| plan(&cfg, &key(None), Api::GeminiGenerateContent, body.as_bytes(), path, false);
    for body in [
        r#"{"contents":[],"generation_config":{"max_output_tokens":60000,"candidate_count":4}}"#,
        r#"{"contents":[],"generationConfig":{"max_output_tokens":60000,"candidateCount":4}}"#,
    ] {
        let p = run(body).unwrap();
        assert_eq!(p.chat.output_bound(4096), 240_000, "{body}");
        assert!(p.body.is_none(), "the client's own cap stands: {body}");
    }
    // No cap: the gateway's goes into the config the client sent, under its name.
    let p = run(r#"{"contents":[], "generation_config" : { "temperature": 0.5 }, "x": [1e400]}"#).unwrap();
    let sent = String::from_utf8(p.body.unwrap()).unwrap();
    assert_eq!(sent, r#"{"contents":[],"generation_config":{"maxOutputTokens":4096,"temperature":0.5},"x":[1e400]}"#, "spliced, every other member as sent");
    // A cap of null is unset to protobuf's JSON: replaced, never sent beside
    // the gateway's (a parser taking the last would read no cap). Found by
    // tests/mutated_captures.rs.
    for body in [r#"{"contents":[],"generationConfig":{"maxOutputTokens":null,"temperature":0}}"#, r#"{"contents":[],"generationConfig":{"temperature":0,"max_output_tokens":null}}"#] {
        let sent = String::from_utf8(run(body).unwrap().body.unwrap()).unwrap();
        assert_eq!(sent, r#"{"contents":[],"generationConfig":{"maxOutputTokens":4096,"temperature":0}}"#, "{body}");
    }
    for (body, sent_config) in [(r#"{"contents":[],"generationConfig":null}"#, "generationConfig"), (r#"{"contents":[]}"#, "generationConfig"), (r#"{"generation_config":{},"contents":[]}"#, "generation_config")] {
        let v: serde_json::Value = serde_json::from_slice(&run(body).unwrap().body.unwrap()).unwrap();
        assert_eq!(v[sent_config], serde_json::json!({"maxOutputTokens": 4096}), "{body}");
    }
    // The same field twice, under two names: refused, never guessed.
    for body in [
        r#"{"contents":[],"generationConfig":{},"generation_config":{"maxOutputTokens":9}}"#,
        r#"{"contents":[],"generationConfig":{"maxOutputTokens":9,"max_output_tokens":60000}}"#,
        r#"{"contents":[],"generationConfig":{"candidateCount":1,"candidate_count":8}}"#,
    ] {
        let e = run(body).unwrap_err().error;
        assert_eq!((e.status, e.code), (400, "duplicate_key"), "{body}: {}", e.message);
    }
}

/// A Responses API request continuing a stored context is billed that
/// context as input; its body holds only the new turn. Planned, it names
/// the context; given the context's size, its estimate and reservation
/// grow by it (priced at the input price).
#[test]
fn a_request_continuing_a_stored_response_reserves_its_context() {
    let cfg = Config::from_json(CFG.as_bytes()).unwrap();
    let run = |body: &str| plan(&cfg, &key(None), Api::OpenAiResponses, body.as_bytes(), "/v1/responses", false).unwrap();
    let mut p = run(r#"{"model":"cheap","input":"and then?","max_output_tokens":100,"previous_response_id":"resp_68af"}"#);
    assert_eq!((p.chat.continues.as_deref(), p.chat.stored), (Some("resp_68af"), true));
    let before = p.worst;
    p.add_context(&cfg, 40_000);
    assert_eq!(p.worst.tokens, before.tokens + 40_000);
    assert_eq!(p.worst.micros, before.micros + 40_000 * 1_000_000 / 1_000_000, "40,000 input tokens at $1/M");
    assert_eq!(p.chat.estimated_input_tokens, before.tokens - 100 + 40_000, "a cut answer is estimated with it too");
    // A conversation, by id or as an object; storing turned off.
    assert_eq!(run(r#"{"model":"cheap","input":"x","conversation":"conv_9"}"#).chat.continues.as_deref(), Some("conv_9"));
    let p = run(r#"{"model":"cheap","input":"x","conversation":{"id":"conv_9"},"store":false}"#);
    assert_eq!((p.chat.continues.as_deref(), p.chat.stored), (Some("conv_9"), false));
    // Nothing to continue, or not an id: nothing named.
    for body in [r#"{"model":"cheap","input":"x"}"#, r#"{"model":"cheap","input":"x","previous_response_id":null}"#, r#"{"model":"cheap","input":"x","previous_response_id":""}"#] {
        assert_eq!(run(body).chat.continues, None, "{body}");
    }
    // Other APIs never continue one.
    let chat = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"cheap","messages":[],"previous_response_id":"resp_1"}"#, "/v1/chat/completions", false).unwrap();
    assert_eq!((chat.chat.continues, chat.chat.stored), (None, false));
}

#[test]
fn a_tier_or_geography_the_request_asks_for_is_the_price_it_is_reserved_at() {
    use tollgate_protocol::record::{InferenceGeo, ServiceTier};
    let cfg = Config::from_json(CFG.as_bytes()).unwrap();
    let openai = |extra: &str| {
        let body = format!(r#"{{"model":"cheap","messages":[{{"role":"user","content":"12345678"}}],"max_tokens":100{extra}}}"#);
        plan(&cfg, &key(None), Api::OpenAiChat, body.as_bytes(), "/v1/chat/completions", false).map(|p| (p.chat.premium, p.worst))
    };
    let tier = |extra: &str| openai(extra).map(|(p, _)| p.tier).map_err(|e| (e.error.code, e.error.param));
    assert_eq!(tier(""), Ok(None));
    for t in ["auto", "default", "scale"] {
        assert_eq!(tier(&format!(r#","service_tier":"{t}""#)), Ok(None), "{t}");
    }
    assert_eq!(tier(r#","service_tier":null"#), Ok(None));
    for (t, want) in [("priority", ServiceTier::Priority), ("fast", ServiceTier::Priority), ("ultrafast", ServiceTier::Ultrafast), ("flex", ServiceTier::Flex)] {
        assert_eq!(tier(&format!(r#","service_tier":"{t}""#)), Ok(Some(want)), "{t}");
    }
    // A tier the gateway knows no price for is refused, not priced standard.
    assert_eq!(tier(r#","service_tier":"hyperfast""#), Err(("unsupported_value", Some("service_tier"))));
    assert_eq!(tier(r#","service_tier":1"#), Err(("invalid_type", Some("service_tier"))));
    // (Compared with a body of the same length: every member counts toward the input estimate.)
    let worst = |extra: &str| openai(extra).unwrap().1;
    // cheap: $1 input, $2 output per million; the priority price is twice that.
    let priority = worst(r#","service_tier":"priority""#);
    let input = priority.tokens - 100;
    assert_eq!(priority.micros, 2 * (input + 100 * 2), "unset: 200 %");
    assert_eq!(worst(r#","service_tier":"flex""#).micros, worst(r#","service_tier":"auto""#).micros, "unset: standard, never less");
    // Anthropic: speed and inference_geo.
    let anthropic = |extra: &str| {
        let body = format!(r#"{{"model":"claude-x","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}]{extra}}}"#);
        crate::request::parse_chat(Api::AnthropicMessages, body.as_bytes()).map(|c| c.request.premium).map_err(|e| (e.code, e.param))
    };
    use crate::pricing::Premium;
    assert_eq!(anthropic(r#","speed":"fast","inference_geo":"us""#), Ok(Premium { tier: Some(ServiceTier::Fast), geo: Some(InferenceGeo::Us) }));
    assert_eq!(anthropic(r#","speed":"standard","inference_geo":"global""#), Ok(Premium::default()));
    assert_eq!(anthropic(r#","inference_geo":"eu""#), Err(("unsupported_value", Some("inference_geo"))));
    assert_eq!(anthropic(r#","speed":"turbo""#), Err(("unsupported_value", Some("speed"))));
    // Anthropic's own service_tier (auto / standard_only) prices nothing apart.
    assert_eq!(anthropic(r#","service_tier":"standard_only""#), Ok(Premium::default()));
    // Gemini: `serviceTier` or its proto name, never both.
    let gemini = |extra: &str| {
        let body = format!(r#"{{"contents":[{{"parts":[{{"text":"hi"}}]}}]{extra}}}"#);
        crate::request::parse_chat(Api::GeminiGenerateContent, body.as_bytes()).map(|c| c.request.premium.tier).map_err(|e| (e.code, e.param))
    };
    assert_eq!(gemini(""), Ok(None));
    for (t, want) in [("priority", Some(ServiceTier::Priority)), ("SERVICE_TIER_PRIORITY", Some(ServiceTier::Priority)), ("flex", Some(ServiceTier::Flex)),
                      ("standard", None), ("unspecified", None)] {
        assert_eq!(gemini(&format!(r#","serviceTier":"{t}""#)), Ok(want), "{t}");
        assert_eq!(gemini(&format!(r#","service_tier":"{t}""#)), Ok(want), "{t}");
    }
    assert_eq!(gemini(r#","serviceTier":"PRIORITY""#), Err(("unsupported_value", Some("serviceTier"))));
    assert_eq!(gemini(r#","serviceTier":"flex","service_tier":"priority""#), Err(("duplicate_key", Some("serviceTier"))));
    // Vertex AI's tier header is priced like the body's tier.
    let with_header = |body_tier: &str, header: &[u8]| {
        let body = format!(r#"{{"model":"cheap","messages":[{{"role":"user","content":"hi"}}]{body_tier}}}"#);
        let choice = Choice { tier_header: Some(header), ..Default::default() };
        plan_for(&cfg, &key(None), Api::OpenAiChat, body.as_bytes(), "/v1/chat/completions", false, choice)
            .map(|p| p.chat.premium.tier)
            .map_err(|e| (e.error.code, e.error.param))
    };
    let header = Some(crate::request::VERTEX_TIER);
    assert_eq!(with_header("", b"priority"), Ok(Some(ServiceTier::Priority)));
    assert_eq!(with_header("", b"flex"), Ok(Some(ServiceTier::Flex)));
    assert_eq!(with_header(r#","service_tier":"priority""#, b"priority"), Ok(Some(ServiceTier::Priority)));
    assert_eq!(with_header(r#","service_tier":"flex""#, b"priority"), Err(("duplicate_key", header)));
    for odd in [&b"dedicated"[..], b"PRIORITY", b"priority,flex", b"\xff"] {
        assert_eq!(with_header("", odd), Err(("unsupported_value", header)), "{odd:?}");
    }
}

/// An Azure OpenAI client's request (`AzureOpenAI`, the gateway as its
/// endpoint): the deployment in the path is the model run, whatever the
/// body says, and a body without `model` (Azure's REST form) gets the
/// upstream one; the `api-version` goes to no provider.
#[test]
fn an_azure_deployment_names_the_model_run() {
    let cfg = Config::from_json(CFG.as_bytes()).unwrap();
    let path = "/openai/deployments/cheap/chat/completions?api-version=2024-10-21";
    for body in [&br#"{"model":"cheap","messages":[{"role":"user","content":"hi"}]}"#[..],
                 br#"{"messages":[{"role":"user","content":"hi"}]}"#,
                 br#"{"model":"claude-opus-4-8","messages":[{"role":"user","content":"hi"}]}"#] {
        let p = plan(&cfg, &key(None), Api::OpenAiChat, body, path, false).unwrap();
        assert_eq!((p.chat.model.as_str(), p.target.upstream_model.as_str()), ("cheap", "gpt-5.4-mini"));
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_deref().unwrap()).unwrap();
        assert_eq!(sent["model"], "gpt-5.4-mini", "{}", String::from_utf8_lossy(body));
        let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
        assert_eq!(h[":path"], "/v1/chat/completions");
    }
    // The key is held to the deployment's model.
    let e = plan(&cfg, &key(Some(vec!["openai/*"])), Api::OpenAiChat, br#"{"model":"openai/gpt-5.4","messages":[]}"#, path, false).unwrap_err();
    assert_eq!(e.error.code, "model_not_allowed");
    // A body without a model is still refused where the path names none.
    let e = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"messages":[]}"#, "/openai/v1/chat/completions", false).unwrap_err();
    assert_eq!(e.error.code, "missing_model");
    let e = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"messages":[]}"#, "/openai/deployments/a\u{1}b/chat/completions", false).unwrap_err();
    assert_eq!(e.error.code, "invalid_model");
}

/// OpenAI's moderation classifier (`client.moderations.create`): free,
/// routed like a count to an OpenAI-format provider, its model OpenAI's
/// default when the body names none; another format's model is not found.
#[test]
fn a_moderation_is_routed_free_with_openais_default_model() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
      "routes": [{"model": "omni-moderation-*", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "unpriced_models": "deny"}"#).unwrap();
    let moderate = |body: &[u8], k: Rc<KeyInfo>| {
        let choice = Choice { count_tokens: true, ..Choice::default() };
        plan_for(&cfg, &k, Api::OpenAiModerations, body, "/v1/moderations", false, choice)
    };
    let p = moderate(br#"{"input":"is this fine?"}"#, key(None)).unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["authorization"].as_str()), ("/v1/moderations", "Bearer sk-up"));
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_deref().unwrap()).unwrap();
    assert_eq!(sent, serde_json::json!({"input": "is this fine?", "model": "omni-moderation-latest"}), "the default named, nothing else added");
    assert!(p.fallbacks.is_empty() && !p.chat.api.has_output(), "unpriced, yet served: it is free");
    let p = moderate(br#"{"input":["a","b"],"model":"omni-moderation-2024-09-26"}"#, key(None)).unwrap();
    assert!(p.body.is_none(), "sent as it came");
    assert_eq!(moderate(br#"{"model":"omni-moderation-latest"}"#, key(None)).unwrap_err().error.code, "missing_input");
    assert_eq!(moderate(br#"{"input":"x","model":"claude-sonnet-4-6"}"#, key(None)).unwrap_err().error.status, 404);
    assert_eq!(moderate(br#"{"input":"x"}"#, key(Some(vec!["gpt-*"]))).unwrap_err().error.code, "model_not_allowed");
}

#[test]
fn an_image_generation_reserves_its_images_at_the_image_price() {
    // GPT Image 1.5: $5 text input, $10 text output, $32 image output per million.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
      "routes": [{"model": "gpt-image-*", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/gpt-image-1.5": {"input": 5000000, "output": 10000000, "image_output": 32000000}},
      "unpriced_models": "allow"}"#).unwrap();
    let image = |body: &[u8], path: &str| plan_for(&cfg, &key(None), Api::OpenAiImages, body, path, false, Choice::default());
    let p = image(br#"{"model":"gpt-image-1.5","prompt":"an otter","n":2,"size":"1024x1536","quality":"medium"}"#, "/v1/images/generations").unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["authorization"].as_str()), ("/v1/images/generations", "Bearer sk-up"));
    assert!(p.body.is_none(), "sent as it came: no cap, no stream options added");
    // 2 images of 1,584 tokens at $32, and the estimated input at $5 for each
    let input = p.chat.estimated_input_tokens;
    assert_eq!(p.worst.tokens, 2 * input + 2 * 1584);
    assert_eq!(p.worst.micros, (2 * input * 5_000_000 + 2 * 1584 * 32_000_000).div_ceil(1_000_000));
    // auto quality and size reserve the dearest; a stream's partial images add theirs
    let p = image(br#"{"model":"gpt-image-1.5","prompt":"x","stream":true,"partial_images":2}"#, "/v1/images/generations").unwrap();
    assert!(p.chat.stream && p.body.is_none());
    assert_eq!(p.worst.tokens - p.chat.estimated_input_tokens, 6240 + 200);
    // an Azure deployment names the model
    let p = image(br#"{"prompt":"x","size":"1024x1024","quality":"low"}"#, "/openai/deployments/gpt-image-1.5/images/generations?api-version=2025-04-01-preview").unwrap();
    assert_eq!((p.target.upstream_model.as_str(), p.worst.tokens - p.chat.estimated_input_tokens), ("gpt-image-1.5", 272));
    // refused before anything is sent
    let code = |body: &[u8]| image(body, "/v1/images/generations").unwrap_err().error.code;
    assert_eq!(code(br#"{"model":"gpt-image-1.5"}"#), "missing_prompt");
    assert_eq!(code(br#"{"prompt":"x"}"#), "missing_model");
    assert_eq!(code(br#"{"model":"gpt-image-1.5","prompt":"x","n":11}"#), "invalid_type");
    assert_eq!(code(br#"{"model":"gpt-image-1.5","prompt":"x","size":"9999x9999"}"#), "invalid_value");
    assert_eq!(code(br#"{"model":"claude-sonnet-4-6","prompt":"x"}"#), "wrong_api_for_model");
}

#[test]
fn an_image_edit_reserves_its_input_images_at_the_image_input_price() {
    // GPT Image 1.5: $5 text input, $8 image input, $32 image output per million.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"}],
      "routes": [{"model": "gpt-image-*", "provider": "openai"}, {"model": "painter", "provider": "openai", "upstream_model": "gpt-image-1.5"}],
      "pricing": {"openai/gpt-image-1.5": {"input": 5000000, "image_input": 8000000, "output": 10000000, "image_output": 32000000}},
      "unpriced_models": "deny"}"#).unwrap();
    let edit = |body: &[u8], path: &str| plan_for(&cfg, &key(None), Api::OpenAiImageEdits, body, path, false, Choice::default());
    let refs = r#"[{"image_url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="},{"file_id":"file-abc"}]"#;
    let body = format!(r#"{{"model":"gpt-image-1.5","prompt":"add a hat","images":{refs},"size":"1024x1024","quality":"low"}}"#);
    let p = edit(body.as_bytes(), "/v1/images/edits").unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["authorization"].as_str()), ("/v1/images/edits", "Bearer sk-up"));
    assert!(p.body.is_none(), "sent as it came");
    // the images' references are not prompt text: two images at low fidelity, 581 tokens each at $8
    let text = p.chat.estimated_input_tokens;
    assert!(text < 20, "{text}");
    assert_eq!(p.chat.input_image_tokens, 2 * 581);
    assert_eq!(p.worst.tokens, text + 2 * 581 + 272);
    assert_eq!(p.worst.micros, (text * 5_000_000 + 2 * 581 * 8_000_000 + 272 * 32_000_000).div_ceil(1_000_000));
    // high fidelity, a mask, a route's upstream model written into the body
    let body = format!(r#"{{"model":"painter","prompt":"x","images":{refs},"mask":{{"file_id":"file-m"}},"input_fidelity":"high"}}"#);
    let p = edit(body.as_bytes(), "/v1/images/edits").unwrap();
    assert_eq!(p.chat.input_image_tokens, 3 * 6821);
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_deref().unwrap()).unwrap();
    assert_eq!(sent["model"], "gpt-image-1.5");
    // Azure's deployment path
    let p = edit(format!(r#"{{"prompt":"x","images":{refs}}}"#).as_bytes(), "/openai/deployments/gpt-image-1.5/images/edits?api-version=2025-04-01-preview").unwrap();
    assert_eq!(p.target.upstream_model, "gpt-image-1.5");
    let code = |body: &str| edit(body.as_bytes(), "/v1/images/edits").unwrap_err().error.code;
    assert_eq!(code(r#"{"model":"gpt-image-1.5","prompt":"x"}"#), "missing_images");
    assert_eq!(code(&format!(r#"{{"model":"gpt-image-1.5","images":{refs}}}"#)), "missing_prompt");
    assert_eq!(code(r#"{"model":"gpt-image-1.5","prompt":"x","images":[]}"#), "invalid_type");
    assert_eq!(code(&format!(r#"{{"model":"gpt-image-1.5","prompt":"x","images":{refs},"input_fidelity":"ultra"}}"#)), "invalid_value");
}

#[test]
fn a_code_interpreter_container_the_request_creates_is_reserved() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"}],
      "routes": [{"model": "gpt-*", "provider": "openai"}],
      "pricing": {"openai/gpt-5.4": {"input": 2500000, "output": 15000000}}}"#).unwrap();
    let worst = |tools: &str| {
        let body = format!(r#"{{"model":"gpt-5.4","input":"Plot it","max_output_tokens":100,"tools":{tools}}}"#);
        let p = plan(&cfg, &key(None), Api::OpenAiResponses, body.as_bytes(), "/v1/responses", false).unwrap();
        (p.chat.container_gb, p.worst.micros, p.chat.estimated_input_tokens)
    };
    let (_, plain, plain_input) = worst(r#"[{"type":"code_interpreter","container":"cntr_1"}]"#);
    let (gb, micros, input) = worst(r#"[{"type":"code_interpreter","container":{"type":"auto","memory_limit":"4g"}}]"#);
    // 4 GB at $0.03 a GB, beside the longer body's input.
    assert_eq!((gb, micros - plain - ((input - plain_input) * 5).div_ceil(2)), (4, 120_000));
    // Chat completions have no such tool: a function of that name is the client's own.
    let chat = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"gpt-5.4","messages":[],"tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}"#, "/v1/chat/completions", false).unwrap();
    assert_eq!(chat.chat.container_gb, 0);
}

#[test]
fn a_responses_image_generation_tool_is_held_to_the_key_routed_priced_and_reserved() {
    // The tool runs a GPT image model at the provider serving the request:
    // before, nothing of it was reserved or recorded.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
      "routes": [{"model": "gpt-*", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/gpt-5.4": {"input": 2500000, "output": 15000000}, "anthropic/claude-sonnet-4-6": {"input": 3000000, "output": 15000000},
                  "openai/gpt-image-2.6-sunburst": {"input": 5000000, "output": 30000000},
                  "openai/gpt-image-1.5": {"input": 5000000, "output": 10000000, "image_output": 32000000}},
      "unpriced_models": "deny"}"#).unwrap();
    let respond = |body: &str, k: Rc<KeyInfo>| plan(&cfg, &k, Api::OpenAiResponses, body.as_bytes(), "/v1/responses", false);
    let ask = |tools: &str, extra: &str| format!(r#"{{"model":"gpt-5.4","input":"Draw an otter","max_output_tokens":100,"tools":{tools}{extra}}}"#);
    let without = respond(&ask("[]", ""), key(None)).unwrap();
    // The default model (gpt-image-2.6-sunburst), one image at high quality, 1536x1024: 6,240 tokens at $30.
    let p = respond(&ask(r#"[{"type":"image_generation"}]"#, ""), key(None)).unwrap();
    let a = p.target.advisor.as_deref().unwrap();
    assert_eq!((a.kind, a.model.as_str(), a.calls, a.output_per_call), (advisor::Companion::ImageGeneration, "gpt-image-2.6-sunburst", 1, 6240));
    let input = p.chat.estimated_input_tokens;
    assert_eq!(p.worst.micros - without.worst.micros - (input - without.chat.estimated_input_tokens) * 5 / 2, (input * 5_000_000 + 6240 * 30_000_000).div_ceil(1_000_000));
    // The tool's own model, quality, size and partial images; max_tool_calls bounds the calls.
    let p = respond(&ask(r#"[{"type":"image_generation","model":"gpt-image-1.5","quality":"low","size":"1024x1024","partial_images":2}]"#, r#","stream":true,"max_tool_calls":3"#), key(None)).unwrap();
    let a = p.target.advisor.as_deref().unwrap();
    assert_eq!((a.model.as_str(), a.calls, a.output_per_call), ("gpt-image-1.5", 3, 272 + 200));
    // Refused: a key that may not use the image model, an unpriced or unrouted one, an unreadable tool, through a translation.
    let err = |body: &str, k: Rc<KeyInfo>| respond(body, k).unwrap_err().error;
    let e = err(&ask(r#"[{"type":"image_generation"}]"#, ""), key(Some(vec!["gpt-5.4"])));
    assert_eq!((e.code, e.param), ("model_not_allowed", Some("tools")));
    assert_eq!(err(&ask(r#"[{"type":"image_generation","model":"gpt-image-2"}]"#, ""), key(None)).code, "model_not_priced");
    assert_eq!(err(&ask(r#"[{"type":"image_generation","model":"dall-e-3"}]"#, ""), key(None)).code, "model_not_found");
    for bad in [r#"[{"type":"image_generation","quality":"ultra"}]"#, r#"[{"type":"image_generation","model":7}]"#,
                r#"[{"type":"image_generation"},{"type":"image_generation"}]"#, r#"[{"type":"image_generation","size":"99999x9"}]"#] {
        assert_eq!(err(&ask(bad, ""), key(None)).code, "invalid_request", "{bad}");
    }
    let claude = r#"{"model":"claude-sonnet-4-6","input":"Draw","max_output_tokens":100,"tools":[{"type":"image_generation"}]}"#;
    assert_eq!(err(claude, key(None)).code, "unsupported_field");
    // A function of that name is the client's own.
    let f = respond(&ask(r#"[{"type":"function","name":"image_generation","parameters":{}}]"#, ""), key(None)).unwrap();
    assert!(f.target.advisor.is_none());
}

#[test]
fn a_transcription_reserves_its_audio_as_its_model_bills_it() {
    // whisper-1: $0.006 a minute; gpt-4o-transcribe: $2.50 text, $6 audio, $10 output a million.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com", "api_key": "sk-a"}],
      "routes": [{"model": "whisper-1", "provider": "openai"}, {"model": "gpt-4o-transcribe", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/whisper-1": {"input": 0, "output": 0, "audio_per_hour": 360000},
                  "openai/gpt-4o-transcribe": {"input": 2500000, "audio_input": 6000000, "output": 10000000}},
      "unpriced_models": "deny"}"#).unwrap();
    // The view of a form with 90 s of audio (what `multipart::Form::view` writes).
    let plan = |api, model: &str, path: &str| {
        let body = format!(r#"{{"model":"{model}","file":{{"upload":1440044,"ms":90000,"stated":true}},"response_format":"text"}}"#);
        plan_for(&cfg, &key(None), api, body.as_bytes(), path, false, Choice::default())
    };
    let w = plan(Api::OpenAiTranscriptions, "whisper-1", "/v1/audio/transcriptions").unwrap();
    assert_eq!(w.chat.input_audio_ms, 90_000);
    let h: std::collections::HashMap<_, _> = w.headers.iter().cloned().collect();
    assert_eq!(h[":path"].as_str(), "/v1/audio/transcriptions");
    // 90 s at $0.006 a minute; no token is billed, so none is reserved.
    assert_eq!((w.worst.micros, w.worst.tokens), (9_000, 0));
    assert!(w.body.is_none(), "nothing to change: no output cap is written into a form");
    // gpt-4o-transcribe: 1,000 audio tokens a minute and 2,000 + 10 a second of output.
    let g = plan(Api::OpenAiTranscriptions, "gpt-4o-transcribe", "/v1/audio/transcriptions").unwrap();
    let text = g.chat.estimated_input_tokens;
    let (audio, out) = (1_500, 2_000 + 900);
    assert_eq!(g.worst.tokens, text + audio + out);
    assert_eq!(g.worst.micros, (text * 2_500_000 + audio * 6_000_000 + out * 10_000_000).div_ceil(1_000_000));
    // A translation, Azure's deployment path.
    let t = plan(Api::OpenAiTranslations, "whisper-1", "/openai/deployments/whisper-1/audio/translations?api-version=2024-06-01").unwrap();
    assert_eq!((t.target.upstream_model.as_str(), t.worst.micros), ("whisper-1", 9_000));
    // No audio; a model on a provider with no audio API.
    let body = br#"{"model":"whisper-1","prompt":"x"}"#;
    assert_eq!(plan_for(&cfg, &key(None), Api::OpenAiTranscriptions, body, "/v1/audio/transcriptions", false, Choice::default()).unwrap_err().error.code, "missing_file");
    assert_eq!(plan(Api::OpenAiTranscriptions, "claude-sonnet-4-6", "/v1/audio/transcriptions").unwrap_err().error.code, "wrong_api_for_model");
}

#[test]
fn speech_reserves_its_characters_or_the_audio_its_text_can_make() {
    // tts-1: $15 a million characters; gpt-4o-mini-tts: $0.60 text in, $12 audio out a million.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com", "api_key": "sk-a"}],
      "routes": [{"model": "tts-*", "provider": "openai"}, {"model": "gpt-4o-mini-tts", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/tts-1": {"input": 0, "output": 0, "characters_per_million": 15000000},
                  "openai/gpt-4o-mini-tts": {"input": 600000, "output": 12000000}},
      "unpriced_models": "deny"}"#).unwrap();
    let plan = |model: &str, extra: &str| {
        let body = format!(r#"{{"model":"{model}","input":"The quick brown fox jumped over the lazy dog.","voice":"alloy"{extra}}}"#);
        plan_for(&cfg, &key(None), Api::OpenAiSpeech, body.as_bytes(), "/v1/audio/speech", false, Choice::default())
    };
    let t = plan("tts-1", "").unwrap();
    // 45 characters at $15 a million: 675 micro-dollars; no token is billed, so none is reserved.
    assert_eq!((t.worst.micros, t.worst.tokens), (675, 0));
    assert!(t.body.is_none() && !t.chat.stream, "no output cap is added: the provider takes none");
    // gpt-4o-mini-tts: its text as tokens, and 45 characters read at 8 a second (118 audio tokens).
    let g = plan("gpt-4o-mini-tts", r##","stream_format":"sse","instructions":"Cheerful.""##).unwrap();
    let text = g.chat.estimated_input_tokens;
    assert!(g.chat.stream && g.body.is_none(), "sse streams; `stream_options` is not added");
    assert_eq!(g.worst.tokens, text + 118);
    assert_eq!(g.worst.micros, (text * 600_000 + 118 * 12_000_000).div_ceil(1_000_000));
    // Slowed to a quarter, four times the audio.
    let slow = plan("gpt-4o-mini-tts", r#","speed":0.25"#).unwrap();
    assert_eq!(slow.worst.tokens, slow.chat.estimated_input_tokens + 469);
    // Refused before sending: no input, a speed the provider refuses, a provider with no speech.
    let body = br#"{"model":"tts-1","voice":"alloy"}"#;
    assert_eq!(plan_for(&cfg, &key(None), Api::OpenAiSpeech, body, "/v1/audio/speech", false, Choice::default()).unwrap_err().error.code, "missing_input");
    assert_eq!(plan("tts-1", r#","speed":9"#).unwrap_err().error.param, Some("speed"));
    assert_eq!(plan("claude-sonnet-4-6", "").unwrap_err().error.code, "wrong_api_for_model");
    // Azure's deployment names the model.
    let body = br#"{"input":"Hi","voice":"alloy"}"#;
    let a = plan_for(&cfg, &key(None), Api::OpenAiSpeech, body, "/openai/deployments/tts-1/audio/speech?api-version=2024-06-01", true, Choice::default()).unwrap();
    assert_eq!((a.target.upstream_model.as_str(), a.worst.micros), ("tts-1", 30));
}

#[test]
fn a_decision_reserves_and_is_priced_by_its_input_alone() {
    // GPT-6 Luna: $0.10 input, $0.01 cached, $0.50 output a million on chat; on
    // /v1/decisions every input token is $0.10 and nothing else is billed.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com", "api_key": "sk-a"}],
      "routes": [{"model": "gpt-*", "provider": "openai"}, {"model": "luna", "provider": "openai", "upstream_model": "gpt-6-luna"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/gpt-6-luna": {"input": 100000, "cached_input": 10000, "output": 500000}},
      "unpriced_models": "deny"}"#).unwrap();
    let ask = r#""input":"I was charged twice for the same subscription renewal.","questions":[{"type":"predicate","name":"duplicate_charge","instructions":"The customer reports being charged more than once."}]"#;
    let plan = |body: &str| plan_for(&cfg, &key(None), Api::OpenAiDecisions, body.as_bytes(), "/v1/decisions", false, Choice::default());
    let p = plan(&format!(r#"{{"model":"gpt-6-luna",{ask}}}"#)).unwrap();
    let input = p.chat.estimated_input_tokens;
    assert!(input > 20, "the questions are read as input too: {input}");
    // No output is reserved (none is billed) and no cap is added (the API takes none).
    assert_eq!((p.worst.tokens, p.worst.micros), (input, (input * 100_000).div_ceil(1_000_000)));
    assert!(p.body.is_none() && !p.chat.stream, "sent as it came");
    // An alias is sent as the upstream model.
    let a = plan(&format!(r#"{{"model":"luna",{ask}}}"#)).unwrap();
    assert!(String::from_utf8(a.body.unwrap()).unwrap().contains(r#""model":"gpt-6-luna""#));
    // What the API requires, refused before sending; a provider with no decisions API.
    assert_eq!(plan(r#"{"model":"gpt-6-luna","questions":[]}"#).unwrap_err().error.code, "missing_input");
    assert_eq!(plan(r#"{"model":"gpt-6-luna","input":"x"}"#).unwrap_err().error.code, "missing_questions");
    assert_eq!(plan(r#"{"input":"x","questions":[]}"#).unwrap_err().error.code, "missing_model");
    assert_eq!(plan(&format!(r#"{{"model":"claude-sonnet-4-6",{ask}}}"#)).unwrap_err().error.code, "wrong_api_for_model");
    // Charged as the answer reports: all 1,000 input tokens at $0.10, cached or not; the output free.
    let answer = br#"{"answers":[{"type":"predicate","name":"duplicate_charge","probability":0.97}],"model":"gpt-6-luna",
      "usage":{"input_tokens":1000,"input_tokens_details":{"cache_write_tokens":0,"cached_tokens":600},"output_tokens":40,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":1040}}"#;
    let info = crate::usage::parse_json_response(Api::OpenAiDecisions, answer);
    let u = info.usage.unwrap();
    assert_eq!((info.model.as_deref(), u.input_tokens, u.cached_input_tokens, u.output_tokens), (Some("gpt-6-luna"), 1000, 600, 40));
    let price = cfg.price_for(Api::OpenAiDecisions, "openai", "gpt-6-luna").unwrap();
    assert_eq!(price.cost_micros(&u), 100);
    assert_eq!(price.cache_savings_micros(&u), 0, "no discount for cached input on decisions");
    // The same usage on chat: cached input and output at their rates.
    assert_eq!(cfg.price_for(Api::OpenAiChat, "openai", "gpt-6-luna").unwrap().cost_micros(&u), 40 + 6 + 20);
    // A price may set the decisions rate apart.
    let own = crate::pricing::Price { decisions_input: Some(200_000), ..cfg.price("openai", "gpt-6-luna").unwrap() };
    assert_eq!(own.for_decisions().cost_micros(&u), 200);
}
