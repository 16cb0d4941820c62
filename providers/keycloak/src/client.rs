//! The HTTP side: the admin REST API of one realm (`/admin/realms/{realm}/...`) with an admin
//! access token Closeout obtains and renews itself, and the realm's OpenID Connect token
//! endpoint (client-credentials and refresh-token grants, for rotations and probes). Every call
//! passes the provider's [`CallGate`]; reads are retried by the [`RetryPolicy`].
//!
//! Error messages are built from the method, the API path, the status and Keycloak's `error` /
//! `errorMessage` fields only — never from request bodies — so a secret cannot reach an error.

use crate::capabilities::PROVIDER;
use crate::config::{AdminAuth, KeycloakConfig, KeycloakError};
use closeout_contract::receipt::{self, ProviderCall};
use closeout_contract::{CallGate, ErrorClass, Limits, ProviderError, RetryPolicy, SecretValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One failed Keycloak call.
#[derive(Debug, Clone)]
pub struct CallError {
    pub method: &'static str,
    pub path: String,
    /// HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    /// Keycloak's `error` / `errorMessage`, when the answer had one.
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
    pub endpoint: String,
}

impl CallError {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        match self.status {
            Some(s) => write!(f, ": HTTP {s}")?,
            None => f.write_str(": no answer")?,
        }
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

impl From<CallError> for ProviderError {
    fn from(e: CallError) -> Self {
        let message = e.to_string();
        match e.status {
            Some(429) => ProviderError::Throttled {
                provider: PROVIDER,
                retry_after: e.retry_after,
                message,
            },
            None => ProviderError::Unreachable {
                provider: PROVIDER,
                endpoint: e.endpoint,
                message,
            },
            Some(500..=599) => ProviderError::Transient {
                provider: PROVIDER,
                message,
            },
            Some(_) => ProviderError::Permanent {
                provider: PROVIDER,
                message,
            },
        }
    }
}

fn class_of(e: &CallError) -> ErrorClass {
    ProviderError::from(e.clone()).class()
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorMessage")]
    error_message: Option<String>,
}

/// What a token endpoint answered to a grant.
#[derive(Deserialize)]
pub struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenAnswer {
    /// The access token, wrapped.
    pub fn access_token(&self) -> Option<SecretValue> {
        self.access_token.clone().map(SecretValue::new)
    }
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAnswer([redacted])")
    }
}

/// A grant the token endpoint refused: the status and the OAuth `error` code
/// (`invalid_grant`, `invalid_client`, `unauthorized_client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub error: String,
}

/// The Keycloak client of one realm.
pub struct Client {
    http: reqwest::Client,
    base: String,
    realm: String,
    auth_realm: String,
    auth: AdminAuth,
    admin_client_id: String,
    admin_username: Option<String>,
    credential: SecretValue,
    token: Mutex<Option<(SecretValue, Instant)>>,
    gate: CallGate,
    retry: RetryPolicy,
}

