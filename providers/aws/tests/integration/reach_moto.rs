//! Reach to a fixpoint against a real moto server, one test per class of path: a role chained
//! two hops away, a self-grant on the person's own user, credentials created for another user,
//! a role passed to compute, a trust policy rewritten on any role, a resource policy on one
//! secret, a gap; and the probe that authenticates with an NHI's old access key. Each seeds the
//! path, resolves, executes what the leaver playbook would, and reads AWS back.

use crate::common::*;
use chrono::{DateTime, Utc};
use closeout_contract::{
    ActionOutcome, ActionParams, ActionRequest, Finding, Provider, Relation, Resolution,
    ResolveContext, State,
};
use serde_json::json;

const ALICE_EMAIL: &str = "alice@example.com";
const REVOKE: &str = "closeout-revoke-sessions";

fn ctx(cutoff: DateTime<Utc>) -> ResolveContext {
    ResolveContext {
        identity: identity("E100", ALICE_EMAIL, Some("E900")),
        cutoff: Some(cutoff),
    }
}

fn find<'a>(r: &'a Resolution, id: &str) -> &'a Finding {
    r.findings.iter().find(|f| f.id == id).unwrap_or_else(|| {
        panic!(
            "no finding {id}; have {:#?}",
            r.findings.iter().map(|f| &f.id).collect::<Vec<_>>()
        )
    })
}

fn has(r: &Resolution, id: &str) -> bool {
    r.findings.iter().any(|f| f.id == id)
}

fn rendered(f: &Finding) -> Vec<String> {
    f.paths.iter().map(|p| p.render("E100")).collect()
}

async fn exec(
    provider: &closeout_aws::AwsProvider,
    f: &Finding,
    verb: &str,
    cutoff: DateTime<Utc>,
) -> ActionOutcome {
    let req = ActionRequest {
        idempotency_key: format!("run-reach/{verb}/{}", f.id),
        verb: verb.into(),
        finding: f.clone(),
        params: ActionParams {
            sessions_issued_before: Some(cutoff),
            new_owner: Some("manager@example.com".into()),
            run_id: "run-reach".into(),
        },
    };
    provider
        .execute(&req)
        .await
        .unwrap_or_else(|e| panic!("{verb} {}: {e}", f.id))
}

/// alice (tag identity = E100) with one inline policy `doc` (when given).
async fn alice(c: &Clients, doc: Option<serde_json::Value>) -> String {
    c.user("alice", &[("identity", "E100")]).await;
    if let Some(doc) = doc {
        c.iam
            .put_user_policy()
            .user_name("alice")
            .policy_name("alice-extra")
            .policy_document(doc.to_string())
            .send()
            .await
            .unwrap();
    }
    c.account().await
}

async fn role_policy(c: &Clients, role: &str, name: &str, doc: serde_json::Value) {
    c.iam
        .put_role_policy()
        .role_name(role)
        .policy_name(name)
        .policy_document(doc.to_string())
        .send()
        .await
        .unwrap();
}

/// Rotate `secret` through the provider and read it back: a new `AWSCURRENT`, the old value
/// `AWSPREVIOUS`, and the re-resolved finding `rotated`.
async fn rotate_and_check(
    provider: &closeout_aws::AwsProvider,
    c: &Clients,
    r: &Resolution,
    arn: &str,
    cutoff: DateTime<Utc>,
) {
    let before = c.secret_value(arn, "AWSCURRENT").await.unwrap();
    let f = find(r, &format!("aws:secret:{arn}"));
    let out = exec(provider, f, "rotate", cutoff).await;
    assert_eq!(out.state, State::Rotated, "{out:?}");
    let after = c.secret_value(arn, "AWSCURRENT").await.unwrap();
    assert_ne!(after, before, "{arn} has no new version");
    assert_eq!(
        c.secret_value(arn, "AWSPREVIOUS").await.as_deref(),
        Some(before.as_str())
    );
    assert!(!out.detail.contains(&before) && !out.detail.contains(&after));
}

