//! The HTTP side: every Vault call goes through [`Client::call`], which passes the provider's
//! [`CallGate`], sends the token, and classifies failures into [`CallError`]s.
//!
//! Error messages are built from the method, the API path and Vault's `errors` array only —
//! never from request bodies or secret data — so a secret value cannot reach an error.

use crate::PROVIDER;
use closeout_contract::{CallGate, ProviderError, SecretValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::Duration;

/// One failed Vault call.
#[derive(Debug, Clone)]
pub struct CallError {
    pub method: &'static str,
    pub path: String,
    /// HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    pub errors: Vec<String>,
    pub retry_after: Option<Duration>,
    pub endpoint: String,
}

impl CallError {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// `lookup-accessor` / `revoke-accessor` of an accessor that no longer exists.
    pub fn is_invalid_accessor(&self) -> bool {
        matches!(self.status, Some(400) | Some(403) | Some(404))
            && self.errors.iter().any(|e| e.contains("invalid accessor"))
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} /v1/{}", self.method, self.path)?;
        match self.status {
            Some(s) => write!(f, ": HTTP {s}")?,
            None => f.write_str(": no answer")?,
        }
        if !self.errors.is_empty() {
            write!(f, ": {}", self.errors.join("; "))?;
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
            // 412: a performance standby not caught up yet; 5xx (incl. 503 sealed / standby).
            Some(412) | Some(500..=599) => ProviderError::Transient {
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

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// The Vault client: address, token, namespace and the gate.
pub struct Client {
    http: reqwest::Client,
    address: String,
    token: SecretValue,
    namespace: Option<String>,
    gate: CallGate,
}

impl Client {
    pub fn new(
        address: String,
        token: SecretValue,
        namespace: Option<String>,
        gate: CallGate,
    ) -> Result<Client, crate::VaultError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| crate::VaultError::Client(e.to_string()))?;
        Ok(Client {
            http,
            address: address.trim_end_matches('/').to_string(),
            token,
            namespace,
            gate,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn gate(&self) -> &CallGate {
        &self.gate
    }

    /// One call; `Ok(None)` for `204 No Content`. The body is JSON when given.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>, CallError> {
        self.call_with_token(method, path, body, Some(&self.token))
            .await
    }

    /// One call with another token (probes) or none (logins).
    pub async fn call_with_token<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
        token: Option<&SecretValue>,
    ) -> Result<Option<T>, CallError> {
        let m = Method::from_bytes(method.as_bytes()).expect("static method names are valid");
        let url = format!("{}/v1/{}", self.address, path);
        let mut req = self.http.request(m, &url);
        if let Some(token) = token {
            req = req.header("X-Vault-Token", token.expose());
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let fail = |status: Option<u16>, errors: Vec<String>, retry_after| CallError {
            method,
            path: path.to_string(),
            status,
            errors,
            retry_after,
            endpoint: self.address.clone(),
        };
        let resp = {
            let _pass = self.gate.enter().await;
            tracing::trace!(method, path, "vault call");
            req.send().await
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                // reqwest's error names the URL (no secrets: path only) and the cause.
                let e = fail(None, vec![without_url(&e)], None);
                tracing::debug!(error = %e, "vault call failed");
                return Err(e);
            }
        };
        let status = resp.status().as_u16();
        if status == 204 {
            return Ok(None);
        }
        if (200..300).contains(&status) {
            return resp.json::<T>().await.map(Some).map_err(|_| {
                fail(
                    Some(status),
                    vec!["the response could not be parsed".into()],
                    None,
                )
            });
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let errors = resp
            .json::<ErrorBody>()
            .await
            .map(|b| b.errors)
            .unwrap_or_default();
        let e = fail(Some(status), errors, retry_after);
        tracing::debug!(error = %e, "vault call failed");
        Err(e)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, CallError> {
        self.call("GET", path, None).await
    }

    /// `LIST path`: the keys, or empty when the path holds nothing (Vault answers 404).
    pub async fn list(&self, path: &str) -> Result<Vec<String>, CallError> {
        #[derive(Deserialize)]
        struct Keys {
            #[serde(default)]
            keys: Vec<String>,
        }
        match self.call::<Data<Keys>>("LIST", path, None).await {
            Ok(Some(d)) => Ok(d.data.keys),
            Ok(None) => Ok(Vec::new()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Option<T>, CallError> {
        self.call("POST", path, Some(body)).await
    }

    /// A POST whose answer is not needed.
    pub async fn write(&self, path: &str, body: &serde_json::Value) -> Result<(), CallError> {
        self.call::<serde_json::Value>("POST", path, Some(body))
            .await
            .map(|_| ())
    }

    pub async fn delete(&self, path: &str) -> Result<(), CallError> {
        self.call::<serde_json::Value>("DELETE", path, None)
            .await
            .map(|_| ())
    }
}

/// The standard `{"data": ...}` envelope.
#[derive(Debug, Deserialize)]
pub struct Data<T> {
    pub data: T,
}

fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut out = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `segment` escaped for use as one path segment.
pub fn seg(segment: &str) -> String {
    urlencoding::encode(segment).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeout_contract::ErrorClass;

    fn err(status: Option<u16>, errors: &[&str]) -> CallError {
        CallError {
            method: "POST",
            path: "auth/token/lookup-accessor".into(),
            status,
            errors: errors.iter().map(|s| s.to_string()).collect(),
            retry_after: Some(Duration::from_secs(3)),
            endpoint: "http://127.0.0.1:1".into(),
        }
    }

    #[test]
    fn classification() {
        let t: ProviderError = err(Some(429), &[]).into();
        assert_eq!(
            t.class(),
            ErrorClass::Throttled(Some(Duration::from_secs(3)))
        );
        let u: ProviderError = err(None, &["connection failed"]).into();
        assert!(u.is_unreachable());
        let s: ProviderError = err(Some(503), &["Vault is sealed"]).into();
        assert_eq!(s.class(), ErrorClass::Retryable);
        let p: ProviderError = err(Some(403), &["permission denied"]).into();
        assert_eq!(p.class(), ErrorClass::Permanent);
        assert_eq!(
            p.to_string(),
            "vault: POST /v1/auth/token/lookup-accessor: HTTP 403: permission denied"
        );
        assert!(
            err(Some(400), &["1 error occurred:\n\t* invalid accessor\n\n"]).is_invalid_accessor()
        );
        assert!(!err(Some(403), &["permission denied"]).is_invalid_accessor());
    }
}
