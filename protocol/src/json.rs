//! JSON strictness both sides need: a document whose object has the same
//! member twice is refused (serde keeps the last one silently, other
//! parsers the first, so such a document can mean two things). And JSON
//! text walked by its structure without parsing it.

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

/// The bytes of JSON text outside its strings, with their offsets; a string
/// shows as its opening quote (its escapes respected). For walking nesting
/// (braces and brackets) in text that may be cut or broken.
pub fn outside_strings(raw: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut i = 0usize;
    std::iter::from_fn(move || {
        let at = i;
        let b = *raw.get(at)?;
        i = at + 1;
        if b == b'"' {
            while let Some(&c) = raw.get(i) {
                i = i.saturating_add(if c == b'\\' { 2 } else { 1 });
                if c == b'"' {
                    break;
                }
            }
        }
        Some((at, b))
    })
}

/// Err names the first member found twice (cleaned, bounded).
pub fn no_duplicate_members(bytes: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Check.deserialize(&mut de).and_then(|()| de.end()).map_err(|e| e.to_string())
}

struct Check;

impl Check {
    fn deserialize<'de, D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Check)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Check)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while a.next_element_seed(Check)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!("the member '{}' appears twice", crate::text::clean_field(&k, 64))));
            }
            a.next_value_seed(Check)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_twice_is_refused_at_any_depth() {
        assert!(no_duplicate_members(br#"{"a":{"b":[{"c":1,"d":2}]},"e":"x"}"#).is_ok());
        for bad in [&br#"{"a":1,"a":2}"#[..], br#"{"x":{"actions":{"card":"block","card":"observe"}}}"#, br#"[{"k":1,"\u006b":2}]"#] {
            let e = no_duplicate_members(bad).unwrap_err();
            assert!(e.contains("twice"), "{e}");
        }
        assert!(no_duplicate_members(b"{").is_err());
    }
}
