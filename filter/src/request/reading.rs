//! A request body's members read one by one into what the gateway needs
//! to route, bound and price it ([`super::parse_chat_for`]): one arm per
//! member a format gives meaning, the longer readings in functions below.

use super::{
    audio, bad, context_id, estimate_tokens, images, server_tools, speech, stream_options_usage, text_member, unknown_value,
    valid_model_name, Api, ChatRequest, Members, GEMINI_CONFIG, GEMINI_CONFIG_PROTO, GEMINI_TIER, GEMINI_TIER_PROTO, MAX_CHOICES,
};
use crate::errors::GatewayError;
use crate::pricing::Premium;
use tollgate_protocol::record::{InferenceGeo, ServiceTier};

/// What the members read so far say.
pub(super) struct Reading {
    api: Api,
    model: Option<String>,
    stream: bool,
    max_tokens: Option<u64>,
    choices: u64,
    user: Option<String>,
    include_usage: bool,
    prompt_bytes: usize,
    json: Option<crate::jsonfix::JsonAsk>,
    names_prompt: bool,
    saw_generation_config: bool,
    saw_gemini_tier: bool,
    continues: Option<String>,
    conversation: bool,
    background: bool,
    stored: bool,
    premium: Premium,
    server_tools: server_tools::ServerTools,
    max_tool_calls: Option<u64>,
    server_fallbacks: bool,
    image: images::ImageAsk,
    edited: images::EditInputs,
    input_audio_ms: u64,
    speech: speech::Speech,
}

impl Reading {
    pub(super) fn new(api: Api) -> Self {
        Reading {
            api,
            model: None,
            stream: false,
            max_tokens: None,
            choices: 1,
            user: None,
            include_usage: false,
            prompt_bytes: 0,
            json: None,
            names_prompt: false,
            saw_generation_config: false,
            saw_gemini_tier: false,
            continues: None,
            conversation: false,
            background: false,
            stored: api == Api::OpenAiResponses,
            premium: Premium::default(),
            server_tools: server_tools::ServerTools::default(),
            max_tool_calls: None,
            server_fallbacks: false,
            image: images::ImageAsk::default(),
            edited: images::EditInputs::default(),
            input_audio_ms: 0,
            speech: speech::Speech::default(),
        }
    }

