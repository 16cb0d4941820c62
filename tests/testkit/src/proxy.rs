//! A fault-injecting HTTP/1.1 reverse proxy, to put between Closeout and an emulator (moto,
//! OpenBao, the Azure double) and see that an interrupted or faulted run still converges.
//!
//! Each request gets a number (1, 2, …, in arrival order) and is checked against the
//! [`Rule`]s in order; the first rule that matches decides its [`Fault`], otherwise the request
//! is forwarded unchanged. Rules fire on the Nth request, from the Nth on, or with a
//! probability, and may be limited to reads. Every request is logged ([`LogEntry`]) so a test can
//! check, for instance, that a client waited at least the `Retry-After` it was given
//! ([`FaultProxy::retry_after_report`]).
//!
//! ```no_run
//! # async fn demo() {
//! use closeout_testkit::proxy::{FaultProxy, Fault, Rule, When};
//! let proxy = FaultProxy::start("http://127.0.0.1:5000").await;
//! proxy.set_rules(vec![Rule::new(When::Probability(0.2), Fault::TooManyRequests { retry_after_secs: 1 }).reads_only()]);
//! // point the client at proxy.endpoint()
//! # }
//! ```
//!
//! The proxy runs on the caller's tokio runtime; it stops when the [`FaultProxy`] is dropped.
//!
//! In front of an HTTPS server (the Azure double) it terminates TLS with the server's own
//! certificate and forwards over TLS to it, trusting the server's CA ([`FaultProxy::start_tls_on`]):
//! the client keeps its real settings (`https://`, certificate verified against the CA file),
//! only the port differs, and the `Host` header (which the double routes Key Vault data-plane
//! calls by) is forwarded unchanged.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::Rng;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the proxy does to a request a rule matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "fault")]
pub enum Fault {
    /// Answer with this status (a 5xx) without forwarding.
    Status {
        /// The HTTP status, e.g. 500 or 503.
        status: u16,
    },
    /// Answer 429 with `Retry-After: <secs>` without forwarding.
    TooManyRequests {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// Close the connection without forwarding or answering.
    Reset,
    /// Wait, then forward.
    Latency {
        /// How long to wait, in milliseconds.
        millis: u64,
    },
    /// Forward the request (so its effect happens), then close the connection instead of
    /// answering: the answer is lost, as when a process dies right after a call.
    ForwardThenReset,
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// On every matching request.
    Always,
    /// On the request with this number (1-based, counted over all requests).
    Nth(u64),
    /// On every request from this number on.
    From(u64),
    /// On each matching request with this probability (0.0 to 1.0).
    Probability(f64),
    /// On the first this many requests the rule matches (counted from [`FaultProxy::set_rules`]).
    Times(u64),
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// When it fires.
    pub when: When,
    /// What it does.
    pub fault: Fault,
    /// Only requests that read (see [`is_read`]).
    pub reads_only: bool,
    /// Only requests whose operation ([`LogEntry::op`], e.g. `POST /v1/secret/data/x`)
    /// contains this text.
    pub op_contains: Option<String>,
    /// Only requests whose operation is exactly this.
    pub op_is: Option<String>,
}

impl Rule {
    /// A rule for every request.
    pub fn new(when: When, fault: Fault) -> Rule {
        Rule {
            when,
            fault,
            reads_only: false,
            op_contains: None,
            op_is: None,
        }
    }

    /// The same rule, limited to the operation `op` exactly.
    pub fn on(mut self, op: &str) -> Rule {
        self.op_is = Some(op.to_string());
        self
    }

    /// The same rule, limited to operations containing `text`.
    pub fn matching(mut self, text: &str) -> Rule {
        self.op_contains = Some(text.to_string());
        self
    }

