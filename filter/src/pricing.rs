//! Prices and cost: integer arithmetic only.
//!
//! Prices are integer micro-dollars (1e-6 USD) per million tokens, so
//! `tokens * price` is an exact amount in pico-dollars (1e-12 USD). A
//! request's cost is rounded *up* to whole micro-dollars once, at the end:
//! a request never costs less than the provider would bill, and the rounding
//! adds at most one micro-dollar per request.

use serde::{Deserialize, Serialize};

use crate::usage::Usage;
use tollgate_protocol::record::ServiceTier;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The token prices of OpenAI's Priority processing (a request's
    /// `service_tier: "priority"`), in percent of these. Defaults to 200:
    /// OpenAI's published priority prices are 1.75 to 2 times standard, so
    /// an unset one never counts less than the provider bills.
    #[serde(default)]
    pub priority_percent: Option<u32>,
    /// Flex processing (`service_tier: "flex"`), in percent. Defaults to
    /// 100 (never less than billed); OpenAI bills flex at 50.
    #[serde(default)]
    pub flex_percent: Option<u32>,
}

/// [`Price::priority_percent`]'s default.
pub const DEFAULT_PRIORITY_PERCENT: u32 = 200;

/// $10 per 1,000 web searches.
pub const DEFAULT_WEB_SEARCH_PER_1K: u64 = 10_000_000;

const PICOS_PER_MICRO: u128 = 1_000_000;

impl Price {
    /// These prices at a processing tier: every token price scaled by the
    /// tier's percent, rounded up (web searches are not token prices).
    pub fn at_tier(self, tier: Option<ServiceTier>) -> Price {
        let percent = match tier {
            None => return self,
            Some(ServiceTier::Priority) => self.priority_percent.unwrap_or(DEFAULT_PRIORITY_PERCENT),
            Some(ServiceTier::Flex) => self.flex_percent.unwrap_or(100),
        };
        let scale = |v: u64| u64::try_from((v as u128 * u128::from(percent)).div_ceil(100)).unwrap_or(u64::MAX);
        // The write defaults derive from `input`: fixed before it is scaled.
        Price {
            input: scale(self.input),
            cached_input: Some(scale(self.cached_input.unwrap_or(self.input))),
            cache_write: Some(scale(self.cache_write.unwrap_or_else(|| self.input.saturating_mul(5).div_ceil(4)))),
            cache_write_1h: Some(scale(self.cache_write_1h.unwrap_or_else(|| self.input.saturating_mul(2)))),
            output: scale(self.output),
            ..self
        }
    }

    /// Exact cost in pico-dollars.
    pub fn cost_picos(&self, u: &Usage) -> u128 {
        let cached = u.cached_input_tokens.min(u.input_tokens);
        let written = u.cache_write_tokens.min(u.input_tokens - cached);
        let written_1h = u.cache_write_1h_tokens.min(written);
        let written_5m = written - written_1h;
        let uncached = u.input_tokens - cached - written;
        let term = |tokens: u64, price: u64| (tokens as u128).saturating_mul(price as u128);
        // per 1,000 searches in micros = per search in nano-dollars = 1000 picos each
        let searches = (u.web_search_requests as u128)
            .saturating_mul(self.web_search_per_1k.unwrap_or(DEFAULT_WEB_SEARCH_PER_1K) as u128)
            .saturating_mul(1000);
        term(uncached, self.input)
            .saturating_add(term(cached, self.cached_input.unwrap_or(self.input)))
            .saturating_add(term(written_5m, self.cache_write.unwrap_or_else(|| self.input.saturating_mul(5).div_ceil(4))))
            .saturating_add(term(written_1h, self.cache_write_1h.unwrap_or_else(|| self.input.saturating_mul(2))))
            .saturating_add(term(u.output_tokens, self.output))
            .saturating_add(searches)
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
        let per = self.input.saturating_sub(self.cached_input.unwrap_or(self.input));
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
        Price { input: 0, cached_input: None, cache_write: None, cache_write_1h: None, output: 0, web_search_per_1k: None, priority_percent: None, flex_percent: None }
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
    }

    #[test]
    fn huge_counts_saturate_without_overflow() {
        let p = Price { input: u64::MAX, output: u64::MAX, web_search_per_1k: Some(u64::MAX), ..none() };
        let u = Usage { input_tokens: u64::MAX, output_tokens: u64::MAX, ..Default::default() };
        assert_eq!(p.cost_micros(&u), u64::MAX);
    }

    #[test]
    fn a_tier_scales_every_token_price_and_defaults_never_count_less_than_billed() {
        let u = Usage { input_tokens: 1000, cached_input_tokens: 400, cache_write_tokens: 100, output_tokens: 100, web_search_requests: 1, ..Default::default() };
        let p = price();
        assert_eq!(p.at_tier(None), p);
        // priority unset: 2x the tokens, the search as it was
        let searches = 10_000 * PICOS_PER_MICRO;
        assert_eq!(p.at_tier(Some(ServiceTier::Priority)).cost_picos(&u), 2 * (p.cost_picos(&u) - searches) + searches);
        // flex unset: standard
        assert_eq!(p.at_tier(Some(ServiceTier::Flex)).cost_micros(&u), p.cost_micros(&u));
        // configured: OpenAI's gpt-4.1 priority at 175 %, flex at 50 %, rounded up per price
        let q = Price { priority_percent: Some(175), flex_percent: Some(50), input: 2_000_001, ..none() };
        assert_eq!(q.at_tier(Some(ServiceTier::Priority)).input, 3_500_002);
        assert_eq!(q.at_tier(Some(ServiceTier::Flex)).input, 1_000_001);
        // defaults derived from the unscaled input (write 1.25x, 1h 2x, cached = input)
        let r = Price { input: 1_000_000, ..none() }.at_tier(Some(ServiceTier::Priority));
        assert_eq!((r.cached_input, r.cache_write, r.cache_write_1h), (Some(2_000_000), Some(2_500_000), Some(4_000_000)));
        let huge = Price { input: u64::MAX, output: u64::MAX, priority_percent: Some(1000), ..none() };
        assert_eq!(huge.at_tier(Some(ServiceTier::Priority)).output, u64::MAX, "saturates");
    }
}
