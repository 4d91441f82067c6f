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

use serde::Deserialize;

use crate::request::Api;
use crate::served::{Served, Word};
use crate::sse::{parse_event, SseSplitter};

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

// ---- streams ---------------------------------------------------------------

/// How many characters a JSON string holds, read without keeping it (a
/// stream's text is only counted, for the estimate when usage is missing).
#[derive(Default)]
struct Chars(u64);

impl<'de> Deserialize<'de> for Chars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Count;
        impl serde::de::Visitor<'_> for Count {
            type Value = Chars;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, s: &str) -> Result<Chars, E> {
                Ok(Chars(s.chars().count() as u64))
            }
        }
        d.deserialize_str(Count)
    }
}

/// A JSON string borrowed from the event when it has no escapes.
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keep<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Keep<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(Keep(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct OpenAiDelta<'a> {
    #[serde(default)]
    content: Option<Chars>,
    #[serde(default)]
    reasoning_content: Option<Chars>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct OpenAiChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<OpenAiDelta<'a>>,
    /// Legacy completions stream their text here.
    #[serde(default)]
    text: Option<Chars>,
}

#[derive(Deserialize)]
struct OpenAiChunk<'a> {
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default)]
    service_tier: Word,
    #[serde(default, deserialize_with = "object")]
    usage: Option<OpenAiUsage>,
    #[serde(default, borrow)]
    choices: Vec<OpenAiChoice<'a>>,
}

#[derive(Deserialize)]
struct AnthropicMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default, deserialize_with = "object")]
    usage: Option<AnthropicUsage>,
    #[serde(default, deserialize_with = "crate::fingerprint::diagnosis")]
    diagnostics: Option<crate::fingerprint::Diagnosis>,
}

#[derive(Deserialize)]
struct AnthropicDelta {
    #[serde(default)]
    text: Option<Chars>,
    #[serde(default)]
    partial_json: Option<Chars>,
    #[serde(default)]
    thinking: Option<Chars>,
}

#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: Option<AnthropicMessage>,
    #[serde(default, deserialize_with = "object")]
    usage: Option<AnthropicUsage>,
    #[serde(default)]
    delta: Option<AnthropicDelta>,
}

/// Follows a streamed response event by event. Optionally removes what the
/// gateway added upstream (OpenAI's usage chunk and the `"usage":null`
/// fields) so the client receives exactly the stream it asked for.
#[derive(Debug)]
pub struct StreamTracker {
    api: Api,
    splitter: SseSplitter,
    strip_usage: bool,
    openai_usage: Option<Usage>,
    anthropic_usage: Option<AnthropicUsage>,
    diagnosis: Option<crate::fingerprint::Diagnosis>,
    model: Option<String>,
    finished: bool,
    error_event: bool,
    output_chars: u64,
    usage_final: bool,
    oversized: bool,
    /// Sent on in whole events only (a decoded stream), so that an error
    /// event can follow what was sent ([`Self::whole_events`]).
    whole_events: bool,
    /// The stream ended for the client ([`Self::end_with_error`]).
    client_ended: bool,
    /// Rewrites the (Anthropic) stream as OpenAI chunks ([`crate::translate_stream`]).
    translator: Option<Box<dyn crate::translate::StreamTranslator>>,
    response_id: Option<String>,
    /// OpenAI formats: the tier the chunks say (Anthropic's is in its usage).
    served: Served,
    /// Gemini: the most grounding queries an event named. Responses API:
    /// the hosted web search calls done so far.
    searches: u64,
    /// Responses API: the hosted file search calls done so far.
    file_searches: u64,
    /// The ends of an over-long event going by ([`crate::big_event`]).
    big: Option<crate::big_event::BigEvent>,
    /// Responses API: the image generation tool's usage, and its calls done so far.
    image_gen: Option<Usage>,
    image_calls: u64,
    searches_reported: Option<u64>,
}

