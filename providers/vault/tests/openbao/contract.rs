//! The provider contract suite (`closeout_testkit::contract`) against OpenBao: a KV version 2
//! secret and a KV version 1 secret the person reads through her entity's policy, rotated;
//! then the new values read back through the API.

use crate::api::{context_now, person, Api};
use closeout_contract::State;
use closeout_testkit::contract::{run_suite, Case};
use serde_json::json;

const CANARY: &str = "canary-contract-vault-9d2c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_provider_passes_the_contract_suite() {
    let api = Api::namespace("contract").await;
    api.mount_kv("kv2", 2).await;
    api.mount_kv("kv1", 1).await;
    api.policy(
        "app-read",
        r#"path "kv2/data/app/*" { capabilities = ["read"] }
           path "kv2/metadata/app/*" { capabilities = ["read", "list"] }
           path "kv1/app/*" { capabilities = ["read", "list"] }"#,
    )
    .await;
    api.root(
        "POST",
        "kv2/data/app/db",
        Some(json!({"data": {"password": CANARY}})),
    )
    .await;
    api.root("POST", "kv1/app/cache", Some(json!({"token": CANARY})))
        .await;
    api.entity("alice.smith", &["app-read"]).await;
    let provider = api.provider("contract").await;
    let ctx = context_now(person("E100", "alice.smith@example.com")).await;

    let report = run_suite(
        &provider,
        &ctx,
        &[
            Case::new("vault:kv-secret:kv2/data/app/db", "rotate", State::Rotated),
            Case::new("vault:kv-secret:kv1/app/cache", "rotate", State::Rotated),
        ],
        &[CANARY],
    )
    .await;
    assert_eq!(report.cases.len(), 2);

    // Read back: both secrets hold new values, none the old one.
    let v2 = api.root("GET", "kv2/data/app/db", None).await;
    let v1 = api.kv1("kv1/app/cache").await;
    assert!(v2["data"]["data"]["password"].is_string(), "{v2}");
    assert!(v1["token"].is_string(), "{v1}");
    assert!(
        !v2.to_string().contains(CANARY),
        "kv2/app/db kept its value"
    );
    assert!(
        !v1.to_string().contains(CANARY),
        "kv1/app/cache kept its value"
    );
}
