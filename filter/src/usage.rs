//! Token usage as the providers report it, normalised.
//!
//! One parser per wire format, used for JSON bodies and SSE streams alike:
//! - OpenAI chat completions: `usage.prompt_tokens`, `completion_tokens`,
//!   `prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`;
//!   DeepSeek adds `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens`.
//! - Anthropic messages: `usage.input_tokens` (uncached only),
//!   `cache_creation_input_tokens`, `cache_read_input_tokens`, `output_tokens`,
//!   `output_tokens_details.thinking_tokens` (the part of the output spent
//!   thinking, "Always ≤ `output_tokens`": anthropic-sdk-python
//!   `types/output_tokens_details.py`).
//!
//! A stream is followed in [`stream`], the `"usage":null` members the
//! gateway caused taken out in `null_usage`; images, audio and speech
//! answers in their own modules.

use serde::Deserialize;

use crate::request::Api;
use crate::served::{Served, Word};

pub use tollgate_protocol::usage::{Usage, MAX_COUNT};

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    /// GPT-5.6 and later: prompt tokens written to the cache (1.25× input).
    #[serde(default)]
    cache_write_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
    /// Audio tokens of the prompt or of the completion (openai-python
    /// `types/completion_usage.py`), priced at the audio rates.
    #[serde(default)]
    audio_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default, deserialize_with = "object")]
    prompt_tokens_details: Option<Details>,
    #[serde(default, deserialize_with = "object")]
    completion_tokens_details: Option<Details>,
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

impl OpenAiUsage {
    /// A usage that counts something: `{}` (or one with only details) is
    /// no provider's count, and is read as no usage rather than as zero.
    fn counted(&self) -> bool {
        self.prompt_tokens.is_some() || self.completion_tokens.is_some()
    }
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Usage {
        // DeepSeek bills by its own hit/miss split: prefer it where present.
        let details = u.prompt_tokens_details.as_ref();
        let reported = u.prompt_cache_hit_tokens.or(details.and_then(|d| d.cached_tokens));
        let cached = reported.unwrap_or(0);
        Usage {
            cache_reported: reported.is_some(),
            input_tokens: u.prompt_tokens.unwrap_or(0),
            cached_input_tokens: cached,
            cache_write_tokens: details.and_then(|d| d.cache_write_tokens).unwrap_or(0),
            output_tokens: u.completion_tokens.unwrap_or(0),
            audio_input_tokens: details.and_then(|d| d.audio_tokens).unwrap_or(0),
            audio_output_tokens: u.completion_tokens_details.as_ref().and_then(|d| d.audio_tokens).unwrap_or(0),
            reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
            ..Default::default()
        }
        .bounded()
    }
}

#[derive(Deserialize, Default, Clone, Copy, Debug)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default, Clone, Copy, Debug)]
struct ServerToolUse {
    #[serde(default)]
    web_search_requests: Option<u64>,
}

#[derive(Deserialize, Default, Clone, Copy, Debug)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    /// The split of cache writes by lifetime (5 minutes / 1 hour).
    #[serde(default, deserialize_with = "object")]
    cache_creation: Option<CacheCreation>,
    #[serde(default, deserialize_with = "object")]
    server_tool_use: Option<ServerToolUse>,
    /// `thinking_tokens`: reasoning, as OpenAI's `reasoning_tokens`. A
    /// detail: one of another shape is no thinking, never a usage lost.
    #[serde(default, deserialize_with = "lenient_object")]
    output_tokens_details: Option<ThinkingDetails>,
    /// `"standard"` or `"fast"` ([`crate::served`]).
    #[serde(default)]
    speed: Word,
    /// Where inference ran: `"global"` or `"us"`.
    #[serde(default)]
    inference_geo: Word,
    /// An entry of `usage.iterations`: its `type` ([`iterations`]).
    #[serde(rename = "type", default)]
    kind: IterationKind,
    /// What `usage.iterations` adds to the top level ([`iterations`]).
    #[serde(default, deserialize_with = "iterations")]
    iterations: Option<Iterations>,
}

#[derive(Deserialize, Default, Clone, Copy, Debug)]
struct ThinkingDetails {
    #[serde(default, deserialize_with = "lenient")]
    thinking_tokens: Option<u64>,
}

/// A member read when it has the expected shape and `None` otherwise (a
/// string, a negative count, an array), where a member that is only a
/// detail of the usage must not make the whole usage unreadable. (A number
/// no JSON parser holds, `1e400`, still fails the parse, as anywhere.)
fn lenient<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Read<T> {
        Expected(T),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Read<T>>::deserialize(d)? {
        Some(Read::Expected(v)) => Some(v),
        _ => None,
    })
}

