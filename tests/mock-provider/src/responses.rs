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

use crate::count_tokens;

mod written;

pub use written::{events, object};

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

#[cfg(test)]
mod tests;
