//! The proxy-wasm ABI's serialized header map, decoded without trusting it.
//!
//! The SDK's own decoder unwraps `String::from_utf8` on every name and
//! value: one header byte that is not UTF-8 (`x-a: caf\xe9`) panics the VM
//! and every later request on that worker fails. Here names and values stay
//! bytes, and a malformed map decodes to as many pairs as are whole.
//!
//! Layout: `u32 count`, then `count` × (`u32 name_len`, `u32 value_len`),
//! then each name and value followed by a NUL byte; little-endian.

/// One header as the host gave it.
pub type Pair = (Vec<u8>, Vec<u8>);

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(s)).ok()
}

/// Decodes a serialized map; stops at the first pair that does not fit.
pub fn decode(b: &[u8]) -> Vec<Pair> {
    pairs(b).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

/// The pairs of a serialized map, borrowed from it (no copy of a header
/// the caller does not keep); stops at the first pair that does not fit.
pub fn pairs(b: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    // Each pair takes at least 8 bytes of sizes and 2 NULs: bound the count by the input.
    let n = u32_at(b, 0).unwrap_or(0).min(b.len() / 10);
    let mut p = n.checked_mul(8).and_then(|x| x.checked_add(4));
    (0..n).map_while(move |i| {
        let s = 4 + i * 8;
        let (kl, vl) = (u32_at(b, s)?, u32_at(b, s + 4)?);
        let at = p?;
        let k = b.get(at..at.checked_add(kl)?)?;
        let at = at + kl + 1;
        let v = b.get(at..at.checked_add(vl)?)?;
        p = Some(at + vl + 1);
        Some((k, v))
    })
}

/// Serializes pairs for the host (local replies' headers).
pub fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(k, v)| 10 + k.len() + v.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// A property path (`["response", "code"]`) as the host expects it.
pub fn property_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_non_utf8_values() {
        let mut b = encode(&[(":path", "/v1/models"), ("x-a", "caf?")]);
        // make the last value's '?' a raw 0xE9 byte, as curl -H $'x-a: caf\xe9' sends
        let at = b.len() - 2;
        b[at] = 0xe9;
        let m = decode(&b);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], (b":path".to_vec(), b"/v1/models".to_vec()));
        assert_eq!(m[1].1, b"caf\xe9".to_vec());
    }

    #[test]
    fn malformed_maps_never_panic() {
        assert!(decode(&[]).is_empty());
        assert!(decode(&[1, 0]).is_empty());
        assert!(decode(&u32::MAX.to_le_bytes()).is_empty());
        let good = encode(&[("a", "b"), ("c", "d")]);
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        // a size that points past the end
        let mut bad = good.clone();
        bad[4] = 200;
        assert!(decode(&bad).is_empty());
    }

    #[test]
    fn paths() {
        assert_eq!(property_path(&["response", "code"]), b"response\0code".to_vec());
    }
}
