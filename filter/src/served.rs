//! The processing tier and inference geography an answer says it was
//! served at, which is what the provider bills.
//!
//! A request's own `service_tier`, `speed` and `inference_geo` are not the
//! whole story. OpenAI's `"auto"` (and a request that names no tier) runs
//! at the project's tier, which its owner may set to Fast mode; Fast mode
//! falls back to standard under a traffic surge, billed standard. An
//! Anthropic workspace may default its requests to US-only inference. The
//! answer names what served it, and billing follows that:
//! - OpenAI chat and Responses: `service_tier` (`"default"`, `"priority"`,
//!   `"flex"`, …), in the answer, every stream chunk, and the Responses
//!   stream's `response` objects.
//! - Anthropic: `usage.speed` (`"standard"`, `"fast"`) and
//!   `usage.inference_geo` (`"global"`, `"us"`).
//! - Gemini: the `x-gemini-service-tier` header (`"standard"` when
//!   Priority was downgraded).
//!
//! Sources: developers.openai.com/api/docs/guides/fast-mode ("To opt in at
//! the project level … Requests that don't specify a service tier"; "The
//! service_tier field … indicates the tier used to process the request"),
//! the OpenAI API reference's `service_tier` ("the response body will
//! include the service_tier value based on the processing mode actually
//! used to serve the request"), platform.claude.com/docs/en/manage-claude/
//! data-residency (a workspace default; "Check where inference actually
//! ran: response.usage.inference_geo"), and the Anthropic SDK's `Usage`
//! (`inference_geo`, `speed: "standard" | "fast"`).
//!
//! A word this gateway does not know, or a value that is not a string,
//! says nothing: the request is charged at what it asked for.

use serde::{Deserialize, Deserializer};

use crate::pricing::Premium;
use tollgate_protocol::record::{InferenceGeo, ServiceTier};

/// A tier, speed or geography word in an answer, read without allocating.
/// Any other JSON value (a number, an object) reads as [`Word::Unknown`]
/// rather than failing the answer's parse, which would lose its usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Word {
    #[default]
    Unknown,
    /// `"default"`, `"scale"` (OpenAI's committed Scale Tier, billed
    /// apart from tokens), `"standard"`.
    Standard,
    /// `"auto"`: the request's word echoed (a Responses stream's first
    /// events), not a tier that served it.
    Auto,
    Priority,
    Fast,
    Ultrafast,
    Flex,
    Global,
    Us,
}

impl Word {
    fn of(s: &str) -> Word {
        match s {
            "default" | "scale" | "standard" => Word::Standard,
            "auto" => Word::Auto,
            "priority" => Word::Priority,
            "fast" => Word::Fast,
            "ultrafast" => Word::Ultrafast,
            "flex" => Word::Flex,
            "global" => Word::Global,
            "us" => Word::Us,
            _ => Word::Unknown,
        }
    }
}

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Word, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Word;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Word, E> {
                Ok(Word::of(s))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Word, E> {
                Ok(Word::Unknown)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Word, E> {
                Ok(Word::Unknown)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Word, E> {
                Ok(Word::Unknown)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Word, E> {
                Ok(Word::Unknown)
            }
            fn visit_unit<E>(self) -> Result<Word, E> {
                Ok(Word::Unknown)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Word, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Word::Unknown)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Word, A::Error> {
                while a.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Word::Unknown)
            }
        }
        d.deserialize_any(V)
    }
}

/// What an answer says served it. Each part is `None` when the answer
/// does not say (or says a word not known), `Some(None)` for standard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub tier: Option<Option<ServiceTier>>,
    pub geo: Option<Option<InferenceGeo>>,
}

impl Served {
    /// OpenAI's `service_tier` (chat, legacy completions, Responses).
    pub(crate) fn openai(tier: Word) -> Served {
        let tier = match tier {
            Word::Standard => Some(None),
            Word::Priority | Word::Fast => Some(Some(ServiceTier::Priority)),
            Word::Ultrafast => Some(Some(ServiceTier::Ultrafast)),
            Word::Flex => Some(Some(ServiceTier::Flex)),
            Word::Unknown | Word::Auto | Word::Global | Word::Us => None,
        };
        Served { tier, geo: None }
    }

    /// Anthropic's `usage.speed` and `usage.inference_geo`.
    pub(crate) fn anthropic(speed: Word, geo: Word) -> Served {
        Served {
            tier: match speed {
                Word::Standard => Some(None),
                Word::Fast => Some(Some(ServiceTier::Fast)),
                _ => None,
            },
            geo: match geo {
                Word::Global => Some(None),
                Word::Us => Some(Some(InferenceGeo::Us)),
                _ => None,
            },
        }
    }

    /// Gemini's `x-gemini-service-tier` answer header ("standard" when
    /// Priority was over its limit and downgraded: ai.google.dev/
    /// gemini-api/docs/priority-inference), in the REST enum's values or
    /// its names.
    pub fn gemini(header: &[u8]) -> Served {
        Served { tier: gemini_tier(header), geo: None }
    }

