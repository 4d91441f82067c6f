//! Anthropic's server tool loop: with a server tool that runs (web search
//! here), the model is called again after each use, within the one request.
//!
//! - "The server-side sampling loop has a default limit of 10 iterations"
//!   (platform.claude.com, "How to implement tool use", the note on
//!   `pause_turn`).
//! - Each call reads the whole context so far, and the answer's `usage`
//!   sums the calls: `usage.iterations` "Understand token accumulation
//!   across server-side tool use loops" (anthropic-sdk-python
//!   `types/beta/beta_iterations_usage.py`). A real stream
//!   (tests/captures/anthropic_stream_web_search.sse, one search) reports
//!   2,679 input tokens in `message_start` (the first call) and 10,682 in
//!   `message_delta` (both calls, the second reading the results too).
//! - `max_tokens` "applies to each call to the requested model. A request
//!   that uses server tools can call the model more than once, so
//!   `usage.output_tokens` can exceed `max_tokens`" (anthropic-sdk-python
//!   2.17, `resources/messages/messages.py`).
//!
//! The mock runs one search a call: `searches` calls that search (each
//! writing `x-mock-search-turn-tokens`, default 20, the search's query,
//! at most the cap), then the answer's, at most ten calls in all. Each
//! search adds `x-mock-search-result-tokens` (default 0) to what the later
//! calls read.

/// The loop's limit on model calls.
pub const LIMIT: u64 = 10;

/// What the loop adds to an answer's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loop {
    /// The first call's input (the stream's `message_start` reports it).
    pub first_input: u64,
    /// Every call's input, summed.
    pub input: u64,
    /// The searching calls' output (the answer's own is apart).
    pub output: u64,
}

/// The loop of a request whose first call reads `input` tokens and that
/// runs `searches` searches, each call writing at most `cap`.
pub fn run(input: u64, searches: u64, cap: u64, turn_tokens: u64, result_tokens: u64) -> Option<Loop> {
    if searches == 0 {
        return None;
    }
    let calls = searches.saturating_add(1).min(LIMIT);
    let read = (0..calls).fold(0u64, |sum, k| sum.saturating_add(input.saturating_add(result_tokens.saturating_mul(k.min(searches)))));
    Some(Loop { first_input: input, input: read, output: turn_tokens.min(cap).saturating_mul(calls - 1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_reads_the_context_so_far_and_writes_up_to_the_cap() {
        assert_eq!(run(100, 0, 16, 20, 0), None, "no search, no loop");
        // Two searches: three calls, reading 100, 100 + 50, 100 + 100.
        assert_eq!(run(100, 2, 16, 20, 50), Some(Loop { first_input: 100, input: 450, output: 32 }));
        // The loop stops at ten calls, however many searches.
        let l = run(10, 30, 1000, 5, 0).unwrap();
        assert_eq!((l.input, l.output), (100, 45));
        assert!(run(u64::MAX, 3, u64::MAX, u64::MAX, u64::MAX).is_some(), "saturates, never overflows");
    }
}
