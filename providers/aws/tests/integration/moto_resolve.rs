//! Resolution against a real moto server: every kind, with the paths that explain it, and
//! nothing that belongs to somebody else.

use crate::common;

use closeout_contract::{Holder, Provider, Relation, ResolveContext, State};
use common::*;

fn paths(r: &closeout_contract::Resolution, id: &str) -> Vec<String> {
    let f = r
        .findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no finding {id}; have {:#?}", ids(r)));
    f.paths.iter().map(|p| p.render("E100")).collect()
}

fn ids(r: &closeout_contract::Resolution) -> Vec<String> {
    r.findings.iter().map(|f| f.id.clone()).collect()
}

#[tokio::test]
async fn resolves_every_kind_with_explained_paths() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let org = seed_org(&c).await;
    let acct = &org.account;
    let provider = moto.provider().await;
    provider.health(&[]).await.expect("health");

    let ctx = ResolveContext {
        identity: identity("E100", "alice@example.com", Some("E900")),
        cutoff: None,
    };
    let r = provider.resolve(&ctx).await.expect("resolve");

    // The account, by tag.
    assert_eq!(r.accounts.len(), 1);
    assert_eq!(
        r.accounts[0].resource,
        format!("arn:aws:iam::{acct}:user/alice")
    );
    assert_eq!(r.accounts[0].matched_by, "tag identity = E100");
    assert!(
        r.warnings.iter().any(|w| w
            == "service-specific credentials: endpoint does not implement ListServiceSpecificCredentials"),
        "{:?}",
        r.warnings
    );

    let s = |name: &str| org.secrets[name].clone();
    let mut expected: Vec<String> = vec![
        "aws:user:alice".into(),
        "aws:login-profile:alice".into(),
        format!("aws:access-key:{}", org.alice_keys[0]),
        format!("aws:access-key:{}", org.alice_keys[1]),
        format!("aws:access-key:{}", org.svc_keys[0]),
        format!("aws:mfa-device:{}", org.mfa_serial),
        "aws:group-membership:alice/devs".into(),
        format!("aws:group-policy:alice/devs/{}", org.assume_app_arn),
        "aws:group-policy:alice/devs/group-read".into(),
        format!("aws:attached-policy:alice/{}", org.user_read_arn),
        "aws:inline-policy:alice/inline-extra".into(),
        format!("aws:assumable-role:arn:aws:iam::{acct}:role/direct-role"),
        format!("aws:assumable-role:arn:aws:iam::{acct}:role/app-deploy"),
        "aws:nhi-user:svc-ci".into(),
        "aws:nhi-role:svc-role".into(),
    ];
    for name in [
        "owned-secret",
        "user-db",
        "group-db",
        "role-db",
        "rp-user",
        "rp-role",
    ] {
        expected.push(format!("aws:secret:{}", s(name)));
    }
    let got = ids(&r);
    let ssh: Vec<&String> = got
        .iter()
        .filter(|i| i.starts_with("aws:ssh-key:"))
        .collect();
    let cert: Vec<&String> = got
        .iter()
        .filter(|i| i.starts_with("aws:signing-certificate:"))
        .collect();
    assert_eq!((ssh.len(), cert.len()), (1, 1), "{got:#?}");
    let mut rest: Vec<String> = got
        .iter()
        .filter(|i| !i.starts_with("aws:ssh-key:") && !i.starts_with("aws:signing-certificate:"))
        .cloned()
        .collect();
    rest.sort();
    expected.sort();
    assert_eq!(rest, expected);

    // Nothing of dave's, nor the secrets no path reaches, nor the roles alice cannot assume.
    let json = serde_json::to_string(&r).unwrap();
    for absent in [
        "dave-role",
        "ops-admin",
        "unreachable",
        "rp-dave",
        "other-db",
        "svc-other",
        "dave-all",
    ] {
        assert!(!json.contains(absent), "{absent} must not be a finding");
    }
    for k in &org.dave_keys {
        assert!(!json.contains(k.as_str()));
    }
    // Secret values never appear.
    assert!(
        !json.contains(CANARY),
        "a secret value leaked into the resolution"
    );

    // Paths.
    assert_eq!(
        paths(&r, &format!("aws:assumable-role:arn:aws:iam::{acct}:role/direct-role")),
        vec!["E100 -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice)"]
    );
    assert_eq!(
        paths(&r, &format!("aws:assumable-role:arn:aws:iam::{acct}:role/app-deploy")),
        vec![format!("E100 -account-> iam user alice -member-of-> group devs -attached-> policy assume-app -can-assume-> role app-deploy (trust policy trusts account {acct})")]
    );
    assert_eq!(
        paths(&r, &format!("aws:secret:{}", s("owned-secret"))),
        vec!["E100 -owns-> secret owned-secret (tag owner = alice@example.com)"]
    );
    assert_eq!(
        paths(&r, &format!("aws:secret:{}", s("user-db"))),
        vec!["E100 -account-> iam user alice -attached-> policy user-read -can-read-> secret user-db"]
    );
    assert_eq!(
        paths(&r, &format!("aws:secret:{}", s("group-db"))),
        vec!["E100 -account-> iam user alice -member-of-> group devs -inline-> inline policy group-read -can-read-> secret group-db"]
    );
    assert_eq!(
        paths(&r, &format!("aws:secret:{}", s("role-db"))),
        vec!["E100 -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice) -inline-> inline policy role-read -can-read-> secret role-db"]
    );
    assert_eq!(
        paths(&r, &format!("aws:secret:{}", s("rp-user"))),
        vec!["E100 -account-> iam user alice -can-read-> secret rp-user (resource policy names iam user alice)"]
    );
    assert_eq!(
        paths(&r, &format!("aws:secret:{}", s("rp-role"))),
        vec![format!("E100 -account-> iam user alice -member-of-> group devs -attached-> policy assume-app -can-assume-> role app-deploy (trust policy trusts account {acct}) -can-read-> secret rp-role (resource policy names role app-deploy)")]
    );
    assert_eq!(
        paths(&r, "aws:nhi-user:svc-ci"),
        vec!["E100 -owns-> iam user svc-ci (tag owner = E100)"]
    );
    assert_eq!(
        paths(&r, &format!("aws:access-key:{}", org.svc_keys[0])),
        vec![format!(
            "E100 -owns-> iam user svc-ci (tag owner = E100) -has-> access key {}",
            org.svc_keys[0]
        )]
    );

    // Relations, holders, states and attributes.
    let f = |id: &str| r.findings.iter().find(|f| f.id == id).unwrap().clone();
    let key = f(&format!("aws:access-key:{}", org.alice_keys[0]));
    assert_eq!(
        (key.relation, key.holder.clone(), key.state),
        (Relation::Owns, Holder::Account, State::Active)
    );
    for a in [
        "status",
        "created",
        "last_used",
        "last_used_service",
        "user",
    ] {
        assert!(
            key.attr(a).is_some(),
            "access key lacks {a}: {:?}",
            key.attributes
        );
    }
    let svc = f(&format!("aws:access-key:{}", org.svc_keys[0]));
    assert_eq!(svc.holder, Holder::Nhi("svc-ci".into()));
    assert_eq!(
        f("aws:nhi-role:svc-role").attr("owner"),
        Some("alice@example.com")
    );
    assert_eq!(
        f("aws:nhi-role:svc-role").holder,
        Holder::Nhi("svc-role".into())
    );
    assert_eq!(
        f("aws:group-membership:alice/devs").relation,
        Relation::MemberOf
    );
    let role = f(&format!(
        "aws:assumable-role:arn:aws:iam::{acct}:role/app-deploy"
    ));
    assert_eq!(
        (role.relation, role.holder, role.state),
        (Relation::CanAssume, Holder::Shared, State::Active)
    );
    let owned = f(&format!("aws:secret:{}", s("owned-secret")));
    assert_eq!(
        (owned.relation, owned.state),
        (Relation::Owns, State::Active)
    );
    assert!(owned.attr("current_version_created").is_some());
    assert_eq!(
        f(&format!("aws:secret:{}", s("user-db"))).relation,
        Relation::CanRead
    );
    assert_eq!(f("aws:user:alice").state, State::Active);

    // Same graph twice: resolution does not depend on listing order or timing.
    let again = provider.resolve(&ctx).await.expect("resolve again");
    assert_eq!(ids(&again), ids(&r));
}

