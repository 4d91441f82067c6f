//! The built-in detectors: each finds byte ranges of one data class in a
//! text, in one pass, with the checks that keep look-alikes out (Luhn for
//! card numbers, mod-97 for IBANs, SSN number rules, octet ranges for IP
//! addresses, known prefixes and lengths for secrets). Every scanner is
//! linear in the text's length.

/// A data class a detector finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    Ip,
    Secret,
}

impl Class {
    pub const ALL: [Class; 7] = [Class::Email, Class::Phone, Class::Card, Class::Iban, Class::Ssn, Class::Ip, Class::Secret];

    pub fn name(self) -> &'static str {
        match self {
            Class::Email => "email",
            Class::Phone => "phone",
            Class::Card => "card",
            Class::Iban => "iban",
            Class::Ssn => "ssn",
            Class::Ip => "ip",
            Class::Secret => "secret",
        }
    }

    /// The placeholder stem (`[EMAIL_1]`).
    pub fn label(self) -> &'static str {
        match self {
            Class::Email => "EMAIL",
            Class::Phone => "PHONE",
            Class::Card => "CARD",
            Class::Iban => "IBAN",
            Class::Ssn => "SSN",
            Class::Ip => "IP",
            Class::Secret => "SECRET",
        }
    }

}

/// A found value: class and byte range in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub class: Class,
    pub start: usize,
    pub end: usize,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The end of the run starting at `i` of bytes satisfying `f`.
fn run(t: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    while t.get(i).is_some_and(|&b| f(b)) {
        i += 1;
    }
    i
}

/// All hits of every built-in class, in order, without overlaps (the
/// earlier and longer hit wins).
pub fn scan(text: &str) -> Vec<Hit> {
    let t = text.as_bytes();
    let mut hits = Vec::new();
    // One cheap pass says which scanners can find anything at all.
    let (mut at, mut digit, mut upper) = (false, false, false);
    for &b in t {
        at |= b == b'@';
        digit |= b.is_ascii_digit();
        upper |= b.is_ascii_uppercase();
    }
    secrets(t, &mut hits);
    if at {
        emails(t, &mut hits);
    }
    if upper && digit {
        ibans(t, &mut hits);
    }
    if digit {
        digit_runs(t, &mut hits);
        ipv4(t, &mut hits);
    }
    hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let mut out: Vec<Hit> = Vec::with_capacity(hits.len());
    for h in hits {
        if out.last().is_none_or(|l| h.start >= l.end) {
            out.push(h);
        }
    }
    out
}

