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

mod deltas;
mod held;

use deltas::for_each_delta;
use held::{hold_point, placeholder_spans};

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

#[cfg(test)]
mod tests;
