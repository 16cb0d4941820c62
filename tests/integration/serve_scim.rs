//! SCIM through the real `closeout serve`: one store for the SCIM Users, the event queue and the
//! journal, webhooks and SCIM together, as an IdP and the HR system would use them at once — on
//! the SQLite file and on PostgreSQL, where two replicas also change one User at once.
//!
//! Regression: the SCIM store held a write transaction on the store's file while the queue
//! submitted the event on another connection, so every lifecycle change answered 503 after the
//! busy timeout ("event queue: database is locked") and stalled webhook intake meanwhile.

use crate::common;

use common::serve::{api, post_event, signed};
use common::vault::VaultWorld;
use common::Service;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SCIM_TOKEN: &str = "test-scim-token";

/// Add the `[serve]` section to the world's config.
fn configure(world: &VaultWorld) {
    let path = world.config_path();
    let mut text = std::fs::read_to_string(&path).expect("config");
    text.push_str(
        "\n[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 2\nshutdown_grace_secs = 20\nauto_apply = [\"leaver\"]\n",
    );
    std::fs::write(&path, text).expect("write config");
}

fn start(world: &VaultWorld) -> Service {
    configure(world);
    spawn(world, "serve.log")
}

/// One `closeout serve` on the world's (already configured) config, logging to `log`.
fn spawn(world: &VaultWorld, log: &str) -> Service {
    let mut cmd = world.serve_command();
    cmd.env("CLOSEOUT_SCIM_TOKEN", SCIM_TOKEN);
    common::start_serve(cmd, &world.dir.path().join(log))
}

/// A SCIM request; (status, body, seconds it took).
async fn scim(base: &str, method: &str, path: &str, body: Value) -> (u16, Value, f64) {
    scim_if(base, method, path, body, None).await
}

/// A SCIM request with an `If-Match` header when `if_match` is set.
async fn scim_if(
    base: &str,
    method: &str,
    path: &str,
    body: Value,
    if_match: Option<&str>,
) -> (u16, Value, f64) {
    let started = Instant::now();
    let mut req = reqwest::Client::new()
        .request(
            method.parse().expect("method"),
            format!("{base}/scim/v2{path}"),
        )
        .bearer_auth(SCIM_TOKEN);
    if let Some(etag) = if_match {
        req = req.header("if-match", etag);
    }
    if !body.is_null() {
        req = req
            .header("content-type", "application/scim+json")
            .body(body.to_string());
    }
    let resp = req.send().await.expect("SCIM request");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed().as_secs_f64())
}

