//! JSON that parses. When a chat request asks for JSON (`response_format`
//! `json_object` or `json_schema`), the answer's message content is checked:
//! is it one JSON value, and does it match the request's schema? That is
//! recorded for every such request (the per-model JSON compliance rate, a
//! signal for evaluations). A route with `json_repair: true` also fixes
//! what can be fixed without guessing: it strips a Markdown code fence and
//! any text around the first balanced JSON value, and sends that value —
//! byte for byte as the model wrote it — as the content. Nothing else is
//! changed: no key is added, no value coerced, invalid JSON stays as it was.

use serde_json::Value;

/// What the request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonAsk {
    /// `response_format.json_schema.schema`, raw JSON text.
    pub schema: Option<String>,
}

/// What the answer's content was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// One JSON value matching the schema (after repair when repairing).
    pub valid: bool,
    /// Repair changed the content.
    pub repaired: bool,
    /// Why it is not valid (a path and a reason, no content).
    pub error: Option<String>,
}

/// Reads `response_format` from a chat request's member.
pub fn ask_of(response_format: &str) -> Option<JsonAsk> {
    let v: Value = serde_json::from_str(response_format).ok()?;
    match v.get("type").and_then(Value::as_str)? {
        "json_object" => Some(JsonAsk { schema: None }),
        "json_schema" => Some(JsonAsk { schema: v.pointer("/json_schema/schema").map(Value::to_string) }),
        _ => None,
    }
}

