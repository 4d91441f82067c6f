//! Why a prompt cache is cold. Providers cache a request's prefix when it
//! is byte for byte the prefix of a recent request (from about 1,024
//! tokens). The filter cuts the prefix it sends — tools, system prompt,
//! the first messages, in the provider's order — into 512-byte blocks and
//! hashes each; the last few fingerprints of the same key, feature, prompt
//! version and model are kept in shared data (bounded, see
//! [`BUCKETS`]). Compared with them, a request says:
//!
//! - `prefix_changed`: it differs from the most similar recent request in
//!   an early block while most of what follows matches — a timestamp, an id
//!   or a name at the top of the system prompt makes every prefix new, so
//!   the provider can cache nothing after it. The record names the segment,
//!   the byte offset (512-byte precision) and what the uncacheable rest
//!   cost over the cached price;
//! - `not_cached`: the whole prefix matched a recent request, the provider
//!   reports caches, and it cached nothing (expired, evicted, another
//!   account);
//! - `no_cache_marker`: the same, on Anthropic without any
//!   `cache_control` marker (it caches only at markers; `auto_cache` adds them);
//! - `marker_below_minimum`: an Anthropic `cache_control` marker on a
//!   prefix shorter than the provider's minimum — silently ignored.
//!
//! Where the provider explains the miss itself (Anthropic's cache
//! diagnostics, [`Diagnosis`]), its word is taken instead.

use serde::Deserialize;
use serde_json::value::RawValue;
use tollgate_protocol::Api;

/// Block size: the offset's precision.
pub const BLOCK: usize = 512;
/// Blocks fingerprinted (the first 32 KiB of the prefix).
pub const MAX_BLOCKS: usize = 64;
/// Messages looked at (the cacheable prefix is at the start).
pub const MAX_MESSAGES: usize = 8;
/// Recent fingerprints kept per scope.
pub const RECENT: usize = 4;
/// Shared-data buckets scopes hash into: at most `BUCKETS` entries of at
/// most `RECENT` fingerprints of `9 + 9 × MAX_BLOCKS` bytes (~2.3 KiB):
/// 2.4 MiB per Envoy, whatever the traffic.
pub const BUCKETS: u64 = 1024;
/// About 1,024 tokens: the providers' minimum cacheable prefix.
pub const MIN_CACHEABLE_BYTES: usize = 4096;

/// Segment names: 0 tools, 1 system, 2 the messages ([`locate`] names the message).
pub fn segment_name(seg: u8) -> String {
    match seg {
        0 => "tools".into(),
        1 => "system".into(),
        _ => "messages".into(),
    }
}

/// A fast word-at-a-time hash (not cryptographic: only for comparing prefixes).
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(c).unwrap_or_default());
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    for (t, b) in tail.iter_mut().zip(chunks.remainder()) {
        *t = *b;
    }
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 29)
}

/// A request's prefix fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub scope: u64,
    /// (segment, block hash), in prefix order.
    pub blocks: Vec<(u8, u64)>,
    /// Each block's length (not stored: only the request's own are needed).
    lens: Vec<u16>,
    /// Bytes of the prefix (tools + system + the messages looked at).
    pub prefix_bytes: usize,
}

/// The scope a fingerprint is compared within.
pub fn scope(key_id: &str, feature: &str, prompt_version: &str, model: &str) -> u64 {
    hash(format!("{key_id}\u{1}{feature}\u{1}{prompt_version}\u{1}{model}").as_bytes())
}

/// The shared-data entry of a scope's bucket.
pub fn bucket_key(scope: u64) -> String {
    format!("tollgate:v1:fp:{}", scope % BUCKETS)
}

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Role<'a> {
    #[serde(borrow, default)]
    role: Option<std::borrow::Cow<'a, str>>,
}

/// Fingerprints the prefix of a chat or messages body; `None` for other
/// APIs, unreadable bodies and prefixes too short to cache.
pub fn fingerprint(api: Api, body: &[u8], scope: u64) -> Option<Fingerprint> {
    if !matches!(api, Api::OpenAiChat | Api::AnthropicMessages) || body.len() < MIN_CACHEABLE_BYTES {
        return None;
    }
    let top: Top = serde_json::from_slice(body).ok()?;
    fingerprint_raw([top.tools.map(RawValue::get), top.system.map(RawValue::get), top.messages.map(RawValue::get)], scope)
}

