//! "Closed means closed" on AWS, end to end with the real binary against moto: a role two hops
//! away and a secret the leaver could grant herself are closed out (read back with the SDK), a
//! self-grant on her own user exposes the account in the plan and every secret is rotated, and
//! a gap nobody accepted keeps the run open (exit 3) until the site accepts it by name.

use crate::common::{json, stderr, stdout, World, APPLY_LEAVER, LEAVER, MOTO_ACCEPTS};
use aws_sdk_secretsmanager::Client as Secrets;
use serde_json::Value;

const LEAVER_EMAIL: &str = "alice.nguyen@example.com";
const REVOKE_POLICY: &str = "closeout-revoke-sessions";

fn allow(action: &str, resource: &str) -> String {
    serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}).to_string()
}

fn trust(principal: &str) -> String {
    serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]}).to_string()
}

/// The leaver's IAM user (tag identity = her email) with one inline policy; returns the account.
async fn leaver(iam: &aws_sdk_iam::Client, policy: Option<String>) -> String {
    iam.create_user()
        .user_name("alice")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("identity")
                .value(LEAVER_EMAIL)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    if let Some(doc) = policy {
        iam.put_user_policy()
            .user_name("alice")
            .policy_name("alice-extra")
            .policy_document(doc)
            .send()
            .await
            .unwrap();
    }
    iam.get_user()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .user
        .unwrap()
        .arn
        .split(':')
        .nth(4)
        .unwrap()
        .to_string()
}

async fn secret(sm: &Secrets, name: &str) -> String {
    sm.create_secret()
        .name(name)
        .secret_string(format!("{name}-initial-value"))
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

async fn current(sm: &Secrets, name: &str) -> String {
    sm.get_secret_value()
        .secret_id(name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap_or_default()
}

async fn role_has_deny(iam: &aws_sdk_iam::Client, role: &str) -> bool {
    iam.list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .policy_names
        .iter()
        .any(|n| n == REVOKE_POLICY)
}

fn apply(world: &World) -> (Option<i32>, Value, String) {
    let out = world.closeout(&APPLY_LEAVER);
    let text = format!("{}\n{}", stdout(&out), stderr(&out));
    (out.status.code(), json(&out), text)
}

#[tokio::test]
async fn a_chained_role_and_a_grantable_secret_are_closed_out() {
    let world = World::new();
    let sdk = world.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = Secrets::new(&sdk);
    let acct = leaver(
        &iam,
        Some(allow(
            "secretsmanager:PutResourcePolicy",
            "arn:aws:secretsmanager:*:*:secret:pay-*",
        )),
    )
    .await;
    for (role, principal) in [
        ("hop1", format!("arn:aws:iam::{acct}:user/alice")),
        ("hop2", format!("arn:aws:iam::{acct}:role/hop1")),
    ] {
        iam.create_role()
            .role_name(role)
            .assume_role_policy_document(trust(&principal))
            .send()
            .await
            .unwrap();
    }
    iam.put_role_policy()
        .role_name("hop2")
        .policy_name("read-deep")
        .policy_document(allow(
            "secretsmanager:GetSecretValue",
            "arn:aws:secretsmanager:*:*:secret:deep-*",
        ))
        .send()
        .await
        .unwrap();
    for name in ["deep-db", "pay-db", "other-db"] {
        secret(&sm, name).await;
    }
    let before_other = current(&sm, "other-db").await;

    let (code, report, text) = apply(&world);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["status"], "closed", "{report:#}");
    // The accepted gap is listed, with its reason.
    let accepted = report["accepted_gaps"].as_array().unwrap();
    assert!(
        accepted
            .iter()
            .any(|a| a["gap"]["kind"] == "service-credential"),
        "{report:#}"
    );

    // The chained role and the one before it carry the session deny.
    assert!(role_has_deny(&iam, "hop1").await);
    assert!(
        role_has_deny(&iam, "hop2").await,
        "no deny on the chained role"
    );
    // The secret behind the chain and the one she could open up were rotated; the other not.
    for name in ["deep-db", "pay-db"] {
        assert_ne!(
            current(&sm, name).await,
            format!("{name}-initial-value"),
            "{name} was not rotated"
        );
    }
    assert_eq!(current(&sm, "other-db").await, before_other);
    // Her policy is gone, so nothing of hers reaches pay-db any more.
    assert!(iam
        .get_user_policy()
        .user_name("alice")
        .policy_name("alice-extra")
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn a_self_grant_exposes_the_account_and_every_secret_is_rotated() {
    let world = World::new();
    let sdk = world.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = Secrets::new(&sdk);
    let acct = leaver(
        &iam,
        Some(allow(
            "iam:AttachUserPolicy",
            "arn:aws:iam::*:user/${aws:username}",
        )),
    )
    .await;
    let names = ["team-a", "team-b", "nobody-reads"];
    for name in names {
        secret(&sm, name).await;
    }

    let out = world.closeout(&["plan", "leaver", "--identity", LEAVER]);
    let plan = stdout(&out);
    assert!(
        plan.contains(&format!("EXPOSURE [aws] account {acct}")),
        "{plan}\n{}",
        stderr(&out)
    );

    let (code, report, text) = apply(&world);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["exposures"][0]["scope"], format!("account {acct}"));
    for name in names {
        assert_ne!(
            current(&sm, name).await,
            format!("{name}-initial-value"),
            "{name} was not rotated"
        );
    }
}

#[tokio::test]
async fn an_unaccepted_gap_keeps_the_run_open_until_accepted() {
    let world = World::new();
    // The same config without the acceptance of moto's service-credential gap.
    let config = std::fs::read_to_string(world.config_path()).unwrap();
    assert!(config.contains(MOTO_ACCEPTS));
    std::fs::write(world.config_path(), config.replace(MOTO_ACCEPTS, "")).unwrap();
    let sdk = world.sdk().await;
    leaver(&aws_sdk_iam::Client::new(&sdk), None).await;

    let (code, report, text) = apply(&world);
    assert_eq!(code, Some(3), "{text}");
    assert_eq!(report["status"], "open", "{report:#}");
    let open = report["open"].as_array().unwrap();
    assert!(
        open.iter()
            .any(|o| o["id"] == "aws:unverified:service-credential:alice"
                && o["reason"]
                    .as_str()
                    .unwrap()
                    .contains("ListServiceSpecificCredentials")),
        "{report:#}"
    );

    // Accepted by name, the same closure verifies.
    std::fs::write(world.config_path(), config).unwrap();
    let out = world.closeout(&["verify", "--identity", LEAVER, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let v = json(&out);
    assert_eq!(v["status"], "closed");
    assert_eq!(v["accepted"][0]["gap"]["kind"], "service-credential");
}
