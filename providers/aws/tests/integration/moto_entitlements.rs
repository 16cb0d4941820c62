//! Entitlements against a real moto server: grants read back with the SDK, idempotent, and
//! re-resolved with the id `grant_finding` promised; unclaimed IAM users; a service identity's
//! IAM user handed to its owner (`nhi_findings`, then `reassign-owner`).

use crate::common;

use closeout_contract::{
    ActionParams, ActionRequest, Entitlement, ErrorClass, Finding, Holder, IdentityKind,
    IdentityStatus, Provider, ProviderError, ResolveContext, State,
};
use common::*;

fn grant(f: &Finding) -> ActionRequest {
    ActionRequest {
        idempotency_key: format!("run-1/grant/{}", f.id),
        verb: "grant".into(),
        finding: f.clone(),
        params: ActionParams {
            run_id: "run-1".into(),
            ..Default::default()
        },
    }
}

async fn attached_arns(c: &Clients, user: &str) -> Vec<String> {
    c.iam
        .list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn grants_are_read_back_idempotent_and_resolve_with_the_promised_id() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let p = moto.provider().await;
    c.user("erin", &[("identity", "E300")]).await;
    c.user("frank", &[]).await;
    c.iam
        .create_group()
        .group_name("devs")
        .send()
        .await
        .unwrap();
    c.iam.create_group().group_name("ops").send().await.unwrap();
    c.iam
        .add_user_to_group()
        .user_name("frank")
        .group_name("ops")
        .send()
        .await
        .unwrap();
    let read_arn = c
        .managed_policy(
            "read-db",
            allow(
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:*:*:secret:db-*",
            ),
        )
        .await;
    let ctx = ResolveContext {
        identity: identity("E300", "erin@example.com", None),
        cutoff: None,
    };

    let before = p.resolve(&ctx).await.unwrap();
    assert!(before.findings.iter().all(|f| p.entitlement(f).is_none()));

    let group = Entitlement::new("aws", "group-membership", "ops");
    let policy = Entitlement::new("aws", "attached-policy", read_arn.clone());
    let mut granted = Vec::new();
    for ent in [&group, &policy] {
        let f = p.grant_finding(&ctx, ent).await.unwrap();
        assert_eq!(f.state, State::Deleted, "{f:?}");
        assert_eq!(p.entitlement(&f).as_ref(), Some(ent), "{f:?}");
        assert_eq!(p.live_state(&f, &ctx).await.unwrap(), State::Deleted);
        let first = p.execute(&grant(&f)).await.unwrap();
        assert!(!first.already_done, "{first:?}");
        assert_eq!(first.state, State::Active);
        let second = p.execute(&grant(&f)).await.unwrap();
        assert!(second.already_done, "{second:?}");
        assert_eq!(second.state, State::Active);
        assert_eq!(p.live_state(&f, &ctx).await.unwrap(), State::Active);
        granted.push(f);
    }
    // Read back with the SDK, independently of the provider.
    assert_eq!(c.groups_of("erin").await, vec!["ops".to_string()]);
    assert_eq!(attached_arns(&c, "erin").await, vec![read_arn.clone()]);
    assert_eq!(c.groups_of("frank").await, vec!["ops".to_string()]);

    // Resolve gives the same findings, now active.
    let after = p.resolve(&ctx).await.unwrap();
    for g in &granted {
        let f = after
            .findings
            .iter()
            .find(|f| f.id == g.id)
            .unwrap_or_else(|| panic!("{} not resolved after the grant", g.id));
        assert_eq!(f.state, State::Active);
        assert_eq!(
            Finding {
                state: State::Deleted,
                ..f.clone()
            },
            *g,
            "grant_finding promised what resolve reports"
        );
    }
    let mut ents: Vec<Entitlement> = after
        .findings
        .iter()
        .filter_map(|f| p.entitlement(f))
        .collect();
    ents.sort();
    let mut want = vec![group.clone(), policy.clone()];
    want.sort();
    assert_eq!(ents, want);

    // An inline policy is an entitlement (removable), a group's policy is not.
    c.iam
        .put_user_policy()
        .user_name("erin")
        .policy_name("extra")
        .policy_document(allow("s3:GetObject", "*").to_string())
        .send()
        .await
        .unwrap();
    let again = p.resolve(&ctx).await.unwrap();
    let inline = again
        .findings
        .iter()
        .find(|f| f.kind == "inline-policy")
        .expect("inline policy resolved");
    assert_eq!(
        p.entitlement(inline),
        Some(Entitlement::new("aws", "inline-policy", "extra"))
    );
    let err = p
        .grant_finding(&ctx, &Entitlement::new("aws", "inline-policy", "extra"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Config { .. }), "{err}");
}

