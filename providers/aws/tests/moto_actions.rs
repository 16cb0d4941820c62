//! Every action against a real moto server: the live state (read back with the SDK) changes as
//! described, a second execution is `already_done`, colleagues are untouched, and no secret value
//! appears in any outcome or error.

mod common;

use chrono::{DateTime, Utc};
use closeout_contract::{
    ActionOutcome, ActionParams, ActionRequest, ErrorClass, Finding, Provider, ProviderError,
    Resolution, ResolveContext, State,
};
use common::*;

struct Run<'a> {
    provider: &'a closeout_aws::AwsProvider,
    cutoff: DateTime<Utc>,
    /// Every outcome detail and error message, searched for secret values at the end.
    texts: Vec<String>,
}

impl Run<'_> {
    fn request(&self, f: &Finding, verb: &str, step: &str) -> ActionRequest {
        ActionRequest {
            idempotency_key: format!("run-1/{step}/{}", f.id),
            verb: verb.into(),
            finding: f.clone(),
            params: ActionParams {
                sessions_issued_before: Some(self.cutoff),
                new_owner: Some("manager@example.com".into()),
                run_id: "run-1".into(),
            },
        }
    }

    async fn exec(&mut self, f: &Finding, verb: &str) -> Result<ActionOutcome, ProviderError> {
        let r = self.provider.execute(&self.request(f, verb, verb)).await;
        match &r {
            Ok(o) => self.texts.push(o.detail.clone()),
            Err(e) => self.texts.push(e.to_string()),
        }
        r
    }

    /// Execute twice: the first changes something, the second is already done; both report
    /// `state`.
    async fn twice(&mut self, f: &Finding, verb: &str, state: State) -> ActionOutcome {
        let first = self
            .exec(f, verb)
            .await
            .unwrap_or_else(|e| panic!("{verb} {}: {e}", f.id));
        assert!(!first.already_done, "{verb} {}: {first:?}", f.id);
        assert_eq!(first.state, state, "{verb} {}: {first:?}", f.id);
        let second = self
            .exec(f, verb)
            .await
            .unwrap_or_else(|e| panic!("second {verb} {}: {e}", f.id));
        assert!(second.already_done, "second {verb} {}: {second:?}", f.id);
        first
    }
}

fn find<'a>(r: &'a Resolution, id: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no finding {id}"))
}

fn of_kind<'a>(r: &'a Resolution, kind: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.kind == kind).collect()
}

