//! The mover and joiner acceptance checks on AWS (moto), end to end with the real binary: an
//! engineer with accumulated entitlements (shared baseline, old-role group, role creep) moves to
//! Finance; everything is read back from IAM and Secrets Manager with the SDK.

use crate::common;

use common::mover::{
    assert_never_touched, assert_removals_before_grants, drift_of, explain_line,
    use_source_and_policy, write_cast,
};
use common::{
    account_snapshot, audit_records, describe, grants_at, json, secret_version, urlencoding_decode,
    World,
};
use std::collections::BTreeMap;

const PERSON: &str = "E2001";
const USER: &str = "pat.lee";
const COLLEAGUE: &str = "sam.ro";
const REVOKE_POLICY: &str = "closeout-revoke-sessions";

/// What the seed created that the test needs to name.
struct Org {
    finance_policy: String,
    legacy_policy: String,
}

fn allow(statements: &[(&str, String)]) -> String {
    let st: Vec<serde_json::Value> = statements
        .iter()
        .map(|(action, resource)| {
            serde_json::json!({ "Effect": "Allow", "Action": action, "Resource": resource })
        })
        .collect();
    serde_json::json!({ "Version": "2012-10-17", "Statement": st }).to_string()
}

async fn create_policy(iam: &aws_sdk_iam::Client, name: &str, doc: String) -> String {
    iam.create_policy()
        .policy_name(name)
        .policy_document(doc)
        .send()
        .await
        .expect("create policy")
        .policy
        .and_then(|p| p.arn)
        .expect("policy arn")
}

async fn create_group(iam: &aws_sdk_iam::Client, name: &str, policy: Option<&str>) {
    iam.create_group()
        .group_name(name)
        .send()
        .await
        .expect("create group");
    if let Some(arn) = policy {
        iam.attach_group_policy()
            .group_name(name)
            .policy_arn(arn)
            .send()
            .await
            .expect("attach group policy");
    }
}

async fn join(iam: &aws_sdk_iam::Client, user: &str, group: &str) {
    iam.add_user_to_group()
        .user_name(user)
        .group_name(group)
        .send()
        .await
        .expect("add user to group");
}

async fn create_secret(sm: &aws_sdk_secretsmanager::Client, name: &str, owner: Option<&str>) {
    let mut req = sm
        .create_secret()
        .name(name)
        .secret_string(format!("{name}-initial"));
    if let Some(o) = owner {
        req = req.tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("owner")
                .value(o)
                .build(),
        );
    }
    req.send().await.expect("create secret");
}

/// The organisation: groups `staff` (baseline), `developers` (engineering), `legacy` (no rule),
/// `finance` and `oncall`; roles assumable through `developers` only and through `staff`;
/// secrets readable through each; the person's IAM user with role creep, a colleague.
async fn seed(world: &World) -> Org {
    let sdk = world.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let account = aws_sdk_sts::Client::new(&sdk)
        .get_caller_identity()
        .send()
        .await
        .expect("caller identity")
        .account
        .expect("account id");
    let trust_account = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{account}:root") },
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string();
    for role in ["eng-deploy", "staff-readonly"] {
        iam.create_role()
            .role_name(role)
            .assume_role_policy_document(&trust_account)
            .send()
            .await
            .expect("create role");
    }
    let secrets = "arn:aws:secretsmanager:*:*:secret";
    let dev = create_policy(
        &iam,
        "dev-access",
        allow(&[
            ("secretsmanager:GetSecretValue", format!("{secrets}:eng/*")),
            (
                "sts:AssumeRole",
                format!("arn:aws:iam::{account}:role/eng-deploy"),
            ),
        ]),
    )
    .await;
    let staff = create_policy(
        &iam,
        "staff-access",
        allow(&[
            (
                "secretsmanager:GetSecretValue",
                format!("{secrets}:staff/*"),
            ),
            (
                "sts:AssumeRole",
                format!("arn:aws:iam::{account}:role/staff-readonly"),
            ),
        ]),
    )
    .await;
    let finance_policy = create_policy(
        &iam,
        "finance-read",
        allow(&[(
            "secretsmanager:GetSecretValue",
            format!("{secrets}:finance/*"),
        )]),
    )
    .await;
    let legacy_policy = create_policy(
        &iam,
        "legacy-admin",
        allow(&[("ec2:Describe*", "*".to_string())]),
    )
    .await;
    create_group(&iam, "staff", Some(&staff)).await;
    create_group(&iam, "developers", Some(&dev)).await;
    create_group(&iam, "legacy", None).await;
    create_group(&iam, "finance", None).await;
    create_group(&iam, "oncall", None).await;

    for user in [USER, COLLEAGUE, "joe.new"] {
        iam.create_user()
            .user_name(user)
            .send()
            .await
            .expect("create user");
    }
    for group in ["staff", "developers", "legacy"] {
        join(&iam, USER, group).await;
    }
    for group in ["staff", "developers"] {
        join(&iam, COLLEAGUE, group).await;
    }
    // Role creep: a managed policy attached directly, and an inline policy.
    iam.attach_user_policy()
        .user_name(USER)
        .policy_arn(&legacy_policy)
        .send()
        .await
        .expect("attach user policy");
    iam.put_user_policy()
        .user_name(USER)
        .policy_name("pat-extra")
        .policy_document(allow(&[("s3:ListAllMyBuckets", "*".to_string())]))
        .send()
        .await
        .expect("put user policy");

    create_secret(&sm, "eng/ci-token", None).await;
    create_secret(&sm, "eng/db-password", None).await;
    create_secret(&sm, "eng/pat-notes", Some(PERSON)).await;
    create_secret(&sm, "staff/wiki-token", None).await;
    create_secret(&sm, "finance/ledger", None).await;
    Org {
        finance_policy,
        legacy_policy,
    }
}

