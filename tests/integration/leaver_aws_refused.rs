//! "Unknown is open" on AWS, end to end with the real binary against a moto server that enforces
//! IAM authorization: Closeout runs as an IAM user whose policy allows everything but one of the
//! list calls resolution needs. A refused `GetAccountAuthorizationDetails` or
//! `ListSecretVersionIds` is an `unverified` gap that keeps the run at exit 3 with the refused
//! call as its reason, instead of failing the resolution or being taken for an empty list.

use crate::common::{describe, json, World, APPLY_LEAVER, LEAVER};
use aws_credential_types::Credentials;
use closeout_testkit::MotoServer;
use serde_json::{json, Value};

const LEAVER_EMAIL: &str = "alice.nguyen@example.com";

/// moto's requests before it starts enforcing IAM authorization: the three that create the
/// seeding administrator and its key (`CreateUser`, `PutUserPolicy`, `CreateAccessKey`).
const UNAUTHENTICATED: &str = "3";

type Key = (String, String);

fn iam(sdk: &aws_config::SdkConfig, key: &Key) -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::config::Builder::from(sdk)
        .credentials_provider(Credentials::new(&key.0, &key.1, None, None, "test"))
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

fn secrets(sdk: &aws_config::SdkConfig, key: &Key) -> aws_sdk_secretsmanager::Client {
    let conf = aws_sdk_secretsmanager::config::Builder::from(sdk)
        .credentials_provider(Credentials::new(&key.0, &key.1, None, None, "test"))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(conf)
}

/// A user with an inline policy and an access key; the key.
async fn user_with_key(iam: &aws_sdk_iam::Client, name: &str, policy: Value) -> Key {
    iam.create_user().user_name(name).send().await.unwrap();
    iam.put_user_policy()
        .user_name(name)
        .policy_name(format!("{name}-policy"))
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    (key.access_key_id, key.secret_access_key)
}

fn allow_all_but(denied: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": denied, "Resource": "*"}
    ]})
}

/// A world whose moto enforces IAM authorization once the seeding administrator exists; the
/// administrator's key and the key Closeout runs with (allowed everything but `denied`). The
/// leaver `alice` may read secret `app/db`.
async fn world_denying(denied: &str) -> (World, Key, Key) {
    let moto = MotoServer::builder()
        .env("INITIAL_NO_AUTH_ACTION_COUNT", UNAUTHENTICATED)
        .start();
    let world = World::with_moto(moto);
    let sdk = world.sdk().await;
    let anyone = ("testing".to_string(), "testing".to_string());
    let admin = user_with_key(
        &iam(&sdk, &anyone),
        "seed-admin",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )
    .await;
    let admin_iam = iam(&sdk, &admin);
    let closeout = user_with_key(&admin_iam, "closeout", allow_all_but(denied)).await;
    let arn = secrets(&sdk, &admin)
        .create_secret()
        .name("app/db")
        .secret_string("app-db-initial-value")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    admin_iam
        .create_user()
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
    admin_iam
        .put_user_policy()
        .user_name("alice")
        .policy_name("alice-db")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    (world, admin, closeout)
}

fn run(world: &World, key: &Key, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = world
        .command(args)
        .env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
        .output()
        .expect("run closeout");
    (out.status.code(), json(&out), describe(&out))
}

/// The open gap whose id starts with `prefix`.
fn open_gap<'a>(report: &'a Value, prefix: &str) -> &'a Value {
    report["open"]
        .as_array()
        .and_then(|open| {
            open.iter().find(|o| {
                o["kind"] == "unverified" && o["id"].as_str().is_some_and(|i| i.starts_with(prefix))
            })
        })
        .unwrap_or_else(|| panic!("no open gap {prefix}: {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_authorization_listing_keeps_the_run_open_with_its_reason() {
    let (world, admin, closeout) = world_denying("iam:GetAccountAuthorizationDetails").await;
    let sdk = world.sdk().await;
    // Enforcement is real: the administrator may list, Closeout's key may not.
    iam(&sdk, &admin)
        .get_account_authorization_details()
        .send()
        .await
        .expect("the administrator may list");
    assert!(iam(&sdk, &closeout)
        .get_account_authorization_details()
        .send()
        .await
        .is_err());

    let (code, report, text) = run(&world, &closeout, &APPLY_LEAVER);
    assert_eq!(code, Some(3), "{text}");
    assert_eq!(report["status"], "open", "{report:#}");
    let gap = open_gap(&report, "aws:unverified:iam-inventory:");
    assert!(
        gap["reason"]
            .as_str()
            .is_some_and(|r| r.contains("GetAccountAuthorizationDetails was refused")),
        "{report:#}"
    );
    // Nothing could be resolved, so nothing was changed: alice keeps her policy, and the run
    // says why it is not closed instead of failing.
    let policies = iam(&sdk, &admin)
        .list_user_policies()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .policy_names;
    assert_eq!(policies, ["alice-db"]);

    // `verify` agrees.
    let (code, verified, text) = run(
        &world,
        &closeout,
        &["verify", "--identity", LEAVER, "--format", "json"],
    );
    assert_eq!(code, Some(3), "{text}");
    open_gap(&verified, "aws:unverified:iam-inventory:");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_version_listing_is_a_gap_not_a_failed_resolution() {
    let (world, admin, closeout) = world_denying("secretsmanager:ListSecretVersionIds").await;
    let sdk = world.sdk().await;
    secrets(&sdk, &admin)
        .list_secret_version_ids()
        .secret_id("app/db")
        .send()
        .await
        .expect("the administrator may list");
    assert!(secrets(&sdk, &closeout)
        .list_secret_version_ids()
        .secret_id("app/db")
        .send()
        .await
        .is_err());

    let (code, report, text) = run(
        &world,
        &closeout,
        &["verify", "--identity", LEAVER, "--format", "json"],
    );
    assert_eq!(code, Some(3), "{text}");
    assert_eq!(report["status"], "open", "{report:#}");
    let gap = open_gap(&report, "aws:unverified:secret-versions:");
    assert!(
        gap["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ListSecretVersionIds") && r.contains("refused")),
        "{report:#}"
    );
    // The secret itself is still found (she can read it), so a run acts on it as usual.
    assert!(
        report["open"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["kind"] == "secret")),
        "{report:#}"
    );
}
