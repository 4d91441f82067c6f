//! Content-Encoding of provider responses, decoded for reading only, and
//! of client requests, decoded before they go on (`request_body`).
//!
//! The filter asks providers for identity encoding (it drops the client's
//! `accept-encoding`), but a provider or a proxy on the way may compress
//! anyway. The filter inflates a copy (gzip, deflate) to read the usage,
//! with a cap on the decoded size so a small compression bomb cannot make
//! it work forever; the client receives the bytes as they came, unless
//! the filter rewrites the answer (translates, guards, checks its JSON,
//! strips a usage chunk): then it gets the decoded answer, rewritten, and
//! no `content-encoding` ([`whole`] for a held answer, chunk by chunk in
//! whole events for a stream, which ends with an error event in the
//! client's format if it stops decoding).
//! Encodings it cannot read (br, zstd, …) are reported, never guessed at.

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

/// Most decoded bytes the filter inflates for one response (64 MiB).
pub const MAX_DECODED_BYTES: u64 = 64 << 20;
/// Longest gzip header accepted (optional name/comment/extra fields).
const MAX_GZIP_HEADER: usize = 64 << 10;

/// A response's `content-encoding`, as far as the filter is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Coding {
    #[default]
    Identity,
    Gzip,
    Deflate,
    /// Anything else: the body cannot be read (value kept for the record, cleaned).
    Unreadable(String),
}

impl Coding {
    pub fn from_header(v: Option<&[u8]>) -> Coding {
        let Some(v) = v else { return Coding::Identity };
        let s = String::from_utf8_lossy(v).trim().to_ascii_lowercase();
        match s.as_str() {
            "" | "identity" => Coding::Identity,
            "gzip" | "x-gzip" => Coding::Gzip,
            "deflate" => Coding::Deflate,
            other => Coding::Unreadable(crate::text::clean_field(other, 32)),
        }
    }
}

enum Stage {
    GzipHeader(Vec<u8>),
    Body,
    /// A gzip member's CRC-32 and length (RFC 1952), after its deflate data.
    GzipTrailer(Vec<u8>),
    Done,
    Failed,
}

/// Inflates a gzip or deflate body incrementally.
pub struct Inflater {
    coding: Coding,
    /// Most decoded bytes made ([`MAX_DECODED_BYTES`] unless set lower).
    limit: u64,
    state: Box<InflateState>,
    stage: Stage,
    zlib_checked: bool,
    sniff: Vec<u8>,
    decoded: u64,
    /// The CRC-32 of what was decoded (gzip).
    crc: crc32fast::Hasher,
    out: Vec<u8>,
}

/// Why decoding stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Corrupt,
    TooLarge,
    /// The body ended before its compressed data did.
    Truncated,
}

impl DecodeError {
    /// Why a held answer that does not decode cannot be translated
    /// ([`crate::errors::GatewayError::untranslatable_answer`]).
    pub fn untranslatable(self) -> &'static str {
        match self {
            DecodeError::Corrupt => "its compressed body is not valid gzip or deflate data",
            DecodeError::TooLarge => "its compressed body decodes to more than the gateway holds (max_response_bytes)",
            DecodeError::Truncated => "its compressed body ends before its compressed data does",
        }
    }

    /// Why an answer in `coding` (one the filter cannot read) cannot be translated.
    pub fn unreadable_coding(name: &str) -> String {
        format!("its content-encoding '{name}' cannot be decoded here")
    }

    /// What the client of a provider's answer sent on decoded is told when
    /// it stops decoding.
    pub fn answer_message(self) -> &'static str {
        match self {
            DecodeError::Corrupt => "The provider's compressed answer is not valid gzip or deflate data past this point.",
            DecodeError::TooLarge => "The provider's compressed answer decodes to more than the gateway reads (max_response_bytes).",
            DecodeError::Truncated => "The provider's compressed answer ended before its compressed data did.",
        }
    }
}

impl Inflater {
    pub fn new(coding: &Coding) -> Option<Inflater> {
        let (format, stage) = match coding {
            Coding::Gzip => (DataFormat::Raw, Stage::GzipHeader(Vec::new())),
            Coding::Deflate => (DataFormat::Zlib, Stage::Body),
            _ => return None,
        };
        Some(Inflater {
            coding: coding.clone(),
            limit: MAX_DECODED_BYTES,
            state: InflateState::new_boxed(format),
            stage,
            zlib_checked: !matches!(coding, Coding::Deflate),
            sniff: Vec::new(),
            decoded: 0,
            crc: crc32fast::Hasher::new(),
            out: vec![0; 32 << 10],
        })
    }