/// Where the `cch` value of Claude Code's attribution line is, when the
/// system prompt starts with it ("x-anthropic-billing-header:
/// cc_version=2.1.153.d02; cc_entrypoint=cli; cch=97bd6;"). It is new on
/// every request, and a Claude Code session's turns are still read from
/// Anthropic's cache (else none could be; the version's hash, which changes
/// per conversation, does start a new prefix there: motiful/cc-cache-audit);
/// other providers never see the line (`translate::to_openai`). Compared
/// as zeros, it is not a change; if Anthropic's cache did see it, the
/// provider reports no read and the record still says `not_cached`.
fn attestation(system: &[u8]) -> Option<std::ops::Range<usize>> {
    let head = system.get(..system.len().min(256))?;
    let at = memchr::memmem::find(head, crate::translate::to_openai::CLAUDE_CODE_ATTRIBUTION.as_bytes())?;
    let start = at + memchr::memmem::find(head.get(at..)?, b"cch=")? + 4;
    let len = head.get(start..)?.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    Some(start..start + len)
}

/// Fingerprints the raw JSON text of a request's `tools`, `system` and
/// `messages` members (segments 0, 1, 2: no parsing, the request parser
/// found them already); `None` when shorter than the providers' minimum.
pub fn fingerprint_raw(parts: [Option<&str>; 3], scope: u64) -> Option<Fingerprint> {
    let total: usize = parts.iter().flatten().map(|p| p.len()).sum();
    if total < MIN_CACHEABLE_BYTES {
        return None;
    }
    let mut fp = Fingerprint { scope, blocks: Vec::with_capacity(MAX_BLOCKS), lens: Vec::with_capacity(MAX_BLOCKS), prefix_bytes: 0 };
    'outer: for (seg, part) in parts.iter().enumerate() {
        let Some(text) = part else { continue };
        fp.prefix_bytes += text.len();
        let cch = if seg == 1 { attestation(text.as_bytes()) } else { None };
        for (i, chunk) in text.as_bytes().chunks(BLOCK).enumerate() {
            if fp.blocks.len() == MAX_BLOCKS {
                break 'outer;
            }
            let h = match cch.clone().filter(|r| i == 0 && r.end <= chunk.len()) {
                Some(r) => {
                    let mut zeroed = chunk.to_vec();
                    zeroed.get_mut(r).into_iter().flatten().for_each(|b| *b = b'0');
                    hash(&zeroed)
                }
                None => hash(chunk),
            };
            fp.blocks.push((seg as u8, h));
            fp.lens.push(chunk.len() as u16);
        }
    }
    Some(fp)
}

/// Names where a change was found: `tools` and `system` as they are; a
/// byte offset into `messages` becomes the message (`messages[N]`, or
/// `system` for an OpenAI system message first) and the offset in it.
/// Parses the body's messages: only on the rare path that reports a change.
pub fn locate(body: &[u8], segment: u8, offset: usize) -> (String, usize) {
    if segment != 2 {
        return (segment_name(segment), offset);
    }
    let Some(msgs) = serde_json::from_slice::<Top>(body).ok().and_then(|t| t.messages) else { return ("messages".into(), offset) };
    let base = msgs.get().as_ptr() as usize;
    let items: Vec<&RawValue> = serde_json::from_str(msgs.get()).unwrap_or_default();
    for (i, m) in items.iter().enumerate() {
        let start = (m.get().as_ptr() as usize).saturating_sub(base);
        if offset < start + m.get().len() {
            let sys = i == 0 && serde_json::from_str::<Role>(m.get()).ok().and_then(|r| r.role).is_some_and(|r| r == "system" || r == "developer");
            let name = if sys { "system".to_string() } else { format!("messages[{i}]") };
            return (name, offset.saturating_sub(start));
        }
    }
    ("messages".into(), offset)
}

/// What comparing with the recent fingerprints says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing recent to compare with, or too short to cache.
    Unknown,
    /// The whole prefix is a recent request's.
    Matched { prefix_bytes: usize },
    /// Changed early, the rest matches: `lost_bytes` could have been cached.
    /// `segment` and `offset` as [`locate`] names them.
    Changed { segment: String, offset: usize, lost_bytes: usize },
}