#[tokio::test]
async fn a_role_two_hops_away_gets_the_deny_and_its_secret_is_rotated() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let acct = alice(&c, None).await;
    c.role(
        "hop1",
        trust(&format!("arn:aws:iam::{acct}:user/alice")),
        &[],
    )
    .await;
    c.role(
        "hop2",
        trust(&format!("arn:aws:iam::{acct}:role/hop1")),
        &[],
    )
    .await;
    role_policy(
        &c,
        "hop2",
        "read-deep",
        allow(GET_VALUE, "arn:aws:secretsmanager:*:*:secret:deep-*"),
    )
    .await;
    // Trusts hop2 only through the account, and nothing of hop2's allows it: not reached.
    c.role("hop3", trust(&acct), &[]).await;
    let deep = c.secret("deep-db", "deep-value", &[], None).await;
    let other = c.secret("other-db", "other-value", &[], None).await;

    let provider = moto.provider().await;
    let cutoff = Utc::now();
    let r = provider.resolve(&ctx(cutoff)).await.unwrap();
    let hop2_id = format!("aws:assumable-role:arn:aws:iam::{acct}:role/hop2");
    let hop2 = find(&r, &hop2_id).clone();
    assert_eq!(hop2.relation, Relation::CanAssume);
    assert_eq!(hop2.attr("trust"), Some("role"));
    assert_eq!(
        rendered(&hop2),
        vec!["E100 -account-> iam user alice -can-assume-> role hop1 (trust policy names iam user alice) -can-assume-> role hop2 (trust policy names role hop1)"]
    );
    let secret = find(&r, &format!("aws:secret:{deep}"));
    assert_eq!(secret.relation, Relation::CanRead);
    assert_eq!(
        rendered(secret),
        vec!["E100 -account-> iam user alice -can-assume-> role hop1 (trust policy names iam user alice) -can-assume-> role hop2 (trust policy names role hop1) -inline-> inline policy read-deep -can-read-> secret deep-db"]
    );
    assert!(!has(&r, &format!("aws:secret:{other}")));
    assert!(!has(
        &r,
        &format!("aws:assumable-role:arn:aws:iam::{acct}:role/hop3")
    ));

    // The leaver's contain and rotate stages on them.
    let out = exec(&provider, &hop2, "revoke-sessions", cutoff).await;
    assert_eq!(out.state, State::Revoked);
    let deny = c
        .role_inline_policy("hop2", REVOKE)
        .await
        .expect("the deny is on the chained role");
    assert!(deny.contains("aws:TokenIssueTime"), "{deny}");
    rotate_and_check(&provider, &c, &r, &deep, cutoff).await;

    let again = provider.resolve(&ctx(cutoff)).await.unwrap();
    assert_eq!(find(&again, &hop2_id).state, State::Revoked);
    assert_eq!(
        find(&again, &format!("aws:secret:{deep}")).state,
        State::Rotated
    );
}

#[tokio::test]
async fn put_user_policy_on_herself_exposes_every_secret_of_the_account() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let acct = alice(
        &c,
        Some(allow(
            "iam:PutUserPolicy",
            "arn:aws:iam::*:user/${aws:username}",
        )),
    )
    .await;
    c.user("dave", &[("identity", "E200")]).await;
    let mut secrets = Vec::new();
    for (name, tags) in [
        ("nobody-reads", vec![]),
        ("daves", vec![("owner", "dave@example.com")]),
    ] {
        secrets.push(c.secret(name, &format!("{name}-value"), &tags, None).await);
    }

    let provider = moto.provider().await;
    let cutoff = Utc::now();
    let r = provider.resolve(&ctx(cutoff)).await.unwrap();
    assert_eq!(r.exposures.len(), 1, "{:?}", r.exposures);
    let e = &r.exposures[0];
    assert_eq!(e.scope, format!("account {acct}"));
    assert!(
        e.what.contains("iam:PutUserPolicy on iam user alice"),
        "{}",
        e.what
    );
    for arn in &secrets {
        let f = find(&r, &format!("aws:secret:{arn}"));
        assert_eq!(f.relation, Relation::CanGrantSelf, "{}", f.id);
        let name = f.attr("name").unwrap();
        assert_eq!(
            rendered(f),
            vec![format!("E100 -account-> iam user alice -inline-> inline policy alice-extra -can-grant-self-> secret {name} (iam:PutUserPolicy on iam user alice)")]
        );
    }
    for arn in &secrets {
        rotate_and_check(&provider, &c, &r, arn, cutoff).await;
    }

    // Without the write there is no exposure and nothing to rotate.
    c.iam
        .delete_user_policy()
        .user_name("alice")
        .policy_name("alice-extra")
        .send()
        .await
        .unwrap();
    let r = provider.resolve(&ctx(cutoff)).await.unwrap();
    assert!(r.exposures.is_empty());
    assert!(!r.findings.iter().any(|f| f.kind == "secret"));
}

