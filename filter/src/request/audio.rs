//! How long an uploaded audio file plays, read from its container's
//! header: what a transcription or translation is reserved by (OpenAI bills
//! `whisper-1` per second of audio and the `gpt-4o-*-transcribe` models
//! about ten audio tokens a second), and what it is charged when the
//! answer carries no usage (`response_format` `text`, `srt`, `vtt`; a
//! translation's `json`).
//!
//! The formats OpenAI takes (flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav,
//! webm) each state their length in a header, or a count the length
//! follows from:
//!
//! - WAV: the `data` chunk's bytes over the `fmt ` chunk's byte rate;
//! - FLAC: STREAMINFO's total samples over its sample rate;
//! - MP3: a Xing/Info or VBRI header's frame count, else (constant bit
//!   rate) the bytes over the first frame's bit rate;
//! - Ogg (Opus, Vorbis): the last page's granule position over the rate
//!   (48 kHz for Opus, less its pre-skip);
//! - MP4/M4A: `moov/mvhd`'s duration over its timescale;
//! - WebM/Matroska: `Segment/Info/Duration`, else (a browser's
//!   MediaRecorder writes none) the last `Cluster`'s timecode.
//!
//! Sources: the WAVE format (RIFF, Microsoft/IBM 1991), RFC 9639 (FLAC)
//! §8.2, ISO/IEC 11172-3 and 13818-3 frame headers with the LAME
//! Xing/Info tag and Fraunhofer's VBRI tag, RFC 3533 (Ogg) and RFC 7845
//! (Opus in Ogg) §4, ISO/IEC 14496-12 §8.2.2 (`mvhd`), RFC 9559
//! (Matroska) §5.1.2 and §5.1.3.
//!
//! Written here rather than taken from a crate: the decoders that read
//! these (`symphonia`) are large, decode far more than the length, and
//! panic-free reading of hostile bytes is easier to hold to in 300 lines
//! that only read. A file read here never makes the length shorter than
//! its bytes allow ([`floor_ms`]): a header claiming a rate no real
//! encoding has is not believed.

/// The length, in milliseconds, of `bytes` as an audio file, when its
/// container states it; `None` for a container not read here or one that
/// states none.
pub fn duration_ms(bytes: &[u8]) -> Option<u64> {
    let ms = if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        wav(bytes, bytes.len() as u64)
    } else if bytes.starts_with(b"fLaC") {
        flac(bytes)
    } else if bytes.starts_with(b"OggS") {
        ogg(bytes)
    } else if bytes.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        webm(bytes)
    } else if bytes.get(4..8) == Some(b"ftyp") {
        mp4(bytes)
    } else {
        mp3(bytes, bytes.len() as u64)
    }?;
    Some(ms.max(floor_ms(bytes.len())))
}

/// The length of an audio stream of `total` bytes of which `head` are its
/// first and `tail` its last, when they state it: a WAV (its data chunk's
/// length, streamed, is unknown: its bytes are the data), an MP3 (a
/// Xing/VBRI frame count, else its bytes over its bit rate), an Ogg
/// stream (its last page's granule position, in `tail`). What a
/// text-to-speech answer, passed on as it comes, is measured by.
pub fn streamed_ms(head: &[u8], tail: &[u8], total: u64) -> Option<u64> {
    let total_len = usize::try_from(total).unwrap_or(usize::MAX);
    let ms = if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WAVE") {
        wav(head, total)
    } else if head.starts_with(b"OggS") {
        // (The first page names the codec, the last says how far it played.)
        ogg(&[head, tail].concat())
    } else {
        mp3(head, total)
    }?;
    Some(ms.max(floor_ms(total_len)))
}

/// Audio input tokens a token-billed model may bill for `ms` of audio:
/// 1,000 a minute. OpenAI publishes no rate, but prices
/// `gpt-4o-transcribe` at $6 a million audio tokens and estimates it at
/// $0.006 a minute (`gpt-4o-mini-transcribe`: $3 and $0.003), output
/// included: at most 1,000 audio tokens a minute.
pub fn tokens(ms: u64) -> u64 {
    ms.div_ceil(60)
}

