//! Bounded concurrency and a token-bucket rate limit for every call a provider makes.

use crate::telemetry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

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
    limits: Limits,
    provider: &'static str,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
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
            })),
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
    pub async fn enter(&self) -> Pass {
        let arrived = Instant::now();
        let permit = Arc::clone(&self.semaphore)
            .acquire_owned()
            .await
            .expect("the gate's semaphore is never closed");
        loop {
            let wait = {
                let mut bucket = self.bucket.lock().await;
                let now = Instant::now();
                let elapsed = now.duration_since(bucket.last).as_secs_f64();
                bucket.last = now;
                bucket.tokens = (bucket.tokens + elapsed * self.limits.requests_per_second)
                    .min(f64::from(self.limits.burst));
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    None
                } else {
                    let missing = 1.0 - bucket.tokens;
                    Some(Duration::from_secs_f64(
                        missing / self.limits.requests_per_second,
                    ))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
}
