//! The provider contract suite (`closeout_testkit::contract`) against moto: every verb on every
//! kind of finding the sample organisation holds (resolve finds it, the action changes the live
//! state, acting again is already done, probe and health answer, no secret value leaks), then
//! the AWS-specific effects read back with the SDK: which policy was written, which secret
//! version is current, colleagues untouched, the rotated NHI key published and working.

use crate::common;

use chrono::{DateTime, Utc};
use closeout_contract::{ActionParams, Provider, Resolution, ResolveContext, State};
use closeout_testkit::contract::{run_suite, Case};
use common::*;

fn ids_of_kind(r: &Resolution, kind: &str) -> Vec<String> {
    r.findings
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.id.clone())
        .collect()
}

/// alice's leaver, as the contract suite's cases: sessions first, then her credentials, the
/// secrets she could reach and the NHIs she owns, and her entitlements last (secrets and roles
/// reached through a group stay reachable until the membership goes, and each case resolves
/// afresh).
#[tokio::test]
async fn every_verb_on_every_kind_keeps_the_contract() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let org = seed_org(&c).await;
    let acct = org.account.clone();
    let provider = moto.provider().await;
    // The cutoff follows the seeding by more than a second: moto dates are whole seconds.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let cutoff = Utc::now();
    let ctx = ResolveContext {
        identity: identity("E100", "alice@example.com", Some("E900")),
        cutoff: Some(cutoff),
    };
    let r = provider.resolve(&ctx).await.expect("resolve");
    assert!(
        r.findings
            .iter()
            .filter(|f| f.kind != "group-policy")
            .all(|f| f.state == State::Active),
        "before any action everything is open: {:#?}",
        r.findings
            .iter()
            .map(|f| (&f.id, f.state))
            .collect::<Vec<_>>()
    );

    let sessions = ActionParams {
        sessions_issued_before: Some(cutoff),
        ..ActionParams::default()
    };
    let owner = ActionParams {
        new_owner: Some("manager@example.com".into()),
        ..ActionParams::default()
    };
    let key = |k: &str| format!("aws:access-key:{k}");
    let roles = ids_of_kind(&r, "assumable-role");
    let secrets = ids_of_kind(&r, "secret");
    assert_eq!(secrets.len(), 6, "{secrets:?}");
    let ssh = ids_of_kind(&r, "ssh-key");
    let certs = ids_of_kind(&r, "signing-certificate");
    assert_eq!((ssh.len(), certs.len()), (1, 1));
    let attached = format!("aws:attached-policy:alice/{}", org.user_read_arn);

    let mut cases = vec![
        Case::new("aws:user:alice", "revoke-sessions", State::Revoked)
            .with_params(sessions.clone()),
    ];
    cases.extend(
        roles.iter().map(|id| {
            Case::new(id, "revoke-sessions", State::Revoked).with_params(sessions.clone())
        }),
    );
    cases.push(Case::new(
        "aws:login-profile:alice",
        "remove",
        State::Deleted,
    ));
    for k in &org.alice_keys {
        cases.push(Case::new(key(k), "deactivate", State::Inactive));
    }
    cases.push(Case::new(key(&org.alice_keys[0]), "delete", State::Deleted));
    cases.push(Case::new(&ssh[0], "deactivate", State::Inactive));
    cases.push(Case::new(&ssh[0], "delete", State::Deleted));
    cases.push(Case::new(&certs[0], "deactivate", State::Inactive));
    cases.push(Case::new(&certs[0], "delete", State::Deleted));
    cases.push(Case::new(
        format!("aws:mfa-device:{}", org.mfa_serial),
        "deactivate",
        State::Inactive,
    ));
    cases.extend(
        secrets
            .iter()
            .map(|id| Case::new(id, "rotate", State::Rotated)),
    );
    // An owned NHI user's key: a new key is published, the old one retired (inactive).
    cases.push(Case::new(key(&org.svc_keys[0]), "rotate", State::Inactive));
    cases.push(
        Case::new("aws:nhi-user:svc-ci", "reassign-owner", State::Reassigned)
            .with_params(owner.clone()),
    );
    cases.push(
        Case::new("aws:nhi-role:svc-role", "reassign-owner", State::Reassigned).with_params(owner),
    );
    cases.push(Case::new(
        "aws:group-membership:alice/devs",
        "remove",
        State::Deleted,
    ));
    cases.push(Case::new(&attached, "detach", State::Deleted));
    cases.push(Case::new(
        "aws:inline-policy:alice/inline-extra",
        "remove",
        State::Deleted,
    ));

    // Secret values seeded (every one contains the canary) must never come back.
    let report = run_suite(&provider, &ctx, &cases, &[CANARY]).await;
    assert!(
        report.health.principal.contains(&acct),
        "health names the caller in the account: {:?}",
        report.health
    );

    // Sessions: the user and every assumable role got the deny on aws:TokenIssueTime.
    let doc = c
        .user_inline_policy("alice", "closeout-revoke-sessions")
        .await
        .expect("revoke policy on alice");
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let stated = v["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        .as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .unwrap();
    assert!(
        stated >= cutoff && stated.timestamp() - cutoff.timestamp() <= 1,
        "{stated} vs {cutoff}"
    );
    assert_eq!(v["Statement"][0]["Effect"], "Deny");
    assert_eq!(v["Statement"][0]["Action"], "*");
    for id in &roles {
        let name = find(&r, id).attr("role").unwrap();
        assert!(c
            .role_inline_policy(name, "closeout-revoke-sessions")
            .await
            .is_some());
    }
    for other in ["ops-admin", "dave-role", "svc-role"] {
        assert!(
            c.role_inline_policy(other, "closeout-revoke-sessions")
                .await
                .is_none(),
            "{other} is not assumable by alice and must not be touched"
        );
    }

    // Login profile: alice's is gone, dave's untouched; the probe finds it dead.
    assert!(!c.has_login_profile("alice").await);
    assert!(
        c.has_login_profile("dave").await,
        "dave's login profile is untouched"
    );
    let lp = report.case("aws:login-profile:alice", "remove");
    assert!(lp.probe.as_ref().is_some_and(|p| p.dead), "{lp:?}");
    assert_eq!(
        report.case("aws:user:alice", "revoke-sessions").probe,
        None,
        "a user has no probe"
    );

    // Access keys: both inactive, then the first deleted; dave's untouched.
    for k in &org.alice_keys {
        let probe = report.case(&key(k), "deactivate").probe.clone().unwrap();
        assert!(probe.dead && probe.detail.contains("inactive"), "{probe:?}");
    }
    assert_eq!(c.key_status("alice", &org.alice_keys[0]).await, None);
    assert_eq!(
        c.key_status("alice", &org.alice_keys[1]).await.as_deref(),
        Some("Inactive")
    );
    let probe = report
        .case(&key(&org.alice_keys[0]), "delete")
        .probe
        .clone()
        .unwrap();
    assert!(
        probe.dead && probe.detail == "key no longer exists",
        "{probe:?}"
    );
    assert_eq!(
        c.key_status("dave", &org.dave_keys[0]).await.as_deref(),
        Some("Active")
    );

    // Rotating the person's own key is refused.
    let k1 = find(&r, &key(&org.alice_keys[1])).clone();
    let err = provider
        .execute(&closeout_contract::ActionRequest {
            idempotency_key: "run-1/rotate/own-key".into(),
            verb: "rotate".into(),
            finding: k1,
            params: ActionParams::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.class(), closeout_contract::ErrorClass::Permanent);
    assert!(err.to_string().contains("non-human"), "{err}");

    // SSH key, signing certificate and MFA device: gone from IAM.
    let listed = c
        .iam
        .list_ssh_public_keys()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(listed.ssh_public_keys().is_empty());
    let listed = c
        .iam
        .list_signing_certificates()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(listed.certificates().is_empty());
    let listed = c
        .iam
        .list_mfa_devices()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(listed.mfa_devices().is_empty());

    // Secrets: a new value is AWSCURRENT, the old one AWSPREVIOUS, the JSON shape kept, no
    // AWSPENDING left; secrets alice could not reach are untouched.
    for id in &secrets {
        let s = find(&r, id);
        let now = c.secret_value(&s.resource, "AWSCURRENT").await.unwrap();
        let prev = c.secret_value(&s.resource, "AWSPREVIOUS").await.unwrap();
        assert!(prev.contains(CANARY), "{id}: old value kept as AWSPREVIOUS");
        assert!(!now.contains(CANARY), "{id}: a new value is current");
        if prev.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&now).unwrap();
            let was: serde_json::Value = serde_json::from_str(&prev).unwrap();
            assert!(v.get("password").is_some(), "{id}: JSON shape kept");
            assert_eq!(
                v["username"], was["username"],
                "{id}: only the password changes"
            );
        }
        let versions =
            c.sm.list_secret_version_ids()
                .secret_id(&s.resource)
                .send()
                .await
                .unwrap();
        assert!(
            versions
                .versions()
                .iter()
                .all(|v| v.version_stages().iter().all(|x| x != "AWSPENDING")),
            "{id}: AWSPENDING cleared"
        );
    }
    for untouched in ["unreachable", "rp-dave", "other-db"] {
        let v = c
            .secret_value(&org.secrets[untouched], "AWSCURRENT")
            .await
            .unwrap();
        assert!(v.contains(CANARY), "{untouched} must not be rotated");
        assert!(c
            .secret_value(&org.secrets[untouched], "AWSPREVIOUS")
            .await
            .is_none());
    }

    // The NHI user's key: the old one inactive, a new one active, published and working.
    let rotated = report.case(&key(&org.svc_keys[0]), "rotate");
    assert!(
        rotated
            .outcome
            .detail
            .contains("closeout/nhi/svc-ci/access-key"),
        "{}",
        rotated.outcome.detail
    );
    assert!(
        rotated.probe.as_ref().is_some_and(|p| p.dead),
        "{rotated:?}"
    );
    assert_eq!(
        c.key_status("svc-ci", &org.svc_keys[0]).await.as_deref(),
        Some("Inactive")
    );
    let published = c
        .secret_value("closeout/nhi/svc-ci/access-key", "AWSCURRENT")
        .await
        .expect("published key");
    let published: serde_json::Value = serde_json::from_str(&published).unwrap();
    let new_id = published["AccessKeyId"].as_str().unwrap().to_string();
    let new_secret = published["SecretAccessKey"].as_str().unwrap().to_string();
    assert_ne!(new_id, org.svc_keys[0]);
    assert_eq!(
        c.key_status("svc-ci", &new_id).await.as_deref(),
        Some("Active")
    );
    assert_eq!(c.key_ids("svc-ci").await.len(), 2);
    let described =
        c.sm.describe_secret()
            .secret_id("closeout/nhi/svc-ci/access-key")
            .send()
            .await
            .unwrap();
    assert!(described
        .tags()
        .iter()
        .any(|t| t.key() == Some("managed-by") && t.value() == Some("closeout")));
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&c.conf)
            .credentials_provider(aws_credential_types::Credentials::new(
                new_id.clone(),
                new_secret.clone(),
                None,
                None,
                "test",
            ))
            .build(),
    );
    let who = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(
        who.arn(),
        Some(format!("arn:aws:iam::{acct}:user/svc-ci").as_str())
    );

    // NHI owners: reassigned to the manager, the previous owner kept; svc-other untouched.
    let tags = c.user_tags("svc-ci").await;
    assert!(
        tags.contains(&("owner".into(), "manager@example.com".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("closeout:previous-owner".into(), "E100".into())),
        "{tags:?}"
    );
    let tags = c.role_tags("svc-role").await;
    assert!(
        tags.contains(&("owner".into(), "manager@example.com".into())),
        "{tags:?}"
    );
    assert!(tags.contains(&("closeout:previous-owner".into(), "alice@example.com".into())));
    assert!(c
        .user_tags("svc-other")
        .await
        .contains(&("owner".into(), "E200".into())));

    // Entitlements: out of devs (dave stays), user-read detached, the inline policy removed
    // with its document kept for a restore; the session deny stays.
    assert!(c.groups_of("alice").await.is_empty());
    assert_eq!(
        c.groups_of("dave").await,
        vec!["devs"],
        "dave stays in devs"
    );
    let gp = find(&r, "aws:group-policy:alice/devs/group-read");
    assert_eq!(provider.live_state(gp, &ctx).await.unwrap(), State::Deleted);
    let listed = c
        .iam
        .list_attached_user_policies()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(listed.attached_policies().is_empty());
    let removed = report.case("aws:inline-policy:alice/inline-extra", "remove");
    assert!(
        removed.outcome.detail.contains("s3:ListBucket"),
        "document kept for restore: {}",
        removed.outcome.detail
    );
    assert!(c
        .user_inline_policy("alice", "inline-extra")
        .await
        .is_none());
    assert!(c
        .user_inline_policy("alice", "closeout-revoke-sessions")
        .await
        .is_some());

    // Verify: resolving again from live state finds nothing open, and every finding that
    // dropped out of the graph reads closed.
    let after = provider.resolve(&ctx).await.unwrap();
    let open: Vec<_> = after
        .findings
        .iter()
        .filter(|f| f.state.is_open())
        .map(|f| (&f.id, f.state))
        .collect();
    assert!(open.is_empty(), "still open: {open:#?}");
    for f in &r.findings {
        if f.kind == "group-policy" {
            continue;
        }
        let state = provider.live_state(f, &ctx).await.unwrap();
        assert!(!state.is_open(), "{} is {state}", f.id);
    }
    // Without a cutoff nothing counts as revoked: the user reads active.
    let no_cutoff = ResolveContext {
        cutoff: None,
        ..ctx.clone()
    };
    let plain = provider.resolve(&no_cutoff).await.unwrap();
    assert_eq!(find(&plain, "aws:user:alice").state, State::Active);

    // The new secret access key never appears in what the provider returned.
    let returned = format!(
        "{:?}{}",
        report.cases,
        serde_json::to_string(&after).unwrap()
    );
    assert!(
        !returned.contains(&new_secret),
        "the new secret access key leaked"
    );
}

