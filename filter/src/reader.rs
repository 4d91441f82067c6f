//! How an answer is read: chosen once from the response's headers
//! ([`choose`]), then fed the body as it comes ([`Reader::stream_chunk`],
//! [`held`], [`Reader::feed_json`]). Pure: the glue reads the headers and the
//! body from Envoy, calls these, and applies what they return (headers to
//! drop, a body to send in place of the provider's, whether to hold).

use crate::decode::{self, Coding, DecodeError, Inflater};
use crate::errors::GatewayError;
use crate::guard::answer::AnswerGuard;
use crate::request::Api;
use crate::response::{BodyReading, JsonCollector};
use crate::translate::Direction;
use crate::usage::{StreamSummary, StreamTracker};

/// The record's note for an answer whose coding stopped its reading.
pub const UNREADABLE_CODING: &str = "usage_unreadable:content_encoding";

/// The response headers the filter decides on, from one read of the map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// 0 when missing or not a number.
    pub status: u16,
    pub content_type: Vec<u8>,
    pub has_content_length: bool,
    pub encoding: Option<Vec<u8>>,
    /// Headers named like Tollgate's own, sent by the upstream: removed,
    /// never passed on as the gateway's.
    pub impostors: Vec<String>,
    /// Gemini's `x-gemini-service-tier` (only a Gemini answer's is read).
    pub gemini_tier: crate::served::Served,
}

impl ResponseHead {
    pub fn read<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut h = ResponseHead::default();
        for (name, value) in pairs {
            match name {
                b":status" => h.status = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()).unwrap_or(0),
                b"content-type" => h.content_type = value.to_vec(),
                b"content-length" => h.has_content_length = true,
                // (An empty value names no coding.)
                b"content-encoding" if !value.is_empty() => h.encoding = Some(value.to_vec()),
                b"x-gemini-service-tier" => h.gemini_tier = crate::served::Served::gemini(value),
                n if n.starts_with(b"x-tollgate-") => h.impostors.push(String::from_utf8_lossy(n).into_owned()),
                _ => {}
            }
        }
        h
    }

    pub fn coding(&self) -> Coding {
        Coding::from_header(self.encoding.as_deref())
    }

    pub fn is_stream(&self) -> bool {
        self.content_type.starts_with(b"text/event-stream")
    }

    /// A guard reads the answer (when the policy reads answers): a success.
    /// (One in a coding the filter cannot read, br or zstd, goes on unread,
    /// or, when the policy redacts answers, not at all: [`choose`].)
    pub fn guardable(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What the request asked for that decides how its answer is read.
#[derive(Debug, Clone, Copy)]
pub struct Wants<'a> {
    /// The API the provider answers in.
    pub api: Api,
    pub translate: Option<Direction>,
    /// The flat names of a translated Responses request's namespaced functions.
    pub tool_names: Option<&'a std::rc::Rc<crate::translate::namespaces::ToolNames>>,
    /// A guard reads the answer.
    pub guarded: bool,
    /// The guard redacts answers: one it cannot read is not passed on, and
    /// this names its policy for the error the client gets instead.
    pub redacts: Option<&'a str>,
    pub cost_headers: bool,
    pub force_stream_usage: bool,
    pub max_response_bytes: usize,
    /// The client asked for a stream…
    pub client_stream: bool,
    /// …with its usage chunk (`stream_options.include_usage`).
    pub client_include_usage: bool,
    /// The route checks (and repairs) JSON answers.
    pub json_checked: bool,
    /// The answer is captured for evaluations.
    pub captured: bool,
    /// For a translated stream's `created` (read only when translating).
    pub now_s: u64,
}

impl Wants<'_> {
    /// Whether the filter rewrites a JSON answer (so decodes a compressed one).
    pub fn rewrites_json(&self) -> bool {
        self.translate.is_some() || self.guarded || self.json_checked
    }

    /// The usage chunk the gateway asked for on the client's behalf is taken out again.
    fn strips_usage(&self) -> bool {
        self.force_stream_usage && self.client_stream && !self.client_include_usage
    }

    /// The tracker of a stream the filter reads in plain text (`plain`:
    /// not compressed, or decoded for it).
    pub fn tracker(&self, plain: bool) -> StreamTracker {
        let tracker = StreamTracker::new(self.api, self.strips_usage() && plain);
        match (self.translate, plain) {
            (Some(d), true) => tracker.translating(d.stream(self.now_s, self.client_include_usage, self.tool_names.cloned())),
            _ => tracker,
        }
    }
}

/// How the body is read.
// One per request, inside its context: boxing the stream's tracker would
// cost an allocation per stream to save a few hundred bytes per request.
#[allow(clippy::large_enum_variant)]
pub enum Reader {
    None,
    /// SSE: followed event by event (through an inflater when compressed;
    /// `decoded`: the client gets the inflater's output, rewritten).
    Stream { tracker: StreamTracker, inflater: Option<Inflater>, decoded: bool },
    /// JSON held until complete (cost headers, a rewrite), up to `max_response_bytes`.
    Held { inflater: Option<Inflater> },
    /// JSON read as it passes.
    Json { collector: JsonCollector, inflater: Option<Inflater> },
    /// An encoding the filter cannot read: only its size is counted.
    Unreadable { bytes: u64 },
    /// Speech: the audio itself, passed on as it comes, its length measured
    /// (`plain`: not compressed, so its bytes are the audio's).
    Audio { meter: crate::request::speech::Meter, plain: bool },
}

