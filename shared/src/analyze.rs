//! Finding batchable work: reads a log of past real-time LLM calls and works
//! out how much of the spend could have gone through a Batch API, and what
//! that would save per month (`batchq analyze`).
//!
//! # Input: one call (or one aggregate of calls) per line, JSONL
//!
//! ```json
//! {"timestamp": "2026-11-02T09:00:00Z", "model": "gpt-4.1-mini", "category": "support-chat",
//!  "prompt_tokens": 1850, "cached_input_tokens": 1024, "completion_tokens": 240, "latency_tolerance": "realtime"}
//! {"start_time": 1793577600, "end_time": 1793664000, "model": "text-embedding-3-small",
//!  "category": "search-indexing", "input_tokens": 41250000, "num_model_requests": 16500, "max_latency_seconds": 172800}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `model` | required, the model name as sent (`gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`, see [`PriceBook::lookup`]) |
//! | `input_tokens` or `prompt_tokens` | required, input tokens *including* cached ones (as OpenAI reports them) |
//! | `cached_input_tokens` or `input_cached_tokens` | cached input tokens, part of the input; default 0 |
//! | `output_tokens` or `completion_tokens` | output tokens, reasoning included; default 0 |
//! | `num_model_requests` | the line stands for this many calls (token counts are their sums); default 1 |
//! | `timestamp` or `start_time` | when the call was made (or its bucket began): RFC 3339 string, or Unix seconds |
//! | `end_time` | end of an aggregate's time bucket, Unix seconds (usage export) |
//! | `max_latency_seconds`, `latency_tolerance`, `priority` | how long the caller could wait (below) |
//! | `category` | free text naming the workload (`nightly-summaries`); default `uncategorized` |
//! | `provider` | `openai` (default) or `azure_openai` |
//! | `batch` | `true` marks usage that already went through a Batch API: counted apart, not analysed |
//!
//! The token, `num_model_requests`, `start_time`, `end_time` and `batch` names
//! are those of OpenAI's organization usage API (`/v1/organization/usage/completions`
//! and `/embeddings`, one result of a bucket per line, bucket times copied
//! onto it, grouped by model), so its export reads as is; every other field
//! (`object`, `project_id`, `api_key_id`, …) is ignored. Giving both names of
//! one quantity (`input_tokens` and `prompt_tokens`) is an error, as is a
//! cached count above the input count. Blank lines are skipped.
//!
//! # The rule: when is a call batchable?
//!
//! A call's *latency tolerance* is the longest its caller could have waited
//! for the answer, read from the first of these fields the line has:
//!
//! 1. `max_latency_seconds`: a whole number of seconds;
//! 2. `latency_tolerance`: `realtime` (or `real-time`) = 0, `minutes` = 1 min,
//!    `hours` = 1 h, `day`/`days` = 24 h, `week`/`weeks` = 7 days, or a
//!    duration such as `90s`, `15m`, `6h`, `2d`, `1w`. A label stands for the
//!    *least* wait it promises: "hours" is one hour, not twenty-three;
//! 3. `priority`: `high` or `normal` = 0, `low` = 1 h (like "hours"),
//!    `batch` = 24 h (the Batch API's completion window).
//!
//! A call is **batchable when its tolerance is known and at least the
//! minimum wait** (`--min-wait`, default 24 h: a batch may take that long).
//! A line with none of the three fields has an unknown tolerance and is *not*
//! batchable; such calls are counted (`calls_without_tolerance`) so the report
//! shows how much of the log could not be judged.
//!
//! # The figures
//!
//! Every priced call adds its real-time cost (what it cost) and its batch cost
//! (what it would have cost through the Batch API), both exact in
//! picodollars from the [`PriceBook`]. Per (category, model) and in total:
//!
//! - `saving_if_batched` = real-time cost − batch cost of *all* its calls;
//! - `batchable.saving` = the same for its batchable calls only. It can be
//!   negative: some models give no cached-input discount in a batch;
//! - batchable share of spend = batchable real-time cost ÷ real-time cost, as
//!   a percentage with two decimals, rounded half up in integers ([`Percent`]);
//! - projected monthly saving = `batchable.saving × 30 days ÷ period`, where
//!   the period runs from the earliest line start (`timestamp`/`start_time`)
//!   to the latest line end (`end_time`, else the start), in milliseconds, and
//!   the quotient is rounded to the nearest picodollar (halves away from
//!   zero). With no period (no timestamps, or all the same instant) there is no
//!   projection.
//!
//! A model the price table does not know, or a usage it cannot price (output
//! tokens on an embedding model), is listed under `unpriced` with its calls and
//! tokens and left out of every money figure: never priced at zero. A line
//! that cannot be read is reported with its line number and skipped.
//!
//! The reader holds one line at a time (at most [`MAX_LINE_BYTES`]) plus one
//! aggregate per (category, model).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, Read};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::ids::ModelName;
use crate::job::ProviderKind;
use crate::money::Money;
use crate::pricing::{Cost, PriceBook};
use crate::request::Usage;
use crate::time::Timestamp;

/// The default minimum wait: the Batch API's 24 h completion window.
pub const DEFAULT_MIN_WAIT: Duration = Duration::from_secs(24 * 3600);
/// The month the projection scales to: 30 days.
pub const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest line read; a longer one is reported and skipped.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Malformed lines listed in the report; any further ones are only counted.
pub const MAX_LISTED_MALFORMED: usize = 100;

/// The category of a line without one.
pub const UNCATEGORIZED: &str = "uncategorized";

