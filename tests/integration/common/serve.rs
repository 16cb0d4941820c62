//! Driving a running `closeout serve` from outside: signed webhooks, the API, waiting for the
//! service to get somewhere.

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The Standard Webhooks specification's example secret.
pub const WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const API_TOKEN: &str = "test-api-token";

/// The Standard Webhooks headers for `body`, signed with [`WEBHOOK_SECRET`] at `at`.
pub fn signed(id: &str, body: &str, at: i64) -> Vec<(&'static str, String)> {
    let secret = closeout::intake::webhook::WebhookSecret::parse(WEBHOOK_SECRET).expect("secret");
    let signature = closeout::intake::webhook::sign(&secret, id, at, body.as_bytes());
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", at.to_string()),
        ("webhook-signature", signature),
    ]
}

/// `POST /v1/events` with these headers: (status, JSON body or null).
pub async fn post_event(
    base: &str,
    headers: &[(&'static str, String)],
    body: &str,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.expect("the service answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// One call of the read and approval API with [`API_TOKEN`]: (status, JSON body or null).
pub async fn api(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method.parse().expect("method"), format!("{base}{path}"))
        .bearer_auth(API_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("the service answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Poll `done` until it holds; after `timeout` fail with the end of the service's log.
pub async fn wait_until(what: &str, log: &Path, timeout: Duration, done: impl FnMut() -> bool) {
    wait_until_described(what, log, timeout, done, String::new).await
}

/// [`wait_until`], failing with `describe()` (the state the test waited on) before the log.
pub async fn wait_until_described(
    what: &str,
    log: &Path,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}\n{}\nservice log (last lines):\n{}",
            describe(),
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many lines of a service's log a failure shows: its end, where a stall is.
const LOG_TAIL_LINES: usize = 80;

/// The last [`LOG_TAIL_LINES`] lines of a service's log, without the lines that repeat on every
/// run whatever happens (a provider's steps skipped because the test configures only one).
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("are skipped: [providers."))
        .collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// The approver whose own API token is [`APPROVER_TOKEN`] (`approver_section`).
pub const APPROVER: &str = "secops@example.com";
pub const APPROVER_TOKEN: &str = "test-approver-token-secops";

/// A `[[approvals.approver]]` section for [`APPROVER`], its token in a file under `dir`.
pub fn approver_section(dir: &Path) -> String {
    let file = dir.join("approver.token");
    std::fs::write(&file, format!("{APPROVER_TOKEN}\n")).expect("write the approver token");
    format!(
        "\n[[approvals.approver]]\nname = \"{APPROVER}\"\ntoken_file = \"{}\"\n",
        file.display()
    )
}

/// `POST /v1/runs/{run}/approve` with `token`: (status, JSON body or null).
pub async fn approve(base: &str, run: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/runs/{run}/approve"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the service answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}
