//! Google Gemini: the native `models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, as the Gemini API answers them.
//!
//! Sources: Gemini API reference, "Generating content"
//! (ai.google.dev/api/generate-content: request members, the
//! `GenerateContentResponse` with `usageMetadata` — `promptTokenCount`,
//! `candidatesTokenCount`, `cachedContentTokenCount` only when the cache
//! served something, `thoughtsTokenCount` for thinking models,
//! `totalTokenCount` — and `alt=sse` streams whose every event is a full
//! response with the usage so far, separated by `\r\n\r\n`); "API keys"
//! (`x-goog-api-key`; a wrong key is `400 INVALID_ARGUMENT "API key not
//! valid. Please pass a valid API key."`); Google's JSON error shape
//! (`{"error": {code, message, status}}`, unknown members "Invalid JSON
//! payload received. Unknown name …"); a field by its JSON or its proto
//! name, as protobuf's JSON mapping reads it — protobuf.dev/programming-guides/proto3
//! "JSON Mapping": "parsers accept both the lowerCamelCase name … and the
//! original proto field name"). A Vertex AI response recorded in
//! envoyproxy/ai-gateway (tests/captures/gemini_function_call.json) has the
//! same members.

use serde_json::{json, Map, Value};

use crate::{count_tokens, output_pieces};

const MEMBERS: &[&str] =
    &["contents", "systemInstruction", "tools", "toolConfig", "safetySettings", "generationConfig", "cachedContent", "serviceTier"];

/// The `service_tier` of a request (ai.google.dev/gemini-api/docs/
/// priority-inference and flex-inference: "set the service_tier field in
/// the request body to priority"; "standard if the field is omitted"),
/// as the REST enum's values (`standard`, `flex`, `priority`,
/// `unspecified`) or, as protobuf's JSON mapping reads an enum, its names
/// (`SERVICE_TIER_PRIORITY`, …; the docs named it so before). Any other
/// value is refused as Google refuses a bad enum (`PRIORITY`, `Flex`
/// among them: enum names are matched exactly).
///
/// Vertex AI takes the tier in a header instead, `X-Vertex-AI-LLM-Shared-
/// Request-Type: priority | flex` (docs.cloud.google.com/vertex-ai/
/// generative-ai/docs/deploy/consumption-options): `vertex` is its value.
pub fn service_tier(m: &Map<String, Value>, vertex: Option<&str>) -> Result<&'static str, (u16, String)> {
    match vertex {
        Some("priority") => return Ok("priority"),
        Some("flex") => return Ok("flex"),
        Some(other) => return Err((400, format!("Invalid X-Vertex-AI-LLM-Shared-Request-Type: {other}"))),
        None => {}
    }
    let Some(v) = m.get("serviceTier").or(m.get("service_tier")).filter(|v| !v.is_null()) else { return Ok("standard") };
    match v.as_str().map(|s| s.strip_prefix("SERVICE_TIER_").map_or(s.to_string(), str::to_ascii_lowercase)).as_deref() {
        Some("standard" | "unspecified") => Ok("standard"),
        Some("priority") => Ok("priority"),
        Some("flex") => Ok("flex"),
        _ => Err((400, format!("Invalid value at 'service_tier' (type.googleapis.com/google.ai.generativelanguage.v1beta.ServiceTier), {v}"))),
    }
}

/// `systemInstruction` → `system_instruction`.
fn proto_name(json: &str) -> String {
    json.chars().fold(String::new(), |mut s, c| {
        if c.is_ascii_uppercase() {
            s.push('_');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
        s
    })
}

pub fn error(code: u16, status: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message, "status": status}}).to_string()
}

pub struct Plan {
    pub model: String,
    pub stream: bool,
    pub input: u64,
    pub cached: u64,
    pub output: u64,
    pub thoughts: u64,
    pub finish: &'static str,
    /// Grounding with Google Search (a `google_search` tool): the distinct
    /// queries it ran (`x-mock-web-searches`).
    pub searches: u64,
    /// An image model asked for images (`responseModalities` holding
    /// `IMAGE`): the base64 bytes of the one it answers (`x-mock-image-bytes`).
    pub image_bytes: usize,
}

/// Output tokens of one 1024×1024 image (ai.google.dev/gemini-api/docs/pricing,
/// Gemini 2.5 Flash Image: "1290 tokens per image").
pub const IMAGE_TOKENS: u64 = 1290;

/// Whether the request asks for images (ai.google.dev/gemini-api/docs/image-generation:
/// `generationConfig.responseModalities: ["TEXT", "IMAGE"]`).
pub fn wants_image(m: &Map<String, Value>) -> bool {
    let gc = m.get("generationConfig").or(m.get("generation_config"));
    let modalities = gc.and_then(|g| g.get("responseModalities").or(g.get("response_modalities"))).and_then(Value::as_array);
    modalities.is_some_and(|a| a.iter().any(|v| v == "IMAGE"))
}

