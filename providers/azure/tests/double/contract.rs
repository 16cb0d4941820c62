//! The provider contract suite (`closeout_testkit::contract`) against the double: a Key Vault
//! secret the person reads through Key Vault Secrets User on its vault, rotated; then the
//! secret's versions read back through the data plane.

use crate::common::{roles, World};
use closeout_azure::object::ObjectType;
use closeout_contract::{
    Identity, IdentityKind, IdentityStatus, ResolveContext, SecretValue, State,
};
use closeout_testkit::contract::{run_suite, Case};
use serde_json::json;
use std::collections::BTreeMap;

const SUB: &str = "c0c0c0c0-0000-4000-8000-00000000c0c0";
const CANARY: &str = "canary-contract-azure-41ad";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_provider_passes_the_contract_suite() {
    let w = World::new("contract").await;
    w.subscription(SUB, "rg").await;
    let vault = w.vault(SUB, "rg", "kv-contract", true, json!([])).await;
    let uri = vault["properties"]["vaultUri"]
        .as_str()
        .expect("vaultUri")
        .to_string();
    let vault_id = vault["id"].as_str().expect("vault id").to_string();
    w.kv()
        .set_secret(
            &uri,
            "db",
            &SecretValue::new(CANARY.to_string()),
            None,
            &BTreeMap::new(),
        )
        .await
        .expect("seed the secret");
    let alice = w.user("alice@example.com", "E1001").await;
    w.assign(&vault_id, roles::KEY_VAULT_SECRETS_USER, &alice, "User")
        .await;
    let provider = w.provider(None).await;
    let identity = Identity {
        id: "E1001".into(),
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
    };
    // Key Vault timestamps are whole seconds: the cutoff a second after the seeded version, the
    // rotation a second after the cutoff.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let cutoff = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ctx = ResolveContext {
        identity,
        cutoff: Some(cutoff),
    };

    let report = run_suite(
        &provider,
        &ctx,
        &[Case::new(
            "azure:kv-secret:kv-contract/secrets/db",
            "rotate",
            State::Rotated,
        )],
        &[CANARY],
    )
    .await;
    assert_eq!(report.cases.len(), 1);

    // Read back: a new current version, the old one disabled.
    let versions = w
        .kv()
        .versions(&uri, ObjectType::Secrets, "db")
        .await
        .expect("versions");
    assert_eq!(
        versions.iter().map(|v| v.enabled).collect::<Vec<_>>(),
        [false, true],
        "the rotation left one new enabled version and disabled the old one"
    );
    w.double.shutdown().await;
}