/// The most output tokens a transcript of `ms` of audio may bill: the
/// models' published 2,000 (`gpt-4o-transcribe`'s "max output tokens"),
/// and 10 a second more for audio long enough to be transcribed in chunks
/// (`chunking_strategy`): speech runs 2 to 4 tokens a second.
pub fn output_tokens(ms: u64) -> u64 {
    2_000u64.saturating_add(ms / 100)
}

/// `ms` rounded up to whole seconds, as audio is billed (OpenAI's API
/// reference: 8.47 seconds of audio, `"usage": {"type": "duration",
/// "seconds": 9}`).
pub fn whole_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).saturating_mul(1000)
}

/// The length assumed of an upload whose container states none: its bytes
/// at 32 kbit/s (a browser's speech Opus runs 24 to 64).
pub fn assumed_ms(len: usize) -> u64 {
    (len as u64).saturating_mul(8) / 32
}

/// The shortest an upload of `len` bytes can play: its bytes at 1,536
/// kbit/s, past any compressed encoding's rate and CD-quality PCM's.
fn floor_ms(len: usize) -> u64 {
    (len as u64).saturating_mul(8) / 1_536
}

/// `len` bytes of `b` at `at`, if it has them.
fn slice(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    b.get(at..at.checked_add(len)?)
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    slice(b, at, N)?.try_into().ok()
}

fn u16le(b: &[u8], at: usize) -> Option<u64> {
    array(b, at).map(|a| u64::from(u16::from_le_bytes(a)))
}

fn u32le(b: &[u8], at: usize) -> Option<u64> {
    array(b, at).map(|a| u64::from(u32::from_le_bytes(a)))
}

fn u32be(b: &[u8], at: usize) -> Option<u64> {
    array(b, at).map(|a| u64::from(u32::from_be_bytes(a)))
}

fn u64be(b: &[u8], at: usize) -> Option<u64> {
    array(b, at).map(u64::from_be_bytes)
}

fn byte(b: &[u8], at: usize) -> Option<u64> {
    b.get(at).map(|x| u64::from(*x))
}

/// `count / per_second` seconds in milliseconds; `None` for a zero rate.
fn ms(count: u64, per_second: u64) -> Option<u64> {
    (per_second > 0).then(|| u64::try_from(u128::from(count) * 1000 / u128::from(per_second)).unwrap_or(u64::MAX))
}

