//! A streamed answer followed event by event ([`StreamTracker`]): its
//! usage (OpenAI's usage chunk, Anthropic's `message_start` and
//! `message_delta`, the Responses API's and Gemini's typed events), its
//! model, its end, its errors; optionally the `"usage":null` members the
//! gateway caused taken out, or the stream translated for the client.

use serde::Deserialize;

use super::null_usage::strip_null_usage;
use super::{audio, images, object, speech, AnthropicBody, AnthropicUsage, OpenAiUsage, Usage};
use crate::request::Api;
use crate::served::{Served, Word};
use crate::sse::{parse_event, SseSplitter};

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
    /// `message_start`'s message: read as a whole answer's body is.
    message: Option<AnthropicBody>,
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
