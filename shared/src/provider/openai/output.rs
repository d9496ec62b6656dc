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
struct WireLine<'a, B> {
    #[serde(borrow, default)]
    custom_id: Option<Cow<'a, str>>,
    // No `default` on the two `Option<B>`s (it would ask `B: Default`): a
    // missing `Option` member is `None` all the same.
    response: Option<WireResponse<B>>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireResponse<B> {
    #[serde(default)]
    status_code: Option<u16>,
    /// Support's handle on the answer, kept when it is a string. Any other
    /// type is dropped, not a reason to refuse the line: the result is the
    /// caller's, this id only helps a support ticket.
    #[serde(default, deserialize_with = "string_or_none")]
    request_id: Option<String>,
    body: Option<B>,
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

/// serde_json's name for the map it hands `deserialize_any` in place of a
/// number (feature `arbitrary_precision`).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// A response body as the line's one parse meets it: an object with
/// members yields the parts batchq reads (`model`, `usage`, `error`, read as
/// `serde_json::from_str::<BodyMeta>(body).unwrap_or_default()` would: a
/// wrong type or a repeated one of them gives the default) and where its
/// text lies in the line (its first member's name and last member's value
/// borrow from the line). Anything else (not an object, `{}`, a name with
/// an escape) is `Other`, and the line is read again the plain way
/// ([`parse_plain`]). Reading the body's parts while the line is parsed,
/// rather than going over its text a second time, is most of what keeps
/// ingest near the speed of merely reading the file (`make bench`).
// Made once per result line on the stack and matched at once: boxing the
// large variant would add an allocation per line for nothing.
#[allow(clippy::large_enum_variant)]
enum WireBody<'a> {
    Object {
        meta: BodyMeta,
        first_name: &'a str,
        last: End<'a>,
    },
    Other,
}

