//! Where a run's time goes, from the product (docs/observability.md): `--timings` prints the
//! calls of each phase per provider, and a JSON log at `-v` closes the run's `run`, `phase` and
//! `action` spans with their durations. On the demo leaver against moto, through a proxy that
//! counts the requests moto was sent.

use crate::common;

use closeout_testkit::proxy::FaultProxy;
use common::{describe, World};
use serde_json::Value;

const APPLY: [&str; 11] = [
    "--timings",
    "--log-format",
    "json",
    "-v",
    "apply",
    "leaver",
    "--identity",
    "E1001",
    "--yes",
    "--format",
    "json",
];

/// The `--timings` table: (phase, provider) → calls, and the total line's calls.
pub(crate) fn table(stderr: &str) -> (Vec<(String, String, u64)>, u64) {
    let mut rows = Vec::new();
    let mut total = None;
    let mut phase = String::new();
    let lines = stderr.lines().skip_while(|l| *l != "timings").skip(2);
    for line in lines {
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.first() == Some(&"total") {
            total = cells.get(1).and_then(|c| c.parse().ok());
            break;
        }
        // `phase  wall s  provider calls ...` or, for the next provider of a phase,
        // `provider calls ...`.
        let provider_at = if cells.get(2) == Some(&"s") {
            phase = cells[0].to_string();
            3
        } else {
            0
        };
        if let (Some(provider), Some(calls)) = (cells.get(provider_at), cells.get(provider_at + 1))
        {
            if let Ok(calls) = calls.parse() {
                rows.push((phase.clone(), provider.to_string(), calls));
            }
        }
    }
    (rows, total.expect("a total line"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timings_count_each_phases_calls_and_json_logs_carry_span_durations() {
    let world = World::new();
    world.seed_demo();
    let proxy = FaultProxy::start(&world.moto.endpoint()).await;
    let config = std::fs::read_to_string(world.config_path()).expect("config");
    std::fs::write(
        world.config_path(),
        config.replace(&world.moto.endpoint(), &proxy.endpoint()),
    )
    .expect("config through the proxy");
    // The proxy runs on this runtime: let it serve while the command runs.
    let out = tokio::task::block_in_place(|| world.closeout(&APPLY));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);

    let (rows, total) = table(&stderr);
    let calls = |phase: &str| {
        rows.iter()
            .filter(|(p, provider, _)| p == phase && provider == "aws")
            .map(|(_, _, c)| *c)
            .sum::<u64>()
    };
    assert!(calls("resolve") > 0, "no AWS calls in resolve:\n{stderr}");
    assert!(calls("verify") > 0, "no AWS calls in verify:\n{stderr}");
    assert!(
        calls("contain") + calls("revoke") + calls("rotate") > 0,
        "no AWS calls in the playbook's stages:\n{stderr}"
    );
    assert_eq!(
        rows.iter().map(|(_, _, c)| c).sum::<u64>(),
        total,
        "the total is not the sum of the rows:\n{stderr}"
    );

    // Each counted call is a request moto was sent (no faults here, so no SDK retries); the
    // probes that sign with an old or new access key go outside the gate: moto was sent at
    // least as many requests as the table counts, and the table counts most of them.
    let served = proxy.requests();
    assert!(
        served >= total && total * 10 >= served * 9,
        "moto was sent {served} requests, the table counts {total}:\n{stderr}"
    );

    let spans: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "close")
        .collect();
    let closed = |name: &str| {
        spans
            .iter()
            .filter(|v| v["span"]["name"] == name)
            .collect::<Vec<_>>()
    };
    let run = closed("run");
    assert_eq!(run.len(), 1, "one run span:\n{stderr}");
    assert!(run[0]["span"]["run_id"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    assert!(run[0]["fields"]["time.busy"].is_string(), "{}", run[0]);
    let phases: Vec<&str> = closed("phase")
        .iter()
        .filter_map(|v| v["span"]["phase"].as_str())
        .collect();
    assert!(
        phases.contains(&"resolve") && phases.contains(&"verify"),
        "{phases:?}"
    );
    assert!(
        closed("action")
            .iter()
            .all(|v| v["span"]["verb"].is_string() && v["fields"]["time.busy"].is_string()),
        "{stderr}"
    );
    assert!(!closed("action").is_empty());
}