    /// A later event's word wins where it says one.
    pub(crate) fn then(self, later: Served) -> Served {
        Served { tier: later.tier.or(self.tier), geo: later.geo.or(self.geo) }
    }
}

/// A Gemini tier word, in the REST enum's values or its names, as the
/// request's `serviceTier` and the answer's `x-gemini-service-tier` say
/// it: `Some(None)` standard, `None` a word not known.
pub fn gemini_tier(word: &[u8]) -> Option<Option<ServiceTier>> {
    match word {
        b"standard" | b"unspecified" | b"SERVICE_TIER_STANDARD" | b"SERVICE_TIER_UNSPECIFIED" => Some(None),
        b"priority" | b"SERVICE_TIER_PRIORITY" => Some(Some(ServiceTier::Priority)),
        b"flex" | b"SERVICE_TIER_FLEX" => Some(Some(ServiceTier::Flex)),
        _ => None,
    }
}

impl Premium {
    /// The premium billed: each part as the answer says it was served,
    /// else as the request asked.
    pub fn settled(self, served: Served) -> Premium {
        Premium { tier: served.tier.unwrap_or(self.tier), geo: served.geo.unwrap_or(self.geo) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        service_tier: Word,
        #[serde(default)]
        usage: Option<u64>,
    }

    fn word(json: &str) -> Word {
        serde_json::from_str::<Answer>(json).unwrap().service_tier
    }

    #[test]
    fn any_json_value_reads_as_a_word_and_never_fails_the_answer() {
        assert_eq!(word(r#"{"service_tier":"priority"}"#), Word::Priority);
        assert_eq!(word(r#"{"service_tier":"fl\u0065x"}"#), Word::Flex);
        assert_eq!(word(r#"{}"#), Word::Unknown);
        // (A number past f64's range fails serde_json before any visitor
        // sees it, as it does for `model`: such an answer is estimated.)
        for odd in ["null", "7", "-1", "1e300", "true", "[\"priority\"]", "{\"a\":[1,{}]}", "\"PRIORITY\"", "\"hyperfast\""] {
            let a: Answer = serde_json::from_str(&format!(r#"{{"service_tier":{odd},"usage":5}}"#)).unwrap();
            assert_eq!((a.service_tier, a.usage), (Word::Unknown, Some(5)), "{odd}");
        }
    }

    #[test]
    fn openai_tiers_map_to_what_is_billed() {
        assert_eq!(Served::openai(Word::Fast).tier, Some(Some(ServiceTier::Priority)));
        assert_eq!(Served::openai(Word::Priority).tier, Some(Some(ServiceTier::Priority)));
        assert_eq!(Served::openai(Word::Ultrafast).tier, Some(Some(ServiceTier::Ultrafast)));
        assert_eq!(Served::openai(Word::Flex).tier, Some(Some(ServiceTier::Flex)));
        assert_eq!(Served::openai(Word::Standard).tier, Some(None));
        assert_eq!(Served::openai(Word::Unknown), Served::default());
        assert_eq!(Served::openai(Word::Auto), Served::default(), "an echo of the request says nothing");
        assert_eq!(Served::openai(Word::Us), Served::default());
    }

    #[test]
    fn anthropic_speed_and_geography_map_to_what_is_billed() {
        let s = Served::anthropic(Word::Fast, Word::Us);
        assert_eq!((s.tier, s.geo), (Some(Some(ServiceTier::Fast)), Some(Some(InferenceGeo::Us))));
        let s = Served::anthropic(Word::Standard, Word::Global);
        assert_eq!((s.tier, s.geo), (Some(None), Some(None)));
        // OpenAI's words are not Anthropic's
        assert_eq!(Served::anthropic(Word::Priority, Word::Unknown), Served::default());
    }

    #[test]
    fn the_answer_decides_each_part_it_names_and_the_request_the_rest() {
        let asked = Premium { tier: Some(ServiceTier::Priority), geo: Some(InferenceGeo::Us) };
        // a project's Fast mode default: asked nothing, served priority
        assert_eq!(Premium::default().settled(Served::openai(Word::Priority)).tier, Some(ServiceTier::Priority));
        // Fast mode fell back to standard under a surge: billed standard
        assert_eq!(asked.settled(Served::openai(Word::Standard)), Premium { tier: None, geo: Some(InferenceGeo::Us) });
        // a workspace that defaults to US inference
        assert_eq!(Premium::default().settled(Served::anthropic(Word::Unknown, Word::Us)).geo, Some(InferenceGeo::Us));
        // silence, or a word not known: as asked
        assert_eq!(asked.settled(Served::default()), asked);
        assert_eq!(asked.settled(Served::openai(Word::Unknown)), asked);
        // Gemini says it in a header
        assert_eq!(Premium::default().settled(Served::gemini(b"priority")).tier, Some(ServiceTier::Priority));
        assert_eq!(asked.settled(Served::gemini(b"standard")).tier, None);
        assert_eq!(asked.settled(Served::gemini(b"\xff")), asked);
        // a later event's word wins
        let s = Served::openai(Word::Standard).then(Served::openai(Word::Priority)).then(Served::default());
        assert_eq!(s.tier, Some(Some(ServiceTier::Priority)));
    }
}
