//! Provider errors, classified so the executor knows whether to retry, wait, give up or move on.

use std::time::Duration;

/// An error from one provider call. Messages never contain secret values: providers build them
/// from identifiers and the remote service's error code/message only.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{provider}: throttled: {message}")]
    /// The provider asked Closeout to slow down (HTTP 429, `Throttling`).
    Throttled {
        /// The provider's name.
        provider: &'static str,
        /// The wait the provider asked for, when it gave one (`Retry-After`).
        retry_after: Option<Duration>,
        /// What the provider said.
        message: String,
    },
    #[error("{provider}: transient error: {message}")]
    /// A failure worth retrying (5xx, a reset connection, a timeout).
    Transient {
        /// The provider's name.
        provider: &'static str,
        /// What went wrong.
        message: String,
    },
    #[error("{provider}: {message}")]
    /// A failure retrying cannot fix (403, 400, a missing object that must exist).
    Permanent {
        /// The provider's name.
        provider: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The idempotent success: the thing is already in the state the action wanted.
    #[error("{provider}: already done: {message}")]
    AlreadyDone {
        /// The provider's name.
        provider: &'static str,
        /// What was already so.
        message: String,
    },
    #[error("{provider}: cannot reach {endpoint}: {message}")]
    /// The endpoint did not answer.
    Unreachable {
        /// The provider's name.
        provider: &'static str,
        /// Where Closeout tried to reach it.
        endpoint: String,
        /// Why (connection refused, DNS, TLS), never a secret.
        message: String,
    },
    #[error("{provider}: configuration error: {message}")]
    /// The configuration is wrong (a missing credential, an invalid value).
    Config {
        /// The provider's name.
        provider: &'static str,
        /// What is wrong.
        message: String,
    },
    #[error("{provider}: not supported: {message}")]
    /// The provider cannot do this (a verb it lacks, an API the endpoint does not serve).
    Unsupported {
        /// The provider's name.
        provider: &'static str,
        /// What it cannot do.
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
    /// What the executor does with this error.
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

    /// True when the endpoint did not answer.
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
