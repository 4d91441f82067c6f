//! The request headers the filter decides on, read from one host call as
//! bytes, and the attribution tags they carry. Pure: the glue hands the
//! header map's pairs in and applies what comes out (headers to remove, a
//! 400/403 to send).

use crate::config::KeyInfo;
use crate::errors::GatewayError;

pub const HDR_PROJECT: &str = "x-tollgate-project";
pub const HDR_SESSION: &str = "x-tollgate-session";
pub const HDR_FEATURE: &str = "x-tollgate-feature";
pub const HDR_PROMPT_VERSION: &str = "x-tollgate-prompt-version";

/// The request headers the filter looks at, read with one host call, as
/// bytes: a value is only turned into text where it is used, and a value
/// that is not valid there is a 400/401, never a panic.
#[derive(Default)]
pub struct RequestHead {
    pub path: Vec<u8>,
    pub method: Vec<u8>,
    pub authorization: Option<Vec<u8>>,
    pub x_api_key: Option<Vec<u8>>,
    /// Gemini clients send their key here.
    pub x_goog_api_key: Option<Vec<u8>>,
    /// Azure OpenAI clients (the SDKs' `AzureOpenAI`) send theirs here.
    pub azure_api_key: Option<Vec<u8>>,
    pub request_id: Option<Vec<u8>>,
    pub session: Option<Vec<u8>>,
    pub claude_code_session: Option<Vec<u8>>,
    pub project: Option<Vec<u8>>,
    pub feature: Option<Vec<u8>>,
    pub prompt_version: Option<Vec<u8>>,
    pub has_anthropic_version: bool,
    /// `Upgrade: websocket` (in any letter case).
    pub websocket: bool,
    /// The body's `content-encoding` (several headers joined, so refused).
    pub content_encoding: Option<Vec<u8>>,
    /// Vertex AI's tier header ([`crate::request::VERTEX_TIER`]; several joined, so refused).
    pub vertex_tier: Option<Vec<u8>>,
    /// Headers present that must not go upstream.
    pub to_remove: Vec<String>,
}

impl RequestHead {
    pub fn read<'a>(all: impl Iterator<Item = (&'a [u8], &'a [u8])>, cluster_header: &str) -> Self {
        let mut h = RequestHead::default();
        for (name, value) in all {
            let remove = |h: &mut RequestHead| h.to_remove.push(String::from_utf8_lossy(name).into_owned());
            let value = || value.to_vec();
            match name {
                b":path" => h.path = value(),
                b":method" => h.method = value(),
                b"authorization" => {
                    join(&mut h.authorization, value());
                    remove(&mut h);
                }
                b"x-api-key" => {
                    join(&mut h.x_api_key, value());
                    remove(&mut h);
                }
                b"x-goog-api-key" => {
                    join(&mut h.x_goog_api_key, value());
                    remove(&mut h);
                }
                b"api-key" => {
                    join(&mut h.azure_api_key, value());
                    remove(&mut h);
                }
                b"x-request-id" => h.request_id = Some(value()),
                b"x-claude-code-session-id" => h.claude_code_session = Some(value()),
                n if n == HDR_SESSION.as_bytes() => {
                    h.session = Some(value());
                    remove(&mut h);
                }
                n if n == HDR_PROJECT.as_bytes() => {
                    h.project = Some(value());
                    remove(&mut h);
                }
                n if n == HDR_FEATURE.as_bytes() => {
                    h.feature = Some(value());
                    remove(&mut h);
                }
                n if n == HDR_PROMPT_VERSION.as_bytes() => {
                    h.prompt_version = Some(value());
                    remove(&mut h);
                }
                b"anthropic-version" => h.has_anthropic_version = true,
                b"upgrade" => h.websocket |= value().split(|b| *b == b',').any(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket")),
                b"content-encoding" => join(&mut h.content_encoding, value()),
                n if n == crate::request::VERTEX_TIER.as_bytes() => join(&mut h.vertex_tier, value()),
                // The response must be readable (uncompressed) to count its usage.
                b"accept-encoding" => remove(&mut h),
                // Which OpenAI organization and project the provider bills is
                // the gateway key's, never the client's: the SDKs send these
                // when OPENAI_ORG_ID / OPENAI_PROJECT_ID are set, and beside
                // the gateway's key api.openai.com refuses every request (401
                // mismatched_organization), or, for a key of several
                // organizations, bills the one the client named. Google's
                // quota and billing project (`x-goog-user-project`) likewise,
                // and Anthropic's workspace (`anthropic-workspace-id`, which
                // its SDKs send for `workspace_id`).
                b"openai-organization" | b"openai-project" | b"x-goog-user-project" | b"anthropic-workspace-id" => remove(&mut h),
                n if n == cluster_header.as_bytes() => remove(&mut h),
                _ => {}
            }
        }
        h
    }
}


