//! A tenant's hourly activity: requests enqueued, completed, failed (by
//! error code), cancelled and sent back to the queue in each UTC hour, and
//! its queued requests per model at the end of each hour.
//!
//! The counts are running counters ([`crate::counters`] says which a change
//! moves: [`Counter::Activity`](crate::counters::Counter::Activity) per hour,
//! and the tenant's queued count per model now), written in the same atomic
//! write as the request row they count, so a crashed or repeated step never
//! counts twice. A store answers [`ActivityRows`] for a range of hours;
//! [`summarize`] turns them into the listing `GET /v1/activity` shows. The
//! queued count at the end of an hour is derived exactly: the count now,
//! minus the net change of every later hour.

use std::collections::BTreeMap;
use std::fmt;

use crate::ids::ModelName;
use crate::time::Timestamp;

const HOUR_MS: i64 = 3_600_000;

/// Longest error code kept as its own failure reason; longer ones are cut
/// (codes are short names; this keeps stored counter names small).
pub const MAX_CODE_CHARS: usize = 64;

/// The stored name of [`ActivityCount::AwsOverhead`].
pub const AWS_OVERHEAD_NAME: &str = "aws_overhead_picos";

/// The code a failure without an error is counted under.
pub const UNKNOWN_CODE: &str = "unknown";

/// One UTC hour, `YYYY-MM-DDTHH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour(i64);

/// A malformed hour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an hour as YYYY-MM-DDTHH: {0:?}")]
pub struct BadHour(pub String);

impl Hour {
    /// The hour `t` falls in.
    pub fn of(t: Timestamp) -> Self {
        Self(t.millis().div_euclid(HOUR_MS))
    }

    /// Parses `YYYY-MM-DDTHH` (a real calendar day, hour 00–23).
    pub fn parse(s: &str) -> Result<Self, BadHour> {
        let bad = || BadHour(s.chars().take(40).collect());
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if b.len() != 13
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || !digits(0..4)
            || !digits(5..7)
            || !digits(8..10)
            || !digits(11..13)
        {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| s[r].parse::<u8>().map_err(|_| bad());
        let year: i32 = s[0..4].parse().map_err(|_| bad())?;
        let month = time::Month::try_from(num(5..7)?).map_err(|_| bad())?;
        let date = time::Date::from_calendar_date(year, month, num(8..10)?).map_err(|_| bad())?;
        let hour = num(11..13)?;
        if hour > 23 {
            return Err(bad());
        }
        let secs = date.midnight().assume_utc().unix_timestamp() + i64::from(hour) * 3600;
        Ok(Self(secs.div_euclid(3600)))
    }

    /// The first hour of a UTC day `YYYY-MM-DD`.
    pub fn day_start(day: &str) -> Result<Self, BadHour> {
        Self::parse(&format!("{day}T00"))
    }

    /// The instant the hour begins.
    pub fn start(self) -> Timestamp {
        Timestamp::from_millis(self.0.saturating_mul(HOUR_MS))
    }

    /// The hour `n` hours later (earlier when negative).
    pub fn plus(self, n: i64) -> Self {
        Self(self.0.saturating_add(n))
    }

    /// Hours from `self` to `later` (negative when `later` is earlier).
    pub fn hours_until(self, later: Hour) -> i64 {
        later.0.saturating_sub(self.0)
    }

    /// Its UTC day, `YYYY-MM-DD`.
    pub fn day(self) -> String {
        self.start().utc_date()
    }
}

impl fmt::Display for Hour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.start().to_rfc3339()[..13])
    }
}

/// What one hour's activity counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActivityCount {
    Enqueued,
    /// Requests that reached `completed`.
    Completed,
    /// Requests that reached `failed`.
    Failed,
    Cancelled,
    /// Requests sent back to the queue for another attempt.
    Retried,
    /// Failed requests with this error code.
    FailedWith(String),
    /// The net change of the tenant's queued requests of this model.
    QueuedChange(ModelName),
    /// Picodollars of AWS the tenant's enqueue calls used in the hour
    /// ([`crate::overhead`]), folded into their insert writes.
    AwsOverhead,
}

impl ActivityCount {
    /// A failure under `code` (cut to [`MAX_CODE_CHARS`]; no code: [`UNKNOWN_CODE`]).
    pub fn failed_with(code: Option<&str>) -> Self {
        let code = code.filter(|c| !c.is_empty()).unwrap_or(UNKNOWN_CODE);
        Self::FailedWith(code.chars().take(MAX_CODE_CHARS).collect())
    }

    /// The counter's stored name: `enqueued`, …, `failed:{code}`, `queued:{model}`.
    pub fn name(&self) -> String {
        match self {
            Self::Enqueued => "enqueued".into(),
            Self::Completed => "completed".into(),
            Self::Failed => "failed".into(),
            Self::Cancelled => "cancelled".into(),
            Self::Retried => "retried".into(),
            Self::FailedWith(code) => format!("failed:{code}"),
            Self::QueuedChange(model) => format!("queued:{model}"),
            Self::AwsOverhead => AWS_OVERHEAD_NAME.into(),
        }
    }