/// A model that does not draw refuses images: "Model does not support
/// the requested response modalities: image,text" (400, quoted in
/// Laisky/one-api#45 for gemini-2.0-flash). Image models are the
/// `-image` ones (gemini-2.5-flash-image, gemini-3-pro-image-preview).
pub fn image_refusal(model: &str, m: &Map<String, Value>) -> Option<String> {
    if !wants_image(m) || model.contains("-image") {
        return None;
    }
    let gc = m.get("generationConfig").or(m.get("generation_config"));
    let asked = gc.and_then(|g| g.get("responseModalities").or(g.get("response_modalities"))).and_then(Value::as_array);
    let mut names: Vec<String> = asked.into_iter().flatten().filter_map(Value::as_str).map(str::to_ascii_lowercase).collect();
    names.sort();
    Some(format!("Model does not support the requested response modalities: {}", names.join(",")))
}

/// The image part: `inlineData` with base64 PNG data of `bytes` characters.
fn image_part(bytes: usize) -> Value {
    let mut data = String::from("iVBORw0KGgo");
    data.extend(std::iter::repeat_n('A', bytes.saturating_sub(data.len()).div_ceil(4) * 4 + 1));
    json!({"inlineData": {"mimeType": "image/png", "data": data}})
}

/// Whether the request asks for Grounding with Google Search
/// (`tools: [{"google_search": {}}]`, or `googleSearch`).
pub fn grounded(m: &Map<String, Value>) -> bool {
    m.get("tools").and_then(Value::as_array).is_some_and(|t| t.iter().any(|x| x.get("google_search").or(x.get("googleSearch")).is_some()))
}

/// The candidate's `groundingMetadata` for `n` queries, as Gemini answers
/// it (ai.google.dev/gemini-api/docs/google-search: `webSearchQueries`,
/// `searchEntryPoint`, `groundingChunks`, `groundingSupports`); it lists
/// an empty query and one twice, which are not billed.
fn grounding(n: u64) -> Value {
    let mut queries: Vec<Value> = (0..n).map(|i| json!(format!("mock query {i}"))).collect();
    if n > 0 {
        queries.push(json!(""));
        queries.push(json!("mock query 0"));
    }
    json!({"webSearchQueries": queries, "searchEntryPoint": {"renderedContent": "<div class=\"container\"></div>"},
           "groundingChunks": [{"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/mock", "title": "example.com"}}],
           "groundingSupports": []})
}

fn text_of(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Array(a) => a.iter().for_each(|x| text_of(x, out)),
        Value::Object(m) => ["parts", "text"].iter().filter_map(|k| m.get(*k)).for_each(|x| text_of(x, out)),
        _ => {}
    }
}

