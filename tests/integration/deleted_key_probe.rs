//! Where the emulator enforces authentication, a key Closeout deleted must no longer
//! authenticate. moto enforces it after `INITIAL_NO_AUTH_ACTION_COUNT` calls (and, unlike AWS,
//! still accepts *inactive* keys — so only deletion can be proven dead here).

use crate::common;

use closeout_testkit::MotoServer;
use common::{json, stderr, stdout, REPO};
use std::process::Command;

/// The calls `seed` makes before moto starts enforcing authentication.
const SEED_CALLS: &str = "8";

const PLAYBOOK: &str = r#"name: leaver
description: Revoke sessions, deactivate and, with no grace period, delete the leaver's keys
triggers: [leaver]
limits:
  max_actions: 10
stages:
  - name: contain
    steps:
      - name: revoke-sessions
        select: { provider: aws, kind: user }
        action: revoke-sessions
      - name: deactivate-keys
        select: { provider: aws, kind: access-key, holder: account }
        action: deactivate
  - name: retire
    steps:
      - name: delete-keys
        select: { provider: aws, kind: access-key, holder: account, state: inactive }
        action: delete
        grace: 0s
  - name: verify
    verify: true
"#;

struct Keys {
    admin: (String, String),
    alice: (String, String),
}

async fn seed(endpoint: &str) -> Keys {
    let iam = aws_sdk_iam::Client::new(&closeout_testkit::aws_sdk_config(endpoint).await);
    let admin_policy = iam
        .create_policy()
        .policy_name("admin")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap()
        .arn
        .unwrap();
    iam.create_user()
        .user_name("closeout-admin")
        .send()
        .await
        .unwrap();
    iam.attach_user_policy()
        .user_name("closeout-admin")
        .policy_arn(admin_policy)
        .send()
        .await
        .unwrap();
    let admin = iam
        .create_access_key()
        .user_name("closeout-admin")
        .send()
        .await
        .unwrap();
    let admin = admin.access_key.unwrap();
    iam.create_user()
        .user_name("alice")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("identity")
                .value("E1001")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let alice = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    let alice = alice.access_key.unwrap();
    Keys {
        admin: (admin.access_key_id, admin.secret_access_key),
        alice: (alice.access_key_id, alice.secret_access_key),
    }
}

async fn caller_identity(endpoint: &str, key: &(String, String)) -> Result<String, String> {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            key.0.clone(),
            key.1.clone(),
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_sts::Client::new(&conf)
        .get_caller_identity()
        .send()
        .await
        .map(|r| r.arn.unwrap_or_default())
        .map_err(|e| {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            format!("HTTP {status}: {:?}", e.into_service_error())
        })
}

#[tokio::test]
async fn a_deleted_key_no_longer_authenticates() {
    let moto = MotoServer::builder()
        .env("INITIAL_NO_AUTH_ACTION_COUNT", SEED_CALLS)
        .start();
    let endpoint = moto.endpoint();
    let keys = seed(&endpoint).await;
    // Authentication is enforced now: both keys work before the run.
    assert!(caller_identity(&endpoint, &keys.alice).await.is_ok());
    assert!(caller_identity(&endpoint, &keys.admin).await.is_ok());

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("playbooks")).unwrap();
    std::fs::write(dir.path().join("playbooks/leaver.yaml"), PLAYBOOK).unwrap();
    let config = dir.path().join("closeout.toml");
    std::fs::write(
        &config,
        format!(
            "playbook_dir = \"playbooks\"\n[source]\npath = \"{REPO}/examples/demo/hr.csv\"\n\
             [store]\npath = \"state/j.db\"\n[audit]\npath = \"state/audit.jsonl\"\n\
             {accepts}\n\
             [providers.aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n",
            accepts = common::MOTO_ACCEPTS
        ),
    )
    .unwrap();
    // Closeout signs with the admin key from the standard credentials chain.
    let out = Command::new(env!("CARGO_BIN_EXE_closeout"))
        .current_dir(dir.path())
        .args(["--config", config.to_str().unwrap()])
        .args([
            "apply",
            "leaver",
            "--identity",
            "E1001",
            "--yes",
            "--format",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", &keys.admin.0)
        .env("AWS_SECRET_ACCESS_KEY", &keys.admin.1)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let report = json(&out);
    assert_eq!(report["status"], "closed");
    assert_eq!(report["summary"]["actions_done"], 3, "{report:#}");

    let refused = caller_identity(&endpoint, &keys.alice).await;
    assert!(
        refused.is_err(),
        "the deleted key still authenticates: {refused:?}"
    );
    let refusal = refused.unwrap_err();
    // moto answers 403 (InvalidClientTokenId, in a body the SDK cannot parse for STS).
    assert!(refusal.starts_with("HTTP 403"), "{refusal}");
    assert!(
        caller_identity(&endpoint, &keys.admin).await.is_ok(),
        "the admin key must still work"
    );
    assert!(!stdout(&out).contains(&keys.alice.1) && !stderr(&out).contains(&keys.admin.1));
}