/// A usage object, read only from a JSON object (or `null`, none): serde's
/// derive also reads a struct from an array, its fields by position, so a
/// provider's `"usage": [900, 5]` read as 900 input tokens and 5 output. An
/// array now fails the read as a string always did (the usage is then
/// estimated, as for any answer whose usage cannot be read).
pub(crate) fn object<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    struct Object<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_option(Object(std::marker::PhantomData))
}

/// A `T` read only from a JSON object, as [`object`] reads one (for a
/// member read inside another reader: [`lenient_object`], a list's entries).
pub(crate) struct Map<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Map<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match object(d)? {
            Some(v) => Ok(Map(v)),
            None => Err(serde::de::Error::invalid_type(serde::de::Unexpected::Unit, &"an object")),
        }
    }
}

/// A usage (or a part of one) found on its own, as a JSON value (a big
/// event's tail, a translated answer): read only from an object, as
/// [`object`] reads a member. Every `from_value` reads through it.
pub(crate) fn from_object<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Option<T> {
    Map::<T>::deserialize(v).ok().map(|Map(t)| t)
}

/// A detail read when it is an object of the expected shape and `None`
/// otherwise, an array among the others ([`lenient`] alone reads a struct
/// from an array by position).
fn lenient_object<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(lenient::<D, Map<T>>(d)?.map(|Map(v)| v))
}

/// An `iterations` entry's kind: only the ones read apart (no allocation per entry).
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
enum IterationKind {
    Compaction,
    Advisor,
    #[default]
    Other,
}

impl<'de> Deserialize<'de> for IterationKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(match s.as_ref() {
            "compaction" => IterationKind::Compaction,
            "advisor_message" => IterationKind::Advisor,
            _ => IterationKind::Other,
        })
    }
}

/// The passes `usage.iterations` lists apart from the top-level counts,
/// each kind summed: compaction (the same model's) and the advisor's
/// calls (another model's; `None` when none ran).
#[derive(Default, Clone, Copy, Debug)]
struct Iterations {
    compaction: Usage,
    advisor: Option<Usage>,
}

/// Two token counts added (Anthropic's iterations; a stream's images,
/// [`images::add`]): the token classes, not the per-call ones.
fn sum(a: Usage, u: Usage) -> Usage {
    Usage {
        input_tokens: a.input_tokens.saturating_add(u.input_tokens),
        cached_input_tokens: a.cached_input_tokens.saturating_add(u.cached_input_tokens),
        cache_write_tokens: a.cache_write_tokens.saturating_add(u.cache_write_tokens),
        cache_write_1h_tokens: a.cache_write_1h_tokens.saturating_add(u.cache_write_1h_tokens),
        image_input_tokens: a.image_input_tokens.saturating_add(u.image_input_tokens),
        output_tokens: a.output_tokens.saturating_add(u.output_tokens),
        image_output_tokens: a.image_output_tokens.saturating_add(u.image_output_tokens),
        cache_reported: a.cache_reported || u.cache_reported,
        ..Usage::default()
    }
    .bounded()
}

/// What `usage.iterations` lists apart from the top-level counts.
///
/// - Server-side compaction (`context_management`'s `compact_*` edit): its
///   summarising passes are `type: "compaction"` entries, billed at the
///   model's rates, and "A `compaction` entry's tokens are not included in
///   the top-level `usage` fields" (anthropic-sdk-python
///   `types/beta/beta_usage.py`, `beta_compaction_iteration_usage.py`):
///   added to them ([`AnthropicUsage::normalise`]).
/// - The advisor tool's calls: `type: "advisor_message"` entries, the
///   advisor model's tokens (`beta_advisor_message_iteration_usage.py`),
///   also absent from the top level: summed apart, charged at that model's
///   price ([`AnthropicUsage::advisor`]).
///
/// (`message` entries are what the top level sums.) A member that is not a
/// list of such entries is ignored, as any unknown member was: the top
/// level still counts.
fn iterations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Iterations>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Listed {
        Iterations(Vec<Map<AnthropicUsage>>),
        Other(serde::de::IgnoredAny),
    }
    let Some(Listed::Iterations(items)) = Option::<Listed>::deserialize(d)? else { return Ok(None) };
    Ok(Some(items.iter().fold(Iterations::default(), |mut it, Map(i)| {
        match i.kind {
            IterationKind::Compaction => it.compaction = sum(it.compaction, i.normalise()),
            IterationKind::Advisor => it.advisor = Some(sum(it.advisor.unwrap_or_default(), i.normalise())),
            IterationKind::Other => {}
        }
        it
    })))
}

