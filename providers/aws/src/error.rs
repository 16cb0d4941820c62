//! Classification of AWS SDK errors into [`ProviderError`]s.
//!
//! Messages are built from the operation name, the service's error code and message, and (for
//! connection failures) the transport error: never from request or response bodies, so a secret
//! value cannot end up in an error.

use crate::capabilities::PROVIDER;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use closeout_contract::ProviderError;
use std::time::Duration;

/// Error codes AWS services use for throttling.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
];

/// Error codes that mean "the thing named does not exist".
const NOT_FOUND_CODES: &[&str] = &[
    "NoSuchEntity",
    "NoSuchEntityException",
    "ResourceNotFoundException",
];

/// What kind of failure a call had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFailure {
    /// The service answered with an error.
    Service,
    /// The request never got an answer: connection refused, DNS, TLS, I/O.
    Dispatch,
    /// The call timed out.
    Timeout,
    /// The answer could not be parsed.
    Response,
    /// The request could not be built or signed (e.g. no credentials).
    Construction,
}

/// One failed AWS call, with what is needed to classify it.
#[derive(Debug, Clone)]
pub struct CallError {
    pub op: &'static str,
    pub failure: CallFailure,
    pub code: Option<String>,
    pub message: Option<String>,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// Where the call went, for [`ProviderError::Unreachable`].
    pub endpoint: String,
}

