//! Guardrails on the answer: classes found in what the provider generated
//! are recorded (`responses: observe`) or also replaced by placeholders
//! (`responses: redact`, for the classes the policy redacts or blocks), and
//! the request's own placeholders are given their values back
//! (`restore: true`), in a JSON answer or a stream.
//!
//! A stream delivers text in pieces (`"Mail bob@exa"`, `"mple.com"`), so
//! text is held back per channel (a choice, a content block, an output
//! item) while its end could still be part of a value or a placeholder:
//! the trailing word, a trailing run of digits and separators, an unclosed
//! PEM block, a trailing `[LABEL_`. What is released has been scanned
//! with what follows it. Held text goes out with the channel's next delta,
//! or, when the channel's text ends (any event that carries no delta, the
//! end of the stream), in a copy of its last delta event. Every value is
//! counted once: released text is never scanned again.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::Value;
use tollgate_protocol::Api;

use super::{for_each_text, Action, Placeholders, Policy, ResponseMode, Subject};
use crate::sse::{parse_event, SseSplitter};

/// Longest placeholder held back while it may still be arriving.
const MAX_PLACEHOLDER: usize = 48;
/// Longest trailing word held back (e-mail addresses, keys, tokens).
const MAX_WORD: usize = 1024;
/// Longest trailing run of digits, capitals and separators held back
/// (grouped card numbers, IBANs, phone numbers).
const MAX_NUMBER: usize = 64;
/// Longest unclosed private key block held back.
const MAX_PEM: usize = 16 * 1024;
/// Channels that may hold text at once (a provider naming endless choice
/// or block indexes gets the rest released unheld, never more memory).
const MAX_CHANNELS: usize = 64;
/// Why a stream is ended when one of its events is too long to hold.
const EVENT_TOO_LARGE: &str = "a stream event is larger than the gateway reads (1 MiB)";

/// Who the request was for, owned (the answer outlives the request's borrows).
#[derive(Debug, Clone, Default)]
pub struct Owner {
    pub key: String,
    pub project: String,
    pub team: String,
    pub route: String,
}

impl Owner {
    fn subject(&self) -> Subject<'_> {
        Subject { key: &self.key, project: &self.project, team: &self.team, route: &self.route }
    }
}

/// A channel's held text and the last event that carried its text (to
/// copy when the held text must go out on its own).
#[derive(Debug, Default)]
struct Channel {
    held: String,
    template: Option<(Option<String>, Value)>,
}

/// Reads one answer: scans, redacts and restores.
pub struct AnswerGuard {
    policy: Rc<Policy>,
    owner: Owner,
    placeholders: Placeholders,
    api: Api,
    /// Classes found in the answer and values found.
    pub counts: BTreeMap<String, u64>,
    pub redacted: bool,
    pub restored: u64,
    splitter: SseSplitter,
    channels: BTreeMap<String, Channel>,
    /// The stream was ended for the client: a policy redacting answers met
    /// an event it cannot read, and sends nothing after it.
    pub unread: bool,
}

impl AnswerGuard {
    /// `None` when the policy neither scans answers nor restores (or has
    /// nothing to restore and does not scan).
    pub fn new(policy: Rc<Policy>, owner: Owner, placeholders: Placeholders, api: Api) -> Option<AnswerGuard> {
        let restore = policy.restore && !placeholders.is_empty();
        // An image generation answers images (megabytes of base64), speech
        // its audio: no text to scan or restore.
        if (policy.responses == ResponseMode::Off && !restore) || api.makes_images() || api.speaks() {
            return None;
        }
        Some(AnswerGuard {
            policy,
            owner,
            placeholders,
            api,
            counts: BTreeMap::new(),
            redacted: false,
            restored: 0,
            splitter: SseSplitter::new(),
            channels: BTreeMap::new(),
            unread: false,
        })
    }

    pub fn policy_version(&self) -> &str {
        &self.policy.version
    }

    /// What the record says: classes found and the action, when any.
    pub fn finding(&self) -> Option<(BTreeMap<String, u64>, &'static str)> {
        if self.counts.is_empty() {
            return None;
        }
        Some((self.counts.clone(), if self.redacted { Action::Redact.past() } else { Action::Observe.past() }))
    }

