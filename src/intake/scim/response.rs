//! SCIM responses: the `application/scim+json` content type every body carries.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A body as `application/scim+json`.
pub fn scim_json(body: &Value) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/scim+json"),
        )],
        body.to_string(),
    )
        .into_response()
}
