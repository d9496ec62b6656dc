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
//! | `input_tokens` or `prompt_tokens` | required, input tokens *including* cached and cache-written ones (as OpenAI reports them; Anthropic's names below change this) |
//! | `cached_input_tokens` or `input_cached_tokens` | input tokens read from the prompt cache, part of the input; default 0 |
//! | `cache_write_tokens` | input tokens written to the prompt cache (Anthropic bills them above the input price), part of the input; default 0 |
//! | `cache_read_input_tokens`, `cache_creation_input_tokens` | Anthropic's `usage` names for the cache reads and writes: a line with either is read as Anthropic counts, `input_tokens` being the *uncached* input only (the input is their sum) |
//! | `output_tokens` or `completion_tokens` | output tokens, reasoning included; default 0 |
//! | `num_model_requests` | the line stands for this many calls (token counts are their sums); default 1 |
//! | `timestamp` or `start_time` | when the call was made (or its bucket began): RFC 3339 string, or Unix seconds |
//! | `end_time` | end of an aggregate's time bucket, Unix seconds (usage export) |
//! | `max_latency_seconds`, `latency_tolerance`, `priority` | how long the caller could wait (below) |
//! | `category` | free text naming the workload (`nightly-summaries`); default `uncategorized` |
//! | `provider` | the provider kind whose prices apply: `openai` (default), `azure_openai`, `anthropic`, `groq` or `together` |
//! | `batch` | `true` marks usage that already went through a Batch API: counted apart, not analysed |
//!
//! The token, `num_model_requests`, `start_time`, `end_time` and `batch` names
//! are those of OpenAI's organization usage API (`/v1/organization/usage/completions`
//! and `/embeddings`, one result of a bucket per line, bucket times copied
//! onto it, grouped by model), so its export reads as is; every other field
//! (`object`, `project_id`, `api_key_id`, …) is ignored. Giving both names of
//! one quantity (`input_tokens` and `prompt_tokens`) is an error, as is a
//! cached count above the input count (or cache reads and writes together
//! above it), and so is mixing Anthropic's cache names with batchq's
//! (`prompt_tokens`, `cached_input_tokens`, `input_cached_tokens`,
//! `cache_write_tokens`). Blank lines are skipped.
//!
//! An Anthropic `usage` object copied onto a line reads as is:
//!
//! ```json
//! {"provider": "anthropic", "model": "claude-sonnet-4-5-20250929", "input_tokens": 120,
//!  "cache_read_input_tokens": 4000, "cache_creation_input_tokens": 900, "output_tokens": 350, "priority": "low"}
//! ```
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
//! picodollars from the [`PriceBook`] table of the line's provider kind
//! (cache reads at the cached-input price, cache writes at the cache-write
//! price, each the input price where the table gives none). Per (category,
//! provider, model) and in total:
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
//! aggregate per (category, provider, model). The same model name under two
//! providers (`openai/gpt-oss-120b` on Groq and elsewhere) makes two groups,
//! each priced from its own provider's table.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, Read};
use std::time::Duration;

use thiserror::Error;

use batchq_core::ids::ModelName;
use batchq_core::job::ProviderKind;
use batchq_core::money::Money;
use batchq_core::pricing::{Cost, PriceBook};
use batchq_core::request::Usage;
use batchq_core::time::Timestamp;

use super::log_line::{parse_line, skip_to_next_line, Call};
use super::terms::{Category, LineProblem, MalformedLine};

/// The month the projection scales to: 30 days.
pub const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest line read; a longer one is reported and skipped.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Malformed lines listed in the report; any further ones are only counted.
pub const MAX_LISTED_MALFORMED: usize = 100;

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
    /// batchq's own AWS overhead for the batchable calls, estimated from
    /// their sizes ([`aws_overhead_of`]).
    pub batchable_aws_overhead: Money,
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

    /// The batchable saving less batchq's estimated AWS overhead.
    pub fn batchable_net_saving(&self) -> Money {
        self.batchable_saving() - self.batchable_aws_overhead
    }

    /// Batchable calls whose saving would not pay batchq's own AWS overhead
    /// (small embeddings, moderations).
    pub fn saving_below_overhead(&self) -> bool {
        self.batchable_calls > 0 && self.batchable_saving() < self.batchable_aws_overhead
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
                self.batchable_aws_overhead = add_money(self.batchable_aws_overhead, aws_overhead_of(call)?)?;
            }
            Some(false) => {}
            None => self.calls_without_tolerance = self.calls_without_tolerance.checked_add(call.calls)?,
        }
        Some(())
    }
}