impl CallError {
    pub fn from_sdk<E>(op: &'static str, endpoint: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut e = CallError {
            op,
            failure: CallFailure::Service,
            code: None,
            message: None,
            status: None,
            retry_after: None,
            endpoint: endpoint.to_string(),
        };
        match &err {
            SdkError::ServiceError(ctx) => {
                e.code = ctx.err().code().map(str::to_string);
                e.message = ctx.err().message().map(str::to_string);
                e.status = Some(ctx.raw().status().as_u16());
                e.retry_after = ctx
                    .raw()
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
            }
            SdkError::DispatchFailure(d) => {
                e.failure = if d.is_timeout() {
                    CallFailure::Timeout
                } else if d.is_user() {
                    CallFailure::Construction
                } else {
                    CallFailure::Dispatch
                };
                e.message = Some(DisplayErrorContext(&err).to_string());
            }
            SdkError::TimeoutError(_) => {
                e.failure = CallFailure::Timeout;
                e.message = Some(DisplayErrorContext(&err).to_string());
            }
            SdkError::ResponseError(r) => {
                e.failure = CallFailure::Response;
                e.status = Some(r.raw().status().as_u16());
                e.retry_after = r
                    .raw()
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                e.message = Some("the response could not be parsed".into());
            }
            SdkError::ConstructionFailure(_) => {
                e.failure = CallFailure::Construction;
                e.message = Some(DisplayErrorContext(&err).to_string());
            }
            _ => {
                e.failure = CallFailure::Construction;
                e.message = Some(DisplayErrorContext(&err).to_string());
            }
        }
        e
    }

    /// A service error with the given code, for tests.
    #[cfg(test)]
    pub fn service(op: &'static str, status: u16, code: Option<&str>, message: &str) -> Self {
        CallError {
            op,
            failure: CallFailure::Service,
            code: code.map(str::to_string),
            message: Some(message.to_string()),
            status: Some(status),
            retry_after: None,
            endpoint: "http://test".into(),
        }
    }

    /// The named entity does not exist (IAM `NoSuchEntity`, Secrets Manager
    /// `ResourceNotFoundException`).
    pub fn is_not_found(&self) -> bool {
        self.failure == CallFailure::Service
            && (self
                .code
                .as_deref()
                .is_some_and(|c| NOT_FOUND_CODES.contains(&c))
                || (self.code.is_none() && self.status == Some(404)))
    }

    /// The caller may not make this call (`AccessDenied`, HTTP 403): what it would have listed
    /// is unknown, not empty.
    pub fn is_access_denied(&self) -> bool {
        self.failure == CallFailure::Service
            && (self.code.as_deref().is_some_and(|c| {
                matches!(
                    c,
                    "AccessDenied"
                        | "AccessDeniedException"
                        | "UnauthorizedOperation"
                        | "UnauthorizedAccess"
                )
            }) || self.status == Some(403))
    }

    pub fn is_throttling(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| THROTTLING_CODES.contains(&c))
            || self.status == Some(429)
    }

    /// The endpoint answered 5xx without a modelled AWS error: what moto does for an operation it
    /// does not implement.
    pub fn is_unimplemented(&self) -> bool {
        matches!(self.status, Some(500..=599))
            && (self.code.is_none() || self.failure == CallFailure::Response)
            && !self.is_throttling()
    }

    fn describe(&self) -> String {
        let mut out = self.op.to_string();
        if let Some(code) = &self.code {
            out.push_str(": ");
            out.push_str(code);
        }
        if let Some(status) = self.status {
            if self.code.is_none() {
                out.push_str(&format!(": HTTP {status}"));
            }
        }
        if let Some(message) = self.message.as_deref().filter(|m| !m.is_empty()) {
            out.push_str(": ");
            out.push_str(message);
        }
        out
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl From<CallError> for ProviderError {
    fn from(e: CallError) -> Self {
        let message = e.describe();
        if e.is_throttling() {
            return ProviderError::Throttled {
                provider: PROVIDER,
                retry_after: e.retry_after,
                message,
            };
        }
        match e.failure {
            CallFailure::Dispatch | CallFailure::Timeout => ProviderError::Unreachable {
                provider: PROVIDER,
                endpoint: e.endpoint,
                message,
            },
            CallFailure::Construction => ProviderError::Config {
                provider: PROVIDER,
                message,
            },
            CallFailure::Response | CallFailure::Service => match e.status {
                Some(500..=599) => ProviderError::Transient {
                    provider: PROVIDER,
                    message,
                },
                _ if matches!(
                    e.code.as_deref(),
                    Some(
                        "ServiceUnavailable"
                            | "ServiceUnavailableException"
                            | "InternalFailure"
                            | "InternalServiceError"
                            | "InternalServiceErrorException"
                            | "ServiceFailure"
                            | "RequestTimeout"
                            | "RequestTimeoutException"
                    )
                ) =>
                {
                    ProviderError::Transient {
                        provider: PROVIDER,
                        message,
                    }
                }
                _ => ProviderError::Permanent {
                    provider: PROVIDER,
                    message,
                },
            },
        }
    }
}

/// Turn "not found" into `Ok(None)`: for reads where a missing thing is an answer, not a failure.
pub fn found<T>(r: Result<T, CallError>) -> Result<Option<T>, CallError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A permanent error with a message.
pub fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeout_contract::ErrorClass;

    #[test]
    fn throttling_codes_are_throttled() {
        for code in [
            "Throttling",
            "ThrottlingException",
            "TooManyRequestsException",
            "RequestLimitExceeded",
        ] {
            let e: ProviderError = CallError::service("ListUsers", 400, Some(code), "slow").into();
            assert!(
                matches!(e.class(), ErrorClass::Throttled(None)),
                "{code}: {e:?}"
            );
        }
        let mut e = CallError::service("ListUsers", 429, None, "");
        e.retry_after = Some(Duration::from_secs(3));
        assert_eq!(
            ProviderError::from(e).class(),
            ErrorClass::Throttled(Some(Duration::from_secs(3)))
        );
    }

    #[test]
    fn server_errors_are_transient() {
        let e: ProviderError = CallError::service("ListUsers", 503, None, "").into();
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(!e.is_unreachable());
        let e: ProviderError =
            CallError::service("ListUsers", 400, Some("ServiceUnavailable"), "").into();
        assert_eq!(e.class(), ErrorClass::Retryable);
    }

    #[test]
    fn client_errors_are_permanent_and_name_the_operation() {
        let e: ProviderError =
            CallError::service("DeleteUser", 409, Some("DeleteConflict"), "must detach").into();
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(
            e.to_string(),
            "aws: DeleteUser: DeleteConflict: must detach"
        );
    }

    #[test]
    fn connection_failures_are_unreachable() {
        let mut e = CallError::service("GetCallerIdentity", 0, None, "connection refused");
        e.failure = CallFailure::Dispatch;
        e.status = None;
        e.endpoint = "http://127.0.0.1:1".into();
        let p: ProviderError = e.into();
        assert!(p.is_unreachable());
        assert!(p.to_string().contains("http://127.0.0.1:1"), "{p}");
        assert_eq!(p.class(), ErrorClass::Retryable);
    }

    #[test]
    fn not_found_and_unimplemented() {
        assert!(
            CallError::service("GetLoginProfile", 404, Some("NoSuchEntity"), "").is_not_found()
        );
        assert!(
            CallError::service("GetSecretValue", 400, Some("ResourceNotFoundException"), "")
                .is_not_found()
        );
        assert!(!CallError::service("GetUser", 403, Some("AccessDenied"), "").is_not_found());
        assert!(
            CallError::service("ListMFADevices", 403, Some("AccessDenied"), "").is_access_denied()
        );
        assert!(
            CallError::service("ListSecrets", 400, Some("AccessDeniedException"), "")
                .is_access_denied()
        );
        assert!(
            !CallError::service("ListSecrets", 400, Some("ValidationException"), "")
                .is_access_denied()
        );
        assert!(
            CallError::service("ListServiceSpecificCredentials", 500, None, "").is_unimplemented()
        );
        assert!(
            !CallError::service("ListUsers", 500, Some("ServiceFailure"), "").is_unimplemented()
        );
    }
}
