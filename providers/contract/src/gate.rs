//! Bounded concurrency and a token-bucket rate limit for every call a provider makes, adapting
//! to throttling: a throttled answer ([`CallGate::throttled`]) halves the rate at which calls
//! start and, when the answer named a `Retry-After`, holds every new call of the provider until
//! then (not only the retry of the throttled one); the rate then recovers linearly to the
//! configured one over [`RECOVERY`] without further throttling (additive increase,
//! multiplicative decrease, as TCP does for congestion).
//!
//! Calls made inside [`urgent`] (containment: signing an identity out while the rest of its
//! run is still being discovered) go first: while one of them waits for a token, other calls
//! of the gate leave the tokens to it. The rate itself never rises.

use crate::telemetry;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

tokio::task_local! {
    static URGENT: ();
}

/// Run `f` with every provider call it makes ahead of the gates' other calls (the calls of
/// tasks it spawns are not: the scope is a task-local).
pub async fn urgent<F: std::future::Future>(f: F) -> F::Output {
    URGENT.scope((), f).await
}

fn is_urgent() -> bool {
    URGENT.try_with(|_| ()).is_ok()
}

/// How often a call the urgent ones hold back looks again for a token.
const YIELD_POLL: Duration = Duration::from_millis(20);

/// How long the rate takes to climb back from its lowest to the configured one.
pub const RECOVERY: Duration = Duration::from_secs(20);
/// The lowest share of the configured rate throttling brings the gate down to.
const MIN_SHARE: f64 = 1.0 / 32.0;
/// The longest hold a `Retry-After` puts on the whole gate (a longer one is the retry's to wait).
const MAX_HOLD: Duration = Duration::from_secs(30);

/// Limits for one provider: how many calls may be in flight and how many may start per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Calls in flight at most.
    pub max_in_flight: usize,
    /// Calls started per second at most (a token bucket).
    pub requests_per_second: f64,
    /// How many calls may start at once after an idle period.
    pub burst: u32,
}

impl Limits {
    /// The limits a provider's configuration states: at least one call in flight, and a burst
    /// of half a second's worth of calls (at least one).
    pub fn configured(max_in_flight: usize, requests_per_second: f64) -> Limits {
        Limits {
            max_in_flight: max_in_flight.max(1),
            requests_per_second,
            burst: ((requests_per_second / 2.0).ceil() as u32).max(1),
        }
    }

    /// The widest of several gates' limits: the largest in-flight cap and the fastest rate
    /// (a provider with one gate per API family reports this as its own limits, which bound
    /// how many of its actions the executor runs at once).
    pub fn widest<'a>(gates: impl IntoIterator<Item = &'a CallGate>) -> Limits {
        let (in_flight, rate) = gates
            .into_iter()
            .map(CallGate::limits)
            .fold((1, 1.0), |(n, r), l| {
                (n.max(l.max_in_flight), f64::max(r, l.requests_per_second))
            });
        Limits::configured(in_flight, rate)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 8,
            requests_per_second: 20.0,
            burst: 10,
        }
    }
}

/// A gate every provider call passes through: a semaphore bounds the calls in flight, a token
/// bucket bounds the rate at which they start. Cloning shares the gate. Each pass carries the
/// call's `provider_call` span ([`crate::telemetry`]).
#[derive(Debug, Clone)]
pub struct CallGate {
    semaphore: Arc<Semaphore>,
    bucket: Arc<Mutex<Bucket>>,
    /// Urgent calls waiting for a token: the others leave that many tokens to them.
    urgent_waiting: Arc<std::sync::atomic::AtomicUsize>,
    limits: Limits,
    provider: &'static str,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// The share of the configured rate right after the last throttle (1: never throttled).
    share_after_throttle: f64,
    /// When the last throttle was seen.
    throttled_at: Option<Instant>,
    /// No call starts before this (a `Retry-After`).
    hold_until: Option<Instant>,
}