    /// Rewrites `text` as released: each value found (counted when
    /// `count`) is replaced when the policy redacts its class in answers,
    /// each of the request's placeholders restored. `upto` limits the
    /// values to those ending within the released part.
    fn rewrite(&mut self, text: &str, upto: usize, count: bool) -> Option<String> {
        let mut edits: Vec<(usize, usize, String)> = Vec::new();
        if self.policy.responses != ResponseMode::Off {
            let redact = self.policy.responses == ResponseMode::Redact;
            let policy = Rc::clone(&self.policy);
            for h in policy.hits(text).into_iter().filter(|h| h.end <= upto) {
                if count {
                    *self.counts.entry(h.class.to_string()).or_insert(0) += 1;
                }
                if redact && policy.action_for(self.owner.subject(), h.class) >= Action::Redact {
                    let value = text.get(h.start..h.end).unwrap_or_default();
                    edits.push((h.start, h.end, self.placeholders.for_value(h.class, h.label, value)));
                    self.redacted = true;
                }
            }
        }
        if self.policy.restore {
            for (start, end) in placeholder_spans(text, upto) {
                if edits.iter().any(|e| start < e.1 && e.0 < end) {
                    continue;
                }
                if let Some(v) = text.get(start..end).and_then(|p| self.placeholders.value_of(p)) {
                    edits.push((start, end, v.to_string()));
                    self.restored += 1;
                }
            }
        }
        if edits.is_empty() {
            return None;
        }
        edits.sort_by_key(|e| e.0);
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (start, end, with) in edits {
            out.push_str(text.get(last..start).unwrap_or_default());
            out.push_str(&with);
            last = end;
        }
        out.push_str(text.get(last..).unwrap_or_default());
        Some(out)
    }

    fn whole_text(&mut self, s: &mut String, count: bool) {
        if s.starts_with("data:") {
            return;
        }
        if let Some(new) = self.rewrite(s, s.len(), count) {
            *s = new;
        }
    }

    /// The policy redacts answers: one it cannot read is not passed on
    /// (restoring or observing alone lets it go unread: nothing in it is
    /// kept from the client).
    pub fn redacts(&self) -> bool {
        self.policy.responses == ResponseMode::Redact
    }

    /// JSON as the scan reads it. Redacting, a member given twice in one
    /// object is unreadable too: a JSON value keeps the last, and an answer
    /// the scan found clean goes on as it came, the other one in it.
    fn parse(&self, json: &[u8]) -> Result<Value, serde_json::Error> {
        match self.redacts() {
            true => super::unique::parse(json),
            false => serde_json::from_slice(json),
        }
    }

    /// A whole JSON answer: the body to send instead, when anything
    /// changed. `Err(why)`: the policy redacts answers and this one is not
    /// JSON a scan can hold (an empty body holds no text and passes).
    pub fn json(&mut self, body: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let mut v: Value = match self.parse(body) {
            Ok(v) => v,
            Err(_) if body.trim_ascii().is_empty() => return Ok(None),
            Err(e) if self.redacts() => return Err(format!("it is not JSON the scan can read: {e}")),
            Err(_) => return Ok(None),
        };
        let before = (self.redacted, self.restored);
        for_each_text(&mut v, &mut |s| self.whole_text(s, true));
        if (self.redacted, self.restored) == before {
            return Ok(None);
        }
        Ok(serde_json::to_vec(&v).ok())
    }