    /// Reads a stored name back (`None`: not an activity counter).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "enqueued" => Self::Enqueued,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "retried" => Self::Retried,
            AWS_OVERHEAD_NAME => Self::AwsOverhead,
            other => {
                if let Some(code) = other.strip_prefix("failed:") {
                    Self::FailedWith(code.to_owned())
                } else {
                    Self::QueuedChange(ModelName::parse(other.strip_prefix("queued:")?).ok()?)
                }
            }
        })
    }
}

/// The five request counts of an hour (or a range).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActivityTotals {
    pub enqueued: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub retried: i64,
}

impl ActivityTotals {
    pub fn add(&mut self, o: &ActivityTotals) {
        self.enqueued += o.enqueued;
        self.completed += o.completed;
        self.failed += o.failed;
        self.cancelled += o.cancelled;
        self.retried += o.retried;
    }
}

/// The stored counters of one hour, summed over however the store lays
/// them out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourCounts {
    pub totals: ActivityTotals,
    pub failures: BTreeMap<String, i64>,
    pub queued_change: BTreeMap<ModelName, i64>,
    /// Picodollars of AWS overhead counted in the hour ([`ActivityCount::AwsOverhead`]).
    pub aws_overhead_picos: i64,
}

impl HourCounts {
    /// Adds `n` to the counter `c`.
    pub fn add(&mut self, c: &ActivityCount, n: i64) {
        match c {
            ActivityCount::Enqueued => self.totals.enqueued += n,
            ActivityCount::Completed => self.totals.completed += n,
            ActivityCount::Failed => self.totals.failed += n,
            ActivityCount::Cancelled => self.totals.cancelled += n,
            ActivityCount::Retried => self.totals.retried += n,
            ActivityCount::FailedWith(code) => *self.failures.entry(code.clone()).or_default() += n,
            ActivityCount::QueuedChange(m) => *self.queued_change.entry(m.clone()).or_default() += n,
            ActivityCount::AwsOverhead => self.aws_overhead_picos += n,
        }
    }
}

/// What a store answers for a tenant and a range of hours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityRows {
    /// The hours of the range with any counter; absent hours had none.
    pub hours: BTreeMap<Hour, HourCounts>,
    /// The tenant's queued requests per model now.
    pub queued_now: BTreeMap<ModelName, i64>,
}

/// One hour of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourActivity {
    pub hour: Hour,
    pub totals: ActivityTotals,
    /// Queued requests per model at the end of the hour; models with 0 left out.
    pub queued_by_model: BTreeMap<ModelName, i64>,
}

/// The activity of hours `from..=to`, every hour listed, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub from: Hour,
    pub to: Hour,
    pub hours: Vec<HourActivity>,
    /// Failed requests of the range by error code, largest first (ties by code).
    pub failures: Vec<(String, i64)>,
    pub total: ActivityTotals,
}

/// The last hour a store must be asked for when listing `from..=to` at
/// `now`: the queued counts at the end of an hour are the count now minus
/// every later hour's change, so the read reaches the current hour (and
/// one more, for a writer whose clock runs a little ahead).
pub fn read_until(to: Hour, now: Timestamp) -> Hour {
    to.max(Hour::of(now).plus(1))
}

