//! The log's vocabulary: call categories, priorities, latency tolerances
//! and waits, and what can be wrong with one line.

use std::fmt;
use std::time::Duration;

use batchq_core::job::ProviderKind;
use thiserror::Error;

/// The default minimum wait: the Batch API's 24 h completion window.
pub const DEFAULT_MIN_WAIT: Duration = Duration::from_secs(24 * 3600);
/// The category of a line without one.
pub const UNCATEGORIZED: &str = "uncategorized";

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
    #[error("`provider` {0:?} is not one of {names}", names = provider_names())]
    BadProvider(String),
    #[error("cache read ({cached}) and cache write ({written}) tokens together exceed input tokens ({input})")]
    CacheAboveInput { cached: u64, written: u64, input: u64 },
    #[error(
        "`{0}` is given with Anthropic's usage names (`cache_read_input_tokens`, \
         `cache_creation_input_tokens`), whose `input_tokens` counts another way; use one set"
    )]
    MixedUsageNames(&'static str),
    #[error("the token counts overflow")]
    TokenOverflow,
}

/// The `provider` values a line may give: `openai, azure_openai, …`.
fn provider_names() -> String {
    ProviderKind::ALL.map(ProviderKind::as_str).join(", ")
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
/// `1w` (a bare number is seconds): the command line's one duration syntax
/// ([`crate::duration`]).
pub fn parse_wait(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s)
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
