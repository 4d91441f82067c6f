use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn a_compaction_keeps_the_user_messages_adds_one_compaction_item_and_takes_no_cap() {
    let m = obj(json!({"model": "gpt-5.4", "instructions": "Summarise.", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]}]}));
    let (doc, input, output) = compact(&m, "x", 1, 30).unwrap();
    assert_eq!(doc["object"], "response.compaction");
    let kinds: Vec<_> = doc["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["message", "compaction"]);
    assert_eq!((doc["usage"]["input_tokens"].as_u64(), doc["usage"]["output_tokens"].as_u64()), (Some(input), Some(output)));
    for extra in ["max_output_tokens", "stream", "store", "stream_options"] {
        let mut bad = m.clone();
        bad.insert(extra.into(), json!(16));
        assert_eq!(compact(&bad, "x", 1, 30).err().map(|e| e.3), Some(Some("unknown_parameter")), "{extra}");
    }
    assert_eq!(compact(&obj(json!({"input": "x"})), "x", 1, 30).err().map(|e| e.3), Some(Some("missing_required_parameter")));
}

#[test]
fn refuses_what_the_responses_api_refuses() {
    let e = plan(&obj(json!({"model": "m", "input": "x", "max_tokens": 5})), 12, 0, 0).err().unwrap();
    assert!(e.1.contains("moved to 'max_output_tokens'"));
    let e = plan(&obj(json!({"model": "m", "input": "x", "max_output_tokens": 5})), 12, 0, 0).err().unwrap();
    assert_eq!(e.3, Some("integer_below_min_value"));
    assert!(plan(&obj(json!({"model": "m", "input": "x", "stream_options": {}, "n": 2})), 12, 0, 0).is_err());
    assert!(plan(&obj(json!({"model": "m"})), 12, 0, 0).is_err());
    assert!(plan(&obj(json!({"model": "m", "previous_response_id": "resp_1"})), 12, 0, 0).is_ok());
    let e = plan(&obj(json!({"model": "gpt-4.1", "input": "x", "reasoning": {"effort": "low"}})), 12, 0, 0).err().unwrap();
    assert_eq!((e.1.as_str(), e.2, e.3), ("Unsupported parameter: 'reasoning.effort' is not supported with this model.", Some("reasoning.effort"), Some("unsupported_parameter")));
    assert!(plan(&obj(json!({"model": "gpt-5.4", "input": "x", "reasoning": {"effort": "low"}})), 12, 0, 0).is_ok());
    let e = plan(&obj(json!({"model": "gpt-5.2", "input": "x", "reasoning": {"effort": "low"}, "temperature": 0.2})), 12, 0, 0).err().unwrap();
    assert_eq!((e.2, e.3), (Some("temperature"), Some("unsupported_value")));
    assert!(plan(&obj(json!({"model": "gpt-5.2", "input": "x", "temperature": 0.2, "top_p": 0.9})), 12, 0, 0).is_ok(), "its default effort is none");
    assert_eq!(plan(&obj(json!({"model": "o4-mini", "input": "x", "top_p": 0.9})), 12, 0, 0).err().unwrap().2, Some("top_p"));
}

