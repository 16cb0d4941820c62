//! The acceptance check, end to end: seed an organisation in moto, run
//! `closeout apply leaver --yes --format json` with the real binary, then read the account back
//! with the AWS SDK. Every item must be in the state the leaver playbook promises, colleagues and
//! unreachable secrets untouched, and a second apply must change nothing.

use crate::common;

use aws_sdk_iam::types::StatusType;
use aws_sdk_secretsmanager::Client as Secrets;
use common::{json, stderr, stdout, urlencoding_decode, World, APPLY_LEAVER, LEAVER};
use std::collections::BTreeMap;

const REVOKE_POLICY: &str = "closeout-revoke-sessions";

async fn current_and_previous(sm: &Secrets, name: &str) -> (String, Option<String>) {
    let current = sm
        .get_secret_value()
        .secret_id(name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("read AWSCURRENT")
        .secret_string
        .unwrap_or_default();
    let previous = sm
        .get_secret_value()
        .secret_id(name)
        .version_stage("AWSPREVIOUS")
        .send()
        .await
        .ok()
        .and_then(|v| v.secret_string);
    (current, previous)
}

async fn tag(
    iam: &aws_sdk_iam::Client,
    user: Option<&str>,
    role: Option<&str>,
    key: &str,
) -> Option<String> {
    let tags = match (user, role) {
        (Some(u), _) => {
            iam.list_user_tags()
                .user_name(u)
                .send()
                .await
                .expect("user tags")
                .tags
        }
        (_, Some(r)) => {
            iam.list_role_tags()
                .role_name(r)
                .send()
                .await
                .expect("role tags")
                .tags
        }
        _ => unreachable!(),
    };
    tags.into_iter().find(|t| t.key == key).map(|t| t.value)
}

async fn groups_of(iam: &aws_sdk_iam::Client, user: &str) -> Vec<String> {
    let mut g: Vec<String> = iam
        .list_groups_for_user()
        .user_name(user)
        .send()
        .await
        .expect("groups")
        .groups
        .into_iter()
        .map(|g| g.group_name)
        .collect();
    g.sort();
    g
}

async fn key_statuses(iam: &aws_sdk_iam::Client, user: &str) -> BTreeMap<String, StatusType> {
    iam.list_access_keys()
        .user_name(user)
        .send()
        .await
        .expect("keys")
        .access_key_metadata
        .into_iter()
        .filter_map(|k| Some((k.access_key_id?, k.status?)))
        .collect()
}

async fn has_revoke_policy(
    iam: &aws_sdk_iam::Client,
    user: Option<&str>,
    role: Option<&str>,
) -> bool {
    let names = match (user, role) {
        (Some(u), _) => {
            iam.list_user_policies()
                .user_name(u)
                .send()
                .await
                .expect("user policies")
                .policy_names
        }
        (_, Some(r)) => {
            iam.list_role_policies()
                .role_name(r)
                .send()
                .await
                .expect("role policies")
                .policy_names
        }
        _ => unreachable!(),
    };
    names.iter().any(|n| n == REVOKE_POLICY)
}

#[tokio::test]
async fn leaver_is_closed_out_and_read_back_from_aws() {
    let world = World::new();
    let canary = world.seed_demo();
    let sdk = world.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = Secrets::new(&sdk);

    let reachable = [
        "eng/ci-token",
        "prod/payments/db",
        "team/analytics-key",
        "alice/personal-notes",
    ];
    let unreachable = [
        "finance/ledger-key",
        "carol/deploy-token",
        "data/warehouse-password",
        "security/break-glass-codes",
    ];
    let mut before = BTreeMap::new();
    for name in reachable.iter().chain(unreachable.iter()) {
        before.insert(*name, current_and_previous(&sm, name).await.0);
    }
    let alice_keys_before = key_statuses(&iam, "alice").await;
    let carol_keys_before = key_statuses(&iam, "carol.diaz").await;
    let svc_build_keys_before = key_statuses(&iam, "svc-build").await;

    let out = world.closeout(&APPLY_LEAVER);
    assert_eq!(
        out.status.code(),
        Some(0),
        "apply failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report:#}");
    assert!(report["open"].as_array().unwrap().is_empty());
    assert!(report["time_to_containment_seconds"].as_f64().is_some());
    assert!(report["time_to_closure_seconds"].as_f64().is_some());
    for text in [stdout(&out), stderr(&out)] {
        assert!(
            !text.contains(&canary),
            "the canary secret value leaked into the output"
        );
    }

    // Console login gone; every credential deactivated (deletion waits for the grace period).
    let login = iam.get_login_profile().user_name("alice").send().await;
    assert!(login.is_err(), "alice's login profile still exists");
    let alice_keys = key_statuses(&iam, "alice").await;
    assert_eq!(
        alice_keys.len(),
        alice_keys_before.len(),
        "keys must not be deleted before the grace period"
    );
    assert!(
        alice_keys.values().all(|s| *s == StatusType::Inactive),
        "{alice_keys:?}"
    );
    let ssh = iam
        .list_ssh_public_keys()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(!ssh.ssh_public_keys().is_empty());
    assert!(ssh
        .ssh_public_keys()
        .iter()
        .all(|k| k.status == StatusType::Inactive));
    let certs = iam
        .list_signing_certificates()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(!certs.certificates.is_empty());
    assert!(certs
        .certificates
        .iter()
        .all(|c| c.status == StatusType::Inactive));
    let mfa = iam
        .list_mfa_devices()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(
        mfa.mfa_devices.is_empty(),
        "MFA devices still enabled: {:?}",
        mfa.mfa_devices
    );

    // Entitlements: no groups, no attached or inline policies but Closeout's session deny.
    assert!(groups_of(&iam, "alice").await.is_empty());
    let attached = iam
        .list_attached_user_policies()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(attached.attached_policies().is_empty());
    let inline = iam
        .list_user_policies()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert_eq!(inline.policy_names, vec![REVOKE_POLICY.to_string()]);
    let doc = iam
        .get_user_policy()
        .user_name("alice")
        .policy_name(REVOKE_POLICY)
        .send()
        .await
        .unwrap()
        .policy_document;
    let doc = urlencoding_decode(&doc);
    assert!(
        doc.contains("aws:TokenIssueTime") && doc.contains("Deny"),
        "{doc}"
    );

    // Sessions revoked on every role alice can assume, and on no other role.
    assert!(has_revoke_policy(&iam, None, Some("oncall-responder")).await);
    assert!(has_revoke_policy(&iam, None, Some("alice-debug")).await);
    for other in ["unrelated-role", "finance-auditor", "svc-deployer"] {
        assert!(
            !has_revoke_policy(&iam, None, Some(other)).await,
            "{other} got a session deny"
        );
    }

    // Every reachable secret rotated with staging labels; unreachable ones untouched.
    for name in reachable {
        let (current, previous) = current_and_previous(&sm, name).await;
        assert_ne!(current, before[name], "{name} was not rotated");
        assert_eq!(
            previous.as_deref(),
            Some(before[name].as_str()),
            "{name}: old value must be AWSPREVIOUS"
        );
    }
    for name in unreachable {
        assert_eq!(
            current_and_previous(&sm, name).await.0,
            before[name],
            "{name} must be untouched"
        );
    }

    // Owned NHIs: owner reassigned to the manager (same form), keys rotated and published.
    assert_eq!(
        tag(&iam, Some("svc-build"), None, "owner").await.as_deref(),
        Some("bob.martin@example.com")
    );
    assert_eq!(
        tag(&iam, None, Some("svc-deployer"), "owner")
            .await
            .as_deref(),
        Some("E1000")
    );
    let svc_keys = key_statuses(&iam, "svc-build").await;
    for old in svc_build_keys_before.keys() {
        assert_eq!(
            svc_keys.get(old),
            Some(&StatusType::Inactive),
            "old NHI key {old} must be deactivated"
        );
    }
    let new_keys: Vec<&String> = svc_keys
        .iter()
        .filter(|(id, s)| **s == StatusType::Active && !svc_build_keys_before.contains_key(*id))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(new_keys.len(), 1, "{svc_keys:?}");
    let published = current_and_previous(&sm, "closeout/nhi/svc-build/access-key")
        .await
        .0;
    let published: serde_json::Value =
        serde_json::from_str(&published).expect("published key is JSON");
    assert_eq!(
        published["AccessKeyId"].as_str(),
        Some(new_keys[0].as_str())
    );

    // Colleagues untouched.
    assert_eq!(
        groups_of(&iam, "carol.diaz").await,
        vec!["engineering".to_string(), "oncall".to_string()]
    );
    assert_eq!(key_statuses(&iam, "carol.diaz").await, carol_keys_before);
    assert!(iam
        .get_login_profile()
        .user_name("carol.diaz")
        .send()
        .await
        .is_ok());
    assert!(!has_revoke_policy(&iam, Some("carol.diaz"), None).await);

    // No secret value in the journal or the audit log.
    for file in [world.journal_path(), world.audit_path()] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&canary),
            "canary in {}",
            file.display()
        );
    }

    // A second apply changes nothing and still reports closed.
    let again = world.closeout(&APPLY_LEAVER);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let again = json(&again);
    assert_eq!(again["status"], "closed");
    assert_eq!(again["summary"]["actions_done"], 0, "{again:#}");
    assert_eq!(again["summary"]["actions_already_done"], 0);
    for name in reachable {
        let (current, _) = current_and_previous(&sm, name).await;
        let rotated_once = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["display"].as_str() == Some(&format!("secret {name}")));
        assert!(rotated_once, "{name} missing from the report");
        assert_ne!(current, before[name]);
    }
    let alice_after_second = key_statuses(&iam, "alice").await;
    assert_eq!(alice_after_second, alice_keys);

    // `verify` agrees from live state.
    let verify = world.closeout(&["verify", "--identity", LEAVER, "--format", "json"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    assert_eq!(json(&verify)["status"], "closed");
}

#[test]
fn unknown_identity_exits_2_naming_it() {
    let world = World::new();
    let out = world.closeout(&[
        "apply",
        "leaver",
        "--identity",
        "E9999",
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("E9999"), "{}", stderr(&out));
    assert!(json(&out)["error"].as_str().unwrap().contains("E9999"));
}
