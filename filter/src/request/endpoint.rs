//! Which endpoint a request path names: the gateway's own paths, their
//! Azure OpenAI and Gemini OpenAI-compatible forms, the models API; and
//! the query string a path sends upstream (never the client's key, nor an
//! Azure client's `api-version`).

use super::Api;

/// What a request path is, for the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat(Api),
    /// `GET /v1/models` (Gemini's `/v1beta/models` too): answered by the
    /// gateway from its route table ([`crate::models`]).
    Models,
    /// `GET /v1/models/{id}` (or `/v1beta/models/{id}`): one model, from
    /// the route table too.
    Model,
    /// `POST /v1/messages/count_tokens`: Anthropic's token counting, free,
    /// passed to the provider that would serve the messages request; or
    /// Gemini's (`…/models/{model}:countTokens`) or the Responses API's
    /// (`/v1/responses/input_tokens`), the API named.
    CountTokens(Api),
    /// `POST /v1/moderations`: OpenAI's moderation classifier, free: routed
    /// like a count (the key's models, the guardrails, the provider's key),
    /// neither priced nor recorded, its answer passed on as it came.
    Moderations,
    /// `POST /v1/responses/compact`: the Responses API's conversation
    /// compaction (Codex's remote compaction), billed like a response:
    /// routed to an OpenAI-format provider's Responses API only, nothing
    /// added (it takes no output cap), never streamed or sent to fallbacks.
    Compact,
    /// A stored response or conversation ([`crate::objects`]): free, sent
    /// with the provider's key to the `stored_objects` provider; without
    /// one, an other path.
    Stored(crate::objects::Object),
    /// A path that is none of these as written but one of them once a
    /// server normalises it (`//`, `.`/`..` segments, percent escapes,
    /// `;params`, backslashes, letter case): refused, so that with
    /// `other_paths: pass` a provider that normalises paths cannot be
    /// reached around the key check and the accounting.
    Disguised,
    Other,
}

/// Classifies a `:path` (the query string is ignored).
pub fn classify_path(path: &str) -> Endpoint {
    let p = path.split(['?', '#']).next().unwrap_or("");
    match exact_endpoint(p.strip_suffix('/').unwrap_or(p)) {
        Endpoint::Other if super::path::disguises_endpoint(p, exact_endpoint) => Endpoint::Disguised,
        e => e,
    }
}

/// Azure OpenAI's paths, as the `AzureOpenAI` clients of the OpenAI SDKs
/// send them with the gateway as their `azure_endpoint`:
/// `/openai/deployments/{deployment}/chat/completions` (and `completions`,
/// `embeddings`, `images/generations`, `images/edits`, `audio/transcriptions`,
/// `audio/translations`, `audio/speech`), the deployment naming the model; `/openai/responses`,
/// `/openai/models`, `/openai/decisions`; and Azure's v1 API, `/openai/v1/…` (an OpenAI client
/// whose base URL ends `/openai/v1`). Each is served as the OpenAI path it
/// stands for.
fn azure_endpoint(p: &str) -> Option<Endpoint> {
    let rest = p.strip_prefix("/openai")?;
    if let Some(d) = rest.strip_prefix("/deployments/") {
        return Some(deployment_call(d).map_or(Endpoint::Other, |(_, api)| Endpoint::Chat(api)));
    }
    let rest = rest.strip_prefix("/v1").unwrap_or(rest);
    Some(match rest {
        "/chat/completions" => Endpoint::Chat(Api::OpenAiChat),
        "/completions" => Endpoint::Chat(Api::OpenAiCompletions),
        "/embeddings" => Endpoint::Chat(Api::OpenAiEmbeddings),
        "/images/generations" => Endpoint::Chat(Api::OpenAiImages),
        "/images/edits" => Endpoint::Chat(Api::OpenAiImageEdits),
        "/audio/transcriptions" => Endpoint::Chat(Api::OpenAiTranscriptions),
        "/audio/translations" => Endpoint::Chat(Api::OpenAiTranslations),
        "/audio/speech" => Endpoint::Chat(Api::OpenAiSpeech),
        "/responses" => Endpoint::Chat(Api::OpenAiResponses),
        "/decisions" => Endpoint::Chat(Api::OpenAiDecisions),
        "/responses/input_tokens" => Endpoint::CountTokens(Api::OpenAiResponses),
        "/responses/compact" => Endpoint::Compact,
        "/models" => Endpoint::Models,
        _ if model_id_after(rest).is_some() => Endpoint::Model,
        _ => crate::objects::locate(p).map_or(Endpoint::Other, |(o, _)| Endpoint::Stored(o)),
    })
}

