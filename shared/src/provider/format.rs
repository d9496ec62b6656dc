//! The port for a provider's batch file format: how a request becomes an
//! input line, the limits an input file must keep, and how one output or
//! error line reads in domain terms (the request it answers, its outcome,
//! the response payload, its [`Usage`]). Each provider owns its whole format
//! in one place (`provider/openai/` for OpenAI and Azure OpenAI); the
//! pipeline asks the provider's format and knows no wire shape.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, Visitor};
use serde::Deserializer;
use thiserror::Error;

use crate::ids::RequestKey;
use crate::request::{Endpoint, RequestError, Usage};

/// The limits one batch input file must keep (the provider's documented
/// caps; configuration may lower them, never raise them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    pub max_lines: u64,
    pub max_bytes: u64,
    /// Inputs over all lines (embeddings); `u64::MAX` where there is no cap.
    pub max_inputs: u64,
}

impl FileLimits {
    /// The tighter of each limit.
    pub fn min(self, other: FileLimits) -> FileLimits {
        FileLimits {
            max_lines: self.max_lines.min(other.max_lines),
            max_bytes: self.max_bytes.min(other.max_bytes),
            max_inputs: self.max_inputs.min(other.max_inputs),
        }
    }
}

/// One result line read into domain terms.
#[derive(Debug)]
pub struct ResultLine {
    /// 1-based line number in its file.
    pub number: u64,
    pub key: RequestKey,
    pub outcome: Outcome,
    /// The provider's id of the request that answered this line (OpenAI's
    /// `response.request_id`, Anthropic's `request_id` of an errored
    /// result), kept for support; `None` when the provider gave none.
    pub request_id: Option<String>,
    /// Where a 2xx answer's body starts in the line's bytes, when the body
    /// is the line's own bytes verbatim (its length is the body's): the
    /// result can then point into the copied result file instead of
    /// holding the body ([`crate::placement::InlineLimits::place_answer`]).
    pub body_offset: Option<u64>,
}

/// Where `part`, a slice borrowed from `line`, starts in it; `None` when
/// it is not inside `line`.
pub fn offset_in(line: &str, part: &str) -> Option<u64> {
    let start = (part.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    (start + part.len() <= line.len()).then_some(start as u64)
}

/// What a result line says of its request.
#[derive(Debug)]
pub enum Outcome {
    /// A 2xx answer: its body kept verbatim, its usage and billed model.
    Success {
        status_code: u16,
        body: String,
        usage: Option<Usage>,
        model: Option<String>,
    },
    /// A failure: its error, the error body if any, and whether the request
    /// may go back to the queue (attempts permitting).
    Error {
        error: RequestError,
        body: Option<String>,
        retryable: bool,
    },
}

/// Why a line is not a result line. Never carries the line's content.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MalformedLine {
    #[error("not a result line: not UTF-8")]
    NotUtf8,
    /// The JSON parser's reason (position and kind, not content).
    #[error("not a result line: {0}")]
    NotJson(String),
    #[error("no custom_id")]
    NoCustomId,
    #[error("custom_id is not one of batchq's")]
    ForeignCustomId,
    #[error("line has neither a response nor an error")]
    NoOutcome,
}

/// A provider's batch file format.
pub trait BatchFormat: Send + Sync {
    /// The documented limits of one input file for `endpoint`.
    fn limits(&self, endpoint: Endpoint) -> FileLimits;

    /// Appends the input line of one request (`body_json` is its
    /// already-serialized body, copied as is) to `out`, newline included.
    fn write_input_line(&self, out: &mut Vec<u8>, key: &RequestKey, url: &str, body_json: &str);

    /// Size in bytes of the line [`BatchFormat::write_input_line`] writes.
    fn input_line_len(&self, url: &str, body_bytes: u64) -> u64;

    /// The request key of an input line this format wrote.
    fn input_line_key(&self, line: &[u8]) -> Option<RequestKey>;

    /// Longest result line read; longer ones go to [`BatchFormat::read_too_long_line`].
    fn max_result_line_bytes(&self) -> usize;

    /// Reads one output or error line of a batch for `endpoint`.
    fn read_result_line(&self, endpoint: Endpoint, number: u64, bytes: &[u8]) -> Result<ResultLine, MalformedLine>;

    /// A result line over [`BatchFormat::max_result_line_bytes`], known from
    /// its first bytes: the request it answers ends failed (sent again, it
    /// would be answered and billed alike). `None` when the head names no
    /// request.
    fn read_too_long_line(&self, number: u64, bytes: u64, head: &Bytes) -> Option<ResultLine>;
}

/// A provider's request id, for `#[serde(deserialize_with)]`: kept when it is
/// a string, dropped when it is anything else. It only helps a support
/// ticket, so an odd one must not cost the caller their result.
pub(crate) fn string_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct StringOrNone;
    impl<'de> Visitor<'de> for StringOrNone {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            de::IgnoredAny.visit_seq(seq).map(|_| None)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            de::IgnoredAny.visit_map(map).map(|_| None)
        }
    }
    d.deserialize_any(StringOrNone)
}
