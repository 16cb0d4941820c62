//! The leaver's whole close-out in the root namespace (the audit log), and how errors are
//! classified (in a namespace of its own).

use crate::api::Api;
use closeout_contract::{
    ActionParams, ActionRequest, Finding, Identity, IdentityKind, IdentityStatus, Provider,
    Resolution, ResolveContext, State,
};
use closeout_testkit::OpenBaoServer;
use closeout_vault::{VaultConfig, VaultProvider};
use serde_json::{json, Value};

const CANARY: &str = "canary-7f3e9d-never-print-me";
const ALICE_PASSWORD: &str = "canary-7f3e9d-alice-password";

fn alice() -> Identity {
    Identity {
        id: "E100".into(),
        email: "alice.smith@example.com".into(),
        name: "Alice Smith".into(),
        kind: IdentityKind::Human,
        status: IdentityStatus::Terminated,
        manager: Some("E900".into()),
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: Default::default(),
    }
}

struct Seeded {
    lease: String,
    /// (mount, serial): alice's two certificates, then bob's.
    certs: Vec<(String, String)>,
    /// (role, role_id, secret_id) of alice's two secret-ids and bob's.
    alice_batch: (String, String),
    alice_ci: (String, String),
    bob_ci: (String, String),
    nightly: (String, String),
    alice_entity: String,
    devs_group: String,
    bob_entity: String,
    alice_token: String,
    alice_child: String,
    alice_orphan: String,
    orphan_child: String,
    audit_lease: String,
    owned_token: String,
    bob_token: String,
}