fn emails(t: &[u8], hits: &mut Vec<Hit>) {
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let domain = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    let mut last_end = 0;
    for (at, _) in t.iter().enumerate().filter(|(_, &b)| b == b'@') {
        if at < last_end {
            continue;
        }
        let mut start = at;
        while start > last_end && t.get(start - 1).is_some_and(|&b| local(b)) {
            start -= 1;
        }
        let mut end = run(t, at + 1, domain);
        while end > at + 1 && matches!(t.get(end - 1), Some(b'.' | b'-')) {
            end -= 1;
        }
        let dom = t.get(at + 1..end).unwrap_or_default();
        let tld_ok = dom
            .iter()
            .rposition(|&b| b == b'.')
            .is_some_and(|dot| dot > 0 && dom.len() - dot > 2 && dom.get(dot + 1..).is_some_and(|tld| tld.iter().all(u8::is_ascii_alphabetic)));
        if start < at && tld_ok {
            hits.push(Hit { class: Class::Email, start, end });
            last_end = end;
        }
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn card_prefix(d: &[u8]) -> bool {
    let n = |k: usize| d.get(..k).and_then(|p| std::str::from_utf8(p).ok()?.parse::<u32>().ok()).unwrap_or(0);
    matches!(d.first(), Some(b'4'))
        || (51..=55).contains(&n(2))
        || (2221..=2720).contains(&n(4))
        || matches!(n(2), 34 | 37 | 65 | 35 | 36 | 38 | 62)
        || n(4) == 6011
        || (644..=649).contains(&n(3))
}

fn ssn_ok(d: &[u8]) -> bool {
    let area = d.get(..3).unwrap_or(d);
    area != b"000" && area != b"666" && area.first() != Some(&b'9') && d.get(3..5) != Some(b"00") && d.get(5..9) != Some(b"0000")
}

/// Digit sequences with separators: card numbers, US SSNs, phone numbers.
fn digit_runs(t: &[u8], hits: &mut Vec<Hit>) {
    let mut i = 0;
    while i < t.len() {
        if !t.get(i).is_some_and(|&b| b.is_ascii_digit() || b == b'+' || b == b'(') {
            i += 1;
            continue;
        }
        let starts_plus = t.get(i) == Some(&b'+') && t.get(i + 1).is_some_and(u8::is_ascii_digit);
        let starts_paren = t.get(i) == Some(&b'(') && t.get(i + 1).is_some_and(u8::is_ascii_digit);
        let starts_digit = t.get(i).is_some_and(u8::is_ascii_digit);
        let boundary = i == 0 || t.get(i - 1).is_none_or(|&b| !is_word(b) && b != b'.' && b != b'-' && b != b'/' && b != b':');
        if !(starts_plus || starts_paren || starts_digit) || !boundary {
            i += 1;
            continue;
        }
        // Digits and single separators (space, '-', '.', parentheses).
        let mut j = i + usize::from(starts_plus || starts_paren);
        let mut digits = Vec::with_capacity(20);
        let mut groups = vec![0usize];
        let mut seps = Vec::new();
        while let Some(&b) = t.get(j) {
            if b.is_ascii_digit() {
                digits.push(b);
                if let Some(g) = groups.last_mut() {
                    *g += 1;
                }
                j += 1;
            } else if matches!(b, b' ' | b'-' | b'.' | b')' | b'(') && t.get(j + 1).is_some_and(|&n| n.is_ascii_digit() || (b == b')' && n == b' ')) && digits.len() < 19 {
                seps.push(b);
                groups.push(0);
                j += 1;
                if b == b')' && t.get(j) == Some(&b' ') {
                    j += 1;
                }
            } else {
                break;
            }
        }
        // Not part of a longer token: `3210-A`, `1.5`.
        let after_ok = t.get(j).is_none_or(|&b| !is_word(b) && (!matches!(b, b'.' | b'-') || !t.get(j + 1).is_some_and(u8::is_ascii_alphanumeric)));
        let n = digits.len();
        let mut class = None;
        if after_ok && !starts_plus && !starts_paren && (13..=19).contains(&n) && luhn(&digits) && card_prefix(&digits)
            && (seps.is_empty() || seps.iter().all(|&s| s == b' ' || s == b'-'))
        {
            class = Some(Class::Card);
        } else if after_ok && n == 9 && groups == [3, 2, 4] && seps == [b'-', b'-'] && ssn_ok(&digits) {
            class = Some(Class::Ssn);
        } else if after_ok && is_phone(starts_plus, starts_paren, &groups, &seps, &digits) {
            class = Some(Class::Phone);
        }
        match class {
            Some(c) => {
                hits.push(Hit { class: c, start: i, end: j });
                i = j;
            }
            None => i = j.max(i + 1),
        }
    }
}

/// A phone number: an international number (`+` and 8 to 15 digits), a
/// North American one written 3-3-4 (`(415) 555-0100`, `415.555.0100`), or
/// a national one starting with 0 in groups with one kind of separator
/// (`020 7946 0958`). Bare digit runs (order numbers, timestamps) and dates
/// are not phone numbers.
fn is_phone(plus: bool, paren: bool, groups: &[usize], seps: &[u8], digits: &[u8]) -> bool {
    let n = digits.len();
    if plus {
        return (8..=15).contains(&n) && groups.iter().all(|&g| g <= 8);
    }
    let one_kind = seps.windows(2).all(|w| w.first() == w.last());
    if paren {
        return n == 10 && groups == [3, 3, 4] && seps.first() == Some(&b')');
    }
    if n == 10 && groups == [3, 3, 4] && one_kind && !seps.is_empty() {
        return true;
    }
    digits.first() == Some(&b'0') && (10..=11).contains(&n) && groups.len() >= 2 && one_kind
        && groups.iter().all(|&g| (2..=8).contains(&g)) && seps.iter().all(|&s| s == b' ' || s == b'-')
}

fn ibans(t: &[u8], hits: &mut Vec<Hit>) {
    let mut i = 0;
    while i + 15 <= t.len() {
        if !t.get(i).is_some_and(u8::is_ascii_uppercase) {
            i += 1;
            continue;
        }
        let boundary = i == 0 || t.get(i - 1).is_none_or(|&b| !is_word(b));
        let head = t.get(i..i + 4).unwrap_or_default();
        if !(boundary && head.len() == 4 && head.iter().take(2).all(u8::is_ascii_uppercase) && head.iter().skip(2).all(u8::is_ascii_digit)) {
            i += 1;
            continue;
        }
        // Alphanumerics, optionally in groups of four separated by single spaces.
        let mut chars = Vec::with_capacity(34);
        let mut j = i;
        while let Some(&b) = t.get(j) {
            if b.is_ascii_uppercase() || b.is_ascii_digit() {
                chars.push(b);
                j += 1;
            } else if b == b' ' && chars.len() % 4 == 0 && t.get(j + 1).is_some_and(|&n| n.is_ascii_uppercase() || n.is_ascii_digit()) {
                j += 1;
            } else {
                break;
            }
            if chars.len() == 34 {
                break;
            }
        }
        let after_ok = t.get(j).is_none_or(|&b| !is_word(b));
        if after_ok && (15..=34).contains(&chars.len()) && mod97(&chars) {
            hits.push(Hit { class: Class::Iban, start: i, end: j });
            i = j;
        } else {
            i += 1;
        }
    }
}

fn mod97(chars: &[u8]) -> bool {
    let mut rem = 0u32;
    for &c in chars.iter().skip(4).chain(chars.iter().take(4)) {
        let v = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') + 10 };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

fn ipv4(t: &[u8], hits: &mut Vec<Hit>) {
    let mut i = 0;
    while i < t.len() {
        if !t.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            continue;
        }
        let boundary = i == 0 || t.get(i - 1).is_none_or(|&b| !is_word(b) && b != b'.' && b != b'-');
        if !boundary {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut octets = 0;
        let mut ok = true;
        loop {
            let end = run(t, j, |b| b.is_ascii_digit());
            let part = t.get(j..end).unwrap_or_default();
            if part.is_empty() || part.len() > 3 || (part.len() > 1 && part.first() == Some(&b'0')) {
                ok = false;
                break;
            }
            let v: u32 = std::str::from_utf8(part).ok().and_then(|s| s.parse().ok()).unwrap_or(999);
            if v > 255 {
                ok = false;
                break;
            }
            octets += 1;
            j = end;
            if octets == 4 {
                break;
            }
            if t.get(j) == Some(&b'.') && t.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j += 1;
            } else {
                ok = false;
                break;
            }
        }
        // Not a longer dotted number (a version like 1.2.3.4.5) nor a word.
        let after_ok = t.get(j).is_none_or(|&b| !is_word(b) && (b != b'.' || !t.get(j + 1).is_some_and(u8::is_ascii_digit)));
        if ok && octets == 4 && after_ok {
            hits.push(Hit { class: Class::Ip, start: i, end: j });
            i = j;
        } else {
            i = run(t, i, |b| b.is_ascii_digit() || b == b'.').max(i + 1);
        }
    }
}

/// A byte that continues a token (key bodies, base64url): nothing begins after one.
const fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// [`SECRET_BYTES`]: the byte can begin a secret (`sk-`, `AKIA`, `ghp_`,
/// `xoxb-`, `eyJ`, `-----BEGIN`, ...).
const BEGINS: u8 = 1;
/// [`SECRET_BYTES`]: the byte continues a token (so nothing begins after it).
const CONTINUES: u8 = 2;

/// Each byte's [`BEGINS`] and [`CONTINUES`] bits, looked up once per byte
/// of a text (a table: the scan's inner loop is most of a clean text's cost).
static SECRET_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let x = b as u8;
        let begins = matches!(x, b's' | b'A' | b'g' | b'x' | b'e' | b'-');
        let continues = token_byte(x);
        #[allow(clippy::indexing_slicing)] // evaluated at compile time: b < 256
        {
            table[b] = if begins { BEGINS } else { 0 } | if continues { CONTINUES } else { 0 };
        }
        b += 1;
    }
    table
};

/// Provider API keys, cloud access keys, GitHub and Slack tokens, JWTs and
/// private key blocks.
fn secrets(t: &[u8], hits: &mut Vec<Hit>) {
    let mut i = 0;
    while let Some((start, first)) = next_secret_start(t, i) {
        i = start;
        match secret_at(t, i, first) {
            Some(end) => {
                hits.push(Hit { class: Class::Secret, start: i, end });
                i = end.max(i + 1);
            }
            None => i += 1,
        }
    }
}

/// The next place from `i` where a secret can start: a byte that can begin
/// one, after one that cannot continue it. One pass that carries whether
/// the byte before continues a token (most bytes of a text begin nothing:
/// this loop is most of a clean text's scan, so it is inlined into it).
#[inline(always)]
fn next_secret_start(t: &[u8], i: usize) -> Option<(usize, u8)> {
    let mut after_token = i > 0 && t.get(i - 1).is_some_and(|&b| token_byte(b));
    for (k, &b) in t.iter().enumerate().skip(i) {
        let class = SECRET_BYTES.get(usize::from(b)).copied().unwrap_or(0);
        if !after_token && class & BEGINS != 0 {
            return Some((k, b));
        }
        after_token = class & CONTINUES != 0;
    }
    None
}

/// The end of the secret starting at `i` (whose byte is `first`), if one does.
fn secret_at(t: &[u8], i: usize, first: u8) -> Option<usize> {
    let rest = t.get(i..).unwrap_or_default();
    // The second byte rules out most words (`sit`, `example`, `and`).
    let second = rest.get(1).copied().unwrap_or(0);
    // (Each first byte here is one SECRET_BYTES marks BEGINS.)
    let plausible = match first {
        b's' => second == b'k',
        b'A' => matches!(second, b'K' | b'S' | b'I'),
        b'g' => matches!(second, b'h' | b'i'),
        b'x' => second == b'o',
        b'e' => second == b'y',
        _ => second == b'-',
    };
    if !plausible {
        return None;
    }
    if first == b'-' {
        return private_key_block(rest).map(|len| i + len);
    }
    if first == b'e' && rest.starts_with(b"eyJ") {
        if let Some(end) = jwt(t, i) {
            return Some(end);
        }
    }
    prefixed(t, i, first)
}

/// The length of a PEM private key block at the start of `rest`, through
/// its END line (or to the end of the text when it has none).
fn private_key_block(rest: &[u8]) -> Option<usize> {
    if !rest.starts_with(b"-----BEGIN ") {
        return None;
    }
    let head_end = rest.iter().skip(11).position(|&b| b == b'\n').map_or(rest.len(), |p| p + 11);
    let head = rest.get(..head_end).unwrap_or_default();
    if !head.windows(11).any(|w| w == b"PRIVATE KEY") {
        return None;
    }
    let end_marker = b"-----END ";
    let end = rest
        .windows(end_marker.len())
        .position(|w| w == end_marker)
        .and_then(|p| rest.iter().skip(p + end_marker.len()).position(|&b| b == b'\n').map(|q| p + end_marker.len() + q))
        .unwrap_or(rest.len());
    Some(end)
}

/// A JWT at `i`: three base64url parts, the first two JSON objects ("eyJ").
fn jwt(t: &[u8], i: usize) -> Option<usize> {
    let p1 = run(t, i, token_byte);
    if t.get(p1) != Some(&b'.') || t.get(p1 + 1..p1 + 4) != Some(b"eyJ") {
        return None;
    }
    let p2 = run(t, p1 + 1, token_byte);
    if t.get(p2) != Some(&b'.') {
        return None;
    }
    let p3 = run(t, p2 + 1, token_byte);
    (p3 > p2 + 10 && p1 - i > 10).then_some(p3)
}

/// A key or token with a known prefix at `i`.
fn prefixed(t: &[u8], i: usize, first: u8) -> Option<usize> {
    // (prefix, body chars, minimum body length, exact length or 0)
    const PREFIXED: &[(&[u8], u8, usize, usize)] = &[
        (b"sk-ant-", 0, 32, 0),
        (b"sk-proj-", 0, 32, 0),
        (b"sk-", 0, 32, 0),
        (b"AKIA", 1, 16, 16),
        (b"ASIA", 1, 16, 16),
        (b"ghp_", 2, 36, 36),
        (b"gho_", 2, 36, 36),
        (b"ghu_", 2, 36, 36),
        (b"ghs_", 2, 36, 36),
        (b"ghr_", 2, 36, 36),
        (b"github_pat_", 0, 60, 0),
        (b"xoxb-", 0, 20, 0),
        (b"xoxp-", 0, 20, 0),
        (b"AIza", 0, 35, 35),
    ];
    let rest = t.get(i..).unwrap_or_default();
    for &(prefix, kind, min, exact) in PREFIXED {
        if prefix.first() != Some(&first) || !rest.starts_with(prefix) {
            continue;
        }
        let body_ok = |b: u8| match kind {
            1 => b.is_ascii_uppercase() || b.is_ascii_digit(),
            2 => b.is_ascii_alphanumeric(),
            _ => token_byte(b),
        };
        let end = run(t, i + prefix.len(), body_ok);
        let len = end - i - prefix.len();
        let digits = t.get(i + prefix.len()..end).unwrap_or_default().iter().filter(|b| b.is_ascii_digit()).count();
        if len >= min && (exact == 0 || len == exact) && t.get(end).is_none_or(|&b| !token_byte(b)) && digits > 0 {
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_classes_are_the_protocols() {
        let names: Vec<&str> = Class::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, tollgate_protocol::guard::BUILTIN_CLASSES);
    }

    use super::*;

    fn classes(t: &str) -> Vec<(Class, &str)> {
        scan(t).into_iter().map(|h| (h.class, &t[h.start..h.end])).collect()
    }

    #[test]
    fn finds_each_class_with_its_checks() {
        assert_eq!(classes("mail jane.doe+x@example.co.uk now"), vec![(Class::Email, "jane.doe+x@example.co.uk")]);
        assert_eq!(classes("card 4111 1111 1111 1111."), vec![(Class::Card, "4111 1111 1111 1111")]);
        assert_eq!(classes("card 4111 1111 1111 1112"), vec![], "fails Luhn");
        assert_eq!(classes("iban GB82 WEST 1234 5698 7654 32"), vec![(Class::Iban, "GB82 WEST 1234 5698 7654 32")]);
        assert_eq!(classes("iban GB82WEST12345698765433"), vec![], "fails mod-97");
        assert_eq!(classes("ssn 123-45-6789"), vec![(Class::Ssn, "123-45-6789")]);
        assert_eq!(classes("ssn 666-45-6789"), vec![]);
        assert_eq!(classes("call +1 415 555 0100 or (415) 555-0199"), vec![(Class::Phone, "+1 415 555 0100"), (Class::Phone, "(415) 555-0199")]);
        assert_eq!(classes("from 10.0.12.7:443"), vec![(Class::Ip, "10.0.12.7")]);
        assert_eq!(classes("key sk-proj-abc123DEF456ghi789JKL012mno345PQR"), vec![(Class::Secret, "sk-proj-abc123DEF456ghi789JKL012mno345PQR")]);
        assert_eq!(classes("AKIAIOSFODNN7EXAMPLE"), vec![(Class::Secret, "AKIAIOSFODNN7EXAMPLE")]);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(classes(jwt), vec![(Class::Secret, jwt)]);
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(classes(pem).len(), 1);
    }

    #[test]
    fn a_secret_is_found_wherever_a_token_can_begin_and_nowhere_else() {
        let secrets = [
            "sk-ant-api03-abcdefghij0123456789ABCDEFGHIJ",
            "sk-proj-abc123DEF456ghi789JKL012mno345PQR",
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAIOSFODNN7EXAMPLE",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
            "github_pat_0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmn",
            "xoxb-0123456789-abcdefghij",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ];
        for secret in secrets {
            // After nothing, a space, punctuation, a newline, and after
            // words that begin like secrets do ("sit", "ask", "example").
            for before in ["", " ", "(", "\n", "\"", "sit ", "ask sk ", "example: ", "AKA "] {
                let text = format!("{before}{secret} and more");
                assert_eq!(classes(&text), vec![(Class::Secret, secret)], "{text:?}");
            }
            // Inside a token: not the start of one.
            for before in ["x", "9", "_", "-", "s", "sk"] {
                let text = format!("{before}{secret} and more");
                assert_eq!(classes(&text), vec![], "{text:?}");
            }
        }
    }

    #[test]
    fn look_alikes_are_not_flagged() {
        for t in [
            "order 1234567890123 shipped",
            "ts 1732838400123",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
            "version 1.2.3.4.5 and 3.14159",
            "isbn 978-3-16-148410-0",
            "git sha 4f2a9c81e0d6b7a35c1e9f08d2b4a6c7e8f90123",
            "sk-learn is a library; the task-id is sk-12",
            "price 1,234.56 and 2024-11-29 10:00",
            "call me at 10",
        ] {
            assert_eq!(classes(t), vec![], "{t}");
        }
    }
}
