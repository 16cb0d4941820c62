//! `closeout rotate --due` against OpenBao seeded with the demo organisation: the age of a KV v2
//! secret comes from its current version (`created_at`), so a `max_age = "0s"` policy makes the
//! secrets Grace owns due and a one-day policy makes none due; `--apply` gives each a new version
//! (read back from OpenBao's metadata).

use crate::common;

use common::vault::VaultWorld;
use common::{describe, due_of, json};

fn set_policy(world: &VaultWorld, policy: &str) {
    common::set_rotation_policy(&world.config_path(), policy);
}

#[tokio::test]
async fn kv_secrets_are_due_by_the_age_of_their_current_version() {
    let world = VaultWorld::new();
    let _ = world.seed_demo();
    let version = |meta: &serde_json::Value| meta["data"]["current_version"].as_u64();
    let before = world
        .api
        .root("GET", "secret/metadata/finance/ledger", None)
        .await;

    set_policy(
        &world,
        "\n[[rotation.policy]]\nprovider = \"vault\"\nkind = \"kv-secret\"\nmax_age = \"1d\"\n",
    );
    let out = world.closeout(&["rotate", "--due", "--identity", "E1005", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json(&out);
    assert!(due_of(&report).is_empty(), "{report:#}");
    assert!(
        report["identities"]
            .as_array()
            .expect("identities")
            .is_empty(),
        "no age is unknown: {report:#}"
    );

    set_policy(
        &world,
        "\n[[rotation.policy]]\nprovider = \"vault\"\nkind = \"kv-secret\"\nmax_age = \"0s\"\n",
    );
    let out = world.closeout(&["rotate", "--due", "--identity", "E1005", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let due = due_of(&json(&out));
    let ledger: Vec<&(String, String)> = due
        .iter()
        .filter(|(id, _)| id.contains("finance/ledger"))
        .collect();
    assert_eq!(ledger.len(), 1, "{due:?}");
    assert!(ledger[0].1.contains("old >= 0s"), "{due:?}");
    assert_eq!(
        version(
            &world
                .api
                .root("GET", "secret/metadata/finance/ledger", None)
                .await
        ),
        version(&before),
        "listing changed nothing"
    );

    let out = world.closeout(&["rotate", "--due", "--identity", "E1005", "--apply", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let after = world
        .api
        .root("GET", "secret/metadata/finance/ledger", None)
        .await;
    assert_eq!(
        version(&after),
        version(&before).map(|v| v + 1),
        "a new version: {after:#}"
    );
}
