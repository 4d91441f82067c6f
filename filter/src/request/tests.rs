use super::*;
use serde_json::{json, Value};

fn usage_only() -> Rewrite<'static> {
    Rewrite { force_include_usage: true, output_cap: None, auto_cache: None }
}

fn v(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn classifies_paths() {
    assert_eq!(classify_path("/v1/chat/completions"), Endpoint::Chat(Api::OpenAiChat));
    assert_eq!(classify_path("/v1/chat/completions?x=1"), Endpoint::Chat(Api::OpenAiChat));
    assert_eq!(classify_path("/v1/messages?beta=true"), Endpoint::Chat(Api::AnthropicMessages));
    assert_eq!(classify_path("/v1/models"), Endpoint::Models);
    assert_eq!(classify_path("/v1/models/gpt-5.4"), Endpoint::Model);
    assert_eq!(model_path_id("/v1/models/openai%2Fgpt-5.4?x=1").as_deref(), Some("openai/gpt-5.4"));
    assert_eq!(classify_path("/v1/responses/compact"), Endpoint::Compact);
    assert_eq!(classify_path("/responses/compact?x=1"), Endpoint::Compact);
    // Gemini's models list and get (google-genai's models.list / models.get).
    assert_eq!(classify_path("/v1beta/models?pageSize=50"), Endpoint::Models);
    assert_eq!(classify_path("/v1beta/models/gemini-2.5-flash"), Endpoint::Model);
    assert_eq!(model_path_id("/v1beta/models/gemini-2.5-flash?key=k").as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(classify_path("/v1beta/models/gemini-embedding-001:embedContent"), Endpoint::Chat(Api::GeminiEmbedContent));
    assert_eq!(classify_path("/v1beta/models/gemini-embedding-001:asyncBatchEmbedContent"), Endpoint::Other);
    assert_eq!(classify_path("/V1BETA/models"), Endpoint::Disguised);
    assert!(crate::gemini::takes_query_key("/v1beta/models?key=k") && crate::gemini::takes_query_key("/v1beta/models/x?key=k"));
    assert!(!crate::gemini::takes_query_key("/v1/models?key=k") && !crate::gemini::takes_query_key("/v1/chat/completions?key=k"));
    // What the access log reads: never the key.
    assert_eq!(path_without_key("/v1beta/models?pageSize=5&key=tg-1").as_deref(), Some("/v1beta/models?pageSize=5"));
    assert_eq!(path_without_key("/v1beta/models/m:generateContent?key=tg-1&key=tg-2&alt=sse").as_deref(), Some("/v1beta/models/m:generateContent?alt=sse"));
    assert_eq!(path_without_key("/v1beta/models?key").as_deref(), Some("/v1beta/models"));
    assert_eq!(path_without_key("/v1beta/models?pageSize=5&monkey=1"), None);
    assert_eq!(path_without_key("/v1/models"), None);
    assert_eq!(classify_path("/v1/models/gemini-2.5-flash:generateContent"), Endpoint::Chat(Api::GeminiGenerateContent));
    assert_eq!(classify_path("/v1/embeddings"), Endpoint::Chat(Api::OpenAiEmbeddings));
    assert_eq!(classify_path("/v1/completions"), Endpoint::Chat(Api::OpenAiCompletions));
    assert_eq!(classify_path("/v1/responses"), Endpoint::Chat(Api::OpenAiResponses));
    assert_eq!(classify_path("/v1/responses/resp_1/input_items"), Endpoint::Stored(crate::objects::Object::ResponseInputItems));
    assert_eq!(classify_path("/v1/chat/completions"), Endpoint::Chat(Api::OpenAiChat), "the chat endpoint, not a list of stored ones");
    assert_eq!(classify_path("/v1/chat/completions/chatcmpl-1"), Endpoint::Stored(crate::objects::Object::ChatCompletion));
    assert_eq!(classify_path("/openai/v1/conversations/conv_1/items?api-version=preview"), Endpoint::Stored(crate::objects::Object::ConversationItems));
    // Only an object once normalised: refused, as a disguised endpoint is.
    for p in ["/v1/responses/resp%5F1", "/v1/Conversations/conv_1", "/v1/responses/resp_1;x", "/v1/responses/a/../resp_1/cancel"] {
        assert_eq!(classify_path(p), Endpoint::Disguised, "{p}");
    }
    assert_eq!(classify_path("/v1/messages/count_tokens?beta=true"), Endpoint::CountTokens(Api::AnthropicMessages));
    // google-genai counts and embeds on /v1/models/…: a call, not a model to describe.
    assert_eq!(classify_path("/v1/models/gemini-2.5-flash:countTokens"), Endpoint::CountTokens(Api::GeminiGenerateContent));
    assert_eq!(classify_path("/v1beta/models/gemini-2.5-flash:countTokens"), Endpoint::CountTokens(Api::GeminiGenerateContent));
    assert_eq!(classify_path("/v1/models/gemini-embedding-001:batchEmbedContents"), Endpoint::Chat(Api::GeminiEmbedContent));
    assert_eq!(classify_path("/v1/responses/input_tokens"), Endpoint::CountTokens(Api::OpenAiResponses));
    assert_eq!(classify_path("/v1/models/ft:gpt-4o-mini-2024-07-18:org:custom:9vKy6BDo"), Endpoint::Model);
    assert_eq!(classify_path("/v1/messages/batches"), Endpoint::Other);
    assert_eq!(classify_path("/v1/moderations"), Endpoint::Moderations);
    assert_eq!(classify_path("/v1/decisions"), Endpoint::Chat(Api::OpenAiDecisions));
    assert_eq!(classify_path("/openai/v1/decisions"), Endpoint::Chat(Api::OpenAiDecisions), "langchain-azure-ai's path");
    assert_eq!(classify_path("/v1/Decisions"), Endpoint::Disguised);
    assert_eq!(query_of("/v1/messages?beta=true"), "?beta=true");
    assert_eq!(query_of("/v1/messages"), "");
    assert_eq!(upstream_query("/v1beta/models/m:streamGenerateContent?alt=sse&key=tg-1"), "?alt=sse");
    assert_eq!(upstream_query("/x?key=tg-1"), "");
    assert_eq!(upstream_query("/x?keyword=a&key=b&c"), "?keyword=a&c");
    assert_eq!(query_key("/x?alt=sse&key=tg-1"), Some("tg-1"));
    assert_eq!(query_key("/x?keyword=a"), None);
}

/// Azure OpenAI's paths, as the OpenAI SDKs' `AzureOpenAI` clients send
/// them (openai-python `lib/azure.py`: `/deployments/{model}` before the
/// chat, completions and embeddings paths, under `{azure_endpoint}/openai`,
/// `?api-version=`), and Azure's v1 API (`/openai/v1/…`).
#[test]
fn azure_openai_paths_are_the_openai_paths_they_stand_for() {
    for (p, e) in [
        ("/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", Endpoint::Chat(Api::OpenAiChat)),
        ("/openai/deployments/prod-4o/completions?api-version=2024-10-21", Endpoint::Chat(Api::OpenAiCompletions)),
        ("/openai/deployments/emb/embeddings?api-version=2024-10-21", Endpoint::Chat(Api::OpenAiEmbeddings)),
        ("/openai/responses?api-version=2025-04-01-preview", Endpoint::Chat(Api::OpenAiResponses)),
        ("/openai/v1/chat/completions", Endpoint::Chat(Api::OpenAiChat)),
        ("/openai/v1/responses", Endpoint::Chat(Api::OpenAiResponses)),
        ("/openai/v1/responses/input_tokens", Endpoint::CountTokens(Api::OpenAiResponses)),
        ("/openai/models?api-version=2024-10-21", Endpoint::Models),
        ("/openai/v1/models/gpt-5.4", Endpoint::Model),
        ("/openai/deployments/prod-4o/audio/speech", Endpoint::Chat(Api::OpenAiSpeech)),
        ("/openai/v1/audio/speech", Endpoint::Chat(Api::OpenAiSpeech)),
        ("/openai/deployments/prod-4o/audio/voices", Endpoint::Other),
        ("/openai/deployments/prod-4o", Endpoint::Other),
        ("/openai/v1/messages", Endpoint::Other),
        ("/openai/deployments/prod-4o/chat%2Fcompletions", Endpoint::Disguised),
        ("/OPENAI/v1/chat/completions", Endpoint::Disguised),
    ] {
        assert_eq!(classify_path(p), e, "{p}");
    }
    assert_eq!(azure_deployment("/openai/deployments/prod-4o/chat/completions?api-version=1").as_deref(), Some("prod-4o"));
    assert_eq!(azure_deployment("/openai/deployments/openai%2Fgpt-5.4/chat/completions").as_deref(), Some("openai/gpt-5.4"), "as the SDK encodes it");
    assert_eq!(azure_deployment("/openai/deployments/%FF/chat/completions").as_deref(), Some("%FF"));
    assert_eq!(azure_deployment("/openai/deployments/openai/gpt-5.4/chat/completions").as_deref(), Some("openai/gpt-5.4"), "unescaped");
    assert_eq!(azure_deployment("/openai/deployments/m/embeddings").as_deref(), Some("m"));
    assert_eq!(azure_deployment("/openai/deployments//chat/completions"), None);
    assert_eq!(classify_path("/openai/deployments/openai/gpt-5.4/chat/completions"), Endpoint::Chat(Api::OpenAiChat));
    assert_eq!(azure_deployment("/openai/v1/chat/completions"), None);
    assert_eq!(model_path_id("/openai/models/gpt-5.4?api-version=1").as_deref(), Some("gpt-5.4"));
    // Azure's api-version is the Azure client's: no provider takes it (Azure's v1 API included).
    assert_eq!(upstream_query("/openai/deployments/d/chat/completions?api-version=2024-10-21"), "");
    assert_eq!(upstream_query("/openai/responses?api-version=1&x=2"), "?x=2");
    assert_eq!(upstream_query("/v1/chat/completions?api-version=1"), "?api-version=1");
}

/// Gemini's OpenAI-compatible endpoint as an OpenAI client whose base URL
/// was Google's sends it (ai.google.dev/gemini-api/docs/openai): chat,
/// embeddings and the model list.
#[test]
fn geminis_openai_compatible_paths_are_the_openai_paths_they_stand_for() {
    for (p, e) in [
        ("/v1beta/openai/chat/completions", Endpoint::Chat(Api::OpenAiChat)),
        ("/v1beta/openai/embeddings", Endpoint::Chat(Api::OpenAiEmbeddings)),
        ("/v1beta/openai/models", Endpoint::Models),
        ("/v1beta/openai/models/gemini-2.5-flash", Endpoint::Model),
        ("/v1beta/openai/images/generations", Endpoint::Other),
        ("/v1beta/openai/chat/completions/", Endpoint::Chat(Api::OpenAiChat)),
        ("/v1beta/openai//chat/completions", Endpoint::Disguised),
    ] {
        assert_eq!(classify_path(p), e, "{p}");
    }
    assert_eq!(model_path_id("/v1beta/openai/models/gemini-2.5-flash").as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(crate::models::Shape::of("/v1beta/openai/models", false, false), crate::models::Shape::OpenAi);
}

#[test]
fn parses_what_matters() {
    let body = br#"{"model":"cheap","messages":[{"role":"user","content":"hello there"}],"stream":true,"max_completion_tokens":50,"max_tokens":80,"user":"u-1"}"#;
    let p = parse_chat(Api::OpenAiChat, body).unwrap();
    assert_eq!(p.request.model, "cheap");
    assert!(p.request.stream);
    // both caps given: the larger one bounds the output
    assert_eq!(p.request.max_tokens, Some(80));
    assert_eq!(p.request.user.as_deref(), Some("u-1"));
    assert!(!p.request.client_include_usage);
    assert!(p.request.estimated_input_tokens > 0);
}

/// A structured output's schema is input the provider bills: a request
/// whose messages are short and whose schema is 40 KB reserved ~10 input
/// tokens before every member counted.
#[test]
fn every_member_counts_towards_the_input_estimate() {
    let props: Vec<String> = (0..800).map(|i| format!(r#""field_{i}":{{"type":"string","description":"the value"}}"#)).collect();
    let schema = format!(r#"{{"type":"object","properties":{{{}}}}}"#, props.join(","));
    let msgs = r#"[{"role":"user","content":"hi"}]"#;
    for (api, body) in [
        (Api::OpenAiChat, format!(r#"{{"model":"m","messages":{msgs},"response_format":{{"type":"json_schema","json_schema":{{"name":"x","schema":{schema}}}}}}}"#)),
        (Api::OpenAiResponses, format!(r#"{{"model":"m","input":"hi","text":{{"format":{{"type":"json_schema","name":"x","schema":{schema}}}}}}}"#)),
        (Api::AnthropicMessages, format!(r#"{{"model":"m","max_tokens":9,"messages":{msgs},"output_config":{{"format":{{"type":"json_schema","schema":{schema}}}}}}}"#)),
    ] {
        let p = parse_chat(api, body.as_bytes()).unwrap();
        assert!(schema.len() > 40_000 && p.request.estimated_input_tokens >= (schema.len() / 4) as u64, "{api:?}: {}", p.request.estimated_input_tokens);
    }
}

#[test]
fn anthropic_user_from_metadata() {
    let body = br#"{"model":"m","max_tokens":10,"messages":[],"metadata":{"user_id":"abc"}}"#;
    let p = parse_chat(Api::AnthropicMessages, body).unwrap();
    assert_eq!(p.request.user.as_deref(), Some("abc"));
    assert_eq!(p.request.max_tokens, Some(10));
}

#[test]
fn clear_errors() {
    let e = |b: &[u8]| parse_chat(Api::OpenAiChat, b).err().unwrap();
    assert_eq!(e(b"").code, "missing_body");
    assert_eq!(e(b"{\"model\":").code, "invalid_json");
    assert!(e(b"{\"model\":").message.contains("EOF"), "{}", e(b"{\"model\":").message);
    assert_eq!(e(b"[1,2]").code, "invalid_json");
    assert_eq!(e(br#"{"messages":[]}"#).code, "missing_model");
    assert_eq!(e(br#"{"model":7,"messages":[]}"#).param, Some("model"));
    assert_eq!(e(br#"{"model":"","messages":[]}"#).code, "invalid_model");
    assert_eq!(e(br#"{"model":"a","messages":[],"stream":"yes"}"#).param, Some("stream"));
    assert_eq!(e(br#"{"model":"a","messages":[],"max_tokens":-1}"#).param, Some("max_tokens"));
    assert_eq!(e(br#"{"model":"a","messages":[],"max_completion_tokens":"9"}"#).param, Some("max_completion_tokens"));
    assert_eq!(e(br#"{"model":"a"}"#).code, "missing_messages");
    for err in [e(b""), e(b"{")] {
        assert_eq!(err.status, 400);
    }
}

#[test]
fn a_bad_stream_options_is_refused_by_the_member_that_is_wrong() {
    let r = |so: &str| {
        let body = format!(r#"{{"model":"m","messages":[],"stream":true,"stream_options":{so}}}"#);
        parse_chat(Api::OpenAiChat, body.as_bytes()).map(|_| ()).map_err(|e| (e.code, e.param))
    };
    assert_eq!(r(r#"{"include_usage":"yes"}"#), Err(("invalid_type", Some("stream_options.include_usage"))));
    assert_eq!(r(r#"{"include_usage":false,"include_usage":true}"#), Err(("duplicate_key", Some("stream_options.include_usage"))));
    assert_eq!(r("true"), Err(("invalid_type", Some("stream_options"))));
    assert_eq!(r(r#"{"include_usage":true,"include_obfuscation":false}"#), Ok(()));
    assert_eq!(r("null"), Ok(()));
}

#[test]
fn a_background_response_and_a_conversation_are_read_from_the_request() {
    let r = |b: &[u8]| parse_chat(Api::OpenAiResponses, b).map(|p| (p.request.background, p.request.conversation)).map_err(|e| (e.code, e.param));
    assert_eq!(r(br#"{"model":"m","input":"x","background":true}"#), Ok((true, false)));
    assert_eq!(r(br#"{"model":"m","input":"x","background":"yes"}"#), Err(("invalid_type", Some("background"))));
    for ok in [&br#"{"model":"m","input":"x","background":false}"#[..], br#"{"model":"m","input":"x","background":null}"#] {
        assert_eq!(r(ok), Ok((false, false)));
    }
    assert_eq!(r(br#"{"model":"m","input":"x","background":true,"conversation":"conv_1"}"#), Ok((true, true)));
    assert_eq!(r(br#"{"model":"m","input":"x","conversation":{"id":"conv_1"}}"#), Ok((false, true)));
    assert_eq!(r(br#"{"model":"m","input":"x","conversation":null,"previous_response_id":"resp_1"}"#), Ok((false, false)));
    // Only the Responses API has background runs.
    let chat = parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[],"background":true}"#).unwrap();
    assert!(!chat.request.background);
}

#[test]
fn no_rewrite_when_nothing_changes() {
    let body = br#"{"model":"gpt-5.4","messages":[]}"#;
    let p = parse_chat(Api::OpenAiChat, body).unwrap();
    assert!(p.rewrite("gpt-5.4", usage_only()).is_none());
}

#[test]
fn an_anthropic_clients_thinking_goes_in_the_form_the_upstream_model_takes() {
    let body = |thinking: Value| {
        serde_json::to_vec(&json!({"model": "claude-opus-4-5", "max_tokens": 32000, "messages": [{"role": "user", "content": "q"}], "thinking": thinking}))
            .unwrap()
    };
    let sent = |b: &[u8], to: &str| parse_chat(Api::AnthropicMessages, b).unwrap().rewrite(to, Rewrite::default()).map(|o| serde_json::from_slice::<Value>(&o).unwrap());
    let enabled = body(json!({"type": "enabled", "budget_tokens": 31999}));
    let v = sent(&enabled, "claude-opus-4-8").unwrap();
    assert_eq!((&v["thinking"], &v["output_config"], &v["max_tokens"]), (&json!({"type": "adaptive"}), &json!({"effort": "high"}), &json!(32000)));
    let v = sent(&body(json!({"type": "adaptive"})), "claude-sonnet-4-5").unwrap();
    assert_eq!(v["thinking"], json!({"type": "enabled", "budget_tokens": 16000}));
    let with_config = serde_json::to_vec(&json!({"model": "claude-opus-4-8", "max_tokens": 32000, "messages": [{"role": "user", "content": "q"}],
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}}})).unwrap();
    let v = sent(&with_config, "claude-sonnet-4-5").unwrap();
    assert_eq!((&v["thinking"]["budget_tokens"], &v["output_config"]), (&json!(2048), &json!({"format": {"type": "json_schema", "schema": {"type": "object"}}})));
    let v = sent(&enabled, "claude-3-5-haiku-20241022").unwrap();
    assert!(v.get("thinking").is_none() && v["messages"][0]["content"] == "q", "{v}");
    assert_eq!(sent(&enabled, "claude-opus-4-5"), None, "the form the model takes: the body goes as it came");
}

#[test]
fn an_anthropic_clients_sampling_is_left_out_where_the_upstream_model_refuses_it() {
    let body = br#"{"model":"claude-sonnet-4-6","max_tokens":10,"temperature":0.2,"messages":[{"role":"user","content":"q"}],"top_k":40,"top_p":null}"#;
    let p = parse_chat(Api::AnthropicMessages, body).unwrap();
    // Every other byte as it came; the null is no value.
    let out = String::from_utf8(p.rewrite("claude-opus-4-8", Rewrite::default()).unwrap()).unwrap();
    assert_eq!(out, r#"{"model":"claude-opus-4-8","max_tokens":10,"messages":[{"role":"user","content":"q"}],"top_p":null}"#);
    // The same model named by the client: still left out (it would be refused there).
    let own = br#"{"model":"claude-sonnet-5-5","max_tokens":10,"messages":[],"temperature":1,"top_p":1}"#;
    let out = String::from_utf8(parse_chat(Api::AnthropicMessages, own).unwrap().rewrite("claude-sonnet-5-5", Rewrite::default()).unwrap()).unwrap();
    assert_eq!(out, r#"{"model":"claude-sonnet-5-5","max_tokens":10,"messages":[],"temperature":1}"#, "a temperature of 1 is its default: kept");
    // A model that samples, or a value of the wrong type: as it came.
    assert_eq!(p.rewrite("claude-sonnet-4-6", Rewrite::default()), None);
    let typo = br#"{"model":"claude-opus-4-8","max_tokens":10,"messages":[],"temperature":"0.2"}"#;
    assert_eq!(parse_chat(Api::AnthropicMessages, typo).unwrap().rewrite("claude-opus-4-8", Rewrite::default()), None);
    // Never on other APIs: OpenAI bodies keep what their models take.
    let oa = br#"{"model":"m","messages":[],"temperature":0.2}"#;
    assert_eq!(parse_chat(Api::OpenAiChat, oa).unwrap().rewrite("m", Rewrite::default()), None);
}

#[test]
fn an_openai_clients_sampling_is_left_out_where_a_reasoning_model_the_gateway_chose_refuses_it() {
    let rewrite = |api, body: &[u8], model: &str| parse_chat(api, body).unwrap().rewrite(model, Rewrite::default()).map(|b| String::from_utf8(b).unwrap());
    let body = br#"{"model":"fast","temperature":0.2,"messages":[{"role":"user","content":"q"}],"top_p":0.9,"seed":7}"#;
    // A route to gpt-5.5, which reasons by default: both out, every other byte as it came.
    assert_eq!(rewrite(Api::OpenAiChat, body, "gpt-5.5").as_deref(), Some(r#"{"model":"gpt-5.5","messages":[{"role":"user","content":"q"}],"seed":7}"#));
    // gpt-5.2 does not by default: only the model changes; at an effort, out.
    assert_eq!(rewrite(Api::OpenAiChat, body, "gpt-5.2").as_deref(), Some(r#"{"model":"gpt-5.2","temperature":0.2,"messages":[{"role":"user","content":"q"}],"top_p":0.9,"seed":7}"#));
    let effort = br#"{"model":"fast","reasoning_effort":"low","temperature":1,"top_p":0.9,"messages":[]}"#;
    assert_eq!(rewrite(Api::OpenAiChat, effort, "gpt-5.2").as_deref(), Some(r#"{"model":"gpt-5.2","reasoning_effort":"low","temperature":1,"messages":[]}"#), "a temperature of 1 is the default: kept");
    let none = br#"{"model":"fast","reasoning_effort":"none","temperature":0.2,"messages":[]}"#;
    assert_eq!(rewrite(Api::OpenAiChat, none, "gpt-5.5").as_deref(), Some(r#"{"model":"gpt-5.5","reasoning_effort":"none","temperature":0.2,"messages":[]}"#), "no reasoning: taken");
    assert_eq!(rewrite(Api::OpenAiChat, body, "gpt-4.1").as_deref(), Some(r#"{"model":"gpt-4.1","temperature":0.2,"messages":[{"role":"user","content":"q"}],"top_p":0.9,"seed":7}"#));
    // A model the client named (past a router's prefix): as sent, refused or not.
    let named = br#"{"model":"openai/GPT-5.5","temperature":0.2,"messages":[]}"#;
    assert_eq!(rewrite(Api::OpenAiChat, named, "gpt-5.5").as_deref(), Some(r#"{"model":"gpt-5.5","temperature":0.2,"messages":[]}"#));
    // The Responses API reads its effort in `reasoning`.
    let responses = br#"{"model":"fast","input":"q","reasoning":{"effort":"high"},"temperature":0.2}"#;
    assert_eq!(rewrite(Api::OpenAiResponses, responses, "gpt-5.2").as_deref(), Some(r#"{"model":"gpt-5.2","input":"q","reasoning":{"effort":"high"}}"#));
    let unset = br#"{"model":"fast","input":"q","reasoning":null,"temperature":0.2}"#;
    assert_eq!(rewrite(Api::OpenAiResponses, unset, "gpt-5.2").as_deref(), Some(r#"{"model":"gpt-5.2","input":"q","reasoning":null,"temperature":0.2}"#));
    // An OpenAI body's `top_k` is not OpenAI's to judge: as it came.
    let top_k = br#"{"model":"fast","messages":[],"top_k":40}"#;
    assert_eq!(rewrite(Api::OpenAiChat, top_k, "o3").as_deref(), Some(r#"{"model":"o3","messages":[],"top_k":40}"#));
}

#[test]
fn anthropic_bodies_get_cache_breakpoints_only_when_asked() {
    let system = "rules ".repeat(1000);
    let body = serde_json::to_vec(&json!({"model": "claude-sonnet-4-6", "max_tokens": 10, "system": system,
        "messages": [{"role": "user", "content": "q"}], "temperature": 0.5})).unwrap();
    let p = parse_chat(Api::AnthropicMessages, &body).unwrap();
    let ac = crate::caching::AutoCache { min_tokens: 1024, ttl_1h: false };
    let out = p.rewrite("claude-sonnet-4-6", Rewrite { auto_cache: Some(ac), ..Default::default() }).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["system"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(v["system"][0]["text"], json!(system));
    assert_eq!((v["temperature"].clone(), v["max_tokens"].clone()), (json!(0.5), json!(10)));
    assert_eq!(p.rewrite("claude-sonnet-4-6", Rewrite::default()), None, "off: the body goes as it came");
    // never on OpenAI bodies
    let oa = serde_json::to_vec(&json!({"model": "m", "messages": [{"role": "system", "content": system}]})).unwrap();
    let p = parse_chat(Api::OpenAiChat, &oa).unwrap();
    assert_eq!(p.rewrite("m", Rewrite { auto_cache: Some(ac), ..Default::default() }), None);
}

#[test]
fn rewrites_model_and_keeps_everything_else_exactly() {
    let body = br#"{"model":"openai/gpt-5.4","messages":[{"role":"user","content":"h\u00e9 \"q\""}],"temperature":0.70,"n":1}"#;
    let p = parse_chat(Api::OpenAiChat, body).unwrap();
    let out = p.rewrite("gpt-5.4", usage_only()).unwrap();
    let s = String::from_utf8(out).unwrap();
    assert_eq!(
        s,
        r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"h\u00e9 \"q\""}],"temperature":0.70,"n":1}"#
    );
}

#[test]
fn forces_include_usage_on_streams() {
    let body = br#"{"model":"m","messages":[],"stream":true}"#;
    let p = parse_chat(Api::OpenAiChat, body).unwrap();
    let out = v(&p.rewrite("m", usage_only()).unwrap());
    assert_eq!(out["stream_options"], json!({"include_usage": true}));

    let body = br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
    let p = parse_chat(Api::OpenAiChat, body).unwrap();
    assert!(!p.request.client_include_usage);
    let out = v(&p.rewrite("m", usage_only()).unwrap());
    assert_eq!(out["stream_options"], json!({"include_usage": true, "x": 1}));

    let body = br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
    let p = parse_chat(Api::OpenAiChat, body).unwrap();
    assert!(p.request.client_include_usage);
    assert!(p.rewrite("m", usage_only()).is_none());

    // not a stream: nothing added
    let body = br#"{"model":"m","messages":[]}"#;
    assert!(parse_chat(Api::OpenAiChat, body).unwrap().rewrite("m", usage_only()).is_none());
}

#[test]
fn escaped_member_names_survive() {
    let body = br#"{"mod\u0065l":"a","messages":[],"x\"y":1}"#;
    let p = parse_chat(Api::OpenAiChat, body).unwrap();
    assert_eq!(p.request.model, "a");
    let out = v(&p.rewrite("b", Rewrite::default()).unwrap());
    assert_eq!(out["model"], "b");
    assert_eq!(out["x\"y"], 1);
}

#[test]
fn duplicate_members_are_refused() {
    let e = |b: &[u8]| parse_chat(Api::OpenAiChat, b).err().unwrap();
    // the attack: reserve 1 token, let the provider run 20000
    assert_eq!(e(br#"{"model":"a","max_tokens":1,"messages":[],"max_tokens":20000}"#).code, "duplicate_key");
    assert_eq!(e(br#"{"model":"cheap","messages":[],"model":"gpt-5.4"}"#).code, "duplicate_key");
    // the same name spelled with an escape is the same member
    assert_eq!(e(br#"{"model":"a","messages":[],"mod\u0065l":"b"}"#).code, "duplicate_key");
    assert_eq!(e(br#"{"model":"a","messages":[],"stream":false,"stream":true}"#).status, 400);
}

#[test]
fn model_names_with_control_characters_are_refused() {
    for m in [r"gpt-5.4\r\nset-cookie: a=b", r"a\u0000b", r"caf\u00e9", "a b", r"\t"] {
        let body = format!(r#"{{"model":"{m}","messages":[]}}"#);
        let e = parse_chat(Api::OpenAiChat, body.as_bytes()).err().unwrap();
        assert_eq!((e.status, e.code), (400, "invalid_model"), "{m}");
    }
    let long = format!(r#"{{"model":"{}","messages":[]}}"#, "a".repeat(257));
    assert_eq!(parse_chat(Api::OpenAiChat, long.as_bytes()).err().unwrap().code, "invalid_model");
    assert!(valid_model_name("accounts/x/models/llama-v3p1:ft@2"));
}

#[test]
fn output_cap_is_added_when_the_client_set_none() {
    let cap = Rewrite { force_include_usage: false, output_cap: Some(("max_completion_tokens", 4096)), auto_cache: None };
    let p = parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[]}"#).unwrap();
    assert_eq!(p.request.output_bound(4096), 4096);
    assert_eq!(v(&p.rewrite("m", cap).unwrap())["max_completion_tokens"], 4096);
    // an explicit null is no cap
    let p = parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[],"max_tokens":null}"#).unwrap();
    let out = v(&p.rewrite("m", cap).unwrap());
    assert_eq!(out["max_completion_tokens"], 4096);
    assert!(out.get("max_tokens").is_none());
    // the client's own cap stays, in the member the provider honours
    let p = parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[],"max_completion_tokens":7}"#).unwrap();
    assert!(p.rewrite("m", cap).is_none());
    let p = parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[],"max_tokens":7}"#).unwrap();
    let out = v(&p.rewrite("m", cap).unwrap());
    assert_eq!((out["max_completion_tokens"].as_u64(), out.get("max_tokens")), (Some(7), None), "OpenAI's reasoning models refuse max_tokens");
    let deepseek = Rewrite { output_cap: Some(("max_tokens", 4096)), ..cap };
    let p = parse_chat(Api::OpenAiChat, br#"{"max_completion_tokens":7,"model":"m","messages":[]}"#).unwrap();
    let out = v(&p.rewrite("m", deepseek).unwrap());
    assert_eq!((out["max_tokens"].as_u64(), out.get("max_completion_tokens")), (Some(7), None), "DeepSeek ignores max_completion_tokens");
    // both sent: one member, the larger (the reservation's bound)
    let p = parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[],"max_tokens":9,"max_completion_tokens":7}"#).unwrap();
    assert_eq!(v(&p.rewrite("m", deepseek).unwrap()), json!({"model": "m", "messages": [], "max_tokens": 9}));
    // a member of another API is no cap: the gateway's is added (DeepSeek would ignore it)
    let p = parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[],"max_output_tokens":7}"#).unwrap();
    assert_eq!(p.request.max_tokens, None);
    assert_eq!(v(&p.rewrite("m", deepseek).unwrap())["max_tokens"], 4096);
    let p = parse_chat(Api::AnthropicMessages, br#"{"model":"m","messages":[],"max_tokens":5,"max_completion_tokens":900}"#).unwrap();
    assert_eq!(p.request.max_tokens, Some(5));
    // legacy completions and the Responses API keep their one member
    let p = parse_chat(Api::OpenAiCompletions, br#"{"model":"m","prompt":"x","max_tokens":7}"#).unwrap();
    assert!(p.rewrite("m", cap).is_none());
    // n choices multiply the bound
    let p = parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[],"n":3,"max_tokens":10}"#).unwrap();
    assert_eq!(p.request.output_bound(4096), 30);
    assert_eq!(parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[],"n":0}"#).err().unwrap().param, Some("n"));
    assert_eq!(parse_chat(Api::OpenAiChat, br#"{"model":"m","messages":[],"n":129}"#).err().unwrap().param, Some("n"));
}

#[test]
fn anthropic_streams_never_get_stream_options() {
    let body = br#"{"model":"claude","max_tokens":5,"messages":[],"stream":true}"#;
    let p = parse_chat(Api::AnthropicMessages, body).unwrap();
    assert!(p.rewrite("claude", usage_only()).is_none());
    let out = v(&p.rewrite("claude-x", usage_only()).unwrap());
    assert!(out.get("stream_options").is_none(), "{out}");
}
