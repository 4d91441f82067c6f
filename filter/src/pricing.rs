//! Prices and cost: integer arithmetic only.
//!
//! Prices are integer micro-dollars (1e-6 USD) per million tokens, so
//! `tokens * price` is an exact amount in pico-dollars (1e-12 USD). A
//! request's cost is rounded *up* to whole micro-dollars once, at the end:
//! a request never costs less than the provider would bill, and the rounding
//! adds at most one micro-dollar per request.

use serde::{Deserialize, Serialize};

use crate::usage::Usage;
use tollgate_protocol::record::{InferenceGeo, ServiceTier};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached input tokens.
    pub input: u64,
    /// Input tokens read from the provider's prompt cache. Defaults to `input`.
    #[serde(default)]
    pub cached_input: Option<u64>,
    /// Input tokens written to the provider's prompt cache for 5 minutes
    /// (Anthropic; OpenAI GPT-5.6+). Defaults to 1.25 × `input`, the rate
    /// both providers bill.
    #[serde(default)]
    pub cache_write: Option<u64>,
    /// Input tokens written to Anthropic's 1-hour cache. Defaults to 2 × `input`.
    #[serde(default)]
    pub cache_write_1h: Option<u64>,
    /// Output tokens (including reasoning tokens).
    pub output: u64,
    /// Micro-dollars per 1,000 server-side web searches. Defaults to
    /// 10,000,000 ($10 per 1,000, Anthropic's published price).
    #[serde(default)]
    pub web_search_per_1k: Option<u64>,
    /// Micro-dollars per 1,000 hosted file searches (the Responses API's
    /// `file_search` tool). Defaults to 2,500,000 ($2.50 per 1,000 calls,
    /// OpenAI's published price).
    #[serde(default)]
    pub file_search_per_1k: Option<u64>,
    /// Micro-dollars per GB of memory of a code interpreter container the
    /// request has the provider create (the Responses API's
    /// `code_interpreter` tool, `container: {"type": "auto"}`). Defaults
    /// to 30,000: OpenAI's price of a container session, $0.03 for 1 GB
    /// up to $1.92 for 64 GB, for 20 minutes (billed by the minute, at
    /// least 5, since June 2026: a session this charges in full).
    #[serde(default)]
    pub container_per_gb: Option<u64>,
    /// Input tokens of a Decisions API request (`POST /v1/decisions`),
    /// every one, cached or written to the cache or not; its output is
    /// not billed (OpenAI's GPT-6 Luna: $0.10 a million, "no output,
    /// cache-read or cache-write charges"). Defaults to `input`.
    #[serde(default)]
    pub decisions_input: Option<u64>,
    /// Uncached input tokens of audio (OpenAI's audio models bill them
    /// about 13 × text: gpt-audio $32 against $2.50 per million). Defaults to `input`.
    #[serde(default)]
    pub audio_input: Option<u64>,
    /// Micro-dollars per hour of input audio billed by its length
    /// ([`Usage::audio_input_ms`]): OpenAI's `whisper-1` is 360,000
    /// ($0.006 a minute). Defaults to 0: a model billed so sets it (and its
    /// token prices to 0).
    #[serde(default)]
    pub audio_per_hour: Option<u64>,
    /// Micro-dollars per million characters of input text billed by the
    /// character ([`Usage::input_characters`]): OpenAI's `tts-1` is
    /// 15,000,000 ($15 a million), `tts-1-hd` 30,000,000. Defaults to 0: a
    /// model billed so sets it (and its token prices to 0).
    #[serde(default)]
    pub characters_per_million: Option<u64>,
    /// Uncached input tokens of images (OpenAI's GPT image models: GPT
    /// Image 1 $10 against $5 for text per million, 1.5 and 2 $8). Defaults to `input`.
    #[serde(default)]
    pub image_input: Option<u64>,
    /// Output tokens of audio (gpt-audio $64 against $10). Defaults to `output`.
    #[serde(default)]
    pub audio_output: Option<u64>,
    /// Output tokens of images (Gemini's image models: Gemini 3 Pro Image
    /// $120 against $12 for its text per million; an image is 1,120 to
    /// 2,000 tokens). Defaults to `output`.
    #[serde(default)]
    pub image_output: Option<u64>,
    /// Web searches the provider bills on every answered request whatever
    /// its answer says: OpenAI's chat completions search models
    /// (`gpt-5-search-api`, `gpt-4o-search-preview`: "the model always
    /// retrieves information from the web before responding", a web search
    /// call each, $10–25 per 1,000), or a provider's per-request fee priced
    /// as `web_search_per_1k` (Perplexity's Sonar request fees). An answer
    /// counts at least these; they are reserved too. 0 to 100.
    #[serde(default)]
    pub web_searches_per_request: Option<u64>,
    /// What `web_search_per_1k` counts: each search the answer reports
    /// (`search`, the default), or one for an answer that ran any
    /// (`prompt`: Gemini 2.5 bills grounding "per grounded prompt",
    /// whatever number of queries it ran; Gemini 3 per query).
    #[serde(default)]
    pub web_search_unit: Option<SearchUnit>,
    /// The token prices of a processing tier or geography a request asks
    /// for, each in percent of these prices ([`Premium`]). The defaults
    /// are at or above what the providers publish, so an unset one never
    /// counts less than billed; set the model's own.
    ///
    /// Sources: developers.openai.com/api/docs/guides/fast-mode (Priority
    /// renamed Fast mode on 2026-07-30, `"priority"` and `"fast"` alike;
    /// falls back to standard, billed standard, under a traffic surge),
    /// developers.openai.com/api/docs/guides/ultrafast-mode,
    /// platform.claude.com/docs/en/build-with-claude/fast-mode,
    /// platform.claude.com/docs/en/manage-claude/data-residency (and
    /// docs.aws.amazon.com/claude-platform: "US: … A 1.1x pricing
    /// multiplier applies").
    ///
    /// OpenAI's Priority / Fast mode (`service_tier: "priority"` or
    /// `"fast"`): default 200 (published 1.75 to 2 ×).
    #[serde(default)]
    pub priority_percent: Option<u32>,
    /// OpenAI's Ultrafast mode (`service_tier: "ultrafast"`): default 600
    /// (GPT-6 Astra's published 6 ×).
    #[serde(default)]
    pub ultrafast_percent: Option<u32>,
    /// OpenAI's Flex processing (`service_tier: "flex"`): default 100
    /// (OpenAI bills 50).
    #[serde(default)]
    pub flex_percent: Option<u32>,
    /// OpenAI's Batch API (a batch's requests, charged when the batch
    /// ends): default 100 (OpenAI bills 50).
    #[serde(default)]
    pub batch_percent: Option<u32>,
    /// Anthropic's fast mode (`speed: "fast"`): default 600 (Opus 4.6's
    /// 6 ×; 2 × on later Opus models).
    #[serde(default)]
    pub fast_percent: Option<u32>,
    /// Anthropic's US-only inference (`inference_geo: "us"`), on top of
    /// the tier: default 110 (the published 1.1 ×).
    #[serde(default)]
    pub us_inference_percent: Option<u32>,
    /// The prices of a request whose input is long: providers price the
    /// whole request higher above a number of input tokens (Anthropic's
    /// 1M-context models above 200K, OpenAI's GPT-5.4 and later above 272K,
    /// Gemini 2.5 Pro above 200K: about 2 × input and 1.5 × output).
    #[serde(default)]
    pub long_context: Option<LongContext>,
}

