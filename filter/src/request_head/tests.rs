use super::*;

fn read(pairs: &[(&str, &[u8])]) -> RequestHead {
    RequestHead::read(pairs.iter().map(|(k, v)| (k.as_bytes(), *v)), "x-tollgate-cluster")
}

fn key(projects: &[&str]) -> KeyInfo {
    KeyInfo {
        id: "k1".into(),
        key_hash: "h".into(),
        team: "search".into(),
        project: "web".into(),
        models: None,
        projects: projects.iter().map(|p| p.to_string()).collect(),
        tags: Default::default(),
    }
}

#[test]
fn credentials_tags_and_routing_headers_never_go_upstream() {
    let h = read(&[
        (":path", b"/v1/chat/completions"),
        ("authorization", b"Bearer tg-1"),
        ("x-api-key", b"\xff"),
        ("x-goog-api-key", b"g"),
        ("x-tollgate-project", b"web"),
        ("x-tollgate-session", b"s"),
        ("x-tollgate-feature", b"f"),
        ("x-tollgate-prompt-version", b"v"),
        ("accept-encoding", b"br"),
        ("x-tollgate-cluster", b"openai"),
        ("openai-organization", b"org-client"),
        ("openai-project", b"proj_client"),
        ("x-goog-user-project", b"client-project"),
        ("anthropic-workspace-id", b"wrkspc_client"),
        ("x-request-id", b"r"),
        ("content-type", b"application/json"),
    ]);
    let removed: Vec<&str> = h.to_remove.iter().map(String::as_str).collect();
    assert_eq!(
        removed,
        [
            "authorization",
            "x-api-key",
            "x-goog-api-key",
            "x-tollgate-project",
            "x-tollgate-session",
            "x-tollgate-feature",
            "x-tollgate-prompt-version",
            "accept-encoding",
            "x-tollgate-cluster",
            "openai-organization",
            "openai-project",
            "x-goog-user-project",
            "anthropic-workspace-id"
        ]
    );
    assert_eq!(h.x_api_key.as_deref(), Some(&b"\xff"[..]), "kept as bytes: refused where it is read, never a panic");
    assert_eq!((h.path.as_slice(), h.request_id.as_deref()), (&b"/v1/chat/completions"[..], Some(&b"r"[..])));
}

#[test]
fn several_content_encodings_are_joined_so_they_are_refused() {
    let h = read(&[("content-encoding", b"gzip"), ("content-encoding", b"gzip")]);
    assert_eq!(h.content_encoding.as_deref(), Some(&b"gzip, gzip"[..]));
    assert_eq!(crate::decode::request_body(h.content_encoding.as_deref(), b"{}", 1 << 20).map_err(|e| e.status), Err(415));
}

#[test]
fn a_project_tag_must_be_one_the_key_may_charge() {
    let tagged = |v: &[u8], projects: &[&str]| read(&[("x-tollgate-project", v)]).project(&key(projects)).map_err(|e| (e.status, e.code));
    assert_eq!(tagged(b"web", &[]), Ok(Some("web".into())), "its own");
    assert_eq!(tagged(b" ads ", &["ads"]), Ok(Some("ads".into())), "trimmed, and listed");
    assert_eq!(tagged(b"ads", &["*"]), Ok(Some("ads".into())));
    assert_eq!(tagged(b"ads", &["maps"]).map_err(|e| e.0), Err(403));
    assert_eq!(tagged(b"  ", &[]), Ok(None), "blank: the key's own");
    assert_eq!(read(&[]).project(&key(&[])).map_err(|e| e.status), Ok(None));
}

#[test]
fn tags_are_short_printable_ascii_or_refused() {
    let feature = |v: &[u8]| read(&[("x-tollgate-feature", v)]).feature().map_err(|e| (e.status, e.code));
    assert_eq!(feature(b"search-v2"), Ok(Some("search-v2".into())));
    assert_eq!(feature(&[b'a'; 128]), Ok(Some("a".repeat(128))));
    for bad in [&[b'a'; 129][..], b"caf\xc3\xa9", b"\xff", b"a\x07b", b"tab\there"] {
        assert_eq!(feature(bad).map_err(|e| e.0), Err(400), "{bad:?}");
    }
    let err = read(&[("x-tollgate-prompt-version", b"\x1b[31m")]).prompt_version().expect_err("a control byte");
    assert!(err.body().contains("x-tollgate-prompt-version"), "the error names the header: {}", err.body());
}

