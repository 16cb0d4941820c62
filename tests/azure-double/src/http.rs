//! Plumbing shared by every route: the router, the call log and fault middleware, the parsed
//! request, error bodies in ARM's and Graph's shapes, and paging.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::state::{App, CallRecord, Fault};

/// Which API family a route belongs to; decides the error body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Arm,
    Graph,
}

/// An error answer, rendered as `{"error":{"code":..,"message":..}}` (plus Graph's `innerError`).
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub flavor: Flavor,
    pub www_authenticate: Option<String>,
}

impl ApiError {
    pub fn arm(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            flavor: Flavor::Arm,
            www_authenticate: None,
        }
    }

    pub fn graph(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            flavor: Flavor::Graph,
            www_authenticate: None,
        }
    }

    pub fn new(flavor: Flavor, status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        match flavor {
            Flavor::Arm => Self::arm(status, code, message),
            Flavor::Graph => Self::graph(status, code, message),
        }
    }

    /// Graph's 404 for a missing object.
    pub fn graph_not_found(id: &str) -> Self {
        Self::graph(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub fn graph_bad_request(message: impl Into<String>) -> Self {
        Self::graph(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.flavor {
            Flavor::Arm => json!({"error": {"code": self.code, "message": self.message}}),
            Flavor::Graph => json!({"error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": now_graph(),
                    "request-id": uuid::Uuid::new_v4().to_string(),
                    "client-request-id": uuid::Uuid::new_v4().to_string(),
                }
            }}),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(challenge) = self.www_authenticate {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert("www-authenticate", value);
            }
        }
        response
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub fn json_response(status: StatusCode, value: Value) -> Response {
    (status, axum::Json(value)).into_response()
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Graph timestamps: `2024-01-01T00:00:00Z`.
pub fn now_graph() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// ARM timestamps: `2024-01-01T00:00:00.0000000Z`.
pub fn now_arm() -> String {
    // chrono has no 7-digit fraction; ARM prints 100 ns ticks, so pad microseconds.
    format!("{}0Z", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f"))
}

/// One request as the route handlers see it.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    /// The path as sent (still percent-encoded).
    pub path: String,
    /// Path segments, percent-decoded, empty ones dropped.
    pub segments: Vec<String>,
    /// Query pairs, decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    pub body: Bytes,
    /// The caller's identity (the token's client id).
    pub caller: String,
}

impl Req {
    pub fn new(method: Method, uri: &Uri, body: Bytes, caller: String) -> Result<Self, String> {
        let path = uri.path().to_string();
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| format!("path segment '{s}' is not valid UTF-8"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let query = match uri.query() {
            Some(q) => serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .map_err(|e| format!("malformed query string: {e}"))?,
            None => Vec::new(),
        };
        Ok(Self {
            method,
            path,
            segments,
            query,
            body,
            caller,
        })
    }

    /// A query parameter, name matched case-insensitively (OData system options are).
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; malformed JSON or a wrong shape is a 400 in the flavor's words.
    pub fn json<T: DeserializeOwned>(&self, flavor: Flavor) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.is_empty() {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| match flavor {
            Flavor::Arm => ApiError::arm(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: '{e}'."),
            ),
            Flavor::Graph => ApiError::graph(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format. ({e})"
                ),
            ),
        })
    }
}

/// Cuts `items` into the page the request asks for (`$top`, `$skiptoken`) and renders the list
/// body: ARM `{"value":[..],"nextLink":..}` or Graph
/// `{"@odata.context":..,"value":[..],"@odata.nextLink":..}`. Links are absolute.
pub fn page(
    app: &App,
    req: &Req,
    items: Vec<Value>,
    flavor: Flavor,
    odata_context: Option<&str>,
) -> Result<Value, ApiError> {
    let bad = |message: String| match flavor {
        Flavor::Arm => ApiError::arm(
            StatusCode::BAD_REQUEST,
            "InvalidQueryParameterValue",
            message,
        ),
        Flavor::Graph => ApiError::graph(StatusCode::BAD_REQUEST, "Request_BadRequest", message),
    };
    let size = match req.q("$top") {
        Some(top) => match top.parse::<usize>() {
            Ok(n) if (1..=999).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "Invalid value '{top}' for query parameter '$top'."
                )))
            }
        },
        None => app.config.page_size,
    };
    let offset = match req.q("$skiptoken") {
        Some(token) => token
            .strip_prefix("dbl-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                bad(format!(
                    "Invalid value '{token}' for query parameter '$skiptoken'."
                ))
            })?,
        None => 0,
    };
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(offset).take(size).collect();
    let next = if offset + size < total {
        let mut pairs: Vec<(String, String)> = req
            .query
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
            .cloned()
            .collect();
        let key = match flavor {
            Flavor::Arm => "$skipToken",
            Flavor::Graph => "$skiptoken",
        };
        pairs.push((key.to_string(), format!("dbl-{}", offset + size)));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        Some(format!("{}{}?{}", app.base_url, req.path, query))
    } else {
        None
    };
    let mut body = serde_json::Map::new();
    if let Some(context) = odata_context {
        body.insert(
            "@odata.context".into(),
            Value::String(format!("{}/v1.0/$metadata#{context}", app.base_url)),
        );
    }
    body.insert("value".into(), Value::Array(value));
    if let Some(next) = next {
        let key = match flavor {
            Flavor::Arm => "nextLink",
            Flavor::Graph => "@odata.nextLink",
        };
        body.insert(key.into(), Value::String(next));
    }
    Ok(Value::Object(body))
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/_double/faults",
            post(crate::control::add_fault).delete(crate::control::clear_faults),
        )
        .route(
            "/_double/create-delay",
            post(crate::control::set_create_delay),
        )
        .route(
            "/_double/calls",
            get(crate::control::calls).delete(crate::control::clear_calls),
        )
        .route(
            "/_double/users/{user}/authentication/{collection}",
            post(crate::auth_methods::seed),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(crate::auth::token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(crate::auth::openid_configuration),
        )
        .route(
            "/common/discovery/instance",
            get(crate::auth::instance_discovery),
        )
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            crate::keyvault_data::by_host,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), log_and_faults))
        .with_state(app)
}

