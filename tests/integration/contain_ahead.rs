//! Containment ahead of discovery (docs/containment.md), against moto: the leaver's own
//! sign-ins, keys and sessions are contained while the whole resolution is still listing what
//! she reaches; the run then plans the rest under the same id and closes; a whole plan above
//! the blast-radius limit stops after containment and a confirmed apply finishes that run.

use crate::common::{self, account_snapshot, journal_actions, journal_runs, json, stderr, World};
use closeout::store::journal::RunStatus;
use closeout_testkit::proxy::{Fault, FaultProxy, Rule, When};
use std::process::Output;

/// How long the proxy holds every `ListSecrets`: far longer than containing the accounts
/// takes, so containment either happened inside it or waited for it.
const LISTING_DELAY_MS: u64 = 5_000;

/// The leaver's containment calls that need only her IAM user and what it holds.
const ACCOUNT_CONTAINMENT: [&str; 3] = ["DeleteLoginProfile", "UpdateAccessKey", "PutUserPolicy"];

async fn output(mut cmd: std::process::Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run closeout"))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_are_contained_while_the_secrets_are_still_being_listed() {
    let world = World::new();
    let proxy = FaultProxy::start(&world.moto.endpoint()).await;
    let config = std::fs::read_to_string(world.config_path()).expect("config");
    std::fs::write(
        world.config_path(),
        config.replace(&world.moto.endpoint(), &proxy.endpoint()),
    )
    .expect("write config");
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;
    proxy.set_rules(vec![Rule::new(
        When::Always,
        Fault::Latency {
            millis: LISTING_DELAY_MS,
        },
    )
    .on("ListSecrets")]);

    let out = output(world.command(&common::APPLY_LEAVER)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report}");

    // The account-containment calls arrived while the first secrets listing was held (the
    // first of each: later ones of the same operation are other stages', e.g. an owned NHI's
    // old key deactivated after its rotation).
    let log = proxy.log();
    let listed = log
        .iter()
        .find(|e| e.op == "ListSecrets")
        .expect("the run listed the secrets");
    let answered_at = listed.at_ms + u128::from(LISTING_DELAY_MS);
    for op in ACCOUNT_CONTAINMENT {
        let first = log
            .iter()
            .find(|e| e.op == op)
            .unwrap_or_else(|| panic!("no {op}: {log:?}"));
        assert!(
            first.at_ms < answered_at,
            "{op} came {} ms after the secrets listing was answered: containment waited for discovery",
            first.at_ms - answered_at
        );
    }

    // The inventory was read twice, not three times: once to name her accounts (and handed to
    // the whole resolution, which planned from it as it was before containment), once to verify.
    let inventories = log
        .iter()
        .filter(|e| e.op == "GetAccountAuthorizationDetails")
        .count();
    assert_eq!(inventories, 2, "{log:?}");

    // One run, its whole plan stored (not the contain-only one) and named by `run.planned`;
    // no action ran twice.
    let runs = journal_runs(&world);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let plan: serde_json::Value = serde_json::from_str(&runs[0].plan_json).expect("plan");
    assert!(plan.get("contain_only").is_none(), "{plan}");
    assert!(plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .any(|s| s["name"] == "rotate" && !s["actions"].as_array().unwrap().is_empty()));
    let events: Vec<String> = common::audit_records(&world)
        .iter()
        .map(|r| r["event"].as_str().unwrap_or_default().to_string())
        .collect();
    for event in ["run.started", "run.planned", "run.finished"] {
        assert_eq!(
            events.iter().filter(|e| *e == event).count(),
            1,
            "{event}: {events:?}"
        );
    }
    for a in journal_actions(&world) {
        assert_eq!(a.attempts, 1, "{a:?}");
    }
    assert!(runs[0].contained_at.is_some());

    // Read back: containment and the rest of the leaver playbook both happened.
    let after = account_snapshot(&sdk).await;
    assert_eq!(
        after.get("user/alice/login-profile").map(String::as_str),
        Some("absent")
    );
    for (k, v) in &before {
        if k.starts_with("user/alice/access-key/") && v == "Active" {
            assert_eq!(after.get(k).map(String::as_str), Some("Inactive"), "{k}");
        }
    }
    assert!(!after.keys().any(|k| k.starts_with("user/alice/group/")));
    for secret in ["alice/personal-notes", "eng/ci-token"] {
        assert_ne!(
            common::secret_version(&before, secret, "AWSCURRENT"),
            common::secret_version(&after, secret, "AWSCURRENT"),
            "{secret} was not rotated"
        );
    }
}

