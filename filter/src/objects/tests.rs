use super::*;
use crate::owned::Kind;
use crate::config::Pattern;
use std::collections::HashMap;

const CFG: &str = r#"{
  "providers": [
    {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-up"},
    {"name": "deepseek", "format": "openai", "cluster": "deepseek", "host": "api.deepseek.com", "path_prefix": ""},
    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"}],
  "routes": [{"model": "cheap", "provider": "deepseek"}, {"model": "openai/*", "provider": "openai"},
             {"model": "gpt-5.4", "provider": "openai"}, {"model": "claude-*", "provider": "anthropic"}],
  "stored_objects": "openai"}"#;

fn cfg() -> Config {
    Config::from_json(CFG.as_bytes()).unwrap()
}

fn key(models: Option<&[&str]>) -> KeyInfo {
    KeyInfo {
        id: "k".into(),
        key_hash: "h".into(),
        team: "t".into(),
        project: "p".into(),
        models: models.map(|ms| ms.iter().map(|m| Pattern::parse(m).unwrap()).collect()),
        projects: vec![],
        tags: Default::default(),
    }
}

fn headers(p: &Plan) -> HashMap<String, String> {
    p.headers.iter().cloned().collect()
}

#[test]
fn names_each_object_under_every_prefix_an_sdk_sends() {
    for pre in ["/v1", "", "/openai/v1", "/openai"] {
        for (rest, o) in [
            ("/responses/resp_67cb71b3", Object::Response),
            ("/responses/resp_1/cancel", Object::ResponseCancel),
            ("/responses/resp_1/input_items", Object::ResponseInputItems),
            ("/conversations", Object::Conversations),
            ("/conversations/conv_123", Object::Conversation),
            ("/conversations/conv_123/items", Object::ConversationItems),
            ("/conversations/conv_123/items/msg_abc-1", Object::ConversationItem),
            ("/files", Object::Files),
            ("/files/file-abc123", Object::File),
            ("/files/file-abc123/content", Object::FileContent),
            ("/vector_stores", Object::VectorStores),
            ("/vector_stores/vs_abc123", Object::VectorStore),
            ("/vector_stores/vs_abc123/search", Object::VectorStoreSearch),
            ("/vector_stores/vs_abc123/files", Object::VectorStoreFiles),
            ("/vector_stores/vs_abc123/files/file-abc123", Object::VectorStoreFile),
            ("/vector_stores/vs_abc123/files/file-abc123/content", Object::VectorStoreFileContent),
            ("/vector_stores/vs_abc123/file_batches", Object::FileBatches),
            ("/vector_stores/vs_abc123/file_batches/vsfb_abc123", Object::FileBatch),
            ("/vector_stores/vs_abc123/file_batches/vsfb_abc123/cancel", Object::FileBatchCancel),
            ("/vector_stores/vs_abc123/file_batches/vsfb_abc123/files", Object::VectorStoreFiles),
            ("/chat/completions/chatcmpl-abc123", Object::ChatCompletion),
            ("/chat/completions/chatcmpl-abc123/messages", Object::ChatCompletionMessages),
            ("/batches", Object::Batches),
            ("/batches/batch_abc123", Object::Batch),
            ("/batches/batch_abc123/cancel", Object::BatchCancel),
            ("/uploads", Object::Uploads),
            ("/uploads/upload_abc123/parts", Object::UploadParts),
            ("/uploads/upload_abc123/complete", Object::UploadComplete),
            ("/uploads/upload_abc123/cancel", Object::UploadCancel),
        ] {
            let p = format!("{pre}{rest}");
            assert_eq!(locate(&p), Some((o, rest)), "{p}");
        }
    }
    for p in [
        "/v1/responses", "/v1/responses/", "/v1/responses/resp.1", "/v1/responses/resp_1/other", "/v1/responses/resp_1/cancel/x",
        "/v1/conversations/conv_1/items/msg 1", "/v1/conversations/c/items/m/x", "/v1beta/responses/resp_1", "/v2/responses/r",
        "/v1/responses/%2e%2e", "/v1/responses/r%2Fx", "/v1/conversations//items", "/v1/files/file-1/other", "/v1/files/file.1",
        "/v1/vector_stores/vs_1/search/x", "/v1/chat/completions", "/v1/chat/completions/c/other", "/v1/chat/x/y", "/v1/vector_stores/vs_1/file_batches/b/other", "/v1/vector_stores/vs.1",
        "/v1/batches/b/other", "/v1/batches/b.1", "/v1/batches/b/cancel/x",
        "/v1/uploads/u", "/v1/uploads/u/parts/part_1", "/v1/uploads/u.1/complete", "/v1/uploads/u/other",
    ] {
        assert_eq!(locate(p), None, "{p}");
    }
    assert_eq!(locate(&format!("/v1/responses/{}", "r".repeat(257))), None, "ids are at most 256 characters");
}

#[test]
fn the_path_and_key_sent_are_the_providers_and_the_query_stays_but_a_key_in_it() {
    let p = plan(&cfg(), &key(None), "/v1/responses/resp_1/input_items?limit=5&key=tg-virtual&order=asc", "GET", false, None).unwrap();
    let h = headers(&p);
    assert_eq!(h[":path"], "/v1/responses/resp_1/input_items?limit=5&order=asc");
    assert_eq!((h[":authority"].as_str(), h["x-tollgate-cluster"].as_str(), h["authorization"].as_str()), ("api.openai.com", "openai", "Bearer sk-up"));
    assert!(!p.scan, "no policy: nothing to scan");
    let azure = plan(&cfg(), &key(None), "/openai/v1/conversations/conv_1/items?api-version=preview", "POST", false, None).unwrap();
    assert_eq!(headers(&azure)[":path"], "/v1/conversations/conv_1/items", "Azure's api-version is the Azure client's");
}

#[test]
fn methods_the_provider_does_not_serve_are_refused() {
    for (path, method) in [("/v1/responses/r", "POST"), ("/v1/responses/r/cancel", "GET"), ("/v1/conversations", "GET"), ("/v1/conversations/c/items/i", "POST")] {
        let e = plan(&cfg(), &key(None), path, method, false, None).unwrap_err();
        assert_eq!((e.status, e.code), (405, "method_not_allowed"), "{method} {path}");
    }
    assert!(plan(&cfg(), &key(None), "/v1/conversations/c", "DELETE", false, None).is_ok());
}

#[test]
fn a_key_reaches_the_objects_only_through_a_model_of_their_provider() {
    let c = cfg();
    for models in [&["openai/*"][..], &["openai/gpt-5.4-mini"], &["gpt-5*"], &["gpt-5.4"], &["open*"]] {
        assert!(plan(&c, &key(Some(models)), "/v1/responses/r", "GET", false, None).is_ok(), "{models:?}");
    }
    for models in [&["cheap"][..], &["claude-*"], &["gpt-4*"], &[]] {
        let e = plan(&c, &key(Some(models)), "/v1/responses/r", "GET", false, None).unwrap_err();
        assert_eq!((e.status, e.code), (403, "provider_not_allowed"), "{models:?}");
    }
}

#[test]
fn guardrails_scan_what_is_stored_and_refuse_what_would_come_back_unscanned() {
    let policy = |v: serde_json::Value| crate::guard::Policy::build(serde_json::from_value(v).unwrap()).unwrap();
    let requests = policy(serde_json::json!({"version": "g1"}));
    let p = plan(&cfg(), &key(None), "/v1/conversations/c/items", "POST", false, Some(&requests)).unwrap();
    assert!(p.scan, "items a model will read pass the request guardrails");
    assert!(!plan(&cfg(), &key(None), "/v1/conversations/c/items", "GET", false, Some(&requests)).unwrap().scan);
    assert!(plan(&cfg(), &key(None), "/v1/vector_stores/vs_1/search", "POST", false, Some(&requests)).unwrap().scan, "a search's query is text");
    assert!(!plan(&cfg(), &key(None), "/v1/vector_stores/vs_1/files", "POST", false, Some(&requests)).unwrap().scan, "attaching names a file");
    let answers = policy(serde_json::json!({"version": "g2", "responses": "redact"}));
    for (path, method) in [("/v1/responses/r", "GET"), ("/v1/responses/r/input_items", "GET"), ("/v1/conversations/c/items", "GET"), ("/v1/responses/r/cancel", "POST"),
                           ("/v1/vector_stores/vs_1/search", "POST"), ("/v1/vector_stores/vs_1/files/f/content", "GET")] {
        let e = plan(&cfg(), &key(None), path, method, false, Some(&answers)).unwrap_err();
        assert_eq!((e.status, e.code), (403, "stored_content_guarded"), "{method} {path}");
    }
    for (path, method) in [("/v1/responses/r", "DELETE"), ("/v1/conversations/c", "GET"), ("/v1/conversations", "POST")] {
        assert!(plan(&cfg(), &key(None), path, method, false, Some(&answers)).is_ok(), "{method} {path}: no content comes back");
    }
}

#[test]
fn one_keeper_a_format_and_without_one_none_is_served() {
    let mut v: serde_json::Value = serde_json::from_str(CFG).unwrap();
    for (bad, field, why) in [
        (serde_json::json!("azure"), "stored_objects", "unknown provider 'azure'"),
        (serde_json::json!(["openai", "deepseek"]), "stored_objects[1]", "at most one provider of each format"),
        (serde_json::json!(["anthropic", "nope"]), "stored_objects[1]", "unknown provider 'nope'"),
        (serde_json::json!(7), "stored_objects", ""),
    ] {
        v["stored_objects"] = bad.clone();
        let e = Config::from_json(v.to_string().as_bytes()).unwrap_err();
        assert!(e.field == field && e.message.contains(why), "{bad}: {e}");
    }
    v.as_object_mut().unwrap().remove("stored_objects");
    let c = Config::from_json(v.to_string().as_bytes()).unwrap();
    assert_eq!(plan(&c, &key(None), "/v1/responses/r", "GET", false, None).unwrap_err().status, 404);
    // OpenAI's alone: an Anthropic client's files are not OpenAI's to have.
    assert_eq!(plan(&cfg(), &key(None), "/v1/files", "POST", true, None).unwrap_err().status, 404);
}

#[test]
fn an_anthropic_clients_files_go_to_the_anthropic_keeper_with_its_key() {
    let mut v: serde_json::Value = serde_json::from_str(CFG).unwrap();
    v["stored_objects"] = serde_json::json!(["openai", "anthropic"]);
    v["providers"][2]["api_key"] = "sk-ant-up".into();
    let c = Config::from_json(v.to_string().as_bytes()).unwrap();
    let p = plan(&c, &key(None), "/v1/files?beta=true", "POST", true, None).unwrap();
    let h = headers(&p);
    assert_eq!((h[":path"].as_str(), h[":authority"].as_str(), h["x-api-key"].as_str()), ("/v1/files?beta=true", "api.anthropic.com", "sk-ant-up"));
    assert!(!h.contains_key("authorization"));
    assert_eq!(plan(&c, &key(None), "/v1/files/file_011CNha8", "GET", false, None).map(|p| p.provider).unwrap(), "openai");
    // Anthropic keeps no responses or conversations.
    assert_eq!(plan(&c, &key(None), "/v1/responses/r", "GET", true, None).unwrap_err().status, 404);
    // A key for OpenAI's models only does not reach Anthropic's files.
    assert_eq!(plan(&c, &key(Some(&["openai/*"])), "/v1/files", "GET", true, None).unwrap_err().code, "provider_not_allowed");
}

#[test]
fn a_file_upload_passes_only_where_no_class_would_be_blocked_or_redacted() {
    let policy = |v: serde_json::Value| crate::guard::Policy::build(serde_json::from_value(v).unwrap()).unwrap();
    let observing = policy(serde_json::json!({"version": "o", "actions": {"secret": "observe", "card": "observe", "ssn": "observe", "iban": "observe"}}));
    let p = plan(&cfg(), &key(None), "/v1/files", "POST", false, Some(&observing)).unwrap();
    assert!(!p.scan && !p.scan_upload, "a form's file is not read");
    assert_eq!(headers(&p)[":path"], "/v1/files");
    // The defaults block secrets: an unreadable upload could carry one. Only
    // a batch's JSON Lines can be read: the form is, to know which it is.
    let defaults = policy(serde_json::json!({"version": "d"}));
    assert!(plan(&cfg(), &key(None), "/v1/files", "POST", false, Some(&defaults)).unwrap().scan_upload);
    assert_eq!(unscannable(&defaults, "openai").code, "content_unscannable");
    // Anthropic's files hold no batches: refused at once.
    let mut v: serde_json::Value = serde_json::from_str(CFG).unwrap();
    v["stored_objects"] = serde_json::json!(["openai", "anthropic"]);
    let both = Config::from_json(v.to_string().as_bytes()).unwrap();
    let e = plan(&both, &key(None), "/v1/files", "POST", true, Some(&defaults)).unwrap_err();
    assert_eq!((e.status, e.code), (403, "content_unscannable"));
    // A team's override counts for that team only.
    let team = policy(serde_json::json!({"version": "t", "actions": {"secret": "observe", "card": "observe", "ssn": "observe", "iban": "observe"},
                                         "teams": {"t": {"email": "redact"}}}));
    assert!(plan(&cfg(), &key(None), "/v1/files", "POST", false, Some(&team)).unwrap().scan_upload);
    assert!(!plan(&cfg(), &KeyInfo { team: "other".into(), ..key(None) }, "/v1/files", "POST", false, Some(&team)).unwrap().scan_upload);
    // Describing files carries no content; reading one back does.
    for (path, method) in [("/v1/files/file-1", "GET"), ("/v1/files/file-1", "DELETE")] {
        assert!(plan(&cfg(), &key(None), path, method, false, Some(&defaults)).is_ok(), "{method} {path}");
    }
    let answers = policy(serde_json::json!({"version": "a", "responses": "observe"}));
    assert_eq!(plan(&cfg(), &key(None), "/v1/files/file-1/content", "GET", false, Some(&answers)).unwrap_err().code, "stored_content_guarded");
}

#[test]
fn a_file_sent_in_parts_passes_only_where_no_class_would_be_blocked_or_redacted() {
    let policy = |v: serde_json::Value| crate::guard::Policy::build(serde_json::from_value(v).unwrap()).unwrap();
    let observing = policy(serde_json::json!({"version": "o", "actions": {"secret": "observe", "card": "observe", "ssn": "observe", "iban": "observe"}}));
    let defaults = policy(serde_json::json!({"version": "d"}));
    for path in ["/v1/uploads", "/v1/uploads/upload_1/parts", "/v1/uploads/upload_1/complete", "/v1/uploads/upload_1/cancel"] {
        let p = plan(&cfg(), &key(None), path, "POST", false, Some(&observing)).unwrap();
        assert!(!p.scan && !p.scan_upload && p.charged.is_none() && !p.creates_batch, "{path}: sent as it came, not held");
        assert_eq!((headers(&p)[":path"].as_str(), headers(&p)["authorization"].as_str()), (path, "Bearer sk-up"));
        assert_eq!(plan(&cfg(), &key(None), path, "GET", false, None).unwrap_err().status, 405, "{path}");
        assert_eq!(plan(&cfg(), &key(Some(&["cheap"])), path, "POST", false, None).unwrap_err().code, "provider_not_allowed");
    }
    // A part is any slice of the file (a batch's line cut anywhere): not
    // read as a batch file sent whole is, so neither it nor the upload it
    // would fill goes where a class is blocked or redacted.
    for path in ["/v1/uploads", "/v1/uploads/upload_1/parts"] {
        let e = plan(&cfg(), &key(None), path, "POST", false, Some(&defaults)).unwrap_err();
        assert_eq!((e.status, e.code), (403, "content_unscannable"), "{path}");
    }
    for path in ["/v1/uploads/upload_1/complete", "/v1/uploads/upload_1/cancel"] {
        assert!(plan(&cfg(), &key(None), path, "POST", false, Some(&defaults)).is_ok(), "{path}: names parts, carries none");
    }
    // Anthropic has no Uploads API: not sent to OpenAI for its client.
    assert_eq!(plan(&cfg(), &key(None), "/v1/uploads", "POST", true, None).unwrap_err().status, 404);
}

#[test]
fn listing_every_keys_files_or_stores_is_refused_unless_allowed() {
    for path in ["/v1/files", "/v1/vector_stores", "/v1/files?purpose=batch", "/v1/batches", "/v1/batches?limit=2"] {
        let e = plan(&cfg(), &key(None), path, "GET", false, None).unwrap_err();
        assert_eq!((e.status, e.code), (403, "listing_not_allowed"), "{path}");
    }
    // What is named by id is not a listing of everyone's.
    for path in ["/v1/vector_stores/vs_1/files", "/v1/conversations/c/items", "/v1/responses/r/input_items", "/v1/files/file-1"] {
        assert!(plan(&cfg(), &key(None), path, "GET", false, None).is_ok(), "{path}");
    }
    let mut v: serde_json::Value = serde_json::from_str(CFG).unwrap();
    v["list_stored_objects"] = true.into();
    let c = Config::from_json(v.to_string().as_bytes()).unwrap();
    assert!(plan(&c, &key(None), "/v1/files", "GET", false, None).is_ok());
    // A list of batches hands out their output files as a read by id does: charged the same way.
    assert_eq!(plan(&c, &key(None), "/v1/batches", "GET", false, None).unwrap().charged, Some(Kind::Batch));
}

#[test]
fn batches_are_created_by_keys_allowed_every_model_and_their_answers_read_for_a_charge() {
    let c = cfg();
    let create = plan(&c, &key(None), "/v1/batches", "POST", false, None).unwrap();
    assert_eq!((create.creates_batch, create.charged), (true, None));
    assert_eq!(headers(&create)[":path"], "/v1/batches");
    // A key limited to some models could run any in a batch's file.
    let e = plan(&c, &key(Some(&["gpt-5.4"])), "/v1/batches", "POST", false, None).unwrap_err();
    assert_eq!((e.status, e.code), (403, "batch_not_allowed"));
    // Reading or cancelling one is not creating it: any key of the provider.
    for (path, method) in [("/v1/batches/batch_1", "GET"), ("/v1/batches/batch_1/cancel", "POST")] {
        let p = plan(&c, &key(Some(&["gpt-5.4"])), path, method, false, None).unwrap();
        assert_eq!((p.creates_batch, p.charged), (false, Some(Kind::Batch)), "{method} {path}");
        // Read whole: never in parts, never "not modified".
        assert!(p.remove().contains(&"range") && p.remove().contains(&"if-none-match"), "{method} {path}");
    }
    for (path, method) in [("/v1/batches/batch_1", "DELETE"), ("/v1/batches/batch_1/cancel", "GET"), ("/v1/batches", "DELETE")] {
        assert_eq!(plan(&c, &key(None), path, method, false, None).unwrap_err().status, 405, "{method} {path}");
    }
    // Anthropic's batches are elsewhere (/v1/messages/batches): not these.
    assert_eq!(plan(&c, &key(None), "/v1/batches", "POST", true, None).unwrap_err().status, 404);
}

#[test]
fn a_response_read_or_cancelled_is_read_whole_for_a_background_responses_charge() {
    let c = cfg();
    for (path, method) in [("/v1/responses/resp_1", "GET"), ("/v1/responses/resp_1?stream=true&starting_after=3", "GET"), ("/v1/responses/resp_1/cancel", "POST")] {
        let p = plan(&c, &key(None), path, method, false, None).unwrap();
        assert_eq!(p.charged, Some(Kind::Response), "{method} {path}");
        assert!(p.remove().contains(&"range") && p.remove().contains(&"if-modified-since"), "{method} {path}");
    }
    // A stream resumed after an event is asked from its start (the events before it are read, not passed on).
    let p = plan(&c, &key(None), "/v1/responses/resp_1?stream=true&starting_after=3&include_obfuscation=false", "GET", false, None).unwrap();
    assert_eq!((headers(&p)[":path"].as_str(), p.skip_through), ("/v1/responses/resp_1?stream=true&include_obfuscation=false", Some(3)));
    assert!(p.remove().contains(&"accept-encoding"), "read uncompressed, to be filtered event by event");
    assert_eq!(plan(&c, &key(None), "/v1/responses/resp_1", "GET", false, None).unwrap().skip_through, None);
    for bad in ["starting_after=x", "starting_after=-1", "starting_after=", "starting_after=1&starting_after=2", "starting_after"] {
        let e = plan(&c, &key(None), &format!("/v1/responses/resp_1?stream=true&{bad}"), "GET", false, None).unwrap_err();
        assert_eq!((e.status, e.param), (400, Some("starting_after")), "{bad}");
    }
    // Deleting one, or reading what it was asked: nothing to charge.
    for (path, method) in [("/v1/responses/resp_1", "DELETE"), ("/v1/responses/resp_1/input_items", "GET"), ("/v1/conversations/c/items", "GET")] {
        let p = plan(&c, &key(None), path, method, false, None).unwrap();
        assert_eq!((p.charged, p.remove().len()), (None, 0), "{method} {path}");
    }
}
