//! A Responses API client (the Codex CLI, the OpenAI Agents SDK,
//! `client.responses.create`) on a model whose provider speaks chat
//! completions or Anthropic messages: the request as a chat request (for
//! Claude then translated on by [`super::to_anthropic`]), and the JSON
//! answer written back as the Responses API writes it (streams:
//! [`super::to_responses_stream`]).
//!
//! Sources for the shapes: the OpenAI API reference ("Create a model
//! response", "The response object", "Streaming events"), the recorded
//! answers and stream in tests/captures (`openai_response.json`,
//! `openai_response_stream_function_call.sse`).

use serde_json::{json, Map, Value};

use super::namespaces::ToolNames;
use crate::errors::GatewayError;

const TARGET: &str = "a model served in another format";

/// Responses members a chat provider has no place for: they need the
/// provider to keep state (a stored response, a conversation, a stored
/// prompt, work in the background) or have no chat equivalent.
const REFUSED: &[&str] = &["previous_response_id", "conversation", "prompt", "background", "max_tool_calls", "top_logprobs"];

fn refuse(param: &'static str, why: &str) -> GatewayError {
    super::refuse(param, why, TARGET)
}

fn bad_item(i: usize, what: &str) -> GatewayError {
    GatewayError::bad_request("untranslatable_field", format!("input[{i}]: {what}")).with_param("input")
}

/// A message's content as chat content: a string, or chat parts.
fn content(v: &Value, i: usize, assistant: bool) -> Result<Value, GatewayError> {
    let Value::Array(parts) = v else {
        return match v {
            Value::String(_) => Ok(v.clone()),
            _ => Err(bad_item(i, "content must be a string or an array of parts")),
        };
    };
    let mut out = Vec::with_capacity(parts.len());
    let mut text = String::new();
    for p in parts {
        let s = |k: &str| p.get(k).and_then(Value::as_str);
        match (p.get("type").and_then(Value::as_str), assistant) {
            (Some("output_text" | "input_text"), true) => text.push_str(s("text").ok_or_else(|| bad_item(i, "a text part's text must be a string"))?),
            (Some("refusal"), true) => text.push_str(s("refusal").unwrap_or("")),
            (Some("input_text"), false) => {
                out.push(json!({"type": "text", "text": s("text").ok_or_else(|| bad_item(i, "a text part's text must be a string"))?}))
            }
            (Some("input_image"), false) => {
                let url = s("image_url").ok_or_else(|| bad_item(i, "an input_image needs image_url (a file_id cannot be translated)"))?;
                out.push(json!({"type": "image_url", "image_url": {"url": url, "detail": s("detail").unwrap_or("auto")}}));
            }
            (Some("input_file"), false) => {
                let mut f = Map::new();
                for k in ["file_data", "file_id", "filename"] {
                    if let Some(x) = s(k) {
                        f.insert(k.into(), Value::from(x));
                    }
                }
                if p.get("file_url").is_some_and(|u| !u.is_null()) {
                    return Err(bad_item(i, "an input_file by file_url cannot be translated"));
                }
                out.push(json!({"type": "file", "file": f}));
            }
            _ => return Err(bad_item(i, "content parts may be input_text, input_image and input_file (output_text and refusal for the assistant)")),
        }
    }
    Ok(if assistant { Value::from(text) } else { Value::Array(out) })
}

