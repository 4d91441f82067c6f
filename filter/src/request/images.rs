//! OpenAI's image generations (`POST /v1/images/generations`) and edits
//! (`POST /v1/images/edits`): what a request may produce, as the output
//! side of its reservation, and what an edit's images may cost as input.
//!
//! The GPT image models bill tokens, and each answer reports them
//! (`usage`, priced with the image output tokens at `image_output`). The
//! gateway cannot cap an image's tokens; it reserves what the request asks
//! for: `n` images at the tokens of their quality and size, and 100 more
//! for each partial image a stream asks for.
//!
//! Sources: OpenAI's image generation guide, "Cost and latency" (GPT Image
//! 1: a 1024×1024 image is 272 tokens at low quality, 1,056 at medium and
//! 4,160 at high; 1024×1536 and 1536×1024 are 1.5 × these; the per-image
//! prices published beside it, $0.011 / $0.042 / $0.167 at $40 a million,
//! are these counts) and "Streaming" ("each partial image incurs an
//! additional 100 image output tokens"); openai-python
//! `types/image_generate_params.py` (`n` 1 to 10, `partial_images` 0 to 3,
//! `gpt-image-2` sizes `WIDTHxHEIGHT` up to 3840×2160).
//!
//! Each of `n` images is billed as a call of its own, its input tokens
//! with it (measured on GPT Image 2 edits: community.openai.com, "OpenAI
//! must document the input image pricing of gpt-image-2", 2026-06), so the
//! input side is reserved `n` times too.
//!
//! The tokens of a size are taken in proportion to its pixels, which the
//! three published sizes follow; `auto` quality is reserved as `high` and
//! `auto` size as the largest standard size. Past the sizes the guide
//! lists, twice that proportion: resellers' published rates for GPT Image
//! 2 at 2048×2048 and 3840×2160 run 1.8 times it. GPT Image 2.5's
//! `xhigh` and `max` qualities (the Vercel AI SDK's OpenAI provider 3.0.141,
//! `openaiImageModelGenerationOptions`) are reserved at 2 and 4 times
//! `high`, and GPT Image 2.6's animated GIFs (`output_format: "gif"`,
//! `frame_count` 2 to 64, 9 when absent) at a whole image a frame. All
//! estimates where no table is published (what runs past them stays within
//! the overshoot bound, docs/security.md); the record is what the answer
//! reports.

use crate::errors::GatewayError;

/// Most images one request may ask for (`n`).
pub const MAX_IMAGES: u64 = 10;
/// Most frames an animated GIF may ask for, and what it gets when it names none.
pub const MAX_FRAMES: u64 = 64;
const DEFAULT_FRAMES: u64 = 9;
/// Most partial images a stream may ask for.
pub const MAX_PARTIAL_IMAGES: u64 = 3;
/// Image output tokens each partial image adds.
pub const PARTIAL_IMAGE_TOKENS: u64 = 100;
/// The largest edge and pixel count any size may have (`gpt-image-2`'s 3840×2160).
const MAX_EDGE: u64 = 3840;
const MAX_PIXELS: u64 = 3840 * 2160;
/// A 1024×1024 image's tokens at each quality (GPT Image 1).
const SQUARE_LOW: u64 = 272;
const SQUARE_MEDIUM: u64 = 1056;
const SQUARE_HIGH: u64 = 4160;
const SQUARE_PIXELS: u64 = 1024 * 1024;
/// The largest standard size, what `auto` is reserved as.
const AUTO_PIXELS: u64 = 1536 * 1024;

/// What an image generation asks for, as far as its cost goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageAsk {
    /// Tokens of a 1024×1024 image at the quality asked for.
    square_tokens: u64,
    pixels: u64,
    partial_images: u64,
    gif: bool,
    frames: Option<u64>,
}

impl Default for ImageAsk {
    fn default() -> Self {
        ImageAsk { square_tokens: SQUARE_HIGH, pixels: AUTO_PIXELS, partial_images: 0, gif: false, frames: None }
    }
}

fn bad(code: &'static str, param: &'static str, msg: String) -> GatewayError {
    GatewayError::bad_request(code, msg).with_param(param)
}

impl ImageAsk {
    /// Reads `quality` (raw JSON). `standard` and `hd` are DALL·E's,
    /// reserved as `high`.
    pub fn quality(&mut self, raw: &str) -> Result<(), GatewayError> {
        self.square_tokens = match serde_json::from_str::<Option<String>>(raw).as_ref().map(Option::as_deref) {
            Ok(Some("low")) => SQUARE_LOW,
            Ok(Some("medium")) => SQUARE_MEDIUM,
            Ok(None | Some("high" | "auto" | "hd" | "standard")) => SQUARE_HIGH,
            Ok(Some("xhigh")) => 2 * SQUARE_HIGH,
            Ok(Some("max")) => 4 * SQUARE_HIGH,
            _ => {
                return Err(bad("invalid_value", "quality", "'quality' must be one of low, medium, high, xhigh, max, auto (standard, hd for DALL·E).".into()))
            }
        };
        Ok(())
    }

