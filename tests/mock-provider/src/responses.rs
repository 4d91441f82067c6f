//! `POST /v1/responses`, OpenAI's Responses API.
//!
//! Sources: the OpenAI API reference, "Create a model response"
//! (platform.openai.com/docs/api-reference/responses/create: the request
//! members below; `max_output_tokens` at least 16), "The response object"
//! and "Streaming events" (platform.openai.com/docs/api-reference/responses-streaming);
//! a live response recorded by openai/openai-python (tests/captures/
//! openai_response.json, whose members this mock's answer carries).
//! Usage is always reported, at the end; a stream ends with
//! `response.completed` (no `[DONE]`).
//!
//! Hosted tools: a request with a `file_search` or `web_search` tool gets
//! its calls as `file_search_call` / `web_search_call` items before the
//! message (openai-python `types/responses/response_file_search_tool_call.py`,
//! `response_function_web_search.py`; the stream's
//! `response.file_search_call.in_progress` / `.searching` / `.completed`
//! events, `response_file_search_call_*_event.py`). OpenAI bills each call
//! apart from the tokens; `x-mock-file-searches` / `x-mock-web-searches`
//! say how many the model ran (default 1 when the tool is there).
//!
//! The image generation tool (`{"type": "image_generation", …}`, checked
//! as images.rs checks a generation) gets its calls as
//! `image_generation_call` items (`result` the image), streamed with
//! `response.image_generation_call.in_progress` / `.generating` /
//! `.partial_image` / `.completed` (openai-python
//! `response_image_gen_call_*_event.py`), and its tokens reported apart
//! in `tool_usage.image_gen` (`types/responses/response.py`, with
//! `web_search.num_requests`); `x-mock-image-calls` says how many calls
//! (default 1), `x-mock-no-tool-usage` leaves `tool_usage` out, as the API
//! may. `tool_usage` is reported whenever a web search or image tool is
//! offered; `x-mock-page-opens` adds web search calls that open a page
//! (`action.type` `open_page`, `response_function_web_search.py`), which
//! are items but no billable searches (`tool_usage.web_search.num_requests`
//! leaves them out, as its documentation says). `x-mock-image-input-tokens`
//! makes each image call read that many input image tokens (an edit of an
//! earlier image, reported in `input_tokens_details.image_tokens`).

use serde_json::{json, Map, Value};

use crate::{count_tokens, output_pieces};

/// (`client_metadata`: the string map Codex sends on every request, its
/// installation, session and turn ids: openai/codex `codex-rs/core`
/// `client_metadata()`; Codex 0.171.0 sent it through this gateway, and
/// the API takes it, Codex being its first-party client.)
const PARAMS: &[&str] = &[
    "background", "client_metadata", "conversation", "include", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata",
    "model", "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
    "reasoning", "safety_identifier", "service_tier", "store", "stream", "stream_options", "temperature", "text",
    "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
];

/// A web search call that opens a page, in `Plan::calls` (its item type is `web_search_call`).
const OPEN_PAGE: &str = "web_search_call/open_page";

/// A refusal: status, message, param, code.
pub type Refusal = (u16, String, Option<&'static str>, Option<&'static str>);

pub struct Plan {
    pub model: String,
    pub stream: bool,
    pub input: u64,
    pub cached: u64,
    /// Input written to the prompt cache, reported as GPT-5.6 and later
    /// report it (`input_tokens_details.cache_write_tokens`, coder/mux#3705;
    /// `x-mock-cache-write-tokens`).
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
    pub incomplete: bool,
    pub store: bool,
    pub previous: Option<String>,
    /// Streams: an `obfuscation` member on each delta event (the default;
    /// `stream_options.include_obfuscation: false` turns it off).
    pub obfuscation: bool,
    /// The tier the answer says served it.
    pub service_tier: &'static str,
    /// The hosted tools the request enables.
    pub hosted: Hosted,
    /// The hosted tool calls the answer lists, in order: their item types.
    pub calls: Vec<&'static str>,
    /// `tool_usage` is reported (the API may leave it out).
    pub tool_usage: bool,
    /// Web search calls that open a page (`x-mock-page-opens`).
    pub page_opens: u64,
    /// Input image tokens each image generation call reads (an edit of an
    /// earlier image: `x-mock-image-input-tokens`).
    pub image_input_tokens: u64,
    /// The request's `instructions`, echoed in every response object
    /// (openai-python `types/responses/response.py`: `instructions`, "A
    /// system (or developer) message inserted into the model's context";
    /// a long system prompt makes every event carrying the object long).
    pub instructions: Value,
    /// `background: true`: answered `queued`, run on (`crate::objects`),
    /// read back by id; only with `store` (the background guide: "requires
    /// store=true").
    pub background: bool,
    /// The request's `metadata`, echoed in every response object.
    pub metadata: Value,
}

