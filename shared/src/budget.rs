//! The per-model budget of enqueued tokens.
//!
//! A provider counts the input tokens of all of a model's batches that are
//! waiting or running against a per-organization limit (OpenAI's "batch
//! queue limit": 2,000,000 for gpt-4o-mini and 90,000 for gpt-4o at tier 1;
//! Azure deployments as low as 30,000). A batch over it is not refused at
//! create: it is accepted and then fails validation with
//! `token_limit_exceeded`. Sizing batches only by lines and bytes therefore
//! rebuilds the same too-large batch forever.
//!
//! batchq keeps, per model, a budget in its own estimated tokens
//! ([`crate::tokens`]): submit claims only what fits the budget less the
//! tokens of the model's batches already waiting or running, so a large
//! queue goes out batch after batch as earlier ones finish. The budget is
//!
//! * configured (`BATCHQ_ENQUEUED_TOKEN_LIMITS`), or unknown (no limit)
//!   until the provider first refuses a batch;
//! * learnt down on `token_limit_exceeded`: to the limit the provider's
//!   message states when it states one (OpenAI's "Limit: 2,000,000 enqueued
//!   tokens", Azure's "limit of 30K"), less a margin for estimation error,
//!   and never above half of what was in flight with the refused batch when
//!   that should have fitted (other work shares the limit, or the estimate
//!   runs low);
//! * learnt back up after batches the provider accepts, a fifth at a time,
//!   up to the stated or configured limit less the margin; a stated limit
//!   is trusted for a day, after which the budget may probe above it (an
//!   organization's tier rises).
//!
//! Two refusals in a row also back off before the next try, doubling up to
//! `BATCHQ_TOKEN_LIMIT_HOLD_SECS`, for a limit that other work keeps full.

use std::time::Duration;

use crate::ids::ModelName;
use crate::time::Timestamp;

/// Share of a stated or configured limit that batchq plans with: room for
/// its estimate to run below the provider's count.
pub const MARGIN: f64 = 0.9;
/// Growth after an accepted batch.
pub const GROWTH: f64 = 1.2;
/// A stated limit caps the budget for this long after it was learnt.
pub const STATED_LIMIT_TRUST: Duration = Duration::from_secs(86_400);
/// The smallest budget learnt down to.
pub const FLOOR: u64 = 1_000;
/// The first back-off after a second refusal in a row.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(60);

