//! The server tools a request lets the provider run and bill per call (web
//! and file searches), read so that its reservation holds the most of them
//! the request itself bounds.
//!
//! - Anthropic: a `web_search_*` tool's `max_uses` (platform.claude.com,
//!   web search tool: "max_uses: limit the number of searches per
//!   request").
//! - The Responses API: its hosted `web_search*` and `file_search` tools
//!   run at most `max_tool_calls` calls ("the maximum number of total calls
//!   to built-in tools that can be processed in a response").
//!
//! - Gemini: its grounding tools, `{"googleSearch": {}}` (Gemini 2 and 3;
//!   `google_search` by the proto name, which google-genai's Python SDK
//!   and Google's REST examples send) and `{"googleSearchRetrieval": …}`
//!   (Gemini 1.5), have no bound: the model runs as many queries as it
//!   likes, and Gemini 3 bills each (ai.google.dev/gemini-api/docs/pricing,
//!   "Grounding with Google Search").
//!
//! A search tool offered without a bound reserves one search: an estimate
//! (the model may search more, or not at all), as an advisor without
//! `max_uses` reserves one call; it was none, so a budget near its end let
//! any number of searches start. What runs past it stays in the overshoot
//! bound docs/security.md states.
//!
//! Anthropic's advisor tool (`{"type": "advisor_20260301", "name":
//! "advisor", "model": …, "max_uses"?, "max_tokens"?}`, Claude Code's
//! `/advisor`) is read too: it runs another model whose tokens Anthropic
//! reports apart from the request's usage (`usage.iterations`,
//! `advisor_message`, anthropic-sdk-python
//! `types/beta/beta_advisor_message_iteration_usage.py`; ccusage/ccusage#1115
//! with a real record), so the gateway routes, prices and reserves that
//! model as well ([`crate::route`]).
//!
//! Anthropic runs its server tools in a loop of model calls within the
//! request ("The server-side sampling loop has a default limit of 10
//! iterations", platform.claude.com "How to implement tool use"): each
//! call reads the whole context so far (the answer's `usage` sums them:
//! `usage.iterations`, anthropic-sdk-python
//! `types/beta/beta_iterations_usage.py`; a real stream in
//! tests/captures/anthropic_stream_web_search.sse reads 2,679 input tokens
//! in `message_start` and reports 10,682 at its end) and may write
//! `max_tokens` ("The limit applies to each call to the requested model. A
//! request that uses server tools can call the model more than once, so
//! `usage.output_tokens` can exceed `max_tokens`", anthropic-sdk-python
//! 2.17 `resources/messages/messages.py`). So the reservation holds as many
//! calls as the request bounds ([`sampling_calls`]): one more than its
//! server tools' `max_uses`, at most the loop's ten. A server tool without
//! a bound counts one use, an estimate, as a search tool without one
//! reserves one search.
//!
//! So is the Responses API's image generation tool (`{"type":
//! "image_generation", "model"?, "quality"?, "size"?, "partial_images"?,
//! …}`, openai-python `types/responses/tool.py`, `gpt-image-2.6-sunburst`
//! when it names no model): the model calls a GPT image model, whose tokens the
//! answer reports apart from the request's (`tool_usage.image_gen`,
//! `types/responses/response.py`), billed at the image model's rates. It
//! is routed, priced and reserved as the advisor is: one image at the
//! tool's quality and size a call, `max_tool_calls` calls or one.

use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// What a request's `tools` member says of its server tools.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServerTools {
    /// The sum of the Anthropic web search tools' `max_uses`.
    pub max_uses: u64,
    /// A hosted search tool of the Responses API is offered.
    pub hosted_search: bool,
    /// An Anthropic web search tool without `max_uses` is offered.
    pub unbounded_search: bool,
    /// Gemini's grounding with Google Search is offered (or a tools list
    /// that cannot be read may offer it).
    pub grounding: bool,
    /// An Anthropic advisor tool, as offered.
    pub advisor: Option<Advisor>,
    /// The Responses API's image generation tool, as offered.
    pub image_tool: Option<ImageTool>,
    /// The GB of memory of the code interpreter containers the Responses
    /// API's `code_interpreter` tools have the provider create
    /// ([`container_gb`]); each is billed, run or not.
    pub container_gb: u64,
    /// Anthropic tools the provider runs in its sampling loop
    /// ([`LOOP_TOOLS`]) are offered: the sum of their `max_uses` (one for
    /// a tool without a bound: an estimate).
    pub loop_uses: Option<u64>,
}