/// Which hosted (billed-per-call) tools a request enables.
#[derive(Default, Clone, Copy)]
pub struct Hosted {
    pub file_search: bool,
    pub web_search: bool,
    /// `max_tool_calls`: "the maximum number of total calls to built-in
    /// tools that can be processed in a response" (the API reference).
    pub max_calls: Option<u64>,
    /// The image generation tool: one image's tokens, and its partial images.
    pub image: Option<(u64, u64)>,
    /// The code interpreter containers created for the request (`container:
    /// {"type": "auto"}`), in GB of memory: billed whether the model runs
    /// code or not (community.openai.com, "Responses API: Excessive charges
    /// due to repetitive container creation when using Code Interpreter").
    pub container_gb: u64,
}

impl Plan {
    /// The calls the model runs: as many as asked, of the tools it has.
    pub fn run_tools(&mut self, file_searches: Option<u64>, web_searches: Option<u64>, images: Option<u64>) {
        let mut add = |on: bool, asked: Option<u64>, kind: &'static str| {
            let n = if on { asked.unwrap_or(1).min(1000) } else { 0 };
            self.calls.extend(std::iter::repeat_n(kind, n as usize));
        };
        add(self.hosted.file_search, file_searches, "file_search_call");
        add(self.hosted.web_search, web_searches, "web_search_call");
        add(self.hosted.web_search && self.page_opens > 0, Some(self.page_opens), OPEN_PAGE);
        add(self.hosted.image.is_some(), images, "image_generation_call");
        self.calls.truncate(self.hosted.max_calls.map_or(usize::MAX, |n| n as usize));
    }
}

pub fn text_of(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => items.iter().for_each(|i| text_of(i, out)),
        Value::Object(m) => {
            for k in ["text", "content", "output", "arguments"] {
                if let Some(x) = m.get(k) {
                    text_of(x, out);
                }
            }
        }
        _ => {}
    }
}

/// Checks a request. `wanted`, `reasoning` and `cached` are what the test asked for.
/// `POST /v1/responses/input_tokens` (the API reference, "Get input token
/// counts"; the SDKs' `InputTokenCountParams` and `InputTokenCountResponse`):
/// the members a response takes that shape its input, and the count as
/// `{"object": "response.input_tokens", "input_tokens": n}`. Free.
pub fn count(m: &Map<String, Value>) -> Result<Value, Refusal> {
    const COUNT_PARAMS: &[&str] = &[
        "model", "conversation", "input", "instructions", "parallel_tool_calls", "personality", "previous_response_id", "reasoning",
        "text", "tool_choice", "tools", "truncation",
    ];
    if let Some(k) = m.keys().find(|k| !COUNT_PARAMS.contains(&k.as_str())) {
        return Err((400, format!("Unknown parameter: '{k}'."), None, Some("unknown_parameter")));
    }
    if m.get("model").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err((400, "Missing required parameter: 'model'.".into(), Some("model"), Some("missing_required_parameter")));
    }
    let mut text = String::new();
    for k in ["instructions", "input"] {
        if let Some(v) = m.get(k) {
            text_of(v, &mut text);
        }
    }
    Ok(json!({"object": "response.input_tokens", "input_tokens": count_tokens(&text)}))
}