#[tokio::test]
async fn correlates_by_user_name_and_reports_ambiguity() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.user("bob.jones", &[]).await;
    c.user("E300", &[]).await;
    c.user("carol", &[("identity", "E999")]).await;
    c.user("svc-report", &[("owner", "carol@example.com")])
        .await;
    let provider = moto.provider().await;

    // Two users match Bob: by id and by email local part. The id rule comes first.
    let ctx = ResolveContext {
        identity: identity("E300", "Bob.Jones@example.com", None),
        cutoff: None,
    };
    let r = provider.resolve(&ctx).await.unwrap();
    assert_eq!(r.accounts.len(), 1);
    assert!(r.accounts[0].resource.ends_with(":user/E300"));
    assert_eq!(r.accounts[0].matched_by, "user name = id");
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("several IAM users match identity E300")));

    // Carol's user name is "carol" but it is tagged as somebody else's account; she still owns
    // an NHI.
    let ctx = ResolveContext {
        identity: identity("E400", "carol@example.com", None),
        cutoff: None,
    };
    let r = provider.resolve(&ctx).await.unwrap();
    assert!(r.accounts.is_empty(), "{:?}", r.accounts);
    assert_eq!(
        r.findings.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        vec!["aws:nhi-user:svc-report"]
    );

    // Nobody.
    let ctx = ResolveContext {
        identity: identity("E999999", "nobody@example.com", None),
        cutoff: None,
    };
    let r = provider.resolve(&ctx).await.unwrap();
    assert!(r.accounts.is_empty() && r.findings.is_empty());
}