/// The error event a provider in `api`'s format would send saying
/// `message`, as the translators read such events.
pub(crate) fn provider_error(api: Api, code: &str, message: &str) -> (Option<&'static str>, String) {
    match api {
        Api::AnthropicMessages => (Some("error"), serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}}).to_string()),
        Api::OpenAiResponses => (Some("error"), serde_json::json!({"type": "error", "code": code, "message": message, "param": null}).to_string()),
        _ => (None, serde_json::json!({"error": {"message": message, "type": "server_error", "param": null, "code": code}}).to_string()),
    }
}

/// What the client of a translated stream is told when an event is too
/// large to translate.
const EVENT_TOO_LARGE: &str = "The provider sent a stream event larger than the gateway reads (1 MiB): the rest of the answer cannot be translated.";

/// What one event of a stream whose every event is typed JSON (Responses
/// API, Gemini) says: read by [`crate::responses_api`] and [`crate::gemini`].
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct EventSeen {
    pub model: Option<String>,
    /// The Responses API's response id.
    pub id: Option<String>,
    /// The usage in the event (the terminal event's is final).
    pub usage: Option<Usage>,
    /// The tier the event says served the answer.
    pub served: Served,
    /// Gemini: the grounding search queries the event names (its last
    /// events may carry them apart from the usage). Responses API: a
    /// hosted web search call done.
    pub searches: u64,
    /// Responses API: a hosted file search call done.
    pub file_searches: u64,
    /// Responses API: an image generation call done, and the terminal
    /// event's `tool_usage.image_gen`.
    pub image_calls: u64,
    pub image_gen: Option<Usage>,
    /// Responses API: the billable web searches the terminal event reports
    /// (`tool_usage.web_search.num_requests`), which the items cannot tell.
    pub searches_reported: Option<u64>,
    /// Characters of generated output.
    pub output_chars: u64,
    /// A terminal event (completed, incomplete, failed, finished, or an error).
    pub terminal: bool,
    /// The stream reports a failure.
    pub error: bool,
}

/// The result of following a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// The provider's terminal event was seen (`data: [DONE]` or `message_stop`).
    pub finished: bool,
    /// The provider sent an error event in the stream.
    pub error_event: bool,
    /// Characters of generated content seen (for estimating cut streams).
    pub output_chars: u64,
    /// The usage is the provider's final count (OpenAI's usage chunk, or
    /// Anthropic's `message_delta`), not the partial count of `message_start`.
    pub usage_final: bool,
    /// An event longer than the splitter's limit went by unread.
    pub oversized: bool,
    /// The tier and geography the stream says served it.
    pub served: Served,
    /// Anthropic's advisor calls, or the Responses API's image generation
    /// tool's (`tool_usage.image_gen`), reported apart from `usage`.
    pub advisor: Option<Usage>,
    /// The Responses API's image generation calls done (an estimate's
    /// basis when the answer reports no `tool_usage`).
    pub image_calls: u64,
    /// Anthropic's own explanation of a prompt-cache miss (`message_start`).
    pub diagnosis: Option<crate::fingerprint::Diagnosis>,
}

impl StreamTracker {
    pub fn new(api: Api, strip_usage: bool) -> Self {
        StreamTracker {
            api,
            splitter: SseSplitter::new(),
            strip_usage: strip_usage && matches!(api, Api::OpenAiChat | Api::OpenAiCompletions),
            openai_usage: None,
            anthropic_usage: None,
            diagnosis: None,
            model: None,
            finished: false,
            error_event: false,
            output_chars: 0,
            usage_final: false,
            oversized: false,
            whole_events: false,
            client_ended: false,
            translator: None,
            response_id: None,
            served: Served::default(),
            searches: 0,
            file_searches: 0,
            big: None,
            image_gen: None,
            image_calls: 0,
            searches_reported: None,
        }
    }

    /// Sends on only whole events (a partial one is held until its end),
    /// as a rewriting tracker does: for a stream the filter decodes, whose
    /// decoding may stop mid-event and be followed by an error event.
    pub fn whole_events(mut self) -> Self {
        self.whole_events = true;
        self
    }

    /// Also rewrites the stream with `t` (a stream in the other provider format).
    pub fn translating(mut self, t: Box<dyn crate::translate::StreamTranslator>) -> Self {
        self.translator = Some(t);
        self
    }

