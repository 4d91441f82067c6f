use super::*;
use crate::request::{parse_chat, Api};

fn tr(body: Value) -> Result<Value, GatewayError> {
    tr_for("gpt-5.4", body)
}

fn tr_for(model: &str, body: Value) -> Result<Value, GatewayError> {
    let b = serde_json::to_vec(&body).unwrap();
    let p = parse_chat(Api::AnthropicMessages, &b).unwrap();
    messages_to_chat_request(&p, model, "max_completion_tokens", 4096).map(|v| serde_json::from_slice(&v).unwrap())
}

#[test]
fn an_anthropic_tool_conversation_becomes_an_openai_one() {
    let got = tr(json!({
        "model": "openai/gpt-5.4", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "stream": true,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                              {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "png"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a PNG"}]}],
        "tools": [{"name": "lookup", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}})).unwrap();
    assert_eq!(got, json!({
        "model": "gpt-5.4", "max_completion_tokens": 100, "stop": ["END"], "user": "u1", "stream": true,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"q\":\"png\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a PNG"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {"type": "object"}}}],
        "tool_choice": "required", "parallel_tool_calls": false,
        "stream_options": {"include_usage": true}}));
}

#[test]
fn claude_codes_attribution_line_is_left_out_so_the_prefix_stays_cacheable() {
    let system = |cch: &str| json!([
        {"type": "text", "text": format!("x-anthropic-billing-header: cc_version=2.1.153.d02; cc_entrypoint=cli; cch={cch};")},
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]);
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let a = tr(json!({"model": "m", "max_tokens": 5, "system": system("97bd6"), "messages": msgs})).unwrap();
    let b = tr(json!({"model": "m", "max_tokens": 5, "system": system("24c2d"), "messages": msgs})).unwrap();
    assert_eq!(a["messages"][0], json!({"role": "system", "content": "You are Claude Code."}));
    assert_eq!(a, b, "two turns differing only in cch are the same prompt upstream");
    // In a string, or first in a block with more text: only that line goes.
    let c = tr(json!({"model": "m", "max_tokens": 5, "messages": msgs,
                      "system": "x-anthropic-billing-header: cc_version=2.1.1; cch=1;\nBe brief."})).unwrap();
    assert_eq!(c["messages"][0]["content"], "Be brief.");
    // Only at the start: the same words elsewhere are the client's text.
    let d = tr(json!({"model": "m", "max_tokens": 5, "messages": msgs, "system": "Quote: x-anthropic-billing-header: x"})).unwrap();
    assert_eq!(d["messages"][0]["content"], "Quote: x-anthropic-billing-header: x");
    // Nothing else left: no system message.
    let e = tr(json!({"model": "m", "max_tokens": 5, "messages": msgs, "system": "x-anthropic-billing-header: cch=1;"})).unwrap();
    assert_eq!(e["messages"][0]["role"], "user");
}

