use super::*;
use serde_json::json;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn the_advisor_tool_needs_its_beta_its_name_a_model_and_an_opus_advisor() {
    let beta = "advisor-tool-2026-03-01";
    let with = |tool: Value| obj(json!({"model": "claude-haiku-4-5", "max_tokens": 1, "messages": [], "tools": [{"name": "f", "input_schema": {}}, tool]}));
    let good = json!({"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-4-8"});
    assert_eq!(advisor(&with(good.clone()), beta).unwrap(), Some(("claude-opus-4-8".to_string(), None)));
    assert_eq!(advisor(&with(good.clone()), &format!("files-api-2025-04-14, {beta}")).unwrap().map(|a| a.0), Some("claude-opus-4-8".into()));
    let capped = json!({"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-4-8", "max_uses": 2, "max_tokens": 2048});
    assert_eq!(advisor(&with(capped), beta).unwrap(), Some(("claude-opus-4-8".to_string(), Some(2))));
    assert_eq!(advisor(&obj(json!({"model": "claude-m", "tools": [{"name": "advisor", "input_schema": {}}]})), "").unwrap(), None, "a client tool of that name");
    for (tool, b) in [
        (good.clone(), ""),
        (json!({"type": "advisor_20260301", "name": "helper", "model": "claude-opus-4-8"}), beta),
        (json!({"type": "advisor_20260301", "name": "advisor"}), beta),
        (json!({"type": "advisor_20260301", "name": "advisor", "model": "claude-sonnet-4-6"}), beta),
        (json!({"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-4-8", "max_tokens": 512}), beta),
        (json!({"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-4-8", "max_uses": 0}), beta),
        (json!({"type": "advisor_20990101", "name": "advisor", "model": "claude-opus-4-8"}), beta),
    ] {
        assert_eq!(advisor(&with(tool.clone()), b).map_err(|r| r.status), Err(400), "{tool} {b}");
    }
    let twice = obj(json!({"model": "claude-m", "tools": [good.clone(), good]}));
    assert!(advisor(&twice, beta).is_err());
}

#[test]
fn anthropic_searches_need_the_tool_and_stop_at_max_uses() {
    let with = |tools: Value| json!({"model": "claude-m", "max_tokens": 1, "messages": [], "tools": tools});
    assert_eq!(anthropic_searches(&json!({"model": "claude-m"}), Some(3)), 0, "no tool, no search");
    assert_eq!(anthropic_searches(&with(json!([{"type": "web_search_20250305", "name": "web_search"}])), Some(3)), 3);
    let capped = with(json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}, {"name": "f", "input_schema": {}}]));
    assert_eq!(anthropic_searches(&capped, Some(3)), 2);
    assert_eq!(anthropic_searches(&capped, None), 0);
}

#[test]
fn anthropic_cache_control_rules() {
    let cc = json!({"type": "ephemeral"});
    let five = json!({"model": "claude-m", "max_tokens": 1, "system": [{"type": "text", "text": "s", "cache_control": cc}],
        "tools": [{"name": "t", "input_schema": {}, "cache_control": cc}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": cc},
                                                  {"type": "text", "text": "b", "cache_control": cc},
                                                  {"type": "text", "text": "c", "cache_control": cc}]}]});
    assert_eq!(cache_breakpoints(&obj(five.clone())).len(), 5);
    assert!(check(Dialect::Anthropic, &obj(five), None).unwrap_err().message.contains("A maximum of 4 blocks with cache_control"));
    let bad_ttl = json!({"model": "claude-m", "max_tokens": 1, "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1d"}}],
        "messages": []});
    assert!(check(Dialect::Anthropic, &obj(bad_ttl), None).is_err());
    let ok = json!({"model": "claude-m", "max_tokens": 1, "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": "hi"}]});
    assert!(check(Dialect::Anthropic, &obj(ok), None).is_ok());
}