    /// A piece of a stream (as the client would get it); returns what to
    /// send instead. Events are held until complete.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut splitter = std::mem::take(&mut self.splitter);
        splitter.push(chunk, |raw, whole| {
            if self.unread {
                // Ended for the client: nothing more of the stream.
            } else if whole {
                self.event(raw, &mut out);
            } else if self.redacts() {
                self.end_unread(EVENT_TOO_LARGE, &mut out);
            } else {
                // Part of an event too long to hold: passed on unread.
                out.extend_from_slice(raw);
            }
        });
        self.splitter = splitter;
        out
    }

    /// At the end of the stream: the rest, and all held text.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let skipping = self.splitter.skipping();
        let tail = self.splitter.take_pending();
        if self.unread {
            return out;
        }
        if skipping {
            // The last fragment of an over-long event (a redacting policy
            // ended the stream at its first).
            out.extend_from_slice(&tail);
        } else if !tail.is_empty() {
            self.event(&tail, &mut out);
        }
        self.flush_all(&mut out);
        out
    }

    /// Ends the stream for the client: held text (scanned whole), then one
    /// error event in the client's API format saying why, and nothing after.
    fn end_unread(&mut self, why: &str, out: &mut Vec<u8>) {
        self.flush_all(out);
        let e = crate::errors::GatewayError::unread_answer(&self.policy.version, why);
        let (name, data) = crate::usage::provider_error(self.api, e.code, &e.message);
        out.extend(crate::sse::event_bytes(name, &data));
        self.unread = true;
    }

    fn event(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        let ev = parse_event(raw);
        let name = ev.name.map(str::to_string);
        let parsed = if ev.has_data { Some(self.parse(ev.data.as_bytes())) } else { None };
        if self.redacts() {
            // Text the scan cannot read is not passed on: a data line
            // that is not JSON ("[DONE]" and an empty one carry no text),
            // or bytes that are not UTF-8 (the parse stops before them).
            let data = ev.data.trim();
            let why = match &parsed {
                _ if ev.cut => Some("it is not UTF-8".to_string()),
                Some(Err(e)) if !data.is_empty() && data != "[DONE]" => Some(e.to_string()),
                _ => None,
            };
            if let Some(why) = why {
                self.end_unread(&format!("a stream event is not JSON the scan can read: {why}"), out);
                return;
            }
        }
        let Some(mut v) = parsed.and_then(Result::ok) else {
            // "[DONE]", comments, keep-alives: held text goes first.
            if ev.has_data {
                self.flush_all(out);
            }
            out.extend_from_slice(raw);
            return;
        };
        if is_ping(name.as_deref(), &v) {
            out.extend_from_slice(raw);
            return;
        }
        let mut deltas: Vec<String> = Vec::new();
        let mut changed = false;
        let api = self.api;
        for_each_delta(api, &mut v, &mut |channel, s| {
            let open = self.channels.contains_key(&channel) || self.channels.len() < MAX_CHANNELS;
            deltas.push(channel.clone());
            let mut text = match self.channels.get_mut(&channel) {
                Some(c) => std::mem::take(&mut c.held),
                None => String::new(),
            };
            text.push_str(s);
            let hold = if open { hold_point(&text, &self.policy, self.policy.responses != ResponseMode::Off, self.policy.restore) } else { text.len() };
            let released = match self.rewrite(&text, hold, true) {
                Some(new) => {
                    // The rewrite kept the held tail as it was (nothing in it was edited).
                    let tail_len = text.len() - hold;
                    new.get(..new.len() - tail_len).unwrap_or_default().to_string()
                }
                None => text.get(..hold).unwrap_or_default().to_string(),
            };
            if open {
                let c = self.channels.entry(channel).or_default();
                c.held = text.get(hold..).unwrap_or_default().to_string();
            }
            if released != *s {
                *s = released;
                changed = true;
            }
        });
        if deltas.is_empty() {
            // An event without text for any channel ends the held text of all.
            self.flush_all(out);
            // Its text is counted only where it is said nowhere else: an
            // Anthropic block's start holds a server tool's whole result
            // (the advisor's advice, a search's or a fetch's), which no
            // delta repeats; a `done` event or a whole item repeats the
            // deltas already counted.
            let first_said = api == Api::AnthropicMessages && v.get("type").and_then(Value::as_str) == Some("content_block_start");
            for_each_text(&mut v, &mut |s| self.whole_text(s, first_said));
            write_event(name.as_deref(), &v, raw, out, true);
            return;
        }
        for ch in &deltas {
            if let Some(c) = self.channels.get_mut(ch) {
                c.template = Some((name.clone(), template_of(&v)));
            }
        }
        write_event(name.as_deref(), &v, raw, out, changed);
    }

    /// Sends every channel's held text in a copy of its last delta event.
    fn flush_all(&mut self, out: &mut Vec<u8>) {
        let names: Vec<String> = self.channels.iter().filter(|(_, c)| !c.held.is_empty()).map(|(k, _)| k.clone()).collect();
        for ch in names {
            let Some(c) = self.channels.get_mut(&ch) else { continue };
            let held = std::mem::take(&mut c.held);
            let Some((name, mut v)) = c.template.clone() else { continue };
            let len = held.len();
            let text = self.rewrite(&held, len, true).unwrap_or(held);
            let api = self.api;
            for_each_delta(api, &mut v, &mut |channel, s| {
                *s = if channel == ch { text.clone() } else { String::new() };
            });
            write_event(name.as_deref(), &v, &[], out, true);
        }
    }
}

