//! Typed `reqwest` calls to Azure Resource Manager and Microsoft Graph (neither has a Rust SDK),
//! authenticated with `azure_identity`, each through the provider's [`CallGate`], with
//! `nextLink` / `@odata.nextLink` paging and `Retry-After` kept on throttling.
//!
//! Error messages carry the method, the path and Azure's error code and message — never a
//! request body or a token.

use crate::capabilities::PROVIDER;
use crate::limits::Gates;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use closeout_contract::receipt::{self, ProviderCall};
use closeout_contract::{ErrorClass, ProviderError, RetryPolicy};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Which API a call goes to: its base URL and the token scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Arm,
    Graph,
}

/// Where the APIs are. Real Azure by default; a test double or sovereign cloud otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authority_host: String,
    pub arm: String,
    pub graph: String,
    /// Token audiences (`<audience>/.default`).
    pub arm_audience: String,
    pub graph_audience: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            authority_host: "https://login.microsoftonline.com".into(),
            arm: "https://management.azure.com".into(),
            graph: "https://graph.microsoft.com".into(),
            arm_audience: "https://management.azure.com".into(),
            graph_audience: "https://graph.microsoft.com".into(),
        }
    }
}

/// One failed call.
#[derive(Debug, Clone)]
pub struct CallError {
    pub method: &'static str,
    pub path: String,
    /// HTTP status; `None` when no answer came (or no token could be had).
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl CallError {
    /// The object (or API) is not there.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// The endpoint refused to answer this caller (401, 403) or lacks the API (404, 405, 501,
    /// or a 400 naming an unknown resource type, segment or query): what the call would have
    /// listed or read is unknown. Throttling, server errors and transport failures are not: a
    /// retry may succeed.
    pub fn refused_or_missing(&self) -> bool {
        match self.status {
            Some(401 | 403 | 404 | 405 | 501) => true,
            Some(400) => matches!(
                self.code.as_str(),
                "InvalidResourceType"
                    | "NoRegisteredProviderFound"
                    | "BadRequest"
                    | "UnsupportedQuery"
                    | "Request_UnsupportedQuery"
            ),
            _ => false,
        }
    }
}

/// Something a resolution could not list or read: what it is, the kind of finding (or check)
/// left unknown, the resource, and the refusal.
#[derive(Debug, Clone)]
pub struct Unread {
    /// The finding kind whose listing failed, or the check that could not be made.
    pub kind: &'static str,
    /// Which resource (a subscription, a vault, a user); empty when the whole kind.
    pub resource: String,
    /// What could not be read, in words: `the role assignments of subscription S`.
    pub what: String,
    /// The refusal.
    pub error: CallError,
}

impl Unread {
    /// `Ok(unread)` when `error` is a refusal or a missing API (the run goes on with it
    /// unknown); the error itself otherwise.
    pub fn of(
        kind: &'static str,
        resource: impl Into<String>,
        what: impl Into<String>,
        error: CallError,
    ) -> Result<Unread, CallError> {
        if error.refused_or_missing() {
            Ok(Unread {
                kind,
                resource: resource.into(),
                what: what.into(),
                error,
            })
        } else {
            Err(error)
        }
    }
}

/// Why a token request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFailure {
    /// The authority answered and refused the credentials (e.g. `AADSTS7000215`).
    Refused(String),
    /// No answer: the authority could not be reached.
    Unreachable(String),
}

impl std::fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenFailure::Refused(m) => write!(f, "token request refused: {m}"),
            TokenFailure::Unreachable(m) => write!(f, "token request got no answer: {m}"),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        match self.status {
            Some(s) => write!(f, ": HTTP {s}")?,
            None => f.write_str(": no answer")?,
        }
        if !self.code.is_empty() {
            write!(f, ": {}", self.code)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
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
                endpoint: e.path,
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

/// Both ARM (`{"error":{"code","message"}}`) and Graph use this envelope.
#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    error: ErrorBody,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A page of a list: `value` and the link to the next page (ARM `nextLink`, Graph
/// `@odata.nextLink`).
#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(default, rename = "nextLink")]
    next_link: Option<String>,
    #[serde(default, rename = "@odata.nextLink")]
    odata_next_link: Option<String>,
}