/// `POST /v1/responses/compact` (the API reference, "Compact a response";
/// openai-python `types/responses/response_compact_params.py` and
/// `compacted_response.py`; Codex's `CompactionInput`, openai/codex
/// `codex-rs/codex-api/src/common.rs`, which also sends `tools`,
/// `parallel_tool_calls`, `reasoning` and `text`): the conversation is
/// compacted into `{"object": "response.compaction", "output": [...the user
/// messages, one compaction item], "usage": {...}}`, billed as a response:
/// the input read, the compaction item written as output (`wanted` tokens).
/// No stream, no output cap. openai-python 3.63 adds `safety_identifier`
/// to the parameters, and to the answer (`safety_identifier`, and the
/// `service_tier` "used for compaction, when reported").
pub fn compact(m: &Map<String, Value>, id: &str, created: u64, wanted: u64) -> Result<(Value, u64, u64), Refusal> {
    const COMPACT_PARAMS: &[&str] = &[
        "model", "image", "input", "instructions", "previous_response_id", "prompt_cache_key", "prompt_cache_options",
        "prompt_cache_retention", "safety_identifier", "service_tier", "tools", "parallel_tool_calls", "reasoning", "text",
    ];
    if let Some(k) = m.keys().find(|k| !COMPACT_PARAMS.contains(&k.as_str())) {
        return Err((400, format!("Unknown parameter: '{k}'."), None, Some("unknown_parameter")));
    }
    if m.get("model").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err((400, "Missing required parameter: 'model'.".into(), Some("model"), Some("missing_required_parameter")));
    }
    tools(m.get("tools"))?;
    let items = match m.get("input") {
        Some(Value::Array(items)) => {
            input(items)?;
            items.clone()
        }
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": s}]})],
        _ => Vec::new(),
    };
    let mut text = String::new();
    for k in ["instructions", "input"] {
        if let Some(v) = m.get(k) {
            text_of(v, &mut text);
        }
    }
    let input_tokens = count_tokens(&text).max(1);
    let mut output: Vec<Value> = items.into_iter().filter(|i| i.get("role").and_then(Value::as_str) == Some("user")).collect();
    output.push(json!({"type": "compaction", "id": format!("cmp_{id}"), "encrypted_content": "gAAAAABmock-compacted"}));
    let usage = json!({"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": wanted, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": input_tokens + wanted});
    let mut doc = json!({"id": format!("cmp_{id}"), "object": "response.compaction", "created_at": created, "output": output, "usage": usage});
    if let Some(s) = m.get("safety_identifier").filter(|s| !s.is_null()) {
        doc["safety_identifier"] = s.clone();
    }
    Ok((doc, input_tokens, wanted))
}

/// A Responses API request checked as OpenAI checks it, and what the mock
/// answers: `wanted` output tokens, `reasoning` of them reasoning, `cached`
/// of the input read from the prompt cache.
pub fn plan(m: &Map<String, Value>, wanted: u64, reasoning: u64, cached: u64) -> Result<Plan, Refusal> {
    let model = model_and_options(m)?;
    let cap = output_cap(m)?;
    let mut hosted = tools(m.get("tools"))?;
    hosted.max_calls = max_tool_calls(m)?;
    if m.get("previous_response_id").is_none_or(Value::is_null) {
        if let Some(Value::Array(items)) = m.get("input") {
            input(items)?;
        }
    }
    if m.get("input").is_none() && m.get("prompt").is_none() && m.get("previous_response_id").is_none() {
        return Err((400, "Missing required parameter: 'input'.".into(), Some("input"), Some("missing_required_parameter")));
    }
    let (previous, store, background) = continuation(m)?;
    let metadata = crate::objects::metadata(m.get("metadata"))?;
    let mut text = String::new();
    for k in ["instructions", "input"] {
        if let Some(v) = m.get(k) {
            text_of(v, &mut text);
        }
    }
    let input = count_tokens(&text).max(1);
    let reasoning = reasoning.min(cap);
    let output = (wanted + reasoning).min(cap);
    Ok(Plan {
        model,
        stream: m.get("stream").and_then(Value::as_bool).unwrap_or(false),
        input: input.max(cached),
        cached,
        cache_write: 0,
        output,
        reasoning,
        incomplete: wanted + reasoning > cap,
        store,
        previous,
        obfuscation: crate::obfuscation_asked(m.get("stream_options")),
        service_tier: "default",
        hosted,
        calls: Vec::new(),
        tool_usage: true,
        page_opens: 0,
        image_input_tokens: 0,
        instructions: m.get("instructions").cloned().unwrap_or(Value::Null),
        background,
        metadata,
    })
}

/// The request's members and model, and the options its model refuses.
fn model_and_options(m: &Map<String, Value>) -> Result<String, Refusal> {
    if let Some(k) = m.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        if k == "max_tokens" || k == "max_completion_tokens" {
            return Err((400, format!("Unsupported parameter: '{k}'. In the Responses API, this parameter has moved to 'max_output_tokens'."), None, Some("unsupported_parameter")));
        }
        return Err((400, format!("Unknown parameter: '{k}'."), None, Some("unknown_parameter")));
    }
    let model = match m.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err((400, "Missing required parameter: 'model'.".into(), Some("model"), Some("missing_required_parameter"))),
    };
    if m.get("reasoning").and_then(|r| r.get("effort")).is_some_and(|e| !e.is_null()) && crate::strict::openai_plain_model(&model) {
        let r = crate::strict::unsupported_parameter("reasoning.effort", "");
        return Err((r.status, r.message, Some("reasoning.effort"), r.code));
    }
    let format = m.get("text").and_then(|t| t.get("format")).filter(|f| f.get("type").and_then(Value::as_str) == Some("json_schema"));
    let strict = format.filter(|f| f.get("strict").and_then(Value::as_bool) == Some(true));
    let name = strict.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("");
    if let Some(msg) = strict.and_then(|f| f.get("schema")).and_then(|schema| crate::strict::strict_schema(name, schema)) {
        return Err((400, msg, None, None));
    }
    // As in chat (crate::strict's notes): a temperature other than 1, a top_p
    // (a real answer for gpt-5-nano, braintrustdata/lingua `topPReasoningModelParam`).
    let effort = m.get("reasoning").and_then(|r| r.get("effort")).and_then(Value::as_str);
    if let Some(r) = crate::strict::openai_sampling(&model, effort, m) {
        return Err((r.status, r.message, r.param.as_deref().and_then(|p| ["temperature", "top_p"].into_iter().find(|k| *k == p)), r.code));
    }
    Ok(model)
}

