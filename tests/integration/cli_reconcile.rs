//! `closeout reconcile` against moto seeded with the demo organisation: before the leavers run,
//! the terminated Alice still has usable AWS credentials, the terminated Dana still has her IAM
//! Identity Center access (she never had an IAM user), and the NHIs Alice owned in the source are
//! orphans; after `apply leaver` for both, only the orphans remain (the source still names Alice
//! as their owner). Nothing is changed by reconcile itself.

use crate::common;

use common::{describe, json, World};
use serde_json::Value;

fn drift_of<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["drift"]
        .as_array()
        .expect("drift")
        .iter()
        .filter(|d| d["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn reconcile_finds_terminated_access_and_orphaned_nhis() {
    let world = World::new();
    world.seed_demo();

    let out = world.closeout(&["reconcile", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = json(&out);
    assert_eq!(report["terminated_checked"], 2, "{report:#}");
    let terminated = drift_of(&report, "terminated-still-usable");
    let who: Vec<&str> = terminated
        .iter()
        .filter_map(|d| d["identity"].as_str())
        .collect();
    assert_eq!(who, ["E1001", "E1007"], "{report:#}");
    for t in &terminated {
        assert!(
            !t["open"].as_array().expect("open").is_empty(),
            "{report:#}"
        );
    }
    let orphans: Vec<&str> = drift_of(&report, "orphaned-nhi")
        .iter()
        .filter_map(|d| d["identity"].as_str())
        .collect();
    assert_eq!(orphans, ["S2001", "S2002"], "{report:#}");
    // Reconcile changed nothing: no run was created.
    assert!(common::journal_runs(&world).is_empty());

    for leaver in ["E1001", "E1007"] {
        let apply = world.closeout(&["apply", "leaver", "--identity", leaver, "--yes"]);
        assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    }

    let out = world.closeout(&["reconcile", "--format", "json"]);
    let report = json(&out);
    assert!(
        drift_of(&report, "terminated-still-usable").is_empty(),
        "{report:#}"
    );
    assert_eq!(drift_of(&report, "orphaned-nhi").len(), 2, "{report:#}");
    assert_eq!(out.status.code(), Some(3));
}