/// Anthropic's keep-alive: not the end of anyone's text.
fn is_ping(name: Option<&str>, v: &Value) -> bool {
    name == Some("ping") || v.get("type").and_then(Value::as_str) == Some("ping")
}

/// A delta event as a template for held text: without what must not be
/// repeated (usage totals, sequence numbers stay but are harmless).
fn template_of(v: &Value) -> Value {
    let mut t = v.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("usage");
        m.remove("usageMetadata");
    }
    t
}

fn write_event(name: Option<&str>, v: &Value, raw: &[u8], out: &mut Vec<u8>, changed: bool) {
    if !changed {
        out.extend_from_slice(raw);
        return;
    }
    if let Some(n) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(n.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

/// Calls `f(channel, text)` for every piece of generated text an event of
/// `api`'s stream carries.
fn for_each_delta(api: Api, v: &mut Value, f: &mut dyn FnMut(String, &mut String)) {
    let idx = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    match api {
        Api::OpenAiChat | Api::OpenAiCompletions => {
            let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else { return };
            for c in choices {
                let i = idx(c, "index");
                if let Some(Value::String(s)) = c.get_mut("text") {
                    f(format!("c{i}"), s);
                }
                let Some(d) = c.get_mut("delta") else { continue };
                for k in ["content", "refusal", "reasoning_content"] {
                    if let Some(Value::String(s)) = d.get_mut(k) {
                        f(format!("{k}{i}"), s);
                    }
                }
                for tc in d.get_mut("tool_calls").and_then(Value::as_array_mut).into_iter().flatten() {
                    let t = idx(tc, "index");
                    if let Some(Value::String(s)) = tc.get_mut("function").and_then(|x| x.get_mut("arguments")) {
                        f(format!("tool{i}.{t}"), s);
                    }
                }
            }
        }
        Api::AnthropicMessages => {
            if v.get("type").and_then(Value::as_str) != Some("content_block_delta") {
                return;
            }
            let i = idx(v, "index");
            let Some(d) = v.get_mut("delta").and_then(Value::as_object_mut) else { return };
            for k in ["text", "partial_json", "thinking"] {
                if let Some(Value::String(s)) = d.get_mut(k) {
                    f(format!("b{i}"), s);
                }
            }
        }
        Api::OpenAiResponses => {
            let ty = v.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
            if !ty.ends_with(".delta") {
                return;
            }
            let ch = format!("{}.{}.{}", idx(v, "output_index"), idx(v, "content_index"), ty);
            if let Some(Value::String(s)) = v.get_mut("delta") {
                f(ch, s);
            }
        }
        Api::GeminiGenerateContent => {
            let Some(cands) = v.get_mut("candidates").and_then(Value::as_array_mut) else { return };
            for (n, c) in cands.iter_mut().enumerate() {
                let i = c.get("index").and_then(Value::as_u64).unwrap_or(n as u64);
                let parts = c.get_mut("content").and_then(|x| x.get_mut("parts")).and_then(Value::as_array_mut);
                for (j, p) in parts.into_iter().flatten().enumerate() {
                    if let Some(Value::String(s)) = p.get_mut("text") {
                        f(format!("{i}.{j}"), s);
                    }
                }
            }
        }
        // A transcript's text (`transcript.text.done` repeats it whole, scanned as a whole event).
        Api::OpenAiTranscriptions | Api::OpenAiTranslations => {
            if v.get("type").and_then(Value::as_str) != Some("transcript.text.delta") {
                return;
            }
            if let Some(Value::String(s)) = v.get_mut("delta") {
                f("transcript".to_string(), s);
            }
        }
        Api::OpenAiEmbeddings | Api::GeminiEmbedContent | Api::OpenAiModerations | Api::OpenAiImages | Api::OpenAiImageEdits | Api::OpenAiSpeech | Api::OpenAiDecisions => {}
    }
}

/// Where to stop releasing `text`: the start of the earliest tail that may
/// still grow into a value (`scan`) or a placeholder (`restore`).
fn hold_point(text: &str, policy: &Policy, scan: bool, restore: bool) -> usize {
    let b = text.as_bytes();
    let len = b.len();
    let mut hold = len;
    let floor = |max: usize| len.saturating_sub(max);
    if restore {
        if let Some(open) = b.iter().rposition(|&c| c == b'[') {
            let rest = b.get(open + 1..).unwrap_or_default();
            if open >= floor(MAX_PLACEHOLDER) && rest.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_') {
                hold = hold.min(open);
            }
        }
    }
    if scan {
        let word = len - b.iter().rev().take_while(|c| !c.is_ascii_whitespace()).count();
        hold = hold.min(word.max(floor(MAX_WORD)));
        let numeric = |c: &u8| c.is_ascii_digit() || c.is_ascii_uppercase() || b" +-().".contains(c);
        let run = len - b.iter().rev().take_while(|c| numeric(c)).count();
        if b.get(run..).is_some_and(|r| r.iter().any(u8::is_ascii_digit)) {
            hold = hold.min(run.max(floor(MAX_NUMBER)));
        }
        if let Some(pem) = text.rfind("-----BEGIN") {
            if !text.get(pem..).is_some_and(|t| t.contains("-----END")) && pem >= floor(MAX_PEM) {
                hold = hold.min(pem);
            }
        }
        // A value that reaches into the held tail is held whole.
        for h in policy.hits(text) {
            if h.start < hold && h.end > hold && h.start >= floor(MAX_PEM) {
                hold = h.start;
            }
        }
    }
    // Never split a character.
    while hold > 0 && !text.is_char_boundary(hold) {
        hold -= 1;
    }
    hold
}

/// `[LABEL_n]` spans ending within `upto`.
fn placeholder_spans(text: &str, upto: usize) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while let Some(p) = b.get(i..).and_then(|r| r.iter().position(|&c| c == b'[')) {
        let start = i + p;
        let body = b.get(start + 1..).unwrap_or_default();
        let n = body.iter().take(MAX_PLACEHOLDER).take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || **c == b'_').count();
        let end = start + 1 + n + 1;
        if n >= 3 && b.get(start + 1 + n) == Some(&b']') && end <= upto {
            spans.push((start, end));
            i = end;
        } else {
            i = start + 1;
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guard(policy: Value, api: Api) -> AnswerGuard {
        let p = Rc::new(Policy::build(serde_json::from_value(policy).unwrap()).unwrap());
        let mut ph = Placeholders::default();
        assert_eq!(ph.for_value("email", "EMAIL", "ann@corp.example"), "[EMAIL_1]");
        let owner = Owner { key: "k1".into(), project: "p".into(), team: "t".into(), route: "r".into() };
        AnswerGuard::new(p, owner, ph, api).unwrap()
    }

    /// An OpenAI chat stream of `pieces` as content deltas, then the finish chunk and [DONE].
    fn chat_stream(pieces: &[&str]) -> Vec<u8> {
        let mut s = String::new();
        for p in pieces {
            s.push_str(&format!("data: {}\n\n", json!({"id": "c", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]})));
        }
        s.push_str(&format!("data: {}\n\ndata: [DONE]\n\n", json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
        s.into_bytes()
    }

    /// The text a client assembles from a chat stream (and checks every event is whole JSON).
    fn assembled(out: &[u8]) -> String {
        let mut text = String::new();
        let mut sp = SseSplitter::new();
        sp.push(out, |raw, _| {
            let ev = parse_event(raw);
            if ev.data == "[DONE]" {
                return;
            }
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
        });
        assert!(sp.pending().is_empty(), "every event ends");
        text
    }

    fn run(g: &mut AnswerGuard, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
            out.extend(g.push(&stream[last..c]));
            last = c;
        }
        out.extend(g.finish());
        out
    }

    #[test]
    fn placeholders_split_across_deltas_are_restored_and_values_counted_once() {
        let pieces = ["Sure: I wrote to [", "EMAIL", "_1", "] and to bob@exa", "mple.com", ", card 4111 1111 ", "1111 1111", " done. [NOT_A", "_PLACEHOLDER]"];
        let stream = chat_stream(&pieces);
        let policy = json!({"responses": "redact", "restore": true, "actions": {"email": "redact"}});
        // The same answer whatever the network's chunking.
        let mut seen = None;
        for cuts in [vec![], vec![1, 50, 51, 200, 333], (1..stream.len()).step_by(7).collect::<Vec<_>>(), (1..stream.len()).collect::<Vec<_>>()] {
            let mut g = guard(policy.clone(), Api::OpenAiChat);
            let text = assembled(&run(&mut g, &stream, &cuts));
            assert_eq!(text, "Sure: I wrote to ann@corp.example and to [EMAIL_2], card [CARD_1] done. [NOT_A_PLACEHOLDER]");
            assert_eq!(g.counts, BTreeMap::from([("card".into(), 1), ("email".into(), 1)]), "the restored value is not a finding");
            assert_eq!((g.restored, g.redacted), (1, true));
            if let Some(prev) = &seen {
                assert_eq!(prev, &text);
            }
            seen = Some(text);
        }
    }

    #[test]
    fn observe_records_without_changing_a_byte_and_restore_alone_holds_only_brackets() {
        let stream = chat_stream(&["call +1 415 555", " 0100 or mail x@y.io", " now"]);
        let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
        let out = run(&mut g, &stream, &[10, 120]);
        assert_eq!(assembled(&out), "call +1 415 555 0100 or mail x@y.io now");
        assert_eq!(g.counts, BTreeMap::from([("email".into(), 1), ("phone".into(), 1)]));
        assert_eq!(g.finding().map(|f| f.1), Some("observed"));
        let mut g = guard(json!({"restore": true}), Api::OpenAiChat);
        let stream = chat_stream(&["Hello ", "[EMAIL_1", "]!"]);
        let out = run(&mut g, &stream, &[]);
        assert_eq!(assembled(&out), "Hello ann@corp.example!");
        assert!(g.counts.is_empty());
    }

    #[test]
    fn anthropic_responses_and_gemini_streams_and_json_answers() {
        let policy = json!({"responses": "redact", "restore": true, "actions": {"email": "redact"}});
        // Anthropic: held text goes out before content_block_stop, in a delta of its own block.
        let mut g = guard(policy.clone(), Api::AnthropicMessages);
        let ev = |t: &str, v: Value| format!("event: {t}\ndata: {v}\n\n");
        let stream = [
            ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
            ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "to [EMAIL_"}})),
            ev("ping", json!({"type": "ping"})),
            ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "1] and z@q.io"}})),
            ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ]
        .concat();
        let out = String::from_utf8(run(&mut g, stream.as_bytes(), &[])).unwrap();
        let text: String = out
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
            .collect();
        assert_eq!(text, "to ann@corp.example and [EMAIL_2]");
        assert!(out.find("[EMAIL_2]").unwrap() < out.find("content_block_stop").unwrap(), "{out}");
        // Responses: deltas restored, and the full text of the terminal events too (not counted twice).
        let mut g = guard(policy.clone(), Api::OpenAiResponses);
        let stream = [
            ev("response.output_text.delta", json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "hi [EMAIL_1] z@q.io"})),
            ev("response.output_text.done", json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": "hi [EMAIL_1] z@q.io"})),
        ]
        .concat();
        let out = String::from_utf8(run(&mut g, stream.as_bytes(), &[17])).unwrap();
        let events: Vec<Value> = out.split("\n\n").filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: "))).filter_map(|d| serde_json::from_str(d).ok()).collect();
        let deltas: String = events.iter().filter_map(|v| v["delta"].as_str()).collect();
        assert_eq!(deltas, "hi ann@corp.example [EMAIL_2]");
        assert_eq!(events.last().unwrap()["text"], "hi ann@corp.example [EMAIL_2]", "{out}");
        assert_eq!(g.counts.get("email"), Some(&1));
        // Gemini: the last piece is held until the end of the stream.
        let mut g = guard(policy.clone(), Api::GeminiGenerateContent);
        let chunk = |t: &str| format!("data: {}\n\n", json!({"candidates": [{"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 3}}));
        let out = String::from_utf8(run(&mut g, [chunk("mail [EMA"), chunk("IL_1]")].concat().as_bytes(), &[])).unwrap();
        let text: String = out
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["candidates"][0]["content"]["parts"][0]["text"].as_str().map(str::to_string))
            .collect();
        assert_eq!(text, "mail ann@corp.example");
        // A JSON answer: every text, in any shape.
        let mut g = guard(policy, Api::OpenAiChat);
        let body = json!({"id": "x@y.io", "choices": [{"message": {"role": "assistant", "content": "[EMAIL_1], meet q@z.io"}}]});
        let out: Value = serde_json::from_slice(&g.json(&serde_json::to_vec(&body).unwrap()).unwrap().unwrap()).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "ann@corp.example, meet [EMAIL_2]");
        assert_eq!(out["id"], "x@y.io", "identifiers are not text");
    }

    #[test]
    fn a_server_tools_result_in_an_anthropic_stream_is_scanned_and_counted_once() {
        // The advisor's advice (and a search's results) arrive whole in the
        // block's start, never as deltas: the same finding a JSON answer
        // records, and redacted when the policy redacts.
        let ev = |t: &str, v: Value| format!("event: {t}\ndata: {v}\n\n");
        let advice = "Ask ops@corp.example before you migrate.";
        let stream = [
            ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "advisor", "input": {}}})),
            ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            ev("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "advisor_tool_result", "tool_use_id": "srvtoolu_1", "content": {"type": "advisor_result", "text": advice}}})),
            ev("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
            ev("content_block_start", json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}})),
            ev("content_block_delta", json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Done."}})),
            ev("content_block_stop", json!({"type": "content_block_stop", "index": 2})),
        ]
        .concat();
        let mut g = guard(json!({"responses": "observe"}), Api::AnthropicMessages);
        let out = String::from_utf8(run(&mut g, stream.as_bytes(), &[40, 300])).unwrap();
        assert!(out.contains(&format!("\"text\":\"{advice}\"")), "observing changes no text: {out}");
        assert_eq!(g.counts, BTreeMap::from([("email".into(), 1)]));
        let mut g = guard(json!({"responses": "redact", "actions": {"email": "redact"}}), Api::AnthropicMessages);
        let out = String::from_utf8(run(&mut g, stream.as_bytes(), &[])).unwrap();
        assert!(!out.contains("ops@corp.example") && out.contains("Ask [EMAIL_2] before"), "{out}");
        assert_eq!((g.counts.get("email"), g.redacted), (Some(&1), true));
        // The same answer as JSON records the same finding.
        let body = json!({"type": "message", "content": [{"type": "advisor_tool_result", "tool_use_id": "srvtoolu_1", "content": {"type": "advisor_result", "text": advice}}]});
        let mut g = guard(json!({"responses": "observe"}), Api::AnthropicMessages);
        assert_eq!(g.json(&serde_json::to_vec(&body).unwrap()), Ok(None));
        assert_eq!(g.counts, BTreeMap::from([("email".into(), 1)]));
    }

    #[test]
    fn held_text_is_bounded_and_a_stream_without_text_passes_unchanged() {
        let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
        let long = "x".repeat(5000);
        let out = g.push(&chat_stream(&[&long, &long]));
        assert!(g.channels.values().all(|c| c.held.len() <= MAX_WORD), "a word never holds more than its bound");
        let text = assembled(&[out, g.finish()].concat());
        assert_eq!(text.len(), 10_000, "nothing lost");
        // a provider naming a thousand choices: at most MAX_CHANNELS hold text
        let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
        let mut many = String::new();
        for i in 0..1000 {
            many.push_str(&format!("data: {}\n\n", json!({"choices": [{"index": i, "delta": {"content": "word"}}]})));
        }
        let out = [g.push(many.as_bytes()), g.finish()].concat();
        assert!(g.channels.len() <= MAX_CHANNELS);
        assert_eq!(String::from_utf8(out).unwrap().matches("word").count(), 1000, "nothing lost");
        let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
        let plain = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n: keep-alive\n\ndata: [DONE]\n\n";
        assert_eq!([g.push(plain), g.finish()].concat(), plain.to_vec());
    }

    #[test]
    fn a_redacting_guard_never_passes_what_it_cannot_read() {
        let redact = json!({"responses": "redact", "actions": {"email": "redact"}});
        let hidden = "card 4111 1111 1111 1111, mail bob@example.com";
        let ok = |p: &str| format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": p}}]}));
        // A data line that is not JSON, bytes that are not UTF-8, an
        // event too long to hold: the stream ends there for the client,
        // held text first (scanned whole), then one error event.
        let nested = format!("data: {}{{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{hidden}\"}}}}]}}{}\n\n", "[".repeat(200), "]".repeat(200));
        let mut bad_utf8 = format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{hidden}").into_bytes();
        bad_utf8.extend_from_slice(b"\xff\"}}]}\n\n");
        let long = ok(&"x ".repeat(crate::sse::MAX_EVENT_BYTES));
        let shadowed = format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{hidden}\",\"content\":\"x\"}}}}]}}\n\n");
        // (A member given twice is refused only when redacting: a value holds it.)
        for (bad, why) in [(nested.into_bytes(), "not JSON"), (bad_utf8, "not JSON"), (shadowed.into_bytes(), "given twice"), (long.into_bytes(), "larger than the gateway reads")] {
            let stream = [ok("Dear bob@exa").into_bytes(), bad.clone(), ok(hidden).into_bytes(), b"data: [DONE]\n\n".to_vec()].concat();
            // (An event is too long to hold when its end is not yet there.)
            for cuts in [vec![stream.len() * 3 / 4], (1..stream.len()).step_by(4096).collect::<Vec<_>>()] {
                let mut g = guard(redact.clone(), Api::OpenAiChat);
                let out = String::from_utf8(run(&mut g, &stream, &cuts)).unwrap();
                assert!(!out.contains("4111") && !out.contains("bob@example.com") && !out.contains("[DONE]"), "{why}: {}", &out[..out.len().min(400)]);
                let (text, last) = out.trim_end().rsplit_once("\n\n").unwrap();
                assert_eq!(assembled(format!("{text}\n\n").as_bytes()), "Dear bob@exa", "{why}: the text before, the held part too");
                let err: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
                assert_eq!(err["error"]["code"], "answer_unreadable");
                assert!(err["error"]["message"].as_str().unwrap().contains(why), "{err}");
                assert!(g.unread);
            }
            if why == "given twice" {
                continue;
            }
            // Observing: the event passes unread, byte for byte, and the stream goes on.
            let mut g = guard(json!({"responses": "observe"}), Api::OpenAiChat);
            let out = run(&mut g, &stream, &[stream.len() * 3 / 4]);
            assert!(out.windows(bad.len()).any(|w| w == bad.as_slice()) && out.ends_with(b"data: [DONE]\n\n"), "{why}");
            assert!(!g.unread);
        }
        // An Anthropic client gets the error event its SDK reads.
        let mut g = guard(redact.clone(), Api::AnthropicMessages);
        let out = String::from_utf8([g.push(b"event: content_block_delta\ndata: {not json\n\n"), g.finish()].concat()).unwrap();
        assert!(out.starts_with("event: error\ndata: {") && out.contains("\"type\":\"error\"") && out.contains("redacts answers"), "{out}");
        // What carries no text is read as ever: keep-alives, [DONE], pings.
        let mut g = guard(redact.clone(), Api::OpenAiChat);
        let plain = b": keep-alive\n\ndata:\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\ndata: [DONE]\n\n";
        assert_eq!(run(&mut g, plain, &[]), plain.to_vec());
        // A JSON answer: an error when redacting, as it came otherwise; empty is no text.
        let nested = format!("{}\"{hidden}\"{}", "[".repeat(200), "]".repeat(200));
        let twice = format!("{{\"choices\":[{{\"message\":{{\"content\":\"{hidden}\",\"content\":\"hi\"}}}}]}}");
        for body in [nested.as_str(), "{\"n\": 1e400}", "{\"t\": \"\\ud800\"}", "not json", twice.as_str()] {
            let why = guard(redact.clone(), Api::OpenAiChat).json(body.as_bytes()).expect_err(body);
            assert!(why.contains("not JSON the scan can read"), "{why}");
            assert_eq!(guard(json!({"responses": "observe"}), Api::OpenAiChat).json(body.as_bytes()), Ok(None));
        }
        assert_eq!(guard(redact, Api::OpenAiChat).json(b" \n"), Ok(None));
    }
}
