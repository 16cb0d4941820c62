//! Issue 13, class d: a probe that authenticates. When Closeout rotates an AppRole secret-id it
//! published itself (an earlier rotation), the probe logs in with the old value, which must be
//! refused; the server's audit log shows the attempt. A secret-id Closeout never held is probed by
//! its accessor, and the probe says so. A live secret-id is never logged in with.

use crate::api::{context_now, person, request, Api};
use closeout_contract::{Finding, Provider, Resolution, State};
use closeout_testkit::OpenBaoServer;
use serde_json::{json, Value};

fn secret_id(r: &Resolution) -> Finding {
    let found: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.kind == "approle-secret-id")
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    found[0].clone()
}

/// The refused (error) AppRole logins the audit log shows in this test's namespace.
fn refused_logins() -> usize {
    let log = std::fs::read_to_string(OpenBaoServer::shared().audit_log()).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["type"] == "response"
                && e["request"]["path"] == "auth/approle/login"
                && e["request"]["namespace"]["path"] == "approle-probe/"
                && e["error"].as_str().is_some_and(|s| !s.is_empty())
        })
        .count()
}

/// The `(role_id, secret_id)` Closeout published for role `batch`.
async fn published(api: &Api) -> (String, String) {
    let v = api
        .root("GET", "secret/data/closeout/approle/batch", None)
        .await;
    let d = &v["data"]["data"];
    (
        d["role_id"].as_str().unwrap().to_string(),
        d["secret_id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_id_closeout_published_is_probed_by_logging_in() {
    let api = Api::namespace("approle-probe").await;
    api.root("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    api.root(
        "POST",
        "auth/approle/role/batch",
        Some(json!({"token_policies": ["default"]})),
    )
    .await;
    let role_id = api
        .root("GET", "auth/approle/role/batch/role-id", None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = api
        .root(
            "POST",
            "auth/approle/role/batch/secret-id",
            Some(json!({"metadata": json!({"owner": "E100"}).to_string()})),
        )
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let p = api.provider("approle-probe").await;
    let ctx = context_now(person("E100", "alice.smith@example.com")).await;

    // A live secret-id: alive by its accessor, and no login spent on it.
    let f1 = secret_id(&p.resolve(&ctx).await.unwrap());
    let probe = p.probe(&f1).await.unwrap().expect("a probe");
    assert!(!probe.dead, "{probe:?}");
    assert!(!probe.probe.contains("login"), "{probe:?}");

    // Rotate it (its metadata, owner included, is copied): the new one is published.
    let out = p.execute(&request("run-1", &f1, "rotate")).await.unwrap();
    assert!(!out.already_done && out.state == State::Deleted, "{out:?}");
    let second = published(&api).await;
    assert_eq!(second.0, role_id);
    assert_eq!(api.approle_login(&second).await, 200);
    assert_ne!(api.approle_login(&(role_id.clone(), first)).await, 200);
    // Closeout never held the first value: the probe checks the accessor and says so.
    let probe = p.probe(&f1).await.unwrap().expect("a probe");
    assert!(probe.dead, "{probe:?}");
    assert!(probe.detail.contains("never published"), "{probe:?}");

    // The published one is rotated in turn: its probe logs in with the old value, refused.
    let f2 = secret_id(&p.resolve(&ctx).await.unwrap());
    assert_ne!(f2.id, f1.id);
    let out = p.execute(&request("run-2", &f2, "rotate")).await.unwrap();
    assert!(!out.already_done, "{out:?}");
    let third = published(&api).await;
    assert_ne!(third.1, second.1);
    let logins_before = refused_logins();
    let probe = p.probe(&f2).await.unwrap().expect("a probe");
    assert!(probe.dead, "{probe:?}");
    assert!(
        probe
            .probe
            .contains("POST auth/approle/login with the old secret-id"),
        "{probe:?}"
    );
    assert!(probe.detail.contains("login was refused"), "{probe:?}");
    assert!(
        !format!("{probe:?}").contains(&second.1),
        "the value leaked"
    );
    assert_eq!(
        refused_logins(),
        logins_before + 1,
        "the audit log shows the probe's refused login"
    );
    // Read back: the old value is refused, the newest works.
    assert_ne!(api.approle_login(&second).await, 200);
    assert_eq!(api.approle_login(&third).await, 200);
}