/// Reading the log failed (a bad line never fails the analysis).
#[derive(Debug, Error)]
pub enum AnalyzeError {
    #[error("cannot read line {line}: {source}")]
    Read {
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: the totals overflow")]
    Overflow { line: u64 },
}

/// Why one line was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineProblem {
    #[error("not a JSON object of a call: {0}")]
    Json(String),
    #[error("longer than {max} bytes")]
    TooLong { max: usize },
    #[error("`model` is missing, null or empty (export usage grouped by model)")]
    MissingModel,
    #[error("`model` {0}")]
    BadModel(String),
    #[error("no input token count (`input_tokens` or `prompt_tokens`)")]
    MissingInputTokens,
    #[error("both `{0}` and `{1}` are given; give one")]
    Both(&'static str, &'static str),
    #[error("cached input tokens ({cached}) exceed input tokens ({input})")]
    CachedAboveInput { cached: u64, input: u64 },
    #[error("`timestamp` {0:?} is not an RFC 3339 date-time such as 2026-11-02T09:00:00Z")]
    BadTimestamp(String),
    #[error("`{field}` {value} is out of range for Unix seconds")]
    BadUnixTime { field: &'static str, value: i64 },
    #[error("`end_time` needs a start (`start_time` or `timestamp`)")]
    EndWithoutStart,
    #[error("`end_time` is before the start")]
    EndBeforeStart,
    #[error(
        "`latency_tolerance` {0:?} is not realtime, minutes, hours, day, days, week, weeks or a duration like 6h or 2d"
    )]
    BadTolerance(String),
    #[error("`priority` {0:?} is not high, normal, low or batch")]
    BadPriority(String),
    #[error("`provider` {0:?} is not openai or azure_openai")]
    BadProvider(String),
}

/// A skipped line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based line number in the file.
    pub line: u64,
    pub problem: LineProblem,
}

/// A workload's name as the log gives it (`category`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Category(String);

impl Category {
    /// Trimmed; a missing or blank category is [`UNCATEGORIZED`].
    pub fn new(raw: Option<&str>) -> Self {
        match raw.map(str::trim) {
            Some(s) if !s.is_empty() => Self(s.to_owned()),
            _ => Self(UNCATEGORIZED.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the caller said how long it could wait. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    High,
    Normal,
    Low,
    Batch,
}

impl Priority {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Some(Self::High),
            "normal" => Some(Self::Normal),
            "low" => Some(Self::Low),
            "batch" => Some(Self::Batch),
            _ => None,
        }
    }

    /// The least wait this priority promises.
    pub fn tolerance(self) -> Duration {
        match self {
            Self::High | Self::Normal => Duration::ZERO,
            Self::Low => Duration::from_secs(3600),
            Self::Batch => DEFAULT_MIN_WAIT,
        }
    }
}

/// A `latency_tolerance` value: a label (`realtime`, `minutes`, `hours`,
/// `day`, `days`, `week`, `weeks`) or a duration ([`parse_wait`]), as the
/// least wait it promises.
pub fn parse_tolerance(s: &str) -> Option<Duration> {
    let label = s.trim().to_ascii_lowercase();
    let secs = match label.as_str() {
        "realtime" | "real-time" => 0,
        "minutes" => 60,
        "hours" => 3600,
        "day" | "days" => 86_400,
        "week" | "weeks" => 7 * 86_400,
        _ => return parse_wait(&label).ok(),
    };
    Some(Duration::from_secs(secs))
}

/// A wait written as a whole number and a unit: `90s`, `15m`, `24h`, `2d`,
/// `1w` (a bare number is seconds).
pub fn parse_wait(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a wait like 90s, 15m, 24h, 2d or 1w"))?;
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h, d or w")),
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// A wait as the shortest text [`parse_wait`] reads back (`24h`, `90m`, `45s`).
pub fn format_wait(d: Duration) -> String {
    let s = d.as_secs();
    if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A share in hundredths of a percent (`6327` is 63.27 %), from integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent {
    hundredths: i128,
}

impl Percent {
    /// `part ÷ whole` as a percentage rounded half up to two decimals; `None`
    /// when `whole` is not positive.
    pub fn of(part: Money, whole: Money) -> Option<Self> {
        let whole = whole.picodollars();
        if whole <= 0 {
            return None;
        }
        let scaled = part.picodollars().checked_mul(10_000)?;
        Some(Self {
            hundredths: div_round(scaled, whole),
        })
    }

    pub fn hundredths(self) -> i128 {
        self.hundredths
    }
}

impl fmt::Display for Percent {
    /// `63.27` (no `%` sign), `-1.50` when negative.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.hundredths < 0 { "-" } else { "" };
        let abs = self.hundredths.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// `n ÷ d` rounded to the nearest integer, halves away from zero (`d > 0`).
fn div_round(n: i128, d: i128) -> i128 {
    let half = d / 2;
    if n >= 0 {
        (n + half) / d
    } else {
        -((-n + half) / d)
    }
}

/// The time the log covers: earliest line start to latest line end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Period {
    pub fn millis(&self) -> i64 {
        self.to.millis() - self.from.millis()
    }

    /// `amount` over this period scaled to [`MONTH`]: `amount × 30 days ÷
    /// period`, rounded to the nearest picodollar (halves away from zero).
    /// `None` for an empty period.
    pub fn scale_to_month(&self, amount: Money) -> Option<Money> {
        let period = i128::from(self.millis());
        if period <= 0 {
            return None;
        }
        let month = MONTH.as_millis() as i128;
        let scaled = amount.picodollars().checked_mul(month)?;
        Some(Money::from_picodollars(div_round(scaled, period)))
    }
}

/// Counts and money of a set of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Lines that went into these totals.
    pub lines: u64,
    /// Calls (`num_model_requests` summed).
    pub calls: u64,
    /// Token sums (`reasoning_tokens` stays 0: it is not read from the log).
    pub usage: Usage,
    /// What the calls cost in real time.
    pub realtime_cost: Money,
    /// What they would have cost through the Batch API.
    pub batch_cost: Money,
    /// Calls whose tolerance reaches the minimum wait.
    pub batchable_calls: u64,
    pub batchable_realtime_cost: Money,
    pub batchable_batch_cost: Money,
    /// Calls whose line gave no latency tolerance (counted as not batchable).
    pub calls_without_tolerance: u64,
}

impl Totals {
    /// Real-time cost − batch cost of all the calls.
    pub fn saving_if_batched(&self) -> Money {
        self.realtime_cost - self.batch_cost
    }

    /// Real-time cost − batch cost of the batchable calls.
    pub fn batchable_saving(&self) -> Money {
        self.batchable_realtime_cost - self.batchable_batch_cost
    }

    /// Batchable real-time cost ÷ real-time cost; `None` when nothing was spent.
    pub fn batchable_share(&self) -> Option<Percent> {
        Percent::of(self.batchable_realtime_cost, self.realtime_cost)
    }

    fn add(&mut self, call: &Call, cost: Cost, batchable: Option<bool>) -> Option<()> {
        self.lines = self.lines.checked_add(1)?;
        self.calls = self.calls.checked_add(call.calls)?;
        add_usage(&mut self.usage, &call.usage)?;
        self.realtime_cost = add_money(self.realtime_cost, cost.realtime)?;
        self.batch_cost = add_money(self.batch_cost, cost.batch)?;
        match batchable {
            Some(true) => {
                self.batchable_calls = self.batchable_calls.checked_add(call.calls)?;
                self.batchable_realtime_cost = add_money(self.batchable_realtime_cost, cost.realtime)?;
                self.batchable_batch_cost = add_money(self.batchable_batch_cost, cost.batch)?;
            }
            Some(false) => {}
            None => self.calls_without_tolerance = self.calls_without_tolerance.checked_add(call.calls)?,
        }
        Some(())
    }
}

fn add_money(a: Money, b: Money) -> Option<Money> {
    a.picodollars()
        .checked_add(b.picodollars())
        .map(Money::from_picodollars)
}

fn add_usage(sum: &mut Usage, u: &Usage) -> Option<()> {
    sum.input_tokens = sum.input_tokens.checked_add(u.input_tokens)?;
    sum.cached_input_tokens = sum.cached_input_tokens.checked_add(u.cached_input_tokens)?;
    sum.output_tokens = sum.output_tokens.checked_add(u.output_tokens)?;
    Some(())
}

/// The priced calls of one (category, model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub category: Category,
    /// The model as the log names it.
    pub model: ModelName,
    /// The price table entry it was priced as (`gpt-4o-mini` for `gpt-4o-mini-2024-07-18`).
    pub priced_as: String,
    pub totals: Totals,
}

/// Why calls were left unpriced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnpricedReason {
    /// The price table has no entry for the model.
    UnknownModel,
    /// The model is listed but this usage has no price (output tokens on a
    /// model without an output price), or its cost overflows.
    UsageNotPriced,
}

