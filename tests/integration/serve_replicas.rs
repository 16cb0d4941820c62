//! Two `closeout serve` replicas sharing one PostgreSQL store (issue 19), driven from outside:
//! signed webhooks posted to either replica are stored once; the replica running an event is
//! SIGKILLed mid-run; the other takes the event over (at once: the replicas share this host and
//! the claim names a process that is gone; across hosts, once the claim expired) and resumes the
//! run from the journal without repeating a finished action; the killed replica restarts and finds
//! nothing left to do. Read back through the store's API (and the queue's claim holder with
//! SQL), the audit log verified. Provider: OpenBao seeded with the demo organisation.

use crate::common;

use closeout::store::journal::{ActionRecord, Journal, RunStatus};
use closeout::store::queue::{EventQueue, QueueStatus};
use common::serve::{post_event as post, signed, wait_until, API_TOKEN};
use common::vault::VaultWorld;
use common::Service;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// The store's claim lifetime in this test: a dead replica's event is taken over after it.
const CLAIM_TTL_SECS: u64 = 6;

type Store = closeout::config::StoreConfig;

/// Point the world's config at a new PostgreSQL database and add the `[serve]` section.
fn configure(world: &VaultWorld) -> Store {
    let (store, url, pw) = common::new_postgres_database(world.dir.path());
    let path = world.config_path();
    let text = std::fs::read_to_string(&path).expect("config");
    let sqlite = "[store]\npath = \"state/closeout.db\"\n";
    assert!(text.contains(sqlite));
    let mut text = text.replace(
        sqlite,
        &format!(
            "[store]\nurl = \"{url}\"\npassword_file = \"{}\"\nclaim_ttl_secs = {CLAIM_TTL_SECS}\n",
            pw.display()
        ),
    );
    text.push_str(
        "\n[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 2\nshutdown_grace_secs = 20\n\
         auto_apply = [\"leaver\", \"incident\"]\n",
    );
    std::fs::write(&path, text).expect("write config");
    store
}

fn start(world: &VaultWorld, name: &str) -> Service {
    common::start_serve(
        world.serve_command(),
        &world.dir.path().join(format!("serve-{name}.log")),
    )
}

fn journal(store: &Store) -> Journal {
    Journal::open_postgres(
        &closeout::store::pg::PgStore::open(store).expect("open the PostgreSQL store"),
    )
}

fn queue(store: &Store) -> EventQueue {
    EventQueue::open_config(store).expect("open the PostgreSQL queue")
}

/// Runs of `identity`: (run id, status, created at, finished at).
type RunRow = (
    String,
    RunStatus,
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
);

fn runs_of(store: &Store, identity: &str) -> Vec<RunRow> {
    let mut runs: Vec<RunRow> = journal(store)
        .runs(1000)
        .expect("runs")
        .into_iter()
        .filter(|r| r.identity == identity)
        .map(|r| (r.id, r.status, r.created_at, r.finished_at))
        .collect();
    runs.sort_by_key(|r| r.2);
    runs
}

fn all_actions(store: &Store) -> Vec<ActionRecord> {
    let j = journal(store);
    let mut actions = Vec::new();
    for run in j.runs(1000).expect("runs") {
        actions.extend(j.actions(&run.id).expect("actions"));
    }
    actions
}

