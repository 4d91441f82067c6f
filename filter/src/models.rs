//! The gateway's own model listing (`GET /v1/models`, `GET /v1/models/{id}`,
//! and Gemini's `GET /v1beta/models`, `…/models/{id}`): the models a key
//! may name, from the route table, in the list shape of the client's API.
//! Nothing goes upstream and nothing is usage.

use crate::config::{Config, KeyInfo, Provider, ProviderFormat};
use crate::errors::GatewayError;

/// Whose shape a models answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `object: list`, `id`, `object`, `created`, `owned_by`.
    OpenAi,
    /// Anthropic's `ModelInfo` (`type`, `id`, `display_name`, `created_at`,
    /// "an epoch value if the release date is unknown") and the page's
    /// `has_more`, `first_id`, `last_id` (platform.claude.com/docs/en/api/models).
    Anthropic,
    /// Gemini's `Model` (`name: models/{id}`, `baseModelId`, `displayName`,
    /// `supportedGenerationMethods`) in `{"models": [...]}`
    /// (ai.google.dev/api/models). A Gemini client can only generate on a
    /// Gemini-format provider, so only those models are listed.
    Gemini,
}

impl Shape {
    /// Gemini's for a `/v1beta/` path or a Google-style key (the google-genai
    /// SDK sends `x-goog-api-key`, on `/v1/models` too with `api_version="v1"`);
    /// Anthropic's for a request that carries `anthropic-version` (the
    /// Anthropic SDKs, Claude Code's gateway model discovery); else OpenAI's.
    pub fn of(path: &str, anthropic_version: bool, google_key: bool) -> Shape {
        match () {
            // (Gemini's OpenAI-compatible endpoint lists in OpenAI's shape.)
            _ if path.starts_with("/v1beta/openai/") => Shape::OpenAi,
            _ if path.starts_with("/v1beta/") || google_key => Shape::Gemini,
            _ if anthropic_version => Shape::Anthropic,
            _ => Shape::OpenAi,
        }
    }
}

/// Methods listed for every Gemini model: what the gateway serves of it
/// (`streamGenerateContent` is `generateContent`'s, as Gemini lists it).
const GEMINI_METHODS: [&str; 2] = ["generateContent", "countTokens"];

/// The list of what the key may name ([`Config::listable_models`]). One
/// page: the route table is small (Gemini's `pageSize` and `pageToken` are
/// read as asking for the first page, so no `nextPageToken` is answered).
pub fn list(cfg: &Config, key: &KeyInfo, shape: Shape) -> String {
    let mut models = cfg.listable_models(key);
    if shape == Shape::Gemini {
        // Gemini's list says what each model is called with: a model priced
        // with no output (an embedding model) answers no `generateContent`,
        // and Gemini's native embeddings are not served.
        models.retain(|(name, _)| cfg.resolve(name).is_some_and(|(r, upstream)| generates(cfg, &r.provider.name, &upstream)));
    }
    document(&models, shape)
}

/// Whether `provider/upstream` answers generations: not priced with a zero
/// output rate (an embedding model).
fn generates(cfg: &Config, provider: &str, upstream: &str) -> bool {
    cfg.price(provider, upstream).is_none_or(|p| p.output > 0)
}

fn document(models: &[(&str, &Provider)], shape: Shape) -> String {
    let doc = match shape {
        Shape::OpenAi => serde_json::json!({"object": "list", "data": items(models, shape)}),
        Shape::Anthropic => {
            let (first, last) = (models.first().map(|m| m.0), models.last().map(|m| m.0));
            serde_json::json!({"data": items(models, shape), "has_more": false, "first_id": first, "last_id": last})
        }
        Shape::Gemini => {
            let mut ids: Vec<&str> = Vec::new();
            for id in models.iter().filter(|(_, p)| p.format == ProviderFormat::Gemini).map(|(n, _)| gemini_id(n)) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            serde_json::json!({"models": ids.iter().map(|id| gemini_item(id)).collect::<Vec<_>>()})
        }
    };
    doc.to_string()
}

fn items(models: &[(&str, &Provider)], shape: Shape) -> Vec<serde_json::Value> {
    models.iter().map(|(id, p)| item(id, p, shape)).collect()
}

/// A Gemini client names `google/gemini-2.5-flash` as `gemini-2.5-flash`
/// (the gateway routes a native path's model as it is or as `google/<id>`).
fn gemini_id(route: &str) -> &str {
    route.strip_prefix("google/").unwrap_or(route)
}

fn gemini_item(id: &str) -> serde_json::Value {
    serde_json::json!({"name": format!("models/{id}"), "baseModelId": id, "displayName": id, "supportedGenerationMethods": GEMINI_METHODS})
}

fn item(id: &str, provider: &Provider, shape: Shape) -> serde_json::Value {
    match shape {
        Shape::OpenAi => serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": provider.name}),
        Shape::Anthropic => serde_json::json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"}),
        Shape::Gemini => gemini_item(gemini_id(id)),
    }
}

/// One model, when this key may use it and a route serves it (a
/// wildcard's too), in the client's shape; else 404. A Gemini client's id
/// is read as the generate path's is (a plain id, as it is or as
/// `google/<id>`), and must be served by a Gemini-format provider and
/// generate (as listed).
pub fn one(cfg: &Config, key: &KeyInfo, id: &str, shape: Shape) -> Result<String, GatewayError> {
    if shape == Shape::Gemini && !crate::gemini::plain_model_id(id) {
        return Err(GatewayError::no_such_model(id));
    }
    let google = (shape == Shape::Gemini).then(|| format!("google/{id}"));
    let found = std::iter::once(id)
        .chain(google.as_deref())
        .filter(|m| crate::request::valid_model_name(m) && key.may_use(m))
        .find_map(|m| cfg.resolve(m))
        .filter(|(r, upstream)| shape != Shape::Gemini || (r.provider.format == ProviderFormat::Gemini && generates(cfg, &r.provider.name, upstream)));
    match found {
        Some((r, _)) => Ok(item(id, r.provider, shape).to_string()),
        None => Err(GatewayError::no_such_model(id)),
    }
}

#[cfg(test)]
mod tests;