    /// The same inflater making at most `limit` decoded bytes (never more
    /// than [`MAX_DECODED_BYTES`]): for a stream sent on decoded, whose
    /// pieces the filter holds one at a time, so a small compressed piece
    /// cannot become tens of MiB in the VM.
    pub fn limited(mut self, limit: u64) -> Inflater {
        self.limit = self.limit.min(limit);
        self
    }

    /// A new inflater for the same coding and limit, at the start.
    pub fn fresh(&self) -> Option<Inflater> {
        Inflater::new(&self.coding).map(|i| i.limited(self.limit))
    }

    pub fn error(&self) -> Option<DecodeError> {
        match self.stage {
            Stage::Failed if self.decoded >= self.limit => Some(DecodeError::TooLarge),
            Stage::Failed => Some(DecodeError::Corrupt),
            _ => None,
        }
    }

    /// Feeds compressed bytes; `sink` receives the decoded bytes.
    pub fn push(&mut self, input: &[u8], sink: impl FnMut(&[u8])) {
        if let Stage::GzipHeader(buf) = &mut self.stage {
            buf.extend_from_slice(input);
            match gzip_header_len(buf) {
                Ok(Some(n)) => {
                    let mut rest = std::mem::take(buf);
                    rest.drain(..n.min(rest.len()));
                    self.stage = Stage::Body;
                    self.push_body(&rest, sink);
                }
                Ok(None) if buf.len() <= MAX_GZIP_HEADER => {}
                _ => self.stage = Stage::Failed,
            }
            return;
        }
        if matches!(self.stage, Stage::GzipTrailer(_)) {
            return self.push_trailer(input);
        }
        self.push_body(input, sink);
    }

    /// The gzip trailer's bytes: once all 8 are in, the decoded bytes'
    /// CRC-32 and length must match them (a body cut or altered inside its
    /// compressed data is refused, not read).
    fn push_trailer(&mut self, input: &[u8]) {
        let Stage::GzipTrailer(t) = &mut self.stage else { return };
        let need = 8usize.saturating_sub(t.len());
        t.extend_from_slice(input.get(..need.min(input.len())).unwrap_or(&[]));
        let (Some(crc), Some(size)) = (t.get(..4), t.get(4..8)) else { return };
        let matches = crc == self.crc.clone().finalize().to_le_bytes() && size == (self.decoded as u32).to_le_bytes();
        self.stage = if matches { Stage::Done } else { Stage::Failed };
    }

    fn push_body(&mut self, mut input: &[u8], mut sink: impl FnMut(&[u8])) {
        if !self.zlib_checked {
            // HTTP "deflate" is meant to be zlib; some servers send raw deflate.
            // Two bytes tell: hold a lone first byte until the second comes.
            self.sniff.extend_from_slice(input);
            let (Some(&cmf), Some(&flg)) = (self.sniff.first(), self.sniff.get(1)) else { return };
            let zlib = cmf & 0x0f == 8 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
            if !zlib {
                self.state = InflateState::new_boxed(DataFormat::Raw);
            }
            self.zlib_checked = true;
            let held = std::mem::take(&mut self.sniff);
            return self.push_body(&held, sink);
        }
        while matches!(self.stage, Stage::Body) && !input.is_empty() {
            let r = inflate(&mut self.state, input, &mut self.out, MZFlush::None);
            let written = r.bytes_written.min(self.out.len());
            if let Some(out) = self.out.get(..written) {
                let room = self.limit.saturating_sub(self.decoded);
                let take = (written as u64).min(room) as usize;
                if let Some(part) = out.get(..take) {
                    sink(part);
                }
                self.crc.update(out);
                self.decoded = self.decoded.saturating_add(written as u64);
                if self.decoded >= self.limit {
                    self.stage = Stage::Failed;
                    return;
                }
            }
            input = input.get(r.bytes_consumed..).unwrap_or(&[]);
            match r.status {
                Ok(MZStatus::StreamEnd) if self.coding == Coding::Gzip => self.stage = Stage::GzipTrailer(Vec::new()),
                Ok(MZStatus::StreamEnd) => self.stage = Stage::Done,
                Ok(_) if r.bytes_consumed == 0 && written == 0 => break,
                Ok(_) => {}
                Err(_) => self.stage = Stage::Failed,
            }
        }
        if matches!(self.stage, Stage::GzipTrailer(_)) {
            self.push_trailer(input);
        }
    }

