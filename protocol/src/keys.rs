//! Virtual keys: hashing and extraction from request headers.
//!
//! A virtual key is never stored or logged in clear: configuration and the
//! control service hold only `sha3_256(key)` as lowercase hex (SHA3-256 is the
//! standardised Keccak; `python3 -c 'import hashlib,sys;print(hashlib.sha3_256(sys.argv[1].encode()).hexdigest())' KEY`
//! or `openssl dgst -sha3-256` compute the same value).

use tiny_keccak::{Hasher, Sha3};

/// SHA3-256 of the key, lowercase hex (64 characters).
pub fn hash_key(key: &str) -> String {
    let mut h = Sha3::v256();
    h.update(key.as_bytes());
    let mut out = [0u8; 32];
    h.finalize(&mut out);
    to_hex(&out)
}

pub fn to_hex(bytes: &[u8]) -> String {
    fn digit(n: u8) -> char {
        char::from_digit(u32::from(n), 16).unwrap_or('0')
    }
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 0x0f));
    }
    s
}

/// True if `s` looks like a key hash (64 lowercase hex digits).
pub fn is_key_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The presented key, from `Authorization: Bearer <key>` (OpenAI clients) or
/// `x-api-key: <key>` (Anthropic clients; the filter also passes Gemini's
/// `x-goog-api-key` here). `Authorization` wins when both are present.
/// Returns `None` when neither carries a non-empty key.
pub fn presented_key<'a>(authorization: Option<&'a str>, x_api_key: Option<&'a str>) -> Option<&'a str> {
    if let Some(a) = authorization {
        let a = a.trim();
        let token = a
            .strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("bearer "))
            .or_else(|| a.strip_prefix("BEARER "))
            .map(str::trim);
        if let Some(t) = token {
            if !t.is_empty() {
                return Some(t);
            }
        }
    }
    x_api_key.map(str::trim).filter(|k| !k.is_empty())
}

/// A short, non-secret reference to a key for logs: the first 12 hex digits of its hash.
pub fn key_ref(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha3_matches_known_vector() {
        // SHA3-256("abc") from FIPS 202 examples.
        assert_eq!(hash_key("abc"), "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532");
        assert!(is_key_hash(&hash_key("tg-anything")));
        assert!(!is_key_hash("ABC"));
    }

    #[test]
    fn key_from_headers() {
        assert_eq!(presented_key(Some("Bearer tg-1"), None), Some("tg-1"));
        assert_eq!(presented_key(Some("bearer  tg-1 "), None), Some("tg-1"));
        assert_eq!(presented_key(None, Some("tg-2")), Some("tg-2"));
        assert_eq!(presented_key(Some("Bearer "), Some("tg-2")), Some("tg-2"));
        assert_eq!(presented_key(Some("Basic abc"), None), None);
        assert_eq!(presented_key(None, Some("  ")), None);
        assert_eq!(presented_key(Some("Bearer a"), Some("b")), Some("a"));
    }
}
