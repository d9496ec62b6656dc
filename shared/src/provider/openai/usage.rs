//! The one reading of an OpenAI response body's `usage` object, for ingest
//! and for every tool that prices results (pricing takes the [`Usage`] this
//! returns; it never parses bodies).
//!
//! Field names per endpoint (either family is read wherever it appears:
//! compatible servers mix them):
//! - chat completions, completions, embeddings: `prompt_tokens`,
//!   `completion_tokens`, `prompt_tokens_details.cached_tokens`,
//!   `completion_tokens_details.reasoning_tokens`;
//! - responses: `input_tokens`, `output_tokens`,
//!   `input_tokens_details.cached_tokens`,
//!   `output_tokens_details.reasoning_tokens`.
//!
//! **The rule for a missing count.** The API reference documents the input
//! and output counts as required members of a usage object, and the details
//! as optional; embeddings document no output count at all. So a missing or
//! null input count, or a missing or null output count on an endpoint whose
//! usage has one, makes the usage *unknown* (`None`: the request is stored
//! without usage and counted unpriced), never zero: a guess of zero would
//! undercount what the provider bills. A missing or null detail (cached,
//! reasoning) counts as 0, and an embeddings or moderations output count as
//! 0. A count over [`MAX_USAGE_TOKENS`] makes the usage unknown too.

use serde::Deserialize;

use crate::request::{Endpoint, Usage};

/// Largest token count believed in a result line's `usage` (2^32 - 1, far
/// above any model's context). A line claiming more is applied without its
/// usage (unpriced): a hostile or corrupt file must not overflow the job's
/// or the tenant's running totals, which sum many lines.
pub const MAX_USAGE_TOKENS: u64 = u32::MAX as u64;

/// A body's `usage` object as written (every member optional).
#[derive(Debug, Deserialize, Default)]
pub struct WireUsage {
    // chat completions, completions, embeddings
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<CachedDetails>,
    completion_tokens_details: Option<ReasoningDetails>,
    // responses
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<CachedDetails>,
    output_tokens_details: Option<ReasoningDetails>,
}

#[derive(Debug, Deserialize, Default)]
struct CachedDetails {
    cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
struct ReasoningDetails {
    reasoning_tokens: Option<u64>,
}

/// Whether `endpoint`'s documented usage carries an output count.
fn reports_output(endpoint: Endpoint) -> bool {
    !matches!(endpoint, Endpoint::Embeddings | Endpoint::Moderations)
}

impl WireUsage {
    /// The usage of an answer from `endpoint`, or `None` when it is unknown
    /// (see the module's rule).
    pub fn to_usage(&self, endpoint: Endpoint) -> Option<Usage> {
        let cached = |d: &Option<CachedDetails>| d.as_ref().and_then(|d| d.cached_tokens);
        let reasoning = |d: &Option<ReasoningDetails>| d.as_ref().and_then(|d| d.reasoning_tokens);
        let output = match self.completion_tokens.or(self.output_tokens) {
            Some(n) => n,
            None if reports_output(endpoint) => return None,
            None => 0,
        };
        let usage = Usage {
            input_tokens: self.prompt_tokens.or(self.input_tokens)?,
            cached_input_tokens: cached(&self.prompt_tokens_details)
                .or(cached(&self.input_tokens_details))
                .unwrap_or(0),
            output_tokens: output,
            reasoning_tokens: reasoning(&self.completion_tokens_details)
                .or(reasoning(&self.output_tokens_details))
                .unwrap_or(0),
            cache_write_tokens: 0,
        };
        let counts = [
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
        ];
        counts.iter().all(|n| *n <= MAX_USAGE_TOKENS).then_some(usage)
    }
}

/// The usage of a whole response body from `endpoint` (a parsed JSON
/// value), for tools that hold one: `None` without a `usage` object or when
/// it is unknown.
pub fn usage_of_body(endpoint: Endpoint, body: &serde_json::Value) -> Option<Usage> {
    let usage = body.get("usage").filter(|u| u.is_object())?;
    WireUsage::deserialize(usage).ok()?.to_usage(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_and_responses_usage_read_with_their_details() {
        let chat = json!({"usage": {"prompt_tokens": 12, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}});
        assert_eq!(
            usage_of_body(Endpoint::ChatCompletions, &chat),
            Some(Usage::of(12, 4, 5, 2))
        );
        assert_eq!(
            usage_of_body(Endpoint::Completions, &chat),
            Some(Usage::of(12, 4, 5, 2))
        );
        let responses = json!({"usage": {"input_tokens": 7, "output_tokens": 3,
            "input_tokens_details": {"cached_tokens": 1}, "output_tokens_details": {"reasoning_tokens": 2}}});
        assert_eq!(
            usage_of_body(Endpoint::Responses, &responses),
            Some(Usage::of(7, 1, 3, 2))
        );
    }

    #[test]
    fn a_missing_or_null_input_or_output_count_makes_the_usage_unknown_not_zero() {
        for u in [
            json!({"completion_tokens": 5}),
            json!({"prompt_tokens": null, "completion_tokens": 5}),
            json!({"prompt_tokens": 12}),
            json!({"prompt_tokens": 12, "completion_tokens": null}),
            json!({"input_tokens": 7}),
            json!({}),
        ] {
            let body = json!({ "usage": u });
            assert_eq!(usage_of_body(Endpoint::ChatCompletions, &body), None, "{body}");
            assert_eq!(usage_of_body(Endpoint::Responses, &body), None, "{body}");
        }
    }

    #[test]
    fn a_missing_or_null_detail_counts_as_zero() {
        let body = json!({"usage": {"prompt_tokens": 3, "completion_tokens": 2,
            "prompt_tokens_details": null, "completion_tokens_details": {"reasoning_tokens": null}}});
        assert_eq!(
            usage_of_body(Endpoint::ChatCompletions, &body),
            Some(Usage::of(3, 0, 2, 0))
        );
    }

    #[test]
    fn embeddings_have_no_output_count_and_need_their_input_count() {
        let body = json!({"usage": {"prompt_tokens": 8, "total_tokens": 8}});
        assert_eq!(usage_of_body(Endpoint::Embeddings, &body), Some(Usage::of(8, 0, 0, 0)));
        assert_eq!(usage_of_body(Endpoint::Embeddings, &json!({"usage": {}})), None);
        assert_eq!(usage_of_body(Endpoint::Moderations, &json!({"id": "modr"})), None);
    }

    #[test]
    fn a_count_over_the_believable_maximum_makes_the_usage_unknown() {
        let body = json!({"usage": {"prompt_tokens": MAX_USAGE_TOKENS + 1, "completion_tokens": 1}});
        assert_eq!(usage_of_body(Endpoint::ChatCompletions, &body), None);
        let odd = json!({"usage": {"prompt_tokens": -1, "completion_tokens": 1}});
        assert_eq!(usage_of_body(Endpoint::ChatCompletions, &odd), None);
    }
}
