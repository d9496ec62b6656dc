//! One line of a request log: its fields, read and checked.

use std::io::BufRead;
use std::time::Duration;

use batchq_core::ids::ModelName;
use batchq_core::job::ProviderKind;
use batchq_core::request::Usage;
use batchq_core::time::Timestamp;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::terms::{parse_tolerance, Category, LineProblem, Priority};

pub(crate) fn skip_to_next_line<R: BufRead>(reader: &mut R) -> std::io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        if let Some(pos) = memchr::memchr(b'\n', available) {
            reader.consume(pos + 1);
            return Ok(());
        }
        let len = available.len();
        reader.consume(len);
    }
}

/// One line of the log, as read.
#[derive(Deserialize)]
pub(crate) struct RawLine {
    pub(crate) model: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) category: Option<String>,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) prompt_tokens: Option<u64>,
    pub(crate) cached_input_tokens: Option<u64>,
    pub(crate) input_cached_tokens: Option<u64>,
    pub(crate) cache_write_tokens: Option<u64>,
    /// Anthropic's `usage` names: with either, `input_tokens` is Anthropic's
    /// uncached count.
    pub(crate) cache_read_input_tokens: Option<u64>,
    pub(crate) cache_creation_input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) completion_tokens: Option<u64>,
    pub(crate) num_model_requests: Option<u64>,
    pub(crate) timestamp: Option<String>,
    pub(crate) start_time: Option<i64>,
    pub(crate) end_time: Option<i64>,
    pub(crate) max_latency_seconds: Option<u64>,
    pub(crate) latency_tolerance: Option<String>,
    pub(crate) priority: Option<String>,
    pub(crate) batch: Option<bool>,
}

/// One valid line: a call, or an aggregate of `calls` calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) provider: ProviderKind,
    pub(crate) model: ModelName,
    pub(crate) category: Category,
    pub(crate) usage: Usage,
    pub(crate) calls: u64,
    pub(crate) start: Option<Timestamp>,
    pub(crate) end: Option<Timestamp>,
    /// `None`: the line does not say.
    pub(crate) tolerance: Option<Duration>,
    pub(crate) already_batched: bool,
}

pub(crate) fn one_of<T>(
    a: Option<T>,
    a_name: &'static str,
    b: Option<T>,
    b_name: &'static str,
) -> Result<Option<T>, LineProblem> {
    match (a, b) {
        (Some(_), Some(_)) => Err(LineProblem::Both(a_name, b_name)),
        (a, b) => Ok(a.or(b)),
    }
}

pub(crate) fn unix_seconds(field: &'static str, value: i64) -> Result<Timestamp, LineProblem> {
    // Years 0000 to 9999, like RFC 3339.
    if !(-62_167_219_200..=253_402_300_799).contains(&value) {
        return Err(LineProblem::BadUnixTime { field, value });
    }
    Ok(Timestamp::from_unix_seconds(value))
}

pub(crate) fn parse_line(bytes: &[u8]) -> Result<Call, LineProblem> {
    let raw: RawLine = serde_json::from_slice(bytes).map_err(|e| LineProblem::Json(e.to_string()))?;
    let model = match raw.model.as_deref().map(str::trim) {
        None | Some("") => return Err(LineProblem::MissingModel),
        Some(m) => ModelName::parse(m).map_err(|e| LineProblem::BadModel(e.message.replace("body.model ", "")))?,
    };
    let provider = match raw.provider.as_deref() {
        None => ProviderKind::OpenAi,
        Some(p) => ProviderKind::parse(p.trim()).ok_or_else(|| LineProblem::BadProvider(p.to_owned()))?,
    };
    let (input, cached, written) = input_counts(&raw)?;
    let output = one_of(
        raw.output_tokens,
        "output_tokens",
        raw.completion_tokens,
        "completion_tokens",
    )?
    .unwrap_or(0);
    let start = match (raw.timestamp, raw.start_time) {
        (Some(_), Some(_)) => return Err(LineProblem::Both("timestamp", "start_time")),
        (Some(t), None) => Some(parse_rfc3339(&t).ok_or(LineProblem::BadTimestamp(t))?),
        (None, Some(s)) => Some(unix_seconds("start_time", s)?),
        (None, None) => None,
    };
    let end = match raw.end_time {
        None => None,
        Some(e) => {
            let end = unix_seconds("end_time", e)?;
            match start {
                None => return Err(LineProblem::EndWithoutStart),
                Some(s) if end < s => return Err(LineProblem::EndBeforeStart),
                Some(_) => Some(end),
            }
        }
    };
    let tolerance = if let Some(secs) = raw.max_latency_seconds {
        Some(Duration::from_secs(secs))
    } else if let Some(t) = raw.latency_tolerance {
        Some(parse_tolerance(&t).ok_or(LineProblem::BadTolerance(t))?)
    } else if let Some(p) = raw.priority {
        Some(Priority::parse(&p).ok_or(LineProblem::BadPriority(p))?.tolerance())
    } else {
        None
    };
    Ok(Call {
        provider,
        model,
        category: Category::new(raw.category.as_deref()),
        usage: Usage {
            input_tokens: input,
            cached_input_tokens: cached,
            output_tokens: output,
            reasoning_tokens: 0,
            cache_write_tokens: written,
        },
        calls: raw.num_model_requests.unwrap_or(1),
        start,
        end,
        tolerance,
        already_batched: raw.batch == Some(true),
    })
}

