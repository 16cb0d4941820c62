//! `closeout serve` driven from outside, as the HR system and an operator would: signed,
//! forged, replayed, malformed and oversized webhooks against the real binary (with OpenBao
//! seeded with the demo organisation as the provider), runs read back through the API and the
//! journal, an approval through the API, SIGTERM, and a SIGKILL mid-run followed by a restart
//! that processes every accepted event exactly once and resumes the interrupted run.

use crate::common;

use closeout::store::journal::RunStatus;
use closeout::store::snapshot::SourceSnapshot;
use common::vault::VaultWorld;
use common::Service;
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::{
    api, approve, post_event as post, signed, wait_until_described, API_TOKEN, APPROVER,
    APPROVER_TOKEN,
};

fn add_serve_section(world: &VaultWorld, auto_apply: &[&str]) {
    let path = world.config_path();
    let mut text = std::fs::read_to_string(&path).expect("config");
    // Before [serve]: tests append lines to the [serve] section.
    text.push_str(&common::serve::approver_section(world.dir.path()));
    text.push_str(&format!(
        "\n[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 2\nshutdown_grace_secs = 20\nmax_body_bytes = 4096\nauto_apply = {auto_apply:?}\n"
    ));
    std::fs::write(&path, text).expect("write config");
}

fn start(world: &VaultWorld) -> Service {
    common::start_serve(world.serve_command(), &world.dir.path().join("serve.log"))
}

fn serve_log(world: &VaultWorld) -> String {
    std::fs::read_to_string(world.dir.path().join("serve.log")).unwrap_or_default()
}

/// Runs of `identity` in the journal: (run id, status).
fn runs_of(world: &VaultWorld, identity: &str) -> Vec<(String, RunStatus)> {
    let Some(journal) = world.journal() else {
        return Vec::new();
    };
    journal
        .runs(10_000)
        .unwrap_or_else(|e| panic!("read the runs: {e}"))
        .into_iter()
        .filter(|r| r.identity == identity)
        .map(|r| (r.id, r.status))
        .collect()
}

