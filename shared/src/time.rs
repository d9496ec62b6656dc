//! Time as milliseconds since the Unix epoch, and the clock port.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, PrimitiveDateTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn from_unix_seconds(s: i64) -> Self {
        Self(s * 1000)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_millis() as i64))
    }

    /// Time elapsed since `earlier` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// RFC 3339 in UTC with millisecond precision: `2026-11-25T04:05:06.789Z`.
    /// The calendar is the `time` crate's, which spans the years -9999 to
    /// 9999; an instant beyond that prints as the nearest end of that span.
    pub fn to_rfc3339(self) -> String {
        let first = PrimitiveDateTime::MIN.assume_utc().unix_timestamp();
        let last = PrimitiveDateTime::MAX.assume_utc().unix_timestamp();
        let secs = self.0.div_euclid(1000).clamp(first, last);
        let ms = self.0.rem_euclid(1000);
        let t = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// The UTC calendar day, `YYYY-MM-DD`.
    pub fn utc_date(self) -> String {
        self.to_rfc3339()[..10].to_owned()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The clock port: the core never reads the system time directly, so tests
/// can move time (leases, deadlines, queue age).
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.0))
    }

    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(Timestamp::from_millis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T12:34:56.789Z, a leap day.
        assert_eq!(
            Timestamp::from_millis(1_709_210_096_789).to_rfc3339(),
            "2024-02-29T12:34:56.789Z"
        );
        assert_eq!(Timestamp::from_millis(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::from_unix_seconds(1_795_000_000).utc_date(), "2026-11-18");
        assert_eq!(Timestamp::from_millis(-1_000).to_rfc3339(), "1969-12-31T23:59:59.000Z");
        assert_eq!(
            Timestamp::from_millis(253_402_300_799_999).to_rfc3339(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(Timestamp::from_millis(951_782_400_000).utc_date(), "2000-02-29");
    }

    #[test]
    fn rfc3339_clamps_instants_beyond_the_calendar_to_its_ends() {
        assert_eq!(
            Timestamp::from_millis(i64::MAX).to_rfc3339(),
            "9999-12-31T23:59:59.807Z"
        );
        assert!(Timestamp::from_millis(i64::MIN)
            .to_rfc3339()
            .starts_with("-9999-01-01T00:00:00."));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_millis(1000));
        assert_eq!(c.now(), Timestamp::from_millis(1000));
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now(), Timestamp::from_millis(3000));
        assert_eq!(c.now().since(Timestamp::from_millis(500)), Duration::from_millis(2500));
        assert_eq!(Timestamp::from_millis(0).since(c.now()), Duration::ZERO);
    }
}
