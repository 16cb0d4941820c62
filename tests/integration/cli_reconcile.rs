//! `closeout reconcile` against moto seeded with the demo organisation: before the leaver runs,
//! the terminated Alice still has usable AWS credentials and the NHIs she owned in the source are
//! orphans; after `apply leaver`, only the orphans remain (the source still names her as their
//! owner). Nothing is changed by reconcile itself.

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
    assert_eq!(report["terminated_checked"], 1, "{report:#}");
    let terminated = drift_of(&report, "terminated-still-usable");
    assert_eq!(terminated.len(), 1, "{report:#}");
    assert_eq!(terminated[0]["identity"], "E1001");
    assert!(
        !terminated[0]["open"].as_array().expect("open").is_empty(),
        "{report:#}"
    );
    let orphans: Vec<&str> = drift_of(&report, "orphaned-nhi")
        .iter()
        .filter_map(|d| d["identity"].as_str())
        .collect();
    assert_eq!(orphans, ["S2001", "S2002"], "{report:#}");
    // Reconcile changed nothing: no run was created.
    assert!(common::journal_runs(&world).is_empty());

    let apply = world.closeout(&["apply", "leaver", "--identity", "E1001", "--yes"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));

    let out = world.closeout(&["reconcile", "--format", "json"]);
    let report = json(&out);
    assert!(
        drift_of(&report, "terminated-still-usable").is_empty(),
        "{report:#}"
    );
    assert_eq!(drift_of(&report, "orphaned-nhi").len(), 2, "{report:#}");
    assert_eq!(out.status.code(), Some(3));
}