/// The `--confirm-actions N` an apply above the blast-radius limit asks for.
fn asked_count(out: &Output) -> usize {
    let err = stderr(out);
    err.split("--confirm-actions ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no `--confirm-actions N` in the message\n{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_above_the_blast_radius_stops_after_containment_and_a_confirmed_apply_finishes_it() {
    let world = World::new();
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;

    // A limit the containment of her accounts fits in and the whole plan does not.
    let preview = world.closeout(&[
        "plan",
        "leaver",
        "--identity",
        common::LEAVER,
        "--format",
        "json",
    ]);
    assert_eq!(preview.status.code(), Some(0), "{}", stderr(&preview));
    let preview = json(&preview);
    let whole = common::plan_keys(&preview).len();
    let contain = preview["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == "contain")
        .and_then(|s| s["actions"].as_array())
        .map_or(0, Vec::len);
    assert!(contain > 0 && contain < whole, "{contain} of {whole}");
    let shipped = std::fs::read_to_string(format!("{}/playbooks/leaver.yaml", common::REPO))
        .expect("shipped leaver");
    let limited = shipped.replacen("max_actions: 200", &format!("max_actions: {contain}"), 1);
    assert_ne!(limited, shipped);
    let dir = world.dir.path().join("limited");
    std::fs::create_dir_all(&dir).expect("playbook dir");
    std::fs::write(dir.join("leaver.yaml"), limited).expect("write playbook");
    world.write_config(dir.to_str().expect("utf-8 path"), "");

    let out = output(world.command(&common::APPLY_LEAVER)).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let asked = asked_count(&out);
    assert_eq!(asked, whole, "{}", stderr(&out));
    // Contained, and nothing beyond containment: the run failed with its contain-only plan.
    let runs = journal_runs(&world);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Failed);
    let plan: serde_json::Value = serde_json::from_str(&runs[0].plan_json).expect("plan");
    assert_eq!(plan["contain_only"], true, "{plan}");
    let stopped = account_snapshot(&sdk).await;
    assert_eq!(
        stopped.get("user/alice/login-profile").map(String::as_str),
        Some("absent")
    );
    assert!(
        stopped.keys().any(|k| k.starts_with("user/alice/group/")),
        "a group membership went before the whole plan was confirmed"
    );
    let secret = "alice/personal-notes";
    assert_eq!(
        common::secret_version(&before, secret, "AWSCURRENT"),
        common::secret_version(&stopped, secret, "AWSCURRENT"),
        "{secret} was rotated before the whole plan was confirmed"
    );

    // The confirmed apply finishes that run: same id, closed, no action twice.
    let confirmed = asked.to_string();
    let mut args = common::APPLY_LEAVER.to_vec();
    args.extend(["--confirm-actions", &confirmed]);
    let out = output(world.command(&args)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report}");
    assert_eq!(report["run"], runs[0].id.as_str());
    assert_eq!(journal_runs(&world).len(), 1);
    for a in journal_actions(&world) {
        assert_eq!(a.attempts, 1, "{a:?}");
    }
    let after = account_snapshot(&sdk).await;
    assert!(!after.keys().any(|k| k.starts_with("user/alice/group/")));
    assert_ne!(
        common::secret_version(&before, secret, "AWSCURRENT"),
        common::secret_version(&after, secret, "AWSCURRENT"),
        "{secret} was not rotated"
    );
}
