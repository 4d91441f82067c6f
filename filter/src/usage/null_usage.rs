//! The `"usage":null` member the gateway caused, found and taken out of an
//! OpenAI stream chunk without parsing it.

/// Writes `raw` to `out` without the chunk's top-level `"usage":null`
/// member, which the gateway caused by forcing `include_usage` (whitespace
/// variants, `"usage" : null`, too). Members named `usage` deeper in the
/// chunk are the provider's and stay.
///
/// OpenAI sends the member near the end (last, or before `obfuscation`),
/// so it is looked for from the end first: the last `"usage":null` is the
/// top level's when what follows it closes the chunk's object. (A forward
/// search read the whole chunk for it: in wasm, three times the rest of the
/// chunk's reading.) Otherwise the chunk is followed brace by brace, strings
/// skipped, to find it. In JSON text a `"` inside a string is always
/// escaped, so an unescaped `"usage"` is a member name.
pub(super) fn strip_null_usage(raw: &[u8], out: &mut Vec<u8>) {
    static LAST: std::sync::OnceLock<memchr::memmem::FinderRev<'static>> = std::sync::OnceLock::new();
    let last = LAST.get_or_init(|| memchr::memmem::FinderRev::new(b"\"usage\""));
    // No `"usage"` at all (providers that leave the member out): nothing to
    // walk for.
    let Some(at) = last.rfind(raw) else {
        out.extend_from_slice(raw);
        return;
    };
    let last_one = null_usage_member_at(raw, at).filter(|&len| raw.get(at + len..).is_some_and(closes_the_object)).map(|len| (at, len));
    let Some((p, len)) = last_one.or_else(|| top_level_null_usage(raw)) else {
        out.extend_from_slice(raw);
        return;
    };
    let before = raw.get(..p).unwrap_or_default();
    let mut after = p + len;
    // Drop a preceding comma (`,"usage":null`) or else a following one.
    match before.iter().rposition(|b| !b.is_ascii_whitespace()).filter(|&q| before.get(q) == Some(&b',')) {
        Some(comma) => out.extend_from_slice(before.get(..comma).unwrap_or_default()),
        None => {
            out.extend_from_slice(before);
            while raw.get(after).is_some_and(u8::is_ascii_whitespace) {
                after += 1;
            }
            if raw.get(after) == Some(&b',') {
                after += 1;
            }
        }
    }
    out.extend_from_slice(raw.get(after..).unwrap_or_default());
}

/// Where the top-level object's `"usage":null` member starts, and its
/// length: the chunk followed brace by brace, strings skipped.
fn top_level_null_usage(raw: &[u8]) -> Option<(usize, usize)> {
    let mut depth = 0u32;
    for (i, b) in tollgate_protocol::json::outside_strings(raw) {
        match b {
            b'"' if depth == 1 => {
                if let Some(len) = null_usage_member_at(raw, i) {
                    return Some((i, len));
                }
            }
            b'{' | b'[' => depth = depth.saturating_add(1),
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Whether `rest`, the text after a member, closes the object the member is
/// in with nothing but whitespace after: the member is then one of the
/// outermost object's.
fn closes_the_object(rest: &[u8]) -> bool {
    let mut depth = 0u32;
    for (i, b) in tollgate_protocol::json::outside_strings(rest) {
        match b {
            b'{' | b'[' => depth = depth.saturating_add(1),
            b'}' | b']' if depth == 0 => return b == b'}' && rest.get(i + 1..).is_some_and(|t| t.iter().all(u8::is_ascii_whitespace)),
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The length of a `"usage"` `:` `null` member (whitespace allowed
/// around the colon) starting at `raw[i]`.
fn null_usage_member_at(raw: &[u8], i: usize) -> Option<usize> {
    let rest = raw.get(i..)?;
    let after_name = rest.strip_prefix(b"\"usage\"")?;
    let after_colon = skip_whitespace(after_name).strip_prefix(b":")?;
    let value = skip_whitespace(after_colon);
    value.strip_prefix(b"null")?;
    Some(rest.len() - value.len() + 4)
}

fn skip_whitespace(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    b.get(n..).unwrap_or_default()
}
