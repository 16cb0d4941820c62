//! A user's authentication methods under `/v1.0/users/{id}/authentication`, in the shapes
//! Microsoft Graph v1.0 documents:
//!
//! - `GET .../methods`: every method, each with its `@odata.type`; the password method is always
//!   there (id `28c10230-6103-485e-b985-444c60001490`).
//! - `GET .../{collection}`, `GET/DELETE .../{collection}/{id}` for `phoneMethods`,
//!   `emailMethods`, `fido2Methods`, `microsoftAuthenticatorMethods`,
//!   `temporaryAccessPassMethods`, `softwareOathMethods`, `windowsHelloForBusinessMethods`;
//!   `GET .../passwordMethods` (the password method cannot be deleted: 400).
//! - `POST .../phoneMethods` `{"phoneNumber","phoneType"}` (`mobile`, `alternateMobile`,
//!   `office`; one per type, with Graph's fixed ids), `POST .../emailMethods`
//!   `{"emailAddress"}`, `POST .../temporaryAccessPassMethods` `{"startDateTime",
//!   "lifetimeInMinutes","isUsableOnce"}` (one per user; the pass is shown only in the answer).
//!
//! FIDO2 keys, Authenticator apps, software OATH tokens and Windows Hello cannot be registered
//! by an administrator through Graph: the double-only `POST /_double/users/{id}/authentication/{collection}`
//! adds one (body: the method's documented properties, e.g. `{"displayName","model","aaGuid"}`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::http::{json_response, no_content, now_graph, page, ApiError, ApiResult, Flavor, Req};
use crate::state::App;

/// The password method's fixed id.
pub const PASSWORD_METHOD_ID: &str = "28c10230-6103-485e-b985-444c60001490";
/// The email method's fixed id.
const EMAIL_METHOD_ID: &str = "3ddfcfc8-9383-446f-83cc-3ab9be4be18f";

/// (collection, `@odata.type` suffix, created through Graph by an administrator)
const COLLECTIONS: &[(&str, &str, bool)] = &[
    ("phoneMethods", "phoneAuthenticationMethod", true),
    ("emailMethods", "emailAuthenticationMethod", true),
    (
        "temporaryAccessPassMethods",
        "temporaryAccessPassAuthenticationMethod",
        true,
    ),
    ("fido2Methods", "fido2AuthenticationMethod", false),
    (
        "microsoftAuthenticatorMethods",
        "microsoftAuthenticatorAuthenticationMethod",
        false,
    ),
    (
        "softwareOathMethods",
        "softwareOathAuthenticationMethod",
        false,
    ),
    (
        "windowsHelloForBusinessMethods",
        "windowsHelloForBusinessAuthenticationMethod",
        false,
    ),
];

fn collection(segment: &str) -> Option<(&'static str, &'static str, bool)> {
    COLLECTIONS
        .iter()
        .copied()
        .find(|(c, _, _)| c.eq_ignore_ascii_case(segment))
}

fn phone_id(phone_type: &str) -> Option<&'static str> {
    match phone_type {
        "mobile" => Some("3179e48a-750b-4051-897c-87b9720928f7"),
        "alternateMobile" => Some("b6332ec1-7057-4abe-9331-3d72feddfe41"),
        "office" => Some("e37fc753-ff3b-4958-9484-eaa9425c82bc"),
        _ => None,
    }
}

/// One registered method: its collection and its properties (with `id`).
#[derive(Debug, Clone)]
struct AuthMethod {
    collection: &'static str,
    odata_type: &'static str,
    properties: Map<String, Value>,
}

impl AuthMethod {
    fn id(&self) -> &str {
        self.properties
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    fn to_json(&self, with_type: bool) -> Value {
        let mut m = self.properties.clone();
        // The pass itself is shown once, when it is created.
        m.remove("temporaryAccessPass");
        if with_type {
            m.insert(
                "@odata.type".into(),
                json!(format!("#microsoft.graph.{}", self.odata_type)),
            );
        }
        Value::Object(m)
    }
}

#[derive(Default)]
pub struct AuthMethodsState {
    by_user: HashMap<String, Vec<AuthMethod>>,
}

impl AuthMethodsState {
    /// Drops a deleted user's methods.
    pub fn forget(&mut self, user_id: &str) {
        self.by_user.remove(user_id);
    }
}

fn password_method(created: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.passwordAuthenticationMethod",
        "id": PASSWORD_METHOD_ID,
        "password": null,
        "createdDateTime": created,
    })
}