    /// True when the tracker rewrites the stream (then the caller must send
    /// what [`push`](Self::push) returns instead of the chunk).
    pub fn rewrites(&self) -> bool {
        self.strip_usage || self.whole_events || self.translator.is_some()
    }

    /// Consumes a chunk. When rewriting, returns the bytes to send in its
    /// place: every event completed so far, rewritten; an unfinished event is
    /// held until its end arrives. When not rewriting, returns an empty vec
    /// and the chunk is to be passed on unchanged.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut splitter = std::mem::take(&mut self.splitter);
        splitter.push(chunk, |raw, whole| {
            let first_oversized = !whole && !self.oversized;
            let keep = if whole {
                self.observe(raw)
            } else {
                // A fragment of an over-long event: passed on unread but
                // for its ends, its size counted as generated output for the estimate.
                self.oversized = true;
                self.output_chars = self.output_chars.saturating_add(raw.len() as u64);
                self.observe_big(raw);
                Keep::Event
            };
            if self.translator.is_some() {
                if first_oversized {
                    // An event past the splitter's limit cannot be translated.
                    out.extend(self.end_with_error("event_too_large", EVENT_TOO_LARGE));
                } else if let (Some(t), false) = (self.translator.as_mut(), self.client_ended) {
                    let ev = parse_event(raw);
                    out.extend(t.event(ev.name, &ev.data));
                }
            } else if self.client_ended {
                // Ended for the client: nothing more of the stream.
            } else if self.strip_usage {
                match keep {
                    Keep::Event => out.extend_from_slice(raw),
                    Keep::WithoutNullUsage => strip_null_usage(raw, &mut out),
                    Keep::Drop => {}
                }
            } else if self.whole_events {
                out.extend_from_slice(raw);
            }
        });
        self.splitter = splitter;
        out
    }

    /// Ends a rewritten stream for the client: an error event in its API's
    /// format saying `message` (the provider's error event, translated when
    /// translating), and nothing more of the stream after it. Empty when
    /// the stream is not rewritten (its bytes go on as they come, so an
    /// event may be half sent) or already ended.
    pub fn end_with_error(&mut self, code: &str, message: &str) -> Vec<u8> {
        if self.client_ended || !self.rewrites() {
            return Vec::new();
        }
        self.client_ended = true;
        let (name, data) = provider_error(self.api, code, message);
        match self.translator.as_mut() {
            Some(t) => t.event(name, &data),
            None => crate::sse::event_bytes(name, &data),
        }
    }

    /// At end of stream: the held tail (when rewriting), to be sent as is.
    pub fn finish(&mut self) -> Vec<u8> {
        let skipping = self.splitter.skipping();
        let tail = self.splitter.take_pending();
        if !tail.is_empty() && !skipping {
            // A last event without its blank line still counts.
            self.observe(&tail);
        }
        if let Some(t) = self.translator.as_mut() {
            let ev = parse_event(&tail);
            return if tail.is_empty() || skipping || self.client_ended { Vec::new() } else { t.event(ev.name, &ev.data) };
        }
        if (self.strip_usage || self.whole_events) && !self.client_ended {
            tail
        } else {
            Vec::new()
        }
    }

    pub fn summary(&self) -> StreamSummary {
        let usage = match self.api {
            // (Embeddings are never streamed.)
            Api::OpenAiChat | Api::OpenAiEmbeddings | Api::OpenAiCompletions | Api::GeminiEmbedContent | Api::OpenAiModerations | Api::OpenAiImages | Api::OpenAiImageEdits => {
                self.openai_usage
            }
            // (Decisions are never streamed.)
            Api::OpenAiTranscriptions | Api::OpenAiTranslations | Api::OpenAiSpeech | Api::OpenAiDecisions => self.openai_usage,
            // Calls done count even when the final usage never came (a cut stream is charged an estimate with them).
            Api::OpenAiResponses => match self.openai_usage {
                Some(u) => Some(Usage {
                    // (The answer's own count of billable searches, where it gives one.)
                    web_search_requests: self.searches_reported.unwrap_or(u.web_search_requests.max(self.searches)),
                    file_search_calls: u.file_search_calls.max(self.file_searches),
                    ..u
                }),
                None if self.searches > 0 || self.file_searches > 0 => {
                    Some(Usage { web_search_requests: self.searches, file_search_calls: self.file_searches, ..Default::default() })
                }
                None => None,
            },
            Api::GeminiGenerateContent => {
                self.openai_usage.map(|u| Usage { web_search_requests: u.web_search_requests.max(self.searches), ..u })
            }
            Api::AnthropicMessages => self.anthropic_usage.map(|u| u.normalise()),
        };
        let served = match self.api {
            Api::AnthropicMessages => self.anthropic_usage.map(|u| u.served()).unwrap_or_default(),
            _ => self.served,
        };
        StreamSummary {
            usage,
            served,
            model: self.model.clone(),
            finished: self.finished,
            error_event: self.error_event,
            output_chars: self.output_chars,
            usage_final: self.usage_final,
            oversized: self.oversized,
            advisor: match self.api {
                Api::OpenAiResponses => self.image_gen,
                _ => self.anthropic_usage.and_then(|u| u.advisor()),
            },
            image_calls: self.image_calls,
            diagnosis: self.diagnosis,
        }
    }

    /// The Responses API's response id (what a later request continues).
    pub fn response_id(&self) -> Option<&str> {
        self.response_id.as_deref()
    }

    fn observe(&mut self, raw: &[u8]) -> Keep {
        let ev = parse_event(raw);
        if !ev.has_data {
            return Keep::Event;
        }
        match self.api {
            Api::OpenAiChat | Api::OpenAiEmbeddings | Api::OpenAiCompletions | Api::OpenAiModerations | Api::OpenAiDecisions => self.observe_openai(ev.name, &ev.data),
            Api::GeminiGenerateContent | Api::GeminiEmbedContent => {
                let seen = crate::gemini::observe(&ev.data);
                self.output_chars = self.output_chars.saturating_add(seen.output_chars);
                if self.model.is_none() {
                    self.model = seen.model;
                }
                self.searches = self.searches.max(seen.searches);
                self.saw(seen.usage, seen.terminal, seen.error);
                Keep::Event
            }
            Api::OpenAiResponses => {
                let seen = crate::responses_api::observe(ev.name, &ev.data);
                self.output_chars = self.output_chars.saturating_add(seen.output_chars);
                if self.model.is_none() {
                    self.model = seen.model;
                }
                if self.response_id.is_none() {
                    self.response_id = seen.id;
                }
                self.served = self.served.then(seen.served);
                self.searches = self.searches.saturating_add(seen.searches);
                self.file_searches = self.file_searches.saturating_add(seen.file_searches);
                self.image_calls = self.image_calls.saturating_add(seen.image_calls);
                self.image_gen = seen.image_gen.or(self.image_gen);
                self.searches_reported = seen.searches_reported.or(self.searches_reported);
                if let Some(u) = seen.usage {
                    self.openai_usage = Some(u);
                    self.usage_final = true;
                }
                self.finished |= seen.terminal;
                self.error_event |= seen.error;
                Keep::Event
            }
            Api::AnthropicMessages => {
                self.observe_anthropic(ev.name, &ev.data);
                Keep::Event
            }
            Api::OpenAiTranscriptions | Api::OpenAiTranslations | Api::OpenAiSpeech => {
                let seen = if self.api.speaks() { speech::observe(ev.name, &ev.data) } else { audio::observe(ev.name, &ev.data) };
                self.output_chars = self.output_chars.saturating_add(seen.output_chars);
                self.saw(seen.usage, seen.done, seen.error);
                Keep::Event
            }
            Api::OpenAiImages | Api::OpenAiImageEdits => {
                let seen = images::observe(ev.name, &ev.data);
                self.image_done(seen.usage, seen.completed);
                self.error_event |= seen.error;
                Keep::Event
            }
        }
    }

    /// An event with its usage (the latest stands), whether it ends the
    /// stream (its usage is then final) and whether it is an error.
    fn saw(&mut self, usage: Option<Usage>, terminal: bool, error: bool) {
        if let Some(u) = usage {
            self.openai_usage = Some(u);
        }
        self.usage_final |= terminal && self.openai_usage.is_some();
        self.finished |= terminal;
        self.error_event |= error;
    }

    /// An image of a stream completed (with its usage, when it says one):
    /// added to the images before it.
    fn image_done(&mut self, usage: Option<Usage>, completed: bool) {
        if let Some(u) = usage {
            self.openai_usage = Some(images::add(self.openai_usage, u));
        }
        self.usage_final |= completed && self.openai_usage.is_some();
        self.finished |= completed;
    }

    /// A fragment of an over-long event; at its end, what its ends say.
    fn observe_big(&mut self, fragment: &[u8]) {
        if !self.big.get_or_insert_with(Default::default).push(fragment) {
            return;
        }
        let Some(seen) = self.big.take().map(|b| b.read(self.api)) else { return };
        if self.api.makes_images() {
            return self.image_done(seen.usage, seen.terminal);
        }
        self.image_gen = seen.image_gen.or(self.image_gen);
        self.searches_reported = seen.searches_reported.or(self.searches_reported);
        self.saw(seen.usage, seen.terminal, seen.failed);
    }

    fn observe_openai(&mut self, name: Option<&str>, data: &str) -> Keep {
        if data.trim() == "[DONE]" {
            self.finished = true;
            return Keep::Event;
        }
        if name == Some("error") || data.starts_with("{\"error\"") {
            self.error_event = true;
            return Keep::Event;
        }
        let Ok(chunk) = serde_json::from_str::<OpenAiChunk>(data) else {
            return Keep::Event;
        };
        if self.model.is_none() {
            self.model = chunk.model.map(|m| m.0.into_owned());
        }
        self.served = self.served.then(Served::openai(chunk.service_tier));
        for c in &chunk.choices {
            self.output_chars += char_len(&c.text);
            if let Some(d) = &c.delta {
                self.output_chars += char_len(&d.content) + char_len(&d.reasoning_content);
                if let Some(t) = &d.tool_calls {
                    self.output_chars += t.get().len() as u64;
                }
            }
        }
        match chunk.usage {
            Some(u) => {
                // (`{}` is no count: the stream is then estimated.)
                if u.counted() {
                    self.openai_usage = Some(Usage::from(u));
                    self.usage_final = true;
                }
                if chunk.choices.is_empty() {
                    Keep::Drop
                } else {
                    Keep::Event
                }
            }
            None => Keep::WithoutNullUsage,
        }
    }

    fn observe_anthropic(&mut self, name: Option<&str>, data: &str) {
        let Ok(ev) = serde_json::from_str::<AnthropicEvent>(data) else {
            return;
        };
        let kind = if ev.kind.is_empty() { name.unwrap_or("") } else { ev.kind.as_str() };
        match kind {
            "message_start" => {
                if let Some(m) = ev.message {
                    self.model = m.model.or(self.model.take());
                    self.diagnosis = m.diagnostics.or(self.diagnosis);
                    if let Some(u) = m.usage {
                        self.merge_anthropic(u);
                    }
                }
            }
            "message_delta" => {
                if let Some(u) = ev.usage {
                    self.merge_anthropic(u);
                    self.usage_final = true;
                }
            }
            "content_block_delta" => {
                if let Some(d) = &ev.delta {
                    self.output_chars += char_len(&d.text) + char_len(&d.partial_json) + char_len(&d.thinking);
                }
            }
            "message_stop" => self.finished = true,
            "error" => self.error_event = true,
            _ => {}
        }
    }

    fn merge_anthropic(&mut self, u: AnthropicUsage) {
        match &mut self.anthropic_usage {
            Some(acc) => acc.merge(u),
            None => self.anthropic_usage = Some(u),
        }
    }
}

