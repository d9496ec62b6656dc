//! Anthropic's batch format as a [`BatchFormat`]:
//! - an input line is one entry of the create body's `requests` array,
//!   `{"custom_id":KEY,"params":BODY}\n` (the client joins the staged lines
//!   into `{"requests":[…]}`);
//! - a result line is `{"custom_id", "result": {"type": …}}` with type
//!   `succeeded` (its `message` kept verbatim), `errored`, `canceled` or
//!   `expired`.
//!
//! Limits: at most 100,000 requests and 256 MB for the whole create body,
//! of which the `{"requests":[` … `]}` wrapper takes 15 bytes (each line's
//! newline becomes the comma between entries, so the lines count as they
//! are staged).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ids::RequestKey;
use crate::provider::format::{offset_in, string_or_none, BatchFormat, FileLimits, MalformedLine, Outcome, ResultLine};
use crate::provider::openai::limits::MAX_RESULT_LINE_BYTES;
use crate::provider::openai::output::too_long_line;
use crate::provider::openai::usage::MAX_USAGE_TOKENS;
use crate::request::{Endpoint, RequestError, Usage};

/// Requests in one batch.
pub const MAX_LINES: u64 = 100_000;
/// Bytes of one create body.
pub const MAX_BODY_BYTES: u64 = 256_000_000;
/// What the create body adds around the staged lines: `{"requests":[` and `]}`.
pub const BODY_WRAPPER_BYTES: u64 = 15;

/// Anthropic's Message Batches format.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicFormat;

const LINE_PREFIX: &[u8] = b"{\"custom_id\":\"";
const PARAMS: &[u8] = b"\",\"params\":";

#[derive(Deserialize)]
struct WireLine<'a> {
    #[serde(borrow, default)]
    custom_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    result: Option<WireResult<'a>>,
}

#[derive(Deserialize)]
struct WireResult<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// The parts of a message batchq reads; the rest is stored as is.
#[derive(Deserialize, Default)]
struct MessageMeta {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// A message's `usage` (every member optional).
#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Input counts every input token (uncached, cache reads and cache
    /// writes); a missing input or output count makes the usage unknown
    /// (unpriced), a missing cache count is 0; any count over
    /// [`MAX_USAGE_TOKENS`] makes it unknown too.
    fn to_usage(&self) -> Option<Usage> {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        let (uncached, output) = (self.input_tokens?, self.output_tokens?);
        if [uncached, output, read, write].iter().any(|n| *n > MAX_USAGE_TOKENS) {
            return None;
        }
        Some(Usage {
            input_tokens: uncached + read + write,
            cached_input_tokens: read,
            output_tokens: output,
            reasoning_tokens: 0,
            cache_write_tokens: write,
        })
    }
}

/// An `errored` result's error: `{"type":"error","error":{"type","message"}}`
/// (the error response), or the inner object alone.
#[derive(Deserialize, Default)]
struct WireError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<Box<WireError>>,
    /// Anthropic's id of the request, next to the inner error.
    #[serde(default, deserialize_with = "string_or_none")]
    request_id: Option<String>,
}

/// The HTTP status Anthropic answers with for an error type, and whether a
/// request that met it may be sent again.
fn error_class(kind: &str) -> (Option<u16>, bool) {
    match kind {
        "invalid_request_error" => (Some(400), false),
        "authentication_error" => (Some(401), false),
        "billing_error" => (Some(402), false),
        "permission_error" => (Some(403), false),
        "not_found_error" => (Some(404), false),
        "request_too_large" => (Some(413), false),
        "rate_limit_error" => (Some(429), true),
        "api_error" => (Some(500), true),
        "timeout_error" => (Some(504), true),
        "overloaded_error" => (Some(529), true),
        _ => (None, false),
    }
}

/// An `errored` result's outcome and Anthropic's request id, when given.
fn errored(raw: Option<&RawValue>) -> (Outcome, Option<String>) {
    let mut wire: WireError = raw.and_then(|r| serde_json::from_str(r.get()).ok()).unwrap_or_default();
    let request_id = wire.request_id.take().filter(|id| !id.is_empty());
    let inner = match wire.error.take() {
        Some(inner) => *inner,
        None => wire,
    };
    let code = inner.kind.unwrap_or_else(|| "unknown".to_owned());
    let (status_code, retryable) = error_class(&code);
    let outcome = Outcome::Error {
        error: RequestError {
            message: inner.message.unwrap_or_default(),
            code,
            status_code,
        },
        body: raw.map(|r| r.get().to_owned()),
        retryable,
    };
    (outcome, request_id)
}