#[test]
fn how_much_claude_would_think_is_how_much_the_model_reasons() {
    let effort = |extra: Value| {
        let mut body = json!({"model": "m", "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        tr(body).unwrap().get("reasoning_effort").cloned()
    };
    let budget = |b: u64| effort(json!({"thinking": {"type": "enabled", "budget_tokens": b}}));
    assert_eq!((budget(1024), budget(4095)), (Some(json!("low")), Some(json!("low"))));
    assert_eq!((budget(4096), budget(16383)), (Some(json!("medium")), Some(json!("medium"))));
    assert_eq!(budget(31999), Some(json!("high")), "Claude Code's usual budget");
    assert_eq!(effort(json!({"thinking": {"type": "disabled"}})), None);
    assert_eq!(effort(json!({"thinking": {"type": "adaptive"}})), None, "the model's default");
    assert_eq!(effort(json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}})), Some(json!("medium")));
    assert_eq!(effort(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}, "output_config": {"effort": "max"}})), Some(json!("high")));
    assert_eq!(effort(json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}})), Some(json!("high")), "Opus 4.7's level");
    assert_eq!(effort(json!({})), None);
    // Beside function tools, GPT-5.2 and later take no effort in chat, and from 5.6 need `none`.
    let tools = json!([{"name": "Read", "input_schema": {"type": "object"}}]);
    let with_tools = |model: &str| {
        tr_for(model, json!({"model": "m", "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}], "tools": tools,
                             "thinking": {"type": "enabled", "budget_tokens": 31999}})).unwrap().get("reasoning_effort").cloned()
    };
    assert_eq!(with_tools("gpt-5.1"), Some(json!("high")));
    assert_eq!(with_tools("o3"), Some(json!("high")));
    assert_eq!(with_tools("deepseek-v4"), Some(json!("high")));
    assert_eq!((with_tools("gpt-5.2"), with_tools("openai/gpt-5.4-mini")), (None, None));
    assert_eq!((with_tools("gpt-5.6-terra"), with_tools("gpt-6-astra")), (Some(json!("none")), Some(json!("none"))));
    assert_eq!(with_tools("gpt-5.6-chat-latest"), None, "a chat model takes no effort at all");
    assert_eq!((gpt_version("gpt-5"), gpt_version("gpt-5.4-mini"), gpt_version("gpt-4o"), gpt_version("o3")), (Some((5, 0)), Some((5, 4)), None, None));
    // A model that does not reason refuses the member: left out for it, still checked.
    let to = |model: &str, thinking: Value| {
        tr_for(model, json!({"model": "m", "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}], "thinking": thinking}))
    };
    let enabled = json!({"type": "enabled", "budget_tokens": 31999});
    for model in ["gpt-4.1", "gpt-4o-mini", "GPT-4o", "gpt-3.5-turbo", "chatgpt-4o-latest", "gpt-5-chat-latest", "openai/gpt-4.1"] {
        assert!(to(model, enabled.clone()).unwrap().get("reasoning_effort").is_none(), "{model}");
    }
    for model in ["gpt-5.4", "o4-mini", "o3", "gpt-5.4-mini", "deepseek-reasoner", "gemini-2.5-flash", "openai/gpt-5.4"] {
        assert_eq!(to(model, enabled.clone()).unwrap()["reasoning_effort"], "high", "{model}");
    }
    assert_eq!(to("gpt-4.1", json!({"type": "enabled"})).unwrap_err().param, Some("thinking"));
    // Claude Code's context editing is left out: the model reads the whole context.
    let cm = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                    "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}});
    assert!(tr(cm).unwrap().get("context_management").is_none());
    let e = tr(json!({"model": "m", "max_tokens": 5, "messages": [], "output_config": {"effort": "extreme"}})).unwrap_err();
    assert_eq!(e.param, Some("output_config"));
    // Not a string (was left out silently, the model then reasoning at its default).
    let e = tr(json!({"model": "m", "max_tokens": 5, "messages": [], "output_config": {"effort": 7}})).unwrap_err();
    assert_eq!(e.param, Some("output_config"));
}

#[test]
fn what_cannot_be_translated_is_refused_by_name() {
    for (body, param) in [
        (json!({"model": "m", "max_tokens": 5, "messages": [], "top_k": 5}), "top_k"),
        (json!({"model": "m", "max_tokens": 5, "messages": [], "mcp_servers": []}), "mcp_servers"),
        (json!({"model": "m", "max_tokens": 5, "messages": [], "thinking": {"type": "enabled"}}), "thinking"),
        (json!({"model": "m", "max_tokens": 5, "messages": [], "output_config": {"format": {"type": "json_schema"}}}), "output_config"),
        (json!({"model": "m", "max_tokens": 5, "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}), "tools"),
        (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]}), "messages"),
        // A text block whose text is not a string (was read as empty and sent on).
        (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}]}), "messages"),
        (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "text"}]}]}), "messages"),
        (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": null}]}]}]}), "messages"),
        (json!({"model": "m", "max_tokens": 5, "messages": [], "system": [{"type": "text", "text": ["x"]}]}), "system"),
    ] {
        let e = tr(body).unwrap_err();
        assert_eq!((e.code, e.param), ("untranslatable_field", Some(param)), "{}", e.message);
    }
}

