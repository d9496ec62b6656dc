//! Groq's batch API is OpenAI's at another base (`/openai/v1`): the same
//! files (purpose `batch`), batch objects, metadata, lines and error
//! bodies. What differs is switched on the kind in [`super::OpenAiClient`]:
//! a `completion_window` from `24h` to `7d`
//! ([`crate::provider::check_completion_window`]), chat completions as the
//! only batch endpoint, listings without `order` / `limit` / `after`, and
//! the smaller input file below.

use bytes::Bytes;

use super::OpenAiFormat;
use crate::ids::RequestKey;
use crate::provider::format::{BatchFormat, FileLimits, MalformedLine, ResultLine};
use crate::request::Endpoint;

/// Groq's API base.
pub const DEFAULT_BASE_URL: &str = "https://api.groq.com/openai/v1";

/// Requests in one input file.
pub const MAX_LINES: u64 = 50_000;
/// Bytes of one input file (Groq's files API takes batch files up to 100 MB).
pub const MAX_BYTES: u64 = 100_000_000;

/// OpenAI's line format within Groq's file limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroqFormat;

impl BatchFormat for GroqFormat {
    fn limits(&self, endpoint: Endpoint) -> FileLimits {
        OpenAiFormat.limits(endpoint).min(FileLimits {
            max_lines: MAX_LINES,
            max_bytes: MAX_BYTES,
            max_inputs: u64::MAX,
        })
    }

    fn write_input_line(&self, out: &mut Vec<u8>, key: &RequestKey, url: &str, body_json: &str) {
        OpenAiFormat.write_input_line(out, key, url, body_json)
    }

    fn input_line_len(&self, url: &str, body_bytes: u64) -> u64 {
        OpenAiFormat.input_line_len(url, body_bytes)
    }

    fn input_line_key(&self, line: &[u8]) -> Option<RequestKey> {
        OpenAiFormat.input_line_key(line)
    }

    fn max_result_line_bytes(&self) -> usize {
        OpenAiFormat.max_result_line_bytes()
    }

    fn read_result_line(&self, endpoint: Endpoint, number: u64, bytes: &[u8]) -> Result<ResultLine, MalformedLine> {
        OpenAiFormat.read_result_line(endpoint, number, bytes)
    }

    fn read_too_long_line(&self, number: u64, bytes: u64, head: &Bytes) -> Option<ResultLine> {
        OpenAiFormat.read_too_long_line(number, bytes, head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groq_files_are_capped_at_100_mb_and_50000_lines() {
        let l = GroqFormat.limits(Endpoint::ChatCompletions);
        assert_eq!((l.max_lines, l.max_bytes), (50_000, 100_000_000));
    }
}
