//! `multipart/form-data` bodies as OpenAI's upload endpoints read them
//! (image edits, transcriptions): split into parts with `multer`, the
//! parser axum uses, never the filter's own, so the tests see the form as a
//! second, independent reader does.

use axum::body::Bytes;

use crate::embeddings::Refusal;

/// One part: its field name, its file name when it is a file, its bytes.
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    /// The part's own `Content-Type`, when it gives one.
    pub content_type: Option<String>,
    pub data: Bytes,
}

fn malformed(e: impl std::fmt::Display) -> Refusal {
    (400, format!("Invalid multipart/form-data body: {e}."), None, None)
}

/// Every part of `body`, in order; refused as OpenAI refuses a body it cannot read.
pub async fn parts(content_type: &str, body: Bytes) -> Result<Vec<Part>, Refusal> {
    let boundary = multer::parse_boundary(content_type).map_err(|_| malformed("no boundary"))?;
    let mut form = multer::Multipart::new(tokio_stream::once(Ok::<Bytes, std::io::Error>(body)), boundary);
    let mut out = Vec::new();
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(|m| m.to_string());
        let data = field.bytes().await.map_err(malformed)?;
        out.push(Part { name, file_name, content_type, data });
    }
    Ok(out)
}