    /// Reads `size` (raw JSON): `auto`, or `WIDTHxHEIGHT` within the
    /// largest size any model makes.
    pub fn size(&mut self, raw: &str) -> Result<(), GatewayError> {
        let refuse = || bad("invalid_value", "size", format!("'size' must be auto or WIDTHxHEIGHT in pixels, each edge at most {MAX_EDGE} and at most {MAX_PIXELS} pixels in all."));
        let size = serde_json::from_str::<Option<String>>(raw).map_err(|_| refuse())?;
        self.pixels = match size.as_deref() {
            None | Some("auto") => AUTO_PIXELS,
            Some(s) => {
                let (w, h) = s.split_once('x').ok_or_else(refuse)?;
                let edge = |e: &str| e.parse::<u64>().ok().filter(|v| (1..=MAX_EDGE).contains(v) && e.bytes().all(|b| b.is_ascii_digit()));
                let (w, h) = edge(w).zip(edge(h)).ok_or_else(refuse)?;
                Some(w * h).filter(|p| *p <= MAX_PIXELS).ok_or_else(refuse)?
            }
        };
        Ok(())
    }

    /// Reads `output_format` (raw JSON): only whether it is an animated GIF
    /// (the provider refuses a format it does not make).
    pub fn output_format(&mut self, raw: &str) {
        self.gif = serde_json::from_str::<Option<String>>(raw).ok().flatten().as_deref() == Some("gif");
    }

    /// Reads `frame_count` (raw JSON), 2 to 64.
    pub fn frame_count(&mut self, raw: &str) -> Result<(), GatewayError> {
        match serde_json::from_str::<Option<u64>>(raw) {
            Ok(n) if n.is_none_or(|n| (2..=MAX_FRAMES).contains(&n)) => self.frames = n,
            _ => return Err(bad("invalid_type", "frame_count", "'frame_count' must be an integer from 2 to 64.".into())),
        }
        Ok(())
    }

    /// Reads `partial_images` (raw JSON), 0 to 3.
    pub fn partial_images(&mut self, raw: &str) -> Result<(), GatewayError> {
        match serde_json::from_str::<Option<u64>>(raw) {
            Ok(n) if n.unwrap_or(0) <= MAX_PARTIAL_IMAGES => self.partial_images = n.unwrap_or(0),
            _ => return Err(bad("invalid_type", "partial_images", "'partial_images' must be an integer from 0 to 3.".into())),
        }
        Ok(())
    }

    /// The most image output tokens one image may take: its size's share
    /// of a square image's tokens, and its partial images when streamed.
    pub fn tokens_per_image(&self, stream: bool) -> u64 {
        let beyond_the_table = if self.pixels > AUTO_PIXELS { 2 } else { 1 };
        let image = (self.square_tokens * self.pixels * beyond_the_table).div_ceil(SQUARE_PIXELS);
        let frames = if self.gif { self.frames.unwrap_or(DEFAULT_FRAMES) } else { 1 };
        image * frames + if stream { self.partial_images * PARTIAL_IMAGE_TOKENS } else { 0 }
    }
}

/// Most images one edit may send (its mask besides).
pub const MAX_EDIT_IMAGES: u64 = 16;
/// The most input image tokens one input image is reserved: at low input
/// fidelity, four 512-pixel tiles of GPT Image 1's input pricing (65 a
/// picture and 129 a tile; a 1024×1024 picture is billed one tile, 194
/// tokens, as developers measured it on community.openai.com, "Vision
/// pricing calculator inaccurate", 2025-06); at high fidelity 6,240 more
/// (measured at about 3,050 for 1024×1024 on GPT Image 1: fal.ai's
/// published rates; GPT Image 2 bills its inputs, always at high fidelity,
/// in at most 1,536 32-pixel patches: community.openai.com, "OpenAI must
/// document the input image pricing of gpt-image-2", 2026-06).
const INPUT_IMAGE_LOW: u64 = 65 + 4 * 129;
const INPUT_IMAGE_HIGH: u64 = INPUT_IMAGE_LOW + 6240;