/// Bytes of JSON per token, roughly, in a body or an answer.
const BYTES_PER_TOKEN: u64 = 4;
/// A request's JSON besides its text (custom id, model, roles, envelope).
const BODY_ENVELOPE_BYTES: u64 = 300;
/// A result line's JSON besides the answer's text (ids, usage, envelope).
const RESULT_ENVELOPE_BYTES: u64 = 700;
/// One embedding vector as JSON (1,536 floats of about 8 characters).
const EMBEDDING_BYTES: u64 = 12_300;

/// batchq's AWS overhead for `call`'s requests sent in bulk, estimated
/// from their sizes at AWS's list prices (`batchq_core::overhead`): a body
/// of its input tokens, an answer of its output tokens, or, for a call
/// without output tokens on an embeddings model, one vector.
pub(crate) fn aws_overhead_of(call: &Call) -> Option<Money> {
    let n = call.calls.max(1);
    let body = call.usage.input_tokens / n * BYTES_PER_TOKEN + BODY_ENVELOPE_BYTES;
    let answer = if call.usage.output_tokens == 0 && call.model.as_str().contains("embedding") {
        EMBEDDING_BYTES
    } else {
        call.usage.output_tokens / n * BYTES_PER_TOKEN
    };
    let one = batchq_core::overhead::estimate_per_request(
        &batchq_core::overhead::AWS_LIST,
        body,
        answer + RESULT_ENVELOPE_BYTES,
        false,
    );
    one.picodollars()
        .checked_mul(i128::from(call.calls))
        .map(Money::from_picodollars)
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
    sum.cache_write_tokens = sum.cache_write_tokens.checked_add(u.cache_write_tokens)?;
    Some(())
}

/// The priced calls of one (category, provider, model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub category: Category,
    /// The provider kind the line names (priced from its price table).
    pub provider: ProviderKind,
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

/// Calls of one (category, provider, model) that could not be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpriced {
    pub category: Category,
    pub provider: ProviderKind,
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
    /// Priced calls per (category, provider, model), sorted by category,
    /// provider name, then model.
    pub groups: Vec<Group>,
    /// Sum of `groups`.
    pub totals: Totals,
    /// Sorted by category, provider name, model, reason.
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

    /// The provider kinds of the priced and unpriced calls, by name, each once.
    pub fn providers(&self) -> Vec<ProviderKind> {
        let mut kinds: Vec<ProviderKind> = self
            .groups
            .iter()
            .map(|g| g.provider)
            .chain(self.unpriced.iter().map(|u| u.provider))
            .collect();
        kinds.sort_by_key(|k| k.as_str());
        kinds.dedup();
        kinds
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

/// (category, provider name, model): a provider sorts by its name.
type GroupKey = (Category, &'static str, ModelName);

struct Analyzer<'a> {
    prices: &'a PriceBook,
    min_wait: Duration,
    groups: BTreeMap<GroupKey, Group>,
    totals: Totals,
    unpriced: BTreeMap<(GroupKey, UnpricedReason), Unpriced>,
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
        let key: GroupKey = (call.category.clone(), call.provider.as_str(), call.model.clone());
        let price = self.prices.lookup(call.provider, call.model.as_str());
        let cost = price.and_then(|p| p.cost(&call.usage));
        let (Some(price), Some(cost)) = (price, cost) else {
            let reason = if price.is_none() {
                UnpricedReason::UnknownModel
            } else {
                UnpricedReason::UsageNotPriced
            };
            let entry = self.unpriced.entry((key, reason)).or_insert_with(|| Unpriced {
                category: call.category.clone(),
                provider: call.provider,
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
        let group = self.groups.entry(key).or_insert_with(|| Group {
            category: call.category.clone(),
            provider: call.provider,
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
mod tests;
