//! What the integration tests over tests/captures share: the recorded
//! answers and the name each gives its API.

#![allow(dead_code)] // each test crate uses part of it

use tollgate_filter::request::Api;

/// tests/captures/recorded_answers.jsonl: one recorded answer a line, with
/// its `api` and its `json` body or `sse` stream (sources in that folder's README).
pub const RECORDED_ANSWERS: &str = include_str!("../../../tests/captures/recorded_answers.jsonl");

/// The API a recorded answer names.
#[allow(clippy::panic)] // a test helper: an unknown name is a broken capture
pub fn api_of(name: &str) -> Api {
    match name {
        "anthropic_messages" => Api::AnthropicMessages,
        "openai_chat" => Api::OpenAiChat,
        "openai_responses" => Api::OpenAiResponses,
        "gemini" => Api::GeminiGenerateContent,
        other => panic!("a recorded answer of an unknown api: {other}"),
    }
}