/// Anthropic's tools that run on its side, within the request's sampling
/// loop (platform.claude.com, "Server tools"; anthropic-sdk-python 2.17
/// tool types): web search and fetch (bounded by `max_uses`), code
/// execution, tool search, the advisor (the executor writes again after
/// each advice; bounded by its `max_uses`) and the MCP connector's
/// toolsets (no bound). Client tools (`bash_*`, `text_editor_*`,
/// `computer_*`, `memory_*`, custom) end the turn instead.
const LOOP_TOOLS: &[&str] = &["web_search_", "web_fetch_", "code_execution_", "tool_search_tool_", "advisor_", "mcp_toolset"];

/// The loop's limit: "The server-side sampling loop has a default limit of
/// 10 iterations" (then the answer stops with `pause_turn`).
pub const SAMPLING_LOOP_LIMIT: u64 = 10;

/// The model calls an Anthropic request's reservation holds: one, or with
/// server tools one more than their uses (each may be a call of its own),
/// at most [`SAMPLING_LOOP_LIMIT`].
pub fn sampling_calls(api: tollgate_protocol::Api, tools: &ServerTools) -> u64 {
    match tools.loop_uses {
        Some(uses) if api == tollgate_protocol::Api::AnthropicMessages => uses.saturating_add(1).min(SAMPLING_LOOP_LIMIT),
        _ => 1,
    }
}

/// The Responses API's image generation tool: the image model it runs
/// and what one image asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageTool {
    Offered { model: String, ask: super::images::ImageAsk },
    /// Offered in a form the gateway cannot price (a model that is not a
    /// string, a quality or size no model makes, two such tools): refused, with why.
    Unreadable(&'static str),
}

/// The image model the tool runs when it names none (openai-python 3.57
/// `types/responses/tool.py`: "Default: `gpt-image-2.6-sunburst`";
/// `gpt-image-1`, the default before, "was shut down on October 23, 2026").
pub const DEFAULT_IMAGE_TOOL_MODEL: &str = "gpt-image-2.6-sunburst";

fn image_tool_of(tool: &Head<'_>) -> ImageTool {
    let model = match &tool.model {
        None | Some(Value::Null) => DEFAULT_IMAGE_TOOL_MODEL.to_string(),
        Some(Value::String(m)) => m.clone(),
        Some(_) => return ImageTool::Unreadable("The image_generation tool's model must be a string."),
    };
    let mut ask = super::images::ImageAsk::default();
    let raw = |v: &Option<Value>| v.as_ref().map_or_else(|| "null".to_string(), Value::to_string);
    let read = ask
        .quality(&raw(&tool.quality))
        .and_then(|()| ask.size(&raw(&tool.size)))
        .and_then(|()| ask.partial_images(&raw(&tool.partial_images)));
    match read {
        Ok(()) => ImageTool::Offered { model, ask },
        Err(_) => ImageTool::Unreadable("The image_generation tool's quality, size and partial_images must be ones a GPT image model takes."),
    }
}

/// Anthropic's advisor tool: the model it runs and what bounds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advisor {
    /// `model` as sent; `max_uses` (calls in this request) and
    /// `max_tokens` (each call's output, thinking included) when given.
    Offered { model: String, max_uses: Option<u64>, max_tokens: Option<u64> },
    /// Offered in a form the gateway cannot hold to a model and a bound
    /// (no model string, a bound that is not a whole number, two advisor
    /// tools): refused, with why.
    Unreadable(&'static str),
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    max_uses: Option<Value>,
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    max_tokens: Option<Value>,
    #[serde(default)]
    quality: Option<Value>,
    #[serde(default)]
    size: Option<Value>,
    #[serde(default)]
    partial_images: Option<Value>,
    #[serde(default)]
    container: Option<Value>,
}

