//! `closeout rotate --due` against moto: a person owns a non-human IAM user with an access key,
//! and a Secrets Manager secret. moto cannot back-date CreateDate, so the thresholds make the
//! test: `max_age = "0s"` makes both due, `max_age = "1d"` makes nothing due.
//!
//! Listing changes nothing (read back); `--apply --yes` rotates both (read back: a new active
//! key, the old one inactive, the new key published; the secret has a new AWSCURRENT version);
//! afterwards nothing is due under the 1-day policy and a second `--apply` changes nothing.

use crate::common;

use closeout::store::journal::RunStatus;
use closeout::store::queue::QueueStatus;
use closeout::trigger::Trigger;
use common::serve::{wait_until, API_TOKEN};
use common::{account_snapshot, describe, journal_runs, json, secret_version, World, REPO};

const HR: &str = "\
id,email,name,kind,status,manager,department,role,location,employment_type,tags
P1,pat.lee@example.com,Pat Lee,human,active,,platform,Platform Engineer,London,full-time,
P2,quinn.roe@example.com,Quinn Roe,human,active,,platform,Platform Engineer,London,full-time,
S1,svc-x@example.com,Export job,service,active,P1,platform,Export service,aws,service,nhi
";

const DUE_NOW: &str = r#"
[[rotation.policy]]
provider = "aws"
kind = "access-key"
holder = "nhi"
max_age = "0s"

[[rotation.policy]]
provider = "aws"
kind = "secret"
max_age = "0s"
"#;

const DUE_AFTER_A_DAY: &str = r#"
[[rotation.policy]]
provider = "aws"
kind = ["access-key", "secret"]
max_age = "1d"
"#;

/// Point the world's config at this test's HR export and add a rotation policy.
fn configure(world: &World, policy: &str) {
    let hr = world.dir.path().join("hr.csv");
    std::fs::write(&hr, HR).expect("write hr.csv");
    let config = format!(
        r#"{common}
[providers.aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
{policy}"#,
        common = common::config_without_providers(&format!("{REPO}/playbooks")).replace(
            &format!("{REPO}/examples/demo/hr.csv"),
            &hr.display().to_string()
        ),
        endpoint = world.moto.endpoint()
    );
    let config = common::with_store(config, world.postgres.as_ref());
    std::fs::write(world.config_path(), config).expect("write config");
}

/// svc-x (owned by Pat) with one access key; a secret Pat owns. Returns the key id.
async fn seed(world: &World) -> String {
    let sdk = world.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let owner = aws_sdk_iam::types::Tag::builder()
        .key("owner")
        .value("pat.lee@example.com")
        .build()
        .expect("tag");
    iam.create_user()
        .user_name("svc-x")
        .tags(owner)
        .send()
        .await
        .expect("create svc-x");
    let key = iam
        .create_access_key()
        .user_name("svc-x")
        .send()
        .await
        .expect("create access key")
        .access_key
        .expect("access key")
        .access_key_id;
    sm.create_secret()
        .name("export/db-password")
        .secret_string("initial-value")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("owner")
                .value("P1")
                .build(),
        )
        .send()
        .await
        .expect("create secret");
    key
}