/// [`Price::web_search_unit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchUnit {
    Search,
    Prompt,
}

/// [`Price::long_context`]: the prices that apply to the whole request
/// when its input tokens (cache reads and writes included, as the
/// providers count them) are more than `above_input_tokens`. Unset cache
/// prices default from this band's `input`, as the standard band's do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongContext {
    pub above_input_tokens: u64,
    pub input: u64,
    #[serde(default)]
    pub cached_input: Option<u64>,
    #[serde(default)]
    pub cache_write: Option<u64>,
    #[serde(default)]
    pub cache_write_1h: Option<u64>,
    pub output: u64,
}

/// What the provider prices apart: a processing tier and an inference
/// geography. Read from the request (its reservation), then settled by
/// what the answer says served it ([`crate::served`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Premium {
    pub tier: Option<ServiceTier>,
    pub geo: Option<InferenceGeo>,
}

impl Price {
    /// The percent of these prices a premium is billed at (tier × geography).
    pub fn percent(&self, p: Premium) -> u64 {
        let tier = match p.tier {
            None => 100,
            Some(ServiceTier::Priority) => self.priority_percent.unwrap_or(200),
            Some(ServiceTier::Ultrafast) => self.ultrafast_percent.unwrap_or(600),
            Some(ServiceTier::Flex) => self.flex_percent.unwrap_or(100),
            Some(ServiceTier::Fast) => self.fast_percent.unwrap_or(600),
            Some(ServiceTier::Batch) => self.batch_percent.unwrap_or(100),
        };
        let geo = match p.geo {
            None => 100,
            Some(InferenceGeo::Us) => self.us_inference_percent.unwrap_or(110),
        };
        u64::from(tier) * u64::from(geo) / 100
    }

