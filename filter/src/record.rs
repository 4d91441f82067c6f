//! The usage record: one per request, the unit the control service counts.
//! docs/usage-record.md is its contract; bump `v` on incompatible change.

use crate::request::estimate_tokens;
use crate::usage::{ResponseInfo, StreamSummary, Usage};

pub use tollgate_protocol::record::*;

/// How the response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The response body reached its end of stream.
    Complete,
    /// The upstream connection ended the response early.
    UpstreamReset,
    /// The client disconnected early.
    DownstreamReset,
}

/// What was seen of a response that went upstream.
#[derive(Debug, Clone)]
pub struct Observed {
    pub status: u16,
    /// Response headers came from the upstream (not an Envoy local reply).
    pub upstream_responded: bool,
    pub termination: Termination,
    pub estimated_input_tokens: u64,
    /// The image output tokens the request asked for (an image
    /// generation's `n` images at their quality and size: its
    /// reservation's output side), the estimate of an answer whose usage
    /// is missing: its bytes are base64 images, no measure of tokens.
    pub image_bound: Option<u64>,
    /// An image edit's input images as its reservation counted them (`n`
    /// times: each image a call of its own), the estimate's image input
    /// when the usage is missing (part of `estimated_input_tokens`).
    pub image_input_bound: u64,
    /// A transcription's or translation's audio length (ms): the
    /// estimate's audio when the usage is missing, as tokens (part of
    /// `estimated_input_tokens`) and as a length ([`crate::pricing::Price::billed`]
    /// keeps the one the model bills).
    pub audio_input_ms: u64,
    /// A speech request's input characters (what `tts-1` bills: counted
    /// from the request, which its answer never reports).
    pub input_characters: u64,
    /// A speech answer's audio output tokens, when it reports no usage: its
    /// audio's length where its bytes state it, else its text's expected
    /// reading time ([`crate::request::speech`]). Its bytes are audio, no
    /// measure of tokens.
    pub spoken: Option<u64>,
    /// Non-streamed: what the JSON body said.
    pub json: Option<ResponseInfo>,
    /// Why the body could not be read whole, as the record's `error_code`
    /// (`usage_from_tail:…` when the usage was still found,
    /// `usage_unreadable:…` when it was estimated), and the body's size.
    pub body_note: Option<&'static str>,
    pub body_bytes: u64,
    /// Streamed: what the events said.
    pub stream: Option<StreamSummary>,
    /// What the answer's headers say served it (Gemini's tier).
    pub head_served: crate::served::Served,
    /// The GB of the code interpreter containers the request had the
    /// provider create ([`crate::request::server_tools`]): billed when the
    /// provider took it, what its answer says or not.
    pub container_gb: u64,
}

impl Observed {
    /// The tier and geography the answer says served it ([`crate::served`]).
    pub fn served(&self) -> crate::served::Served {
        let body = match (&self.stream, &self.json) {
            (Some(s), _) => s.served,
            (None, Some(j)) => j.served,
            (None, None) => Default::default(),
        };
        self.head_served.then(body)
    }
}

/// The usage a request is charged: what [`account`] read, with the web
/// searches its price bills on every answered request
/// ([`Price::billed`](crate::pricing::Price::billed)); a request nothing
/// was billed for (no answer, an error status) stays free.
pub fn charged(usage: Usage, source: UsageSource, price: Option<&crate::pricing::Price>) -> Usage {
    match price {
        Some(p) if source != UsageSource::None => p.billed(usage),
        _ => usage,
    }
}

/// The accounting rule (docs/usage-record.md, "What a request costs"):
///
/// - Provider-reported usage is used whenever it is complete.
/// - No answer from the provider at all (unreachable, or the client left
///   before the provider answered) costs nothing.
/// - A provider error status costs nothing.
/// - A stream that ends early (cut by the provider, or aborted by the
///   client) is charged for what was consumed: input as reported (Anthropic
///   reports it at the start) or estimated from the request, and output as
///   reported or estimated from the text streamed so far, whichever is
///   larger. Providers bill generated tokens even when the client stops
///   reading, so an estimate is closer to the bill than zero.
pub fn account(o: &Observed) -> (Usage, UsageSource, Outcome, Option<String>) {
    let (mut u, mut source, outcome, error) = account_answer(o);
    // A container the request had the provider create is billed once the
    // provider took the request, whatever its answer says.
    if o.container_gb > 0 && o.upstream_responded && o.status < 400 {
        u.container_gb = o.container_gb;
        if source == UsageSource::None {
            source = UsageSource::Estimated;
        }
    }
    (u, source, outcome, error)
}

