//! One endpoint for every model: requests in one provider format sent to a
//! provider speaking the other, and the answers translated back
//! (docs/translation.md lists every member).
//!
//! - [`to_anthropic`]: an OpenAI chat request for an Anthropic model, and
//!   the Anthropic answer (JSON, errors) as a chat completion;
//!   [`from_anthropic_stream`]: the Anthropic stream as chat chunks.
//!   [`thinking`]: an OpenAI client's `reasoning_effort` as the thinking
//!   the Claude model takes.
//! - [`to_openai`]: an Anthropic messages request for an OpenAI-format
//!   model, and the chat completion as an Anthropic message;
//!   [`from_openai_stream`]: the chat chunks as Anthropic events.
//! - [`to_responses`]: a chat request for a model OpenAI serves only
//!   through its Responses API, and the response as a chat completion;
//!   [`from_responses_stream`]: the Responses stream as chat chunks. An
//!   Anthropic client's request goes through both translations (Anthropic
//!   to chat, chat to Responses), and the answer back through both.
//! - [`responses_client`]: a Responses API client (the Codex CLI) on a
//!   model whose provider speaks chat completions or Anthropic messages:
//!   the request as chat (then Anthropic), the answer as a response;
//!   [`to_responses_stream`]: chat chunks as Responses events.

pub mod from_anthropic_stream;
pub mod from_openai_stream;
pub mod from_responses_stream;
pub mod namespaces;
pub mod responses_client;
pub mod sampling;
pub mod to_anthropic;
pub mod to_openai;
pub mod to_responses;
pub mod to_responses_stream;
pub mod thinking;

use crate::errors::GatewayError;
use crate::request::{Api, ParsedBody};

/// Which way a request is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// An OpenAI chat client, an Anthropic provider.
    OpenAiToAnthropic,
    /// An Anthropic messages client, an OpenAI-format provider.
    AnthropicToOpenAi,
    /// An OpenAI chat client, a model served only through OpenAI's Responses API.
    ChatToResponses,
    /// An Anthropic messages client, a model served only through OpenAI's Responses API.
    AnthropicToResponses,
    /// A Responses API client, an Anthropic provider (through chat both ways).
    ResponsesToAnthropic,
    /// A Responses API client, a provider that speaks chat completions only.
    ResponsesToChat,
}

/// What the provider speaks for a route's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Anthropic messages.
    Anthropic,
    /// Chat completions, and the Responses API for Responses clients (OpenAI's own API).
    Chat,
    /// Chat completions and nothing else (Gemini's OpenAI endpoint; a route
    /// with `upstream_api: chat_completions`, as for DeepSeek).
    ChatOnly,
    /// The Responses API only (OpenAI's Codex and -pro models, or a route's choice).
    Responses,
}

impl Direction {
    /// The translation for a client API and what the provider speaks, if any.
    pub fn between(client: Api, upstream: Upstream) -> Option<Direction> {
        match (client, upstream) {
            (Api::OpenAiChat, Upstream::Anthropic) => Some(Direction::OpenAiToAnthropic),
            (Api::OpenAiChat, Upstream::Responses) => Some(Direction::ChatToResponses),
            (Api::AnthropicMessages, Upstream::Responses) => Some(Direction::AnthropicToResponses),
            (Api::AnthropicMessages, Upstream::Chat | Upstream::ChatOnly) => Some(Direction::AnthropicToOpenAi),
            (Api::OpenAiResponses, Upstream::Anthropic) => Some(Direction::ResponsesToAnthropic),
            (Api::OpenAiResponses, Upstream::ChatOnly) => Some(Direction::ResponsesToChat),
            _ => None,
        }
    }

    /// The provider's request for the client's (`parsed`): for
    /// `upstream_model`, its output cap in `cap_field` (the provider's member
    /// on chat completions), `default_cap` when the client set none (the
    /// gateway's `default_max_tokens`, which the reservation assumed).
    pub fn request(self, parsed: &ParsedBody<'_>, upstream_model: &str, cap_field: &str, default_cap: u64) -> Result<Vec<u8>, GatewayError> {
        match self {
            Direction::OpenAiToAnthropic => to_anthropic::chat_to_messages(parsed, upstream_model, default_cap),
            Direction::AnthropicToOpenAi => to_openai::messages_to_chat_request(parsed, upstream_model, cap_field, default_cap),
            Direction::ChatToResponses => to_responses::chat_to_responses(parsed.members_map()?, upstream_model, default_cap),
            Direction::AnthropicToResponses => to_openai::messages_to_responses_request(parsed, upstream_model, default_cap),
            Direction::ResponsesToChat => responses_client::chat_request(parsed.members_map()?, upstream_model, cap_field, default_cap),
            // Through chat: the translation to Anthropic reads a chat request.
            Direction::ResponsesToAnthropic => {
                let chat = responses_client::chat_request(parsed.members_map()?, upstream_model, "max_tokens", default_cap)?;
                to_anthropic::chat_to_messages(&crate::request::parse_chat(Api::OpenAiChat, &chat)?, upstream_model, default_cap)
            }
        }
    }

