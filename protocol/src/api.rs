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
    /// `POST /v1/embeddings` (OpenAI format): input tokens only.
    #[serde(rename = "openai_embeddings")]
    OpenAiEmbeddings,
    /// `POST /v1/completions`, OpenAI's legacy text completions (`prompt`).
    #[serde(rename = "openai_completions")]
    OpenAiCompletions,
    /// `POST /v1/responses`, OpenAI's Responses API.
    #[serde(rename = "openai_responses")]
    OpenAiResponses,
    /// Google Gemini's native `POST /v1beta/models/{model}:generateContent`
    /// (and `:streamGenerateContent`): the model is in the path.
    #[serde(rename = "gemini_generate_content")]
    GeminiGenerateContent,
    /// Gemini's native `POST /v1beta/models/{model}:embedContent` and
    /// `:batchEmbedContents` (google-genai's `embed_content`): input tokens
    /// only, the model in the path.
    #[serde(rename = "gemini_embed_content")]
    GeminiEmbedContent,
    /// `POST /v1/moderations`, OpenAI's moderation classifier: free, so
    /// recorded only when the guardrails stop one (the audit sees it).
    #[serde(rename = "openai_moderations")]
    OpenAiModerations,
    /// `POST /v1/images/generations`, OpenAI's GPT image models: priced
    /// from the answer's token usage (its image output tokens at their own
    /// rate), reserved by the images asked for ([`Api::has_output`]).
    #[serde(rename = "openai_images")]
    OpenAiImages,
    /// `POST /v1/images/edits`, OpenAI's GPT image models editing the
    /// images sent (multipart files, or JSON references): priced as image
    /// generations are, the input images at the image input rate.
    #[serde(rename = "openai_image_edits")]
    OpenAiImageEdits,
    /// `POST /v1/audio/transcriptions`, OpenAI's speech to text (a
    /// multipart upload of the audio): priced from the answer's usage,
    /// tokens (`gpt-4o-transcribe`) or seconds of audio (`whisper-1`),
    /// reserved by the audio's length.
    #[serde(rename = "openai_audio_transcriptions")]
    OpenAiTranscriptions,
    /// `POST /v1/audio/translations`, OpenAI's speech to English text
    /// (`whisper-1`): priced by the audio's seconds.
    #[serde(rename = "openai_audio_translations")]
    OpenAiTranslations,
    /// `POST /v1/audio/speech`, OpenAI's text to speech: `tts-1` and
    /// `tts-1-hd` bill the input's characters, `gpt-4o-mini-tts` its text
    /// tokens and the audio tokens it speaks. The answer is the audio
    /// itself (no usage) or, with `stream_format: "sse"`, events whose
    /// last carries the usage.
    #[serde(rename = "openai_audio_speech")]
    OpenAiSpeech,
    /// `POST /v1/decisions`, OpenAI's Decisions API (GPT-6 Luna): typed
    /// answers (predicate, choice, score) to questions about an input,
    /// not text. Billed by its input tokens alone, every one at the
    /// input rate: no output, cache-read or cache-write charges.
    #[serde(rename = "openai_decisions")]
    OpenAiDecisions,
}

