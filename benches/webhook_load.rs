//! Load benchmark of `closeout serve`'s webhook intake (not a test: it asserts nothing about
//! speed). Starts the real binary on a free port with a throwaway store, posts signed leaver
//! events for `CLOSEOUT_BENCH_SECS` seconds (default 30) from `CLOSEOUT_BENCH_CONCURRENCY`
//! connections (default 32), then reports accepted events per second, latency percentiles, the
//! server's peak resident memory, and whether every accepted event is in the store. Every
//! request has a timeout (`CLOSEOUT_BENCH_REQUEST_TIMEOUT_SECS`, default 10): a server that stops
//! answering makes the bench report the timed-out requests and exit 1, rather than hang.
//!
//!     cargo bench --profile dev --bench webhook_load
//!
//! The events name identities the HR export does not know, so workers skip them without
//! calling a provider: what is measured is intake (verification, parsing, the fsynced insert).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let secs = env_or("CLOSEOUT_BENCH_SECS", 30);
    let concurrency = env_or("CLOSEOUT_BENCH_CONCURRENCY", 32) as usize;
    let request_timeout = Duration::from_secs(env_or("CLOSEOUT_BENCH_REQUEST_TIMEOUT_SECS", 10));
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = env!("CARGO_MANIFEST_DIR");
    std::fs::write(
        dir.path().join("closeout.toml"),
        format!(
            r#"playbook_dir = "{repo}/playbooks"
[source]
path = "{repo}/examples/demo/hr.csv"
[store]
path = "state/closeout.db"
[audit]
path = "state/audit.jsonl"
# Never contacted: the events name unknown identities and are skipped.
[providers.vault]
address = "http://127.0.0.1:9"
token_file = "token"
[serve]
listen = "127.0.0.1:0"
workers = 2
"#
        ),
    )
    .expect("config");
    std::fs::write(dir.path().join("token"), "unused\n").expect("token");
    let mut child = Command::new(env!("CARGO_BIN_EXE_closeout"))
        .current_dir(dir.path())
        .args(["--config", "closeout.toml", "serve"])
        .env("CLOSEOUT_WEBHOOK_SECRETS", SECRET)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start closeout serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut base = String::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(url) = line.strip_prefix("listening on ") {
            base = url.to_string();
            break;
        }
    }
    assert!(!base.is_empty(), "closeout serve did not start");
    let pid = child.id();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let timed_out = Arc::new(AtomicU64::new(0));
    let latencies = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(request_timeout)
            .build()
            .expect("HTTP client");
        let secret = closeout::intake::webhook::WebhookSecret::parse(SECRET).expect("secret");
        let secret = Arc::new(secret);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..concurrency)
            .map(|c| {
                let (client, base, secret) = (client.clone(), base.clone(), secret.clone());
                let (accepted, failed) = (accepted.clone(), failed.clone());
                let timed_out = timed_out.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        n += 1;
                        let id = format!("msg_{c}_{n}");
                        let body =
                            format!(r#"{{"type":"leaver","identity":{{"id":"BENCH-{c}-{n}"}}}}"#);
                        let ts = chrono::Utc::now().timestamp();
                        let sig =
                            closeout::intake::webhook::sign(&secret, &id, ts, body.as_bytes());
                        let start = Instant::now();
                        let r = client
                            .post(format!("{base}/v1/events"))
                            .header("webhook-id", &id)
                            .header("webhook-timestamp", ts.to_string())
                            .header("webhook-signature", sig)
                            .body(body)
                            .send()
                            .await;
                        lat.push(start.elapsed());
                        match r {
                            Ok(r) if r.status().as_u16() == 202 => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) if e.is_timeout() => {
                                timed_out.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    });
    let rss = peak_rss_kib(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();

    let mut latencies = latencies;
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let accepted = accepted.load(Ordering::Relaxed);
    let stored: i64 = rusqlite::Connection::open(dir.path().join("state/closeout.db"))
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM event_queue", [], |r| r.get(0)))
        .unwrap_or(-1);
    println!("webhook intake, {secs} s, {concurrency} connections");
    println!(
        "  accepted {accepted} ({:.0}/s), failed {}",
        accepted as f64 / secs as f64,
        failed.load(Ordering::Relaxed)
    );
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    match rss {
        Some(kib) => println!("  server peak RSS: {:.1} MiB", kib as f64 / 1024.0),
        None => println!("  server peak RSS: unknown (no /proc)"),
    }
    let timed_out = timed_out.load(Ordering::Relaxed);
    if timed_out > 0 {
        println!(
            "  HANG: {timed_out} request(s) got no answer within {} s",
            request_timeout.as_secs()
        );
    }
    println!(
        "  stored events: {stored} ({})",
        if stored == accepted as i64 {
            "every accepted event is in the store"
        } else {
            "MISMATCH: accepted events are missing from the store"
        }
    );
    if timed_out > 0 {
        std::process::exit(1);
    }
}
