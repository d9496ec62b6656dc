//! OpenAI's batch output and error file lines:
//! `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": {"code", "message"}}`,
//! read into domain terms ([`ResultLine`]). A 2xx response is a success
//! with its body kept verbatim; a non-2xx response (408, 429, 5xx
//! retryable), or a line with only an `error` (`batch_expired`,
//! `batch_cancelled`, … retryable), is a failure.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::limits::MAX_RESULT_LINE_BYTES;
use super::usage::{WireUsage, MAX_USAGE_TOKENS};
use crate::ids::RequestKey;
use crate::provider::format::{string_or_none, MalformedLine, Outcome, ResultLine};
use crate::request::{Endpoint, RequestError, Usage};

#[derive(Deserialize)]
struct WireLine<'a> {
    #[serde(borrow, default)]
    custom_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<WireResponse<'a>>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireResponse<'a> {
    #[serde(default)]
    status_code: Option<u16>,
    /// Support's handle on the answer, kept when it is a string. Any other
    /// type is dropped, not a reason to refuse the line: the result is the
    /// caller's, this id only helps a support ticket.
    #[serde(default, deserialize_with = "string_or_none")]
    request_id: Option<String>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

/// The parts of a response body batchq reads; the rest is stored as is.
#[derive(Deserialize, Default)]
struct BodyMeta {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<BodyError>,
}

#[derive(Deserialize, Default)]
struct BodyError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

fn code_string(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Error codes in the error file that mean "not run, try again". Any other
/// code from an expired or cancelled batch is retried too (the request did
/// not get its chance); see `Ingester::apply_chunk`.
const RETRYABLE_CODES: [&str; 5] = [
    "batch_expired",
    "batch_cancelled",
    "request_timeout",
    "server_error",
    "rate_limit_exceeded",
];

/// The parts of a response body batchq reads (`model`, `usage`, `error`),
/// as `serde_json::from_str::<BodyMeta>(raw).unwrap_or_default()` would
/// read them (a wrong type or a repeated field gives the default), but
/// without parsing the rest: `raw` was checked as JSON by the line's parse,
/// so other members are skipped by their bytes (strings with memchr). The
/// answer text is most of a body; parsing it a second time held ingest to
/// half the speed of merely reading the file (`make bench`).
fn body_meta(raw: &str) -> BodyMeta {
    fn ws(b: &[u8], mut i: usize) -> usize {
        while b.get(i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }
    // `i` at an opening quote; the index after the closing one: the next
    // quote not escaped, i.e. after an even run of backslashes (answer text
    // is full of `\n`; stopping at each backslash cost a tenth of ingest).
    fn string_end(b: &[u8], i: usize) -> Option<usize> {
        let mut j = i + 1;
        loop {
            let k = j + memchr::memchr(b'"', b.get(j..)?)?;
            // b[i] is a quote, so the run stops there at the latest.
            let run = b[..k].iter().rev().take_while(|c| **c == b'\\').count();
            if run % 2 == 0 {
                return Some(k + 1);
            }
            j = k + 1;
        }
    }
    // `i` at a value; the index after it.
    fn value_end(b: &[u8], i: usize) -> Option<usize> {
        match b.get(i)? {
            b'"' => string_end(b, i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                loop {
                    match b.get(j)? {
                        b'"' => {
                            j = string_end(b, j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            _ => {
                let mut j = i;
                while b
                    .get(j)
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    j += 1;
                }
                Some(j)
            }
        }
    }
    fn read(raw: &str) -> Option<BodyMeta> {
        let b = raw.as_bytes();
        let mut meta = BodyMeta::default();
        let (mut model, mut usage, mut error) = (false, false, false);
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i += 1;
        loop {
            i = ws(b, i);
            match b.get(i)? {
                b'}' => return Some(meta),
                b',' => {
                    i += 1;
                    continue;
                }
                b'"' => {}
                _ => return None,
            }
            let key_end = string_end(b, i)?;
            let key = &raw[i + 1..key_end - 1];
            if key.contains('\\') {
                return None; // an escaped name: let serde decide
            }
            i = ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = ws(b, i + 1);
            let end = value_end(b, i)?;
            let value = &raw[i..end];
            let seen = match key {
                "model" => {
                    meta.model = serde_json::from_str(value).ok()?;
                    std::mem::replace(&mut model, true)
                }
                "usage" => {
                    meta.usage = serde_json::from_str(value).ok()?;
                    std::mem::replace(&mut usage, true)
                }
                "error" => {
                    meta.error = serde_json::from_str(value).ok()?;
                    std::mem::replace(&mut error, true)
                }
                _ => false,
            };
            if seen {
                return None; // serde refuses a repeated field
            }
            i = end;
        }
    }
    match read(raw) {
        Some(meta) => meta,
        // Anything unusual: exactly what serde makes of it.
        None => serde_json::from_str(raw).unwrap_or_default(),
    }
}

/// Parses one result line of a batch for `endpoint`; `Err` carries a
/// reason (never the line's content).
pub fn parse_line(endpoint: Endpoint, number: u64, bytes: &[u8]) -> Result<ResultLine, MalformedLine> {
    // UTF-8 checked once, with SIMD, for the whole line: `from_slice` would
    // check the body again as it borrows it (`RawValue`), byte by byte, at a
    // fifth of ingest's time on text with accents (`make bench`).
    let text = simdutf8::basic::from_utf8(bytes).map_err(|_| MalformedLine::NotUtf8)?;
    let wire: WireLine<'_> = serde_json::from_str(text).map_err(|e| MalformedLine::NotJson(e.to_string()))?;
    let custom_id = wire.custom_id.ok_or(MalformedLine::NoCustomId)?;
    let key = RequestKey::parse(custom_id.as_ref()).map_err(|_| MalformedLine::ForeignCustomId)?;
    let response = wire.response.filter(|r| r.status_code.is_some());
    let request_id = response
        .as_ref()
        .and_then(|r| r.request_id.clone())
        .filter(|id| !id.is_empty());
    let outcome = match (response, wire.error) {
        (Some(resp), _) => {
            let status_code = resp.status_code.unwrap_or(0);
            let body = resp.body.map(|b| b.get().to_owned());
            let meta = resp.body.map(|b| body_meta(b.get())).unwrap_or_default();
            if (200..300).contains(&status_code) {
                let usage = meta.usage.as_ref().and_then(|u| u.to_usage(endpoint));
                if meta.usage.is_some() && usage.is_none() {
                    tracing::warn!(
                        line = number,
                        "result line's usage lacks a count or claims over {MAX_USAGE_TOKENS} tokens; it is not counted"
                    );
                }
                Outcome::Success {
                    status_code,
                    body: body.unwrap_or_else(|| "null".to_owned()),
                    usage,
                    model: meta.model,
                }
            } else {
                let err = meta.error.unwrap_or_default();
                let code = code_string(&err.code)
                    .or(err.kind)
                    .unwrap_or_else(|| format!("http_{status_code}"));
                Outcome::Error {
                    error: RequestError {
                        code,
                        message: err.message.unwrap_or_else(|| format!("HTTP {status_code}")),
                        status_code: Some(status_code),
                    },
                    body,
                    retryable: matches!(status_code, 408 | 429) || status_code >= 500,
                }
            }
        }
        (None, Some(err)) => {
            let code = code_string(&err.code).unwrap_or_else(|| "unknown".to_owned());
            Outcome::Error {
                retryable: RETRYABLE_CODES.contains(&code.as_str()),
                error: RequestError {
                    code,
                    message: err.message.unwrap_or_default(),
                    status_code: None,
                },
                body: None,
            }
        }
        (None, None) => return Err(MalformedLine::NoOutcome),
    };
    Ok(ResultLine {
        number,
        key,
        outcome,
        request_id,
    })
}

/// A result line over [`MAX_RESULT_LINE_BYTES`], from its first bytes: the
/// request it answers and its HTTP status, read where OpenAI writes them
/// (`{"id":…,"custom_id":"KEY","response":{"status_code":N,…`). The line
/// itself is not kept (holding it would hold up to the whole file in
/// memory): its request ends failed with `result_too_large`, and is never
/// sent again. `None` when the head names no request.
pub fn too_long_line(number: u64, bytes: u64, head: &[u8]) -> Option<ResultLine> {
    fn after<'a>(hay: &'a [u8], needle: &[u8]) -> Option<&'a [u8]> {
        memchr::memmem::find(hay, needle).map(|i| &hay[i + needle.len()..])
    }
    fn skip_ws(s: &[u8]) -> &[u8] {
        let n = s.iter().take_while(|c| c.is_ascii_whitespace()).count();
        &s[n..]
    }
    let rest = skip_ws(after(head, b"\"custom_id\"")?);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    let value = rest.strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', value)?;
    let key = RequestKey::parse(std::str::from_utf8(&value[..end]).ok()?).ok()?;
    let status_code = after(head, b"\"status_code\"").and_then(|s| {
        let s = skip_ws(skip_ws(s).strip_prefix(b":")?);
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        std::str::from_utf8(&s[..digits]).ok()?.parse::<u16>().ok()
    });
    Some(ResultLine {
        number,
        key,
        outcome: Outcome::Error {
            error: RequestError {
                code: "result_too_large".into(),
                message: format!(
                    "the provider's answer is {bytes} bytes, over batchq's limit of {MAX_RESULT_LINE_BYTES} bytes \
                     for one result line; it was not kept (the provider billed it), and the request is not sent \
                     again"
                ),
                status_code,
            },
            body: None,
            retryable: false,
        },
        request_id: None,
    })
}

/// How ingest reads one result line, without a store: for tests and tools
/// that check untrusted result files (`tests/tests/fuzz_parsers.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultLineView {
    pub key: RequestKey,
    /// The HTTP status inside the line, when it has a response.
    pub status_code: Option<u16>,
    /// `None` for a 2xx response; the error code otherwise.
    pub error_code: Option<String>,
    /// Whether the request would go back to the queue (attempts permitting).
    pub retryable: bool,
    /// The usage ingest would record and count (2xx only).
    pub usage: Option<Usage>,
}

/// Reads one result line of a chat completions batch as ingest does. `Err`
/// is the reason ingest would skip it as malformed (never the line's content).
pub fn read_result_line(bytes: &[u8]) -> Result<ResultLineView, MalformedLine> {
    read_result_line_for(Endpoint::ChatCompletions, bytes)
}

/// Reads one result line of a batch for `endpoint` as ingest does.
pub fn read_result_line_for(endpoint: Endpoint, bytes: &[u8]) -> Result<ResultLineView, MalformedLine> {
    let line = parse_line(endpoint, 0, bytes)?;
    Ok(match line.outcome {
        Outcome::Success { status_code, usage, .. } => ResultLineView {
            key: line.key,
            status_code: Some(status_code),
            error_code: None,
            retryable: false,
            usage,
        },
        Outcome::Error { error, retryable, .. } => ResultLineView {
            key: line.key,
            status_code: error.status_code,
            error_code: Some(error.code),
            retryable,
            usage: None,
        },
    })
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
