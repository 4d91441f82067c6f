//! The client-facing APIs Tollgate understands.

use serde::{Deserialize, Serialize};

/// The client-facing API of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /v1/chat/completions`
    #[serde(rename = "openai_chat")]
    OpenAiChat,
    /// `POST /v1/messages`
    AnthropicMessages,
}

impl Api {
    /// The path suffix below a provider's `path_prefix`.
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Api::OpenAiChat => "/chat/completions",
            Api::AnthropicMessages => "/messages",
        }
    }
}