#[tokio::test]
async fn every_action_changes_live_state_and_is_idempotent() {
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
    let mut run = Run {
        provider: &provider,
        cutoff,
        texts: Vec::new(),
    };

    // Sessions: the user and every assumable role get the deny on aws:TokenIssueTime.
    let user = find(&r, "aws:user:alice").clone();
    run.twice(&user, "revoke-sessions", State::Revoked).await;
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
    for role in of_kind(&r, "assumable-role") {
        let role = role.clone();
        run.twice(&role, "revoke-sessions", State::Revoked).await;
        let name = role.attr("role").unwrap();
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

    // Login profile.
    run.twice(
        find(&r, "aws:login-profile:alice"),
        "remove",
        State::Deleted,
    )
    .await;
    assert!(!c.has_login_profile("alice").await);
    assert!(
        c.has_login_profile("dave").await,
        "dave's login profile is untouched"
    );

    // Access keys: deactivate, then delete.
    for k in &org.alice_keys {
        let f = find(&r, &format!("aws:access-key:{k}")).clone();
        run.twice(&f, "deactivate", State::Inactive).await;
        assert_eq!(c.key_status("alice", k).await.as_deref(), Some("Inactive"));
        assert_eq!(
            provider.live_state(&f, &ctx).await.unwrap(),
            State::Inactive
        );
        let probe = provider.probe(&f).await.unwrap().unwrap();
        assert!(probe.dead && probe.detail.contains("inactive"), "{probe:?}");
    }
    let k0 = find(&r, &format!("aws:access-key:{}", org.alice_keys[0])).clone();
    run.twice(&k0, "delete", State::Deleted).await;
    assert_eq!(c.key_status("alice", &org.alice_keys[0]).await, None);
    assert_eq!(
        provider.live_state(&k0, &ctx).await.unwrap(),
        State::Deleted
    );
    let probe = provider.probe(&k0).await.unwrap().unwrap();
    assert!(
        probe.dead && probe.detail == "key no longer exists",
        "{probe:?}"
    );
    assert_eq!(
        c.key_status("dave", &org.dave_keys[0]).await.as_deref(),
        Some("Active")
    );

    // Rotating the person's own key is refused.
    let k1 = find(&r, &format!("aws:access-key:{}", org.alice_keys[1])).clone();
    let err = run.exec(&k1, "rotate").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("non-human"), "{err}");

    // SSH key and signing certificate.
    let ssh = of_kind(&r, "ssh-key")[0].clone();
    run.twice(&ssh, "deactivate", State::Inactive).await;
    let listed = c
        .iam
        .list_ssh_public_keys()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.ssh_public_keys()[0].status().as_str(), "Inactive");
    run.twice(&ssh, "delete", State::Deleted).await;
    let listed = c
        .iam
        .list_ssh_public_keys()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(listed.ssh_public_keys().is_empty());
    let cert = of_kind(&r, "signing-certificate")[0].clone();
    run.twice(&cert, "deactivate", State::Inactive).await;
    let listed = c
        .iam
        .list_signing_certificates()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.certificates()[0].status().as_str(), "Inactive");
    assert_eq!(
        provider.live_state(&cert, &ctx).await.unwrap(),
        State::Inactive
    );
    run.twice(&cert, "delete", State::Deleted).await;
    let listed = c
        .iam
        .list_signing_certificates()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(listed.certificates().is_empty());

    // MFA.
    let mfa = find(&r, &format!("aws:mfa-device:{}", org.mfa_serial)).clone();
    run.twice(&mfa, "deactivate", State::Inactive).await;
    let listed = c
        .iam
        .list_mfa_devices()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(listed.mfa_devices().is_empty());
    assert_eq!(
        provider.live_state(&mfa, &ctx).await.unwrap(),
        State::Inactive
    );

    // Entitlements.
    let membership = find(&r, "aws:group-membership:alice/devs").clone();
    run.twice(&membership, "remove", State::Deleted).await;
    assert!(c.groups_of("alice").await.is_empty());
    assert_eq!(
        c.groups_of("dave").await,
        vec!["devs"],
        "dave stays in devs"
    );
    let gp = find(&r, "aws:group-policy:alice/devs/group-read").clone();
    assert_eq!(
        provider.live_state(&gp, &ctx).await.unwrap(),
        State::Deleted
    );
    let attached = find(
        &r,
        &format!("aws:attached-policy:alice/{}", org.user_read_arn),
    )
    .clone();
    run.twice(&attached, "detach", State::Deleted).await;
    let listed = c
        .iam
        .list_attached_user_policies()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert!(listed.attached_policies().is_empty());
    let inline = find(&r, "aws:inline-policy:alice/inline-extra").clone();
    let removed = run.twice(&inline, "remove", State::Deleted).await;
    assert!(
        removed.detail.contains("s3:ListBucket"),
        "document kept for restore: {}",
        removed.detail
    );
    assert!(c
        .user_inline_policy("alice", "inline-extra")
        .await
        .is_none());
    assert!(c
        .user_inline_policy("alice", "closeout-revoke-sessions")
        .await
        .is_some());

    // Secrets: new value AWSCURRENT, old value AWSPREVIOUS.
    let secrets: Vec<Finding> = of_kind(&r, "secret").into_iter().cloned().collect();
    assert_eq!(secrets.len(), 6);
    for s in &secrets {
        let before = c.secret_value(&s.resource, "AWSCURRENT").await.unwrap();
        assert!(before.contains(CANARY));
        run.twice(s, "rotate", State::Rotated).await;
        let now = c.secret_value(&s.resource, "AWSCURRENT").await.unwrap();
        let prev = c.secret_value(&s.resource, "AWSPREVIOUS").await.unwrap();
        assert_eq!(prev, before, "{}: old value kept as AWSPREVIOUS", s.id);
        assert_ne!(now, before, "{}", s.id);
        assert!(!now.contains(CANARY));
        if before.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&now).unwrap();
            assert!(
                v.get("username").is_some() && v.get("password").is_some(),
                "{}: JSON shape kept",
                s.id
            );
        }
        let versions =
            c.sm.list_secret_version_ids()
                .secret_id(&s.resource)
                .send()
                .await
                .unwrap();
        let pending: Vec<_> = versions
            .versions()
            .iter()
            .filter(|v| v.version_stages().iter().any(|x| x == "AWSPENDING"))
            .collect();
        assert!(pending.is_empty(), "{}: AWSPENDING cleared", s.id);
        assert_eq!(provider.live_state(s, &ctx).await.unwrap(), State::Rotated);
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

    // NHIs: owner reassigned, the NHI user's key rotated.
    let svc_key = find(&r, &format!("aws:access-key:{}", org.svc_keys[0])).clone();
    let rotated = run.twice(&svc_key, "rotate", State::Inactive).await;
    assert!(
        rotated.detail.contains("closeout/nhi/svc-ci/access-key"),
        "{}",
        rotated.detail
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
    let tags =
        c.sm.describe_secret()
            .secret_id("closeout/nhi/svc-ci/access-key")
            .send()
            .await
            .unwrap();
    assert!(tags
        .tags()
        .iter()
        .any(|t| t.key() == Some("managed-by") && t.value() == Some("closeout")));
    // The published key works.
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
    assert_eq!(c.key_ids("svc-ci").await.len(), 2);
    let probe = provider.probe(&svc_key).await.unwrap().unwrap();
    assert!(probe.dead);

    let nhi_user = find(&r, "aws:nhi-user:svc-ci").clone();
    run.twice(&nhi_user, "reassign-owner", State::Reassigned)
        .await;
    let tags = c.user_tags("svc-ci").await;
    assert!(
        tags.contains(&("owner".into(), "manager@example.com".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("closeout:previous-owner".into(), "E100".into())),
        "{tags:?}"
    );
    assert_eq!(
        provider.live_state(&nhi_user, &ctx).await.unwrap(),
        State::Reassigned
    );
    let nhi_role = find(&r, "aws:nhi-role:svc-role").clone();
    run.twice(&nhi_role, "reassign-owner", State::Reassigned)
        .await;
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

    // Login profile probe.
    let lp = find(&r, "aws:login-profile:alice").clone();
    assert!(provider.probe(&lp).await.unwrap().unwrap().dead);
    assert_eq!(provider.probe(&user).await.unwrap(), None);

    // Verify: resolving again from live state finds nothing open, and every acted-on finding
    // that dropped out of the graph reads closed.
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
    // A second resolution without a cutoff (nothing counts as rotated) still shows the user
    // revoked only relative to a cutoff: Active.
    let no_cutoff = ResolveContext {
        cutoff: None,
        ..ctx.clone()
    };
    let plain = provider.resolve(&no_cutoff).await.unwrap();
    assert_eq!(find(&plain, "aws:user:alice").state, State::Active);

    // No secret value in any outcome, error or finding.
    let mut all = run.texts.join("\n");
    all.push_str(&serde_json::to_string(&r).unwrap());
    all.push_str(&serde_json::to_string(&after).unwrap());
    assert!(!all.contains(CANARY), "a secret value leaked");
    assert!(
        !all.contains(&new_secret),
        "the new secret access key leaked"
    );
}

#[tokio::test]
async fn secret_rotation_finishes_after_a_crash_and_never_rolls_back() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let arn = c
        .secret(
            "crash-db",
            &format!("{CANARY}-crash"),
            &[("owner", "E100")],
            None,
        )
        .await;
    let provider = moto.provider().await;
    let ctx = ResolveContext {
        identity: identity("E100", "alice@example.com", None),
        cutoff: Some(Utc::now()),
    };
    let r = provider.resolve(&ctx).await.unwrap();
    let f = find(&r, &format!("aws:secret:{arn}")).clone();
    let request = ActionRequest {
        idempotency_key: "run-7/rotate/crash-db".into(),
        verb: "rotate".into(),
        finding: f.clone(),
        params: ActionParams::default(),
    };
    // Simulate a crash after the new value was staged: AWSPENDING with this action's token.
    let token = {
        // Same derivation as the provider (sha256 of the key, UUID-shaped): run once to learn it.
        let out = provider.execute(&request).await.unwrap();
        assert!(!out.already_done);
        let versions =
            c.sm.list_secret_version_ids()
                .secret_id(&arn)
                .send()
                .await
                .unwrap();
        versions
            .versions()
            .iter()
            .find(|v| v.version_stages().iter().any(|s| s == "AWSCURRENT"))
            .unwrap()
            .version_id()
            .unwrap()
            .to_string()
    };
    // Someone else rotates afterwards (stage, then promote: a plain PutSecretValue after an
    // UpdateSecretVersionStage leaves two AWSCURRENT versions in moto 5.2): re-running our action
    // must not bring our value back.
    let theirs = "22222222-2222-4222-8222-222222222222";
    c.sm.put_secret_value()
        .secret_id(&arn)
        .secret_string("their-value")
        .client_request_token(theirs)
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    c.sm.update_secret_version_stage()
        .secret_id(&arn)
        .version_stage("AWSCURRENT")
        .move_to_version_id(theirs)
        .remove_from_version_id(&token)
        .send()
        .await
        .unwrap();
    let again = provider.execute(&request).await.unwrap();
    assert!(again.already_done, "{again:?}");
    assert_eq!(
        c.secret_value(&arn, "AWSCURRENT").await.as_deref(),
        Some("their-value")
    );

    // A different action whose staged version was left AWSPENDING by a crash gets promoted.
    let request2 = ActionRequest {
        idempotency_key: "run-8/rotate/crash-db".into(),
        ..request.clone()
    };
    let out = provider.execute(&request2).await.unwrap();
    assert!(!out.already_done);
    let ours2 = c.secret_value(&arn, "AWSCURRENT").await.unwrap();
    // Stage the crash: move AWSCURRENT back, leave our version AWSPENDING only.
    let versions =
        c.sm.list_secret_version_ids()
            .secret_id(&arn)
            .send()
            .await
            .unwrap();
    let current2 = versions
        .versions()
        .iter()
        .find(|v| v.version_stages().iter().any(|s| s == "AWSCURRENT"))
        .unwrap()
        .version_id()
        .unwrap()
        .to_string();
    c.sm.update_secret_version_stage()
        .secret_id(&arn)
        .version_stage("AWSCURRENT")
        .move_to_version_id(theirs)
        .remove_from_version_id(&current2)
        .send()
        .await
        .unwrap();
    c.sm.update_secret_version_stage()
        .secret_id(&arn)
        .version_stage("AWSPENDING")
        .move_to_version_id(&current2)
        .send()
        .await
        .unwrap();
    let resumed = provider.execute(&request2).await.unwrap();
    assert!(!resumed.already_done, "{resumed:?}");
    assert_eq!(
        c.secret_value(&arn, "AWSCURRENT").await.as_deref(),
        Some(ours2.as_str())
    );
    assert_eq!(
        c.secret_value(&arn, "AWSPREVIOUS").await.as_deref(),
        Some("their-value")
    );
    assert_ne!(token, current2);
    assert!(!format!("{out:?}{resumed:?}{again:?}").contains(CANARY));
}

