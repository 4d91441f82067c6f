//! The usage of OpenAI's image generations (`/v1/images/generations`) and
//! edits (`/v1/images/edits`: the same answer; its stream's events are
//! `image_edit.partial_image` and `image_edit.completed`).
//!
//! A JSON answer ends with `usage` (openai-python `types/images_response.py`):
//! `input_tokens` (text and images), `output_tokens`, and
//! `output_tokens_details.image_tokens` / `text_tokens` where the model
//! reports them (GPT Image 1.5 and later bill text output at a lower rate);
//! without details every output token is an image token. A stream
//! (`types/image_gen_stream_event.py`) sends `image_generation.partial_image`
//! events and an `image_generation.completed` event for each image, with
//! its usage: the usages of a stream's completed events are added up, so a
//! stream of several images counts each image (and, if the provider
//! repeats the prompt's tokens in each, counts them more than once: the
//! side a spend gate may err on).

use serde::Deserialize;

use super::Usage;

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    image_tokens: Option<u64>,
}

/// `cached_tokens_details` (the Responses API's image tool).
#[derive(Deserialize, Default)]
struct CachedDetails {
    #[serde(default)]
    cached_image_tokens: Option<u64>,
}

/// An image generation's usage; also the Responses API's
/// `tool_usage.image_gen` (the image generation tool's calls, summed),
/// which may carry `cached_tokens` (openai-python `types/responses/response.py`).
#[derive(Deserialize)]
struct ImagesUsage {
    input_tokens: u64,
    output_tokens: u64,
    #[serde(default, deserialize_with = "crate::usage::object")]
    output_tokens_details: Option<Details>,
    #[serde(default, deserialize_with = "crate::usage::object")]
    input_tokens_details: Option<Details>,
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::usage::object")]
    cached_tokens_details: Option<CachedDetails>,
}

impl From<ImagesUsage> for Usage {
    fn from(u: ImagesUsage) -> Usage {
        let image = u.output_tokens_details.and_then(|d| d.image_tokens).unwrap_or(u.output_tokens);
        // Input image tokens read from the cache are priced as cache reads: the uncached rest at `image_input`.
        let cached_images = u.cached_tokens_details.and_then(|d| d.cached_image_tokens).unwrap_or(0);
        let image_in = u.input_tokens_details.and_then(|d| d.image_tokens).unwrap_or(0).saturating_sub(cached_images);
        Usage {
            input_tokens: u.input_tokens,
            image_input_tokens: image_in,
            cached_input_tokens: u.cached_tokens.unwrap_or(0),
            cache_reported: u.cached_tokens.is_some(),
            output_tokens: u.output_tokens,
            image_output_tokens: image,
            ..Default::default()
        }
        .bounded()
    }
}

/// The usage of a JSON answer (unknown members, the images among them, skipped).
pub fn from_body(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "crate::usage::object")]
        usage: Option<ImagesUsage>,
    }
    serde_json::from_slice::<Body>(body).ok()?.usage.map(Usage::from)
}

/// A `usage` object found on its own (the tail of an answer or an event too large to hold).
pub fn from_value(v: serde_json::Value) -> Option<Usage> {
    super::from_object::<ImagesUsage>(&v).map(Usage::from)
}

/// What one stream event says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// An `image_generation.completed` event's usage.
    pub usage: Option<Usage>,
    /// The event is an `image_generation.completed`.
    pub completed: bool,
    pub error: bool,
}

/// The event type names an image's completion (the gateway's own
/// reading of an over-long event looks for it in the event's first bytes).
pub const COMPLETED: &str = "image_generation.completed";
/// An edited image's completion (`types/image_edit_completed_event.py`).
pub const EDIT_COMPLETED: &str = "image_edit.completed";

pub fn observe(name: Option<&str>, data: &str) -> Seen {
    let Some(ev) = super::typed_event(name, data) else { return Seen::default() };
    match ev.kind.as_deref() {
        Some(COMPLETED | EDIT_COMPLETED) => Seen { usage: ev.usage.and_then(from_value), completed: true, error: false },
        Some("error") => Seen { error: true, ..Default::default() },
        _ => Seen::default(),
    }
}