    /// These prices as the Decisions API bills them: every input token at
    /// [`Self::decisions_input`] (images too), nothing for the output or
    /// the cache, no long-context band.
    pub fn for_decisions(self) -> Price {
        let rate = self.decisions_input.unwrap_or(self.input);
        Price {
            input: rate,
            cached_input: Some(rate),
            cache_write: Some(rate),
            cache_write_1h: Some(rate),
            audio_input: Some(rate),
            image_input: Some(rate),
            output: 0,
            audio_output: Some(0),
            image_output: Some(0),
            long_context: None,
            ..self
        }
    }
}

/// $10 per 1,000 web searches.
pub const DEFAULT_WEB_SEARCH_PER_1K: u64 = 10_000_000;

/// $2.50 per 1,000 file search calls.
pub const DEFAULT_FILE_SEARCH_PER_1K: u64 = 2_500_000;
/// [`Price::container_per_gb`] when a price sets none: $0.03 a GB.
pub const DEFAULT_CONTAINER_PER_GB: u64 = 30_000;

const PICOS_PER_MICRO: u128 = 1_000_000;

impl Price {
    /// These prices for a premium: every token price times its
    /// [`percent`](Self::percent), rounded up (web searches are not token prices).
    pub fn at(self, premium: Premium) -> Price {
        let percent = self.percent(premium);
        if percent == 100 {
            return self;
        }
        let scale = |v: u64| u64::try_from((v as u128 * u128::from(percent)).div_ceil(100)).unwrap_or(u64::MAX);
        let scaled = |b: Price| Price {
            // The write defaults derive from `input`: fixed before it is scaled.
            input: scale(b.input),
            cached_input: Some(scale(b.cached())),
            cache_write: Some(scale(b.write_5m())),
            cache_write_1h: Some(scale(b.write_1h())),
            output: scale(b.output),
            audio_input: b.audio_input.map(scale),
            image_input: b.image_input.map(scale),
            audio_output: b.audio_output.map(scale),
            image_output: b.image_output.map(scale),
            audio_per_hour: b.audio_per_hour.map(scale),
            characters_per_million: b.characters_per_million.map(scale),
            ..b
        };
        Price {
            long_context: self.long_context.map(|lc| {
                let b = scaled(self.long_band(lc));
                LongContext {
                    input: b.input,
                    cached_input: b.cached_input,
                    cache_write: b.cache_write,
                    cache_write_1h: b.cache_write_1h,
                    output: b.output,
                    ..lc
                }
            }),
            ..scaled(self)
        }
    }

    /// Cache reads: `cached_input`, else `input`.
    fn cached(&self) -> u64 {
        self.cached_input.unwrap_or(self.input)
    }

    /// 5-minute cache writes: `cache_write`, else 1.25 × `input`.
    fn write_5m(&self) -> u64 {
        self.cache_write.unwrap_or_else(|| self.input.saturating_mul(5).div_ceil(4))
    }

    /// 1-hour cache writes: `cache_write_1h`, else 2 × `input`.
    fn write_1h(&self) -> u64 {
        self.cache_write_1h.unwrap_or_else(|| self.input.saturating_mul(2))
    }

    /// The long-context band as prices of its own.
    fn long_band(self, lc: LongContext) -> Price {
        Price {
            input: lc.input,
            cached_input: lc.cached_input,
            cache_write: lc.cache_write,
            cache_write_1h: lc.cache_write_1h,
            output: lc.output,
            long_context: None,
            ..self
        }
    }

    /// The prices a request with `input_tokens` input is billed at: the
    /// long-context band above its threshold, else these.
    pub fn band(&self, input_tokens: u64) -> Price {
        match self.long_context {
            Some(lc) if input_tokens > lc.above_input_tokens => self.long_band(lc),
            _ => *self,
        }
    }

    /// The prices a reservation is made at: every output token at the
    /// dearest output rate, in both bands, since an answer's output may be
    /// all audio or all image (a spoken answer of gpt-audio bills $64 a
    /// million against its text's $10).
    pub fn reserving(self) -> Price {
        let dearest = |text: u64| text.max(self.audio_output.unwrap_or(0)).max(self.image_output.unwrap_or(0));
        Price {
            output: dearest(self.output),
            long_context: self.long_context.map(|lc| LongContext { output: dearest(lc.output), ..lc }),
            ..self
        }
    }

