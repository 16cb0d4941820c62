//! Data-plane failures as [`CallError`]: the status, Key Vault's error code and message (from the
//! response's error body, never anything else of it) and `Retry-After` — never a request or
//! response body, which may carry a secret value.

use crate::http::CallError;
use azure_core::error::ErrorKind;
use azure_core::http::headers::RETRY_AFTER;
use serde::Deserialize;
use std::time::Duration;

/// Maps an SDK error to [`CallError`]: status, Key Vault's error code and message (from the
/// response's error body, never anything else of it), and `Retry-After`.
pub(super) fn call_error(method: &'static str, path: String, e: &azure_core::Error) -> CallError {
    #[derive(Deserialize, Default)]
    struct Envelope {
        #[serde(default)]
        error: Body,
    }
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let body = raw_response
                .as_ref()
                .and_then(|r| r.body().json::<Envelope>().ok())
                .unwrap_or_default()
                .error;
            let retry_after = raw_response
                .as_ref()
                .and_then(|r| r.headers().get_optional_str(&RETRY_AFTER))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let code = if body.code.is_empty() {
                error_code.clone().unwrap_or_default()
            } else {
                body.code
            };
            CallError {
                method,
                path,
                status: Some(u16::from(*status)),
                code,
                message: body.message,
                retry_after,
            }
        }
        // A parse error can quote the text it choked on, which may be a secret value; the SDK's
        // challenge errors (same kind) quote only the `WWW-Authenticate` header, and are kept.
        ErrorKind::DataConversion => CallError {
            method,
            path,
            status: None,
            code: "DataConversion".into(),
            message: match e.to_string() {
                m if m.contains("challenge") => m,
                _ => "a request or answer body could not be converted".into(),
            },
            retry_after: None,
        },
        kind => CallError {
            method,
            path,
            status: None,
            code: kind.to_string(),
            message: closeout_contract::with_causes(&e.to_string(), e),
            retry_after: None,
        },
    }
}

/// A refusal decided here, before any call (shaped like the service's own 403).
pub(super) fn refused(
    method: &'static str,
    path: String,
    code: &str,
    message: String,
) -> CallError {
    CallError {
        method,
        path,
        status: Some(403),
        code: code.into(),
        message,
        retry_after: None,
    }
}

/// A wait that ran out before the service finished (no answer to classify: retryable).
pub(super) fn timed_out(method: &'static str, path: String, message: String) -> CallError {
    CallError {
        method,
        path,
        status: None,
        code: "timeout".into(),
        message,
        retry_after: None,
    }
}

/// An answer without the id the call should have returned.
pub(super) fn missing_id(method: &'static str, path: String) -> CallError {
    CallError {
        method,
        path,
        status: None,
        code: "response".into(),
        message: "the answer carried no id with a version".into(),
        retry_after: None,
    }
}