/// The first balanced JSON object or array in `text` (strings and escapes
/// respected): its byte range.
pub fn first_value(text: &str) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let start = b.iter().position(|&c| c == b'{' || c == b'[')?;
    let mut depth = 0usize;
    for (i, c) in crate::json::outside_strings(b.get(start..)?) {
        match c {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some((start, start + i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

/// Checks (and with `repair`, fixes) one message content.
pub fn check(content: &str, ask: &JsonAsk, repair: bool) -> (Checked, Option<String>) {
    let schema: Option<Value> = ask.schema.as_deref().and_then(|s| serde_json::from_str(s).ok());
    let validate = |v: &Value| schema.as_ref().map_or(Ok(()), |s| validate(s, v, "$"));
    if let Ok(v) = serde_json::from_str::<Value>(content) {
        return match validate(&v) {
            Ok(()) => (Checked { valid: true, repaired: false, error: None }, None),
            Err(e) => (Checked { valid: false, repaired: false, error: Some(e) }, None),
        };
    }
    let not_json = |why: &str| (Checked { valid: false, repaired: false, error: Some(why.into()) }, None);
    if !repair {
        return not_json("not one JSON value");
    }
    let Some((s, e)) = first_value(content) else { return not_json("no balanced JSON object or array") };
    let Some(inner) = content.get(s..e) else { return not_json("no balanced JSON object or array") };
    match serde_json::from_str::<Value>(inner) {
        Ok(v) => match validate(&v) {
            Ok(()) => (Checked { valid: true, repaired: true, error: None }, Some(inner.to_string())),
            Err(e) => (Checked { valid: false, repaired: true, error: Some(e) }, Some(inner.to_string())),
        },
        Err(_) => not_json("the first balanced value is not valid JSON"),
    }
}

/// The JSON Schema keywords providers' structured outputs use: `type`,
/// `properties`, `required`, `additionalProperties`, `items`, `enum`,
/// `const`, `minItems`/`maxItems`, `minLength`/`maxLength`,
/// `minimum`/`maximum`, `anyOf`. Others are not checked (never a false
/// "invalid"). Err is the first mismatch: a path and a reason, no values.
pub fn validate(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    validate_depth(schema, v, path, 0)
}

fn validate_depth(schema: &Value, v: &Value, path: &str, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Ok(());
    }
    let Some(s) = schema.as_object() else { return Ok(()) };
    let fail = |why: &str| Err(format!("{path}: {why}"));
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(xs) => xs.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let is = |t: &str| match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => true,
        };
        if !types.is_empty() && !types.iter().any(|t| is(t)) {
            return fail(&format!("expected {}", types.join(" or ")));
        }
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            return fail("not one of the allowed values");
        }
    }
    if s.get("const").is_some_and(|c| c != v) {
        return fail("not the required value");
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(|alt| validate_depth(alt, v, path, depth + 1).is_ok()) {
            return fail("matches none of anyOf");
        }
    }
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let count = |k: &str| s.get(k).and_then(Value::as_u64).map(|n| n as usize);
    match v {
        Value::Object(m) => {
            for r in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                if !m.contains_key(r) {
                    return fail(&format!("missing '{}'", crate::text::clean_field(r, 64)));
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, x) in m {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => validate_depth(ps, x, &format!("{path}.{}", crate::text::clean_field(k, 64)), depth + 1)?,
                    None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return fail(&format!("'{}' is not allowed", crate::text::clean_field(k, 64)));
                    }
                    None => {}
                }
            }
        }
        Value::Array(a) => {
            if count("minItems").is_some_and(|n| a.len() < n) || count("maxItems").is_some_and(|n| a.len() > n) {
                return fail("wrong number of items");
            }
            if let Some(items) = s.get("items") {
                for (i, x) in a.iter().enumerate() {
                    validate_depth(items, x, &format!("{path}[{i}]"), depth + 1)?;
                }
            }
        }
        Value::String(x) => {
            let n = x.chars().count();
            if count("minLength").is_some_and(|m| n < m) || count("maxLength").is_some_and(|m| n > m) {
                return fail("wrong length");
            }
        }
        Value::Number(x) => {
            let f = x.as_f64().unwrap_or(0.0);
            if num("minimum").is_some_and(|m| f < m) || num("maximum").is_some_and(|m| f > m) {
                return fail("out of range");
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks (and repairs) every choice's message content of an OpenAI chat
/// answer: the new body when repaired, and the worst check (all valid ->
/// valid; a repair anywhere -> repaired).
pub fn answer(body: &[u8], ask: &JsonAsk, repair: bool) -> (Option<Checked>, Option<Vec<u8>>) {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else { return (None, None) };
    let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else { return (None, None) };
    let mut overall: Option<Checked> = None;
    let mut changed = false;
    for c in choices {
        let Some(Value::String(content)) = c.pointer_mut("/message/content") else { continue };
        let (checked, fixed) = check(content, ask, repair);
        if let Some(f) = fixed {
            *content = f;
            changed = true;
        }
        overall = Some(match overall {
            None => checked,
            Some(o) => Checked { valid: o.valid && checked.valid, repaired: o.repaired || checked.repaired, error: o.error.or(checked.error) },
        });
    }
    let body = if changed { serde_json::to_vec(&v).ok() } else { None };
    (overall, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ask(schema: Value) -> JsonAsk {
        JsonAsk { schema: Some(schema.to_string()) }
    }

    #[test]
    fn fences_and_chatter_are_removed_only_when_repairing() {
        let a = JsonAsk { schema: None };
        let fenced = "Here it is:\n```json\n{\"answer\": \"a } in a string\", \"n\": [1, {\"x\": 2}]}\n```\nAnything else?";
        let (c, fixed) = check(fenced, &a, true);
        assert_eq!((c.valid, c.repaired), (true, true));
        assert_eq!(fixed.unwrap(), "{\"answer\": \"a } in a string\", \"n\": [1, {\"x\": 2}]}");
        let (c, fixed) = check(fenced, &a, false);
        assert_eq!((c.valid, fixed), (false, None), "measured, not changed");
        assert_eq!(check("{\"a\": 1}", &a, true), (Checked { valid: true, repaired: false, error: None }, None));
        let (c, fixed) = check("{\"answer\": 5", &a, true);
        assert_eq!((c.valid, fixed), (false, None), "unbalanced: left as it is");
        assert!(check("no json here", &a, true).0.error.is_some());
        assert_eq!(first_value("x [1, \"]\", [2]] y"), Some((2, 15)));
        assert_eq!(first_value("}{"), None);
    }

    #[test]
    fn schemas_are_checked_without_showing_values() {
        let s = json!({"type": "object", "required": ["answer"], "additionalProperties": false,
                       "properties": {"answer": {"type": "integer", "minimum": 0}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}}}});
        assert!(check("{\"answer\": 5, \"tags\": [\"a\"]}", &ask(s.clone()), false).0.valid);
        for (bad, why) in [
            ("{\"tags\": []}", "$: missing 'answer'"),
            ("{\"answer\": \"five\"}", "$.answer: expected integer"),
            ("{\"answer\": -1}", "$.answer: out of range"),
            ("{\"answer\": 1, \"extra\": 1}", "$: 'extra' is not allowed"),
            ("{\"answer\": 1, \"tags\": [\"secret-value\"]}", "$.tags[0]: not one of the allowed values"),
        ] {
            let c = check(bad, &ask(s.clone()), true).0;
            assert_eq!(c.error.as_deref(), Some(why), "{bad}");
            assert!(!c.error.unwrap().contains("secret"));
        }
        let deep = (0..200).fold(json!({}), |acc, _| json!({"type": "object", "properties": {"a": acc}}));
        let val = (0..200).fold(json!(1), |acc, _| json!({"a": acc}));
        assert_eq!(validate(&deep, &val, "$"), Ok(()), "beyond 64 levels nothing more is checked, and nothing overflows");
    }

    #[test]
    fn an_answer_is_repaired_choice_by_choice() {
        let body = json!({"choices": [{"message": {"role": "assistant", "content": "```json\n{\"answer\": 5}\n```"}},
                                      {"message": {"role": "assistant", "content": "{\"answer\": 6}"}}]});
        let (c, new) = answer(&serde_json::to_vec(&body).unwrap(), &JsonAsk { schema: None }, true);
        let c = c.unwrap();
        assert_eq!((c.valid, c.repaired), (true, true));
        let v: Value = serde_json::from_slice(&new.unwrap()).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "{\"answer\": 5}");
        assert_eq!(ask_of(r#"{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}"#).unwrap().schema.unwrap(), "{\"type\":\"object\"}");
        assert_eq!(ask_of(r#"{"type":"text"}"#), None);
    }
}