/// A request the batch never ran: retryable, coded as OpenAI's error file
/// codes it.
fn not_run(code: &str, message: &str) -> Outcome {
    Outcome::Error {
        error: RequestError {
            code: code.to_owned(),
            message: message.to_owned(),
            status_code: None,
        },
        body: None,
        retryable: true,
    }
}

/// Parses one result line; `Err` carries a reason (never the line's content).
pub fn parse_line(number: u64, bytes: &[u8]) -> Result<ResultLine, MalformedLine> {
    let text = simdutf8::basic::from_utf8(bytes).map_err(|_| MalformedLine::NotUtf8)?;
    let wire: WireLine<'_> = serde_json::from_str(text).map_err(|e| MalformedLine::NotJson(e.to_string()))?;
    let custom_id = wire.custom_id.ok_or(MalformedLine::NoCustomId)?;
    let key = RequestKey::parse(custom_id.as_ref()).map_err(|_| MalformedLine::ForeignCustomId)?;
    let result = wire.result.ok_or(MalformedLine::NoOutcome)?;
    let mut request_id = None;
    let mut body_offset = None;
    let outcome = match result.kind.as_deref() {
        Some("succeeded") => {
            let message = result.message.ok_or(MalformedLine::NoOutcome)?;
            let meta: MessageMeta = serde_json::from_str(message.get()).unwrap_or_default();
            let usage = meta.usage.as_ref().and_then(WireUsage::to_usage);
            if meta.usage.is_some() && usage.is_none() {
                tracing::warn!(
                    line = number,
                    "result line's usage lacks a count or claims over {MAX_USAGE_TOKENS} tokens; it is not counted"
                );
            }
            body_offset = offset_in(text, message.get());
            Outcome::Success {
                status_code: 200,
                body: message.get().to_owned(),
                usage,
                model: meta.model,
            }
        }
        Some("errored") => {
            let (outcome, id) = errored(result.error);
            request_id = id;
            outcome
        }
        Some("canceled") => not_run(
            "batch_cancelled",
            "The batch was cancelled before this request was processed.",
        ),
        Some("expired") => not_run(
            "batch_expired",
            "This request could not be executed before the batch expired.",
        ),
        _ => return Err(MalformedLine::NoOutcome),
    };
    Ok(ResultLine {
        number,
        key,
        outcome,
        request_id,
        body_offset,
    })
}

impl BatchFormat for AnthropicFormat {
    fn limits(&self, _endpoint: Endpoint) -> FileLimits {
        FileLimits {
            max_lines: MAX_LINES,
            max_bytes: MAX_BODY_BYTES - BODY_WRAPPER_BYTES,
            max_inputs: u64::MAX,
        }
    }

    fn write_input_line(&self, out: &mut Vec<u8>, key: &RequestKey, _url: &str, body_json: &str) {
        out.extend_from_slice(LINE_PREFIX);
        out.extend_from_slice(key.as_str().as_bytes());
        out.extend_from_slice(PARAMS);
        out.extend_from_slice(body_json.as_bytes());
        out.extend_from_slice(b"}\n");
    }

    fn input_line_len(&self, _url: &str, body_bytes: u64) -> u64 {
        (LINE_PREFIX.len() + 32 + PARAMS.len() + 2) as u64 + body_bytes
    }

    fn input_line_key(&self, line: &[u8]) -> Option<RequestKey> {
        let key = line.strip_prefix(LINE_PREFIX)?.get(..32)?;
        RequestKey::parse(std::str::from_utf8(key).ok()?).ok()
    }

    fn max_result_line_bytes(&self) -> usize {
        MAX_RESULT_LINE_BYTES
    }

    fn read_result_line(&self, _endpoint: Endpoint, number: u64, bytes: &[u8]) -> Result<ResultLine, MalformedLine> {
        parse_line(number, bytes)
    }

    fn read_too_long_line(&self, number: u64, bytes: u64, head: &Bytes) -> Option<ResultLine> {
        // The request is named by `"custom_id"` in the head, as in OpenAI's lines.
        too_long_line(number, bytes, head)
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
