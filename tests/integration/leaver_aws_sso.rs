//! Federated people on AWS, end to end with the real binary against moto: a person who never had
//! an IAM user signs in through IAM Identity Center (a group's permission set and one assigned to
//! her directly) and through a SAML provider. `closeout apply leaver` must find all of it, remove
//! her group membership and her assignment, delete her Identity Store user, rotate the secret her
//! SSO role could read, and deny *her* sessions on the roles — not her colleague's, who signs in
//! to the same role. A later run removes a deny once every session it cut has expired.
//!
//! moto's sso-admin does not provision roles into IAM, so the seed creates the
//! `AWSReservedSSO_<permission set>_<suffix>` roles itself, under the path Identity Center uses.

use crate::common::{describe, json, World};
use closeout_aws::policy::PolicyDocument;
use serde_json::json;

const DANA: &str = "E1007";
const DANA_EMAIL: &str = "dana.kim@example.com";
/// Dana's Identity Store user name: not a form of her id or email, so she is matched by email,
/// and her role session name is this, not her email.
const DANA_SSO: &str = "dkim";
const CAROL_SSO: &str = "carol.diaz@example.com";
const ACCOUNT: &str = "123456789012";
const PERSON_DENY: &str = "closeout-revoke-sessions.E1007";
const ROLE_WIDE_DENY: &str = "closeout-revoke-sessions";
const DATA_ROLE: &str = "AWSReservedSSO_DataAccess_0123456789abcdef";
const ADMIN_ROLE: &str = "AWSReservedSSO_Admin_fedcba9876543210";

/// The demo HR export (Dana is in it: terminated, SSO only) and the federation claim mapping.
fn world() -> World {
    World::with_aws_extra(
        r#"
[providers.aws.federation]
session_name = "email"
[providers.aws.federation.claims]
"saml:sub" = { field = "email" }
"saml:aud" = { value = "https://signin.aws.amazon.com/saml" }
"#,
    )
}

struct Sso {
    instance: String,
    store: String,
    dana: String,
    carol: String,
    group: String,
    data_ps: String,
    admin_ps: String,
    ids: aws_sdk_identitystore::Client,
    admin: aws_sdk_ssoadmin::Client,
}

async fn sso_user(
    ids: &aws_sdk_identitystore::Client,
    store: &str,
    name: &str,
    email: &str,
) -> String {
    use aws_sdk_identitystore::types::{Email, Name};
    ids.create_user()
        .identity_store_id(store)
        .user_name(name)
        .display_name(name)
        .name(Name::builder().given_name("G").family_name("F").build())
        .emails(Email::builder().value(email).primary(true).build())
        .send()
        .await
        .expect("create identity store user")
        .user_id
}

async fn role(
    iam: &aws_sdk_iam::Client,
    name: &str,
    path: &str,
    trust: serde_json::Value,
) -> String {
    iam.create_role()
        .role_name(name)
        .path(path)
        .assume_role_policy_document(trust.to_string())
        .max_session_duration(3600)
        .send()
        .await
        .expect("create role")
        .role
        .unwrap()
        .role_id
}

fn saml_trust(provider: &str, conditions: serde_json::Value) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:saml-provider/{provider}")},
        "Action": "sts:AssumeRoleWithSAML",
        "Condition": conditions
    }]})
}