impl Fingerprint {
    /// The same blocks as `other`'s (then the stored entry needs no write).
    pub fn same_as(&self, other: &Fingerprint) -> bool {
        self.scope == other.scope && self.blocks == other.blocks
    }

    /// Compares with `recent` (other scopes in the bucket are ignored).
    pub fn verdict(&self, recent: &[Fingerprint]) -> Verdict {
        if self.prefix_bytes < MIN_CACHEABLE_BYTES {
            return Verdict::Unknown;
        }
        let same: Vec<&Fingerprint> = recent.iter().filter(|r| r.scope == self.scope).collect();
        // The most similar: the longest run of equal blocks from the start.
        let common = |r: &Fingerprint| self.blocks.iter().zip(&r.blocks).take_while(|(a, b)| a == b).count();
        let Some((best, d)) = same.iter().map(|r| (*r, common(r))).max_by_key(|(_, d)| *d) else { return Verdict::Unknown };
        if d == self.blocks.len() && d == best.blocks.len() {
            return Verdict::Matched { prefix_bytes: self.prefix_bytes };
        }
        let Some(&(segment, _)) = self.blocks.get(d) else { return Verdict::Unknown };
        // What follows the change, wherever it moved to (a longer or shorter value shifts it).
        let theirs: std::collections::HashSet<u64> = best.blocks.iter().skip(d + 1).map(|b| b.1).collect();
        let after: Vec<&(u8, u64)> = self.blocks.iter().skip(d + 1).collect();
        let matched = after.iter().filter(|b| theirs.contains(&b.1)).count();
        if after.len() < 2 || matched * 2 < after.len() {
            return Verdict::Unknown;
        }
        let before: usize = self.lens.iter().take(d).map(|l| usize::from(*l)).sum();
        let seg_start = self.blocks.iter().position(|b| b.0 == segment).unwrap_or(d);
        let offset = (d - seg_start) * BLOCK;
        Verdict::Changed { segment: segment_name(segment), offset, lost_bytes: self.prefix_bytes.saturating_sub(before) }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.scope.to_le_bytes());
        out.push(self.blocks.len() as u8);
        for (seg, h) in &self.blocks {
            out.push(*seg);
            out.extend_from_slice(&h.to_le_bytes());
        }
    }
}

/// The record's explanation, once the usage is known: `verdict` from the
/// request's fingerprint, `markers` from [`markers`].
pub fn explain(
    verdict: &Verdict,
    markers: Markers,
    diagnosis: Option<Diagnosis>,
    usage: &crate::usage::Usage,
    price: Option<&crate::pricing::Price>,
) -> Option<tollgate_protocol::record::CacheMiss> {
    use tollgate_protocol::record::CacheMiss;
    let uncached = usage.input_tokens.saturating_sub(usage.cached_input_tokens);
    if let Some(d) = diagnosis {
        return Some(CacheMiss {
            reason: if d.changed.is_some() { "prefix_changed" } else { "model_changed" }.into(),
            segment: d.changed.map(str::to_string),
            offset: None,
            lost_micros: price.map_or(0, |p| p.cache_loss_micros(d.tokens.min(uncached))),
        });
    }
    let lost = |bytes: usize| price.map_or(0, |p| p.cache_loss_micros(crate::request::estimate_tokens(bytes as u64).min(uncached)));
    if let Markers::BelowMinimum(at) = markers {
        return Some(CacheMiss { reason: "marker_below_minimum".into(), segment: None, offset: Some(at as u64), lost_micros: 0 });
    }
    match verdict {
        Verdict::Changed { segment, offset, lost_bytes } => Some(CacheMiss {
            reason: "prefix_changed".into(),
            segment: Some(segment.clone()),
            offset: Some(*offset as u64),
            lost_micros: lost(*lost_bytes),
        }),
        Verdict::Matched { prefix_bytes } if usage.cache_reported && usage.cached_input_tokens == 0 => {
            // Anthropic caches only at markers: none sent is the reason.
            let reason = if markers == Markers::None { "no_cache_marker" } else { "not_cached" };
            Some(CacheMiss { reason: reason.into(), segment: None, offset: None, lost_micros: lost(*prefix_bytes) })
        }
        _ => None,
    }
}

