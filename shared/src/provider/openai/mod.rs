//! The OpenAI adapter (also Azure OpenAI's variant): its HTTP client and its
//! whole batch file format — input lines, file limits, output and error
//! lines, usage — each in its own room.

pub mod client;
pub mod groq;
pub mod input;
pub mod limits;
pub mod output;
pub mod usage;
pub mod webhook;
pub mod webhook_secret;

use bytes::Bytes;

pub use client::{resolve_api_key, OpenAiClient};
pub use groq::GroqFormat;
pub use webhook_secret::{resolve_webhook_secret, WebhookSecretError};

use crate::ids::RequestKey;
use crate::provider::format::{BatchFormat, FileLimits, MalformedLine, ResultLine};
use crate::request::Endpoint;

/// OpenAI's batch file format, as a [`BatchFormat`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiFormat;

impl BatchFormat for OpenAiFormat {
    fn limits(&self, endpoint: Endpoint) -> FileLimits {
        limits::file_limits(endpoint)
    }

    fn write_input_line(&self, out: &mut Vec<u8>, key: &RequestKey, url: &str, body_json: &str) {
        input::write_input_line(out, key, url, body_json)
    }

    fn input_line_len(&self, url: &str, body_bytes: u64) -> u64 {
        input::input_line_len(url, body_bytes)
    }

    fn input_line_key(&self, line: &[u8]) -> Option<RequestKey> {
        input::input_line_key(line)
    }

    fn max_result_line_bytes(&self) -> usize {
        limits::MAX_RESULT_LINE_BYTES
    }

    fn read_result_line(&self, endpoint: Endpoint, number: u64, bytes: &[u8]) -> Result<ResultLine, MalformedLine> {
        output::parse_line(endpoint, number, bytes)
    }

    fn read_too_long_line(&self, number: u64, bytes: u64, head: &Bytes) -> Option<ResultLine> {
        output::too_long_line(number, bytes, head)
    }
}