/// The runs of `identity` as the read API lists them: (run id, trigger, status).
async fn runs_of(base: &str, identity: &str) -> Vec<(String, String, String)> {
    let (status, body) = api(base, "GET", "/v1/runs?limit=1000", None).await;
    assert_eq!(status, 200, "{body}");
    body["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["identity"] == identity)
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("run"), s("trigger"), s("status"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_through_serve_keeps_changes_and_runs_their_events() {
    keeps_changes_and_runs_their_events(VaultWorld::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_scim_through_serve_keeps_changes_and_runs_their_events() {
    keeps_changes_and_runs_their_events(VaultWorld::new().on_postgres()).await;
}

async fn keeps_changes_and_runs_their_events(world: VaultWorld) {
    let _ = world.seed_demo();
    let service = start(&world);
    let base = &service.base;

    // A new active User is a joiner event (not auto-applied here): kept, answered 201 at once.
    let (status, created, secs) = scim(
        base,
        "POST",
        "/Users",
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "dana@example.com",
            "externalId": "E1001",
            "active": true
        }),
    )
    .await;
    assert_eq!(status, 201, "POST /Users: {created}");
    assert!(secs < 5.0, "POST /Users took {secs:.1} s (a lock wait?)");
    let id = created["id"]
        .as_str()
        .expect("the new User's id")
        .to_string();

    // A webhook at the same time is not stalled by SCIM.
    let now = chrono::Utc::now().timestamp();
    let incident = r#"{"type":"incident","identity":{"id":"E1002"}}"#;
    let (status, body) =
        post_event(base, &signed("msg_scim_incident", incident, now), incident).await;
    assert_eq!(status, 202, "{body}");

    // Deactivation is a leaver event, auto-applied: it becomes a run that closes.
    let (status, patched, secs) = scim(
        base,
        "PATCH",
        &format!("/Users/{id}"),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}]
        }),
    )
    .await;
    assert_eq!(status, 200, "PATCH active=false: {patched}");
    assert!(secs < 5.0, "PATCH took {secs:.1} s (a lock wait?)");
    assert_eq!(patched["active"], false);

    // The change was kept: the User reads back inactive.
    let (status, read, _) = scim(base, "GET", &format!("/Users/{id}"), Value::Null).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["active"], false, "{read}");

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = runs_of(base, "E1001").await;
        if runs.iter().any(|(_, t, s)| t == "leaver" && s == "closed") {
            assert_eq!(
                runs.iter().filter(|(_, t, _)| t == "leaver").count(),
                1,
                "one SCIM deactivation, one leaver run: {runs:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no closed leaver run for the SCIM deactivation within 120 s: {runs:?}\n{}",
            std::fs::read_to_string(world.dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Two replicas on one PostgreSQL database; for each of several Users, a deactivation at one
/// and a title change at the other, sent at once. Without `If-Match` both are kept whatever their
/// order; with `If-Match` naming the same version one is kept and the other answered 412. The
/// queue holds exactly the events of the kept changes, in their order: read back from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_two_replicas_change_one_user_at_once_and_queue_exactly_the_kept_events() {
    let world = VaultWorld::new().on_postgres();
    configure(&world);
    let (a, b) = (spawn(&world, "serve-a.log"), spawn(&world, "serve-b.log"));
    let store = world.postgres.clone().expect("the PostgreSQL store");
    const USERS: usize = 6;
    // (SCIM id, the events its changes must have queued: (kind, version))
    let mut expected: Vec<(String, Vec<(&str, i64)>)> = Vec::new();
    // Which change won, per User: what the test exercised (printed).
    let mut orders = Vec::new();
    for i in 0..USERS {
        let (status, created, _) = scim(
            &a.base,
            "POST",
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("user{i}@example.com"),
                "externalId": format!("S{i}"),
                "title": "Engineer",
                "active": true
            }),
        )
        .await;
        assert_eq!(status, 201, "POST /Users: {created}");
        let id = created["id"].as_str().expect("id").to_string();
        let path = format!("/Users/{id}");
        // Every other User with If-Match on both requests, naming the version both read.
        let if_match = (i % 2 == 1).then_some("W/\"1\"");
        let off = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}]
        });
        let title = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "Lead"}]
        });
        let ((off_status, off_body, _), (title_status, title_body, _)) = tokio::join!(
            scim_if(&a.base, "PATCH", &path, off, if_match),
            scim_if(&b.base, "PATCH", &path, title, if_match),
        );
        let (_, user, _) = scim(&b.base, "GET", &path, Value::Null).await;
        let version = |body: &Value| body["meta"]["version"].as_str().map(str::to_string);
        let mut events = vec![("joiner", 1)];
        if if_match.is_none() {
            // Both kept, whichever came first.
            assert_eq!(
                (off_status, title_status),
                (200, 200),
                "{off_body} {title_body}"
            );
            assert_eq!(
                (&user["active"], &user["title"]),
                (&json!(false), &json!("Lead"))
            );
            assert_eq!(version(&user).as_deref(), Some("W/\"3\""), "{user}");
            if version(&off_body).as_deref() == Some("W/\"2\"") {
                // Deactivated first: the later title change of an inactive User is no event.
                events.push(("leaver", 2));
                orders.push("deactivate, then title");
            } else {
                assert_eq!(
                    version(&title_body).as_deref(),
                    Some("W/\"2\""),
                    "{title_body}"
                );
                events.extend([("mover", 2), ("leaver", 3)]);
                orders.push("title, then deactivate");
            }
        } else {
            let mut statuses = [off_status, title_status];
            statuses.sort_unstable();
            assert_eq!(statuses, [200, 412], "{off_body} {title_body}");
            assert_eq!(version(&user).as_deref(), Some("W/\"2\""), "{user}");
            if off_status == 200 {
                assert_eq!(
                    (&user["active"], &user["title"]),
                    (&json!(false), &json!("Engineer"))
                );
                events.push(("leaver", 2));
                orders.push("deactivate kept, title 412");
            } else {
                assert_eq!(
                    (&user["active"], &user["title"]),
                    (&json!(true), &json!("Lead"))
                );
                events.push(("mover", 2));
                orders.push("title kept, deactivate 412");
            }
        }
        expected.push((id, events));
    }

    println!("orders: {orders:?}");
    // The queue, read back from the store: exactly those events, in version order per User.
    let queued = tokio::task::spawn_blocking(move || {
        closeout::store::queue::EventQueue::open_config(&store)
            .expect("open the queue")
            .list(10_000, None)
            .expect("list the queue")
    })
    .await
    .expect("read the queue");
    for (i, (id, events)) in expected.iter().enumerate() {
        let prefix = format!("scim:User:{id}:v");
        let mut found: Vec<(i64, String, String)> = queued
            .iter()
            .filter_map(|q| {
                let version = q.event.external_id.strip_prefix(&prefix)?.parse().ok()?;
                Some((
                    version,
                    q.event.kind.as_str().to_string(),
                    q.event.identity.clone(),
                ))
            })
            .collect();
        found.sort();
        let want: Vec<(i64, String, String)> = events
            .iter()
            .map(|(kind, v)| (*v, kind.to_string(), format!("S{i}")))
            .collect();
        assert_eq!(found, want, "the queued events of User {i}");
    }
    let scim_events = queued
        .iter()
        .filter(|q| q.event.external_id.starts_with("scim:"))
        .count();
    assert_eq!(
        scim_events,
        expected.iter().map(|(_, e)| e.len()).sum::<usize>(),
        "no other SCIM event was queued"
    );
    drop((a, b));
}
