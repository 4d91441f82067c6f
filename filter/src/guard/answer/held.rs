//! How much of a stream's text may be released: the tails that could
//! still grow into a value or a placeholder are held back, each within a
//! bound.

use super::super::Policy;

/// Longest placeholder held back while it may still be arriving.
pub(super) const MAX_PLACEHOLDER: usize = 48;
/// Longest trailing word held back (e-mail addresses, keys, tokens).
pub(super) const MAX_WORD: usize = 1024;
/// Longest trailing run of digits, capitals and separators held back
/// (grouped card numbers, IBANs, phone numbers).
pub(super) const MAX_NUMBER: usize = 64;
/// Longest unclosed private key block held back.
pub(super) const MAX_PEM: usize = 16 * 1024;

/// Where to stop releasing `text`: the start of the earliest tail that may
/// still grow into a value (`scan`) or a placeholder (`restore`).
pub(super) fn hold_point(text: &str, policy: &Policy, scan: bool, restore: bool) -> usize {
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
pub(super) fn placeholder_spans(text: &str, upto: usize) -> Vec<(usize, usize)> {
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