#[tokio::test]
async fn nhi_key_rotation_refuses_two_unpublished_keys_and_resumes_a_published_one() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.user("svc-a", &[("owner", "E100")]).await;
    c.user("svc-b", &[("owner", "E100")]).await;
    for _ in 0..2 {
        c.iam
            .create_access_key()
            .user_name("svc-a")
            .send()
            .await
            .unwrap();
    }
    c.iam
        .create_access_key()
        .user_name("svc-b")
        .send()
        .await
        .unwrap();
    let provider = moto.provider().await;
    let ctx = ResolveContext {
        identity: identity("E100", "alice@example.com", None),
        cutoff: Some(Utc::now()),
    };
    let r = provider.resolve(&ctx).await.unwrap();

    // svc-a already has two keys, neither published: a clear permanent error, nothing created.
    let a_keys = c.key_ids("svc-a").await;
    let f = find(&r, &format!("aws:access-key:{}", a_keys[0])).clone();
    let req = |f: &Finding, key: &str| ActionRequest {
        idempotency_key: key.into(),
        verb: "rotate".into(),
        finding: f.clone(),
        params: ActionParams::default(),
    };
    let err = provider.execute(&req(&f, "k1")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(
        err.to_string().contains("already has two access keys"),
        "{err}"
    );
    assert_eq!(c.key_ids("svc-a").await.len(), 2);

    // svc-b: a crash after publishing (old key still active) resumes without a third key.
    let b_old = c.key_ids("svc-b").await[0].clone();
    let fresh = c
        .iam
        .create_access_key()
        .user_name("svc-b")
        .send()
        .await
        .unwrap();
    let fresh = fresh.access_key().unwrap();
    c.secret(
        "closeout/nhi/svc-b/access-key",
        &serde_json::json!({"AccessKeyId": fresh.access_key_id(), "SecretAccessKey": fresh.secret_access_key()}).to_string(),
        &[],
        None,
    )
    .await;
    let f = find(&r, &format!("aws:access-key:{b_old}")).clone();
    let out = provider.execute(&req(&f, "k2")).await.unwrap();
    assert!(!out.already_done);
    assert!(out.detail.contains("reused"), "{}", out.detail);
    assert_eq!(c.key_ids("svc-b").await.len(), 2);
    assert_eq!(
        c.key_status("svc-b", &b_old).await.as_deref(),
        Some("Inactive")
    );
    assert_eq!(
        c.key_status("svc-b", fresh.access_key_id())
            .await
            .as_deref(),
        Some("Active")
    );
    assert!(!out.detail.contains(fresh.secret_access_key()));
}