#[tokio::test]
async fn create_access_key_on_another_user_makes_its_secrets_hers() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let acct = alice(
        &c,
        Some(allow(
            "iam:CreateAccessKey",
            "arn:aws:iam::*:user/svc-deploy",
        )),
    )
    .await;
    c.user("svc-deploy", &[]).await;
    c.iam
        .put_user_policy()
        .user_name("svc-deploy")
        .policy_name("deploy-read")
        .policy_document(allow(GET_VALUE, "arn:aws:secretsmanager:*:*:secret:deploy-*").to_string())
        .send()
        .await
        .unwrap();
    c.role(
        "deploy-role",
        trust(&format!("arn:aws:iam::{acct}:user/svc-deploy")),
        &[],
    )
    .await;
    let deploy = c.secret("deploy-token", "deploy-value", &[], None).await;
    let other = c.secret("other-token", "other-value", &[], None).await;

    let provider = moto.provider().await;
    let cutoff = Utc::now();
    let r = provider.resolve(&ctx(cutoff)).await.unwrap();
    let f = find(&r, &format!("aws:secret:{deploy}"));
    assert_eq!(f.relation, Relation::CanRead);
    assert_eq!(
        rendered(f),
        vec!["E100 -account-> iam user alice -inline-> inline policy alice-extra -can-act-as-> iam user svc-deploy (iam:CreateAccessKey) -inline-> inline policy deploy-read -can-read-> secret deploy-token"]
    );
    assert!(!has(&r, &format!("aws:secret:{other}")));
    // svc-deploy's own role is hers too, and gets the deny.
    let role = find(
        &r,
        &format!("aws:assumable-role:arn:aws:iam::{acct}:role/deploy-role"),
    )
    .clone();
    assert_eq!(
        rendered(&role),
        vec!["E100 -account-> iam user alice -inline-> inline policy alice-extra -can-act-as-> iam user svc-deploy (iam:CreateAccessKey) -can-assume-> role deploy-role (trust policy names iam user svc-deploy)"]
    );
    exec(&provider, &role, "revoke-sessions", cutoff).await;
    assert!(c.role_inline_policy("deploy-role", REVOKE).await.is_some());
    // A key she may have made for svc-deploy is unknown: a gap naming the user.
    let gap = r
        .gaps
        .iter()
        .find(|g| g.kind == "act-as-credential")
        .expect("act-as gap");
    assert_eq!(gap.resource, "svc-deploy");
    rotate_and_check(&provider, &c, &r, &deploy, cutoff).await;
}

#[tokio::test]
async fn pass_role_with_run_instances_makes_the_role_hers() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let acct = alice(
        &c,
        Some(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": ["arn:aws:iam::*:role/worker", "arn:aws:iam::*:role/fn-only"]},
            {"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*"}
        ]})),
    )
    .await;
    let ec2 = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    let lambda = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    c.role("worker", ec2, &[]).await;
    c.role("fn-only", lambda, &[]).await;
    for role in ["worker", "fn-only"] {
        role_policy(
            &c,
            role,
            "read",
            allow(
                GET_VALUE,
                &format!("arn:aws:secretsmanager:*:*:secret:{role}-*"),
            ),
        )
        .await;
    }
    let worker_db = c.secret("worker-db", "worker-value", &[], None).await;
    let fn_db = c.secret("fn-only-db", "fn-value", &[], None).await;

    let provider = moto.provider().await;
    let cutoff = Utc::now();
    let r = provider.resolve(&ctx(cutoff)).await.unwrap();
    let worker = find(
        &r,
        &format!("aws:assumable-role:arn:aws:iam::{acct}:role/worker"),
    )
    .clone();
    assert_eq!(worker.relation, Relation::CanActAs);
    assert_eq!(worker.attr("trust"), Some("service"));
    assert_eq!(
        rendered(&worker),
        vec!["E100 -account-> iam user alice -inline-> inline policy alice-extra -can-act-as-> role worker (iam:PassRole to ec2.amazonaws.com with ec2:RunInstances)"]
    );
    // She can pass fn-only, but launch nothing Lambda runs.
    assert!(!has(
        &r,
        &format!("aws:assumable-role:arn:aws:iam::{acct}:role/fn-only")
    ));
    assert!(!has(&r, &format!("aws:secret:{fn_db}")));
    assert!(r
        .gaps
        .iter()
        .any(|g| g.kind == "passed-role-compute" && g.resource == "worker"));

    exec(&provider, &worker, "revoke-sessions", cutoff).await;
    assert!(c.role_inline_policy("worker", REVOKE).await.is_some());
    rotate_and_check(&provider, &c, &r, &worker_db, cutoff).await;
}