/// The input items as chat messages: messages keep their role, function
/// calls join the assistant turn they follow (as chat's `tool_calls`),
/// their outputs become tool messages; reasoning items (the provider's own,
/// encrypted or summarised) are left out.
fn messages(input: &Value, instructions: Option<&Value>, keep_reasoning: bool) -> Result<Vec<Value>, GatewayError> {
    let mut out: Vec<Value> = Vec::new();
    // A reasoning item's summary, for the assistant turn after it (DeepSeek's `reasoning_content`).
    let mut reasoning: Option<String> = None;
    match instructions {
        Some(Value::String(s)) if !s.is_empty() => out.push(json!({"role": "system", "content": s})),
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(refuse("instructions", "must be a string")),
    }
    let items = match input {
        Value::String(s) => return Ok([out, vec![json!({"role": "user", "content": s})]].concat()),
        Value::Array(items) => items,
        Value::Null => return Ok(out),
        _ => return Err(refuse("input", "must be a string or an array of items")),
    };
    for (i, item) in items.iter().enumerate() {
        let s = |k: &str| item.get(k).and_then(Value::as_str);
        match item.get("type").and_then(Value::as_str) {
            None | Some("message") => {
                let role = s("role").unwrap_or("");
                if !matches!(role, "user" | "system" | "developer" | "assistant") {
                    return Err(bad_item(i, "role must be user, system, developer or assistant"));
                }
                let c = content(item.get("content").unwrap_or(&Value::Null), i, role == "assistant")?;
                // One text part as a string, which every chat API takes (some take no arrays);
                // `developer` as `system`, which every chat API knows (OpenAI's reasoning models read either).
                let single = match c.as_array().map(Vec::as_slice) {
                    Some([only]) if only.get("type").and_then(Value::as_str) == Some("text") => only.get("text").cloned(),
                    _ => None,
                };
                let c = single.unwrap_or(c);
                let role = if role == "developer" { "system" } else { role };
                let mut m = json!({"role": role, "content": c});
                if let (Some(r), Some(o), "assistant") = (reasoning.take(), m.as_object_mut(), role) {
                    o.insert("reasoning_content".into(), Value::from(r));
                }
                out.push(m);
            }
            Some("function_call") => {
                let (Some(id), Some(name), Some(args)) = (s("call_id"), s("name"), s("arguments")) else {
                    return Err(bad_item(i, "a function_call needs call_id, name and arguments, strings"));
                };
                // A namespaced function's call, under the flat name it is offered by.
                let name = match item.get("namespace") {
                    None | Some(Value::Null) => name.to_string(),
                    Some(Value::String(ns)) => super::namespaces::flat(ns, name),
                    Some(_) => return Err(bad_item(i, "a function_call's namespace must be a string")),
                };
                let call = json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}});
                // Calls after an assistant's words (or after another call) join that turn.
                match out.last_mut().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant")).and_then(Value::as_object_mut) {
                    Some(turn) => match turn.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(calls) => calls.push(call),
                        None => {
                            turn.insert("tool_calls".into(), json!([call]));
                        }
                    },
                    None => {
                        let mut m = json!({"role": "assistant", "content": null, "tool_calls": [call]});
                        if let (Some(r), Some(o)) = (reasoning.take(), m.as_object_mut()) {
                            o.insert("reasoning_content".into(), Value::from(r));
                        }
                        out.push(m);
                    }
                }
            }
            Some("function_call_output") => {
                let id = s("call_id").ok_or_else(|| bad_item(i, "a function_call_output needs call_id, a string"))?;
                let output = match item.get("output") {
                    Some(Value::String(t)) => t.clone(),
                    Some(Value::Array(parts)) => {
                        let texts: Option<Vec<&str>> = parts.iter().map(|p| p.get("text").and_then(Value::as_str)).collect();
                        texts.ok_or_else(|| bad_item(i, "a function_call_output may hold only text"))?.concat()
                    }
                    _ => return Err(bad_item(i, "a function_call_output needs output, a string")),
                };
                out.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
            }
            Some("reasoning") => {
                let text: String = item.get("summary").and_then(Value::as_array).into_iter().flatten().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
                if keep_reasoning && !text.is_empty() {
                    reasoning = Some(text);
                }
            }
            Some(_) => return Err(bad_item(i, "items may be messages, function calls, their outputs and reasoning")),
        }
    }
    Ok(out)
}

/// A function tool's members a chat function keeps.
const FUNCTION: &[&str] = &["name", "description", "parameters", "strict"];

