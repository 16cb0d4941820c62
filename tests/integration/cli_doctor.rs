//! `closeout doctor` against real emulators: it reaches each provider with the configured
//! credentials and names the permissions the playbooks need that they lack (read from the
//! providers themselves: OpenBao's `sys/capabilities-self`, the IAM policies moto holds).

use crate::common;

use common::vault::VaultWorld;
use common::{stdout, World};
use serde_json::json;

/// A Vault token that may do everything except revoke tokens by accessor, which the leaver
/// and incident playbooks need: doctor names exactly that capability, and the steps needing it.
#[tokio::test]
async fn doctor_names_the_vault_capability_the_token_lacks() {
    let w = VaultWorld::new();
    let all_but_revoke = r#"
path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }
path "auth/token/revoke-accessor" { capabilities = ["deny"] }
"#;
    w.api
        .root(
            "PUT",
            "sys/policies/acl/closeout-lacking",
            Some(json!({ "policy": all_but_revoke })),
        )
        .await;
    let token = w
        .api
        .root(
            "POST",
            "auth/token/create",
            Some(json!({ "policies": ["closeout-lacking"], "no_default_policy": true })),
        )
        .await["auth"]["client_token"]
        .as_str()
        .expect("a token")
        .to_string();

    // The root token holds everything: all good.
    let ok = w.closeout(&["doctor", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("one JSON document");
    assert_eq!(ok.status.code(), Some(0), "{}", common::describe(&ok));
    assert_eq!(report["providers"][0]["provider"], "vault");
    assert_eq!(report["providers"][0]["missing"], json!([]));

    std::fs::write(w.dir.path().join("vault-token"), format!("{token}\n")).unwrap();
    let lacking = w.closeout(&["doctor"]);
    let text = stdout(&lacking);
    assert_eq!(
        lacking.status.code(),
        Some(3),
        "{}",
        common::describe(&lacking)
    );
    assert!(
        text.contains("missing update auth/token/revoke-accessor"),
        "{text}"
    );
    assert!(
        text.contains("leaver step"),
        "names the step that needs it: {text}"
    );
    assert!(
        !text.contains("missing read sys/mounts"),
        "only what is lacking: {text}"
    );
}

/// An IAM user whose policy denies `iam:DeleteAccessKey`: doctor reads the user's policies
/// from moto and names that action and the playbook steps that delete keys.
#[tokio::test]
async fn doctor_names_the_iam_action_the_credentials_lack() {
    let w = World::new();
    let iam = aws_sdk_iam::Client::new(&w.sdk().await);
    iam.create_user()
        .user_name("closeout-ops")
        .send()
        .await
        .unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "iam:DeleteAccessKey", "Resource": "*"}
    ]});
    iam.put_user_policy()
        .user_name("closeout-ops")
        .policy_name("closeout")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name("closeout-ops")
        .send()
        .await
        .unwrap();
    let key = key.access_key().expect("a key");

    let out = w
        .command(&["doctor", "--format", "json"])
        .env("AWS_ACCESS_KEY_ID", key.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", key.secret_access_key())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", common::describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let aws = &report["providers"][0];
    assert!(
        aws["principal"]
            .as_str()
            .unwrap()
            .ends_with(":user/closeout-ops"),
        "{aws}"
    );
    let missing: Vec<&str> = aws["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["permission"].as_str().unwrap())
        .collect();
    assert_eq!(missing, ["iam:DeleteAccessKey"], "{aws}");
    let needed_by = aws["missing"][0]["needed_by"].to_string();
    assert!(needed_by.contains("delete access-key"), "{needed_by}");
    // The secret key never reaches the output.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(key.secret_access_key()));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(key.secret_access_key()));
}

/// Credentials doctor cannot evaluate (moto's default caller is no IAM principal of the
/// account) are reported as unchecked, never as held; a provider that does not answer is exit 1;
/// a bad config is exit 2.
#[test]
fn unknown_is_not_held_and_unreachable_and_bad_config_have_their_codes() {
    let w = World::new();
    let out = w.closeout(&["doctor"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{}", common::describe(&out));
    assert!(
        text.contains("UNCHECKED") && text.contains("cannot be evaluated"),
        "{text}"
    );

    std::fs::write(
        w.config_path(),
        std::fs::read_to_string(w.config_path())
            .unwrap()
            .replace(&w.moto.endpoint(), "http://127.0.0.1:9"),
    )
    .unwrap();
    let out = w.closeout(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::describe(&out));
    assert!(stdout(&out).contains("UNREACHABLE"), "{}", stdout(&out));

    std::fs::write(
        w.config_path(),
        "[source]\npath = \"hr.csv\"\n[providers.aws]\nregion = 7\n",
    )
    .unwrap();
    let out = w.closeout(&["doctor"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::describe(&out));
}