    /// The API the provider answers in.
    pub fn upstream_api(self) -> Api {
        match self {
            Direction::OpenAiToAnthropic | Direction::ResponsesToAnthropic => Api::AnthropicMessages,
            Direction::AnthropicToOpenAi | Direction::ResponsesToChat => Api::OpenAiChat,
            Direction::ChatToResponses | Direction::AnthropicToResponses => Api::OpenAiResponses,
        }
    }

    /// The flat names a Responses request's namespaced functions are
    /// offered under, for its answer ([`namespaces`]); `None` when it has
    /// none or is not translated from the Responses API.
    pub fn tool_names(self, parsed: &ParsedBody<'_>) -> Option<namespaces::ToolNames> {
        match self {
            Direction::ResponsesToChat | Direction::ResponsesToAnthropic => {
                responses_client::tool_names(parsed.members().find(|(k, _)| *k == "tools").map(|(_, v)| v))
            }
            _ => None,
        }
    }

    /// The client's answer for the provider's JSON body (`None`: passed on
    /// as it is); `names` as [`Self::tool_names`] gave them.
    pub fn answer(self, body: &[u8], status: u16, now_s: u64, names: Option<&namespaces::ToolNames>) -> Option<Vec<u8>> {
        match self {
            Direction::OpenAiToAnthropic => to_anthropic::messages_to_chat(body, status, now_s),
            Direction::AnthropicToOpenAi => to_openai::chat_to_message(body, status),
            Direction::ChatToResponses => to_responses::responses_to_chat(body, status),
            // Through chat: the body parsed once, written once.
            Direction::AnthropicToResponses => {
                let v: serde_json::Value = serde_json::from_slice(body).ok()?;
                let chat = to_responses::responses_value_to_chat(&v, status);
                serde_json::to_vec(&to_openai::chat_value_to_message(chat.as_ref().unwrap_or(&v), status)?).ok()
            }
            Direction::ResponsesToChat => responses_client::response_for_chat(body, status, names),
            // An error comes back in chat's shape, which is the Responses API's too.
            Direction::ResponsesToAnthropic => {
                let chat = to_anthropic::message_value_to_chat(&serde_json::from_slice(body).ok()?, status, now_s)?;
                serde_json::to_vec(&responses_client::response_for_chat_value(&chat, status, names).unwrap_or(chat)).ok()
            }
        }
    }

    /// The stream rewriter for this direction (`names` as for [`Self::answer`]).
    pub fn stream(self, now_s: u64, include_usage: bool, names: Option<std::rc::Rc<namespaces::ToolNames>>) -> Box<dyn StreamTranslator> {
        match self {
            Direction::OpenAiToAnthropic => Box::new(from_anthropic_stream::AnthropicToOpenAi::new(now_s, include_usage)),
            Direction::AnthropicToOpenAi => Box::new(from_openai_stream::OpenAiToAnthropic::new()),
            Direction::ChatToResponses => Box::new(from_responses_stream::ResponsesToChat::new(now_s, include_usage)),
            // The chat stream between the two carries its usage chunk: Anthropic's message_delta reports it.
            Direction::AnthropicToResponses => Box::new(Chain {
                first: Box::new(from_responses_stream::ResponsesToChat::new(now_s, true)),
                then: Box::new(from_openai_stream::OpenAiToAnthropic::new()),
            }),
            Direction::ResponsesToChat => Box::new(to_responses_stream::ChatToResponses::new(now_s, names)),
            Direction::ResponsesToAnthropic => Box::new(Chain {
                first: Box::new(from_anthropic_stream::AnthropicToOpenAi::new(now_s, true)),
                then: Box::new(to_responses_stream::ChatToResponses::new(now_s, names)),
            }),
        }
    }
}

/// Two stream translations one after the other: each chat chunk the first
/// writes (`data: …` blocks, whole, JSON on one line) is an event of the second.
#[derive(Debug)]
struct Chain {
    first: Box<dyn StreamTranslator>,
    then: Box<dyn StreamTranslator>,
}

