//! A delivery: one message (event) for one endpoint, kept as a durable row
//! from the moment it is known until it was answered 2xx or ran out of
//! retries (then `failed`, listable and replayable), and the retry schedule
//! between its attempts.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::endpoint::{EndpointId, EventType};
use super::event::EventId;
use crate::error::ValidationError;
use crate::ids::TenantId;
use crate::time::Timestamp;

/// A delivery's id: `whmsg_` + 32 hex digits derived from the endpoint and
/// the event, so materialising the same event for the same endpoint twice
/// (a crash before the cursor moved) finds the row already there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn of(endpoint: &EndpointId, event: &EventId) -> Self {
        let mut h = Sha256::new();
        h.update(endpoint.as_str().as_bytes());
        h.update([0u8]);
        h.update(event.as_str().as_bytes());
        let d = h.finalize();
        Self(format!(
            "whmsg_{}",
            d[..16].iter().map(|b| format!("{b:02x}")).collect::<String>()
        ))
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = s
            .strip_prefix("whmsg_")
            .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "delivery_id",
                "invalid",
                "a delivery id is whmsg_ followed by 32 hex digits",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet answered 2xx; sent when `next_attempt_at` comes.
    Pending,
    /// Answered 2xx.
    Delivered,
    /// Every attempt of the schedule failed; kept for listing and replay.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message for one endpoint. `body` is the exact JSON sent (and
/// signed) on every attempt, so a retry or a replay carries the same bytes
/// and the same `webhook-id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub endpoint: EndpointId,
    pub tenant: TenantId,
    pub event_id: EventId,
    /// `request.*`, `job.finished`, or `None` for a `request.batch`.
    pub event_type: Option<EventType>,
    pub body: String,
    pub status: DeliveryStatus,
    /// Attempts made so far (since the last replay).
    pub attempts: u32,
    pub created_at: Timestamp,
    /// When the first attempt of this round was made (the retry span
    /// counts from it).
    pub first_attempt_at: Option<Timestamp>,
    pub next_attempt_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    /// The last failed attempt's HTTP status, when one was answered.
    pub last_status_code: Option<u16>,
    /// The last failed attempt's reason (status, timeout, refused target);
    /// never the endpoint's answer body.
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

impl Delivery {
    pub fn new(
        endpoint: EndpointId,
        tenant: TenantId,
        event_id: EventId,
        event_type: Option<EventType>,
        body: String,
        now: Timestamp,
    ) -> Self {
        Self {
            id: DeliveryId::of(&endpoint, &event_id),
            endpoint,
            tenant,
            event_id,
            event_type,
            body,
            status: DeliveryStatus::Pending,
            attempts: 0,
            created_at: now,
            first_attempt_at: None,
            next_attempt_at: now,
            last_attempt_at: None,
            last_status_code: None,
            last_error: None,
            delivered_at: None,
        }
    }

    /// The delivery after an attempt at `now` answered 2xx.
    pub fn delivered(mut self, now: Timestamp) -> Self {
        self.attempts += 1;
        self.first_attempt_at.get_or_insert(now);
        self.last_attempt_at = Some(now);
        self.status = DeliveryStatus::Delivered;
        self.delivered_at = Some(now);
        self
    }

    /// The delivery after a failed attempt at `now`: pending again after the
    /// schedule's next (jittered) delay, or failed once the schedule is used
    /// up and its minimum span has passed since the first attempt.
    pub fn attempt_failed(
        mut self,
        now: Timestamp,
        status_code: Option<u16>,
        error: String,
        schedule: &RetrySchedule,
    ) -> Self {
        self.attempts += 1;
        let first = *self.first_attempt_at.get_or_insert(now);
        self.last_attempt_at = Some(now);
        self.last_status_code = status_code;
        self.last_error = Some(error);
        match schedule.next_delay(self.attempts, now.since(first)) {
            Some(delay) => {
                self.status = DeliveryStatus::Pending;
                self.next_attempt_at = now.plus(delay);
            }
            None => self.status = DeliveryStatus::Failed,
        }
        self
    }

    /// The delivery made pending again at `now` with a fresh schedule
    /// (`replay`). Same id, event id and body: the receiver sees the same
    /// `webhook-id`.
    pub fn replayed(mut self, now: Timestamp) -> Self {
        self.status = DeliveryStatus::Pending;
        self.attempts = 0;
        self.first_attempt_at = None;
        self.next_attempt_at = now;
        self.delivered_at = None;
        self
    }
}