/// Identity Center with Dana and Carol in group data-engineers (permission set DataAccess
/// assigned to the group), permission set Admin assigned to Dana alone; the roles they provision;
/// a secret only the DataAccess role reads; a SAML role for everyone the IdP signs in and one
/// for somebody else.
async fn seed(world: &World) -> Sso {
    let sdk = world.sdk().await;
    let admin = aws_sdk_ssoadmin::Client::new(&sdk);
    let ids = aws_sdk_identitystore::Client::new(&sdk);
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let inst = admin.list_instances().send().await.expect("list instances");
    let inst = &inst.instances()[0];
    let instance = inst.instance_arn().unwrap().to_string();
    let store = inst.identity_store_id().unwrap().to_string();

    let dana = sso_user(&ids, &store, DANA_SSO, DANA_EMAIL).await;
    let carol = sso_user(&ids, &store, CAROL_SSO, CAROL_SSO).await;
    let group = ids
        .create_group()
        .identity_store_id(&store)
        .display_name("data-engineers")
        .send()
        .await
        .unwrap()
        .group_id;
    for member in [&dana, &carol] {
        ids.create_group_membership()
            .identity_store_id(&store)
            .group_id(&group)
            .member_id(aws_sdk_identitystore::types::MemberId::UserId(
                member.clone(),
            ))
            .send()
            .await
            .unwrap();
    }
    let ps = |name: &'static str| {
        let admin = admin.clone();
        let instance = instance.clone();
        async move {
            admin
                .create_permission_set()
                .instance_arn(instance)
                .name(name)
                .session_duration("PT1H")
                .send()
                .await
                .unwrap()
                .permission_set
                .unwrap()
                .permission_set_arn
                .unwrap()
        }
    };
    let data_ps = ps("DataAccess").await;
    let admin_ps = ps("Admin").await;
    use aws_sdk_ssoadmin::types::{PrincipalType, TargetType};
    for (ps, ptype, pid) in [
        (&data_ps, PrincipalType::Group, &group),
        (&admin_ps, PrincipalType::User, &dana),
    ] {
        admin
            .create_account_assignment()
            .instance_arn(&instance)
            .target_id(ACCOUNT)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(ps)
            .principal_type(ptype)
            .principal_id(pid)
            .send()
            .await
            .unwrap();
    }

    let secret_arn = sm
        .create_secret()
        .name("data/warehouse")
        .secret_string("warehouse-initial-value")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let sso_trust = saml_trust(
        "AWSSSO_0123456789abcdef_DO_NOT_DELETE",
        json!({"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}),
    );
    for name in [DATA_ROLE, ADMIN_ROLE] {
        role(
            &iam,
            name,
            "/aws-reserved/sso.amazonaws.com/",
            sso_trust.clone(),
        )
        .await;
    }
    iam.put_role_policy()
        .role_name(DATA_ROLE)
        .policy_name("read-warehouse")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    // Anyone the IdP signs in for this audience; and a role only somebody else may assume.
    role(
        &iam,
        "eng-saml",
        "/",
        saml_trust(
            "okta",
            json!({"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}),
        ),
    )
    .await;
    role(
        &iam,
        "finance-saml",
        "/",
        saml_trust(
            "okta",
            json!({"StringEquals": {"saml:sub": "frank.osei@example.com"}}),
        ),
    )
    .await;
    Sso {
        instance,
        store,
        dana,
        carol,
        group,
        data_ps,
        admin_ps,
        ids,
        admin,
    }
}

async fn inline(iam: &aws_sdk_iam::Client, role: &str, policy: &str) -> Option<PolicyDocument> {
    let out = iam
        .get_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
        .ok()?;
    Some(PolicyDocument::parse(out.policy_document()).expect("a readable policy"))
}

async fn role_id(iam: &aws_sdk_iam::Client, role: &str) -> String {
    iam.get_role()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .role
        .unwrap()
        .role_id
}

async fn assignments(
    sso: &Sso,
    ptype: aws_sdk_ssoadmin::types::PrincipalType,
    id: &str,
) -> Vec<String> {
    sso.admin
        .list_account_assignments_for_principal()
        .instance_arn(&sso.instance)
        .principal_type(ptype)
        .principal_id(id)
        .send()
        .await
        .unwrap()
        .account_assignments()
        .iter()
        .filter_map(|a| a.permission_set_arn().map(str::to_string))
        .collect()
}

async fn memberships(sso: &Sso, user: &str) -> usize {
    sso.ids
        .list_group_memberships_for_member()
        .identity_store_id(&sso.store)
        .member_id(aws_sdk_identitystore::types::MemberId::UserId(user.into()))
        .send()
        .await
        .unwrap()
        .group_memberships()
        .len()
}

#[tokio::test]
async fn an_sso_only_leaver_is_closed_out_and_her_colleague_keeps_her_sessions() {
    use aws_sdk_ssoadmin::types::PrincipalType;
    let world = world();
    let sso = seed(&world).await;
    let sdk = world.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);

    // The plan names everything federated before anything changes.
    let plan = world.closeout(&["plan", "leaver", "--identity", DANA, "--format", "json"]);
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    let plan_text = crate::common::stdout(&plan);
    for needle in [
        "aws:sso-user:",
        "aws:sso-group-membership:",
        "aws:sso-account-assignment:",
        "aws:sso-group-assignment:",
        DATA_ROLE,
        ADMIN_ROLE,
        "eng-saml",
        "data/warehouse",
    ] {
        assert!(
            plan_text.contains(needle),
            "plan lacks {needle}:\n{plan_text}"
        );
    }
    assert!(!plan_text.contains("finance-saml"), "{plan_text}");

    let out = world.closeout(&[
        "apply",
        "leaver",
        "--identity",
        DANA,
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report:#}");

    // Identity Center read back: her membership and her own assignment gone, her user deleted;
    // Carol's membership and the group's assignment stay.
    assert_eq!(memberships(&sso, &sso.dana).await, 0);
    assert_eq!(memberships(&sso, &sso.carol).await, 1);
    assert!(assignments(&sso, PrincipalType::User, &sso.dana)
        .await
        .is_empty());
    assert_eq!(
        assignments(&sso, PrincipalType::Group, &sso.group).await,
        vec![sso.data_ps.clone()]
    );
    let gone = sso
        .ids
        .describe_user()
        .identity_store_id(&sso.store)
        .user_id(&sso.dana)
        .send()
        .await;
    assert!(gone.is_err(), "Dana's Identity Store user still exists");
    let _ = &sso.admin_ps;

    // The sessions denied are Dana's alone: her session name on the SSO roles is her Identity
    // Store user name, on the SAML role her email; Carol, on the same role, is not matched.
    let issued = chrono::Utc::now() - chrono::Duration::minutes(5);
    for (role, session) in [
        (DATA_ROLE, DANA_SSO),
        (ADMIN_ROLE, DANA_SSO),
        ("eng-saml", DANA_EMAIL),
    ] {
        let id = role_id(&iam, role).await;
        let deny = inline(&iam, role, PERSON_DENY)
            .await
            .unwrap_or_else(|| panic!("no person-scoped deny on {role}"));
        assert!(
            deny.denies_session(&format!("{id}:{session}"), issued),
            "the deny on {role} does not cut {session}'s session"
        );
        assert!(
            !deny.denies_session(&format!("{id}:{CAROL_SSO}"), issued),
            "the deny on {role} cuts Carol's session too"
        );
        assert!(
            !deny.denies_session(
                &format!("{id}:{session}"),
                chrono::Utc::now() + chrono::Duration::minutes(5)
            ),
            "a session issued after the cut-off is denied"
        );
        assert!(
            inline(&iam, role, ROLE_WIDE_DENY).await.is_none(),
            "a role-wide deny on {role} would cut every colleague's session"
        );
    }
    assert!(inline(&iam, "finance-saml", PERSON_DENY).await.is_none());

    // The secret her SSO role could read was rotated.
    let current = sm
        .get_secret_value()
        .secret_id("data/warehouse")
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    assert_ne!(current, "warehouse-initial-value", "{report:#}");

    // A second run: nothing to do, and the denies stay (their sessions may still be alive).
    let again = world.closeout(&[
        "apply",
        "leaver",
        "--identity",
        DANA,
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let again = json(&again);
    assert_eq!(again["status"], "closed", "{again:#}");
    assert_eq!(again["summary"]["actions_done"], 0, "{again:#}");
    assert!(inline(&iam, DATA_ROLE, PERSON_DENY).await.is_some());
}

/// A deny an earlier run left whose sessions have all expired is removed by the leaver's retire
/// step; one whose sessions may still live stays.
#[tokio::test]
async fn expired_session_denies_are_retired_and_live_ones_kept() {
    let world = world();
    let sdk = world.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let trust = saml_trust(
        "okta",
        json!({"StringEquals": {"saml:sub": "nobody@example.com"}}),
    );
    let now = chrono::Utc::now();
    for (name, cutoff, removable) in [
        (
            "old-shared",
            now - chrono::Duration::hours(14),
            now - chrono::Duration::hours(2),
        ),
        (
            "new-shared",
            now - chrono::Duration::minutes(10),
            now + chrono::Duration::hours(1),
        ),
    ] {
        let id = role(&iam, name, "/", trust.clone()).await;
        // The document Closeout writes (docs/playbooks.md, "Per-person session revocation").
        let doc = json!({"Version": "2012-10-17", "Statement": [{
            "Sid": format!("CloseoutRemovableAfter{}", removable.format("%Y%m%dT%H%M%SZ")),
            "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {
                "StringLike": {"aws:userid": [format!("{id}:{DANA_EMAIL}")]},
                "DateLessThan": {"aws:TokenIssueTime": cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}
            }
        }]});
        iam.put_role_policy()
            .role_name(name)
            .policy_name(PERSON_DENY)
            .policy_document(doc.to_string())
            .send()
            .await
            .unwrap();
    }
    let out = world.closeout(&[
        "apply",
        "leaver",
        "--identity",
        DANA,
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json(&out)["status"], "closed");
    assert!(
        inline(&iam, "old-shared", PERSON_DENY).await.is_none(),
        "the expired deny was not retired"
    );
    assert!(
        inline(&iam, "new-shared", PERSON_DENY).await.is_some(),
        "a deny still in force was removed"
    );
}

/// Identity Center refused: Dana's SSO access is unknown, so she is never reported closed.
#[tokio::test]
async fn identity_center_refused_is_a_gap_not_closed() {
    let moto = closeout_testkit::MotoServer::builder()
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
        .start();
    let world = World::with_moto(moto);

    let sdk = world.sdk().await;
    let anyone = aws_credential_types::Credentials::new("testing", "testing", None, None, "t");
    let iam = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(&sdk)
            .credentials_provider(anyone)
            .build(),
    );
    iam.create_user()
        .user_name("closeout")
        .send()
        .await
        .unwrap();
    iam.put_user_policy()
        .user_name("closeout")
        .policy_name("all-but-identity-center")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": "sso:ListInstances", "Resource": "*"}
            ]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name("closeout")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let out = world
        .command(&[
            "apply",
            "leaver",
            "--identity",
            DANA,
            "--yes",
            "--format",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", &key.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret_access_key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = json(&out);
    assert_ne!(report["status"], "closed", "{report:#}");
    let text = report.to_string();
    assert!(text.contains("identity-center"), "{report:#}");
    assert!(text.contains("ListInstances"), "{report:#}");
}