    /// The same rule, limited to reads.
    pub fn reads_only(mut self) -> Rule {
        self.reads_only = true;
        self
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// Its number, 1-based.
    pub n: u64,
    /// When it arrived, milliseconds since the Unix epoch.
    pub at_ms: u128,
    /// The HTTP method.
    pub method: String,
    /// The path, without query.
    pub path: String,
    /// The operation: the AWS `Action` or `X-Amz-Target` when there is one, else
    /// `METHOD path`.
    pub op: String,
    /// Whether [`is_read`] counts it as a read.
    pub read: bool,
    /// A hash of method, path, query and body: a retried request has the same one (its
    /// signature headers differ, its content does not).
    pub key: u64,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
    /// The status returned to the client (`None`: connection closed).
    pub status: Option<u16>,
    /// The request id the upstream answered with (`x-amzn-RequestId`, `x-amz-request-id`,
    /// `x-ms-request-id`, `request-id`); `None` for an injected fault or no such header.
    pub request_id: Option<String>,
}

/// How well clients honoured `Retry-After`: of the 429s the proxy sent, how many were followed
/// by a retry of the same operation, and how many of those came no earlier than asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetryAfterReport {
    /// 429 answers with `Retry-After` sent.
    pub throttled: u64,
    /// Of those, the ones a later request of the same operation followed.
    pub retried: u64,
    /// Of those, the ones retried no earlier than `Retry-After` asked.
    pub honoured: u64,
}

/// How the proxy reaches the upstream server.
enum Upstream {
    /// Plain HTTP (moto, OpenBao).
    Plain(Box<Client<HttpConnector, Full<Bytes>>>),
    /// HTTPS, trusting the given CA (the Azure double).
    Tls(reqwest::Client),
}

struct Shared {
    upstream: String,
    /// The rules, each with how often it fired since it was set.
    rules: Mutex<Vec<(Rule, u64)>>,
    log: Mutex<Vec<LogEntry>>,
    counter: AtomicU64,
    client: Upstream,
}

/// A running proxy. Dropping it stops accepting connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a request reads: `GET`/`HEAD`/`LIST`, an AWS operation named `Get…`, `List…`,
/// `Describe…`, `Simulate…`, or a Vault `LIST` made as `GET ?list=true`.
pub fn is_read(method: &str, op: &str) -> bool {
    if matches!(method, "GET" | "HEAD" | "LIST") {
        return true;
    }
    let name = op.rsplit('.').next().unwrap_or(op);
    ["Get", "List", "Describe", "Simulate"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The AWS operation of a request: `X-Amz-Target` (JSON protocols) or the `Action` form field
/// (query protocols).
fn aws_op(req_target: Option<&str>, body: &[u8]) -> Option<String> {
    if let Some(t) = req_target {
        return Some(t.rsplit('.').next().unwrap_or(t).to_string());
    }
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(str::to_string)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Why the proxy closed a connection without answering.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("fault injected: connection reset")]
    Reset,
    #[error("cannot read the request body: {0}")]
    Body(#[from] hyper::Error),
}

impl FaultProxy {
    /// Start a proxy on a free loopback port in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        Self::start_on(upstream, 0).await
    }

    /// Start a proxy on `port` (0: any free one) in front of `upstream`.
    pub async fn start_on(upstream: &str, port: u16) -> FaultProxy {
        let client = Upstream::Plain(Box::new(Client::builder(TokioExecutor::new()).build_http()));
        Self::serve(upstream, port, client, None).await
    }

    /// Start a proxy on `port` in front of the HTTPS server `upstream` (`https://host:port`):
    /// it accepts TLS with `acceptor` (the server's own certificate, so clients verify it
    /// against the server's CA as before) and forwards over TLS trusting `upstream_ca_pem`.
    pub async fn start_tls_on(
        upstream: &str,
        port: u16,
        acceptor: tokio_rustls::TlsAcceptor,
        upstream_ca_pem: &str,
    ) -> FaultProxy {
        let ca = reqwest::Certificate::from_pem(upstream_ca_pem.as_bytes())
            .unwrap_or_else(|e| panic!("fault proxy: the upstream CA is not PEM: {e}"));
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("fault proxy: cannot build the TLS client: {e}"));
        Self::serve(upstream, port, Upstream::Tls(client), Some(acceptor)).await
    }

    async fn serve(
        upstream: &str,
        port: u16,
        client: Upstream,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
    ) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("fault proxy: cannot bind 127.0.0.1:{port}: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fault proxy: cannot read the bound address: {e}"));
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
            client,
        });
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = accept.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { handle(shared, req).await }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    // A reset fault ends the connection with an error: expected, not logged.
                    match acceptor {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                });
            }
        });
        FaultProxy { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>` (`https://` in front of a TLS server), to give clients
    /// instead of the upstream's address.
    pub fn endpoint(&self) -> String {
        match self.shared.client {
            Upstream::Plain(_) => format!("http://{}", self.addr),
            Upstream::Tls(_) => format!("https://{}", self.addr),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Replace the rules (requests already counted keep their numbers).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.shared.rules.lock().unwrap_or_else(|e| e.into_inner()) =
            rules.into_iter().map(|r| (r, 0)).collect();
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.shared.counter.load(Ordering::SeqCst)
    }

    /// A copy of the log.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How well clients honoured the 429s' `Retry-After` (see [`retry_after_report`]).
    pub fn retry_after_report(&self) -> RetryAfterReport {
        retry_after_report(&self.log())
    }
}

/// Of the 429s with `Retry-After` in `log`: how many were retried (a later request with the
/// same method, path, query and body) and how many of those no earlier than asked (10 ms
/// tolerance for clock granularity). See [`retry_pairs`] for how a retry is told from an
/// identical request of another caller.
pub fn retry_after_report(log: &[LogEntry]) -> RetryAfterReport {
    let mut r = RetryAfterReport::default();
    for (_, retry) in retry_pairs(log) {
        r.throttled += 1;
        if let Some((_, honoured)) = retry {
            r.retried += 1;
            r.honoured += u64::from(honoured);
        }
    }
    r
}

/// The 429s retried sooner than their `Retry-After`: the operation and how long the client
/// waited, in milliseconds.
pub fn retried_too_soon(log: &[LogEntry]) -> Vec<(String, u128)> {
    retry_pairs(log)
        .into_iter()
        .filter_map(|(throttled, retry)| match retry {
            Some((next, false)) => Some((
                throttled.op.clone(),
                next.at_ms.saturating_sub(throttled.at_ms),
            )),
            _ => None,
        })
        .collect()
}

/// Each 429 with `Retry-After`, with its retry and whether that came no sooner than asked.
///
/// Identical requests also come from concurrent callers (two certificate revocations on one
/// mount each rotate its CRL), so "the next request with the same content" is not always the
/// retry. Each later request is taken as the retry of at most one 429: the first one that came
/// no sooner than asked if there is one, else the first one (too soon), else none.
fn retry_pairs(log: &[LogEntry]) -> Vec<(&LogEntry, Option<(&LogEntry, bool)>)> {
    let mut used = vec![false; log.len()];
    let mut out = Vec::new();
    for (i, e) in log.iter().enumerate() {
        let Some(Fault::TooManyRequests { retry_after_secs }) = &e.fault else {
            continue;
        };
        let due = e.at_ms + u128::from(*retry_after_secs) * 1000;
        let later = || (i + 1..log.len()).filter(|&j| !used[j] && log[j].key == e.key);
        let pick = later()
            .find(|&j| log[j].at_ms + 10 >= due)
            .map(|j| (j, true))
            .or_else(|| later().next().map(|j| (j, false)));
        if let Some((j, _)) = pick {
            used[j] = true;
        }
        out.push((e, pick.map(|(j, honoured)| (&log[j], honoured))));
    }
    out
}

fn fires(rule: &Rule, fired: u64, n: u64, read: bool, op: &str) -> bool {
    if rule.reads_only && !read {
        return false;
    }
    if rule.op_contains.as_ref().is_some_and(|t| !op.contains(t))
        || rule.op_is.as_ref().is_some_and(|t| t != op)
    {
        return false;
    }
    match rule.when {
        When::Always => true,
        When::Nth(k) => n == k,
        When::From(k) => n >= k,
        When::Probability(p) => rand::rng().random_bool(p.clamp(0.0, 1.0)),
        When::Times(k) => fired < k,
    }
}

fn reply(status: u16, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "text/plain");
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(Full::new(Bytes::from(format!(
        "fault injected by the test proxy: {status}"
    ))))
    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let n = shared.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let at_ms = now_ms();
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let op = aws_op(target, &body).unwrap_or_else(|| format!("{method} {path}"));
    let read = is_read(&method, &op);
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        method.hash(&mut h);
        parts.uri.path_and_query().map(|p| p.as_str()).hash(&mut h);
        body.hash(&mut h);
        h.finish()
    };
    let fault = {
        let mut rules = shared.rules.lock().unwrap_or_else(|e| e.into_inner());
        rules
            .iter_mut()
            .find(|(r, fired)| fires(r, *fired, n, read, &op))
            .map(|(r, fired)| {
                *fired += 1;
                r.fault.clone()
            })
    };
    let mut entry = LogEntry {
        n,
        at_ms,
        method,
        path,
        op,
        read,
        key,
        fault: fault.clone(),
        status: None,
        request_id: None,
    };
    let log = |entry: LogEntry| {
        shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    };
    match fault {
        Some(Fault::Status { status }) => {
            entry.status = Some(status);
            log(entry);
            return Ok(reply(status, None));
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            entry.status = Some(429);
            log(entry);
            return Ok(reply(429, Some(retry_after_secs)));
        }
        Some(Fault::Reset) => {
            log(entry);
            return Err(ProxyError::Reset);
        }
        Some(Fault::Latency { millis }) => tokio::time::sleep(Duration::from_millis(millis)).await,
        Some(Fault::ForwardThenReset) | None => {}
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = format!("{}{}", shared.upstream, path_and_query);
    let answer = match &shared.client {
        Upstream::Plain(client) => forward_plain(client, &parts, &uri, body).await,
        Upstream::Tls(client) => forward_tls(client, &parts, &uri, body).await,
    };
    if fault == Some(Fault::ForwardThenReset) {
        log(entry);
        return Err(ProxyError::Reset);
    }
    entry.status = Some(answer.status().as_u16());
    entry.request_id = [
        "x-amzn-requestid",
        "x-amz-request-id",
        "x-ms-request-id",
        "request-id",
    ]
    .iter()
    .find_map(|h| answer.headers().get(*h)?.to_str().ok())
    .map(str::to_string);
    log(entry);
    Ok(answer)
}

