//! The server tools a request lets the provider run and bill per call (web
//! and file searches), read so that its reservation holds the most of them
//! the request itself bounds.
//!
//! - Anthropic: a `web_search_*` tool's `max_uses` (platform.claude.com,
//!   web search tool: "max_uses: limit the number of searches per
//!   request"). Without it the searches are unbounded and none is reserved.
//! - The Responses API: its hosted `web_search*` and `file_search` tools
//!   run at most `max_tool_calls` calls ("the maximum number of total calls
//!   to built-in tools that can be processed in a response").
//!
//! Unbounded searches stay in the overshoot bound docs/security.md states.
//!
//! Anthropic's advisor tool (`advisor_*`, `"model": …`) is noted too: it
//! runs another model whose tokens Anthropic reports apart from the
//! request's usage (`usage.iterations`, `advisor_message`: "billed under
//! their own model but absent from the top-level counters", anthropic-sdk
//! `types/beta/beta_iterations_usage.py`; ccusage/ccusage#1115 with a real
//! record), so the gateway refuses it ([`crate::route`]).

use serde::Deserialize;
use std::borrow::Cow;

/// What a request's `tools` member says of its server tools.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerTools {
    /// The sum of the Anthropic web search tools' `max_uses`.
    pub max_uses: u64,
    /// A hosted search tool of the Responses API is offered.
    pub hosted_search: bool,
    /// An Anthropic advisor tool is offered.
    pub advisor: bool,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    max_uses: Option<u64>,
}

/// Reads `tools` (its raw JSON). A member the provider would refuse (not
/// an array, odd entries) bounds nothing: it is read as no server tool.
pub fn read(raw: &str) -> ServerTools {
    // Most tools are functions: the whole array is parsed only when a
    // search or advisor tool may be in it (or a `\u` escape may spell one:
    // not any backslash, which every description with a newline holds).
    if !raw.contains("_search") && !raw.contains("advisor") && !raw.contains("\\u") {
        return ServerTools::default();
    }
    let Ok(tools) = serde_json::from_str::<Vec<Head<'_>>>(raw) else {
        return ServerTools::default();
    };
    tools.iter().fold(ServerTools::default(), |mut t, tool| {
        let kind = tool.kind.as_deref().unwrap_or_default();
        if kind.starts_with("web_search_") {
            t.max_uses = t.max_uses.saturating_add(tool.max_uses.unwrap_or(0));
        }
        if kind.starts_with("web_search") || kind == "file_search" {
            t.hosted_search = true;
        }
        t.advisor |= kind.starts_with("advisor_");
        t
    })
}

/// The searches a request's reservation holds: Anthropic's `max_uses`;
/// the Responses API's `max_tool_calls` when a hosted search tool is offered.
pub fn reserved(api: tollgate_protocol::Api, tools: ServerTools, max_tool_calls: Option<u64>) -> u64 {
    let n = match api {
        tollgate_protocol::Api::AnthropicMessages => tools.max_uses,
        tollgate_protocol::Api::OpenAiResponses if tools.hosted_search => max_tool_calls.unwrap_or(0),
        _ => 0,
    };
    n.min(tollgate_protocol::usage::MAX_COUNT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_protocol::Api;

    #[test]
    fn anthropic_web_searches_are_bounded_by_max_uses() {
        let t = read(r#"[{"name":"get_weather","input_schema":{"type":"object"}},
            {"type":"web_search_20250305","name":"web_search","max_uses":5},
            {"type":"web_search_20260209","name":"web_search_2","max_uses":3,"allowed_domains":["x.com"]},
            {"type":"web_fetch_20250910","name":"web_fetch","max_uses":9}]"#);
        assert_eq!(reserved(Api::AnthropicMessages, t, None), 8, "web fetches bill no fee");
        // unbounded: none reserved
        let t = read(r#"[{"type":"web_search_20250305","name":"web_search"}]"#);
        assert_eq!(reserved(Api::AnthropicMessages, t, None), 0);
        // escaped type names are read as well
        let t = read(r#"[{"type":"web\u005fsearch_20250305","name":"web_search","max_uses":2}]"#);
        assert_eq!(reserved(Api::AnthropicMessages, t, None), 2);
    }

    #[test]
    fn hosted_searches_are_bounded_by_max_tool_calls() {
        for tools in [r#"[{"type":"web_search"}]"#, r#"[{"type":"web_search_preview"}]"#, r#"[{"type":"file_search","vector_store_ids":["vs_1"]}]"#] {
            assert_eq!(reserved(Api::OpenAiResponses, read(tools), Some(4)), 4, "{tools}");
            assert_eq!(reserved(Api::OpenAiResponses, read(tools), None), 0, "unbounded: {tools}");
        }
        let functions = read(r#"[{"type":"function","name":"web_search_like","parameters":{}}]"#);
        assert_eq!(reserved(Api::OpenAiResponses, functions, Some(4)), 0, "a function of that name is the client's");
        assert_eq!(reserved(Api::OpenAiChat, read(r#"[{"type":"web_search_20250305","max_uses":5}]"#), Some(4)), 0);
    }

    #[test]
    fn an_advisor_tool_is_seen_however_it_is_spelled() {
        let t = read(r#"[{"type":"advisor_20260301","name":"advisor","model":"claude-opus-4-7"}]"#);
        assert!(t.advisor);
        assert!(read(r#"[{"type":"\u0061dvisor_20260301","name":"a","model":"m"}]"#).advisor, "an escaped type");
        assert!(read(r#"[{"type":"web\u005fsearch_20250305","name":"w","max_uses":2}]"#).max_uses == 2, "an escaped search, named otherwise");
        assert!(!read(r#"[{"type":"custom","name":"advisor","input_schema":{}}]"#).advisor, "a client tool of that name is the client's");
    }

    #[test]
    fn hostile_tools_bound_nothing_and_never_fail() {
        for raw in ["{}", "null", "[1,2]", r#"[{"type":"web_search_20250305","max_uses":-1}]"#, r#"[{"type":"web_search_1","max_uses":1e999}]"#,
            r#"[{"type":"web_search_1","max_uses":1,"max_uses":100}]"#, "[", r#""_search""#] {
            assert_eq!(read(raw), ServerTools::default(), "{raw}");
        }
        let huge = read(r#"[{"type":"web_search_1","max_uses":18446744073709551615},{"type":"web_search_2","max_uses":18446744073709551615}]"#);
        assert_eq!(reserved(Api::AnthropicMessages, huge, None), tollgate_protocol::usage::MAX_COUNT);
    }
}
