//! Issue 13, class a: a KV version 1 secret readable through the person's policy is a finding,
//! gets new values in place, and reads as rotated afterwards (from Closeout's rotation record).

use crate::api::{context_now, person, request, Api};
use closeout_contract::{Finding, Provider, Relation, State};
use serde_json::json;

const CANARY: &str = "canary-kv1-4b7e-never-print-me";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_v1_secrets_are_found_rotated_in_place_and_read_as_rotated() {
    let api = Api::namespace("kv-v1").await;
    api.mount_kv("legacy", 1).await;
    api.policy(
        "legacy-read",
        r#"path "legacy/app/*" { capabilities = ["read", "list"] }
           path "legacy/home/{{identity.entity.name}}/*" { capabilities = ["read"] }"#,
    )
    .await;
    for (path, data) in [
        ("legacy/app/db", json!({"password": CANARY, "user": "svc"})),
        ("legacy/app/cache", json!({"token": CANARY})),
        ("legacy/other/x", json!({"password": CANARY})),
        ("legacy/home/alice.smith/notes", json!({"token": CANARY})),
        ("legacy/home/bob/notes", json!({"token": CANARY})),
    ] {
        api.root("POST", path, Some(data)).await;
    }
    api.entity("alice.smith", &["legacy-read"]).await;
    let p = api.provider("kv-v1").await;
    let ctx = context_now(person("E100", "alice.smith@example.com")).await;

    let r = p.resolve(&ctx).await.unwrap();
    assert!(!serde_json::to_string(&r).unwrap().contains("canary"));
    assert!(r.gaps.is_empty(), "{:#?}", r.gaps);
    let kv: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == "kv-secret")
        .collect();
    let ids: Vec<&str> = kv.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "vault:kv-secret:legacy/app/cache",
            "vault:kv-secret:legacy/app/db",
            "vault:kv-secret:legacy/home/alice.smith/notes"
        ],
        "{kv:#?}"
    );
    // The templated rule is filled with her entity's name: her folder, not bob's.
    assert!(kv[2].paths[0]
        .render("alice")
        .ends_with("(path \"legacy/home/alice.smith/*\")"));
    let kv = &kv[..2];
    for f in kv {
        assert_eq!(f.attr("kv_version"), Some("1"));
        assert_eq!(f.relation, Relation::CanRead);
        assert_eq!(f.state, State::Active);
        assert_eq!(
            f.paths[0].render("alice"),
            format!(
                "alice -account-> entity alice.smith -attached-> policy legacy-read -can-read-> secret {} (path \"legacy/app/*\")",
                f.resource
            )
        );
        assert_eq!(p.live_state(f, &ctx).await.unwrap(), State::Active);
    }

    // A secret of two fields names no strategy (KV v1 has no metadata): refused, unchanged.
    let db_finding = kv
        .iter()
        .find(|f| f.resource == "legacy/app/db")
        .expect("legacy/app/db");
    let refused = p
        .execute(&request("run-0", db_finding, "rotate"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("needs a rotation strategy"),
        "{refused}"
    );
    assert_eq!(
        api.kv1("legacy/app/db").await,
        json!({"password": CANARY, "user": "svc"})
    );
    // The site's [[rotation.strategy]] rule names one (the orchestrator puts it on the finding).
    let kv: Vec<Finding> = kv
        .iter()
        .map(|f| {
            let mut f = (*f).clone();
            if f.resource == "legacy/app/db" {
                f.attributes
                    .insert("rotation".into(), "template:password".into());
            }
            f
        })
        .collect();
    let kv: Vec<&Finding> = kv.iter().collect();
    for f in &kv {
        let first = p.execute(&request("run-1", f, "rotate")).await.unwrap();
        assert!(
            !first.already_done && first.state == State::Rotated,
            "{first:?}"
        );
        let again = p.execute(&request("run-1", f, "rotate")).await.unwrap();
        assert!(again.already_done, "{again:?}");
        assert!(!format!("{first:?}{again:?}").contains("canary"));
    }
    // Read back: same keys, only the password new; the secret out of reach untouched.
    let db = api.kv1("legacy/app/db").await;
    let mut keys: Vec<&String> = db.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["password", "user"]);
    assert_eq!(db["password"].as_str().unwrap().len(), 40, "{db}");
    assert_eq!(db["user"], "svc", "{db}");
    assert!(!api
        .kv1("legacy/app/cache")
        .await
        .to_string()
        .contains(CANARY));
    assert_eq!(api.kv1("legacy/other/x").await, json!({"password": CANARY}));
    // The rotation record: where, when and which run, no value.
    let record = api
        .root(
            "GET",
            "secret/data/closeout/kv1-rotations/legacy/app/db",
            None,
        )
        .await;
    assert_eq!(record["data"]["data"]["secret"], "legacy/app/db");
    assert_eq!(record["data"]["data"]["run"], "run-1");
    assert!(!record
        .to_string()
        .contains(&db["password"].as_str().unwrap().to_string()));

    // Verification reads it as rotated: live state, and a fresh resolution.
    for f in &kv {
        assert_eq!(p.live_state(f, &ctx).await.unwrap(), State::Rotated);
    }
    let after = p.resolve(&ctx).await.unwrap();
    let states: Vec<(&str, State)> = after
        .findings
        .iter()
        .filter(|f| f.kind == "kv-secret")
        .map(|f| (f.resource.as_str(), f.state))
        .collect();
    assert_eq!(
        states,
        [
            ("legacy/app/cache", State::Rotated),
            ("legacy/app/db", State::Rotated),
            ("legacy/home/alice.smith/notes", State::Active)
        ]
    );
    // A v1 secret keeps no old versions: nothing to destroy once rotated, and a secret
    // Closeout did not rotate is refused.
    let out = p
        .execute(&request("run-1", kv[1], "destroy-old-versions"))
        .await
        .unwrap();
    assert!(out.already_done && out.state == State::Rotated, "{out:?}");
    let mut other = kv[1].clone();
    other.attributes.insert("key".into(), "other/x".into());
    let err = p
        .execute(&request("run-1", &other, "destroy-old-versions"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has not rotated"), "{err}");
    assert_eq!(api.kv1("legacy/other/x").await, json!({"password": CANARY}));
}