/// Chat's function tools for the request's `tools`, and the flat names its
/// namespaced functions are offered under ([`ToolNames`]).
fn tools(v: &Value) -> Result<(Value, ToolNames), GatewayError> {
    let list = v.as_array().ok_or_else(|| refuse("tools", "must be an array"))?;
    let kind = |t: &Value| t.get("type").and_then(Value::as_str).map(str::to_string);
    let taken: std::collections::HashSet<&str> = list.iter().filter(|t| kind(t).as_deref() == Some("function")).filter_map(|t| t.get("name").and_then(Value::as_str)).collect();
    let mut names = ToolNames::default();
    let mut out = Vec::with_capacity(list.len());
    for t in list {
        let functions = match kind(t).as_deref() {
            Some("function") => vec![FUNCTION.iter().filter_map(|k| Some(((*k).to_string(), t.get(*k).filter(|x| !x.is_null())?.clone()))).collect::<Map<_, _>>().into()],
            Some("namespace") => names.flatten(t, &taken, FUNCTION)?,
            _ => return Err(refuse("tools", "may hold only function tools and namespaces of them (the provider's built-in tools, custom and MCP tools are OpenAI's)")),
        };
        out.extend(functions.into_iter().map(|f| json!({"type": "function", "function": f})));
    }
    Ok((Value::Array(out), names))
}

/// The flat names a Responses request's namespaced functions are offered
/// under (none: `None`), for its answer ([`ToolNames::restore`]); read from
/// its `tools` (raw JSON) as [`chat_request`] reads them.
pub fn tool_names(tools_raw: Option<&str>) -> Option<ToolNames> {
    let v: Value = serde_json::from_str(tools_raw?).ok()?;
    tools(&v).ok().map(|(_, n)| n).filter(|n| !n.is_empty())
}

fn tool_choice(v: &Value) -> Result<Value, GatewayError> {
    match v {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(v.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => match o.get("name").and_then(Value::as_str) {
            Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
            None => Err(refuse("tool_choice", "naming a function needs name, a string")),
        },
        _ => Err(refuse("tool_choice", "must be auto, none, required or a function")),
    }
}

/// The chat request for a Responses request (`members`, as the client sent
/// them), for `model`, its cap in `cap_field` (the provider's), `default_cap`
/// when the client set none (the gateway's, which the reservation assumed).
/// `store` and `include` change nothing a chat provider answers (nothing is
/// stored; no reasoning is handed back), and are left out.
pub fn chat_request(members: Map<String, Value>, model: &str, cap_field: &str, default_cap: u64) -> Result<Vec<u8>, GatewayError> {
    let mut out = Map::new();
    let (mut input, mut instructions) = (Value::Null, None);
    for (k, v) in members {
        match k.as_str() {
            "model" => {}
            "stream" | "temperature" | "top_p" | "parallel_tool_calls" | "user" | "safety_identifier" | "prompt_cache_key"
            | "metadata" | "service_tier" => {
                if !v.is_null() {
                    out.insert(k, v);
                }
            }
            "input" => input = v,
            "instructions" => instructions = Some(v),
            "max_output_tokens" if !v.is_null() => {
                out.insert(cap_field.into(), v);
            }
            "reasoning" if !v.is_object() && !v.is_null() => return Err(refuse("reasoning", "must be an object")),
            "reasoning" => match v.get("effort") {
                Some(Value::String(e)) => {
                    out.insert("reasoning_effort".into(), Value::from(e.as_str()));
                }
                None | Some(Value::Null) => {}
                Some(_) => return Err(refuse("reasoning", "effort must be a string")),
            },
            "text" if !v.is_object() && !v.is_null() => return Err(refuse("text", "must be an object")),
            "text" => {
                if let Some(f) = v.get("format").filter(|f| !f.is_null()) {
                    let rf = match f.get("type").and_then(Value::as_str) {
                        Some("text") => None,
                        Some("json_object") => Some(json!({"type": "json_object"})),
                        Some("json_schema") => {
                            let mut s = Map::new();
                            for k in ["name", "schema", "strict", "description"] {
                                if let Some(x) = f.get(k).filter(|x| !x.is_null()) {
                                    s.insert(k.into(), x.clone());
                                }
                            }
                            Some(json!({"type": "json_schema", "json_schema": s}))
                        }
                        _ => return Err(refuse("text", "format must be of type text, json_object or json_schema")),
                    };
                    if let Some(rf) = rf {
                        out.insert("response_format".into(), rf);
                    }
                }
                if let Some(verbosity) = v.get("verbosity").filter(|x| !x.is_null()) {
                    out.insert("verbosity".into(), verbosity.clone());
                }
            }
            "tools" if !v.is_null() => {
                out.insert("tools".into(), tools(&v)?.0);
            }
            "tool_choice" if !v.is_null() => {
                out.insert("tool_choice".into(), tool_choice(&v)?);
            }
            "store" | "include" | "stream_options" | "truncation" | "max_output_tokens" | "tools" | "tool_choice" => {}
            // Cache options mean nothing to another provider (GPT-5.6's `prompt_cache_options`),
            // nor a client's own telemetry ids (`client_metadata`: Codex's
            // installation, session and turn ids, on every request).
            "prompt_cache_retention" | "prompt_cache_options" | "client_metadata" => {}
            other if REFUSED.contains(&other) && v.is_null() => {}
            other => return Err(super::unknown_member(other, REFUSED, TARGET)),
        }
    }
    out.insert("model".into(), Value::from(model));
    out.entry(cap_field).or_insert(Value::from(default_cap));
    let deepseek = super::to_openai::is_deepseek(model);
    let msgs = messages(&input, instructions.as_ref(), deepseek)?;
    if deepseek {
        // DeepSeek thinks unless told not to (its reasoning billed as
        // output): only when the request asked, as for Anthropic clients.
        let asked = out.get("reasoning_effort").and_then(Value::as_str).is_some_and(|e| e != "none");
        let thinks = super::to_openai::deepseek_thinking(&msgs, asked);
        if thinks.get("type").and_then(Value::as_str) != Some("enabled") {
            out.remove("reasoning_effort");
        }
        out.insert("thinking".into(), thinks);
    }
    out.insert("messages".into(), Value::Array(msgs));
    if out.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|_| GatewayError::internal("the translated request could not be written"))
}