#[test]
fn every_key_a_request_presents_is_listed_once_in_the_order_tried() {
    let keys = |pairs: &[(&str, &[u8])]| read(pairs).keys().map(|k| k.into_iter().flatten().map(str::to_string).collect::<Vec<_>>());
    assert_eq!(keys(&[]).unwrap(), Vec::<String>::new());
    assert_eq!(
        keys(&[("x-goog-api-key", b"g"), ("x-api-key", b" a "), ("authorization", b"Bearer  b ")]).unwrap(),
        ["b", "a", "g"]
    );
    // The same key in two headers is one key; a non-bearer scheme and empty values are none.
    assert_eq!(keys(&[("authorization", b"Bearer a"), ("x-api-key", b"a")]).unwrap(), ["a"]);
    assert_eq!(keys(&[("authorization", b"Basic YTpi"), ("x-api-key", b" "), ("x-goog-api-key", b"g")]).unwrap(), ["g"]);
    // A header given twice is one value joined with a comma: never a known key.
    assert_eq!(keys(&[("x-api-key", b"a"), ("x-api-key", b"b")]).unwrap(), ["a, b"]);
    // Bytes that are not UTF-8 in any key header: an invalid key, never a panic.
    let e = keys(&[("authorization", b"Bearer a"), ("x-goog-api-key", b"\xff")]).unwrap_err();
    assert_eq!((e.status, e.code), (401, "invalid_api_key"));
    // Azure OpenAI clients send `api-key`: tried last, removed before the request goes on.
    assert_eq!(keys(&[("api-key", b"z"), ("authorization", b"Bearer b")]).unwrap(), ["b", "z"]);
    assert_eq!(keys(&[("api-key", b"b"), ("authorization", b"Bearer b")]).unwrap(), ["b"]);
    assert!(read(&[("api-key", b"z")]).to_remove.contains(&"api-key".to_string()));
    assert_eq!(keys(&[("api-key", b"\xfe")]).unwrap_err().code, "invalid_api_key");
}

#[test]
fn the_first_key_pays_unless_another_header_names_a_different_known_key() {
    let known = |k: &str| match k {
        "a" | "a2" => Some("team-a"), // two keys of one record cannot happen; same() decides
        "b" => Some("team-b"),
        _ => None,
    };
    let charged = |keys: &[&str]| charged_key(keys.iter().copied(), known, |x, y| x == y).map_err(|e| (e.status, e.message));
    assert_eq!(charged(&["a"]), Ok(Some("team-a")));
    assert_eq!(charged(&["a", "sk-ant-provider-key"]), Ok(Some("team-a")), "no virtual key: no conflict");
    assert_eq!(charged(&["a", "a2"]), Ok(Some("team-a")), "the same key record");
    assert_eq!(charged(&["unknown", "b"]), Ok(None), "the first decides: unknown, never the second");
    let (status, message) = charged(&["a", "sk-x", "b"]).unwrap_err();
    assert_eq!(status, 401);
    assert!(message.contains("two different"), "{message}");
    assert_eq!(charged(&[]).unwrap_err().0, 401);
}

#[test]
fn a_websocket_upgrade_is_seen_in_any_case_and_list() {
    for v in [&b"websocket"[..], b"WebSocket", b"h2c, websocket", b" websocket "] {
        assert!(read(&[("upgrade", v)]).websocket, "{v:?}");
    }
    for v in [&b"h2c"[..], b"websockets", b"", b"\xff"] {
        assert!(!read(&[("upgrade", v)]).websocket, "{v:?}");
    }
    assert!(!read(&[]).websocket);
    let e = crate::errors::GatewayError::websocket_not_supported();
    assert_eq!((e.status, e.code), (426, "websocket_not_supported"));
}

#[test]
fn the_content_type_is_read_whole_and_several_are_joined() {
    let one = [(&b":path"[..], &b"/v1/images/edits"[..]), (b"content-type", b"multipart/form-data; boundary=x")];
    assert_eq!(super::content_type(one.iter().copied()).as_deref(), Some(&b"multipart/form-data; boundary=x"[..]));
    let two = [(&b"content-type"[..], &b"multipart/form-data; boundary=a"[..]), (b"content-type", b"multipart/form-data; boundary=b")];
    let joined = super::content_type(two.iter().copied()).unwrap();
    assert!(crate::request::multipart::boundary(&joined).is_err(), "two boundaries: refused");
    assert_eq!(super::content_type(std::iter::empty()), None);
}