fn due_ids(report: &serde_json::Value) -> Vec<(String, String)> {
    report["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .flat_map(|i| {
            i["due"].as_array().expect("due").iter().map(move |d| {
                (
                    i["identity"].as_str().unwrap_or_default().to_string(),
                    d["id"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn rotate_due_lists_then_rotates_what_the_policy_makes_due() {
    let world = World::new();
    let old_key = seed(&world).await;
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;
    let key_finding = format!("aws:access-key:{old_key}");

    // Nothing is a day old yet: nothing due, exit 0.
    configure(&world, DUE_AFTER_A_DAY);
    let out = world.closeout(&["rotate", "--due", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(due_ids(&json(&out)).is_empty(), "{}", describe(&out));

    // Everything is at least 0s old: both due, for Pat (source order), exit 3, nothing changed.
    configure(&world, DUE_NOW);
    let out = world.closeout(&["rotate", "--due", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = json(&out);
    let due = due_ids(&report);
    assert!(
        due.contains(&("P1".into(), key_finding.clone())),
        "{report:#}"
    );
    let secret_due: Vec<&(String, String)> = due
        .iter()
        .filter(|(_, id)| id.starts_with("aws:secret:") && id.contains("export/db-password"))
        .collect();
    assert_eq!(secret_due.len(), 1, "{report:#}");
    assert_eq!(secret_due[0].0, "P1", "{report:#}");
    let text = world.closeout(&["rotate", "--due"]);
    assert_eq!(text.status.code(), Some(3), "{}", describe(&text));
    assert!(
        common::stdout(&text).contains(&format!("access key {old_key}"))
            && common::stdout(&text).contains("old >= 0s"),
        "{}",
        describe(&text)
    );
    assert_eq!(
        account_snapshot(&sdk).await,
        before,
        "listing changed the account"
    );
    assert!(journal_runs(&world).is_empty(), "listing created a run");

    // Apply: one rotation run for Pat, closed.
    let out = world.closeout(&["rotate", "--due", "--apply", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let runs = journal_runs(&world);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (
            runs[0].identity.as_str(),
            runs[0].trigger.as_str(),
            runs[0].status.as_str()
        ),
        ("P1", "rotation", "closed")
    );
    // Read back: the old key is retired, a new one is active and published; the secret has a
    // new AWSCURRENT version.
    let after = account_snapshot(&sdk).await;
    assert_eq!(
        after
            .get(&format!("user/svc-x/access-key/{old_key}"))
            .map(String::as_str),
        Some("Inactive"),
        "{after:#?}"
    );
    let new_keys: Vec<&String> = after
        .iter()
        .filter(|(k, v)| {
            k.starts_with("user/svc-x/access-key/") && !k.ends_with(&old_key) && *v == "Active"
        })
        .map(|(k, _)| k)
        .collect();
    assert_eq!(new_keys.len(), 1, "{after:#?}");
    assert!(
        after.contains_key("secret/closeout/nhi/svc-x/access-key/versions"),
        "the new key is published: {after:#?}"
    );
    let current = |s: &std::collections::BTreeMap<String, String>| {
        secret_version(s, "export/db-password", "AWSCURRENT")
    };
    assert!(current(&before).is_some());
    assert_ne!(current(&after), current(&before), "{after:#?}");

    // A day has not passed: nothing due, and a second apply changes nothing.
    configure(&world, DUE_AFTER_A_DAY);
    let out = world.closeout(&["rotate", "--due", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(due_ids(&json(&out)).is_empty(), "{}", describe(&out));
    let out = world.closeout(&["rotate", "--due", "--apply", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(account_snapshot(&sdk).await, after);
    assert_eq!(journal_runs(&world).len(), 1);
}

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// Rotation events of `identity` in the service's queue, with their status.
fn rotation_events(world: &World, identity: &str) -> Vec<QueueStatus> {
    let mut events: Vec<_> = world
        .queued_events()
        .into_iter()
        .filter(|e| e.event.kind == Trigger::Rotation && e.event.identity == identity)
        .collect();
    events.sort_by_key(|e| e.seq);
    events.into_iter().map(|e| e.status).collect()
}

/// The scheduler of `closeout serve` (every second) stores one rotation event for Pat, and no
/// second one while it waits for approval (rotation is not in auto_apply); the approved run
/// rotates what was due (read back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_scheduler_submits_one_rotation_event_per_identity() {
    let world = World::new();
    let old_key = seed(&world).await;
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;
    configure(
        &world,
        &format!(
            "{DUE_NOW}\n[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nrotation_every_secs = 1\nauto_apply = [\"leaver\"]\n{}",
            common::serve::approver_section(world.dir.path())
        ),
    );
    let log = world.dir.path().join("serve.log");
    let mut cmd = world.command(&["serve"]);
    cmd.env("CLOSEOUT_API_TOKEN", API_TOKEN);
    let service = common::start_serve(cmd, &log);

    wait_until(
        "a rotation run of P1 waiting for approval",
        &log,
        TIMEOUT,
        || {
            journal_runs(&world).iter().any(|r| {
                r.identity == "P1"
                    && r.trigger == Trigger::Rotation
                    && r.status == RunStatus::WaitingApproval
            })
        },
    )
    .await;
    // Three more passes of the scheduler: still one event and one run for P1.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        rotation_events(&world, "P1"),
        [QueueStatus::WaitingApproval]
    );
    let runs: Vec<_> = journal_runs(&world)
        .into_iter()
        .filter(|r| r.identity == "P1")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        account_snapshot(&sdk).await,
        before,
        "nothing changes before approval"
    );
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", service.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(metrics.contains("closeout_rotations_due 2"), "{metrics}");

    let run = runs[0].id.clone();
    let (status, approved) =
        common::serve::approve(&service.base, &run, common::serve::APPROVER_TOKEN).await;
    assert_eq!(status, 202, "approve: {approved}");
    wait_until("the approved rotation run to close", &log, TIMEOUT, || {
        journal_runs(&world)
            .iter()
            .any(|r| r.id == run && r.status == RunStatus::Closed)
    })
    .await;
    let after = account_snapshot(&sdk).await;
    assert_eq!(
        after
            .get(&format!("user/svc-x/access-key/{old_key}"))
            .map(String::as_str),
        Some("Inactive"),
        "{after:#?}"
    );
    assert_ne!(
        secret_version(&after, "export/db-password", "AWSCURRENT"),
        secret_version(&before, "export/db-password", "AWSCURRENT")
    );
    drop(service);
}
