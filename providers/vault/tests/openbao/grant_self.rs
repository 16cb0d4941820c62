//! Issue 13, class b: a person whose policies let her grant herself any policy (rewrite a policy
//! she holds, write identity groups or entities, auth roles, mint tokens with any policy or from
//! a token role carrying policies she lacks) exposes the whole Vault: one exposure, and every KV
//! secret (v1 and v2) a `can-grant-self` finding naming the policy and the path pattern, which
//! the leaver then rotates. A colleague who only reads is not exposed.

use crate::api::{context_now, person, request, Api};
use closeout_contract::{Provider, Relation, Resolution, State};
use serde_json::json;

const CANARY: &str = "canary-grant-self-9c2d";

/// Every KV secret the namespace holds (its data paths).
const SECRETS: [&str; 3] = [
    "legacy/ops/db",
    "secret/data/finance/ledger",
    "secret/data/team/app",
];

fn kv_findings(r: &Resolution) -> Vec<(&str, Relation, State)> {
    r.findings
        .iter()
        .filter(|f| f.kind == "kv-secret")
        .map(|f| (f.resource.as_str(), f.relation, f.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_to_grant_oneself_a_policy_exposes_every_secret() {
    let api = Api::namespace("grant-self").await;
    api.mount_kv("legacy", 1).await;
    api.root("POST", "legacy/ops/db", Some(json!({"password": CANARY})))
        .await;
    for key in ["finance/ledger", "team/app"] {
        api.root(
            "POST",
            &format!("secret/data/{key}"),
            Some(json!({"data": {"password": CANARY, "user": "svc"}})),
        )
        .await;
        // A secret of two fields is rotated only by a named strategy: its password.
        api.root(
            "POST",
            &format!("secret/metadata/{key}"),
            Some(json!({"custom_metadata": {"closeout:rotation": "template:password"}})),
        )
        .await;
    }
    api.root(
        "POST",
        "auth/token/roles/ops",
        Some(json!({"allowed_policies": ["finance-read"], "orphan": true})),
    )
    .await;
    let policies = [
        (
            "team-read",
            r#"path "secret/data/team/*" { capabilities = ["read"] }"#,
        ),
        (
            "finance-read",
            r#"path "secret/data/finance/*" { capabilities = ["read"] }"#,
        ),
        (
            "policy-admin",
            r#"path "sys/policies/acl/*" { capabilities = ["create", "read", "update", "list"] }"#,
        ),
        (
            "group-admin",
            r#"path "identity/group/id/*" { capabilities = ["read", "update"] }"#,
        ),
        (
            "entity-admin",
            r#"path "identity/entity-alias" { capabilities = ["create", "update"] }"#,
        ),
        (
            "role-admin",
            r#"path "auth/approle/role/*" { capabilities = ["create", "update", "read"] }"#,
        ),
        (
            "token-sudo",
            r#"path "auth/token/create" { capabilities = ["update", "sudo"] }"#,
        ),
        (
            "token-role-user",
            r#"path "auth/token/create/ops" { capabilities = ["update"] }"#,
        ),
    ];
    for (name, text) in policies {
        api.policy(name, text).await;
    }
    // (person, entity policy, what the exposure must say; None: no exposure)
    let people = [
        (
            "alice.smith",
            "policy-admin",
            Some("rewrite policy policy-admin"),
        ),
        ("carol", "group-admin", Some("write identity groups")),
        ("dave", "entity-admin", Some("write identity entities")),
        ("erin", "role-admin", Some("write auth method roles")),
        ("frank", "token-sudo", Some("create tokens with any policy")),
        (
            "grace",
            "token-role-user",
            Some("token role ops, which allows policies finance-read"),
        ),
        ("bob", "team-read", None),
    ];
    for (name, policy, _) in &people {
        api.entity(name, &[policy]).await;
    }
    let p = api.provider("grant-self").await;

    let mut alice = None;
    for (name, policy, what) in people {
        let ctx = context_now(person(name, &format!("{name}@example.com"))).await;
        let r = p.resolve(&ctx).await.unwrap();
        assert!(!serde_json::to_string(&r).unwrap().contains("canary"));
        assert!(r.gaps.is_empty(), "{name}: {:#?}", r.gaps);
        let Some(what) = what else {
            // Reading one secret is no exposure, and reaches only that secret.
            assert!(r.exposures.is_empty(), "{name}: {:#?}", r.exposures);
            assert_eq!(
                kv_findings(&r),
                [("secret/data/team/app", Relation::CanRead, State::Active)]
            );
            continue;
        };
        assert_eq!(r.exposures.len(), 1, "{name}: {:#?}", r.exposures);
        let e = &r.exposures[0];
        assert_eq!(e.provider, "vault");
        assert!(e.scope.starts_with("vault http://127.0.0.1:"), "{e:?}");
        assert!(e.scope.ends_with("namespace grant-self"), "{e:?}");
        assert!(e.what.contains(what), "{name}: {}", e.what);
        assert!(!e.paths.is_empty());
        let expected: Vec<(&str, Relation, State)> = SECRETS
            .iter()
            .map(|s| (*s, Relation::CanGrantSelf, State::Active))
            .collect();
        assert_eq!(kv_findings(&r), expected, "{name}");
        for f in r.findings.iter().filter(|f| f.kind == "kv-secret") {
            let path = f.paths[0].render(name);
            assert!(
                path.starts_with(&format!(
                    "{name} -account-> entity {name} -attached-> policy {policy} -can-grant-self-> secret {} (policy {policy} can ",
                    f.resource
                )),
                "{path}"
            );
        }
        if name == "alice.smith" {
            // The path names the pattern that gives the write.
            for f in r.findings.iter().filter(|f| f.kind == "kv-secret") {
                let path = f.paths[0].render(name);
                assert!(path.contains("(path \"sys/policies/acl/*\")"), "{path}");
            }
            alice = Some((ctx, r));
        }
    }

    // The leaver rotates what alice could have granted herself; read back from the server.
    let (ctx, r) = alice.expect("alice resolved");
    for f in r.findings.iter().filter(|f| f.kind == "kv-secret") {
        let out = p.execute(&request("run-gs", f, "rotate")).await.unwrap();
        assert!(!out.already_done && out.state == State::Rotated, "{out:?}");
    }
    for key in ["finance/ledger", "team/app"] {
        let (version, data) = api.kv(key).await;
        assert_eq!(version, 2, "{key}");
        assert!(!data.to_string().contains(CANARY), "{key} kept its value");
        assert_eq!(data["user"], "svc", "{key}: only the password changes");
    }
    assert!(!api.kv1("legacy/ops/db").await.to_string().contains(CANARY));
    // Verified from live state: every one rotated; the v1 rotation record is no secret.
    let after = p.resolve(&ctx).await.unwrap();
    let expected: Vec<(&str, Relation, State)> = SECRETS
        .iter()
        .map(|s| (*s, Relation::CanGrantSelf, State::Rotated))
        .collect();
    assert_eq!(kv_findings(&after), expected);
}
