//! Resolution over many token accessors: seeds `CLOSEOUT_BENCH_TOKENS` tokens (default 20,000;
//! one in a hundred owned by the person through token metadata) in a fresh OpenBao dev server,
//! then reports the provider's resolution time and lookups per second (bounded concurrent lookups
//! through the gate) beside a plain sequential loop of `lookup-accessor` over the same accessors.

use closeout_contract::{Identity, IdentityKind, IdentityStatus, Provider, ResolveContext};
use closeout_testkit::OpenBaoServer;
use closeout_vault::{VaultConfig, VaultProvider};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::time::Instant;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("CLOSEOUT_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let server = OpenBaoServer::start();
    let addr = server.address();
    let http = reqwest::Client::new();
    let t = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (http, addr) = (http.clone(), addr.clone());
            async move {
                let meta = if i % 100 == 0 {
                    json!({"owner": "E100"})
                } else {
                    json!({"owner": format!("E{}", 1000 + i)})
                };
                let r = http
                    .post(format!("{addr}/v1/auth/token/create"))
                    .header("X-Vault-Token", "root")
                    .json(&json!({"policies": ["default"], "meta": meta, "ttl": "2h"}))
                    .send()
                    .await
                    .expect("token create");
                assert!(r.status().is_success(), "token create: {}", r.status());
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    eprintln!("seeded {n} tokens in {:.1?}", t.elapsed());

    let dir = std::env::temp_dir().join(format!("closeout-vault-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "root\n").unwrap();
    // The shipped limits (VaultConfig::default), so the figures are what a user gets.
    let defaults = VaultConfig::default();
    let max_in_flight = defaults.max_in_flight;
    let requests_per_second = defaults.requests_per_second;
    let provider = VaultProvider::connect(VaultConfig {
        address: Some(addr.clone()),
        token_file: Some(file),
        ..defaults
    })
    .await
    .unwrap();
    let ctx = ResolveContext {
        identity: Identity {
            id: "E100".into(),
            email: "alice@example.com".into(),
            name: "Alice".into(),
            kind: IdentityKind::Human,
            status: IdentityStatus::Terminated,
            manager: None,
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        },
        cutoff: None,
    };
    let rss_before = peak_rss_kib();
    let t = Instant::now();
    let r = provider.resolve(&ctx).await.expect("resolve");
    let resolved = t.elapsed();
    let rss_after = peak_rss_kib();
    let tokens = r.findings.iter().filter(|f| f.kind == "token").count();
    // n seeded + the root token.
    let lookups = n + 1;

    let t = Instant::now();
    let list: Value = http
        .request(
            "LIST".parse().unwrap(),
            format!("{addr}/v1/auth/token/accessors"),
        )
        .header("X-Vault-Token", "root")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut owned = 0;
    for acc in list["data"]["keys"].as_array().unwrap() {
        let v: Value = http
            .post(format!("{addr}/v1/auth/token/lookup-accessor"))
            .header("X-Vault-Token", "root")
            .json(&json!({"accessor": acc}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["data"]["meta"]["owner"] == "E100" {
            owned += 1;
        }
    }
    let sequential = t.elapsed();
    assert_eq!(tokens, owned, "the provider and the loop disagree");
    println!("token_scan: {lookups} accessors, {tokens} owned by the person");
    println!(
        "  provider resolve (shipped defaults: max_in_flight {max_in_flight}, {requests_per_second} rps): {:.2?}, {:.0} lookups/s",
        resolved,
        lookups as f64 / resolved.as_secs_f64()
    );
    println!(
        "  sequential loop:                      {:.2?}, {:.0} lookups/s",
        sequential,
        lookups as f64 / sequential.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "  peak RSS of this process: {} MiB before resolve, {} MiB after (+{} MiB)",
            before / 1024,
            after / 1024,
            after.saturating_sub(before) / 1024
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The process's peak resident set size (`VmHWM`), in KiB; Linux only.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