#[tokio::test]
async fn grants_of_missing_targets_or_to_nobody_are_config_errors() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let p = moto.provider().await;
    c.user("erin", &[("identity", "E300")]).await;
    let ctx = ResolveContext {
        identity: identity("E300", "erin@example.com", None),
        cutoff: None,
    };
    let acct = c.account().await;
    let cases = [
        (
            Entitlement::new("aws", "group-membership", "no-such-group"),
            "IAM group no-such-group does not exist",
        ),
        (
            Entitlement::new(
                "aws",
                "attached-policy",
                format!("arn:aws:iam::{acct}:policy/no-such-policy"),
            ),
            "does not exist",
        ),
    ];
    for (ent, want) in &cases {
        let err = p.grant_finding(&ctx, ent).await.unwrap_err();
        assert!(matches!(err, ProviderError::Config { .. }), "{ent}: {err}");
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains(want), "{ent}: {err}");
    }
    c.iam
        .create_group()
        .group_name("devs")
        .send()
        .await
        .unwrap();
    let nobody = ResolveContext {
        identity: identity("E999", "nobody@example.com", None),
        cutoff: None,
    };
    let err = p
        .grant_finding(
            &nobody,
            &Entitlement::new("aws", "group-membership", "devs"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Config { .. }), "{err}");
    assert!(err.to_string().contains("has no IAM user"), "{err}");
    assert!(c.groups_of("erin").await.is_empty());
}

#[tokio::test]
async fn unclaimed_accounts_list_strays_only() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let p = moto.provider().await;
    c.user("erin", &[("identity", "E300")]).await;
    c.user("gina", &[]).await;
    c.user("stray", &[]).await;
    c.user("ghost", &[("identity", "E404")]).await;
    c.user("svc-ci", &[("owner", "E300")]).await;
    let people = [
        identity("E300", "erin@example.com", None),
        identity("E400", "gina@example.com", None),
    ];
    let out = p.unclaimed_accounts(&people).await.unwrap();
    let names: Vec<&str> = out.iter().map(|u| u.display.as_str()).collect();
    assert_eq!(names, vec!["iam user ghost", "iam user stray"], "{out:?}");
    let stray = &out[1];
    assert!(stray.resource.ends_with(":user/stray"), "{stray:?}");
    assert!(
        stray.reason.contains("user name stray matches no identity"),
        "{stray:?}"
    );
    assert!(stray.enabled);
    assert_eq!(out[0].reason, "no identity matches tag identity = E404");
}

