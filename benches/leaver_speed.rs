//! The leaver benchmark of issue 15 (docs/performance.md): Closeout against the sequential
//! script a team writes today, both through proxies adding the same latency to every call to
//! moto (AWS) and OpenBao (Vault). Not a test: it asserts no speed, but every run's end state is
//! read back and a leaver left open fails the bench loudly.
//!
//!     cargo bench --profile dev --bench leaver_speed
//!     CLOSEOUT_BENCH_N=40 CLOSEOUT_BENCH_M=50 cargo bench --profile dev --bench leaver_speed
//!
//! For each N (the leaver's credentials, `CLOSEOUT_BENCH_N`, default `10,40,160`) and M (other
//! principals, `CLOSEOUT_BENCH_M`, default `50,500`), twice over a fresh world (a new moto and a
//! new OpenBao dev server, seeded directly by `scripts/bench/leaver_world.py seed`):
//!
//! 1. `closeout apply leaver --identity E1001` (the real binary, the shipped provider limits:
//!    no `max_in_flight`/`requests_per_second`/`[execution]` in its config) through the
//!    proxies: wall time, calls (the proxies' request logs), time to containment (the run
//!    report's `time_to_containment_seconds`), peak RSS (`VmHWM` of the process, sampled every
//!    20 ms while it runs). Its report must say `closed`.
//! 2. `scripts/bench/leaver_script.py` (boto3 + hvac, one call at a time) through the proxies of
//!    the other world: wall time and calls. It reads its own end state back and exits non-zero
//!    when the leaver is not closed.
//!
//! `CLOSEOUT_BENCH_ACCESSORS=K` runs, instead, issue 15's accessor-scan case: the leaver
//! (N = 10, M = 50) among K more Vault tokens, Closeout against the sequential lookup loop alone,
//! at `CLOSEOUT_BENCH_ACCESSOR_LATENCIES` (default `0,50`) ms per call.
//!
//! After each, `leaver_world.py check` reads both emulators back directly (not through the
//! proxies) and fails unless the leaver is closed and the other principals are untouched.
//!
//! `CLOSEOUT_BENCH_TIMINGS=1` runs Closeout with `--timings` and prints its per-phase,
//! per-provider table (calls, in-flight time, gate wait, throttles) for each run;
//! `CLOSEOUT_BENCH_KEEP=1` keeps each world's directory; `CLOSEOUT_BENCH_OPS=1` prints each
//! run's calls per operation (what grows with M shows by name).
//!
//! The latency is `CLOSEOUT_BENCH_LATENCY_MS` (default 50), added by
//! `closeout_testkit::proxy::FaultProxy` to every request (`Fault::Latency`, `When::Always`).
//! The critical-path bound is [`CRITICAL_ROUNDS`] dependent round trips × the latency.
//!
//! The leaver playbook stops a plan of more than 200 actions for an explicit `--confirm-actions`
//! (its blast-radius limit); the bench uses a copy of the shipped playbooks with that limit
//! raised to 100,000 so N = 160 runs in one apply. No other setting differs from the shipped one.

use closeout_testkit::proxy::{Fault, FaultProxy, Rule, When};
use closeout_testkit::{MotoServer, OpenBaoServer};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const LEAVER: &str = "E1001";

/// Dependent round trips on the longest chain of the benchmark's leaver, each call needing the
/// previous one's answer (docs/performance.md, "The critical-path bound"): list the KV root, list
/// `owned/`, read each key's metadata (owner), read its current version (its fields), write the
/// new version, read the version back. Every other chain (AWS secrets: list, read resource
/// policy, put value, read back; tokens: list accessors, look up, revoke, look up again) is
/// shorter and runs alongside.
const CRITICAL_ROUNDS: u32 = 6;

