//! Images, audio, speech and decisions: each reserved as its model bills it.

use super::*;

#[test]
fn an_image_generation_reserves_its_images_at_the_image_price() {
    // GPT Image 1.5: $5 text input, $10 text output, $32 image output per million.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
      "routes": [{"model": "gpt-image-*", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/gpt-image-1.5": {"input": 5000000, "output": 10000000, "image_output": 32000000}},
      "unpriced_models": "allow"}"#).unwrap();
    let image = |body: &[u8], path: &str| plan_for(&cfg, &key(None), Api::OpenAiImages, body, path, false, Choice::default());
    let p = image(br#"{"model":"gpt-image-1.5","prompt":"an otter","n":2,"size":"1024x1536","quality":"medium"}"#, "/v1/images/generations").unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["authorization"].as_str()), ("/v1/images/generations", "Bearer sk-up"));
    assert!(p.body.is_none(), "sent as it came: no cap, no stream options added");
    // 2 images of 1,584 tokens at $32, and the estimated input at $5 for each
    let input = p.chat.estimated_input_tokens;
    assert_eq!(p.worst.tokens, 2 * input + 2 * 1584);
    assert_eq!(p.worst.micros, (2 * input * 5_000_000 + 2 * 1584 * 32_000_000).div_ceil(1_000_000));
    // auto quality and size reserve the dearest; a stream's partial images add theirs
    let p = image(br#"{"model":"gpt-image-1.5","prompt":"x","stream":true,"partial_images":2}"#, "/v1/images/generations").unwrap();
    assert!(p.chat.stream && p.body.is_none());
    assert_eq!(p.worst.tokens - p.chat.estimated_input_tokens, 6240 + 200);
    // an Azure deployment names the model
    let p = image(br#"{"prompt":"x","size":"1024x1024","quality":"low"}"#, "/openai/deployments/gpt-image-1.5/images/generations?api-version=2025-04-01-preview").unwrap();
    assert_eq!((p.target.upstream_model.as_str(), p.worst.tokens - p.chat.estimated_input_tokens), ("gpt-image-1.5", 272));
    // refused before anything is sent
    let code = |body: &[u8]| image(body, "/v1/images/generations").unwrap_err().error.code;
    assert_eq!(code(br#"{"model":"gpt-image-1.5"}"#), "missing_prompt");
    assert_eq!(code(br#"{"prompt":"x"}"#), "missing_model");
    assert_eq!(code(br#"{"model":"gpt-image-1.5","prompt":"x","n":11}"#), "invalid_type");
    assert_eq!(code(br#"{"model":"gpt-image-1.5","prompt":"x","size":"9999x9999"}"#), "invalid_value");
    assert_eq!(code(br#"{"model":"claude-sonnet-4-6","prompt":"x"}"#), "wrong_api_for_model");
}

#[test]
fn an_image_edit_reserves_its_input_images_at_the_image_input_price() {
    // GPT Image 1.5: $5 text input, $8 image input, $32 image output per million.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"}],
      "routes": [{"model": "gpt-image-*", "provider": "openai"}, {"model": "painter", "provider": "openai", "upstream_model": "gpt-image-1.5"}],
      "pricing": {"openai/gpt-image-1.5": {"input": 5000000, "image_input": 8000000, "output": 10000000, "image_output": 32000000}},
      "unpriced_models": "deny"}"#).unwrap();
    let edit = |body: &[u8], path: &str| plan_for(&cfg, &key(None), Api::OpenAiImageEdits, body, path, false, Choice::default());
    let refs = r#"[{"image_url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="},{"file_id":"file-abc"}]"#;
    let body = format!(r#"{{"model":"gpt-image-1.5","prompt":"add a hat","images":{refs},"size":"1024x1024","quality":"low"}}"#);
    let p = edit(body.as_bytes(), "/v1/images/edits").unwrap();
    let h: std::collections::HashMap<_, _> = p.headers.iter().cloned().collect();
    assert_eq!((h[":path"].as_str(), h["authorization"].as_str()), ("/v1/images/edits", "Bearer sk-up"));
    assert!(p.body.is_none(), "sent as it came");
    // the images' references are not prompt text: two images at low fidelity, 581 tokens each at $8
    let text = p.chat.estimated_input_tokens;
    assert!(text < 20, "{text}");
    assert_eq!(p.chat.input_image_tokens, 2 * 581);
    assert_eq!(p.worst.tokens, text + 2 * 581 + 272);
    assert_eq!(p.worst.micros, (text * 5_000_000 + 2 * 581 * 8_000_000 + 272 * 32_000_000).div_ceil(1_000_000));
    // high fidelity, a mask, a route's upstream model written into the body
    let body = format!(r#"{{"model":"painter","prompt":"x","images":{refs},"mask":{{"file_id":"file-m"}},"input_fidelity":"high"}}"#);
    let p = edit(body.as_bytes(), "/v1/images/edits").unwrap();
    assert_eq!(p.chat.input_image_tokens, 3 * 6821);
    let sent: serde_json::Value = serde_json::from_slice(p.body.as_deref().unwrap()).unwrap();
    assert_eq!(sent["model"], "gpt-image-1.5");
    // Azure's deployment path
    let p = edit(format!(r#"{{"prompt":"x","images":{refs}}}"#).as_bytes(), "/openai/deployments/gpt-image-1.5/images/edits?api-version=2025-04-01-preview").unwrap();
    assert_eq!(p.target.upstream_model, "gpt-image-1.5");
    let code = |body: &str| edit(body.as_bytes(), "/v1/images/edits").unwrap_err().error.code;
    assert_eq!(code(r#"{"model":"gpt-image-1.5","prompt":"x"}"#), "missing_images");
    assert_eq!(code(&format!(r#"{{"model":"gpt-image-1.5","images":{refs}}}"#)), "missing_prompt");
    assert_eq!(code(r#"{"model":"gpt-image-1.5","prompt":"x","images":[]}"#), "invalid_type");
    assert_eq!(code(&format!(r#"{{"model":"gpt-image-1.5","prompt":"x","images":{refs},"input_fidelity":"ultra"}}"#)), "invalid_value");
}

#[test]
fn a_code_interpreter_container_the_request_creates_is_reserved() {
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"}],
      "routes": [{"model": "gpt-*", "provider": "openai"}],
      "pricing": {"openai/gpt-5.4": {"input": 2500000, "output": 15000000}}}"#).unwrap();
    let worst = |tools: &str| {
        let body = format!(r#"{{"model":"gpt-5.4","input":"Plot it","max_output_tokens":100,"tools":{tools}}}"#);
        let p = plan(&cfg, &key(None), Api::OpenAiResponses, body.as_bytes(), "/v1/responses", false).unwrap();
        (p.chat.container_gb, p.worst.micros, p.chat.estimated_input_tokens)
    };
    let (_, plain, plain_input) = worst(r#"[{"type":"code_interpreter","container":"cntr_1"}]"#);
    let (gb, micros, input) = worst(r#"[{"type":"code_interpreter","container":{"type":"auto","memory_limit":"4g"}}]"#);
    // 4 GB at $0.03 a GB, beside the longer body's input.
    assert_eq!((gb, micros - plain - ((input - plain_input) * 5).div_ceil(2)), (4, 120_000));
    // Chat completions have no such tool: a function of that name is the client's own.
    let chat = plan(&cfg, &key(None), Api::OpenAiChat, br#"{"model":"gpt-5.4","messages":[],"tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}"#, "/v1/chat/completions", false).unwrap();
    assert_eq!(chat.chat.container_gb, 0);
}

#[test]
fn a_responses_image_generation_tool_is_held_to_the_key_routed_priced_and_reserved() {
    // The tool runs a GPT image model at the provider serving the request:
    // before, nothing of it was reserved or recorded.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
      "routes": [{"model": "gpt-*", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/gpt-5.4": {"input": 2500000, "output": 15000000}, "anthropic/claude-sonnet-4-6": {"input": 3000000, "output": 15000000},
                  "openai/gpt-image-2.6-sunburst": {"input": 5000000, "output": 30000000},
                  "openai/gpt-image-1.5": {"input": 5000000, "output": 10000000, "image_output": 32000000}},
      "unpriced_models": "deny"}"#).unwrap();
    let respond = |body: &str, k: Rc<KeyInfo>| plan(&cfg, &k, Api::OpenAiResponses, body.as_bytes(), "/v1/responses", false);
    let ask = |tools: &str, extra: &str| format!(r#"{{"model":"gpt-5.4","input":"Draw an otter","max_output_tokens":100,"tools":{tools}{extra}}}"#);
    let without = respond(&ask("[]", ""), key(None)).unwrap();
    // The default model (gpt-image-2.6-sunburst), one image at high quality, 1536x1024: 6,240 tokens at $30.
    let p = respond(&ask(r#"[{"type":"image_generation"}]"#, ""), key(None)).unwrap();
    let a = p.target.advisor.as_deref().unwrap();
    assert_eq!((a.kind, a.model.as_str(), a.calls, a.output_per_call), (advisor::Companion::ImageGeneration, "gpt-image-2.6-sunburst", 1, 6240));
    let input = p.chat.estimated_input_tokens;
    assert_eq!(p.worst.micros - without.worst.micros - (input - without.chat.estimated_input_tokens) * 5 / 2, (input * 5_000_000 + 6240 * 30_000_000).div_ceil(1_000_000));
    // The tool's own model, quality, size and partial images; max_tool_calls bounds the calls.
    let p = respond(&ask(r#"[{"type":"image_generation","model":"gpt-image-1.5","quality":"low","size":"1024x1024","partial_images":2}]"#, r#","stream":true,"max_tool_calls":3"#), key(None)).unwrap();
    let a = p.target.advisor.as_deref().unwrap();
    assert_eq!((a.model.as_str(), a.calls, a.output_per_call), ("gpt-image-1.5", 3, 272 + 200));
    // Refused: a key that may not use the image model, an unpriced or unrouted one, an unreadable tool, through a translation.
    let err = |body: &str, k: Rc<KeyInfo>| respond(body, k).unwrap_err().error;
    let e = err(&ask(r#"[{"type":"image_generation"}]"#, ""), key(Some(vec!["gpt-5.4"])));
    assert_eq!((e.code, e.param), ("model_not_allowed", Some("tools")));
    assert_eq!(err(&ask(r#"[{"type":"image_generation","model":"gpt-image-2"}]"#, ""), key(None)).code, "model_not_priced");
    assert_eq!(err(&ask(r#"[{"type":"image_generation","model":"dall-e-3"}]"#, ""), key(None)).code, "model_not_found");
    for bad in [r#"[{"type":"image_generation","quality":"ultra"}]"#, r#"[{"type":"image_generation","model":7}]"#,
                r#"[{"type":"image_generation"},{"type":"image_generation"}]"#, r#"[{"type":"image_generation","size":"99999x9"}]"#] {
        assert_eq!(err(&ask(bad, ""), key(None)).code, "invalid_request", "{bad}");
    }
    let claude = r#"{"model":"claude-sonnet-4-6","input":"Draw","max_output_tokens":100,"tools":[{"type":"image_generation"}]}"#;
    assert_eq!(err(claude, key(None)).code, "unsupported_field");
    // A function of that name is the client's own.
    let f = respond(&ask(r#"[{"type":"function","name":"image_generation","parameters":{}}]"#, ""), key(None)).unwrap();
    assert!(f.target.advisor.is_none());
}

#[test]
fn a_transcription_reserves_its_audio_as_its_model_bills_it() {
    // whisper-1: $0.006 a minute; gpt-4o-transcribe: $2.50 text, $6 audio, $10 output a million.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com", "api_key": "sk-a"}],
      "routes": [{"model": "whisper-1", "provider": "openai"}, {"model": "gpt-4o-transcribe", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/whisper-1": {"input": 0, "output": 0, "audio_per_hour": 360000},
                  "openai/gpt-4o-transcribe": {"input": 2500000, "audio_input": 6000000, "output": 10000000}},
      "unpriced_models": "deny"}"#).unwrap();
    // The view of a form with 90 s of audio (what `multipart::Form::view` writes).
    let plan = |api, model: &str, path: &str| {
        let body = format!(r#"{{"model":"{model}","file":{{"upload":1440044,"ms":90000,"stated":true}},"response_format":"text"}}"#);
        plan_for(&cfg, &key(None), api, body.as_bytes(), path, false, Choice::default())
    };
    let w = plan(Api::OpenAiTranscriptions, "whisper-1", "/v1/audio/transcriptions").unwrap();
    assert_eq!(w.chat.input_audio_ms, 90_000);
    let h: std::collections::HashMap<_, _> = w.headers.iter().cloned().collect();
    assert_eq!(h[":path"].as_str(), "/v1/audio/transcriptions");
    // 90 s at $0.006 a minute; no token is billed, so none is reserved.
    assert_eq!((w.worst.micros, w.worst.tokens), (9_000, 0));
    assert!(w.body.is_none(), "nothing to change: no output cap is written into a form");
    // gpt-4o-transcribe: 1,000 audio tokens a minute and 2,000 + 10 a second of output.
    let g = plan(Api::OpenAiTranscriptions, "gpt-4o-transcribe", "/v1/audio/transcriptions").unwrap();
    let text = g.chat.estimated_input_tokens;
    let (audio, out) = (1_500, 2_000 + 900);
    assert_eq!(g.worst.tokens, text + audio + out);
    assert_eq!(g.worst.micros, (text * 2_500_000 + audio * 6_000_000 + out * 10_000_000).div_ceil(1_000_000));
    // A translation, Azure's deployment path.
    let t = plan(Api::OpenAiTranslations, "whisper-1", "/openai/deployments/whisper-1/audio/translations?api-version=2024-06-01").unwrap();
    assert_eq!((t.target.upstream_model.as_str(), t.worst.micros), ("whisper-1", 9_000));
    // No audio; a model on a provider with no audio API.
    let body = br#"{"model":"whisper-1","prompt":"x"}"#;
    assert_eq!(plan_for(&cfg, &key(None), Api::OpenAiTranscriptions, body, "/v1/audio/transcriptions", false, Choice::default()).unwrap_err().error.code, "missing_file");
    assert_eq!(plan(Api::OpenAiTranscriptions, "claude-sonnet-4-6", "/v1/audio/transcriptions").unwrap_err().error.code, "wrong_api_for_model");
}

#[test]
fn speech_reserves_its_characters_or_the_audio_its_text_can_make() {
    // tts-1: $15 a million characters; gpt-4o-mini-tts: $0.60 text in, $12 audio out a million.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com", "api_key": "sk-a"}],
      "routes": [{"model": "tts-*", "provider": "openai"}, {"model": "gpt-4o-mini-tts", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/tts-1": {"input": 0, "output": 0, "characters_per_million": 15000000},
                  "openai/gpt-4o-mini-tts": {"input": 600000, "output": 12000000}},
      "unpriced_models": "deny"}"#).unwrap();
    let plan = |model: &str, extra: &str| {
        let body = format!(r#"{{"model":"{model}","input":"The quick brown fox jumped over the lazy dog.","voice":"alloy"{extra}}}"#);
        plan_for(&cfg, &key(None), Api::OpenAiSpeech, body.as_bytes(), "/v1/audio/speech", false, Choice::default())
    };
    let t = plan("tts-1", "").unwrap();
    // 45 characters at $15 a million: 675 micro-dollars; no token is billed, so none is reserved.
    assert_eq!((t.worst.micros, t.worst.tokens), (675, 0));
    assert!(t.body.is_none() && !t.chat.stream, "no output cap is added: the provider takes none");
    // gpt-4o-mini-tts: its text as tokens, and 45 characters read at 8 a second (118 audio tokens).
    let g = plan("gpt-4o-mini-tts", r##","stream_format":"sse","instructions":"Cheerful.""##).unwrap();
    let text = g.chat.estimated_input_tokens;
    assert!(g.chat.stream && g.body.is_none(), "sse streams; `stream_options` is not added");
    assert_eq!(g.worst.tokens, text + 118);
    assert_eq!(g.worst.micros, (text * 600_000 + 118 * 12_000_000).div_ceil(1_000_000));
    // Slowed to a quarter, four times the audio.
    let slow = plan("gpt-4o-mini-tts", r#","speed":0.25"#).unwrap();
    assert_eq!(slow.worst.tokens, slow.chat.estimated_input_tokens + 469);
    // Refused before sending: no input, a speed the provider refuses, a provider with no speech.
    let body = br#"{"model":"tts-1","voice":"alloy"}"#;
    assert_eq!(plan_for(&cfg, &key(None), Api::OpenAiSpeech, body, "/v1/audio/speech", false, Choice::default()).unwrap_err().error.code, "missing_input");
    assert_eq!(plan("tts-1", r#","speed":9"#).unwrap_err().error.param, Some("speed"));
    assert_eq!(plan("claude-sonnet-4-6", "").unwrap_err().error.code, "wrong_api_for_model");
    // Azure's deployment names the model.
    let body = br#"{"input":"Hi","voice":"alloy"}"#;
    let a = plan_for(&cfg, &key(None), Api::OpenAiSpeech, body, "/openai/deployments/tts-1/audio/speech?api-version=2024-06-01", true, Choice::default()).unwrap();
    assert_eq!((a.target.upstream_model.as_str(), a.worst.micros), ("tts-1", 30));
}

#[test]
fn a_decision_reserves_and_is_priced_by_its_input_alone() {
    // GPT-6 Luna: $0.10 input, $0.01 cached, $0.50 output a million on chat; on
    // /v1/decisions every input token is $0.10 and nothing else is billed.
    let cfg = Config::from_json(br#"{
      "providers": [{"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
                    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com", "api_key": "sk-a"}],
      "routes": [{"model": "gpt-*", "provider": "openai"}, {"model": "luna", "provider": "openai", "upstream_model": "gpt-6-luna"}, {"model": "claude-*", "provider": "anthropic"}],
      "pricing": {"openai/gpt-6-luna": {"input": 100000, "cached_input": 10000, "output": 500000}},
      "unpriced_models": "deny"}"#).unwrap();
    let ask = r#""input":"I was charged twice for the same subscription renewal.","questions":[{"type":"predicate","name":"duplicate_charge","instructions":"The customer reports being charged more than once."}]"#;
    let plan = |body: &str| plan_for(&cfg, &key(None), Api::OpenAiDecisions, body.as_bytes(), "/v1/decisions", false, Choice::default());
    let p = plan(&format!(r#"{{"model":"gpt-6-luna",{ask}}}"#)).unwrap();
    let input = p.chat.estimated_input_tokens;
    assert!(input > 20, "the questions are read as input too: {input}");
    // No output is reserved (none is billed) and no cap is added (the API takes none).
    assert_eq!((p.worst.tokens, p.worst.micros), (input, (input * 100_000).div_ceil(1_000_000)));
    assert!(p.body.is_none() && !p.chat.stream, "sent as it came");
    // An alias is sent as the upstream model.
    let a = plan(&format!(r#"{{"model":"luna",{ask}}}"#)).unwrap();
    assert!(String::from_utf8(a.body.unwrap()).unwrap().contains(r#""model":"gpt-6-luna""#));
    // What the API requires, refused before sending; a provider with no decisions API.
    assert_eq!(plan(r#"{"model":"gpt-6-luna","questions":[]}"#).unwrap_err().error.code, "missing_input");
    assert_eq!(plan(r#"{"model":"gpt-6-luna","input":"x"}"#).unwrap_err().error.code, "missing_questions");
    assert_eq!(plan(r#"{"input":"x","questions":[]}"#).unwrap_err().error.code, "missing_model");
    assert_eq!(plan(&format!(r#"{{"model":"claude-sonnet-4-6",{ask}}}"#)).unwrap_err().error.code, "wrong_api_for_model");
    // Charged as the answer reports: all 1,000 input tokens at $0.10, cached or not; the output free.
    let answer = br#"{"answers":[{"type":"predicate","name":"duplicate_charge","probability":0.97}],"model":"gpt-6-luna",
      "usage":{"input_tokens":1000,"input_tokens_details":{"cache_write_tokens":0,"cached_tokens":600},"output_tokens":40,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":1040}}"#;
    let info = crate::usage::parse_json_response(Api::OpenAiDecisions, answer);
    let u = info.usage.unwrap();
    assert_eq!((info.model.as_deref(), u.input_tokens, u.cached_input_tokens, u.output_tokens), (Some("gpt-6-luna"), 1000, 600, 40));
    let price = cfg.price_for(Api::OpenAiDecisions, "openai", "gpt-6-luna").unwrap();
    assert_eq!(price.cost_micros(&u), 100);
    assert_eq!(price.cache_savings_micros(&u), 0, "no discount for cached input on decisions");
    // The same usage on chat: cached input and output at their rates.
    assert_eq!(cfg.price_for(Api::OpenAiChat, "openai", "gpt-6-luna").unwrap().cost_micros(&u), 40 + 6 + 20);
    // A price may set the decisions rate apart.
    let own = crate::pricing::Price { decisions_input: Some(200_000), ..cfg.price("openai", "gpt-6-luna").unwrap() };
    assert_eq!(own.for_decisions().cost_micros(&u), 200);
}