    /// At end of body: finished cleanly?
    pub fn finished(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }

    /// At end of body: why what was decoded is not the whole answer, if it is not.
    pub fn ended(&self) -> Option<DecodeError> {
        match self.error() {
            None if !self.finished() => Some(DecodeError::Truncated),
            e => e,
        }
    }
}

/// A request body that came with `content-encoding`, decoded: the filter
/// must read its JSON, and sends it on decoded (the header removed), so the
/// provider gets what was read and priced. `Ok(None)`: not encoded. At most
/// `limit` decoded bytes (`max_request_bytes`) are made: the body is fed in
/// 4 KiB slices, so a compression bomb stops within a few MiB of the limit
/// instead of at 64 MiB. A body that does not end its stream is refused:
/// what was cut off would never be read.
pub fn request_body(coding: Option<&[u8]>, body: &[u8], limit: usize) -> Result<Option<Vec<u8>>, crate::errors::GatewayError> {
    use crate::errors::GatewayError;
    let coding = Coding::from_header(coding);
    let Some(mut inflater) = Inflater::new(&coding) else {
        return match coding {
            Coding::Unreadable(name) => Err(GatewayError::unsupported_encoding(&name)),
            _ => Ok(None),
        };
    };
    match whole(&mut inflater, body, limit) {
        Ok(out) => Ok(Some(out)),
        Err(DecodeError::TooLarge) => Err(GatewayError::too_large(limit)),
        Err(DecodeError::Corrupt | DecodeError::Truncated) => Err(GatewayError::bad_request(
            "invalid_encoding",
            format!("The request body is not whole, valid {} data, as its content-encoding says.", if coding == Coding::Gzip { "gzip" } else { "deflate" }),
        )),
    }
}