/// The accounting rule for what the answer says (or shows) it used.
fn account_answer(o: &Observed) -> (Usage, UsageSource, Outcome, Option<String>) {
    let incomplete_outcome = match o.termination {
        Termination::Complete => None,
        Termination::UpstreamReset => Some(Outcome::UpstreamCut),
        Termination::DownstreamReset => Some(Outcome::ClientAborted),
    };
    if !o.upstream_responded {
        return match o.termination {
            Termination::DownstreamReset => {
                (Usage::default(), UsageSource::None, Outcome::ClientAborted, Some("client_aborted".to_string()))
            }
            _ => (Usage::default(), UsageSource::None, Outcome::ProviderError, Some("no_upstream_response".to_string())),
        };
    }
    if o.status >= 400 && o.termination == Termination::Complete {
        return (Usage::default(), UsageSource::None, Outcome::ProviderError, Some(format!("upstream_{}", o.status)));
    }
    if let Some(s) = &o.stream {
        // A client that hangs up once the stream's terminal event and its
        // final usage reached it (Codex closes on `response.completed`) got
        // the whole answer. (Not an image stream: each image completes.)
        let hung_up_after_end = o.termination == Termination::DownstreamReset && s.usage_final && o.image_bound.is_none();
        let complete = s.finished && (o.termination == Termination::Complete || hung_up_after_end);
        let outcome = if s.error_event {
            Outcome::ProviderError
        } else if complete {
            Outcome::Ok
        } else {
            incomplete_outcome.unwrap_or(Outcome::UpstreamCut)
        };
        let error = match outcome {
            Outcome::ProviderError => Some("stream_error_event".to_string()),
            Outcome::UpstreamCut => Some("stream_cut".to_string()),
            Outcome::ClientAborted => Some("client_aborted".to_string()),
            _ => None,
        };
        // The final usage is the provider's word even if the terminal event
        // was lost after it.
        if let (Some(u), true) = (s.usage, s.usage_final) {
            return (u, UsageSource::Provider, outcome, error);
        }
        let error = match (error, s.oversized || o.body_note.is_some()) {
            (None, true) => Some(o.body_note.unwrap_or("usage_unreadable:event_too_large").to_string()),
            (e, _) => e,
        };
        let estimated_output = o.image_bound.or(o.spoken).unwrap_or(estimate_tokens(s.output_chars));
        let mut u = s.usage.unwrap_or_default();
        if u.input_tokens == 0 && u.audio_input_ms == 0 {
            let input = estimated_input(o);
            (u.input_tokens, u.image_input_tokens, u.audio_input_tokens, u.audio_input_ms) = (input.input_tokens, input.image_input_tokens, input.audio_input_tokens, input.audio_input_ms);
        }
        u.output_tokens = u.output_tokens.max(estimated_output);
        if o.image_bound.is_some() {
            u.image_output_tokens = u.output_tokens;
        }
        if o.spoken.is_some() {
            u.audio_output_tokens = u.output_tokens;
        }
        let source = if u == Usage::default() { UsageSource::None } else { UsageSource::Estimated };
        return (u, source, outcome, error);
    }
    match (&o.json, incomplete_outcome) {
        (Some(ResponseInfo { usage: Some(u), .. }), None) => (*u, UsageSource::Provider, Outcome::Ok, o.body_note.map(str::to_string)),
        (_, None) => (
            // No usage read from a 2xx body: too large or undecodable (the
            // note says which), none, not JSON, or one the parser refuses
            // (a token count past u64, a float). The provider billed the
            // input and the output it sent: the output is estimated from
            // the body's size (JSON framing makes it high). Never a silent zero.
            Usage {
                output_tokens: o.image_bound.or(o.spoken).unwrap_or(estimate_tokens(o.body_bytes)),
                image_output_tokens: o.image_bound.unwrap_or(0),
                audio_output_tokens: o.spoken.unwrap_or(0),
                ..estimated_input(o)
            },
            UsageSource::Estimated,
            Outcome::Ok,
            Some(o.body_note.unwrap_or("usage_missing").to_string()),
        ),
        (_, Some(out)) => (
            // (Speech cut short: the audio that came, or its text's.)
            Usage { output_tokens: o.spoken.unwrap_or(0), audio_output_tokens: o.spoken.unwrap_or(0), ..estimated_input(o) },
            UsageSource::Estimated,
            out,
            Some(if out == Outcome::ClientAborted { "client_aborted" } else { "response_cut" }.to_string()),
        ),
    }
}