#[test]
fn a_tool_results_image_follows_the_tool_messages() {
    let got = tr(json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "Look at both"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}},
                                          {"type": "tool_use", "id": "t2", "name": "Read", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
            {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "a.txt: hello"}]},
            {"type": "text", "text": "Which is newer?"}]}]})).unwrap();
    let m = got["messages"].as_array().unwrap();
    let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool", "user"]);
    assert_eq!(m[2]["content"], "(The result's images and documents follow in the next user message.)");
    assert_eq!(m[3]["content"], "a.txt: hello");
    // The results' attachments where the results were, then the user's own words.
    assert_eq!(m[4]["content"], json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}, {"type": "text", "text": "Which is newer?"}]));
    let bad = json!([{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "search_result", "source": "x"}]}]);
    assert_eq!(tr(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": bad}]})).unwrap_err().param, Some("messages"));
}

#[test]
fn what_a_recorded_anthropic_request_carries_reaches_an_openai_model() {
    // braintrustdata/lingua's recorded requests, sent to an OpenAI model: top_p
    // (refused by reasoning models), a system message mid-conversation, the
    // structured-outputs beta's output_format.
    let base = json!({"model": "m", "max_tokens": 100, "top_p": 0.9, "messages": [{"role": "user", "content": "hi"},
        {"role": "system", "content": "Answer in French."}],
        "output_format": {"type": "json_schema", "schema": {"type": "object", "properties": {}, "required": [], "additionalProperties": false}}});
    let to_reasoner = tr_for("openai/gpt-5.4", base.clone()).unwrap();
    assert!(to_reasoner.get("top_p").is_none(), "{to_reasoner}");
    assert_eq!(to_reasoner["messages"][1], json!({"role": "system", "content": "Answer in French."}));
    assert_eq!(to_reasoner["response_format"]["json_schema"]["strict"], true);
    for keeps in ["gpt-4.1", "gpt-5.2-chat-latest", "deepseek-v4"] {
        assert_eq!(tr_for(keeps, base.clone()).unwrap()["top_p"], 0.9, "{keeps}");
    }
    assert!(openai_reasoning_model("o3-mini") && openai_reasoning_model("gpt-6-astra") && !openai_reasoning_model("gpt-4o"));
}

#[test]
fn a_temperature_reaches_an_openai_reasoning_model_only_where_it_does_not_reason() {
    let ask = |extra: Value| {
        let mut b = json!({"model": "m", "max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "messages": [{"role": "user", "content": "hi"}]});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let sampled = |v: &Value| (v.get("temperature").cloned(), v.get("top_p").cloned());
    // gpt-5.5 and gpt-5 reason by default: neither goes.
    for m in ["openai/gpt-5.5", "gpt-5-mini", "o4-mini"] {
        assert_eq!(sampled(&tr_for(m, ask(json!({}))).unwrap()), (None, None), "{m}");
    }
    // gpt-5.2 does not unless thinking asks it to.
    assert_eq!(sampled(&tr_for("gpt-5.2", ask(json!({}))).unwrap()), (Some(json!(0.2)), Some(json!(0.9))));
    let thinking = tr_for("gpt-5.2", ask(json!({"thinking": {"type": "enabled", "budget_tokens": 2048}, "temperature": 1}))).unwrap();
    assert_eq!((sampled(&thinking), &thinking["reasoning_effort"]), ((Some(json!(1)), None), &json!("low")), "1 is the default: kept");
    // GPT-5.6 with tools is sent at `none`: it takes them.
    let tools = json!({"tools": [{"name": "Read", "input_schema": {"type": "object"}}]});
    let v = tr_for("gpt-5.6-terra", ask(tools)).unwrap();
    assert_eq!((sampled(&v), &v["reasoning_effort"]), ((Some(json!(0.2)), Some(json!(0.9))), &json!("none")));
    assert_eq!(sampled(&tr_for("gpt-4.1", ask(json!({}))).unwrap()), (Some(json!(0.2)), Some(json!(0.9))));
}

#[test]
fn a_document_becomes_a_file_part() {
    let doc = |source: Value| tr(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "document", "source": source, "title": "report.pdf"}, {"type": "text", "text": "Summarise"}]}]}));
    let got = doc(json!({"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"})).unwrap();
    assert_eq!(got["messages"][0]["content"][0], json!({"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}));
    assert_eq!(doc(json!({"type": "text", "media_type": "text/plain", "data": "plain words"})).unwrap()["messages"][0]["content"][0],
               json!({"type": "text", "text": "plain words"}));
    assert_eq!(doc(json!({"type": "url", "url": "https://x.test/a.pdf"})).unwrap_err().param, Some("messages"));
    // Data that is no string is refused by name, not sent as an empty document.
    for bad in [json!({"type": "base64", "media_type": "application/pdf", "data": 7}), json!({"type": "base64", "media_type": "application/pdf"}),
                json!({"type": "text", "data": null})] {
        assert!(doc(bad).unwrap_err().message.contains("source.data must be a string"));
    }
}

#[test]
fn a_structured_output_becomes_a_strict_json_schema_response_format() {
    // lingua's outputConfigEffortWithJsonSchemaParam: a format and an effort together.
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false});
    let got = tr(json!({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Extract"}],
                        "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}}})).unwrap();
    assert_eq!(got["response_format"], json!({"type": "json_schema", "json_schema": {"name": "output", "strict": true, "schema": schema}}));
    assert_eq!(got["reasoning_effort"], "low");
    let bad = tr(json!({"model": "m", "max_tokens": 100, "messages": [], "output_config": {"format": {"type": "json_object"}}})).unwrap_err();
    assert_eq!(bad.param, Some("output_config"));
    // Optional properties (Anthropic takes them; OpenAI's strict mode refuses
    // them): sent non-strict, at any depth. Found by tests/e2e's hostile
    // captures: OpenAI refused what the translation wrote.
    let strict_of = |schema: Value| {
        let got = tr(json!({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Extract"}],
                            "output_config": {"format": {"type": "json_schema", "schema": schema.clone()}}})).unwrap();
        assert_eq!(got["response_format"]["json_schema"]["schema"], schema, "the schema goes as it came");
        got["response_format"]["json_schema"]["strict"].clone()
    };
    let closed = |props: Value, required: Value| json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
    let nested = closed(json!({"tags": {"type": "array", "items": closed(json!({"k": {"type": "string"}}), json!(["k"]))}}), json!(["tags"]));
    assert_eq!(strict_of(nested.clone()), true);
    for loose in [
        closed(json!({"name": {"type": "string"}, "age": {"type": "integer"}}), json!(["name"])),
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        closed(json!({"tags": {"type": "array", "items": closed(json!({"k": {"type": "string"}}), json!([]))}}), json!(["tags"])),
        closed(json!({"a": {"anyOf": [{"type": "null"}, closed(json!({"k": {"type": "string"}}), json!(null))]}}), json!(["a"])),
        json!({"$defs": {"D": closed(json!({"x": {}}), json!([]))}, "type": "object", "properties": {}, "required": [], "additionalProperties": false}),
        (0..80).fold(json!({"type": "string"}), |s, _| json!({"type": "array", "items": s})),
    ] {
        assert_eq!(strict_of(loose.clone()), false, "{loose}");
    }
}

#[test]
fn deepseeks_reasoning_goes_back_and_forth_as_thinking() {
    // The answer: reasoning_content becomes the first block, a thinking block Claude Code keeps.
    let body = br#"{"id":"c1","model":"deepseek-v4","choices":[{"index":0,"message":{"role":"assistant","content":null,
        "reasoning_content":"Read it first.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"Read","arguments":"{}"}}]},
        "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":10,"completion_tokens":5}}"#;
    let v: Value = serde_json::from_slice(&chat_to_message(body, 200).unwrap()).unwrap();
    assert_eq!(v["content"][0], json!({"type": "thinking", "thinking": "Read it first.", "signature": ""}));
    assert_eq!(v["content"][1]["type"], "tool_use");
    // The next request: the thinking goes back as reasoning_content to DeepSeek, never to OpenAI.
    let next = json!({"model": "m", "max_tokens": 100, "messages": [
        {"role": "user", "content": "Read a.txt"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "Read it first.", "signature": ""},
                                          {"type": "tool_use", "id": "call_1", "name": "Read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "hello"}]}]});
    let to_deepseek = tr_for("deepseek-v4", next.clone()).unwrap();
    assert_eq!(to_deepseek["messages"][1]["reasoning_content"], "Read it first.");
    // DeepSeek thinks by default: told to only when the client asked, with its effort.
    assert_eq!((&to_deepseek["thinking"], to_deepseek.get("reasoning_effort")), (&json!({"type": "disabled"}), None));
    let mut asked = next.clone();
    asked["thinking"] = json!({"type": "enabled", "budget_tokens": 8192});
    asked["output_config"] = json!({"effort": "high"});
    let on = tr_for("deepseek-v4", asked.clone()).unwrap();
    assert_eq!((&on["thinking"], &on["reasoning_effort"]), (&json!({"type": "enabled"}), &json!("high")));
    asked["thinking"] = json!({"type": "disabled"});
    let off = tr_for("deepseek-v4", asked).unwrap();
    assert_eq!((&off["thinking"], off.get("reasoning_effort")), (&json!({"type": "disabled"}), None), "an effort with thinking off asks nothing");
    assert!(tr_for("gpt-5.4", next.clone()).unwrap().get("thinking").is_none());
    assert!(tr_for("gpt-5.4", next).unwrap()["messages"][1].get("reasoning_content").is_none());
}

#[test]
fn a_chat_completion_comes_back_as_an_anthropic_message() {
    let body = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-5.4","choices":[{"index":0,
        "message":{"role":"assistant","content":"Looking.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
        "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":100,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":64},
        "completion_tokens_details":{"reasoning_tokens":5}}}"#;
    let v: Value = serde_json::from_slice(&chat_to_message(body, 200).unwrap()).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"], json!([{"type": "text", "text": "Looking."}, {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}]));
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["usage"], json!({"input_tokens": 36, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 64, "output_tokens": 9,
                                  "output_tokens_details": {"thinking_tokens": 5}}), "the reasoning as Anthropic reports thinking");
    // GPT-5.6's cache writes are Anthropic's cache creation, not plain input.
    let u = json!({"prompt_tokens": 20000, "completion_tokens": 120, "prompt_tokens_details": {"cached_tokens": 4096, "cache_write_tokens": 15872}});
    assert_eq!(usage_of(&u), json!({"input_tokens": 32, "cache_creation_input_tokens": 15872, "cache_read_input_tokens": 4096, "output_tokens": 120,
                                    "output_tokens_details": {"thinking_tokens": 0}}));
    // DeepSeek's hit tokens are what it bills as read, whatever cached_tokens says.
    let u = json!({"prompt_tokens": 1000, "completion_tokens": 2, "prompt_cache_hit_tokens": 640, "prompt_cache_miss_tokens": 360,
                   "prompt_tokens_details": {"cached_tokens": 768}});
    assert_eq!(usage_of(&u)["cache_read_input_tokens"], 640);
    assert_eq!(usage_of(&u)["input_tokens"], 360);
    // Hostile counts: never below zero.
    let u = json!({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 50}});
    assert_eq!(usage_of(&u), json!({"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": 0,
                                    "output_tokens_details": {"thinking_tokens": 0}}));
    let e: Value = serde_json::from_slice(&chat_to_message(br#"{"error":{"message":"slow down","type":"requests"}}"#, 429).unwrap()).unwrap();
    assert_eq!(e, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}));
}

/// The cap that goes to OpenAI is the one the reservation assumed: the
/// client's `max_tokens`, or the gateway's default when it sent none or
/// null (before, none went up, and OpenAI took that as no cap at all).
/// Found by `tests/mutated_captures.rs` (a captured Anthropic request with
/// `max_tokens: null`, routed to an OpenAI model).
#[test]
fn an_anthropic_request_without_a_cap_goes_to_openai_with_the_reserved_one() {
    let msgs = json!([{"role": "user", "content": "hi"}]);
    for (body, want) in [
        (json!({"model": "m", "messages": msgs, "max_tokens": 300}), 300),
        (json!({"model": "m", "messages": msgs, "max_tokens": null}), 4096),
        (json!({"model": "m", "messages": msgs}), 4096),
    ] {
        let b = serde_json::to_vec(&body).unwrap();
        let p = parse_chat(Api::AnthropicMessages, &b).unwrap();
        assert_eq!(p.request.output_bound(4096), want, "{body}");
        let got = tr(body.clone()).unwrap();
        assert_eq!(got["max_completion_tokens"], want, "{body}");
        let to_responses: Value = serde_json::from_slice(&messages_to_responses_request(&p, "gpt-5.4", 4096).unwrap()).unwrap();
        assert_eq!(to_responses["max_output_tokens"], want, "{body}");
    }
}