fn list_env(key: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{key}: {x:?} is not a number"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

fn python() -> PathBuf {
    let python = closeout_testkit::venv_dir().join("bin/python");
    assert!(
        python.exists(),
        "{} not found: run scripts/setup.sh (or set CLOSEOUT_VENV) for boto3, hvac, moto and bao",
        python.display()
    );
    python
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// A fresh moto and OpenBao, seeded, with latency proxies in front of them.
struct World {
    moto: MotoServer,
    bao: OpenBaoServer,
    dir: tempfile::TempDir,
    aws_proxy: FaultProxy,
    vault_proxy: FaultProxy,
}

impl World {
    async fn new(n: usize, m: usize, extra_tokens: usize, latency_ms: u64) -> World {
        let (moto, bao) =
            tokio::task::spawn_blocking(|| (MotoServer::start(), OpenBaoServer::start()))
                .await
                .expect("start the emulators");
        // CLOSEOUT_BENCH_KEEP=1 keeps each world's directory (manifest, config, Closeout's
        // report.json, journal and audit log) for a look afterwards.
        let dir = tempfile::Builder::new()
            .prefix("leaver-bench-")
            .disable_cleanup(std::env::var_os("CLOSEOUT_BENCH_KEEP").is_some())
            .tempdir()
            .expect("temp dir");
        let seeded = Instant::now();
        let out = Command::new(python())
            .arg(format!("{REPO}/scripts/bench/leaver_world.py"))
            .args(["seed", "--n", &n.to_string(), "--m", &m.to_string()])
            .args(["--extra-tokens", &extra_tokens.to_string()])
            .arg("--manifest")
            .arg(dir.path().join("manifest.json"))
            .envs(aws_env(&moto.endpoint()))
            .env("VAULT_ADDR", bao.address())
            .env("VAULT_TOKEN", bao.root_token())
            .output()
            .expect("run leaver_world.py seed");
        assert!(
            out.status.success(),
            "seeding N={n} M={m} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "  seeded N={n} M={m} in {:.1} s",
            seeded.elapsed().as_secs_f64()
        );
        let rules = if latency_ms == 0 {
            Vec::new()
        } else {
            vec![Rule::new(
                When::Always,
                Fault::Latency { millis: latency_ms },
            )]
        };
        let aws_proxy = FaultProxy::start(&moto.endpoint()).await;
        aws_proxy.set_rules(rules.clone());
        let vault_proxy = FaultProxy::start(&bao.address()).await;
        vault_proxy.set_rules(rules);
        World {
            moto,
            bao,
            dir,
            aws_proxy,
            vault_proxy,
        }
    }

    fn calls(&self) -> u64 {
        self.aws_proxy.requests() + self.vault_proxy.requests()
    }

    /// `CLOSEOUT_BENCH_OPS=1`: the calls so far per operation, most first (AWS: the `Action` or
    /// `X-Amz-Target`; Vault: method and path with every segment naming one object, such as a
    /// principal, a key or an id, replaced by `*`), so what grows with M shows by name.
    fn print_ops(&self, who: &str) {
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        for (side, proxy) in [("aws", &self.aws_proxy), ("vault", &self.vault_proxy)] {
            for entry in proxy.log() {
                *counts
                    .entry(format!("{side} {}", op_shape(&entry.op)))
                    .or_default() += 1;
            }
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        eprintln!("  {who}: calls per operation");
        for (op, n) in counts {
            eprintln!("    {n:>6}  {op}");
        }
    }

    /// `leaver_world.py check`, straight to the emulators; panics unless closed (only her tokens
    /// revoked, with `tokens_only`).
    fn check(&self, who: &str, tokens_only: bool) {
        let out = Command::new(python())
            .arg(format!("{REPO}/scripts/bench/leaver_world.py"))
            .arg("check")
            .arg("--manifest")
            .arg(self.dir.path().join("manifest.json"))
            .args(tokens_only.then_some("--tokens-only"))
            .envs(aws_env(&self.moto.endpoint()))
            .env("VAULT_ADDR", self.bao.address())
            .env("VAULT_TOKEN", self.bao.root_token())
            .output()
            .expect("run leaver_world.py check");
        if !out.status.success() {
            panic!(
                "after {who}, the leaver is NOT closed (world {}; CLOSEOUT_BENCH_KEEP=1 keeps it):\n{}{}",
                self.dir.path().display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprint!("  {who}: {}", String::from_utf8_lossy(&out.stdout));
    }

    /// Closeout's config: both providers through the proxies, shipped limits, the shipped
    /// playbooks but for the blast-radius limit.
    fn write_config(&self) -> PathBuf {
        let playbooks = self.dir.path().join("playbooks");
        copy_playbooks(&playbooks);
        let token_file = self.dir.path().join("vault-token");
        std::fs::write(&token_file, format!("{}\n", self.bao.root_token())).expect("token file");
        let config = format!(
            r#"playbook_dir = "{playbooks}"

[source]
path = "{REPO}/examples/demo/hr.csv"

[store]
path = "state/closeout.db"

[audit]
path = "state/audit.jsonl"

[[accept_unverified]]
provider = "aws"
kind = "service-credential"
reason = "moto does not serve ListServiceSpecificCredentials; the bench issues none"

[providers.aws]
region = "us-east-1"
endpoint_url = "{aws}"

[providers.vault]
address = "{vault}"
token_file = "{token_file}"
audit_log = "{audit_log}"
audit_device = "{device}"
"#,
            playbooks = playbooks.display(),
            aws = self.aws_proxy.endpoint(),
            vault = self.vault_proxy.endpoint(),
            token_file = token_file.display(),
            audit_log = self.bao.audit_log().display(),
            device = closeout_testkit::openbao::AUDIT_DEVICE,
        );
        let path = self.dir.path().join("closeout.toml");
        std::fs::write(&path, config).expect("write config");
        path
    }
}

fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
    ]
}

/// An operation with the segments of a Vault path that name one object (after `id/`, `name/`,
/// `users/`, `accessor`-like and KV paths under `data/` or `metadata/`) replaced by `*`.
fn op_shape(op: &str) -> String {
    let Some((method, path)) = op.split_once(' ') else {
        return op.to_string();
    };
    let mut out = Vec::new();
    let mut generic = false;
    for seg in path.split('/') {
        if generic && !seg.is_empty() {
            if out.last() != Some(&"*") {
                out.push("*");
            }
            continue;
        }
        out.push(seg);
        if matches!(
            seg,
            "id" | "name" | "users" | "data" | "metadata" | "role" | "entity-alias" | "policy"
        ) {
            generic = true;
        }
    }
    format!("{method} {}", out.join("/"))
}

/// The shipped playbooks with the leaver's blast-radius limit raised (see the module docs).
fn copy_playbooks(to: &Path) {
    std::fs::create_dir_all(to).expect("playbook dir");
    for entry in std::fs::read_dir(format!("{REPO}/playbooks")).expect("read playbooks") {
        let entry = entry.expect("playbook entry");
        let text = std::fs::read_to_string(entry.path()).expect("read a playbook");
        let text = if entry.file_name() == "leaver.yaml" {
            assert!(
                text.contains("max_actions: 200"),
                "playbooks/leaver.yaml no longer says `max_actions: 200`: update the bench"
            );
            text.replace("max_actions: 200", "max_actions: 100000")
        } else {
            text
        };
        std::fs::write(to.join(entry.file_name()), text).expect("write a playbook");
    }
}

struct CloseoutRun {
    wall: Duration,
    calls: u64,
    containment_s: Option<f64>,
    peak_rss_kib: u64,
}

async fn run_closeout(world: &World) -> CloseoutRun {
    let config = world.write_config();
    let dir = world.dir.path().to_path_buf();
    let timings = std::env::var_os("CLOSEOUT_BENCH_TIMINGS").is_some();
    let started = Instant::now();
    let (output, peak) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_closeout"))
            .current_dir(&dir)
            .arg("--config")
            .arg(&config)
            .args([
                "apply",
                "leaver",
                "--identity",
                LEAVER,
                "--yes",
                "--format",
                "json",
            ])
            .args(timings.then_some("--timings"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_PROFILE")
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_ADDR")
            .env_remove("RUST_LOG")
            .env("CLOSEOUT_ACTOR", "leaver-bench")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start closeout");
        let pid = child.id();
        // stdout and stderr are drained on their own threads so a full pipe cannot block it.
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut buf).map(|_| buf)
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut stderr, &mut buf).map(|_| buf)
        });
        let mut peak = 0;
        let status = loop {
            if let Some(hwm) = vm_hwm_kib(pid) {
                peak = peak.max(hwm);
            }
            match child.try_wait().expect("wait for closeout") {
                Some(status) => break status,
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let stdout = out_reader
            .join()
            .expect("stdout reader")
            .expect("read stdout");
        let stderr = err_reader
            .join()
            .expect("stderr reader")
            .expect("read stderr");
        ((status, stdout, stderr), peak)
    })
    .await
    .expect("closeout runner");
    let wall = started.elapsed();
    let (status, stdout, stderr) = output;
    std::fs::write(world.dir.path().join("report.json"), &stdout).expect("keep the report");
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "closeout apply ({status}) printed no JSON report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        )
    });
    assert_eq!(
        report["status"],
        "closed",
        "closeout apply did not close the leaver ({status}); open: {}\nstderr:\n{}",
        report["open"],
        String::from_utf8_lossy(&stderr)
    );
    if timings {
        // `--timings` prints its table last on stderr (docs/observability.md).
        let stderr = String::from_utf8_lossy(&stderr);
        if let Some(at) = stderr.rfind("timings\n") {
            eprint!("{}", &stderr[at..]);
        }
    }
    if std::env::var_os("CLOSEOUT_BENCH_OPS").is_some() {
        world.print_ops("closeout");
    }
    CloseoutRun {
        wall,
        calls: world.calls(),
        containment_s: report["time_to_containment_seconds"].as_f64(),
        peak_rss_kib: peak,
    }
}