/// The input side of an estimate: the request's estimated input, with its
/// input images and its audio (as tokens and as a length).
fn estimated_input(o: &Observed) -> Usage {
    Usage {
        input_tokens: o.estimated_input_tokens,
        image_input_tokens: o.image_input_bound,
        audio_input_tokens: crate::request::audio::tokens(o.audio_input_ms),
        audio_input_ms: o.audio_input_ms,
        input_characters: o.input_characters,
        ..Default::default()
    }
}

/// What `calls` image generation calls are estimated to have used when
/// the answer reports none: each the request's estimated input and the
/// tokens of the image it asked for.
pub fn images_estimated(calls: u64, estimated_input: u64, per_image: u64) -> Usage {
    let output = per_image.saturating_mul(calls);
    Usage { input_tokens: estimated_input.saturating_mul(calls), output_tokens: output, image_output_tokens: output, ..Default::default() }.bounded()
}

/// The record of a companion model's calls within the request `main`
/// records (an Anthropic advisor's, the Responses API's image generation
/// tool's): its tokens as the answer reported them (`source`), or as
/// estimated when it reported none, priced at its rates, with the
/// request's key, tags and scopes, under the id `<request id>-<kind>` and
/// `routed_by: "<kind>: <request id>"` (docs/usage-record.md). Budgets
/// count both records.
pub fn advisor_record(main: &UsageRecord, advisor: &crate::route::advisor::AdvisorTarget, usage: Usage, source: UsageSource) -> UsageRecord {
    let price = advisor.price;
    let usage = charged(usage, source, price.as_ref());
    let (cost_micros, cache_savings_micros) = price.map(|p| p.cost_and_savings(&usage)).unwrap_or((0, 0));
    let kind = advisor.kind.name();
    UsageRecord {
        id: format!("{}-{kind}", main.id),
        route: Some(advisor.route.clone()),
        model_requested: Some(advisor.model.clone()),
        model_upstream: Some(advisor.model.clone()),
        model_served: None,
        usage,
        usage_source: source,
        cost_micros,
        cache_savings_micros,
        priced: price.is_some(),
        guardrails: None,
        cache_miss: None,
        json_check: None,
        attempts: Vec::new(),
        routed_by: Some(format!("{kind}: {}", main.id)),
        service_tier: None,
        inference_geo: None,
        capture: None,
        ..main.clone()
    }
    .bounded()
}

