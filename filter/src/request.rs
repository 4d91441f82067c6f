//! Chat requests: which API a path speaks ([`endpoint`]), what a body asks
//! for, and the rewrite sent upstream.
//!
//! The body is parsed once, at the top level only: each member's value is
//! kept as raw JSON text, so the rewrite touches just `model` and
//! `stream_options` and copies everything else byte for byte.

use crate::translate::thinking::Fit;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::errors::GatewayError;
use crate::splice::Object;

pub use tollgate_protocol::Api;
use crate::pricing::Premium;
use tollgate_protocol::record::ServiceTier;

pub use endpoint::{azure_deployment, classify_path, model_path_id, path_without_key, query_key, query_of, upstream_query, Endpoint};

/// Top-level members of a JSON object, in order, values as raw JSON.
pub(crate) struct Members<'a>(pub(crate) Vec<(String, &'a RawValue)>);

impl Members<'_> {
    /// The raw JSON text of the member `name`, the first if given twice (a
    /// parsed body has none twice: `duplicate_key`).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.get())
    }

    /// (name, raw JSON text) of each member, in order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.get()))
    }
}

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some((k, val)) = m.next_entry::<String, &'de RawValue>()? {
                    v.push((k, val));
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether `stream_options` (raw JSON) asks for the usage chunk. Read with
/// [`Members`], so a repeated `include_usage` is refused as the body's own
/// repeated members are, and a wrong one is named by its path, as OpenAI
/// names it.
fn stream_options_usage(raw: &str) -> Result<bool, GatewayError> {
    const PARAM: &str = "stream_options.include_usage";
    if raw == "null" {
        return Ok(false);
    }
    let members: Members = serde_json::from_str(raw)
        .map_err(|_| bad("invalid_type", "'stream_options' must be an object.").with_param("stream_options"))?;
    let mut found: Option<Option<bool>> = None;
    for (k, v) in members.0.iter().filter(|(k, _)| k == "include_usage") {
        if found.is_some() {
            return Err(bad("duplicate_key", format!("'stream_options' has the member '{k}' more than once.")).with_param(PARAM));
        }
        let value = serde_json::from_str::<Option<bool>>(v.get())
            .map_err(|_| bad("invalid_type", "Invalid type for 'stream_options.include_usage': expected a boolean.").with_param(PARAM))?;
        found = Some(value);
    }
    Ok(found.flatten().unwrap_or(false))
}

/// The id a Responses API request's `previous_response_id` or
/// `conversation` (an id, or `{"id": …}`) names, when it is one.
fn context_id(raw: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Named {
        Id(String),
        Object { id: String },
    }
    let id = match serde_json::from_str::<Option<Named>>(raw).ok()?? {
        Named::Id(id) | Named::Object { id } => id,
    };
    crate::context::usable(&id).then_some(id)
}

/// A member that is a string or null.
fn text_member(raw: &str, name: &'static str) -> Result<Option<String>, GatewayError> {
    serde_json::from_str::<Option<String>>(raw)
        .map_err(|_| GatewayError::bad_request("invalid_type", format!("'{name}' must be a string.")).with_param(name))
}

/// Vertex AI's request header for its tiers: Priority PayGo (`priority`,
/// priority token rates) and Flex PayGo (`flex`), for Gemini models
/// (docs.cloud.google.com/vertex-ai/generative-ai/docs/deploy/consumption-options;
/// docs.litellm.ai/docs/tutorials/vertex_ai_pay_go: "Send a priority
/// header, get priority queueing, and pay priority token rates"). A
/// header passes to the provider, so it is priced like the body's tier.
pub const VERTEX_TIER: &str = "x-vertex-ai-llm-shared-request-type";

/// The tier a request asks for with its body's `asked` and Vertex AI's
/// header `header`: a header value with no known price is refused, and
/// so is a header that names another tier than the body.
pub fn with_tier_header(asked: Option<ServiceTier>, header: Option<&[u8]>) -> Result<Option<ServiceTier>, GatewayError> {
    let Some(h) = header else { return Ok(asked) };
    let tier = match h {
        b"priority" => ServiceTier::Priority,
        b"flex" => ServiceTier::Flex,
        _ => return Err(unknown_value(VERTEX_TIER, "priority, flex")),
    };
    match asked {
        Some(t) if t != tier => Err(bad("duplicate_key", format!("The body and '{VERTEX_TIER}' name two different tiers: send one.")).with_param(VERTEX_TIER)),
        _ => Ok(Some(tier)),
    }
}