/// The input, cache-read and cache-write counts, in `Usage`'s terms (the
/// input counts every input token). A line in Anthropic's names
/// (`cache_read_input_tokens`, `cache_creation_input_tokens`) counts its
/// `input_tokens` as Anthropic does, without the cache reads and writes,
/// so they are added; it may not also use batchq's names for the same counts.
fn input_counts(raw: &RawLine) -> Result<(u64, u64, u64), LineProblem> {
    if raw.cache_read_input_tokens.is_some() || raw.cache_creation_input_tokens.is_some() {
        let ours = [
            ("prompt_tokens", raw.prompt_tokens),
            ("cached_input_tokens", raw.cached_input_tokens),
            ("input_cached_tokens", raw.input_cached_tokens),
            ("cache_write_tokens", raw.cache_write_tokens),
        ];
        if let Some((name, _)) = ours.iter().find(|(_, v)| v.is_some()) {
            return Err(LineProblem::MixedUsageNames(name));
        }
        let uncached = raw.input_tokens.ok_or(LineProblem::MissingInputTokens)?;
        let read = raw.cache_read_input_tokens.unwrap_or(0);
        let written = raw.cache_creation_input_tokens.unwrap_or(0);
        let input = uncached
            .checked_add(read)
            .and_then(|n| n.checked_add(written))
            .ok_or(LineProblem::TokenOverflow)?;
        return Ok((input, read, written));
    }
    let input = one_of(raw.input_tokens, "input_tokens", raw.prompt_tokens, "prompt_tokens")?
        .ok_or(LineProblem::MissingInputTokens)?;
    let cached = one_of(
        raw.cached_input_tokens,
        "cached_input_tokens",
        raw.input_cached_tokens,
        "input_cached_tokens",
    )?
    .unwrap_or(0);
    let written = raw.cache_write_tokens.unwrap_or(0);
    if cached > input {
        return Err(LineProblem::CachedAboveInput { cached, input });
    }
    if written > input - cached {
        return Err(LineProblem::CacheAboveInput { cached, written, input });
    }
    Ok((input, cached, written))
}

/// Parses an RFC 3339 date-time (`2026-11-02T09:00:00Z`,
/// `2026-11-02T09:00:00.250+01:00`; `t`, `z` and a space separator too) to
/// the millisecond; finer fractions are cut off. The `time` crate reads it;
/// what it would also take is refused here: a leap second (`:60`) and any
/// other separator between date and time.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.get(17..19) == Some(b"60") {
        return None;
    }
    let parsed = match b.get(10)? {
        b'T' | b't' => OffsetDateTime::parse(s, &Rfc3339),
        b' ' => OffsetDateTime::parse(&format!("{}T{}", &s[..10], &s[11..]), &Rfc3339),
        _ => return None,
    };
    let nanos = parsed.ok()?.unix_timestamp_nanos();
    Some(Timestamp::from_millis(i64::try_from(nanos.div_euclid(1_000_000)).ok()?))
}