/// A whole body decoded through `inflater`: at most `limit` decoded bytes
/// are made (the body is fed in 4 KiB slices, so a compression bomb stops
/// within a few MiB of the limit), and a body that does not end its
/// stream is `Truncated` (what was cut off would never be read).
pub fn whole(inflater: &mut Inflater, body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    for slice in body.chunks(4 << 10) {
        inflater.push(slice, |d| out.extend_from_slice(d));
        if out.len() > limit {
            return Err(DecodeError::TooLarge);
        }
        if inflater.error().is_some() {
            break;
        }
    }
    match inflater.ended() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// A whole answer in `coding`, decoded when the filter can read it: the
/// plain bytes, or the answer as it came and why it could not be read (in
/// the words an untranslatable answer's error uses). Identity passes as it is.
pub fn whole_answer(coding: &Coding, body: Vec<u8>, limit: usize) -> (Vec<u8>, Option<String>) {
    match Inflater::new(coding) {
        Some(mut inf) => match whole(&mut inf, &body, limit) {
            Ok(plain) => (plain, None),
            Err(e) => (body, Some(e.untranslatable().to_owned())),
        },
        None => match coding {
            Coding::Unreadable(name) => (body, Some(DecodeError::unreadable_coding(name))),
            _ => (body, None),
        },
    }
}

/// The length of a complete gzip header at the start of `b`, `Ok(None)`
/// while more bytes are needed, `Err` when it is not gzip.
fn gzip_header_len(b: &[u8]) -> Result<Option<usize>, ()> {
    if b.len() < 10 {
        return if b.iter().zip([0x1f, 0x8b, 8]).all(|(x, y)| *x == y) { Ok(None) } else { Err(()) };
    }
    if b.get(..3) != Some(&[0x1f, 0x8b, 8][..]) {
        return Err(());
    }
    let flags = *b.get(3).ok_or(())?;
    let mut p = 10usize;
    if flags & 4 != 0 {
        let (Some(&lo), Some(&hi)) = (b.get(p), b.get(p + 1)) else { return Ok(None) };
        p += 2 + (usize::from(hi) << 8 | usize::from(lo));
    }
    for flag in [8u8, 16] {
        if flags & flag != 0 {
            match b.get(p..).and_then(|rest| rest.iter().position(|&c| c == 0)) {
                Some(z) => p += z + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 2 != 0 {
        p += 2;
    }
    Ok((p <= b.len()).then_some(p))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A gzip member, its trailer the data's CRC-32 and length.
    pub(crate) fn gzip(data: &[u8], with_name: bool) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, if with_name { 8 } else { 0 }, 0, 0, 0, 0, 0, 3];
        if with_name {
            out.extend_from_slice(b"body.json\0");
        }
        out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
        out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    fn decode(coding: Coding, body: &[u8], chunk: usize) -> (Vec<u8>, bool) {
        let mut inf = Inflater::new(&coding).unwrap();
        let mut out = Vec::new();
        for c in body.chunks(chunk) {
            inf.push(c, |d| out.extend_from_slice(d));
        }
        (out, inf.finished())
    }

    #[test]
    fn a_whole_answer_is_decoded_or_passed_on_as_it_came_with_why() {
        let plain = br#"{"usage":{"prompt_tokens":10}}"#.to_vec();
        let zipped = gzip(&plain, false);
        assert_eq!(whole_answer(&Coding::Gzip, zipped.clone(), 1 << 20), (plain.clone(), None));
        assert_eq!(whole_answer(&Coding::Identity, plain.clone(), 1 << 20), (plain.clone(), None));
        let (body, why) = whole_answer(&Coding::Gzip, zipped.clone(), 8);
        assert_eq!((body, why.as_deref()), (zipped.clone(), Some(DecodeError::TooLarge.untranslatable())));
        let cut = zipped.get(..zipped.len() - 4).unwrap_or_default().to_vec();
        assert_eq!(whole_answer(&Coding::Gzip, cut.clone(), 1 << 20), (cut, Some(DecodeError::Truncated.untranslatable().to_owned())));
        let (body, why) = whole_answer(&Coding::Unreadable("br".into()), plain.clone(), 1 << 20);
        assert_eq!((body, why), (plain, Some(DecodeError::unreadable_coding("br"))));
    }

    #[test]
    fn gzip_and_deflate_at_any_chunk_size() {
        let data = br#"{"usage":{"prompt_tokens":10,"completion_tokens":2500000}}"#.repeat(50);
        for chunk in [1, 3, 11, 4096] {
            for named in [false, true] {
                let (out, done) = decode(Coding::Gzip, &gzip(&data, named), chunk);
                assert!(out == data && done, "gzip chunk {chunk} named {named}: {} bytes, done {done}", out.len());
            }
            let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&data, 6);
            let (out, done) = decode(Coding::Deflate, &zlib, chunk);
            assert!(out == data && done, "zlib chunk {chunk}: {} bytes, done {done}", out.len());
            let raw = miniz_oxide::deflate::compress_to_vec(&data, 6);
            let (out, done) = decode(Coding::Deflate, &raw, chunk);
            assert!(out == data && done, "raw chunk {chunk}: {} bytes, done {done}", out.len());
        }
    }

    #[test]
    fn garbage_and_bombs_stop_cleanly() {
        let mut inf = Inflater::new(&Coding::Gzip).unwrap();
        inf.push(b"not gzip at all", |_| {});
        assert_eq!(inf.error(), Some(DecodeError::Corrupt));
        let bomb = gzip(&vec![0u8; (MAX_DECODED_BYTES + 1024) as usize], false);
        let mut inf = Inflater::new(&Coding::Gzip).unwrap();
        let mut n = 0u64;
        inf.push(&bomb, |d| n += d.len() as u64);
        assert_eq!(inf.error(), Some(DecodeError::TooLarge));
        assert!(n <= MAX_DECODED_BYTES);
        // A lower limit stops there, and a fresh inflater keeps it.
        let small = gzip(&vec![0u8; 1 << 20], false);
        let mut inf = Inflater::new(&Coding::Gzip).unwrap().limited(64 << 10);
        let mut n = 0u64;
        inf.push(&small, |d| n += d.len() as u64);
        assert_eq!((inf.error(), n), (Some(DecodeError::TooLarge), 64 << 10));
        let mut again = inf.fresh().unwrap();
        again.push(&small, |_| {});
        assert_eq!(again.error(), Some(DecodeError::TooLarge));
    }

    #[test]
    fn a_whole_answer_decodes_within_its_limit_and_a_fresh_inflater_starts_over() {
        let data = br#"{"id":"msg_1","usage":{"input_tokens":3,"output_tokens":12}}"#.repeat(20);
        let packed = gzip(&data, true);
        let mut inf = Inflater::new(&Coding::Gzip).unwrap();
        assert_eq!(whole(&mut inf, &packed, data.len()), Ok(data.clone()));
        // Used up; a fresh one for the same coding reads the same bytes again.
        let (mut again, mut out) = (inf.fresh().unwrap(), Vec::new());
        again.push(&packed, |d| out.extend_from_slice(d));
        assert!(out == data && again.finished());
        assert_eq!(whole(&mut Inflater::new(&Coding::Gzip).unwrap(), &packed, data.len() - 1), Err(DecodeError::TooLarge));
        assert_eq!(whole(&mut Inflater::new(&Coding::Gzip).unwrap(), &packed[..packed.len() - 9], 1 << 20), Err(DecodeError::Truncated), "cut short");
        assert_eq!(whole(&mut Inflater::new(&Coding::Gzip).unwrap(), &data, 1 << 20), Err(DecodeError::Corrupt), "not gzip");
        let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&data, 6);
        assert_eq!(whole(&mut Inflater::new(&Coding::Deflate).unwrap(), &zlib, 1 << 20), Ok(data));
    }

    #[test]
    fn a_compressed_request_is_decoded_whole_or_refused() {
        let json = br#"{"model":"cheap","messages":[{"role":"user","content":"hi"}]}"#.to_vec();
        let limit = 1 << 20;
        assert_eq!(request_body(None, &json, limit), Ok(None));
        assert_eq!(request_body(Some(b"identity"), &json, limit), Ok(None));
        assert_eq!(request_body(Some(b"gzip"), &gzip(&json, true), limit), Ok(Some(json.clone())));
        assert_eq!(request_body(Some(b"deflate"), &miniz_oxide::deflate::compress_to_vec_zlib(&json, 6), limit), Ok(Some(json.clone())));
        let code = |r: Result<Option<Vec<u8>>, crate::errors::GatewayError>| r.map_err(|e| (e.status, e.code));
        assert_eq!(code(request_body(Some(b"br"), &json, limit)), Err((415, "unsupported_encoding")));
        assert_eq!(code(request_body(Some(b"gzip, gzip"), &json, limit)), Err((415, "unsupported_encoding")));
        assert_eq!(code(request_body(Some(b"gzip"), &json, limit)), Err((400, "invalid_encoding")), "not gzip");
        let whole = gzip(&json, false);
        assert_eq!(code(request_body(Some(b"gzip"), &whole[..whole.len() - 20], limit)), Err((400, "invalid_encoding")), "cut short");
        // Its compressed data whole but its trailer cut, or not the data's: not the body the client compressed.
        assert_eq!(code(request_body(Some(b"gzip"), &whole[..whole.len() - 3], limit)), Err((400, "invalid_encoding")), "trailer cut");
        for at in [8, 4] {
            let mut altered = whole.clone();
            let i = altered.len() - at;
            altered[i] ^= 1;
            assert_eq!(code(request_body(Some(b"gzip"), &altered, limit)), Err((400, "invalid_encoding")), "trailer {at} from the end altered");
        }
        assert_eq!(code(request_body(Some(b"gzip"), &[], limit)), Err((400, "invalid_encoding")), "empty");
        // A bomb stops near the limit, not at 64 MiB.
        let bomb = gzip(&vec![b' '; 48 << 20], false);
        assert_eq!(code(request_body(Some(b"gzip"), &bomb, limit)), Err((413, "request_too_large")));
        assert_eq!(code(request_body(Some(b"gzip"), &gzip(&vec![b' '; limit + 1], false), limit)), Err((413, "request_too_large")));
        assert_eq!(request_body(Some(b"gzip"), &gzip(&vec![b' '; limit], false), limit).map(|b| b.map(|b| b.len())), Ok(Some(limit)));
    }

    #[test]
    fn codings() {
        assert_eq!(Coding::from_header(None), Coding::Identity);
        assert_eq!(Coding::from_header(Some(b" GZIP ")), Coding::Gzip);
        assert_eq!(Coding::from_header(Some(b"br")), Coding::Unreadable("br".into()));
        assert!(Inflater::new(&Coding::Identity).is_none());
    }
}
