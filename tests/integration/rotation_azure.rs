//! `closeout rotate --due` against the Azure double seeded with the demo organisation: a Key Vault
//! object's expiry comes from its current version's `exp` (a certificate's notAfter; the demo's
//! certificates are valid for 12 months and its secrets have none), so `expires_within = "30d"`
//! makes nothing due and says nothing is unknown, `expires_within = "400d"` makes Alice's two
//! certificates due, and `--apply` gives each a new version and disables the old one (read back
//! from the Key Vault data plane), leaving her secrets alone.

use crate::common;

use common::azure::AzureWorld;
use common::{describe, due_of, json};

const PERSON: &str = "E1001";
const CERTIFICATES: [(&str, &str); 2] = [
    ("kv-payments", "payments-mtls"),
    ("kv-data", "data-ingest-tls"),
];

fn set_policy(world: &AzureWorld, policy: &str) {
    common::set_rotation_policy(&world.config_path(), policy);
}

/// The current version's `exp` (unix seconds) of a certificate, read from the data plane.
async fn expiry(world: &AzureWorld, vault: &str, name: &str) -> i64 {
    let (status, body) = world.api.kv(vault, &format!("certificates/{name}")).await;
    assert_eq!(status, 200, "{body}");
    body["attributes"]["exp"]
        .as_i64()
        .unwrap_or_else(|| panic!("{vault}/{name} has no exp: {body}"))
}

#[tokio::test]
async fn key_vault_certificates_are_due_by_their_expiry_and_rotated() {
    let world = AzureWorld::new().await;
    let _ = world.seed_demo().await;
    let api = &world.api;

    set_policy(
        &world,
        "\n[[rotation.policy]]\nprovider = \"azure\"\nkind = [\"kv-certificate\", \"kv-secret\"]\nexpires_within = \"30d\"\n",
    );
    let out = world
        .closeout(&["rotate", "--due", "--identity", PERSON, "--format", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json(&out);
    assert!(
        report["identities"]
            .as_array()
            .expect("identities")
            .is_empty(),
        "nothing due and no expiry unknown (secrets without exp never expire): {report:#}"
    );

    set_policy(
        &world,
        "\n[[rotation.policy]]\nprovider = \"azure\"\nkind = \"kv-certificate\"\nexpires_within = \"400d\"\n",
    );
    let out = world
        .closeout(&["rotate", "--due", "--identity", PERSON, "--format", "json"])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let due = due_of(&json(&out));
    assert_eq!(due.len(), CERTIFICATES.len(), "{due:?}");
    for (vault, name) in CERTIFICATES {
        assert!(
            due.iter().any(|(id, reason)| id.contains(vault)
                && id.contains(name)
                && reason.contains("expires in")),
            "{vault}/{name} not due by expiry: {due:?}"
        );
    }

    let mut before = Vec::new();
    for (vault, name) in CERTIFICATES {
        before.push((
            api.kv_versions(vault, "certificates", name).await,
            expiry(&world, vault, name).await,
        ));
    }
    let secrets_before = api
        .kv_versions("kv-data", "secrets", "warehouse-password")
        .await;

    let out = world
        .closeout(&["rotate", "--due", "--identity", PERSON, "--apply", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    for ((vault, name), (old_versions, old_exp)) in CERTIFICATES.into_iter().zip(before) {
        let versions = api.kv_versions(vault, "certificates", name).await;
        assert_eq!(
            versions.len(),
            old_versions.len() + 1,
            "{vault}/{name}: one new version: {versions:?}"
        );
        let enabled: Vec<_> = versions.iter().filter(|(_, on, _)| *on).collect();
        assert_eq!(enabled.len(), 1, "{vault}/{name}: {versions:?}");
        assert!(
            !old_versions.iter().any(|(v, _, _)| *v == enabled[0].0),
            "{vault}/{name}: the enabled version is a new one: {versions:?}"
        );
        assert!(
            expiry(&world, vault, name).await >= old_exp,
            "{vault}/{name}: the new version expires no earlier"
        );
    }
    assert_eq!(
        api.kv_versions("kv-data", "secrets", "warehouse-password")
            .await,
        secrets_before,
        "a secret no policy made due is untouched"
    );
}