/// Forward over plain HTTP; a 502 when the upstream cannot be reached.
async fn forward_plain(
    client: &Client<HttpConnector, Full<Bytes>>,
    parts: &hyper::http::request::Parts,
    uri: &str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut out = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    let Ok(out) = out.body(Full::new(body)) else {
        return reply(502, None);
    };
    match client.request(out).await {
        Ok(resp) => {
            let (rparts, rbody) = resp.into_parts();
            match rbody.collect().await {
                Ok(b) => answer_with(rparts.status, &rparts.headers, b.to_bytes()),
                Err(_) => reply(502, None),
            }
        }
        Err(_) => reply(502, None),
    }
}

/// Forward over HTTPS, every header included (`Host` too: the Azure double routes Key Vault
/// data-plane calls by it); a 502 when the upstream cannot be reached.
async fn forward_tls(
    client: &reqwest::Client,
    parts: &hyper::http::request::Parts,
    uri: &str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let Ok(method) = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) else {
        return reply(502, None);
    };
    let mut out = client.request(method, uri).body(body);
    for (k, v) in &parts.headers {
        if k != "content-length" && k != "transfer-encoding" {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    let Ok(resp) = out.send().await else {
        return reply(502, None);
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = hyper::HeaderMap::new();
    for (k, v) in resp.headers() {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_str().as_bytes()),
            hyper::header::HeaderValue::from_bytes(v.as_bytes()),
        ) {
            headers.append(k, v);
        }
    }
    match resp.bytes().await {
        Ok(b) => answer_with(status, &headers, b),
        Err(_) => reply(502, None),
    }
}