impl Api {
    /// The path suffix below a provider's `path_prefix`.
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Api::OpenAiChat => "/chat/completions",
            Api::AnthropicMessages => "/messages",
            Api::OpenAiEmbeddings => "/embeddings",
            Api::OpenAiCompletions => "/completions",
            Api::OpenAiResponses => "/responses",
            Api::OpenAiModerations => "/moderations",
            Api::OpenAiImages => "/images/generations",
            Api::OpenAiImageEdits => "/images/edits",
            Api::OpenAiTranscriptions => "/audio/transcriptions",
            Api::OpenAiTranslations => "/audio/translations",
            Api::OpenAiSpeech => "/audio/speech",
            Api::OpenAiDecisions => "/decisions",
            // The model and the method are part of the path (see the filter's route planning).
            Api::GeminiGenerateContent | Api::GeminiEmbedContent => "/models",
        }
    }

    /// Whether the API is Anthropic's (its usage, errors and streams differ).
    pub fn is_anthropic(self) -> bool {
        self == Api::AnthropicMessages
    }

    /// Whether a request produces output tokens (embeddings and
    /// moderations do not).
    pub fn has_output(self) -> bool {
        !self.embeds() && !matches!(self, Api::OpenAiModerations | Api::OpenAiDecisions)
    }

    /// Whether the API makes embeddings (input tokens only, never streamed).
    pub fn embeds(self) -> bool {
        matches!(self, Api::OpenAiEmbeddings | Api::GeminiEmbedContent)
    }

    /// Whether the API makes images (generations and edits): priced from
    /// the answer's image tokens, reserved by the images asked for.
    pub fn makes_images(self) -> bool {
        matches!(self, Api::OpenAiImages | Api::OpenAiImageEdits)
    }

    /// Whether the API turns uploaded audio into text (transcriptions and
    /// translations): a form only, reserved by the audio's length.
    pub fn hears(self) -> bool {
        matches!(self, Api::OpenAiTranscriptions | Api::OpenAiTranslations)
    }

    /// Whether the API speaks text aloud (its answer is audio, not text).
    pub fn speaks(self) -> bool {
        self == Api::OpenAiSpeech
    }

    /// Whether a request may be a `multipart/form-data` upload (image
    /// edits may be JSON too; audio is a form only).
    pub fn takes_forms(self) -> bool {
        self == Api::OpenAiImageEdits || self.hears()
    }

    /// Whether the API is Gemini's native one (the model in the path).
    pub fn is_gemini(self) -> bool {
        matches!(self, Api::GeminiGenerateContent | Api::GeminiEmbedContent)
    }

    /// What the API is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Api::OpenAiChat => "OpenAI chat completions",
            Api::AnthropicMessages => "Anthropic messages",
            Api::OpenAiEmbeddings => "OpenAI embeddings",
            Api::OpenAiCompletions => "OpenAI completions",
            Api::OpenAiResponses => "OpenAI responses",
            Api::GeminiGenerateContent => "Gemini generateContent",
            Api::GeminiEmbedContent => "Gemini embedContent",
            Api::OpenAiModerations => "OpenAI moderations",
            Api::OpenAiImages => "OpenAI image generations",
            Api::OpenAiImageEdits => "OpenAI image edits",
            Api::OpenAiTranscriptions => "OpenAI audio transcriptions",
            Api::OpenAiTranslations => "OpenAI audio translations",
            Api::OpenAiSpeech => "OpenAI audio speech",
            Api::OpenAiDecisions => "OpenAI decisions",
        }
    }

    /// The top-level members that cap output in this API's requests (Gemini's
    /// cap is inside `generationConfig`). A member of another API is not a
    /// cap here: a provider may ignore it (DeepSeek ignores
    /// `max_completion_tokens`), so it cannot bound a reservation.
    pub fn cap_members(self) -> &'static [&'static str] {
        match self {
            Api::OpenAiChat => &["max_tokens", "max_completion_tokens"],
            Api::AnthropicMessages | Api::OpenAiCompletions => &["max_tokens"],
            Api::OpenAiResponses => &["max_output_tokens"],
            Api::OpenAiEmbeddings | Api::GeminiGenerateContent | Api::GeminiEmbedContent | Api::OpenAiModerations | Api::OpenAiImages | Api::OpenAiImageEdits | Api::OpenAiTranscriptions | Api::OpenAiTranslations | Api::OpenAiSpeech | Api::OpenAiDecisions => &[],
        }
    }

    /// The member that caps output in this API, where it differs from the
    /// provider's chat setting (`output_cap_field`).
    pub fn output_cap_field(self) -> Option<&'static str> {
        match self {
            Api::OpenAiResponses => Some("max_output_tokens"),
            _ => None,
        }
    }

    /// The output cap the provider applies when a request names none, if
    /// the API has one (legacy completions: 16 tokens). Where it has none,
    /// the gateway sends its own cap so the reservation is a real bound.
    pub fn default_max_tokens(self) -> Option<u64> {
        match self {
            Api::OpenAiCompletions => Some(16),
            _ => None,
        }
    }
}
