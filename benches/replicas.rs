//! Benchmark of `closeout serve` replicas (issue 19; not a test: it asserts nothing about speed).
//! For each setup — one replica on SQLite, then 1, 2 and 3 replicas sharing one PostgreSQL
//! database (a throwaway PostgreSQL 15 cluster from the testkit) — it starts the real binary and
//! measures two loads, posted round-robin to the replicas from 16 connections, each until every
//! event is finished:
//!
//! - **queue**: `CLOSEOUT_BENCH_EVENTS` signed leaver events (default 300) naming identities the HR
//!   export does not know (41 identities, several events each): a worker claims each, opens the
//!   engine and skips it without a provider call. Intake events/s and processed events/s measure
//!   the shared queue and the per-event engine work. Every event must be claimed once and skipped.
//! - **runs**: `CLOSEOUT_BENCH_RUNS` signed leaver and incident events (default 48) for the eight
//!   humans of the demo organisation, against a fresh moto seeded with it (`examples/demo/
//!   seed_aws.py`): real runs (resolve, plan, act, verify against moto). Runs per minute is the
//!   runs in the journal over the time from the first post to the last event finished. The first
//!   run of each identity acts; later ones find her closed (resolve and verify only).
//!
//!     cargo bench --profile dev --bench replicas
//!
//! `CLOSEOUT_BENCH_BIN` runs another `closeout` binary (e.g. an older commit's, to compare the
//! SQLite path; it must accept the same config), `CLOSEOUT_BENCH_SETUPS=sqlite,pg3` measures
//! only the setups named (`sqlite`, `pg1`, `pg2`, `pg3`), `CLOSEOUT_BENCH_LOG_DIR` keeps each replica's `info` log there. Each replica has 2
//! workers.

use closeout::config::{PasswordSource, StoreConfig};
use closeout::store::queue::{EventQueue, QueueStatus};
use closeout_testkit::MotoServer;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// The humans of the demo organisation (not the protected break-glass admin, whose leaver waits
/// for an approval). Frank (E0001) is left out: with no manager, his leaver fails once the service-account
/// ownership handed up the chain reaches him (the run says so), which is right but not a run
/// rate.
const HUMANS: [&str; 7] = [
    "E1000", "E1001", "E1002", "E1003", "E1005", "E1006", "E1007",
];

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn binary() -> PathBuf {
    std::env::var_os("CLOSEOUT_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_closeout")))
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

/// A replica's stderr: a file under `CLOSEOUT_BENCH_LOG_DIR` with `info` logs when it is set
/// (to see what a replica did), else nowhere.
fn replica_log(name: &str) -> (Stdio, &'static str) {
    match std::env::var_os("CLOSEOUT_BENCH_LOG_DIR") {
        Some(dir) => {
            let path = Path::new(&dir).join(format!("{name}.log"));
            let file = std::fs::File::create(&path).expect("replica log file");
            (Stdio::from(file), "info")
        }
        None => (Stdio::null(), "error"),
    }
}

fn start(dir: &Path, name: &str) -> Replica {
    let (stderr, level) = replica_log(name);
    let mut child = Command::new(binary())
        .current_dir(dir)
        .args(["--config", "closeout.toml", "serve"])
        .env("CLOSEOUT_WEBHOOK_SECRETS", SECRET)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("RUST_LOG", level)
        .stdout(Stdio::piped())
        .stderr(stderr)
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

/// The providers section of a load: none contacted for `queue`, moto for `runs`.
fn config(dir: &Path, store_section: &str, providers: &str) {
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
{providers}
[serve]
listen = "127.0.0.1:0"
workers = 2
auto_apply = ["leaver", "incident"]
"#
        ),
    )
    .expect("config");
    std::fs::write(dir.join("token"), "unused\n").expect("token");
}

/// The queue load's providers: never contacted (the events name unknown identities).
const NO_PROVIDER: &str = r#"[providers.vault]
address = "http://127.0.0.1:9"
token_file = "token"
"#;

