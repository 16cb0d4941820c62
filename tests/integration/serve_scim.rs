//! SCIM through the real `closeout serve`: one store for the SCIM Users, the event queue and the
//! journal, webhooks and SCIM together, as an IdP and the HR system would use them at once.
//!
//! Regression: the SCIM store held a write transaction on the store's file while the queue
//! submitted the event on another connection, so every lifecycle change answered 503 after the
//! busy timeout ("event queue: database is locked") and stalled webhook intake meanwhile.

use crate::common;

use common::serve::{api, post_event, signed, API_TOKEN, WEBHOOK_SECRET};
use common::vault::VaultWorld;
use common::Service;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const SCIM_TOKEN: &str = "test-scim-token";

fn start(world: &VaultWorld) -> Service {
    let path = world.config_path();
    let mut text = std::fs::read_to_string(&path).expect("config");
    text.push_str(
        "\n[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 2\nshutdown_grace_secs = 20\nauto_apply = [\"leaver\"]\n",
    );
    std::fs::write(&path, text).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_closeout"));
    cmd.current_dir(world.dir.path())
        .arg("--config")
        .arg(world.config_path())
        .arg("serve")
        .env_remove("VAULT_TOKEN")
        .env_remove("VAULT_ADDR")
        .env("CLOSEOUT_WEBHOOK_SECRETS", WEBHOOK_SECRET)
        .env("CLOSEOUT_API_TOKEN", API_TOKEN)
        .env("CLOSEOUT_SCIM_TOKEN", SCIM_TOKEN)
        .env_remove("RUST_LOG");
    common::start_serve(cmd, &world.dir.path().join("serve.log"))
}

/// A SCIM request; (status, body, seconds it took).
async fn scim(base: &str, method: &str, path: &str, body: Value) -> (u16, Value, f64) {
    let started = Instant::now();
    let mut req = reqwest::Client::new()
        .request(
            method.parse().expect("method"),
            format!("{base}/scim/v2{path}"),
        )
        .bearer_auth(SCIM_TOKEN);
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
    let world = VaultWorld::new();
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
