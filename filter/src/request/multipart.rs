//! `multipart/form-data` request bodies (RFC 7578, framed as RFC 2046
//! §5.1.1 says): how OpenAI's image edits upload their images
//! (openai-python's and openai-node's `images.edit`, the Vercel AI SDK,
//! curl `-F`), and its transcriptions and translations their audio.
//!
//! The request path reads JSON, so a form is read as the JSON it stands
//! for ([`Form::view`]): its text fields as members (the integer and
//! boolean ones as JSON numbers and booleans, as the provider reads them),
//! its image files as `images: [{"upload": bytes}, …]` and its mask as
//! `mask: {"upload": bytes}` (GPT Image 2.5's `markup` likewise), which is how the JSON form of the same
//! request names its images (by reference); an audio `file` as
//! `file: {"upload": bytes, "ms": length, "stated": bool}` ([`super::audio`]).
//! The SDKs send a list as `name[]` repeated and an object as `name[key]`
//! (openai-python's `array_format="brackets"`, openai-node's
//! `addFormValue`): read as the JSON array or object of strings, sent on
//! as they came. Whatever the planning and the
//! guardrails change in that JSON (the upstream model, a redacted prompt)
//! is written back into the form ([`Form::rebuild`]); the files go on byte
//! for byte.
//!
//! Written here rather than taken from a crate: the maintained parsers
//! (`multer`) are asynchronous streams built on `futures` and `http`, which
//! a proxy-wasm filter holding the whole body has no use for, and none
//! writes a form back with its parts in place. This one only finds the
//! delimiters (a linear `memchr` search), reads each part's
//! `Content-Disposition`, and refuses what it cannot read unambiguously.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memmem;
use serde_json::{Map, Value};

use crate::errors::GatewayError;
use crate::request::Api;

/// Most parts a form may have (16 images, a mask and every field of the API, with room).
const MAX_PARTS: usize = 64;
/// Largest header block of one part.
const MAX_PART_HEAD: usize = 8 * 1024;
/// Largest text field (a GPT image prompt is at most 32,000 characters).
const MAX_TEXT: usize = 256 * 1024;
/// The view's members for a form's files ([`Form::view`]), by API.
fn file_members(api: Api) -> &'static [&'static str] {
    if api.hears() { &["file"] } else { &["images", "mask", "markup"] }
}
/// Fields the provider reads as integers and as booleans.
const INTEGERS: &[&str] = &["n", "partial_images", "output_compression", "frame_count", "frame_duration_ms"];
const BOOLEANS: &[&str] = &["stream"];

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::bad_request("invalid_multipart", msg)
}

/// The boundary of a `multipart/form-data` content type; `None` for any
/// other media type; refused when the form names no usable boundary.
pub fn boundary(content_type: &[u8]) -> Result<Option<String>, GatewayError> {
    let Ok(ct) = std::str::from_utf8(content_type) else { return Ok(None) };
    let mut params = ct.split(';');
    let media = params.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return Ok(None);
    }
    let mut found = None;
    for p in params {
        let Some((k, v)) = p.split_once('=') else { continue };
        if k.trim().eq_ignore_ascii_case("boundary") {
            if found.is_some() {
                return Err(bad("The content-type names its boundary twice."));
            }
            let v = v.trim();
            found = Some(v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).to_string());
        }
    }
    // RFC 2046: 1 to 70 characters, none a control character.
    match found {
        Some(b) if (1..=70).contains(&b.len()) && b.bytes().all(|c| (0x20..0x7f).contains(&c)) && !b.ends_with(' ') => Ok(Some(b)),
        _ => Err(bad("A multipart/form-data body needs a boundary of 1 to 70 visible characters in its content-type.")),
    }
}

/// One part: its name, its headers as they are sent on, and where its
/// content lies in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    name: String,
    file: bool,
    head: String,
    content: Range<usize>,
}