/// Anthropic's own word on why its prompt cache could not serve a request:
/// an answer's `diagnostics.cache_miss_reason`, given when the request named
/// the client's previous message (`diagnostics.previous_message_id`;
/// anthropic-sdk-python 2.17.0 `types/diagnostics.py` and
/// `types/cache_miss_*.py`, the cache diagnostics guide on
/// platform.claude.com).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diagnosis {
    /// What changed: the segment (`system`, `tools`, `messages`: an earlier
    /// message, not only messages appended), or `None` for the model (or its
    /// speed), each of which keeps its own cache.
    pub changed: Option<&'static str>,
    /// "Approximate number of input tokens that would have been read from
    /// cache had the prefix matched the previous request."
    pub tokens: u64,
}

/// Reads an answer's `diagnostics` member (serde `deserialize_with`): a
/// diagnosis that says what changed, or `None` — for none, `null` ("still
/// pending"), `previous_message_not_found`, `unavailable`, a reason not
/// known here, or a member of another shape. Never an error: the answer's
/// usage is read whatever this member holds.
pub fn diagnosis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Diagnosis>, D::Error> {
    #[derive(Deserialize)]
    struct Reason {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        cache_missed_input_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Diagnostics {
        #[serde(default)]
        cache_miss_reason: Option<Reason>,
    }
    // Kept as raw text, then read: a value no Rust type holds (`1e400`)
    // fails only this read (serde's untagged enums buffer and parse it).
    let Some(raw) = Option::<Box<RawValue>>::deserialize(d)? else { return Ok(None) };
    let Ok(Diagnostics { cache_miss_reason: Some(r) }) = serde_json::from_str(raw.get()) else { return Ok(None) };
    let changed = match r.kind.as_str() {
        "model_changed" => None,
        "system_changed" => Some("system"),
        "tools_changed" => Some("tools"),
        "messages_changed" => Some("messages"),
        _ => return Ok(None),
    };
    Ok(r.cache_missed_input_tokens.map(|tokens| Diagnosis { changed, tokens }))
}

/// A bucket's entry: the newest fingerprint first, at most [`RECENT`].
pub fn encode(fps: &[Fingerprint]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fps.len() * (9 + 9 * MAX_BLOCKS));
    for f in fps.iter().take(RECENT) {
        f.encode_into(&mut out);
    }
    out
}

/// Reads an entry; stops at the first malformed byte (shared data is
/// written only by this code, but a short read must not panic).
pub fn decode(mut b: &[u8]) -> Vec<Fingerprint> {
    let mut out = Vec::new();
    let u64_at = |b: &[u8], i: usize| b.get(i..i + 8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes);
    while out.len() < RECENT {
        let (Some(scope), Some(&n)) = (u64_at(b, 0), b.get(8)) else { break };
        let n = usize::from(n).min(MAX_BLOCKS);
        let mut blocks = Vec::with_capacity(n);
        for i in 0..n {
            let at = 9 + i * 9;
            let (Some(&seg), Some(h)) = (b.get(at), u64_at(b, at + 1)) else { return out };
            blocks.push((seg, h));
        }
        out.push(Fingerprint { scope, blocks, lens: Vec::new(), prefix_bytes: 0 });
        b = b.get(9 + n * 9..).unwrap_or_default();
    }
    out
}

/// The entry after a request: it goes first, the oldest falls off.
pub fn updated(current: &Fingerprint, entry: &[u8]) -> Vec<u8> {
    let mut fps = vec![current.clone()];
    fps.extend(decode(entry).into_iter().take(RECENT - 1));
    encode(&fps)
}

/// Anthropic's `cache_control` markers in a request as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markers {
    /// Not Anthropic, or not readable.
    NotApplicable,
    /// Anthropic caches nothing without one.
    None,
    /// The last marker's prefix (everything up to the end of the marked
    /// block: tools, then system, then messages) is shorter than the
    /// provider's minimum: its bytes. The JSON framing overstates the
    /// tokens: below the minimum even so, the marker cannot work.
    BelowMinimum(usize),
    Fine,
}

/// The markers of an Anthropic request body.
pub fn markers(api: Api, body: &[u8]) -> Markers {
    let needle = b"\"cache_control\"";
    if api != Api::AnthropicMessages {
        return Markers::NotApplicable;
    }
    if !body.windows(needle.len()).any(|w| w == needle) {
        return Markers::None;
    }
    match last_marker_prefix(body) {
        Some(b) if b < MIN_CACHEABLE_BYTES => Markers::BelowMinimum(b),
        _ => Markers::Fine,
    }
}