fn actions_started(world: &VaultWorld) -> usize {
    let Some(journal) = world.journal() else {
        return 0;
    };
    journal
        .runs(10_000)
        .map(|runs| {
            runs.iter()
                .map(|r| journal.actions(&r.id).map(|a| a.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

async fn wait_for(what: &str, world: &VaultWorld, timeout: Duration, done: impl FnMut() -> bool) {
    let log = world.dir.path().join("serve.log");
    wait_until_described(what, &log, timeout, done, || journal_state(world)).await
}

/// Every run in the world's journal with its status and its actions' (what a stalled wait shows).
fn journal_state(world: &VaultWorld) -> String {
    let Some(journal) = world.journal() else {
        return "no journal yet".into();
    };
    let runs = match journal.runs(10_000) {
        Ok(runs) => runs,
        Err(e) => return format!("cannot read the runs: {e}"),
    };
    let mut out = String::from("events in the queue:\n");
    let queue = common::store_events(
        world.postgres.as_ref(),
        &world.dir.path().join("state/closeout.db"),
    );
    for event in queue {
        out.push_str(&format!(
            "  {} {} {} {:?} attempts={} run={:?} {}\n",
            event.seq,
            event.event.kind,
            event.event.identity,
            event.status,
            event.attempts,
            event.run_id,
            event.message.unwrap_or_default()
        ));
    }
    out.push_str("runs in the journal:\n");
    for run in runs {
        out.push_str(&format!(
            "  {} {} {} {:?}\n",
            run.id, run.identity, run.trigger, run.status
        ));
        for action in journal.actions(&run.id).unwrap_or_default() {
            out.push_str(&format!(
                "    {} {} {} {:?} attempts={} {}{}\n",
                action.verb,
                action.finding_id,
                action.key,
                action.status,
                action.attempts,
                action.detail.unwrap_or_default(),
                action.error.unwrap_or_default()
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_verified_stored_once_processed_and_approved() {
    webhooks_verified_stored_processed_approved(VaultWorld::new()).await;
}

/// The same with the store in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_webhooks_are_verified_stored_once_processed_and_approved() {
    webhooks_verified_stored_processed_approved(VaultWorld::new().on_postgres()).await;
}

async fn webhooks_verified_stored_processed_approved(world: VaultWorld) {
    let _ = world.seed_demo();
    add_serve_section(&world, &["leaver"]);
    let service = start(&world);
    let base = &service.base;
    let now = chrono::Utc::now().timestamp();
    let leaver = r#"{"type":"leaver","identity":{"id":"E1001"}}"#;

    // Health first.
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );

    // Forged, missing, stale: refused with a reason, nothing stored.
    let mut forged = signed("msg_forged", leaver, now);
    forged[2].1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let (status, body) = post(base, &forged, leaver).await;
    assert_eq!(status, 401, "{body}");
    let mut prefix = signed("msg_prefix", leaver, now);
    prefix[2].1.truncate(10);
    assert_eq!(post(base, &prefix, leaver).await.0, 401);
    let mut empty = signed("msg_empty", leaver, now);
    empty[2].1 = String::new();
    assert_eq!(post(base, &empty, leaver).await.0, 401);
    assert_eq!(post(base, &[], leaver).await.0, 401);
    let (status, body) = post(base, &signed("msg_old", leaver, now - 3600), leaver).await;
    assert_eq!(status, 401, "{body}");
    // A body changed after signing.
    let tampered = signed("msg_tampered", leaver, now);
    let (status, _) = post(base, &tampered, &leaver.replace("E1001", "E1002")).await;
    assert_eq!(status, 401);

    // Validly signed but bad: malformed JSON, unknown type, oversized.
    let bad = "{\"type\":";
    let (status, body) = post(base, &signed("msg_bad", bad, now), bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("JSON"),
        "{body}"
    );
    let unknown = r#"{"type":"fired","identity":{"id":"E1001"}}"#;
    let (status, body) = post(base, &signed("msg_unknown", unknown, now), unknown).await;
    assert_eq!(status, 422, "{body}");
    let big = format!(
        r#"{{"type":"leaver","identity":{{"id":"E1001","attributes":{{"x":"{}"}}}}}}"#,
        "a".repeat(8192)
    );
    let (status, _) = post(base, &signed("msg_big", &big, now), &big).await;
    assert_eq!(status, 413);
    assert!(runs_of(&world, "E1001").is_empty(), "a refused event ran");

    // Accepted once; the replay is acknowledged as a duplicate.
    let headers = signed("msg_leaver_1", leaver, now);
    let (status, body) = post(base, &headers, leaver).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(base, &headers, leaver).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "duplicate");

    wait_for(
        "E1001's leaver run to close",
        &world,
        Duration::from_secs(120),
        || {
            runs_of(&world, "E1001")
                .iter()
                .any(|(_, s)| *s == RunStatus::Closed)
        },
    )
    .await;
    assert_eq!(runs_of(&world, "E1001").len(), 1, "one event, one run");

    // The read API: runs, one closure report, the graph.
    let (status, runs) = api(base, "GET", "/v1/runs", None).await;
    assert_eq!(status, 200, "{runs}");
    let run = runs["runs"][0]["run"].as_str().expect("a run").to_string();
    let (status, report) = api(base, "GET", &format!("/v1/runs/{run}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(report["status"], "closed", "{report}");
    let unauth = reqwest::get(format!("{base}/v1/runs")).await.unwrap();
    assert_eq!(unauth.status(), 401);
    let dot = reqwest::Client::new()
        .get(format!("{base}/v1/identities/E1001/graph?format=dot"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(dot.status(), 200);
    assert!(dot.text().await.unwrap().starts_with("digraph"));

    // An incident is not applied automatically here: its run waits for an approval.
    let incident = r#"{"type":"incident","identity":{"id":"E1002"}}"#;
    let (status, _) = post(base, &signed("msg_incident_1", incident, now), incident).await;
    assert_eq!(status, 202);
    wait_for(
        "E1002's run to wait for approval",
        &world,
        Duration::from_secs(120),
        || {
            runs_of(&world, "E1002")
                .iter()
                .any(|(_, s)| *s == RunStatus::WaitingApproval)
        },
    )
    .await;
    let waiting = runs_of(&world, "E1002")[0].0.clone();
    // The shared API token reads but does not approve; only an approver's own token does, and
    // the approver is who the token belongs to.
    let (status, body) = approve(base, &waiting, API_TOKEN).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = approve(base, &waiting, APPROVER_TOKEN).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["approver"], APPROVER, "{body}");
    wait_for(
        "the approved run to close",
        &world,
        Duration::from_secs(120),
        || {
            runs_of(&world, "E1002")
                .iter()
                .any(|(_, s)| *s == RunStatus::Closed)
        },
    )
    .await;
    // The audit log as `audit export` prints it: the file, or the PostgreSQL store's table.
    let exported = world.closeout(&["audit", "export"]);
    assert!(exported.status.success(), "audit export");
    let audit = String::from_utf8_lossy(&exported.stdout);
    assert!(
        audit.contains("secops@example.com"),
        "the approver is audited"
    );
    let verified = world.closeout(&["audit", "verify"]);
    assert!(
        verified.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // Metrics in the Prometheus text format, behind the API token.
    let metrics = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"closeout_events_total{type="leaver",outcome="accepted"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"outcome="duplicate""#), "{metrics}");
    assert!(
        metrics.contains("closeout_action_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_resumes_and_processes_every_event_exactly_once() {
    killed_service_resumes(VaultWorld::new()).await;
}

/// The same with the store in PostgreSQL: the restarted service takes over the in-flight events
/// of its dead predecessor on this host at once (their claims name a process that is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_killed_service_resumes_and_processes_every_event_exactly_once() {
    killed_service_resumes(VaultWorld::new().on_postgres()).await;
}

async fn killed_service_resumes(world: VaultWorld) {
    let _ = world.seed_demo();
    add_serve_section(&world, &["leaver", "incident"]);
    let mut service = start(&world);
    let now = chrono::Utc::now().timestamp();
    let events = [
        ("msg_a", r#"{"type":"leaver","identity":{"id":"E1001"}}"#),
        ("msg_b", r#"{"type":"incident","identity":{"id":"E1002"}}"#),
        ("msg_c", r#"{"type":"leaver","identity":{"id":"E1002"}}"#),
    ];
    for (id, body) in events {
        let (status, reply) = post(&service.base, &signed(id, body, now), body).await;
        assert_eq!(status, 202, "{reply}");
    }
    // Kill it in the middle of a run.
    wait_for(
        "a run to start acting",
        &world,
        Duration::from_secs(120),
        || actions_started(&world) > 0,
    )
    .await;
    service.child.kill().expect("SIGKILL");
    let _ = service.child.wait();
    let interrupted: Vec<_> = ["E1001", "E1002"]
        .iter()
        .flat_map(|i| runs_of(&world, i))
        .collect();
    assert!(!interrupted.is_empty());
    // Each run the killed service started is named by its event already (a worker records the
    // run's id before the run exists), so whoever takes the event over finishes that run, even
    // one that had closed just before the kill, rather than starting a second.
    let queued = common::store_events(
        world.postgres.as_ref(),
        &world.dir.path().join("state/closeout.db"),
    );
    for (run, _) in &interrupted {
        assert!(
            queued
                .iter()
                .any(|e| e.run_id.as_deref() == Some(run.as_str())),
            "run {run} is named by no event: {queued:#?}"
        );
    }

    // Restart: everything accepted is processed, each exactly once; the interrupted run is
    // resumed, not started again.
    let service = start(&world);
    wait_for(
        "every event to finish",
        &world,
        Duration::from_secs(240),
        || {
            let a = runs_of(&world, "E1001");
            let b = runs_of(&world, "E1002");
            a.len() == 1
                && a.iter().all(|(_, s)| *s == RunStatus::Closed)
                && b.len() == 2
                && b.iter().all(|(_, s)| *s == RunStatus::Closed)
        },
    )
    .await;
    for (run, _) in &interrupted {
        assert!(
            runs_of(&world, "E1001")
                .iter()
                .chain(runs_of(&world, "E1002").iter())
                .any(|(r, _)| r == run),
            "run {run} was replaced instead of resumed"
        );
    }
    // Replaying the accepted events after the restart changes nothing.
    for (id, body) in events {
        let (status, reply) = post(&service.base, &signed(id, body, now), body).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["status"], "duplicate");
    }

    // SIGTERM: intake stops, the process exits cleanly.
    let pid = service.child.id();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let mut service = service;
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = service.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "closeout serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(exit.code(), Some(0), "{}", serve_log(&world));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_hr_export_becomes_events_that_run() {
    let world = VaultWorld::new();
    let _ = world.seed_demo();
    let hr = world.dir.path().join("hr.csv");
    let original =
        std::fs::read_to_string(format!("{}/examples/demo/hr.csv", common::REPO)).unwrap();
    std::fs::write(&hr, &original).unwrap();
    let config = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace(
            &format!("{}/examples/demo/hr.csv", common::REPO),
            &hr.display().to_string(),
        );
    std::fs::write(world.config_path(), config).unwrap();
    add_serve_section(&world, &["leaver"]);
    let path = world.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}source_poll_secs = 1\n")).unwrap();
    let _service = start(&world);

    // The first poll only takes the snapshot.
    wait_for(
        "the first snapshot",
        &world,
        Duration::from_secs(30),
        || {
            // Where the service keeps it: beside the SQLite file, or in the PostgreSQL store.
            let snapshot = match &world.postgres {
                Some(store) => SourceSnapshot::postgres(
                    &closeout::store::pg::PgStore::open(store).expect("open the store"),
                    &hr,
                ),
                None => SourceSnapshot::beside(&world.dir.path().join("state/closeout.db"), &hr),
            };
            snapshot.read().expect("read the snapshot").is_some()
        },
    )
    .await;
    assert!(runs_of(&world, "E1002").is_empty());

    // Carol leaves in the next export: a leaver event is stored and run.
    let changed = original.replace(
        "E1002,carol.diaz@example.com,Carol Diaz,human,active,",
        "E1002,carol.diaz@example.com,Carol Diaz,human,terminated,",
    );
    assert_ne!(changed, original);
    std::fs::write(&hr, changed).unwrap();
    wait_for(
        "Carol's leaver run to close",
        &world,
        Duration::from_secs(120),
        || {
            runs_of(&world, "E1002")
                .iter()
                .any(|(_, s)| *s == RunStatus::Closed)
        },
    )
    .await;
    assert_eq!(runs_of(&world, "E1002").len(), 1);
    assert!(runs_of(&world, "E1001").is_empty(), "only the change runs");
}
