//! Issue 13, class c: what Closeout cannot see is a gap (open unless the site accepts it by
//! kind), never a warning: a secrets engine it does not enumerate that the person reaches, a
//! policy it cannot read, a listing Vault refuses.

use crate::api::{context_now, person, Api};
use closeout_contract::{Gap, Provider};
use closeout_vault::VaultConfig;
use serde_json::json;

fn gap<'a>(gaps: &'a [Gap], kind: &str, resource: &str) -> Option<&'a Gap> {
    gaps.iter()
        .find(|g| g.kind == kind && g.resource == resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unenumerated_engines_unreadable_policies_and_refused_listings_are_gaps() {
    let api = Api::namespace("gaps").await;
    for (path, kind) in [("transit", "transit"), ("ssh", "ssh"), ("totp", "totp")] {
        api.root(
            "POST",
            &format!("sys/mounts/{path}"),
            Some(json!({ "type": kind })),
        )
        .await;
    }
    api.mount_kv("locked", 1).await;
    api.root("POST", "locked/app", Some(json!({"password": "x"})))
        .await;
    api.policy(
        "crypto",
        r#"path "transit/encrypt/+" { capabilities = ["update"] }
           path "totp/*" { capabilities = ["deny"] }"#,
    )
    .await;
    // Vault accepts JSON-syntax policies; Closeout's parser reads HCL path rules only.
    api.policy(
        "json-rules",
        r#"{"path": {"locked/*": {"capabilities": ["read"]}}}"#,
    )
    .await;
    api.entity("alice.smith", &["crypto", "json-rules"]).await;
    api.entity("bob", &[]).await;
    let alice = context_now(person("E100", "alice.smith@example.com")).await;
    let bob = context_now(person("E200", "bob@example.com")).await;

    let root = api.provider("gaps").await;
    let r = root.resolve(&alice).await.unwrap();
    let engine = gap(&r.gaps, "secrets-engine", "transit/").expect("transit is reached");
    assert!(
        engine.reason.contains("policy crypto") && engine.reason.contains("transit/encrypt/+"),
        "{engine:?}"
    );
    assert_eq!(
        engine.paths[0].render("alice"),
        "alice -account-> entity alice.smith -attached-> policy crypto -can-reach-> engine transit/ (transit; update on path \"transit/encrypt/+\")"
    );
    let policy = gap(&r.gaps, "policy-document", "json-rules").expect("unreadable policy");
    assert!(
        policy.reason.contains("what it grants is unknown"),
        "{policy:?}"
    );
    // Engines she does not reach (ssh) or is denied (totp) are no gap.
    for mount in ["ssh/", "totp/"] {
        assert!(
            gap(&r.gaps, "secrets-engine", mount).is_none(),
            "{:#?}",
            r.gaps
        );
    }
    assert_eq!(r.gaps.len(), 2, "{:#?}", r.gaps);
    assert!(
        r.warnings.iter().all(|w| !w.contains("json-rules")),
        "a gap, not a warning: {:?}",
        r.warnings
    );
    // Bob reaches nothing: no gap.
    assert!(root.resolve(&bob).await.unwrap().gaps.is_empty());

    // Closeout's own token may not list `locked/`: its secrets are unknown for everyone.
    api.policy(
        "closeout-lacking",
        r#"path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }
           path "locked/*" { capabilities = ["deny"] }"#,
    )
    .await;
    let token = api
        .root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["closeout-lacking"], "no_default_policy": true})),
        )
        .await["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let lacking = api
        .provider_with("gaps-lacking", &token, VaultConfig::default())
        .await;
    let r = lacking.resolve(&bob).await.unwrap();
    let listing = gap(&r.gaps, "kv-secret", "locked/").expect("refused listing");
    assert!(listing.reason.contains("HTTP 403"), "{listing:?}");
}
