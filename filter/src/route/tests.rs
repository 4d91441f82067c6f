use super::*;
use std::rc::Rc;

mod gemini;
mod media;

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