/// Where an object body's last member ends: its value borrowed as raw
/// JSON, or, for a member read in place, its name (the value is found
/// again from there).
#[derive(Clone, Copy)]
enum End<'a> {
    Value(&'a RawValue),
    AfterName(&'a str),
}

impl<'de: 'a, 'a> Deserialize<'de> for WireBody<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        use std::fmt;

        /// A member's name when it borrows from the line (no escape in it).
        struct Name<'a>(Option<&'a str>);
        impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Option<&'de str>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a member name")
                    }
                    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                        Ok(Some(v))
                    }
                    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                        Ok(None)
                    }
                }
                d.deserialize_str(V).map(Name)
            }
        }

        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = WireBody<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut meta = Some(BodyMeta::default());
                let (mut model, mut usage, mut error) = (false, false, false);
                let mut first_name = None;
                let mut last = None;
                let mut plain = false;
                while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
                    let Some(name) = name.filter(|n| *n != NUMBER_TOKEN) else {
                        // An escaped name, or a number: read the plain way.
                        plain = true;
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    first_name.get_or_insert(name);
                    // `model`, `usage` and `error` are read in place, not
                    // borrowed as raw JSON and parsed again. A wrong type
                    // is an error of this pass, and the plain way (whose
                    // `BodyMeta` is then the default) reads the line; a
                    // repeated one is the default here, as in serde.
                    let seen = match (name, meta.is_some()) {
                        ("model", true) => Some(&mut model),
                        ("usage", true) => Some(&mut usage),
                        ("error", true) => Some(&mut error),
                        _ => None,
                    };
                    match (seen.map(|s| std::mem::replace(s, true)), meta.as_mut()) {
                        (Some(false), Some(m)) => {
                            match name {
                                "model" => m.model = map.next_value()?,
                                "usage" => m.usage = map.next_value()?,
                                _ => m.error = map.next_value()?,
                            }
                            last = Some(End::AfterName(name));
                        }
                        (again, _) => {
                            if again.is_some() {
                                meta = None; // a repeated one: serde refuses the body
                            }
                            last = Some(End::Value(map.next_value::<&'de RawValue>()?));
                        }
                    }
                }
                Ok(match (plain, first_name, last) {
                    (false, Some(first_name), Some(last)) => WireBody::Object {
                        meta: meta.unwrap_or_default(),
                        first_name,
                        last,
                    },
                    _ => WireBody::Other,
                })
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(WireBody::Other)
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(WireBody::Other)
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(WireBody::Other)
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(WireBody::Other)
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(WireBody::Other)
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(WireBody::Other)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(WireBody::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

fn is_json_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The text of an object body in `text` from its first member's name and
/// where its last member ends (both borrowed from `text`): back over
/// whitespace to its `{`, on over whitespace to its `}`. `None` if they do
/// not lie in `text` as an object's members do.
fn object_text<'a>(text: &'a str, first_name: &str, last: End<'_>) -> Option<&'a str> {
    let base = text.as_ptr() as usize;
    let b = text.as_bytes();
    // The name's opening quote, then whitespace, then the brace.
    let quote = (first_name.as_ptr() as usize).checked_sub(base)?.checked_sub(1)?;
    let before = b.get(..quote)?;
    let open = before.len() - before.iter().rev().take_while(|c| is_json_ws(**c)).count();
    let open = open.checked_sub(1)?;
    let last_value = match last {
        End::Value(v) => v,
        End::AfterName(name) => value_after(text, name)?,
    };
    let value_end = (last_value.get().as_ptr() as usize).checked_sub(base)? + last_value.get().len();
    let after = b.get(value_end..)?;
    let close = value_end + after.iter().take_while(|c| is_json_ws(**c)).count();
    (b.get(open) == Some(&b'{') && b.get(close) == Some(&b'}')).then(|| text.get(open..=close))?
}

/// The value of the member named `name` (borrowed from `text`, without an
/// escape), read again as raw JSON: past the name's closing quote,
/// whitespace, the colon and whitespace.
fn value_after<'a>(text: &'a str, name: &str) -> Option<&'a RawValue> {
    let quote = (name.as_ptr() as usize).checked_sub(text.as_ptr() as usize)? + name.len();
    let rest = text.get(quote..)?.strip_prefix('"')?;
    let rest = rest.trim_start_matches(|c| is_json_ws(c as u8)).strip_prefix(':')?;
    let rest = rest.trim_start_matches(|c| is_json_ws(c as u8));
    let mut de = serde_json::Deserializer::from_str(rest);
    <&RawValue>::deserialize(&mut de).ok()
}

/// A line's parts batchq reads: its request, status, support id, error,
/// and its body's text with the body's parts.
struct ReadLine<'a> {
    custom_id: Option<Cow<'a, str>>,
    /// `Some` when the line has a response with a status code.
    status_code: Option<u16>,
    request_id: Option<String>,
    body: Option<(&'a str, BodyMeta)>,
    error: Option<WireError>,
}

/// Reads a line in one parse (see [`WireBody`]), or the plain way when its
/// body is not an object with members.
fn read_line(text: &str) -> Result<ReadLine<'_>, serde_json::Error> {
    // The one pass reads member names and a body that is a string as
    // strings (a lone surrogate escape in them is an error), where the
    // plain way skips them: any error is the plain way's to give.
    let Ok(wire) = serde_json::from_str::<WireLine<'_, WireBody<'_>>>(text) else {
        return parse_plain(text);
    };
    let (status_code, request_id, body) = match wire.response.filter(|r| r.status_code.is_some()) {
        None => (None, None, None),
        Some(r) => {
            let body = match r.body {
                None => None,
                Some(WireBody::Object { meta, first_name, last }) => match object_text(text, first_name, last) {
                    Some(raw) => Some((raw, meta)),
                    None => return parse_plain(text),
                },
                Some(WireBody::Other) => return parse_plain(text),
            };
            (r.status_code, r.request_id, body)
        }
    };
    Ok(ReadLine {
        custom_id: wire.custom_id,
        status_code,
        request_id,
        body,
        error: wire.error,
    })
}

/// The plain way: the body kept as raw JSON, then read by serde on its own.
fn parse_plain(text: &str) -> Result<ReadLine<'_>, serde_json::Error> {
    let wire: WireLine<'_, &RawValue> = serde_json::from_str(text)?;
    let response = wire.response.filter(|r| r.status_code.is_some());
    let (status_code, request_id, body) = match response {
        Some(r) => (
            r.status_code,
            r.request_id,
            r.body
                .map(|b| (b.get(), serde_json::from_str::<BodyMeta>(b.get()).unwrap_or_default())),
        ),
        None => (None, None, None),
    };
    Ok(ReadLine {
        custom_id: wire.custom_id,
        status_code,
        request_id,
        body,
        error: wire.error,
    })
}