/// An image edit's input images: `images` (JSON references, or the files
/// of a form: [`super::multipart`]) and `mask`, each billed as input image
/// tokens, and `input_fidelity`, which makes them dearer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EditInputs {
    images: u64,
    /// `mask` and `markup`, one image each.
    extra: [bool; 2],
    high: Option<bool>,
}

impl EditInputs {
    /// Reads `images` (1 to 16 references), or `mask` or `markup` (one
    /// image each: a reference, a URL, or a form's file), raw JSON.
    pub fn input(&mut self, member: &str, raw: &str) -> Result<(), GatewayError> {
        type Reference = serde_json::Map<String, serde_json::Value>;
        if let Some(i) = ["mask", "markup"].iter().position(|m| *m == member) {
            let one = serde_json::from_str::<serde_json::Value>(raw).ok().filter(|v| v.is_null() || v.is_object() || v.is_string());
            let one = one.ok_or_else(|| bad("invalid_type", if i == 0 { "mask" } else { "markup" }, format!("'{member}' must be one image: a reference (an object with 'image_url' or 'file_id') or a file in a form.")))?;
            if let Some(slot) = self.extra.get_mut(i) {
                *slot = !one.is_null();
            }
            return Ok(());
        }
        let images = serde_json::from_str::<Vec<Reference>>(raw).ok().filter(|v| (1..=MAX_EDIT_IMAGES as usize).contains(&v.len())).ok_or_else(|| {
            bad("invalid_type", "images", format!("'images' must be 1 to {MAX_EDIT_IMAGES} image references (objects with 'image_url' or 'file_id'), or 'image' files in a form."))
        })?;
        self.images = images.len() as u64;
        Ok(())
    }

    /// Reads `input_fidelity` (raw JSON): `high` or `low`.
    pub fn fidelity(&mut self, raw: &str) -> Result<(), GatewayError> {
        self.high = match serde_json::from_str::<Option<String>>(raw).as_ref().map(Option::as_deref) {
            Ok(None) => None,
            Ok(Some("high")) => Some(true),
            Ok(Some("low")) => Some(false),
            _ => return Err(bad("invalid_value", "input_fidelity", "'input_fidelity' must be high or low.".into())),
        };
        Ok(())
    }

    /// The most input image tokens the images may be billed, `model`
    /// being the model asked for: high fidelity unless it is a GPT Image 1
    /// model (1, 1 Mini, 1.5: low unless asked; later ones match their
    /// inputs at high fidelity whatever is asked). Refused without an image.
    pub fn tokens(&self, model: &str) -> Result<u64, GatewayError> {
        if self.images == 0 {
            return Err(bad("missing_images", "images", "The request has no image to edit: send 'image' files (multipart/form-data) or 'images' (JSON).".into()));
        }
        let low = model.starts_with("gpt-image-1") && self.high != Some(true);
        let extra = self.extra.iter().filter(|e| **e).count() as u64;
        Ok((self.images + extra) * if low { INPUT_IMAGE_LOW } else { INPUT_IMAGE_HIGH })
    }
}