impl StreamTranslator for Chain {
    fn event(&mut self, name: Option<&str>, data: &str) -> Vec<u8> {
        let mid = self.first.event(name, data);
        let mut out = Vec::new();
        for block in String::from_utf8_lossy(&mid).split("\n\n") {
            if let Some(d) = block.strip_prefix("data: ") {
                out.extend(self.then.event(None, d));
            }
        }
        out
    }
}

/// A model's name past a router's provider prefix (`openai/gpt-5.5`,
/// `us.anthropic…/…`), lower-cased: what a family is told apart by.
pub(crate) fn bare_model(model: &str) -> String {
    model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase()
}

/// A member that cannot be translated for `target` ("an Anthropic model").
pub(crate) fn refuse(param: &'static str, why: &str, target: &str) -> crate::errors::GatewayError {
    crate::errors::GatewayError::bad_request(
        "untranslatable_field",
        format!("'{param}' {why}: this request goes to {target} and cannot be translated. See docs/translation.md."),
    )
    .with_param(param)
}

/// A message that cannot be translated.
pub(crate) fn bad_message(i: usize, what: &str) -> crate::errors::GatewayError {
    crate::errors::GatewayError::bad_request("untranslatable_field", format!("messages[{i}]: {what}")).with_param("messages")
}

/// A member the translation does not know: named in the message, `param`
/// from the list of known untranslatable ones (static) or `(root)`.
pub(crate) fn unknown_member(name: &str, refused: &[&'static str], target: &str) -> crate::errors::GatewayError {
    let param = refused.iter().find(|r| **r == name).copied().unwrap_or("(root)");
    crate::errors::GatewayError::bad_request(
        "untranslatable_field",
        format!("'{}' cannot be translated for {target}. See docs/translation.md.", crate::text::clean_field(name, 64)),
    )
    .with_param(param)
}

/// An SSE `data:` block holding `v`.
pub(crate) fn data(v: &serde_json::Value) -> Vec<u8> {
    crate::sse::event_bytes(None, &v.to_string())
}

/// The chat chunks a stream translated for a chat client is written as:
/// one id, time and model for all, `usage: null` on each when the client
/// asked for the usage chunk (as OpenAI sends them), then that chunk.
#[derive(Debug)]
pub(crate) struct ChatChunks {
    pub created_s: u64,
    pub include_usage: bool,
    pub id: String,
    pub model: serde_json::Value,
}

impl ChatChunks {
    pub fn new(created_s: u64, include_usage: bool) -> Self {
        ChatChunks { created_s, include_usage, id: String::new(), model: serde_json::Value::Null }
    }

    pub fn chunk(&self, delta: serde_json::Value, finish: Option<&str>) -> Vec<u8> {
        let mut c = serde_json::json!({"id": format!("chatcmpl-{}", self.id), "object": "chat.completion.chunk", "created": self.created_s,
                                       "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if let (true, Some(o)) = (self.include_usage, c.as_object_mut()) {
            o.insert("usage".into(), serde_json::Value::Null);
        }
        data(&c)
    }

    /// The usage chunk (`choices: []`), when the client asked for it.
    pub fn usage(&self, usage: serde_json::Value) -> Vec<u8> {
        if !self.include_usage {
            return Vec::new();
        }
        data(&serde_json::json!({"id": format!("chatcmpl-{}", self.id), "object": "chat.completion.chunk",
                                 "created": self.created_s, "model": self.model, "choices": [], "usage": usage}))
    }
}

/// Rewrites a stream event by event.
pub trait StreamTranslator: std::fmt::Debug {
    /// The client's bytes for one provider event (`name` from its `event:` line).
    fn event(&mut self, name: Option<&str>, data: &str) -> Vec<u8>;
}

/// What `t` writes for `stream` read in pieces of `piece` bytes.
#[cfg(test)]
pub(crate) fn run_stream(t: &mut dyn StreamTranslator, stream: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = crate::sse::SseSplitter::new();
    for c in stream.chunks(piece.max(1)) {
        s.push(c, |raw, whole| {
            assert!(whole, "an event past the splitter's limit");
            let ev = crate::sse::parse_event(raw);
            out.extend(t.event(ev.name, &ev.data));
        });
    }
    out
}

/// The chat chunks a translator wrote (`data:` blocks), `[DONE]` as a string.
#[cfg(test)]
pub(crate) fn chat_chunks(out: Vec<u8>) -> Vec<serde_json::Value> {
    let text = String::from_utf8(out).unwrap_or_default();
    text.split("\n\n")
        .filter(|b| !b.is_empty())
        .filter_map(|b| b.strip_prefix("data: "))
        .map(|d| if d == "[DONE]" { serde_json::Value::from("[DONE]") } else { serde_json::from_str(d).unwrap_or_default() })
        .collect()
}