/// How to read an answer, and what to change before its headers go on.
pub struct Choice {
    pub reader: Reader,
    /// Hold the headers until the body is complete.
    pub hold: bool,
    pub drop_encoding: bool,
    pub drop_length: bool,
    /// The coding the filter cannot read, by name (for the log).
    pub unreadable: Option<String>,
    /// The error the client gets in place of the answer.
    pub replace: Option<GatewayError>,
}

impl Choice {
    fn read(reader: Reader) -> Choice {
        Choice { reader, hold: false, drop_encoding: false, drop_length: false, unreadable: None, replace: None }
    }
}

/// How to read an answer with a body, from its headers.
pub fn choose(head: &ResponseHead, w: &Wants) -> Choice {
    let coding = head.coding();
    if let Coding::Unreadable(name) = &coding {
        // A client that speaks the other API cannot read it either: an
        // error it can. Nor is it passed on unread when it must be scanned.
        let replace = unread_error(&DecodeError::unreadable_coding(name), head.status, w);
        return Choice { unreadable: Some(name.clone()), replace, ..Choice::read(Reader::Unreadable { bytes: 0 }) };
    }
    let inflater = Inflater::new(&coding);
    if head.is_stream() {
        // A compressed stream the filter rewrites (translated, guarded, a
        // usage chunk stripped) goes on decoded, chunk by chunk, its pieces
        // held one at a time: at most max_response_bytes decoded (then it
        // ends, as if cut).
        let decoded = inflater.is_some() && (w.strips_usage() || w.translate.is_some() || w.guarded);
        let inflater = match decoded {
            true => inflater.map(|i| i.limited(w.max_response_bytes as u64)),
            false => inflater,
        };
        let mut tracker = w.tracker(decoded || inflater.is_none());
        if decoded {
            // Its decoding may stop mid-event: what goes on is whole
            // events, then an error event saying why.
            tracker = tracker.whole_events();
        }
        let drop_length = (tracker.rewrites() || w.guarded || decoded) && head.has_content_length;
        return Choice { drop_encoding: decoded, drop_length, ..Choice::read(Reader::Stream { tracker, inflater, decoded }) };
    }
    if w.api.speaks() && head.guardable() {
        // Audio, megabytes of it, for a player that starts on the first
        // bytes: never held (no cost headers), measured as it passes.
        return Choice::read(Reader::Audio { meter: Default::default(), plain: inflater.is_none() });
    }
    if w.cost_headers || w.rewrites_json() || w.captured {
        // The headers wait for the body: its cost, and the length of what
        // the client gets, are known only then.
        return Choice { hold: true, ..Choice::read(Reader::Held { inflater }) };
    }
    Choice::read(Reader::Json { collector: JsonCollector::new(w.max_response_bytes), inflater })
}

/// Held JSON needs more of the body before it is read (none is sent meanwhile).
pub fn holds_more(buffered: usize, end_of_stream: bool, max_response_bytes: usize) -> bool {
    !end_of_stream && buffered <= max_response_bytes
}

/// The error the client gets in place of an answer the filter cannot read
/// (`why`): its client could not read it untranslated, or a guard that
/// redacts answers could not scan it. None: it goes on as it came.
pub fn unread_error(why: &str, status: u16, w: &Wants) -> Option<GatewayError> {
    match (w.translate, w.redacts) {
        (Some(_), _) => Some(GatewayError::untranslatable_answer(status, why)),
        (None, Some(policy)) if (200..300).contains(&status) => Some(GatewayError::unread_answer(policy, why)),
        (None, _) => None,
    }
}

/// A held JSON answer, read once: whole (`end_of_stream`), or larger than
/// the filter holds.
pub struct HeldAnswer {
    /// The body, decoded when it is sent on decoded.
    pub body: Vec<u8>,
    /// The client gets it decoded: drop the content-encoding.
    pub sent_decoded: bool,
    /// Reads the body from here on ([`Reader::feed_json`]).
    pub reader: Reader,
    /// The error the client gets in place of the answer.
    pub replace: Option<GatewayError>,
}