/// One model's budget of enqueued tokens.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenBudget {
    pub model: ModelName,
    /// Tokens (batchq's estimate) the model's waiting and running batches
    /// may hold together; `None`: no limit known.
    pub limit: Option<u64>,
    /// The limit the provider stated in its last refusal, and when.
    pub stated_limit: Option<u64>,
    pub stated_at: Option<Timestamp>,
    /// Refusals since the last accepted batch.
    pub refusals_in_row: u32,
    /// Refusals learnt in all (never reset): a batch planned when fewer had
    /// been learnt was planned with a budget a later refusal corrected.
    pub refusals_total: u64,
    /// No new batch of the model before this (after repeated refusals).
    pub blocked_until: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl TokenBudget {
    /// The budget of a model nothing has been learnt about yet: the
    /// configured limit (less the margin), or none.
    pub fn initial(model: ModelName, configured: Option<u64>, now: Timestamp) -> Self {
        Self {
            model,
            limit: configured.map(with_margin),
            stated_limit: None,
            stated_at: None,
            refusals_in_row: 0,
            refusals_total: 0,
            blocked_until: None,
            updated_at: now,
        }
    }

    /// Tokens a new batch may hold while `in_flight` are held by the
    /// model's other batches; `None`: no limit. `Some(0)`: wait.
    pub fn available(&self, in_flight: u64, now: Timestamp) -> Option<u64> {
        if self.blocked_until.is_some_and(|b| b > now) {
            return Some(0);
        }
        self.limit.map(|l| l.saturating_sub(in_flight))
    }

    /// After the provider refused a batch of `batch_tokens`, planned when
    /// `refusals_seen` refusals had been learnt and `in_flight` tokens of
    /// the model's other batches were out, saying `message`. A batch planned
    /// before the last refusal was learnt (two batches of one submit run,
    /// refused together) teaches only the limit it states: it was planned
    /// with the budget that refusal has corrected already.
    pub fn refused(
        &self,
        batch_tokens: u64,
        in_flight: u64,
        refusals_seen: u64,
        message: &str,
        token_limit_hold: Duration,
        now: Timestamp,
    ) -> Self {
        let mut next = self.clone();
        let stated = stated_limit(message);
        if refusals_seen < self.refusals_total {
            if let Some(s) = stated {
                next.limit = Some(self.limit.unwrap_or(u64::MAX).min(with_margin(s)).max(FLOOR));
                next.stated_limit = Some(s);
                next.stated_at = Some(now);
            }
            next.updated_at = now;
            return next;
        }
        let tried = in_flight.saturating_add(batch_tokens);
        let mut limit = self.limit.unwrap_or(u64::MAX);
        if let Some(s) = stated {
            limit = limit.min(with_margin(s));
            next.stated_limit = Some(s);
            next.stated_at = Some(now);
        }
        // What was tried should have fitted the stated limit (or no limit
        // was stated): something else holds part of it, or the estimate
        // runs low. Halve what was tried.
        if stated.is_none_or(|s| tried <= with_margin(s)) {
            limit = limit.min(tried / 2);
        }
        next.limit = Some(limit.max(FLOOR));
        next.refusals_in_row = self.refusals_in_row.saturating_add(1);
        next.refusals_total = self.refusals_total + 1;
        next.blocked_until = (next.refusals_in_row >= 2).then(|| {
            let doublings = (next.refusals_in_row - 2).min(16);
            now.plus(FIRST_BACKOFF.saturating_mul(1 << doublings).min(token_limit_hold))
        });
        next.updated_at = now;
        next
    }

    /// After the provider accepted a batch of the model (it left
    /// `validating` for anything but `failed`).
    pub fn accepted(&self, configured: Option<u64>, now: Timestamp) -> Self {
        let mut next = self.clone();
        next.refusals_in_row = 0;
        next.blocked_until = None;
        next.updated_at = now;
        let stated_cap = match (self.stated_limit, self.stated_at) {
            (Some(s), Some(at)) if now.since(at) < STATED_LIMIT_TRUST => Some(with_margin(s)),
            _ => None,
        };
        let cap = stated_cap.or(configured.map(with_margin));
        next.limit = self.limit.map(|l| {
            let grown = ((l as f64) * GROWTH).ceil() as u64;
            cap.map_or(grown, |c| grown.min(c))
        });
        next
    }
}

fn with_margin(limit: u64) -> u64 {
    ((limit as f64) * MARGIN) as u64
}