impl AnthropicUsage {
    /// As [`OpenAiUsage::counted`].
    fn counted(&self) -> bool {
        self.input_tokens.is_some() || self.output_tokens.is_some()
    }

    /// Later events carry cumulative counts; a field present later wins.
    fn merge(&mut self, later: AnthropicUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later.cache_read_input_tokens.or(self.cache_read_input_tokens);
        self.cache_creation = later.cache_creation.or(self.cache_creation);
        self.server_tool_use = later.server_tool_use.or(self.server_tool_use);
        self.output_tokens_details = later.output_tokens_details.or(self.output_tokens_details);
        self.speed = if later.speed == Word::Unknown { self.speed } else { later.speed };
        self.inference_geo = if later.inference_geo == Word::Unknown { self.inference_geo } else { later.inference_geo };
        self.iterations = later.iterations.or(self.iterations);
    }

    fn served(&self) -> Served {
        Served::anthropic(self.speed, self.inference_geo)
    }

    /// The advisor tool's calls, summed (`None`: none reported).
    fn advisor(&self) -> Option<Usage> {
        self.iterations.and_then(|i| i.advisor)
    }

    fn normalise(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let split = self.cache_creation.unwrap_or_default();
        let split_sum = split
            .ephemeral_5m_input_tokens
            .unwrap_or(0)
            .saturating_add(split.ephemeral_1h_input_tokens.unwrap_or(0));
        // The total is the provider's word; the split only says how much of it lives an hour.
        let write = self.cache_creation_input_tokens.unwrap_or(split_sum);
        let c = self.iterations.unwrap_or_default().compaction;
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0).saturating_add(read).saturating_add(write).saturating_add(c.input_tokens),
            cached_input_tokens: read.saturating_add(c.cached_input_tokens),
            cache_write_tokens: write.saturating_add(c.cache_write_tokens),
            output_tokens: self.output_tokens.unwrap_or(0).saturating_add(c.output_tokens),
            // (`bounded` keeps it at most the output.)
            reasoning_tokens: self.output_tokens_details.and_then(|d| d.thinking_tokens).unwrap_or(0),
            cache_write_1h_tokens: split.ephemeral_1h_input_tokens.unwrap_or(0).saturating_add(c.cache_write_1h_tokens),
            web_search_requests: self.server_tool_use.and_then(|s| s.web_search_requests).unwrap_or(0),
            file_search_calls: 0,
            audio_input_tokens: 0,
            image_input_tokens: 0,
            audio_output_tokens: 0,
            image_output_tokens: 0,
            audio_input_ms: 0,
            input_characters: 0,
            container_gb: 0,
            cache_reported: self.cache_read_input_tokens.is_some(),
        }
        .bounded()
    }
}

#[derive(Deserialize)]
struct OpenAiBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    service_tier: Word,
    #[serde(default, deserialize_with = "object")]
    usage: Option<OpenAiUsage>,
}

/// An Anthropic answer's body, or a stream's `message_start` message.
#[derive(Deserialize)]
struct AnthropicBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default, deserialize_with = "object")]
    usage: Option<AnthropicUsage>,
    #[serde(default, deserialize_with = "crate::fingerprint::diagnosis")]
    diagnostics: Option<crate::fingerprint::Diagnosis>,
}

/// What a complete (non-streamed) JSON response says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseInfo {
    pub model: Option<String>,
    pub usage: Option<Usage>,
    /// The Responses API's response id (what a later request continues).
    pub response_id: Option<String>,
    /// The tier and geography the answer says served it.
    pub served: Served,
    /// Anthropic's advisor calls, or the Responses API's image generation
    /// tool's, reported apart from `usage`.
    pub advisor: Option<Usage>,
    /// The Responses API's image generation calls in the answer.
    pub image_calls: u64,
    /// Anthropic's own explanation of a prompt-cache miss.
    pub diagnosis: Option<crate::fingerprint::Diagnosis>,
}

/// An event of a stream whose events name their kind in `type` (OpenAI's
/// image and transcript streams): its kind (`error` for an event named
/// so), its `usage` and its text `delta`; `None` for data that is not one.
#[derive(Deserialize, Default)]
pub(crate) struct TypedEvent {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub usage: Option<serde_json::Value>,
    #[serde(default)]
    pub delta: Option<String>,
}

pub(crate) fn typed_event(name: Option<&str>, data: &str) -> Option<TypedEvent> {
    if name == Some("error") {
        return Some(TypedEvent { kind: Some("error".into()), ..Default::default() });
    }
    serde_json::from_str(data).ok()
}