/// The HTTP side of the Azure provider.
pub struct AzureHttp {
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    tenant_id: String,
    endpoints: Endpoints,
    gates: Gates,
    /// How reads are retried (see [`AzureHttp::call`]).
    retry: RetryPolicy,
}

impl AzureHttp {
    /// A client authenticating as an application with a client secret. `extra_root_pem` adds a
    /// trusted root (a test double's CA); the system roots stay trusted otherwise.
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        client_secret: Secret,
        endpoints: Endpoints,
        extra_root_pem: Option<&str>,
        gates: Gates,
    ) -> Result<AzureHttp, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10));
        if let Some(pem) = extra_root_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| format!("the extra root certificate is not PEM: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let credential = credential(&http, &endpoints, tenant_id, client_id, client_secret)?;
        Ok(AzureHttp {
            http,
            credential,
            tenant_id: tenant_id.to_string(),
            endpoints,
            gates,
            retry: RetryPolicy::default(),
        })
    }

    /// The same client, retrying reads by `retry`.
    pub fn with_retry(mut self, retry: RetryPolicy) -> AzureHttp {
        self.retry = retry;
        self
    }

    /// The credential, shared with the Key Vault data-plane clients (`data_plane`), which
    /// ask it for the scope each vault's challenge names.
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        self.credential.clone()
    }

    /// Ask the authority for an ARM token as application `client_id` with `secret`
    /// (client credentials): proves a freshly added client secret works, or an old one dead.
    /// The error names no secret.
    pub async fn token_for_app(
        &self,
        client_id: &str,
        secret: &closeout_contract::SecretValue,
    ) -> Result<(), TokenFailure> {
        let app = credential(
            &self.http,
            &self.endpoints,
            &self.tenant_id,
            client_id,
            secret.expose().to_string().into(),
        )
        .map_err(TokenFailure::Unreachable)?;
        let scope = self.scope(Api::Arm);
        let _pass = self.gates.arm.enter().await;
        match app.get_token(&[scope.as_str()], None).await {
            Ok(_) => Ok(()),
            Err(e) => {
                // The credential wraps the authority's answer; an answer with a 4xx status is
                // a refusal, anything else (no answer, a 5xx) is not a verdict.
                let answered = e
                    .downcast_ref::<azure_core::Error>()
                    .map(|inner| inner.kind())
                    .is_some_and(|kind| {
                        matches!(kind, azure_core::error::ErrorKind::HttpResponse { status, .. }
                            if u16::from(*status) < 500)
                    });
                // The first line is the authority's code and message (`AADSTS7000215: ...`).
                let message = e.to_string().lines().next().unwrap_or("").to_string();
                Err(if answered {
                    TokenFailure::Refused(message)
                } else {
                    TokenFailure::Unreachable(message)
                })
            }
        }
    }

    fn base(&self, api: Api) -> &str {
        match api {
            Api::Arm => &self.endpoints.arm,
            Api::Graph => &self.endpoints.graph,
        }
    }

    fn scope(&self, api: Api) -> String {
        let audience = match api {
            Api::Arm => &self.endpoints.arm_audience,
            Api::Graph => &self.endpoints.graph_audience,
        };
        format!("{}/.default", audience.trim_end_matches('/'))
    }

    /// One call. `path_or_url` is a path under the API's base (with its query, e.g.
    /// `?api-version=...`) or an absolute `nextLink`. `Ok(None)` for 204 No Content.
    ///
    /// A read (`GET`) that fails with a 5xx, a 429 or no answer is retried by the client's
    /// [`RetryPolicy`] (jittered backoff, never sooner than `Retry-After`, within the deadline):
    /// resolution has no retry loop of its own. A write answered 429 is retried here too: ARM
    /// and Graph throttle a request before doing anything, so sending it again cannot do it
    /// twice. Any other failed write (a 5xx, a reset, no answer: it may have taken effect) is
    /// returned at once as [`CallError`] (with `retry_after`), and the executor retries the
    /// whole action, which is idempotent as a whole.
    pub async fn call<T: DeserializeOwned>(
        &self,
        api: Api,
        method: &'static str,
        path_or_url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>, CallError> {
        if method != "GET" {
            return self
                .retry
                .run(
                    path_or_url,
                    |e: &CallError| match e.status {
                        Some(429) => ErrorClass::Throttled(e.retry_after),
                        _ => ErrorClass::Permanent,
                    },
                    || self.call_once(api, method, path_or_url, body),
                )
                .await;
        }
        self.retry
            .run(
                path_or_url,
                |e: &CallError| ProviderError::from(e.clone()).class(),
                || self.call_once(api, method, path_or_url, body),
            )
            .await
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        api: Api,
        method: &'static str,
        path_or_url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>, CallError> {
        let url = if path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.base(api).trim_end_matches('/'), path_or_url)
        };
        // For errors: the path and query without the host.
        let shown = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_else(|| url.clone());
        let fail = |status, code: String, message: String, retry_after| CallError {
            method,
            path: shown.clone(),
            status,
            code,
            message,
            retry_after,
        };
        let scope = self.scope(api);
        let gate = match api {
            Api::Arm => &self.gates.arm,
            Api::Graph => &self.gates.graph,
        };
        let _pass = gate.enter().await;
        let token = self
            .credential
            .get_token(&[scope.as_str()], None)
            .await
            .map_err(|e| fail(None, "token".into(), e.kind().to_string(), None))?;
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| fail(None, "method".into(), method.into(), None))?;
        let mut req = self.http.request(m, &url).bearer_auth(token.token.secret());
        if let Some(b) = body {
            req = req.json(b);
        }
        let operation = || {
            let path = shown.split('?').next().unwrap_or_default();
            format!("{method} {path}")
        };
        let resp = req.send().await.map_err(|e| {
            receipt::record(ProviderCall::new(operation(), None, None));
            fail(None, "transport".into(), transport_cause(&e), None)
        })?;
        let status = resp.status().as_u16();
        receipt::record(ProviderCall::new(
            operation(),
            Some(status),
            request_id(resp.headers()),
        ));
        if status == 204 {
            return Ok(None);
        }
        if (200..300).contains(&status) {
            return resp.json::<T>().await.map(Some).map_err(|_| {
                fail(
                    Some(status),
                    String::new(),
                    "the response could not be parsed".into(),
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
        if status == 429 {
            gate.throttled(retry_after);
        }
        let e = resp.json::<ErrorEnvelope>().await.unwrap_or_default().error;
        Err(fail(Some(status), e.code, e.message, retry_after))
    }

    /// Every item of a paged list, following `nextLink` / `@odata.nextLink`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        api: Api,
        path: &str,
    ) -> Result<Vec<T>, CallError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(url) = next.take() {
            let page: Page<T> = self.call(api, "GET", &url, None).await?.unwrap_or(Page {
                value: Vec::new(),
                next_link: None,
                odata_next_link: None,
            });
            out.extend(page.value);
            next = page.next_link.or(page.odata_next_link);
        }
        Ok(out)
    }
}

/// A client-secret credential against the configured authority, over our transport.
fn credential(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    tenant_id: &str,
    client_id: &str,
    client_secret: Secret,
) -> Result<Arc<dyn TokenCredential>, String> {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = endpoints.authority_host.clone();
    let options = ClientSecretCredentialOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(http.clone()))),
            cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
            ..ClientOptions::default()
        },
    };
    let credential = ClientSecretCredential::new(
        tenant_id,
        client_id.to_string(),
        client_secret,
        Some(options),
    )
    .map_err(|e| format!("cannot build the credential: {e}"))?;
    Ok(credential)
}

/// The id Azure gives a request: `x-ms-request-id` (ARM, Key Vault), `request-id` (Graph).
pub fn request_id(headers: &reqwest::header::HeaderMap) -> Option<String> {
    ["x-ms-request-id", "request-id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .map(str::to_string)
}

fn transport_cause(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    closeout_contract::with_causes(kind, e)
}