/// What an uploaded file is to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileField {
    Image,
    /// `mask`, or GPT Image 2.5's `markup`: one image more, by its name.
    Single(&'static str),
    /// The audio to transcribe or translate.
    Audio,
}

/// The API's file fields. Image edits: `image` (openai-python sends
/// several as `image[]`, some clients `image[0]`, `image[1]`…), `mask`,
/// and GPT Image 2.5's `markup` (the Vercel AI SDK's OpenAI provider
/// 3.0.141). Audio: `file`.
fn file_field(api: Api, name: &str) -> Option<FileField> {
    if api.hears() {
        return (name == "file").then_some(FileField::Audio);
    }
    let indexed = |n: &str| n.strip_prefix("image[").and_then(|r| r.strip_suffix(']')).is_some_and(|i| i.bytes().all(|b| b.is_ascii_digit()));
    match name {
        "mask" => Some(FileField::Single("mask")),
        "markup" => Some(FileField::Single("markup")),
        "image" => Some(FileField::Image),
        n if indexed(n) => Some(FileField::Image),
        _ => None,
    }
}

/// A text field's name as a list item (`name[]`) or an object member
/// (`name[key]`): the member and, for an object, the key.
fn bracketed(name: &str) -> Option<(&str, Option<&str>)> {
    let (base, rest) = name.split_once('[')?;
    let key = rest.strip_suffix(']').filter(|k| !k.contains(['[', ']']))?;
    (!base.is_empty()).then_some((base, (!key.is_empty()).then_some(key)))
}

/// A form, read: its parts in order, over the body it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    boundary: String,
    parts: Vec<Part>,
}

/// A parameter of a `Content-Disposition` value (`name="x"`, `name=x`).
fn param<'a>(value: &'a str, key: &str) -> Result<Option<&'a str>, GatewayError> {
    let mut found = None;
    let mut rest = value;
    while let Some(i) = rest.find(';') {
        rest = rest.get(i + 1..).unwrap_or("").trim_start();
        let (k, tail) = rest.split_once('=').unwrap_or((rest, ""));
        let k = k.trim();
        let (v, after) = match tail.strip_prefix('"') {
            // A quoted value ends at the next quote: browsers and SDKs
            // escape a quote inside as `%22` (WHATWG), never with `\`.
            Some(q) => match q.find('"') {
                Some(end) => (q.get(..end).unwrap_or(""), q.get(end + 1..).unwrap_or("")),
                None => return Err(bad("A part's Content-Disposition has an unterminated quoted value.")),
            },
            None => {
                let end = tail.find(';').unwrap_or(tail.len());
                (tail.get(..end).unwrap_or("").trim(), tail.get(end..).unwrap_or(""))
            }
        };
        if k.eq_ignore_ascii_case(key) {
            if found.is_some() {
                return Err(bad(format!("A part's Content-Disposition names its {key} twice.")));
            }
            found = Some(v);
        }
        rest = after;
    }
    Ok(found)
}

/// A value written into a part's header: WHATWG's escapes for a quote and
/// line breaks, nothing else that is not visible ASCII or a space.
fn header_safe(v: &str) -> String {
    v.chars()
        .map(|c| match c {
            '"' => "%22".to_string(),
            '\r' => "%0D".to_string(),
            '\n' => "%0A".to_string(),
            c if c == ' ' || c.is_ascii_graphic() => c.to_string(),
            _ => "_".to_string(),
        })
        .collect()
}