    /// Reads member `k` (its JSON text `raw`).
    pub(super) fn member(&mut self, k: &str, raw: &str) -> Result<(), GatewayError> {
        let api = self.api;
        // Every member counts towards the input estimate, not only the
        // messages: providers bill what they read as input, and that
        // includes a structured output's JSON schema (`response_format`,
        // the Responses API's `text.format`, Anthropic's `output_config`),
        // a `prediction`, `tool_choice`… A schema left out let a request
        // reserve far less than it cost. (The scalars counted with them add
        // a few tokens.)
        self.prompt_bytes = self.prompt_bytes.saturating_add(raw.len());
        match k {
            "model" => match serde_json::from_str::<String>(raw) {
                Ok(m) if valid_model_name(&m) => self.model = Some(m),
                _ => return Err(bad("invalid_model", "'model' must be a string of 1 to 256 visible ASCII characters.").with_param("model")),
            },
            "stream" => self.stream = flag(raw, "stream")?,
            cap if api.cap_members().contains(&cap) => match serde_json::from_str::<Option<u64>>(raw) {
                Ok(Some(n)) => self.max_tokens = Some(self.max_tokens.map_or(n, |m: u64| m.max(n))),
                Ok(None) => {}
                Err(_) => {
                    let param = api.cap_members().iter().copied().find(|m| *m == cap).unwrap_or("max_tokens");
                    return Err(bad("invalid_type", format!("'{cap}' must be a non-negative integer.")).with_param(param));
                }
            },
            "n" if matches!(api, Api::OpenAiChat | Api::OpenAiCompletions) => self.choices = self.choices.max(count(raw, "n")?),
            // Image generations and edits: `n` images, each reserved by its quality and size.
            "n" if api.makes_images() => self.choices = images::images(raw)?,
            "quality" if api.makes_images() => self.image.quality(raw)?,
            "size" if api.makes_images() => self.image.size(raw)?,
            "partial_images" if api.makes_images() => self.image.partial_images(raw)?,
            "output_format" if api.makes_images() => self.image.output_format(raw),
            "frame_count" if api.makes_images() => self.image.frame_count(raw)?,
            // An edit's images are priced as image input, not as the text of their bytes.
            "images" | "mask" | "markup" if api == Api::OpenAiImageEdits => {
                self.prompt_bytes = self.prompt_bytes.saturating_sub(raw.len());
                self.edited.input(k, raw)?;
            }
            "input_fidelity" if api == Api::OpenAiImageEdits => self.edited.fidelity(raw)?,
            "file" if api.hears() => {
                self.input_audio_ms = heard_ms(raw)?;
                // (The audio is counted as audio, not as the text of its reading.)
                self.prompt_bytes = self.prompt_bytes.saturating_sub(raw.len());
            }
            "input" if api.speaks() => self.speech.input(raw)?,
            "speed" if api.speaks() => self.speech.speed(raw)?,
            "response_format" if api.speaks() => self.speech.format(raw),
            "stream_format" if api.speaks() => self.speech.stream_format(raw)?,
            // Legacy completions generate `best_of` candidates server-side and bill them all.
            "best_of" if api == Api::OpenAiCompletions => self.choices = self.choices.max(count(raw, "best_of")?),
            // A background response answers "queued" and runs on at the
            // provider: it is charged when a read shows it ended ([`crate::background`]).
            "background" if api == Api::OpenAiResponses => self.background = flag(raw, "background")?,
            // (The provider refuses a wrong one; read here only to find its context.)
            "previous_response_id" | "conversation" if api == Api::OpenAiResponses => {
                self.continues = self.continues.take().or_else(|| context_id(raw));
                self.conversation |= k == "conversation" && raw != "null";
            }
            // What the provider prices apart from standard: the tier (and,
            // Anthropic, the geography) asked for is the price the request is
            // reserved and charged at (before: priced standard, so a request
            // could spend up to six times what its budget counted). A value
            // the gateway does not know the price of is refused: the
            // provider would refuse one it does not know either.
            "service_tier" if matches!(api, Api::OpenAiChat | Api::OpenAiResponses | Api::OpenAiCompletions) => self.premium.tier = openai_tier(raw)?,
            GEMINI_TIER | GEMINI_TIER_PROTO if api == Api::GeminiGenerateContent => self.gemini_tier(raw)?,
            "speed" if api == Api::AnthropicMessages => self.premium.tier = anthropic_speed(raw)?,
            "inference_geo" if api == Api::AnthropicMessages => self.premium.geo = anthropic_geo(raw)?,
            "tools" if matches!(api, Api::AnthropicMessages | Api::OpenAiResponses) => {
                self.server_tools = server_tools::read(raw).map_err(|dup| {
                    bad("duplicate_key", format!("A tool in 'tools' names a field twice ({}): send it once.", crate::text::clean_field(&dup, 120))).with_param("tools")
                })?;
            }
            "tools" if api == Api::GeminiGenerateContent => self.server_tools = server_tools::read_gemini(raw),
            // Anthropic's server-side fallbacks: other models serve the turn.
            "fallbacks" if api == Api::AnthropicMessages => {
                let chain = serde_json::from_str::<Option<Vec<serde::de::IgnoredAny>>>(raw);
                self.server_fallbacks = !chain.is_ok_and(|c| c.is_none_or(|v| v.is_empty()));
            }
            // (The provider refuses a wrong one: read as no bound.)
            "max_tool_calls" if api == Api::OpenAiResponses => self.max_tool_calls = serde_json::from_str::<Option<u64>>(raw).ok().flatten(),
            "store" if api == Api::OpenAiResponses => self.stored = serde_json::from_str::<Option<bool>>(raw).ok().flatten() != Some(false),
            "user" => self.user = serde_json::from_str::<Option<String>>(raw).ok().flatten(),
            "response_format" if api == Api::OpenAiChat => self.json = crate::jsonfix::ask_of(raw),
            crate::prompts::MEMBER => self.names_prompt = true,
            "metadata" if api == Api::AnthropicMessages => self.user = metadata_user(raw).or(self.user.take()),
            "stream_options" => self.include_usage = stream_options_usage(raw)?,
            GEMINI_CONFIG | GEMINI_CONFIG_PROTO if api == Api::GeminiGenerateContent => self.generation_config(raw)?,
            _ => {}
        }
        Ok(())
    }

    /// Gemini's Priority (1.75-2 x) and Flex (0.5 x), by its JSON or its
    /// proto name (ai.google.dev/gemini-api/docs/priority-inference,
    /// flex-inference): priced at `priority_percent` / `flex_percent`.
    fn gemini_tier(&mut self, raw: &str) -> Result<(), GatewayError> {
        if std::mem::replace(&mut self.saw_gemini_tier, true) {
            return Err(bad("duplicate_key", format!("'{GEMINI_TIER}' and '{GEMINI_TIER_PROTO}' name the same field: send one.")).with_param(GEMINI_TIER));
        }
        self.premium.tier = match text_member(raw, GEMINI_TIER)? {
            None => None,
            Some(t) => crate::served::gemini_tier(t.as_bytes()).ok_or_else(|| unknown_value(GEMINI_TIER, "standard, flex, priority"))?,
        };
        Ok(())
    }

