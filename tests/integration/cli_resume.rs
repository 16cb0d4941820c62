//! The journal makes `apply` restartable (issue 2 item 7): the process is killed with SIGKILL in
//! the middle of `apply`; `closeout resume RUN` — or a plain re-run of the same `apply` — finishes
//! the run without repeating a finished action and ends closed; a second `apply` on a closed
//! identity takes no action. Checked against the journal (read through the store's API), the audit log and
//! the account (read back with the AWS SDK).

use crate::common;
use common::{APPLY_LEAVER as APPLY, LEAVER};

use closeout::store::journal::{ActionRecord, ActionStatus, RunStatus};
use common::{
    account_snapshot, audit_records, describe, journal_actions, journal_runs, json, plan_keys,
    secret_version, world_actions, World,
};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Slow enough that `apply` takes many seconds, so it can be killed part-way.
const SLOW_AWS: &str = "requests_per_second = 4.0\nmax_in_flight = 1";

fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit code {code}\n{}",
        describe(out)
    );
}

/// What the journal held when the child was killed.
struct Killed {
    run_id: String,
    /// Every action key of the run's stored plan.
    planned: Vec<String>,
    /// The plan's action key → (step, finding resource).
    plan_actions: BTreeMap<String, (String, String)>,
    /// The run's actions finished before the kill, as the journal recorded them.
    finished: BTreeMap<String, ActionRecord>,
}

/// The journal's `done` actions while `apply` runs: `(key, step)`. The journal may not exist
/// yet, or be half-created, while the child starts: that reads as nothing done.
fn done_actions_now(world: &World) -> Vec<(String, String)> {
    world_actions(world)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.status == ActionStatus::Done)
        .map(|a| (a.key, a.step))
        .collect()
}