/// Reads `n` (raw JSON): 1 to 10 images.
pub fn images(raw: &str) -> Result<u64, GatewayError> {
    match serde_json::from_str::<Option<u64>>(raw) {
        Ok(None) => Ok(1),
        Ok(Some(n)) if (1..=MAX_IMAGES).contains(&n) => Ok(n),
        _ => Err(bad("invalid_type", "n", "'n' must be an integer from 1 to 10.".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(quality: &str, size: &str) -> ImageAsk {
        let mut a = ImageAsk::default();
        a.quality(quality).unwrap();
        a.size(size).unwrap();
        a
    }

    #[test]
    fn the_published_sizes_take_the_published_tokens() {
        for (q, square, oblong) in [("\"low\"", 272, 408), ("\"medium\"", 1056, 1584), ("\"high\"", 4160, 6240)] {
            assert_eq!(ask(q, "\"1024x1024\"").tokens_per_image(false), square, "{q}");
            assert_eq!(ask(q, "\"1536x1024\"").tokens_per_image(false), oblong, "{q}");
            assert_eq!(ask(q, "\"1024x1536\"").tokens_per_image(false), oblong, "{q}");
        }
        // auto is the dearest: high quality, the largest standard size
        assert_eq!(ask("\"auto\"", "\"auto\"").tokens_per_image(false), 6240);
        assert_eq!(ask("null", "null").tokens_per_image(false), 6240);
        assert_eq!(ImageAsk::default().tokens_per_image(false), 6240);
        // gpt-image-2's largest size: twice its pixels' proportion, past the table
        assert_eq!(ask("\"high\"", "\"3840x2160\"").tokens_per_image(false), (2 * 4160 * 3840 * 2160u64).div_ceil(1 << 20));
        assert_eq!(ask("\"low\"", "\"2048x2048\"").tokens_per_image(false), 272 * 4 * 2);
        // GPT Image 2.5's dearer qualities
        assert_eq!(ask("\"xhigh\"", "\"1024x1024\"").tokens_per_image(false), 2 * 4160);
        assert_eq!(ask("\"max\"", "\"1024x1024\"").tokens_per_image(false), 4 * 4160);
    }

    #[test]
    fn an_animated_gif_is_reserved_a_whole_image_a_frame() {
        let mut a = ask("\"low\"", "\"1024x1024\"");
        a.frame_count("20").unwrap();
        assert_eq!(a.tokens_per_image(false), 272, "frames count only for a GIF");
        a.output_format("\"gif\"");
        assert_eq!(a.tokens_per_image(false), 272 * 20);
        a.frame_count("null").unwrap();
        assert_eq!(a.tokens_per_image(false), 272 * 9, "the API's default");
        for bad in ["1", "65", "2.5", "\"9\""] {
            assert!(a.frame_count(bad).is_err(), "{bad}");
        }
        a.output_format("\"png\"");
        assert_eq!(a.tokens_per_image(false), 272);
    }

    #[test]
    fn partial_images_add_a_hundred_tokens_each_when_streamed() {
        let mut a = ask("\"low\"", "\"1024x1024\"");
        a.partial_images("3").unwrap();
        assert_eq!(a.tokens_per_image(true), 272 + 300);
        assert_eq!(a.tokens_per_image(false), 272);
        for bad in ["4", "-1", "1.5", "\"2\""] {
            assert!(a.partial_images(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_edits_images_are_reserved_as_input_image_tokens() {
        let read = |members: &[(&str, &str)]| {
            let mut e = EditInputs::default();
            for (k, raw) in members {
                if *k == "input_fidelity" { e.fidelity(raw)? } else { e.input(k, raw)? }
            }
            Ok::<_, GatewayError>(e)
        };
        let two = r#"[{"image_url": "https://example.com/a.png"}, {"file_id": "file-1"}]"#;
        let e = read(&[("images", two)]).unwrap();
        assert_eq!(e.tokens("gpt-image-1.5").unwrap(), 2 * 581);
        assert_eq!(e.tokens("gpt-image-2").unwrap(), 2 * 6821, "GPT Image 2 matches its inputs at high fidelity");
        let e = read(&[("images", two), ("mask", r#"{"upload": 10}"#), ("input_fidelity", "\"high\"")]).unwrap();
        assert_eq!(e.tokens("gpt-image-1").unwrap(), 3 * 6821);
        assert_eq!(read(&[("images", r#"[{"upload": 1}]"#), ("mask", "null")]).unwrap().tokens("gpt-image-1-mini").unwrap(), 581);
        assert_eq!(EditInputs::default().tokens("gpt-image-1").unwrap_err().code, "missing_images");
        for bad in ["[]", "{}", "\"a.png\"", "[\"a.png\"]", "null"] {
            assert_eq!(read(&[("images", bad)]).unwrap_err().code, "invalid_type", "{bad}");
        }
        let seventeen = format!("[{}]", vec![r#"{"file_id":"f"}"#; 17].join(","));
        assert!(read(&[("images", &seventeen)]).is_err());
        assert!(read(&[("mask", "[]")]).is_err());
        // GPT Image 2.5's markup is one image more
        assert_eq!(read(&[("images", two), ("markup", r#"{"upload": 5}"#)]).unwrap().tokens("gpt-image-2.5-flare").unwrap(), 3 * 6821);
        assert_eq!(read(&[("input_fidelity", "\"max\"")]).unwrap_err().code, "invalid_value");
    }

    #[test]
    fn what_no_model_makes_is_refused() {
        let mut a = ImageAsk::default();
        for bad in ["\"huge\"", "\"4000x1000\"", "\"3840x3840\"", "\"0x1024\"", "\"1024x\"", "\"+1024x1024\"", "\"1024 x 1024\"", "7", "\"1024x1024x1\""] {
            assert_eq!(a.size(bad).unwrap_err().code, "invalid_value", "{bad}");
        }
        assert_eq!(a.quality("\"ultra\"").unwrap_err().code, "invalid_value");
        assert_eq!(a.quality("3").unwrap_err().code, "invalid_value");
        for bad in ["0", "11", "-1", "2.0", "\"2\""] {
            assert!(images(bad).is_err(), "{bad}");
        }
        assert_eq!((images("null").unwrap(), images("10").unwrap()), (1, 10));
    }
}