/// A value of a priced member the gateway does not know.
fn unknown_value(name: &'static str, known: &str) -> GatewayError {
    GatewayError::bad_request(
        "unsupported_value",
        format!("'{name}' must be one of {known}: the gateway prices each, and knows no price for this one."),
    )
    .with_param(name)
}

/// What the gateway needs to know about a chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    /// The output cap the client set: the largest of `max_tokens` and
    /// `max_completion_tokens` (a bound must hold whichever one the provider
    /// honours).
    pub max_tokens: Option<u64>,
    /// Choices asked for (OpenAI `n`, 1 when absent): each may use the cap.
    pub choices: u64,
    /// The end-user id the client passed (`user`, or Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// The client asked for OpenAI's final usage chunk itself.
    pub client_include_usage: bool,
    /// Bytes of the body's members (messages, system, tools, a schema…) — basis of the estimate.
    pub prompt_bytes: usize,
    pub estimated_input_tokens: u64,
    /// The API the request came in on.
    pub api: Api,
    /// The request asked for JSON (chat `response_format`).
    pub json: Option<crate::jsonfix::JsonAsk>,
    /// The request names a registered prompt (`tollgate_prompt`).
    pub names_prompt: bool,
    /// Responses API: the stored context this request continues (the
    /// `previous_response_id`, or the `conversation`'s id), billed as input
    /// although the body does not hold it ([`crate::context`]).
    pub continues: Option<String>,
    /// Responses API: the request names a `conversation` (its answer is
    /// added to it).
    pub conversation: bool,
    /// Responses API: `background: true`, run at the provider after the
    /// answer ([`crate::background`]).
    pub background: bool,
    /// Responses API: the answer is stored (`store`, true unless false),
    /// so a later request may continue it.
    pub stored: bool,
    /// The tier and geography asked for that the provider prices apart
    /// (they are the price: [`crate::pricing::Price::at`]).
    pub premium: Premium,
    /// The server-side searches the request bounds (Anthropic's `max_uses`,
    /// the Responses API's `max_tool_calls`): held by its reservation
    /// ([`server_tools`]).
    pub reserved_searches: u64,
    /// The model calls Anthropic's server-side tool loop may make within the
    /// request, each reading the context and writing up to the cap: the
    /// reservation holds them all ([`server_tools::sampling_calls`]).
    pub sampling_calls: u64,
    /// Anthropic's server-side `fallbacks` chain is set: other models serve
    /// the turn, priced as theirs; refused when sent ([`crate::route`]).
    pub server_fallbacks: bool,
    /// Anthropic's advisor tool, offered in `tools`: another model runs
    /// within the request, routed, priced and reserved as well ([`crate::route`]).
    pub advisor: Option<server_tools::Advisor>,
    /// The Responses API's image generation tool, offered in `tools`: an
    /// image model runs within the request, routed, priced and reserved
    /// as well ([`crate::route`]).
    pub image_tool: Option<server_tools::ImageTool>,
    /// The Responses API's code interpreter containers the request has
    /// the provider create, in GB of memory ([`server_tools`]): reserved
    /// and charged once the provider takes the request.
    pub container_gb: u64,
    /// The Responses API's `max_tool_calls`: the most hosted tool calls.
    pub max_tool_calls: Option<u64>,
    /// An image edit's images, as the most input image tokens they may be
    /// billed ([`images::EditInputs`]): reserved at the image input rate.
    pub input_image_tokens: u64,
    /// A transcription's or translation's audio, its length in
    /// milliseconds ([`audio`]): reserved (and charged, when the answer
    /// carries no usage) as the model bills it, by its length or its tokens.
    pub input_audio_ms: u64,
    /// A speech request's text, speed and audio format ([`speech`]).
    pub speech: Option<speech::Speech>,
}

impl ChatRequest {
    /// Calls the provider bills the request as: each of an image request's
    /// `n` images is one, its input with it (request/images.rs); 1 otherwise.
    fn billed_calls(&self) -> u64 {
        if self.api.makes_images() { self.choices.max(1) } else { 1 }
    }

    /// The input tokens the reservation counts: the estimate, an edit's
    /// input images, for each call billed.
    pub fn input_bound(&self) -> u64 {
        self.estimated_input_tokens.saturating_add(self.input_image_tokens).saturating_add(audio::tokens(self.input_audio_ms)).saturating_mul(self.billed_calls())
    }