/// What a result line says, its body borrowed from the line: what
/// [`parse_line`] makes a [`ResultLine`] of (copying the body) and
/// [`read_result_line_for`] a [`ResultLineView`] of (not copying it: a
/// view has no body). Both read the line through this one function.
struct Read<'a> {
    key: RequestKey,
    request_id: Option<String>,
    outcome: ReadOutcome<'a>,
}

/// [`Outcome`] with the body borrowed.
enum ReadOutcome<'a> {
    Success {
        status_code: u16,
        body: Option<&'a str>,
        usage: Option<Usage>,
        model: Option<String>,
    },
    Error {
        error: RequestError,
        body: Option<&'a str>,
        retryable: bool,
    },
}

/// Reads one result line of a batch for `endpoint`; `Err` carries a
/// reason (never the line's content).
fn read(endpoint: Endpoint, number: u64, bytes: &[u8]) -> Result<Read<'_>, MalformedLine> {
    // UTF-8 checked once, with SIMD, for the whole line: `from_slice` would
    // check the body again as it borrows it (`RawValue`), byte by byte, at a
    // fifth of ingest's time on text with accents (`make bench`).
    let text = simdutf8::basic::from_utf8(bytes).map_err(|_| MalformedLine::NotUtf8)?;
    let line = read_line(text).map_err(|e| MalformedLine::NotJson(e.to_string()))?;
    let custom_id = line.custom_id.ok_or(MalformedLine::NoCustomId)?;
    let key = RequestKey::parse(custom_id.as_ref()).map_err(|_| MalformedLine::ForeignCustomId)?;
    let request_id = line.request_id.filter(|id| !id.is_empty());
    let outcome = match (line.status_code, line.error) {
        (Some(status_code), _) => {
            let (body, meta) = match line.body {
                Some((raw, meta)) => (Some(raw), meta),
                None => (None, BodyMeta::default()),
            };
            if (200..300).contains(&status_code) {
                let usage = meta.usage.as_ref().and_then(|u| u.to_usage(endpoint));
                if meta.usage.is_some() && usage.is_none() {
                    tracing::warn!(
                        line = number,
                        "result line's usage lacks a count or claims over {MAX_USAGE_TOKENS} tokens; it is not counted"
                    );
                }
                ReadOutcome::Success {
                    status_code,
                    body,
                    usage,
                    model: meta.model,
                }
            } else {
                let err = meta.error.unwrap_or_default();
                let code = code_string(&err.code)
                    .or(err.kind)
                    .unwrap_or_else(|| format!("http_{status_code}"));
                ReadOutcome::Error {
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
            ReadOutcome::Error {
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
    Ok(Read {
        key,
        request_id,
        outcome,
    })
}

/// Parses one result line of a batch for `endpoint`; `Err` carries a
/// reason (never the line's content).
pub fn parse_line(endpoint: Endpoint, number: u64, bytes: &[u8]) -> Result<ResultLine, MalformedLine> {
    let line = read(endpoint, number, bytes)?;
    // Where a 2xx answer's body starts in the line: it is borrowed from
    // the line's bytes, so a pointer difference (checked to lie within).
    let body_offset = match &line.outcome {
        ReadOutcome::Success { body: Some(body), .. } => (body.as_ptr() as usize)
            .checked_sub(bytes.as_ptr() as usize)
            .filter(|start| start + body.len() <= bytes.len())
            .map(|start| start as u64),
        _ => None,
    };
    let outcome = match line.outcome {
        ReadOutcome::Success {
            status_code,
            body,
            usage,
            model,
        } => Outcome::Success {
            status_code,
            body: body.unwrap_or("null").to_owned(),
            usage,
            model,
        },
        ReadOutcome::Error { error, body, retryable } => Outcome::Error {
            error,
            body: body.map(str::to_owned),
            retryable,
        },
    };
    Ok(ResultLine {
        number,
        key: line.key,
        outcome,
        request_id: line.request_id,
        body_offset,
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
        body_offset: None,
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

/// Reads one result line of a batch for `endpoint` as ingest does (the
/// same reading as [`parse_line`], without copying the body a view does
/// not hold).
pub fn read_result_line_for(endpoint: Endpoint, bytes: &[u8]) -> Result<ResultLineView, MalformedLine> {
    let line = read(endpoint, 0, bytes)?;
    Ok(match line.outcome {
        ReadOutcome::Success { status_code, usage, .. } => ResultLineView {
            key: line.key,
            status_code: Some(status_code),
            error_code: None,
            retryable: false,
            usage,
        },
        ReadOutcome::Error { error, retryable, .. } => ResultLineView {
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