/// The runs load's providers: a fresh moto seeded with the demo organisation.
fn seeded_moto() -> (MotoServer, String) {
    let moto = MotoServer::start();
    let repo = env!("CARGO_MANIFEST_DIR");
    let canary = tempfile::NamedTempFile::new().expect("canary file");
    let out = Command::new(closeout_testkit::venv_dir().join("bin/python"))
        .arg(format!("{repo}/examples/demo/seed_aws.py"))
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("CLOSEOUT_CANARY_FILE", canary.path())
        .output()
        .expect("run the seed script (scripts/setup.sh creates the venv)");
    assert!(
        out.status.success(),
        "seeding moto failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let section = format!(
        r#"[providers.aws]
region = "us-east-1"
endpoint_url = "{}"
[[accept_unverified]]
provider = "aws"
kind = "service-credential"
reason = "moto does not serve ListServiceSpecificCredentials; the bench issues none"
"#,
        moto.endpoint()
    );
    (moto, section)
}

/// Post `events` (id, body) round-robin to the replicas from 16 connections.
fn post_all(bases: &[String], events: Vec<(String, String)>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (bases, events) = (Arc::new(bases.to_vec()), Arc::new(events));
    runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let secret =
            Arc::new(closeout::intake::webhook::WebhookSecret::parse(SECRET).expect("secret"));
        let tasks: Vec<_> = (0..16usize)
            .map(|c| {
                let (client, bases, secret, events) = (
                    client.clone(),
                    bases.clone(),
                    secret.clone(),
                    events.clone(),
                );
                tokio::spawn(async move {
                    for i in (c..events.len()).step_by(16) {
                        let (id, body) = &events[i];
                        let ts = chrono::Utc::now().timestamp();
                        let sig = closeout::intake::webhook::sign(&secret, id, ts, body.as_bytes());
                        let r = client
                            .post(format!("{}/v1/events", bases[i % bases.len()]))
                            .header("webhook-id", id)
                            .header("webhook-timestamp", ts.to_string())
                            .header("webhook-signature", sig)
                            .body(body.clone())
                            .send()
                            .await;
                        assert!(
                            r.as_ref().is_ok_and(|r| r.status().as_u16() == 202),
                            "event {id} not accepted: {r:?}"
                        );
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("poster");
        }
    });
}

/// Wait until `n` events of the queue are finished.
fn wait_finished(queue: &EventQueue, n: usize, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let finished: u64 = queue
            .counts()
            .expect("counts")
            .iter()
            .filter(|(s, _)| s.is_finished())
            .map(|(_, n)| n)
            .sum();
        if finished as usize >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: events not finished in 15 min"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One setup's figures.
struct Outcome {
    intake_per_sec: f64,
    processed_per_sec: f64,
    /// Every queue event stored once, claimed once and skipped.
    queue_once: bool,
    runs: usize,
    runs_per_min: f64,
    /// Every runs-load event finished (`done`, or `skipped` when an earlier event of the
    /// identity covered it), none failed, none claimed twice.
    runs_done: bool,
}

/// Where a setup keeps its state.
#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A new store for one load in `dir`: its `[store]` section and its config. On PostgreSQL, a new
/// database `name` on the testkit's shared cluster, the password in a file in `dir`.
fn new_store(backend: Backend, dir: &Path, name: &str) -> (String, StoreConfig) {
    match backend {
        Backend::Sqlite => (
            "[store]\npath = \"state/closeout.db\"".to_string(),
            StoreConfig::sqlite(dir.join("state/closeout.db")),
        ),
        Backend::Postgres => {
            let pw = dir.join("pg-password");
            let url = closeout_testkit::PostgresServer::shared()
                .new_database(&format!("bench_{}_{name}", std::process::id()), &pw);
            (
                format!(
                    "[store]\nurl = \"{url}\"\npassword_file = \"{}\"",
                    pw.display()
                ),
                StoreConfig::postgres(&url, PasswordSource::File(pw)),
            )
        }
    }
}

/// Both loads on one setup: `replicas` processes on a new store of `backend` for each.
fn measure(label: &str, replicas: usize, backend: Backend) -> Outcome {
    // The queue load.
    let dir = tempfile::tempdir().expect("temp dir");
    let (section, store) = new_store(backend, dir.path(), &format!("{label}_queue"));
    config(dir.path(), &section, NO_PROVIDER);
    let events = env_or("CLOSEOUT_BENCH_EVENTS", 300) as usize;
    let queue_events: Vec<(String, String)> = (0..events)
        .map(|i| {
            (
                format!("bench_{label}_{i}"),
                format!(
                    r#"{{"type":"leaver","identity":{{"id":"BENCH-{}"}}}}"#,
                    i % 41
                ),
            )
        })
        .collect();
    let started: Vec<Replica> = (0..replicas)
        .map(|n| start(dir.path(), &format!("{label}-queue-{n}")))
        .collect();
    let bases: Vec<String> = started.iter().map(|r| r.base.clone()).collect();
    let queue = EventQueue::open_config(&store).expect("open the queue");
    let t0 = Instant::now();
    post_all(&bases, queue_events);
    let intake = t0.elapsed();
    wait_finished(&queue, events, label);
    let processed = t0.elapsed();
    let all = queue.list(events + 10, None).expect("list");
    let queue_once = all.len() == events
        && all
            .iter()
            .all(|e| e.attempts == 1 && e.status == QueueStatus::Skipped);
    drop(started);

    // The runs load, on a second database/file and a fresh seeded moto.
    let dir = tempfile::tempdir().expect("temp dir");
    let (_moto, providers) = seeded_moto();
    let (section, store) = new_store(backend, dir.path(), &format!("{label}_runs"));
    config(dir.path(), &section, &providers);
    let n = env_or("CLOSEOUT_BENCH_RUNS", 48) as usize;
    let run_events: Vec<(String, String)> = (0..n)
        .map(|i| {
            let kind = if i % 3 == 2 { "incident" } else { "leaver" };
            let who = HUMANS[i % HUMANS.len()];
            (
                format!("run_{label}_{i}"),
                format!(r#"{{"type":"{kind}","identity":{{"id":"{who}"}}}}"#),
            )
        })
        .collect();
    let started: Vec<Replica> = (0..replicas)
        .map(|n| start(dir.path(), &format!("{label}-runs-{n}")))
        .collect();
    let bases: Vec<String> = started.iter().map(|r| r.base.clone()).collect();
    let queue = EventQueue::open_config(&store).expect("open the queue");
    let t0 = Instant::now();
    post_all(&bases, run_events);
    wait_finished(&queue, n, label);
    let elapsed = t0.elapsed();
    let all = queue.list(n + 10, None).expect("list");
    let runs = all.iter().filter(|e| e.run_id.is_some()).count();
    let runs_done = all.len() == n
        && all
            .iter()
            .all(|e| e.attempts == 1 && e.status != QueueStatus::Failed);
    for e in all
        .iter()
        .filter(|e| e.attempts != 1 || e.status == QueueStatus::Failed)
    {
        eprintln!(
            "{label}: event {} ({}) {} after {} claims: {}",
            e.seq,
            e.event.identity,
            e.status.as_str(),
            e.attempts,
            e.message.as_deref().unwrap_or("")
        );
    }
    drop(started);
    Outcome {
        intake_per_sec: events as f64 / intake.as_secs_f64(),
        processed_per_sec: events as f64 / processed.as_secs_f64(),
        queue_once,
        runs,
        runs_per_min: runs as f64 * 60.0 / elapsed.as_secs_f64(),
        runs_done,
    }
}

fn main() {
    let events = env_or("CLOSEOUT_BENCH_EVENTS", 300);
    let runs = env_or("CLOSEOUT_BENCH_RUNS", 48);
    println!(
        "closeout serve replicas ({}): queue load {events} skipped events, runs load {runs} \
         leaver/incident events against moto; 2 workers per replica",
        binary().display()
    );
    println!(
        "| store | replicas | intake events/s | processed events/s | runs | runs/min | every event once |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let setups = [
        ("SQLite", "sqlite", 1, Backend::Sqlite),
        ("PostgreSQL", "pg1", 1, Backend::Postgres),
        ("PostgreSQL", "pg2", 2, Backend::Postgres),
        ("PostgreSQL", "pg3", 3, Backend::Postgres),
    ];
    // `CLOSEOUT_BENCH_SETUPS=sqlite` (say): only these setups (e.g. for a binary without
    // PostgreSQL).
    let only = std::env::var("CLOSEOUT_BENCH_SETUPS").unwrap_or_default();
    let chosen = |label: &str| only.is_empty() || only.split(',').any(|l| l.trim() == label);
    for &(name, label, replicas, backend) in setups.iter().filter(|s| chosen(s.1)) {
        let o = measure(label, replicas, backend);
        println!(
            "| {name} | {replicas} | {:.0} | {:.1} | {} | {:.0} | {} |",
            o.intake_per_sec,
            o.processed_per_sec,
            o.runs,
            o.runs_per_min,
            match (o.queue_once, o.runs_done) {
                (true, true) => "yes",
                (false, _) => "NO (queue load)",
                (_, false) => "NO (runs load)",
            }
        );
    }
}