/// The HR export (the person still in Engineering), the policy, and the config naming both.
fn write_source_and_policy(world: &World, org: &Org, person_department: &str) {
    let hr = world.dir.path().join("hr.csv");
    write_cast(&hr, PERSON, person_department);
    let policy = world.dir.path().join("entitlements.yaml");
    std::fs::write(
        &policy,
        format!(
            r#"rules:
  - name: baseline
    grants:
      - {{ provider: aws, group: staff }}
  - name: engineering
    when: {{ department: Engineering }}
    grants:
      - {{ provider: aws, group: developers }}
  - name: finance
    when: {{ department: Finance }}
    grants:
      - {{ provider: aws, group: finance }}
      - {{ provider: aws, policy: "{finance}" }}
  - name: oncall
    when: {{ tags: oncall }}
    duration: 1h
    grants:
      - {{ provider: aws, group: oncall }}
"#,
            finance = org.finance_policy
        ),
    )
    .expect("write policy");
    if !std::fs::read_to_string(world.config_path())
        .expect("config")
        .contains("[policy]")
    {
        use_source_and_policy(&world.config_path(), &hr, &policy);
    }
}

fn groups(snapshot: &BTreeMap<String, String>, user: &str) -> Vec<String> {
    let prefix = format!("user/{user}/group/");
    snapshot
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

fn attached(snapshot: &BTreeMap<String, String>, user: &str) -> Vec<String> {
    let prefix = format!("user/{user}/attached-policy/");
    snapshot
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

fn inline(snapshot: &BTreeMap<String, String>, who: &str) -> BTreeMap<String, String> {
    let prefix = format!("{who}/inline-policy/");
    snapshot
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(&prefix)
                .map(|n| (n.to_string(), urlencoding_decode(v)))
        })
        .collect()
}

fn mover(world: &World, command: &str) -> std::process::Output {
    let mut args = vec![
        command,
        "mover",
        "--identity",
        PERSON,
        "--to",
        "department=Finance",
        "--format",
        "json",
    ];
    if command == "apply" {
        args.push("--yes");
    }
    world.closeout(&args)
}