fn last_marker_prefix(body: &[u8]) -> Option<usize> {
    let top: Top = serde_json::from_slice(body).ok()?;
    let marked = |v: &RawValue| v.get().contains("\"cache_control\"");
    let mut bytes = 0usize;
    let mut last_marker = None;
    let blocks = |v: &RawValue| -> Vec<String> {
        match serde_json::from_str::<Vec<&RawValue>>(v.get()) {
            Ok(items) => items.iter().map(|b| b.get().to_string()).collect(),
            Err(_) => vec![v.get().to_string()],
        }
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(t) = top.tools {
        parts.extend(blocks(t));
    }
    if let Some(s) = top.system {
        parts.extend(blocks(s));
    }
    #[derive(Deserialize)]
    struct Msg<'a> {
        #[serde(borrow, default)]
        content: Option<&'a RawValue>,
    }
    let messages: Vec<&RawValue> = top.messages.and_then(|m| serde_json::from_str(m.get()).ok()).unwrap_or_default();
    for m in messages {
        if let Some(c) = serde_json::from_str::<Msg>(m.get()).ok().and_then(|m| m.content) {
            parts.extend(blocks(c));
        }
    }
    for p in &parts {
        bytes += p.len();
        if serde_json::from_str::<&RawValue>(p).is_ok_and(marked) {
            last_marker = Some(bytes);
        }
    }
    last_marker
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(system: &str, user: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"model": "m", "max_tokens": 10, "system": system, "messages": [{"role": "user", "content": user}]})).unwrap()
    }

    fn fp(system: &str) -> Fingerprint {
        fingerprint(Api::AnthropicMessages, &body(system, "What is the refund policy?"), 7).unwrap()
    }

    #[test]
    fn a_timestamp_at_the_top_is_named_with_its_segment_and_offset() {
        let handbook = "Refunds are possible within 30 days. ".repeat(300);
        let at_top = |t: &str| fp(&format!("Current time: {t}. {handbook}"));
        let recent = vec![at_top("2026-11-29T06:13:02.101Z"), at_top("2026-11-29T06:13:02.388Z")];
        match at_top("2026-11-29T06:13:03.007Z").verdict(&recent) {
            Verdict::Changed { segment, offset, lost_bytes } => {
                assert_eq!((segment.as_str(), offset), ("system", 0));
                assert!(lost_bytes > handbook.len(), "everything from the timestamp on: {lost_bytes}");
            }
            v => panic!("{v:?}"),
        }
        // a longer value shifts what follows: still found
        assert!(matches!(at_top("Sunday 29 November 2026, 06:13:03 Central European Time").verdict(&recent), Verdict::Changed { ref segment, offset: 0, .. } if segment == "system"));
        // deeper in the prompt: its block
        let deep = |t: &str| fp(&format!("{}{t}{}", &handbook[..2000], &handbook[2000..]));
        assert!(matches!(deep("[id 1]").verdict(&[deep("[id 2]")]), Verdict::Changed { ref segment, offset: 1536, .. } if segment == "system"));
        // at the end: the prefix is cached, nothing to say
        let at_end = |t: &str| fp(&format!("{handbook} Current time: {t}."));
        assert!(!matches!(at_end("a").verdict(&[at_end("b")]), Verdict::Changed { .. }));
        // the same prompt: matched (then the provider should have cached it)
        assert_eq!(at_end("a").verdict(&[at_end("a")]), Verdict::Matched { prefix_bytes: at_end("a").prefix_bytes });
        // too short to cache, another scope, or nothing recent: no verdict
        assert!(fingerprint(Api::AnthropicMessages, &body("short", "q"), 7).is_none(), "too short to cache: not even fingerprinted");
        let mut other = at_top("x");
        other.scope = 8;
        assert_eq!(at_top("y").verdict(&[other]), Verdict::Unknown);
        assert_eq!(at_top("y").verdict(&[]), Verdict::Unknown);
        // a different prompt altogether is not a cache buster
        assert_eq!(fp(&"Other text entirely. ".repeat(300)).verdict(&recent), Verdict::Unknown);
    }

    #[test]
    fn claude_codes_attestation_is_not_a_change_but_its_version_is() {
        let handbook = "Refunds are possible within 30 days. ".repeat(300);
        let cc = |version: &str, cch: &str| {
            let system = json!([{"type": "text", "text": format!("x-anthropic-billing-header: cc_version={version}; cc_entrypoint=cli; cch={cch};")},
                                {"type": "text", "text": handbook, "cache_control": {"type": "ephemeral"}}]);
            let b = serde_json::to_vec(&json!({"model": "m", "max_tokens": 10, "system": system,
                                               "messages": [{"role": "user", "content": "hi"}]})).unwrap();
            fingerprint(Api::AnthropicMessages, &b, 7).unwrap()
        };
        // Turns of one session: a new cch each, the same prefix.
        let turn = cc("2.1.153.d02", "97bd6");
        assert_eq!(cc("2.1.153.d02", "24c2d").verdict(std::slice::from_ref(&turn)), Verdict::Matched { prefix_bytes: turn.prefix_bytes });
        // Another conversation's version hash is a different prefix for the provider too.
        assert!(matches!(cc("2.1.153.a3f", "24c2d").verdict(&[turn]), Verdict::Changed { ref segment, offset: 0, .. } if segment == "system"));
        // The words elsewhere, or a cch of the client's own text, are compared as they are.
        assert_eq!(attestation(br#"[{"type":"text","text":"cch=12345; x-anthropic-billing-header: none"}]"#), None);
        assert_eq!(attestation(format!("{}x-anthropic-billing-header: cch=1;", " ".repeat(300)).as_bytes()), None);
    }

    #[test]
    fn openai_system_messages_and_the_bucket_entry() {
        let b = serde_json::to_vec(&json!({"model": "m", "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [{"role": "developer", "content": "x".repeat(600)}, {"role": "user", "content": "y".repeat(5000)}]})).unwrap();
        let f = fingerprint(Api::OpenAiChat, &b, 1).unwrap();
        assert_eq!(f.blocks.iter().filter(|b| b.0 == 0).count(), 1);
        assert_eq!(f.blocks.iter().filter(|b| b.0 == 2).count(), 5600_usize.div_ceil(BLOCK) + usize::from(5600 % BLOCK > 460));
        // a change located: the developer message is the system prompt; the user message is messages[1]
        assert_eq!(locate(&b, 2, 10), ("system".to_string(), 10 - 1));
        let (name, _) = locate(&b, 2, 700);
        assert_eq!(name, "messages[1]");
        let big = fp(&"y".repeat(100_000));
        assert_eq!(big.blocks.len(), MAX_BLOCKS, "bounded");
        let mut entry = Vec::new();
        for i in 0..10 {
            let mut x = f.clone();
            x.scope = i;
            entry = updated(&x, &entry);
        }
        let back = decode(&entry);
        assert_eq!(back.iter().map(|f| f.scope).collect::<Vec<_>>(), [9, 8, 7, 6], "newest first, at most RECENT");
        assert_eq!(back[0].blocks, f.blocks);
        assert!(entry.len() <= RECENT * (9 + 9 * MAX_BLOCKS));
        for cut in 0..entry.len() {
            let _ = decode(&entry[..cut]);
        }
        assert!(fingerprint(Api::OpenAiEmbeddings, &b, 1).is_none());
        assert!(fingerprint(Api::OpenAiChat, b"not json", 1).is_none());
    }

    #[test]
    fn markers_short_missing_or_fine() {
        let short = serde_json::to_vec(&json!({"model": "m", "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}], "messages": []})).unwrap();
        assert!(matches!(markers(Api::AnthropicMessages, &short), Markers::BelowMinimum(b) if b < 100));
        let long = serde_json::to_vec(&json!({"model": "m", "system": [{"type": "text", "text": "z".repeat(8000), "cache_control": {"type": "ephemeral"}}], "messages": []})).unwrap();
        assert_eq!(markers(Api::AnthropicMessages, &long), Markers::Fine);
        assert_eq!(markers(Api::AnthropicMessages, &body("z", "q")), Markers::None);
        assert_eq!(markers(Api::OpenAiChat, &short), Markers::NotApplicable);
        // what the record says, and what it costs
        let price = crate::pricing::Price { input: 3_000_000, cached_input: Some(300_000), cache_write: None, cache_write_1h: None, output: 0, web_search_per_1k: None, ..Default::default() };
        let usage = crate::usage::Usage { input_tokens: 2000, cache_reported: true, ..Default::default() };
        let m = explain(&Verdict::Changed { segment: "system".into(), offset: 0, lost_bytes: 4000 }, Markers::Fine, None, &usage, Some(&price)).unwrap();
        assert_eq!((m.reason.as_str(), m.segment.as_deref(), m.offset, m.lost_micros), ("prefix_changed", Some("system"), Some(0), 2700), "1,000 tokens at $2.70/M");
        let m = explain(&Verdict::Matched { prefix_bytes: 8000 }, Markers::None, None, &usage, Some(&price)).unwrap();
        assert_eq!((m.reason.as_str(), m.lost_micros), ("no_cache_marker", 5400));
        assert_eq!(explain(&Verdict::Matched { prefix_bytes: 8000 }, Markers::Fine, None, &crate::usage::Usage { cached_input_tokens: 1, ..usage }, Some(&price)), None);
        assert_eq!(explain(&Verdict::Unknown, Markers::BelowMinimum(40), None, &usage, None).unwrap().reason, "marker_below_minimum");
        // The provider's own word wins over the fingerprint's, bounded by the input not read from cache.
        let said = Diagnosis { changed: Some("tools"), tokens: 1000 };
        let m = explain(&Verdict::Matched { prefix_bytes: 8000 }, Markers::Fine, Some(said), &usage, Some(&price)).unwrap();
        assert_eq!((m.reason.as_str(), m.segment.as_deref(), m.offset, m.lost_micros), ("prefix_changed", Some("tools"), None, 2700));
        let m = explain(&Verdict::Unknown, Markers::BelowMinimum(40), Some(Diagnosis { changed: None, tokens: 9000 }), &usage, Some(&price)).unwrap();
        assert_eq!((m.reason.as_str(), m.segment, m.lost_micros), ("model_changed", None, 5400), "at most the 2,000 uncached tokens");
    }

    /// Anthropic's `diagnostics` member, as anthropic-sdk-python 2.17.0
    /// types it; whatever else it holds, the answer's usage is still read.
    #[test]
    fn the_providers_cache_diagnosis_is_read_and_never_stops_the_usage() {
        let read = |diagnostics: &str| {
            let body = format!(r#"{{"type":"message","model":"claude-opus-4-8","diagnostics":{diagnostics},"usage":{{"input_tokens":5,"output_tokens":2}}}}"#);
            let info = crate::usage::parse_json_response(Api::AnthropicMessages, body.as_bytes());
            assert_eq!(info.usage.map(|u| u.output_tokens), Some(2), "{diagnostics}");
            info.diagnosis
        };
        for (kind, changed) in [("model_changed", None), ("system_changed", Some("system")), ("tools_changed", Some("tools")), ("messages_changed", Some("messages"))] {
            let d = format!(r#"{{"cache_miss_reason":{{"type":"{kind}","cache_missed_input_tokens":4096}}}}"#);
            assert_eq!(read(&d), Some(Diagnosis { changed, tokens: 4096 }));
        }
        for other in ["null", "{}", r#"{"cache_miss_reason":null}"#, r#"{"cache_miss_reason":{"type":"unavailable"}}"#,
                      r#"{"cache_miss_reason":{"type":"previous_message_not_found"}}"#, r#"{"cache_miss_reason":{"type":"system_changed"}}"#,
                      r#"{"cache_miss_reason":{"type":"new_reason","cache_missed_input_tokens":1}}"#, r#"{"cache_miss_reason":{"type":"tools_changed","cache_missed_input_tokens":-1}}"#,
                      r#""text""#, "[1,2]", "1e400"] {
            assert_eq!(read(other), None, "{other}");
        }
        // In a stream, the diagnosis comes with message_start's message.
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"diagnostics\":{\"cache_miss_reason\":{\"type\":\"system_changed\",\"cache_missed_input_tokens\":77}},\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
        let mut t = crate::usage::StreamTracker::new(Api::AnthropicMessages, false);
        let _ = t.push(stream.as_bytes());
        assert_eq!(t.summary().diagnosis, Some(Diagnosis { changed: Some("system"), tokens: 77 }));
    }
}
