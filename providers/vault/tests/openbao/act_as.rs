//! Issue 13 for Vault: acting as another principal, and what Closeout does not follow.
//!
//! - A policy that lets the person mint a secret-id for another AppRole role lets her log in as
//!   that role: its token policies' reach is hers, followed to a fixpoint (a role whose policies
//!   mint secret-ids for a third role). The secrets reached that way are found with the whole
//!   chain in their path and rotated (read back from the server).
//! - A child namespace under the configured one is not followed, so it is a gap naming it.

use crate::api::{context_now, person, request, Api};
use closeout_contract::{Provider, Relation, State};
use serde_json::json;

const CANARY: &str = "canary-act-as-41b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_secret_ids_for_other_approle_roles_reaches_their_secrets() {
    let api = Api::namespace("act-as").await;
    for key in ["deploy/key", "db/password", "other/x"] {
        api.root(
            "POST",
            &format!("secret/data/{key}"),
            Some(json!({"data": {"password": CANARY}})),
        )
        .await;
    }
    api.root("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    api.root(
        "POST",
        "auth/approle/role/deployer",
        Some(json!({"token_policies": ["deploy"]})),
    )
    .await;
    api.root(
        "POST",
        "auth/approle/role/db-admin",
        Some(json!({"token_policies": ["db-read"]})),
    )
    .await;
    api.policy(
        "mint-deployer",
        r#"path "auth/approle/role/deployer/secret-id" { capabilities = ["update"] }"#,
    )
    .await;
    api.policy(
        "deploy",
        r#"path "auth/approle/role/db-admin/secret-id" { capabilities = ["create", "update"] }
           path "secret/data/deploy/*" { capabilities = ["read"] }"#,
    )
    .await;
    api.policy(
        "db-read",
        r#"path "secret/data/db/*" { capabilities = ["read"] }"#,
    )
    .await;
    api.entity("alice", &["mint-deployer"]).await;

    // The grant is real: a token with alice's policy mints a secret-id for the other role.
    let token = api
        .root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["mint-deployer"], "no_default_policy": true})),
        )
        .await["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, minted) = api
        .call("POST", "auth/approle/role/deployer/secret-id", &token, None)
        .await;
    assert_eq!(status, 200, "{minted}");

    let p = api.provider("act-as").await;
    let ctx = context_now(person("alice", "alice@example.com")).await;
    let r = p.resolve(&ctx).await.unwrap();
    assert!(!serde_json::to_string(&r).unwrap().contains(CANARY));
    assert!(r.gaps.is_empty(), "{:#?}", r.gaps);
    assert!(r.exposures.is_empty(), "{:#?}", r.exposures);
    let kv: Vec<(&str, Relation)> = r
        .findings
        .iter()
        .filter(|f| f.kind == "kv-secret")
        .map(|f| (f.resource.as_str(), f.relation))
        .collect();
    assert_eq!(
        kv,
        [
            ("secret/data/db/password", Relation::CanRead),
            ("secret/data/deploy/key", Relation::CanRead),
        ],
        "{:#?}",
        r.findings
    );
    let db = r
        .findings
        .iter()
        .find(|f| f.resource == "secret/data/db/password")
        .unwrap();
    let path = db.paths[0].render("alice");
    assert!(
        path.contains("-can-act-as-> approle role deployer at auth/approle/")
            && path.contains("-can-act-as-> approle role db-admin at auth/approle/")
            && path.contains("-attached-> policy db-read"),
        "{path}"
    );

    // The leaver's rotation gives the secret reached two roles away a new version.
    let out = p
        .execute(&request("run-act-as", db, "rotate"))
        .await
        .unwrap();
    assert_eq!(out.state, State::Rotated, "{out:?}");
    let (version, data) = api.kv("db/password").await;
    assert_eq!(version, 2);
    assert!(!data.to_string().contains(CANARY));
    let (version, _) = api.kv("other/x").await;
    assert_eq!(version, 1, "a secret no role reaches is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_namespace_closeout_does_not_follow_is_a_gap() {
    let api = Api::namespace("ns-parent").await;
    api.root("POST", "sys/namespaces/team-b", None).await;
    api.entity("alice", &[]).await;
    let p = api.provider("ns-parent").await;
    let ctx = context_now(person("alice", "alice@example.com")).await;
    let r = p.resolve(&ctx).await.unwrap();
    assert_eq!(r.gaps.len(), 1, "{:#?}", r.gaps);
    let g = &r.gaps[0];
    assert_eq!(
        (g.kind.as_str(), g.resource.as_str()),
        ("namespace", "team-b/")
    );
    assert!(
        g.reason
            .contains("namespace ns-parent has a child namespace team-b/"),
        "{}",
        g.reason
    );
}