/// An answer with the upstream's status, headers and whole body (hyper sets the framing).
fn answer_with(
    status: StatusCode,
    headers: &hyper::HeaderMap,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    for (k, v) in headers {
        if k != "transfer-encoding" && k != "content-length" {
            resp.headers_mut().append(k, v.clone());
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_recognised_by_method_and_operation() {
        assert!(is_read("GET", "GET /v1/sys/health"));
        assert!(is_read("POST", "ListAccessKeys"));
        assert!(is_read("POST", "GetSecretValue"));
        assert!(!is_read("POST", "CreateAccessKey"));
        assert!(!is_read("PUT", "PUT /v1/secret/data/x"));
        assert_eq!(
            aws_op(None, b"Action=ListUsers&Version=2010-05-08").as_deref(),
            Some("ListUsers")
        );
        assert_eq!(
            aws_op(Some("secretsmanager.GetSecretValue"), b"{}").as_deref(),
            Some("GetSecretValue")
        );
    }

    #[test]
    fn retry_after_report_compares_the_next_request_of_the_same_operation() {
        let e = |n, at_ms, op: &str, fault| LogEntry {
            n,
            at_ms,
            method: "POST".into(),
            path: "/".into(),
            op: op.into(),
            read: true,
            key: op.len() as u64,
            fault,
            status: None,
            request_id: None,
        };
        let t = Some(Fault::TooManyRequests {
            retry_after_secs: 2,
        });
        let log = vec![
            e(1, 0, "ListUsers", t.clone()),
            e(2, 100, "GetUser", None),
            e(3, 2_000, "ListUsers", None),
            e(4, 3_000, "GetUser", t.clone()),
            e(5, 3_500, "GetUser", None),
        ];
        assert_eq!(
            retry_after_report(&log),
            RetryAfterReport {
                throttled: 2,
                retried: 2,
                honoured: 1
            }
        );
        assert_eq!(retried_too_soon(&log), vec![("GetUser".to_string(), 500)]);
        // Another caller's identical request in between is not taken for the retry when the
        // retry itself comes later, as asked.
        let log = vec![
            e(1, 0, "ListUsers", t.clone()),
            e(2, 60, "ListUsers", None),
            e(3, 2_100, "ListUsers", None),
        ];
        assert_eq!(
            retry_after_report(&log),
            RetryAfterReport {
                throttled: 1,
                retried: 1,
                honoured: 1
            }
        );
        // Two 429s, one later request: only one of them counts as retried.
        let log = vec![
            e(1, 0, "ListUsers", t.clone()),
            e(2, 10, "ListUsers", t),
            e(3, 2_100, "ListUsers", None),
        ];
        assert_eq!(
            retry_after_report(&log),
            RetryAfterReport {
                throttled: 2,
                retried: 1,
                honoured: 1
            }
        );
    }
}