impl UnpricedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownModel => "unknown_model",
            Self::UsageNotPriced => "usage_not_priced",
        }
    }
}

/// Calls of one (category, model) that could not be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpriced {
    pub category: Category,
    pub model: ModelName,
    pub reason: UnpricedReason,
    pub lines: u64,
    pub calls: u64,
    pub usage: Usage,
}

/// Lines and calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub lines: u64,
    pub calls: u64,
}

/// What a usage log says about batchable work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub min_wait: Duration,
    /// Lines in the file, blank ones included.
    pub lines_read: u64,
    /// `None` when no line had a time, or all had the same.
    pub period: Option<Period>,
    /// Priced calls per (category, model), sorted by category then model.
    pub groups: Vec<Group>,
    /// Sum of `groups`.
    pub totals: Totals,
    /// Sorted by category, model, reason.
    pub unpriced: Vec<Unpriced>,
    /// Lines marked `"batch": true`: already at batch prices, not analysed.
    pub already_batched: Count,
    /// The first [`MAX_LISTED_MALFORMED`] skipped lines.
    pub malformed: Vec<MalformedLine>,
    /// Every skipped line, listed or not.
    pub malformed_lines: u64,
}

impl Analysis {
    /// The batchable calls' saving over the period, scaled to 30 days.
    pub fn projected_monthly_saving(&self) -> Option<Money> {
        self.project(&self.totals)
    }

    /// One group's (or any totals') batchable saving scaled to 30 days.
    pub fn project(&self, totals: &Totals) -> Option<Money> {
        self.period?.scale_to_month(totals.batchable_saving())
    }
}

/// Reads a usage log line by line and analyses it. `min_wait` is the
/// shortest tolerance that makes a call batchable.
pub fn analyze<R: BufRead>(mut reader: R, prices: &PriceBook, min_wait: Duration) -> Result<Analysis, AnalyzeError> {
    let mut analyzer = Analyzer::new(prices, min_wait);
    let mut buf = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        buf.clear();
        let read = <&mut R as Read>::take(&mut reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| AnalyzeError::Read {
                line: number + 1,
                source,
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        let ended = buf.last() == Some(&b'\n');
        if !ended && buf.len() > MAX_LINE_BYTES {
            skip_to_next_line(&mut reader).map_err(|source| AnalyzeError::Read { line: number, source })?;
            analyzer.malformed(number, LineProblem::TooLong { max: MAX_LINE_BYTES });
            continue;
        }
        if ended {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(&buf) {
            Ok(call) => analyzer.add(&call).ok_or(AnalyzeError::Overflow { line: number })?,
            Err(problem) => analyzer.malformed(number, problem),
        }
    }
    Ok(analyzer.finish(number))
}

fn skip_to_next_line<R: BufRead>(reader: &mut R) -> std::io::Result<()> {
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
struct RawLine {
    model: Option<String>,
    provider: Option<String>,
    category: Option<String>,
    input_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    cached_input_tokens: Option<u64>,
    input_cached_tokens: Option<u64>,
    output_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    num_model_requests: Option<u64>,
    timestamp: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    max_latency_seconds: Option<u64>,
    latency_tolerance: Option<String>,
    priority: Option<String>,
    batch: Option<bool>,
}

/// One valid line: a call, or an aggregate of `calls` calls.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    provider: ProviderKind,
    model: ModelName,
    category: Category,
    usage: Usage,
    calls: u64,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    /// `None`: the line does not say.
    tolerance: Option<Duration>,
    already_batched: bool,
}

fn one_of<T>(a: Option<T>, a_name: &'static str, b: Option<T>, b_name: &'static str) -> Result<Option<T>, LineProblem> {
    match (a, b) {
        (Some(_), Some(_)) => Err(LineProblem::Both(a_name, b_name)),
        (a, b) => Ok(a.or(b)),
    }
}

fn unix_seconds(field: &'static str, value: i64) -> Result<Timestamp, LineProblem> {
    // Years 0000 to 9999, like RFC 3339.
    if !(-62_167_219_200..=253_402_300_799).contains(&value) {
        return Err(LineProblem::BadUnixTime { field, value });
    }
    Ok(Timestamp::from_unix_seconds(value))
}

fn parse_line(bytes: &[u8]) -> Result<Call, LineProblem> {
    let raw: RawLine = serde_json::from_slice(bytes).map_err(|e| LineProblem::Json(e.to_string()))?;
    let model = match raw.model.as_deref().map(str::trim) {
        None | Some("") => return Err(LineProblem::MissingModel),
        Some(m) => ModelName::parse(m).map_err(|e| LineProblem::BadModel(e.message.replace("body.model ", "")))?,
    };
    let provider = match raw.provider.as_deref() {
        None => ProviderKind::OpenAi,
        Some(p) => ProviderKind::parse(p.trim()).ok_or_else(|| LineProblem::BadProvider(p.to_owned()))?,
    };
    let input = one_of(raw.input_tokens, "input_tokens", raw.prompt_tokens, "prompt_tokens")?
        .ok_or(LineProblem::MissingInputTokens)?;
    let cached = one_of(
        raw.cached_input_tokens,
        "cached_input_tokens",
        raw.input_cached_tokens,
        "input_cached_tokens",
    )?
    .unwrap_or(0);
    let output = one_of(
        raw.output_tokens,
        "output_tokens",
        raw.completion_tokens,
        "completion_tokens",
    )?
    .unwrap_or(0);
    if cached > input {
        return Err(LineProblem::CachedAboveInput { cached, input });
    }
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
        },
        calls: raw.num_model_requests.unwrap_or(1),
        start,
        end,
        tolerance,
        already_batched: raw.batch == Some(true),
    })
}