/// Reads one part's header block: its field name, whether it is a file,
/// and the headers it is sent on with. Those are written anew, never
/// copied: what the provider reads of a part is then exactly what the
/// gateway read (a parameter or header another parser might read
/// differently, `name*`, a transfer encoding, a second type, is refused).
fn read_head(head: &[u8]) -> Result<(String, bool, String), GatewayError> {
    let head = std::str::from_utf8(head).map_err(|_| bad("A part's headers are not UTF-8."))?;
    let mut disposition = None;
    let mut content_type = None;
    for line in head.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            return Err(bad("A part has a header line that is not 'Name: value'."));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-disposition") {
            if disposition.replace(v).is_some() {
                return Err(bad("A part has two Content-Disposition headers."));
            }
        } else if k.eq_ignore_ascii_case("content-type") {
            if content_type.replace(v).is_some() {
                return Err(bad("A part has two Content-Type headers."));
            }
        } else if k.eq_ignore_ascii_case("content-transfer-encoding") && !["binary", "8bit", "7bit"].iter().any(|e| v.eq_ignore_ascii_case(e)) {
            return Err(bad("A part has a Content-Transfer-Encoding: send its bytes as they are (RFC 7578)."));
        }
    }
    let d = disposition.ok_or_else(|| bad("A part has no Content-Disposition header: each field of a form needs one."))?;
    if !d.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("form-data") {
        return Err(bad("A part's Content-Disposition is not form-data."));
    }
    if param(d, "name*")?.is_some() {
        return Err(bad("A part's Content-Disposition has 'name*': name it with 'name' only (RFC 7578)."));
    }
    let name = param(d, "name")?.filter(|n| !n.is_empty()).ok_or_else(|| bad("A part's Content-Disposition has no name."))?;
    if name.len() > 64 || name.chars().any(char::is_control) {
        return Err(bad("A part's name must be 1 to 64 characters, none a control character."));
    }
    // A file has a file name (`filename`, or RFC 5987's `filename*`), or
    // content that is not text.
    let filename = param(d, "filename")?;
    let named = filename.is_some() || param(d, "filename*")?.is_some();
    let binary = content_type.is_some_and(|t| !t.to_ascii_lowercase().starts_with("text/plain"));
    let mut sent = format!("Content-Disposition: form-data; name=\"{}\"", header_safe(name));
    if named || binary {
        let filename: String = header_safe(filename.unwrap_or("upload")).chars().take(128).collect();
        sent.push_str(&format!("; filename=\"{filename}\""));
        if let Some(t) = content_type.filter(|t| t.len() <= 128) {
            sent.push_str(&format!("\r\nContent-Type: {}", header_safe(t)));
        }
    }
    Ok((name.to_string(), named || binary, sent))
}

impl Form {
    /// Reads a whole body framed by `boundary`.
    pub fn read(body: &[u8], boundary: &str) -> Result<Form, GatewayError> {
        let dash = format!("--{boundary}");
        let delimiter = format!("\r\n--{boundary}");
        let finder = memmem::Finder::new(delimiter.as_bytes());
        // The first delimiter may open the body or follow a preamble.
        let mut at = if body.starts_with(dash.as_bytes()) {
            dash.len()
        } else {
            finder.find(body).map(|i| i + delimiter.len()).ok_or_else(|| bad(format!("The body has no part: no line '--{boundary}' opens one.")))?
        };
        let mut parts: Vec<Part> = Vec::new();
        loop {
            let rest = body.get(at..).unwrap_or_default();
            if rest.starts_with(b"--") {
                break;
            }
            // Transport padding, then the line break that ends the delimiter line.
            let pad = rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
            if !rest.get(pad..).unwrap_or_default().starts_with(b"\r\n") {
                return Err(bad("A boundary line is followed by more than white space."));
            }
            let start = at + pad + 2;
            let part = body.get(start..).unwrap_or_default();
            let (head, content_start) = if part.starts_with(b"\r\n") {
                (start..start, start + 2)
            } else {
                let end = memmem::find(part.get(..MAX_PART_HEAD.min(part.len())).unwrap_or_default(), b"\r\n\r\n")
                    .ok_or_else(|| bad("A part's headers do not end (with an empty line) within 8 KiB."))?;
                (start..start + end, start + end + 4)
            };
            let end = finder
                .find(body.get(content_start..).unwrap_or_default())
                .map(|i| content_start + i)
                .ok_or_else(|| bad(format!("The body ends inside a part: no closing '--{boundary}--'.")))?;
            if parts.len() == MAX_PARTS {
                return Err(bad(format!("A form may have at most {MAX_PARTS} parts.")));
            }
            let (name, file, head) = read_head(body.get(head).unwrap_or_default())?;
            parts.push(Part { name, file, head, content: content_start..end });
            at = end + delimiter.len();
        }
        Ok(Form { boundary: boundary.to_string(), parts })
    }

