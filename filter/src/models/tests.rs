use super::*;
use crate::config::Pattern;

const CFG: &str = r#"{
  "providers": [
    {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com"},
    {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"},
    {"name": "google", "format": "gemini", "cluster": "google", "host": "generativelanguage.googleapis.com"}],
  "routes": [{"model": "cheap", "provider": "openai", "upstream_model": "gpt-5.4-mini"},
             {"model": "claude-sonnet-4-6", "provider": "anthropic"},
             {"model": "google/gemini-2.5-flash", "provider": "google"},
             {"model": "gemini-2.5-flash", "provider": "google"},
             {"model": "gemini-2.5-pro", "provider": "google"},
             {"model": "openai/*", "provider": "openai"}, {"model": "google/*", "provider": "google"}],
  "pricing": {"google/gemini-3-pro": {"input": 1, "output": 1}, "google/gemini-embedding-001": {"input": 1, "output": 0}},
  "unpriced_models": "allow"}"#;

fn key(models: Option<Vec<&str>>) -> KeyInfo {
    KeyInfo {
        id: "k".into(),
        key_hash: "h".into(),
        team: "t".into(),
        project: "p".into(),
        models: models.map(|ms| ms.into_iter().map(|m| Pattern::parse(m).unwrap()).collect()),
        projects: vec![],
        tags: Default::default(),
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn the_shape_is_the_clients() {
    assert_eq!(Shape::of("/v1/models", false, false), Shape::OpenAi);
    assert_eq!(Shape::of("/v1/models", true, false), Shape::Anthropic);
    assert_eq!(Shape::of("/v1beta/models?pageSize=50", false, false), Shape::Gemini);
    assert_eq!(Shape::of("/v1beta/models", true, false), Shape::Gemini, "the path is Gemini's alone");
    assert_eq!(Shape::of("/v1/models/gemini-2.5-flash", false, true), Shape::Gemini, "google-genai with api_version v1");
}

#[test]
fn models_are_listed_in_the_clients_shape() {
    let cfg = Config::from_json(CFG.as_bytes()).unwrap();
    let two = key(Some(vec!["cheap", "claude-*"]));
    assert_eq!(
        json(&list(&cfg, &two, Shape::OpenAi)),
        serde_json::json!({"object": "list", "data": [
            {"id": "cheap", "object": "model", "created": 0, "owned_by": "openai"},
            {"id": "claude-sonnet-4-6", "object": "model", "created": 0, "owned_by": "anthropic"}]})
    );
    let anthropic = json(&list(&cfg, &two, Shape::Anthropic));
    assert_eq!(anthropic["data"][1], serde_json::json!({"type": "model", "id": "claude-sonnet-4-6",
        "display_name": "claude-sonnet-4-6", "created_at": "1970-01-01T00:00:00Z"}));
    assert_eq!((&anthropic["first_id"], &anthropic["last_id"], &anthropic["has_more"]), (&"cheap".into(), &"claude-sonnet-4-6".into(), &false.into()));
    let none = key(Some(vec!["nothing-routed"]));
    assert_eq!(json(&list(&cfg, &none, Shape::Anthropic)), serde_json::json!({"data": [], "has_more": false, "first_id": null, "last_id": null}));
    // Gemini's: only the models a Gemini client can generate on, each once
    // (`google/gemini-2.5-flash` is `gemini-2.5-flash` to it); a model
    // priced with no output (an embedding model) is not one.
    let methods = serde_json::json!(["generateContent", "countTokens"]);
    assert_eq!(
        json(&list(&cfg, &key(None), Shape::Gemini)),
        serde_json::json!({"models": [
            {"name": "models/gemini-2.5-flash", "baseModelId": "gemini-2.5-flash", "displayName": "gemini-2.5-flash", "supportedGenerationMethods": methods},
            {"name": "models/gemini-2.5-pro", "baseModelId": "gemini-2.5-pro", "displayName": "gemini-2.5-pro", "supportedGenerationMethods": methods},
            {"name": "models/gemini-3-pro", "baseModelId": "gemini-3-pro", "displayName": "gemini-3-pro", "supportedGenerationMethods": methods}]})
    );
    let openai = json(&list(&cfg, &key(None), Shape::OpenAi));
    assert!(openai["data"].as_array().unwrap().iter().any(|m| m["id"] == "google/gemini-embedding-001"), "{openai}");
    assert_eq!(json(&list(&cfg, &key(Some(vec!["cheap"])), Shape::Gemini)), serde_json::json!({"models": []}));
}

#[test]
fn one_model_is_answered_when_the_key_may_use_it() {
    let cfg = Config::from_json(CFG.as_bytes()).unwrap();
    // A wildcard's too, never one the key may not use.
    assert_eq!(json(&one(&cfg, &key(None), "openai/gpt-9", Shape::OpenAi).unwrap()),
               serde_json::json!({"id": "openai/gpt-9", "object": "model", "created": 0, "owned_by": "openai"}));
    let e = one(&cfg, &key(Some(vec!["cheap"])), "openai/gpt-9", Shape::Anthropic).unwrap_err();
    assert_eq!((e.status, e.code), (404, "model_not_found"));
    assert_eq!(one(&cfg, &key(None), "nope", Shape::Anthropic).unwrap_err().status, 404);
    // Gemini: read as the generate path is (as it is, or as `google/<id>`).
    let g = json(&one(&cfg, &key(None), "gemini-3-pro", Shape::Gemini).unwrap());
    assert_eq!((&g["name"], &g["baseModelId"]), (&"models/gemini-3-pro".into(), &"gemini-3-pro".into()));
    let only_google = key(Some(vec!["google/*"]));
    assert_eq!(json(&one(&cfg, &only_google, "gemini-2.5-pro", Shape::Gemini).unwrap())["name"], "models/gemini-2.5-pro");
    // A model a Gemini client cannot generate on is not found for it.
    assert_eq!(one(&cfg, &key(None), "cheap", Shape::Gemini).unwrap_err().code, "model_not_found");
    assert_eq!(one(&cfg, &key(None), "bad id", Shape::Gemini).unwrap_err().status, 404);
    // Only an id the generate path takes: `google/*` would route any name, path syntax too.
    for odd in ["../../v1/chat", "%FF", "google/..", ".hidden"] {
        assert_eq!(one(&cfg, &key(None), odd, Shape::Gemini).unwrap_err().status, 404, "{odd}");
    }
    assert_eq!(one(&cfg, &key(None), "gemini-embedding-001", Shape::Gemini).unwrap_err().status, 404, "listed for no Gemini client either");
    assert!(one(&cfg, &key(None), "google/gemini-embedding-001", Shape::OpenAi).is_ok());
}