/// The GB of memory of the container a `code_interpreter` tool has the
/// provider create: `{"type": "auto", "memory_limit"?: "1g" | "4g" |
/// "16g" | "64g"}` (1 GB when it names none: openai-python
/// `types/responses/tool.py`, `CodeInterpreterContainerCodeInterpreterToolAuto`);
/// a container's id (one made before, or by the Containers API) creates
/// none. A limit no container has counts as the largest (the provider
/// refuses it).
fn container_gb(container: &Option<Value>) -> u64 {
    match container {
        Some(Value::Object(c)) => match c.get("memory_limit") {
            None | Some(Value::Null) => 1,
            Some(Value::String(m)) => match m.as_str() {
                "1g" => 1,
                "4g" => 4,
                "16g" => 16,
                _ => 64,
            },
            Some(_) => 64,
        },
        _ => 0,
    }
}

/// A bound: absent or null is none; a whole number is it; anything else
/// cannot be read (`Err`).
fn bound(v: &Option<Value>) -> Result<Option<u64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(()),
    }
}

fn advisor_of(tool: &Head<'_>) -> Advisor {
    let Some(Value::String(model)) = &tool.model else {
        return Advisor::Unreadable("The advisor tool must name its model (a string).");
    };
    match (bound(&tool.max_uses), bound(&tool.max_tokens)) {
        (Ok(max_uses), Ok(max_tokens)) => Advisor::Offered { model: model.clone(), max_uses, max_tokens },
        _ => Advisor::Unreadable("The advisor tool's max_uses and max_tokens must be whole numbers."),
    }
}

/// Reads `tools` (its raw JSON). A member the provider would refuse (not
/// an array, odd entries) bounds no search; an advisor in it is still
/// seen, so that it cannot run unpriced. A tool that names a field this
/// reads twice (`type`, `max_uses`, …) is `Err` (the field): the provider
/// takes one of them, which this read could not tell, so its searches and
/// calls could run unreserved.
pub fn read(raw: &str) -> Result<ServerTools, String> {
    // Most tools are functions: the whole array is parsed only when a
    // search or advisor tool may be in it (or a `\u` escape may spell one:
    // not any backslash, which every description with a newline holds).
    let may_loop = ["_search", "_fetch", "code_execution", "mcp_toolset"].iter().any(|k| raw.contains(k));
    if !may_loop && !raw.contains("advisor") && !raw.contains("image_generation") && !raw.contains("code_interpreter") && !raw.contains("\\u") {
        return Ok(ServerTools::default());
    }
    let tools = match serde_json::from_str::<Vec<Head<'_>>>(raw) {
        Ok(tools) => tools,
        Err(e) if e.to_string().starts_with("duplicate field") => return Err(e.to_string()),
        Err(_) => return Ok(unreadable(raw)),
    };
    Ok(tools.iter().fold(ServerTools::default(), |mut t, tool| {
        let kind = tool.kind.as_deref().unwrap_or_default();
        if kind.starts_with("web_search_") {
            match bound(&tool.max_uses).ok().flatten() {
                Some(n) => t.max_uses = t.max_uses.saturating_add(n),
                None => t.unbounded_search = true,
            }
        }
        if kind.starts_with("web_search") || kind == "file_search" {
            t.hosted_search = true;
        }
        if LOOP_TOOLS.iter().any(|p| kind.starts_with(p)) {
            let bounded = kind.starts_with("web_") || kind.starts_with("advisor_");
            let uses = bound(&tool.max_uses).ok().flatten().filter(|_| bounded).unwrap_or(1);
            t.loop_uses = Some(t.loop_uses.unwrap_or(0).saturating_add(uses));
        }
        if kind == "code_interpreter" {
            t.container_gb = t.container_gb.saturating_add(container_gb(&tool.container));
        }
        if kind == "image_generation" {
            t.image_tool = Some(match t.image_tool {
                None => image_tool_of(tool),
                Some(_) => ImageTool::Unreadable("Only one image_generation tool may be offered."),
            });
        }
        if kind.starts_with("advisor_") {
            t.advisor = Some(match t.advisor {
                None => advisor_of(tool),
                Some(_) => Advisor::Unreadable("Only one advisor tool may be offered."),
            });
        }
        t
    }))
}