    /// The usage of an answered request as billed: its audio counted as
    /// the model bills it, its searches counted in
    /// the price's unit ([`Self::web_search_unit`]), and at least those the
    /// provider runs on every request ([`Self::web_searches_per_request`]).
    pub fn billed(&self, mut u: Usage) -> Usage {
        // An estimate counts audio both ways (its tokens, its length): the
        // model bills it one way. One priced by the hour bills nothing else
        // (`whisper-1`'s usage is its seconds alone).
        if u.audio_input_ms > 0 && u.audio_input_tokens > 0 {
            if self.audio_per_hour.is_some() {
                return Usage { audio_input_ms: u.audio_input_ms, ..Default::default() };
            }
            u.audio_input_ms = 0;
        }
        // Speech's text counts both ways too: `tts-1` bills its characters
        // alone, `gpt-4o-mini-tts` its tokens (and the audio it spoke).
        if u.input_characters > 0 {
            if self.characters_per_million.is_some() {
                return Usage { input_characters: u.input_characters, ..Default::default() };
            }
            u.input_characters = 0;
        }
        if self.web_search_unit == Some(SearchUnit::Prompt) {
            u.web_search_requests = u.web_search_requests.min(1);
        }
        u.web_search_requests = u.web_search_requests.max(self.web_searches_per_request.unwrap_or(0));
        u
    }

    /// Exact cost in pico-dollars.
    pub fn cost_picos(&self, u: &Usage) -> u128 {
        let p = self.band(u.input_tokens);
        let cached = u.cached_input_tokens.min(u.input_tokens);
        let written = u.cache_write_tokens.min(u.input_tokens - cached);
        let written_1h = u.cache_write_1h_tokens.min(written);
        let written_5m = written - written_1h;
        let uncached = u.input_tokens - cached - written;
        let audio_in = u.audio_input_tokens.min(uncached);
        let image_in = u.image_input_tokens.min(uncached - audio_in);
        let audio_out = u.audio_output_tokens.min(u.output_tokens);
        let image_out = u.image_output_tokens.min(u.output_tokens - audio_out);
        let term = |tokens: u64, price: u64| (tokens as u128).saturating_mul(price as u128);
        // per 1,000 calls in micros = per call in nano-dollars = 1000 picos each
        let calls = |n: u64, per_1k: Option<u64>, default: u64| (n as u128).saturating_mul(per_1k.unwrap_or(default) as u128).saturating_mul(1000);
        let searches = calls(u.web_search_requests, p.web_search_per_1k, DEFAULT_WEB_SEARCH_PER_1K)
            .saturating_add(calls(u.file_search_calls, p.file_search_per_1k, DEFAULT_FILE_SEARCH_PER_1K));
        let containers = (u.container_gb as u128).saturating_mul(p.container_per_gb.unwrap_or(DEFAULT_CONTAINER_PER_GB) as u128).saturating_mul(PICOS_PER_MICRO);
        // Micro-dollars an hour over 3,600,000 ms, in picos: ms × price / 3.6.
        let audio_time = (u.audio_input_ms as u128).saturating_mul(p.audio_per_hour.unwrap_or(0) as u128).saturating_mul(10).div_ceil(36);
        term(uncached - audio_in - image_in, p.input)
            .saturating_add(term(audio_in, p.audio_input.unwrap_or(p.input)))
            .saturating_add(term(image_in, p.image_input.unwrap_or(p.input)))
            .saturating_add(term(cached, p.cached()))
            .saturating_add(term(written_5m, p.write_5m()))
            .saturating_add(term(written_1h, p.write_1h()))
            .saturating_add(term(u.output_tokens - audio_out - image_out, p.output))
            .saturating_add(term(audio_out, p.audio_output.unwrap_or(p.output)))
            .saturating_add(term(image_out, p.image_output.unwrap_or(p.output)))
            .saturating_add(searches)
            .saturating_add(containers)
            .saturating_add(audio_time)
            .saturating_add(term(u.input_characters, p.characters_per_million.unwrap_or(0)))
    }

    /// Cost in micro-dollars, rounded up; saturates at `u64::MAX`.
    pub fn cost_micros(&self, u: &Usage) -> u64 {
        let picos = self.cost_picos(u);
        let micros = picos.div_ceil(PICOS_PER_MICRO);
        u64::try_from(micros).unwrap_or(u64::MAX)
    }

    /// What the prompt cache saved on this usage: its cost with every
    /// input token at the uncached input price, minus its cost (both
    /// rounded up once, as billed). Negative when cache writes outweighed
    /// the reads.
    pub fn cache_savings_micros(&self, u: &Usage) -> i64 {
        self.cost_and_savings(u).1
    }