async fn run_script(world: &World, tokens_only: bool) -> (Duration, u64) {
    let aws = world.aws_proxy.endpoint();
    let vault = world.vault_proxy.endpoint();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(format!("{REPO}/scripts/bench/leaver_script.py"))
            .args(tokens_only.then_some("--tokens-only"))
            .envs(aws_env(&aws))
            .env("VAULT_ADDR", vault)
            .env("VAULT_TOKEN", closeout_testkit::openbao::ROOT_TOKEN)
            .output()
            .expect("run leaver_script.py")
    })
    .await
    .expect("script runner");
    let wall = started.elapsed();
    if std::env::var_os("CLOSEOUT_BENCH_OPS").is_some() {
        world.print_ops("the script");
    }
    assert!(
        out.status.success(),
        "the sequential script did not close the leaver:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, world.calls())
}

struct Row {
    n: usize,
    m: usize,
    closeout: CloseoutRun,
    script_wall: Duration,
    script_calls: u64,
}

/// The accessor-scan case (`CLOSEOUT_BENCH_ACCESSORS=K`): the leaver (N = 10, M = 50) among K
/// more tokens, Closeout's whole leaver close-out against the sequential lookup loop alone
/// (`leaver_script.py --tokens-only`), at each latency of `CLOSEOUT_BENCH_ACCESSOR_LATENCIES`
/// (default `0,50` ms).
fn accessors_case(runtime: &tokio::runtime::Runtime, extra: usize) {
    let latencies = list_env("CLOSEOUT_BENCH_ACCESSOR_LATENCIES", &[0, 50]);
    let mut rows = Vec::new();
    for &latency in &latencies {
        let latency = latency as u64;
        eprintln!("{extra} extra Vault tokens, {latency} ms per call:");
        let row = runtime.block_on(async {
            let world = World::new(10, 50, extra, latency).await;
            let closeout = run_closeout(&world).await;
            world.check("closeout apply", false);
            drop(world);
            let world = World::new(10, 50, extra, latency).await;
            let (loop_wall, loop_calls) = run_script(&world, true).await;
            world.check("the lookup loop", true);
            (latency, closeout, loop_wall, loop_calls)
        });
        eprintln!(
            "  closeout {:.2} s / {} calls; lookup loop {:.2} s / {} calls",
            row.1.wall.as_secs_f64(),
            row.1.calls,
            row.2.as_secs_f64(),
            row.3
        );
        rows.push(row);
    }
    println!();
    println!("Accessor scan: the leaver (N = 10, M = 50) among {extra} more Vault tokens");
    println!();
    println!("| latency | Closeout wall (whole leaver) | lookup loop wall | ratio | calls (Closeout / loop) | time to containment | peak RSS |");
    println!("|---|---|---|---|---|---|---|");
    for (latency, c, loop_wall, loop_calls) in &rows {
        println!(
            "| {latency} ms | {:.2} s | {:.2} s | {:.2} | {} / {} | {} | {:.1} MiB |",
            c.wall.as_secs_f64(),
            loop_wall.as_secs_f64(),
            c.wall.as_secs_f64() / loop_wall.as_secs_f64(),
            c.calls,
            loop_calls,
            c.containment_s
                .map(|s| format!("{s:.2} s"))
                .unwrap_or_else(|| "-".into()),
            c.peak_rss_kib as f64 / 1024.0,
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this target without it,
    // and a half-hour benchmark is no test: it says so and does nothing.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("leaver_speed is a benchmark: run it with `cargo bench --profile dev --bench leaver_speed`");
        return;
    }
    let ns = list_env("CLOSEOUT_BENCH_N", &[10, 40, 160]);
    let ms = list_env("CLOSEOUT_BENCH_M", &[50, 500]);
    let latency_ms = std::env::var("CLOSEOUT_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Some(extra) = std::env::var("CLOSEOUT_BENCH_ACCESSORS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        accessors_case(&runtime, extra);
        return;
    }
    let mut rows = Vec::new();
    for &m in &ms {
        for &n in &ns {
            eprintln!("N={n} M={m}, {latency_ms} ms per call:");
            let row = runtime.block_on(async {
                let world = World::new(n, m, 0, latency_ms).await;
                let closeout = run_closeout(&world).await;
                world.check("closeout apply", false);
                drop(world);
                let world = World::new(n, m, 0, latency_ms).await;
                let (script_wall, script_calls) = run_script(&world, false).await;
                world.check("the sequential script", false);
                Row {
                    n,
                    m,
                    closeout,
                    script_wall,
                    script_calls,
                }
            });
            eprintln!(
                "  closeout {:.2} s / {} calls; script {:.2} s / {} calls",
                row.closeout.wall.as_secs_f64(),
                row.closeout.calls,
                row.script_wall.as_secs_f64(),
                row.script_calls
            );
            rows.push(row);
        }
    }
    let bound = Duration::from_millis(latency_ms * u64::from(CRITICAL_ROUNDS));
    println!();
    println!(
        "Leaver benchmark: {latency_ms} ms added to every call; critical-path bound = {CRITICAL_ROUNDS} rounds x {latency_ms} ms = {:.2} s",
        bound.as_secs_f64()
    );
    println!();
    println!("| N | M | Closeout wall | script wall | ratio | calls (Closeout / script) | bound | Closeout ÷ bound | time to containment | peak RSS |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let c = &r.closeout;
        println!(
            "| {} | {} | {:.2} s | {:.2} s | {:.2} | {} / {} | {:.2} s | {:.1} | {} | {:.1} MiB |",
            r.n,
            r.m,
            c.wall.as_secs_f64(),
            r.script_wall.as_secs_f64(),
            c.wall.as_secs_f64() / r.script_wall.as_secs_f64(),
            c.calls,
            r.script_calls,
            bound.as_secs_f64(),
            c.wall.as_secs_f64() / bound.as_secs_f64(),
            c.containment_s
                .map(|s| format!("{s:.2} s"))
                .unwrap_or_else(|| "-".into()),
            c.peak_rss_kib as f64 / 1024.0,
        );
    }
}