/// `total`: the file's whole length (`b` may be its start only).
fn wav(b: &[u8], total: u64) -> Option<u64> {
    let mut at = 12usize;
    let mut byte_rate = None;
    while let (Some(id), Some(size)) = (slice(b, at, 4), at.checked_add(4).and_then(|i| u32le(b, i))) {
        let body = at.checked_add(8)?;
        match id {
            b"fmt " => byte_rate = u32le(b, body.checked_add(8)?),
            // A streamed WAV names no length (0 or 0xFFFFFFFF): what follows is the data.
            b"data" => return ms(size.min(total.saturating_sub(body as u64)), byte_rate?),
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body.checked_add(usize::try_from(size).ok()?.checked_add(1)? & !1)?;
    }
    None
}

fn flac(b: &[u8]) -> Option<u64> {
    // The first metadata block is STREAMINFO (type 0, 34 bytes).
    if b.get(4).map(|t| t & 0x7f) != Some(0) {
        return None;
    }
    let info = slice(b, 8, 34)?;
    let rate = (byte(info, 10)? << 12) | (byte(info, 11)? << 4) | (byte(info, 12)? >> 4);
    let samples = ((byte(info, 13)? & 0x0f) << 32) | u32be(info, 14)?;
    (samples > 0).then_some(())?;
    ms(samples, rate)
}

fn ogg(b: &[u8]) -> Option<u64> {
    // The first page's packet names the codec: its rate and what it skips.
    let first = b.get(28..)?;
    let (rate, skip) = if first.starts_with(b"OpusHead") {
        (48_000, u16le(first, 10)?)
    } else if first.starts_with(b"\x01vorbis") {
        (u32le(first, 12)?, 0)
    } else {
        return None;
    };
    // The last page with a granule position (one that ends no packet has -1).
    let finder = memchr::memmem::FinderRev::new(b"OggS");
    let mut end = b.len();
    while let Some(at) = finder.rfind(b.get(..end)?) {
        let g = array(b, at.saturating_add(6)).map(i64::from_le_bytes);
        if let Some(g) = g.filter(|g| *g > 0) {
            return ms((g as u64).saturating_sub(skip), rate);
        }
        end = at;
    }
    None
}

fn mp4(b: &[u8]) -> Option<u64> {
    let moov = boxes(b).find(|(t, _)| t == b"moov")?.1;
    let mvhd = boxes(moov).find(|(t, _)| t == b"mvhd")?.1;
    match mvhd.first()? {
        0 => ms(u32be(mvhd, 16)?, u32be(mvhd, 12)?),
        1 => ms(u64be(mvhd, 24)?, u32be(mvhd, 20)?),
        _ => None,
    }
}

/// ISO BMFF boxes in `b`: each type and content.
fn boxes(b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let size = u32be(b, at)?;
        let t: [u8; 4] = array(b, at.checked_add(4)?)?;
        let (head, len) = match size {
            0 => (8, b.len().checked_sub(at)?),
            1 => (16, usize::try_from(u64be(b, at.checked_add(8)?)?).ok()?),
            n => (8, usize::try_from(n).ok()?),
        };
        let content = b.get(at.checked_add(head)?..at.checked_add(len)?)?;
        at = at.checked_add(len.max(head))?;
        Some((t, content))
    })
}

/// An EBML variable-length integer at `at`: its value (the marker bit
/// cleared for a size, kept for an ID) and its length; `u64::MAX` for a
/// size of all ones ("unknown").
fn vint(b: &[u8], at: usize, id: bool) -> Option<(u64, usize)> {
    let first = *b.get(at)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let bytes = slice(b, at, len)?;
    let mut v = if id { u64::from(first) } else { u64::from(first) & (0xff >> len) };
    for x in bytes.get(1..)? {
        v = v << 8 | u64::from(*x);
    }
    let all_ones = !id && v == (1u64 << (7 * len)) - 1;
    Some((if all_ones { u64::MAX } else { v }, len))
}

/// The elements of an EBML master's content: ID, content (to the end of
/// `b` for an unknown size).
fn elements(b: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let (id, il) = vint(b, at, true)?;
        let (size, sl) = vint(b, at.checked_add(il)?, false)?;
        let start = at.checked_add(il + sl)?;
        let end = if size == u64::MAX { b.len() } else { start.checked_add(usize::try_from(size).ok()?)?.min(b.len()) };
        let content = b.get(start..end)?;
        at = end.max(start);
        Some((id, content))
    })
}

fn ebml_uint(b: &[u8]) -> Option<u64> {
    (b.len() <= 8).then(|| b.iter().fold(0u64, |v, x| v << 8 | u64::from(*x)))
}

const SEGMENT: u64 = 0x1853_8067;
const INFO: u64 = 0x1549_a966;
const TIMECODE_SCALE: u64 = 0x2a_d7b1;
const DURATION: u64 = 0x4489;
const CLUSTER: u64 = 0x1f43_b675;
const TIMECODE: u64 = 0xe7;

