//! Two runs acting on one shared object at once: two leavers of one team, handled side by side by
//! two `closeout serve` workers (seen in `serve_lifecycle` when a restarted service resumed two
//! leavers' runs together).
//! - Both rotate a KV v2 secret they both read: both rotations succeed and the value left is new.
//!   Before, the second write's check-and-set was refused and its run failed.
//! - Both are removed from one group: both are gone. Vault replaces the member list whole with no
//!   check-and-set, so before, the later write could put back the member the earlier removed.

use crate::api::{context_now, person, request, Api};
use closeout_contract::ResolveContext;
use closeout_contract::{Provider, State};
use closeout_testkit::proxy::{Fault, FaultProxy, Rule, When};
use closeout_testkit::OpenBaoServer;
use serde_json::json;

const CANARY: &str = "canary-shared-rotation-5e1a";

/// Secrets rotated at once by both runs: enough that, before the fix, some writes collided.
const SECRETS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_rotating_one_shared_secret_at_once_both_succeed_with_a_new_value() {
    let api = Api::namespace("shared-rotation").await;
    api.policy(
        "team-read",
        r#"path "secret/data/team/*" { capabilities = ["read"] }
           path "secret/metadata/team/*" { capabilities = ["read", "list"] }"#,
    )
    .await;
    for i in 0..SECRETS {
        api.root(
            "POST",
            &format!("secret/data/team/s{i}"),
            Some(json!({"data": {"password": CANARY}})),
        )
        .await;
    }
    api.entity("alice.smith", &["team-read"]).await;
    let p = api.provider("shared-rotation").await;
    let ctx = context_now(person("E100", "alice.smith@example.com")).await;
    let resolved = p.resolve(&ctx).await.expect("resolve");
    let shared: Vec<_> = resolved
        .findings
        .iter()
        .filter(|f| f.kind == "kv-secret")
        .collect();
    assert_eq!(shared.len(), SECRETS, "{:#?}", resolved.findings);

    // Both runs' rotations of every secret, all at once.
    let rotations = shared.iter().flat_map(|f| {
        ["run-alice", "run-bob"].map(|run| {
            let p = &p;
            async move {
                (
                    f.id.clone(),
                    run,
                    p.execute(&request(run, f, "rotate")).await,
                )
            }
        })
    });
    for (finding, run, result) in futures::future::join_all(rotations).await {
        let outcome = result.unwrap_or_else(|e| panic!("{run} rotating {finding}: {e}"));
        assert_eq!(outcome.state, State::Rotated, "{run} {finding}");
    }

    // Read back: every secret holds a value neither the original nor empty, in a version after
    // the first.
    for i in 0..SECRETS {
        let (version, data) = api.kv(&format!("team/s{i}")).await;
        assert!(version >= 2, "team/s{i} at version {version}");
        let value = data["password"].as_str().unwrap_or_default();
        assert!(
            !value.is_empty() && value != CANARY,
            "team/s{i} kept its value"
        );
    }
    // A repeat of either run's action (a resume after a crash between the write and the
    // journal) leaves the secret rotated and never rolls it back. It may rotate once more: the
    // secret's metadata names only the last rotation, so the other run's repeat cannot tell its
    // own write apart from the later one (safe, documented in providers/vault/README.md).
    for f in &shared {
        let key = f.attr("key").expect("a KV finding names its key");
        let (before, _) = api.kv(key).await;
        for run in ["run-alice", "run-bob"] {
            let again = p.execute(&request(run, f, "rotate")).await.expect("repeat");
            assert_eq!(again.state, State::Rotated);
        }
        let (after, data) = api.kv(key).await;
        assert!(after >= before, "{key} went back from {before} to {after}");
        assert_ne!(data["password"], CANARY, "{key} rolled back");
    }
}

