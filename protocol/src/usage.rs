//! Normalised token usage of one request (the parsers are the filter's `usage.rs`).

use serde::{Deserialize, Serialize};

/// Normalised usage of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens, including cached reads and cache writes.
    pub input_tokens: u64,
    /// Input tokens served from the provider's prompt cache.
    pub cached_input_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// All output tokens, including reasoning tokens.
    pub output_tokens: u64,
    /// Output tokens spent on reasoning (a subset of `output_tokens`).
    pub reasoning_tokens: u64,
    /// Cache writes kept for one hour (Anthropic; a subset of
    /// `cache_write_tokens`, priced at their own rate).
    #[serde(default)]
    pub cache_write_1h_tokens: u64,
    /// Server-side web searches the provider ran and bills per search.
    #[serde(default)]
    pub web_search_requests: u64,
    /// Hosted file searches the provider ran and bills per call (the
    /// Responses API's `file_search_call` items).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub file_search_calls: u64,
    /// Uncached input tokens of audio, priced at their own rate (OpenAI
    /// `prompt_tokens_details.audio_tokens`; Gemini's `AUDIO` modality in
    /// `promptTokensDetails`; a subset of `input_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_input_tokens: u64,
    /// Uncached input tokens of images, priced at their own rate (OpenAI's
    /// GPT image models: `input_tokens_details.image_tokens` of an image
    /// generation or of the Responses API's `tool_usage.image_gen`; a
    /// subset of `input_tokens`, beside the audio).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub image_input_tokens: u64,
    /// Output tokens of audio (OpenAI `completion_tokens_details.audio_tokens`;
    /// a subset of `output_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_output_tokens: u64,
    /// Output tokens of images (Gemini's `IMAGE` entries of
    /// `candidatesTokensDetails`; a subset of `output_tokens`), priced at
    /// their own rate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub image_output_tokens: u64,
    /// Milliseconds of input audio billed by its length, not in tokens
    /// (OpenAI's `whisper-1`: `usage: {"type": "duration", "seconds": …}`,
    /// or a translation's `duration`), priced per hour of audio.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_input_ms: u64,
    /// Characters of input text billed by the character, not in tokens
    /// (OpenAI's `tts-1` and `tts-1-hd`: the `input` of a speech request,
    /// counted from the request, which the answer, audio, does not report).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_characters: u64,
    /// Code interpreter containers the request had the provider create
    /// (the Responses API's `code_interpreter` tool with `container:
    /// {"type": "auto"}`), in GB of memory: each is billed a session by
    /// its memory (1, 4, 16 or 64 GB), whether or not the model runs code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub container_gb: u64,
    /// The provider's usage said how much input its prompt cache served
    /// (OpenAI `prompt_tokens_details.cached_tokens`, DeepSeek
    /// `prompt_cache_hit_tokens`, Anthropic `cache_read_input_tokens`),
    /// even if 0. A cache hit rate counts only such requests: "0 %" is not
    /// "not reported".
    #[serde(default)]
    pub cache_reported: bool,
}

/// The newer counts are left out of a record when 0: most requests use
/// none of them, and every byte of a record is shipped and stored.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The largest count any usage field may carry (10^12 tokens): far beyond
/// any real request, small enough that sums over millions of records stay
/// inside a signed 64-bit integer. Larger reported values are clamped.
pub const MAX_COUNT: u64 = 1_000_000_000_000;

impl Usage {
    /// The budget amount of a request's usage in tokens: input + output.
    pub fn budget_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Every count clamped to [`MAX_COUNT`] and made consistent (subsets
    /// never exceed their totals).
    pub fn bounded(mut self) -> Usage {
        for v in [
            &mut self.input_tokens,
            &mut self.cached_input_tokens,
            &mut self.cache_write_tokens,
            &mut self.output_tokens,
            &mut self.reasoning_tokens,
            &mut self.cache_write_1h_tokens,
            &mut self.web_search_requests,
            &mut self.file_search_calls,
            &mut self.audio_input_tokens,
            &mut self.image_input_tokens,
            &mut self.audio_output_tokens,
            &mut self.image_output_tokens,
            &mut self.audio_input_ms,
            &mut self.input_characters,
            &mut self.container_gb,
        ] {
            *v = (*v).min(MAX_COUNT);
        }
        self.cached_input_tokens = self.cached_input_tokens.min(self.input_tokens);
        self.cache_write_tokens = self.cache_write_tokens.min(self.input_tokens - self.cached_input_tokens);
        self.cache_write_1h_tokens = self.cache_write_1h_tokens.min(self.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.min(self.output_tokens);
        self.audio_input_tokens = self.audio_input_tokens.min(self.input_tokens - self.cached_input_tokens - self.cache_write_tokens);
        self.image_input_tokens =
            self.image_input_tokens.min(self.input_tokens - self.cached_input_tokens - self.cache_write_tokens - self.audio_input_tokens);
        self.audio_output_tokens = self.audio_output_tokens.min(self.output_tokens);
        self.image_output_tokens = self.image_output_tokens.min(self.output_tokens - self.audio_output_tokens);
        self
    }
}