    /// What `tokens` input tokens cost above the cached price (the price of
    /// a prefix the cache could have served), rounded up.
    pub fn cache_loss_micros(&self, tokens: u64) -> u64 {
        let per = self.input.saturating_sub(self.cached());
        u64::try_from((tokens as u128).saturating_mul(per as u128).div_ceil(PICOS_PER_MICRO)).unwrap_or(u64::MAX)
    }

    /// [`cost_micros`](Self::cost_micros) and
    /// [`cache_savings_micros`](Self::cache_savings_micros) together (the
    /// request path needs both; the cost is computed once).
    pub fn cost_and_savings(&self, u: &Usage) -> (u64, i64) {
        let with = self.cost_micros(u);
        let uncached = Usage { cached_input_tokens: 0, cache_write_tokens: 0, cache_write_1h_tokens: 0, ..*u };
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        (with, signed(self.cost_micros(&uncached)).saturating_sub(signed(with)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Price {
        Price::default()
    }

    fn price() -> Price {
        // $2.50 / $0.25 cached / $3.125 write / $15 output, per million tokens.
        Price { input: 2_500_000, cached_input: Some(250_000), cache_write: Some(3_125_000), output: 15_000_000, ..none() }
    }

    #[test]
    fn cache_savings_are_reads_at_their_discount_minus_the_write_premium() {
        // 400 cached of 1000: 400 * (2.5 - 0.25) = 900 micro-dollars saved
        let u = Usage { input_tokens: 1000, cached_input_tokens: 400, output_tokens: 100, ..Default::default() };
        assert_eq!(price().cache_savings_micros(&u), 900);
        // writes only: 1000 written at 3.125 instead of 2.5 = 625 more
        let w = Usage { input_tokens: 1000, cache_write_tokens: 1000, ..Default::default() };
        assert_eq!(price().cache_savings_micros(&w), -625);
        assert_eq!(price().cache_savings_micros(&Usage { input_tokens: 1000, ..Default::default() }), 0);
        // no cached price configured: nothing saved
        assert_eq!(Price { cached_input: None, ..price() }.cache_savings_micros(&u), 0);
    }

    #[test]
    fn prices_each_token_class() {
        let u = Usage { input_tokens: 1_000_000, output_tokens: 0, ..Default::default() };
        assert_eq!(price().cost_micros(&u), 2_500_000);
        let u = Usage { input_tokens: 1000, cached_input_tokens: 400, output_tokens: 100, ..Default::default() };
        // 600*2.5 + 400*0.25 + 100*15 = 1500 + 100 + 1500 = 3100 micro-dollars
        assert_eq!(price().cost_micros(&u), 3100);
        let u = Usage { input_tokens: 1000, cache_write_tokens: 1000, ..Default::default() };
        assert_eq!(price().cost_micros(&u), 3125);
    }

    #[test]
    fn rounds_up_once() {
        let u = Usage { input_tokens: 1, ..Default::default() };
        // 1 token at $2.50/M = 2.5 micro-dollars -> 3
        assert_eq!(price().cost_micros(&u), 3);
        assert_eq!(price().cost_picos(&u), 2_500_000);
        assert_eq!(price().cost_micros(&Usage::default()), 0);
    }

    #[test]
    fn defaults_and_inconsistent_counts() {
        let p = Price { input: 1_000_000, output: 2_000_000, ..none() };
        // cached > input is clamped instead of underflowing
        let u = Usage { input_tokens: 10, cached_input_tokens: 50, cache_write_tokens: 5, output_tokens: 1, ..Default::default() };
        assert_eq!(p.cost_micros(&u), 12);
        // default write prices: 1.25x (5 minutes) and 2x (1 hour) input
        let u = Usage { input_tokens: 1000, cache_write_tokens: 1000, cache_write_1h_tokens: 400, ..Default::default() };
        assert_eq!(p.cost_micros(&u), 600 * 5 / 4 + 400 * 2);
    }

    #[test]
    fn one_hour_writes_and_web_searches() {
        // Anthropic Sonnet: $3 input, 5m write $3.75, 1h write $6, output $15
        let p = Price { input: 3_000_000, cache_write: Some(3_750_000), output: 15_000_000, ..none() };
        let u = Usage { input_tokens: 10_000, cache_write_tokens: 10_000, cache_write_1h_tokens: 10_000, ..Default::default() };
        assert_eq!(p.cost_micros(&u), 60_000, "1h writes at 2x input, not at the 5m price");
        let u = Usage { web_search_requests: 3, ..Default::default() };
        assert_eq!(p.cost_micros(&u), 30_000, "$10 per 1,000 searches");
        let u = Usage { web_search_requests: 1, file_search_calls: 3, ..Default::default() };
        assert_eq!(p.cost_micros(&u), 10_000 + 7_500, "$2.50 per 1,000 file search calls, beside the searches");
        let own = Price { file_search_per_1k: Some(1_000_000), web_search_per_1k: Some(0), ..p };
        assert_eq!(own.cost_micros(&u), 3_000);
        // Code interpreter containers: $0.03 a GB of a session (1 GB $0.03 … 64 GB $1.92), at no tier's percent.
        let boxes = Usage { container_gb: 1 + 4, ..Default::default() };
        assert_eq!(p.cost_micros(&boxes), 150_000);
        assert_eq!(Price { container_per_gb: Some(10_000), ..p }.cost_micros(&boxes), 50_000);
        assert_eq!(p.at(Premium { tier: Some(ServiceTier::Priority), geo: None }).cost_micros(&boxes), 150_000);
        // A search model: a search a request, whatever the answer reports; more when it reports more.
        let search = Price { web_searches_per_request: Some(1), ..p };
        assert_eq!(search.billed(Usage::default()).web_search_requests, 1);
        assert_eq!(search.billed(Usage { web_search_requests: 4, ..Default::default() }).web_search_requests, 4);
        assert_eq!(p.billed(Usage::default()), Usage::default());
    }

    #[test]
    fn image_input_tokens_are_priced_at_their_own_rate() {
        // GPT Image 1: text $5, image input $10, image output $40 per million.
        let p = Price { input: 5_000_000, image_input: Some(10_000_000), output: 40_000_000, ..none() };
        let u = Usage { input_tokens: 300, image_input_tokens: 200, output_tokens: 1000, image_output_tokens: 1000, ..Default::default() };
        assert_eq!(p.cost_micros(&u), 100 * 5 + 200 * 10 + 1000 * 40);
        assert_eq!(Price { image_input: None, ..p }.cost_micros(&u), 300 * 5 + 1000 * 40, "unset: the input price");
        // more than the uncached input is clamped; a tier scales it
        let odd = Usage { input_tokens: 10, cached_input_tokens: 8, image_input_tokens: 50, ..Default::default() };
        assert_eq!(p.cost_picos(&odd), 8 * 5_000_000 + 2 * 10_000_000);
        assert_eq!(p.at(Premium { tier: Some(ServiceTier::Priority), geo: None }).image_input, Some(20_000_000));
    }

    #[test]
    fn audio_billed_by_length_is_priced_per_hour() {
        // whisper-1: $0.006 a minute; 9 seconds is $0.0009, a minute and a half $0.009.
        let p = Price { audio_per_hour: Some(360_000), ..none() };
        let at = |ms| p.cost_micros(&Usage { audio_input_ms: ms, ..Default::default() });
        assert_eq!((at(9_000), at(90_000), at(0)), (900, 9_000, 0));
        // Groq's $0.111 an hour: a second is 30.83 micro-dollars, rounded up once.
        let groq = Price { audio_per_hour: Some(111_000), ..none() };
        assert_eq!(groq.cost_micros(&Usage { audio_input_ms: 1_000, ..Default::default() }), 31);
        assert_eq!(groq.cost_micros(&Usage { audio_input_ms: 3_600_000, ..Default::default() }), 111_000);
        // A premium scales it as it scales tokens.
        assert_eq!(p.at(Premium { tier: Some(ServiceTier::Priority), geo: None }).audio_per_hour, Some(720_000));
    }

    #[test]
    fn speech_billed_by_the_character_is_priced_per_million_and_nothing_else() {
        // tts-1: $15 a million characters; the 45 of the API reference's fox cost 675 micro-dollars.
        let p = Price { characters_per_million: Some(15_000_000), ..none() };
        let estimate = Usage { input_tokens: 12, output_tokens: 118, audio_output_tokens: 118, input_characters: 45, ..Default::default() };
        let billed = p.billed(estimate);
        assert_eq!((billed, p.cost_micros(&billed)), (Usage { input_characters: 45, ..Default::default() }, 675));
        // A model billed by tokens counts no characters.
        let mini = Price { input: 600_000, output: 12_000_000, ..none() };
        assert_eq!(mini.billed(estimate), Usage { input_characters: 0, ..estimate });
        assert_eq!(p.at(Premium { tier: Some(ServiceTier::Priority), geo: None }).characters_per_million, Some(30_000_000));
    }

    #[test]
    fn audio_tokens_are_priced_at_their_own_rates() {
        // gpt-audio: text $2.50 / $10, audio $32 / $64 per million.
        let p = Price { input: 2_500_000, output: 10_000_000, audio_input: Some(32_000_000), audio_output: Some(64_000_000), ..none() };
        let u = Usage { input_tokens: 1000, audio_input_tokens: 600, output_tokens: 500, audio_output_tokens: 400, ..Default::default() };
        assert_eq!(p.cost_micros(&u), 400 * 5 / 2 + 600 * 32 + 100 * 10 + 400 * 64);
        // unset: the text prices
        let text = Price { audio_input: None, audio_output: None, ..p };
        assert_eq!(text.cost_micros(&u), 1000 * 5 / 2 + 500 * 10);
        // a tier scales them too
        let fast = p.at(Premium { tier: Some(ServiceTier::Priority), geo: None });
        assert_eq!((fast.audio_input, fast.audio_output), (Some(64_000_000), Some(128_000_000)));
        // more audio than uncached input or output is clamped, never underflows
        let odd = Usage { input_tokens: 10, cached_input_tokens: 8, audio_input_tokens: 50, output_tokens: 1, audio_output_tokens: 9, ..Default::default() };
        assert_eq!(p.cost_picos(&odd), 8 * 2_500_000 + 2 * 32_000_000 + 64_000_000);
    }

    #[test]
    fn image_tokens_are_priced_at_their_own_rate() {
        // Gemini 3 Pro Image: $2 input, $12 text output, $120 image output per million.
        let p = Price { input: 2_000_000, output: 12_000_000, image_output: Some(120_000_000), ..none() };
        let u = Usage { input_tokens: 50, output_tokens: 1_400, image_output_tokens: 1_120, ..Default::default() };
        assert_eq!(p.cost_picos(&u), 50 * 2_000_000 + 280 * 12_000_000 + 1_120 * 120_000_000);
        assert_eq!(Price { image_output: None, ..p }.cost_micros(&u), 100 + 1_400 * 12);
        assert_eq!(p.at(Premium { tier: Some(ServiceTier::Priority), geo: None }).image_output, Some(240_000_000));
        // audio and images together never count an output token twice
        let both = Usage { output_tokens: 10, audio_output_tokens: 6, image_output_tokens: 9, ..Default::default() };
        let p = Price { audio_output: Some(1_000_000), image_output: Some(10_000_000), output: 100, ..none() };
        assert_eq!(p.cost_picos(&both), 6 * 1_000_000 + 4 * 10_000_000);
    }

    #[test]
    fn a_reservation_prices_output_at_the_dearest_output_rate() {
        let lc = LongContext { above_input_tokens: 10, input: 4, output: 30, ..Default::default() };
        let p = Price { input: 2, output: 10, audio_output: Some(64), image_output: Some(40), long_context: Some(lc), ..none() };
        let r = p.reserving();
        assert_eq!((r.output, r.long_context.map(|l| l.output)), (64, Some(64)));
        let out = Usage { output_tokens: 1_000_000, ..Default::default() };
        assert_eq!(r.cost_micros(&out), 64);
        // text-only prices reserve as before; a dearer text rate stays
        assert_eq!(Price { audio_output: None, image_output: None, ..p }.reserving(), Price { audio_output: None, image_output: None, ..p });
        assert_eq!(Price { output: 99, ..p }.reserving().output, 99);
    }

    #[test]
    fn searches_billed_per_prompt_count_one_an_answer() {
        let per_prompt = Price { input: 1, output: 1, web_search_unit: Some(SearchUnit::Prompt), ..none() };
        let three = Usage { web_search_requests: 3, ..Default::default() };
        assert_eq!(per_prompt.billed(three).web_search_requests, 1);
        assert_eq!(per_prompt.billed(Usage::default()).web_search_requests, 0, "no search, no fee");
        let per_search = Price { web_search_unit: Some(SearchUnit::Search), ..per_prompt };
        assert_eq!(per_search.billed(three).web_search_requests, 3);
        assert_eq!(Price { web_search_unit: None, ..per_prompt }.billed(three).web_search_requests, 3);
        // a per-request fee still counts on every answer
        let both = Price { web_searches_per_request: Some(2), ..per_prompt };
        assert_eq!(both.billed(three).web_search_requests, 2);
    }

    #[test]
    fn huge_counts_saturate_without_overflow() {
        let p = Price { input: u64::MAX, output: u64::MAX, web_search_per_1k: Some(u64::MAX), file_search_per_1k: Some(u64::MAX), ..none() };
        let u = Usage { input_tokens: u64::MAX, output_tokens: u64::MAX, ..Default::default() };
        assert_eq!(p.cost_micros(&u), u64::MAX);
        let u = Usage { web_search_requests: u64::MAX, file_search_calls: u64::MAX, ..Default::default() };
        assert_eq!(p.cost_micros(&u), u64::MAX);
    }

    #[test]
    fn a_premium_scales_every_token_price_and_defaults_never_count_less_than_billed() {
        let tier = |t| Premium { tier: Some(t), geo: None };
        let u = Usage { input_tokens: 1000, cached_input_tokens: 400, cache_write_tokens: 100, output_tokens: 100, web_search_requests: 1, ..Default::default() };
        let p = price();
        assert_eq!(p.at(Premium::default()), p);
        // priority unset: 2x the tokens, the search as it was
        let searches = 10_000 * PICOS_PER_MICRO;
        assert_eq!(p.at(tier(ServiceTier::Priority)).cost_picos(&u), 2 * (p.cost_picos(&u) - searches) + searches);
        // the unset defaults: at or above what the providers publish
        let percents: Vec<u64> = [ServiceTier::Priority, ServiceTier::Ultrafast, ServiceTier::Flex, ServiceTier::Fast, ServiceTier::Batch].map(|t| p.percent(tier(t))).into();
        assert_eq!(percents, [200, 600, 100, 600, 100]);
        assert_eq!(p.percent(Premium { tier: None, geo: Some(InferenceGeo::Us) }), 110);
        // compounded: fast mode in the US, 6 x 1.1
        assert_eq!(p.percent(Premium { tier: Some(ServiceTier::Fast), geo: Some(InferenceGeo::Us) }), 660);
        // configured: OpenAI's gpt-4.1 priority at 175 %, flex at 50 %, rounded up per price
        let q = Price { priority_percent: Some(175), flex_percent: Some(50), batch_percent: Some(50), input: 2_000_001, ..none() };
        assert_eq!(q.at(tier(ServiceTier::Priority)).input, 3_500_002);
        assert_eq!(q.at(tier(ServiceTier::Flex)).input, 1_000_001);
        assert_eq!(q.at(tier(ServiceTier::Batch)).input, 1_000_001);
        // defaults derived from the unscaled input (write 1.25x, 1h 2x, cached = input)
        let r = Price { input: 1_000_000, ..none() }.at(tier(ServiceTier::Priority));
        assert_eq!((r.cached_input, r.cache_write, r.cache_write_1h), (Some(2_000_000), Some(2_500_000), Some(4_000_000)));
        let huge = Price { input: u64::MAX, output: u64::MAX, priority_percent: Some(u32::MAX), us_inference_percent: Some(u32::MAX), ..none() };
        let most = Premium { tier: Some(ServiceTier::Priority), geo: Some(InferenceGeo::Us) };
        assert_eq!(huge.at(most).output, u64::MAX, "saturates");
    }

    #[test]
    fn a_long_input_prices_the_whole_request_at_the_long_context_band() {
        // Claude Sonnet 4.6: $3 / $15, and above 200K input tokens $6 / $22.50 (cache reads 0.1x, writes 1.25x of the band).
        let lc = LongContext { above_input_tokens: 200_000, input: 6_000_000, cached_input: Some(600_000), output: 22_500_000, ..Default::default() };
        let p = Price { input: 3_000_000, cached_input: Some(300_000), output: 15_000_000, long_context: Some(lc), ..none() };
        let at = |input, cached, output| p.cost_micros(&Usage { input_tokens: input, cached_input_tokens: cached, output_tokens: output, ..Default::default() });
        assert_eq!(at(200_000, 0, 1000), 600_000 + 15_000, "at the threshold: standard");
        assert_eq!(at(200_001, 0, 1000), 1_200_006 + 22_500, "one above: every token at the band, output too");
        // cache reads count toward the threshold and are priced at the band's cached price
        assert_eq!(at(250_000, 200_000, 0), 50_000 * 6 + 200_000 * 6 / 10);
        // unset band write price: 1.25 x the band's input
        let w = Usage { input_tokens: 300_000, cache_write_tokens: 100_000, ..Default::default() };
        assert_eq!(p.cost_micros(&w), 200_000 * 6 + 100_000 * 6 * 5 / 4);
        // a premium scales the band too: fast mode on a long prompt, 6 x the band
        let fast = p.at(Premium { tier: Some(ServiceTier::Fast), geo: None });
        assert_eq!(fast.cost_micros(&Usage { input_tokens: 200_001, ..Default::default() }), 6 * 1_200_006);
        assert_eq!(fast.long_context.map(|l| l.above_input_tokens), Some(200_000));
    }
}