    /// Of [`Self::input_bound`], the input image tokens.
    pub fn image_input_bound(&self) -> u64 {
        self.input_image_tokens.saturating_mul(self.billed_calls())
    }

    /// The most output tokens this request can produce once `cap` is sent
    /// upstream for a request that set none: the reservation's output side.
    pub fn output_bound(&self, cap: u64) -> u64 {
        if !self.api.has_output() {
            return 0;
        }
        self.max_tokens.or(self.api.default_max_tokens()).unwrap_or(cap).saturating_mul(self.choices.max(1))
    }
}

/// Gemini's generation config, by its JSON name and by its proto name
/// (Gemini takes either, as every protobuf JSON parser does).
const GEMINI_CONFIG: &str = "generationConfig";
const GEMINI_CONFIG_PROTO: &str = "generation_config";
const GEMINI_TIER: &str = "serviceTier";
const GEMINI_TIER_PROTO: &str = "service_tier";

/// Longest model name accepted (provider model ids are far shorter).
pub const MAX_MODEL_LEN: usize = 256;
/// Largest `n` OpenAI accepts.
pub const MAX_CHOICES: u64 = 128;

/// A model name is copied into a header, a record, a metric and a log line:
/// visible ASCII only (no spaces, no control characters), 1..=256 bytes.
pub fn valid_model_name(m: &str) -> bool {
    !m.is_empty() && m.len() <= MAX_MODEL_LEN && m.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// Rough token estimate for text of `bytes` bytes: ~4 bytes per token for
/// English and code. Used only where the provider reports nothing (cut
/// streams) and for budget reservations; never for billing when the
/// provider reports usage.
pub fn estimate_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

fn bad(code: &'static str, msg: impl Into<String>) -> GatewayError {
    GatewayError::bad_request(code, msg)
}

/// A parsed request body, ready to inspect and rewrite.
pub struct ParsedBody<'a> {
    members: Members<'a>,
    api: Api,
    pub request: ChatRequest,
}

/// Parses a chat request body. Errors are 400s that say what is wrong.
///
/// Duplicate top-level members are refused: the gateway must authorise,
/// price and bound exactly what the provider will run, and JSON parsers
/// disagree on which duplicate wins.
pub fn parse_chat(api: Api, body: &[u8]) -> Result<ParsedBody<'_>, GatewayError> {
    parse_chat_for(api, body, api.is_gemini())
}

/// [`parse_chat`] for a request whose path may name its model
/// (`model_in_path`: Gemini's, an Azure deployment's): a body without
/// `model` is then not refused, and the caller sets it.
pub fn parse_chat_for(api: Api, body: &[u8], model_in_path: bool) -> Result<ParsedBody<'_>, GatewayError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(bad("missing_body", "The request has no body; send a JSON request."));
    }
    let members: Members = serde_json::from_slice(body).map_err(|e| {
        bad("invalid_json", format!("The request body is not valid JSON: {e}."))
    })?;
    let mut seen = std::collections::HashSet::with_capacity(members.0.len());
    for (k, _) in &members.0 {
        if !seen.insert(k.as_str()) {
            let shown: String = k.chars().take(64).filter(|c| !c.is_control()).collect();
            return Err(bad("duplicate_key", format!("The request body has the member '{shown}' more than once.")));
        }
    }
    let mut reading = reading::Reading::new(api);
    for (k, v) in &members.0 {
        reading.member(k, v.get())?;
    }
    let request = reading.finish(&members, model_in_path)?;
    Ok(ParsedBody { members, api, request })
}

/// The body to send upstream, or `None` to send the client's as it came:
/// the planned body; else, when the body as read is not the client's
/// (`changed`: rendered from a named prompt, or decoded), the body as read;
/// a form (an image edit's, a transcription's) written back from either
/// ([`multipart::Upload`]). In the pieces it is written to Envoy in, one
/// after another: a form's files are borrowed from the form as read, never
/// copied.
pub fn outgoing_body<'a>(
    planned: Option<Vec<u8>>,
    read: Vec<u8>,
    changed: bool,
    upload: Option<&'a multipart::Upload>,
) -> Result<Option<Vec<std::borrow::Cow<'a, [u8]>>>, GatewayError> {
    use std::borrow::Cow;
    match (planned, upload) {
        (planned, Some(u)) => u.sent_in_pieces(planned.as_deref().unwrap_or(&read)).map(Some),
        (Some(b), None) => Ok(Some(vec![Cow::Owned(b)])),
        (None, None) => Ok(changed.then(|| vec![Cow::Owned(read)])),
    }
}

