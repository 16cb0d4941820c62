//! Issue 13 ("closed means closed") for Vault, end to end through the real binary against a
//! fresh OpenBao server seeded for each case (no demo organisation): `closeout apply leaver`, then
//! the server read back.
//!
//! - A KV version 1 secret the leaver reads gets new values; a secrets engine Closeout does not
//!   enumerate that she reaches keeps the run open (exit 3) until the site accepts that gap by
//!   kind, and `verify` then says closed and lists the accepted gap.
//! - A leaver who can rewrite a policy she holds exposes the Vault: the run lists the exposure and
//!   rotates every secret, v1 and v2, that she could have granted herself (the shipped leaver's
//!   Vault rotate step selects `can-grant-self`, as its AWS and Azure steps do).

use crate::common::vault::VaultWorld;
use crate::common::{describe, json, REPO};
use serde_json::{json, Value};

const LEAVER: &str = "E1001";
const CANARY: &str = "canary-closed-means-closed-5e1f";

async fn entity(world: &VaultWorld, name: &str, policies: &[&str]) {
    world
        .api
        .root(
            "POST",
            "identity/entity",
            Some(json!({"name": name, "policies": policies})),
        )
        .await;
}

async fn policy(world: &VaultWorld, name: &str, text: &str) {
    world
        .api
        .root(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": text })),
        )
        .await;
}

async fn mount(world: &VaultWorld, path: &str, body: Value) {
    world
        .api
        .root("POST", &format!("sys/mounts/{path}"), Some(body))
        .await;
}