/// `max_output_tokens` (none: no cap).
fn output_cap(m: &Map<String, Value>) -> Result<u64, Refusal> {
    Ok(match m.get("max_output_tokens") {
        None | Some(Value::Null) => u64::MAX,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 16 => n as u64,
            Some(n) => {
                return Err((
                    400,
                    format!("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {n} instead."),
                    Some("max_output_tokens"),
                    Some("integer_below_min_value"),
                ))
            }
            None => return Err((400, "Invalid type for 'max_output_tokens': expected an integer.".into(), Some("max_output_tokens"), Some("invalid_type"))),
        },
    })
}

/// `max_tool_calls`, a whole number when given.
fn max_tool_calls(m: &Map<String, Value>) -> Result<Option<u64>, Refusal> {
    Ok(match m.get("max_tool_calls") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(n),
            None => return Err((400, "Invalid type for 'max_tool_calls': expected an integer.".into(), Some("max_tool_calls"), Some("invalid_type"))),
        },
    })
}

/// The answer continued (`previous_response_id`), whether it is stored, and
/// whether it runs in the background (which needs it stored).
fn continuation(m: &Map<String, Value>) -> Result<(Option<String>, bool, bool), Refusal> {
    let previous = match m.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.starts_with("resp_") => Some(s.clone()),
        Some(_) => return Err((400, "Invalid 'previous_response_id': expected an ID that begins with 'resp'.".into(), Some("previous_response_id"), Some("invalid_value"))),
    };
    let store = m.get("store").and_then(Value::as_bool).unwrap_or(true);
    let background = match m.get("background") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err((400, "Invalid type for 'background': expected a boolean.".into(), Some("background"), Some("invalid_type"))),
    };
    if background && !store {
        return Err((400, "Background mode requires 'store' to be true.".into(), Some("store"), Some("invalid_value")));
    }
    Ok((previous, store, background))
}

fn missing(param: String) -> Refusal {
    (400, format!("Missing required parameter: '{param}'."), None, Some("missing_required_parameter"))
}

