//! `closeout serve`'s internals, driven from outside against the real binary (issue 14, item 5):
//! a store locked by another process holds up no route; half-sent headers and idle kept-alive
//! connections are closed; connections beyond the limit wait for a free slot; `/metrics` takes
//! the API token.
//!
//! No provider is needed: the configuration names one that is never contacted (no event is
//! processed). Timeouts are asserted as behaviour (a connection is closed, a request answered),
//! with wide margins, never as performance.

use crate::common;

use common::serve::API_TOKEN;
use common::Service;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A throwaway installation with `serve_extra` appended to its `[serve]` section.
fn start(dir: &Path, serve_extra: &str) -> Service {
    let repo = env!("CARGO_MANIFEST_DIR");
    std::fs::write(
        dir.join("closeout.toml"),
        format!(
            r#"playbook_dir = "{repo}/playbooks"
[source]
path = "{repo}/examples/demo/hr.csv"
[store]
path = "state/closeout.db"
[audit]
path = "state/audit.jsonl"
# Never contacted: no event is processed here.
[providers.vault]
address = "http://127.0.0.1:9"
token_file = "token"
[serve]
listen = "127.0.0.1:0"
workers = 2
shutdown_grace_secs = 2
{serve_extra}
"#
        ),
    )
    .expect("config");
    std::fs::write(dir.join("token"), "unused\n").expect("token");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_closeout"));
    cmd.current_dir(dir)
        .args(["--config", "closeout.toml", "serve"])
        .env("CLOSEOUT_API_TOKEN", API_TOKEN)
        .env_remove("CLOSEOUT_WEBHOOK_SECRETS")
        .env_remove("RUST_LOG");
    common::start_serve(cmd, &dir.join("serve.log"))
}

/// `host:port` of the service.
fn addr(service: &Service) -> String {
    service
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// One request on a fresh connection with a deadline: its status, or `None` when no answer
/// came in time (or the connection failed).
async fn get_status(url: String, token: Option<&str>, within: Duration) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(within)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.ok().map(|r| r.status().as_u16())
}

/// Read from `stream` until the server closes it (EOF or reset); `Err` when it is still open
/// after `within`.
fn wait_closed(stream: &mut TcpStream, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Ok(start.elapsed()),
        }
        if start.elapsed() > within {
            return Err(format!("still open after {:?}", start.elapsed()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_holds_up_no_route_while_workers_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start(dir.path(), "");
    let base = service.base.clone();
    assert_eq!(
        get_status(format!("{base}/healthz"), None, Duration::from_secs(10)).await,
        Some(200)
    );

    // Another process takes the store's write lock and keeps it: every worker's next claim
    // waits for it (up to SQLite's 10 s busy timeout, again and again).
    let db = rusqlite::Connection::open(dir.path().join("state/closeout.db")).expect("store");
    db.execute_batch("BEGIN IMMEDIATE").expect("write lock");
    // Both workers poll the queue at least every 2 s: give them time to be waiting.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Health, readiness and the read API still answer, each on a new connection.
    let within = Duration::from_secs(5);
    let health = get_status(format!("{base}/healthz"), None, within).await;
    let ready = get_status(format!("{base}/readyz"), None, within).await;
    let runs = get_status(format!("{base}/v1/runs"), Some(API_TOKEN), within).await;
    db.execute_batch("ROLLBACK").expect("release the lock");
    assert_eq!(
        (health, ready, runs),
        (Some(200), Some(200), Some(200)),
        "a route waited for the store's writer (healthz, readyz, /v1/runs)\nservice log:\n{}",
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_and_idle_kept_alive_connections_are_closed_after_their_timeouts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start(
        dir.path(),
        "header_read_timeout_secs = 2\nidle_timeout_secs = 3\n",
    );
    let addr = addr(&service);

    // Headers that never finish, sent byte by byte then stopped: closed after about 2 s.
    let mut half = TcpStream::connect(&addr).expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("send");
    for b in b"X-Slow: 1" {
        half.write_all(&[*b]).expect("send");
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = wait_closed(&mut half, Duration::from_secs(20));
    assert!(closed.is_ok(), "half-sent headers: {closed:?}");

    // A kept-alive connection: answered, then closed after about 3 s of waiting.
    let mut kept = TcpStream::connect(&addr).expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut answer = [0u8; 256];
    let n = kept.read(&mut answer).expect("an answer");
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let closed = wait_closed(&mut kept, Duration::from_secs(30));
    assert!(closed.is_ok(), "idle kept-alive connection: {closed:?}");
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_a_slot_frees() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start(
        dir.path(),
        "max_connections = 2\nheader_read_timeout_secs = 60\nidle_timeout_secs = 60\n",
    );
    let addr = addr(&service);
    let base = service.base.clone();

    // Two connections take both slots (each is answered, so each was accepted and served).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut answer = [0u8; 256];
        let n = s.read(&mut answer).expect("an answer");
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }

    // A third waits: no answer while both slots are held.
    let third = tokio::spawn(get_status(
        format!("{base}/healthz"),
        None,
        Duration::from_secs(60),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served while the limit of 2 was in use"
    );

    // One slot frees: the third is served.
    drop(held.pop());
    let answered = tokio::time::timeout(Duration::from_secs(30), third)
        .await
        .expect("the waiting connection is served once a slot frees")
        .expect("task");
    assert_eq!(answered, Some(200));
    drop(held);
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_take_the_api_token_unless_configured_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start(dir.path(), "");
    let url = format!("{}/metrics", service.base);
    let within = Duration::from_secs(10);
    assert_eq!(get_status(url.clone(), None, within).await, Some(401));
    assert_eq!(
        get_status(url.clone(), Some("wrong-token"), within).await,
        Some(401)
    );
    assert_eq!(get_status(url, Some(API_TOKEN), within).await, Some(200));
    drop(service);

    let open = tempfile::tempdir().expect("temp dir");
    let service = start(open.path(), "metrics_auth = \"none\"\n");
    assert_eq!(
        get_status(format!("{}/metrics", service.base), None, within).await,
        Some(200)
    );
    drop(service);
}