/// A tools list that cannot be read (the provider refuses it): the
/// advisor and image tools it may offer are unreadable, never absent, and
/// the largest container it may create is reserved.
fn unreadable(raw: &str) -> ServerTools {
    let advisor = raw.contains("advisor").then_some(Advisor::Unreadable("The tools list could not be read, and it may offer the advisor tool."));
    let image_tool = raw
        .contains("image_generation")
        .then_some(ImageTool::Unreadable("The tools list could not be read, and it may offer the image_generation tool."));
    let container_gb = if raw.contains("code_interpreter") { 64 } else { 0 };
    ServerTools { advisor, image_tool, container_gb, ..ServerTools::default() }
}

/// One of Gemini's `tools` entries, as far as grounding goes. A member
/// that is null is not offered (protobuf's JSON mapping reads null as
/// unset); both spellings of one in an entry fail the read.
#[derive(Deserialize)]
struct GeminiTool {
    #[serde(rename = "googleSearch", alias = "google_search", default)]
    search: Option<serde::de::IgnoredAny>,
    #[serde(rename = "googleSearchRetrieval", alias = "google_search_retrieval", default)]
    retrieval: Option<serde::de::IgnoredAny>,
}

/// Reads a Gemini request's `tools` (its raw JSON) for grounding. A list
/// that cannot be read but may name it (or may spell it with escapes) is
/// read as offering it: one search reserved too many is released when the
/// answer is priced, one too few could run unheld.
pub fn read_gemini(raw: &str) -> ServerTools {
    let may_offer = raw.contains("oogle") || raw.contains("\\u");
    if !may_offer {
        return ServerTools::default();
    }
    let grounding = match serde_json::from_str::<Vec<GeminiTool>>(raw) {
        Ok(tools) => tools.iter().any(|t| t.search.is_some() || t.retrieval.is_some()),
        Err(_) => true,
    };
    ServerTools { grounding, ..ServerTools::default() }
}