#[test]
fn anthropic_refuses_extra_metadata_and_malformed_client_tools() {
    let req = |extra: Value| {
        let mut m = obj(json!({"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}));
        m.extend(obj(extra));
        m
    };
    let refusal = |extra: Value| check(Dialect::Anthropic, &req(extra), None).err().map(|e| e.message);
    assert_eq!(refusal(json!({"metadata": {"user_id": "u-1"}})), None);
    assert_eq!(refusal(json!({"metadata": {"user_id": null}})), None);
    assert_eq!(refusal(json!({"metadata": {"session": "s"}})).as_deref(), Some("metadata.session: Extra inputs are not permitted"));
    assert!(refusal(json!({"metadata": {"user_id": 7}})).unwrap().contains("valid string"));
    assert_eq!(refusal(json!({"tools": [{"name": "get_weather", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search"}]})), None);
    assert!(refusal(json!({"tools": [{"name": "get weather", "input_schema": {}}]})).unwrap().contains("pattern"));
    assert!(refusal(json!({"tools": [{"name": "f"}]})).unwrap().contains("input_schema: Field required"));
    assert!(refusal(json!({"tools": [{"type": "custom", "input_schema": {}}]})).unwrap().contains("pattern"));
    assert!(refusal(json!({"tools": ["f"]})).unwrap().contains("valid dictionary"));
}

#[test]
fn anthropic_refuses_what_the_real_api_refuses() {
    let ok = json!({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "stream": true});
    assert!(check(Dialect::Anthropic, &obj(ok), None).is_ok());
    let bad = json!({"model": "claude-x", "max_tokens": 5, "messages": [], "stream": true, "stream_options": {"include_usage": true}});
    let e = check(Dialect::Anthropic, &obj(bad), None).err().unwrap();
    assert_eq!(e.message, "stream_options: Extra inputs are not permitted");
    let e = check(Dialect::Anthropic, &obj(json!({"model": "claude-c", "messages": []})), None).err().unwrap();
    assert_eq!(e.message, "max_tokens: Field required");
    let cm = json!({"model": "claude-c", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}], "context_management": {}});
    assert!(check(Dialect::Anthropic, &obj(cm.clone()), None).is_err());
    assert!(check(Dialect::Anthropic, &obj(cm), Some("x")).is_ok());
}

#[test]
fn an_output_cap_below_one_is_refused_as_each_provider_refuses_it() {
    let req = |cap: &str, n: i64| obj(json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], cap: n}));
    for cap in ["max_tokens", "max_completion_tokens"] {
        let e = check(Dialect::OpenAi, &req(cap, 0), None).err().unwrap();
        assert_eq!(e.message, format!("Invalid '{cap}': integer below minimum value. Expected a value >= 1, but got 0 instead."));
        assert_eq!((e.param.as_deref(), e.code), (Some(cap), Some("integer_below_min_value")));
        assert!(check(Dialect::OpenAi, &req(cap, 1), None).is_ok());
    }
    let e = check(Dialect::DeepSeek, &req("max_tokens", 0), None).err().unwrap();
    assert_eq!(e.message, "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]");
    let e = check(Dialect::Anthropic, &obj(json!({"model": "claude-x", "max_tokens": 0, "messages": []})), None).err().unwrap();
    assert_eq!(e.message, "max_tokens: Input should be greater than or equal to 1");
}

#[test]
fn a_token_count_refuses_what_only_a_message_takes() {
    let ok = obj(json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "system": "s", "tools": []}));
    assert!(check_count_tokens(&ok, false).is_ok());
    for (extra, value) in [("max_tokens", json!(10)), ("stream", json!(true)), ("temperature", json!(0.5)), ("metadata", json!({}))] {
        let mut body = ok.clone();
        body.insert(extra.into(), value);
        let r = check_count_tokens(&body, false).err().unwrap();
        assert_eq!((r.status, r.message), (400, format!("{extra}: Extra inputs are not permitted")));
    }
    let mut beta = ok.clone();
    beta.insert("context_management".into(), json!({}));
    assert!(check_count_tokens(&beta, false).is_err());
    assert!(check_count_tokens(&beta, true).is_ok());
    let r = check_count_tokens(&obj(json!({"model": "claude-x"})), false).err().unwrap();
    assert_eq!(r.message, "messages: Field required");
    let r = check_count_tokens(&obj(json!({"model": "claude-x", "messages": []})), false).err().unwrap();
    assert_eq!(r.message, "messages: at least one message is required");
}

#[test]
fn empty_messages_are_refused_as_each_api_does() {
    let anthropic = |messages: Value| check(Dialect::Anthropic, &obj(json!({"model": "claude-c", "max_tokens": 5, "messages": messages})), None).err().map(|e| e.message);
    assert_eq!(anthropic(json!([])).as_deref(), Some("messages: at least one message is required"));
    assert_eq!(anthropic(json!([{"role": "user", "content": [{"type": "text", "text": ""}]}])).as_deref(), Some("messages: text content blocks must be non-empty"));
    let not_last = "messages.0: all messages must have non-empty content except for the optional final assistant message";
    assert_eq!(anthropic(json!([{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}])).as_deref(), Some(not_last));
    assert_eq!(anthropic(json!([{"role": "assistant", "content": []}, {"role": "user", "content": "q"}])).as_deref(), Some(not_last));
    assert_eq!(anthropic(json!([{"role": "user", "content": ""}])).as_deref(), Some(not_last), "a last user message too");
    assert_eq!(anthropic(json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}])), None, "the final assistant prefill may be empty");
    let openai = |messages: Value| check(Dialect::OpenAi, &obj(json!({"model": "claude-m", "messages": messages})), None).err().map(|e| (e.message, e.param, e.code));
    let empty = "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.";
    assert_eq!(openai(json!([])), Some((empty.to_string(), Some("messages".to_string()), Some("empty_array"))));
    assert_eq!(openai(json!([{"role": "user", "content": ""}])), None);
}

