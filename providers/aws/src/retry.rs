//! How the SDK clients retry: the shared [`RetryPolicy`] turned into the SDK's standard retry
//! configuration, plus a retry classifier that makes the SDK honour `Retry-After`.
//!
//! The SDK's standard retry backs off on its own schedule and ignores a plain HTTP `Retry-After`
//! header (it reads only `x-amz-retry-after`), and it does not count a bare 429 without a
//! modelled throttling code as retryable. [`RetryAfterClassifier`] runs after the SDK's own
//! classifiers and (a) marks 429 and 5xx answers retryable when nothing else did, (b) attaches
//! the header's delay to the verdict, which the standard strategy then waits (up to `cap_ms`).

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason,
};
use aws_smithy_types::retry::ErrorKind;
use closeout_contract::RetryPolicy;
use std::time::Duration;

/// The SDK retry configuration of a policy: its attempts, base and cap.
pub fn retry_config(policy: &RetryPolicy) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(policy.max_attempts)
        .with_initial_backoff(Duration::from_millis(policy.base_ms))
        .with_max_backoff(Duration::from_millis(policy.cap_ms))
}

/// The SDK timeout configuration of a policy: no operation, retries included, runs past the
/// deadline.
pub fn timeout_config(policy: &RetryPolicy) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_timeout(Duration::from_millis(policy.deadline_ms))
        .build()
}

/// The delay an HTTP `Retry-After` header asks for (whole seconds; the HTTP-date form is not
/// used by the services Closeout calls).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Honours `Retry-After` and retries bare 429s and 5xxs (see the module docs); tells the
/// provider's gate of every throttle, so the provider's other calls slow down too.
#[derive(Debug, Clone)]
pub struct RetryAfterClassifier {
    /// The gates a throttle answered to this client slows (its API family's; every Secrets
    /// Manager family for the Secrets Manager client, whose answers do not say the family).
    pub gates: Vec<closeout_contract::CallGate>,
}

impl RetryAfterClassifier {
    /// The verdict for an answer with `status` and `retry_after`, given the verdict of the
    /// classifiers that ran before.
    pub fn verdict(
        status: u16,
        retry_after: Option<Duration>,
        previous: &RetryAction,
    ) -> RetryAction {
        let kind = match previous {
            RetryAction::RetryIndicated(RetryReason::RetryableError {
                retry_after: Some(_),
                ..
            }) => return RetryAction::NoActionIndicated,
            RetryAction::RetryIndicated(RetryReason::RetryableError { kind, .. }) => Some(*kind),
            _ => None,
        };
        let fresh = kind.is_none();
        let kind = kind.or(match status {
            429 => Some(ErrorKind::ThrottlingError),
            500..=599 => Some(ErrorKind::ServerError),
            _ => None,
        });
        match (kind, retry_after) {
            (Some(kind), Some(after)) => {
                RetryAction::retryable_error_with_explicit_delay(kind, after)
            }
            (Some(kind), None) if fresh => RetryAction::retryable_error(kind),
            _ => RetryAction::NoActionIndicated,
        }
    }
}

impl ClassifyRetry for RetryAfterClassifier {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        self.classify_retry_v2(ctx, &RetryAction::NoActionIndicated)
    }

    fn classify_retry_v2(&self, ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(parse_retry_after);
        let throttling = status == 429
            || matches!(
                previous,
                RetryAction::RetryIndicated(RetryReason::RetryableError {
                    kind: ErrorKind::ThrottlingError,
                    ..
                })
            );
        if throttling {
            for gate in &self.gates {
                gate.throttled(retry_after);
            }
        }
        Self::verdict(status, retry_after, previous)
    }

    fn name(&self) -> &'static str {
        "closeout-retry-after"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_attached_and_bare_429s_and_5xxs_are_retried() {
        let none = RetryAction::NoActionIndicated;
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            RetryAfterClassifier::verdict(429, secs(2), &none),
            RetryAction::retryable_error_with_explicit_delay(
                ErrorKind::ThrottlingError,
                Duration::from_secs(2)
            )
        );
        assert_eq!(
            RetryAfterClassifier::verdict(503, None, &none),
            RetryAction::retryable_error(ErrorKind::ServerError)
        );
        assert_eq!(RetryAfterClassifier::verdict(400, secs(2), &none), none);
        assert_eq!(RetryAfterClassifier::verdict(200, None, &none), none);
        // An earlier verdict keeps its kind and gains the delay; one with a delay is kept.
        let throttled = RetryAction::throttling_error();
        assert_eq!(
            RetryAfterClassifier::verdict(400, secs(3), &throttled),
            RetryAction::retryable_error_with_explicit_delay(
                ErrorKind::ThrottlingError,
                Duration::from_secs(3)
            )
        );
        assert_eq!(RetryAfterClassifier::verdict(400, None, &throttled), none);
        let delayed = RetryAction::retryable_error_with_explicit_delay(
            ErrorKind::ServerError,
            Duration::ZERO,
        );
        assert_eq!(RetryAfterClassifier::verdict(503, secs(1), &delayed), none);
        assert_eq!(parse_retry_after(" 7 "), secs(7));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn the_sdk_config_follows_the_policy() {
        let p = RetryPolicy {
            max_attempts: 4,
            base_ms: 50,
            cap_ms: 9_000,
            deadline_ms: 30_000,
        };
        let r = retry_config(&p);
        assert_eq!(r.max_attempts(), 4);
        assert_eq!(r.initial_backoff(), Duration::from_millis(50));
        assert_eq!(r.max_backoff(), Duration::from_millis(9_000));
        assert_eq!(
            timeout_config(&p).operation_timeout(),
            Some(Duration::from_secs(30))
        );
    }
}