/// A joiner's ownership record: the IAM user of a service identity, untagged, becomes an
/// `nhi-user` of the person once `reassign-owner` tags it, with the id `nhi_findings` gave it.
#[tokio::test]
async fn nhi_findings_of_a_service_identity_become_the_owners_nhis() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let p = moto.provider().await;
    c.user("erin", &[("identity", "E300")]).await;
    // Correlated with the service identity by user name (= its id); no owner tag yet.
    c.user("svc-deploy", &[]).await;
    // Its role, tagged with the service's id; a role named like it but tagged as somebody
    // else's is not its.
    c.role("svc-deploy-role", trust("*"), &[("identity", "svc-deploy")])
        .await;
    c.role(
        "svc-deploy@example.com",
        trust("*"),
        &[("identity", "E999")],
    )
    .await;
    let mut svc = identity("svc-deploy", "svc-deploy@example.com", Some("E300"));
    svc.kind = IdentityKind::Service;
    svc.status = IdentityStatus::Active;
    let svc_ctx = ResolveContext {
        identity: svc,
        cutoff: None,
    };
    let erin = ResolveContext {
        identity: identity("E300", "erin@example.com", None),
        cutoff: None,
    };

    let found = p.nhi_findings(&svc_ctx).await.unwrap();
    let ids: Vec<&str> = found.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        ["aws:nhi-user:svc-deploy", "aws:nhi-role:svc-deploy-role"],
        "{found:?}"
    );
    assert_eq!(found[1].holder, Holder::Nhi("svc-deploy-role".into()));
    let f = &found[0];
    assert_eq!(f.id, "aws:nhi-user:svc-deploy");
    assert_eq!(f.kind, "nhi-user");
    assert_eq!(f.holder, Holder::Nhi("svc-deploy".into()));
    assert_eq!(f.state, State::Active);
    assert_eq!(f.attr("owner"), None, "untagged: no owner attribute");
    assert!(f
        .attr("arn")
        .is_some_and(|a| a.ends_with(":user/svc-deploy")));
    let before = p.resolve(&erin).await.unwrap();
    assert!(before.findings.iter().all(|x| x.id != f.id));

    let reassign = ActionRequest {
        idempotency_key: format!("run-1/reassign-owner/{}", f.id),
        verb: "reassign-owner".into(),
        finding: f.clone(),
        params: ActionParams {
            run_id: "run-1".into(),
            new_owner: Some("erin@example.com".into()),
            ..Default::default()
        },
    };
    let first = p.execute(&reassign).await.unwrap();
    assert!(!first.already_done, "{first:?}");
    assert_eq!(first.state, State::Reassigned);
    // Read back with the SDK: the owner tag, the run, and no previous owner to keep.
    let tags = c.user_tags("svc-deploy").await;
    assert!(
        tags.contains(&("owner".into(), "erin@example.com".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("closeout:run".into(), "run-1".into())),
        "{tags:?}"
    );
    assert!(
        !tags.iter().any(|(k, _)| k == "closeout:previous-owner"),
        "{tags:?}"
    );
    let second = p.execute(&reassign).await.unwrap();
    assert!(second.already_done, "{second:?}");
    assert_eq!(second.state, State::Reassigned);
    // Verified against the service identity the owner is someone else; the person holds it.
    assert_eq!(p.live_state(f, &svc_ctx).await.unwrap(), State::Reassigned);
    assert_eq!(p.live_state(f, &erin).await.unwrap(), State::Active);

    // What a leaver will find and reassign: the same finding, now with its owner.
    let after = p.resolve(&erin).await.unwrap();
    let owned = after
        .findings
        .iter()
        .find(|x| x.id == f.id)
        .unwrap_or_else(|| panic!("{} not resolved for the owner: {after:?}", f.id));
    assert_eq!(owned.kind, "nhi-user");
    assert_eq!(owned.holder, f.holder);
    assert_eq!(owned.display, f.display);
    assert_eq!(owned.attr("owner"), Some("erin@example.com"));
    assert_eq!(
        owned.paths[0].render("E300"),
        "E300 -owns-> iam user svc-deploy (tag owner = erin@example.com)"
    );
    // Only the user was handed over: the role is nobody's yet.
    assert!(after.findings.iter().all(|x| x.kind != "nhi-role"));
    let again = p.nhi_findings(&svc_ctx).await.unwrap();
    assert_eq!(again[0], owned.clone(), "one builder for both");
    assert_eq!(again[1], found[1]);

    // A service identity with no IAM user here.
    let mut ghost = identity("svc-none", "svc-none@example.com", Some("E300"));
    ghost.kind = IdentityKind::Service;
    let none = p
        .nhi_findings(&ResolveContext {
            identity: ghost,
            cutoff: None,
        })
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}