/// Issue 14, item 4: a single 5xx, 429 or reset connection during resolution used to end the
/// apply (and the SDK ignored `Retry-After`). Through a fault-injecting proxy between the
/// provider and moto, resolution finds exactly what it finds without faults, and every 429 was
/// retried no sooner than its `Retry-After`.
#[tokio::test]
async fn resolve_through_faulted_reads_converges_and_honours_retry_after() {
    use closeout_testkit::proxy::{Fault, FaultProxy, Rule, When};
    let moto = Moto::start();
    let c = moto.clients().await;
    seed_org(&c).await;
    let ctx = ResolveContext {
        identity: identity("E100", "alice@example.com", Some("E900")),
        cutoff: None,
    };
    let mut want = ids(&moto.provider().await.resolve(&ctx).await.unwrap());
    want.sort();

    let proxy = FaultProxy::start(&moto.endpoint).await;
    let faulted = moto
        .provider_with(closeout_aws::AwsConfig {
            endpoint_url: Some(proxy.endpoint()),
            ..Default::default()
        })
        .await;
    let base = proxy.requests();
    let at = |n: u64, fault: Fault| Rule::new(When::Nth(base + n), fault);
    proxy.set_rules(vec![
        at(2, Fault::Status { status: 503 }),
        at(
            3,
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
        ),
        at(8, Fault::Reset),
        at(
            12,
            Fault::TooManyRequests {
                retry_after_secs: 2,
            },
        ),
        at(20, Fault::Status { status: 500 }),
        at(27, Fault::Status { status: 502 }),
    ]);
    let mut got = ids(&faulted
        .resolve(&ctx)
        .await
        .expect("resolution through faulted reads"));
    got.sort();
    assert_eq!(got, want);
    let injected = proxy.log().iter().filter(|e| e.fault.is_some()).count();
    assert_eq!(injected, 6, "{:#?}", proxy.log());
    let report = proxy.retry_after_report();
    assert_eq!(report.throttled, 2, "{report:?}");
    assert_eq!(report.retried, 2, "{report:?}");
    assert_eq!(report.honoured, 2, "Retry-After not honoured: {report:?}");
}

