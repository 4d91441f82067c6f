//! A prompt cache that behaves like the providers': the answer reports
//! cached tokens only for a prefix that is byte-for-byte the same as one
//! sent recently, long enough to be cached.
//!
//! - OpenAI (and DeepSeek): automatic; prefixes of 1,024 tokens and more, in
//!   steps of 128 tokens, are cached when a request is served and read by a
//!   later request that starts with the same bytes (OpenAI "Prompt caching"
//!   guide, platform.openai.com/docs/guides/prompt-caching: "exact prefix
//!   match", "cache hits … in 128-token increments", minimum 1,024 tokens,
//!   cleared after 5–10 minutes of inactivity).
//! - Anthropic: only where the request marks `cache_control`: the prefix up
//!   to a breakpoint (tools, then system, then messages) is written
//!   (`cache_creation_input_tokens`) and read by a later request with the
//!   same prefix (`cache_read_input_tokens`); shorter than 1,024 tokens it is
//!   not cached at all (Anthropic "Prompt caching" docs, minimum cacheable
//!   length; 5-minute default lifetime).
//!
//! The mock's tokens are 4 bytes of prompt text (`count_tokens`), so a
//! prefix of N tokens is the first 4·N bytes of the request's prompt text.
//! Keyed by model and by the caller's credential, as the providers scope
//! caches to an organisation. Bounded: the oldest entries go first past
//! 100,000; entries expire after 5 minutes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

const MIN_TOKENS: u64 = 1024;
const STEP_TOKENS: u64 = 128;
const TTL: Duration = Duration::from_secs(300);
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct PrefixCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<u64, Instant>,
    order: VecDeque<u64>,
}

/// FNV-1a: deterministic, no dependency; collisions only cost a wrong hit
/// in a test mock. Running: the hash of every prefix in one pass.
struct Fnv(u64);

impl Fnv {
    fn new(scope: &str) -> Fnv {
        let mut f = Fnv(0xcbf2_9ce4_8422_2325);
        f.feed(scope.as_bytes());
        f.feed(&[0]);
        f
    }

    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn hash(scope: &str, bytes: &[u8]) -> u64 {
    let mut f = Fnv::new(scope);
    f.feed(bytes);
    f.0
}

impl PrefixCache {
    fn hit(&self, key: u64, now: Instant) -> bool {
        self.inner.lock().ok().and_then(|i| i.seen.get(&key).copied()).is_some_and(|t| now.duration_since(t) < TTL)
    }

    fn store(&self, key: u64, now: Instant) {
        if let Ok(mut i) = self.inner.lock() {
            if i.seen.insert(key, now).is_none() {
                i.order.push_back(key);
            }
            while i.order.len() > MAX_ENTRIES {
                if let Some(old) = i.order.pop_front() {
                    i.seen.remove(&old);
                }
            }
        }
    }

    /// OpenAI: the cached tokens of `text` (the request's prompt text), and
    /// the prefixes of this request stored for later ones.
    pub fn openai(&self, scope: &str, text: &[u8]) -> u64 {
        let now = Instant::now();
        let tokens = (text.len() as u64) / 4;
        let mut cached = 0;
        let mut n = MIN_TOKENS;
        // One pass: the running hash is each prefix's (a 1 MB prompt was quadratic).
        let mut running = Fnv::new(scope);
        let mut fed = 0usize;
        while n <= tokens {
            let end = (n * 4) as usize;
            running.feed(text.get(fed..end).unwrap_or_default());
            fed = end;
            let k = running.0;
            if self.hit(k, now) {
                cached = n;
            }
            self.store(k, now);
            n += STEP_TOKENS;
        }
        cached
    }

    /// Anthropic: (read, written) tokens for the prefixes ending at the
    /// breakpoints (`ends`: byte offsets into `text`, in order).
    pub fn anthropic(&self, scope: &str, text: &[u8], ends: &[usize]) -> (u64, u64) {
        let now = Instant::now();
        let mut read = 0;
        let mut longest = 0;
        for &end in ends {
            let tokens = (end as u64) / 4;
            if tokens < MIN_TOKENS {
                continue;
            }
            longest = longest.max(tokens);
            let k = hash(scope, text.get(..end).unwrap_or(text));
            if self.hit(k, now) {
                read = read.max(tokens);
            }
            self.store(k, now);
        }
        (read, longest.saturating_sub(read))
    }
}

/// The prompt text in the providers' cache order (tools, system, messages)
/// and, for Anthropic, the byte offsets where a `cache_control` marker ends a prefix.
pub fn prompt_text(req: &Value) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut ends = Vec::new();
    fn walk(v: &Value, out: &mut Vec<u8>, ends: &mut Vec<usize>) {
        match v {
            Value::String(s) => out.extend_from_slice(s.as_bytes()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out, ends)),
            Value::Object(m) => {
                for (k, x) in m {
                    if k != "cache_control" {
                        walk(x, out, ends);
                    }
                }
                if m.contains_key("cache_control") {
                    ends.push(out.len());
                }
            }
            _ => {}
        }
    }
    for k in ["tools", "system", "messages"] {
        if let Some(v) = req.get(k) {
            walk(v, &mut out, &mut ends);
        }
    }
    (out, ends)
}
