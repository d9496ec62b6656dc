//! OpenAI's documented batch limits (the Batch guide's "Rate limits"): at
//! most 50,000 requests and 200 MB per input file, and at most 50,000
//! embedding inputs in an embeddings batch. Azure OpenAI's global batch
//! keeps the same per-file caps. Configuration may lower them.

use crate::provider::format::FileLimits;
use crate::request::Endpoint;

/// Requests in one input file.
pub const MAX_LINES: u64 = 50_000;
/// Bytes of one input file.
pub const MAX_BYTES: u64 = 200_000_000;
/// Embedding inputs over all lines of an embeddings batch.
pub const MAX_EMBEDDING_INPUTS: u64 = 50_000;

/// Longest result line read; longer ones are reported and their request
/// fails (`result_too_large`).
pub const MAX_RESULT_LINE_BYTES: usize = 32 * 1024 * 1024;

/// The limits of one input file for `endpoint`.
pub fn file_limits(endpoint: Endpoint) -> FileLimits {
    FileLimits {
        max_lines: MAX_LINES,
        max_bytes: MAX_BYTES,
        max_inputs: match endpoint {
            Endpoint::Embeddings => MAX_EMBEDDING_INPUTS,
            _ => u64::MAX,
        },
    }
}
