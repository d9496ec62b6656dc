//! The one retry policy: exponential backoff with full jitter, capped, for
//! a bounded number of retries, honouring a wait the other side asked for.
//! Every adapter that retries (the provider client, the DynamoDB
//! transactions) runs its attempts through [`RetryPolicy::run`].

use std::future::Future;
use std::time::Duration;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Retrying will not help: give up now with this error.
    Fatal,
    /// Try again after the policy's backoff, or after the wait the other
    /// side asked for (capped by [`RetryPolicy::max_asked_wait`]).
    Retry { asked: Option<Duration> },
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = try once).
    pub max_retries: u32,
    /// The ceiling of the first retry's wait; it doubles per retry.
    pub base: Duration,
    /// No wait is longer than this.
    pub cap: Duration,
    /// A wait the other side asks for (`Retry-After`) is honoured up to this.
    pub max_asked_wait: Duration,
}

/// The last error of a run that did not succeed, and how many attempts it made.
#[derive(Debug)]
pub struct GaveUp<E> {
    pub attempts: u32,
    pub last: E,
    /// False when the last error was [`Verdict::Fatal`]; true when every
    /// allowed attempt failed with a retryable error.
    pub exhausted: bool,
}

impl RetryPolicy {
    pub const fn new(max_retries: u32, base: Duration, cap: Duration) -> Self {
        Self {
            max_retries,
            base,
            cap,
            max_asked_wait: cap,
        }
    }

    pub const fn with_max_asked_wait(mut self, d: Duration) -> Self {
        self.max_asked_wait = d;
        self
    }

    /// The wait before retry number `attempt + 1` (`attempt` is 0-based):
    /// what was asked, capped, or full jitter over `min(cap, base · 2^attempt)`.
    pub fn delay(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        if let Some(d) = asked {
            return d.min(self.max_asked_wait);
        }
        let ceiling = self.base.saturating_mul(1u32 << attempt.min(16)).min(self.cap);
        Duration::from_micros(fastrand::u64(0..=ceiling.as_micros() as u64))
    }

    /// The wait before another attempt after attempt `attempt` (0-based)
    /// failed, or `None` when the retries are used up.
    pub fn next_delay(&self, attempt: u32, asked: Option<Duration>) -> Option<Duration> {
        (attempt < self.max_retries).then(|| self.delay(attempt, asked))
    }

    /// Runs `attempt` until it succeeds, `judge` calls its error fatal, or
    /// the retries are used up; `pause` does the waiting (a clock's sleep,
    /// so tests need not wait for real).
    pub async fn run<T, E, A, AF, P, PF>(
        &self,
        mut attempt: A,
        judge: impl Fn(&E) -> Verdict,
        mut pause: P,
    ) -> Result<T, GaveUp<E>>
    where
        A: FnMut(u32) -> AF,
        AF: Future<Output = Result<T, E>>,
        P: FnMut(u32, Duration, &E) -> PF,
        PF: Future<Output = ()>,
    {
        let mut n = 0;
        loop {
            match attempt(n).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let asked = match judge(&e) {
                        Verdict::Fatal => {
                            return Err(GaveUp {
                                attempts: n + 1,
                                last: e,
                                exhausted: false,
                            })
                        }
                        Verdict::Retry { asked } => asked,
                    };
                    match self.next_delay(n, asked) {
                        Some(wait) => pause(n, wait, &e).await,
                        None => {
                            return Err(GaveUp {
                                attempts: n + 1,
                                last: e,
                                exhausted: true,
                            })
                        }
                    }
                    n += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const POLICY: RetryPolicy = RetryPolicy::new(3, Duration::from_millis(10), Duration::from_millis(50));

    #[test]
    fn delay_grows_with_jitter_up_to_the_cap_and_honours_a_capped_ask() {
        for attempt in 0..8 {
            let ceiling = Duration::from_millis(10 * (1 << attempt)).min(Duration::from_millis(50));
            for _ in 0..50 {
                assert!(POLICY.delay(attempt, None) <= ceiling);
            }
        }
        assert_eq!(
            POLICY.delay(0, Some(Duration::from_millis(7))),
            Duration::from_millis(7)
        );
        assert_eq!(POLICY.delay(0, Some(Duration::from_secs(9))), Duration::from_millis(50));
        assert_eq!(POLICY.next_delay(3, None), None);
        assert!(POLICY.next_delay(2, None).is_some());
    }

    #[tokio::test]
    async fn run_retries_retryable_errors_until_success() {
        let pauses = Cell::new(0);
        let out: Result<u32, GaveUp<&str>> = POLICY
            .run(
                |n| async move {
                    if n < 2 {
                        Err("busy")
                    } else {
                        Ok(n)
                    }
                },
                |_| Verdict::Retry { asked: None },
                |_, _, _| {
                    pauses.set(pauses.get() + 1);
                    async {}
                },
            )
            .await;
        assert_eq!(out.unwrap(), 2);
        assert_eq!(pauses.get(), 2);
    }

    #[tokio::test]
    async fn run_stops_at_a_fatal_error_and_after_the_last_retry() {
        let fatal: Result<(), GaveUp<&str>> = POLICY
            .run(|_| async { Err("bad") }, |_| Verdict::Fatal, |_, _, _| async {})
            .await;
        let g = fatal.unwrap_err();
        assert_eq!((g.attempts, g.exhausted), (1, false));

        let busy: Result<(), GaveUp<&str>> = POLICY
            .run(
                |_| async { Err("busy") },
                |_| Verdict::Retry { asked: None },
                |_, _, _| async {},
            )
            .await;
        let g = busy.unwrap_err();
        assert_eq!((g.attempts, g.exhausted, g.last), (4, true, "busy"));
    }
}