/// `/v1.0/users/{user}/authentication/...`: `rest` follows `authentication`; `user_id` is the
/// user's object id (already resolved).
pub fn handle(app: &App, req: &Req, user_id: &str, rest: &[&str]) -> ApiResult {
    let is = |s: &str, name: &str| s.eq_ignore_ascii_case(name);
    match (&req.method, rest) {
        (&Method::GET, [c]) if is(c, "methods") => {
            let state = app.lock();
            let mut items = vec![password_method("2020-01-01T00:00:00Z")];
            items.extend(
                state
                    .auth_methods
                    .by_user
                    .get(user_id)
                    .into_iter()
                    .flatten()
                    .map(|m| m.to_json(true)),
            );
            drop(state);
            let body = page(
                app,
                req,
                items,
                Flavor::Graph,
                Some("users('id')/authentication/methods"),
            )?;
            Ok(json_response(StatusCode::OK, body))
        }
        (&Method::GET, [c]) if is(c, "passwordMethods") => {
            let body = page(
                app,
                req,
                vec![password_method("2020-01-01T00:00:00Z")],
                Flavor::Graph,
                Some("users('id')/authentication/passwordMethods"),
            )?;
            Ok(json_response(StatusCode::OK, body))
        }
        (&Method::GET, [c, id]) if is(c, "passwordMethods") || is(c, "methods") => {
            if id.eq_ignore_ascii_case(PASSWORD_METHOD_ID) {
                return Ok(json_response(
                    StatusCode::OK,
                    password_method("2020-01-01T00:00:00Z"),
                ));
            }
            let state = app.lock();
            state
                .auth_methods
                .by_user
                .get(user_id)
                .and_then(|ms| ms.iter().find(|m| m.id() == *id))
                .map(|m| json_response(StatusCode::OK, m.to_json(true)))
                .ok_or_else(|| ApiError::graph_not_found(id))
        }
        (&Method::DELETE, [c, _]) if is(c, "passwordMethods") => Err(ApiError::graph_bad_request(
            "The password authentication method cannot be deleted.",
        )),
        (&Method::GET, [c]) => {
            let (coll, _, _) = collection(c).ok_or_else(|| unknown(req))?;
            let items: Vec<Value> = app
                .lock()
                .auth_methods
                .by_user
                .get(user_id)
                .into_iter()
                .flatten()
                .filter(|m| m.collection == coll)
                .map(|m| m.to_json(false))
                .collect();
            let body = page(
                app,
                req,
                items,
                Flavor::Graph,
                Some(&format!("users('id')/authentication/{coll}")),
            )?;
            Ok(json_response(StatusCode::OK, body))
        }
        (&Method::GET, [c, id]) => {
            let (coll, _, _) = collection(c).ok_or_else(|| unknown(req))?;
            let state = app.lock();
            state
                .auth_methods
                .by_user
                .get(user_id)
                .and_then(|ms| ms.iter().find(|m| m.collection == coll && m.id() == *id))
                .map(|m| json_response(StatusCode::OK, m.to_json(false)))
                .ok_or_else(|| ApiError::graph_not_found(id))
        }
        (&Method::DELETE, [c, id]) => {
            let (coll, _, _) = collection(c).ok_or_else(|| unknown(req))?;
            let mut state = app.lock();
            let methods = state
                .auth_methods
                .by_user
                .entry(user_id.to_string())
                .or_default();
            let before = methods.len();
            methods.retain(|m| !(m.collection == coll && m.id() == *id));
            if methods.len() == before {
                return Err(ApiError::graph_not_found(id));
            }
            Ok(no_content())
        }
        (&Method::POST, [c]) => {
            let (coll, odata_type, by_admin) = collection(c).ok_or_else(|| unknown(req))?;
            if !by_admin {
                return Err(ApiError::graph(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Request_BadRequest",
                    format!(
                        "{coll} cannot be created by an administrator; the user registers them."
                    ),
                ));
            }
            let body: Map<String, Value> = req.json(Flavor::Graph)?;
            let method = admin_method(coll, odata_type, body)?;
            add(app, user_id, method, true)
        }
        _ => Err(unknown(req)),
    }
}

fn unknown(req: &Req) -> ApiError {
    ApiError::graph(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!(
            "Resource not found for the segment '{}' (method {}).",
            req.segments.last().map(String::as_str).unwrap_or(""),
            req.method
        ),
    )
}