#[tokio::test]
async fn engineer_moves_to_finance_read_back_from_aws() {
    let world = World::new();
    let org = seed(&world).await;
    write_source_and_policy(&world, &org, "Engineering");
    let sdk = world.sdk().await;

    let check = world.closeout(&["policy", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    assert!(
        common::stdout(&check).contains("ok (4 rules"),
        "{}",
        describe(&check)
    );

    // Before the move, reconcile names the role creep (the source still says Engineering).
    let drift = world.closeout(&["reconcile", "--format", "json"]);
    assert_eq!(drift.status.code(), Some(3), "{}", describe(&drift));
    let drift = drift_of(&json(&drift), PERSON);
    let unjustified: Vec<&str> = drift
        .iter()
        .filter(|(k, _)| k == "unjustified-entitlement")
        .map(|(_, d)| d.as_str())
        .collect();
    for creep in [
        "aws group-membership legacy".to_string(),
        format!("aws attached-policy {}", org.legacy_policy),
        "aws inline-policy pat-extra".to_string(),
    ] {
        assert!(
            unjustified.iter().any(|d| d.contains(&creep)),
            "reconcile does not list {creep}: {drift:?}"
        );
    }
    assert_eq!(unjustified.len(), 3, "{drift:?}");

    // Explain for the new attributes: old role and role creep unjustified, Finance's missing.
    let explain = world.closeout(&[
        "policy",
        "explain",
        "--identity",
        PERSON,
        "--to",
        "department=Finance",
    ]);
    assert_eq!(explain.status.code(), Some(3), "{}", describe(&explain));
    let text = common::stdout(&explain);
    for held in [
        "aws group-membership developers".to_string(),
        "aws group-membership legacy".to_string(),
        format!("aws attached-policy {}", org.legacy_policy),
        "aws inline-policy pat-extra".to_string(),
    ] {
        let line = explain_line(&text, "Holds", &held);
        assert!(line.trim_end().ends_with("none"), "{line}");
    }
    assert!(explain_line(&text, "Holds", "aws group-membership staff").contains("rule baseline"));
    for missing in [
        "aws group-membership finance".to_string(),
        format!("aws attached-policy {}", org.finance_policy),
    ] {
        let line = explain_line(&text, "Should hold", &missing);
        assert!(
            line.contains("MISSING") && line.contains("rule finance"),
            "{line}"
        );
    }
    let line = explain_line(&text, "Should hold", "aws group-membership staff");
    assert!(line.contains("held"), "{line}");

    // Plan changes nothing.
    let before = account_snapshot(&sdk).await;
    let plan = mover(&world, "plan");
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    let plan = json(&plan);
    let stages: Vec<&str> = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        stages,
        ["remove", "revoke-sessions", "rotate", "grant", "verify"]
    );
    // The text plan says the shared membership and the other role stay (not "reported open").
    let text = world.closeout(&[
        "plan",
        "mover",
        "--identity",
        PERSON,
        "--to",
        "department=Finance",
    ]);
    let text = common::stdout(&text);
    assert!(text.contains("they stay as they are"), "{text}");
    assert!(!text.contains("verify will report them open"), "{text}");
    assert_eq!(
        account_snapshot(&sdk).await,
        before,
        "plan changed the account"
    );

    // Apply.
    let out = mover(&world, "apply");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report:#}");
    let run = report["run"].as_str().expect("run id").to_string();
    let after = account_snapshot(&sdk).await;

    // Nothing unjustified remains; the shared group stays; the new entitlements exist.
    assert_eq!(groups(&after, USER), ["finance", "staff"], "{after:#?}");
    assert_eq!(attached(&after, USER), [org.finance_policy.as_str()]);
    assert!(
        inline(&after, &format!("user/{USER}")).is_empty(),
        "{after:#?}"
    );
    assert_eq!(groups(&after, COLLEAGUE), ["developers", "staff"]);

    // Sessions of the role reachable only through `developers` are cut; the other role's not.
    let deploy = inline(&after, "role/eng-deploy");
    let deny = deploy
        .get(REVOKE_POLICY)
        .unwrap_or_else(|| panic!("no session deny on eng-deploy: {deploy:?}"));
    assert!(
        deny.contains("aws:TokenIssueTime") && deny.contains("Deny"),
        "{deny}"
    );
    assert!(inline(&after, "role/staff-readonly").is_empty());

    // Secrets readable only through `developers` rotated (old version kept as AWSPREVIOUS);
    // the shared one and the owned one untouched.
    for name in ["eng/ci-token", "eng/db-password"] {
        let old = secret_version(&before, name, "AWSCURRENT").expect("version before");
        let new = secret_version(&after, name, "AWSCURRENT").expect("version after");
        assert_ne!(old, new, "{name} was not rotated");
        assert_eq!(
            secret_version(&after, name, "AWSPREVIOUS").as_deref(),
            Some(old.as_str()),
            "{name}: the old version must be AWSPREVIOUS"
        );
    }
    for name in ["eng/pat-notes", "staff/wiki-token", "finance/ledger"] {
        let key = format!("secret/{name}/versions");
        assert_eq!(before[&key], after[&key], "{name} must not be rotated");
    }

    // Audit: every removal before any grant; the shared membership never touched.
    let audit = audit_records(&world);
    let (removed, granted) = assert_removals_before_grants(&audit, &run);
    let mut removed = removed;
    removed.sort();
    assert_eq!(
        removed,
        [
            format!("aws:attached-policy:{USER}/{}", org.legacy_policy),
            format!("aws:group-membership:{USER}/developers"),
            format!("aws:group-membership:{USER}/legacy"),
            format!("aws:inline-policy:{USER}/pat-extra"),
        ]
    );
    assert_eq!(granted.len(), 2, "{granted:?}");
    assert_never_touched(
        &audit,
        &world.journal_path(),
        &format!("aws:group-membership:{USER}/staff"),
    );

    // The live state now equals the policy for the new attributes.
    let explain = world.closeout(&[
        "policy",
        "explain",
        "--identity",
        PERSON,
        "--to",
        "department=Finance",
    ]);
    assert_eq!(explain.status.code(), Some(0), "{}", describe(&explain));

    // A second apply does nothing.
    let again = mover(&world, "apply");
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let again = json(&again);
    assert_eq!(again["status"], "closed", "{again:#}");
    assert_eq!(again["summary"]["actions_done"], 0, "{again:#}");
    let second_run = again["run"].as_str().expect("run id");
    assert!(
        !audit_records(&world)
            .iter()
            .any(|r| r["run"] == second_run && r["event"] == "action.done"),
        "the second apply acted"
    );
    assert_eq!(account_snapshot(&sdk).await, after);

    // With the source updated, reconcile finds no policy drift for the person.
    write_source_and_policy(&world, &org, "Finance");
    let drift = world.closeout(&["reconcile", "--format", "json"]);
    assert!(
        matches!(drift.status.code(), Some(0 | 3)),
        "{}",
        describe(&drift)
    );
    let drift = drift_of(&json(&drift), PERSON);
    assert!(drift.is_empty(), "{drift:?}");
}

#[tokio::test]
async fn joiner_gets_baseline_and_a_time_bound_grant_on_aws() {
    let world = World::new();
    let org = seed(&world).await;
    write_source_and_policy(&world, &org, "Engineering");
    let sdk = world.sdk().await;
    let started = chrono::Utc::now();
    // An ETL service account IT created for Joe: untagged in IAM, owned by Joe in the source.
    let iam = aws_sdk_iam::Client::new(&sdk);
    iam.create_user()
        .user_name("svc-joe-etl")
        .send()
        .await
        .expect("create svc-joe-etl");
    // And the role its jobs run as, named after the service too.
    iam.create_role()
        .role_name("svc-joe-etl")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"glue.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("create role svc-joe-etl");
    let hr = world.dir.path().join("hr.csv");
    let mut rows = std::fs::read_to_string(&hr).expect("read hr.csv");
    rows.push_str(
        "S3001,svc-joe-etl@example.com,ETL job,service,active,E2003,Finance,ETL,London,service,nhi\n",
    );
    std::fs::write(&hr, rows).expect("write hr.csv");

    let out = world.closeout(&common::mover::apply_joiner("E2003"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json(&out)["status"], "closed", "{}", describe(&out));

    let after = account_snapshot(&sdk).await;
    assert_eq!(groups(&after, "joe.new"), ["finance", "oncall", "staff"]);
    assert_eq!(attached(&after, "joe.new"), [org.finance_policy.as_str()]);

    // The NHI created for Joe now names him as its owner, so a later leaver finds it.
    let tags = iam
        .list_user_tags()
        .user_name("svc-joe-etl")
        .send()
        .await
        .expect("list tags")
        .tags;
    let owner: Vec<&str> = tags
        .iter()
        .filter(|t| t.key == "owner")
        .map(|t| t.value.as_str())
        .collect();
    assert_eq!(owner, ["joe.new@example.com"], "{tags:?}");
    let role_tags = iam
        .list_role_tags()
        .role_name("svc-joe-etl")
        .send()
        .await
        .expect("list role tags")
        .tags;
    assert!(
        role_tags
            .iter()
            .any(|t| t.key == "owner" && t.value == "joe.new@example.com"),
        "{role_tags:?}"
    );
    let resolved = world.closeout(&["resolve", "--identity", "E2003", "--format", "json"]);
    assert!(
        common::stdout(&resolved).contains("aws:nhi-user:svc-joe-etl"),
        "{}",
        describe(&resolved)
    );

    // Only the time-bound grant is recorded, expiring an hour after it was made.
    let grants = grants_at(&world.journal_path());
    assert_eq!(grants.len(), 1, "{grants:?}");
    let (identity, g) = &grants[0];
    assert_eq!(
        (
            identity.as_str(),
            g.entitlement.provider.as_str(),
            g.entitlement.kind.as_str()
        ),
        ("E2003", "aws", "group-membership")
    );
    assert_eq!(
        (g.entitlement.target.as_str(), g.rule.as_str()),
        ("oncall", "oncall")
    );
    assert!(g.granted_at >= started - chrono::Duration::seconds(1));
    assert_eq!(g.expires_at - g.granted_at, chrono::Duration::hours(1));

    let explain = world.closeout(&["policy", "explain", "--identity", "E2003"]);
    assert_eq!(explain.status.code(), Some(0), "{}", describe(&explain));
    let text = common::stdout(&explain);
    let until = format!("until {}", g.expires_at.format("%Y-%m-%d %H:%M UTC"));
    let line = explain_line(&text, "Should hold", "aws group-membership oncall");
    assert!(line.contains(&until), "{line}");
}