/// Reads model and usage from a non-streamed JSON response body.
/// Error bodies and unparsable bodies give no usage.
pub fn parse_json_response(api: Api, body: &[u8]) -> ResponseInfo {
    match api {
        Api::GeminiGenerateContent => match serde_json::from_slice::<crate::gemini::GenerateResponse>(body) {
            Ok(r) => ResponseInfo { model: r.model_version.clone(), usage: r.usage(), ..Default::default() },
            Err(_) => ResponseInfo::default(),
        },
        Api::GeminiEmbedContent => ResponseInfo { usage: crate::gemini::embed_usage(body), ..Default::default() },
        Api::OpenAiImages | Api::OpenAiImageEdits => ResponseInfo { usage: images::from_body(body), ..Default::default() },
        Api::OpenAiTranscriptions | Api::OpenAiTranslations => ResponseInfo { usage: audio::from_body(body), ..Default::default() },
        Api::OpenAiSpeech => ResponseInfo { usage: speech::from_body(body), ..Default::default() },
        // (A decision has the Responses API's usage, and no id to continue.)
        Api::OpenAiDecisions => match serde_json::from_slice::<crate::responses_api::ResponseObject>(body) {
            Ok(r) => ResponseInfo { model: r.model.clone(), usage: r.usage(), ..Default::default() },
            Err(_) => ResponseInfo::default(),
        },
        Api::OpenAiResponses => match serde_json::from_slice::<crate::responses_api::ResponseObject>(body) {
            Ok(r) => ResponseInfo {
                model: r.model.clone(),
                response_id: r.id.clone(),
                served: r.served(),
                advisor: r.image_gen(),
                image_calls: r.image_calls(),
                usage: r.usage(),
                diagnosis: None,
            },
            Err(_) => ResponseInfo::default(),
        },
        Api::OpenAiChat | Api::OpenAiEmbeddings | Api::OpenAiCompletions | Api::OpenAiModerations => match serde_json::from_slice::<OpenAiBody>(body) {
            Ok(b) => ResponseInfo {
                model: b.model,
                usage: b.usage.filter(OpenAiUsage::counted).map(Usage::from),
                served: Served::openai(b.service_tier),
                response_id: None,
                advisor: None,
                image_calls: 0,
                diagnosis: None,
            },
            Err(_) => ResponseInfo::default(),
        },
        Api::AnthropicMessages => match serde_json::from_slice::<AnthropicBody>(body) {
            Ok(b) => ResponseInfo {
                model: b.model,
                served: b.usage.map(|u| u.served()).unwrap_or_default(),
                usage: b.usage.filter(AnthropicUsage::counted).map(|u| u.normalise()),
                advisor: b.usage.and_then(|u| u.advisor()),
                response_id: None,
                image_calls: 0,
                diagnosis: b.diagnostics,
            },
            Err(_) => ResponseInfo::default(),
        },
    }
}

/// Usage from a `usage` object found on its own (in the tail of a body too
/// large to parse whole).
/// The name (with its quotes) of the member holding an answer's usage in `api`'s format.
pub fn usage_member(api: Api) -> &'static [u8] {
    match api {
        Api::GeminiGenerateContent | Api::GeminiEmbedContent => b"\"usageMetadata\"",
        _ => b"\"usage\"",
    }
}

pub fn usage_from_value(api: Api, v: serde_json::Value) -> Option<Usage> {
    match api {
        Api::OpenAiResponses | Api::OpenAiDecisions => crate::responses_api::usage_from_value(v),
        Api::GeminiGenerateContent | Api::GeminiEmbedContent => crate::gemini::usage_from_value(v),
        Api::OpenAiImages | Api::OpenAiImageEdits => images::from_value(v),
        Api::OpenAiTranscriptions | Api::OpenAiTranslations => audio::from_value(v),
        Api::OpenAiSpeech => speech::from_value(v),
        Api::OpenAiChat | Api::OpenAiEmbeddings | Api::OpenAiCompletions | Api::OpenAiModerations => {
            from_object::<OpenAiUsage>(&v).filter(OpenAiUsage::counted).map(Usage::from)
        }
        Api::AnthropicMessages => from_object::<AnthropicUsage>(&v).filter(AnthropicUsage::counted).map(|u| u.normalise()),
    }
}

/// Anthropic's advisor calls in a `usage` object found on its own.
pub fn advisor_from_value(api: Api, v: &serde_json::Value) -> Option<Usage> {
    match api {
        Api::AnthropicMessages => from_object::<AnthropicUsage>(v)?.advisor(),
        _ => None,
    }
}

mod null_usage;
mod stream;

pub use stream::{StreamSummary, StreamTracker};
pub(crate) use stream::{provider_error, EventSeen};

#[cfg(test)]
mod tests;
pub(crate) mod audio;
pub(crate) mod images;
pub(crate) mod speech;