/// An injected error in the API's own words: a permission denied (403) as ARM
/// (`AuthorizationFailed`), Graph (`Authorization_RequestDenied`) or Key Vault (`Forbidden`)
/// says it; an API the endpoint lacks (404) as ARM (`InvalidResourceType`) or Graph
/// (`Request_ResourceNotFound`) does; anything else with a generic code.
fn injected_error(flavor: Flavor, data_plane: bool, status: u16) -> ApiError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, message) = match (status.as_u16(), flavor, data_plane) {
        (403, _, true) => (
            "Forbidden",
            "Caller is not authorized to perform action on resource (injected by the double).",
        ),
        (403, Flavor::Arm, false) => (
            "AuthorizationFailed",
            "The client does not have authorization to perform action over scope (injected by the double).",
        ),
        (403, Flavor::Graph, _) => (
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation (injected by the double).",
        ),
        (404, Flavor::Arm, _) => (
            "InvalidResourceType",
            "The resource type could not be found in the namespace for api version (injected by the double).",
        ),
        (404, Flavor::Graph, _) => (
            "Request_ResourceNotFound",
            "Resource not found for the segment (injected by the double).",
        ),
        _ => ("InjectedFault", "An error injected by the double."),
    };
    ApiError::new(flavor, status, code, message)
}

/// Records every call (method, vault host for the data plane, path, query, status; never bodies) and answers 429 for calls
/// that match an injected fault. `/_double` routes are neither logged nor faulted.
async fn log_and_faults(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let host = crate::keyvault_data::vault_host(&app, request.headers());
    if path.starts_with("/_double") {
        return next.run(request).await;
    }
    let flavor = flavor_of(&path);
    let fault = app.take_fault(&method, &path, query.as_deref(), host.as_deref());
    let mut response = match fault {
        Some(fault) => {
            if fault.after_effect {
                // The service acts; the client never hears of it.
                let _lost = next.run(request).await;
            }
            fault_response(flavor, host.is_some(), &fault)
        }
        None => next.run(request).await,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        let name = match flavor {
            Flavor::Arm => "x-ms-request-id",
            Flavor::Graph => "request-id",
        };
        response.headers_mut().insert(name, v);
    }
    app.record_call(CallRecord {
        method: method.to_string(),
        host,
        path,
        query,
        status: response.status().as_u16(),
        request_id,
    });
    response
}

/// The answer an injected fault gives: 429 with `Retry-After`, or the status's error body.
fn fault_response(flavor: Flavor, data_plane: bool, fault: &Fault) -> Response {
    if fault.status != 429 {
        return injected_error(flavor, data_plane, fault.status).into_response();
    }
    let err = ApiError::new(
        flavor,
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Too many requests. Please retry after the interval in the Retry-After header (injected by the double).",
    );
    let mut response = err.into_response();
    if let Ok(v) = HeaderValue::from_str(&fault.retry_after_seconds.to_string()) {
        response.headers_mut().insert("retry-after", v);
    }
    response
}

fn flavor_of(path: &str) -> Flavor {
    if path == "/v1.0" || path.starts_with("/v1.0/") {
        Flavor::Graph
    } else {
        Flavor::Arm
    }
}

async fn dispatch(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let flavor = flavor_of(uri.path());
    let caller = match crate::auth::authenticate(&app, &headers, flavor) {
        Ok(caller) => caller,
        Err(err) => return err.into_response(),
    };
    let req = match Req::new(method, &uri, body, caller) {
        Ok(req) => req,
        Err(message) => {
            let code = match flavor {
                Flavor::Arm => "InvalidRequestUri",
                Flavor::Graph => "Request_BadRequest",
            };
            return ApiError::new(flavor, StatusCode::BAD_REQUEST, code, message).into_response();
        }
    };
    let result = match flavor {
        Flavor::Graph => crate::graph::handle(&app, &req),
        Flavor::Arm => crate::arm::handle(&app, &req),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}