#[tokio::test]
async fn update_assume_role_policy_on_any_role_exposes_the_account() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let acct = alice(
        &c,
        Some(allow("iam:UpdateAssumeRolePolicy", "arn:aws:iam::*:role/*")),
    )
    .await;
    // A role nothing of alice's reaches today: she could make it trust her.
    c.role("ops-admin", trust("arn:aws:iam::999999999999:root"), &[])
        .await;
    let a = c.secret("ops-a", "a-value", &[], None).await;
    let b = c.secret("ops-b", "b-value", &[], None).await;

    let provider = moto.provider().await;
    let cutoff = Utc::now();
    let r = provider.resolve(&ctx(cutoff)).await.unwrap();
    assert_eq!(r.exposures.len(), 1);
    assert_eq!(
        r.exposures[0]
            .paths
            .iter()
            .map(|p| p.render("E100"))
            .collect::<Vec<_>>(),
        vec![format!("E100 -account-> iam user alice -inline-> inline policy alice-extra -can-grant-self-> account {acct} (iam:UpdateAssumeRolePolicy on role ops-admin)")]
    );
    for arn in [&a, &b] {
        assert_eq!(
            find(&r, &format!("aws:secret:{arn}")).relation,
            Relation::CanGrantSelf
        );
    }
    rotate_and_check(&provider, &c, &r, &a, cutoff).await;
}

#[tokio::test]
async fn put_resource_policy_on_one_secret_exposes_that_secret_only() {
    let moto = Moto::start();
    let c = moto.clients().await;
    alice(
        &c,
        Some(allow(
            "secretsmanager:PutResourcePolicy",
            "arn:aws:secretsmanager:*:*:secret:pay-*",
        )),
    )
    .await;
    let pay = c.secret("pay-db", "pay-value", &[], None).await;
    let other = c.secret("other-db", "other-value", &[], None).await;

    let provider = moto.provider().await;
    let cutoff = Utc::now();
    let r = provider.resolve(&ctx(cutoff)).await.unwrap();
    assert!(r.exposures.is_empty());
    let f = find(&r, &format!("aws:secret:{pay}"));
    assert_eq!(f.relation, Relation::CanGrantSelf);
    assert_eq!(
        rendered(f),
        vec!["E100 -account-> iam user alice -inline-> inline policy alice-extra -can-grant-self-> secret pay-db (secretsmanager:PutResourcePolicy)"]
    );
    assert!(!has(&r, &format!("aws:secret:{other}")));
    rotate_and_check(&provider, &c, &r, &pay, cutoff).await;
}

/// moto 5.2 does not serve `ListServiceSpecificCredentials`: that is a gap of the person's
/// user, not only a warning.
#[tokio::test]
async fn what_cannot_be_listed_is_a_gap() {
    let moto = Moto::start();
    let c = moto.clients().await;
    alice(&c, None).await;
    let provider = moto.provider().await;
    let r = provider.resolve(&ctx(Utc::now())).await.unwrap();
    let gap = r
        .gaps
        .iter()
        .find(|g| g.kind == "service-credential")
        .unwrap_or_else(|| panic!("no service-credential gap: {:?}", r.gaps));
    assert_eq!(gap.provider, "aws");
    assert_eq!(gap.resource, "alice");
    assert!(
        gap.reason.contains("ListServiceSpecificCredentials"),
        "{}",
        gap.reason
    );
    assert_eq!(
        gap.paths
            .iter()
            .map(|p| p.render("E100"))
            .collect::<Vec<_>>(),
        vec!["E100 -account-> iam user alice -has-> service-credential (not listed)"]
    );
    // No user, nothing reached: no gap.
    let nobody = ResolveContext {
        identity: identity("E999", "nobody@example.com", None),
        cutoff: None,
    };
    assert!(provider.resolve(&nobody).await.unwrap().gaps.is_empty());
}