/// Function tools in the Responses API's flat shape: a chat completions
/// tool (`{"type": "function", "function": {…}}`) is refused "Missing
/// required parameter: 'tools[0].name'." (the real answer, quoted by the
/// projects that met it: e.g. a Responses adapter's note "A nested shape
/// 400s with …" and Codex-backend adapters). A `file_search` tool needs
/// its `vector_store_ids` (required in openai-python's `FileSearchToolParam`).
fn tools(v: Option<&Value>) -> Result<Hosted, Refusal> {
    let mut hosted = Hosted::default();
    for (i, t) in v.and_then(Value::as_array).into_iter().flatten().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some("file_search") => {
                if !t.get("vector_store_ids").is_some_and(Value::is_array) {
                    return Err(missing(format!("tools[{i}].vector_store_ids")));
                }
                hosted.file_search = true;
                continue;
            }
            Some(w) if w.starts_with("web_search") => {
                hosted.web_search = true;
                continue;
            }
            Some("image_generation") => {
                hosted.image = Some(crate::images::tool(t)?);
                continue;
            }
            Some("code_interpreter") => {
                hosted.container_gb += container(t, i)?;
                continue;
            }
            _ => continue,
        }
        if !t.get("name").is_some_and(Value::is_string) {
            return Err(missing(format!("tools[{i}].name")));
        }
        if let Some(p) = t.get("parameters").filter(|p| !p.is_null() && !p.is_object()) {
            let got = crate::strict::openai_value_name(p);
            return Err((400, format!("Invalid type for 'tools[{i}].parameters': expected an object, but got {got} instead."), None, Some("invalid_type")));
        }
    }
    Ok(hosted)
}

/// A code interpreter tool's `container` (openai-python
/// `types/responses/tool.py`): a container id, or `{"type": "auto",
/// "memory_limit"?: "1g" | "4g" | "16g" | "64g", "file_ids"?}`; the GB of
/// the one created for the request (0 for an id).
fn container(t: &Value, i: usize) -> Result<u64, Refusal> {
    let param = format!("tools[{i}].container");
    match t.get("container") {
        Some(Value::String(id)) if !id.is_empty() => Ok(0),
        Some(Value::Object(c)) => {
            if c.get("type").and_then(Value::as_str) != Some("auto") {
                return Err((400, format!("Invalid value for '{param}.type': expected 'auto'."), None, Some("invalid_value")));
            }
            match c.get("memory_limit") {
                None | Some(Value::Null) => Ok(1),
                Some(Value::String(m)) if m == "1g" => Ok(1),
                Some(Value::String(m)) if m == "4g" => Ok(4),
                Some(Value::String(m)) if m == "16g" => Ok(16),
                Some(Value::String(m)) if m == "64g" => Ok(64),
                Some(_) => Err((400, format!("Invalid value for '{param}.memory_limit': supported values are: '1g', '4g', '16g' and '64g'."), None, Some("invalid_value"))),
            }
        }
        None | Some(Value::Null) => Err(missing(param)),
        Some(_) => Err((400, format!("Invalid type for '{param}': expected a string or an object."), None, Some("invalid_type"))),
    }
}

const USER_PARTS: &[&str] = &["input_text", "input_image", "input_file", "input_audio"];
const ASSISTANT_PARTS: &[&str] = &["output_text", "refusal"];