/// Parses an RFC 3339 date-time (`2026-11-02T09:00:00Z`,
/// `2026-11-02T09:00:00.250+01:00`; `t`, `z` and a space separator too) to
/// the millisecond; finer fractions are cut off.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.trim().as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(Timestamp::from_millis(secs * 1000 + millis))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

type GroupKey = (Category, ModelName);

struct Analyzer<'a> {
    prices: &'a PriceBook,
    min_wait: Duration,
    groups: BTreeMap<GroupKey, Group>,
    totals: Totals,
    unpriced: BTreeMap<(Category, ModelName, UnpricedReason), Unpriced>,
    already_batched: Count,
    earliest: Option<Timestamp>,
    latest: Option<Timestamp>,
    malformed: Vec<MalformedLine>,
    malformed_lines: u64,
}

impl<'a> Analyzer<'a> {
    fn new(prices: &'a PriceBook, min_wait: Duration) -> Self {
        Self {
            prices,
            min_wait,
            groups: BTreeMap::new(),
            totals: Totals::default(),
            unpriced: BTreeMap::new(),
            already_batched: Count::default(),
            earliest: None,
            latest: None,
            malformed: Vec::new(),
            malformed_lines: 0,
        }
    }

    fn malformed(&mut self, line: u64, problem: LineProblem) {
        self.malformed_lines += 1;
        if self.malformed.len() < MAX_LISTED_MALFORMED {
            self.malformed.push(MalformedLine { line, problem });
        }
    }

    fn add(&mut self, call: &Call) -> Option<()> {
        if let Some(start) = call.start {
            let end = call.end.unwrap_or(start);
            self.earliest = Some(self.earliest.map_or(start, |e| e.min(start)));
            self.latest = Some(self.latest.map_or(end, |l| l.max(end)));
        }
        if call.already_batched {
            self.already_batched.lines = self.already_batched.lines.checked_add(1)?;
            self.already_batched.calls = self.already_batched.calls.checked_add(call.calls)?;
            return Some(());
        }
        let price = self.prices.lookup(call.provider, call.model.as_str());
        let cost = price.and_then(|p| p.cost(&call.usage));
        let (Some(price), Some(cost)) = (price, cost) else {
            let reason = if price.is_none() {
                UnpricedReason::UnknownModel
            } else {
                UnpricedReason::UsageNotPriced
            };
            let entry = self
                .unpriced
                .entry((call.category.clone(), call.model.clone(), reason))
                .or_insert_with(|| Unpriced {
                    category: call.category.clone(),
                    model: call.model.clone(),
                    reason,
                    lines: 0,
                    calls: 0,
                    usage: Usage::default(),
                });
            entry.lines = entry.lines.checked_add(1)?;
            entry.calls = entry.calls.checked_add(call.calls)?;
            return add_usage(&mut entry.usage, &call.usage);
        };
        let batchable = call.tolerance.map(|t| t >= self.min_wait);
        self.totals.add(call, cost, batchable)?;
        let group = self
            .groups
            .entry((call.category.clone(), call.model.clone()))
            .or_insert_with(|| Group {
                category: call.category.clone(),
                model: call.model.clone(),
                priced_as: price.model.clone(),
                totals: Totals::default(),
            });
        group.totals.add(call, cost, batchable)
    }

    fn finish(self, lines_read: u64) -> Analysis {
        let groups: Vec<Group> = self.groups.into_values().collect();
        let period = match (self.earliest, self.latest) {
            (Some(from), Some(to)) if to > from => Some(Period { from, to }),
            _ => None,
        };
        Analysis {
            min_wait: self.min_wait,
            lines_read,
            period,
            groups,
            totals: self.totals,
            unpriced: self.unpriced.into_values().collect(),
            already_batched: self.already_batched,
            malformed: self.malformed,
            malformed_lines: self.malformed_lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn run(log: &str, min_wait: Duration) -> Analysis {
        analyze(log.as_bytes(), &PriceBook::bundled(), min_wait).unwrap()
    }

    fn usd(s: &str) -> Money {
        Money::parse_decimal(s).unwrap()
    }

    fn group<'a>(a: &'a Analysis, category: &str, model: &str) -> &'a Group {
        a.groups
            .iter()
            .find(|g| g.category.as_str() == category && g.model.as_str() == model)
            .unwrap_or_else(|| panic!("no group {category} / {model} in {:?}", a.groups))
    }

    fn problems(a: &Analysis) -> Vec<(u64, LineProblem)> {
        a.malformed.iter().map(|m| (m.line, m.problem.clone())).collect()
    }