impl Bucket {
    /// The share of the configured rate allowed at `now`: back to 1 linearly over [`RECOVERY`].
    fn share(&self, now: Instant) -> f64 {
        match self.throttled_at {
            None => 1.0,
            Some(at) => {
                let recovered = now.duration_since(at).as_secs_f64() / RECOVERY.as_secs_f64();
                (self.share_after_throttle + recovered * (1.0 - MIN_SHARE)).min(1.0)
            }
        }
    }
}

/// Counts one urgent call as waiting until it is dropped.
struct UrgentWait<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> UrgentWait<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        UrgentWait(count)
    }
}

impl Drop for UrgentWait<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Held while a call is in flight; dropping it closes the call's span.
#[derive(Debug)]
pub struct Pass {
    _permit: OwnedSemaphorePermit,
    _span: tracing::Span,
}

impl CallGate {
    /// A gate with `limits` for calls to `provider` (the name its call spans carry).
    pub fn named(provider: &'static str, limits: Limits) -> Self {
        CallGate {
            provider,
            ..CallGate::new(limits)
        }
    }

    /// A gate with `limits`, for calls that name no provider in their spans.
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            max_in_flight: limits.max_in_flight.max(1),
            requests_per_second: if limits.requests_per_second > 0.0 {
                limits.requests_per_second
            } else {
                1.0
            },
            burst: limits.burst.max(1),
        };
        CallGate {
            semaphore: Arc::new(Semaphore::new(limits.max_in_flight)),
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: f64::from(limits.burst),
                last: Instant::now(),
                share_after_throttle: 1.0,
                throttled_at: None,
                hold_until: None,
            })),
            urgent_waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            limits,
            provider: "-",
        }
    }

    /// The provider whose calls pass this gate.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The limits the gate enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Wait for a slot and a token. Drop the returned [`Pass`] when the call has finished.
    /// Inside [`urgent`], the call takes the next token before any other call waiting.
    pub async fn enter(&self) -> Pass {
        use std::sync::atomic::Ordering;
        let arrived = Instant::now();
        let urgent = is_urgent();
        // Counted while it waits, so that others leave it the tokens.
        let _waiting = urgent.then(|| UrgentWait::new(&self.urgent_waiting));
        let permit = Arc::clone(&self.semaphore)
            .acquire_owned()
            .await
            .expect("the gate's semaphore is never closed");
        loop {
            let wait = {
                let mut bucket = self.bucket();
                let now = Instant::now();
                let rate = self.limits.requests_per_second * bucket.share(now);
                let elapsed = now.duration_since(bucket.last).as_secs_f64();
                bucket.last = now;
                bucket.tokens = (bucket.tokens + elapsed * rate).min(f64::from(self.limits.burst));
                // An urgent call needs one token; any other one more than the urgent waiters'.
                let ahead = if urgent {
                    0.0
                } else {
                    self.urgent_waiting.load(Ordering::Acquire) as f64
                };
                match bucket.hold_until.filter(|until| *until > now) {
                    Some(until) => Some(until - now),
                    None if bucket.tokens >= 1.0 + ahead => {
                        bucket.tokens -= 1.0;
                        None
                    }
                    None if ahead > 0.0 => Some(YIELD_POLL),
                    // At least a millisecond: a shorter sleep may end at once without the
                    // clock moving, and the bucket would never fill.
                    None => Some(
                        Duration::from_secs_f64((1.0 - bucket.tokens) / rate)
                            .max(Duration::from_millis(1)),
                    ),
                }
            };
            match wait {
                None => {
                    return Pass {
                        _permit: permit,
                        _span: telemetry::provider_call(self.provider, arrived.elapsed()),
                    }
                }
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// The provider answered a call of this gate with a throttle (429, `Throttling`, ...),
    /// asking to wait `retry_after` if it said so: emits the `throttled` event
    /// ([`telemetry::throttled`]), halves the rate (not below 1/32 of the configured one) and
    /// holds new calls until `retry_after` has passed (at most [`MAX_HOLD`]).
    pub fn throttled(&self, retry_after: Option<Duration>) {
        telemetry::throttled(self.provider, retry_after);
        let mut bucket = self.bucket();
        let now = Instant::now();
        bucket.share_after_throttle = (bucket.share(now) / 2.0).max(MIN_SHARE);
        bucket.throttled_at = Some(now);
        bucket.tokens = bucket.tokens.min(0.0);
        if let Some(after) = retry_after {
            let until = now + after.min(MAX_HOLD);
            bucket.hold_until = Some(bucket.hold_until.map_or(until, |held| held.max(until)));
        }
    }

    fn bucket(&self) -> MutexGuard<'_, Bucket> {
        // Every critical section leaves the bucket consistent: a poisoned lock is still usable.
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rate (calls per second) the gate allows now: the configured one, or less after a
    /// throttle.
    pub fn current_rate(&self) -> f64 {
        let bucket = self.bucket();
        self.limits.requests_per_second * bucket.share(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn an_urgent_call_passes_before_the_calls_already_waiting() {
        let gate = CallGate::new(Limits {
            max_in_flight: 100,
            requests_per_second: 10.0,
            burst: 1,
        });
        drop(gate.enter().await);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..5 {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _pass = gate.enter().await;
                order.lock().unwrap().push(format!("normal {n}"));
            }));
        }
        // The five are waiting for tokens when the urgent call arrives.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (g, o) = (gate.clone(), order.clone());
        tasks.push(tokio::spawn(urgent(async move {
            let _pass = g.enter().await;
            o.lock().unwrap().push("urgent".to_string());
        })));
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 6);
        assert_eq!(order[0], "urgent", "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_is_bounded_by_the_bucket() {
        let gate = CallGate::new(Limits {
            max_in_flight: 100,
            requests_per_second: 10.0,
            burst: 5,
        });
        let start = Instant::now();
        for _ in 0..25 {
            let _p = gate.enter().await;
        }
        // 5 from the burst, 20 more at 10/s: at least 2 s of (virtual) time.
        assert!(start.elapsed() >= Duration::from_millis(1990));
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_calls_never_exceed_the_limit() {
        let gate = CallGate::new(Limits {
            max_in_flight: 3,
            requests_per_second: 1000.0,
            burst: 1000,
        });
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (gate, in_flight, peak) = (gate.clone(), in_flight.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let _p = gate.enter().await;
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_halves_the_rate_which_recovers_without_further_throttles() {
        let gate = CallGate::new(Limits {
            max_in_flight: 100,
            requests_per_second: 100.0,
            burst: 1,
        });
        gate.throttled(None);
        assert!((gate.current_rate() - 50.0).abs() < 1e-9);
        gate.throttled(None);
        assert!((gate.current_rate() - 25.0).abs() < 1e-9);
        for _ in 0..20 {
            gate.throttled(None);
        }
        assert!((gate.current_rate() - 100.0 / 32.0).abs() < 1e-9);
        tokio::time::advance(RECOVERY / 2).await;
        let halfway = gate.current_rate();
        assert!(halfway > 40.0 && halfway < 60.0, "{halfway}");
        tokio::time::advance(RECOVERY).await;
        assert!((gate.current_rate() - 100.0).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_every_new_call_of_the_gate() {
        let gate = CallGate::new(Limits {
            max_in_flight: 100,
            requests_per_second: 1000.0,
            burst: 100,
        });
        let start = Instant::now();
        gate.throttled(Some(Duration::from_secs(3)));
        let _p = gate.enter().await;
        assert!(start.elapsed() >= Duration::from_secs(3));
        // A Retry-After beyond the cap holds the gate only up to the cap.
        let start = Instant::now();
        gate.throttled(Some(Duration::from_secs(3600)));
        let _q = gate.enter().await;
        assert!(start.elapsed() >= MAX_HOLD && start.elapsed() < MAX_HOLD + Duration::from_secs(1));
    }
}