impl Client {
    pub fn new(config: &KeycloakConfig, credential: SecretValue) -> Result<Client, KeycloakError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| KeycloakError::Client(e.to_string()))?;
        Ok(Client {
            http,
            base: config.base().to_string(),
            realm: config.realm.clone(),
            auth_realm: config.auth_realm.clone(),
            auth: config.auth,
            admin_client_id: config.admin_client_id.clone(),
            admin_username: config.admin_username.clone(),
            credential,
            token: Mutex::new(None),
            gate: CallGate::named(
                "keycloak",
                Limits::configured(config.max_in_flight, config.requests_per_second),
            ),
            retry: config.retry,
        })
    }

    pub fn limits(&self) -> Limits {
        self.gate.limits()
    }

    /// Who Closeout signs in as, for `health`.
    pub fn principal(&self) -> String {
        match (&self.auth, &self.admin_username) {
            (AdminAuth::Password, Some(u)) => format!("user {u} of realm {}", self.auth_realm),
            _ => format!(
                "service account of client {} in realm {}",
                self.admin_client_id, self.auth_realm
            ),
        }
    }

    fn token_url(&self, realm: &str) -> String {
        format!(
            "{}/realms/{}/protocol/openid-connect/token",
            self.base,
            urlencoding::encode(realm)
        )
    }

    /// A POST to a realm's token endpoint with `form`: the answer, or the refusal.
    pub async fn grant(
        &self,
        realm: &str,
        form: &[(&str, &str)],
    ) -> Result<Result<TokenAnswer, Refusal>, CallError> {
        let url = self.token_url(realm);
        let path = format!("/realms/{realm}/protocol/openid-connect/token");
        let (status, body) = self.post_form(&url, &path, form).await?;
        if (200..300).contains(&status) {
            return serde_json::from_slice::<TokenAnswer>(&body)
                .map(Ok)
                .map_err(|_| CallError {
                    method: "POST",
                    path,
                    status: Some(status),
                    error: Some("the token answer could not be parsed".into()),
                    retry_after: None,
                    endpoint: self.base.clone(),
                });
        }
        Ok(Err(refusal(status, &body)))
    }

    /// Client authentication at a realm's token introspection endpoint: `Ok(())` when the
    /// client authenticated (whatever the token's state), the refusal otherwise.
    pub async fn introspect(
        &self,
        realm: &str,
        form: &[(&str, &str)],
    ) -> Result<Result<(), Refusal>, CallError> {
        let url = format!("{}/introspect", self.token_url(realm));
        let path = format!("/realms/{realm}/protocol/openid-connect/token/introspect");
        let (status, body) = self.post_form(&url, &path, form).await?;
        if (200..300).contains(&status) {
            return Ok(Ok(()));
        }
        Ok(Err(refusal(status, &body)))
    }

    /// POST `form` to one of a realm's OpenID endpoints under the gate: the answer's status and
    /// body, or an error for no answer, a 429 (reported as throttled) or a 5xx. Any other status
    /// is the endpoint's verdict, for the caller to read.
    async fn post_form(
        &self,
        url: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>), CallError> {
        let _pass = self.gate.enter().await;
        let answer = self.http.post(url).form(form).send().await;
        record("POST", path, answer.as_ref().ok());
        let answer = answer.map_err(|e| self.no_answer("POST", path, &e))?;
        let status = answer.status().as_u16();
        let retry_after = retry_after(answer.headers());
        let body = answer.bytes().await.unwrap_or_default().to_vec();
        if status == 429 || status >= 500 {
            if status == 429 {
                self.gate.throttled(retry_after);
            }
            let err: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            return Err(CallError {
                method: "POST",
                path: path.to_string(),
                status: Some(status),
                error: err.error,
                retry_after,
                endpoint: self.base.clone(),
            });
        }
        Ok((status, body))
    }

    fn no_answer(&self, method: &'static str, path: &str, e: &reqwest::Error) -> CallError {
        CallError {
            method,
            path: path.to_string(),
            status: None,
            error: Some(closeout_contract::with_causes("no answer", e)),
            retry_after: None,
            endpoint: self.base.clone(),
        }
    }

    /// The admin access token, obtained or renewed when it is missing or about to expire.
    async fn admin_token(&self, renew: bool) -> Result<SecretValue, CallError> {
        let mut cached = self.token.lock().await;
        if !renew {
            if let Some((t, until)) = cached.as_ref() {
                if Instant::now() < *until {
                    return Ok(t.clone());
                }
            }
        }
        let secret = self.credential.expose();
        let mut form = vec![("client_id", self.admin_client_id.as_str())];
        match self.auth {
            AdminAuth::ClientCredentials => {
                form.push(("grant_type", "client_credentials"));
                form.push(("client_secret", secret));
            }
            AdminAuth::Password => {
                form.push(("grant_type", "password"));
                form.push(("username", self.admin_username.as_deref().unwrap_or("")));
                form.push(("password", secret));
            }
        }
        let path = format!("/realms/{}/protocol/openid-connect/token", self.auth_realm);
        let answer = self
            .retry
            .run("admin token", class_of, || {
                self.grant(&self.auth_realm, &form)
            })
            .await?;
        match answer {
            Ok(t) => {
                let token = t.access_token().ok_or_else(|| CallError {
                    method: "POST",
                    path: path.clone(),
                    status: Some(200),
                    error: Some("the token answer has no access_token".into()),
                    retry_after: None,
                    endpoint: self.base.clone(),
                })?;
                let life = t.expires_in.unwrap_or(60).saturating_sub(10).max(1);
                *cached = Some((token.clone(), Instant::now() + Duration::from_secs(life)));
                Ok(token)
            }
            Err(r) => Err(CallError {
                method: "POST",
                path,
                status: Some(r.status),
                error: Some(format!("Closeout's admin sign-in was refused: {}", r.error)),
                retry_after: None,
                endpoint: self.base.clone(),
            }),
        }
    }

    /// One admin call under `/admin/realms/{realm}`; `Ok(None)` for an empty answer. Reads
    /// (`GET`) are retried; a 401 renews the admin token once.
    pub async fn admin<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>, CallError> {
        if method == "GET" {
            self.retry
                .run(path, class_of, || {
                    self.admin_once(&self.realm, method, path, body)
                })
                .await
        } else {
            self.admin_once(&self.realm, method, path, body).await
        }
    }

    /// A read under `/admin/realms/{realm}` of another realm (the one Closeout signs in to).
    pub async fn admin_get_in<T: DeserializeOwned>(
        &self,
        realm: &str,
        path: &str,
    ) -> Result<Option<T>, CallError> {
        self.retry
            .run(path, class_of, || self.admin_once(realm, "GET", path, None))
            .await
    }

    /// The realm Closeout signs in to.
    pub fn auth_realm(&self) -> &str {
        &self.auth_realm
    }

    /// How Closeout signs in: the admin user (password grant), or `None` for the service account
    /// of `admin_client_id` (client credentials).
    pub fn admin_identity(&self) -> (Option<&str>, &str) {
        match self.auth {
            AdminAuth::Password => (self.admin_username.as_deref(), &self.admin_client_id),
            AdminAuth::ClientCredentials => (None, &self.admin_client_id),
        }
    }

    async fn admin_once<T: DeserializeOwned>(
        &self,
        realm: &str,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>, CallError> {
        let full = format!("/admin/realms/{}{path}", urlencoding::encode(realm));
        let mut renew = false;
        loop {
            let token = self.admin_token(renew).await?;
            let m = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
            let mut req = self
                .http
                .request(m, format!("{}{full}", self.base))
                .bearer_auth(token.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            let answer = {
                let _pass = self.gate.enter().await;
                req.send().await
            };
            record(method, &full, answer.as_ref().ok());
            let answer = answer.map_err(|e| self.no_answer(method, &full, &e))?;
            let status = answer.status().as_u16();
            if status == 401 && !renew {
                renew = true;
                continue;
            }
            let retry_after = retry_after(answer.headers());
            let bytes = answer.bytes().await.unwrap_or_default();
            if (200..300).contains(&status) {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| CallError {
                        method,
                        path: full.clone(),
                        status: Some(status),
                        error: Some(format!("the answer could not be parsed: {e}")),
                        retry_after: None,
                        endpoint: self.base.clone(),
                    });
            }
            if status == 429 {
                self.gate.throttled(retry_after);
            }
            let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(CallError {
                method,
                path: full,
                status: Some(status),
                error: err.error_message.or(err.error),
                retry_after,
                endpoint: self.base.clone(),
            });
        }
    }
}