/// Issue 14, seen by the chaos bench: the first `ListServiceSpecificCredentials` of each user
/// goes out without the SDK's retry (an endpoint that lacks the call, as moto does, then costs
/// one request); a reset connection or a timeout on it ended the resolution instead of being
/// asked again with the retry. Every user's first probe is now reset once; the resolution
/// finds what it finds without faults.
#[tokio::test]
async fn a_reset_service_credential_probe_is_asked_again() {
    use closeout_testkit::proxy::{Fault, FaultProxy, Rule, When};
    let moto = Moto::start();
    let c = moto.clients().await;
    seed_org(&c).await;
    let ctx = ResolveContext {
        identity: identity("E100", "alice@example.com", Some("E900")),
        cutoff: None,
    };
    let mut want = ids(&moto.provider().await.resolve(&ctx).await.unwrap());
    want.sort();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let faulted = moto
        .provider_with(closeout_aws::AwsConfig {
            endpoint_url: Some(proxy.endpoint()),
            ..Default::default()
        })
        .await;
    proxy.set_rules(vec![
        Rule::new(When::Times(3), Fault::Reset).on("ListServiceSpecificCredentials")
    ]);
    let mut got = ids(&faulted
        .resolve(&ctx)
        .await
        .expect("resolution with reset service-credential probes"));
    got.sort();
    assert_eq!(got, want);
    let resets = proxy
        .log()
        .iter()
        .filter(|e| e.fault == Some(Fault::Reset))
        .count();
    assert!(resets >= 1, "no probe was reset: {:#?}", proxy.log());
}

/// A resource policy can only give the identity a path through a principal it reaches, so an
/// identity without one here (no IAM user, owned NHI or federated role) costs no
/// `GetResourcePolicy`, and still owns its tagged secret; an identity with an IAM user has every
/// secret's policy read and is found through the one naming it.
#[tokio::test]
async fn resource_policies_are_read_only_when_the_identity_reaches_a_principal() {
    use closeout_contract::receipt::collect;
    let moto = Moto::start();
    let c = moto.clients().await;
    let account = c.account().await;
    c.user("dave", &[]).await;
    let erin_owns = c
        .secret("erin-owned", "v", &[("owner", "erin@example.com")], None)
        .await;
    let naming_dave = c
        .secret(
            "names-dave",
            "v",
            &[],
            Some(serde_json::json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:user/dave")},
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*"
            }]})),
        )
        .await;
    for i in 0..3 {
        c.secret(
            &format!("other-{i}"),
            "v",
            &[("owner", "x@example.com")],
            None,
        )
        .await;
    }
    let provider = moto.provider().await;
    let secrets = |r: &closeout_contract::Resolution| -> Vec<String> {
        let mut v: Vec<String> = r
            .findings
            .iter()
            .filter(|f| f.kind == "secret")
            .map(|f| f.resource.clone())
            .collect();
        v.sort();
        v
    };
    let policy_reads = |calls: &[closeout_contract::ProviderCall]| {
        calls
            .iter()
            .filter(|c| c.operation == "secretsmanager:GetResourcePolicy")
            .count()
    };

    let erin = ResolveContext {
        identity: identity("E600", "erin@example.com", None),
        cutoff: None,
    };
    let (r, calls) = collect(provider.resolve(&erin)).await;
    let r = r.unwrap();
    assert!(r.accounts.is_empty(), "{:?}", r.accounts);
    assert_eq!(secrets(&r), vec![erin_owns]);
    assert_eq!(policy_reads(&calls), 0, "{calls:#?}");

    let dave = ResolveContext {
        identity: identity("E700", "dave@example.com", None),
        cutoff: None,
    };
    let (r, calls) = collect(provider.resolve(&dave)).await;
    let r = r.unwrap();
    assert_eq!(r.accounts.len(), 1, "{:?}", r.accounts);
    assert_eq!(secrets(&r), vec![naming_dave]);
    assert_eq!(policy_reads(&calls), 5, "{calls:#?}");
}