    /// Gemini reads JSON as protobuf does: a field by its JSON name or its
    /// proto name (`generation_config`, `max_output_tokens`). Both read
    /// here, so a cap or a candidate count under the other spelling is
    /// neither missed (reserved as if absent, and a second cap added beside
    /// it) nor given twice.
    fn generation_config(&mut self, raw: &str) -> Result<(), GatewayError> {
        if std::mem::replace(&mut self.saw_generation_config, true) {
            return Err(bad("duplicate_key", format!("'{GEMINI_CONFIG}' and '{GEMINI_CONFIG_PROTO}' name the same field: send one.")).with_param(GEMINI_CONFIG));
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Gc {
            #[serde(alias = "max_output_tokens")]
            max_output_tokens: Option<u64>,
            #[serde(alias = "candidate_count")]
            candidate_count: Option<u64>,
        }
        let gc = match serde_json::from_str::<Option<Gc>>(raw) {
            Ok(gc) => gc.unwrap_or_default(),
            Err(e) if e.to_string().starts_with("duplicate field") => {
                return Err(bad("duplicate_key", format!("'{GEMINI_CONFIG}' names a field twice ({}): send one.", crate::text::clean_field(&e.to_string(), 120))).with_param(GEMINI_CONFIG))
            }
            Err(_) => return Err(bad("invalid_type", "'generationConfig' must be an object with integer counts.").with_param(GEMINI_CONFIG)),
        };
        self.max_tokens = gc.max_output_tokens;
        match gc.candidate_count {
            Some(n) if (1..=MAX_CHOICES).contains(&n) => self.choices = n,
            None => {}
            Some(_) => return Err(bad("invalid_type", "'generationConfig.candidateCount' must be an integer from 1 to 128.").with_param("generationConfig")),
        }
        Ok(())
    }

    /// The request the members make, once all are read (`model_in_path`:
    /// the caller names the model).
    pub(super) fn finish(self, members: &Members<'_>, model_in_path: bool) -> Result<ChatRequest, GatewayError> {
        let api = self.api;
        // Gemini and an Azure deployment name the model in the path: the caller sets it.
        let model = match self.model {
            Some(m) => m,
            None if model_in_path => String::new(),
            None => return Err(bad("missing_model", "The request has no 'model'; name the model to use.").with_param("model")),
        };
        if let Some((required, code)) = required(api).iter().find(|(r, _)| !members.0.iter().any(|(k, _)| k == r)) {
            return Err(bad(code, format!("The request has no '{required}'.")).with_param(required));
        }
        let user = self.user.map(|u| crate::text::clean_field(&u, 256));
        let mut max_tokens = self.max_tokens;
        let mut stream = self.stream;
        // An image's tokens cannot be capped: the request's own ask is its bound.
        if api.makes_images() {
            max_tokens = Some(self.image.tokens_per_image(stream));
        }
        let input_image_tokens = if api == Api::OpenAiImageEdits { self.edited.tokens(&model)? } else { 0 };
        // Nor can a transcript's: its audio's length bounds it.
        if api.hears() {
            max_tokens = Some(audio::output_tokens(self.input_audio_ms));
        }
        // Nor speech: its text bounds it. It streams events only when asked
        // by `stream_format` (it has no `stream`: the provider refuses one).
        let speech = api.speaks().then_some(self.speech);
        if let Some(s) = &speech {
            max_tokens = Some(s.output_bound());
            stream = s.sse;
        }
        let tools = self.server_tools;
        Ok(ChatRequest {
            model,
            // Embeddings have no streams (the provider refuses the member).
            stream: stream && api.has_output(),
            max_tokens,
            choices: self.choices,
            user,
            client_include_usage: stream && self.include_usage,
            prompt_bytes: self.prompt_bytes,
            estimated_input_tokens: estimate_tokens(self.prompt_bytes as u64),
            api,
            json: self.json,
            names_prompt: self.names_prompt,
            continues: self.continues,
            conversation: self.conversation,
            background: self.background,
            stored: self.stored,
            premium: self.premium,
            reserved_searches: server_tools::reserved(api, &tools, self.max_tool_calls),
            sampling_calls: server_tools::sampling_calls(api, &tools),
            server_fallbacks: self.server_fallbacks,
            // (Only Anthropic's Messages API has it.)
            advisor: tools.advisor.filter(|_| api == Api::AnthropicMessages),
            image_tool: tools.image_tool.filter(|_| api == Api::OpenAiResponses),
            container_gb: if api == Api::OpenAiResponses { tools.container_gb } else { 0 },
            max_tool_calls: self.max_tool_calls,
            input_image_tokens,
            input_audio_ms: self.input_audio_ms,
            speech,
        })
    }
}

/// The members a request of `api` must have, and the error code of each
/// one missing. The Responses API may take its input from a stored prompt
/// or a previous response.
fn required(api: Api) -> &'static [(&'static str, &'static str)] {
    match api {
        Api::OpenAiEmbeddings | Api::OpenAiModerations | Api::OpenAiSpeech => &[("input", "missing_input")],
        Api::OpenAiCompletions | Api::OpenAiImages | Api::OpenAiImageEdits => &[("prompt", "missing_prompt")],
        Api::OpenAiChat | Api::AnthropicMessages => &[("messages", "missing_messages")],
        Api::OpenAiTranscriptions | Api::OpenAiTranslations => &[("file", "missing_file")],
        // A decision asks questions (1 to 400: the provider counts them) about its input.
        Api::OpenAiDecisions => &[("input", "missing_input"), ("questions", "missing_questions")],
        // (Which member depends on the method: see `check_gemini`.)
        Api::OpenAiResponses | Api::GeminiEmbedContent | Api::GeminiGenerateContent => &[],
    }
}