/// Groups each holding both leavers and a colleague who stays.
const GROUPS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_removing_two_members_of_one_group_at_once_remove_both() {
    let api = Api::namespace("shared-groups").await;
    let alice = api.entity("alice.smith", &[]).await;
    let bob = api.entity("bob.jones", &[]).await;
    let carol = api.entity("carol.diaz", &[]).await;
    for i in 0..GROUPS {
        api.root(
            "POST",
            "identity/group",
            Some(json!({"name": format!("team-{i}"), "member_entity_ids": [alice, bob, carol]})),
        )
        .await;
    }
    // Each run connects a provider of its own, as runs do.
    let mut removals = Vec::new();
    for (person_id, email) in [
        ("E100", "alice.smith@example.com"),
        ("E200", "bob.jones@example.com"),
    ] {
        let p = api.provider("shared-groups").await;
        let ctx = ResolveContext {
            identity: person(person_id, email),
            cutoff: None,
        };
        let findings: Vec<_> = p
            .resolve(&ctx)
            .await
            .expect("resolve")
            .findings
            .into_iter()
            .filter(|f| f.kind == "group-membership")
            .collect();
        assert_eq!(findings.len(), GROUPS, "{findings:#?}");
        removals.push((p, findings));
    }
    let all = removals.iter().flat_map(|(p, findings)| {
        findings.iter().map(move |f| async move {
            (f.id.clone(), p.execute(&request("run", f, "remove")).await)
        })
    });
    for (finding, result) in futures::future::join_all(all).await {
        let outcome = result.unwrap_or_else(|e| panic!("removing {finding}: {e}"));
        assert_eq!(outcome.state, State::Deleted, "{finding}");
    }

    // Read back: only the colleague is left in every group.
    for i in 0..GROUPS {
        let group = api
            .root("GET", &format!("identity/group/name/team-{i}"), None)
            .await;
        assert_eq!(
            group["data"]["member_entity_ids"],
            json!([carol]),
            "team-{i}"
        );
    }
}

/// Another process's stale write (it read the member list before this removal's write, and
/// wrote after it) puts the person back in the group: the removal reads the group back, sees her,
/// and removes her again. The read-back is held at the proxy while the stale write lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_undone_by_another_writers_stale_list_is_made_again() {
    let api = Api::namespace("stale-group").await;
    let alice = api.entity("alice.smith", &[]).await;
    let carol = api.entity("carol.diaz", &[]).await;
    let gid = api
        .root(
            "POST",
            "identity/group",
            Some(json!({"name": "team", "member_entity_ids": [alice, carol]})),
        )
        .await["data"]["id"]
        .as_str()
        .expect("group id")
        .to_string();
    let ctx = ResolveContext {
        identity: person("E100", "alice.smith@example.com"),
        cutoff: None,
    };
    let membership = api
        .provider("stale-group")
        .await
        .resolve(&ctx)
        .await
        .expect("resolve")
        .findings
        .into_iter()
        .find(|f| f.kind == "group-membership")
        .expect("her membership");

    // Through the proxy, the removal's third request (the read-back) waits 1.5 s.
    let proxy = FaultProxy::start(&OpenBaoServer::shared().address()).await;
    proxy.set_rules(vec![Rule::new(
        When::Nth(3),
        Fault::Latency { millis: 1500 },
    )]);
    let p = crate::faults::through(&proxy, "stale-group").await;
    let removal =
        tokio::spawn(async move { p.execute(&request("run", &membership, "remove")).await });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let group = format!("identity/group/id/{gid}");
    assert_eq!(
        api.root("GET", &group, None).await["data"]["member_entity_ids"],
        json!([carol]),
        "the removal was written"
    );
    // The other writer's stale list, as it read it before the removal.
    api.root(
        "POST",
        &group,
        Some(json!({"member_entity_ids": [alice, carol]})),
    )
    .await;

    let outcome = removal.await.expect("task").expect("removal");
    assert_eq!(outcome.state, State::Deleted);
    assert_eq!(
        api.root("GET", &group, None).await["data"]["member_entity_ids"],
        json!([carol]),
        "she is out of the group"
    );
    let ops: Vec<String> = proxy.log().into_iter().map(|e| e.op).collect();
    let group_op = |method: &str| format!("{method} /v1/{group}");
    assert_eq!(
        ops,
        [
            group_op("GET"),
            group_op("POST"),
            group_op("GET"),
            group_op("POST"),
            group_op("GET")
        ],
        "read, write, read back (her again), write again, read back"
    );
}
