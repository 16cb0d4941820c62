//! `closeout store migrate`: a SQLite deployment with real state (a closed run, a run waiting
//! for approval, a queued event, a time-bound grant, observations, a SCIM User, the HR snapshot,
//! the audit chain) is copied into an empty PostgreSQL store; with the config switched to it,
//! everything reads back the same through the store API and the CLI, the audit chain verifies
//! with the same records, and the waiting run is approved and finishes there. Refusals: a
//! target that is not empty, a held lease, an event being processed — each leaves the target
//! without a copied row.

use crate::common;

use chrono::{Duration, Utc};
use closeout::config::StoreConfig;
use closeout::intake::scim::store::{ScimStore, Selection, StoredUser};
use closeout::store::grants::GrantRecord;
use closeout::store::journal::Journal;
use closeout::store::lease::{Holder, Leases};
use closeout::store::pg::PgStore;
use closeout::store::queue::EventQueue;
use closeout::store::snapshot::SourceSnapshot;
use closeout_contract::Entitlement;
use closeout_testkit::MotoServer;
use common::{json, stderr, stdout, World, REPO};
use std::path::{Path, PathBuf};
use std::process::Output;

/// `store migrate` into `store` (its URL and password file).
fn migrate(world: &World, store: &StoreConfig) -> Output {
    world.closeout(&[
        "store",
        "migrate",
        "--to-url",
        store.url.as_deref().expect("url"),
        "--password-file",
        store
            .password_file
            .as_ref()
            .expect("password file")
            .to_str()
            .expect("utf-8"),
    ])
}