/// Spawn `apply` and SIGKILL it as soon as `ready` says the journal's finished actions are
/// enough; returns what the journal held at that moment.
fn kill_apply_when(
    world: &World,
    what: &str,
    ready: impl Fn(&[(String, String)]) -> bool,
) -> Killed {
    let log = world.dir.path().join(format!("{what}.stderr"));
    let mut child = world
        .command(&APPLY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn closeout apply");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "apply ended ({status}) before it could be killed; stderr:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if ready(&done_actions_now(world)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "apply did not get far enough in time; stderr:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    child.kill().expect("SIGKILL apply"); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "apply was not killed: {status}");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "apply did not die of SIGKILL");
    }

    let runs = journal_runs(world);
    assert_eq!(runs.len(), 1, "one run before the kill: {runs:?}");
    let run = &runs[0];
    assert_eq!(run.identity, LEAVER);
    assert_eq!(
        run.status,
        RunStatus::Running,
        "the killed run is not left unfinished"
    );
    let plan: serde_json::Value = serde_json::from_str(&run.plan_json).expect("stored plan");
    let plan_actions: BTreeMap<String, (String, String)> = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["actions"].as_array().unwrap().iter())
        .map(|a| {
            (
                a["key"].as_str().unwrap().to_string(),
                (
                    a["step"].as_str().unwrap().to_string(),
                    a["finding"]["resource"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect();
    let finished: BTreeMap<String, ActionRecord> = journal_actions(world)
        .into_iter()
        .filter(|a| a.run_id == run.id && a.status.is_finished())
        .map(|a| (a.key.clone(), a))
        .collect();
    let planned = plan_keys(&plan);
    assert!(
        finished.len() < planned.len(),
        "every action finished before the kill ({} of {}): the test proves nothing",
        finished.len(),
        planned.len()
    );
    for a in finished.values() {
        assert_eq!(a.attempts, 1, "{a:?}");
    }
    eprintln!(
        "killed run {} with {} of {} actions finished",
        run.id,
        finished.len(),
        planned.len()
    );
    Killed {
        run_id: run.id.clone(),
        planned,
        plan_actions,
        finished,
    }
}

/// After the run was finished: it is closed, every planned action is finished, every action
/// finished before the kill was not run again, and no action finished twice in the audit log.
fn assert_finished_without_repeats(world: &World, killed: &Killed) {
    let runs = journal_runs(world);
    assert_eq!(runs.len(), 1, "a second run was created: {runs:?}");
    assert_eq!(runs[0].id, killed.run_id);
    assert_eq!(runs[0].status, RunStatus::Closed);

    let actions: BTreeMap<String, ActionRecord> = journal_actions(world)
        .into_iter()
        .map(|a| (a.key.clone(), a))
        .collect();
    for key in &killed.planned {
        let a = actions
            .get(key)
            .unwrap_or_else(|| panic!("planned action {key} never ran"));
        assert!(a.status.is_finished(), "planned action not finished: {a:?}");
        assert_eq!(a.run_id, killed.run_id);
    }
    for (key, before) in &killed.finished {
        let after = &actions[key];
        assert_eq!(
            after.attempts, 1,
            "action finished before the kill was run again: {after:?}"
        );
        assert_eq!(after.status, before.status, "{after:?}");
    }

    let mut finished_events: BTreeMap<String, usize> = BTreeMap::new();
    for r in audit_records(world) {
        let event = r["event"].as_str().unwrap_or_default();
        if event == "action.done" || event == "action.already-done" {
            let key = r["details"]["key"].as_str().unwrap().to_string();
            *finished_events.entry(key).or_default() += 1;
        }
    }
    assert!(
        !finished_events.is_empty(),
        "no finished action in the audit log (the file, or the PostgreSQL store's table)"
    );
    // Audit first, journal second (src/pipeline/apply.rs): a kill between the two leaves the
    // action `started`, so the resume runs it again and audits it again. An action is audited
    // finished once per start, never more, and the kill interrupts at most one start of each.
    for (key, n) in &finished_events {
        let starts = actions.get(key).map_or(1, |a| a.attempts as usize);
        assert!(
            *n == 1 || (*n == 2 && starts == 2),
            "action {key} finished {n} times in the audit log over {starts} start(s)"
        );
    }
    let out = world.closeout(&["audit", "verify"]);
    assert_code(&out, 0, "audit verify after the interrupted run");
}

/// What the leaver playbook promises for alice, read back from the account.
fn assert_alice_closed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) {
    assert_eq!(
        before.get("user/alice/login-profile").map(String::as_str),
        Some("present")
    );
    assert_eq!(
        after.get("user/alice/login-profile").map(String::as_str),
        Some("absent"),
        "alice's login profile survived"
    );
    let mut active = 0;
    for (k, v) in before {
        if k.starts_with("user/alice/access-key/") {
            assert_eq!(
                after.get(k).map(String::as_str),
                Some("Inactive"),
                "{k} was {v}"
            );
            active += usize::from(v == "Active");
        }
    }
    assert!(active > 0, "alice had no active key before the run");
    assert!(
        !after.keys().any(|k| k.starts_with("user/alice/group/")),
        "alice is still in a group"
    );
    for secret in [
        "alice/personal-notes",
        "eng/ci-token",
        "prod/payments/db",
        "team/analytics-key",
    ] {
        let old = secret_version(before, secret, "AWSCURRENT").expect("secret before");
        let current = secret_version(after, secret, "AWSCURRENT").expect("secret after");
        assert_ne!(current, old, "{secret} was not rotated");
    }
    for untouched in ["finance/ledger-key", "carol/deploy-token"] {
        let key = format!("secret/{untouched}/versions");
        assert_eq!(before.get(&key), after.get(&key), "{untouched} was touched");
    }
}

#[tokio::test]
async fn sigkill_mid_apply_then_resume_finishes_without_repeating() {
    kill_then_resume(World::with_aws_extra(SLOW_AWS)).await;
}

/// The same on the PostgreSQL store: the run, its actions and the identity's lease are in the
/// database, so whoever resumes (another process, another replica) finishes the run from there.
#[tokio::test]
async fn on_postgres_sigkill_mid_apply_then_resume_finishes_without_repeating() {
    let world = World::with_aws_extra(SLOW_AWS).on_postgres();
    kill_then_resume(world).await;
}

async fn kill_then_resume(world: World) {
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;

    let killed = kill_apply_when(&world, "apply", |done| done.len() >= 3);
    // Killed while containing ahead of discovery (docs/containment.md): the slow provider
    // (4 calls/s, one at a time) is still resolving the rest, so the stored plan is the
    // contain-only one, and the resume must plan the rest before anything else.
    let stored = &journal_runs(&world)[0];
    let plan: serde_json::Value = serde_json::from_str(&stored.plan_json).expect("stored plan");
    assert_eq!(plan["contain_only"], true, "{plan}");

    let out = world.closeout(&["resume", &killed.run_id, "--format", "json"]);
    assert_code(&out, 0, "resume");
    let report = json(&out);
    eprintln!(
        "DEBUG REPORT {}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    eprintln!("DEBUG STDERR {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["status"], "closed", "{report}");
    assert_eq!(report["run"], killed.run_id.as_str());
    assert_finished_without_repeats(&world, &killed);

    let after = account_snapshot(&sdk).await;
    assert_alice_closed(&before, &after);

    // Resuming a finished run again changes nothing.
    let out = world.closeout(&["resume", &killed.run_id, "--format", "json"]);
    assert_code(&out, 0, "resume of a closed run");
    assert_eq!(json(&out)["status"], "closed");
    assert_eq!(account_snapshot(&sdk).await, after);
    assert_finished_without_repeats(&world, &killed);
    if world.postgres.is_some() {
        assert!(!world.journal_path().exists(), "nothing went to SQLite");
    }
}

#[tokio::test]
async fn sigkill_during_rotation_then_plain_rerun_resumes_the_same_run() {
    let world = World::with_aws_extra(SLOW_AWS);
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;

    // Kill in the rotate stage, once at least one secret's rotation has finished.
    let killed = kill_apply_when(&world, "apply", |done| {
        done.len() >= 3 && done.iter().any(|(_, step)| step == "rotate-secrets")
    });
    let rotated_before_kill: Vec<String> = killed
        .finished
        .keys()
        .filter(|k| killed.plan_actions[*k].0 == "rotate-secrets")
        .map(|k| killed.plan_actions[k].1.clone())
        .collect();
    assert!(!rotated_before_kill.is_empty());

    let out = world.closeout(&APPLY);
    assert_code(&out, 0, "plain re-run of apply");
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report}");
    assert_eq!(
        report["run"],
        killed.run_id.as_str(),
        "the re-run did not resume the killed run"
    );
    let out = world.closeout(&["runs", "list", "--format", "json"]);
    assert_code(&out, 0, "runs list");
    let listed: Vec<_> = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["identity"] == LEAVER && r["trigger"] == "leaver")
        .cloned()
        .collect();
    assert_eq!(listed.len(), 1, "one leaver run for {LEAVER}: {listed:?}");
    assert_eq!(listed[0]["run"], killed.run_id.as_str());
    assert_eq!(listed[0]["status"], "closed");
    assert_finished_without_repeats(&world, &killed);

    let after = account_snapshot(&sdk).await;
    assert_alice_closed(&before, &after);
    // A secret whose rotation finished before the kill was rotated exactly once: the version
    // that was current before the run is the previous one now.
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    for arn in rotated_before_kill {
        let name = sm
            .describe_secret()
            .secret_id(&arn)
            .send()
            .await
            .unwrap()
            .name
            .unwrap();
        assert_eq!(
            secret_version(&after, &name, "AWSPREVIOUS"),
            secret_version(&before, &name, "AWSCURRENT"),
            "{name} was rotated more than once"
        );
    }
}

#[tokio::test]
async fn a_second_apply_on_a_closed_identity_takes_no_action() {
    let world = World::new();
    world.seed_demo();
    let sdk = world.sdk().await;

    let out = world.closeout(&APPLY);
    assert_code(&out, 0, "first apply");
    let first = json(&out);
    assert_eq!(first["status"], "closed");
    assert!(first["summary"]["actions_done"].as_u64().unwrap() > 0);
    let first_run = first["run"].as_str().unwrap().to_string();
    let closed = account_snapshot(&sdk).await;
    let actions_before = journal_actions(&world);

    let out = world.closeout(&APPLY);
    assert_code(&out, 0, "second apply");
    let second = json(&out);
    assert_eq!(second["status"], "closed", "{second}");
    assert_eq!(second["summary"]["actions_done"], 0, "{second}");
    assert_eq!(second["summary"]["actions_failed"], 0, "{second}");
    let second_run = second["run"].as_str().unwrap().to_string();
    assert_ne!(second_run, first_run, "a closed run was reopened");

    let new_actions: Vec<ActionRecord> = journal_actions(&world)
        .into_iter()
        .filter(|a| a.run_id == second_run)
        .collect();
    assert!(
        new_actions.iter().all(|a| a.status != ActionStatus::Done),
        "the second run took actions: {new_actions:?}"
    );
    let unchanged: BTreeSet<_> = actions_before.iter().map(|a| a.key.clone()).collect();
    for a in journal_actions(&world)
        .iter()
        .filter(|a| unchanged.contains(&a.key))
    {
        assert_eq!(a.attempts, 1, "{a:?}");
    }
    assert_eq!(
        account_snapshot(&sdk).await,
        closed,
        "the second apply changed the account"
    );
}

/// DESIGN.md §5: `apply` without `--yes` asks — also when it would resume an interrupted run.
/// Today `Engine::apply` resumes an unfinished run before it reaches the confirmation, so this
/// finishes the killed run without asking (exit 0).
#[tokio::test]
async fn apply_without_yes_does_not_resume_an_interrupted_run_unasked() {
    let world = World::with_aws_extra(SLOW_AWS);
    world.seed_demo();
    let sdk = world.sdk().await;
    let killed = kill_apply_when(&world, "apply", |done| done.len() >= 3);
    let before = account_snapshot(&sdk).await;

    let out = world
        .command(&["apply", "leaver", "--identity", LEAVER, "--format", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_code(&out, 2, "apply without --yes, stdin not a terminal");
    assert_eq!(account_snapshot(&sdk).await, before, "the account changed");
    let runs = journal_runs(&world);
    assert_eq!(runs[0].id, killed.run_id);
    assert_eq!(runs[0].status, RunStatus::Running);
}
