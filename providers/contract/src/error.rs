//! Provider errors, classified so the executor knows whether to retry, wait, give up or move on.

use std::time::Duration;

/// An error from one provider call. Messages never contain secret values: providers build them
/// from identifiers and the remote service's error code/message only.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{provider}: throttled: {message}")]
    Throttled {
        provider: &'static str,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("{provider}: transient error: {message}")]
    Transient {
        provider: &'static str,
        message: String,
    },
    #[error("{provider}: {message}")]
    Permanent {
        provider: &'static str,
        message: String,
    },
    /// The idempotent success: the thing is already in the state the action wanted.
    #[error("{provider}: already done: {message}")]
    AlreadyDone {
        provider: &'static str,
        message: String,
    },
    #[error("{provider}: cannot reach {endpoint}: {message}")]
    Unreachable {
        provider: &'static str,
        endpoint: String,
        message: String,
    },
    #[error("{provider}: configuration error: {message}")]
    Config {
        provider: &'static str,
        message: String,
    },
    #[error("{provider}: not supported: {message}")]
    Unsupported {
        provider: &'static str,
        message: String,
    },
}

/// What the executor does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry with jittered exponential backoff.
    Retryable,
    /// Retry after the provider's `Retry-After`, or backoff when it gave none.
    Throttled(Option<Duration>),
    /// Do not retry: the run fails this action.
    Permanent,
    /// Count as success.
    AlreadyDone,
}

impl ProviderError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Throttled { retry_after, .. } => ErrorClass::Throttled(*retry_after),
            ProviderError::Transient { .. } | ProviderError::Unreachable { .. } => {
                ErrorClass::Retryable
            }
            ProviderError::AlreadyDone { .. } => ErrorClass::AlreadyDone,
            ProviderError::Permanent { .. }
            | ProviderError::Config { .. }
            | ProviderError::Unsupported { .. } => ErrorClass::Permanent,
        }
    }

    pub fn is_unreachable(&self) -> bool {
        matches!(self, ProviderError::Unreachable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let t = ProviderError::Throttled {
            provider: "x",
            retry_after: Some(Duration::from_secs(2)),
            message: "slow down".into(),
        };
        assert_eq!(
            t.class(),
            ErrorClass::Throttled(Some(Duration::from_secs(2)))
        );
        let d = ProviderError::AlreadyDone {
            provider: "x",
            message: "key already deleted".into(),
        };
        assert_eq!(d.class(), ErrorClass::AlreadyDone);
        assert_eq!(d.to_string(), "x: already done: key already deleted");
    }
}

/// `what`, then every cause of `e` (its `source()` chain), joined by `": "`. For transport
/// errors whose own `Display` would name the URL: the causes say why without it.
pub fn with_causes(what: &str, e: &dyn std::error::Error) -> String {
    let mut out = what.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod cause_tests {
    use super::with_causes;

    #[derive(Debug, thiserror::Error)]
    #[error("outer https://host/path")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_follow_without_the_outer_message() {
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(
            with_causes("connection failed", &e),
            "connection failed: connection refused"
        );
    }
}