/// The listing of `from..=to` out of `rows`, read for `from..=read_until(to, now)`.
pub fn summarize(rows: &ActivityRows, from: Hour, to: Hour) -> Activity {
    // Queued at the end of `to`: now, less the changes of the hours after it.
    let mut queued = rows.queued_now.clone();
    for (_, counts) in rows.hours.range(to.plus(1)..) {
        for (m, d) in &counts.queued_change {
            *queued.entry(m.clone()).or_default() -= d;
        }
    }
    let empty = HourCounts::default();
    let mut hours = Vec::new();
    let mut h = to;
    while h >= from {
        let counts = rows.hours.get(&h).unwrap_or(&empty);
        hours.push(HourActivity {
            hour: h,
            totals: counts.totals,
            queued_by_model: queued
                .iter()
                .filter(|(_, n)| **n != 0)
                .map(|(m, n)| (m.clone(), *n))
                .collect(),
        });
        for (m, d) in &counts.queued_change {
            *queued.entry(m.clone()).or_default() -= d;
        }
        h = h.plus(-1);
    }
    hours.reverse();
    let mut total = ActivityTotals::default();
    let mut failures: BTreeMap<String, i64> = BTreeMap::new();
    for (_, counts) in rows.hours.range(from..=to) {
        total.add(&counts.totals);
        for (code, n) in &counts.failures {
            *failures.entry(code.clone()).or_default() += n;
        }
    }
    let mut failures: Vec<(String, i64)> = failures.into_iter().filter(|(_, n)| *n != 0).collect();
    failures.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Activity {
        from,
        to,
        hours,
        failures,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(m: &str) -> ModelName {
        ModelName::parse(m).unwrap()
    }

    #[test]
    fn an_hour_reads_and_prints_as_utc_year_month_day_and_hour() {
        let h = Hour::parse("2026-12-01T10").unwrap();
        assert_eq!(h.to_string(), "2026-12-01T10");
        assert_eq!(h.start().to_rfc3339(), "2026-12-01T10:00:00.000Z");
        assert_eq!(Hour::of(Timestamp::from_millis(h.start().millis() + HOUR_MS - 1)), h);
        assert_eq!(h.plus(14).to_string(), "2026-12-02T00");
        assert_eq!(h.day(), "2026-12-01");
        assert_eq!(Hour::day_start("2026-12-01").unwrap().to_string(), "2026-12-01T00");
        for bad in [
            "2026-12-01T24",
            "2026-02-30T01",
            "2026-12-01",
            "2026-12-01 10",
            "2026-12-01T1",
            "2026-12-01T10:00",
            "",
            "+026-12-01T10",
        ] {
            assert!(Hour::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counter_names_read_back_as_the_same_counter() {
        for c in [
            ActivityCount::Enqueued,
            ActivityCount::Completed,
            ActivityCount::Failed,
            ActivityCount::Cancelled,
            ActivityCount::Retried,
            ActivityCount::failed_with(Some("rate_limit_exceeded")),
            ActivityCount::failed_with(Some("a:b")),
            ActivityCount::QueuedChange(model("gpt-4o-mini")),
        ] {
            assert_eq!(ActivityCount::from_name(&c.name()), Some(c.clone()), "{}", c.name());
        }
        assert_eq!(ActivityCount::from_name("pending_bytes"), None);
        assert_eq!(ActivityCount::failed_with(None).name(), "failed:unknown");
        let long = "x".repeat(200);
        assert_eq!(
            ActivityCount::failed_with(Some(&long)).name().len(),
            "failed:".len() + MAX_CODE_CHARS
        );
    }

    #[test]
    fn every_hour_is_listed_with_the_queue_at_its_end_derived_from_now_back() {
        let from = Hour::parse("2026-12-01T08").unwrap();
        let to = from.plus(2);
        let m = model("gpt-4o-mini");
        let mut rows = ActivityRows::default();
        // 08: 5 enqueued; 09: nothing; 10: 2 claimed, 1 failed; 11 (after the range): 3 enqueued.
        let mut h8 = HourCounts::default();
        h8.add(&ActivityCount::Enqueued, 5);
        h8.add(&ActivityCount::QueuedChange(m.clone()), 5);
        let mut h10 = HourCounts::default();
        h10.add(&ActivityCount::QueuedChange(m.clone()), -2);
        h10.add(&ActivityCount::Failed, 1);
        h10.add(&ActivityCount::failed_with(Some("boom")), 1);
        let mut h11 = HourCounts::default();
        h11.add(&ActivityCount::Enqueued, 3);
        h11.add(&ActivityCount::QueuedChange(m.clone()), 3);
        rows.hours.insert(from, h8);
        rows.hours.insert(from.plus(2), h10);
        rows.hours.insert(from.plus(3), h11);
        rows.queued_now.insert(m.clone(), 6);

        let a = summarize(&rows, from, to);
        let queued: Vec<i64> = a
            .hours
            .iter()
            .map(|h| h.queued_by_model.get(&m).copied().unwrap_or(0))
            .collect();
        assert_eq!(
            a.hours.iter().map(|h| h.hour.to_string()).collect::<Vec<_>>(),
            ["2026-12-01T08", "2026-12-01T09", "2026-12-01T10"]
        );
        assert_eq!(queued, [5, 5, 3]);
        assert_eq!(a.total.enqueued, 5, "hour 11 is outside the range");
        assert_eq!(a.total.failed, 1);
        assert_eq!(a.failures, [("boom".to_owned(), 1)]);
    }

    #[test]
    fn failures_are_listed_largest_first_and_models_at_zero_are_left_out() {
        let h = Hour::parse("2026-12-01T08").unwrap();
        let mut c = HourCounts::default();
        c.add(&ActivityCount::failed_with(Some("b")), 1);
        c.add(&ActivityCount::failed_with(Some("a")), 1);
        c.add(&ActivityCount::failed_with(Some("z")), 4);
        c.add(&ActivityCount::QueuedChange(model("m")), 1);
        let mut rows = ActivityRows::default();
        rows.hours.insert(h, c);
        let a = summarize(&rows, h, h);
        assert_eq!(
            a.failures,
            [("z".to_owned(), 4), ("a".to_owned(), 1), ("b".to_owned(), 1)]
        );
        assert!(a.hours[0].queued_by_model.is_empty(), "{:?}", a.hours[0]);
    }
}
