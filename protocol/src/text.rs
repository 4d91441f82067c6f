//! Values that leave the filter: every string that came from a client or a
//! provider and is copied into a header, a record, a log line or a metric
//! passes through here first.

/// A free-text field (an end-user id, a model name a provider reported):
/// control characters removed, at most `max_chars` characters.
pub fn clean_field(s: &str, max_chars: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max_chars).collect()
}

/// [`clean_field`] in place, without allocating when `s` is already clean
/// and short (the usual case: the record is bounded on every request).
pub fn bound_in_place(s: &mut String, max_chars: usize) {
    if s.len() <= max_chars && !s.chars().any(char::is_control) {
        return;
    }
    *s = clean_field(s, max_chars);
}

/// May `v` be sent as an HTTP header value? Visible ASCII and spaces only:
/// no CR, LF, NUL or other control byte (header injection), no bytes that
/// are not ASCII (clients disagree on their encoding).
pub fn header_safe(v: &str) -> bool {
    v.bytes().all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

/// Bytes as text for a log line: invalid UTF-8 and control characters
/// replaced, at most `max_chars` characters.
pub fn loggable(b: &[u8], max_chars: usize) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_and_bounds() {
        assert_eq!(clean_field("a\r\nb\u{1b}[31mc\0", 10), "ab[31mc");
        assert_eq!(clean_field("ééé", 2), "éé");
        for (input, max) in [("ok", 10), ("a\u{1b}b", 10), ("ééé", 2), ("abcdef", 3)] {
            let mut s = input.to_string();
            bound_in_place(&mut s, max);
            assert_eq!(s, clean_field(input, max), "{input:?}");
        }
        assert!(header_safe("gpt-5.4 mini"));
        for bad in ["a\r\nset-cookie: x", "a\0", "caf\u{e9}", "\u{7f}"] {
            assert!(!header_safe(bad), "{bad:?}");
        }
        assert_eq!(loggable(b"caf\xe9\n", 10), "caf\u{fffd}?");
    }
}
