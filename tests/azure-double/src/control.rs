//! Double-only routes (no Azure counterpart), under `/_double`, unauthenticated:
//!
//! - `POST /_double/faults` `{"path_prefix": "/v1.0/users", "count": 2, "retry_after_seconds": 1,
//!   "method": "GET", "status": 429, "vault": "kv-name", "query_contains": "$skiptoken"}` — the
//!   next `count` calls whose path starts with `path_prefix` (case-insensitive; `method`
//!   optional; `vault`: only on that vault's data plane; `query_contains`: only calls whose query
//!   string contains it) answer `status` (default 429 with `Retry-After`; another 4xx/5xx as the API's own
//!   error: 403 a permission denied, 404 an API the endpoint lacks).
//! - `DELETE /_double/faults` — drops every pending fault.
//! - `POST /_double/create-delay` `{"milliseconds": 3000}` — from now on a key create is served
//!   that much later, and a certificate create operation on an existing certificate stays
//!   `inProgress` that long (the old version current meanwhile), as with a slow HSM or issuer;
//!   0 (the default) creates at once.
//! - `GET /_double/calls` — `{"calls":[{"method","host","path","query","status","request_id"}]}`, oldest first.
//! - `DELETE /_double/calls` — clears the log.
//! - `POST /_double/users/{user}/authentication/{collection}` — registers an authentication
//!   method a user would register themselves (served by `auth_methods::seed`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::http::json_response;
use crate::state::{App, Fault};

#[derive(Debug, Deserialize)]
struct FaultRequest {
    path_prefix: String,
    count: u32,
    #[serde(default = "default_retry_after")]
    retry_after_seconds: u64,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    vault: Option<String>,
    #[serde(default)]
    query_contains: Option<String>,
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default)]
    after_effect: bool,
}

fn default_status() -> u16 {
    429
}

fn default_retry_after() -> u64 {
    1
}

fn bad(message: String) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": {"code": "InvalidFault", "message": message}}),
    )
}

pub async fn add_fault(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(format!(
                "fault body must be {{\"path_prefix\",\"count\",\"retry_after_seconds\"}}: {e}"
            ))
        }
    };
    if !request.path_prefix.starts_with('/') {
        return bad(format!(
            "path_prefix '{}' must start with '/'",
            request.path_prefix
        ));
    }
    if request.count == 0 {
        return bad("count must be at least 1".into());
    }
    if !(400..=599).contains(&request.status) {
        return bad(format!(
            "status {} must be an error (400-599)",
            request.status
        ));
    }
    let fault = Fault {
        path_prefix: request.path_prefix,
        method: request.method,
        vault: request.vault,
        query_contains: request.query_contains,
        status: request.status,
        remaining: request.count,
        retry_after_seconds: request.retry_after_seconds,
        after_effect: request.after_effect,
    };
    let mut state = app.lock();
    state.faults.push(fault.clone());
    json_response(StatusCode::CREATED, json!(fault))
}

#[derive(Debug, Deserialize)]
struct CreateDelay {
    milliseconds: u64,
}

pub async fn set_create_delay(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match serde_json::from_slice::<CreateDelay>(&body) {
        Ok(d) => {
            app.set_create_delay(std::time::Duration::from_millis(d.milliseconds));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(format!("body must be {{\"milliseconds\": N}}: {e}")),
    }
}

pub async fn clear_faults(State(app): State<Arc<App>>) -> Response {
    app.lock().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

pub async fn calls(State(app): State<Arc<App>>) -> Response {
    let state = app.lock();
    json_response(StatusCode::OK, json!({"calls": state.calls}))
}

pub async fn clear_calls(State(app): State<Arc<App>>) -> Response {
    app.lock().calls.clear();
    StatusCode::NO_CONTENT.into_response()
}
