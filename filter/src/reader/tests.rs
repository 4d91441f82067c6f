use super::*;

const OPENAI_STREAM: &[u8] = include_bytes!("../../fixtures/openai_stream_include_usage.sse");
const ANTHROPIC_STREAM: &[u8] = include_bytes!("../../fixtures/anthropic_stream.sse");
const CHAT_JSON: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-5.4","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;

fn gzip(data: &[u8]) -> Vec<u8> {
    crate::decode::tests::gzip(data, false)
}

fn head(status: u16, content_type: &str, encoding: Option<&str>, length: bool) -> ResponseHead {
    let status = status.to_string();
    let mut pairs: Vec<(&[u8], &[u8])> = vec![(b":status", status.as_bytes()), (b"content-type", content_type.as_bytes())];
    if let Some(e) = encoding {
        pairs.push((b"content-encoding", e.as_bytes()));
    }
    if length {
        pairs.push((b"content-length", b"123"));
    }
    ResponseHead::read(pairs)
}

fn wants() -> Wants<'static> {
    Wants {
        api: Api::OpenAiChat,
        translate: None,
        tool_names: None,
        guarded: false,
        redacts: None,
        cost_headers: false,
        force_stream_usage: true,
        max_response_bytes: 1 << 20,
        client_stream: true,
        client_include_usage: true,
        json_checked: false,
        captured: false,
        now_s: 1_700_000_000,
    }
}

fn is_json(r: &Reader) -> bool {
    matches!(r, Reader::Json { .. })
}

#[test]
fn the_head_is_read_as_bytes_and_impostors_are_named() {
    let h = ResponseHead::read([
        (&b":status"[..], &b"429"[..]),
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"x-tollgate-cost-micros", b"0"),
        (b"X-Other", b"\xff"),
        (b"content-encoding", b""),
    ]);
    assert_eq!((h.status, h.is_stream(), h.encoding.clone()), (429, true, None), "an empty coding names none");
    assert_eq!(h.impostors, vec!["x-tollgate-cost-micros".to_string()]);
    assert_eq!(ResponseHead::read([(&b":status"[..], &b"2OO"[..])]).status, 0, "not a number");
    assert!(head(200, "application/json", Some("br"), false).guardable(), "a guard decides on a success in any coding");
    assert!(!head(500, "application/json", None, false).guardable(), "not on an error");
    assert!(head(201, "application/json", Some("gzip"), false).guardable());
}

#[test]
fn an_unreadable_coding_is_counted_by_size_and_a_translated_one_becomes_an_error() {
    let h = head(200, "application/json", Some("br"), true);
    let plain = choose(&h, &wants());
    assert!(matches!(plain.reader, Reader::Unreadable { bytes: 0 }));
    assert_eq!((plain.unreadable.as_deref(), plain.replace.is_some(), plain.hold), (Some("br"), false, false));
    let w = Wants { translate: Some(Direction::OpenAiToAnthropic), ..wants() };
    let e = choose(&h, &w).replace.expect("an error in the client's format");
    assert_eq!(e.status, 502, "the provider answered 200 but the client cannot read it");
    assert!(e.body().contains("answer_untranslatable") && e.body().contains("br"), "{}", e.body());
    // A provider error keeps its status (a 429 stays retryable).
    assert_eq!(choose(&head(429, "application/json", Some("zstd"), false), &w).replace.map(|e| e.status), Some(429));
}

#[test]
fn a_compressed_stream_goes_on_decoded_only_when_the_filter_rewrites_it() {
    let h = head(200, "text/event-stream", Some("gzip"), true);
    // Not rewritten: read through the inflater, passed on compressed as it came.
    let c = choose(&h, &wants());
    assert!(!c.drop_encoding && !c.drop_length && !c.hold);
    assert!(matches!(c.reader, Reader::Stream { decoded: false, inflater: Some(_), .. }));
    // Rewritten (the usage chunk the gateway asked for is stripped, translated, or guarded): decoded.
    let strip = Wants { client_include_usage: false, ..wants() };
    let translated = Wants { translate: Some(Direction::AnthropicToOpenAi), api: Api::OpenAiChat, ..wants() };
    let guarded = Wants { guarded: true, ..wants() };
    for w in [strip, translated, guarded] {
        let c = choose(&h, &w);
        assert!(c.drop_encoding && c.drop_length, "the client gets other bytes than the provider sent");
        assert!(matches!(c.reader, Reader::Stream { decoded: true, .. }));
    }
    // Plain and stripped: the body changes, its length goes; no coding to drop.
    let c = choose(&head(200, "text/event-stream", None, true), &strip);
    assert!(!c.drop_encoding && c.drop_length);
    // Plain and untouched: headers as they came.
    let c = choose(&head(200, "text/event-stream", None, true), &wants());
    assert!(!c.drop_encoding && !c.drop_length);
}