/// The Responses API's `usage` for chat's.
fn usage(u: &Value) -> Value {
    let u = crate::usage::usage_from_value(crate::request::Api::OpenAiChat, u.clone()).unwrap_or_default();
    json!({"input_tokens": u.input_tokens, "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
           "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
           "total_tokens": u.input_tokens.saturating_add(u.output_tokens)})
}

/// A reasoning item holding a provider's reasoning text (DeepSeek's
/// `reasoning_content`) as its summary: a client hands it back, and it
/// returns to DeepSeek as `reasoning_content` (see [`messages`]).
pub(super) fn reasoning_item(item_id: &str, text: &str) -> Value {
    json!({"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]})
}

/// A message item (`item_id` whole, `msg_…`).
pub(super) fn message_item(item_id: &str, text: &str, done: bool) -> Value {
    let content = if done { json!([{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]) } else { json!([]) };
    json!({"id": item_id, "type": "message", "status": if done { "completed" } else { "in_progress" }, "content": content, "role": "assistant"})
}

/// A function call item; a flat name of the request's namespaced
/// functions (`names`) as the function and its `namespace`.
pub(super) fn call_item(id: &str, call_id: &Value, name: &Value, args: &str, done: bool, names: Option<&ToolNames>) -> Value {
    let mut item = json!({"id": format!("fc_{id}"), "type": "function_call", "status": if done { "completed" } else { "in_progress" },
           "arguments": args, "call_id": call_id, "name": name});
    if let Some(n) = names {
        n.restore(&mut item);
    }
    item
}

/// The response object around `output`: `finish` is chat's finish reason
/// (`length` makes it `incomplete`), `usage` chat's usage (or null).
pub(super) fn response(id: &str, created: u64, model: &Value, output: Vec<Value>, finish: Option<&str>, u: Option<&Value>, done: bool) -> Value {
    let (status, incomplete) = match (done, finish) {
        (false, _) => ("in_progress", Value::Null),
        (true, Some("length")) => ("incomplete", json!({"reason": "max_output_tokens"})),
        (true, Some("content_filter")) => ("incomplete", json!({"reason": "content_filter"})),
        (true, _) => ("completed", Value::Null),
    };
    // Every member of the recorded response object (tests/captures/openai_response.json):
    // clients that read it strictly find them all. What the request set is
    // not known here; the values are the API's defaults.
    json!({"id": format!("resp_{id}"), "object": "response", "created_at": created, "status": status, "background": false, "error": null,
           "incomplete_details": incomplete, "instructions": null, "max_output_tokens": null, "max_tool_calls": null, "metadata": {},
           "model": model, "output": output, "parallel_tool_calls": true, "previous_response_id": null, "prompt_cache_key": null,
           "reasoning": {"effort": null, "summary": null}, "safety_identifier": null, "service_tier": "default", "store": false,
           "temperature": null, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_logprobs": 0,
           "top_p": null, "truncation": "disabled", "usage": u.filter(|_| done).map(usage).unwrap_or(Value::Null), "user": null})
}

/// The provider's id for a chat completion or chunk, without the
/// `chatcmpl-` a translation to chat put before it (`resp_msg_…` for Claude).
pub(super) fn chat_id(v: &Value) -> String {
    let id = v.get("id").and_then(Value::as_str).unwrap_or("");
    crate::text::clean_field(id.strip_prefix("chatcmpl-").unwrap_or(id), 128)
}

/// The response object for a chat completion body; an error body (the
/// same shape in both APIs) or anything else is passed on (`None`).
/// `names`: the flat names of the request's namespaced functions.
pub fn response_for_chat(body: &[u8], status: u16, names: Option<&ToolNames>) -> Option<Vec<u8>> {
    serde_json::to_vec(&response_for_chat_value(&serde_json::from_slice(body).ok()?, status, names)?).ok()
}

/// The same, on the parsed body (a chain of translations parses once).
pub fn response_for_chat_value(v: &Value, status: u16, names: Option<&ToolNames>) -> Option<Value> {
    if status >= 400 || v.get("object").and_then(Value::as_str) != Some("chat.completion") {
        return None;
    }
    let id = chat_id(v);
    let msg = v.pointer("/choices/0/message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    if let Some(r) = msg.get("reasoning_content").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        output.push(reasoning_item(&format!("rs_{id}_0"), r));
    }
    let text = msg.get("content").and_then(Value::as_str).unwrap_or("");
    if !text.is_empty() {
        output.push(message_item(&format!("msg_{id}_{}", output.len()), text, true));
    }
    if let Some(r) = msg.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        output.push(json!({"id": format!("msg_{id}_refusal"), "type": "message", "status": "completed", "role": "assistant",
                           "content": [{"type": "refusal", "refusal": r}]}));
    }
    for (k, c) in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        output.push(call_item(&format!("{id}_{k}"), c.get("id").unwrap_or(&Value::Null), c.pointer("/function/name").unwrap_or(&Value::Null), args, true, names));
    }
    let created = v.get("created").and_then(Value::as_u64).unwrap_or(0);
    let finish = v.pointer("/choices/0/finish_reason").and_then(Value::as_str);
    Some(response(&id, created, v.get("model").unwrap_or(&Value::Null), output, finish, v.get("usage"), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(v: Value) -> Result<Value, GatewayError> {
        let Value::Object(m) = v else { panic!("an object") };
        chat_request(m, "claude-sonnet-4-6", "max_completion_tokens", 4096).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn a_codex_style_request_becomes_a_chat_request() {
        // The lingua follow-up (functionToolsWithReasoningEffortParam), with instructions and a stream.
        let r = chat(json!({"model": "claude-sonnet-4-6", "instructions": "You are a coding agent.", "stream": true, "store": false,
            "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "medium", "summary": "auto"}, "max_output_tokens": 900,
            // Codex 0.171.0 sends its ids on every request: dropped, nothing reads them.
            "client_metadata": {"x-codex-installation-id": "i", "session_id": "s"},
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Tokyo weather"}]},
                      {"id": "rs_1", "type": "reasoning", "summary": []},
                      {"id": "fc_1", "type": "function_call", "status": "completed", "arguments": "{\"location\":\"Tokyo\"}", "call_id": "call_q", "name": "get_weather"},
                      {"type": "function_call_output", "call_id": "call_q", "output": "71 degrees"}],
            "tools": [{"type": "function", "name": "get_weather", "description": "Get weather", "strict": true, "parameters": {"type": "object"}}],
            "tool_choice": "auto", "parallel_tool_calls": false}))
        .unwrap();
        assert_eq!(r, json!({"model": "claude-sonnet-4-6", "stream": true, "stream_options": {"include_usage": true}, "reasoning_effort": "medium",
            "max_completion_tokens": 900, "tool_choice": "auto", "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get weather", "strict": true, "parameters": {"type": "object"}}}],
            "messages": [{"role": "system", "content": "You are a coding agent."},
                         {"role": "user", "content": "Tokyo weather"},
                         {"role": "assistant", "content": null, "tool_calls": [{"id": "call_q", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Tokyo\"}"}}]},
                         {"role": "tool", "tool_call_id": "call_q", "content": "71 degrees"}]}));
        let r = chat(json!({"input": "hi"})).unwrap();
        assert_eq!((&r["messages"], r["max_completion_tokens"].as_u64()), (&json!([{"role": "user", "content": "hi"}]), Some(4096)));
    }

    /// Codex 0.171.0 offers its sub-agent tools as a namespace (captured
    /// from the CLI pointed at the mock, its web search disabled): a model
    /// of another format sees them flat, and its calls come back under
    /// their namespace, JSON and stream, as the Responses API reports them.
    #[test]
    fn codexs_namespaced_tools_go_flat_and_their_calls_come_back_namespaced() {
        let tools = json!([{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
            {"type": "namespace", "name": "multi_agent_v1", "description": "Tools for spawning and managing sub-agents.",
             "tools": [{"type": "function", "name": "spawn_agent", "description": "Spawn a sub-agent.", "strict": false, "parameters": {"type": "object"}}]}]);
        let r = chat(json!({"input": [{"role": "user", "content": "go"},
                {"type": "function_call", "call_id": "c0", "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c0", "output": "spawned"}],
            "tools": tools})).unwrap();
        let names: Vec<&str> = r["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["exec_command", "multi_agent_v1__spawn_agent"]);
        assert_eq!(r["tools"][1]["function"]["description"], "Tools for spawning and managing sub-agents.\n\nSpawn a sub-agent.");
        assert_eq!(r["messages"][1]["tool_calls"][0]["function"]["name"], "multi_agent_v1__spawn_agent", "a past call under the name it was offered by");
        let n = tool_names(Some(&tools.to_string())).unwrap();
        // The answer: the call of the flat name is the namespace's; the plain function stays plain.
        let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "multi_agent_v1__spawn_agent", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}});
        let out: Value = serde_json::from_slice(&response_for_chat(body.to_string().as_bytes(), 200, Some(&n)).unwrap()).unwrap();
        assert_eq!((out["output"][0]["name"].as_str(), out["output"][0]["namespace"].as_str()), (Some("spawn_agent"), Some("multi_agent_v1")));
        assert_eq!((out["output"][1]["name"].as_str(), out["output"][1].get("namespace")), (Some("exec_command"), None));
        let mut t = super::super::to_responses_stream::ChatToResponses::new(1, Some(std::rc::Rc::new(n)));
        let mut raw = Vec::new();
        for d in [r#"{"id":"a","model":"m","choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"multi_agent_v1__spawn_agent","arguments":"{}"}}]}}]}"#,
                  r#"{"id":"a","choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#, r#"{"id":"a","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#, "[DONE]"] {
            raw.extend(super::super::StreamTranslator::event(&mut t, None, d));
        }
        let ev = super::super::to_responses_stream::tests::events(&raw);
        let items: Vec<&Value> = ev.iter().filter_map(|e| e.get("item")).chain(ev.last().and_then(|e| e.pointer("/response/output/0"))).collect();
        assert_eq!(items.len(), 3, "added, done, and in the completed response");
        for item in items {
            assert_eq!((item["name"].as_str(), item["namespace"].as_str()), (Some("spawn_agent"), Some("multi_agent_v1")), "{item}");
        }
        // Without namespaces there is nothing to carry; a namespace that cannot go flat is refused by name.
        assert_eq!(tool_names(Some(r#"[{"type":"function","name":"f"}]"#)), None);
        let e = chat(json!({"input": "x", "tools": [{"type": "namespace", "name": "crm", "tools": [{"type": "custom", "name": "patch"}]}]})).unwrap_err();
        assert_eq!((e.code, e.param), ("untranslatable_field", Some("tools")));
        let e = chat(json!({"input": [{"type": "function_call", "call_id": "c", "name": "f", "namespace": 7, "arguments": "{}"}]})).unwrap_err();
        assert_eq!(e.param, Some("input"));
    }

    #[test]
    fn deepseek_thinks_when_asked_and_gets_its_reasoning_back() {
        let to = |v: Value| -> Value {
            let Value::Object(m) = v else { panic!("an object") };
            serde_json::from_slice(&chat_request(m, "deepseek-v4", "max_tokens", 4096).unwrap()).unwrap()
        };
        let call = json!({"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"});
        let output = json!({"type": "function_call_output", "call_id": "c1", "output": "21"});
        let thought = json!({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Look it up."}]});
        let r = to(json!({"reasoning": {"effort": "high"}, "input": [{"role": "user", "content": "w?"}, thought, call, output]}));
        assert_eq!((&r["thinking"], &r["reasoning_effort"]), (&json!({"type": "enabled"}), &json!("high")));
        assert_eq!(r["messages"][1]["reasoning_content"], "Look it up.");
        // The loop's reasoning missing (begun on another model): no thinking, rather than DeepSeek's 400.
        let r = to(json!({"reasoning": {"effort": "high"}, "input": [{"role": "user", "content": "w?"}, call, output]}));
        assert_eq!(r["thinking"], json!({"type": "disabled"}));
        assert!(r.get("reasoning_effort").is_none());
        assert_eq!(to(json!({"input": "hi"}))["thinking"], json!({"type": "disabled"}), "not asked");
        // Other models never get reasoning_content.
        let r = chat(json!({"input": [{"role": "user", "content": "w?"}, thought, call, output]})).unwrap();
        assert!(r["messages"][1].get("reasoning_content").is_none() && r.get("thinking").is_none());
        // DeepSeek's reasoning comes back as a reasoning item, streamed and whole.
        let body = json!({"object": "chat.completion", "id": "d", "choices": [{"finish_reason": "stop", "message": {"content": "21.", "reasoning_content": "Sum."}}]});
        let out: Value = serde_json::from_slice(&response_for_chat(body.to_string().as_bytes(), 200, None).unwrap()).unwrap();
        assert_eq!((out["output"][0]["type"].as_str(), out["output"][0]["summary"][0]["text"].as_str()), (Some("reasoning"), Some("Sum.")));
        assert_eq!(out["output"][1]["content"][0]["text"], "21.");
        let mut t = super::super::to_responses_stream::ChatToResponses::new(1, None);
        let mut raw = Vec::new();
        for d in [r#"{"id":"d","choices":[{"delta":{"role":"assistant","reasoning_content":"Su"}}]}"#, r#"{"id":"d","choices":[{"delta":{"reasoning_content":"m."}}]}"#,
                  r#"{"id":"d","choices":[{"delta":{"content":"21."},"finish_reason":"stop"}]}"#, "[DONE]"] {
            raw.extend(super::super::StreamTranslator::event(&mut t, None, d));
        }
        let done = super::super::to_responses_stream::tests::events(&raw).pop().unwrap();
        assert_eq!(done["response"]["output"][0]["summary"][0]["text"], "Sum.");
        assert_eq!(done["response"]["output"][1]["content"][0]["text"], "21.");
    }

    #[test]
    fn the_response_object_has_every_member_of_a_recorded_one() {
        let recorded: Value = serde_json::from_str(include_str!("../../../tests/captures/openai_response.json")).unwrap();
        let body = json!({"object": "chat.completion", "id": "x", "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
        let ours: Value = serde_json::from_slice(&response_for_chat(body.to_string().as_bytes(), 200, None).unwrap()).unwrap();
        let missing: Vec<&String> = recorded.as_object().unwrap().keys().filter(|k| ours.get(k.as_str()).is_none()).collect();
        assert!(missing.is_empty(), "members a strict client would miss: {missing:?}");
        let (r, o) = (&recorded["output"][0], &ours["output"][0]);
        let missing: Vec<&String> = r.as_object().unwrap().keys().filter(|k| o.get(k.as_str()).is_none()).collect();
        assert!(missing.is_empty(), "message item members missing: {missing:?}");
        let missing: Vec<&String> = recorded["usage"].as_object().unwrap().keys().filter(|k| ours["usage"].get(k.as_str()).is_none()).collect();
        assert!(missing.is_empty(), "usage members missing: {missing:?}");
    }

    #[test]
    fn what_needs_the_providers_state_or_has_no_chat_form_is_refused_by_name() {
        for (k, v) in [("previous_response_id", json!("resp_1")), ("conversation", json!("conv_1")), ("background", json!(true)), ("prompt", json!({"id": "p"}))] {
            assert_eq!(chat(json!({"input": "x", k: v})).unwrap_err().param, Some(k), "{k}");
        }
        assert_eq!(chat(json!({"input": "x", "tools": [{"type": "web_search"}]})).unwrap_err().param, Some("tools"));
        assert_eq!(chat(json!({"input": [{"type": "item_reference", "id": "x"}]})).unwrap_err().param, Some("input"));
        assert_eq!(chat(json!({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]})).unwrap_err().param, Some("input"));
        assert_eq!(chat(json!({"input": [{"type": "function_call", "call_id": "c", "name": "w", "arguments": {}}]})).unwrap_err().param, Some("input"));
        assert_eq!(chat(json!({"input": 5})).unwrap_err().param, Some("input"));
        assert_eq!(chat(json!({"input": "x", "weird": 1})).unwrap_err().code, "untranslatable_field");
    }

    #[test]
    fn a_chat_completion_becomes_a_response() {
        let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Let me look.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2}}});
        let r: Value = serde_json::from_slice(&response_for_chat(body.to_string().as_bytes(), 200, None).unwrap()).unwrap();
        assert_eq!((r["object"].as_str(), r["status"].as_str(), r["created_at"].as_u64()), (Some("response"), Some("completed"), Some(5)));
        assert_eq!(r["output"][0]["content"][0]["text"], "Let me look.");
        assert_eq!((r["output"][1]["type"].as_str(), r["output"][1]["call_id"].as_str()), (Some("function_call"), Some("call_1")));
        assert_eq!(r["usage"], json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 4,
                                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14}));
        let cut = json!({"object": "chat.completion", "choices": [{"finish_reason": "length", "message": {"content": "Hel"}}]});
        let r: Value = serde_json::from_slice(&response_for_chat(cut.to_string().as_bytes(), 200, None).unwrap()).unwrap();
        assert_eq!((r["status"].as_str(), r["incomplete_details"]["reason"].as_str()), (Some("incomplete"), Some("max_output_tokens")));
        assert_eq!(response_for_chat(br#"{"error": {"message": "no"}}"#, 400, None), None);
    }
}