fn apply(world: &VaultWorld) -> (Option<i32>, Value) {
    let out = world.closeout(&[
        "apply",
        "leaver",
        "--identity",
        LEAVER,
        "--yes",
        "--format",
        "json",
    ]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(CANARY),
        "the canary leaked:\n{}",
        describe(&out)
    );
    let code = out.status.code();
    (code, json(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_v1_secret_is_rotated_and_an_unenumerated_engine_keeps_the_run_open() {
    let world = VaultWorld::new();
    mount(
        &world,
        "legacy",
        json!({"type": "kv", "options": {"version": "1"}}),
    )
    .await;
    mount(&world, "transit", json!({"type": "transit"})).await;
    world
        .api
        .root(
            "POST",
            "legacy/team/db",
            Some(json!({"password": CANARY, "user": "svc"})),
        )
        .await;
    world
        .api
        .root("POST", "legacy/other/x", Some(json!({"password": CANARY})))
        .await;
    policy(
        &world,
        "alice-legacy",
        r#"path "legacy/team/*" { capabilities = ["read"] }
           path "transit/encrypt/*" { capabilities = ["update"] }"#,
    )
    .await;
    entity(&world, "alice.nguyen", &["alice-legacy"]).await;
    // A KV v1 secret has no metadata to name its rotation strategy: a config rule does.
    let mut config = std::fs::read_to_string(world.config_path()).unwrap();
    config.push_str(
        "\n[[rotation.strategy]]\nprovider = \"vault\"\nname = \"legacy/team/db\"\nstrategy = \"template:password\"\n",
    );
    std::fs::write(world.config_path(), config).unwrap();

    let (code, report) = apply(&world);
    assert_eq!(code, Some(3), "the transit gap keeps it open: {report:#}");
    assert_eq!(report["status"], "open", "{report:#}");
    let open = report["open"].as_array().expect("open");
    assert_eq!(open.len(), 1, "{report:#}");
    assert_eq!(open[0]["kind"], "unverified");
    assert!(
        open[0]["id"]
            .as_str()
            .is_some_and(|id| id.contains("secrets-engine") && id.contains("transit/")),
        "{report:#}"
    );
    // The v1 secret she could read has new values; the one she could not is untouched.
    let db = world.api.root("GET", "legacy/team/db", None).await["data"].clone();
    assert!(!db.to_string().contains(CANARY), "{db}");
    assert_eq!(db["password"].as_str().map(str::len), Some(40), "{db}");
    assert_eq!(
        db["user"], "svc",
        "only the field the strategy names changes: {db}"
    );
    let other = world.api.root("GET", "legacy/other/x", None).await["data"].clone();
    assert_eq!(other, json!({"password": CANARY}));

    // The site accepts the gap by kind, with a reason: verify is closed and lists it.
    let mut config = std::fs::read_to_string(world.config_path()).unwrap();
    config.push_str(
        "\n[[accept_unverified]]\nprovider = \"vault\"\nkind = \"secrets-engine\"\nreason = \"transit holds no credential a person can take away\"\n",
    );
    std::fs::write(world.config_path(), config).unwrap();
    let out = world.closeout(&["verify", "--identity", LEAVER, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let verified = json(&out);
    assert_eq!(verified["status"], "closed", "{verified:#}");
    assert!(
        verified.to_string().contains("transit holds no credential"),
        "the accepted gap is listed: {verified:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_who_can_rewrite_her_policy_has_every_secret_rotated() {
    let world = VaultWorld::new();
    // The shipped leaver rotates what she could have granted herself.
    let leaver = std::fs::read_to_string(format!("{REPO}/playbooks/leaver.yaml")).unwrap();
    assert!(
        leaver.contains("kind: kv-secret, relation: [owns, can-read, can-grant-self] }"),
        "the shipped leaver's Vault rotate step does not select can-grant-self"
    );

    mount(
        &world,
        "legacy",
        json!({"type": "kv", "options": {"version": "1"}}),
    )
    .await;
    world
        .api
        .root("POST", "legacy/ops/db", Some(json!({"password": CANARY})))
        .await;
    for key in ["finance/ledger", "team/app"] {
        world
            .api
            .root(
                "POST",
                &format!("secret/data/{key}"),
                Some(json!({"data": {"password": CANARY}})),
            )
            .await;
    }
    policy(
        &world,
        "alice-admin",
        r#"path "sys/policies/acl/*" { capabilities = ["create", "read", "update", "list"] }"#,
    )
    .await;
    entity(&world, "alice.nguyen", &["alice-admin"]).await;

    let (code, report) = apply(&world);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["status"], "closed", "{report:#}");
    let exposures = report["exposures"].as_array().expect("exposures");
    assert_eq!(exposures.len(), 1, "{report:#}");
    assert!(
        exposures[0]["what"]
            .as_str()
            .is_some_and(|w| w.contains("rewrite policy alice-admin")),
        "{report:#}"
    );
    // Every secret she could have granted herself has new values.
    for key in ["finance/ledger", "team/app"] {
        let v = world
            .api
            .root("GET", &format!("secret/data/{key}"), None)
            .await;
        assert_eq!(v["data"]["metadata"]["version"], 2, "{key}");
        assert!(!v.to_string().contains(CANARY), "{key}");
    }
    let v1 = world.api.root("GET", "legacy/ops/db", None).await;
    assert!(!v1.to_string().contains(CANARY), "{v1}");

    // `verify` agrees from live state.
    let out = world.closeout(&["verify", "--identity", LEAVER, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json(&out)["status"], "closed");
}

/// A gap found when the run was planned stays open after the run removed the only access that
/// exposed it: what that access reached before is still unknown. The run, `runs show` and
/// `verify --identity` agree (exit 3, the gap with its reason) until the site accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_reached_only_through_a_removed_group_stays_open() {
    let world = VaultWorld::new();
    mount(&world, "transit", json!({"type": "transit"})).await;
    policy(
        &world,
        "crypto-use",
        r#"path "transit/encrypt/*" { capabilities = ["update"] }"#,
    )
    .await;
    entity(&world, "alice.nguyen", &[]).await;
    let alice = world
        .api
        .root("GET", "identity/entity/name/alice.nguyen", None)
        .await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    world
        .api
        .root(
            "POST",
            "identity/group",
            Some(
                json!({"name": "crypto", "policies": ["crypto-use"], "member_entity_ids": [alice]}),
            ),
        )
        .await;

    let (code, report) = apply(&world);
    // The run removed her membership: the group no longer lists her.
    let group = world
        .api
        .root("GET", "identity/group/name/crypto", None)
        .await;
    let members = group["data"]["member_entity_ids"].clone();
    assert!(
        !members.to_string().contains(&alice),
        "the membership was removed: {group:#}"
    );
    assert_eq!(code, Some(3), "the planned gap stays open: {report:#}");
    assert_eq!(report["status"], "open", "{report:#}");
    let open = report["open"].as_array().expect("open");
    let gap = open
        .iter()
        .find(|o| {
            o["kind"] == "unverified"
                && o["id"]
                    .as_str()
                    .is_some_and(|id| id.contains("secrets-engine") && id.contains("transit/"))
        })
        .unwrap_or_else(|| panic!("{report:#}"));
    assert!(
        gap["reason"]
            .as_str()
            .is_some_and(|r| r.contains("found when the run was planned")),
        "{report:#}"
    );

    // `runs show` and `verify --identity` say the same.
    let run = report["run"].as_str().expect("run id").to_string();
    let out = world.closeout(&["runs", "show", &run, "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(json(&out)["open"], report["open"]);
    let out = world.closeout(&["verify", "--identity", LEAVER, "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let verified = json(&out);
    assert_eq!(verified["status"], "open", "{verified:#}");
    assert_eq!(
        verified["open"]
            .as_array()
            .map(|o| o.iter().map(|o| o["id"].clone()).collect::<Vec<_>>()),
        Some(vec![gap["id"].clone()]),
        "{verified:#}"
    );

    // Accepted by kind, it is listed and no longer open.
    let mut config = std::fs::read_to_string(world.config_path()).unwrap();
    config.push_str(
        "\n[[accept_unverified]]\nprovider = \"vault\"\nkind = \"secrets-engine\"\nreason = \"transit holds no credential a person can take away\"\n",
    );
    std::fs::write(world.config_path(), config).unwrap();
    let out = world.closeout(&["verify", "--identity", LEAVER, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json(&out)["status"], "closed");
}