#[test]
fn json_is_held_only_when_something_waits_for_the_whole_body() {
    let h = head(200, "application/json", None, true);
    let c = choose(&h, &Wants { client_stream: false, ..wants() });
    assert!(!c.hold && is_json(&c.reader), "read as it passes");
    for w in [
        Wants { cost_headers: true, ..wants() },
        Wants { translate: Some(Direction::ChatToResponses), ..wants() },
        Wants { guarded: true, ..wants() },
        Wants { json_checked: true, ..wants() },
        Wants { captured: true, ..wants() },
    ] {
        let c = choose(&h, &w);
        assert!(c.hold && matches!(c.reader, Reader::Held { .. }));
    }
    assert!(holds_more(10, false, 10) && !holds_more(11, false, 10) && !holds_more(5, true, 10));
}

#[test]
fn a_held_compressed_answer_is_decoded_when_rewritten_and_kept_as_it_came_otherwise() {
    let body = gzip(CHAT_JSON);
    let inflater = || Inflater::new(&Coding::Gzip);
    let rewritten = Wants { json_checked: true, ..wants() };
    let mut a = held(inflater(), body.clone(), true, 200, &rewritten);
    assert!(a.sent_decoded && a.replace.is_none());
    assert_eq!(a.body, CHAT_JSON);
    a.reader.feed_json(&a.body.clone());
    let r = a.reader.finish_json(Api::OpenAiChat).expect("a JSON reader");
    assert_eq!(r.info.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((12, 3)));
    // Only cost headers: the client gets the gzip bytes; the usage is read through the inflater.
    let mut a = held(inflater(), body.clone(), true, 200, &Wants { cost_headers: true, ..wants() });
    assert!(!a.sent_decoded && a.body == body);
    a.reader.feed_json(&body);
    assert_eq!(a.reader.finish_json(Api::OpenAiChat).and_then(|r| r.info.usage).map(|u| u.output_tokens), Some(3));
}

#[test]
fn a_held_answer_a_translating_client_cannot_read_becomes_an_error() {
    let w = Wants { translate: Some(Direction::OpenAiToAnthropic), ..wants() };
    let broken = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03not deflate at all".to_vec();
    let a = held(Inflater::new(&Coding::Gzip), broken.clone(), true, 200, &w);
    assert_eq!(a.replace.map(|e| e.status), Some(502));
    assert!(!a.sent_decoded && a.body == broken);
    // Larger than the filter holds: not translated, so not sent as it came either.
    let a = held(None, CHAT_JSON.to_vec(), false, 200, &w);
    let e = a.replace.expect("too large to translate");
    assert!(e.body().contains("max_response_bytes"), "{}", e.body());
    // Not translating: the same answers go on as they came.
    assert!(held(None, CHAT_JSON.to_vec(), false, 200, &wants()).replace.is_none());
    assert!(held(Inflater::new(&Coding::Gzip), broken, true, 200, &Wants { guarded: true, ..wants() }).replace.is_none());
}

#[test]
fn an_answer_a_redacting_guard_cannot_read_is_never_passed_on() {
    // Observing or restoring, such answers go on unread; redacting, each
    // becomes a 502 naming the policy (the provider billed it: not retried).
    let w = Wants { guarded: true, redacts: Some("pol-7"), ..wants() };
    let unread = |e: Option<GatewayError>, why: &str| {
        let e = e.expect("an error in place of the answer");
        assert_eq!((e.status, e.code, e.retry_header(200)), (502, GatewayError::ANSWER_UNREADABLE, Some(("x-should-retry", "false"))));
        assert!(e.body().contains("pol-7") && e.body().contains(why), "{}", e.body());
    };
    // In a coding the filter cannot decode, JSON or a stream.
    for ct in ["application/json", "text/event-stream"] {
        let h = head(200, ct, Some("br"), false);
        unread(choose(&h, &w).replace, "'br'");
        assert!(choose(&h, &Wants { guarded: true, ..wants() }).replace.is_none(), "observing: unread, as it came");
    }
    // Not decoding, or larger than the filter holds.
    let broken = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03not deflate at all".to_vec();
    unread(held(Inflater::new(&Coding::Gzip), broken, true, 200, &w).replace, "not valid gzip");
    unread(held(None, CHAT_JSON.to_vec(), false, 200, &w).replace, "larger than the gateway holds to scan");
    assert!(held(None, CHAT_JSON.to_vec(), true, 200, &w).replace.is_none(), "a whole plain answer is read by the guard");
    // A translated answer's client gets the translation error (it says why too).
    let t = Wants { translate: Some(Direction::OpenAiToAnthropic), ..w };
    assert_eq!(choose(&head(200, "application/json", Some("br"), false), &t).replace.map(|e| e.code), Some("answer_untranslatable"));
}