#[test]
fn openai_refuses_unknown_arguments_and_wrong_types() {
    let e = check(Dialect::OpenAi, &obj(json!({"model": "claude-m", "messages": [], "foo": 1})), None).err().unwrap();
    assert_eq!(e.message, "Unrecognized request argument supplied: foo");
    let e = check(Dialect::OpenAi, &obj(json!({"model": "claude-m", "messages": [], "max_tokens": "5"})), None).err().unwrap();
    assert_eq!(e.message, "Invalid type for 'max_tokens': expected an integer, but got a string instead.");
    let e = check(Dialect::OpenAi, &obj(json!({"model": "claude-m", "messages": [], "stream_options": {"include_usage": true}})), None)
        .err()
        .unwrap();
    assert_eq!(e.param.as_deref(), Some("stream_options"));
    assert!(check(Dialect::DeepSeek, &obj(json!({"model": "claude-m", "messages": [], "foo": 1})), None).is_ok());
}

#[test]
fn a_model_that_does_not_reason_refuses_a_reasoning_effort() {
    let with_effort = |model: &str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high"});
        check(Dialect::OpenAi, &obj(body), None).err().map(|e| (e.message, e.param, e.code))
    };
    for model in ["gpt-4.1", "gpt-4o-mini", "gpt-3.5-turbo", "chatgpt-4o-latest", "gpt-5-chat-latest"] {
        let (message, param, code) = with_effort(model).unwrap();
        assert_eq!(message, "Unsupported parameter: 'reasoning_effort' is not supported with this model.");
        assert_eq!((param.as_deref(), code), (Some("reasoning_effort"), Some("unsupported_parameter")));
    }
    for model in ["gpt-5.4", "gpt-5.4-mini", "o4-mini", "o3", "gemini-2.5-flash"] {
        assert_eq!(with_effort(model), None, "{model}");
    }
    let null = json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": null});
    assert!(check(Dialect::OpenAi, &obj(null), None).is_ok());
}