/// What a held answer becomes. A compressed answer the filter rewrites goes
/// on decoded (its headers are still held), if it decodes whole within what
/// the filter holds; otherwise as it came, unrewritten, or, translated, as
/// an error the client can read.
pub fn held(inflater: Option<Inflater>, body: Vec<u8>, end_of_stream: bool, status: u16, w: &Wants) -> HeldAnswer {
    let (mut body, mut sent_decoded, mut undecoded) = (body, false, None);
    let inflater = match inflater {
        Some(mut inf) if end_of_stream && w.rewrites_json() => match decode::whole(&mut inf, &body, w.max_response_bytes) {
            Ok(plain) => {
                (body, sent_decoded) = (plain, true);
                None
            }
            Err(e) => {
                undecoded = Some(e);
                inf.fresh()
            }
        },
        other => other,
    };
    // Not whole, or not decoded: a translated answer's client could not
    // read it, a redacting guard cannot scan it.
    let why = match undecoded {
        Some(e) => Some(e.untranslatable().to_string()),
        None if !end_of_stream => {
            let to = if w.translate.is_some() { "translate" } else { "scan" };
            Some(format!("it is larger than the gateway holds to {to} (max_response_bytes, {} bytes)", w.max_response_bytes))
        }
        None => None,
    };
    let replace = why.and_then(|why| unread_error(&why, status, w));
    HeldAnswer { body, sent_decoded, reader: Reader::Json { collector: JsonCollector::new(w.max_response_bytes), inflater }, replace }
}

impl Reader {
    /// A chunk of a streamed answer as it came: what the client gets in its
    /// place (None: the chunk as it came).
    pub fn stream_chunk(&mut self, guard: Option<&mut AnswerGuard>, raw: Vec<u8>, end_of_stream: bool) -> Option<Vec<u8>> {
        let Reader::Stream { tracker, inflater, decoded } = self else { return None };
        let chunk = match inflater.as_mut() {
            Some(inf) if *decoded => {
                let mut plain = Vec::new();
                inf.push(&raw, |d| plain.extend_from_slice(d));
                Some(plain)
            }
            Some(inf) => {
                // Read through the inflater, passed on as it came.
                inf.push(&raw, |d| {
                    tracker.push(d);
                });
                if end_of_stream {
                    tracker.finish();
                }
                None
            }
            None => Some(raw),
        };
        let chunk = chunk?;
        let mut out = tracker.push(&chunk);
        // What is sent on decoded stops decoding, or ends before its
        // compressed data does: the client is told why (and gets no
        // partial event).
        let stopped = inflater.as_ref().and_then(|i| if end_of_stream { i.ended() } else { i.error() });
        if let Some(e) = stopped {
            out.extend(tracker.end_with_error("content_encoding", e.answer_message()));
        }
        if end_of_stream {
            out.extend_from_slice(&tracker.finish());
        }
        match guard {
            Some(g) => {
                let mut guarded = g.push(if tracker.rewrites() { &out } else { &chunk });
                if end_of_stream {
                    guarded.extend_from_slice(&g.finish());
                }
                Some(guarded)
            }
            // (A stream sent on decoded is always rewritten: whole events.)
            None => tracker.rewrites().then_some(out),
        }
    }

    /// Feeds JSON answer bytes (as they came) to its reader.
    pub fn feed_json(&mut self, bytes: &[u8]) {
        if let Reader::Json { collector, inflater } = self {
            match inflater {
                Some(inf) => inf.push(bytes, |d| collector.push(d)),
                None => collector.push(bytes),
            }
        }
    }

    /// The JSON answer is complete (or ended early): what it says. None
    /// when this is not a JSON reader; the reader is spent either way.
    pub fn finish_json(&mut self, api: Api) -> Option<BodyReading> {
        let Reader::Json { collector, inflater } = std::mem::replace(self, Reader::None) else { return None };
        let mut reading = collector.finish(api);
        if inflater.as_ref().and_then(|i| i.error()).is_some() && reading.info.usage.is_none() {
            reading.note = Some(UNREADABLE_CODING);
        }
        Some(reading)
    }

    /// Speech audio as it came, to its meter: `size` bytes, of which
    /// `start` are the first (all its meter reads: [`Self::audio_wants`])
    /// and `end` the last (at most [`crate::request::speech::TAIL`]).
    pub fn feed_audio(&mut self, start: &[u8], end: &[u8], size: usize) {
        if let Reader::Audio { meter, .. } = self {
            meter.push_parts(start, end, size);
        }
    }

    /// How many of the next audio bytes the meter reads.
    pub fn audio_wants(&self) -> usize {
        match self {
            Reader::Audio { meter, .. } => meter.wants(),
            _ => 0,
        }
    }

    /// How long the speech audio passed plays, when its bytes say.
    pub fn played_ms(&self, format: crate::request::speech::Format) -> Option<u64> {
        match self {
            Reader::Audio { meter, plain: true } => meter.played_ms(format),
            _ => None,
        }
    }

    /// What a streamed or unreadable answer tells the record: the stream's
    /// summary, a note, and the bytes to estimate from (None: not one of those).
    pub fn observed(&self) -> Option<(Option<StreamSummary>, Option<&'static str>, u64)> {
        match self {
            Reader::Stream { tracker, inflater, .. } => Some((Some(tracker.summary()), inflater.as_ref().and_then(|i| i.error()).map(|_| UNREADABLE_CODING), 0)),
            Reader::Unreadable { bytes } => Some((None, Some(UNREADABLE_CODING), bytes.saturating_mul(4))),
            Reader::Audio { meter, .. } => Some((None, None, meter.bytes())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