    /// The content of the one part named `name` (`None`: no part is);
    /// refused when several are, since the provider might read another one
    /// than the gateway did.
    pub fn only<'b>(&self, body: &'b [u8], name: &str) -> Result<Option<&'b [u8]>, GatewayError> {
        let mut named = self.parts.iter().filter(|p| p.name == name);
        let first = named.next();
        if named.next().is_some() {
            return Err(GatewayError::bad_request("duplicate_key", format!("The form has the field '{}' more than once.", crate::text::clean_field(name, 64))));
        }
        Ok(first.map(|p| body.get(p.content.clone()).unwrap_or_default()))
    }

    /// The form with the part named `name` holding `content`, every other
    /// part as it came (each with the headers [`read_head`] wrote), without
    /// preamble, padding or epilogue.
    pub fn replacing(&self, body: &[u8], name: &str, content: &[u8]) -> Result<Vec<u8>, GatewayError> {
        let delimiter = format!("\r\n--{}", self.boundary);
        if memmem::find(content, delimiter.as_bytes()).is_some() {
            return Err(bad("A part's new content holds the form's boundary."));
        }
        let mut out = Vec::with_capacity(body.len() + content.len());
        for p in &self.parts {
            out.extend_from_slice(format!("--{}\r\n", self.boundary).as_bytes());
            out.extend_from_slice(p.head.as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(if p.name == name { content } else { body.get(p.content.clone()).unwrap_or_default() });
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        Ok(out)
    }

    /// The content type of a form this one writes.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary=\"{}\"", self.boundary)
    }

    /// The JSON the form stands for (see the module's docs); refuses a
    /// field given twice, a text field that is not UTF-8 or is too long,
    /// and a file the API takes none of.
    pub fn view(&self, body: &[u8], api: Api) -> Result<Vec<u8>, GatewayError> {
        let mut m = Map::new();
        let mut images = Vec::new();
        let mut singles = Map::new();
        let twice = |name: &str| GatewayError::bad_request("duplicate_key", format!("The form has the field '{}' more than once.", crate::text::clean_field(name, 64)));
        for p in &self.parts {
            let bytes = body.get(p.content.clone()).unwrap_or_default();
            let upload = || serde_json::json!({ "upload": bytes.len() });
            let single = |singles: &mut Map<String, Value>, k: &'static str, v: Value| match singles.insert(k.to_string(), v) {
                Some(_) => Err(bad(format!("The form has more than one '{k}' file.")).with_param(k)),
                None => Ok(()),
            };
            match (p.file, file_field(api, &p.name)) {
                (true, Some(FileField::Image)) => images.push(upload()),
                (true, Some(FileField::Single(k))) => single(&mut singles, k, upload())?,
                (true, Some(FileField::Audio)) => {
                    let stated = super::audio::duration_ms(bytes);
                    let ms = super::audio::whole_seconds(stated.unwrap_or_else(|| super::audio::assumed_ms(bytes.len())));
                    single(&mut singles, "file", serde_json::json!({ "upload": bytes.len(), "ms": ms, "stated": stated.is_some() }))?
                }
                (true, None) => {
                    let takes = if api.hears() { "'file'" } else { "'image' (or 'image[]'), 'mask' and 'markup'" };
                    return Err(bad(format!("The form has a file in '{}': the API takes files only as {takes}.", crate::text::clean_field(&p.name, 64))));
                }
                (false, u) if u.is_some() || file_members(api).contains(&p.name.as_str()) => {
                    return Err(bad(format!("'{}' must be an uploaded file (a part with a filename), not a text field.", crate::text::clean_field(&p.name, 64))))
                }
                (false, _) => {
                    let text = std::str::from_utf8(bytes).map_err(|_| bad(format!("The field '{}' is not UTF-8 text.", crate::text::clean_field(&p.name, 64))))?;
                    if text.len() > MAX_TEXT {
                        return Err(bad(format!("The field '{}' is longer than {MAX_TEXT} bytes.", crate::text::clean_field(&p.name, 64))));
                    }
                    let item = Value::String(text.into());
                    let bracket = bracketed(&p.name);
                    // A list or object named like a file member (`images[]`, `file[]`) would
                    // reach the provider beside the files the reservation counted.
                    if let Some((base, _)) = bracket.filter(|(b, _)| file_members(api).contains(b) || file_field(api, b).is_some()) {
                        return Err(bad(format!("'{}' must be an uploaded file (a part with a filename), not a text field.", crate::text::clean_field(base, 64))));
                    }
                    match bracket {
                        // A list item: appended; a member of a list or an object only.
                        Some((base, key)) => match (m.entry(base).or_insert_with(|| if key.is_some() { Value::Object(Map::new()) } else { Value::Array(Vec::new()) }), key) {
                            (Value::Array(a), None) => a.push(item),
                            (Value::Object(o), Some(k)) if !o.contains_key(k) => {
                                o.insert(k.to_string(), item);
                            }
                            _ => return Err(twice(base)),
                        },
                        None if m.insert(p.name.clone(), typed(&p.name, text)).is_some() => return Err(twice(&p.name)),
                        None => {}
                    }
                }
            }
        }
        if !images.is_empty() {
            m.insert("images".into(), Value::Array(images));
        }
        // (No text field has these names: refused above.)
        m.extend(singles);
        serde_json::to_vec(&Value::Object(m)).map_err(|_| bad("The form could not be read."))
    }

    /// The form to send: its parts in order, each text field with the
    /// value `json` (the view, as planned and guarded) gives it (left out
    /// where `json` has none), fields `json` adds after them, the files'
    /// bytes as they came; each part with the headers [`read_head`] wrote,
    /// without preamble, padding or epilogue. Joined: [`Self::pieces`].
    pub fn rebuild(&self, body: &[u8], json: &[u8], api: Api) -> Result<Vec<u8>, GatewayError> {
        Ok(self.pieces(body, json, api)?.concat())
    }

    /// The same form as stretches of `body`, the form as read (files,
    /// lists: borrowed), and bytes written for it: sent to Envoy one after
    /// another, a file's bytes are never copied in the VM (a 25 MB audio
    /// file was held twice there, the form as read and the form written back).
    pub fn pieces<'a>(&self, body: &'a [u8], json: &[u8], api: Api) -> Result<Vec<Cow<'a, [u8]>>, GatewayError> {
        let mut values: Map<String, Value> = serde_json::from_slice(json).map_err(|_| bad("The form could not be written back."))?;
        for file in file_members(api) {
            values.remove(*file);
        }
        let mut out = Pieces(Vec::new());
        let open = format!("--{}\r\n", self.boundary);
        let delimiter = format!("\r\n--{}", self.boundary);
        let head_of = |out: &mut Pieces, head: &[u8]| {
            out.write(open.as_bytes());
            out.write(head);
            out.write(b"\r\n\r\n");
        };
        // (Lists and objects are sent as they came: the planning changes none.)
        for base in self.parts.iter().filter(|p| !p.file).filter_map(|p| bracketed(&p.name)) {
            values.remove(base.0);
        }
        let field = |out: &mut Pieces, head: &[u8], text: &[u8]| -> Result<(), GatewayError> {
            // (A value the planner wrote must not end the part early.)
            if memmem::find(text, delimiter.as_bytes()).is_some() {
                return Err(bad("A field's new value holds the form's boundary."));
            }
            head_of(out, head);
            out.write(text);
            out.write(b"\r\n");
            Ok(())
        };
        for p in &self.parts {
            let head = p.head.as_bytes();
            if p.file || bracketed(&p.name).is_some() {
                // (As read: it ends where the first delimiter was found.)
                head_of(&mut out, head);
                out.0.push(Cow::Borrowed(body.get(p.content.clone()).unwrap_or_default()));
                out.write(b"\r\n");
                continue;
            }
            match values.remove(&p.name) {
                None | Some(Value::Null) => {}
                Some(v) => field(&mut out, head, as_text(&v).as_bytes())?,
            }
        }
        for (k, v) in values.iter().filter(|(_, v)| !v.is_null()) {
            field(&mut out, format!("Content-Disposition: form-data; name=\"{}\"", header_safe(k)).as_bytes(), as_text(v).as_bytes())?;
        }
        out.write(format!("--{}--\r\n", self.boundary).as_bytes());
        Ok(out.0)
    }
}

