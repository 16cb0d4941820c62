//! One downstream app's SCIM endpoint: typed calls with its bearer token through the provider's
//! gate, paging, filters (with a listing fallback for apps without filtering), ETags and error
//! classification (429 with `Retry-After` → throttled; 412 → transient: re-read and retry).
//!
//! Error messages carry the method, the path, the status and the SCIM error's `detail` /
//! `scimType` only — never request bodies or tokens.

use crate::capabilities::PROVIDER;
use crate::config::{AppConfig, ScimError};
use closeout_contract::receipt::{self, ProviderCall};
use closeout_contract::{CallGate, ErrorClass, ProviderError, RetryPolicy, SecretValue};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// One failed call.
#[derive(Debug, Clone)]
pub struct CallError {
    pub app: String,
    pub method: &'static str,
    pub path: String,
    pub status: Option<u16>,
    pub detail: Option<String>,
    pub retry_after: Option<Duration>,
}

impl CallError {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "app {}: {} {}", self.app, self.method, self.path)?;
        match self.status {
            Some(s) => write!(f, ": HTTP {s}")?,
            None => f.write_str(": no answer")?,
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
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
                endpoint: e.app,
                message,
            },
            // 412: the resource changed between our read and our write (ETag); read again.
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

fn class_of(e: &CallError) -> ErrorClass {
    ProviderError::from(e.clone()).class()
}

#[derive(Deserialize, Default)]
struct ScimErrorBody {
    #[serde(default)]
    detail: Option<String>,
    #[serde(default, rename = "scimType")]
    scim_type: Option<String>,
}

/// A resource and the ETag it was served with (header, else `meta.version`).
pub struct Versioned {
    pub body: Value,
    pub etag: Option<String>,
}

/// One configured app.
pub struct App {
    pub config: AppConfig,
    http: reqwest::Client,
    base: String,
    token: SecretValue,
    gate: CallGate,
    retry: RetryPolicy,
}

impl App {
    pub fn new(config: AppConfig, gate: CallGate, retry: RetryPolicy) -> Result<App, ScimError> {
        let token = match (&config.token_file, &config.token_env) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| ScimError::Token {
                    app: config.name.clone(),
                    message: format!("token_file {}: {e}", path.display()),
                })?;
                text.lines().next().unwrap_or("").trim().to_string()
            }
            (None, Some(var)) => std::env::var(var).unwrap_or_default().trim().to_string(),
            (None, None) => String::new(),
        };
        if token.is_empty() {
            return Err(ScimError::Token {
                app: config.name.clone(),
                message: "no bearer token (token_file empty or token_env unset)".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ScimError::Client(e.to_string()))?;
        Ok(App {
            base: config.base_url.trim_end_matches('/').to_string(),
            config,
            http,
            token: SecretValue::new(token),
            gate,
            retry,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// One call; `Ok(None)` for an empty answer (204). `GET`s are retried by the policy.
    pub async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Option<Versioned>, CallError> {
        if method == "GET" {
            self.retry
                .run(path, class_of, || self.once(method, path, body, if_match))
                .await
        } else {
            self.once(method, path, body, if_match).await
        }
    }

    async fn once(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Option<Versioned>, CallError> {
        let err = |status, detail, retry_after| CallError {
            app: self.config.name.clone(),
            method,
            path: path.to_string(),
            status,
            detail,
            retry_after,
        };
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
            .header(
                reqwest::header::ACCEPT,
                "application/scim+json, application/json",
            );
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/scim+json")
                .body(b.to_string());
        }
        if let Some(tag) = if_match {
            req = req.header(reqwest::header::IF_MATCH, tag);
        }
        let answer = {
            let _pass = self.gate.enter().await;
            req.send().await
        };
        let operation = || format!("{method} {}", path.split('?').next().unwrap_or_default());
        let answer = answer.map_err(|e| {
            receipt::record(ProviderCall::new(operation(), None, None));
            err(
                None,
                Some(closeout_contract::with_causes("no answer", &e)),
                None,
            )
        })?;
        let status = answer.status().as_u16();
        // SCIM defines no request id; an app (or its gateway) may send `X-Request-Id`.
        receipt::record(ProviderCall::new(
            operation(),
            Some(status),
            answer
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ));
        let retry_after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let etag = answer
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = answer.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                err(
                    Some(status),
                    Some(format!("the answer is not JSON: {e}")),
                    None,
                )
            })?;
            let etag = etag.or_else(|| body["meta"]["version"].as_str().map(str::to_string));
            return Ok(Some(Versioned { body, etag }));
        }
        if status == 429 {
            self.gate.throttled(retry_after);
        }
        let e: ScimErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let detail = match (e.scim_type, e.detail) {
            (Some(t), Some(d)) => Some(format!("{t}: {d}")),
            (t, d) => t.or(d),
        };
        Err(err(Some(status), detail, retry_after))
    }

    /// Every resource of `/Users` or `/Groups` matching `filter` (`None`: all), page by page.
    pub async fn list(
        &self,
        endpoint: &str,
        filter: Option<&str>,
    ) -> Result<Vec<Value>, CallError> {
        let mut out: Vec<Value> = Vec::new();
        let count = self.config.page_size;
        loop {
            let mut path = format!("{endpoint}?startIndex={}&count={count}", out.len() + 1);
            if let Some(f) = filter {
                path.push_str(&format!("&filter={}", urlencoding::encode(f)));
            }
            let page = self.call("GET", &path, None, None).await?;
            let body = page.map(|p| p.body).unwrap_or(Value::Null);
            let resources = body["Resources"].as_array().cloned().unwrap_or_default();
            let total = body["totalResults"].as_u64().unwrap_or(0) as usize;
            let n = resources.len();
            out.extend(resources);
            if n == 0 || out.len() >= total {
                return Ok(out);
            }
        }
    }

    /// One resource; `None` when it does not exist.
    pub async fn get(&self, path: &str) -> Result<Option<Versioned>, CallError> {
        match self.call("GET", path, None, None).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A SCIM filter string literal: `"` and `\` escaped.
pub fn literal(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped_and_errors_classified() {
        assert_eq!(literal(r#"a"b\c"#), r#""a\"b\\c""#);
        let e = CallError {
            app: "wiki".into(),
            method: "PATCH",
            path: "/Users/1".into(),
            status: Some(412),
            detail: None,
            retry_after: None,
        };
        assert_eq!(class_of(&e), ErrorClass::Retryable);
        let t = CallError {
            status: Some(429),
            retry_after: Some(Duration::from_secs(2)),
            ..e
        };
        assert_eq!(
            class_of(&t),
            ErrorClass::Throttled(Some(Duration::from_secs(2)))
        );
        assert_eq!(t.to_string(), "app wiki: PATCH /Users/1: HTTP 429");
    }
}
