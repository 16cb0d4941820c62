//! The HTTP side: typed `reqwest` calls through [`Client::call`] (reads through
//! [`Client::read_data`], retried honouring `Retry-After`; writes through [`Client::write_json`]
//! and [`Client::write_data`]), deserialized into `vaultrs`'s response types where it has them.
//! `vaultrs`'s own calls are not used: its errors drop the answer's headers, so a 429's
//! `Retry-After` could not be honoured (issue 14). Every call passes the provider's
//! [`CallGate`] and failures are classified into [`CallError`]s.
//!
//! Error messages are built from the method, the API path and Vault's `errors` array only —
//! never from request or response bodies — so a secret value cannot reach an error.

use crate::capabilities::PROVIDER;
use crate::config::VaultError;
use closeout_contract::receipt::{self, ProviderCall};
use closeout_contract::{CallGate, ErrorClass, ProviderError, RetryPolicy, SecretValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::Duration;

/// The one field of an answer's body a receipt reads.
#[derive(Deserialize)]
struct RequestId {
    #[serde(default)]
    request_id: Option<String>,
}

/// The fixed text for an answer that could not be read: the body may hold secret values.
const UNPARSED: &str = "the response could not be parsed";

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

    /// Vault refused the call (HTTP 403): the token lacks the capability.
    pub fn is_refused(&self) -> bool {
        self.status == Some(403)
    }

    /// A KV v2 write whose check-and-set version is no longer the current one: another writer
    /// made a version between Closeout's read and its write.
    pub fn is_cas_mismatch(&self) -> bool {
        self.status == Some(400)
            && self
                .errors
                .iter()
                .any(|e| e.contains("check-and-set parameter did not match"))
    }

    /// `lookup-accessor` / `revoke-accessor` of an accessor that no longer exists: "invalid
    /// accessor", or "token not found" when a parent's revocation removed the token between
    /// Closeout's lookup and its revoke (OpenBao answers 400 then).
    pub fn is_invalid_accessor(&self) -> bool {
        matches!(self.status, Some(400) | Some(403) | Some(404))
            && self
                .errors
                .iter()
                .any(|e| e.contains("invalid accessor") || e.contains("token not found"))
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
    /// How reads are retried (see [`Client::call_with_token`] and [`Client::read_data`]).
    retry: RetryPolicy,
}

/// `POST` endpoints that only read (lookups, capability checks, audit hashes).
const READ_POSTS: &[&str] = &[
    "auth/token/lookup",
    "auth/token/lookup-accessor",
    "auth/token/lookup-self",
    "sys/leases/lookup",
    "sys/capabilities",
    "sys/capabilities-self",
    "sys/capabilities-accessor",
];

/// Whether a call only reads, so repeating it is harmless: `GET`, `LIST`, or a `POST` to a
/// lookup endpoint (AppRole secret-id lookups included).
fn is_read(method: &str, path: &str) -> bool {
    matches!(method, "GET" | "LIST")
        || (method == "POST"
            && (READ_POSTS.contains(&path)
                || path.starts_with("sys/audit-hash/")
                || path.ends_with("/secret-id/lookup")
                || path.ends_with("/secret-id-accessor/lookup")))
}

/// How the retry policy sees a failed call.
fn class_of(e: &CallError) -> ErrorClass {
    ProviderError::from(e.clone()).class()
}

impl Client {
    pub fn new(
        address: String,
        token: SecretValue,
        namespace: Option<String>,
        gate: CallGate,
    ) -> Result<Client, VaultError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| VaultError::Client(e.to_string()))?;
        let address = address.trim_end_matches('/').to_string();
        check_settings(&address, &token, namespace.as_deref())?;
        Ok(Client {
            http,
            address,
            token,
            namespace,
            gate,
            retry: RetryPolicy::default(),
        })
    }

    /// The same client, retrying reads by `retry`.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
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

    /// One call with another token (probes) or none (logins). A read (`GET`, `LIST`) that
    /// fails with a 5xx, a 429 or no answer is retried by the client's [`RetryPolicy`]
    /// (honouring `Retry-After`): resolution and verification have no retry loop of their own.
    pub async fn call_with_token<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
        token: Option<&SecretValue>,
    ) -> Result<Option<T>, CallError> {
        if is_read(method, path) {
            self.retry
                .run(path, class_of, || self.call_once(method, path, body, token))
                .await
        } else {
            self.call_once(method, path, body, token).await
        }
    }

    async fn call_once<T: DeserializeOwned>(
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
        let operation = || {
            let path = path.split('?').next().unwrap_or_default();
            format!("{method} /v1/{path}")
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                receipt::record(ProviderCall::new(operation(), None, None));
                // reqwest's error names the URL (no secrets: path only) and the cause.
                let e = fail(None, vec![without_url(&e)], None);
                tracing::debug!(error = %e, "vault call failed");
                return Err(e);
            }
        };
        let status = resp.status().as_u16();
        if status == 204 {
            receipt::record(ProviderCall::new(operation(), Some(status), None));
            return Ok(None);
        }
        if (200..300).contains(&status) {
            let bytes = resp.bytes().await;
            // Vault and OpenBao name the request in the body (`request_id`), not a header.
            let request_id = bytes
                .as_ref()
                .ok()
                .and_then(|b| serde_json::from_slice::<RequestId>(b).ok())
                .and_then(|r| r.request_id);
            receipt::record(ProviderCall::new(operation(), Some(status), request_id));
            return bytes
                .ok()
                .and_then(|b| serde_json::from_slice::<T>(&b).ok())
                .map(Some)
                .ok_or_else(|| fail(Some(status), vec![UNPARSED.into()], None));
        }
        receipt::record(ProviderCall::new(operation(), Some(status), None));
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
        if status == 429 {
            self.gate.throttled(retry_after);
        }
        let e = fail(Some(status), errors, retry_after);
        tracing::debug!(error = %e, "vault call failed");
        Err(e)
    }

    /// A read answered `{"data": T}` (`GET`, `LIST`, a lookup `POST`): a typed call rather
    /// than a `vaultrs` one, because `vaultrs`'s errors drop the answer's headers and so a
    /// 429's or 503's `Retry-After`; retried by the client's [`RetryPolicy`] honouring it
    /// (`vaultrs`'s response types are reused for `T`).
    pub async fn read_data<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, CallError> {
        match self.call::<Data<T>>(method, path, body).await? {
            Some(d) => Ok(d.data),
            None => Err(CallError {
                method,
                path: path.to_string(),
                status: Some(204),
                errors: vec!["the response held no data".into()],
                retry_after: None,
                endpoint: self.address.clone(),
            }),
        }
    }

    /// A write whose answer is not needed, as a typed call: a failure carries the answer's
    /// `Retry-After`, so the executor's retry of the action waits it out (`vaultrs`'s errors
    /// drop it). Not retried here: an action is idempotent as a whole, not each call in it.
    pub async fn write_json(
        &self,
        method: &'static str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(), CallError> {
        self.call::<serde_json::Value>(method, path, Some(body))
            .await
            .map(|_| ())
    }

    /// A write answered `{"data": T}` (a KV v2 write's version, a new secret-id), as a typed
    /// call for the same reason as [`Client::write_json`].
    pub async fn write_data<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, CallError> {
        match self.call::<Data<T>>(method, path, Some(body)).await? {
            Some(d) => Ok(d.data),
            None => Err(CallError {
                method,
                path: path.to_string(),
                status: Some(204),
                errors: vec!["the response held no data".into()],
                retry_after: None,
                endpoint: self.address.clone(),
            }),
        }
    }

    /// `LIST path`: the keys; a 404 stays an error (see [`Client::list`] for "empty").
    pub async fn list_keys(&self, path: &str) -> Result<Vec<String>, CallError> {
        #[derive(Deserialize)]
        struct Keys {
            #[serde(default)]
            keys: Vec<String>,
        }
        self.read_data::<Keys>("LIST", path, None)
            .await
            .map(|k| k.keys)
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
}