/// The cost headers of a record: always cost, input, cached input and
/// output; cache writes and reasoning tokens only when non-zero (each
/// header is a host call).
pub fn cost_headers(rec: &UsageRecord) -> Vec<(&'static str, String)> {
    let u = &rec.usage;
    [
        ("x-tollgate-cost-micros", rec.cost_micros, true),
        ("x-tollgate-input-tokens", u.input_tokens, true),
        ("x-tollgate-cached-input-tokens", u.cached_input_tokens, true),
        ("x-tollgate-output-tokens", u.output_tokens, true),
        ("x-tollgate-cache-write-tokens", u.cache_write_tokens, false),
        ("x-tollgate-reasoning-tokens", u.reasoning_tokens, false),
    ]
    .into_iter()
    .filter(|(_, v, always)| *always || *v > 0)
    .map(|(k, v, _)| (k, v.to_string()))
    .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use crate::request::Api;
    use tollgate_protocol::scope::{Scope, ScopeType};
    use super::*;

    fn stream(usage: Option<Usage>, finished: bool, chars: u64) -> StreamSummary {
        StreamSummary { usage, model: Some("m".into()), finished, error_event: false, output_chars: chars, usage_final: finished && usage.is_some(), oversized: false, served: Default::default(), advisor: None, image_calls: 0, diagnosis: None }
    }

    fn obs(status: u16, t: Termination, json: Option<ResponseInfo>, s: Option<StreamSummary>) -> Observed {
        Observed { status, upstream_responded: true, termination: t, estimated_input_tokens: 100, image_bound: None, image_input_bound: 0, audio_input_ms: 0, input_characters: 0, spoken: None, json, stream: s, body_note: None, body_bytes: 0, head_served: Default::default(), container_gb: 0 }
    }

    const U: Usage = Usage { input_tokens: 120, cached_input_tokens: 20, cache_write_tokens: 0, output_tokens: 30, reasoning_tokens: 0, cache_write_1h_tokens: 0, web_search_requests: 0, file_search_calls: 0, audio_input_tokens: 0, image_input_tokens: 0, audio_output_tokens: 0, image_output_tokens: 0, audio_input_ms: 0, input_characters: 0, container_gb: 0, cache_reported: true };

    #[test]
    fn a_container_the_request_had_created_is_charged_once_the_provider_took_it() {
        let with = |status, t, json, s| Observed { container_gb: 4, ..obs(status, t, json, s) };
        let answered = Some(ResponseInfo { usage: Some(U), ..Default::default() });
        let (u, source, ..) = account(&with(200, Termination::Complete, answered.clone(), None));
        assert_eq!((u.container_gb, u.input_tokens, source), (4, 120, UsageSource::Provider));
        // Cut or left early: created all the same.
        assert_eq!(account(&with(200, Termination::DownstreamReset, None, Some(stream(None, false, 0)))).0.container_gb, 4);
        let (u, source, ..) = account(&with(200, Termination::UpstreamReset, None, Some(stream(None, false, 0))));
        assert_eq!((u.container_gb, source), (4, UsageSource::Estimated), "billed even with nothing streamed");
        // Refused, or never reached: none.
        assert_eq!(account(&with(400, Termination::Complete, answered, None)).0.container_gb, 0);
        let unanswered = Observed { upstream_responded: false, ..with(200, Termination::UpstreamReset, None, None) };
        assert_eq!(account(&unanswered).0, Usage::default());
    }

    #[test]
    fn complete_json_uses_provider_usage() {
        let r = account(&obs(200, Termination::Complete, Some(ResponseInfo { usage: Some(U), ..Default::default() }), None));
        assert_eq!(r, (U, UsageSource::Provider, Outcome::Ok, None));
    }

    #[test]
    fn provider_errors_cost_nothing() {
        let r = account(&obs(429, Termination::Complete, Some(ResponseInfo::default()), None));
        assert_eq!((r.0, r.1, r.2), (Usage::default(), UsageSource::None, Outcome::ProviderError));
        assert_eq!(r.3.as_deref(), Some("upstream_429"));
    }

    #[test]
    fn a_search_model_is_charged_its_search_on_every_answered_request_only() {
        let search = crate::pricing::Price { input: 1, output: 1, web_searches_per_request: Some(1), ..Default::default() };
        let charged = |o: &Observed| {
            let (u, source, ..) = account(o);
            charged(u, source, Some(&search)).web_search_requests
        };
        assert_eq!(charged(&obs(200, Termination::Complete, Some(ResponseInfo { usage: Some(U), ..Default::default() }), None)), 1);
        // cut short, estimated: it searched before it answered
        assert_eq!(charged(&obs(200, Termination::UpstreamReset, None, Some(stream(None, false, 40)))), 1);
        // an error status, or no answer: nothing billed
        assert_eq!(charged(&obs(429, Termination::Complete, Some(ResponseInfo::default()), None)), 0);
        let mut gone = obs(200, Termination::UpstreamReset, None, None);
        gone.upstream_responded = false;
        assert_eq!(charged(&gone), 0);
        // unpriced: as read
        let (u, source, ..) = account(&obs(200, Termination::Complete, Some(ResponseInfo { usage: Some(U), ..Default::default() }), None));
        assert_eq!(super::charged(u, source, None), U);
    }

    #[test]
    fn no_upstream_answer_costs_nothing() {
        let mut o = obs(503, Termination::Complete, None, None);
        o.upstream_responded = false;
        assert_eq!(account(&o), (Usage::default(), UsageSource::None, Outcome::ProviderError, Some("no_upstream_response".into())));
        o.termination = Termination::DownstreamReset;
        assert_eq!(account(&o).2, Outcome::ClientAborted);
    }

    #[test]
    fn unreadable_bodies_are_estimated_never_free() {
        let mut o = obs(200, Termination::Complete, Some(ResponseInfo::default()), None);
        o.body_note = Some("usage_unreadable:content_encoding");
        o.body_bytes = 10_000_000;
        let (u, src, out, err) = account(&o);
        assert_eq!((u.input_tokens, u.output_tokens, src, out), (100, 2_500_000, UsageSource::Estimated, Outcome::Ok));
        assert_eq!(err.as_deref(), Some("usage_unreadable:content_encoding"));
    }

    #[test]
    fn a_real_dall_e_answer_reports_no_usage_and_is_charged_the_images_asked_for() {
        // Recorded from api.openai.com (tests/captures/README.md): a URL, no usage.
        let body = include_bytes!("../../tests/captures/openai_image_dalle2.json");
        let json = crate::usage::parse_json_response(Api::OpenAiImages, body);
        assert_eq!(json.usage, None);
        let mut o = obs(200, Termination::Complete, Some(json), None);
        (o.body_bytes, o.image_bound) = (body.len() as u64, Some(6240));
        let (u, src, _, err) = account(&o);
        assert_eq!((u.output_tokens, u.image_output_tokens, src, err.as_deref()), (6240, 6240, UsageSource::Estimated, Some("usage_missing")));
    }

    #[test]
    fn an_image_answer_without_usage_is_charged_the_images_asked_for_not_its_base64() {
        let body = format!(r#"{{"created":1,"data":[{{"b64_json":"{}"}}]}}"#, "A".repeat(400_000));
        let json = crate::usage::parse_json_response(Api::OpenAiImages, body.as_bytes());
        let mut o = obs(200, Termination::Complete, Some(json), None);
        (o.body_bytes, o.image_bound) = (body.len() as u64, Some(2 * 1584));
        let (u, src, _, err) = account(&o);
        assert_eq!((u.output_tokens, u.image_output_tokens, src, err.as_deref()), (3168, 3168, UsageSource::Estimated, Some("usage_missing")));
        // a stream cut before its images completed: the same
        let s = stream(None, false, 2_000_000);
        let mut o = obs(200, Termination::UpstreamReset, None, Some(s));
        o.image_bound = Some(272);
        let (u, _, out, _) = account(&o);
        assert_eq!((u.output_tokens, u.image_output_tokens, out), (272, 272, Outcome::UpstreamCut));
        // an edit's: its input images as reserved, at the image input price
        let mut o = obs(200, Termination::Complete, Some(crate::usage::parse_json_response(Api::OpenAiImageEdits, b"{}")), None);
        (o.estimated_input_tokens, o.image_input_bound, o.image_bound) = (600, 581, Some(272));
        let (u, src, _, _) = account(&o);
        assert_eq!((u.input_tokens, u.image_input_tokens, u.image_output_tokens, src), (600, 581, 272, UsageSource::Estimated));
        let s = stream(None, false, 10);
        let mut o = obs(200, Termination::UpstreamReset, None, Some(s));
        (o.estimated_input_tokens, o.image_input_bound, o.image_bound) = (600, 581, Some(272));
        assert_eq!(account(&o).0.image_input_tokens, 581);
    }

    #[test]
    fn speech_without_usage_is_charged_its_characters_or_the_audio_it_made() {
        use crate::pricing::Price;
        // 2 s of `pcm` audio (96,000 bytes), no usage; 45 characters, 12 tokens of text.
        let mut o = obs(200, Termination::Complete, Some(crate::usage::parse_json_response(Api::OpenAiSpeech, &[0u8; 64])), None);
        (o.estimated_input_tokens, o.input_characters, o.spoken, o.body_bytes) = (12, 45, Some(42), 96_000);
        let (u, src, out, err) = account(&o);
        assert_eq!((u.input_tokens, u.input_characters, u.output_tokens, u.audio_output_tokens), (12, 45, 42, 42));
        assert_eq!((src, out, err.as_deref()), (UsageSource::Estimated, Outcome::Ok, Some("usage_missing")));
        // tts-1, by the character: 45 at $15 a million, and nothing else.
        let tts = Price { input: 0, output: 0, characters_per_million: Some(15_000_000), ..Default::default() };
        let billed = charged(u, src, Some(&tts));
        assert_eq!((billed, tts.cost_micros(&billed)), (Usage { input_characters: 45, ..Default::default() }, 675));
        // gpt-4o-mini-tts, by its tokens: $0.60 text in, $12 audio out a million.
        let mini = Price { input: 600_000, output: 12_000_000, ..Default::default() };
        let billed = charged(u, src, Some(&mini));
        assert_eq!((billed.input_characters, mini.cost_micros(&billed)), (0, (12 * 600_000 + 42 * 12_000_000u64).div_ceil(1_000_000)));
        // Cut: the audio that came. A stream cut before its usage: the text's.
        let mut cut = o.clone();
        cut.termination = Termination::UpstreamReset;
        assert_eq!(account(&cut).0.audio_output_tokens, 42);
        let mut o = obs(200, Termination::UpstreamReset, None, Some(stream(None, false, 0)));
        (o.estimated_input_tokens, o.spoken) = (12, Some(209));
        let (u, _, out, _) = account(&o);
        assert_eq!((u.output_tokens, u.audio_output_tokens, out), (209, 209, Outcome::UpstreamCut));
    }

    #[test]
    fn a_transcript_without_usage_is_charged_its_audio_as_its_model_bills_it() {
        use crate::pricing::Price;
        // `response_format: "srt"`: no JSON, no usage; 90 s of audio, a prompt of 10 tokens.
        let body = b"1\n00:00:00,000 --> 00:00:02,000\nHello there.\n";
        let mut o = obs(200, Termination::Complete, Some(crate::usage::parse_json_response(Api::OpenAiTranscriptions, body)), None);
        (o.estimated_input_tokens, o.audio_input_ms, o.body_bytes) = (10 + 1_500, 90_000, body.len() as u64);
        let (u, src, _, err) = account(&o);
        assert_eq!((u.input_tokens, u.audio_input_tokens, u.audio_input_ms, src, err.as_deref()), (1_510, 1_500, 90_000, UsageSource::Estimated, Some("usage_missing")));
        // whisper-1, priced by the hour: its seconds alone, $0.009.
        let whisper = Price { input: 0, output: 0, audio_per_hour: Some(360_000), ..Default::default() };
        let billed = charged(u, src, Some(&whisper));
        assert_eq!((billed, whisper.cost_micros(&billed)), (Usage { audio_input_ms: 90_000, ..Default::default() }, 9_000));
        // gpt-4o-transcribe: its tokens (audio at $6, text at $2.50, output at $10 a million).
        let tokens = Price { input: 2_500_000, audio_input: Some(6_000_000), output: 10_000_000, ..Default::default() };
        let billed = charged(u, src, Some(&tokens));
        assert_eq!((billed.audio_input_ms, billed.audio_input_tokens, billed.output_tokens), (0, 1_500, u.output_tokens));
        assert_eq!(tokens.cost_micros(&billed), (10 * 2_500_000 + 1_500 * 6_000_000 + u.output_tokens * 10_000_000).div_ceil(1_000_000));
        // A stream cut before its usage: the same input, the text streamed so far.
        let mut o = obs(200, Termination::UpstreamReset, None, Some(stream(None, false, 400)));
        (o.estimated_input_tokens, o.audio_input_ms) = (1_510, 90_000);
        let (u, _, out, _) = account(&o);
        assert_eq!((u.audio_input_tokens, u.audio_input_ms, u.output_tokens, out), (1_500, 90_000, 100, Outcome::UpstreamCut));
        // The provider's word, where it gives one, is all.
        let o = obs(200, Termination::Complete, Some(crate::usage::parse_json_response(Api::OpenAiTranscriptions, br#"{"text":"x","usage":{"type":"duration","seconds":88}}"#)), None);
        assert_eq!(account(&o).0, Usage { audio_input_ms: 88_000, ..Default::default() });
    }

    #[test]
    fn an_answer_without_a_usage_it_can_read_is_charged_its_output_too() {
        // Not JSON, a usage the parser refuses (`"prompt_tokens": 1e30`), one that counts nothing, or none at all.
        for body in [&b"<html>oops</html>"[..], br#"{"usage":{"prompt_tokens":1e30,"completion_tokens":5}}"#, br#"{"usage":{}}"#,
                     br#"{"usage":{"prompt_tokens_details":{"cached_tokens":9}}}"#, br#"{"choices":[]}"#] {
            let json = crate::usage::parse_json_response(Api::OpenAiChat, body);
            let mut o = obs(200, Termination::Complete, Some(json), None);
            o.body_bytes = body.len() as u64;
            let (u, src, out, err) = account(&o);
            assert_eq!((u.input_tokens, u.output_tokens), (100, (body.len() as u64).div_ceil(4)), "{body:?}");
            assert_eq!((src, out, err.as_deref()), (UsageSource::Estimated, Outcome::Ok, Some("usage_missing")));
        }
    }

    #[test]
    fn held_json_response_cut_after_headers_is_estimated() {
        // Envoy answered 502 itself after the upstream sent headers and reset.
        let r = account(&obs(502, Termination::UpstreamReset, None, None));
        assert_eq!((r.1, r.2), (UsageSource::Estimated, Outcome::UpstreamCut));
        assert_eq!(r.0.input_tokens, 100);
    }

    #[test]
    fn complete_stream_uses_provider_usage() {
        let r = account(&obs(200, Termination::Complete, None, Some(stream(Some(U), true, 999))));
        assert_eq!((r.0, r.1, r.2), (U, UsageSource::Provider, Outcome::Ok));
    }

    #[test]
    fn cut_stream_without_usage_is_estimated() {
        let r = account(&obs(200, Termination::UpstreamReset, None, Some(stream(None, false, 400))));
        assert_eq!(r.0, Usage { input_tokens: 100, output_tokens: 100, ..Default::default() });
        assert_eq!((r.1, r.2), (UsageSource::Estimated, Outcome::UpstreamCut));
        assert_eq!(r.3.as_deref(), Some("stream_cut"));
    }

    #[test]
    fn a_client_that_hangs_up_after_the_end_got_the_whole_answer() {
        let u = Usage { input_tokens: 10, output_tokens: 5, ..Default::default() };
        let r = account(&obs(200, Termination::DownstreamReset, None, Some(stream(Some(u), true, 20))));
        assert_eq!((r.0, r.1, r.2, r.3), (u, UsageSource::Provider, Outcome::Ok, None));
        // before the end, or an image stream between its images: aborted
        let r = account(&obs(200, Termination::DownstreamReset, None, Some(stream(Some(u), false, 20))));
        assert_eq!(r.2, Outcome::ClientAborted);
        let mut o = obs(200, Termination::DownstreamReset, None, Some(stream(Some(u), true, 20)));
        o.image_bound = Some(272);
        assert_eq!(account(&o).2, Outcome::ClientAborted);
    }

    #[test]
    fn aborted_anthropic_stream_keeps_reported_input() {
        let partial = Usage { input_tokens: 2000, cached_input_tokens: 1500, output_tokens: 1, ..Default::default() };
        let r = account(&obs(200, Termination::DownstreamReset, None, Some(stream(Some(partial), false, 80))));
        assert_eq!(r.0.input_tokens, 2000);
        assert_eq!(r.0.cached_input_tokens, 1500);
        assert_eq!(r.0.output_tokens, 20);
        assert_eq!((r.1, r.2), (UsageSource::Estimated, Outcome::ClientAborted));
    }

    #[test]
    fn stream_that_ends_without_terminal_event_is_cut() {
        let r = account(&obs(200, Termination::Complete, None, Some(stream(None, false, 4))));
        assert_eq!(r.2, Outcome::UpstreamCut);
        assert_eq!(r.0.output_tokens, 1);
    }

    #[test]
    fn error_event_in_stream() {
        let mut s = stream(None, false, 0);
        s.error_event = true;
        let r = account(&obs(200, Termination::Complete, None, Some(s)));
        assert_eq!(r.2, Outcome::ProviderError);
    }

    pub(crate) fn sample() -> UsageRecord {
        UsageRecord {
            v: RECORD_VERSION,
            id: "req-1".into(),
            client_request_id: None,
            session_id: None,
            ts_ms: 1,
            key_id: "k".into(),
            key_hash: "ab".into(),
            team: "t".into(),
            project: "p".into(),
            feature: Some("f".into()),
            prompt_version: None,
            user: None,
            tags: BTreeMap::new(),
            api: Api::AnthropicMessages,
            provider: Some("anthropic".into()),
            route: Some("claude-*".into()),
            model_requested: Some("claude-x".into()),
            model_upstream: Some("claude-x".into()),
            model_served: None,
            stream: true,
            status: 200,
            outcome: Outcome::Ok,
            error_code: None,
            usage: U,
            usage_source: UsageSource::Provider,
            cost_micros: 5,
            cache_savings_micros: 0,
            priced: true,
            latency_ms: 3,
            ttfb_ms: Some(1),
            budget_scopes: vec![Scope::new(ScopeType::Team, "t")],
            budget_decision: BudgetDecision::Ok,
            guardrails: None,
            cache_miss: None,
            json_check: None,
            attempts: Vec::new(),
            routed_by: None,
            service_tier: None,
            inference_geo: None,
            capture: None,
        }
    }

    /// An advisor's calls are a record of their own: its model, its
    /// tokens at its price, the request's key, tags and budget scopes, an
    /// id of its own and the request it ran in.
    #[test]
    fn an_advisors_record_is_its_models_own_within_the_request() {
        let mut main = sample();
        main.capture = Some(tollgate_protocol::record::Capture { request: "{}".into(), response: "{}".into() });
        let opus = crate::pricing::Price { input: 5_000_000, output: 25_000_000, cached_input: Some(500_000), ..crate::pricing::Price::default() };
        let target = crate::route::advisor::AdvisorTarget { kind: crate::route::advisor::Companion::Advisor, model: "claude-opus-4-8".into(), route: "claude-*".into(), calls: 1, output_per_call: 1, price: Some(opus) };
        let usage = Usage { input_tokens: 1000, cached_input_tokens: 400, output_tokens: 100, cache_reported: true, ..Usage::default() };
        let a = advisor_record(&main, &target, usage, UsageSource::Provider);
        assert_eq!((a.id.as_str(), a.routed_by.as_deref()), ("req-1-advisor", Some("advisor: req-1")));
        assert_eq!((a.model_requested.as_deref(), a.model_upstream.as_deref(), a.route.as_deref()), (Some("claude-opus-4-8"), Some("claude-opus-4-8"), Some("claude-*")));
        // 600 uncached at $5, 400 read at $0.50, 100 out at $25 a million.
        assert_eq!((a.cost_micros, a.priced, a.usage_source), (3000 + 200 + 2500, true, UsageSource::Provider));
        assert_eq!((&a.key_id, &a.team, &a.budget_scopes, &a.tags), (&main.key_id, &main.team, &main.budget_scopes, &main.tags));
        assert!(a.capture.is_none() && a.attempts.is_empty() && a.guardrails.is_none());
        let unpriced = advisor_record(&main, &crate::route::advisor::AdvisorTarget { price: None, ..target }, usage, UsageSource::Provider);
        assert_eq!((unpriced.cost_micros, unpriced.priced), (0, false));
    }

    #[test]
    fn cost_headers_always_say_cost_and_tokens_and_the_rest_when_there_is_any() {
        let mut rec = sample();
        let names = |r: &UsageRecord| cost_headers(r).into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
        assert_eq!(names(&rec), ["x-tollgate-cost-micros=5", "x-tollgate-input-tokens=120", "x-tollgate-cached-input-tokens=20", "x-tollgate-output-tokens=30"]);
        (rec.usage.cache_write_tokens, rec.usage.reasoning_tokens) = (7, 9);
        assert_eq!(names(&rec)[4..], ["x-tollgate-cache-write-tokens=7", "x-tollgate-reasoning-tokens=9"]);
    }

    #[test]
    fn hostile_values_are_bounded_and_refused() {
        let mut rec = sample();
        rec.model_served = Some("m".repeat(2_200_000));
        rec.user = Some("a\r\nb\u{1b}[2J".into());
        rec.usage.input_tokens = 9_000_000_000_000_000_000;
        rec.cost_micros = u64::MAX;
        assert!(rec.validate().is_err());
        let b = rec.bounded();
        assert_eq!(b.validate(), Ok(()));
        assert_eq!(b.model_served.as_ref().map(String::len), Some(MAX_MODEL));
        assert_eq!(b.user.as_deref(), Some("ab[2J"));
        assert_eq!(b.usage.input_tokens, crate::usage::MAX_COUNT);
        assert!(serde_json::to_string(&b).unwrap().len() < 16_384);
        let mut r = sample();
        r.id = String::new();
        assert_eq!(r.validate(), Err("id: empty".into()));
    }

    #[test]
    fn record_round_trips_as_json() {
        let rec = sample();
        let s = serde_json::to_string(&rec).unwrap();
        assert!(s.contains("\"api\":\"anthropic_messages\"") && s.contains("\"outcome\":\"ok\""), "{s}");
        for o in [Outcome::Ok, Outcome::Rejected, Outcome::ProviderError, Outcome::UpstreamCut, Outcome::ClientAborted] {
            assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{}\"", o.as_str()));
        }
        let back: UsageRecord = serde_json::from_str(&s).unwrap();
        assert_eq!(back, rec);
    }
}