#[test]
fn a_broken_compressed_answer_is_noted_never_free() {
    let mut r = Reader::Json { collector: JsonCollector::new(1 << 20), inflater: Inflater::new(&Coding::Gzip) };
    r.feed_json(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage");
    let reading = r.finish_json(Api::OpenAiChat).expect("a JSON reader");
    assert_eq!(reading.note, Some(UNREADABLE_CODING));
    assert!(matches!(r, Reader::None), "spent");
    assert!(r.finish_json(Api::OpenAiChat).is_none());
}

/// Feeds `body` in `n`-byte chunks; what the client got.
fn run_stream(c: &mut Choice, guard: Option<&mut AnswerGuard>, body: &[u8], n: usize) -> Vec<u8> {
    let mut guard = guard;
    let chunks: Vec<&[u8]> = body.chunks(n).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let end = i + 1 == chunks.len();
        match c.reader.stream_chunk(guard.as_deref_mut(), chunk.to_vec(), end) {
            Some(new) => out.extend(new),
            None => out.extend_from_slice(chunk),
        }
    }
    out
}

fn summary(r: &Reader) -> StreamSummary {
    r.observed().and_then(|o| o.0).expect("a stream")
}

#[test]
fn a_compressed_stream_is_counted_whether_or_not_it_is_decoded() {
    let body = gzip(OPENAI_STREAM);
    let h = head(200, "text/event-stream", Some("gzip"), false);
    // Passed on as it came.
    let mut c = choose(&h, &wants());
    assert_eq!(run_stream(&mut c, None, &body, 97), body);
    assert_eq!(summary(&c.reader).usage.map(|u| (u.input_tokens, u.output_tokens)), Some((19, 10)));
    // Decoded and stripped of the usage chunk the client did not ask for.
    let mut c = choose(&h, &Wants { client_include_usage: false, ..wants() });
    let out = run_stream(&mut c, None, &body, 97);
    let text = String::from_utf8(out).expect("decoded text");
    assert!(text.contains("\"Hello\"") && text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"usage\""), "{text}");
    assert_eq!(summary(&c.reader).usage.map(|u| u.output_tokens), Some(10));
    assert_eq!(c.reader.observed().and_then(|o| o.1), None, "decoded whole: no note");
}

#[test]
fn a_translated_stream_reaches_the_client_in_its_format() {
    let w = Wants { translate: Some(Direction::OpenAiToAnthropic), api: Api::AnthropicMessages, ..wants() };
    let mut c = choose(&head(200, "text/event-stream", None, false), &w);
    let text = String::from_utf8(run_stream(&mut c, None, ANTHROPIC_STREAM, 50)).expect("text");
    assert!(text.contains("chat.completion.chunk") && !text.contains("message_delta"), "{text}");
    assert!(summary(&c.reader).usage.is_some());
}

/// The first `half` of `data` as gzip flushed to a byte boundary (no final block).
fn gzip_unfinished(data: &[u8]) -> Vec<u8> {
    use miniz_oxide::deflate::core::{compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush};
    let mut c = CompressorOxide::new(create_comp_flags_from_zip_params(6, -15, 0));
    let mut out = vec![0u8; data.len() * 2 + 64];
    let (_, _, written) = compress(&mut c, data, &mut out, TDEFLFlush::Sync);
    out.truncate(written);
    [vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3], out].concat()
}

/// Events the client can parse: each `data:` line's JSON (or `[DONE]`).
fn events(text: &str) -> Vec<serde_json::Value> {
    text.split("\n\n")
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("not JSON ({e}): {d:?}")))
        .collect()
}

#[test]
fn a_stream_whose_compression_breaks_or_ends_early_ends_with_one_error_event() {
    let half = &OPENAI_STREAM[..OPENAI_STREAM.len() / 2];
    assert!(!half.ends_with(b"\n\n"), "the cut falls inside an event");
    // Turning invalid: a deflate block of the reserved type 3 (as the mock's `corrupt`).
    let corrupt = [gzip_unfinished(half), vec![0x07, 0xff, 0xff, 0xff]].concat();
    // Ending early: the stream stops where its compressed data has not.
    let truncated = gzip_unfinished(half);
    for (body, why) in [(corrupt, "not valid gzip"), (truncated, "ended before its compressed data did")] {
        let mut c = choose(&head(200, "text/event-stream", Some("gzip"), false), &Wants { client_include_usage: false, ..wants() });
        let text = String::from_utf8(run_stream(&mut c, None, &body, 64)).expect("decoded text");
        let got = events(&text);
        assert!(got.len() > 1, "what decoded before the break is sent: {text:?}");
        let last = got.last().and_then(|e| e.pointer("/error/message")).and_then(|m| m.as_str()).unwrap_or_default();
        assert!(last.contains(why), "the client is told why, last: {text:?}");
        assert_eq!(got.iter().filter(|e| e.get("error").is_some()).count(), 1, "one error, nothing after it");
    }
}

#[test]
fn an_unreadable_answer_is_estimated_from_its_size() {
    let r = Reader::Unreadable { bytes: 100 };
    assert_eq!(r.observed(), Some((None, Some(UNREADABLE_CODING), 400)));
    assert_eq!(Reader::None.observed(), None);
    let mut none = Reader::None;
    assert_eq!(none.stream_chunk(None, b"x".to_vec(), true), None, "not a stream: untouched");
}
