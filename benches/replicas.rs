//! Benchmark of `closeout serve` replicas (issue 19; not a test: it asserts nothing about speed).
//! For each setup — one replica on SQLite, then 1, 2 and 3 replicas sharing one PostgreSQL
//! database (a throwaway PostgreSQL 15 cluster from the testkit) — it starts the real binary,
//! posts `CLOSEOUT_BENCH_EVENTS` signed leaver events (default 300) round-robin to the replicas
//! from 16 connections, and waits until every event is finished. It reports intake events per
//! second and processed events per second (first post to last event finished) and checks that
//! every event finished exactly once (claimed once, status `skipped`).
//!
//!     cargo bench --profile dev --bench replicas
//!
//! The events name identities the HR export does not know (over 40 identities, so several per
//! identity), so a worker claims each, opens the engine, and skips it without a provider call:
//! what is measured is the shared queue and the per-event engine work, not provider runs (which
//! would need an emulator and measure it). Each replica has 2 workers.

use closeout::config::{PasswordSource, StoreConfig};
use closeout::store::queue::{EventQueue, QueueStatus};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_closeout"))
        .current_dir(dir)
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
    Replica { child, base }
}

fn config(dir: &std::path::Path, store_section: &str) {
    let repo = env!("CARGO_MANIFEST_DIR");
    std::fs::write(
        dir.join("closeout.toml"),
        format!(
            r#"playbook_dir = "{repo}/playbooks"
[source]
path = "{repo}/examples/demo/hr.csv"
{store_section}
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
    std::fs::write(dir.join("token"), "unused\n").expect("token");
}

struct Outcome {
    intake_per_sec: f64,
    processed_per_sec: f64,
    finished: usize,
    claimed_once: bool,
}

fn run(label: &str, replicas: usize, store: StoreConfig, dir: &std::path::Path) -> Outcome {
    let events = env_or("CLOSEOUT_BENCH_EVENTS", 300) as usize;
    let started: Vec<Replica> = (0..replicas).map(|_| start(dir)).collect();
    let bases: Arc<Vec<String>> = Arc::new(started.iter().map(|r| r.base.clone()).collect());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t0 = Instant::now();
    let label_owned = label.to_string();
    runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let secret =
            Arc::new(closeout::intake::webhook::WebhookSecret::parse(SECRET).expect("secret"));
        let tasks: Vec<_> = (0..16usize)
            .map(|c| {
                let (client, bases, secret) = (client.clone(), bases.clone(), secret.clone());
                let label = label_owned.clone();
                tokio::spawn(async move {
                    let mut i = c;
                    while i < events {
                        let id = format!("bench_{label}_{i}");
                        let body = format!(
                            r#"{{"type":"leaver","identity":{{"id":"BENCH-{}"}}}}"#,
                            i % 41
                        );
                        let ts = chrono::Utc::now().timestamp();
                        let sig =
                            closeout::intake::webhook::sign(&secret, &id, ts, body.as_bytes());
                        let base = &bases[i % bases.len()];
                        let r = client
                            .post(format!("{base}/v1/events"))
                            .header("webhook-id", &id)
                            .header("webhook-timestamp", ts.to_string())
                            .header("webhook-signature", sig)
                            .body(body)
                            .send()
                            .await;
                        assert!(
                            r.as_ref().is_ok_and(|r| r.status().as_u16() == 202),
                            "event {id} not accepted: {r:?}"
                        );
                        i += 16;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("poster");
        }
    });
    let intake = t0.elapsed();
    // The client blocks on a runtime of its own: outside the bench's.
    let queue = EventQueue::open_config(&store).expect("open the queue");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let counts = queue.counts().expect("counts");
        let finished: u64 = counts
            .iter()
            .filter(|(s, _)| s.is_finished())
            .map(|(_, n)| n)
            .sum();
        if finished as usize >= events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: events not finished in 10 min"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let processed = t0.elapsed();
    let all = queue.list(events + 10, None).expect("list");
    let claimed_once = all
        .iter()
        .all(|e| e.attempts == 1 && e.status == QueueStatus::Skipped);
    drop(started);
    Outcome {
        intake_per_sec: events as f64 / intake.as_secs_f64(),
        processed_per_sec: events as f64 / processed.as_secs_f64(),
        finished: all.len(),
        claimed_once,
    }
}

fn main() {
    let events = env_or("CLOSEOUT_BENCH_EVENTS", 300);
    println!("closeout serve replicas, {events} events (2 workers per replica)");
    println!("| store | replicas | intake events/s | processed events/s | every event once |");
    println!("| --- | --- | --- | --- | --- |");
    let report = |label: &str, replicas: usize, o: &Outcome| {
        println!(
            "| {label} | {replicas} | {:.0} | {:.1} | {} |",
            o.intake_per_sec,
            o.processed_per_sec,
            if o.claimed_once && o.finished == events as usize {
                "yes".to_string()
            } else {
                format!("NO ({} stored)", o.finished)
            }
        );
    };
    {
        let dir = tempfile::tempdir().expect("temp dir");
        config(dir.path(), "[store]\npath = \"state/closeout.db\"");
        let store = StoreConfig::sqlite(dir.path().join("state/closeout.db"));
        let o = run("sqlite", 1, store, dir.path());
        report("SQLite", 1, &o);
    }
    let server = closeout_testkit::PostgresServer::shared();
    for replicas in 1..=3usize {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("bench_{}_{replicas}", std::process::id());
        server.psql(&format!("CREATE DATABASE {db}"));
        let pw = dir.path().join("pg-password");
        std::fs::write(&pw, format!("{}\n", server.superuser_password())).expect("password");
        let url = format!(
            "postgres://{}@127.0.0.1:{}/{db}",
            closeout_testkit::postgres::SUPERUSER,
            server.port()
        );
        config(
            dir.path(),
            &format!(
                "[store]\nurl = \"{url}\"\npassword_file = \"{}\"",
                pw.display()
            ),
        );
        let store = StoreConfig::postgres(&url, PasswordSource::File(pw));
        let o = run(&format!("pg{replicas}"), replicas, store, dir.path());
        report("PostgreSQL", replicas, &o);
    }
}