async fn wait_for(what: &str, world: &VaultWorld, timeout: Duration, done: impl FnMut() -> bool) {
    wait_until(what, &world.dir.path().join("serve-a.log"), timeout, done).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_process_each_event_once_and_take_over_a_killed_one() {
    let world = VaultWorld::new();
    let _ = world.seed_demo();
    let store = configure(&world);
    let mut a = start(&world, "a");
    let mut b = start(&world, "b");
    let now = chrono::Utc::now().timestamp();
    let events = [
        ("msg_a", r#"{"type":"leaver","identity":{"id":"E1001"}}"#),
        ("msg_b", r#"{"type":"incident","identity":{"id":"E1002"}}"#),
        ("msg_c", r#"{"type":"leaver","identity":{"id":"E1002"}}"#),
        ("msg_d", r#"{"type":"leaver","identity":{"id":"E1007"}}"#),
    ];
    for (n, (id, body)) in events.iter().enumerate() {
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        let (status, reply) = post(base, &signed(id, body, now), body).await;
        assert_eq!(status, 202, "{reply}");
    }
    // The same events at the other replica are duplicates: one store.
    for (n, (id, body)) in events.iter().enumerate() {
        let base = if n % 2 == 0 { &b.base } else { &a.base };
        let (status, reply) = post(base, &signed(id, body, now), body).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["status"], "duplicate");
    }

    // Kill the replica running an event, once that event's run has acted.
    let mut victim_pid = None;
    wait_for("a run to act", &world, Duration::from_secs(120), || {
        victim_pid = common::claiming_pid(&store).filter(|_| !all_actions(&store).is_empty());
        victim_pid.is_some()
    })
    .await;
    let victim_pid = victim_pid.expect("a claiming process");
    let (killed, survivor) = if a.child.id() == victim_pid {
        (&mut a, "b")
    } else {
        assert_eq!(
            b.child.id(),
            victim_pid,
            "the claim names one of the replicas"
        );
        (&mut b, "a")
    };
    killed.child.kill().expect("SIGKILL");
    let _ = killed.child.wait();
    let finished_before: BTreeMap<String, ActionRecord> = all_actions(&store)
        .into_iter()
        .filter(|a| a.status.is_finished())
        .map(|a| (a.key.clone(), a))
        .collect();
    let interrupted: Vec<String> = ["E1001", "E1002", "E1007"]
        .iter()
        .flat_map(|i| runs_of(&store, i))
        .filter(|r| r.1 == RunStatus::Running)
        .map(|r| r.0)
        .collect();
    eprintln!(
        "killed replica (pid {victim_pid}) with runs {interrupted:?} in flight; {} survives",
        survivor
    );

    // The survivor takes the event over and finishes everything.
    wait_for(
        "every event to finish on the surviving replica",
        &world,
        Duration::from_secs(300),
        || {
            let (x, y, z) = (
                runs_of(&store, "E1001"),
                runs_of(&store, "E1002"),
                runs_of(&store, "E1007"),
            );
            x.len() == 1
                && y.len() == 2
                && z.len() == 1
                && x.iter()
                    .chain(&y)
                    .chain(&z)
                    .all(|r| r.1 == RunStatus::Closed)
        },
    )
    .await;

    // Each accepted event ran once; the interrupted run was resumed, not replaced.
    let q = queue(&store);
    let stored = q.list(100, None).expect("events");
    assert_eq!(stored.len(), events.len(), "{stored:?}");
    for e in &stored {
        assert_eq!(e.status, QueueStatus::Done, "{e:?}");
    }
    // The killed replica's events were claimed again (its two workers held one or two), no
    // other. (The runs running when it was killed may include the survivor's, so which were
    // the killed one's is not known here; none was replaced, checked below.)
    let retaken = stored.iter().filter(|e| e.attempts == 2).count();
    assert!(
        (1..=2).contains(&retaken) && stored.iter().all(|e| e.attempts <= 2),
        "only the killed replica's events are claimed again: {stored:?}"
    );

    let all_runs: Vec<String> = ["E1001", "E1002", "E1007"]
        .iter()
        .flat_map(|i| runs_of(&store, i))
        .map(|r| r.0)
        .collect();
    for run in &interrupted {
        assert!(
            all_runs.contains(run),
            "run {run} was replaced instead of resumed"
        );
    }
    // One identity never had two runs at once (from the journal's times).
    let carol = runs_of(&store, "E1002");
    let first_finished = carol[0].3.expect("finished");
    assert!(
        first_finished <= carol[1].2,
        "E1002's second run started at {} before its first finished at {first_finished}",
        carol[1].2
    );
    // No action finished before the kill ran again.
    let after: BTreeMap<String, ActionRecord> = all_actions(&store)
        .into_iter()
        .map(|a| (a.key.clone(), a))
        .collect();
    for (key, before) in &finished_before {
        assert_eq!(after[key].attempts, 1, "{key} ran again: {:?}", after[key]);
        assert_eq!(after[key].status, before.status);
    }

    // The survivor's metrics: the database's queue per status, and the claim it took over.
    let survivor_base = if survivor == "a" {
        a.base.clone()
    } else {
        b.base.clone()
    };
    let metrics = reqwest::Client::new()
        .get(format!("{survivor_base}/metrics"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains(&format!(
            "closeout_queue_events{{status=\"done\"}} {}",
            events.len()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("closeout_claims_taken_over_total {retaken}")),
        "{metrics}"
    );

    // The killed replica restarts: nothing is left for it; the audit log is one valid chain.
    let restarted = start(&world, "restarted");
    for (id, body) in events {
        let (status, reply) = post(&restarted.base, &signed(id, body, now), body).await;
        assert_eq!(status, 200, "{reply}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs_of(&store, "E1002").len(),
        2,
        "no run was started again"
    );
    common::assert_one_audit_chain_in_store(world.dir.path(), &world.config_path());
    assert!(
        !world.dir.path().join("state/closeout.db").exists(),
        "nothing went to SQLite"
    );
    // Both replicas wrote records of the one chain (the audit records name no process, the
    // runs do: the killed replica's run was resumed by the survivor).
    assert!(
        common::store_audit_records(world.dir.path(), &world.config_path())
            .iter()
            .any(|r| r["event"] == "run.started")
    );
}

/// Lines of a replica's log saying it took the schedulers' leader lease.
fn took_lead(world: &VaultWorld, name: &str) -> usize {
    std::fs::read_to_string(world.dir.path().join(format!("serve-{name}.log")))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("this replica now runs the schedulers"))
        .count()
}

/// Replicas `a` and `b` with a scheduler every second (nothing has expired, so its passes
/// store nothing), once one of them has taken the schedulers' leader lease.
async fn two_replicas_with_a_leader(world: &VaultWorld) -> (Service, Service) {
    let path = world.config_path();
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(&path, format!("{text}expiry_every_secs = 1\n")).expect("config");
    let (a, b) = (start(world, "a"), start(world, "b"));
    wait_for("a leader", world, Duration::from_secs(30), || {
        took_lead(world, "a") + took_lead(world, "b") > 0
    })
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedulers_run_on_one_replica_and_fail_over_when_it_dies() {
    let world = VaultWorld::new();
    let _store = configure(&world);
    let (mut a, mut b) = two_replicas_with_a_leader(&world).await;
    // Several passes later still exactly one replica has led.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (la, lb) = (took_lead(&world, "a"), took_lead(&world, "b"));
    assert_eq!(
        la + lb,
        1,
        "both replicas ran the schedulers: a {la}, b {lb}"
    );
    let (leader, follower) = if la == 1 {
        (&mut a, "b")
    } else {
        (&mut b, "a")
    };
    leader.child.kill().expect("SIGKILL the leader");
    let _ = leader.child.wait();
    // The lease (30 s) expires and the other replica takes the schedulers over.
    let log = world.dir.path().join(format!("serve-{follower}.log"));
    wait_until(
        "the other replica to lead",
        &log,
        Duration::from_secs(60),
        || took_lead(&world, follower) == 1,
    )
    .await;
}

/// The schedulers' leader lease as the database has it: (holder, pid, term, expires at; `None`
/// once resigned, when it expires at `-infinity`).
type LeaderRow = (String, i64, i64, Option<chrono::DateTime<chrono::Utc>>);

fn leader_lease(store: &Store) -> Option<LeaderRow> {
    common::query_store(store, |client| {
        client
            .query_opt(
                "SELECT holder, pid, term, \
                 CASE WHEN isfinite(expires_at) THEN expires_at END \
                 FROM leader_leases WHERE name = 'schedulers'",
                &[],
            )
            .expect("query")
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_cleanly_resigns_and_another_replica_leads_at_once() {
    let world = VaultWorld::new();
    let store = configure(&world);
    let (mut a, mut b) = two_replicas_with_a_leader(&world).await;
    let (la, _) = (took_lead(&world, "a"), took_lead(&world, "b"));
    let (leader, follower, follower_pid) = if la == 1 {
        let pid = b.child.id();
        (&mut a, "b", pid)
    } else {
        let pid = a.child.id();
        (&mut b, "a", pid)
    };
    let (_, leader_pid, term, held_until) = leader_lease(&store).expect("a lease row");
    let held_until = held_until.expect("the leader's lease expires");
    assert_eq!(
        leader_pid,
        i64::from(leader.child.id()),
        "the lease names the leader"
    );

    // SIGTERM: a clean stop.
    let status = Command::new("kill")
        .args(["-TERM", &leader.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = leader.child.wait().expect("wait");
    assert_eq!(exit.code(), Some(0), "the leader stopped cleanly");

    // The other replica holds the lease, with the next term, while the resigned leader's
    // lease would still have been valid: the takeover came from the resignation, not the TTL.
    let mut now_led = None;
    let log = world.dir.path().join(format!("serve-{follower}.log"));
    wait_until(
        "the other replica to take the lease",
        &log,
        Duration::from_secs(15),
        || {
            now_led = leader_lease(&store).filter(|l| l.1 == i64::from(follower_pid));
            now_led.is_some()
        },
    )
    .await;
    let (holder, _, new_term, until) = now_led.expect("taken");
    assert!(!holder.is_empty());
    assert!(until.is_some_and(|u| u > chrono::Utc::now()), "{until:?}");
    assert_eq!(new_term, term + 1, "one change of leader");
    assert!(
        chrono::Utc::now() < held_until,
        "taken over only once the old lease ({held_until}) expired"
    );
    assert_eq!(took_lead(&world, follower), 1);
    let leader_name = if follower == "a" { "b" } else { "a" };
    let leader_log =
        std::fs::read_to_string(world.dir.path().join(format!("serve-{leader_name}.log")))
            .expect("leader log");
    assert!(
        leader_log.contains("resigned the schedulers' leader lease"),
        "{leader_log}"
    );
}
