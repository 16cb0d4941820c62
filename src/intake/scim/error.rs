//! SCIM errors (RFC 7644 §3.12): every failure answers in the error schema, with `status` as a
//! string and a `scimType` where the RFC defines one.

use super::response::scim_json;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The schema URN of every SCIM error response (RFC 7644 §3.12).
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A request that cannot be served, with the status and `scimType` it answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {scim_type:?}: {detail}")]
pub struct ScimError {
    /// The HTTP status answered.
    pub status: StatusCode,
    /// The RFC 7644 `scimType` (`invalidValue`, `uniqueness`, ...), where the RFC defines one for
    /// the failure.
    pub scim_type: Option<&'static str>,
    /// A human-readable explanation for the client; never contains a secret.
    pub detail: String,
}

impl ScimError {
    /// An error with this status, `scimType` and detail.
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    /// 400 `invalidValue`: a value is missing, of the wrong type or not acceptable.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
    }
    /// 400 `invalidSyntax`: the request body is not valid JSON or not the expected structure.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidSyntax"), detail)
    }
    /// 400 `invalidFilter`: the filter is malformed or not supported.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidFilter"), detail)
    }
    /// 400 `invalidPath`: a PATCH `path` is malformed or names no attribute of the schema.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidPath"), detail)
    }
    /// 400 `noTarget`: a PATCH `path` matched nothing to operate on.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("noTarget"), detail)
    }
    /// 400 `mutability`: the change is not allowed for the attribute (read-only, or required and
    /// removed).
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("mutability"), detail)
    }
    /// 409 `uniqueness`: another User already has the value (e.g. the `userName`).
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
    }
    /// 404: no such resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }
    /// 401: the request has no valid bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            None,
            "a valid bearer token is required",
        )
    }
    /// 503: the change could not be kept (e.g. the event queue refused it); the client should
    /// retry.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, None, detail)
    }
    /// 500: a failure on the server's side, not the client's (the store, a lost worker).
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, detail)
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(m)) = (self.scim_type, body.as_object_mut()) {
            m.insert("scimType".into(), t.into());
        }
        let mut resp = (self.status, scim_json(&body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"closeout-scim\""),
            );
        }
        resp
    }
}
