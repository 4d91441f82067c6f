//! What every endpoint of the mock shares: request headers read, errors
//! in each provider's format, the headers that echo what the gateway sent
//! upstream, and the checks an OpenAI-format endpoint makes before it reads
//! the body (the key, the organization, a requested error or replay).

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use serde_json::{json, Value};

use crate::{hostile, App, Dialect};

pub(crate) fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)?.to_str().ok()
}

pub(crate) fn error_body(dialect: Dialect, status: u16, message: &str) -> String {
    error_body_with(dialect, status, message, None, None)
}

pub(crate) fn error_body_with(dialect: Dialect, status: u16, message: &str, param: Option<&str>, code: Option<&str>) -> String {
    match dialect {
        Dialect::Anthropic => {
            let t = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": t, "message": message}}).to_string()
        }
        _ => {
            let (t, default_code) = match status {
                400 | 404 => ("invalid_request_error", Value::Null),
                401 => ("invalid_request_error", json!("invalid_api_key")),
                429 => ("requests", json!("rate_limit_exceeded")),
                _ => ("server_error", Value::Null),
            };
            let code = code.map(Value::from).unwrap_or(default_code);
            json!({"error": {"message": message, "type": t, "param": param, "code": code}}).to_string()
        }
    }
}

pub(crate) fn respond(status: StatusCode, req_h: &HeaderMap, uri: &Uri, body: String, ctype: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    decorate(r.headers_mut(), req_h, uri, ctype);
    r
}

/// Echo what the gateway sent upstream, for the tests.
pub(crate) fn decorate(h: &mut HeaderMap, req_h: &HeaderMap, uri: &Uri, ctype: &str) {
    let echo = |v: Option<&str>| HeaderValue::from_str(v.unwrap_or("")).unwrap_or(HeaderValue::from_static(""));
    let auth = header_str(req_h, "authorization").or_else(|| header_str(req_h, "x-api-key"));
    h.insert("content-type", HeaderValue::from_str(ctype).unwrap_or(HeaderValue::from_static("text/plain")));
    h.insert("x-mock-auth", echo(auth));
    h.insert("x-mock-host", echo(header_str(req_h, "host")));
    // (Azure OpenAI's key header: the gateway's clients send a virtual key there.)
    h.insert("x-mock-api-key", echo(header_str(req_h, "api-key")));
    h.insert("x-mock-path", echo(uri.path_and_query().map(|p| p.as_str())));
    h.insert("x-mock-anthropic-version", echo(header_str(req_h, "anthropic-version")));
    h.insert("x-mock-request-encoding", echo(header_str(req_h, "content-encoding")));
    h.insert("x-mock-cache-breakpoints", echo(Some(header_str(req_h, "x-mock-internal-breakpoints").unwrap_or("0"))));
    h.insert("x-mock-tollgate-headers", echo(Some(
        &req_h.keys().filter(|k| k.as_str().starts_with("x-tollgate")).map(|k| k.as_str()).collect::<Vec<_>>().join(","),
    )));
}

/// The mock's OpenAI key belongs to organization `org-mock`, project
/// `proj_mock`: a request naming another in `OpenAI-Organization` /
/// `OpenAI-Project` is refused as api.openai.com refuses it (401
/// "OpenAI-Organization header should match organization for API key",
/// `code` `mismatched_organization`: real response bodies in
/// microsoft/foundry-dev-tools#262 and Realiserad/fish-ai#62; the project
/// header the same way). A client's own headers reaching the provider
/// beside the gateway's key fail so.
pub(crate) fn foreign_organization(h: &HeaderMap) -> Option<(&'static str, &'static str)> {
    if header_str(h, "openai-organization").is_some_and(|o| o != "org-mock") {
        return Some(("OpenAI-Organization header should match organization for API key", "mismatched_organization"));
    }
    if header_str(h, "openai-project").is_some_and(|p| p != "proj_mock") {
        return Some(("OpenAI-Project header should match project for API key", "mismatched_project"));
    }
    None
}

pub(crate) fn check_key(app: &App, dialect: Dialect, h: &HeaderMap) -> Result<(), String> {
    let presented = match dialect {
        Dialect::Anthropic => header_str(h, "x-api-key").map(str::to_string),
        _ => header_str(h, "authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::to_string),
    };
    let expected = match dialect {
        Dialect::OpenAi => &app.keys.openai,
        Dialect::DeepSeek => &app.keys.deepseek,
        Dialect::Anthropic => &app.keys.anthropic,
    };
    match (presented, expected) {
        (None, _) => Err(match dialect {
            Dialect::Anthropic => "x-api-key header is required".into(),
            _ => "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth.".into(),
        }),
        (Some(p), _) if p.is_empty() => Err("invalid x-api-key".into()),
        (Some(p), Some(e)) if &p != e => Err(match dialect {
            Dialect::Anthropic => "invalid x-api-key".into(),
            _ => "Incorrect API key provided.".into(),
        }),
        _ => Ok(()),
    }
}

pub(crate) fn remember(app: &App, body: &Bytes) {
    if let Ok(mut b) = app.last_body.lock() {
        *b = body.clone();
    }
}

/// An OpenAI-format error answer.
pub(crate) fn openai_error(h: &HeaderMap, uri: &Uri, status: u16, msg: &str, param: Option<&str>, code: Option<&str>) -> Response<Body> {
    let body = error_body_with(Dialect::OpenAi, status, msg, param, code);
    respond(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), h, uri, body, "application/json")
}

/// A recorded answer when the test asks for one (`x-mock-replay`): `None` when it does not.
pub(crate) fn replayed(app: &App, h: &HeaderMap, uri: &Uri) -> Option<Result<Response<Body>, ()>> {
    let name = header_str(h, "x-mock-replay")?;
    let Some((bytes, ctype)) = hostile::replay(&app.captures, name) else { return Some(Err(())) };
    let chunk = header_u64(h, "x-mock-chunk-bytes").unwrap_or(bytes.len() as u64 + 1) as usize;
    let mut r = Response::new(hostile::chunked(bytes, chunk));
    decorate(r.headers_mut(), h, uri, ctype);
    Some(Ok(r))
}

/// What every OpenAI-format endpoint checks first: the key, a requested
/// error status, a JSON object body, a requested replay. `Err`: the answer.
pub(crate) fn openai_prelude(app: &App, uri: &Uri, h: &HeaderMap, body: &Bytes) -> Result<serde_json::Map<String, Value>, Box<Response<Body>>> {
    openai_checks(app, uri, h)?;
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new(openai_error(h, uri, 400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)", None, None)));
    };
    Ok(m)
}

/// The key, a requested error status, a requested replay: what every
/// OpenAI-format endpoint checks before it reads the body.
pub(crate) fn openai_checks(app: &App, uri: &Uri, h: &HeaderMap) -> Result<(), Box<Response<Body>>> {
    let err = |status: u16, msg: &str| Box::new(openai_error(h, uri, status, msg, None, None));
    if let Err(m) = check_key(app, Dialect::OpenAi, h) {
        return Err(err(401, &m));
    }
    if let Some((msg, code)) = foreign_organization(h) {
        return Err(Box::new(openai_error(h, uri, 401, msg, None, Some(code))));
    }
    if let Some(s) = header_u64(h, "x-mock-status") {
        return Err(err(s as u16, "Mock error requested by x-mock-status."));
    }
    match replayed(app, h, uri) {
        Some(Ok(r)) => Err(Box::new(r)),
        Some(Err(())) => Err(err(404, "x-mock-replay: no such capture")),
        None => Ok(()),
    }
}
