//! The one retry policy every provider client and the executor share: jittered exponential
//! backoff that honours a server's `Retry-After`, bounded by a number of attempts and a total
//! deadline.
//!
//! Providers retry *reads* with it inside one call (resolution and verification have no retry
//! loop of their own, so one 5xx or 429 would otherwise end the run); the executor retries whole
//! actions with the same arithmetic. Writes are not retried blindly by providers: an action is
//! idempotent as a whole, not each call in it.

use crate::error::ErrorClass;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::{Duration, Instant};

/// Retry settings, configurable per provider (`[providers.<name>.retry]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1: no retry).
    pub max_attempts: u32,
    /// The backoff before the second attempt, in milliseconds; it doubles with each attempt.
    pub base_ms: u64,
    /// The longest backoff between two attempts, in milliseconds (a longer `Retry-After` is
    /// still honoured, within the deadline).
    pub cap_ms: u64,
    /// No retry starts later than this many milliseconds after the first attempt, and no wait
    /// would end after it.
    pub deadline_ms: u64,
}

impl Default for RetryPolicy {
    /// Eight attempts, 200 ms doubling to at most 20 s, within 60 s. Eight, not five: a
    /// resolution makes hundreds of reads, and when a fifth of a server's answers fail (the chaos
    /// bench's 20%), five attempts all fail for about one read in 3,000 — a stuck run every few
    /// runs of the Azure leaver's ~500 reads; eight, one in 390,000. The backoffs of eight
    /// attempts add up to at most 25.4 s, inside the deadline.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_ms: 200,
            cap_ms: 20_000,
            deadline_ms: 60_000,
        }
    }
}

/// A [`RetryPolicy`] setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retry.{field}: {message}")]
pub struct RetryPolicyError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: &'static str,
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Check the settings: at least one attempt, a base no larger than the cap, a deadline.
    pub fn validate(&self) -> Result<(), RetryPolicyError> {
        let bad = |field, message| Err(RetryPolicyError { field, message });
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1");
        }
        if self.base_ms == 0 {
            return bad("base_ms", "must be at least 1");
        }
        if self.base_ms > self.cap_ms {
            return bad("base_ms", "must not exceed cap_ms");
        }
        if self.deadline_ms == 0 {
            return bad("deadline_ms", "must be at least 1");
        }
        Ok(())
    }

    /// The backoff ceiling before attempt `attempt + 1` (`attempt` failed, 1-based):
    /// `base · 2^(attempt-1)`, at most the cap.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = self
            .base_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
            .min(self.cap_ms);
        Duration::from_millis(exp)
    }

    /// The wait after failed attempt `attempt` (1-based): a uniformly random share of
    /// [`RetryPolicy::ceiling`] ("full jitter"), or the server's `retry_after` when that is
    /// longer — a server that named a wait is never asked again sooner.
    pub fn delay_for(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let jittered = Duration::from_millis(rand::rng().random_range(0..=ceiling.max(1)));
        match retry_after {
            Some(r) => r.max(jittered),
            None => jittered,
        }
    }

    /// Whether to retry after attempt `attempt` failed with `class`, `elapsed` after the first
    /// attempt started, and how long to wait first: `None` when the error is not worth retrying,
    /// the attempts are spent, or the wait would end past the deadline.
    pub fn next(&self, attempt: u32, class: ErrorClass, elapsed: Duration) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let wait = match class {
            ErrorClass::Retryable => self.delay_for(attempt, None),
            ErrorClass::Throttled(after) => self.delay_for(attempt, after),
            ErrorClass::Permanent | ErrorClass::AlreadyDone => return None,
        };
        (elapsed + wait <= Duration::from_millis(self.deadline_ms)).then_some(wait)
    }

    /// Run `call` until it succeeds, fails with an error `classify` does not call retryable,
    /// or the policy gives up; the last error is returned. For reads: a write retried this way
    /// must be safe to repeat.
    pub async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        classify: impl Fn(&E) -> ErrorClass,
        mut call: F,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) => match self.next(attempt, classify(&e), started.elapsed()) {
                    Some(wait) => {
                        tracing::debug!(what, attempt, wait_ms = wait.as_millis() as u64, error = %e, "retrying a read");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn delays_grow_are_capped_and_never_undercut_retry_after() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_ms: 100,
            cap_ms: 1_000,
            deadline_ms: 60_000,
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_millis(1_000));
        assert_eq!(p.ceiling(60), Duration::from_millis(1_000));
        for attempt in 1..8 {
            assert!(p.delay_for(attempt, None) <= p.ceiling(attempt));
            assert!(p.delay_for(attempt, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }

    #[test]
    fn next_gives_up_on_permanent_errors_spent_attempts_and_the_deadline() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_ms: 10,
            cap_ms: 10,
            deadline_ms: 5_000,
        };
        assert!(p.next(1, ErrorClass::Retryable, Duration::ZERO).is_some());
        assert!(p
            .next(2, ErrorClass::Throttled(None), Duration::ZERO)
            .is_some());
        assert_eq!(p.next(3, ErrorClass::Retryable, Duration::ZERO), None);
        assert_eq!(p.next(1, ErrorClass::Permanent, Duration::ZERO), None);
        assert_eq!(p.next(1, ErrorClass::AlreadyDone, Duration::ZERO), None);
        assert_eq!(
            p.next(
                1,
                ErrorClass::Throttled(Some(Duration::from_secs(2))),
                Duration::from_secs(2)
            ),
            Some(Duration::from_secs(2))
        );
        // A Retry-After that would end past the deadline: give up now rather than wait for it.
        assert_eq!(
            p.next(
                1,
                ErrorClass::Throttled(Some(Duration::from_secs(4))),
                Duration::from_secs(2)
            ),
            None
        );
        assert!(RetryPolicy::default().validate().is_ok());
        assert_eq!(
            RetryPolicy {
                max_attempts: 0,
                ..p
            }
            .validate()
            .unwrap_err()
            .to_string(),
            "retry.max_attempts: must be at least 1"
        );
        assert!(RetryPolicy { base_ms: 20, ..p }.validate().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_until_success_and_waits_at_least_retry_after() {
        let p = RetryPolicy::default();
        let calls = Cell::new(0);
        let started = tokio::time::Instant::now();
        let out: Result<u32, String> = p
            .run(
                "read",
                |e: &String| {
                    if e == "429" {
                        ErrorClass::Throttled(Some(Duration::from_secs(3)))
                    } else {
                        ErrorClass::Retryable
                    }
                },
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move {
                        match n {
                            1 => Err("429".to_string()),
                            2 => Err("503".to_string()),
                            _ => Ok(n),
                        }
                    }
                },
            )
            .await;
        assert_eq!(out, Ok(3));
        assert!(started.elapsed() >= Duration::from_secs(3));
        let once: Result<(), String> = p
            .run(
                "read",
                |_: &String| ErrorClass::Permanent,
                || async { Err("403".to_string()) },
            )
            .await;
        assert_eq!(once, Err("403".to_string()));
    }
}
