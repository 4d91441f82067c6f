//! A provider that misbehaves on request, and one that replays real
//! captured responses byte for byte (tests/captures/, sources cited in its
//! README). Selected per request with headers:
//!
//! - `x-mock-replay: <file>`: answer with tests/captures/<file> (status 200,
//!   content type by extension), in `x-mock-chunk-bytes` pieces;
//! - `x-mock-gzip: 1`, or any request to a host named `gzip.*` (for the
//!   calls the gateway makes itself): gzip the body, and say so in
//!   `content-encoding`, although no accept-encoding asked for it;
//!   `x-mock-gzip: corrupt`: the same, but after the first half of the
//!   body the deflate data turns invalid (a reserved block type);
//!   `x-mock-gzip: truncated`: only the first half, and the body ends
//!   where the compressed data does not (no final block, no trailer);
//! - `x-mock-content-encoding: br`, or any request to a host named `br.*`:
//!   claim an encoding the body does not have;
//! - `x-mock-endless-event: N`: an SSE event of N bytes that never ends;
//! - `x-mock-bad-header: 1`: a response header with a byte that is not UTF-8;
//! - `x-mock-forged-tollgate-headers: 1`: headers in Tollgate's namespace;
//! - `x-mock-model-bytes: N`: a model name of N bytes in the response;
//! - `x-mock-usage-output: N`: report N output tokens whatever was generated;
//! - `x-mock-usage-json: <JSON text>`: a JSON answer's `usage` member is
//!   this text as it is (`1e30` counts, floats, a string); `none` leaves
//!   the member out;
//! - `x-mock-unreadable: 1`: valid JSON that a parser with a nesting limit
//!   cannot hold: a member 200 arrays deep (`x_pad`) at the start of the
//!   answer object, or of every JSON event of a stream.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A capture's bytes and content type. Only plain file names are served.
pub fn replay(dir: &Path, name: &str) -> Option<(Vec<u8>, &'static str)> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) || name.starts_with('.') {
        return None;
    }
    let path: PathBuf = dir.join(name);
    let bytes = std::fs::read(path).ok()?;
    let ctype = if name.ends_with(".sse") { "text/event-stream; charset=utf-8" } else { "application/json" };
    Some((bytes, ctype))
}

/// A successful answer as the request's `x-mock-*` headers (or host) ask
/// it to misbehave: compressed, mislabelled, with a header that is not
/// UTF-8 or in Tollgate's namespace. Chat, messages and Responses alike.
pub async fn misbehave(mut r: Response<Body>, h: &HeaderMap) -> Response<Body> {
    let asked = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    if asked("x-mock-unreadable") == Some("1") {
        let (mut parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, 256 << 20).await.unwrap_or_default();
        let deep = format!("{{\"x_pad\":{}{},", "[".repeat(200), "]".repeat(200));
        let text = String::from_utf8_lossy(&bytes);
        let out = match text.strip_prefix('{') {
            Some(rest) => format!("{deep}{rest}"),
            None => text.replace("data: {", &format!("data: {deep}")),
        };
        parts.headers.remove("content-length");
        r = Response::from_parts(parts, Body::from(out));
    }
    if let Some(usage) = asked("x-mock-usage-json") {
        let (mut parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, 256 << 20).await.unwrap_or_default();
        let out = with_usage_text(&bytes, usage);
        parts.headers.remove("content-length");
        r = Response::from_parts(parts, Body::from(out));
    }
    let mode = asked("x-mock-gzip");
    let (corrupt, truncated) = (mode == Some("corrupt"), mode == Some("truncated"));
    if corrupt || truncated || mode == Some("1") || asked("host").is_some_and(|v| v.starts_with("gzip.")) {
        // Compress what would have been sent, then send it in small pieces.
        let (parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, 256 << 20).await.unwrap_or_default();
        let packed = match (corrupt, truncated) {
            (true, _) => gzip_turning_invalid(&bytes),
            (_, true) => gzip_first_half(&bytes),
            _ => gzip(&bytes),
        };
        let mut out = Response::from_parts(parts, chunked(packed, 512));
        out.headers_mut().insert("content-encoding", HeaderValue::from_static("gzip"));
        out.headers_mut().remove("content-length");
        r = out;
    }
    let claimed = asked("x-mock-content-encoding").or(asked("host").filter(|v| v.starts_with("br.")).map(|_| "br"));
    if let Some(enc) = claimed {
        r.headers_mut().insert("content-encoding", HeaderValue::from_str(enc).unwrap_or(HeaderValue::from_static("br")));
    }
    if asked("x-mock-bad-header") == Some("1") {
        if let Ok(v) = HeaderValue::from_bytes(b"caf\xe9") {
            r.headers_mut().insert("x-mock-latin1", v);
        }
    }
    if asked("x-mock-forged-tollgate-headers") == Some("1") {
        for (k, v) in [("x-tollgate-cost-micros", &b"0"[..]), ("x-tollgate-model", b"forged"), ("x-tollgate-extra", b"forged"), ("x-tollgate-latin1", b"caf\xe9")] {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                r.headers_mut().append(k, v);
            }
        }
    }
    r
}

/// A JSON answer with its top-level `usage` member's value replaced by
/// `text` verbatim (or left out for `none`); other bodies as they are.
fn with_usage_text(body: &[u8], text: &str) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(body) else { return body.to_vec() };
    m.remove("usage");
    let rest = serde_json::Value::Object(m).to_string();
    match (text, rest.strip_suffix('}')) {
        ("none", _) | (_, None) => rest.into_bytes(),
        (_, Some(open)) if open.len() > 1 => format!("{open},\"usage\":{text}}}").into_bytes(),
        (_, Some(open)) => format!("{open}\"usage\":{text}}}").into_bytes(),
    }
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(b);
    e.finish().unwrap_or_default()
}

/// The first half of `b` gzipped and flushed to a byte boundary: no
/// final block, no trailer.
fn gzip_first_half(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(b.get(..b.len() / 2).unwrap_or_default());
    let _ = e.flush();
    std::mem::take(e.get_mut())
}

/// [`gzip_first_half`], then a deflate block of the reserved type 3, which
/// every inflater refuses.
fn gzip_turning_invalid(b: &[u8]) -> Vec<u8> {
    let mut out = gzip_first_half(b);
    out.extend_from_slice(&[0x07, 0xff, 0xff, 0xff]);
    out
}

/// A body sent in pieces of `chunk` bytes, with a short pause between them
/// so they reach the proxy as separate reads.
pub fn chunked(bytes: Vec<u8>, chunk: usize) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let chunk = chunk.max(1);
    tokio::spawn(async move {
        let all = Bytes::from(bytes);
        let mut at = 0;
        while at < all.len() {
            let end = (at + chunk).min(all.len());
            if tx.send(Ok(all.slice(at..end))).await.is_err() {
                return;
            }
            at = end;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}

/// `data: xxxx…` for `n` bytes, never terminated, then the stream ends.
pub fn endless_event(n: u64) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        if tx.send(Ok(Bytes::from_static(b"data: "))).await.is_err() {
            return;
        }
        let block = Bytes::from(vec![b'x'; 64 << 10]);
        let mut sent = 0u64;
        while sent < n {
            let take = (n - sent).min(block.len() as u64) as usize;
            if tx.send(Ok(block.slice(..take))).await.is_err() {
                return;
            }
            sent += take as u64;
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}
