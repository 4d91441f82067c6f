//! Error responses the gateway itself sends to clients.
//!
//! One body shape serves both client families: OpenAI SDKs read
//! `error.message` / `error.type` / `error.code` / `error.param`, Anthropic
//! SDKs read the top-level `"type": "error"` and `error.type` / `error.message`.
//! See docs/errors.md for the full table.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// HTTP status sent to the client.
    pub status: u16,
    /// `error.type`: a class a client library understands.
    pub kind: &'static str,
    /// `error.code`: a stable machine-readable reason.
    pub code: &'static str,
    /// Human-readable explanation; never contains a secret.
    pub message: String,
    /// `error.param`: the request field at fault, if any.
    pub param: Option<&'static str>,
    /// More members of `error` (e.g. the budget's scope, limit and reset time).
    pub details: Option<Box<serde_json::Value>>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    envelope_type: &'static str,
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    message: &'a str,
    param: Option<&'a str>,
}

impl GatewayError {
    /// The code of a request a guardrail policy stopped.
    pub const CONTENT_BLOCKED: &'static str = "content_blocked";
    /// The code of a request a guardrail policy applies to whose body it
    /// cannot read (see `guard::Outcome::Unreadable`).
    pub const CONTENT_UNREADABLE: &'static str = "content_unreadable";
    /// The code of an answer a guardrail policy redacts whose body it
    /// cannot read (see [`GatewayError::unread_answer`]).
    pub const ANSWER_UNREADABLE: &'static str = "answer_unreadable";

    fn new(status: u16, kind: &'static str, code: &'static str, message: String) -> Self {
        GatewayError { status, kind, code, message, param: None, details: None }
    }

    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub fn missing_key() -> Self {
        Self::new(
            401,
            "authentication_error",
            "missing_api_key",
            "No API key provided. Send your Tollgate virtual key as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.".into(),
        )
    }

    pub fn invalid_key() -> Self {
        Self::new(
            401,
            "authentication_error",
            "invalid_api_key",
            "The API key is not a known Tollgate virtual key (or it was revoked).".into(),
        )
    }

    /// A presented key no key matches; `several` when it holds a comma,
    /// most likely several keys: Envoy joins a repeated `Authorization`
    /// header's values with commas, so two headers (even with the same key)
    /// never match.
    pub fn unknown_key(several: bool) -> Self {
        let mut e = Self::invalid_key();
        if several {
            e.message = "The request carries several API keys in one header (a repeated header, joined with a comma): send one.".into();
        }
        e
    }