/// After an NHI key rotation Closeout holds the old key (the publish secret's `AWSPREVIOUS`)
/// and probes with it. moto never refuses a key: it answers an inactive key as its user and a
/// deleted one as `user/moto`; the probe says so and lets the metadata decide.
#[tokio::test]
async fn the_old_nhi_key_is_probed_by_authenticating_with_it() {
    let moto = Moto::start();
    let c = moto.clients().await;
    alice(&c, None).await;
    c.user("svc-ci", &[("owner", "E100")]).await;
    let old = c
        .iam
        .create_access_key()
        .user_name("svc-ci")
        .send()
        .await
        .unwrap();
    let old = old.access_key().unwrap();
    let (old_id, old_secret) = (
        old.access_key_id().to_string(),
        old.secret_access_key().to_string(),
    );
    // Published by an earlier rotation (or by whoever set the NHI up).
    let publish = "closeout/nhi/svc-ci/access-key";
    c.secret(
        publish,
        &json!({"AccessKeyId": old_id, "SecretAccessKey": old_secret}).to_string(),
        &[],
        None,
    )
    .await;

    // What moto does with keys, read directly: the old key authenticates as svc-ci now.
    let as_key = |id: &str, secret: &str| {
        let conf = aws_sdk_sts::config::Builder::from(&c.conf)
            .credentials_provider(aws_credential_types::Credentials::new(
                id, secret, None, None, "test",
            ))
            .build();
        aws_sdk_sts::Client::from_conf(conf)
    };
    let who = as_key(&old_id, &old_secret)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert!(who.arn().unwrap().ends_with(":user/svc-ci"));

    let provider = moto.provider().await;
    let cutoff = Utc::now();
    let r = provider.resolve(&ctx(cutoff)).await.unwrap();
    let key = find(&r, &format!("aws:access-key:{old_id}")).clone();
    let out = exec(&provider, &key, "rotate", cutoff).await;
    assert_eq!(out.state, State::Inactive, "{out:?}");
    assert_eq!(
        c.key_status("svc-ci", &old_id).await.as_deref(),
        Some("Inactive")
    );

    // Inactive: moto still answers it as svc-ci (AWS would refuse it).
    let who = as_key(&old_id, &old_secret)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert!(who.arn().unwrap().ends_with(":user/svc-ci"));
    let probe = provider.probe(&key).await.unwrap().expect("a probe");
    assert_eq!(
        probe.probe,
        format!("sts:GetCallerIdentity with old access key {old_id}")
    );
    assert!(probe.dead, "{probe:?}");
    assert!(
        probe.detail.contains("does not enforce key status")
            && probe.detail.contains("lists it Inactive"),
        "{}",
        probe.detail
    );
    assert!(!probe.detail.contains(&old_secret));

    // Deleted: moto answers it as user/moto, not as svc-ci.
    exec(&provider, &key, "delete", cutoff).await;
    let who = as_key(&old_id, &old_secret)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert!(who.arn().unwrap().ends_with(":user/moto"), "{who:?}");
    let probe = provider.probe(&key).await.unwrap().expect("a probe");
    assert!(probe.dead, "{probe:?}");
    assert!(
        probe.detail.contains("answers keys it does not know")
            && probe.detail.contains("no longer lists it"),
        "{}",
        probe.detail
    );

    // The person's own key: Closeout does not hold its secret, the probe says it checked
    // metadata only.
    let mine = c
        .iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    let mine_id = mine.access_key().unwrap().access_key_id().to_string();
    let r = provider.resolve(&ctx(cutoff)).await.unwrap();
    let probe = provider
        .probe(find(&r, &format!("aws:access-key:{mine_id}")))
        .await
        .unwrap()
        .expect("a probe");
    assert!(probe.probe.contains("metadata only"), "{}", probe.probe);
    assert!(!probe.dead);
}

const GET_VALUE: &str = "secretsmanager:GetSecretValue";