/// The standard `{"data": ...}` envelope.
#[derive(Debug, Deserialize)]
pub struct Data<T> {
    pub data: T,
}

/// A KV v2 version's `data` (`GET <mount>data/<key>` answers `{"data": {"data": .., "metadata": ..}}`).
#[derive(Debug, Deserialize)]
pub struct Versioned<T> {
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
    closeout_contract::with_causes(kind, e)
}

/// Check the address, token and namespace before any call: an invalid header value would
/// otherwise fail every call (or, in some clients, panic).
fn check_settings(
    address: &str,
    token: &SecretValue,
    namespace: Option<&str>,
) -> Result<(), VaultError> {
    let fail = |m: &str| VaultError::Client(m.to_string());
    reqwest::Url::parse(address).map_err(|_| fail("the address is not a URL"))?;
    reqwest::header::HeaderValue::from_str(token.expose())
        .map_err(|_| fail("the token is not a valid HTTP header value"))?;
    if let Some(ns) = namespace {
        reqwest::header::HeaderValue::from_str(ns)
            .map_err(|_| fail("the namespace is not a valid HTTP header value"))?;
    }
    Ok(())
}

/// `Ok(None)` when Vault answers 404.
pub fn found<T>(r: Result<T, CallError>) -> Result<Option<T>, CallError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A LIST's keys, empty when the path holds nothing (Vault answers 404).
pub fn keys(r: Result<Vec<String>, CallError>) -> Result<Vec<String>, CallError> {
    found(r).map(Option::unwrap_or_default)
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
        // A token a concurrent revocation of its parent removed (issue 14 item 6).
        assert!(err(Some(400), &["token not found"]).is_invalid_accessor());
    }

    const CANARY: &str = "canary-5b1d-secret-value";

    /// Answer one HTTP request on a local port with `response`; the thread returns the request.
    fn one_answer(response: String) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let served = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&req).contains("\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            conn.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&req).to_lowercase()
        });
        (addr, served)
    }

    #[tokio::test]
    async fn calls_pass_the_gate_send_token_and_namespace_and_hide_bodies() {
        let body = format!("{{\"data\":\"{CANARY}\"}}");
        let (addr, served) = one_answer(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ));
        let gate = CallGate::new(closeout_contract::Limits {
            max_in_flight: 1,
            requests_per_second: 100.0,
            burst: 10,
        });
        let client =
            Client::new(addr, SecretValue::new("tok-7"), Some("team-a".into()), gate).unwrap();
        let body = serde_json::json!({ "accessor": "acc-1" });
        let lookup = || {
            client.read_data::<vaultrs::api::token::responses::LookupTokenResponse>(
                "POST",
                "auth/token/lookup-accessor",
                Some(&body),
            )
        };
        // A full gate holds the call back.
        let pass = client.gate().enter().await;
        let held = tokio::time::timeout(Duration::from_millis(200), lookup()).await;
        assert!(held.is_err(), "the call went past a full gate");
        drop(pass);
        let e = lookup().await.unwrap_err();
        let request = served.join().unwrap();
        assert!(request.starts_with("post /v1/auth/token/lookup-accessor "));
        assert!(request.contains("x-vault-token: tok-7"), "{request}");
        assert!(request.contains("x-vault-namespace: team-a"), "{request}");
        assert!(!format!("{e} {e:?}").contains(CANARY), "{e:?}");
        assert_eq!(e.status, Some(200));
    }

    #[tokio::test]
    async fn no_answer_names_the_cause_without_the_url() {
        let gate = CallGate::new(closeout_contract::Limits::default());
        let client = Client::new(
            "http://127.0.0.1:1".into(),
            SecretValue::new("t"),
            None,
            gate,
        )
        .unwrap();
        let e = client
            .with_retry(RetryPolicy::never())
            .read_data::<serde_json::Value>("GET", "auth/token/lookup-self", None)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("GET /v1/auth/token/lookup-self: no answer: connection failed"),
            "{text}"
        );
        assert!(!text.contains("127.0.0.1"), "{text}");
        assert!(ProviderError::from(e).is_unreachable());
    }

    #[test]
    fn a_token_that_is_no_header_value_is_refused_not_panicked_on() {
        let gate = CallGate::new(closeout_contract::Limits::default());
        let r = Client::new(
            "http://127.0.0.1:1".into(),
            SecretValue::new("bad\ntoken"),
            None,
            gate,
        );
        let Err(e) = r else {
            panic!("a token with a newline was accepted")
        };
        assert!(!e.to_string().contains("bad"), "{e}");
    }
}

#[cfg(test)]
mod read_tests {
    use super::is_read;

    #[test]
    fn reads_are_gets_lists_and_lookups_never_writes() {
        assert!(is_read("GET", "identity/entity/id/x"));
        assert!(is_read("LIST", "auth/token/accessors"));
        assert!(is_read("POST", "auth/token/lookup-accessor"));
        assert!(is_read("POST", "sys/audit-hash/file"));
        assert!(!is_read("POST", "auth/token/revoke-accessor"));
        assert!(!is_read("POST", "secret/data/x"));
        assert!(!is_read("PUT", "sys/policies/acl/x"));
        assert!(!is_read("DELETE", "identity/entity/id/x"));
    }
}
