//! A request body as a `serde_json::Value`, refused when an object names a
//! member twice, at any depth. Readers disagree on which one wins (most
//! keep the last, some the first), and a `Value` keeps only the last: a
//! scan of it would pass a card number in the member it drops, which still
//! leaves for the provider in the body as sent. So what the guardrails
//! check must be all there is. (serde_json has no such option; this is its
//! `Value` visitor with one check added, ~40 lines.)

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `body` like `serde_json::from_slice::<Value>` (same limits:
/// nesting 128, numbers in range, no lone surrogates), and refuses a
/// member given twice in one object.
pub fn parse(body: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Unique>(body).map(|u| u.0)
}

struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n).map(Value::Number).ok_or_else(|| E::custom("a number out of range"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                // (The key is the client's: shown cleaned and cut.)
                return Err(de::Error::custom(format_args!("the member '{}' is given twice", crate::text::clean_field(&key, 64))));
            }
            let Unique(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_value_as_serde_json_or_a_refusal_naming_the_member_twice() {
        for body in [
            r#"{"a": [1, -2, 3.5, 18446744073709551615, -0, 1e300, true, null, "x\ud83d\ude00"], "b": {"c": {}}}"#,
            r#"[{"k": 1}, {"k": 2}]"#,
            r#""just a string""#,
        ] {
            assert_eq!(parse(body.as_bytes()).unwrap(), serde_json::from_str::<Value>(body).unwrap(), "{body}");
        }
        for (body, member) in [
            (r#"{"messages": [{"role": "user", "content": "4111 1111 1111 1111", "content": "hi"}]}"#, "content"),
            (r#"{"a": {"b": {"c": 1, "c": 1}}}"#, "c"),
            (r#"{"x": 1, "x\u0000": 2, "x": 3}"#, "x"),
        ] {
            let e = parse(body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(&format!("the member '{member}' is given twice")) && e.contains("column"), "{e}");
        }
        // The same limits as serde_json's own Value.
        for body in [format!("{}{}", "[".repeat(200), "]".repeat(200)), r#"{"n": 1e400}"#.into(), r#"{"s": "\ud800"}"#.into()] {
            assert!(parse(body.as_bytes()).is_err() && serde_json::from_str::<Value>(&body).is_err(), "{body:.40}");
        }
        // A control character in the repeated key is not echoed raw.
        let e = parse(b"{\"a\\u001b[31m\": 1, \"a\\u001b[31m\": 2}").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e:?}");
    }
}