#[tokio::test]
async fn unknown_verbs_and_missing_parameters_are_permanent() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.user("erin", &[("identity", "E500")]).await;
    c.user("svc-e", &[("owner", "E500")]).await;
    let provider = moto.provider().await;
    let ctx = ResolveContext {
        identity: identity("E500", "erin@example.com", None),
        cutoff: None,
    };
    let r = provider.resolve(&ctx).await.unwrap();
    let user = find(&r, "aws:user:erin").clone();
    let req = |f: &Finding, verb: &str, params: ActionParams| ActionRequest {
        idempotency_key: "k".into(),
        verb: verb.into(),
        finding: f.clone(),
        params,
    };
    let err = provider
        .execute(&req(&user, "delete", ActionParams::default()))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(
        err.to_string().contains("user") && err.to_string().contains("delete"),
        "{err}"
    );
    let err = provider
        .execute(&req(&user, "revoke-sessions", ActionParams::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sessions_issued_before"), "{err}");
    let nhi = find(&r, "aws:nhi-user:svc-e").clone();
    let err = provider
        .execute(&req(&nhi, "reassign-owner", ActionParams::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("new_owner"), "{err}");

    // An earlier, stricter revocation is already done; a later cutoff replaces it.
    let t0: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
    let params = |t: DateTime<Utc>| ActionParams {
        sessions_issued_before: Some(t),
        ..Default::default()
    };
    assert!(
        !provider
            .execute(&req(&user, "revoke-sessions", params(t0)))
            .await
            .unwrap()
            .already_done
    );
    let earlier = t0 - chrono::Duration::days(1);
    assert!(
        provider
            .execute(&req(&user, "revoke-sessions", params(earlier)))
            .await
            .unwrap()
            .already_done
    );
    let later = t0 + chrono::Duration::days(1);
    assert!(
        !provider
            .execute(&req(&user, "revoke-sessions", params(later)))
            .await
            .unwrap()
            .already_done
    );
    // The session-revocation policy never shows up as an inline-policy finding.
    let r = provider.resolve(&ctx).await.unwrap();
    assert!(r.findings.iter().all(|f| f.kind != "inline-policy"));
    assert_eq!(
        find(&r, "aws:user:erin").attr("sessions_revoked_before"),
        Some("2030-01-02T00:00:00Z")
    );
}

/// A secret with rotation configured is rotated by its rotation function (`RotateSecret`, which
/// sets `LastRotatedDate`), never by writing a value by hand (which would leave the database it
/// guards on the old password). A retry of the same action is the same rotation.
#[tokio::test]
async fn a_secret_with_configured_rotation_is_rotated_by_its_function() {
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
    let described = |c: &Clients| {
        let arn = arn.clone();
        let sm = c.sm.clone();
        async move { sm.describe_secret().secret_id(arn).send().await.unwrap() }
    };
    let before = described(&c).await;
    assert_eq!(before.rotation_enabled(), Some(true));
    let versions_before: Vec<String> = before
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
    let r = provider.resolve(&ctx).await.unwrap();
    let f = find(&r, &format!("aws:secret:{arn}")).clone();
    assert_eq!(f.attr("rotation_enabled"), Some("true"), "{f:?}");
    let request = ActionRequest {
        idempotency_key: "run-9/rotate/orders-db".into(),
        verb: "rotate".into(),
        finding: f.clone(),
        params: ActionParams::default(),
    };
    let out = provider.execute(&request).await.unwrap();
    assert!(!out.already_done, "{out:?}");
    assert!(out.detail.contains("rotation function"), "{out:?}");

    let after = described(&c).await;
    let rotated_at = after
        .last_rotated_date()
        .map(|d| d.secs())
        .expect("LastRotatedDate");
    assert!(
        rotated_at >= started,
        "RotateSecret ran for the action: {rotated_at} < {started}"
    );
    let current: Vec<String> = after
        .version_ids_to_stages()
        .expect("versions")
        .iter()
        .filter(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(current.len(), 1, "{after:?}");
    assert!(
        !versions_before.contains(&current[0]),
        "a new version is AWSCURRENT: {after:?}"
    );

    let again = provider.execute(&request).await.unwrap();
    assert!(again.already_done, "{again:?}");
    assert_eq!(
        described(&c).await.last_rotated_date(),
        after.last_rotated_date(),
        "a retry does not rotate again"
    );
    let state = provider.live_state(&f, &ctx).await.unwrap();
    assert_eq!(state, State::Rotated);
}