/// The audit verification report without the log's name (the file's or the table's).
fn verify_report(world: &World) -> String {
    let out = world.closeout(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let (_, report) = text.split_once(": ok").expect("a report");
    report.trim().to_string()
}

fn runs_json(world: &World) -> serde_json::Value {
    let out = world.closeout(&["runs", "list", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json(&out)
}

fn scim_users(store: &ScimStore) -> Vec<StoredUser> {
    store
        .read(|tx| tx.list(Selection::All, 1, 100))
        .expect("list SCIM users")
        .1
}

/// `closeout audit keygen` for an approver: the private key's path (the public key is `.pub`).
fn approver_key(world: &World, name: &str) -> PathBuf {
    let path = world.dir.path().join(format!("{name}.key"));
    let out = world.closeout(&["audit", "keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    path
}

fn approver(name: &str, key: &Path) -> String {
    format!(
        "\n[[approvals.approver]]\nname = \"{name}\"\npublic_key_file = \"{}.pub\"\n",
        key.display()
    )
}

#[tokio::test]
async fn a_sqlite_deployment_moves_to_postgres_and_carries_on() {
    // On SQLite whatever CLOSEOUT_TEST_STORE says: this is the deployment being migrated.
    let mut world = World::with_moto(MotoServer::start());
    world.seed_demo();
    let alice = approver_key(&world, "alice");

    // A run that closes.
    let closed = world.closeout(&["apply", "leaver", "--identity", "E1007", "--yes"]);
    assert_eq!(closed.status.code(), Some(0), "{}", stderr(&closed));

    // A run that waits for approval: the leaver's rotations gated.
    let leaver = std::fs::read_to_string(format!("{REPO}/playbooks/leaver.yaml")).unwrap();
    let gated = leaver.replacen(
        "        action: rotate\n",
        "        action: rotate\n        requires_approval: true\n",
        1,
    );
    assert_ne!(gated, leaver);
    let books = world.dir.path().join("books");
    std::fs::create_dir(&books).unwrap();
    for entry in std::fs::read_dir(format!("{REPO}/playbooks")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), books.join(entry.file_name())).unwrap();
    }
    std::fs::write(books.join("leaver.yaml"), gated).unwrap();
    let books = books.to_str().unwrap().to_string();
    world.write_config(&books, &approver("alice", &alice));
    let waiting = world.closeout(&["apply", "leaver", "--identity", "E1001", "--yes"]);
    assert_eq!(waiting.status.code(), Some(4), "{}", stderr(&waiting));

    // A queued event: the HR export's next version terminates Carol.
    let next_export = world.dir.path().join("hr-next.csv");
    let export = std::fs::read_to_string(format!("{REPO}/examples/demo/hr.csv")).unwrap();
    let carol_old = export
        .lines()
        .find(|l| l.starts_with("E1002,"))
        .expect("Carol")
        .to_string();
    std::fs::write(
        &next_export,
        export.replace(&carol_old, &carol_old.replace(",active,", ",terminated,")),
    )
    .unwrap();
    let submitted = world.closeout(&[
        "source",
        "diff",
        &format!("{REPO}/examples/demo/hr.csv"),
        next_export.to_str().unwrap(),
        "--submit",
    ]);
    assert_eq!(submitted.status.code(), Some(0), "{}", stderr(&submitted));

    // A time-bound grant, a SCIM User and the HR snapshot, through the store's API.
    let journal = Journal::open(&world.journal_path()).expect("journal");
    let now = Utc::now();
    let grant = GrantRecord {
        entitlement: Entitlement::new("aws", "group-membership", "oncall-responders"),
        rule: "oncall-week".into(),
        granted_at: now,
        expires_at: now + Duration::days(7),
        run_id: "run-grant".into(),
    };
    journal.record_grant("E1002", &grant).expect("grant");
    let scim = ScimStore::open(&world.journal_path()).expect("SCIM store");
    scim.write(|tx| {
        let id = tx.new_id("hassan.ali@example.com")?;
        let mut doc = serde_json::Map::new();
        doc.insert("userName".into(), "hassan.ali@example.com".into());
        doc.insert("externalId".into(), "E1006".into());
        tx.put(&StoredUser {
            id,
            version: 1,
            created: now,
            last_modified: now,
            doc,
        })
    })
    .expect("a SCIM user");
    let hr = PathBuf::from(format!("{REPO}/examples/demo/hr.csv"));
    SourceSnapshot::beside(&world.journal_path(), &hr)
        .write(b"id,status\nE1001,terminated\n")
        .expect("snapshot");

    // What the SQLite deployment holds.
    let runs_before = runs_json(&world);
    assert_eq!(
        runs_before.as_array().map(Vec::len),
        Some(2),
        "{runs_before}"
    );
    let waiting_run = runs_before
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "waiting-approval")
        .expect("the waiting run")["run"]
        .as_str()
        .unwrap()
        .to_string();
    let report_before = verify_report(&world);
    let events_before = world.queued_events();
    assert_eq!(events_before.len(), 1, "{events_before:?}");
    let grants_before = journal.grants().expect("grants");
    let observations_before = journal.observations().expect("observations");
    assert!(
        !observations_before.is_empty(),
        "the runs observed findings"
    );
    let actions_before = journal.actions(&waiting_run).expect("actions");
    assert!(!actions_before.is_empty());
    let users_before = scim_users(&scim);
    drop((journal, scim));

    // Migrate.
    let (store, _, _) = common::new_postgres_database(world.dir.path());
    let out = migrate(&world, &store);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let printed = stdout(&out);
    for line in [
        "runs             2 row(s)",
        "event_queue      1 row(s)",
        "grants           1 row(s)",
        "scim_users       1 row(s)",
        "source_snapshot",
        "left in place",
    ] {
        assert!(printed.contains(line), "{line:?} in\n{printed}");
    }
    assert!(
        world.audit_path().exists(),
        "the audit file is left in place"
    );

    // Switch the config to PostgreSQL.
    let sqlite_config = std::fs::read_to_string(world.config_path()).unwrap();
    world.postgres = Some(store.clone());
    world.write_config(&books, &approver("alice", &alice));
    assert_ne!(
        std::fs::read_to_string(world.config_path()).unwrap(),
        sqlite_config
    );

    // Everything reads back the same.
    assert_eq!(runs_json(&world), runs_before);
    assert_eq!(verify_report(&world), report_before);
    assert_eq!(world.queued_events(), events_before);
    let pg = PgStore::open(&store).expect("open PostgreSQL");
    let journal = Journal::open_postgres(&pg);
    assert_eq!(journal.grants().expect("grants"), grants_before);
    assert_eq!(
        journal.observations().expect("observations"),
        observations_before
    );
    assert_eq!(
        journal.actions(&waiting_run).expect("actions"),
        actions_before
    );
    assert_eq!(scim_users(&ScimStore::open_postgres(&pg)), users_before);
    assert_eq!(
        SourceSnapshot::postgres(&pg, &hr).read().expect("snapshot"),
        Some(b"id,status\nE1001,terminated\n".to_vec())
    );

    // New events continue the sequence.
    let queue = EventQueue::open_postgres(&pg, std::time::Duration::from_secs(60));
    let newer = world.closeout(&[
        "source",
        "diff",
        next_export.to_str().unwrap(),
        &format!("{REPO}/examples/demo/hr.csv"),
        "--submit",
    ]);
    assert_eq!(newer.status.code(), Some(0), "{}", stderr(&newer));
    let events = queue.list(100, None).expect("events");
    assert_eq!(events.len(), 2);
    assert!(events[0].seq > events_before[0].seq, "{events:?}");

    // A plain re-run on PostgreSQL finds the waiting run and still waits (no new run).
    let again = world.closeout(&["apply", "leaver", "--identity", "E1001", "--yes"]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert_eq!(runs_json(&world), runs_before);

    // The waiting run is approved on PostgreSQL and finishes: the same run, closed.
    let approved = world.closeout(&[
        "approve",
        &waiting_run,
        "--key",
        alice.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        approved.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&approved),
        stderr(&approved)
    );
    assert_eq!(json(&approved)["status"], "closed");
    let run = journal.run(&waiting_run).expect("run").expect("the run");
    assert_eq!(run.status.as_str(), "closed");
    let after = verify_report(&world);
    assert_ne!(
        after, report_before,
        "the approval appended to the migrated chain"
    );
}

#[tokio::test]
async fn migrate_refuses_a_store_in_use_and_a_target_that_is_not_empty() {
    let world = World::with_moto(MotoServer::start());
    let queue = EventQueue::open(&world.journal_path()).expect("queue");
    let (store, _, _) = common::new_postgres_database(world.dir.path());
    let pg = PgStore::open(&store).expect("open PostgreSQL");
    let empty = |what: &str| {
        let journal = Journal::open_postgres(&pg);
        assert!(journal.runs(10).expect("runs").is_empty(), "{what}");
        let queue = EventQueue::open_postgres(&pg, std::time::Duration::from_secs(60));
        assert!(queue.list(10, None).expect("events").is_empty(), "{what}");
    };
    // `store migrate` exits 2 saying `needle`, and the target is still empty.
    let refused = |needle: &str, what: &str| {
        let out = migrate(&world, &store);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
        empty(what);
    };

    // A held lease: a process is acting for an identity.
    let leases = Leases::new(&world.journal_path(), std::time::Duration::from_secs(300));
    let holder = Holder::this_process();
    leases.acquire("E1001", &holder).expect("lease");
    refused("lease on identity E1001 is held", "after the lease refusal");
    leases.release("E1001", &holder).expect("release");

    // The schedulers' leader lease: a `serve` is running.
    leases.lead("schedulers", &holder).expect("lead");
    refused(
        "the leader lease schedulers is held",
        "after the leader lease refusal",
    );
    leases.resign("schedulers", &holder).expect("resign");

    // A `serve` running on the store, idle (no lease, no event): refused while it runs, and a
    // second `serve` on the same SQLite store refuses to start, naming the first.
    let path = world.config_path();
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        format!("{text}\n[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n"),
    )
    .expect("config");
    let serving = common::start_serve(
        world.command(&["serve"]),
        &world.dir.path().join("serve.log"),
    );
    let pid = format!("process {}", serving.child.id());
    refused(
        &format!("`closeout serve` ({pid}) runs on it"),
        "after the running-serve refusal",
    );
    let second = world.closeout(&["serve"]);
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert!(
        stderr(&second).contains(&format!(
            "another `closeout serve` ({pid}) uses the SQLite store"
        )),
        "{}",
        stderr(&second)
    );
    drop(serving);
    std::fs::write(&path, text).expect("config");

    // An event being processed.
    // Every identity gone from the next export: leaver events, one of them claimed.
    let none = world.dir.path().join("none.csv");
    std::fs::write(
        &none,
        "id,email,name,kind,status,manager,department,role,location,employment_type,tags\n",
    )
    .unwrap();
    let events = world.closeout(&[
        "source",
        "diff",
        &format!("{REPO}/examples/demo/hr.csv"),
        none.to_str().unwrap(),
        "--submit",
    ]);
    assert_eq!(events.status.code(), Some(0), "{}", stderr(&events));
    let claimed = queue
        .claim_next(Utc::now() + Duration::days(3650))
        .expect("claim")
        .expect("an event to claim");
    refused(
        &format!("event {} (", claimed.seq),
        "after the processing refusal",
    );
    queue
        .release(claimed.seq, &claimed.token, "test done", Utc::now())
        .expect("release the claim");

    // An audit log that does not verify: refused after the tables were copied in the
    // transaction, which is rolled back — nothing is left half-copied.
    let audit_before = std::fs::read(world.audit_path()).ok();
    let mut broken = audit_before.clone().unwrap_or_default();
    broken.extend_from_slice(b"{\"seq\":999}\n");
    std::fs::create_dir_all(world.audit_path().parent().unwrap()).unwrap();
    std::fs::write(world.audit_path(), &broken).unwrap();
    let out = migrate(&world, &store);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("audit log"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was copied"),
        "{}",
        stderr(&out)
    );
    empty("after the audit refusal");
    match audit_before {
        Some(bytes) => std::fs::write(world.audit_path(), bytes).unwrap(),
        None => std::fs::remove_file(world.audit_path()).unwrap(),
    }

    // Now it copies; a second copy into the same database is refused.
    let out = migrate(&world, &store);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let copied = EventQueue::open_postgres(&pg, std::time::Duration::from_secs(60))
        .list(1000, None)
        .expect("events")
        .len();
    assert!(copied > 0);
    let again = migrate(&world, &store);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("is not empty (table runs")
            || stderr(&again).contains("is not empty (table event_queue"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        EventQueue::open_postgres(&pg, std::time::Duration::from_secs(60))
            .list(1000, None)
            .expect("events")
            .len(),
        copied,
        "nothing copied twice"
    );
}