/// `rest` is the path after `models/`: `{model}:{method}`.
/// `models/{model}:countTokens` (ai.google.dev/api/tokens): `contents`, or
/// a whole `generateContentRequest`, not both; answers `totalTokens` and
/// `promptTokensDetails`, counted as `generateContent` counts its prompt.
/// Free: nothing is generated.
pub fn count(m: &Map<String, Value>) -> Result<Value, (u16, String)> {
    if let Some(k) = m.keys().find(|k| !["contents", "generateContentRequest", "generate_content_request"].contains(&k.as_str())) {
        return Err((400, format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field.")));
    }
    let inner = m.get("generateContentRequest").or(m.get("generate_content_request"));
    let mut text = String::new();
    match (m.get("contents"), inner) {
        (Some(_), Some(_)) => return Err((400, "contents and generate_content_request are mutually exclusive".into())),
        (Some(c), None) => text_of(c, &mut text),
        (None, Some(r)) => {
            text_of(r.get("contents").unwrap_or(&Value::Null), &mut text);
            if let Some(si) = r.get("systemInstruction").or(r.get("system_instruction")) {
                text_of(si, &mut text);
            }
        }
        (None, None) => return Err((400, "* CountTokensRequest.contents: contents is not specified\n".into())),
    }
    let n = count_tokens(&text);
    Ok(json!({"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}))
}

pub fn plan(rest: &str, m: &Map<String, Value>, wanted: u64, thoughts: u64, cached: u64) -> Result<Plan, (u16, String)> {
    let (model, method) = rest.rsplit_once(':').ok_or((404, "Method not found.".to_string()))?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return Err((404, format!("Method {method} not found."))),
    };
    // Protobuf's JSON mapping: a field by its JSON name or its proto name
    // (`generation_config`); the same field under both is refused.
    let json_name = |k: &str| MEMBERS.iter().find(|m| **m == k || proto_name(m) == k).copied();
    let mut seen: Vec<&str> = Vec::new();
    for k in m.keys() {
        match json_name(k) {
            None => return Err((400, format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."))),
            Some(f) if seen.contains(&f) => return Err((400, format!("Invalid JSON payload received. Duplicate field \"{k}\"."))),
            Some(f) => seen.push(f),
        }
    }
    let contents = m.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty());
    let Some(contents) = contents else {
        return Err((400, "* GenerateContentRequest.contents: contents is not specified\n".into()));
    };
    let gc = m.get("generationConfig").or(m.get("generation_config")).cloned().unwrap_or(Value::Null);
    let caps: Vec<u64> = ["maxOutputTokens", "max_output_tokens"].iter().filter_map(|k| gc.get(*k).and_then(Value::as_u64)).collect();
    if caps.len() > 1 {
        return Err((400, "Invalid JSON payload received. Duplicate field \"max_output_tokens\".".into()));
    }
    let cap = caps.first().copied().unwrap_or(u64::MAX);
    let mut text = String::new();
    text_of(&Value::Array(contents.clone()), &mut text);
    if let Some(si) = m.get("systemInstruction").or(m.get("system_instruction")) {
        text_of(si, &mut text);
    }
    let input = count_tokens(&text).max(1);
    let thoughts = thoughts.min(cap);
    let output = wanted.min(cap - thoughts);
    Ok(Plan {
        model: model.to_string(),
        stream,
        input: input.max(cached),
        cached,
        output,
        thoughts,
        finish: if wanted + thoughts > cap { "MAX_TOKENS" } else { "STOP" },
        searches: 0,
        image_bytes: 0,
    })
}

/// The usage so far: `text` output tokens, and the image's once it came.
fn usage(p: &Plan, text: u64, image: bool) -> Value {
    let image = if image && p.image_bytes > 0 { IMAGE_TOKENS } else { 0 };
    let candidates = text + image;
    let mut u = json!({"promptTokenCount": p.input, "candidatesTokenCount": candidates,
                       "totalTokenCount": p.input + candidates + p.thoughts,
                       "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p.input}]});
    if let Some(o) = u.as_object_mut() {
        if image > 0 {
            o.insert("candidatesTokensDetails".into(), json!([{"modality": "TEXT", "tokenCount": text}, {"modality": "IMAGE", "tokenCount": image}]));
        }
        if p.cached > 0 {
            o.insert("cachedContentTokenCount".into(), p.cached.into());
        }
        if p.thoughts > 0 {
            o.insert("thoughtsTokenCount".into(), p.thoughts.into());
        }
    }
    u
}

pub fn json_body(p: &Plan, id: &str) -> String {
    let mut parts = vec![json!({"text": output_pieces(p.output).concat()})];
    if p.image_bytes > 0 {
        parts.push(image_part(p.image_bytes));
    }
    let mut cand = json!({"content": {"parts": parts, "role": "model"}, "finishReason": p.finish, "index": 0});
    if p.searches > 0 {
        cand["groundingMetadata"] = grounding(p.searches);
    }
    json!({"candidates": [cand], "usageMetadata": usage(p, p.output, true), "modelVersion": p.model, "responseId": id}).to_string()
}

/// The stream's events (each a whole response with the usage so far).
pub fn stream_events(p: &Plan, id: &str) -> Vec<String> {
    let pieces = output_pieces(p.output);
    let n = pieces.len().max(1);
    (0..n)
        .map(|i| {
            let text = pieces.get(i).copied().unwrap_or("");
            let last = i + 1 == n;
            let mut parts = vec![json!({"text": text})];
            // The image comes whole in the last chunk, with the finish and the final usage.
            if last && p.image_bytes > 0 {
                parts.push(image_part(p.image_bytes));
            }
            let mut cand = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
            if last {
                if let Some(o) = cand.as_object_mut() {
                    o.insert("finishReason".into(), p.finish.into());
                }
            }
            // The grounding comes with the first event, before the last usage.
            if i == 0 && p.searches > 0 {
                cand["groundingMetadata"] = grounding(p.searches);
            }
            let body = json!({"candidates": [cand], "usageMetadata": usage(p, (i as u64 + 1).min(p.output), last),
                              "modelVersion": p.model, "responseId": id});
            format!("data: {body}\r\n\r\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_service_tier_is_read_by_either_name_and_a_bad_one_refused() {
        let tier = |v: Value| service_tier(&obj(v), None);
        assert_eq!(service_tier(&obj(json!({})), Some("priority")), Ok("priority"));
        assert!(service_tier(&obj(json!({})), Some("dedicated")).is_err());
        assert_eq!(tier(json!({})), Ok("standard"));
        assert_eq!(tier(json!({"serviceTier": null})), Ok("standard"));
        assert_eq!(tier(json!({"service_tier": "priority"})), Ok("priority"));
        assert_eq!(tier(json!({"serviceTier": "SERVICE_TIER_FLEX"})), Ok("flex"));
        assert_eq!(tier(json!({"serviceTier": "unspecified"})), Ok("standard"));
        for bad in [json!("PRIORITY"), json!("fast"), json!(3)] {
            assert!(tier(json!({"serviceTier": bad})).unwrap_err().1.starts_with("Invalid value at 'service_tier'"));
        }
        let both = json!({"contents": [{"parts": [{"text": "x"}]}], "serviceTier": "flex", "service_tier": "flex"});
        assert!(plan("m:generateContent", &obj(both), 5, 0, 0).err().unwrap().1.contains("Duplicate field"));
    }

    #[test]
    fn refuses_what_gemini_refuses_and_counts_thoughts_apart() {
        let e = plan("m:generateContent", &obj(json!({"contents": [{"parts": [{"text": "x"}]}], "model": "m"})), 5, 0, 0).err().unwrap();
        assert!(e.1.contains(r#"Unknown name "model""#));
        assert_eq!(plan("m:countTokens", &obj(json!({})), 5, 0, 0).err().unwrap().0, 404);
        assert!(plan("m:generateContent", &obj(json!({"contents": []})), 5, 0, 0).is_err());
        // A field by its proto name reads the same; under both names it is refused.
        let p = plan("m:generateContent", &obj(json!({"contents": [{"parts": [{"text": "x"}]}], "generation_config": {"max_output_tokens": 3}})), 8, 0, 0).unwrap();
        assert_eq!((p.output, p.finish), (3, "MAX_TOKENS"));
        let e = plan("m:generateContent", &obj(json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {}, "generation_config": {}})), 8, 0, 0).err().unwrap();
        assert!(e.0 == 400 && e.1.contains("Duplicate field"), "{e:?}");
        let e = plan("m:generateContent", &obj(json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 1, "max_output_tokens": 9}})), 8, 0, 0).err().unwrap();
        assert!(e.1.contains("Duplicate field"), "{e:?}");
        let p = plan("m:streamGenerateContent", &obj(json!({"contents": [{"parts": [{"text": "abcdefgh"}]}],
                     "generationConfig": {"maxOutputTokens": 10}})), 8, 4, 0).unwrap();
        assert_eq!((p.input, p.output, p.thoughts, p.finish, p.stream), (2, 6, 4, "MAX_TOKENS", true));
        let ev = stream_events(&p, "r");
        assert_eq!(ev.len(), 6);
        assert!(ev[5].contains(r#""finishReason":"MAX_TOKENS""#) && ev[5].contains(r#""thoughtsTokenCount":4"#) && ev[5].ends_with("\r\n\r\n"));
        let v: Value = serde_json::from_str(&json_body(&p, "r")).unwrap();
        assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 6);
        assert!(v["usageMetadata"].get("cachedContentTokenCount").is_none(), "reported only when the cache served something");
    }

    #[test]
    fn an_image_comes_whole_in_the_last_chunk_with_its_tokens() {
        let req = |modalities: Value| obj(json!({"contents": [{"parts": [{"text": "a cat"}]}], "generationConfig": {"responseModalities": modalities}}));
        assert!(wants_image(&req(json!(["TEXT", "IMAGE"]))) && !wants_image(&req(json!(["TEXT"]))));
        assert_eq!(image_refusal("gemini-2.5-flash", &req(json!(["TEXT", "IMAGE"]))).as_deref(),
                   Some("Model does not support the requested response modalities: image,text"));
        assert_eq!(image_refusal("gemini-2.5-flash-image", &req(json!(["TEXT", "IMAGE"]))), None);
        let mut p = plan("gemini-2.5-flash-image:streamGenerateContent", &req(json!(["TEXT", "IMAGE"])), 3, 0, 0).unwrap();
        p.image_bytes = 5000;
        let ev = stream_events(&p, "r");
        let last: Value = serde_json::from_str(ev[2].trim_start_matches("data: ").trim()).unwrap();
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 3 + IMAGE_TOKENS);
        assert!(last["candidates"][0]["content"]["parts"][1]["inlineData"]["data"].as_str().unwrap().len() >= 5000);
        let first: Value = serde_json::from_str(ev[0].trim_start_matches("data: ").trim()).unwrap();
        assert_eq!(first["usageMetadata"]["candidatesTokenCount"], 1, "no image yet");
        let v: Value = serde_json::from_str(&json_body(&p, "r")).unwrap();
        assert_eq!(v["usageMetadata"]["candidatesTokensDetails"][1], json!({"modality": "IMAGE", "tokenCount": IMAGE_TOKENS}));
    }
}