    #[test]
    fn a_call_is_batchable_when_its_tolerance_reaches_the_minimum_wait() {
        let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 1000, "max_latency_seconds": 86400, "category": "exactly-a-day"}
{"model": "gpt-4o-mini", "input_tokens": 1000, "max_latency_seconds": 86399, "category": "a-second-short"}
"#;
        let a = run(log, DEFAULT_MIN_WAIT);
        assert_eq!(group(&a, "exactly-a-day", "gpt-4o-mini").totals.batchable_calls, 1);
        assert_eq!(group(&a, "a-second-short", "gpt-4o-mini").totals.batchable_calls, 0);
        // A lower threshold makes the second one batchable too.
        let a = run(log, Duration::from_secs(3600));
        assert_eq!(a.totals.batchable_calls, 2);
    }

    #[test]
    fn latency_labels_stand_for_the_least_wait_they_promise() {
        let secs = |s: &str| parse_tolerance(s).map(|d| d.as_secs());
        assert_eq!(secs("realtime"), Some(0));
        assert_eq!(secs("Real-Time"), Some(0));
        assert_eq!(secs("minutes"), Some(60));
        assert_eq!(secs("hours"), Some(3600));
        assert_eq!(secs("day"), Some(86_400));
        assert_eq!(secs("days"), Some(86_400));
        assert_eq!(secs("week"), Some(604_800));
        assert_eq!(secs("36h"), Some(129_600));
        assert_eq!(secs("2d"), Some(172_800));
        assert_eq!(secs("soonish"), None);
        assert_eq!(secs(""), None);
    }

    #[test]
    fn priorities_map_to_tolerances() {
        assert_eq!(Priority::parse("HIGH").unwrap().tolerance(), Duration::ZERO);
        assert_eq!(Priority::parse("normal").unwrap().tolerance(), Duration::ZERO);
        assert_eq!(Priority::parse("low").unwrap().tolerance(), Duration::from_secs(3600));
        assert_eq!(Priority::parse("batch").unwrap().tolerance(), DAY);
        assert_eq!(Priority::parse("urgent"), None);

        let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 10, "priority": "high", "category": "h"}
{"model": "gpt-4o-mini", "input_tokens": 10, "priority": "low", "category": "l"}
{"model": "gpt-4o-mini", "input_tokens": 10, "priority": "batch", "category": "b"}
"#;
        let a = run(log, DEFAULT_MIN_WAIT);
        let batchable = |a: &Analysis, c: &str| group(a, c, "gpt-4o-mini").totals.batchable_calls;
        assert_eq!((batchable(&a, "h"), batchable(&a, "l"), batchable(&a, "b")), (0, 0, 1));
        let a = run(log, Duration::from_secs(3600));
        assert_eq!((batchable(&a, "h"), batchable(&a, "l"), batchable(&a, "b")), (0, 1, 1));
        // "batch" promises the Batch API's 24 h window, not more.
        let a = run(log, 2 * DAY);
        assert_eq!(batchable(&a, "b"), 0);
    }

    #[test]
    fn the_most_precise_tolerance_field_wins() {
        let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 10, "max_latency_seconds": 0, "latency_tolerance": "week", "priority": "batch", "category": "seconds"}
{"model": "gpt-4o-mini", "input_tokens": 10, "latency_tolerance": "day", "priority": "high", "category": "label"}
"#;
        let a = run(log, DEFAULT_MIN_WAIT);
        assert_eq!(group(&a, "seconds", "gpt-4o-mini").totals.batchable_calls, 0);
        assert_eq!(group(&a, "label", "gpt-4o-mini").totals.batchable_calls, 1);
    }

    #[test]
    fn a_call_without_any_tolerance_is_not_batchable_and_is_counted() {
        let log = r#"{"model": "gpt-4o-mini", "input_tokens": 10, "num_model_requests": 7}"#;
        let a = run(log, Duration::ZERO);
        let t = &group(&a, UNCATEGORIZED, "gpt-4o-mini").totals;
        assert_eq!((t.calls, t.batchable_calls, t.calls_without_tolerance), (7, 0, 7));
        assert_eq!(a.totals.calls_without_tolerance, 7);
    }

    #[test]
    fn costs_are_exact_to_the_picodollar() {
        // gpt-4o-mini, real time: 800 uncached × $0.15/M + 200 cached × $0.075/M + 500 out × $0.60/M
        //   = $0.00012 + $0.000015 + $0.0003 = $0.000435.
        // Batch: 1000 in × $0.075/M (no cached discount) + 500 out × $0.30/M = $0.000075 + $0.00015 = $0.000225.
        let log = r#"{"model": "gpt-4o-mini", "input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 500, "priority": "batch"}"#;
        let t = run(log, DEFAULT_MIN_WAIT).totals;
        assert_eq!(t.realtime_cost, usd("0.000435"));
        assert_eq!(t.batch_cost, usd("0.000225"));
        assert_eq!(t.saving_if_batched(), usd("0.00021"));
        assert_eq!(t.batchable_saving(), usd("0.00021"));
    }

    #[test]
    fn openai_export_and_chat_field_names_give_the_same_figures() {
        let export = r#"{"object": "organization.usage.completions.result", "model": "gpt-4.1", "input_tokens": 5000, "input_cached_tokens": 4000, "output_tokens": 1000, "num_model_requests": 5, "project_id": "proj_abc", "user_id": null, "api_key_id": null, "batch": false, "service_tier": null, "start_time": 1730419200, "end_time": 1730505600, "priority": "batch"}"#;
        let chat = r#"{"model": "gpt-4.1", "prompt_tokens": 5000, "cached_input_tokens": 4000, "completion_tokens": 1000, "num_model_requests": 5, "timestamp": "2024-11-01T00:00:00Z", "priority": "batch"}"#;
        let (a, b) = (run(export, DEFAULT_MIN_WAIT), run(chat, DEFAULT_MIN_WAIT));
        assert!(
            a.malformed.is_empty() && b.malformed.is_empty(),
            "{:?} {:?}",
            a.malformed,
            b.malformed
        );
        assert_eq!(a.totals, b.totals);
        assert_eq!(
            a.totals.usage,
            Usage {
                input_tokens: 5000,
                cached_input_tokens: 4000,
                output_tokens: 1000,
                reasoning_tokens: 0
            }
        );
        assert_eq!(a.totals.calls, 5);
        // gpt-4.1 real time: 1000 × $2/M + 4000 × $0.50/M + 1000 × $8/M = $0.002 + $0.002 + $0.008.
        assert_eq!(a.totals.realtime_cost, usd("0.012"));
        // Batch: 5000 × $1/M (no cached batch price) + 1000 × $4/M.
        assert_eq!(a.totals.batch_cost, usd("0.009"));
        // The export's bucket is one day long.
        assert_eq!(a.period.unwrap().millis(), 86_400_000);
    }

    #[test]
    fn giving_both_names_of_one_quantity_is_a_malformed_line() {
        let log = r#"{"model": "gpt-4o-mini", "input_tokens": 10, "prompt_tokens": 10}
{"model": "gpt-4o-mini", "input_tokens": 10, "cached_input_tokens": 1, "input_cached_tokens": 1}
{"model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 1, "completion_tokens": 1}
{"model": "gpt-4o-mini", "input_tokens": 10, "timestamp": "2026-11-02T00:00:00Z", "start_time": 1793577600}"#;
        let a = run(log, DEFAULT_MIN_WAIT);
        assert_eq!(
            problems(&a),
            vec![
                (1, LineProblem::Both("input_tokens", "prompt_tokens")),
                (2, LineProblem::Both("cached_input_tokens", "input_cached_tokens")),
                (3, LineProblem::Both("output_tokens", "completion_tokens")),
                (4, LineProblem::Both("timestamp", "start_time")),
            ]
        );
        assert_eq!(a.totals, Totals::default());
    }

    #[test]
    fn malformed_lines_are_reported_with_line_numbers_and_skipped() {
        let log = [
            r#"{"model": "gpt-4o-mini", "input_tokens": 100, "priority": "batch"}"#,
            "",
            r#"{"model": "gpt-4o-mini", "input_tok"#,
            r#"{"input_tokens": 100}"#,
            r#"{"model": null, "input_tokens": 100}"#,
            r#"{"model": "gpt-4o-mini", "output_tokens": 100}"#,
            r#"{"model": "gpt-4o-mini", "input_tokens": -5}"#,
            r#"{"model": "gpt-4o-mini", "input_tokens": 10, "cached_input_tokens": 11}"#,
            r#"{"model": "gpt-4o-mini", "input_tokens": 10, "timestamp": "2026-02-30T00:00:00Z"}"#,
            r#"{"model": "gpt-4o-mini", "input_tokens": 10, "latency_tolerance": "whenever"}"#,
            r#"{"model": "gpt-4o-mini", "input_tokens": 10, "priority": "urgent"}"#,
            r#"{"model": "gpt-4o-mini", "input_tokens": 10, "provider": "anthropic"}"#,
            r#"{"model": "gpt-4o-mini", "input_tokens": 10, "start_time": 1793577600, "end_time": 1793577599}"#,
            r#"{"model": "gpt-4o-mini", "input_tokens": 10, "end_time": 1793577600}"#,
            r#"[1, 2, 3]"#,
            "  \t ",
            "{\"model\": \"gpt-4o-mini\", \"input_tokens\": 100, \"priority\": \"batch\"}\r",
        ]
        .join("\n");
        let a = run(&log, DEFAULT_MIN_WAIT);
        let got = problems(&a);
        let lines: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        assert!(matches!(got[0].1, LineProblem::Json(_)));
        assert_eq!(got[1].1, LineProblem::MissingModel);
        assert_eq!(got[2].1, LineProblem::MissingModel);
        assert_eq!(got[3].1, LineProblem::MissingInputTokens);
        assert!(
            matches!(&got[4].1, LineProblem::Json(m) if m.contains("-5")),
            "{:?}",
            got[4]
        );
        assert_eq!(got[5].1, LineProblem::CachedAboveInput { cached: 11, input: 10 });
        assert_eq!(got[6].1, LineProblem::BadTimestamp("2026-02-30T00:00:00Z".into()));
        assert_eq!(got[7].1, LineProblem::BadTolerance("whenever".into()));
        assert_eq!(got[8].1, LineProblem::BadPriority("urgent".into()));
        assert_eq!(got[9].1, LineProblem::BadProvider("anthropic".into()));
        assert_eq!(got[10].1, LineProblem::EndBeforeStart);
        assert_eq!(got[11].1, LineProblem::EndWithoutStart);
        assert!(matches!(got[12].1, LineProblem::Json(_)));
        assert_eq!(a.malformed_lines, 13);
        // The good lines (1 and 17, the last with CRLF) still count.
        assert_eq!(a.lines_read, 17);
        assert_eq!((a.totals.lines, a.totals.calls, a.totals.batchable_calls), (2, 2, 2));
        // Messages say what is wrong.
        assert_eq!(
            LineProblem::CachedAboveInput { cached: 11, input: 10 }.to_string(),
            "cached input tokens (11) exceed input tokens (10)"
        );
    }

    #[test]
    fn an_over_long_line_is_skipped_without_losing_the_next_one() {
        let long = format!(
            r#"{{"model": "gpt-4o-mini", "input_tokens": 1, "pad": "{}"}}"#,
            "x".repeat(MAX_LINE_BYTES)
        );
        let log = format!("{long}\n{{\"model\": \"gpt-4o-mini\", \"input_tokens\": 1}}\n");
        let a = run(&log, DEFAULT_MIN_WAIT);
        assert_eq!(problems(&a), vec![(1, LineProblem::TooLong { max: MAX_LINE_BYTES })]);
        assert_eq!(a.totals.lines, 1);
        assert_eq!(a.lines_read, 2);
    }

    #[test]
    fn only_the_first_hundred_malformed_lines_are_listed_but_all_are_counted() {
        let log = "not json\n".repeat(MAX_LISTED_MALFORMED + 5);
        let a = run(&log, DEFAULT_MIN_WAIT);
        assert_eq!(a.malformed.len(), MAX_LISTED_MALFORMED);
        assert_eq!(a.malformed_lines, MAX_LISTED_MALFORMED as u64 + 5);
    }

    #[test]
    fn unknown_models_are_listed_and_never_priced_at_zero() {
        let log = r#"
{"model": "acme-llm-70b", "input_tokens": 1000, "output_tokens": 10, "num_model_requests": 3, "category": "lab", "priority": "batch"}
{"model": "acme-llm-70b", "input_tokens": 500, "category": "lab"}
{"model": "gpt-3.5-turbo-1106", "input_tokens": 5, "category": "old"}
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "category": "lab"}
"#;
        let a = run(log, DEFAULT_MIN_WAIT);
        let unpriced: Vec<_> = a
            .unpriced
            .iter()
            .map(|u| {
                (
                    u.category.as_str(),
                    u.model.as_str(),
                    u.reason,
                    u.lines,
                    u.calls,
                    u.usage.input_tokens,
                )
            })
            .collect();
        assert_eq!(
            unpriced,
            vec![
                ("lab", "acme-llm-70b", UnpricedReason::UnknownModel, 2, 4, 1500),
                ("old", "gpt-3.5-turbo-1106", UnpricedReason::UnknownModel, 1, 1, 5),
            ]
        );
        // They are in no money figure and in no group: only the priced call is.
        assert_eq!(a.groups.len(), 1);
        assert_eq!((a.totals.lines, a.totals.calls), (1, 1));
        assert_eq!(a.totals.realtime_cost, usd("0.15"));
        assert_eq!(a.totals.batch_cost, usd("0.075"));
        assert_eq!(a.totals.batchable_share().unwrap().to_string(), "100.00");
    }

    #[test]
    fn output_tokens_on_an_embedding_model_are_unpriced_not_zero() {
        let log = r#"{"model": "text-embedding-3-small", "input_tokens": 1000, "output_tokens": 1}"#;
        let a = run(log, DEFAULT_MIN_WAIT);
        assert_eq!(a.unpriced.len(), 1);
        assert_eq!(a.unpriced[0].reason, UnpricedReason::UsageNotPriced);
        assert!(a.groups.is_empty());
        assert_eq!(a.totals.batchable_share(), None);
    }

    #[test]
    fn dated_snapshots_are_grouped_as_written_and_priced_as_their_family() {
        let log = r#"
{"model": "gpt-4o-mini-2024-07-18", "input_tokens": 1000000}
{"model": "gpt-4o-mini", "input_tokens": 1000000}
"#;
        let a = run(log, DEFAULT_MIN_WAIT);
        let dated = group(&a, UNCATEGORIZED, "gpt-4o-mini-2024-07-18");
        assert_eq!(dated.priced_as, "gpt-4o-mini");
        assert_eq!(dated.totals.realtime_cost, usd("0.15"));
        assert_eq!(
            group(&a, UNCATEGORIZED, "gpt-4o-mini").totals.realtime_cost,
            usd("0.15")
        );
    }

    #[test]
    fn already_batched_usage_is_counted_apart() {
        let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 1000, "num_model_requests": 9, "batch": true, "start_time": 0, "end_time": 86400}
{"model": "gpt-4o-mini", "input_tokens": 1000, "batch": false, "start_time": 3600}
"#;
        let a = run(log, DEFAULT_MIN_WAIT);
        assert_eq!(a.already_batched, Count { lines: 1, calls: 9 });
        assert_eq!((a.totals.lines, a.totals.calls), (1, 1));
        // It still tells the period the log covers.
        assert_eq!(a.period.unwrap().millis(), 86_400_000);
    }

    #[test]
    fn the_period_runs_from_the_earliest_start_to_the_latest_end_and_scales_to_thirty_days() {
        // Two batchable gpt-4o-mini calls of 1M input tokens each (saving $0.075 each) over two days.
        let log = r#"
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "timestamp": "2026-11-03T00:00:00Z"}
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "start_time": 1793577600, "end_time": 1793664000}
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "high", "timestamp": "2026-11-04T00:00:00+00:00"}
"#;
        let a = run(log, DEFAULT_MIN_WAIT);
        let p = a.period.unwrap();
        assert_eq!(p.from.to_rfc3339(), "2026-11-02T00:00:00.000Z");
        assert_eq!(p.to.to_rfc3339(), "2026-11-04T00:00:00.000Z");
        assert_eq!(a.totals.batchable_saving(), usd("0.15"));
        // $0.15 over 2 days → × 15 → $2.25 per 30 days.
        assert_eq!(a.projected_monthly_saving(), Some(usd("2.25")));
        // Batchable share: $0.30 of $0.45 real-time spend.
        assert_eq!(a.totals.batchable_share().unwrap().to_string(), "66.67");
    }

    #[test]
    fn projections_round_to_the_nearest_picodollar() {
        let week = Period {
            from: Timestamp::from_millis(0),
            to: Timestamp::from_millis(7 * 86_400_000),
        };
        let pico = Money::from_picodollars;
        assert_eq!(week.scale_to_month(pico(7)), Some(pico(30)));
        assert_eq!(week.scale_to_month(pico(1)), Some(pico(4))); // 4.29
        assert_eq!(week.scale_to_month(pico(-1)), Some(pico(-4)));
        assert_eq!(week.scale_to_month(pico(5)), Some(pico(21))); // 21.43
        let sixty_days = Period {
            from: Timestamp::from_millis(0),
            to: Timestamp::from_millis(60 * 86_400_000),
        };
        assert_eq!(sixty_days.scale_to_month(pico(1)), Some(pico(1))); // 0.5, away from zero
        assert_eq!(sixty_days.scale_to_month(pico(-1)), Some(pico(-1)));
        assert_eq!(sixty_days.scale_to_month(pico(2)), Some(pico(1)));
    }

    #[test]
    fn without_a_period_there_is_no_projection() {
        let untimed = r#"{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch"}"#;
        let a = run(untimed, DEFAULT_MIN_WAIT);
        assert_eq!((a.period, a.projected_monthly_saving()), (None, None));
        let one_instant = r#"{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "start_time": 1793577600}
{"model": "gpt-4o-mini", "input_tokens": 1000000, "priority": "batch", "timestamp": "2026-11-02T00:00:00Z"}"#;
        let a = run(one_instant, DEFAULT_MIN_WAIT);
        assert_eq!((a.period, a.projected_monthly_saving()), (None, None));
        // The saving over the log itself is still there.
        assert_eq!(a.totals.batchable_saving(), usd("0.15"));
    }

    #[test]
    fn rfc3339_timestamps_parse_with_fractions_and_offsets() {
        let ms = |s: &str| parse_rfc3339(s).map(Timestamp::millis);
        assert_eq!(ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(ms("2026-11-02T00:00:00Z"), Some(1_793_577_600_000));
        assert_eq!(ms("2026-11-02T01:00:00+01:00"), Some(1_793_577_600_000));
        assert_eq!(ms("2026-11-01T23:30:00-00:30"), Some(1_793_577_600_000));
        assert_eq!(ms("2026-11-02t00:00:00.5z"), Some(1_793_577_600_500));
        assert_eq!(ms("2026-11-02 00:00:00.123456Z"), Some(1_793_577_600_123));
        assert_eq!(ms("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
        for bad in [
            "2026-11-02",
            "2026-11-02T00:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-02T24:00:00Z",
            "2026-11-02T00:00:00.Z",
            "2026-11-02T00:00:00+0100",
            "2026-11-02T00:00:00Z junk",
            "1793577600",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn shares_are_percentages_with_two_decimals_rounded_half_up() {
        let pico = Money::from_picodollars;
        assert_eq!(Percent::of(pico(1), pico(3)).unwrap().to_string(), "33.33");
        assert_eq!(Percent::of(pico(2), pico(3)).unwrap().to_string(), "66.67");
        assert_eq!(Percent::of(pico(1), pico(8)).unwrap().to_string(), "12.50");
        assert_eq!(Percent::of(pico(1), pico(20_000)).unwrap().to_string(), "0.01"); // 0.005 up
        assert_eq!(Percent::of(pico(5), pico(5)).unwrap().to_string(), "100.00");
        assert_eq!(Percent::of(pico(0), pico(5)).unwrap().to_string(), "0.00");
        assert_eq!(Percent::of(pico(1), Money::ZERO), None);
    }

    #[test]
    fn waits_parse_with_units_and_print_back() {
        assert_eq!(parse_wait("24h"), Ok(DAY));
        assert_eq!(parse_wait("1d"), Ok(DAY));
        assert_eq!(parse_wait("1w"), Ok(7 * DAY));
        assert_eq!(parse_wait("90"), Ok(Duration::from_secs(90)));
        assert!(parse_wait("1y").unwrap_err().contains("unknown unit"));
        assert!(parse_wait("h").is_err());
        assert_eq!(format_wait(DAY), "24h");
        assert_eq!(format_wait(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(format_wait(Duration::from_secs(45)), "45s");
        assert_eq!(format_wait(Duration::ZERO), "0s");
    }

    /// `demo/usage-sample.jsonl` against figures computed apart from this
    /// code: by `demo/usage_sample.py --figures` (Python integers, its own
    /// copy of the prices), and for search-indexing by hand below.
    #[test]
    fn the_shipped_sample_gives_the_independently_computed_figures() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/usage-sample.jsonl");
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let a = analyze(file, &PriceBook::bundled(), DEFAULT_MIN_WAIT).unwrap();

        assert_eq!(a.lines_read, 204);
        // The logger crashed mid-line on Thursday morning.
        assert_eq!(a.malformed.len(), 1);
        assert_eq!(a.malformed[0].line, 113);
        assert!(matches!(a.malformed[0].problem, LineProblem::Json(_)));
        assert_eq!(
            a.already_batched,
            Count {
                lines: 1,
                calls: 40_000
            }
        );
        let unknown: Vec<_> = a
            .unpriced
            .iter()
            .map(|u| (u.model.as_str(), u.lines, u.calls))
            .collect();
        assert_eq!(unknown, vec![("acme-llm-70b", 4, 200)]);
        let p = a.period.unwrap();
        assert_eq!(p.from.to_rfc3339(), "2026-11-02T00:00:00.000Z");
        assert_eq!(p.to.to_rfc3339(), "2026-11-09T00:00:00.000Z");

        // (category, model, lines, calls, input, cached, output, real time, batch, batchable calls,
        //  batchable saving, projected monthly saving)
        #[rustfmt::skip]
        let expected = [
            ("ad-hoc", "gpt-4o", 20, 20, 74_769, 0, 15_458, "0.3415025", "0.17075125", 0, "0", "0"),
            ("nightly-summaries", "gpt-4o-mini-2024-07-18", 56, 218_956, 700_813_605, 0, 89_779_866,
             "158.98996035", "79.494980175", 218_956, "79.494980175", "340.692772178571"),
            ("search-indexing", "text-embedding-3-small", 7, 1_262_892, 2_788_831_947, 0, 0,
             "55.77663894", "27.88831947", 1_262_892, "27.88831947", "119.521369157143"),
            ("support-chat", "gpt-4.1-mini", 84, 75_508, 151_011_189, 77_320_192, 18_880_891,
             "67.4178436", "45.3069506", 0, "0", "0"),
            ("translations", "gpt-4.1-nano", 7, 39_687, 23_790_381, 0, 23_846_949,
             "11.9178177", "5.95890885", 0, "0", "0"),
            ("weekly-report", "o3", 24, 24, 554_092, 49_152, 159_726, "2.312264", "1.192996", 24,
             "1.119268", "4.796862857143"),
        ];
        assert_eq!(a.groups.len(), expected.len());
        for (g, e) in a.groups.iter().zip(expected) {
            let t = &g.totals;
            let got = (
                g.category.as_str(),
                g.model.as_str(),
                t.lines,
                t.calls,
                t.usage.input_tokens,
                t.usage.cached_input_tokens,
                t.usage.output_tokens,
                t.realtime_cost,
                t.batch_cost,
                t.batchable_calls,
                t.batchable_saving(),
                a.project(t).unwrap(),
            );
            let want = (
                e.0,
                e.1,
                e.2,
                e.3,
                e.4,
                e.5,
                e.6,
                usd(e.7),
                usd(e.8),
                e.9,
                usd(e.10),
                usd(e.11),
            );
            assert_eq!(got, want);
        }
        // Only the calls without any tolerance: ad-hoc.
        assert_eq!(a.totals.calls_without_tolerance, 20);

        // Search indexing by hand: 2,788,831,947 tokens at $0.02/M real time and $0.01/M batch.
        let tokens = 2_788_831_947i128;
        assert_eq!(
            group(&a, "search-indexing", "text-embedding-3-small")
                .totals
                .realtime_cost,
            Money::from_picodollars(tokens * 20_000)
        );

        assert_eq!(a.totals.calls, 1_597_087);
        assert_eq!(a.totals.realtime_cost, usd("296.75602709"));
        assert_eq!(a.totals.batch_cost, usd("160.012906345"));
        assert_eq!(a.totals.batchable_realtime_cost, usd("217.07886329"));
        assert_eq!(a.totals.batchable_share().unwrap().to_string(), "73.15");
        assert_eq!(a.totals.batchable_saving(), usd("108.502567645"));
        assert_eq!(a.projected_monthly_saving(), Some(usd("465.011004192857")));
    }
}
