use super::*;

/// A form as httpx (openai-python) writes one: text fields first, then files.
fn form(boundary: &str, fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    for (k, data) in files {
        b.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

fn view(body: &[u8], boundary: &str) -> Result<Value, GatewayError> {
    let f = Form::read(body, boundary)?;
    Ok(serde_json::from_slice(&f.view(body, Api::OpenAiImageEdits)?).unwrap())
}

#[test]
fn the_boundary_is_read_from_the_content_type() {
    assert_eq!(boundary(b"multipart/form-data; boundary=abc").unwrap().as_deref(), Some("abc"));
    assert_eq!(boundary(b"Multipart/Form-Data;boundary=\"a b:c\"").unwrap().as_deref(), Some("a b:c"));
    // openai-node's FormData and curl
    assert_eq!(boundary(b"multipart/form-data; boundary=----formdata-undici-0123456789").unwrap().as_deref(), Some("----formdata-undici-0123456789"));
    assert_eq!(boundary(b"multipart/form-data; charset=utf-8; boundary=------------------------d74496d66958873e").unwrap().as_deref(), Some("------------------------d74496d66958873e"));
    for other in [&b"application/json"[..], b"text/plain", b"", b"\xff\xfe"] {
        assert_eq!(boundary(other).unwrap(), None);
    }
    for bad in [&b"multipart/form-data"[..], b"multipart/form-data; boundary=", b"multipart/form-data; boundary=\"\"", b"multipart/form-data; boundary=a; boundary=b"] {
        assert_eq!(boundary(bad).unwrap_err().code, "invalid_multipart", "{}", String::from_utf8_lossy(bad));
    }
    let long = format!("multipart/form-data; boundary={}", "x".repeat(71));
    assert!(boundary(long.as_bytes()).is_err());
    assert!(boundary(b"multipart/form-data; boundary=a\x01b").is_err());
}

#[test]
fn a_form_is_read_as_the_json_it_stands_for() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR--not-a-boundary\r\n--almost";
    let body = form("XyZ", &[("model", "gpt-image-1.5"), ("prompt", "a hat, \"red\""), ("n", "2"), ("stream", "true"), ("size", "1024x1024")], &[("image[]", png), ("image[]", b"two"), ("mask", b"m"), ("markup", b"mk")]);
    let v = view(&body, "XyZ").unwrap();
    assert_eq!(
        v,
        serde_json::json!({"model": "gpt-image-1.5", "prompt": "a hat, \"red\"", "n": 2, "stream": true, "size": "1024x1024",
            "images": [{"upload": png.len()}, {"upload": 3}], "mask": {"upload": 1}, "markup": {"upload": 2}})
    );
    // a preamble, transport padding, an epilogue, a file without a type but with a name, image[0]
    let mut b = b"preamble\r\n--b  \r\nContent-Disposition: form-data; name=prompt\r\n\r\nhi\r\n--b\r\ncontent-disposition: FORM-DATA; name=\"image[0]\"; filename=\"a\"\r\n\r\n\xff\xd8\r\n--b--\r\nepilogue".to_vec();
    assert_eq!(view(&b, "b").unwrap(), serde_json::json!({"prompt": "hi", "images": [{"upload": 2}]}));
    // an empty part content, and one with no headers at all refused
    b = b"--b\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\n\r\n--b--".to_vec();
    assert_eq!(view(&b, "b").unwrap(), serde_json::json!({"user": ""}));
    // a number that is not one stays text (the provider refuses it, so does the gateway)
    let b = form("b", &[("n", "two"), ("partial_images", "1.5"), ("stream", "yes")], &[]);
    assert_eq!(view(&b, "b").unwrap(), serde_json::json!({"n": "two", "partial_images": "1.5", "stream": "yes"}));
}

#[test]
fn what_cannot_be_read_unambiguously_is_refused() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"no delimiter at all".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b".to_vec(), "invalid_multipart"),
        (b"--bjunk\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Disposition: form-data; name=\"c\"\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nbroken header\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: form-data; name=\"\xff\"\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (form("b", &[("prompt", "a"), ("prompt", "b")], &[]), "duplicate_key"),
        (b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n\xff\xfe\r\n--b--".to_vec(), "invalid_multipart"),
        (form("b", &[("image", "https://example.com/a.png")], &[]), "invalid_multipart"),
        (form("b", &[("images", "[]")], &[]), "invalid_multipart"),
        (form("b", &[], &[("mask", b"1"), ("mask", b"2")]), "invalid_multipart"),
        (form("b", &[("mask", "https://example.com/m.png")], &[]), "invalid_multipart"),
        (form("b", &[("markup", "data:image/png;base64,AA==")], &[]), "invalid_multipart"),
        (form("b", &[], &[("prompt", b"a file where text goes")]), "invalid_multipart"),
        (form("b", &[("prompt", &"x".repeat(MAX_TEXT + 1))], &[]), "invalid_multipart"),
        // what another parser could read differently
        (b"--b\r\nContent-Disposition: form-data; name=\"n\"; name*=UTF-8''model\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\nContent-Transfer-Encoding: base64\r\n\r\neA==\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\nContent-Type: image/png\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--".to_vec(), "invalid_multipart"),
        (b"--b\nContent-Disposition: form-data; name=\"prompt\"\n\nx\n--b--".to_vec(), "invalid_multipart"),
    ];
    for (body, code) in cases {
        let got = Form::read(&body, "b").and_then(|f| f.view(&body, Api::OpenAiImageEdits).map(|_| ()));
        assert_eq!(got.unwrap_err().code, code, "{}", String::from_utf8_lossy(&body));
    }
    // headers that never end, and too many parts
    let mut endless = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\nX: ".to_vec();
    endless.extend(std::iter::repeat_n(b'y', MAX_PART_HEAD + 10));
    endless.extend_from_slice(b"\r\n\r\nx\r\n--b--");
    assert!(Form::read(&endless, "b").is_err());
    let many: Vec<(String, String)> = (0..=MAX_PARTS).map(|i| (format!("f{i}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(Form::read(&form("b", &many, &[]), "b").is_err());
}

#[test]
fn a_planned_view_is_written_back_into_the_form() {
    let png = b"\x89PNG binary \r\n bytes";
    let body = form("q", &[("model", "alias"), ("prompt", "mail bob@example.com"), ("n", "2"), ("user", "u1")], &[("image", png), ("mask", b"M")]);
    let f = Form::read(&body, "q").unwrap();
    // unchanged: the same parts, byte for byte
    assert_eq!(f.rebuild(&body, &f.view(&body, Api::OpenAiImageEdits).unwrap(), Api::OpenAiImageEdits).unwrap(), body);
    // the model renamed, the prompt redacted, `user` dropped, a field added
    let mut v: Value = serde_json::from_slice(&f.view(&body, Api::OpenAiImageEdits).unwrap()).unwrap();
    v["model"] = "gpt-image-1.5".into();
    v["prompt"] = "mail [EMAIL]".into();
    v.as_object_mut().unwrap().remove("user");
    v["moderation"] = "low".into();
    let out = f.rebuild(&body, &serde_json::to_vec(&v).unwrap(), Api::OpenAiImageEdits).unwrap();
    let again = Form::read(&out, "q").unwrap();
    let seen: Value = serde_json::from_slice(&again.view(&out, Api::OpenAiImageEdits).unwrap()).unwrap();
    assert_eq!(
        seen,
        serde_json::json!({"model": "gpt-image-1.5", "prompt": "mail [EMAIL]", "n": 2, "moderation": "low", "images": [{"upload": png.len()}], "mask": {"upload": 1}})
    );
    assert!(memmem::find(&out, png).is_some(), "the file goes on as it came");
    assert!(out.ends_with(b"--q--\r\n"));
    // headers are written anew: a preamble, padding, odd spellings and an epilogue do not reach the provider
    let odd = b"preamble\r\n--q \r\ncontent-disposition: FORM-DATA;name=model\r\nX-Extra: 1\r\n\r\nm\r\n--q\r\nContent-Disposition: form-data; name=\"image\"; filename=\"\xc3\xb6 x.png\"\r\nContent-Type: image/png\r\n\r\nPNG\r\n--q--\r\n--q\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nsmuggled\r\n";
    let f = Form::read(odd, "q").unwrap();
    let out = f.rebuild(odd, &f.view(odd, Api::OpenAiImageEdits).unwrap(), Api::OpenAiImageEdits).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "--q\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--q\r\nContent-Disposition: form-data; name=\"image\"; filename=\"_ x.png\"\r\nContent-Type: image/png\r\n\r\nPNG\r\n--q--\r\n"
    );
    // a value holding the boundary is refused, not sent as two parts
    v["prompt"] = "x\r\n--q\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n10".into();
    assert!(f.rebuild(&body, &serde_json::to_vec(&v).unwrap(), Api::OpenAiImageEdits).is_err());
}

// (proptest is a native-only dev-dependency: filter/Cargo.toml.)
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn hostile_forms_never_panic() {
    use proptest::prelude::*;
    proptest!(ProptestConfig::with_cases(512), |(bytes in proptest::collection::vec(prop_oneof![Just(b'-'), Just(b'\r'), Just(b'\n'), Just(b'b'), Just(b'"'), Just(b';'), Just(b':'), any::<u8>()], 0..300))| {
        if let Ok(f) = Form::read(&bytes, "b") {
            if let Ok(v) = f.view(&bytes, Api::OpenAiImageEdits) {
                let _ = f.rebuild(&bytes, &v, Api::OpenAiImageEdits);
            }
        }
    });
}

#[test]
fn the_body_sent_is_the_planned_one_or_the_form_written_back() {
    use crate::request::{outgoing_body, Api};
    let joined = |pieces: Option<Vec<std::borrow::Cow<'_, [u8]>>>| pieces.map(|p| p.concat());
    // not a form: the planned body, else the body as read only when it is not the client's
    assert_eq!(joined(outgoing_body(Some(b"planned".to_vec()), b"read".to_vec(), false, None).unwrap()).as_deref(), Some(&b"planned"[..]));
    assert_eq!(joined(outgoing_body(None, b"read".to_vec(), true, None).unwrap()).as_deref(), Some(&b"read"[..]));
    assert_eq!(outgoing_body(None, b"read".to_vec(), false, None).unwrap(), None);
    // a form: always written back, from the planned view or the view as read
    let body = form("f", &[("model", "alias"), ("prompt", "p")], &[("image", b"\x89PNG")]);
    let read = body.clone();
    let held = read.as_ptr_range(); // (the upload keeps this allocation: a Vec moved keeps its bytes in place)
    let (upload, view) = Upload::read(Api::OpenAiImageEdits, Some(b"multipart/form-data; boundary=f"), read).unwrap();
    let upload = upload.unwrap();
    assert_eq!(joined(outgoing_body(None, view.clone(), false, Some(&upload)).unwrap()), Some(body.clone()));
    let planned = String::from_utf8(view).unwrap().replace("alias", "gpt-image-1.5").into_bytes();
    let pieces = outgoing_body(Some(planned), Vec::new(), false, Some(&upload)).unwrap().unwrap();
    // The file's bytes are the form's own, borrowed, not a copy.
    let image = pieces.iter().find(|p| &p[..] == b"\x89PNG").expect("the file is a piece of its own");
    assert!(matches!(image, std::borrow::Cow::Borrowed(_)) && held.contains(&image.as_ptr()));
    let sent = pieces.concat();
    assert!(memmem::find(&sent, b"\r\n\r\ngpt-image-1.5\r\n").is_some() && memmem::find(&sent, b"\x89PNG").is_some());
    // another API, or JSON: no form
    let (none, same) = Upload::read(Api::OpenAiChat, Some(b"multipart/form-data; boundary=f"), body.clone()).unwrap();
    assert!(none.is_none() && same == body);
    assert!(Upload::read(Api::OpenAiImageEdits, Some(b"application/json"), b"{}".to_vec()).unwrap().0.is_none());
}

/// A transcription's form as openai-python writes one: lists as `name[]`,
/// an object as `name[key]`, the audio as `file`.
fn transcription(extra: &[(&str, &str)], audio: &[u8]) -> Vec<u8> {
    let mut fields = vec![("model", "gpt-4o-transcribe"), ("response_format", "json")];
    fields.extend_from_slice(extra);
    let mut b = form("t", &fields, &[]);
    b.truncate(b.len() - "--t--\r\n".len());
    b.extend_from_slice(b"--t\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.wav\"\r\nContent-Type: audio/wav\r\n\r\n");
    b.extend_from_slice(audio);
    b.extend_from_slice(b"\r\n--t--\r\n");
    b
}

/// One second of 8 kHz mono 16-bit PCM as a WAV.
fn one_second() -> Vec<u8> {
    let mut w = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data\x80\x3e\0\0".to_vec();
    w.extend(vec![0u8; 16_000]);
    w
}

#[test]
fn a_transcription_form_reads_its_audio_lists_and_objects() {
    let lists = [("timestamp_granularities[]", "word"), ("timestamp_granularities[]", "segment"), ("include[]", "logprobs"), ("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "0.5"), ("stream", "true")];
    let body = transcription(&lists, &one_second());
    let f = Form::read(&body, "t").unwrap();
    let v: Value = serde_json::from_slice(&f.view(&body, Api::OpenAiTranscriptions).unwrap()).unwrap();
    assert_eq!(v["file"], serde_json::json!({"upload": 16_044, "ms": 1_000, "stated": true}));
    assert_eq!(v["timestamp_granularities"], serde_json::json!(["word", "segment"]));
    assert_eq!(v["include"], serde_json::json!(["logprobs"]));
    assert_eq!(v["chunking_strategy"], serde_json::json!({"type": "server_vad", "threshold": "0.5"}));
    assert_eq!(v["stream"], true);
    // Written back: the model as planned, the lists, the object and the audio as they came.
    let mut planned = v.clone();
    planned["model"] = "gpt-4o-mini-transcribe".into();
    let out = f.rebuild(&body, &serde_json::to_vec(&planned).unwrap(), Api::OpenAiTranscriptions).unwrap();
    assert_eq!(String::from_utf8_lossy(&out).matches("timestamp_granularities[]").count(), 2);
    let again: Value = serde_json::from_slice(&Form::read(&out, "t").unwrap().view(&out, Api::OpenAiTranscriptions).unwrap()).unwrap();
    assert_eq!(again["model"], "gpt-4o-mini-transcribe");
    assert_eq!((&again["timestamp_granularities"], &again["chunking_strategy"], &again["file"]), (&v["timestamp_granularities"], &v["chunking_strategy"], &v["file"]));
    // Audio no container states the length of: assumed at 32 kbit/s.
    let body = transcription(&[], &[7u8; 40_000]);
    let v: Value = serde_json::from_slice(&Form::read(&body, "t").unwrap().view(&body, Api::OpenAiTranscriptions).unwrap()).unwrap();
    assert_eq!(v["file"], serde_json::json!({"upload": 40_000, "ms": 10_000, "stated": false}));
}

#[test]
fn a_transcription_form_that_could_be_read_two_ways_is_refused() {
    let read = |body: &[u8]| Form::read(body, "t").and_then(|f| f.view(body, Api::OpenAiTranscriptions)).map(|_| ()).map_err(|e| e.code);
    let wav = one_second();
    // A list and a scalar of one name, an object's key twice, a list item and an object key.
    for extra in [
        &[("include", "logprobs"), ("include[]", "logprobs")][..],
        &[("include[]", "logprobs"), ("include", "logprobs")],
        &[("chunking_strategy[type]", "server_vad"), ("chunking_strategy[type]", "auto")],
        &[("chunking_strategy[type]", "server_vad"), ("chunking_strategy[]", "auto")],
        &[("model", "whisper-1")],
    ] {
        assert_eq!(read(&transcription(extra, &wav)), Err("duplicate_key"), "{extra:?}");
    }
    // Text where the audio goes, two audio files, an image in a transcription.
    assert_eq!(read(&form("t", &[("model", "whisper-1"), ("file", "speech.wav")], &[])), Err("invalid_multipart"));
    let mut two = transcription(&[], &wav);
    two.truncate(two.len() - "--t--\r\n".len());
    two.extend_from_slice(b"--t\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.wav\"\r\n\r\nRIFF\r\n--t--\r\n");
    assert_eq!(read(&two), Err("invalid_multipart"));
    assert_eq!(read(&form("t", &[("model", "whisper-1")], &[("image", b"\x89PNG")])), Err("invalid_multipart"));
    // Text named like a file member, as a list or an object: never beside the files counted.
    for name in ["file[]", "file[0]", "file[name]"] {
        assert_eq!(read(&transcription(&[(name, "file-abc")], &wav)), Err("invalid_multipart"), "{name}");
    }
    for name in ["images[]", "images[0]", "mask[file_id]", "image[x]"] {
        assert!(view(&form("t", &[("model", "gpt-image-1.5"), ("prompt", "p"), (name, "file-abc")], &[("image", b"\x89PNG")]), "t").is_err(), "{name}");
    }
    // A transcription is a form only: JSON is refused, an edit's JSON is not.
    let json = Upload::read(Api::OpenAiTranscriptions, Some(b"application/json"), br#"{"model":"whisper-1"}"#.to_vec());
    assert_eq!(json.unwrap_err().code, "invalid_multipart");
    assert!(Upload::read(Api::OpenAiTranslations, None, b"x".to_vec()).is_err());
    // An edit takes no `file`, a transcription no `image`: each is what its API names.
    assert!(view(&form("t", &[("prompt", "p")], &[("file", b"\x89PNG")]), "t").is_err());
}

#[test]
fn one_part_is_read_by_name_and_replaced_with_the_rest_as_it_came() {
    let body = form("b0", &[("purpose", "batch")], &[("file", b"line 1\nline 2\n")]);
    let f = Form::read(&body, "b0").unwrap();
    assert_eq!(f.only(&body, "purpose").unwrap(), Some(&b"batch"[..]));
    assert_eq!(f.only(&body, "file").unwrap(), Some(&b"line 1\nline 2\n"[..]));
    assert_eq!(f.only(&body, "other").unwrap(), None);
    let new = f.replacing(&body, "file", b"line 1\n[REDACTED]\n").unwrap();
    let g = Form::read(&new, "b0").unwrap();
    assert_eq!((g.only(&new, "purpose").unwrap(), g.only(&new, "file").unwrap()), (Some(&b"batch"[..]), Some(&b"line 1\n[REDACTED]\n"[..])));
    assert_eq!(f.content_type(), "multipart/form-data; boundary=\"b0\"");
    // Two parts of one name: which the provider reads is not known.
    let twice = form("b0", &[("purpose", "batch"), ("purpose", "user_data")], &[("file", b"x")]);
    assert_eq!(Form::read(&twice, "b0").unwrap().only(&twice, "purpose").unwrap_err().code, "duplicate_key");
    let files = form("b0", &[("purpose", "batch")], &[("file", b"{}"), ("file", b"{\"secret\":1}")]);
    assert_eq!(Form::read(&files, "b0").unwrap().only(&files, "file").unwrap_err().code, "duplicate_key");
    // New content cannot end its part early.
    assert_eq!(f.replacing(&body, "file", b"a\r\n--b0--\r\n").unwrap_err().code, "invalid_multipart");
}