/// A secret with rotation configured is rotated by its rotation function (`RotateSecret`, which
/// sets `LastRotatedDate`), never by writing a value by hand (which would leave the database it
/// guards on the old password); acting again is the same rotation, not a second one.
#[tokio::test]
async fn a_secret_with_configured_rotation_keeps_the_contract() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let arn = c
        .secret(
            "orders-db",
            &format!("{CANARY}-orders"),
            &[("owner", "E100")],
            None,
        )
        .await;
    // Configure a schedule (AWS would also name a function; moto rotates without one).
    c.sm.rotate_secret()
        .secret_id(&arn)
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .rotate_immediately(false)
        .send()
        .await
        .unwrap();
    let described = || {
        let sm = c.sm.clone();
        let arn = arn.clone();
        async move { sm.describe_secret().secret_id(arn).send().await.unwrap() }
    };
    let before = described().await;
    assert_eq!(before.rotation_enabled(), Some(true));
    let original: Vec<String> = before
        .version_ids_to_stages()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    // LastRotatedDate has second resolution: let a second pass so the action's is later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let started = Utc::now().timestamp();

    let provider = moto.provider().await;
    let ctx = ResolveContext {
        identity: identity("E100", "alice@example.com", None),
        cutoff: Some(Utc::now()),
    };
    let id = format!("aws:secret:{arn}");
    let report = run_suite(
        &provider,
        &ctx,
        &[Case::new(&id, "rotate", State::Rotated)],
        &[CANARY],
    )
    .await;
    let rotated = report.case(&id, "rotate");
    assert_eq!(
        rotated.finding.attr("rotation_enabled"),
        Some("true"),
        "{rotated:?}"
    );
    assert!(
        rotated.outcome.detail.contains("rotation function"),
        "{rotated:?}"
    );

    let after = described().await;
    let rotated_at = after
        .last_rotated_date()
        .map(|d| d.secs())
        .expect("LastRotatedDate");
    assert!(
        rotated_at >= started,
        "RotateSecret ran for the action: {rotated_at} < {started}"
    );
    let stage = |stage: &str| -> Vec<String> {
        after
            .version_ids_to_stages()
            .expect("versions")
            .iter()
            .filter(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let current = stage("AWSCURRENT");
    assert_eq!(current.len(), 1, "{after:?}");
    assert!(
        !original.contains(&current[0]),
        "a new version is AWSCURRENT: {after:?}"
    );
    // One rotation, not two: the version before the action's is the original one.
    let previous = stage("AWSPREVIOUS");
    assert!(
        previous.len() == 1 && original.contains(&previous[0]),
        "acting again rotated again: {after:?}"
    );
}