enum Keep {
    Event,
    WithoutNullUsage,
    Drop,
}

fn char_len(s: &Option<Chars>) -> u64 {
    s.as_ref().map_or(0, |c| c.0)
}

/// Writes `raw` to `out` without the chunk's top-level `"usage":null`
/// member, which the gateway caused by forcing `include_usage` (whitespace
/// variants, `"usage" : null`, too). Members named `usage` deeper in the
/// chunk are the provider's and stay.
///
/// OpenAI sends the member near the end (last, or before `obfuscation`),
/// so it is looked for from the end first: the last `"usage":null` is the
/// top level's when what follows it closes the chunk's object. (A forward
/// search read the whole chunk for it: in wasm, three times the rest of the
/// chunk's reading.) Otherwise the chunk is followed brace by brace, strings
/// skipped, to find it. In JSON text a `"` inside a string is always
/// escaped, so an unescaped `"usage"` is a member name.
fn strip_null_usage(raw: &[u8], out: &mut Vec<u8>) {
    static LAST: std::sync::OnceLock<memchr::memmem::FinderRev<'static>> = std::sync::OnceLock::new();
    let last = LAST.get_or_init(|| memchr::memmem::FinderRev::new(b"\"usage\""));
    // No `"usage"` at all (providers that leave the member out): nothing to
    // walk for.
    let Some(at) = last.rfind(raw) else {
        out.extend_from_slice(raw);
        return;
    };
    let last_one = null_usage_member_at(raw, at).filter(|&len| raw.get(at + len..).is_some_and(closes_the_object)).map(|len| (at, len));
    let Some((p, len)) = last_one.or_else(|| top_level_null_usage(raw)) else {
        out.extend_from_slice(raw);
        return;
    };
    let before = raw.get(..p).unwrap_or_default();
    let mut after = p + len;
    // Drop a preceding comma (`,"usage":null`) or else a following one.
    match before.iter().rposition(|b| !b.is_ascii_whitespace()).filter(|&q| before.get(q) == Some(&b',')) {
        Some(comma) => out.extend_from_slice(before.get(..comma).unwrap_or_default()),
        None => {
            out.extend_from_slice(before);
            while raw.get(after).is_some_and(u8::is_ascii_whitespace) {
                after += 1;
            }
            if raw.get(after) == Some(&b',') {
                after += 1;
            }
        }
    }
    out.extend_from_slice(raw.get(after..).unwrap_or_default());
}

