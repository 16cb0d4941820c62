//! Issue 19's "done when", at the size this machine runs in a test: three `closeout serve`
//! replicas on one PostgreSQL store in front of moto seeded with the demo organisation, a couple
//! of hundred signed events (leavers, incidents and movers for every human of the demo organisation,
//! several per identity, duplicates posted to another replica, unknown identities), the replica
//! running an event SIGKILLed mid-run and restarted. Every accepted event is processed exactly
//! once (the queue and the journal), no identity has two runs at once (the journal's times), no
//! provider effect happens twice (read back from moto: every new secret version is named by the
//! one rotate action that put it, and no action put two), and the audit log is one chain in the store that
//! verifies and records each action's completion once.

use crate::common;

use closeout::store::journal::{ActionRecord, ActionStatus, Journal, RunRecord};
use closeout::store::queue::{EventQueue, QueueStatus, QueuedEvent};
use common::serve::{post_event as post, signed, wait_until, API_TOKEN, WEBHOOK_SECRET as SECRET};
use common::{Service, World};
use std::collections::BTreeMap;
use std::time::Duration;

/// The humans of the demo organisation (not the protected break-glass admin, whose leaver waits
/// for an approval).
const IDENTITIES: [&str; 8] = [
    "E0001", "E1000", "E1001", "E1002", "E1003", "E1005", "E1006", "E1007",
];

/// Rounds of events: each round is a leaver, an incident or a mover for every identity above
/// and a leaver for an identity the HR export does not know.
const ROUNDS: usize = 24;

fn start(world: &World, name: &str) -> Service {
    let mut cmd = world.command(&["serve"]);
    cmd.env("CLOSEOUT_WEBHOOK_SECRETS", SECRET)
        .env("CLOSEOUT_API_TOKEN", API_TOKEN);
    common::start_serve(cmd, &world.dir.path().join(format!("serve-{name}.log")))
}

fn journal(world: &World) -> Journal {
    world.journal().expect("the PostgreSQL journal")
}

/// Every secret's version ids in moto, deprecated ones included (moto keeps them all).
async fn secret_versions(sdk: &aws_config::SdkConfig) -> BTreeMap<String, Vec<String>> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let mut out = BTreeMap::new();
    let secrets = sm
        .list_secrets()
        .max_results(100)
        .send()
        .await
        .expect("list secrets")
        .secret_list
        .unwrap_or_default();
    for s in secrets {
        let arn = s.arn.expect("secret ARN");
        let versions = sm
            .list_secret_version_ids()
            .secret_id(&arn)
            .include_deprecated(true)
            .send()
            .await
            .expect("secret versions")
            .versions
            .unwrap_or_default();
        out.insert(
            arn,
            versions.into_iter().filter_map(|v| v.version_id).collect(),
        );
    }
    out
}