impl RequestHead {
    /// Every key the request presents, in the order they are tried: the
    /// bearer token of `authorization`, then `x-api-key`, then
    /// `x-goog-api-key`, then Azure's `api-key`, each trimmed, empty ones
    /// left out, each once (a fixed array: nothing allocated on every
    /// request). A value that is not UTF-8 is an invalid key (never a panic).
    pub fn keys(&self) -> Result<[Option<&str>; 4], GatewayError> {
        fn text(v: &Option<Vec<u8>>) -> Result<Option<&str>, GatewayError> {
            v.as_deref().map(|b| std::str::from_utf8(b).map_err(|_| GatewayError::invalid_key())).transpose()
        }
        fn clean(k: Option<&str>) -> Option<&str> {
            k.map(str::trim).filter(|k| !k.is_empty())
        }
        let bearer = clean(crate::keys::presented_key(text(&self.authorization)?, None));
        let x = clean(text(&self.x_api_key)?).filter(|k| Some(*k) != bearer);
        let goog = clean(text(&self.x_goog_api_key)?).filter(|k| Some(*k) != bearer && Some(*k) != x);
        let azure = clean(text(&self.azure_api_key)?).filter(|k| ![bearer, x, goog].contains(&Some(*k)));
        Ok([bearer, x, goog, azure])
    }
}

/// The key a request is charged to, from the keys it presents (in the
/// order of [`RequestHead::keys`]) and a lookup of the known ones: the
/// first, when it is known and no other names a different known key (which
/// one pays is the client's to say, not ours to guess). A key that is no
/// virtual key (a provider key left in the client's environment) is no
/// conflict. `Ok(None)`: the first is not a known key.
pub fn charged_key<'a, K>(
    keys: impl IntoIterator<Item = &'a str>,
    resolve: impl Fn(&str) -> Option<K>,
    same: impl Fn(&K, &K) -> bool,
) -> Result<Option<K>, GatewayError> {
    let mut keys = keys.into_iter();
    let first = keys.next().ok_or_else(GatewayError::missing_key)?;
    let Some(k) = resolve(first) else { return Ok(None) };
    if keys.any(|o| resolve(o).is_some_and(|other| !same(&other, &k))) {
        return Err(GatewayError::two_keys());
    }
    Ok(Some(k))
}

/// A header given more than once, as Envoy joins an inline one (with a
/// comma): a key given twice is then no key, and refused as several.
/// The request's `content-type` (several joined, so a form's boundary
/// cannot be read from them): read only where a body may be a form
/// ([`crate::request::multipart`]), not on every request's header pass.
pub fn content_type<'a>(all: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Option<Vec<u8>> {
    let mut found = None;
    for (_, v) in all.filter(|(k, _)| *k == b"content-type") {
        join(&mut found, v.to_vec());
    }
    found
}

fn join(slot: &mut Option<Vec<u8>>, value: Vec<u8>) {
    match slot {
        Some(joined) => {
            joined.extend_from_slice(b", ");
            joined.extend(value);
        }
        None => *slot = Some(value),
    }
}

/// A tag header's value: trimmed, at most 128 visible ASCII characters.
fn tag_value(v: Option<Vec<u8>>) -> Result<Option<String>, ()> {
    let Some(v) = v else { return Ok(None) };
    let s = std::str::from_utf8(&v).map_err(|_| ())?.trim();
    if s.is_empty() {
        Ok(None)
    } else if s.len() > 128 || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Err(())
    } else {
        Ok(Some(s.to_string()))
    }
}

fn bad_tag(header: &'static str) -> GatewayError {
    GatewayError::bad_request("invalid_tag", format!("The header '{header}' must be 1 to 128 printable ASCII characters."))
}

impl RequestHead {
    /// The project a request is charged to, when its `x-tollgate-project`
    /// names one (else the key's): only one the key may charge.
    pub fn project(&mut self, key: &KeyInfo) -> Result<Option<String>, GatewayError> {
        match tag_value(self.project.take()) {
            Ok(Some(p)) if key.may_tag_project(&p) => Ok(Some(p)),
            Ok(Some(p)) => Err(GatewayError::forbidden("project_not_allowed", format!("This key may not charge requests to project '{p}'."))),
            Ok(None) => Ok(None),
            Err(()) => Err(bad_tag(HDR_PROJECT)),
        }
    }

    /// The `x-tollgate-feature` tag.
    pub fn feature(&mut self) -> Result<Option<String>, GatewayError> {
        tag_value(self.feature.take()).map_err(|()| bad_tag(HDR_FEATURE))
    }

    /// The `x-tollgate-prompt-version` tag.
    pub fn prompt_version(&mut self) -> Result<Option<String>, GatewayError> {
        tag_value(self.prompt_version.take()).map_err(|()| bad_tag(HDR_PROMPT_VERSION))
    }
}

#[cfg(test)]
mod tests;