/// The deployment an Azure OpenAI path names (`/openai/deployments/{d}/…`):
/// the model the request runs, whatever its body says (Azure runs the
/// deployment; its SDK sends the deployment as the body's `model` too,
/// and percent-encodes it in the path: `openai%2Fgpt-5.4`). Decoded; a
/// segment that is not UTF-8 once decoded is kept as sent (and refused
/// as no model name).
pub fn azure_deployment(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    let p = path.split(['?', '#']).next().unwrap_or("");
    let (d, _) = deployment_call(p.strip_prefix("/openai/deployments/")?)?;
    Some(percent_encoding::percent_decode_str(d).decode_utf8().unwrap_or(std::borrow::Cow::Borrowed(d)))
}

/// `{deployment}/{call}` split at the call it ends with: a route's model
/// may hold a `/` that a client did not escape (the Vercel AI SDK's Azure
/// provider sends `deployments/openai/gpt-5.4/chat/completions`), which
/// Azure's own deployment names never do.
fn deployment_call(rest: &str) -> Option<(&str, Api)> {
    [
        ("/chat/completions", Api::OpenAiChat),
        ("/completions", Api::OpenAiCompletions),
        ("/embeddings", Api::OpenAiEmbeddings),
        ("/images/generations", Api::OpenAiImages),
        ("/images/edits", Api::OpenAiImageEdits),
        ("/audio/transcriptions", Api::OpenAiTranscriptions),
        ("/audio/translations", Api::OpenAiTranslations),
        ("/audio/speech", Api::OpenAiSpeech),
    ]
        .into_iter()
        .find_map(|(call, api)| rest.strip_suffix(call).map(|d| (d, api)))
        // (`…/chat/completions` ends with `/completions` too: the longest call first, and a deployment named.)
        .filter(|(d, _)| !d.is_empty() && !d.ends_with('/'))
}

/// Whether a path is one of Azure OpenAI's (`/openai/…`): its `api-version`
/// query parameter is Azure's and goes to no provider ([`upstream_query`]).
fn is_azure(path: &str) -> bool {
    path.starts_with("/openai/")
}

