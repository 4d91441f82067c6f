//! A provider that misbehaves on request, and one that replays real
//! captured responses byte for byte (tests/captures/, sources cited in its
//! README). Selected per request with headers:
//!
//! - `x-mock-replay: <file>`: answer with tests/captures/<file> (status 200,
//!   content type by extension), in `x-mock-chunk-bytes` pieces;
//! - `x-mock-gzip: 1`: gzip the body (and say so in `content-encoding`);
//! - `x-mock-content-encoding: br`: claim an encoding the body does not have;
//! - `x-mock-endless-event: N`: an SSE event of N bytes that never ends;
//! - `x-mock-bad-header: 1`: a response header with a byte that is not UTF-8;
//! - `x-mock-model-bytes: N`: a model name of N bytes in the response;
//! - `x-mock-usage-output: N`: report N output tokens whatever was generated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::{Body, Bytes};
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

pub fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(b);
    e.finish().unwrap_or_default()
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