#[test]
fn a_reasoning_model_refuses_max_tokens() {
    let capped = |model: &str, cap: &str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], cap: 10});
        check(Dialect::OpenAi, &obj(body), None).err().map(|e| (e.message, e.param, e.code))
    };
    for model in ["gpt-5-nano", "gpt-5.4", "o3", "o4-mini"] {
        let (message, param, code) = capped(model, "max_tokens").unwrap();
        assert_eq!(message, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.");
        assert_eq!((param.as_deref(), code), (Some("max_tokens"), Some("unsupported_parameter")));
        assert_eq!(capped(model, "max_completion_tokens"), None);
    }
    for model in ["gpt-4.1", "gpt-4o-mini", "gpt-5-chat-latest", "gemini-2.5-flash", "omni-x"] {
        assert_eq!(capped(model, "max_tokens"), None, "{model}");
    }
    let deepseek = json!({"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10});
    assert!(check(Dialect::DeepSeek, &obj(deepseek), None).is_ok());
}

#[test]
fn deepseek_wants_its_reasoning_back_in_a_tool_loop() {
    let call = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
    let mut with_reasoning = call.clone();
    with_reasoning["reasoning_content"] = json!("need f");
    let ds = |msgs: Value, extra: Value| {
        let mut v = json!({"model": "deepseek-v4", "messages": msgs});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check(Dialect::DeepSeek, &obj(v), None).err().map(|e| e.message)
    };
    let tool = json!({"role": "tool", "tool_call_id": "c1", "content": "ok"});
    let user = json!({"role": "user", "content": "go"});
    assert_eq!(ds(json!([user, call, tool]), json!({})).as_deref(), Some("The `reasoning_content` in the thinking mode must be passed back to the API."));
    assert!(ds(json!([user, with_reasoning, tool]), json!({})).is_none());
    // Every later turn too, but a span without tool calls needs none.
    assert!(ds(json!([user, call, tool, {"role": "assistant", "content": "done", "reasoning_content": "x"}, user]), json!({})).is_some());
    assert!(ds(json!([user, {"role": "assistant", "content": "hi"}, user]), json!({})).is_none());
    assert!(ds(json!([user, call, tool]), json!({"thinking": {"type": "disabled"}})).is_none(), "thinking off");
    assert!(ds(json!([user, call, tool]), json!({"model": "deepseek-chat"})).is_none(), "the non-thinking model");
}

#[test]
fn new_gpts_refuse_function_tools_beside_a_reasoning_effort_in_chat() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let chat = |model: &str, extra: Value| {
        let mut v = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "tools": tools});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check(Dialect::OpenAi, &obj(v), None).err().map(|e| (e.message, e.param))
    };
    let (msg, param) = chat("gpt-5.4-mini", json!({"reasoning_effort": "medium"})).unwrap();
    assert_eq!((msg.as_str(), param.as_deref()), ("Function tools with reasoning_effort are not supported for gpt-5.4-mini in /v1/chat/completions. Please use /v1/responses instead.", Some("reasoning_effort")));
    assert!(chat("gpt-5.4", json!({})).is_none(), "5.4's default effort is none");
    assert!(chat("gpt-5.6-terra", json!({})).unwrap().0.ends_with("set reasoning_effort to 'none'."), "5.6's default is medium");
    assert!(chat("gpt-5.6-terra", json!({"reasoning_effort": "none"})).is_none());
    assert!(chat("gpt-5.1", json!({"reasoning_effort": "high"})).is_none() && chat("o3", json!({"reasoning_effort": "high"})).is_none());
    assert!(chat("gpt-5.4", json!({"reasoning_effort": "high", "tools": null})).is_none(), "no tools, no refusal");
    let top_p = chat("gpt-5-nano", json!({"top_p": 0.9, "tools": null})).unwrap();
    assert_eq!(top_p.0, "Unsupported parameter: 'top_p' is not supported with this model.");
    assert!(chat("gpt-4.1", json!({"top_p": 0.9})).is_none());
    let temperature = chat("gpt-5.5", json!({"temperature": 0.2, "tools": null})).unwrap();
    assert_eq!(temperature, ("Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported.".into(), Some("temperature".into())));
    for (model, extra) in [("gpt-5.5", json!({"temperature": 1})), ("gpt-5.5", json!({"reasoning_effort": "none", "temperature": 0.2})),
                           ("gpt-5.2", json!({"temperature": 0, "top_p": 0.5})), ("gpt-4.1", json!({"temperature": 0}))] {
        let mut body = json!({"tools": null});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        assert!(chat(model, body.clone()).is_none(), "{model} {body}");
    }
    for (model, extra) in [("gpt-5.2", json!({"reasoning_effort": "medium", "temperature": 0})), ("gpt-5", json!({"reasoning_effort": "minimal", "temperature": 0.5})),
                           ("o3", json!({"temperature": 0})), ("gpt-5.2-pro", json!({"reasoning_effort": "none", "top_p": 1}))] {
        let mut body = json!({"tools": null});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        assert!(chat(model, body.clone()).is_some(), "{model} {body}");
    }
}

#[test]
fn anthropic_refuses_an_empty_tool_result_marked_as_an_error() {
    let turn = |result: Value| {
        let body = json!({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [result]}]});
        check(Dialect::Anthropic, &obj(body), None).err().map(|e| e.message)
    };
    let msg = "messages.2.content.0.tool_result: content cannot be empty if `is_error` is true";
    assert_eq!(turn(json!({"type": "tool_result", "tool_use_id": "t", "is_error": true, "content": ""})).as_deref(), Some(msg));
    assert_eq!(turn(json!({"type": "tool_result", "tool_use_id": "t", "is_error": true})).as_deref(), Some(msg));
    assert_eq!(turn(json!({"type": "tool_result", "tool_use_id": "t", "content": ""})), None);
    assert_eq!(turn(json!({"type": "tool_result", "tool_use_id": "t", "is_error": true, "content": "boom"})), None);
}

#[test]
fn a_model_no_provider_names_so_is_not_found() {
    let body = |m: &str| obj(json!({"model": m, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}));
    let r = check(Dialect::Anthropic, &body("anthropic/claude-sonnet-4-6"), None).unwrap_err();
    assert_eq!((r.status, r.message.as_str()), (404, "model: anthropic/claude-sonnet-4-6"));
    assert_eq!(check(Dialect::Anthropic, &body("sonnet4"), None).unwrap_err().status, 404);
    assert!(check(Dialect::Anthropic, &body("claude-sonnet-4-6"), None).is_ok());
    let r = check(Dialect::OpenAi, &body("openai/gpt-5.4"), None).unwrap_err();
    assert_eq!((r.status, r.code), (404, Some("model_not_found")));
    assert_eq!(check(Dialect::DeepSeek, &body("deepseek-chat "), None).unwrap_err().status, 404);
    let chat = obj(json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}));
    assert!(check(Dialect::OpenAi, &chat, None).is_ok());
}
