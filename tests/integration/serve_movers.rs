//! Joiners and expiring grants through `closeout serve`, against moto: a signed joiner webhook
//! for a person the HR export does not list yet grants the policy's baseline and a time-bound
//! grant (read back from IAM, expiry in the journal); once the grant expires, the expiry
//! scheduler queues one converging mover run that removes it (read back), and no second one.

use crate::common;

use chrono::{DateTime, Utc};
use closeout::store::journal::RunStatus;
use closeout::trigger::Trigger;
use common::mover::{use_source_and_policy, write_hr, Person};
use common::serve::{post_event, signed, wait_until, WEBHOOK_SECRET};
use common::{journal_runs, World};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(90);
const JOINER: &str = "E3001";
const USER: &str = "nia.new";

const POLICY: &str = r#"
rules:
  - name: baseline
    grants:
      - { provider: aws, group: staff }
  - name: oncall
    when: { tags: oncall }
    duration: 4s
    grants:
      - { provider: aws, group: oncall }
"#;

async fn groups_of(iam: &aws_sdk_iam::Client, user: &str) -> Vec<String> {
    let mut groups: Vec<String> = iam
        .list_groups_for_user()
        .user_name(user)
        .send()
        .await
        .expect("list groups for user")
        .groups
        .into_iter()
        .map(|g| g.group_name)
        .collect();
    groups.sort();
    groups
}

/// The joiner's recorded time-bound grants: (target, expires_at).
fn grant_rows(world: &World) -> Vec<(String, DateTime<Utc>)> {
    let mut rows: Vec<_> = world
        .grants()
        .into_iter()
        .filter(|(identity, _)| identity == JOINER)
        .map(|(_, g)| (g.entitlement.target, g.expires_at))
        .collect();
    rows.sort();
    rows
}

fn runs(world: &World, trigger: Trigger) -> Vec<RunStatus> {
    journal_runs(world)
        .into_iter()
        .filter(|r| r.identity == JOINER && r.trigger == trigger)
        .map(|r| r.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_event_grants_the_baseline_and_the_scheduler_removes_the_expired_grant() {
    let world = World::new();
    let sdk = world.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    for group in ["staff", "oncall", "finance"] {
        iam.create_group()
            .group_name(group)
            .send()
            .await
            .expect("create group");
    }
    // IT created the account; the HR export does not list the person yet.
    iam.create_user()
        .user_name(USER)
        .send()
        .await
        .expect("create user");
    let dir = world.dir.path();
    let (hr, policy) = (dir.join("hr.csv"), dir.join("entitlements.yaml"));
    let colleague = Person {
        id: "E3000",
        email: "old.hand@example.com",
        department: "Finance",
        tags: "",
    };
    write_hr(&hr, &[Person { ..colleague }]);
    std::fs::write(&policy, POLICY).expect("write policy");
    use_source_and_policy(&world.config_path(), &hr, &policy);
    let mut config = std::fs::read_to_string(world.config_path()).expect("config");
    config.push_str(
        "\n[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nexpiry_every_secs = 1\nauto_apply = [\"leaver\", \"joiner\", \"mover\"]\n",
    );
    std::fs::write(world.config_path(), config).expect("write config");

    let log = dir.join("serve.log");
    let mut cmd = world.command(&["serve"]);
    cmd.env("CLOSEOUT_WEBHOOK_SECRETS", WEBHOOK_SECRET);
    let service = common::start_serve(cmd, &log);

    let body = serde_json::json!({
        "type": "joiner",
        "identity": {"id": JOINER, "attributes": {
            "email": "nia.new@example.com", "name": "Nia New",
            "department": "Finance", "tags": "oncall"
        }}
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let (status, answer) =
        post_event(&service.base, &signed("msg_join_1", &body, now), &body).await;
    assert_eq!(status, 202, "{answer}");

    wait_until("the joiner run to close", &log, TIMEOUT, || {
        runs(&world, Trigger::Joiner) == [RunStatus::Closed]
    })
    .await;
    assert_eq!(groups_of(&iam, USER).await, ["oncall", "staff"]);
    let rows = grant_rows(&world);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "oncall");

    // The next HR export lists the person; the scheduler can act on them.
    write_hr(
        &hr,
        &[
            Person { ..colleague },
            Person {
                id: JOINER,
                email: "nia.new@example.com",
                department: "Finance",
                tags: "oncall",
            },
        ],
    );
    wait_until("the expiry mover run to close", &log, TIMEOUT, || {
        runs(&world, Trigger::Mover) == [RunStatus::Closed]
    })
    .await;
    assert_eq!(
        groups_of(&iam, USER).await,
        ["staff"],
        "the expired oncall grant is removed, the baseline kept"
    );
    // Still matching the rule, the expired grant is not granted again, and no second run
    // starts for the same expiry.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs(&world, Trigger::Mover), [RunStatus::Closed]);
    assert_eq!(groups_of(&iam, USER).await, ["staff"]);
    assert_eq!(grant_rows(&world), rows, "the expired record is kept");
    drop(service);
}