/// The searches a request's reservation holds: Anthropic's `max_uses`
/// (one more for a search tool without it); the Responses API's
/// `max_tool_calls` when a hosted search tool is offered (one without it);
/// one for Gemini's grounding (one query, or under `web_search_unit:
/// "prompt"` the one grounded prompt).
pub fn reserved(api: tollgate_protocol::Api, tools: &ServerTools, max_tool_calls: Option<u64>) -> u64 {
    let n = match api {
        tollgate_protocol::Api::AnthropicMessages => tools.max_uses.saturating_add(u64::from(tools.unbounded_search)),
        tollgate_protocol::Api::OpenAiResponses if tools.hosted_search => max_tool_calls.unwrap_or(1),
        tollgate_protocol::Api::GeminiGenerateContent => u64::from(tools.grounding),
        _ => 0,
    };
    n.min(tollgate_protocol::usage::MAX_COUNT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_protocol::Api;

    /// A list whose tools name no field twice.
    fn read(raw: &str) -> ServerTools {
        super::read(raw).unwrap()
    }

    /// A tool naming a field twice: the provider takes one of them, which
    /// the read cannot tell, so its searches and calls would go unreserved.
    #[test]
    fn a_tool_naming_a_field_twice_is_not_read_as_no_server_tool() {
        for twice in [
            r#"[{"type":"web_search_20250305","name":"web_search","max_uses":5,"max_uses":5}]"#,
            r#"[{"type":"function","type":"web_search_20250305","name":"web_search","max_uses":5}]"#,
            r#"[{"type":"web_search_1","max_uses":1,"max_uses":100}]"#,
            r#"[{"type":"advisor_20260301","name":"advisor","model":"claude-opus-4-8","model":"claude-haiku-4-5"}]"#,
        ] {
            assert!(super::read(twice).is_err_and(|e| e.starts_with("duplicate field")), "{twice}");
        }
        // Fields the read does not use may repeat (the provider decides), and
        // a list that cannot be read otherwise stays the provider's to refuse.
        assert!(super::read(r#"[{"type":"web_search_20250305","name":"a","name":"b","max_uses":1}]"#).is_ok());
        assert_eq!(read(r#"[7, {"type":"web_search_20250305","name":"web_search","max_uses":5}]"#), ServerTools::default());
    }

    #[test]
    fn a_code_interpreter_creates_the_container_its_auto_form_names() {
        let gb = |raw: &str| read(raw).container_gb;
        assert_eq!(gb(r#"[{"type":"code_interpreter","container":{"type":"auto"}}]"#), 1);
        assert_eq!(gb(r#"[{"type":"code_interpreter","container":{"type":"auto","memory_limit":"4g","file_ids":["file-1"]}}]"#), 4);
        assert_eq!(gb(r#"[{"type":"code_interpreter","container":{"type":"auto","memory_limit":"16g"}},{"type":"function","name":"f"}]"#), 16);
        assert_eq!(gb(r#"[{"type":"code_interpreter","container":{"type":"auto","memory_limit":null}}]"#), 1);
        // An existing container: none created.
        assert_eq!(gb(r#"[{"type":"code_interpreter","container":"cntr_abc"}]"#), 0);
        // A limit no container has, or unreadable tools that may offer it: the largest.
        assert_eq!(gb(r#"[{"type":"code_interpreter","container":{"type":"auto","memory_limit":"2g"}}]"#), 64);
        assert_eq!(gb(r#"[{"type":"code_interpreter","container":{"type":"auto","memory_limit":4}}]"#), 64);
        assert_eq!(gb(r#"[{"type":"code_interpreter","container":{"type":"auto"}}, 7]"#), 64);
        // Escaped, it is still read.
        assert_eq!(gb(r#"[{"type":"code\u005finterpreter","container":{"type":"auto"}}]"#), 1);
        assert_eq!(gb(r#"[{"type":"function","name":"code_interpreter_like"}]"#), 0);
    }

    #[test]
    fn anthropic_web_searches_are_bounded_by_max_uses() {
        let t = read(r#"[{"name":"get_weather","input_schema":{"type":"object"}},
            {"type":"web_search_20250305","name":"web_search","max_uses":5},
            {"type":"web_search_20260209","name":"web_search_2","max_uses":3,"allowed_domains":["x.com"]},
            {"type":"web_fetch_20250910","name":"web_fetch","max_uses":9}]"#);
        assert_eq!(reserved(Api::AnthropicMessages, &t, None), 8, "web fetches bill no fee");
        // unbounded: one search reserved (an estimate), beside the bounded ones
        let t = read(r#"[{"type":"web_search_20250305","name":"web_search"}]"#);
        assert_eq!(reserved(Api::AnthropicMessages, &t, None), 1);
        let t = read(r#"[{"type":"web_search_20250305","name":"web_search","max_uses":null},{"type":"web_search_20260209","name":"w2","max_uses":4}]"#);
        assert_eq!(reserved(Api::AnthropicMessages, &t, None), 5);
        assert_eq!(reserved(Api::AnthropicMessages, &read(r#"[{"type":"web_fetch_20250910","name":"web_fetch"}]"#), None), 0, "a fetch bills no fee");
        // escaped type names are read as well
        let t = read(r#"[{"type":"web\u005fsearch_20250305","name":"web_search","max_uses":2}]"#);
        assert_eq!(reserved(Api::AnthropicMessages, &t, None), 2);
    }

    #[test]
    fn anthropics_server_tool_loop_is_held_for_each_call_it_may_make() {
        let calls = |raw: &str| sampling_calls(Api::AnthropicMessages, &read(raw));
        assert_eq!(calls(r#"[{"name":"get_weather","input_schema":{"type":"object"}},{"type":"bash_20250124","name":"bash"}]"#), 1, "client tools end the turn");
        assert_eq!(calls("[]"), 1);
        assert_eq!(calls(r#"[{"type":"web_search_20250305","name":"web_search","max_uses":2}]"#), 3, "two searches, then the answer");
        let both = r#"[{"type":"web_search_20260209","name":"web_search","max_uses":2},{"type":"web_fetch_20250910","name":"web_fetch","max_uses":3}]"#;
        assert_eq!(calls(both), 6);
        assert_eq!(calls(r#"[{"type":"web_search_20250305","name":"web_search","max_uses":50}]"#), SAMPLING_LOOP_LIMIT, "the loop stops at ten");
        assert_eq!(calls(r#"[{"type":"web_search_20250305","name":"web_search","max_uses":0}]"#), 1, "no use: one call");
        // A tool without a bound: one use, an estimate.
        for unbounded in [
            r#"[{"type":"web_search_20250305","name":"web_search"}]"#,
            r#"[{"type":"web_fetch_20260318","name":"web_fetch","max_uses":null}]"#,
            r#"[{"type":"code_execution_20250825","name":"code_execution"}]"#,
            r#"[{"type":"tool_search_tool_regex_20251119","name":"tool_search_tool_regex"}]"#,
            r#"[{"type":"mcp_toolset","mcp_server_name":"docs"}]"#,
            r#"[{"type":"web\u005ffetch_20250910","name":"web_fetch"}]"#,
        ] {
            assert_eq!(calls(unbounded), 2, "{unbounded}");
        }
        let mixed = r#"[{"type":"web_search_20250305","name":"web_search","max_uses":3},{"type":"code_execution_20260120","name":"code_execution","max_uses":9}]"#;
        assert_eq!(calls(mixed), 5, "code execution takes no max_uses: one, beside the three searches");
        assert_eq!(calls(r#"[{"type":"advisor_20260301","name":"advisor","model":"claude-opus-4-8","max_uses":2}]"#), 3, "the executor writes again after each advice");
        assert_eq!(sampling_calls(Api::OpenAiResponses, &read(r#"[{"type":"web_search"}]"#)), 1, "Anthropic's loop only");
    }

    #[test]
    fn hosted_searches_are_bounded_by_max_tool_calls() {
        for tools in [r#"[{"type":"web_search"}]"#, r#"[{"type":"web_search_preview"}]"#, r#"[{"type":"file_search","vector_store_ids":["vs_1"]}]"#] {
            assert_eq!(reserved(Api::OpenAiResponses, &read(tools), Some(4)), 4, "{tools}");
            assert_eq!(reserved(Api::OpenAiResponses, &read(tools), None), 1, "unbounded, one estimated: {tools}");
        }
        let functions = read(r#"[{"type":"function","name":"web_search_like","parameters":{}}]"#);
        assert_eq!(reserved(Api::OpenAiResponses, &functions, Some(4)), 0, "a function of that name is the client's");
        assert_eq!(reserved(Api::OpenAiChat, &read(r#"[{"type":"web_search_20250305","max_uses":5}]"#), Some(4)), 0);
    }

    /// Google's REST examples send `google_search` (the proto name),
    /// google-genai's TypeScript SDK `googleSearch`; Gemini 1.5 took
    /// `google_search_retrieval` with a dynamic retrieval config.
    #[test]
    fn geminis_grounding_reserves_one_search_however_it_is_spelled() {
        let g = |raw: &str| reserved(Api::GeminiGenerateContent, &read_gemini(raw), None);
        for offered in [
            r#"[{"google_search":{}}]"#,
            r#"[{"googleSearch":{}}]"#,
            r#"[{"functionDeclarations":[{"name":"f"}]},{"googleSearch":{"timeRangeFilter":{}}}]"#,
            r#"[{"google_search_retrieval":{"dynamic_retrieval_config":{"mode":"MODE_DYNAMIC","dynamic_threshold":0.7}}}]"#,
            r#"[{"googleSearchRetrieval":{}}]"#,
            r#"[{"google_search":{}}]"#,
            r#"[{"googleSearch":{},"google_search":{}}]"#,
            r#"[{"googleSearch":{}}"#,
            r#"{"googleSearch":{}}"#,
        ] {
            assert_eq!(g(offered), 1, "{offered}");
        }
        for not_offered in [
            r#"[{"functionDeclarations":[{"name":"search","description":"Search the docs"}]}]"#,
            r#"[{"codeExecution":{}},{"urlContext":{}}]"#,
            r#"[{"googleSearch":null}]"#,
            r#"[]"#,
            "null",
        ] {
            assert_eq!(g(not_offered), 0, "{not_offered}");
        }
        // a function named so is the client's
        assert_eq!(g(r#"[{"functionDeclarations":[{"name":"googleSearch"}]}]"#), 0);
        // other APIs do not read Gemini's tools
        assert_eq!(reserved(Api::OpenAiChat, &read_gemini(r#"[{"googleSearch":{}}]"#), None), 0);
    }

    #[test]
    fn an_advisor_tool_is_read_however_it_is_spelled() {
        let offered = |model: &str, max_uses, max_tokens| Some(Advisor::Offered { model: model.into(), max_uses, max_tokens });
        let t = read(r#"[{"type":"advisor_20260301","name":"advisor","model":"claude-opus-4-7"}]"#);
        assert_eq!(t.advisor, offered("claude-opus-4-7", None, None), "Claude Code's form: no bounds");
        let t = read(r#"[{"name":"f","input_schema":{}},{"type":"advisor_20260301","name":"advisor","model":"claude-opus-4-8","max_uses":3,"max_tokens":2048,"caching":{"type":"ephemeral"}}]"#);
        assert_eq!(t.advisor, offered("claude-opus-4-8", Some(3), Some(2048)));
        assert_eq!(read(r#"[{"type":"\u0061dvisor_20260301","name":"a","model":"m","max_uses":null}]"#).advisor, offered("m", None, None), "an escaped type");
        assert!(read(r#"[{"type":"web\u005fsearch_20250305","name":"w","max_uses":2}]"#).max_uses == 2, "an escaped search, named otherwise");
        assert_eq!(read(r#"[{"type":"custom","name":"advisor","input_schema":{}}]"#).advisor, None, "a client tool of that name is the client's");
    }

    /// An advisor the gateway cannot hold to a model and a bound is never
    /// read as no advisor: it would run unpriced.
    #[test]
    fn an_advisor_that_cannot_be_read_is_unreadable_not_absent() {
        for raw in [
            r#"[{"type":"advisor_20260301","name":"advisor"}]"#,
            r#"[{"type":"advisor_20260301","name":"advisor","model":7}]"#,
            r#"[{"type":"advisor_20260301","name":"advisor","model":"m","max_uses":-1}]"#,
            r#"[{"type":"advisor_20260301","name":"advisor","model":"m","max_tokens":1.5}]"#,
            r#"[{"type":"advisor_20260301","name":"advisor","model":"m","max_uses":"3"}]"#,
            r#"[{"type":"advisor_20260301","model":"m"},{"type":"advisor_20260301","model":"n"}]"#,
            r#"[{"type":"advisor_20260301","name":"advisor","model":"m"}"#,
        ] {
            assert!(matches!(read(raw).advisor, Some(Advisor::Unreadable(_))), "{raw}");
        }
    }

    #[test]
    fn hostile_tools_bound_nothing_and_never_fail() {
        for raw in ["{}", "null", "[1,2]", r#"[{"type":"web_search_20250305","max_uses":-1}]"#, r#"[{"type":"web_search_1","max_uses":1e999}]"#,
            "[", r#""_search""#, r#"[{"type":"web_search_1","max_uses":2.5}]"#] {
            let t = read(raw);
            assert_eq!((t.max_uses, t.advisor), (0, None), "{raw}");
        }
        let huge = read(r#"[{"type":"web_search_1","max_uses":18446744073709551615},{"type":"web_search_2","max_uses":18446744073709551615}]"#);
        assert_eq!(reserved(Api::AnthropicMessages, &huge, None), tollgate_protocol::usage::MAX_COUNT);
    }
}