/// Record the call in the current action's receipts: its status, and the request id when a
/// proxy in front of Keycloak adds `X-Request-Id` (Keycloak itself sends none). `None`: no
/// answer.
fn record(method: &str, path: &str, answer: Option<&reqwest::Response>) {
    let request_id = answer
        .and_then(|a| a.headers().get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    receipt::record(ProviderCall::new(
        format!("{method} {}", path.split('?').next().unwrap_or_default()),
        answer.map(|a| a.status().as_u16()),
        request_id,
    ));
}

/// An OpenID endpoint's refusal: its status and OAuth `error` (the status when it gave none).
fn refusal(status: u16, body: &[u8]) -> Refusal {
    let err: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    Refusal {
        status,
        error: err.error.unwrap_or_else(|| format!("HTTP {status}")),
    }
}

/// `Retry-After` in seconds, when the answer had one.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_and_never_carry_bodies() {
        let e = CallError {
            method: "GET",
            path: "/admin/realms/x/users".into(),
            status: Some(429),
            error: None,
            retry_after: Some(Duration::from_secs(3)),
            endpoint: "http://kc".into(),
        };
        assert_eq!(
            ProviderError::from(e.clone()).class(),
            ErrorClass::Throttled(Some(Duration::from_secs(3)))
        );
        let e503 = CallError {
            status: Some(503),
            ..e.clone()
        };
        assert_eq!(class_of(&e503), ErrorClass::Retryable);
        let e404 = CallError {
            status: Some(404),
            error: Some("User not found".into()),
            ..e
        };
        assert!(e404.is_not_found());
        assert_eq!(
            e404.to_string(),
            "GET /admin/realms/x/users: HTTP 404: User not found"
        );
        assert_eq!(class_of(&e404), ErrorClass::Permanent);
    }
}