/// `/models/{id}` (one segment) after an Azure or Gemini-compatible prefix.
fn model_id_after(rest: &str) -> Option<&str> {
    rest.strip_prefix("/models/").filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Gemini's OpenAI-compatible endpoint (`/v1beta/openai/…`, what an
/// OpenAI client whose base URL was Google's sends, as it reaches an Envoy
/// in the mesh unchanged): its chat, embeddings and models, served as the
/// OpenAI paths they stand for (Google documents these three).
fn gemini_compat_endpoint(p: &str) -> Option<Endpoint> {
    Some(match p.strip_prefix("/v1beta/openai")? {
        "/chat/completions" => Endpoint::Chat(Api::OpenAiChat),
        "/embeddings" => Endpoint::Chat(Api::OpenAiEmbeddings),
        "/models" => Endpoint::Models,
        rest if model_id_after(rest).is_some() => Endpoint::Model,
        _ => Endpoint::Other,
    })
}

fn exact_endpoint(p: &str) -> Endpoint {
    if let Some(e) = azure_endpoint(p).or_else(|| gemini_compat_endpoint(p)) {
        return e;
    }
    match p {
        "/v1/chat/completions" | "/chat/completions" => Endpoint::Chat(Api::OpenAiChat),
        "/v1/messages" => Endpoint::Chat(Api::AnthropicMessages),
        "/v1/messages/count_tokens" => Endpoint::CountTokens(Api::AnthropicMessages),
        "/v1/embeddings" | "/embeddings" => Endpoint::Chat(Api::OpenAiEmbeddings),
        "/v1/completions" | "/completions" => Endpoint::Chat(Api::OpenAiCompletions),
        "/v1/images/generations" | "/images/generations" => Endpoint::Chat(Api::OpenAiImages),
        "/v1/images/edits" | "/images/edits" => Endpoint::Chat(Api::OpenAiImageEdits),
        "/v1/audio/transcriptions" | "/audio/transcriptions" => Endpoint::Chat(Api::OpenAiTranscriptions),
        "/v1/audio/translations" | "/audio/translations" => Endpoint::Chat(Api::OpenAiTranslations),
        "/v1/audio/speech" | "/audio/speech" => Endpoint::Chat(Api::OpenAiSpeech),
        "/v1/decisions" | "/decisions" => Endpoint::Chat(Api::OpenAiDecisions),
        "/v1/responses" | "/responses" => Endpoint::Chat(Api::OpenAiResponses),
        "/v1/responses/input_tokens" | "/responses/input_tokens" => Endpoint::CountTokens(Api::OpenAiResponses),
        "/v1/responses/compact" | "/responses/compact" => Endpoint::Compact,
        "/v1/models" | "/models" | "/v1beta/models" => Endpoint::Models,
        "/v1/moderations" | "/moderations" => Endpoint::Moderations,
        _ => match crate::gemini::path_method(p) {
            Some((_, crate::gemini::Method::CountTokens)) => Endpoint::CountTokens(Api::GeminiGenerateContent),
            Some((_, m)) if m.embeds() => Endpoint::Chat(Api::GeminiEmbedContent),
            Some(_) => Endpoint::Chat(Api::GeminiGenerateContent),
            None if model_path_id(p).is_some() => Endpoint::Model,
            None => crate::objects::locate(p).map_or(Endpoint::Other, |(o, _)| Endpoint::Stored(o)),
        },
    }
}

/// The model id of `/v1/models/{id}` or Gemini's `/v1beta/models/{id}`
/// (google-genai's `models.get`) (an SDK may escape the `/` of
/// `openai/gpt-5.4` as `%2F`). Not `{id}:{method}` for a method of
/// Gemini's models API: google-genai sends `countTokens` and
/// `batchEmbedContents` to `/v1/models/…`, a call, never a model to
/// describe (a fine-tuned OpenAI id has colons too: `ft:gpt-4o-mini:org::id`).
pub fn model_path_id(path: &str) -> Option<String> {
    let p = path.split(['?', '#']).next().unwrap_or("");
    let id = ["/v1/models/", "/models/", "/v1beta/models/", "/openai/models/", "/openai/v1/models/", "/v1beta/openai/models/"]
        .iter()
        .find_map(|pre| p.strip_prefix(pre))?;
    // (`%3A` read as the `:` a server would decode it to: such a path is a
    // disguised call, refused as one, never a model to describe.)
    let colon = id.replace("%3A", ":").replace("%3a", ":");
    let gemini_call = colon.rsplit_once(':').is_some_and(|(_, m)| crate::gemini::is_model_method(m));
    Some(id.replace("%2F", "/").replace("%2f", "/")).filter(|id| !id.is_empty() && !gemini_call)
}

/// The query string of a path, with its `?`, or "".
pub fn query_of(path: &str) -> &str {
    path.find('?').and_then(|i| path.get(i..)).unwrap_or("")
}

/// The query string to send upstream: the client's, without a `key`
/// parameter (Gemini clients may put their key there; it is Tollgate's
/// virtual key and must never reach a provider), nor, on an Azure OpenAI
/// path, `api-version` (the Azure client's, which the provider's own API,
/// Azure's v1 included, does not take).
pub fn upstream_query(path: &str) -> String {
    let q = query_of(path).trim_start_matches('?');
    let azure = is_azure(path);
    let kept: Vec<&str> = q
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next().is_none_or(|name| name != "key" && !(azure && name == "api-version")))
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

/// The path without its `key` query parameters, when it has one: what
/// Envoy's access log (`%REQ(:PATH)%`) must read instead of the client's
/// path, so that a virtual key given as `?key=` is never logged, whether
/// the request is served, refused or answered by the gateway itself.
pub fn path_without_key(path: &str) -> Option<String> {
    let has_key = query_of(path).trim_start_matches('?').split('&').any(|kv| kv.split('=').next() == Some("key"));
    has_key.then(|| format!("{}{}", path.split(['?', '#']).next().unwrap_or(""), upstream_query(path)))
}

/// A key given as `?key=…` (Gemini's REST convention), percent-decoding
/// left alone: virtual keys are URL-safe.
pub fn query_key(path: &str) -> Option<&str> {
    query_of(path).trim_start_matches('?').split('&').find_map(|kv| kv.strip_prefix("key=")).filter(|k| !k.is_empty())
}
