//! Entitlements: grants and removals read back through the
//! HTTP API, idempotent, re-resolved with the id `grant_finding` promised; unclaimed entities;
//! a service identity's entities handed to its owner (`nhi_findings`, then `reassign-owner`).

use crate::api::{person, Api};
use closeout_contract::{
    ActionParams, ActionRequest, Entitlement, Finding, Holder, Identity, IdentityKind, Provider,
    ProviderError, ResolveContext, State,
};
use serde_json::{json, Value};

fn request(f: &Finding, verb: &str) -> ActionRequest {
    ActionRequest {
        idempotency_key: format!("run-1/{verb}/{}", f.id),
        verb: verb.into(),
        finding: f.clone(),
        params: ActionParams {
            run_id: "run-1".into(),
            ..Default::default()
        },
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn entity(api: &Api, body: Value) -> String {
    api.root("POST", "identity/entity", Some(body)).await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// alice.smith (E100: no group, no policy), bob in group devs (policy devs-read, metadata),
/// policy team-read (reads secret/data/team/*), a KV secret team/app.
async fn seed(api: &Api) -> (String, String) {
    for (name, rules) in [
        (
            "team-read",
            r#"path "secret/data/team/*" { capabilities = ["read"] }"#,
        ),
        (
            "devs-read",
            r#"path "secret/data/devs/*" { capabilities = ["read"] }"#,
        ),
    ] {
        api.root(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": rules })),
        )
        .await;
    }
    api.root(
        "POST",
        "secret/data/team/app",
        Some(json!({"data": {"password": "canary-vault-ent"}})),
    )
    .await;
    let alice = entity(api, json!({"name": "alice.smith", "policies": ["default"]})).await;
    let bob = entity(api, json!({"name": "bob"})).await;
    api.root(
        "POST",
        "identity/group",
        Some(json!({
            "name": "devs",
            "policies": ["devs-read"],
            "metadata": {"team": "devs"},
            "member_entity_ids": [bob],
        })),
    )
    .await;
    (alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_removals_are_read_back_idempotent_and_resolve_with_the_promised_id() {
    let api = Api::namespace("ent-grant").await;
    let (alice_id, bob_id) = seed(&api).await;
    let p = api.provider("ent-grant").await;
    let ctx = ResolveContext {
        identity: person("E100", "alice.smith@example.com"),
        cutoff: None,
    };
    let before = p.resolve(&ctx).await.unwrap();
    let ents: Vec<Entitlement> = before
        .findings
        .iter()
        .filter_map(|f| p.entitlement(f))
        .collect();
    assert_eq!(
        ents,
        vec![Entitlement::new("vault", "entity-policy", "default")],
        "{:#?}",
        before.findings
    );

    let group = Entitlement::new("vault", "group-membership", "devs");
    let policy = Entitlement::new("vault", "entity-policy", "team-read");
    let mut granted = Vec::new();
    for ent in [&group, &policy] {
        let f = p.grant_finding(&ctx, ent).await.unwrap();
        assert_eq!(f.state, State::Deleted, "{f:?}");
        assert_eq!(p.entitlement(&f).as_ref(), Some(ent));
        assert_eq!(p.live_state(&f, &ctx).await.unwrap(), State::Deleted);
        let first = p.execute(&request(&f, "grant")).await.unwrap();
        assert!(
            !first.already_done && first.state == State::Active,
            "{first:?}"
        );
        let second = p.execute(&request(&f, "grant")).await.unwrap();
        assert!(
            second.already_done && second.state == State::Active,
            "{second:?}"
        );
        assert_eq!(p.live_state(&f, &ctx).await.unwrap(), State::Active);
        granted.push(f);
    }

    // Read back through the API: alice joined, bob and the group's other fields kept.
    let devs = api.root("GET", "identity/group/name/devs", None).await;
    let mut members = strings(&devs["data"]["member_entity_ids"]);
    members.sort();
    let mut want = vec![alice_id.clone(), bob_id.clone()];
    want.sort();
    assert_eq!(members, want);
    assert_eq!(strings(&devs["data"]["policies"]), vec!["devs-read"]);
    assert_eq!(devs["data"]["metadata"], json!({"team": "devs"}));
    let alice = api
        .root("GET", &format!("identity/entity/id/{alice_id}"), None)
        .await;
    assert_eq!(
        strings(&alice["data"]["policies"]),
        vec!["default", "team-read"]
    );

    // Resolve: the granted findings, same ids, active; the secret the policy reads is reached
    // through the entity policy's path.
    let after = p.resolve(&ctx).await.unwrap();
    for g in &granted {
        let f = after
            .findings
            .iter()
            .find(|f| f.id == g.id)
            .unwrap_or_else(|| panic!("{} not resolved after the grant", g.id));
        assert_eq!(f.state, State::Active);
        assert_eq!(
            Finding {
                state: State::Deleted,
                ..f.clone()
            },
            *g
        );
    }
    let app = after
        .findings
        .iter()
        .find(|f| f.id == "vault:kv-secret:secret/data/team/app")
        .expect("team/app readable through team-read");
    let prefix = &granted[1].paths[0].steps;
    assert!(
        app.paths.iter().any(|p| p.steps.starts_with(prefix)),
        "{:?}",
        app.paths
    );

    // Remove the entity policy: the other policy stays.
    let pf = &granted[1];
    let first = p.execute(&request(pf, "remove")).await.unwrap();
    assert!(
        !first.already_done && first.state == State::Deleted,
        "{first:?}"
    );
    let second = p.execute(&request(pf, "remove")).await.unwrap();
    assert!(second.already_done, "{second:?}");
    let alice = api
        .root("GET", &format!("identity/entity/id/{alice_id}"), None)
        .await;
    assert_eq!(strings(&alice["data"]["policies"]), vec!["default"]);
    assert_eq!(p.live_state(pf, &ctx).await.unwrap(), State::Deleted);

    // Removing the membership keeps bob.
    let mf = &granted[0];
    let out = p.execute(&request(mf, "remove")).await.unwrap();
    assert!(!out.already_done, "{out:?}");
    let devs = api.root("GET", "identity/group/name/devs", None).await;
    assert_eq!(strings(&devs["data"]["member_entity_ids"]), vec![bob_id]);
    assert_eq!(p.live_state(mf, &ctx).await.unwrap(), State::Deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_targets_and_identities_without_entity_are_config_errors() {
    let api = Api::namespace("ent-missing").await;
    seed(&api).await;
    let p = api.provider("ent-missing").await;
    let alice = ResolveContext {
        identity: person("E100", "alice.smith@example.com"),
        cutoff: None,
    };
    let nobody = ResolveContext {
        identity: person("E999", "nobody@example.com"),
        cutoff: None,
    };
    let cases = [
        (
            &alice,
            "group-membership",
            "nope",
            "Vault group nope does not exist",
        ),
        (
            &alice,
            "entity-policy",
            "nope",
            "Vault policy nope does not exist",
        ),
        (&nobody, "group-membership", "devs", "has no Vault entity"),
        (&alice, "policy", "team-read", "can be granted"),
    ];
    for (ctx, kind, target, want) in cases {
        let err = p
            .grant_finding(ctx, &Entitlement::new("vault", kind, target))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Config { .. }), "{err}");
        assert!(err.to_string().contains(want), "{kind} {target}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclaimed_accounts_list_strays_with_their_enabled_flag() {
    let api = Api::namespace("ent-unclaimed").await;
    let (alice_id, bob_id) = seed(&api).await;
    let carol = entity(
        &api,
        json!({"name": "c-42", "metadata": {"identity": "E200"}}),
    )
    .await;
    let svc = entity(
        &api,
        json!({"name": "svc-batch", "metadata": {"owner": "E100"}}),
    )
    .await;
    let old = entity(&api, json!({"name": "old-admin", "disabled": true})).await;
    let p = api.provider("ent-unclaimed").await;
    let out = p
        .unclaimed_accounts(&[
            person("E100", "alice.smith@example.com"),
            person("E200", "carol@example.com"),
        ])
        .await
        .unwrap();
    let got: Vec<(&str, &str, bool)> = out
        .iter()
        .map(|u| (u.display.as_str(), u.resource.as_str(), u.enabled))
        .collect();
    assert_eq!(
        got,
        vec![
            ("entity bob", bob_id.as_str(), true),
            ("entity old-admin", old.as_str(), false),
        ],
        "{out:#?}"
    );
    assert!(out[0].reason.contains("entity name bob"), "{out:?}");
    for id in [&alice_id, &carol, &svc] {
        assert!(!out.iter().any(|u| &u.resource == id));
    }
}

/// A joiner's ownership record: the entities of a service identity (one by name, one by its
/// identity metadata), without owner metadata, become the person's `nhi-entity` findings once
/// `reassign-owner` records the owner, with the ids `nhi_findings` gave them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nhi_findings_of_a_service_identity_become_the_owners_nhis() {
    let api = Api::namespace("ent-nhi").await;
    seed(&api).await;
    let by_name = entity(
        &api,
        json!({"name": "svc-batch", "policies": ["team-read"], "metadata": {"team": "ops"}}),
    )
    .await;
    let by_meta = entity(
        &api,
        json!({"name": "batch-runner", "metadata": {"identity": "svc-batch"}}),
    )
    .await;
    let p = api.provider("ent-nhi").await;
    let svc = ResolveContext {
        identity: Identity {
            kind: IdentityKind::Service,
            manager: Some("E100".into()),
            ..person("svc-batch", "svc-batch@example.com")
        },
        cutoff: None,
    };
    let alice = ResolveContext {
        identity: person("E100", "alice.smith@example.com"),
        cutoff: None,
    };

    let found = p.nhi_findings(&svc).await.unwrap();
    let mut want = vec![
        format!("vault:nhi-entity:{by_name}"),
        format!("vault:nhi-entity:{by_meta}"),
    ];
    want.sort();
    let ids: Vec<&str> = found.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, want, "{found:#?}");
    for f in &found {
        assert_eq!(f.kind, "nhi-entity");
        assert!(matches!(f.holder, Holder::Nhi(_)), "{f:?}");
        assert_eq!(f.state, State::Active);
        assert_eq!(f.attr("owner"), None, "no owner record yet: {f:?}");
    }
    let before = p.resolve(&alice).await.unwrap();
    assert!(before.findings.iter().all(|x| x.kind != "nhi-entity"));

    // A blank owner is refused, never written.
    let mut blank = request(&found[0], "reassign-owner");
    blank.params.new_owner = Some("  ".into());
    let err = p.execute(&blank).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent { .. }), "{err}");

    for f in &found {
        let mut req = request(f, "reassign-owner");
        req.params.new_owner = Some("alice.smith@example.com".into());
        let first = p.execute(&req).await.unwrap();
        assert!(
            !first.already_done && first.state == State::Reassigned,
            "{first:?}"
        );
        let second = p.execute(&req).await.unwrap();
        assert!(
            second.already_done && second.state == State::Reassigned,
            "{second:?}"
        );
        assert_eq!(p.live_state(f, &svc).await.unwrap(), State::Reassigned);
        assert_eq!(p.live_state(f, &alice).await.unwrap(), State::Active);
    }
    // Read back through the API: the owner recorded, the other metadata and policies kept.
    let e = api
        .root("GET", &format!("identity/entity/id/{by_name}"), None)
        .await;
    assert_eq!(
        e["data"]["metadata"],
        json!({"team": "ops", "owner": "alice.smith@example.com"})
    );
    assert_eq!(strings(&e["data"]["policies"]), vec!["team-read"]);
    let e = api
        .root("GET", &format!("identity/entity/id/{by_meta}"), None)
        .await;
    assert_eq!(
        e["data"]["metadata"],
        json!({"identity": "svc-batch", "owner": "alice.smith@example.com"})
    );

    // What a leaver will find and reassign: the same findings, now with their owner.
    let after = p.resolve(&alice).await.unwrap();
    let again = p.nhi_findings(&svc).await.unwrap();
    for f in &found {
        let owned = after
            .findings
            .iter()
            .find(|x| x.id == f.id)
            .unwrap_or_else(|| panic!("{} not resolved for the owner: {after:#?}", f.id));
        assert_eq!(owned.kind, "nhi-entity");
        assert_eq!(owned.holder, f.holder);
        assert_eq!(owned.paths, f.paths);
        assert_eq!(owned.attr("owner"), Some("alice.smith@example.com"));
        assert!(again.contains(owned), "one builder for both: {again:#?}");
    }

    // A service identity with no entity here.
    let none = p
        .nhi_findings(&ResolveContext {
            identity: Identity {
                kind: IdentityKind::Service,
                ..person("svc-none", "svc-none@example.com")
            },
            cutoff: None,
        })
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}