/// The limit a `token_limit_exceeded` message states, if it states one:
/// OpenAI's "… Limit: 2,000,000 enqueued tokens. …" or Azure's "… the
/// configured limit of 30K for the deployment …" (K and M suffixes).
pub fn stated_limit(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let start = ["limit: ", "limit of "]
        .iter()
        .filter_map(|m| lower.find(m).map(|i| i + m.len()))
        .min()?;
    let rest = &lower[start..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
        .filter(|c| *c != ',')
        .collect();
    let number: f64 = digits.parse().ok()?;
    let unit = match rest[digits_len(rest)..].chars().next() {
        Some('k') => 1_000.0,
        Some('m') => 1_000_000.0,
        _ => 1.0,
    };
    let v = number * unit;
    (1.0..1e15).contains(&v).then_some(v as u64)
}

fn digits_len(s: &str) -> usize {
    s.chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
        .map(char::len_utf8)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelName {
        ModelName::parse("gpt-4o-mini").unwrap()
    }

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
    const HOLD: Duration = Duration::from_secs(1800);
    /// Planned after every refusal learnt so far.
    const RT: u64 = u64::MAX;
    const OPENAI: &str = "Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: 200,000 enqueued tokens. Please try again once some in_progress batches have been completed.";

    #[test]
    fn stated_limits_are_read_from_openai_and_azure_messages() {
        assert_eq!(stated_limit(OPENAI), Some(200_000));
        assert_eq!(
            stated_limit("The number of enqueued tokens has surpassed the configured limit of 30K for the deployment gpt4o-batch."),
            Some(30_000)
        );
        assert_eq!(stated_limit("limit of 1.5M tokens"), Some(1_500_000));
        assert_eq!(stated_limit("Enqueued token limit reached."), None);
        assert_eq!(stated_limit("Limit: lots"), None);
    }

    #[test]
    fn a_refusal_that_states_the_limit_sets_the_budget_just_under_it() {
        let b = TokenBudget::initial(model(), None, T0);
        assert_eq!(b.available(0, T0), None, "nothing known: no limit");
        let after = b.refused(2_000_000, 0, RT, OPENAI, HOLD, T0);
        assert_eq!(after.limit, Some(180_000));
        assert_eq!(after.available(50_000, T0), Some(130_000));
        assert_eq!(after.blocked_until, None, "one refusal: try again at once, smaller");
    }

    #[test]
    fn a_refusal_of_what_should_have_fitted_halves_what_was_tried_and_backs_off_when_repeated() {
        let b = TokenBudget::initial(model(), Some(200_000), T0);
        assert_eq!(b.limit, Some(180_000));
        // 150k in flight + 30k refused under a stated 200k: others hold part of it.
        let once = b.refused(30_000, 150_000, RT, OPENAI, HOLD, T0);
        assert_eq!(once.limit, Some(90_000));
        let twice = once.refused(10_000, 0, RT, "Enqueued token limit reached.", HOLD, T0);
        assert_eq!(twice.limit, Some(FLOOR.max(5_000)));
        assert_eq!(twice.blocked_until, Some(T0.plus(FIRST_BACKOFF)));
        assert_eq!(twice.available(0, T0), Some(0));
        let thrice = twice.refused(1_000, 0, RT, "", HOLD, T0);
        assert_eq!(thrice.blocked_until, Some(T0.plus(FIRST_BACKOFF * 2)));
        let many = (0..20).fold(thrice, |b, _| b.refused(1_000, 0, RT, "", HOLD, T0));
        assert_eq!(
            many.blocked_until,
            Some(T0.plus(HOLD)),
            "the back-off stops at the hold"
        );
    }

    #[test]
    fn a_batch_planned_before_the_last_refusal_does_not_count_as_another() {
        let once = TokenBudget::initial(model(), None, T0).refused(30_000, 0, 0, "no number", HOLD, T0);
        assert_eq!(
            (once.limit, once.refusals_in_row, once.refusals_total),
            (Some(15_000), 1, 1)
        );
        // Planned with the first (none learnt then), refused after it was learnt.
        let stale = once.refused(20_000, 30_000, 0, "no number", HOLD, T0);
        assert_eq!(
            (stale.limit, stale.refusals_in_row, stale.blocked_until),
            (Some(15_000), 1, None)
        );
        let stated = once.refused(20_000, 30_000, 0, OPENAI, HOLD, T0);
        assert_eq!((stated.limit, stated.stated_limit), (Some(15_000), Some(200_000)));
        // Planned after it: a refusal in a row.
        let again = once.refused(10_000, 0, 1, "no number", HOLD, T0);
        assert_eq!((again.refusals_in_row, again.refusals_total), (2, 2));
        assert!(again.blocked_until.is_some());
    }

    #[test]
    fn accepted_batches_grow_the_budget_up_to_the_stated_limit_then_past_it_after_a_day() {
        let b = TokenBudget::initial(model(), None, T0).refused(1_000_000, 0, RT, OPENAI, HOLD, T0);
        let b = b.refused(1_000, 500_000, RT, OPENAI, HOLD, T0); // what was tried did not fit: no halving
        assert_eq!(b.limit, Some(180_000));
        let mut grown = b.clone();
        for _ in 0..10 {
            grown = grown.accepted(None, T0);
        }
        assert_eq!(grown.limit, Some(180_000), "capped by the stated limit");
        assert_eq!((grown.refusals_in_row, grown.blocked_until), (0, None));
        let later = T0.plus(STATED_LIMIT_TRUST);
        assert_eq!(
            grown.accepted(None, later).limit,
            Some(216_000),
            "a day later it probes above"
        );
        let halved = TokenBudget::initial(model(), None, T0).refused(100_000, 0, RT, "no number", HOLD, T0);
        assert_eq!(halved.limit, Some(50_000));
        assert_eq!(halved.accepted(Some(200_000), T0).limit, Some(60_000));
        assert_eq!(
            halved.accepted(Some(50_000), T0).limit,
            Some(45_000),
            "a lower configured cap applies"
        );
    }
}