/// A boolean member (`null`: false).
fn flag(raw: &str, name: &'static str) -> Result<bool, GatewayError> {
    match serde_json::from_str::<Option<bool>>(raw) {
        Ok(b) => Ok(b.unwrap_or(false)),
        Err(_) => Err(bad("invalid_type", format!("'{name}' must be a boolean.")).with_param(name)),
    }
}

/// A count of answers generated (`n`, `best_of`): 1 to 128 (`null`: 1).
fn count(raw: &str, name: &'static str) -> Result<u64, GatewayError> {
    match serde_json::from_str::<Option<u64>>(raw) {
        Ok(Some(n)) if (1..=MAX_CHOICES).contains(&n) => Ok(n),
        Ok(None) => Ok(1),
        _ => Err(bad("invalid_type", format!("'{name}' must be an integer from 1 to 128.")).with_param(name)),
    }
}

/// The length of an uploaded audio file, as the form's reading gives it:
/// `{"upload": bytes, "ms": length, …}`.
fn heard_ms(raw: &str) -> Result<u64, GatewayError> {
    #[derive(serde::Deserialize)]
    struct Heard {
        ms: u64,
    }
    serde_json::from_str::<Heard>(raw).map(|h| h.ms).map_err(|_| bad("invalid_type", "'file' must be an uploaded audio file.").with_param("file"))
}

/// OpenAI's `service_tier`, as it is priced.
fn openai_tier(raw: &str) -> Result<Option<ServiceTier>, GatewayError> {
    match text_member(raw, "service_tier")?.as_deref() {
        None | Some("auto" | "default" | "scale") => Ok(None),
        Some("priority" | "fast") => Ok(Some(ServiceTier::Priority)),
        Some("ultrafast") => Ok(Some(ServiceTier::Ultrafast)),
        Some("flex") => Ok(Some(ServiceTier::Flex)),
        Some(_) => Err(unknown_value("service_tier", "auto, default, flex, priority, fast, ultrafast, scale")),
    }
}

/// Anthropic's `speed`.
fn anthropic_speed(raw: &str) -> Result<Option<ServiceTier>, GatewayError> {
    match text_member(raw, "speed")?.as_deref() {
        None | Some("standard") => Ok(None),
        Some("fast") => Ok(Some(ServiceTier::Fast)),
        Some(_) => Err(unknown_value("speed", "standard, fast")),
    }
}

/// Anthropic's `inference_geo`.
fn anthropic_geo(raw: &str) -> Result<Option<InferenceGeo>, GatewayError> {
    match text_member(raw, "inference_geo")?.as_deref() {
        None | Some("global") => Ok(None),
        Some("us") => Ok(Some(InferenceGeo::Us)),
        Some(_) => Err(unknown_value("inference_geo", "global, us")),
    }
}

/// Anthropic's `metadata.user_id`, the end user a request is for.
fn metadata_user(raw: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        user_id: Option<String>,
    }
    serde_json::from_str::<Option<Meta>>(raw).ok().flatten().and_then(|m| m.user_id)
}