/// Two hundred and sixteen signed events: [`ROUNDS`] rounds over [`IDENTITIES`] and one unknown.
fn events() -> Vec<(String, String)> {
    let mut bodies = Vec::new();
    for round in 0..ROUNDS {
        for (n, identity) in IDENTITIES.iter().enumerate() {
            let id = format!("evt_{round}_{identity}");
            let body = match (round + n) % 6 {
                // A mover: to the other department of the demo's policy.
                1 => {
                    let department = if round % 2 == 0 {
                        "data"
                    } else {
                        "engineering"
                    };
                    format!(
                        r#"{{"type":"mover","identity":{{"id":"{identity}","attributes":{{"department":"{department}"}}}}}}"#
                    )
                }
                0 | 3 => format!(r#"{{"type":"incident","identity":{{"id":"{identity}"}}}}"#),
                _ => format!(r#"{{"type":"leaver","identity":{{"id":"{identity}"}}}}"#),
            };
            bodies.push((id, body));
        }
        bodies.push((
            format!("evt_{round}_unknown"),
            format!(r#"{{"type":"leaver","identity":{{"id":"NOBODY-{round}"}}}}"#),
        ));
    }
    bodies
}

/// Every run in the journal was started by exactly one event: a second run for an event would
/// belong to none. Several events name one run only when it failed and the identity's next
/// event of the trigger resumed it (the engine finishes an unfinished run rather than start
/// another): then every event naming it but the last is failed.
fn assert_one_run_per_event(events: &[QueuedEvent], runs: &[RunRecord]) {
    let mut events_of_run: BTreeMap<&str, Vec<&QueuedEvent>> = BTreeMap::new();
    for e in events {
        if let Some(run) = &e.run_id {
            events_of_run.entry(run).or_default().push(e);
        }
    }
    for (run, mut sharing) in events_of_run {
        sharing.sort_by_key(|e| e.seq);
        let (_, earlier) = sharing.split_last().expect("at least one event");
        for e in earlier {
            assert_eq!(
                e.status,
                QueueStatus::Failed,
                "run {run} is named by events {:?}, and {} (not the last of them) did not fail: {e:?}",
                sharing.iter().map(|e| e.seq).collect::<Vec<_>>(),
                e.seq
            );
        }
    }
    let named: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e.run_id.as_deref()).collect();
    for r in runs {
        assert!(
            named.contains(r.id.as_str()),
            "run {} ({}) belongs to no event: a duplicate run",
            r.id,
            r.identity
        );
    }
}

/// No identity ever had two runs at once. A run is active from its `run.started` or
/// `run.resumed` audit record to its next `run.finished` (or `run.waiting-approval`): a run that
/// failed and was resumed by a later event of its identity has two stretches, and the runs of
/// the identity's other events fall between them, never inside one.
fn assert_no_overlapping_runs(records: &[serde_json::Value]) {
    type At = chrono::DateTime<chrono::Utc>;
    let at = |r: &serde_json::Value| -> At {
        r["at"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("audit record without a time: {r}"))
    };
    let mut records: Vec<&serde_json::Value> = records.iter().collect();
    records.sort_by_key(|r| r["seq"].as_i64().unwrap_or_default());
    let mut open: BTreeMap<String, (String, At)> = BTreeMap::new();
    let mut stretches: BTreeMap<String, Vec<(At, At, String)>> = BTreeMap::new();
    for r in records {
        let run = r["run"].as_str().unwrap_or_default().to_string();
        let identity = r["identity"].as_str().unwrap_or_default().to_string();
        match r["event"].as_str().unwrap_or_default() {
            "run.started" | "run.resumed" => {
                open.entry(run).or_insert((identity, at(r)));
            }
            "run.finished" | "run.waiting-approval" => {
                if let Some((identity, since)) = open.remove(&run) {
                    stretches
                        .entry(identity)
                        .or_default()
                        .push((since, at(r), run));
                }
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "runs that never ended: {open:?}");
    for (identity, mut list) in stretches {
        list.sort();
        for w in list.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "{identity}: run {} was active from {} while run {} was, until {}",
                w[1].2,
                w[1].0,
                w[0].2,
                w[0].1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_moto_process_a_few_hundred_events_exactly_once_across_a_kill() {
    let world = World::new().on_postgres();
    let _ = world.seed_demo();
    let sdk = world.sdk().await;
    let seeded = secret_versions(&sdk).await;
    let path = world.config_path();
    let mut text = std::fs::read_to_string(&path).expect("config");
    // Movers converge to the demo organisation's entitlement policy.
    text.push_str(&format!(
        "\n[policy]\nentitlements = \"{}/examples/demo/entitlements.yaml\"\n",
        common::REPO
    ));
    text.push_str(
        "\n[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 2\nshutdown_grace_secs = 20\n\
         auto_apply = [\"leaver\", \"incident\", \"mover\"]\n",
    );
    std::fs::write(&path, text).expect("write config");
    let mut replicas = [start(&world, "a"), start(&world, "b"), start(&world, "c")];

    let now = chrono::Utc::now().timestamp();
    let bodies = events();
    for (n, (id, body)) in bodies.iter().enumerate() {
        let (status, reply) = post(&replicas[n % 3].base, &signed(id, body, now), body).await;
        assert_eq!(status, 202, "{reply}");
        // Every fifth event again, at another replica: a duplicate, stored once.
        if n % 5 == 0 {
            let base = &replicas[(n + 1) % 3].base;
            let (status, reply) = post(base, &signed(id, body, now), body).await;
            assert_eq!(status, 200, "{reply}");
        }
    }
    let accepted = bodies.len() as u64;
    let log = world.dir.path().join("serve-a.log");
    let store = world.postgres.as_ref().expect("postgres");
    let queue = EventQueue::open_config(store).expect("open the PostgreSQL queue");

    // SIGKILL the replica running an event once runs have acted, then restart it.
    let mut victim = None;
    wait_until("runs to act", &log, Duration::from_secs(300), || {
        victim = common::claiming_pid(store).filter(|_| common::journal_actions(&world).len() > 3);
        victim.is_some()
    })
    .await;
    let victim = victim.expect("a claiming process");
    let index = replicas
        .iter()
        .position(|r| r.child.id() == victim)
        .expect("the claim names one of the replicas");
    replicas[index].child.kill().expect("SIGKILL");
    let _ = replicas[index].child.wait();
    let finished_before: BTreeMap<String, ActionRecord> = common::journal_actions(&world)
        .into_iter()
        .filter(|a| a.status.is_finished())
        .map(|a| (a.key.clone(), a))
        .collect();
    replicas[index] = start(&world, "restarted");

    wait_until(
        "every event to finish",
        &log,
        Duration::from_secs(900),
        || {
            let finished: u64 = queue
                .counts()
                .expect("counts")
                .iter()
                .filter(|(s, _)| s.is_finished())
                .map(|(_, n)| n)
                .sum();
            finished == accepted
        },
    )
    .await;

    // Every accepted event stored once and processed exactly once.
    let events = queue.list(1000, None).expect("events");
    assert_eq!(events.len() as u64, accepted);
    let retried: Vec<_> = events.iter().filter(|e| e.attempts > 1).collect();
    assert!(
        retried.len() <= 2,
        "more events than the killed replica's two workers held were claimed again: {retried:?}"
    );
    let runs = journal(&world).runs(10_000).expect("runs");
    // A run that failed is allowed (another event of the identity finishes it), but say why.
    for a in common::journal_actions(&world)
        .iter()
        .filter(|a| !a.status.is_finished())
    {
        eprintln!(
            "unfinished action of run {}: {} {} ({:?}, {} attempt(s)): {}",
            a.run_id,
            a.verb,
            a.finding_id,
            a.status,
            a.attempts,
            a.error.as_deref().unwrap_or("-")
        );
    }
    assert_one_run_per_event(&events, &runs);
    let movers = runs
        .iter()
        .filter(|r| r.trigger == closeout::trigger::Trigger::Mover)
        .count();
    assert!(movers > 0, "no mover ran");
    assert_no_overlapping_runs(&common::audit_records(&world));

    // No action finished before the kill ran again.
    let actions = common::journal_actions(&world);
    let after: BTreeMap<&str, &ActionRecord> =
        actions.iter().map(|a| (a.key.as_str(), a)).collect();
    for (key, before) in &finished_before {
        assert_eq!(after[key.as_str()].attempts, 1, "{key} ran again");
        assert_eq!(after[key.as_str()].status, before.status);
    }

    // No provider effect twice, read back from moto: every version the run put is named by
    // the rotate action that put it (a secret's new version id is the token derived from the
    // action's idempotency key; a published service-account key's, from the key and the access
    // key id it holds), so each new version belongs to exactly one rotate action of the journal
    // and no action put two; and every rotation the journal records as made left its version.
    let rotate_keys: Vec<&str> = actions
        .iter()
        .filter(|a| a.verb == "rotate")
        .map(|a| a.key.as_str())
        .collect();
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let now_versions = secret_versions(&sdk).await;
    let mut put_by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (arn, versions) in &now_versions {
        let published = arn.contains(":secret:closeout/nhi/");
        for v in versions {
            if seeded.get(arn).is_some_and(|old| old.contains(v)) {
                continue;
            }
            let token_of: Box<dyn Fn(&str) -> String> = if published {
                // The access key id the version holds (the secret key beside it is not kept).
                let value = sm
                    .get_secret_value()
                    .secret_id(arn)
                    .version_id(v)
                    .send()
                    .await
                    .expect("read a published version")
                    .secret_string
                    .unwrap_or_default();
                let id = serde_json::from_str::<serde_json::Value>(&value)
                    .ok()
                    .and_then(|j| j["AccessKeyId"].as_str().map(str::to_string))
                    .unwrap_or_else(|| panic!("{arn} version {v} holds no AccessKeyId"));
                Box::new(move |k| closeout_aws::request_token(&format!("{k}/publish/{id}")))
            } else {
                Box::new(closeout_aws::request_token)
            };
            let owner = rotate_keys
                .iter()
                .find(|k| token_of(k) == *v)
                .unwrap_or_else(|| panic!("{arn}: version {v} was put by no rotate action"));
            put_by.entry(owner).or_default().push(format!("{arn} {v}"));
        }
    }
    for (key, versions) in &put_by {
        assert_eq!(versions.len(), 1, "rotate action {key} put {versions:?}");
    }
    let mut rotations = 0;
    for a in &actions {
        if let Some(arn) = a.finding_id.strip_prefix("aws:secret:") {
            if a.verb == "rotate" && a.status == ActionStatus::Done {
                rotations += 1;
                let token = closeout_aws::request_token(&a.key);
                assert!(
                    now_versions.get(arn).is_some_and(|v| v.contains(&token)),
                    "rotation {} of {arn} is recorded as made, but moto has no version {token}",
                    a.key
                );
            }
        }
    }
    assert!(rotations > 0, "no secret was rotated");
    assert!(
        put_by.keys().any(|k| {
            actions
                .iter()
                .any(|a| a.key == *k && a.finding_id.starts_with("aws:access-key:"))
        }),
        "no service-account key was rotated and published"
    );

    // The audit log: one chain in the store's table across the replicas, which verifies and
    // records each action's completion once.
    common::assert_one_audit_chain_in_store(world.dir.path(), &world.config_path());
    let mut completed: BTreeMap<String, usize> = BTreeMap::new();
    for r in common::audit_records(&world) {
        let event = r["event"].as_str().unwrap_or_default();
        if event == "action.done" || event == "action.already-done" {
            let key = r["details"]["key"].as_str().unwrap_or_default();
            *completed.entry(key.to_string()).or_default() += 1;
        }
    }
    assert!(!completed.is_empty(), "no action was audited");
    // The executor audits an action's outcome before the journal marks it finished: a SIGKILL
    // between the two leaves it `started`, and the takeover runs and audits it again. Once per
    // start, never more; the kill interrupts at most one start of each.
    for (key, n) in &completed {
        let starts = after.get(key.as_str()).map_or(1, |a| a.attempts as usize);
        assert!(
            *n == 1 || (*n == 2 && starts == 2),
            "action {key} completed {n} times over {starts} start(s)"
        );
    }
    eprintln!(
        "{accepted} events, {} runs ({movers} movers), {} actions, {rotations} secret rotations, {} versions put, {} events claimed again",
        runs.len(),
        actions.len(),
        put_by.len(),
        retried.len()
    );
}