#[test]
fn input_items_and_tools_as_the_responses_api_reads_them() {
    let call = json!({"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{}"});
    let output = json!({"type": "function_call_output", "call_id": "call_1", "output": "21 C"});
    let flat = json!([{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": false}]);
    let ok = |input: Value, tools: Value| plan(&obj(json!({"model": "gpt-5.1-codex", "input": input, "tools": tools})), 12, 0, 0).map(|_| ()).map_err(|e| e.1);
    assert_eq!(ok(json!([{"role": "user", "content": "w?"}, call, output, {"role": "assistant", "content": "21 C."}]), flat.clone()), Ok(()));
    assert_eq!(ok(json!([{"role": "user", "content": "w?"}]), json!([{"type": "function", "function": {"name": "w"}}])),
               Err("Missing required parameter: 'tools[0].name'.".into()));
    assert_eq!(ok(json!([{"role": "user", "content": "w?"}, output]), flat.clone()),
               Err("No tool call found for function call output with call_id call_1.".into()));
    assert_eq!(ok(json!([{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]), flat.clone()),
               Err("Invalid value: 'input_text'. Supported values are: 'output_text' and 'refusal'.".into()));
    assert!(ok(json!([{"role": "tool", "content": "x"}]), flat.clone()).is_err());
    assert_eq!(ok(json!("x"), json!([{"type": "function", "name": "w", "parameters": "nope"}])),
               Err("Invalid type for 'tools[0].parameters': expected an object, but got a string instead.".into()));
    assert!(ok(json!([{"type": "function_call", "call_id": "c", "name": "w"}]), flat.clone()).is_err(), "no arguments");
    // With a previous response the calls are stored there.
    assert!(plan(&obj(json!({"model": "m", "previous_response_id": "resp_1", "input": [output]})), 12, 0, 0).is_ok());
    // A real follow-up (braintrustdata/lingua functionToolsWithReasoningEffortParam): the reasoning item and the call handed back.
    let lingua = json!([{"role": "user", "content": "Tokyo weather"}, {"id": "rs_1", "type": "reasoning", "summary": []},
        {"id": "fc_1", "type": "function_call", "status": "completed", "arguments": "{\"location\":\"Tokyo\"}", "call_id": "call_q", "name": "get_weather"},
        {"type": "function_call_output", "call_id": "call_q", "output": "71 degrees"}]);
    assert_eq!(ok(lingua, flat), Ok(()));
    for m in ["gpt-5.1-codex", "codex-mini-latest", "o3-pro", "gpt-5.4-pro-2026-03-05", "gpt-4o-deep-research"] {
        assert!(crate::strict::openai_responses_only(m), "{m}");
    }
    assert!(!crate::strict::openai_responses_only("gpt-5.4") && !crate::strict::openai_responses_only("o3"));
}

#[test]
fn usage_counts_reasoning_in_output_and_the_stream_ends_with_it() {
    let p = plan(&obj(json!({"model": "m", "input": [{"role": "user", "content": "abcdefgh"}], "stream": true})), 5, 3, 0).unwrap();
    let o = object(&p, "1", 0, true);
    assert_eq!(o["usage"]["output_tokens"], 8);
    assert_eq!(o["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
    let ev = events(&p, "1", 0);
    assert_eq!(ev.last().unwrap().0, "response.completed");
    assert_eq!(ev.iter().filter(|(n, _)| n == "response.output_text.delta").count(), 5);
    assert!(ev[0].1.contains(r#""usage":null"#));
    let padded = |ev: &[(String, String)]| ev.iter().filter(|(_, d)| d.contains(r#""obfuscation":"#)).count();
    assert_eq!(padded(&ev), 5, "every delta event, and only those");
    let off = obj(json!({"model": "m", "input": "x", "stream": true, "stream_options": {"include_obfuscation": false}}));
    assert_eq!(padded(&events(&plan(&off, 5, 0, 0).unwrap(), "1", 0)), 0);
}

#[test]
fn hosted_tool_calls_come_before_the_message_and_only_for_tools_the_request_has() {
    let req = |tools: Value| obj(json!({"model": "gpt-5", "input": "x", "stream": true, "tools": tools}));
    assert_eq!(plan(&req(json!([{"type": "file_search"}])), 5, 0, 0).err().map(|e| e.1),
               Some("Missing required parameter: 'tools[0].vector_store_ids'.".into()));
    let mut p = plan(&req(json!([{"type": "file_search", "vector_store_ids": ["vs_1"]}, {"type": "web_search"}])), 5, 0, 0).unwrap();
    p.run_tools(Some(2), None, None);
    assert_eq!(p.calls, ["file_search_call", "file_search_call", "web_search_call"]);
    let kinds: Vec<String> = object(&p, "1", 0, true)["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["file_search_call", "file_search_call", "web_search_call", "message"]);
    let ev = events(&p, "1", 0);
    assert_eq!(ev.iter().filter(|(n, _)| n == "response.file_search_call.completed").count(), 2);
    assert!(ev.iter().any(|(n, d)| n == "response.output_text.delta" && d.contains(r#""output_index":3"#)));
    // No tool, no call, whatever the test asks.
    let mut bare = plan(&req(json!([])), 5, 0, 0).unwrap();
    bare.run_tools(Some(3), Some(3), None);
    assert!(bare.calls.is_empty());
    let capped = obj(json!({"model": "gpt-5", "input": "x", "tools": [{"type": "web_search"}], "max_tool_calls": 2}));
    let mut capped = plan(&capped, 5, 0, 0).unwrap();
    capped.run_tools(None, Some(5), None);
    assert_eq!(capped.calls, ["web_search_call"; 2], "max_tool_calls bounds the calls");
}

mod image_tool_tests {
    use super::*;

    #[test]
    fn the_image_tool_runs_its_calls_and_reports_their_tokens_apart() {
        let m = json!({"model": "gpt-5.4", "input": "Draw an otter", "stream": true,
                       "tools": [{"type": "image_generation", "quality": "low", "size": "1024x1024", "partial_images": 1}]});
        let mut p = plan(m.as_object().unwrap(), 12, 0, 0).unwrap();
        p.run_tools(None, None, Some(2));
        let o = object(&p, "x", 1, true);
        assert_eq!(o["output"][0]["type"], "image_generation_call");
        assert_eq!(o["tool_usage"]["image_gen"]["output_tokens"], json!(2 * (272 + 100)));
        assert_eq!(o["usage"]["output_tokens"], json!(12), "the request's own usage apart");
        let names: Vec<String> = events(&p, "x", 1).into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"response.image_generation_call.partial_image".to_string()) && names.contains(&"response.image_generation_call.generating".to_string()), "{names:?}");
        // A tool no image model takes is refused, as a generation asking it is.
        let bad = json!({"model": "gpt-5.4", "input": "x", "tools": [{"type": "image_generation", "quality": "ultra"}]});
        assert_eq!(plan(bad.as_object().unwrap(), 12, 0, 0).err().map(|e| e.0), Some(400));
        p.tool_usage = false;
        assert!(object(&p, "x", 1, true).get("tool_usage").is_none());
    }
}

mod page_open_tests {
    use super::*;

    #[test]
    fn opening_a_page_is_a_web_search_call_but_no_billable_search() {
        let m = json!({"model": "gpt-5.4", "input": "news?", "tools": [{"type": "web_search"}]});
        let mut p = plan(m.as_object().unwrap(), 5, 0, 0).unwrap();
        p.page_opens = 2;
        p.run_tools(None, Some(1), None);
        let o = object(&p, "x", 1, true);
        let actions: Vec<&str> = o["output"].as_array().unwrap().iter().filter_map(|i| i["action"]["type"].as_str()).collect();
        assert_eq!(actions, ["search", "open_page", "open_page"]);
        assert_eq!(o["tool_usage"]["web_search"]["num_requests"], json!(1));
        assert!(events(&p, "x", 1).iter().all(|(n, _)| !n.contains('/')), "streamed as web_search_call events");
    }
}