/// What the gateway changes in a request body on its way upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite<'a> {
    /// For OpenAI streams: set `stream_options.include_usage = true` so usage
    /// always arrives. Never for Anthropic (its API refuses unknown members).
    pub force_include_usage: bool,
    /// When the client set no output cap: the member to add and its value,
    /// so the reservation is a real bound.
    pub output_cap: Option<(&'a str, u64)>,
    /// Anthropic only: add prompt-cache breakpoints ([`crate::caching`]).
    pub auto_cache: Option<crate::caching::AutoCache>,
}

impl ParsedBody<'_> {
    /// An Anthropic request's `thinking` fitted to the upstream model
    /// ([`crate::translate::thinking::fit`]); `Keep` for other APIs and
    /// requests without thinking.
    fn fitted_thinking(&self, upstream_model: &str) -> Fit {
        if self.api != Api::AnthropicMessages {
            return Fit::Keep;
        }
        let raw = |name: &str| self.members.get(name);
        let Some(t) = raw("thinking") else {
            return Fit::Keep;
        };
        let (Ok(t), config) = (serde_json::from_str::<serde_json::Value>(t), raw("output_config").and_then(|c| serde_json::from_str(c).ok())) else {
            return Fit::Keep;
        };
        crate::translate::thinking::fit(&t, config.as_ref(), upstream_model, self.request.max_tokens.unwrap_or(0))
    }

    /// Whether `name` is a sampling member of this API that a model may
    /// refuse ([`crate::translate::sampling`]): Anthropic's `temperature`,
    /// `top_p` and `top_k`; OpenAI's `temperature` and `top_p`.
    fn sampling_member(&self, name: &str) -> bool {
        match self.api {
            Api::AnthropicMessages => matches!(name, "temperature" | "top_p" | "top_k"),
            Api::OpenAiChat | Api::OpenAiResponses => matches!(name, "temperature" | "top_p"),
            _ => false,
        }
    }

    /// Whether `upstream_model` takes this request's sampling members: a
    /// Claude model by name; an OpenAI-format one by name and the reasoning
    /// effort the request sends (chat's `reasoning_effort`, the Responses
    /// API's `reasoning.effort`), when the gateway chose it (a route, a
    /// fallback, the auto router). A model the client named itself gets
    /// the body as sent, and the client the API's own refusal, as it would
    /// without Tollgate (`tests/e2e/test_recorded_exchanges.py`: a recorded
    /// `top_p` refused by gpt-5-nano); Claude's newest models are spared it
    /// whoever named them, as they refuse what every older client sends.
    fn samples(&self, upstream_model: &str) -> bool {
        let raw = |name: &str| self.members.get(name);
        let bare = crate::translate::bare_model;
        let effort = match self.api {
            Api::AnthropicMessages => return crate::translate::sampling::taken_by(upstream_model),
            _ if bare(&self.request.model) == bare(upstream_model) => return true,
            Api::OpenAiChat => raw("reasoning_effort").and_then(|e| serde_json::from_str::<Option<String>>(e).ok()).flatten(),
            Api::OpenAiResponses => raw("reasoning")
                .and_then(|r| serde_json::from_str::<Option<serde_json::Value>>(r).ok())
                .flatten()
                .and_then(|r| r.get("effort").and_then(serde_json::Value::as_str).map(str::to_owned)),
            _ => return true,
        };
        crate::translate::sampling::openai_takes(upstream_model, effort.as_deref())
    }

    /// What a native Gemini body must hold for `method`: a content or
    /// requests to embed ([`gemini_body::check`]), contents or a whole
    /// request to count ([`gemini_body::check_count`]), contents to
    /// generate from.
    pub fn check_gemini(&self, method: crate::gemini::Method) -> Result<(), GatewayError> {
        use crate::gemini::Method;
        match method {
            Method::Embed | Method::BatchEmbed => gemini_body::check(&self.members, method == Method::BatchEmbed),
            Method::CountTokens => gemini_body::check_count(&self.members),
            Method::Generate | Method::Stream if !self.members.0.iter().any(|(k, _)| k == "contents") => {
                Err(bad("missing_contents", "The request has no 'contents'.").with_param("contents"))
            }
            Method::Generate | Method::Stream => Ok(()),
        }
    }

    /// The body names a model besides the path (a native Gemini count:
    /// its `model`, or a whole `generateContentRequest`, which names one).
    pub fn names_model_inside(&self) -> bool {
        self.members.0.iter().any(|(k, _)| k == "model" || gemini_body::COUNTED_REQUEST.contains(&k.as_str()))
    }

    /// A Gemini body that names its model inside, with the upstream model
    /// in every `model` ([`gemini_body::rewrite`]): embeddings, a count.
    pub fn rewrite_gemini_models(&self, upstream_model: &str) -> Result<Vec<u8>, GatewayError> {
        gemini_body::rewrite(&self.members, upstream_model).ok_or_else(|| bad("invalid_request", "The request could not be read.").with_param("model"))
    }

    /// The top-level members, in order, values as raw JSON text.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.pairs()
    }

    /// The top-level members as JSON values (a translation that rebuilds the request).
    pub fn members_map(&self) -> Result<serde_json::Map<String, serde_json::Value>, GatewayError> {
        self.members()
            .map(|(k, raw)| serde_json::from_str(raw).map(|v| (k.to_string(), v)))
            .collect::<Result<_, _>>()
            .map_err(|_| GatewayError::bad_request("invalid_json", "The request body is not valid JSON."))
    }

    /// The body to send upstream, or `None` when it needs no change.
    pub fn rewrite(&self, upstream_model: &str, opts: Rewrite<'_>) -> Option<Vec<u8>> {
        if self.api == Api::GeminiGenerateContent {
            return self.rewrite_gemini(opts.output_cap.map(|(_, n)| n));
        }
        let change_model = upstream_model != self.request.model;
        let add_usage = opts.force_include_usage
            && matches!(self.api, Api::OpenAiChat | Api::OpenAiCompletions)
            && self.request.stream
            && !self.request.client_include_usage;
        // Not where the API has no output (embeddings) or its own default cap (completions).
        let add_cap = opts
            .output_cap
            .filter(|_| self.request.max_tokens.is_none() && self.api.has_output() && self.api.default_max_tokens().is_none());
        let caps = self.api.cap_members();
        // A chat client's cap goes in the member the provider honours:
        // OpenAI's reasoning models refuse `max_tokens` ("Use
        // 'max_completion_tokens' instead"), DeepSeek ignores
        // `max_completion_tokens` (so the output, and the spend, would not be
        // bounded by what the reservation assumed). One member, the larger
        // value when the client sent both (the reservation's bound).
        let moved_cap = match (opts.output_cap, self.request.max_tokens) {
            (Some((field, _)), Some(n)) if self.api == Api::OpenAiChat => {
                let elsewhere = self.members.0.iter().any(|(k, v)| k != field && caps.contains(&k.as_str()) && v.get() != "null");
                elsewhere.then_some((field, n))
            }
            _ => None,
        };
        let cap = add_cap.or(moved_cap);
        let cache = match opts.auto_cache.filter(|_| self.api == Api::AnthropicMessages) {
            Some(ac) => {
                let raw = |name: &str| self.members.get(name);
                raw("messages").and_then(|m| crate::caching::plan(raw("tools"), raw("system"), m, ac)).map(|(c, _)| c)
            }
            None => None,
        };
        let replaced = |k: &str| cache.as_ref().and_then(|c| c.iter().find(|(n, _)| *n == k)).map(|(_, v)| v.as_bytes());
        let thinking = self.fitted_thinking(upstream_model);
        // Sampling members the upstream model refuses: left out (a Claude
        // model's, or an OpenAI reasoning model's at the effort sent).
        let unsampled = self.members.0.iter().any(|(k, v)| self.sampling_member(k) && crate::translate::sampling::refused(k, v.get()))
            && !self.samples(upstream_model);
        if !change_model && !add_usage && cap.is_none() && cache.is_none() && thinking == Fit::Keep && !unsampled {
            return None;
        }
        let model_json = serde_json::to_string(upstream_model).ok()?;
        let mut out = Object::for_members(self.members(), 64);
        let mut saw_stream_options = false;
        for (k, v) in &self.members.0 {
            match k.as_str() {
                "model" if change_model => out.member(k, model_json.as_bytes()),
                k if unsampled && self.sampling_member(k) && crate::translate::sampling::refused(k, v.get()) => {}
                "stream_options" if add_usage => {
                    saw_stream_options = true;
                    let mut obj: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str::<Option<serde_json::Map<String, serde_json::Value>>>(v.get())
                            .ok()
                            .flatten()
                            .unwrap_or_default();
                    obj.insert("include_usage".into(), serde_json::Value::Bool(true));
                    let s = serde_json::to_string(&obj).ok()?;
                    out.member(k, s.as_bytes());
                }
                // A `null` cap counts as none: replaced by the gateway's cap.
                k if cap.is_some() && caps.contains(&k) => {}
                "tools" | "system" | "messages" if replaced(k).is_some() => out.member(k, replaced(k).unwrap_or_default()),
                "thinking" => match &thinking {
                    Fit::Keep => out.member(k, v.get().as_bytes()),
                    Fit::Drop => {}
                    Fit::Replace { thinking, .. } => out.member(k, thinking.to_string().as_bytes()),
                },
                "output_config" if matches!(thinking, Fit::Replace { drop_effort: true, .. }) => {
                    let mut config: serde_json::Map<String, serde_json::Value> = serde_json::from_str(v.get()).unwrap_or_default();
                    config.remove("effort");
                    if !config.is_empty() {
                        out.member(k, serde_json::Value::Object(config).to_string().as_bytes());
                    }
                }
                _ => out.member(k, v.get().as_bytes()),
            }
        }
        if let Fit::Replace { effort: Some(effort), .. } = thinking {
            out.member("output_config", format!(r#"{{"effort":"{effort}"}}"#).as_bytes());
        }
        if add_usage && !saw_stream_options {
            out.member("stream_options", br#"{"include_usage":true}"#);
        }
        // (A body without one named its model in the path: an Azure deployment's.)
        if change_model && !self.members.0.iter().any(|(k, _)| k == "model") {
            out.member("model", model_json.as_bytes());
        }
        if let Some((field, n)) = cap {
            out.member(field, n.to_string().as_bytes());
        }
        Some(out.close())
    }
}

impl ParsedBody<'_> {
    /// Gemini: the model is in the path; only the output cap may be added
    /// (`maxOutputTokens`, first in the generation config the client sent,
    /// under whichever name, or in a new one), every byte else stays as
    /// sent. Spliced, not parsed: a member a JSON value cannot hold (too
    /// deep, `1e400`) once made the rewrite give up and the request go
    /// upstream without the cap its reservation assumed.
    fn rewrite_gemini(&self, cap: Option<u64>) -> Option<Vec<u8>> {
        let cap = cap.filter(|_| self.request.max_tokens.is_none())?;
        let field = format!("\"maxOutputTokens\":{cap}");
        let mut out = Object::for_members(self.members(), field.len() + 24);
        let mut placed = false;
        for (k, v) in &self.members.0 {
            let raw = v.get().trim();
            if (k != GEMINI_CONFIG && k != GEMINI_CONFIG_PROTO) || placed {
                out.member(k, raw.as_bytes());
                continue;
            }
            placed = true;
            // An object (parse_chat read it as one) or null; a cap of
            // null in it (unset, to protobuf's JSON) is left out, or it
            // would go up beside the one added, and a parser that takes
            // the last of two would read no cap at all.
            out.member(k, b"{");
            let buf = out.buffer();
            buf.extend_from_slice(field.as_bytes());
            match serde_json::from_str::<Option<Members<'_>>>(raw) {
                Ok(inner) => {
                    for (name, value) in inner.map(|m| m.0).unwrap_or_default() {
                        if matches!(name.as_str(), "maxOutputTokens" | "max_output_tokens") && value.get().trim() == "null" {
                            continue;
                        }
                        buf.push(b',');
                        crate::splice::name(buf, &name);
                        buf.push(b':');
                        buf.extend_from_slice(value.get().as_bytes());
                    }
                    buf.push(b'}');
                }
                // (Not expected: parse_chat read it. Spliced as it came
                // rather than any member of the client's dropped.)
                Err(_) => {
                    let rest = raw.strip_prefix('{').map(str::trim_start).unwrap_or("}");
                    if !rest.starts_with('}') {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(rest.as_bytes());
                }
            }
        }
        if !placed {
            out.member(GEMINI_CONFIG, format!("{{{field}}}").as_bytes());
        }
        Some(out.close())
    }
}

pub mod audio;
mod endpoint;
mod gemini_body;
pub mod images;
pub mod multipart;
mod path;
mod reading;
pub mod server_tools;
pub mod speech;
#[cfg(test)]
mod tests;