async fn seed(api: &Api) -> Seeded {
    api.root(
        "POST",
        "sys/auth/userpass",
        Some(json!({"type": "userpass"})),
    )
    .await;
    let auth = api.root("GET", "sys/auth", None).await;
    let up = auth["data"]["userpass/"]["accessor"]
        .as_str()
        .unwrap()
        .to_string();
    api.root(
        "POST",
        "sys/policies/acl/team-read",
        Some(json!({"policy": "path \"secret/data/team/*\" { capabilities = [\"read\"] }\npath \"secret/data/team/private\" { capabilities = [\"deny\"] }\n"})),
    )
    .await;
    api.root(
        "POST",
        "sys/policies/acl/alice-own",
        Some(json!({"policy": "path \"secret/data/alice/+\" { capabilities = [\"read\"] }\npath \"auth/token/create\" { capabilities = [\"update\"] }\npath \"auth/token/create-orphan\" { capabilities = [\"update\"] }\npath \"pki2/issue/leased\" { capabilities = [\"update\"] }\n"})),
    )
    .await;
    let mk_entity = |name: &str, policies: Value, metadata: Value| {
        let body = json!({"name": name, "policies": policies, "metadata": metadata});
        async move {
            api.root("POST", "identity/entity", Some(body)).await["data"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let alice_entity = mk_entity("alice.smith", json!(["alice-own"]), json!({})).await;
    let bob_entity = mk_entity("bob", json!([]), json!({})).await;
    let svc = mk_entity("svc-batch", json!([]), json!({"owner": "E100"})).await;
    // Alice's login token carries alice-own itself (not only through her entity), so the
    // orphan she creates may carry it too (a child's policies are a subset of its parent's).
    for (name, entity, pw, policies) in [
        (
            "alice.smith",
            &alice_entity,
            ALICE_PASSWORD,
            json!(["alice-own"]),
        ),
        ("bob", &bob_entity, "bob-pw", json!([])),
    ] {
        api.root(
            "POST",
            "identity/entity-alias",
            Some(json!({"name": name, "canonical_id": entity, "mount_accessor": up})),
        )
        .await;
        api.root(
            "POST",
            &format!("auth/userpass/users/{name}"),
            Some(json!({"password": pw, "token_policies": policies})),
        )
        .await;
    }
    let devs = api
        .root(
            "POST",
            "identity/group",
            Some(json!({"name": "devs", "member_entity_ids": [alice_entity, bob_entity]})),
        )
        .await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.root(
        "POST",
        "identity/group",
        Some(json!({"name": "eng", "policies": ["team-read"], "member_group_ids": [devs]})),
    )
    .await;
    // Tokens: alice's login, a child of it, one owned through metadata, and bob's login.
    let (s, v) = api.login("alice.smith", ALICE_PASSWORD).await;
    assert_eq!(s, 200, "{v}");
    let alice_token = v["auth"]["client_token"].as_str().unwrap().to_string();
    let (s, v) = api
        .call(
            "POST",
            "auth/token/create",
            &alice_token,
            Some(json!({"display_name": "child"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let alice_child = v["auth"]["client_token"].as_str().unwrap().to_string();
    // An orphan alice's token created (no entity: only the audit log ties it to her), and a
    // child of that orphan. `create-orphan` needs no sudo: sudo on token creation would let her
    // mint tokens with any policy (a grant-self, tested in grant_self.rs).
    let (s, v) = api
        .call(
            "POST",
            "auth/token/create-orphan",
            &alice_token,
            Some(json!({"display_name": "orphan", "policies": ["default", "alice-own"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["auth"]["orphan"], json!(true));
    let alice_orphan = v["auth"]["client_token"].as_str().unwrap().to_string();
    let (s, v) = api
        .call(
            "POST",
            "auth/token/create",
            &alice_orphan,
            Some(json!({"display_name": "orphan-child"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let orphan_child = v["auth"]["client_token"].as_str().unwrap().to_string();
    let v = api
        .root(
            "POST",
            "auth/token/create",
            Some(json!({"meta": {"owner": "alice.smith@example.com"}, "policies": ["default", "alice-own"]})),
        )
        .await;
    let owned_token = v["auth"]["client_token"].as_str().unwrap().to_string();
    let (s, v) = api.login("bob", "bob-pw").await;
    assert_eq!(s, 200, "{v}");
    let bob_token = v["auth"]["client_token"].as_str().unwrap().to_string();
    // KV v2 (the dev server mounts secret/ as KV v2).
    for (key, data) in [
        ("team/app", json!({"password": CANARY, "user": "svc"})),
        ("team/private", json!({"password": CANARY})),
        ("alice/notes", json!({"token": CANARY})),
        ("owned/db", json!({"password": CANARY, "host": "db1"})),
        ("other/x", json!({"password": CANARY})),
    ] {
        api.root(
            "POST",
            &format!("secret/data/{key}"),
            Some(json!({"data": data})),
        )
        .await;
    }
    api.root(
        "POST",
        "secret/metadata/team/app",
        Some(json!({"custom_metadata": {"closeout:rotation": "template:password"}})),
    )
    .await;
    api.root(
        "POST",
        "secret/metadata/owned/db",
        // Two fields: only the one the strategy names is rotated (docs/rotation.md).
        Some(json!({"custom_metadata": {
            "owner": "alice.smith@example.com",
            "closeout:rotation": "template:password"
        }})),
    )
    .await;
    // AppRole: alice owns a secret-id of `batch` (rotated) and of `ci` (destroyed); bob one of `ci`.
    api.root("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    let mut creds = Vec::new();
    for (role, owner) in [
        ("batch", "E100"),
        ("ci", "alice.smith@example.com"),
        ("ci", "bob"),
    ] {
        api.root(
            "POST",
            &format!("auth/approle/role/{role}"),
            Some(json!({"token_policies": ["default"]})),
        )
        .await;
        let role_id = api
            .root("GET", &format!("auth/approle/role/{role}/role-id"), None)
            .await["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let meta = json!({"owner": owner}).to_string();
        let v = api
            .root(
                "POST",
                &format!("auth/approle/role/{role}/secret-id"),
                Some(json!({"metadata": meta})),
            )
            .await;
        creds.push((
            role_id,
            v["data"]["secret_id"].as_str().unwrap().to_string(),
        ));
    }
    // An NHI alice owns (svc-batch) logs in through AppRole `nightly`: its alias is the role-id.
    // The secret-id carries no owner record; it is alice's through the NHI.
    api.root(
        "POST",
        "auth/approle/role/nightly",
        Some(json!({"token_policies": ["default"]})),
    )
    .await;
    let nightly_role_id = api
        .root("GET", "auth/approle/role/nightly/role-id", None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let approle_accessor = api.root("GET", "sys/auth", None).await["data"]["approle/"]["accessor"]
        .as_str()
        .unwrap()
        .to_string();
    api.root(
        "POST",
        "identity/entity-alias",
        Some(json!({"name": nightly_role_id, "canonical_id": svc, "mount_accessor": approle_accessor})),
    )
    .await;
    let v = api
        .root(
            "POST",
            "auth/approle/role/nightly/secret-id",
            Some(json!({})),
        )
        .await;
    let nightly = (
        nightly_role_id,
        v["data"]["secret_id"].as_str().unwrap().to_string(),
    );
    // PKI in two mounts: alice's certificate by CN in pki/, by CN=email in pki2/, bob's in pki/.
    let mut certs = Vec::new();
    for (mount, cn) in [
        ("pki", "alice.smith"),
        ("pki2", "alice.smith@example.com"),
        ("pki", "bob"),
    ] {
        if api
            .call("GET", &format!("sys/mounts/{mount}"), "root", None)
            .await
            .0
            != 200
        {
            api.root(
                "POST",
                &format!("sys/mounts/{mount}"),
                Some(json!({"type": "pki", "config": {"max_lease_ttl": "87600h"}})),
            )
            .await;
            api.root(
                "POST",
                &format!("{mount}/root/generate/internal"),
                Some(json!({"common_name": format!("{mount} CA"), "ttl": "87600h"})),
            )
            .await;
            api.root(
                "POST",
                &format!("{mount}/roles/people"),
                Some(json!({"allow_any_name": true, "enforce_hostnames": false, "ttl": "24h"})),
            )
            .await;
        }
        let v = api
            .root(
                "POST",
                &format!("{mount}/issue/people"),
                Some(json!({"common_name": cn})),
            )
            .await;
        certs.push((
            mount.to_string(),
            v["data"]["serial_number"].as_str().unwrap().to_string(),
        ));
    }
    // A lease under alice's configured prefix pki/issue/{local}/ (PKI roles can generate leases).
    api.root("POST", "pki/roles/alice.smith", Some(json!({"allow_any_name": true, "enforce_hostnames": false, "ttl": "24h", "generate_lease": true}))).await;
    let v = api
        .root(
            "POST",
            "pki/issue/alice.smith",
            Some(json!({"common_name": "lease-holder"})),
        )
        .await;
    let lease = v["lease_id"].as_str().unwrap().to_string();
    assert!(lease.starts_with("pki/issue/alice.smith/"), "{lease}");
    // A lease alice's own token obtained: only the audit log says it is hers.
    api.root("POST", "pki2/roles/leased", Some(json!({"allow_any_name": true, "enforce_hostnames": false, "ttl": "24h", "generate_lease": true}))).await;
    let (st, v) = api
        .call(
            "POST",
            "pki2/issue/leased",
            &alice_token,
            Some(json!({"common_name": "build-agent"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let audit_lease = v["lease_id"].as_str().unwrap().to_string();
    Seeded {
        lease,
        certs,
        alice_batch: creds[0].clone(),
        alice_ci: creds[1].clone(),
        bob_ci: creds[2].clone(),
        nightly,
        alice_entity,
        devs_group: devs,
        bob_entity,
        alice_token,
        alice_child,
        alice_orphan,
        orphan_child,
        audit_lease,
        owned_token,
        bob_token,
    }
}

fn of_kind<'a>(r: &'a Resolution, kind: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.kind == kind).collect()
}

fn verb_for(f: &Finding) -> Option<&'static str> {
    Some(match f.kind.as_str() {
        "approle-secret-id" if matches!(f.attr("role"), Some("batch" | "nightly")) => "rotate",
        "approle-secret-id" => "revoke",
        "entity" => "disable",
        "group-membership" => "remove",
        "token" => "revoke",
        "password-login" => "remove",
        "kv-secret" => "rotate",
        "nhi-entity" => "reassign-owner",
        "pki-certificate" => "revoke",
        "lease" => "revoke",
        _ => return None,
    })
}

fn request(f: &Finding, verb: &str) -> ActionRequest {
    ActionRequest {
        idempotency_key: format!("run-1/{}/{verb}", f.id),
        verb: verb.into(),
        finding: f.clone(),
        params: ActionParams {
            sessions_issued_before: None,
            new_owner: Some("E900".into()),
            run_id: "run-1".into(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_closes_out_everything_and_leaves_colleagues_alone() {
    let api = Api::root_namespace();
    let s = seed(&api).await;
    let provider = api
        .provider_with(
            "leaver",
            "root",
            VaultConfig {
                lease_prefixes: vec!["pki/issue/{local}/".into()],
                audit_log: Some(OpenBaoServer::shared().audit_log()),
                ..Default::default()
            },
        )
        .await;
    provider.health(&[]).await.unwrap();

    // Logging in with alice's secret-ids mints tokens carrying the secret-id metadata
    // (owner = alice): those are hers too.
    for c in [&s.alice_batch, &s.alice_ci, &s.bob_ci] {
        assert_eq!(api.approle_login(c).await, 200);
    }
    // The cutoff: the instant the person lost access, after the seeding.
    let before = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let ctx = ResolveContext {
        identity: alice(),
        cutoff: Some(before),
    };
    let r = provider.resolve(&ctx).await.unwrap();
    let dump = serde_json::to_string(&r).unwrap();
    assert!(
        !dump.contains("canary"),
        "a secret value leaked into the resolution"
    );
    assert_eq!(r.accounts.len(), 1, "{:#?}", r.accounts);
    // Nothing here is out of Closeout's sight, and nobody can grant herself a policy. The
    // other tests' namespaces are children of this root namespace: Closeout does not follow
    // them, so each is a gap (which of them exist yet depends on the order tests run in).
    assert!(
        r.gaps.iter().all(|g| g.kind == "namespace"),
        "{:#?}",
        r.gaps
    );
    assert!(r.exposures.is_empty(), "{:#?}", r.exposures);
    assert_eq!(r.accounts[0].resource, s.alice_entity);
    assert_eq!(of_kind(&r, "entity").len(), 1);
    assert_eq!(of_kind(&r, "entity-alias").len(), 1);
    let groups = of_kind(&r, "group-membership");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].attr("group"), Some("devs"));
    let inherited = of_kind(&r, "inherited-group");
    assert_eq!(inherited.len(), 1);
    assert_eq!(
        inherited[0].paths[0].render("alice"),
        "alice -account-> entity alice.smith -member-of-> group devs -member-of-> group eng"
    );
    let mut policies: Vec<_> = of_kind(&r, "policy")
        .iter()
        .filter_map(|f| f.attr("policy"))
        .collect();
    policies.sort();
    policies.dedup();
    assert_eq!(policies, vec!["alice-own", "team-read"]);
    let tokens = of_kind(&r, "token");
    assert_eq!(tokens.len(), 7, "{tokens:#?}");
    let from_audit: Vec<_> = tokens
        .iter()
        .filter(|t| t.attr("found_by") == Some("audit-log"))
        .map(|t| t.attr("display_name").unwrap_or_default())
        .collect();
    assert_eq!(from_audit.len(), 2, "{tokens:#?}");
    assert!(from_audit.contains(&"token-orphan") && from_audit.contains(&"token-orphan-child"));
    assert_eq!(
        tokens
            .iter()
            .filter(|t| t.attr("created_by_path") == Some("auth/approle/login"))
            .count(),
        2
    );
    let logins = of_kind(&r, "password-login");
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].resource, "auth/userpass/users/alice.smith");
    let mut kv: Vec<_> = of_kind(&r, "kv-secret")
        .iter()
        .map(|f| f.resource.as_str())
        .collect();
    kv.sort();
    assert_eq!(
        kv,
        vec![
            "secret/data/alice/notes",
            "secret/data/owned/db",
            "secret/data/team/app"
        ]
    );
    let team = r
        .findings
        .iter()
        .find(|f| f.resource == "secret/data/team/app")
        .unwrap();
    assert!(
        team.paths[0].render("alice").contains(
            "group eng -attached-> policy team-read -can-read-> secret secret/data/team/app"
        ),
        "{:?}",
        team.paths
    );
    assert_eq!(of_kind(&r, "nhi-entity").len(), 1);
    let secret_ids = of_kind(&r, "approle-secret-id");
    assert_eq!(secret_ids.len(), 3, "{secret_ids:#?}");
    let through_nhi = secret_ids
        .iter()
        .find(|f| f.attr("role") == Some("nightly"))
        .expect("the NHI's secret-id");
    assert_eq!(
        through_nhi.holder,
        closeout_contract::Holder::Nhi("svc-batch".into())
    );
    assert_eq!(through_nhi.attr("owner"), Some("E100"));
    let mut leases: Vec<_> = of_kind(&r, "lease")
        .iter()
        .map(|f| f.resource.clone())
        .collect();
    leases.sort();
    assert_eq!(leases, vec![s.lease.clone(), s.audit_lease.clone()]);
    let mut certs: Vec<_> = of_kind(&r, "pki-certificate")
        .iter()
        .map(|f| {
            (
                f.attr("mount").unwrap().to_string(),
                f.attr("serial").unwrap().to_string(),
            )
        })
        .collect();
    certs.sort();
    assert_eq!(
        certs,
        vec![
            (String::from("pki/"), s.certs[0].1.clone()),
            (String::from("pki2/"), s.certs[1].1.clone())
        ]
    );
    let not_active: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.state != State::Active)
        .map(|f| &f.id)
        .collect();
    assert!(not_active.is_empty(), "{not_active:?}");

    // Apply every verb, in the leaver order: contain, revoke, remove, rotate, reassign.
    let order = [
        "entity",
        "token",
        "password-login",
        "group-membership",
        "approle-secret-id",
        "pki-certificate",
        "lease",
        "kv-secret",
        "nhi-entity",
    ];
    let mut outcomes = Vec::new();
    for kind in order {
        for f in of_kind(&r, kind) {
            let out = provider
                .execute(&request(f, verb_for(f).unwrap()))
                .await
                .unwrap();
            // The child token dies with its parent (revoke-accessor revokes children), so
            // its own revoke may find it already gone.
            // So does the orphan's child, and the lease alice's token obtained.
            let child =
                kind == "token" && f.attr("display_name").is_some_and(|d| d.contains("child"));
            let token_lease = kind == "lease" && f.resource == s.audit_lease;
            assert!(!out.already_done || child || token_lease, "{kind}: {out:?}");
            outcomes.push(out);
        }
    }
    // Idempotent: the same actions again change nothing.
    for kind in order {
        for f in of_kind(&r, kind) {
            let out = provider
                .execute(&request(f, verb_for(f).unwrap()))
                .await
                .unwrap();
            assert!(out.already_done, "{kind} second run: {out:?}");
            outcomes.push(out);
        }
    }
    assert!(!format!("{outcomes:?}").contains("canary"));
    // After the grace period the playbook destroys the versions the person knew: the current
    // one stays readable, the old one is destroyed; a second call finds nothing left to do.
    let owned_db = of_kind(&r, "kv-secret")
        .into_iter()
        .find(|f| f.resource == "secret/data/owned/db")
        .unwrap();
    let destroy = provider
        .execute(&request(owned_db, "destroy-old-versions"))
        .await
        .unwrap();
    assert!(!destroy.already_done, "{destroy:?}");
    let again = provider
        .execute(&request(owned_db, "destroy-old-versions"))
        .await
        .unwrap();
    assert!(again.already_done, "{again:?}");
    let meta = api.root("GET", "secret/metadata/owned/db", None).await;
    assert_eq!(meta["data"]["versions"]["1"]["destroyed"], json!(true));
    assert_eq!(meta["data"]["versions"]["2"]["destroyed"], json!(false));
    // A secret Closeout did not rotate keeps its versions: the provider refuses.
    let mut untouched = owned_db.clone();
    untouched.attributes.insert("key".into(), "other/x".into());
    let refused = provider
        .execute(&request(&untouched, "destroy-old-versions"))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("has not rotated"), "{refused}");

    // Read everything back through the API.
    let e = api
        .root(
            "GET",
            &format!("identity/entity/id/{}", s.alice_entity),
            None,
        )
        .await;
    assert_eq!(e["data"]["disabled"], json!(true));
    for t in [
        &s.alice_token,
        &s.alice_child,
        &s.alice_orphan,
        &s.orphan_child,
        &s.owned_token,
    ] {
        assert!(!api.token_works(t).await, "an old token still works");
    }
    assert!(
        api.token_works(&s.bob_token).await,
        "bob's token was revoked"
    );
    assert_ne!(api.login("alice.smith", ALICE_PASSWORD).await.0, 200);
    // Old secret-ids fail to log in (rotated or destroyed); bob's still works.
    for c in [&s.alice_batch, &s.alice_ci, &s.nightly] {
        assert_ne!(
            api.approle_login(c).await,
            200,
            "an old secret-id still logs in"
        );
    }
    assert_eq!(api.approle_login(&s.bob_ci).await, 200);
    assert_eq!(api.login("bob", "bob-pw").await.0, 200);
    let g = api
        .root("GET", &format!("identity/group/id/{}", s.devs_group), None)
        .await;
    assert_eq!(g["data"]["member_entity_ids"], json!([s.bob_entity]));
    for key in ["team/app", "alice/notes", "owned/db"] {
        let (version, data) = api.kv(key).await;
        assert_eq!(version, 2, "{key}");
        let obj = data.as_object().unwrap();
        assert!(
            obj.iter()
                .filter(|(k, _)| k.as_str() != "host" && k.as_str() != "user")
                .all(|(_, v)| v.as_str().unwrap().len() == 40),
            "{key}"
        );
        assert!(!data.to_string().contains("canary"));
    }
    // The fields the strategy does not name are kept.
    assert_eq!(api.kv("team/app").await.1["user"], "svc");
    let (_, data) = api.kv("owned/db").await;
    assert_eq!(data["host"], "db1");
    assert_eq!(data["password"].as_str().map(str::len), Some(40));
    for key in ["team/private", "other/x"] {
        let (version, data) = api.kv(key).await;
        assert_eq!(version, 1, "{key} was touched");
        assert!(data.to_string().contains(CANARY));
    }
    let svc = api
        .root("GET", "identity/entity/name/svc-batch", None)
        .await;
    assert_eq!(svc["data"]["metadata"]["owner"], json!("E900"));

    // Verify: live state of every finding is closed, probes prove tokens and logins dead.
    for f in &r.findings {
        let st = provider.live_state(f, &ctx).await.unwrap();
        assert!(!st.is_open(), "{} is still {st}", f.id);
        if let Some(p) = provider.probe(f).await.unwrap() {
            assert!(p.dead, "{}: {p:?}", f.id);
        }
    }
    // A fresh resolution shows nothing open.
    let again = provider.resolve(&ctx).await.unwrap();
    let open: Vec<_> = again
        .findings
        .iter()
        .filter(|f| f.state.is_open())
        .map(|f| &f.id)
        .collect();
    assert!(open.is_empty(), "{open:?}");
    assert!(of_kind(&again, "token").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified_and_an_unknown_identity_only_warns() {
    let api = Api::namespace("errors").await;
    let connect = |token: &'static str| api.provider_with("errors", token, VaultConfig::default());
    let ctx = ResolveContext {
        identity: alice(),
        cutoff: None,
    };

    // Nobody correlates: a warning, no account, no findings; health works.
    let root = connect("root").await;
    root.health(&[]).await.unwrap();
    let r = root.resolve(&ctx).await.unwrap();
    assert!(r.accounts.is_empty() && r.findings.is_empty(), "{r:#?}");
    assert!(
        r.warnings.iter().any(|w| w.contains("no Vault entity")),
        "{:?}",
        r.warnings
    );

    // A token without rights: a permanent error naming the call, never the token.
    let v = api
        .root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"]})),
        )
        .await;
    let weak = v["auth"]["client_token"].as_str().unwrap().to_string();
    let p = api
        .provider_with("errors", &weak, VaultConfig::default())
        .await;
    let err = p.resolve(&ctx).await.unwrap_err();
    assert_eq!(
        err.class(),
        closeout_contract::ErrorClass::Permanent,
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 403") && msg.contains("/v1/identity/entity/id"),
        "{msg}"
    );
    assert!(!msg.contains(&weak));

    // A bad token fails health; an unknown verb is unsupported.
    let bad = connect("not-a-token").await;
    assert!(bad.health(&[]).await.is_err());
    // A token that no longer exists (accessors carry their namespace, so a real one).
    let v = api
        .root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"]})),
        )
        .await;
    let gone_accessor = v["auth"]["accessor"].as_str().unwrap().to_string();
    api.root(
        "POST",
        "auth/token/revoke-accessor",
        Some(json!({ "accessor": gone_accessor })),
    )
    .await;
    let f = closeout_contract::Finding {
        id: "vault:token:x".into(),
        provider: "vault".into(),
        kind: "token".into(),
        relation: closeout_contract::Relation::Owns,
        holder: closeout_contract::Holder::Account,
        resource: "x".into(),
        display: "x".into(),
        state: State::Active,
        paths: vec![],
        attributes: [("accessor".to_string(), gone_accessor)].into(),
    };
    let err = root.execute(&request(&f, "delete")).await.unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
    // Revoking an accessor that does not exist is the idempotent success.
    let out = root.execute(&request(&f, "revoke")).await.unwrap();
    assert!(out.already_done, "{out:?}");
    assert_eq!(root.live_state(&f, &ctx).await.unwrap(), State::Deleted);

    // No server at the address: unreachable, retryable.
    let dir = std::env::temp_dir().join(format!("closeout-vault-gone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "root\n").unwrap();
    let gone = VaultProvider::connect(VaultConfig {
        address: Some(format!(
            "http://127.0.0.1:{}",
            closeout_testkit::free_port()
        )),
        token_file: Some(dir.join("token")),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = gone.health(&[]).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
