//! Microsoft identity platform v2 endpoints as `azure_identity`'s `ClientSecretCredential` (and
//! MSAL) call them, and the bearer-token check every ARM and Graph route makes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::http::{json_response, ApiError, Flavor};
use crate::state::{App, IssuedToken};

/// Lifetime of issued tokens, as Entra ID reports it.
pub const TOKEN_LIFETIME_SECONDS: u64 = 3599;

pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
];
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
/// Real Key Vault's audience; valid for the data plane here too, besides
/// `https://{vault_dns_suffix}` (the resource the double's challenge names).
pub const VAULT_AUDIENCE: &str = "https://vault.azure.net";

/// The audience the data-plane challenge announces: `https://{vault_dns_suffix}`.
pub fn vault_suffix_audience(app: &App) -> String {
    format!(
        "https://{}",
        app.config
            .vault_dns_suffix
            .trim_matches('.')
            .to_ascii_lowercase()
    )
}

/// An Entra ID error answer: `{"error","error_description","error_codes",...}`.
fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = uuid::Uuid::new_v4();
    let correlation = uuid::Uuid::new_v4();
    let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    json_response(
        status,
        json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace.to_string(),
            "correlation_id": correlation.to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token` with the client-credentials grant.
pub async fn token(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    if !tenant.eq_ignore_ascii_case(&app.config.tenant_id) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        );
    }
    let form: HashMap<String, String> = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(_) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must be application/x-www-form-urlencoded.",
            )
        }
    };
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |name: &str| {
        aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{name}'."),
        )
    };
    let Some(grant_type) = param("grant_type") else {
        return missing("grant_type");
    };
    if grant_type != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let Some(client_id) = param("client_id") else {
        return missing("client_id");
    };
    let Some(scope) = param("scope") else {
        return missing("scope");
    };
    let Some(client_secret) = param("client_secret") else {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    let audience = match audience_of(scope, &vault_suffix_audience(&app)) {
        Ok(audience) => audience,
        Err(err) => return err.into_response(),
    };

    let mut state = app.lock();
    if let Some(client) = app.config.clients.iter().find(|c| c.client_id == client_id) {
        // A configured client is in the directory too: a secret added to its application or
        // service principal through Graph `addPassword` signs in as well, as on Entra.
        if client.client_secret != client_secret
            && !matches!(
                state.graph.check_app_secret(client_id, client_secret),
                SecretCheck::Valid
            )
        {
            return invalid_secret(client_id);
        }
    } else {
        match state.graph.check_app_secret(client_id, client_secret) {
            SecretCheck::Valid => {}
            SecretCheck::UnknownApp => {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    700016,
                    &format!("Application with identifier '{client_id}' was not found in the directory '{}'.", app.config.tenant_id),
                )
            }
            SecretCheck::Wrong => return invalid_secret(client_id),
            SecretCheck::Expired => {
                return aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000222,
                    &format!("The provided client secret keys for app '{client_id}' are expired."),
                )
            }
            SecretCheck::Disabled => {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    7000112,
                    &format!("Application '{client_id}' is disabled."),
                )
            }
        }
    }
    let access_token = new_token();
    state.tokens.insert(
        access_token.clone(),
        IssuedToken {
            audience,
            client_id: client_id.to_string(),
            expires: Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECONDS),
        },
    );
    json_response(
        StatusCode::OK,
        json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            "access_token": access_token,
        }),
    )
}

/// The result of checking a Graph application's password at the token endpoint.
pub enum SecretCheck {
    Valid,
    UnknownApp,
    Wrong,
    Expired,
    Disabled,
}

fn invalid_secret(client_id: &str) -> Response {
    aad_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000215,
        &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."),
    )
}

/// An Entra ID error, rendered by [`aad_error`].
#[derive(Debug, thiserror::Error)]
#[error("AADSTS{code}: {description}")]
struct AadError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl IntoResponse for AadError {
    fn into_response(self) -> Response {
        aad_error(self.status, self.error, self.code, &self.description)
    }
}

/// The resource of a v2 client-credentials scope (`{resource}/.default`).
fn audience_of(scope: &str, vault_audience: &str) -> Result<String, AadError> {
    let resource_scopes: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !matches!(*s, "openid" | "profile" | "offline_access"))
        .collect();
    let [one] = resource_scopes.as_slice() else {
        return Err(AadError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_scope",
            code: 70011,
            description: format!("The provided request must include a 'scope' input parameter naming exactly one resource. The provided value for the input parameter 'scope' is not valid: '{scope}'."),
        });
    };
    let Some(resource) = one.strip_suffix("/.default") else {
        return Err(AadError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_scope",
            code: 1002012,
            description: format!("The provided value for scope {one} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        });
    };
    let resource = resource.trim_end_matches('/').to_ascii_lowercase();
    let known = ARM_AUDIENCES.contains(&resource.as_str())
        || resource == GRAPH_AUDIENCE
        || resource == VAULT_AUDIENCE
        || resource == vault_audience;
    if !known {
        return Err(AadError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_resource",
            code: 500011,
            description: format!("The resource principal named {resource} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant."),
        });
    }
    Ok(resource)
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("azdbl.{hex}")
}

/// Checks `Authorization: Bearer <token>`; returns the caller's client id.
pub fn authenticate(app: &App, headers: &HeaderMap, flavor: Flavor) -> Result<String, ApiError> {
    let challenge = match flavor {
        Flavor::Arm => format!(
            "Bearer authorization_uri=\"{}/{}/oauth2/authorize\", error=\"invalid_token\", error_description=\"The authentication failed because of missing or invalid 'Authorization' header.\"",
            app.base_url, app.config.tenant_id
        ),
        Flavor::Graph => format!(
            "Bearer realm=\"\", authorization_uri=\"{}/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            app.base_url
        ),
    };
    let fail = |arm_code: &str, arm_message: &str, graph_message: &str| {
        let mut err = match flavor {
            Flavor::Arm => ApiError::arm(StatusCode::UNAUTHORIZED, arm_code, arm_message),
            Flavor::Graph => ApiError::graph(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                graph_message,
            ),
        };
        err.www_authenticate = Some(challenge.clone());
        err
    };
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let Some(header) = header.filter(|h| !h.is_empty()) else {
        return Err(fail(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            "Access token is empty.",
        ));
    };
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(fail(
            "AuthenticationFailedInvalidHeader",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            "Access token is empty.",
        )),
    };
    let state = app.lock();
    let Some(issued) = state.tokens.get(token) else {
        return Err(fail(
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            "IDX14100: JWT is not well formed, there are no dots (.). The token needs to be in JWS or JWE Compact Serialization Format.",
        ));
    };
    if issued.expires <= Instant::now() {
        return Err(fail(
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
            "Lifetime validation failed, the token is expired.",
        ));
    }
    let audience_ok = match flavor {
        Flavor::Arm => ARM_AUDIENCES.contains(&issued.audience.as_str()),
        Flavor::Graph => issued.audience == GRAPH_AUDIENCE,
    };
    if !audience_ok {
        return Err(fail(
            "InvalidAuthenticationTokenAudience",
            &format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.azure.com/'.",
                issued.audience
            ),
            "Access token validation failure. Invalid audience.",
        ));
    }
    Ok(issued.client_id.clone())
}

/// Checks the bearer token of a Key Vault data-plane call, as Key Vault does: no or a bad token
/// gets 401 with the challenge the Azure SDK's Key Vault clients parse
/// (`Bearer authorization="{authority}/{tenant}", resource="https://{vault_dns_suffix}"`); the
/// SDK turns `resource` into the scope `{resource}/.default` and requires the vault host to end
/// with `.{vault_dns_suffix}`. Returns the caller's client id.
pub fn authenticate_vault(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    let suffix_audience = vault_suffix_audience(app);
    let fail = |message: String| {
        let mut err = ApiError::arm(StatusCode::UNAUTHORIZED, "Unauthorized", message);
        err.www_authenticate = Some(format!(
            "Bearer authorization=\"{}/{}\", resource=\"{suffix_audience}\"",
            app.base_url, app.config.tenant_id
        ));
        err
    };
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|h| !h.is_empty());
    let token = match header.and_then(|h| h.split_once(' ')) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(fail("Request is missing a Bearer or PoP token.".into())),
    };
    let state = app.lock();
    let Some(issued) = state.tokens.get(token) else {
        return Err(fail(
            "AKV10032: Invalid issuer. The token was not issued by this tenant.".into(),
        ));
    };
    if issued.expires <= Instant::now() {
        return Err(fail("AKV10017: Token expired.".into()));
    }
    if issued.audience != VAULT_AUDIENCE && issued.audience != suffix_audience {
        return Err(fail(format!(
            "AKV10022: Invalid audience. Expected {suffix_audience} or {VAULT_AUDIENCE}, found: {}.",
            issued.audience
        )));
    }
    Ok(issued.client_id.clone())
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration` (MSAL reads it before the token call).
pub async fn openid_configuration(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
) -> Response {
    let base = &app.base_url;
    let body: Value = json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{}/v2.0", app.config.tenant_id),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid"],
        "tenant_region_scope": null,
        "cloud_instance_name": "azure-double.local",
        "cloud_graph_host_name": "graph.azure-double.local",
        "msgraph_host": "graph.azure-double.local",
    });
    json_response(StatusCode::OK, body)
}

/// `GET /common/discovery/instance` (MSAL's instance discovery).
pub async fn instance_discovery(State(app): State<Arc<App>>) -> impl IntoResponse {
    let host = app.base_url.trim_start_matches("https://").to_string();
    json_response(
        StatusCode::OK,
        json!({
            "tenant_discovery_endpoint": format!("{}/{}/v2.0/.well-known/openid-configuration", app.base_url, app.config.tenant_id),
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }),
    )
}