/// Pieces being written: bytes written one after another make one piece.
struct Pieces<'a>(Vec<Cow<'a, [u8]>>);

impl Pieces<'_> {
    fn write(&mut self, b: &[u8]) {
        match self.0.last_mut() {
            Some(Cow::Owned(w)) => w.extend_from_slice(b),
            _ => self.0.push(Cow::Owned(b.to_vec())),
        }
    }
}

/// A request body that is a form, as it came, and its reading.
#[derive(Debug)]
pub struct Upload {
    body: Vec<u8>,
    form: Form,
    api: Api,
}

impl Upload {
    /// Reads the body of an API that takes forms ([`Api::takes_forms`])
    /// when its `content_type` is a form: the upload and the JSON it
    /// stands for ([`Form::view`]), which the request path plans. `None`
    /// for a JSON body (and for any other API, which takes JSON only and
    /// refuses a form as such); an audio API's body must be a form.
    pub fn read(api: Api, content_type: Option<&[u8]>, body: Vec<u8>) -> Result<(Option<Upload>, Vec<u8>), GatewayError> {
        let b = match content_type.filter(|_| api.takes_forms()) {
            Some(ct) => boundary(ct)?,
            None => None,
        };
        let Some(b) = b else {
            if api.hears() {
                return Err(bad(format!("{} takes a multipart/form-data upload (the audio as 'file'), not JSON.", api.describe())));
            }
            return Ok((None, body));
        };
        let form = Form::read(&body, &b)?;
        let view = form.view(&body, api)?;
        Ok((Some(Upload { body, form, api }), view))
    }

    /// The form to send for `json`, the view as planned ([`Form::rebuild`]).
    pub fn sent(&self, json: &[u8]) -> Result<Vec<u8>, GatewayError> {
        self.form.rebuild(&self.body, json, self.api)
    }

    /// The same in pieces, the files' borrowed from the form as it came
    /// ([`Form::pieces`]): written to Envoy one after another.
    pub fn sent_in_pieces(&self, json: &[u8]) -> Result<Vec<Cow<'_, [u8]>>, GatewayError> {
        self.form.pieces(&self.body, json, self.api)
    }

    /// The content type of the form [`Self::sent`] writes.
    pub fn content_type(&self) -> String {
        self.form.content_type()
    }
}

/// A text field's value as the JSON member the provider reads it as.
fn typed(name: &str, text: &str) -> Value {
    let integer = || text.parse::<i64>().ok().filter(|_| text.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
    match (INTEGERS.contains(&name), BOOLEANS.contains(&name)) {
        (true, _) => integer().map_or_else(|| Value::String(text.into()), Value::from),
        (_, true) if text == "true" || text == "false" => Value::Bool(text == "true"),
        _ => Value::String(text.into()),
    }
}

/// A member's value as a form field's text.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