fn webm(b: &[u8]) -> Option<u64> {
    let segment = elements(b).find(|(id, _)| *id == SEGMENT)?.1;
    let info = elements(segment).find(|(id, _)| *id == INFO).map(|(_, c)| c).unwrap_or_default();
    let scale = elements(info).find(|(id, _)| *id == TIMECODE_SCALE).and_then(|(_, c)| ebml_uint(c)).unwrap_or(1_000_000);
    let ns = |units: f64| (units * scale as f64 / 1e6).clamp(0.0, 1e15) as u64;
    let duration = elements(info).find(|(id, _)| *id == DURATION).and_then(|(_, c)| match c.len() {
        4 => Some(f64::from(f32::from_be_bytes(c.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(c.try_into().ok()?)),
        _ => None,
    });
    if let Some(d) = duration.filter(|d| d.is_finite() && *d > 0.0) {
        return Some(ns(d));
    }
    // No duration: the last cluster's timecode (a cluster holds a few
    // seconds at most; what plays after its start is not counted).
    let finder = memchr::memmem::FinderRev::new(&[0x1f, 0x43, 0xb6, 0x75]);
    let at = finder.rfind(segment)?;
    let cluster = elements(segment.get(at..)?).next().filter(|(id, _)| *id == CLUSTER)?.1;
    let t = elements(cluster).find(|(id, _)| *id == TIMECODE).and_then(|(_, c)| ebml_uint(c))?;
    Some(ns(t as f64))
}

/// An MPEG audio frame header at `at`: (bit rate in bit/s, sample rate,
/// samples a frame, side information's length).
fn mpeg_frame(b: &[u8], at: usize) -> Option<(u64, u64, u64, usize)> {
    let h = u32be(b, at)?;
    if h >> 21 != 0x7ff {
        return None;
    }
    let version = (h >> 19) & 3; // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    let layer = (h >> 17) & 3; // 1: III, 2: II, 3: I
    let bitrate_index = ((h >> 12) & 0xf) as usize;
    let rate_index = ((h >> 10) & 3) as usize;
    let mono = (h >> 6) & 3 == 3;
    if version == 1 || layer == 0 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    let mpeg1 = version == 3;
    const V1_L3: [u64; 15] = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
    const V1_L2: [u64; 15] = [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384];
    const V1_L1: [u64; 15] = [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448];
    const V2_L1: [u64; 15] = [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256];
    const V2_L23: [u64; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let table = match (mpeg1, layer) {
        (true, 1) => &V1_L3,
        (true, 2) => &V1_L2,
        (true, _) => &V1_L1,
        (false, 3) => &V2_L1,
        (false, _) => &V2_L23,
    };
    let rates: [u64; 3] = match version {
        3 => [44_100, 48_000, 32_000],
        2 => [22_050, 24_000, 16_000],
        _ => [11_025, 12_000, 8_000],
    };
    let samples = match (layer, mpeg1) {
        (3, _) => 384,
        (2, _) | (1, true) => 1152,
        _ => 576,
    };
    let side = match (mpeg1, mono) {
        (true, false) => 32,
        (true, true) | (false, false) => 17,
        (false, true) => 9,
    };
    Some((table.get(bitrate_index)? * 1000, *rates.get(rate_index)?, samples, side))
}

/// `total`: the file's whole length (`b` may be its start only).
fn mp3(b: &[u8], total: u64) -> Option<u64> {
    // An ID3v2 tag first: ten bytes, then a 28-bit "syncsafe" length.
    let mut at = 0usize;
    if b.starts_with(b"ID3") {
        let len = slice(b, 6, 4)?.iter().fold(0usize, |v, x| v << 7 | usize::from(x & 0x7f));
        let footer = if b.get(5).is_some_and(|f| f & 0x10 != 0) { 10 } else { 0 };
        at = 10 + len + footer;
    }
    // The first frame within 64 KiB (padding and junk may come first).
    let limit = at.saturating_add(64 * 1024).min(b.len());
    let (at, (bitrate, rate, samples, side)) = (at..limit).find_map(|i| mpeg_frame(b, i).map(|f| (i, f)))?;
    let tag = at + 4 + side;
    if matches!(slice(b, tag, 4), Some(b"Xing" | b"Info")) && u32be(b, tag + 4).is_some_and(|f| f & 1 != 0) {
        return ms(u32be(b, tag + 8)?.saturating_mul(samples), rate);
    }
    if slice(b, at + 36, 4) == Some(b"VBRI") {
        return ms(u32be(b, at + 36 + 14)?.saturating_mul(samples), rate);
    }
    ms(total.saturating_sub(at as u64).saturating_mul(8), bitrate)
}

#[cfg(test)]
mod tests;