/// Where the top-level object's `"usage":null` member starts, and its
/// length: the chunk followed brace by brace, strings skipped.
fn top_level_null_usage(raw: &[u8]) -> Option<(usize, usize)> {
    let mut depth = 0u32;
    for (i, b) in tollgate_protocol::json::outside_strings(raw) {
        match b {
            b'"' if depth == 1 => {
                if let Some(len) = null_usage_member_at(raw, i) {
                    return Some((i, len));
                }
            }
            b'{' | b'[' => depth = depth.saturating_add(1),
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Whether `rest`, the text after a member, closes the object the member is
/// in with nothing but whitespace after: the member is then one of the
/// outermost object's.
fn closes_the_object(rest: &[u8]) -> bool {
    let mut depth = 0u32;
    for (i, b) in tollgate_protocol::json::outside_strings(rest) {
        match b {
            b'{' | b'[' => depth = depth.saturating_add(1),
            b'}' | b']' if depth == 0 => return b == b'}' && rest.get(i + 1..).is_some_and(|t| t.iter().all(u8::is_ascii_whitespace)),
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn null_usage_member_at(raw: &[u8], i: usize) -> Option<usize> {
    let rest = raw.get(i..)?;
    let after_name = rest.strip_prefix(b"\"usage\"")?;
    let mut k = 7;
    let mut r = after_name;
    while let Some((b, tail)) = r.split_first() {
        if b.is_ascii_whitespace() {
            k += 1;
            r = tail;
        } else {
            break;
        }
    }
    let r = r.strip_prefix(b":")?;
    k += 1;
    let mut r2 = r;
    while let Some((b, tail)) = r2.split_first() {
        if b.is_ascii_whitespace() {
            k += 1;
            r2 = tail;
        } else {
            break;
        }
    }
    r2.strip_prefix(b"null")?;
    Some(k + 4)
}

#[cfg(test)]
mod tests;
pub(crate) mod audio;
pub(crate) mod images;
pub(crate) mod speech;