    /// Two different virtual keys in one request (say `Authorization` and
    /// `x-api-key`): which one to charge is the client's to say, not ours to
    /// guess.
    pub fn two_keys() -> Self {
        let mut e = Self::invalid_key();
        e.message = "The request carries two different Tollgate virtual keys (in Authorization, x-api-key or x-goog-api-key): send one.".into();
        e
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message.into())
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(403, "permission_error", code, message.into())
    }

    /// A 503 the client may retry: the gateway lacks something it will have soon.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(503, "api_error", code, message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found_error", "unknown_endpoint", message.into())
    }

    /// A path that names an endpoint only once normalised
    /// ([`crate::request::Endpoint::Disguised`]). The path is not echoed:
    /// it is the client's text.
    pub fn disguised_path() -> Self {
        Self::bad_request(
            "invalid_path",
            "The request path names a Tollgate endpoint only once normalised (repeated or dot segments, escapes, ';' parameters, backslashes or capitals): send it as written in the API reference, e.g. /v1/chat/completions.",
        )
    }

    /// 404 for `GET /v1/models/{id}`: not a model this key may use here.
    pub fn no_such_model(model: &str) -> Self {
        let shown = crate::text::clean_field(model, 256);
        Self::new(404, "not_found_error", "model_not_found", format!("The model '{shown}' does not exist or this key may not use it."))
            .with_param("model")
    }

    /// 426: a WebSocket upgrade (Codex asks for the Responses API over one
    /// first, where the HTTP connection manager allows upgrades, as Istio's
    /// does). 426 is the signal Codex documents for "use HTTP" (openai/codex
    /// #43353; "codex-rs only falls back to HTTP on an HTTP 426", Soju06/codex-lb#1886),
    /// and the body says why. Envoy's own refusal (403, no body: upgrades not
    /// configured) is mapped to the same answer in envoy/*/envoy.yaml.
    /// 404 for a path Tollgate does not route (`other_paths: deny`): what
    /// it does serve, and the path asked (cleaned, without its query).
    pub fn not_routed(path: &str) -> Self {
        let p = crate::text::clean_field(path.split('?').next().unwrap_or(""), 128);
        Self::not_found(format!(
            "Tollgate serves POST /v1/chat/completions, /v1/messages, /v1/messages/count_tokens, /v1/responses, /v1/responses/input_tokens, /v1/responses/compact, /v1/embeddings, /v1/completions, /v1/moderations and Gemini's /v1beta/models/{{model}}:generateContent, :streamGenerateContent, :countTokens, :embedContent and :batchEmbedContents, and GET /v1/models and /v1/models/{{id}} (Gemini's /v1beta/models too), stored responses, conversations, files and batches (/v1/responses/{{id}}, /v1/conversations, /v1/files, /v1/batches) when 'stored_objects' names their provider, and Azure OpenAI's and Gemini's OpenAI-compatible forms of these (/openai/deployments/{{deployment}}/chat/completions, /openai/responses, /openai/v1/..., /v1beta/openai/...); '{p}' is not routed."
        ))
    }

    pub fn websocket_not_supported() -> Self {
        Self::new(
            426,
            "invalid_request_error",
            "websocket_not_supported",
            "This gateway serves HTTP (and SSE streams), not WebSockets: send the request over HTTP. (Codex: set supports_websockets = false on the provider.)".into(),
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "invalid_request_error", "method_not_allowed", message.into())
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "request_too_large",
            "request_too_large",
            format!("The request body is larger than this gateway accepts ({limit} bytes)."),
        )
    }

    /// A request body in a `content-encoding` the filter cannot decode.
    pub fn unsupported_encoding(name: &str) -> Self {
        Self::new(
            415,
            "invalid_request_error",
            "unsupported_encoding",
            format!("The request body's content-encoding '{name}' cannot be read here: send it uncompressed, or as gzip or deflate."),
        )
    }

    pub fn unknown_model(model: &str, available: &[String]) -> Self {
        let list = if available.is_empty() {
            "none are configured for this key".to_string()
        } else {
            available.join(", ")
        };
        Self::new(
            400,
            "invalid_request_error",
            "model_not_found",
            format!("The model '{model}' is not routed by this gateway. Available models: {list}."),
        )
        .with_param("model")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "api_error", "gateway_error", message.into())
    }

    pub fn budget_state_unavailable() -> Self {
        Self::new(
            503,
            "api_error",
            "budget_state_unavailable",
            "Budget state is unavailable (the control service cannot be reached) and this gateway is configured to fail closed; retry later.".into(),
        )
    }

    /// 503: an unknown key while this Envoy has not yet loaded every key
    /// from the control service (it just started, or cannot reach it): the
    /// key may be valid, so the answer is retryable, not 401.
    pub fn keys_loading() -> Self {
        Self::new(
            503,
            "api_error",
            "keys_loading",
            "This gateway has not yet loaded its virtual keys from the control service; retry shortly.".into(),
        )
    }

    /// 503: Envoy did not hand the request body to the filter in time after
    /// its headers: the Wasm filter lacks `allow_on_headers_stop_iteration`.
    pub fn body_not_delivered(wait_ms: u64) -> Self {
        Self::new(
            503,
            "api_error",
            "gateway_misconfigured",
            format!(
                "Tollgate did not receive this request's body within {wait_ms} ms of its headers, so it cannot route it on its model and refuses it rather than route it wrong. If every request gets this, the gateway's Wasm filter needs 'allow_on_headers_stop_iteration: true' (Envoy >= 1.35; with Istio, install it with the EnvoyFilter, not a WasmPlugin)."
            ),
        )
    }

    /// 503: the request's headers went upstream before the filter read the
    /// body (its pause in the headers was not honoured).
    pub fn headers_already_forwarded() -> Self {
        Self::new(
            503,
            "api_error",
            "gateway_misconfigured",
            "Envoy forwarded this request's headers before Tollgate read its body, so it would have gone to the wrong provider; refused. The gateway's Wasm filter needs 'allow_on_headers_stop_iteration: true' (Envoy >= 1.35; with Istio, install it with the EnvoyFilter, not a WasmPlugin).".into(),
        )
    }

    /// What a client of a translated request gets in place of an answer the
    /// filter cannot translate (`why`: too large to hold, or in an encoding
    /// it cannot decode), in the shape its API's errors take: a provider
    /// success becomes 502, a provider error keeps its status (a 429 stays
    /// retryable). The answer's usage is still read and recorded.
    pub fn untranslatable_answer(provider_status: u16, why: &str) -> Self {
        let status = if (200..300).contains(&provider_status) || !(400..600).contains(&provider_status) { 502 } else { provider_status };
        Self::new(
            status,
            "api_error",
            "answer_untranslatable",
            format!("The provider answered ({provider_status}), but its answer cannot be translated to this API: {why}. Its usage is recorded; retrying may not help."),
        )
    }

    /// What a client gets in place of a successful answer that a guardrail
    /// policy redacting answers (`responses: redact`) cannot read (`why`:
    /// not JSON a scan can hold, too large to hold, in an encoding the
    /// filter cannot decode): a 502, never the answer unscanned. Its usage
    /// is still read and recorded.
    pub fn unread_answer(policy: &str, why: &str) -> Self {
        Self::new(
            502,
            "api_error",
            Self::ANSWER_UNREADABLE,
            format!(
                "The provider answered, but guardrail policy '{}' redacts answers and cannot read this one ({}), so it is not passed on. Its usage is recorded.",
                crate::text::clean_field(policy, 64),
                crate::text::clean_field(why, 200)
            ),
        )
    }

    /// The `x-should-retry` an error sent in place of a provider's answer
    /// goes with: `false` when its status is not the provider's (the
    /// provider answered and billed; an SDK retrying the 502 would pay again
    /// for an answer it could not read either), none when it is (a 429
    /// stays retryable).
    pub fn retry_header(&self, provider_status: u16) -> Option<(&'static str, &'static str)> {
        (self.status != provider_status).then_some(("x-should-retry", "false"))
    }

    /// A fallback's call that brought back no answer at all: Envoy's call
    /// failed (no connection, a reset, its timeout) or the answer was larger
    /// than Envoy buffers for a call (`http.async_response_buffer_limit`,
    /// 32 MiB by default). Before, the client got a 502 with an empty body.
    pub fn no_answer(provider: &str) -> Self {
        Self::new(
            502,
            "api_error",
            "upstream_no_answer",
            format!(
                "The provider '{provider}' (a fallback) gave no answer: the connection failed, was reset or timed out, or the answer was larger than Envoy buffers for a call (32 MiB unless the runtime key http.async_response_buffer_limit says otherwise)."
            ),
        )
    }

    /// 429 budget exhausted (see budget::exhausted_error for the message).
    pub fn budget_exhausted(message: String, details: serde_json::Value) -> Self {
        let mut e = Self::new(429, "budget_exhausted", "budget_exhausted", message);
        e.details = Some(Box::new(details));
        e
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> String {
        let env = Envelope {
            envelope_type: "error",
            error: Inner { kind: self.kind, code: self.code, message: &self.message, param: self.param },
        };
        let mut v = serde_json::to_value(&env).unwrap_or(serde_json::Value::Null);
        if let (Some(serde_json::Value::Object(extra)), Some(inner)) =
            (self.details.as_deref(), v.get_mut("error").and_then(|e| e.as_object_mut()))
        {
            for (k, val) in extra {
                inner.entry(k.clone()).or_insert_with(|| val.clone());
            }
        }
        // Serializing plain strings cannot fail; keep a fallback anyway (no panics).
        serde_json::to_string(&v).unwrap_or_else(|_| {
            r#"{"type":"error","error":{"type":"api_error","code":"gateway_error","message":"error"}}"#.to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_keys_are_named_as_such() {
        assert_eq!(GatewayError::unknown_key(false), GatewayError::invalid_key());
        let e = GatewayError::unknown_key(true);
        assert_eq!((e.status, e.code), (401, "invalid_api_key"));
        assert!(e.message.contains("several API keys"), "{}", e.message);
    }

    #[test]
    fn body_has_both_openai_and_anthropic_fields() {
        let e = GatewayError::unknown_model("gpt-x", &["cheap".into(), "openai/*".into()]);
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("gpt-x") && msg.contains("cheap, openai/*"), "{msg}");
        assert_eq!(e.status, 400);
    }

    #[test]
    fn an_untranslatable_success_is_a_502_and_a_provider_error_keeps_its_status() {
        let e = GatewayError::untranslatable_answer(200, "it is larger than the gateway holds");
        assert_eq!((e.status, e.kind, e.code), (502, "api_error", "answer_untranslatable"));
        assert!(e.message.contains("(200)") && e.message.contains("larger than the gateway holds"), "{}", e.message);
        assert_eq!(GatewayError::untranslatable_answer(429, "x").status, 429, "a rate limit stays retryable");
        assert_eq!(GatewayError::untranslatable_answer(529, "x").status, 529);
        assert_eq!(GatewayError::untranslatable_answer(302, "x").status, 502);
        assert_eq!(e.retry_header(200), Some(("x-should-retry", "false")), "the provider billed it");
        assert_eq!(GatewayError::untranslatable_answer(429, "x").retry_header(429), None);
    }

    #[test]
    fn an_answer_a_redacting_policy_cannot_read_is_a_502_not_retried() {
        let e = GatewayError::unread_answer("2026-11-29", "it is in an encoding the gateway cannot decode (br)");
        assert_eq!((e.status, e.kind, e.code), (502, "api_error", "answer_unreadable"));
        assert!(e.message.contains("'2026-11-29'") && e.message.contains("(br)"), "{}", e.message);
        assert_eq!(e.retry_header(200), Some(("x-should-retry", "false")), "the provider billed it");
    }

    #[test]
    fn message_is_escaped() {
        let e = GatewayError::bad_request("x", "a \"quoted\"\nline");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["message"], "a \"quoted\"\nline");
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn a_path_not_routed_is_named_without_its_query_or_control_characters() {
        let e = GatewayError::not_routed("/v1/assistants\u{1b}[2J?key=sk-secret");
        assert_eq!((e.status, e.code), (404, "unknown_endpoint"));
        assert!(e.message.ends_with("'/v1/assistants[2J' is not routed."), "{}", e.message);
        assert!(!e.message.contains("sk-secret") && !e.message.contains('\u{1b}'));
        assert!(e.message.contains("/v1beta/models/{model}:generateContent"), "{}", e.message);
    }
}