/// Delays between attempts: attempt `n` failed → wait a uniformly random
/// time in `[0, delays[n-1]]` (exponential backoff with full jitter), the
/// last delay repeating until at least `min_span` has passed since the first
/// attempt; then the delivery fails. The default spans more than 24 hours:
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (and 10 h until a day has passed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    pub delays: Vec<Duration>,
    pub min_span: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 3600;
        Self {
            delays: [5, 5 * MIN, 30 * MIN, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            min_span: Duration::from_secs(24 * HOUR),
        }
    }
}

impl RetrySchedule {
    /// The wait after failed attempt number `attempts` (1-based), `elapsed`
    /// after the first attempt; `None`: give up.
    pub fn next_delay(&self, attempts: u32, elapsed: Duration) -> Option<Duration> {
        let n = attempts as usize;
        let base = match self.delays.get(n.saturating_sub(1)) {
            Some(d) => *d,
            None if elapsed < self.min_span => *self.delays.last()?,
            None => return None,
        };
        let millis = base.as_millis().min(u64::MAX as u128) as u64;
        Some(Duration::from_millis(fastrand::u64(0..=millis)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery::new(
            EndpointId::generate(),
            TenantId::default_tenant(),
            EventId::for_test("evt_1"),
            Some(EventType::RequestCompleted),
            "{}".into(),
            Timestamp::from_millis(0),
        )
    }

    #[test]
    fn delays_are_full_jitter_within_each_base_and_the_default_schedule_spans_a_day() {
        let s = RetrySchedule::default();
        let total: Duration = s.delays.iter().sum();
        assert!(total >= Duration::from_secs(24 * 3600), "{total:?}");
        for _ in 0..200 {
            let d = s.next_delay(1, Duration::ZERO).unwrap();
            assert!(d <= Duration::from_secs(5));
        }
    }

    #[test]
    fn a_delivery_fails_only_after_the_schedule_is_used_up_and_the_minimum_span_passed() {
        let schedule = RetrySchedule {
            delays: vec![Duration::from_secs(1), Duration::from_secs(2)],
            min_span: Duration::from_secs(100),
        };
        let mut d = delivery();
        let mut now = Timestamp::from_millis(0);
        for _ in 0..2 {
            d = d.attempt_failed(now, Some(500), "HTTP 500".into(), &schedule);
            assert_eq!(d.status, DeliveryStatus::Pending);
            now = d.next_attempt_at;
        }
        // Schedule used up, 100 s not yet passed: the last delay repeats.
        d = d.attempt_failed(now, None, "timeout".into(), &schedule);
        assert_eq!(d.status, DeliveryStatus::Pending);
        d = d.attempt_failed(Timestamp::from_unix_seconds(101), None, "timeout".into(), &schedule);
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(d.attempts, 4);
        assert_eq!(d.last_error.as_deref(), Some("timeout"));
    }

    #[test]
    fn replay_keeps_the_id_and_body_and_starts_a_fresh_schedule() {
        let schedule = RetrySchedule {
            delays: vec![],
            min_span: Duration::ZERO,
        };
        let failed = delivery().attempt_failed(Timestamp::from_millis(5), Some(500), "HTTP 500".into(), &schedule);
        assert_eq!(failed.status, DeliveryStatus::Failed);
        let again = failed.clone().replayed(Timestamp::from_millis(9));
        assert_eq!((again.id.clone(), again.body.clone()), (failed.id, failed.body));
        assert_eq!(again.status, DeliveryStatus::Pending);
        assert_eq!((again.attempts, again.next_attempt_at), (0, Timestamp::from_millis(9)));
    }

    #[test]
    fn delivery_ids_depend_on_endpoint_and_event_and_parse_back() {
        let a = EndpointId::generate();
        let b = EndpointId::generate();
        let e = EventId::for_test("evt_x");
        assert_eq!(DeliveryId::of(&a, &e), DeliveryId::of(&a, &e));
        assert_ne!(DeliveryId::of(&a, &e), DeliveryId::of(&b, &e));
        let id = DeliveryId::of(&a, &e);
        assert_eq!(DeliveryId::parse(id.as_str()).unwrap(), id);
        assert!(DeliveryId::parse("whmsg_../").is_err());
    }
}
