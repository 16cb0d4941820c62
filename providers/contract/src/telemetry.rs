//! The tracing conventions every provider follows, so that one subscriber (the CLI's
//! `--timings` summary, a JSON log reader) can attribute calls, durations and throttling to a
//! provider without knowing any provider.
//!
//! - Every call to a provider's API holds a [`CallGate`](crate::CallGate) pass, and the pass
//!   carries a [`provider_call`] span (name [`PROVIDER_CALL_SPAN`], fields `provider` and
//!   `gate_wait_ms`, the time the call waited for the gate's slot and rate token) from the moment
//!   the call may start until the pass is dropped: the call's duration, the SDK's own retries
//!   included. The span is created in the caller's context (so it belongs to the run's phase and
//!   action) and never entered, so it can be held across awaits.
//! - Every answer that throttled (HTTP 429, an AWS `Throttling` error) is reported once with
//!   [`throttled`], naming the provider.
//!
//! The spans and events are at `DEBUG`: a service's default `INFO` log does not print a line per
//! call, and a subscriber that counts them enables them for itself.

/// The name of the span around one provider API call.
pub const PROVIDER_CALL_SPAN: &str = "provider_call";

/// The field an event carries when an answer throttled.
pub const THROTTLED_FIELD: &str = "throttled";

/// The span around one call to `provider`'s API, which waited `gate_wait` at the gate.
pub fn provider_call(provider: &'static str, gate_wait: std::time::Duration) -> tracing::Span {
    let gate_wait_ms = gate_wait.as_millis() as u64;
    tracing::debug_span!("provider_call", provider, gate_wait_ms)
}

/// Report that an answer from `provider` throttled.
pub fn throttled(provider: &'static str, retry_after: Option<std::time::Duration>) {
    let retry_after_ms = retry_after.map(|d| d.as_millis() as u64);
    tracing::debug!(provider, throttled = true, retry_after_ms, "throttled");
}