/// The input items, as the Responses API reads them in order: messages
/// (a role and a string or parts of the role's kinds), function calls (a
/// `call_id`, `name` and `arguments`) and their outputs, which must follow
/// a call with their `call_id` when no previous response holds it ("No tool
/// call found for function call output with call_id call_….", param
/// `input`: a real answer quoted in Codex session-repair code and batch
/// error reports).
pub fn input(items: &[Value]) -> Result<(), Refusal> {
    let mut calls = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let field = |k: &str| item.get(k).is_some_and(Value::is_string);
        match item.get("type").and_then(Value::as_str) {
            None | Some("message") => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("");
                let kinds = match role {
                    "user" | "system" | "developer" => USER_PARTS,
                    "assistant" => ASSISTANT_PARTS,
                    "" => return Err(missing(format!("input[{i}].role"))),
                    other => {
                        return Err((400, format!("Invalid value: '{other}'. Supported values are: 'assistant', 'system', 'developer', and 'user'."),
                                    None, Some("invalid_value")))
                    }
                };
                match item.get("content") {
                    Some(Value::String(_)) => {}
                    Some(Value::Array(parts)) => {
                        for part in parts {
                            let t = part.get("type").and_then(Value::as_str).unwrap_or("");
                            if !kinds.contains(&t) {
                                let supported = match role {
                                    "assistant" => "'output_text' and 'refusal'",
                                    _ => "'input_text', 'input_image', 'input_file', and 'input_audio'",
                                };
                                return Err((400, format!("Invalid value: '{t}'. Supported values are: {supported}."), None, Some("invalid_value")));
                            }
                        }
                    }
                    _ => return Err(missing(format!("input[{i}].content"))),
                }
            }
            Some("function_call") => {
                for k in ["call_id", "name", "arguments"] {
                    if !field(k) {
                        return Err(missing(format!("input[{i}].{k}")));
                    }
                }
                calls.insert(item.get("call_id").and_then(Value::as_str).unwrap_or("").to_string());
            }
            Some("function_call_output") => {
                if !field("call_id") {
                    return Err(missing(format!("input[{i}].call_id")));
                }
                if item.get("output").is_none_or(Value::is_null) {
                    return Err(missing(format!("input[{i}].output")));
                }
                let id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
                if !calls.contains(id) {
                    return Err((400, format!("No tool call found for function call output with call_id {id}."), None, None));
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn text(p: &Plan) -> String {
    output_pieces(p.output - p.reasoning).concat()
}

fn message(p: &Plan, id: &str, done: bool) -> Value {
    let content = if done { json!([{"type": "output_text", "annotations": [], "logprobs": [], "text": text(p)}]) } else { json!([]) };
    json!({"id": format!("msg_{id}"), "type": "message", "status": if done { "completed" } else { "in_progress" },
           "content": content, "role": "assistant"})
}

/// A hosted tool call's output item (`kind` its item type, `k` its place).
fn call_item(p: &Plan, id: &str, k: usize, kind: &str, done: bool) -> Value {
    let status = if done { "completed" } else { "in_progress" };
    let query = p.model.clone();
    match kind {
        "file_search_call" => json!({"id": format!("fs_{id}_{k}"), "type": kind, "status": status, "queries": [query], "results": null}),
        "image_generation_call" => {
            let status = if done { "completed" } else { "generating" };
            json!({"id": format!("ig_{id}_{k}"), "type": kind, "status": status, "result": if done { json!(crate::images::PNG) } else { Value::Null }})
        }
        OPEN_PAGE => json!({"id": format!("ws_{id}_{k}"), "type": "web_search_call", "status": status, "action": {"type": "open_page", "url": "https://example.com/"}}),
        _ => json!({"id": format!("ws_{id}_{k}"), "type": kind, "status": status, "action": {"type": "search", "query": query}}),
    }
}

/// The answer's output items: its hosted tool calls, then the message.
fn output(p: &Plan, id: &str) -> Value {
    let mut items: Vec<Value> = p.calls.iter().enumerate().map(|(k, kind)| call_item(p, id, k, kind, true)).collect();
    items.push(message(p, id, true));
    Value::Array(items)
}

/// The response object; `usage` and output only once done.
pub fn object(p: &Plan, id: &str, created: u64, done: bool) -> Value {
    let status = if !done { "in_progress" } else if p.incomplete { "incomplete" } else { "completed" };
    let details = if p.cache_write > 0 {
        json!({"cached_tokens": p.cached, "cache_write_tokens": p.cache_write})
    } else {
        json!({"cached_tokens": p.cached})
    };
    let usage = done.then(|| json!({
        "input_tokens": p.input, "input_tokens_details": details,
        "output_tokens": p.output, "output_tokens_details": {"reasoning_tokens": p.reasoning},
        "total_tokens": p.input + p.output}));
    let mut o = json!({"id": format!("resp_{id}"), "object": "response", "created_at": created, "status": status,
           "background": p.background, "error": null,
           "incomplete_details": if done && p.incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
           "instructions": p.instructions, "max_output_tokens": null, "max_tool_calls": p.hosted.max_calls, "model": p.model,
           "output": if done { output(p, id) } else { json!([]) },
           "parallel_tool_calls": true, "previous_response_id": p.previous, "prompt_cache_key": null,
           "reasoning": {"effort": null, "summary": null}, "safety_identifier": null, "service_tier": p.service_tier,
           "store": p.store, "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
           "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
           "usage": usage, "user": null, "metadata": if p.metadata.is_null() { json!({}) } else { p.metadata.clone() }});
    if done && p.tool_usage && (p.hosted.image.is_some() || p.hosted.web_search) {
        o["tool_usage"] = tool_usage(p, p.hosted.image.unwrap_or_default());
    }
    o
}

/// `tool_usage`: the image generation calls' tokens, summed; web searches counted.
fn tool_usage(p: &Plan, (per_image, partials): (u64, u64)) -> Value {
    let calls = p.calls.iter().filter(|k| **k == "image_generation_call").count() as u64;
    let images_in = p.image_input_tokens * calls;
    let input = crate::images::TOOL_PROMPT_TOKENS * calls + images_in;
    let output = (per_image + if p.stream { partials * 100 } else { 0 }) * calls;
    json!({"image_gen": {"input_tokens": input, "input_tokens_details": {"image_tokens": images_in, "text_tokens": input - images_in},
                         "output_tokens": output, "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
                         "total_tokens": input + output},
           "web_search": {"num_requests": p.calls.iter().filter(|k| **k == "web_search_call").count()}})
}

/// The stream's events: (name, data), in order.
pub fn events(p: &Plan, id: &str, created: u64) -> Vec<(String, String)> {
    let mid = format!("msg_{id}");
    let mut ev: Vec<Value> = vec![
        json!({"type": "response.created", "response": object(p, id, created, false)}),
        json!({"type": "response.in_progress", "response": object(p, id, created, false)}),
    ];
    for (k, kind) in p.calls.iter().enumerate() {
        let item = call_item(p, id, k, kind, false);
        let item_id = item["id"].clone();
        ev.push(json!({"type": "response.output_item.added", "output_index": k, "item": item}));
        let image = *kind == "image_generation_call";
        let kind = if *kind == OPEN_PAGE { "web_search_call" } else { kind };
        let phases: &[&str] = if image { &["in_progress", "generating"] } else { &["in_progress", "searching"] };
        for phase in phases {
            ev.push(json!({"type": format!("response.{kind}.{phase}"), "output_index": k, "item_id": item_id}));
        }
        for i in 0..if image { p.hosted.image.map_or(0, |(_, partials)| partials) } else { 0 } {
            ev.push(json!({"type": "response.image_generation_call.partial_image", "output_index": k, "item_id": item_id,
                           "partial_image_index": i, "partial_image_b64": crate::images::PNG}));
        }
        ev.push(json!({"type": format!("response.{kind}.completed"), "output_index": k, "item_id": item_id}));
        ev.push(json!({"type": "response.output_item.done", "output_index": k, "item": call_item(p, id, k, kind, true)}));
    }
    let at = p.calls.len();
    ev.push(json!({"type": "response.output_item.added", "output_index": at, "item": message(p, id, false)}));
    ev.push(json!({"type": "response.content_part.added", "item_id": mid, "output_index": at, "content_index": 0,
               "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}));
    for (k, piece) in (0u64..).zip(output_pieces(p.output - p.reasoning)) {
        let mut d = json!({"type": "response.output_text.delta", "item_id": mid, "output_index": at, "content_index": 0,
                           "delta": piece, "logprobs": []});
        // api.openai.com pads delta events too.
        if p.obfuscation {
            d["obfuscation"] = json!(crate::obfuscation_pad(k));
        }
        ev.push(d);
    }
    ev.push(json!({"type": "response.output_text.done", "item_id": mid, "output_index": at, "content_index": 0,
                   "text": text(p), "logprobs": []}));
    ev.push(json!({"type": "response.output_item.done", "output_index": at, "item": message(p, id, true)}));
    let terminal = if p.incomplete { "response.incomplete" } else { "response.completed" };
    ev.push(json!({"type": terminal, "response": object(p, id, created, true)}));
    ev.into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e["sequence_number"] = json!(i);
            let name = e["type"].as_str().unwrap_or_default().to_string();
            (name, e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
}

#[cfg(test)]
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

#[cfg(test)]
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