fn text(body: &Map<String, Value>, name: &str) -> Option<String> {
    body.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// A method an administrator creates through Graph, checked as Graph checks it.
fn admin_method(
    coll: &'static str,
    odata_type: &'static str,
    body: Map<String, Value>,
) -> Result<AuthMethod, ApiError> {
    let now = now_graph();
    let properties = match coll {
        "phoneMethods" => {
            let number = text(&body, "phoneNumber").ok_or_else(|| {
                ApiError::graph_bad_request("Invalid value specified for property 'phoneNumber'.")
            })?;
            let phone_type = text(&body, "phoneType").unwrap_or_default();
            let id = phone_id(&phone_type).ok_or_else(|| {
                ApiError::graph_bad_request(format!(
                    "Invalid value specified for property 'phoneType': '{phone_type}'."
                ))
            })?;
            json!({"id": id, "phoneNumber": number, "phoneType": phone_type, "smsSignInState": "notAllowedByPolicy"})
        }
        "emailMethods" => {
            let address = text(&body, "emailAddress").ok_or_else(|| {
                ApiError::graph_bad_request("Invalid value specified for property 'emailAddress'.")
            })?;
            json!({"id": EMAIL_METHOD_ID, "emailAddress": address})
        }
        _ => {
            // temporaryAccessPassMethods
            let lifetime = body
                .get("lifetimeInMinutes")
                .and_then(Value::as_u64)
                .unwrap_or(60);
            if !(10..=43200).contains(&lifetime) {
                return Err(ApiError::graph_bad_request(
                    "Invalid value specified for property 'lifetimeInMinutes'.",
                ));
            }
            let bytes: [u8; 12] = rand::random();
            json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "temporaryAccessPass": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
                "createdDateTime": now,
                "startDateTime": text(&body, "startDateTime").unwrap_or_else(|| now.clone()),
                "lifetimeInMinutes": lifetime,
                "isUsableOnce": body.get("isUsableOnce").and_then(Value::as_bool).unwrap_or(false),
                "isUsable": true,
                "methodUsabilityReason": "EnabledByPolicy",
            })
        }
    };
    let Value::Object(properties) = properties else {
        return Err(ApiError::graph_bad_request("bad method"));
    };
    Ok(AuthMethod {
        collection: coll,
        odata_type,
        properties,
    })
}

/// Registers `method` for the user; the first of a phone type, the one email and the one pass.
fn add(app: &App, user_id: &str, method: AuthMethod, with_context: bool) -> ApiResult {
    let mut state = app.lock();
    let methods = state
        .auth_methods
        .by_user
        .entry(user_id.to_string())
        .or_default();
    let clash = methods.iter().any(|m| {
        m.collection == method.collection
            && (m.id() == method.id() || method.collection == "temporaryAccessPassMethods")
    });
    if clash {
        return Err(ApiError::graph_bad_request(format!(
            "A method of this kind ({}) is already registered for the user.",
            method.collection
        )));
    }
    // The answer is the only place a new pass is shown.
    let mut value = Value::Object(method.properties.clone());
    methods.push(method.clone());
    if let (true, Value::Object(m)) = (with_context, &mut value) {
        m.insert(
            "@odata.context".into(),
            json!(format!(
                "{}/v1.0/$metadata#users('{user_id}')/authentication/{}/$entity",
                app.base_url, method.collection
            )),
        );
    }
    Ok(json_response(StatusCode::CREATED, value))
}

/// `POST /_double/users/{user}/authentication/{collection}`: registers a method a user would
/// register themselves (FIDO2 key, Authenticator app, software OATH token, Windows Hello).
pub async fn seed(
    State(app): State<Arc<App>>,
    Path((user, coll)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let result = (|| {
        let user_id = app
            .lock()
            .graph
            .user_object_id(&user)
            .ok_or_else(|| ApiError::graph_not_found(&user))?;
        let (coll, odata_type, _) = collection(&coll).ok_or_else(|| {
            ApiError::graph_bad_request(format!(
                "unknown authentication method collection '{coll}'"
            ))
        })?;
        let mut properties: Map<String, Value> = if body.is_empty() {
            Map::new()
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::graph_bad_request(format!("body must be a JSON object: {e}"))
            })?
        };
        let method = if matches!(
            coll,
            "phoneMethods" | "emailMethods" | "temporaryAccessPassMethods"
        ) {
            admin_method(coll, odata_type, properties)?
        } else {
            properties.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
            properties
                .entry("createdDateTime")
                .or_insert_with(|| json!(now_graph()));
            AuthMethod {
                collection: coll,
                odata_type,
                properties,
            }
        };
        add(&app, &user_id, method, false)
    })();
    result.unwrap_or_else(axum::response::IntoResponse::into_response)
}