/// Adds an image's usage to what a stream counted so far.
pub fn add(total: Option<Usage>, u: Usage) -> Usage {
    super::sum(total.unwrap_or_default(), u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_priced_by_its_image_and_text_tokens() {
        // openai-python's ImagesResponse, GPT Image 1 (no output details)
        let b = br#"{"created":1,"data":[{"b64_json":"iVBORw0KGgo="}],"usage":{"input_tokens":50,"input_tokens_details":{"image_tokens":40,"text_tokens":10},"output_tokens":4160,"total_tokens":4210}}"#;
        let u = from_body(b).unwrap();
        assert_eq!((u.input_tokens, u.image_input_tokens, u.output_tokens, u.image_output_tokens), (50, 40, 4160, 4160));
        // the tool's usage: cached image tokens are cache reads, not uncached image input
        let tool = serde_json::json!({"input_tokens": 500, "input_tokens_details": {"image_tokens": 400, "text_tokens": 100},
            "output_tokens": 272, "total_tokens": 772, "cached_tokens": 300, "cached_tokens_details": {"cached_image_tokens": 300, "cached_text_tokens": 0}});
        let t = from_value(tool).unwrap();
        assert_eq!((t.cached_input_tokens, t.image_input_tokens), (300, 100));
        // with output details, the text output is apart
        let b = br#"{"created":1,"usage":{"input_tokens":9,"input_tokens_details":{"image_tokens":0,"text_tokens":9},"output_tokens":1100,"output_tokens_details":{"image_tokens":1056,"text_tokens":44},"total_tokens":1109}}"#;
        assert_eq!(from_body(b).unwrap().image_output_tokens, 1056);
        // no usage (DALL·E), or one that is no count: none
        assert_eq!(from_body(br#"{"created":1,"data":[{"url":"https://x"}]}"#), None);
        assert_eq!(from_body(br#"{"created":1,"usage":{}}"#), None);
        assert_eq!(from_body(br#"{"usage":{"input_tokens":-1,"output_tokens":5}}"#), None);
        // more image tokens than output: clamped when priced, never more than reported
        let odd = from_body(br#"{"usage":{"input_tokens":1,"output_tokens":5,"output_tokens_details":{"image_tokens":9}}}"#).unwrap();
        assert_eq!(odd.output_tokens, 5);
    }

    #[test]
    fn a_streams_completed_events_are_added_up() {
        let done = r#"{"type":"image_generation.completed","b64_json":"AA==","usage":{"input_tokens":5,"input_tokens_details":{"image_tokens":0,"text_tokens":5},"output_tokens":272,"total_tokens":277}}"#;
        let s = observe(Some(COMPLETED), done);
        assert!(s.completed && !s.error);
        let total = add(Some(add(None, s.usage.unwrap())), s.usage.unwrap());
        assert_eq!((total.input_tokens, total.output_tokens, total.image_output_tokens), (10, 544, 544));
        // every count of each image is added, its input images too
        let edit = from_value(serde_json::json!({"input_tokens": 300, "input_tokens_details": {"image_tokens": 250, "text_tokens": 50}, "output_tokens": 272})).unwrap();
        assert_eq!(add(Some(edit), edit).image_input_tokens, 500);
        // an edit's stream (`types/image_edit_completed_event.py`) completes its images alike
        let edited = r#"{"type":"image_edit.completed","b64_json":"AA==","usage":{"input_tokens":600,"input_tokens_details":{"image_tokens":580,"text_tokens":20},"output_tokens":272,"total_tokens":872}}"#;
        let s = observe(Some(EDIT_COMPLETED), edited);
        assert!(s.completed && s.usage.is_some_and(|u| u.image_input_tokens == 580));
        assert_eq!(observe(None, r#"{"type":"image_edit.partial_image","b64_json":"AA==","partial_image_index":0}"#), Seen::default());
        let partial = r#"{"type":"image_generation.partial_image","b64_json":"AA==","partial_image_index":0}"#;
        assert_eq!(observe(None, partial), Seen::default());
        assert!(observe(Some("error"), r#"{"error":{"message":"x"}}"#).error);
        assert!(observe(None, r#"{"type":"error","error":{"message":"x"}}"#).error);
        assert_eq!(observe(None, "[DONE]"), Seen::default());
    }
}
